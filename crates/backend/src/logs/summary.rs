//! Counting a window's events per class, and the fix an admin applies for each, quoting the
//! setting to change.

use serde::Serialize;
use why502_model::CauseId;

use super::classify::BackendLogClass;
use super::window::BackendLogEvent;
use crate::identity::BackendKind;
use crate::phpfpm::FpmPool;

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ClassSummary {
    pub class: BackendLogClass,
    pub cause: CauseId,
    pub count: usize,
    /// Seconds since the epoch.
    pub first_seen: i64,
    pub last_seen: i64,
    /// The newest event's message.
    pub newest: String,
    /// The pid the newest event names (to match with the kernel's OOM kills).
    pub newest_pid: Option<u32>,
}

impl ClassSummary {
    /// `3 × requests killed for running too long between 2026-11-21T03:00:00Z and
    /// 2026-11-21T03:05:00Z; newest: ...`.
    pub fn sentence(&self) -> String {
        let when = if self.first_seen == self.last_seen {
            format!("at {}", rfc3339(self.last_seen))
        } else {
            format!(
                "between {} and {}",
                rfc3339(self.first_seen),
                rfc3339(self.last_seen)
            )
        };
        format!(
            "{} × {} {when}; newest: {}",
            self.count,
            self.class.describe(),
            self.newest
        )
    }
}

fn rfc3339(t: i64) -> String {
    let Ok(secs) = u64::try_from(t) else {
        return t.to_string();
    };
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Inverse of days_from_civil (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + if m <= 2 { 1 } else { 0 };
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Per class: count, first and last seen, newest line. Ordered by what explains a 502 best:
/// classes that break requests before those that only warn, then by count.
pub fn summarize(events: &[BackendLogEvent]) -> Vec<ClassSummary> {
    let mut out: Vec<ClassSummary> = Vec::new();
    for e in events {
        match out.iter_mut().find(|s| s.class == e.class) {
            Some(s) => {
                s.count += 1;
                s.first_seen = s.first_seen.min(e.time);
                if e.time >= s.last_seen {
                    s.last_seen = e.time;
                    s.newest = e.message.clone();
                    s.newest_pid = e.pid;
                }
            }
            None => out.push(ClassSummary {
                class: e.class,
                cause: e.class.cause(),
                count: 1,
                first_seen: e.time,
                last_seen: e.time,
                newest: e.message.clone(),
                newest_pid: e.pid,
            }),
        }
    }
    out.sort_by(|a, b| {
        b.class
            .breaks_requests()
            .cmp(&a.class.breaks_requests())
            .then(b.count.cmp(&a.count))
            .then(a.class.cmp(&b.class))
    });
    out
}

/// What is known of the backend when writing a fix.
#[derive(Debug, Clone, Copy)]
pub struct FixContext<'a> {
    pub kind: &'a BackendKind,
    /// The php-fpm pool, for its current settings and file.
    pub pool: Option<&'a FpmPool>,
    /// nginx's read timeout for this upstream (`fastcgi_read_timeout`, `proxy_read_timeout`),
    /// seconds.
    pub nginx_read_timeout: Option<u64>,
}

/// The fix for a class, naming the setting and, where known, its current value and file.
pub fn fix_text(class: BackendLogClass, cx: &FixContext) -> String {
    use BackendLogClass::*;
    let pool_name = cx
        .pool
        .map_or("the pool".to_string(), |p| format!("pool [{}]", p.name));
    let in_file = cx
        .pool
        .map_or(String::new(), |p| format!(" in {}", p.file.display()));
    let nginx_timeout = cx
        .nginx_read_timeout
        .map_or("nginx's read timeout".to_string(), |t| {
            format!("nginx's read timeout ({t}s)")
        });
    match (class, cx.kind) {
        (PoolExhausted, k) if k.is_php_fpm() => format!(
            "Every worker of {pool_name} was busy (pm.max_children = {}{in_file}). Raise pm.max_children if memory allows (each worker needs its peak RSS), or find what holds workers: set request_slowlog_timeout and read the slowlog. Then reload php-fpm.",
            cx.pool.and_then(|p| p.max_children).map_or("?".into(), |n| n.to_string())
        ),
        (PoolExhausted, BackendKind::Uwsgi) => "uWSGI's listen queue was full: add workers (--processes/--threads) or make requests faster; raise --listen (listen = in the ini, default 100) together with the net.core.somaxconn sysctl.".into(),
        (PoolExhausted, _) => "Every worker was busy: add workers (gunicorn --workers/--threads) or make requests faster.".into(),
        (RequestTimeout | SlowRequest, k) if k.is_php_fpm() => {
            let rtt = cx
                .pool
                .and_then(|p| p.request_terminate_timeout)
                .map_or("request_terminate_timeout".to_string(), |t| format!("request_terminate_timeout = {t}s"));
            if class == SlowRequest {
                format!("Requests of {pool_name} run slower than request_slowlog_timeout; the slowlog shows where. They break once they pass {rtt} or {nginx_timeout}.")
            } else {
                format!("php-fpm killed requests of {pool_name} that ran past {rtt}{in_file}, so nginx saw the connection close (502). Make the script faster, or raise request_terminate_timeout (and PHP's max_execution_time); keep it and {nginx_timeout} (fastcgi_read_timeout) consistent: the shorter one decides.")
            }
        }
        (RequestTimeout | SlowRequest, BackendKind::Uwsgi) => format!("uWSGI's harakiri killed requests that ran too long: raise harakiri (--harakiri) above the slowest request, or make the requests faster; keep it above {nginx_timeout} (uwsgi_read_timeout)."),
        (RequestTimeout | SlowRequest, _) => format!("gunicorn killed workers silent longer than --timeout (timeout = in the config, default 30 s): raise --timeout above the slowest request, or move slow work out of the request; keep it above {nginx_timeout} (proxy_read_timeout)."),
        (WorkerKilled { signal: Some(9) }, _) => "Workers were killed with SIGKILL. If the kernel log shows an OOM kill of these pids, lower the worker count (pm.max_children, --workers, --processes) or give the host or the unit's cgroup (MemoryMax=) more memory; otherwise find who sends kill -9.".into(),
        (WorkerKilled { signal: Some(11) }, _) => "Workers crashed with SIGSEGV: a bug in the interpreter, an extension or native code. Enable core dumps (php-fpm: rlimit_core = unlimited) to get a backtrace, then update or disable the extension.".into(),
        (WorkerKilled { .. }, _) => "Workers died of a signal: see the lines around it in the backend's log and the kernel log.".into(),
        (MemoryLimit, _) => format!(
            "PHP scripts hit memory_limit ({}): raise it for {pool_name} (php_admin_value[memory_limit]{in_file}, or php.ini) or fix the script's memory use; the newest line names the script.",
            cx.pool.and_then(|p| p.memory_limit()).map_or("php.ini's value".to_string(), |v| format!("memory_limit = {v}"))
        ),
        (Fatal, _) => "PHP scripts die with fatal errors: fix the error the newest line names (file and line), then reload php-fpm if code is cached by opcache.".into(),
        (AppError, _) => "The application raises errors or fails to start: fix the exception the newest line names, then restart the backend.".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_of_known_instants() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(1_795_269_786), "2026-11-21T14:03:06Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
    }
}

//! What a backend's log line reports, as php-fpm, PHP, gunicorn and uwsgi word it (wordings
//! captured from php-fpm 8.2, gunicorn 27.0.1 and uWSGI 2.0.30 on this project's lab host).

use serde::Serialize;
use why502_model::CauseId;

/// A failure a backend logs about itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case", tag = "class")]
pub enum BackendLogClass {
    /// Every worker busy: php-fpm `server reached pm.max_children setting`, uwsgi `listen
    /// queue of socket ... full`.
    PoolExhausted,
    /// A request killed for running too long: php-fpm `execution timed out ... terminating`
    /// (request_terminate_timeout), gunicorn `WORKER TIMEOUT`, uwsgi `HARAKIRI ON WORKER`.
    RequestTimeout,
    /// php-fpm `executing too slow ... logging` (request_slowlog_timeout): slow, not killed.
    SlowRequest,
    /// A worker died of a signal it did not ask for: php-fpm `child N exited on signal 9`,
    /// gunicorn `was sent SIGKILL! Perhaps out of memory?`, uwsgi `died, killed by signal 9`.
    WorkerKilled { signal: Option<u32> },
    /// PHP `Allowed memory size of N bytes exhausted` (memory_limit).
    MemoryLimit,
    /// `PHP Fatal error` / `PHP Parse error` other than the memory limit.
    Fatal,
    /// The application failed: a Python traceback, gunicorn `Worker failed to boot`, uwsgi
    /// `no python application found`.
    AppError,
}

/// php-fpm stops its own children with SIGQUIT (graceful reload) and SIGTERM (after
/// `execution timed out ... terminating`, already counted as a timeout): not a failure.
const FPM_OWN_SIGNALS: [u32; 2] = [3, 15];

/// Classify one log line (its stamp may or may not still be on it).
pub fn classify_backend_line(line: &str) -> Option<BackendLogClass> {
    use BackendLogClass::*;
    if line.contains("server reached pm.max_children setting")
        || line.contains("server reached max_children setting")
        || (line.contains("uWSGI listen queue of socket") && line.contains("full"))
    {
        return Some(PoolExhausted);
    }
    if (line.contains("execution timed out") && line.contains("terminating"))
        || line.contains("WORKER TIMEOUT")
        || line.contains("HARAKIRI ON WORKER")
    {
        return Some(RequestTimeout);
    }
    if line.contains("executing too slow") {
        return Some(SlowRequest);
    }
    if let Some(signal) = number_after(line, " exited on signal ") {
        return (!FPM_OWN_SIGNALS.contains(&signal)).then_some(WorkerKilled {
            signal: Some(signal),
        });
    }
    if line.contains("Perhaps out of memory?") {
        return Some(WorkerKilled { signal: Some(9) });
    }
    if let Some(signal) = number_after(line, "killed by signal ") {
        return Some(WorkerKilled {
            signal: Some(signal),
        });
    }
    if line.contains("Allowed memory size of") && line.contains("exhausted") {
        return Some(MemoryLimit);
    }
    if line.contains("PHP Fatal error:") || line.contains("PHP Parse error:") {
        return Some(Fatal);
    }
    if line.starts_with("Traceback (most recent call last):")
        || line.contains("Worker failed to boot")
        || line.contains("no python application found")
    {
        return Some(AppError);
    }
    None
}

fn number_after(line: &str, key: &str) -> Option<u32> {
    let start = line.find(key)? + key.len();
    let digits: String = line[start..]
        .chars()
        .take_while(|c| c.is_ascii_digit())
        .collect();
    digits.parse().ok()
}

impl BackendLogClass {
    /// The contract cause this class explains. `WorkerKilled` by SIGKILL is `oom_killed` only
    /// as a hint: the kernel log must confirm it (`needs_kernel_confirmation`).
    pub fn cause(self) -> CauseId {
        use BackendLogClass::*;
        match self {
            PoolExhausted => CauseId::PoolExhausted,
            RequestTimeout | SlowRequest => CauseId::UpstreamTimeout,
            WorkerKilled { signal: Some(9) } => CauseId::OomKilled,
            WorkerKilled { .. } | MemoryLimit | Fatal | AppError => CauseId::AppError,
        }
    }

    /// A SIGKILL is the OOM killer's signal, and also an admin's `kill -9` or a supervisor's
    /// timeout: only the kernel's OOM line for that pid makes it `oom_killed`.
    pub fn needs_kernel_confirmation(self) -> bool {
        matches!(self, BackendLogClass::WorkerKilled { signal: Some(9) })
    }

    /// Does this line by itself break requests (a 502 or a killed request), or only warn?
    pub fn breaks_requests(self) -> bool {
        !matches!(self, BackendLogClass::SlowRequest)
    }

    /// A short name for summaries.
    pub fn describe(self) -> String {
        use BackendLogClass::*;
        match self {
            PoolExhausted => "pool exhausted (all workers busy)".into(),
            RequestTimeout => "requests killed for running too long".into(),
            SlowRequest => "slow requests".into(),
            WorkerKilled { signal: Some(s) } => {
                format!("workers killed by signal {s} ({})", signal_name(s))
            }
            WorkerKilled { signal: None } => "workers killed".into(),
            MemoryLimit => "PHP memory_limit exhausted".into(),
            Fatal => "PHP fatal errors".into(),
            AppError => "application errors".into(),
        }
    }
}

pub fn signal_name(s: u32) -> &'static str {
    match s {
        6 => "SIGABRT",
        7 => "SIGBUS",
        9 => "SIGKILL: the OOM killer, a supervisor's timeout or kill -9",
        11 => "SIGSEGV: a crash in PHP, an extension or native code",
        15 => "SIGTERM",
        _ => "signal",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use BackendLogClass::*;

    #[test]
    fn ignores_routine_lines() {
        for l in [
            "[21-Nov-2026 14:03:01] NOTICE: [pool cap] child 25248 started",
            "[21-Nov-2026 14:02:51] NOTICE: fpm is running, pid 24853",
            "[21-Nov-2026 14:03:01] NOTICE: child 24855 stopped for tracing",
            "[2026-11-21 14:03:53 +0000] [28604] [INFO] Booting worker with pid: 28604",
            "Respawned uWSGI worker 1 (new pid: 30170)",
            "Stack trace:",
        ] {
            assert_eq!(classify_backend_line(l), None, "{l}");
        }
    }

    #[test]
    fn fpm_stops_its_own_children_with_term_and_quit() {
        let term = "[21-Nov-2026 14:03:01] WARNING: [pool cap] child 24855 exited on signal 15 (SIGTERM) after 10.340153 seconds from start";
        assert_eq!(classify_backend_line(term), None);
        let kill = "[21-Nov-2026 14:03:29] WARNING: [pool cap] child 25646 exited on signal 9 (SIGKILL) after 16.929176 seconds from start";
        assert_eq!(
            classify_backend_line(kill),
            Some(WorkerKilled { signal: Some(9) })
        );
        assert_eq!(
            classify_backend_line(kill).unwrap().cause(),
            CauseId::OomKilled
        );
        assert!(classify_backend_line(kill)
            .unwrap()
            .needs_kernel_confirmation());
        let segv = "[21-Nov-2026 14:03:30] WARNING: [pool cap] child 27283 exited on signal 11 (SIGSEGV) after 0.508172 seconds from start";
        assert_eq!(
            classify_backend_line(segv).unwrap().cause(),
            CauseId::AppError
        );
    }

    #[test]
    fn causes() {
        assert_eq!(PoolExhausted.cause(), CauseId::PoolExhausted);
        assert_eq!(RequestTimeout.cause(), CauseId::UpstreamTimeout);
        assert_eq!(MemoryLimit.cause(), CauseId::AppError);
        assert!(!SlowRequest.breaks_requests());
    }
}

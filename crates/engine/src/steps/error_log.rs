//! Step `error_log`: what nginx's error log says about this upstream. Evidence, not a gate:
//! the walk goes on whatever it finds. After the walk, an error class that no probe explains
//! or clears becomes the verdict (`unexplained`), so the log steers the answer.

use std::os::unix::fs::MetadataExt;
use std::time::{Duration, SystemTime};

use why502_model::{CauseId, Evidence, Outcome, Status, StepId, Verdict};
use why502_nginx::errorlog::{ErrorLogLine, ErrorLogWindow, UpstreamErrorClass};

use super::{StepContext, StepFinding};
use crate::sources::Sources;
use crate::targets::{TargetAddr, UpstreamTarget};

/// Errors newer than this are "happening now": unexplained by the probes, they are the break.
/// Older ones in the window are a risk (warning): the backend failed recently and may again.
pub const RECENT: Duration = Duration::from_secs(300);

/// The error logs of the run, read once: each a window or the reason it could not be read.
#[derive(Debug, Default)]
pub struct ErrorLogs {
    pub windows: Vec<ErrorLogWindow>,
    pub unreadable: Vec<String>,
    /// `1h`, for summaries.
    pub since_text: String,
}

/// What the log says about one upstream, by class.
#[derive(Debug, Clone)]
pub struct ClassSeen {
    pub class: UpstreamErrorClass,
    pub count: usize,
    pub first: ErrorLogLine,
    pub last: ErrorLogLine,
    /// `/var/log/nginx/error.log @ 2026/11/21 03:12:09`
    pub last_source: String,
}

impl ClassSeen {
    fn evidence(&self) -> Evidence {
        Evidence::new(self.last_source.clone(), self.last.message.clone())
    }
    fn when(&self) -> String {
        if self.count == 1 {
            format!("at {}", self.last.stamp)
        } else {
            format!(
                "{}× from {} to {}",
                self.count, self.first.stamp, self.last.stamp
            )
        }
    }
}

/// Every class nginx logged about this upstream in the window, the newest last.
pub fn seen(target: &UpstreamTarget, logs: &ErrorLogs) -> Vec<ClassSeen> {
    let needles = needles(target);
    let mut out: Vec<ClassSeen> = Vec::new();
    for w in &logs.windows {
        for l in &w.lines {
            if !needles.iter().any(|n| mentions(l, n)) && !names_block(l, target) {
                continue;
            }
            let Some(class) = l.class else {
                continue;
            };
            let source = format!("{} @ {}", w.source.display(), l.stamp);
            match out.iter_mut().find(|c| c.class == class) {
                Some(c) => {
                    c.count += 1;
                    if l.time < c.first.time {
                        c.first = l.clone();
                    }
                    if l.time >= c.last.time {
                        c.last = l.clone();
                        c.last_source = source;
                    }
                }
                None => out.push(ClassSeen {
                    class,
                    count: 1,
                    first: l.clone(),
                    last: l.clone(),
                    last_source: source,
                }),
            }
        }
    }
    out.sort_by_key(|c| c.last.time);
    out
}

const UNREADABLE_FIX: &str = "Run why502 as root, or as a member of the group that owns nginx's logs (adm on Debian and Ubuntu).";

pub fn check(target: &UpstreamTarget, cx: &StepContext<'_>) -> StepFinding {
    let logs = &cx.sources.error_logs;
    if logs.windows.is_empty() {
        let why = if logs.unreadable.is_empty() {
            "no error_log file to read".to_string()
        } else {
            logs.unreadable.join("; ")
        };
        return StepFinding::unknown(format!("cannot read nginx's error log: {why}"))
            .with_fix(UNREADABLE_FIX);
    }
    let classes = seen(target, logs);
    if classes.is_empty() {
        let read: Vec<String> = logs
            .windows
            .iter()
            .map(|w| w.source.display().to_string())
            .collect();
        // One unread log may hold this upstream's errors: not a clean bill.
        if !logs.unreadable.is_empty() {
            return StepFinding::unknown(format!(
                "no errors about this upstream in {}, but not every error log could be read: {}",
                read.join(", "),
                logs.unreadable.join("; ")
            ))
            .with_fix(UNREADABLE_FIX);
        }
        return StepFinding::pass(format!(
            "no errors about this upstream in the last {} of {}",
            logs.since_text,
            read.join(", ")
        ));
    }
    let total: usize = classes.iter().map(|c| c.count).sum();
    let parts: Vec<String> = classes
        .iter()
        .rev()
        .map(|c| format!("{} ({})", c.class.describe(), c.when()))
        .collect();
    let mut f = StepFinding::new(
        Outcome::Warn,
        None,
        format!(
            "nginx logged {total} error(s) about this upstream in the last {}: {}",
            logs.since_text,
            parts.join("; ")
        ),
    );
    for c in classes.iter().rev().take(3) {
        f.evidence.push(c.evidence());
    }
    f
}

/// After the probes found no break: the newest class the log shows that nothing explains or
/// clears. A logged refusal is cleared by a backend that listens now; a logged permission
/// denial by a socket changed since (ctime); the rest stand as the log tells them.
pub fn unexplained(
    target: &UpstreamTarget,
    sources: &Sources,
    now: SystemTime,
) -> Option<(Status, Verdict)> {
    let classes = seen(target, &sources.error_logs);
    let c = classes.iter().rev().find(|c| !cleared(c, target))?;
    let (cause, meaning, fix) = meaning(c, target);
    let age = now
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64 - c.last.time)
        .unwrap_or(0)
        .max(0) as u64;
    let recent = Duration::from_secs(age) <= RECENT;
    let status = if recent {
        Status::Break
    } else {
        Status::Warning
    };
    let tense = if recent {
        format!(
            "the last {} ago: happening now",
            humantime::format_duration(Duration::from_secs(age))
        )
    } else {
        format!(
            "the last {} ago, so not now: a recurring risk",
            humantime::format_duration(Duration::from_secs(age))
        )
    };
    let summary = format!(
        "nginx logged {} for this upstream ({}; {tense}) and no probe explains it away: {meaning}",
        c.class.describe(),
        c.when()
    );
    Some((
        status,
        Verdict {
            step: StepId::ErrorLog,
            cause,
            summary,
            fix,
            evidence: vec![c.evidence()],
        },
    ))
}

/// Classes the probes that passed have cleared.
fn cleared(c: &ClassSeen, target: &UpstreamTarget) -> bool {
    use UpstreamErrorClass::*;
    match c.class {
        // backend_up passed: it listens and may be reached now.
        NoSuchFile | ConnectionRefused => true,
        // A socket changed after the last denial (chmod, chown, re-created by a restart) was
        // fixed; one unchanged since was denied with the mode it has now: not a mode problem.
        PermissionDenied => match &target.addr {
            TargetAddr::Unix(p) => std::fs::metadata(p)
                .map(|m| m.ctime() >= c.last.time)
                .unwrap_or(false),
            TargetAddr::Tcp { .. } => false,
        },
        // Not a 502.
        PrimaryScriptUnknown => true,
        _ => false,
    }
}

/// The cause a class stands for, what it means here (with nginx's limit where one applies),
/// and the fix.
fn meaning(c: &ClassSeen, t: &UpstreamTarget) -> (CauseId, String, String) {
    use UpstreamErrorClass::*;
    let s = &t.settings;
    let secs = |d: Duration| humantime::format_duration(d).to_string();
    match c.class {
        ListenQueueFull | NoLiveUpstreams => (
            CauseId::PoolExhausted,
            "the backend's workers were all busy and its listen queue full".to_string(),
            CauseId::PoolExhausted.fix().to_string(),
        ),
        ReadTimeout => (
            CauseId::UpstreamTimeout,
            format!("the backend answered slower than nginx's read timeout of {}", secs(s.read_timeout)),
            CauseId::UpstreamTimeout.fix().to_string(),
        ),
        Reset => (
            CauseId::UpstreamReset,
            "the backend closed the connection before a complete response".to_string(),
            CauseId::UpstreamReset.fix().to_string(),
        ),
        TooBigHeader => (
            CauseId::UpstreamHeaderTooBig,
            format!("the backend's response header is larger than nginx's buffer of {} bytes", s.buffer_size),
            format!(
                "Raise the buffer above the header size (currently {} bytes) where {} is configured, or make the backend send smaller headers.",
                s.buffer_size,
                t.references.first().map(|r| format!("{} ({}:{})", r.directive, r.file, r.line)).unwrap_or_default()
            ),
        ),
        InvalidResponse => (
            CauseId::UpstreamInvalidResponse,
            "the backend's answer is not a valid response for this protocol".to_string(),
            CauseId::UpstreamInvalidResponse.fix().to_string(),
        ),
        Tls => (CauseId::UpstreamTls, "TLS to the backend fails".to_string(), CauseId::UpstreamTls.fix().to_string()),
        Dns => (CauseId::UpstreamDns, "the backend's name does not resolve".to_string(), CauseId::UpstreamDns.fix().to_string()),
        PermissionDenied => (
            CauseId::Unknown,
            "nginx was denied although the socket's mode lets its worker connect and has not changed since: a security module (SELinux, AppArmor) is the likely cause (step security)".to_string(),
            "Look for AVC denials (`ausearch -m AVC -ts recent`) or AppArmor DENIED lines naming nginx and this socket.".to_string(),
        ),
        ConnectTimeout => (
            CauseId::Unknown,
            "connecting timed out although the backend listens: packets are dropped on the way, most likely by a firewall rule (step security)".to_string(),
            "Look for a DROP rule on the backend's port: `nft list ruleset`, `iptables -S`.".to_string(),
        ),
        NoSuchFile | ConnectionRefused | NoRoute | PrimaryScriptUnknown | Other => (
            CauseId::Unknown,
            "no probe of this version explains it".to_string(),
            CauseId::Unknown.fix().to_string(),
        ),
    }
}

/// How nginx names this upstream in its log lines: `unix:/path` or `host:port`.
fn needles(t: &UpstreamTarget) -> Vec<String> {
    match &t.addr {
        TargetAddr::Unix(p) => vec![format!("unix:{}", p.display())],
        TargetAddr::Tcp { .. } => vec![t.address.clone()],
    }
}

/// `no live upstreams` names the `upstream` block (`upstream: "http://app/"`), not a server:
/// it concerns every member. Matched in the upstream field only, where a name cannot be
/// confused with a word of the message.
fn names_block(l: &ErrorLogLine, t: &UpstreamTarget) -> bool {
    let (Some(name), Some(field)) = (&t.name, &l.upstream) else {
        return false;
    };
    let Some((_, rest)) = field.split_once("://") else {
        return false;
    };
    rest.strip_prefix(name.as_str())
        .is_some_and(|after| after.is_empty() || after.starts_with('/') || after.starts_with(':'))
}

/// Does the line name this upstream, as a whole address (not a prefix of a longer one)?
fn mentions(l: &ErrorLogLine, needle: &str) -> bool {
    let hay = l
        .upstream
        .as_deref()
        .into_iter()
        .chain(std::iter::once(l.message.as_str()));
    for h in hay {
        let mut from = 0;
        while let Some(i) = h[from..].find(needle) {
            let start = from + i;
            let end = start + needle.len();
            let prev = h[..start].chars().next_back();
            let next = h[end..].chars().next();
            if matches!(prev, None | Some('/' | ' ' | '"'))
                && matches!(next, None | Some(':' | '/' | '"' | ' ' | ','))
            {
                return true;
            }
            from = end;
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(upstream: &str, message: &str) -> ErrorLogLine {
        ErrorLogLine {
            time: 0,
            stamp: String::new(),
            level: "error".into(),
            message: message.into(),
            upstream: Some(upstream.into()),
            server: None,
            class: None,
        }
    }

    fn target(addr: TargetAddr) -> UpstreamTarget {
        UpstreamTarget {
            address: crate::targets::address_string(&addr),
            addr,
            name: None,
            protocol: why502_model::Protocol::Http,
            tls: false,
            references: Vec::new(),
            server_names: Vec::new(),
            settings: why502_nginx::config::PassSettings::default(),
            resolved_at_request_time: false,
        }
    }

    fn logs_with(lines: Vec<ErrorLogLine>) -> ErrorLogs {
        ErrorLogs {
            windows: vec![ErrorLogWindow {
                source: "/var/log/nginx/error.log".into(),
                lines,
                ..ErrorLogWindow::default()
            }],
            unreadable: Vec::new(),
            since_text: "1h".into(),
        }
    }

    fn at(time: i64, upstream: &str, message: &str) -> ErrorLogLine {
        ErrorLogLine {
            time,
            class: why502_nginx::errorlog::classify_line("error", message),
            ..line(upstream, message)
        }
    }

    const NOW: i64 = 1_800_000_000;

    fn now() -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(NOW as u64)
    }

    #[test]
    fn unexplained_classes_decide_recent_break_or_older_warning() {
        let t = target(TargetAddr::Tcp {
            host: "127.0.0.1".into(),
            port: 8000,
        });
        let big = "upstream sent too big header while reading response header from upstream";
        // (age of the last line in seconds, message, expected)
        type Case<'a> = (i64, &'a str, Option<(Status, CauseId)>);
        let cases: &[Case] = &[
            (10, big, Some((Status::Break, CauseId::UpstreamHeaderTooBig))),
            (3000, big, Some((Status::Warning, CauseId::UpstreamHeaderTooBig))),
            (10, "upstream timed out (110: Connection timed out) while reading response header from upstream", Some((Status::Break, CauseId::UpstreamTimeout))),
            (10, "upstream prematurely closed connection while reading response header from upstream", Some((Status::Break, CauseId::UpstreamReset))),
            (10, "connect() failed (11: Resource temporarily unavailable) while connecting to upstream", Some((Status::Break, CauseId::PoolExhausted))),
            // Cleared by a backend that listens now.
            (10, "connect() failed (111: Connection refused) while connecting to upstream", None),
            // Packets dropped: points at the firewall, but no rule is named yet.
            (10, "connect() failed (110: Connection timed out) while connecting to upstream", Some((Status::Break, CauseId::Unknown))),
        ];
        for (age, msg, want) in cases {
            let sources = Sources::with_error_logs(logs_with(vec![at(
                NOW - age,
                "http://127.0.0.1:8000/",
                msg,
            )]));
            let got = unexplained(&t, &sources, now()).map(|(s, v)| (s, v.cause));
            assert_eq!(got, *want, "{msg} {age}s ago");
        }
    }

    #[test]
    fn a_permission_denial_is_cleared_only_by_a_later_change_of_the_socket() {
        let dir = tempfile::tempdir().expect("tmp");
        let sock = dir.path().join("app.sock");
        let _l = std::os::unix::net::UnixListener::bind(&sock).expect("bind");
        let ctime = std::fs::metadata(&sock).map(|m| m.ctime()).expect("stat");
        let t = target(TargetAddr::Unix(sock.clone()));
        let up = format!("fastcgi://unix:{}:", sock.display());
        let msg = format!(
            "connect() to unix:{} failed (13: Permission denied) while connecting to upstream",
            sock.display()
        );
        let now = SystemTime::now();
        // Denied before the socket last changed: fixed since.
        let before = Sources::with_error_logs(logs_with(vec![at(ctime - 5, &up, &msg)]));
        assert!(unexplained(&t, &before, now).is_none());
        // Denied after: the mode that allows the worker was already there.
        let after = Sources::with_error_logs(logs_with(vec![at(ctime + 5, &up, &msg)]));
        let (status, v) = unexplained(&t, &after, now).expect("unexplained denial");
        assert_eq!((status, v.cause), (Status::Break, CauseId::Unknown));
        assert!(v.summary.contains("SELinux"), "{}", v.summary);
    }

    #[test]
    fn no_live_upstreams_counts_for_every_member_of_the_block() {
        let mut t = target(TargetAddr::Tcp {
            host: "127.0.0.1".into(),
            port: 8001,
        });
        t.name = Some("app".into());
        let msg = "no live upstreams while connecting to upstream, client: 1.2.3.4, server: a, request: \"GET / HTTP/1.1\", upstream: \"http://app/\"";
        let logs = logs_with(vec![at(NOW - 10, "http://app/", msg)]);
        let seen_here = seen(&t, &logs);
        assert_eq!(seen_here.len(), 1);
        assert_eq!(seen_here[0].class, UpstreamErrorClass::NoLiveUpstreams);
        t.name = Some("ap".into());
        assert!(
            seen(&t, &logs).is_empty(),
            "a prefix of the block name is another block"
        );
    }

    #[test]
    fn other_upstreams_lines_are_not_counted() {
        let t = target(TargetAddr::Tcp {
            host: "127.0.0.1".into(),
            port: 8000,
        });
        let sources = Sources::with_error_logs(logs_with(vec![at(
            NOW - 10,
            "http://127.0.0.1:8001/",
            "upstream sent too big header while reading response header from upstream",
        )]));
        assert!(unexplained(&t, &sources, now()).is_none());
        assert!(seen(&t, &sources.error_logs).is_empty());
    }

    #[test]
    fn matches_whole_addresses_only() {
        let l = line(
            "fastcgi://unix:/run/php/a.sock:",
            "connect() to unix:/run/php/a.sock failed (13: Permission denied)",
        );
        assert!(mentions(&l, "unix:/run/php/a.sock"));
        assert!(!mentions(&l, "unix:/run/php/a.so"));
        let t = line(
            "http://127.0.0.1:8000/",
            "connect() failed (111: Connection refused)",
        );
        assert!(mentions(&t, "127.0.0.1:8000"));
        assert!(!mentions(&t, "127.0.0.1:800"));
        assert!(!mentions(&t, "27.0.0.1:8000"));
    }
}

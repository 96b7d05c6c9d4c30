//! Step `error_log`: what nginx's error log says about this upstream. Evidence, not a gate:
//! the walk goes on whatever it finds. After the walk, an error class that no probe explains
//! or clears becomes the verdict (`unexplained`), so the log steers the answer.

use std::time::{Duration, SystemTime};

use why502_model::{CauseId, Outcome, Status, StepId, Verdict};
use why502_nginx::errorlog::{describe_line, UpstreamErrorClass};

use super::{JudgeCx, StepFinding};
use crate::facts::{ClassSeen, TargetFacts};
use crate::sources::Sources;
use crate::targets::{TargetAddr, UpstreamTarget};

/// Errors newer than this are "happening now": unexplained by the probes, they are the break.
/// Older ones in the window are a risk (warning): the backend failed recently and may again.
pub const RECENT: Duration = Duration::from_secs(300);

/// What makes an unreadable error log readable: for a non-root agent, the log's group; for
/// root, only a log that is a regular file in a place nginx can write.
pub fn unreadable_fix(sources: &Sources) -> &'static str {
    if sources.as_root {
        "Point error_log at a regular file (not a FIFO, device or directory) and reload nginx, or pass --error-log PATH."
    } else {
        "Run why502 as root, or as a member of the group that owns nginx's logs (adm on Debian and Ubuntu)."
    }
}

pub fn judge(_target: &UpstreamTarget, cx: &JudgeCx<'_>) -> StepFinding {
    let logs = &cx.sources.error_logs;
    if logs.windows.is_empty() {
        let why = if logs.unreadable.is_empty() {
            "no error_log file to read".to_string()
        } else {
            logs.unreadable.join("; ")
        };
        return StepFinding::unknown(format!("cannot read nginx's error log: {why}"))
            .with_fix(unreadable_fix(cx.sources));
    }
    let classes = &cx.facts.logged;
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
            .with_fix(unreadable_fix(cx.sources));
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
        .map(|c| format!("{} ({})", describe_line(c.class, &c.last.message), c.when()))
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
    facts: &TargetFacts,
    now: SystemTime,
) -> Option<(Status, Verdict)> {
    let ctime = facts.reach.as_ref().and_then(|r| r.socket_ctime());
    let Some(c) = facts
        .logged
        .iter()
        .rev()
        .find(|c| !cleared(c, target, ctime))
    else {
        return recovered(facts, now);
    };
    // A connection closed next to a PHP fatal error is that error's doing.
    let c = match c.class {
        UpstreamErrorClass::Reset => facts
            .logged
            .iter()
            .find(|a| {
                a.class == UpstreamErrorClass::AppError && (a.last.time - c.last.time).abs() <= 5
            })
            .unwrap_or(c),
        _ => c,
    };
    let (cause, meaning, fix) = meaning(c, target);
    let age = now
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64 - c.last.time)
        .unwrap_or(0)
        .max(0) as u64;
    // A PHP fatal error php-fpm answered (a 500 page) is the application's error, not a 502:
    // a break only when nginx also lost the response (the worker died, the stream closed).
    let answered = c.class == UpstreamErrorClass::AppError
        && !facts.logged.iter().any(|o| {
            o.class == UpstreamErrorClass::Reset && (o.last.time - c.last.time).abs() <= 5
        });
    let recent = Duration::from_secs(age) <= RECENT && !answered;
    let status = if recent {
        Status::Break
    } else {
        Status::Warning
    };
    let tense = if answered {
        "php-fpm answered these requests with its error page (a 500, not a 502)".to_string()
    } else if recent {
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
        describe_line(c.class, &c.last.message),
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

/// Failures the probes cleared (the backend listens and answers now) that nginx logged in the
/// last few minutes: recovered is not ok. A flapping backend is what an operator needs to
/// hear about: a warning with the count and the times.
fn recovered(facts: &TargetFacts, now: SystemTime) -> Option<(Status, Verdict)> {
    use UpstreamErrorClass::*;
    let now_secs = now
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    let age = |c: &ClassSeen| Duration::from_secs((now_secs - c.last.time).max(0) as u64);
    let c = facts
        .logged
        .iter()
        .rev()
        .find(|c| c.class != PrimaryScriptUnknown && age(c) <= RECENT)?;
    let cause = match c.class {
        NoSuchFile => CauseId::SocketMissing,
        PermissionDenied => CauseId::SocketPermission,
        _ => CauseId::BackendDown,
    };
    Some((
        Status::Warning,
        Verdict {
            step: StepId::ErrorLog,
            cause,
            summary: format!(
                "nginx logged {} for this upstream {} ({} ago), none since; the backend answers now: it recovered, or it flaps",
                describe_line(c.class, &c.last.message),
                c.when(),
                humantime::format_duration(age(c))
            ),
            fix: format!(
                "Find out why it failed until {}: the backend's log and restarts around then, and whether something stops it again.",
                c.last.stamp
            ),
            evidence: vec![c.evidence()],
        },
    ))
}

/// Classes the probes that passed have cleared.
fn cleared(c: &ClassSeen, target: &UpstreamTarget, socket_ctime: Option<i64>) -> bool {
    use UpstreamErrorClass::*;
    match c.class {
        // backend_up passed: it listens and may be reached now.
        NoSuchFile | ConnectionRefused => true,
        // A socket changed after the last denial (chmod, chown, re-created by a restart) was
        // fixed; one unchanged since was denied with the mode it has now: not a mode problem.
        PermissionDenied => match &target.addr {
            TargetAddr::Unix(_) => socket_ctime.is_some_and(|t| t >= c.last.time),
            TargetAddr::Tcp { .. } => false,
        },
        // Not a 502.
        PrimaryScriptUnknown => true,
        _ => false,
    }
}

/// The protocol a pass speaks to its backend, for the words of a protocol error.
fn protocol_of(t: &UpstreamTarget) -> &'static str {
    match t.references.first().map(|r| r.directive.as_str()) {
        Some("fastcgi_pass") => "FastCGI",
        Some("grpc_pass") => "gRPC (HTTP/2)",
        Some("uwsgi_pass") => "uwsgi",
        Some("scgi_pass") => "SCGI",
        _ => "the protocol nginx speaks to it",
    }
}

/// Every cause a logged class may end in: what the error_log step names for it (`meaning`,
/// `recovered`) and what the steps after it conclude from the same failure (a refusal is a
/// stopped backend or a stale socket; a denial a socket mode or a security module). One
/// declaration; the table of nginx's own messages (nginx/testdata/upstream_messages.tsv) is
/// checked against it, and `meaning` may not leave it.
pub fn causes_of(class: UpstreamErrorClass) -> &'static [CauseId] {
    use CauseId as C;
    use UpstreamErrorClass::*;
    match class {
        NoSuchFile => &[
            C::BackendDown,
            C::SocketMissing,
            C::AddressMismatch,
            C::Unknown,
        ],
        PermissionDenied => &[
            C::SocketPermission,
            C::SelinuxDenied,
            C::ApparmorDenied,
            C::Unknown,
        ],
        ConnectionRefused => &[
            C::BackendDown,
            C::SocketStale,
            C::FirewallBlocked,
            C::Unknown,
        ],
        ListenQueueFull => &[C::PoolExhausted],
        ConnectTimeout => &[C::FirewallBlocked, C::Unknown],
        ReadTimeout => &[C::UpstreamTimeout],
        // A close mid-response: the backend's doing, its worker's death (a fatal error, an
        // OOM kill), a pool that closes what it cannot serve, or a backend going away.
        Reset => &[
            C::UpstreamReset,
            C::AppError,
            C::OomKilled,
            C::PoolExhausted,
            C::BackendDown,
        ],
        TooBigHeader => &[C::UpstreamHeaderTooBig],
        InvalidResponse | ProtocolError => &[C::UpstreamInvalidResponse],
        NoLiveUpstreams => &[C::BackendDown],
        Tls => &[C::UpstreamTls],
        Dns => &[C::UpstreamDns],
        NoRoute => &[C::FirewallBlocked, C::Unknown],
        // A 404 (or 403) php-fpm answers itself: no 502 to explain.
        PrimaryScriptUnknown => &[C::None],
        TempFile => &[C::NginxTempPath],
        TempFileNoSpace => &[C::DiskFull, C::InodesExhausted],
        AppError => &[C::AppError],
        ConnectNotPermitted => &[C::FirewallBlocked],
        LocalPortsExhausted | ConfigError | Other => &[C::Unknown],
    }
}

/// The cause a class stands for, what it means here (with nginx's limit where one applies),
/// and the fix.
fn meaning(c: &ClassSeen, t: &UpstreamTarget) -> (CauseId, String, String) {
    use UpstreamErrorClass::*;
    let s = &t.settings;
    let secs = |d: Duration| humantime::format_duration(d).to_string();
    match c.class {
        ListenQueueFull => (
            CauseId::PoolExhausted,
            "the backend's workers were all busy and its listen queue full".to_string(),
            CauseId::PoolExhausted.fix().to_string(),
        ),
        NoLiveUpstreams => (
            CauseId::BackendDown,
            "nginx had marked every server of the upstream block failed (max_fails within fail_timeout) after the errors logged before it: those say why".to_string(),
            "Read the errors logged just before `no live upstreams` for this block's servers; each server comes back after fail_timeout once it answers.".to_string(),
        ),
        ProtocolError => (
            CauseId::UpstreamInvalidResponse,
            format!(
                "the backend does not speak {} (e.g. `fastcgi_pass` to an HTTP server, `grpc_pass` to an HTTP/1 port)",
                protocol_of(t)
            ),
            format!(
                "Point {} at a backend that speaks {}, or use the pass that matches what listens there.",
                t.references.first().map(|r| format!("{} ({}:{})", r.directive, r.file, r.line)).unwrap_or_else(|| "the pass".to_string()),
                protocol_of(t)
            ),
        ),
        ConnectNotPermitted => (
            CauseId::FirewallBlocked,
            "the kernel refused nginx's own connect (1: Operation not permitted): a local packet-filter rule on the output path, or a policy (BPF, Landlock, seccomp) confining nginx".to_string(),
            "Find the rule that rejects nginx's outgoing connection: `nft list ruleset` (output chain), `iptables -S OUTPUT`; or the policy confining nginx.".to_string(),
        ),
        LocalPortsExhausted => (
            CauseId::Unknown,
            "nginx found no local port to connect from (99: Cannot assign requested address): its short connections to the backend hold the ephemeral ports in TIME_WAIT".to_string(),
            "Keep connections to the backend open: an `upstream` block with `keepalive 32;`, and `proxy_http_version 1.1;` with `proxy_set_header Connection \"\";`; or widen net.ipv4.ip_local_port_range.".to_string(),
        ),
        ConfigError => (
            CauseId::Unknown,
            "nginx could not form the upstream address from a variable in its config (`no port in upstream`, `invalid URL prefix`): a 500 from the config, not the backend".to_string(),
            "Make the pass's variable always give a full address (scheme, host and port), or give a `resolver` and a port.".to_string(),
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
        TempFile | TempFileNoSpace => {
            let file = why502_nginx::errorlog::temp_file_path(&c.last.message).unwrap_or("?");
            let dir = std::path::Path::new(file)
                .ancestors()
                .find(|a| {
                    a.file_name().is_some_and(|n| {
                        let n = n.to_string_lossy();
                        n.ends_with("temp") || matches!(n.as_ref(), "proxy" | "fastcgi" | "uwsgi" | "scgi" | "body")
                    })
                })
                .map(|a| a.display().to_string())
                .unwrap_or_else(|| file.to_string());
            if c.class == TempFileNoSpace {
                (
                    CauseId::DiskFull,
                    format!("the filesystem of nginx's own temp file {file} is full: nginx, not the backend, cannot buffer the response"),
                    format!("Free space on the filesystem holding {dir} (or point the *_temp_path elsewhere), then reload nginx."),
                )
            } else {
                (
                    CauseId::NginxTempPath,
                    format!("nginx could not write its own temp file {file}: the failure is nginx's temp directory {dir}, not the backend"),
                    format!("Make {dir} writable by nginx's worker user (e.g. `chown -R www-data: {dir}`), or point the *_temp_path elsewhere, then reload nginx."),
                )
            }
        }
        AppError => (
            CauseId::AppError,
            format!(
                "the application failed: {}",
                why502_nginx::errorlog::php_message(&c.last.message).unwrap_or(&c.last.message)
            ),
            CauseId::AppError.fix().to_string(),
        ),
        PrimaryScriptUnknown => (
            CauseId::None,
            "php-fpm found no script to run and answered 404 itself: not a 502".to_string(),
            "Check SCRIPT_FILENAME (`$document_root$fastcgi_script_name`) and the root.".to_string(),
        ),
        NoSuchFile | ConnectionRefused | NoRoute | Other => (
            CauseId::Unknown,
            "no probe of this version explains it".to_string(),
            CauseId::Unknown.fix().to_string(),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `meaning` names, for every class, a cause `causes_of` declares for it.
    #[test]
    fn each_class_means_a_cause_it_declares() {
        let t = target(TargetAddr::Unix("/run/php/x.sock".into()));
        for class in UpstreamErrorClass::ALL {
            let mut l = error_line("fastcgi://unix:/run/php/x.sock:", "upstream failed");
            l.class = Some(class);
            let seen = ClassSeen {
                class,
                count: 1,
                first: l.clone(),
                last: l,
                last_source: "test".into(),
            };
            let (cause, meaning, fix) = meaning(&seen, &t);
            assert!(
                causes_of(class).contains(&cause),
                "{class:?} means {cause:?}, not among {:?}",
                causes_of(class)
            );
            assert!(!meaning.is_empty() && !fix.is_empty(), "{class:?}");
            // And the tree declares it for this step (a 404 names no cause at all).
            let declared = crate::tree::TREE
                .iter()
                .find(|s| s.id == StepId::ErrorLog)
                .map(|s| s.causes)
                .unwrap_or_default();
            assert!(
                cause == CauseId::None || declared.contains(&cause),
                "{class:?}: error_log may not name {cause:?}"
            );
        }
    }

    /// Every message of the table of nginx's own (nginx/testdata/upstream_messages.tsv):
    /// the cause the table's expert gives is one its class may end in, and a line that is
    /// no failure (class none) is one the table gives no cause.
    #[test]
    fn the_table_of_nginx_messages_agrees_with_the_catalog() {
        let text = include_str!("../../../nginx/testdata/upstream_messages.tsv");
        let mut rows = 0;
        let mut wrong = Vec::new();
        for line in text.lines().skip(1).filter(|l| !l.trim().is_empty()) {
            let f: Vec<&str> = line.split('\t').collect();
            let (source, level, message, cause) = (f[0], f[2], f[3], f[6]);
            rows += 1;
            assert!(
                why502_model::CAUSES.iter().any(|c| c.name == cause),
                "{source}: cause {cause} is not in the catalog"
            );
            let class = why502_nginx::errorlog::classify_line(level, message);
            let allowed: Vec<&str> = match class {
                Some(c) => causes_of(c).iter().map(|c| c.as_str()).collect(),
                None => vec!["none"],
            };
            if !allowed.contains(&cause) {
                wrong.push(format!("{source} {message}\n    {class:?} may end in {allowed:?}, the table says {cause}"));
            }
        }
        assert!(rows >= 80);
        assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    }
    use crate::facts::errorlog::{seen, wanted_keys, ErrorLogs};
    use crate::facts::Reach;
    use crate::test_support::{error_line, target};
    use why502_nginx::errorlog::{ErrorLogLine, ErrorLogWindow};

    fn facts_for(t: &UpstreamTarget, logs: &ErrorLogs, ctime: Option<i64>) -> TargetFacts {
        TargetFacts {
            logged: seen(t, logs, &wanted_keys(std::slice::from_ref(t))),
            reach: ctime.map(|ctime| Reach::Unix {
                access: why502_socket::SocketAccess::Unknown {
                    reason: "test".into(),
                },
                listeners: Vec::new(),
                owner: None,
                ctime: Some(ctime),
            }),
            ..TargetFacts::default()
        }
    }

    fn logs_with(lines: Vec<ErrorLogLine>) -> ErrorLogs {
        ErrorLogs {
            windows: vec![ErrorLogWindow {
                source: "/var/log/nginx/error.log".into(),
                lines,
                ..ErrorLogWindow::default()
            }],
            since_text: "1h".into(),
            ..ErrorLogs::default()
        }
    }

    fn at(time: i64, upstream: &str, message: &str) -> ErrorLogLine {
        ErrorLogLine {
            time,
            class: why502_nginx::errorlog::classify_line("error", message),
            ..error_line(upstream, message)
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
            // Cleared by a backend that listens now, but recent: recovered is not ok.
            (10, "connect() failed (111: Connection refused) while connecting to upstream", Some((Status::Warning, CauseId::BackendDown))),
            // Cleared, and long enough ago: nothing to say.
            (3000, "connect() failed (111: Connection refused) while connecting to upstream", None),
            // Packets dropped: points at the firewall, but no rule is named yet.
            (10, "connect() failed (110: Connection timed out) while connecting to upstream", Some((Status::Break, CauseId::Unknown))),
            // nginx's own temp file, not the backend's socket.
            (10, "open() \"/var/lib/nginx/proxy/1/00/0000000001\" failed (13: Permission denied) while reading upstream", Some((Status::Break, CauseId::NginxTempPath))),
            (10, "pwritev() \"/var/lib/nginx/proxy/2/00/0000000002\" failed (28: No space left on device) while reading upstream", Some((Status::Break, CauseId::DiskFull))),
        ];
        for (age, msg, want) in cases {
            let logs = logs_with(vec![at(NOW - age, "http://127.0.0.1:8000/", msg)]);
            let got =
                unexplained(&t, &facts_for(&t, &logs, None), now()).map(|(s, v)| (s, v.cause));
            assert_eq!(got, *want, "{msg} {age}s ago");
        }
    }

    #[test]
    fn a_permission_denial_is_cleared_only_by_a_later_change_of_the_socket() {
        // The socket's ctime as the gather layer saw it.
        let ctime = NOW - 60;
        let sock = std::path::PathBuf::from("/run/php/app.sock");
        let t = target(TargetAddr::Unix(sock.clone()));
        let up = format!("fastcgi://unix:{}:", sock.display());
        let msg = format!(
            "connect() to unix:{} failed (13: Permission denied) while connecting to upstream",
            sock.display()
        );
        let now = now();
        // Denied before the socket last changed: fixed since.
        let before = logs_with(vec![at(ctime - 5, &up, &msg)]);
        // Fixed since: recovered, which is a warning (a minute ago), not the break.
        let fixed =
            unexplained(&t, &facts_for(&t, &before, Some(ctime)), now).map(|(s, v)| (s, v.cause));
        assert_eq!(fixed, Some((Status::Warning, CauseId::SocketPermission)));
        // Denied after: the mode that allows the worker was already there.
        let after = logs_with(vec![at(ctime + 5, &up, &msg)]);
        let (status, v) =
            unexplained(&t, &facts_for(&t, &after, Some(ctime)), now).expect("unexplained denial");
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
        let mut other = t.clone();
        other.name = Some("ap".into());
        let wanted = wanted_keys(&[t.clone(), other]);
        let seen_here = seen(&t, &logs, &wanted);
        assert_eq!(seen_here.len(), 1);
        assert_eq!(seen_here[0].class, UpstreamErrorClass::NoLiveUpstreams);
        t.name = Some("ap".into());
        assert!(
            seen(&t, &logs, &wanted).is_empty(),
            "a prefix of the block name is another block"
        );
    }

    #[test]
    fn a_php_fatal_error_is_the_applications_a_break_only_when_nginx_lost_the_response() {
        let t = target(TargetAddr::Unix("/run/php/php8.2-fpm.sock".into()));
        let fatal = "FastCGI sent in stderr: \"PHP message: PHP Fatal error:  Allowed memory size of 134217728 bytes exhausted (tried to allocate 20480 bytes) in /var/www/app/index.php on line 12\" while reading response header from upstream, client: 1.2.3.4, server: a, request: \"GET / HTTP/1.1\", upstream: \"fastcgi://unix:/run/php/php8.2-fpm.sock:\"";
        let warning = "FastCGI sent in stderr: \"PHP message: PHP Warning:  Undefined variable $x in /var/www/app/index.php on line 3\" while reading response header from upstream, client: 1.2.3.4, server: a, request: \"GET / HTTP/1.1\", upstream: \"fastcgi://unix:/run/php/php8.2-fpm.sock:\"";
        let closed = "upstream prematurely closed FastCGI stdout while reading response header from upstream, client: 1.2.3.4, server: a, request: \"GET / HTTP/1.1\", upstream: \"fastcgi://unix:/run/php/php8.2-fpm.sock:\"";
        let up = "fastcgi://unix:/run/php/php8.2-fpm.sock:";
        // A warning is no failure at all.
        let logs = logs_with(vec![at(NOW - 10, up, warning)]);
        assert!(facts_for(&t, &logs, None).logged.is_empty());
        // php-fpm answered the fatal error (a 500): the application's error, a warning.
        let logs = logs_with(vec![at(NOW - 10, up, fatal)]);
        let (status, v) = unexplained(&t, &facts_for(&t, &logs, None), now()).expect("verdict");
        assert_eq!((status, v.cause), (Status::Warning, CauseId::AppError));
        assert!(v.summary.contains("Allowed memory size"), "{}", v.summary);
        // The worker died with it and nginx lost the response: a 502, the application's.
        let logs = logs_with(vec![at(NOW - 11, up, fatal), at(NOW - 10, up, closed)]);
        let (status, v) = unexplained(&t, &facts_for(&t, &logs, None), now()).expect("verdict");
        assert_eq!((status, v.cause), (Status::Break, CauseId::AppError));
    }

    #[test]
    fn other_upstreams_lines_are_not_counted() {
        let t = target(TargetAddr::Tcp {
            host: "127.0.0.1".into(),
            port: 8000,
        });
        let logs = logs_with(vec![at(
            NOW - 10,
            "http://127.0.0.1:8001/",
            "upstream sent too big header while reading response header from upstream",
        )]);
        assert!(unexplained(&t, &facts_for(&t, &logs, None), now()).is_none());
        assert!(seen(&t, &logs, &wanted_keys(std::slice::from_ref(&t))).is_empty());
    }
}

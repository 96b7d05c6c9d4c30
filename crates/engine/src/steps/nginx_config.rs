//! Step `nginx_config`: nginx's own `nginx -t`, our parser's errors when nginx cannot be run,
//! and the drift between what is on disk and what the master loaded.

use why502_model::{CauseId, Evidence, HostCheck, Outcome, StepId};
use why502_nginx::check::{CheckMessage, ConfigCheck};
use why502_nginx::config::ParseError;

use super::StepFinding;

/// The host-wide result, computed once and shown in every upstream's walk.
#[derive(Debug, Clone)]
pub struct ConfigFinding {
    pub finding: StepFinding,
    /// Config files modified after the master's last (re)load.
    pub changed_since_load: Vec<String>,
}

/// The nginx_config finding, which only the nginx_config step (and the host checks after the
/// walk) wait for: `nginx -t` runs while every other step of every upstream is walked.
pub type ConfigSlot = crate::slot::Slot<ConfigFinding>;

/// What the nginx_config step says when `nginx -t`'s run was lost (cancelled at the deadline).
pub fn config_not_run() -> ConfigFinding {
    ConfigFinding {
        finding: StepFinding::unknown("nginx -t was not run"),
        changed_since_load: Vec::new(),
    }
}

impl ConfigFinding {
    pub fn per_upstream(&self) -> StepFinding {
        self.finding.clone()
    }

    pub fn host_checks(&self) -> Vec<HostCheck> {
        let f = &self.finding;
        let mut checks = vec![HostCheck {
            step: StepId::NginxConfig,
            outcome: f.outcome,
            cause: f.cause.unwrap_or(CauseId::None),
            summary: f.summary.clone(),
            fix: f.fix.clone(),
            evidence: f.evidence.clone(),
        }];
        if !self.changed_since_load.is_empty() {
            checks.push(HostCheck {
                step: StepId::NginxConfig,
                outcome: Outcome::Warn,
                cause: CauseId::ConfigChangedSinceLoad,
                summary: format!(
                    "{} config file(s) changed after nginx last loaded its configuration: {}",
                    self.changed_since_load.len(),
                    self.changed_since_load.join(", ")
                ),
                fix: Some(CauseId::ConfigChangedSinceLoad.fix().to_string()),
                evidence: self
                    .changed_since_load
                    .iter()
                    .map(|f| Evidence::new(f.clone(), "modified after the master's last (re)load"))
                    .collect(),
            });
        }
        checks
    }
}

/// The finding of a narrowed run (`--server-name`, `--upstream`, without `--all`) that does
/// not re-run `nginx -t`: nothing nginx reads at load (`files` of them: the configuration and
/// its includes, certificates and keys) changed since the workers loaded it at `loaded_at`,
/// and our parse found no error. None: run nginx -t.
pub fn skipped_check(
    unchanged: bool,
    loaded_at: Option<std::time::SystemTime>,
    parse_errors: &[ParseError],
    files: usize,
) -> Option<StepFinding> {
    let loaded = loaded_at?;
    if !unchanged || real_parse_errors(parse_errors) > 0 {
        return None;
    }
    Some(StepFinding::skip(format!(
        "nginx -t not re-run for this view: none of the {files} file(s) nginx reads at load (configuration, includes, certificates) changed since its workers loaded them at {}, and nginx accepted them then; a full run (no --server-name/--upstream) or --all runs nginx -t, which also re-resolves upstream names",
        humantime::format_rfc3339_seconds(loaded)
    )))
}

/// Decide the step from `nginx -t` (authoritative when it ran) and the parser's errors.
/// `as_root`: whether nginx -t ran as root; for another user, a failure that is only nginx
/// being denied the files it opens at start (pid file, logs) says nothing about the config.
pub fn judge(
    check: &ConfigCheck,
    parse_errors: &[ParseError],
    conf: &str,
    as_root: bool,
) -> StepFinding {
    match check {
        ConfigCheck::Failed { messages }
            if real_parse_errors(parse_errors) == 0 && only_runtime_paths(messages) && as_root =>
        {
            let said = first_fatal(messages);
            let mut f = StepFinding::unknown(format!(
                "nginx -t could not create its runtime files ({said}): the pid file, logs and temp paths are on a file system this run may not write (read-only, a hardened unit); that is not about the configuration, and our own parse of {conf} found no error"
            ))
            .with_fix("Run why502 where nginx's pid, log and temp paths are writable (a unit with ReadWritePaths= for them), or check the configuration with `nginx -t` by hand.");
            for m in messages {
                f = f.with_evidence(message_source(m, conf), format!("[{}] {}", m.level, m.text));
            }
            f
        }
        ConfigCheck::Failed { messages }
            if !as_root && real_parse_errors(parse_errors) == 0 && only_denied_opens(messages) =>
        {
            let denied = messages
                .iter()
                .find(|m| m.level == "emerg")
                .or(messages.first())
                .map(|m| m.text.clone())
                .unwrap_or_default();
            let mut f = StepFinding::unknown(format!(
                "nginx -t could not check the configuration as this user: nginx opens its pid file and logs at start and was denied ({denied}); our own parse of {conf} found no error"
            ))
            .with_fix("Run why502 as root (sudo), as nginx -t is run by whoever reloads nginx.");
            for m in messages {
                f = f.with_evidence(message_source(m, conf), format!("[{}] {}", m.level, m.text));
            }
            f
        }
        ConfigCheck::Passed { warnings } => {
            let mut f = StepFinding::pass(format!("nginx -t: the configuration {conf} is valid"));
            for w in warnings {
                f = f.with_evidence(message_source(w, conf), format!("[{}] {}", w.level, w.text));
            }
            f
        }
        ConfigCheck::Failed { messages } => {
            let first = messages
                .iter()
                .find(|m| m.level == "emerg")
                .or(messages.first());
            let summary = match first {
                Some(m) => format!("nginx -t fails: {}", m.text),
                None => "nginx -t fails without a message".to_string(),
            };
            let fix = match first.and_then(|m| Some((m.file.as_ref()?, m.line?))) {
                Some((file, line)) => format!(
                    "Fix {}:{line} ({}), run `nginx -t`, then reload. The running nginx keeps its old configuration until then, but a reload or restart will fail.",
                    file.display(),
                    first.map(|m| m.text.as_str()).unwrap_or_default()
                ),
                None => CauseId::NginxConfigInvalid.fix().to_string(),
            };
            let mut f = StepFinding::broken(CauseId::NginxConfigInvalid, summary).with_fix(fix);
            for m in messages {
                f = f.with_evidence(message_source(m, conf), format!("[{}] {}", m.level, m.text));
            }
            f
        }
        ConfigCheck::NotRun { reason } | ConfigCheck::NotIsolated { reason }
            if real_parse_errors(parse_errors) > 0 =>
        {
            let real: Vec<ParseError> = parse_errors
                .iter()
                .filter(|e| !is_parser_limit(e))
                .cloned()
                .collect();
            parse_failure(&real, reason)
        }
        ConfigCheck::NotIsolated { reason } => {
            StepFinding::unknown(format!(
                "nginx -t was not run: it creates and chowns its pid file, logs and temp directories, and this run could not keep that off the host ({reason}); our own parse of {conf} found no error"
            ))
            .with_fix("Give why502 CAP_SYS_ADMIN (run it as root, or with the unit in packaging/systemd), so nginx -t runs in a throw-away mount namespace; or run `nginx -t` by hand.")
        }
        ConfigCheck::NotRun { reason } => StepFinding::unknown(format!(
            "nginx -t could not run: {reason}; install nginx or run why502 where it is"
        )),
    }
}

/// Every fatal message is an open() or error-log file nginx was refused (13: Permission denied).
/// A parse error that is only our parser's own bound (size, depth, count), not the config's
/// fault: nginx may accept what we could not read whole.
pub fn is_parser_limit(e: &ParseError) -> bool {
    e.is_limit()
}

/// Our parser's errors that are about the configuration (not its own limits).
pub(crate) fn real_parse_errors(errors: &[ParseError]) -> usize {
    errors.iter().filter(|e| !is_parser_limit(e)).count()
}

/// Every fatal message is nginx failing to create or own a runtime path (pid, log, temp
/// directory: no `in FILE:LINE`) because the file system is read-only or denied: the
/// environment of this run, not the configuration.
fn only_runtime_paths(messages: &[CheckMessage]) -> bool {
    let fatal: Vec<&CheckMessage> = messages
        .iter()
        .filter(|m| matches!(m.level.as_str(), "emerg" | "alert" | "crit"))
        .collect();
    !fatal.is_empty()
        && fatal.iter().all(|m| {
            m.file.is_none()
                && ["open()", "mkdir()", "chown("]
                    .iter()
                    .any(|op| m.text.contains(op))
                && ["(30: ", "(13: ", "(1: "]
                    .iter()
                    .any(|errno| m.text.contains(errno))
        })
}

fn first_fatal(messages: &[CheckMessage]) -> String {
    messages
        .iter()
        .find(|m| m.level == "emerg")
        .or(messages.first())
        .map(|m| m.text.clone())
        .unwrap_or_default()
}

fn only_denied_opens(messages: &[CheckMessage]) -> bool {
    let fatal: Vec<&CheckMessage> = messages
        .iter()
        .filter(|m| matches!(m.level.as_str(), "emerg" | "alert" | "crit"))
        .collect();
    !fatal.is_empty()
        && fatal
            .iter()
            .all(|m| m.text.contains("(13: Permission denied)") && m.text.contains("open"))
}

/// Our parser's verdict, used when `nginx -t` did not run (no binary, or a config nginx itself
/// would choke on: include cycles, huge files).
pub fn parse_failure(errors: &[ParseError], why_not_nginx: &str) -> StepFinding {
    let first = &errors[0];
    let mut f = StepFinding::broken(
        CauseId::NginxConfigInvalid,
        format!("the configuration does not parse: {first}"),
    )
    .with_fix(format!(
        "Fix {} ({}), run `nginx -t`, then reload.",
        first.loc, first.message
    ));
    for e in errors.iter().take(20) {
        f = f.with_evidence(e.loc.to_string(), e.message.clone());
    }
    f.with_evidence("nginx -t", format!("not run: {why_not_nginx}"))
}

fn message_source(m: &CheckMessage, conf: &str) -> String {
    match (&m.file, m.line) {
        (Some(file), Some(line)) => format!("{}:{line}", file.display()),
        _ => format!("nginx -t -c {conf}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;
    use why502_nginx::config::SourceLoc;

    #[test]
    fn a_narrowed_view_skips_nginx_t_only_when_nothing_changed_and_the_parse_is_clean() {
        let loaded =
            Some(std::time::SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_800_000_000));
        let f = skipped_check(true, loaded, &[], 3).expect("skipped");
        assert_eq!(f.outcome, Outcome::Skip);
        assert!(f.summary.contains("none of the 3 file(s)"), "{}", f.summary);
        assert!(f.summary.contains("2027-01-15T08:00:00Z"), "{}", f.summary);
        assert!(
            skipped_check(false, loaded, &[], 3).is_none(),
            "a file changed"
        );
        assert!(
            skipped_check(true, None, &[], 3).is_none(),
            "no load time known"
        );
        let broken = ParseError::syntax(
            SourceLoc {
                file: PathBuf::from("/etc/nginx/nginx.conf").into(),
                line: 3,
            },
            "unexpected \"}\"",
        );
        assert!(
            skipped_check(true, loaded, &[broken], 3).is_none(),
            "our parse found an error"
        );
    }

    #[test]
    fn failed_check_names_file_line() {
        let check = ConfigCheck::Failed {
            messages: vec![CheckMessage {
                level: "emerg".into(),
                text: "unknown directive \"bogus\" in /etc/nginx/nginx.conf:5".into(),
                file: Some(PathBuf::from("/etc/nginx/nginx.conf")),
                line: Some(5),
            }],
        };
        let f = judge(&check, &[], "/etc/nginx/nginx.conf", true);
        assert_eq!(f.outcome, Outcome::Break);
        assert_eq!(f.cause, Some(CauseId::NginxConfigInvalid));
        assert_eq!(f.evidence[0].source, "/etc/nginx/nginx.conf:5");
        assert!(f
            .fix
            .as_deref()
            .unwrap_or("")
            .contains("/etc/nginx/nginx.conf:5"));
    }

    #[test]
    fn denied_opens_as_another_user_are_unknown_not_a_broken_config() {
        // nginx 1.22 run by nobody on Debian's stock config.
        let check = ConfigCheck::Failed {
            messages: vec![
                CheckMessage {
                    level: "warn".into(),
                    text: "the \"user\" directive makes sense only if the master process runs with super-user privileges, ignored in /etc/nginx/nginx.conf:1".into(),
                    file: Some(PathBuf::from("/etc/nginx/nginx.conf")),
                    line: Some(1),
                },
                CheckMessage {
                    level: "emerg".into(),
                    text: "open() \"/run/nginx.pid\" failed (13: Permission denied)".into(),
                    file: None,
                    line: None,
                },
            ],
        };
        let f = judge(&check, &[], "/etc/nginx/nginx.conf", false);
        assert_eq!(f.outcome, Outcome::Unknown);
        assert!(f.summary.contains("/run/nginx.pid"), "{}", f.summary);
        assert!(f.fix.as_deref().unwrap_or("").contains("root"));
        // As root too, a denied pid file is the run's environment, never nginx_config_invalid;
        // a denied open beside a syntax error is not only a denied open.
        assert_eq!(
            judge(&check, &[], "/etc/nginx/nginx.conf", true).outcome,
            Outcome::Unknown
        );
        let mut both = check.clone();
        if let ConfigCheck::Failed { messages } = &mut both {
            messages.push(CheckMessage {
                level: "emerg".into(),
                text: "unknown directive \"bogus\" in /etc/nginx/nginx.conf:5".into(),
                file: Some(PathBuf::from("/etc/nginx/nginx.conf")),
                line: Some(5),
            });
        }
        assert_eq!(
            judge(&both, &[], "/etc/nginx/nginx.conf", false).outcome,
            Outcome::Break
        );
    }

    #[test]
    fn our_parsers_limits_are_not_an_invalid_config() {
        let limit = ParseError::limit(
            SourceLoc {
                file: PathBuf::from("/etc/nginx/big.conf").into(),
                line: 1,
            },
            why502_nginx::config::ParseLimit::BlockDepth,
            "blocks nested deeper than the parser's limit",
        );
        // nginx -t accepted it: the step passes (the run's host check says what was not read).
        let f = judge(
            &ConfigCheck::Passed {
                warnings: Vec::new(),
            },
            std::slice::from_ref(&limit),
            "x",
            true,
        );
        assert_eq!(f.outcome, Outcome::Pass);
        // nginx -t did not run: our own limit is no verdict on the config.
        let f = judge(
            &ConfigCheck::NotRun {
                reason: "no nginx binary found".into(),
            },
            &[limit],
            "x",
            true,
        );
        assert_eq!(f.outcome, Outcome::Unknown);
    }

    #[tokio::test]
    async fn the_config_slot_runs_its_work_once_for_every_waiter() {
        let runs = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counted = runs.clone();
        let slot = std::sync::Arc::new(ConfigSlot::pending(
            async move {
                counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                ConfigFinding {
                    finding: StepFinding::pass("nginx -t: ok"),
                    changed_since_load: Vec::new(),
                }
            },
            config_not_run,
        ));
        assert!(slot.get().is_none(), "nothing is in before anyone waits");
        let waiters: Vec<_> = (0..4)
            .map(|_| {
                let slot = slot.clone();
                tokio::spawn(async move { slot.wait().await.finding.summary.clone() })
            })
            .collect();
        for w in waiters {
            assert_eq!(w.await.expect("waiter"), "nginx -t: ok");
        }
        assert_eq!(runs.load(std::sync::atomic::Ordering::SeqCst), 1);
        assert_eq!(slot.get().map(|c| c.finding.outcome), Some(Outcome::Pass));
    }

    #[test]
    fn nginx_t_that_could_not_be_isolated_is_unknown_and_says_what_is_missing() {
        let f = judge(
            &ConfigCheck::NotIsolated {
                reason: "this run lacks CAP_SYS_ADMIN".into(),
            },
            &[],
            "/etc/nginx/nginx.conf",
            true,
        );
        assert_eq!((f.outcome, f.cause), (Outcome::Unknown, None));
        assert!(f.summary.contains("CAP_SYS_ADMIN"), "{}", f.summary);
        assert!(f.fix.as_deref().unwrap_or("").contains("CAP_SYS_ADMIN"));
    }

    #[test]
    fn parse_errors_decide_when_nginx_did_not_run() {
        let errs = vec![ParseError::syntax(
            SourceLoc {
                file: PathBuf::from("/etc/nginx/a.conf").into(),
                line: 3,
            },
            "include cycle",
        )];
        let f = judge(
            &ConfigCheck::NotRun {
                reason: "skipped".into(),
            },
            &errs,
            "x",
            true,
        );
        assert_eq!(f.cause, Some(CauseId::NginxConfigInvalid));
        assert_eq!(f.evidence[0].source, "/etc/nginx/a.conf:3");
    }

    #[test]
    fn a_read_only_runtime_path_is_not_an_invalid_config_even_as_root() {
        let msg = |text: &str| CheckMessage {
            level: "emerg".into(),
            text: text.into(),
            file: None,
            line: None,
        };
        let ro = ConfigCheck::Failed {
            messages: vec![msg(
                "open() \"/run/nginx.pid\" failed (30: Read-only file system)",
            )],
        };
        assert_eq!(judge(&ro, &[], "x", true).outcome, Outcome::Unknown);
        let chown = ConfigCheck::Failed {
            messages: vec![msg(
                "chown(\"/var/lib/nginx/proxy\", 33) failed (1: Operation not permitted)",
            )],
        };
        assert_eq!(judge(&chown, &[], "x", true).outcome, Outcome::Unknown);
        // An include nginx cannot read is the configuration's problem.
        let include = ConfigCheck::Failed {
            messages: vec![CheckMessage {
                file: Some(PathBuf::from("/etc/nginx/nginx.conf")),
                line: Some(12),
                ..msg("open() \"/etc/nginx/conf.d/x.conf\" failed (13: Permission denied) in /etc/nginx/nginx.conf:12")
            }],
        };
        assert_eq!(
            judge(&include, &[], "x", true).cause,
            Some(CauseId::NginxConfigInvalid)
        );
    }

    #[test]
    fn no_nginx_and_clean_parse_is_unknown_not_ok() {
        let f = judge(
            &ConfigCheck::NotRun {
                reason: "`nginx` not found".into(),
            },
            &[],
            "x",
            true,
        );
        assert_eq!(f.outcome, Outcome::Unknown);
    }
}

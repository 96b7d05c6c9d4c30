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
            if !as_root && parse_errors.is_empty() && only_denied_opens(messages) =>
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
        ConfigCheck::NotRun { reason } if !parse_errors.is_empty() => {
            parse_failure(parse_errors, reason)
        }
        ConfigCheck::NotRun { reason } => StepFinding::unknown(format!(
            "nginx -t could not run: {reason}; install nginx or run why502 where it is"
        )),
    }
}

/// Every fatal message is an open() or error-log file nginx was refused (13: Permission denied).
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
        // As root the same failure is real, and a denied open beside a syntax error is not
        // only a denied open.
        assert_eq!(
            judge(&check, &[], "/etc/nginx/nginx.conf", true).outcome,
            Outcome::Break
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
    fn parse_errors_decide_when_nginx_did_not_run() {
        let errs = vec![ParseError {
            loc: SourceLoc {
                file: PathBuf::from("/etc/nginx/a.conf"),
                line: 3,
            },
            message: "include cycle".into(),
        }];
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

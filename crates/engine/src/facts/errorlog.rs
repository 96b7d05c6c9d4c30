//! nginx's error-log lines indexed by upstream: which classes nginx logged about each
//! target, with counts and first and last lines. The windows are read once per run (see
//! `Sources::error_logs`); each upstream only matches against them.

use why502_model::Evidence;
use why502_nginx::errorlog::{ErrorLogLine, ErrorLogWindow, UpstreamErrorClass};

use crate::targets::{TargetAddr, UpstreamTarget};

/// The error logs of the run, read once: each a window or the reason it could not be read.
#[derive(Debug, Default)]
pub struct ErrorLogs {
    pub windows: Vec<ErrorLogWindow>,
    pub unreadable: Vec<String>,
    /// `1h`, for summaries.
    pub since_text: String,
    /// What the report's notes should say about the reading (lines from the future).
    pub notes: Vec<String>,
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
    pub fn evidence(&self) -> Evidence {
        Evidence::new(self.last_source.clone(), self.last.message.clone())
    }
    pub fn when(&self) -> String {
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
    use crate::test_support::error_line;

    #[test]
    fn matches_whole_addresses_only() {
        let l = error_line(
            "fastcgi://unix:/run/php/a.sock:",
            "connect() to unix:/run/php/a.sock failed (13: Permission denied)",
        );
        assert!(mentions(&l, "unix:/run/php/a.sock"));
        assert!(!mentions(&l, "unix:/run/php/a.so"));
        let t = error_line(
            "http://127.0.0.1:8000/",
            "connect() failed (111: Connection refused)",
        );
        assert!(mentions(&t, "127.0.0.1:8000"));
        assert!(!mentions(&t, "127.0.0.1:800"));
        assert!(!mentions(&t, "27.0.0.1:8000"));
    }
}

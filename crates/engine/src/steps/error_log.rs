//! Step `error_log`: what nginx's error log says about this upstream. Evidence, not a gate: the
//! walk goes on whatever it finds, and its lines are quoted beside the break they explain.

use std::collections::BTreeMap;

use why502_model::Outcome;
use why502_nginx::errorlog::{classify, ErrorLogLine, ErrorLogWindow, UpstreamErrorClass};

use super::{StepContext, StepFinding};
use crate::targets::{TargetAddr, UpstreamTarget};

/// The error logs of the run, read once: each a window or the reason it could not be read.
#[derive(Debug, Default)]
pub struct ErrorLogs {
    pub windows: Vec<ErrorLogWindow>,
    pub unreadable: Vec<String>,
    /// `1h`, for summaries.
    pub since_text: String,
}

pub fn check(target: &UpstreamTarget, cx: &StepContext<'_>) -> StepFinding {
    let logs = &cx.sources.error_logs;
    if logs.windows.is_empty() {
        let why = if logs.unreadable.is_empty() {
            "no error_log file to read".to_string()
        } else {
            logs.unreadable.join("; ")
        };
        return StepFinding::unknown(format!("cannot read nginx's error log: {why}"));
    }
    let needles = needles(target);
    let mut hits: Vec<(&ErrorLogWindow, &ErrorLogLine, UpstreamErrorClass)> = Vec::new();
    for w in &logs.windows {
        for l in &w.lines {
            if !needles.iter().any(|n| mentions(l, n)) {
                continue;
            }
            if let Some(class) = classify(&l.message) {
                hits.push((w, l, class));
            }
        }
    }
    let read: Vec<String> = logs
        .windows
        .iter()
        .map(|w| w.source.display().to_string())
        .collect();
    if hits.is_empty() {
        return StepFinding::pass(format!(
            "no errors about this upstream in the last {} of {}",
            logs.since_text,
            read.join(", ")
        ));
    }
    hits.sort_by_key(|(_, l, _)| l.time);
    let mut by_class: BTreeMap<&'static str, usize> = BTreeMap::new();
    for (_, _, c) in &hits {
        *by_class.entry(c.describe()).or_default() += 1;
    }
    let (_, last, last_class) = hits[hits.len() - 1];
    let kinds = if by_class.len() == 1 {
        last_class.describe().to_string()
    } else {
        by_class
            .iter()
            .map(|(d, n)| format!("{n}× {d}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let mut f = StepFinding::new(
        Outcome::Warn,
        None,
        format!(
            "nginx logged {} error(s) about this upstream in the last {}, the last at {}: {kinds}",
            hits.len(),
            logs.since_text,
            last.stamp,
        ),
    );
    for (w, l, _) in hits.iter().rev().take(3) {
        f = f.with_evidence(
            format!("{} @ {}", w.source.display(), l.stamp),
            l.message.clone(),
        );
    }
    f
}

/// How nginx names this upstream in its log lines: `unix:/path` or `host:port`.
fn needles(t: &UpstreamTarget) -> Vec<String> {
    match &t.addr {
        TargetAddr::Unix(p) => vec![format!("unix:{}", p.display())],
        TargetAddr::Tcp { .. } => vec![t.address.clone()],
    }
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
        }
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

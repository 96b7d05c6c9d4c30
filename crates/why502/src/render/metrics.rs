//! Prometheus text exposition and the monitoring-plugin (Nagios) line.

use std::fmt::Write;

use why502_model::{Report, Status};

fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

pub fn prometheus(r: &Report) -> String {
    let mut o = String::new();
    let _ = writeln!(
        o,
        "# HELP why502_status Overall status: 0 ok, 1 warning, 2 break, 3 unknown."
    );
    let _ = writeln!(o, "# TYPE why502_status gauge");
    let _ = writeln!(o, "why502_status {}", r.status.exit_code());
    let _ = writeln!(
        o,
        "# HELP why502_upstream_status Status per upstream: 0 ok, 1 warning, 2 break, 3 unknown."
    );
    let _ = writeln!(o, "# TYPE why502_upstream_status gauge");
    for u in &r.upstreams {
        let _ = writeln!(
            o,
            "why502_upstream_status{{address=\"{}\",name=\"{}\",step=\"{}\",cause=\"{}\"}} {}",
            escape(&u.address),
            escape(u.name.as_deref().unwrap_or("")),
            u.verdict.step,
            u.verdict.cause,
            u.status.exit_code()
        );
    }
    // The words of each verdict that is not ok, for alert annotations (joined on address).
    let _ = writeln!(
        o,
        "# HELP why502_upstream_verdict_info The verdict of an upstream that is not ok: its cause, step and fix (value 1)."
    );
    let _ = writeln!(o, "# TYPE why502_upstream_verdict_info gauge");
    for u in r.upstreams.iter().filter(|u| u.status != Status::Ok) {
        let _ = writeln!(
            o,
            "why502_upstream_verdict_info{{address=\"{}\",step=\"{}\",cause=\"{}\",fix=\"{}\"}} 1",
            escape(&u.address),
            u.verdict.step,
            u.verdict.cause,
            escape(&u.verdict.fix)
        );
    }
    // The access log's counts over the window, where the report has them.
    let with_traffic: Vec<_> = r
        .upstreams
        .iter()
        .filter_map(|u| u.traffic.as_ref().map(|t| (u, t)))
        .collect();
    if !with_traffic.is_empty() {
        for (metric, help) in [
            (
                "why502_upstream_window_requests",
                "Requests the access log shows for the upstream over the window.",
            ),
            ("why502_upstream_window_502", "Of those, answered 502."),
            ("why502_upstream_window_504", "Of those, answered 504."),
        ] {
            let _ = writeln!(o, "# HELP {metric} {help}");
            let _ = writeln!(o, "# TYPE {metric} gauge");
            for (u, t) in &with_traffic {
                let v = match metric {
                    "why502_upstream_window_requests" => t.requests,
                    "why502_upstream_window_502" => t.status_502,
                    _ => t.status_504,
                };
                let _ = writeln!(
                    o,
                    "{metric}{{address=\"{}\",by=\"{}\"}} {v}",
                    escape(&u.address),
                    t.by
                );
            }
        }
    }
    let _ = writeln!(
        o,
        "# HELP why502_host_check Host-wide checks: 0 ok, 1 warning, 2 break, 3 unknown."
    );
    let _ = writeln!(o, "# TYPE why502_host_check gauge");
    for h in &r.host_checks {
        let code = Report::compute_status(&[], std::slice::from_ref(h)).exit_code();
        let _ = writeln!(
            o,
            "why502_host_check{{step=\"{}\",cause=\"{}\"}} {code}",
            h.step, h.cause
        );
    }
    let _ = writeln!(o, "# HELP why502_duration_seconds Time the diagnosis took.");
    let _ = writeln!(o, "# TYPE why502_duration_seconds gauge");
    let _ = writeln!(
        o,
        "why502_duration_seconds {:.3}",
        r.duration_ms as f64 / 1000.0
    );
    o
}

/// The first line's length, at most (Nagios and Icinga show it in their overviews).
const FIRST_LINE_MAX: usize = 200;

/// The monitoring-plugin answer: a short first line (state, counts, the first causes with
/// their sites, counts as perfdata), then one line per upstream or host check that is not ok
/// (the long output), then perfdata per upstream (its state, 0-3, and its steps' time). The
/// state is the exit code (0 ok, 1 warning, 2 critical, 3 unknown), so no -w/-c thresholds.
pub fn nagios(r: &Report) -> String {
    let word = match r.status {
        Status::Ok => "OK",
        Status::Warning => "WARNING",
        Status::Break => "CRITICAL",
        Status::Unknown => "UNKNOWN",
    };
    let count = |s: Status| r.upstreams.iter().filter(|u| u.status == s).count();
    let (ok, warn, broken, unknown) = (
        count(Status::Ok),
        count(Status::Warning),
        count(Status::Break),
        count(Status::Unknown),
    );
    let total = r.upstreams.len();
    let perf = format!(
        "upstreams={total} ok={ok} warning={warn} break={broken} unknown={unknown} duration={}ms",
        r.duration_ms
    );
    // Worst first: the causes a person reads first.
    let mut bad: Vec<&why502_model::UpstreamReport> = r
        .upstreams
        .iter()
        .filter(|u| u.status != Status::Ok)
        .collect();
    bad.sort_by_key(|u| match u.status {
        Status::Break => 0,
        Status::Unknown => 1,
        Status::Warning => 2,
        Status::Ok => 3,
    });
    let host_bad: Vec<&why502_model::HostCheck> = r
        .host_checks
        .iter()
        .filter(|h| h.cause != why502_model::CauseId::None)
        .collect();
    let head = match (broken, unknown, warn) {
        (0, 0, 0) if host_bad.is_empty() => format!("{total} upstream(s) ok"),
        (0, 0, 0) => format!("{total} upstream(s) ok; host: {}", host_bad[0].cause),
        (b, _, _) if b > 0 => format!("{b} of {total} upstream(s) broken"),
        (0, u, _) if u > 0 => format!("{u} of {total} upstream(s) could not be diagnosed"),
        _ => format!("{warn} of {total} upstream(s) at risk"),
    };
    let causes: Vec<String> = bad
        .iter()
        .map(|u| format!("{} ({})", u.verdict.cause, site_of(u)))
        .collect();
    let room = FIRST_LINE_MAX.saturating_sub(format!("WHY502 {word} - {head}:  | {perf}").len());
    let mut listed = String::new();
    for (i, c) in causes.iter().enumerate() {
        let more = causes.len() - i - 1;
        let tail = if more > 0 {
            format!(", +{more} more")
        } else {
            String::new()
        };
        let candidate = if listed.is_empty() {
            c.clone()
        } else {
            format!("{listed}, {c}")
        };
        if candidate.chars().count() + tail.chars().count() > room {
            listed = if listed.is_empty() {
                format!("+{} more", causes.len())
            } else {
                format!("{listed}, +{} more", causes.len() - i)
            };
            break;
        }
        listed = candidate;
    }
    let mut first = if listed.is_empty() {
        format!("WHY502 {word} - {head} | {perf}")
    } else {
        format!("WHY502 {word} - {head}: {listed} | {perf}")
    };
    if first.chars().count() > FIRST_LINE_MAX {
        first = first.chars().take(FIRST_LINE_MAX).collect();
    }
    let mut o = first + "\n";
    for u in &bad {
        let _ = writeln!(
            o,
            "{} {} ({}): {} at {}: {}",
            status_word(u.status),
            u.address,
            site_of(u),
            u.verdict.cause,
            u.verdict.step,
            one_line(&u.verdict.summary)
        );
    }
    for h in &host_bad {
        let _ = writeln!(o, "host {}: {} {}", h.step, h.cause, one_line(&h.summary));
    }
    // Perfdata per upstream on the long output's last line: its state and its steps' time.
    let per: Vec<String> = r
        .upstreams
        .iter()
        .map(|u| {
            let label = u.address.replace(['\'', '='], "_");
            let ms: u64 = u.steps.iter().map(|s| s.duration_ms).sum();
            format!(
                "'{label} status'={};1;2;0;3 '{label} time'={ms}ms",
                u.status.exit_code()
            )
        })
        .collect();
    if !per.is_empty() {
        let _ = writeln!(o, "| {}", per.join(" "));
    }
    o
}

fn status_word(s: Status) -> &'static str {
    match s {
        Status::Ok => "OK",
        Status::Warning => "WARNING",
        Status::Break => "CRITICAL",
        Status::Unknown => "UNKNOWN",
    }
}

/// The site an upstream serves, for the first line: its first server_name, else its address.
fn site_of(u: &why502_model::UpstreamReport) -> String {
    u.referenced_by
        .iter()
        .find_map(|r| r.server_name.clone())
        .unwrap_or_else(|| u.address.clone())
}

/// A summary on one line of the long output (a `|` would start perfdata).
fn one_line(s: &str) -> String {
    s.replace(['\n', '\r'], " ").replace('|', "/")
}

#[cfg(test)]
mod tests {
    use super::*;
    use why502_model::*;

    use crate::render::fixtures::{report, upstream};

    #[test]
    fn sixty_sites_one_broken_fit_a_short_first_line() {
        let mut ups: Vec<UpstreamReport> = (0..60)
            .map(|i| upstream(i, Status::Ok, CauseId::None))
            .collect();
        ups[37] = upstream(37, Status::Break, CauseId::SocketPermission);
        let out = nagios(&report(ups));
        let lines: Vec<&str> = out.lines().collect();
        assert!(lines[0].chars().count() <= FIRST_LINE_MAX, "{}", lines[0]);
        assert!(
            lines[0].starts_with("WHY502 CRITICAL - 1 of 60 upstream(s) broken: socket_permission (site37.example) | upstreams=60 ok=59 warning=0 break=1 unknown=0"),
            "{}",
            lines[0]
        );
        // The long output: the broken one, on one line, no pipe before the perfdata.
        assert!(lines[1].starts_with("CRITICAL unix:/run/php/site37.sock (site37.example): socket_permission at backend_up"), "{}", lines[1]);
        assert!(!lines[1].contains('|'));
        assert_eq!(lines.len(), 3, "{out}");
        assert!(
            lines[2].starts_with("| 'unix:/run/php/site0.sock status'=0;1;2;0;3"),
            "{}",
            lines[2]
        );
        assert_eq!(lines[2].matches(" status'=").count(), 60);
    }

    /// The packaged alerting rules use only metrics the agent writes.
    #[test]
    fn the_alert_rules_read_metrics_the_agent_writes() {
        let rules = include_str!("../../../../packaging/prometheus/why502-rules.yml");
        let mut ups = vec![upstream(0, Status::Break, CauseId::SocketPermission)];
        ups.push(upstream(1, Status::Ok, CauseId::None));
        let text = prometheus(&report(ups))
            + &crate::output::last_run(true, std::time::SystemTime::UNIX_EPOCH);
        let mut names: Vec<&str> = rules
            .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .filter(|w| w.starts_with("why502_"))
            .collect();
        names.sort_unstable();
        names.dedup();
        assert!(names.len() >= 5, "{names:?}");
        for n in names {
            assert!(
                text.lines()
                    .any(|l| l.starts_with(&format!("{n}{{")) || l.starts_with(&format!("{n} "))),
                "the rules use {n}, which the agent does not write:\n{text}"
            );
        }
        // The fix an alert quotes is the verdict's.
        assert!(text.contains("why502_upstream_verdict_info{address=\"unix:/run/php/site0.sock\",step=\"backend_up\",cause=\"socket_permission\",fix=\"fix\"} 1"), "{text}");
        assert!(
            !text.contains("site1.sock\",step"),
            "an ok upstream has no verdict info:\n{text}"
        );
    }

    #[test]
    fn many_broken_are_counted_not_listed_past_the_limit() {
        let ups: Vec<UpstreamReport> = (0..60)
            .map(|i| upstream(i, Status::Break, CauseId::BackendDown))
            .collect();
        let out = nagios(&report(ups));
        let first = out.lines().next().unwrap_or_default();
        assert!(first.chars().count() <= FIRST_LINE_MAX, "{first}");
        assert!(
            first.contains("60 of 60 upstream(s) broken: backend_down (site0.example)"),
            "{first}"
        );
        assert!(first.contains(" more | upstreams=60"), "{first}");
        let ok = nagios(&report(
            (0..3)
                .map(|i| upstream(i, Status::Ok, CauseId::None))
                .collect(),
        ));
        assert_eq!(
            ok.lines().next(),
            Some("WHY502 OK - 3 upstream(s) ok | upstreams=3 ok=3 warning=0 break=0 unknown=0 duration=42ms")
        );
    }
}

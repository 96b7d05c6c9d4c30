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

/// `WHY502 CRITICAL - unix:/x.sock socket_permission: ... | upstreams=2 broken=1`
pub fn nagios(r: &Report) -> String {
    let word = match r.status {
        Status::Ok => "OK",
        Status::Warning => "WARNING",
        Status::Break => "CRITICAL",
        Status::Unknown => "UNKNOWN",
    };
    let problems: Vec<String> = r
        .upstreams
        .iter()
        .filter(|u| u.status != Status::Ok)
        .map(|u| format!("{} {}: {}", u.address, u.verdict.cause, u.verdict.summary))
        .chain(
            r.host_checks
                .iter()
                .filter(|h| h.cause != why502_model::CauseId::None)
                .map(|h| format!("{}: {}", h.cause, h.summary)),
        )
        .collect();
    let text = if problems.is_empty() {
        format!("{} upstream(s) healthy", r.upstreams.len())
    } else {
        problems.join("; ")
    };
    let broken = r
        .upstreams
        .iter()
        .filter(|u| u.status == Status::Break)
        .count();
    format!(
        "WHY502 {word} - {text} | upstreams={} broken={broken} duration={}ms\n",
        r.upstreams.len(),
        r.duration_ms
    )
}

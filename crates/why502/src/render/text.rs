//! The report for a person at 3 a.m.: per upstream the walked path, the break marked, its
//! evidence and its fix; the whole in one glance.

use std::fmt::Write;

use why502_model::{Outcome, Report, Status, StepReport, UpstreamReport};

#[derive(Debug, Clone, Copy)]
pub struct Style {
    pub color: bool,
    pub quiet: bool,
    pub verbose: bool,
}

impl Style {
    fn paint(&self, code: &str, s: &str) -> String {
        if self.color {
            format!("\x1b[{code}m{s}\x1b[0m")
        } else {
            s.to_string()
        }
    }
    fn red(&self, s: &str) -> String {
        self.paint("1;31", s)
    }
    fn green(&self, s: &str) -> String {
        self.paint("32", s)
    }
    fn yellow(&self, s: &str) -> String {
        self.paint("33", s)
    }
    fn dim(&self, s: &str) -> String {
        self.paint("2", s)
    }
    fn bold(&self, s: &str) -> String {
        self.paint("1", s)
    }
}

fn status_mark(st: &Style, s: Status) -> String {
    match s {
        Status::Ok => st.green("OK   "),
        Status::Warning => st.yellow("WARN "),
        Status::Unknown => st.yellow("???  "),
        Status::Break => st.red("BREAK"),
    }
}

fn outcome_mark(st: &Style, o: Outcome) -> String {
    match o {
        Outcome::Pass => st.green("pass "),
        Outcome::Break => st.red("BREAK"),
        Outcome::Warn => st.yellow("warn "),
        Outcome::Skip => st.dim("skip "),
        Outcome::Unknown => st.yellow("???  "),
    }
}

pub fn render(report: &Report, st: &Style) -> String {
    let mut out = String::new();
    if st.quiet {
        for u in report.upstreams.iter().filter(|u| u.status != Status::Ok) {
            let _ = writeln!(
                out,
                "{} {}: {} — {}",
                status_mark(st, u.status),
                u.address,
                u.verdict.cause,
                u.verdict.summary
            );
        }
        for h in report
            .host_checks
            .iter()
            .filter(|h| matches!(h.outcome, Outcome::Break | Outcome::Warn | Outcome::Unknown))
        {
            let _ = writeln!(
                out,
                "{} host {}: {} — {}",
                outcome_mark(st, h.outcome),
                h.step,
                h.cause,
                h.summary
            );
        }
        return out;
    }
    header(&mut out, report, st);
    for u in &report.upstreams {
        upstream(&mut out, u, st);
    }
    let _ = writeln!(out);
    for h in &report.host_checks {
        let show = matches!(h.outcome, Outcome::Break | Outcome::Warn) || st.verbose;
        let row = Row {
            lead: "host  ",
            evidence_indent: 8,
            outcome: h.outcome,
            step: h.step.as_str(),
            summary: &h.summary,
            evidence: &h.evidence,
        };
        row.write(&mut out, st, show);
        if show {
            if let Some(fix) = &h.fix {
                let _ = writeln!(out, "        {} {fix}", st.bold("fix:"));
            }
        }
    }
    for n in &report.notes {
        let _ = writeln!(out, "{}", st.dim(&format!("note: {n}")));
    }
    if st.verbose && !report.phases.is_empty() {
        let phases: Vec<String> = report
            .phases
            .iter()
            .map(|p| format!("{} {:.1} ms", p.phase, p.us as f64 / 1000.0))
            .collect();
        let _ = writeln!(out, "{}", st.dim(&format!("time: {}", phases.join(" · "))));
    }
    footer(&mut out, report, st);
    out
}

fn header(out: &mut String, r: &Report, st: &Style) {
    let n = &r.nginx;
    let master = n
        .master_pid
        .map(|p| format!("master pid {p}"))
        .unwrap_or_else(|| "no running master".to_string());
    let _ = writeln!(
        out,
        "{} on {} — nginx {}, {} ({}), workers as {}",
        st.bold("why502"),
        r.host,
        master,
        n.conf,
        n.conf_source,
        n.worker_user.as_deref().unwrap_or("?")
    );
    if !n.other_masters.is_empty() {
        let others: Vec<String> = n.other_masters.iter().map(|m| m.pid.to_string()).collect();
        let _ = writeln!(
            out,
            "{}",
            st.dim(&format!(
                "other nginx masters (choose with --nginx-pid): {}",
                others.join(", ")
            ))
        );
    }
    let _ = writeln!(out);
}

fn upstream(out: &mut String, u: &UpstreamReport, st: &Style) {
    let refs: Vec<String> = u
        .referenced_by
        .iter()
        .map(|r| {
            let site = r.server_name.as_deref().unwrap_or("_");
            let loc = r
                .location
                .as_deref()
                .map(|l| format!(" {l}"))
                .unwrap_or_default();
            format!("{site}{loc} @ {}:{}", r.file, r.line)
        })
        .collect();
    let name = u
        .name
        .as_deref()
        .map(|n| format!(" [upstream {n}]"))
        .unwrap_or_default();
    let _ = writeln!(
        out,
        "{} {}{} {}",
        status_mark(st, u.status),
        st.bold(&u.address),
        name,
        st.dim(&format!(
            "({}; {})",
            protocol_name(u.protocol),
            refs.join("; ")
        )),
    );
    let show_all = st.verbose || u.status != Status::Ok;
    let mut not_reached = Vec::new();
    for s in &u.steps {
        if s.outcome == Outcome::Skip && (!show_all || s.summary.starts_with("not reached")) {
            not_reached.push(s.step.as_str());
            continue;
        }
        step_line(out, s, st, show_all);
    }
    if u.status == Status::Break && !not_reached.is_empty() {
        let _ = writeln!(
            out,
            "      {} {}",
            st.dim("·    "),
            st.dim(&format!("not reached: {}", not_reached.join(", ")))
        );
    }
    if u.status == Status::Break {
        let _ = writeln!(
            out,
            "      {} {}",
            st.red("cause:"),
            st.bold(u.verdict.cause.as_str())
        );
        let _ = writeln!(out, "      {} {}", st.bold("fix:"), u.verdict.fix);
    }
    if let Some(t) = u
        .traffic
        .as_ref()
        .filter(|_| u.status != Status::Ok || st.verbose)
    {
        let _ = writeln!(
            out,
            "      {} {} request(s), {} × 502, {} × 504 in the last {} (by {}, {})  {}",
            st.bold("traffic:"),
            t.requests,
            t.status_502,
            t.status_504,
            humantime::format_duration(std::time::Duration::from_secs(t.window_s)),
            t.by,
            t.source,
            sparkline(&t.per_minute)
        );
    }
    if u.status != Status::Ok && !u.timeline.is_empty() {
        let _ = writeln!(out, "      {}", st.bold("timeline:"));
        for e in &u.timeline {
            let event = serde_json::to_value(e.event)
                .ok()
                .and_then(|v| v.as_str().map(str::to_string))
                .unwrap_or_default();
            let _ = writeln!(out, "        {}  {:<15} {}", st.dim(&e.at), event, e.detail);
        }
    }
}

/// 502s and 504s per minute over the last 30 minutes with requests, one block each (a space
/// for a minute without failures).
fn sparkline(minutes: &[why502_model::MinuteCounts]) -> String {
    const BLOCKS: [char; 8] = ['▁', '▂', '▃', '▄', '▅', '▆', '▇', '█'];
    let tail = &minutes[minutes.len().saturating_sub(30)..];
    let bad: Vec<u64> = tail.iter().map(|m| m.status_502 + m.status_504).collect();
    let max = bad.iter().copied().max().unwrap_or(0);
    if max == 0 {
        return String::new();
    }
    bad.iter()
        .map(|&b| {
            if b == 0 {
                ' '
            } else {
                BLOCKS[((b * 7) / max) as usize]
            }
        })
        .collect()
}

fn protocol_name(p: why502_model::Protocol) -> String {
    serde_json::to_value(p)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default()
}

fn step_line(out: &mut String, s: &StepReport, st: &Style, detailed: bool) {
    let show = detailed && matches!(s.outcome, Outcome::Break | Outcome::Warn | Outcome::Unknown)
        || st.verbose;
    Row {
        lead: "      ",
        evidence_indent: 12,
        outcome: s.outcome,
        step: s.step.as_str(),
        summary: &s.summary,
        evidence: &s.evidence,
    }
    .write(out, st, show);
}

/// One step's line — an upstream's step or a host check — and, when shown, its evidence.
struct Row<'a> {
    lead: &'a str,
    evidence_indent: usize,
    outcome: Outcome,
    step: &'a str,
    summary: &'a str,
    evidence: &'a [why502_model::Evidence],
}

impl Row<'_> {
    fn write(&self, out: &mut String, st: &Style, show_evidence: bool) {
        let _ = writeln!(
            out,
            "{}{} {:<15} {}",
            self.lead,
            outcome_mark(st, self.outcome),
            self.step,
            self.summary
        );
        if show_evidence {
            let pad = " ".repeat(self.evidence_indent);
            for e in self.evidence {
                let _ = writeln!(
                    out,
                    "{}",
                    st.dim(&format!("{pad}{}: {}", e.source, e.detail))
                );
            }
        }
    }
}

fn footer(out: &mut String, r: &Report, st: &Style) {
    let broken = r
        .upstreams
        .iter()
        .filter(|u| u.status == Status::Break)
        .count();
    let line = match r.status {
        Status::Ok => st.green(&format!(
            "OK: no break found on {} upstream(s)",
            r.upstreams.len()
        )),
        Status::Warning => st.yellow("WARNING: no break now, but a risk (see above)"),
        Status::Unknown => st.yellow("UNKNOWN: some steps could not look (see above)"),
        Status::Break => st.red(&format!(
            "BREAK: {broken} of {} upstream(s) broken{}",
            r.upstreams.len(),
            if broken == 0 {
                " — see host checks"
            } else {
                ""
            }
        )),
    };
    let _ = writeln!(
        out,
        "\n{line}  {}",
        st.dim(&format!("({} ms)", r.duration_ms))
    );
}

//! The report for a person at 3 a.m.: per upstream the walked path, the break marked, its
//! evidence and its fix; the whole in one glance.

use std::fmt::Write;

use why502_model::{Outcome, Report, Status, StepReport, UpstreamReport};

#[derive(Debug, Clone, Copy)]
pub struct Style {
    pub color: bool,
    pub quiet: bool,
    pub verbose: bool,
    /// Columns to wrap at (the terminal's, else 80 or `--width`).
    pub width: usize,
}

/// More healthy upstreams than this collapse into one line per site (unless -v).
const COLLAPSE_OVER: usize = 5;

/// Cut `text` into lines of at most `first` columns (the first) and `rest` (the others),
/// at spaces; a word longer than a line (a path, a quoted log line's token) is never split:
/// it gets a line of its own, however long.
pub fn wrap(text: &str, first: usize, rest: usize) -> Vec<String> {
    let mut lines: Vec<String> = Vec::new();
    let mut cur = String::new();
    for word in text.split(' ').filter(|w| !w.is_empty()) {
        let limit = if lines.is_empty() { first } else { rest }.max(10);
        let wlen = word.chars().count();
        let clen = cur.chars().count();
        // A first word too long for the first line but not for the next: start on the next
        // (the prefix stands alone) rather than run past the edge.
        if lines.is_empty() && cur.is_empty() && wlen > limit && wlen <= rest {
            lines.push(String::new());
            cur.push_str(word);
            continue;
        }
        if !cur.is_empty() && clen + 1 + wlen > limit {
            lines.push(std::mem::take(&mut cur));
        }
        if !cur.is_empty() {
            cur.push(' ');
        }
        cur.push_str(word);
    }
    if !cur.is_empty() || lines.is_empty() {
        lines.push(cur);
    }
    lines
}

/// Write `body` after `prefix` (of `prefix_cols` visible columns), wrapped at the style's
/// width, continuation lines indented by `hang` columns.
fn emit(out: &mut String, st: &Style, prefix: &str, prefix_cols: usize, body: &str, hang: usize) {
    emit_max(out, st, prefix, prefix_cols, body, hang, usize::MAX);
}

/// `emit`, at most `max` lines: the last one shown ends with `…` when text was left out (the
/// whole is in -v and the JSON).
fn emit_max(
    out: &mut String,
    st: &Style,
    prefix: &str,
    prefix_cols: usize,
    body: &str,
    hang: usize,
    max: usize,
) {
    let width = st.width.max(40);
    let mut lines = wrap(
        body,
        width.saturating_sub(prefix_cols),
        width.saturating_sub(hang),
    );
    if lines.len() > max {
        lines.truncate(max.max(1));
        let room = if lines.len() == 1 {
            width.saturating_sub(prefix_cols)
        } else {
            width.saturating_sub(hang)
        };
        if let Some(last) = lines.last_mut() {
            // Room for the mark: drop words from the end while the line is full.
            while last.chars().count() + 2 > room {
                match last.rfind(' ') {
                    Some(i) => last.truncate(i),
                    None => break,
                }
            }
            // A single word too long for the line (a path) stays whole, the mark glued on.
            if last.chars().count() + 2 <= room {
                last.push_str(" …");
            } else {
                last.push('…');
            }
        }
    }
    let pad = " ".repeat(hang);
    for (i, l) in lines.iter().enumerate() {
        if i == 0 {
            let _ = writeln!(out, "{prefix}{l}");
        } else {
            let _ = writeln!(out, "{pad}{l}");
        }
    }
}

/// The site an upstream serves first (its first server_name), else its address.
fn site(u: &UpstreamReport) -> String {
    u.referenced_by
        .iter()
        .find_map(|r| r.server_name.clone())
        .unwrap_or_else(|| u.address.clone())
}

fn rank(s: Status) -> u8 {
    match s {
        Status::Break => 0,
        Status::Unknown => 1,
        Status::Warning => 2,
        Status::Ok => 3,
    }
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
        out.push_str(&last_line(report, st));
        out.push('\n');
        return out;
    }
    header(&mut out, report, st);
    // Worst first: the break a person came for is the first thing on the screen.
    let mut ups: Vec<&UpstreamReport> = report.upstreams.iter().collect();
    ups.sort_by_key(|u| rank(u.status));
    let ok: Vec<&UpstreamReport> = ups
        .iter()
        .copied()
        .filter(|u| u.status == Status::Ok)
        .collect();
    let collapse = !st.verbose && ok.len() > COLLAPSE_OVER;
    for u in &ups {
        if collapse && u.status == Status::Ok {
            continue;
        }
        upstream(&mut out, u, st);
    }
    if collapse {
        let mut sites: Vec<String> = ok.iter().map(|u| site(u)).collect();
        sites.sort();
        sites.dedup();
        let shown: Vec<&str> = sites.iter().take(6).map(String::as_str).collect();
        let more = if sites.len() > shown.len() {
            format!(", +{} more", sites.len() - shown.len())
        } else {
            String::new()
        };
        emit(
            &mut out,
            st,
            &format!("{} ", status_mark(st, Status::Ok)),
            6,
            &format!(
                "{} upstream(s) ok on {} site(s): {}{more} (-v shows each)",
                ok.len(),
                sites.len(),
                shown.join(", ")
            ),
            6,
        );
    }
    let _ = writeln!(out);
    // Host checks: one line each (evidence and fix with -v), after the upstreams.
    for h in &report.host_checks {
        let bad = matches!(h.outcome, Outcome::Break | Outcome::Warn | Outcome::Unknown);
        if !bad && !st.verbose {
            continue;
        }
        let row = Row {
            lead: "host  ",
            evidence_indent: 8,
            outcome: h.outcome,
            step: h.step.as_str(),
            summary: &h.summary,
            evidence: &h.evidence,
        };
        if st.verbose {
            row.write(&mut out, st, true);
        } else {
            row.write_max(&mut out, st, false, 1, 0);
        }
        if st.verbose {
            if let Some(fix) = &h.fix {
                emit(
                    &mut out,
                    st,
                    &format!("        {} ", st.bold("fix:")),
                    13,
                    fix,
                    13,
                );
            }
        }
    }
    for n in &report.notes {
        emit(&mut out, st, &st.dim("note: "), 6, n, 6);
    }
    if st.verbose && !report.phases.is_empty() {
        let phases: Vec<String> = report
            .phases
            .iter()
            .map(|p| format!("{} {:.1} ms", p.phase, p.us as f64 / 1000.0))
            .collect();
        emit(&mut out, st, "time: ", 6, &phases.join(" · "), 6);
    }
    // One blank line before the answer, however much came after the upstreams.
    if !out.ends_with("\n\n") {
        let _ = writeln!(out);
    }
    out.push_str(&last_line(report, st));
    out.push('\n');
    out
}

/// The line that answers: the state, the counts, and the first causes with their sites, in
/// one line of the width (fewer causes named, then no run time, when it would not fit).
/// `why502 -q` prints it alone.
pub fn last_line(r: &Report, st: &Style) -> String {
    let total = r.upstreams.len();
    let count = |s: Status| r.upstreams.iter().filter(|u| u.status == s).count();
    let mut bad: Vec<&UpstreamReport> = r
        .upstreams
        .iter()
        .filter(|u| u.status != Status::Ok)
        .collect();
    bad.sort_by_key(|u| rank(u.status));
    let causes: Vec<String> = bad
        .iter()
        .map(|u| format!("{} ({})", u.verdict.cause, site(u)))
        .collect();
    let host: Vec<String> = r
        .host_checks
        .iter()
        .filter(|h| h.cause != why502_model::CauseId::None)
        .map(|h| format!("host {}", h.cause))
        .collect();
    let host_part = if host.is_empty() {
        String::new()
    } else {
        format!("; {}", host.join(", "))
    };
    let text = |named: usize| -> String {
        let more = causes.len().saturating_sub(named);
        let listed = match (named.min(causes.len()), more) {
            (0, 0) => String::new(),
            (0, m) => format!(": +{m} cause(s)"),
            (n, 0) => format!(": {}", causes[..n].join(", ")),
            (n, m) => format!(": {}, +{m} more", causes[..n].join(", ")),
        };
        match r.status {
            Status::Ok => format!("OK {total} upstream(s), no break{host_part}"),
            Status::Break => format!(
                "BREAK {} of {total} upstream(s){listed}{host_part}",
                count(Status::Break)
            ),
            Status::Unknown => format!(
                "UNKNOWN {} of {total} upstream(s){listed}{host_part}",
                count(Status::Unknown)
            ),
            Status::Warning if bad.is_empty() => {
                format!("WARNING {total} upstream(s) ok{host_part}")
            }
            Status::Warning => format!(
                "WARNING {} of {total} upstream(s){listed}{host_part}",
                count(Status::Warning)
            ),
        }
    };
    let time = format!("  ({} ms)", r.duration_ms);
    let width = st.width.max(40);
    let fits = |t: &str, extra: usize| t.chars().count() + extra <= width;
    // The most causes that fit with the run time; else without it; else the first alone.
    let mut chosen = None;
    for with_time in [true, false] {
        let extra = if with_time { time.chars().count() } else { 0 };
        for named in (1..=causes.len().clamp(1, 3)).rev() {
            let t = text(named);
            if fits(&t, extra) {
                chosen = Some((t, with_time));
                break;
            }
        }
        if chosen.is_some() {
            break;
        }
    }
    // Nothing fits with a site named: the counts alone.
    let (t, with_time) = chosen.unwrap_or_else(|| (text(0), false));
    let painted = match r.status {
        Status::Ok => st.green(&t),
        Status::Break => st.red(&t),
        Status::Unknown | Status::Warning => st.yellow(&t),
    };
    if with_time {
        format!("{painted}{}", st.dim(&time))
    } else {
        painted
    }
}

fn header(out: &mut String, r: &Report, st: &Style) {
    let n = &r.nginx;
    let master = n
        .master_pid
        .map(|p| format!("master pid {p}"))
        .unwrap_or_else(|| "no running master".to_string());
    // Other masters (other namespaces, containers) in the same lines: which one this is.
    let others = if n.other_masters.is_empty() {
        String::new()
    } else {
        let pids: Vec<String> = n.other_masters.iter().map(|m| m.pid.to_string()).collect();
        format!("; other masters {} (--nginx-pid)", pids.join(", "))
    };
    emit(
        out,
        st,
        &format!("{} ", st.bold("why502")),
        7,
        &format!(
            "on {} — nginx {}, {} ({}), workers as {}{others}",
            r.host,
            master,
            n.conf,
            n.conf_source,
            n.worker_user.as_deref().unwrap_or("?")
        ),
        7,
    );
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
    // By default the first place nginx points at it, and how many more (all with -v).
    let refs_shown = if st.verbose || refs.len() <= 1 {
        refs.join("; ")
    } else {
        format!("{}; +{} more", refs[0], refs.len() - 1)
    };
    emit(
        out,
        st,
        &format!("{} ", status_mark(st, u.status)),
        6,
        &format!(
            "{}{} ({}; {})",
            u.address,
            name,
            protocol_name(u.protocol),
            refs_shown
        ),
        6,
    );
    if st.verbose {
        for s in &u.steps {
            step_line(out, s, st, true);
        }
    } else if u.status != Status::Ok {
        // The screen at 3 a.m.: the steps that found something, each in a line or two, the
        // evidence of the one the verdict rests on; the passed and unreached ones named.
        let verdict_step = u.verdict.step;
        let mut passed = Vec::new();
        let mut not_reached = Vec::new();
        for s in &u.steps {
            match s.outcome {
                Outcome::Pass => passed.push(s.step.as_str()),
                Outcome::Skip => not_reached.push(s.step.as_str()),
                Outcome::Break | Outcome::Warn | Outcome::Unknown => {
                    // What could not be looked at says why in full: it is the whole answer.
                    let lines = match s.outcome {
                        Outcome::Warn => 1,
                        Outcome::Unknown => 4,
                        _ => 2,
                    };
                    let evidence: &[why502_model::Evidence] = if s.step == verdict_step {
                        &s.evidence[..s.evidence.len().min(1)]
                    } else {
                        &[]
                    };
                    Row {
                        lead: "      ",
                        evidence_indent: 12,
                        outcome: s.outcome,
                        step: s.step.as_str(),
                        summary: &s.summary,
                        evidence,
                    }
                    .write_max(out, st, true, lines, 1);
                }
            }
        }
        let mut rest = Vec::new();
        if !passed.is_empty() {
            rest.push(format!("passed: {}", passed.join(", ")));
        }
        if !not_reached.is_empty() {
            rest.push(format!("{} not reached", not_reached.len()));
        }
        if !rest.is_empty() {
            emit(
                out,
                st,
                &format!("      {} ", st.dim("·    ")),
                12,
                &rest.join("; "),
                12,
            );
        }
    }
    if u.status == Status::Break {
        let _ = writeln!(
            out,
            "      {} {}",
            st.red("cause:"),
            st.bold(u.verdict.cause.as_str())
        );
        emit(
            out,
            st,
            &format!("      {} ", st.bold("fix:")),
            11,
            &u.verdict.fix,
            11,
        );
    } else if u.status == Status::Unknown && !u.verdict.fix.is_empty() {
        // What would let the agent look.
        emit(
            out,
            st,
            &format!("      {} ", st.bold("to look:")),
            16,
            &u.verdict.fix,
            16,
        );
    }
    if let Some(t) = u
        .traffic
        .as_ref()
        .filter(|_| u.status != Status::Ok || st.verbose)
    {
        emit_max(
            out,
            st,
            &format!("      {} ", st.bold("traffic:")),
            15,
            &format!(
                "{} request(s), {} × 502, {} × 504 in the last {} (by {}, {}) {}",
                t.requests,
                t.status_502,
                t.status_504,
                humantime::format_duration(std::time::Duration::from_secs(t.window_s)),
                t.by,
                t.source,
                sparkline(&t.per_minute)
            ),
            15,
            if st.verbose { usize::MAX } else { 1 },
        );
    }
    if u.status != Status::Ok && !u.timeline.is_empty() {
        let shown = timeline_shown(&u.timeline, st.verbose);
        let hidden = u.timeline.len() - shown.len();
        if hidden > 0 {
            let _ = writeln!(
                out,
                "      {} {}",
                st.bold("timeline:"),
                st.dim(&format!("(+{hidden} earlier, with -v)"))
            );
        } else {
            let _ = writeln!(out, "      {}", st.bold("timeline:"));
        }
        for e in shown {
            let event = serde_json::to_value(e.event)
                .ok()
                .and_then(|v| v.as_str().map(str::to_string))
                .unwrap_or_default();
            // 8 + 20 (the time) + 2 + 15 + 1 columns before the detail.
            // The clock time alone by default (the date is in -v and the JSON); continuation
            // lines under the time: a detail is mostly a path.
            let at = if st.verbose {
                e.at.clone()
            } else {
                e.at.get(11..19).unwrap_or(&e.at).to_string()
            };
            emit_max(
                out,
                st,
                &format!("        {}  {:<15} ", st.dim(&at), event),
                8 + at.chars().count() + 2 + 16,
                &e.detail,
                10,
                if st.verbose { usize::MAX } else { 1 },
            );
        }
    }
}

/// The timeline a screen shows: all of it with -v; else the first and last failure and the
/// two host events just before the first (the ones that may have started it).
fn timeline_shown(
    events: &[why502_model::TimelineEvent],
    verbose: bool,
) -> Vec<&why502_model::TimelineEvent> {
    use why502_model::TimelineKind::{FirstFailure, LastFailure};
    if verbose || events.len() <= 5 {
        return events.iter().collect();
    }
    let first_at = events
        .iter()
        .find(|e| e.event == FirstFailure)
        .map(|e| e.at.as_str());
    let before: Vec<usize> = events
        .iter()
        .enumerate()
        .filter(|(_, e)| !matches!(e.event, FirstFailure | LastFailure))
        .filter(|(_, e)| first_at.is_none_or(|f| e.at.as_str() <= f))
        .map(|(i, _)| i)
        .collect();
    // The newest event of each kind (a restart and a stop are one kind), then the two newest
    // of those: a config change and the reload after it both show.
    let group = |k: why502_model::TimelineKind| {
        use why502_model::TimelineKind::*;
        match k {
            BackendStarted | BackendExited => 0,
            ConfigChanged => 1,
            NginxReloaded => 2,
            OomKill => 3,
            PackageChanged => 4,
            FirstFailure | LastFailure => 5,
        }
    };
    let mut newest_per_kind: Vec<usize> = Vec::new();
    for &i in before.iter().rev() {
        if !newest_per_kind
            .iter()
            .any(|&j| group(events[j].event) == group(events[i].event))
        {
            newest_per_kind.push(i);
        }
    }
    let keep: Vec<usize> = newest_per_kind.into_iter().take(2).collect();
    events
        .iter()
        .enumerate()
        .filter(|(i, e)| keep.contains(i) || matches!(e.event, FirstFailure | LastFailure))
        .map(|(_, e)| e)
        .collect()
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
        self.write_max(out, st, show_evidence, usize::MAX, usize::MAX);
    }

    /// `write`, the summary in at most `lines` lines and each evidence in `evidence_lines`.
    fn write_max(
        &self,
        out: &mut String,
        st: &Style,
        show_evidence: bool,
        lines: usize,
        evidence_lines: usize,
    ) {
        let prefix = format!(
            "{}{} {:<15} ",
            self.lead,
            outcome_mark(st, self.outcome),
            self.step
        );
        // The summary hangs under itself: lead, mark, step column.
        let cols = self.lead.len() + 6 + self.step.len().max(15) + 1;
        emit_max(out, st, &prefix, cols, self.summary, cols, lines);
        if show_evidence {
            let pad = " ".repeat(self.evidence_indent);
            for e in self.evidence {
                let text = format!("{}: {}", e.source, e.detail);
                let mut part = String::new();
                emit_max(
                    &mut part,
                    st,
                    &pad,
                    self.evidence_indent,
                    &text,
                    self.evidence_indent + 2,
                    evidence_lines,
                );
                for l in part.lines() {
                    let _ = writeln!(out, "{}", st.dim(l));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::render::fixtures::{report, upstream};
    use why502_model::{CauseId, Evidence, HostCheck, Outcome, StepId, StepReport};

    const FIX: &str = "In the php-fpm pool that listens on /run/php/php8.2-fpm-with-a-long-name.sock, set `listen.owner = www-data`, `listen.group = www-data`, `listen.mode = 0660`, then restart php-fpm.";
    const LONG_PATH: &str = "/srv/www/клиенты/a-very-long-site-name.example.com/releases/20261201-1234567/var/run/php-fpm/pool-with-a-name-nobody-could-wrap.sock";

    fn broken(i: usize) -> UpstreamReport {
        let mut u = upstream(i, Status::Break, CauseId::SocketPermission);
        u.verdict.fix = FIX.into();
        u.steps = vec![
            StepReport {
                step: StepId::ErrorLog,
                outcome: Outcome::Warn,
                cause: Some(CauseId::SocketPermission),
                summary: "nginx logged 12 error(s) about this upstream in the last 1h: permission denied connecting (13), while connecting".into(),
                fix: None,
                evidence: vec![Evidence::new(
                    "/var/log/nginx/error.log @ 2026/11/21 13:32:16",
                    format!("connect() to unix:{LONG_PATH} failed (13: Permission denied) while connecting to upstream, client: 203.0.113.7"),
                )],
                duration_ms: 1,
                classes: None,
            },
            StepReport {
                step: StepId::BackendUp,
                outcome: Outcome::Break,
                cause: Some(CauseId::SocketPermission),
                summary: format!("www-data cannot connect to {LONG_PATH} (srw------- root:root): no write permission for it"),
                fix: None,
                evidence: Vec::new(),
                duration_ms: 1,
                classes: None,
            },
        ];
        u
    }

    fn style(width: usize) -> Style {
        Style {
            color: false,
            quiet: false,
            verbose: false,
            width,
        }
    }

    /// No line is wider than the width unless it is one word that cannot be cut; no word of
    /// the fix is split across lines.
    fn assert_fits(out: &str, width: usize) {
        for l in out.lines() {
            if l.chars().count() > width {
                assert!(
                    !l.trim_start().contains(' '),
                    "a {}-column line at width {width} has spaces to wrap at:\n{l}",
                    l.chars().count()
                );
            }
        }
        let words: Vec<&str> = out.split_whitespace().collect();
        for w in FIX.split(' ') {
            assert!(words.contains(&w), "the fix's word {w:?} was split:\n{out}");
        }
    }

    #[test]
    fn sixty_sites_one_break_at_80_and_120_columns() {
        let mut ups: Vec<UpstreamReport> = (0..60)
            .map(|i| upstream(i, Status::Ok, CauseId::None))
            .collect();
        ups[37] = broken(37);
        let r = report(ups);
        for width in [80, 120] {
            let out = render(&r, &style(width));
            assert_fits(&out, width);
            let lines: Vec<&str> = out.lines().collect();
            assert!(lines.len() < 30, "{} lines:\n{out}", lines.len());
            // The broken site first, the healthy ones in one line.
            let first_upstream = lines
                .iter()
                .position(|l| l.starts_with("BREAK") || l.starts_with("OK"))
                .expect("an upstream");
            assert!(
                lines[first_upstream].starts_with("BREAK unix:/run/php/site37.sock"),
                "{out}"
            );
            assert_eq!(
                lines.iter().filter(|l| l.starts_with("OK ")).count(),
                1,
                "{out}"
            );
            assert!(out.contains("59 upstream(s) ok on 59 site(s)"), "{out}");
            // A path too long for a line is whole on its own.
            assert!(out.contains(LONG_PATH), "{out}");
            let last = lines.last().expect("a last line");
            assert!(
                last.starts_with("BREAK 1 of 60 upstream(s): socket_permission (site37.example)"),
                "{last}"
            );
        }
    }

    #[test]
    fn quiet_is_the_last_line_alone_and_color_only_when_asked() {
        let r = report(vec![broken(1), upstream(2, Status::Ok, CauseId::None)]);
        let q = render(
            &r,
            &Style {
                quiet: true,
                ..style(80)
            },
        );
        assert_eq!(q.lines().count(), 1, "{q}");
        assert!(
            q.starts_with("BREAK 1 of 2 upstream(s): socket_permission (site1.example)"),
            "{q}"
        );
        assert!(!render(&r, &style(80)).contains('\x1b'));
        assert!(render(
            &r,
            &Style {
                color: true,
                ..style(80)
            }
        )
        .contains("\x1b["));
        // -v shows every upstream, none collapsed.
        let many = report(
            (0..10)
                .map(|i| upstream(i, Status::Ok, CauseId::None))
                .collect(),
        );
        let v = render(
            &many,
            &Style {
                verbose: true,
                ..style(80)
            },
        );
        assert_eq!(
            v.lines().filter(|l| l.starts_with("OK    unix:")).count(),
            10,
            "{v}"
        );
        let quiet_ok = render(
            &many,
            &Style {
                quiet: true,
                ..style(80)
            },
        );
        assert!(
            quiet_ok.starts_with("OK 10 upstream(s), no break"),
            "{quiet_ok}"
        );
    }

    #[test]
    fn unknown_and_host_warnings_are_named_in_the_last_line() {
        let mut u = upstream(3, Status::Unknown, CauseId::Unknown);
        u.verdict.summary = "cannot read nginx's error log".into();
        let mut r = report(vec![u, upstream(4, Status::Ok, CauseId::None)]);
        r.host_checks.push(HostCheck {
            step: StepId::Resources,
            outcome: Outcome::Warn,
            cause: CauseId::OomKilled,
            summary:
                "the kernel OOM-killed 3 process(es) in the window that no upstream depends on"
                    .into(),
            fix: Some("Memory is short.".into()),
            evidence: vec![Evidence::new("/dev/kmsg", "Killed process 1 (python3)")],
        });
        r.status = Report::compute_status(&r.upstreams, &r.host_checks);
        let out = render(&r, &style(80));
        let last = out.lines().last().unwrap_or_default();
        assert!(
            last.starts_with(
                "UNKNOWN 1 of 2 upstream(s): unknown (site3.example); host oom_killed"
            ),
            "{last}"
        );
        // The answer stays one line of the width: the run time goes first.
        assert!(last.chars().count() <= 80, "{last}");
        let wide = render(&r, &style(120));
        assert!(
            wide.lines().last().unwrap_or_default().ends_with("(42 ms)"),
            "{wide}"
        );
        // The host warning is one line without -v: no evidence, no fix.
        assert!(out.contains("host  warn  resources"), "{out}");
        assert!(!out.contains("Killed process 1"), "{out}");
        let v = render(
            &r,
            &Style {
                verbose: true,
                ..style(80)
            },
        );
        assert!(
            v.contains("Killed process 1") && v.contains("Memory is short."),
            "{v}"
        );
    }

    /// The screens themselves, committed under render/snapshots/ (a reader sees what a person
    /// sees; any change to the layout shows in review). `UPDATE_SNAPSHOTS=1 cargo test -p
    /// why502 --bin why502 screens` rewrites them.
    #[test]
    fn screens_match_their_snapshots() {
        let mut sixty: Vec<UpstreamReport> = (0..60)
            .map(|i| upstream(i, Status::Ok, CauseId::None))
            .collect();
        sixty[37] = broken(37);
        let cases: Vec<(&str, Report, usize, bool)> = vec![
            ("one-break-80.txt", report(vec![broken(1)]), 80, false),
            ("one-break-120.txt", report(vec![broken(1)]), 120, false),
            (
                "one-break-80-verbose.txt",
                report(vec![broken(1)]),
                80,
                true,
            ),
            (
                "sixty-sites-one-break-80.txt",
                report(sixty.clone()),
                80,
                false,
            ),
            (
                "sixty-sites-one-break-120.txt",
                report(sixty.clone()),
                120,
                false,
            ),
            (
                "unknown-80.txt",
                {
                    let mut u = upstream(3, Status::Unknown, CauseId::Unknown);
                    u.verdict.summary = "cannot read nginx's error log".into();
                    u.steps = vec![StepReport {
                    step: StepId::ErrorLog,
                    outcome: Outcome::Unknown,
                    cause: None,
                    summary: "cannot read nginx's error log: /var/log/nginx/error.log: permission denied (run as root or in group adm)".into(),
                    fix: None,
                    evidence: Vec::new(),
                    duration_ms: 0,
                    classes: None,
                }];
                    report(vec![u])
                },
                80,
                false,
            ),
            (
                "all-ok-80.txt",
                report(
                    (0..8)
                        .map(|i| upstream(i, Status::Ok, CauseId::None))
                        .collect(),
                ),
                80,
                false,
            ),
        ];
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/render/snapshots");
        let update = std::env::var_os("UPDATE_SNAPSHOTS").is_some();
        let mut stale = Vec::new();
        for (name, r, width, verbose) in cases {
            let got = render(
                &r,
                &Style {
                    verbose,
                    ..style(width)
                },
            );
            let path = dir.join(name);
            if update {
                std::fs::create_dir_all(&dir).expect("snapshots dir");
                std::fs::write(&path, &got).expect("write snapshot");
            }
            if std::fs::read_to_string(&path).unwrap_or_default() != got {
                stale.push(format!("{name}:\n{got}"));
            }
        }
        assert!(
            stale.is_empty(),
            "screens differ from their snapshots (UPDATE_SNAPSHOTS=1 to accept):\n{}",
            stale.join("\n")
        );
    }

    #[test]
    fn wrap_keeps_words_whole() {
        assert_eq!(wrap("aaaa bbbb cccc", 10, 10), ["aaaa bbbb", "cccc"]);
        assert_eq!(
            wrap("aaaa bbbb cccc dddd", 10, 12),
            ["aaaa bbbb", "cccc dddd"]
        );
        assert_eq!(wrap(LONG_PATH, 20, 20), [LONG_PATH]);
        assert_eq!(wrap("", 10, 10), [""]);
        // A first word that fits only the later lines starts there.
        assert_eq!(
            wrap("/a/long/path/name more", 10, 30),
            ["", "/a/long/path/name more"]
        );
    }
}

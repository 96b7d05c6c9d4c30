//! Step `backend_log`: what does the backend's own log say in the window? The backend is the
//! process behind the listener (php-fpm, gunicorn, uwsgi...), or, when nothing listens, what
//! used to serve the address (a php-fpm pool, a systemd unit, a command line naming it).
//! Only lines of this upstream's backend count: in a php-fpm log shared by many pools, the
//! lines of the pools that serve this address (and the master's own lines).

use why502_backend::{
    fix_text, summarize, BackendAddr, BackendLogClass, BackendLogEvent, ClassSummary, FixContext,
    LogRole, StatusLevel,
};
use why502_model::{CauseId, Outcome};

use super::{JudgeCx, StepFinding};
use crate::facts::container::{ContainerFacts, ContainerFound};
use crate::facts::{BackendLog, LogRead};
use crate::targets::UpstreamTarget;

pub fn judge(target: &UpstreamTarget, cx: &JudgeCx<'_>) -> StepFinding {
    // A container's own record is its state (exit code, OOMKilled, restarts, health) and the
    // lines the engine kept of its output.
    match cx.facts.container.as_ref() {
        Some(ContainerFacts::Found(f)) => return container(f, cx),
        // A container's process whose engine would not answer: its log files, when the
        // process names some, are still read below.
        Some(ContainerFacts::Unasked { who, reason, fix })
            if cx.facts.logs.as_ref().is_none_or(|l| l.files.is_empty()) =>
        {
            let f = StepFinding::unknown(format!(
                "{who} is a container's, and its state and log could not be read: {reason}"
            ));
            return if fix.is_empty() {
                f
            } else {
                f.with_fix(fix.clone())
            };
        }
        _ => {}
    }
    let src = cx.sources;
    let Some(upstream) = BackendAddr::parse_upstream(&target.address) else {
        return StepFinding::skip(format!(
            "{} is not an address a backend listens on",
            target.address
        ));
    };
    let Some(log) = cx.facts.logs.as_ref() else {
        return StepFinding::skip(
            "no backend process or configuration names this address, so no log to read",
        );
    };
    if log.files.is_empty() {
        return StepFinding::skip(if log.who.is_empty() {
            "no backend process or configuration names this address, so no log to read".to_string()
        } else {
            format!("no log file found for {}", log.who)
        });
    }
    let mut events: Vec<BackendLogEvent> = Vec::new();
    let mut unreadable: Vec<(String, String)> = Vec::new();
    let mut not_written: Vec<String> = Vec::new();
    for f in &log.files {
        match &f.read {
            LogRead::Events(e) => {
                events.extend(e.iter().filter(|e| belongs(e, &f.role, log)).cloned())
            }
            LogRead::NotWritten => not_written.push(f.path.display().to_string()),
            LogRead::Unreadable { reason, fix } => unreadable.push((reason.clone(), fix.clone())),
        }
    }
    let pool = src
        .fpm_configs
        .iter()
        .flat_map(|c| c.pools_serving(&upstream))
        .next();
    let fix_cx = FixContext {
        kind: &log.kind,
        pool,
        nginx_read_timeout: Some(target.settings.read_timeout.as_secs()),
    };
    let mut summaries = summarize(&events);
    summaries.sort_by_key(|s| std::cmp::Reverse(s.last_seen));
    let read = log
        .files
        .iter()
        .map(|f| f.path.display().to_string())
        .collect::<Vec<_>>()
        .join(", ");
    // What makes nginx answer 502 (a killed request, a dead worker, a full pool) outranks
    // what php-fpm can answer itself (a fatal error is a 500 page unless the worker died):
    // both in the window, the first is the 502s' cause, whichever came last.
    let may_be_answered = |c: BackendLogClass| {
        matches!(
            c,
            BackendLogClass::Fatal | BackendLogClass::MemoryLimit | BackendLogClass::AppError
        )
    };
    if let Some(s) = summaries
        .iter()
        .filter(|s| s.class.breaks_requests())
        .min_by_key(|s| (may_be_answered(s.class), std::cmp::Reverse(s.last_seen)))
    {
        let (cause, claims) = confirmed_cause(s, cx);
        let mut summary = format!("{}: {}", who_or_logs(&log.who, &read), s.sentence());
        let mut fix = fix_text(s.class, &fix_cx);
        let mut lost = None;
        if s.class.needs_kernel_confirmation() && cause == CauseId::AppError {
            // A SIGKILL the kernel's OOM killer did not send: the request nginx lost then
            // is the one that did it (or was running when something else sent kill -9).
            lost = lost_request_near(s.last_seen, cx);
            summary.push_str(&format!(
                "; the kernel log has no OOM kill of pid {}, so not the OOM killer: the script itself (posix_kill, a crash handler) or another process sent SIGKILL",
                s.newest_pid.map_or("?".to_string(), |p| p.to_string())
            ));
            if let Some((request, _)) = &lost {
                summary.push_str(&format!("; nginx lost `{request}` then"));
                fix = format!("Find what kills the worker running `{request}`: the script's own code (posix_kill, exec of kill), or a watchdog outside php-fpm. {fix}");
            }
        }
        let mut f = StepFinding::broken(cause, summary)
            .with_fix(fix)
            .with_evidence(read.clone(), s.newest.clone());
        if let Some((_, seen)) = lost {
            f.evidence.push(seen.evidence());
        }
        f.claims = claims;
        return f;
    }
    if let Some(st) = &log.status {
        if let Some(level) = st.level.filter(|l| *l >= StatusLevel::Risk) {
            let outcome = if level == StatusLevel::Exhausted {
                Outcome::Break
            } else {
                Outcome::Warn
            };
            if outcome == Outcome::Break || summaries.is_empty() {
                return StepFinding::new(outcome, Some(CauseId::PoolExhausted), st.said.clone())
                    .with_fix(fix_text(BackendLogClass::PoolExhausted, &fix_cx))
                    .with_evidence(st.source.clone(), st.detail.clone());
            }
        }
    }
    if let Some(s) = summaries.first() {
        let (cause, claims) = confirmed_cause(s, cx);
        let mut f = StepFinding::new(Outcome::Warn, Some(cause), s.sentence())
            .with_fix(fix_text(s.class, &fix_cx))
            .with_evidence(read.clone(), s.newest.clone());
        f.claims = claims;
        return f;
    }
    if let Some((reason, fix)) = unreadable.first() {
        return StepFinding::unknown(reason.clone()).with_fix(fix.clone());
    }
    let status_note = log
        .status
        .as_ref()
        .map(|st| format!("; {}", st.said))
        .unwrap_or_default();
    let fresh = if not_written.is_empty() {
        String::new()
    } else {
        format!(
            " ({} not written yet: nothing logged there)",
            not_written.join(", ")
        )
    };
    StepFinding::pass(format!(
        "no errors in the window in {read}{fresh}{status_note}"
    ))
}

/// A line of a log shared by several pools counts only for the pools that serve this address;
/// php-fpm's own lines without a pool are the master's, which serves them all. The other
/// logs (a pool's PHP error log, its slowlog, an app's log) are the backend's own.
fn belongs(e: &BackendLogEvent, role: &LogRole, log: &BackendLog) -> bool {
    match (role, &e.pool) {
        (LogRole::FpmErrorLog, Some(pool)) => log.pools.iter().any(|p| p == pool),
        _ => true,
    }
}

/// How far apart a kernel kill and php-fpm's line about that child's SIGKILL may be: the log
/// has whole seconds, and the kernel's clock is estimated from boot time.
const SIGKILL_LOG_SLACK: std::time::Duration = std::time::Duration::from_secs(5);

/// The cause a class stands for here. A SIGKILL is the OOM killer's only when the kernel log
/// has a kill of that very pid; then the kill is this upstream's, not a host-wide one.
fn confirmed_cause(s: &ClassSummary, cx: &JudgeCx<'_>) -> (CauseId, Vec<super::KillRef>) {
    if !s.class.needs_kernel_confirmation() {
        return (s.cause, Vec::new());
    }
    // The master logs the signal as soon as it reaps the child: a kill of that pid long
    // before or after the line was of another process that had the pid.
    let logged = std::time::UNIX_EPOCH + std::time::Duration::from_secs(s.last_seen.max(0) as u64);
    let fits = |k: &&why502_kernel_log::OomKill| {
        k.time <= logged + SIGKILL_LOG_SLACK && k.time + SIGKILL_LOG_SLACK >= logged
    };
    let kill = s.newest_pid.and_then(|pid| {
        cx.sources
            .kernel_log()
            .kills()
            .iter()
            .filter(|k| k.pid == pid)
            .find(fits)
    });
    match kill {
        Some(k) => (CauseId::OomKilled, vec![(k.pid, k.time)]),
        None => (CauseId::AppError, Vec::new()),
    }
}

/// The request nginx lost (a connection closed mid-response, logged for this upstream)
/// within a few seconds of `when`: its `request:` field and the line.
fn lost_request_near(when: i64, cx: &JudgeCx<'_>) -> Option<(String, crate::facts::ClassSeen)> {
    cx.facts
        .logged
        .iter()
        .filter(|c| c.class == why502_nginx::errorlog::UpstreamErrorClass::Reset)
        .filter(|c| (c.last.time - when).abs() <= 5)
        .find_map(|c| {
            why502_nginx::errorlog::request_field(&c.last.message)
                .map(|r| (r.to_string(), c.clone()))
        })
}

fn who_or_logs(who: &str, read: &str) -> String {
    if who.is_empty() {
        read.to_string()
    } else {
        format!("{who} logged")
    }
}

/// What a container's state and last lines say: OOM-killed (its memory limit, or the host's),
/// exiting by itself (again and again, under a restart policy), failing its health check, or
/// nothing of its own (stopped from outside, or running well).
fn container(f: &ContainerFound, cx: &JudgeCx<'_>) -> StepFinding {
    let s = &f.state;
    let cli = f.cli();
    let source = f.api_source("json");
    let state_line = f.state_line();
    let logs = f.logs.as_ref();
    let lines: &[why502_container::LogLine] = match logs {
        Some(Ok(l)) => l,
        _ => &[],
    };
    // The line that says why: the last one on stderr, else the last one.
    let telling = lines
        .iter()
        .rev()
        .find(|l| l.stream == why502_container::LogStream::Stderr)
        .or(lines.last());
    let log_source = f.api_source("logs");
    let with_lines = |mut found: StepFinding| {
        for l in lines
            .iter()
            .rev()
            .take(3)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
        {
            let at =
                l.at.map(|t| format!("{} ", humantime::format_rfc3339_seconds(t)))
                    .unwrap_or_default();
            found = found.with_evidence(log_source.clone(), format!("{at}{}", l.text));
        }
        if let Some(Err(e)) = logs {
            found = found.with_evidence(log_source.clone(), format!("not read: {e}"));
        }
        found
    };
    let oom_exits = f.failures().iter().filter(|(_, _, oom)| *oom).count();
    if f.oom_killed() {
        let limit = if s.memory_limit > 0 {
            format!("its memory limit of {} MiB", s.memory_limit / (1024 * 1024))
        } else {
            "the host's memory (it has no limit of its own)".to_string()
        };
        let outcome = if s.running && cx.explaining.is_none() {
            Outcome::Warn
        } else {
            Outcome::Break
        };
        let found = StepFinding::new(
            outcome,
            Some(CauseId::OomKilled),
            if s.oom_killed {
                format!(
                    "container {} was OOM-killed: it ran out of {limit} and the engine records OOMKilled with exit code {}{}",
                    s.name,
                    s.exit_code,
                    s.finished_at
                        .map(|t| format!(" at {}", humantime::format_rfc3339_seconds(t)))
                        .unwrap_or_default()
                )
            } else {
                format!(
                    "container {} was OOM-killed {oom_exits} time(s) in the window: it runs out of {limit}, and the engine restarts it ({} restarts)",
                    s.name, s.restart_count
                )
            },
        )
        .with_fix(format!(
            "Give container {} more memory (`{cli} update --memory 512m --memory-swap 512m {}`, or `mem_limit` in its compose file) or make the application use less; then `{cli} start {}`.",
            s.name, s.name, s.name
        ))
        .with_evidence(source, state_line);
        return with_lines(found);
    }
    let exit_code = f.last_exit_code();
    let exited_by_itself = !s.running && !matches!(exit_code, 0 | 137 | 143) || f.crash_looping();
    if exited_by_itself {
        let quoted = telling
            .map(|l| format!(": its last line: {}", l.text))
            .unwrap_or_else(|| ", and it logged nothing".to_string());
        let looping = if f.crash_looping() {
            format!(
                ", and the engine restarts it again and again ({} restarts, policy {})",
                s.restart_count, s.restart_policy
            )
        } else {
            String::new()
        };
        let found = StepFinding::broken(
            CauseId::AppError,
            format!(
                "container {} exits by itself with code {}{looping}{quoted}",
                s.name, exit_code
            ),
        )
        .with_fix(format!(
            "Fix what makes the application exit (`{cli} logs --tail 50 {}`: configuration, a missing file or volume, a dependency it cannot reach); a restart policy only repeats the failure.",
            s.name
        ))
        .with_evidence(source, state_line);
        return with_lines(found);
    }
    if let Some(h) = s
        .health
        .as_ref()
        .filter(|h| s.running && h.status == "unhealthy")
    {
        let probe = h
            .last
            .as_ref()
            .map(|p| format!("; the last probe exited {}: {}", p.exit_code, p.output))
            .unwrap_or_default();
        let found = StepFinding::new(
            Outcome::Warn,
            Some(CauseId::AppError),
            format!(
                "container {} runs but fails its health check ({} failures in a row){probe}",
                s.name, h.failing_streak
            ),
        )
        .with_fix(format!(
            "See what the health check tests (`{cli} inspect --format '{{{{json .State.Health}}}}' {}`) and why the application fails it.",
            s.name
        ))
        .with_evidence(source, state_line);
        return with_lines(found);
    }
    let found = StepFinding::pass(if s.running {
        format!(
            "container {} runs ({}); its state records no failure",
            s.name,
            s.describe()
        )
    } else {
        format!(
            "container {} is {}: stopped from outside (a signal or `{cli} stop`), not a failure of its own",
            s.name,
            s.describe()
        )
    })
    .with_evidence(source, state_line);
    with_lines(found)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::facts::LogFileRead;

    fn event(pool: Option<&str>, class: BackendLogClass) -> BackendLogEvent {
        BackendLogEvent {
            time: 1_800_000_000,
            time_exact: true,
            class,
            message: format!("[pool {}] something", pool.unwrap_or("-")),
            pool: pool.map(str::to_string),
            pid: Some(4242),
        }
    }

    #[test]
    fn only_this_upstreams_pools_lines_of_a_shared_log_count() {
        let log = BackendLog {
            who: "php-fpm (pid 1)".into(),
            kind: why502_backend::BackendKind::PhpFpmMaster,
            pools: vec!["pool1".into()],
            pids: vec![1],
            files: vec![LogFileRead {
                path: "/var/log/php8.2-fpm.log".into(),
                role: LogRole::FpmErrorLog,
                read: LogRead::NotWritten,
            }],
            status: None,
        };
        let fpm = LogRole::FpmErrorLog;
        assert!(belongs(
            &event(Some("pool1"), BackendLogClass::Fatal),
            &fpm,
            &log
        ));
        assert!(!belongs(
            &event(Some("pool204"), BackendLogClass::Fatal),
            &fpm,
            &log
        ));
        // The master's own lines (no pool) are about every pool it serves.
        assert!(belongs(&event(None, BackendLogClass::Fatal), &fpm, &log));
        // A pool's own PHP error log is its own whatever it says.
        assert!(belongs(
            &event(Some("pool204"), BackendLogClass::Fatal),
            &LogRole::PhpErrorLog,
            &log
        ));
    }
}

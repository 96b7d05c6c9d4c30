//! Step `backend_log`: what does the backend's own log say in the window? The backend is the
//! process behind the listener (php-fpm, gunicorn, uwsgi...), or, when nothing listens, what
//! used to serve the address (a php-fpm pool, a systemd unit, a command line naming it).
//! Each log file is read once per run, however many upstreams share it.

use std::path::PathBuf;
use std::time::SystemTime;

use why502_backend::{
    fix_text, former_backends, identify_backend, summarize, BackendAddr, BackendKind, FixContext,
};
use why502_model::{CauseId, Outcome};

use super::backend_process;
use super::{StepContext, StepFinding};
use crate::targets::UpstreamTarget;

pub async fn check(target: &UpstreamTarget, cx: &StepContext<'_>) -> StepFinding {
    let src = cx.sources;
    let Some(upstream) = BackendAddr::parse_upstream(&target.address) else {
        return StepFinding::skip(format!(
            "{} is not an address a backend listens on",
            target.address
        ));
    };
    let mut logs: Vec<(PathBuf, String)> = Vec::new();
    let mut kind = BackendKind::Other {
        name: "backend".to_string(),
    };
    let mut who = String::new();
    if let Some(b) = backend_process::find(target, cx).await {
        if let Some(id) = identify_backend(
            &src.procs,
            b.owner.pid,
            &src.fpm_configs,
            Some(&upstream),
            SystemTime::now(),
        ) {
            who = format!("{} (pid {})", b.owner.name, b.owner.pid);
            kind = id.kind.clone();
            logs.extend(id.logs.iter().map(|l| (l.path.clone(), l.via.clone())));
        }
    } else {
        for f in former_backends(&upstream, &src.fpm_configs, &src.units, &src.procs) {
            if who.is_empty() {
                who = format!("what served it before: {}", f.detail);
                kind = f.kind.clone();
            }
            logs.extend(f.logs.iter().map(|l| (l.path.clone(), l.via.clone())));
        }
    }
    logs.sort();
    logs.dedup_by(|a, b| a.0 == b.0);
    if logs.is_empty() {
        return StepFinding::skip(if who.is_empty() {
            "no backend process or configuration names this address, so no log to read".to_string()
        } else {
            format!("no log file found for {who}")
        });
    }
    let mut events = Vec::new();
    let mut unreadable: Vec<(String, String)> = Vec::new();
    for (path, _) in &logs {
        match src.backend_log(path) {
            Ok(e) => events.extend(e),
            Err(reason_fix) => unreadable.push(reason_fix),
        }
    }
    let pool = src
        .fpm_configs
        .iter()
        .flat_map(|c| c.pools_serving(&upstream))
        .next();
    let fix_cx = FixContext {
        kind: &kind,
        pool,
        nginx_read_timeout: Some(target.settings.read_timeout.as_secs()),
    };
    let mut summaries = summarize(&events);
    summaries.sort_by_key(|s| std::cmp::Reverse(s.last_seen));
    let read = logs
        .iter()
        .map(|(p, _)| p.display().to_string())
        .collect::<Vec<_>>()
        .join(", ");
    if let Some(s) = summaries.iter().find(|s| s.class.breaks_requests()) {
        // A SIGKILL is the OOM killer's only when the kernel says so.
        let cause = if s.class.needs_kernel_confirmation() {
            let oom = s
                .newest_pid
                .is_some_and(|pid| src.kernel.kills().iter().any(|k| k.pid == pid));
            if oom {
                CauseId::OomKilled
            } else {
                CauseId::AppError
            }
        } else {
            s.cause
        };
        return StepFinding::broken(
            cause,
            format!("{}: {}", who_or_logs(&who, &read), s.sentence()),
        )
        .with_fix(fix_text(s.class, &fix_cx))
        .with_evidence(read.clone(), s.newest.clone());
    }
    if let Some(s) = summaries.first() {
        return StepFinding::new(Outcome::Warn, Some(s.cause), s.sentence())
            .with_fix(fix_text(s.class, &fix_cx))
            .with_evidence(read.clone(), s.newest.clone());
    }
    if let Some((reason, fix)) = unreadable.first() {
        return StepFinding::unknown(reason.clone()).with_fix(fix.clone());
    }
    StepFinding::pass(format!("no errors in the window in {read}"))
}

fn who_or_logs(who: &str, read: &str) -> String {
    if who.is_empty() {
        read.to_string()
    } else {
        format!("{who} logged")
    }
}

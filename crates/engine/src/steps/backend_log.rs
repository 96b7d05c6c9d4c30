//! Step `backend_log`: what does the backend's own log say in the window? The backend is the
//! process behind the listener (php-fpm, gunicorn, uwsgi...), or, when nothing listens, what
//! used to serve the address (a php-fpm pool, a systemd unit, a command line naming it).
//! Each log file is read once per run, however many upstreams share it.

use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use why502_backend::{
    fix_text, former_backends, identify_backend, judge_fpm_status, parse_fpm_status, summarize,
    BackendAddr, BackendKind, BackendLogClass, FixContext, FpmPool, StatusLevel,
};
use why502_model::{CauseId, Outcome, Protocol};
use why502_request::{fastcgi_page, Answer, Limits};

use super::backend_process;
use super::backend_up::remaining;
use super::direct_request::connect_target;
use super::{StepContext, StepFinding};
use crate::targets::UpstreamTarget;

/// How long the status page may take: php-fpm answers it at once unless every worker is busy,
/// and then the wait itself is the finding.
const STATUS_TIMEOUT: Duration = Duration::from_secs(1);
/// A status page (`?json`, without `&full`) is a few hundred bytes.
const STATUS_MAX_BODY: usize = 16 * 1024;

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
    let listening = backend_process::find(target, cx).await;
    if let Some(b) = &listening {
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
                // No listener we could map to a pid: the backend is down, or this user may
                // not read other users' /proc/PID/fd. The configuration names it either way.
                who = format!("the backend its configuration names: {}", f.detail);
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
    let status = match (pool, &listening) {
        (Some(p), Some(_)) if target.protocol == Protocol::Fastcgi => {
            status_page(target, cx, p).await
        }
        _ => None,
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
    if let Some(st) = &status {
        if let Some(level) = st.level.filter(|l| *l >= StatusLevel::Risk) {
            let (outcome, cause) = if level == StatusLevel::Exhausted {
                (Outcome::Break, CauseId::PoolExhausted)
            } else {
                (Outcome::Warn, CauseId::PoolExhausted)
            };
            if outcome == Outcome::Break || summaries.is_empty() {
                return StepFinding::new(outcome, Some(cause), st.said.clone())
                    .with_fix(fix_text(BackendLogClass::PoolExhausted, &fix_cx))
                    .with_evidence(st.source.clone(), st.detail.clone());
            }
        }
    }
    if let Some(s) = summaries.first() {
        return StepFinding::new(Outcome::Warn, Some(s.cause), s.sentence())
            .with_fix(fix_text(s.class, &fix_cx))
            .with_evidence(read.clone(), s.newest.clone());
    }
    if let Some((reason, fix)) = unreadable.first() {
        return StepFinding::unknown(reason.clone()).with_fix(fix.clone());
    }
    let status_note = status
        .map(|st| format!("; {}", st.said))
        .unwrap_or_default();
    StepFinding::pass(format!("no errors in the window in {read}{status_note}"))
}

/// What the pool's status page said, or why it could not be read.
struct StatusReading {
    /// None: not read (no answer, refused...); `said` tells why.
    level: Option<StatusLevel>,
    said: String,
    source: String,
    detail: String,
}

/// GET the pool's `pm.status_path?json` over its own socket, as php-fpm answers it itself.
/// A connect that fails with EAGAIN is the answer too: the listen queue is full right now.
async fn status_page(
    target: &UpstreamTarget,
    cx: &StepContext<'_>,
    pool: &FpmPool,
) -> Option<StatusReading> {
    let path = pool.status_path.as_deref()?;
    let conn = connect_target(target, cx).await.ok()?;
    let wait = STATUS_TIMEOUT.min(remaining(cx));
    let limits = Limits {
        connect_timeout: wait,
        read_timeout: wait,
        max_header: 4096,
    };
    let source = format!(
        "php-fpm status page {path}?json of pool [{}] via {conn}",
        pool.name
    );
    let answer = fastcgi_page(&conn, path, "json", &limits, STATUS_MAX_BODY).await;
    Some(match answer {
        Ok(page) if page.status == 200 => match parse_fpm_status(&page.body) {
            Ok(st) => {
                let judged = judge_fpm_status(&st);
                let figures = format!(
                    "status page: {} active, {} idle of pm.max_children {}; listen queue {} (max {}); max children reached {}",
                    show(st.active_processes),
                    show(st.idle_processes),
                    pool.max_children.map_or("?".to_string(), |n| n.to_string()),
                    show(st.listen_queue),
                    show(st.max_listen_queue),
                    show(st.max_children_reached),
                );
                let said = if judged.findings.is_empty() {
                    figures.clone()
                } else {
                    judged.findings.join("; ")
                };
                StatusReading {
                    level: Some(judged.level),
                    said,
                    source,
                    detail: figures,
                }
            }
            Err(e) => unread(source, format!("the status page did not parse: {e}")),
        },
        Ok(page) => unread(
            source,
            format!("the status page answered {} (is {path} the pool's pm.status_path?)", page.status),
        ),
        Err(Answer::ConnectFailed { error }) if error.contains("os error 11") => StatusReading {
            level: Some(StatusLevel::Exhausted),
            said: format!(
                "the pool's listen queue is full now: connecting to {conn} for its status page failed at once (EAGAIN), so every worker is busy and no connection can even wait"
            ),
            source,
            detail: error,
        },
        Err(Answer::NoAnswer { waited_ms }) | Err(Answer::ConnectTimeout { waited_ms }) => unread(
            source,
            format!("the status page did not answer within {waited_ms} ms: the pool's workers may all be busy"),
        ),
        Err(other) => unread(source, format!("the status page could not be read: {other:?}")),
    })
}

fn unread(source: String, said: String) -> StatusReading {
    StatusReading {
        level: None,
        detail: said.clone(),
        said,
        source,
    }
}

fn show(n: Option<u64>) -> String {
    n.map_or("?".to_string(), |n| n.to_string())
}

fn who_or_logs(who: &str, read: &str) -> String {
    if who.is_empty() {
        read.to_string()
    } else {
        format!("{who} logged")
    }
}

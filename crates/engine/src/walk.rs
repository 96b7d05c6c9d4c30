//! The walker: for each upstream, the steps of `TREE` in order, stopping at the first break
//! (unless `--all`); upstreams walked concurrently under one deadline.

use std::sync::Arc;

use tokio::task::JoinSet;
use tokio::time::Instant;
use why502_model::{CauseId, Outcome, Status, StepId, StepReport, UpstreamReport, Verdict};

use crate::sources::Sources;
use crate::steps::{error_log, run_step, StepContext};
use crate::targets::UpstreamTarget;
use crate::tree::{tree_step, TREE};

pub async fn walk_all(
    targets: Vec<UpstreamTarget>,
    sources: Arc<Sources>,
    all: bool,
    deadline: Instant,
) -> Vec<UpstreamReport> {
    let mut set = JoinSet::new();
    for (i, t) in targets.iter().cloned().enumerate() {
        let sources = sources.clone();
        set.spawn(async move { (i, walk(&t, &sources, all, deadline).await) });
    }
    let mut done: Vec<Option<UpstreamReport>> = vec![None; targets.len()];
    // The deadline bounds the whole walk: whatever has not finished is reported as such.
    let _ = tokio::time::timeout_at(deadline, async {
        while let Some(joined) = set.join_next().await {
            if let Ok((i, report)) = joined {
                done[i] = Some(report);
            }
        }
    })
    .await;
    set.abort_all();
    targets
        .iter()
        .zip(done)
        .map(|(t, r)| r.unwrap_or_else(|| timed_out(t)))
        .collect()
}

pub async fn walk(
    target: &UpstreamTarget,
    sources: &Sources,
    all: bool,
    deadline: Instant,
) -> UpstreamReport {
    let cx = StepContext { sources, deadline };
    let mut steps = Vec::with_capacity(TREE.len());
    let mut broke_at: Option<StepId> = None;
    let mut broke_with: Option<CauseId> = None;
    for node in TREE {
        // After a break, a step still runs when it can name the cause behind it.
        let explains = broke_with.is_some_and(|c| node.explains.contains(&c));
        if let (Some(at), false, false) = (broke_at, all, explains) {
            steps.push(StepReport {
                step: node.id,
                outcome: Outcome::Skip,
                cause: None,
                summary: format!("not reached: the walk stopped at {at}"),
                fix: None,
                evidence: Vec::new(),
                duration_ms: 0,
            });
            continue;
        }
        let t0 = Instant::now();
        let f = run_step(node.id, target, &cx).await;
        if f.outcome == Outcome::Break && broke_at.is_none() {
            broke_at = Some(node.id);
            broke_with = f.cause;
        }
        steps.push(StepReport {
            step: node.id,
            outcome: f.outcome,
            cause: f.cause,
            summary: f.summary,
            fix: f.fix,
            evidence: f.evidence,
            duration_ms: t0.elapsed().as_millis() as u64,
        });
    }
    let (mut status, mut verdict) = conclude(&steps);
    // The error log steers the answer: a failure nginx logged that no probe explains is the
    // break when it is happening now, a warning when it is older.
    if status != Status::Break {
        if let Some((log_status, log_verdict)) =
            error_log::unexplained(target, sources, std::time::SystemTime::now())
        {
            if log_status > status {
                if log_status == Status::Break {
                    mark_error_log_break(&mut steps, &log_verdict);
                }
                status = log_status;
                verdict = log_verdict;
            }
        }
    }
    UpstreamReport {
        address: target.address.clone(),
        name: target.name.clone(),
        protocol: target.protocol,
        tls: target.tls,
        referenced_by: target.references.clone(),
        status,
        verdict,
        steps,
    }
}

/// The error-log step is the one that broke: say so in its own report too.
fn mark_error_log_break(steps: &mut [StepReport], v: &Verdict) {
    if let Some(s) = steps.iter_mut().find(|s| s.step == StepId::ErrorLog) {
        s.outcome = Outcome::Break;
        s.cause = Some(v.cause);
        s.fix = Some(v.fix.clone());
    }
}

/// The verdict is the first break; without one, unknown steps make the status unknown (we
/// never say ok about what we could not look at), and risks make it a warning.
pub fn conclude(steps: &[StepReport]) -> (Status, Verdict) {
    if let Some(first) = steps.iter().find(|s| s.outcome == Outcome::Break) {
        // A later step that explains the first break names the cause behind it.
        let behind = first.cause.and_then(|symptom| {
            steps.iter().find(|s| {
                s.outcome == Outcome::Break
                    && s.step > first.step
                    && tree_step(s.step).explains.contains(&symptom)
            })
        });
        let b = behind.unwrap_or(first);
        let cause = b.cause.unwrap_or(CauseId::Unknown);
        // What nginx itself logged is the first evidence an admin looks for: quote the newest
        // error-log line beside the break it explains.
        let logged = steps
            .iter()
            .find(|s| s.step == StepId::ErrorLog && s.outcome == Outcome::Warn)
            .and_then(|s| s.evidence.first().cloned());
        return (
            Status::Break,
            Verdict {
                step: b.step,
                cause,
                fix: b.fix.clone().unwrap_or_else(|| cause.fix().to_string()),
                summary: match behind {
                    Some(_) => format!("{} — {}", first.summary, b.summary),
                    None => b.summary.clone(),
                },
                evidence: logged
                    .into_iter()
                    .chain(b.evidence.iter().cloned())
                    .chain(behind.iter().flat_map(|_| first.evidence.iter().cloned()))
                    .collect(),
            },
        );
    }
    // A step that could not look leaves the status unknown only if it could have found a break
    // (the error log is evidence for the others, not a check of its own).
    let unknown: Vec<&StepReport> = steps
        .iter()
        .filter(|s| s.outcome == Outcome::Unknown && !tree_step(s.step).causes.is_empty())
        .collect();
    let risk = steps
        .iter()
        .find(|s| s.outcome == Outcome::Warn && s.cause.is_some());
    let last_run = steps
        .iter()
        .rev()
        .find(|s| s.outcome != Outcome::Skip)
        .map(|s| s.step)
        .unwrap_or(StepId::ErrorLog);
    if let Some(u) = unknown.first() {
        let summary = format!(
            "no break found, but {} step(s) could not look: {}: {}",
            unknown.len(),
            u.step,
            u.summary
        );
        return (
            Status::Unknown,
            Verdict {
                step: u.step,
                cause: CauseId::None,
                summary,
                fix: "Run why502 as root so every source can be read.".to_string(),
                evidence: u.evidence.clone(),
            },
        );
    }
    if let Some(r) = risk {
        let cause = r.cause.unwrap_or(CauseId::None);
        return (
            Status::Warning,
            Verdict {
                step: r.step,
                cause,
                summary: r.summary.clone(),
                fix: r.fix.clone().unwrap_or_else(|| cause.fix().to_string()),
                evidence: r.evidence.clone(),
            },
        );
    }
    let passed = steps.iter().filter(|s| s.outcome == Outcome::Pass).count();
    (
        Status::Ok,
        Verdict {
            step: last_run,
            cause: CauseId::None,
            summary: format!("no break found ({passed} step(s) passed)"),
            fix: CauseId::None.fix().to_string(),
            evidence: Vec::new(),
        },
    )
}

fn timed_out(t: &UpstreamTarget) -> UpstreamReport {
    UpstreamReport {
        address: t.address.clone(),
        name: t.name.clone(),
        protocol: t.protocol,
        tls: t.tls,
        referenced_by: t.references.clone(),
        status: Status::Unknown,
        verdict: Verdict {
            step: StepId::BackendUp,
            cause: CauseId::None,
            summary: "the run's --timeout ran out before this upstream's walk finished".to_string(),
            fix: "Run again with a larger --timeout, or --upstream to diagnose it alone."
                .to_string(),
            evidence: Vec::new(),
        },
        steps: Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use why502_model::Evidence;

    fn step(step: StepId, outcome: Outcome, cause: Option<CauseId>) -> StepReport {
        StepReport {
            step,
            outcome,
            cause,
            summary: format!("{step} {outcome:?}"),
            fix: None,
            evidence: vec![Evidence::new(format!("{step}"), "detail")],
            duration_ms: 0,
        }
    }

    #[test]
    fn status_and_verdict_rules() {
        use Outcome::*;
        use StepId::*;
        // (steps, expected status, expected verdict cause)
        let cases: Vec<(Vec<StepReport>, Status, CauseId)> = vec![
            (
                vec![step(ErrorLog, Pass, None), step(BackendUp, Pass, None)],
                Status::Ok,
                CauseId::None,
            ),
            (
                vec![
                    step(ErrorLog, Warn, None),
                    step(BackendUp, Break, Some(CauseId::SocketPermission)),
                ],
                Status::Break,
                CauseId::SocketPermission,
            ),
            // Could not look where a break could hide: never ok.
            (
                vec![step(ErrorLog, Pass, None), step(BackendUp, Unknown, None)],
                Status::Unknown,
                CauseId::None,
            ),
            // The error log is evidence only: not reading it does not make the upstream unknown.
            (
                vec![step(ErrorLog, Unknown, None), step(BackendUp, Pass, None)],
                Status::Ok,
                CauseId::None,
            ),
            // A risk with a cause warns; an informational warn does not.
            (
                vec![
                    step(BackendUp, Pass, None),
                    step(NginxConfig, Warn, Some(CauseId::ConfigChangedSinceLoad)),
                ],
                Status::Warning,
                CauseId::ConfigChangedSinceLoad,
            ),
            (
                vec![step(ErrorLog, Warn, None), step(BackendUp, Pass, None)],
                Status::Ok,
                CauseId::None,
            ),
            // A break wins over an unknown elsewhere.
            (
                vec![
                    step(BackendUp, Unknown, None),
                    step(NginxConfig, Break, Some(CauseId::NginxConfigInvalid)),
                ],
                Status::Break,
                CauseId::NginxConfigInvalid,
            ),
        ];
        for (steps, status, cause) in cases {
            let (s, v) = conclude(&steps);
            assert_eq!((s, v.cause), (status, cause), "{steps:?}");
        }
    }

    #[test]
    fn break_verdict_quotes_the_error_log_first() {
        let steps = vec![
            step(StepId::ErrorLog, Outcome::Warn, None),
            step(
                StepId::BackendUp,
                Outcome::Break,
                Some(CauseId::BackendDown),
            ),
        ];
        let (_, v) = conclude(&steps);
        let sources: Vec<&str> = v.evidence.iter().map(|e| e.source.as_str()).collect();
        assert_eq!(sources, ["error_log", "backend_up"]);
    }
}

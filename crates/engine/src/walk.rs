//! The walker: for each upstream, the steps of `TREE` in order, stopping at the first break
//! (unless `--all`); upstreams walked concurrently under one deadline.

use std::sync::Arc;

use tokio::task::JoinSet;
use tokio::time::Instant;
use why502_model::{CauseId, Outcome, Status, StepId, StepReport, UpstreamReport, Verdict};

use crate::sources::Sources;
use crate::steps::{run_step, StepContext};
use crate::targets::UpstreamTarget;
use crate::tree::TREE;

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

pub async fn walk(target: &UpstreamTarget, sources: &Sources, all: bool, deadline: Instant) -> UpstreamReport {
    let cx = StepContext { sources, deadline };
    let mut steps = Vec::with_capacity(TREE.len());
    let mut broke_at: Option<StepId> = None;
    for node in TREE {
        if let (Some(at), false) = (broke_at, all) {
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
    let (status, verdict) = conclude(&steps);
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

/// The verdict is the first break; without one, unknown steps make the status unknown (we
/// never say ok about what we could not look at), and risks make it a warning.
pub fn conclude(steps: &[StepReport]) -> (Status, Verdict) {
    if let Some(b) = steps.iter().find(|s| s.outcome == Outcome::Break) {
        let cause = b.cause.unwrap_or(CauseId::Unknown);
        return (
            Status::Break,
            Verdict {
                step: b.step,
                cause,
                summary: b.summary.clone(),
                fix: b.fix.clone().unwrap_or_else(|| cause.fix().to_string()),
                evidence: b.evidence.clone(),
            },
        );
    }
    let unknown: Vec<&StepReport> = steps.iter().filter(|s| s.outcome == Outcome::Unknown).collect();
    let risk = steps.iter().find(|s| s.outcome == Outcome::Warn && s.cause.is_some());
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
            fix: "Run again with a larger --timeout, or --upstream to diagnose it alone.".to_string(),
            evidence: Vec::new(),
        },
        steps: Vec::new(),
    }
}

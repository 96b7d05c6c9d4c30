//! The walker: for each upstream, the steps of `TREE` in order, stopping at the first break
//! (unless `--all`); upstreams walked concurrently under one deadline.

use std::sync::Arc;
use std::time::SystemTime;

use tokio::task::JoinSet;
use tokio::time::Instant;
use why502_model::{CauseId, Outcome, Status, StepId, StepReport, UpstreamReport, Verdict};

use crate::facts::{self, GatherCx, TargetFacts};
use crate::sources::Sources;
use crate::steps::{self, error_log, JudgeCx, KillRef, StepFinding};
use crate::targets::UpstreamTarget;
use crate::tree::{tree_step, TreeStep, TREE};

/// How a walk's findings become the upstream's verdict: the first rule that applies decides.
/// `why502 tree` prints these under the steps.
pub const VERDICT_RULES: &[&str] = &[
    "a break: the first step that broke, or the step after it that explains it (its cause is the verdict, its summary prefixed by the symptom)",
    "a failure nginx logged for this upstream in the last 5 min that no step explains or clears: a break at error_log",
    "a step that could have found a break but could not look: unknown, with that step's reason and fix",
    "a risk a step found (a warning with a cause), then an older logged failure nothing explains, then a failure logged in the last 5 min that the probes cleared (recovered is not ok): a warning",
    "otherwise ok",
];

/// The upstreams' reports, and the OOM kills their walks tied to them (the rest of the
/// kernel log's kills are host checks).
pub async fn walk_all(
    targets: Vec<UpstreamTarget>,
    sources: Arc<Sources>,
    all: bool,
    deadline: Instant,
    progress: Option<std::sync::Arc<crate::options::Progress>>,
) -> (Vec<UpstreamReport>, Vec<KillRef>) {
    use std::sync::atomic::Ordering;
    if let Some(p) = &progress {
        p.total.store(targets.len(), Ordering::Relaxed);
    }
    let mut set = JoinSet::new();
    for (i, t) in targets.iter().cloned().enumerate() {
        let sources = sources.clone();
        set.spawn(async move { (i, walk(&t, &sources, all, deadline).await) });
    }
    let mut done: Vec<Option<UpstreamReport>> = vec![None; targets.len()];
    let mut claims = Vec::new();
    // The deadline bounds the whole walk: whatever has not finished is reported as such.
    let _ = tokio::time::timeout_at(deadline, async {
        while let Some(joined) = set.join_next().await {
            if let Ok((i, (report, claimed))) = joined {
                done[i] = Some(report);
                claims.extend(claimed);
            }
            if let Some(p) = &progress {
                p.done.fetch_add(1, Ordering::Relaxed);
            }
        }
    })
    .await;
    set.abort_all();
    let reports = targets
        .iter()
        .zip(done)
        .map(|(t, r)| r.unwrap_or_else(|| timed_out(t)))
        .collect();
    (reports, claims)
}

/// `steps[].classes` of the error_log step: the classes gathered for this upstream.
fn logged_classes(facts: &TargetFacts) -> Vec<why502_model::LoggedClass> {
    let at = |t: i64| {
        u64::try_from(t)
            .map(|s| {
                humantime::format_rfc3339_seconds(
                    std::time::SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(s),
                )
                .to_string()
            })
            .unwrap_or_default()
    };
    facts
        .logged
        .iter()
        .map(|c| why502_model::LoggedClass {
            class: c.class.id().to_string(),
            count: c.count,
            first: at(c.first.time),
            last: at(c.last.time),
            line: c.last.message.clone(),
            source: c.last_source.clone(),
        })
        .collect()
}

pub async fn walk(
    target: &UpstreamTarget,
    sources: &Sources,
    all: bool,
    deadline: Instant,
) -> (UpstreamReport, Vec<KillRef>) {
    let gx = GatherCx { sources, deadline };
    let mut gathered = TargetFacts::default();
    let mut steps = Vec::with_capacity(TREE.len());
    let mut claims = Vec::new();
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
                classes: None,
            });
            continue;
        }
        let t0 = Instant::now();
        facts::gather_for(node.id, target, &gx, &mut gathered).await;
        let cx = JudgeCx {
            sources,
            facts: &gathered,
            explaining: broke_with.filter(|_| explains),
            now: SystemTime::now(),
        };
        let f = steps::judge(node.id, target, &cx);
        debug_assert!(
            names_declared_cause(node, &f),
            "step {} named {:?}, a cause TREE does not declare for it",
            node.id,
            f.cause
        );
        if f.outcome == Outcome::Break && broke_at.is_none() {
            broke_at = Some(node.id);
            broke_with = f.cause;
        }
        claims.extend(f.claims.iter().copied());
        steps.push(StepReport {
            step: node.id,
            outcome: f.outcome,
            cause: f.cause,
            summary: f.summary,
            fix: f.fix,
            evidence: f.evidence,
            duration_ms: t0.elapsed().as_millis() as u64,
            classes: (node.id == StepId::ErrorLog).then(|| logged_classes(&gathered)),
        });
    }
    let logged = error_log::unexplained(target, &gathered, SystemTime::now());
    let (status, mut verdict) = conclude(&mut steps, logged, sources.as_root);
    // Since when, and what changed just before: only for an upstream that is not ok.
    let timeline = if status == Status::Ok {
        Vec::new()
    } else {
        let budget = deadline
            .saturating_duration_since(tokio::time::Instant::now())
            .min(std::time::Duration::from_secs(2));
        facts::timeline::gather(target, &gathered, sources, budget).await;
        let (events, decisive) =
            facts::timeline::build(target, &gathered, sources, &claims, SystemTime::now());
        if let Some(d) = decisive {
            verdict.summary = format!("{}; {d}", verdict.summary);
        }
        events
    };
    // How bad: the access log's counts, where someone will look at them.
    let traffic = (status != Status::Ok || sources.narrowed)
        .then(|| facts::traffic::for_target(target, sources, SystemTime::now()))
        .flatten();
    let report = UpstreamReport {
        address: target.address.clone(),
        name: target.name.clone(),
        protocol: target.protocol,
        tls: target.tls,
        referenced_by: target.references.clone(),
        status,
        verdict,
        steps,
        timeline,
        traffic,
        container: gathered
            .container
            .as_ref()
            .and_then(facts::container::ContainerFacts::found)
            .map(facts::container::report),
    };
    (report, claims)
}

/// A finding may name only a cause its step declares in `TREE` (or none).
pub fn names_declared_cause(node: &TreeStep, f: &StepFinding) -> bool {
    f.cause
        .is_none_or(|c| c == CauseId::None || node.causes.contains(&c))
}

/// The walk's verdict by `VERDICT_RULES`. `logged` is the failure nginx logged that nothing
/// explains or clears, with its status (break when recent, warning when older).
pub fn conclude(
    steps: &mut [StepReport],
    logged: Option<(Status, Verdict)>,
    as_root: bool,
) -> (Status, Verdict) {
    let (status, verdict) = conclude_steps(steps, as_root);
    if status == Status::Break {
        return (status, verdict);
    }
    match logged {
        Some((Status::Break, v)) => {
            // The error-log step is the one that broke: say so in its own report too.
            if let Some(s) = steps.iter_mut().find(|s| s.step == StepId::ErrorLog) {
                s.outcome = Outcome::Break;
                s.cause = Some(v.cause);
                s.fix = Some(v.fix.clone());
            }
            (Status::Break, v)
        }
        Some((log_status, v)) if log_status > status => (log_status, v),
        _ => (status, verdict),
    }
}

/// The verdict is the first break; without one, unknown steps make the status unknown (we
/// never say ok about what we could not look at), and risks make it a warning.
fn conclude_steps(steps: &[StepReport], as_root: bool) -> (Status, Verdict) {
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
                fix: u.fix.clone().unwrap_or_else(|| {
                    if as_root {
                        "Look at the source named above by hand: why502 could not read it."
                            .to_string()
                    } else {
                        "Run why502 as root so every source can be read.".to_string()
                    }
                }),
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
        timeline: Vec::new(),
        traffic: None,
        container: None,
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
            classes: None,
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
            // An error log that could not be read leaves the steering undone: never ok.
            (
                vec![step(ErrorLog, Unknown, None), step(BackendUp, Pass, None)],
                Status::Unknown,
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
            let mut steps = steps;
            let (s, v) = conclude(&mut steps, None, true);
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
        let mut steps = steps;
        let (_, v) = conclude(&mut steps, None, true);
        let sources: Vec<&str> = v.evidence.iter().map(|e| e.source.as_str()).collect();
        assert_eq!(sources, ["error_log", "backend_up"]);
    }
}

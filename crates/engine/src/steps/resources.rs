//! Step `resources`: did the kernel OOM-kill this upstream's backend, and are the filesystems
//! it writes out of space or inodes? Judged on the run's kernel-log window and the gathered
//! backend facts.
//!
//! Attribution (ARCHITECTURE.md, "evidence that belongs"): an OOM kill counts for an upstream
//! only when it is tied to its backend — the killed pid is of the backend's family (or the pid
//! a dead backend's pid file names), or the kill's own cgroup *is* the backend's cgroup and
//! that cgroup holds nothing else (never an ancestor of it, never a name alone) — and its time
//! fits. Every other kill is a host check.

use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use why502_backend::FormerSource;
use why502_disk::{DiskJudgement, DiskThresholds, Resource, UnreadableKind, Writer};
use why502_kernel_log::{KernelLogWindow, OomKill};
use why502_model::{CauseId, Outcome};

use super::{JudgeCx, StepFinding};
use crate::facts::container::ContainerFound;
use crate::facts::{BackendFacts, BackendProcess};
use crate::targets::UpstreamTarget;

/// A kill of a dead backend this long before the address's first logged failure did not start
/// it: the backend served the address after it.
const KILL_LONG_BEFORE_FAILURE: Duration = Duration::from_secs(30 * 60);
/// The kernel log's clock and a process's start time (boot time plus ticks) disagree by up to
/// this much.
const CLOCK_SLACK: Duration = Duration::from_secs(1);
/// nginx logs the first failure after the kill; a kill after it came too late to cause it.
const KILL_AFTER_FAILURE_SLACK: Duration = Duration::from_secs(5);

pub fn judge(target: &UpstreamTarget, cx: &JudgeCx<'_>) -> StepFinding {
    let backend = cx.facts.backend.as_ref();
    let current = backend.and_then(|b| b.current.as_ref());
    let oom = oom_finding(target, backend, cx);
    if oom.outcome == Outcome::Break {
        return oom;
    }
    let disk = disk_finding(current, cx);
    if disk.outcome == Outcome::Break {
        return disk;
    }
    // Nothing broke: an unreadable kernel log leaves the OOM question open; a tied kill of a
    // backend that serves now is a risk.
    match oom.outcome {
        Outcome::Unknown | Outcome::Warn => oom,
        _ if disk.outcome != Outcome::Pass => disk,
        _ => StepFinding {
            summary: format!("{}; {}", oom.summary, disk.summary),
            ..oom
        },
    }
}

/// Whether cgroup path `inner` is `outer` or lies below it ("/a/b" is within "/a", "/ab" is not).
fn within_cgroup(inner: &str, outer: &str) -> bool {
    let outer = outer.trim_end_matches('/');
    outer.is_empty()
        || inner == outer
        || inner
            .strip_prefix(outer)
            .is_some_and(|rest| rest.starts_with('/'))
}

/// Why a kill is this upstream's backend's, or None when nothing ties them.
pub(crate) fn tie(
    kill: &OomKill,
    backend: Option<&BackendFacts>,
    container: Option<&ContainerFound>,
    first_failure: Option<SystemTime>,
) -> Option<String> {
    // A container's processes are killed in its own cgroup, which its id names; the kill
    // belongs to the run that was going then (from its start to a little after its end).
    if let Some(c) = container {
        let s = &c.state;
        let in_its_cgroup = kill
            .task_memcg
            .as_deref()
            .and_then(why502_container::container_of_path)
            .is_some_and(|r| r.id == s.id);
        // Any run of it counts (a policy restarts it after an OOM kill): only a kill after
        // it last stopped cannot be its.
        let before_end = s.running
            || s.finished_at
                .is_none_or(|t| kill.time <= t + KILL_AFTER_FAILURE_SLACK);
        if in_its_cgroup && before_end {
            return Some(format!(
                "it was killed in container {}'s own cgroup {}",
                s.name,
                kill.task_memcg.as_deref().unwrap_or_default()
            ));
        }
    }
    let backend = backend?;
    if let Some(b) = &backend.current {
        if let Some(m) = b.family.iter().find(|m| m.pid == kill.pid) {
            // A live process that was killed is still dying; one that started after the kill
            // has the pid of an earlier process (pids are reused), and one outside the
            // backend's cgroup (its own or one below it: a unit with Delegate=yes puts its
            // workers in child cgroups) is another process too.
            let alive_then = m.started_at.is_none_or(|s| s <= kill.time + CLOCK_SLACK);
            let same_cgroup = match (kill.task_memcg.as_deref(), b.memory_cgroup.as_deref()) {
                (Some(k), Some(own)) => within_cgroup(k, own),
                _ => true,
            };
            if alive_then && same_cgroup {
                return Some(format!("pid {} is of this backend", kill.pid));
            }
        }
        let own_cgroup = b.cgroup_dedicated
            && b.memory_cgroup.is_some()
            && kill.task_memcg.as_deref() == b.memory_cgroup.as_deref();
        // A kill before this backend started was of an earlier instance.
        let after_start = b.started_at.is_none_or(|s| kill.time >= s);
        if own_cgroup && after_start {
            return Some(format!(
                "it was killed in the backend's own cgroup {}",
                b.memory_cgroup.as_deref().unwrap_or_default()
            ));
        }
        return None;
    }
    if let Some(first) = first_failure {
        if kill.time > first + KILL_AFTER_FAILURE_SLACK
            || kill.time + KILL_LONG_BEFORE_FAILURE < first
        {
            return None;
        }
    }
    backend.former.iter().find_map(|f| {
        if f.pid_from_file == Some(kill.pid) {
            return Some(format!(
                "pid {} is the php-fpm master its pid file names ({})",
                kill.pid, f.backend.detail
            ));
        }
        if let FormerSource::Process { pid } = f.backend.source {
            if pid == kill.pid {
                return Some(format!("pid {pid} was configured to serve this address"));
            }
        }
        let unit = f.backend.unit.as_deref()?;
        let cg = kill.task_memcg.as_deref()?;
        (cg.rsplit('/').next() == Some(unit)).then(|| {
            format!(
                "it was killed in the cgroup of {unit}, which is configured to serve this address ({})",
                f.backend.detail
            )
        })
    })
}

fn oom_finding(
    target: &UpstreamTarget,
    backend: Option<&BackendFacts>,
    cx: &JudgeCx<'_>,
) -> StepFinding {
    let read = match cx.sources.kernel_log() {
        KernelLogWindow::Unknown { reason, fix, .. } => {
            return StepFinding::unknown(format!(
                "cannot tell whether the kernel OOM-killed the backend: {reason}"
            ))
            .with_fix(fix.clone())
        }
        KernelLogWindow::Read(r) => r,
    };
    let container = cx
        .facts
        .container
        .as_ref()
        .and_then(crate::facts::container::ContainerFacts::found);
    let first_failure = cx
        .facts
        .logged
        .iter()
        .map(|c| c.first.time)
        .min()
        .and_then(|t| u64::try_from(t).ok())
        .map(|t| SystemTime::UNIX_EPOCH + Duration::from_secs(t));
    let tied: Vec<(&OomKill, String)> = read
        .kills
        .iter()
        .filter_map(|k| tie(k, backend, container, first_failure).map(|why| (k, why)))
        .collect();
    let Some((kill, why)) = tied.iter().max_by_key(|(k, _)| k.time) else {
        let from = if read.complete() {
            String::new()
        } else {
            " (the kernel log does not reach back to the window's start)".to_string()
        };
        return StepFinding::pass(format!(
            "no OOM kill of this backend in the {} ({} kill(s) of other processes){from}",
            read.source.label(),
            read.kills.len()
        ));
    };
    let when = ago(kill.time, cx.now);
    let memcg = kill
        .oom_memcg
        .as_deref()
        .filter(|_| kill.cgroup_oom)
        .map(|m| format!(", memory cgroup {m} at its limit"))
        .unwrap_or_default();
    let current = backend.and_then(|b| b.current.as_ref());
    let summary = match current {
        Some(b) => format!(
            "the kernel OOM-killed {} (pid {}) of this backend {when}{memcg} ({why}); {} (pid {}) serves {} now",
            kill.process, kill.pid, b.owner.name, b.owner.pid, target.address
        ),
        None => format!(
            "the kernel OOM-killed {} (pid {}) {when}{memcg} ({why}), and nothing listens on {} since",
            kill.process, kill.pid, target.address
        ),
    };
    // A backend that was killed but answers now: the kill is a risk, not the break — unless
    // the walk runs this step to explain a break.
    let outcome = if current.is_some() && cx.explaining.is_none() {
        Outcome::Warn
    } else {
        Outcome::Break
    };
    let mut f = StepFinding::new(outcome, Some(CauseId::OomKilled), summary)
        .with_fix(CauseId::OomKilled.fix())
        .with_evidence(read.source.label(), kill.line.clone());
    f.claims = tied.iter().map(|(k, _)| (k.pid, k.time)).collect();
    f
}

fn disk_finding(backend: Option<&BackendProcess>, cx: &JudgeCx<'_>) -> StepFinding {
    let src = cx.sources;
    let Some(gathered) = cx.facts.filesystems.as_ref() else {
        return StepFinding::unknown("the backend's filesystems were not gathered");
    };
    let paths = &gathered.paths;
    let Some(set) = gathered.set.as_ref() else {
        return StepFinding::pass("no filesystem of the backend to check (nothing listens)");
    };
    let writer = backend
        .and_then(|b| b.uid)
        .map(Writer::for_uid)
        .unwrap_or(Writer::Unprivileged);
    let r = &src.agent.resources;
    let thresholds = DiskThresholds {
        warn_percent: r.disk_warn_percent,
        inode_warn_percent: r.inode_warn_percent,
    };
    let role = |p: &PathBuf| {
        paths
            .iter()
            .find(|(q, _)| q == p)
            .map(|(_, r)| *r)
            .unwrap_or("a path")
    };
    let mut warn: Option<StepFinding> = None;
    for fs in &set.filesystems {
        let u = &fs.usage;
        let first = &fs.paths[0];
        let place = format!(
            "{} ({}, {} on {})",
            first.display(),
            role(first),
            u.fstype,
            u.mount_point.display()
        );
        let df = format!(
            "{} of {} bytes available, {} of {} inodes free",
            u.bytes_avail(),
            u.bytes_total(),
            u.inodes.map(|i| i.avail).unwrap_or(0),
            u.inodes.map(|i| i.total).unwrap_or(0)
        );
        let evidence_src = format!("statvfs {}", first.display());
        match u.judge(&thresholds, writer) {
            DiskJudgement::Full => {
                return StepFinding::broken(
                    CauseId::DiskFull,
                    format!("{place} is full: the backend's writes there fail with ENOSPC"),
                )
                .with_fix(CauseId::DiskFull.fix())
                .with_evidence(evidence_src, df)
            }
            DiskJudgement::NoInodes => {
                return StepFinding::broken(
                    CauseId::InodesExhausted,
                    format!("{place} has no free inodes: the backend cannot create files there"),
                )
                .with_fix(CauseId::InodesExhausted.fix())
                .with_evidence(evidence_src, df)
            }
            DiskJudgement::Warn { resource, percent } if warn.is_none() => {
                let (cause, what) = match resource {
                    Resource::Space => (CauseId::DiskFull, "space"),
                    Resource::Inodes => (CauseId::InodesExhausted, "inodes"),
                };
                warn = Some(
                    StepFinding::new(
                        Outcome::Warn,
                        Some(cause),
                        format!("{place} is {percent}% used ({what}); it breaks the backend when it fills"),
                    )
                    .with_evidence(evidence_src, df),
                );
            }
            _ => {}
        }
    }
    if let Some(w) = warn {
        return w;
    }
    let denied: Vec<String> = set
        .unreadable
        .iter()
        .filter(|u| u.kind != UnreadableKind::NotFound)
        .map(|u| u.reason.clone())
        .collect();
    if !denied.is_empty() {
        return StepFinding::unknown(format!(
            "cannot check the backend's filesystems: {}",
            denied.join("; ")
        ))
        .with_fix(if cx.sources.as_root {
            "Check the mount and its permissions by hand (`df` and `ls -ld` of each path)."
        } else {
            "Run why502 as root."
        });
    }
    StepFinding::pass(format!(
        "{} filesystem(s) of the backend have space and inodes",
        set.filesystems.len()
    ))
}

fn ago(t: SystemTime, now: SystemTime) -> String {
    let secs = now.duration_since(t).map(|d| d.as_secs()).unwrap_or(0);
    let stamp = humantime::format_rfc3339_seconds(t);
    format!("at {stamp} ({secs} s ago)")
}

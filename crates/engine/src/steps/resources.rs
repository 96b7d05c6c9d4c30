//! Step `resources`: did the kernel OOM-kill the backend, and are the filesystems it writes
//! (its socket's directory, its working directory, the directories of its open files) out of
//! space or inodes? The kernel log is read once per run; each upstream only matches against it.

use std::path::PathBuf;
use std::time::SystemTime;

use why502_disk::{DiskJudgement, DiskThresholds, FilesystemSet, Resource, UnreadableKind, Writer};
use why502_kernel_log::{KernelLogWindow, OomKill, OomQuery};
use why502_model::{CauseId, Outcome};

use super::backend_process::{self, BackendProcess};
use super::backend_up::is_backend_like;
use super::{StepContext, StepFinding};
use crate::targets::{TargetAddr, UpstreamTarget};

/// Interpreters share one kernel name across unrelated programs: a kill of "python3" is this
/// backend's only when the pid or the cgroup says so.
const GENERIC_NAMES: &[&str] = &["python", "python3", "node", "ruby", "java", "perl", "php"];

pub async fn check(target: &UpstreamTarget, cx: &StepContext<'_>) -> StepFinding {
    let backend = backend_process::find(target, cx).await;
    let oom = oom_finding(target, backend.as_ref(), cx);
    if let Some(f) = oom.as_ref().filter(|f| f.outcome == Outcome::Break) {
        return f.clone();
    }
    let disk = disk_finding(target, backend.as_ref(), cx).await;
    if disk.outcome == Outcome::Break {
        return disk;
    }
    // Nothing broke: an unreadable kernel log leaves the OOM question open.
    match oom {
        Some(f) if f.outcome == Outcome::Unknown => f,
        _ if disk.outcome != Outcome::Pass => disk,
        Some(f) => StepFinding {
            summary: format!("{}; {}", f.summary, disk.summary),
            ..f
        },
        None => disk,
    }
}

fn oom_finding(
    target: &UpstreamTarget,
    backend: Option<&BackendProcess>,
    cx: &StepContext<'_>,
) -> Option<StepFinding> {
    let src = cx.sources;
    let read = match &src.kernel {
        KernelLogWindow::Unknown { reason, fix, .. } => {
            return Some(
                StepFinding::unknown(format!(
                    "cannot tell whether the kernel OOM-killed the backend: {reason}"
                ))
                .with_fix(fix.clone()),
            )
        }
        KernelLogWindow::Read(r) => r,
    };
    let candidates: Vec<&OomKill> = match backend {
        Some(b) => {
            let query = OomQuery {
                pids: b.family.iter().copied().collect(),
                process_names: if GENERIC_NAMES.contains(&b.comm.as_str()) {
                    Vec::new()
                } else {
                    vec![b.comm.clone()]
                },
                cgroup_prefixes: b.memory_cgroup.iter().cloned().collect(),
            };
            read.kills.iter().filter(|k| query.matches(k)).collect()
        }
        // Nothing listens any more: a backend-like process the kernel killed in the window is
        // the likely reason.
        None => read
            .kills
            .iter()
            .filter(|k| is_backend_like(&k.process))
            .collect(),
    };
    let Some(kill) = candidates.iter().max_by_key(|k| k.time) else {
        let from = if read.complete() {
            String::new()
        } else {
            " (the kernel log does not reach back to the window's start)".to_string()
        };
        return Some(StepFinding::pass(format!(
            "no OOM kill of the backend in the {} ({} kill(s) in all){from}",
            read.source.label(),
            read.kills.len()
        )));
    };
    src.attribute_kill(kill);
    let when = ago(kill.time);
    let memcg = kill
        .oom_memcg
        .as_deref()
        .filter(|_| kill.cgroup_oom)
        .map(|m| format!(", memory cgroup {m} at its limit"))
        .unwrap_or_default();
    let summary = match backend {
        Some(b) => format!(
            "the kernel OOM-killed {} (pid {}) of this backend {when}{memcg}; {} (pid {}) serves {} now",
            kill.process, kill.pid, b.owner.name, b.owner.pid, target.address
        ),
        None => format!(
            "the kernel OOM-killed {} (pid {}) {when}{memcg}, and nothing listens on {} since",
            kill.process, kill.pid, target.address
        ),
    };
    Some(
        StepFinding::broken(CauseId::OomKilled, summary)
            .with_fix(CauseId::OomKilled.fix())
            .with_evidence(read.source.label(), kill.line.clone()),
    )
}

async fn disk_finding(
    target: &UpstreamTarget,
    backend: Option<&BackendProcess>,
    cx: &StepContext<'_>,
) -> StepFinding {
    let src = cx.sources;
    let mut paths: Vec<(PathBuf, &'static str)> = Vec::new();
    if let TargetAddr::Unix(p) = &target.addr {
        if let Some(dir) = p.parent() {
            paths.push((dir.to_path_buf(), "the socket's directory"));
        }
    }
    if let Some(b) = backend {
        if let Some(cwd) = &b.cwd {
            paths.push((cwd.clone(), "the backend's working directory"));
        }
        for dir in src.procs.open_file_dirs(b.owner.pid, 4096, 32) {
            paths.push((dir, "a directory the backend has files open in"));
        }
    }
    // PHP writes sessions and uploads where the pool tells it; a full one fails the script.
    if let Some(upstream) = why502_backend::BackendAddr::parse_upstream(&target.address) {
        for pool in src
            .fpm_configs
            .iter()
            .flat_map(|c| c.pools_serving(&upstream))
        {
            if let Some(dir) = pool.session_save_path().and_then(session_dir) {
                paths.push((dir, "the pool's session.save_path"));
            }
            if let Some(dir) = pool.upload_tmp_dir().filter(|d| d.starts_with('/')) {
                paths.push((PathBuf::from(dir), "the pool's upload_tmp_dir"));
            }
        }
    }
    if paths.is_empty() {
        return StepFinding::pass("no filesystem of the backend to check (nothing listens)");
    }
    let asked: Vec<PathBuf> = paths.iter().map(|(p, _)| p.clone()).collect();
    let budget = super::backend_up::remaining(cx).min(std::time::Duration::from_secs(2));
    let set = FilesystemSet::gather(asked, budget).await;
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
        .with_fix("Run why502 as root.");
    }
    StepFinding::pass(format!(
        "{} filesystem(s) of the backend have space and inodes",
        set.filesystems.len()
    ))
}

/// The directory of a files-handler `session.save_path`: `/var/lib/php/sessions`, or with
/// PHP's prefixes `N;/path` and `N;MODE;/path`. Other handlers' values (`tcp://redis:6379`)
/// are not directories.
fn session_dir(value: &str) -> Option<PathBuf> {
    let value = value.trim().trim_matches('"');
    if value.contains("://") {
        return None;
    }
    let dir = value.rsplit(';').next()?;
    dir.starts_with('/').then(|| PathBuf::from(dir))
}

fn ago(t: SystemTime) -> String {
    let secs = SystemTime::now()
        .duration_since(t)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let stamp = humantime::format_rfc3339_seconds(t);
    format!("at {stamp} ({secs} s ago)")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn session_save_path_forms() {
        assert_eq!(
            session_dir("/var/lib/php/sessions"),
            Some(PathBuf::from("/var/lib/php/sessions"))
        );
        assert_eq!(session_dir("2;/srv/sess"), Some(PathBuf::from("/srv/sess")));
        assert_eq!(
            session_dir("\"2;600;/srv/sess\""),
            Some(PathBuf::from("/srv/sess"))
        );
        assert_eq!(session_dir("tcp://127.0.0.1:6379"), None);
        assert_eq!(session_dir("relative/dir"), None);
    }
}

//! Host-wide resource checks: risks that break no upstream yet (an OOM kill of a process no
//! upstream explains, memory pressure, nginx's own filesystems filling) become `host_checks`
//! warnings; a filesystem nginx writes to that is full is a break of its own.

use std::path::PathBuf;
use std::time::Duration;

use why502_disk::{
    DiskJudgement, DiskThresholds, FilesystemSet, MemoryJudgement, MemoryThresholds, Resource,
    Writer,
};
use why502_kernel_log::KernelLogWindow;
use why502_model::{CauseId, Evidence, HostCheck, Outcome, StepId};

use crate::sources::Sources;
use crate::steps::KillRef;

/// How many unclaimed OOM kills the host check names; the count says the rest.
const SHOWN_KILLS: usize = 5;

/// Filesystems nginx itself writes: its logs and, on Debian, its temp files.
pub fn nginx_paths(error_logs: &[PathBuf]) -> Vec<PathBuf> {
    let mut paths: Vec<PathBuf> = error_logs
        .iter()
        .filter_map(|p| p.parent().map(PathBuf::from))
        .collect();
    for p in ["/var/lib/nginx", "/tmp"] {
        let p = PathBuf::from(p);
        if p.is_dir() && !paths.contains(&p) {
            paths.push(p);
        }
    }
    paths.dedup();
    paths
}

/// `claimed`: the kills some upstream's walk tied to its backend; every other kill in the
/// window is a host-wide risk.
pub async fn checks(
    src: &Sources,
    claimed: &[KillRef],
    nginx_paths: Vec<PathBuf>,
    budget: Duration,
) -> Vec<HostCheck> {
    let mut out = Vec::new();
    let unexplained: Vec<_> = src
        .kernel_log()
        .kills()
        .iter()
        .filter(|k| !claimed.contains(&(k.pid, k.time)))
        .collect();
    if !unexplained.is_empty() {
        let newest = unexplained.iter().max_by_key(|k| k.time);
        // The newest few by name; a busy host's window can hold hundreds.
        let mut newest_first = unexplained.clone();
        newest_first.sort_by_key(|k| std::cmp::Reverse(k.time));
        let mut names: Vec<String> = newest_first
            .iter()
            .take(SHOWN_KILLS)
            .map(|k| format!("{} (pid {})", k.process, k.pid))
            .collect();
        if unexplained.len() > SHOWN_KILLS {
            names.push(format!("and {} more", unexplained.len() - SHOWN_KILLS));
        }
        out.push(HostCheck {
            step: StepId::Resources,
            outcome: Outcome::Warn,
            cause: CauseId::OomKilled,
            summary: format!(
                "the kernel OOM-killed {} process(es) in the window that no upstream depends on: {}",
                unexplained.len(),
                names.join(", ")
            ),
            fix: Some("Memory is short on this host: find what grew (`dmesg -T | grep -i oom`), lower its limits or add memory before a backend is next.".to_string()),
            evidence: newest
                .map(|k| Evidence::new(kernel_source(src.kernel_log()), k.line.clone()))
                .into_iter()
                .collect(),
        });
    }
    let r = &src.agent.resources;
    let memory = src.memory.judge(&MemoryThresholds {
        min_available_percent: r.memory_available_warn_percent,
        max_psi_full_avg60: r.memory_psi_full_avg60_warn,
    });
    if let MemoryJudgement::Warn { reasons } = memory {
        out.push(HostCheck {
            step: StepId::Resources,
            outcome: Outcome::Warn,
            cause: CauseId::OomKilled,
            summary: format!("memory is short: {}", reasons.join("; ")),
            fix: Some("Free memory or add it; the OOM killer is next.".to_string()),
            evidence: vec![Evidence::new("/proc/meminfo", reasons.join("; "))],
        });
    }
    let set = FilesystemSet::gather(nginx_paths, budget).await;
    let thresholds = DiskThresholds {
        warn_percent: r.disk_warn_percent,
        inode_warn_percent: r.inode_warn_percent,
    };
    // nginx's workers write logs and temp files as an unprivileged user.
    for fs in &set.filesystems {
        let u = &fs.usage;
        let place = format!(
            "{} ({} on {})",
            fs.paths[0].display(),
            u.fstype,
            u.mount_point.display()
        );
        let evidence = vec![Evidence::new(
            format!("statvfs {}", fs.paths[0].display()),
            format!("{} of {} bytes available", u.bytes_avail(), u.bytes_total()),
        )];
        let (outcome, cause, summary) = match u.judge(&thresholds, Writer::Unprivileged) {
            DiskJudgement::Full => (
                Outcome::Break,
                CauseId::DiskFull,
                format!("{place} is full: nginx cannot write its logs or buffer responses there"),
            ),
            DiskJudgement::NoInodes => (
                Outcome::Break,
                CauseId::InodesExhausted,
                format!("{place} has no free inodes: nginx cannot create its temp files there"),
            ),
            DiskJudgement::Warn {
                resource: Resource::Space,
                percent,
            } => (
                Outcome::Warn,
                CauseId::DiskFull,
                format!("{place} is {percent}% full"),
            ),
            DiskJudgement::Warn {
                resource: Resource::Inodes,
                percent,
            } => (
                Outcome::Warn,
                CauseId::InodesExhausted,
                format!("{place} has used {percent}% of its inodes"),
            ),
            DiskJudgement::Ok | DiskJudgement::NotApplicable => continue,
        };
        out.push(HostCheck {
            step: StepId::Resources,
            outcome,
            cause,
            summary,
            fix: Some(cause.fix().to_string()),
            evidence,
        });
    }
    out
}

fn kernel_source(k: &KernelLogWindow) -> String {
    match k {
        KernelLogWindow::Read(r) => r.source.label().to_string(),
        KernelLogWindow::Unknown { .. } => "kernel log".to_string(),
    }
}

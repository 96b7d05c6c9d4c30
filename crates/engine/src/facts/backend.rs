//! The backend's side of an upstream: the processes behind the listener (a php-fpm master and
//! its pool workers, a gunicorn arbiter and its workers), their cgroup, or — when nothing
//! listens — what is configured to serve the address; the backend's own logs in the window
//! and php-fpm's status page.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use why502_backend::{
    identify_backend, parse_fpm_status, BackendAddr, BackendIdentity, BackendKind, BackendLogEvent,
    FormerBackend, FormerSource, FpmPool, LogRole, StatusLevel,
};
use why502_model::Protocol;
use why502_request::{fastcgi_page, Answer, Limits};

use super::probe::connect_target;
use super::{GatherCx, TargetFacts};
use crate::sources::Owner;
use crate::targets::UpstreamTarget;

/// How long the status page may take: php-fpm answers it at once unless every worker is busy,
/// and then the wait itself is the finding.
const STATUS_TIMEOUT: Duration = Duration::from_secs(1);
/// A status page (`?json`, without `&full`) is a few hundred bytes.
const STATUS_MAX_BODY: usize = 16 * 1024;

#[derive(Debug, Clone, Default)]
pub struct BackendFacts {
    /// The backend listening where nginx points, if one does.
    pub current: Option<BackendProcess>,
    /// What is configured to serve the address (pools, units, command lines), for a backend
    /// that is down.
    pub former: Vec<FormerFacts>,
}

#[derive(Debug, Clone)]
pub struct BackendProcess {
    /// The process holding the listening socket.
    pub owner: Owner,
    /// The owner, the master above it when they share a name, and the master's children.
    pub family: Vec<FamilyMember>,
    /// The user the owner runs as (who writes its files).
    pub uid: Option<u32>,
    /// The kernel's name for it (what an OOM kill line says).
    pub comm: String,
    /// Its memory cgroup, as /proc/PID/cgroup names it.
    pub memory_cgroup: Option<String>,
    /// That cgroup holds this backend and nothing else: a service or scope unit of its own,
    /// or every process in it is of the backend's family.
    pub cgroup_dedicated: bool,
    /// When the master (else the owner) started: kills before it were of an earlier instance.
    pub started_at: Option<SystemTime>,
    pub cwd: Option<PathBuf>,
    /// Directories of the files it has open (where it writes).
    pub open_dirs: Vec<PathBuf>,
    pub identity: Option<BackendIdentity>,
}

/// A live process of the backend. Its start time tells a kill of it from a kill of an earlier
/// process that had the same pid (pids are reused: a busy host wraps them in minutes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FamilyMember {
    pub pid: u32,
    pub started_at: Option<SystemTime>,
}

impl BackendProcess {
    pub fn family_pids(&self) -> impl Iterator<Item = u32> + '_ {
        self.family.iter().map(|m| m.pid)
    }
}

/// Something configured to serve the address, and what ties a dead process to it.
#[derive(Debug, Clone)]
pub struct FormerFacts {
    pub backend: FormerBackend,
    /// The pid its pid file still names (a php-fpm master's `pid = ...`), read now.
    pub pid_from_file: Option<u32>,
}

/// The backend's logs in the window and its status page.
#[derive(Debug, Clone)]
pub struct BackendLog {
    /// `php-fpm (pid 123)`, or the configuration that names a dead backend.
    pub who: String,
    pub kind: BackendKind,
    /// The php-fpm pools that serve this address: only their lines in a shared log count.
    pub pools: Vec<String>,
    /// The backend's processes (current or former), whose un-pooled lines count.
    pub pids: Vec<u32>,
    pub files: Vec<LogFileRead>,
    pub status: Option<StatusReading>,
}

#[derive(Debug, Clone)]
pub struct LogFileRead {
    pub path: PathBuf,
    pub role: LogRole,
    pub read: LogRead,
}

/// A backend log's window.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LogRead {
    Events(Vec<BackendLogEvent>),
    /// Configured but not created yet: nothing has been logged (a fresh pool's normal state).
    NotWritten,
    /// Exists (or must) and cannot be read: why, and what would fix it.
    Unreadable {
        reason: String,
        fix: String,
    },
}

/// What the pool's status page said, or why it could not be read.
#[derive(Debug, Clone)]
pub struct StatusReading {
    /// None: not read (no answer, refused...); `said` tells why.
    pub level: Option<StatusLevel>,
    pub said: String,
    pub source: String,
    pub detail: String,
}

pub(super) async fn gather(target: &UpstreamTarget, cx: &GatherCx<'_>, facts: &mut TargetFacts) {
    if facts.backend.is_some() {
        return;
    }
    super::reach::gather(target, cx, facts).await;
    let src = cx.sources;
    let upstream = BackendAddr::parse_upstream(&target.address);
    let owner = facts.reach.as_ref().and_then(|r| r.owner()).cloned();
    let current = owner.and_then(|o| current_backend(o, upstream.as_ref(), cx));
    let former = match (&current, &upstream) {
        (None, Some(up)) => why502_backend::former_backends_with(
            up,
            &src.fpm_configs,
            src.units(),
            &src.procs,
            src.listen_claims(),
        )
        .into_iter()
        .map(|b| FormerFacts {
            pid_from_file: pid_file_of(&b, cx),
            backend: b,
        })
        .collect(),
        _ => Vec::new(),
    };
    facts.backend = Some(BackendFacts { current, former });
}

fn current_backend(
    owner: Owner,
    upstream: Option<&BackendAddr>,
    cx: &GatherCx<'_>,
) -> Option<BackendProcess> {
    let src = cx.sources;
    let procs = &src.procs;
    let me = procs.get(owner.pid)?;
    // php-fpm masters and gunicorn arbiters hold the socket and fork the workers that die.
    let master = procs
        .get(me.ppid)
        .filter(|p| p.comm == me.comm && p.pid > 1)
        .unwrap_or(me);
    let mut members = vec![master];
    members.extend(procs.children_of(master.pid));
    if !members.iter().any(|m| m.pid == me.pid) {
        members.push(me);
    }
    let family_pids: Vec<u32> = members.iter().map(|m| m.pid).collect();
    let family = members
        .iter()
        .map(|m| FamilyMember {
            pid: m.pid,
            started_at: procs.start_time(m),
        })
        .collect();
    let memory_cgroup = procs
        .cgroup(owner.pid)
        .and_then(|text| why502_kernel_log::memory_cgroup_path(&text));
    let cgroup_dedicated = memory_cgroup
        .as_deref()
        .is_some_and(|cg| is_unit_cgroup(cg) || every_member_is_family(src, cg, &family_pids));
    Some(BackendProcess {
        uid: procs.credentials(owner.pid).map(|c| c.uid),
        comm: me.comm.clone(),
        cwd: procs.cwd(owner.pid),
        open_dirs: src.open_dirs_of(owner.pid),
        started_at: procs.start_time(master),
        identity: identify_backend(
            procs,
            owner.pid,
            &src.fpm_configs,
            upstream,
            SystemTime::now(),
        ),
        owner,
        family,
        memory_cgroup,
        cgroup_dedicated,
    })
}

/// A cgroup systemd (or a container engine) made for one service: `/system.slice/x.service`,
/// `docker-<id>.scope`. Sessions and the user manager hold everything a user runs.
pub fn is_unit_cgroup(cg: &str) -> bool {
    let last = cg.rsplit('/').next().unwrap_or("");
    (last.ends_with(".service") || last.ends_with(".scope"))
        && !last.starts_with("session-")
        && !last.starts_with("user@")
        && last != "init.scope"
}

/// Every process in the cgroup is one of the backend's (read from its `cgroup.procs`, under
/// the v1 memory hierarchy or the unified one). The root cgroup is never dedicated.
fn every_member_is_family(src: &crate::Sources, cg: &str, family: &[u32]) -> bool {
    src.cgroup_members(cg)
        .is_some_and(|pids| !pids.is_empty() && pids.iter().all(|p| family.contains(p)))
}

/// The pid a php-fpm pool's master wrote into its `pid` file (it stays after a SIGKILL).
fn pid_file_of(b: &FormerBackend, cx: &GatherCx<'_>) -> Option<u32> {
    let FormerSource::PhpFpmPool { config, .. } = &b.source else {
        return None;
    };
    let cfg = cx
        .sources
        .fpm_configs
        .iter()
        .find(|c| &c.main_file == config)?;
    let path = cfg.global.pid.as_ref()?;
    let bytes = why502_host::read_bounded(path, 64).ok()?;
    String::from_utf8_lossy(&bytes).trim().parse().ok()
}

pub(super) async fn gather_logs(
    target: &UpstreamTarget,
    cx: &GatherCx<'_>,
    facts: &mut TargetFacts,
) {
    if facts.logs.is_some() {
        return;
    }
    let src = cx.sources;
    let Some(upstream) = BackendAddr::parse_upstream(&target.address) else {
        return;
    };
    let Some(backend) = facts.backend.as_ref() else {
        return;
    };
    let mut logs: Vec<(PathBuf, LogRole)> = Vec::new();
    let mut kind = BackendKind::Other {
        name: "backend".to_string(),
    };
    let mut who = String::new();
    let mut pids: Vec<u32> = Vec::new();
    if let Some(b) = &backend.current {
        pids = b.family_pids().collect();
        if let Some(id) = &b.identity {
            who = format!("{} (pid {})", b.owner.name, b.owner.pid);
            kind = id.kind.clone();
            logs.extend(id.logs.iter().map(|l| (l.path.clone(), l.role)));
        }
    } else {
        for f in &backend.former {
            if who.is_empty() {
                // No listener we could map to a pid: the backend is down, or this user may
                // not read other users' /proc/PID/fd. The configuration names it either way.
                who = format!("the backend its configuration names: {}", f.backend.detail);
                kind = f.backend.kind.clone();
            }
            pids.extend(f.pid_from_file);
            if let FormerSource::Process { pid } = f.backend.source {
                pids.push(pid);
            }
            logs.extend(f.backend.logs.iter().map(|l| (l.path.clone(), l.role)));
        }
    }
    logs.sort_by(|a, b| a.0.cmp(&b.0));
    logs.dedup_by(|a, b| a.0 == b.0);
    let pools: Vec<String> = src
        .fpm_configs
        .iter()
        .flat_map(|c| c.pools_serving(&upstream))
        .map(|p| p.name.clone())
        .collect();
    let files = logs
        .into_iter()
        .map(|(path, role)| LogFileRead {
            read: src.backend_log(&path),
            path,
            role,
        })
        .collect();
    let pool = src
        .fpm_configs
        .iter()
        .flat_map(|c| c.pools_serving(&upstream))
        .next();
    let status = match (pool, &backend.current) {
        (Some(p), Some(_)) if target.protocol == Protocol::Fastcgi => {
            status_page(target, cx, p).await
        }
        _ => None,
    };
    facts.logs = Some(BackendLog {
        who,
        kind,
        pools,
        pids,
        files,
        status,
    });
}

/// Why a log that exists cannot be read, naming the real obstacle: its mode and owner, and
/// the group that would open it — never "run as root" to an agent that is root.
pub fn unreadable_reason(path: &Path, as_root: bool) -> (String, String) {
    let shown = path.display();
    let Ok(meta) = std::fs::metadata(path) else {
        return (
            format!("{shown} cannot be read"),
            format!("check {shown} and the directories above it"),
        );
    };
    let mode = meta.mode() & 0o7777;
    let owner = why502_host::user_name(meta.uid());
    let group = why502_host::group_name(meta.gid());
    let facts = format!("mode {mode:04o}, owner {owner}:{group}");
    if as_root {
        (
            format!("{shown} ({facts}) is denied even to root"),
            "A mount option, an NFS root squash or a security module denies it; read it by hand to see which.".to_string(),
        )
    } else if mode & 0o040 != 0 {
        (
            format!("{shown} ({facts}): this user is not in group {group}"),
            format!("Add the user that runs why502 to group {group} (`usermod -aG {group} USER`), or run it as root."),
        )
    } else {
        (
            format!("{shown} ({facts}) is readable by {owner} only"),
            format!("Run why502 as root or as {owner}, or make the log group-readable."),
        )
    }
}

/// GET the pool's `pm.status_path?json` over its own socket, as php-fpm answers it itself.
/// A connect that fails with EAGAIN is the answer too: the listen queue is full right now.
async fn status_page(
    target: &UpstreamTarget,
    cx: &GatherCx<'_>,
    pool: &FpmPool,
) -> Option<StatusReading> {
    let path = pool.status_path.as_deref()?;
    let conn = connect_target(target, cx).await.ok()?;
    let wait = STATUS_TIMEOUT.min(cx.remaining());
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
                let judged = why502_backend::judge_fpm_status(&st);
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_unit_cgroups_are_dedicated_by_name() {
        assert!(is_unit_cgroup("/system.slice/php8.2-fpm.service"));
        assert!(is_unit_cgroup("/system.slice/docker-0123abcd.scope"));
        assert!(!is_unit_cgroup("/"));
        assert!(!is_unit_cgroup("/user.slice/user-0.slice/session-3.scope"));
        assert!(!is_unit_cgroup(
            "/user.slice/user-1000.slice/user@1000.service"
        ));
        assert!(!is_unit_cgroup("/init.scope"));
        assert!(!is_unit_cgroup("/why502-lab/app"));
    }
}

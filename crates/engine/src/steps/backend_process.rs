//! The processes behind an upstream: the one holding the listening socket, and its family (a
//! php-fpm master and its pool workers, a gunicorn arbiter and its workers). Later steps ask
//! what happened to these processes (their logs, OOM kills, their disks).

use std::path::PathBuf;
use std::time::Duration;

use super::backend_up::{bound_listeners, remaining};
use super::StepContext;
use crate::sources::Owner;
use crate::targets::{TargetAddr, UpstreamTarget};

#[derive(Debug, Clone)]
pub struct BackendProcess {
    /// The process holding the listening socket.
    pub owner: Owner,
    /// The owner, the master above it when they share a name, and the master's children.
    pub family: Vec<u32>,
    /// The user the owner runs as (who writes its files).
    pub uid: Option<u32>,
    /// The kernel's name for it (what an OOM kill line says).
    pub comm: String,
    /// Its memory cgroup, when it is a dedicated one (a `.service` unit or the like).
    pub memory_cgroup: Option<String>,
    pub cwd: Option<PathBuf>,
}

/// The backend listening where nginx points, if one does.
pub async fn find(target: &UpstreamTarget, cx: &StepContext<'_>) -> Option<BackendProcess> {
    let src = cx.sources;
    let inode = match &target.addr {
        TargetAddr::Unix(path) => bound_listeners(src, path).into_iter().next()?,
        TargetAddr::Tcp { host, port } => {
            let budget = remaining(cx).min(Duration::from_secs(1));
            let ips = src
                .resolve_as_nginx(target, host, *port, budget)
                .await
                .ok()?;
            ips.iter()
                .filter(|ip| src.is_local(**ip) == Some(true))
                .find_map(|ip| src.listen.tcp_accepting(*ip, *port))?
                .inode
        }
    };
    let owner = src.owner(inode)?;
    let procs = &src.procs;
    let me = procs.get(owner.pid)?;
    // php-fpm masters and gunicorn arbiters hold the socket and fork the workers that die.
    let master = procs
        .get(me.ppid)
        .filter(|p| p.comm == me.comm && p.pid > 1)
        .map(|p| p.pid)
        .unwrap_or(me.pid);
    let mut family = vec![master];
    family.extend(procs.children_of(master).map(|c| c.pid));
    if !family.contains(&me.pid) {
        family.push(me.pid);
    }
    let memory_cgroup = procs
        .cgroup(owner.pid)
        .and_then(|text| why502_kernel_log::memory_cgroup_path(&text))
        .filter(|cg| is_dedicated_cgroup(cg));
    Some(BackendProcess {
        uid: procs.credentials(owner.pid).map(|c| c.uid),
        comm: me.comm.clone(),
        cwd: procs.cwd(owner.pid),
        owner,
        family,
        memory_cgroup,
    })
}

/// A cgroup that holds one service, so that "killed in this cgroup" means "killed in this
/// backend". The root and the user/session slices hold everything else too.
pub fn is_dedicated_cgroup(cg: &str) -> bool {
    let last = cg.rsplit('/').next().unwrap_or("");
    !last.is_empty()
        && !cg.contains("/user.slice")
        && !last.starts_with("session-")
        && !last.starts_with("user@")
        && cg != "/init.scope"
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_service_like_cgroups_identify_a_backend() {
        assert!(is_dedicated_cgroup("/system.slice/php8.2-fpm.service"));
        assert!(is_dedicated_cgroup("/why502-lab/app"));
        assert!(!is_dedicated_cgroup("/"));
        assert!(!is_dedicated_cgroup(
            "/user.slice/user-0.slice/session-3.scope"
        ));
        assert!(!is_dedicated_cgroup("/init.scope"));
    }
}

//! The gather layer for one upstream: every host read a step's judgement needs, made before
//! the judgement and kept in `TargetFacts`. Run-wide sources (the process table, listeners,
//! logs, the kernel log, rulesets) are read once in `Sources`; what is particular to one
//! upstream (its socket's stat, the processes behind its listener, the direct request, the
//! filesystems its backend writes) is gathered here, lazily: only for the steps the walk
//! reaches, and each fact once however many steps use it.
//!
//! Architecture invariant: this module and `Sources` are the only places of the engine that
//! touch the host; `steps/*` judge `TargetFacts` and `Sources` without reading anything.

mod backend;
pub mod container;
mod disk;
pub mod drift;
pub mod errorlog;
mod probe;
mod reach;
pub mod timeline;
pub mod traffic;

use std::net::IpAddr;
use std::time::Duration;

use tokio::time::Instant;
use why502_model::StepId;

pub use backend::{is_unit_cgroup, unreadable_reason, LogFileRead};
pub use backend::{
    BackendFacts, BackendLog, BackendProcess, FamilyMember, FormerFacts, LogRead, StatusReading,
};
pub use disk::{BackendFilesystems, FsRole};
pub use errorlog::{ClassSeen, ErrorLogs};
pub use probe::{DirectFacts, DirectProbe};
pub use reach::{is_backend_like, Candidate, IpReach, Reach, RemoteConnect};

use crate::sources::{DnsProblem, Sources};
use crate::targets::{TargetAddr, UpstreamTarget};

/// What was gathered about one upstream. Each field is `None` until a step that needs it is
/// reached.
#[derive(Debug, Default)]
pub struct TargetFacts {
    /// What nginx's error log says about this upstream, by class (the newest last).
    pub logged: Vec<ClassSeen>,
    /// TCP: the addresses nginx connects to, resolved as nginx resolves them.
    pub resolved: Option<Result<Vec<IpAddr>, DnsProblem>>,
    /// Whether something listens where nginx points, and may nginx's workers reach it.
    pub reach: Option<Reach>,
    /// Backend-like processes listening where nginx does not point (only when nothing
    /// listens at nginx's address).
    pub elsewhere: Option<Vec<Candidate>>,
    /// The backend behind the listener, or what is configured to serve a dead address.
    pub backend: Option<BackendFacts>,
    /// The request made directly to the backend.
    pub direct: Option<DirectFacts>,
    /// The backend's own logs in the window, and its status page.
    pub logs: Option<BackendLog>,
    /// The filesystems the backend writes.
    pub filesystems: Option<BackendFilesystems>,
    /// The container behind the address (a docker-proxy's, a container's process, or a stopped
    /// container that published the port). None: not a container's, or not looked at yet.
    pub container: Option<container::ContainerFacts>,
}

/// Where a gather stands in the run: the shared sources and the run's deadline.
pub struct GatherCx<'a> {
    pub sources: &'a Sources,
    pub deadline: Instant,
}

impl GatherCx<'_> {
    pub fn remaining(&self) -> Duration {
        self.deadline.saturating_duration_since(Instant::now())
    }
}

/// Gather what `step` judges, reusing whatever an earlier step already gathered.
pub async fn gather_for(
    step: StepId,
    target: &UpstreamTarget,
    cx: &GatherCx<'_>,
    facts: &mut TargetFacts,
) {
    match step {
        StepId::ErrorLog => {
            facts.logged = errorlog::seen(target, &cx.sources.error_logs, &cx.sources.log_keys);
            // A logged permission denial is judged against the socket's ctime.
            if matches!(target.addr, TargetAddr::Unix(_)) {
                reach::gather(target, cx, facts).await;
            }
        }
        StepId::BackendUp => {
            reach::gather(target, cx, facts).await;
            container::gather(target, cx, facts).await;
            if facts.reach.as_ref().is_some_and(Reach::nothing_listens) {
                reach::gather_elsewhere(target, cx, facts);
            }
        }
        StepId::DirectRequest => probe::gather(target, cx, facts).await,
        StepId::BackendLog => {
            backend::gather(target, cx, facts).await;
            backend::gather_logs(target, cx, facts).await;
            // A worker's SIGKILL is the OOM killer's only if the kernel log says so.
            cx.sources.kernel.wait().await;
        }
        StepId::Resources => {
            backend::gather(target, cx, facts).await;
            disk::gather(target, cx, facts).await;
            cx.sources.kernel.wait().await;
        }
        StepId::Security => {
            resolve(target, cx, facts).await;
            if matches!(target.addr, TargetAddr::Tcp { .. }) {
                cx.sources.firewall.wait().await;
            }
            cx.sources.security.wait().await;
        }
        StepId::NginxConfig => {
            cx.sources.config.wait().await;
        }
    }
}

/// Resolve a TCP target's host once, as nginx does.
pub(crate) async fn resolve(target: &UpstreamTarget, cx: &GatherCx<'_>, facts: &mut TargetFacts) {
    if facts.resolved.is_some() {
        return;
    }
    if let TargetAddr::Tcp { host, port } = &target.addr {
        let budget = cx.remaining().min(Duration::from_secs(3));
        facts.resolved = Some(
            cx.sources
                .resolve_as_nginx(target, host, *port, budget)
                .await,
        );
    }
}

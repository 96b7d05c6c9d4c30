//! The container behind an upstream's address. Three ties, checked in this order:
//! - the listener is a `docker-proxy`: its argv names the container's address, and the
//!   dockerd that started it (its parent) knows which container has it;
//! - the listener's process is in a container's cgroup (`--network host`, or a unix socket
//!   shared through a volume);
//! - nothing listens on a TCP address: a stopped container of an engine in nginx's network
//!   namespace published that port (only the engine still knows).
//!
//! The engines are asked once per run (`Sources::container_engines`), and only at sockets a
//! running daemon serves. A listener that is a container's while the engine cannot be asked
//! (not root, socket refused) is `Unasked`, with the reason: never taken for "no container".

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use why502_container::{
    container_of_cgroup, ContainerEvent, ContainerState, DockerProxy, EngineClient, LogLine,
    PortBinding,
};

use super::{GatherCx, IpReach, Reach, TargetFacts};
use crate::sources::Owner;
use crate::targets::{TargetAddr, UpstreamTarget};

/// The last lines of a container's log a report quotes.
const LOG_TAIL: usize = 20;
/// A log line's cap in a report.
const LOG_LINE_MAX: usize = 300;

#[derive(Debug, Clone)]
pub enum ContainerFacts {
    Found(Box<ContainerFound>),
    /// A container holds the address, but the engine could not tell which or in what state.
    Unasked {
        /// `docker-proxy (pid 5) for 172.17.0.2:80`.
        who: String,
        reason: String,
        fix: String,
    },
}

#[derive(Debug, Clone)]
pub struct ContainerFound {
    pub tie: ContainerTie,
    pub state: ContainerState,
    /// The engine socket that answered.
    pub engine: PathBuf,
    /// `dockerd` or `podman`.
    pub daemon: &'static str,
    /// Its last log lines, read when it is not running, restarts, or fails its health check.
    pub logs: Option<Result<Vec<LogLine>, String>>,
    /// The engine's events of it in the window (starts, exits with their codes, OOM kills),
    /// read when its log is.
    pub events: Option<Result<Vec<ContainerEvent>, String>>,
}

impl ContainerFound {
    fn event_list(&self) -> &[ContainerEvent] {
        match &self.events {
            Some(Ok(e)) => e,
            _ => &[],
        }
    }

    /// The exit code of its last run: the state's when it is not running; between two
    /// crashes of a restart loop (running, code reset to 0) the last `die` event's.
    pub fn last_exit_code(&self) -> i64 {
        let s = &self.state;
        if !s.running || s.restarting && s.exit_code != 0 {
            return s.exit_code;
        }
        self.event_list()
            .iter()
            .rev()
            .find_map(|e| (e.action == "die").then_some(e.exit_code).flatten())
            .unwrap_or(s.exit_code)
    }

    /// The engine restarts it again and again: it is restarting now, or it failed by itself
    /// at least twice in the window under a restart policy (an exit the engine was told to
    /// cause — `docker stop`, `restart`, `kill` — is not a failure).
    pub fn crash_looping(&self) -> bool {
        let s = &self.state;
        if s.restarting {
            return true;
        }
        if s.restart_policy == "no" {
            return false;
        }
        self.failures().len() >= 2 || (self.events.is_none() && s.crash_looping())
    }

    /// Its exits in the window that nobody asked for: `die` events with a code other than 0,
    /// not within 30 s after a `kill` or `stop` event. With the reason: OOM when an `oom`
    /// event came just before.
    pub fn failures(&self) -> Vec<(std::time::SystemTime, i64, bool)> {
        use std::time::Duration;
        let events = self.event_list();
        let before = |i: usize, action: &str, within: Duration| {
            events[..i].iter().rev().any(|p| {
                p.action == action && events[i].at.duration_since(p.at).is_ok_and(|d| d <= within)
            })
        };
        events
            .iter()
            .enumerate()
            .filter(|(_, e)| e.action == "die" && e.exit_code.is_some_and(|c| c != 0))
            .filter(|(i, _)| {
                !before(*i, "kill", Duration::from_secs(30))
                    && !before(*i, "stop", Duration::from_secs(30))
            })
            .map(|(i, e)| {
                (
                    e.at,
                    e.exit_code.unwrap_or(0),
                    before(i, "oom", Duration::from_secs(5)),
                )
            })
            .collect()
    }

    /// The kernel OOM-killed it: its last run (`OOMKilled`), or an exit in the window.
    pub fn oom_killed(&self) -> bool {
        self.state.oom_killed || self.failures().iter().any(|(_, _, oom)| *oom)
    }

    /// Where a fact about it was read: `docker /run/docker.sock /containers/ID/json`.
    pub fn api_source(&self, what: &str) -> String {
        format!(
            "{} {} /containers/{}/{what}",
            self.cli(),
            self.engine.display(),
            self.state.short_id()
        )
    }

    /// Its state as the engine gave it, for evidence.
    pub fn state_line(&self) -> String {
        let s = &self.state;
        format!(
            "State.Status {}, ExitCode {}, OOMKilled {}, RestartCount {}, RestartPolicy {}{}",
            s.status,
            s.exit_code,
            s.oom_killed,
            s.restart_count,
            s.restart_policy,
            s.finished_at
                .map(|t| format!(", FinishedAt {}", humantime::format_rfc3339_seconds(t)))
                .unwrap_or_default()
        )
    }

    /// The engine's CLI for the fixes: `docker`, or `podman` for a podman service.
    pub fn cli(&self) -> &'static str {
        if self.daemon == "podman" {
            "podman"
        } else {
            "docker"
        }
    }

    /// Exits in the window, oldest first: (time, exit code).
    pub fn exits(&self) -> Vec<(std::time::SystemTime, Option<i64>)> {
        self.event_list()
            .iter()
            .filter(|e| e.action == "die")
            .map(|e| (e.at, e.exit_code))
            .collect()
    }
}

#[derive(Debug, Clone)]
pub enum ContainerTie {
    /// docker-proxy holds the host port and forwards to the container.
    Proxy { owner: Owner, proxy: DockerProxy },
    /// The listener's process is in the container's cgroup.
    Cgroup { owner: Owner, cgroup: String },
    /// Nothing listens; the stopped container published the address.
    Published { binding: PortBinding },
}

impl ContainerTie {
    /// How the container is tied to the address, for a summary.
    pub fn describe(&self) -> String {
        match self {
            ContainerTie::Proxy { owner, proxy } => format!(
                "{} (pid {}) forwards to it at {}:{}",
                owner.name, owner.pid, proxy.container_ip, proxy.container_port
            ),
            ContainerTie::Cgroup { owner, .. } => {
                format!("{} (pid {}) runs in its cgroup", owner.name, owner.pid)
            }
            ContainerTie::Published { binding } => format!("it publishes {}", binding.display()),
        }
    }
}

impl ContainerFacts {
    pub fn found(&self) -> Option<&ContainerFound> {
        match self {
            ContainerFacts::Found(f) => Some(f),
            ContainerFacts::Unasked { .. } => None,
        }
    }
}

pub(super) async fn gather(target: &UpstreamTarget, cx: &GatherCx<'_>, facts: &mut TargetFacts) {
    if facts.container.is_some() {
        return;
    }
    let Some(reach) = facts.reach.as_ref() else {
        return;
    };
    let budget = cx.remaining().min(Duration::from_secs(3));
    let found = match (reach, &target.addr) {
        (Reach::Tcp { probes }, TargetAddr::Tcp { port, .. }) => {
            let listening = probes.iter().find_map(|(_, r)| match r {
                IpReach::Listening { owner: Some(o), .. } => Some(o.clone()),
                _ => None,
            });
            match listening {
                Some(owner) => of_listener(&owner, cx, budget).await,
                None if reach.nothing_listens() => {
                    let ips: Vec<IpAddr> = probes
                        .iter()
                        .filter(|(_, r)| matches!(r, IpReach::NothingLocal))
                        .map(|(ip, _)| *ip)
                        .collect();
                    published_by_stopped(&ips, *port, cx, budget).await
                }
                None => None,
            }
        }
        (
            Reach::Unix {
                owner: Some(owner), ..
            },
            _,
        ) => of_listener(owner, cx, budget).await,
        _ => None,
    };
    let Some(mut found) = found else {
        return;
    };
    if let ContainerFacts::Found(f) = &mut found {
        let s = &f.state;
        let troubled = !s.running
            || s.restarting
            || s.restart_count > 0
            || s.health.as_ref().is_some_and(|h| h.status == "unhealthy");
        if troubled {
            let client = EngineClient::new(&f.engine, Default::default());
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs() as i64);
            f.events = Some(
                tokio::time::timeout(
                    cx.remaining().min(Duration::from_secs(2)),
                    why502_container::container_events(&client, &s.id, cx.sources.since_epoch, now),
                )
                .await
                .map_err(|_| "the engine did not send the events in time".to_string())
                .and_then(|r| r.map_err(|e| e.to_string())),
            );
            // The window's lines, else the last ones it wrote before it stopped.
            let since = (s.running || s.restarting).then_some(cx.sources.since_epoch);
            f.logs = Some(
                tokio::time::timeout(
                    cx.remaining().min(Duration::from_secs(2)),
                    why502_container::last_log_lines(&client, &s.id, LOG_TAIL, since, LOG_LINE_MAX),
                )
                .await
                .map_err(|_| "the engine did not send the logs in time".to_string())
                .and_then(|r| r.map_err(|e| e.to_string())),
            );
        }
    }
    facts.container = Some(found);
}

/// The container behind a listener's owner: a docker-proxy, or a process in a container's
/// cgroup.
async fn of_listener(owner: &Owner, cx: &GatherCx<'_>, budget: Duration) -> Option<ContainerFacts> {
    let src = cx.sources;
    let procs = &src.procs;
    let me = procs.get(owner.pid)?;
    if let Some(proxy) = DockerProxy::from_cmdline(&me.cmdline) {
        let who = format!(
            "{} (pid {}) for {}:{}",
            owner.name, owner.pid, proxy.container_ip, proxy.container_port
        );
        let engines = src.container_engines(budget).await;
        // The dockerd that started this proxy is its parent; its snapshot knows the address.
        let snapshot = engines
            .iter()
            .find(|s| s.endpoint.daemon_pid == me.ppid)
            .or_else(|| {
                engines
                    .iter()
                    .find(|s| s.at_container_ip(proxy.container_ip).is_some())
            });
        let Some(snapshot) = snapshot else {
            return Some(unasked(who, src.no_engine_reason(me.ppid)));
        };
        let summary = match (
            &snapshot.containers,
            snapshot.at_container_ip(proxy.container_ip),
        ) {
            (Err(e), _) => {
                return Some(unasked(
                    who,
                    (e.clone(), engine_fix(snapshot.permission_denied)),
                ))
            }
            (Ok(_), None) => {
                return Some(unasked(
                    who,
                    (
                        format!(
                            "no running container of {} has the address {}",
                            snapshot.endpoint.socket.display(),
                            proxy.container_ip
                        ),
                        String::new(),
                    ),
                ))
            }
            (Ok(_), Some(c)) => c.id.clone(),
        };
        let state = match src
            .container_state(&snapshot.endpoint.socket, &summary)
            .await
        {
            Ok(s) => s,
            Err(e) => return Some(unasked(who, (e, String::new()))),
        };
        return Some(ContainerFacts::Found(Box::new(ContainerFound {
            tie: ContainerTie::Proxy {
                owner: owner.clone(),
                proxy,
            },
            state,
            engine: snapshot.endpoint.socket.clone(),
            daemon: snapshot.endpoint.daemon,
            logs: None,
            events: None,
        })));
    }
    let cgroup = procs.cgroup(owner.pid)?;
    let container = container_of_cgroup(&cgroup)?;
    let who = format!(
        "{} (pid {}) in {} container {}",
        owner.name,
        owner.pid,
        container.runtime.label(),
        why502_container::short_id(&container.id)
    );
    let engines = src.container_engines(budget).await;
    let Some(snapshot) = engines.iter().find(|s| s.by_id(&container.id).is_some()) else {
        let reason = match engines.iter().find_map(|s| s.containers.as_ref().err()) {
            Some(e) => (
                e.clone(),
                engine_fix(engines.iter().any(|s| s.permission_denied)),
            ),
            None => src.no_engine_reason(0),
        };
        return Some(unasked(who, reason));
    };
    let state = match src
        .container_state(&snapshot.endpoint.socket, &container.id)
        .await
    {
        Ok(s) => s,
        Err(e) => return Some(unasked(who, (e, String::new()))),
    };
    Some(ContainerFacts::Found(Box::new(ContainerFound {
        tie: ContainerTie::Cgroup {
            owner: owner.clone(),
            cgroup: container.cgroup,
        },
        state,
        engine: snapshot.endpoint.socket.clone(),
        daemon: snapshot.endpoint.daemon,
        logs: None,
        events: None,
    })))
}

/// The newest stopped container that published one of `ips` at `port`, in an engine of this
/// network namespace. No engine, or none that published it: None (not a container's).
async fn published_by_stopped(
    ips: &[IpAddr],
    port: u16,
    cx: &GatherCx<'_>,
    budget: Duration,
) -> Option<ContainerFacts> {
    let src = cx.sources;
    let engines = src.container_engines(budget).await;
    let ours = || engines.iter().filter(|s| src.engine_is_ours(s));
    // Listed as running with the port, yet nothing listens: one between two crashes of a
    // restart loop (its proxy comes and goes with it), or one reached through the engine's
    // DNAT rules (`userland-proxy: false`). It is the one that serves now: before any
    // stopped one.
    for snapshot in ours() {
        for c in snapshot.summaries().iter().filter(|c| c.running()) {
            let Some(binding) = c
                .ports
                .iter()
                .find(|b| ips.iter().any(|ip| b.serves(*ip, port)))
            else {
                continue;
            };
            if let Ok(state) = src.container_state(&snapshot.endpoint.socket, &c.id).await {
                return Some(ContainerFacts::Found(Box::new(ContainerFound {
                    tie: ContainerTie::Published {
                        binding: binding.clone(),
                    },
                    state,
                    engine: snapshot.endpoint.socket.clone(),
                    daemon: snapshot.endpoint.daemon,
                    logs: None,
                    events: None,
                })));
            }
        }
    }
    let mut best: Option<(
        &ContainerState,
        &PortBinding,
        &why502_container::EngineSnapshot,
    )> = None;
    for snapshot in ours() {
        for ip in ips {
            for c in snapshot.stopped_publishing(*ip, port) {
                let newer = best
                    .as_ref()
                    .is_none_or(|(b, _, _)| c.finished_at > b.finished_at);
                if newer {
                    if let Some(binding) = c.bindings.iter().find(|b| b.serves(*ip, port)) {
                        best = Some((c, binding, snapshot));
                    }
                }
            }
        }
    }
    let (state, binding, snapshot) = best?;
    Some(ContainerFacts::Found(Box::new(ContainerFound {
        tie: ContainerTie::Published {
            binding: binding.clone(),
        },
        state: state.clone(),
        engine: snapshot.endpoint.socket.clone(),
        daemon: snapshot.endpoint.daemon,
        logs: None,
        events: None,
    })))
}

fn unasked(who: String, (reason, fix): (String, String)) -> ContainerFacts {
    ContainerFacts::Unasked { who, reason, fix }
}

pub(crate) fn engine_fix(permission_denied: bool) -> String {
    if permission_denied {
        "Run why502 as root (or as a member of the `docker` group) so it can read the Docker Engine API.".to_string()
    } else {
        String::new()
    }
}

/// The report's view of a found container.
pub fn report(f: &ContainerFound) -> why502_model::ContainerReport {
    let s = &f.state;
    let at = |t: std::time::SystemTime| humantime::format_rfc3339_seconds(t).to_string();
    why502_model::ContainerReport {
        engine: f.cli().into(),
        socket: f.engine.display().to_string(),
        id: s.id.clone(),
        name: s.name.clone(),
        image: s.image.clone(),
        state: s.status.clone(),
        exit_code: f.last_exit_code(),
        oom_killed: s.oom_killed,
        restart_count: s.restart_count,
        restart_policy: s.restart_policy.clone(),
        memory_limit: s.memory_limit,
        health: s.health.as_ref().map(|h| h.status.clone()),
        health_output: s
            .health
            .as_ref()
            .and_then(|h| h.last.as_ref())
            .map(|p| p.output.clone()),
        started_at: s.started_at.map(at),
        finished_at: s.finished_at.filter(|_| !s.running).map(at),
        tie: f.tie.describe(),
        last_lines: match &f.logs {
            Some(Ok(lines)) => lines.iter().map(|l| l.text.clone()).collect(),
            _ => Vec::new(),
        },
    }
}

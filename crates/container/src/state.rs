//! What the engine says of its containers: `GET /containers/json?all=1` (every container, a
//! summary each) and `GET /containers/{id}/json` (one container's state, restart count,
//! health and port bindings). Parsed leniently from `serde_json::Value`: a field this version
//! of the engine lacks is absent here, never a failed parse.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, SystemTime};

use serde_json::Value;

use crate::api::{EngineClient, EngineError};
use crate::endpoint::EngineEndpoint;
use crate::logs::{demux_logs, LogLine};

/// How many stopped containers a run inspects (newest first): only the engine still knows
/// which port a stopped container published, and a host may keep thousands of dead ones.
pub const MAX_INSPECTED_STOPPED: usize = 64;
/// Inspections in flight at once.
const INSPECT_CONCURRENCY: usize = 8;

/// A host port a container publishes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortBinding {
    /// None: every address (`0.0.0.0`, `::`, or left out).
    pub host_ip: Option<IpAddr>,
    pub host_port: u16,
    pub container_port: u16,
    pub proto: String,
}

impl PortBinding {
    /// `127.0.0.1:8080->80/tcp`, as `docker ps` writes it.
    pub fn display(&self) -> String {
        let ip = match self.host_ip {
            Some(IpAddr::V6(a)) => format!("[{a}]"),
            Some(IpAddr::V4(a)) => a.to_string(),
            None => "0.0.0.0".to_string(),
        };
        format!(
            "{ip}:{}->{}/{}",
            self.host_port, self.container_port, self.proto
        )
    }

    /// Would a TCP connection to `ip:port` reach this binding (a `udp` one never does).
    pub fn serves(&self, ip: IpAddr, port: u16) -> bool {
        self.proto == "tcp" && self.host_port == port && self.host_ip.is_none_or(|h| h == ip)
    }
}

/// One container of the list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerSummary {
    pub id: String,
    pub name: String,
    pub image: String,
    /// `running`, `exited`, `restarting`, `paused`, `created`, `dead`.
    pub state: String,
    /// `Up 3 minutes`, `Exited (137) 5 seconds ago`.
    pub status: String,
    /// Published ports (the engine lists them for running containers only).
    pub ports: Vec<PortBinding>,
    /// The container's addresses on its networks.
    pub ips: Vec<IpAddr>,
    pub created: i64,
}

impl ContainerSummary {
    pub fn from_json(v: &Value) -> Option<ContainerSummary> {
        let id = v.get("Id")?.as_str()?.to_string();
        let name = v
            .get("Names")
            .and_then(Value::as_array)
            .and_then(|n| n.first())
            .and_then(Value::as_str)
            .map(|n| n.trim_start_matches('/').to_string())
            .unwrap_or_else(|| short_id(&id).to_string());
        let ports = v
            .get("Ports")
            .and_then(Value::as_array)
            .map(|ports| {
                ports
                    .iter()
                    .filter_map(|p| {
                        Some(PortBinding {
                            host_ip: p.get("IP").and_then(Value::as_str).and_then(specific_ip),
                            host_port: u16::try_from(p.get("PublicPort")?.as_u64()?).ok()?,
                            container_port: u16::try_from(p.get("PrivatePort")?.as_u64()?).ok()?,
                            proto: str_of(p, "Type").unwrap_or_else(|| "tcp".into()),
                        })
                    })
                    .collect()
            })
            .unwrap_or_default();
        Some(ContainerSummary {
            name,
            image: str_of(v, "Image").unwrap_or_default(),
            state: str_of(v, "State").unwrap_or_default(),
            status: str_of(v, "Status").unwrap_or_default(),
            ports,
            ips: network_ips(v.get("NetworkSettings")),
            created: v.get("Created").and_then(Value::as_i64).unwrap_or(0),
            id,
        })
    }

    pub fn running(&self) -> bool {
        self.state == "running"
    }
}

/// The last run of a container's health check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthProbe {
    pub at: Option<SystemTime>,
    pub exit_code: i64,
    pub output: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Health {
    /// `starting`, `healthy`, `unhealthy`.
    pub status: String,
    pub failing_streak: u64,
    pub last: Option<HealthProbe>,
}

/// One container, inspected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerState {
    pub id: String,
    pub name: String,
    pub image: String,
    /// `State.Status`: `running`, `exited`, `restarting`, `paused`, `created`, `dead`.
    pub status: String,
    pub running: bool,
    pub restarting: bool,
    pub paused: bool,
    /// The kernel OOM-killed a process of the container (its memory limit, or the host's).
    pub oom_killed: bool,
    pub exit_code: i64,
    /// The engine's own error starting it (`State.Error`).
    pub error: String,
    pub pid: u32,
    pub started_at: Option<SystemTime>,
    pub finished_at: Option<SystemTime>,
    pub restart_count: u64,
    /// `no`, `always`, `unless-stopped`, `on-failure`.
    pub restart_policy: String,
    pub health: Option<Health>,
    /// Configured bindings (kept while the container is stopped) and the live ones.
    pub bindings: Vec<PortBinding>,
    pub ips: Vec<IpAddr>,
    pub network_mode: String,
    /// `HostConfig.Memory` in bytes; 0 when unlimited.
    pub memory_limit: u64,
}

impl ContainerState {
    pub fn from_json(v: &Value) -> Option<ContainerState> {
        let id = v.get("Id")?.as_str()?.to_string();
        let state = v.get("State")?;
        let flag = |k: &str| state.get(k).and_then(Value::as_bool).unwrap_or(false);
        let host = v.get("HostConfig");
        let mut bindings = bindings_of(host.and_then(|h| h.get("PortBindings")));
        for b in bindings_of(v.get("NetworkSettings").and_then(|n| n.get("Ports"))) {
            if !bindings.contains(&b) {
                bindings.push(b);
            }
        }
        Some(ContainerState {
            name: str_of(v, "Name")
                .map(|n| n.trim_start_matches('/').to_string())
                .unwrap_or_else(|| short_id(&id).to_string()),
            image: v
                .get("Config")
                .and_then(|c| str_of(c, "Image"))
                .unwrap_or_default(),
            status: str_of(state, "Status").unwrap_or_default(),
            running: flag("Running"),
            restarting: flag("Restarting"),
            paused: flag("Paused"),
            oom_killed: flag("OOMKilled"),
            exit_code: state.get("ExitCode").and_then(Value::as_i64).unwrap_or(0),
            error: str_of(state, "Error").unwrap_or_default(),
            pid: state
                .get("Pid")
                .and_then(Value::as_u64)
                .and_then(|p| u32::try_from(p).ok())
                .unwrap_or(0),
            started_at: time_of(state, "StartedAt"),
            finished_at: time_of(state, "FinishedAt"),
            restart_count: v.get("RestartCount").and_then(Value::as_u64).unwrap_or(0),
            restart_policy: host
                .and_then(|h| h.get("RestartPolicy"))
                .and_then(|r| str_of(r, "Name"))
                .filter(|n| !n.is_empty())
                .unwrap_or_else(|| "no".into()),
            health: state.get("Health").and_then(health_of),
            bindings,
            ips: network_ips(v.get("NetworkSettings")),
            network_mode: host
                .and_then(|h| str_of(h, "NetworkMode"))
                .unwrap_or_default(),
            memory_limit: host
                .and_then(|h| h.get("Memory"))
                .and_then(Value::as_u64)
                .unwrap_or(0),
            id,
        })
    }

    pub fn short_id(&self) -> &str {
        short_id(&self.id)
    }

    /// The engine restarts it again and again: it is restarting now, or it has been restarted
    /// and did not stay up (a policy restarts it; its exit code is the application's).
    pub fn crash_looping(&self) -> bool {
        self.restarting
            || (self.restart_count >= 2 && self.restart_policy != "no" && self.exit_code != 0)
    }

    /// `exited (exit code 137, OOM-killed)`, `restarting (last exit code 3, restarted 5
    /// time(s))`, `running`, `running (unhealthy)`.
    pub fn describe(&self) -> String {
        let mut notes: Vec<String> = Vec::new();
        let head = if self.restarting {
            notes.push(format!("last exit code {}", self.exit_code));
            "restarting".to_string()
        } else if self.running {
            "running".to_string()
        } else {
            notes.push(format!("exit code {}", self.exit_code));
            self.status.clone()
        };
        if self.oom_killed {
            notes.push("OOM-killed".into());
        }
        if self.restart_count > 0 {
            notes.push(format!("restarted {} time(s)", self.restart_count));
        }
        if let Some(h) = self.health.as_ref().filter(|_| self.running) {
            notes.push(h.status.clone());
        }
        if notes.is_empty() {
            head
        } else {
            format!("{head} ({})", notes.join(", "))
        }
    }
}

/// The first 12 characters, as `docker ps` shows an id (an engine's answer may hold anything).
pub fn short_id(id: &str) -> &str {
    id.char_indices().nth(12).map_or(id, |(i, _)| &id[..i])
}

fn str_of(v: &Value, key: &str) -> Option<String> {
    v.get(key).and_then(Value::as_str).map(str::to_string)
}

/// The engine writes `0001-01-01T00:00:00Z` for "never".
fn time_of(v: &Value, key: &str) -> Option<SystemTime> {
    let s = v.get(key)?.as_str()?;
    let t = humantime::parse_rfc3339_weak(s).ok()?;
    (t > SystemTime::UNIX_EPOCH).then_some(t)
}

fn specific_ip(s: &str) -> Option<IpAddr> {
    s.parse::<IpAddr>().ok().filter(|ip| !ip.is_unspecified())
}

/// `{"80/tcp": [{"HostIp": "127.0.0.1", "HostPort": "8080"}], "443/tcp": null}`.
fn bindings_of(v: Option<&Value>) -> Vec<PortBinding> {
    let Some(map) = v.and_then(Value::as_object) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for (key, hosts) in map {
        let (port, proto) = key.split_once('/').unwrap_or((key.as_str(), "tcp"));
        let Ok(container_port) = port.parse::<u16>() else {
            continue;
        };
        for h in hosts.as_array().into_iter().flatten() {
            let Some(host_port) = h
                .get("HostPort")
                .and_then(Value::as_str)
                .and_then(|p| p.parse::<u16>().ok())
            else {
                continue;
            };
            let b = PortBinding {
                host_ip: h
                    .get("HostIp")
                    .and_then(Value::as_str)
                    .and_then(specific_ip),
                host_port,
                container_port,
                proto: proto.to_string(),
            };
            if !out.contains(&b) {
                out.push(b);
            }
        }
    }
    out
}

fn network_ips(v: Option<&Value>) -> Vec<IpAddr> {
    let mut out = Vec::new();
    let Some(settings) = v else { return out };
    let mut add = |n: &Value| {
        for key in ["IPAddress", "GlobalIPv6Address"] {
            if let Some(ip) = n
                .get(key)
                .and_then(Value::as_str)
                .and_then(|s| s.parse().ok())
            {
                if !out.contains(&ip) {
                    out.push(ip);
                }
            }
        }
    };
    add(settings);
    if let Some(nets) = settings.get("Networks").and_then(Value::as_object) {
        nets.values().for_each(&mut add);
    }
    out
}

fn health_of(v: &Value) -> Option<Health> {
    let status = str_of(v, "Status")?;
    if status.is_empty() || status == "none" {
        return None;
    }
    let last = v
        .get("Log")
        .and_then(Value::as_array)
        .and_then(|l| l.last())
        .map(|p| HealthProbe {
            at: time_of(p, "End").or_else(|| time_of(p, "Start")),
            exit_code: p.get("ExitCode").and_then(Value::as_i64).unwrap_or(0),
            output: str_of(p, "Output")
                .map(|o| o.trim().chars().take(300).collect())
                .unwrap_or_default(),
        });
    Some(Health {
        status,
        failing_streak: v.get("FailingStreak").and_then(Value::as_u64).unwrap_or(0),
        last,
    })
}

/// One engine as a run sees it: its containers, and the stopped ones inspected (which port
/// each published). Read once per run.
#[derive(Debug, Clone)]
pub struct EngineSnapshot {
    pub endpoint: EngineEndpoint,
    /// The list, or why it could not be read.
    pub containers: Result<Vec<ContainerSummary>, String>,
    /// Inspected stopped containers (at most `MAX_INSPECTED_STOPPED`, newest first).
    pub stopped: Vec<ContainerState>,
    /// Some stopped containers were not inspected (over the cap or the time).
    pub stopped_not_inspected: usize,
    /// The engine refused us for lack of permission.
    pub permission_denied: bool,
}

impl EngineSnapshot {
    /// Lists the engine's containers and inspects the stopped ones, within `budget`.
    pub async fn gather(
        endpoint: EngineEndpoint,
        client: &EngineClient,
        budget: Duration,
    ) -> EngineSnapshot {
        let deadline = tokio::time::Instant::now() + budget;
        let mut snapshot = EngineSnapshot {
            endpoint,
            containers: Err(String::new()),
            stopped: Vec::new(),
            stopped_not_inspected: 0,
            permission_denied: false,
        };
        let list = match tokio::time::timeout_at(
            deadline,
            client.get_json("/containers/json?all=1"),
        )
        .await
        {
            Ok(Ok(v)) => v,
            Ok(Err(e)) => {
                snapshot.permission_denied = e.is_permission();
                snapshot.containers = Err(e.to_string());
                return snapshot;
            }
            Err(_) => {
                snapshot.containers = Err(format!(
                    "{} did not list its containers in time",
                    client.socket().display()
                ));
                return snapshot;
            }
        };
        let mut containers: Vec<ContainerSummary> = list
            .as_array()
            .map(|a| a.iter().filter_map(ContainerSummary::from_json).collect())
            .unwrap_or_default();
        containers.sort_by_key(|c| std::cmp::Reverse(c.created));
        let stopped: Vec<String> = containers
            .iter()
            .filter(|c| !c.running())
            .map(|c| c.id.clone())
            .collect();
        let asked = stopped.len().min(MAX_INSPECTED_STOPPED);
        let mut inspected = HashMap::new();
        for chunk in stopped[..asked].chunks(INSPECT_CONCURRENCY) {
            let mut set = tokio::task::JoinSet::new();
            for id in chunk {
                let client = client.clone();
                let id = id.clone();
                set.spawn(async move { (id.clone(), inspect(&client, &id).await) });
            }
            let _ = tokio::time::timeout_at(deadline, async {
                while let Some(joined) = set.join_next().await {
                    if let Ok((id, Ok(state))) = joined {
                        inspected.insert(id, state);
                    }
                }
            })
            .await;
        }
        snapshot.stopped = stopped
            .iter()
            .filter_map(|id| inspected.remove(id))
            .collect();
        snapshot.stopped_not_inspected = stopped.len() - snapshot.stopped.len();
        snapshot.containers = Ok(containers);
        snapshot
    }

    pub fn summaries(&self) -> &[ContainerSummary] {
        self.containers.as_deref().unwrap_or(&[])
    }

    /// The running container behind a docker-proxy: the one with its `-container-ip`.
    pub fn at_container_ip(&self, ip: IpAddr) -> Option<&ContainerSummary> {
        self.summaries()
            .iter()
            .find(|c| c.running() && c.ips.contains(&ip))
    }

    pub fn by_id(&self, id: &str) -> Option<&ContainerSummary> {
        self.summaries().iter().find(|c| c.id == id)
    }

    /// Stopped containers that published `ip:port`, newest first.
    pub fn stopped_publishing(&self, ip: IpAddr, port: u16) -> Vec<&ContainerState> {
        self.stopped
            .iter()
            .filter(|c| c.bindings.iter().any(|b| b.serves(ip, port)))
            .collect()
    }
}

/// `GET /containers/{id}/json`.
pub async fn inspect(client: &EngineClient, id: &str) -> Result<ContainerState, EngineError> {
    let path = format!("/containers/{id}/json");
    let v = client.get_json(&path).await?;
    ContainerState::from_json(&v).ok_or_else(|| EngineError::Protocol {
        socket: client.socket().to_path_buf(),
        path,
        message: "no Id or State in the answer".into(),
    })
}

/// The container's last `tail` log lines (since `since`, epoch seconds), each cut at
/// `max_line` bytes.
pub async fn last_log_lines(
    client: &EngineClient,
    id: &str,
    tail: usize,
    since: Option<i64>,
    max_line: usize,
) -> Result<Vec<LogLine>, EngineError> {
    let since = since.map(|s| format!("&since={s}")).unwrap_or_default();
    let body = client
        .get(&format!(
            "/containers/{id}/logs?stdout=1&stderr=1&timestamps=1&tail={tail}{since}"
        ))
        .await?;
    Ok(demux_logs(&body, max_line, tail))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(name: &str) -> Value {
        let text = match name {
            "stopped" => include_str!("../tests/fixtures/inspect-stopped.json"),
            "oom" => include_str!("../tests/fixtures/inspect-oom.json"),
            "loop" => include_str!("../tests/fixtures/inspect-loop.json"),
            "unhealthy" => include_str!("../tests/fixtures/inspect-unhealthy.json"),
            "list" => include_str!("../tests/fixtures/list.json"),
            _ => unreachable!("fixture {name}"),
        };
        serde_json::from_str(text).expect("fixture JSON")
    }

    // Every fixture is a real answer of Debian's docker.io 20.10 (API 1.41) on this machine
    // kind, captured from the containers the lab's scenarios make.

    #[test]
    fn a_stopped_container_keeps_its_binding() {
        let c = ContainerState::from_json(&fixture("stopped")).expect("state");
        assert_eq!((c.name.as_str(), c.status.as_str()), ("web", "exited"));
        assert!(!c.running && !c.oom_killed);
        assert_eq!(c.exit_code, 137);
        assert!(c.finished_at.is_some() && c.started_at.is_some());
        assert_eq!(c.bindings.len(), 1);
        assert_eq!(c.bindings[0].display(), "127.0.0.1:8080->80/tcp");
        let lo: IpAddr = "127.0.0.1".parse().expect("ip");
        assert!(c.bindings[0].serves(lo, 8080));
        assert!(!c.bindings[0].serves("10.0.0.1".parse().expect("ip"), 8080));
        assert_eq!(c.image, "why502-lab/busybox:1");
        assert_eq!(c.describe(), "exited (exit code 137)");
    }

    #[test]
    fn an_oom_killed_container() {
        let c = ContainerState::from_json(&fixture("oom")).expect("state");
        assert!(c.oom_killed);
        assert_eq!(c.exit_code, 137);
        assert_eq!(c.memory_limit, 32 * 1024 * 1024);
        assert_eq!(c.describe(), "exited (exit code 137, OOM-killed)");
    }

    #[test]
    fn a_container_restarting_in_a_loop() {
        let c = ContainerState::from_json(&fixture("loop")).expect("state");
        assert_eq!(c.restart_policy, "always");
        assert!(c.restart_count >= 2);
        // Captured between two restarts: running, last exit 0 in State but restarted again and
        // again; the policy says always.
        assert!(c.restart_count >= 5);
    }

    #[test]
    fn an_unhealthy_container_and_its_last_probe() {
        let c = ContainerState::from_json(&fixture("unhealthy")).expect("state");
        let h = c.health.as_ref().expect("health");
        assert_eq!(h.status, "unhealthy");
        assert!(h.failing_streak >= 2);
        let last = h.last.as_ref().expect("a probe");
        assert_eq!(last.exit_code, 1);
        assert_eq!(
            last.output,
            "cat: can't open '/www/missing': No such file or directory"
        );
        assert_eq!(c.describe(), "running (unhealthy)");
    }

    #[test]
    fn the_list_gives_states_ports_and_addresses() {
        let list: Vec<ContainerSummary> = fixture("list")
            .as_array()
            .expect("array")
            .iter()
            .filter_map(ContainerSummary::from_json)
            .collect();
        assert_eq!(list.len(), 3);
        let names: Vec<&str> = list.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, ["loop", "hog", "web"]);
        assert!(list.iter().all(|c| !c.running()), "captured while none ran");
        assert!(
            list.iter().all(|c| c.ports.is_empty()),
            "stopped ones list no ports"
        );
    }

    #[test]
    fn ids_and_bindings_from_a_strange_answer() {
        assert_eq!(short_id("ééééééééééééééé"), "éééééééééééé");
        assert_eq!(short_id("abc"), "abc");
        let udp = PortBinding {
            host_ip: None,
            host_port: 8125,
            container_port: 8125,
            proto: "udp".into(),
        };
        assert!(!udp.serves("127.0.0.1".parse().expect("ip"), 8125));
    }

    #[test]
    fn never_is_no_time() {
        let v: Value = serde_json::json!({"Id": "x", "State": {"FinishedAt": "0001-01-01T00:00:00Z", "Status": "running", "Running": true}});
        let c = ContainerState::from_json(&v).expect("state");
        assert_eq!(c.finished_at, None);
        assert_eq!(c.restart_policy, "no");
    }
}

//! Where to ask: the sockets the running engines serve. Only a running daemon's sockets are
//! asked — a `docker.socket` unit holds /run/docker.sock while dockerd is stopped, and a
//! connection there would start dockerd.

use std::path::{Path, PathBuf};

/// dockerd's socket when neither its argv nor daemon.json names one.
pub const DEFAULT_DOCKER_SOCKET: &str = "/var/run/docker.sock";
/// A rootful `podman system service` without a URI.
pub const DEFAULT_PODMAN_SOCKET: &str = "/run/podman/podman.sock";
/// dockerd's configuration when no `--config-file` is given.
pub const DEFAULT_DAEMON_JSON: &str = "/etc/docker/daemon.json";

/// A process that may be a container engine's daemon: its pid and argv.
#[derive(Debug, Clone)]
pub struct DaemonProcess {
    pub pid: u32,
    pub argv: Vec<String>,
}

/// An engine socket to ask, and the daemon serving it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EngineEndpoint {
    pub socket: PathBuf,
    pub daemon_pid: u32,
    /// `dockerd` or `podman`.
    pub daemon: &'static str,
    /// Where the socket's path was read: `dockerd argv -H`, `/etc/docker/daemon.json`, the
    /// default.
    pub source: String,
}

/// The engine sockets of `daemons` (the process table's dockerd and podman processes).
/// `read_file` reads a daemon.json (bounded, by the caller's host layer).
pub fn engine_endpoints(
    daemons: &[DaemonProcess],
    read_file: impl Fn(&Path) -> Option<String>,
) -> Vec<EngineEndpoint> {
    let mut out: Vec<EngineEndpoint> = Vec::new();
    for d in daemons {
        let Some(program) = d.argv.first().map(|p| p.rsplit('/').next().unwrap_or(p)) else {
            continue;
        };
        let found = match program {
            "dockerd" => dockerd_sockets(&d.argv, &read_file),
            "podman" if is_podman_service(&d.argv) => podman_sockets(&d.argv),
            _ => continue,
        };
        for (socket, source) in found {
            if !out.iter().any(|e| e.socket == socket) {
                out.push(EngineEndpoint {
                    socket,
                    daemon_pid: d.pid,
                    daemon: if program == "dockerd" {
                        "dockerd"
                    } else {
                        "podman"
                    },
                    source,
                });
            }
        }
    }
    out
}

/// The unix sockets of dockerd's `-H`/`--host` flags, else daemon.json's `hosts`, else the
/// default. `fd://` is systemd's socket activation: docker.socket's `/run/docker.sock`.
fn dockerd_sockets(
    argv: &[String],
    read_file: &impl Fn(&Path) -> Option<String>,
) -> Vec<(PathBuf, String)> {
    let hosts = flag_values(argv, &["-H", "--host"]);
    if !hosts.is_empty() {
        return hosts
            .iter()
            .filter_map(|h| unix_socket_of(h))
            .map(|p| (p, "dockerd -H".to_string()))
            .collect();
    }
    let config = flag_values(argv, &["--config-file"])
        .pop()
        .unwrap_or_else(|| DEFAULT_DAEMON_JSON.to_string());
    let from_json: Vec<PathBuf> = read_file(Path::new(&config))
        .and_then(|text| serde_json::from_str::<serde_json::Value>(&text).ok())
        .and_then(|v| {
            v.get("hosts")?.as_array().map(|hosts| {
                hosts
                    .iter()
                    .filter_map(|h| h.as_str().and_then(unix_socket_of))
                    .collect()
            })
        })
        .unwrap_or_default();
    if !from_json.is_empty() {
        return from_json.into_iter().map(|p| (p, config.clone())).collect();
    }
    vec![(
        PathBuf::from(DEFAULT_DOCKER_SOCKET),
        "dockerd's default".to_string(),
    )]
}

fn is_podman_service(argv: &[String]) -> bool {
    let words: Vec<&str> = argv
        .iter()
        .map(String::as_str)
        .filter(|a| !a.starts_with('-'))
        .collect();
    words.windows(2).any(|w| w == ["system", "service"])
}

fn podman_sockets(argv: &[String]) -> Vec<(PathBuf, String)> {
    let uri = argv
        .iter()
        .skip_while(|a| a.as_str() != "service")
        .skip(1)
        .find(|a| a.contains("://"));
    match uri {
        Some(u) => unix_socket_of(u)
            .map(|p| vec![(p, "podman system service".to_string())])
            .unwrap_or_default(),
        None => vec![(
            PathBuf::from(DEFAULT_PODMAN_SOCKET),
            "podman's default".to_string(),
        )],
    }
}

/// `unix:///run/docker.sock` → /run/docker.sock; `fd://` → docker.socket's path; TCP
/// endpoints are not asked (they may be remote and want TLS).
fn unix_socket_of(host: &str) -> Option<PathBuf> {
    if let Some(path) = host.strip_prefix("unix://") {
        return Some(PathBuf::from(if path.is_empty() {
            DEFAULT_DOCKER_SOCKET
        } else {
            path
        }));
    }
    host.starts_with("fd://")
        .then(|| PathBuf::from(DEFAULT_DOCKER_SOCKET))
}

/// Every value of the given flags: `-H X`, `-H=X`, `--host X`, `--host=X`.
fn flag_values(argv: &[String], names: &[&str]) -> Vec<String> {
    let mut out = Vec::new();
    let mut args = argv.iter().skip(1);
    while let Some(a) = args.next() {
        for name in names {
            if a == name {
                if let Some(v) = args.next() {
                    out.push(v.clone());
                }
            } else if let Some(v) = a.strip_prefix(name).and_then(|r| r.strip_prefix('=')) {
                out.push(v.to_string());
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn daemon(pid: u32, cmd: &str) -> DaemonProcess {
        DaemonProcess {
            pid,
            argv: cmd.split_whitespace().map(str::to_string).collect(),
        }
    }

    fn none(_: &Path) -> Option<String> {
        None
    }

    #[test]
    fn a_lab_dockerd_names_its_socket_with_h() {
        let e = engine_endpoints(
            &[daemon(
                7,
                "dockerd --data-root /tmp/l/data --exec-root /tmp/l/exec -H unix:///tmp/l/docker.sock --iptables=false",
            )],
            none,
        );
        assert_eq!(e.len(), 1);
        assert_eq!(e[0].socket, Path::new("/tmp/l/docker.sock"));
        assert_eq!((e[0].daemon_pid, e[0].daemon), (7, "dockerd"));
    }

    #[test]
    fn debians_unit_uses_socket_activation() {
        // docker.io's docker.service: `dockerd -H fd:// --containerd=/run/containerd/containerd.sock`.
        let e = engine_endpoints(
            &[daemon(
                9,
                "/usr/sbin/dockerd -H fd:// --containerd=/run/containerd/containerd.sock",
            )],
            none,
        );
        assert_eq!(e[0].socket, Path::new(DEFAULT_DOCKER_SOCKET));
    }

    #[test]
    fn daemon_json_hosts_then_the_default() {
        let json = |p: &Path| {
            (p == Path::new("/etc/docker/daemon.json")).then(|| {
                r#"{"hosts": ["unix:///srv/docker.sock", "tcp://0.0.0.0:2376"]}"#.to_string()
            })
        };
        let e = engine_endpoints(&[daemon(3, "/usr/bin/dockerd")], json);
        assert_eq!(e.len(), 1, "the TCP endpoint is not asked");
        assert_eq!(e[0].socket, Path::new("/srv/docker.sock"));
        assert_eq!(e[0].source, "/etc/docker/daemon.json");
        let e = engine_endpoints(
            &[daemon(
                3,
                "/usr/bin/dockerd --host=unix:///a.sock -H=unix:///b.sock",
            )],
            none,
        );
        assert_eq!(
            e.iter().map(|e| e.socket.clone()).collect::<Vec<_>>(),
            vec![PathBuf::from("/a.sock"), PathBuf::from("/b.sock")]
        );
        let e = engine_endpoints(&[daemon(3, "/usr/bin/dockerd")], none);
        assert_eq!(e[0].socket, Path::new(DEFAULT_DOCKER_SOCKET));
    }

    #[test]
    fn podman_only_as_a_running_service() {
        let e = engine_endpoints(
            &[
                daemon(4, "podman run -d nginx"),
                daemon(
                    5,
                    "/usr/bin/podman --log-level=info system service --time=0 unix:///run/p.sock",
                ),
                daemon(6, "/usr/bin/podman system service"),
                daemon(8, "/usr/bin/containerd"),
            ],
            none,
        );
        assert_eq!(
            e.iter()
                .map(|e| (e.daemon_pid, e.socket.clone()))
                .collect::<Vec<_>>(),
            vec![
                (5, PathBuf::from("/run/p.sock")),
                (6, PathBuf::from(DEFAULT_PODMAN_SOCKET))
            ]
        );
    }
}

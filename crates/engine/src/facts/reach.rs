//! Does something listen where nginx points, and may nginx's workers reach it? The socket's
//! stat (and every directory on the way) for the worker's ids, the listeners bound to it, and
//! the process holding them; for TCP, the listener table for local addresses and a bare
//! connect for remote ones.

use std::net::IpAddr;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::time::Duration;

use why502_socket::{check_socket_access, SocketAccess};

use super::{resolve, GatherCx, TargetFacts};
use crate::sources::{DnsProblem, Owner, Sources};
use crate::targets::{TargetAddr, UpstreamTarget};

#[derive(Debug, Clone)]
pub enum Reach {
    /// Which user nginx's workers run as is not known: access cannot be judged.
    NoWorker {
        source: String,
    },
    Unix {
        access: SocketAccess,
        /// Inodes of the listening sockets bound to the path (or another spelling of it).
        listeners: Vec<u64>,
        owner: Option<Owner>,
        /// The socket file's ctime (seconds since the epoch), when it exists.
        ctime: Option<i64>,
    },
    Tcp {
        probes: Vec<(IpAddr, IpReach)>,
    },
    /// The name did not resolve: where nginx connects is not known.
    Unresolved(DnsProblem),
}

#[derive(Debug, Clone)]
pub enum IpReach {
    /// A local listener accepts this address and port.
    Listening {
        owner: Option<Owner>,
        endpoint: String,
    },
    /// A local address nothing listens on.
    NothingLocal,
    /// A remote address: what a bare connect said.
    Remote(RemoteConnect),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RemoteConnect {
    Accepted,
    Refused,
    NoAnswer(String),
}

impl Reach {
    /// No listener at nginx's address at all (unresolved names say nothing).
    pub fn nothing_listens(&self) -> bool {
        match self {
            Reach::Unix { listeners, .. } => listeners.is_empty(),
            Reach::Tcp { probes } => !probes.iter().any(|(_, r)| {
                matches!(
                    r,
                    IpReach::Listening { .. } | IpReach::Remote(RemoteConnect::Accepted)
                )
            }),
            Reach::NoWorker { .. } | Reach::Unresolved(_) => false,
        }
    }

    /// The listening socket's owner at nginx's address, if one is known.
    pub fn owner(&self) -> Option<&Owner> {
        match self {
            Reach::Unix { owner, .. } => owner.as_ref(),
            Reach::Tcp { probes } => probes.iter().find_map(|(_, r)| match r {
                IpReach::Listening { owner, .. } => owner.as_ref(),
                _ => None,
            }),
            _ => None,
        }
    }

    pub fn socket_ctime(&self) -> Option<i64> {
        match self {
            Reach::Unix { ctime, .. } => *ctime,
            _ => None,
        }
    }
}

/// A backend-like process listening where nginx does not point.
#[derive(Debug, Clone)]
pub struct Candidate {
    pub owner: Owner,
    pub address: String,
    /// For TCP listeners: the address and port.
    pub tcp: Option<(IpAddr, u16)>,
    /// A unix socket's change time (seconds since the epoch): when it was made.
    pub ctime: Option<i64>,
}

pub(super) async fn gather(target: &UpstreamTarget, cx: &GatherCx<'_>, facts: &mut TargetFacts) {
    if facts.reach.is_some() {
        return;
    }
    let src = cx.sources;
    let reach = match &target.addr {
        TargetAddr::Unix(path) => match src.worker.identity.as_ref() {
            None => Reach::NoWorker {
                source: src.worker.source.clone(),
            },
            Some(who) => {
                let access = check_socket_access(path, who);
                let listeners = bound_listeners(src, path);
                let owner = listeners.iter().find_map(|&inode| src.owner(inode));
                let ctime = std::fs::metadata(path).ok().map(|m| m.ctime());
                Reach::Unix {
                    access,
                    listeners,
                    owner,
                    ctime,
                }
            }
        },
        TargetAddr::Tcp { port, .. } => {
            resolve(target, cx, facts).await;
            match facts.resolved.clone() {
                Some(Ok(ips)) => {
                    let mut probes = Vec::new();
                    for ip in ips {
                        let r = match src.is_local(ip) {
                            Some(true) => match src.listen.tcp_accepting(ip, *port) {
                                Some(l) => IpReach::Listening {
                                    owner: src.owner(l.inode),
                                    endpoint: l.endpoint(),
                                },
                                None => IpReach::NothingLocal,
                            },
                            _ => IpReach::Remote(
                                connect(ip, *port, target.settings.connect_timeout, cx).await,
                            ),
                        };
                        probes.push((ip, r));
                    }
                    Reach::Tcp { probes }
                }
                Some(Err(p)) => Reach::Unresolved(p),
                None => Reach::Unresolved(DnsProblem {
                    summary: "not resolved".to_string(),
                    asked: String::new(),
                    detail: String::new(),
                }),
            }
        }
    };
    facts.reach = Some(reach);
}

/// Listening sockets bound to the path as written, or to another spelling of the same file
/// (a symlinked /var/run vs /run).
pub(crate) fn bound_listeners(src: &Sources, path: &Path) -> Vec<u64> {
    src.unix_listeners_at(path)
}

/// A listening socket: its inode, its address as the report prints it, and for TCP the
/// address and port.
type Listener = (u64, String, Option<(IpAddr, u16)>);

/// Listeners of backend-like processes at addresses nginx does not point at.
pub(super) fn gather_elsewhere(
    _target: &UpstreamTarget,
    cx: &GatherCx<'_>,
    facts: &mut TargetFacts,
) {
    if facts.elsewhere.is_some() {
        return;
    }
    let src = cx.sources;
    let unix = src
        .listen
        .unix
        .iter()
        .filter(|l| !l.path.starts_with('@'))
        .map(|l| (l.inode, format!("unix:{}", l.path), None));
    let tcp = src
        .listen
        .tcp
        .iter()
        .map(|l| (l.inode, l.endpoint(), Some((l.addr, l.port))));
    let all: Vec<Listener> = unix.chain(tcp).collect();
    let inodes: Vec<u64> = all.iter().map(|(i, _, _)| *i).collect();
    let owners = src.owners(&inodes);
    let mut out: Vec<Candidate> = all
        .into_iter()
        .filter(|(_, address, _)| !src.referenced.contains(address))
        .filter_map(|(inode, address, tcp)| {
            let owner = owners.get(&inode)?.clone();
            if !is_backend_like(&owner.name) {
                return None;
            }
            use std::os::unix::fs::MetadataExt;
            let ctime = address
                .strip_prefix("unix:")
                .and_then(|p| std::fs::metadata(p).ok())
                .map(|m| m.ctime());
            Some(Candidate {
                owner,
                address,
                tcp,
                ctime,
            })
        })
        .collect();
    // One entry per process and address is enough (php-fpm lists its socket per worker).
    let mut seen = std::collections::HashSet::new();
    out.retain(|c| seen.insert((c.owner.pid, c.address.clone())));
    facts.elsewhere = Some(out);
}

const BACKENDS: &[&str] = &[
    "php-fpm",
    "php",
    "python",
    "gunicorn",
    "uwsgi",
    "uvicorn",
    "hypercorn",
    "daphne",
    "waitress",
    "node",
    "nodejs",
    "deno",
    "bun",
    "java",
    "ruby",
    "puma",
    "unicorn",
    "passenger",
    "rails",
    "dotnet",
    "perl",
    "starman",
    "plackup",
    "beam.smp",
    "mono",
    "hhvm",
    "lua",
    "openresty-app",
];

pub fn is_backend_like(name: &str) -> bool {
    let first = name.split_whitespace().next().unwrap_or(name);
    !first.starts_with("nginx") && BACKENDS.iter().any(|b| first.starts_with(b))
}

/// A bare TCP connect, closed at once: nothing is sent.
async fn connect(
    ip: IpAddr,
    port: u16,
    nginx_timeout: Duration,
    cx: &GatherCx<'_>,
) -> RemoteConnect {
    let budget = cx
        .remaining()
        .min(nginx_timeout)
        .min(Duration::from_secs(5));
    match tokio::time::timeout(budget, tokio::net::TcpStream::connect((ip, port))).await {
        Ok(Ok(_)) => RemoteConnect::Accepted,
        Ok(Err(e)) if e.kind() == std::io::ErrorKind::ConnectionRefused => RemoteConnect::Refused,
        Ok(Err(e)) => RemoteConnect::NoAnswer(e.to_string()),
        Err(_) => RemoteConnect::NoAnswer(format!("timed out after {budget:?}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backend_like_names() {
        for n in [
            "php-fpm",
            "python3 app.py",
            "gunicorn",
            "node server.js",
            "java",
            "uwsgi",
        ] {
            assert!(is_backend_like(n), "{n}");
        }
        for n in ["nginx", "sshd", "systemd-resolved", "containerd"] {
            assert!(!is_backend_like(n), "{n}");
        }
    }
}

//! Step `backend_up`: is something listening where nginx points, and may nginx's workers reach
//! it? Unix sockets: stat of the socket and its directories for the worker's ids, and the
//! listening sockets of /proc/net/unix. TCP: /proc/net/tcp{,6} for local addresses, a bare
//! connect for remote ones. When nothing listens, look for the backend listening elsewhere.

use std::net::IpAddr;
use std::path::Path;
use std::time::Duration;

use why502_host::Identity;
use why502_model::{CauseId, Outcome, Protocol};
use why502_socket::{check_socket_access, SocketAccess};

use super::{StepContext, StepFinding};
use crate::sources::{Owner, Sources};
use crate::targets::{TargetAddr, UpstreamTarget};

pub async fn check(target: &UpstreamTarget, cx: &StepContext<'_>) -> StepFinding {
    match &target.addr {
        TargetAddr::Unix(path) => unix_socket(target, path, cx.sources),
        TargetAddr::Tcp { host, port } => tcp(target, host, *port, cx).await,
    }
}

fn unix_socket(target: &UpstreamTarget, path: &Path, src: &Sources) -> StepFinding {
    let Some(who) = src.worker.identity.as_ref() else {
        return StepFinding::unknown(format!(
            "cannot tell which user nginx's workers run as ({}), so cannot check their access to {}",
            src.worker.source,
            path.display()
        ));
    };
    let access = check_socket_access(path, who);
    let listeners = bound_listeners(src, path);
    let listening_owner = listeners.iter().find_map(|&inode| src.owner(inode));
    let shown = path.display();
    match access {
        SocketAccess::Unknown { reason } => StepFinding::unknown(reason),
        SocketAccess::Missing { missing } if !listeners.is_empty() => {
            let by = owner_phrase(listening_owner.as_ref());
            StepFinding::broken(
                CauseId::SocketMissing,
                format!("{shown} does not exist, but {by} still listens on it: the socket file was deleted while the backend runs"),
            )
            .with_fix(format!(
                "Restart {} so it re-creates {shown}; then find what deleted it (a clean-up of /run or /tmp, a second instance, a deploy script).",
                listening_owner.as_ref().map(|o| o.name.as_str()).unwrap_or("the backend")
            ))
            .with_evidence(format!("stat {}", missing.display()), "No such file or directory")
            .with_evidence("/proc/net/unix", format!("listening socket bound to {shown}{}", owner_suffix(listening_owner.as_ref())))
        }
        SocketAccess::Missing { missing } => {
            let found = StepFinding::broken(CauseId::BackendDown, String::new())
                .with_evidence(format!("stat {}", missing.display()), "No such file or directory")
                .with_evidence("/proc/net/unix", format!("no listening socket bound to {shown}"));
            elsewhere_or_down(target, src, found, &format!("{shown} does not exist"))
        }
        SocketAccess::NotASocket { file_type } => StepFinding::broken(
            CauseId::SocketMissing,
            format!("{shown} is a {file_type}, not a socket"),
        )
        .with_fix(format!("Remove {shown} and restart the backend so it creates its socket there, or point nginx at the backend's real socket."))
        .with_evidence(format!("stat {shown}"), file_type),
        SocketAccess::DirectoryDenied { dir, facts } => StepFinding::broken(
            CauseId::SocketPermission,
            format!(
                "{} cannot reach {shown}: directory {} ({}) gives it no search (x) permission",
                who.name,
                dir.display(),
                facts.display
            ),
        )
        .with_fix(format!(
            "Give {} search permission on {}: `chmod o+x {}` or `chgrp {} {} && chmod g+x {}`, or move the socket to a directory nginx can reach (e.g. /run/php); then restart the backend if you moved it.",
            who.name,
            dir.display(),
            dir.display(),
            group_of(who),
            dir.display(),
            dir.display()
        ))
        .with_evidence(format!("stat {}", dir.display()), facts.display)
        .with_evidence("nginx worker", identity_text(who, &src.worker.source)),
        SocketAccess::SocketDenied { facts } => {
            let php = listening_owner.as_ref().is_some_and(|o| o.name == "php-fpm")
                || target.protocol == Protocol::Fastcgi;
            let fix = if php {
                format!(
                    "In the php-fpm pool that listens on {shown}, set `listen.owner = {}`, `listen.group = {}`, `listen.mode = 0660`, then restart php-fpm.",
                    who.name,
                    group_of(who),
                )
            } else {
                format!(
                    "Make the backend create {shown} writable by {}: owner or group {} with mode 0660 (e.g. gunicorn `--umask 007` and group {}), then restart it.",
                    who.name,
                    group_of(who),
                    group_of(who)
                )
            };
            StepFinding::broken(
                CauseId::SocketPermission,
                format!("{} cannot connect to {shown} ({}): no write permission for it", who.name, facts.display),
            )
            .with_fix(fix)
            .with_evidence(format!("stat {shown}"), facts.display)
            .with_evidence("nginx worker", identity_text(who, &src.worker.source))
        }
        SocketAccess::Allowed { facts } if listeners.is_empty() => StepFinding::broken(
            CauseId::SocketStale,
            format!("{shown} exists ({}) but no process listens on it", facts.display),
        )
        .with_fix(format!(
            "The backend died without removing {shown} (crash, SIGKILL, OOM kill): restart it, then find out why it died (its log, `dmesg | grep -i oom`)."
        ))
        .with_evidence(format!("stat {shown}"), facts.display)
        .with_evidence("/proc/net/unix", format!("no listening socket bound to {shown}")),
        SocketAccess::Allowed { facts } => StepFinding::pass(format!(
            "{} listens on {shown} ({}); {} may connect",
            owner_phrase(listening_owner.as_ref()),
            facts.display,
            who.name
        ))
        .with_evidence(format!("stat {shown}"), facts.display)
        .with_evidence("/proc/net/unix", format!("listening{}", owner_suffix(listening_owner.as_ref()))),
    }
}

/// Listening sockets bound to the path as written, or to another spelling of the same file
/// (a symlinked /var/run vs /run).
pub(crate) fn bound_listeners(src: &Sources, path: &Path) -> Vec<u64> {
    let real = std::fs::canonicalize(path).ok();
    src.listen
        .unix
        .iter()
        .filter(|l| {
            Path::new(&l.path) == path
                || (real.is_some() && std::fs::canonicalize(&l.path).ok() == real)
        })
        .map(|l| l.inode)
        .collect()
}

async fn tcp(target: &UpstreamTarget, host: &str, port: u16, cx: &StepContext<'_>) -> StepFinding {
    let src = cx.sources;
    let budget = remaining(cx).min(Duration::from_secs(3));
    let ips = match src.resolve_as_nginx(target, host, port, budget).await {
        Ok(ips) => ips,
        // Where nginx connects is not known until the name resolves; resolving is part of
        // the request nginx makes, so the direct_request step names the break.
        Err(p) => {
            return StepFinding::unknown(format!(
                "cannot tell whether the backend listens: {}",
                p.summary
            ))
            .with_evidence(p.asked, p.detail)
        }
    };
    let mut accepting = Vec::new();
    let mut refusing = Vec::new();
    let mut undecided = Vec::new();
    for ip in &ips {
        match src.is_local(*ip) {
            Some(true) => match src.listen.tcp_accepting(*ip, port) {
                Some(l) => accepting.push((*ip, src.owner(l.inode), l.endpoint())),
                None => refusing.push(*ip),
            },
            _ => match connect(*ip, port, target.settings.connect_timeout, cx).await {
                ConnectResult::Accepted => accepting.push((*ip, None, "remote host".to_string())),
                ConnectResult::Refused => refusing.push(*ip),
                ConnectResult::NoAnswer(why) => undecided.push((*ip, why)),
            },
        }
    }
    let shown = target.address.as_str();
    if !accepting.is_empty() {
        let (ip, owner, via) = &accepting[0];
        let who = owner_phrase(owner.as_ref());
        let mut f = StepFinding::pass(format!(
            "{who} listens on {} ({via})",
            join_ip_port(*ip, port)
        ));
        if !refusing.is_empty() {
            f.outcome = Outcome::Warn;
            f.summary.push_str(&format!(
                "; but {} refuse: nginx logs an error and tries the next address",
                refusing
                    .iter()
                    .map(|i| join_ip_port(*i, port))
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
        return f.with_evidence(
            "/proc/net/tcp",
            format!("LISTEN {via}{}", owner_suffix(owner.as_ref())),
        );
    }
    if !undecided.is_empty() && refusing.is_empty() {
        let (ip, why) = &undecided[0];
        return StepFinding::unknown(format!(
            "{} did not answer a connect within the time allowed ({why}); a firewall may drop the packets (step security)",
            join_ip_port(*ip, port)
        ));
    }
    let found = StepFinding::broken(CauseId::BackendDown, String::new()).with_evidence(
        "/proc/net/tcp, /proc/net/tcp6",
        format!(
            "no listener accepts {}",
            ips.iter()
                .map(|i| join_ip_port(*i, port))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    );
    elsewhere_or_down(target, src, found, &format!("nothing listens on {shown}"))
}

/// Nothing at nginx's address: is a backend listening somewhere else (address_mismatch), or is
/// there none (backend_down)?
fn elsewhere_or_down(
    target: &UpstreamTarget,
    src: &Sources,
    mut found: StepFinding,
    what: &str,
) -> StepFinding {
    let candidates = candidates(target, src);
    let nginx_at = target
        .references
        .first()
        .map(|r| format!("{}:{}", r.file, r.line))
        .unwrap_or_default();
    if let Some(best) = candidates.first() {
        found.cause = Some(CauseId::AddressMismatch);
        found.summary = format!(
            "{what}, but {} (pid {}) listens on {}: nginx and the backend disagree on the address",
            best.owner.name, best.owner.pid, best.address
        );
        found.fix = Some(format!(
            "Point nginx at {} ({} at {nginx_at}) and reload nginx, or make {} listen on {}; then restart it.",
            best.address,
            target
                .references
                .first()
                .map(|r| r.directive.as_str())
                .unwrap_or("the *_pass directive"),
            best.owner.name,
            target.address
        ));
        for c in candidates.iter().take(3) {
            found = found.with_evidence(
                if c.address.starts_with("unix:") {
                    "/proc/net/unix"
                } else {
                    "/proc/net/tcp"
                },
                format!(
                    "{} (pid {}) listens on {}",
                    c.owner.name, c.owner.pid, c.address
                ),
            );
        }
        return found;
    }
    found.summary =
        format!("{what}, and no backend process listens anywhere else: the backend is not running");
    // Other users' /proc/PID/fd are closed to non-root: a backend listening elsewhere would
    // then be invisible, so say what could not be seen instead of implying it was looked at.
    if !nix::unistd::geteuid().is_root() {
        found.summary = format!(
            "{what}; as non-root why502 cannot see which processes own the other listeners, so a backend listening elsewhere may be missed (run as root)"
        );
    }
    found.fix = Some(match target.protocol {
        Protocol::Fastcgi => "Start php-fpm (e.g. `systemctl start php8.2-fpm`) and check why it stopped: `journalctl -u php8.2-fpm`, its log, `dmesg | grep -i oom`.".to_string(),
        _ => CauseId::BackendDown.fix().to_string(),
    });
    found
}

/// A listening socket: its inode, its address as the report prints it, and for TCP the
/// address and port.
type Listener = (u64, String, Option<(IpAddr, u16)>);

struct Candidate {
    owner: Owner,
    address: String,
    score: u32,
}

/// Listeners of backend-like processes at addresses nginx does not point at, best first.
fn candidates(target: &UpstreamTarget, src: &Sources) -> Vec<Candidate> {
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
            let score = affinity(target, &owner.name, tcp);
            Some(Candidate {
                owner,
                address,
                score,
            })
        })
        .collect();
    out.sort_by(|a, b| b.score.cmp(&a.score).then(a.address.cmp(&b.address)));
    // One entry per process is enough (php-fpm lists its socket once per worker).
    let mut seen = std::collections::HashSet::new();
    out.retain(|c| seen.insert((c.owner.pid, c.address.clone())));
    out
}

/// How likely a listener is the backend nginx meant: same protocol family of process, same
/// kind of address, same port.
fn affinity(target: &UpstreamTarget, owner: &str, tcp: Option<(IpAddr, u16)>) -> u32 {
    let php = owner.starts_with("php-fpm");
    let mut score = match (target.protocol, php) {
        (Protocol::Fastcgi, true) => 4,
        (Protocol::Fastcgi, false) | (_, true) => 0,
        _ => 2,
    };
    match (&target.addr, tcp) {
        (TargetAddr::Unix(_), None) => score += 2,
        (TargetAddr::Tcp { port, .. }, Some((_, p))) => {
            score += 2;
            if *port == p {
                score += 3;
            }
        }
        _ => {}
    }
    score
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

pub(crate) fn is_backend_like(name: &str) -> bool {
    let first = name.split_whitespace().next().unwrap_or(name);
    !first.starts_with("nginx") && BACKENDS.iter().any(|b| first.starts_with(b))
}

enum ConnectResult {
    Accepted,
    Refused,
    NoAnswer(String),
}

/// A bare TCP connect, closed at once: nothing is sent.
async fn connect(
    ip: IpAddr,
    port: u16,
    nginx_timeout: Duration,
    cx: &StepContext<'_>,
) -> ConnectResult {
    let budget = remaining(cx).min(nginx_timeout).min(Duration::from_secs(5));
    match tokio::time::timeout(budget, tokio::net::TcpStream::connect((ip, port))).await {
        Ok(Ok(_)) => ConnectResult::Accepted,
        Ok(Err(e)) if e.kind() == std::io::ErrorKind::ConnectionRefused => ConnectResult::Refused,
        Ok(Err(e)) => ConnectResult::NoAnswer(e.to_string()),
        Err(_) => ConnectResult::NoAnswer(format!("timed out after {budget:?}")),
    }
}

pub(crate) fn remaining(cx: &StepContext<'_>) -> Duration {
    cx.deadline
        .saturating_duration_since(tokio::time::Instant::now())
}

fn join_ip_port(ip: IpAddr, port: u16) -> String {
    match ip {
        IpAddr::V4(a) => format!("{a}:{port}"),
        IpAddr::V6(a) => format!("[{a}]:{port}"),
    }
}

fn owner_phrase(owner: Option<&Owner>) -> String {
    match owner {
        Some(o) => format!("{} (pid {})", o.name, o.pid),
        None => "a process".to_string(),
    }
}

fn owner_suffix(owner: Option<&Owner>) -> String {
    owner
        .map(|o| format!(", held by {} (pid {})", o.name, o.pid))
        .unwrap_or_default()
}

fn group_of(who: &Identity) -> String {
    why502_host::group_name(who.gid)
}

fn identity_text(who: &Identity, source: &str) -> String {
    let groups: Vec<String> = who
        .groups
        .iter()
        .map(|g| why502_host::group_name(*g))
        .collect();
    format!(
        "runs as {} (uid {}, gid {}, groups {}) — from {source}",
        who.name,
        who.uid,
        who.gid,
        groups.join(",")
    )
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

//! Step `backend_up`: is something listening where nginx points, and may nginx's workers reach
//! it? Judged on the gathered `Reach`: the socket's and its directories' stat for the worker's
//! ids and the listeners bound to it; for TCP the listener table for local addresses and a bare
//! connect for remote ones. When nothing listens, the backend listening elsewhere.

use std::net::IpAddr;
use std::path::Path;

use why502_host::Identity;
use why502_listen::{TCP_SOURCE, UNIX_SOURCE};
use why502_model::{CauseId, Outcome, Protocol};
use why502_socket::SocketAccess;

use super::{JudgeCx, StepFinding};
use crate::facts::container::{ContainerFacts, ContainerFound, ContainerTie};
use crate::facts::{Candidate, IpReach, Reach, RemoteConnect};
use crate::sources::Owner;
use crate::targets::{TargetAddr, UpstreamTarget};

pub fn judge(target: &UpstreamTarget, cx: &JudgeCx<'_>) -> StepFinding {
    let src = cx.sources;
    match (&target.addr, cx.facts.reach.as_ref()) {
        (_, None) => StepFinding::unknown("the backend's socket and listeners were not gathered"),
        (_, Some(Reach::NoWorker { source })) => StepFinding::unknown(format!(
            "cannot tell which user nginx's workers run as ({source}), so cannot check their access to {}",
            target.address
        )),
        (TargetAddr::Unix(path), Some(Reach::Unix { access, listeners, owner, .. })) => {
            unix_socket(target, path, access, listeners, owner.as_ref(), cx)
        }
        (TargetAddr::Tcp { port, .. }, Some(Reach::Tcp { probes })) => tcp(target, *port, probes, cx),
        // Where nginx connects is not known until the name resolves; resolving is part of
        // the request nginx makes, so the direct_request step names the break.
        (_, Some(Reach::Unresolved(p))) => StepFinding::unknown(format!(
            "cannot tell whether the backend listens: {}",
            p.summary
        ))
        .with_evidence(p.asked.clone(), p.detail.clone()),
        (_, Some(_)) => {
            let _ = src;
            StepFinding::unknown("the gathered facts do not fit the target's address")
        }
    }
}

fn unix_socket(
    target: &UpstreamTarget,
    path: &Path,
    access: &SocketAccess,
    listeners: &[u64],
    listening_owner: Option<&Owner>,
    cx: &JudgeCx<'_>,
) -> StepFinding {
    let src = cx.sources;
    let Some(who) = src.worker.identity.as_ref() else {
        return StepFinding::unknown("cannot tell which user nginx's workers run as");
    };
    let listening_owner = listening_owner.cloned();
    let shown = path.display();
    match access.clone() {
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
            .with_evidence(UNIX_SOURCE, format!("listening socket bound to {shown}{}", owner_suffix(listening_owner.as_ref())))
        }
        SocketAccess::Missing { missing } => {
            let found = StepFinding::broken(CauseId::BackendDown, String::new())
                .with_evidence(format!("stat {}", missing.display()), "No such file or directory")
                .with_evidence(UNIX_SOURCE, format!("no listening socket bound to {shown}"));
            elsewhere_or_down(target, cx, found, &format!("{shown} does not exist"))
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
            group_of(who, cx),
            dir.display(),
            dir.display()
        ))
        .with_evidence(format!("stat {}", dir.display()), facts.display)
        .with_evidence("nginx worker", identity_text(who, &src.worker.source, cx)),
        SocketAccess::SocketDenied { facts } => {
            let php = listening_owner.as_ref().is_some_and(|o| o.name == "php-fpm")
                || target.protocol == Protocol::Fastcgi;
            let fix = if php {
                format!(
                    "In the php-fpm pool that listens on {shown}, set `listen.owner = {}`, `listen.group = {}`, `listen.mode = 0660`, then restart php-fpm.",
                    who.name,
                    group_of(who, cx),
                )
            } else {
                format!(
                    "Make the backend create {shown} writable by {}: owner or group {} with mode 0660 (e.g. gunicorn `--umask 007` and group {}), then restart it.",
                    who.name,
                    group_of(who, cx),
                    group_of(who, cx)
                )
            };
            StepFinding::broken(
                CauseId::SocketPermission,
                format!("{} cannot connect to {shown} ({}): no write permission for it", who.name, facts.display),
            )
            .with_fix(fix)
            .with_evidence(format!("stat {shown}"), facts.display)
            .with_evidence("nginx worker", identity_text(who, &src.worker.source, cx))
        }
        SocketAccess::Allowed { facts } if listeners.is_empty() => StepFinding::broken(
            CauseId::SocketStale,
            format!("{shown} exists ({}) but no process listens on it", facts.display),
        )
        .with_fix(format!(
            "The backend died without removing {shown} (crash, SIGKILL, OOM kill): restart it, then find out why it died (its log, `dmesg | grep -i oom`)."
        ))
        .with_evidence(format!("stat {shown}"), facts.display)
        .with_evidence(UNIX_SOURCE, format!("no listening socket bound to {shown}")),
        SocketAccess::Allowed { facts } => StepFinding::pass(format!(
            "{} listens on {shown} ({}); {} may connect",
            owner_phrase(listening_owner.as_ref()),
            facts.display,
            who.name
        ))
        .with_evidence(format!("stat {shown}"), facts.display)
        .with_evidence(UNIX_SOURCE, format!("listening{}", owner_suffix(listening_owner.as_ref()))),
    }
    .with_summary_suffix(container_suffix(cx))
}

/// `; it is container web (image why502/app:1, running, healthy)` for a listener that is a
/// container's; what could not be asked, when the engine did not answer.
fn container_suffix(cx: &JudgeCx<'_>) -> String {
    match cx.facts.container.as_ref() {
        None => String::new(),
        Some(ContainerFacts::Found(f)) => format!(
            "; that is container {} (image {}), {}: {}",
            f.state.name,
            f.state.image,
            f.state.describe(),
            f.tie.describe()
        ),
        Some(ContainerFacts::Unasked { who, reason, .. }) => {
            format!("; {who} is a container's, whose state could not be read: {reason}")
        }
    }
}

/// Nothing listens, and a stopped container published the address: name it, its state and
/// exit code, and how to start it again.
fn stopped_container(
    target: &UpstreamTarget,
    f: &ContainerFound,
    mut found: StepFinding,
    what: &str,
) -> StepFinding {
    let s = &f.state;
    let since = s
        .finished_at
        .map(|t| format!(" since {}", humantime::format_rfc3339_seconds(t)))
        .unwrap_or_default();
    let cli = f.cli();
    let how = if f.oom_killed() {
        "its last run ended in an OOM kill".to_string()
    } else if f.crash_looping() {
        format!(
            "it keeps exiting (code {}) and the engine restarts it ({} restarts, policy {})",
            f.last_exit_code(),
            s.restart_count,
            s.restart_policy
        )
    } else {
        match f.last_exit_code() {
            0 => "it exited normally (code 0): stopped, or its main process ended".to_string(),
            137 => format!("it was killed with SIGKILL (exit code 137: `{cli} stop` or `{cli} kill`, or a kill from outside; the engine records no OOM kill)"),
            143 => format!("it was stopped with SIGTERM (exit code 143: `{cli} stop`)"),
            c => format!("its main process exited with code {c}"),
        }
    };
    found.cause = Some(CauseId::BackendDown);
    found.summary = format!(
        "{what}: container {} (image {}), which publishes {}, is {}{since}: {how}",
        s.name,
        s.image,
        match &f.tie {
            ContainerTie::Published { binding } => binding.display(),
            _ => target.address.clone(),
        },
        s.describe()
    );
    found.fix = Some(if f.crash_looping() {
        format!("See why it exits: `{cli} logs --tail 50 {}`; fix that, and it comes back by its restart policy.", s.name)
    } else if f.oom_killed() {
        format!("Start it again (`{cli} start {}`) with more memory (`{cli} update --memory`, the compose file's `mem_limit`); see the backend_log step.", s.name)
    } else {
        format!("Start the container: `{cli} start {}` (and find out who stopped it: `{cli} events --since 1h --filter container={}`).", s.name, s.name)
    });
    found.with_evidence(f.api_source("json"), f.state_line())
}

fn tcp(
    target: &UpstreamTarget,
    port: u16,
    probes: &[(IpAddr, IpReach)],
    cx: &JudgeCx<'_>,
) -> StepFinding {
    let mut accepting = Vec::new();
    let mut refusing = Vec::new();
    let mut undecided = Vec::new();
    for (ip, r) in probes {
        match r {
            IpReach::Listening { owner, endpoint } => {
                accepting.push((*ip, owner.clone(), endpoint.clone()))
            }
            IpReach::NothingLocal | IpReach::Remote(RemoteConnect::Refused) => refusing.push(*ip),
            IpReach::Remote(RemoteConnect::Accepted) => {
                accepting.push((*ip, None, "remote host".to_string()))
            }
            IpReach::Remote(RemoteConnect::NoAnswer(why)) => undecided.push((*ip, why.clone())),
        }
    }
    let shown = target.address.as_str();
    if !accepting.is_empty() {
        let (ip, owner, via) = &accepting[0];
        let who = owner_phrase(owner.as_ref());
        let mut f = StepFinding::pass(format!(
            "{who} listens on {} ({via}){}",
            join_ip_port(*ip, port),
            container_suffix(cx)
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
            TCP_SOURCE,
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
        TCP_SOURCE,
        format!(
            "no listener accepts {}",
            probes
                .iter()
                .map(|(i, _)| join_ip_port(*i, port))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    );
    elsewhere_or_down(target, cx, found, &format!("nothing listens on {shown}"))
}

/// Nothing at nginx's address: is a backend listening somewhere else (address_mismatch), or is
/// there none (backend_down)?
fn elsewhere_or_down(
    target: &UpstreamTarget,
    cx: &JudgeCx<'_>,
    mut found: StepFinding,
    what: &str,
) -> StepFinding {
    // A stopped container that published the address is what served it: more specific than
    // a listener somewhere else.
    if let Some(f) = cx.facts.container.as_ref().and_then(ContainerFacts::found) {
        if let ContainerTie::Published { binding } = &f.tie {
            // Running and not restarting: the engine forwards the port by NAT, not by a
            // listening proxy (`"userland-proxy": false`); the direct request tells whether
            // it answers.
            if f.state.running && !f.crash_looping() {
                return StepFinding::pass(format!(
                    "{what} on this host, but container {} (image {}) runs and publishes {} through the engine's NAT rules (no docker-proxy)",
                    f.state.name,
                    f.state.image,
                    binding.display()
                ))
                .with_evidence(
                    f.api_source("json"),
                    f.state_line(),
                );
            }
            return stopped_container(target, f, found, what);
        }
    }
    let candidates = candidates(target, cx);
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
                    UNIX_SOURCE
                } else {
                    TCP_SOURCE
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
    // Other users' open-file tables are closed to non-root: a backend listening elsewhere would
    // then be invisible, so say what could not be seen instead of implying it was looked at.
    if !cx.sources.as_root {
        found.summary = format!(
            "{what}; as non-root why502 cannot see which processes own the other listeners, so a backend listening elsewhere may be missed (run as root)"
        );
    }
    // A container engine that could not be listed may hold the stopped container that
    // published this address: say so rather than imply it was looked at.
    if matches!(target.addr, TargetAddr::Tcp { .. }) {
        for (socket, why) in cx.sources.container_engine_problems() {
            found.summary.push_str(&format!(
                "; the container engine at {} could not be asked ({why}), so a stopped container that published this port would not be seen",
                socket.display()
            ));
        }
    }
    found.fix = Some(match target.protocol {
        Protocol::Fastcgi => "Start php-fpm (e.g. `systemctl start php8.2-fpm`) and check why it stopped: `journalctl -u php8.2-fpm`, its log, `dmesg | grep -i oom`.".to_string(),
        _ => CauseId::BackendDown.fix().to_string(),
    });
    found
}

/// Listeners of backend-like processes at addresses nginx does not point at, best first.
fn candidates(target: &UpstreamTarget, cx: &JudgeCx<'_>) -> Vec<Candidate> {
    let mut out: Vec<((u32, usize), Candidate)> = cx
        .facts
        .elsewhere
        .iter()
        .flatten()
        .map(|c| {
            let score = (
                affinity(target, &c.owner.name, c.tcp),
                likeness(&target.address, &c.address),
            );
            (score, c.clone())
        })
        .collect();
    // Equally alike: the newest socket first (a pool whose `listen` just moved made its
    // socket at the reload; its neighbours' are older), then by address.
    out.sort_by(|a, b| {
        b.0.cmp(&a.0)
            .then(b.1.ctime.cmp(&a.1.ctime))
            .then(a.1.address.cmp(&b.1.address))
    });
    out.into_iter().map(|(_, c)| c).collect()
}

/// How alike two addresses read: the characters they share at the start and at the end. A
/// typo'd or renamed socket (`php8.1-fpm.sock` for `php8.2-fpm.sock`) shares more with the
/// meant one than a neighbouring pool's socket does.
fn likeness(a: &str, b: &str) -> usize {
    let prefix = a.chars().zip(b.chars()).take_while(|(x, y)| x == y).count();
    let suffix = a
        .chars()
        .rev()
        .zip(b.chars().rev())
        .take_while(|(x, y)| x == y)
        .count();
    (prefix + suffix).min(a.chars().count().min(b.chars().count()))
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

fn group_of(who: &Identity, cx: &JudgeCx<'_>) -> String {
    cx.sources.group_name(who.gid)
}

fn identity_text(who: &Identity, source: &str, cx: &JudgeCx<'_>) -> String {
    let groups: Vec<String> = who
        .groups
        .iter()
        .map(|g| cx.sources.group_name(*g))
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
    fn the_likeliest_socket_is_the_one_that_reads_alike() {
        let meant = "unix:/run/php/php8.2-fpm.sock";
        assert!(
            likeness(meant, "unix:/run/php/php-fpm.sock")
                > likeness(meant, "unix:/run/php/php-fpm-bystander.sock")
        );
        assert!(
            likeness(meant, "unix:/run/php/php8.1-fpm.sock")
                > likeness(meant, "unix:/run/php/other.sock")
        );
    }
}

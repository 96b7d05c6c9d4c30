//! The 502 decision tree, declared once. The walker follows this order, `why502 tree` prints
//! it, and docs/tree.md is generated from it.

use why502_model::{CauseId, StepId};

/// One node of the tree: the question, how the agent answers it, what an admin would type,
/// and the causes a break here can name.
#[derive(Debug, Clone, Copy)]
pub struct TreeStep {
    pub id: StepId,
    pub question: &'static str,
    /// How the agent answers the question.
    pub method: &'static str,
    /// The commands an admin runs by hand for the same question.
    pub by_hand: &'static [&'static str],
    pub causes: &'static [CauseId],
    /// Breaks of earlier steps this step can explain with a deeper cause: after such a break
    /// the walk still runs this step, and its break becomes the verdict (a backend that is
    /// down because the kernel OOM-killed it is `oom_killed`).
    pub explains: &'static [CauseId],
}

/// What a backend's own log and the host's resources can explain: the backend went away, or
/// stopped answering properly.
const BACKEND_SYMPTOMS: &[CauseId] = &[
    CauseId::BackendDown,
    CauseId::SocketMissing,
    CauseId::SocketStale,
    CauseId::UpstreamTimeout,
    CauseId::UpstreamReset,
    CauseId::UpstreamInvalidResponse,
];

/// The walk, in order. It stops at the first step that breaks (unless `--all`).
pub const TREE: &[TreeStep] = &[
    TreeStep {
        id: StepId::ErrorLog,
        question: "What does nginx's error log say about this upstream?",
        method: "read each error_log (and its rotations) backward within --since; classify the lines naming this upstream; after the walk, a failure logged in the last 5 min that no probe explains or clears is the break (older: a warning)",
        by_hand: &["tail -n 200 /var/log/nginx/error.log"],
        // What a logged failure no probe explains stands for (`unknown`: the log names no
        // cause the probes could confirm, e.g. a denial with an unchanged socket).
        causes: &[
            CauseId::PoolExhausted,
            CauseId::UpstreamTimeout,
            CauseId::UpstreamReset,
            CauseId::UpstreamHeaderTooBig,
            CauseId::UpstreamInvalidResponse,
            CauseId::UpstreamTls,
            CauseId::UpstreamDns,
            // nginx's own temp files: its error line is the only trace.
            CauseId::NginxTempPath,
            // Failures the probes cleared but nginx logged minutes ago: recovered, or flapping.
            CauseId::BackendDown,
            CauseId::SocketMissing,
            CauseId::SocketPermission,
            CauseId::DiskFull,
            // PHP's fatal errors in FastCGI stderr: the application's.
            CauseId::AppError,
            // connect() failed (1: Operation not permitted): a rule on nginx's output path.
            CauseId::FirewallBlocked,
            CauseId::Unknown,
        ],
        explains: &[],
    },
    TreeStep {
        id: StepId::BackendUp,
        question: "Is the backend running and listening where nginx points?",
        method: "stat the socket and every parent directory for the worker's uid/gids; match /proc/net/{unix,tcp,tcp6} listeners and their processes; a docker-proxy's or a container's listener, or a stopped container that published the port, named by the Docker Engine API",
        by_hand: &["ss -tulnp | grep LISTEN", "ls -la /run/php/php8.2-fpm.sock", "docker ps -a"],
        causes: &[
            CauseId::BackendDown,
            CauseId::SocketMissing,
            CauseId::SocketPermission,
            CauseId::SocketStale,
            CauseId::AddressMismatch,
        ],
        explains: &[],
    },
    TreeStep {
        id: StepId::DirectRequest,
        question: "Does the backend answer a request that bypasses nginx?",
        method: "speak the location's protocol (HTTP, FastCGI, uwsgi, TLS) with nginx's timeouts and buffer sizes",
        by_hand: &["curl -v http://127.0.0.1:9000/"],
        // backend_down: the backend stopped between backend_up and the request.
        causes: &[
            CauseId::BackendDown,
            CauseId::UpstreamTimeout,
            CauseId::UpstreamReset,
            CauseId::UpstreamInvalidResponse,
            CauseId::UpstreamHeaderTooBig,
            CauseId::UpstreamTls,
            CauseId::UpstreamDns,
        ],
        explains: &[],
    },
    TreeStep {
        id: StepId::BackendLog,
        question: "Does the backend's own log show errors?",
        method: "read the backend's logs (php-fpm, gunicorn, uwsgi, journald) within --since; ask a php-fpm pool with pm.status_path for its status page over FastCGI; a container's state (exit code, OOMKilled, restarts, health) and last log lines from the Engine API",
        by_hand: &["tail /var/log/php8.2-fpm.log", "journalctl -u myapp -n 50", "docker inspect NAME; docker logs --tail 50 NAME"],
        // A worker's SIGKILL is oom_killed when the kernel log has that pid; request timeouts
        // are the backend's own (request_terminate_timeout, gunicorn's worker timeout).
        causes: &[
            CauseId::PoolExhausted,
            CauseId::AppError,
            CauseId::OomKilled,
            CauseId::UpstreamTimeout,
        ],
        explains: BACKEND_SYMPTOMS,
    },
    TreeStep {
        id: StepId::Resources,
        question: "Is the host out of memory, disk space or inodes?",
        method: "OOM kills from the kernel log, statvfs of the paths the chain writes, /proc/meminfo",
        by_hand: &["dmesg | grep -i oom", "df -h && df -i", "free -h"],
        causes: &[CauseId::OomKilled, CauseId::DiskFull, CauseId::InodesExhausted],
        explains: BACKEND_SYMPTOMS,
    },
    TreeStep {
        id: StepId::Security,
        question: "Does a firewall rule, SELinux or AppArmor cut nginx off its backend?",
        method: "evaluate nftables/iptables rules for nginx's packets; AVC and AppArmor denials",
        by_hand: &["iptables -L -n -v", "nft list ruleset", "ausearch -m AVC -ts recent"],
        causes: &[
            CauseId::FirewallBlocked,
            CauseId::SelinuxDenied,
            CauseId::ApparmorDenied,
        ],
        explains: &[],
    },
    TreeStep {
        id: StepId::NginxConfig,
        question: "Does `nginx -t` pass, and is what runs what is on disk?",
        method: "nginx -t -c CONF with its messages mapped to file:line (a --server-name/--upstream view skips it while no file nginx reads at load changed since the load); config mtimes vs the master's last (re)load",
        by_hand: &["nginx -t", "nginx -T | less"],
        causes: &[CauseId::NginxConfigInvalid, CauseId::ConfigChangedSinceLoad],
        explains: &[],
    },
];

pub fn tree_step(id: StepId) -> &'static TreeStep {
    // TREE holds every StepId; the test below keeps it that way.
    TREE.iter().find(|s| s.id == id).unwrap_or(&TREE[0])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tree_has_every_step_once_in_contract_order() {
        let ids: Vec<StepId> = TREE.iter().map(|s| s.id).collect();
        assert_eq!(ids, StepId::ALL);
    }

    #[test]
    fn a_step_explains_only_breaks_of_steps_before_it() {
        for (i, s) in TREE.iter().enumerate() {
            for c in s.explains {
                assert!(
                    TREE[..i].iter().any(|earlier| earlier.causes.contains(c)),
                    "{} explains {c}, which no earlier step breaks with",
                    s.id
                );
            }
        }
    }

    #[test]
    fn every_cause_is_declared_at_its_home_step() {
        // The catalog's step is where a cause is first diagnosed; TREE lists it there (and may
        // list it at other steps that can also name it).
        for c in why502_model::CAUSES {
            if let Some(home) = c.step {
                assert!(
                    tree_step(home).causes.contains(&c.id),
                    "{} belongs to {home} in the catalog, but TREE does not list it there",
                    c.id
                );
            }
        }
    }

    #[test]
    fn every_cause_a_step_names_belongs_to_a_step() {
        for s in TREE {
            for c in s.causes.iter().filter(|c| **c != CauseId::Unknown) {
                assert!(c.info().step.is_some(), "{c} listed under {}", s.id);
            }
        }
    }
}

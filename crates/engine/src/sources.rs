//! What the run reads from the host, each source once, shared by every upstream's walk.

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::sync::Mutex;

use why502_host::ProcessTable;
use why502_listen::ListenTable;

use crate::agent_config::AgentConfig;
use crate::discover::WorkerIdentity;
use crate::steps::error_log::ErrorLogs;
use crate::steps::nginx_config::ConfigFinding;

/// A host's addresses, or why it did not resolve.
type Resolution = Result<Vec<IpAddr>, String>;

pub struct Sources {
    pub procs: ProcessTable,
    pub listen: ListenTable,
    pub worker: WorkerIdentity,
    /// Addresses of this network namespace's interfaces (`None`: could not be read).
    pub local_addrs: Option<Vec<IpAddr>>,
    /// Every address nginx's config points at, so a listener nginx uses elsewhere is never
    /// offered as "the backend listening somewhere else".
    pub referenced: HashSet<String>,
    pub config: ConfigFinding,
    pub error_logs: ErrorLogs,
    /// The agent's own config: per-upstream overrides, thresholds, host paths.
    pub agent: AgentConfig,
    owners: Mutex<HashMap<u64, Option<u32>>>,
    /// Host names resolved once per run, shared by every step that needs them.
    resolved: tokio::sync::Mutex<HashMap<(String, u16), Resolution>>,
}

/// The process behind a listening socket.
#[derive(Debug, Clone)]
pub struct Owner {
    pub pid: u32,
    pub name: String,
}

impl Sources {
    pub fn new(
        procs: ProcessTable,
        listen: ListenTable,
        worker: WorkerIdentity,
        referenced: HashSet<String>,
        config: ConfigFinding,
        error_logs: ErrorLogs,
    ) -> Sources {
        Sources {
            procs,
            listen,
            worker,
            local_addrs: local_addresses(),
            referenced,
            config,
            error_logs,
            agent: AgentConfig::default(),
            owners: Mutex::new(HashMap::new()),
            resolved: tokio::sync::Mutex::new(HashMap::new()),
        }
    }

    /// Sources with nothing read but the given error logs, for step tests.
    #[cfg(test)]
    pub fn with_error_logs(error_logs: ErrorLogs) -> Sources {
        use crate::steps::StepFinding;
        Sources::new(
            ProcessTable::read(std::path::Path::new("/nonexistent")),
            ListenTable::default(),
            WorkerIdentity {
                identity: None,
                source: "test".into(),
            },
            HashSet::new(),
            ConfigFinding {
                finding: StepFinding::pass("test"),
                changed_since_load: Vec::new(),
            },
            error_logs,
        )
    }

    /// Owners of socket inodes, looked up once each: /proc/PID/fd is scanned only for the
    /// inodes not asked about before.
    pub fn owners(&self, inodes: &[u64]) -> HashMap<u64, Owner> {
        let mut cache = match self.owners.lock() {
            Ok(c) => c,
            Err(poisoned) => poisoned.into_inner(),
        };
        let missing: HashSet<u64> = inodes
            .iter()
            .copied()
            .filter(|i| !cache.contains_key(i))
            .collect();
        if !missing.is_empty() {
            let found = self.procs.socket_owners(&missing);
            for i in missing {
                cache.insert(i, found.get(&i).copied());
            }
        }
        inodes
            .iter()
            .filter_map(|i| {
                let pid = (*cache.get(i)?)?;
                Some((*i, self.owner_named(pid)))
            })
            .collect()
    }

    pub fn owner(&self, inode: u64) -> Option<Owner> {
        self.owners(&[inode]).remove(&inode)
    }

    fn owner_named(&self, pid: u32) -> Owner {
        let name = self
            .procs
            .get(pid)
            .map(|p| process_label(&p.comm, &p.cmdline))
            .unwrap_or_else(|| "?".to_string());
        Owner { pid, name }
    }

    /// Resolve a host as nginx does at start-up (the system resolver), once per run; IP
    /// literals need no lookup. `budget` bounds a lookup that is not cached yet.
    pub async fn resolve(
        &self,
        host: &str,
        port: u16,
        budget: std::time::Duration,
    ) -> Result<Vec<IpAddr>, String> {
        if let Ok(ip) = host.parse::<IpAddr>() {
            return Ok(vec![ip]);
        }
        let key = (host.to_string(), port);
        let mut cache = self.resolved.lock().await;
        if let Some(r) = cache.get(&key) {
            return r.clone();
        }
        let r = match tokio::time::timeout(budget, tokio::net::lookup_host((host, port))).await {
            Ok(Ok(addrs)) => {
                let mut ips: Vec<IpAddr> = addrs.map(|a| a.ip()).collect();
                ips.dedup();
                if ips.is_empty() {
                    Err("no addresses".to_string())
                } else {
                    Ok(ips)
                }
            }
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err(format!("no answer within {budget:?}")),
        };
        cache.insert(key, r.clone());
        r
    }

    pub fn is_local(&self, ip: IpAddr) -> Option<bool> {
        if ip.is_loopback() {
            return Some(true);
        }
        self.local_addrs.as_ref().map(|a| a.contains(&ip))
    }
}

/// A short name for a process: php-fpm masters and pools are all called `php-fpm8.2` by comm
/// and `php-fpm: master process (...)` by title; keep the part an admin recognises.
fn process_label(comm: &str, cmdline: &[String]) -> String {
    let first = cmdline.first().map(String::as_str).unwrap_or("");
    if first.starts_with("php-fpm") {
        return "php-fpm".to_string();
    }
    // Interpreters: name the script or module too (`python3 app.py`, `gunicorn`).
    let base = |s: &str| s.rsplit('/').next().unwrap_or(s).to_string();
    match base(first).as_str() {
        b if b.starts_with("python") || b == "node" || b == "ruby" || b == "java" => {
            let script = cmdline
                .iter()
                .skip(1)
                .find(|a| !a.starts_with('-'))
                .map(|a| base(a));
            match script {
                Some(s) => format!("{b} {s}"),
                None => b.to_string(),
            }
        }
        "" => comm.to_string(),
        b => b.to_string(),
    }
}

fn local_addresses() -> Option<Vec<IpAddr>> {
    let addrs = nix::ifaddrs::getifaddrs().ok()?;
    Some(
        addrs
            .filter_map(|a| {
                let sa = a.address?;
                if let Some(v4) = sa.as_sockaddr_in() {
                    Some(IpAddr::V4(v4.ip()))
                } else {
                    sa.as_sockaddr_in6().map(|v6| IpAddr::V6(v6.ip()))
                }
            })
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels() {
        let v = |s: &[&str]| s.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        assert_eq!(
            process_label(
                "php-fpm8.2",
                &v(&["php-fpm: master process (/etc/php/8.2/fpm/php-fpm.conf)"])
            ),
            "php-fpm"
        );
        assert_eq!(
            process_label(
                "python3",
                &v(&["/usr/bin/python3", "-m", "http.server", "8000"])
            ),
            "python3 http.server"
        );
        assert_eq!(
            process_label("gunicorn", &v(&["/usr/bin/gunicorn", "app:app"])),
            "gunicorn"
        );
        assert_eq!(process_label("kworker", &v(&[])), "kworker");
    }
}

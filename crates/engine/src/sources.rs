//! What the run reads from the host, each source once, shared by every upstream's walk.

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::sync::Mutex;

use why502_disk::MemoryPressure;
use why502_host::ProcessTable;
use why502_kernel_log::KernelLogWindow;
use why502_listen::ListenTable;

use crate::agent_config::AgentConfig;
use crate::discover::WorkerIdentity;
use crate::facts::{ErrorLogs, LogRead};
use crate::steps::nginx_config::ConfigFinding;
use crate::targets::UpstreamTarget;

/// A host's addresses, or why it did not resolve.
type Resolution = Result<Vec<IpAddr>, String>;

/// A name, a port, and the `resolver` servers asked (empty: the system resolver).
type ResolutionKey = (String, u16, Vec<String>);

/// How many direct requests may be in flight at once across the run: a host with hundreds of
/// sites must not be loaded by its own diagnosis (php-fpm `ondemand` pools fork a worker per
/// request and reap them later).
const REQUESTS_IN_FLIGHT: usize = 8;
/// And at most this many to the pools of one master: an `ondemand` master forks a worker for
/// each, and 500 pools asked at once made php-fpm fork 500 workers and reap them with SIGKILL.
const REQUESTS_PER_MASTER: usize = 2;

/// Why a target's host name did not resolve the way nginx resolves it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DnsProblem {
    pub summary: String,
    /// Where the answer came from (`getaddrinfo(x)`, `resolver 127.0.0.1:53`).
    pub asked: String,
    pub detail: String,
}

pub struct Sources {
    pub procs: ProcessTable,
    pub listen: ListenTable,
    pub worker: WorkerIdentity,
    /// Addresses of this network namespace's interfaces (`None`: could not be read).
    pub local_addrs: Option<Vec<IpAddr>>,
    /// Every address nginx's config points at, so a listener nginx uses elsewhere is never
    /// offered as "the backend listening somewhere else".
    pub referenced: HashSet<String>,
    /// What the error-log index is looked up by: every target's address and block name
    /// (`facts::errorlog::wanted_keys`).
    pub log_keys: crate::facts::errorlog::KeySet,
    pub config: crate::steps::nginx_config::ConfigSlot,
    pub error_logs: ErrorLogs,
    /// The agent's own config: per-upstream overrides, thresholds, host paths.
    pub agent: AgentConfig,
    /// The kernel log over the window: OOM kills. Read while the walk goes on (shared with
    /// the security reading, which needs its LSM lines); see `kernel_log`.
    pub kernel: std::sync::Arc<crate::slot::Slot<KernelLogWindow>>,
    pub memory: MemoryPressure,
    /// nftables and iptables rules (`None`: not read, e.g. out of time, or no TCP upstream).
    pub firewall: crate::slot::Slot<Option<why502_firewall::FirewallSnapshot>>,
    /// SELinux and AppArmor state and denials (`None`: not read).
    pub security: crate::slot::Slot<Option<why502_security::SecuritySnapshot>>,
    /// php-fpm configurations (running masters' first, then installed), read once.
    pub fpm_configs: Vec<why502_backend::PhpFpmConfig>,
    /// systemd unit files, read once (for backends that are down).
    /// The directories systemd unit files are read from, when a step first needs them.
    pub unit_dirs: Vec<std::path::PathBuf>,
    units: std::sync::OnceLock<Vec<why502_backend::UnitFile>>,
    /// The window's start, seconds since the epoch.
    pub since_epoch: i64,
    /// The agent runs as root (what it could not read was denied by something else).
    pub as_root: bool,
    /// The user narrowed the run (`--upstream`, `--server-name`): what is left is asked
    /// directly even when asking costs the backend a fork.
    pub narrowed: bool,
    /// Unix listeners by their canonical path, built on first use.
    unix_by_real: std::sync::OnceLock<HashMap<std::path::PathBuf, Vec<u64>>>,
    /// Directories of the files each backend process holds open, read once per pid.
    open_dirs: Mutex<HashMap<u32, Vec<std::path::PathBuf>>>,
    /// The pids in each cgroup asked about (`cgroup.procs`), read once per cgroup.
    cgroup_members: Mutex<HashMap<String, Option<Vec<u32>>>>,
    /// The filesystems of each set of backend paths, measured once per set.
    filesystems: tokio::sync::Mutex<HashMap<Vec<std::path::PathBuf>, why502_disk::FilesystemSet>>,
    /// What each process's command line tells it to listen on, parsed once.
    listen_claims: std::sync::OnceLock<why502_backend::ListenClaims>,
    /// php-fpm workers alive per pool name (`php-fpm: pool NAME`), counted once.
    fpm_workers: std::sync::OnceLock<HashMap<String, usize>>,
    /// Names of the worker's groups, looked up once.
    group_names: HashMap<u32, String>,
    /// Backend log windows, each file read once.
    backend_logs: Mutex<HashMap<std::path::PathBuf, LogRead>>,
    owners: Mutex<why502_host::SocketOwnerScan>,
    requests: tokio::sync::Semaphore,
    per_master: Mutex<HashMap<u32, std::sync::Arc<tokio::sync::Semaphore>>>,
    /// Host names resolved once per run, shared by every step that needs them; keyed by the
    /// name, the port and the `resolver` asked (empty: the system resolver).
    resolved: tokio::sync::Mutex<HashMap<ResolutionKey, Resolution>>,
    /// The host's recent past, for timelines: read once per run.
    pub history: History,
    /// The access logs the config writes, and their windows, each read on first use.
    pub access_logs: Vec<why502_nginx::accesslog::AccessLogUse>,
    access_windows: Mutex<
        HashMap<
            std::path::PathBuf,
            Result<std::sync::Arc<why502_nginx::accesslog::AccessWindow>, String>,
        >,
    >,
    /// The starts, reloads and stops each backend log holds (filled with `backend_log`).
    backend_lifecycle: Mutex<HashMap<std::path::PathBuf, Vec<why502_backend::LifecycleEvent>>>,
    /// The container engines' lists, asked on first use (only an upstream whose listener is a
    /// container's, or whose TCP address nobody listens on, needs them).
    containers: tokio::sync::OnceCell<Vec<why502_container::EngineSnapshot>>,
    /// systemd units' journals in the window (for timelines), each read once per run.
    unit_journals: Mutex<HashMap<String, std::sync::Arc<JournalCell>>>,
    /// Containers inspected, by engine socket and id, once per run.
    container_states: Mutex<HashMap<(std::path::PathBuf, String), std::sync::Arc<ContainerCell>>>,
}

/// One container's inspection, made once per run by whoever asks first.
type ContainerCell = tokio::sync::OnceCell<Result<why502_container::ContainerState, String>>;
/// One unit's journal, likewise.
type JournalCell = tokio::sync::OnceCell<why502_backend::JournalRead>;

/// What changed on the host in the window, read once per run (timelines are built from it).
#[derive(Debug, Clone, Default)]
pub struct History {
    /// nginx (re)loads: the reload notices of its error log, and its workers' start. (time,
    /// where it was read).
    pub nginx_reloads: Vec<(i64, String)>,
    /// Modification times of nginx's config files and of every php-fpm config file read.
    pub file_mtimes: Vec<(std::path::PathBuf, i64)>,
    /// dpkg's log over the window (empty when there is none).
    pub packages: Vec<why502_host::PackageChange>,
}

/// Held while a direct request runs (see `Sources::request_permit`).
pub struct RequestPermit<'a> {
    _run: Option<tokio::sync::SemaphorePermit<'a>>,
    _master: Option<tokio::sync::OwnedSemaphorePermit>,
}

/// The process behind a listening socket.
#[derive(Debug, Clone)]
pub struct Owner {
    pub pid: u32,
    pub name: String,
}

/// The kernel log as a judge sees it before its gather waited for it (and what a lost read
/// leaves): not read, so nothing is cleared by it.
pub fn kernel_not_read() -> KernelLogWindow {
    KernelLogWindow::Unknown {
        reason: "the kernel log was not read within --timeout".to_string(),
        fix: "Give the run more time (--timeout).".to_string(),
        tried: Vec::new(),
    }
}

static KERNEL_NOT_READ: std::sync::LazyLock<KernelLogWindow> =
    std::sync::LazyLock::new(kernel_not_read);

impl Sources {
    /// The kernel log's window, as far as it is in (a step's gather waits for it).
    pub fn kernel_log(&self) -> &KernelLogWindow {
        self.kernel.get().unwrap_or(&KERNEL_NOT_READ)
    }

    /// The packet filter's rules, if they were read (a step's gather waits for them).
    pub fn packet_filter(&self) -> Option<&why502_firewall::FirewallSnapshot> {
        self.firewall.get().and_then(Option::as_ref)
    }

    /// SELinux and AppArmor, if they were read (a step's gather waits for them).
    pub fn security_state(&self) -> Option<&why502_security::SecuritySnapshot> {
        self.security.get().and_then(Option::as_ref)
    }

    pub fn new(
        procs: ProcessTable,
        listen: ListenTable,
        worker: WorkerIdentity,
        referenced: HashSet<String>,
        config: ConfigFinding,
        error_logs: ErrorLogs,
    ) -> Sources {
        let group_names = worker
            .identity
            .iter()
            .flat_map(|i| std::iter::once(i.gid).chain(i.groups.iter().copied()))
            .map(|g| (g, why502_host::group_name(g)))
            .collect();
        Sources {
            procs,
            listen,
            worker,
            local_addrs: local_addresses(),
            referenced,
            log_keys: Default::default(),
            config: crate::steps::nginx_config::ConfigSlot::ready(config),
            error_logs,
            agent: AgentConfig::default(),
            kernel: std::sync::Arc::new(crate::slot::Slot::ready(kernel_not_read())),
            memory: MemoryPressure {
                meminfo: why502_disk::Reading::NotApplicable {
                    reason: "not read".to_string(),
                },
                psi: why502_disk::Reading::NotApplicable {
                    reason: "not read".to_string(),
                },
            },
            firewall: crate::slot::Slot::ready(None),
            security: crate::slot::Slot::ready(None),
            fpm_configs: Vec::new(),
            unit_dirs: Vec::new(),
            units: std::sync::OnceLock::new(),
            since_epoch: 0,
            as_root: nix::unistd::geteuid().is_root(),
            narrowed: false,
            unix_by_real: std::sync::OnceLock::new(),
            open_dirs: Mutex::new(HashMap::new()),
            cgroup_members: Mutex::new(HashMap::new()),
            filesystems: tokio::sync::Mutex::new(HashMap::new()),
            fpm_workers: std::sync::OnceLock::new(),
            listen_claims: std::sync::OnceLock::new(),
            group_names,
            backend_logs: Mutex::new(HashMap::new()),
            owners: Mutex::new(why502_host::SocketOwnerScan::default()),
            requests: tokio::sync::Semaphore::new(REQUESTS_IN_FLIGHT),
            per_master: Mutex::new(HashMap::new()),
            resolved: tokio::sync::Mutex::new(HashMap::new()),
            history: History::default(),
            access_logs: Vec::new(),
            access_windows: Mutex::new(HashMap::new()),
            backend_lifecycle: Mutex::new(HashMap::new()),
            containers: tokio::sync::OnceCell::new(),
            unit_journals: Mutex::new(HashMap::new()),
            container_states: Mutex::new(HashMap::new()),
        }
    }

    /// The engines of the running container daemons (dockerd, `podman system service`), each
    /// listed once per run within `budget`.
    pub async fn container_engines(
        &self,
        budget: std::time::Duration,
    ) -> &[why502_container::EngineSnapshot] {
        self.containers
            .get_or_init(|| async {
                let daemons: Vec<why502_container::DaemonProcess> = self
                    .procs
                    .iter()
                    .filter(|p| p.comm == "dockerd" || p.comm == "podman")
                    .map(|p| why502_container::DaemonProcess {
                        pid: p.pid,
                        argv: p.cmdline.clone(),
                    })
                    .collect();
                let endpoints: Vec<_> = why502_container::engine_endpoints(&daemons, |path| {
                    why502_host::read_to_string_bounded(path, 256 * 1024).ok()
                })
                .into_iter()
                .filter(|e| self.daemon_serves(e))
                .collect();
                let mut set = tokio::task::JoinSet::new();
                for (i, e) in endpoints.into_iter().enumerate() {
                    set.spawn(async move {
                        let client = why502_container::EngineClient::new(
                            &e.socket,
                            why502_container::Limits::default(),
                        );
                        (
                            i,
                            why502_container::EngineSnapshot::gather(e, &client, budget).await,
                        )
                    });
                }
                let mut out = Vec::new();
                while let Some(joined) = set.join_next().await {
                    if let Ok(done) = joined {
                        out.push(done);
                    }
                }
                out.sort_by_key(|(i, _)| *i);
                tracing::debug!(engines = out.len(), "container engines listed");
                out.into_iter().map(|(_, s)| s).collect()
            })
            .await
    }

    /// The endpoint's socket is one its daemon listens on: a listening unix socket at that
    /// path (this namespace's table) held by the daemon itself. A socket held by another
    /// process (systemd's `docker.socket` while dockerd is stopped, a rootless daemon's guess
    /// at the default path, a look-alike) is never connected to: a connection could start a
    /// daemon, or ask one that is not the engine. Without the right to see the owner (not
    /// root), a daemon run by root with its socket in the table is taken at its word.
    fn daemon_serves(&self, e: &why502_container::EngineEndpoint) -> bool {
        let inodes = self.unix_listeners_at(&e.socket);
        if inodes.is_empty() {
            return false;
        }
        let owners = self.owners(&inodes);
        if owners.is_empty() {
            return !self.as_root
                && self
                    .procs
                    .credentials(e.daemon_pid)
                    .is_none_or(|c| c.uid == 0);
        }
        owners.values().any(|o| {
            o.pid == e.daemon_pid
                || self
                    .procs
                    .get(o.pid)
                    .is_some_and(|p| p.ppid == e.daemon_pid)
        })
    }

    /// One container's state, inspected once per run (a stopped one the list already
    /// inspected is not asked again).
    pub async fn container_state(
        &self,
        socket: &std::path::Path,
        id: &str,
    ) -> Result<why502_container::ContainerState, String> {
        if let Some(engines) = self.containers.get() {
            if let Some(c) = engines
                .iter()
                .filter(|s| s.endpoint.socket == socket)
                .flat_map(|s| s.stopped.iter())
                .find(|c| c.id == id)
            {
                return Ok(c.clone());
            }
        }
        let key = (socket.to_path_buf(), id.to_string());
        // The map is held only to find the key's cell: inspecting one container never waits
        // for another's answer.
        let cell = {
            let mut cells = match self.container_states.lock() {
                Ok(c) => c,
                Err(poisoned) => poisoned.into_inner(),
            };
            cells.entry(key).or_default().clone()
        };
        cell.get_or_init(|| async {
            let client =
                why502_container::EngineClient::new(socket, why502_container::Limits::default());
            why502_container::inspect(&client, id)
                .await
                .map_err(|e| e.to_string())
        })
        .await
        .clone()
    }

    /// The engine's daemon runs in this run's network namespace (where the listeners were
    /// read): only its stopped containers' ports are nginx's addresses. Unknown counts as ours.
    pub fn engine_is_ours(&self, snapshot: &why502_container::EngineSnapshot) -> bool {
        let own = why502_host::own_netns(self.procs.root());
        match (own, self.procs.netns(snapshot.endpoint.daemon_pid)) {
            (Some(a), Some(b)) => a == b,
            _ => true,
        }
    }

    /// The journal of `unit` in the window, read once per run within `budget`.
    pub async fn unit_journal(
        &self,
        unit: &str,
        budget: std::time::Duration,
    ) -> why502_backend::JournalRead {
        let cell = self.journal_cell(unit);
        cell.get_or_init(|| why502_backend::journal_for_unit(unit, self.since_epoch, budget))
            .await
            .clone()
    }

    /// The journal already read for `unit` (None before `unit_journal` finished).
    pub fn unit_journal_read(&self, unit: &str) -> Option<why502_backend::JournalRead> {
        self.journal_cell(unit).get().cloned()
    }

    fn journal_cell(&self, unit: &str) -> std::sync::Arc<JournalCell> {
        let mut cells = match self.unit_journals.lock() {
            Ok(c) => c,
            Err(poisoned) => poisoned.into_inner(),
        };
        cells.entry(unit.to_string()).or_default().clone()
    }

    /// Tests: a captured journal for `unit`.
    #[cfg(test)]
    pub fn set_unit_journal(&self, unit: &str, read: why502_backend::JournalRead) {
        let _ = self.journal_cell(unit).set(read);
    }

    /// The engines this run listed that could not be read: (socket, why), for a summary that
    /// must not imply their containers were looked at. Empty before any listing.
    pub fn container_engine_problems(&self) -> Vec<(std::path::PathBuf, String)> {
        self.containers
            .get()
            .into_iter()
            .flatten()
            .filter(|s| self.engine_is_ours(s))
            .filter_map(|s| {
                s.containers
                    .as_ref()
                    .err()
                    .map(|e| (s.endpoint.socket.clone(), e.clone()))
            })
            .collect()
    }

    /// Why no engine could be asked about a container (its daemon's pid, if known).
    pub fn no_engine_reason(&self, daemon_pid: u32) -> (String, String) {
        let name = self
            .procs
            .get(daemon_pid)
            .map(|p| format!("{} (pid {daemon_pid})", p.comm));
        match name {
            Some(n) => (
                format!("{n} serves no Engine API socket why502 could find (a `-H tcp://` only?)"),
                "Give dockerd a unix socket (`-H unix:///var/run/docker.sock`) so its containers can be read.".to_string(),
            ),
            None => (
                "no running container engine (dockerd, podman system service) that serves an Engine API socket here knows this container".to_string(),
                String::new(),
            ),
        }
    }

    /// The window of access log `u`, read once per run (shared by every upstream it serves).
    pub fn access_window(
        &self,
        u: &why502_nginx::accesslog::AccessLogUse,
    ) -> Result<std::sync::Arc<why502_nginx::accesslog::AccessWindow>, String> {
        let mut cache = match self.access_windows.lock() {
            Ok(c) => c,
            Err(poisoned) => poisoned.into_inner(),
        };
        cache
            .entry(u.path.clone())
            .or_insert_with(|| {
                why502_nginx::accesslog::read_access_window(&u.path, &u.format, self.since_epoch)
                    .map(std::sync::Arc::new)
                    .map_err(|e| e.to_string())
            })
            .clone()
    }

    /// The starts, reloads and stops `backend_log` found in the log at `path`.
    pub fn backend_lifecycle(&self, path: &std::path::Path) -> Vec<why502_backend::LifecycleEvent> {
        let cache = match self.backend_lifecycle.lock() {
            Ok(c) => c,
            Err(poisoned) => poisoned.into_inner(),
        };
        cache.get(path).cloned().unwrap_or_default()
    }

    /// Sources with nothing read, for judging captured facts in tests (no host access).
    #[cfg(test)]
    pub fn for_tests() -> Sources {
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
            ErrorLogs::default(),
        )
    }

    /// Owners of socket inodes: one resumable scan of /proc/PID/fd per run, shared by every
    /// upstream (see `SocketOwnerScan`).
    pub fn owners(&self, inodes: &[u64]) -> HashMap<u64, Owner> {
        let mut scan = match self.owners.lock() {
            Ok(c) => c,
            Err(poisoned) => poisoned.into_inner(),
        };
        inodes
            .iter()
            .filter_map(|i| {
                let pid = scan.owner(&self.procs, *i)?;
                Some((*i, self.owner_named(pid)))
            })
            .collect()
    }

    /// A backend log's window, read on first use and shared by every upstream after. A log
    /// that does not exist yet is "nothing logged"; one that cannot be read says why.
    pub fn backend_log(&self, path: &std::path::Path) -> LogRead {
        let mut cache = match self.backend_logs.lock() {
            Ok(c) => c,
            Err(poisoned) => poisoned.into_inner(),
        };
        if let Some(r) = cache.get(path) {
            return r.clone();
        }
        let r = match why502_backend::read_backend_log(
            path,
            self.since_epoch,
            why502_host::TailLimits::default(),
        ) {
            Ok(w) => {
                let mut lifecycle = match self.backend_lifecycle.lock() {
                    Ok(c) => c,
                    Err(poisoned) => poisoned.into_inner(),
                };
                lifecycle.insert(path.to_path_buf(), w.lifecycle);
                LogRead::Events(w.events)
            }
            Err(e) if e.is_not_found() => LogRead::NotWritten,
            Err(e) if e.is_permission_denied() => {
                let (reason, fix) = crate::facts::unreadable_reason(path, self.as_root);
                LogRead::Unreadable { reason, fix }
            }
            Err(e) => {
                let (reason, fix) = why502_backend::logs::unreadable_log(path, &e);
                LogRead::Unreadable { reason, fix }
            }
        };
        cache.insert(path.to_path_buf(), r.clone());
        r
    }

    /// Listening unix sockets bound to `path` as written, or to another spelling of the same
    /// file (a symlinked /var/run vs /run). Each listener's path is resolved once per run.
    pub fn unix_listeners_at(&self, path: &std::path::Path) -> Vec<u64> {
        let literal: Vec<u64> = self
            .listen
            .unix
            .iter()
            .filter(|l| std::path::Path::new(&l.path) == path)
            .map(|l| l.inode)
            .collect();
        if !literal.is_empty() {
            return literal;
        }
        let Ok(real) = std::fs::canonicalize(path) else {
            return literal;
        };
        let by_real = self.unix_by_real.get_or_init(|| {
            let mut map: HashMap<std::path::PathBuf, Vec<u64>> = HashMap::new();
            for l in self.listen.unix.iter().filter(|l| !l.path.starts_with('@')) {
                if let Ok(r) = std::fs::canonicalize(&l.path) {
                    map.entry(r).or_default().push(l.inode);
                }
            }
            map
        });
        by_real.get(&real).cloned().unwrap_or_default()
    }

    /// The directories of the files process `pid` holds open (bounded), read once per run.
    pub fn open_dirs_of(&self, pid: u32) -> Vec<std::path::PathBuf> {
        let mut cache = match self.open_dirs.lock() {
            Ok(c) => c,
            Err(poisoned) => poisoned.into_inner(),
        };
        cache
            .entry(pid)
            .or_insert_with(|| self.procs.open_file_dirs(pid, 4096, 32))
            .clone()
    }

    /// The pids of cgroup `cg` (a path as /proc/PID/cgroup gives it), from its `cgroup.procs`
    /// under the v1 memory hierarchy or the unified one; `None` when none could be read.
    pub fn cgroup_members(&self, cg: &str) -> Option<Vec<u32>> {
        if cg == "/" || cg.is_empty() {
            return None;
        }
        let mut cache = match self.cgroup_members.lock() {
            Ok(c) => c,
            Err(poisoned) => poisoned.into_inner(),
        };
        cache
            .entry(cg.to_string())
            .or_insert_with(|| {
                let rel = cg.trim_start_matches('/');
                [
                    "/sys/fs/cgroup/memory",
                    "/sys/fs/cgroup/unified",
                    "/sys/fs/cgroup",
                ]
                .iter()
                .find_map(|base| {
                    let file = std::path::Path::new(base).join(rel).join("cgroup.procs");
                    let bytes = why502_host::read_bounded(&file, 1 << 20).ok()?;
                    Some(
                        String::from_utf8_lossy(&bytes)
                            .lines()
                            .filter_map(|l| l.trim().parse().ok())
                            .collect(),
                    )
                })
            })
            .clone()
    }

    /// The filesystems holding `paths`, measured once per run for each set of paths (the
    /// pools of one master share theirs), within `budget`.
    pub async fn filesystems_of(
        &self,
        paths: Vec<std::path::PathBuf>,
        budget: std::time::Duration,
    ) -> why502_disk::FilesystemSet {
        let mut cache = self.filesystems.lock().await;
        if let Some(set) = cache.get(&paths) {
            return set.clone();
        }
        let set = why502_disk::FilesystemSet::gather(paths.clone(), budget).await;
        cache.insert(paths, set.clone());
        set
    }

    /// systemd unit files, read on first use: only a backend that is down needs them (which
    /// unit was configured to serve its address).
    pub fn units(&self) -> &[why502_backend::UnitFile] {
        self.units
            .get_or_init(|| why502_backend::read_units(&self.unit_dirs).0)
    }

    /// What each process's command line tells it to listen on (see `ListenClaims`).
    pub fn listen_claims(&self) -> &why502_backend::ListenClaims {
        self.listen_claims
            .get_or_init(|| why502_backend::ListenClaims::of(&self.procs, self.units()))
    }

    /// How many php-fpm workers of pool `name` are alive now (any master), from one pass over
    /// the process table.
    pub fn fpm_workers_of(&self, name: &str) -> usize {
        let by_pool = self.fpm_workers.get_or_init(|| {
            let mut map: HashMap<String, usize> = HashMap::new();
            for p in self.procs.iter() {
                if let Some(pool) = p.cmdline_joined().strip_prefix("php-fpm: pool ") {
                    *map.entry(pool.trim().to_string()).or_default() += 1;
                }
            }
            map
        });
        by_pool.get(name).copied().unwrap_or(0)
    }

    /// A slot for one direct request, held while it runs: one of the run's, and one of the
    /// backend master's when the listener's process is known.
    pub async fn request_permit(&self, listener_pid: Option<u32>) -> RequestPermit<'_> {
        let master = listener_pid.map(|pid| self.master_of(pid));
        let per_master = match master {
            Some(m) => {
                let sem = {
                    let mut map = match self.per_master.lock() {
                        Ok(m) => m,
                        Err(poisoned) => poisoned.into_inner(),
                    };
                    map.entry(m)
                        .or_insert_with(|| {
                            std::sync::Arc::new(tokio::sync::Semaphore::new(REQUESTS_PER_MASTER))
                        })
                        .clone()
                };
                sem.acquire_owned().await.ok()
            }
            None => None,
        };
        RequestPermit {
            _run: self.requests.acquire().await.ok(),
            _master: per_master,
        }
    }

    /// The php-fpm master, gunicorn arbiter... above a worker: the parent with the same name.
    fn master_of(&self, pid: u32) -> u32 {
        let Some(me) = self.procs.get(pid) else {
            return pid;
        };
        self.procs
            .get(me.ppid)
            .filter(|p| p.comm == me.comm && p.pid > 1)
            .map_or(pid, |p| p.pid)
    }

    /// A group's name, for the worker's groups (looked up when the sources were built).
    pub fn group_name(&self, gid: u32) -> String {
        self.group_names
            .get(&gid)
            .cloned()
            .unwrap_or_else(|| gid.to_string())
    }

    /// Start from a scan already run (see `prefetch_socket_owners`): what it found is not
    /// looked for again, and it resumes where it stopped.
    pub fn set_owner_scan(&mut self, scan: why502_host::SocketOwnerScan) {
        self.owners = Mutex::new(scan);
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
        let key = (host.to_string(), port, Vec::new());
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

    /// Resolve a target's host as nginx does: a literal `*_pass` target once at start-up
    /// through the system resolver; a target with variables per request through the
    /// location's `resolver` (nginx: "no resolver defined" when there is none).
    pub async fn resolve_as_nginx(
        &self,
        target: &UpstreamTarget,
        host: &str,
        port: u16,
        budget: std::time::Duration,
    ) -> Result<Vec<IpAddr>, DnsProblem> {
        if host.parse::<IpAddr>().is_ok() || !target.resolved_at_request_time {
            return self
                .resolve(host, port, budget)
                .await
                .map_err(|e| DnsProblem {
                    summary: format!("{host} does not resolve: {e}"),
                    asked: format!("getaddrinfo({host})"),
                    detail: e,
                });
        }
        let settings = &target.settings;
        if settings.resolver.is_empty() {
            return Err(DnsProblem {
                summary: format!(
                    "nginx resolves {host} per request (the pass has variables) but no `resolver` is defined for it"
                ),
                asked: "nginx config".to_string(),
                detail: format!("no resolver defined to resolve {host}"),
            });
        }
        let key = (host.to_string(), port, settings.resolver.clone());
        let mut cache = self.resolved.lock().await;
        let result = match cache.get(&key) {
            Some(r) => r.clone(),
            None => {
                let budget = budget.min(settings.resolver_timeout);
                let r = self.ask_resolver(host, settings, budget).await;
                cache.insert(key, r.clone());
                r
            }
        };
        let servers = settings.resolver.join(" ");
        result.map_err(|e| DnsProblem {
            summary: format!("nginx's resolver {servers} says: {e}"),
            asked: format!("resolver {servers}"),
            detail: e,
        })
    }

    async fn ask_resolver(
        &self,
        host: &str,
        settings: &why502_nginx::config::PassSettings,
        budget: std::time::Duration,
    ) -> Resolution {
        let mut servers = Vec::new();
        for r in &settings.resolver {
            match resolver_address(r) {
                Some(a) => servers.push(a),
                // A resolver given by name: nginx resolved it at start-up, as we do now.
                None => {
                    let (name, port) = split_host_port(r);
                    if let Ok(Ok(found)) =
                        tokio::time::timeout(budget, tokio::net::lookup_host((name, port))).await
                    {
                        servers.extend(found);
                    }
                }
            }
        }
        if servers.is_empty() {
            return Err(format!(
                "the resolver address {:?} could not be used",
                settings.resolver
            ));
        }
        why502_request::dns::resolve_via(&servers, host, settings.resolver_ipv6, budget)
            .await
            .map_err(|e| e.nginx_log(host))
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

/// `127.0.0.1`, `127.0.0.1:5353`, `[::1]:5353`, `[::1]` (nginx's forms; port 53 by default).
fn resolver_address(text: &str) -> Option<std::net::SocketAddr> {
    if let Ok(a) = text.parse::<std::net::SocketAddr>() {
        return Some(a);
    }
    let bare = text.trim_start_matches('[').trim_end_matches(']');
    bare.parse::<IpAddr>()
        .ok()
        .map(|ip| std::net::SocketAddr::new(ip, 53))
}

fn split_host_port(text: &str) -> (&str, u16) {
    match text.rsplit_once(':') {
        Some((h, p)) => match p.parse() {
            Ok(port) => (h, port),
            Err(_) => (text, 53),
        },
        None => (text, 53),
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

    #[tokio::test]
    async fn requests_to_one_master_are_limited() {
        let sources = Sources::for_tests();
        let _a = sources.request_permit(Some(42)).await;
        let _b = sources.request_permit(Some(42)).await;
        // A third to the same master waits for one of the two; another master's does not.
        let third = tokio::time::timeout(
            std::time::Duration::from_millis(50),
            sources.request_permit(Some(42)),
        )
        .await;
        assert!(third.is_err(), "a third request to one master went through");
        let other = tokio::time::timeout(
            std::time::Duration::from_millis(50),
            sources.request_permit(Some(43)),
        )
        .await;
        assert!(other.is_ok());
    }

    #[test]
    fn resolver_addresses_in_nginx_forms() {
        let a = |s: &str| resolver_address(s).map(|a| a.to_string());
        assert_eq!(a("127.0.0.1").as_deref(), Some("127.0.0.1:53"));
        assert_eq!(a("127.0.0.1:5353").as_deref(), Some("127.0.0.1:5353"));
        assert_eq!(a("[::1]:5353").as_deref(), Some("[::1]:5353"));
        assert_eq!(a("[::1]").as_deref(), Some("[::1]:53"));
        assert_eq!(a("dns.internal"), None);
        assert_eq!(split_host_port("dns.internal:5353"), ("dns.internal", 5353));
        assert_eq!(split_host_port("dns.internal"), ("dns.internal", 53));
    }

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

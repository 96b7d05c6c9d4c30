//! The engine: discover nginx, gather every source once, walk the decision tree for each
//! upstream concurrently, assemble the report.
//!
//! Architecture invariant: the flow is one-way — discover → gather → walk → report. Steps read
//! only the shared `Sources`; none reads the host again for something another step already read.
//! The engine knows nothing of terminals or output formats.

pub mod agent_config;
mod discover;
pub mod facts;
mod host_resources;
mod options;
mod slot;
mod sources;
pub mod steps;
mod targets;
#[cfg(test)]
mod test_support;
pub mod tree;
mod walk;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::time::Instant;
use why502_host::ProcessTable;
use why502_listen::ListenTable;
use why502_model::{MasterSummary, NginxInfo, Report, SCHEMA};
use why502_nginx::check::{start_check, ConfigCheck, PendingCheck};

pub use agent_config::AgentConfig;
pub use options::{Options, Progress};
pub use targets::{TargetAddr, UpstreamTarget};
pub use tree::{TreeStep, TREE};
pub use walk::VERDICT_RULES;

use crate::facts::ErrorLogs;
use crate::sources::Sources;
use crate::steps::nginx_config::{self, ConfigFinding};

/// Why a run could not diagnose at all (exit 3).
#[derive(Debug, thiserror::Error)]
pub enum DiagnoseError {
    #[error("no nginx found: {reason}; pass --nginx-conf PATH")]
    NoNginx { reason: String },
    #[error("{reason}")]
    ConfigUnreadable { conf: PathBuf, reason: String },
    #[error("no nginx master with pid {pid}")]
    NoSuchMaster { pid: u32 },
    #[error("no upstream matches {filter}")]
    NoMatchingUpstream { filter: String },
}

/// Parse errors that could make `nginx -t` itself loop or crash: it has no include-cycle
/// guard. Our parser's own size and depth limits are not among them: nginx reads what it
/// accepts, and its verdict is the one that counts.
fn nginx_t_is_unsafe(errors: &[why502_nginx::config::ParseError]) -> Option<String> {
    errors
        .iter()
        .find(|e| {
            !nginx_config::is_parser_limit(e) && e.message.to_ascii_lowercase().contains("cycle")
        })
        .map(|e| format!("skipped: {e}"))
}

pub async fn diagnose(opts: &Options) -> Result<Report, DiagnoseError> {
    let started = Instant::now();
    let started_at = SystemTime::now();
    let deadline = started + opts.timeout;

    // The kernel log is read once, on a worker while this thread reads the process table: it
    // needs nothing else, and its syslog(2) call costs ~2.5 ms of CPU however small the window
    // (see `why502_kernel_log`). Started later it took that CPU from nginx -t and the walk.
    let kernel = {
        let since = started_at
            .checked_sub(opts.since)
            .unwrap_or(SystemTime::UNIX_EPOCH);
        let budget = opts.timeout.mul_f32(0.5).min(Duration::from_secs(3));
        tokio::spawn(why502_kernel_log::KernelLog::read(since, budget))
    };
    // As root nginx -t runs in a private mount namespace (see `start_nginx_t`), made by a
    // thread that starts now, while the process table and the config it needs are read. A
    // view that may skip nginx -t (one site's, see below) starts it only if it runs.
    let as_root = nix::unistd::geteuid().is_root();
    let one_site_view = (opts.server_name.is_some() || opts.upstream.is_some()) && !opts.all;
    let spawner = (as_root && !one_site_view).then(why502_host::IsolatedSpawner::start);
    let procs = ProcessTable::read(&opts.proc_root);
    // php-fpm's configs (hundreds of pool files on a hosting server) load on a blocking
    // thread while nginx's config is parsed: only the process table says where they are.
    let fpm_configs = {
        let found = why502_backend::find_php_fpm_configs(&procs, &opts.agent.paths.etc);
        tokio::task::spawn_blocking(move || {
            found
                .into_iter()
                .filter_map(|f| match &f.prefix {
                    Some(p) => why502_backend::PhpFpmConfig::load_with_prefix(&f.path, p).ok(),
                    None => why502_backend::PhpFpmConfig::load(&f.path).ok(),
                })
                .collect::<Vec<_>>()
        })
    };
    let mut phases = Phases::new(started);
    phases.mark("process table");
    let setup = discover::discover(opts, &procs).await?;
    tracing::debug!(
        conf = %setup.conf.display(),
        from = setup.conf_source,
        master = ?setup.master.as_ref().map(|m| m.pid),
        binary = ?setup.binary,
        "nginx found"
    );
    phases.mark("discover (nginx -V, config parse)");

    // One site's view (a panel asking per site) does not re-run nginx -t when nothing nginx
    // reads at load changed since it loaded: the running configuration is the one on disk,
    // and nginx accepted it then. Whether the load time can be trusted needs the error log's
    // reload notices, so such a run decides once the logs are read.
    let may_skip_check = one_site_view && setup.master.is_some();
    // Only a view that may skip nginx -t needs to know what nginx read at load.
    let load_files = if !may_skip_check {
        Vec::new()
    } else {
        let conf_dir = setup
            .conf
            .parent()
            .map(std::path::Path::to_path_buf)
            .unwrap_or_default();
        let mut files = setup.parsed.files.clone();
        files.extend(why502_nginx::check::files_read_at_load(
            &setup.parsed.directives,
            &conf_dir,
        ));
        // A removed include changes only its directory; an upgraded binary is what nginx -t
        // would run.
        let dirs: Vec<PathBuf> = files
            .iter()
            .filter_map(|f| f.parent().map(std::path::Path::to_path_buf))
            .collect();
        files.extend(dirs);
        files.extend(setup.binary.clone());
        files.sort();
        files.dedup();
        files
    };
    // nginx -t is the longest wait of a small host's run: it starts before anything else is
    // gathered (see `start_first`), and is collected while the rest is gathered and walked.
    let start_check = {
        let binary = setup.binary.clone();
        let conf = setup.conf.clone();
        let prefix = setup.prefix.clone();
        let nginx_prefix = setup.nginx_prefix.clone();
        let build = setup.build.clone();
        let globals = setup.master.as_ref().and_then(|m| m.globals.clone());
        let unsafe_reason = nginx_t_is_unsafe(&setup.parsed.errors);
        let budget = opts.timeout.mul_f32(0.8).min(Duration::from_secs(5));
        let configured = why502_nginx::check::configured_runtime_paths(&setup.parsed.directives);
        move || async move {
            let spawner = spawner.or_else(|| as_root.then(why502_host::IsolatedSpawner::start));
            match (unsafe_reason, binary) {
                (Some(reason), _) => PendingCheck::ready(ConfigCheck::NotRun { reason }),
                (None, None) => PendingCheck::ready(ConfigCheck::NotRun {
                    reason: "no nginx binary found".to_string(),
                }),
                (None, Some(bin)) => {
                    let paths = NginxTPaths {
                        prefix,
                        nginx_prefix,
                        compiled: build.map(|b| b.runtime_paths).unwrap_or_default(),
                        configured,
                    };
                    start_nginx_t(&bin, &conf, paths, globals, spawner, budget).await
                }
            }
        }
    };
    // The log can only confirm the master's own load time (`trusted_load_time` is it or
    // None): a file changed since then, or a parse error, means nginx -t runs whatever the
    // log says, so it starts now instead of after the log is read — on a busy log that read
    // is the longest thing before it.
    let unchanged_since_load = may_skip_check
        && setup
            .master
            .as_ref()
            .and_then(|m| m.loaded_at())
            .is_some_and(|t| facts::drift::maybe_changed_since(&load_files, Some(t)).is_empty())
        && nginx_config::real_parse_errors(&setup.parsed.errors) == 0;
    let (config_check, start_check) = if unchanged_since_load {
        (None, Some(start_check))
    } else {
        (Some(start_first(start_check).await), None)
    };

    // Every address nginx points at, whichever targets this run keeps.
    let (mut targets, dynamic, referenced) = match &opts.server_name {
        Some(name) => {
            let (targets, dynamic) = targets::collect_targets_serving(&setup.config, name);
            (
                targets,
                dynamic,
                targets::referenced_addresses(&setup.config),
            )
        }
        None => {
            let (targets, dynamic) = targets::collect_targets(&setup.config);
            let referenced = targets.iter().map(|t| t.address.clone()).collect();
            (targets, dynamic, referenced)
        }
    };
    if let Some(f) = &opts.upstream {
        targets.retain(|t| targets::matches_upstream_filter(t, f));
        if targets.is_empty() {
            return Err(DiagnoseError::NoMatchingUpstream { filter: f.clone() });
        }
    }
    if let Some(name) = &opts.server_name {
        targets.retain(|t| targets::matches_server_filter(t, name));
        if targets.is_empty() {
            return Err(DiagnoseError::NoMatchingUpstream {
                filter: format!("server_name {name}"),
            });
        }
    }

    // What the error-log lines are looked up by; the reader keeps only lines naming one. The
    // error logs are the longest read before the walk: started first.
    let log_keys = facts::errorlog::wanted_keys(&targets);
    let files = error_log_files(opts, &setup.config, &compiled_error_log(&setup));
    let log_files: Vec<PathBuf> = files
        .iter()
        .filter_map(|f| match f {
            Ok(ErrorLogSource::File(p)) => Some(p.clone()),
            _ => None,
        })
        .collect();
    let error_logs = {
        let since = opts.since;
        let wanted = log_keys.clone();
        tokio::task::spawn_blocking(move || read_error_logs(files, since, &wanted))
    };
    let nginx_paths = host_resources::nginx_paths(&log_files);
    // The packet filter matters only for TCP upstreams; `nft` and `iptables-save` run once.
    let firewall = targets
        .iter()
        .any(|t| matches!(t.addr, TargetAddr::Tcp { .. }))
        .then(|| {
            let budget = opts.timeout.mul_f32(0.5).min(Duration::from_secs(5));
            tokio::spawn(why502_firewall::FirewallSnapshot::gather(budget))
        });
    let security = {
        let paths = security_paths(&opts.agent.paths, &opts.proc_root);
        let since = started_at
            .checked_sub(opts.since)
            .unwrap_or(SystemTime::UNIX_EPOCH);
        let mut nginx_pids: Vec<u32> = Vec::new();
        if let Some(m) = &setup.master {
            nginx_pids.push(m.pid);
            nginx_pids.extend(procs.children_of(m.pid).map(|c| c.pid));
        }
        (paths, since, nginx_pids)
    };
    let listen = ListenTable::read(&opts.proc_root);
    let mut notes: Vec<String> = listen
        .unreadable
        .iter()
        .map(|u| format!("unreadable: {u}"))
        .collect();
    if let Some(why) = &listen.fell_back {
        notes.push(format!(
            "listeners read from /proc/net (slower): the sock_diag dump failed: {why}"
        ));
    }
    notes.extend(dynamic.iter().map(|d| {
        format!(
            "not diagnosed: `{}` at {} (its target is chosen at request time)",
            d.directive, d.at
        )
    }));
    notes.extend(setup.parsed.errors.iter().map(|e| format!("config: {e}")));
    if targets.is_empty() {
        notes.push(format!(
            "no upstreams (proxy_pass, fastcgi_pass, ...) found in {}",
            setup.conf.display()
        ));
    }

    // The walk asks who holds each upstream's listener: one fd scan of every process before
    // the owner. Done here, while the error logs are read on another thread, instead of in
    // the walk after them.
    let owner_scan = in_place(|| prefetch_socket_owners(&procs, &listen, &targets));
    phases.mark("sources (listeners, firewall, security)");
    // A log on a slow disk must not cost the run its answer: what was not read by the deadline
    // is reported as unread.
    let log_deadline = deadline
        .checked_sub(Duration::from_millis(200))
        .unwrap_or(deadline);
    let mut error_logs = match tokio::time::timeout_at(log_deadline, error_logs).await {
        Ok(Ok(logs)) => logs,
        Ok(Err(e)) => ErrorLogs {
            unreadable: vec![format!("error-log reader failed: {e}")],
            ..ErrorLogs::default()
        },
        Err(_) => ErrorLogs {
            unreadable: vec![format!(
                "the error log was not read within --timeout {:?}",
                opts.timeout
            )],
            ..ErrorLogs::default()
        },
    };
    notes.append(&mut error_logs.notes);
    for w in &error_logs.windows {
        tracing::debug!(
            log = %w.source.display(),
            bytes = w.bytes_read,
            lines = w.parsed_lines,
            kept = w.lines.len(),
            rotated = w.rotated.len(),
            "error log read"
        );
    }
    for u in &error_logs.unreadable {
        tracing::warn!("error log not read: {u}");
    }
    phases.mark("wait for the error logs");
    let conf_shown = setup.conf.display().to_string();
    // A reload replaces the workers, so their start bounds the load time; a SIGHUP logged
    // later (a reload whose workers have since been replaced again) moves it on.
    let loaded_at = match (
        setup.master.as_ref().and_then(|m| m.loaded_at()),
        last_reload_logged(&error_logs),
    ) {
        (Some(a), Some(b)) => Some(a.max(b)),
        (a, b) => a.or(b),
    };
    // Worker starts no reload notice explains (Debian logs at `error`, below the notices)
    // are a reload's when the master's log shows no worker died then: only a view that may
    // skip nginx -t asks, and only about those seconds.
    let quiet_starts = match (&start_check, &setup.master) {
        (Some(_), Some(master)) => {
            let unexplained = why502_nginx::discovery::unexplained_worker_starts(
                master,
                &reload_times(&error_logs),
            );
            let logs = master_error_logs(&setup);
            if unexplained.is_empty() || logs.is_empty() {
                Vec::new()
            } else {
                tokio::task::spawn_blocking(move || quiet_worker_starts(&unexplained, &logs))
                    .await
                    .unwrap_or_default()
            }
        }
        _ => Vec::new(),
    };
    // nginx -t goes on while the upstreams are walked: only the nginx_config step (and the
    // host checks after the walk) wait for its finding.
    let config = {
        let parse_errors = setup.parsed.errors.clone();
        let files = setup.parsed.files.clone();
        let timeout = opts.timeout;
        let conf_shown = conf_shown.clone();
        let skipped = start_check.as_ref().and_then(|_| {
            let master = setup.master.as_ref()?;
            let reloads = reload_times(&error_logs);
            let trusted =
                why502_nginx::discovery::trusted_load_time(master, &reloads, &quiet_starts);
            // Checked above against the master's load time, which is what `trusted` is.
            nginx_config::skipped_check(
                unchanged_since_load,
                trusted,
                &setup.parsed.errors,
                load_files.len(),
            )
        });
        async move {
            let config_check = match (config_check, skipped, start_check) {
                (_, Some(skip), _) => {
                    return ConfigFinding {
                        finding: skip,
                        changed_since_load: Vec::new(),
                    }
                }
                (Some(running), None, _) => running,
                (None, None, Some(start)) => {
                    tokio::spawn(async move { start().await.finish().await })
                }
                (None, None, None) => {
                    return ConfigFinding {
                        finding: steps::StepFinding::unknown("nginx -t was not started"),
                        changed_since_load: Vec::new(),
                    }
                }
            };
            let remaining = deadline.saturating_duration_since(Instant::now());
            let check = match tokio::time::timeout(remaining, config_check).await {
                Ok(Ok(c)) => c,
                Ok(Err(e)) => ConfigCheck::NotRun {
                    reason: format!("nginx -t task failed: {e}"),
                },
                Err(_) => ConfigCheck::NotRun {
                    reason: format!("nginx -t did not finish within --timeout {timeout:?}"),
                },
            };
            ConfigFinding {
                finding: nginx_config::judge(
                    &check,
                    &parse_errors,
                    &conf_shown,
                    nix::unistd::geteuid().is_root(),
                ),
                changed_since_load: facts::drift::changed_since(&files, loaded_at),
            }
        }
    };
    let mut sources = Sources::new(
        procs,
        listen,
        setup.worker.clone(),
        referenced,
        ConfigFinding {
            finding: steps::StepFinding::unknown("nginx -t has not finished"),
            changed_since_load: Vec::new(),
        },
        error_logs,
    );
    sources.set_owner_scan(owner_scan);
    sources.config = nginx_config::ConfigSlot::pending(config, nginx_config::config_not_run);
    sources.agent = opts.agent.clone();
    sources.memory = why502_disk::MemoryPressure::read();
    sources.since_epoch = started_at
        .checked_sub(opts.since)
        .unwrap_or(SystemTime::UNIX_EPOCH)
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    sources.narrowed = opts.upstream.is_some() || opts.server_name.is_some();
    sources.log_keys = log_keys;
    sources.fpm_configs = fpm_configs.await.unwrap_or_default();
    sources.unit_dirs = opts.agent.paths.units.clone();
    sources.access_logs =
        why502_nginx::accesslog::access_logs(&setup.parsed.directives, &setup.nginx_prefix);
    sources.history = history(
        &sources,
        &setup.parsed.files,
        loaded_at,
        &opts.agent.paths.dpkg_log,
    );
    // The kernel log, the rulesets and the security state are still being read: the walk
    // starts now, and only the steps that judge them (backend_log, resources, security, the
    // timeline, the host checks) wait for them.
    let kernel = Arc::new(slot::Slot::pending(
        async move {
            match tokio::time::timeout_at(deadline, kernel).await {
                Ok(Ok(k)) => k,
                _ => sources::kernel_not_read(),
            }
        },
        sources::kernel_not_read,
    ));
    sources.kernel = kernel.clone();
    if let Some(f) = firewall {
        sources.firewall = slot::Slot::pending(
            async move {
                tokio::time::timeout_at(deadline, f)
                    .await
                    .ok()
                    .and_then(Result::ok)
            },
            || None,
        );
    }
    // After the kernel log: without auditd or a syslog daemon, AppArmor and SELinux denials
    // reach only the kernel log, read once above.
    let security = {
        let (paths, since, nginx_pids) = security;
        tokio::spawn(async move {
            let kernel_lines = match kernel.wait().await {
                why502_kernel_log::KernelLogWindow::Read(r) => Some(r.lsm_lines.clone()),
                why502_kernel_log::KernelLogWindow::Unknown { .. } => None,
            };
            tokio::task::spawn_blocking(move || {
                why502_security::SecuritySnapshot::gather(
                    &paths,
                    since,
                    &nginx_pids,
                    kernel_lines.as_deref(),
                )
            })
            .await
            .ok()
        })
    };
    sources.security = slot::Slot::pending(
        async move {
            tokio::time::timeout_at(deadline, security)
                .await
                .ok()
                .and_then(Result::ok)
                .flatten()
        },
        || None,
    );
    let sources = Arc::new(sources);
    phases.mark("php-fpm configs, access logs, history");
    let (upstreams, claimed) = walk::walk_all(
        targets,
        sources.clone(),
        opts.all,
        deadline,
        opts.progress.clone(),
    )
    .await;
    phases.mark("walk every upstream");
    let mut host_checks = sources.config.wait().await.host_checks();
    sources.kernel.wait().await;
    sources.firewall.wait().await;
    sources.security.wait().await;
    phases.mark("then wait for nginx -t, the kernel log, firewall, security");
    host_checks.extend(blind_spots(&sources, &setup.parsed.errors));
    let budget = deadline
        .saturating_duration_since(Instant::now())
        .min(Duration::from_secs(2));
    host_checks.extend(host_resources::checks(&sources, &claimed, nginx_paths, budget).await);

    let nginx = NginxInfo {
        binary: setup.binary.as_ref().map(|b| b.display().to_string()),
        conf: conf_shown,
        conf_source: setup.conf_source.to_string(),
        prefix: setup.prefix.as_ref().map(|p| p.display().to_string()),
        worker_user: sources.worker.identity.as_ref().map(|i| i.name.clone()),
        master_pid: setup.master.as_ref().map(|m| m.pid),
        loaded_at: loaded_at.map(|t| humantime::format_rfc3339_seconds(t).to_string()),
        other_masters: setup
            .other_masters
            .iter()
            .map(|m| MasterSummary {
                pid: m.pid,
                binary: m.binary.as_ref().map(|b| b.display().to_string()),
                conf: m.conf.as_ref().map(|c| c.display().to_string()),
                same_netns: m.same_netns,
            })
            .collect(),
        changed_since_load: sources.config.wait().await.changed_since_load.clone(),
    };
    let status = Report::compute_status(&upstreams, &host_checks);
    // What could not be read or was left out: the operator's "why is this unknown".
    for n in &notes {
        tracing::warn!("{n}");
    }
    for u in &upstreams {
        tracing::debug!(
            upstream = %u.address,
            status = ?u.status,
            step = %u.verdict.step,
            cause = %u.verdict.cause,
            "verdict"
        );
    }
    let report = Report {
        schema: SCHEMA.to_string(),
        status,
        host: hostname(),
        started_at: humantime::format_rfc3339_seconds(started_at).to_string(),
        duration_ms: started.elapsed().as_millis() as u64,
        nginx,
        upstreams,
        host_checks,
        notes,
        phases: phases.done(),
    };
    // Freeing a hosting server's parsed config, process table and log windows takes ms the
    // answer need not wait for (3 ms at 500 sites): a one-shot run exits without waiting for
    // this task, `serve` frees them on its blocking pool.
    tokio::task::spawn_blocking(move || drop((setup, sources)));
    Ok(report)
}

/// Where a run's time went, phase by phase (`Report.phases`), for `-v` and the benchmarks.
/// Run blocking work on this worker thread without stalling the runtime's other tasks
/// (`block_in_place` hands them to another worker); inline on a current-thread runtime.
fn in_place<T>(f: impl FnOnce() -> T) -> T {
    match tokio::runtime::Handle::try_current().map(|h| h.runtime_flavor()) {
        Ok(tokio::runtime::RuntimeFlavor::MultiThread) => tokio::task::block_in_place(f),
        _ => f(),
    }
}

/// The owners of the local listeners the targets name as written (a literal IP, a socket
/// path), found by the one fd scan the walk would otherwise run; names resolved later and
/// other spellings of a path are left to the walk, which resumes the same scan.
fn prefetch_socket_owners(
    procs: &ProcessTable,
    listen: &ListenTable,
    targets: &[targets::UpstreamTarget],
) -> why502_host::SocketOwnerScan {
    let mut scan = why502_host::SocketOwnerScan::default();
    for t in targets {
        let inodes: Vec<u64> = match &t.addr {
            TargetAddr::Tcp { host, port } => host
                .trim_start_matches('[')
                .trim_end_matches(']')
                .parse::<std::net::IpAddr>()
                .ok()
                .and_then(|ip| listen.tcp_accepting(ip, *port))
                .map(|l| l.inode)
                .into_iter()
                .collect(),
            TargetAddr::Unix(path) => listen.unix_bound_to(path).iter().map(|l| l.inode).collect(),
        };
        for inode in inodes {
            scan.owner(procs, inode);
        }
    }
    scan
}

struct Phases {
    last: Instant,
    done: Vec<why502_model::Phase>,
}

impl Phases {
    fn new(started: Instant) -> Phases {
        Phases {
            last: started,
            done: Vec::new(),
        }
    }

    /// The phase that ends now.
    fn mark(&mut self, phase: &str) {
        let now = Instant::now();
        tracing::debug!(
            phase,
            ms = now.duration_since(self.last).as_secs_f64() * 1000.0,
            "phase done"
        );
        self.done.push(why502_model::Phase {
            phase: phase.to_string(),
            us: now.duration_since(self.last).as_micros() as u64,
        });
        self.last = now;
    }

    fn done(self) -> Vec<why502_model::Phase> {
        self.done
    }
}

/// How long the run waits for nginx -t to start before going on without it: its set-up takes
/// about a millisecond; a mount over a hung network filesystem must not hold the run.
const CHECK_START_WAIT: Duration = Duration::from_millis(50);

/// Starts nginx -t on a worker and waits until nginx has started (at most `CHECK_START_WAIT`)
/// before the run gathers anything else: on two CPUs the gathering that followed took the
/// CPU from its set-up (a private mount namespace, overlays, the spawn), which then took
/// 3–5 ms instead of 1–2 (measured on the lab stack). Its verdict is collected later.
async fn start_first<S, F>(start: S) -> tokio::task::JoinHandle<ConfigCheck>
where
    S: FnOnce() -> F + Send + 'static,
    F: std::future::Future<Output = PendingCheck> + Send,
{
    let (started_tx, started) = tokio::sync::oneshot::channel::<()>();
    let check = tokio::spawn(async move {
        let pending = start().await;
        let _ = started_tx.send(());
        pending.finish().await
    });
    let _ = tokio::time::timeout(CHECK_START_WAIT, started).await;
    check
}

/// Where `nginx -t` may create or chown files: the running master's `-p` (passed on), the
/// prefix relative paths resolve against, nginx's compiled-in runtime paths and the config's.
struct NginxTPaths {
    prefix: Option<PathBuf>,
    nginx_prefix: PathBuf,
    compiled: Vec<PathBuf>,
    configured: Vec<PathBuf>,
}

/// `nginx -t` that cannot change the host: never able to bind a port (see
/// `why502_nginx::check::start_check`), and as root in a private mount namespace whose
/// overlays catch every pid file, log and temp directory it creates or chowns. Not as root it
/// cannot chown or write root's directories anyway, and runs without the namespace; its
/// denials are judged as such.
async fn start_nginx_t(
    bin: &std::path::Path,
    conf: &std::path::Path,
    paths: NginxTPaths,
    globals: Option<String>,
    spawner: Option<why502_host::IsolatedSpawner>,
    budget: Duration,
) -> PendingCheck {
    use why502_nginx::check::{overlay_dirs, runtime_dirs, Isolation};
    let prefix = paths.prefix.as_deref();
    let Some(spawner) = spawner else {
        return start_check(bin, conf, prefix, globals.as_deref(), budget, None).await;
    };
    let dirs = runtime_dirs(&paths.configured, &paths.compiled, &paths.nginx_prefix);
    match overlay_dirs(&dirs) {
        Ok(overlays) => {
            start_check(
                bin,
                conf,
                prefix,
                globals.as_deref(),
                budget,
                Some(Isolation {
                    spawner,
                    overlays: &overlays,
                }),
            )
            .await
        }
        Err(reason) => PendingCheck::ready(ConfigCheck::NotIsolated { reason }),
    }
}

/// What the run could not look at, whatever the upstreams say: an nginx error log that could
/// not be read (a FIFO, denied, gone) and a config our parser could not read whole. Each is
/// an `unknown` host check naming the reason, so the run is never ok while blind.
fn blind_spots(
    sources: &Sources,
    parse_errors: &[why502_nginx::config::ParseError],
) -> Vec<why502_model::HostCheck> {
    use why502_model::{Evidence, HostCheck, Outcome, StepId};
    let mut out = Vec::new();
    let logs = &sources.error_logs;
    if !logs.unreadable.is_empty() {
        out.push(HostCheck {
            step: StepId::ErrorLog,
            outcome: Outcome::Unknown,
            cause: why502_model::CauseId::None,
            summary: format!(
                "nginx's error log could not be read: {}",
                logs.unreadable.join("; ")
            ),
            fix: Some(steps::error_log::unreadable_fix(sources).to_string()),
            evidence: logs
                .unreadable
                .iter()
                .map(|u| Evidence::new("error_log", u.clone()))
                .collect(),
        });
    }
    let limits: Vec<&why502_nginx::config::ParseError> = parse_errors
        .iter()
        .filter(|e| nginx_config::is_parser_limit(e))
        .collect();
    if let Some(first) = limits.first() {
        out.push(HostCheck {
            step: StepId::NginxConfig,
            outcome: Outcome::Unknown,
            cause: why502_model::CauseId::None,
            summary: format!(
                "the configuration could not be read whole, so upstreams past this point are not diagnosed: {first}"
            ),
            fix: Some("Raise the limit named, or diagnose one site with --server-name.".to_string()),
            evidence: limits
                .iter()
                .map(|e| Evidence::new("config parser", e.to_string()))
                .collect(),
        });
    }
    out
}

/// nginx's compiled-in error log (`--error-log-path`, relative to its prefix), else Debian's
/// file. Debian compiles in `stderr`: a config without `error_log` logs to nginx's stderr.
fn compiled_error_log(setup: &discover::NginxSetup) -> Result<PathBuf, String> {
    match setup.build.as_ref().and_then(|b| b.error_log_path.clone()) {
        Some(p) if p.as_os_str() == "stderr" => Err(
            "the config names no error_log, and nginx's compiled-in default (--error-log-path=stderr) is its stderr (the journal under systemd); add `error_log /var/log/nginx/error.log;` or pass --error-log"
                .to_string(),
        ),
        Some(p) if p.is_absolute() => Ok(p),
        Some(p) => Ok(setup.nginx_prefix.join(p)),
        None => Ok(PathBuf::from(DEFAULT_ERROR_LOG)),
    }
}

/// The error logs to read: `--error-log`, else every file `error_log` of the config, else
/// nginx's compiled-in default. syslog is read back from the syslog daemon's file; stderr cannot be.
fn error_log_files(
    opts: &Options,
    config: &why502_nginx::config::NginxConfig,
    compiled: &Result<PathBuf, String>,
) -> Vec<Result<ErrorLogSource, String>> {
    use why502_nginx::config::ErrorLogDest;
    if !opts.error_logs.is_empty() {
        return opts
            .error_logs
            .iter()
            .cloned()
            .map(|p| Ok(ErrorLogSource::File(p)))
            .collect();
    }
    let mut out: Vec<Result<ErrorLogSource, String>> = Vec::new();
    for e in &config.error_logs {
        let item = match &e.dest {
            ErrorLogDest::File { path } if path.as_os_str() == "/dev/null" => continue,
            ErrorLogDest::File { path } => Ok(ErrorLogSource::File(path.clone())),
            // Read back from the file the syslog daemon writes, where there is one.
            ErrorLogDest::Syslog { spec } if opts.agent.paths.syslog.is_file() => {
                Ok(ErrorLogSource::Syslog {
                    file: opts.agent.paths.syslog.clone(),
                    tag: why502_nginx::errorlog::syslog_tag(spec).to_string(),
                })
            }
            ErrorLogDest::Syslog { spec } => Err(format!(
                "error_log syslog:{spec} at {} goes to syslog, and there is no syslog file at {} to read it back (without a syslog daemon it is in the journal: journalctl -t {}); set [paths] syslog or pass --error-log",
                e.loc,
                opts.agent.paths.syslog.display(),
                why502_nginx::errorlog::syslog_tag(spec)
            )),
            ErrorLogDest::Stderr => Err(format!(
                "error_log stderr at {} goes to nginx's stderr (the journal under systemd)",
                e.loc
            )),
            ErrorLogDest::Memory => continue,
        };
        if !out.contains(&item) {
            out.push(item);
        }
    }
    if out.is_empty() {
        out.push(compiled.clone().map(ErrorLogSource::File));
    }
    out
}

/// Where nginx's error-log lines can be read back.
#[derive(Debug, Clone, PartialEq, Eq)]
enum ErrorLogSource {
    File(PathBuf),
    /// A syslog daemon's file, lines tagged `tag`.
    Syslog {
        file: PathBuf,
        tag: String,
    },
}

/// The newest reload nginx logged (`signal 1 (SIGHUP) received from 1234, reconfiguring`, at
/// level notice, so only when the error_log level lets it through).
fn last_reload_logged(logs: &ErrorLogs) -> Option<SystemTime> {
    reload_times(logs).into_iter().max()
}

/// The files the master itself logs to at a level that keeps a worker's death (`[alert]
/// worker process N exited on signal S`): the main context's `error_log` files, else the
/// compiled-in log (at nginx's default level `error`).
fn master_error_logs(setup: &discover::NginxSetup) -> Vec<PathBuf> {
    use why502_nginx::config::ErrorLogDest;
    let main: Vec<_> = setup.config.error_logs.iter().filter(|e| e.main).collect();
    if main.is_empty() {
        return compiled_error_log(setup).into_iter().collect();
    }
    main.iter()
        .filter(|e| e.level != "emerg")
        .filter_map(|e| match &e.dest {
            ErrorLogDest::File { path } if path.as_os_str() != "/dev/null" => Some(path.clone()),
            _ => None,
        })
        .collect()
}

/// Of `starts`, those around which (5 s either side) a master log that covers the time shows
/// no worker exit, and none shows one.
fn quiet_worker_starts(starts: &[SystemTime], logs: &[PathBuf]) -> Vec<SystemTime> {
    use why502_nginx::errorlog::exits::{worker_exits_in_span, ExitsInSpan};
    const AROUND: i64 = 5;
    starts
        .iter()
        .copied()
        .filter(|start| {
            let Ok(at) = start.duration_since(SystemTime::UNIX_EPOCH) else {
                return false;
            };
            let at = at.as_secs() as i64;
            let mut covered = false;
            for log in logs {
                match worker_exits_in_span(log, at - AROUND, at + AROUND) {
                    Ok(ExitsInSpan::Covered(exits)) if exits.is_empty() => covered = true,
                    Ok(ExitsInSpan::Covered(_)) => return false,
                    Ok(ExitsInSpan::NotCovered(why)) => {
                        tracing::debug!(log = %log.display(), "worker start not checked: {why}")
                    }
                    Err(e) => tracing::debug!("worker start not checked: {e}"),
                }
            }
            covered
        })
        .collect()
}

/// Every reload notice the error logs hold in the window.
fn reload_times(logs: &ErrorLogs) -> Vec<SystemTime> {
    logs.windows
        .iter()
        .flat_map(|w| w.lines.iter())
        .filter(|l| why502_nginx::errorlog::is_reload_notice(&l.message))
        .filter_map(|l| u64::try_from(l.time).ok())
        .map(|t| SystemTime::UNIX_EPOCH + Duration::from_secs(t))
        .collect()
}

/// The host's recent past, read once: nginx's reloads (its error log's notices, its workers'
/// start), the mtimes of nginx's config files and of every php-fpm config file, dpkg's log.
fn history(
    sources: &Sources,
    nginx_files: &[PathBuf],
    loaded_at: Option<SystemTime>,
    dpkg_log: &std::path::Path,
) -> sources::History {
    let since = sources.since_epoch;
    let secs = |t: SystemTime| {
        t.duration_since(SystemTime::UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or(0)
    };
    let mut nginx_reloads: Vec<(i64, String)> = sources
        .error_logs
        .windows
        .iter()
        .flat_map(|w| {
            w.lines
                .iter()
                .filter(|l| why502_nginx::errorlog::is_reload_notice(&l.message))
                .map(move |l| (l.time, format!("{} @ {}", w.source.display(), l.stamp)))
        })
        .collect();
    if let Some(t) = loaded_at.map(secs).filter(|t| *t >= since) {
        if !nginx_reloads.iter().any(|(r, _)| (r - t).abs() <= 2) {
            nginx_reloads.push((t, "the nginx workers' start time".to_string()));
        }
    }
    let mut file_mtimes = Vec::new();
    let fpm_files = sources.fpm_configs.iter().flat_map(|c| c.files.iter());
    for f in nginx_files.iter().chain(fpm_files) {
        if let Some(m) = std::fs::metadata(f).ok().and_then(|m| m.modified().ok()) {
            file_mtimes.push((f.clone(), secs(m)));
        }
    }
    let packages = why502_host::read_package_changes(dpkg_log, since).unwrap_or_default();
    sources::History {
        nginx_reloads,
        file_mtimes,
        packages,
    }
}

/// Debian's and nginx.org's compiled-in error log.
const DEFAULT_ERROR_LOG: &str = "/var/log/nginx/error.log";

fn read_source(
    source: &ErrorLogSource,
    since_epoch: i64,
    wanted: &facts::errorlog::KeySet,
) -> Result<why502_nginx::errorlog::ErrorLogWindow, why502_host::ReadError> {
    use why502_nginx::errorlog::{read_syslog_window_about, read_window_screened, WindowLimits};
    let about = |l: &why502_nginx::errorlog::LineRef<'_>| facts::errorlog::about_wanted(l, wanted);
    match source {
        ErrorLogSource::File(path) => read_window_screened(
            path,
            since_epoch,
            WindowLimits::default(),
            &about,
            wanted.needles().as_deref(),
        ),
        ErrorLogSource::Syslog { file, tag } => {
            read_syslog_window_about(file, tag, since_epoch, WindowLimits::default(), &about)
        }
    }
}

/// Read every error log's window, keeping the lines about `wanted` (the run's
/// `facts::errorlog::wanted_keys`) and reload notices.
fn read_error_logs(
    files: Vec<Result<ErrorLogSource, String>>,
    since: Duration,
    wanted: &facts::errorlog::KeySet,
) -> ErrorLogs {
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    // nginx stamps whole seconds: a window of 3.4 s starts in the fourth second back.
    let since_epoch = now - since.as_secs_f64().ceil() as i64;
    let mut logs = ErrorLogs {
        since_text: humantime::format_duration(since).to_string(),
        ..ErrorLogs::default()
    };
    for f in files {
        match f {
            Ok(source) => match read_source(&source, since_epoch, wanted) {
                // A syslog file holds every program's lines: none of nginx's is no error.
                Ok(w) if w.bytes_read > 0
                    && w.parsed_lines == 0
                    && matches!(source, ErrorLogSource::File(_)) =>
                {
                    logs.unreadable.push(format!(
                        "{} has no line in nginx's error-log form ({} bytes read): not an nginx error log?",
                        w.source.display(),
                        w.bytes_read
                    ))
                }
                Ok(w) => {
                    if w.future_lines > 0 {
                        logs.notes.push(format!(
                            "{}: {} line(s) stamped in the future were left out of the window (the clock was ahead, or jumped back)",
                            w.source.display(),
                            w.future_lines
                        ));
                    }
                    logs.windows.push(w)
                }
                Err(e) if e.is_permission_denied() => logs
                    .unreadable
                    .push(format!("{e} (run as root or in group adm)")),
                Err(e) => logs.unreadable.push(e.to_string()),
            },
            Err(reason) => logs.unreadable.push(reason),
        }
    }
    logs
}

fn security_paths(
    paths: &agent_config::HostPaths,
    proc_root: &std::path::Path,
) -> why502_security::SecurityPaths {
    why502_security::SecurityPaths {
        selinuxfs: paths.selinuxfs.clone(),
        securityfs: paths.securityfs.clone(),
        proc_root: proc_root.to_path_buf(),
        audit_log: Some(paths.audit_log.clone()),
        kern_log: Some(paths.kern_log.clone()),
        syslog: Some(paths.syslog.clone()),
    }
}

pub fn hostname() -> String {
    nix::unistd::gethostname()
        .ok()
        .and_then(|h| h.into_string().ok())
        .unwrap_or_else(|| "localhost".to_string())
}

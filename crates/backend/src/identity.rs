//! Who serves an upstream: the process behind a listening socket, its kind, its master, when
//! it started, its cgroup and unit, and the log files it writes.

use std::path::PathBuf;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::Serialize;
use why502_host::{read_to_string_bounded, ProcessInfo, ProcessTable};

use crate::address::BackendAddr;
use crate::cgroup::{parse_proc_cgroup, CgroupInfo};
use crate::cmdline::{config_file, config_log_files, log_files, program_names};
use crate::phpfpm::{master_config, FpmLogTarget, PhpFpmConfig};

/// Walk at most this many parents to the master.
const MAX_ANCESTORS: usize = 16;
/// Look at most at this many fds of a process for open log files.
const MAX_FDS: usize = 4096;
const MAX_CONFIG: u64 = 256 * 1024;

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum BackendKind {
    PhpFpmMaster,
    /// A php-fpm worker, `php-fpm: pool www`.
    PhpFpmPool {
        pool: String,
    },
    Gunicorn,
    Uwsgi,
    Node,
    Python,
    Other {
        name: String,
    },
}

impl BackendKind {
    pub fn is_php_fpm(&self) -> bool {
        matches!(
            self,
            BackendKind::PhpFpmMaster | BackendKind::PhpFpmPool { .. }
        )
    }

    /// Two kinds of one server family (a php-fpm pool and its master).
    fn same_family(&self, other: &BackendKind) -> bool {
        (self.is_php_fpm() && other.is_php_fpm())
            || std::mem::discriminant(self) == std::mem::discriminant(other)
    }

    pub fn label(&self) -> String {
        match self {
            BackendKind::PhpFpmMaster => "php-fpm master".into(),
            BackendKind::PhpFpmPool { pool } => format!("php-fpm pool {pool}"),
            BackendKind::Gunicorn => "gunicorn".into(),
            BackendKind::Uwsgi => "uwsgi".into(),
            BackendKind::Node => "node".into(),
            BackendKind::Python => "python".into(),
            BackendKind::Other { name } => name.clone(),
        }
    }
}

/// What a process is, from its title, argv and comm.
pub fn kind_of(p: &ProcessInfo) -> BackendKind {
    kind_of_args(&p.cmdline, &p.comm)
}

/// `kind_of` for an argv that is not a running process (a systemd `ExecStart=`).
pub fn kind_of_args(args: &[String], comm: &str) -> BackendKind {
    let first = args.first().map(String::as_str).unwrap_or("");
    if first.starts_with("php-fpm: master process") {
        return BackendKind::PhpFpmMaster;
    }
    if let Some(pool) = first.strip_prefix("php-fpm: pool ") {
        return BackendKind::PhpFpmPool {
            pool: pool.trim().to_string(),
        };
    }
    if first.starts_with("gunicorn:") {
        return BackendKind::Gunicorn;
    }
    if first.starts_with("uWSGI ") {
        return BackendKind::Uwsgi;
    }
    let names = program_names(args);
    let any =
        |prefix: &str| names.iter().any(|n| n.starts_with(prefix)) || comm.starts_with(prefix);
    if any("php-fpm") {
        return BackendKind::PhpFpmMaster;
    }
    if any("gunicorn") {
        return BackendKind::Gunicorn;
    }
    if any("uwsgi") {
        return BackendKind::Uwsgi;
    }
    if any("node") || any("nodejs") {
        return BackendKind::Node;
    }
    if any("python") || any("uvicorn") || any("hypercorn") || any("daphne") {
        return BackendKind::Python;
    }
    BackendKind::Other {
        name: names
            .first()
            .filter(|n| !n.is_empty())
            .cloned()
            .unwrap_or_else(|| comm.to_string()),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LogRole {
    /// php-fpm's own log (global `error_log`): max_children, timeouts, children's signals.
    FpmErrorLog,
    /// A pool's `slowlog`: backtraces of slow requests.
    FpmSlowlog,
    /// PHP's error log for a pool (`php_admin_value[error_log]`): fatals, memory_limit.
    PhpErrorLog,
    /// A log the command line or the server's config names (gunicorn, uwsgi).
    AppLog,
    /// A `*.log` file the process has open (found in /proc/PID/fd).
    OpenFile,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BackendLogFile {
    pub path: PathBuf,
    pub role: LogRole,
    /// How it was found: `error_log in /etc/php/8.2/fpm/php-fpm.conf`, `--error-logfile`, ...
    pub via: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BackendIdentity {
    pub pid: u32,
    pub kind: BackendKind,
    pub comm: String,
    pub cmdline: String,
    /// The php-fpm master, gunicorn arbiter or uwsgi master above `pid` (itself when it is one).
    pub master_pid: Option<u32>,
    /// The php-fpm pool that serves the upstream (from the worker's title or the config).
    pub fpm_pool: Option<String>,
    /// The php-fpm config the master runs with.
    pub fpm_config: Option<PathBuf>,
    /// Start of the master (else the process), seconds since the epoch.
    pub started_at: Option<i64>,
    /// Seconds since `started_at`: a backend restarted moments ago is a clue.
    pub age_secs: Option<u64>,
    pub cgroup: Option<CgroupInfo>,
    pub unit: Option<String>,
    pub logs: Vec<BackendLogFile>,
    /// What could not be looked at, and why (permission, missing file).
    pub unknowns: Vec<String>,
}

/// Identify the process `pid` listening for `upstream`. `fpm_configs` are configs already
/// loaded (`find_php_fpm_configs` + `PhpFpmConfig::load`); a php-fpm master whose config is
/// not among them has it loaded here. `None` when `pid` is not in the table.
pub fn identify_backend(
    procs: &ProcessTable,
    pid: u32,
    fpm_configs: &[PhpFpmConfig],
    upstream: Option<&BackendAddr>,
    now: SystemTime,
) -> Option<BackendIdentity> {
    let p = procs.get(pid)?;
    let kind = kind_of(p);
    let master = find_master(procs, p, &kind);
    let top = master.unwrap_or(p);
    let started_at = procs.start_time(top).and_then(epoch_secs);
    let age_secs = procs
        .start_time(top)
        .and_then(|s| now.duration_since(s).ok())
        .map(|d| d.as_secs());
    let mut unknowns = Vec::new();
    let cgroup = match procs.cgroup(pid) {
        Some(text) => parse_proc_cgroup(&text),
        None => {
            let path = procs.root().join(pid.to_string()).join("cgroup");
            unknowns.push(format!("cgroup: cannot read {}", path.display()));
            None
        }
    };
    let mut id = BackendIdentity {
        pid,
        comm: p.comm.clone(),
        cmdline: p.cmdline_joined(),
        master_pid: master.map(|m| m.pid),
        fpm_pool: match &kind {
            BackendKind::PhpFpmPool { pool } => Some(pool.clone()),
            _ => None,
        },
        fpm_config: None,
        started_at,
        age_secs,
        unit: cgroup.as_ref().and_then(|c| c.unit.clone()),
        cgroup,
        logs: Vec::new(),
        unknowns,
        kind,
    };
    if id.kind.is_php_fpm() {
        php_fpm_logs(&mut id, top, fpm_configs, upstream);
    } else {
        named_logs(&mut id, procs, top);
    }
    for proc_pid in [Some(pid), master.map(|m| m.pid)].into_iter().flatten() {
        open_log_files(&mut id, procs, proc_pid);
        if master.is_none_or(|m| m.pid == pid) {
            break;
        }
    }
    Some(id)
}

fn epoch_secs(t: SystemTime) -> Option<i64> {
    t.duration_since(UNIX_EPOCH)
        .ok()
        .map(|d| d.as_secs() as i64)
}

/// The php-fpm master above a pool, or the outermost gunicorn/uwsgi process of a chain.
fn find_master<'a>(
    procs: &'a ProcessTable,
    p: &'a ProcessInfo,
    kind: &BackendKind,
) -> Option<&'a ProcessInfo> {
    match kind {
        BackendKind::PhpFpmMaster | BackendKind::Gunicorn | BackendKind::Uwsgi => {}
        BackendKind::PhpFpmPool { .. } => {}
        _ => return None,
    }
    let mut top = p;
    for _ in 0..MAX_ANCESTORS {
        if top.ppid == 0 || top.ppid == top.pid {
            break;
        }
        match procs.get(top.ppid) {
            Some(parent) if kind_of(parent).same_family(kind) => top = parent,
            _ => break,
        }
        if kind_of(top) == BackendKind::PhpFpmMaster {
            break;
        }
    }
    Some(top)
}

fn push_log(id: &mut BackendIdentity, path: PathBuf, role: LogRole, via: String) {
    if !id.logs.iter().any(|l| l.path == path) {
        id.logs.push(BackendLogFile { path, role, via });
    }
}

fn php_fpm_logs(
    id: &mut BackendIdentity,
    master: &ProcessInfo,
    fpm_configs: &[PhpFpmConfig],
    upstream: Option<&BackendAddr>,
) {
    let Some((conf_path, prefix)) = master_config(master) else {
        id.unknowns.push(format!(
            "php-fpm master {} does not show its config in its title or argv",
            master.pid
        ));
        return;
    };
    id.fpm_config = Some(conf_path.clone());
    let loaded;
    let config = match fpm_configs.iter().find(|c| c.main_file == conf_path) {
        Some(c) => c,
        None => {
            let r = match &prefix {
                Some(p) => PhpFpmConfig::load_with_prefix(&conf_path, p),
                None => PhpFpmConfig::load(&conf_path),
            };
            match r {
                Ok(c) => {
                    loaded = c;
                    &loaded
                }
                Err(e) => {
                    id.unknowns.push(e.to_string());
                    return;
                }
            }
        }
    };
    if id.fpm_pool.is_none() {
        id.fpm_pool = upstream
            .and_then(|u| config.pools_serving(u).next())
            .map(|p| p.name.clone());
    }
    let main = config.main_file.display().to_string();
    match &config.global.error_log {
        FpmLogTarget::File(path) => push_log(
            id,
            path.clone(),
            LogRole::FpmErrorLog,
            format!("error_log in {main}"),
        ),
        FpmLogTarget::Syslog => id.unknowns.push(format!(
            "php-fpm logs to syslog (error_log = syslog in {main}): its log is in the journal or /var/log/syslog"
        )),
    }
    let pools: Vec<_> = config
        .pools
        .iter()
        .filter(|p| id.fpm_pool.as_ref().is_none_or(|name| *name == p.name))
        .collect();
    for pool in pools {
        if let Some(s) = &pool.slowlog {
            push_log(
                id,
                s.clone(),
                LogRole::FpmSlowlog,
                format!("slowlog of pool [{}] in {}", pool.name, pool.file.display()),
            );
        }
        if let Some(e) = pool.php_error_log() {
            push_log(
                id,
                e,
                LogRole::PhpErrorLog,
                format!(
                    "php_admin_value[error_log] of pool [{}] in {}",
                    pool.name,
                    pool.file.display()
                ),
            );
        }
    }
}

/// gunicorn/uwsgi: logs named on the command line or in the config file it names.
fn named_logs(id: &mut BackendIdentity, procs: &ProcessTable, top: &ProcessInfo) {
    let cwd = procs.cwd(top.pid);
    for l in log_files(&top.cmdline, cwd.as_deref()) {
        push_log(id, l.path, LogRole::AppLog, l.via);
    }
    if let Some(conf) = config_file(&top.cmdline, cwd.as_deref()) {
        match read_to_string_bounded(&conf, MAX_CONFIG) {
            Ok(text) => {
                for l in config_log_files(&text, cwd.as_deref()) {
                    push_log(
                        id,
                        l.path,
                        LogRole::AppLog,
                        format!("{} in {}", l.via, conf.display()),
                    );
                }
            }
            Err(e) => id
                .unknowns
                .push(format!("config named on the command line: {e}")),
        }
    }
}

/// `*.log` files among the process's open fds: the fallback that finds what configs hide.
fn open_log_files(id: &mut BackendIdentity, procs: &ProcessTable, pid: u32) {
    let dir = procs.root().join(pid.to_string()).join("fd");
    let entries = match procs.fd_targets(pid) {
        Ok(e) => e,
        Err(kind) => {
            let why = if kind == std::io::ErrorKind::PermissionDenied {
                "permission denied (run as root, or as the backend's user, to see its open log files)".to_string()
            } else {
                std::io::Error::from(kind).to_string()
            };
            id.unknowns
                .push(format!("open files of {pid} ({}): {why}", dir.display()));
            return;
        }
    };
    for target in entries.iter().take(MAX_FDS) {
        let s = target.to_string_lossy();
        let s = s.strip_suffix(" (deleted)").unwrap_or(&s);
        if s.starts_with('/') && s.ends_with(".log") {
            push_log(
                id,
                PathBuf::from(s),
                LogRole::OpenFile,
                format!("open by pid {pid}"),
            );
        }
    }
}

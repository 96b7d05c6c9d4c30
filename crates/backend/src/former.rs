//! For a backend that is down: what is configured to serve the upstream's address. php-fpm
//! pools whose `listen` matches, systemd units whose `ListenStream=`, `ExecStart=` or
//! `Environment=PORT=` names it, and running processes whose command line names it (they run,
//! but do not listen there).

use std::path::{Path, PathBuf};

use serde::Serialize;
use why502_host::ProcessTable;

use crate::address::BackendAddr;
use crate::cmdline::{listen_addresses, log_files, split_exec};
use crate::identity::{kind_of, kind_of_args, BackendKind, BackendLogFile, LogRole};
use crate::phpfpm::{master_config, FpmLogTarget, FpmPool, PhpFpmConfig};
use crate::units::UnitFile;

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "source")]
pub enum FormerSource {
    PhpFpmPool {
        config: PathBuf,
        pool: String,
        file: PathBuf,
        line: usize,
    },
    SystemdUnit {
        file: PathBuf,
        line: usize,
        directive: String,
    },
    Process {
        pid: u32,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FormerBackend {
    pub kind: BackendKind,
    pub source: FormerSource,
    /// One sentence naming the config line and the address.
    pub detail: String,
    /// The systemd unit that runs it, when one is known.
    pub unit: Option<String>,
    /// Its logs, from the config (the engine reads their window for why it stopped).
    pub logs: Vec<BackendLogFile>,
    /// Whether a process of it runs now (a php-fpm master with that config; the process
    /// itself); `None` when it cannot be told.
    pub running: Option<bool>,
}

/// Every candidate that is configured to serve `upstream`.
pub fn former_backends(
    upstream: &BackendAddr,
    fpm_configs: &[PhpFpmConfig],
    units: &[UnitFile],
    procs: &ProcessTable,
) -> Vec<FormerBackend> {
    former_backends_with(
        upstream,
        fpm_configs,
        units,
        procs,
        &ListenClaims::of(procs, units),
    )
}

/// The addresses each process's command line and each unit file tell it to listen on
/// (`--bind`, `-b`, `--socket`, `ListenStream=`...), parsed once per run: asking about hundreds of upstreams must not parse
/// every command line once per upstream.
#[derive(Debug, Default)]
pub struct ListenClaims {
    by_process: Vec<(u32, Vec<BackendAddr>)>,
    /// Per unit of the `units` given to `of`, in that order.
    by_unit: Vec<Vec<(crate::units::UnitDirective, BackendAddr)>>,
}

impl ListenClaims {
    /// Parse every command line of `procs` and every unit of `units` (the same `units` must
    /// be given to `former_backends_with`).
    pub fn of(procs: &ProcessTable, units: &[UnitFile]) -> ListenClaims {
        ListenClaims {
            by_unit: units.iter().map(unit_addresses).collect(),
            by_process: procs
                .iter()
                .filter_map(|p| {
                    let addrs = listen_addresses(&p.cmdline);
                    (!addrs.is_empty()).then_some((p.pid, addrs))
                })
                .collect(),
        }
    }
}

/// `former_backends` with the command lines already parsed (`ListenClaims::of`).
pub fn former_backends_with(
    upstream: &BackendAddr,
    fpm_configs: &[PhpFpmConfig],
    units: &[UnitFile],
    procs: &ProcessTable,
    claims: &ListenClaims,
) -> Vec<FormerBackend> {
    let mut out = Vec::new();
    for config in fpm_configs {
        for pool in config.pools_serving(upstream) {
            out.push(pool_candidate(config, pool, units, procs));
        }
    }
    for (unit, addresses) in units.iter().zip(&claims.by_unit) {
        out.extend(unit_candidate(upstream, unit, addresses, units));
    }
    for (pid, addrs) in &claims.by_process {
        let Some(p) = procs.get(*pid) else {
            continue;
        };
        if let Some(a) = addrs.iter().find(|a| a.serves(upstream)) {
            let cwd = procs.cwd(p.pid);
            out.push(FormerBackend {
                kind: kind_of(p),
                source: FormerSource::Process { pid: p.pid },
                detail: format!(
                    "pid {} (`{}`) is told to listen on {a}",
                    p.pid,
                    p.cmdline_joined()
                ),
                unit: None,
                logs: app_logs(&p.cmdline, cwd.as_deref()),
                running: Some(true),
            });
        }
    }
    out
}

fn pool_candidate(
    config: &PhpFpmConfig,
    pool: &FpmPool,
    units: &[UnitFile],
    procs: &ProcessTable,
) -> FormerBackend {
    let mut logs = Vec::new();
    let main = config.main_file.display().to_string();
    if let FpmLogTarget::File(p) = &config.global.error_log {
        logs.push(BackendLogFile {
            path: p.clone(),
            role: LogRole::FpmErrorLog,
            via: format!("error_log in {main}"),
        });
    }
    if let Some(s) = &pool.slowlog {
        logs.push(BackendLogFile {
            path: s.clone(),
            role: LogRole::FpmSlowlog,
            via: format!("slowlog of pool [{}]", pool.name),
        });
    }
    if let Some(e) = pool.php_error_log() {
        logs.push(BackendLogFile {
            path: e,
            role: LogRole::PhpErrorLog,
            via: format!("php_admin_value[error_log] of pool [{}]", pool.name),
        });
    }
    let running = procs
        .iter()
        .any(|p| master_config(p).is_some_and(|(c, _)| c == config.main_file));
    let line = pool
        .settings
        .iter()
        .rev()
        .find(|s| s.key == "listen")
        .map(|s| (s.file.clone(), s.line))
        .unwrap_or((pool.file.clone(), pool.line));
    FormerBackend {
        kind: BackendKind::PhpFpmPool {
            pool: pool.name.clone(),
        },
        detail: format!(
            "php-fpm pool [{}] in {}:{} listens on {}",
            pool.name,
            line.0.display(),
            line.1,
            pool.listen_raw.as_deref().unwrap_or("?")
        ),
        source: FormerSource::PhpFpmPool {
            config: config.main_file.clone(),
            pool: pool.name.clone(),
            file: line.0,
            line: line.1,
        },
        unit: fpm_unit(&config.main_file, units),
        logs,
        running: Some(running),
    }
}

/// The service that runs php-fpm with this config: its `ExecStart=` names the config, or the
/// versioned binary of `/etc/php/VERSION/fpm/` (Debian: `php-fpm8.2` in `php8.2-fpm.service`).
fn fpm_unit(main: &Path, units: &[UnitFile]) -> Option<String> {
    let main_s = main.to_string_lossy();
    let version = main_s
        .split("/php/")
        .nth(1)
        .and_then(|r| r.split('/').next())
        .filter(|v| !v.is_empty() && v.chars().all(|c| c.is_ascii_digit() || c == '.'))
        .map(|v| format!("php-fpm{v}"));
    let exec_matches = |u: &UnitFile, pred: &dyn Fn(&str) -> bool| {
        u.name.ends_with(".service") && u.values("ExecStart").any(|d| pred(&d.value))
    };
    units
        .iter()
        .find(|u| exec_matches(u, &|v| v.contains(main_s.as_ref())))
        .or_else(|| {
            let bin = version.as_ref()?;
            units.iter().find(|u| {
                exec_matches(u, &|v| {
                    split_exec(v).first().is_some_and(|p| {
                        Path::new(p).file_name().is_some_and(|f| f == bin.as_str())
                    })
                })
            })
        })
        .map(|u| u.name.clone())
}

/// The addresses a unit tells its service to listen on, in the order `unit_candidate` takes
/// them: a socket unit's `ListenStream=`; a service's `ExecStart=` flags, then
/// `Environment=`, then Debian's php-fpm socket helper in `ExecStartPost=`.
fn unit_addresses(unit: &UnitFile) -> Vec<(crate::units::UnitDirective, BackendAddr)> {
    let mut out = Vec::new();
    if unit.name.ends_with(".socket") {
        for d in unit.values("ListenStream") {
            if let Some(a) = BackendAddr::parse_bind(&d.value, None) {
                out.push((d.clone(), a));
            }
        }
        return out;
    }
    for d in unit.values("ExecStart") {
        for a in listen_addresses(&split_exec(&d.value)) {
            out.push((d.clone(), a));
        }
    }
    for d in unit.values("Environment") {
        if let Some(a) = env_address(&d.value) {
            out.push((d.clone(), a));
        }
    }
    // Debian's php-fpm units install the version-less /run/php/php-fpm.sock as a link to the
    // default pool's socket.
    for d in unit.values("ExecStartPost") {
        let args = split_exec(&d.value);
        let helper = args
            .first()
            .is_some_and(|a| a.ends_with("php-fpm-socket-helper"));
        if helper && args.get(1).is_some_and(|a| a == "install") {
            if let Some(a) = args.get(2).and_then(|a| BackendAddr::parse_bind(a, None)) {
                out.push((d.clone(), a));
            }
        }
    }
    out
}

fn unit_candidate(
    upstream: &BackendAddr,
    unit: &UnitFile,
    addresses: &[(crate::units::UnitDirective, BackendAddr)],
    units: &[UnitFile],
) -> Option<FormerBackend> {
    let (directive, addr) = addresses.iter().find(|(_, a)| a.serves(upstream))?;
    let detail = format!(
        "{}:{} `{}={}` names {addr}",
        unit.path.display(),
        directive.line,
        directive.key,
        directive.value
    );
    let service = if unit.name.ends_with(".socket") {
        unit.activated_service()
    } else {
        Some(unit.name.clone())
    };
    // The program comes from the service's ExecStart (for a socket unit, the activated one).
    let service_unit = service
        .as_ref()
        .and_then(|s| units.iter().find(|u| &u.name == s))
        .unwrap_or(unit);
    let exec = service_unit
        .values("ExecStart")
        .next()
        .map(|d| split_exec(&d.value))
        .unwrap_or_default();
    let cwd = service_unit
        .values("WorkingDirectory")
        .last()
        .map(|d| PathBuf::from(d.value.trim_start_matches('-')));
    Some(FormerBackend {
        kind: kind_of_args(&exec, ""),
        source: FormerSource::SystemdUnit {
            file: unit.path.clone(),
            line: directive.line,
            directive: format!("{}={}", directive.key, directive.value),
        },
        detail,
        unit: service,
        logs: app_logs(&exec, cwd.as_deref()),
        running: None,
    })
}

/// `Environment=PORT=8000 HOST=127.0.0.1` / `Environment="BIND=unix:/run/x.sock"`.
fn env_address(value: &str) -> Option<BackendAddr> {
    let vars = split_exec(value);
    let get = |k: &str| {
        vars.iter()
            .find_map(|v| v.strip_prefix(k).and_then(|r| r.strip_prefix('=')))
    };
    if let Some(b) = get("BIND")
        .or_else(|| get("SOCKET"))
        .or_else(|| get("LISTEN"))
    {
        return BackendAddr::parse_bind(b, None);
    }
    let port: u16 = get("PORT")?.parse().ok()?;
    let host =
        get("HOST").and_then(
            |h| match BackendAddr::parse_bind(&format!("{h}:{port}"), None) {
                Some(BackendAddr::Tcp { host, .. }) => host,
                _ => None,
            },
        );
    Some(BackendAddr::Tcp { host, port })
}

fn app_logs(args: &[String], cwd: Option<&Path>) -> Vec<BackendLogFile> {
    log_files(args, cwd)
        .into_iter()
        .map(|l| BackendLogFile {
            path: l.path,
            role: LogRole::AppLog,
            via: l.via,
        })
        .collect()
}

//! SELinux as the kernel exposes it: selinuxfs (`enforce`: `1`/`0`; `booleans/NAME`: `CUR
//! PENDING`, e.g. `0 0`) and nginx's domain from `/proc/PID/attr/current`
//! (`system_u:system_r:httpd_t:s0`). The AVC denials come from the logs (`LsmLogs`).

use std::path::Path;

use serde::Serialize;
use why502_host::{read_to_string_bounded, ReadError};

use crate::audit_text::context_type;
use crate::avc::AvcDenial;
use crate::paths::SecurityPaths;
use crate::target::{Destination, NginxSubject};

/// The booleans that decide whether httpd_t (nginx's domain) may connect out.
pub const HTTPD_BOOLEANS: &[&str] = &[
    "httpd_can_network_connect",
    "httpd_can_network_relay",
    "httpd_can_network_connect_db",
];

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SelinuxMode {
    Enforcing,
    Permissive,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "state")]
pub enum SelinuxStatus {
    /// No selinuxfs `enforce` file: SELinux is not enabled (or selinuxfs not mounted).
    NotEnabled {
        reason: String,
    },
    Enabled {
        mode: SelinuxMode,
    },
    Unknown {
        reason: String,
        fix: String,
    },
}

/// A boolean's value: `CUR PENDING` from selinuxfs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "state")]
pub enum BooleanValue {
    Set {
        current: bool,
        pending: bool,
    },
    /// Not in the loaded policy.
    Missing,
    Unreadable {
        reason: String,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SelinuxBoolean {
    pub name: String,
    /// `<selinuxfs>/booleans/NAME`, for evidence.
    pub source: String,
    pub value: BooleanValue,
}

/// One nginx process's security context.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ProcessContext {
    pub pid: u32,
    pub source: String,
    /// The context (`system_u:system_r:httpd_t:s0`) or why it could not be read.
    pub context: Result<String, String>,
}

impl ProcessContext {
    pub fn domain(&self) -> Option<&str> {
        self.context.as_deref().ok().and_then(context_type)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SelinuxState {
    pub status: SelinuxStatus,
    /// `enforce`'s path and content, for evidence.
    pub enforce_source: String,
    pub booleans: Vec<SelinuxBoolean>,
    pub nginx_contexts: Vec<ProcessContext>,
    /// AVC denials of the window (every domain; `denials_for` picks nginx's). Filled from the
    /// logs by `SecuritySnapshot::gather`; empty after `read` alone.
    pub denials: Vec<AvcDenial>,
}

impl SelinuxState {
    /// Read the mode, the httpd booleans and nginx's domains. Nothing here needs root except,
    /// under some policies, another process's context.
    pub fn read(paths: &SecurityPaths, nginx_pids: &[u32]) -> SelinuxState {
        let enforce = paths.selinuxfs.join("enforce");
        let enforce_source = enforce.display().to_string();
        let status = match read_small(&enforce) {
            Ok(s) => match s.trim() {
                "1" => SelinuxStatus::Enabled {
                    mode: SelinuxMode::Enforcing,
                },
                "0" => SelinuxStatus::Enabled {
                    mode: SelinuxMode::Permissive,
                },
                other => SelinuxStatus::Unknown {
                    reason: format!("{enforce_source} holds {other:?}, not 1 or 0"),
                    fix: "check with `getenforce`".to_string(),
                },
            },
            Err(e) if e.is_not_found() => SelinuxStatus::NotEnabled {
                reason: format!("no {enforce_source}: selinuxfs is not mounted"),
            },
            Err(e) => SelinuxStatus::Unknown {
                reason: e.to_string(),
                fix: "run why502 as root, or check with `getenforce`".to_string(),
            },
        };
        let enabled = matches!(status, SelinuxStatus::Enabled { .. });
        let booleans = if enabled {
            HTTPD_BOOLEANS
                .iter()
                .map(|name| read_boolean(&paths.selinuxfs, name))
                .collect()
        } else {
            Vec::new()
        };
        let nginx_contexts = if enabled {
            nginx_pids
                .iter()
                .map(|pid| {
                    let p = paths.proc_root.join(pid.to_string()).join("attr/current");
                    ProcessContext {
                        pid: *pid,
                        source: p.display().to_string(),
                        context: read_small(&p)
                            .map(|s| s.trim_end_matches(['\0', '\n']).to_string())
                            .map_err(|e| e.to_string()),
                    }
                })
                .collect()
        } else {
            Vec::new()
        };
        SelinuxState {
            status,
            enforce_source,
            booleans,
            nginx_contexts,
            denials: Vec::new(),
        }
    }

    pub fn mode(&self) -> Option<SelinuxMode> {
        match self.status {
            SelinuxStatus::Enabled { mode } => Some(mode),
            _ => None,
        }
    }

    pub fn boolean(&self, name: &str) -> Option<&SelinuxBoolean> {
        self.booleans.iter().find(|b| b.name == name)
    }

    /// nginx's domains as read from /proc (usually just `httpd_t`).
    pub fn nginx_domains(&self) -> Vec<&str> {
        let mut d: Vec<&str> = self
            .nginx_contexts
            .iter()
            .filter_map(ProcessContext::domain)
            .collect();
        d.sort_unstable();
        d.dedup();
        d
    }

    /// The window's denials of nginx that name `dest`: its comm or one of its pids (its
    /// domain, httpd_t or what /proc says, only for records that name no process); the socket's path (connectto), file name (write on
    /// the sock_file), a directory on the way (search), or the port (name_connect).
    pub fn denials_for(&self, subject: &NginxSubject, dest: &Destination) -> Vec<&AvcDenial> {
        let domains = self.nginx_domains();
        self.denials
            .iter()
            .filter(|d| {
                // php-fpm runs as httpd_t too on RHEL: the domain stands for nginx only when
                // the record names no process.
                let is_nginx = if d.pid.is_some() || d.comm.is_some() {
                    subject.is(d.pid, d.comm.as_deref())
                } else {
                    d.source_type()
                        .is_some_and(|t| t == "httpd_t" || domains.contains(&t))
                };
                is_nginx && names_destination(d, dest)
            })
            .collect()
    }
}

fn names_destination(d: &AvcDenial, dest: &Destination) -> bool {
    let tclass = d.tclass.as_deref().unwrap_or("");
    match dest {
        Destination::Tcp { port, .. } => tclass == "tcp_socket" && d.dest == Some(*port),
        Destination::Unix(path) => {
            if d.path.as_deref().map(Path::new) == Some(path.as_path()) {
                return true;
            }
            let Some(name) = d.name.as_deref() else {
                return false;
            };
            match tclass {
                "sock_file" => path.file_name().is_some_and(|f| f == name),
                // Search on a directory the socket sits under: `name` is that directory's
                // last component.
                "dir" => {
                    d.has_perm("search")
                        && path
                            .parent()
                            .into_iter()
                            .flat_map(Path::components)
                            .any(|c| c.as_os_str() == name)
                }
                _ => false,
            }
        }
    }
}

fn read_boolean(selinuxfs: &Path, name: &str) -> SelinuxBoolean {
    let p = selinuxfs.join("booleans").join(name);
    let value = match read_small(&p) {
        Ok(s) => {
            let mut it = s.split_whitespace().map(|v| v == "1");
            match (it.next(), it.next()) {
                (Some(current), pending) => BooleanValue::Set {
                    current,
                    pending: pending.unwrap_or(current),
                },
                _ => BooleanValue::Unreadable {
                    reason: format!("{} is empty", p.display()),
                },
            }
        }
        Err(e) if e.is_not_found() => BooleanValue::Missing,
        Err(e) => BooleanValue::Unreadable {
            reason: e.to_string(),
        },
    };
    SelinuxBoolean {
        name: name.to_string(),
        source: p.display().to_string(),
        value,
    }
}

fn read_small(p: &Path) -> Result<String, ReadError> {
    read_to_string_bounded(p, 4096)
}

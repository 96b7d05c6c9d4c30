//! AppArmor as the kernel exposes it: securityfs (`apparmor/profiles`, lines `nginx (enforce)`,
//! root only) and each process's confinement in `/proc/PID/attr/apparmor/current` (kernels with
//! LSM stacking) or `/proc/PID/attr/current`: `unconfined` or `LABEL (MODE)`. The DENIED /
//! ALLOWED records come from the logs (`LsmLogs`).

use std::net::IpAddr;
use std::path::Path;

use serde::Serialize;
use why502_host::{read_to_string_bounded, ReadError};

use crate::apparmor_log::AppArmorEvent;
use crate::paths::SecurityPaths;
use crate::target::{Destination, NginxSubject};

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AppArmorMode {
    Enforce,
    Complain,
    /// Enforce, and kill the task on a denial.
    Kill,
    Unconfined,
    /// `mixed` (stacked labels), `prompt`, ... as the kernel writes it.
    Other(String),
}

impl AppArmorMode {
    fn parse(s: &str) -> AppArmorMode {
        match s {
            "enforce" => AppArmorMode::Enforce,
            "complain" => AppArmorMode::Complain,
            "kill" => AppArmorMode::Kill,
            "unconfined" => AppArmorMode::Unconfined,
            other => AppArmorMode::Other(other.to_string()),
        }
    }

    /// Whether a denial in this mode refuses the access.
    pub fn enforces(&self) -> bool {
        matches!(self, AppArmorMode::Enforce | AppArmorMode::Kill)
    }

    pub fn as_str(&self) -> &str {
        match self {
            AppArmorMode::Enforce => "enforce",
            AppArmorMode::Complain => "complain",
            AppArmorMode::Kill => "kill",
            AppArmorMode::Unconfined => "unconfined",
            AppArmorMode::Other(s) => s,
        }
    }
}

/// A label as the kernel prints it: `unconfined`, `nginx (enforce)`, `/usr/sbin/nginx
/// (complain)`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Label {
    pub profile: String,
    pub mode: AppArmorMode,
}

impl Label {
    pub fn parse(text: &str) -> Option<Label> {
        let t = text.trim_end_matches(['\0', '\n', ' ']);
        if t == "unconfined" {
            return Some(Label {
                profile: t.to_string(),
                mode: AppArmorMode::Unconfined,
            });
        }
        let (profile, mode) = t.rsplit_once(" (")?;
        let mode = mode.strip_suffix(')')?;
        (!profile.is_empty()).then(|| Label {
            profile: profile.to_string(),
            mode: AppArmorMode::parse(mode),
        })
    }

    pub fn is_unconfined(&self) -> bool {
        self.mode == AppArmorMode::Unconfined
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ProcessLabel {
    pub pid: u32,
    pub source: String,
    pub label: Result<Label, String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "state")]
pub enum AppArmorStatus {
    NotEnabled { reason: String },
    Enabled,
    Unknown { reason: String, fix: String },
}

/// How nginx is confined, from its processes or, failing that, the loaded profiles.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "state")]
pub enum NginxConfinement {
    Unconfined { source: String },
    Confined { label: Label, source: String },
    Unknown { reason: String, fix: String },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AppArmorState {
    pub status: AppArmorStatus,
    pub profiles_source: String,
    /// The loaded profiles, or why they could not be read.
    pub profiles: Result<Vec<Label>, String>,
    pub nginx: Vec<ProcessLabel>,
    /// AppArmor records of the window (every profile; `events_for` picks nginx's). Filled from
    /// the logs by `SecuritySnapshot::gather`; empty after `read` alone.
    pub events: Vec<AppArmorEvent>,
}

impl AppArmorState {
    pub fn read(paths: &SecurityPaths, nginx_pids: &[u32]) -> AppArmorState {
        let profiles_path = paths.securityfs.join("apparmor/profiles");
        let profiles_source = profiles_path.display().to_string();
        let status = detect(paths);
        if status != AppArmorStatus::Enabled {
            return AppArmorState {
                status,
                profiles_source,
                profiles: Err("AppArmor is not enabled".to_string()),
                nginx: Vec::new(),
                events: Vec::new(),
            };
        }
        let profiles = match read_to_string_bounded(&profiles_path, 4 * 1024 * 1024) {
            Ok(text) => Ok(text.lines().filter_map(Label::parse).collect()),
            Err(e) if e.is_permission_denied() => Err(format!("{e} (needs root)")),
            Err(e) => Err(e.to_string()),
        };
        let nginx = nginx_pids
            .iter()
            .map(|pid| read_process_label(&paths.proc_root, *pid))
            .collect();
        AppArmorState {
            status,
            profiles_source,
            profiles,
            nginx,
            events: Vec::new(),
        }
    }

    pub fn confinement(&self) -> NginxConfinement {
        let read: Vec<(&ProcessLabel, &Label)> = self
            .nginx
            .iter()
            .filter_map(|p| p.label.as_ref().ok().map(|l| (p, l)))
            .collect();
        // Workers inherit the master's profile; an enforcing one decides.
        let confined = read
            .iter()
            .find(|(_, l)| l.mode.enforces())
            .or_else(|| read.iter().find(|(_, l)| !l.is_unconfined()));
        if let Some((p, l)) = confined {
            return NginxConfinement::Confined {
                label: (*l).clone(),
                source: p.source.clone(),
            };
        }
        if let Some((p, _)) = read.first() {
            return NginxConfinement::Unconfined {
                source: p.source.clone(),
            };
        }
        // No process label could be read: a loaded profile named for nginx is the best guess.
        let proc_reason = if self.nginx.is_empty() {
            "no nginx process given".to_string()
        } else {
            self.nginx
                .iter()
                .filter_map(|p| p.label.as_ref().err())
                .cloned()
                .collect::<Vec<_>>()
                .join("; ")
        };
        match &self.profiles {
            Ok(list) => match list.iter().find(|l| is_nginx_profile(&l.profile)) {
                Some(l) => NginxConfinement::Confined {
                    label: l.clone(),
                    source: self.profiles_source.clone(),
                },
                None => NginxConfinement::Unconfined {
                    source: format!("{} (no profile for nginx loaded)", self.profiles_source),
                },
            },
            Err(e) => NginxConfinement::Unknown {
                reason: format!("nginx's confinement could not be read ({proc_reason}) nor the loaded profiles ({e})"),
                fix: "run why502 as root, or check with `aa-status`".to_string(),
            },
        }
    }

    /// The window's records for nginx (its profile, comm or pids) that name `dest`.
    pub fn events_for(&self, subject: &NginxSubject, dest: &Destination) -> Vec<&AppArmorEvent> {
        let labels: Vec<String> = match self.confinement() {
            NginxConfinement::Confined { label, .. } => vec![label.profile],
            _ => Vec::new(),
        };
        self.events
            .iter()
            .filter(|e| {
                let by_profile = e.profile.as_deref().is_some_and(|p| {
                    labels
                        .iter()
                        .any(|l| p == l || p.starts_with(&format!("{l}//")))
                });
                (by_profile || subject.is(e.pid, e.comm.as_deref())) && names_destination(e, dest)
            })
            .collect()
    }
}

fn is_nginx_profile(name: &str) -> bool {
    name == "nginx" || name.ends_with("/nginx")
}

/// Operations of a listening socket: a denial there is not nginx reaching its backend.
const SERVER_SIDE_OPS: &[&str] = &["bind", "listen", "accept"];

fn names_destination(e: &AppArmorEvent, dest: &Destination) -> bool {
    let class = e.class.as_deref();
    let family = e.family.as_deref();
    match dest {
        Destination::Unix(path) => {
            let is = |v: &Option<String>| {
                v.as_deref().is_some_and(|v| {
                    Path::new(v) == path
                        || path.strip_prefix("/").is_ok_and(|rel| Path::new(v) == rel)
                })
            };
            // File mediation names the path (disconnected paths lose the leading slash);
            // unix-socket mediation names the peer's address.
            (family.is_none() && is(&e.name))
                || (family == Some("unix") && (is(&e.peer_addr) || is(&e.addr) || is(&e.name)))
        }
        Destination::Tcp { ip, port } => {
            let want = match ip {
                IpAddr::V4(_) => "inet",
                IpAddr::V6(_) => "inet6",
            };
            if family != Some(want) || class.is_some_and(|c| c != "net") {
                return false;
            }
            if e.sock_type.as_deref().is_some_and(|t| t != "stream")
                || e.protocol.is_some_and(|p| p != 0 && p != 6)
                || e.operation
                    .as_deref()
                    .is_some_and(|o| SERVER_SIDE_OPS.contains(&o))
            {
                return false;
            }
            // Connected sockets name the peer; a connect denial usually does not, and then
            // the rule it lacks (`network inet stream`) covers every TCP backend alike.
            let port_ok = e.fport.is_none_or(|p| p == *port);
            let addr_ok = e
                .faddr
                .as_deref()
                .is_none_or(|a| a.parse::<IpAddr>().is_ok_and(|a| a == *ip));
            port_ok && addr_ok
        }
    }
}

fn read_process_label(proc_root: &Path, pid: u32) -> ProcessLabel {
    let dir = proc_root.join(pid.to_string()).join("attr");
    let stacked = dir.join("apparmor/current");
    let (path, result) = match read_to_string_bounded(&stacked, 4096) {
        Err(e) if e.is_not_found() => {
            let legacy = dir.join("current");
            let r = read_to_string_bounded(&legacy, 4096);
            (legacy, r)
        }
        r => (stacked, r),
    };
    let label = match result {
        Ok(text) => Label::parse(&text).ok_or_else(|| {
            format!(
                "{} holds {:?}, not an AppArmor label",
                path.display(),
                text.trim_end()
            )
        }),
        Err(e) => Err(e.to_string()),
    };
    ProcessLabel {
        pid,
        source: path.display().to_string(),
        label,
    }
}

/// AppArmor is on when securityfs has its directory. securityfs is not always mounted
/// (containers, build hosts), so the agent's own label is asked too: with no LSM that labels
/// processes, reading `/proc/self/attr/current` fails with EINVAL.
fn detect(paths: &SecurityPaths) -> AppArmorStatus {
    let dir = paths.securityfs.join("apparmor");
    if dir.is_dir() {
        return AppArmorStatus::Enabled;
    }
    let attr = paths.proc_root.join("self/attr");
    if let Ok(text) = read_to_string_bounded(&attr.join("apparmor/current"), 4096) {
        if Label::parse(&text).is_some() {
            return AppArmorStatus::Enabled;
        }
    }
    let securityfs_mounted = std::fs::read_dir(&paths.securityfs)
        .map(|mut d| d.next().is_some())
        .unwrap_or(false);
    if securityfs_mounted {
        return AppArmorStatus::NotEnabled {
            reason: format!("no {}", dir.display()),
        };
    }
    let current = attr.join("current");
    match read_to_string_bounded(&current, 4096) {
        Err(ReadError::Io { source, .. }) if source.raw_os_error() == Some(libc::EINVAL) => {
            AppArmorStatus::NotEnabled {
                reason: format!(
                    "no {} and no LSM labels processes ({}: Invalid argument)",
                    dir.display(),
                    current.display()
                ),
            }
        }
        Ok(text) if Label::parse(&text).is_some() => AppArmorStatus::Enabled,
        Ok(text) => AppArmorStatus::NotEnabled {
            reason: format!(
                "no {}; processes carry another LSM's label ({})",
                dir.display(),
                text.trim_end_matches(['\0', '\n'])
            ),
        },
        Err(e) => AppArmorStatus::Unknown {
            reason: format!(
                "securityfs is not mounted at {} and {e}",
                paths.securityfs.display()
            ),
            fix: "mount securityfs (mount -t securityfs securityfs /sys/kernel/security) or check with `aa-status`"
                .to_string(),
        },
    }
}

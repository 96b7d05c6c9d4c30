//! Where the security probes look. Every path is overridable so the engine can take them from
//! the agent's config (or a test from a fixture tree).

use std::path::PathBuf;

use serde::Serialize;

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SecurityPaths {
    /// selinuxfs: `enforce`, `booleans/NAME`.
    pub selinuxfs: PathBuf,
    /// securityfs: `apparmor/profiles`.
    pub securityfs: PathBuf,
    /// procfs: `PID/attr/apparmor/current`, `PID/attr/current`.
    pub proc_root: PathBuf,
    /// auditd's log; `None`: do not read it.
    pub audit_log: Option<PathBuf>,
    /// The kernel's syslog facility file; `None` when the engine passes the kernel log itself.
    pub kern_log: Option<PathBuf>,
    /// The general syslog file; `None`: do not read it.
    pub syslog: Option<PathBuf>,
}

impl Default for SecurityPaths {
    fn default() -> Self {
        SecurityPaths {
            selinuxfs: PathBuf::from("/sys/fs/selinux"),
            securityfs: PathBuf::from("/sys/kernel/security"),
            proc_root: PathBuf::from("/proc"),
            audit_log: Some(PathBuf::from("/var/log/audit/audit.log")),
            kern_log: Some(PathBuf::from("/var/log/kern.log")),
            syslog: Some(PathBuf::from("/var/log/syslog")),
        }
    }
}

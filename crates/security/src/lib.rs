//! The security step's probes: SELinux and AppArmor. Whether a Linux security module refuses
//! nginx the socket or port of an upstream — the mode (selinuxfs, securityfs, /proc attr), the
//! httpd booleans, and the denials of the time window from audit.log, kern.log, syslog and the
//! kernel-log lines the engine read — judged per upstream destination.
//!
//! Read-only: every file through `why502_host`'s bounded readers; nothing here runs a
//! command. A source that matters and could not be read makes the judgement `Unknown`.

mod apparmor;
mod apparmor_log;
mod audit_text;
mod avc;
mod judge;
mod logs;
mod paths;
mod selinux;
mod snapshot;
mod syslog_time;
mod target;

pub use apparmor::{
    AppArmorMode, AppArmorState, AppArmorStatus, Label, NginxConfinement, ProcessLabel,
};
pub use apparmor_log::{parse_apparmor, AppArmorAction, AppArmorEvent};
pub use audit_text::AuditStamp;
pub use avc::{parse_avc, AvcDenial};
pub use judge::{judge_apparmor, judge_selinux, SecurityCause, SecurityJudgement};
pub use logs::{
    default_limits, Coverage, LogSource, LogSources, LsmLogs, SourceStatus, KERNEL_LOG,
};
pub use paths::SecurityPaths;
pub use selinux::{
    BooleanValue, ProcessContext, SelinuxBoolean, SelinuxMode, SelinuxState, SelinuxStatus,
    HTTPD_BOOLEANS,
};
pub use snapshot::SecuritySnapshot;
pub use target::{Destination, NginxSubject};

//! The backend behind an upstream: who it is (process, kind, master, start time, cgroup and
//! unit, log files), what used to serve the address when it is down (php-fpm pools, systemd
//! units, command lines), what its own log and journal say in the window, and what php-fpm's
//! status page says about capacity.
//!
//! Read-only and bounded like every probe: files through `why502_host`'s bounded readers, logs
//! through its backward tail reader, `journalctl` through `why502_host::run`. What cannot be
//! read is reported (`unknowns`, `JournalRead::Unknown`), never taken as "nothing found".

pub mod address;
pub mod cgroup;
pub mod cmdline;
pub mod former;
pub mod identity;
pub mod journal;
pub mod logs;
pub mod phpfpm;
pub mod units;

pub use address::BackendAddr;
pub use cgroup::{parse_proc_cgroup, CgroupInfo};
pub use former::{
    former_backends, former_backends_with, FormerBackend, FormerSource, ListenClaims,
};
pub use identity::{
    identify_backend, kind_of, BackendIdentity, BackendKind, BackendLogFile, LogRole,
};
pub use journal::{
    classify_unit_message, journal_for_unit, parse_journal_json, JournalEntry, JournalRead,
    UnitEvent, UnitEventAt,
};
pub use logs::{
    classify_backend_line, fix_text, read_backend_log, summarize, BackendLogClass, BackendLogEvent,
    BackendLogWindow, ClassSummary, FixContext, Lifecycle, LifecycleEvent,
};
pub use phpfpm::{
    find_php_fpm_configs, judge_fpm_status, parse_fpm_status, parse_fpm_status_json,
    parse_fpm_status_text, FpmLogTarget, FpmPool, FpmStatus, PhpFpmConfig, StatusJudgement,
    StatusLevel,
};
pub use units::{read_units, UnitFile, DEFAULT_UNIT_DIRS};

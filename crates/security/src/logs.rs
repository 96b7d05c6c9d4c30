//! The LSM records of the time window, read once from every log that may hold them: auditd's
//! log, kern.log, syslog, and the kernel-log lines the engine already read. One pass per file
//! keeps both SELinux AVCs and AppArmor records; an event seen in several logs (rsyslog writes
//! kernel messages to kern.log and syslog alike) is kept once, by its audit stamp.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use serde::Serialize;
use why502_host::{read_tail, LineTake, ReadError, TailLimits};

use crate::apparmor_log::{parse_apparmor, AppArmorEvent};
use crate::audit_text::find_stamp;
use crate::avc::{parse_avc, AvcDenial};
use crate::paths::SecurityPaths;
use crate::syslog_time::SyslogClock;

/// What became of one log source.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "status")]
pub enum SourceStatus {
    Read {
        /// The byte cap stopped the read before the window's start.
        truncated: bool,
        /// Rotated files the window reached back into.
        rotated: Vec<PathBuf>,
    },
    /// The file does not exist (no auditd, no rsyslog): nothing is lost by not reading it.
    Missing,
    Unreadable {
        reason: String,
    },
    /// Not configured (or, for the kernel log, not passed in by the caller).
    NotRead,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LogSource {
    /// The file's path, or `kernel log`.
    pub name: String,
    pub status: SourceStatus,
}

impl LogSource {
    pub fn was_read(&self) -> bool {
        matches!(self.status, SourceStatus::Read { .. })
    }
}

/// The source name of records that came in through the caller's kernel-log lines.
pub const KERNEL_LOG: &str = "kernel log";

/// Whether the logs that would hold an LSM's denials could be read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "coverage")]
pub enum Coverage {
    Read {
        sources: Vec<String>,
        /// Sources whose read stopped at the byte cap before the window's start.
        truncated: Vec<String>,
    },
    Unreadable {
        reason: String,
        fix: String,
    },
}

/// What became of each log the window was read from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LogSources {
    pub audit_log: LogSource,
    pub kern_log: LogSource,
    pub syslog: LogSource,
    pub kernel_lines: LogSource,
}

/// The LSM records of the window, oldest first.
#[derive(Debug, Clone, Serialize)]
pub struct LsmLogs {
    pub since: SystemTime,
    pub sources: LogSources,
    pub avc: Vec<AvcDenial>,
    pub apparmor: Vec<AppArmorEvent>,
}

enum Record {
    Avc(AvcDenial),
    AppArmor(AppArmorEvent),
}

/// Bounds for the security logs: only LSM records are kept, so few items; the byte cap bounds
/// the walk back through a busy syslog.
pub fn default_limits() -> TailLimits {
    TailLimits {
        max_bytes: 64 * 1024 * 1024,
        max_line: 8 * 1024,
        max_items: 10_000,
        follow_rotated: true,
        continuation: None,
    }
}

impl LsmLogs {
    /// Read the window `since..` of every configured log. `kernel_lines` are the kernel log's
    /// lines the caller read (time, text); `None` says it could not read them.
    pub fn read(
        paths: &SecurityPaths,
        since: SystemTime,
        kernel_lines: Option<&[(SystemTime, String)]>,
        limits: TailLimits,
    ) -> LsmLogs {
        let mut seen = HashSet::new();
        let mut avc = Vec::new();
        let mut apparmor = Vec::new();
        let mut keep = |records: Vec<Record>| {
            for r in records {
                let key = match &r {
                    Record::Avc(d) => d.stamp.map(|s| (0u8, s)),
                    Record::AppArmor(e) => e.stamp.map(|s| (1u8, s)),
                };
                if key.is_some_and(|k| !seen.insert(k)) {
                    continue;
                }
                match r {
                    Record::Avc(d) => avc.push(d),
                    Record::AppArmor(e) => apparmor.push(e),
                }
            }
        };
        let mut read = |path: &Option<PathBuf>| match path {
            None => LogSource {
                name: "(not configured)".to_string(),
                status: SourceStatus::NotRead,
            },
            Some(p) => {
                let (source, records) = read_file(p, since, limits);
                keep(records);
                source
            }
        };
        let audit_log = read(&paths.audit_log);
        let kern_log = read(&paths.kern_log);
        let syslog = read(&paths.syslog);
        let kernel_source = match kernel_lines {
            None => LogSource {
                name: KERNEL_LOG.to_string(),
                status: SourceStatus::NotRead,
            },
            Some(lines) => {
                let mut records = Vec::new();
                for (time, text) in lines {
                    if let Some(r) = parse_record(text, Some(*time), KERNEL_LOG) {
                        if record_time(&r) >= since {
                            records.push(r);
                        }
                    }
                }
                keep(records);
                LogSource {
                    name: KERNEL_LOG.to_string(),
                    status: SourceStatus::Read {
                        truncated: false,
                        rotated: Vec::new(),
                    },
                }
            }
        };
        avc.sort_by_key(|d| d.time);
        apparmor.sort_by_key(|e| e.time);
        LsmLogs {
            since,
            sources: LogSources {
                audit_log,
                kern_log,
                syslog,
                kernel_lines: kernel_source,
            },
            avc,
            apparmor,
        }
    }
}

impl LogSources {
    /// Sources left unread on purpose (no LSM could deny nginx anything).
    pub fn not_needed(why: &str) -> LogSources {
        let s = |name: &str| LogSource {
            name: format!("{name} (not read: {why})"),
            status: SourceStatus::NotRead,
        };
        LogSources {
            audit_log: s("audit log"),
            kern_log: s("kern.log"),
            syslog: s("syslog"),
            kernel_lines: s(KERNEL_LOG),
        }
    }

    /// SELinux AVCs go to auditd when it runs and to the kernel log otherwise. A missing
    /// audit.log means no auditd, so the kernel log must have been read; an audit.log that
    /// exists but cannot be read hides them.
    pub fn selinux_coverage(&self) -> Coverage {
        self.coverage()
    }

    /// AppArmor records follow the same route as AVCs (auditd first, else the kernel log).
    pub fn apparmor_coverage(&self) -> Coverage {
        self.coverage()
    }

    fn coverage(&self) -> Coverage {
        let sources = [
            &self.audit_log,
            &self.kern_log,
            &self.syslog,
            &self.kernel_lines,
        ];
        let read: Vec<String> = sources
            .iter()
            .filter(|s| s.was_read())
            .map(|s| s.name.clone())
            .collect();
        let truncated: Vec<String> = sources
            .iter()
            .filter(|s| {
                matches!(
                    s.status,
                    SourceStatus::Read {
                        truncated: true,
                        ..
                    }
                )
            })
            .map(|s| s.name.clone())
            .collect();
        match &self.audit_log.status {
            SourceStatus::Read { .. } => Coverage::Read {
                sources: read,
                truncated,
            },
            SourceStatus::Unreadable { reason } => Coverage::Unreadable {
                reason: format!("the audit log holds the denials and cannot be read: {reason}"),
                fix: format!(
                    "run why502 as root, or read it yourself: ausearch -m AVC -ts recent ({})",
                    self.audit_log.name
                ),
            },
            SourceStatus::Missing | SourceStatus::NotRead if !read.is_empty() => Coverage::Read {
                sources: read,
                truncated,
            },
            _ => {
                let tried: Vec<String> = sources
                    .iter()
                    .map(|s| format!("{}: {}", s.name, describe_status(&s.status)))
                    .collect();
                Coverage::Unreadable {
                    reason: format!(
                        "no log that records LSM denials could be read ({})",
                        tried.join("; ")
                    ),
                    fix:
                        "point the agent's config at the audit log or kernel log (or run as root); \
                          `journalctl -k | grep -e 'avc:' -e 'apparmor='` shows them"
                            .to_string(),
                }
            }
        }
    }
}

fn describe_status(s: &SourceStatus) -> String {
    match s {
        SourceStatus::Read { .. } => "read".to_string(),
        SourceStatus::Missing => "missing".to_string(),
        SourceStatus::Unreadable { reason } => reason.clone(),
        SourceStatus::NotRead => "not read".to_string(),
    }
}

fn record_time(r: &Record) -> SystemTime {
    match r {
        Record::Avc(d) => d.time,
        Record::AppArmor(e) => e.time,
    }
}

fn parse_record(text: &str, fallback: Option<SystemTime>, source: &str) -> Option<Record> {
    if text.contains("apparmor=") {
        parse_apparmor(text, fallback, source).map(Record::AppArmor)
    } else if text.contains("avc:") {
        parse_avc(text, fallback, source).map(Record::Avc)
    } else {
        None
    }
}

fn read_file(path: &Path, since: SystemTime, limits: TailLimits) -> (LogSource, Vec<Record>) {
    let name = path.display().to_string();
    let mut clock = SyslogClock::new(SystemTime::now());
    let result = read_tail(path, limits, |raw| {
        let text = String::from_utf8_lossy(raw);
        // The audit stamp is the event's time; lines without one (everything else in
        // syslog) are dated by their prefix, so the walk back stops at the window's start.
        let time = find_stamp(&text)
            .map(|s| s.time())
            .or_else(|| clock.parse(&text));
        if time.is_some_and(|t| t < since) {
            return LineTake::Older;
        }
        match parse_record(&text, time, &name) {
            Some(r) => LineTake::Keep(r),
            None => LineTake::Skip,
        }
    });
    match result {
        Ok(read) => (
            LogSource {
                name,
                status: SourceStatus::Read {
                    truncated: read.truncated,
                    rotated: read.rotated,
                },
            },
            read.items,
        ),
        Err(e) => (
            LogSource {
                name,
                status: status_of(&e),
            },
            Vec::new(),
        ),
    }
}

fn status_of(e: &ReadError) -> SourceStatus {
    if e.is_not_found() {
        SourceStatus::Missing
    } else if e.is_permission_denied() {
        SourceStatus::Unreadable {
            reason: format!("{e} (needs root)"),
        }
    } else {
        SourceStatus::Unreadable {
            reason: e.to_string(),
        }
    }
}

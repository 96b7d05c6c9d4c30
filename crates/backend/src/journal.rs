//! A unit's journal in the window: `journalctl -u UNIT -o json`, its messages classified like
//! a backend log, plus systemd's own verdicts on the unit (main process killed, OOM kill,
//! start limit). No journal, no tool or no permission is `Unknown` with the reason.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Serialize;
use why502_host::{run, ExecError, LineTake};

use crate::logs::{BackendLogEvent, BackwardScan};

/// Entries asked of journalctl (newest); output capped to match.
const MAX_ENTRIES: usize = 2000;
const MAX_OUTPUT: usize = 8 * 1024 * 1024;

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct JournalEntry {
    /// Seconds since the epoch.
    pub time: i64,
    pub message: String,
    pub pid: Option<u32>,
    pub priority: Option<u8>,
    pub identifier: Option<String>,
}

/// systemd's own messages about a unit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "event")]
pub enum UnitEvent {
    /// `Main process exited, code=killed, status=9/KILL`.
    MainProcessExited {
        code: String,
        status: String,
    },
    /// `Failed with result 'oom-kill'` (or `exit-code`, `signal`, `timeout`, `core-dump`).
    Failed {
        result: String,
    },
    /// `A process of this unit has been killed by the OOM killer.`
    OomKill,
    /// `Start request repeated too quickly.`: systemd gave up restarting it.
    StartLimitHit,
    /// `Scheduled restart job, restart counter is at N.`
    Restarting {
        counter: Option<u32>,
    },
    Stopped,
    Started,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct UnitEventAt {
    pub time: i64,
    pub event: UnitEvent,
    pub message: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "state")]
pub enum JournalRead {
    Read {
        unit: String,
        /// Backend failures in the messages (tracebacks, gunicorn timeouts...), oldest first.
        events: Vec<BackendLogEvent>,
        /// systemd's messages about the unit, oldest first.
        unit_events: Vec<UnitEventAt>,
        entries: usize,
        /// Lines journalctl printed that were not JSON entries.
        bad_lines: usize,
    },
    Unknown {
        reason: String,
        fix: String,
    },
}

/// Parse `journalctl -o json` output: one object per line. Values are strings; a field that
/// is not valid UTF-8 is an array of byte values, and a repeated field an array of strings.
pub fn parse_journal_json(text: &str) -> (Vec<JournalEntry>, usize) {
    let mut entries = Vec::new();
    let mut bad = 0;
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let Ok(serde_json::Value::Object(obj)) = serde_json::from_str::<serde_json::Value>(line)
        else {
            bad += 1;
            continue;
        };
        let field = |k: &str| obj.get(k).and_then(field_text);
        let Some(time) = field("__REALTIME_TIMESTAMP")
            .and_then(|t| t.parse::<i64>().ok())
            .map(|us| us / 1_000_000)
        else {
            bad += 1;
            continue;
        };
        entries.push(JournalEntry {
            time,
            message: field("MESSAGE").unwrap_or_default(),
            pid: field("_PID").and_then(|p| p.parse().ok()),
            priority: field("PRIORITY").and_then(|p| p.parse().ok()),
            identifier: field("SYSLOG_IDENTIFIER"),
        });
    }
    (entries, bad)
}

fn field_text(v: &serde_json::Value) -> Option<String> {
    match v {
        serde_json::Value::String(s) => Some(s.clone()),
        serde_json::Value::Array(items) if items.iter().all(|i| i.is_u64()) => {
            let bytes: Vec<u8> = items
                .iter()
                .filter_map(|i| i.as_u64())
                .map(|b| b as u8)
                .collect();
            Some(String::from_utf8_lossy(&bytes).into_owned())
        }
        serde_json::Value::Array(items) => items.first().and_then(field_text),
        _ => None,
    }
}

/// Classify systemd's message about a unit.
pub fn classify_unit_message(m: &str) -> Option<UnitEvent> {
    if let Some(rest) = m.split_once("Main process exited, ").map(|(_, r)| r) {
        let get = |k: &str| {
            rest.split(", ")
                .find_map(|p| p.strip_prefix(k))
                .map(|v| v.trim_end_matches('.').to_string())
        };
        return Some(UnitEvent::MainProcessExited {
            code: get("code=").unwrap_or_default(),
            status: get("status=").unwrap_or_default(),
        });
    }
    if let Some(rest) = m.split_once("Failed with result '").map(|(_, r)| r) {
        return Some(UnitEvent::Failed {
            result: rest.split('\'').next().unwrap_or("").to_string(),
        });
    }
    if m.contains("killed by the OOM killer") {
        return Some(UnitEvent::OomKill);
    }
    if m.contains("Start request repeated too quickly") {
        return Some(UnitEvent::StartLimitHit);
    }
    if let Some(rest) = m.split_once("Scheduled restart job").map(|(_, r)| r) {
        let counter = rest
            .split_once("counter is at ")
            .and_then(|(_, n)| n.trim_end_matches('.').parse().ok());
        return Some(UnitEvent::Restarting { counter });
    }
    if m.starts_with("Stopped ") {
        return Some(UnitEvent::Stopped);
    }
    if m.starts_with("Started ") {
        return Some(UnitEvent::Started);
    }
    None
}

/// Classify the entries of a window (any order; read newest first as a log would be).
pub fn classify_entries(
    unit: &str,
    since: i64,
    mut entries: Vec<JournalEntry>,
    bad_lines: usize,
) -> JournalRead {
    entries.sort_by_key(|e| e.time);
    let mut scan = BackwardScan::new(since, None);
    let mut events = Vec::new();
    let mut unit_events = Vec::new();
    for e in entries.iter().rev() {
        if e.time < since {
            break;
        }
        if e.identifier.as_deref() == Some("systemd") {
            if let Some(event) = classify_unit_message(&e.message) {
                unit_events.push(UnitEventAt {
                    time: e.time,
                    event,
                    message: e.message.clone(),
                });
            }
            continue;
        }
        if let LineTake::Keep(ev) = scan.entry(e.time, &e.message) {
            events.push(ev);
        }
    }
    events.reverse();
    unit_events.reverse();
    let (events, _) = crate::logs::window::attribute_kills_to_timeouts(events);
    JournalRead::Read {
        unit: unit.to_string(),
        events,
        unit_events,
        entries: entries.len(),
        bad_lines,
    }
}

/// Directories journald writes to (persistent, then volatile).
pub const JOURNAL_DIRS: [&str; 2] = ["/var/log/journal", "/run/log/journal"];

/// Read the unit's journal since `since` (seconds since the epoch) with `journalctl`.
pub async fn journal_for_unit(unit: &str, since: i64, timeout: Duration) -> JournalRead {
    let dirs: Vec<PathBuf> = JOURNAL_DIRS.iter().map(PathBuf::from).collect();
    if let Some(unknown) = journal_presence(&dirs) {
        return unknown;
    }
    let since_arg = format!("@{since}");
    let max = MAX_ENTRIES.to_string();
    let argv = [
        "journalctl",
        "-u",
        unit,
        "-o",
        "json",
        "--no-pager",
        "--since",
        &since_arg,
        "-n",
        &max,
    ];
    match run(&argv, timeout, MAX_OUTPUT).await {
        Err(ExecError::NotFound { .. }) => JournalRead::Unknown {
            reason: "journalctl is not installed".into(),
            fix: format!("read the unit's log another way (/var/log/syslog); `journalctl -u {unit}` where systemd is present"),
        },
        Err(e) => JournalRead::Unknown {
            reason: e.to_string(),
            fix: format!("run `journalctl -u {unit} --since @{since}` by hand"),
        },
        Ok(out) => {
            // As a user outside adm/systemd-journal, journalctl succeeds but shows only the
            // user's own messages, with this hint on stderr.
            if out.stderr.contains("not seeing messages from other users")
                || out.stderr.contains("insufficient permissions")
            {
                return JournalRead::Unknown {
                    reason: format!("journalctl cannot show the system journal to this user: {}", out.stderr.trim()),
                    fix: "run as root, or as a member of group systemd-journal or adm".into(),
                };
            }
            if !out.success() {
                return JournalRead::Unknown {
                    reason: format!("journalctl failed ({:?}): {}", out.code, out.stderr.trim()),
                    fix: format!("run `journalctl -u {unit}` by hand"),
                };
            }
            let (entries, bad) = parse_journal_json(&out.stdout);
            classify_entries(unit, since, entries, bad)
        }
    }
}

/// `Some(Unknown)` when no journal file exists to read (journald not running, or
/// `Storage=none`): an empty answer from journalctl would otherwise look like "nothing logged".
pub fn journal_presence(dirs: &[PathBuf]) -> Option<JournalRead> {
    let mut saw_dir = false;
    for d in dirs {
        match has_journal_file(d) {
            Ok(true) => return None,
            Ok(false) => saw_dir = true,
            Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => {
                return Some(JournalRead::Unknown {
                    reason: format!("cannot list {}: permission denied", d.display()),
                    fix: "run as root, or as a member of group systemd-journal or adm".into(),
                })
            }
            Err(_) => {}
        }
    }
    Some(JournalRead::Unknown {
        reason: if saw_dir {
            "the journal directories hold no journal files (journald is not running here, or keeps nothing)".into()
        } else {
            "no journal on this host (no /var/log/journal or /run/log/journal)".into()
        },
        fix: "read the backend's own log files; on a host with systemd, `journalctl -u UNIT`"
            .into(),
    })
}

/// A `*.journal` file in `dir` or its machine-id subdirectories (bounded listing).
fn has_journal_file(dir: &Path) -> std::io::Result<bool> {
    for entry in std::fs::read_dir(dir)?.flatten().take(256) {
        let p = entry.path();
        if p.extension().is_some_and(|e| e == "journal") {
            return Ok(true);
        }
        if p.is_dir() {
            if let Ok(sub) = std::fs::read_dir(&p) {
                if sub.flatten().take(4096).any(|e| {
                    e.path()
                        .extension()
                        .is_some_and(|x| x == "journal" || x == "journal~")
                }) {
                    return Ok(true);
                }
            }
        }
    }
    Ok(false)
}

//! OOM kills in the kernel log, in a time window.
//!
//! Read once per run ([`KernelLog::read`]) and shared by every upstream: each asks
//! [`KernelLogWindow::kills_matching`] with what it knows about its backend ([`OomQuery`]).
//!
//! Sources, in order: `/dev/kmsg` (the ring buffer itself, read non-blocking), then
//! `journalctl -k -o json` (older messages survive in a persistent journal; readable by groups
//! adm and systemd-journal), then `dmesg --time-format=iso` (for hosts without /dev/kmsg).
//! When none can be read the window is [`KernelLogWindow::Unknown`] with the reason and what
//! would fix it — never an empty list of kills.
//!
//! Architecture invariant: read-only and bounded — records, bytes, command output and time
//! are all capped, and a cut-short read says so ([`KernelLogRead::complete`]).

mod dmesg;
mod journal;
mod kmsg;
mod oom;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use serde::Serialize;
use why502_host::ExecError;

pub use oom::{memory_cgroup_path, OomKill, OomMatch, OomQuery};

/// What an admin can do when the kernel log cannot be read.
pub const UNREADABLE_FIX: &str = "run as root or grant CAP_SYSLOG (or set kernel.dmesg_restrict=0); group adm/systemd-journal for journalctl";

/// Where the kills were read from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum KernelLogSource {
    Kmsg,
    /// The same ring buffer's tail through syslog(2) (`kmsg::read_syslog_tail`).
    Syslog,
    Journal,
    Dmesg,
}

impl KernelLogSource {
    /// The name an admin recognises, for evidence (`/dev/kmsg`, `journalctl -k`, `dmesg`).
    pub fn label(self) -> &'static str {
        match self {
            KernelLogSource::Kmsg => kmsg::KMSG,
            KernelLogSource::Syslog => "the kernel ring buffer (syslog(2), as dmesg -S)",
            KernelLogSource::Journal => "journalctl -k",
            KernelLogSource::Dmesg => "dmesg",
        }
    }
}

/// A source that could not be used, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SourceFailure {
    pub source: String,
    pub reason: String,
    /// The failure is about privileges (root, CAP_SYSLOG, journal groups would fix it).
    pub permission: bool,
}

/// Caps on one read. The defaults hold a 32 MiB ring buffer (the kernel's maximum).
#[derive(Debug, Clone, Copy)]
pub struct ReadLimits {
    pub max_records: usize,
    pub max_bytes: u64,
    pub max_journal_entries: usize,
    pub max_command_output: usize,
}

impl Default for ReadLimits {
    fn default() -> ReadLimits {
        ReadLimits {
            max_records: 1_000_000,
            max_bytes: 64 << 20,
            max_journal_entries: 100_000,
            max_command_output: 32 << 20,
        }
    }
}

/// What one source gave.
#[derive(Debug)]
pub(crate) struct SourceRead {
    pub(crate) kills: Vec<OomKill>,
    pub(crate) kills_dropped: usize,
    pub(crate) lsm_lines: Vec<(SystemTime, String)>,
    pub(crate) records_read: usize,
    pub(crate) covers_from: Option<SystemTime>,
    pub(crate) reaches_back: bool,
    pub(crate) stopped: Option<String>,
}

/// The kernel log of the window, read.
#[derive(Debug, Clone, Serialize)]
pub struct KernelLogRead {
    pub source: KernelLogSource,
    pub since: SystemTime,
    /// OOM kills at or after `since`, oldest first.
    pub kills: Vec<OomKill>,
    /// Older kills left out because the window held more than the cap.
    pub kills_dropped: usize,
    /// AppArmor / SELinux audit lines in the window (the newest, capped), oldest first, for the
    /// security step: the kernel log is where they land without auditd or a syslog daemon.
    #[serde(skip)]
    pub lsm_lines: Vec<(SystemTime, String)>,
    pub records_read: usize,
    /// Time of the oldest record read.
    pub covers_from: Option<SystemTime>,
    /// The source held records back to `since` (or to boot), so a kill in the window would
    /// have been seen.
    pub reaches_back: bool,
    /// Why reading stopped early, when it did (limits, time budget, read error).
    pub stopped: Option<String>,
    /// Sources tried before this one, and why they could not be used.
    pub unusable: Vec<SourceFailure>,
}

impl KernelLogRead {
    /// No kill in the window can have been missed. When false, "no OOM kill" holds only
    /// from `covers_from` on (a wrapped ring buffer) or up to where reading stopped.
    pub fn complete(&self) -> bool {
        self.reaches_back && self.stopped.is_none()
    }

    fn from_source(
        source: KernelLogSource,
        since: SystemTime,
        read: SourceRead,
        unusable: Vec<SourceFailure>,
    ) -> KernelLogRead {
        KernelLogRead {
            source,
            since,
            kills: read.kills,
            kills_dropped: read.kills_dropped,
            lsm_lines: read.lsm_lines,
            records_read: read.records_read,
            covers_from: read.covers_from,
            reaches_back: read.reaches_back,
            stopped: read.stopped,
            unusable,
        }
    }
}

/// The kernel log over the run's window.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum KernelLogWindow {
    Read(KernelLogRead),
    /// No source could be read: a probe must report `unknown` with these, never "no kills".
    Unknown {
        reason: String,
        fix: String,
        tried: Vec<SourceFailure>,
    },
}

impl KernelLogWindow {
    /// Every kill in the window (none when the log could not be read — check
    /// [`KernelLogWindow::Unknown`] first).
    pub fn kills(&self) -> &[OomKill] {
        match self {
            KernelLogWindow::Read(r) => &r.kills,
            KernelLogWindow::Unknown { .. } => &[],
        }
    }

    /// The window's AppArmor / SELinux audit lines (none when the log could not be read).
    pub fn lsm_lines(&self) -> &[(SystemTime, String)] {
        match self {
            KernelLogWindow::Read(r) => &r.lsm_lines,
            KernelLogWindow::Unknown { .. } => &[],
        }
    }

    /// The kills `query` matches, with how each matched.
    pub fn kills_matching(&self, query: &OomQuery) -> Vec<(&OomKill, OomMatch)> {
        self.kills()
            .iter()
            .filter_map(|k| query.matched_by(k).map(|m| (k, m)))
            .collect()
    }

    /// The kills no query matches: OOM kills of processes outside the chains diagnosed.
    pub fn kills_matching_none(&self, queries: &[OomQuery]) -> Vec<&OomKill> {
        self.kills()
            .iter()
            .filter(|k| !queries.iter().any(|q| q.matches(k)))
            .collect()
    }
}

/// Where to look; the default is the real host.
#[derive(Debug, Clone)]
pub struct KernelLog {
    pub kmsg_path: PathBuf,
    /// Read the live ring buffer's tail through syslog(2) before /dev/kmsg (only when
    /// `kmsg_path` is the real device: a captured file is read as it is).
    pub use_syslog: bool,
    pub use_journal: bool,
    pub use_dmesg: bool,
    pub limits: ReadLimits,
}

impl Default for KernelLog {
    fn default() -> KernelLog {
        KernelLog {
            kmsg_path: PathBuf::from(kmsg::KMSG),
            use_syslog: true,
            use_journal: true,
            use_dmesg: true,
            limits: ReadLimits::default(),
        }
    }
}

impl KernelLog {
    /// The host's kernel log from `since` on, within `timeout`.
    pub async fn read(since: SystemTime, timeout: Duration) -> KernelLogWindow {
        KernelLog::default().read_window(since, timeout).await
    }

    /// Read the window from the first source that works.
    ///
    /// The ring buffer's tail through syslog(2) first, when it reaches back to `since`: one
    /// call (the kernel formats the whole ring on each), parsed only back to the window.
    /// Else /dev/kmsg, read inline: it is non-blocking, in memory and capped (milliseconds
    /// even for a full 32 MiB buffer). When that does not reach back to `since` (the ring
    /// buffer wrapped), a journal that does is preferred, since journald keeps what the ring
    /// lost.
    pub async fn read_window(&self, since: SystemTime, timeout: Duration) -> KernelLogWindow {
        let deadline = Instant::now() + timeout;
        let live = self.kmsg_path == Path::new(kmsg::KMSG);
        let tail = (self.use_syslog && live)
            .then(|| kmsg::read_syslog_tail(since, deadline, self.limits))
            .flatten();
        let ring = match tail {
            Some(read) => Ok((KernelLogSource::Syslog, read)),
            None => kmsg::read_device(&self.kmsg_path, since, deadline, self.limits)
                .map(|read| (KernelLogSource::Kmsg, read)),
        };
        let mut failures = Vec::new();
        let mut partial: Option<KernelLogRead> = None;
        match ring {
            Ok((source, read)) => {
                let read = KernelLogRead::from_source(source, since, read, Vec::new());
                if read.reaches_back || !self.use_journal {
                    return KernelLogWindow::Read(read);
                }
                partial = Some(read);
            }
            Err(f) => failures.push(f),
        }
        if self.use_journal {
            match read_journal(since, deadline, self.limits).await {
                Ok(read) if partial.is_none() || read.reaches_back => {
                    return KernelLogWindow::Read(KernelLogRead::from_source(
                        KernelLogSource::Journal,
                        since,
                        read,
                        failures,
                    ));
                }
                Ok(_) => {}
                Err(f) => failures.push(f),
            }
        }
        if let Some(read) = partial {
            return KernelLogWindow::Read(read);
        }
        if self.use_dmesg {
            match read_dmesg(since, deadline, self.limits).await {
                Ok(read) => {
                    return KernelLogWindow::Read(KernelLogRead::from_source(
                        KernelLogSource::Dmesg,
                        since,
                        read,
                        failures,
                    ))
                }
                Err(f) => failures.push(f),
            }
        }
        let reason = failures
            .iter()
            .map(|f| format!("{}: {}", f.source, f.reason))
            .collect::<Vec<_>>()
            .join("; ");
        KernelLogWindow::Unknown {
            reason: format!("cannot read the kernel log ({reason})"),
            fix: UNREADABLE_FIX.to_string(),
            tried: failures,
        }
    }
}

fn remaining(deadline: Instant, source: &str) -> Result<Duration, SourceFailure> {
    let left = deadline.saturating_duration_since(Instant::now());
    if left.is_zero() {
        return Err(SourceFailure {
            source: source.to_string(),
            reason: "no time left in the run's budget".to_string(),
            permission: false,
        });
    }
    Ok(left)
}

fn exec_failure(source: &str, e: ExecError) -> SourceFailure {
    let reason = match e {
        ExecError::NotFound { .. } => "not installed".to_string(),
        other => other.to_string(),
    };
    SourceFailure {
        source: source.to_string(),
        reason,
        permission: false,
    }
}

fn first_line(s: &str) -> &str {
    s.lines()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("")
        .trim()
}

async fn read_journal(
    since: SystemTime,
    deadline: Instant,
    limits: ReadLimits,
) -> Result<SourceRead, SourceFailure> {
    const SOURCE: &str = "journalctl -k";
    let fail = |reason: String, permission: bool| SourceFailure {
        source: SOURCE.to_string(),
        reason,
        permission,
    };
    let secs = since
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    // journalctl takes tens of ms to say "No journal files were found": look first.
    if !journal_files_exist(&JOURNAL_DIRS) {
        return Err(fail(
            format!(
                "no journal files under {} (journald not running, or Storage=none)",
                JOURNAL_DIRS.join(" or ")
            ),
            false,
        ));
    }
    let since_arg = format!("--since=@{secs}");
    let lines_arg = format!("--lines={}", limits.max_journal_entries);
    // -k implies this boot only; -r puts the newest first so a capped output keeps them.
    let argv = [
        "journalctl",
        "-k",
        "-r",
        "-o",
        "json",
        "--no-pager",
        lines_arg.as_str(),
        since_arg.as_str(),
    ];
    let out = why502_host::run(
        &argv,
        remaining(deadline, SOURCE)?,
        limits.max_command_output,
    )
    .await
    .map_err(|e| exec_failure(SOURCE, e))?;
    journal_unusable(&out.stderr).map_or(Ok(()), Err)?;
    if !out.success() {
        return Err(fail(
            format!("exited with {:?}: {}", out.code, first_line(&out.stderr)),
            false,
        ));
    }
    let read = journal::parse_reverse_json(&out.stdout, since, limits.max_journal_entries);
    if read.records_read > 0 {
        return Ok(read);
    }
    // Nothing in the window. A journal that holds no kernel message at all for this boot
    // does not collect them (journald not reading /dev/kmsg, as in many containers): its
    // silence proves nothing.
    let probe = why502_host::run(
        &["journalctl", "-k", "-o", "json", "--no-pager", "--lines=1"],
        remaining(deadline, SOURCE)?,
        1 << 20,
    )
    .await
    .map_err(|e| exec_failure(SOURCE, e))?;
    let any = probe
        .stdout
        .lines()
        .any(|l| l.trim_start().starts_with('{'));
    if !any {
        return Err(fail(
            "the journal holds no kernel messages for this boot (no journal files, or journald does not read /dev/kmsg here)".to_string(),
            false,
        ));
    }
    Ok(read)
}

/// Where journald keeps its files: volatile, then persistent (journald.conf(5)).
const JOURNAL_DIRS: [&str; 2] = ["/run/log/journal", "/var/log/journal"];

/// Whether any `*.journal` file is in a machine-id directory under `dirs` (a directory of the
/// systemd package with nothing in it holds no journal). Reads at most a few directories.
fn journal_files_exist(dirs: &[&str]) -> bool {
    dirs.iter().any(|d| {
        std::fs::read_dir(d)
            .into_iter()
            .flatten()
            .flatten()
            .take(64)
            .any(|machine| {
                std::fs::read_dir(machine.path())
                    .into_iter()
                    .flatten()
                    .flatten()
                    .take(4096)
                    .any(|f| {
                        let name = f.file_name();
                        let name = name.to_string_lossy();
                        name.ends_with(".journal") || name.ends_with(".journal~")
                    })
            })
    })
}

/// journalctl exits 0 in both of these, yet has not looked at the kernel's messages.
fn journal_unusable(stderr: &str) -> Option<SourceFailure> {
    let fail = |reason: &str, permission: bool| {
        Some(SourceFailure {
            source: "journalctl -k".to_string(),
            reason: reason.to_string(),
            permission,
        })
    };
    if stderr.contains("No journal files were found") {
        return fail(
            "no journal files (journald not running, or Storage=none)",
            false,
        );
    }
    if stderr.contains("not seeing messages from other users and the system") {
        return fail(
            "only this user's own messages are visible (not in group adm or systemd-journal)",
            true,
        );
    }
    None
}

async fn read_dmesg(
    since: SystemTime,
    deadline: Instant,
    limits: ReadLimits,
) -> Result<SourceRead, SourceFailure> {
    const SOURCE: &str = "dmesg";
    let out = why502_host::run(
        &["dmesg", "--facility=kern", "--time-format=iso"],
        remaining(deadline, SOURCE)?,
        limits.max_command_output,
    )
    .await
    .map_err(|e| exec_failure(SOURCE, e))?;
    if !out.success() {
        let line = first_line(&out.stderr);
        return Err(SourceFailure {
            source: SOURCE.to_string(),
            reason: format!("exited with {:?}: {line}", out.code),
            permission: line.contains("Operation not permitted"),
        });
    }
    let mut read = dmesg::parse_iso(&out.stdout, since);
    // dmesg prints oldest first: a capped output lost the newest records.
    if out.stdout.len() >= limits.max_command_output {
        read.stopped = Some(format!(
            "dmesg output capped at {} bytes; newer records were not read",
            limits.max_command_output
        ));
    }
    Ok(read)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn journal_files_are_found_only_where_journald_writes_them() {
        let root = tempfile::tempdir().expect("tmp");
        let dir = root.path().display().to_string();
        assert!(
            !journal_files_exist(&[&dir]),
            "an empty directory holds no journal"
        );
        let machine = root.path().join("0123456789abcdef");
        std::fs::create_dir(&machine).expect("mkdir");
        std::fs::write(machine.join("user-1000.txt"), "x").expect("write");
        assert!(!journal_files_exist(&[&dir]));
        std::fs::write(machine.join("system.journal"), "x").expect("write");
        assert!(journal_files_exist(&["/nonexistent", &dir]));
    }

    #[test]
    fn journal_hints_are_failures_not_empty_windows() {
        // Real stderr of `journalctl -k` on this machine (no journal files).
        let f = journal_unusable("No journal files were found.\n").expect("unusable");
        assert!(!f.permission);
        // journalctl's hint to a user outside the journal groups (systemd 252 wording).
        let f = journal_unusable("Hint: You are currently not seeing messages from other users and the system.\n      Users in groups 'adm', 'systemd-journal' can see all messages.\n      Pass -q to turn off this notice.\n").expect("unusable");
        assert!(f.permission);
        assert_eq!(journal_unusable(""), None);
    }

    #[tokio::test]
    async fn no_source_gives_unknown_with_reason_and_fix() {
        let log = KernelLog {
            kmsg_path: PathBuf::from("/nonexistent/why502-kmsg"),
            use_syslog: true,
            use_journal: false,
            use_dmesg: false,
            limits: ReadLimits::default(),
        };
        let w = log
            .read_window(SystemTime::now(), Duration::from_secs(1))
            .await;
        match w {
            KernelLogWindow::Unknown { reason, fix, tried } => {
                assert!(reason.contains("/nonexistent/why502-kmsg"), "{reason}");
                assert!(fix.contains("CAP_SYSLOG"));
                assert_eq!(tried.len(), 1);
            }
            other => panic!("expected unknown, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn a_regular_file_is_not_the_kernel_log() {
        let dir = tempfile::tempdir().expect("tempdir");
        let fake = dir.path().join("kmsg");
        std::fs::write(
            &fake,
            "0,1,1,-;Out of memory: Killed process 1 (x) total-vm:1kB\n",
        )
        .expect("write");
        let log = KernelLog {
            kmsg_path: fake,
            use_syslog: true,
            use_journal: false,
            use_dmesg: false,
            limits: ReadLimits::default(),
        };
        let w = log
            .read_window(SystemTime::UNIX_EPOCH, Duration::from_secs(1))
            .await;
        assert!(matches!(w, KernelLogWindow::Unknown { .. }), "{w:?}");
    }
}

//! A backend log's failures inside the time window, read backward through the host's shared
//! tail reader (rotations followed, bytes bounded).
//!
//! Lines without a stamp (uwsgi's `DAMN ! worker ... died`, Python tracebacks) get the time
//! of the nearest newer stamped line, or the file's modification time at its end: an upper
//! bound, flagged `time_exact: false`. A traceback becomes one `AppError` event whose message
//! is its exception line; the earlier links of a chained exception and the `SystemExit` that
//! gunicorn's timeout abort prints are not counted again.

use std::path::{Path, PathBuf};
use std::time::UNIX_EPOCH;

use serde::Serialize;
use why502_host::{read_tail, LineTake, ReadError, TailLimits};

use super::classify::{classify_backend_line, BackendLogClass};
use super::stamp::{parse_stamp, LocalClock, StampForm};

/// Keep at most this much of a message.
const MAX_MESSAGE: usize = 512;

/// One failure the backend logged.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BackendLogEvent {
    /// Seconds since the epoch.
    pub time: i64,
    /// `false` when the line had no stamp and `time` is the nearest newer stamp.
    pub time_exact: bool,
    pub class: BackendLogClass,
    /// The line (for a traceback: its exception line), stamp removed, capped.
    pub message: String,
    /// php-fpm's `[pool www]`.
    pub pool: Option<String>,
    /// The worker the line is about (`child 1234`, `(pid:1235)`, `(pid: 1235, ...)`).
    pub pid: Option<u32>,
}

/// A backend's own start, stop or reload, as its log says it (for the timeline).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LifecycleEvent {
    /// Seconds since the epoch.
    pub time: i64,
    pub kind: Lifecycle,
    /// The line, stamp removed, capped.
    pub message: String,
    /// php-fpm's `[pool www]`, when the line names one.
    pub pool: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Lifecycle {
    /// Ready to serve: php-fpm `ready to handle connections`, gunicorn `Listening at`, uWSGI
    /// `*** Operational MODE`.
    Started,
    /// php-fpm `Reloading in progress` (SIGUSR2), gunicorn `Handling signal: hup`.
    Reloading,
    /// php-fpm `exiting, bye-bye!`, gunicorn `Shutting down: Master`, uWSGI `goodbye to uWSGI`.
    Stopped,
}

/// Start, reload and stop lines as php-fpm 8.2, gunicorn and uWSGI word them.
pub fn lifecycle_of(line: &str) -> Option<Lifecycle> {
    const STARTED: &[&str] = &[
        "ready to handle connections",
        "Listening at: ",
        "*** Operational MODE",
    ];
    const RELOADING: &[&str] = &[
        "Reloading in progress",
        "Handling signal: hup",
        "...gracefully killing workers",
    ];
    const STOPPED: &[&str] = &[
        "exiting, bye-bye!",
        "Shutting down: Master",
        "goodbye to uWSGI",
    ];
    let any = |needles: &[&str]| needles.iter().any(|n| line.contains(n));
    if any(STARTED) {
        Some(Lifecycle::Started)
    } else if any(RELOADING) {
        Some(Lifecycle::Reloading)
    } else if any(STOPPED) {
        Some(Lifecycle::Stopped)
    } else {
        None
    }
}

/// Lifecycle lines kept per log, at most (the newest).
const MAX_LIFECYCLE: usize = 64;

/// The failures of one log inside the window, oldest first.
#[derive(Debug, Clone, Default, Serialize)]
pub struct BackendLogWindow {
    pub source: PathBuf,
    /// Its starts, reloads and stops inside the window, oldest first.
    pub lifecycle: Vec<LifecycleEvent>,
    /// Rotated files the window reached back into, newest first.
    pub rotated: Vec<PathBuf>,
    pub events: Vec<BackendLogEvent>,
    /// The byte cap stopped the read before the window's start.
    pub truncated: bool,
    pub bytes_read: u64,
    /// Lines with a stamp this reader understands. Zero with bytes read: not a log it knows.
    pub stamped_lines: u64,
    /// The stamp form of the newest stamped line.
    pub form: Option<StampForm>,
    /// Worker kills dropped because they were the timeout's own kill of the same worker.
    pub kills_after_timeout: usize,
}

/// Read the failures of `path` at or after `since` (seconds since the epoch).
pub fn read_backend_log(
    path: &Path,
    since: i64,
    limits: TailLimits,
) -> Result<BackendLogWindow, ReadError> {
    // The newest undated lines were written no later than the file's last change.
    let mtime = std::fs::metadata(path)
        .ok()
        .and_then(|m| m.modified().ok())
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map(|d| d.as_secs() as i64);
    let mut scan = BackwardScan::new(since, mtime);
    let mut clock = LocalClock::default();
    let mut stamped_lines = 0u64;
    let mut form = None;
    let mut lifecycle: Vec<LifecycleEvent> = Vec::new();
    let read = read_tail(path, limits, |raw| {
        let text = String::from_utf8_lossy(raw);
        match parse_stamp(&text, &mut clock) {
            Some(s) => {
                stamped_lines += 1;
                form.get_or_insert(s.form);
                if s.time >= since && lifecycle.len() < MAX_LIFECYCLE {
                    if let Some(kind) = lifecycle_of(s.rest) {
                        lifecycle.push(LifecycleEvent {
                            time: s.time,
                            kind,
                            message: s.rest.chars().take(MAX_MESSAGE).collect(),
                            pool: between(s.rest, "[pool ", "]"),
                        });
                    }
                }
                scan.stamped(s.time, s.rest)
            }
            None => scan.undated(&text),
        }
    })?;
    let (events, kills_after_timeout) = attribute_kills_to_timeouts(read.items);
    // Read newest first: oldest first, as the events are.
    lifecycle.reverse();
    Ok(BackendLogWindow {
        source: path.to_path_buf(),
        lifecycle,
        rotated: read.rotated,
        events,
        kills_after_timeout,
        truncated: read.truncated,
        bytes_read: read.bytes_read,
        stamped_lines,
        form,
    })
}

/// A timeout kills its worker: uwsgi's harakiri with SIGKILL (`DAMN ! worker 1 (pid: N) died,
/// killed by signal 9`), gunicorn with SIGKILL when the worker ignores the abort (`Worker
/// (pid:N) was sent SIGKILL! Perhaps out of memory?`). Such a kill of the same pid soon after
/// its timeout is the timeout, not an OOM kill: drop it. Events oldest first; returns the
/// rest and how many were dropped.
pub fn attribute_kills_to_timeouts(events: Vec<BackendLogEvent>) -> (Vec<BackendLogEvent>, usize) {
    const WITHIN: i64 = 120;
    let mut kept: Vec<BackendLogEvent> = Vec::with_capacity(events.len());
    let mut dropped = 0;
    for e in events {
        let after_timeout = matches!(e.class, BackendLogClass::WorkerKilled { .. })
            && e.pid.is_some()
            && kept.iter().rev().any(|t| {
                t.class == BackendLogClass::RequestTimeout
                    && t.pid == e.pid
                    && (0..=WITHIN).contains(&(e.time - t.time))
            });
        if after_timeout {
            dropped += 1;
        } else {
            kept.push(e);
        }
    }
    (kept, dropped)
}

/// Why a backend log could not be read and what would let the agent read it, for a step's
/// `unknown` outcome.
pub fn unreadable_log(path: &Path, err: &ReadError) -> (String, String) {
    let shown = path.display();
    if err.is_permission_denied() {
        (
            format!("{shown}: permission denied"),
            "run as root, or as a member of the group that owns the log (often adm)".into(),
        )
    } else if err.is_not_found() {
        (
            format!(
                "{shown} does not exist (the backend has not written it yet, or logs elsewhere)"
            ),
            "check the backend's log settings; its journal may hold the log instead".into(),
        )
    } else {
        (err.to_string(), format!("read {shown} by hand"))
    }
}

/// The state of a backward walk over a log's lines (or a journal's entries), newest first.
#[derive(Debug)]
pub struct BackwardScan {
    since: i64,
    /// The stamp of the nearest newer stamped line.
    newer: Option<i64>,
    /// The exception line of the traceback being walked up through.
    exception: Option<String>,
    /// A chained-exception separator was met: the next traceback up is an earlier link.
    chained: bool,
}

impl BackwardScan {
    pub fn new(since: i64, newest_bound: Option<i64>) -> BackwardScan {
        BackwardScan {
            since,
            newer: newest_bound,
            exception: None,
            chained: false,
        }
    }

    /// A line with its own stamp; `rest` is the text after it.
    pub fn stamped(&mut self, time: i64, rest: &str) -> LineTake<BackendLogEvent> {
        if time < self.since {
            return LineTake::Older;
        }
        self.newer = Some(time);
        // A stamped line is never inside a traceback: what was gathered above it is stale.
        self.exception = None;
        self.chained = false;
        match classify_backend_line(rest) {
            Some(class) => LineTake::Keep(event(time, true, class, rest)),
            None => LineTake::Skip,
        }
    }

    /// A journal entry: stamped by the journal, shaped like a raw line (tracebacks come one
    /// line per entry).
    pub fn entry(&mut self, time: i64, text: &str) -> LineTake<BackendLogEvent> {
        if time < self.since {
            return LineTake::Older;
        }
        self.newer = Some(time);
        self.shaped(text, time, true)
    }

    /// A line without a stamp.
    pub fn undated(&mut self, text: &str) -> LineTake<BackendLogEvent> {
        match self.newer {
            Some(t) if t >= self.since => self.shaped(text, t, false),
            // Newer than nothing in the window: cannot be in it, but older stamped lines
            // decide where the window starts.
            _ => LineTake::Skip,
        }
    }

    fn shaped(&mut self, text: &str, time: i64, exact: bool) -> LineTake<BackendLogEvent> {
        let t = text.trim_end();
        if t.starts_with("Traceback (most recent call last):") {
            let exception = self.exception.take();
            if std::mem::take(&mut self.chained) {
                return LineTake::Skip;
            }
            let message = exception.unwrap_or_else(|| t.to_string());
            // gunicorn's abort of a timed-out worker prints the SystemExit it raised.
            if message.starts_with("SystemExit") {
                return LineTake::Skip;
            }
            return LineTake::Keep(event(time, exact, BackendLogClass::AppError, &message));
        }
        if t.starts_with("During handling of the above exception")
            || t.starts_with("The above exception was the direct cause")
        {
            self.chained = true;
            return LineTake::Skip;
        }
        if t.starts_with(' ') || t.starts_with('\t') || t.is_empty() {
            return LineTake::Skip;
        }
        if looks_like_exception(t) {
            self.exception = Some(t.to_string());
            return LineTake::Skip;
        }
        match classify_backend_line(t) {
            Some(class) => LineTake::Keep(event(time, exact, class, t)),
            None => LineTake::Skip,
        }
    }
}

/// Python's last traceback line: `ValueError: boom`, `pkg.mod.ImproperlyConfigured: x`, or a
/// bare `KeyboardInterrupt`.
fn looks_like_exception(t: &str) -> bool {
    let (name, has_message) = match t.split_once(": ") {
        Some((n, _)) => (n, true),
        None => (t, false),
    };
    let identifier = name
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.');
    identifier
        && (has_message
            || [
                "Error",
                "Exception",
                "Exit",
                "Interrupt",
                "Warning",
                "Iteration",
            ]
            .iter()
            .any(|s| name.ends_with(s)))
}

fn event(time: i64, exact: bool, class: BackendLogClass, text: &str) -> BackendLogEvent {
    let mut message = text.trim().to_string();
    if message.len() > MAX_MESSAGE {
        let mut cut = MAX_MESSAGE;
        while !message.is_char_boundary(cut) {
            cut -= 1;
        }
        message.truncate(cut);
    }
    BackendLogEvent {
        time,
        time_exact: exact,
        class,
        pool: between(text, "[pool ", "]"),
        pid: worker_pid(text),
        message,
    }
}

fn between(text: &str, open: &str, close: &str) -> Option<String> {
    let start = text.find(open)? + open.len();
    let end = text[start..].find(close)? + start;
    Some(text[start..end].to_string())
}

fn worker_pid(text: &str) -> Option<u32> {
    for key in ["child ", "(pid:", "(pid: ", "worker with pid: "] {
        if let Some(i) = text.find(key) {
            let digits: String = text[i + key.len()..]
                .trim_start()
                .chars()
                .take_while(|c| c.is_ascii_digit())
                .collect();
            if let Ok(pid) = digits.parse() {
                return Some(pid);
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exception_shapes() {
        assert!(looks_like_exception("ValueError: boom from app"));
        assert!(looks_like_exception(
            "ModuleNotFoundError: No module named 'x'"
        ));
        assert!(looks_like_exception(
            "django.core.exceptions.ImproperlyConfigured: x"
        ));
        assert!(!looks_like_exception("goodbye to uWSGI."));
        assert!(looks_like_exception("KeyboardInterrupt"));
        assert!(!looks_like_exception(
            "Respawned uWSGI worker 1 (new pid: 30170)"
        ));
        assert!(!looks_like_exception(
            "[2026-11-21 14:03:57 +0000] [28604] [INFO] x"
        ));
    }

    #[test]
    fn pids_and_pools() {
        let e = event(
            0,
            true,
            BackendLogClass::RequestTimeout,
            "WARNING: [pool cap] child 24855, script '/tmp/fpmcap/sleep.php' (request: \"GET /tmp/fpmcap/sleep.php\") execution timed out (1.624052 sec), terminating",
        );
        assert_eq!(e.pool.as_deref(), Some("cap"));
        assert_eq!(e.pid, Some(24855));
        assert_eq!(
            worker_pid("[28579] [CRITICAL] WORKER TIMEOUT (pid:28604)"),
            Some(28604)
        );
        assert_eq!(
            worker_pid("*** HARAKIRI ON WORKER 1 (pid: 29802, try: 1, graceful: yes) ***"),
            Some(29802)
        );
    }
}

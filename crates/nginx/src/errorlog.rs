//! nginx's error log, read backward from the end and only as far as the time window reaches,
//! so the cost is the window's size and not the file's.
//!
//! Line format: `2026/11/21 03:12:09 [error] 1234#1234: *567 connect() to unix:/run/php/x.sock
//! failed (13: Permission denied) while connecting to upstream, client: 10.0.0.5, server:
//! shop.example, request: "GET / HTTP/1.1", upstream: "fastcgi://unix:/run/php/x.sock:", host: "shop.example"`

use std::collections::HashMap;

use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use serde::Serialize;
use why502_host::{open_regular, ReadError};

const BLOCK: usize = 64 * 1024;

/// Bounds on one log read.
#[derive(Debug, Clone, Copy)]
pub struct WindowLimits {
    /// Stop after reading this many bytes backward, window reached or not.
    pub max_bytes: u64,
    /// Keep at most this many bytes of a line (its start: the timestamp and the message).
    pub max_line: usize,
    /// Keep at most this many lines (the newest).
    pub max_lines: usize,
}

impl Default for WindowLimits {
    fn default() -> Self {
        WindowLimits {
            max_bytes: 256 * 1024 * 1024,
            max_line: 8 * 1024,
            max_lines: 100_000,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ErrorLogLine {
    /// Seconds since the epoch (nginx writes local time; converted with the host's zone).
    pub time: i64,
    pub stamp: String,
    pub level: String,
    pub message: String,
    /// The `upstream: "..."` field, e.g. `fastcgi://unix:/run/php/x.sock:`.
    pub upstream: Option<String>,
    pub server: Option<String>,
}

/// The lines of one log inside the window, newest last.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ErrorLogWindow {
    pub source: PathBuf,
    pub lines: Vec<ErrorLogLine>,
    /// The byte cap stopped the read before the window's start.
    pub truncated: bool,
    pub bytes_read: u64,
}

/// Read the lines of `path` stamped at or after `since` (seconds since the epoch).
pub fn read_window(
    path: &Path,
    since: i64,
    limits: WindowLimits,
) -> Result<ErrorLogWindow, ReadError> {
    let io = |source| ReadError::io(path, source);
    let (mut file, meta) = open_regular(path)?;
    let mut window = ErrorLogWindow {
        source: path.to_path_buf(),
        ..ErrorLogWindow::default()
    };
    let mut clock = LocalClock::default();
    let mut newest_first: Vec<ErrorLogLine> = Vec::new();
    let mut pos = meta.len();
    // The start of the line being assembled backward (capped at max_line bytes).
    let mut tail: Vec<u8> = Vec::new();
    let mut block = vec![0u8; BLOCK];
    let mut done = false;
    while pos > 0 && !done {
        if window.bytes_read >= limits.max_bytes {
            window.truncated = true;
            break;
        }
        let len = (pos as usize).min(BLOCK);
        pos -= len as u64;
        file.seek(SeekFrom::Start(pos)).map_err(io)?;
        file.read_exact(&mut block[..len]).map_err(io)?;
        window.bytes_read += len as u64;
        let chunk = &block[..len];
        let mut end = len;
        // Walk the chunk's newlines from the end: each closes the line that follows it.
        while let Some(nl) = chunk[..end].iter().rposition(|b| *b == b'\n') {
            let line = join_capped(&chunk[nl + 1..end], &tail, limits.max_line);
            tail.clear();
            end = nl;
            if take_line(&line, since, &mut clock, &mut newest_first, limits) {
                done = true;
                break;
            }
        }
        if !done {
            tail = join_capped(&chunk[..end], &tail, limits.max_line);
        }
    }
    if pos == 0 && !done && !tail.is_empty() {
        take_line(&tail, since, &mut clock, &mut newest_first, limits);
    }
    newest_first.reverse();
    window.lines = newest_first;
    Ok(window)
}

/// `front ++ back`, keeping only the first `cap` bytes: reading backward, the front is the
/// line's start, which holds the timestamp and the message.
fn join_capped(front: &[u8], back: &[u8], cap: usize) -> Vec<u8> {
    let mut v = Vec::with_capacity((front.len() + back.len()).min(cap));
    v.extend_from_slice(&front[..front.len().min(cap)]);
    let room = cap - v.len();
    v.extend_from_slice(&back[..back.len().min(room)]);
    v
}

/// Parse one line and keep it if it is in the window; `true` when the window's start is passed.
fn take_line(
    raw: &[u8],
    since: i64,
    clock: &mut LocalClock,
    out: &mut Vec<ErrorLogLine>,
    limits: WindowLimits,
) -> bool {
    let text = String::from_utf8_lossy(raw);
    let Some(line) = parse_line(text.trim_end_matches('\r'), clock) else {
        return false;
    };
    if line.time < since {
        return true;
    }
    if out.len() < limits.max_lines {
        out.push(line);
    }
    false
}

/// Parse `YYYY/MM/DD HH:MM:SS [level] pid#tid: message`. Lines without that start (garbage,
/// continuation lines of multi-line messages) give `None`.
pub fn parse_line(text: &str, clock: &mut LocalClock) -> Option<ErrorLogLine> {
    let stamp = text.get(..19)?;
    let time = clock.parse(stamp)?;
    let rest = text.get(19..)?.strip_prefix(" [")?;
    let (level, rest) = rest.split_once("] ")?;
    // `1234#1234: *567 message` — the connection number is optional.
    let (_, message) = rest.split_once(": ")?;
    let message = match message.strip_prefix('*') {
        Some(m) => m.split_once(' ').map(|(_, m)| m).unwrap_or(m),
        None => message,
    };
    Some(ErrorLogLine {
        time,
        stamp: stamp.to_string(),
        level: level.to_string(),
        upstream: quoted_field(message, ", upstream: \""),
        server: plain_field(message, ", server: "),
        message: message.to_string(),
    })
}

fn quoted_field(msg: &str, key: &str) -> Option<String> {
    let start = msg.find(key)? + key.len();
    let end = msg[start..].find('"')? + start;
    Some(msg[start..end].to_string())
}

fn plain_field(msg: &str, key: &str) -> Option<String> {
    let start = msg.find(key)? + key.len();
    let end = msg[start..]
        .find(',')
        .map(|e| e + start)
        .unwrap_or(msg.len());
    Some(msg[start..end].to_string())
}

/// nginx stamps local time. Converting each stamp through mktime is exact (time zones, DST);
/// caching per hour keeps it off the hot path.
#[derive(Debug, Default)]
pub struct LocalClock {
    hours: HashMap<String, i64>,
}

impl LocalClock {
    pub fn parse(&mut self, stamp: &str) -> Option<i64> {
        let b = stamp.as_bytes();
        if b.len() != 19
            || b[4] != b'/'
            || b[7] != b'/'
            || b[10] != b' '
            || b[13] != b':'
            || b[16] != b':'
        {
            return None;
        }
        let num = |r: std::ops::Range<usize>| -> Option<i64> { stamp.get(r)?.parse().ok() };
        let (mi, s) = (num(14..16)?, num(17..19)?);
        if mi > 59 || s > 60 {
            return None;
        }
        let hour_key = &stamp[..13];
        let base = match self.hours.get(hour_key) {
            Some(b) => *b,
            None => {
                let b = local_to_epoch(num(0..4)?, num(5..7)?, num(8..10)?, num(11..13)?)?;
                self.hours.insert(hour_key.to_string(), b);
                b
            }
        };
        Some(base + mi * 60 + s)
    }
}

fn local_to_epoch(y: i64, mo: i64, d: i64, h: i64) -> Option<i64> {
    if !(1970..=9999).contains(&y)
        || !(1..=12).contains(&mo)
        || !(1..=31).contains(&d)
        || !(0..=23).contains(&h)
    {
        return None;
    }
    // SAFETY: a zeroed tm is a valid value; mktime only reads and normalises it.
    let mut tm: libc::tm = unsafe { std::mem::zeroed() };
    tm.tm_year = (y - 1900) as i32;
    tm.tm_mon = (mo - 1) as i32;
    tm.tm_mday = d as i32;
    tm.tm_hour = h as i32;
    tm.tm_isdst = -1;
    // SAFETY: tm is a valid, initialised struct owned by this frame.
    let t = unsafe { libc::mktime(&mut tm) };
    (t != -1).then_some(t as i64)
}

#[cfg(test)]
mod tests;

/// What kind of upstream failure a line reports, as nginx words it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum UpstreamErrorClass {
    /// (2: No such file or directory) on connect.
    NoSuchFile,
    /// (13: Permission denied) on connect.
    PermissionDenied,
    /// (111: Connection refused).
    ConnectionRefused,
    /// (11: Resource temporarily unavailable): the socket's listen queue is full.
    ListenQueueFull,
    /// (110) while connecting: packets dropped on the way.
    ConnectTimeout,
    /// upstream timed out while reading the response header / body.
    ReadTimeout,
    /// (104: Connection reset by peer), prematurely closed.
    Reset,
    TooBigHeader,
    InvalidResponse,
    NoLiveUpstreams,
    Tls,
    Dns,
    /// (113: No route to host) / network unreachable.
    NoRoute,
    /// FastCGI "Primary script unknown": a 404, not a 502.
    PrimaryScriptUnknown,
    Other,
}

impl UpstreamErrorClass {
    pub fn describe(self) -> &'static str {
        use UpstreamErrorClass::*;
        match self {
            NoSuchFile => "socket path does not exist (2: No such file or directory)",
            PermissionDenied => "permission denied connecting (13)",
            ConnectionRefused => "connection refused (111): nothing listens",
            ListenQueueFull => {
                "listen queue full (11: Resource temporarily unavailable): all workers busy"
            }
            ConnectTimeout => "connect timed out (110): packets dropped on the way (firewall?)",
            ReadTimeout => "upstream timed out reading the response",
            Reset => "connection reset or closed before a complete response",
            TooBigHeader => "response header bigger than nginx's buffer",
            InvalidResponse => "malformed response",
            NoLiveUpstreams => "no live upstreams: every server marked failed",
            Tls => "TLS handshake or certificate failure",
            Dns => "host name does not resolve",
            NoRoute => "no route to host (113)",
            PrimaryScriptUnknown => {
                "FastCGI \"Primary script unknown\": a 404 for a missing script, not a 502"
            }
            Other => "other upstream error",
        }
    }
}

/// Classify an error-log message about an upstream; `None` for lines that are not about one.
pub fn classify(message: &str) -> Option<UpstreamErrorClass> {
    use UpstreamErrorClass::*;
    let m = message;
    let class = if m.contains("Primary script unknown") {
        PrimaryScriptUnknown
    } else if m.contains("no live upstreams") {
        NoLiveUpstreams
    } else if m.contains("too big header") {
        TooBigHeader
    } else if m.contains("SSL_do_handshake()")
        || m.contains("SSL certificate verify")
        || m.contains("upstream SSL")
    {
        Tls
    } else if m.contains("could not be resolved") || m.contains("host not found in upstream") {
        Dns
    } else if m.contains("(2: No such file or directory)") {
        NoSuchFile
    } else if m.contains("(13: Permission denied)") {
        PermissionDenied
    } else if m.contains("(111: Connection refused)") {
        ConnectionRefused
    } else if m.contains("(11: Resource temporarily unavailable)") {
        ListenQueueFull
    } else if m.contains("(110: Connection timed out) while connecting") {
        ConnectTimeout
    } else if m.contains("timed out") && m.contains("upstream") {
        ReadTimeout
    } else if m.contains("(104: Connection reset by peer)") || m.contains("prematurely closed") {
        Reset
    } else if m.contains("no valid HTTP") || m.contains("sent invalid") {
        InvalidResponse
    } else if m.contains("(113: No route to host)") || m.contains("(101: Network is unreachable)") {
        NoRoute
    } else if m.contains("upstream") {
        Other
    } else {
        return None;
    };
    Some(class)
}

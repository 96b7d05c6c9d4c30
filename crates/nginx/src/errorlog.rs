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
    /// Keep every line in the window, not only upstream failures and reload notices (which is
    /// all a diagnosis uses, and keeps memory to the few lines that matter on a busy log).
    pub keep_all: bool,
}

impl Default for WindowLimits {
    fn default() -> Self {
        WindowLimits {
            max_bytes: 256 * 1024 * 1024,
            max_line: 8 * 1024,
            max_lines: 100_000,
            keep_all: false,
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
    /// The upstream failure the line reports (`classify_line`), if any.
    pub class: Option<UpstreamErrorClass>,
}

/// The lines of one log inside the window, newest last.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ErrorLogWindow {
    pub source: PathBuf,
    /// Rotated files the window reached back into (`error.log.1`, `error.log.2.gz`), newest first.
    pub rotated: Vec<PathBuf>,
    pub lines: Vec<ErrorLogLine>,
    /// The byte cap stopped the read before the window's start.
    pub truncated: bool,
    pub bytes_read: u64,
    /// Lines read that had nginx's error-log form, in the window or not. Zero with bytes read
    /// means the file is not an nginx error log (or not one this reader understands).
    pub parsed_lines: u64,
}

/// logrotate keeps `error.log.1` plain and compresses older ones (`delaycompress`); Debian
/// keeps 14. Beyond that a window of days is not what a 502 diagnosis needs.
const MAX_ROTATED: u32 = 14;

/// Read the lines of `path` stamped at or after `since` (seconds since the epoch), following
/// into rotated files (`path.1`, `path.N.gz`) while the window reaches back further.
pub fn read_window(
    path: &Path,
    since: i64,
    limits: WindowLimits,
) -> Result<ErrorLogWindow, ReadError> {
    let mut scan = Scan {
        since,
        limits,
        clock: LocalClock::default(),
        newest_first: Vec::new(),
        bytes_read: 0,
        parsed_lines: 0,
        truncated: false,
    };
    let mut window = ErrorLogWindow {
        source: path.to_path_buf(),
        ..ErrorLogWindow::default()
    };
    let mut passed_since = scan.backward(path)?;
    for n in 1..=MAX_ROTATED {
        if passed_since || scan.truncated {
            break;
        }
        let plain = suffixed(path, &format!(".{n}"));
        let gz = suffixed(path, &format!(".{n}.gz"));
        // A rotated file that cannot be read ends the walk back; the window is then what was
        // read, and the caller still has the current file's lines.
        passed_since = if plain.is_file() {
            window.rotated.push(plain.clone());
            scan.backward(&plain).unwrap_or(true)
        } else if gz.is_file() {
            window.rotated.push(gz.clone());
            scan.forward_gz(&gz).unwrap_or(true)
        } else {
            break;
        };
    }
    scan.newest_first.reverse();
    window.lines = scan.newest_first;
    window.truncated = scan.truncated;
    window.bytes_read = scan.bytes_read;
    window.parsed_lines = scan.parsed_lines;
    Ok(window)
}

fn suffixed(path: &Path, suffix: &str) -> PathBuf {
    let mut s = path.as_os_str().to_os_string();
    s.push(suffix);
    PathBuf::from(s)
}

/// The state of one window read across the current and rotated files.
struct Scan {
    since: i64,
    limits: WindowLimits,
    clock: LocalClock,
    newest_first: Vec<ErrorLogLine>,
    bytes_read: u64,
    parsed_lines: u64,
    truncated: bool,
}

impl Scan {
    /// Read a plain file from its end in blocks; `true` once a line older than the window is met.
    fn backward(&mut self, path: &Path) -> Result<bool, ReadError> {
        let io = |source| ReadError::io(path, source);
        let (mut file, meta) = open_regular(path)?;
        let mut pos = meta.len();
        // The start of the line being assembled backward (capped at max_line bytes).
        let mut tail: Vec<u8> = Vec::new();
        let mut block = vec![0u8; BLOCK];
        while pos > 0 {
            if self.bytes_read >= self.limits.max_bytes {
                self.truncated = true;
                return Ok(false);
            }
            let len = (pos as usize).min(BLOCK);
            pos -= len as u64;
            file.seek(SeekFrom::Start(pos)).map_err(io)?;
            file.read_exact(&mut block[..len]).map_err(io)?;
            self.bytes_read += len as u64;
            let chunk = &block[..len];
            let mut end = len;
            // Walk the chunk's newlines from the end: each closes the line that follows it.
            while let Some(nl) = chunk[..end].iter().rposition(|b| *b == b'\n') {
                let line = join_capped(&chunk[nl + 1..end], &tail, self.limits.max_line);
                tail.clear();
                end = nl;
                if self.take(&line) {
                    return Ok(true);
                }
            }
            tail = join_capped(&chunk[..end], &tail, self.limits.max_line);
        }
        Ok(!tail.is_empty() && self.take(&tail))
    }

    /// A compressed rotation is read forward (gzip cannot be read backward), bounded by the
    /// same byte budget on decompressed bytes; its lines in the window are older than all
    /// lines read so far.
    fn forward_gz(&mut self, path: &Path) -> Result<bool, ReadError> {
        let (file, _) = open_regular(path)?;
        let mut reader = std::io::BufReader::new(flate2::read::MultiGzDecoder::new(file));
        let mut in_window: Vec<ErrorLogLine> = Vec::new();
        let mut passed_since = false;
        let mut line = Vec::new();
        loop {
            line.clear();
            let n = read_line_capped(&mut reader, &mut line, self.limits.max_line)
                .map_err(|source| ReadError::io(path, source))?;
            if n == 0 {
                break;
            }
            self.bytes_read += n as u64;
            if self.bytes_read >= self.limits.max_bytes {
                self.truncated = true;
                break;
            }
            let text = String::from_utf8_lossy(&line);
            if let Some(l) = parse_raw(text.trim_end_matches(['\r', '\n']), &mut self.clock) {
                self.parsed_lines += 1;
                if l.time < self.since {
                    passed_since = true;
                } else if let Some(kept) = self.keep(&l) {
                    in_window.push(kept);
                }
            }
        }
        // Keep the newest lines when the line cap bites, as the backward reader does.
        let room = self
            .limits
            .max_lines
            .saturating_sub(self.newest_first.len());
        self.newest_first
            .extend(in_window.into_iter().rev().take(room));
        Ok(passed_since)
    }

    /// The owned line, when it is one a diagnosis uses (or `keep_all`).
    fn keep(&self, l: &RawLine<'_>) -> Option<ErrorLogLine> {
        let class = classify_line(l.level, l.message);
        (self.limits.keep_all || class.is_some() || is_reload_notice(l.message))
            .then(|| l.to_owned_line(class))
    }

    /// Parse one line and keep it if it is in the window; `true` when the window's start is passed.
    fn take(&mut self, raw: &[u8]) -> bool {
        let text = String::from_utf8_lossy(raw);
        let Some(line) = parse_raw(text.trim_end_matches('\r'), &mut self.clock) else {
            return false;
        };
        self.parsed_lines += 1;
        if line.time < self.since {
            return true;
        }
        if let Some(kept) = self.keep(&line) {
            if self.newest_first.len() < self.limits.max_lines {
                self.newest_first.push(kept);
            }
        }
        false
    }
}

/// Read one line, keeping at most `cap` bytes of it; returns the bytes consumed (0 at EOF).
fn read_line_capped<R: std::io::BufRead>(
    r: &mut R,
    out: &mut Vec<u8>,
    cap: usize,
) -> std::io::Result<usize> {
    let mut consumed = 0;
    loop {
        let buf = r.fill_buf()?;
        if buf.is_empty() {
            return Ok(consumed);
        }
        let (chunk, found) = match buf.iter().position(|b| *b == b'\n') {
            Some(i) => (&buf[..=i], true),
            None => (buf, false),
        };
        let room = cap.saturating_sub(out.len());
        out.extend_from_slice(&chunk[..chunk.len().min(room)]);
        let n = chunk.len();
        r.consume(n);
        consumed += n;
        if found {
            return Ok(consumed);
        }
    }
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

/// Parse `YYYY/MM/DD HH:MM:SS [level] pid#tid: message`. Lines without that start (garbage,
/// continuation lines of multi-line messages) give `None`.
pub fn parse_line(text: &str, clock: &mut LocalClock) -> Option<ErrorLogLine> {
    let raw = parse_raw(text, clock)?;
    Some(raw.to_owned_line(classify_line(raw.level, raw.message)))
}

/// A parsed line still borrowing its text: the reader decides whether to keep it before
/// allocating anything.
struct RawLine<'a> {
    time: i64,
    stamp: &'a str,
    level: &'a str,
    message: &'a str,
}

impl RawLine<'_> {
    fn to_owned_line(&self, class: Option<UpstreamErrorClass>) -> ErrorLogLine {
        ErrorLogLine {
            time: self.time,
            stamp: self.stamp.to_string(),
            level: self.level.to_string(),
            upstream: quoted_field(self.message, ", upstream: \""),
            server: plain_field(self.message, ", server: "),
            message: self.message.to_string(),
            class,
        }
    }
}

fn parse_raw<'a>(text: &'a str, clock: &mut LocalClock) -> Option<RawLine<'a>> {
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
    Some(RawLine {
        time,
        stamp,
        level,
        message,
    })
}

/// `signal 1 (SIGHUP) received from 1234, reconfiguring` / `reconfiguring` (level notice).
pub fn is_reload_notice(message: &str) -> bool {
    message.contains("(SIGHUP) received") || message == "reconfiguring"
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

/// Classify a line by level and message: only `error` and worse report failures (`warn` lines
/// such as "an upstream response is buffered" do not).
pub fn classify_line(level: &str, message: &str) -> Option<UpstreamErrorClass> {
    match level {
        "error" | "crit" | "alert" | "emerg" => classify(message),
        _ => None,
    }
}

/// Does the message concern an upstream? nginx marks those with the phase
/// (`while connecting to upstream`, `while reading response header from upstream`) and the
/// `upstream: "..."` field; client-side failures (`while waiting for request`, a client's TLS
/// handshake, a missing static file) have neither.
fn about_upstream(m: &str) -> bool {
    m.contains("upstream")
        || m.contains("while reading response header")
        || m.contains("connect() to ")
        || m.contains("connect() failed")
        || m.contains("could not be resolved")
        || m.starts_with("FastCGI sent")
}

/// Classify an error-log message about an upstream; `None` for lines that are not about one.
pub fn classify(message: &str) -> Option<UpstreamErrorClass> {
    use UpstreamErrorClass::*;
    let m = message;
    if !about_upstream(m) {
        return None;
    }
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

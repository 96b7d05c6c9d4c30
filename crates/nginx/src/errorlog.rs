//! nginx's error log, read backward from the end and only as far as the time window reaches,
//! so the cost is the window's size and not the file's.
//!
//! Line format: `2026/11/21 03:12:09 [error] 1234#1234: *567 connect() to unix:/run/php/x.sock
//! failed (13: Permission denied) while connecting to upstream, client: 10.0.0.5, server:
//! shop.example, request: "GET / HTTP/1.1", upstream: "fastcgi://unix:/run/php/x.sock:", host: "shop.example"`

use std::collections::HashMap;

use std::path::{Path, PathBuf};

use serde::Serialize;
use why502_host::{LineTake, ReadError, TailLimits};

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
    /// Lines stamped later than now (a clock that was wrong, or jumped back): not in the
    /// window, whatever the window is.
    pub future_lines: u64,
}

/// A line stamped this far past now is from a clock that was ahead; nginx caches its time
/// per event loop iteration, so a second or two is ordinary.
const FUTURE_SLACK_SECS: i64 = 60;

/// Read the lines of `path` stamped at or after `since` (seconds since the epoch), following
/// into rotated files (`path.1`, `path.N.gz`) while the window reaches back further.
pub fn read_window(
    path: &Path,
    since: i64,
    limits: WindowLimits,
) -> Result<ErrorLogWindow, ReadError> {
    read_window_about(path, since, limits, &|_| true)
}

/// What a reader's filter sees of a line, before anything is allocated for it.
#[derive(Debug, Clone, Copy)]
pub struct LineRef<'a> {
    pub message: &'a str,
}

impl<'a> LineRef<'a> {
    /// The `upstream: "..."` field (a slice of the message), found when asked: a filter
    /// that does not need it does not pay for the search.
    pub fn upstream(&self) -> Option<&'a str> {
        quoted_field_ref(self.message, UPSTREAM_FIELD)
    }
}

/// Which lines a run keeps: `about` says whether an upstream failure concerns what the run
/// asks about (one of its upstreams). A busy shared log's lines about other sites are then
/// dropped as they are read, unclassified: memory and the lookups after follow this run's
/// lines, not the log's traffic.
pub type LineFilter<'f> = &'f (dyn Fn(&LineRef<'_>) -> bool + Sync);

/// `read_window`, keeping only the upstream failures `about` accepts (and reload notices).
pub fn read_window_about(
    path: &Path,
    since: i64,
    limits: WindowLimits,
    about: LineFilter<'_>,
) -> Result<ErrorLogWindow, ReadError> {
    read_window_screened(path, since, limits, about, None)
}

/// `read_window_about` for a filter that accepts only lines holding one of `needles` (a few
/// addresses: one site's view): blocks of a busy log that hold none of them, and no reload
/// notice, are skipped by a substring search instead of parsed line by line.
pub fn read_window_screened(
    path: &Path,
    since: i64,
    limits: WindowLimits,
    about: LineFilter<'_>,
    needles: Option<&[String]>,
) -> Result<ErrorLogWindow, ReadError> {
    read_window_of(
        path,
        since,
        limits,
        &|text| Some(text),
        about,
        Some(unstamped),
        needles,
    )
}

/// The text every reload notice holds (`is_reload_notice`).
const RELOAD_NEEDLE: &str = "reconfiguring";

/// A physical line of an error-log file without nginx's stamp (`2026/11/21 03:12:09 [`): the
/// continuation of the entry above it, as what a backend wrote to stderr with newlines is.
fn unstamped(raw: &[u8]) -> bool {
    let shape = b"dddd/dd/dd dd:dd:dd [";
    raw.len() < shape.len()
        || !raw.iter().zip(shape).all(|(b, s)| match s {
            b'd' => b.is_ascii_digit(),
            other => b == other,
        })
}

/// `read_window` over a syslog file (`error_log syslog:...` with a syslog daemon writing
/// /var/log/syslog or the like): the lines tagged `tag` (nginx's default tag is `nginx`),
/// whose message is the error-log line nginx would have written to a file, its own time
/// stamp included.
pub fn read_syslog_window(
    path: &Path,
    tag: &str,
    since: i64,
    limits: WindowLimits,
) -> Result<ErrorLogWindow, ReadError> {
    read_syslog_window_about(path, tag, since, limits, &|_| true)
}

/// `read_syslog_window`, keeping only the upstream failures `about` accepts.
pub fn read_syslog_window_about(
    path: &Path,
    tag: &str,
    since: i64,
    limits: WindowLimits,
    about: LineFilter<'_>,
) -> Result<ErrorLogWindow, ReadError> {
    let plain = format!(" {tag}: ");
    let with_pid = format!(" {tag}[");
    read_window_of(
        path,
        since,
        limits,
        &|text| {
            if let Some((_, rest)) = text.split_once(plain.as_str()) {
                return Some(rest);
            }
            let (_, rest) = text.split_once(with_pid.as_str())?;
            rest.split_once("]: ").map(|(_, msg)| msg)
        },
        about,
        // A syslog line is a message of its own.
        None,
        None,
    )
}

/// The tag of an `error_log syslog:` spec (`server=unix:/dev/log,tag=web,...`); nginx's
/// default is `nginx`.
pub fn syslog_tag(spec: &str) -> &str {
    spec.split(',')
        .find_map(|part| part.trim().strip_prefix("tag="))
        .filter(|t| !t.is_empty())
        .unwrap_or("nginx")
}

/// One in this many lines the filter skips unparsed is parsed for its time.
const SAMPLE_EVERY: u32 = 32;

/// The window reader; `message_of` finds the error-log line inside a raw line.
fn read_window_of(
    path: &Path,
    since: i64,
    limits: WindowLimits,
    message_of: &dyn Fn(&str) -> Option<&str>,
    about: LineFilter<'_>,
    continuation: Option<fn(&[u8]) -> bool>,
    needles: Option<&[String]>,
) -> Result<ErrorLogWindow, ReadError> {
    let mut clock = LocalClock::default();
    let finders: Option<Vec<memchr::memmem::Finder<'_>>> =
        needles.filter(|_| !limits.keep_all).map(|n| {
            n.iter()
                .map(String::as_str)
                .chain([RELOAD_NEEDLE])
                .filter(|n| !n.is_empty())
                .map(memchr::memmem::Finder::new)
                .collect()
        });
    let screen = |lines: &[u8]| {
        finders
            .as_ref()
            .is_none_or(|f| f.iter().any(|f| f.find(lines).is_some()))
    };
    let mut parsed_lines = 0u64;
    let mut future_lines = 0u64;
    let until = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(i64::MAX)
        .saturating_add(FUTURE_SLACK_SECS);
    let tail_limits = TailLimits {
        max_bytes: limits.max_bytes,
        max_line: limits.max_line,
        max_items: limits.max_lines,
        follow_rotated: true,
        continuation,
    };
    let mut screened_out = 0u32;
    let screen: Option<why502_host::BlockScreen<'_>> = match finders {
        Some(_) => Some(&screen),
        None => None,
    };
    let read = why502_host::read_tail_screened(path, tail_limits, screen, |raw| {
        // from_utf8's ASCII fast path first; the lossy walk only for a line that needs it.
        let text = match std::str::from_utf8(raw) {
            Ok(t) => std::borrow::Cow::Borrowed(t),
            Err(_) => String::from_utf8_lossy(raw),
        };
        // A busy shared log is mostly other sites' lines and lines below error: the level,
        // then the run's filter on the message (the same filter as below, on the same text),
        // skip them before the stamp is parsed. Every SAMPLE_EVERY-th of them is still parsed,
        // so the read stops near the window's start as before.
        let mut screen = None;
        if !limits.keep_all {
            let Some((_, level, message)) = message_of(&text).and_then(split_entry) else {
                return LineTake::Skip;
            };
            let wanted = match level {
                "error" | "crit" | "alert" | "emerg" => about(&LineRef { message }),
                "notice" => is_reload_notice(message),
                _ => false,
            };
            if !wanted {
                // Still a line in nginx's form: a log of other sites' lines is an nginx log.
                parsed_lines += 1;
                screened_out += 1;
                if screened_out % SAMPLE_EVERY != 0 {
                    return LineTake::Skip;
                }
            }
            screen = Some(wanted);
        }
        let Some(line) = message_of(&text).and_then(|t| parse_raw(t, &mut clock)) else {
            return LineTake::Skip;
        };
        if screen != Some(false) {
            parsed_lines += 1;
        }
        if line.time < since {
            return LineTake::Older;
        }
        if line.time > until {
            future_lines += 1;
            return LineTake::Skip;
        }
        // A line parsed only for its time.
        if screen == Some(false) {
            return LineTake::Skip;
        }
        // Keep only what a diagnosis uses, so memory follows the failures, not the traffic.
        if limits.keep_all || (line.level == "notice" && is_reload_notice(line.message)) {
            let class = classify_line(line.level, line.message);
            return LineTake::Keep(line.to_owned_line(class));
        }
        // The cheap tests first: the level, then whether the run asks about the line at all;
        // only then the classifier's substring searches.
        if !matches!(line.level, "error" | "crit" | "alert" | "emerg") {
            return LineTake::Skip;
        }
        // The screen asked the filter already, about this very message.
        if screen.is_none()
            && !about(&LineRef {
                message: line.message,
            })
        {
            return LineTake::Skip;
        }
        match classify(line.message) {
            Some(class) => LineTake::Keep(line.to_owned_line(Some(class))),
            None => LineTake::Skip,
        }
    })?;
    Ok(ErrorLogWindow {
        source: path.to_path_buf(),
        rotated: read.rotated,
        lines: read.items,
        truncated: read.truncated,
        bytes_read: read.bytes_read,
        parsed_lines,
        future_lines,
    })
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
            upstream: quoted_field_ref(self.message, UPSTREAM_FIELD).map(str::to_string),
            server: plain_field(self.message, ", server: "),
            message: self.message.to_string(),
            class,
        }
    }
}

fn parse_raw<'a>(text: &'a str, clock: &mut LocalClock) -> Option<RawLine<'a>> {
    let (stamp, level, message) = split_entry(text)?;
    Some(RawLine {
        time: clock.parse(stamp)?,
        stamp,
        level,
        message,
    })
}

/// `STAMP [level] 1234#1234: *567 message` cut into stamp, level and message, the stamp not
/// yet read as a time. The connection number is optional.
fn split_entry(text: &str) -> Option<(&str, &str, &str)> {
    // Byte searches over the short head: `str::split_once` with a two-byte pattern builds a
    // substring searcher per call, which costs more than the whole head on a busy log.
    let bytes = text.as_bytes();
    let stamp = text.get(..19)?;
    if bytes.get(19..21)? != b" [" {
        return None;
    }
    let close = 21 + bytes[21..].iter().position(|b| *b == b']')?;
    if bytes.get(close + 1) != Some(&b' ') {
        return None;
    }
    let level = text.get(21..close)?;
    // `1234#1234: ` — the pid and thread, then the message.
    let head = close + 2;
    let colon = head + bytes[head..].windows(2).position(|w| w == b": ")?;
    let message = text.get(colon + 2..)?;
    let message = match message.strip_prefix('*') {
        Some(m) => m.split_once(' ').map(|(_, m)| m).unwrap_or(m),
        None => message,
    };
    Some((stamp, level, message))
}

/// `signal 1 (SIGHUP) received from 1234, reconfiguring` / `reconfiguring` (level notice).
pub fn is_reload_notice(message: &str) -> bool {
    message.contains("(SIGHUP) received") || message == "reconfiguring"
}

const UPSTREAM_FIELD: &str = ", upstream: \"";

fn quoted_field_ref<'a>(msg: &'a str, key: &str) -> Option<&'a str> {
    let start = msg.find(key)? + key.len();
    let end = msg[start..].find('"')? + start;
    Some(&msg[start..end])
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
                let b = why502_host::civil::local_hour_to_epoch(
                    num(0..4)?,
                    num(5..7)?,
                    num(8..10)?,
                    num(11..13)?,
                )?;
                self.hours.insert(hour_key.to_string(), b);
                b
            }
        };
        Some(base + mi * 60 + s)
    }
}

pub mod exits;

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
    /// nginx could not create or write its own temp file (permission, missing directory)
    /// while buffering the response: nginx's filesystem, not the backend.
    TempFile,
    /// nginx's temp file hit a full filesystem (28: No space left on device).
    TempFileNoSpace,
    /// The application failed: `FastCGI sent in stderr: "PHP message: PHP Fatal error: …"`
    /// (uncaught errors, memory limit, max execution time, parse errors).
    AppError,
    /// The backend does not speak the protocol nginx talks to it (FastCGI, HTTP/2), or broke
    /// its framing: `unsupported FastCGI protocol version: 72` is an HTTP server answering
    /// `fastcgi_pass`.
    ProtocolError,
    /// connect() failed (1: Operation not permitted): a local packet filter (an OUTPUT rule)
    /// or a security policy refused nginx's own connect.
    ConnectNotPermitted,
    /// connect() failed (99: Cannot assign requested address): nginx ran out of local ports
    /// to connect from (many short connections in TIME_WAIT, no keepalive to the upstream).
    LocalPortsExhausted,
    /// nginx could not form the upstream from a variable (`no port in upstream`, `invalid
    /// URL prefix`): its config, a 500, not the backend.
    ConfigError,
    Other,
}

impl UpstreamErrorClass {
    /// Every class, in declaration order.
    pub const ALL: [UpstreamErrorClass; 22] = {
        use UpstreamErrorClass::*;
        [
            NoSuchFile,
            PermissionDenied,
            ConnectionRefused,
            ListenQueueFull,
            ConnectTimeout,
            ReadTimeout,
            Reset,
            TooBigHeader,
            InvalidResponse,
            NoLiveUpstreams,
            Tls,
            Dns,
            NoRoute,
            PrimaryScriptUnknown,
            TempFile,
            TempFileNoSpace,
            AppError,
            ProtocolError,
            ConnectNotPermitted,
            LocalPortsExhausted,
            ConfigError,
            Other,
        ]
    };

    /// The class's id as the report's `steps[].classes[].class` names it (its serde name).
    pub fn id(self) -> &'static str {
        use UpstreamErrorClass::*;
        match self {
            NoSuchFile => "no_such_file",
            PermissionDenied => "permission_denied",
            ConnectionRefused => "connection_refused",
            ListenQueueFull => "listen_queue_full",
            ConnectTimeout => "connect_timeout",
            ReadTimeout => "read_timeout",
            Reset => "reset",
            TooBigHeader => "too_big_header",
            InvalidResponse => "invalid_response",
            NoLiveUpstreams => "no_live_upstreams",
            Tls => "tls",
            Dns => "dns",
            NoRoute => "no_route",
            PrimaryScriptUnknown => "primary_script_unknown",
            TempFile => "temp_file",
            TempFileNoSpace => "temp_file_no_space",
            AppError => "app_error",
            ProtocolError => "protocol_error",
            ConnectNotPermitted => "connect_not_permitted",
            LocalPortsExhausted => "local_ports_exhausted",
            ConfigError => "config_error",
            Other => "other",
        }
    }

    pub fn describe(self) -> &'static str {
        use UpstreamErrorClass::*;
        match self {
            NoSuchFile => "socket path does not exist (2: No such file or directory)",
            PermissionDenied => "permission denied connecting (13)",
            ConnectionRefused => {
                "connection refused (111): nothing listened, or a packet filter rejected it"
            }
            ListenQueueFull => {
                "listen queue full (11: Resource temporarily unavailable): all workers busy"
            }
            ConnectTimeout => "connect timed out (110): packets dropped on the way (firewall?)",
            ReadTimeout => "upstream timed out (after connecting: sending, handshaking or reading)",
            Reset => "connection reset or closed before a complete response",
            TooBigHeader => "response header bigger than nginx's buffer",
            InvalidResponse => "malformed response",
            NoLiveUpstreams => "no live upstreams: every server marked failed",
            Tls => "TLS handshake or certificate failure",
            Dns => "host name does not resolve",
            NoRoute => "no route to the backend (113: No route to host, or 101: Network is unreachable)",
            PrimaryScriptUnknown => {
                "FastCGI \"Primary script unknown\": a 404 for a missing script, not a 502"
            }
            TempFile => "nginx could not write its own temp file",
            TempFileNoSpace => "nginx's temp file hit a full filesystem (28)",
            AppError => "the application's fatal error (PHP, in FastCGI stderr)",
            ProtocolError => "the backend does not speak the protocol nginx expects (FastCGI, HTTP/2 framing)",
            ConnectNotPermitted => "connect not permitted (1: Operation not permitted): a local packet filter or policy",
            LocalPortsExhausted => "no local port left to connect from (99: Cannot assign requested address)",
            ConfigError => "nginx could not form the upstream address from its config (a 500)",
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
        || m.contains("while resolving")
        || m.contains(" is not enough for cache key")
        || m.starts_with("invalid URL prefix in ")
        || m.contains("while reading response header")
        || m.contains("connect() to ")
        || m.contains("connect() failed")
        || m.contains("could not be resolved")
        || m.starts_with("no resolver defined to resolve ")
        || m.starts_with("FastCGI sent")
}

/// What a PHP fatal error looks like in FastCGI stderr (php_error_cb's labels, and the
/// messages of the memory limit and max_execution_time, which are fatal errors too).
const PHP_FATAL: &[&str] = &[
    "PHP Fatal error",
    "PHP Parse error",
    "PHP Core error",
    "PHP Compile error",
    "PHP Recoverable fatal error",
    "Allowed memory size of",
    "Maximum execution time of",
];

/// The PHP message a FastCGI stderr line quotes (`PHP Fatal error:  Uncaught …`), if any.
pub fn php_message(message: &str) -> Option<&str> {
    let (_, rest) = message.split_once("PHP message: ")?;
    Some(
        rest.split("\" while reading")
            .next()
            .unwrap_or(rest)
            .trim_end_matches('"'),
    )
}

/// The request a line names (`request: "GET /cart.php HTTP/1.1"` → `GET /cart.php HTTP/1.1`).
pub fn request_field(message: &str) -> Option<&str> {
    quoted_field_ref(message, ", request: \"")
}

/// The host name a resolver line is about: `backend.internal could not be resolved (3: Host
/// not found)` and `no resolver defined to resolve backend.internal` (ngx_http_upstream.c)
/// carry no port and no `upstream:` field, only the name as the pass wrote it.
pub fn resolved_name(message: &str) -> Option<&str> {
    if let Some(rest) = message.strip_prefix("no resolver defined to resolve ") {
        return rest.split([',', ' ']).next().filter(|n| !n.is_empty());
    }
    let (name, _) = message.split_once(" could not be resolved")?;
    name.rsplit(' ').next().filter(|n| !n.is_empty())
}

/// File operations nginx does on its own temp and cache files while buffering a response.
const TEMP_FILE_OPS: &[&str] = &[
    "open() \"",
    "write() \"",
    "pwrite() \"",
    "pwritev() \"",
    "writev() \"",
    "mkdir() \"",
    "rename() \"",
];

/// The errno of a failed operation on one of nginx's own files (`open() "/var/lib/nginx/
/// proxy/1/00/0000000001" failed (13: Permission denied) while reading upstream`): the quoted
/// path is a file, never the upstream's `unix:` socket.
fn temp_file_errno(m: &str) -> Option<u32> {
    let op = TEMP_FILE_OPS.iter().find(|op| m.starts_with(**op))?;
    let rest = &m[op.len()..];
    let (path, after) = rest.split_once('"')?;
    if path.starts_with("unix:") || !path.starts_with('/') {
        return None;
    }
    let errno = after.split_once("failed (")?.1.split_once(':')?.0;
    errno.trim().parse().ok()
}

/// The file a temp-file failure names (`open() "/var/lib/nginx/proxy/..." failed ...`).
pub fn temp_file_path(message: &str) -> Option<&str> {
    let op = TEMP_FILE_OPS.iter().find(|op| message.starts_with(**op))?;
    message[op.len()..].split_once('"').map(|(p, _)| p)
}

/// Classify an error-log message about an upstream; `None` for lines that are not about one.
pub fn classify(message: &str) -> Option<UpstreamErrorClass> {
    use UpstreamErrorClass::*;
    let m = message;
    if !about_upstream(m) {
        return None;
    }
    // What PHP wrote to stderr is the application's: a fatal error is its failure; warnings,
    // notices and deprecations are not failures at all.
    if m.starts_with("FastCGI sent in stderr")
        && !m.contains("Primary script unknown")
        && !m.contains("Unable to open primary script")
    {
        return PHP_FATAL.iter().any(|f| m.contains(f)).then_some(AppError);
    }
    // After a 101 the connection is a tunnel (WebSocket): its close or idle timeout ends
    // that tunnel, and no 502 is sent. Removing a temp file after the response is clean-up.
    if m.contains("while proxying upgraded connection") || m.starts_with("unlink() \"") {
        return None;
    }
    let class = if let Some(errno) = temp_file_errno(m) {
        if errno == 28 {
            TempFileNoSpace
        } else {
            TempFile
        }
    } else if temp_file_path(m).is_some() && m.contains(" has written only ") {
        // A short write to nginx's own file (ngx_write_chain_to_file): its filesystem is full.
        TempFileNoSpace
    } else if m.contains("while resolving") {
        // The resolver's own socket (`resolver: 127.0.0.1:53`), whatever the errno says.
        Dns
    } else if m.contains("Primary script unknown") || m.contains("Unable to open primary script") {
        PrimaryScriptUnknown
    } else if m.contains("no live upstreams") {
        NoLiveUpstreams
    } else if m.contains("too big header")
        || m.contains("too big trailers")
        || m.contains("too large http2 header")
        // The cache key must fit in proxy_buffer_size, like the header: the same fix.
        || m.contains(" is not enough for cache key")
    {
        TooBigHeader
    } else if is_protocol_error(m) {
        ProtocolError
    } else if m.starts_with("no port in upstream ") || m.starts_with("invalid URL prefix in ") {
        ConfigError
    } else if m.contains("SSL_do_handshake()")
        || m.contains("while SSL handshaking to upstream")
        || m.contains("SSL certificate verify")
        || m.contains("upstream SSL")
        || m.starts_with("SSL_read() failed (SSL:")
        || m.starts_with("peer closed connection in SSL handshake")
    {
        Tls
    } else if m.contains("could not be resolved")
        || m.contains("host not found in upstream")
        || m.starts_with("no resolver defined to resolve ")
    {
        Dns
    } else if m.contains("(2: No such file or directory)") {
        NoSuchFile
    } else if m.contains("(13: Permission denied)") {
        PermissionDenied
    } else if m.contains(": Connection refused)") {
        // 111 on Linux; 61 on the BSDs (`kevent() reported that connect() failed`).
        ConnectionRefused
    } else if m.contains("(1: Operation not permitted) while connecting") {
        ConnectNotPermitted
    } else if m.contains("(99: Cannot assign requested address) while connecting") {
        LocalPortsExhausted
    } else if m.contains("(11: Resource temporarily unavailable)") {
        ListenQueueFull
    } else if m.contains("(110: Connection timed out) while connecting") {
        ConnectTimeout
    } else if is_io_failure(m) && m.contains("(110: Connection timed out)") {
        // recv()/send() failing with ETIMEDOUT: TCP gave up on a connection whose peer
        // vanished (retransmissions unanswered), not nginx's read timeout.
        Reset
    } else if m.contains("timed out") && m.contains("upstream") {
        ReadTimeout
    } else if m.contains("(104: Connection reset by peer)")
        || m.contains("prematurely closed")
        || m.contains("(32: Broken pipe)")
        || m.starts_with("upstream rejected request with error")
        || m.starts_with("upstream sent goaway")
    {
        Reset
    } else if m.contains("no valid HTTP")
        || m.contains("sent invalid")
        // The header checks of ngx_http_upstream.c (1.23+), HTTP/2 framing of grpc and
        // proxy_v2: a response nginx refuses to relay.
        || m.starts_with("upstream sent duplicate")
        || m.starts_with("upstream sent unknown \"Transfer-Encoding\"")
        || m.starts_with("upstream sent \"Content-Length\" and \"Transfer-Encoding\"")
        || m.starts_with("upstream prematurely sent response")
        || m.contains("response with early hints")
        || m.starts_with("upstream sent no :status header")
        || m.starts_with("upstream sent trailer without end stream flag")
        || m.contains("larger than indicated content length")
    {
        InvalidResponse
    } else if m.contains("(113: No route to host)") || m.contains("(101: Network is unreachable)") {
        NoRoute
    } else if m.contains("upstream") || m.contains(" is not enough for cache key") {
        Other
    } else {
        return None;
    };
    Some(class)
}

/// A system call on the connection failed (as opposed to nginx's own timer firing).
fn is_io_failure(m: &str) -> bool {
    [
        "recv() failed (",
        "send() failed (",
        "writev() failed (",
        "readv() failed (",
    ]
    .iter()
    .any(|op| m.starts_with(op))
}

/// What nginx writes when the bytes back are not the protocol it speaks to this upstream:
/// FastCGI records (ngx_http_fastcgi_module.c) and HTTP/2 frames (grpc, proxy_v2).
fn is_protocol_error(m: &str) -> bool {
    const SIGNS: &[&str] = &[
        "upstream sent unexpected FastCGI record",
        "upstream sent unsupported FastCGI protocol version",
        "upstream sent invalid FastCGI record type",
        "upstream sent unexpected FastCGI request id",
        "upstream sent too large http2 frame",
        "upstream sent unexpected http2 frame",
        "upstream sent frame for unknown stream",
        "upstream sent unexpected push promise frame",
        "upstream sent invalid http2 table index",
        "frame with invalid length",
        "upstream violated stream flow control",
        "upstream sent too many ping frames",
    ];
    SIGNS
        .iter()
        .any(|s| m.starts_with(s) || (s.starts_with("frame") && m.contains(s)))
}

/// The phase of the request a message names (`while connecting to upstream`, …), in the
/// table's words: `connecting`, `sending request`, `SSL handshaking`, `reading response
/// header`, `reading upstream`, `resolving`, or `other`.
pub fn phase(message: &str) -> &'static str {
    const PHASES: &[(&str, &str)] = &[
        ("while connecting to upstream", "connecting"),
        ("while sending request to upstream", "sending request"),
        ("while sending to upstream", "sending request"),
        ("while SSL handshaking to upstream", "SSL handshaking"),
        (
            "while reading response header from upstream",
            "reading response header",
        ),
        ("while reading upstream", "reading upstream"),
        ("while resolving", "resolving"),
        (" could not be resolved (", "resolving"),
        ("no resolver defined to resolve ", "resolving"),
    ];
    PHASES
        .iter()
        .find(|(text, _)| message.contains(text))
        .map(|(_, p)| *p)
        .unwrap_or("other")
}

/// The errno a message quotes, as nginx writes it: `(111: Connection refused)`.
pub fn errno(message: &str) -> Option<(u32, &str)> {
    let mut rest = message;
    while let Some(open) = rest.find('(') {
        let after = &rest[open + 1..];
        if let Some((num, tail)) = after.split_once(": ") {
            if let (Ok(n), Some((text, _))) = (num.parse::<u32>(), tail.split_once(')')) {
                return Some((n, text));
            }
        }
        rest = after;
    }
    None
}

/// The class's description with what this line says: the phase it failed in and the errno
/// it quotes (`upstream timed out while SSL handshaking (110: Connection timed out)`).
pub fn describe_line(class: UpstreamErrorClass, message: &str) -> String {
    let mut text = class.describe().to_string();
    let phase = phase(message);
    if phase != "other" {
        text.push_str(&format!(", while {phase}"));
    }
    if let Some((n, what)) = errno(message) {
        let quoted = format!("({n}: {what})");
        if !text.contains(&quoted) {
            text.push_str(&format!(" {quoted}"));
        }
    }
    text
}

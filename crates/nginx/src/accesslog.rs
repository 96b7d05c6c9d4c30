//! nginx's access logs, as the configuration writes them: which file each server logs to and
//! in which `log_format`, and a window of one read backward like the error log, counted per
//! upstream address (when the format holds `$upstream_addr`) or per host (`$host`,
//! `$server_name`), else for the whole file.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use why502_host::{read_tail, LineTake, ReadError, TailLimits};

use crate::config::{Directive, Word};

/// nginx's built-in format.
pub const COMBINED: &str = "$remote_addr - $remote_user [$time_local] \"$request\" $status $body_bytes_sent \"$http_referer\" \"$http_user_agent\"";

/// A `log_format` cut into literals and variables.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogFormat {
    pub name: String,
    pub parts: Vec<Part>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Part {
    Lit(String),
    Var(String),
}

impl LogFormat {
    pub fn parse(name: &str, text: &str) -> LogFormat {
        let mut parts = Vec::new();
        let mut lit = String::new();
        let mut chars = text.char_indices().peekable();
        while let Some((i, c)) = chars.next() {
            if c != '$' {
                lit.push(c);
                continue;
            }
            let rest = &text[i + 1..];
            let (var, len) = if let Some(inner) = rest.strip_prefix('{') {
                match inner.find('}') {
                    Some(end) => (&inner[..end], end + 2),
                    None => ("", 0),
                }
            } else {
                let end = rest
                    .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                    .unwrap_or(rest.len());
                (&rest[..end], end)
            };
            if var.is_empty() {
                lit.push(c);
                continue;
            }
            if !lit.is_empty() {
                parts.push(Part::Lit(std::mem::take(&mut lit)));
            }
            parts.push(Part::Var(var.to_string()));
            for _ in 0..len {
                chars.next();
            }
        }
        if !lit.is_empty() {
            parts.push(Part::Lit(lit));
        }
        LogFormat {
            name: name.to_string(),
            parts,
        }
    }

    pub fn has(&self, var: &str) -> bool {
        self.parts
            .iter()
            .any(|p| matches!(p, Part::Var(v) if v == var))
    }

    /// The variables of `line`, by name: each runs to the next literal (to the end for the
    /// last). `None` when the line does not have the format's shape.
    pub fn fields<'l>(&self, line: &'l str) -> Option<HashMap<&str, &'l str>> {
        let mut out = HashMap::new();
        let mut pos = 0;
        for (i, p) in self.parts.iter().enumerate() {
            match p {
                Part::Lit(l) => {
                    if !line[pos..].starts_with(l.as_str()) {
                        return None;
                    }
                    pos += l.len();
                }
                Part::Var(v) => {
                    let end = match self.parts.get(i + 1) {
                        Some(Part::Lit(next)) => pos + line[pos..].find(next.as_str())?,
                        // Two variables in a row: nothing to cut at; the rest is the first's.
                        _ => line.len(),
                    };
                    out.insert(v.as_str(), &line[pos..end]);
                    pos = end;
                }
            }
        }
        Some(out)
    }
}

/// One access log file and the servers that write to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessLogUse {
    pub path: PathBuf,
    pub format: LogFormat,
    /// The `server_name`s of the servers logging here.
    pub servers: Vec<String>,
    /// More than one server block logs here.
    pub shared: bool,
}

/// The access logs the config writes: `log_format`s (and nginx's `combined`), `access_log` in
/// `http` inherited by servers without their own. `off`, syslog and paths with variables are
/// left out (nothing to read back); relative paths are against nginx's prefix.
pub fn access_logs(main: &[Directive], prefix: &Path) -> Vec<AccessLogUse> {
    let Some(http) = main
        .iter()
        .find(|d| d.name == "http")
        .and_then(|d| d.block.as_ref())
    else {
        return Vec::new();
    };
    let mut formats: HashMap<String, LogFormat> = HashMap::new();
    formats.insert("combined".into(), LogFormat::parse("combined", COMBINED));
    for d in http.iter().filter(|d| d.name == "log_format") {
        if let Some((name, rest)) = d.args.split_first() {
            let text: String = rest
                .iter()
                .filter(|a| !a.starts_with("escape="))
                .map(Word::as_str)
                .collect();
            formats.insert(name.to_string(), LogFormat::parse(name, &text));
        }
    }
    let targets = |block: &[Directive]| -> Option<Vec<(PathBuf, String)>> {
        let logs: Vec<&Directive> = block.iter().filter(|d| d.name == "access_log").collect();
        if logs.is_empty() {
            return None;
        }
        Some(
            logs.iter()
                .filter_map(|d| {
                    let path = d.args.first()?;
                    if path == "off" || path.starts_with("syslog:") || path.contains('$') {
                        return None;
                    }
                    let format = d
                        .args
                        .get(1)
                        .filter(|f| !f.contains('='))
                        .map(Word::to_string);
                    Some((
                        crate::config::resolve_against(prefix, path),
                        format.unwrap_or_else(|| "combined".into()),
                    ))
                })
                .collect(),
        )
    };
    // nginx's default is logs/access.log in combined.
    let http_level = targets(http).unwrap_or_else(|| {
        vec![(
            crate::config::resolve_against(prefix, "logs/access.log"),
            "combined".into(),
        )]
    });
    let mut by_file: Vec<(PathBuf, String, Vec<String>, usize)> = Vec::new();
    for server in http.iter().filter(|d| d.name == "server") {
        let body = server.block.as_deref().unwrap_or_default();
        let names: Vec<String> = body
            .iter()
            .filter(|d| d.name == "server_name")
            .flat_map(|d| d.args.iter().map(Word::to_string))
            .collect();
        for (path, format) in targets(body).unwrap_or_else(|| http_level.clone()) {
            match by_file
                .iter_mut()
                .find(|(p, f, ..)| *p == path && *f == format)
            {
                Some(entry) => {
                    entry.2.extend(names.iter().cloned());
                    entry.3 += 1;
                }
                None => by_file.push((path, format, names.clone(), 1)),
            }
        }
    }
    by_file
        .into_iter()
        .filter_map(|(path, format, servers, count)| {
            Some(AccessLogUse {
                path,
                format: formats.get(&format)?.clone(),
                servers,
                shared: count > 1,
            })
        })
        .collect()
}

/// Requests, 502s and 504s over a window.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Counts {
    pub requests: u64,
    pub status_502: u64,
    pub status_504: u64,
    /// Per minute (epoch minute → requests, 502s, 504s).
    pub per_minute: BTreeMap<i64, [u64; 3]>,
}

impl Counts {
    fn add(&mut self, time: i64, status: &str) {
        let (bad, timeout) = (status == "502", status == "504");
        self.requests += 1;
        self.status_502 += u64::from(bad);
        self.status_504 += u64::from(timeout);
        let m = self.per_minute.entry(time.div_euclid(60)).or_default();
        m[0] += 1;
        m[1] += u64::from(bad);
        m[2] += u64::from(timeout);
    }

    pub fn merge(&mut self, other: &Counts) {
        self.requests += other.requests;
        self.status_502 += other.status_502;
        self.status_504 += other.status_504;
        for (k, v) in &other.per_minute {
            let m = self.per_minute.entry(*k).or_default();
            for i in 0..3 {
                m[i] += v[i];
            }
        }
    }
}

/// What one access log holds in the window.
#[derive(Debug, Clone, Default)]
pub struct AccessWindow {
    pub source: PathBuf,
    /// By upstream address (each address `$upstream_addr` names, retries included).
    pub by_upstream: HashMap<String, Counts>,
    /// By `$host` / `$server_name` when the format has one.
    pub by_host: HashMap<String, Counts>,
    pub all: Counts,
    /// The oldest line read, when the byte cap stopped the read inside the window.
    pub truncated_at: Option<i64>,
    pub bytes_read: u64,
    /// Lines in the format's shape.
    pub parsed_lines: u64,
}

/// Bytes of an access log read back per run, at most: a busy site writes gigabytes an hour,
/// and the counts of the newest 64 MiB say what the window says (the window reported is then
/// what was covered).
pub const MAX_ACCESS_BYTES: u64 = 64 * 1024 * 1024;

/// The window of `path` from `since` (seconds since the epoch), counted.
pub fn read_access_window(
    path: &Path,
    format: &LogFormat,
    since: i64,
) -> Result<AccessWindow, ReadError> {
    let limits = TailLimits {
        max_bytes: MAX_ACCESS_BYTES,
        max_line: 16 * 1024,
        // Nothing is kept per line: the counts are built as the lines go by.
        max_items: 0,
        ..TailLimits::default()
    };
    let mut w = AccessWindow {
        source: path.to_path_buf(),
        ..AccessWindow::default()
    };
    let mut oldest = None;
    let host_var = ["host", "server_name"].into_iter().find(|v| format.has(v));
    let read = read_tail(path, limits, |raw| -> LineTake<()> {
        let Ok(line) = std::str::from_utf8(raw) else {
            return LineTake::Skip;
        };
        let Some(f) = format.fields(line) else {
            return LineTake::Skip;
        };
        let Some(time) = line_time(&f) else {
            return LineTake::Skip;
        };
        if time < since {
            return LineTake::Older;
        }
        w.parsed_lines += 1;
        oldest = Some(time);
        let status = f.get("status").copied().unwrap_or("");
        w.all.add(time, status);
        if let Some(addrs) = f.get("upstream_addr") {
            // `a, b` for retries, `a : b` across internal redirects; `-` for none.
            for a in addrs
                .split([',', ' '])
                .filter(|a| !a.is_empty() && *a != ":" && *a != "-")
            {
                w.by_upstream
                    .entry(a.to_string())
                    .or_default()
                    .add(time, status);
            }
        }
        if let Some(h) = host_var.and_then(|v| f.get(v)) {
            w.by_host
                .entry(h.to_ascii_lowercase())
                .or_default()
                .add(time, status);
        }
        LineTake::Skip
    })?;
    w.bytes_read = read.bytes_read;
    if read.truncated {
        w.truncated_at = oldest;
    }
    Ok(w)
}

/// The line's time: `$time_local` (`02/Dec/2026:03:22:27 +0000`), `$time_iso8601`, `$msec`.
fn line_time(f: &HashMap<&str, &str>) -> Option<i64> {
    if let Some(t) = f.get("msec") {
        return t.split('.').next()?.parse().ok();
    }
    if let Some(t) = f.get("time_local") {
        let (date, zone) = t.split_once(' ')?;
        let mut it = date.split(['/', ':']);
        let d: i64 = it.next()?.parse().ok()?;
        let mon = month(it.next()?)?;
        let y: i64 = it.next()?.parse().ok()?;
        let (h, mi, s): (i64, i64, i64) = (
            it.next()?.parse().ok()?,
            it.next()?.parse().ok()?,
            it.next()?.parse().ok()?,
        );
        return Some(utc(y, mon, d, h, mi, s) - offset(zone)?);
    }
    if let Some(t) = f.get("time_iso8601") {
        // 2026-12-02T03:22:27+00:00
        let (date, rest) = t.split_once('T')?;
        let mut d = date.split('-').map(|n| n.parse::<i64>().ok());
        let (y, mo, da) = (d.next()??, d.next()??, d.next()??);
        let (clock, zone) = rest.split_at(rest.len().checked_sub(6)?);
        let mut c = clock.split(':').map(|n| n.parse::<i64>().ok());
        let (h, mi, s) = (c.next()??, c.next()??, c.next()??);
        return Some(utc(y, mo, da, h, mi, s) - offset(&zone.replace(':', ""))?);
    }
    None
}

fn month(m: &str) -> Option<i64> {
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    MONTHS.iter().position(|x| *x == m).map(|i| i as i64 + 1)
}

fn utc(y: i64, mo: i64, d: i64, h: i64, mi: i64, s: i64) -> i64 {
    why502_host::civil::days_from_civil(y, mo, d) * 86_400 + h * 3600 + mi * 60 + s
}

/// `+0100` → 3600.
fn offset(zone: &str) -> Option<i64> {
    let sign = match zone.as_bytes().first()? {
        b'+' => 1,
        b'-' => -1,
        _ => return None,
    };
    let digits = zone.get(1..5)?;
    let h: i64 = digits.get(..2)?.parse().ok()?;
    let m: i64 = digits.get(2..)?.parse().ok()?;
    Some(sign * (h * 3600 + m * 60))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn combined_lines_are_cut_into_their_fields() {
        let f = LogFormat::parse("combined", COMBINED);
        let line = r#"10.0.0.1 - - [02/Dec/2026:03:22:27 +0100] "GET /a?b=1 HTTP/1.1" 502 157 "-" "curl/7.88.1""#;
        let got = f.fields(line).expect("the combined shape");
        assert_eq!(got["status"], "502");
        assert_eq!(got["request"], "GET /a?b=1 HTTP/1.1");
        assert_eq!(line_time(&got), Some(utc(2026, 12, 2, 2, 22, 27)));
        assert!(f.fields("garbage").is_none());
    }

    #[test]
    fn a_window_is_counted_per_upstream_and_per_host() {
        let fmt = LogFormat::parse(
            "up",
            "$remote_addr [$time_iso8601] $host \"$request\" $status up=$upstream_addr us=$upstream_status",
        );
        let mut file = tempfile::NamedTempFile::new().expect("temp");
        let lines = [
            "10.0.0.1 [2026-12-02T02:00:00+00:00] a.test \"GET / HTTP/1.1\" 502 up=unix:/run/a.sock us=502",
            "10.0.0.1 [2026-12-02T03:00:00+00:00] a.test \"GET / HTTP/1.1\" 502 up=unix:/run/a.sock us=502",
            "10.0.0.1 [2026-12-02T03:00:10+00:00] a.test \"GET / HTTP/1.1\" 200 up=unix:/run/a.sock us=200",
            "10.0.0.1 [2026-12-02T03:00:20+00:00] B.test \"GET / HTTP/1.1\" 504 up=127.0.0.1:8000, 127.0.0.1:8001 us=504, 504",
            "10.0.0.1 [2026-12-02T03:01:00+00:00] a.test \"GET /x HTTP/1.1\" 404 up=- us=-",
            "not a line",
        ];
        for l in lines {
            writeln!(file, "{l}").expect("write");
        }
        let since = utc(2026, 12, 2, 2, 30, 0);
        let w = read_access_window(file.path(), &fmt, since).expect("read");
        assert_eq!(
            (w.all.requests, w.all.status_502, w.all.status_504),
            (4, 1, 1)
        );
        let a = &w.by_upstream["unix:/run/a.sock"];
        assert_eq!((a.requests, a.status_502), (2, 1));
        assert_eq!(w.by_upstream["127.0.0.1:8001"].status_504, 1);
        assert!(!w.by_upstream.contains_key("-"));
        assert_eq!(w.by_host["b.test"].requests, 1);
        assert_eq!(w.by_host["a.test"].per_minute.len(), 2);
    }
}

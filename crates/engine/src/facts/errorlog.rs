//! nginx's error-log lines indexed by upstream: which classes nginx logged about each
//! target, with counts and first and last lines. The windows are read once per run (see
//! `Sources::error_logs`); each upstream only matches against them.

use why502_model::Evidence;
use why502_nginx::errorlog::{ErrorLogLine, ErrorLogWindow, UpstreamErrorClass};

use crate::targets::{TargetAddr, UpstreamTarget};

/// The error logs of the run, read once: each a window or the reason it could not be read.
#[derive(Debug, Default)]
pub struct ErrorLogs {
    pub windows: Vec<ErrorLogWindow>,
    pub unreadable: Vec<String>,
    /// `1h`, for summaries.
    pub since_text: String,
    /// What the report's notes should say about the reading (lines from the future).
    pub notes: Vec<String>,
    /// The classified lines by every address and upstream-block name they can be matched
    /// on, built on first use: each upstream looks its lines up instead of scanning them all.
    pub(crate) index: std::sync::OnceLock<LineIndex>,
}

/// (window, line) positions by key: `unix:/path`, `host:port` (and the prefixes a whole-word
/// match may end at), `block:NAME` for an `upstream` block named in the upstream field.
pub(crate) type LineIndex = std::collections::HashMap<String, Vec<(usize, usize)>>;

impl ErrorLogs {
    fn index(&self) -> &LineIndex {
        self.index.get_or_init(|| {
            let mut index = LineIndex::new();
            for (w, window) in self.windows.iter().enumerate() {
                for (i, l) in window.lines.iter().enumerate() {
                    if l.class.is_none() {
                        continue;
                    }
                    let mut keys = match_keys(l);
                    keys.sort();
                    keys.dedup();
                    for k in keys {
                        index.entry(k).or_default().push((w, i));
                    }
                }
            }
            index
        })
    }
}

/// Every needle `mentions` would match this line on, and the block name `names_block` would.
/// A needle matches where it starts after the start, `/`, ` ` or `"` and ends before the
/// end, `:`, `/`, `"`, ` ` or `,`: so the keys are, from each such start, every end at one of
/// those characters (an address holds no space, quote or comma; a unix path's own `/` and
/// `:` are ends too, which only adds keys).
fn match_keys(l: &ErrorLogLine) -> Vec<String> {
    let mut keys = Vec::new();
    for hay in l
        .upstream
        .iter()
        .map(String::as_str)
        .chain([l.message.as_str()])
    {
        let bytes = hay.as_bytes();
        for start in 0..bytes.len() {
            let starts_here = start == 0 || matches!(bytes[start - 1], b'/' | b' ' | b'"');
            // Only addresses are looked up: `unix:…`, or something with a port.
            if !starts_here || bytes[start] == b'/' || bytes[start] == b' ' {
                continue;
            }
            let mut end = start + 1;
            while end <= bytes.len() {
                let at_end = end == bytes.len();
                if at_end || matches!(bytes[end], b':' | b'/' | b'"' | b' ' | b',') {
                    let key = &hay[start..end];
                    if key.starts_with("unix:") || key.contains(':') {
                        keys.push(key.to_string());
                    }
                    if at_end || matches!(bytes[end], b'"' | b' ' | b',') {
                        break;
                    }
                }
                end += 1;
            }
        }
    }
    if let Some(rest) = l
        .upstream
        .as_deref()
        .and_then(|f| f.split_once("://"))
        .map(|(_, r)| r)
    {
        // `names_block`: the name is followed by the end, `/` or `:`.
        let name_end = rest.find(['/', ':']).unwrap_or(rest.len());
        keys.push(format!("block:{}", &rest[..name_end]));
    }
    keys
}

/// What the log says about one upstream, by class.
#[derive(Debug, Clone)]
pub struct ClassSeen {
    pub class: UpstreamErrorClass,
    pub count: usize,
    pub first: ErrorLogLine,
    pub last: ErrorLogLine,
    /// `/var/log/nginx/error.log @ 2026/11/21 03:12:09`
    pub last_source: String,
}

impl ClassSeen {
    pub fn evidence(&self) -> Evidence {
        Evidence::new(self.last_source.clone(), self.last.message.clone())
    }
    pub fn when(&self) -> String {
        if self.count == 1 {
            format!("at {}", self.last.stamp)
        } else {
            format!(
                "{}× from {} to {}",
                self.count, self.first.stamp, self.last.stamp
            )
        }
    }
}

/// Every class nginx logged about this upstream in the window, the newest last.
pub fn seen(target: &UpstreamTarget, logs: &ErrorLogs) -> Vec<ClassSeen> {
    let index = logs.index();
    let mut hits: Vec<(usize, usize)> = needles(target)
        .iter()
        .chain(target.name.as_ref().map(|n| format!("block:{n}")).iter())
        .filter_map(|k| index.get(k))
        .flatten()
        .copied()
        .collect();
    hits.sort_unstable();
    hits.dedup();
    let mut out: Vec<ClassSeen> = Vec::new();
    for (wi, li) in hits {
        let (Some(w), Some(l)) = (
            logs.windows.get(wi),
            logs.windows.get(wi).and_then(|w| w.lines.get(li)),
        ) else {
            continue;
        };
        {
            let Some(class) = l.class else {
                continue;
            };
            let source = format!("{} @ {}", w.source.display(), l.stamp);
            match out.iter_mut().find(|c| c.class == class) {
                Some(c) => {
                    c.count += 1;
                    if l.time < c.first.time {
                        c.first = l.clone();
                    }
                    if l.time >= c.last.time {
                        c.last = l.clone();
                        c.last_source = source;
                    }
                }
                None => out.push(ClassSeen {
                    class,
                    count: 1,
                    first: l.clone(),
                    last: l.clone(),
                    last_source: source,
                }),
            }
        }
    }
    out.sort_by_key(|c| c.last.time);
    out
}

/// How nginx names this upstream in its log lines: `unix:/path` or `host:port`.
fn needles(t: &UpstreamTarget) -> Vec<String> {
    match &t.addr {
        TargetAddr::Unix(p) => vec![format!("unix:{}", p.display())],
        TargetAddr::Tcp { .. } => vec![t.address.clone()],
    }
}

/// `no live upstreams` names the `upstream` block (`upstream: "http://app/"`), not a server:
/// it concerns every member. Matched in the upstream field only, where a name cannot be
/// confused with a word of the message. (The rule `match_keys` indexes; kept as the oracle
/// its tests compare against.)
#[cfg(test)]
fn names_block(l: &ErrorLogLine, t: &UpstreamTarget) -> bool {
    let (Some(name), Some(field)) = (&t.name, &l.upstream) else {
        return false;
    };
    let Some((_, rest)) = field.split_once("://") else {
        return false;
    };
    rest.strip_prefix(name.as_str())
        .is_some_and(|after| after.is_empty() || after.starts_with('/') || after.starts_with(':'))
}

/// Does the line name this upstream, as a whole address (not a prefix of a longer one)?
/// (The rule `match_keys` indexes; kept as the oracle its tests compare against.)
#[cfg(test)]
fn mentions(l: &ErrorLogLine, needle: &str) -> bool {
    let hay = l
        .upstream
        .as_deref()
        .into_iter()
        .chain(std::iter::once(l.message.as_str()));
    for h in hay {
        let mut from = 0;
        while let Some(i) = h[from..].find(needle) {
            let start = from + i;
            let end = start + needle.len();
            let prev = h[..start].chars().next_back();
            let next = h[end..].chars().next();
            if matches!(prev, None | Some('/' | ' ' | '"'))
                && matches!(next, None | Some(':' | '/' | '"' | ' ' | ','))
            {
                return true;
            }
            from = end;
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::{error_line, target};

    /// The indexed lookup finds exactly the lines the whole-address rule matches, on the
    /// forms nginx writes (upstream field, `connect() to …`, names that prefix each other).
    #[test]
    fn the_index_finds_what_a_scan_of_every_line_finds() {
        let lines = [
            ("fastcgi://unix:/run/php/a.sock:", "connect() to unix:/run/php/a.sock failed (2: No such file or directory)"),
            ("fastcgi://unix:/run/php/a.sock.old:", "connect() to unix:/run/php/a.sock.old failed (111: Connection refused)"),
            ("http://127.0.0.1:8000/", "connect() failed (111: Connection refused) while connecting to upstream"),
            ("http://127.0.0.1:80/api", "upstream timed out (110: Connection timed out) while reading response header from upstream"),
            ("http://10.0.0.5:8080/", "connect() to 10.0.0.5:8080 failed (113: No route to host)"),
            ("http://[::1]:9000/", "upstream prematurely closed connection while reading response header from upstream"),
            ("http://app/", "no live upstreams while connecting to upstream"),
            ("http://app2:81/", "upstream sent too big header while reading response header from upstream"),
            ("uwsgi://127.0.0.1:3031", "recv() failed (104: Connection reset by peer), upstream: 127.0.0.1:3031"),
        ];
        let mut window = ErrorLogWindow {
            source: "/var/log/nginx/error.log".into(),
            ..ErrorLogWindow::default()
        };
        for (i, (up, msg)) in lines.iter().enumerate() {
            let mut l = error_line(up, msg);
            l.time = i as i64;
            l.class = Some(UpstreamErrorClass::ConnectionRefused);
            window.lines.push(l);
        }
        let logs = ErrorLogs {
            windows: vec![window],
            ..ErrorLogs::default()
        };
        let unix = |p: &str| target(TargetAddr::Unix(p.into()));
        let tcp = |h: &str, port: u16| {
            target(TargetAddr::Tcp {
                host: h.into(),
                port,
            })
        };
        let mut named = tcp("127.0.0.1", 8001);
        named.name = Some("app".into());
        let targets = [
            unix("/run/php/a.sock"),
            unix("/run/php/a.so"),
            unix("/run/php/a.sock.old"),
            tcp("127.0.0.1", 8000),
            tcp("127.0.0.1", 800),
            tcp("127.0.0.1", 80),
            tcp("10.0.0.5", 8080),
            tcp("127.0.0.1", 3031),
            tcp("app2", 81),
            named,
        ];
        for t in &targets {
            let indexed: Vec<i64> = seen(t, &logs).iter().map(|c| c.last.time).collect();
            let oracle: Vec<i64> = logs.windows[0]
                .lines
                .iter()
                .filter(|l| needles(t).iter().any(|n| mentions(l, n)) || names_block(l, t))
                .map(|l| l.time)
                .max()
                .into_iter()
                .collect();
            let count: usize = seen(t, &logs).iter().map(|c| c.count).sum();
            let oracle_count = logs.windows[0]
                .lines
                .iter()
                .filter(|l| needles(t).iter().any(|n| mentions(l, n)) || names_block(l, t))
                .count();
            assert_eq!((indexed, count), (oracle, oracle_count), "{}", t.address);
        }
        assert_eq!(
            seen(&targets[0], &logs)[0].count,
            1,
            "a.sock is not a.sock.old"
        );
        assert_eq!(
            seen(&targets[9], &logs)[0].count,
            1,
            "the block `app`, not `app2`"
        );
    }

    #[test]
    fn matches_whole_addresses_only() {
        let l = error_line(
            "fastcgi://unix:/run/php/a.sock:",
            "connect() to unix:/run/php/a.sock failed (13: Permission denied)",
        );
        assert!(mentions(&l, "unix:/run/php/a.sock"));
        assert!(!mentions(&l, "unix:/run/php/a.so"));
        let t = error_line(
            "http://127.0.0.1:8000/",
            "connect() failed (111: Connection refused)",
        );
        assert!(mentions(&t, "127.0.0.1:8000"));
        assert!(!mentions(&t, "127.0.0.1:800"));
        assert!(!mentions(&t, "27.0.0.1:8000"));
    }
}

//! nginx's error-log lines indexed by upstream: which classes nginx logged about each
//! target, with counts and first and last lines. The windows are read once per run (see
//! `Sources::error_logs`); each upstream only matches against them.

use std::collections::HashSet;

use why502_model::Evidence;
use why502_nginx::errorlog::{ErrorLogLine, ErrorLogWindow, LineRef, UpstreamErrorClass};

use crate::targets::{TargetAddr, UpstreamTarget};

/// The run's lookup keys (`wanted_keys`). Every word of every line in the window that could
/// be an address is looked up here, a dozen per line of a busy log, so the lookup is made
/// cheap: first the key's length against the lengths the set holds (most words of a line
/// fail there), then `why502_host::hash`'s FxHash rather than SipHash, whose flood resistance
/// buys nothing for keys the run itself chose.
#[derive(Debug, Clone, Default)]
pub struct KeySet {
    keys: HashSet<String, why502_host::hash::FxBuild>,
    /// Bit n: a key of n bytes is in the set (n < 256; longer keys set bit 255).
    lengths: [u64; 4],
    /// The set holds a `dns:NAME` key (a resolver line can match) / a `://NAME` key (an
    /// upstream field can name a block): otherwise a line is not searched for those.
    has_dns: bool,
    has_blocks: bool,
    /// The address and block keys while there are few of them (a `--server-name` run): a line
    /// can only match a key it holds as a substring, and a few substring searches reject a
    /// line faster than cutting it into words.
    few: Option<Vec<String>>,
    many: bool,
}

/// Up to this many address keys, lines are screened by substring first.
const FEW_KEYS: usize = 4;

impl KeySet {
    fn length_bit(len: usize) -> (usize, u64) {
        let n = len.min(255);
        (n / 64, 1 << (n % 64))
    }
    pub fn insert(&mut self, key: String) {
        let (word, bit) = Self::length_bit(key.len());
        self.lengths[word] |= bit;
        self.has_dns |= key.starts_with("dns:");
        self.has_blocks |= key.starts_with("://");
        if !key.starts_with("dns:") {
            let few = self.few.get_or_insert_with(Vec::new);
            if few.len() < FEW_KEYS {
                few.push(key.clone());
            } else {
                // Too many to screen by: `few` stays off for good (see `screened`).
                self.many = true;
            }
        }
        self.keys.insert(key);
    }
    pub fn contains(&self, key: &str) -> bool {
        let (word, bit) = Self::length_bit(key.len());
        self.lengths[word] & bit != 0 && self.keys.contains(key)
    }
    pub fn len(&self) -> usize {
        self.keys.len()
    }
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }
    /// `false` when no address or block key of the set occurs in `text` (so none can
    /// match); `true` when one does, or when there are too many keys to screen by.
    /// The substrings one of which every line `about_wanted` accepts holds, while there are
    /// few (a `--server-name` run): the reader skips blocks of a busy log holding none.
    pub fn needles(&self) -> Option<Vec<String>> {
        if self.many {
            return None;
        }
        let mut out = self.few.clone().unwrap_or_default();
        // A resolver's line names the host in any case (`resolved_name`): its own words are
        // the needles.
        if self.has_dns {
            out.extend(
                ["could not be resolved", "no resolver defined to resolve "].map(String::from),
            );
        }
        Some(out)
    }

    fn screened(&self, text: &str) -> bool {
        match &self.few {
            Some(few) if !self.many => few.iter().any(|k| text.contains(k.as_str())),
            Some(_) => true,
            None => false,
        }
    }
}

impl FromIterator<String> for KeySet {
    fn from_iter<I: IntoIterator<Item = String>>(iter: I) -> Self {
        let mut set = KeySet::default();
        for k in iter {
            set.insert(k);
        }
        set
    }
}

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
/// match may end at), `://NAME` for an `upstream` block named in the upstream field.
pub(crate) type LineIndex = std::collections::HashMap<String, Vec<(usize, usize)>>;

impl ErrorLogs {
    /// The index of the lines that name one of `wanted` (the run's upstream addresses, and
    /// `://NAME` for its upstream blocks), built by the first caller: every caller of a run
    /// passes the same set.
    fn index(&self, wanted: &KeySet) -> &LineIndex {
        self.index.get_or_init(|| {
            let mut index = LineIndex::new();
            let mut keys = Vec::new();
            for (w, window) in self.windows.iter().enumerate() {
                for (i, l) in window.lines.iter().enumerate() {
                    if l.class.is_none() {
                        continue;
                    }
                    keys.clear();
                    match_keys(l.upstream.as_deref(), &l.message, &mut keys);
                    keys.retain(|k| wanted.contains(k));
                    keys.sort_unstable();
                    keys.dedup();
                    for k in &keys {
                        index.entry((*k).to_string()).or_default().push((w, i));
                    }
                    // A resolver line names the host alone: every upstream of that host.
                    if let Some(name) = why502_nginx::errorlog::resolved_name(&l.message) {
                        let key = dns_key(name);
                        if wanted.contains(&key) {
                            index.entry(key).or_default().push((w, i));
                        }
                    }
                }
            }
            index
        })
    }
}

/// Every needle `mentions` could match this line on, and the `://NAME` `names_block` would.
/// A needle (`unix:/path`, or `host:port`) starts after the start, `/`, ` ` or `"` and ends
/// before the end, `:`, `/`, `"`, ` ` or `,`. Words are cut at ` `, `"` and `,` (no address
/// holds one); within a word, a `host:port` holds no `/`, so it is a `/`-separated piece up
/// to one of its `:` or its end; a `unix:` path runs from `unix:` to one of its `/` or `:` or
/// the word's end. Only pieces holding a `:` can be needles.
fn match_keys<'a>(upstream: Option<&'a str>, message: &'a str, keys: &mut Vec<&'a str>) {
    // The field as the reader sees it is a slice of the message, quoted there: the message's
    // words are its words, so it is not scanned twice.
    let field = upstream.filter(|f| !slice_within(f, message));
    for hay in field.into_iter().chain([message]) {
        // Only words holding a `:` can be addresses: find the colons (a few per line), then
        // the word around each, instead of cutting the whole message into words.
        let bytes = hay.as_bytes();
        let cut = |b: &u8| matches!(b, b' ' | b'"' | b',');
        let mut from = 0;
        // `find(char)` is a memchr, not a byte loop: this runs on every line of a busy log.
        while let Some(off) = hay[from..].find(':') {
            let colon = from + off;
            let start = bytes[..colon].iter().rposition(cut).map_or(0, |p| p + 1);
            let end = bytes[colon..]
                .iter()
                .position(cut)
                .map_or(bytes.len(), |p| colon + p);
            from = end;
            // A word whose one colon ends it (`client:`, `(2:`) gives only pieces ending in
            // `:`, and no address does (nginx reads a pass's `unix:/path:` up to that colon).
            if end == colon + 1 {
                continue;
            }
            // A word right after `,` cannot start a needle (the rule wants `/`, ` ` or `"`).
            let after_comma = start > 0 && bytes[start - 1] == b',';
            word_keys(&hay[start..end], !after_comma, keys);
        }
    }
    if let Some((field, rest)) = upstream.and_then(|f| f.split_once("://").map(|(_, r)| (f, r))) {
        // `names_block`: the name is followed by the end, `/` or `:`.
        let name_end = rest.find(['/', ':']).unwrap_or(rest.len());
        let start = field.len() - rest.len();
        // Kept as a slice of the field, prefixed in the lookup by `block_key`.
        keys.push(&field[start - 3..start + name_end]);
    }
}

/// Is `inner` a slice of `outer`'s memory (not merely equal text)?
fn slice_within(inner: &str, outer: &str) -> bool {
    let o = outer.as_bytes().as_ptr_range();
    let i = inner.as_bytes().as_ptr_range();
    o.start <= i.start && i.end <= o.end
}

/// Does a line name one of `wanted` (the run's `wanted_keys`)? The error-log reader keeps
/// only such lines, by the same rule the index is built by.
pub fn about_wanted(line: &LineRef<'_>, wanted: &KeySet) -> bool {
    if wanted.screened(line.message) && names_a_key(line, wanted) {
        return true;
    }
    wanted.has_dns
        && why502_nginx::errorlog::resolved_name(line.message)
            .is_some_and(|n| wanted.contains(&dns_key(n)))
}

fn names_a_key(line: &LineRef<'_>, wanted: &KeySet) -> bool {
    let mut keys = Vec::new();
    // The field matters here only for a block name; its words are the message's.
    let field = if wanted.has_blocks {
        line.upstream()
    } else {
        None
    };
    match_keys(field, line.message, &mut keys);
    keys.iter().any(|k| wanted.contains(k))
}

/// The lookup key of an upstream block named `name`: what `match_keys` gives for
/// `scheme://name/…` (`://name`).
fn block_key(name: &str) -> String {
    format!("://{name}")
}

fn word_keys<'a>(word: &'a str, starts_clean: bool, keys: &mut Vec<&'a str>) {
    // Each place a needle may start: the word's start, and after each `/`.
    let starts = std::iter::once(0)
        .filter(|_| starts_clean)
        .chain(word.match_indices('/').map(|(i, _)| i + 1));
    for s in starts {
        let rest = &word[s..];
        if rest.starts_with("unix:") {
            // To each `/` or `:` after `unix:`, and the end.
            for (j, b) in rest.bytes().enumerate().skip(5) {
                if b == b'/' || b == b':' {
                    keys.push(&rest[..j]);
                }
            }
            keys.push(rest);
            continue;
        }
        // `host:port`: the piece up to the next `/`, cut at each of its `:` past the first.
        let piece = &rest[..rest.find('/').unwrap_or(rest.len())];
        let Some(first_colon) = piece.find(':') else {
            continue;
        };
        for (j, b) in piece.bytes().enumerate().skip(first_colon + 1) {
            if b == b':' {
                keys.push(&piece[..j]);
            }
        }
        keys.push(piece);
    }
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

/// The keys `seen` looks targets up by: their addresses and their upstream blocks' names.
pub fn wanted_keys(targets: &[UpstreamTarget]) -> KeySet {
    targets
        .iter()
        .flat_map(|t| {
            needles(t)
                .into_iter()
                .chain(t.name.as_deref().map(block_key))
        })
        .collect()
}

/// Every class nginx logged about this upstream in the window, the newest last. `wanted` is
/// the run's `wanted_keys` (the same set for every target of a run).
pub fn seen(target: &UpstreamTarget, logs: &ErrorLogs, wanted: &KeySet) -> Vec<ClassSeen> {
    let keys: Vec<String> = needles(target)
        .into_iter()
        .chain(target.name.as_deref().map(block_key))
        .collect();
    debug_assert!(
        keys.iter().all(|k| wanted.contains(k)),
        "the index holds only the run's wanted keys; {keys:?} are not all among them"
    );
    let index = logs.index(wanted);
    let mut hits: Vec<(usize, usize)> = keys
        .iter()
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

/// How nginx names this upstream in its log lines: `unix:/path` or `host:port`; and for a
/// host name, `dns:NAME`, the key of the resolver lines about it (they name no port).
fn needles(t: &UpstreamTarget) -> Vec<String> {
    match &t.addr {
        TargetAddr::Unix(p) => vec![format!("unix:{}", p.display())],
        TargetAddr::Tcp { host, .. } if host.parse::<std::net::IpAddr>().is_err() => {
            vec![t.address.clone(), dns_key(host.trim_matches(['[', ']']))]
        }
        TargetAddr::Tcp { .. } => vec![t.address.clone()],
    }
}

fn dns_key(name: &str) -> String {
    format!("dns:{}", name.to_ascii_lowercase())
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

    fn unix(path: &str) -> UpstreamTarget {
        target(TargetAddr::Unix(path.into()))
    }

    fn tcp(host: &str, port: u16) -> UpstreamTarget {
        target(TargetAddr::Tcp {
            host: host.into(),
            port,
        })
    }

    /// Resolver lines carry the host name alone (no port, no `upstream:` field): they count for
    /// every upstream of that host, whatever its port, and for no other.
    #[test]
    fn resolver_lines_are_attributed_by_host_name() {
        let mut window = ErrorLogWindow {
            source: "/var/log/nginx/error.log".into(),
            ..ErrorLogWindow::default()
        };
        for (i, msg) in [
            "Backend.Internal could not be resolved (3: Host not found), client: 203.0.113.7, server: example.com, request: \"GET / HTTP/1.1\", host: \"example.com\"",
            "no resolver defined to resolve backend.internal, client: 203.0.113.7, server: example.com, request: \"GET / HTTP/1.1\", host: \"example.com\"",
        ]
        .iter()
        .enumerate()
        {
            let mut l = error_line("", msg);
            l.upstream = None;
            l.time = i as i64;
            l.class = why502_nginx::errorlog::classify(msg);
            assert_eq!(l.class, Some(UpstreamErrorClass::Dns), "{msg}");
            window.lines.push(l);
        }
        let logs = ErrorLogs {
            windows: vec![window],
            ..ErrorLogs::default()
        };
        let tcp = |h: &str, port: u16| {
            target(TargetAddr::Tcp {
                host: h.into(),
                port,
            })
        };
        let targets = [
            tcp("backend.internal", 8080),
            tcp("backend.internal", 9090),
            tcp("other.internal", 8080),
            tcp("127.0.0.1", 8080),
        ];
        let wanted = wanted_keys(&targets);
        let counts: Vec<usize> = targets
            .iter()
            .map(|t| seen(t, &logs, &wanted).iter().map(|c| c.count).sum())
            .collect();
        assert_eq!(counts, [2, 2, 0, 0]);
    }

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
        let wanted = wanted_keys(&targets);
        for t in &targets {
            let indexed: Vec<i64> = seen(t, &logs, &wanted)
                .iter()
                .map(|c| c.last.time)
                .collect();
            let oracle: Vec<i64> = logs.windows[0]
                .lines
                .iter()
                .filter(|l| needles(t).iter().any(|n| mentions(l, n)) || names_block(l, t))
                .map(|l| l.time)
                .max()
                .into_iter()
                .collect();
            let count: usize = seen(t, &logs, &wanted).iter().map(|c| c.count).sum();
            let oracle_count = logs.windows[0]
                .lines
                .iter()
                .filter(|l| needles(t).iter().any(|n| mentions(l, n)) || names_block(l, t))
                .count();
            assert_eq!((indexed, count), (oracle, oracle_count), "{}", t.address);
        }
        assert_eq!(
            seen(&targets[0], &logs, &wanted)[0].count,
            1,
            "a.sock is not a.sock.old"
        );
        assert_eq!(
            seen(&targets[9], &logs, &wanted)[0].count,
            1,
            "the block `app`, not `app2`"
        );
    }

    /// The reader's filter (`about_wanted`, on the raw line) keeps exactly the lines the
    /// whole-address rule matches for the run's targets: screened by substring for a run of
    /// one target, cut into words for a run of many; resolver lines by host name.
    #[test]
    fn the_reader_keeps_what_a_scan_of_every_line_finds() {
        let lines = [
            ("fastcgi://unix:/run/php/a.sock:", "connect() to unix:/run/php/a.sock failed (2: No such file or directory) while connecting to upstream"),
            ("fastcgi://unix:/run/php/a.sock.old:", "connect() to unix:/run/php/a.sock.old failed (111: Connection refused) while connecting to upstream"),
            ("http://127.0.0.1:8000/", "connect() failed (111: Connection refused) while connecting to upstream"),
            ("http://127.0.0.1:80/api", "upstream timed out (110: Connection timed out) while reading response header from upstream"),
            ("http://10.0.0.5:8080/", "connect() to 10.0.0.5:8080 failed (113: No route to host) while connecting to upstream"),
            ("http://app/", "no live upstreams while connecting to upstream"),
            ("http://app2:81/", "upstream sent too big header while reading response header from upstream"),
        ];
        let mut clock = why502_nginx::errorlog::LocalClock::default();
        let mut parsed: Vec<ErrorLogLine> = lines
            .iter()
            .map(|(up, msg)| {
                let text = format!("2026/11/21 03:12:09 [error] 7#7: *1 {msg}, client: 10.0.0.9, server: x.test, request: \"GET / HTTP/1.1\", upstream: \"{up}\", host: \"x.test\"");
                why502_nginx::errorlog::parse_line(&text, &mut clock).expect("nginx's form")
            })
            .collect();
        let resolver = "2026/11/21 03:12:09 [error] 7#7: *2 App3.internal could not be resolved (3: Host not found), client: 10.0.0.9, server: x.test, request: \"GET / HTTP/1.1\", host: \"x.test\"";
        parsed
            .push(why502_nginx::errorlog::parse_line(resolver, &mut clock).expect("nginx's form"));
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
            tcp("app2", 81),
            tcp("app3.internal", 80),
            named,
        ];
        let oracle = |ts: &[UpstreamTarget], l: &ErrorLogLine| {
            ts.iter().any(|t| {
                needles(t).iter().any(|n| mentions(l, n))
                    || names_block(l, t)
                    || why502_nginx::errorlog::resolved_name(&l.message)
                        .is_some_and(|n| needles(t).contains(&dns_key(n)))
            })
        };
        let kept = |ts: &[UpstreamTarget]| -> Vec<bool> {
            let wanted = wanted_keys(ts);
            parsed
                .iter()
                .map(|l| {
                    about_wanted(
                        &LineRef {
                            message: &l.message,
                        },
                        &wanted,
                    )
                })
                .collect()
        };
        // One target at a time (a few keys: screened by substring first). The reader's
        // block screen may skip a block only when none of its lines holds a needle, so every
        // kept line must hold one.
        for t in &targets {
            let one = std::slice::from_ref(t);
            assert!(wanted_keys(one).len() <= FEW_KEYS, "{}", t.address);
            let want: Vec<bool> = parsed.iter().map(|l| oracle(one, l)).collect();
            assert_eq!(kept(one), want, "{}", t.address);
            let needles = wanted_keys(one).needles().expect("few keys have needles");
            for (l, kept) in parsed.iter().zip(&want) {
                assert!(
                    !kept || needles.iter().any(|n| l.message.contains(n.as_str())),
                    "{}: kept {:?} holds none of {needles:?}",
                    t.address,
                    l.message
                );
            }
        }
        assert_eq!(wanted_keys(&targets).needles(), None);
        // All of them (too many keys to screen by).
        let want: Vec<bool> = parsed.iter().map(|l| oracle(&targets, l)).collect();
        assert!(wanted_keys(&targets).len() > FEW_KEYS);
        assert_eq!(kept(&targets), want);
        // The run that asks about nothing here keeps nothing.
        let elsewhere = [unix("/run/php/elsewhere.sock")];
        assert_eq!(kept(&elsewhere), vec![false; parsed.len()]);
        // And each line is kept by someone: the fixture tests the rule, not an empty set.
        assert!(want.iter().all(|k| *k), "{want:?}");
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

//! Benchmark: answer "classify the last hour" from nginx error logs of 1 MiB and 1 GiB.
//!
//! `cargo bench -p why502-nginx --bench errorlog`
//!
//! The parent generates realistic logs (deterministic xorshift, streamed through a BufWriter)
//! into a temp dir, then re-executes this binary as `--measure PATH SINCE` once per run, so the
//! peak RSS it reports (the child's `ru_maxrss`, via `wait4`) holds none of the generator's
//! memory. Baselines run `awk`/`grep` the way an admin would, with explicit argv.
//!
//! `WHY502_BENCH_BIG_MIB` overrides the big file's size (default 1024) for a quick run.

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::io::{BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use why502_nginx::errorlog::{
    classify_line, is_reload_notice, read_window, UpstreamErrorClass, WindowLimits,
};

const MIB: u64 = 1024 * 1024;
const SPAN_SECS: i64 = 7 * 86_400;
const HOUR: i64 = 3600;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(i) = args.iter().position(|a| a == "--measure") {
        let path = args.get(i + 1).expect("--measure PATH SINCE");
        let since: i64 = args
            .get(i + 2)
            .and_then(|s| s.parse().ok())
            .expect("--measure PATH SINCE");
        measure_child(Path::new(path), since);
        return;
    }
    if let Some(i) = args.iter().position(|a| a == "--generate") {
        // For profiling: `--generate PATH MIB` writes one log ending now and prints the since
        // to pass to `--measure` (e.g. under `perf record`).
        let path = args.get(i + 1).expect("--generate PATH MIB");
        let mib: u64 = args
            .get(i + 2)
            .and_then(|s| s.parse().ok())
            .expect("--generate PATH MIB");
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .expect("clock")
            .as_secs() as i64;
        generate(
            Path::new(path),
            mib * MIB,
            now,
            &[now - HOUR],
            0x9E37_79B9_7F4A_7C15,
        )
        .expect("generate");
        println!("{}", now - HOUR);
        return;
    }
    // Parent mode: anything else on the command line (cargo's `--bench`, filters) is ignored.
    std::process::exit(parent());
}

// ---------------------------------------------------------------------------------------------
// Child: the measured part.

fn measure_child(path: &Path, since: i64) {
    let base_rss = proc_status_kib("VmRSS:");
    let t0 = Instant::now();
    let window = read_window(path, since, WindowLimits::default()).expect("read_window");
    let mut per_class: HashMap<UpstreamErrorClass, u64> = HashMap::new();
    let mut per_upstream: HashMap<String, u64> = HashMap::new();
    let mut classified = 0u64;
    for l in &window.lines {
        if let Some(class) = l.class {
            classified += 1;
            *per_class.entry(class).or_default() += 1;
            let key = upstream_key(l.upstream.as_deref());
            match per_upstream.get_mut(key) {
                Some(n) => *n += 1,
                None => {
                    per_upstream.insert(key.to_string(), 1);
                }
            }
        }
    }
    let wall = t0.elapsed();
    let mut out = String::new();
    out.push_str(&format!(
        "RESULT\t{}\t{}\t{}\t{}\t{}\t{}\n",
        wall.as_nanos(),
        window.lines.len(),
        window.bytes_read,
        window.truncated,
        classified,
        base_rss.unwrap_or(0)
    ));
    for (c, n) in &per_class {
        out.push_str(&format!("CLASS\t{c:?}\t{n}\n"));
    }
    for (u, n) in &per_upstream {
        out.push_str(&format!("UP\t{u}\t{n}\n"));
    }
    std::io::stdout().write_all(out.as_bytes()).expect("stdout");
}

/// The upstream a line is about, without the request URI nginx appends for proxied upstreams:
/// `http://127.0.0.1:8031/api/x?y` -> `http://127.0.0.1:8031`; fastcgi sockets stay whole.
fn upstream_key(up: Option<&str>) -> &str {
    let Some(u) = up else { return "(none)" };
    if u.starts_with("fastcgi://unix:") {
        return u;
    }
    match u.find("://") {
        Some(i) => match u[i + 3..].find('/') {
            Some(j) => &u[..i + 3 + j],
            None => u,
        },
        None => u,
    }
}

fn proc_status_kib(key: &str) -> Option<u64> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = s.lines().find(|l| l.starts_with(key))?;
    line[key.len()..]
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()
}

// ---------------------------------------------------------------------------------------------
// Generator.

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        // xorshift64*
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: u64) -> u64 {
        (self.next() >> 16) % n
    }
    fn pick<'a, T>(&mut self, xs: &'a [T]) -> &'a T {
        &xs[self.below(xs.len() as u64) as usize]
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Pool {
    /// No upstream: noise, or an error that names none (DNS).
    NoSite,
    /// fastcgi://unix:/run/php/php8.2-fpm-siteN.sock: (sites 1..=25)
    Unix,
    /// http://127.0.0.1:80NN (sites 26..=40)
    Http,
    /// https://10.0.1.N:443 (sites 41..=50)
    Https,
    /// Http or Https
    Tcp,
    /// any of the 50
    Any,
    /// `no live upstreams`: the upstream{} group's name
    Group,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Fields {
    /// nothing after the message
    None,
    /// `, client: IP, server: 0.0.0.0:443`
    Client,
    /// `, client, server, request, host` (no upstream)
    Request,
    /// `, client, server, request, upstream, host`
    Upstream,
}

struct Kind {
    name: &'static str,
    weight: u32,
    level: &'static str,
    conn: bool,
    pool: Pool,
    fields: Fields,
    /// What a human reading the line would call it (None: not an upstream error).
    intended: Option<UpstreamErrorClass>,
    /// Placeholders: {ip} {sock} {file} {tmp} {tempdir} {addr} {n} {line} {dns} {notice}
    body: &'static str,
}

fn kinds() -> Vec<Kind> {
    use Fields as F;
    use Pool as P;
    use UpstreamErrorClass::*;
    let k = |name, weight, level, pool, fields, intended, body| Kind {
        name,
        weight,
        level,
        conn: true,
        pool,
        fields,
        intended,
        body,
    };
    vec![
        // --- noise (~90%) ---
        k("keepalive closed", 378, "info", P::NoSite, F::None, None, "client {ip} closed keepalive connection"),
        k("client closed while waiting", 60, "info", P::NoSite, F::Client, None, "client closed connection while waiting for request"),
        k("client timed out while waiting", 40, "info", P::NoSite, F::Client, None, "client timed out (110: Connection timed out) while waiting for request"),
        k("client recv() 104 while waiting", 20, "info", P::NoSite, F::Client, None, "recv() failed (104: Connection reset by peer) while waiting for request"),
        k("client-side SSL handshake failed", 20, "info", P::NoSite, F::Client, None, "SSL_do_handshake() failed (SSL: error:0A00006C:SSL routines::bad key share) while SSL handshaking"),
        k("open() static file (2: No such file)", 200, "error", P::NoSite, F::Request, None, "open() \"/var/www/site{n}/{file}\" failed (2: No such file or directory)"),
        k("client body buffered", 40, "warn", P::NoSite, F::Request, None, "a client request body is buffered to a temporary file /var/cache/nginx/client_temp/{tmp}"),
        k("upstream response buffered (warn)", 60, "warn", P::Any, F::Upstream, None, "an upstream response is buffered to a temporary file /var/cache/nginx/{tempdir}/{tmp} while reading upstream"),
        k("access forbidden", 30, "error", P::NoSite, F::Request, None, "access forbidden by rule"),
        k("limiting requests", 30, "error", P::NoSite, F::Request, None, "limiting requests, excess: 10.{line} by zone \"perip\""),
        k("directory index forbidden", 20, "error", P::NoSite, F::Request, None, "directory index of \"/var/www/site{n}/uploads/\" is forbidden"),
        Kind { conn: false, ..k("master/worker notice", 2, "notice", P::NoSite, F::None, None, "{notice}") },
        // --- upstream errors (~10%) ---
        k("connect unix (2)", 5, "crit", P::Unix, F::Upstream, Some(NoSuchFile), "connect() to unix:{sock} failed (2: No such file or directory) while connecting to upstream"),
        k("connect unix (13)", 4, "crit", P::Unix, F::Upstream, Some(PermissionDenied), "connect() to unix:{sock} failed (13: Permission denied) while connecting to upstream"),
        k("connect unix (111)", 6, "error", P::Unix, F::Upstream, Some(ConnectionRefused), "connect() to unix:{sock} failed (111: Connection refused) while connecting to upstream"),
        k("connect tcp (111)", 10, "error", P::Tcp, F::Upstream, Some(ConnectionRefused), "connect() failed (111: Connection refused) while connecting to upstream"),
        k("connect unix (11)", 8, "error", P::Unix, F::Upstream, Some(ListenQueueFull), "connect() to unix:{sock} failed (11: Resource temporarily unavailable) while connecting to upstream"),
        k("connect timed out (110)", 4, "error", P::Tcp, F::Upstream, Some(ConnectTimeout), "upstream timed out (110: Connection timed out) while connecting to upstream"),
        k("read header timed out", 12, "error", P::Any, F::Upstream, Some(ReadTimeout), "upstream timed out (110: Connection timed out) while reading response header from upstream"),
        k("read body timed out", 3, "error", P::Any, F::Upstream, Some(ReadTimeout), "upstream timed out (110: Connection timed out) while reading upstream"),
        k("recv() 104 from upstream", 8, "error", P::Any, F::Upstream, Some(Reset), "recv() failed (104: Connection reset by peer) while reading response header from upstream"),
        k("prematurely closed connection", 6, "error", P::Tcp, F::Upstream, Some(Reset), "upstream prematurely closed connection while reading response header from upstream"),
        k("prematurely closed FastCGI stdout", 3, "error", P::Unix, F::Upstream, Some(Reset), "upstream prematurely closed FastCGI stdout while reading response header from upstream"),
        k("too big header", 4, "error", P::Any, F::Upstream, Some(TooBigHeader), "upstream sent too big header while reading response header from upstream"),
        k("no valid HTTP header", 2, "error", P::Http, F::Upstream, Some(InvalidResponse), "upstream sent no valid HTTP/1.0 header while reading response header from upstream"),
        k("invalid header", 1, "error", P::Http, F::Upstream, Some(InvalidResponse), "upstream sent invalid header: \"X Forwarded Proto: https\" while reading response header from upstream"),
        k("no live upstreams", 5, "error", P::Group, F::Upstream, Some(NoLiveUpstreams), "no live upstreams while connecting to upstream"),
        k("SSL_do_handshake to upstream", 3, "crit", P::Https, F::Upstream, Some(Tls), "SSL_do_handshake() failed (SSL: error:0A000086:SSL routines::certificate verify failed) while SSL handshaking to upstream"),
        k("upstream cert verify", 2, "error", P::Https, F::Upstream, Some(Tls), "upstream SSL certificate verify error: (10:certificate has expired) while SSL handshaking to upstream"),
        k("could not be resolved", 2, "error", P::NoSite, F::Request, Some(Dns), "{dns} could not be resolved (3: Host not found)"),
        k("no route (113)", 2, "error", P::Https, F::Upstream, Some(NoRoute), "connect() failed (113: No route to host) while connecting to upstream"),
        k("network unreachable (101)", 1, "error", P::Https, F::Upstream, Some(NoRoute), "connect() failed (101: Network is unreachable) while connecting to upstream"),
        k("Primary script unknown", 5, "error", P::Unix, F::Upstream, Some(PrimaryScriptUnknown), "FastCGI sent in stderr: \"Primary script unknown\" while reading response header from upstream"),
        k("FastCGI PHP warning", 3, "error", P::Unix, F::Upstream, Some(Other), "FastCGI sent in stderr: \"PHP message: PHP Warning:  Undefined variable $cart in /var/www/site{n}/index.php on line {line}\" while reading response header from upstream"),
        k("connect tcp (99)", 1, "error", P::Http, F::Upstream, Some(Other), "connect() to {addr} failed (99: Cannot assign requested address) while connecting to upstream"),
    ]
}

const MISSING: &[&str] = &[
    "favicon.ico",
    "robots.txt",
    "apple-touch-icon.png",
    "apple-touch-icon-precomposed.png",
    ".env",
    "sitemap.xml",
    "ads.txt",
    "wp-content/uploads/2024/05/banner-1920x1080.jpg",
    ".git/config",
];
const PHP_PATHS: &[&str] = &[
    "/",
    "/index.php",
    "/wp-admin/admin-ajax.php",
    "/wp-login.php",
    "/wp-json/wp/v2/posts",
    "/checkout/",
    "/cart/",
    "/product/blue-widget-2000/",
    "/xmlrpc.php",
];
const API_PATHS: &[&str] = &[
    "/api/v1/orders",
    "/api/v2/users/8812/sessions",
    "/graphql",
    "/healthz",
    "/login",
    "/static/js/app.3f9a1c.js",
    "/api/v1/search",
    "/events/stream",
];
const NOTICES: &[&str] = &[
    "signal 1 (SIGHUP) received from 1, reconfiguring",
    "reconfiguring",
    "using the \"epoll\" event method",
    "start worker processes",
    "start worker process 1184377",
    "gracefully shutting down",
    "exiting",
    "signal 17 (SIGCHLD) received from 1184201",
    "worker process 1184201 exited with code 0",
];
const QUERY_KEYS: &[&str] = &[
    "id",
    "page",
    "utm_source",
    "utm_medium",
    "session",
    "ref",
    "q",
    "lang",
    "sort",
    "token",
];

/// What the generator knows about the lines it wrote inside one window.
#[derive(Default, Debug, Clone)]
struct Tally {
    lines: u64,
    /// Lines the reader keeps by default: upstream failures and reload notices.
    kept: u64,
    /// Lines `classify` accepts, per class and per upstream (the child must find the same).
    classified: u64,
    per_class: BTreeMap<String, u64>,
    per_upstream: BTreeMap<String, u64>,
    /// Lines whose text contains "upstream" (what `awk window | grep -c upstream` must count).
    upstream_word: u64,
    /// Lines a human would call an upstream error.
    intended_errors: u64,
    /// (kind, what classify says) for lines where classify disagrees with the intended label.
    disagreements: BTreeMap<(String, String), u64>,
}

struct GenStats {
    bytes: u64,
    lines: u64,
    min_len: usize,
    max_len: usize,
    upstream_word_total: u64,
    intended_errors_total: u64,
    secs: f64,
    /// One tally per `since` asked for.
    tallies: Vec<Tally>,
}

struct Ctx {
    site: u32,
    ip: (u32, u32),
    conn: u64,
    pid: u32,
    post: bool,
    path: &'static str,
    file: &'static str,
    tmp: u64,
    line: u32,
    notice: &'static str,
    referrer: bool,
    qoff: usize,
}

fn push_u64(out: &mut Vec<u8>, mut n: u64) {
    let mut tmp = [0u8; 20];
    let mut i = tmp.len();
    loop {
        i -= 1;
        tmp[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&tmp[i..]);
}

fn push_pad(out: &mut Vec<u8>, n: u64, width: usize) {
    let mut v = Vec::with_capacity(width);
    push_u64(&mut v, n);
    for _ in v.len()..width {
        out.push(b'0');
    }
    out.extend_from_slice(&v);
}

/// nginx's stamp, in the machine's local time.
fn local_stamp(t: i64) -> [u8; 19] {
    // SAFETY: zeroed tm is valid; localtime_r fills it from a valid time_t.
    let mut tm: libc::tm = unsafe { std::mem::zeroed() };
    let tt = t as libc::time_t;
    let r = unsafe { libc::localtime_r(&tt, &mut tm) };
    assert!(!r.is_null(), "localtime_r");
    let mut v = Vec::with_capacity(19);
    push_pad(&mut v, (tm.tm_year + 1900) as u64, 4);
    v.push(b'/');
    push_pad(&mut v, (tm.tm_mon + 1) as u64, 2);
    v.push(b'/');
    push_pad(&mut v, tm.tm_mday as u64, 2);
    v.push(b' ');
    push_pad(&mut v, tm.tm_hour as u64, 2);
    v.push(b':');
    push_pad(&mut v, tm.tm_min as u64, 2);
    v.push(b':');
    push_pad(&mut v, tm.tm_sec as u64, 2);
    v.try_into().expect("19 bytes")
}

fn push_sock(out: &mut Vec<u8>, site: u32) {
    out.extend_from_slice(b"/run/php/php8.2-fpm-site");
    push_u64(out, site as u64);
    out.extend_from_slice(b".sock");
}

fn push_ip(out: &mut Vec<u8>, ip: (u32, u32)) {
    out.extend_from_slice(b"10.0.");
    push_u64(out, ip.0 as u64);
    out.push(b'.');
    push_u64(out, ip.1 as u64);
}

fn push_query(out: &mut Vec<u8>, pool: &[u8], c: &Ctx, qlen: usize) {
    if qlen > 0 {
        out.push(b'?');
        out.extend_from_slice(&pool[c.qoff..c.qoff + qlen]);
    }
}

/// The upstream field (without the request URI for proxied upstreams: the caller appends it).
fn push_upstream_base(out: &mut Vec<u8>, pool: Pool, site: u32) -> bool {
    // Returns whether nginx appends the request URI (proxy_pass without URI).
    if pool == Pool::Group {
        if site <= 25 {
            out.extend_from_slice(b"fastcgi://site");
            push_u64(out, site as u64);
            out.extend_from_slice(b"_php");
            return false;
        }
        out.extend_from_slice(b"http://site");
        push_u64(out, site as u64);
        out.extend_from_slice(b"_backend");
        return true;
    }
    if site <= 25 {
        out.extend_from_slice(b"fastcgi://unix:");
        push_sock(out, site);
        out.push(b':');
        false
    } else if site <= 40 {
        out.extend_from_slice(b"http://127.0.0.1:80");
        push_u64(out, site as u64);
        true
    } else {
        out.extend_from_slice(b"https://10.0.1.");
        push_u64(out, site as u64);
        out.extend_from_slice(b":443");
        true
    }
}

/// Write one line (with '\n'); returns the byte offset where the message starts.
fn build(
    out: &mut Vec<u8>,
    stamp: &[u8; 19],
    k: &Kind,
    c: &Ctx,
    qlen: usize,
    pool: &[u8],
) -> usize {
    out.clear();
    out.extend_from_slice(stamp);
    out.extend_from_slice(b" [");
    out.extend_from_slice(k.level.as_bytes());
    out.extend_from_slice(b"] ");
    push_u64(out, c.pid as u64);
    out.push(b'#');
    push_u64(out, c.pid as u64);
    out.extend_from_slice(b": ");
    if k.conn {
        out.push(b'*');
        push_u64(out, c.conn);
        out.push(b' ');
    }
    let msg_start = out.len();
    // Body with placeholders.
    let body = k.body.as_bytes();
    let mut i = 0;
    while i < body.len() {
        if body[i] == b'{' {
            let end = i + body[i..].iter().position(|b| *b == b'}').expect("}");
            match &body[i + 1..end] {
                b"ip" => push_ip(out, c.ip),
                b"sock" => push_sock(out, c.site),
                b"file" => out.extend_from_slice(c.file.as_bytes()),
                b"tmp" => {
                    push_u64(out, c.tmp % 10);
                    out.push(b'/');
                    push_pad(out, c.tmp % 100, 2);
                    out.push(b'/');
                    push_pad(out, c.tmp, 10);
                }
                b"addr" => {
                    out.extend_from_slice(b"127.0.0.1:80");
                    push_u64(out, c.site as u64);
                }
                b"n" => push_u64(out, c.site as u64),
                b"line" => push_u64(out, c.line as u64),
                b"dns" => {
                    out.extend_from_slice(b"api");
                    push_u64(out, c.site as u64);
                    out.extend_from_slice(b".svc.internal");
                }
                b"tempdir" => out.extend_from_slice(if c.site <= 25 {
                    b"fastcgi_temp"
                } else {
                    b"proxy_temp"
                }),
                b"notice" => out.extend_from_slice(c.notice.as_bytes()),
                other => panic!("placeholder {}", String::from_utf8_lossy(other)),
            }
            i = end + 1;
        } else {
            let next = body[i..]
                .iter()
                .position(|b| *b == b'{')
                .map_or(body.len(), |p| i + p);
            out.extend_from_slice(&body[i..next]);
            i = next;
        }
    }
    match k.fields {
        Fields::None => {}
        Fields::Client => {
            out.extend_from_slice(b", client: ");
            push_ip(out, c.ip);
            out.extend_from_slice(b", server: 0.0.0.0:443");
        }
        Fields::Request | Fields::Upstream => {
            out.extend_from_slice(b", client: ");
            push_ip(out, c.ip);
            out.extend_from_slice(b", server: site");
            push_u64(out, c.site as u64);
            out.extend_from_slice(b".example, request: \"");
            out.extend_from_slice(if c.post { b"POST " } else { b"GET " });
            if k.pool == Pool::NoSite && k.body.contains("{file}") {
                out.push(b'/');
                out.extend_from_slice(c.file.as_bytes());
            } else {
                out.extend_from_slice(c.path.as_bytes());
            }
            push_query(out, pool, c, qlen);
            out.extend_from_slice(b" HTTP/1.1\"");
            if k.fields == Fields::Upstream {
                out.extend_from_slice(b", upstream: \"");
                if push_upstream_base(out, k.pool, c.site) {
                    out.extend_from_slice(c.path.as_bytes());
                    push_query(out, pool, c, qlen);
                }
                out.push(b'"');
            }
            out.extend_from_slice(b", host: \"site");
            push_u64(out, c.site as u64);
            out.extend_from_slice(b".example\"");
            if c.referrer {
                out.extend_from_slice(b", referrer: \"https://site");
                push_u64(out, c.site as u64);
                out.extend_from_slice(b".example/\"");
            }
        }
    }
    out.push(b'\n');
    msg_start
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

/// The upstream field of a generated line as the generator knows it (not parsed back).
fn known_upstream_key(k: &Kind, site: u32) -> String {
    if k.fields != Fields::Upstream {
        return "(none)".to_string();
    }
    let mut v = Vec::new();
    push_upstream_base(&mut v, k.pool, site);
    String::from_utf8(v).expect("ascii")
}

/// Write `target` bytes of log ending at `now`, timestamps spread evenly by byte offset over
/// the `SPAN_SECS` before it; tally the lines at or after each of `sinces`.
fn generate(
    path: &Path,
    target: u64,
    now: i64,
    sinces: &[i64],
    seed: u64,
) -> std::io::Result<GenStats> {
    let t0 = Instant::now();
    let kinds = kinds();
    let total_weight: u64 = kinds.iter().map(|k| k.weight as u64).sum();
    // weight table: kind index per weight unit, for O(1) picks.
    let mut table: Vec<usize> = Vec::with_capacity(total_weight as usize);
    for (i, k) in kinds.iter().enumerate() {
        table.extend(std::iter::repeat_n(i, k.weight as usize));
    }
    let has_upstream_word: Vec<bool> = kinds
        .iter()
        .map(|k| k.fields == Fields::Upstream || k.body.contains("upstream"))
        .collect();
    let mut rng = Rng(seed | 1);
    // Query-string pool: `key=hexvalue&...`, sliced at random offsets.
    let mut pool = Vec::with_capacity(8192);
    while pool.len() < 8000 {
        pool.extend_from_slice(rng.pick(QUERY_KEYS).as_bytes());
        pool.push(b'=');
        for _ in 0..(4 + rng.below(20)) {
            pool.push(b"0123456789abcdef"[rng.below(16) as usize]);
        }
        pool.push(b'&');
    }

    let file = File::create(path)?;
    let mut w = BufWriter::with_capacity(1 << 20, file);
    let start = now - SPAN_SECS;
    let mut stats = GenStats {
        bytes: 0,
        lines: 0,
        min_len: usize::MAX,
        max_len: 0,
        upstream_word_total: 0,
        intended_errors_total: 0,
        secs: 0.0,
        tallies: vec![Tally::default(); sinces.len()],
    };
    let mut line = Vec::with_capacity(2048);
    let mut stamp_t = i64::MIN;
    let mut stamp = [0u8; 19];
    let mut conn: u64 = 10_000_000;
    let pids = [1_184_201u32, 1_184_202];
    while stats.bytes < target {
        let t = start + ((stats.bytes as u128 * SPAN_SECS as u128) / target as u128) as i64;
        if t != stamp_t {
            stamp = local_stamp(t);
            stamp_t = t;
        }
        let kind_idx = table[rng.below(total_weight) as usize];
        let k = &kinds[kind_idx];
        let site = match k.pool {
            Pool::NoSite | Pool::Any | Pool::Group => 1 + rng.below(50) as u32,
            Pool::Unix => 1 + rng.below(25) as u32,
            Pool::Http => 26 + rng.below(15) as u32,
            Pool::Https => 41 + rng.below(10) as u32,
            Pool::Tcp => 26 + rng.below(25) as u32,
        };
        conn += 1 + rng.below(3);
        let c = Ctx {
            site,
            ip: (rng.below(256) as u32, 1 + rng.below(254) as u32),
            conn,
            pid: pids[rng.below(2) as usize],
            post: rng.below(10) < 2,
            path: rng.pick::<&str>(if site <= 25 { PHP_PATHS } else { API_PATHS }),
            file: rng.pick::<&str>(MISSING),
            tmp: rng.below(10_000_000_000),
            line: 10 + rng.below(900) as u32,
            notice: rng.pick::<&str>(NOTICES),
            referrer: rng.below(10) < 3,
            qoff: rng.below(4000) as usize,
        };
        // Target length 100..600, mostly 200..400: grow the query string to reach it.
        let want = (100 + rng.below(250) + rng.below(251)) as usize;
        let mut msg_start = build(&mut line, &stamp, k, &c, 0, &pool);
        if matches!(k.fields, Fields::Request | Fields::Upstream) && line.len() < want {
            let copies = if k.fields == Fields::Upstream
                && k.pool != Pool::Unix
                && !(k.pool == Pool::Group && site <= 25)
            {
                2
            } else {
                1
            };
            let q = ((want - line.len()) / copies).saturating_sub(1).min(3000);
            msg_start = build(&mut line, &stamp, k, &c, q, &pool);
        }
        w.write_all(&line)?;
        stats.bytes += line.len() as u64;
        stats.lines += 1;
        stats.min_len = stats.min_len.min(line.len() - 1);
        stats.max_len = stats.max_len.max(line.len() - 1);
        if has_upstream_word[kind_idx] {
            stats.upstream_word_total += 1;
        }
        if k.intended.is_some() {
            stats.intended_errors_total += 1;
        }
        for (si, since) in sinces.iter().enumerate() {
            if t < *since {
                continue;
            }
            let tally = &mut stats.tallies[si];
            tally.lines += 1;
            let text = &line[..line.len() - 1];
            debug_assert_eq!(contains(text, b"upstream"), has_upstream_word[kind_idx]);
            if contains(text, b"upstream") {
                tally.upstream_word += 1;
            }
            let msg = std::str::from_utf8(&text[msg_start..]).expect("ascii");
            let got = classify_line(k.level, msg);
            if got.is_some() || is_reload_notice(msg) {
                tally.kept += 1;
            }
            if k.intended.is_some() {
                tally.intended_errors += 1;
            }
            if got != k.intended {
                *tally
                    .disagreements
                    .entry((k.name.to_string(), format!("{got:?}")))
                    .or_default() += 1;
            }
            if let Some(class) = got {
                tally.classified += 1;
                *tally.per_class.entry(format!("{class:?}")).or_default() += 1;
                *tally
                    .per_upstream
                    .entry(known_upstream_key(k, site))
                    .or_default() += 1;
            }
        }
    }
    w.flush()?;
    w.into_inner().map_err(|e| e.into_error())?.sync_all()?;
    stats.secs = t0.elapsed().as_secs_f64();
    Ok(stats)
}

// ---------------------------------------------------------------------------------------------
// Parent: runs, baselines, table.

struct ChildRun {
    wall: Duration,
    lines: u64,
    bytes_read: u64,
    truncated: bool,
    classified: u64,
    base_rss_kib: u64,
    max_rss_kib: u64,
    per_class: BTreeMap<String, u64>,
    per_upstream: BTreeMap<String, u64>,
}

// The child is reaped with wait4 (for its rusage), which clippy cannot see.
#[allow(clippy::zombie_processes)]
fn run_child(path: &Path, since: i64) -> ChildRun {
    let exe = std::env::current_exe().expect("current_exe");
    let mut child = Command::new(exe)
        .arg("--measure")
        .arg(path)
        .arg(since.to_string())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn child");
    let mut out = String::new();
    child
        .stdout
        .take()
        .expect("stdout")
        .read_to_string(&mut out)
        .expect("read child");
    let mut status: libc::c_int = 0;
    // SAFETY: zeroed rusage is valid; wait4 fills it for our own child.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    let pid = child.id() as libc::pid_t;
    let r = unsafe { libc::wait4(pid, &mut status, 0, &mut ru) };
    assert_eq!(r, pid, "wait4: {}", std::io::Error::last_os_error());
    assert!(
        libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
        "child failed: status {status}"
    );
    let mut run = ChildRun {
        wall: Duration::ZERO,
        lines: 0,
        bytes_read: 0,
        truncated: false,
        classified: 0,
        base_rss_kib: 0,
        max_rss_kib: ru.ru_maxrss as u64,
        per_class: BTreeMap::new(),
        per_upstream: BTreeMap::new(),
    };
    for l in out.lines() {
        let f: Vec<&str> = l.split('\t').collect();
        match f[0] {
            "RESULT" => {
                run.wall = Duration::from_nanos(f[1].parse().expect("ns"));
                run.lines = f[2].parse().expect("lines");
                run.bytes_read = f[3].parse().expect("bytes");
                run.truncated = f[4] == "true";
                run.classified = f[5].parse().expect("classified");
                run.base_rss_kib = f[6].parse().expect("rss");
            }
            "CLASS" => {
                run.per_class
                    .insert(f[1].to_string(), f[2].parse().expect("n"));
            }
            "UP" => {
                run.per_upstream
                    .insert(f[1].to_string(), f[2].parse().expect("n"));
            }
            _ => {}
        }
    }
    run
}

struct Measured {
    best: Duration,
    median: Duration,
    peak_rss_kib: u64,
    base_rss_kib: u64,
    last: ChildRun,
}

fn measure(path: &Path, since: i64) -> Measured {
    let _warm = run_child(path, since);
    let mut runs: Vec<ChildRun> = (0..5).map(|_| run_child(path, since)).collect();
    let mut walls: Vec<Duration> = runs.iter().map(|r| r.wall).collect();
    walls.sort();
    let peak = runs.iter().map(|r| r.max_rss_kib).max().unwrap_or(0);
    let base = runs.iter().map(|r| r.base_rss_kib).max().unwrap_or(0);
    Measured {
        best: walls[0],
        median: walls[2],
        peak_rss_kib: peak,
        base_rss_kib: base,
        last: runs.pop().expect("runs"),
    }
}

/// Read the whole file once so every contender starts from a warm page cache.
fn warm_cache(path: &Path) {
    let mut f = File::open(path).expect("open");
    let mut buf = vec![0u8; 1 << 20];
    while f.read(&mut buf).expect("read") > 0 {}
}

fn parse_count(out: &[u8]) -> u64 {
    String::from_utf8_lossy(out).trim().parse().expect("count")
}

/// `awk -v since="STAMP" '($1" "$2) >= since' FILE | grep -c upstream`
fn awk_window_grep(path: &Path, since_stamp: &str) -> (Duration, u64) {
    let t0 = Instant::now();
    let mut awk = Command::new("awk")
        .arg("-v")
        .arg(format!("since={since_stamp}"))
        .arg("($1\" \"$2) >= since")
        .arg(path)
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn awk");
    let awk_out = awk.stdout.take().expect("awk stdout");
    let grep = Command::new("grep")
        .args(["-c", "upstream"])
        .stdin(Stdio::from(awk_out))
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn grep");
    let out = grep.wait_with_output().expect("grep");
    let st = awk.wait().expect("awk");
    let el = t0.elapsed();
    assert!(st.success(), "awk failed");
    (el, parse_count(&out.stdout))
}

/// `grep -c upstream FILE`
fn grep_count(path: &Path) -> (Duration, u64) {
    let t0 = Instant::now();
    let out = Command::new("grep")
        .args(["-c", "upstream"])
        .arg(path)
        .output()
        .expect("grep");
    (t0.elapsed(), parse_count(&out.stdout))
}

fn best_of<F: FnMut() -> (Duration, u64)>(n: usize, mut f: F) -> (Duration, u64) {
    let mut best = Duration::MAX;
    let mut count = 0;
    for _ in 0..n {
        let (d, c) = f();
        best = best.min(d);
        count = c;
    }
    (best, count)
}

fn ms(d: Duration) -> String {
    let v = d.as_secs_f64() * 1e3;
    if v < 10.0 {
        format!("{v:.3} ms")
    } else if v < 1000.0 {
        format!("{v:.1} ms")
    } else {
        format!("{v:.0} ms")
    }
}

fn mib_kib(kib: u64) -> String {
    format!("{:.1} MiB", kib as f64 / 1024.0)
}

fn size_label(bytes: u64) -> String {
    if bytes >= 1024 * MIB && bytes % (1024 * MIB) == 0 {
        format!("{} GiB", bytes / (1024 * MIB))
    } else {
        format!("{} MiB", bytes / MIB)
    }
}

struct Case {
    label: String,
    path: PathBuf,
    gen: GenStats,
}

fn parent() -> i32 {
    let big_mib: u64 = std::env::var("WHY502_BENCH_BIG_MIB")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1024);
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_secs() as i64;
    let since = now - HOUR;
    let dir = tempfile::Builder::new()
        .prefix("why502-errorlog-bench")
        .tempdir()
        .expect("tempdir");
    let mut failures: Vec<String> = Vec::new();
    let mut notes: Vec<String> = Vec::new();

    // Generate.
    let sizes = [MIB, big_mib * MIB];
    // The big file's extra window: as many bytes as the small file's hour (seconds, rounded up).
    let small_hour_secs = ((HOUR as u128 * sizes[0] as u128).div_ceil(sizes[1] as u128)) as i64;
    let since_small = now - small_hour_secs.max(1);
    let mut cases: Vec<Case> = Vec::new();
    for (i, &size) in sizes.iter().enumerate() {
        let label = size_label(size);
        let sub = dir.path().join(label.replace(' ', ""));
        std::fs::create_dir_all(&sub).expect("mkdir");
        let path = sub.join("error.log");
        eprintln!("generating {label} at {} ...", path.display());
        let gen = generate(
            &path,
            size,
            now,
            &[since, since_small],
            0x9E37_79B9_7F4A_7C15 ^ i as u64,
        )
        .expect("generate");
        eprintln!(
            "  {} lines, {} bytes in {:.1} s; line length {}..{} (avg {:.0}); {} upstream-error lines ({:.1}%)",
            gen.lines,
            gen.bytes,
            gen.secs,
            gen.min_len,
            gen.max_len,
            gen.bytes as f64 / gen.lines as f64 - 1.0,
            gen.intended_errors_total,
            100.0 * gen.intended_errors_total as f64 / gen.lines as f64
        );
        cases.push(Case { label, path, gen });
    }

    // why502.
    let mut results: Vec<Measured> = Vec::new();
    for c in &cases {
        eprintln!("measuring why502 on {} ...", c.label);
        warm_cache(&c.path);
        let m = measure(&c.path, since);
        check(
            &c.label,
            "last hour",
            &m.last,
            &c.gen.tallies[0],
            &mut failures,
        );
        results.push(m);
    }
    let big = &cases[1];
    eprintln!(
        "measuring why502 on {} with a {} s window ...",
        big.label, small_hour_secs
    );
    let small_window = measure(&big.path, since_small);
    check(
        &big.label,
        "small window",
        &small_window.last,
        &big.gen.tallies[1],
        &mut failures,
    );

    // Baselines.
    let since_stamp = String::from_utf8(local_stamp(since).to_vec()).expect("ascii");
    let mut awk_rows = Vec::new();
    let mut grep_rows = Vec::new();
    for c in &cases {
        eprintln!(
            "baselines on {} (cache warmed by a full read first) ...",
            c.label
        );
        warm_cache(&c.path);
        let (d, n) = best_of(3, || awk_window_grep(&c.path, &since_stamp));
        if n != c.gen.tallies[0].upstream_word {
            failures.push(format!(
                "{}: awk window + grep counted {n} lines, generator wrote {}",
                c.label, c.gen.tallies[0].upstream_word
            ));
        }
        awk_rows.push((d, n));
        let (d, n) = best_of(3, || grep_count(&c.path));
        if n != c.gen.upstream_word_total {
            failures.push(format!(
                "{}: grep -c upstream counted {n}, generator wrote {}",
                c.label, c.gen.upstream_word_total
            ));
        }
        grep_rows.push((d, n));
    }

    // Table.
    println!();
    println!(
        "error-log bench: classify the last hour (since {since_stamp} local; log ends {})",
        String::from_utf8(local_stamp(now).to_vec()).expect("ascii")
    );
    println!(
        "{:<30} {:<8} {:>12} {:>14} {:>10} {:>16} {:>11} {:>14}",
        "",
        "file",
        "wall (best)",
        "wall (median)",
        "peak RSS",
        "lines in window",
        "bytes read",
        "upstream hits"
    );
    for (c, m) in cases.iter().zip(&results) {
        println!(
            "{:<30} {:<8} {:>12} {:>14} {:>10} {:>16} {:>11} {:>14}",
            "why502 read_window",
            c.label,
            ms(m.best),
            ms(m.median),
            mib_kib(m.peak_rss_kib),
            m.last.lines,
            m.last.bytes_read,
            m.last.classified
        );
    }
    println!(
        "{:<30} {:<8} {:>12} {:>14} {:>10} {:>16} {:>11} {:>14}",
        format!("why502 read_window, last {small_hour_secs} s"),
        big.label,
        ms(small_window.best),
        ms(small_window.median),
        mib_kib(small_window.peak_rss_kib),
        small_window.last.lines,
        small_window.last.bytes_read,
        small_window.last.classified
    );
    for (c, (d, n)) in cases.iter().zip(&awk_rows) {
        println!(
            "{:<30} {:<8} {:>12} {:>14} {:>10} {:>16} {:>11} {:>14}",
            "awk window + grep",
            c.label,
            ms(*d),
            "",
            "",
            "",
            c.gen.bytes,
            n
        );
    }
    for (c, (d, n)) in cases.iter().zip(&grep_rows) {
        println!(
            "{:<30} {:<8} {:>12} {:>14} {:>10} {:>16} {:>11} {:>14}",
            "grep -c upstream",
            c.label,
            ms(*d),
            "",
            "",
            "",
            c.gen.bytes,
            n
        );
    }
    let (s, b) = (&results[0], &results[1]);
    let wall_ok = b.best < Duration::from_millis(50);
    let rss_ok = b.peak_rss_kib < 32 * 1024;
    let wall_ratio = b.best.as_secs_f64() / s.best.as_secs_f64();
    let rss_ratio = b.peak_rss_kib as f64 / s.peak_rss_kib as f64;
    let met = wall_ok && rss_ok && wall_ratio <= 2.0 && rss_ratio <= 2.0;
    println!(
        "targets: {} under 50 ms and 32 MiB peak RSS, within 2x of the 1 MiB case -> {} \
         (wall {} {}; peak RSS {} {}; vs 1 MiB: wall {:.1}x {}, RSS {:.2}x {})",
        big.label,
        if met { "MET" } else { "NOT MET" },
        ms(b.best),
        if wall_ok { "ok" } else { "MISSED" },
        mib_kib(b.peak_rss_kib),
        if rss_ok { "ok" } else { "MISSED" },
        wall_ratio,
        if wall_ratio <= 2.0 { "ok" } else { "MISSED" },
        rss_ratio,
        if rss_ratio <= 2.0 { "ok" } else { "MISSED" },
    );
    let sw_ratio = small_window.best.as_secs_f64() / s.best.as_secs_f64();
    let sr_ratio = small_window.peak_rss_kib as f64 / s.peak_rss_kib as f64;
    println!(
        "same-window-bytes comparison: {} last {} s vs 1 MiB last hour: wall {:.1}x, RSS {:.2}x -> {}",
        big.label,
        small_hour_secs,
        sw_ratio,
        sr_ratio,
        if sw_ratio <= 2.0 && sr_ratio <= 2.0 { "within 2x" } else { "NOT within 2x" }
    );

    // Notes.
    notes.push(format!(
        "peak RSS = child's ru_maxrss (wait4), whole process; the child's VmRSS before reading was {} (1 MiB) / {} ({})",
        mib_kib(s.base_rss_kib),
        mib_kib(b.base_rss_kib),
        big.label
    ));
    notes.push(format!(
        "why502 wall = read_window + classify + per-class/per-upstream HashMaps, timed inside the child (no exec/exit); best/median of 5 after 1 warm-up; awk/grep best of 3 incl. process spawn, page cache warmed by a full read first; awk = {}",
        awk_version()
    ));
    for (c, m) in cases.iter().zip(&results) {
        let t = &c.gen.tallies[0];
        notes.push(format!(
            "{}: {} lines / {} bytes total; last hour: {} lines, {} classified by classify(), {} intended upstream errors, {} distinct upstream keys; truncated={}",
            c.label, c.gen.lines, c.gen.bytes, t.lines, t.classified, t.intended_errors, t.per_upstream.len(), m.last.truncated
        ));
        for ((kind, got), n) in &t.disagreements {
            notes.push(format!(
                "{}: classify() says {got} for {n} in-window '{kind}' lines (not upstream errors as written)",
                c.label
            ));
        }
    }
    for n in &notes {
        println!("note: {n}");
    }
    if failures.is_empty() {
        println!("check: OK (window lines, per-class and per-upstream counts equal the generator's; awk/grep counts equal the generator's)");
        0
    } else {
        for f in &failures {
            println!("FAIL: {f}");
        }
        1
    }
}

fn check(label: &str, what: &str, got: &ChildRun, want: &Tally, failures: &mut Vec<String>) {
    if got.lines != want.kept {
        failures.push(format!(
            "{label} {what}: read_window kept {} lines, generator wrote {} it should keep (of {} in the window)",
            got.lines, want.kept, want.lines
        ));
    }
    if got.classified != want.classified {
        failures.push(format!(
            "{label} {what}: why502 classified {} lines, generator's lines that classify accepts: {}",
            got.classified, want.classified
        ));
    }
    if got.per_class != want.per_class {
        failures.push(format!(
            "{label} {what}: per-class counts differ: why502 {:?} vs generator {:?}",
            got.per_class, want.per_class
        ));
    }
    if got.per_upstream != want.per_upstream {
        let diff: Vec<String> = want
            .per_upstream
            .iter()
            .filter(|(k, v)| got.per_upstream.get(*k) != Some(v))
            .map(|(k, v)| format!("{k}: want {v} got {:?}", got.per_upstream.get(k)))
            .chain(
                got.per_upstream
                    .iter()
                    .filter(|(k, _)| !want.per_upstream.contains_key(*k))
                    .map(|(k, v)| format!("{k}: want 0 got {v}")),
            )
            .take(10)
            .collect();
        failures.push(format!(
            "{label} {what}: per-upstream counts differ: {}",
            diff.join("; ")
        ));
    }
    if got.truncated {
        failures.push(format!("{label} {what}: read_window hit its byte cap"));
    }
}

fn awk_version() -> String {
    let out = Command::new("awk").args(["-W", "version"]).output();
    match out {
        Ok(o) => String::from_utf8_lossy(&o.stdout)
            .lines()
            .next()
            .unwrap_or("awk")
            .to_string(),
        Err(_) => "awk".to_string(),
    }
}

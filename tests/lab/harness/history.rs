//! The past a real host has, and the lab leaves for every scenario (issue 11): the agent runs
//! with its default window (the last hour), so what happened before a scenario — on the host and
//! in the stack's own logs — is in front of it, and no verdict may rest on it.
//!
//! - **Bystander OOM kills**: once per test process, before the first scenario builds its
//!   stack, `BYSTANDER_KILLS` python3 hogs are OOM-killed by the kernel, each in a small memory
//!   cgroup of its own (`why502-history-<test pid>-<n>`). The kernel log keeps them for every
//!   later scenario's window.
//! - **Old 502 lines**: before nginx starts, its error log gets real-format lines about the
//!   stack's own upstreams, stamped 2 to 3 hours ago (outside the window).
//! - **A shared php-fpm log**: every php-fpm master gets a second pool (`[bystander]`, its own
//!   socket, no nginx location), and the master's `error_log` is seeded with that pool's
//!   SIGKILLed child, terminate timeout, pm.max_children and PHP fatal error, stamped 10–20
//!   minutes ago (inside the window).
//! - **A never-written PHP error log**: the pool under test logs PHP errors to
//!   `logs/<pool>-php-errors.log`, which nothing writes in a healthy stack.
//!
//! The lab's own proofs (`Lab::error_log_text`, `Lab::php_fpm_log_text`) read only what the
//! daemons wrote after the seeded history, so an old line never proves a breakage.
//!
//! Only the lab's test target leaves history: the diagnose bench reuses this harness to time a
//! healthy stack over its own lifetime and gets no OOM kills from it.

use std::collections::BTreeSet;
use std::fs::{self, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Mutex, OnceLock, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::resources::MemoryCgroup;
use super::wait::poll_until;

/// Bystander hogs the kernel OOM-kills once per test process.
pub const BYSTANDER_KILLS: usize = 3;

/// Memory limit of each bystander's cgroup.
const BYSTANDER_LIMIT: u64 = 32 << 20;

/// How long the kernel may take to log a kill after the hog is reaped.
const KILL_LOGGED_WAIT: Duration = Duration::from_secs(3);

/// The name of the second pool every lab php-fpm master runs.
pub const BYSTANDER_POOL: &str = "bystander";

/// Whether this build of the harness leaves history: the lab's test target does, the bench
/// (which `#[path]`-includes the harness) does not.
pub fn enabled() -> bool {
    env!("CARGO_CRATE_NAME") == "lab"
}

/// The pids of this process's bystander kills, once made.
static BYSTANDERS: OnceLock<Vec<u32>> = OnceLock::new();

/// Every pid a lab of this process had the kernel OOM-kill (bystanders and scenarios' hogs or
/// backends): all of them are history for the other scenarios.
static LAB_KILLS: Mutex<BTreeSet<u32>> = Mutex::new(BTreeSet::new());

/// Makes the bystander kills once per test process, holding `kernel_log` for writing while the
/// hogs die (no scenario is between its own kill and its agent run then). Later calls return at
/// once; concurrent first calls wait for the one that does the work.
pub(super) fn leave_kernel_history(kernel_log: &RwLock<()>, python3: &Path) {
    if !enabled() {
        return;
    }
    BYSTANDERS.get_or_init(|| {
        let _alone = kernel_log.write().unwrap_or_else(|p| p.into_inner());
        let pids: Vec<u32> = (0..BYSTANDER_KILLS)
            .map(|n| {
                let name = format!("why502-history-{}-{n}", std::process::id());
                let cgroup = MemoryCgroup::new(&name, BYSTANDER_LIMIT);
                oom_kill_a_hog(python3, &cgroup)
            })
            .collect();
        eprintln!("lab history: the kernel OOM-killed bystander hogs {pids:?}");
        pids
    });
}

/// The bystander pids of this process (empty before the first lab, or in the bench).
pub fn bystander_pids() -> Vec<u32> {
    BYSTANDERS.get().cloned().unwrap_or_default()
}

/// Every pid this test process had the kernel OOM-kill so far.
pub fn lab_kills() -> BTreeSet<u32> {
    LAB_KILLS.lock().unwrap_or_else(|p| p.into_inner()).clone()
}

/// Records a pid the kernel OOM-killed for a scenario (its backend, its hog).
pub fn record_kill(pid: u32) {
    LAB_KILLS
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .insert(pid);
}

/// The hog: waits for a line on stdin (so it is in `cgroup` before it allocates), then
/// allocates 8 MiB at a time until the kernel kills it.
const HOG_PY: &str =
    "import sys\nsys.stdin.readline()\nh = []\nwhile True:\n    h.append(b'x' * (8 << 20))\n";

/// Starts a python3 hog, moves it into `cgroup` and lets it allocate; asserts that it died of
/// SIGKILL and that the kernel logged the OOM kill of its pid. Returns the pid (recorded).
#[track_caller]
pub fn oom_kill_a_hog(python3: &Path, cgroup: &MemoryCgroup) -> u32 {
    let mut hog = Command::new(python3)
        .args(["-c", HOG_PY])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("lab history: cannot start a python3 hog: {e}"));
    let pid = hog.id();
    cgroup.add(pid);
    {
        let mut stdin = hog.stdin.take().expect("piped stdin");
        stdin
            .write_all(b"go\n")
            .unwrap_or_else(|e| panic!("lab history: cannot start hog {pid}: {e}"));
    }
    let status = hog
        .wait()
        .unwrap_or_else(|e| panic!("lab history: wait for hog {pid}: {e}"));
    assert_eq!(
        status.signal(),
        Some(libc::SIGKILL),
        "lab: hog {pid} in {} was supposed to be OOM-killed, but it ended with {status}",
        cgroup.dir().display()
    );
    let logged = poll_until(KILL_LOGGED_WAIT, || {
        kernel_oom_kills().contains(&pid).then_some(())
    });
    assert!(
        logged.is_some(),
        "lab: hog {pid} died of SIGKILL, but the kernel log has no OOM kill of it"
    );
    record_kill(pid);
    pid
}

impl super::lab::Lab {
    /// `oom_kill_a_hog` with the lab's python3: a process the kernel OOM-kills in `cgroup`,
    /// outside the scenario's stack (it runs in the host's namespace). Returns its pid.
    #[track_caller]
    pub fn oom_kill_a_hog_in(&self, cgroup: &MemoryCgroup) -> u32 {
        oom_kill_a_hog(&self.tools.python3, cgroup)
    }
}

/// Every pid the kernel log (`/dev/kmsg`, as much as its ring buffer holds) says the OOM killer
/// killed: `... Killed process PID (comm) ...`.
pub fn kernel_oom_kills() -> BTreeSet<u32> {
    let mut pids = BTreeSet::new();
    let Ok(mut kmsg) = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open("/dev/kmsg")
    else {
        return pids;
    };
    let mut record = vec![0u8; 16 * 1024];
    loop {
        match kmsg.read(&mut record) {
            Ok(0) => break,
            Ok(n) => {
                let text = String::from_utf8_lossy(&record[..n]);
                if let Some(pid) = killed_pid(&text) {
                    pids.insert(pid);
                }
            }
            // The ring buffer overwrote records we had not read yet: go on with the next.
            Err(e) if e.raw_os_error() == Some(libc::EPIPE) => continue,
            // EAGAIN: no more records.
            Err(_) => break,
        }
    }
    pids
}

/// The pid of `Killed process PID (comm)` in one kernel record.
fn killed_pid(record: &str) -> Option<u32> {
    let (_, rest) = record.split_once("Killed process ")?;
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
}

// ---- timestamps, in local time as nginx and php-fpm write them ----

const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

/// `time` broken down in the host's zone, as nginx and syslog stamp their lines.
pub fn local_time(time: SystemTime) -> libc::tm {
    let secs = time
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs() as libc::time_t;
    // SAFETY: an all-zero tm is a valid value; localtime_r only writes into the tm we own.
    let (tm, ok) = unsafe {
        let mut tm: libc::tm = std::mem::zeroed();
        let ok = !libc::localtime_r(&secs, &mut tm).is_null();
        (tm, ok)
    };
    assert!(ok, "localtime_r failed");
    tm
}

/// nginx's error-log stamp: `2026/12/01 19:10:00`.
pub fn nginx_stamp(time: SystemTime) -> String {
    let tm = local_time(time);
    format!(
        "{:04}/{:02}/{:02} {:02}:{:02}:{:02}",
        tm.tm_year + 1900,
        tm.tm_mon + 1,
        tm.tm_mday,
        tm.tm_hour,
        tm.tm_min,
        tm.tm_sec
    )
}

/// php-fpm's log stamp (without brackets): `01-Dec-2026 21:10:00`.
pub fn php_fpm_stamp(time: SystemTime) -> String {
    let tm = local_time(time);
    format!(
        "{:02}-{}-{:04} {:02}:{:02}:{:02}",
        tm.tm_mday,
        MONTHS[tm.tm_mon as usize],
        tm.tm_year + 1900,
        tm.tm_hour,
        tm.tm_min,
        tm.tm_sec
    )
}

fn ago(secs: u64) -> SystemTime {
    SystemTime::now() - Duration::from_secs(secs)
}

// ---- old lines in nginx's error log ----

/// One upstream an nginx config passes to, as nginx names it in its log: the scheme of the
/// module (`http`, `https`, `fastcgi`, `uwsgi`, `scgi`, `grpc`) and the address
/// (`127.0.0.1:8000`, `unix:/path`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LoggedUpstream {
    pub scheme: String,
    pub addr: String,
}

/// The upstreams nginx's config text passes to (`*_pass` directives, `upstream` blocks'
/// `server` lines), without variables, deduplicated, at most `MAX_SEEDED_UPSTREAMS`.
pub fn upstreams_in_config(text: &str) -> Vec<LoggedUpstream> {
    let mut blocks: Vec<(String, Vec<String>)> = Vec::new();
    let mut in_block: Option<usize> = None;
    let mut passes: Vec<(String, String)> = Vec::new();
    for raw in text.lines() {
        let line = raw.split('#').next().unwrap_or("").trim();
        if let Some(index) = in_block {
            if line.starts_with('}') {
                in_block = None;
            } else if let Some(server) = line.strip_prefix("server ") {
                let addr = server.split([' ', ';']).next().unwrap_or("").to_string();
                blocks[index].1.push(addr);
            }
            continue;
        }
        if let Some(name) = line
            .strip_prefix("upstream ")
            .and_then(|rest| rest.strip_suffix('{'))
        {
            blocks.push((name.trim().to_string(), Vec::new()));
            in_block = Some(blocks.len() - 1);
            continue;
        }
        // A line may hold several directives (`location /a { proxy_pass ...; }`).
        for statement in line.split([';', '{', '}']) {
            let mut words = statement.split_whitespace();
            let (Some(directive), Some(value)) = (words.next(), words.next()) else {
                continue;
            };
            let module = match directive {
                "proxy_pass" => "",
                "fastcgi_pass" => "fastcgi",
                "uwsgi_pass" => "uwsgi",
                "scgi_pass" => "scgi",
                "grpc_pass" => "grpc",
                _ => continue,
            };
            if !value.contains('$') {
                passes.push((module.to_string(), value.to_string()));
            }
        }
    }
    let mut out: Vec<LoggedUpstream> = Vec::new();
    for (module, value) in passes {
        let (scheme, rest) = match value.split_once("://") {
            Some((scheme, rest)) => (scheme.to_string(), rest),
            None => (module.clone(), value.as_str()),
        };
        let scheme = if scheme.is_empty() {
            "http".to_string()
        } else {
            scheme
        };
        let target = if let Some(path) = rest.strip_prefix("unix:") {
            // `unix:/path:/uri` (proxy_pass) or `unix:/path` (fastcgi_pass).
            format!("unix:{}", path.split(':').next().unwrap_or(path))
        } else {
            rest.split('/').next().unwrap_or(rest).to_string()
        };
        let addrs = match blocks.iter().find(|(name, _)| *name == target) {
            Some((_, servers)) => servers.clone(),
            None => vec![target],
        };
        for addr in addrs {
            let upstream = LoggedUpstream {
                scheme: scheme.clone(),
                addr,
            };
            if !upstream.addr.is_empty() && !out.contains(&upstream) {
                out.push(upstream);
            }
        }
    }
    out.truncate(MAX_SEEDED_UPSTREAMS);
    out
}

/// A config with thousands of servers needs no thousands of old lines.
const MAX_SEEDED_UPSTREAMS: usize = 8;

/// An old nginx master/worker pid: the nginx that ran before the lab's (a reboot ago).
const OLD_NGINX_PID: u32 = 2719;

/// nginx's `upstream: "..."` field for `upstream`.
fn upstream_field(upstream: &LoggedUpstream) -> String {
    let http_like = matches!(upstream.scheme.as_str(), "http" | "https");
    match (upstream.addr.starts_with("unix:"), http_like) {
        (true, true) => format!("{}://{}:/", upstream.scheme, upstream.addr),
        (true, false) => format!("{}://{}:", upstream.scheme, upstream.addr),
        (false, true) => format!("{}://{}/", upstream.scheme, upstream.addr),
        (false, false) => format!("{}://{}", upstream.scheme, upstream.addr),
    }
}

/// Old lines about `upstreams`: a connect failure 3 hours ago, a read timeout and a reset or
/// premature close later, the last 2 hours ago; and a reload notice. All outside the default
/// one-hour window.
pub fn old_nginx_lines(upstreams: &[LoggedUpstream]) -> String {
    let mut text = format!(
        "{} [notice] {}#{}: signal process started\n",
        nginx_stamp(ago(3 * 3600 + 120)),
        OLD_NGINX_PID - 1,
        OLD_NGINX_PID - 1
    );
    let mut connection = 11;
    for (i, upstream) in upstreams.iter().enumerate() {
        let offset = 60 * i as u64;
        let unix = upstream.addr.starts_with("unix:");
        let connect = if unix {
            format!(
                "connect() to {} failed (2: No such file or directory) while connecting to upstream",
                upstream.addr
            )
        } else {
            "connect() failed (111: Connection refused) while connecting to upstream".to_string()
        };
        let timeout =
            "upstream timed out (110: Connection timed out) while reading response header from upstream";
        let dropped = if upstream.scheme.starts_with("http") {
            "upstream prematurely closed connection while reading response header from upstream"
        } else {
            "recv() failed (104: Connection reset by peer) while reading response header from upstream"
        };
        let tail = format!(
            ", client: 127.0.0.1, server: lab.test, request: \"GET / HTTP/1.1\", upstream: \"{}\", host: \"127.0.0.1:8080\"",
            upstream_field(upstream)
        );
        for (secs, message) in [
            (3 * 3600 - offset, connect.as_str()),
            (2 * 3600 + 1800 - offset, timeout),
            (2 * 3600 + 300 - offset, dropped),
        ] {
            text.push_str(&format!(
                "{} [error] {OLD_NGINX_PID}#{OLD_NGINX_PID}: *{connection} {message}{tail}\n",
                nginx_stamp(ago(secs))
            ));
            connection += 17;
        }
    }
    text
}

/// The `error_log` files a config text names (relative ones under `prefix`), in order.
pub fn error_logs_in_config(text: &str, prefix: &Path) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = Vec::new();
    for raw in text.lines() {
        let line = raw.split('#').next().unwrap_or("").trim();
        let Some(rest) = line.strip_prefix("error_log ") else {
            continue;
        };
        let value = rest.split([' ', ';']).next().unwrap_or("");
        if value.is_empty() || value.starts_with("syslog:") || value == "stderr" {
            continue;
        }
        let path = Path::new(value);
        let path = if path.is_absolute() {
            path.to_path_buf()
        } else {
            prefix.join(path)
        };
        if !out.contains(&path) {
            out.push(path);
        }
    }
    out
}

/// Appends `text` to `path` (created 0644) when it is a regular file or does not exist yet;
/// returns the file's length afterwards, None when it is something else (a FIFO) and was left
/// alone.
pub fn append_history(path: &Path, text: &str) -> Option<u64> {
    match fs::symlink_metadata(path) {
        Ok(meta) if !meta.file_type().is_file() => return None,
        _ => {}
    }
    let mut file = OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o644)
        .open(path)
        .unwrap_or_else(|e| panic!("lab history: cannot open {}: {e}", path.display()));
    file.write_all(text.as_bytes())
        .unwrap_or_else(|e| panic!("lab history: cannot write {}: {e}", path.display()));
    Some(
        file.metadata()
            .unwrap_or_else(|e| panic!("lab history: stat {}: {e}", path.display()))
            .len(),
    )
}

// ---- the bystander pool's past in the shared php-fpm log ----

/// What the `[bystander]` pool logged 10 to 20 minutes ago, in php-fpm 8.2's formats (those of
/// crates/backend/tests/fixtures/logs/php-fpm-*.log): a child SIGKILLed, a script past
/// request_terminate_timeout, pm.max_children reached, a PHP fatal error through
/// catch_workers_output.
pub fn bystander_pool_lines() -> String {
    let pool = BYSTANDER_POOL;
    let at = |minutes: u64, seconds: u64| php_fpm_stamp(ago(minutes * 60 + seconds));
    [
        format!("[{}] WARNING: [pool {pool}] child 12345 exited on signal 9 (SIGKILL) after 12.345678 seconds from start", at(19, 40)),
        format!("[{}] NOTICE: [pool {pool}] child 12351 started", at(19, 40)),
        format!("[{}] WARNING: [pool {pool}] child 12346, script '/srv/bystander/report.php' (request: \"GET /report.php\") execution timed out (30.102345 sec), terminating", at(16, 5)),
        format!("[{}] WARNING: [pool {pool}] child 12346 exited on signal 15 (SIGTERM) after 30.104567 seconds from start", at(16, 5)),
        format!("[{}] NOTICE: [pool {pool}] child 12360 started", at(16, 5)),
        format!("[{}] WARNING: [pool {pool}] server reached pm.max_children setting (5), consider raising it", at(13, 12)),
        format!("[{}] WARNING: [pool {pool}] child 12361 said into stderr: \"NOTICE: PHP message: PHP Fatal error:  Allowed memory size of 134217728 bytes exhausted (tried to allocate 20480 bytes) in /srv/bystander/export.php on line 42\"", at(11, 30)),
    ]
    .iter()
    .map(|line| format!("{line}\n"))
    .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_upstreams_nginx_would_log() {
        let conf = "http {\n upstream pool {\n  server 127.0.0.1:8000;\n  server 127.0.0.1:8001 weight=2;\n }\n \
                    server {\n  location / { proxy_pass http://pool; }\n  location /a { proxy_pass http://127.0.0.1:9000/x; }\n  \
                    location /p { fastcgi_pass unix:/run/php.sock; }\n  location /v { set $b x; proxy_pass http://$b:8000; }\n }\n}\n";
        let found: Vec<String> = upstreams_in_config(conf)
            .iter()
            .map(|u| format!("{}://{}", u.scheme, u.addr))
            .collect();
        assert_eq!(
            found,
            [
                "http://127.0.0.1:8000",
                "http://127.0.0.1:8001",
                "http://127.0.0.1:9000",
                "fastcgi://unix:/run/php.sock"
            ]
        );
    }

    #[test]
    fn old_lines_have_nginx_format() {
        let lines = old_nginx_lines(&[LoggedUpstream {
            scheme: "fastcgi".into(),
            addr: "unix:/run/php.sock".into(),
        }]);
        let connect = lines.lines().nth(1).expect("a connect line");
        // `YYYY/MM/DD HH:MM:SS [error] PID#PID: *N ...`
        assert_eq!(&connect[4..5], "/");
        assert_eq!(&connect[19..28], " [error] ");
        assert!(connect.contains(": *11 connect() to unix:/run/php.sock failed (2: No such file or directory) while connecting to upstream, client: 127.0.0.1"));
        assert!(connect
            .ends_with("upstream: \"fastcgi://unix:/run/php.sock:\", host: \"127.0.0.1:8080\""));
    }

    #[test]
    fn kernel_records_name_the_killed_pid() {
        assert_eq!(
            killed_pid("3,513,2431872187,-;Memory cgroup out of memory: Killed process 26965 (python3) total-vm:49352kB"),
            Some(26965)
        );
        assert_eq!(killed_pid("6,514,1,-;nginx[27704]: segfault"), None);
    }
}

//! `Lab`: one scenario's sandbox — a network namespace, a temp dir holding
//! every config/log/socket, and the processes started inside. Dropping the
//! Lab (also while a failed test unwinds) stops those processes, deletes the
//! namespace and removes the temp dir, in that order.

use std::fs;
use std::io::Write;
use std::os::unix::fs::{chown, FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::ExitStatus;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::Duration;

/// How long a daemon of the lab may take to start.
pub(super) const START_TIMEOUT: Duration = Duration::from_secs(5);

use tempfile::TempDir;

use super::history;
use super::netns::NetNs;
use super::process::{read_log, run_capped, tail, Spawned};
use super::requirements::{lab_tools, skip_or_fail, Tools, WORKER_USER};
use super::users::lookup_user;
use super::wait::poll_until;

/// Set to keep every stack running after its test (see README).
pub const KEEP_ENV: &str = "WHY502_LAB_KEEP";

/// nginx writes the error-log line before it answers the client, but the
/// lab tolerates a slow disk or a loaded CI box.
const ERROR_LOG_WAIT: Duration = Duration::from_secs(2);

/// Cap for one curl run; curl itself is told `--max-time 5`.
const CURL_CAP: Duration = Duration::from_secs(10);

/// The kernel log is one for the whole machine, and every scenario's agent sees all of it in
/// its default window: other scenarios' OOM kills are the host's history, as on a real host.
/// A scenario that makes the kernel OOM-kill its own process holds this for writing, so that
/// no other kill lands between its own and its agent run (the newest kill is its own); the
/// others hold it for reading.
static KERNEL_LOG: RwLock<()> = RwLock::new(());

/// How a lab holds `KERNEL_LOG`.
enum KernelLogHold {
    Shared(#[allow(dead_code)] RwLockReadGuard<'static, ()>),
    Exclusive(#[allow(dead_code)] RwLockWriteGuard<'static, ()>),
}

/// Distinguishes several labs created by one test process.
static LAB_COUNTER: AtomicUsize = AtomicUsize::new(0);

/// Temp subdirectories nginx's workers write request bodies / buffered
/// responses into; they must belong to the worker user.
const NGINX_TEMP_DIRS: [&str; 5] = ["body", "proxy", "fastcgi", "uwsgi", "scgi"];

pub struct Lab {
    scenario: String,
    pub(super) tools: Tools,
    // Drop for Lab tears these down explicitly; each also cleans up after
    // itself, which covers a Lab::new that panics half-way.
    pub(super) procs: Vec<Spawned>,
    pub(super) netns: NetNs,
    dir: Option<TempDir>,
    root: PathBuf,
    /// Logs the lab seeded with history before their daemon started, and their length then:
    /// what the daemon wrote itself starts there.
    pub(super) seeded: Vec<(PathBuf, u64)>,
    /// Where a log shipper copies nginx's error log to when that is a FIFO.
    pub(super) error_log_copy: Option<PathBuf>,
    _kernel_log: KernelLogHold,
}

impl Lab {
    /// Checks the host, then builds the sandbox. None means "skipped"
    /// (already reported on stderr); in CI an unmet requirement panics.
    pub fn new(scenario: &str) -> Option<Lab> {
        Lab::create(scenario, false)
    }

    /// A lab whose scenario makes the kernel OOM-kill a process and then asks the agent about
    /// that kill: it waits for the running scenarios and runs alone, so its kill is the newest.
    pub fn new_exclusive(scenario: &str) -> Option<Lab> {
        Lab::create(scenario, true)
    }

    fn create(scenario: &str, exclusive: bool) -> Option<Lab> {
        let tools = match lab_tools() {
            Ok(tools) => tools,
            Err(reason) => {
                skip_or_fail(scenario, &reason);
                return None;
            }
        };
        // Before the first stack of this test process: the host's past (see `history.rs`).
        history::leave_kernel_history(&KERNEL_LOG, &tools.python3);
        let hold = if exclusive {
            KernelLogHold::Exclusive(KERNEL_LOG.write().unwrap_or_else(|p| p.into_inner()))
        } else {
            KernelLogHold::Shared(KERNEL_LOG.read().unwrap_or_else(|p| p.into_inner()))
        };
        let netns = match NetNs::create(&netns_name(scenario), &tools.ip) {
            Ok(netns) => netns,
            Err(reason) => {
                skip_or_fail(
                    scenario,
                    &format!("cannot create a network namespace: {reason}"),
                );
                return None;
            }
        };
        let dir = tempfile::Builder::new()
            .prefix("why502-lab-")
            .tempdir()
            .expect("lab: cannot create a temp dir");
        let root = dir.path().to_path_buf();
        prepare_tree(&root);
        eprintln!(
            "lab {scenario}: netns {}, dir {}",
            netns.name(),
            root.display()
        );
        Some(Lab {
            scenario: scenario.to_string(),
            tools,
            procs: Vec::new(),
            netns,
            dir: Some(dir),
            root,
            seeded: Vec::new(),
            error_log_copy: None,
            _kernel_log: hold,
        })
    }

    pub fn scenario(&self) -> &str {
        &self.scenario
    }

    pub fn netns_name(&self) -> &str {
        self.netns.name()
    }

    /// `program args...` to run inside the namespace (explicit argv, no shell).
    pub fn netns_command(&self, program: &Path, args: &[&str]) -> std::process::Command {
        self.netns.command(program, args)
    }

    /// The temp dir every file of this stack lives in.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// A path inside the temp dir, e.g. `lab.path("run/php-fpm.sock")`.
    pub fn path(&self, relative: &str) -> PathBuf {
        self.root.join(relative)
    }

    /// Starts `program args...` inside the namespace and records its pid.
    pub(super) fn spawn(
        &mut self,
        label: &str,
        program: &Path,
        args: &[String],
        stop_signal: libc::c_int,
    ) -> &mut Spawned {
        let cmd = self.netns.command(program, args);
        let logs = self.path("logs");
        self.procs
            .push(Spawned::spawn(label, cmd, &logs, stop_signal));
        self.procs.last_mut().expect("just pushed")
    }

    /// Wait until the process `label` is ready (`ready` says so). Fails the test if it exits
    /// first or `START_TIMEOUT` passes, with `waiting_for` (what never happened), its stderr,
    /// and the `context` the caller adds (logs, config).
    pub(super) fn await_ready(
        &mut self,
        label: &str,
        waiting_for: &str,
        ready: impl FnMut(&mut Self) -> bool,
        context: impl FnOnce(&Self) -> String,
    ) {
        self.await_ready_within(START_TIMEOUT, label, waiting_for, ready, context);
    }

    /// `await_ready` with another deadline than `START_TIMEOUT`.
    pub(super) fn await_ready_within(
        &mut self,
        start_timeout: Duration,
        label: &str,
        waiting_for: &str,
        mut ready: impl FnMut(&mut Self) -> bool,
        context: impl FnOnce(&Self) -> String,
    ) {
        let outcome = poll_until(start_timeout, || {
            if let Some(status) = self.process_mut(label).and_then(|proc| proc.poll_exit()) {
                return Some(Err(format!("{label} exited during startup ({status})")));
            }
            ready(self).then_some(Ok(()))
        });
        let problem = match outcome {
            Some(Ok(())) => return,
            Some(Err(problem)) => problem,
            None => format!("{label}: {waiting_for} within {start_timeout:?}"),
        };
        let stderr = self
            .process_mut(label)
            .map(|proc| read_log(proc.stderr_path()))
            .unwrap_or_default();
        panic!(
            "lab {}: {problem}\n{label} stderr:\n{}\n{}",
            self.scenario(),
            tail(&stderr, 4000),
            context(self)
        );
    }

    pub(super) fn process_mut(&mut self, label: &str) -> Option<&mut Spawned> {
        self.procs.iter_mut().find(|proc| proc.label() == label)
    }

    /// Stops one recorded process and forgets it. Err: it had to be SIGKILLed.
    pub(super) fn stop_process(&mut self, label: &str) -> Result<ExitStatus, String> {
        let index = self
            .procs
            .iter()
            .position(|proc| proc.label() == label)
            .unwrap_or_else(|| panic!("lab: no process labelled {label} was started"));
        let mut proc = self.procs.remove(index);
        proc.stop()
    }

    /// HTTP status of a GET from inside the namespace; 0 when nothing answered.
    #[track_caller]
    pub fn curl_status(&self, url: &str) -> u16 {
        self.curl_status_with(url, &[])
    }

    /// Status code of `GET http://127.0.0.1:8080<path>` through nginx with `Host: host`.
    #[track_caller]
    pub fn curl_through_nginx_with_host(&self, host: &str, path: &str) -> u16 {
        let header = format!("Host: {host}");
        let url = format!("http://{}{path}", super::nginx::NGINX_LISTEN);
        self.curl_status_with(&url, &["-H", &header])
    }

    #[track_caller]
    fn curl_status_with(&self, url: &str, extra: &[&str]) -> u16 {
        let mut args = vec![
            "-s",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "--max-time",
            "5",
        ];
        args.extend_from_slice(extra);
        args.push(url);
        let out = run_capped(self.netns.command(&self.tools.curl, &args), CURL_CAP);
        assert!(
            !out.timed_out,
            "lab: curl {url} did not finish within {CURL_CAP:?}"
        );
        out.stdout.trim().parse().unwrap_or_else(|_| {
            panic!(
                "lab: curl printed {:?} for {url}; stderr: {}",
                out.stdout, out.stderr
            )
        })
    }

    /// GET `path` through nginx as a client that reads nothing for `pause` and then all of
    /// it: nginx must spool what the socket buffers cannot hold. Returns (HTTP status, whether
    /// the chunked body ended with its last chunk, bytes read); a response that stalls for
    /// 3 s counts as cut (nginx 1.22 leaves the client waiting after a failed temp write).
    pub fn slow_reader_through_nginx(&self, path: &str, pause: Duration) -> (u16, bool, usize) {
        let (host, port) = super::nginx::NGINX_LISTEN
            .rsplit_once(':')
            .unwrap_or(("127.0.0.1", "8080"));
        let script = format!(
            "import socket, time\n\
             s = socket.create_connection(('{host}', {port}))\n\
             s.sendall(b'GET {path} HTTP/1.1\\r\\nHost: lab.test\\r\\nConnection: close\\r\\n\\r\\n')\n\
             time.sleep({})\n\
             s.settimeout(3)\n\
             head, tail, n = b'', b'', 0\n\
             while True:\n\
             \x20   try: b = s.recv(1 << 20)\n\
             \x20   except socket.timeout: break\n\
             \x20   if not b: break\n\
             \x20   if len(head) < 64: head = (head + b)[:64]\n\
             \x20   tail = (tail + b)[-16:]\n\
             \x20   n += len(b)\n\
             status = head.split(b' ', 2)[1].decode() if head.count(b' ') >= 2 else '0'\n\
             print(status, 'complete' if tail.endswith(b'\\r\\n0\\r\\n\\r\\n') else 'cut', n)\n",
            pause.as_secs_f64()
        );
        let out = run_capped(
            self.netns.command(&self.tools.python3, &["-c", &script]),
            pause + CURL_CAP,
        );
        let fields: Vec<&str> = out.stdout.split_whitespace().collect();
        match fields.as_slice() {
            [status, end, bytes] => (
                status.parse().unwrap_or(0),
                *end == "complete",
                bytes.parse().unwrap_or(0),
            ),
            _ => panic!(
                "lab: the slow reader printed {:?}; stderr: {}",
                out.stdout, out.stderr
            ),
        }
    }

    /// Starts `count` GETs of `path` through nginx at once, in the background, and returns
    /// without waiting: slow requests that keep the backend's workers busy while a scenario
    /// proves and diagnoses what that does. Each curl gives up after `max_time`; dropping the
    /// handle kills those still running.
    pub fn start_concurrent_requests(
        &self,
        path: &str,
        count: usize,
        max_time: Duration,
    ) -> BackgroundRequests {
        let url = format!("http://{}{path}", super::nginx::NGINX_LISTEN);
        let max_time = format!("{}", max_time.as_secs().max(1));
        let children = (0..count)
            .map(|_| {
                let args = ["-s", "-o", "/dev/null", "--max-time", &max_time, &url];
                let mut cmd = self.netns.command(&self.tools.curl, &args);
                cmd.stdout(std::process::Stdio::null())
                    .stderr(std::process::Stdio::null());
                cmd.spawn()
                    .unwrap_or_else(|err| panic!("lab: cannot start curl {url}: {err}"))
            })
            .collect();
        BackgroundRequests { children }
    }

    /// Status code of `GET http://127.0.0.1:8080<path>` through nginx.
    pub fn curl_through_nginx(&self, path: &str) -> u16 {
        self.curl_status(&format!("http://{}{path}", super::nginx::NGINX_LISTEN))
    }

    pub fn error_log_path(&self) -> PathBuf {
        self.path("logs/error.log")
    }

    /// What nginx itself wrote to its error log: the lines the lab seeded as history before
    /// nginx started are left out (an old line must never prove a breakage). When the error log
    /// is a FIFO, what its reader copied (reading the FIFO here would steal nginx's lines).
    pub fn error_log_text(&self) -> String {
        let path = self.error_log_path();
        if fs::symlink_metadata(&path).is_ok_and(|meta| meta.file_type().is_fifo()) {
            return self
                .error_log_copy
                .as_deref()
                .map(read_log)
                .unwrap_or_default();
        }
        self.text_after_history(&path)
    }

    /// `path` (a log) from where the seeded history ends; the whole file if none was seeded.
    pub(super) fn text_after_history(&self, path: &Path) -> String {
        let Ok(bytes) = fs::read(path) else {
            return String::new();
        };
        let start = self
            .seeded
            .iter()
            .find(|(seeded, _)| seeded == path)
            .map_or(0, |(_, len)| usize::try_from(*len).unwrap_or(usize::MAX));
        String::from_utf8_lossy(bytes.get(start..).unwrap_or_default()).into_owned()
    }

    /// Appends history to a log before its daemon starts and remembers where it ends.
    pub(super) fn seed_log(&mut self, path: &Path, text: &str) {
        if let Some(len) = history::append_history(path, text) {
            self.seeded.retain(|(seeded, _)| seeded != path);
            self.seeded.push((path.to_path_buf(), len));
        }
    }

    pub fn error_log_contains(&self, needle: &str) -> bool {
        self.error_log_text().contains(needle)
    }

    /// Proves the breakage is real before the agent is asked about it: a
    /// request through nginx gets 502 and nginx's error log explains why.
    #[track_caller]
    pub fn prove_502(&self, expected_error_log_substring: &str) {
        self.prove_status(502, expected_error_log_substring);
    }

    /// Like `prove_502` for any status nginx answers a broken upstream with
    /// (504 for a read timeout): a request through nginx gets `expected_status`
    /// and nginx's error log has a line containing the substring.
    #[track_caller]
    pub fn prove_status(&self, expected_status: u16, expected_error_log_substring: &str) {
        let status = self.curl_through_nginx("/");
        self.assert_proved(status, expected_status, expected_error_log_substring);
    }

    /// Like `prove_502` for a breakage a proof request can itself use up: up to `attempts`
    /// requests of at most `max_time` each, until one gets 502. (A full accept queue may
    /// have room for one more when its worker takes the next connection; the request that
    /// lands there waits, and the next one overflows.)
    #[track_caller]
    pub fn prove_502_within(
        &self,
        attempts: usize,
        max_time: Duration,
        expected_error_log_substring: &str,
    ) {
        let max_time = format!("{}", max_time.as_secs().max(1));
        let url = format!("http://{}/", super::nginx::NGINX_LISTEN);
        let mut status = 0;
        for _ in 0..attempts.max(1) {
            status = self.curl_status_with(&url, &["--max-time", &max_time]);
            if status == 502 {
                break;
            }
        }
        self.assert_proved(status, 502, expected_error_log_substring);
    }

    #[track_caller]
    fn assert_proved(&self, status: u16, expected_status: u16, expected_error_log_substring: &str) {
        assert_eq!(
            status,
            expected_status,
            "lab {}: the stack was supposed to be broken (nginx answering {expected_status}), but nginx answered {status}\nnginx error log tail:\n{}",
            self.scenario,
            tail(&self.error_log_text(), 4000)
        );
        let logged = poll_until(ERROR_LOG_WAIT, || {
            self.error_log_contains(expected_error_log_substring)
                .then_some(())
        });
        assert!(
            logged.is_some(),
            "lab {}: nginx answered {expected_status} but its error log has no line containing {expected_error_log_substring:?} \
             within {ERROR_LOG_WAIT:?}\nnginx error log tail:\n{}",
            self.scenario,
            tail(&self.error_log_text(), 4000)
        );
    }

    /// Everything worth seeing when a scenario fails: the logs of the stack.
    pub fn diagnostics(&self) -> String {
        let mut text = format!(
            "nginx error log tail:\n{}\n",
            tail(&self.error_log_text(), 4000)
        );
        for proc in &self.procs {
            text.push_str(&format!(
                "{} stderr tail:\n{}\n",
                proc.label(),
                tail(&read_log(proc.stderr_path()), 2000)
            ));
        }
        text
    }

    /// Leaves processes, namespace and temp dir in place and says how to
    /// get into them and how to clean up afterwards.
    fn keep_for_inspection(&mut self) {
        let pids: Vec<String> = self
            .procs
            .iter()
            .map(|proc| format!("{}={}", proc.label(), proc.pid()))
            .collect();
        let pid_list: Vec<String> = self
            .procs
            .iter()
            .map(|proc| proc.pid().to_string())
            .collect();
        for proc in &mut self.procs {
            proc.disarm();
        }
        self.netns.disarm();
        if let Some(dir) = self.dir.take() {
            let _ = dir.keep();
        }
        let ns = self.netns.name();
        let root = self.root.display();
        // Straight to the real stderr (not the test runner's capture), so
        // the instructions show up even without `--nocapture`.
        let _ = writeln!(
            std::io::stderr(),
            "lab {} kept for inspection ({KEEP_ENV} is set):\n  netns: {ns}   enter: ip netns exec {ns} bash\n  \
             dir:   {root}\n  pids:  {}\n  clean up: kill {}; ip netns del {ns}; rm -rf {root}",
            self.scenario,
            pids.join(" "),
            pid_list.join(" ")
        );
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        if std::env::var_os(KEEP_ENV).is_some_and(|value| !value.is_empty() && value != "0") {
            self.keep_for_inspection();
            return;
        }
        // Explicit order: processes (in reverse start order, so nginx goes
        // before its backends), then the namespace they ran in, then files.
        while let Some(proc) = self.procs.pop() {
            drop(proc);
        }
        self.netns.delete();
        if let Some(dir) = self.dir.take() {
            if let Err(err) = dir.close() {
                eprintln!("lab cleanup: cannot remove {}: {err}", self.root.display());
            }
        }
    }
}

/// `w502-<short scenario>-<pid>-<n>`: short enough to read in `ip netns
/// list`, unique across parallel tests and concurrent test processes.
fn netns_name(scenario: &str) -> String {
    let short: String = scenario
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '-')
        .take(12)
        .collect();
    let n = LAB_COUNTER.fetch_add(1, Ordering::Relaxed);
    format!("w502-{short}-{}-{n}", std::process::id())
}

/// Creates the directory layout every stack uses:
/// conf/ logs/ run/ www/index.php tmp/{body,proxy,fastcgi,uwsgi,scgi}.
fn prepare_tree(root: &Path) {
    // tempfile creates 0700; www-data (nginx and php-fpm workers) must be
    // able to traverse into run/ and www/.
    set_mode(root, 0o755);
    for sub in ["conf", "logs", "run", "www", "tmp"] {
        make_dir(&root.join(sub), 0o755);
    }
    let worker =
        lookup_user(WORKER_USER).unwrap_or_else(|| panic!("lab: user {WORKER_USER} vanished"));
    for sub in NGINX_TEMP_DIRS {
        let dir = root.join("tmp").join(sub);
        make_dir(&dir, 0o700);
        chown(&dir, Some(worker.uid), Some(worker.gid)).unwrap_or_else(|err| {
            panic!(
                "lab: cannot chown {} to {WORKER_USER}: {err}",
                dir.display()
            )
        });
    }
    let index = root.join("www/index.php");
    fs::write(&index, "<?php echo \"ok\";\n")
        .unwrap_or_else(|err| panic!("lab: cannot write {}: {err}", index.display()));
    set_mode(&index, 0o644);
}

/// Creates a directory (parents included) and sets its exact mode, which a
/// umask could otherwise narrow.
pub(super) fn make_dir(path: &Path, mode: u32) {
    fs::create_dir_all(path)
        .unwrap_or_else(|err| panic!("lab: cannot create {}: {err}", path.display()));
    set_mode(path, mode);
}

pub(super) fn set_mode(path: &Path, mode: u32) {
    fs::set_permissions(path, fs::Permissions::from_mode(mode))
        .unwrap_or_else(|err| panic!("lab: cannot chmod {:o} {}: {err}", mode, path.display()));
}

pub(super) fn write_file(path: &Path, content: &str) {
    fs::write(path, content)
        .unwrap_or_else(|err| panic!("lab: cannot write {}: {err}", path.display()));
}

/// The upstream address as the report spells a unix socket: `unix:` + path.
pub fn unix_addr(socket: &Path) -> String {
    format!("unix:{}", socket.display())
}

/// The upstream address as the report spells a TCP backend: `ip:port`.
pub fn tcp_addr(ip: &str, port: u16) -> String {
    format!("{ip}:{port}")
}

/// Requests started by `Lab::start_concurrent_requests`; killed and reaped on drop.
pub struct BackgroundRequests {
    children: Vec<std::process::Child>,
}

impl Drop for BackgroundRequests {
    fn drop(&mut self) {
        for child in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

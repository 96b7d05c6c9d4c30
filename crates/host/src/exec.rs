use std::ffi::CString;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::process::Command;

/// Output of a finished command, each stream capped.
#[derive(Debug, Clone)]
pub struct CommandOutput {
    /// `None` when killed by a signal.
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl CommandOutput {
    pub fn success(&self) -> bool {
        self.code == Some(0)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ExecError {
    #[error("`{program}` not found")]
    NotFound { program: String },
    #[error("cannot run `{program}`: {source}")]
    Spawn {
        program: String,
        #[source]
        source: std::io::Error,
    },
    #[error("`{program}` did not finish within {timeout:?}")]
    Timeout { program: String, timeout: Duration },
    /// `run_isolated` could not make the child's private namespace, so did not run it.
    #[error("`{program}` was not run: {reason}")]
    NotIsolated { program: String, reason: String },
}

impl ExecError {
    /// Why `program` did not start: not found, or the OS error.
    fn spawning(program: &str, source: std::io::Error) -> ExecError {
        let program = program.to_string();
        if source.kind() == std::io::ErrorKind::NotFound {
            ExecError::NotFound { program }
        } else {
            ExecError::Spawn { program, source }
        }
    }
}

/// Run `argv` (never through a shell) with stdin closed, each output stream capped at
/// `max_output` bytes, killed when `timeout` passes.
pub async fn run(
    argv: &[&str],
    timeout: Duration,
    max_output: usize,
) -> Result<CommandOutput, ExecError> {
    let program = argv.first().copied().unwrap_or_default().to_string();
    let cmd = Command::new(&program);
    finish(cmd, argv, timeout, max_output).await
}

/// `run` where every `bind(2)` the child makes fails with EADDRINUSE (a seccomp filter), so
/// it can open no listening socket on the host — `nginx -t` binds every `listen` address,
/// and creates the socket file of a `listen unix:`, unless told the address is in use, which
/// in test mode it accepts silently as "the running nginx holds it". Sets no_new_privs, so it
/// needs no privilege. Outgoing connections (DNS lookups of upstream names) are untouched.
pub async fn run_without_binding(
    argv: &[&str],
    timeout: Duration,
    max_output: usize,
) -> Result<CommandOutput, ExecError> {
    start_without_binding(argv, timeout)
        .await?
        .finish(max_output)
        .await
}

/// `run_without_binding` in two halves: this one returns once the child has started, so a
/// caller whose answer waits on the child (nginx -t) can start it before anything else.
pub async fn start_without_binding(
    argv: &[&str],
    timeout: Duration,
) -> Result<RunningCommand, ExecError> {
    let refusal = BindRefusal::new();
    let child = spawn_prepared(argv, timeout, move || refusal.apply()).await?;
    Ok(RunningCommand::new(child, argv, timeout))
}

/// `run_without_binding`, and in a private mount namespace where each of `overlays`
/// (existing directories) is covered by an overlay whose upper layer is a throw-away tmpfs:
/// the child reads the host as it is, and whatever it creates, writes, chowns or removes
/// there stays in the tmpfs and is gone when it exits. Needs CAP_SYS_ADMIN; a child that
/// cannot be isolated is not run.
pub async fn run_isolated(
    argv: &[&str],
    timeout: Duration,
    max_output: usize,
    overlays: &[PathBuf],
) -> Result<CommandOutput, ExecError> {
    start_isolated(argv, timeout, overlays)
        .await?
        .finish(max_output)
        .await
}

/// `run_isolated` in two halves, as `start_without_binding`.
pub async fn start_isolated(
    argv: &[&str],
    timeout: Duration,
    overlays: &[PathBuf],
) -> Result<RunningCommand, ExecError> {
    IsolatedSpawner::start()
        .start_isolated(argv, timeout, overlays)
        .await
}

/// The thread an isolated child is started from (see `spawn_prepared`), started ahead of the
/// child: it starts and makes its private mount namespace and scratch tmpfs while the caller
/// gathers what the child needs (for nginx -t, the process table and the config), and waits.
/// On two busy CPUs the thread's start alone took 0.5–0.8 ms and the namespace ~0.3 ms of a
/// run's critical path (measured on the lab stack). Dropped unused, the thread ends and its
/// namespace with it; nothing it did reaches the host's namespace.
pub struct IsolatedSpawner {
    requests: std::sync::mpsc::Sender<SpawnRequest>,
}

struct SpawnRequest {
    argv: Vec<String>,
    plan: IsolationPlan,
    refusal: BindRefusal,
    runtime: tokio::runtime::Handle,
    reply: tokio::sync::oneshot::Sender<std::io::Result<tokio::process::Child>>,
}

impl IsolatedSpawner {
    /// Starts the thread. A thread that cannot start, or cannot make the namespace, fails the
    /// one child asked of it, with the reason.
    pub fn start() -> IsolatedSpawner {
        let (requests, asked) = std::sync::mpsc::channel::<SpawnRequest>();
        let _ = std::thread::Builder::new()
            .name("why502-spawn".to_string())
            .spawn(move || {
                let entered = IsolationPlan::enter();
                let Ok(request) = asked.recv() else {
                    return;
                };
                // The mounts come first, while the thread still may (no_new_privs and the
                // filter after).
                let child = entered
                    .and_then(|()| request.plan.overlay())
                    .and_then(|()| request.refusal.apply())
                    .and_then(|()| {
                        // The child is registered with the runtime's process driver from here.
                        let _entered = request.runtime.enter();
                        let mut cmd = Command::new(&request.argv[0]);
                        configure(&mut cmd, &request.argv);
                        cmd.spawn()
                    });
                let _ = request.reply.send(child);
            });
        IsolatedSpawner { requests }
    }

    /// `argv` started from the thread, in its namespace with `overlays` overlaid (see
    /// `run_isolated`). `timeout` bounds the set-up too, as in `spawn_prepared`.
    pub async fn start_isolated(
        self,
        argv: &[&str],
        timeout: Duration,
        overlays: &[PathBuf],
    ) -> Result<RunningCommand, ExecError> {
        let program = argv.first().copied().unwrap_or_default().to_string();
        let plan = IsolationPlan::new(overlays).map_err(|reason| ExecError::NotIsolated {
            program: program.clone(),
            reason,
        })?;
        if !has_cap_sys_admin() {
            return Err(ExecError::NotIsolated {
                program,
                reason: "this run lacks CAP_SYS_ADMIN, which a private mount namespace needs"
                    .to_string(),
            });
        }
        let (reply, replied) = tokio::sync::oneshot::channel();
        let request = SpawnRequest {
            argv: argv.iter().map(|a| a.to_string()).collect(),
            plan,
            refusal: BindRefusal::new(),
            runtime: tokio::runtime::Handle::current(),
            reply,
        };
        if self.requests.send(request).is_err() {
            return Err(ExecError::spawning(
                &program,
                std::io::Error::other("the spawning thread could not start"),
            ));
        }
        let child = spawned_child(&program, timeout, replied).await?;
        Ok(RunningCommand::new(child, argv, timeout))
    }
}

/// A started child whose output is not collected yet (see `start_without_binding`). Dropped
/// unfinished, it is killed.
#[derive(Debug)]
pub struct RunningCommand {
    child: tokio::process::Child,
    program: String,
    timeout: Duration,
}

impl RunningCommand {
    fn new(child: tokio::process::Child, argv: &[&str], timeout: Duration) -> RunningCommand {
        RunningCommand {
            child,
            program: argv.first().copied().unwrap_or_default().to_string(),
            timeout,
        }
    }

    /// Its output, each stream capped at `max_output` bytes; killed when the timeout it was
    /// started with passes (counted from now).
    pub async fn finish(self, max_output: usize) -> Result<CommandOutput, ExecError> {
        collect(self.child, &self.program, self.timeout, max_output).await
    }
}

/// Start `argv` from a fresh thread that first runs `prepare` on itself (`IsolatedSpawner` is
/// the same with its thread started ahead). What `prepare` sets there — a private mount
/// namespace (`unshare` moves the calling thread only), no_new_privs and a seccomp filter
/// (both per thread) — the child inherits, and std starts it with
/// posix_spawn (a vfork) since no `pre_exec` is left to run. A fork instead copies this
/// process's page tables and makes its busy threads take copy-on-write faults while the child
/// mounts: measured with `nginx -t`, the fork path cost ~1 ms more (5.4 against 4.5 ms
/// median without isolation). The thread serves one child and ends, taking what `prepare`
/// did to it along. `timeout` bounds the set-up too: a mount over a hung network filesystem
/// must not hold the run.
async fn spawn_prepared(
    argv: &[&str],
    timeout: Duration,
    prepare: impl FnOnce() -> std::io::Result<()> + Send + 'static,
) -> Result<tokio::process::Child, ExecError> {
    let program = argv.first().copied().unwrap_or_default().to_string();
    let owned: Vec<String> = argv.iter().map(|a| a.to_string()).collect();
    let runtime = tokio::runtime::Handle::current();
    let (tx, rx) = tokio::sync::oneshot::channel();
    let spawned = std::thread::Builder::new()
        .name("why502-spawn".to_string())
        .spawn(move || {
            let child = prepare().and_then(|()| {
                // The child is registered with the runtime's process driver from here.
                let _entered = runtime.enter();
                let mut cmd = Command::new(&owned[0]);
                configure(&mut cmd, &owned);
                cmd.spawn()
            });
            let _ = tx.send(child);
        });
    if let Err(e) = spawned {
        return Err(ExecError::spawning(&program, e));
    }
    spawned_child(&program, timeout, rx).await
}

/// The child a spawning thread sends back, within `timeout`.
async fn spawned_child(
    program: &str,
    timeout: Duration,
    reply: tokio::sync::oneshot::Receiver<std::io::Result<tokio::process::Child>>,
) -> Result<tokio::process::Child, ExecError> {
    match tokio::time::timeout(timeout, reply).await {
        Ok(Ok(Ok(child))) => Ok(child),
        Ok(Ok(Err(e))) => Err(ExecError::spawning(program, e)),
        Ok(Err(_)) => Err(ExecError::spawning(
            program,
            std::io::Error::other("the spawning thread ended without a child"),
        )),
        Err(_) => Err(ExecError::Timeout {
            program: program.to_string(),
            timeout,
        }),
    }
}

/// CAP_SYS_ADMIN (bit 21) in this process's effective set, from /proc/self/status: a root
/// run under a unit that bounds it away has not got it.
pub fn has_cap_sys_admin() -> bool {
    let Ok(status) =
        crate::fsread::read_to_string_bounded(std::path::Path::new("/proc/self/status"), 64 * 1024)
    else {
        return false;
    };
    status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|hex| u64::from_str_radix(hex.trim(), 16).ok())
        .is_some_and(|caps| caps & (1 << 21) != 0)
}

/// The audit architecture of this build, which the filter checks before trusting a syscall
/// number (numbers differ between architectures). Hand-written: libc does not export them.
#[cfg(target_arch = "x86_64")]
const AUDIT_ARCH_NATIVE: u32 = 0xC000_003E;
#[cfg(target_arch = "aarch64")]
const AUDIT_ARCH_NATIVE: u32 = 0xC000_00B7;
#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
compile_error!("BindRefusal knows the audit architecture of x86_64 and aarch64 only");

/// A seccomp program: `bind` → EADDRINUSE, everything else allowed. A child of another
/// architecture than ours (a 32-bit nginx) is let through unfiltered rather than broken.
struct BindRefusal {
    program: Vec<libc::sock_filter>,
}

impl BindRefusal {
    fn new() -> BindRefusal {
        // Offsets in `struct seccomp_data`: nr at 0, arch at 4.
        let stmt = |code: u32, k: u32| libc::sock_filter {
            code: code as u16,
            jt: 0,
            jf: 0,
            k,
        };
        let jeq = |k: u32, jt: u8, jf: u8| libc::sock_filter {
            code: (libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K) as u16,
            jt,
            jf,
            k,
        };
        let load = libc::BPF_LD | libc::BPF_W | libc::BPF_ABS;
        let ret = libc::BPF_RET | libc::BPF_K;
        let program = vec![
            stmt(load, 4),
            jeq(AUDIT_ARCH_NATIVE, 0, 3),
            stmt(load, 0),
            jeq(libc::SYS_bind as u32, 0, 1),
            stmt(ret, libc::SECCOMP_RET_ERRNO | libc::EADDRINUSE as u32),
            stmt(ret, libc::SECCOMP_RET_ALLOW),
        ];
        BindRefusal { program }
    }

    /// On the spawning thread, last (see `spawn_prepared`): the child inherits it.
    fn apply(&self) -> std::io::Result<()> {
        let prog = libc::sock_fprog {
            len: self.program.len() as u16,
            filter: self.program.as_ptr().cast_mut(),
        };
        // SAFETY: prctl with a filter program that outlives the call (the kernel copies it).
        unsafe {
            if libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0
                || libc::prctl(
                    libc::PR_SET_SECCOMP,
                    libc::SECCOMP_MODE_FILTER,
                    &prog as *const libc::sock_fprog,
                ) != 0
            {
                return Err(std::io::Error::last_os_error());
            }
        }
        Ok(())
    }
}

/// The mounts `run_isolated` makes, as C strings built before the spawning thread starts.
struct IsolationPlan {
    /// (upper, work) directories to create in the scratch tmpfs, and the overlay mount.
    overlays: Vec<(CString, CString, CString, CString)>,
}

/// Where the child mounts its throw-away tmpfs: a directory every Linux host has and nginx
/// never uses.
const SCRATCH: &str = "/dev/shm";

impl IsolationPlan {
    fn new(dirs: &[PathBuf]) -> Result<IsolationPlan, String> {
        let c = |s: &str| CString::new(s).map_err(|_| format!("{s:?} holds a NUL byte"));
        let mut overlays = Vec::new();
        for (i, dir) in dirs.iter().enumerate() {
            let shown = dir
                .to_str()
                .ok_or_else(|| format!("{} is not UTF-8", dir.display()))?;
            // overlayfs options are comma- and colon-separated; such a path cannot be given.
            if !shown.starts_with('/') || shown == "/" || shown.contains([',', ':', '\\']) {
                return Err(format!("{shown} cannot be overlaid"));
            }
            if shown == SCRATCH || shown.starts_with(&format!("{SCRATCH}/")) {
                return Err(format!("{shown} is where the throw-away layer goes"));
            }
            let upper = format!("{SCRATCH}/u{i}");
            let work = format!("{SCRATCH}/w{i}");
            let options = format!("lowerdir={shown},upperdir={upper},workdir={work}");
            overlays.push((c(&upper)?, c(&work)?, c(shown)?, c(&options)?));
        }
        Ok(IsolationPlan { overlays })
    }

    /// On the spawning thread (see `IsolatedSpawner`), first: a private mount namespace and
    /// the scratch tmpfs.
    fn enter() -> std::io::Result<()> {
        let none = std::ptr::null::<libc::c_char>();
        let root = c"/";
        let tmpfs = c"tmpfs";
        let scratch = CString::new(SCRATCH).map_err(std::io::Error::other)?;
        let tmpfs_options = c"size=64m,mode=0700";
        // SAFETY: plain syscalls on NUL-terminated strings that outlive the calls.
        unsafe {
            check(libc::unshare(libc::CLONE_NEWNS))?;
            // Nothing mounted here may propagate back to the host's namespace.
            check(libc::mount(
                none,
                root.as_ptr(),
                none,
                libc::MS_REC | libc::MS_PRIVATE,
                std::ptr::null(),
            ))?;
            check(libc::mount(
                tmpfs.as_ptr(),
                scratch.as_ptr(),
                tmpfs.as_ptr(),
                libc::MS_NOSUID | libc::MS_NODEV,
                tmpfs_options.as_ptr().cast(),
            ))?;
        }
        Ok(())
    }

    /// Then, once the directories are known: an overlay per directory, its layers in the
    /// scratch tmpfs.
    fn overlay(&self) -> std::io::Result<()> {
        let overlay = c"overlay";
        // SAFETY: plain syscalls on NUL-terminated strings that outlive the calls.
        unsafe {
            for (upper, work, target, options) in &self.overlays {
                check(libc::mkdir(upper.as_ptr(), 0o700))?;
                check(libc::mkdir(work.as_ptr(), 0o700))?;
                check(libc::mount(
                    overlay.as_ptr(),
                    target.as_ptr(),
                    overlay.as_ptr(),
                    0,
                    options.as_ptr().cast(),
                ))?;
            }
        }
        Ok(())
    }
}

/// A syscall's 0-or-errno return as a Result.
fn check(rc: libc::c_int) -> std::io::Result<()> {
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// Arguments, closed stdin, captured output, the C locale, killed when dropped.
fn configure<S: AsRef<std::ffi::OsStr>>(cmd: &mut Command, argv: &[S]) {
    cmd.args(argv.iter().skip(1))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .env("LC_ALL", "C")
        .kill_on_drop(true);
}

async fn finish(
    mut cmd: Command,
    argv: &[&str],
    timeout: Duration,
    max_output: usize,
) -> Result<CommandOutput, ExecError> {
    let program = argv.first().copied().unwrap_or_default().to_string();
    configure(&mut cmd, argv);
    let child = cmd
        .spawn()
        .map_err(|source| ExecError::spawning(&program, source))?;
    collect(child, &program, timeout, max_output).await
}

/// Each output stream read up to `max_output`, and the exit, within `timeout`.
async fn collect(
    mut child: tokio::process::Child,
    program: &str,
    timeout: Duration,
    max_output: usize,
) -> Result<CommandOutput, ExecError> {
    let stdout = child.stdout.take();
    let stderr = child.stderr.take();
    let work = async {
        let (out, err, status) = tokio::join!(
            read_capped(stdout, max_output),
            read_capped(stderr, max_output),
            child.wait()
        );
        (out, err, status)
    };
    match tokio::time::timeout(timeout, work).await {
        Ok((stdout, stderr, status)) => {
            let code = status.ok().and_then(|s| s.code());
            Ok(CommandOutput {
                code,
                stdout,
                stderr,
            })
        }
        // Dropping `work` drops the child, and kill_on_drop kills it.
        Err(_) => Err(ExecError::Timeout {
            program: program.to_string(),
            timeout,
        }),
    }
}

/// Read up to `max` bytes, then keep draining (and discarding) so the child never blocks on a
/// full pipe.
async fn read_capped<R: AsyncRead + Unpin>(stream: Option<R>, max: usize) -> String {
    let Some(mut stream) = stream else {
        return String::new();
    };
    let mut kept = Vec::new();
    let mut chunk = [0u8; 8192];
    loop {
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                let room = max.saturating_sub(kept.len());
                kept.extend_from_slice(&chunk[..n.min(room)]);
            }
        }
    }
    String::from_utf8_lossy(&kept).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn captures_output_and_code() {
        let out = run(
            &["sh", "-c", "echo hi; echo err >&2; exit 3"],
            Duration::from_secs(5),
            1024,
        )
        .await
        .expect("run");
        assert_eq!(out.code, Some(3));
        assert_eq!(out.stdout, "hi\n");
        assert_eq!(out.stderr, "err\n");
    }

    #[tokio::test]
    async fn an_isolated_child_changes_nothing_under_its_overlays() {
        if !nix::unistd::geteuid().is_root() {
            // Mount namespaces need CAP_SYS_ADMIN; the lab checks this as root in CI.
            return;
        }
        let dir = tempfile::tempdir().expect("tmp");
        let kept = dir.path().join("kept");
        std::fs::write(&kept, "x").expect("write");
        let script = format!(
            "echo new > {d}/created && chown 65534 {d}/kept && rm -f {d}/kept2; cat {d}/kept",
            d = dir.path().display()
        );
        let out = run_isolated(
            &["sh", "-c", &script],
            Duration::from_secs(5),
            1024,
            &[dir.path().to_path_buf()],
        )
        .await
        .expect("run isolated");
        assert_eq!(
            (out.code, out.stdout.as_str()),
            (Some(0), "x"),
            "{}",
            out.stderr
        );
        assert!(
            !dir.path().join("created").exists(),
            "a file reached the host"
        );
        let owner = std::os::unix::fs::MetadataExt::uid(&std::fs::metadata(&kept).expect("stat"));
        assert_eq!(owner, 0, "a chown reached the host");
    }

    #[tokio::test]
    async fn a_spawner_started_ahead_isolates_and_leaves_the_host_mounts_alone() {
        if !nix::unistd::geteuid().is_root() {
            return;
        }
        let mounts = || std::fs::read_to_string("/proc/self/mountinfo").expect("mountinfo");
        let before = mounts();
        let dir = tempfile::tempdir().expect("tmp");
        let unused = IsolatedSpawner::start();
        let ahead = IsolatedSpawner::start();
        // Both threads have made their namespace and tmpfs by now; this process's (the host's)
        // mounts are as they were, and stay so once the unused one is dropped.
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(
            mounts(),
            before,
            "a spawner's mount reached the host's namespace"
        );
        drop(unused);
        let script = format!("echo new > {}/created", dir.path().display());
        let out = ahead
            .start_isolated(
                &["sh", "-c", &script],
                Duration::from_secs(5),
                &[dir.path().to_path_buf()],
            )
            .await
            .expect("started")
            .finish(1024)
            .await
            .expect("ran");
        assert_eq!(out.code, Some(0), "{}", out.stderr);
        assert!(
            !dir.path().join("created").exists(),
            "a file reached the host"
        );
        assert_eq!(mounts(), before);
    }

    #[tokio::test]
    async fn a_child_without_binding_cannot_listen_but_can_connect() {
        // A listener of ours the child may reach: connecting is not binding.
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let script = format!(
            "import socket\n\
             s = socket.socket()\n\
             try:\n    s.bind(('127.0.0.1', 0)); print('bound')\n\
             except OSError as e:\n    print('refused', e.errno)\n\
             c = socket.create_connection(('127.0.0.1', {port}), timeout=2); print('connected')\n"
        );
        let out = run_without_binding(&["python3", "-c", &script], Duration::from_secs(5), 1024)
            .await
            .expect("run");
        assert_eq!(
            out.stdout,
            format!("refused {}\nconnected\n", libc::EADDRINUSE),
            "{}",
            out.stderr
        );
        if nix::unistd::geteuid().is_root() {
            let dir = tempfile::tempdir().expect("tmp");
            let out = run_isolated(
                &["python3", "-c", &script],
                Duration::from_secs(5),
                1024,
                &[dir.path().to_path_buf()],
            )
            .await
            .expect("run isolated");
            assert!(out.stdout.starts_with("refused"), "{}", out.stdout);
        }
    }

    /// What the spawning thread took on (namespace, no_new_privs, the bind filter) stays
    /// with it: every thread of ours keeps the process's mount namespace and may still bind
    /// (`serve` binds its socket after many a `nginx -t`).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_caller_keeps_its_namespace_and_may_still_bind() {
        let ns = |task: &str| std::fs::read_link(format!("/proc/self/task/{task}/ns/mnt")).ok();
        let own = std::fs::read_link("/proc/self/ns/mnt").expect("own mount namespace");
        let out = run_without_binding(&["true"], Duration::from_secs(5), 64)
            .await
            .expect("run");
        assert!(out.success());
        if nix::unistd::geteuid().is_root() {
            let dir = tempfile::tempdir().expect("tmp");
            let out = run_isolated(
                &["true"],
                Duration::from_secs(5),
                64,
                &[dir.path().to_path_buf()],
            )
            .await
            .expect("run isolated");
            assert!(out.success(), "{}", out.stderr);
        }
        let tasks: Vec<String> = std::fs::read_dir("/proc/self/task")
            .expect("tasks")
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        for task in &tasks {
            let status = std::fs::read_to_string(format!("/proc/self/task/{task}/status"))
                .unwrap_or_default();
            // A spawning thread (this test's or a parallel test's) is the one that may be
            // changed; it may also be gone already.
            if status.is_empty() || status.starts_with("Name:\twhy502-spawn\n") {
                continue;
            }
            assert!(
                status.contains("NoNewPrivs:\t0") && status.contains("Seccomp:\t0"),
                "thread {task} was changed:\n{status}"
            );
            if let Some(link) = ns(task) {
                assert_eq!(link, own, "thread {task} left the mount namespace");
            }
        }
        std::net::TcpListener::bind("127.0.0.1:0").expect("this thread binds");
        tokio::task::spawn_blocking(|| std::net::TcpListener::bind("127.0.0.1:0").map(|_| ()))
            .await
            .expect("join")
            .expect("a blocking thread binds");
        tokio::spawn(async {
            tokio::net::TcpListener::bind("127.0.0.1:0")
                .await
                .map(|_| ())
        })
        .await
        .expect("join")
        .expect("a worker binds");
    }

    #[test]
    fn paths_overlayfs_cannot_take_are_refused() {
        for bad in ["/", "relative", "/a,b", "/a:b", "/dev/shm", "/dev/shm/x"] {
            assert!(IsolationPlan::new(&[PathBuf::from(bad)]).is_err(), "{bad}");
        }
        assert!(IsolationPlan::new(&[PathBuf::from("/var/lib/nginx")]).is_ok());
    }

    #[tokio::test]
    async fn kills_on_timeout() {
        let start = std::time::Instant::now();
        let err = run(&["sleep", "30"], Duration::from_millis(200), 1024)
            .await
            .expect_err("timeout");
        assert!(matches!(err, ExecError::Timeout { .. }));
        assert!(start.elapsed() < Duration::from_secs(10));
    }

    #[tokio::test]
    async fn caps_output() {
        let out = run(
            &["head", "-c", "100000", "/dev/zero"],
            Duration::from_secs(5),
            1000,
        )
        .await
        .expect("run");
        assert_eq!(out.stdout.len(), 1000);
        assert!(out.success());
    }

    #[tokio::test]
    async fn missing_program_is_not_found() {
        let err = run(
            &["/nonexistent/why502-no-such-tool"],
            Duration::from_secs(1),
            10,
        )
        .await
        .expect_err("missing");
        assert!(matches!(err, ExecError::NotFound { .. }));
    }
}

//! Real OOM kills: a python3 child in a memory cgroup limited to 20 MiB allocates 200 MiB and
//! is killed by the kernel; the kernel log must then show that kill, with its pid, name and
//! memory cgroup. Needs root (skips otherwise; fails instead under CI=true). Works with
//! cgroup v2 and with a v1 memory controller (this build machine is a v1/v2 hybrid). The
//! cgroup is removed afterwards, and a controller enabled for the test is disabled again.

use std::fs;
use std::io::Write;
use std::os::fd::AsRawFd;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime};

use why502_kernel_log::{KernelLog, KernelLogSource, KernelLogWindow, OomMatch, OomQuery};

fn ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true")
}

/// Skip with a reason, or fail when CI=true.
fn skip(why: &str) {
    assert!(!ci(), "CI=true, cannot skip: {why}");
    eprintln!("SKIP: {why}");
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// A memory cgroup made for one test, removed on drop.
struct TestCgroup {
    dir: PathBuf,
    /// The cgroup's path as the kernel prints it (`/why502-test-PID`).
    kernel_path: String,
    /// subtree_control file where this test enabled `memory`, to disable it again.
    enabled_memory_in: Option<PathBuf>,
}

impl TestCgroup {
    fn create(name: &str, limit: &str) -> Result<TestCgroup, String> {
        let mountinfo = fs::read_to_string("/proc/self/mountinfo").map_err(|e| e.to_string())?;
        let mut v2_root = None;
        let mut v1_memory = None;
        for line in mountinfo.lines() {
            let Some((left, right)) = line.split_once(" - ") else {
                continue;
            };
            let Some(mount_point) = left.split(' ').nth(4) else {
                continue;
            };
            let mut r = right.split(' ');
            let fstype = r.next().unwrap_or("");
            let opts = r.nth(1).unwrap_or("");
            let mp = PathBuf::from(mount_point);
            if fstype == "cgroup2" {
                let controllers =
                    fs::read_to_string(mp.join("cgroup.controllers")).unwrap_or_default();
                if controllers.split_whitespace().any(|c| c == "memory") {
                    v2_root = Some(mp);
                }
            } else if fstype == "cgroup" && opts.split(',').any(|o| o == "memory") {
                v1_memory = Some(mp);
            }
        }
        let kernel_path = format!("/{name}");
        if let Some(root) = v2_root {
            let control = root.join("cgroup.subtree_control");
            let enabled = fs::read_to_string(&control).map_err(|e| e.to_string())?;
            let mut cg = TestCgroup {
                dir: root.join(name),
                kernel_path,
                enabled_memory_in: None,
            };
            if !enabled.split_whitespace().any(|c| c == "memory") {
                fs::write(&control, "+memory")
                    .map_err(|e| format!("enable memory in {}: {e}", control.display()))?;
                cg.enabled_memory_in = Some(control);
            }
            fs::create_dir(&cg.dir).map_err(|e| format!("mkdir {}: {e}", cg.dir.display()))?;
            fs::write(cg.dir.join("memory.max"), limit).map_err(|e| e.to_string())?;
            // Absent without swap accounting; the limit alone then holds (no swap to escape to).
            let _ = fs::write(cg.dir.join("memory.swap.max"), "0");
            return Ok(cg);
        }
        if let Some(root) = v1_memory {
            let cg = TestCgroup {
                dir: root.join(name),
                kernel_path,
                enabled_memory_in: None,
            };
            fs::create_dir(&cg.dir).map_err(|e| format!("mkdir {}: {e}", cg.dir.display()))?;
            fs::write(cg.dir.join("memory.limit_in_bytes"), limit).map_err(|e| e.to_string())?;
            // memory+swap must be at least the memory limit, so it is set second.
            let _ = fs::write(cg.dir.join("memory.memsw.limit_in_bytes"), limit);
            return Ok(cg);
        }
        Err(
            "no memory cgroup controller mounted (neither cgroup2 with memory nor v1 memory)"
                .into(),
        )
    }

    /// Spawn `argv` inside the cgroup: the child joins it between fork and exec.
    fn spawn(&self, argv: &[&str]) -> std::io::Result<Child> {
        let procs = fs::OpenOptions::new()
            .write(true)
            .open(self.dir.join("cgroup.procs"))?;
        let fd = procs.as_raw_fd();
        let mut cmd = Command::new(argv[0]);
        cmd.args(&argv[1..])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        // SAFETY: only write(2) on an fd opened before fork, which is async-signal-safe.
        // "0" moves the writing process itself (cgroup v1 and v2 alike).
        unsafe {
            cmd.pre_exec(move || {
                if libc::write(fd, b"0".as_ptr().cast(), 1) == 1 {
                    Ok(())
                } else {
                    Err(std::io::Error::last_os_error())
                }
            });
        }
        let child = cmd.spawn();
        drop(procs);
        child
    }
}

impl Drop for TestCgroup {
    fn drop(&mut self) {
        // A killed task leaves the cgroup a moment after it is reaped.
        for _ in 0..50 {
            match fs::remove_dir(&self.dir) {
                Ok(()) => break,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => break,
                Err(_) => std::thread::sleep(Duration::from_millis(100)),
            }
        }
        if self.dir.exists() {
            eprintln!("WARNING: could not remove {}", self.dir.display());
        }
        if let Some(control) = &self.enabled_memory_in {
            if let Ok(mut f) = fs::OpenOptions::new().write(true).open(control) {
                let _ = f.write_all(b"-memory");
            }
        }
    }
}

/// Kills and reaps the child if the test fails before it died.
struct ChildGuard(Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

fn wait_for_exit(child: &mut ChildGuard, limit: Duration) -> Option<std::process::ExitStatus> {
    let start = Instant::now();
    while start.elapsed() < limit {
        if let Ok(Some(status)) = child.0.try_wait() {
            return Some(status);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    None
}

fn python3() -> Option<&'static str> {
    // The system python directly: a version-manager shim would add a shell in between.
    ["/usr/bin/python3", "/usr/local/bin/python3"]
        .into_iter()
        .find(|p| Path::new(p).exists())
}

#[tokio::test]
async fn memcg_oom_kill_is_found_with_pid_name_and_cgroup() {
    if !is_root() {
        return skip("needs root to create a memory cgroup");
    }
    let Some(python) = python3() else {
        return skip("python3 not installed");
    };
    let name = format!("why502-test-{}", std::process::id());
    let cg = match TestCgroup::create(&name, "20971520") {
        Ok(cg) => cg,
        Err(e) => return skip(&e),
    };
    let start = SystemTime::now();
    let mut child = ChildGuard(
        cg.spawn(&[python, "-c", "s = b'x' * (200 * 1024 * 1024)"])
            .expect("spawn python3 in the cgroup"),
    );
    let pid = child.0.id();
    let status = wait_for_exit(&mut child, Duration::from_secs(60)).expect("child exits");
    assert_eq!(status.signal(), Some(libc::SIGKILL), "{status:?}");

    let began = Instant::now();
    let window = KernelLog::read(start - Duration::from_secs(1), Duration::from_secs(10)).await;
    eprintln!("kernel log read in {:?}", began.elapsed());
    let KernelLogWindow::Read(read) = &window else {
        panic!("root must read the kernel log: {window:?}");
    };
    // The window is seconds long: the ring buffer's tail through syslog(2) covers it.
    assert_eq!(read.source, KernelLogSource::Syslog);
    assert!(read.complete(), "{read:?}");
    let kill = read
        .kills
        .iter()
        .find(|k| k.pid == pid)
        .unwrap_or_else(|| panic!("no kill of pid {pid} in {:?}", read.kills));
    assert_eq!(kill.process, "python3");
    assert!(kill.cgroup_oom);
    assert_eq!(kill.oom_memcg.as_deref(), Some(cg.kernel_path.as_str()));
    assert_eq!(kill.task_memcg.as_deref(), Some(cg.kernel_path.as_str()));
    assert!(
        kill.line
            .contains(&format!("Killed process {pid} (python3)")),
        "{}",
        kill.line
    );
    assert!(kill.anon_rss_kb.is_some_and(|kb| kb > 1000));
    // The monotonic stamp mapped to wall time lands inside the test's own run.
    let now = SystemTime::now();
    assert!(
        kill.time >= start - Duration::from_secs(1) && kill.time <= now + Duration::from_secs(1),
        "kill at {:?}, test ran {start:?}..{now:?}",
        kill.time
    );

    let by_pid = OomQuery {
        pids: [pid].into(),
        ..OomQuery::default()
    };
    assert_eq!(
        window.kills_matching(&by_pid),
        vec![(kill, OomMatch::Pid { pid })]
    );
    let by_cgroup = OomQuery {
        cgroup_prefixes: vec![cg.kernel_path.clone()],
        ..OomQuery::default()
    };
    assert_eq!(window.kills_matching(&by_cgroup).len(), 1);
    let elsewhere = OomQuery {
        pids: [u32::MAX].into(),
        cgroup_prefixes: vec![format!("{}-other", cg.kernel_path)],
        process_names: vec!["php-fpm8.2".into()],
    };
    assert!(window.kills_matching(&elsewhere).is_empty());
    assert!(window
        .kills_matching_none(std::slice::from_ref(&elsewhere))
        .iter()
        .any(|k| k.pid == pid));

    // /dev/kmsg, read record by record from the oldest, sees the same kill.
    let log = KernelLog {
        use_syslog: false,
        ..KernelLog::default()
    };
    let window = log
        .read_window(start - Duration::from_secs(1), Duration::from_secs(10))
        .await;
    let KernelLogWindow::Read(device) = &window else {
        panic!("root must read /dev/kmsg: {window:?}");
    };
    assert_eq!(device.source, KernelLogSource::Kmsg);
    assert!(device.complete(), "{device:?}");
    let k = device
        .kills
        .iter()
        .find(|k| k.pid == pid)
        .expect("/dev/kmsg shows the kill");
    assert_eq!((&k.line, &k.task_memcg), (&kill.line, &kill.task_memcg));
    assert!(device.records_read >= read.records_read);

    // The dmesg fallback, forced by a missing /dev/kmsg, sees the same kill.
    if Command::new("dmesg").arg("--version").output().is_ok() {
        let log = KernelLog {
            kmsg_path: PathBuf::from("/nonexistent/why502-kmsg"),
            use_journal: false,
            ..KernelLog::default()
        };
        let window = log
            .read_window(start - Duration::from_secs(1), Duration::from_secs(10))
            .await;
        let KernelLogWindow::Read(read) = &window else {
            panic!("dmesg as root must work: {window:?}");
        };
        assert_eq!(read.source, KernelLogSource::Dmesg);
        assert_eq!(read.unusable.len(), 1);
        let k = read
            .kills
            .iter()
            .find(|k| k.pid == pid)
            .expect("dmesg shows the kill");
        assert_eq!(k.task_memcg.as_deref(), Some(cg.kernel_path.as_str()));
        assert!(k.time.duration_since(kill.time).unwrap_or_default() < Duration::from_secs(1));
    } else {
        eprintln!("dmesg not installed: fallback not exercised");
    }

    // The journal fallback either shows the kill or says why it cannot be used.
    let log = KernelLog {
        kmsg_path: PathBuf::from("/nonexistent/why502-kmsg"),
        use_dmesg: false,
        ..KernelLog::default()
    };
    let mut found = false;
    for _ in 0..20 {
        match log
            .read_window(start - Duration::from_secs(1), Duration::from_secs(10))
            .await
        {
            KernelLogWindow::Read(read) => {
                assert_eq!(read.source, KernelLogSource::Journal);
                if read.kills.iter().any(|k| k.pid == pid) {
                    found = true;
                    break;
                }
                // journald may not have stored the lines yet.
                std::thread::sleep(Duration::from_millis(100));
            }
            KernelLogWindow::Unknown { tried, .. } => {
                let journal = tried
                    .iter()
                    .find(|f| f.source == "journalctl -k")
                    .expect("journal tried");
                assert!(!journal.reason.is_empty());
                eprintln!("journal not usable here: {}", journal.reason);
                found = true;
                break;
            }
        }
    }
    assert!(found, "the journal was readable but never showed the kill");
}

/// What an unprivileged reader must get: with dmesg_restrict=1, /dev/kmsg refused for lack
/// of privilege and said so; when nothing else works, `Unknown` with the fix.
async fn check_unprivileged_window() {
    assert_ne!(unsafe { libc::geteuid() }, 0, "must run unprivileged");
    let restricted = fs::read_to_string("/proc/sys/kernel/dmesg_restrict")
        .map(|s| s.trim() == "1")
        .unwrap_or(false);
    let window = KernelLog::read(
        SystemTime::now() - Duration::from_secs(3600),
        Duration::from_secs(10),
    )
    .await;
    let (tried, unknown) = match &window {
        KernelLogWindow::Read(r) => (r.unusable.clone(), false),
        KernelLogWindow::Unknown { tried, fix, reason } => {
            assert!(fix.contains("CAP_SYSLOG") && fix.contains("adm"), "{fix}");
            assert!(reason.contains("/dev/kmsg"), "{reason}");
            (tried.clone(), true)
        }
    };
    if restricted {
        let kmsg = tried
            .iter()
            .find(|f| f.source == "/dev/kmsg")
            .unwrap_or_else(|| {
                panic!("/dev/kmsg must be refused with dmesg_restrict=1: {window:?}")
            });
        assert!(kmsg.permission, "{kmsg:?}");
        assert!(kmsg.reason.contains("dmesg_restrict=1"), "{}", kmsg.reason);
    }
    println!("PROBE-OK unknown={unknown} {window:?}");
}

/// Run by `unprivileged_reader_is_told_why` in a child as uid/gid 65534; does nothing unless
/// that test started it.
#[tokio::test]
#[ignore = "child half of unprivileged_reader_is_told_why"]
async fn unprivileged_probe() {
    if std::env::var("WHY502_UNPRIVILEGED_PROBE").is_ok() {
        check_unprivileged_window().await;
    }
}

#[tokio::test]
async fn unprivileged_reader_is_told_why() {
    if !is_root() {
        // Already unprivileged: check in this process.
        return check_unprivileged_window().await;
    }
    let exe = std::env::current_exe().expect("test binary");
    let mut cmd = Command::new(&exe);
    cmd.args([
        "--exact",
        "unprivileged_probe",
        "--include-ignored",
        "--nocapture",
    ])
    .env("WHY502_UNPRIVILEGED_PROBE", "1");
    // SAFETY: setgroups/setgid/setuid between fork and exec, async-signal-safe.
    unsafe {
        cmd.pre_exec(|| {
            if libc::setgroups(0, std::ptr::null()) != 0
                || libc::setgid(65534) != 0
                || libc::setuid(65534) != 0
            {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let out = cmd.output().expect("run the probe");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    if !out.status.success() && stderr.contains("Permission denied") && !stdout.contains("running")
    {
        return skip(&format!("uid 65534 cannot run {}: {stderr}", exe.display()));
    }
    eprintln!("{stdout}");
    assert!(out.status.success(), "probe failed:\n{stdout}\n{stderr}");
    assert!(
        stdout.contains("PROBE-OK"),
        "probe did not run:\n{stdout}\n{stderr}"
    );
}

#![allow(dead_code)]
//! What the benchmarks share: one measured run of a command (wall time to its exit, its
//! CPU and peak RSS from wait4), and the statistics of several.

use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::harness::read_all;

/// Wall-clock cap for any one measured run; only trips on a real hang.
pub const RUN_CAP: Duration = Duration::from_secs(30);

/// `ip netns exec NS program args...`: explicit argv, never a shell.
/// `ip netns exec` execs in place, so the child's pid is `program`'s pid.
pub fn netns_command<S: AsRef<std::ffi::OsStr>>(
    ip: &Path,
    ns: &str,
    program: &Path,
    args: &[S],
) -> Command {
    let mut cmd = Command::new(ip);
    cmd.args(["netns", "exec", ns]).arg(program).args(args);
    cmd
}

/// `program args...` started straight into the network namespace `ns`: the forked child
/// joins it (setns) before it execs, so what is timed is the program alone, as on a host
/// without namespaces. `ip netns exec` (`netns_command`) also makes a mount namespace,
/// remounts /sys and is one more exec: ~3 ms on this machine, paid by every row alike.
pub fn setns_command<S: AsRef<std::ffi::OsStr>>(ns: &str, program: &Path, args: &[S]) -> Command {
    let path = Path::new("/run/netns").join(ns);
    let netns = std::fs::File::open(&path)
        .unwrap_or_else(|err| panic!("bench: cannot open {}: {err}", path.display()));
    let mut cmd = Command::new(program);
    cmd.args(args);
    // SAFETY: between fork and exec the closure makes one async-signal-safe syscall on an fd
    // the parent opened (kept open by the closure, which the Command owns).
    unsafe {
        cmd.pre_exec(move || {
            use std::os::fd::AsRawFd;
            if libc::setns(netns.as_raw_fd(), libc::CLONE_NEWNET) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    cmd
}

/// One measured run.
pub struct Sample {
    pub wall: Duration,
    /// User + system CPU of the process and the children it waited for.
    pub cpu: Duration,
    /// ru_maxrss from wait4, KiB.
    pub max_rss_kib: i64,
    pub exit_code: i32,
    pub stdout: String,
    pub stderr: String,
    pub timed_out: bool,
}

/// Spawns `cmd` (its own process group, output to anonymous temp files so a
/// large report cannot block on a pipe), waits for it, and returns the wall
/// time from just before spawn to the moment it exited plus its rusage.
///
/// Waiting is `waitid(WNOWAIT)` (exit observed, not reaped) and then `wait4`
/// (reap + rusage). A watchdog thread SIGKILLs the process group after
/// `RUN_CAP`; it and the reaper share a mutex, so the kill can only reach a
/// process that has not been reaped yet — never a reused pid.
pub fn measure(mut cmd: Command) -> Sample {
    let stdout = tempfile::tempfile().expect("bench: temp file");
    let stderr = tempfile::tempfile().expect("bench: temp file");
    cmd.stdin(Stdio::null())
        .stdout(stdout.try_clone().expect("bench: dup"))
        .stderr(stderr.try_clone().expect("bench: dup"))
        .process_group(0);

    let start = Instant::now();
    let child = cmd
        .spawn()
        .unwrap_or_else(|err| panic!("bench: cannot run {cmd:?}: {err}"));
    let pid = child.id() as libc::pid_t;

    let reaped = Arc::new(Mutex::new(false));
    let timed_out = Arc::new(Mutex::new(false));
    let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
    let watchdog = {
        let reaped = Arc::clone(&reaped);
        let timed_out = Arc::clone(&timed_out);
        std::thread::spawn(move || {
            if done_rx.recv_timeout(RUN_CAP).is_ok() {
                return;
            }
            let reaped = reaped.lock().unwrap();
            if !*reaped {
                // SAFETY: the pid is ours and not reaped (we hold the lock
                // the reaper needs), so its pgid cannot have been reused.
                unsafe { libc::kill(-pid, libc::SIGKILL) };
                *timed_out.lock().unwrap() = true;
            }
        })
    };

    // Exit observed (process is a zombie now): stop the clock.
    loop {
        // SAFETY: zeroed siginfo_t is a valid out-parameter.
        let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
        // SAFETY: plain syscall on our own child.
        let rc = unsafe {
            libc::waitid(
                libc::P_PID,
                pid as libc::id_t,
                &mut info,
                libc::WEXITED | libc::WNOWAIT,
            )
        };
        if rc == 0 {
            break;
        }
        let err = std::io::Error::last_os_error();
        if err.kind() != std::io::ErrorKind::Interrupted {
            panic!("bench: waitid on {pid} failed: {err}");
        }
    }
    let wall = start.elapsed();

    let (status, rusage) = {
        let mut reaped = reaped.lock().unwrap();
        let mut status: libc::c_int = 0;
        // SAFETY: zeroed rusage is a valid out-parameter.
        let mut rusage: libc::rusage = unsafe { std::mem::zeroed() };
        // SAFETY: reaps our own exited child.
        let rc = unsafe { libc::wait4(pid, &mut status, 0, &mut rusage) };
        assert_eq!(
            rc,
            pid,
            "bench: wait4 on {pid} failed: {}",
            std::io::Error::last_os_error()
        );
        *reaped = true;
        (status, rusage)
    };
    let _ = done_tx.send(());
    watchdog.join().expect("bench: watchdog thread panicked");
    // `child` was reaped by wait4 above; dropping a std Child never waits.
    drop(child);

    let exit_code = if libc::WIFEXITED(status) {
        libc::WEXITSTATUS(status)
    } else {
        128 + libc::WTERMSIG(status)
    };
    let timed_out = *timed_out.lock().unwrap();
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    Sample {
        wall,
        cpu: tv(rusage.ru_utime) + tv(rusage.ru_stime),
        max_rss_kib: rusage.ru_maxrss,
        exit_code,
        stdout: read_all(stdout),
        stderr: read_all(stderr),
        timed_out,
    }
}

pub struct Stats {
    pub min_ms: f64,
    pub median_ms: f64,
    pub p90_ms: f64,
    pub max_rss_mib: f64,
    /// Median CPU per run.
    pub cpu_ms: f64,
}

impl Stats {
    pub fn of(samples: &[Sample]) -> Stats {
        assert!(!samples.is_empty(), "bench: no samples");
        let mut ms: Vec<f64> = samples
            .iter()
            .map(|s| s.wall.as_secs_f64() * 1000.0)
            .collect();
        ms.sort_by(|a, b| a.total_cmp(b));
        let n = ms.len();
        let median = if n % 2 == 1 {
            ms[n / 2]
        } else {
            (ms[n / 2 - 1] + ms[n / 2]) / 2.0
        };
        // Nearest-rank percentile.
        let p90 = ms[((n * 9).div_ceil(10)).saturating_sub(1)];
        let max_rss_kib = samples.iter().map(|s| s.max_rss_kib).max().unwrap_or(0);
        let mut cpu: Vec<f64> = samples
            .iter()
            .map(|s| s.cpu.as_secs_f64() * 1000.0)
            .collect();
        cpu.sort_by(|a, b| a.total_cmp(b));
        Stats {
            cpu_ms: cpu[cpu.len() / 2],
            min_ms: ms[0],
            median_ms: median,
            p90_ms: p90,
            max_rss_mib: max_rss_kib as f64 / 1024.0,
        }
    }

    pub fn row(&self, label: &str, with_rss: bool) -> String {
        let cell = |ms: f64| format!("{ms:.1} ms");
        let rss = if with_rss {
            format!("{:.1} MiB", self.max_rss_mib)
        } else {
            "-".to_string()
        };
        format!(
            "{label:<28} {:<8} {:<8} {:<8} {rss}",
            cell(self.min_ms),
            cell(self.median_ms),
            cell(self.p90_ms)
        )
    }
}

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

/// `run`, in a private mount namespace where each of `overlays` (existing directories) is
/// covered by an overlay whose upper layer is a throw-away tmpfs: the child reads the host as
/// it is, and whatever it creates, writes, chowns or removes there stays in the tmpfs and is
/// gone when it exits. Needs CAP_SYS_ADMIN; a child that cannot be isolated is not run.
pub async fn run_isolated(
    argv: &[&str],
    timeout: Duration,
    max_output: usize,
    overlays: &[PathBuf],
) -> Result<CommandOutput, ExecError> {
    let program = argv.first().copied().unwrap_or_default().to_string();
    let plan = IsolationPlan::new(overlays).map_err(|reason| ExecError::Spawn {
        program: program.clone(),
        source: std::io::Error::new(std::io::ErrorKind::InvalidInput, reason),
    })?;
    let mut cmd = Command::new(&program);
    // SAFETY: the closure runs in the forked child before exec; it only makes syscalls on
    // strings prepared before the fork (no allocation, no locks).
    unsafe {
        cmd.pre_exec(move || plan.apply());
    }
    finish(cmd, argv, timeout, max_output).await
}

/// The mounts `run_isolated` makes, as C strings built before the fork.
struct IsolationPlan {
    scratch: CString,
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
        Ok(IsolationPlan {
            scratch: c(SCRATCH)?,
            overlays,
        })
    }

    /// In the child: a private mount namespace, a tmpfs, an overlay per directory.
    fn apply(&self) -> std::io::Result<()> {
        let check = |rc: libc::c_int| {
            if rc == 0 {
                Ok(())
            } else {
                Err(std::io::Error::last_os_error())
            }
        };
        let none = std::ptr::null::<libc::c_char>();
        let root = c"/";
        let tmpfs = c"tmpfs";
        let overlay = c"overlay";
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
                self.scratch.as_ptr(),
                tmpfs.as_ptr(),
                libc::MS_NOSUID | libc::MS_NODEV,
                tmpfs_options.as_ptr().cast(),
            ))?;
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

async fn finish(
    mut cmd: Command,
    argv: &[&str],
    timeout: Duration,
    max_output: usize,
) -> Result<CommandOutput, ExecError> {
    let program = argv.first().copied().unwrap_or_default().to_string();
    cmd.args(argv.iter().skip(1))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .env("LC_ALL", "C")
        .kill_on_drop(true);
    let mut child = cmd.spawn().map_err(|source| {
        if source.kind() == std::io::ErrorKind::NotFound {
            ExecError::NotFound {
                program: program.clone(),
            }
        } else {
            ExecError::Spawn {
                program: program.clone(),
                source,
            }
        }
    })?;
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
        Err(_) => Err(ExecError::Timeout { program, timeout }),
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

//! Process supervision. The lab records the pid of every process it starts
//! and only ever signals those pids (or the process group each one leads —
//! see `Spawned::spawn`). Nothing is ever killed by name.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::Duration;

use super::wait::poll_until;

/// How long a daemon gets to exit after its stop signal before SIGKILL.
pub const STOP_GRACE: Duration = Duration::from_secs(5);

/// A long-running process started by the lab (nginx, php-fpm, python).
pub struct Spawned {
    label: String,
    child: Child,
    stop_signal: libc::c_int,
    exit: Option<ExitStatus>,
    stdout: PathBuf,
    stderr: PathBuf,
    /// False once the lab decided to leave the process running on purpose
    /// (`WHY502_LAB_KEEP`); then Drop leaves it alone.
    armed: bool,
}

impl Spawned {
    /// Starts `cmd` with stdout/stderr going to `<log_dir>/<label>.stdout|.stderr`.
    ///
    /// The child becomes the leader of a new process group. nginx and
    /// php-fpm fork workers into that group, so if a master ignores its stop
    /// signal the whole tree can be SIGKILLed — and the group contains only
    /// processes descended from one the lab started.
    pub fn spawn(
        label: &str,
        mut cmd: Command,
        log_dir: &Path,
        stop_signal: libc::c_int,
    ) -> Spawned {
        let stdout = log_dir.join(format!("{label}.stdout"));
        let stderr = log_dir.join(format!("{label}.stderr"));
        cmd.stdin(Stdio::null())
            .stdout(create_log(&stdout))
            .stderr(create_log(&stderr))
            .process_group(0);
        let child = cmd
            .spawn()
            .unwrap_or_else(|err| panic!("lab: cannot start {label} ({cmd:?}): {err}"));
        Spawned {
            label: label.to_string(),
            child,
            stop_signal,
            exit: None,
            stdout,
            stderr,
            armed: true,
        }
    }

    pub fn label(&self) -> &str {
        &self.label
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    pub fn stdout_path(&self) -> &Path {
        &self.stdout
    }

    pub fn stderr_path(&self) -> &Path {
        &self.stderr
    }

    /// Exit status if the process has exited (reaps it), None while running.
    pub fn poll_exit(&mut self) -> Option<ExitStatus> {
        if self.exit.is_none() {
            match self.child.try_wait() {
                Ok(status) => self.exit = status,
                Err(err) => panic!(
                    "lab: waitpid on {} (pid {}) failed: {err}",
                    self.label,
                    self.pid()
                ),
            }
        }
        self.exit
    }

    /// Stops the process with its usual signal; see `stop_with`.
    pub fn stop(&mut self) -> Result<ExitStatus, String> {
        self.stop_with(self.stop_signal, STOP_GRACE)
    }

    /// Sends `signal`, waits up to `grace` for exit, then SIGKILLs the
    /// process group. Ok when the process exited on its own, Err (process
    /// dead anyway) when it had to be killed.
    pub fn stop_with(
        &mut self,
        signal: libc::c_int,
        grace: Duration,
    ) -> Result<ExitStatus, String> {
        if let Some(status) = self.poll_exit() {
            return Ok(status);
        }
        // SAFETY: plain syscall on a pid we spawned and have not reaped, so
        // the pid cannot have been reused.
        unsafe { libc::kill(self.pid(), signal) };
        if let Some(status) = poll_until(grace, || self.poll_exit()) {
            return Ok(status);
        }
        // The leader is still alive, so its pgid cannot have been reused:
        // the group kill reaches only this process and its descendants.
        // SAFETY: as above.
        unsafe { libc::kill(-self.pid(), libc::SIGKILL) };
        let status = self
            .child
            .wait()
            .unwrap_or_else(|err| panic!("lab: waitpid on {} failed: {err}", self.label));
        self.exit = Some(status);
        Err(format!(
            "{} (pid {}) ignored signal {signal} for {grace:?}; SIGKILLed its process group",
            self.label,
            self.pid()
        ))
    }

    /// Leaves the process running when the Spawned is dropped.
    pub fn disarm(&mut self) {
        self.armed = false;
    }
}

impl Drop for Spawned {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        // Never panic here: Drop also runs while a failed test unwinds.
        if let Err(message) = self.stop() {
            eprintln!("lab cleanup: {message}");
        }
    }
}

fn create_log(path: &Path) -> File {
    File::create(path).unwrap_or_else(|err| panic!("lab: cannot create {}: {err}", path.display()))
}

/// Output of a short-lived command run under a wall-clock cap.
#[derive(Clone, Debug)]
pub struct Captured {
    /// The exit code, or 128 + signal number when killed by a signal (as a
    /// shell reports it), so a crash is visible as e.g. 139.
    pub exit_code: i32,
    pub stdout: String,
    pub stderr: String,
    pub timed_out: bool,
}

/// Runs `cmd` to completion but never longer than `cap`; on timeout its
/// process group is SIGKILLed and `timed_out` is set.
///
/// Output goes to anonymous temp files rather than pipes: a grandchild that
/// inherits a pipe and keeps it open could otherwise block us past the cap.
pub fn run_capped(mut cmd: Command, cap: Duration) -> Captured {
    let stdout = anonymous_file();
    let stderr = anonymous_file();
    cmd.stdin(Stdio::null())
        .stdout(clone_file(&stdout))
        .stderr(clone_file(&stderr))
        .process_group(0);
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|err| panic!("lab: cannot run {cmd:?}: {err}"));
    let finished = poll_until(cap, || {
        child
            .try_wait()
            .unwrap_or_else(|err| panic!("lab: waitpid failed: {err}"))
    });
    let (status, timed_out) = match finished {
        Some(status) => (status, false),
        None => {
            // SAFETY: the child is alive and unreaped, so its pgid is ours.
            unsafe { libc::kill(-(child.id() as i32), libc::SIGKILL) };
            (
                child
                    .wait()
                    .unwrap_or_else(|err| panic!("lab: waitpid failed: {err}")),
                true,
            )
        }
    };
    Captured {
        exit_code: exit_code(status),
        stdout: read_all(stdout),
        stderr: read_all(stderr),
        timed_out,
    }
}

fn exit_code(status: ExitStatus) -> i32 {
    status
        .code()
        .unwrap_or_else(|| 128 + status.signal().unwrap_or(0))
}

fn anonymous_file() -> File {
    tempfile::tempfile()
        .unwrap_or_else(|err| panic!("lab: cannot create a temp file for command output: {err}"))
}

fn clone_file(file: &File) -> File {
    file.try_clone()
        .unwrap_or_else(|err| panic!("lab: cannot dup a temp file handle: {err}"))
}

pub fn read_all(mut file: File) -> String {
    let mut bytes = Vec::new();
    file.seek(SeekFrom::Start(0))
        .and_then(|_| file.read_to_end(&mut bytes))
        .unwrap_or_else(|err| panic!("lab: cannot read captured output: {err}"));
    String::from_utf8_lossy(&bytes).into_owned()
}

/// Last `max` bytes of a text, for panic messages (cut on a char boundary).
pub fn tail(text: &str, max: usize) -> &str {
    if text.len() <= max {
        return text;
    }
    let mut start = text.len() - max;
    while !text.is_char_boundary(start) {
        start += 1;
    }
    &text[start..]
}

/// First `max` bytes of a text, for panic messages (cut on a char boundary).
pub fn head(text: &str, max: usize) -> &str {
    if text.len() <= max {
        return text;
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

/// Reads a log file for a panic message; a missing file is reported, not fatal.
pub fn read_log(path: &Path) -> String {
    match std::fs::read(path) {
        Ok(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
        Err(err) => format!("<cannot read {}: {err}>", path.display()),
    }
}

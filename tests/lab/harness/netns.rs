//! A throwaway network namespace with only `lo` up. Each scenario gets its
//! own, so every stack can bind 127.0.0.1:8080 / :8000 concurrently and a
//! scenario can never reach another one's backend.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use super::process::run_capped;

/// `ip` is fast; the cap only guards against a wedged kernel or ip binary.
const IP_CAP: Duration = Duration::from_secs(10);

pub struct NetNs {
    name: String,
    ip: PathBuf,
    /// False when the namespace is kept on purpose (`WHY502_LAB_KEEP`).
    armed: bool,
}

impl NetNs {
    /// Creates the namespace and brings `lo` up. Err carries `ip`'s output so
    /// a host without namespace support gets a readable SKIP/CI failure.
    pub fn create(name: &str, ip: &Path) -> Result<NetNs, String> {
        run_ip(ip, &["netns", "add", name])?;
        // From here on Drop deletes the namespace, also if `lo` fails.
        let netns = NetNs {
            name: name.to_string(),
            ip: ip.to_path_buf(),
            armed: true,
        };
        run_ip(ip, &["-n", name, "link", "set", "lo", "up"])?;
        Ok(netns)
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// `ip netns exec NS program args...` — explicit argv, never a shell.
    /// `ip netns exec` execs in place (no fork), so the child's pid is the
    /// program's pid and the lab can signal it directly.
    pub fn command<S: AsRef<std::ffi::OsStr>>(&self, program: &Path, args: &[S]) -> Command {
        let mut cmd = Command::new(&self.ip);
        cmd.args(["netns", "exec", &self.name])
            .arg(program)
            .args(args);
        cmd
    }

    pub fn disarm(&mut self) {
        self.armed = false;
    }

    /// Deletes the namespace (once). Runs during unwinding too, so it
    /// reports failures instead of panicking.
    pub fn delete(&mut self) {
        if !self.armed {
            return;
        }
        self.armed = false;
        if let Err(message) = run_ip(&self.ip, &["netns", "del", &self.name]) {
            eprintln!("lab cleanup: {message}");
        }
    }
}

impl Drop for NetNs {
    fn drop(&mut self) {
        self.delete();
    }
}

fn run_ip(ip: &Path, args: &[&str]) -> Result<(), String> {
    let mut cmd = Command::new(ip);
    cmd.args(args);
    let out = run_capped(cmd, IP_CAP);
    if out.exit_code == 0 && !out.timed_out {
        Ok(())
    } else {
        Err(format!(
            "`ip {}` failed (exit {}{}): {}",
            args.join(" "),
            out.exit_code,
            if out.timed_out { ", timed out" } else { "" },
            out.stderr.trim()
        ))
    }
}

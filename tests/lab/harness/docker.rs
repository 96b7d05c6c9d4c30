//! A real dockerd (Debian's `docker.io`) inside the lab's network namespace, with its own
//! data root, exec root, socket and bridge (docker0 exists only in the namespace), so
//! published ports get a real `docker-proxy` on the namespace's loopback. No registry is
//! reachable: the one image is imported from a root filesystem holding the host's static
//! busybox (`busybox-static`).
//!
//! dockerd starts under `nsenter --net=` rather than `ip netns exec`: the latter remounts
//! /sys, which hides the cgroup hierarchies dockerd needs.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use super::lab::Lab;
use super::process::{run_capped, Captured, Spawned};
use super::requirements::{find_program, skip_or_fail};
use super::wait::poll_until;

/// dockerd starts containerd first; on a loaded CI box both take a few seconds.
const DOCKERD_START: Duration = Duration::from_secs(30);
/// One docker CLI call (`run`, `stop -t 1`, `import`).
const DOCKER_CAP: Duration = Duration::from_secs(60);
/// The image every lab container runs.
pub const LAB_IMAGE: &str = "why502-lab/busybox:1";

/// The lab's dockerd: its socket and CLI. Dropping it removes every container (before the
/// lab stops dockerd, so no container process or mount outlives the scenario).
pub struct Docker {
    socket: PathBuf,
    cli: PathBuf,
    curl: PathBuf,
    scenario: String,
}

impl Lab {
    /// Starts dockerd in the namespace and imports `LAB_IMAGE`. None: skipped (reported;
    /// a failure in CI).
    pub fn start_dockerd(&mut self) -> Option<Docker> {
        let found = (|| -> Result<(PathBuf, PathBuf, PathBuf, PathBuf), String> {
            Ok((
                find_program("dockerd")?,
                find_program("docker")?,
                find_program("nsenter")?,
                PathBuf::from("/bin/busybox")
                    .canonicalize()
                    .map_err(|e| format!("/bin/busybox: {e} (install busybox-static)"))?,
            ))
        })();
        let (dockerd, cli, nsenter, busybox) = match found {
            Ok(t) => t,
            Err(reason) => {
                skip_or_fail(self.scenario(), &format!("docker: {reason}"));
                return None;
            }
        };
        let dir = self.path("docker");
        super::lab::make_dir(&dir, 0o711);
        let socket = dir.join("docker.sock");
        let mut cmd = Command::new(&nsenter);
        cmd.arg(format!("--net=/run/netns/{}", self.netns_name()))
            .arg(&dockerd)
            .args(["--data-root", &dir.join("data").display().to_string()])
            .args(["--exec-root", &dir.join("exec").display().to_string()])
            .args(["-H", &format!("unix://{}", socket.display())])
            .args(["--pidfile", &dir.join("docker.pid").display().to_string()])
            .args(["--iptables=false", "--ip6tables=false"]);
        let logs = self.path("logs");
        self.procs
            .push(Spawned::spawn("dockerd", cmd, &logs, libc::SIGTERM));
        let docker = Docker {
            socket,
            cli,
            curl: self.tools.curl.clone(),
            scenario: self.scenario().to_string(),
        };
        self.await_ready_within(
            DOCKERD_START,
            "dockerd",
            "no answer to GET /_ping",
            |_| docker.ping(),
            |_| String::new(),
        );
        docker.import_image(&self.path("rootfs"), &busybox);
        Some(docker)
    }
}

impl Docker {
    pub fn socket(&self) -> &Path {
        &self.socket
    }

    fn ping(&self) -> bool {
        let out = self.api("/_ping");
        out.exit_code == 0 && out.stdout.trim() == "OK"
    }

    /// `GET path` of the Engine API (curl over the unix socket).
    pub fn api(&self, path: &str) -> Captured {
        let mut cmd = Command::new(&self.curl);
        cmd.args(["-s", "--max-time", "5", "--unix-socket"])
            .arg(&self.socket)
            .arg(format!("http://docker{path}"));
        run_capped(cmd, Duration::from_secs(10))
    }

    /// `GET /containers/NAME/json`, parsed.
    pub fn inspect(&self, name: &str) -> serde_json::Value {
        let out = self.api(&format!("/containers/{name}/json"));
        serde_json::from_str(&out.stdout).unwrap_or_else(|e| {
            panic!("lab {}: inspect {name}: {e}\n{}", self.scenario, out.stdout)
        })
    }

    /// `docker ARGS...`; panics unless it succeeds.
    #[track_caller]
    pub fn cli(&self, args: &[&str]) -> String {
        let mut cmd = Command::new(&self.cli);
        cmd.arg("-H")
            .arg(format!("unix://{}", self.socket.display()))
            .args(args);
        let out = run_capped(cmd, DOCKER_CAP);
        assert!(
            out.exit_code == 0 && !out.timed_out,
            "lab {}: docker {args:?} failed ({}): {}{}",
            self.scenario,
            out.exit_code,
            out.stdout,
            out.stderr
        );
        out.stdout.trim().to_string()
    }

    /// A root filesystem of the host's static busybox (its applets as links) and a page to
    /// serve, imported as `LAB_IMAGE`.
    fn import_image(&self, root: &Path, busybox: &Path) {
        for d in ["bin", "www", "tmp"] {
            super::lab::make_dir(&root.join(d), 0o755);
        }
        std::fs::copy(busybox, root.join("bin/busybox")).expect("lab: copy busybox");
        for applet in ["sh", "httpd", "tail", "sleep", "cat", "echo"] {
            std::os::unix::fs::symlink("busybox", root.join("bin").join(applet))
                .expect("lab: busybox applet link");
        }
        std::fs::write(root.join("www/index.html"), "container ok\n").expect("lab: index");
        let tarball = root.with_extension("tar");
        let mut tar = Command::new("tar");
        tar.arg("-C").arg(root).arg("-cf").arg(&tarball).arg(".");
        let out = run_capped(tar, DOCKER_CAP);
        assert_eq!(out.exit_code, 0, "lab: tar of the rootfs: {}", out.stderr);
        self.cli(&["import", &tarball.display().to_string(), LAB_IMAGE]);
        // A busybox that is not static cannot run in the image.
        let mut cmd = Command::new(&self.cli);
        cmd.arg("-H")
            .arg(format!("unix://{}", self.socket.display()))
            .args(["run", "--rm", "--network", "none", LAB_IMAGE, "echo", "ok"]);
        let out = run_capped(cmd, DOCKER_CAP);
        assert!(
            out.stdout.trim() == "ok",
            "lab {}: the busybox image does not run (is /bin/busybox static? install busybox-static): {}{}",
            self.scenario,
            out.stdout,
            out.stderr
        );
    }

    /// Waits until `probe` holds for the container's inspect answer.
    #[track_caller]
    pub fn wait_for(&self, name: &str, what: &str, probe: impl Fn(&serde_json::Value) -> bool) {
        let done = poll_until(Duration::from_secs(30), || {
            let v = self.inspect(name);
            probe(&v).then_some(())
        });
        assert!(
            done.is_some(),
            "lab {}: container {name} never {what}: {}",
            self.scenario,
            self.inspect(name)["State"]
        );
    }
}

impl Drop for Docker {
    fn drop(&mut self) {
        let mut cmd = Command::new(&self.cli);
        cmd.arg("-H")
            .arg(format!("unix://{}", self.socket.display()))
            .args(["ps", "-aq"]);
        let ids = run_capped(cmd, DOCKER_CAP).stdout;
        let ids: Vec<&str> = ids.split_whitespace().collect();
        if !ids.is_empty() {
            let mut cmd = Command::new(&self.cli);
            cmd.arg("-H")
                .arg(format!("unix://{}", self.socket.display()))
                .args(["rm", "-f"])
                .args(&ids);
            let out = run_capped(cmd, DOCKER_CAP);
            if out.exit_code != 0 {
                eprintln!("lab cleanup: docker rm -f: {}", out.stderr);
            }
        }
    }
}

//! What the resource scenarios break: a memory cgroup small enough for the kernel to OOM-kill a
//! backend in it, and tmpfs mounts that run out of space or inodes under a backend's working
//! directory. Plus the backend itself: a python HTTP server that allocates on `/hog` and
//! writes a file per request into its working directory (closing the connection without an
//! answer when the write fails, as a crashing worker does).

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use super::lab::{make_dir, write_file, Lab};

const APP_PY: &str = r#"
import http.server, os, socketserver, sys, time
bind, port, workdir = sys.argv[1], int(sys.argv[2]), sys.argv[3]
os.chdir(workdir)

class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        if self.path == "/hog":
            hoard = []
            while True:
                hoard.append(b"x" * (16 << 20))
        try:
            with open("req-%d" % time.time_ns(), "wb") as f:
                f.write(b"x" * 65536)
        except OSError:
            # A worker that cannot write dies mid-request: no answer at all.
            self.close_connection = True
            return
        body = b"ok\n"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass

class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True

httpd = Server((bind, port), Handler)
print("ready app %s:%d" % (bind, port), flush=True)
httpd.serve_forever()
"#;

impl Lab {
    /// The writing/allocating app on `bind:port`, working in `workdir`; returns its pid.
    pub fn start_app_backend(&mut self, bind: &str, port: u16, workdir: &Path) -> u32 {
        let script = self.path("bin/app.py");
        make_dir(&self.path("bin"), 0o755);
        write_file(&script, APP_PY);
        let label = format!("python-app-{bind}-{port}");
        let args = vec![
            script.display().to_string(),
            bind.to_string(),
            port.to_string(),
            workdir.display().to_string(),
        ];
        let python = self.tools.python3.clone();
        self.spawn(&label, &python, &args, libc::SIGTERM);
        self.wait_for_ready_line(&label);
        let pid = self.process_mut(&label).map(|p| p.pid());
        match pid {
            Some(pid) => u32::try_from(pid).unwrap_or(0),
            None => panic!("lab {}: {label} has no pid", self.scenario()),
        }
    }

    /// `curl` inside the namespace, straight to a backend (not through nginx): the status, 0
    /// when no HTTP answer came.
    pub fn curl_backend(&self, url: &str) -> u16 {
        self.curl_status(url)
    }
}

/// A tmpfs mounted for one scenario, unmounted (lazily: a backend may still hold its cwd
/// there) when dropped.
pub struct TmpfsMount {
    pub path: PathBuf,
}

impl TmpfsMount {
    /// `mount -t tmpfs -o OPTIONS` at `path` (created).
    pub fn new(path: &Path, options: &str) -> TmpfsMount {
        fs::create_dir_all(path)
            .unwrap_or_else(|e| panic!("lab: cannot create {}: {e}", path.display()));
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", options, "why502-lab"])
            .arg(path)
            .output()
            .unwrap_or_else(|e| panic!("lab: cannot run mount: {e}"));
        assert!(
            out.status.success(),
            "lab: mount tmpfs {options} at {}: {}",
            path.display(),
            String::from_utf8_lossy(&out.stderr)
        );
        TmpfsMount {
            path: path.to_path_buf(),
        }
    }

    /// Write 4 KiB files until the filesystem says ENOSPC; returns how many were written.
    pub fn fill_with_files(&self, prefix: &str, bytes: usize) -> usize {
        let chunk = vec![b'f'; bytes];
        for i in 0..1_000_000 {
            if let Err(e) = fs::write(self.path.join(format!("{prefix}-{i}")), &chunk) {
                assert_eq!(
                    e.raw_os_error(),
                    Some(libc::ENOSPC),
                    "lab: filling {} ended with {e}, not ENOSPC",
                    self.path.display()
                );
                return i;
            }
        }
        panic!("lab: {} never filled up", self.path.display());
    }
}

impl Drop for TmpfsMount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.path).status();
    }
}

/// A memory cgroup with a small limit, on cgroup v2 (with the memory controller) or the v1
/// memory hierarchy; removed when dropped (after its processes are gone).
pub struct MemoryCgroup {
    dir: PathBuf,
    enabled_memory_in: Option<PathBuf>,
}

impl MemoryCgroup {
    pub fn new(name: &str, limit_bytes: u64) -> MemoryCgroup {
        let mountinfo = fs::read_to_string("/proc/self/mountinfo")
            .unwrap_or_else(|e| panic!("lab: cannot read mountinfo: {e}"));
        let mut v2 = None;
        let mut v1 = None;
        for line in mountinfo.lines() {
            let Some((left, right)) = line.split_once(" - ") else {
                continue;
            };
            let Some(mount_point) = left.split(' ').nth(4).map(PathBuf::from) else {
                continue;
            };
            let mut fields = right.split(' ');
            let fstype = fields.next().unwrap_or("");
            let options = fields.nth(1).unwrap_or("");
            let controllers =
                fs::read_to_string(mount_point.join("cgroup.controllers")).unwrap_or_default();
            if fstype == "cgroup2" && controllers.split_whitespace().any(|c| c == "memory") {
                v2 = Some(mount_point);
            } else if fstype == "cgroup" && options.split(',').any(|o| o == "memory") {
                v1 = Some(mount_point);
            }
        }
        let limit = limit_bytes.to_string();
        if let Some(root) = v2 {
            let control = root.join("cgroup.subtree_control");
            let enabled = fs::read_to_string(&control).unwrap_or_default();
            let mut cg = MemoryCgroup {
                dir: root.join(name),
                enabled_memory_in: None,
            };
            if !enabled.split_whitespace().any(|c| c == "memory") {
                fs::write(&control, "+memory")
                    .unwrap_or_else(|e| panic!("lab: enable memory in {}: {e}", control.display()));
                cg.enabled_memory_in = Some(control);
            }
            fs::create_dir(&cg.dir)
                .unwrap_or_else(|e| panic!("lab: mkdir {}: {e}", cg.dir.display()));
            fs::write(cg.dir.join("memory.max"), &limit)
                .unwrap_or_else(|e| panic!("lab: memory.max: {e}"));
            let _ = fs::write(cg.dir.join("memory.swap.max"), "0");
            return cg;
        }
        let root = v1.unwrap_or_else(|| panic!("lab: no memory cgroup controller is mounted"));
        let cg = MemoryCgroup {
            dir: root.join(name),
            enabled_memory_in: None,
        };
        fs::create_dir(&cg.dir).unwrap_or_else(|e| panic!("lab: mkdir {}: {e}", cg.dir.display()));
        fs::write(cg.dir.join("memory.limit_in_bytes"), &limit)
            .unwrap_or_else(|e| panic!("lab: memory.limit_in_bytes: {e}"));
        // With swap accounting, memory+swap must not exceed the limit either.
        let _ = fs::write(cg.dir.join("memory.memsw.limit_in_bytes"), &limit);
        cg
    }

    /// Move a running process into the cgroup.
    pub fn add(&self, pid: u32) {
        fs::write(self.dir.join("cgroup.procs"), pid.to_string())
            .unwrap_or_else(|e| panic!("lab: cannot move {pid} into {}: {e}", self.dir.display()));
    }
}

impl Drop for MemoryCgroup {
    fn drop(&mut self) {
        // A killed task leaves the cgroup a moment after it is reaped.
        for _ in 0..50 {
            match fs::remove_dir(&self.dir) {
                Ok(()) => break,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => break,
                Err(_) => std::thread::sleep(Duration::from_millis(100)),
            }
        }
        if let Some(control) = &self.enabled_memory_in {
            let _ = fs::write(control, "-memory");
        }
    }
}

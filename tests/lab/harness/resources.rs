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
import argparse, http.server, os, socketserver, time
args = argparse.ArgumentParser()
args.add_argument("--host", required=True)
args.add_argument("--port", type=int, required=True)
args.add_argument("--workdir", required=True)
args = args.parse_args()
bind, port = args.host, args.port
os.chdir(args.workdir)

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
    /// The app's whole command line, as the lab runs it and as a systemd unit's `ExecStart=`
    /// would: `/usr/bin/python3 LAB/bin/app.py --host BIND --port PORT --workdir DIR`.
    pub fn app_backend_argv(&self, bind: &str, port: u16, workdir: &Path) -> Vec<String> {
        vec![
            self.tools.python3.display().to_string(),
            self.path("bin/app.py").display().to_string(),
            "--host".to_string(),
            bind.to_string(),
            "--port".to_string(),
            port.to_string(),
            "--workdir".to_string(),
            workdir.display().to_string(),
        ]
    }

    /// The writing/allocating app on `bind:port`, working in `workdir`; returns its pid.
    pub fn start_app_backend(&mut self, bind: &str, port: u16, workdir: &Path) -> u32 {
        let script = self.path("bin/app.py");
        make_dir(&self.path("bin"), 0o755);
        write_file(&script, APP_PY);
        let label = format!("python-app-{bind}-{port}");
        let argv = self.app_backend_argv(bind, port, workdir);
        let python = PathBuf::from(&argv[0]);
        self.spawn(&label, &python, &argv[1..], libc::SIGTERM);
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
    v2: bool,
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
                v2: true,
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
            v2: false,
        };
        fs::create_dir(&cg.dir).unwrap_or_else(|e| panic!("lab: mkdir {}: {e}", cg.dir.display()));
        fs::write(cg.dir.join("memory.limit_in_bytes"), &limit)
            .unwrap_or_else(|e| panic!("lab: memory.limit_in_bytes: {e}"));
        // With swap accounting, memory+swap must not exceed the limit either.
        let _ = fs::write(cg.dir.join("memory.memsw.limit_in_bytes"), &limit);
        cg
    }

    /// A child cgroup `name` inside this one, with its own (smaller) limit. On v1 the memory
    /// hierarchy nests it (`memory.use_hierarchy` is 1 on every kernel since 5.x); on v2 the
    /// memory controller is enabled in this cgroup's subtree first — and v2 then allows no
    /// process in this cgroup itself (the "no internal processes" rule).
    pub fn child(&self, name: &str, limit_bytes: u64) -> MemoryCgroup {
        let limit = limit_bytes.to_string();
        let mut cg = MemoryCgroup {
            dir: self.dir.join(name),
            enabled_memory_in: None,
            v2: self.v2,
        };
        if self.v2 {
            let control = self.dir.join("cgroup.subtree_control");
            fs::write(&control, "+memory")
                .unwrap_or_else(|e| panic!("lab: enable memory in {}: {e}", control.display()));
            cg.enabled_memory_in = Some(control);
        } else if let Ok(flag) = fs::read_to_string(self.dir.join("memory.use_hierarchy")) {
            assert_eq!(
                flag.trim(),
                "1",
                "lab: {} does not nest its children (memory.use_hierarchy)",
                self.dir.display()
            );
        }
        fs::create_dir(&cg.dir).unwrap_or_else(|e| panic!("lab: mkdir {}: {e}", cg.dir.display()));
        let (limit_file, swap_file) = if self.v2 {
            ("memory.max", "memory.swap.max")
        } else {
            ("memory.limit_in_bytes", "memory.memsw.limit_in_bytes")
        };
        fs::write(cg.dir.join(limit_file), &limit)
            .unwrap_or_else(|e| panic!("lab: {} of {}: {e}", limit_file, cg.dir.display()));
        let _ = fs::write(cg.dir.join(swap_file), if self.v2 { "0" } else { &limit });
        cg
    }

    /// The cgroup's directory (`/sys/fs/cgroup/memory/why502-...`).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The cgroup as the kernel names it in an OOM report and in /proc/PID/cgroup: the path
    /// below the hierarchy's mount point (`/why502-.../child`).
    pub fn kernel_path(&self) -> String {
        let mut parts: Vec<String> = Vec::new();
        let mut dir = self.dir.as_path();
        // The mount point has no `cgroup.procs` parent of its own kind: walk up while the
        // parent is still a cgroup (has cgroup.procs) and is not the hierarchy root.
        while let (Some(name), Some(parent)) = (dir.file_name(), dir.parent()) {
            parts.push(name.to_string_lossy().into_owned());
            if is_hierarchy_root(parent) {
                break;
            }
            dir = parent;
        }
        parts.reverse();
        format!("/{}", parts.join("/"))
    }

    pub fn is_v2(&self) -> bool {
        self.v2
    }

    /// Move a running process into the cgroup.
    pub fn add(&self, pid: u32) {
        fs::write(self.dir.join("cgroup.procs"), pid.to_string())
            .unwrap_or_else(|e| panic!("lab: cannot move {pid} into {}: {e}", self.dir.display()));
    }
}

/// A cgroup hierarchy's mount point: its parent holds no cgroup of the same hierarchy.
fn is_hierarchy_root(dir: &Path) -> bool {
    dir.parent()
        .is_none_or(|parent| !parent.join("cgroup.procs").exists())
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

//! The read-only proof: run a command under `strace -f -ff` and check, in it and in every
//! process it started, each syscall that could change the host — an open for writing, a
//! create/remove/rename/chown/chmod, a mount, a bind, a signal.
//!
//! A process that made a private mount namespace (`unshare(CLONE_NEWNS)`, the agent's
//! `nginx -t` child) may write inside the directories it mounted over (its throw-away
//! overlays and tmpfs), and nowhere else; every other process may write nowhere (but
//! /dev/null). No process may hold a bound non-ephemeral port or a unix socket file on the
//! host, nor signal a process outside the traced tree.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};

/// The syscalls strace is asked for (`%file` is every syscall that takes a path).
pub const TRACED: &str = "trace=%file,bind,kill,tkill,tgkill,rt_sigqueueinfo,pidfd_send_signal,\
unshare,mount,clone,clone3,fork,vfork,fchown,fchmod,ftruncate,fsetxattr";

/// strace's options before the traced argv; its per-process files go to `dir/t.PID`.
pub fn strace_args(dir: &Path) -> Vec<String> {
    vec![
        "-f".into(),
        "-ff".into(),
        "-qq".into(),
        "-y".into(),
        "-s".into(),
        "4096".into(),
        "-o".into(),
        dir.join("t").display().to_string(),
        "-e".into(),
        TRACED.into(),
    ]
}

/// What the audit saw.
#[derive(Debug, Default)]
pub struct SyscallAudit {
    pub processes: usize,
    /// Checked syscalls by kind (`open for writing`, `bind`, `signal`, ...).
    pub checked: BTreeMap<&'static str, usize>,
    /// Binds the seccomp refusal turned away (EADDRINUSE).
    pub refused_binds: usize,
    /// Writes that stayed inside a private namespace's throw-away mounts.
    pub contained_writes: usize,
    pub violations: Vec<String>,
}

impl SyscallAudit {
    /// One line for the test's output: what was checked, in how many processes.
    pub fn summary(&self) -> String {
        let kinds: Vec<String> = self
            .checked
            .iter()
            .map(|(k, n)| format!("{n} {k}"))
            .collect();
        format!(
            "{} process(es); checked {}; {} bind(s) refused; {} write(s) kept inside throw-away mounts; {} violation(s)",
            self.processes,
            kinds.join(", "),
            self.refused_binds,
            self.contained_writes,
            self.violations.len()
        )
    }
}

/// One traced process's state as its file is read in order.
#[derive(Clone, Default)]
struct ProcState {
    /// Made (or inherited) a private mount namespace.
    private_mounts: bool,
    /// Directories mounted over in that namespace: writes below them reach no host file.
    mounted: Vec<PathBuf>,
}

/// Reads every `t.PID` file strace wrote into `dir`.
pub fn audit(dir: &Path) -> SyscallAudit {
    let mut files: HashMap<u32, String> = HashMap::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if let Some(pid) = name.strip_prefix("t.").and_then(|p| p.parse().ok()) {
            files.insert(
                pid,
                std::fs::read_to_string(entry.path()).unwrap_or_default(),
            );
        }
    }
    audit_traces(&files)
}

/// The audit over captured traces (pid → strace lines), parents before children.
pub fn audit_traces(files: &HashMap<u32, String>) -> SyscallAudit {
    let traced: HashSet<u32> = files.keys().copied().collect();
    let mut children: HashSet<u32> = HashSet::new();
    for text in files.values() {
        for line in text.lines() {
            if let Some(child) = fork_result(line) {
                children.insert(child);
            }
        }
    }
    let mut out = SyscallAudit {
        processes: files.len(),
        ..SyscallAudit::default()
    };
    let mut queue: Vec<(u32, ProcState)> = files
        .keys()
        .filter(|pid| !children.contains(pid))
        .map(|pid| (*pid, ProcState::default()))
        .collect();
    let mut seen = HashSet::new();
    while let Some((pid, mut state)) = queue.pop() {
        if !seen.insert(pid) {
            continue;
        }
        let Some(text) = files.get(&pid) else {
            continue;
        };
        for line in text.lines() {
            if let Some(child) = fork_result(line) {
                queue.push((child, state.clone()));
                continue;
            }
            check_line(pid, line, &mut state, &traced, &mut out);
        }
    }
    out
}

/// `clone(...) = 123`, `vfork() = 123`: the new process or thread.
fn fork_result(line: &str) -> Option<u32> {
    let name = syscall_name(line)?;
    if !matches!(name, "clone" | "clone3" | "fork" | "vfork") {
        return None;
    }
    let ret = return_value(line)?;
    u32::try_from(ret).ok().filter(|pid| *pid > 0)
}

fn syscall_name(line: &str) -> Option<&str> {
    let open = line.find('(')?;
    let name = &line[..open];
    name.chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '_')
        .then_some(name)
}

/// The integer after the last ` = ` (`= 3</path>` → 3, `= -1 ENOENT (...)` → -1).
fn return_value(line: &str) -> Option<i64> {
    let (_, ret) = line
        .rsplit_once(") = ")
        .or_else(|| line.rsplit_once(" = "))?;
    let ret = ret.trim_start();
    let end = ret
        .char_indices()
        .find(|(i, c)| !(c.is_ascii_digit() || (*i == 0 && *c == '-')))
        .map(|(i, _)| i)
        .unwrap_or(ret.len());
    ret[..end].parse().ok()
}

/// The arguments: between the first `(` and the `) = ` of the result.
fn arguments(line: &str) -> &str {
    let start = line.find('(').map(|i| i + 1).unwrap_or(0);
    let end = line.rfind(") = ").unwrap_or(line.len());
    line.get(start..end).unwrap_or("")
}

/// Every quoted path in the arguments, made absolute against the dirfd strace printed before
/// it (`AT_FDCWD</cwd>`, `3</dir>`) when relative.
fn paths(args: &str) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut base: Option<PathBuf> = None;
    let mut rest = args;
    while let Some(i) = rest.find(['"', '<']) {
        let (head, tail) = rest.split_at(i);
        let _ = head;
        if tail.starts_with('<') {
            // `3</dir>` or `AT_FDCWD</cwd>`: the directory a following relative path is in.
            let Some(close) = tail.find('>') else { break };
            base = Some(PathBuf::from(&tail[1..close]));
            rest = &tail[close + 1..];
            continue;
        }
        let body = &tail[1..];
        let mut end = None;
        let mut escaped = false;
        for (j, c) in body.char_indices() {
            match c {
                '\\' if !escaped => escaped = true,
                '"' if !escaped => {
                    end = Some(j);
                    break;
                }
                _ => escaped = false,
            }
        }
        let Some(end) = end else { break };
        let raw = &body[..end];
        let p = PathBuf::from(raw);
        out.push(match &base {
            _ if p.is_absolute() => p,
            Some(b) => b.join(p),
            None => p,
        });
        rest = &body[end + 1..];
    }
    out
}

/// The fd's path strace printed as the first argument (`3</var/lib/x>`).
fn fd_path(args: &str) -> Option<PathBuf> {
    let open = args.find('<')?;
    let close = args[open..].find('>')? + open;
    Some(PathBuf::from(&args[open + 1..close]))
}

/// Files every process may open for writing: they hold no host state.
fn harmless(path: &Path) -> bool {
    ["/dev/null", "/dev/tty"]
        .iter()
        .any(|p| path == Path::new(p))
}

fn check_line(
    pid: u32,
    line: &str,
    state: &mut ProcState,
    traced: &HashSet<u32>,
    out: &mut SyscallAudit,
) {
    let Some(name) = syscall_name(line) else {
        return;
    };
    let Some(ret) = return_value(line) else {
        return;
    };
    let args = arguments(line);
    let succeeded = ret >= 0;
    let mut violation = |why: String| out.violations.push(format!("pid {pid}: {why}: {line}"));
    match name {
        "unshare" if succeeded && args.contains("CLONE_NEWNS") => state.private_mounts = true,
        "mount" => {
            *out.checked.entry("mount").or_default() += 1;
            if !succeeded {
                return;
            }
            if !state.private_mounts {
                violation("mount in the host's namespace".into());
                return;
            }
            // mount(source, target, ...): the second path.
            if let Some(target) = paths(args).get(1) {
                state.mounted.push(target.clone());
            }
        }
        "bind" => {
            *out.checked.entry("bind").or_default() += 1;
            if ret == -1 && line.contains("EADDRINUSE") {
                out.refused_binds += 1;
                return;
            }
            if !succeeded {
                return;
            }
            if let Some(port) = bound_port(args) {
                if port != 0 && port < 32768 {
                    violation(format!("bound port {port}"));
                }
            } else if let Some(path) = args
                .split_once("sun_path=\"")
                .and_then(|(_, p)| p.split('"').next())
            {
                let path = PathBuf::from(path);
                if !contained(state, &path) {
                    violation(format!("created the unix socket {}", path.display()));
                } else {
                    out.contained_writes += 1;
                }
            }
        }
        "kill" | "tkill" | "tgkill" | "rt_sigqueueinfo" | "pidfd_send_signal" => {
            *out.checked.entry("signal").or_default() += 1;
            let numbers: Vec<&str> = args.split(", ").collect();
            let target: i64 = numbers.first().and_then(|t| t.parse().ok()).unwrap_or(-1);
            let signal = numbers.last().copied().unwrap_or("");
            if signal == "0" || name == "pidfd_send_signal" && !succeeded {
                return;
            }
            let ok = u32::try_from(target).is_ok_and(|t| t > 0 && traced.contains(&t));
            if !ok && succeeded {
                violation(format!("signal to {target}, a process it did not start"));
            }
        }
        "open" | "openat" | "openat2" | "creat" => {
            *out.checked.entry("open").or_default() += 1;
            let writes = name == "creat"
                || ["O_WRONLY", "O_RDWR", "O_CREAT", "O_TRUNC"]
                    .iter()
                    .any(|f| args.contains(f));
            if !writes {
                return;
            }
            *out.checked.entry("open for writing").or_default() += 1;
            let Some(path) = paths(args).into_iter().next() else {
                return;
            };
            if !succeeded || harmless(&path) {
                return;
            }
            if contained(state, &path) {
                out.contained_writes += 1;
            } else {
                violation(format!("opened {} for writing", path.display()));
            }
        }
        "mkdir" | "mkdirat" | "unlink" | "unlinkat" | "rmdir" | "rename" | "renameat"
        | "renameat2" | "link" | "linkat" | "symlink" | "symlinkat" | "chown" | "lchown"
        | "fchownat" | "chmod" | "fchmodat" | "truncate" | "mknod" | "mknodat" | "utime"
        | "utimes" | "utimensat" | "futimesat" | "setxattr" | "lsetxattr" | "removexattr"
        | "lremovexattr" => {
            *out.checked.entry("change a path").or_default() += 1;
            if !succeeded {
                return;
            }
            for path in paths(args) {
                if contained(state, &path) {
                    out.contained_writes += 1;
                } else {
                    violation(format!("{name} on {}", path.display()));
                }
            }
        }
        "fchown" | "fchmod" | "ftruncate" | "fsetxattr" => {
            *out.checked.entry("change a path").or_default() += 1;
            if !succeeded {
                return;
            }
            match fd_path(args) {
                Some(path) if contained(state, &path) || harmless(&path) => {
                    out.contained_writes += 1
                }
                Some(path) => violation(format!("{name} on {}", path.display())),
                None => violation(format!("{name} on an fd of unknown path")),
            }
        }
        _ => {}
    }
}

/// Inside one of the directories this process's private namespace mounted over.
fn contained(state: &ProcState, path: &Path) -> bool {
    state.private_mounts && state.mounted.iter().any(|m| path.starts_with(m))
}

/// `sin_port=htons(8080)` / `sin6_port=htons(80)`.
fn bound_port(args: &str) -> Option<u16> {
    let (_, rest) = args.split_once("_port=htons(")?;
    rest.split(')').next()?.parse().ok()
}

impl super::lab::Lab {
    /// `run_agent` under `strace -f -ff`, from `cwd`: the run, and the audit of every process
    /// it started.
    #[track_caller]
    pub fn run_agent_traced(
        &self,
        args: &[&str],
        cwd: &Path,
    ) -> (super::agent::AgentRun, SyscallAudit) {
        let argv: Vec<String> = std::iter::once("diagnose")
            .chain(args.iter().copied())
            .map(String::from)
            .collect();
        let (mut cmd, dir) = self.traced_command(&super::agent::agent_bin(), &argv);
        cmd.current_dir(cwd);
        let run = super::agent::run_agent_command(cmd, argv, super::agent::AGENT_CAP);
        (run, audit(&dir))
    }

    /// `program args` under the same audit, in the lab's namespace (the control).
    pub fn audit_command(&self, program: &Path, args: &[String]) -> SyscallAudit {
        let (cmd, dir) = self.traced_command(program, args);
        let out = super::process::run_capped(cmd, super::agent::AGENT_CAP);
        assert!(!out.timed_out, "{} under strace hung", program.display());
        audit(&dir)
    }

    fn traced_command(&self, program: &Path, args: &[String]) -> (std::process::Command, PathBuf) {
        let strace = super::requirements::find_program("strace")
            .unwrap_or_else(|e| panic!("lab: strace proves the agent read-only: {e}"));
        let n = TRACE_RUNS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir = self.path(&format!("strace-{n}"));
        std::fs::create_dir_all(&dir).expect("the trace directory");
        let mut argv = strace_args(&dir);
        argv.push(program.display().to_string());
        argv.extend(args.iter().cloned());
        (self.netns.command(&strace, &argv), dir)
    }
}

static TRACE_RUNS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

#[cfg(test)]
mod tests {
    use super::*;

    fn traces(files: &[(u32, &str)]) -> SyscallAudit {
        audit_traces(
            &files
                .iter()
                .map(|(pid, text)| (*pid, text.to_string()))
                .collect(),
        )
    }

    #[test]
    fn a_plain_nginx_t_is_caught_and_an_isolated_one_is_not() {
        let plain = traces(&[(
            10,
            r#"openat(AT_FDCWD</>, "/var/log/nginx/error.log", O_WRONLY|O_CREAT|O_APPEND, 0644) = 4</var/log/nginx/error.log>
chown("/var/lib/nginx/proxy", 33, -1) = 0
bind(6<socket:[1]>, {sa_family=AF_INET, sin_port=htons(80), sin_addr=inet_addr("0.0.0.0")}, 16) = 0
openat(AT_FDCWD</>, "/etc/nginx/nginx.conf", O_RDONLY) = 5</etc/nginx/nginx.conf>"#,
        )]);
        assert_eq!(plain.violations.len(), 3, "{:?}", plain.violations);

        let isolated = traces(&[
            (1, "clone(child_stack=NULL, flags=CLONE_VM|CLONE_VFORK|SIGCHLD) = 10\nkill(10, SIGKILL) = 0\nopenat(AT_FDCWD</>, \"/dev/null\", O_RDWR|O_CLOEXEC) = 3</dev/null>"),
            (
                10,
                r#"unshare(CLONE_NEWNS) = 0
mount("tmpfs", "/dev/shm", "tmpfs", MS_NOSUID|MS_NODEV, "size=64m,mode=0700") = 0
mount("overlay", "/var/lib/nginx", "overlay", 0, "lowerdir=/var/lib/nginx,upperdir=/dev/shm/u0,workdir=/dev/shm/w0") = 0
chown("/var/lib/nginx/proxy", 65534, -1) = 0
mkdir("/dev/shm/u0", 0700) = 0
bind(6<socket:[1]>, {sa_family=AF_INET, sin_port=htons(80), sin_addr=inet_addr("0.0.0.0")}, 16) = -1 EADDRINUSE (Address already in use)
openat(AT_FDCWD</etc>, "nginx.pid", O_RDWR|O_CREAT, 0644) = -1 EROFS (Read-only file system)"#,
            ),
        ]);
        assert!(isolated.violations.is_empty(), "{:?}", isolated.violations);
        assert_eq!((isolated.refused_binds, isolated.contained_writes), (1, 2));
    }

    #[test]
    fn writes_outside_the_overlays_and_foreign_signals_are_caught() {
        let audit = traces(&[(
            7,
            r#"unshare(CLONE_NEWNS) = 0
mount("overlay", "/var/lib/nginx", "overlay", 0, "lowerdir=x") = 0
openat(3</var/log>, "nginx/new.log", O_WRONLY|O_CREAT, 0644) = 4</var/log/nginx/new.log>
kill(4242, SIGTERM) = 0
kill(4243, 0) = 0
bind(3<socket:[9]>, {sa_family=AF_UNIX, sun_path="/run/app.sock"}, 16) = 0
bind(3<socket:[9]>, {sa_family=AF_INET6, sin6_port=htons(0), sin6_flowinfo=htonl(0)}, 28) = 0"#,
        )]);
        let v = audit.violations.join("\n");
        assert!(v.contains("/var/log/nginx/new.log"), "{v}");
        assert!(v.contains("signal to 4242"), "{v}");
        assert!(v.contains("/run/app.sock"), "{v}");
        assert_eq!(audit.violations.len(), 3, "{v}");
    }
}

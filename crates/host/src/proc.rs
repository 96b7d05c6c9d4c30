//! A snapshot of /proc: every process's name, parent, command line and start time, read once
//! per run. Costlier facts (credentials, namespace, open sockets) are read on demand for the
//! few processes that matter.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::fsread::{read_proc_file, read_to_string_bounded};

const SMALL_FILE: u64 = 64 * 1024;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcessInfo {
    pub pid: u32,
    pub ppid: u32,
    /// `comm` (at most 15 bytes, as the kernel keeps it).
    pub comm: String,
    /// NUL-separated argv; a process that rewrote its title (nginx, php-fpm) has it in argv[0].
    pub cmdline: Vec<String>,
    /// Start time in clock ticks after boot (field 22 of /proc/PID/stat).
    pub start_ticks: u64,
}

impl ProcessInfo {
    /// The command line as one string, as `ps` shows it.
    pub fn cmdline_joined(&self) -> String {
        self.cmdline.join(" ")
    }
}

/// Effective credentials of a process, from /proc/PID/status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credentials {
    pub uid: u32,
    pub gid: u32,
    pub groups: Vec<u32>,
}

#[derive(Debug, Clone)]
pub struct ProcessTable {
    root: PathBuf,
    procs: Vec<ProcessInfo>,
    /// When the system booted, since the epoch (see `boot_time`).
    boot_time: Option<Duration>,
    clock_ticks: u64,
    /// Each process's fd targets, read on first use and shared by every caller after.
    fds: std::sync::Arc<std::sync::Mutex<HashMap<u32, FdTargets>>>,
    /// `/proc/PID/cgroup` and `/proc/PID/status` credentials, likewise read once per pid.
    cgroups: std::sync::Arc<std::sync::Mutex<HashMap<u32, Option<String>>>>,
    creds: std::sync::Arc<std::sync::Mutex<HashMap<u32, Option<Credentials>>>>,
}

/// The value for `key`, computed by `read` the first time only.
fn memo<K: std::hash::Hash + Eq, V: Clone>(
    cache: &std::sync::Mutex<HashMap<K, V>>,
    key: K,
    read: impl FnOnce() -> V,
) -> V {
    let mut map = match cache.lock() {
        Ok(m) => m,
        Err(poisoned) => poisoned.into_inner(),
    };
    map.entry(key).or_insert_with(read).clone()
}

/// What a process's descriptors point at (`readlink /proc/PID/fd/N`: a path, `socket:[N]`,
/// `pipe:[N]`...), at most `MAX_FDS_READ`; the error when the fd directory cannot be read.
pub type FdTargets = Result<std::sync::Arc<Vec<PathBuf>>, std::io::ErrorKind>;

/// Descriptors read per process: a busy nginx worker holds thousands of connections; the
/// sockets and files that matter are opened first and sit at the low numbers.
const MAX_FDS_READ: usize = 65_536;

impl ProcessTable {
    /// Read every process under `root` (normally `/proc`). Processes that vanish while being
    /// read are skipped; an unreadable root gives an empty table.
    pub fn read(root: &Path) -> ProcessTable {
        let pids: Vec<u32> = match std::fs::read_dir(root) {
            Ok(entries) => entries
                .flatten()
                .filter_map(|e| e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()))
                .collect(),
            Err(_) => Vec::new(),
        };
        let mut procs = read_processes(root, &pids);
        procs.sort_by_key(|p| p.pid);
        let boot_time = read_to_string_bounded(&root.join("stat"), 1 << 20)
            .ok()
            .and_then(|s| parse_btime(&s))
            .map(|btime| boot_time(btime, live_boot_time()));
        // SAFETY: sysconf has no preconditions.
        let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
        ProcessTable {
            root: root.to_path_buf(),
            procs,
            boot_time,
            clock_ticks: if ticks > 0 { ticks as u64 } else { 100 },
            fds: Default::default(),
            cgroups: Default::default(),
            creds: Default::default(),
        }
    }

    /// The targets of process `pid`'s descriptors, read once per table (see `FdTargets`).
    pub fn fd_targets(&self, pid: u32) -> FdTargets {
        let mut cache = match self.fds.lock() {
            Ok(c) => c,
            Err(poisoned) => poisoned.into_inner(),
        };
        cache
            .entry(pid)
            .or_insert_with(|| {
                let dir = self.root.join(pid.to_string()).join("fd");
                let fds = std::fs::read_dir(dir).map_err(|e| e.kind())?;
                let mut targets = Vec::new();
                for fd in fds.flatten().take(MAX_FDS_READ) {
                    match std::fs::read_link(fd.path()) {
                        Ok(t) => targets.push(t),
                        // The kernel checks access per process (ptrace read mode), so one
                        // denied link means every other is denied too: stop at the first
                        // instead of asking hundreds of times (a container's init holds 250).
                        Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => {
                            return Err(e.kind());
                        }
                        // Closed between the listing and the read.
                        Err(_) => {}
                    }
                }
                Ok(std::sync::Arc::new(targets))
            })
            .clone()
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn iter(&self) -> impl Iterator<Item = &ProcessInfo> {
        self.procs.iter()
    }

    pub fn get(&self, pid: u32) -> Option<&ProcessInfo> {
        self.procs
            .binary_search_by_key(&pid, |p| p.pid)
            .ok()
            .map(|i| &self.procs[i])
    }

    pub fn children_of(&self, pid: u32) -> impl Iterator<Item = &ProcessInfo> {
        self.procs.iter().filter(move |p| p.ppid == pid)
    }

    /// Wall-clock start time of a process.
    pub fn start_time(&self, p: &ProcessInfo) -> Option<SystemTime> {
        let boot = self.boot_time?;
        let secs_after_boot = p.start_ticks as f64 / self.clock_ticks as f64;
        Some(UNIX_EPOCH + boot + Duration::from_secs_f64(secs_after_boot))
    }

    pub fn credentials(&self, pid: u32) -> Option<Credentials> {
        memo(&self.creds, pid, || {
            let path = self.root.join(pid.to_string()).join("status");
            let status = read_proc_file(&path, SMALL_FILE as usize).ok()?;
            parse_credentials(&String::from_utf8_lossy(&status))
        })
    }

    /// The inode of the process's network namespace (`net:[4026531840]`).
    pub fn netns(&self, pid: u32) -> Option<u64> {
        netns_inode(&self.root.join(pid.to_string()).join("ns/net"))
    }

    pub fn exe(&self, pid: u32) -> Option<PathBuf> {
        std::fs::read_link(self.root.join(pid.to_string()).join("exe")).ok()
    }

    pub fn cwd(&self, pid: u32) -> Option<PathBuf> {
        std::fs::read_link(self.root.join(pid.to_string()).join("cwd")).ok()
    }

    /// The directories of the regular files a process holds open (its logs, its data), at most
    /// `max_dirs`, scanning at most `max_fds` descriptors. Pseudo-filesystems are left out.
    pub fn open_file_dirs(&self, pid: u32, max_fds: usize, max_dirs: usize) -> Vec<PathBuf> {
        let mut dirs: Vec<PathBuf> = Vec::new();
        let Ok(fds) = self.fd_targets(pid) else {
            return dirs;
        };
        for target in fds.iter().take(max_fds) {
            let text = target.to_string_lossy();
            // `socket:[..]`, `pipe:[..]`, `anon_inode:..` are not paths; deleted files have
            // no directory to judge any more.
            if !text.starts_with('/')
                || text.ends_with(" (deleted)")
                || ["/dev/", "/proc/", "/sys/"]
                    .iter()
                    .any(|p| text.starts_with(p))
            {
                continue;
            }
            if let Some(dir) = target.parent() {
                if !dirs.iter().any(|d| d == dir) {
                    dirs.push(dir.to_path_buf());
                    if dirs.len() >= max_dirs {
                        break;
                    }
                }
            }
        }
        dirs
    }

    /// The process's cgroup membership (`/proc/PID/cgroup`), as text.
    pub fn cgroup(&self, pid: u32) -> Option<String> {
        memo(&self.cgroups, pid, || {
            let path = self.root.join(pid.to_string()).join("cgroup");
            let cgroup = read_proc_file(&path, SMALL_FILE as usize).ok()?;
            Some(String::from_utf8_lossy(&cgroup).into_owned())
        })
    }

    /// Reads the fds of the `i`-th process, recording every socket inode it holds.
    fn scan_sockets_of(&self, i: usize, seen: &mut HashMap<u64, u32>) {
        let Some(p) = self.procs.get(i) else {
            return;
        };
        let Ok(fds) = self.fd_targets(p.pid) else {
            return;
        };
        for target in fds.iter() {
            if let Some(inode) = socket_inode(&target.to_string_lossy()) {
                seen.entry(inode).or_insert(p.pid);
            }
        }
    }
}

/// Which process holds a socket inode, from a scan of /proc/PID/fd that stops as soon as the
/// inode is found and resumes there for the next one: each process's fds are read at most
/// once per run, however many upstreams ask (a hosting server's 500 pools cost one pass over
/// the fds, not 500), and the usual small host reads only the processes before its backend.
#[derive(Debug, Default)]
pub struct SocketOwnerScan {
    next: usize,
    seen: HashMap<u64, u32>,
}

impl SocketOwnerScan {
    pub fn owner(&mut self, table: &ProcessTable, inode: u64) -> Option<u32> {
        loop {
            if let Some(pid) = self.seen.get(&inode) {
                return Some(*pid);
            }
            if self.next >= table.procs.len() {
                return None;
            }
            table.scan_sockets_of(self.next, &mut self.seen);
            self.next += 1;
        }
    }
}

/// The agent's own network namespace.
pub fn own_netns(root: &Path) -> Option<u64> {
    netns_inode(&root.join("self/ns/net"))
}

fn netns_inode(link: &Path) -> Option<u64> {
    let target = std::fs::read_link(link).ok()?;
    let s = target.to_string_lossy();
    s.strip_prefix("net:[")?.strip_suffix(']')?.parse().ok()
}

fn socket_inode(link: &str) -> Option<u64> {
    link.strip_prefix("socket:[")?
        .strip_suffix(']')?
        .parse()
        .ok()
}

/// Processes per reading thread below which one thread reads them all: a thread costs tens
/// of µs to start, a process two /proc reads of a few µs each.
const PROCESSES_PER_THREAD: usize = 64;

/// `read_process` for every pid, split over up to 4 threads (the CPUs allow): the table is
/// read before anything else can start, and on a hosting server busy with php-fpm children
/// (300 processes) it cost 7–9 ms on one thread. The kernel's per-file work dominates, and
/// it runs in parallel.
fn read_processes(root: &Path, pids: &[u32]) -> Vec<ProcessInfo> {
    // std's available_parallelism reads the cgroup's CPU quota (/proc/self/cgroup,
    // mountinfo, cpu.max): ~0.1 ms on the run's critical path, asked only when more than one
    // thread could be wanted.
    let wanted = pids.len() / PROCESSES_PER_THREAD;
    let threads = if wanted <= 1 {
        1
    } else {
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
        wanted.min(cpus.min(4))
    };
    let read_all = |chunk: &[u32]| -> Vec<ProcessInfo> {
        chunk
            .iter()
            .filter_map(|&pid| read_process(root, pid))
            .collect()
    };
    if threads == 1 {
        return read_all(pids);
    }
    let per = pids.len().div_ceil(threads);
    std::thread::scope(|scope| {
        let mut chunks = pids.chunks(per);
        // This thread reads the first chunk itself; a thread that cannot start leaves its
        // chunk to this one too.
        let first = chunks.next().unwrap_or_default();
        let mut handles = Vec::new();
        let mut left = Vec::new();
        for chunk in chunks {
            match std::thread::Builder::new().spawn_scoped(scope, move || read_all(chunk)) {
                Ok(h) => handles.push(h),
                Err(_) => left.push(chunk),
            }
        }
        let mut procs = read_all(first);
        for chunk in left {
            procs.extend(read_all(chunk));
        }
        for h in handles {
            // A reader that panicked read nothing this run can trust for its chunk; the rest
            // stands (a process missing from the table is as if it had exited).
            if let Ok(more) = h.join() {
                procs.extend(more);
            }
        }
        procs
    })
}

fn read_process(root: &Path, pid: u32) -> Option<ProcessInfo> {
    let dir = root.join(pid.to_string());
    let stat = read_proc_file(&dir.join("stat"), SMALL_FILE as usize).ok()?;
    let stat = String::from_utf8_lossy(&stat);
    // A kernel thread is never nginx, a backend or a socket's holder, and a host runs a
    // hundred or more (several per CPU): left out, they cost no cmdline read here and no fd
    // scan later.
    if is_kernel_thread(&stat) {
        return None;
    }
    let (comm, ppid, start_ticks) = parse_stat(&stat)?;
    let cmdline = read_proc_file(&dir.join("cmdline"), SMALL_FILE as usize)
        .map(|b| split_cmdline(&b))
        .unwrap_or_default();
    Some(ProcessInfo {
        pid,
        ppid,
        comm,
        cmdline,
        start_ticks,
    })
}

/// `pid (comm) state ppid ...`: comm may hold spaces and parentheses, so split at the last `)`.
pub fn parse_stat(stat: &str) -> Option<(String, u32, u64)> {
    let open = stat.find('(')?;
    let close = stat.rfind(')')?;
    let comm = stat.get(open + 1..close)?.to_string();
    let rest: Vec<&str> = stat.get(close + 1..)?.split_whitespace().collect();
    // rest[0] is field 3 (state); ppid is field 4, starttime field 22.
    let ppid = rest.get(1)?.parse().ok()?;
    let start = rest.get(19)?.parse().ok()?;
    Some((comm, ppid, start))
}

/// PF_KTHREAD in the `flags` field (9) of /proc/PID/stat: the kernel's own mark, which holds
/// in a container too (where kthreadd, the usual parent, is not visible).
fn is_kernel_thread(stat: &str) -> bool {
    const PF_KTHREAD: u64 = 0x0020_0000;
    stat.rfind(')')
        .and_then(|close| stat.get(close + 1..))
        .and_then(|rest| rest.split_whitespace().nth(6))
        .and_then(|flags| flags.parse::<u64>().ok())
        .is_some_and(|flags| flags & PF_KTHREAD != 0)
}

fn split_cmdline(bytes: &[u8]) -> Vec<String> {
    bytes
        .split(|b| *b == 0)
        .filter(|a| !a.is_empty())
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect()
}

/// /proc/stat's `btime` is the boot time cut to whole seconds, so start times made from it
/// read up to a second early — before the config file a deploy wrote just ahead of the start.
/// The clocks give it to the microsecond (the kernel computes btime as CLOCK_REALTIME minus
/// CLOCK_BOOTTIME, and stamps process starts in CLOCK_BOOTTIME); that is used when it falls
/// in btime's second, i.e. when the table is the live /proc and not a captured one.
fn boot_time(btime: u64, live: Option<Duration>) -> Duration {
    let whole = Duration::from_secs(btime);
    match live {
        Some(l) if l >= whole && l < whole + Duration::from_secs(1) => l,
        _ => whole,
    }
}

/// CLOCK_REALTIME minus CLOCK_BOOTTIME, read now.
fn live_boot_time() -> Option<Duration> {
    use nix::time::{clock_gettime, ClockId};
    let since_boot = Duration::from(clock_gettime(ClockId::CLOCK_BOOTTIME).ok()?);
    let now = SystemTime::now().duration_since(UNIX_EPOCH).ok()?;
    now.checked_sub(since_boot)
}

fn parse_btime(stat: &str) -> Option<u64> {
    stat.lines()
        .find_map(|l| l.strip_prefix("btime "))
        .and_then(|v| v.trim().parse().ok())
}

pub fn parse_credentials(status: &str) -> Option<Credentials> {
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .map(|v| v.split_whitespace().collect::<Vec<_>>())
    };
    // Uid: real effective saved fs — access checks use the effective (fs) ids.
    let uid = field("Uid:")?.get(1)?.parse().ok()?;
    let gid = field("Gid:")?.get(1)?.parse().ok()?;
    let groups = field("Groups:")
        .unwrap_or_default()
        .iter()
        .filter_map(|g| g.parse().ok())
        .collect();
    Some(Credentials { uid, gid, groups })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn boot_time_is_the_clocks_within_btimes_second_else_btime() {
        let live = Duration::from_millis(1_764_657_600_730);
        assert_eq!(boot_time(1_764_657_600, Some(live)), live);
        // A captured /proc of another host (or the clocks unreadable): its btime.
        assert_eq!(
            boot_time(1_700_000_000, Some(live)),
            Duration::from_secs(1_700_000_000)
        );
        assert_eq!(
            boot_time(1_764_657_600, None),
            Duration::from_secs(1_764_657_600)
        );
    }

    #[test]
    fn a_child_started_now_reads_as_started_after_we_asked() {
        // Made from btime alone, its start would read up to a second early.
        let before = SystemTime::now();
        let mut child = std::process::Command::new("sleep")
            .arg("5")
            .spawn()
            .expect("sleep");
        let table = ProcessTable::read(Path::new("/proc"));
        let started = table
            .get(child.id())
            .and_then(|p| table.start_time(p))
            .expect("the child's start time");
        let _ = child.kill();
        let _ = child.wait();
        // One clock tick (10 ms at USER_HZ 100) of rounding down.
        let tick = Duration::from_millis(1000 / table.clock_ticks.max(1) + 1);
        assert!(
            started + tick >= before,
            "started {started:?}, asked at {before:?}"
        );
        assert!(started <= SystemTime::now(), "{started:?} in the future");
    }

    #[test]
    fn stat_with_spaces_and_parens_in_comm() {
        let stat = "812 (php-fpm: pool (www)) S 1 812 812 0 -1 4194624 9 0 0 0 0 0 0 0 20 0 1 0 4242 1000 100";
        let (comm, ppid, start) = parse_stat(stat).expect("parse");
        assert_eq!(comm, "php-fpm: pool (www)");
        assert_eq!(ppid, 1);
        assert_eq!(start, 4242);
    }

    #[test]
    fn kernel_threads_are_told_by_their_flag() {
        // kworker as the kernel shows it (flags 69238880 = PF_KTHREAD | PF_WQ_WORKER | ...).
        let kworker = "24 (kworker/1:0H-events_highpri) I 2 0 0 0 -1 69238880 0 0 0 0 0 0 0 0 0 -20 1 0 18 0 0";
        assert!(is_kernel_thread(kworker));
        // php-fpm's title holds a ')' and digits; its flags (4194624) lack the bit.
        let fpm = "812 (php-fpm: pool (www)) S 1 812 812 0 -1 4194624 9 0 0 0 0 0 0 0 20 0 1 0 4242 1000 100";
        assert!(!is_kernel_thread(fpm));
        assert!(!is_kernel_thread("garbage"));
    }

    #[test]
    fn the_live_table_holds_no_kernel_thread() {
        let t = ProcessTable::read(Path::new("/proc"));
        // kthreadd is pid 2 wherever the kernel's threads are visible (not in a pid namespace).
        let kthreadd_visible =
            std::fs::read_to_string("/proc/2/stat").is_ok_and(|s| is_kernel_thread(&s));
        if kthreadd_visible {
            assert!(t.get(2).is_none(), "kthreadd is in the table");
            assert!(
                t.children_of(2).next().is_none(),
                "a kernel thread is in the table"
            );
        }
        assert!(t.get(std::process::id()).is_some());
    }

    #[test]
    fn credentials_use_effective_ids_and_groups() {
        let status = "Name:\tnginx\nUid:\t0\t33\t33\t33\nGid:\t0\t33\t33\t33\nGroups:\t33 4 \n";
        let c = parse_credentials(status).expect("creds");
        assert_eq!(
            c,
            Credentials {
                uid: 33,
                gid: 33,
                groups: vec![33, 4]
            }
        );
    }

    #[test]
    fn open_file_dirs_name_the_directories_of_open_files() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data.log");
        let _held = std::fs::File::create(&data).unwrap();
        let t = ProcessTable::read(Path::new("/proc"));
        let dirs = t.open_file_dirs(std::process::id(), 4096, 64);
        let canonical = std::fs::canonicalize(dir.path()).unwrap();
        assert!(dirs.contains(&canonical), "{dirs:?}");
        assert!(dirs
            .iter()
            .all(|d| !d.starts_with("/proc") && !d.starts_with("/dev")));
    }

    #[test]
    fn reads_own_process() {
        let t = ProcessTable::read(Path::new("/proc"));
        let me = t.get(std::process::id()).expect("self in table");
        assert!(!me.cmdline.is_empty());
        assert!(t.start_time(me).is_some());
        assert!(t.netns(me.pid).is_some());
        assert_eq!(t.netns(me.pid), own_netns(Path::new("/proc")));
    }

    #[test]
    fn a_table_read_by_several_threads_holds_every_process_once() {
        // 301 processes: enough for the read to split over threads on any machine with two
        // CPUs or more, and a count no chunking divides evenly.
        let root = tempfile::tempdir().unwrap();
        let count: u32 = 301;
        for pid in 1..=count {
            let dir = root.path().join(pid.to_string());
            std::fs::create_dir(&dir).unwrap();
            let stat = format!("{pid} (worker {pid}) S 1 {pid} {pid} 0 -1 4194560 0 0 0 0 0 0 0 0 20 0 1 0 {pid}00 1000 100");
            std::fs::write(dir.join("stat"), stat).unwrap();
            std::fs::write(dir.join("cmdline"), format!("worker\0{pid}\0")).unwrap();
        }
        // Not processes: skipped whatever thread meets them.
        std::fs::create_dir(root.path().join("self")).unwrap();
        std::fs::create_dir(root.path().join("999")).unwrap();
        let t = ProcessTable::read(root.path());
        let pids: Vec<u32> = t.iter().map(|p| p.pid).collect();
        assert_eq!(pids, (1..=count).collect::<Vec<_>>());
        let p = t.get(150).expect("pid 150");
        assert_eq!(p.comm, "worker 150");
        assert_eq!(p.cmdline, vec!["worker".to_string(), "150".to_string()]);
        assert_eq!(p.start_ticks, 15000);
    }

    #[test]
    fn finds_the_owner_of_a_socket() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        use std::os::fd::AsRawFd;
        let link =
            std::fs::read_link(format!("/proc/self/fd/{}", listener.as_raw_fd())).expect("fd link");
        let inode = socket_inode(&link.to_string_lossy()).expect("socket inode");
        let t = ProcessTable::read(Path::new("/proc"));
        let mut scan = SocketOwnerScan::default();
        assert_eq!(scan.owner(&t, inode), Some(std::process::id()));
        // Asked again, the scan answers from what it saw; an inode nobody holds ends it.
        assert_eq!(scan.owner(&t, inode), Some(std::process::id()));
        assert_eq!(scan.owner(&t, u64::MAX), None);
        assert_eq!(scan.next, t.procs.len());
        assert_eq!(scan.owner(&t, inode), Some(std::process::id()));
    }
}

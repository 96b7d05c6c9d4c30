//! OOM kills from kernel messages.
//!
//! Since Linux 4.19 the OOM killer prints, for every kill, a one-line summary and the kill:
//!
//! ```text
//! oom-kill:constraint=CONSTRAINT_MEMCG,nodemask=(null),cpuset=/,mems_allowed=0,oom_memcg=/x,task_memcg=/x,task=python3,pid=22149,uid=0
//! Memory cgroup out of memory: Killed process 22149 (python3) total-vm:221384kB, anon-rss:27264kB, ...
//! ```
//!
//! (`,global_oom` instead of `,oom_memcg=...` and `Out of memory:` for a system-wide OOM). Older
//! kernels print only `[Memory cgroup o|O]ut of memory: Kill process N (comm) score S or
//! sacrifice child` followed by `Killed process N (comm) total-vm:...`. The two lines are joined
//! by pid; the `Killed process` line is the decisive evidence.

use std::collections::{HashSet, VecDeque};
use std::time::SystemTime;

use serde::Serialize;

/// One process the kernel's OOM killer killed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OomKill {
    pub time: SystemTime,
    pub pid: u32,
    /// The task's comm: at most 15 bytes, as the kernel keeps it.
    pub process: String,
    /// Killed because a memory cgroup hit its limit (not because the whole host ran out).
    pub cgroup_oom: bool,
    /// `CONSTRAINT_NONE`, `CONSTRAINT_MEMCG`, `CONSTRAINT_CPUSET`, ... (summary line only).
    pub constraint: Option<String>,
    /// The cgroup whose limit was hit, relative to the memory hierarchy's root.
    pub oom_memcg: Option<String>,
    /// The victim's own memory cgroup.
    pub task_memcg: Option<String>,
    pub uid: Option<u32>,
    pub anon_rss_kb: Option<u64>,
    /// The decisive kernel line (`... Killed process N (comm) ...`), for evidence.
    pub line: String,
    /// The `oom-kill:` summary line, when the kernel printed one.
    pub summary_line: Option<String>,
}

/// The `oom-kill:` summary line.
#[derive(Debug, Clone, PartialEq, Eq)]
struct OomSummary {
    constraint: Option<String>,
    oom_memcg: Option<String>,
    task_memcg: Option<String>,
    task: String,
    pid: u32,
    uid: Option<u32>,
    line: String,
}

/// A `Killed process N (comm) ...` line.
#[derive(Debug, Clone, PartialEq, Eq)]
struct KilledLine {
    pid: u32,
    process: String,
    memcg_prefix: bool,
    anon_rss_kb: Option<u64>,
    uid: Option<u32>,
}

/// Summaries waiting for their kill line; the two are printed microseconds apart.
const PENDING_SUMMARIES: usize = 32;
/// Kills kept per run: a host killing more than this in the window has a story already told
/// by the newest ones.
pub(crate) const MAX_KILLS: usize = 512;
/// Security-module audit lines kept from the window (the newest); a host denying thousands of
/// accesses says so with far fewer.
pub(crate) const MAX_LSM_LINES: usize = 2048;

/// Feeds kernel messages in order (oldest first) and collects the kills at or after `since`.
#[derive(Debug)]
pub(crate) struct OomCollector {
    since: SystemTime,
    pending: VecDeque<(SystemTime, OomSummary)>,
    /// Old kernels announce a memcg kill only on the `Kill process` line before `Killed process`.
    memcg_announced: VecDeque<u32>,
    kills: VecDeque<OomKill>,
    pub(crate) dropped: usize,
    /// AppArmor and SELinux audit lines in the window, for the security step: without auditd
    /// or a syslog daemon (Debian 12's default), the kernel log is the only place they reach.
    lsm_lines: VecDeque<(SystemTime, String)>,
}

impl OomCollector {
    pub(crate) fn new(since: SystemTime) -> OomCollector {
        OomCollector {
            since,
            pending: VecDeque::new(),
            memcg_announced: VecDeque::new(),
            kills: VecDeque::new(),
            dropped: 0,
            lsm_lines: VecDeque::new(),
        }
    }

    pub(crate) fn push(&mut self, time: SystemTime, message: &str) {
        if time >= self.since && is_lsm_audit(message) {
            if self.lsm_lines.len() == MAX_LSM_LINES {
                self.lsm_lines.pop_front();
            }
            self.lsm_lines.push_back((time, message.to_string()));
            return;
        }
        if let Some(summary) = parse_summary(message) {
            if self.pending.len() == PENDING_SUMMARIES {
                self.pending.pop_front();
            }
            self.pending.push_back((time, summary));
            return;
        }
        if let Some(pid) = parse_old_memcg_announcement(message) {
            if self.memcg_announced.len() == PENDING_SUMMARIES {
                self.memcg_announced.pop_front();
            }
            self.memcg_announced.push_back(pid);
            return;
        }
        let Some(killed) = parse_killed(message) else {
            return;
        };
        let summary = self
            .pending
            .iter()
            .rposition(|(_, s)| s.pid == killed.pid)
            .and_then(|i| self.pending.remove(i))
            .map(|(_, s)| s);
        let announced = match self.memcg_announced.iter().position(|p| *p == killed.pid) {
            Some(i) => {
                self.memcg_announced.remove(i);
                true
            }
            None => false,
        };
        if time < self.since {
            return;
        }
        let kill = join(time, message, killed, summary, announced);
        self.keep(kill);
    }

    fn keep(&mut self, kill: OomKill) {
        if self.kills.len() == MAX_KILLS {
            self.kills.pop_front();
            self.dropped += 1;
        }
        self.kills.push_back(kill);
    }

    /// The kills, oldest first. A summary whose kill line never came (cut off by the end of the
    /// buffer or a lost record) still reports a kill: the kernel prints it only once it has
    /// chosen and is killing the victim.
    /// The security-module audit lines of the window, oldest first.
    pub(crate) fn take_lsm_lines(&mut self) -> Vec<(SystemTime, String)> {
        self.lsm_lines.drain(..).collect()
    }

    pub(crate) fn finish(mut self) -> (Vec<OomKill>, usize) {
        let orphans: Vec<(SystemTime, OomSummary)> = self.pending.drain(..).collect();
        for (time, s) in orphans {
            if time >= self.since {
                let kill = OomKill {
                    time,
                    pid: s.pid,
                    process: s.task.clone(),
                    cgroup_oom: summary_is_memcg(&s),
                    constraint: s.constraint.clone(),
                    oom_memcg: s.oom_memcg.clone(),
                    task_memcg: s.task_memcg.clone(),
                    uid: s.uid,
                    anon_rss_kb: None,
                    line: s.line.clone(),
                    summary_line: Some(s.line),
                };
                self.keep(kill);
            }
        }
        let mut kills: Vec<OomKill> = self.kills.into_iter().collect();
        kills.sort_by_key(|k| k.time);
        (kills, self.dropped)
    }
}

/// An AppArmor (`apparmor="DENIED"`) or SELinux (`avc:  denied`) audit record, as the kernel
/// logs it when no audit daemon takes it.
fn is_lsm_audit(message: &str) -> bool {
    message.contains("apparmor=\"")
        || message.contains("avc:  denied")
        || message.contains("avc: denied")
}

fn join(
    time: SystemTime,
    line: &str,
    killed: KilledLine,
    summary: Option<OomSummary>,
    announced_memcg: bool,
) -> OomKill {
    let cgroup_oom =
        killed.memcg_prefix || announced_memcg || summary.as_ref().is_some_and(summary_is_memcg);
    OomKill {
        time,
        pid: killed.pid,
        process: killed.process,
        cgroup_oom,
        constraint: summary.as_ref().and_then(|s| s.constraint.clone()),
        oom_memcg: summary.as_ref().and_then(|s| s.oom_memcg.clone()),
        task_memcg: summary.as_ref().and_then(|s| s.task_memcg.clone()),
        uid: killed.uid.or(summary.as_ref().and_then(|s| s.uid)),
        anon_rss_kb: killed.anon_rss_kb,
        line: line.to_string(),
        summary_line: summary.map(|s| s.line),
    }
}

fn summary_is_memcg(s: &OomSummary) -> bool {
    s.oom_memcg.is_some() || s.constraint.as_deref() == Some("CONSTRAINT_MEMCG")
}

/// `oom-kill:constraint=C,nodemask=N,cpuset=P,mems_allowed=M[,oom_memcg=P|,global_oom][,task_memcg=P],task=COMM,pid=N,uid=N`
///
/// Cgroup paths and comms may contain commas, so values are cut between the known keys that
/// follow them rather than at commas.
fn parse_summary(message: &str) -> Option<OomSummary> {
    let rest = message.strip_prefix("oom-kill:")?;
    let pid_at = rest.rfind(",pid=")?;
    let pid = leading_number(&rest[pid_at + ",pid=".len()..])?;
    let head = &rest[..pid_at];
    let task_at = head.rfind(",task=")?;
    let task = head[task_at + ",task=".len()..].to_string();
    let head = &head[..task_at];
    let uid = rest[pid_at..]
        .find(",uid=")
        .and_then(|i| leading_number(&rest[pid_at + i + ",uid=".len()..]));
    let task_memcg_at = head.find(",task_memcg=");
    let task_memcg = task_memcg_at.map(|i| head[i + ",task_memcg=".len()..].to_string());
    let head = &head[..task_memcg_at.unwrap_or(head.len())];
    let oom_memcg = head
        .find(",oom_memcg=")
        .map(|i| head[i + ",oom_memcg=".len()..].to_string());
    let constraint = head
        .strip_prefix("constraint=")
        .map(|c| c.split(',').next().unwrap_or(c).to_string());
    Some(OomSummary {
        constraint,
        oom_memcg,
        task_memcg,
        task,
        pid: u32::try_from(pid).ok()?,
        uid: uid.and_then(|u| u32::try_from(u).ok()),
        line: message.to_string(),
    })
}

/// `[Memory cgroup out of memory|Out of memory[ (...)]: ]Killed process N (comm) total-vm:...kB, anon-rss:...kB, ..., UID:N ...`
fn parse_killed(message: &str) -> Option<KilledLine> {
    let at = message.find("Killed process ")?;
    let prefix = &message[..at];
    // Only the OOM killer's own wording: the bare form (old kernels) or "...out of memory...: ".
    let oom_wording =
        prefix.ends_with(": ") && prefix.to_ascii_lowercase().contains("out of memory");
    if !(prefix.is_empty() || oom_wording) {
        return None;
    }
    let rest = &message[at + "Killed process ".len()..];
    let (pid, rest) = split_number(rest)?;
    let rest = rest.strip_prefix(" (")?;
    // The comm may itself contain ") ", so prefer the end marker that follows it.
    let end = rest.find(") total-vm:").or_else(|| rest.rfind(')'))?;
    let process = rest[..end].to_string();
    let tail = &rest[end..];
    let anon_rss_kb = tail
        .find("anon-rss:")
        .and_then(|i| leading_number(&tail[i + "anon-rss:".len()..]));
    let uid = tail
        .find("UID:")
        .and_then(|i| leading_number(&tail[i + "UID:".len()..]))
        .and_then(|u| u32::try_from(u).ok());
    Some(KilledLine {
        pid: u32::try_from(pid).ok()?,
        process,
        memcg_prefix: prefix.starts_with("Memory cgroup out of memory"),
        anon_rss_kb,
        uid,
    })
}

/// Pre-4.19 kernels: `Memory cgroup out of memory: Kill process N (comm) score S or sacrifice child`.
fn parse_old_memcg_announcement(message: &str) -> Option<u32> {
    let rest = message.strip_prefix("Memory cgroup out of memory: Kill process ")?;
    let (pid, _) = split_number(rest)?;
    u32::try_from(pid).ok()
}

fn split_number(s: &str) -> Option<(u64, &str)> {
    let digits = s.bytes().take_while(u8::is_ascii_digit).count();
    let n = s[..digits].parse().ok()?;
    Some((n, &s[digits..]))
}

fn leading_number(s: &str) -> Option<u64> {
    split_number(s).map(|(n, _)| n)
}

/// What a caller knows about a backend, to pick its kills out of the window.
///
/// Pid and cgroup are precise; a process name is only a hint (an unrelated `python3` shares
/// the name of a python backend), so callers should say which one matched.
#[derive(Debug, Clone, Default)]
pub struct OomQuery {
    pub pids: HashSet<u32>,
    /// Process names as `comm` or as a longer name: the kernel keeps 15 bytes of it.
    pub process_names: Vec<String>,
    /// Memory cgroup paths (see [`memory_cgroup_path`]); a kill whose `task_memcg` is this path
    /// or below it matches. The root cgroup `/` is ignored: it names nothing in particular.
    pub cgroup_prefixes: Vec<String>,
}

/// Why a kill matched an [`OomQuery`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "by", rename_all = "snake_case")]
pub enum OomMatch {
    Pid { pid: u32 },
    Cgroup { prefix: String },
    ProcessName { name: String },
}

impl OomQuery {
    /// The strongest reason `kill` matches: pid, then cgroup, then name.
    pub fn matched_by(&self, kill: &OomKill) -> Option<OomMatch> {
        if self.pids.contains(&kill.pid) {
            return Some(OomMatch::Pid { pid: kill.pid });
        }
        if let Some(memcg) = kill.task_memcg.as_deref() {
            if let Some(prefix) = self
                .cgroup_prefixes
                .iter()
                .find(|p| cgroup_is_within(memcg, p))
            {
                return Some(OomMatch::Cgroup {
                    prefix: prefix.clone(),
                });
            }
        }
        self.process_names
            .iter()
            .find(|n| comm_matches(&kill.process, n))
            .map(|n| OomMatch::ProcessName { name: n.clone() })
    }

    pub fn matches(&self, kill: &OomKill) -> bool {
        self.matched_by(kill).is_some()
    }
}

/// `path` equals `prefix` or lies below it, compared by whole path components.
fn cgroup_is_within(path: &str, prefix: &str) -> bool {
    let prefix = prefix.trim_end_matches('/');
    if prefix.is_empty() {
        return false;
    }
    path == prefix
        || path
            .strip_prefix(prefix)
            .is_some_and(|rest| rest.starts_with('/'))
}

/// The kernel truncates comm to 15 bytes (TASK_COMM_LEN 16), so `php-fpm: pool www` is
/// `php-fpm: pool w` in the kill line.
fn comm_matches(comm: &str, wanted: &str) -> bool {
    const COMM_MAX: usize = 15;
    if comm == wanted {
        return true;
    }
    comm.len() == COMM_MAX
        && wanted.len() > COMM_MAX
        && wanted.as_bytes().starts_with(comm.as_bytes())
}

/// The memory cgroup of a process from the text of `/proc/PID/cgroup`, as the kernel names it
/// in OOM lines: the cgroup v1 `memory` controller's line when there is one (hybrid hosts),
/// else the cgroup v2 `0::` line.
///
/// Paths are relative to the reader's cgroup namespace; the kernel's are relative to the
/// hierarchy root. For an agent in the host's namespace the two agree.
pub fn memory_cgroup_path(proc_pid_cgroup: &str) -> Option<String> {
    let mut unified = None;
    for line in proc_pid_cgroup.lines() {
        let mut parts = line.splitn(3, ':');
        let (Some(_id), Some(controllers), Some(path)) = (parts.next(), parts.next(), parts.next())
        else {
            continue;
        };
        if controllers.split(',').any(|c| c == "memory") {
            return Some(path.to_string());
        }
        if controllers.is_empty() {
            unified = Some(path.to_string());
        }
    }
    unified
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn at(secs: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(secs)
    }

    // Captured from this machine's /dev/kmsg after a real memory-cgroup OOM (cgroup v1).
    const SUMMARY: &str = "oom-kill:constraint=CONSTRAINT_MEMCG,nodemask=(null),cpuset=/,mems_allowed=0,oom_memcg=/why502-manual-20362,task_memcg=/why502-manual-20362,task=python3,pid=22149,uid=0";
    const KILLED: &str = "Memory cgroup out of memory: Killed process 22149 (python3) total-vm:221384kB, anon-rss:27264kB, file-rss:6484kB, shmem-rss:0kB, UID:0 pgtables:108kB oom_score_adj:0";

    #[test]
    fn parses_the_summary_line() {
        let s = parse_summary(SUMMARY).expect("summary");
        assert_eq!(s.constraint.as_deref(), Some("CONSTRAINT_MEMCG"));
        assert_eq!(s.oom_memcg.as_deref(), Some("/why502-manual-20362"));
        assert_eq!(s.task_memcg.as_deref(), Some("/why502-manual-20362"));
        assert_eq!(s.task, "python3");
        assert_eq!(s.pid, 22149);
        assert_eq!(s.uid, Some(0));
    }

    #[test]
    fn summary_values_may_contain_commas() {
        // Format of mm/oom_kill.c dump_oom_summary + mem_cgroup_print_oom_context (global OOM).
        let s = parse_summary("oom-kill:constraint=CONSTRAINT_NONE,nodemask=(null),cpuset=/,mems_allowed=0,global_oom,task_memcg=/system.slice/a,b.service,task=we,ird,pid=77,uid=33").expect("summary");
        assert_eq!(s.oom_memcg, None);
        assert_eq!(s.task_memcg.as_deref(), Some("/system.slice/a,b.service"));
        assert_eq!(s.task, "we,ird");
        assert_eq!(s.pid, 77);
        assert_eq!(s.uid, Some(33));
        assert!(!summary_is_memcg(&s));
    }

    #[test]
    fn parses_the_killed_line() {
        let k = parse_killed(KILLED).expect("killed");
        assert_eq!(k.pid, 22149);
        assert_eq!(k.process, "python3");
        assert!(k.memcg_prefix);
        assert_eq!(k.anon_rss_kb, Some(27264));
        assert_eq!(k.uid, Some(0));
        let g = parse_killed("Out of memory: Killed process 812 (php-fpm: pool w) total-vm:512000kB, anon-rss:400000kB, file-rss:0kB, shmem-rss:0kB, UID:33 pgtables:900kB oom_score_adj:0").expect("global");
        assert_eq!(g.process, "php-fpm: pool w");
        assert!(!g.memcg_prefix);
        assert_eq!(g.uid, Some(33));
    }

    #[test]
    fn ignores_lines_that_only_mention_killed_process() {
        assert_eq!(
            parse_killed("audit: something Killed process 12 (x) total-vm:1kB"),
            None
        );
        assert_eq!(
            parse_killed("oom_reaper: reaped process 22149 (python3), now anon-rss:0kB"),
            None
        );
    }

    #[test]
    fn joins_summary_and_kill_by_pid() {
        let mut c = OomCollector::new(at(100));
        c.push(at(150), SUMMARY);
        c.push(at(150), "oom-kill:constraint=CONSTRAINT_NONE,nodemask=(null),cpuset=/,mems_allowed=0,global_oom,task_memcg=/other,task=x,pid=5,uid=0");
        c.push(at(150), KILLED);
        let (kills, dropped) = c.finish();
        assert_eq!(dropped, 0);
        // The unmatched summary for pid 5 still counts as a kill.
        assert_eq!(kills.len(), 2);
        let k = kills.iter().find(|k| k.pid == 22149).expect("kill");
        assert!(k.cgroup_oom);
        assert_eq!(k.oom_memcg.as_deref(), Some("/why502-manual-20362"));
        assert_eq!(k.line, KILLED);
        assert_eq!(k.summary_line.as_deref(), Some(SUMMARY));
        let orphan = kills.iter().find(|k| k.pid == 5).expect("orphan");
        assert!(!orphan.cgroup_oom);
        assert_eq!(orphan.process, "x");
    }

    #[test]
    fn drops_kills_before_since() {
        let mut c = OomCollector::new(at(100));
        c.push(at(99), SUMMARY);
        c.push(at(99), KILLED);
        let (kills, _) = c.finish();
        assert!(kills.is_empty());
    }

    #[test]
    fn old_kernel_memcg_kill() {
        // Pre-4.19 wording (mm/oom_kill.c oom_kill_process of 4.14).
        let mut c = OomCollector::new(at(0));
        c.push(at(5), "Memory cgroup out of memory: Kill process 4242 (gunicorn) score 998 or sacrifice child");
        c.push(at(5), "Killed process 4242 (gunicorn) total-vm:300000kB, anon-rss:200000kB, file-rss:1000kB, shmem-rss:0kB");
        c.push(
            at(6),
            "Out of memory: Kill process 7 (node) score 900 or sacrifice child",
        );
        c.push(at(6), "Killed process 7 (node) total-vm:300000kB, anon-rss:200000kB, file-rss:1000kB, shmem-rss:0kB");
        let (kills, _) = c.finish();
        assert_eq!(kills.len(), 2);
        assert!(kills[0].cgroup_oom);
        assert_eq!(kills[0].anon_rss_kb, Some(200000));
        assert!(!kills[1].cgroup_oom);
        assert_eq!(kills[1].process, "node");
    }

    #[test]
    fn keeps_only_the_newest_kills() {
        let mut c = OomCollector::new(at(0));
        for pid in 0..(MAX_KILLS as u32 + 3) {
            c.push(
                at(u64::from(pid)),
                &format!("Out of memory: Killed process {pid} (x) total-vm:1kB, anon-rss:1kB"),
            );
        }
        let (kills, dropped) = c.finish();
        assert_eq!(kills.len(), MAX_KILLS);
        assert_eq!(dropped, 3);
        assert_eq!(kills[0].pid, 3);
    }

    fn kill(pid: u32, process: &str, memcg: Option<&str>) -> OomKill {
        OomKill {
            time: at(1),
            pid,
            process: process.into(),
            cgroup_oom: memcg.is_some(),
            constraint: None,
            oom_memcg: memcg.map(str::to_string),
            task_memcg: memcg.map(str::to_string),
            uid: None,
            anon_rss_kb: None,
            line: String::new(),
            summary_line: None,
        }
    }

    #[test]
    fn query_matches_pid_cgroup_and_name() {
        let q = OomQuery {
            pids: [10].into(),
            process_names: vec!["php-fpm: pool www".into()],
            cgroup_prefixes: vec!["/system.slice/php8.2-fpm.service".into(), "/".into()],
        };
        assert_eq!(
            q.matched_by(&kill(10, "a", None)),
            Some(OomMatch::Pid { pid: 10 })
        );
        assert!(matches!(
            q.matched_by(&kill(11, "a", Some("/system.slice/php8.2-fpm.service"))),
            Some(OomMatch::Cgroup { .. })
        ));
        assert!(q.matches(&kill(
            11,
            "a",
            Some("/system.slice/php8.2-fpm.service/pool")
        )));
        // A sibling whose name merely starts the same is not inside.
        assert!(!q.matches(&kill(11, "a", Some("/system.slice/php8.2-fpm.service2"))));
        // "/" would match everything: ignored.
        assert!(!q.matches(&kill(11, "a", Some("/user.slice"))));
        // The kernel's 15-byte comm of a longer name.
        assert!(matches!(
            q.matched_by(&kill(12, "php-fpm: pool w", None)),
            Some(OomMatch::ProcessName { .. })
        ));
        assert!(!q.matches(&kill(12, "php-fpm", None)));
    }

    #[test]
    fn memory_cgroup_from_proc_cgroup() {
        // Captured /proc/self/cgroup of this (cgroup v1/v2 hybrid) machine.
        let hybrid = include_str!("../testdata/proc-cgroup-hybrid.txt");
        assert_eq!(
            memory_cgroup_path(hybrid).as_deref(),
            Some("/process_api/f9109aa67799700408e45d519d8f7c69")
        );
        // cgroup v2 only (format of cgroups(7)).
        assert_eq!(
            memory_cgroup_path("0::/system.slice/php8.2-fpm.service\n").as_deref(),
            Some("/system.slice/php8.2-fpm.service")
        );
        assert_eq!(memory_cgroup_path(""), None);
    }
}

//! Judgements on captured facts, without root and without the host: each case builds the
//! facts a gather would have produced, and `check` asserts the step's outcome and cause (and
//! that the cause is one TREE declares for the step).

use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use why502_backend::{
    BackendKind, BackendLogClass, BackendLogEvent, FormerBackend, FormerSource, LogRole,
};
use why502_kernel_log::{KernelLogRead, KernelLogSource, KernelLogWindow, OomKill};
use why502_model::{CauseId, Outcome, Protocol, StepId};

use super::{judge, JudgeCx, StepFinding};
use crate::facts::{
    BackendFacts, BackendFilesystems, BackendLog, BackendProcess, FamilyMember, FormerFacts,
    LogFileRead, LogRead, Reach, TargetFacts,
};
use crate::sources::{Owner, Sources};
use crate::targets::{TargetAddr, UpstreamTarget};
use crate::test_support::tcp_target;
use crate::tree::tree_step;
use crate::walk::names_declared_cause;

const NOW: u64 = 1_800_000_000;

fn at(secs_ago: u64) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(NOW - secs_ago)
}

/// Judge `step` on the facts and assert what it concluded.
#[track_caller]
fn check(
    step: StepId,
    target: &UpstreamTarget,
    sources: &Sources,
    facts: &TargetFacts,
    explaining: Option<CauseId>,
    expected: (Outcome, Option<CauseId>),
) -> StepFinding {
    let cx = JudgeCx {
        sources,
        facts,
        explaining,
        now: at(0),
    };
    let f = judge(step, target, &cx);
    assert!(
        names_declared_cause(tree_step(step), &f),
        "{step} named {:?}, which TREE does not declare",
        f.cause
    );
    assert_eq!((f.outcome, f.cause), expected, "{step}: {}", f.summary);
    f
}

fn kill(pid: u32, secs_ago: u64, task_memcg: &str) -> OomKill {
    OomKill {
        time: at(secs_ago),
        pid,
        process: "python3".into(),
        cgroup_oom: true,
        constraint: Some("CONSTRAINT_MEMCG".into()),
        oom_memcg: Some(task_memcg.into()),
        task_memcg: Some(task_memcg.into()),
        uid: Some(0),
        anon_rss_kb: Some(65_000),
        line: format!("Memory cgroup out of memory: Killed process {pid} (python3)"),
        summary_line: None,
    }
}

fn sources_with_kills(kills: Vec<OomKill>) -> Sources {
    let mut s = Sources::for_tests();
    s.kernel = std::sync::Arc::new(crate::slot::Slot::ready(KernelLogWindow::Read(
        KernelLogRead {
            source: KernelLogSource::Kmsg,
            since: at(3600),
            kills,
            kills_dropped: 0,
            lsm_lines: Vec::new(),
            records_read: 100,
            covers_from: Some(at(7200)),
            reaches_back: true,
            stopped: None,
            unusable: Vec::new(),
        },
    )));
    s
}

fn serving(cgroup: &str, dedicated: bool, started_secs_ago: u64) -> BackendProcess {
    BackendProcess {
        owner: Owner {
            pid: 500,
            name: "python3 app.py".into(),
        },
        family: [500, 501]
            .map(|pid| FamilyMember {
                pid,
                started_at: Some(at(started_secs_ago)),
            })
            .to_vec(),
        uid: Some(33),
        comm: "python3".into(),
        memory_cgroup: Some(cgroup.into()),
        cgroup_dedicated: dedicated,
        started_at: Some(at(started_secs_ago)),
        cwd: None,
        open_dirs: Vec::new(),
        identity: None,
    }
}

/// Facts of a backend that serves now (resources judges filesystems too: none here).
fn facts_serving(b: BackendProcess) -> TargetFacts {
    TargetFacts {
        backend: Some(BackendFacts {
            current: Some(b),
            former: Vec::new(),
        }),
        filesystems: Some(BackendFilesystems {
            paths: Vec::new(),
            set: None,
        }),
        ..TargetFacts::default()
    }
}

fn facts_down(former: Vec<FormerFacts>) -> TargetFacts {
    TargetFacts {
        backend: Some(BackendFacts {
            current: None,
            former,
        }),
        filesystems: Some(BackendFilesystems {
            paths: Vec::new(),
            set: None,
        }),
        ..TargetFacts::default()
    }
}

fn unit_former(unit: &str) -> FormerFacts {
    FormerFacts {
        backend: FormerBackend {
            kind: BackendKind::Other {
                name: "python3".into(),
            },
            source: FormerSource::SystemdUnit {
                file: PathBuf::from(format!("/etc/systemd/system/{unit}")),
                line: 5,
                directive: "ExecStart".into(),
            },
            detail: format!("{unit} runs `app.py --bind 127.0.0.1:8000`"),
            unit: Some(unit.into()),
            logs: Vec::new(),
            running: Some(false),
        },
        pid_from_file: None,
    }
}

#[test]
fn a_bystander_kill_while_nothing_listens_is_not_the_cause() {
    // php-fpm stopped cleanly; an unrelated python3 was killed in another cgroup 6 min ago.
    let sources = sources_with_kills(vec![kill(4321, 360, "/panel/job-7")]);
    let f = check(
        StepId::Resources,
        &tcp_target(8000),
        &sources,
        &facts_down(Vec::new()),
        Some(CauseId::BackendDown),
        (Outcome::Pass, None),
    );
    assert!(f.claims.is_empty(), "the kill stays a host check");
}

#[test]
fn a_kill_in_a_child_of_the_backends_cgroup_is_not_the_backends() {
    let sources = sources_with_kills(vec![kill(4321, 60, "/srv/app.service/session")]);
    check(
        StepId::Resources,
        &tcp_target(8000),
        &sources,
        &facts_serving(serving("/srv/app.service", true, 3000)),
        None,
        (Outcome::Pass, None),
    );
}

#[test]
fn a_kill_in_the_backends_own_dedicated_cgroup_is_its_own() {
    let sources = sources_with_kills(vec![kill(4321, 60, "/system.slice/app.service")]);
    let facts = facts_serving(serving("/system.slice/app.service", true, 3000));
    // Explaining a reset: the kill is the cause behind it.
    let f = check(
        StepId::Resources,
        &tcp_target(8000),
        &sources,
        &facts,
        Some(CauseId::UpstreamReset),
        (Outcome::Break, Some(CauseId::OomKilled)),
    );
    assert_eq!(f.claims.len(), 1);
    // The backend answers and nothing broke: a risk, not a break.
    check(
        StepId::Resources,
        &tcp_target(8000),
        &sources,
        &facts,
        None,
        (Outcome::Warn, Some(CauseId::OomKilled)),
    );
}

#[test]
fn a_kill_of_an_earlier_process_with_a_reused_pid_is_not_the_backends() {
    // CI, session 8: a bystander python3 (pid 501) was killed in its own cgroup 12 min ago;
    // a php-fpm worker started a minute ago got pid 501 again.
    let sources = sources_with_kills(vec![kill(501, 734, "/why502-w502-oom-unrelated")]);
    check(
        StepId::Resources,
        &tcp_target(8000),
        &sources,
        &facts_serving(serving("/why502-lab", false, 60)),
        Some(CauseId::UpstreamReset),
        (Outcome::Pass, None),
    );
    // The same pid and cgroup, the process older than the kill: it is dying of it.
    let sources = sources_with_kills(vec![kill(501, 30, "/why502-lab")]);
    let f = check(
        StepId::Resources,
        &tcp_target(8000),
        &sources,
        &facts_serving(serving("/why502-lab", false, 60)),
        Some(CauseId::UpstreamReset),
        (Outcome::Break, Some(CauseId::OomKilled)),
    );
    assert!(
        f.summary.contains("pid 501 is of this backend"),
        "{}",
        f.summary
    );
    // Older than the kill but in another cgroup: another process. A cgroup that only shares
    // the backend's name as a prefix is another one too.
    for other in ["/panel/job-7", "/why502-lab-2"] {
        let sources = sources_with_kills(vec![kill(501, 30, other)]);
        check(
            StepId::Resources,
            &tcp_target(8000),
            &sources,
            &facts_serving(serving("/why502-lab", false, 60)),
            Some(CauseId::UpstreamReset),
            (Outcome::Pass, None),
        );
    }
    // A worker in a child cgroup of the backend's (a unit with Delegate=yes) is the backend's.
    let sources = sources_with_kills(vec![kill(501, 30, "/why502-lab/pool-www")]);
    check(
        StepId::Resources,
        &tcp_target(8000),
        &sources,
        &facts_serving(serving("/why502-lab", false, 60)),
        Some(CauseId::UpstreamReset),
        (Outcome::Break, Some(CauseId::OomKilled)),
    );
}

#[test]
fn a_shared_or_pre_start_cgroup_kill_is_not_the_backends() {
    // The same cgroup, but shared with other programs.
    let sources = sources_with_kills(vec![kill(4321, 60, "/why502-lab")]);
    check(
        StepId::Resources,
        &tcp_target(8000),
        &sources,
        &facts_serving(serving("/why502-lab", false, 3000)),
        Some(CauseId::UpstreamReset),
        (Outcome::Pass, None),
    );
    // Its own cgroup, but before this instance started: an earlier instance's.
    let sources = sources_with_kills(vec![kill(4321, 600, "/system.slice/app.service")]);
    check(
        StepId::Resources,
        &tcp_target(8000),
        &sources,
        &facts_serving(serving("/system.slice/app.service", true, 60)),
        Some(CauseId::UpstreamReset),
        (Outcome::Pass, None),
    );
}

#[test]
fn a_dead_backend_is_tied_through_its_units_cgroup_and_its_pid_file() {
    let sources = sources_with_kills(vec![
        kill(4321, 120, "/panel/job-7"),
        kill(777, 100, "/system.slice/app.service"),
    ]);
    let f = check(
        StepId::Resources,
        &tcp_target(8000),
        &sources,
        &facts_down(vec![unit_former("app.service")]),
        Some(CauseId::BackendDown),
        (Outcome::Break, Some(CauseId::OomKilled)),
    );
    assert!(f.summary.contains("pid 777"), "{}", f.summary);
    assert_eq!(f.claims, vec![(777, at(100))]);
    // A php-fpm master killed outright: its pid file still names it.
    let mut pool = unit_former("php8.2-fpm.service");
    pool.backend.unit = None;
    pool.pid_from_file = Some(4321);
    let f = check(
        StepId::Resources,
        &tcp_target(8000),
        &sources,
        &facts_down(vec![pool]),
        Some(CauseId::BackendDown),
        (Outcome::Break, Some(CauseId::OomKilled)),
    );
    assert!(f.summary.contains("pid 4321"), "{}", f.summary);
}

#[test]
fn a_unit_kill_after_the_failures_began_did_not_start_them() {
    use why502_nginx::errorlog::{ErrorLogLine, UpstreamErrorClass};
    let sources = sources_with_kills(vec![kill(777, 100, "/system.slice/app.service")]);
    let line = ErrorLogLine {
        time: (NOW - 900) as i64,
        stamp: String::new(),
        level: "error".into(),
        message: "connect() failed (111: Connection refused)".into(),
        upstream: Some("http://127.0.0.1:8000/".into()),
        server: None,
        class: Some(UpstreamErrorClass::ConnectionRefused),
    };
    let mut facts = facts_down(vec![unit_former("app.service")]);
    facts.logged = vec![crate::facts::ClassSeen {
        class: UpstreamErrorClass::ConnectionRefused,
        count: 1,
        first: line.clone(),
        last: line,
        last_source: "error.log".into(),
    }];
    check(
        StepId::Resources,
        &tcp_target(8000),
        &sources,
        &facts,
        Some(CauseId::BackendDown),
        (Outcome::Pass, None),
    );
}

fn fpm_event(pool: &str, class: BackendLogClass, pid: u32) -> BackendLogEvent {
    BackendLogEvent {
        time: (NOW - 60) as i64,
        time_exact: true,
        class,
        message: format!("WARNING: [pool {pool}] child {pid} said something"),
        pool: Some(pool.into()),
        pid: Some(pid),
    }
}

fn fpm_log(pools: &[&str], files: Vec<LogFileRead>) -> TargetFacts {
    TargetFacts {
        logs: Some(BackendLog {
            who: "php-fpm (pid 10)".into(),
            kind: BackendKind::PhpFpmMaster,
            pools: pools.iter().map(|p| p.to_string()).collect(),
            pids: vec![10],
            files,
            status: None,
        }),
        ..TargetFacts::default()
    }
}

fn unix_target(path: &str) -> UpstreamTarget {
    UpstreamTarget {
        address: format!("unix:{path}"),
        addr: TargetAddr::Unix(path.into()),
        protocol: Protocol::Fastcgi,
        ..tcp_target(0)
    }
}

#[test]
fn another_pools_lines_in_a_shared_log_do_not_count() {
    let sources = Sources::for_tests();
    let shared = LogFileRead {
        path: "/var/log/php8.2-fpm.log".into(),
        role: LogRole::FpmErrorLog,
        read: LogRead::Events(vec![
            fpm_event("pool204", BackendLogClass::RequestTimeout, 3001),
            fpm_event("pool204", BackendLogClass::Fatal, 3002),
        ]),
    };
    let t = unix_target("/run/php/pool1.sock");
    check(
        StepId::BackendLog,
        &t,
        &sources,
        &fpm_log(&["pool1"], vec![shared.clone()]),
        None,
        (Outcome::Pass, None),
    );
    check(
        StepId::BackendLog,
        &t,
        &sources,
        &fpm_log(&["pool204"], vec![shared]),
        None,
        (Outcome::Break, Some(CauseId::UpstreamTimeout)),
    );
}

#[test]
fn a_log_never_written_is_nothing_logged_and_a_sigkill_needs_the_kernel() {
    let sources = Sources::for_tests();
    let t = unix_target("/run/php/www.sock");
    let fresh = LogFileRead {
        path: "/var/log/www-php-errors.log".into(),
        role: LogRole::PhpErrorLog,
        read: LogRead::NotWritten,
    };
    let f = check(
        StepId::BackendLog,
        &t,
        &sources,
        &fpm_log(&["www"], vec![fresh]),
        None,
        (Outcome::Pass, None),
    );
    assert!(f.summary.contains("not written yet"), "{}", f.summary);
    // A worker's SIGKILL without a kernel OOM line for that pid is not oom_killed.
    let killed = LogFileRead {
        path: "/var/log/php8.2-fpm.log".into(),
        role: LogRole::FpmErrorLog,
        read: LogRead::Events(vec![fpm_event(
            "www",
            BackendLogClass::WorkerKilled { signal: Some(9) },
            3003,
        )]),
    };
    let f = check(
        StepId::BackendLog,
        &t,
        &sources,
        &fpm_log(&["www"], vec![killed.clone()]),
        None,
        (Outcome::Break, Some(CauseId::AppError)),
    );
    assert!(
        f.summary.contains("no OOM kill of pid 3003"),
        "{}",
        f.summary
    );
    // With nginx's lost request next to the kill, the verdict names it and quotes the line.
    let mut facts = fpm_log(&["www"], vec![killed.clone()]);
    let mut lost = crate::test_support::error_line(
        "fastcgi://unix:/run/php/www.sock:",
        "recv() failed (104: Connection reset by peer) while reading response header from upstream, client: 10.0.0.1, server: a, request: \"GET /cart.php HTTP/1.1\", upstream: \"fastcgi://unix:/run/php/www.sock:\"",
    );
    lost.time = (NOW - 59) as i64;
    facts.logged = vec![crate::facts::ClassSeen {
        class: why502_nginx::errorlog::UpstreamErrorClass::Reset,
        count: 1,
        first: lost.clone(),
        last: lost,
        last_source: "/var/log/nginx/error.log @ then".into(),
    }];
    let f = check(
        StepId::BackendLog,
        &t,
        &sources,
        &facts,
        None,
        (Outcome::Break, Some(CauseId::AppError)),
    );
    assert!(
        f.summary.contains("nginx lost `GET /cart.php HTTP/1.1`"),
        "{}",
        f.summary
    );
    assert!(
        f.evidence
            .iter()
            .any(|e| e.detail.contains("(104: Connection reset by peer)")),
        "{:?}",
        f.evidence
    );
    let sources = sources_with_kills(vec![kill(3003, 61, "/")]);
    let f = check(
        StepId::BackendLog,
        &t,
        &sources,
        &fpm_log(&["www"], vec![killed.clone()]),
        None,
        (Outcome::Break, Some(CauseId::OomKilled)),
    );
    assert_eq!(f.claims.len(), 1);
    // A kill of pid 3003 twenty minutes earlier was of another process that had the pid.
    let sources = sources_with_kills(vec![kill(3003, 1260, "/")]);
    check(
        StepId::BackendLog,
        &t,
        &sources,
        &fpm_log(&["www"], vec![killed]),
        None,
        (Outcome::Break, Some(CauseId::AppError)),
    );
}

#[test]
fn an_unreadable_log_says_what_is_in_the_way() {
    let sources = Sources::for_tests();
    let denied = LogFileRead {
        path: "/var/log/php8.2-fpm.log".into(),
        role: LogRole::FpmErrorLog,
        read: LogRead::Unreadable {
            reason:
                "/var/log/php8.2-fpm.log (mode 0640, owner root:adm): this user is not in group adm"
                    .into(),
            fix: "Add the user that runs why502 to group adm".into(),
        },
    };
    let f = check(
        StepId::BackendLog,
        &unix_target("/run/php/www.sock"),
        &sources,
        &fpm_log(&["www"], vec![denied]),
        None,
        (Outcome::Unknown, None),
    );
    assert!(f.fix.as_deref().is_some_and(|x| x.contains("group adm")));
}

#[test]
fn nothing_listening_on_a_socket_path_that_exists_is_stale() {
    let mut sources = Sources::for_tests();
    sources.worker.identity = Some(why502_host::Identity {
        name: "www-data".into(),
        uid: 33,
        gid: 33,
        groups: vec![33],
    });
    let facts = TargetFacts {
        reach: Some(Reach::Unix {
            access: why502_socket::SocketAccess::Allowed {
                facts: why502_socket::FileFacts {
                    mode: 0o140660,
                    uid: 33,
                    gid: 33,
                    owner: "www-data".into(),
                    group: "www-data".into(),
                    display: "srw-rw---- www-data:www-data".into(),
                },
            },
            listeners: Vec::new(),
            owner: None,
            ctime: None,
        }),
        elsewhere: Some(Vec::new()),
        ..TargetFacts::default()
    };
    check(
        StepId::BackendUp,
        &unix_target("/run/php/www.sock"),
        &sources,
        &facts,
        None,
        (Outcome::Break, Some(CauseId::SocketStale)),
    );
}

#[test]
#[should_panic(expected = "TREE does not declare")]
fn the_check_catches_an_undeclared_cause() {
    // The walker's debug assertion and `check` share `names_declared_cause`.
    let f = StepFinding::broken(CauseId::FirewallBlocked, "not this step's");
    assert!(
        names_declared_cause(tree_step(StepId::BackendUp), &f),
        "TREE does not declare {:?} for backend_up",
        f.cause
    );
}

/// A request php-fpm killed at request_terminate_timeout (a 502) and, a second later, a PHP
/// fatal error php-fpm answered itself (a 500): the 502s' cause is the timeout, whichever
/// came last. (The lab met the fatal a second after the kill and named app_error.)
#[test]
fn a_killed_request_outranks_a_later_fatal_error() {
    let sources = Sources::for_tests();
    let t = unix_target("/run/php/www.sock");
    let mut timeout = fpm_event("www", BackendLogClass::RequestTimeout, 3001);
    timeout.message = "WARNING: [pool www] child 3001, script '/srv/slow.php' (request: \"GET /slow\") execution timed out (1.0 sec), terminating".into();
    let mut fatal = fpm_event("www", BackendLogClass::Fatal, 3002);
    fatal.time += 1;
    fatal.message = "WARNING: [pool www] child 3002 said into stderr: \"NOTICE: PHP message: PHP Fatal error:  Uncaught Error\"".into();
    for order in [
        vec![timeout.clone(), fatal.clone()],
        vec![fatal.clone(), timeout.clone()],
    ] {
        let log = LogFileRead {
            path: "/var/log/php8.2-fpm.log".into(),
            role: LogRole::FpmErrorLog,
            read: LogRead::Events(order),
        };
        let f = check(
            StepId::BackendLog,
            &t,
            &sources,
            &fpm_log(&["www"], vec![log]),
            None,
            (Outcome::Break, Some(CauseId::UpstreamTimeout)),
        );
        assert!(
            f.evidence
                .iter()
                .any(|e| e.detail.contains("execution timed out")),
            "{:?}",
            f.evidence
        );
    }
    // A fatal error alone still breaks: it may be a worker's death.
    let log = LogFileRead {
        path: "/var/log/php8.2-fpm.log".into(),
        role: LogRole::FpmErrorLog,
        read: LogRead::Events(vec![fatal]),
    };
    check(
        StepId::BackendLog,
        &t,
        &sources,
        &fpm_log(&["www"], vec![log]),
        None,
        (Outcome::Break, Some(CauseId::AppError)),
    );
}

// Containers: facts built from the Engine API answers captured from Debian's docker.io 20.10
// on this machine kind (crates/container/tests/fixtures); the lab runs the real dockerd.

mod containers {
    use super::*;
    use crate::facts::container::{ContainerFacts, ContainerFound, ContainerTie};
    use crate::facts::IpReach;
    use why502_container::{ContainerState, LogLine, LogStream};

    fn state(name: &str) -> ContainerState {
        let text = match name {
            "stopped" => include_str!("../../../container/tests/fixtures/inspect-stopped.json"),
            "oom" => include_str!("../../../container/tests/fixtures/inspect-oom.json"),
            "loop" => include_str!("../../../container/tests/fixtures/inspect-loop.json"),
            "unhealthy" => include_str!("../../../container/tests/fixtures/inspect-unhealthy.json"),
            _ => unreachable!("fixture {name}"),
        };
        ContainerState::from_json(&serde_json::from_str(text).expect("JSON")).expect("state")
    }

    fn published(s: ContainerState, logs: Vec<LogLine>) -> TargetFacts {
        let binding = s.bindings[0].clone();
        TargetFacts {
            reach: Some(Reach::Tcp {
                probes: vec![("127.0.0.1".parse().expect("ip"), IpReach::NothingLocal)],
            }),
            elsewhere: Some(Vec::new()),
            container: Some(ContainerFacts::Found(Box::new(ContainerFound {
                tie: ContainerTie::Published { binding },
                state: s,
                engine: PathBuf::from("/run/docker.sock"),
                daemon: "dockerd",
                logs: Some(Ok(logs)),
                events: None,
            }))),
            ..TargetFacts::default()
        }
    }

    fn line(stream: LogStream, text: &str) -> LogLine {
        LogLine {
            stream,
            at: None,
            text: text.into(),
        }
    }

    #[test]
    fn a_stopped_container_behind_the_port_is_backend_down_naming_it() {
        let s = Sources::for_tests();
        let f = check(
            StepId::BackendUp,
            &tcp_target(8080),
            &s,
            &published(state("stopped"), Vec::new()),
            None,
            (Outcome::Break, Some(CauseId::BackendDown)),
        );
        assert!(
            f.summary
                .contains("container web (image why502-lab/busybox:1)"),
            "{}",
            f.summary
        );
        assert!(
            f.summary.contains("127.0.0.1:8080->80/tcp"),
            "{}",
            f.summary
        );
        assert!(f.summary.contains("exit code 137"), "{}", f.summary);
        assert!(
            f.summary.contains("the engine records no OOM kill"),
            "{}",
            f.summary
        );
        assert!(f
            .fix
            .as_deref()
            .is_some_and(|x| x.contains("docker start web")));
        // Its own record shows no failure of its own: the verdict stays backend_down.
        check(
            StepId::BackendLog,
            &tcp_target(8080),
            &s,
            &published(state("stopped"), Vec::new()),
            Some(CauseId::BackendDown),
            (Outcome::Pass, None),
        );
    }

    #[test]
    fn an_oom_killed_container_is_oom_killed_by_its_state_and_by_the_kernel_log() {
        let st = state("oom");
        let finished = st.finished_at.expect("finished");
        let facts = published(st.clone(), Vec::new());
        let s = Sources::for_tests();
        let f = check(
            StepId::BackendLog,
            &tcp_target(8081),
            &s,
            &facts,
            Some(CauseId::BackendDown),
            (Outcome::Break, Some(CauseId::OomKilled)),
        );
        assert!(
            f.summary.contains("container hog was OOM-killed"),
            "{}",
            f.summary
        );
        assert!(f.summary.contains("32 MiB"), "{}", f.summary);
        // The kernel's kill in its own cgroup ties to it; one in another container's does not.
        let mut own = kill(11676, 0, &format!("/docker/{}", st.id));
        own.time = finished - Duration::from_millis(50);
        let mut other = kill(999, 0, &format!("/docker/{}", "b".repeat(64)));
        other.time = finished;
        let f = check(
            StepId::Resources,
            &tcp_target(8081),
            &sources_with_kills(vec![own, other.clone()]),
            &TargetFacts {
                filesystems: Some(BackendFilesystems {
                    paths: Vec::new(),
                    set: None,
                }),
                ..facts
            },
            Some(CauseId::BackendDown),
            (Outcome::Break, Some(CauseId::OomKilled)),
        );
        assert!(
            f.summary.contains("container hog's own cgroup"),
            "{}",
            f.summary
        );
        assert_eq!(f.claims.len(), 1, "only its own kill is claimed");
    }

    #[test]
    fn a_container_restarting_in_a_loop_names_its_exit_code_and_last_line() {
        let mut st = state("loop");
        st.restarting = true;
        st.running = false;
        st.exit_code = 3;
        let facts = published(
            st,
            vec![
                line(LogStream::Stdout, "starting app"),
                line(LogStream::Stderr, "fatal: cannot open /data/db"),
                line(LogStream::Stdout, "starting app"),
            ],
        );
        let s = Sources::for_tests();
        let up = check(
            StepId::BackendUp,
            &tcp_target(8082),
            &s,
            &facts,
            None,
            (Outcome::Break, Some(CauseId::BackendDown)),
        );
        assert!(
            up.summary.contains("keeps exiting (code 3)"),
            "{}",
            up.summary
        );
        let f = check(
            StepId::BackendLog,
            &tcp_target(8082),
            &s,
            &facts,
            Some(CauseId::BackendDown),
            (Outcome::Break, Some(CauseId::AppError)),
        );
        assert!(
            f.summary.contains("exits by itself with code 3"),
            "{}",
            f.summary
        );
        assert!(
            f.summary.contains("fatal: cannot open /data/db"),
            "the stderr line: {}",
            f.summary
        );
        assert_eq!(f.evidence.len(), 4, "the state and the last three lines");
    }

    #[test]
    fn between_two_crashes_the_exit_code_comes_from_the_engines_events() {
        // As captured: running again (State.ExitCode reset to 0), restarted 5 times.
        let st = state("loop");
        assert!(st.running && st.exit_code == 0);
        let mut facts = published(
            st,
            vec![line(LogStream::Stderr, "fatal: cannot open /data/db")],
        );
        if let Some(ContainerFacts::Found(f)) = facts.container.as_mut() {
            f.events = Some(Ok(why502_container::events::parse_events(include_bytes!(
                "../../../container/tests/fixtures/events-loop.json"
            ))));
        }
        let f = check(
            StepId::BackendLog,
            &tcp_target(8082),
            &Sources::for_tests(),
            &facts,
            Some(CauseId::BackendDown),
            (Outcome::Break, Some(CauseId::AppError)),
        );
        assert!(
            f.summary.contains("exits by itself with code 3"),
            "{}",
            f.summary
        );
        assert!(f.summary.contains("again and again"), "{}", f.summary);
    }

    fn event(secs: u64, action: &str, exit_code: Option<i64>) -> why502_container::ContainerEvent {
        why502_container::ContainerEvent {
            at: SystemTime::UNIX_EPOCH + Duration::from_secs(secs),
            action: action.into(),
            exit_code,
        }
    }

    fn with_events(
        mut facts: TargetFacts,
        events: Vec<why502_container::ContainerEvent>,
    ) -> TargetFacts {
        if let Some(ContainerFacts::Found(f)) = facts.container.as_mut() {
            f.events = Some(Ok(events));
        }
        facts
    }

    #[test]
    fn a_running_container_published_by_nat_is_no_break_and_restarts_asked_for_are_no_crashes() {
        // Running, no restart loop, nothing listening: `userland-proxy: false` (DNAT).
        let st = state("unhealthy");
        let s = Sources::for_tests();
        let f = check(
            StepId::BackendUp,
            &tcp_target(8083),
            &s,
            &published(st.clone(), Vec::new()),
            None,
            (Outcome::Pass, None),
        );
        assert!(
            f.summary.contains("through the engine's NAT rules"),
            "{}",
            f.summary
        );
        // Restarted twice on purpose (`docker restart`: kill, then die 137) under a policy:
        // not a restart loop, so not an application failure.
        let mut looped = state("loop");
        looped.running = false;
        looped.exit_code = 137;
        let asked = with_events(
            published(looped.clone(), Vec::new()),
            vec![
                event(100, "kill", None),
                event(101, "die", Some(137)),
                event(102, "start", None),
                event(200, "kill", None),
                event(210, "die", Some(137)),
            ],
        );
        check(
            StepId::BackendLog,
            &tcp_target(8082),
            &s,
            &asked,
            Some(CauseId::BackendDown),
            (Outcome::Pass, None),
        );
        // An OOM loop whose current run is not flagged: its `oom` events say what killed it.
        let mut running = state("loop");
        running.oom_killed = false;
        let oom = with_events(
            published(running, Vec::new()),
            vec![
                event(100, "oom", None),
                event(100, "die", Some(137)),
                event(101, "start", None),
                event(150, "oom", None),
                event(151, "die", Some(137)),
                event(152, "start", None),
            ],
        );
        let f = check(
            StepId::BackendLog,
            &tcp_target(8082),
            &s,
            &oom,
            Some(CauseId::BackendDown),
            (Outcome::Break, Some(CauseId::OomKilled)),
        );
        assert!(
            f.summary.contains("OOM-killed 2 time(s) in the window"),
            "{}",
            f.summary
        );
    }

    #[test]
    fn an_unhealthy_container_is_a_warning_quoting_its_probe() {
        let f = check(
            StepId::BackendLog,
            &tcp_target(8083),
            &Sources::for_tests(),
            &published(state("unhealthy"), Vec::new()),
            None,
            (Outcome::Warn, Some(CauseId::AppError)),
        );
        assert!(
            f.summary.contains("can't open '/www/missing'"),
            "{}",
            f.summary
        );
    }

    #[test]
    fn a_container_the_engine_cannot_be_asked_about_is_unknown() {
        let facts = TargetFacts {
            container: Some(ContainerFacts::Unasked {
                who: "docker-proxy (pid 5) for 172.17.0.2:80".into(),
                reason: "cannot connect to /var/run/docker.sock: Permission denied".into(),
                fix: crate::facts::container::engine_fix(true),
            }),
            ..TargetFacts::default()
        };
        let f = check(
            StepId::BackendLog,
            &tcp_target(8080),
            &Sources::for_tests(),
            &facts,
            None,
            (Outcome::Unknown, None),
        );
        assert!(f.summary.contains("Permission denied"), "{}", f.summary);
        assert!(f.fix.as_deref().is_some_and(|x| x.contains("docker")));
    }
}

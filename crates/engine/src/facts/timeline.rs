//! When an upstream's failures began and what happened on the host just before: built from
//! facts already gathered (the error-log classes, the backend's process and its logs' starts
//! and stops, the OOM kills a step tied to it) and from the run's `History` (nginx reloads,
//! config file mtimes, dpkg's log). A pure function: no host read happens here.

use std::time::SystemTime;

use why502_backend::Lifecycle;
use why502_model::{TimelineEvent, TimelineKind};

use super::TargetFacts;
use crate::sources::Sources;
use crate::steps::KillRef;
use crate::targets::UpstreamTarget;

/// Host events this long before the first failure are shown (and none older).
const BEFORE: i64 = 3600;
/// An event this close before the first failure may be what started it.
const DECISIVE_WITHIN: i64 = 600;
/// Host events shown, at most (the nearest to the first failure).
const MAX_HOST_EVENTS: usize = 10;

/// The timeline, oldest first, and the sentence that names the decisive event (the last host
/// change before the failures began, when one is near enough), for the verdict's summary.
pub fn build(
    target: &UpstreamTarget,
    facts: &TargetFacts,
    sources: &Sources,
    claims: &[KillRef],
    now: SystemTime,
) -> (Vec<TimelineEvent>, Option<String>) {
    let now_s = secs(now);
    let first = facts.logged.iter().min_by_key(|c| c.first.time).map(|c| {
        (
            c.first.time,
            c.first.stamp.clone(),
            source_file(&c.last_source),
        )
    });
    let last = facts
        .logged
        .iter()
        .max_by_key(|c| c.last.time)
        .map(|c| (c.last.time, c.last_source.clone(), c.class));
    let anchor = first.as_ref().map_or(now_s, |f| f.0);
    let mut host: Vec<(i64, TimelineKind, String, String)> = Vec::new();

    for (t, source) in &sources.history.nginx_reloads {
        host.push((
            *t,
            TimelineKind::NginxReloaded,
            "nginx reloaded its configuration".into(),
            source.clone(),
        ));
    }
    // Config files that bear on this upstream: nginx's main file and the files naming it;
    // the php-fpm pools serving it and their master's main file.
    let mut files: Vec<std::path::PathBuf> = target
        .references
        .iter()
        .map(|r| std::path::PathBuf::from(&r.file))
        .collect();
    if let Some(main) = sources.history.file_mtimes.first() {
        files.push(main.0.clone());
    }
    let mut fpm_logs: Vec<std::path::PathBuf> = Vec::new();
    for (c, pools) in related_fpm_configs(target, sources) {
        files.push(c.main_file.clone());
        files.extend(pools.iter().map(|p| p.file.clone()));
        if let why502_backend::FpmLogTarget::File(log) = &c.global.error_log {
            fpm_logs.push(log.clone());
        }
    }
    files.sort();
    files.dedup();
    for (path, mtime) in &sources.history.file_mtimes {
        if files.contains(path) {
            host.push((
                *mtime,
                TimelineKind::ConfigChanged,
                format!("{} modified", path.display()),
                format!("mtime of {}", path.display()),
            ));
        }
    }
    // The backend's logs (and those of the php-fpm masters related to this address): their
    // lines about other pools are not this upstream's.
    let (who, pools, mut log_paths) = match &facts.logs {
        Some(l) => (
            l.who.clone(),
            l.pools.clone(),
            l.files.iter().map(|f| f.path.clone()).collect::<Vec<_>>(),
        ),
        None => ("php-fpm".to_string(), Vec::new(), Vec::new()),
    };
    log_paths.extend(fpm_logs);
    log_paths.sort();
    log_paths.dedup();
    {
        let logs = Logs { who, pools };
        for path in &log_paths {
            for e in sources.backend_lifecycle(path) {
                if e.pool
                    .as_ref()
                    .is_some_and(|p| !logs.pools.is_empty() && !logs.pools.contains(p))
                {
                    continue;
                }
                let kind = match e.kind {
                    Lifecycle::Started => TimelineKind::BackendStarted,
                    Lifecycle::Reloading | Lifecycle::Stopped => TimelineKind::BackendExited,
                };
                let what = match e.kind {
                    Lifecycle::Started => "ready",
                    Lifecycle::Reloading => "reloading",
                    Lifecycle::Stopped => "stopped",
                };
                host.push((
                    e.time,
                    kind,
                    format!(
                        "{} {what} ({})",
                        logs.who,
                        e.message
                            .split_once(": ")
                            .filter(|(level, _)| level.chars().all(|c| c.is_ascii_uppercase()))
                            .map_or(e.message.as_str(), |(_, m)| m)
                    ),
                    path.display().to_string(),
                ));
            }
        }
    }
    if let Some(p) = facts.backend.as_ref().and_then(|b| b.current.as_ref()) {
        // Its own log's "ready" line at the same time says it better.
        let logged_start = |t: i64| {
            host.iter()
                .any(|(h, k, ..)| *k == TimelineKind::BackendStarted && (h - t).abs() <= 5)
        };
        if let Some(t) = p.started_at.filter(|t| !logged_start(secs(*t))) {
            host.push((
                secs(t),
                TimelineKind::BackendStarted,
                format!("{} (pid {}) started", p.comm, p.owner.pid),
                "the process table (start time)".into(),
            ));
        }
    }
    if let Some(c) = facts
        .container
        .as_ref()
        .and_then(super::container::ContainerFacts::found)
    {
        let st = &c.state;
        let source = c.api_source("json");
        if let Some(t) = st.started_at {
            host.push((
                secs(t),
                TimelineKind::BackendStarted,
                format!(
                    "container {} started (restart count {})",
                    st.name, st.restart_count
                ),
                format!("{source} State.StartedAt"),
            ));
        }
        // Each exit in the window, as the engine recorded it (a restart loop's many).
        for (t, code) in c.exits() {
            host.push((
                secs(t),
                TimelineKind::BackendExited,
                format!(
                    "container {} exited{}",
                    st.name,
                    code.map(|c| format!(" with code {c}")).unwrap_or_default()
                ),
                format!("{} {} /events (die)", c.cli(), c.engine.display()),
            ));
        }
        let seen_exit = |t: i64, host: &[(i64, TimelineKind, String, String)]| {
            host.iter()
                .any(|(h, k, ..)| *k == TimelineKind::BackendExited && (h - t).abs() <= 1)
        };
        if let Some(t) = st
            .finished_at
            .filter(|t| !st.running && (st.oom_killed || !seen_exit(secs(*t), &host)))
        {
            host.push((
                secs(t),
                if st.oom_killed {
                    TimelineKind::OomKill
                } else {
                    TimelineKind::BackendExited
                },
                format!(
                    "container {} exited with code {}{}",
                    st.name,
                    st.exit_code,
                    if st.oom_killed { " (OOM-killed)" } else { "" }
                ),
                format!("{source} State.FinishedAt"),
            ));
        }
    }
    if let Some(unit) = backend_unit(facts) {
        if let Some(read) = sources.unit_journal_read(&unit) {
            host.extend(unit_events(&unit, &read));
        }
    }
    for k in sources.kernel_log().kills() {
        if claims.iter().any(|(pid, t)| *pid == k.pid && *t == k.time) {
            host.push((
                secs(k.time),
                TimelineKind::OomKill,
                format!("the kernel OOM-killed {} (pid {})", k.process, k.pid),
                "the kernel log".into(),
            ));
        }
    }
    host.retain(|(t, ..)| *t >= anchor - BEFORE && *t <= now_s);
    host.sort_by_key(|(t, ..)| *t);
    host.dedup_by(|a, b| a.0 == b.0 && a.1 == b.1 && a.2 == b.2);
    if host.len() > MAX_HOST_EVENTS {
        // The nearest to the first failure stay.
        host.sort_by_key(|(t, ..)| (t - anchor).abs());
        host.truncate(MAX_HOST_EVENTS);
    }
    // Package runs are the host's, not this upstream's: a few, nearest first, after the rest.
    let mut runs = package_runs(&sources.history.packages);
    runs.retain(|(t, ..)| *t >= anchor - BEFORE && *t <= now_s);
    runs.sort_by_key(|(t, ..)| (t - anchor).abs());
    runs.truncate(MAX_PACKAGE_RUNS);
    host.extend(runs);
    host.sort_by_key(|(t, ..)| *t);

    let decisive = first.as_ref().and_then(|(t0, stamp, _)| {
        let before: Vec<&(i64, TimelineKind, String, String)> = host
            .iter()
            .filter(|(t, ..)| *t <= *t0 && *t >= t0 - DECISIVE_WITHIN)
            .collect();
        let last_change = before.last()?;
        let mut sentence = format!(
            "the failures began {} after {} (at {})",
            ago(t0 - last_change.0),
            last_change.2,
            rfc3339(last_change.0)
        );
        // A restart or reload with a config change just before it: say both.
        if matches!(
            last_change.1,
            TimelineKind::BackendStarted
                | TimelineKind::NginxReloaded
                | TimelineKind::BackendExited
        ) {
            if let Some(cfg) = before
                .iter()
                .rev()
                .find(|e| e.1 == TimelineKind::ConfigChanged && e.0 <= last_change.0)
            {
                sentence.push_str(&format!(", with {} at {}", cfg.2, rfc3339(cfg.0)));
            }
        }
        sentence.push_str(&format!("; first failure logged at {stamp}"));
        Some(sentence)
    });

    let mut events: Vec<TimelineEvent> = host
        .into_iter()
        .map(|(t, event, detail, source)| TimelineEvent {
            at: rfc3339(t),
            event,
            detail,
            source,
        })
        .collect();
    if let Some((t, stamp, file)) = first {
        events.push(TimelineEvent {
            at: rfc3339(t),
            event: TimelineKind::FirstFailure,
            detail: "the first failure nginx logged for this upstream in the window".into(),
            source: format!("{file} @ {stamp}"),
        });
    }
    if let Some((t, source, class)) = last {
        events.push(TimelineEvent {
            at: rfc3339(t),
            event: TimelineKind::LastFailure,
            detail: format!("the last: {}", class.describe()),
            source,
        });
    }
    events.sort_by(|a, b| a.at.cmp(&b.at));
    (events, decisive)
}

struct Logs {
    who: String,
    pools: Vec<String>,
}

/// The php-fpm configs that bear on this upstream: those with a pool serving its address,
/// and — for a unix socket nothing serves — those with a pool listening in the same directory
/// (a pool whose `listen` was just moved away from it), with those pools.
pub fn related_fpm_configs<'a>(
    target: &UpstreamTarget,
    sources: &'a Sources,
) -> Vec<(
    &'a why502_backend::PhpFpmConfig,
    Vec<&'a why502_backend::FpmPool>,
)> {
    let Some(addr) = why502_backend::BackendAddr::parse_upstream(&target.address) else {
        return Vec::new();
    };
    let serving: Vec<_> = sources
        .fpm_configs
        .iter()
        .filter_map(|c| {
            // By name again: pools_serving's borrow is tied to `addr`, which stays here.
            let names: Vec<String> = c.pools_serving(&addr).map(|p| p.name.clone()).collect();
            let pools: Vec<&why502_backend::FpmPool> =
                c.pools.iter().filter(|p| names.contains(&p.name)).collect();
            (!pools.is_empty()).then_some((c, pools))
        })
        .collect();
    if !serving.is_empty() {
        return serving;
    }
    let crate::TargetAddr::Unix(socket) = &target.addr else {
        return Vec::new();
    };
    let dir = socket.parent();
    sources
        .fpm_configs
        .iter()
        .filter_map(|c| {
            let pools: Vec<_> = c
                .pools
                .iter()
                .filter(|p| {
                    p.listen_raw
                        .as_deref()
                        .is_some_and(|l| std::path::Path::new(l).parent() == dir)
                })
                .collect();
            (!pools.is_empty()).then_some((c, pools))
        })
        .collect()
}

/// What the timeline reads beyond the steps' facts: the logs of the related php-fpm masters
/// (each read once per run, shared with the backend_log step), and the journal of the
/// backend's systemd unit where there is one.
pub async fn gather(
    target: &UpstreamTarget,
    facts: &TargetFacts,
    sources: &Sources,
    budget: std::time::Duration,
) {
    // OOM kills of its processes go on the timeline.
    sources.kernel.wait().await;
    for (c, _) in related_fpm_configs(target, sources) {
        if let why502_backend::FpmLogTarget::File(log) = &c.global.error_log {
            let _ = sources.backend_log(log);
        }
    }
    if let Some(unit) = backend_unit(facts) {
        let _ = sources.unit_journal(&unit, budget).await;
    }
}

/// The systemd unit that runs (or ran) the backend: its process's cgroup names it, or the
/// unit configured to serve the dead address.
fn backend_unit(facts: &TargetFacts) -> Option<String> {
    // A container's unit is its engine's (docker.service): the container's own starts and
    // exits are on the timeline instead.
    if facts.container.is_some() {
        return None;
    }
    let b = facts.backend.as_ref()?;
    b.current
        .as_ref()
        .and_then(|p| p.identity.as_ref())
        .and_then(|i| i.unit.clone())
        .or_else(|| b.former.iter().find_map(|f| f.backend.unit.clone()))
        .filter(|u| u.ends_with(".service"))
}

/// systemd's own record of the unit: starts, stops, exits of its main process, OOM kills,
/// restarts and its giving up.
fn unit_events(
    unit: &str,
    read: &why502_backend::JournalRead,
) -> Vec<(i64, TimelineKind, String, String)> {
    use why502_backend::UnitEvent as E;
    let why502_backend::JournalRead::Read { unit_events, .. } = read else {
        return Vec::new();
    };
    unit_events
        .iter()
        .map(|e| {
            let (kind, what) = match &e.event {
                E::Started => (TimelineKind::BackendStarted, "started".to_string()),
                E::Stopped => (TimelineKind::BackendExited, "stopped".to_string()),
                E::MainProcessExited { code, status } => (
                    TimelineKind::BackendExited,
                    format!("main process exited (code={code}, status={status})"),
                ),
                E::Failed { result } => (
                    TimelineKind::BackendExited,
                    format!("failed (result {result})"),
                ),
                E::OomKill => (
                    TimelineKind::OomKill,
                    "had a process killed by the OOM killer".to_string(),
                ),
                E::Restarting { counter } => (
                    TimelineKind::BackendExited,
                    match counter {
                        Some(n) => format!("restart scheduled (counter {n})"),
                        None => "restart scheduled".to_string(),
                    },
                ),
                E::StartLimitHit => (
                    TimelineKind::BackendExited,
                    "not restarted again: start limit hit".to_string(),
                ),
            };
            (
                e.time,
                kind,
                format!("{unit} {what}"),
                format!("journalctl -u {unit}"),
            )
        })
        .collect()
}

/// Package runs shown, at most.
const MAX_PACKAGE_RUNS: usize = 3;
/// Actions this close together are one run of apt or dpkg.
const RUN_GAP: i64 = 120;

/// dpkg's actions grouped into runs (one `apt upgrade` is one event), each named by its
/// first actions, the packages of nginx, PHP and Python first.
fn package_runs(
    changes: &[why502_host::PackageChange],
) -> Vec<(i64, TimelineKind, String, String)> {
    let mut runs: Vec<Vec<&why502_host::PackageChange>> = Vec::new();
    for c in changes {
        match runs.last_mut() {
            Some(run) if run.last().is_some_and(|l| c.time - l.time <= RUN_GAP) => run.push(c),
            _ => runs.push(vec![c]),
        }
    }
    runs.into_iter()
        .map(|mut run| {
            let start = run.first().map_or(0, |c| c.time);
            let n = run.len();
            let relevant = |c: &&why502_host::PackageChange| {
                [
                    "nginx", "php", "python", "libssl", "openssl", "uwsgi", "gunicorn",
                ]
                .iter()
                .any(|p| c.package.starts_with(p))
            };
            run.sort_by_key(|c| !relevant(c));
            let named: Vec<String> = run
                .iter()
                .take(3)
                .map(|c| format!("{} {} {} → {}", c.action, c.package, c.from, c.to))
                .collect();
            let more = if n > 3 {
                format!(" (+{} more)", n - 3)
            } else {
                String::new()
            };
            (
                start,
                TimelineKind::PackageChanged,
                format!("{n} package change(s): {}{more}", named.join(", ")),
                "dpkg.log".to_string(),
            )
        })
        .collect()
}

fn source_file(last_source: &str) -> String {
    last_source
        .split_once(" @ ")
        .map_or(last_source, |(f, _)| f)
        .to_string()
}

fn secs(t: SystemTime) -> i64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

fn rfc3339(t: i64) -> String {
    let st = SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(t.max(0) as u64);
    humantime::format_rfc3339_seconds(st).to_string()
}

fn ago(s: i64) -> String {
    humantime::format_duration(std::time::Duration::from_secs(s.max(0) as u64)).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::facts::ClassSeen;
    use crate::test_support::{error_line, target};
    use crate::TargetAddr;

    fn seen(first: i64, last: i64) -> ClassSeen {
        let mut a = error_line("fastcgi://unix:/run/php/www.sock:", "connect() to unix:/run/php/www.sock failed (2: No such file or directory) while connecting to upstream");
        a.time = first;
        a.stamp = "2026/11/21 13:32:09".into();
        let mut b = a.clone();
        b.time = last;
        ClassSeen {
            class: why502_nginx::errorlog::UpstreamErrorClass::NoSuchFile,
            count: 3,
            first: a,
            last: b,
            last_source: "/var/log/nginx/error.log @ 2026/11/21 13:40:00".into(),
        }
    }

    /// A config change then a reload, then the failures: the timeline holds them in order,
    /// with the first and last failure, and the sentence names the reload and the change.
    /// An edit to another site's file and a package upgrade hours before do not appear.
    #[test]
    fn the_reload_after_a_config_change_is_named_before_the_first_failure() {
        let t0 = 1_800_000_000;
        let mut t = target(TargetAddr::Unix("/run/php/www.sock".into()));
        t.references.push(why502_model::Reference {
            file: "/etc/nginx/sites-enabled/shop".into(),
            line: 3,
            server_name: Some("shop.example".into()),
            location: Some("/".into()),
            directive: "fastcgi_pass unix:/run/php/www.sock".into(),
        });
        let mut sources = Sources::for_tests();
        sources.history.nginx_reloads = vec![(t0 - 4, "/var/log/nginx/error.log @ reload".into())];
        sources.history.file_mtimes = vec![
            ("/etc/nginx/nginx.conf".into(), t0 - 86_400),
            ("/etc/nginx/sites-enabled/shop".into(), t0 - 30),
            ("/etc/nginx/sites-enabled/other".into(), t0 - 20),
        ];
        sources.history.packages = vec![why502_host::PackageChange {
            time: t0 - 5 * 3600,
            action: "upgrade".into(),
            package: "libc6".into(),
            from: "1".into(),
            to: "2".into(),
        }];
        let facts = TargetFacts {
            logged: vec![seen(t0, t0 + 600)],
            ..TargetFacts::default()
        };
        let now = SystemTime::UNIX_EPOCH + std::time::Duration::from_secs((t0 + 700) as u64);
        let (events, decisive) = build(&t, &facts, &sources, &[], now);
        let kinds: Vec<TimelineKind> = events.iter().map(|e| e.event).collect();
        assert_eq!(
            kinds,
            [
                TimelineKind::ConfigChanged,
                TimelineKind::NginxReloaded,
                TimelineKind::FirstFailure,
                TimelineKind::LastFailure
            ],
            "{events:#?}"
        );
        assert!(
            events[0].detail.contains("sites-enabled/shop"),
            "{events:#?}"
        );
        let d = decisive.expect("a decisive event");
        assert!(
            d.starts_with("the failures began 4s after nginx reloaded its configuration"),
            "{d}"
        );
        assert!(
            d.contains("with /etc/nginx/sites-enabled/shop modified at"),
            "{d}"
        );
        // Without failures logged, no first/last and no sentence.
        let (events, decisive) = build(&t, &TargetFacts::default(), &sources, &[], now);
        assert!(decisive.is_none());
        assert!(!events.iter().any(|e| e.event == TimelineKind::FirstFailure));
    }

    /// A backend under systemd: its unit's journal says the main process was OOM-killed and
    /// systemd gave up restarting it, seconds before the failures; the timeline holds both and
    /// the sentence names the last.
    #[test]
    fn the_units_journal_names_the_exit_before_the_failures() {
        use why502_backend::{
            BackendKind, FormerBackend, FormerSource, JournalRead, UnitEvent, UnitEventAt,
        };
        let t0 = 1_800_000_000;
        let t = target(TargetAddr::Tcp {
            host: "127.0.0.1".into(),
            port: 8000,
        });
        let sources = Sources::for_tests();
        let event = |time: i64, event: UnitEvent| UnitEventAt {
            time,
            event,
            message: String::new(),
        };
        sources.set_unit_journal(
            "app.service",
            JournalRead::Read {
                unit: "app.service".into(),
                events: Vec::new(),
                unit_events: vec![
                    event(t0 - 9, UnitEvent::OomKill),
                    event(
                        t0 - 9,
                        UnitEvent::MainProcessExited {
                            code: "killed".into(),
                            status: "9/KILL".into(),
                        },
                    ),
                    event(t0 - 3, UnitEvent::StartLimitHit),
                ],
                entries: 3,
                bad_lines: 0,
            },
        );
        let facts = TargetFacts {
            logged: vec![seen(t0, t0 + 60)],
            backend: Some(crate::facts::BackendFacts {
                current: None,
                former: vec![crate::facts::FormerFacts {
                    backend: FormerBackend {
                        kind: BackendKind::Gunicorn,
                        source: FormerSource::Process { pid: 7 },
                        detail: String::new(),
                        unit: Some("app.service".into()),
                        logs: Vec::new(),
                        running: Some(false),
                    },
                    pid_from_file: None,
                }],
            }),
            ..TargetFacts::default()
        };
        let now = SystemTime::UNIX_EPOCH + std::time::Duration::from_secs((t0 + 100) as u64);
        let (events, decisive) = build(&t, &facts, &sources, &[], now);
        let details: Vec<&str> = events.iter().map(|e| e.detail.as_str()).collect();
        assert!(
            details.contains(&"app.service main process exited (code=killed, status=9/KILL)"),
            "{details:?}"
        );
        assert!(events
            .iter()
            .any(|e| e.event == TimelineKind::OomKill && e.source == "journalctl -u app.service"));
        let d = decisive.expect("a decisive event");
        assert!(
            d.contains("app.service not restarted again: start limit hit"),
            "{d}"
        );
    }
}

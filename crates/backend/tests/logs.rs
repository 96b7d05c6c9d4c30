//! Backend log classification and window reading on lines captured from php-fpm 8.2,
//! gunicorn 27.0.1 and uWSGI 2.0.30 (see tests/fixtures/README.md).

mod common;

use std::io::Write;
use std::path::Path;

use why502_backend::identity::BackendKind;
use why502_backend::logs::{
    classify_backend_line, fix_text, parse_stamp, read_backend_log, summarize, BackendLogClass,
    BackendLogWindow, FixContext, LocalClock,
};
use why502_backend::phpfpm::PhpFpmConfig;
use why502_host::TailLimits;
use why502_model::CauseId;
use BackendLogClass::*;

fn classes(rel: &str) -> Vec<BackendLogClass> {
    common::fixture_text(rel)
        .lines()
        .filter_map(classify_backend_line)
        .collect()
}

fn count(v: &[BackendLogClass], c: BackendLogClass) -> usize {
    v.iter().filter(|x| **x == c).count()
}

fn window(rel: &str, since: i64) -> BackendLogWindow {
    read_backend_log(&common::fixtures().join(rel), since, TailLimits::default()).unwrap()
}

/// The epoch of a stamp as the reader computes it (local-time stamps use the host's zone).
fn at(stamp_line: &str) -> i64 {
    parse_stamp(stamp_line, &mut LocalClock::default())
        .unwrap()
        .time
}

#[test]
fn php_fpm_timeouts_and_slow_requests() {
    let c = classes("logs/php-fpm-static-timeouts.log");
    assert_eq!(count(&c, RequestTimeout), 2);
    assert_eq!(count(&c, SlowRequest), 2);
    // The SIGTERM after each timeout is php-fpm's own terminate, not a second failure.
    assert_eq!(c.len(), 4, "{c:?}");
}

#[test]
fn php_fpm_max_children_signals_and_worker_output() {
    let c = classes("logs/php-fpm-pools.log");
    // `[pool dyn] server reached pm.max_children setting (1)` and ondemand's
    // `[pool od] server reached max_children setting (1)`.
    assert_eq!(count(&c, PoolExhausted), 2);
    // catch_workers_output: `child N said into stderr: "NOTICE: PHP message: PHP Fatal error: ..."`.
    assert_eq!(count(&c, MemoryLimit), 1);
    assert_eq!(count(&c, Fatal), 1);
    assert_eq!(count(&c, WorkerKilled { signal: Some(9) }), 1);
    assert_eq!(count(&c, WorkerKilled { signal: Some(11) }), 1);
    assert_eq!(c.len(), 6, "{c:?}");
}

#[test]
fn php_error_log() {
    let c = classes("logs/php-errors.log");
    assert_eq!(c, vec![MemoryLimit, Fatal]);
    let w = window("logs/php-errors.log", 0);
    assert_eq!(w.events.len(), 2);
    // `[21-Nov-2026 14:03:06 UTC]` is exact.
    assert_eq!(w.events[0].time, 1_795_269_786);
    assert!(w.events[0].time_exact);
    assert!(w.events[0]
        .message
        .contains("Allowed memory size of 8388608 bytes exhausted"));
}

#[test]
fn slowlog_backtraces_are_not_failures() {
    assert!(classes("logs/php-fpm-slow.log").is_empty());
}

#[test]
fn php_fpm_window_counts_only_lines_inside_it() {
    let all = window("logs/php-fpm-static-timeouts.log", 0);
    assert_eq!(all.events.len(), 4);
    assert!(all.stamped_lines >= 19);
    let since = at("[21-Nov-2026 14:03:02] x");
    let w = window("logs/php-fpm-static-timeouts.log", since);
    let got: Vec<_> = w.events.iter().map(|e| (e.class, e.pid)).collect();
    assert_eq!(
        got,
        vec![(SlowRequest, Some(25248)), (RequestTimeout, Some(25248))]
    );
    assert_eq!(w.events[1].pool.as_deref(), Some("cap"));
    assert!(w.events.iter().all(|e| e.time >= since));
}

#[test]
fn gunicorn_timeout_exception_and_kill() {
    let w = window("logs/gunicorn-error.log", 0);
    let got: Vec<_> = w.events.iter().map(|e| e.class).collect();
    // The SystemExit traceback printed by the timeout's abort is not an app error.
    assert_eq!(
        got,
        vec![RequestTimeout, AppError, WorkerKilled { signal: Some(9) }]
    );
    let timeout = &w.events[0];
    assert_eq!(timeout.time, 1_795_269_837); // [2026-11-21 14:03:57 +0000]
    assert_eq!(timeout.pid, Some(28604));
    let app = &w.events[1];
    assert_eq!(app.message, "ValueError: boom from app");
    // Undated: stamped with the next newer line, `[2026-11-21 14:03:58 +0000] ... SIGKILL!`.
    assert!(!app.time_exact);
    assert_eq!(app.time, 1_795_269_838);
    assert_eq!(w.events[2].pid, Some(28925));
    assert_eq!(w.kills_after_timeout, 0, "pid 28925 never timed out");
}

#[test]
fn gunicorn_boot_failure() {
    let w = window("logs/gunicorn-boot-failure.log", 0);
    let msgs: Vec<_> = w
        .events
        .iter()
        .map(|e| (e.class, e.message.as_str()))
        .collect();
    assert_eq!(
        msgs,
        vec![
            (
                AppError,
                "ModuleNotFoundError: No module named 'nonexistent_module_xyz'"
            ),
            (AppError, "[28970] [ERROR] Reason: Worker failed to boot."),
        ]
    );
}

#[test]
fn uwsgi_listen_queue_harakiri_and_its_kills() {
    let w = window("logs/uwsgi-listen-queue.log", 0);
    let c: Vec<_> = w.events.iter().map(|e| e.class).collect();
    assert_eq!(count(&c, PoolExhausted), 13);
    assert_eq!(count(&c, RequestTimeout), 4);
    // Each `DAMN ! worker 1 (pid: N) died, killed by signal 9` follows the harakiri of pid N.
    assert_eq!(count(&c, WorkerKilled { signal: Some(9) }), 0);
    assert_eq!(w.kills_after_timeout, 3);
    let first = &w.events[0];
    assert_eq!(first.class, PoolExhausted);
    assert_eq!(first.time, at("Sat Nov 21 14:04:10 2026 - x"));
}

#[test]
fn uwsgi_traceback_takes_the_request_logs_time() {
    let w = window("logs/uwsgi-traceback.log", 0);
    assert_eq!(w.events.len(), 1);
    assert_eq!(w.events[0].class, AppError);
    assert_eq!(w.events[0].message, "ValueError: boom from app");
    assert_eq!(
        w.events[0].time,
        at("[pid: 30923|app: 0|req: 1/1] 127.0.0.1 () {24 vars in 254 bytes} [Sat Nov 21 14:04:40 2026] GET /boom")
    );
}

#[test]
fn chained_tracebacks_count_once() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("app.log");
    std::fs::write(
        &p,
        "2026-11-21 14:00:00,001 ERROR request failed\nTraceback (most recent call last):\n  File \"a.py\", line 1, in f\n    d['x']\nKeyError: 'x'\n\nDuring handling of the above exception, another exception occurred:\n\nTraceback (most recent call last):\n  File \"a.py\", line 3, in f\n    raise ValueError('y')\nValueError: y\n2026-11-21 14:00:01,000 INFO next\n",
    )
    .unwrap();
    let w = read_backend_log(&p, 0, TailLimits::default()).unwrap();
    assert_eq!(w.events.len(), 1, "{:?}", w.events);
    assert_eq!(w.events[0].message, "ValueError: y");
}

#[test]
fn window_follows_rotation_and_stops_at_its_start() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("fpm.log");
    let line = |h: u32, m: u32| {
        format!("[21-Nov-2026 {h:02}:{m:02}:00] WARNING: [pool www] server reached pm.max_children setting (5), consider raising it\n")
    };
    let mut old = std::fs::File::create(dir.path().join("fpm.log.1")).unwrap();
    for m in 0..30 {
        old.write_all(line(1, m).as_bytes()).unwrap();
    }
    let mut cur = std::fs::File::create(&p).unwrap();
    // Lots of routine lines before the window's start, in the current file.
    for i in 0..20_000 {
        writeln!(
            cur,
            "[21-Nov-2026 02:00:00] NOTICE: [pool www] child {i} started"
        )
        .unwrap();
    }
    for m in 0..3 {
        cur.write_all(line(3, m).as_bytes()).unwrap();
    }
    drop((old, cur));
    let since = at("[21-Nov-2026 03:00:00] x");
    let w = read_backend_log(&p, since, TailLimits::default()).unwrap();
    assert_eq!(w.events.len(), 3);
    assert!(
        w.rotated.is_empty(),
        "the window ends inside the current file"
    );
    let size = std::fs::metadata(&p).unwrap().len();
    assert!(w.bytes_read < size, "read {} of {size}", w.bytes_read);
    // A window reaching back into the rotated file.
    let since = at("[21-Nov-2026 01:20:00] x");
    let w = read_backend_log(&p, since, TailLimits::default()).unwrap();
    assert_eq!(w.events.len(), 13);
    assert_eq!(w.rotated.len(), 1);
    assert!(w.events.windows(2).all(|p| p[0].time <= p[1].time));
}

#[test]
fn summaries_quote_counts_times_and_newest_line() {
    let w = window("logs/uwsgi-listen-queue.log", 0);
    let s = summarize(&w.events);
    assert_eq!(s[0].class, PoolExhausted);
    assert_eq!(s[0].cause, CauseId::PoolExhausted);
    assert_eq!(s[0].count, 13);
    assert_eq!(s[0].first_seen, at("Sat Nov 21 14:04:10 2026 - x"));
    assert_eq!(s[0].last_seen, at("Sat Nov 21 14:04:25 2026 - x"));
    assert!(s[0].newest.contains("(2/2)"));
    assert_eq!(s[1].class, RequestTimeout);
    assert_eq!(s[1].cause, CauseId::UpstreamTimeout);
    let sentence = s[0].sentence();
    assert!(sentence.starts_with("13 × pool exhausted"), "{sentence}");
    assert!(sentence.contains("between "), "{sentence}");
}

#[test]
fn fixes_name_the_setting_and_its_value() {
    let dir = tempfile::tempdir().unwrap();
    common::copy_tree(&common::fixtures().join("phpfpm/debian"), dir.path());
    let c = PhpFpmConfig::load(&dir.path().join("etc/php/8.2/fpm/php-fpm.conf")).unwrap();
    let shop = c.pool("shop").unwrap();
    let kind = BackendKind::PhpFpmPool {
        pool: "shop".into(),
    };
    let cx = FixContext {
        kind: &kind,
        pool: Some(shop),
        nginx_read_timeout: Some(60),
    };
    let f = fix_text(PoolExhausted, &cx);
    assert!(f.contains("pm.max_children = 4"), "{f}");
    assert!(f.contains("shop.conf"), "{f}");
    let f = fix_text(RequestTimeout, &cx);
    assert!(f.contains("request_terminate_timeout = 120s"), "{f}");
    assert!(
        f.contains("fastcgi_read_timeout") && f.contains("(60s)"),
        "{f}"
    );
    let f = fix_text(MemoryLimit, &cx);
    assert!(f.contains("memory_limit = 256M"), "{f}");
    let g = BackendKind::Gunicorn;
    let gcx = FixContext {
        kind: &g,
        pool: None,
        nginx_read_timeout: None,
    };
    assert!(fix_text(RequestTimeout, &gcx).contains("--timeout"));
    let u = BackendKind::Uwsgi;
    let ucx = FixContext { kind: &u, ..gcx };
    assert!(fix_text(PoolExhausted, &ucx).contains("--listen"));
    assert!(fix_text(RequestTimeout, &ucx).contains("harakiri"));
}

#[test]
fn unreadable_log_is_an_error_not_an_empty_window() {
    let err = read_backend_log(
        Path::new("/nonexistent/why502/fpm.log"),
        0,
        TailLimits::default(),
    )
    .unwrap_err();
    assert!(err.is_not_found());
    let (reason, fix) =
        why502_backend::logs::unreadable_log(Path::new("/nonexistent/why502/fpm.log"), &err);
    assert!(reason.contains("does not exist"), "{reason}");
    assert!(fix.contains("journal"), "{fix}");
}

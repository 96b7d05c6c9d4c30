//! The binary search against a plain scan, on logs written here in nginx's own line forms.

use std::fmt::Write as _;
use std::path::Path;

use super::{is_worker_exit, worker_exits_in_span, ExitsInSpan};
use why502_host::civil::{local_hour_to_epoch, local_stamp};

fn t0() -> i64 {
    local_hour_to_epoch(2026, 11, 30, 8).expect("a local hour")
}

/// A busy log from `start` for `secs` seconds, a line every `step` seconds (several per
/// second when 0, as a busy site writes), with a worker exit at each of `exits` and a
/// multi-line FastCGI entry every so often.
fn write_log(path: &Path, start: i64, secs: i64, exits: &[i64], last_newline: bool) {
    let mut text = String::new();
    for i in 0..secs * 3 {
        let t = start + i / 3;
        let stamp = local_stamp(t).expect("a stamp");
        let _ = writeln!(
            text,
            "{stamp} [error] 812#812: *{i} connect() to unix:/run/php/other.sock failed (111: Connection refused) while connecting to upstream, client: 10.0.0.5, server: other.example, request: \"GET / HTTP/1.1\", upstream: \"fastcgi://unix:/run/php/other.sock:\", host: \"other.example\""
        );
        if i % 97 == 0 {
            let _ = writeln!(
                text,
                "{stamp} [error] 812#812: *{i} FastCGI sent in stderr: \"PHP message: PHP Fatal error:  oops\nStack trace:\n#0 {{main}}\n  thrown in /srv/x.php on line 3\" while reading response header from upstream"
            );
        }
        if i % 3 == 0 && exits.contains(&t) {
            let _ = writeln!(
                text,
                "{stamp} [alert] 700#700: worker process {} exited on signal 9",
                900 + i
            );
            let _ = writeln!(
                text,
                "{stamp} [notice] 700#700: start worker process {}",
                1900 + i
            );
        }
    }
    if !last_newline {
        text.pop();
    }
    std::fs::write(path, text).expect("write the log");
}

fn covered(r: ExitsInSpan) -> Vec<i64> {
    match r {
        ExitsInSpan::Covered(e) => e,
        ExitsInSpan::NotCovered(why) => panic!("expected covered: {why}"),
    }
}

#[test]
fn worker_exit_lines_are_the_masters_reaping_messages() {
    assert!(is_worker_exit("worker process 1234 exited on signal 9"));
    assert!(is_worker_exit("worker process 1234 exited with code 0"));
    assert!(is_worker_exit(
        "worker process 1234 exited with fatal code 2 and cannot be respawned"
    ));
    assert!(!is_worker_exit(
        "cache manager process 77 exited with code 0"
    ));
    assert!(!is_worker_exit("start worker process 1234"));
}

#[test]
fn the_search_finds_what_a_scan_of_every_line_finds() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = dir.path().join("error.log");
    let start = t0();
    let exits = [start + 600, start + 601, start + 5000, start + 7199];
    write_log(&log, start, 7200, &exits, false);
    for (from, until) in [
        (start + 595, start + 605),
        (start + 601, start + 601),
        (start + 4990, start + 5010),
        (start + 100, start + 200),
        (start + 7190, start + 7300),
        (start, start + 7200),
    ] {
        let want: Vec<i64> = exits
            .iter()
            .copied()
            .filter(|t| (from..=until).contains(t))
            .collect();
        let got = covered(worker_exits_in_span(&log, from, until).expect("read"));
        assert_eq!(got, want, "span {}..={}", from - start, until - start);
    }
}

#[test]
fn a_log_that_begins_after_the_span_says_nothing_unless_its_rotation_reaches_back() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = dir.path().join("error.log");
    let start = t0();
    write_log(&log, start + 3600, 600, &[], true);
    let span = (start + 3000, start + 3010);
    assert!(matches!(
        worker_exits_in_span(&log, span.0, span.1).expect("read"),
        ExitsInSpan::NotCovered(why) if why.contains("error.log.1")
    ));
    // The rotated file holds the span, and an exit just before the current file begins.
    let rotated = dir.path().join("error.log.1");
    write_log(&rotated, start, 3600, &[start + 3005, start + 3599], true);
    assert_eq!(
        covered(worker_exits_in_span(&log, span.0, span.1).expect("read")),
        vec![start + 3005]
    );
    // A span that starts in `.1` and runs on into the current file.
    assert_eq!(
        covered(worker_exits_in_span(&log, start + 3590, start + 3700).expect("read")),
        vec![start + 3599]
    );
    // Both begin after it.
    assert!(matches!(
        worker_exits_in_span(&log, start - 100, start - 90).expect("read"),
        ExitsInSpan::NotCovered(_)
    ));
}

#[test]
fn an_empty_current_file_reads_the_one_before_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = dir.path().join("error.log");
    std::fs::write(&log, "").expect("write");
    let start = t0();
    assert!(matches!(
        worker_exits_in_span(&log, start + 10, start + 20).expect("read"),
        ExitsInSpan::NotCovered(_)
    ));
    write_log(
        &dir.path().join("error.log.1"),
        start,
        60,
        &[start + 15],
        true,
    );
    assert_eq!(
        covered(worker_exits_in_span(&log, start + 10, start + 20).expect("read")),
        vec![start + 15]
    );
}

#[test]
fn a_span_after_the_last_line_is_covered_and_empty() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = dir.path().join("error.log");
    let start = t0();
    write_log(&log, start, 60, &[start + 59], false);
    assert_eq!(
        covered(worker_exits_in_span(&log, start + 100, start + 110).expect("read")),
        Vec::<i64>::new()
    );
    assert_eq!(
        covered(worker_exits_in_span(&log, start + 55, start + 110).expect("read")),
        vec![start + 59]
    );
}

//! php-fpm status pages captured from php-fpm 8.2 over FastCGI (see tests/fixtures/README.md).

mod common;

use why502_backend::phpfpm::{
    judge_fpm_status, parse_fpm_status, parse_fpm_status_json, parse_fpm_status_text, FpmStatus,
    StatusLevel,
};

#[test]
fn json_form_with_cgi_headers() {
    let st = parse_fpm_status_json(&common::fixture_text("status/json-idle.txt")).unwrap();
    assert_eq!(
        st,
        FpmStatus {
            pool: Some("cap".into()),
            process_manager: Some("static".into()),
            start_time: Some(1_795_269_771),
            start_since: Some(4),
            accepted_conn: Some(2),
            listen_queue: Some(0),
            max_listen_queue: Some(0),
            listen_queue_len: Some(0),
            idle_processes: Some(0),
            active_processes: Some(1),
            total_processes: Some(1),
            max_active_processes: Some(1),
            max_children_reached: Some(0),
            slow_requests: Some(0),
        }
    );
    // An idle one-child static pool: the answering worker is the one active; no risk.
    let j = judge_fpm_status(&st);
    assert_eq!(j.level, StatusLevel::Ok, "{:?}", j.findings);
}

#[test]
fn full_form_parses_the_pool_fields() {
    let st = parse_fpm_status(&common::fixture_text("status/json-full.txt")).unwrap();
    assert_eq!(st.pool.as_deref(), Some("cap"));
    assert_eq!(st.accepted_conn, Some(3));
}

#[test]
fn text_form_matches_json_form() {
    let st = parse_fpm_status_text(&common::fixture_text("status/text.txt")).unwrap();
    assert_eq!(st.pool.as_deref(), Some("cap"));
    assert_eq!(st.start_time, Some(1_795_269_771));
    assert_eq!(st.active_processes, Some(1));
    assert_eq!(st.slow_requests, Some(0));
    let dyn_text =
        parse_fpm_status(&common::fixture_text("status/text-dyn-max-children.txt")).unwrap();
    assert_eq!(dyn_text.process_manager.as_deref(), Some("dynamic"));
    assert_eq!(dyn_text.max_children_reached, Some(1));
}

#[test]
fn max_children_reached_is_a_risk() {
    let st = parse_fpm_status(&common::fixture_text("status/json-dyn-max-children.txt")).unwrap();
    assert_eq!(st.max_children_reached, Some(1));
    let j = judge_fpm_status(&st);
    assert_eq!(j.level, StatusLevel::Risk);
    assert!(
        j.findings[0].contains("max children reached 1 time(s)"),
        "{:?}",
        j.findings
    );
}

#[test]
fn listen_queue_now_is_exhaustion() {
    // A TCP pool's page with connections waiting (php-fpm measures the queue only for TCP
    // listeners on Linux; the numbers are written for this test on the captured page).
    let text = common::fixture_text("status/json-idle.txt")
        .replace("\"listen queue\":0", "\"listen queue\":7")
        .replace("\"listen queue len\":0", "\"listen queue len\":511");
    let st = parse_fpm_status(&text).unwrap();
    let j = judge_fpm_status(&st);
    assert_eq!(j.level, StatusLevel::Exhausted);
    assert!(
        j.findings[0].contains("7 connection(s) waiting"),
        "{:?}",
        j.findings
    );
}

#[test]
fn every_worker_active_in_one_snapshot_is_not_a_risk() {
    // Seen in the lab: a healthy two-worker pool answered "2 of 2 active" because the worker
    // that had just served the agent's direct request still counted as active.
    let st = FpmStatus {
        pool: Some("shop".into()),
        process_manager: Some("static".into()),
        active_processes: Some(4),
        total_processes: Some(4),
        idle_processes: Some(0),
        ..FpmStatus::default()
    };
    let j = judge_fpm_status(&st);
    assert_eq!(j.level, StatusLevel::Ok);
    assert!(j.findings.is_empty(), "{:?}", j.findings);
    // The same snapshot with a connection waiting is the pool running out.
    let st = FpmStatus {
        listen_queue: Some(1),
        ..st
    };
    assert_eq!(judge_fpm_status(&st).level, StatusLevel::Exhausted);
}

#[test]
fn not_a_status_page() {
    assert!(parse_fpm_status("<html>File not found.</html>").is_err());
    assert!(parse_fpm_status_json("{\"other\": 1}").is_err());
    assert!(parse_fpm_status_json("not json").is_err());
}

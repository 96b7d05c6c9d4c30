//! journalctl's JSON output for a unit (fixture written in the documented `-o json` format:
//! no journald runs on the lab host), and the unknowns when there is no journal.

mod common;

use why502_backend::journal::{
    classify_entries, classify_unit_message, journal_presence, parse_journal_json, JournalRead,
    UnitEvent,
};
use why502_backend::logs::BackendLogClass;

const SINCE: i64 = 1_795_269_000; // 2026-11-21T13:50:00Z

#[test]
fn parses_entries_bytes_and_bad_lines() {
    let (entries, bad) = parse_journal_json(&common::fixture_text("journal/gunicorn-unit.json"));
    assert_eq!(bad, 1);
    assert_eq!(entries.len(), 16);
    assert_eq!(entries[1].time, SINCE);
    assert_eq!(entries[1].identifier.as_deref(), Some("systemd"));
    assert_eq!(entries[3].pid, Some(1200));
    assert_eq!(entries[3].priority, Some(2));
    // MESSAGE as an array of byte values (not UTF-8).
    let bytes = entries.iter().find(|e| e.pid == Some(1203)).unwrap();
    assert_eq!(bytes.message, "caf\u{fffd}: a line that is not UTF-8");
}

#[test]
fn classifies_messages_and_systemds_verdicts_in_the_window() {
    let (entries, bad) = parse_journal_json(&common::fixture_text("journal/gunicorn-unit.json"));
    let JournalRead::Read {
        events,
        unit_events,
        entries: n,
        ..
    } = classify_entries("gunicorn.service", SINCE, entries, bad)
    else {
        panic!("read expected");
    };
    assert_eq!(n, 16);
    let classes: Vec<_> = events
        .iter()
        .map(|e| (e.class, e.message.as_str()))
        .collect();
    // The WORKER TIMEOUT an hour before the window is not counted.
    assert_eq!(
        classes,
        vec![
            (
                BackendLogClass::RequestTimeout,
                "[2026-11-21 13:55:00 +0000] [1200] [CRITICAL] WORKER TIMEOUT (pid:1201)"
            ),
            (BackendLogClass::AppError, "TimeoutError: database did not answer"),
            (
                BackendLogClass::WorkerKilled { signal: Some(9) },
                "[2026-11-21 13:56:40 +0000] [1200] [ERROR] Worker (pid:1202) was sent SIGKILL! Perhaps out of memory?"
            ),
        ]
    );
    let ue: Vec<_> = unit_events.iter().map(|u| u.event.clone()).collect();
    assert_eq!(
        ue,
        vec![
            UnitEvent::Started,
            UnitEvent::OomKill,
            UnitEvent::MainProcessExited {
                code: "killed".into(),
                status: "9/KILL".into()
            },
            UnitEvent::Failed {
                result: "oom-kill".into()
            },
            UnitEvent::Restarting { counter: Some(5) },
            UnitEvent::StartLimitHit,
        ]
    );
}

#[test]
fn systemd_messages() {
    assert_eq!(
        classify_unit_message(
            "php8.2-fpm.service: Main process exited, code=exited, status=78/CONFIG"
        ),
        Some(UnitEvent::MainProcessExited {
            code: "exited".into(),
            status: "78/CONFIG".into()
        })
    );
    assert_eq!(
        classify_unit_message("Stopped php8.2-fpm.service - The PHP 8.2 FastCGI Process Manager."),
        Some(UnitEvent::Stopped)
    );
    assert_eq!(classify_unit_message("Reloading."), None);
}

#[test]
fn no_journal_files_is_unknown_not_empty() {
    let dir = tempfile::tempdir().unwrap();
    let empty = dir.path().join("journal");
    std::fs::create_dir(&empty).unwrap();
    match journal_presence(&[empty.clone(), dir.path().join("absent")]) {
        Some(JournalRead::Unknown { reason, .. }) => {
            assert!(reason.contains("no journal files"), "{reason}")
        }
        other => panic!("unknown expected, got {other:?}"),
    }
    match journal_presence(&[dir.path().join("absent")]) {
        Some(JournalRead::Unknown { reason, .. }) => {
            assert!(reason.contains("no journal on this host"))
        }
        other => panic!("unknown expected, got {other:?}"),
    }
    let machine = empty.join("5e2a0c3d9b8e4f7a8c1d2e3f4a5b6c7d");
    std::fs::create_dir(&machine).unwrap();
    std::fs::write(machine.join("system.journal"), b"").unwrap();
    assert_eq!(journal_presence(&[empty]), None);
}

/// On this host (no journald) the real call must say unknown, never an empty "read".
#[tokio::test]
async fn real_call_without_journal_files_is_unknown() {
    let has_journal = journal_presence(
        &why502_backend::journal::JOURNAL_DIRS
            .iter()
            .map(std::path::PathBuf::from)
            .collect::<Vec<_>>(),
    )
    .is_none();
    let r = why502_backend::journal_for_unit(
        "why502-test-nonexistent.service",
        SINCE,
        std::time::Duration::from_secs(10),
    )
    .await;
    match r {
        JournalRead::Unknown { .. } => {
            assert!(!has_journal || common::which("journalctl").is_none())
        }
        JournalRead::Read { events, .. } => {
            assert!(has_journal, "read without journal files");
            assert!(events.is_empty());
        }
    }
}

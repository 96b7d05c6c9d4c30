//! `journalctl -k -o json`: the kernel's messages as journald stored them.
//!
//! One JSON object per line (journalctl(1), `-o json`). Field values are strings; a value
//! that is not valid UTF-8 is an array of byte values, a field present more than once is an
//! array of values, and a value over 4096 bytes is `null` unless `--all`.
//! `__REALTIME_TIMESTAMP` is microseconds since the epoch, as a string.

use std::time::{Duration, SystemTime};

use serde_json::Value;

use crate::oom::OomCollector;
use crate::SourceRead;

/// Lines newest first, as `journalctl -r` prints them, so a capped output keeps the newest.
pub(crate) fn parse_reverse_json(text: &str, since: SystemTime, max_entries: usize) -> SourceRead {
    let mut entries: Vec<(SystemTime, String)> = Vec::new();
    let mut lines = 0usize;
    for line in text.lines() {
        lines += 1;
        // A capped output may end in half a line: it fails to parse and is skipped.
        let Ok(Value::Object(obj)) = serde_json::from_str::<Value>(line) else {
            continue;
        };
        if obj
            .get("_TRANSPORT")
            .and_then(Value::as_str)
            .is_some_and(|t| t != "kernel")
        {
            continue;
        }
        let Some(time) = obj
            .get("__REALTIME_TIMESTAMP")
            .and_then(Value::as_str)
            .and_then(|s| s.parse::<u64>().ok())
            .map(|us| SystemTime::UNIX_EPOCH + Duration::from_micros(us))
        else {
            continue;
        };
        if let Some(message) = obj.get("MESSAGE").and_then(message_text) {
            entries.push((time, message));
        }
    }
    entries.reverse();
    let mut collector = OomCollector::new(since);
    for (time, message) in &entries {
        collector.push(*time, message);
    }
    let lsm_lines = collector.take_lsm_lines();
    let (kills, dropped) = collector.finish();
    let hit_cap = lines >= max_entries;
    SourceRead {
        kills,
        kills_dropped: dropped,
        lsm_lines,
        records_read: entries.len(),
        covers_from: entries.first().map(|(t, _)| *t),
        // journalctl honours --since itself; only the entry cap can cut the window short.
        reaches_back: !hit_cap,
        stopped: hit_cap.then(|| {
            format!("journalctl output capped at {max_entries} entries; older kernel messages were not read")
        }),
    }
}

fn message_text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Array(items) if items.iter().all(Value::is_u64) => {
            let bytes: Vec<u8> = items
                .iter()
                .filter_map(Value::as_u64)
                .filter_map(|b| u8::try_from(b).ok())
                .collect();
            Some(String::from_utf8_lossy(&bytes).into_owned())
        }
        // The field appeared more than once: the first value is the message.
        Value::Array(items) => items.first().and_then(message_text),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Written in the documented `journalctl -o json` form (no journal exists on the build
    // machine): kernel entries carry _TRANSPORT=kernel, SYSLOG_IDENTIFIER=kernel, the kernel's
    // stamp in _SOURCE_MONOTONIC_TIMESTAMP and journald's receipt time in
    // __REALTIME_TIMESTAMP. Newest first, as `-r` prints them; the message texts are the real
    // ones captured from this machine's /dev/kmsg. The last line is cut off mid-way, as a
    // capped output would be.
    const JSON: &str = r#"{"__CURSOR":"s=1;i=3","__REALTIME_TIMESTAMP":"1795269686448700","__MONOTONIC_TIMESTAMP":"2602448700","_BOOT_ID":"7d3b","_TRANSPORT":"kernel","PRIORITY":"3","SYSLOG_FACILITY":"0","SYSLOG_IDENTIFIER":"kernel","_SOURCE_MONOTONIC_TIMESTAMP":"2602448621","_HOSTNAME":"vm","MESSAGE":"Memory cgroup out of memory: Killed process 22149 (python3) total-vm:221384kB, anon-rss:27264kB, file-rss:6484kB, shmem-rss:0kB, UID:0 pgtables:108kB oom_score_adj:0"}
{"__CURSOR":"s=1;i=2","__REALTIME_TIMESTAMP":"1795269686448690","__MONOTONIC_TIMESTAMP":"2602448690","_BOOT_ID":"7d3b","_TRANSPORT":"kernel","PRIORITY":"6","SYSLOG_FACILITY":"0","SYSLOG_IDENTIFIER":"kernel","_SOURCE_MONOTONIC_TIMESTAMP":"2602448597","_HOSTNAME":"vm","MESSAGE":"oom-kill:constraint=CONSTRAINT_MEMCG,nodemask=(null),cpuset=/,mems_allowed=0,oom_memcg=/why502-manual-20362,task_memcg=/why502-manual-20362,task=python3,pid=22149,uid=0"}
{"__CURSOR":"s=1;i=1","__REALTIME_TIMESTAMP":"1795269686448600","__MONOTONIC_TIMESTAMP":"2602448600","_BOOT_ID":"7d3b","_TRANSPORT":"kernel","PRIORITY":"6","SYSLOG_FACILITY":"0","SYSLOG_IDENTIFIER":"kernel","_SOURCE_MONOTONIC_TIMESTAMP":"2602448501","_HOSTNAME":"vm","MESSAGE":[77,101,109,111,114,121,32,99,103,114,111,117,112,32,115,116,97,116,115]}
{"__CURSOR":"s=1;i=0","__REALTIME_TIMESTAMP":"179526968"#;

    #[test]
    fn parses_reverse_json_and_joins_in_time_order() {
        let since = SystemTime::UNIX_EPOCH + Duration::from_secs(1_795_269_000);
        let read = parse_reverse_json(JSON, since, 1000);
        assert_eq!(read.records_read, 3);
        assert_eq!(read.kills.len(), 1);
        let k = &read.kills[0];
        assert_eq!(k.pid, 22149);
        assert!(k.cgroup_oom);
        assert_eq!(k.oom_memcg.as_deref(), Some("/why502-manual-20362"));
        assert!(k.summary_line.is_some());
        assert_eq!(
            k.time,
            SystemTime::UNIX_EPOCH + Duration::from_micros(1_795_269_686_448_700)
        );
        assert!(read.reaches_back);
    }

    #[test]
    fn byte_array_messages_are_decoded() {
        let v: Value = serde_json::from_str("[104,105]").expect("json");
        assert_eq!(message_text(&v).as_deref(), Some("hi"));
        assert_eq!(message_text(&Value::Null), None);
    }

    #[test]
    fn entry_cap_means_the_window_is_not_covered() {
        let since = SystemTime::UNIX_EPOCH;
        let read = parse_reverse_json(JSON, since, 4);
        assert!(!read.reaches_back);
        assert!(read.stopped.is_some());
    }
}

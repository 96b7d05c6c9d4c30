//! `dmesg --facility=kern --time-format=iso`: one line per record,
//! `YYYY-MM-DDTHH:MM:SS,uuuuuu+HH:MM message` (util-linux). dmesg dates records from boot
//! time itself, the same way kmsg.rs does.

use std::time::{Duration, SystemTime};
use why502_host::civil::days_from_civil;

use crate::oom::OomCollector;
use crate::SourceRead;

pub(crate) fn parse_iso(text: &str, since: SystemTime) -> SourceRead {
    let mut collector = OomCollector::new(since);
    let mut records = 0usize;
    let mut first: Option<(SystemTime, bool)> = None;
    for line in text.lines() {
        let Some((stamp, message)) = line.split_once(' ') else {
            continue;
        };
        let Some(time) = parse_iso_time(stamp) else {
            continue;
        };
        records += 1;
        if first.is_none() {
            // The ring buffer still holds boot when its first record is the kernel banner.
            first = Some((time, message.starts_with("Linux version ")));
        }
        collector.push(time, message);
    }
    let lsm_lines = collector.take_lsm_lines();
    let (kills, dropped) = collector.finish();
    SourceRead {
        kills,
        kills_dropped: dropped,
        lsm_lines,
        records_read: records,
        covers_from: first.map(|(t, _)| t),
        reaches_back: match first {
            None => true,
            Some((t, from_boot)) => from_boot || t <= since,
        },
        stopped: None,
    }
}

/// `2026-11-21T14:01:26,448621+00:00` (also accepts `.` before the fraction and `Z`).
pub(crate) fn parse_iso_time(s: &str) -> Option<SystemTime> {
    let b = s.as_bytes();
    if b.len() < 20
        || b[4] != b'-'
        || b[7] != b'-'
        || b[10] != b'T'
        || b[13] != b':'
        || b[16] != b':'
    {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<i64> { s.get(r)?.parse().ok() };
    let (year, month, day) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (hour, min, sec) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) || hour > 23 || min > 59 || sec > 60 {
        return None;
    }
    let mut rest = &s[19..];
    let mut micros: u64 = 0;
    if let Some(frac) = rest.strip_prefix(',').or_else(|| rest.strip_prefix('.')) {
        let digits = frac.bytes().take_while(u8::is_ascii_digit).count();
        let kept = &frac[..digits.min(6)];
        micros = kept.parse::<u64>().ok()? * 10u64.pow(6 - kept.len() as u32);
        rest = &frac[digits..];
    }
    let offset_secs: i64 = if rest == "Z" {
        0
    } else {
        let sign = match rest.as_bytes().first()? {
            b'+' => 1,
            b'-' => -1,
            _ => return None,
        };
        let (h, m) = rest[1..].split_once(':')?;
        sign * (h.parse::<i64>().ok()? * 3600 + m.parse::<i64>().ok()? * 60)
    };
    let days = days_from_civil(year, month, day);
    let local = days * 86_400 + hour * 3600 + min * 60 + sec;
    let utc = u64::try_from(local - offset_secs).ok()?;
    Some(SystemTime::UNIX_EPOCH + Duration::from_secs(utc) + Duration::from_micros(micros))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_iso_stamps() {
        let t = parse_iso_time("2026-11-21T14:01:26,448621+00:00").expect("time");
        // date -d 2026-11-21T14:01:26Z +%s
        assert_eq!(
            t,
            SystemTime::UNIX_EPOCH
                + Duration::from_secs(1_795_269_686)
                + Duration::from_micros(448_621)
        );
        let shifted = parse_iso_time("2026-11-21T16:01:26,448621+02:00").expect("time");
        assert_eq!(shifted, t);
        assert_eq!(
            parse_iso_time("1970-01-01T00:00:00Z"),
            Some(SystemTime::UNIX_EPOCH)
        );
        assert_eq!(parse_iso_time("[ 2602.448621]"), None);
        assert_eq!(parse_iso_time("2026-13-21T14:01:26,0+00:00"), None);
    }

    #[test]
    fn real_dmesg_iso_output() {
        // Captured on this machine: `dmesg --facility=kern --time-format=iso | tail -60`
        // after a real memory-cgroup OOM kill.
        let text = include_str!("../testdata/dmesg-iso-memcg-oom.txt");
        let read = parse_iso(text, SystemTime::UNIX_EPOCH);
        assert_eq!(read.records_read, 60);
        assert_eq!(read.kills.len(), 1);
        let k = &read.kills[0];
        assert_eq!(k.pid, 22149);
        assert_eq!(k.process, "python3");
        assert!(k.cgroup_oom);
        assert_eq!(k.task_memcg.as_deref(), Some("/why502-manual-20362"));
        assert_eq!(
            k.time,
            parse_iso_time("2026-11-21T14:01:26,448621+00:00").expect("t")
        );
        // The capture starts mid-dump, not at boot: a window before it is not covered.
        assert!(!read.reaches_back);
    }
}

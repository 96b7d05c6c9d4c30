//! The time at the start of a syslog line, for lines that carry no audit stamp of their own
//! (every non-audit line of kern.log and syslog: the reader needs their time to know where the
//! window starts).
//!
//! Two prefixes: RFC 3339, as Debian 12's rsyslog writes (`2026-11-21T03:00:00.123456+00:00
//! host kernel: ...`), and the traditional one without a year, in local time (`Nov 21 03:00:00
//! host kernel: ...`).

use std::collections::HashMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use why502_host::civil::days_from_civil;

/// Parses syslog prefixes; remembers local-time conversions per hour so `mktime` stays off the
/// per-line path.
#[derive(Debug)]
pub struct SyslogClock {
    now: SystemTime,
    hours: HashMap<(u32, u32, u32), Option<i64>>,
}

impl SyslogClock {
    /// `now` decides the year of year-less stamps: the latest year that does not put the stamp
    /// more than a day into the future.
    pub fn new(now: SystemTime) -> Self {
        SyslogClock {
            now,
            hours: HashMap::new(),
        }
    }

    pub fn parse(&mut self, line: &str) -> Option<SystemTime> {
        let b = line.as_bytes();
        if b.len() >= 19 && b[4] == b'-' && b[10] == b'T' {
            return parse_rfc3339(line);
        }
        self.parse_traditional(line)
    }

    fn parse_traditional(&mut self, line: &str) -> Option<SystemTime> {
        // `Nov 21 03:00:00` / `Nov  1 03:00:00` (day padded with a space).
        let stamp = line.get(..15)?;
        let month = MONTHS.iter().position(|m| stamp.starts_with(m))? as u32 + 1;
        let day: u32 = stamp.get(4..6)?.trim_start().parse().ok()?;
        let b = stamp.as_bytes();
        if b[3] != b' ' || b[6] != b' ' || b[9] != b':' || b[12] != b':' {
            return None;
        }
        let hour: u32 = stamp.get(7..9)?.parse().ok()?;
        let min: i64 = stamp.get(10..12)?.parse().ok()?;
        let sec: i64 = stamp.get(13..15)?.parse().ok()?;
        if !(1..=31).contains(&day) || hour > 23 || min > 59 || sec > 60 {
            return None;
        }
        let now = epoch_secs(self.now);
        let base = *self
            .hours
            .entry((month, day, hour))
            .or_insert_with(|| hour_start_guessing_year(now, month, day, hour));
        to_system_time(base? + min * 60 + sec)
    }
}

const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

fn hour_start_guessing_year(now: i64, month: u32, day: u32, hour: u32) -> Option<i64> {
    let year = civil_year(now);
    let this_year = local_to_epoch(year, month, day, hour)?;
    // A December line read in January belongs to last year.
    if this_year > now + 86_400 {
        local_to_epoch(year - 1, month, day, hour)
    } else {
        Some(this_year)
    }
}

/// `2026-11-21T03:00:00.123456+00:00` / `...Z` / no fraction.
pub fn parse_rfc3339(line: &str) -> Option<SystemTime> {
    let b = line.as_bytes();
    let num = |r: std::ops::Range<usize>| -> Option<i64> {
        let s = line.get(r)?;
        s.bytes()
            .all(|c| c.is_ascii_digit())
            .then(|| s.parse().ok())?
    };
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || b[10] != b'T' || b[13] != b':' {
        return None;
    }
    if b[16] != b':' {
        return None;
    }
    let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (h, mi, s) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || s > 60 {
        return None;
    }
    let mut i = 19;
    let mut nanos: u64 = 0;
    if b.get(i) == Some(&b'.') {
        i += 1;
        let start = i;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
        let frac = &line[start..i];
        let digits: String = frac.chars().chain(std::iter::repeat('0')).take(9).collect();
        nanos = digits.parse().ok()?;
    }
    let offset = match b.get(i)? {
        b'Z' | b'z' => 0,
        sign @ (b'+' | b'-') => {
            let oh = num(i + 1..i + 3)?;
            let om = num(i + 4..i + 6)?;
            let off = oh * 3600 + om * 60;
            if *sign == b'+' {
                off
            } else {
                -off
            }
        }
        _ => return None,
    };
    let secs = days_from_civil(y, mo, d) * 86_400 + h * 3600 + mi * 60 + s - offset;
    to_system_time(secs).map(|t| t + Duration::from_nanos(nanos))
}

fn to_system_time(secs: i64) -> Option<SystemTime> {
    u64::try_from(secs)
        .ok()
        .map(|s| UNIX_EPOCH + Duration::from_secs(s))
}

pub(crate) fn epoch_secs(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// The UTC year of an epoch time; a stamp near New Year is settled by the day's margin above.
fn civil_year(secs: i64) -> i64 {
    let days = secs.div_euclid(86_400);
    // Inverse of days_from_civil, year only.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    yoe + era * 400 + i64::from(m <= 2)
}

fn local_to_epoch(year: i64, month: u32, day: u32, hour: u32) -> Option<i64> {
    why502_host::civil::local_hour_to_epoch(year, month.into(), day.into(), hour.into())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(secs)
    }

    #[test]
    fn rfc3339_as_debian_rsyslog_writes_it() {
        // 2026-11-21T03:00:00Z = 1795230000.
        let t = parse_rfc3339("2026-11-21T03:00:00.123456+00:00 web-1 kernel: [ 1.0] x").unwrap();
        assert_eq!(t, at(1_795_230_000) + Duration::from_micros(123_456));
        let t = parse_rfc3339("2026-11-21T04:30:00+01:30 web-1 kernel: x").unwrap();
        assert_eq!(t, at(1_795_230_000));
        assert_eq!(
            parse_rfc3339("2026-11-21T03:00:00Z x"),
            Some(at(1_795_230_000))
        );
        assert_eq!(parse_rfc3339("2026-13-21T03:00:00Z x"), None);
        assert_eq!(parse_rfc3339("Nov 21 03:00:00 web-1"), None);
    }

    #[test]
    fn traditional_prefix_is_local_time_in_the_latest_fitting_year() {
        let now = local_to_epoch(2026, 11, 21, 12).unwrap();
        let mut clock = SyslogClock::new(at(now as u64));
        let t = clock
            .parse("Nov 21 03:04:05 web-1 kernel: [ 1.0] x")
            .unwrap();
        assert_eq!(t, at(local_to_epoch(2026, 11, 21, 3).unwrap() as u64 + 245));
        let t = clock.parse("Nov  1 00:00:00 web-1 kernel: x").unwrap();
        assert_eq!(t, at(local_to_epoch(2026, 11, 1, 0).unwrap() as u64));
        // December seen in late November cannot be this year's: it is last year's.
        let t = clock.parse("Dec 24 10:00:00 web-1 kernel: x").unwrap();
        assert_eq!(t, at(local_to_epoch(2025, 12, 24, 10).unwrap() as u64));
        assert_eq!(clock.parse("Foo 21 03:04:05 web-1"), None);
        assert_eq!(clock.parse("Nov 21 3:04:05 web-1 x"), None);
    }

    #[test]
    fn civil_year_round_trips() {
        for (y, m, d) in [(1970, 1, 1), (2024, 2, 29), (2026, 12, 31), (2027, 1, 1)] {
            let secs = days_from_civil(y, m, d) * 86_400 + 3600;
            assert_eq!(civil_year(secs), y, "{y}-{m}-{d}");
        }
    }
}

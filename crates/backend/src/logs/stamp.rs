//! The timestamps backends put at the start of their log lines, to seconds since the epoch.
//!
//! | writer | form | zone |
//! | --- | --- | --- |
//! | php-fpm's own log | `[21-Nov-2026 14:02:51] ` | local |
//! | PHP's error_log | `[21-Nov-2026 14:03:06 UTC] ` | named (`UTC` exact; any other name read as local) |
//! | gunicorn | `[2026-11-21 14:03:53 +0000] ` | offset |
//! | uwsgi | `Sat Nov 21 14:04:10 2026 - ` | local |
//! | uwsgi request log | `[pid: 1|app: 0|req: 1/1] ... [Sat Nov 21 14:04:40 2026] GET` | local |
//! | python logging | `2026-11-21 14:03:53,123 ` | local |

use std::collections::HashMap;

const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

/// Which writer's stamp a line carried.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StampForm {
    PhpFpm,
    PhpErrorLog,
    Gunicorn,
    Uwsgi,
    UwsgiRequest,
    Iso,
}

/// A line's stamp: its time and the text after it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stamped<'a> {
    pub time: i64,
    pub form: StampForm,
    pub rest: &'a str,
}

/// Converts local wall-clock stamps with the host's zone (mktime: exact across DST), cached per
/// hour so a busy log costs one conversion an hour.
#[derive(Debug, Default)]
pub struct LocalClock {
    hours: HashMap<(i64, u32, u32, i64), Option<i64>>,
}

impl LocalClock {
    fn local(&mut self, y: i64, mo: u32, d: u32, secs_of_day: i64) -> Option<i64> {
        let h = secs_of_day / 3600;
        let base = *self
            .hours
            .entry((y, mo, d, h))
            .or_insert_with(|| local_hour_to_epoch(y, mo, d, h));
        Some(base? + secs_of_day % 3600)
    }
}

/// Parse the stamp at the start of `line` in any of the forms above.
pub fn parse_stamp<'a>(line: &'a str, clock: &mut LocalClock) -> Option<Stamped<'a>> {
    if let Some(rest) = line.strip_prefix('[') {
        let close = rest.find(']')?;
        let inner = &rest[..close];
        let after = rest[close + 1..]
            .strip_prefix(' ')
            .unwrap_or(&rest[close + 1..]);
        if inner.starts_with("pid: ") {
            return uwsgi_request(line, clock);
        }
        return bracketed(inner, after, clock);
    }
    if let Some(s) = uwsgi_ctime(line, clock) {
        return Some(s);
    }
    iso_local(line, clock)
}

/// `21-Nov-2026 14:02:51` / `21-Nov-2026 14:03:06 UTC` / `2026-11-21 14:03:53 +0000`.
fn bracketed<'a>(inner: &str, rest: &'a str, clock: &mut LocalClock) -> Option<Stamped<'a>> {
    let mut parts = inner.split(' ');
    let date = parts.next()?;
    let time = parts.next()?;
    let zone = parts.next();
    let secs = hms(time)?;
    if date.len() == 11 && date.as_bytes().get(2) == Some(&b'-') {
        // 21-Nov-2026
        let day: u32 = date.get(0..2)?.parse().ok()?;
        let month = month_number(date.get(3..6)?)?;
        let year: i64 = date.get(7..11)?.parse().ok()?;
        let (time, form) = match zone {
            None => (clock.local(year, month, day, secs)?, StampForm::PhpFpm),
            Some("UTC") | Some("GMT") | Some("Z") => (
                days_from_civil(year, month, day) * 86_400 + secs,
                StampForm::PhpErrorLog,
            ),
            // A zone name (date.timezone): without a zone database, read as the host's zone,
            // which PHP's date.timezone normally is.
            Some(_) => (clock.local(year, month, day, secs)?, StampForm::PhpErrorLog),
        };
        return Some(Stamped { time, form, rest });
    }
    let (year, month, day) = iso_date(date)?;
    let time = match zone {
        Some(z) => days_from_civil(year, month, day) * 86_400 + secs - parse_offset(z)?,
        None => clock.local(year, month, day, secs)?,
    };
    Some(Stamped {
        time,
        form: StampForm::Gunicorn,
        rest,
    })
}

/// `Sat Nov 21 14:04:10 2026 - message`.
fn uwsgi_ctime<'a>(line: &'a str, clock: &mut LocalClock) -> Option<Stamped<'a>> {
    let stamp = line.get(..24)?;
    let time = ctime(stamp, clock)?;
    let rest = line.get(24..)?.strip_prefix(" - ")?;
    Some(Stamped {
        time,
        form: StampForm::Uwsgi,
        rest,
    })
}

/// The request log: the stamp sits in the second bracket.
fn uwsgi_request<'a>(line: &'a str, clock: &mut LocalClock) -> Option<Stamped<'a>> {
    let open = line.find("} [")? + 3;
    let stamp = line.get(open..open + 24)?;
    let time = ctime(stamp, clock)?;
    Some(Stamped {
        time,
        form: StampForm::UwsgiRequest,
        rest: line,
    })
}

/// `Sat Nov 21 14:04:10 2026` (ctime, day padded with a space: `Sat Nov  1 ...`).
fn ctime(s: &str, clock: &mut LocalClock) -> Option<i64> {
    let b = s.as_bytes();
    if b.len() != 24 || b[3] != b' ' || b[7] != b' ' || b[19] != b' ' {
        return None;
    }
    let month = month_number(s.get(4..7)?)?;
    let day: u32 = s.get(8..10)?.trim().parse().ok()?;
    let secs = hms(s.get(11..19)?)?;
    let year: i64 = s.get(20..24)?.parse().ok()?;
    clock.local(year, month, day, secs)
}

/// `2026-11-21 14:03:53,123 message` / `2026-11-21T14:03:53 message` (python logging).
fn iso_local<'a>(line: &'a str, clock: &mut LocalClock) -> Option<Stamped<'a>> {
    let date = line.get(..10)?;
    let sep = line.as_bytes().get(10)?;
    if *sep != b' ' && *sep != b'T' {
        return None;
    }
    let (y, mo, d) = iso_date(date)?;
    let secs = hms(line.get(11..19)?)?;
    let mut rest = &line[19..];
    // Fractional seconds.
    if let Some(r) = rest.strip_prefix(',').or_else(|| rest.strip_prefix('.')) {
        rest = r.trim_start_matches(|c: char| c.is_ascii_digit());
    }
    Some(Stamped {
        time: clock.local(y, mo, d, secs)?,
        form: StampForm::Iso,
        rest: rest.trim_start(),
    })
}

fn iso_date(s: &str) -> Option<(i64, u32, u32)> {
    let b = s.as_bytes();
    if b.len() != 10 || b[4] != b'-' || b[7] != b'-' {
        return None;
    }
    let y = s.get(0..4)?.parse().ok()?;
    let mo: u32 = s.get(5..7)?.parse().ok()?;
    let d: u32 = s.get(8..10)?.parse().ok()?;
    ((1..=12).contains(&mo) && (1..=31).contains(&d)).then_some((y, mo, d))
}

pub(crate) fn month_number(m: &str) -> Option<u32> {
    MONTHS.iter().position(|x| *x == m).map(|i| i as u32 + 1)
}

/// `HH:MM:SS` → seconds of the day.
pub(crate) fn hms(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    if b.len() != 8 || b[2] != b':' || b[5] != b':' {
        return None;
    }
    let h: i64 = s.get(0..2)?.parse().ok()?;
    let m: i64 = s.get(3..5)?.parse().ok()?;
    let sec: i64 = s.get(6..8)?.parse().ok()?;
    (h < 24 && m < 60 && sec <= 60).then_some(h * 3600 + m * 60 + sec)
}

/// `+0100` / `-0530` → seconds east of UTC.
pub(crate) fn parse_offset(z: &str) -> Option<i64> {
    let (sign, digits) = match z.as_bytes().first()? {
        b'+' => (1, &z[1..]),
        b'-' => (-1, &z[1..]),
        _ => return None,
    };
    let digits = digits.replace(':', "");
    if digits.len() != 4 {
        return None;
    }
    let h: i64 = digits[..2].parse().ok()?;
    let m: i64 = digits[2..].parse().ok()?;
    Some(sign * (h * 3600 + m * 60))
}

/// The host's civil-date helpers, with this module's unsigned month and day.
pub(crate) fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    why502_host::civil::days_from_civil(y, m.into(), d.into())
}

fn local_hour_to_epoch(y: i64, mo: u32, d: u32, h: i64) -> Option<i64> {
    why502_host::civil::local_hour_to_epoch(y, mo.into(), d.into(), h)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utc_and_offset_forms_are_exact() {
        let mut c = LocalClock::default();
        let s = parse_stamp("[21-Nov-2026 14:03:06 UTC] PHP Fatal error:  x", &mut c).unwrap();
        assert_eq!(s.time, 1_795_269_786);
        assert_eq!(s.form, StampForm::PhpErrorLog);
        assert_eq!(s.rest, "PHP Fatal error:  x");
        let g = parse_stamp(
            "[2026-11-21 15:03:06 +0100] [28579] [CRITICAL] WORKER TIMEOUT (pid:28604)",
            &mut c,
        )
        .unwrap();
        assert_eq!(g.time, 1_795_269_786);
        assert_eq!(g.rest, "[28579] [CRITICAL] WORKER TIMEOUT (pid:28604)");
    }

    #[test]
    fn local_forms_use_the_host_zone() {
        let mut c = LocalClock::default();
        let utc = 1_795_269_786; // 2026-11-21 14:03:06 UTC
                                 // What mktime makes of 2026-11-21 14:03:06 in the host's zone.
        let offset = LocalClock::default()
            .local(2026, 11, 21, 14 * 3600 + 3 * 60 + 6)
            .unwrap()
            - utc;
        let fpm = parse_stamp("[21-Nov-2026 14:03:06] WARNING: [pool www] x", &mut c).unwrap();
        assert_eq!(fpm.time, utc + offset);
        assert_eq!(fpm.form, StampForm::PhpFpm);
        let uw = parse_stamp(
            "Sat Nov 21 14:03:06 2026 - *** uWSGI listen queue of socket \"127.0.0.1:18933\" (fd: 3) full !!! (3/2) ***",
            &mut c,
        )
        .unwrap();
        assert_eq!(uw.time, utc + offset);
        assert!(uw.rest.starts_with("*** uWSGI listen queue"));
        let req = parse_stamp("[pid: 30923|app: 0|req: 1/1] 127.0.0.1 () {24 vars in 254 bytes} [Sat Nov 21 14:03:06 2026] GET /boom => generated 0 bytes in 0 msecs (HTTP/1.1 500) 0 headers in 0 bytes (0 switches on core 0)", &mut c).unwrap();
        assert_eq!(req.time, utc + offset);
        let py = parse_stamp("2026-11-21 14:03:06,123 ERROR boom", &mut c).unwrap();
        assert_eq!(py.time, utc + offset);
        assert_eq!(py.rest, "ERROR boom");
    }

    #[test]
    fn undated_lines() {
        let mut c = LocalClock::default();
        for l in [
            "Traceback (most recent call last):",
            "  File \"app.py\", line 7, in app",
            "DAMN ! worker 1 (pid: 30170) died, killed by signal 9 :( trying respawn ...",
            "Stack trace:",
            "[0x00007face3c13070] sleep() /tmp/fpmcap/sleep.php:1",
            "",
        ] {
            assert!(parse_stamp(l, &mut c).is_none(), "{l}");
        }
    }

    #[test]
    fn civil_days() {
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(days_from_civil(2000, 3, 1), 11_017);
        assert_eq!(days_from_civil(2026, 11, 21) * 86_400, 1_795_219_200);
    }
}

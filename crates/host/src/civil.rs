//! Calendar dates to epoch seconds, shared by every log and certificate parser: UTC by
//! arithmetic, local time through the host's own zone rules (mktime).

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
pub fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The epoch second at which local hour `h` of the date starts, in the host's time zone
/// (daylight saving included). Logs that stamp local time cache this per hour.
pub fn local_hour_to_epoch(y: i64, mo: i64, d: i64, h: i64) -> Option<i64> {
    if !(1970..=9999).contains(&y)
        || !(1..=12).contains(&mo)
        || !(1..=31).contains(&d)
        || !(0..=23).contains(&h)
    {
        return None;
    }
    // SAFETY: a zeroed tm is a valid value; mktime only reads and normalises it.
    let mut tm: libc::tm = unsafe { std::mem::zeroed() };
    tm.tm_year = (y - 1900) as i32;
    tm.tm_mon = (mo - 1) as i32;
    tm.tm_mday = d as i32;
    tm.tm_hour = h as i32;
    tm.tm_isdst = -1;
    // SAFETY: tm is a valid, initialised struct owned by this frame.
    let t = unsafe { libc::mktime(&mut tm) };
    (t != -1).then_some(t as i64)
}

/// `t` (seconds since the epoch) as a local `YYYY/MM/DD HH:MM:SS`, the stamp nginx writes.
pub fn local_stamp(t: i64) -> Option<String> {
    let t = libc::time_t::try_from(t).ok()?;
    // SAFETY: a zeroed tm is a valid value for localtime_r to fill.
    let mut tm: libc::tm = unsafe { std::mem::zeroed() };
    // SAFETY: both pointers are to valid values owned by this frame.
    if unsafe { libc::localtime_r(&t, &mut tm) }.is_null() {
        return None;
    }
    Some(format!(
        "{:04}/{:02}/{:02} {:02}:{:02}:{:02}",
        i64::from(tm.tm_year) + 1900,
        tm.tm_mon + 1,
        tm.tm_mday,
        tm.tm_hour,
        tm.tm_min,
        tm.tm_sec
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn civil_days() {
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(days_from_civil(2000, 3, 1), 11_017);
        assert_eq!(days_from_civil(2026, 11, 21) * 86_400, 1_795_219_200);
        assert_eq!(days_from_civil(1969, 12, 31), -1);
    }

    #[test]
    fn local_hours_are_an_hour_apart_and_bounded() {
        let a = local_hour_to_epoch(2026, 11, 21, 3).unwrap();
        let b = local_hour_to_epoch(2026, 11, 21, 4).unwrap();
        assert_eq!(b - a, 3600);
        assert_eq!(local_hour_to_epoch(2026, 13, 1, 0), None);
        assert_eq!(local_hour_to_epoch(2026, 1, 1, 24), None);
    }

    #[test]
    fn a_local_stamp_reads_back_as_its_time() {
        let t = local_hour_to_epoch(2026, 11, 21, 3).unwrap() + 12 * 60 + 9;
        assert_eq!(local_stamp(t).as_deref(), Some("2026/11/21 03:12:09"));
    }
}

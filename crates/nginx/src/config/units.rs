//! nginx's value syntaxes: sizes (`4k`), times (`1m30s`) and flags (`on`).

use std::time::Duration;

/// Parses an nginx size (`ngx_parse_size`): digits with an optional `k`/`K`, `m`/`M` or
/// `g`/`G` suffix (powers of 1024). `None` for anything nginx would reject.
pub fn parse_size(value: &str) -> Option<u64> {
    let (digits, scale) = match value.as_bytes().last()? {
        b'k' | b'K' => (&value[..value.len() - 1], 1u64 << 10),
        b'm' | b'M' => (&value[..value.len() - 1], 1 << 20),
        b'g' | b'G' => (&value[..value.len() - 1], 1 << 30),
        _ => (value, 1),
    };
    parse_digits(digits)?.checked_mul(scale)
}

/// Parses an nginx time interval (`ngx_parse_time`): one or more `<number><unit>` parts
/// in decreasing unit order, optionally separated by spaces, with units `y` (365 days),
/// `M` (30 days), `w`, `d`, `h`, `m`, `s` and `ms`. A number without a unit means seconds
/// and must come last: `60`, `60s`, `500ms`, `1m30s`, `1h 30m`.
pub fn parse_time(value: &str) -> Option<Duration> {
    let bytes = value.as_bytes();
    let mut pos = 0;
    let mut total_ms: u64 = 0;
    // Units must strictly decrease; a bare number ranks below every unit.
    let mut previous_rank = u8::MAX;
    let mut parts = 0;
    loop {
        while bytes.get(pos) == Some(&b' ') {
            pos += 1;
        }
        if pos == bytes.len() {
            break;
        }
        let digits_len = bytes[pos..]
            .iter()
            .take_while(|b| b.is_ascii_digit())
            .count();
        let number = parse_digits(&value[pos..pos + digits_len])?;
        pos += digits_len;
        let unit = TimeUnit::at(&bytes[pos..])?;
        pos += unit.len;
        if unit.rank >= previous_rank {
            return None;
        }
        previous_rank = unit.rank;
        total_ms = total_ms.checked_add(number.checked_mul(unit.millis)?)?;
        parts += 1;
    }
    (parts > 0).then(|| Duration::from_millis(total_ms))
}

/// An nginx flag (`on` / `off`, case-insensitive like `ngx_conf_set_flag_slot`).
pub(crate) fn parse_flag(value: &str) -> Option<bool> {
    if value.eq_ignore_ascii_case("on") {
        Some(true)
    } else if value.eq_ignore_ascii_case("off") {
        Some(false)
    } else {
        None
    }
}

/// A non-empty run of ASCII digits (no sign, no spaces), like nginx's `ngx_atoi`.
fn parse_digits(digits: &str) -> Option<u64> {
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

struct TimeUnit {
    /// Bytes of unit text consumed.
    len: usize,
    rank: u8,
    millis: u64,
}

impl TimeUnit {
    const SECOND: u64 = 1000;
    const DAY: u64 = 24 * 60 * 60 * Self::SECOND;

    /// The unit at the start of `rest` (right after a number).
    fn at(rest: &[u8]) -> Option<TimeUnit> {
        let (len, rank, millis) = match rest {
            [b'm', b's', ..] => (2, 1, 1),
            [b'y', ..] => (1, 8, 365 * Self::DAY),
            [b'M', ..] => (1, 7, 30 * Self::DAY),
            [b'w', ..] => (1, 6, 7 * Self::DAY),
            [b'd', ..] => (1, 5, Self::DAY),
            [b'h', ..] => (1, 4, 60 * 60 * Self::SECOND),
            [b'm', ..] => (1, 3, 60 * Self::SECOND),
            [b's', ..] => (1, 2, Self::SECOND),
            [] | [b' ', ..] => (0, 0, Self::SECOND),
            _ => return None,
        };
        Some(TimeUnit { len, rank, millis })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        let cases: &[(&str, Option<u64>)] = &[
            ("16384", Some(16384)),
            ("4k", Some(4096)),
            ("4K", Some(4096)),
            ("32k", Some(32768)),
            ("1m", Some(1 << 20)),
            ("1M", Some(1 << 20)),
            ("2g", Some(2 << 30)),
            ("0", Some(0)),
            ("", None),
            ("k", None),
            ("4kb", None),
            ("-4k", None),
            ("+4", None),
            ("4 k", None),
            ("1.5m", None),
            ("99999999999999999999", None),
            ("99999999999999999g", None),
            ("4é", None),
        ];
        for (input, want) in cases {
            assert_eq!(parse_size(input), *want, "parse_size({input:?})");
        }
    }

    #[test]
    fn times() {
        let s = Duration::from_secs;
        let ms = Duration::from_millis;
        let cases: &[(&str, Option<Duration>)] = &[
            ("60", Some(s(60))),
            ("60s", Some(s(60))),
            ("5s", Some(s(5))),
            ("1m", Some(s(60))),
            ("500ms", Some(ms(500))),
            ("1h", Some(s(3600))),
            ("1d", Some(s(86400))),
            ("1w", Some(s(7 * 86400))),
            ("1M", Some(s(30 * 86400))),
            ("1y", Some(s(365 * 86400))),
            ("1m30s", Some(s(90))),
            ("1h 30m", Some(s(5400))),
            ("1s500ms", Some(ms(1500))),
            ("1m 30", Some(s(90))),
            ("0", Some(s(0))),
            ("", None),
            (" ", None),
            ("s", None),
            ("1x", None),
            ("30s1m", None),
            ("1s1s", None),
            // nginx adds a trailing bare number as seconds whatever came before
            ("500ms1", Some(ms(1500))),
            ("-5s", None),
            ("1.5s", None),
            ("99999999999999999999y", None),
            ("9999999999999999y", None),
        ];
        for (input, want) in cases {
            assert_eq!(parse_time(input), *want, "parse_time({input:?})");
        }
    }

    #[test]
    fn flags() {
        assert_eq!(parse_flag("on"), Some(true));
        assert_eq!(parse_flag("ON"), Some(true));
        assert_eq!(parse_flag("off"), Some(false));
        assert_eq!(parse_flag("yes"), None);
    }
}

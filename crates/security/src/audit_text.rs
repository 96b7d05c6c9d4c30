//! The parts every kernel audit record shares, whichever log it landed in: the
//! `audit(EPOCH.MILLIS:SERIAL)` stamp and the `key=value` fields.
//!
//! The kernel formats untrusted strings (paths, comm, profile names) with
//! `audit_log_untrustedstring`: quoted when plain, bare upper-case hex when they hold a space,
//! a quote, a control character or a byte above 0x7e (`comm=4267494F...`).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::Serialize;

/// `audit(1763694000.123:456)`: when the kernel emitted the record, and its serial, which
/// together identify one event in every log that carries it (`ausearch -a 456`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub struct AuditStamp {
    pub secs: u64,
    pub millis: u32,
    pub serial: u64,
}

impl AuditStamp {
    pub fn time(&self) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(self.secs) + Duration::from_millis(u64::from(self.millis))
    }
}

/// The first `audit(SECS.MILLIS:SERIAL)` in `text`.
pub fn find_stamp(text: &str) -> Option<AuditStamp> {
    let mut from = 0;
    while let Some(at) = text[from..].find("audit(") {
        let start = from + at + "audit(".len();
        if let Some(stamp) = parse_stamp(&text[start..]) {
            return Some(stamp);
        }
        from = start;
    }
    None
}

fn parse_stamp(rest: &str) -> Option<AuditStamp> {
    let end = rest.find(')')?;
    let (time, serial) = rest[..end].split_once(':')?;
    let (secs, frac) = time.split_once('.')?;
    if frac.is_empty() || frac.len() > 9 || !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    // The kernel prints exactly three digits; take the first three of whatever is there.
    let mut millis: u32 = 0;
    for i in 0..3 {
        let digit = frac.as_bytes().get(i).map_or(0, |b| u32::from(b - b'0'));
        millis = millis * 10 + digit;
    }
    Some(AuditStamp {
        secs: secs.parse().ok()?,
        millis,
        serial: serial.parse().ok()?,
    })
}

/// Fields whose values the kernel logs as untrusted strings, so a bare value is hex.
const UNTRUSTED: &[&str] = &[
    "comm",
    "path",
    "name",
    "exe",
    "profile",
    "peer",
    "peer_addr",
    "addr",
    "target",
    "srcname",
];

/// The value of the first `key=` field of `text` (quotes removed, hex decoded for untrusted
/// strings). A key only counts at a word start, so `requested_mask=` is not `mask=`.
#[cfg(test)]
pub fn field(text: &str, key: &str) -> Option<String> {
    fields(text).find(|(k, _)| *k == key).map(|(_, v)| v)
}

/// Every `key=value` word of `text`, in order; words without `=` (`avc:`, `{`, `denied`) are
/// passed over.
pub fn fields(text: &str) -> impl Iterator<Item = (&str, String)> {
    FieldIter { rest: text }
}

struct FieldIter<'a> {
    rest: &'a str,
}

impl<'a> Iterator for FieldIter<'a> {
    type Item = (&'a str, String);

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            let rest = self.rest.trim_start_matches([' ', '\t', '\u{1d}']);
            if rest.is_empty() {
                return None;
            }
            let word_end = rest.find([' ', '\t', '\u{1d}']).unwrap_or(rest.len());
            let eq = rest[..word_end].find('=');
            let Some(eq) = eq.filter(|eq| *eq > 0 && !rest[..*eq].contains('"')) else {
                self.rest = &rest[word_end..];
                continue;
            };
            let key = &rest[..eq];
            let after = &rest[eq + 1..];
            let (value, consumed) = if let Some(quoted) = after.strip_prefix('"') {
                match quoted.find('"') {
                    Some(close) => (quoted[..close].to_string(), eq + 1 + close + 2),
                    // A line cut at its length cap: keep what there is.
                    None => (quoted.to_string(), rest.len()),
                }
            } else {
                let end = after.find([' ', '\t', '\u{1d}']).unwrap_or(after.len());
                let bare = &after[..end];
                let value = if UNTRUSTED.contains(&key) {
                    decode_hex(bare).unwrap_or_else(|| bare.to_string())
                } else {
                    bare.to_string()
                };
                (value, eq + 1 + end)
            };
            self.rest = &rest[consumed.min(rest.len())..];
            return Some((key, value));
        }
    }
}

/// `2F72756E2F782E736F636B` → `/run/x.sock`. `None` when the text is not an even run of hex
/// digits (then it was a plain bare value such as `none` or `?`).
fn decode_hex(s: &str) -> Option<String> {
    if s.is_empty() || s.len() % 2 != 0 || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let bytes: Option<Vec<u8>> = (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).ok())
        .collect();
    Some(String::from_utf8_lossy(&bytes?).into_owned())
}

/// The type of an SELinux context: `system_u:system_r:httpd_t:s0` → `httpd_t`.
pub fn context_type(context: &str) -> Option<&str> {
    context.split(':').nth(2).filter(|t| !t.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_stamp_wherever_the_record_sits() {
        let s = find_stamp("type=AVC msg=audit(1763694000.123:456): avc:  denied").unwrap();
        assert_eq!((s.secs, s.millis, s.serial), (1763694000, 123, 456));
        let s =
            find_stamp("[12345.678] audit: type=1400 audit(1763694000.007:45): apparmor=").unwrap();
        assert_eq!((s.secs, s.millis, s.serial), (1763694000, 7, 45));
        assert_eq!(
            s.time(),
            UNIX_EPOCH + Duration::from_millis(1_763_694_000_007)
        );
        assert!(find_stamp("audit(garbage) no stamp").is_none());
    }

    #[test]
    fn fields_handle_quotes_bare_values_and_hex() {
        // comm in hex, as the kernel logs a comm holding a space (from a real snap denial).
        let line = r#"apparmor="DENIED" operation="connect" profile="snap.firefox.firefox" name="/run/cups/cups.sock" pid=2213 comm=4267494F5468727E506F6F6C202331 requested_mask="wr" denied_mask="wr" fsuid=1000 ouid=0"#;
        assert_eq!(field(line, "apparmor").as_deref(), Some("DENIED"));
        assert_eq!(field(line, "name").as_deref(), Some("/run/cups/cups.sock"));
        assert_eq!(field(line, "pid").as_deref(), Some("2213"));
        assert_eq!(field(line, "comm").as_deref(), Some("BgIOThr~Pool #1"));
        // `mask=` must not match inside `requested_mask=`.
        assert_eq!(field(line, "mask"), None);
        assert_eq!(field(line, "denied_mask").as_deref(), Some("wr"));
        // A bare value that is not hex stays as written.
        assert_eq!(
            field("addr=none peer_addr=\"@x\"", "addr").as_deref(),
            Some("none")
        );
    }

    #[test]
    fn avc_words_without_equals_are_skipped() {
        let line = "avc:  denied  { connectto } for  pid=1234 comm=\"nginx\" path=\"/run/php/php8.2-fpm.sock\" scontext=system_u:system_r:httpd_t:s0 tclass=unix_stream_socket permissive=0";
        let got: Vec<(&str, String)> = fields(line).collect();
        let keys: Vec<&str> = got.iter().map(|(k, _)| *k).collect();
        assert_eq!(
            keys,
            ["pid", "comm", "path", "scontext", "tclass", "permissive"]
        );
        assert_eq!(
            context_type("system_u:system_r:httpd_t:s0"),
            Some("httpd_t")
        );
        assert_eq!(
            context_type("system_u:system_r:httpd_t:s0-s0:c0.c1023"),
            Some("httpd_t")
        );
    }
}

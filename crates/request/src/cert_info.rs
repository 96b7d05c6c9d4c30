//! What a certificate says, read from its DER by hand: names, validity dates, and the pieces
//! needed to check one signature.
//!
//! Why not only webpki: nginx judges certificates with OpenSSL, which (a) matches the name
//! against the subject CN when the certificate has no DNS SAN, (b) never matches an IP SAN
//! against `proxy_ssl_name` (X509_check_host; verified on nginx 1.22: a certificate with
//! `IP:127.0.0.1` "does not match "127.0.0.1""), and (c) accepts v1 certificates, which
//! `openssl x509 -req` makes when no extension file is given. webpki does none of these; this
//! reader lets the verifier follow OpenSSL instead.

use std::net::IpAddr;
use why502_host::civil::days_from_civil;

use serde::Serialize;

/// The presented leaf certificate, as far as a 502 diagnosis needs it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LeafCertificate {
    pub subject_cn: Option<String>,
    /// subjectAltName dNSName entries.
    pub dns_names: Vec<String>,
    /// subjectAltName iPAddress entries (nginx does not match these; shown for the admin).
    pub ip_addresses: Vec<IpAddr>,
    /// Seconds since the Unix epoch.
    pub not_before: i64,
    pub not_after: i64,
    /// Issuer and subject are the same name: self-signed (or at least self-issued).
    pub self_issued: bool,
}

impl LeafCertificate {
    /// The names OpenSSL's X509_check_host compares with: the DNS SANs, or the CN without them.
    pub fn host_names(&self) -> Vec<String> {
        if !self.dns_names.is_empty() {
            self.dns_names.clone()
        } else {
            self.subject_cn.iter().cloned().collect()
        }
    }

    /// Everything presented, labelled, for a "presented:" line.
    pub fn presented(&self) -> Vec<String> {
        let mut out = self.dns_names.clone();
        out.extend(self.ip_addresses.iter().map(|ip| format!("IP:{ip}")));
        if self.dns_names.is_empty() {
            if let Some(cn) = &self.subject_cn {
                out.push(format!("CN={cn}"));
            }
        }
        out
    }

    /// Does `name` match as OpenSSL's X509_check_host (flags 0, as nginx calls it) would?
    pub fn matches_host(&self, name: &str) -> bool {
        let name = name.trim_end_matches('.');
        self.host_names()
            .iter()
            .any(|pattern| host_matches(pattern.trim_end_matches('.'), name))
    }
}

/// The certificate's parts that a signature check needs, borrowed from its DER.
pub(crate) struct CertParts<'a> {
    pub tbs: &'a [u8],
    /// Contents of the outer signatureAlgorithm SEQUENCE.
    pub signature_alg: &'a [u8],
    /// The signature BIT STRING without its unused-bits byte.
    pub signature: &'a [u8],
    pub issuer: &'a [u8],
    pub subject: &'a [u8],
    /// Contents of the SPKI's AlgorithmIdentifier SEQUENCE.
    pub spki_alg: &'a [u8],
    /// The subjectPublicKey BIT STRING without its unused-bits byte.
    pub public_key: &'a [u8],
    pub leaf: LeafCertificate,
}

const SEQUENCE: u8 = 0x30;
const SET: u8 = 0x31;
const OID: u8 = 0x06;
const BIT_STRING: u8 = 0x03;
const OCTET_STRING: u8 = 0x04;
const UTC_TIME: u8 = 0x17;
const GENERALIZED_TIME: u8 = 0x18;
const OID_CN: &[u8] = &[0x55, 0x04, 0x03];
const OID_SAN: &[u8] = &[0x55, 0x1d, 0x11];

/// One DER element: tag, contents, and the whole encoding.
struct Tlv<'a> {
    tag: u8,
    contents: &'a [u8],
    whole: &'a [u8],
}

/// Reads DER elements one after another from a slice.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn next(&mut self) -> Option<Tlv<'a>> {
        let b = self.0;
        let tag = *b.first()?;
        let first = *b.get(1)? as usize;
        let (len, head) = if first < 0x80 {
            (first, 2)
        } else {
            let n = first & 0x7f;
            if n == 0 || n > 4 {
                return None;
            }
            let mut len = 0usize;
            for i in 0..n {
                len = (len << 8) | *b.get(2 + i)? as usize;
            }
            (len, 2 + n)
        };
        let end = head.checked_add(len)?;
        let contents = b.get(head..end)?;
        let whole = &b[..end];
        self.0 = &b[end..];
        Some(Tlv {
            tag,
            contents,
            whole,
        })
    }

    fn expect(&mut self, tag: u8) -> Option<Tlv<'a>> {
        self.next().filter(|t| t.tag == tag)
    }

    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// Parse an X.509 certificate (v1 or v3). None when it is not one.
pub(crate) fn parse(der: &[u8]) -> Option<CertParts<'_>> {
    let cert = Reader(der).expect(SEQUENCE)?;
    let mut c = Reader(cert.contents);
    let tbs = c.expect(SEQUENCE)?;
    let signature_alg = c.expect(SEQUENCE)?.contents;
    let signature = c.expect(BIT_STRING)?.contents.get(1..)?;

    let mut t = Reader(tbs.contents);
    let mut el = t.next()?;
    if el.tag == 0xa0 {
        el = t.next()?; // the explicit version; v1 certificates leave it out
    }
    let _serial = el;
    let _sig_alg = t.expect(SEQUENCE)?;
    let issuer = t.expect(SEQUENCE)?.whole;
    let validity = t.expect(SEQUENCE)?;
    let subject_tlv = t.expect(SEQUENCE)?;
    let spki = t.expect(SEQUENCE)?;
    let mut s = Reader(spki.contents);
    let spki_alg = s.expect(SEQUENCE)?.contents;
    let public_key = s.expect(BIT_STRING)?.contents.get(1..)?;

    let mut v = Reader(validity.contents);
    let not_before = der_time(&v.next()?)?;
    let not_after = der_time(&v.next()?)?;

    let mut dns_names = Vec::new();
    let mut ip_addresses = Vec::new();
    while !t.is_empty() {
        let el = t.next()?;
        if el.tag == 0xa3 {
            read_san(el.contents, &mut dns_names, &mut ip_addresses)?;
        }
    }
    Some(CertParts {
        tbs: tbs.whole,
        signature_alg,
        signature,
        issuer,
        subject: subject_tlv.whole,
        spki_alg,
        public_key,
        leaf: LeafCertificate {
            subject_cn: common_name(subject_tlv.contents),
            dns_names,
            ip_addresses,
            not_before,
            not_after,
            self_issued: issuer == subject_tlv.whole,
        },
    })
}

fn read_san(extensions: &[u8], dns: &mut Vec<String>, ips: &mut Vec<IpAddr>) -> Option<()> {
    let list = Reader(extensions).expect(SEQUENCE)?;
    let mut r = Reader(list.contents);
    while !r.is_empty() {
        let ext = r.expect(SEQUENCE)?;
        let mut e = Reader(ext.contents);
        if e.expect(OID)?.contents != OID_SAN {
            continue;
        }
        let mut value = e.next()?;
        if value.tag == 0x01 {
            value = e.next()?; // the `critical` flag
        }
        if value.tag != OCTET_STRING {
            return None;
        }
        let names = Reader(value.contents).expect(SEQUENCE)?;
        let mut n = Reader(names.contents);
        while !n.is_empty() {
            let name = n.next()?;
            match name.tag {
                0x82 => dns.push(String::from_utf8_lossy(name.contents).into_owned()),
                0x87 => match name.contents.len() {
                    4 => ips.push(IpAddr::from(<[u8; 4]>::try_from(name.contents).ok()?)),
                    16 => ips.push(IpAddr::from(<[u8; 16]>::try_from(name.contents).ok()?)),
                    _ => {}
                },
                _ => {}
            }
        }
    }
    Some(())
}

/// The last CN in the subject, as OpenSSL takes the most specific one.
fn common_name(name: &[u8]) -> Option<String> {
    let mut found = None;
    let mut rdns = Reader(name);
    while let Some(rdn) = rdns.next().filter(|t| t.tag == SET) {
        let mut atvs = Reader(rdn.contents);
        while let Some(atv) = atvs.next().filter(|t| t.tag == SEQUENCE) {
            let mut a = Reader(atv.contents);
            if a.expect(OID).map(|o| o.contents) == Some(OID_CN) {
                if let Some(v) = a.next() {
                    found = Some(String::from_utf8_lossy(v.contents).into_owned());
                }
            }
        }
    }
    found
}

fn der_time(t: &Tlv<'_>) -> Option<i64> {
    let s = std::str::from_utf8(t.contents).ok()?;
    let s = s.strip_suffix('Z')?;
    let (year, rest) = match t.tag {
        UTC_TIME => {
            let yy: i64 = s.get(..2)?.parse().ok()?;
            (if yy >= 50 { 1900 + yy } else { 2000 + yy }, s.get(2..)?)
        }
        GENERALIZED_TIME => (s.get(..4)?.parse().ok()?, s.get(4..)?),
        _ => return None,
    };
    if rest.len() != 10 || !rest.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let field = |i: usize| rest[i..i + 2].parse::<i64>().ok();
    let (month, day, h, m, sec) = (field(0)?, field(2)?, field(4)?, field(6)?, field(8)?);
    Some(days_from_civil(year, month, day) * 86_400 + h * 3600 + m * 60 + sec)
}

/// X509_check_host's matching with nginx's flags (0): case-insensitive, a wildcard only in
/// the leftmost label, possibly partial (`w*.example.com`), never matching a dot, and not in
/// a pattern with fewer than three labels (`*.com`).
fn host_matches(pattern: &str, name: &str) -> bool {
    let (pattern, name) = (pattern.to_ascii_lowercase(), name.to_ascii_lowercase());
    if !pattern.contains('*') {
        return pattern == name;
    }
    let Some((first, rest)) = pattern.split_once('.') else {
        return false;
    };
    if rest.contains('*') || rest.split('.').count() < 2 || first.matches('*').count() != 1 {
        return false;
    }
    let Some((name_first, name_rest)) = name.split_once('.') else {
        return false;
    };
    if name_rest != rest {
        return false;
    }
    let (pre, suf) = first.split_once('*').unwrap_or((first, ""));
    // xn-- labels are never wildcard-matched partially; a full `*` is fine.
    if (!pre.is_empty() || !suf.is_empty()) && name_first.starts_with("xn--") {
        return false;
    }
    name_first.len() >= pre.len() + suf.len()
        && name_first.starts_with(pre)
        && name_first.ends_with(suf)
        && !name_first.is_empty()
}

/// Seconds since the epoch as RFC 3339 (UTC), for summaries.
pub fn format_unix(secs: i64) -> String {
    let t = if secs >= 0 {
        std::time::UNIX_EPOCH + std::time::Duration::from_secs(secs as u64)
    } else {
        std::time::UNIX_EPOCH - std::time::Duration::from_secs(secs.unsigned_abs())
    };
    humantime::format_rfc3339_seconds(t).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_convert_to_unix_seconds() {
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(days_from_civil(2000, 3, 1), 11_017);
        let utc = Tlv {
            tag: UTC_TIME,
            contents: b"200201000000Z",
            whole: &[],
        };
        assert_eq!(der_time(&utc), Some(1_580_515_200));
        let gen = Tlv {
            tag: GENERALIZED_TIME,
            contents: b"20500101000000Z",
            whole: &[],
        };
        assert_eq!(der_time(&gen), Some(2_524_608_000));
        assert_eq!(format_unix(1_580_515_200), "2020-02-01T00:00:00Z");
    }

    #[test]
    fn wildcards_follow_openssl() {
        assert!(host_matches("*.example.com", "www.EXAMPLE.com"));
        assert!(!host_matches("*.example.com", "a.b.example.com"));
        assert!(!host_matches("*.example.com", "example.com"));
        assert!(!host_matches("*.com", "example.com"));
        assert!(host_matches("w*.example.com", "www.example.com"));
        assert!(!host_matches("w*.example.com", "api.example.com"));
        assert!(host_matches("backend.test", "Backend.Test"));
        assert!(!host_matches("backend.test", "other.test"));
    }

    #[test]
    fn cn_counts_only_without_dns_sans() {
        let mut leaf = LeafCertificate {
            subject_cn: Some("cnonly.test".into()),
            dns_names: vec![],
            ip_addresses: vec!["127.0.0.1".parse().unwrap()],
            not_before: 0,
            not_after: 0,
            self_issued: false,
        };
        assert!(leaf.matches_host("cnonly.test"));
        // nginx 1.22: an IP SAN never matches proxy_ssl_name "127.0.0.1".
        assert!(!leaf.matches_host("127.0.0.1"));
        leaf.dns_names.push("api.test".into());
        assert!(!leaf.matches_host("cnonly.test"));
        assert!(leaf.matches_host("api.test"));
    }

    #[test]
    fn truncated_der_is_refused() {
        assert!(parse(&[0x30, 0x82, 0x01]).is_none());
        assert!(parse(b"not a certificate").is_none());
    }
}

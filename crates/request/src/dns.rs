//! A minimal DNS client that resolves as nginx's `resolver` directive does, for `*_pass` targets
//! with variables (`set $b backend.internal; proxy_pass http://$b:8080;`), which nginx resolves
//! at request time through the resolver's servers, not through the system resolver.
//!
//! As nginx (src/core/ngx_resolver.c): A and, unless `ipv6=off`, AAAA queries over UDP, each
//! with a random id; answers with another id or question are ignored (nginx logs "wrong ident"
//! and keeps waiting); a truncated answer (TC) is asked again over TCP (nginx >= 1.13.1); a
//! CNAME without the address in the same answer is resolved in turn. Outcomes and nginx's
//! error-log wording, verified on nginx 1.22.1 with a hand-built DNS server:
//! - NXDOMAIN: `x could not be resolved (3: Host not found)`
//! - NOERROR with an empty answer section (for A and AAAA alike): also `(3: Host not found)`
//! - SERVFAIL: `(2: Server failure)`; REFUSED: `(5: Operation refused)`
//! - NOERROR with answers but no A/CNAME: `no A or CNAME types in DNS response`, then after
//!   `resolver_timeout`: `(110: Operation timed out)`; silence: `(110: Operation timed out)`.
//!
//! Every one of these gives the client a 502.

use std::hash::{BuildHasher, Hasher};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::{Duration, Instant};

use serde::Serialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};

const TYPE_A: u16 = 1;
const TYPE_CNAME: u16 = 5;
const TYPE_AAAA: u16 = 28;
const CLASS_IN: u16 = 1;
/// nginx asks for a CNAME's target again at most NGX_RESOLVER_MAX_RECURSION (50) times; a
/// handful is plenty for a diagnosis.
const MAX_CNAME_HOPS: usize = 8;
/// A classic DNS message over UDP; nginx's buffer is larger (4096) but servers answer
/// queries without EDNS in at most 512 bytes, setting TC beyond.
const UDP_MAX: usize = 512;
/// Cap for an answer over TCP.
const TCP_MAX: usize = 16 * 1024;

/// Why a name did not resolve through the `resolver` servers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, thiserror::Error)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum DnsFailure {
    /// RCODE 3.
    #[error("the name does not exist (NXDOMAIN)")]
    NxDomain,
    /// Any other error RCODE: 1 FORMERR, 2 SERVFAIL, 4 NOTIMP, 5 REFUSED...
    #[error("the DNS server answered {} (rcode {code})", rcode_name(*code))]
    Rcode { code: u8 },
    /// NOERROR, but no address. `other_records`: the answer held records of other types
    /// (nginx then waits until its resolver_timeout); otherwise it was empty.
    #[error("the DNS server has no A{} record for the name", if *ipv6 { "/AAAA" } else { "" })]
    NoAnswer { other_records: bool, ipv6: bool },
    /// No valid answer in time. `ignored`: answers dropped for a wrong id or question.
    #[error("no answer from the DNS server within {waited_ms} ms{}", ignored_note(*ignored))]
    Timeout { waited_ms: u64, ignored: usize },
    /// A CNAME chain longer than why502 follows, or a loop.
    #[error("the CNAME chain is too long or loops")]
    CnameLoop,
    #[error("{0}")]
    Io(String),
}

fn ignored_note(n: usize) -> String {
    if n == 0 {
        String::new()
    } else {
        format!(" ({n} answer(s) ignored: wrong id or question)")
    }
}

fn rcode_name(code: u8) -> &'static str {
    match code {
        1 => "FORMERR",
        2 => "SERVFAIL",
        3 => "NXDOMAIN",
        4 => "NOTIMP",
        5 => "REFUSED",
        _ => "an error",
    }
}

impl DnsFailure {
    /// The line nginx writes to its error log for this failure (verified on 1.22.1).
    pub fn nginx_log(&self, name: &str) -> String {
        let code = match self {
            DnsFailure::NxDomain
            | DnsFailure::NoAnswer {
                other_records: false,
                ..
            } => "3: Host not found".to_string(),
            DnsFailure::Rcode { code } => {
                let text = match code {
                    1 => "Format error",
                    2 => "Server failure",
                    3 => "Host not found",
                    4 => "Unimplemented",
                    5 => "Operation refused",
                    _ => "Unknown error",
                };
                format!("{code}: {text}")
            }
            DnsFailure::NoAnswer {
                other_records: true,
                ..
            }
            | DnsFailure::Timeout { .. }
            | DnsFailure::Io(_) => "110: Operation timed out".to_string(),
            // nginx gives up on a CNAME loop as NXDOMAIN.
            DnsFailure::CnameLoop => "3: Host not found".to_string(),
        };
        format!("{name} could not be resolved ({code})")
    }
}

/// Resolve `name` through the `resolver` servers as nginx would, within `timeout` overall.
/// Servers are asked in turn, each with an equal share of what is left of the time, until one
/// gives a definite answer (any RCODE); only silence or a socket error moves to the next.
pub async fn resolve_via(
    servers: &[SocketAddr],
    name: &str,
    ipv6: bool,
    timeout: Duration,
) -> Result<Vec<IpAddr>, DnsFailure> {
    if servers.is_empty() {
        return Err(DnsFailure::Io("no resolver server given".into()));
    }
    let deadline = Instant::now() + timeout;
    let mut current = name.trim_end_matches('.').to_string();
    let mut visited = vec![current.to_ascii_lowercase()];
    for _ in 0..MAX_CNAME_HOPS {
        let a = ask_servers(servers, &current, TYPE_A, deadline);
        let outcome = if ipv6 {
            let aaaa = ask_servers(servers, &current, TYPE_AAAA, deadline);
            let (a, aaaa) = tokio::join!(a, aaaa);
            combine(a?, aaaa?, ipv6)?
        } else {
            combine(a.await?, Outcome::Empty { other: false }, ipv6)?
        };
        match outcome {
            Next::Done(addrs) => return Ok(addrs),
            Next::Follow(target) => {
                let key = target.to_ascii_lowercase();
                if visited.contains(&key) {
                    return Err(DnsFailure::CnameLoop);
                }
                visited.push(key);
                current = target;
            }
        }
    }
    Err(DnsFailure::CnameLoop)
}

/// What one answer says.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Outcome {
    Addrs(Vec<IpAddr>),
    /// The chain ends in a CNAME whose target has no address in this answer.
    Cname(String),
    Empty {
        other: bool,
    },
    Rcode(u8),
}

enum Next {
    Done(Vec<IpAddr>),
    Follow(String),
}

/// A and AAAA together, as nginx combines them: any address wins; else the A answer's error.
fn combine(a: Outcome, aaaa: Outcome, ipv6: bool) -> Result<Next, DnsFailure> {
    let mut addrs = Vec::new();
    for o in [&a, &aaaa] {
        if let Outcome::Addrs(v) = o {
            addrs.extend(v.iter().copied());
        }
    }
    if !addrs.is_empty() {
        return Ok(Next::Done(addrs));
    }
    for o in [&a, &aaaa] {
        if let Outcome::Cname(t) = o {
            return Ok(Next::Follow(t.clone()));
        }
    }
    for o in [&a, &aaaa] {
        match o {
            Outcome::Rcode(3) => return Err(DnsFailure::NxDomain),
            Outcome::Rcode(code) => return Err(DnsFailure::Rcode { code: *code }),
            _ => {}
        }
    }
    let other = matches!(a, Outcome::Empty { other: true })
        || matches!(aaaa, Outcome::Empty { other: true });
    Err(DnsFailure::NoAnswer {
        other_records: other,
        ipv6,
    })
}

async fn ask_servers(
    servers: &[SocketAddr],
    name: &str,
    qtype: u16,
    deadline: Instant,
) -> Result<Outcome, DnsFailure> {
    let start = Instant::now();
    let mut ignored = 0;
    let mut last_io = None;
    for (i, server) in servers.iter().enumerate() {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        let share = left / (servers.len() - i) as u32;
        match ask_one(*server, name, qtype, Instant::now() + share).await {
            Ok(o) => return Ok(o),
            Err(AskError::Silent { ignored: n }) => ignored += n,
            Err(AskError::Io(e)) => last_io = Some(format!("resolver {server}: {e}")),
        }
    }
    match last_io {
        Some(e) if ignored == 0 => Err(DnsFailure::Io(e)),
        _ => Err(DnsFailure::Timeout {
            waited_ms: start.elapsed().as_millis() as u64,
            ignored,
        }),
    }
}

enum AskError {
    Silent { ignored: usize },
    Io(String),
}

async fn ask_one(
    server: SocketAddr,
    name: &str,
    qtype: u16,
    deadline: Instant,
) -> Result<Outcome, AskError> {
    let id = random_id();
    let query = build_query(id, name, qtype).map_err(AskError::Io)?;
    let local: SocketAddr = if server.is_ipv4() {
        (Ipv4Addr::UNSPECIFIED, 0).into()
    } else {
        (Ipv6Addr::UNSPECIFIED, 0).into()
    };
    let io = |e: std::io::Error| AskError::Io(e.to_string());
    let sock = UdpSocket::bind(local).await.map_err(io)?;
    // connect(): the kernel drops datagrams from anyone else, and a closed port shows as
    // ECONNREFUSED (nginx: "recv() failed (111: Connection refused) while resolving").
    sock.connect(server).await.map_err(io)?;
    sock.send(&query).await.map_err(io)?;
    let mut ignored = 0;
    let mut buf = [0u8; UDP_MAX];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let n = match tokio::time::timeout(left, sock.recv(&mut buf)).await {
            Err(_) => return Err(AskError::Silent { ignored }),
            Ok(Err(e)) => return Err(io(e)),
            Ok(Ok(n)) => n,
        };
        match parse_response(&buf[..n], id, name, qtype) {
            Some(Parsed::Truncated) => {
                return ask_tcp(server, &query, id, name, qtype, deadline).await
            }
            Some(Parsed::Answer(o)) => return Ok(o),
            None => ignored += 1,
        }
    }
}

async fn ask_tcp(
    server: SocketAddr,
    query: &[u8],
    id: u16,
    name: &str,
    qtype: u16,
    deadline: Instant,
) -> Result<Outcome, AskError> {
    let exchange = async {
        let mut s = TcpStream::connect(server).await?;
        let mut framed = (query.len() as u16).to_be_bytes().to_vec();
        framed.extend_from_slice(query);
        s.write_all(&framed).await?;
        let len = s.read_u16().await? as usize;
        let mut msg = vec![0u8; len.min(TCP_MAX)];
        s.read_exact(&mut msg).await?;
        Ok::<_, std::io::Error>(msg)
    };
    let left = deadline.saturating_duration_since(Instant::now());
    let msg = match tokio::time::timeout(left, exchange).await {
        Err(_) => return Err(AskError::Silent { ignored: 0 }),
        Ok(Err(e)) => {
            return Err(AskError::Io(format!(
                "over TCP (the UDP answer was truncated): {e}"
            )))
        }
        Ok(Ok(m)) => m,
    };
    match parse_response(&msg, id, name, qtype) {
        Some(Parsed::Answer(o)) => Ok(o),
        _ => Err(AskError::Io(
            "the answer over TCP is not valid for the query".into(),
        )),
    }
}

fn random_id() -> u16 {
    // RandomState is seeded from the OS per process and varies per instance.
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0),
    );
    h.finish() as u16
}

fn build_query(id: u16, name: &str, qtype: u16) -> Result<Vec<u8>, String> {
    let mut q = Vec::with_capacity(18 + name.len());
    q.extend_from_slice(&id.to_be_bytes());
    q.extend_from_slice(&[0x01, 0x00]); // RD
    q.extend_from_slice(&[0, 1, 0, 0, 0, 0, 0, 0]); // one question
    for label in name.split('.').filter(|l| !l.is_empty()) {
        if label.len() > 63 {
            return Err(format!("`{name}` has a label longer than 63 bytes"));
        }
        q.push(label.len() as u8);
        q.extend_from_slice(label.as_bytes());
    }
    q.push(0);
    if q.len() - 12 > 255 {
        return Err(format!("`{name}` is longer than 255 bytes"));
    }
    q.extend_from_slice(&qtype.to_be_bytes());
    q.extend_from_slice(&CLASS_IN.to_be_bytes());
    Ok(q)
}

enum Parsed {
    Truncated,
    Answer(Outcome),
}

/// Judge a response to (`id`, `name`, `qtype`). None when it does not answer that query, or
/// is malformed: nginx ignores such datagrams too.
fn parse_response(msg: &[u8], id: u16, name: &str, qtype: u16) -> Option<Parsed> {
    let header = msg.get(..12)?;
    let u16_at = |i: usize| u16::from_be_bytes([header[i], header[i + 1]]);
    let flags = u16_at(2);
    if u16_at(0) != id || flags & 0x8000 == 0 || u16_at(4) != 1 {
        return None;
    }
    let (qname, mut at) = read_name(msg, 12)?;
    let qt = u16::from_be_bytes([*msg.get(at)?, *msg.get(at + 1)?]);
    let qc = u16::from_be_bytes([*msg.get(at + 2)?, *msg.get(at + 3)?]);
    if !qname.eq_ignore_ascii_case(name.trim_end_matches('.')) || qt != qtype || qc != CLASS_IN {
        return None;
    }
    at += 4;
    if flags & 0x0200 != 0 {
        return Some(Parsed::Truncated);
    }
    let rcode = (flags & 0x000f) as u8;
    if rcode != 0 {
        return Some(Parsed::Answer(Outcome::Rcode(rcode)));
    }
    let ancount = u16_at(6);
    let mut cnames: Vec<(String, String)> = Vec::new();
    let mut addrs: Vec<(String, IpAddr)> = Vec::new();
    let mut other = false;
    for _ in 0..ancount {
        let (owner, next) = read_name(msg, at)?;
        let fixed = msg.get(next..next + 10)?;
        let rtype = u16::from_be_bytes([fixed[0], fixed[1]]);
        let rclass = u16::from_be_bytes([fixed[2], fixed[3]]);
        let rdlen = u16::from_be_bytes([fixed[8], fixed[9]]) as usize;
        let rdata_at = next + 10;
        let rdata = msg.get(rdata_at..rdata_at + rdlen)?;
        at = rdata_at + rdlen;
        if rclass != CLASS_IN {
            other = true;
            continue;
        }
        match (rtype, rdlen) {
            (TYPE_A, 4) => addrs.push((owner, IpAddr::from(<[u8; 4]>::try_from(rdata).ok()?))),
            (TYPE_AAAA, 16) => addrs.push((owner, IpAddr::from(<[u8; 16]>::try_from(rdata).ok()?))),
            (TYPE_CNAME, _) => cnames.push((owner, read_name(msg, rdata_at)?.0)),
            _ => other = true,
        }
    }
    // Follow the CNAME chain from the question's name within this answer.
    let mut current = qname;
    for _ in 0..=cnames.len() {
        let found: Vec<IpAddr> = addrs
            .iter()
            .filter(|(o, a)| o.eq_ignore_ascii_case(&current) && wanted(*a, qtype))
            .map(|(_, a)| *a)
            .collect();
        if !found.is_empty() {
            return Some(Parsed::Answer(Outcome::Addrs(found)));
        }
        match cnames
            .iter()
            .find(|(o, _)| o.eq_ignore_ascii_case(&current))
        {
            Some((_, target)) => current = target.clone(),
            None => break,
        }
    }
    if !current.eq_ignore_ascii_case(name.trim_end_matches('.')) {
        return Some(Parsed::Answer(Outcome::Cname(current)));
    }
    Some(Parsed::Answer(Outcome::Empty {
        other: other || !addrs.is_empty(),
    }))
}

fn wanted(a: IpAddr, qtype: u16) -> bool {
    matches!(
        (a, qtype),
        (IpAddr::V4(_), TYPE_A) | (IpAddr::V6(_), TYPE_AAAA)
    )
}

/// A possibly compressed name at `at`: the name (no trailing dot) and the offset after it.
fn read_name(msg: &[u8], mut at: usize) -> Option<(String, usize)> {
    let mut labels: Vec<String> = Vec::new();
    let mut end_of_name = None;
    // Pointers must go backwards and a name has at most 127 labels: no loop runs forever.
    let mut jumps = 0;
    loop {
        let len = *msg.get(at)? as usize;
        match len & 0xc0 {
            0x00 if len == 0 => {
                let after = end_of_name.unwrap_or(at + 1);
                return Some((labels.join("."), after));
            }
            0x00 => {
                let label = msg.get(at + 1..at + 1 + len)?;
                labels.push(String::from_utf8_lossy(label).into_owned());
                if labels.len() > 127 {
                    return None;
                }
                at += 1 + len;
            }
            0xc0 => {
                let target = ((len & 0x3f) << 8) | *msg.get(at + 1)? as usize;
                end_of_name.get_or_insert(at + 2);
                jumps += 1;
                if target >= at || jumps > 64 {
                    return None;
                }
                at = target;
            }
            _ => return None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(id: u16, flags: u16, q: &[u8], records: &[&[u8]]) -> Vec<u8> {
        let mut m = id.to_be_bytes().to_vec();
        m.extend_from_slice(&flags.to_be_bytes());
        m.extend_from_slice(&[0, 1]);
        m.extend_from_slice(&(records.len() as u16).to_be_bytes());
        m.extend_from_slice(&[0, 0, 0, 0]);
        m.extend_from_slice(q);
        for r in records {
            m.extend_from_slice(r);
        }
        m
    }

    fn rr(owner: &[u8], rtype: u16, rdata: &[u8]) -> Vec<u8> {
        let mut r = owner.to_vec();
        r.extend_from_slice(&rtype.to_be_bytes());
        r.extend_from_slice(&CLASS_IN.to_be_bytes());
        r.extend_from_slice(&30u32.to_be_bytes());
        r.extend_from_slice(&(rdata.len() as u16).to_be_bytes());
        r.extend_from_slice(rdata);
        r
    }

    #[test]
    fn query_layout() {
        let q = build_query(0x1234, "backend.internal", TYPE_A).unwrap();
        assert_eq!(&q[..4], &[0x12, 0x34, 0x01, 0x00]);
        assert_eq!(&q[12..20], b"\x07backend");
        assert_eq!(&q[q.len() - 4..], &[0, 1, 0, 1]);
        assert!(build_query(1, &"a".repeat(64), TYPE_A).is_err());
    }

    #[test]
    fn compressed_cname_then_a() {
        let q = &build_query(7, "www.lab.test", TYPE_A).unwrap()[12..];
        // www.lab.test CNAME app.<ptr to lab.test at 16>; app.lab.test A 10.0.0.5
        let cname = rr(&[0xc0, 12], TYPE_CNAME, &[3, b'a', b'p', b'p', 0xc0, 16]);
        let target_at = 12 + q.len() + cname.len() - 6;
        let a = rr(&[0xc0, target_at as u8], TYPE_A, &[10, 0, 0, 5]);
        let msg = answer(7, 0x8180, q, &[&cname, &a]);
        match parse_response(&msg, 7, "www.lab.test", TYPE_A) {
            Some(Parsed::Answer(Outcome::Addrs(v))) => {
                assert_eq!(v, vec![IpAddr::from([10, 0, 0, 5])])
            }
            _ => panic!("expected an address"),
        }
        // The same answer for another id, name or type is not ours.
        assert!(parse_response(&msg, 8, "www.lab.test", TYPE_A).is_none());
        assert!(parse_response(&msg, 7, "other.test", TYPE_A).is_none());
        assert!(parse_response(&msg, 7, "www.lab.test", TYPE_AAAA).is_none());
    }

    #[test]
    fn rcodes_truncation_and_empty() {
        let q = &build_query(9, "x.test", TYPE_A).unwrap()[12..];
        let judge = |flags: u16, recs: &[&[u8]]| match parse_response(
            &answer(9, flags, q, recs),
            9,
            "x.test",
            TYPE_A,
        ) {
            Some(Parsed::Answer(o)) => format!("{o:?}"),
            Some(Parsed::Truncated) => "truncated".into(),
            None => "ignored".into(),
        };
        assert_eq!(judge(0x8183, &[]), "Rcode(3)");
        assert_eq!(judge(0x8182, &[]), "Rcode(2)");
        assert_eq!(judge(0x8380, &[]), "truncated");
        assert_eq!(judge(0x8180, &[]), "Empty { other: false }");
        let txt = rr(&[0xc0, 12], 16, b"\x02hi");
        assert_eq!(judge(0x8180, &[&txt]), "Empty { other: true }");
        // A query (QR clear) is not an answer.
        assert_eq!(judge(0x0100, &[]), "ignored");
    }

    #[test]
    fn pointer_loops_are_refused() {
        let mut msg = vec![0u8; 12];
        msg.extend_from_slice(&[0xc0, 12]);
        assert!(read_name(&msg, 12).is_none());
    }

    #[test]
    fn nginx_wording() {
        assert_eq!(
            DnsFailure::NxDomain.nginx_log("nx.lab.test"),
            "nx.lab.test could not be resolved (3: Host not found)"
        );
        assert_eq!(
            DnsFailure::Rcode { code: 2 }.nginx_log("a"),
            "a could not be resolved (2: Server failure)"
        );
        assert_eq!(
            DnsFailure::Timeout {
                waited_ms: 1,
                ignored: 0
            }
            .nginx_log("a"),
            "a could not be resolved (110: Operation timed out)"
        );
    }
}

//! The `resolver` client against in-process DNS servers on 127.0.0.1 with hand-built answers
//! (RFC 1035 wire format; the same shapes were fed to nginx 1.22.1 to check its wording).

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, UdpSocket};
use why502_request::dns::{resolve_via, DnsFailure};

const A: u16 = 1;
const CNAME: u16 = 5;
const AAAA: u16 = 28;

/// A query as the server sees it.
struct Query {
    id: u16,
    name: String,
    qtype: u16,
    /// The question section, to echo.
    question: Vec<u8>,
}

fn parse_query(q: &[u8]) -> Query {
    let mut i = 12;
    let mut labels = Vec::new();
    while q[i] != 0 {
        let n = q[i] as usize;
        labels.push(String::from_utf8_lossy(&q[i + 1..i + 1 + n]).into_owned());
        i += 1 + n;
    }
    Query {
        id: u16::from_be_bytes([q[0], q[1]]),
        name: labels.join("."),
        qtype: u16::from_be_bytes([q[i + 1], q[i + 2]]),
        question: q[12..i + 5].to_vec(),
    }
}

fn encode_name(name: &str) -> Vec<u8> {
    let mut out = Vec::new();
    for l in name.split('.') {
        out.push(l.len() as u8);
        out.extend_from_slice(l.as_bytes());
    }
    out.push(0);
    out
}

/// A record whose owner is the question's name (compression pointer to offset 12).
fn rr(owner: &[u8], rtype: u16, rdata: &[u8]) -> Vec<u8> {
    let mut r = owner.to_vec();
    r.extend_from_slice(&rtype.to_be_bytes());
    r.extend_from_slice(&[0, 1, 0, 0, 0, 30]);
    r.extend_from_slice(&(rdata.len() as u16).to_be_bytes());
    r.extend_from_slice(rdata);
    r
}

fn response(q: &Query, id: u16, flags: u16, answers: &[Vec<u8>]) -> Vec<u8> {
    let mut m = id.to_be_bytes().to_vec();
    m.extend_from_slice(&flags.to_be_bytes());
    m.extend_from_slice(&[0, 1]);
    m.extend_from_slice(&(answers.len() as u16).to_be_bytes());
    m.extend_from_slice(&[0, 0, 0, 0]);
    m.extend_from_slice(&q.question);
    for a in answers {
        m.extend_from_slice(a);
    }
    m
}

const PTR_QNAME: [u8; 2] = [0xc0, 12];
const NOERROR: u16 = 0x8180;

type Behaviour = dyn Fn(&Query) -> Vec<Vec<u8>> + Send + Sync;

/// A UDP DNS server sending, for each query, the datagrams `answer` returns (none: silence).
async fn dns_server(answer: Arc<Behaviour>) -> SocketAddr {
    let sock = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let addr = sock.local_addr().unwrap();
    tokio::spawn(async move {
        let mut buf = [0u8; 512];
        while let Ok((n, from)) = sock.recv_from(&mut buf).await {
            let q = parse_query(&buf[..n]);
            for d in answer(&q) {
                let _ = sock.send_to(&d, from).await;
            }
        }
    });
    addr
}

fn a_record(ip: [u8; 4]) -> Vec<u8> {
    rr(&PTR_QNAME, A, &ip)
}

async fn resolve(server: SocketAddr, name: &str, ipv6: bool) -> Result<Vec<IpAddr>, DnsFailure> {
    resolve_via(&[server], name, ipv6, Duration::from_secs(2)).await
}

#[tokio::test]
async fn an_a_record_resolves() {
    let s = dns_server(Arc::new(|q: &Query| match q.qtype {
        A => vec![response(q, q.id, NOERROR, &[a_record([10, 0, 0, 5])])],
        _ => vec![response(q, q.id, NOERROR, &[])],
    }))
    .await;
    assert_eq!(
        resolve(s, "app.lab.test", false).await,
        Ok(vec![IpAddr::from([10, 0, 0, 5])])
    );
}

#[tokio::test]
async fn cname_then_a_in_one_answer_with_compression() {
    let s = dns_server(Arc::new(|q: &Query| {
        // www.lab.test CNAME app.lab.test (written as "app" + pointer to "lab.test" at 16),
        // then app.lab.test A, its owner a pointer to the CNAME's target.
        let cname = rr(&PTR_QNAME, CNAME, &[3, b'a', b'p', b'p', 0xc0, 16]);
        let target_at = 12 + q.question.len() + cname.len() - 6;
        let a = rr(&[0xc0, target_at as u8], A, &[10, 0, 0, 6]);
        vec![response(q, q.id, NOERROR, &[cname, a])]
    }))
    .await;
    assert_eq!(
        resolve(s, "www.lab.test", false).await,
        Ok(vec![IpAddr::from([10, 0, 0, 6])])
    );
}

#[tokio::test]
async fn a_cname_alone_is_resolved_in_turn() {
    let s = dns_server(Arc::new(|q: &Query| {
        if q.name == "alias.lab.test" {
            let target = encode_name("real.lab.test");
            vec![response(
                q,
                q.id,
                NOERROR,
                &[rr(&PTR_QNAME, CNAME, &target)],
            )]
        } else if q.name == "real.lab.test" {
            vec![response(q, q.id, NOERROR, &[a_record([10, 0, 0, 7])])]
        } else {
            vec![response(q, q.id, 0x8183, &[])]
        }
    }))
    .await;
    assert_eq!(
        resolve(s, "alias.lab.test", false).await,
        Ok(vec![IpAddr::from([10, 0, 0, 7])])
    );
}

#[tokio::test]
async fn nxdomain_and_servfail_and_an_empty_answer() {
    let s = dns_server(Arc::new(|q: &Query| {
        let flags = match q.name.split('.').next() {
            Some("nx") => 0x8183,
            Some("servfail") => 0x8182,
            _ => NOERROR,
        };
        vec![response(q, q.id, flags, &[])]
    }))
    .await;
    let nx = resolve(s, "nx.lab.test", true).await;
    assert_eq!(nx, Err(DnsFailure::NxDomain));
    assert_eq!(
        nx.unwrap_err().nginx_log("nx.lab.test"),
        "nx.lab.test could not be resolved (3: Host not found)"
    );
    assert_eq!(
        resolve(s, "servfail.lab.test", false).await,
        Err(DnsFailure::Rcode { code: 2 })
    );
    let empty = resolve(s, "empty.lab.test", true).await.unwrap_err();
    assert_eq!(
        empty,
        DnsFailure::NoAnswer {
            other_records: false,
            ipv6: true
        }
    );
    // nginx: an empty NOERROR answer is "Host not found" too.
    assert!(empty.nginx_log("e").ends_with("(3: Host not found)"));
}

#[tokio::test]
async fn a_and_aaaa_are_both_asked_when_ipv6_is_on() {
    let s = dns_server(Arc::new(|q: &Query| match q.qtype {
        A => vec![response(q, q.id, NOERROR, &[a_record([10, 0, 0, 8])])],
        AAAA => {
            let mut v6 = [0u8; 16];
            v6[15] = 1;
            vec![response(q, q.id, NOERROR, &[rr(&PTR_QNAME, AAAA, &v6)])]
        }
        _ => vec![],
    }))
    .await;
    let got = resolve(s, "dual.lab.test", true).await.unwrap();
    assert!(got.contains(&IpAddr::from([10, 0, 0, 8])), "{got:?}");
    assert!(got.contains(&"::1".parse::<IpAddr>().unwrap()), "{got:?}");
    assert_eq!(
        resolve(s, "dual.lab.test", false).await,
        Ok(vec![IpAddr::from([10, 0, 0, 8])])
    );
}

#[tokio::test]
async fn a_silent_server_times_out_within_the_budget() {
    let s = dns_server(Arc::new(|_: &Query| vec![])).await;
    let start = Instant::now();
    let r = resolve_via(&[s], "silent.lab.test", true, Duration::from_millis(300)).await;
    assert!(
        matches!(r, Err(DnsFailure::Timeout { ignored: 0, .. })),
        "{r:?}"
    );
    assert!(
        start.elapsed() < Duration::from_secs(1),
        "{:?}",
        start.elapsed()
    );
    assert!(r
        .unwrap_err()
        .nginx_log("silent.lab.test")
        .ends_with("(110: Operation timed out)"));
}

#[tokio::test]
async fn an_answer_with_the_wrong_id_is_ignored() {
    // First a forged answer with another id, then the real one.
    let s = dns_server(Arc::new(|q: &Query| {
        vec![
            response(q, q.id.wrapping_add(1), NOERROR, &[a_record([6, 6, 6, 6])]),
            response(q, q.id, NOERROR, &[a_record([10, 0, 0, 9])]),
        ]
    }))
    .await;
    assert_eq!(
        resolve(s, "app.lab.test", false).await,
        Ok(vec![IpAddr::from([10, 0, 0, 9])])
    );
    // Only wrong ids: nothing is believed, the wait ends in a timeout that counts them.
    let forged = dns_server(Arc::new(|q: &Query| {
        vec![response(
            q,
            q.id ^ 0x5555,
            NOERROR,
            &[a_record([6, 6, 6, 6])],
        )]
    }))
    .await;
    let r = resolve_via(&[forged], "app.lab.test", false, Duration::from_millis(300)).await;
    assert!(
        matches!(r, Err(DnsFailure::Timeout { ignored: 1, .. })),
        "{r:?}"
    );
}

#[tokio::test]
async fn a_silent_first_server_falls_through_to_the_second() {
    let silent = dns_server(Arc::new(|_: &Query| vec![])).await;
    let good = dns_server(Arc::new(|q: &Query| {
        vec![response(q, q.id, NOERROR, &[a_record([10, 0, 0, 10])])]
    }))
    .await;
    let r = resolve_via(
        &[silent, good],
        "app.lab.test",
        false,
        Duration::from_secs(1),
    )
    .await;
    assert_eq!(r, Ok(vec![IpAddr::from([10, 0, 0, 10])]));
}

#[tokio::test]
async fn a_truncated_udp_answer_is_asked_again_over_tcp() {
    let udp = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let addr = udp.local_addr().unwrap();
    let tcp = TcpListener::bind(addr).await.unwrap();
    tokio::spawn(async move {
        let mut buf = [0u8; 512];
        while let Ok((n, from)) = udp.recv_from(&mut buf).await {
            let q = parse_query(&buf[..n]);
            let _ = udp
                .send_to(&response(&q, q.id, NOERROR | 0x0200, &[]), from)
                .await;
        }
    });
    tokio::spawn(async move {
        while let Ok((mut s, _)) = tcp.accept().await {
            let len = s.read_u16().await.unwrap() as usize;
            let mut msg = vec![0u8; len];
            s.read_exact(&mut msg).await.unwrap();
            let q = parse_query(&msg);
            let r = response(&q, q.id, NOERROR, &[a_record([10, 0, 0, 11])]);
            let mut framed = (r.len() as u16).to_be_bytes().to_vec();
            framed.extend_from_slice(&r);
            let _ = s.write_all(&framed).await;
        }
    });
    assert_eq!(
        resolve(addr, "big.lab.test", false).await,
        Ok(vec![IpAddr::from([10, 0, 0, 11])])
    );
}

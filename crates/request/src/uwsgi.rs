//! uwsgi: a 4-byte header (modifier1, datasize u16 LE, modifier2) and u16-length-prefixed
//! key/value pairs; the backend answers with a plain HTTP response.

use std::time::Instant;

use crate::http::read_http_header;
use crate::stream::{connect, send, Io};
use crate::tls::{connect_then_exchange, TlsAnswer, TlsSettings};
use crate::{Answer, Ask, Limits, Target};

pub async fn uwsgi_request(target: &Target, ask: &Ask, limits: &Limits) -> Answer {
    match connect(target, limits).await {
        Ok(io) => exchange(io, ask, limits).await,
        Err(a) => a,
    }
}

/// `uwsgi_pass suwsgi://`: the same packet after a TLS handshake configured by `tls`.
pub async fn uwsgi_request_tls(
    target: &Target,
    ask: &Ask,
    limits: &Limits,
    tls: &TlsSettings,
) -> TlsAnswer {
    connect_then_exchange(target, limits, tls, &[], |io| exchange(io, ask, limits)).await
}

async fn exchange(mut io: Box<dyn Io>, ask: &Ask, limits: &Limits) -> Answer {
    if let Err(a) = send(&mut io, &packet(ask), limits).await {
        return a;
    }
    read_http_header(&mut io, limits, Instant::now()).await
}

fn packet(ask: &Ask) -> Vec<u8> {
    let (path, query) = ask.path.split_once('?').unwrap_or((ask.path.as_str(), ""));
    let vars = [
        ("REQUEST_METHOD", "GET"),
        ("REQUEST_URI", ask.path.as_str()),
        ("PATH_INFO", path),
        ("QUERY_STRING", query),
        ("SERVER_PROTOCOL", "HTTP/1.1"),
        ("SERVER_NAME", ask.host.as_str()),
        ("SERVER_PORT", "80"),
        ("HTTP_HOST", ask.host.as_str()),
        ("REMOTE_ADDR", "127.0.0.1"),
    ];
    let mut body = Vec::new();
    for (k, v) in vars {
        for part in [k, v] {
            let part = &part.as_bytes()[..part.len().min(u16::MAX as usize)];
            body.extend_from_slice(&(part.len() as u16).to_le_bytes());
            body.extend_from_slice(part);
        }
    }
    let size = body.len().min(u16::MAX as usize) as u16;
    let mut out = vec![0u8];
    out.extend_from_slice(&size.to_le_bytes());
    out.push(0);
    out.extend_from_slice(&body[..size as usize]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packet_layout() {
        let p = packet(&Ask {
            host: "h".into(),
            path: "/x?y=1".into(),
        });
        let size = u16::from_le_bytes([p[1], p[2]]) as usize;
        assert_eq!((p[0], p[3]), (0, 0));
        assert_eq!(p.len(), 4 + size);
        // The first var: REQUEST_METHOD = GET.
        assert_eq!(&p[4..6], &14u16.to_le_bytes());
        assert_eq!(&p[6..20], b"REQUEST_METHOD");
    }
}

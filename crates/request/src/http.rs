//! HTTP/1.1: a GET with `Connection: close`, and the response header read as nginx reads it.

use std::time::Instant;

use crate::stream::{closed_or_reset, connect, read_some, send, Io};
use crate::tls::{connect_then_exchange, TlsAnswer, TlsSettings};
use crate::{ms, show_bytes, Answer, Ask, Limits, Target};

pub async fn http_request(target: &Target, ask: &Ask, limits: &Limits) -> Answer {
    match connect(target, limits).await {
        Ok(io) => exchange(io, ask, limits).await,
        Err(a) => a,
    }
}

/// `proxy_pass https://`: the same GET after a TLS handshake configured by `tls`. nginx sends
/// no ALPN to HTTP backends.
pub async fn http_request_tls(
    target: &Target,
    ask: &Ask,
    limits: &Limits,
    tls: &TlsSettings,
) -> TlsAnswer {
    connect_then_exchange(target, limits, tls, &[], |io| exchange(io, ask, limits)).await
}

async fn exchange(mut io: Box<dyn Io>, ask: &Ask, limits: &Limits) -> Answer {
    let request = format!(
        "GET {} HTTP/1.1\r\nHost: {}\r\nUser-Agent: why502/{} (direct request, nginx 502 diagnosis)\r\nAccept: */*\r\nConnection: close\r\n\r\n",
        ask.path,
        ask.host,
        env!("CARGO_PKG_VERSION")
    );
    if let Err(a) = send(&mut io, request.as_bytes(), limits).await {
        return a;
    }
    read_http_header(&mut io, limits, Instant::now()).await
}

/// Read until the blank line that ends an HTTP response header, and judge what came.
pub(crate) async fn read_http_header(
    io: &mut Box<dyn Io>,
    limits: &Limits,
    sent: Instant,
) -> Answer {
    let mut buf: Vec<u8> = Vec::with_capacity(4096);
    let mut chunk = [0u8; 4096];
    let mut first_byte_ms: Option<u64> = None;
    loop {
        let n = match read_some(io, &mut chunk, limits).await {
            Err(()) if buf.is_empty() => {
                return Answer::NoAnswer {
                    waited_ms: ms(sent.elapsed()),
                }
            }
            Err(()) => {
                return Answer::HeaderStalled {
                    bytes: buf.len(),
                    waited_ms: ms(sent.elapsed()),
                }
            }
            Ok(Err(e)) => return closed_or_reset(&e, buf.len(), first_byte_ms),
            Ok(Ok(0)) => {
                // EOF: an answer that is not HTTP at all is malformed, not merely short.
                if !buf.is_empty()
                    && !buf.starts_with(b"HTTP/")
                    && !b"HTTP/".starts_with(&buf[..buf.len().min(5)])
                {
                    return malformed("the answer does not start with an HTTP status line", &buf);
                }
                return Answer::Closed {
                    bytes: buf.len(),
                    reset: false,
                    first_byte_ms,
                };
            }
            Ok(Ok(n)) => n,
        };
        first_byte_ms.get_or_insert_with(|| ms(sent.elapsed()));
        buf.extend_from_slice(&chunk[..n]);
        if let Some(end) = header_end(&buf) {
            return judge_header(&buf[..end], first_byte_ms.unwrap_or(0), ms(sent.elapsed()));
        }
        if buf.len() >= 5 && !buf.starts_with(b"HTTP/") {
            return malformed("the answer does not start with an HTTP status line", &buf);
        }
        if buf.len() > limits.max_header {
            return Answer::HeaderTooLong { read: buf.len() };
        }
    }
}

/// The index just past `\r\n\r\n` (or a bare `\n\n`, which nginx accepts too).
fn header_end(buf: &[u8]) -> Option<usize> {
    let crlf = buf.windows(4).position(|w| w == b"\r\n\r\n").map(|i| i + 4);
    let lf = buf.windows(2).position(|w| w == b"\n\n").map(|i| i + 2);
    match (crlf, lf) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

fn judge_header(header: &[u8], first_byte_ms: u64, total_ms: u64) -> Answer {
    let text = String::from_utf8_lossy(header);
    let mut lines = text.split('\n').map(|l| l.trim_end_matches('\r'));
    let status_line = lines.next().unwrap_or_default();
    let Some(status) = parse_status_line(status_line) else {
        return malformed("the status line is not `HTTP/1.x NNN reason`", header);
    };
    for line in lines.filter(|l| !l.is_empty()) {
        let valid = match line.split_once(':') {
            Some((name, _)) => !name.is_empty() && name.bytes().all(is_token_byte),
            None => false,
        };
        if !valid {
            return malformed(
                &format!("invalid header line `{}`", show_bytes(line.as_bytes())),
                header,
            );
        }
    }
    Answer::Response {
        status,
        header_bytes: header.len(),
        first_byte_ms,
        total_ms,
        stderr: None,
    }
}

fn parse_status_line(line: &str) -> Option<u16> {
    let rest = line.strip_prefix("HTTP/1.")?;
    let mut parts = rest.splitn(3, ' ');
    let minor = parts.next()?;
    if minor != "0" && minor != "1" {
        return None;
    }
    let code = parts.next()?;
    if code.len() != 3 {
        return None;
    }
    code.parse().ok().filter(|c| (100..=999).contains(c))
}

/// RFC 9110 token characters: what nginx accepts in a header name.
fn is_token_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

fn malformed(reason: &str, bytes: &[u8]) -> Answer {
    Answer::Malformed {
        reason: reason.to_string(),
        first_bytes: show_bytes(bytes),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_judgement() {
        let cases: &[(&[u8], &str)] = &[
            (
                b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\n\r\n",
                "response",
            ),
            (b"HTTP/1.0 404 Not Found\n\n", "response"),
            (b"HTTP/1.1 200\r\n\r\n", "response"),
            (b"HTTP/2 200\r\n\r\n", "malformed"),
            (b"HTTP/1.1 20 OK\r\n\r\n", "malformed"),
            (b"HTTP/1.1 200 OK\r\n\x00\x01garbage\r\n\r\n", "malformed"),
            (b"HTTP/1.1 200 OK\r\nBad Header: x\r\n\r\n", "malformed"),
        ];
        for (bytes, want) in cases {
            let end = header_end(bytes).expect("complete header");
            let got = match judge_header(&bytes[..end], 1, 2) {
                Answer::Response { .. } => "response",
                Answer::Malformed { .. } => "malformed",
                other => panic!("{other:?}"),
            };
            assert_eq!(got, *want, "{}", show_bytes(bytes));
        }
    }
}

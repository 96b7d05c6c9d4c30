//! gRPC: an HTTP/2 connection check — the client preface and an empty SETTINGS frame; a gRPC
//! server answers with its own SETTINGS frame. No RPC is made.

use std::time::Instant;

use crate::stream::{closed_or_reset, connect, read_some, send, Io};
use crate::tls::{connect_then_exchange, TlsAnswer, TlsSettings};
use crate::{ms, show_bytes, Answer, Limits, Target};

const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
const SETTINGS: u8 = 0x4;

pub async fn grpc_handshake(target: &Target, limits: &Limits) -> Answer {
    match connect(target, limits).await {
        Ok(io) => exchange(io, limits).await,
        Err(a) => a,
    }
}

/// `grpc_pass grpcs://`: the same check after a TLS handshake offering ALPN "h2", as nginx's
/// grpc module does.
pub async fn grpc_handshake_tls(target: &Target, limits: &Limits, tls: &TlsSettings) -> TlsAnswer {
    connect_then_exchange(target, limits, tls, &[b"h2"], |io| exchange(io, limits)).await
}

async fn exchange(mut io: Box<dyn Io>, limits: &Limits) -> Answer {
    let mut hello = PREFACE.to_vec();
    // Frame header: length 0 (24 bits), type SETTINGS, flags 0, stream 0.
    hello.extend_from_slice(&[0, 0, 0, SETTINGS, 0, 0, 0, 0, 0]);
    if let Err(a) = send(&mut io, &hello, limits).await {
        return a;
    }
    let sent = Instant::now();
    let mut buf = Vec::new();
    let mut chunk = [0u8; 1024];
    while buf.len() < 9 {
        match read_some(&mut io, &mut chunk, limits).await {
            Err(()) => {
                return Answer::NoAnswer {
                    waited_ms: ms(sent.elapsed()),
                }
            }
            Ok(Err(e)) => return closed_or_reset(&e, buf.len(), None),
            Ok(Ok(0)) => {
                return Answer::Closed {
                    bytes: buf.len(),
                    reset: false,
                    first_byte_ms: None,
                }
            }
            Ok(Ok(n)) => buf.extend_from_slice(&chunk[..n]),
        }
    }
    if buf[3] != SETTINGS {
        return Answer::Malformed {
            reason: "the answer is not an HTTP/2 SETTINGS frame (is the backend speaking HTTP/1 or TLS?)".into(),
            first_bytes: show_bytes(&buf),
        };
    }
    let took = ms(sent.elapsed());
    Answer::Response {
        status: 200,
        header_bytes: 9,
        first_byte_ms: took,
        total_ms: took,
        stderr: None,
    }
}

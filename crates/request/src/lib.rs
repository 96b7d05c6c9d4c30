//! The direct request: talk to a backend the way nginx does — HTTP/1.1, FastCGI, uwsgi, or an
//! HTTP/2 handshake for gRPC — over TCP or a unix socket, in the clear or over TLS
//! (`http_request_tls`, `grpc_handshake_tls`, `uwsgi_request_tls`: the plain exchange after a
//! handshake configured by `TlsSettings`), and measure what comes back: time to
//! the first byte, the size of the response header, how the answer ended.
//!
//! Architecture invariant: safe and bounded. Only GET (FastCGI: the same, for a script that does
//! not exist, so no application code runs; or for a page php-fpm answers itself, its
//! `pm.status_path`), no body, no redirects; at most `max_header` bytes
//! are read; every connect and read has a deadline. The transports are written by hand on
//! purpose: nginx compares the raw header bytes with its buffer and times each read, and a
//! client library hides both.

mod cert_info;
pub mod dns;
mod fastcgi;
mod grpc;
mod http;
mod stream;
mod tls;
mod tls_verify;
mod uwsgi;

use std::path::PathBuf;
use std::time::Duration;

use serde::Serialize;

pub use cert_info::LeafCertificate;
pub use fastcgi::{fastcgi_page, fastcgi_request, FastCgiPage};
pub use grpc::{grpc_handshake, grpc_handshake_tls};
pub use http::{http_request, http_request_tls};
pub use tls::{Handshake, TlsAnswer, TlsProblem, TlsSettings};
pub use uwsgi::{uwsgi_request, uwsgi_request_tls};

/// Where to connect.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    Tcp(std::net::SocketAddr),
    Unix(PathBuf),
}

impl std::fmt::Display for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Target::Tcp(a) => write!(f, "{a}"),
            Target::Unix(p) => write!(f, "unix:{}", p.display()),
        }
    }
}

/// What nginx would ask for: the Host header and the path (FastCGI: the document URI).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ask {
    pub host: String,
    pub path: String,
}

/// The deadlines and caps of one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub connect_timeout: Duration,
    /// Time allowed between two reads, as nginx's `*_read_timeout`.
    pub read_timeout: Duration,
    /// Stop reading a header that grows past this.
    pub max_header: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            connect_timeout: Duration::from_secs(5),
            read_timeout: Duration::from_secs(5),
            max_header: 64 * 1024,
        }
    }
}

/// How a direct request ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Answer {
    /// A complete, well-formed response header.
    Response {
        /// HTTP status (FastCGI: the `Status:` header, 200 when absent).
        status: u16,
        /// Bytes up to and including the blank line that ends the header.
        header_bytes: usize,
        first_byte_ms: u64,
        total_ms: u64,
        /// For FastCGI: what the backend wrote to stderr (e.g. "Primary script unknown").
        stderr: Option<String>,
    },
    /// connect() failed (refused, no such file, permission denied...).
    ConnectFailed {
        error: String,
    },
    ConnectTimeout {
        waited_ms: u64,
    },
    /// Connected, request sent, and not one byte came back in time.
    NoAnswer {
        waited_ms: u64,
    },
    /// Some bytes came, then nothing more before the header was complete.
    HeaderStalled {
        bytes: usize,
        waited_ms: u64,
    },
    /// The backend closed (or reset) the connection before a complete header.
    Closed {
        bytes: usize,
        reset: bool,
        first_byte_ms: Option<u64>,
    },
    /// The bytes are not a response of this protocol.
    Malformed {
        reason: String,
        first_bytes: String,
    },
    /// The header did not end within `max_header` bytes.
    HeaderTooLong {
        read: usize,
    },
    /// TLS to the backend failed, or its certificate fails `*_ssl_verify on` (the `*_tls`
    /// functions only). `waited_ms` counts from the end of connect().
    TlsFailed {
        problem: TlsProblem,
        waited_ms: u64,
    },
}

/// Printable, bounded rendering of raw bytes for evidence (`\x00` escapes, at most 120 chars).
pub fn show_bytes(b: &[u8]) -> String {
    let mut s = String::new();
    for &c in b.iter().take(120) {
        match c {
            b'\r' => s.push_str("\\r"),
            b'\n' => s.push_str("\\n"),
            0x20..=0x7e => s.push(c as char),
            _ => s.push_str(&format!("\\x{c:02x}")),
        }
    }
    if b.len() > 120 {
        s.push('…');
    }
    s
}

fn ms(d: Duration) -> u64 {
    d.as_millis() as u64
}

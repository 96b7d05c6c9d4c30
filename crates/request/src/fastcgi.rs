//! FastCGI (the RESPONDER role nginx uses): BEGIN_REQUEST, the params nginx sends, an empty
//! STDIN; then STDOUT records up to the end of the CGI header, and STDERR on the way.
//!
//! The script asked for does not exist: php-fpm answers "File not found." (Status 404) and logs
//! "Primary script unknown" — proof that the pool accepts and runs requests, with no
//! application code run on behalf of a diagnosis.

use std::time::Instant;

use crate::stream::{closed_or_reset, connect, read_some, send};
use crate::{ms, show_bytes, Answer, Ask, Limits, Target};

const VERSION: u8 = 1;
const BEGIN_REQUEST: u8 = 1;
const END_REQUEST: u8 = 3;
const PARAMS: u8 = 4;
const STDIN: u8 = 5;
const STDOUT: u8 = 6;
const STDERR: u8 = 7;
const RESPONDER: u16 = 1;
const REQUEST_ID: u16 = 1;

/// The script a probe asks for; it never exists.
pub const PROBE_SCRIPT: &str = "/why502-probe-does-not-exist.php";

pub async fn fastcgi_request(target: &Target, ask: &Ask, limits: &Limits) -> Answer {
    let mut io = match connect(target, limits).await {
        Ok(io) => io,
        Err(a) => return a,
    };
    let script = Script {
        name: PROBE_SCRIPT,
        query: "",
        uri: &ask.path,
        host: &ask.host,
    };
    if let Err(a) = send(&mut io, &request_bytes(&script), limits).await {
        return a;
    }
    let sent = Instant::now();
    let mut reader = RecordReader::default();
    let mut chunk = [0u8; 8192];
    let mut first_byte_ms = None;
    loop {
        let n = match read_some(&mut io, &mut chunk, limits).await {
            Err(()) if reader.raw_len == 0 => {
                return Answer::NoAnswer {
                    waited_ms: ms(sent.elapsed()),
                }
            }
            Err(()) => {
                return Answer::HeaderStalled {
                    bytes: reader.raw_len,
                    waited_ms: ms(sent.elapsed()),
                }
            }
            Ok(Err(e)) => return closed_or_reset(&e, reader.raw_len, first_byte_ms),
            Ok(Ok(0)) => return reader.at_eof(first_byte_ms, ms(sent.elapsed())),
            Ok(Ok(n)) => n,
        };
        first_byte_ms.get_or_insert_with(|| ms(sent.elapsed()));
        if let Some(answer) = reader.feed(
            &chunk[..n],
            limits,
            first_byte_ms.unwrap_or(0),
            ms(sent.elapsed()),
        ) {
            return answer;
        }
    }
}

/// A page php-fpm serves itself, read whole: its status page (`pm.status_path`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FastCgiPage {
    /// The `Status:` header, 200 when absent.
    pub status: u16,
    /// The body after the CGI header, at most `max_body` bytes of it.
    pub body: String,
    /// The body went past `max_body` and was cut there.
    pub truncated: bool,
}

/// GET `path?query` from a php-fpm pool and read the whole answer (bounded by `max_body`).
/// For pages php-fpm answers itself (`pm.status_path`, `ping.path`): no application code runs.
/// Err: how the exchange failed, as for `fastcgi_request`.
pub async fn fastcgi_page(
    target: &Target,
    path: &str,
    query: &str,
    limits: &Limits,
    max_body: usize,
) -> Result<FastCgiPage, Answer> {
    let mut io = connect(target, limits).await?;
    let uri = if query.is_empty() {
        path.to_string()
    } else {
        format!("{path}?{query}")
    };
    let script = Script {
        name: path,
        query,
        uri: &uri,
        host: "localhost",
    };
    send(&mut io, &request_bytes(&script), limits).await?;
    let sent = Instant::now();
    let mut pending: Vec<u8> = Vec::new();
    let mut stdout: Vec<u8> = Vec::new();
    let mut raw_len = 0usize;
    let mut chunk = [0u8; 8192];
    let cap = max_body + limits.max_header;
    let mut ended = false;
    while !ended && stdout.len() <= cap {
        let n = match read_some(&mut io, &mut chunk, limits).await {
            Err(()) if raw_len == 0 => {
                return Err(Answer::NoAnswer {
                    waited_ms: ms(sent.elapsed()),
                })
            }
            Err(()) => {
                return Err(Answer::HeaderStalled {
                    bytes: raw_len,
                    waited_ms: ms(sent.elapsed()),
                })
            }
            Ok(Err(e)) => return Err(closed_or_reset(&e, raw_len, None)),
            Ok(Ok(0)) => break,
            Ok(Ok(n)) => n,
        };
        raw_len += n;
        pending.extend_from_slice(&chunk[..n]);
        while let Some((kind, content)) = next_record(&mut pending)? {
            match kind {
                STDOUT => stdout.extend_from_slice(&content),
                END_REQUEST => ended = true,
                _ => {}
            }
        }
    }
    page_from_stdout(&stdout, max_body).ok_or(Answer::Closed {
        bytes: raw_len,
        reset: false,
        first_byte_ms: None,
    })
}

/// Splits STDOUT into the CGI header's status and the body; None without a complete header.
fn page_from_stdout(stdout: &[u8], max_body: usize) -> Option<FastCgiPage> {
    let end = cgi_header_end(stdout)?;
    let header = String::from_utf8_lossy(&stdout[..end]);
    let status = status_of(&header);
    let body = &stdout[end..];
    Some(FastCgiPage {
        status,
        body: String::from_utf8_lossy(&body[..body.len().min(max_body)]).into_owned(),
        truncated: body.len() > max_body,
    })
}

fn status_of(header: &str) -> u16 {
    header
        .lines()
        .find_map(|l| {
            l.strip_prefix("Status:")
                .or_else(|| l.strip_prefix("status:"))
        })
        .and_then(|v| v.trim().get(..3))
        .and_then(|c| c.parse().ok())
        .unwrap_or(200)
}

/// What one request asks for: the script php-fpm resolves, the query, the request URI and Host.
struct Script<'a> {
    name: &'a str,
    query: &'a str,
    uri: &'a str,
    host: &'a str,
}

fn request_bytes(script: &Script<'_>) -> Vec<u8> {
    let mut out = Vec::with_capacity(1024);
    let mut begin = Vec::with_capacity(8);
    begin.extend_from_slice(&RESPONDER.to_be_bytes());
    begin.extend_from_slice(&[0, 0, 0, 0, 0, 0]); // flags 0: close after the request
    record(&mut out, BEGIN_REQUEST, &begin);
    let params: [(&str, &str); 14] = [
        ("GATEWAY_INTERFACE", "CGI/1.1"),
        ("SERVER_SOFTWARE", "why502"),
        ("REQUEST_METHOD", "GET"),
        ("QUERY_STRING", script.query),
        ("REQUEST_URI", script.uri),
        ("DOCUMENT_URI", script.name),
        ("SCRIPT_NAME", script.name),
        ("SCRIPT_FILENAME", script.name),
        ("SERVER_PROTOCOL", "HTTP/1.1"),
        ("REMOTE_ADDR", "127.0.0.1"),
        ("REMOTE_PORT", "0"),
        ("SERVER_NAME", script.host),
        ("SERVER_PORT", "80"),
        ("HTTP_HOST", script.host),
    ];
    let mut body = Vec::new();
    for (k, v) in params {
        push_len(&mut body, k.len());
        push_len(&mut body, v.len());
        body.extend_from_slice(k.as_bytes());
        body.extend_from_slice(v.as_bytes());
    }
    record(&mut out, PARAMS, &body);
    record(&mut out, PARAMS, &[]);
    record(&mut out, STDIN, &[]);
    out
}

fn record(out: &mut Vec<u8>, kind: u8, content: &[u8]) {
    // Params stay far below 64 KiB; a record holds at most 65535 bytes.
    let len = content.len().min(u16::MAX as usize);
    let pad = (8 - len % 8) % 8;
    out.extend_from_slice(&[VERSION, kind]);
    out.extend_from_slice(&REQUEST_ID.to_be_bytes());
    out.extend_from_slice(&(len as u16).to_be_bytes());
    out.extend_from_slice(&[pad as u8, 0]);
    out.extend_from_slice(&content[..len]);
    out.extend(std::iter::repeat_n(0u8, pad));
}

fn push_len(out: &mut Vec<u8>, len: usize) {
    if len < 128 {
        out.push(len as u8);
    } else {
        out.extend_from_slice(&((len as u32) | 0x8000_0000).to_be_bytes());
    }
}

/// Reassembles records from the byte stream and collects STDOUT until the CGI header ends.
#[derive(Default)]
struct RecordReader {
    pending: Vec<u8>,
    stdout: Vec<u8>,
    stderr: Vec<u8>,
    raw_len: usize,
}

impl RecordReader {
    fn feed(
        &mut self,
        bytes: &[u8],
        limits: &Limits,
        first_byte_ms: u64,
        now_ms: u64,
    ) -> Option<Answer> {
        self.raw_len += bytes.len();
        self.pending.extend_from_slice(bytes);
        loop {
            let (kind, content) = match next_record(&mut self.pending) {
                Err(malformed) => return Some(malformed),
                Ok(Some(record)) => record,
                Ok(None) if self.raw_len > limits.max_header + 16 => {
                    return Some(Answer::HeaderTooLong { read: self.raw_len })
                }
                Ok(None) => return None,
            };
            match kind {
                STDOUT => {
                    self.stdout.extend_from_slice(&content);
                    if let Some(end) = cgi_header_end(&self.stdout) {
                        return Some(self.response(end, first_byte_ms, now_ms));
                    }
                    if self.stdout.len() > limits.max_header {
                        return Some(Answer::HeaderTooLong {
                            read: self.stdout.len(),
                        });
                    }
                }
                STDERR => {
                    let room = 4096usize.saturating_sub(self.stderr.len());
                    self.stderr
                        .extend_from_slice(&content[..content.len().min(room)]);
                }
                END_REQUEST => {
                    return Some(Answer::Closed {
                        bytes: self.raw_len,
                        reset: false,
                        first_byte_ms: Some(first_byte_ms),
                    })
                }
                _ => {}
            }
        }
    }

    fn at_eof(&self, first_byte_ms: Option<u64>, now_ms: u64) -> Answer {
        match cgi_header_end(&self.stdout) {
            Some(end) => self.response(end, first_byte_ms.unwrap_or(0), now_ms),
            None => Answer::Closed {
                bytes: self.raw_len,
                reset: false,
                first_byte_ms,
            },
        }
    }

    fn response(&self, end: usize, first_byte_ms: u64, now_ms: u64) -> Answer {
        let status = status_of(&String::from_utf8_lossy(&self.stdout[..end]));
        let stderr = (!self.stderr.is_empty())
            .then(|| String::from_utf8_lossy(&self.stderr).trim().to_string());
        // nginx holds the record header (8 bytes) and the CGI header in its buffer.
        Answer::Response {
            status,
            header_bytes: end + 8,
            first_byte_ms,
            total_ms: now_ms,
            stderr,
        }
    }
}

/// Takes the next complete record (type, content) off the front of `pending`; None until one
/// has arrived whole. Err: the bytes are not FastCGI.
fn next_record(pending: &mut Vec<u8>) -> Result<Option<(u8, Vec<u8>)>, Answer> {
    if pending.len() < 8 {
        return Ok(None);
    }
    if pending[0] != VERSION {
        return Err(Answer::Malformed {
            reason: format!("not a FastCGI record (version byte {})", pending[0]),
            first_bytes: show_bytes(pending),
        });
    }
    let kind = pending[1];
    let len = u16::from_be_bytes([pending[4], pending[5]]) as usize;
    let pad = pending[6] as usize;
    if pending.len() < 8 + len + pad {
        return Ok(None);
    }
    let content = pending[8..8 + len].to_vec();
    pending.drain(..8 + len + pad);
    Ok(Some((kind, content)))
}

fn cgi_header_end(buf: &[u8]) -> Option<usize> {
    let crlf = buf.windows(4).position(|w| w == b"\r\n\r\n").map(|i| i + 4);
    let lf = buf.windows(2).position(|w| w == b"\n\n").map(|i| i + 2);
    match (crlf, lf) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_are_padded_to_eight_bytes() {
        let mut out = Vec::new();
        record(&mut out, STDIN, b"abc");
        assert_eq!(out.len(), 8 + 3 + 5);
        assert_eq!(&out[..8], &[1, STDIN, 0, 1, 0, 3, 5, 0]);
    }

    #[test]
    fn reassembles_stdout_across_reads() {
        let mut stream = Vec::new();
        record(&mut stream, STDERR, b"Primary script unknown");
        record(
            &mut stream,
            STDOUT,
            b"Status: 404 Not Found\r\nContent-type: text/html\r\n\r\nFile not found.\n",
        );
        let mut r = RecordReader::default();
        let limits = Limits::default();
        let mut answer = None;
        for piece in stream.chunks(5) {
            if let Some(a) = r.feed(piece, &limits, 1, 2) {
                answer = Some(a);
                break;
            }
        }
        match answer {
            Some(Answer::Response { status, stderr, .. }) => {
                assert_eq!(status, 404);
                assert_eq!(stderr.as_deref(), Some("Primary script unknown"));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_page_is_split_into_status_and_a_bounded_body() {
        let stdout = b"Content-Type: application/json\r\n\r\n{\"pool\":\"www\"}";
        let page = page_from_stdout(stdout, 1024).expect("a complete header");
        assert_eq!(page.status, 200);
        assert_eq!(page.body, "{\"pool\":\"www\"}");
        assert!(!page.truncated);
        let cut = page_from_stdout(stdout, 4).expect("a complete header");
        assert_eq!(cut.body, "{\"po");
        assert!(cut.truncated);
        let denied = page_from_stdout(b"Status: 403 Forbidden\r\n\r\nAccess denied.", 64)
            .expect("a complete header");
        assert_eq!(denied.status, 403);
        assert!(page_from_stdout(b"Content-Type: text/plain\r\n", 64).is_none());
    }

    #[test]
    fn the_status_request_names_the_page_and_its_query() {
        let bytes = request_bytes(&Script {
            name: "/fpm-status",
            query: "json",
            uri: "/fpm-status?json",
            host: "localhost",
        });
        let text = String::from_utf8_lossy(&bytes);
        assert!(text.contains("SCRIPT_NAME/fpm-status"), "{text}");
        assert!(text.contains("QUERY_STRINGjson"), "{text}");
        assert!(text.contains("REQUEST_URI/fpm-status?json"), "{text}");
    }

    #[test]
    fn http_bytes_on_a_fastcgi_socket_are_malformed() {
        let mut r = RecordReader::default();
        let a = r.feed(
            b"HTTP/1.1 400 Bad Request\r\n\r\n",
            &Limits::default(),
            1,
            1,
        );
        assert!(matches!(a, Some(Answer::Malformed { .. })), "{a:?}");
    }
}

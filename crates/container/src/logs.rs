//! `GET /containers/{id}/logs?stdout=1&stderr=1&timestamps=1&tail=N`: without a TTY the
//! engine multiplexes stdout and stderr in frames (a header of stream byte, three zero bytes
//! and a big-endian u32 length, then the payload); with one it sends the raw bytes. Each line
//! starts with its RFC 3339 timestamp.

use std::time::SystemTime;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogStream {
    Stdout,
    Stderr,
    /// A TTY container's single stream.
    Tty,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogLine {
    pub stream: LogStream,
    pub at: Option<SystemTime>,
    pub text: String,
}

/// The lines of a logs answer, oldest first, each cut at `max_line` bytes (on a character
/// boundary); the last `keep` lines are kept.
pub fn demux_logs(body: &[u8], max_line: usize, keep: usize) -> Vec<LogLine> {
    let mut lines = Vec::new();
    let mut push = |stream: LogStream, payload: &[u8]| {
        for raw in payload.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
            let text = String::from_utf8_lossy(raw);
            let text = text.trim_end_matches('\r');
            let (at, text) = match text.split_once(' ') {
                Some((stamp, rest)) => match humantime::parse_rfc3339_weak(stamp) {
                    Ok(t) => (Some(t), rest),
                    Err(_) => (None, text),
                },
                None => (None, text),
            };
            lines.push(LogLine {
                stream,
                at,
                text: cut(text, max_line),
            });
        }
    };
    if is_framed(body) {
        let mut rest = body;
        while rest.len() >= 8 {
            let stream = match rest[0] {
                2 => LogStream::Stderr,
                _ => LogStream::Stdout,
            };
            let len = u32::from_be_bytes([rest[4], rest[5], rest[6], rest[7]]) as usize;
            let end = (8 + len).min(rest.len());
            push(stream, &rest[8..end]);
            rest = &rest[end..];
        }
    } else {
        push(LogStream::Tty, body);
    }
    let skip = lines.len().saturating_sub(keep);
    lines.drain(..skip);
    lines
}

fn is_framed(body: &[u8]) -> bool {
    body.len() >= 8 && body[0] <= 2 && body[1..4] == [0, 0, 0]
}

fn cut(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_frames_of_a_restarting_container() {
        // Captured: `logs?stdout=1&stderr=1&tail=4&timestamps=1` of a container that prints
        // "starting app" and a fatal line on stderr, then exits 3.
        let body = include_bytes!("../tests/fixtures/logs-loop.bin");
        let lines = demux_logs(body, 200, 10);
        assert_eq!(lines.len(), 4);
        let streams: Vec<LogStream> = lines.iter().map(|l| l.stream).collect();
        assert!(streams.contains(&LogStream::Stderr) && streams.contains(&LogStream::Stdout));
        let fatal = lines
            .iter()
            .find(|l| l.stream == LogStream::Stderr)
            .expect("stderr");
        assert_eq!(fatal.text, "fatal: cannot open /data/db");
        assert!(fatal.at.is_some(), "the timestamp is parsed off the line");
        assert!(lines.windows(2).all(|w| w[0].at <= w[1].at), "oldest first");
        assert_eq!(demux_logs(body, 200, 1).len(), 1, "only the last `keep`");
    }

    #[test]
    fn a_tty_container_and_long_lines() {
        let body = "2026-12-02T04:36:04.884364643Z listening on :80\r\nno stamp here\n".as_bytes();
        let lines = demux_logs(body, 9, 10);
        assert_eq!(lines[0].stream, LogStream::Tty);
        assert_eq!(lines[0].text, "listening…");
        assert_eq!(lines[1].at, None);
        assert_eq!(lines[1].text, "no stamp …");
    }

    #[test]
    fn a_cut_frame_does_not_panic() {
        let mut body = vec![1u8, 0, 0, 0, 0, 0, 0, 100];
        body.extend_from_slice(b"short");
        assert_eq!(demux_logs(&body, 100, 10)[0].text, "short");
    }
}

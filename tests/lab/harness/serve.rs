//! `why502 serve` in the lab: started in the namespace like the daemons it diagnoses, asked
//! over its unix socket with curl as a panel would, and with raw sockets as clients that
//! misbehave (a slowloris, a malformed request line).

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus};
use std::time::Duration;

use super::agent::AGENT_BIN;
use super::lab::Lab;
use super::process::run_capped;
use super::wait::poll_until;

const SERVE: &str = "why502-serve";

/// One answer from serve: HTTP status and body.
#[derive(Debug, Clone)]
pub struct ServeAnswer {
    pub status: u16,
    pub body: String,
}

impl ServeAnswer {
    /// The body as JSON; a report or error report must validate against the schema.
    pub fn json(&self) -> serde_json::Value {
        let v: serde_json::Value = serde_json::from_str(&self.body).unwrap_or_else(|e| {
            panic!(
                "serve answered {} with no JSON ({e}): {}",
                self.status, self.body
            )
        });
        if v.get("upstreams").is_some() {
            if let Err(e) = super::agent::validate_report(&v) {
                panic!("{e}\n{}", self.body);
            }
        }
        v
    }
}

impl Lab {
    /// Starts `why502 serve --socket SOCKET EXTRA...` in the namespace; returns once the
    /// socket accepts.
    pub fn start_serve(&mut self, socket: &Path, extra: &[&str]) {
        let mut args = vec![
            "serve".to_string(),
            "--socket".to_string(),
            socket.display().to_string(),
        ];
        args.extend(extra.iter().map(|a| a.to_string()));
        self.spawn(SERVE, Path::new(AGENT_BIN), &args, libc::SIGTERM);
        let socket = socket.to_path_buf();
        self.await_ready(
            SERVE,
            "serve accepting on its socket",
            |_| UnixStream::connect(&socket).is_ok(),
            |lab| lab.serve_stderr(),
        );
    }

    /// SIGTERM to serve and its exit status (Err: it had to be SIGKILLed).
    pub fn stop_serve(&mut self) -> Result<ExitStatus, String> {
        self.stop_process(SERVE)
    }

    pub fn serve_stderr(&self) -> String {
        super::process::read_log(&self.path(&format!("logs/{SERVE}.stderr")))
    }

    /// `curl --unix-socket SOCKET http://why502PATH` (curl's own method and parsing).
    pub fn curl_serve(&self, socket: &Path, path: &str, extra: &[&str]) -> ServeAnswer {
        let url = format!("http://why502{path}");
        let sock = socket.display().to_string();
        let mut args = vec![
            "-s",
            "--max-time",
            "15",
            "--unix-socket",
            &sock,
            "-w",
            "\n%{http_code}",
        ];
        args.extend_from_slice(extra);
        args.push(&url);
        let mut cmd = Command::new(&self.tools.curl);
        cmd.args(&args);
        let out = run_capped(cmd, Duration::from_secs(20));
        assert!(!out.timed_out, "curl {url} over {sock} hung");
        let (body, code) = out.stdout.rsplit_once('\n').unwrap_or(("", &out.stdout));
        ServeAnswer {
            status: code.trim().parse().unwrap_or(0),
            body: body.to_string(),
        }
    }

    /// `n` curls of `path` at once; their answers.
    pub fn curl_serve_concurrently(&self, socket: &Path, path: &str, n: usize) -> Vec<ServeAnswer> {
        std::thread::scope(|s| {
            let handles: Vec<_> = (0..n)
                .map(|_| s.spawn(|| self.curl_serve(socket, path, &[])))
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().expect("a curl thread panicked"))
                .collect()
        })
    }
}

/// A client that sends `bytes` and then reads what comes back for up to `wait`: the text,
/// and whether the server closed the connection within that time.
pub fn raw_exchange(socket: &Path, bytes: &[u8], wait: Duration) -> (String, bool) {
    let mut s = UnixStream::connect(socket).expect("connect to serve");
    s.write_all(bytes).expect("send");
    s.set_read_timeout(Some(wait)).expect("read timeout");
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    let closed = loop {
        match s.read(&mut buf) {
            Ok(0) => break true,
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => break true,
            Err(_) => break false,
        }
    };
    (String::from_utf8_lossy(&got).into_owned(), closed)
}

/// Opens a connection and sends the start of a request head, never its end: a slowloris.
pub fn slowloris(socket: &Path) -> UnixStream {
    let mut s = UnixStream::connect(socket).expect("connect to serve");
    s.write_all(b"GET /v1/health HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        .expect("send the start of a head");
    s
}

/// Whether serve closed `s` within `wait` (a read returns end of stream).
pub fn closed_within(s: &mut UnixStream, wait: Duration) -> bool {
    s.set_read_timeout(Some(Duration::from_millis(200)))
        .expect("read timeout");
    poll_until(wait, || {
        let mut buf = [0u8; 512];
        match s.read(&mut buf) {
            Ok(0) => Some(()),
            Ok(_) => None,
            Err(e)
                if e.kind() == std::io::ErrorKind::WouldBlock
                    || e.kind() == std::io::ErrorKind::TimedOut =>
            {
                None
            }
            Err(_) => Some(()),
        }
    })
    .is_some()
}

pub fn serve_socket_path(lab: &Lab) -> PathBuf {
    lab.path("run/why502.sock")
}

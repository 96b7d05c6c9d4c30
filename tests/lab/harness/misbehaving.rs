//! Misbehaving HTTP backends: a small python TCP server that listens like a
//! healthy backend (so the agent's `backend_up` step passes) but answers in
//! one specific broken way, so that nginx's error log is the evidence.
//!
//! The program text is fixed (`BACKEND_PY`); it is written into the lab's
//! temp dir as `bin/misbehaving_backend.py` and run as
//! `python3 bin/misbehaving_backend.py BEHAVIOUR BIND PORT` — explicit argv,
//! no shell. It prints `ready ...` once it listens, serves each connection in
//! its own thread, and exits 0 on SIGTERM.

use super::lab::{make_dir, set_mode, write_file, Lab};
use super::process::read_log;

/// The line the backend prints (flushed) once its socket listens.
const READY_MARKER: &str = "ready ";

/// Where the program is written, relative to the lab's temp dir.
const SCRIPT: &str = "bin/misbehaving_backend.py";

/// How the backend answers every request (after reading its header).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Misbehaviour {
    /// `HTTP/1.1 200 OK` with a 16 KiB `X-Big` header: with
    /// `proxy_buffer_size 4k;` nginx logs "upstream sent too big header".
    BigHeader,
    /// Closes the connection without answering: nginx logs "upstream
    /// prematurely closed connection".
    Close,
    /// A valid status line followed by bytes that are no header
    /// (`\x00\x01garbage`): nginx logs "upstream sent invalid header".
    ///
    /// (Bytes that are not HTTP at all — no status line — make nginx log
    /// "upstream sent no valid HTTP/1.0 header" but then pass them on as an
    /// HTTP/0.9 response instead of answering 502; see `NotHttp`.)
    Garbage,
    /// `\x00\x01garbage\r\n\r\n` with no status line. nginx 1.22 logs
    /// "upstream sent no valid HTTP/1.0 header" and relays the bytes as an
    /// HTTP/0.9 response (access log status 009) — no 502.
    NotHttp,
    /// Sleeps `SLOW_SECONDS` (3 s) before a normal 200: with
    /// `proxy_read_timeout 1s;` nginx answers 504 and logs "upstream timed out".
    Slow,
    /// Accepts, reads the request and never sends a byte (until the lab stops it).
    Tarpit,
    /// Every other connection answered 200, the rest closed without a word: half of the
    /// requests through nginx get 502.
    Half,
}

impl Misbehaviour {
    /// The behaviour argument of the python program.
    pub fn arg(self) -> &'static str {
        match self {
            Misbehaviour::BigHeader => "big-header",
            Misbehaviour::Close => "close",
            Misbehaviour::Garbage => "garbage",
            Misbehaviour::NotHttp => "not-http",
            Misbehaviour::Slow => "slow",
            Misbehaviour::Tarpit => "tarpit",
            Misbehaviour::Half => "half",
        }
    }
}

/// The whole backend. argv: BEHAVIOUR BIND PORT.
const BACKEND_PY: &str = r#"# why502 lab: a misbehaving HTTP backend (written by the lab harness).
# usage: python3 misbehaving_backend.py BEHAVIOUR BIND PORT
import signal
import socket
import sys
import threading
import time

OK = (b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 3\r\n"
      b"Connection: close\r\n\r\nok\n")
BIG_HEADER = (b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n"
              b"X-Big: " + b"a" * 16384 + b"\r\n"
              b"Content-Length: 3\r\nConnection: close\r\n\r\nok\n")
GARBAGE = b"HTTP/1.1 200 OK\r\n\x00\x01garbage\r\n\r\n"
NOT_HTTP = b"\x00\x01garbage\r\n\r\n"
SLOW_SECONDS = 3.0
BEHAVIOURS = ("big-header", "close", "garbage", "not-http", "slow", "tarpit", "half")
COUNTER = [0]
COUNTER_LOCK = threading.Lock()


def read_request(conn):
    conn.settimeout(10)
    data = b""
    while b"\r\n\r\n" not in data and len(data) < 65536:
        chunk = conn.recv(4096)
        if not chunk:
            break
        data += chunk


def handle(conn, behaviour):
    try:
        read_request(conn)
        if behaviour == "big-header":
            conn.sendall(BIG_HEADER)
        elif behaviour == "garbage":
            conn.sendall(GARBAGE)
        elif behaviour == "not-http":
            conn.sendall(NOT_HTTP)
        elif behaviour == "slow":
            time.sleep(SLOW_SECONDS)
            conn.sendall(OK)
        elif behaviour == "half":
            with COUNTER_LOCK:
                COUNTER[0] += 1
                n = COUNTER[0]
            if n % 2 == 0:
                conn.sendall(OK)
        elif behaviour == "tarpit":
            # Hold the connection open without a byte; the daemon thread dies with the process.
            time.sleep(3600)
        # "close": say nothing
    except OSError:
        pass
    finally:
        conn.close()


def on_sigterm(signum, frame):
    sys.exit(0)


def main():
    if len(sys.argv) != 4 or sys.argv[1] not in BEHAVIOURS:
        sys.exit("usage: misbehaving_backend.py {%s} BIND PORT" % "|".join(BEHAVIOURS))
    behaviour, bind, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
    signal.signal(signal.SIGTERM, on_sigterm)
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind((bind, port))
    listener.listen(64)
    print("ready %s %s:%d" % (behaviour, bind, port), flush=True)
    try:
        while True:
            conn, _ = listener.accept()
            threading.Thread(target=handle, args=(conn, behaviour), daemon=True).start()
    finally:
        listener.close()


main()
"#;

fn label(behaviour: Misbehaviour, bind: &str, port: u16) -> String {
    format!("python-{}-{bind}-{port}", behaviour.arg())
}

impl Lab {
    /// Starts the misbehaving backend on `bind:port` in the namespace and
    /// waits (at most 5 s) until it prints that it listens.
    pub fn start_misbehaving_backend(&mut self, behaviour: Misbehaviour, bind: &str, port: u16) {
        let script = self.path(SCRIPT);
        if !script.exists() {
            make_dir(&self.path("bin"), 0o755);
            write_file(&script, BACKEND_PY);
            set_mode(&script, 0o644);
        }
        let label = label(behaviour, bind, port);
        let args = vec![
            script.display().to_string(),
            behaviour.arg().to_string(),
            bind.to_string(),
            port.to_string(),
        ];
        let python = self.tools.python3.clone();
        self.spawn(&label, &python, &args, libc::SIGTERM);
        self.wait_for_ready_line(&label);
    }

    /// Waits until the process `label` prints a line starting with `ready `.
    pub(super) fn wait_for_ready_line(&mut self, label: &str) {
        self.await_ready(
            label,
            "did not report that it listens",
            |lab| {
                lab.process_mut(label)
                    .is_some_and(|proc| read_log(proc.stdout_path()).contains(READY_MARKER))
            },
            |_| String::new(),
        );
    }

    /// Stops the backend with SIGTERM and checks that it exited cleanly
    /// (status 0, within the stop grace period).
    #[track_caller]
    pub fn stop_misbehaving_backend(&mut self, behaviour: Misbehaviour, bind: &str, port: u16) {
        let label = label(behaviour, bind, port);
        match self.stop_process(&label) {
            Ok(status) if status.success() => {}
            Ok(status) => panic!(
                "lab {}: {label} exited with {status} on SIGTERM (expected 0)",
                self.scenario()
            ),
            Err(problem) => panic!("lab {}: {problem}", self.scenario()),
        }
    }
}

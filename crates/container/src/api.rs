//! A minimal Docker Engine API client: `GET` over the engine's unix socket with hyper's
//! HTTP/1 client, one connection per request (no pool: a run asks a handful of questions),
//! each request bounded in time and in bytes. Paths are unversioned, so the daemon answers in
//! its own API version and the fields read here exist in every version since 1.24.

use std::path::{Path, PathBuf};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Limited};
use hyper::{Request, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::UnixStream;

/// Bounds of one request.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Connect, request and the whole body.
    pub timeout: Duration,
    /// The body's cap: a list of a few hundred containers is ~1 MiB.
    pub max_body: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            timeout: Duration::from_secs(2),
            max_body: 4 * 1024 * 1024,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("cannot connect to {}: {source}", socket.display())]
    Connect {
        socket: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{} did not answer {path} within {timeout:?}", socket.display())]
    Timeout {
        socket: PathBuf,
        path: String,
        timeout: Duration,
    },
    #[error("{} answered {path} with {status}: {message}", socket.display())]
    Status {
        socket: PathBuf,
        path: String,
        status: u16,
        message: String,
    },
    #[error("{}: {path}: {message}", socket.display())]
    Protocol {
        socket: PathBuf,
        path: String,
        message: String,
    },
}

impl EngineError {
    /// The socket refused us for lack of permission (not root, not in the `docker` group).
    pub fn is_permission(&self) -> bool {
        matches!(self, EngineError::Connect { source, .. }
            if source.kind() == std::io::ErrorKind::PermissionDenied)
    }

    pub fn is_not_found(&self) -> bool {
        matches!(self, EngineError::Status { status: 404, .. })
    }
}

#[derive(Debug, Clone)]
pub struct EngineClient {
    socket: PathBuf,
    limits: Limits,
}

impl EngineClient {
    pub fn new(socket: impl Into<PathBuf>, limits: Limits) -> EngineClient {
        EngineClient {
            socket: socket.into(),
            limits,
        }
    }

    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// `GET path` (with its query), the body of a 2xx answer.
    pub async fn get(&self, path: &str) -> Result<Bytes, EngineError> {
        let timeout = self.limits.timeout;
        match tokio::time::timeout(timeout, self.get_unbounded(path)).await {
            Ok(r) => r,
            Err(_) => Err(EngineError::Timeout {
                socket: self.socket.clone(),
                path: path.to_string(),
                timeout,
            }),
        }
    }

    /// `GET path`, its body parsed as JSON.
    pub async fn get_json(&self, path: &str) -> Result<serde_json::Value, EngineError> {
        let body = self.get(path).await?;
        serde_json::from_slice(&body).map_err(|e| self.protocol(path, format!("not JSON: {e}")))
    }

    async fn get_unbounded(&self, path: &str) -> Result<Bytes, EngineError> {
        let stream =
            UnixStream::connect(&self.socket)
                .await
                .map_err(|source| EngineError::Connect {
                    socket: self.socket.clone(),
                    source,
                })?;
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| self.protocol(path, e.to_string()))?;
        // The connection task ends with the request: the engine closes an idle connection,
        // and dropping `sender` closes ours.
        let driver = tokio::spawn(async move {
            let _ = conn.await;
        });
        let request = Request::get(path)
            // The Engine API wants a Host header; over a unix socket any name does.
            .header(hyper::header::HOST, "docker")
            .header(
                hyper::header::USER_AGENT,
                concat!("why502/", env!("CARGO_PKG_VERSION")),
            )
            .body(Empty::<Bytes>::new())
            .map_err(|e| self.protocol(path, e.to_string()))?;
        let answer = sender.send_request(request).await;
        let result = match answer {
            Err(e) => Err(self.protocol(path, e.to_string())),
            Ok(response) => {
                let status = response.status();
                let body = Limited::new(response.into_body(), self.limits.max_body)
                    .collect()
                    .await
                    .map(|c| c.to_bytes())
                    .map_err(|e| {
                        self.protocol(
                            path,
                            format!("body not read (over {} bytes?): {e}", self.limits.max_body),
                        )
                    });
                match body {
                    Err(e) => Err(e),
                    Ok(body) if status.is_success() => Ok(body),
                    Ok(body) => Err(EngineError::Status {
                        socket: self.socket.clone(),
                        path: path.to_string(),
                        status: status.as_u16(),
                        message: engine_message(status, &body),
                    }),
                }
            }
        };
        drop(sender);
        driver.abort();
        result
    }

    fn protocol(&self, path: &str, message: String) -> EngineError {
        EngineError::Protocol {
            socket: self.socket.clone(),
            path: path.to_string(),
            message,
        }
    }
}

/// The engine's errors are `{"message": "..."}`.
fn engine_message(status: StatusCode, body: &[u8]) -> String {
    serde_json::from_slice::<serde_json::Value>(body)
        .ok()
        .and_then(|v| {
            v.get("message")
                .and_then(|m| m.as_str())
                .map(str::to_string)
        })
        .unwrap_or_else(|| {
            let text = String::from_utf8_lossy(&body[..body.len().min(200)])
                .trim()
                .to_string();
            if text.is_empty() {
                status.canonical_reason().unwrap_or("error").to_string()
            } else {
                text
            }
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::UnixListener;

    /// A one-shot engine on a temp socket: answers the first request with `answer`, and hands
    /// back what was asked.
    async fn engine(
        answer: &'static [u8],
    ) -> (tempfile::TempDir, PathBuf, tokio::task::JoinHandle<String>) {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("docker.sock");
        let listener = UnixListener::bind(&path).expect("bind");
        let task = tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.expect("accept");
            let mut buf = vec![0u8; 4096];
            let n = s.read(&mut buf).await.expect("read");
            if !answer.is_empty() {
                let _ = s.write_all(answer).await;
            } else {
                // Accept and never answer.
                tokio::time::sleep(Duration::from_secs(30)).await;
            }
            String::from_utf8_lossy(&buf[..n]).to_string()
        });
        (dir, path, task)
    }

    #[tokio::test]
    async fn a_get_sends_a_host_and_reads_the_body() {
        let (_d, path, asked) =
            engine(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 12\r\n\r\n{\"Id\":\"abc\"}").await;
        let client = EngineClient::new(&path, Limits::default());
        let v = client
            .get_json("/containers/abc/json")
            .await
            .expect("answer");
        assert_eq!(v["Id"], "abc");
        let asked = asked.await.expect("join");
        assert!(
            asked.starts_with("GET /containers/abc/json HTTP/1.1\r\n"),
            "{asked}"
        );
        assert!(
            asked.to_ascii_lowercase().contains("host: docker"),
            "{asked}"
        );
    }

    #[tokio::test]
    async fn an_engine_error_carries_its_message() {
        let (_d, path, _asked) = engine(
            b"HTTP/1.1 404 Not Found\r\nContent-Length: 42\r\n\r\n{\"message\":\"No such container: nonexist\"}\n",
        )
        .await;
        let client = EngineClient::new(&path, Limits::default());
        let e = client
            .get("/containers/nonexist/json")
            .await
            .expect_err("404");
        assert!(e.is_not_found());
        assert!(e.to_string().contains("No such container: nonexist"), "{e}");
    }

    #[tokio::test]
    async fn an_engine_that_never_answers_is_bounded() {
        let (_d, path, _asked) = engine(b"").await;
        let client = EngineClient::new(
            &path,
            Limits {
                timeout: Duration::from_millis(200),
                ..Limits::default()
            },
        );
        let started = std::time::Instant::now();
        let e = client.get("/containers/json").await.expect_err("timeout");
        assert!(matches!(e, EngineError::Timeout { .. }), "{e}");
        assert!(started.elapsed() < Duration::from_secs(5));
    }

    #[tokio::test]
    async fn a_body_over_the_cap_is_refused() {
        let (_d, path, _asked) = engine(
            b"HTTP/1.1 200 OK\r\nContent-Length: 40\r\n\r\n[\"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\"]",
        )
        .await;
        let client = EngineClient::new(
            &path,
            Limits {
                max_body: 16,
                ..Limits::default()
            },
        );
        assert!(client.get("/containers/json").await.is_err());
    }

    #[tokio::test]
    async fn no_socket_is_a_connect_error_naming_it() {
        let dir = tempfile::tempdir().expect("tempdir");
        let client = EngineClient::new(dir.path().join("absent.sock"), Limits::default());
        let e = client.get("/_ping").await.expect_err("no socket");
        assert!(matches!(e, EngineError::Connect { .. }));
        assert!(e.to_string().contains("absent.sock"), "{e}");
    }
}

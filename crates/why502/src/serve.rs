//! `why502 serve --socket PATH`: HTTP/1.1 over a unix socket for hosting panels.
//!
//! `GET /v1/report` (`?server_name=`, `?upstream=`, `?all=1`, `?since=`, as the CLI flags),
//! `/v1/health`, `/metrics`, `/v1/causes`, `/v1/tree`. A panel refreshing every second must
//! not run a diagnosis per view, so requests for the same question share one diagnosis (a
//! single flight: the first starts it, the rest wait for it) and its answer is reused for
//! `--cache`. The server is bounded like the agent: the request head (`MAX_HEAD`), the URI,
//! the time to send the head, the life of a connection, the number of connections and of
//! distinct questions in memory. SIGTERM stops accepting, lets the requests in flight finish
//! (at most `DRAIN`) and removes the socket.

use std::collections::HashMap;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use anyhow::{bail, Context};
use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{HeaderValue, ALLOW, CONTENT_TYPE};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::sync::watch;
use why502_model::Report;

use crate::cli::{DiagnoseArgs, ServeArgs};

/// The request line and headers, at most (hyper's buffer; its floor is 8 KiB).
const MAX_HEAD: usize = 16 * 1024;
const MAX_URI: usize = 2048;
/// A client has this long to send its request head (a slowloris is cut off here).
const HEADER_TIMEOUT: Duration = Duration::from_secs(5);
/// A connection lives at most this long, however it is used: an idle keep-alive connection
/// does not hold a slot for ever.
const CONNECTION_LIFETIME: Duration = Duration::from_secs(120);
/// After SIGTERM, the requests in flight get this long to finish.
const DRAIN: Duration = Duration::from_secs(15);
/// Distinct questions (server name, upstream, all, since) remembered at once.
const MAX_QUESTIONS: usize = 256;

/// What a request asks: the diagnose flags a query may set.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Question {
    server_name: Option<String>,
    upstream: Option<String>,
    all: bool,
    since: Option<Duration>,
}

/// One diagnosis's answer, shared by every request that asked for it.
#[derive(Debug)]
struct Answer {
    /// The report (or the error report) as served, JSON.
    json: String,
    report: Option<Report>,
    finished: Instant,
}

struct State {
    base: DiagnoseArgs,
    cache: Duration,
    /// Per question: the newest diagnosis, running (`None` yet) or done.
    flights: Mutex<HashMap<Question, watch::Receiver<Option<Arc<Answer>>>>>,
    requests: AtomicU64,
    diagnoses: AtomicU64,
    started: Instant,
    started_at: SystemTime,
}

pub fn run(args: &ServeArgs) -> std::process::ExitCode {
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("why502 serve: cannot start the async runtime: {e}");
            return std::process::ExitCode::from(3);
        }
    };
    let result = runtime.block_on(serve(args));
    runtime.shutdown_timeout(Duration::from_secs(1));
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("why502 serve: {e:#}");
            std::process::ExitCode::from(3)
        }
    }
}

async fn serve(args: &ServeArgs) -> anyhow::Result<()> {
    // The agent config is read once, here: a bad one stops the server at start, not per request.
    crate::options(&args.diagnose_args())?;
    let (listener, owned) = listen(args)?;
    let state = Arc::new(State {
        base: args.diagnose_args(),
        cache: args.cache,
        flights: Mutex::new(HashMap::new()),
        requests: AtomicU64::new(0),
        diagnoses: AtomicU64::new(0),
        started: Instant::now(),
        started_at: SystemTime::now(),
    });
    eprintln!(
        "why502 serve: listening on {}{}",
        args.socket.display(),
        if owned {
            format!(" (mode {:04o})", args.mode)
        } else {
            " (socket passed by the service manager)".to_string()
        }
    );
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("cannot watch for SIGTERM")?;
    let mut int = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())
        .context("cannot watch for SIGINT")?;
    let (stop_tx, stop_rx) = watch::channel(false);
    let slots = Arc::new(tokio::sync::Semaphore::new(args.max_connections.max(1)));
    let mut connections = tokio::task::JoinSet::new();
    loop {
        let permit = tokio::select! {
            p = slots.clone().acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => break,
            },
            _ = term.recv() => break,
            _ = int.recv() => break,
        };
        let stream = tokio::select! {
            a = listener.accept() => match a {
                Ok((s, _)) => s,
                Err(e) => {
                    eprintln!("why502 serve: accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = term.recv() => break,
            _ = int.recv() => break,
        };
        let state = state.clone();
        let mut stop = stop_rx.clone();
        connections.spawn(async move {
            let _permit = permit;
            let service = service_fn(move |req| {
                let state = state.clone();
                async move { Ok::<_, std::convert::Infallible>(answer(&state, req).await) }
            });
            let conn = http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_TIMEOUT)
                .max_buf_size(MAX_HEAD)
                .serve_connection(TokioIo::new(stream), service);
            let mut conn = std::pin::pin!(conn);
            let lifetime = tokio::time::sleep(CONNECTION_LIFETIME);
            tokio::pin!(lifetime);
            tokio::select! {
                _ = conn.as_mut() => {}
                _ = &mut lifetime => {}
                _ = async { let _ = stop.wait_for(|s| *s).await; } => {
                    // Finish the request in flight, then close.
                    conn.as_mut().graceful_shutdown();
                    let _ = tokio::time::timeout(DRAIN, conn.as_mut()).await;
                }
            }
        });
        // Reap the finished connections so the set does not grow with the server's age.
        while connections.try_join_next().is_some() {}
    }
    eprintln!("why502 serve: stopping; finishing the requests in flight");
    let _ = stop_tx.send(true);
    let _ = tokio::time::timeout(DRAIN, async {
        while connections.join_next().await.is_some() {}
    })
    .await;
    if owned {
        let _ = std::fs::remove_file(&args.socket);
    }
    Ok(())
}

/// The listener: the socket systemd passed (socket activation), else a new socket at
/// `--socket`. `true` when the agent made the socket (and so removes it on exit).
fn listen(args: &ServeArgs) -> anyhow::Result<(tokio::net::UnixListener, bool)> {
    if let Some(l) = activated_socket()? {
        return Ok((l, false));
    }
    let path = &args.socket;
    make_room(path)?;
    // The socket is created with no access beyond --mode, never wider for a moment.
    let old = nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(0o777 & !args.mode));
    let bound = std::os::unix::net::UnixListener::bind(path);
    nix::sys::stat::umask(old);
    let listener = bound.with_context(|| format!("cannot listen on {}", path.display()))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(args.mode))
        .with_context(|| format!("cannot set the mode of {}", path.display()))?;
    if let Some(group) = &args.group {
        let gid = nix::unistd::Group::from_name(group)
            .with_context(|| format!("cannot look up group {group}"))?
            .with_context(|| format!("no group {group}"))?
            .gid;
        nix::unistd::chown(path, None, Some(gid))
            .with_context(|| format!("cannot give {} to group {group}", path.display()))?;
    }
    listener
        .set_nonblocking(true)
        .context("cannot make the socket non-blocking")?;
    let listener =
        tokio::net::UnixListener::from_std(listener).context("cannot register the socket")?;
    Ok((listener, true))
}

/// A path already there: a stale socket (nobody accepts) is replaced; a live one means
/// another server runs; anything else is not ours to remove.
fn make_room(path: &Path) -> anyhow::Result<()> {
    match std::fs::symlink_metadata(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e).with_context(|| format!("cannot check {}", path.display())),
        Ok(m) if m.file_type().is_socket() => match std::os::unix::net::UnixStream::connect(path) {
            Ok(_) => bail!("{} is in use: another server answers there", path.display()),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
                std::fs::remove_file(path)
                    .with_context(|| format!("cannot remove the stale socket {}", path.display()))
            }
            Err(e) => {
                Err(e).with_context(|| format!("cannot tell whether {} is in use", path.display()))
            }
        },
        Ok(_) => bail!(
            "{} exists and is not a socket: refusing to replace it",
            path.display()
        ),
    }
}

/// systemd socket activation: `LISTEN_PID` is this process and `LISTEN_FDS` >= 1, so fd 3
/// is a listening unix socket handed over.
fn activated_socket() -> anyhow::Result<Option<tokio::net::UnixListener>> {
    let for_us = std::env::var("LISTEN_PID")
        .ok()
        .and_then(|p| p.parse::<u32>().ok())
        .is_some_and(|p| p == std::process::id());
    let fds = std::env::var("LISTEN_FDS")
        .ok()
        .and_then(|n| n.parse::<u32>().ok())
        .unwrap_or(0);
    if !for_us || fds == 0 {
        return Ok(None);
    }
    use std::os::fd::FromRawFd;
    // SAFETY: the service manager passed fd 3 (SD_LISTEN_FDS_START) to this process, as
    // LISTEN_PID and LISTEN_FDS say; nothing else in the process owns it.
    let std_listener = unsafe { std::os::unix::net::UnixListener::from_raw_fd(3) };
    std_listener
        .set_nonblocking(true)
        .context("the socket passed by the service manager is not usable")?;
    Ok(Some(
        tokio::net::UnixListener::from_std(std_listener)
            .context("the socket passed by the service manager is not a unix socket")?,
    ))
}

type Body = Full<Bytes>;

async fn answer(state: &Arc<State>, req: Request<Incoming>) -> Response<Body> {
    state.requests.fetch_add(1, Ordering::Relaxed);
    let started = Instant::now();
    let started_at = SystemTime::now();
    if req.uri().to_string().len() > MAX_URI {
        return error(
            StatusCode::URI_TOO_LONG,
            "the URI is too long",
            started,
            started_at,
        );
    }
    let path = req.uri().path();
    let known = [
        "/v1/report",
        "/v1/health",
        "/metrics",
        "/v1/causes",
        "/v1/tree",
    ];
    if !known.contains(&path) {
        return error(
            StatusCode::NOT_FOUND,
            &format!("no such path {path:?}; try {}", known.join(", ")),
            started,
            started_at,
        );
    }
    if req.method() != Method::GET {
        let mut r = error(
            StatusCode::METHOD_NOT_ALLOWED,
            &format!("{} is not allowed here: GET only", req.method()),
            started,
            started_at,
        );
        r.headers_mut()
            .insert(ALLOW, HeaderValue::from_static("GET"));
        return r;
    }
    let query = req.uri().query().unwrap_or("");
    match path {
        "/v1/report" => match question(query) {
            Ok(q) => json(StatusCode::OK, ask(state, q).await.json.clone()),
            Err(e) => error(StatusCode::BAD_REQUEST, &e, started, started_at),
        },
        "/metrics" => {
            if !query.is_empty() {
                return error(
                    StatusCode::BAD_REQUEST,
                    "/metrics takes no query",
                    started,
                    started_at,
                );
            }
            let a = ask(state, Question::default_run()).await;
            let mut text = match &a.report {
                Some(r) => crate::render::metrics::prometheus(r),
                None => "# HELP why502_status Overall status: 0 ok, 1 warning, 2 break, 3 unknown.\n# TYPE why502_status gauge\nwhy502_status 3\n".to_string(),
            };
            text.push_str(&serve_metrics(state, &a));
            let mut r = Response::new(Full::new(Bytes::from(text)));
            r.headers_mut().insert(
                CONTENT_TYPE,
                HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
            );
            r
        }
        "/v1/health" => {
            let v = serde_json::json!({
                "schema": why502_model::SCHEMA,
                "status": "ok",
                "host": why502_engine::hostname(),
                "started_at": humantime::format_rfc3339_seconds(state.started_at).to_string(),
                "duration_ms": 0,
                "version": env!("CARGO_PKG_VERSION"),
                "uptime_s": state.started.elapsed().as_secs(),
                "requests": state.requests.load(Ordering::Relaxed),
                "diagnoses": state.diagnoses.load(Ordering::Relaxed),
            });
            json(StatusCode::OK, format!("{v:#}\n"))
        }
        "/v1/causes" => json(StatusCode::OK, crate::render::catalog::json()),
        _ => json(StatusCode::OK, crate::render::tree::json()),
    }
}

impl Question {
    fn default_run() -> Question {
        Question {
            server_name: None,
            upstream: None,
            all: false,
            since: None,
        }
    }
}

/// The query of `/v1/report`: each key at most once, known keys only, values as the CLI
/// takes them.
fn question(query: &str) -> Result<Question, String> {
    let mut q = Question::default_run();
    let mut seen = Vec::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (key, raw) = pair.split_once('=').unwrap_or((pair, ""));
        let value =
            percent_decode(raw).ok_or_else(|| format!("{key}: not valid percent-encoded UTF-8"))?;
        if seen.contains(&key) {
            return Err(format!("{key} is given twice"));
        }
        seen.push(key);
        match key {
            "server_name" if !value.is_empty() => q.server_name = Some(value),
            "upstream" if !value.is_empty() => q.upstream = Some(value),
            "all" => {
                q.all = match value.as_str() {
                    "" | "1" | "true" | "yes" => true,
                    "0" | "false" | "no" => false,
                    other => return Err(format!("all={other}: use 1 or 0")),
                }
            }
            "since" => {
                q.since = Some(
                    crate::cli::parse_duration(&value)
                        .map_err(|e| format!("since={value}: {e}"))?,
                )
            }
            "server_name" | "upstream" => return Err(format!("{key} is empty")),
            other => {
                return Err(format!(
                "unknown parameter {other:?}; /v1/report takes server_name, upstream, all, since"
            ))
            }
        }
    }
    Ok(q)
}

/// `%XX` and `+` decoding of a query value.
fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let hex = s.get(i + 1..i + 3)?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

/// The answer to `q`: a fresh one from the cache, the one being computed, or a new diagnosis
/// (started as a task, so a client that goes away does not cancel it for the others).
async fn ask(state: &Arc<State>, q: Question) -> Arc<Answer> {
    let mut rx = {
        let mut flights = match state.flights.lock() {
            Ok(f) => f,
            Err(poisoned) => poisoned.into_inner(),
        };
        let reusable = flights.get(&q).filter(|rx| match rx.borrow().as_ref() {
            None => true,
            Some(a) => a.finished.elapsed() < state.cache,
        });
        match reusable {
            Some(rx) => rx.clone(),
            None => {
                let cache = state.cache;
                flights.retain(|_, rx| {
                    rx.borrow()
                        .as_ref()
                        .is_none_or(|a| a.finished.elapsed() < cache)
                });
                if flights.len() >= MAX_QUESTIONS {
                    let started = Instant::now();
                    let v = crate::error_json(
                        &format!("{MAX_QUESTIONS} different questions are being answered already; ask again in {cache:?}"),
                        started,
                        SystemTime::now(),
                    );
                    return Arc::new(Answer {
                        json: format!("{v:#}\n"),
                        report: None,
                        finished: started,
                    });
                }
                let (tx, rx) = watch::channel(None);
                flights.insert(q.clone(), rx.clone());
                let state2 = state.clone();
                tokio::spawn(async move {
                    let a = diagnose(&state2, &q).await;
                    let _ = tx.send(Some(Arc::new(a)));
                });
                rx
            }
        }
    };
    let got = match rx.wait_for(|a| a.is_some()).await {
        Ok(a) => a.clone(),
        Err(_) => None,
    };
    got.unwrap_or_else(unreachable_answer)
}

/// What a waiter gets if the diagnosis task died without answering (a panic in it).
fn unreachable_answer() -> Arc<Answer> {
    let v = crate::error_json(
        "the diagnosis task ended without an answer",
        Instant::now(),
        SystemTime::now(),
    );
    Arc::new(Answer {
        json: format!("{v:#}\n"),
        report: None,
        finished: Instant::now(),
    })
}

async fn diagnose(state: &State, q: &Question) -> Answer {
    state.diagnoses.fetch_add(1, Ordering::Relaxed);
    let started = Instant::now();
    let started_at = SystemTime::now();
    let mut args = state.base.clone();
    args.server_name = q.server_name.clone();
    args.upstream = q.upstream.clone();
    args.all = q.all;
    if let Some(s) = q.since {
        args.host.since = s;
    }
    let outcome = match crate::options(&args) {
        Ok(opts) => tokio::time::timeout(
            args.host.timeout + Duration::from_millis(500),
            why502_engine::diagnose(&opts),
        )
        .await
        .map_err(|_| {
            anyhow::anyhow!(
                "the diagnosis did not finish within --timeout {:?}",
                args.host.timeout
            )
        })
        .and_then(|r| r.map_err(anyhow::Error::from)),
        Err(e) => Err(e),
    };
    match outcome {
        Ok(report) => Answer {
            json: serde_json::to_string_pretty(&report)
                .map(|s| s + "\n")
                .unwrap_or_default(),
            report: Some(report),
            finished: Instant::now(),
        },
        Err(e) => {
            let v = crate::error_json(&format!("{e:#}"), started, started_at);
            Answer {
                json: format!("{v:#}\n"),
                report: None,
                finished: Instant::now(),
            }
        }
    }
}

fn serve_metrics(state: &State, a: &Answer) -> String {
    format!(
        "# HELP why502_serve_requests_total HTTP requests answered by serve.\n# TYPE why502_serve_requests_total counter\nwhy502_serve_requests_total {}\n\
         # HELP why502_serve_diagnoses_total Diagnoses serve ran (requests for the same question share one).\n# TYPE why502_serve_diagnoses_total counter\nwhy502_serve_diagnoses_total {}\n\
         # HELP why502_serve_report_age_seconds Age of the diagnosis these figures come from.\n# TYPE why502_serve_report_age_seconds gauge\nwhy502_serve_report_age_seconds {:.3}\n",
        state.requests.load(Ordering::Relaxed),
        state.diagnoses.load(Ordering::Relaxed),
        a.finished.elapsed().as_secs_f64()
    )
}

fn json(status: StatusCode, body: String) -> Response<Body> {
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    r
}

fn error(
    status: StatusCode,
    message: &str,
    started: Instant,
    started_at: SystemTime,
) -> Response<Body> {
    let mut v = crate::error_json(message, started, started_at);
    v["http_status"] = serde_json::json!(status.as_u16());
    json(status, format!("{v:#}\n"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queries_are_read_as_the_cli_flags() {
        let q = question("server_name=shop.example&since=15m&all=1").expect("valid");
        assert_eq!(q.server_name.as_deref(), Some("shop.example"));
        assert_eq!(q.since, Some(Duration::from_secs(900)));
        assert!(q.all);
        let q = question("upstream=unix%3A%2Frun%2Fphp%2Fx.sock").expect("valid");
        assert_eq!(q.upstream.as_deref(), Some("unix:/run/php/x.sock"));
        assert_eq!(question("").expect("valid"), Question::default_run());
        for bad in [
            "since=banana",
            "since=0s",
            "all=maybe",
            "colour=red",
            "server_name=a&server_name=b",
            "upstream=%zz",
            "upstream=%ff",
            "server_name=",
        ] {
            assert!(question(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_path_in_the_way_is_not_removed_unless_a_stale_socket() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("file");
        std::fs::write(&file, "x").expect("write");
        assert!(make_room(&file).is_err());
        assert!(file.exists(), "a regular file is never removed");
        let live = dir.path().join("live.sock");
        let _l = std::os::unix::net::UnixListener::bind(&live).expect("bind");
        assert!(
            make_room(&live).is_err(),
            "a socket someone accepts on is in use"
        );
        assert!(live.exists());
        let stale = dir.path().join("stale.sock");
        drop(std::os::unix::net::UnixListener::bind(&stale).expect("bind"));
        make_room(&stale).expect("a stale socket is replaced");
        assert!(!stale.exists());
        make_room(&dir.path().join("absent.sock")).expect("nothing in the way");
    }
}

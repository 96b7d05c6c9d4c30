//! Each transport against a real listening socket that behaves one way.

use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, UnixListener};
use why502_request::{fastcgi_request, grpc_handshake, http_request, Answer, Ask, Limits, Target};

fn ask() -> Ask {
    Ask {
        host: "lab.test".into(),
        path: "/".into(),
    }
}

fn limits(read_ms: u64) -> Limits {
    Limits {
        connect_timeout: Duration::from_secs(2),
        read_timeout: Duration::from_millis(read_ms),
        max_header: 64 * 1024,
    }
}

/// A TCP server that answers every connection with `reply` (after reading the request), or
/// says nothing when `reply` is None.
async fn server(reply: Option<Vec<u8>>, delay: Duration) -> Target {
    let l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = l.local_addr().expect("addr");
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            let reply = reply.clone();
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                let _ = s.read(&mut buf).await;
                tokio::time::sleep(delay).await;
                match reply {
                    Some(r) => {
                        let _ = s.write_all(&r).await;
                    }
                    // Tarpit: hold the connection open.
                    None => tokio::time::sleep(Duration::from_secs(30)).await,
                }
            });
        }
    });
    Target::Tcp(addr)
}

#[tokio::test]
async fn healthy_http_answer_is_measured() {
    let t = server(
        Some(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok".to_vec()),
        Duration::ZERO,
    )
    .await;
    match http_request(&t, &ask(), &limits(2000)).await {
        Answer::Response {
            status,
            header_bytes,
            ..
        } => {
            assert_eq!(status, 200);
            assert_eq!(
                header_bytes,
                "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n".len()
            );
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn tarpit_gives_no_answer_within_the_read_timeout() {
    let t = server(None, Duration::ZERO).await;
    let start = Instant::now();
    let a = http_request(&t, &ask(), &limits(300)).await;
    assert!(matches!(a, Answer::NoAnswer { .. }), "{a:?}");
    assert!(start.elapsed() < Duration::from_secs(3));
}

#[tokio::test]
async fn close_without_answer_and_big_header_and_garbage() {
    let closed = server(Some(Vec::new()), Duration::ZERO).await;
    assert!(matches!(
        http_request(&closed, &ask(), &limits(2000)).await,
        Answer::Closed { bytes: 0, .. }
    ));

    let mut big = b"HTTP/1.1 200 OK\r\nX-Big: ".to_vec();
    big.extend(std::iter::repeat_n(b'a', 16384));
    big.extend_from_slice(b"\r\n\r\n");
    let big_t = server(Some(big), Duration::ZERO).await;
    match http_request(&big_t, &ask(), &limits(2000)).await {
        Answer::Response { header_bytes, .. } => assert!(header_bytes > 16384),
        other => panic!("{other:?}"),
    }

    let garbage = server(Some(b"\x00\x01garbage\r\n\r\n".to_vec()), Duration::ZERO).await;
    assert!(matches!(
        http_request(&garbage, &ask(), &limits(2000)).await,
        Answer::Malformed { .. }
    ));
}

#[tokio::test]
async fn slow_answer_is_no_answer_under_a_shorter_read_timeout() {
    let t = server(
        Some(b"HTTP/1.1 200 OK\r\n\r\n".to_vec()),
        Duration::from_millis(800),
    )
    .await;
    assert!(matches!(
        http_request(&t, &ask(), &limits(200)).await,
        Answer::NoAnswer { .. }
    ));
    assert!(matches!(
        http_request(&t, &ask(), &limits(3000)).await,
        Answer::Response { .. }
    ));
}

#[tokio::test]
async fn unix_socket_and_refused_connections() {
    let dir = tempfile_dir();
    let path = dir.join("app.sock");
    let l = UnixListener::bind(&path).expect("bind unix");
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            let mut buf = [0u8; 4096];
            let _ = s.read(&mut buf).await;
            let _ = s.write_all(b"HTTP/1.1 204 No Content\r\n\r\n").await;
        }
    });
    let a = http_request(&Target::Unix(path.clone()), &ask(), &limits(2000)).await;
    assert!(matches!(a, Answer::Response { status: 204, .. }), "{a:?}");

    let missing = Target::Unix(dir.join("missing.sock"));
    assert!(matches!(
        http_request(&missing, &ask(), &limits(2000)).await,
        Answer::ConnectFailed { .. }
    ));
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn fastcgi_to_an_http_server_is_malformed_and_grpc_to_http1_too() {
    let http = server(
        Some(b"HTTP/1.1 400 Bad Request\r\n\r\n".to_vec()),
        Duration::ZERO,
    )
    .await;
    let a = fastcgi_request(&http, &ask(), &limits(2000)).await;
    assert!(matches!(a, Answer::Malformed { .. }), "{a:?}");
    let g = grpc_handshake(&http, &limits(2000)).await;
    assert!(matches!(g, Answer::Malformed { .. }), "{g:?}");
}

fn tempfile_dir() -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!(
        "why502-request-test-{}-{}",
        std::process::id(),
        rand_suffix()
    ));
    std::fs::create_dir_all(&d).expect("mkdir");
    d
}

fn rand_suffix() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0)
}

//! TLS to a backend: real in-process TLS servers on 127.0.0.1 with certificates made at test
//! time (rcgen), and, for a v1 certificate only OpenSSL makes, `openssl s_server`.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rcgen::{date_time_ymd, BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use why502_request::{
    grpc_handshake_tls, http_request_tls, Answer, Ask, Limits, Target, TlsAnswer, TlsProblem,
    TlsSettings,
};

fn ask() -> Ask {
    Ask {
        host: "backend.test".into(),
        path: "/".into(),
    }
}

fn limits() -> Limits {
    Limits {
        connect_timeout: Duration::from_millis(1500),
        read_timeout: Duration::from_millis(1500),
        max_header: 64 * 1024,
    }
}

struct Issued {
    der: CertificateDer<'static>,
    pem: String,
    key: KeyPair,
}

struct Ca {
    cert: rcgen::Certificate,
    key: KeyPair,
}

fn ca(name: &str) -> Ca {
    let key = KeyPair::generate().unwrap();
    let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.distinguished_name.push(DnType::CommonName, name);
    let cert = p.self_signed(&key).unwrap();
    Ca { cert, key }
}

fn leaf_params(names: &[&str], dates: Option<(i32, i32)>) -> CertificateParams {
    let mut p =
        CertificateParams::new(names.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap();
    p.distinguished_name.push(DnType::CommonName, names[0]);
    if let Some((from, to)) = dates {
        p.not_before = date_time_ymd(from, 1, 1);
        p.not_after = date_time_ymd(to, 2, 1);
    }
    p
}

fn issued_by(ca: &Ca, names: &[&str], dates: Option<(i32, i32)>) -> Issued {
    let key = KeyPair::generate().unwrap();
    let cert = leaf_params(names, dates)
        .signed_by(&key, &ca.cert, &ca.key)
        .unwrap();
    Issued {
        der: cert.der().clone(),
        pem: cert.pem(),
        key,
    }
}

fn self_signed(names: &[&str], as_ca: bool) -> Issued {
    let key = KeyPair::generate().unwrap();
    let mut p = leaf_params(names, None);
    if as_ca {
        // What `openssl req -x509` makes by default.
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    }
    let cert = p.self_signed(&key).unwrap();
    Issued {
        der: cert.der().clone(),
        pem: cert.pem(),
        key,
    }
}

/// A TLS server answering `reply` to whatever it is sent; records the SNI it got.
async fn tls_server(
    leaf: &Issued,
    reply: &'static [u8],
    alpn: &[&[u8]],
) -> (Target, Arc<Mutex<Option<Option<String>>>>) {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(leaf.key.serialize_der()));
    let mut config = rustls::ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(vec![leaf.der.clone()], key)
        .unwrap();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let sni = Arc::new(Mutex::new(None));
    let seen = sni.clone();
    tokio::spawn(async move {
        while let Ok((s, _)) = l.accept().await {
            let acceptor = acceptor.clone();
            let seen = seen.clone();
            tokio::spawn(async move {
                // A client that refuses the certificate ends the handshake: fine.
                let Ok(mut tls) = acceptor.accept(s).await else {
                    return;
                };
                *seen.lock().unwrap() = Some(tls.get_ref().1.server_name().map(String::from));
                let mut buf = [0u8; 4096];
                let _ = tls.read(&mut buf).await;
                let _ = tls.write_all(reply).await;
                let _ = tls.shutdown().await;
            });
        }
    });
    (Target::Tcp(addr), sni)
}

const OK: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n";

fn settings(name: &str, verify: bool, trusted: Option<PathBuf>) -> TlsSettings {
    TlsSettings {
        verify,
        trusted_certificate: trusted,
        ..TlsSettings::nginx_defaults(name)
    }
}

struct TempDir(PathBuf);
impl TempDir {
    fn new() -> TempDir {
        let d = std::env::temp_dir().join(format!(
            "why502-tls-test-{}-{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos()
        ));
        std::fs::create_dir_all(&d).unwrap();
        TempDir(d)
    }
    fn write(&self, name: &str, text: &str) -> PathBuf {
        let p = self.0.join(name);
        std::fs::write(&p, text).unwrap();
        p
    }
}
impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn tls_problem(a: &TlsAnswer) -> &TlsProblem {
    match &a.answer {
        Answer::TlsFailed { problem, .. } => problem,
        other => panic!("expected a TLS failure, got {other:?}"),
    }
}

#[tokio::test]
async fn self_signed_against_another_ca_is_untrusted_when_verify_is_on() {
    let dir = TempDir::new();
    let other = ca("Other CA");
    let trusted = dir.write("ca.pem", &other.cert.pem());
    let leaf = self_signed(&["backend.test"], false);
    let (t, _) = tls_server(&leaf, OK, &[]).await;
    let a = http_request_tls(
        &t,
        &ask(),
        &limits(),
        &settings("backend.test", true, Some(trusted)),
    )
    .await;
    match tls_problem(&a) {
        TlsProblem::Untrusted { self_signed, .. } => assert!(self_signed),
        other => panic!("{other:?}"),
    }
    assert!(a.handshake.is_none());
    assert!(tls_problem(&a)
        .describe()
        .contains("18:self-signed certificate"));
}

#[tokio::test]
async fn self_signed_with_verify_off_completes_and_sends_no_sni() {
    let leaf = self_signed(&["backend.test"], false);
    let (t, sni) = tls_server(&leaf, OK, &[]).await;
    let a = http_request_tls(
        &t,
        &ask(),
        &limits(),
        &settings("backend.test", false, None),
    )
    .await;
    assert!(
        matches!(a.answer, Answer::Response { status: 200, .. }),
        "{a:?}"
    );
    let h = a.handshake.expect("handshake report");
    let cert = h.leaf.expect("leaf read");
    assert_eq!(cert.dns_names, vec!["backend.test".to_string()]);
    assert!(cert.self_issued);
    assert_eq!(h.ignored_problem, None);
    assert_eq!(h.sni, None);
    // nginx 1.22 offers TLS 1.2 at most by default.
    assert_eq!(h.protocol.as_deref(), Some("TLSv1_2"));
    assert_eq!(
        *sni.lock().unwrap(),
        Some(None),
        "no SNI with proxy_ssl_server_name off"
    );
}

#[tokio::test]
async fn trusted_ca_right_name_and_sni_on_is_a_response() {
    let dir = TempDir::new();
    let lab = ca("Lab CA");
    let trusted = dir.write("ca.pem", &lab.cert.pem());
    let leaf = issued_by(&lab, &["backend.test"], None);
    let (t, sni) = tls_server(&leaf, OK, &[]).await;
    let s = TlsSettings {
        server_name: true,
        tls13: true,
        ..settings("backend.test", true, Some(trusted))
    };
    let a = http_request_tls(&t, &ask(), &limits(), &s).await;
    assert!(
        matches!(a.answer, Answer::Response { status: 200, .. }),
        "{a:?}"
    );
    let h = a.handshake.expect("handshake");
    assert_eq!(h.sni.as_deref(), Some("backend.test"));
    assert_eq!(h.protocol.as_deref(), Some("TLSv1_3"));
    assert!(h.leaf.expect("leaf").not_after > 1_700_000_000);
    assert_eq!(*sni.lock().unwrap(), Some(Some("backend.test".to_string())));
}

#[tokio::test]
async fn expired_certificate_fails_with_verify_on_and_is_noted_with_verify_off() {
    let dir = TempDir::new();
    let lab = ca("Lab CA");
    let trusted = dir.write("ca.pem", &lab.cert.pem());
    let leaf = issued_by(&lab, &["backend.test"], Some((2020, 2020)));
    let (t, _) = tls_server(&leaf, OK, &[]).await;
    let on = http_request_tls(
        &t,
        &ask(),
        &limits(),
        &settings("backend.test", true, Some(trusted)),
    )
    .await;
    assert_eq!(
        tls_problem(&on),
        &TlsProblem::Expired {
            not_after: "2020-02-01T00:00:00Z".into()
        }
    );
    let off = http_request_tls(
        &t,
        &ask(),
        &limits(),
        &settings("backend.test", false, None),
    )
    .await;
    assert!(matches!(off.answer, Answer::Response { .. }), "{off:?}");
    assert!(matches!(
        off.handshake.and_then(|h| h.ignored_problem),
        Some(TlsProblem::Expired { .. })
    ));
}

#[tokio::test]
async fn not_yet_valid_certificate() {
    let dir = TempDir::new();
    let lab = ca("Lab CA");
    let trusted = dir.write("ca.pem", &lab.cert.pem());
    let leaf = issued_by(&lab, &["backend.test"], Some((2090, 2091)));
    let (t, _) = tls_server(&leaf, OK, &[]).await;
    let a = http_request_tls(
        &t,
        &ask(),
        &limits(),
        &settings("backend.test", true, Some(trusted)),
    )
    .await;
    assert_eq!(
        tls_problem(&a),
        &TlsProblem::NotYetValid {
            not_before: "2090-01-01T00:00:00Z".into()
        }
    );
}

#[tokio::test]
async fn name_mismatch_lists_the_presented_names() {
    let dir = TempDir::new();
    let lab = ca("Lab CA");
    let trusted = dir.write("ca.pem", &lab.cert.pem());
    let leaf = issued_by(&lab, &["other.test", "127.0.0.1"], None);
    let (t, _) = tls_server(&leaf, OK, &[]).await;
    let a = http_request_tls(
        &t,
        &ask(),
        &limits(),
        &settings("backend.test", true, Some(trusted.clone())),
    )
    .await;
    assert_eq!(
        tls_problem(&a),
        &TlsProblem::NameMismatch {
            expected: "backend.test".into(),
            presented: vec!["other.test".into(), "IP:127.0.0.1".into()],
        }
    );
    // nginx (X509_check_host) never matches an IP SAN: proxy_pass https://127.0.0.1 fails too.
    let ip = http_request_tls(
        &t,
        &ask(),
        &limits(),
        &settings("127.0.0.1", true, Some(trusted)),
    )
    .await;
    assert!(
        matches!(tls_problem(&ip), TlsProblem::NameMismatch { .. }),
        "{ip:?}"
    );
}

#[tokio::test]
async fn a_self_signed_ca_certificate_trusted_by_itself_is_accepted_as_openssl_does() {
    let dir = TempDir::new();
    let leaf = self_signed(&["backend.test"], true);
    let trusted = dir.write("self.pem", &leaf.pem);
    let (t, _) = tls_server(&leaf, OK, &[]).await;
    let a = http_request_tls(
        &t,
        &ask(),
        &limits(),
        &settings("backend.test", true, Some(trusted)),
    )
    .await;
    assert!(matches!(a.answer, Answer::Response { .. }), "{a:?}");
}

#[tokio::test]
async fn plain_http_on_the_tls_port_is_a_handshake_failure() {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            let mut buf = [0u8; 1024];
            let _ = s.read(&mut buf).await;
            // What nginx answers a ClientHello on a plain listener.
            let _ = s
                .write_all(
                    b"HTTP/1.1 400 Bad Request\r\nServer: nginx\r\nConnection: close\r\n\r\n",
                )
                .await;
        }
    });
    let a = http_request_tls(
        &Target::Tcp(addr),
        &ask(),
        &limits(),
        &settings("backend.test", false, None),
    )
    .await;
    match tls_problem(&a) {
        TlsProblem::Handshake { error } => assert!(error.contains("does not speak TLS"), "{error}"),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn a_tarpit_never_answering_the_client_hello_is_bounded_by_the_connect_timeout() {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((s, _)) = l.accept().await {
            held.push(s);
        }
    });
    let lim = Limits {
        connect_timeout: Duration::from_millis(300),
        read_timeout: Duration::from_secs(30),
        max_header: 1024,
    };
    let start = Instant::now();
    let a = http_request_tls(
        &Target::Tcp(addr),
        &ask(),
        &lim,
        &settings("backend.test", false, None),
    )
    .await;
    assert!(
        matches!(tls_problem(&a), TlsProblem::HandshakeTimeout { .. }),
        "{a:?}"
    );
    assert!(
        start.elapsed() < Duration::from_secs(2),
        "{:?}",
        start.elapsed()
    );
}

#[tokio::test]
async fn verify_without_trusted_file_and_a_missing_file_are_config_errors() {
    let leaf = self_signed(&["backend.test"], false);
    let (t, _) = tls_server(&leaf, OK, &[]).await;
    let a = http_request_tls(&t, &ask(), &limits(), &settings("backend.test", true, None)).await;
    assert_eq!(
        tls_problem(&a),
        &TlsProblem::VerifyWithoutTrustedCertificate {
            directive_prefix: "proxy_".into()
        }
    );
    assert!(tls_problem(&a)
        .describe()
        .contains("no proxy_ssl_trusted_certificate for proxy_ssl_verify"));
    let missing = PathBuf::from("/nonexistent/why502/ca.pem");
    let m = http_request_tls(
        &t,
        &ask(),
        &limits(),
        &settings("backend.test", true, Some(missing)),
    )
    .await;
    assert!(
        matches!(
            tls_problem(&m),
            TlsProblem::TrustedCertificateUnreadable { denied: false, .. }
        ),
        "{m:?}"
    );
}

#[tokio::test]
async fn grpcs_offers_h2_and_reads_the_settings_frame() {
    let leaf = self_signed(&["grpc.test"], false);
    let (t, _) = tls_server(&leaf, &[0, 0, 0, 4, 0, 0, 0, 0, 0], &[b"h2"]).await;
    let a = grpc_handshake_tls(&t, &limits(), &settings("grpc.test", false, None)).await;
    assert!(matches!(a.answer, Answer::Response { .. }), "{a:?}");
    assert_eq!(a.handshake.and_then(|h| h.alpn).as_deref(), Some("h2"));
}

/// `openssl x509 -req` without an extension file makes a v1 certificate with only a CN;
/// nginx accepts it (verified on 1.22.1), webpki alone would not.
#[tokio::test]
async fn openssl_v1_cn_only_certificate_is_accepted_like_nginx_does() {
    if !have_openssl() {
        return;
    }
    let dir = TempDir::new();
    let d = &dir.0;
    let sh = |args: &[&str]| {
        let out = std::process::Command::new("openssl")
            .args(args)
            .current_dir(d)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    sh(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
        "-days",
        "2",
        "-subj",
        "/CN=Lab CA",
    ]);
    sh(&[
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "cn.key",
        "-out",
        "cn.csr",
        "-subj",
        "/CN=cnonly.test",
    ]);
    sh(&[
        "x509",
        "-req",
        "-in",
        "cn.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "cn.pem",
        "-days",
        "2",
    ]);
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let server = Child(
        std::process::Command::new("openssl")
            .args([
                "s_server",
                "-quiet",
                "-www",
                "-accept",
                &port.to_string(),
                "-cert",
                "cn.pem",
                "-key",
                "cn.key",
            ])
            .current_dir(d)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap(),
    );
    let addr: std::net::SocketAddr = ([127, 0, 0, 1], port).into();
    wait_listening(addr).await;
    let t = Target::Tcp(addr);
    let ok = http_request_tls(
        &t,
        &ask(),
        &limits(),
        &settings("cnonly.test", true, Some(d.join("ca.pem"))),
    )
    .await;
    assert!(
        matches!(ok.answer, Answer::Response { status: 200, .. }),
        "{ok:?}"
    );
    let leaf = ok.handshake.and_then(|h| h.leaf).expect("leaf");
    assert_eq!(leaf.subject_cn.as_deref(), Some("cnonly.test"));
    assert!(leaf.dns_names.is_empty());
    let bad = http_request_tls(
        &t,
        &ask(),
        &limits(),
        &settings("other.test", true, Some(d.join("ca.pem"))),
    )
    .await;
    assert_eq!(
        tls_problem(&bad),
        &TlsProblem::NameMismatch {
            expected: "other.test".into(),
            presented: vec!["CN=cnonly.test".into()]
        }
    );
    drop(server);
}

struct Child(std::process::Child);
impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn have_openssl() -> bool {
    let found = std::process::Command::new("openssl")
        .arg("version")
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    if !found {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "the openssl CLI is needed under CI=true"
        );
        eprintln!("SKIP: the openssl CLI is not installed");
    }
    found
}

async fn wait_listening(addr: std::net::SocketAddr) {
    for _ in 0..100 {
        if tokio::net::TcpStream::connect(addr).await.is_ok() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("openssl s_server did not listen on {addr}");
}

//! TLS to the backend (`proxy_pass https://`, `grpc_pass grpcs://`, `uwsgi_pass suwsgi://`),
//! configured as the location's `*_ssl_*` directives configure nginx.
//!
//! Verified on nginx 1.22.1 here (throwaway instance, `-p`/`-c` in a temp dir):
//! - `proxy_ssl_verify on` without `proxy_ssl_trusted_certificate` is refused by `nginx -t`:
//!   `[emerg] no proxy_ssl_trusted_certificate for proxy_ssl_verify`. nginx never runs so
//!   configured, so no connection is made: `TlsProblem::VerifyWithoutTrustedCertificate`.
//! - a missing trusted file is refused by `nginx -t` too:
//!   `[emerg] SSL_CTX_load_verify_locations("/x/missing.pem") failed (SSL: ... No such file ...)`.
//! - verify off (the default): any certificate is accepted; the handshake completes.
//! - verify on: the handshake completes, then nginx logs `upstream SSL certificate verify error:
//!   (18:self-signed certificate)`, `(10:certificate has expired)`, or
//!   `upstream SSL certificate does not match "127.0.0.1"` (the name is `proxy_ssl_name`,
//!   default the proxy_pass host, checked even with `proxy_ssl_server_name off`), and answers 502.
//! - plain HTTP on the TLS port: `SSL_do_handshake() failed (SSL: error:0A00010B:SSL
//!   routines::wrong version number) while SSL handshaking to upstream` (502).
//! - a tarpit that never answers the ClientHello: `upstream timed out (110: Connection timed
//!   out) while SSL handshaking to upstream` after `proxy_connect_timeout` (504): the
//!   handshake is bounded by the connect timeout, not the read timeout. Mirrored here.
//! - nginx 1.22's default `proxy_ssl_protocols` is `TLSv1 TLSv1.1 TLSv1.2`: a TLSv1.3-only
//!   backend fails with `(SSL: error:0A00042E:SSL routines::tlsv1 alert protocol version:SSL
//!   alert number 70)`. Hence `TlsSettings::tls13`.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, RootCertStore};
use serde::Serialize;
use tokio_rustls::TlsConnector;

use crate::cert_info::LeafCertificate;
use crate::stream::{connect, Io};
use crate::tls_verify::{NginxVerifier, Seen, Trusted};
use crate::{ms, Answer, Limits, Target};

/// A PEM bundle larger than this is not a trusted-certificate file (Debian's whole
/// ca-certificates.crt is about 220 KiB).
const MAX_TRUSTED_FILE: u64 = 4 * 1024 * 1024;

/// A location's TLS settings, as nginx has them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsSettings {
    /// `*_ssl_verify` (nginx default: off).
    pub verify: bool,
    /// `*_ssl_trusted_certificate`: a PEM bundle.
    pub trusted_certificate: Option<PathBuf>,
    /// `*_ssl_server_name` (nginx default: off, and then no SNI is sent at all).
    pub server_name: bool,
    /// `*_ssl_name`: default the host part of the `*_pass` URL (the upstream block's name for
    /// `proxy_pass https://backend`). Checked against the certificate; sent as SNI when
    /// `server_name` is on and it is not an IP address (RFC 6066, as nginx does).
    pub name: String,
    /// Whether TLSv1.3 is among `*_ssl_protocols`. nginx 1.22's default leaves it out
    /// (`TLSv1 TLSv1.1 TLSv1.2`); from 1.23.4 it is in. TLSv1 and 1.1 are never offered here.
    pub tls13: bool,
    /// "proxy_", "grpc_" or "uwsgi_", for the directive names in summaries.
    pub directive_prefix: &'static str,
}

impl TlsSettings {
    /// nginx 1.22's defaults for `proxy_pass https://<name>`.
    pub fn nginx_defaults(name: impl Into<String>) -> TlsSettings {
        TlsSettings {
            verify: false,
            trusted_certificate: None,
            server_name: false,
            name: name.into(),
            tls13: false,
            directive_prefix: "proxy_",
        }
    }
}

/// What is wrong with TLS to the backend.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "problem", rename_all = "snake_case")]
pub enum TlsProblem {
    /// RFC 3339 date.
    Expired {
        not_after: String,
    },
    NotYetValid {
        not_before: String,
    },
    /// Not issued by anything in the trusted certificates.
    Untrusted {
        reason: String,
        self_signed: bool,
        /// The names the certificate presents (as in `NameMismatch`), to say whose it is.
        names: Vec<String>,
    },
    /// `expected` is `*_ssl_name`; `presented` lists DNS SANs, then `IP:` SANs, and `CN=` when
    /// there is no DNS SAN (OpenSSL then compares with the CN).
    NameMismatch {
        expected: String,
        presented: Vec<String>,
    },
    /// The handshake itself failed: not TLS on that port, no shared protocol or cipher, an
    /// alert, the connection closed.
    Handshake {
        error: String,
    },
    /// Connected, but the handshake did not finish within the connect timeout.
    HandshakeTimeout {
        waited_ms: u64,
    },
    /// `denied`: why502 lacks the permission (nginx's master reads it as root): unknown, not
    /// broken. Otherwise nginx -t fails the same way.
    TrustedCertificateUnreadable {
        path: PathBuf,
        error: String,
        denied: bool,
    },
    /// `*_ssl_verify on` without `*_ssl_trusted_certificate`: nginx -t refuses this.
    VerifyWithoutTrustedCertificate {
        directive_prefix: String,
    },
}

impl TlsProblem {
    /// One line for a human, with what nginx logs for it.
    pub fn describe(&self) -> String {
        match self {
            TlsProblem::Expired { not_after } => format!(
                "the backend's certificate expired on {not_after} (nginx logs \"upstream SSL certificate verify error: (10:certificate has expired)\")"
            ),
            TlsProblem::NotYetValid { not_before } => format!(
                "the backend's certificate is not valid before {not_before} (nginx logs \"upstream SSL certificate verify error: (9:certificate is not yet valid)\"); check the clocks"
            ),
            TlsProblem::Untrusted {
                reason,
                self_signed,
                names,
            } => {
                let nginx = if *self_signed {
                    "(18:self-signed certificate)"
                } else {
                    "(20:unable to get local issuer certificate)"
                };
                let whose = if names.is_empty() {
                    String::new()
                } else {
                    format!(" (for {})", names.join(", "))
                };
                format!(
                    "the backend's certificate{whose} is not trusted: {reason} (nginx logs \"upstream SSL certificate verify error: {nginx}\")"
                )
            }
            TlsProblem::NameMismatch { expected, presented } => {
                let shown = if presented.is_empty() {
                    "no name".to_string()
                } else {
                    presented.join(", ")
                };
                format!(
                    "the backend's certificate is for {shown}, not \"{expected}\" (nginx logs \"upstream SSL certificate does not match \\\"{expected}\\\"\")"
                )
            }
            TlsProblem::Handshake { error } => format!(
                "the TLS handshake with the backend failed: {error} (nginx logs \"SSL_do_handshake() failed ... while SSL handshaking to upstream\")"
            ),
            TlsProblem::HandshakeTimeout { waited_ms } => format!(
                "the backend accepted the connection but did not complete the TLS handshake within {waited_ms} ms (nginx: \"upstream timed out (110: Connection timed out) while SSL handshaking to upstream\", 504)"
            ),
            TlsProblem::TrustedCertificateUnreadable { path, error, denied: true } => format!(
                "why502 cannot read the trusted certificate file {} ({error}); run as root to check it",
                path.display()
            ),
            TlsProblem::TrustedCertificateUnreadable { path, error, denied: false } => format!(
                "the trusted certificate file {} cannot be used: {error} (nginx -t fails: \"SSL_CTX_load_verify_locations(...) failed\")",
                path.display()
            ),
            TlsProblem::VerifyWithoutTrustedCertificate { directive_prefix: p } => format!(
                "{p}ssl_verify is on without {p}ssl_trusted_certificate (nginx -t: \"no {p}ssl_trusted_certificate for {p}ssl_verify\")"
            ),
        }
    }
}

/// A successful handshake.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Handshake {
    /// e.g. "TLSv1_2".
    pub protocol: Option<String>,
    /// The SNI sent, if any.
    pub sni: Option<String>,
    pub alpn: Option<String>,
    pub leaf: Option<LeafCertificate>,
    /// A certificate problem nginx lets pass because `*_ssl_verify` is off: worth a note,
    /// not a 502.
    pub ignored_problem: Option<TlsProblem>,
    pub took_ms: u64,
}

/// The answer of a request over TLS, with the handshake when it succeeded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TlsAnswer {
    pub answer: Answer,
    pub handshake: Option<Handshake>,
}

impl TlsAnswer {
    pub(crate) fn failed(answer: Answer) -> TlsAnswer {
        TlsAnswer {
            answer,
            handshake: None,
        }
    }
}

/// Connect, shake hands (offering `alpn`), then run the protocol's `exchange` over the
/// encrypted stream: the one shape of every `*_tls` request.
pub(crate) async fn connect_then_exchange<F, Fut>(
    target: &Target,
    limits: &Limits,
    tls: &TlsSettings,
    alpn: &[&[u8]],
    exchange: F,
) -> TlsAnswer
where
    F: FnOnce(Box<dyn Io>) -> Fut,
    Fut: std::future::Future<Output = Answer>,
{
    let io = match connect(target, limits).await {
        Ok(io) => io,
        Err(a) => return TlsAnswer::failed(a),
    };
    match handshake(io, tls, alpn, limits).await {
        Ok((io, done)) => TlsAnswer {
            answer: exchange(io).await,
            handshake: Some(done),
        },
        Err(a) => TlsAnswer::failed(a),
    }
}

/// Run the TLS handshake over a connected stream, bounded by `limits.connect_timeout` (as
/// nginx bounds it by `*_connect_timeout`).
pub(crate) async fn handshake(
    io: Box<dyn Io>,
    tls: &TlsSettings,
    alpn: &[&[u8]],
    limits: &Limits,
) -> Result<(Box<dyn Io>, Handshake), Answer> {
    let failed = |problem, started: Instant| Answer::TlsFailed {
        problem,
        waited_ms: ms(started.elapsed()),
    };
    let start = Instant::now();
    let trusted = match (&tls.trusted_certificate, tls.verify) {
        (Some(path), _) => Some(load_trusted(path).map_err(|p| failed(p, start))?),
        (None, true) => {
            return Err(failed(
                TlsProblem::VerifyWithoutTrustedCertificate {
                    directive_prefix: tls.directive_prefix.to_string(),
                },
                start,
            ))
        }
        (None, false) => None,
    };
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let seen = Arc::new(Mutex::new(Seen::default()));
    let verifier = NginxVerifier {
        enforce: tls.verify,
        name: tls.name.clone(),
        trusted,
        algs: provider.signature_verification_algorithms,
        seen: seen.clone(),
    };
    let versions: &[&rustls::SupportedProtocolVersion] = if tls.tls13 {
        &[&rustls::version::TLS13, &rustls::version::TLS12]
    } else {
        &[&rustls::version::TLS12]
    };
    let mut config = ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(versions)
        .map_err(|e| {
            failed(
                TlsProblem::Handshake {
                    error: e.to_string(),
                },
                start,
            )
        })?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier))
        .with_no_client_auth();
    config.enable_sni = tls.server_name;
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    // A name that is not a valid DNS name or IP still lets the handshake run (without SNI);
    // the certificate check uses the string as nginx has it.
    let server_name = ServerName::try_from(tls.name.clone()).unwrap_or(ServerName::IpAddress(
        std::net::Ipv4Addr::UNSPECIFIED.into(),
    ));
    let sni = match (&server_name, tls.server_name) {
        (ServerName::DnsName(d), true) => Some(d.as_ref().to_string()),
        _ => None,
    };
    let connector = TlsConnector::from(Arc::new(config));
    let attempt = connector.connect(server_name, io);
    let result = tokio::time::timeout(limits.connect_timeout, attempt).await;
    let seen = seen.lock().map(|s| s.clone()).unwrap_or_default();
    let stream = match result {
        Err(_) => {
            return Err(failed(
                TlsProblem::HandshakeTimeout {
                    waited_ms: ms(start.elapsed()),
                },
                start,
            ))
        }
        Ok(Err(e)) => {
            let problem = match seen.problem {
                Some(p) if tls.verify => p,
                _ => TlsProblem::Handshake {
                    error: handshake_error(&e),
                },
            };
            return Err(failed(problem, start));
        }
        Ok(Ok(s)) => s,
    };
    let (_, conn) = stream.get_ref();
    let report = Handshake {
        protocol: conn.protocol_version().map(|v| format!("{v:?}")),
        sni,
        alpn: conn
            .alpn_protocol()
            .map(|p| String::from_utf8_lossy(p).into_owned()),
        leaf: seen.leaf,
        ignored_problem: seen.problem,
        took_ms: ms(start.elapsed()),
    };
    Ok((Box::new(stream) as Box<dyn Io>, report))
}

fn load_trusted(path: &std::path::Path) -> Result<Trusted, TlsProblem> {
    let unreadable = |error: String, denied: bool| TlsProblem::TrustedCertificateUnreadable {
        path: path.to_path_buf(),
        error,
        denied,
    };
    let bytes = why502_host::read_bounded(path, MAX_TRUSTED_FILE)
        .map_err(|e| unreadable(e.to_string(), e.is_permission_denied()))?;
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<_, _>>()
        .map_err(|e| unreadable(format!("not a PEM certificate bundle: {e}"), false))?;
    if certs.is_empty() {
        return Err(unreadable("no certificate in the file".into(), false));
    }
    let mut roots = RootCertStore::empty();
    roots.add_parsable_certificates(certs.iter().cloned());
    Ok(Trusted { roots, certs })
}

/// The handshake error in words, with what it usually means.
fn handshake_error(e: &std::io::Error) -> String {
    use std::io::ErrorKind;
    match e.kind() {
        ErrorKind::UnexpectedEof => {
            return "the backend closed the connection during the handshake".into()
        }
        ErrorKind::ConnectionReset | ErrorKind::BrokenPipe => {
            return "the backend reset the connection during the handshake".into()
        }
        _ => {}
    }
    match e.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>()) {
        Some(rustls::Error::InvalidMessage(rustls::InvalidMessage::InvalidContentType)) => {
            "the backend does not speak TLS on this port (its first bytes are not a TLS record; plain HTTP?)".into()
        }
        Some(rustls::Error::AlertReceived(alert)) => {
            format!("the backend refused the handshake with the alert {alert:?} (no shared protocol version or cipher?)")
        }
        Some(other) => other.to_string(),
        None => e.to_string(),
    }
}

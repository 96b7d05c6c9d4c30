//! The certificate verifier: judges the backend's certificate the way nginx (OpenSSL) does,
//! records what it found, and refuses the handshake only when `*_ssl_verify` is on.
//!
//! nginx itself never aborts the TLS handshake over a certificate: it completes it, then
//! reads SSL_get_verify_result() and X509_check_host() and closes with a 502 when verify is
//! on. Recording the problem first and refusing afterwards gives the same verdicts, and with
//! verify off the problem is still known, for a note.

use std::sync::{Arc, Mutex};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::WebPkiSupportedAlgorithms;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{CertificateError, DigitallySignedStruct, Error, RootCertStore, SignatureScheme};

use crate::cert_info::{self, format_unix, CertParts, LeafCertificate};
use crate::tls::TlsProblem;

/// The trusted certificates of `*_ssl_trusted_certificate`, loaded.
#[derive(Debug)]
pub(crate) struct Trusted {
    pub roots: RootCertStore,
    pub certs: Vec<CertificateDer<'static>>,
}

/// What the verifier saw of the backend's certificate.
#[derive(Debug, Default, Clone)]
pub(crate) struct Seen {
    pub leaf: Option<LeafCertificate>,
    pub problem: Option<TlsProblem>,
}

#[derive(Debug)]
pub(crate) struct NginxVerifier {
    pub enforce: bool,
    /// `*_ssl_name`: what the certificate is checked against.
    pub name: String,
    pub trusted: Option<Trusted>,
    pub algs: WebPkiSupportedAlgorithms,
    pub seen: Arc<Mutex<Seen>>,
}

impl NginxVerifier {
    fn judge(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> (Option<LeafCertificate>, Option<TlsProblem>) {
        let Some(parts) = cert_info::parse(end_entity) else {
            return (
                None,
                Some(TlsProblem::Untrusted {
                    reason: "the backend's certificate is not valid X.509 DER".into(),
                    self_signed: false,
                    names: Vec::new(),
                }),
            );
        };
        let leaf = parts.leaf.clone();
        let now_secs = now.as_secs() as i64;
        // OpenSSL's order: the chain and its dates (SSL_get_verify_result), then the name.
        if let Some(trusted) = &self.trusted {
            if let Some(p) =
                chain_problem(&parts, end_entity, intermediates, trusted, now, &self.algs)
            {
                return (Some(leaf), Some(p));
            }
        }
        if now_secs > leaf.not_after {
            return (
                Some(leaf.clone()),
                Some(TlsProblem::Expired {
                    not_after: format_unix(leaf.not_after),
                }),
            );
        }
        if now_secs < leaf.not_before {
            return (
                Some(leaf.clone()),
                Some(TlsProblem::NotYetValid {
                    not_before: format_unix(leaf.not_before),
                }),
            );
        }
        if !leaf.matches_host(&self.name) {
            return (
                Some(leaf.clone()),
                Some(TlsProblem::NameMismatch {
                    expected: self.name.clone(),
                    presented: leaf.presented(),
                }),
            );
        }
        (Some(leaf), None)
    }
}

/// Does the chain lead to a trusted certificate? None when it does.
fn chain_problem(
    parts: &CertParts<'_>,
    end_entity: &CertificateDer<'_>,
    intermediates: &[CertificateDer<'_>],
    trusted: &Trusted,
    now: UnixTime,
    algs: &WebPkiSupportedAlgorithms,
) -> Option<TlsProblem> {
    let untrusted = |reason: String| TlsProblem::Untrusted {
        reason,
        self_signed: parts.leaf.self_issued,
        names: parts.leaf.presented(),
    };
    // OpenSSL trusts a certificate found as such in the store, self-signed CA:TRUE ones
    // included (what `openssl req -x509` makes); webpki would refuse it as "CA used as end
    // entity". Its dates are checked by the caller.
    if trusted
        .certs
        .iter()
        .any(|c| c.as_ref() == end_entity.as_ref())
    {
        return None;
    }
    let webpki_result = rustls::server::ParsedCertificate::try_from(end_entity).and_then(|p| {
        rustls::client::verify_server_cert_signed_by_trust_anchor(
            &p,
            &trusted.roots,
            intermediates,
            now,
            algs.all,
        )
    });
    let err = match webpki_result {
        Ok(()) => return None,
        Err(e) => e,
    };
    match err {
        Error::InvalidCertificate(CertificateError::ExpiredContext { not_after, .. }) => {
            Some(TlsProblem::Expired {
                not_after: format_unix(not_after.as_secs() as i64),
            })
        }
        Error::InvalidCertificate(CertificateError::NotValidYetContext { not_before, .. }) => {
            Some(TlsProblem::NotYetValid {
                not_before: format_unix(not_before.as_secs() as i64),
            })
        }
        Error::InvalidCertificate(CertificateError::UnknownIssuer) => {
            Some(untrusted(if parts.leaf.self_issued {
                "self-signed certificate, not in the trusted certificates".into()
            } else {
                "issued by a CA that is not in the trusted certificates".into()
            }))
        }
        other => {
            // webpki refuses what OpenSSL accepts (v1 certificates): check the one signature
            // of a leaf issued directly by a trusted certificate, as OpenSSL would.
            if signed_by_trusted(parts, trusted, algs) {
                None
            } else if parts.leaf.self_issued {
                // webpki's words for a self-signed CA:TRUE leaf ("CA used as end entity") are
                // not what an admin needs; OpenSSL, and so nginx, call it self-signed.
                Some(untrusted(
                    "self-signed certificate, not in the trusted certificates".into(),
                ))
            } else {
                Some(untrusted(format!(
                    "the certificate chain does not verify: {other}"
                )))
            }
        }
    }
}

fn signed_by_trusted(
    leaf: &CertParts<'_>,
    trusted: &Trusted,
    algs: &WebPkiSupportedAlgorithms,
) -> bool {
    trusted
        .certs
        .iter()
        .filter_map(|c| cert_info::parse(c.as_ref()))
        .filter(|issuer| issuer.subject == leaf.issuer)
        .any(|issuer| {
            algs.all.iter().any(|alg| {
                alg.signature_alg_id().as_ref() == leaf.signature_alg
                    && alg.public_key_alg_id().as_ref() == issuer.spki_alg
                    && alg
                        .verify_signature(issuer.public_key, leaf.tbs, leaf.signature)
                        .is_ok()
            })
        })
}

/// The handshake signature made with the leaf's key, for certificates webpki cannot parse.
fn verify_with_leaf_key(
    message: &[u8],
    cert: &CertificateDer<'_>,
    dss: &DigitallySignedStruct,
    algs: &WebPkiSupportedAlgorithms,
    original: Error,
) -> Result<HandshakeSignatureValid, Error> {
    let Some(parts) = cert_info::parse(cert.as_ref()) else {
        return Err(original);
    };
    let candidates = algs
        .mapping
        .iter()
        .filter(|(scheme, _)| *scheme == dss.scheme)
        .flat_map(|(_, list)| list.iter());
    for alg in candidates {
        if alg.public_key_alg_id().as_ref() == parts.spki_alg
            && alg
                .verify_signature(parts.public_key, message, dss.signature())
                .is_ok()
        {
            return Ok(HandshakeSignatureValid::assertion());
        }
    }
    Err(original)
}

impl ServerCertVerifier for NginxVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, Error> {
        let (leaf, problem) = self.judge(end_entity, intermediates, now);
        let refuse = self.enforce && problem.is_some();
        if let Ok(mut seen) = self.seen.lock() {
            *seen = Seen { leaf, problem };
        }
        if refuse {
            Err(Error::InvalidCertificate(
                CertificateError::ApplicationVerificationFailure,
            ))
        } else {
            Ok(ServerCertVerified::assertion())
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algs)
            .or_else(|e| verify_with_leaf_key(message, cert, dss, &self.algs, e))
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algs)
            .or_else(|e| verify_with_leaf_key(message, cert, dss, &self.algs, e))
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algs.supported_schemes()
    }
}

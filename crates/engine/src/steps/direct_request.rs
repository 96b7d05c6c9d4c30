//! Step `direct_request`: ask the backend directly, over the transport nginx uses for this
//! location, and judge the answer against this location's nginx limits — read timeout, header
//! buffer size — quoting the measured figure beside nginx's.

use std::time::Duration;

use why502_model::{CauseId, Protocol};
use why502_request::{
    fastcgi_request, grpc_handshake, grpc_handshake_tls, http_request, http_request_tls,
    uwsgi_request, uwsgi_request_tls, Answer, Ask, Limits, Target, TlsProblem, TlsSettings,
};

use super::backend_up::remaining;
use super::{StepContext, StepFinding};
use crate::targets::{TargetAddr, UpstreamTarget};

/// Time kept back from the run's budget for rendering the report.
const RESERVE: Duration = Duration::from_millis(300);

pub async fn check(target: &UpstreamTarget, cx: &StepContext<'_>) -> StepFinding {
    let overridden = cx
        .sources
        .agent
        .override_for(&target.address, target.name.as_deref());
    if overridden.is_some_and(|o| o.skip_direct_request) {
        return StepFinding::skip("skipped by the agent config (skip_direct_request = true)");
    }
    if target.protocol == Protocol::Scgi {
        return StepFinding::skip("SCGI requests are not made by this version of why502");
    }
    let conn = match connect_target(target, cx).await {
        Ok(t) => t,
        Err(f) => return f,
    };
    let nginx_read = target.settings.read_timeout;
    let budget = remaining(cx).saturating_sub(RESERVE);
    let limits = Limits {
        connect_timeout: target.settings.connect_timeout.min(budget),
        read_timeout: nginx_read.min(budget),
        max_header: 64 * 1024,
    };
    let mut ask = ask_for(target);
    if let Some(o) = overridden {
        ask.host = o.host.clone().unwrap_or(ask.host);
        ask.path = o.path.clone().unwrap_or(ask.path);
    }
    if target.tls {
        return check_tls(target, &conn, &ask, &limits).await;
    }
    let answer = match target.protocol {
        Protocol::Fastcgi => fastcgi_request(&conn, &ask, &limits).await,
        Protocol::Uwsgi => uwsgi_request(&conn, &ask, &limits).await,
        Protocol::Grpc => grpc_handshake(&conn, &limits).await,
        Protocol::Http | Protocol::Scgi => http_request(&conn, &ask, &limits).await,
    };
    if let (Answer::ConnectFailed { error }, Target::Tcp(addr)) = (&answer, &conn) {
        // Refused although a socket listens: something between refuses for it (a packet
        // filter's reject); the security step looks for it.
        if error.contains("refused")
            && cx
                .sources
                .listen
                .tcp_accepting(addr.ip(), addr.port())
                .is_some()
        {
            return StepFinding::unknown(format!(
                "connecting to {addr} was refused although a socket listens there: a packet filter rejects it (step security)"
            ))
            .with_evidence(format!("direct connect to {addr}"), error.clone());
        }
    }
    judge(&answer, target, &conn, &ask, limits.read_timeout)
}

/// The same request inside TLS, set up as the location's `*_ssl_*` directives set up nginx.
async fn check_tls(
    target: &UpstreamTarget,
    conn: &Target,
    ask: &Ask,
    limits: &Limits,
) -> StepFinding {
    let tls = tls_settings(target);
    let answered = match target.protocol {
        Protocol::Grpc => grpc_handshake_tls(conn, limits, &tls).await,
        Protocol::Uwsgi => uwsgi_request_tls(conn, ask, limits, &tls).await,
        _ => http_request_tls(conn, ask, limits, &tls).await,
    };
    let finding = judge(&answered.answer, target, conn, ask, limits.read_timeout);
    // nginx does not verify by default; a certificate problem it lets pass is worth a line,
    // never a break.
    match answered.handshake.and_then(|h| h.ignored_problem) {
        Some(p) if finding.outcome == why502_model::Outcome::Pass => {
            let summary = format!(
                "{}; note: {} ({}ssl_verify is off, so nginx accepts it)",
                finding.summary,
                p.describe(),
                tls.directive_prefix
            );
            StepFinding { summary, ..finding }
        }
        _ => finding,
    }
}

fn tls_settings(target: &UpstreamTarget) -> TlsSettings {
    let s = &target.settings;
    // `*_ssl_name` defaults to the host of the pass: the upstream block's name, else the host.
    let host = match (&target.name, &target.addr) {
        (Some(block), _) => block.clone(),
        (None, TargetAddr::Tcp { host, .. }) => host.clone(),
        (None, TargetAddr::Unix(p)) => p.display().to_string(),
    };
    TlsSettings {
        verify: s.ssl_verify,
        trusted_certificate: s.ssl_trusted_certificate.clone(),
        server_name: s.ssl_server_name,
        name: s.ssl_name.clone().unwrap_or(host),
        // nginx 1.22 leaves TLSv1.3 out of its default protocols, 1.23.4 and later put it in.
        // Unset, offer it: a false "handshake failure" would be a false alarm, and an nginx
        // that cannot agree on TLSv1.3 logs its SSL error, which the error-log step reports.
        tls13: s
            .ssl_protocols
            .as_ref()
            .is_none_or(|p| p.iter().any(|v| v == "TLSv1.3")),
        directive_prefix: target.protocol_settings_prefix(),
    }
}

pub(crate) async fn connect_target(
    target: &UpstreamTarget,
    cx: &StepContext<'_>,
) -> Result<Target, StepFinding> {
    match &target.addr {
        TargetAddr::Unix(p) => Ok(Target::Unix(p.clone())),
        TargetAddr::Tcp { host, port } => {
            let budget = remaining(cx).min(Duration::from_secs(3));
            match cx
                .sources
                .resolve_as_nginx(target, host, *port, budget)
                .await
            {
                Ok(ips) => Ok(Target::Tcp(std::net::SocketAddr::new(ips[0], *port))),
                Err(p) => Err(StepFinding::broken(CauseId::UpstreamDns, p.summary)
                    .with_fix(CauseId::UpstreamDns.fix())
                    .with_evidence(p.asked, p.detail)),
            }
        }
    }
}

/// What nginx would ask: the site's name and, for a plain prefix location, its prefix.
fn ask_for(t: &UpstreamTarget) -> Ask {
    let r = t.references.first();
    let host = r
        .and_then(|r| r.server_name.clone())
        .filter(|n| {
            !n.is_empty()
                && n != "_"
                && !n.contains('*')
                && !n.starts_with('~')
                && !n.starts_with('.')
        })
        .unwrap_or_else(|| "localhost".to_string());
    let path = r
        .and_then(|r| r.location.as_deref())
        .map(|l| {
            l.strip_prefix("^~ ")
                .or_else(|| l.strip_prefix("= "))
                .unwrap_or(l)
        })
        .filter(|l| l.starts_with('/'))
        .unwrap_or("/")
        .to_string();
    Ask { host, path }
}

fn judge(
    answer: &Answer,
    t: &UpstreamTarget,
    conn: &Target,
    ask: &Ask,
    waited_for: Duration,
) -> StepFinding {
    let prefix = t.protocol_settings_prefix();
    let buffer = t.settings.buffer_size;
    let nginx_read = t.settings.read_timeout;
    let what = request_label(t, ask);
    let evidence_src = format!("direct {what} to {conn}");
    let secs = |d: Duration| {
        humantime::format_duration(Duration::from_millis(d.as_millis() as u64)).to_string()
    };
    match answer {
        Answer::Response { status, header_bytes, first_byte_ms, total_ms, stderr } => {
            if *header_bytes as u64 > buffer {
                return StepFinding::broken(
                    CauseId::UpstreamHeaderTooBig,
                    format!("the response header is {header_bytes} bytes; nginx's {prefix}buffer_size is {buffer} bytes"),
                )
                .with_fix(format!(
                    "Raise {prefix}buffer_size above {header_bytes} (e.g. {}k) for this location, or make the backend send smaller headers (cookies).",
                    (*header_bytes as u64).div_ceil(1024).next_power_of_two()
                ))
                .with_evidence(evidence_src, format!("status {status}, header {header_bytes} bytes, first byte after {first_byte_ms} ms"));
            }
            let mut summary = format!(
                "answered {status} in {total_ms} ms (first byte {first_byte_ms} ms, nginx waits {}); header {header_bytes} bytes, nginx's buffer {buffer}",
                secs(nginx_read)
            );
            if t.protocol == Protocol::Fastcgi && *status == 404 {
                summary.push_str(" — a 404 for a script that does not exist, as asked: the pool runs requests");
            }
            let mut f = StepFinding::pass(summary).with_evidence(evidence_src, format!("status {status}"));
            if let Some(e) = stderr {
                f = f.with_evidence("FastCGI stderr", e.clone());
            }
            f
        }
        Answer::NoAnswer { waited_ms } => {
            let full = waited_for >= nginx_read;
            let summary = if full {
                format!("no response byte within {waited_ms} ms: slower than nginx's {prefix}read_timeout of {}", secs(nginx_read))
            } else {
                format!(
                    "no response byte within {waited_ms} ms (all the run's --timeout allowed; nginx waits {} before it gives up with 504)",
                    secs(nginx_read)
                )
            };
            StepFinding::broken(CauseId::UpstreamTimeout, summary)
                .with_fix(CauseId::UpstreamTimeout.fix())
                .with_evidence(evidence_src, format!("connected, request sent, nothing received in {waited_ms} ms"))
        }
        Answer::HeaderStalled { bytes, waited_ms } => StepFinding::broken(
            CauseId::UpstreamTimeout,
            format!("the response header stalled after {bytes} bytes ({waited_ms} ms); nginx's {prefix}read_timeout is {}", secs(nginx_read)),
        )
        .with_fix(CauseId::UpstreamTimeout.fix())
        .with_evidence(evidence_src, format!("{bytes} bytes, then nothing")),
        Answer::Closed { bytes, reset, .. } => {
            let how = if *reset { "reset" } else { "closed" };
            StepFinding::broken(
                CauseId::UpstreamReset,
                format!("the backend {how} the connection after {bytes} bytes, before a complete response header"),
            )
            .with_fix(CauseId::UpstreamReset.fix())
            .with_evidence(evidence_src, format!("connection {how} after {bytes} bytes"))
        }
        Answer::Malformed { reason, first_bytes } => StepFinding::broken(
            CauseId::UpstreamInvalidResponse,
            format!("the answer is not a valid {} response: {reason}", protocol_name(t.protocol)),
        )
        .with_fix(CauseId::UpstreamInvalidResponse.fix())
        .with_evidence(evidence_src, format!("first bytes: {first_bytes}")),
        Answer::HeaderTooLong { read } => StepFinding::broken(
            CauseId::UpstreamHeaderTooBig,
            format!("the response header did not end within {read} bytes; nginx's {prefix}buffer_size is {buffer} bytes"),
        )
        .with_fix(CauseId::UpstreamHeaderTooBig.fix())
        .with_evidence(evidence_src, format!("{read} bytes without the end of the header")),
        Answer::ConnectFailed { error } => {
            if error.contains("refused") || error.contains("No such file") {
                StepFinding::broken(CauseId::BackendDown, format!("connecting to {conn} failed: {error}"))
                    .with_fix(CauseId::BackendDown.fix())
                    .with_evidence(evidence_src, error.clone())
            } else if error.contains("os error 13") {
                // backend_up already judged the socket for nginx's worker; this is our own uid.
                StepFinding::unknown(format!(
                    "connecting to {conn} failed: {error}: this user may not connect to the socket, so the backend could not be asked"
                ))
                .with_fix("Run why502 as root, or as a member of the socket's group (often the worker user's, www-data), to make the direct request.")
                .with_evidence(evidence_src, error.clone())
            } else if error.contains("os error 11") {
                StepFinding::unknown(format!(
                    "connecting to {conn} failed at once: {error}: its listen queue is full now, every worker busy (steps backend_log and error_log say more)"
                ))
                .with_evidence(evidence_src, error.clone())
            } else {
                StepFinding::unknown(format!("connecting to {conn} failed: {error}"))
                    .with_evidence(evidence_src, error.clone())
            }
        }
        Answer::TlsFailed { problem, waited_ms } => judge_tls(problem, *waited_ms, prefix, evidence_src),
        Answer::ConnectTimeout { waited_ms } => StepFinding::unknown(format!(
            "connecting to {conn} did not complete within {waited_ms} ms although it listens: a full accept queue or dropped packets (step security)"
        )),
    }
}

fn judge_tls(problem: &TlsProblem, waited_ms: u64, prefix: &str, src: String) -> StepFinding {
    let said = problem.describe();
    match problem {
        // nginx gives up on a handshake at its connect timeout and answers 504.
        TlsProblem::HandshakeTimeout { .. } => StepFinding::broken(
            CauseId::UpstreamTimeout,
            format!("the TLS handshake did not finish within {waited_ms} ms ({prefix}connect_timeout): {said}"),
        )
        .with_fix(CauseId::UpstreamTimeout.fix()),
        // `nginx -t` refuses these: nginx_config reports them; here they only mean we could
        // not make nginx's request.
        TlsProblem::VerifyWithoutTrustedCertificate { .. }
        | TlsProblem::TrustedCertificateUnreadable { denied: false, .. } => {
            StepFinding::unknown(format!("cannot make nginx's TLS request: {said} (nginx -t fails on this too)"))
        }
        TlsProblem::TrustedCertificateUnreadable { denied: true, .. } => {
            StepFinding::unknown(format!("cannot read the trusted certificate: {said}"))
                .with_fix("Run why502 as root.")
        }
        _ => StepFinding::broken(CauseId::UpstreamTls, format!("{said} (after {waited_ms} ms)"))
            .with_fix(format!(
                "Fix the backend's certificate, or the location's {prefix}ssl_trusted_certificate / {prefix}ssl_name / {prefix}ssl_server_name / {prefix}ssl_protocols."
            )),
    }
    .with_evidence(src, said)
}

fn request_label(t: &UpstreamTarget, ask: &Ask) -> String {
    match t.protocol {
        Protocol::Fastcgi => format!("FastCGI request (Host {})", ask.host),
        Protocol::Uwsgi => format!("uwsgi request for {} (Host {})", ask.path, ask.host),
        Protocol::Grpc => "HTTP/2 handshake".to_string(),
        Protocol::Http | Protocol::Scgi => format!("GET {} (Host {})", ask.path, ask.host),
    }
}

fn protocol_name(p: Protocol) -> &'static str {
    match p {
        Protocol::Http => "HTTP",
        Protocol::Fastcgi => "FastCGI",
        Protocol::Uwsgi => "uwsgi (HTTP)",
        Protocol::Scgi => "SCGI",
        Protocol::Grpc => "HTTP/2",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use why502_model::Reference;

    fn target_at(server_name: Option<&str>, location: Option<&str>) -> UpstreamTarget {
        UpstreamTarget {
            address: "127.0.0.1:8000".into(),
            addr: TargetAddr::Tcp {
                host: "127.0.0.1".into(),
                port: 8000,
            },
            name: None,
            protocol: Protocol::Http,
            tls: false,
            references: vec![Reference {
                file: "nginx.conf".into(),
                line: 1,
                server_name: server_name.map(str::to_string),
                location: location.map(str::to_string),
                directive: "proxy_pass http://127.0.0.1:8000".into(),
            }],
            server_names: Vec::new(),
            settings: why502_nginx::config::PassSettings::default(),
            resolved_at_request_time: false,
        }
    }

    #[test]
    fn asks_for_the_site_and_the_location_prefix() {
        let cases = [
            (Some("shop.example"), Some("/api/"), "shop.example", "/api/"),
            (Some("_"), Some("= /health"), "localhost", "/health"),
            (
                Some("*.example.com"),
                Some("^~ /static/"),
                "localhost",
                "/static/",
            ),
            (None, Some("~ \\.php$"), "localhost", "/"),
            (Some("a.test"), Some("@fallback"), "a.test", "/"),
            (Some("a.test"), None, "a.test", "/"),
        ];
        for (server, location, host, path) in cases {
            let ask = ask_for(&target_at(server, location));
            assert_eq!(
                (ask.host.as_str(), ask.path.as_str()),
                (host, path),
                "{server:?} {location:?}"
            );
        }
    }

    #[test]
    fn header_over_nginx_buffer_breaks_and_under_passes() {
        let t = target_at(Some("a.test"), Some("/"));
        let conn = Target::Tcp("127.0.0.1:8000".parse().expect("addr"));
        let ask = ask_for(&t);
        let answer = |header_bytes| Answer::Response {
            status: 200,
            header_bytes,
            first_byte_ms: 1,
            total_ms: 2,
            stderr: None,
        };
        let big = judge(&answer(16_500), &t, &conn, &ask, Duration::from_secs(60));
        assert_eq!(big.cause, Some(CauseId::UpstreamHeaderTooBig));
        assert!(
            big.summary.contains("16500") && big.summary.contains("4096"),
            "{}",
            big.summary
        );
        let small = judge(&answer(200), &t, &conn, &ask, Duration::from_secs(60));
        assert_eq!(small.outcome, why502_model::Outcome::Pass);
    }
}

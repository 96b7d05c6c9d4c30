//! Step `direct_request`: ask the backend directly, over the transport nginx uses for this
//! location, and judge the answer against this location's nginx limits — read timeout, header
//! buffer size — quoting the measured figure beside nginx's.

use std::time::Duration;

use why502_model::{CauseId, Outcome, Protocol};
use why502_request::{Answer, Ask, Target, TlsProblem};

use super::{JudgeCx, StepFinding};
use crate::facts::DirectFacts;
use crate::targets::UpstreamTarget;

pub fn judge(target: &UpstreamTarget, cx: &JudgeCx<'_>) -> StepFinding {
    let probe = match cx.facts.direct.as_ref() {
        None => return StepFinding::unknown("the direct request was not made"),
        Some(DirectFacts::Skipped(why)) => return StepFinding::skip(why.clone()),
        Some(DirectFacts::Unresolved(p)) => {
            return StepFinding::broken(CauseId::UpstreamDns, p.summary.clone())
                .with_fix(CauseId::UpstreamDns.fix())
                .with_evidence(p.asked.clone(), p.detail.clone())
        }
        Some(DirectFacts::Asked(p)) => p,
    };
    if let (Answer::ConnectFailed { error }, true) = (&probe.answer, probe.refused_while_listening)
    {
        // Refused although a socket listens: something between refuses for it (a packet
        // filter's reject); the security step looks for it.
        return StepFinding::unknown(format!(
            "connecting to {} was refused although a socket listens there: a packet filter rejects it (step security)",
            probe.conn
        ))
        .with_evidence(format!("direct connect to {}", probe.conn), error.clone());
    }
    let finding = judge_answer(
        &probe.answer,
        target,
        &probe.conn,
        &probe.ask,
        probe.waited_for,
    );
    // nginx does not verify by default; a certificate problem it lets pass is worth a line,
    // never a break.
    match &probe.tls {
        Some((tls, Some(problem))) if finding.outcome == Outcome::Pass => {
            let summary = format!(
                "{}; note: {problem} ({}ssl_verify is off, so nginx accepts it)",
                finding.summary, tls.directive_prefix
            );
            StepFinding { summary, ..finding }
        }
        _ => finding,
    }
}

fn judge_answer(
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
        // The run's budget was shorter than nginx's limit: a slow answer is not yet a timeout.
        Answer::NoAnswer { waited_ms } | Answer::HeaderStalled { waited_ms, .. }
            if waited_for < nginx_read =>
        {
            StepFinding::unknown(format!(
                "no complete response header within {waited_ms} ms, all the run's --timeout allowed: waited {waited_ms} ms of nginx's {} ({prefix}read_timeout), so whether it times out in nginx cannot be told",
                secs(nginx_read)
            ))
            .with_fix(format!(
                "Run again with a --timeout longer than {} to wait as long as nginx does.",
                secs(nginx_read)
            ))
            .with_evidence(evidence_src, format!("connected, request sent, no complete header in {waited_ms} ms"))
        }
        Answer::NoAnswer { waited_ms } => StepFinding::broken(
            CauseId::UpstreamTimeout,
            format!("no response byte within {waited_ms} ms: slower than nginx's {prefix}read_timeout of {}", secs(nginx_read)),
        )
        .with_fix(CauseId::UpstreamTimeout.fix())
        .with_evidence(evidence_src, format!("connected, request sent, nothing received in {waited_ms} ms")),
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
    use crate::test_support::tcp_target;

    #[test]
    fn header_over_nginx_buffer_breaks_and_under_passes() {
        let t = tcp_target(8000);
        let conn = Target::Tcp("127.0.0.1:8000".parse().expect("addr"));
        let ask = Ask {
            host: "a.test".into(),
            path: "/".into(),
        };
        let answer = |header_bytes| Answer::Response {
            status: 200,
            header_bytes,
            first_byte_ms: 1,
            total_ms: 2,
            stderr: None,
        };
        let big = judge_answer(&answer(16_500), &t, &conn, &ask, Duration::from_secs(60));
        assert_eq!(big.cause, Some(CauseId::UpstreamHeaderTooBig));
        assert!(
            big.summary.contains("16500") && big.summary.contains("4096"),
            "{}",
            big.summary
        );
        let small = judge_answer(&answer(200), &t, &conn, &ask, Duration::from_secs(60));
        assert_eq!(small.outcome, Outcome::Pass);
    }

    #[test]
    fn a_budget_shorter_than_nginxs_timeout_is_not_a_timeout() {
        let mut t = tcp_target(8000);
        t.settings.read_timeout = Duration::from_secs(1);
        let conn = Target::Tcp("127.0.0.1:8000".parse().expect("addr"));
        let ask = Ask {
            host: "a.test".into(),
            path: "/".into(),
        };
        let silent = Answer::NoAnswer { waited_ms: 168 };
        let short = judge_answer(&silent, &t, &conn, &ask, Duration::from_millis(168));
        assert_eq!(short.outcome, Outcome::Unknown, "{}", short.summary);
        assert!(
            short.summary.contains("168 ms") && short.summary.contains("1s"),
            "{}",
            short.summary
        );
        let full = judge_answer(
            &Answer::NoAnswer { waited_ms: 1000 },
            &t,
            &conn,
            &ask,
            Duration::from_secs(1),
        );
        assert_eq!(full.cause, Some(CauseId::UpstreamTimeout));
    }
}

//! The direct request: ask the backend over the transport nginx uses for this location
//! (HTTP, FastCGI, uwsgi, gRPC; TLS as the location sets it up), within nginx's timeouts and
//! what is left of the run's budget.

use std::time::Duration;

use why502_model::Protocol;
use why502_request::{
    fastcgi_request, grpc_handshake, grpc_handshake_tls, http_request, http_request_tls,
    uwsgi_request, uwsgi_request_tls, Answer, Ask, Limits, Target, TlsSettings,
};

use super::{GatherCx, TargetFacts};
use crate::sources::DnsProblem;
use crate::targets::{TargetAddr, UpstreamTarget};

/// Time kept back from the run's budget for rendering the report.
const RESERVE: Duration = Duration::from_millis(300);

#[derive(Debug, Clone)]
pub enum DirectFacts {
    /// Not asked, and why (the agent config says so, a protocol not spoken).
    Skipped(String),
    /// The name did not resolve as nginx resolves it.
    Unresolved(DnsProblem),
    Asked(DirectProbe),
}

#[derive(Debug, Clone)]
pub struct DirectProbe {
    pub conn: Target,
    pub ask: Ask,
    pub answer: Answer,
    /// How long the request waited for the answer (nginx's read timeout, or less when the
    /// run's budget was shorter).
    pub waited_for: Duration,
    /// For TLS: the settings nginx uses, and a certificate problem nginx lets pass.
    pub tls: Option<(TlsSettings, Option<String>)>,
    /// The connect was refused although a local socket listens there.
    pub refused_while_listening: bool,
}

pub(super) async fn gather(target: &UpstreamTarget, cx: &GatherCx<'_>, facts: &mut TargetFacts) {
    if facts.direct.is_some() {
        return;
    }
    if let Some(why) = idle_ondemand_pool(target, cx, facts) {
        facts.direct = Some(DirectFacts::Skipped(why));
        return;
    }
    // The listener's process (backend_up gathered it): requests to one master are limited.
    let listener = facts.reach.as_ref().and_then(|r| r.owner()).map(|o| o.pid);
    facts.direct = Some(ask(target, cx, listener).await);
}

/// A php-fpm `ondemand` pool with no worker alive, that nginx logged no failure for in the
/// window, is not asked: the request would make its master fork a worker only to answer us,
/// and on a host of hundreds of such pools one run would fork hundreds (the reaper then stops
/// them, and the next run reads their exits). It answers the next real request; the error log
/// is the witness that it did. Asked anyway when the user narrowed the run to it.
fn idle_ondemand_pool(
    target: &UpstreamTarget,
    cx: &GatherCx<'_>,
    facts: &TargetFacts,
) -> Option<String> {
    if target.protocol != Protocol::Fastcgi || cx.sources.narrowed || !facts.logged.is_empty() {
        return None;
    }
    let upstream = why502_backend::BackendAddr::parse_upstream(&target.address)?;
    let pool = cx
        .sources
        .fpm_configs
        .iter()
        .flat_map(|c| c.pools_serving(&upstream))
        .next()?;
    if pool.pm.as_deref() != Some("ondemand") || cx.sources.fpm_workers_of(&pool.name) > 0 {
        return None;
    }
    Some(format!(
        "not asked: pool [{}] is pm = ondemand with no worker alive, and nginx logged no failure for it in the window; a request would fork a worker just to answer why502 (ask it with --upstream {})",
        pool.name, target.address
    ))
}

async fn ask(target: &UpstreamTarget, cx: &GatherCx<'_>, listener: Option<u32>) -> DirectFacts {
    let overridden = cx
        .sources
        .agent
        .override_for(&target.address, target.name.as_deref());
    if overridden.is_some_and(|o| o.skip_direct_request) {
        return DirectFacts::Skipped(
            "skipped by the agent config (skip_direct_request = true)".to_string(),
        );
    }
    if target.protocol == Protocol::Scgi {
        return DirectFacts::Skipped(
            "SCGI requests are not made by this version of why502".to_string(),
        );
    }
    let conn = match connect_target(target, cx).await {
        Ok(t) => t,
        Err(p) => return DirectFacts::Unresolved(p),
    };
    let budget = cx.remaining().saturating_sub(RESERVE);
    let limits = Limits {
        connect_timeout: target.settings.connect_timeout.min(budget),
        read_timeout: target.settings.read_timeout.min(budget),
        max_header: 64 * 1024,
    };
    let mut ask = ask_for(target);
    if let Some(o) = overridden {
        ask.host = o.host.clone().unwrap_or(ask.host);
        ask.path = o.path.clone().unwrap_or(ask.path);
    }
    let _permit = cx.sources.request_permit(listener).await;
    let (answer, tls) = if target.tls {
        let settings = tls_settings(target);
        let answered = match target.protocol {
            Protocol::Grpc => grpc_handshake_tls(&conn, &limits, &settings).await,
            Protocol::Uwsgi => uwsgi_request_tls(&conn, &ask, &limits, &settings).await,
            _ => http_request_tls(&conn, &ask, &limits, &settings).await,
        };
        let ignored = answered
            .handshake
            .and_then(|h| h.ignored_problem)
            .map(|p| p.describe());
        (answered.answer, Some((settings, ignored)))
    } else {
        let answer = match target.protocol {
            Protocol::Fastcgi => fastcgi_request(&conn, &ask, &limits).await,
            Protocol::Uwsgi => uwsgi_request(&conn, &ask, &limits).await,
            Protocol::Grpc => grpc_handshake(&conn, &limits).await,
            Protocol::Http | Protocol::Scgi => http_request(&conn, &ask, &limits).await,
        };
        (answer, None)
    };
    let refused_while_listening = match (&answer, &conn) {
        (Answer::ConnectFailed { error }, Target::Tcp(addr)) => {
            error.contains("refused")
                && cx
                    .sources
                    .listen
                    .tcp_accepting(addr.ip(), addr.port())
                    .is_some()
        }
        _ => false,
    };
    DirectFacts::Asked(DirectProbe {
        conn,
        ask,
        answer,
        waited_for: limits.read_timeout,
        tls,
        refused_while_listening,
    })
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

/// Where to connect: the socket, or the first address the host resolves to as nginx resolves
/// it.
pub(crate) async fn connect_target(
    target: &UpstreamTarget,
    cx: &GatherCx<'_>,
) -> Result<Target, DnsProblem> {
    match &target.addr {
        TargetAddr::Unix(p) => Ok(Target::Unix(p.clone())),
        TargetAddr::Tcp { host, port } => {
            let budget = cx.remaining().min(Duration::from_secs(3));
            cx.sources
                .resolve_as_nginx(target, host, *port, budget)
                .await
                .map(|ips| Target::Tcp(std::net::SocketAddr::new(ips[0], *port)))
        }
    }
}

/// What nginx would ask: the site's name and, for a plain prefix location, its prefix.
pub(crate) fn ask_for(t: &UpstreamTarget) -> Ask {
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

#[cfg(test)]
mod tests {
    use super::*;
    use why502_model::Reference;

    fn target_at(server_name: Option<&str>, location: Option<&str>) -> UpstreamTarget {
        UpstreamTarget {
            references: vec![Reference {
                file: "nginx.conf".into(),
                line: 1,
                server_name: server_name.map(str::to_string),
                location: location.map(str::to_string),
                directive: "proxy_pass http://127.0.0.1:8000".into(),
            }],
            ..crate::test_support::tcp_target(8000)
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
}

//! The direct request's TLS and name resolution, as nginx does them: an https backend whose
//! self-signed certificate nginx is told to verify, the same backend with verification off
//! (control), a name that nginx resolves per request through `resolver` and that does not
//! exist, and two tarpits under one run's --timeout.

use std::time::{Duration, Instant};

use crate::harness::{tcp_addr, Expect, Lab, Misbehaviour, UpstreamExpect};

const UPSTREAM_IP: &str = "127.0.0.1";
const TLS_PORT: u16 = 8443;
const DNS_PORT: u16 = 5353;

fn https_stack(lab: &mut Lab, verify: bool) -> String {
    let backend = lab.make_self_signed_cert("backend", "backend.lab");
    // The CA nginx trusts is another self-signed certificate: the backend's is not from it.
    let other_ca = lab.make_self_signed_cert("other-ca", "ca.lab");
    lab.start_https_backend(UPSTREAM_IP, TLS_PORT, &backend);
    let upstream = tcp_addr(UPSTREAM_IP, TLS_PORT);
    let trusted = format!("proxy_ssl_trusted_certificate {};", other_ca.cert.display());
    let verify_line = format!("proxy_ssl_verify {};", if verify { "on" } else { "off" });
    let location = format!(
        "proxy_pass https://{upstream};\n{verify_line}\n{trusted}\nproxy_ssl_name backend.lab;"
    );
    lab.start_nginx(&location);
    upstream
}

#[test]
fn lab_https_backend_with_an_untrusted_certificate() {
    let Some(mut lab) = Lab::new("tls-untrusted") else {
        return;
    };
    let upstream = https_stack(&mut lab, true);
    lab.prove_502("upstream SSL certificate verify error");

    let run = lab.run_agent(&["--json", "--nginx-conf", &lab.nginx_conf_arg()]);
    run.assert(
        &Expect::report("break", 2).upstream(
            UpstreamExpect::at(&upstream)
                .step("direct_request")
                .cause("upstream_tls")
                .summary_contains("backend.lab"),
        ),
    );
}

/// nginx does not verify by default; neither does the agent then judge the certificate.
#[test]
fn lab_https_backend_without_verification_is_healthy() {
    let Some(mut lab) = Lab::new("tls-noverify") else {
        return;
    };
    let upstream = https_stack(&mut lab, false);
    assert_eq!(
        lab.curl_through_nginx("/"),
        200,
        "nginx without proxy_ssl_verify must serve 200\n{}",
        lab.diagnostics()
    );
    let run = lab.run_agent(&["--json", "--nginx-conf", &lab.nginx_conf_arg()]);
    run.assert(&Expect::healthy(&upstream));
}

/// `set $b name; proxy_pass http://$b:8000;` makes nginx resolve per request through its
/// `resolver`; a name that server does not know is a 502 ("could not be resolved").
#[test]
fn lab_name_resolved_per_request_does_not_resolve() {
    let Some(mut lab) = Lab::new("dns-nxdomain") else {
        return;
    };
    lab.start_dns_server(UPSTREAM_IP, DNS_PORT, &[("app.lab", "127.0.0.1")]);
    lab.start_http_backend(UPSTREAM_IP, 8000);
    let location = format!(
        "resolver {UPSTREAM_IP}:{DNS_PORT} ipv6=off;\nresolver_timeout 2s;\n\
         set $backend missing.lab;\nproxy_pass http://$backend:8000;"
    );
    lab.start_nginx(&location);
    lab.prove_502("missing.lab could not be resolved (3: Host not found)");

    let run = lab.run_agent(&["--json", "--nginx-conf", &lab.nginx_conf_arg()]);
    run.assert(
        &Expect::report("break", 2).upstream(
            UpstreamExpect::at("missing.lab:8000")
                .step("direct_request")
                .cause("upstream_dns")
                .summary_contains("missing.lab"),
        ),
    );
}

/// The control: the same resolver knows the name, the backend answers, nothing is wrong.
#[test]
fn lab_name_resolved_per_request_resolves() {
    let Some(mut lab) = Lab::new("dns-ok") else {
        return;
    };
    lab.start_dns_server(UPSTREAM_IP, DNS_PORT, &[("app.lab", "127.0.0.1")]);
    lab.start_http_backend(UPSTREAM_IP, 8000);
    let location = format!(
        "resolver {UPSTREAM_IP}:{DNS_PORT} ipv6=off;\nresolver_timeout 2s;\n\
         set $backend app.lab;\nproxy_pass http://$backend:8000;"
    );
    lab.start_nginx(&location);
    assert_eq!(
        lab.curl_through_nginx("/"),
        200,
        "the resolver knows app.lab\n{}",
        lab.diagnostics()
    );
    let run = lab.run_agent(&["--json", "--nginx-conf", &lab.nginx_conf_arg()]);
    run.assert(&Expect::healthy("app.lab:8000"));
}

/// Two backends that accept and never send a byte: the run still ends within --timeout 3s,
/// each reported as "waited 3 s of nginx's 60 s" (unknown), not as a timeout.
#[test]
fn lab_two_tarpits_within_the_run_timeout() {
    let Some(mut lab) = Lab::new("dr-two-tarpits") else {
        return;
    };
    lab.start_misbehaving_backend(Misbehaviour::Tarpit, UPSTREAM_IP, 8000);
    lab.start_misbehaving_backend(Misbehaviour::Tarpit, UPSTREAM_IP, 8001);
    lab.start_misbehaving_backend(Misbehaviour::Tarpit, UPSTREAM_IP, 8002);
    // /a and /b have nginx's default 60 s read timeout (set again: they would inherit the 1 s
    // of `/`), so only the run's budget bounds the agent; `/` (a third tarpit, 1 s) is there
    // to prove the breakage quickly through nginx.
    let location = "location /a { proxy_pass http://127.0.0.1:8000; proxy_read_timeout 60s; }\n\
                    location /b { proxy_pass http://127.0.0.1:8001; proxy_read_timeout 60s; }\n\
                    proxy_pass http://127.0.0.1:8002; proxy_read_timeout 1s;";
    lab.start_nginx(location);
    lab.prove_status(
        504,
        "upstream timed out (110: Connection timed out) while reading",
    );

    let started = Instant::now();
    let run = lab.run_agent(&[
        "--json",
        "--timeout",
        "3s",
        "--nginx-conf",
        &lab.nginx_conf_arg(),
    ]);
    let took = started.elapsed();
    // nginx waits 60 s there: 3 s of waiting cannot tell a timeout, and the report says so.
    for port in [8000, 8001] {
        run.assert(
            &Expect::report("break", 2).upstream(
                UpstreamExpect::at(&tcp_addr(UPSTREAM_IP, port))
                    .status("unknown")
                    .step("direct_request")
                    .summary_contains("of nginx's 1m"),
            ),
        );
    }
    // nginx gave up on the third after its 1 s: that one is a timeout.
    run.assert(
        &Expect::report("break", 2)
            .upstream(UpstreamExpect::at(&tcp_addr(UPSTREAM_IP, 8002)).cause("upstream_timeout")),
    );
    // The acceptance bound: under 4 s for --timeout 3s, `ip netns exec` included.
    assert!(
        took < Duration::from_secs(4),
        "two tarpits took {took:?} with --timeout 3s"
    );
}

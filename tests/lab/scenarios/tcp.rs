//! nginx → python HTTP backend over TCP on loopback: healthy, nothing
//! listening, listening on another port, bound to another address.

use crate::harness::{tcp_addr, Expect, Lab};

/// nginx's log text for connect() to a port nobody listens on.
const ECONNREFUSED: &str = "(111: Connection refused)";

/// Where nginx proxies in every TCP scenario.
const UPSTREAM_IP: &str = "127.0.0.1";
const UPSTREAM_PORT: u16 = 8000;

fn upstream() -> String {
    tcp_addr(UPSTREAM_IP, UPSTREAM_PORT)
}

fn start_proxy(lab: &mut Lab) {
    let location = lab.proxy_location(&upstream());
    lab.start_nginx(&location);
}

#[test]
fn lab_healthy_tcp_backend() {
    let Some(mut lab) = Lab::new("healthy-tcp") else {
        return;
    };
    lab.start_http_backend(UPSTREAM_IP, UPSTREAM_PORT);
    start_proxy(&mut lab);
    assert_eq!(
        lab.curl_through_nginx("/"),
        200,
        "healthy stack must serve 200\n{}",
        lab.diagnostics()
    );

    let run = lab.run_agent(&["--json", "--nginx-conf", &lab.nginx_conf_arg()]);
    run.assert(&Expect::healthy(&upstream()));
    // Where the time went: the phases add up to no more than the run.
    let phases = run.report()["phases"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let names: Vec<&str> = phases.iter().filter_map(|p| p["phase"].as_str()).collect();
    assert!(
        names.iter().any(|n| n.starts_with("walk")) && names.len() >= 4,
        "{names:?}"
    );
    let us: u64 = phases.iter().filter_map(|p| p["us"].as_u64()).sum();
    let total_ms = run.report()["duration_ms"].as_u64().unwrap_or(0);
    assert!(
        us / 1000 <= total_ms + 1,
        "{us} us of phases in a {total_ms} ms run"
    );
}

#[test]
fn lab_tcp_backend_down() {
    let Some(mut lab) = Lab::new("tcp-backend-down") else {
        return;
    };
    start_proxy(&mut lab);
    lab.prove_502(ECONNREFUSED);

    let run = lab.run_agent(&["--json", "--nginx-conf", &lab.nginx_conf_arg()]);
    run.assert(&Expect::broken(&upstream(), "backend_up", "backend_down"));
}

#[test]
fn lab_backend_on_another_port() {
    let Some(mut lab) = Lab::new("backend-other-port") else {
        return;
    };
    lab.start_http_backend(UPSTREAM_IP, 8001);
    start_proxy(&mut lab);
    lab.prove_502(ECONNREFUSED);

    let run = lab.run_agent(&["--json", "--nginx-conf", &lab.nginx_conf_arg()]);
    run.assert(
        &Expect::broken(&upstream(), "backend_up", "address_mismatch").summary_contains("8001"),
    );
}

#[test]
fn lab_backend_bound_to_another_address() {
    let Some(mut lab) = Lab::new("backend-other-addr") else {
        return;
    };
    // All of 127.0.0.0/8 is local, so 127.0.0.2 binds without extra setup.
    lab.start_http_backend("127.0.0.2", UPSTREAM_PORT);
    start_proxy(&mut lab);
    lab.prove_502(ECONNREFUSED);

    let run = lab.run_agent(&["--json", "--nginx-conf", &lab.nginx_conf_arg()]);
    run.assert(
        &Expect::broken(&upstream(), "backend_up", "address_mismatch")
            .summary_contains("127.0.0.2"),
    );
}

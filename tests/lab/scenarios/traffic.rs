//! "How bad is it?": a backend that fails every other request, 200 requests through nginx.
//! The agent's `traffic` (requests, 502s) must be within 5 % of what awk counts in the access
//! log itself: per upstream with a `log_format` holding `$upstream_addr $upstream_status`,
//! per site with nginx's `combined`.

use std::process::Command;

use crate::harness::{find_program, tcp_addr, Lab, Misbehaviour};

const IP: &str = "127.0.0.1";
const PORT: u16 = 8000;
const REQUESTS: u64 = 200;

/// (lines, 502s) by awk: `status_field` is the awk field number of `$status`.
fn awk_counts(log: &std::path::Path, status_field: usize) -> (u64, u64) {
    let awk = find_program("awk").expect("awk");
    let program = format!("{{ n++ }} ${status_field} == 502 {{ b++ }} END {{ print n+0, b+0 }}");
    let out = Command::new(awk)
        .arg(&program)
        .arg(log)
        .output()
        .expect("run awk");
    let text = String::from_utf8_lossy(&out.stdout);
    let mut it = text
        .split_whitespace()
        .map(|n| n.parse::<u64>().unwrap_or(0));
    (it.next().unwrap_or(0), it.next().unwrap_or(0))
}

fn within_5_percent(got: u64, want: u64) -> bool {
    got.abs_diff(want) * 20 <= want.max(1)
}

/// The agent's traffic is counted `by` as said, within 5 % of awk's lines and 502s.
fn assert_agrees(t: &serde_json::Value, by: &str, lines: u64, bad: u64) {
    assert_eq!(t["by"], by, "{t:#}");
    let req = t["requests"].as_u64().unwrap_or(0);
    let b502 = t["status_502"].as_u64().unwrap_or(0);
    assert!(
        within_5_percent(req, lines),
        "agent {req} requests, awk {lines}"
    );
    assert!(within_5_percent(b502, bad), "agent {b502} 502s, awk {bad}");
}

fn traffic_of(lab: &Lab, upstream: &str) -> serde_json::Value {
    let run = lab.run_agent(&["--json", "--nginx-conf", &lab.nginx_conf_arg()]);
    let report = run.json.clone().expect("a JSON report");
    report["upstreams"]
        .as_array()
        .and_then(|us| us.iter().find(|u| u["address"] == upstream))
        .map(|u| u["traffic"].clone())
        .filter(|t| !t.is_null())
        .unwrap_or_else(|| panic!("no traffic for {upstream}\n{}", run.context()))
}

/// 200 requests through nginx, one curl (URL globbing), half of them 502.
fn load(lab: &Lab) {
    let url = format!("http://{}/r[1-{REQUESTS}]", "127.0.0.1:8080");
    let curl = find_program("curl").expect("curl");
    let out = lab
        .netns_command(&curl, &["-s", "-o", "/dev/null", "--max-time", "60", &url])
        .output()
        .expect("run curl");
    assert!(
        out.status.success() || out.status.code() == Some(22),
        "curl: {out:?}"
    );
}

#[test]
fn lab_traffic_counts_the_access_log_per_upstream_and_per_site() {
    let Some(mut lab) = Lab::new("traffic-half-fail") else {
        return;
    };
    let upstream = tcp_addr(IP, PORT);
    lab.start_misbehaving_backend(Misbehaviour::Half, IP, PORT);
    let up_log = lab.path("logs/upstream.log");
    let snippet = format!(
        "log_format up '$remote_addr [$time_local] \"$request\" $status $upstream_addr $upstream_status';\naccess_log {} up;",
        up_log.display()
    );
    lab.start_nginx_with_http_snippet(&snippet, &lab.proxy_location(&upstream));
    load(&lab);

    // Per upstream: $upstream_addr names it. Fields: ip [date zone] "GET /r1 HTTP/1.1" status.
    let (lines, bad) = awk_counts(&up_log, 7);
    assert!(
        lines >= REQUESTS && bad >= REQUESTS / 3,
        "awk saw {lines} lines, {bad} 502s"
    );
    let t = traffic_of(&lab, &upstream);
    assert_agrees(&t, "upstream", lines, bad);
    assert!(
        !t["per_minute"].as_array().is_none_or(|m| m.is_empty()),
        "{t:#}"
    );

    // Per site: the lab's own `access_log` in combined (one server: its own log).
    lab.stop_nginx();
    lab.start_nginx(&lab.proxy_location(&upstream));
    load(&lab);
    let combined = lab.path("logs/access.log");
    // combined: ip - user [date zone] "GET /r1 HTTP/1.1" status bytes ...
    let (lines, bad) = awk_counts(&combined, 9);
    let t = traffic_of(&lab, &upstream);
    assert_agrees(&t, "server", lines, bad);

    // And in the text a person reads.
    let text = lab.run_agent(&["--nginx-conf", &lab.nginx_conf_arg()]);
    assert!(text.stdout.contains("traffic:"), "{}", text.stdout);
}

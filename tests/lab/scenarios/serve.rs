//! `why502 serve` for panels, on a real broken stack: php-fpm's socket root-owned 0600, so
//! nginx answers 502 with `(13: Permission denied)`. A panel-like client (curl over the unix
//! socket) gets the break for its site; 50 concurrent requests share one diagnosis (counted
//! in /metrics); a slowloris does not block the others and is cut off; a malformed request
//! line gets a 400; bad queries a JSON 400, unknown paths 404, other methods 405; the answer
//! changes once the stack is repaired; SIGTERM removes the socket.

use std::fs;
use std::os::unix::fs::{chown, PermissionsExt};
use std::time::{Duration, Instant};

use crate::harness::{
    closed_within, lookup_group, raw_exchange, serve_socket_path, slowloris, unix_addr, Lab,
    PhpFpmPool,
};

const EACCES: &str = "(13: Permission denied)";

/// The counter `name` in a Prometheus text.
fn counter(metrics: &str, name: &str) -> u64 {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(name).and_then(|v| v.trim().parse().ok()))
        .unwrap_or_else(|| panic!("no {name} in /metrics:\n{metrics}"))
}

/// The status and cause serve reports for the upstream at `address`.
fn verdict_of(report: &serde_json::Value, address: &str) -> (String, String) {
    let u = report["upstreams"]
        .as_array()
        .and_then(|us| us.iter().find(|u| u["address"] == address))
        .unwrap_or_else(|| panic!("no upstream {address} in {report:#}"));
    (
        u["status"].as_str().unwrap_or_default().to_string(),
        u["verdict"]["cause"]
            .as_str()
            .unwrap_or_default()
            .to_string(),
    )
}

#[test]
fn lab_serve_answers_a_panel_on_a_broken_stack() {
    let Some(mut lab) = Lab::new("serve-panel") else {
        return;
    };
    let fpm = lab.path("run/php-fpm.sock");
    lab.start_php_fpm(PhpFpmPool::unix(&fpm).socket_owner("root", "root", "0600"));
    lab.start_nginx(&lab.fastcgi_location(&fpm));
    lab.prove_502(EACCES);

    let sock = serve_socket_path(&lab);
    let conf = lab.nginx_conf_arg();
    lab.start_serve(&sock, &["--nginx-conf", &conf, "--cache", "2s"]);
    let mode = fs::metadata(&sock)
        .expect("the socket exists")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o660, "socket mode {mode:o}");

    // The per-site view a panel shows.
    let a = lab.curl_serve(&sock, "/v1/report?server_name=lab.test", &[]);
    assert_eq!(a.status, 200, "{}", a.body);
    let report = a.json();
    assert_eq!(report["schema"], "why502.report.v1");
    assert_eq!(report["status"], "break", "{report:#}");
    assert_eq!(
        verdict_of(&report, &unix_addr(&fpm)),
        ("break".to_string(), "socket_permission".to_string())
    );

    // 50 panels asking the same new question at once: one diagnosis.
    let before = counter(
        &lab.curl_serve(&sock, "/metrics", &[]).body,
        "why502_serve_diagnoses_total",
    );
    let answers = lab.curl_serve_concurrently(&sock, "/v1/report?server_name=lab.test&all=1", 50);
    assert!(answers
        .iter()
        .all(|a| a.status == 200 && a.json()["status"] == "break"));
    let metrics = lab.curl_serve(&sock, "/metrics", &[]).body;
    // /metrics itself asks the default question: at most one more diagnosis for it.
    let ran = counter(&metrics, "why502_serve_diagnoses_total") - before;
    assert!(
        (1..=2).contains(&ran),
        "50 concurrent requests ran {ran} diagnoses\n{metrics}"
    );
    assert!(metrics.contains("why502_upstream_status{"), "{metrics}");
    crate::harness::promtool_check_metrics(&metrics);

    // A slowloris holds a connection; the others are answered meanwhile, and it is cut off.
    let mut slow = slowloris(&sock);
    let t = Instant::now();
    let health = lab.curl_serve(&sock, "/v1/health", &[]);
    assert_eq!(health.status, 200);
    assert_eq!(health.json()["status"], "ok");
    assert!(
        t.elapsed() < Duration::from_secs(2),
        "health took {:?} beside a slowloris",
        t.elapsed()
    );
    assert!(
        closed_within(&mut slow, Duration::from_secs(8)),
        "the slowloris was never cut off"
    );

    // Malformed and unwelcome requests.
    let (reply, _) = raw_exchange(&sock, b"BLAH\r\n\r\n", Duration::from_secs(2));
    assert!(reply.starts_with("HTTP/1.1 400"), "{reply:?}");
    let bad = lab.curl_serve(&sock, "/v1/report?since=banana", &[]);
    assert_eq!(bad.status, 400);
    let v = bad.json();
    assert_eq!(v["status"], "unknown");
    assert!(
        v["error"].as_str().unwrap_or_default().contains("since"),
        "{v:#}"
    );
    for key in ["schema", "host", "started_at", "duration_ms"] {
        assert!(!v[key].is_null(), "error report lacks {key}: {v:#}");
    }
    assert_eq!(lab.curl_serve(&sock, "/v2/nope", &[]).status, 404);
    assert_eq!(
        lab.curl_serve(&sock, "/v1/report", &["-X", "POST"]).status,
        405
    );
    let long = format!("/v1/report?server_name={}", "a".repeat(4000));
    assert_eq!(lab.curl_serve(&sock, &long, &[]).status, 414);
    assert!(lab
        .curl_serve(&sock, "/v1/causes", &[])
        .body
        .contains("socket_permission"));
    assert!(lab
        .curl_serve(&sock, "/v1/tree", &[])
        .body
        .contains("\"backend_up\""));

    // Repaired: once the cached answer is older than --cache, the report follows.
    fs::set_permissions(&fpm, fs::Permissions::from_mode(0o660)).expect("chmod the socket");
    let www = lookup_group("www-data").expect("group www-data");
    chown(&fpm, None, Some(www)).expect("chgrp the socket");
    assert_eq!(lab.curl_through_nginx("/"), 200, "{}", lab.diagnostics());
    std::thread::sleep(Duration::from_millis(2100));
    let after = lab
        .curl_serve(&sock, "/v1/report?server_name=lab.test", &[])
        .json();
    let (status, _) = verdict_of(&after, &unix_addr(&fpm));
    assert_ne!(status, "break", "still a break after the repair: {after:#}");

    // SIGTERM: a clean exit, and the socket is gone.
    let exit = lab.stop_serve().expect("serve exits on SIGTERM");
    assert!(
        exit.success(),
        "serve exited {exit}\n{}",
        lab.serve_stderr()
    );
    assert!(!sock.exists(), "the socket is left behind");
}

/// A path in the way is refused: serve never removes what is not its stale socket.
#[test]
fn lab_serve_refuses_a_path_that_is_not_its_socket() {
    let Some(lab) = Lab::new("serve-refuses") else {
        return;
    };
    let sock = serve_socket_path(&lab);
    fs::write(&sock, "not a socket").expect("write");
    let run = lab.run_agent_raw(&["serve", "--socket", &sock.display().to_string()]);
    assert_eq!(run.exit_code, 3, "{run:?}");
    assert!(run.stderr.contains("not a socket"), "{}", run.stderr);
    assert_eq!(
        fs::read_to_string(&sock).expect("still there"),
        "not a socket"
    );
}

//! Scenarios about a host with a past (issue 11): every lab stack already runs among bystander
//! OOM kills, old 502 lines and a php-fpm log shared with another pool (see
//! `harness/history.rs`); these go further — a bystander killed in a child cgroup of the healthy
//! backend's own cgroup, twenty pools sharing one log where one pool fails, an error log the
//! agent must not or cannot read (a FIFO; mode 000 for an agent run as nobody), and configs far
//! bigger or deeper than the usual (20 MB; locations nested 2,000 deep).

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use serde_json::Value;

use crate::harness::{
    poll_until, render_nginx_conf, tcp_addr, unix_addr, AgentRun, Expect, Lab, MemoryCgroup,
    PhpFpmPool, UpstreamExpect,
};

const IP: &str = "127.0.0.1";
const PORT: u16 = 8000;

/// nobody:nogroup.
const NOBODY: u32 = 65534;

fn upstream() -> String {
    tcp_addr(IP, PORT)
}

#[track_caller]
fn assert_serves_200(lab: &Lab, path: &str) {
    assert_eq!(
        lab.curl_through_nginx(path),
        200,
        "lab {}: {path} through nginx must serve 200\n{}",
        lab.scenario(),
        lab.diagnostics()
    );
}

/// Every string under `value` (object values, array items).
fn strings_in<'a>(value: &'a Value, out: &mut Vec<&'a str>) {
    match value {
        Value::String(text) => out.push(text),
        Value::Array(items) => items.iter().for_each(|item| strings_in(item, out)),
        Value::Object(map) => map.values().for_each(|item| strings_in(item, out)),
        _ => {}
    }
}

/// The texts of the report's upstream steps and verdicts, host checks and notes.
fn step_texts(report: &Value) -> Vec<&str> {
    let mut out = Vec::new();
    for upstream in report["upstreams"].as_array().into_iter().flatten() {
        strings_in(&upstream["steps"], &mut out);
        strings_in(&upstream["verdict"], &mut out);
    }
    strings_in(&report["host_checks"], &mut out);
    strings_in(&report["notes"], &mut out);
    out
}

/// A bystander (a python3 hog) OOM-killed in a child cgroup of the healthy backend's own memory
/// cgroup: its kill's memcg path starts with the backend's, but the backend was never touched
/// and still answers. The upstream is ok; the kill is a host warning at most.
#[test]
fn lab_history_bystander_killed_in_a_child_cgroup_of_a_healthy_backend() {
    // Declared before the lab, so they are removed after it stopped the backend in them.
    let backend_cgroup: MemoryCgroup;
    let _leaf: MemoryCgroup;
    let child: MemoryCgroup;
    let Some(mut lab) = Lab::new_exclusive("hist-child-cgroup") else {
        return;
    };
    let work = lab.path("work");
    fs::create_dir_all(&work).expect("work dir");
    let backend_pid = lab.start_app_backend(IP, PORT, &work);
    backend_cgroup = MemoryCgroup::new(&format!("why502-{}", lab.netns_name()), 512 << 20);
    if backend_cgroup.is_v2() {
        // cgroup v2 allows no process in a cgroup whose children have the memory controller:
        // the backend goes into a leaf of C, the bystander into another child of C.
        _leaf = backend_cgroup.child("app", 512 << 20);
        _leaf.add(backend_pid);
    } else {
        backend_cgroup.add(backend_pid);
    }
    child = backend_cgroup.child("child", 32 << 20);
    lab.start_nginx(&lab.proxy_location(&upstream()));
    assert_serves_200(&lab, "/");

    let hog = lab.oom_kill_a_hog_in(&child);
    // The kill stayed in the child cgroup: the backend lives and serves.
    assert!(
        std::path::Path::new(&format!("/proc/{backend_pid}")).exists(),
        "the backend (pid {backend_pid}) must survive the child cgroup's OOM kill"
    );
    assert_serves_200(&lab, "/");

    let run = lab.run_agent(&["--json", "--nginx-conf", &lab.nginx_conf_arg()]);
    run.assert(&Expect::healthy(&upstream()));
    // The kill is in the window and no upstream's: a host warning names the bystander.
    let named = run.report()["host_checks"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|check| {
            check["cause"] == "oom_killed"
                && check["outcome"] == "warn"
                && check["summary"]
                    .as_str()
                    .is_some_and(|s| s.contains(&format!("(pid {hog})")))
        });
    assert!(
        named,
        "expected an oom_killed host warning naming the bystander pid {hog}\n{}",
        run.context()
    );
}

/// How many pools the one php-fpm master runs; `FAILING_POOL` is the one that breaks.
const POOLS: usize = 20;
const FAILING_POOL: usize = 7;

fn pool_name(n: usize) -> String {
    format!("pool{n}")
}

/// One php-fpm master with 20 pools (plus the lab's bystander), all logging to the master's one
/// error_log, one nginx location per pool. pool7 kills a script at request_terminate_timeout
/// (nginx: a reset, 502; php-fpm: "execution timed out ... terminating") and runs a script that
/// dies of a PHP fatal error (php-fpm: "child N said into stderr: ... PHP Fatal error"). Only
/// pool7's upstream may name them; the 19 others are ok.
#[test]
fn lab_history_twenty_pools_share_one_log() {
    let Some(mut lab) = Lab::new("hist-twenty-pools") else {
        return;
    };
    let socket = |n: usize| lab.path(&format!("run/{}.sock", pool_name(n)));
    let sockets: Vec<_> = (1..=POOLS).map(socket).collect();
    let pools: Vec<PhpFpmPool> = (1..=POOLS)
        .map(|n| {
            let pool = PhpFpmPool::unix(&sockets[n - 1]).named(&pool_name(n));
            if n == FAILING_POOL {
                pool.extra("request_terminate_timeout = 1s")
                    .php_errors_to_the_fpm_log()
            } else {
                pool
            }
        })
        .collect();
    lab.start_php_fpm_pools(pools);

    let sleep = lab.path("www/sleep.php");
    let fatal = lab.path("www/fatal.php");
    fs::write(&sleep, "<?php sleep(3); echo \"late\";\n").expect("sleep.php");
    fs::write(&fatal, "<?php undefined_function_of_the_lab();\n").expect("fatal.php");
    for script in [&sleep, &fatal] {
        fs::set_permissions(script, fs::Permissions::from_mode(0o644)).expect("chmod");
    }
    let failing = &sockets[FAILING_POOL - 1];
    let prefixes: Vec<String> = (1..=POOLS).map(|n| format!("/p{n}/")).collect();
    let mut bodies: Vec<String> = sockets
        .iter()
        .map(|socket| lab.fastcgi_location(socket))
        .collect();
    bodies.push(lab.fastcgi_location_for(failing, &sleep));
    bodies.push(lab.fastcgi_location_for(failing, &fatal));
    let sleep_uri = format!("/p{FAILING_POOL}/sleep");
    let fatal_uri = format!("/p{FAILING_POOL}/fatal");
    let mut matchers: Vec<String> = prefixes.clone();
    matchers.push(format!("= {sleep_uri}"));
    matchers.push(format!("= {fatal_uri}"));
    let locations: Vec<(&str, &str)> = matchers
        .iter()
        .map(String::as_str)
        .zip(bodies.iter().map(String::as_str))
        .collect();
    lab.start_nginx_with_locations(&locations);
    for prefix in &prefixes {
        assert_serves_200(&lab, prefix);
    }

    // pool7's script outlives request_terminate_timeout: php-fpm kills the worker, nginx sees
    // the connection reset and answers 502.
    let failing_upstream = unix_addr(failing);
    assert_eq!(
        lab.curl_through_nginx(&sleep_uri),
        502,
        "{}",
        lab.diagnostics()
    );
    let reset_logged = poll_until(Duration::from_secs(2), || {
        lab.error_log_text()
            .lines()
            .any(|line| {
                line.contains("(104: Connection reset by peer)")
                    && line.contains(&format!("upstream: \"fastcgi://{failing_upstream}:\""))
            })
            .then_some(())
    });
    assert!(
        reset_logged.is_some(),
        "nginx logged no reset from {failing_upstream}\n{}",
        lab.diagnostics()
    );
    let pool7 = pool_name(FAILING_POOL);
    let timeout_logged = poll_until(Duration::from_secs(2), || {
        lab.php_fpm_logged(&pool7, "execution timed out")
            .then_some(())
    });
    assert!(
        timeout_logged.is_some(),
        "php-fpm did not log pool7's terminate timeout\n{}",
        lab.php_fpm_log_text()
    );
    // pool7's other script dies of a PHP fatal error (500, not a 502: php-fpm answers).
    assert_eq!(
        lab.curl_through_nginx(&fatal_uri),
        500,
        "{}",
        lab.diagnostics()
    );
    let fatal_logged = poll_until(Duration::from_secs(2), || {
        lab.php_fpm_logged(&pool7, "PHP Fatal error").then_some(())
    });
    assert!(
        fatal_logged.is_some(),
        "php-fpm did not log pool7's fatal error\n{}",
        lab.php_fpm_log_text()
    );

    let run = lab.run_agent(&["--json", "--nginx-conf", &lab.nginx_conf_arg()]);
    let mut expect = Expect::report("break", 2).upstream(
        UpstreamExpect::at(&failing_upstream)
            .status("break")
            .step("backend_log")
            .cause("upstream_timeout")
            .evidence_contains(&format!("[pool {pool7}]"))
            .evidence_contains("execution timed out"),
    );
    for (n, socket) in sockets.iter().enumerate() {
        if n + 1 != FAILING_POOL {
            expect = expect.upstream(UpstreamExpect::at(&unix_addr(socket)).status("ok"));
        }
    }
    run.assert(&expect);

    // The screen of this many-pools host: under 30 lines, the broken pool first, the healthy
    // ones in one line, the last line naming the cause and the site.
    let text = lab.run_agent(&["--nginx-conf", &lab.nginx_conf_arg()]);
    let lines: Vec<&str> = text.stdout.lines().collect();
    assert!(lines.len() < 30, "{} lines:\n{}", lines.len(), text.stdout);
    let first = lines
        .iter()
        .find(|l| {
            ["BREAK ", "OK ", "WARN ", "??? "]
                .iter()
                .any(|m| l.starts_with(m))
        })
        .unwrap_or(&"");
    assert!(
        first.starts_with("BREAK") && first.contains(&failing_upstream),
        "{}",
        text.stdout
    );
    assert!(
        text.stdout
            .contains("19 upstream(s) ok on 1 site(s): lab.test"),
        "{}",
        text.stdout
    );
    let last = lines.last().unwrap_or(&"");
    assert!(
        last.starts_with("BREAK 1 of 20 upstream(s): upstream_timeout (lab.test)"),
        "{last}"
    );
}

/// nginx's error log is a FIFO a log shipper reads. A request got 502 (the shipper has nginx's
/// line), then the backend came back. The agent must not read the FIFO (it would take nginx's
/// lines from the shipper) and so cannot see the 502s: unknown, with the reason named.
#[test]
fn lab_history_fifo_error_log_is_unknown() {
    let Some(mut lab) = Lab::new("hist-fifo-log") else {
        return;
    };
    lab.make_error_log_a_fifo();
    lab.start_nginx(&lab.proxy_location(&upstream()));
    // Nothing listens on :8000 yet: a real 502, logged through the FIFO.
    lab.prove_502("(111: Connection refused)");
    lab.start_http_backend(IP, PORT);
    assert_serves_200(&lab, "/");

    let run = lab.run_agent(&["--json", "--nginx-conf", &lab.nginx_conf_arg()]);
    run.assert(&Expect::report("unknown", 3));
    assert_names_the_reason(&run, &["FIFO", "fifo", "not a regular file"]);
}

/// The same past (a 502, then the backend back) with a regular error log of mode 000, and the
/// agent run as nobody: it cannot read the log, so it cannot say the 502s are over: unknown.
#[test]
fn lab_history_mode_000_error_log_is_unknown_as_non_root() {
    let Some(mut lab) = Lab::new("hist-log-mode-000") else {
        return;
    };
    lab.start_nginx(&lab.proxy_location(&upstream()));
    lab.prove_502("(111: Connection refused)");
    lab.start_http_backend(IP, PORT);
    assert_serves_200(&lab, "/");
    fs::set_permissions(lab.error_log_path(), fs::Permissions::from_mode(0o000))
        .expect("chmod 000 the error log");
    let run = lab.run_agent_as(
        NOBODY,
        &[],
        &["--json", "--nginx-conf", &lab.nginx_conf_arg()],
    );
    run.assert(&Expect::report("unknown", 3));
    let error_log_step = run.upstream(&upstream())["steps"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|step| step["step"] == "error_log")
        .cloned()
        .unwrap_or(Value::Null);
    assert_eq!(
        error_log_step["outcome"],
        "unknown",
        "the error log nobody may read must be unknown: {error_log_step}\n{}",
        run.context()
    );
}

#[track_caller]
fn assert_names_the_reason(run: &AgentRun, words: &[&str]) {
    let texts = step_texts(run.report());
    assert!(
        texts
            .iter()
            .any(|text| words.iter().any(|word| text.contains(word))),
        "no step, host check or note names the reason (any of {words:?})\n{}",
        run.context()
    );
}

/// Generated virtual hosts in a ~20 MB config: one per customer, each with a header comment of
/// the panel that writes it, a dozen aliases and a location proxying to the lab's one backend.
const HUGE_SERVERS: usize = 12_000;
/// nginx loads this in about 1.5 s here; a loaded CI box may need several times that.
const HUGE_START: Duration = Duration::from_secs(30);

fn generated_server(i: usize) -> String {
    let mut text = String::new();
    for k in 0..10 {
        text.push_str(&format!(
            "    # {k}: customer {i} is managed by the lab's control panel; do not edit by hand, changes are overwritten\n"
        ));
    }
    let aliases: Vec<String> = (0..12)
        .map(|j| format!("alias{j}.site{i}.customers.lab.test"))
        .collect();
    text.push_str(&format!(
        "    server {{\n        listen {IP}:8080;\n        server_name site{i}.customers.lab.test {};\n        \
         client_max_body_size 16m;\n        location / {{\n            proxy_pass http://{IP}:{PORT};\n            \
         proxy_read_timeout 30s;\n        }}\n    }}\n\n",
        aliases.join(" ")
    ));
    text
}

/// A ~20 MB nginx config (12,000 generated servers after the lab's own) that `nginx -t` accepts
/// and the lab's nginx runs: the agent must find the one upstream and call it healthy, not
/// "0 upstreams" and not nginx_config_invalid.
#[test]
fn lab_history_huge_config() {
    let Some(mut lab) = Lab::new("hist-huge-config") else {
        return;
    };
    lab.start_http_backend(IP, PORT);
    let base = render_nginx_conf(lab.root(), &lab.proxy_location(&upstream()));
    let close = base.rfind('}').expect("the http block closes");
    let mut text = String::with_capacity(21 << 20);
    text.push_str(&base[..close]);
    text.push_str(
        "    server_names_hash_max_size 262144;\n    server_names_hash_bucket_size 256;\n\n",
    );
    for i in 0..HUGE_SERVERS {
        text.push_str(&generated_server(i));
    }
    text.push_str(&base[close..]);
    assert!(
        text.len() > 19 << 20,
        "the config is only {} bytes",
        text.len()
    );
    lab.start_nginx_with_conf_within(&text, HUGE_START);
    let test = lab.nginx_config_test();
    assert!(
        test.exit_code == 0 && !test.stderr.contains("[warn]"),
        "nginx -t must accept the huge config without a warning:\n{}",
        test.stderr
    );
    // The lab's server is the first for 127.0.0.1:8080, so the default one.
    assert_serves_200(&lab, "/");
    let generated = lab.curl_through_nginx_with_host("site11999.customers.lab.test", "/");
    assert_eq!(generated, 200, "the last generated server must serve 200");

    let run = lab.run_agent(&["--json", "--nginx-conf", &lab.nginx_conf_arg()]);
    run.assert(&Expect::healthy(&upstream()));
}

/// How deep the nested locations go.
const NESTED_DEPTH: usize = 2_000;

/// Locations nested 2,000 deep (`/n/`, `/n/d/`, `/n/d/d/`, ...) with the innermost one
/// proxying to the backend: nginx accepts it and serves the innermost path; the agent must find
/// that upstream.
#[test]
fn lab_history_deeply_nested_locations() {
    let Some(mut lab) = Lab::new("hist-nested-locations") else {
        return;
    };
    lab.start_http_backend(IP, PORT);
    let mut body = String::new();
    for depth in 0..NESTED_DEPTH {
        body.push_str(&format!("location /n/{} {{\n", "d/".repeat(depth)));
    }
    // With a URI part, nginx replaces the matched prefix: the backend gets `/`.
    body.push_str(&format!("proxy_pass http://{}/;\n", upstream()));
    body.push_str(&"}\n".repeat(NESTED_DEPTH));
    lab.start_nginx(&body);
    let test = lab.nginx_config_test();
    assert_eq!(
        test.exit_code, 0,
        "nginx -t rejects the nesting:\n{}",
        test.stderr
    );
    let innermost = format!("/n/{}", "d/".repeat(NESTED_DEPTH - 1));
    assert_serves_200(&lab, &innermost);

    let run = lab.run_agent(&["--json", "--nginx-conf", &lab.nginx_conf_arg()]);
    run.assert(&Expect::healthy(&upstream()));
}

//! Step `backend_log` and the php-fpm pool under load: a pool whose one worker is busy and
//! whose listen queue is full (nginx: `(11: Resource temporarily unavailable)` →
//! `pool_exhausted`), and a script php-fpm kills at `request_terminate_timeout` (nginx: a
//! reset; php-fpm: "execution timed out" → `upstream_timeout` with php-fpm's line).

use std::time::Duration;

use crate::harness::{
    poll_until, unix_addr, BackgroundRequests, Expect, FpmListen, Lab, PhpFpmPool, StepExpect,
    UpstreamExpect,
};

/// nginx's log text for connect() to a unix socket whose accept queue is full.
const EAGAIN: &str = "(11: Resource temporarily unavailable)";

/// php-fpm with `pool` cut to one static worker and the smallest accept queue, nginx in front,
/// and six concurrent 8 s requests: the third has nowhere to wait. Returns once nginx has
/// logged the overflow and a request through it got 502; the requests run until dropped.
fn exhaust_the_pool(lab: &mut Lab, pool: PhpFpmPool) -> BackgroundRequests {
    let FpmListen::Unix(socket) = pool.listen.clone() else {
        panic!("exhaust_the_pool wants a unix-socket pool");
    };
    lab.start_php_fpm(
        pool.process_manager(&["pm = static", "pm.max_children = 1"])
            .extra("listen.backlog = 1"),
    );
    lab.start_nginx(&lab.fastcgi_location(&socket));
    assert_eq!(lab.curl_through_nginx("/"), 200, "{}", lab.diagnostics());
    lab.write_php_script("<?php usleep(8000000); echo \"slow\";\n");
    let busy = lab.start_concurrent_requests("/", 6, Duration::from_secs(10));
    // Under a loaded CI box (a dockerd starting beside it) the six curls start slowly: wait
    // for most of their 10 s.
    assert!(
        poll_until(Duration::from_secs(8), || lab
            .error_log_contains(EAGAIN)
            .then_some(()))
        .is_some(),
        "six concurrent requests never overflowed the queue\n{}",
        lab.diagnostics()
    );
    // The worker may still be between requests when nginx logs the overflow; the proof
    // request that then fits in the queue waits there, and the next one overflows.
    lab.prove_502_within(3, Duration::from_secs(2), EAGAIN);
    busy
}

#[test]
fn lab_php_fpm_pool_exhausted() {
    let Some(mut lab) = Lab::new("fpm-pool-exhausted") else {
        return;
    };
    let socket = lab.path("run/php-fpm.sock");
    // pm = static never logs "server reached pm.max_children": nginx's line is the only trace.
    let _busy = exhaust_the_pool(&mut lab, PhpFpmPool::unix(&socket));

    let run = lab.run_agent(&["--json", "--nginx-conf", &lab.nginx_conf_arg()]);
    run.assert(
        &Expect::report("break", 2).upstream(
            UpstreamExpect::at(&unix_addr(&socket))
                .cause("pool_exhausted")
                .evidence_contains(EAGAIN),
        ),
    );
}

#[test]
fn lab_php_script_past_request_terminate_timeout() {
    let Some(mut lab) = Lab::new("fpm-terminate-timeout") else {
        return;
    };
    let socket = lab.path("run/php-fpm.sock");
    lab.start_php_fpm(PhpFpmPool::unix(&socket).extra("request_terminate_timeout = 1s"));
    lab.start_nginx(&lab.fastcgi_location(&socket));
    assert_eq!(lab.curl_through_nginx("/"), 200, "{}", lab.diagnostics());
    lab.write_php_script("<?php sleep(4); echo \"late\";\n");
    lab.prove_502("(104: Connection reset by peer)");
    assert!(
        poll_until(Duration::from_secs(2), || lab
            .php_fpm_logged("www", "execution timed out")
            .then_some(()))
        .is_some(),
        "php-fpm did not log the timeout\n{}",
        lab.php_fpm_log_text()
    );

    let run = lab.run_agent(&["--json", "--nginx-conf", &lab.nginx_conf_arg()]);
    run.assert(
        &Expect::report("break", 2).upstream(
            UpstreamExpect::at(&unix_addr(&socket))
                .step("backend_log")
                .cause("upstream_timeout")
                .evidence_contains("execution timed out"),
        ),
    );
}

#[test]
fn lab_php_fpm_status_page_shows_the_full_queue() {
    let Some(mut lab) = Lab::new("fpm-status-full") else {
        return;
    };
    let socket = lab.path("run/php-fpm.sock");
    let _busy = exhaust_the_pool(
        &mut lab,
        PhpFpmPool::unix(&socket).extra("pm.status_path = /fpm-status"),
    );

    // The agent asks the pool for its status page and cannot even queue: that is the pool,
    // seen now, not only nginx's past lines.
    let run = lab.run_agent(&["--json", "--nginx-conf", &lab.nginx_conf_arg()]);
    run.assert(
        &Expect::report("break", 2).upstream(
            UpstreamExpect::at(&unix_addr(&socket))
                .step("backend_log")
                .cause("pool_exhausted")
                .summary_contains("listen queue is full")
                .evidence_contains("os error 11"),
        ),
    );
}

#[test]
fn lab_php_fpm_status_page_read_when_healthy() {
    let Some(mut lab) = Lab::new("fpm-status-healthy") else {
        return;
    };
    let socket = lab.path("run/php-fpm.sock");
    lab.start_php_fpm(PhpFpmPool::unix(&socket).extra("pm.status_path = /fpm-status"));
    lab.start_nginx(&lab.fastcgi_location(&socket));
    assert_eq!(lab.curl_through_nginx("/"), 200, "{}", lab.diagnostics());

    let run = lab.run_agent(&["--json", "--nginx-conf", &lab.nginx_conf_arg()]);
    run.assert(
        &Expect::healthy(&unix_addr(&socket)).upstream(
            UpstreamExpect::at(&unix_addr(&socket)).step_entry(
                StepExpect::at("backend_log")
                    .outcome("pass")
                    .summary_contains_any(&[
                        "status page: 1 active, 1 idle of pm.max_children 2",
                        "status page: 2 active, 0 idle of pm.max_children 2",
                    ]),
            ),
        ),
    );
}

/// A PHP script that SIGKILLs its own worker before answering: nginx loses the response
/// (`recv() failed (104: Connection reset by peer) while reading response header`, a 502:
/// what nginx 1.22 logs for a FastCGI socket closed by a dying worker) and php-fpm logs the child's death
/// by signal 9. No kernel OOM kill exists for that pid, so the cause is the application's
/// (`app_error`, naming the signal), not `oom_killed`.
#[test]
fn lab_php_worker_that_kills_itself_is_the_application() {
    let Some(mut lab) = Lab::new("fpm-self-sigkill") else {
        return;
    };
    let socket = lab.path("run/php-fpm.sock");
    lab.start_php_fpm(PhpFpmPool::unix(&socket));
    lab.start_nginx(&lab.fastcgi_location(&socket));
    assert_eq!(lab.curl_through_nginx("/"), 200, "{}", lab.diagnostics());
    lab.write_php_script("<?php posix_kill(getmypid(), 9);\n");
    lab.prove_502("(104: Connection reset by peer) while reading response header");
    assert!(
        poll_until(Duration::from_secs(3), || lab
            .php_fpm_logged("www", "exited on signal 9 (SIGKILL)")
            .then_some(()))
        .is_some(),
        "php-fpm did not log the worker's death\n{}",
        lab.php_fpm_log_text()
    );

    let run = lab.run_agent(&["--json", "--nginx-conf", &lab.nginx_conf_arg()]);
    run.assert(
        &Expect::report("break", 2).upstream(
            UpstreamExpect::at(&unix_addr(&socket))
                .step("backend_log")
                .cause("app_error")
                .summary_contains("not the OOM killer")
                .summary_contains("nginx lost `GET / HTTP/1.1`")
                .evidence_contains("exited on signal 9"),
        ),
    );
}

/// A PHP fatal error php-fpm answers itself (a 500 page): the application's error, quoted,
/// but no 502 — a warning (exit 1), never a break.
#[test]
fn lab_php_fatal_error_answered_with_500_is_not_a_502() {
    let Some(mut lab) = Lab::new("fpm-fatal-500") else {
        return;
    };
    let socket = lab.path("run/php-fpm.sock");
    lab.start_php_fpm(PhpFpmPool::unix(&socket));
    lab.start_nginx(&lab.fastcgi_location(&socket));
    assert_eq!(lab.curl_through_nginx("/"), 200, "{}", lab.diagnostics());
    lab.write_php_script("<?php why502_no_such_function();\n");
    lab.prove_status(
        500,
        "PHP Fatal error:  Uncaught Error: Call to undefined function",
    );

    let run = lab.run_agent(&["--json", "--nginx-conf", &lab.nginx_conf_arg()]);
    run.assert(
        &Expect::report("warning", 1).upstream(
            UpstreamExpect::at(&unix_addr(&socket))
                .status("warning")
                .cause("app_error")
                .summary_contains("not a 502")
                .evidence_contains("why502_no_such_function"),
        ),
    );
}

//! nginx → a python backend that listens (so `backend_up` passes) but
//! answers badly: a header bigger than nginx's buffer, a close without an
//! answer, a malformed header, an answer slower than the read timeout.
//! nginx's error log is the decisive evidence; the verdict must name the
//! cause and carry the log line. Plus a control: an old refusal in the log
//! while the backend is up now does not make a break.

use crate::harness::{tcp_addr, Expect, Lab, Misbehaviour, StepExpect, UpstreamExpect};

/// Where nginx proxies in every scenario here.
const UPSTREAM_IP: &str = "127.0.0.1";
const UPSTREAM_PORT: u16 = 8000;

fn upstream() -> String {
    tcp_addr(UPSTREAM_IP, UPSTREAM_PORT)
}

/// One misbehaving-backend scenario: what nginx is configured with, what it
/// answers, what it logs, and which cause the agent must find.
struct Case {
    scenario: &'static str,
    behaviour: Misbehaviour,
    /// Extra directives in `location /` after `proxy_pass`.
    directives: &'static [&'static str],
    /// What curl through nginx gets.
    status: u16,
    /// Text of nginx's error-log line (also expected in the verdict's evidence).
    logged: &'static str,
    cause: &'static str,
}

fn run_case(case: &Case) {
    let Some(mut lab) = Lab::new(case.scenario) else {
        return;
    };
    lab.start_misbehaving_backend(case.behaviour, UPSTREAM_IP, UPSTREAM_PORT);
    let location = lab.proxy_location_with(&upstream(), case.directives);
    lab.start_nginx(&location);
    lab.prove_status(case.status, case.logged);

    let run = lab.run_agent(&["--json", "--nginx-conf", &lab.nginx_conf_arg()]);
    // Before judging the verdict: the backend must still be up (the agent
    // saw it listening) and must leave cleanly on SIGTERM.
    lab.stop_misbehaving_backend(case.behaviour, UPSTREAM_IP, UPSTREAM_PORT);
    run.assert(
        &Expect::report("break", 2).upstream(
            UpstreamExpect::at(&upstream())
                .status("break")
                // A direct-request probe, once there is one, may find the
                // break before the error-log evidence is weighed.
                .step_one_of(&["error_log", "direct_request"])
                .cause(case.cause)
                .evidence_contains(case.logged),
        ),
    );
    // Machine-readable: every step names a cause (`none` when it points to none), and the
    // error_log step lists what nginx logged, by class, with the newest line.
    let up = run.upstream(&upstream());
    let steps = up["steps"].as_array().cloned().unwrap_or_default();
    assert!(
        steps.iter().all(|s| s["cause"].is_string()),
        "every step carries a cause: {steps:?}"
    );
    let error_log = steps
        .iter()
        .find(|s| s["step"] == "error_log")
        .expect("the error_log step");
    let classes = error_log["classes"].as_array().cloned().unwrap_or_default();
    assert!(
        classes.iter().any(|c| {
            c["count"].as_u64().unwrap_or(0) >= 1
                && c["line"].as_str().unwrap_or("").contains(case.logged)
                && c["last"].as_str().unwrap_or("").ends_with('Z')
        }),
        "steps[error_log].classes should hold the logged line: {classes:?}\n{}",
        run.context()
    );
}

#[test]
fn lab_error_log_big_header() {
    run_case(&Case {
        scenario: "el-big-header",
        behaviour: Misbehaviour::BigHeader,
        directives: &["proxy_buffer_size 4k;"],
        status: 502,
        logged: "upstream sent too big header while reading response header from upstream",
        cause: "upstream_header_too_big",
    });
}

#[test]
fn lab_error_log_close() {
    run_case(&Case {
        scenario: "el-close",
        behaviour: Misbehaviour::Close,
        directives: &[],
        status: 502,
        logged:
            "upstream prematurely closed connection while reading response header from upstream",
        cause: "upstream_reset",
    });
}

/// Not the bare `\x00\x01garbage` of the issue: nginx (1.22) treats a reply
/// without a status line as HTTP/0.9 — it logs "upstream sent no valid
/// HTTP/1.0 header" but relays the bytes instead of answering 502. A status
/// line followed by a non-header line is a real 502.
#[test]
fn lab_error_log_garbage() {
    run_case(&Case {
        scenario: "el-garbage",
        behaviour: Misbehaviour::Garbage,
        directives: &[],
        status: 502,
        logged: "upstream sent invalid header",
        cause: "upstream_invalid_response",
    });
}

#[test]
fn lab_error_log_slow() {
    run_case(&Case {
        scenario: "el-slow",
        behaviour: Misbehaviour::Slow,
        directives: &["proxy_read_timeout 1s;"],
        status: 504,
        logged: "upstream timed out (110: Connection timed out) while reading response header from upstream",
        cause: "upstream_timeout",
    });
}

#[test]
fn lab_error_log_recent_refusal_of_a_backend_that_answers_now_is_a_warning() {
    let Some(mut lab) = Lab::new("el-old-errors") else {
        return;
    };
    // First a real 502: nothing listens on :8000 yet.
    let location = lab.proxy_location(&upstream());
    lab.start_nginx(&location);
    lab.prove_502("(111: Connection refused)");
    // Then the backend comes up and the site works again.
    lab.start_http_backend(UPSTREAM_IP, UPSTREAM_PORT);
    assert_eq!(
        lab.curl_through_nginx("/"),
        200,
        "with the backend up the stack must serve 200\n{}",
        lab.diagnostics()
    );

    // Recovered is not ok: the refusals of seconds ago are a warning naming them.
    let run = lab.run_agent(&["--json", "--nginx-conf", &lab.nginx_conf_arg()]);
    run.assert(
        &Expect::report("warning", 1).upstream(
            UpstreamExpect::at(&upstream())
                .status("warning")
                .step("error_log")
                .cause("backend_down")
                .summary_contains("none since")
                .step_entry(
                    StepExpect::at("error_log")
                        .outcome("warn")
                        .summary_contains_any(&["111", "refused"]),
                ),
        ),
    );
}

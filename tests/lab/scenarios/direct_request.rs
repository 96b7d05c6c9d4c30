//! The direct request: the agent asks the backend itself, over nginx's transport, and judges
//! the answer against the location's limits. Each scenario first proves nginx's failure.

use std::time::{Duration, Instant};

use crate::harness::{tcp_addr, Expect, Lab, Misbehaviour, StepExpect, UpstreamExpect};

const UPSTREAM_IP: &str = "127.0.0.1";
const UPSTREAM_PORT: u16 = 8000;

/// A backend that holds the request longer than nginx's read timeout and longer than the whole
/// run's --timeout: the run must still answer within its budget. The direct request could wait
/// only 1.5 s of nginx's 2 s, so it says so (unknown, both figures); nginx's own logged
/// timeout is what makes the verdict.
#[test]
fn lab_direct_request_tarpit_is_bounded_by_the_run_timeout() {
    let Some(mut lab) = Lab::new("dr-tarpit") else {
        return;
    };
    let upstream = tcp_addr(UPSTREAM_IP, UPSTREAM_PORT);
    // The backend answers after 3 s; nginx gives up after 2 s (504).
    lab.start_misbehaving_backend(Misbehaviour::Slow, UPSTREAM_IP, UPSTREAM_PORT);
    lab.start_nginx(&lab.proxy_location_with(&upstream, &["proxy_read_timeout 2s;"]));
    lab.prove_status(
        504,
        "upstream timed out (110: Connection timed out) while reading response header from upstream",
    );

    let budget = Duration::from_millis(1500);
    let started = Instant::now();
    let run = lab.run_agent(&[
        "--json",
        "--timeout",
        "1500ms",
        "--nginx-conf",
        &lab.nginx_conf_arg(),
    ]);
    let took = started.elapsed();
    lab.stop_misbehaving_backend(Misbehaviour::Slow, UPSTREAM_IP, UPSTREAM_PORT);
    run.assert(
        &Expect::report("break", 2).upstream(
            UpstreamExpect::at(&upstream)
                .step("error_log")
                .cause("upstream_timeout")
                .step_entry(
                    StepExpect::at("direct_request")
                        .outcome("unknown")
                        .summary_contains_any(&["of nginx's 2s"]),
                ),
        ),
    );
    // A deadline, not a speed target: generous slack for `ip netns exec` and a loaded machine.
    assert!(
        took < budget + Duration::from_millis(2500),
        "the run took {took:?} with --timeout {budget:?}"
    );
}

/// The verdict quotes the measured header size beside nginx's buffer.
#[test]
fn lab_direct_request_header_size_against_the_buffer() {
    let Some(mut lab) = Lab::new("dr-big-header") else {
        return;
    };
    let upstream = tcp_addr(UPSTREAM_IP, UPSTREAM_PORT);
    lab.start_misbehaving_backend(Misbehaviour::BigHeader, UPSTREAM_IP, UPSTREAM_PORT);
    lab.start_nginx(&lab.proxy_location_with(&upstream, &["proxy_buffer_size 4k;"]));
    lab.prove_502("upstream sent too big header while reading response header from upstream");

    let run = lab.run_agent(&["--json", "--nginx-conf", &lab.nginx_conf_arg()]);
    lab.stop_misbehaving_backend(Misbehaviour::BigHeader, UPSTREAM_IP, UPSTREAM_PORT);
    run.assert(
        &Expect::report("break", 2).upstream(
            UpstreamExpect::at(&upstream)
                .step("direct_request")
                .cause("upstream_header_too_big")
                .summary_contains("buffer_size is 4096 bytes"),
        ),
    );
}

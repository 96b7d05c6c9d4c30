//! nginx's own temp path: a response larger than nginx's buffers is spooled to a temp file
//! under `fastcgi_temp_path`; when the worker user cannot write there, nginx logs
//! `open() "…/tmp/fastcgi/…" failed (13: Permission denied) while reading upstream` and cuts
//! the response. The header has gone out by then (nginx sends it before it buffers the
//! body: ngx_http_upstream_send_response), so the client sees a 200 whose chunked body
//! stops before its last chunk, not a 502 — the breakage this scenario proves before it asks for the verdict, which
//! must name nginx's temp path, not the backend and not a security module.

use std::os::unix::fs::PermissionsExt;

use crate::harness::{poll_until, unix_addr, Expect, Lab, PhpFpmPool, UpstreamExpect};

#[test]
fn lab_temp_path_not_writable_by_the_worker() {
    let Some(mut lab) = Lab::new("temp-path-denied") else {
        return;
    };
    let socket = lab.path("run/php-fpm.sock");
    lab.start_php_fpm(PhpFpmPool::unix(&socket));
    // Small buffers: 32 MB to a client that waits cannot pass without a temp file.
    let location = format!(
        "{}\nfastcgi_buffer_size 4k;\nfastcgi_buffers 2 4k;\nfastcgi_busy_buffers_size 4k;\nfastcgi_max_temp_file_size 64m;",
        lab.fastcgi_location(&socket)
    );
    lab.start_nginx(&location);
    assert_eq!(lab.curl_through_nginx("/"), 200, "{}", lab.diagnostics());
    lab.write_php_script("<?php echo str_repeat(\"x\", 32 * 1024 * 1024);\n");
    // nginx made its temp dirs its worker's at start; taken away after, as a package upgrade
    // or a hand-run chmod/chown would.
    let temp = lab.path("tmp/fastcgi");
    std::fs::set_permissions(&temp, std::fs::Permissions::from_mode(0o000))
        .unwrap_or_else(|e| panic!("chmod {}: {e}", temp.display()));
    let denied = "failed (13: Permission denied) while reading upstream";
    // A client that does not read for a second: nginx must spool the rest to a temp file.
    let (status, complete, bytes) =
        lab.slow_reader_through_nginx("/", std::time::Duration::from_secs(1));
    assert!(
        !complete,
        "a 32 MB response through an unwritable temp path came back whole: status {status}, {bytes} bytes\n{}",
        lab.diagnostics()
    );
    assert!(
        poll_until(std::time::Duration::from_secs(3), || lab
            .error_log_contains(denied)
            .then_some(()))
        .is_some(),
        "nginx did not log the temp-file denial\n{}",
        lab.diagnostics()
    );

    let run = lab.run_agent(&["--json", "--nginx-conf", &lab.nginx_conf_arg()]);
    run.assert(
        &Expect::report("break", 2).upstream(
            UpstreamExpect::at(&unix_addr(&socket))
                .step("error_log")
                .cause("nginx_temp_path")
                .summary_contains(&temp.display().to_string())
                .evidence_contains(denied),
        ),
    );
}

//! nginx → php-fpm over a unix socket: healthy, stopped, socket deleted,
//! wrong path, socket permissions, parent directory permissions.

use std::fs;
use std::os::unix::fs::{chown, PermissionsExt};
use std::path::Path;

use crate::harness::{
    lookup_group, unix_addr, Expect, Lab, PhpFpmPool, StepExpect, UpstreamExpect,
};

/// nginx's log text for connect() to a socket path that does not exist.
const ENOENT: &str = "(2: No such file or directory)";
/// nginx's log text for connect() refused by file permissions.
const EACCES: &str = "(13: Permission denied)";

/// php-fpm with the stock pool on `socket`, nginx passing every request to
/// `nginx_socket` (the same path unless a scenario wants a mismatch).
fn php_stack(lab: &mut Lab, pool: PhpFpmPool, nginx_socket: &Path) {
    lab.start_php_fpm(pool);
    let location = lab.fastcgi_location(nginx_socket);
    lab.start_nginx(&location);
}

#[test]
fn lab_healthy_php_fpm_unix_socket() {
    let Some(mut lab) = Lab::new("healthy-php-fpm") else {
        return;
    };
    let socket = lab.path("run/php-fpm.sock");
    php_stack(&mut lab, PhpFpmPool::unix(&socket), &socket);
    assert_eq!(
        lab.curl_through_nginx("/"),
        200,
        "healthy stack must serve 200\n{}",
        lab.diagnostics()
    );

    // No --nginx-conf: the agent must find this namespace's master and read
    // its `-c`, which points into the temp dir, not /etc/nginx.
    let run = lab.run_agent(&["--json"]);
    run.assert(&Expect::healthy(&unix_addr(&socket)).nginx_conf(&lab.nginx_conf()));
}

#[test]
fn lab_php_fpm_stopped() {
    let Some(mut lab) = Lab::new("php-fpm-stopped") else {
        return;
    };
    let socket = lab.path("run/php-fpm.sock");
    php_stack(&mut lab, PhpFpmPool::unix(&socket), &socket);
    lab.stop_php_fpm();
    assert!(
        !socket.exists(),
        "a gracefully stopped php-fpm removes {}",
        socket.display()
    );
    lab.prove_502(ENOENT);

    let run = lab.run_agent(&["--json", "--nginx-conf", &lab.nginx_conf_arg()]);
    run.assert(&Expect::broken(
        &unix_addr(&socket),
        "backend_up",
        "backend_down",
    ));
}

#[test]
fn lab_socket_deleted_while_running() {
    let Some(mut lab) = Lab::new("socket-deleted") else {
        return;
    };
    let socket = lab.path("run/php-fpm.sock");
    php_stack(&mut lab, PhpFpmPool::unix(&socket), &socket);
    // php-fpm keeps running and listening on the now-unnamed socket inode.
    fs::remove_file(&socket).expect("remove php-fpm's socket file");
    lab.prove_502(ENOENT);

    let run = lab.run_agent(&["--json", "--nginx-conf", &lab.nginx_conf_arg()]);
    run.assert(
        &Expect::broken(&unix_addr(&socket), "backend_up", "socket_missing")
            .summary_contains("php-fpm"),
    );
}

#[test]
fn lab_socket_path_mismatch() {
    let Some(mut lab) = Lab::new("socket-path-mismatch") else {
        return;
    };
    let real_socket = lab.path("run/php-fpm.sock");
    let nginx_socket = lab.path("run/php8.2-fpm.sock");
    php_stack(&mut lab, PhpFpmPool::unix(&real_socket), &nginx_socket);
    lab.prove_502(ENOENT);

    let run = lab.run_agent(&["--json", "--nginx-conf", &lab.nginx_conf_arg()]);
    run.assert(
        &Expect::broken(&unix_addr(&nginx_socket), "backend_up", "address_mismatch")
            .summary_contains(&real_socket.display().to_string()),
    );
}

#[test]
fn lab_socket_mode_0600_root() {
    let Some(mut lab) = Lab::new("socket-mode-0600") else {
        return;
    };
    let socket = lab.path("run/php-fpm.sock");
    let pool = PhpFpmPool::unix(&socket).socket_owner("root", "root", "0600");
    php_stack(&mut lab, pool, &socket);
    lab.prove_502(EACCES);

    let expected = Expect::broken(&unix_addr(&socket), "backend_up", "socket_permission");
    lab.run_agent(&["--json", "--nginx-conf", &lab.nginx_conf_arg()])
        .assert(&expected);
    // Same verdict when the agent has to find nginx's config by itself.
    lab.run_agent(&["--json"]).assert(&expected);

    // Apply the fix the verdict is about and check the agent notices.
    fs::set_permissions(&socket, fs::Permissions::from_mode(0o660)).expect("chmod 0660 the socket");
    let www_data = lookup_group("www-data").expect("group www-data exists");
    chown(&socket, None, Some(www_data)).expect("chgrp www-data the socket");
    assert_eq!(
        lab.curl_through_nginx("/"),
        200,
        "fixed socket must serve 200\n{}",
        lab.diagnostics()
    );
    // Fixed, but the denials of a moment ago are named: recovered is not ok.
    lab.run_agent(&["--json", "--nginx-conf", &lab.nginx_conf_arg()])
        .assert(
            &Expect::report("warning", 1).upstream(
                UpstreamExpect::at(&unix_addr(&socket))
                    .status("warning")
                    .step("error_log")
                    .cause("socket_permission")
                    .summary_contains("none since"),
            ),
        );
}

#[test]
fn lab_parent_dir_no_search_permission() {
    let Some(mut lab) = Lab::new("parent-dir-0700") else {
        return;
    };
    let private = lab.path("private");
    fs::create_dir(&private).expect("create the private socket dir");
    // root:root 0700: www-data may not traverse it, whatever the socket's mode.
    fs::set_permissions(&private, fs::Permissions::from_mode(0o700))
        .expect("chmod 0700 the socket dir");
    let socket = private.join("php-fpm.sock");
    let pool = PhpFpmPool::unix(&socket).socket_owner("www-data", "www-data", "0666");
    php_stack(&mut lab, pool, &socket);
    lab.prove_502(EACCES);

    let run = lab.run_agent(&["--json", "--nginx-conf", &lab.nginx_conf_arg()]);
    run.assert(
        &Expect::broken(&unix_addr(&socket), "backend_up", "socket_permission")
            .summary_contains(&private.display().to_string()),
    );
}

/// Workers of pool `name` alive now.
fn pool_workers(name: &str) -> usize {
    let title = format!("php-fpm: pool {name}");
    fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| {
            fs::read(e.path().join("cmdline"))
                .is_ok_and(|c| String::from_utf8_lossy(&c).trim_end_matches('\0').trim() == title)
        })
        .count()
}

/// An idle `ondemand` pool (no worker alive, nothing in nginx's error log for it) is not
/// asked directly: that would fork a worker only to answer the agent. The verdict stays ok,
/// the direct-request step says why it did not ask, and no worker appears. Narrowed to that
/// upstream with `--upstream`, the agent asks it.
#[test]
fn lab_idle_ondemand_pool_is_not_woken() {
    let Some(mut lab) = Lab::new("ondemand-idle") else {
        return;
    };
    let socket = lab.path("run/php-fpm.sock");
    let name = "ondemand-idle";
    let pool = PhpFpmPool::unix(&socket).named(name).process_manager(&[
        "pm = ondemand",
        "pm.max_children = 2",
        "pm.process_idle_timeout = 1s",
    ]);
    php_stack(&mut lab, pool, &socket);
    assert_eq!(lab.curl_through_nginx("/"), 200, "{}", lab.diagnostics());
    let started = std::time::Instant::now();
    while pool_workers(name) > 0 && started.elapsed() < std::time::Duration::from_secs(8) {
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert_eq!(
        pool_workers(name),
        0,
        "php-fpm did not reap the idle worker"
    );

    let address = unix_addr(&socket);
    let run = lab.run_agent(&["--json"]);
    run.assert(
        &Expect::healthy(&address).upstream(
            UpstreamExpect::at(&address).step_entry(
                StepExpect::at("direct_request")
                    .outcome("skip")
                    .summary_contains_any(&["pm = ondemand with no worker alive"]),
            ),
        ),
    );
    assert_eq!(pool_workers(name), 0, "the agent's run woke a worker");

    let run = lab.run_agent(&["--json", "--upstream", &address]);
    run.assert(&Expect::healthy(&address).upstream(
        UpstreamExpect::at(&address).step_entry(StepExpect::at("direct_request").outcome("pass")),
    ));
}

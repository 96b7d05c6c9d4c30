//! The agent run by an unprivileged user on a healthy stack whose logs are readable by root and
//! group adm only, as Debian ships them: every source it may not read is `unknown` with the
//! reason and what would fix it (root, CAP_SYSLOG, group adm), and no step says `ok` about
//! what it could not read. Joining group adm then opens exactly the logs.

use std::os::unix::fs::{chown, PermissionsExt};

use crate::harness::{lookup_group, tcp_addr, unix_addr, AgentRun, Lab, PhpFpmPool};

/// nobody:nogroup.
const NOBODY: u32 = 65534;
const TCP_PORT: u16 = 8000;

/// The step entry `step` of `address`'s walk.
fn step<'a>(run: &'a AgentRun, address: &str, step: &str) -> &'a serde_json::Value {
    run.upstream(address)["steps"]
        .as_array()
        .and_then(|steps| steps.iter().find(|s| s["step"] == step))
        .unwrap_or_else(|| panic!("no step {step} for {address}\n{}", run.context()))
}

#[track_caller]
fn assert_unknown_with_fix(run: &AgentRun, address: &str, name: &str, fix_mentions: &str) {
    let s = step(run, address, name);
    assert_eq!(
        s["outcome"],
        "unknown",
        "{address} step {name} must be unknown as nobody: {s}\n{}",
        run.context()
    );
    let fix = s["fix"].as_str().unwrap_or("");
    assert!(
        fix.contains(fix_mentions),
        "{address} step {name}: the fix {fix:?} should mention {fix_mentions:?}"
    );
}

#[test]
fn lab_non_root_reports_unknown_with_the_fix() {
    let Some(mut lab) = Lab::new("non-root") else {
        return;
    };
    let socket = lab.path("run/php-fpm.sock");
    lab.start_php_fpm(PhpFpmPool::unix(&socket));
    lab.start_http_backend("127.0.0.1", TCP_PORT);
    let second_site = format!(
        "server {{\nlisten 127.0.0.1:8081;\nlocation / {{\n{}\n}}\n}}",
        lab.proxy_location(&tcp_addr("127.0.0.1", TCP_PORT))
    );
    lab.start_nginx_with_http_snippet(&second_site, &lab.fastcgi_location(&socket));
    assert_eq!(lab.curl_through_nginx("/"), 200, "{}", lab.diagnostics());
    assert_eq!(
        lab.curl_status("http://127.0.0.1:8081/"),
        200,
        "{}",
        lab.diagnostics()
    );
    let adm = lookup_group("adm").expect("Debian has a group adm");
    for log in [lab.error_log_path(), lab.php_fpm_log_path()] {
        chown(&log, Some(0), Some(adm)).expect("chown root:adm");
        std::fs::set_permissions(&log, std::fs::Permissions::from_mode(0o640)).expect("chmod");
    }
    let fpm = unix_addr(&socket);
    let tcp = tcp_addr("127.0.0.1", TCP_PORT);
    let args = ["--json", "--nginx-conf", &lab.nginx_conf_arg()];

    let run = lab.run_agent_as(NOBODY, &[], &args);
    assert!(!run.panicked(), "{}", run.context());
    assert_eq!(run.report()["status"], "unknown", "{}", run.context());
    assert_eq!(run.exit_code, 3, "{}", run.context());
    for address in [&fpm, &tcp] {
        assert_eq!(
            run.upstream(address)["status"],
            "unknown",
            "{}",
            run.context()
        );
        assert_unknown_with_fix(&run, address, "error_log", "adm");
        assert_unknown_with_fix(&run, address, "resources", "CAP_SYSLOG");
        assert_unknown_with_fix(&run, address, "nginx_config", "root");
    }
    assert_unknown_with_fix(&run, &fpm, "backend_log", "adm");
    assert_unknown_with_fix(&run, &fpm, "direct_request", "root");
    // The firewall: nft and iptables need CAP_NET_ADMIN.
    assert_unknown_with_fix(&run, &tcp, "security", "root");

    // Group adm is the fix the report names for the logs: with it, they are read and clean.
    let run = lab.run_agent_as(NOBODY, &["adm"], &args);
    assert!(!run.panicked(), "{}", run.context());
    for address in [&fpm, &tcp] {
        assert_eq!(
            step(&run, address, "error_log")["outcome"],
            "pass",
            "{}",
            run.context()
        );
        assert_unknown_with_fix(&run, address, "resources", "CAP_SYSLOG");
    }
    assert_eq!(
        step(&run, &fpm, "backend_log")["outcome"],
        "pass",
        "{}",
        run.context()
    );
}

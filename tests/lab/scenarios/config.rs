//! nginx's own configuration is broken.
//!
//! `lab_nginx_config_invalid` runs a live stack whose config file was broken
//! after nginx started. The `lab_cli_*` tests need no namespace or daemon:
//! they point the binary at hostile config files and check it neither
//! hangs, crashes nor gives a vague answer.

use std::path::Path;
use std::time::Duration;

use crate::harness::{
    find_causes, findings, mentions_file_line, parse_nginx_error_location, poll_until,
    render_nginx_conf, AgentRun, CliSandbox, Expect, Lab,
};

const CONFIG_INVALID: &str = "nginx_config_invalid";

/// Wall-clock cap for the CLI tests: a generous bound that only a hang or
/// runaway loop exceeds, not a tight timing assertion.
const CLI_CAP: Duration = Duration::from_secs(5);

/// A report text larger than this is not a "clear message" — it means the
/// agent echoed the 10 MB line (or something like it) back at the user.
const MAX_REASONABLE_OUTPUT: usize = 64 * 1024;

/// The report has an `nginx_config_invalid` verdict or host check whose
/// summary/evidence names one of `locations` (`file name`, line).
#[track_caller]
fn assert_config_invalid_at(run: &AgentRun, locations: &[(&str, usize)]) {
    let found = find_causes(run.report(), CONFIG_INVALID);
    assert!(
        !found.is_empty(),
        "no verdict or host check has cause {CONFIG_INVALID}\n{}",
        run.context()
    );
    let names_location = found.iter().any(|item| {
        locations
            .iter()
            .any(|(file, line)| mentions_file_line(item, file, *line))
    });
    let wanted: Vec<String> = locations
        .iter()
        .map(|(file, line)| format!("{file}:{line}"))
        .collect();
    assert!(
        names_location,
        "{CONFIG_INVALID} is reported, but its summary/evidence names none of {wanted:?}\n{}",
        run.context()
    );
}

/// The file:line nginx itself blames for `conf`.
fn nginx_blames(sandbox: &CliSandbox, conf: &Path) -> (String, usize) {
    let test = sandbox.nginx_test(conf);
    let (file, line) = parse_nginx_error_location(&test.stderr).unwrap_or_else(|| {
        panic!(
            "nginx -t did not name a file:line for {}:\n{}",
            conf.display(),
            test.stderr
        )
    });
    let name = file
        .file_name()
        .expect("nginx names a file")
        .to_string_lossy()
        .into_owned();
    (name, line)
}

/// A main config that can be tested without root: logs and pid in the sandbox.
fn main_conf(sandbox: &CliSandbox, http_body: &str) -> String {
    let root = sandbox.root().display();
    format!("pid {root}/nginx.pid;\nerror_log {root}/error.log;\nevents {{}}\nhttp {{\n{http_body}\n}}\n")
}

fn diagnose_json(sandbox: &CliSandbox, conf: &Path) -> AgentRun {
    let conf = conf.display().to_string();
    sandbox.run_why502(&["diagnose", "--json", "--nginx-conf", &conf], CLI_CAP)
}

#[test]
fn lab_nginx_config_invalid() {
    let Some(mut lab) = Lab::new("nginx-conf-invalid") else {
        return;
    };
    lab.start_http_backend("127.0.0.1", 8000);
    let location = lab.proxy_location("127.0.0.1:8000");
    lab.start_nginx(&location);
    assert_eq!(
        lab.curl_through_nginx("/"),
        200,
        "healthy stack must serve 200\n{}",
        lab.diagnostics()
    );

    // Break the file on disk only; the running master keeps the old config.
    let line = lab.inject_into_nginx_http_block("unknown_directive_xyz on;");
    let test = lab.nginx_config_test();
    assert_ne!(
        test.exit_code, 0,
        "nginx -t must reject the broken config:\n{}",
        test.stderr
    );
    let blamed = parse_nginx_error_location(&test.stderr);
    assert_eq!(
        blamed,
        Some((lab.nginx_conf(), line)),
        "nginx -t blames another place:\n{}",
        test.stderr
    );
    assert_eq!(
        lab.curl_through_nginx("/"),
        200,
        "the running nginx still serves its old config"
    );

    let run = lab.run_agent(&["--json", "--nginx-conf", &lab.nginx_conf_arg()]);
    run.assert(&Expect::report("break", 2));
    assert_config_invalid_at(&run, &[("nginx.conf", line)]);
}

#[test]
fn lab_cli_include_cycle() {
    let Some(sandbox) = CliSandbox::new("cli-include-cycle") else {
        return;
    };
    let (a, b) = (sandbox.path("a.conf"), sandbox.path("b.conf"));
    sandbox.write("a.conf", &format!("include {};\n", b.display()));
    sandbox.write("b.conf", &format!("include {};\n", a.display()));
    let conf = sandbox.write(
        "nginx.conf",
        &main_conf(&sandbox, &format!("    include {};", a.display())),
    );
    // nginx itself cannot help here: `nginx -t` recurses until its stack
    // overflows (SIGSEGV), so the agent must detect the cycle on its own.

    let run = diagnose_json(&sandbox, &conf);
    run.assert(&Expect::exit(2));
    // Either include of the cycle is a fair place to blame.
    assert_config_invalid_at(&run, &[("a.conf", 1), ("b.conf", 1)]);
}

#[test]
fn lab_cli_unterminated_block() {
    let Some(sandbox) = CliSandbox::new("cli-unterminated") else {
        return;
    };
    let body = "    server {\n        listen 127.0.0.1:8080;\n    }";
    let text = main_conf(&sandbox, body);
    let text = text
        .trim_end()
        .strip_suffix('}')
        .expect("main_conf ends with the http block's brace");
    let conf = sandbox.write("nginx.conf", text);
    let (file, eof_line) = nginx_blames(&sandbox, &conf);
    assert_eq!(file, "nginx.conf");
    let http_line = text
        .lines()
        .position(|line| line == "http {")
        .expect("has an http block")
        + 1;

    let run = diagnose_json(&sandbox, &conf);
    run.assert(&Expect::exit(2));
    // nginx blames the end of the file; the unclosed `http {` is just as good.
    assert_config_invalid_at(&run, &[("nginx.conf", eof_line), ("nginx.conf", http_line)]);
}

#[test]
fn lab_cli_huge_single_line_include() {
    let Some(sandbox) = CliSandbox::new("cli-huge-line") else {
        return;
    };
    let big = sandbox.write("big.conf", &"a".repeat(10 * 1024 * 1024));
    let conf = sandbox.write(
        "nginx.conf",
        &main_conf(&sandbox, &format!("    include {};", big.display())),
    );

    let run = diagnose_json(&sandbox, &conf);
    assert!(!run.panicked(), "why502 panicked\n{}", run.context());
    assert!(
        matches!(run.exit_code, 2 | 3),
        "expected exit 2 (config invalid) or 3 (cannot diagnose)\n{}",
        run.context()
    );
    let output = run.stdout.len() + run.stderr.len();
    assert!(
        output <= MAX_REASONABLE_OUTPUT,
        "why502 printed {output} bytes — it echoes the huge line back\n{}",
        run.context()
    );
    assert!(
        has_clear_message(&run),
        "why502 gave no reason for exit {}\n{}",
        run.exit_code,
        run.context()
    );
}

/// A reason a person can read: a summary in the JSON report, or (for
/// "could not diagnose") a line on stderr.
fn has_clear_message(run: &AgentRun) -> bool {
    let summary_in_report = run.json.as_ref().is_some_and(|report| {
        findings(report).iter().any(|item| {
            item.get("summary")
                .and_then(|summary| summary.as_str())
                .is_some_and(|summary| !summary.trim().is_empty())
        })
    });
    summary_in_report || (run.exit_code == 3 && !run.stderr.trim().is_empty())
}

#[test]
fn lab_cli_missing_config() {
    let Some(sandbox) = CliSandbox::new("cli-missing-config") else {
        return;
    };
    // Plain `why502` is `why502 diagnose`.
    let run = sandbox.run_why502(&["--nginx-conf", "/nonexistent/nginx.conf"], CLI_CAP);
    assert!(!run.panicked(), "why502 panicked\n{}", run.context());
    assert_eq!(
        run.exit_code,
        3,
        "a missing config means UNKNOWN\n{}",
        run.context()
    );
    let reason: Vec<&str> = run
        .stderr
        .lines()
        .filter(|line| !line.trim().is_empty())
        .collect();
    assert_eq!(
        reason.len(),
        1,
        "expected a one-line reason on stderr\n{}",
        run.context()
    );
}

/// The agent's own config: a typo is an error a person can read (exit 3, the key named), never
/// silently ignored; a valid one is accepted.
#[test]
fn lab_cli_agent_config_typo_is_named() {
    let Some(sandbox) = CliSandbox::new("cli-agent-config") else {
        return;
    };
    let bad = sandbox.write(
        "why502.toml",
        "[[upstream]]\nmatch = \"127.0.0.1:8080\"\nhealth_path = \"/healthz\"\n",
    );
    let bad = bad.to_string_lossy().into_owned();
    let run = sandbox.run_why502(
        &["--config", &bad, "--nginx-conf", "/nonexistent/nginx.conf"],
        CLI_CAP,
    );
    assert!(!run.panicked(), "why502 panicked\n{}", run.context());
    assert_eq!(run.exit_code, 3, "{}", run.context());
    assert!(
        run.stderr.contains("health_path") && run.stderr.contains("why502.toml"),
        "the reason should name the file and the unknown key\n{}",
        run.context()
    );
    // A valid config gets past loading: the run then fails on the missing nginx config.
    let good = sandbox.write(
        "good.toml",
        "[[upstream]]\nmatch = \"127.0.0.1:8080\"\npath = \"/healthz\"\n",
    );
    let good = good.to_string_lossy().into_owned();
    let run = sandbox.run_why502(
        &["--config", &good, "--nginx-conf", "/nonexistent/nginx.conf"],
        CLI_CAP,
    );
    assert_eq!(run.exit_code, 3, "{}", run.context());
    assert!(
        run.stderr.contains("nginx.conf") && !run.stderr.contains("good.toml"),
        "a valid agent config is not the problem\n{}",
        run.context()
    );
}

/// One site's view (`--server-name`, a panel's question) does not re-run nginx -t while
/// nothing nginx reads at load changed since its workers loaded it; once the config file
/// changes after the load, it does, and a broken change is found there too.
#[test]
fn lab_per_site_view_runs_nginx_t_only_after_a_change() {
    let Some(mut lab) = Lab::new("per-site-nginx-t") else {
        return;
    };
    lab.start_http_backend("127.0.0.1", 8000);
    let location = lab.proxy_location("127.0.0.1:8000");
    lab.start_nginx(&location);
    assert_eq!(lab.curl_through_nginx("/"), 200, "{}", lab.diagnostics());
    let nginx_config_step = |run: &AgentRun| {
        run.report()["upstreams"][0]["steps"]
            .as_array()
            .and_then(|s| s.iter().find(|s| s["step"] == "nginx_config"))
            .cloned()
            .unwrap_or_else(|| panic!("no nginx_config step\n{}", run.context()))
    };
    let args = [
        "--json",
        "--nginx-conf",
        &lab.nginx_conf_arg(),
        "--server-name",
        "lab.test",
    ];
    // Just started from a config written the moment before: within the second a start time
    // cannot resolve, so nginx -t runs.
    let run = lab.run_agent(&args);
    assert_eq!(
        nginx_config_step(&run)["outcome"],
        "pass",
        "{}",
        run.context()
    );
    // Reloaded seconds after the config was written, as on a real host: nothing changed since
    // the load, so the per-site view does not re-run nginx -t.
    std::thread::sleep(Duration::from_millis(2500));
    lab.reload_nginx();
    let run = lab.run_agent(&args);
    run.assert(&Expect::healthy("127.0.0.1:8000"));
    let step = nginx_config_step(&run);
    assert_eq!(step["outcome"], "skip", "{step}\n{}", run.context());
    assert!(
        step["summary"]
            .as_str()
            .is_some_and(|s| s.contains("nginx -t not re-run")),
        "{step}"
    );
    // The full view still runs it.
    let full = lab.run_agent(&["--json", "--nginx-conf", &lab.nginx_conf_arg()]);
    assert_eq!(
        nginx_config_step(&full)["outcome"],
        "pass",
        "{}",
        full.context()
    );
    // A broken edit after the load: the per-site view runs nginx -t and finds it.
    let line = lab.inject_into_nginx_http_block("unknown_directive_xyz on;");
    let run = lab.run_agent(&args);
    assert_eq!(
        nginx_config_step(&run)["outcome"],
        "break",
        "{}",
        run.context()
    );
    assert_config_invalid_at(&run, &[("nginx.conf", line)]);
}

/// At Debian's default level (`error`) nginx logs no reload notice, so new workers look like
/// respawned ones. The per-site view reads the master's log around their start: no worker
/// died then, so it was a reload and nginx -t need not run; after a worker is killed and
/// respawned (nginx logs that at `alert`), the load time is not trusted and nginx -t runs.
#[test]
fn lab_per_site_view_trusts_a_reload_the_log_level_hid_but_not_a_respawn() {
    let Some(mut lab) = Lab::new("per-site-quiet-reload") else {
        return;
    };
    lab.start_http_backend("127.0.0.1", 8000);
    let location = lab.proxy_location("127.0.0.1:8000");
    let conf = render_nginx_conf(lab.root(), &location);
    let quiet = conf.replace("/logs/error.log info;", "/logs/error.log;");
    assert_ne!(quiet, conf, "the lab's error_log line changed");
    lab.start_nginx_with_conf(&quiet);
    assert_eq!(lab.curl_through_nginx("/"), 200, "{}", lab.diagnostics());
    let step_of = |run: &AgentRun| {
        run.report()["upstreams"][0]["steps"]
            .as_array()
            .and_then(|s| s.iter().find(|s| s["step"] == "nginx_config"))
            .cloned()
            .unwrap_or_else(|| panic!("no nginx_config step\n{}", run.context()))
    };
    let args = [
        "--json",
        "--nginx-conf",
        &lab.nginx_conf_arg(),
        "--server-name",
        "lab.test",
    ];
    // Later than a start can be told from the master's own (5 s).
    std::thread::sleep(Duration::from_millis(6000));
    lab.reload_nginx();
    assert!(
        !lab.error_log_contains("reconfiguring"),
        "level error was to hide the reload notice\n{}",
        lab.diagnostics()
    );
    let run = lab.run_agent(&args);
    run.assert(&Expect::healthy("127.0.0.1:8000"));
    let step = step_of(&run);
    assert_eq!(step["outcome"], "skip", "{step}\n{}", run.context());
    // A worker killed and respawned: its start is no load time.
    lab.kill_an_nginx_worker();
    assert!(
        poll_until(Duration::from_secs(5), || lab
            .error_log_contains("exited on signal 9")
            .then_some(()))
        .is_some(),
        "nginx logged no worker exit\n{}",
        lab.diagnostics()
    );
    let run = lab.run_agent(&args);
    let step = step_of(&run);
    assert_eq!(step["outcome"], "pass", "{step}\n{}", run.context());
}

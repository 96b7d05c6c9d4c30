//! The monitoring timer as packaged: packaging/systemd/why502.service's ExecStart, run as it
//! stands (only its textfile path moved into the lab), against a real healthy stack. Its
//! exit code is judged by the unit's own SuccessExitStatus; its file is what node_exporter
//! would read. A bad flag fails the unit and leaves the last good figures marked failed.
//! (No systemd runs here: the test runs the ExecStart line the way systemd would, without a
//! shell.)

use std::path::Path;

use crate::harness::{tcp_addr, Lab};

const UNIT: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../packaging/systemd/why502.service"
);
const PACKAGED_TEXTFILE: &str = "/var/lib/prometheus/node-exporter/why502.prom";

/// The unit's ExecStart argv (after the binary) with the textfile moved to `textfile`, and the
/// exit codes the unit counts as success.
fn unit_exec(textfile: &Path) -> (Vec<String>, Vec<i32>) {
    let text = std::fs::read_to_string(UNIT).expect("the packaged unit");
    let exec = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("ExecStart="))
        .expect("ExecStart");
    assert!(
        !exec.contains("sh -c") && !exec.contains('>') && !exec.contains(';'),
        "the unit runs why502 through a shell: {exec}"
    );
    let mut argv: Vec<String> = exec.split_whitespace().map(String::from).collect();
    assert_eq!(argv.remove(0), "/usr/bin/why502", "{exec}");
    assert!(argv.iter().any(|a| a == PACKAGED_TEXTFILE), "{exec}");
    for a in &mut argv {
        if a == PACKAGED_TEXTFILE {
            *a = textfile.display().to_string();
        }
    }
    let mut ok = vec![0];
    ok.extend(
        text.lines()
            .filter_map(|l| l.trim().strip_prefix("SuccessExitStatus="))
            .flat_map(|l| l.split_whitespace())
            .filter_map(|c| c.parse::<i32>().ok()),
    );
    (argv, ok)
}

fn value(text: &str, metric: &str) -> Option<String> {
    text.lines()
        .find_map(|l| l.strip_prefix(metric).and_then(|r| r.strip_prefix(' ')))
        .map(str::to_string)
}

#[test]
fn lab_timer_unit_keeps_the_last_good_figures_on_a_failed_run() {
    let Some(mut lab) = Lab::new("timer-unit") else {
        return;
    };
    let upstream = tcp_addr("127.0.0.1", 8000);
    lab.start_http_backend("127.0.0.1", 8000);
    lab.start_nginx(&lab.proxy_location(&upstream));
    assert_eq!(lab.curl_through_nginx("/"), 200, "{}", lab.diagnostics());

    let textfile = lab.path("run/why502.prom");
    let (argv, success) = unit_exec(&textfile);
    let args: Vec<&str> = argv.iter().map(String::as_str).collect();
    let run = lab.run_agent_raw(&args);
    assert!(
        success.contains(&run.exit_code),
        "the unit would fail: {run:?}"
    );
    assert!(
        run.stdout.is_empty(),
        "with --output-file nothing goes to stdout: {}",
        run.stdout
    );
    let good = std::fs::read_to_string(&textfile).expect("the textfile was written");
    // 0, or 1 on a host with past OOM kills of other processes (the lab's history).
    let status = value(&good, "why502_status").expect("why502_status");
    assert!(status == "0" || status == "1", "{good}");
    assert!(
        good.contains(&format!(
            "address=\"{upstream}\",name=\"\",step=\"nginx_config\",cause=\"none\"}} 0"
        )),
        "{good}"
    );
    assert_eq!(
        value(&good, "why502_last_run_success").as_deref(),
        Some("1"),
        "{good}"
    );
    assert!(good.contains(&format!("address=\"{upstream}\"")), "{good}");
    let t1: f64 = value(&good, "why502_last_run_timestamp_seconds")
        .and_then(|v| v.parse().ok())
        .expect("a timestamp");
    crate::harness::promtool_check_metrics(&good);

    // A bad flag: the unit fails, and the figures stay, marked as not refreshed.
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let mut bad = args.clone();
    bad.extend(["--since", "banana"]);
    let run = lab.run_agent_raw(&bad);
    assert_eq!(run.exit_code, 3, "{run:?}");
    assert!(
        !success.contains(&run.exit_code),
        "a bad flag must fail the unit"
    );
    let after = std::fs::read_to_string(&textfile).expect("the textfile is still there");
    assert_eq!(
        value(&after, "why502_status"),
        Some(status),
        "the last good figures went: {after}"
    );
    assert!(
        after.contains(&format!("address=\"{upstream}\"")),
        "{after}"
    );
    assert_eq!(
        value(&after, "why502_last_run_success").as_deref(),
        Some("0"),
        "{after}"
    );
    let t2: f64 = value(&after, "why502_last_run_timestamp_seconds")
        .and_then(|v| v.parse().ok())
        .expect("a timestamp");
    assert!(
        t2 > t1,
        "the failed run's time is not recorded: {t1} then {t2}"
    );
    crate::harness::promtool_check_metrics(&after);
    // Nothing else was written beside it: no temp file left.
    let names: Vec<String> = std::fs::read_dir(lab.path("run"))
        .expect("list")
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains("why502.prom"))
        .collect();
    assert_eq!(names, ["why502.prom"]);
}

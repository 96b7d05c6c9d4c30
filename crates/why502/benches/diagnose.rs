//! Benchmark: one full `why502 diagnose --json` on a healthy lab stack,
//! next to the "quick diagnosis" commands an admin would run by hand.
//!
//! Run with `cargo bench -p why502 --bench diagnose` (root; see
//! tests/lab/README.md, section "Benchmarks"). It reuses the lab harness to
//! build, in its own network namespace:
//!
//! - php-fpm on a unix socket, nginx `location /` → `fastcgi_pass` to it;
//! - `python3 -m http.server` on 127.0.0.1:8000, nginx `location /api/` →
//!   `proxy_pass` to it.
//!
//! Then it measures (wall time per run, and the agent's peak RSS from
//! `wait4`'s rusage):
//!
//! - `ip netns exec NS why502 diagnose --json --nginx-conf CONF`, 3 warm-up
//!   runs + 30 measured runs; every run must exit 0 with `status: "ok"`,
//!   otherwise the bench prints FAIL and exits non-zero (measuring a broken
//!   run would be worthless);
//! - a bash script with the quick-diagnosis commands (error log tail, ss,
//!   ls of the socket, curl both backends, dmesg, df, free, iptables, nft,
//!   nginx -t), 1 warm-up + 10 measured runs;
//! - for context: `ip netns exec NS nginx -t` alone (the agent runs it too)
//!   and `ip netns exec NS true` (the fixed cost of entering the namespace).
//!
//! Nothing is asserted about the figures; the targets line only says
//! whether they were met.

// cargo builds bench targets with cfg(test), so the harness's own unit-test
// modules are compiled here too (their `#[test]`s are inert without the test
// harness); their `use super::*` would otherwise warn.
#[allow(unused_imports)]
#[path = "../../../tests/lab/harness/mod.rs"]
mod harness;

#[path = "common/measure.rs"]
mod measure;

use harness::{find_program, tail};
use measure::{measure, netns_command, Sample, Stats, RUN_CAP};

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use harness::{find_upstream, tcp_addr, unix_addr, Lab, PhpFpmPool};
use serde_json::Value;

const AGENT_WARMUP: usize = 3;
const AGENT_RUNS: usize = 30;
const SCRIPT_WARMUP: usize = 1;
const SCRIPT_RUNS: usize = 10;
const CONTEXT_RUNS: usize = 10;

const TARGET_WALL_MS: f64 = 20.0;
const TARGET_RSS_MIB: f64 = 16.0;

const BACKEND_IP: &str = "127.0.0.1";
const BACKEND_PORT: u16 = 8000;

fn main() -> ExitCode {
    // `cargo bench` passes `--bench` (and any filter); there is nothing to
    // filter in a single benchmark, so arguments are ignored.
    //
    // A benchmark is not a test gate: a host that cannot build the lab
    // always skips (exit 0), even with CI=true, where the lab's tests fail.
    // Single-threaded at this point, so changing the environment is sound.
    std::env::remove_var("CI");
    // Everything that owns the Lab lives in `run`, so the Lab (netns,
    // processes, temp dir) is dropped before we exit — on success, on a FAIL
    // return, and while a panic unwinds out of `run`.
    let code = run();
    ExitCode::from(code)
}

fn run() -> u8 {
    let stack_started = std::time::Instant::now();
    let Some(mut lab) = Lab::new("diagnose-bench") else {
        // Lab::new already printed `SKIP lab diagnose-bench: <reason>`.
        println!("SKIP why502 diagnose bench: lab requirements not met (see stderr)");
        return 0;
    };
    let (Some(ip), Some(nginx)) = (find_program("ip").ok(), find_program("nginx").ok()) else {
        println!("SKIP why502 diagnose bench: `ip` or `nginx` not found");
        return 0;
    };
    // As in the lab: WHY502_LAB_AGENT overrides the binary cargo built
    // (for `cargo bench`, the release build).
    let agent = std::env::var_os("WHY502_LAB_AGENT").map_or_else(
        || PathBuf::from(env!("CARGO_BIN_EXE_why502")),
        PathBuf::from,
    );
    let ns = lab.netns_name().to_string();

    // --- the healthy stack --------------------------------------------------
    let socket = lab.path("run/php-fpm.sock");
    lab.start_php_fpm(PhpFpmPool::unix(&socket));
    lab.start_http_backend(BACKEND_IP, BACKEND_PORT);
    // python serves www/, so /api/ through nginx is a directory listing.
    let api_dir = lab.path("www/api");
    std::fs::create_dir_all(&api_dir).expect("bench: cannot create www/api");
    // render_nginx_conf puts the body inside `location / { ... }`; closing
    // that block and opening `location /api/` gives two sibling locations.
    let backend = tcp_addr(BACKEND_IP, BACKEND_PORT);
    let body = format!(
        "{}\n}}\nlocation /api/ {{\nproxy_pass http://{backend};",
        lab.fastcgi_location(&socket)
    );
    lab.start_nginx(&body);
    for path in ["/", "/api/"] {
        let status = lab.curl_through_nginx(path);
        if status != 200 {
            println!(
                "FAIL why502 diagnose bench: the healthy stack answers {status} on {path} (expected 200)\n{}",
                lab.diagnostics()
            );
            return 1;
        }
    }

    let conf = lab.nginx_conf_arg();
    let fpm_addr = unix_addr(&socket);

    // --- why502 -------------------------------------------------------------
    // The window covers the bench's own stack only: the kernel log is the machine's, and OOM
    // kills the lab made earlier are another host's (the lab does the same, see `KERNEL_LOG`).
    let agent_argv = || -> Vec<String> {
        let window = stack_started.elapsed() + std::time::Duration::from_millis(300);
        [
            "diagnose",
            "--json",
            "--nginx-conf",
            conf.as_str(),
            "--since",
            &format!("{}ms", window.as_millis()),
        ]
        .iter()
        .map(|arg| arg.to_string())
        .collect()
    };
    let agent_cmd = || netns_command(&ip, &ns, &agent, &agent_argv());
    let mut agent_samples = Vec::with_capacity(AGENT_RUNS);
    for i in 0..AGENT_WARMUP + AGENT_RUNS {
        let sample = measure(agent_cmd());
        if let Err(problem) = check_agent_run(&sample, &[&fpm_addr, &backend]) {
            println!(
                "FAIL why502 diagnose bench: run {} of `why502 {}` is not a healthy verdict: {problem}\n\
                 exit code: {}\nstderr:\n{}\nstdout:\n{}",
                i + 1,
                agent_argv().join(" "),
                sample.exit_code,
                tail(&sample.stderr, 4000),
                tail(&sample.stdout, 8000)
            );
            return 1;
        }
        if i >= AGENT_WARMUP {
            agent_samples.push(sample);
        }
    }

    // To look at the stack by hand (perf, strace): `WHY502_DIAGNOSE_HOLD=600` keeps it up.
    if let Some(secs) = std::env::var("WHY502_DIAGNOSE_HOLD")
        .ok()
        .and_then(|s| s.parse::<u64>().ok())
    {
        eprintln!("diagnose bench: holding the stack for {secs} s: netns {ns}, conf {conf}");
        std::thread::sleep(std::time::Duration::from_secs(secs));
    }

    // --- the quick-diagnosis script ----------------------------------------
    let script = lab.path("quick-diagnosis.sh");
    let script_text = quick_diagnosis_script(&lab.error_log_path(), &socket, &conf);
    std::fs::write(&script, &script_text).expect("bench: cannot write the script");
    let missing: Vec<&str> = SCRIPT_TOOLS
        .iter()
        .copied()
        .filter(|tool| find_program(tool).is_err())
        .collect();
    let bash = find_program("bash").unwrap_or_else(|_| PathBuf::from("/bin/bash"));
    let script_argv = [script.display().to_string()];
    let mut script_samples = Vec::with_capacity(SCRIPT_RUNS);
    for i in 0..SCRIPT_WARMUP + SCRIPT_RUNS {
        let sample = measure(netns_command(&ip, &ns, &bash, &script_argv));
        if sample.timed_out || sample.exit_code != 0 {
            println!(
                "FAIL why502 diagnose bench: the quick-diagnosis script exited {}{}\nstderr:\n{}",
                sample.exit_code,
                if sample.timed_out { " (timed out)" } else { "" },
                tail(&sample.stderr, 4000)
            );
            return 1;
        }
        if i >= SCRIPT_WARMUP {
            script_samples.push(sample);
        }
    }

    // --- context: nginx -t alone, entering the namespace alone --------------
    let prefix = format!("{}/", lab.root().display());
    let nginx_t_argv = ["-t", "-p", prefix.as_str(), "-c", conf.as_str()];
    let nginx_t: Vec<Sample> = (0..1 + CONTEXT_RUNS)
        .map(|_| measure(netns_command(&ip, &ns, &nginx, &nginx_t_argv)))
        .skip(1)
        .collect();
    let true_bin = find_program("true").unwrap_or_else(|_| PathBuf::from("/bin/true"));
    let no_args: [&str; 0] = [];
    let netns_true: Vec<Sample> = (0..1 + CONTEXT_RUNS)
        .map(|_| measure(netns_command(&ip, &ns, &true_bin, &no_args)))
        .skip(1)
        .collect();

    // --- report -------------------------------------------------------------
    let agent_stats = Stats::of(&agent_samples);
    let script_stats = Stats::of(&script_samples);
    let nginx_t_stats = Stats::of(&nginx_t);
    let true_stats = Stats::of(&netns_true);

    println!();
    println!(
        "why502 diagnose bench (healthy lab stack: php-fpm unix socket + python http backend)"
    );
    println!(
        "                             {:<8} {:<8} {:<8} peak RSS",
        "min", "median", "p90"
    );
    println!("{}", agent_stats.row("why502 diagnose --json", true));
    println!("{}", script_stats.row("quick-diagnosis script", false));
    println!(
        "ratio (script / why502, median): {:.1}",
        script_stats.median_ms / agent_stats.median_ms
    );
    let wall_met = agent_stats.median_ms < TARGET_WALL_MS;
    let rss_met = agent_stats.max_rss_mib < TARGET_RSS_MIB;
    println!(
        "targets: why502 under {TARGET_WALL_MS:.0} ms and {TARGET_RSS_MIB:.0} MiB   -> {} \
         (median {:.1} ms: {}, peak RSS {:.1} MiB: {})",
        if wall_met && rss_met {
            "MET"
        } else {
            "NOT MET"
        },
        agent_stats.median_ms,
        met(wall_met),
        agent_stats.max_rss_mib,
        met(rss_met),
    );
    println!();
    println!("context (same namespace, {CONTEXT_RUNS} runs each after 1 warm-up):");
    println!("{}", nginx_t_stats.row("nginx -t alone", true));
    println!("{}", true_stats.row("ip netns exec NS true", true));
    println!(
        "runs: why502 {AGENT_RUNS} (+{AGENT_WARMUP} warm-up), script {SCRIPT_RUNS} (+{SCRIPT_WARMUP} warm-up); \
         every row includes entering the namespace (`ip netns exec`)."
    );
    println!(
        "peak RSS is wait4's ru_maxrss: the largest of the process itself (including `ip` before it \
         exec'd) and any child it waited for (e.g. nginx -t)."
    );
    if !missing.is_empty() {
        println!(
            "note: not installed, so their script lines did nothing: {}",
            missing.join(", ")
        );
    }
    println!("agent: {}", agent.display());
    drop(lab);
    0
}

fn met(ok: bool) -> &'static str {
    if ok {
        "met"
    } else {
        "not met"
    }
}

/// Programs the quick-diagnosis script calls (besides bash builtins).
const SCRIPT_TOOLS: [&str; 14] = [
    "tail", "grep", "ss", "ls", "curl", "dmesg", "df", "free", "iptables", "nft", "nginx", "true",
    "bash", "ip",
];

/// The quick-diagnosis command reference as a script, adapted to the lab's
/// paths. A fixed template; only the three paths are substituted (quoted).
fn quick_diagnosis_script(error_log: &Path, socket: &Path, conf: &str) -> String {
    let q = |text: &str| format!("'{}'", text.replace('\'', r"'\''"));
    let error_log = q(&error_log.display().to_string());
    let socket = q(&socket.display().to_string());
    let conf = q(conf);
    format!(
        r#"#!/bin/bash
# Quick diagnosis commands an admin runs by hand when nginx answers 502
# (fixture of the why502 diagnose bench; paths point into the lab stack).
export PATH=/usr/sbin:/usr/bin:/sbin:/bin
tail -n 200 {error_log} | grep -E 'upstream|connect\(\)' >/dev/null 2>&1 || true
ss -tulnp | grep LISTEN >/dev/null 2>&1 || true
ls -la {socket} >/dev/null 2>&1 || true
curl -s -o /dev/null --max-time 5 http://127.0.0.1:8000/ >/dev/null 2>&1 || true
curl -s -o /dev/null --max-time 5 http://127.0.0.1:8080/ >/dev/null 2>&1 || true
dmesg | grep -i oom >/dev/null 2>&1 || true
df -h >/dev/null 2>&1 || true
df -i >/dev/null 2>&1 || true
free -h >/dev/null 2>&1 || true
iptables -L -n -v >/dev/null 2>&1 || true
nft list ruleset >/dev/null 2>&1 || true
nginx -t -c {conf} >/dev/null 2>&1 || true
"#
    )
}

/// Exit 0, a JSON report with `status: "ok"`, and every expected upstream
/// present with `status: "ok"`.
fn check_agent_run(sample: &Sample, upstreams: &[&str]) -> Result<(), String> {
    if sample.timed_out {
        return Err(format!("killed after {RUN_CAP:?}"));
    }
    if sample.stderr.contains("panicked at") {
        return Err("why502 panicked".into());
    }
    if sample.exit_code != 0 {
        return Err(format!("exit code {} (expected 0)", sample.exit_code));
    }
    let report: Value =
        serde_json::from_str(&sample.stdout).map_err(|err| format!("stdout is not JSON: {err}"))?;
    let status = report.get("status").and_then(Value::as_str);
    if status != Some("ok") {
        return Err(format!("report status {status:?} (expected \"ok\")"));
    }
    for address in upstreams {
        let Some(upstream) = find_upstream(&report, address) else {
            return Err(format!("report has no upstream {address:?}"));
        };
        let status = upstream.get("status").and_then(Value::as_str);
        if status != Some("ok") {
            return Err(format!(
                "upstream {address}: status {status:?} (expected \"ok\")"
            ));
        }
    }
    Ok(())
}

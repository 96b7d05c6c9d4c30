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
//! `wait4`'s rusage), each command started straight into the namespace (the
//! forked child calls setns before it execs: `measure::setns_command`), as a
//! host without namespaces runs it:
//!
//! - `why502 diagnose --json --nginx-conf CONF` with the default window
//!   (`--since 1h`), 3 warm-up runs + 30 measured runs; every upstream must be
//!   ok, and the report ok — or warning for nothing but OOM kills of this
//!   machine's past (the kernel log is the machine's: the lab's tests
//!   OOM-kill for real), otherwise the bench prints FAIL and exits non-zero
//!   (measuring a broken run would be worthless);
//! - a bash script with the quick-diagnosis commands (error log tail, ss,
//!   ls of the socket, curl both backends, dmesg, df, free, iptables, nft,
//!   nginx -t), 1 warm-up + 10 measured runs;
//! - both again under `ip netns exec NS` (10 runs each), as stops up to 26
//!   measured them, for comparison;
//! - for context: `nginx -t` alone (the agent runs it too), `true` (the
//!   fixed cost of starting a process) and `ip netns exec NS true`.
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
use measure::{measure, netns_command, setns_command, Sample, Stats, RUN_CAP};

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
    // The default window, as users run it: this machine's past is in it (see `check_agent_run`).
    let agent_argv: Vec<String> = ["diagnose", "--json", "--nginx-conf", conf.as_str()]
        .iter()
        .map(|arg| arg.to_string())
        .collect();
    let mut past_oom_kills: Option<String> = None;
    let mut run_agent = |runs: usize, cmd: &dyn Fn() -> std::process::Command| {
        let mut samples = Vec::with_capacity(runs);
        for i in 0..runs {
            let sample = measure(cmd());
            match check_agent_run(&sample, &[&fpm_addr, &backend]) {
                Ok(warned) => past_oom_kills = warned.or(past_oom_kills.take()),
                Err(problem) => {
                    println!(
                        "FAIL why502 diagnose bench: run {} of `why502 {}` is not a healthy verdict: {problem}\n\
                         exit code: {}\nstderr:\n{}\nstdout:\n{}",
                        i + 1,
                        agent_argv.join(" "),
                        sample.exit_code,
                        tail(&sample.stderr, 4000),
                        tail(&sample.stdout, 8000)
                    );
                    return None;
                }
            }
            samples.push(sample);
        }
        Some(samples)
    };
    let Some(mut agent_samples) = run_agent(AGENT_WARMUP + AGENT_RUNS, &|| {
        setns_command(&ns, &agent, &agent_argv)
    }) else {
        return 1;
    };
    agent_samples.drain(..AGENT_WARMUP);
    let Some(agent_ip_samples) = run_agent(CONTEXT_RUNS, &|| {
        netns_command(&ip, &ns, &agent, &agent_argv)
    }) else {
        return 1;
    };

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
    let run_script = |runs: usize, cmd: &dyn Fn() -> std::process::Command| {
        let mut samples = Vec::with_capacity(runs);
        for _ in 0..runs {
            let sample = measure(cmd());
            if sample.timed_out || sample.exit_code != 0 {
                println!(
                    "FAIL why502 diagnose bench: the quick-diagnosis script exited {}{}\nstderr:\n{}",
                    sample.exit_code,
                    if sample.timed_out { " (timed out)" } else { "" },
                    tail(&sample.stderr, 4000)
                );
                return None;
            }
            samples.push(sample);
        }
        Some(samples)
    };
    let Some(mut script_samples) = run_script(SCRIPT_WARMUP + SCRIPT_RUNS, &|| {
        setns_command(&ns, &bash, &script_argv)
    }) else {
        return 1;
    };
    script_samples.drain(..SCRIPT_WARMUP);
    let Some(script_ip_samples) = run_script(CONTEXT_RUNS, &|| {
        netns_command(&ip, &ns, &bash, &script_argv)
    }) else {
        return 1;
    };

    // --- context: nginx -t alone, entering the namespace alone --------------
    let prefix = format!("{}/", lab.root().display());
    let nginx_t_argv = ["-t", "-p", prefix.as_str(), "-c", conf.as_str()];
    let nginx_t: Vec<Sample> = (0..1 + CONTEXT_RUNS)
        .map(|_| measure(setns_command(&ns, &nginx, &nginx_t_argv)))
        .skip(1)
        .collect();
    let true_bin = find_program("true").unwrap_or_else(|_| PathBuf::from("/bin/true"));
    let no_args: [&str; 0] = [];
    let plain_true: Vec<Sample> = (0..1 + CONTEXT_RUNS)
        .map(|_| measure(setns_command(&ns, &true_bin, &no_args)))
        .skip(1)
        .collect();
    let netns_true: Vec<Sample> = (0..1 + CONTEXT_RUNS)
        .map(|_| measure(netns_command(&ip, &ns, &true_bin, &no_args)))
        .skip(1)
        .collect();

    // --- report -------------------------------------------------------------
    let agent_stats = Stats::of(&agent_samples);
    let script_stats = Stats::of(&script_samples);
    let nginx_t_stats = Stats::of(&nginx_t);
    let true_stats = Stats::of(&netns_true);
    let plain_true_stats = Stats::of(&plain_true);
    let agent_ip_stats = Stats::of(&agent_ip_samples);
    let script_ip_stats = Stats::of(&script_ip_samples);

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
    println!("{}", plain_true_stats.row("true", true));
    println!("{}", true_stats.row("ip netns exec NS true", true));
    println!("under `ip netns exec NS` (as stops up to 26 measured; {CONTEXT_RUNS} runs each):");
    println!("{}", agent_ip_stats.row("why502 diagnose --json", true));
    println!("{}", script_ip_stats.row("quick-diagnosis script", false));
    println!(
        "ratio (script / why502, median): {:.1}",
        script_ip_stats.median_ms / agent_ip_stats.median_ms
    );
    println!(
        "runs: why502 {AGENT_RUNS} (+{AGENT_WARMUP} warm-up), script {SCRIPT_RUNS} (+{SCRIPT_WARMUP} warm-up); \
         each started straight into the namespace (setns before exec) unless the row says otherwise."
    );
    if let Some(warned) = &past_oom_kills {
        println!("host check seen (this machine's past, not the stack's): {warned}");
    }
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
/// A healthy verdict: every upstream ok, and the report ok — or warning (exit 1) for
/// nothing but the host check of OOM kills no upstream explains, whose summary is returned:
/// the kernel log is this machine's, and the lab's tests OOM-kill for real.
fn check_agent_run(sample: &Sample, upstreams: &[&str]) -> Result<Option<String>, String> {
    if sample.timed_out {
        return Err(format!("killed after {RUN_CAP:?}"));
    }
    if sample.stderr.contains("panicked at") {
        return Err("why502 panicked".into());
    }
    let report: Value =
        serde_json::from_str(&sample.stdout).map_err(|err| format!("stdout is not JSON: {err}"))?;
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
    let status = report.get("status").and_then(Value::as_str);
    let checks = report
        .get("host_checks")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let field = |c: &Value, k: &str| c.get(k).and_then(Value::as_str).unwrap_or("").to_string();
    let raised: Vec<&Value> = checks
        .iter()
        .filter(|c| field(c, "outcome") != "pass")
        .collect();
    let past_kills_only = !raised.is_empty()
        && raised.iter().all(|c| {
            field(c, "outcome") == "warn"
                && field(c, "cause") == "oom_killed"
                && field(c, "summary").starts_with("the kernel OOM-killed")
        });
    match (status, sample.exit_code) {
        (Some("ok"), 0) if raised.is_empty() => Ok(None),
        (Some("warning"), 1) if past_kills_only => {
            let summary = field(raised[0], "summary");
            Ok(Some(summary.chars().take(160).collect()))
        }
        _ => Err(format!(
            "report status {status:?}, exit code {} (expected ok and 0, or a warning for past OOM kills only); host checks raised: {}",
            sample.exit_code,
            raised
                .iter()
                .map(|c| format!("{}/{}", field(c, "step"), field(c, "cause")))
                .collect::<Vec<_>>()
                .join(", ")
        )),
    }
}

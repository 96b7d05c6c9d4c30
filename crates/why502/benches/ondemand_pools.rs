//! Benchmark: does one diagnosis load the host? 500 php-fpm `ondemand` pools behind 500 nginx
//! locations, each idle (no worker) until asked.
//!
//! Run with `cargo bench -p why502 --bench ondemand_pools` (root; builds the stack with the
//! lab harness in its own network namespace). It prints, for one `why502 diagnose --json`
//! run with the default options:
//!
//! - php-fpm's process count before the run, its peak during it (sampled every 5 ms), right
//!   after it, and after the pools' idle timeout reaped the workers;
//! - the signals php-fpm's master sent its workers (strace on the master): SIGQUIT is the
//!   idle reaper's graceful stop, SIGKILL would be a worker that did not stop — the kind of
//!   line a later run would read as the backend's fault;
//! - the same figures for the unbounded way — a request to every pool at once (curl
//!   --parallel through nginx) — for context.
//!
//! The targets line says whether the run kept at most a few requests in flight per master
//! (peak workers alive is bounded by the idle timeout, not by the agent) and caused no SIGKILL.

#[allow(unused_imports)]
#[path = "../../../tests/lab/harness/mod.rs"]
mod harness;

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use harness::{find_program, Lab, PhpFpmPool};

const POOLS: usize = 500;
/// Workers an ondemand pool keeps after its request; they then get SIGQUIT from the reaper.
const IDLE_TIMEOUT_S: u64 = 3;

fn main() -> ExitCode {
    // A benchmark is not a test gate: a host that cannot build the lab skips, even in CI.
    std::env::remove_var("CI");
    ExitCode::from(run())
}

fn run() -> u8 {
    let Some(mut lab) = Lab::new("ondemand-bench") else {
        println!("SKIP ondemand pools bench: lab requirements not met (see stderr)");
        return 0;
    };
    let (Ok(ip), Ok(strace), Ok(curl)) = (
        find_program("ip"),
        find_program("strace"),
        find_program("curl"),
    ) else {
        println!("SKIP ondemand pools bench: ip, strace or curl not found");
        return 0;
    };
    let agent = std::env::var_os("WHY502_LAB_AGENT").map_or_else(
        || PathBuf::from(env!("CARGO_BIN_EXE_why502")),
        PathBuf::from,
    );
    let idle = format!("pm.process_idle_timeout = {IDLE_TIMEOUT_S}s");
    let pools: Vec<PhpFpmPool> = (0..POOLS)
        .map(|i| {
            PhpFpmPool::unix(&lab.path(&format!("run/pool-{i}.sock")))
                .named(&format!("p{i}"))
                .process_manager(&["pm = ondemand", "pm.max_children = 5", &idle])
        })
        .collect();
    lab.write_php_script("<?php echo 'ok';");
    let started = Instant::now();
    lab.start_php_fpm_pools(pools);
    let script = lab.path("www/index.php");
    let matchers: Vec<String> = (0..POOLS).map(|i| format!("/p{i}/")).collect();
    let bodies: Vec<String> = (0..POOLS)
        .map(|i| lab.fastcgi_location_for(&lab.path(&format!("run/pool-{i}.sock")), &script))
        .collect();
    let locations: Vec<(&str, &str)> = matchers
        .iter()
        .zip(&bodies)
        .map(|(m, b)| (m.as_str(), b.as_str()))
        .collect();
    lab.start_nginx_with_locations(&locations);
    println!(
        "stack: {POOLS} ondemand pools + nginx with {POOLS} locations, up in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    let Some(master) = php_fpm_master(&lab) else {
        println!("FAIL ondemand pools bench: no php-fpm master among the lab's processes");
        return 1;
    };

    // --- why502 -------------------------------------------------------------
    let agent_cmd = {
        let mut c = Command::new(&ip);
        c.args(["netns", "exec", lab.netns_name()])
            .arg(&agent)
            .args(["diagnose", "--json"]);
        c
    };
    let why502 = observe(&lab, master, &strace, agent_cmd);
    let report: serde_json::Value = serde_json::from_str(&why502.stdout).unwrap_or_default();
    let upstreams = report["upstreams"].as_array().map_or(0, Vec::len);
    let direct = |outcome: &str| {
        report["upstreams"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|u| {
                u["steps"].as_array().into_iter().flatten().any(|s| {
                    s["step"] == "direct_request" && s["outcome"].as_str() == Some(outcome)
                })
            })
            .count()
    };
    let (asked, not_asked) = (direct("pass"), direct("skip"));

    // --- context: every pool at once ----------------------------------------
    let urls: Vec<String> = (0..POOLS)
        .map(|i| format!("http://{}/p{i}/", harness_listen()))
        .collect();
    let curl_cmd = {
        let mut c = Command::new(&ip);
        c.args(["netns", "exec", lab.netns_name()])
            .arg(&curl)
            .args([
                "-s",
                "-o",
                "/dev/null",
                "--parallel",
                "--parallel-max",
                "500",
            ])
            .args(&urls);
        c
    };
    let burst = observe(&lab, master, &strace, curl_cmd);

    println!();
    println!("ondemand pools bench ({POOLS} pools, pm.process_idle_timeout {IDLE_TIMEOUT_S}s)");
    println!(
        "{:<34} {:>7} {:>7} {:>7} {:>8} {:>8} {:>8} {:>9}",
        "", "wall ms", "before", "peak", "after", "reaped", "SIGQUIT", "SIGKILL"
    );
    for (label, o) in [
        ("why502 diagnose --json", &why502),
        ("curl --parallel (all pools at once)", &burst),
    ] {
        println!(
            "{:<34} {:>7.0} {:>7} {:>7} {:>8} {:>8} {:>8} {:>9}",
            label,
            o.wall.as_secs_f64() * 1000.0,
            o.before,
            o.peak,
            o.after,
            o.reaped,
            o.sigquit,
            o.sigkill
        );
    }
    println!(
        "why502: exit {}, status {}, {upstreams} upstreams; direct request: {asked} answered, {not_asked} not asked (idle ondemand pools)",
        why502.exit_code,
        report["status"]
    );
    let met = why502.sigkill == 0 && why502.reaped <= why502.before;
    println!(
        "targets: no SIGKILL caused by the run, every worker it woke reaped -> {}",
        if met { "MET" } else { "NOT MET" }
    );
    println!("agent: {}", agent.display());
    0
}

fn harness_listen() -> &'static str {
    "127.0.0.1:8080"
}

/// What one command did to php-fpm.
struct Observed {
    wall: Duration,
    exit_code: i32,
    stdout: String,
    /// php-fpm's processes (master and workers) before, at the peak, right after, and once
    /// the idle timeout has passed.
    before: usize,
    peak: usize,
    after: usize,
    reaped: usize,
    sigquit: usize,
    sigkill: usize,
}

fn observe(lab: &Lab, master: u32, strace: &Path, mut cmd: Command) -> Observed {
    let before = family(master);
    let trace = lab.path(&format!(
        "master-{}.strace",
        Instant::now().elapsed().as_nanos()
    ));
    let mut tracer = Command::new(strace)
        .args(["-qq", "-e", "trace=kill,tgkill", "-o"])
        .arg(&trace)
        .args(["-p", &master.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("strace the master");
    std::thread::sleep(Duration::from_millis(300)); // let strace attach
    let peak = Arc::new(AtomicUsize::new(before));
    let done = Arc::new(AtomicBool::new(false));
    let sampler = {
        let (peak, done) = (peak.clone(), done.clone());
        std::thread::spawn(move || {
            while !done.load(Ordering::Relaxed) {
                peak.fetch_max(family(master), Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(5));
            }
        })
    };
    let t = Instant::now();
    let out = cmd
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .expect("run the command");
    let wall = t.elapsed();
    let after = family(master);
    std::thread::sleep(Duration::from_secs(IDLE_TIMEOUT_S + 3));
    done.store(true, Ordering::Relaxed);
    let _ = sampler.join();
    let reaped = family(master);
    // SAFETY: kill on the pid of a child we spawned.
    unsafe {
        libc::kill(tracer.id() as i32, libc::SIGINT);
    }
    let _ = tracer.wait();
    let text = std::fs::read_to_string(&trace).unwrap_or_default();
    Observed {
        wall,
        exit_code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        before,
        peak: peak.load(Ordering::Relaxed),
        after,
        reaped,
        sigquit: text.lines().filter(|l| l.contains("SIGQUIT")).count(),
        sigkill: text.lines().filter(|l| l.contains("SIGKILL")).count(),
    }
}

/// The php-fpm master among the lab's processes.
fn php_fpm_master(lab: &Lab) -> Option<u32> {
    lab.stack_pids().into_iter().find(|pid| {
        std::fs::read_to_string(format!("/proc/{pid}/cmdline"))
            .is_ok_and(|c| c.contains("php-fpm: master process"))
    })
}

/// The master and its workers, now.
fn family(master: u32) -> usize {
    1 + std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| {
            std::fs::read_to_string(e.path().join("stat")).is_ok_and(|s| {
                s.rsplit_once(") ")
                    .and_then(|(_, rest)| rest.split_whitespace().nth(1)?.parse::<u32>().ok())
                    == Some(master)
            })
        })
        .count()
}

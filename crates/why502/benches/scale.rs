//! Benchmark: how a diagnosis scales with the sites of a hosting server.
//!
//! Run with `cargo bench -p why502 --bench scale` (root; the lab harness builds each stack in
//! its own network namespace). `WHY502_SCALE_SITES=10,50` picks the sizes (default
//! 10,50,200,500,2000). For each N it builds real nginx with N `server` blocks
//! (`server_name siteI.test`): half pass to php-fpm `ondemand` pools (one master, one pool
//! per site, on unix sockets), half `proxy_pass` to TCP backends (one python process serving
//! every port). Then it prints, per N:
//!
//! The nginx error log also holds 50,000 lines of the last half hour about sockets no site
//! uses, as a busy shared log does.
//!
//! - why502 `diagnose --json` (defaults): wall median of 5, CPU, peak RSS; and whether the
//!   report is right — every upstream ok, and with one pool's socket made unreachable
//!   (mode 0600, root) exactly that upstream breaks;
//! - the seed's hand-run commands for the same host (error-log tail, ss, ls of every socket,
//!   a curl through nginx per site, dmesg, df, free, iptables, nft, nginx -t): wall, once;
//! - at N = 500, `--server-name` for one site.
//!
//! Each command is started straight into the stack's namespace (setns before exec, as
//! `measure::setns_command` says), not under `ip netns exec`, which stops up to 26 measured
//! with: ~3 ms more on every row.
//!
//! Last, the growth exponent fitted over the sizes (log wall against log N). Nothing is
//! asserted; the targets line says whether they were met.

#[allow(unused_imports)]
#[path = "../../../tests/lab/harness/mod.rs"]
mod harness;
#[path = "common/measure.rs"]
mod measure;

use std::fmt::Write as _;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use harness::{find_program, render_nginx_conf, Lab, PhpFpmPool};
use measure::{measure, setns_command, Stats};
use serde_json::Value;

const AGENT_RUNS: usize = 5;
/// Error-log lines of the last half hour about sockets no site uses (another nginx's, a
/// removed site's): every upstream's lookup must get past them.
const BUSY_LINES: usize = 50_000;
const FIRST_TCP_PORT: u16 = 20_000;

/// One python process answering `200 ok` on every port it is given.
const MULTI_PORT_PY: &str = r#"import asyncio, sys
async def answer(reader, writer):
    try:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")
        await writer.drain()
    except Exception:
        pass
    writer.close()
async def main():
    for p in sys.argv[1:]:
        await asyncio.start_server(answer, "127.0.0.1", int(p), backlog=128)
    print("ready", flush=True)
    await asyncio.Event().wait()
asyncio.run(main())
"#;

fn main() -> ExitCode {
    std::env::remove_var("CI");
    ExitCode::from(run())
}

struct Row {
    sites: usize,
    agent: Stats,
    correct: String,
    seed_ms: f64,
    server_name: Option<Stats>,
    /// `--server-name` before the busy lines were written.
    server_name_quiet: Option<Stats>,
}

fn run() -> u8 {
    let sizes: Vec<usize> = std::env::var("WHY502_SCALE_SITES")
        .ok()
        .map(|v| v.split(',').filter_map(|n| n.trim().parse().ok()).collect())
        .unwrap_or_else(|| vec![10, 50, 200, 500, 2000]);
    raise_fd_limit();
    let mut rows = Vec::new();
    for n in sizes {
        match one_size(n) {
            Ok(row) => rows.push(row),
            Err(skip) => {
                println!("{skip}");
                return 0;
            }
        }
    }
    println!();
    println!("scale bench (half php-fpm ondemand pools on unix sockets, half TCP backends; {AGENT_RUNS} runs each)");
    println!(
        "{:>6} {:>10} {:>9} {:>9} {:>10} {:>8}  correct",
        "sites", "median ms", "cpu ms", "RSS MiB", "seed ms", "ratio"
    );
    for r in &rows {
        println!(
            "{:>6} {:>10.1} {:>9.1} {:>9.1} {:>10.0} {:>8.1}  {}",
            r.sites,
            r.agent.median_ms,
            r.agent.cpu_ms,
            r.agent.max_rss_mib,
            r.seed_ms,
            r.seed_ms / r.agent.median_ms,
            r.correct
        );
        if let Some(s) = &r.server_name_quiet {
            println!(
                "{:>6} {:>10.1} {:>9.1} {:>9.1}  (--server-name for one site, before the busy lines)",
                "", s.median_ms, s.cpu_ms, s.max_rss_mib
            );
        }
        if let Some(s) = &r.server_name {
            println!(
                "{:>6} {:>10.1} {:>9.1} {:>9.1}  (--server-name for one site)",
                "", s.median_ms, s.cpu_ms, s.max_rss_mib
            );
        }
    }
    let exponent = growth_exponent(&rows);
    let at = |n: usize| rows.iter().find(|r| r.sites == n);
    let mut targets = String::new();
    let mut check = |label: &str, met: Option<bool>| {
        let _ = write!(
            targets,
            "\n  {label}: {}",
            match met {
                Some(true) => "MET",
                Some(false) => "NOT MET",
                None => "not measured",
            }
        );
    };
    check(
        "500 sites < 250 ms",
        at(500).map(|r| r.agent.median_ms < 250.0),
    );
    check(
        "2,000 sites < 1 s",
        at(2000).map(|r| r.agent.median_ms < 1000.0),
    );
    check(
        "RSS < 32 MiB at 500",
        at(500).map(|r| r.agent.max_rss_mib < 32.0),
    );
    check(
        "--server-name at 500 < 30 ms (quiet log)",
        at(500)
            .and_then(|r| r.server_name_quiet.as_ref())
            .map(|s| s.median_ms < 30.0),
    );
    check(
        "--server-name at 500 < 30 ms (busy log)",
        at(500)
            .and_then(|r| r.server_name.as_ref())
            .map(|s| s.median_ms < 30.0),
    );
    check("growth exponent <= 1.1", exponent.map(|e| e <= 1.1));
    match exponent {
        Some(e) => println!("growth exponent (log wall vs log sites): {e:.2}"),
        None => println!("growth exponent: needs two sizes"),
    }
    println!("targets:{targets}");
    0
}

fn one_size(n: usize) -> Result<Row, String> {
    let Some(mut lab) = Lab::new(&format!("scale-{n}")) else {
        return Err("SKIP scale bench: lab requirements not met (see stderr)".into());
    };
    let (Ok(ip), Ok(python), Ok(bash)) = (
        find_program("ip"),
        find_program("python3"),
        find_program("bash"),
    ) else {
        return Err("SKIP scale bench: ip, python3 or bash not found".into());
    };
    let agent = std::env::var_os("WHY502_LAB_AGENT").map_or_else(
        || PathBuf::from(env!("CARGO_BIN_EXE_why502")),
        PathBuf::from,
    );
    let php_sites = n.div_ceil(2);
    let sockets: Vec<PathBuf> = (0..php_sites)
        .map(|i| lab.path(&format!("run/site-{i}.sock")))
        .collect();
    let ports: Vec<u16> = (0..n - php_sites)
        .map(|i| FIRST_TCP_PORT + i as u16)
        .collect();
    lab.write_php_script("<?php echo 'ok';");
    let pools = sockets
        .iter()
        .enumerate()
        .map(|(i, s)| {
            PhpFpmPool::unix(s)
                .named(&format!("site{i}"))
                .process_manager(&[
                    "pm = ondemand",
                    "pm.max_children = 5",
                    "pm.process_idle_timeout = 10s",
                ])
        })
        .collect();
    let built = Instant::now();
    lab.start_php_fpm_pools(pools);
    let _tcp = MultiPort::start(
        &ip,
        lab.netns_name(),
        &python,
        &lab.path("multi_port.py"),
        &ports,
    )?;
    let script = lab.path("www/index.php");
    let mut servers = String::new();
    for (i, s) in sockets.iter().enumerate() {
        let _ = write!(
            servers,
            "    server {{\n        listen 127.0.0.1:8080;\n        server_name site{i}.test;\n        location / {{\n            fastcgi_pass unix:{};\n            include /etc/nginx/fastcgi_params;\n            fastcgi_param SCRIPT_FILENAME {};\n        }}\n    }}\n",
            s.display(),
            script.display()
        );
    }
    for (j, port) in ports.iter().enumerate() {
        let _ = write!(
            servers,
            "    server {{\n        listen 127.0.0.1:8080;\n        server_name site{}.test;\n        location / {{ proxy_pass http://127.0.0.1:{port}; }}\n    }}\n",
            php_sites + j
        );
    }
    // The lab's own server first (the readiness check asks it), then the sites.
    let base = render_nginx_conf(lab.root(), &lab.fastcgi_location(&sockets[0]));
    let Some(end) = base.rfind("}\n") else {
        return Err("FAIL scale bench: unexpected nginx.conf template".into());
    };
    let conf_text = format!("{}{servers}}}\n", &base[..end]);
    lab.start_nginx_with_conf_within(&conf_text, Duration::from_secs(60));
    // As on a real host, nginx loaded its config some time after it was written (the lab
    // writes it the moment before the start, within the second a start time cannot tell from
    // after): the per-site view may then skip nginx -t.
    if n == 500 {
        std::thread::sleep(Duration::from_millis(2500));
        lab.reload_nginx();
    }
    let ns = lab.netns_name().to_string();
    let diagnose = |extra: &[&str]| {
        let mut args = vec!["diagnose", "--json"];
        args.extend_from_slice(extra);
        setns_command(&ns, &agent, &args)
    };
    // The per-site view before the busy lines are written too: what it costs on a quiet log.
    let server_name_quiet = (n == 500).then(|| {
        let _warm = measure(diagnose(&["--server-name", "site250.test"]));
        let runs: Vec<_> = (0..AGENT_RUNS)
            .map(|_| measure(diagnose(&["--server-name", "site250.test"])))
            .collect();
        Stats::of(&runs)
    });
    busy_error_log(&lab.error_log_path(), BUSY_LINES);
    eprintln!(
        "scale {n}: stack up in {:.1} s",
        built.elapsed().as_secs_f64()
    );

    let _warm = measure(diagnose(&[]));
    let samples: Vec<_> = (0..AGENT_RUNS).map(|_| measure(diagnose(&[]))).collect();
    let correct_all = samples
        .iter()
        .map(|s| all_upstreams_ok(&s.stdout, n))
        .find(|r| r.is_err())
        .unwrap_or(Ok(()));
    // One pool's socket out of nginx's reach (root's, 0600): exactly that upstream must break.
    let broken = &sockets[sockets.len() / 2];
    let before = std::fs::metadata(broken).ok();
    let _ = std::os::unix::fs::chown(broken, Some(0), Some(0));
    let _ = std::fs::set_permissions(broken, std::fs::Permissions::from_mode(0o600));
    let one_broken = measure(diagnose(&[]));
    if let Some(m) = before {
        use std::os::unix::fs::MetadataExt;
        let _ = std::os::unix::fs::chown(broken, Some(m.uid()), Some(m.gid()));
        let _ = std::fs::set_permissions(broken, m.permissions());
    }
    let correct_broken = only_broken(&one_broken.stdout, &format!("unix:{}", broken.display()));
    let correct = match (correct_all, correct_broken) {
        (Ok(()), Ok(())) => "yes (all ok; one socket 0600 -> exactly it breaks)".to_string(),
        (Err(e), _) | (_, Err(e)) => format!("NO: {e}"),
    };

    let seed = lab.path("seed.sh");
    std::fs::write(&seed, seed_script(&lab, &sockets, n)).map_err(|e| e.to_string())?;
    let seed_sample = measure(setns_command(&ns, &bash, &[seed.display().to_string()]));

    let server_name = (n == 500).then(|| {
        // As the quiet row: the first run after the seed script is not a sample.
        let _warm = measure(diagnose(&["--server-name", "site250.test"]));
        let runs: Vec<_> = (0..AGENT_RUNS)
            .map(|_| measure(diagnose(&["--server-name", "site250.test"])))
            .collect();
        Stats::of(&runs)
    });
    // To look at the stack by hand (perf, strace): `WHY502_SCALE_HOLD=600` keeps it up.
    if let Some(secs) = std::env::var("WHY502_SCALE_HOLD")
        .ok()
        .and_then(|s| s.parse::<u64>().ok())
    {
        eprintln!(
            "scale {n}: holding the stack for {secs} s: netns {ns}, conf {}",
            lab.nginx_conf_arg()
        );
        std::thread::sleep(Duration::from_secs(secs));
    }
    Ok(Row {
        sites: n,
        agent: Stats::of(&samples),
        correct,
        seed_ms: seed_sample.wall.as_secs_f64() * 1000.0,
        server_name,
        server_name_quiet,
    })
}

/// Appends `lines` refusals of the last 30 minutes, about sockets not in this config.
fn busy_error_log(log: &Path, lines: usize) {
    use std::io::Write;
    let Ok(mut f) = std::fs::OpenOptions::new().append(true).open(log) else {
        return;
    };
    let now = std::time::SystemTime::now();
    let mut text = String::new();
    for i in 0..lines {
        let at = now - Duration::from_secs(1800 - (i * 1800 / lines.max(1)) as u64);
        let _ = writeln!(
            text,
            "{} [error] 1234#1234: *{i} connect() to unix:/run/php/gone-{}.sock failed (2: No such file or directory) while connecting to upstream, client: 10.0.0.{}, server: gone{}.test, request: \"GET / HTTP/1.1\", upstream: \"fastcgi://unix:/run/php/gone-{}.sock:\", host: \"gone{}.test\"",
            harness::nginx_stamp(at),
            i % 997,
            i % 250,
            i % 997,
            i % 997,
            i % 997
        );
    }
    let _ = f.write_all(text.as_bytes());
}

/// Every one of the `n` site upstreams (and the lab's own) is ok.
fn all_upstreams_ok(stdout: &str, n: usize) -> Result<(), String> {
    let report: Value = serde_json::from_str(stdout).map_err(|e| format!("not JSON: {e}"))?;
    let ups = report["upstreams"].as_array().cloned().unwrap_or_default();
    if ups.len() < n {
        return Err(format!("{} upstreams, expected {n}", ups.len()));
    }
    match ups.iter().find(|u| u["status"] != "ok") {
        Some(u) => Err(format!(
            "{} is {}: {}",
            u["address"], u["status"], u["verdict"]["summary"]
        )),
        None => Ok(()),
    }
}

/// `address` breaks and no other upstream does.
fn only_broken(stdout: &str, address: &str) -> Result<(), String> {
    let report: Value = serde_json::from_str(stdout).map_err(|e| format!("not JSON: {e}"))?;
    let bad: Vec<String> = report["upstreams"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|u| u["status"] != "ok")
        .map(|u| format!("{} {}", u["address"], u["verdict"]["cause"]))
        .collect();
    if bad.len() == 1 && bad[0].contains(address) {
        Ok(())
    } else {
        Err(format!("with {address} broken, not ok: {bad:?}"))
    }
}

/// The seed's commands as an admin would run them on this host, a line per socket and site.
fn seed_script(lab: &Lab, sockets: &[PathBuf], n: usize) -> String {
    let q = |p: &Path| format!("'{}'", p.display().to_string().replace('\'', r"'\''"));
    let mut s = String::from("#!/bin/bash\nexport PATH=/usr/sbin:/usr/bin:/sbin:/bin\n");
    let _ = writeln!(
        s,
        "tail -n 200 {} | grep -E 'upstream|connect\\(\\)' >/dev/null 2>&1",
        q(&lab.error_log_path())
    );
    s.push_str("ss -tulnp >/dev/null 2>&1\nss -xlp >/dev/null 2>&1\n");
    for sock in sockets {
        let _ = writeln!(s, "ls -la {} >/dev/null 2>&1", q(sock));
    }
    for i in 0..n {
        let _ = writeln!(
            s,
            "curl -s -o /dev/null --max-time 5 -H 'Host: site{i}.test' http://127.0.0.1:8080/ >/dev/null 2>&1"
        );
    }
    s.push_str(
        "dmesg | grep -i oom >/dev/null 2>&1\ndf -h >/dev/null 2>&1\ndf -i >/dev/null 2>&1\nfree -h >/dev/null 2>&1\niptables -L -n -v >/dev/null 2>&1\nnft list ruleset >/dev/null 2>&1\n",
    );
    let _ = writeln!(
        s,
        "nginx -t -p {}/ -c {} >/dev/null 2>&1\ntrue",
        lab.root().display(),
        q(&lab.nginx_conf())
    );
    s
}

/// Least-squares slope of log(median wall) against log(sites).
fn growth_exponent(rows: &[Row]) -> Option<f64> {
    if rows.len() < 2 {
        return None;
    }
    let pts: Vec<(f64, f64)> = rows
        .iter()
        .map(|r| ((r.sites as f64).ln(), r.agent.median_ms.ln()))
        .collect();
    let k = pts.len() as f64;
    let (sx, sy) = pts.iter().fold((0.0, 0.0), |(a, b), (x, y)| (a + x, b + y));
    let (mx, my) = (sx / k, sy / k);
    let num: f64 = pts.iter().map(|(x, y)| (x - mx) * (y - my)).sum();
    let den: f64 = pts.iter().map(|(x, _)| (x - mx).powi(2)).sum();
    (den > 0.0).then(|| num / den)
}

/// php-fpm holds a socket per pool and nginx a connection per request: 2,000 sites need
/// more than the default 1,024 descriptors. Raised for this process and what it starts.
fn raise_fd_limit() {
    let limit = libc::rlimit {
        rlim_cur: 65_536,
        rlim_max: 65_536,
    };
    // SAFETY: setrlimit with a valid struct.
    unsafe {
        libc::setrlimit(libc::RLIMIT_NOFILE, &limit);
    }
}

/// The TCP backends: one python process in the namespace, killed on drop.
struct MultiPort(Child);

impl MultiPort {
    fn start(
        ip: &Path,
        ns: &str,
        python: &Path,
        script: &Path,
        ports: &[u16],
    ) -> Result<MultiPort, String> {
        std::fs::write(script, MULTI_PORT_PY).map_err(|e| e.to_string())?;
        if ports.is_empty() {
            let child = Command::new("true").spawn().map_err(|e| e.to_string())?;
            return Ok(MultiPort(child));
        }
        let mut child = Command::new(ip)
            .args(["netns", "exec", ns])
            .arg(python)
            .arg(script)
            .args(ports.iter().map(u16::to_string))
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("FAIL scale bench: python backends: {e}"))?;
        let mut line = String::new();
        if let Some(out) = child.stdout.take() {
            use std::io::BufRead;
            let _ = std::io::BufReader::new(out).read_line(&mut line);
        }
        if line.trim() != "ready" {
            let _ = child.kill();
            return Err("FAIL scale bench: the python backends did not start".into());
        }
        Ok(MultiPort(child))
    }
}

impl Drop for MultiPort {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

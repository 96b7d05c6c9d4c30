//! Benchmark: how fast the classifier reads nginx's upstream messages.
//!
//! Run with `cargo bench -p why502-nginx --bench classify`. The lines are every row of
//! testdata/upstream_messages.tsv (the messages nginx's source writes about upstreams, with
//! their levels), repeated to 1,000,000 lines and shuffled by a fixed stride so that no
//! branch predictor learns the order. It prints lines per second and MB/s for
//! `classify_line` alone, and for a whole `read_window` over the same lines written as a log
//! file (parse, time window, classify, keep), best and median of 5. Nothing is asserted: the
//! table's test checks what the classes are; this prints what they cost.

use std::io::Write;
use std::time::{Duration, Instant};

use why502_nginx::errorlog::{classify_line, read_window, WindowLimits};

const LINES: usize = 1_000_000;
const RUNS: usize = 5;

fn main() {
    let table = include_str!("../testdata/upstream_messages.tsv");
    let rows: Vec<(&str, &str)> = table
        .lines()
        .skip(1)
        .filter_map(|l| {
            let f: Vec<&str> = l.split('\t').collect();
            (f.len() >= 4).then(|| (f[2], f[3]))
        })
        .collect();
    // A stride coprime with the row count visits every row in a scrambled order.
    let stride = (1..rows.len())
        .rev()
        .find(|s| gcd(*s, rows.len()) == 1 && *s > rows.len() / 3)
        .unwrap_or(1);
    let lines: Vec<(&str, &str)> = (0..LINES)
        .map(|i| rows[(i * stride) % rows.len()])
        .collect();
    let bytes: usize = lines.iter().map(|(_, m)| m.len()).sum();

    let mut times = Vec::new();
    let mut classified = 0usize;
    for _ in 0..RUNS {
        let t = Instant::now();
        classified = lines
            .iter()
            .filter(|(level, m)| classify_line(level, m).is_some())
            .count();
        times.push(t.elapsed());
    }
    report("classify_line", &mut times, LINES, bytes);
    println!(
        "  {} distinct messages from nginx's source; {classified} of {LINES} lines are upstream failures",
        rows.len()
    );

    // The same lines as a log, stamped inside the window, read the way a run reads it.
    let dir = std::env::temp_dir().join(format!("why502-classify-bench-{}", std::process::id()));
    if std::fs::create_dir_all(&dir).is_err() {
        eprintln!("SKIP read_window: cannot create {}", dir.display());
        return;
    }
    let log = dir.join("error.log");
    let written = (|| -> std::io::Result<u64> {
        let mut f = std::io::BufWriter::new(std::fs::File::create(&log)?);
        for (level, m) in &lines {
            writeln!(f, "2026/11/21 03:00:00 [{level}] 1234#1234: *1 {m}")?;
        }
        f.flush()?;
        Ok(std::fs::metadata(&log)?.len())
    })();
    let Ok(file_bytes) = written else {
        eprintln!("SKIP read_window: cannot write {}", log.display());
        let _ = std::fs::remove_dir_all(&dir);
        return;
    };
    let limits = WindowLimits {
        max_bytes: u64::MAX,
        max_lines: usize::MAX,
        ..WindowLimits::default()
    };
    let mut times = Vec::new();
    let mut kept = 0;
    for _ in 0..RUNS {
        let t = Instant::now();
        match read_window(&log, 0, limits) {
            Ok(w) => kept = w.lines.len(),
            Err(e) => {
                eprintln!("read_window failed: {e}");
                break;
            }
        }
        times.push(t.elapsed());
    }
    report(
        "read_window (parse + window + classify + keep)",
        &mut times,
        LINES,
        file_bytes as usize,
    );
    println!("  kept {kept} lines (upstream failures and reload notices)");
    busy_log_one_site(&dir);
    let _ = std::fs::remove_dir_all(&dir);
}

/// A shared log of 50,000 failures of other sites, read for one site's run (`--server-name`):
/// the level and the run's filter skip them before their stamps are parsed.
fn busy_log_one_site(dir: &std::path::Path) {
    const BUSY: usize = 50_000;
    let log = dir.join("busy.log");
    let written = (|| -> std::io::Result<u64> {
        let mut f = std::io::BufWriter::new(std::fs::File::create(&log)?);
        for i in 0..BUSY {
            let s = i % 300;
            writeln!(f, "2026/11/21 03:00:00 [error] 12#12: *{i} connect() to unix:/run/php/other{s}.sock failed (2: No such file or directory) while connecting to upstream, client: 10.0.0.{}, server: other{s}.test, request: \"GET /index.php HTTP/1.1\", upstream: \"fastcgi://unix:/run/php/other{s}.sock:\", host: \"other{s}.test\"", i % 250)?;
        }
        f.flush()?;
        Ok(std::fs::metadata(&log)?.len())
    })();
    let Ok(bytes) = written else {
        eprintln!("SKIP busy log: cannot write {}", log.display());
        return;
    };
    let key = "unix:/run/php/mine.sock";
    let about = |l: &why502_nginx::errorlog::LineRef<'_>| l.message.contains(key);
    {
        let what = "one site's run over a busy shared log";
        let mut times = Vec::new();
        for _ in 0..RUNS {
            let t = Instant::now();
            let r =
                why502_nginx::errorlog::read_window_about(&log, 0, WindowLimits::default(), &about);
            if r.is_err() {
                eprintln!("busy log read failed");
                return;
            }
            times.push(t.elapsed());
        }
        report(what, &mut times, BUSY, bytes as usize);
    }
}

fn report(what: &str, times: &mut [Duration], lines: usize, bytes: usize) {
    if times.is_empty() {
        return;
    }
    times.sort();
    let best = times[0].as_secs_f64();
    let median = times[times.len() / 2].as_secs_f64();
    println!(
        "{what}: {lines} lines, {:.1} MB; best {:.1} ms, median {:.1} ms; {:.2} M lines/s, {:.0} MB/s (median)",
        bytes as f64 / 1e6,
        best * 1e3,
        median * 1e3,
        lines as f64 / median / 1e6,
        bytes as f64 / median / 1e6
    );
}

fn gcd(a: usize, b: usize) -> usize {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}

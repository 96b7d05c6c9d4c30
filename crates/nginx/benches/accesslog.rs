//! Benchmark: an upstream's traffic from a 1 GiB access log.
//!
//! `cargo bench -p why502-nginx --bench accesslog` (`WHY502_BENCH_BIG_MIB=64` for a quick run)
//!
//! Writes a log of seven days ending now (a `$upstream_addr` format, 20 upstreams, 1 in 25
//! requests a 502), then reads the last hour and the last 5 minutes the way a run does, best
//! and median of 5, and prints the bytes read beside the time: the cost follows the window's
//! bytes, not the file's. For scale, `awk` counting the same hour's 502s over the whole file
//! (what an admin would type) runs once.

use std::io::{BufWriter, Write};
use std::process::Command;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use why502_nginx::accesslog::{read_access_window, LogFormat};

const MIB: u64 = 1024 * 1024;
const SPAN: i64 = 7 * 86_400;
const FORMAT: &str = "$remote_addr - $remote_user [$time_local] \"$request\" $status $body_bytes_sent \"$http_referer\" \"$http_user_agent\" $upstream_addr $upstream_status";
const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

fn stamp(t: i64) -> String {
    // UTC, as nginx writes $time_local on a UTC host.
    let days = t.div_euclid(86_400);
    let secs = t.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    format!(
        "{d:02}/{}/{y}:{:02}:{:02}:{:02} +0000",
        MONTHS[(m - 1) as usize],
        secs / 3600,
        secs % 3600 / 60,
        secs % 60
    )
}

fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (if m <= 2 { y + 1 } else { y }, m, d)
}

fn main() {
    let mib: u64 = std::env::var("WHY502_BENCH_BIG_MIB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1024);
    let dir = std::env::temp_dir().join(format!("why502-accesslog-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let path = dir.join("access.log");
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_secs() as i64;
    // The lines are about 124 bytes.
    let line_len = 124u64;
    let lines = mib * MIB / line_len;
    let t0 = Instant::now();
    {
        let mut f =
            BufWriter::with_capacity(1 << 20, std::fs::File::create(&path).expect("create"));
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        for i in 0..lines {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let t = now - SPAN + (i as i64 * SPAN) / lines as i64;
            let up = x % 20;
            let status = if (x >> 16) % 25 == 0 { 502 } else { 200 };
            let _ = writeln!(
                f,
                "10.0.{}.{} - - [{}] \"GET /p/{} HTTP/1.1\" {status} 512 \"-\" \"Mozilla/5.0 (bench)\" 127.0.0.1:{} {status}",
                x % 250,
                (x >> 8) % 250,
                stamp(t),
                x % 100_000,
                9000 + up
            );
        }
        f.flush().expect("flush");
    }
    let size = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
    eprintln!(
        "wrote {:.0} MiB in {:.1} s",
        size as f64 / MIB as f64,
        t0.elapsed().as_secs_f64()
    );
    let format = LogFormat::parse("bench", FORMAT);
    println!(
        "access-log bench ({:.0} MiB over 7 days; 20 upstreams; 1 in 25 requests a 502)",
        size as f64 / MIB as f64
    );
    println!(
        "{:<28} {:>10} {:>10} {:>12} {:>10} {:>8}",
        "window", "best ms", "median ms", "bytes read", "requests", "502s"
    );
    for (label, secs) in [("last hour", 3600), ("last 5 minutes", 300)] {
        let mut times = Vec::new();
        let mut last = None;
        for _ in 0..5 {
            let t = Instant::now();
            let w = read_access_window(&path, &format, now - secs).expect("read");
            times.push(t.elapsed().as_secs_f64() * 1000.0);
            last = Some(w);
        }
        times.sort_by(|a, b| a.total_cmp(b));
        let w = last.expect("a read");
        let up = &w.by_upstream["127.0.0.1:9007"];
        println!(
            "{label:<28} {:>10.1} {:>10.1} {:>12} {:>10} {:>8}",
            times[0], times[2], w.bytes_read, up.requests, up.status_502
        );
    }
    if let Ok(awk) = which("awk") {
        let t = Instant::now();
        let out = Command::new(awk)
            .arg("$14 == \"127.0.0.1:9007\" && $9 == 502 { n++ } END { print n+0 }")
            .arg(&path)
            .output();
        println!(
            "{:<28} {:>10.1}   (the whole file, one run; it counts all 7 days: {})",
            "awk over the file",
            t.elapsed().as_secs_f64() * 1000.0,
            out.map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
                .unwrap_or_default()
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}

fn which(name: &str) -> Result<std::path::PathBuf, ()> {
    ["/usr/bin", "/bin"]
        .iter()
        .map(|d| std::path::Path::new(d).join(name))
        .find(|p| p.exists())
        .ok_or(())
}

//! Benchmark: parse and model big configurations, as a hosting server's are.
//!
//! `cargo bench -p why502-nginx --bench config`
//!
//! Generated in memory: 20,000 `server` blocks with 2 passes each, and one server with 16,000
//! `location { proxy_pass … }`. For each: the parse (`parse_config_text`) and the model
//! (`NginxConfig::from_parsed`, every pass with its effective settings), median of 5, and the
//! passes found. The target (20,000 servers in < 1 s) is printed, not asserted.
//!
//! `WHY502_BENCH_CONF=/etc/nginx/nginx.conf` also parses that file from disk, its includes
//! read as nginx would (a real host's config, or the scale bench's held stack);
//! `WHY502_BENCH_CONF_ONLY=1` parses only that file (to profile it alone),
//! `WHY502_BENCH_CONF_RUNS=N` that many times (default 20).

use std::fmt::Write as _;
use std::path::Path;
use std::time::{Duration, Instant};

use why502_nginx::config::{parse_config, parse_config_text, NginxConfig, ParseLimits};

const RUNS: usize = 5;

fn main() {
    let servers = {
        let mut t = String::from("events {}\nhttp {\n");
        for i in 0..20_000 {
            let _ = writeln!(
                t,
                "  server {{ listen 80; server_name s{i}.example www.s{i}.example; \
                 location / {{ proxy_pass http://127.0.0.1:{}; }} \
                 location ~ \\.php$ {{ fastcgi_pass unix:/run/php/s{i}.sock; include fastcgi_params; }} }}",
                20_000 + i % 50
            );
        }
        t.push_str("}\n");
        t
    };
    let locations = {
        let mut t = String::from("events {}\nhttp {\n  server {\n    listen 80;\n");
        for i in 0..16_000 {
            let _ = writeln!(
                t,
                "    location /l{i}/ {{ proxy_pass http://127.0.0.1:{}; proxy_read_timeout 5s; }}",
                20_000 + i % 50
            );
        }
        t.push_str("  }\n}\n");
        t
    };
    println!("config bench (median of {RUNS})");
    println!(
        "{:<38} {:>9} {:>10} {:>10} {:>8}",
        "", "MiB", "parse ms", "model ms", "passes"
    );
    let mut servers_total = Duration::ZERO;
    let generated = if std::env::var_os("WHY502_BENCH_CONF_ONLY").is_some() {
        Vec::new()
    } else {
        vec![
            ("20,000 servers x 2 passes", &servers),
            ("1 server x 16,000 locations", &locations),
        ]
    };
    for (label, text) in generated {
        let mut parse = Vec::new();
        let mut model = Vec::new();
        let mut passes = 0;
        for _ in 0..RUNS {
            let t = Instant::now();
            let parsed = parse_config_text(
                Path::new("/etc/nginx/nginx.conf"),
                text.as_bytes(),
                Path::new("/etc/nginx"),
                &ParseLimits::default(),
            );
            parse.push(t.elapsed());
            let t = Instant::now();
            let config = NginxConfig::from_parsed(&parsed, Path::new("/usr/share/nginx"));
            model.push(t.elapsed());
            passes = config.passes.len();
        }
        parse.sort();
        model.sort();
        let (p, m) = (parse[RUNS / 2], model[RUNS / 2]);
        if label.starts_with("20,000") {
            servers_total = p + m;
        }
        println!(
            "{label:<38} {:>9.1} {:>10.1} {:>10.1} {:>8}",
            text.len() as f64 / (1024.0 * 1024.0),
            p.as_secs_f64() * 1000.0,
            m.as_secs_f64() * 1000.0,
            passes
        );
    }
    if let Some(conf) = std::env::var_os("WHY502_BENCH_CONF") {
        let conf = Path::new(&conf);
        let prefix = conf.parent().unwrap_or(Path::new("/"));
        let mut parse = Vec::new();
        let mut model = Vec::new();
        let mut shape = (0, 0, 0);
        let runs = std::env::var("WHY502_BENCH_CONF_RUNS")
            .ok()
            .and_then(|n| n.parse().ok())
            .unwrap_or(RUNS * 4);
        for _ in 0..runs {
            let t = Instant::now();
            let parsed = match parse_config(conf, prefix, &ParseLimits::default()) {
                Ok(p) => p,
                Err(e) => {
                    println!("{}: {e}", conf.display());
                    break;
                }
            };
            parse.push(t.elapsed());
            let t = Instant::now();
            let config = NginxConfig::from_parsed(&parsed, Path::new("/usr/share/nginx"));
            model.push(t.elapsed());
            shape = (
                parsed.files.len(),
                config.servers.len(),
                config.passes.len(),
            );
        }
        parse.sort();
        model.sort();
        if let (Some(p), Some(m)) = (parse.get(parse.len() / 2), model.get(model.len() / 2)) {
            println!(
                "{:<38} {:>9} {:>10.2} {:>10.2} {:>8}  ({} files, {} servers)",
                conf.display().to_string(),
                "-",
                p.as_secs_f64() * 1000.0,
                m.as_secs_f64() * 1000.0,
                shape.2,
                shape.0,
                shape.1
            );
        }
    }
    if std::env::var_os("WHY502_BENCH_CONF_ONLY").is_some() {
        return;
    }
    println!(
        "target: 20,000 servers parsed and modelled in < 1 s -> {} ({:.0} ms)",
        if servers_total < Duration::from_secs(1) {
            "MET"
        } else {
            "NOT MET"
        },
        servers_total.as_secs_f64() * 1000.0
    );
}

use super::*;
use std::io::Write;

const SEED_LINE: &str = "2026/11/21 03:12:09 [error] 1234#1234: *567 connect() to unix:/run/php/php8.2-fpm.sock failed (13: Permission denied) while connecting to upstream, client: 10.0.0.5, server: shop.example, request: \"GET / HTTP/1.1\", upstream: \"fastcgi://unix:/run/php/php8.2-fpm.sock:\", host: \"shop.example\"";

/// The window tests use placeholder messages: keep every line.
fn all_lines() -> WindowLimits {
    WindowLimits {
        keep_all: true,
        ..WindowLimits::default()
    }
}

fn epoch(stamp: &str) -> i64 {
    LocalClock::default().parse(stamp).expect("stamp")
}

#[test]
fn parses_the_fields_of_an_upstream_error() {
    let l = parse_line(SEED_LINE, &mut LocalClock::default()).expect("line");
    assert_eq!(l.level, "error");
    assert_eq!(
        l.upstream.as_deref(),
        Some("fastcgi://unix:/run/php/php8.2-fpm.sock:")
    );
    assert_eq!(l.server.as_deref(), Some("shop.example"));
    assert!(l.message.starts_with("connect() to unix:"), "{}", l.message);
}

#[test]
fn rejects_lines_without_a_stamp() {
    let mut c = LocalClock::default();
    for bad in [
        "",
        "garbage",
        "2026/13/40 99:99:99 [error] x",
        "\u{fffd}\u{fffd}",
        "PHP message: continuation",
    ] {
        assert!(parse_line(bad, &mut c).is_none(), "{bad}");
    }
}

#[test]
fn clock_is_consistent_across_the_hour_cache() {
    let a = epoch("2026/11/21 03:00:00");
    assert_eq!(epoch("2026/11/21 03:59:59") - a, 3599);
    assert_eq!(epoch("2026/11/21 04:00:00") - a, 3600);
}

fn write_log(lines: &[String]) -> tempfile::NamedTempFile {
    let mut f = tempfile::NamedTempFile::new().expect("tmp");
    for l in lines {
        writeln!(f, "{l}").expect("write");
    }
    f
}

fn line_at(stamp: &str, msg: &str) -> String {
    format!("{stamp} [error] 1#1: *1 {msg}")
}

#[test]
fn window_keeps_only_lines_since_and_stops_early() {
    // 20k old lines then 3 recent ones: the reader must stop long before the start.
    let mut lines: Vec<String> = (0..20_000)
        .map(|i| line_at("2026/11/20 01:00:00", &format!("old {i}")))
        .collect();
    lines.push(line_at("2026/11/21 03:00:00", "new 1"));
    lines.push("a continuation line without a stamp".to_string());
    lines.push(line_at("2026/11/21 03:00:01", "new 2"));
    lines.push(line_at("2026/11/21 03:00:02", "new 3"));
    let f = write_log(&lines);
    let w = read_window(f.path(), epoch("2026/11/21 02:00:00"), all_lines()).expect("read");
    let msgs: Vec<&str> = w.lines.iter().map(|l| l.message.as_str()).collect();
    // The unstamped line continues the entry above it (see a_multi_line_php_fatal_is_one_entry).
    assert_eq!(
        msgs,
        [
            "new 1 a continuation line without a stamp",
            "new 2",
            "new 3"
        ]
    );
    let size = std::fs::metadata(f.path()).expect("meta").len();
    assert!(
        w.bytes_read < size / 4,
        "read {} of {size} bytes",
        w.bytes_read
    );
}

#[test]
fn long_lines_are_capped_and_keep_their_start() {
    let long = line_at("2026/11/21 03:00:00", &"x".repeat(1_000_000));
    let f = write_log(&[long, line_at("2026/11/21 03:00:01", "after")]);
    let limits = WindowLimits {
        max_line: 4096,
        ..all_lines()
    };
    let w = read_window(f.path(), 0, limits).expect("read");
    assert_eq!(w.lines.len(), 2);
    assert!(w.lines[0].message.len() <= 4096);
    assert_eq!(w.lines[1].message, "after");
}

#[test]
fn byte_cap_truncates() {
    let lines: Vec<String> = (0..50_000)
        .map(|i| line_at("2026/11/21 03:00:00", &format!("m {i}")))
        .collect();
    let f = write_log(&lines);
    let limits = WindowLimits {
        max_bytes: 128 * 1024,
        ..all_lines()
    };
    let w = read_window(f.path(), 0, limits).expect("read");
    assert!(w.truncated);
    // The reader works in 64 KiB blocks: at most one block beyond the bytes it needed.
    assert!(w.bytes_read <= 128 * 1024 + 64 * 1024);
    assert_eq!(w.lines.last().map(|l| l.message.as_str()), Some("m 49999"));
}

#[test]
fn binary_garbage_and_devices_do_not_break_it() {
    let mut f = tempfile::NamedTempFile::new().expect("tmp");
    let garbage: Vec<u8> = (0..200_000u32)
        .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
        .collect();
    f.write_all(&garbage).expect("write");
    writeln!(f, "\n{}", line_at("2026/11/21 03:00:00", "real")).expect("write");
    let w = read_window(f.path(), 0, all_lines()).expect("read");
    assert_eq!(w.lines.last().map(|l| l.message.as_str()), Some("real"));
    assert!(matches!(
        read_window(Path::new("/dev/zero"), 0, all_lines()),
        Err(ReadError::NotRegular { .. })
    ));
}

#[test]
fn classifies_the_seed_lines() {
    use UpstreamErrorClass::*;
    let cases = [
        ("connect() to unix:/var/run/php/php8.4-fpm.sock failed (2: No such file or directory)", NoSuchFile),
        ("connect() failed (111: Connection refused) while connecting to upstream", ConnectionRefused),
        ("upstream timed out (110: Connection timed out) while reading response header from upstream", ReadTimeout),
        ("no live upstreams while connecting to upstream", NoLiveUpstreams),
        ("connect() to unix:/run/php/php8.4-fpm.sock failed (11: Resource temporarily unavailable)", ListenQueueFull),
        ("recv() failed (104: Connection reset by peer) while reading response header from upstream", Reset),
        ("upstream sent too big header while reading response header from upstream", TooBigHeader),
        ("SSL_do_handshake() failed (SSL: error:0A000086) while SSL handshaking to upstream", Tls),
        ("upstream SSL certificate verify error: (18:self-signed certificate)", Tls),
        ("connect() to unix:/run/php/php8.2-fpm.sock failed (13: Permission denied) while connecting to upstream", PermissionDenied),
        ("connect() failed (110: Connection timed out) while connecting to upstream", ConnectTimeout),
        ("backend.internal could not be resolved (3: Host not found)", Dns),
        ("FastCGI sent in stderr: \"Primary script unknown\" while reading response header from upstream", PrimaryScriptUnknown),
        ("open() \"/var/lib/nginx/proxy/1/00/0000000001\" failed (13: Permission denied) while reading upstream, client: 10.0.0.5, server: a, request: \"GET /big HTTP/1.1\", upstream: \"http://127.0.0.1:8000/big\"", TempFile),
        ("open() \"/var/lib/nginx/proxy/1/00/0000000001\" failed (2: No such file or directory) while reading upstream", TempFile),
        ("pwritev() \"/var/lib/nginx/proxy/2/00/0000000002\" failed (28: No space left on device) while reading upstream", TempFileNoSpace),
        ("connect() to unix:/run/php/x.sock failed (13: Permission denied) while connecting to upstream", PermissionDenied),
        ("upstream prematurely closed connection while reading response header from upstream", Reset),
        ("upstream sent no valid HTTP/1.0 header while reading response header from upstream", InvalidResponse),
        // Seed 000's variants.
        ("recv() failed (104: Connection reset by peer) while reading response header", Reset),
        ("upstream prematurely closed keepalive connection", Reset),
        ("FastCGI sent too big header", TooBigHeader),
        ("upstream sent invalid header: \"\\x00garbage\" while reading response header from upstream", InvalidResponse),
    ];
    for (msg, want) in cases {
        assert_eq!(classify(msg), Some(want), "{msg}");
    }
    assert_eq!(
        classify("signal 1 (SIGHUP) received from 1, reconfiguring"),
        None
    );
}

fn write_gz(path: &Path, lines: &[String]) {
    let f = std::fs::File::create(path).expect("create gz");
    let mut enc = flate2::write::GzEncoder::new(f, flate2::Compression::fast());
    for l in lines {
        writeln!(enc, "{l}").expect("write gz");
    }
    enc.finish().expect("finish gz");
}

#[test]
fn follows_rotation_into_plain_and_gzip_files_until_the_window_starts() {
    let dir = tempfile::tempdir().expect("tmp");
    let log = dir.path().join("error.log");
    let at = |h: u32, m: &str| line_at(&format!("2026/11/21 {h:02}:00:00"), m);
    std::fs::write(
        &log,
        format!("{}\n{}\n", at(10, "current 1"), at(11, "current 2")),
    )
    .expect("write");
    std::fs::write(
        dir.path().join("error.log.1"),
        format!("{}\n", at(8, "rotated 1")),
    )
    .expect("write");
    write_gz(
        &dir.path().join("error.log.2.gz"),
        &[at(5, "too old"), at(7, "gz in window")],
    );
    // Entirely before the window: must not even be opened.
    write_gz(&dir.path().join("error.log.3.gz"), &[at(1, "ancient")]);

    let w = read_window(&log, epoch("2026/11/21 06:00:00"), all_lines()).expect("read");
    let msgs: Vec<&str> = w.lines.iter().map(|l| l.message.as_str()).collect();
    assert_eq!(
        msgs,
        ["gz in window", "rotated 1", "current 1", "current 2"]
    );
    let rotated: Vec<String> = w
        .rotated
        .iter()
        .map(|p| {
            p.file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default()
        })
        .collect();
    assert_eq!(rotated, ["error.log.1", "error.log.2.gz"]);
}

#[test]
fn rotation_is_not_read_when_the_current_file_covers_the_window() {
    let dir = tempfile::tempdir().expect("tmp");
    let log = dir.path().join("error.log");
    std::fs::write(
        &log,
        format!(
            "{}\n{}\n",
            line_at("2026/11/21 01:00:00", "old"),
            line_at("2026/11/21 10:00:00", "new")
        ),
    )
    .expect("write");
    std::fs::write(
        dir.path().join("error.log.1"),
        format!("{}\n", line_at("2026/11/20 01:00:00", "rotated")),
    )
    .expect("write");
    let w = read_window(&log, epoch("2026/11/21 09:00:00"), all_lines()).expect("read");
    assert!(w.rotated.is_empty());
    assert_eq!(w.lines.len(), 1);
}

#[test]
fn a_file_without_nginx_lines_is_told_apart_from_an_empty_window() {
    let garbage = write_log(&["\u{1}\u{2} not a log".to_string(), "x".repeat(5000)]);
    let w = read_window(garbage.path(), 0, all_lines()).expect("read");
    assert!(w.bytes_read > 0);
    assert_eq!(w.parsed_lines, 0);
    let old_only = write_log(&[line_at("2020/01/01 00:00:00", "old")]);
    let w = read_window(old_only.path(), epoch("2026/11/21 00:00:00"), all_lines()).expect("read");
    assert!(w.lines.is_empty());
    assert_eq!(w.parsed_lines, 1);
}

#[test]
fn client_side_and_warn_lines_are_not_upstream_failures() {
    let cases = [
        ("error", "open() \"/var/www/html/favicon.ico\" failed (2: No such file or directory), client: 10.0.0.5, server: a, request: \"GET /favicon.ico HTTP/1.1\""),
        ("info", "recv() failed (104: Connection reset by peer) while waiting for request, client: 10.0.0.5, server: 0.0.0.0:443"),
        ("info", "SSL_do_handshake() failed (SSL: error:0A00006C:SSL routines::bad key share) while SSL handshaking, client: 10.0.0.5, server: 0.0.0.0:443"),
        ("warn", "an upstream response is buffered to a temporary file /var/cache/nginx/proxy_temp/1/00/0000000001 while reading upstream, client: 10.0.0.5, upstream: \"http://127.0.0.1:8000/big\""),
        ("error", "client intended to send too large body: 10485761 bytes, client: 10.0.0.5"),
    ];
    for (level, msg) in cases {
        assert_eq!(classify_line(level, msg), None, "[{level}] {msg}");
    }
    assert_eq!(
        classify_line("error", "connect() failed (111: Connection refused) while connecting to upstream, client: 1.2.3.4, upstream: \"http://127.0.0.1:8000/\""),
        Some(UpstreamErrorClass::ConnectionRefused)
    );
}

#[test]
fn by_default_the_window_keeps_only_upstream_failures_and_reloads() {
    let lines = vec![
        line_at("2026/11/21 03:00:00", "open() \"/x\" failed (2: No such file or directory), client: 1.2.3.4"),
        "2026/11/21 03:00:01 [notice] 1#1: signal 1 (SIGHUP) received from 99, reconfiguring".to_string(),
        line_at("2026/11/21 03:00:02", "connect() failed (111: Connection refused) while connecting to upstream, client: 1.2.3.4, upstream: \"http://127.0.0.1:8000/\""),
        "2026/11/21 03:00:03 [warn] 1#1: *2 an upstream response is buffered to a temporary file, upstream: \"http://127.0.0.1:8000/\"".to_string(),
    ];
    let f = write_log(&lines);
    let w = read_window(f.path(), 0, WindowLimits::default()).expect("read");
    let kept: Vec<(&str, Option<UpstreamErrorClass>)> = w
        .lines
        .iter()
        .map(|l| (l.level.as_str(), l.class))
        .collect();
    assert_eq!(
        kept,
        [
            ("notice", None),
            ("error", Some(UpstreamErrorClass::ConnectionRefused))
        ]
    );
    assert_eq!(w.parsed_lines, 4);
}

#[test]
fn lines_stamped_in_the_future_are_not_in_the_window() {
    let f = write_log(&[
        line_at("2026/11/21 03:00:00", "past"),
        line_at("2099/01/01 00:00:00", "from a clock that was ahead"),
        line_at("9999/12/31 23:59:59", "far ahead"),
    ]);
    let w = read_window(f.path(), epoch("2026/11/21 02:00:00"), all_lines()).expect("read");
    let msgs: Vec<&str> = w.lines.iter().map(|l| l.message.as_str()).collect();
    assert_eq!(msgs, ["past"]);
    assert_eq!(w.future_lines, 2);
}

#[test]
fn error_log_to_syslog_is_read_back_from_the_syslog_file() {
    let nginx_line = |stamp: &str, msg: &str| line_at(stamp, msg);
    let f = write_log(&[
        format!(
            "2026-11-21T03:00:00.123456+00:00 web-1 nginx: {}",
            nginx_line("2026/11/21 03:00:00", "tagged plainly")
        ),
        format!(
            "Nov 21 03:00:01 web-1 nginx[812]: {}",
            nginx_line("2026/11/21 03:00:01", "tagged with a pid")
        ),
        format!(
            "Nov 21 03:00:02 web-1 sshd[90]: {}",
            nginx_line("2026/11/21 03:00:02", "another program")
        ),
        format!(
            "Nov 21 03:00:03 web-1 web: {}",
            nginx_line("2026/11/21 03:00:03", "another tag")
        ),
    ]);
    let w = read_syslog_window(f.path(), "nginx", epoch("2026/11/21 02:00:00"), all_lines())
        .expect("read");
    let msgs: Vec<&str> = w.lines.iter().map(|l| l.message.as_str()).collect();
    assert_eq!(msgs, ["tagged plainly", "tagged with a pid"]);
    assert_eq!(syslog_tag("server=unix:/dev/log,facility=local7"), "nginx");
    assert_eq!(syslog_tag("server=unix:/dev/log,tag=web"), "web");
}

#[test]
fn class_ids_are_distinct_snake_case_names_of_every_class() {
    let ids: std::collections::HashSet<&str> =
        UpstreamErrorClass::ALL.iter().map(|c| c.id()).collect();
    assert_eq!(ids.len(), UpstreamErrorClass::ALL.len());
    for c in UpstreamErrorClass::ALL {
        let debug = format!("{c:?}");
        // The serde name (`rename_all = "snake_case"`): NoSuchFile -> no_such_file.
        let snake: String = debug
            .chars()
            .enumerate()
            .flat_map(|(i, ch)| {
                let lower = ch.to_ascii_lowercase();
                (ch.is_ascii_uppercase() && i > 0)
                    .then_some('_')
                    .into_iter()
                    .chain([lower])
            })
            .collect();
        assert_eq!(c.id(), snake);
        assert_eq!(known_class(c.id()), Some(c));
    }
}

#[test]
fn resolver_lines_name_their_host() {
    // ngx_http_upstream.c: "%V could not be resolved (%i: %s)" and
    // "no resolver defined to resolve %V", with the request context after a comma.
    let cases = [
        ("backend.internal could not be resolved (3: Host not found), client: 1.2.3.4, server: a", Some("backend.internal")),
        ("api.example.com could not be resolved (110: Operation timed out), client: 1.2.3.4", Some("api.example.com")),
        ("no resolver defined to resolve backend.internal, client: 1.2.3.4, server: a", Some("backend.internal")),
        ("connect() failed (111: Connection refused) while connecting to upstream", None),
    ];
    for (message, name) in cases {
        assert_eq!(resolved_name(message), name, "{message}");
        if name.is_some() {
            assert_eq!(
                classify(message),
                Some(UpstreamErrorClass::Dns),
                "{message}"
            );
        }
    }
}

#[test]
fn php_fatal_errors_are_the_applications_and_warnings_no_failure() {
    let line = |php: &str| {
        format!("FastCGI sent in stderr: \"PHP message: {php}\" while reading response header from upstream, client: 1.2.3.4, server: a, request: \"GET / HTTP/1.1\", upstream: \"fastcgi://unix:/run/php/php8.2-fpm.sock:\"")
    };
    for fatal in [
        "PHP Fatal error:  Uncaught Error: Call to undefined function foo() in /var/www/a.php:3",
        "PHP Fatal error:  Allowed memory size of 134217728 bytes exhausted (tried to allocate 20480 bytes) in /var/www/a.php on line 9",
        "PHP Fatal error:  Maximum execution time of 30 seconds exceeded in /var/www/a.php on line 4",
        "PHP Parse error:  syntax error, unexpected end of file in /var/www/a.php on line 7",
    ] {
        let m = line(fatal);
        assert_eq!(classify(&m), Some(UpstreamErrorClass::AppError), "{m}");
        assert!(php_message(&m).is_some_and(|p| p.starts_with("PHP ")), "{m}");
    }
    for benign in [
        "PHP Warning:  Undefined variable $x in /var/www/a.php on line 3",
        "PHP Notice:  Undefined index: id in /var/www/a.php on line 5",
        "PHP Deprecated:  Creation of dynamic property in /var/www/a.php on line 8",
    ] {
        assert_eq!(classify(&line(benign)), None, "{benign}");
    }
}

/// The class of `UpstreamErrorClass` with this id, for the table test.
fn known_class(id: &str) -> Option<UpstreamErrorClass> {
    UpstreamErrorClass::ALL.into_iter().find(|c| c.id() == id)
}

/// testdata/upstream_messages.tsv: every upstream message nginx writes (from its source,
/// file:line per row), with the class an expert gives it. Rows whose class the classifier
/// has must classify so (PHP warnings, `app_warning`, must not be a failure); rows naming a
/// class it does not have yet are listed, and their count may only shrink.
#[test]
fn the_table_of_nginx_upstream_messages() {
    let text = include_str!("../../testdata/upstream_messages.tsv");
    let mut rows = 0;
    let mut wrong = Vec::new();
    let mut missing_classes: std::collections::BTreeMap<&str, usize> = Default::default();
    for line in text.lines().skip(1).filter(|l| !l.trim().is_empty()) {
        let f: Vec<&str> = line.split('\t').collect();
        assert!(f.len() >= 7, "row with {} fields: {line}", f.len());
        let (source, level, message, table_phase, class) = (f[0], f[2], f[3], f[4], f[5]);
        // The phase and errno the wording quotes are the line's own (a line that names no
        // phase has the table's from nginx's source, which the wording does not claim).
        if phase(message) != "other" && phase(message) != table_phase {
            wrong.push(format!(
                "{source} {message}\n    phase: want {table_phase}, got {}",
                phase(message)
            ));
        }
        assert!(
            source.starts_with("src/") && source.contains(".c:"),
            "{source}"
        );
        rows += 1;
        let got = classify_line(level, message);
        let want = match class {
            // Not failures at all.
            "app_warning"
            | "client_closed"
            | "client_timeout"
            | "cache_miss"
            | "peer_disabled"
            | "script_access_denied"
            | "upgraded_closed"
            | "temp_cleanup" => None,
            c => match known_class(c) {
                Some(k) => Some(k),
                None => {
                    *missing_classes.entry(c).or_default() += 1;
                    continue;
                }
            },
        };
        // info/warn lines are no failures whatever they say.
        let want = want.filter(|_| matches!(level, "error" | "crit" | "alert" | "emerg"));
        if got != want {
            wrong.push(format!(
                "{source} [{level}] {message}\n    want {want:?}, got {got:?}"
            ));
        }
        if let (Some(c), Some((n, text))) = (got, errno(message)) {
            let said = describe_line(c, message);
            if !said.contains(&format!("({n}: {text})")) {
                wrong.push(format!(
                    "{source} {message}\n    wording lacks the errno: {said}"
                ));
            }
        }
    }
    assert!(rows >= 80, "{rows} rows");
    let gaps: usize = missing_classes.values().sum();
    eprintln!(
        "{rows} messages; {} classified as the table says, {} not, {gaps} need classes the classifier lacks: {missing_classes:?}",
        rows - wrong.len() - gaps,
        wrong.len()
    );
    // Every row: the class, the phase and the errno the table gives.
    assert!(
        wrong.is_empty() && missing_classes.is_empty(),
        "{} rows classified unlike the table, {gaps} needing classes the classifier lacks ({missing_classes:?}):\n{}",
        wrong.len(),
        wrong.join("\n")
    );
}

/// A run keeps only the upstream failures its filter asks about, reload notices, and no
/// warn/info line, whatever the filter says; the filter sees the upstream field as a slice of
/// the message.
#[test]
fn a_filtered_window_keeps_only_what_the_run_asks_about() {
    let mine = r#"connect() to unix:/run/php/mine.sock failed (2: No such file or directory) while connecting to upstream, client: 10.0.0.1, server: a.test, request: "GET / HTTP/1.1", upstream: "fastcgi://unix:/run/php/mine.sock:", host: "a.test""#;
    let theirs = r#"connect() to unix:/run/php/theirs.sock failed (2: No such file or directory) while connecting to upstream, client: 10.0.0.1, server: b.test, request: "GET / HTTP/1.1", upstream: "fastcgi://unix:/run/php/theirs.sock:", host: "b.test""#;
    let lines = vec![
        line_at("2026/11/21 03:00:00", mine),
        line_at("2026/11/21 03:00:01", theirs),
        "2026/11/21 03:00:02 [notice] 1#1: signal 1 (SIGHUP) received from 99, reconfiguring"
            .to_string(),
        format!("2026/11/21 03:00:03 [warn] 1#1: *2 {mine}"),
        line_at("2026/11/21 03:00:04", theirs),
        line_at("2026/11/21 03:00:05", mine),
    ];
    let f = write_log(&lines);
    let asked = std::sync::Mutex::new(Vec::new());
    let about = |l: &LineRef<'_>| {
        let field = l.upstream();
        if let (Some(field), Ok(mut asked)) = (field, asked.lock()) {
            asked.push(field.to_string());
        }
        l.message.contains("/run/php/mine.sock")
    };
    let w = read_window_about(f.path(), 0, WindowLimits::default(), &about).expect("read");
    let kept: Vec<(&str, Option<UpstreamErrorClass>)> = w
        .lines
        .iter()
        .map(|l| (l.stamp.as_str(), l.class))
        .collect();
    assert_eq!(
        kept,
        [
            ("2026/11/21 03:00:00", Some(UpstreamErrorClass::NoSuchFile)),
            ("2026/11/21 03:00:02", None),
            ("2026/11/21 03:00:05", Some(UpstreamErrorClass::NoSuchFile)),
        ]
    );
    // The filter was asked about the four error lines only (not the notice or the warn).
    let asked = asked.into_inner().expect("lock");
    assert_eq!(asked.len(), 4, "{asked:?}");
    assert!(asked
        .iter()
        .all(|f| f.starts_with("fastcgi://unix:/run/php/")));
    // The unfiltered reader keeps every upstream failure.
    let all = read_window(f.path(), 0, WindowLimits::default()).expect("read");
    assert_eq!(all.lines.len(), 5);
}

/// docs/report.md names every class id the report's `classes[].class` can hold.
#[test]
fn the_report_docs_list_every_class() {
    let docs = include_str!("../../../../docs/report.md");
    for c in UpstreamErrorClass::ALL {
        assert!(
            docs.contains(&format!("`{}`", c.id())),
            "docs/report.md does not list the class {}",
            c.id()
        );
    }
}

/// nginx writes FastCGI stderr as PHP sent it, newlines included: a fatal error's stack trace
/// puts the `upstream:` field lines below the stamp. The reader joins the entry, so the line
/// is classified, attributed and quoted whole.
#[test]
fn a_multi_line_php_fatal_is_one_entry() {
    let lines = vec![
        line_at("2026/11/21 03:00:00", "connect() to unix:/run/php/other.sock failed (111: Connection refused) while connecting to upstream, client: 10.0.0.1, server: b, request: \"GET / HTTP/1.1\", upstream: \"fastcgi://unix:/run/php/other.sock:\", host: \"b\""),
        line_at("2026/11/21 03:00:01", "FastCGI sent in stderr: \"PHP message: PHP Fatal error:  Uncaught Error: Call to undefined function nope() in /var/www/index.php:1"),
        "Stack trace:".to_string(),
        "#0 {main}".to_string(),
        "  thrown in /var/www/index.php on line 1\" while reading response header from upstream, client: 10.0.0.1, server: a, request: \"GET / HTTP/1.1\", upstream: \"fastcgi://unix:/run/php/x.sock:\", host: \"a\"".to_string(),
        line_at("2026/11/21 03:00:02", "upstream timed out (110: Connection timed out) while reading response header from upstream, client: 10.0.0.1, server: a, request: \"GET / HTTP/1.1\", upstream: \"fastcgi://unix:/run/php/x.sock:\", host: \"a\""),
    ];
    let f = write_log(&lines);
    let w = read_window(f.path(), 0, WindowLimits::default()).expect("read");
    let got: Vec<(Option<UpstreamErrorClass>, Option<&str>)> = w
        .lines
        .iter()
        .map(|l| (l.class, l.upstream.as_deref()))
        .collect();
    assert_eq!(
        got,
        [
            (
                Some(UpstreamErrorClass::ConnectionRefused),
                Some("fastcgi://unix:/run/php/other.sock:")
            ),
            (
                Some(UpstreamErrorClass::AppError),
                Some("fastcgi://unix:/run/php/x.sock:")
            ),
            (
                Some(UpstreamErrorClass::ReadTimeout),
                Some("fastcgi://unix:/run/php/x.sock:")
            ),
        ]
    );
    let php = php_message(&w.lines[1].message).expect("the PHP message");
    assert!(
        php.starts_with("PHP Fatal error:  Uncaught Error: Call to undefined function nope()")
            && php.contains("Stack trace: #0 {main}"),
        "{php}"
    );
}

/// Other sites' lines are skipped before their stamps are parsed (one in SAMPLE_EVERY is, for
/// its time): the window still starts where it did, a wanted line older than it is not kept,
/// the read stops within a stride of the window's start, and a log of nothing but other
/// sites' lines is still an nginx log.
#[test]
fn other_sites_lines_skipped_unparsed_keep_the_window_and_the_stop() {
    let mine = "connect() to unix:/run/php/mine.sock failed (111: Connection refused) while connecting to upstream, upstream: \"fastcgi://unix:/run/php/mine.sock:\"";
    let theirs = "connect() to unix:/run/php/theirs.sock failed (111: Connection refused) while connecting to upstream, upstream: \"fastcgi://unix:/run/php/theirs.sock:\"";
    let mut lines = Vec::new();
    for _ in 0..5 {
        lines.push(line_at("2026/11/21 02:00:00", mine));
    }
    for _ in 0..10_000 {
        lines.push(line_at("2026/11/21 02:30:00", theirs));
    }
    for _ in 0..100 {
        lines.push(line_at("2026/11/21 03:30:00", theirs));
    }
    lines.push(line_at("2026/11/21 03:59:00", mine));
    let f = write_log(&lines);
    let about = |l: &LineRef<'_>| l.message.contains("/run/php/mine.sock");
    let since = epoch("2026/11/21 03:00:00");
    let w = read_window_about(f.path(), since, WindowLimits::default(), &about).expect("read");
    let kept: Vec<&str> = w.lines.iter().map(|l| l.stamp.as_str()).collect();
    assert_eq!(kept, ["2026/11/21 03:59:00"]);
    let line_len = lines[10].len() as u64 + 1;
    // The 101 lines in the window, and at most a stride and a block beyond them.
    assert!(
        w.bytes_read < (101 + 32) * line_len + 64 * 1024,
        "read {} bytes",
        w.bytes_read
    );
    let only_theirs = write_log(&lines[5..40]);
    let w = read_window_about(only_theirs.path(), since, WindowLimits::default(), &about)
        .expect("read");
    assert!(w.lines.is_empty());
    assert!(
        w.parsed_lines > 0,
        "a log of other sites' lines is an nginx log"
    );
}

/// The screen asks the filter about the message, as the line-by-line check does: a filter
/// that reads the message's start (a resolver line's name) sees the same text.
#[test]
fn the_screen_sees_the_message_as_the_filter_always_did() {
    let lines = vec![
        line_at("2026/11/21 03:00:00", "no resolver defined to resolve backend.internal, client: 10.0.0.1, server: a.test, request: \"GET / HTTP/1.1\", host: \"a.test\""),
        "2026/11/21 03:00:01 [error] 7#7: backend.internal could not be resolved (3: Host not found)".to_string(),
    ];
    let f = write_log(&lines);
    let about = |l: &LineRef<'_>| resolved_name(l.message).is_some_and(|n| n == "backend.internal");
    let w = read_window_about(f.path(), 0, WindowLimits::default(), &about).expect("read");
    assert_eq!(w.lines.len(), 2, "{:?}", w.lines);
}

/// One site's view of a busy shared log: the screened read (blocks without the site's
/// address or a reload notice skipped) keeps exactly what the line-by-line read keeps.
#[test]
fn a_screened_window_keeps_what_the_unscreened_window_keeps() {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs() as i64;
    let stamp = |t: i64| why502_host::civil::local_stamp(t).expect("stamp");
    let ours = "unix:/run/php/site7.sock";
    let mut lines = Vec::new();
    for i in 0..40_000i64 {
        let t = now - 3000 + i * 3000 / 40_000;
        let sock = if i % 9_973 == 0 {
            ours.to_string()
        } else {
            format!("unix:/run/php/gone-{}.sock", i % 997)
        };
        lines.push(line_at(
            &stamp(t),
            &format!("connect() to {sock} failed (2: No such file or directory) while connecting to upstream, client: 10.0.0.9, server: s.test, request: \"GET / HTTP/1.1\", upstream: \"fastcgi://{sock}:\", host: \"s.test\""),
        ));
        if i == 25_000 {
            lines.push(format!(
                "{} [notice] 700#700: signal 1 (SIGHUP) received from 1, reconfiguring",
                stamp(t)
            ));
        }
    }
    let log = write_log(&lines);
    let about = |l: &LineRef<'_>| l.message.contains(ours);
    let needles = [ours.to_string()];
    for since in [now - 3600, now - 1000, now - 10] {
        let full =
            read_window_about(log.path(), since, WindowLimits::default(), &about).expect("read");
        let screened = read_window_screened(
            log.path(),
            since,
            WindowLimits::default(),
            &about,
            Some(&needles),
        )
        .expect("read");
        assert_eq!(screened.lines, full.lines, "since now-{}", now - since);
        assert!(screened.parsed_lines > 0);
    }
    let full =
        read_window_about(log.path(), now - 3600, WindowLimits::default(), &about).expect("read");
    assert_eq!(full.lines.len(), 5 + 1, "{:?}", full.lines);
    assert!(full.lines.iter().any(|l| is_reload_notice(&l.message)));
}

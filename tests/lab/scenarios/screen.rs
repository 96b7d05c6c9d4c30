//! The text report in a real terminal (a pty from util-linux `script`, 80 columns), on a
//! broken stack whose backend accepts and never answers, so the run takes seconds: the
//! progress line appears on stderr and is erased before the report; no line of the report is
//! wider than 80 columns; the last line names the cause and the site. Piped, the same run
//! prints no progress line and no escape code.

use std::process::Command;

use crate::harness::{agent_bin, find_program, tcp_addr, Lab, Misbehaviour};

#[test]
fn lab_screen_in_an_80_column_terminal() {
    let Some(mut lab) = Lab::new("screen-80-columns") else {
        return;
    };
    let upstream = tcp_addr("127.0.0.1", 8000);
    lab.start_misbehaving_backend(Misbehaviour::Tarpit, "127.0.0.1", 8000);
    lab.start_nginx(&lab.proxy_location_with(&upstream, &["proxy_read_timeout 1s;"]));
    lab.prove_status(504, "upstream timed out");

    let script = find_program("script").expect("util-linux script");
    let ip = find_program("ip").expect("iproute2 ip");
    // Inside the pty: 80 columns, then the agent in the lab's namespace (argv spelled out;
    // `script -c` takes one command line, so every part of it is ours, not the user's).
    let command = format!(
        "stty cols 80 rows 50; {} netns exec {} {} --nginx-conf {} --timeout 3s",
        ip.display(),
        lab.netns_name(),
        agent_bin().display(),
        lab.nginx_conf_arg()
    );
    let out = Command::new(script)
        .args(["-qec", &command, "/dev/null"])
        .output()
        .expect("run script");
    let text = String::from_utf8_lossy(&out.stdout).replace("\r\n", "\n");
    assert!(
        text.contains("upstreams walked") || text.contains("reading nginx's config"),
        "no progress line in a terminal:\n{text}"
    );
    // The report after the last erase of the progress line.
    let report = text.rsplit("\r\x1b[K").next().unwrap_or(&text);
    let plain = strip_ansi(report);
    for l in plain.lines() {
        assert!(
            l.chars().count() <= 80 || !l.trim_start().contains(' '),
            "a {}-column line in an 80-column terminal:\n{l}\n---\n{plain}",
            l.chars().count()
        );
    }
    let last = plain
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or_default();
    assert!(
        last.contains("upstream_timeout") && last.contains("lab.test"),
        "the last line names no cause and site: {last}\n---\n{plain}"
    );

    // Piped: no progress line, no colour.
    let piped = lab.run_agent(&["--nginx-conf", &lab.nginx_conf_arg(), "--timeout", "3s"]);
    assert!(
        !piped.stderr.contains("upstreams walked"),
        "{}",
        piped.stderr
    );
    assert!(!piped.stdout.contains('\x1b') && !piped.stderr.contains('\x1b'));
    // Unless asked for.
    let coloured = lab.run_agent(&[
        "--nginx-conf",
        &lab.nginx_conf_arg(),
        "--timeout",
        "3s",
        "--color",
        "always",
    ]);
    assert!(coloured.stdout.contains("\x1b["), "{}", coloured.stdout);
    // -q: the last line alone.
    let quiet = lab.run_agent(&[
        "--nginx-conf",
        &lab.nginx_conf_arg(),
        "--timeout",
        "3s",
        "-q",
    ]);
    assert_eq!(quiet.stdout.lines().count(), 1, "{}", quiet.stdout);
    assert!(
        quiet.stdout.contains("upstream_timeout (lab.test)"),
        "{}",
        quiet.stdout
    );
}

/// The text without ANSI escape sequences (colours, the erase of the progress line).
fn strip_ansi(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\x1b' {
            if chars.peek() == Some(&'[') {
                chars.next();
                for d in chars.by_ref() {
                    if d.is_ascii_alphabetic() {
                        break;
                    }
                }
            }
            continue;
        }
        if c != '\r' {
            out.push(c);
        }
    }
    out
}

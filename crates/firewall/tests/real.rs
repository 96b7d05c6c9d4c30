//! The real tools on real rules, in a temporary network namespace (never the host's own
//! rules). Needs root, `ip`, `nft` and `iptables`: skipped otherwise, failed when CI=true.

use std::io::Write;
use std::net::IpAddr;
use std::process::Command;
use std::time::Duration;

use why502_firewall::{
    gather_with, suggest_fix, Action, Backend, Family, Gathered, IptablesBackend, Packet,
    PathVerdict,
};

fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| matches!(v.to_ascii_lowercase().as_str(), "true" | "1"))
}

/// `Some(reason)` when this host cannot run the test.
fn missing_requirement() -> Option<String> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Some("must run as root (network namespaces, netfilter rules)".into());
    }
    for tool in ["ip", "nft", "iptables", "iptables-save", "setpriv"] {
        let found = ["/usr/sbin", "/sbin", "/usr/bin", "/bin"]
            .iter()
            .any(|d| std::path::Path::new(d).join(tool).is_file());
        if !found {
            return Some(format!("`{tool}` not installed"));
        }
    }
    None
}

/// Skip (visibly) or, in CI, fail.
fn skip_or_fail(test: &str) -> bool {
    match missing_requirement() {
        None => false,
        Some(reason) => {
            assert!(!in_ci(), "{test} cannot run in CI: {reason}");
            let _ = writeln!(std::io::stderr(), "SKIP {test}: {reason}");
            true
        }
    }
}

/// A scratch network namespace, deleted on drop.
struct Netns(String);

impl Netns {
    fn new(tag: &str) -> Netns {
        let name = format!("why502-fwtest-{tag}-{}", std::process::id());
        sh(&["ip", "netns", "add", &name]);
        let ns = Netns(name);
        ns.exec(&["ip", "link", "set", "lo", "up"]);
        ns
    }

    fn exec(&self, argv: &[&str]) -> String {
        let mut full = vec!["ip", "netns", "exec", &self.0];
        full.extend_from_slice(argv);
        sh(&full)
    }

    fn prefix(&self) -> [&str; 4] {
        ["ip", "netns", "exec", &self.0]
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

/// Run argv (no shell) and return stdout; panic with stderr on failure.
fn sh(argv: &[&str]) -> String {
    let out = Command::new(argv[0])
        .args(&argv[1..])
        .output()
        .expect("spawn");
    assert!(
        out.status.success(),
        "{argv:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The handle nft prints for the rule whose text starts with `text`.
fn handle_of(listing: &str, text: &str) -> u64 {
    listing
        .lines()
        .map(str::trim)
        .find(|l| l.starts_with(text))
        .and_then(|l| l.rsplit("# handle ").next())
        .and_then(|h| h.trim().parse().ok())
        .unwrap_or_else(|| panic!("no rule `{text}` in:\n{listing}"))
}

fn local(port: u16) -> Packet {
    let lo: IpAddr = "127.0.0.1".parse().unwrap();
    Packet::tcp(lo, lo, port, true)
}

#[tokio::test]
async fn real_nft_and_iptables_rules_in_a_netns_are_named() {
    if skip_or_fail("real_nft_and_iptables_rules_in_a_netns_are_named") {
        return;
    }
    let ns = Netns::new("rules");
    let mut file = tempfile::NamedTempFile::new().unwrap();
    write!(
        file,
        "table inet why502 {{\n\
         \tchain output {{\n\
         \t\ttype filter hook output priority filter; policy accept;\n\
         \t\ttcp dport 9999 reject\n\
         \t\ttcp dport 8080 counter reject with tcp reset\n\
         \t}}\n\
         }}\n"
    )
    .unwrap();
    ns.exec(&["nft", "-f", file.path().to_str().unwrap()]);
    for rule in [
        "-A OUTPUT -p tcp --dport 9002 -j ACCEPT",
        "-A OUTPUT -p tcp --dport 9002 -j DROP",
        "-A OUTPUT -p tcp -m multiport --dports 9001,9005 -m comment --comment one-of-two -j DROP",
    ] {
        let mut argv = vec!["iptables"];
        argv.extend(rule.split(' '));
        ns.exec(&argv);
    }

    let snap = gather_with(&ns.prefix(), Duration::from_secs(10)).await;
    assert!(matches!(snap.nft, Gathered::Read(_)), "{:?}", snap.nft);
    let v4 = snap.iptables[0]
        .result
        .as_read()
        .expect("iptables-save read");
    assert_eq!(v4.backend, Some(IptablesBackend::Nft));

    // The nft reject, named by table, chain and the handle nft itself prints.
    let listing = ns.exec(&["nft", "-a", "list", "chain", "inet", "why502", "output"]);
    let v = snap.evaluate(&local(8080));
    let PathVerdict::Blocked { rule, action, .. } = &v else {
        panic!("expected Blocked, got {v:#?}")
    };
    assert_eq!(*action, Action::Reject);
    assert_eq!(
        (rule.backend, rule.family),
        (Backend::Nftables, Family::Inet)
    );
    assert_eq!(
        (rule.table.as_str(), rule.chain.as_str()),
        ("why502", "output")
    );
    assert_eq!(rule.handle, Some(handle_of(&listing, "tcp dport 8080")));
    assert!(
        rule.text.starts_with("tcp dport 8080 counter packets"),
        "{}",
        rule.text
    );
    let fix = suggest_fix(&v, &local(8080)).unwrap();
    assert!(
        fix.starts_with(&format!(
            "nft delete rule inet why502 output handle {}",
            rule.handle.unwrap()
        )),
        "{fix}"
    );

    // The iptables drop of one of two backends, from iptables-save, with its nft handle.
    let ipt_listing = ns.exec(&["nft", "-a", "list", "chain", "ip", "filter", "OUTPUT"]);
    let v = snap.evaluate(&local(9001));
    let PathVerdict::Blocked { rule, action, .. } = &v else {
        panic!("expected Blocked, got {v:#?}")
    };
    assert_eq!(*action, Action::Drop);
    assert_eq!(rule.backend, Backend::Iptables);
    assert_eq!(
        (rule.table.as_str(), rule.chain.as_str(), rule.position),
        ("filter", "OUTPUT", Some(3))
    );
    assert_eq!(
        rule.handle,
        Some(handle_of(&ipt_listing, "meta l4proto tcp"))
    );
    assert!(rule.text.contains("--dports 9001,9005"), "{}", rule.text);
    assert_eq!(
        suggest_fix(&v, &local(9001)).unwrap().split("   #").next(),
        Some("iptables -D OUTPUT 3")
    );

    // The other backend, the accept-first port and the other-port reject: not blamed.
    for port in [9000, 9002] {
        let v = snap.evaluate(&local(port));
        assert!(matches!(v, PathVerdict::Passed { .. }), "{port}: {v:#?}");
    }
}

#[tokio::test]
async fn without_privileges_every_source_is_unknown_never_passed() {
    if skip_or_fail("without_privileges_every_source_is_unknown_never_passed") {
        return;
    }
    // The real tools as nobody: the exact errors a non-root run gets.
    let prefix = [
        "setpriv",
        "--reuid=65534",
        "--regid=65534",
        "--clear-groups",
    ];
    let snap = gather_with(&prefix, Duration::from_secs(10)).await;
    let Gathered::Unavailable { reason, fix } = &snap.nft else {
        panic!("nft readable as nobody?")
    };
    assert!(reason.contains("not permitted"), "{reason}");
    assert_eq!(fix, "run as root / CAP_NET_ADMIN");
    assert!(snap
        .iptables
        .iter()
        .all(|s| matches!(&s.result, Gathered::Unavailable { reason, .. } if reason.contains("not permitted"))));
    let v = snap.evaluate(&local(8080));
    let PathVerdict::Unknown { reasons, .. } = &v else {
        panic!("expected Unknown, got {v:#?}")
    };
    assert!(
        reasons.iter().any(|r| r.contains("nftables ruleset")),
        "{reasons:?}"
    );
}

#[tokio::test]
async fn legacy_tables_next_to_iptables_nft_are_read_too() {
    if skip_or_fail("legacy_tables_next_to_iptables_nft_are_read_too") {
        return;
    }
    let has_legacy = std::path::Path::new("/usr/sbin/iptables-legacy").is_file();
    if !has_legacy {
        assert!(!in_ci(), "iptables-legacy not installed");
        let _ = writeln!(
            std::io::stderr(),
            "SKIP legacy test: iptables-legacy not installed"
        );
        return;
    }
    let ns = Netns::new("legacy");
    ns.exec(&[
        "iptables-legacy",
        "-A",
        "OUTPUT",
        "-p",
        "tcp",
        "--dport",
        "8080",
        "-j",
        "REJECT",
    ]);
    let snap = gather_with(&ns.prefix(), Duration::from_secs(10)).await;
    assert!(
        snap.iptables
            .iter()
            .any(|s| s.command == "iptables-legacy-save"),
        "{:?}",
        snap.iptables.iter().map(|s| &s.command).collect::<Vec<_>>()
    );
    let v = snap.evaluate(&local(8080));
    let PathVerdict::Blocked { rule, .. } = &v else {
        panic!("expected Blocked, got {v:#?}")
    };
    assert_eq!(rule.tool, "iptables-legacy");
    assert!(suggest_fix(&v, &local(8080))
        .unwrap()
        .starts_with("iptables-legacy -D OUTPUT 1"));
}

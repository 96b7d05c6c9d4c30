//! How command failures become "unavailable, with the reason and the fix".

use std::time::Duration;

use super::{checked, dump_not_needed, Gathered};
use crate::nft::NftRuleset;
use crate::verdict::Family;

fn unavailable(g: Gathered<()>) -> (String, String) {
    match g {
        Gathered::Unavailable { reason, fix } => (reason, fix),
        Gathered::Read(()) => panic!("expected Unavailable"),
    }
}

#[tokio::test]
async fn a_missing_tool_says_not_installed() {
    let out = why502_host::run(&["/nonexistent/why502/nft"], Duration::from_secs(5), 100).await;
    let (reason, fix) = unavailable(checked::<()>("nft", out).map(|_| ()).unwrap_err());
    assert_eq!(reason, "nft not installed");
    assert!(fix.contains("nftables"), "{fix}");
}

#[tokio::test]
async fn permission_errors_say_run_as_root() {
    // The exact stderr `nft` prints without CAP_NET_ADMIN (captured with setpriv as nobody).
    let out = why502_host::run(
        &["sh", "-c", "echo 'netlink: Error: cache initialization failed: Operation not permitted' >&2; exit 1"],
        Duration::from_secs(5),
        4096,
    )
    .await;
    let (reason, fix) = unavailable(checked::<()>("nft", out).map(|_| ()).unwrap_err());
    assert!(
        reason.contains("not permitted") && reason.contains("cache initialization"),
        "{reason}"
    );
    assert_eq!(fix, "run as root / CAP_NET_ADMIN");
}

#[tokio::test]
async fn other_failures_and_timeouts_keep_their_reason() {
    let out = why502_host::run(
        &["sh", "-c", "echo boom >&2; exit 2"],
        Duration::from_secs(5),
        4096,
    )
    .await;
    let (reason, _) = unavailable(checked::<()>("iptables-save", out).map(|_| ()).unwrap_err());
    assert_eq!(reason, "iptables-save exited with Some(2): boom");
    let out = why502_host::run(&["sleep", "5"], Duration::from_millis(100), 10).await;
    let (reason, _) = unavailable(checked::<()>("nft", out).map(|_| ()).unwrap_err());
    assert!(reason.contains("did not finish"), "{reason}");
}

fn ruleset(tables: &[(&str, &str)]) -> NftRuleset {
    let items: Vec<String> = tables
        .iter()
        .enumerate()
        .map(|(i, (family, name))| {
            format!(r#"{{"table": {{"family": "{family}", "name": "{name}", "handle": {i}}}}}"#)
        })
        .collect();
    let json = format!(
        r#"{{"nftables": [{{"metainfo": {{"version": "1.0.6", "json_schema_version": 1}}}}{}{}]}}"#,
        if items.is_empty() { "" } else { ", " },
        items.join(", ")
    );
    NftRuleset::from_json(&json).expect("fixture parses")
}

#[test]
fn iptables_save_is_skipped_only_when_it_could_print_nothing() {
    let none: &[String] = &[];
    let filter = ["filter".to_string()];
    let names = "/proc/net/ip_tables_names";
    // Only an inet table (nftables' own) and no legacy tables: nothing for iptables-save.
    let inet = ruleset(&[("inet", "filter")]);
    let note = dump_not_needed(Some(&inet), Family::Ip, names, Some(none));
    assert!(
        note.as_deref()
            .is_some_and(|n| n.starts_with("iptables-save not run") && n.contains(names)),
        "{note:?}"
    );
    let ip6 = dump_not_needed(Some(&inet), Family::Ip6, names, Some(none));
    assert!(
        ip6.as_deref()
            .is_some_and(|n| n.starts_with("ip6tables-save not run")),
        "{ip6:?}"
    );
    // An `ip` table is where iptables-nft keeps its rules.
    let nft_ip = ruleset(&[("inet", "filter"), ("ip", "filter")]);
    assert_eq!(
        dump_not_needed(Some(&nft_ip), Family::Ip, names, Some(none)),
        None
    );
    assert!(dump_not_needed(Some(&nft_ip), Family::Ip6, names, Some(none)).is_some());
    // Legacy tables loaded, or the kernel's list unreadable, or nft not read: run it.
    assert_eq!(
        dump_not_needed(Some(&inet), Family::Ip, names, Some(&filter)),
        None
    );
    assert_eq!(dump_not_needed(Some(&inet), Family::Ip, names, None), None);
    assert_eq!(dump_not_needed(None, Family::Ip, names, Some(none)), None);
    // An empty ruleset (nothing at all) skips both.
    let empty = ruleset(&[]);
    assert!(dump_not_needed(Some(&empty), Family::Ip, names, Some(none)).is_some());
}

/// In a network namespace of its own (this thread's, made by unshare), the kernel's table
/// count is 0, then follows the tables nft adds there, and agrees with `nft list tables`.
/// Needs root and nft; with CI=true their absence fails the test instead of skipping it.
#[test]
fn the_kernels_table_count_follows_nft_in_a_fresh_namespace() {
    let nft = super::locate("nft");
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    if !root || !std::path::Path::new(&nft).is_file() {
        let why = "needs root and nft";
        assert!(std::env::var("CI").as_deref() != Ok("true"), "{why}");
        eprintln!("SKIP the_kernels_table_count_follows_nft_in_a_fresh_namespace: {why}");
        return;
    }
    let worker = std::thread::spawn(move || {
        // SAFETY: unshare affects this thread only (CLONE_NEWNET moves the calling task);
        // children it spawns inherit the namespace, which dies with the thread.
        if unsafe { libc::unshare(libc::CLONE_NEWNET) } != 0 {
            return Err(format!("unshare: {}", std::io::Error::last_os_error()));
        }
        let nft_cmd = |args: &[&str]| -> Result<String, String> {
            let out = std::process::Command::new(&nft)
                .args(args)
                .output()
                .map_err(|e| format!("nft: {e}"))?;
            if !out.status.success() {
                return Err(format!(
                    "nft {args:?}: {}",
                    String::from_utf8_lossy(&out.stderr)
                ));
            }
            Ok(String::from_utf8_lossy(&out.stdout).into_owned())
        };
        let mut seen = vec![super::nft_table_count().map_err(|e| e.to_string())?];
        nft_cmd(&["add", "table", "inet", "why502_a"])?;
        nft_cmd(&["add", "table", "ip6", "why502_b"])?;
        nft_cmd(&["add", "chain", "ip6", "why502_b", "c"])?;
        seen.push(super::nft_table_count().map_err(|e| e.to_string())?);
        let listed = nft_cmd(&["list", "tables"])?
            .lines()
            .filter(|l| l.starts_with("table "))
            .count();
        Ok((seen, listed))
    });
    let (seen, listed) = worker
        .join()
        .expect("the namespace thread panicked")
        .expect("the namespace thread");
    assert_eq!(seen, vec![0, 2]);
    assert_eq!(listed, 2);
}

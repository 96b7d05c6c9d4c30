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

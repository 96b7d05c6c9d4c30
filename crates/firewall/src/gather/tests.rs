//! How command failures become "unavailable, with the reason and the fix".

use std::time::Duration;

use super::{checked, Gathered};

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

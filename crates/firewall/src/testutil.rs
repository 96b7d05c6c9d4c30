//! Test helpers: fixtures captured from the real tools (see tests/fixtures/capture.sh).

use std::net::IpAddr;

use crate::gather::{Gathered, IptablesSource};
use crate::iptables::IptablesRuleset;
use crate::nft::NftRuleset;
use crate::packet::Packet;
use crate::snapshot::FirewallSnapshot;
use crate::verdict::{Action, Family, Hook, PathVerdict, RuleRef};

pub fn fixture(name: &str) -> String {
    let path = format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

pub fn nft(name: &str) -> NftRuleset {
    NftRuleset::from_json(&fixture(&format!("{name}.json")))
        .unwrap()
        .with_listing(&fixture(&format!("{name}.list")))
}

pub fn empty_iptables() -> Vec<IptablesSource> {
    [
        (Family::Ip, "iptables-save"),
        (Family::Ip6, "ip6tables-save"),
    ]
    .into_iter()
    .map(|(family, command)| IptablesSource {
        family,
        command: command.into(),
        result: Gathered::Read(IptablesRuleset::parse("", family).unwrap()),
    })
    .collect()
}

/// The nft ruleset of fixture `name`, and no iptables rules.
pub fn nft_only(name: &str) -> FirewallSnapshot {
    FirewallSnapshot::new(Gathered::Read(nft(name)), empty_iptables())
}

pub fn local(port: u16) -> Packet {
    let lo: IpAddr = "127.0.0.1".parse().unwrap();
    Packet::tcp(lo, lo, port, true)
}

pub fn local6(port: u16) -> Packet {
    let lo: IpAddr = "::1".parse().unwrap();
    Packet::tcp(lo, lo, port, true)
}

pub fn remote(daddr: &str, port: u16) -> Packet {
    Packet::tcp(
        "192.168.0.10".parse().unwrap(),
        daddr.parse().unwrap(),
        port,
        false,
    )
}

#[track_caller]
pub fn blocked(v: &PathVerdict) -> (&RuleRef, Action, Hook) {
    match v {
        PathVerdict::Blocked {
            rule, action, hook, ..
        } => (rule, *action, *hook),
        other => panic!("expected Blocked, got {other:#?}"),
    }
}

#[track_caller]
pub fn assert_passed(v: &PathVerdict) {
    assert!(
        matches!(v, PathVerdict::Passed { .. }),
        "expected Passed, got {v:#?}"
    );
}

#[track_caller]
pub fn unknown(v: &PathVerdict) -> (&[String], &[RuleRef]) {
    match v {
        PathVerdict::Unknown { reasons, rules } => (reasons, rules),
        other => panic!("expected Unknown, got {other:#?}"),
    }
}

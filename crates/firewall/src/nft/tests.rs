//! nftables evaluation on rulesets captured with `nft -j list ruleset` and `nft -a list
//! ruleset` in a scratch network namespace (tests/fixtures/capture.sh, sources in
//! tests/fixtures/src/).

use crate::testutil::*;
use crate::verdict::{Action, Backend, Family, Hook, PathVerdict};
use crate::NftRuleset;

#[test]
fn reject_on_the_backend_port_is_named_with_table_chain_handle_and_text() {
    let v = nft_only("nft_reject_port").evaluate(&local(8080));
    let (rule, action, hook) = blocked(&v);
    assert_eq!(action, Action::Reject);
    assert_eq!(hook, Hook::Output);
    assert_eq!(rule.backend, Backend::Nftables);
    assert_eq!(rule.family, Family::Inet);
    assert_eq!(
        (rule.table.as_str(), rule.chain.as_str()),
        ("filter", "output")
    );
    assert_eq!(rule.handle, Some(4));
    assert_eq!(
        rule.text,
        "tcp dport 8080 counter packets 0 bytes 0 reject with tcp reset"
    );
    assert!(!rule.policy && !rule.ufw);
}

#[test]
fn same_ruleset_passes_other_ports_and_established_accept_does_not_apply_to_a_syn() {
    assert_passed(&nft_only("nft_reject_port").evaluate(&local(8081)));
    // Port 22 is accepted before the reject; a SYN is `new`, so the first rule is no accept.
    assert_passed(&nft_only("nft_reject_port").evaluate(&local(22)));
}

#[test]
fn drop_in_input_blocks_a_local_backend_only() {
    let v = nft_only("nft_drop_input").evaluate(&local(8080));
    let (rule, action, hook) = blocked(&v);
    assert_eq!((action, hook), (Action::Drop, Hook::Input));
    assert_eq!(
        (rule.family, rule.table.as_str(), rule.handle),
        (Family::Ip, "firewall", Some(3))
    );
    assert_eq!(
        rule.text,
        "ip daddr 127.0.0.1 tcp dport 8080 log prefix \"backend \" drop"
    );
    // A remote backend's packet never reaches the input hook.
    assert_passed(&nft_only("nft_drop_input").evaluate(&remote("10.1.2.3", 8080)));
}

#[test]
fn a_rule_for_one_of_two_backends_blocks_only_that_one() {
    let rs = nft_only("nft_one_of_two");
    assert_passed(&rs.evaluate(&remote("10.0.0.5", 9000)));
    let v = rs.evaluate(&remote("10.0.0.5", 9001));
    assert_eq!(blocked(&v).0.handle, Some(2));
    // Same port on an address outside 10/8: not blamed.
    assert_passed(&rs.evaluate(&remote("192.168.1.5", 9001)));
}

#[test]
fn reject_for_another_port_protocol_or_source_port_is_not_blamed() {
    // tcp dport 9999 reject; udp dport 8080 drop; tcp sport 8080 drop. The sport rule
    // cannot be told in general (ephemeral port), but a known source port settles it.
    let rs = nft_only("nft_other_port");
    let mut p = local(8080);
    p.sport = Some(40000);
    assert_passed(&rs.evaluate(&p));
    // With the source port unknown, `tcp sport 8080 drop` might match: say so, blame nothing.
    let v = rs.evaluate(&local(8080));
    let (_, rules) = unknown(&v);
    assert_eq!(rules.len(), 1);
    assert_eq!(rules[0].handle, Some(4));
}

#[test]
fn an_accept_before_the_drop_is_not_blamed_and_the_drop_is_not_reached() {
    let rs = nft_only("nft_accept_first");
    assert_passed(&rs.evaluate(&local(8080)));
    // Another address skips the accept and hits the drop.
    let v = rs.evaluate(&remote("10.0.0.1", 8080));
    assert_eq!(blocked(&v).0.handle, Some(3));
}

#[test]
fn jump_return_and_goto_follow_the_chain_stack() {
    let rs = nft_only("nft_jump");
    // 10/8:8080 → jump to_backends → reject (handle 8).
    let v = rs.evaluate(&remote("10.0.0.1", 8080));
    let (rule, action, _) = blocked(&v);
    assert_eq!(
        (rule.chain.as_str(), rule.handle, action),
        ("to_backends", Some(8), Action::Reject)
    );
    // 10/8:9000 → return → back in output, dport 9000 ≠ 8080 → policy accept.
    assert_passed(&rs.evaluate(&remote("10.0.0.1", 9000)));
    // 127.0.0.1:8080 → goto last_word → drop (handle 9).
    let v = rs.evaluate(&local(8080));
    assert_eq!(blocked(&v).0.handle, Some(9));
    // 192.168.1.1:8080 → goto last_word → no match → end of a goto chain returns to the
    // base chain's caller, i.e. the policy: accept.
    assert_passed(&rs.evaluate(&remote("192.168.1.1", 8080)));
}

#[test]
fn named_sets_with_prefixes_intervals_and_single_elements() {
    let rs = nft_only("nft_named_set");
    for (addr, port) in [
        ("10.9.3.4", 7050),
        ("192.168.7.7", 8080),
        ("10.9.0.1", 7000),
    ] {
        let v = rs.evaluate(&remote(addr, port));
        assert_eq!(blocked(&v).0.handle, Some(4), "{addr}:{port}");
    }
    for (addr, port) in [
        ("10.8.3.4", 7050),
        ("192.168.7.8", 8080),
        ("10.9.0.1", 7101),
    ] {
        assert_passed(&rs.evaluate(&remote(addr, port)));
    }
}

#[test]
fn ct_state_established_accept_does_not_stop_a_new_connection() {
    let rs = nft_only("nft_ct_state");
    // input: established,related accept; invalid drop; tcp dport 8080 drop → handle 5.
    let v = rs.evaluate(&local(8080));
    let (rule, _, hook) = blocked(&v);
    assert_eq!((hook, rule.handle), (Hook::Input, Some(5)));
    // output: ct state vmap (new is in no entry); ct state new dport 9000 accept → passes.
    assert_passed(&rs.evaluate(&remote("10.0.0.1", 9000)));
}

#[test]
fn policy_drop_without_rules_blocks_local_backends_and_is_named_as_policy() {
    let rs = nft_only("nft_policy_drop");
    let v = rs.evaluate(&local(8080));
    let (rule, action, hook) = blocked(&v);
    assert!(rule.policy);
    assert_eq!((action, hook), (Action::Drop, Hook::Input));
    assert_eq!(
        (rule.table.as_str(), rule.chain.as_str(), rule.handle),
        ("filter", "input", None)
    );
    assert!(rule.text.contains("policy drop"), "{}", rule.text);
    assert_passed(&rs.evaluate(&remote("10.0.0.1", 8080)));
}

#[test]
fn accept_ends_only_its_own_base_chain() {
    // table early (prio -10) accepts everything; table late (prio 10) rejects 8080.
    let v = nft_only("nft_priorities").evaluate(&local(8080));
    let (rule, action, _) = blocked(&v);
    assert_eq!((rule.table.as_str(), action), ("late", Action::Reject));
}

#[test]
fn v6_rules_do_not_match_v4_packets() {
    let rs = nft_only("nft_v6_only");
    // inet: ip6 daddr ::1 tcp dport 8080 drop; nfproto ipv6 dport 9000 drop; ip6 table
    // with policy drop on output.
    assert_passed(&rs.evaluate(&local(8080)));
    assert_passed(&rs.evaluate(&local(9000)));
    let v = rs.evaluate(&local6(8080));
    assert_eq!(blocked(&v).0.handle, Some(2));
    let v = rs.evaluate(&local6(9000));
    assert_eq!(blocked(&v).0.handle, Some(3));
    // Another v6 port: the inet rules pass it, the ip6 table's policy drops it.
    let v = rs.evaluate(&local6(7000));
    let (rule, _, _) = blocked(&v);
    assert!(rule.policy);
    assert_eq!((rule.family, rule.table.as_str()), (Family::Ip6, "v6only"));
    // An IPv4-mapped address is an IPv4 packet.
    let mut mapped = local(8080);
    mapped.daddr = "::ffff:127.0.0.1".parse().unwrap();
    mapped.saddr = "::ffff:127.0.0.1".parse().unwrap();
    assert_passed(&rs.evaluate(&mapped));
}

#[test]
fn interface_rules_are_exact_for_lo_and_could_not_tell_for_remote_backends() {
    let rs = nft_only("nft_interfaces");
    // Local: oif lo accept; input: iifname != lo → false. Passes.
    assert_passed(&rs.evaluate(&local(8080)));
    // Remote with unknown oif: `oifname "eth*" ... drop` could match. Not blamed.
    let v = rs.evaluate(&remote("10.0.0.1", 8080));
    let (reasons, rules) = unknown(&v);
    assert!(rules.iter().any(|r| r.handle == Some(4)), "{rules:?}");
    assert!(
        reasons.iter().any(|r| r.contains("output interface")),
        "{reasons:?}"
    );
    // Known oif: exact answer either way.
    let mut p = remote("10.0.0.1", 8080);
    p.oif = Some("eth0".into());
    assert_eq!(blocked(&rs.evaluate(&p)).0.handle, Some(4));
    p.oif = Some("ens3".into());
    assert_passed(&rs.evaluate(&p));
}

#[test]
fn unmodelled_expression_gives_unknown_only_when_it_could_decide() {
    let rs = nft_only("nft_unmodelled");
    // `meta skuid 33 tcp dport 9999 drop` cannot match port 8081, whatever skuid is.
    assert_passed(&rs.evaluate(&local(8081)));
    let v = rs.evaluate(&local(8080));
    let (reasons, rules) = unknown(&v);
    assert_eq!(rules.len(), 1);
    assert_eq!(rules[0].handle, Some(3));
    assert!(reasons.iter().any(|r| r.contains("skuid")), "{reasons:?}");
}

#[test]
fn verdict_maps_are_looked_up() {
    let rs = nft_only("nft_vmap");
    let v = rs.evaluate(&local(8080));
    let (rule, action, _) = blocked(&v);
    assert_eq!((rule.handle, action), (Some(4), Action::Drop));
    // 9050 → jump blocked → reject (handle 5, in chain blocked).
    let v = rs.evaluate(&local(9050));
    let (rule, action, _) = blocked(&v);
    assert_eq!(
        (rule.chain.as_str(), rule.handle, action),
        ("blocked", Some(5), Action::Reject)
    );
    assert_passed(&rs.evaluate(&local(22)));
    assert_passed(&rs.evaluate(&local(8081)));
}

#[test]
fn without_the_listing_rule_text_is_rendered_from_json() {
    let rs = NftRuleset::from_json(&fixture("nft_one_of_two.json")).unwrap();
    let snap = crate::FirewallSnapshot::new(crate::Gathered::Read(rs), empty_iptables());
    let v = snap.evaluate(&remote("10.0.0.5", 9001));
    assert_eq!(
        blocked(&v).0.text,
        "ip daddr 10.0.0.0/8 tcp dport 9001 drop comment \"only the second backend\""
    );
}

#[test]
fn unreadable_nft_never_passes() {
    let snap = crate::FirewallSnapshot::new(
        crate::Gathered::Unavailable {
            reason: "nft: not permitted".into(),
            fix: "run as root / CAP_NET_ADMIN".into(),
        },
        empty_iptables(),
    );
    let v = snap.evaluate(&local(8080));
    let (reasons, _) = unknown(&v);
    assert!(reasons[0].contains("not permitted") && reasons[0].contains("CAP_NET_ADMIN"));
}

#[test]
fn malformed_json_is_an_error_not_an_empty_ruleset() {
    assert!(NftRuleset::from_json("{\"nftables\": [").is_err());
    assert!(NftRuleset::from_json("{\"other\": []}").is_err());
    assert!(NftRuleset::from_json(r#"{"nftables":[{"rule":{"family":"inet"}}]}"#).is_err());
}

#[test]
fn richer_expressions_from_one_capture() {
    // One ruleset with many expression forms (tests/fixtures/src/rich.nft).
    let rs = nft_only("rich");
    let verdict_of = |port: u16, daddr: &str, local: bool| {
        let mut p = remote(daddr, port);
        p.local = local;
        if local {
            p.saddr = "127.0.0.1".parse().unwrap();
        }
        rs.evaluate(&p)
    };
    // oifname "lo" tcp dport 8080 reject (handle 9).
    assert_eq!(
        blocked(&verdict_of(8080, "127.0.0.1", true)).0.handle,
        Some(9)
    );
    // anonymous set { 3000, 3001 } (handle 12).
    assert_eq!(
        blocked(&verdict_of(3001, "10.5.5.5", false)).0.handle,
        Some(12)
    );
    // prefix + port range (handle 13).
    assert_eq!(
        blocked(&verdict_of(5005, "127.0.0.1", true)).0.handle,
        Some(13)
    );
    // tcp dport 4000 reject (from `meta l4proto tcp th dport 4000`, handle 14).
    assert_eq!(
        blocked(&verdict_of(4000, "10.5.5.5", false)).1,
        Action::Reject
    );
    // `tcp flags syn tcp dport 81 drop`: our SYN has syn (handle 19).
    assert_eq!(
        blocked(&verdict_of(81, "10.5.5.5", false)).0.handle,
        Some(19)
    );
    // address set with a prefix and a range (handle 21).
    assert_eq!(
        blocked(&verdict_of(82, "10.2.0.5", false)).0.handle,
        Some(21)
    );
    assert_passed(&verdict_of(82, "10.2.0.10", false));
    // ct state new (handle 22), nfproto ipv4 (handle 23).
    assert_eq!(
        blocked(&verdict_of(83, "10.5.5.5", false)).0.handle,
        Some(22)
    );
    assert_eq!(
        blocked(&verdict_of(84, "10.5.5.5", false)).0.handle,
        Some(23)
    );
    // Concatenation `ip saddr . tcp dport { 127.0.0.1 . 85 }` (handle 25): the local
    // packet's source is 127.0.0.1; the remote one's (192.168.0.10) is not.
    assert_eq!(
        blocked(&verdict_of(85, "127.0.0.1", true)).0.handle,
        Some(25)
    );
    assert_passed(&verdict_of(85, "10.5.5.5", false));
    // Remote :8080: `oifname "lo" ... reject` (handle 9) cannot match a packet to a remote
    // backend, whatever interface it leaves by.
    assert_passed(&verdict_of(8080, "172.16.0.1", false));
    assert_eq!(
        blocked(&verdict_of(8080, "10.5.5.5", false)).0.handle,
        Some(10)
    );
    // `oif "lo" tcp dport @prange drop` (handle 17) for a local backend.
    assert_eq!(
        blocked(&verdict_of(7050, "127.0.0.1", true)).0.handle,
        Some(17)
    );
    // `meta skuid 33 tcp dport 80 drop` (handle 18): skuid is not modelled; a remote :80
    // then reaches nothing else, so it is unknown, naming handle 18.
    let v = verdict_of(80, "172.16.0.1", false);
    assert_eq!(unknown(&v).1[0].handle, Some(18));
    // Inside 10/8 with port 9000, handle 10 certainly drops (no uncertainty before it).
    let v = verdict_of(9000, "10.5.5.5", false);
    assert_eq!(blocked(&v).0.handle, Some(10));
}

#[test]
fn the_verdict_serializes_for_the_report() {
    let v = nft_only("nft_reject_port").evaluate(&local(8080));
    let json = serde_json::to_value(&v).unwrap();
    assert_eq!(json["verdict"], "blocked");
    assert_eq!(json["rule"]["backend"], "nftables");
    assert_eq!(json["rule"]["family"], "inet");
    assert_eq!(json["rule"]["handle"], 4);
    assert_eq!(json["action"], "reject");
    assert!(matches!(v, PathVerdict::Blocked { .. }));
}

#[test]
fn a_certain_drop_after_an_uncertain_one_is_blamed_with_a_note() {
    // skuid (unmodelled) drop on 8080, then a plain drop on 8080: blocked either way; the
    // rule named is the one that certainly matches.
    let json = r#"{"nftables":[
      {"table":{"family":"inet","name":"t","handle":1}},
      {"chain":{"family":"inet","table":"t","name":"out","handle":1,"type":"filter","hook":"output","prio":0,"policy":"accept"}},
      {"rule":{"family":"inet","table":"t","chain":"out","handle":2,"expr":[{"match":{"op":"==","left":{"meta":{"key":"skuid"}},"right":33}},{"drop":null}]}},
      {"rule":{"family":"inet","table":"t","chain":"out","handle":3,"expr":[{"match":{"op":"==","left":{"payload":{"protocol":"tcp","field":"dport"}},"right":8080}},{"reject":null}]}}
    ]}"#;
    let snap = crate::FirewallSnapshot::new(
        crate::Gathered::Read(NftRuleset::from_json(json).unwrap()),
        empty_iptables(),
    );
    let v = snap.evaluate(&local(8080));
    let (rule, action, _) = blocked(&v);
    assert_eq!((rule.handle, action), (Some(3), Action::Reject));
    let PathVerdict::Blocked { notes, .. } = &v else {
        unreachable!()
    };
    assert!(
        notes
            .iter()
            .any(|n| n.contains("handle 2") && n.contains("may stop it first")),
        "{notes:?}"
    );
    // On another port only the unmodelled rule could decide: unknown, not blamed.
    let v = snap.evaluate(&local(8081));
    let (_, rules) = unknown(&v);
    assert_eq!(rules[0].handle, Some(2));
}

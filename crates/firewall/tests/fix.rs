//! The fix text for blocked packets, one per kind of owner.

use std::net::IpAddr;

use why502_firewall::{suggest_fix, Action, Backend, Family, Hook, Packet, PathVerdict, RuleRef};

fn rule(backend: Backend, family: Family, table: &str, chain: &str) -> RuleRef {
    RuleRef {
        backend,
        family,
        table: table.into(),
        chain: chain.into(),
        handle: None,
        position: None,
        policy: false,
        text: String::new(),
        ufw: false,
        tool: match backend {
            Backend::Nftables => "nft".into(),
            Backend::Iptables => "iptables".into(),
            Backend::Ip6tables => "ip6tables".into(),
        },
    }
}

fn blocked(rule: RuleRef, hook: Hook) -> PathVerdict {
    PathVerdict::Blocked {
        rule,
        action: Action::Drop,
        hook,
        notes: Vec::new(),
    }
}

fn pkt(daddr: &str, port: u16) -> Packet {
    let d: IpAddr = daddr.parse().unwrap();
    Packet::tcp(d, d, port, true)
}

#[test]
fn nft_rule_is_deleted_by_handle_or_preceded_by_an_accept() {
    let mut r = rule(Backend::Nftables, Family::Inet, "filter", "output");
    r.handle = Some(7);
    let fix = suggest_fix(&blocked(r, Hook::Output), &pkt("127.0.0.1", 8080)).unwrap();
    assert!(
        fix.starts_with("nft delete rule inet filter output handle 7"),
        "{fix}"
    );
    assert!(fix.contains("nft insert rule inet filter output position 7 ip daddr 127.0.0.1 tcp dport 8080 accept"), "{fix}");
}

#[test]
fn nft_drop_policy_gets_an_accept_rule() {
    let mut r = rule(Backend::Nftables, Family::Ip6, "filter", "input");
    r.policy = true;
    let fix = suggest_fix(&blocked(r, Hook::Input), &pkt("::1", 9000)).unwrap();
    assert!(
        fix.starts_with("nft insert rule ip6 filter input ip6 daddr ::1 tcp dport 9000 accept"),
        "{fix}"
    );
}

#[test]
fn iptables_rule_by_position_and_table() {
    let mut r = rule(Backend::Iptables, Family::Ip, "filter", "OUTPUT");
    r.position = Some(3);
    let fix = suggest_fix(&blocked(r, Hook::Output), &pkt("127.0.0.1", 8080)).unwrap();
    assert!(fix.starts_with("iptables -D OUTPUT 3"), "{fix}");
    let mut r = rule(Backend::Ip6tables, Family::Ip6, "mangle", "INPUT");
    r.policy = true;
    let fix = suggest_fix(&blocked(r, Hook::Input), &pkt("::1", 8080)).unwrap();
    assert!(
        fix.starts_with("ip6tables -t mangle -I INPUT 1 -d ::1 -p tcp --dport 8080 -j ACCEPT"),
        "{fix}"
    );
}

#[test]
fn ufw_rules_are_fixed_with_ufw() {
    let mut r = rule(Backend::Iptables, Family::Ip, "filter", "ufw-user-output");
    r.ufw = true;
    r.position = Some(1);
    let fix = suggest_fix(&blocked(r.clone(), Hook::Output), &pkt("10.0.0.5", 8080)).unwrap();
    assert_eq!(fix, "ufw allow out to 10.0.0.5 port 8080 proto tcp");
    let fix = suggest_fix(&blocked(r, Hook::Input), &pkt("127.0.0.1", 8080)).unwrap();
    assert_eq!(fix, "ufw allow in on lo to 127.0.0.1 port 8080 proto tcp");
}

#[test]
fn no_fix_when_nothing_is_blocked() {
    let v = PathVerdict::Passed { notes: Vec::new() };
    assert_eq!(suggest_fix(&v, &pkt("127.0.0.1", 80)), None);
}

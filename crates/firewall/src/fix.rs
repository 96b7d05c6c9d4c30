//! The fix for a blocked packet, as text for the admin. Never run.

use std::net::IpAddr;

use crate::packet::Packet;
use crate::verdict::{Backend, Hook, PathVerdict, RuleRef};

/// A suggested fix for `verdict` (only for `Blocked`): which rule to remove, or the accept
/// rule to insert before it for this packet only.
pub fn suggest_fix(verdict: &PathVerdict, packet: &Packet) -> Option<String> {
    let PathVerdict::Blocked { rule, hook, .. } = verdict else {
        return None;
    };
    Some(if rule.ufw {
        ufw_fix(*hook, packet)
    } else {
        match rule.backend {
            Backend::Nftables => nft_fix(rule, packet),
            Backend::Iptables | Backend::Ip6tables => iptables_fix(rule, packet),
        }
    })
}

fn nft_fix(rule: &RuleRef, p: &Packet) -> String {
    let daddr = match p.daddr {
        IpAddr::V4(a) => format!("ip daddr {a}"),
        IpAddr::V6(a) => format!("ip6 daddr {a}"),
    };
    let accept = format!("{daddr} tcp dport {} accept", p.dport);
    let (fam, table, chain) = (rule.family.as_str(), &rule.table, &rule.chain);
    match rule.handle {
        Some(h) if !rule.policy => format!(
            "nft delete rule {fam} {table} {chain} handle {h}   # or keep it and let this \
             backend through first: nft insert rule {fam} {table} {chain} position {h} {accept}; \
             then make the change persistent in /etc/nftables.conf"
        ),
        _ => format!(
            "nft insert rule {fam} {table} {chain} {accept}   # the chain's policy is drop; \
             then make the change persistent in /etc/nftables.conf"
        ),
    }
}

fn iptables_fix(rule: &RuleRef, p: &Packet) -> String {
    let tool = &rule.tool;
    let t = if rule.table == "filter" {
        String::new()
    } else {
        format!("-t {} ", rule.table)
    };
    let accept = format!("-d {} -p tcp --dport {} -j ACCEPT", p.daddr, p.dport);
    let persist = "then save it (netfilter-persistent save, or your distribution's equivalent)";
    match rule.position {
        Some(n) if !rule.policy => format!(
            "{tool} {t}-D {} {n}   # or keep it and let this backend through first: {tool} {t}-I {} {n} {accept}; {persist}",
            rule.chain, rule.chain
        ),
        _ => format!(
            "{tool} {t}-I {} 1 {accept}   # the chain's policy is DROP; {persist}",
            rule.chain
        ),
    }
}

fn ufw_fix(hook: Hook, p: &Packet) -> String {
    match hook {
        Hook::Output | Hook::Postrouting => {
            format!("ufw allow out to {} port {} proto tcp", p.daddr, p.dport)
        }
        Hook::Input | Hook::Prerouting => format!(
            "ufw allow in on lo to {} port {} proto tcp",
            p.daddr, p.dport
        ),
    }
}

//! iptables-save rules → the evaluation model.

use std::collections::HashMap;
use std::net::IpAddr;

use super::{tokens, IptTable, IptablesBackend, IptablesRuleset};
use crate::ir::{
    proto_number, AddrRange, Base, Chain, Cond, Dir, Families, IfName, Rule, Table, Verdict,
};
use crate::nft::NftRuleset;
use crate::verdict::{Action, Backend, Family, Hook, RuleRef};

/// Built-in tables that can drop, with their hook priorities (as iptables-nft registers
/// them, equal to the legacy ones). `nat` only translates and is left out.
fn table_prio(name: &str) -> Option<i64> {
    Some(match name {
        "raw" => -300,
        "mangle" => -150,
        "filter" => 0,
        "security" => 50,
        _ => return None,
    })
}

fn hook_of(chain: &str) -> Option<Hook> {
    Some(match chain {
        "INPUT" => Hook::Input,
        "OUTPUT" => Hook::Output,
        "PREROUTING" => Hook::Prerouting,
        "POSTROUTING" => Hook::Postrouting,
        _ => return None,
    })
}

/// `nft`, when given and the rules are iptables-nft's, supplies each rule's nft handle (the
/// chain's nft rules are the iptables rules, one for one, in order).
pub(crate) fn to_tables(rs: &IptablesRuleset, nft: Option<&NftRuleset>) -> Vec<Table> {
    let backend = match rs.family {
        Family::Ip6 => Backend::Ip6tables,
        _ => Backend::Iptables,
    };
    let mut out = Vec::new();
    for t in &rs.tables {
        let Some(prio) = table_prio(&t.name) else {
            continue;
        };
        let table_has_ufw = t.chains.iter().any(|c| is_ufw(&c.name));
        let mut chains = HashMap::new();
        for c in &t.chains {
            let handles = match (nft, rs.backend) {
                (Some(nft), Some(IptablesBackend::Nft)) => {
                    let h = nft.chain_handles(rs.family, &t.name, &c.name);
                    (h.len() == c.rules.len()).then_some(h)
                }
                _ => None,
            };
            let make_ref = |position: Option<usize>, text: String, policy: bool| RuleRef {
                backend,
                family: rs.family,
                table: t.name.clone(),
                chain: c.name.clone(),
                handle: position.and_then(|p| handles.as_ref().and_then(|h| h.get(p - 1).copied())),
                position,
                policy,
                text,
                ufw: is_ufw(&c.name) || (policy && table_has_ufw),
                tool: rs.tool.clone(),
            };
            let base = hook_of(&c.name)
                .filter(|_| c.policy.is_some())
                .map(|hook| Base {
                    hook,
                    prio,
                    drop_policy: (c.policy.as_deref() == Some("DROP"))
                        .then(|| make_ref(None, format!(":{} DROP", c.name), true)),
                });
            let rules = c
                .rules
                .iter()
                .enumerate()
                .map(|(i, line)| {
                    let (conds, verdict) = convert_rule(line, rs.family, t);
                    Rule {
                        rule_ref: make_ref(Some(i + 1), line.clone(), false),
                        conds,
                        verdict,
                    }
                })
                .collect();
            chains.insert(c.name.clone(), Chain { base, rules });
        }
        out.push(Table {
            families: match rs.family {
                Family::Ip6 => Families::V6,
                _ => Families::V4,
            },
            chains,
        });
    }
    out
}

fn is_ufw(chain: &str) -> bool {
    chain.starts_with("ufw-") || chain.starts_with("ufw6-")
}

/// Modules whose options we evaluate; any other module's options make the rule unmodelled.
const KNOWN_MODULES: &[&str] = &["tcp", "udp", "multiport", "conntrack", "state", "comment"];

/// Targets that do not end evaluation and do not change what later rules see (for us).
const NON_TERMINAL_TARGETS: &[&str] = &[
    "LOG", "NFLOG", "ULOG", "AUDIT", "TRACE", "MARK", "CONNMARK", "TCPMSS", "CLASSIFY", "DSCP",
    "TOS", "CT", "NOTRACK",
];

fn convert_rule(line: &str, family: Family, table: &IptTable) -> (Vec<Cond>, Verdict) {
    let toks = tokens(line);
    let mut conds = Vec::new();
    let mut verdict = Verdict::Continue;
    let mut negate = false;
    let mut proto: Option<u8> = None;
    let mut module: Option<String> = None;
    let v4 = family != Family::Ip6;
    // Skip `-A CHAIN`.
    let mut i = 2;
    let arg = |i: usize| toks.get(i).cloned().unwrap_or_default();
    while i < toks.len() {
        let t = toks[i].as_str();
        let mut used = 2; // option + one value, the common case
        match t {
            "!" => {
                negate = true;
                i += 1;
                continue;
            }
            "-p" | "--protocol" => {
                let v = arg(i + 1);
                if v == "all" || v == "0" {
                    conds.push(Cond::Const(!negate));
                } else if let Some(n) = proto_number(&v) {
                    proto = Some(n);
                    conds.push(Cond::L4Proto {
                        negate,
                        protos: vec![n],
                    });
                } else {
                    conds.push(Cond::Unmodelled(format!("-p {v}")));
                }
            }
            "-s" | "--source" | "-d" | "--destination" => {
                let v = arg(i + 1);
                let dir = if t.starts_with("-s") || t == "--source" {
                    Dir::Src
                } else {
                    Dir::Dst
                };
                match v
                    .split(',')
                    .map(|a| addr_range(a, v4))
                    .collect::<Option<Vec<_>>>()
                {
                    Some(ranges) => conds.push(Cond::Addr {
                        v4,
                        dir,
                        negate,
                        ranges,
                    }),
                    None => conds.push(Cond::Unmodelled(format!("{t} {v}"))),
                }
            }
            "-i" | "--in-interface" | "-o" | "--out-interface" => {
                let v = arg(i + 1);
                let dir = if t == "-i" || t == "--in-interface" {
                    Dir::Src
                } else {
                    Dir::Dst
                };
                let names = match v.strip_suffix('+') {
                    Some(stem) => vec![IfName {
                        name: stem.to_string(),
                        prefix: true,
                    }],
                    None => vec![IfName {
                        name: v,
                        prefix: false,
                    }],
                };
                conds.push(Cond::Iface { dir, negate, names });
            }
            // Our SYN is not a fragment.
            "-f" | "--fragment" => {
                conds.push(Cond::Const(negate));
                used = 1;
            }
            "-m" | "--match" => module = Some(arg(i + 1)),
            "-j" | "--jump" => {
                verdict = target(&arg(i + 1), table);
                // The rest are target options (--reject-with, --log-prefix, ...).
                break;
            }
            "-g" | "--goto" => verdict = Verdict::Goto(arg(i + 1)),
            "-c" | "--set-counters" => used = 3,
            _ if t.starts_with("--") => {
                let m = module.clone().unwrap_or_default();
                let values = option_values(&toks, i + 1);
                used = 1 + values.len();
                let value = values.first().cloned().unwrap_or_default();
                if !KNOWN_MODULES.contains(&m.as_str()) {
                    conds.push(Cond::Unmodelled(format!("-m {m} {t} {}", values.join(" "))));
                } else {
                    conds.push(module_option(&m, t, &value, negate, proto));
                }
            }
            _ => {
                conds.push(Cond::Unmodelled(format!("option {t}")));
                used = 1;
            }
        }
        negate = false;
        i += used;
    }
    (conds, verdict)
}

/// Values of an option: the following tokens up to the next option or `!`.
fn option_values(toks: &[String], from: usize) -> Vec<String> {
    toks[from.min(toks.len())..]
        .iter()
        .take_while(|t| !t.starts_with('-') && t.as_str() != "!")
        .cloned()
        .collect()
}

fn module_option(module: &str, opt: &str, value: &str, negate: bool, proto: Option<u8>) -> Cond {
    let unmodelled = || Cond::Unmodelled(format!("-m {module} {opt} {value}"));
    match (module, opt) {
        ("tcp" | "udp", "--dport" | "--destination-port" | "--sport" | "--source-port") => {
            let dir = if opt.contains("dport") || opt.contains("destination") {
                Dir::Dst
            } else {
                Dir::Src
            };
            match port_list(value) {
                Some(ranges) => Cond::Port {
                    proto: proto_number(module),
                    dir,
                    negate,
                    ranges,
                },
                None => unmodelled(),
            }
        }
        ("tcp", "--syn") => Cond::Const(!negate),
        ("multiport", "--dports" | "--destination-ports" | "--sports" | "--source-ports") => {
            let dir = if matches!(opt, "--dports" | "--destination-ports") {
                Dir::Dst
            } else {
                Dir::Src
            };
            match port_list(value) {
                // multiport requires -p; without it we cannot say which protocol.
                Some(ranges) if proto.is_some() => Cond::Port {
                    proto,
                    dir,
                    negate,
                    ranges,
                },
                _ => unmodelled(),
            }
        }
        ("conntrack", "--ctstate") | ("state", "--state") => Cond::CtState {
            negate,
            states: value.split(',').map(|s| s.to_ascii_lowercase()).collect(),
        },
        ("comment", "--comment") => Cond::Const(true),
        _ => unmodelled(),
    }
}

/// `80`, `8000:8080`, `80,443,9000:9100`, service names for the common ones.
fn port_list(v: &str) -> Option<Vec<(u16, u16)>> {
    v.split(',')
        .map(|p| match p.split_once(':') {
            Some((a, b)) => Some((
                if a.is_empty() { 0 } else { port(a)? },
                if b.is_empty() { u16::MAX } else { port(b)? },
            )),
            None => port(p).map(|n| (n, n)),
        })
        .collect()
}

fn port(s: &str) -> Option<u16> {
    Some(match s {
        "http" => 80,
        "https" => 443,
        "ssh" => 22,
        "http-alt" | "webcache" => 8080,
        other => other.parse().ok()?,
    })
}

/// `10.0.0.0/8`, `1.2.3.4/32`, `::1/128`, dotted masks (`/255.255.0.0`), bare addresses.
fn addr_range(s: &str, v4: bool) -> Option<AddrRange> {
    let (addr, mask) = match s.split_once('/') {
        Some((a, m)) => (a, Some(m)),
        None => (s, None),
    };
    let addr: IpAddr = addr.parse().ok()?;
    if addr.is_ipv4() != v4 {
        return None;
    }
    let len = match mask {
        None => {
            if v4 {
                32
            } else {
                128
            }
        }
        Some(m) => match m.parse::<u8>() {
            Ok(n) => n,
            Err(_) => {
                // A dotted mask; only contiguous ones map to a prefix.
                let bits: u32 = m.parse::<std::net::Ipv4Addr>().ok()?.into();
                let len = bits.leading_ones();
                if bits.checked_shl(len).unwrap_or(0) != 0 {
                    return None;
                }
                u8::try_from(len).ok()?
            }
        },
    };
    AddrRange::prefix(addr, len)
}

fn target(name: &str, table: &IptTable) -> Verdict {
    match name {
        "ACCEPT" => Verdict::Accept,
        "DROP" => Verdict::Block(Action::Drop),
        "REJECT" => Verdict::Block(Action::Reject),
        "RETURN" => Verdict::Return,
        t if NON_TERMINAL_TARGETS.contains(&t) => Verdict::Continue,
        t if table.chains.iter().any(|c| c.name == t) => Verdict::Jump(t.to_string()),
        t => Verdict::Unmodelled(format!("target {t}")),
    }
}

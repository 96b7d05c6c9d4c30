//! The rule model both nftables JSON and iptables-save text are translated into, and the
//! evaluation of one condition against the packet at one hook.

use std::collections::HashMap;
use std::net::IpAddr;

use crate::packet::{Packet, PacketFamily};
use crate::verdict::{Action, Hook, RuleRef};

pub(crate) const TCP: u8 = 6;

/// One table: chains by name. Base chains carry their hook, priority and policy.
#[derive(Debug, Clone)]
pub(crate) struct Table {
    /// Which packets the table sees at all.
    pub families: Families,
    pub chains: HashMap<String, Chain>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Families {
    V4,
    V6,
    Both,
}

impl Families {
    pub fn includes(self, f: PacketFamily) -> bool {
        matches!(
            (self, f),
            (Families::Both, _)
                | (Families::V4, PacketFamily::V4)
                | (Families::V6, PacketFamily::V6)
        )
    }
}

#[derive(Debug, Clone)]
pub(crate) struct Chain {
    pub base: Option<Base>,
    pub rules: Vec<Rule>,
}

#[derive(Debug, Clone)]
pub(crate) struct Base {
    pub hook: Hook,
    pub prio: i64,
    /// `None`: accept. `Some`: the policy drops, blamed as this pseudo-rule.
    pub drop_policy: Option<RuleRef>,
}

#[derive(Debug, Clone)]
pub(crate) struct Rule {
    pub rule_ref: RuleRef,
    pub conds: Vec<Cond>,
    pub verdict: Verdict,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Verdict {
    Accept,
    Block(Action),
    Jump(String),
    Goto(String),
    Return,
    /// No verdict (counter, log, comment only): evaluation goes on.
    Continue,
    /// A verdict we do not model (queue, ...): if the rule matches we cannot tell.
    Unmodelled(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Dir {
    Src,
    Dst,
}

/// An inclusive address range within one family.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct AddrRange {
    pub lo: IpAddr,
    pub hi: IpAddr,
}

impl AddrRange {
    pub fn single(a: IpAddr) -> AddrRange {
        AddrRange { lo: a, hi: a }
    }

    pub fn prefix(addr: IpAddr, len: u8) -> Option<AddrRange> {
        match addr {
            IpAddr::V4(a) => {
                if len > 32 {
                    return None;
                }
                let mask = if len == 0 { 0 } else { u32::MAX << (32 - len) };
                let base = u32::from(a) & mask;
                Some(AddrRange {
                    lo: IpAddr::V4(base.into()),
                    hi: IpAddr::V4((base | !mask).into()),
                })
            }
            IpAddr::V6(a) => {
                if len > 128 {
                    return None;
                }
                let mask = if len == 0 {
                    0
                } else {
                    u128::MAX << (128 - len)
                };
                let base = u128::from(a) & mask;
                Some(AddrRange {
                    lo: IpAddr::V6(base.into()),
                    hi: IpAddr::V6((base | !mask).into()),
                })
            }
        }
    }

    fn contains(&self, a: IpAddr) -> bool {
        match (self.lo, self.hi, a) {
            (IpAddr::V4(lo), IpAddr::V4(hi), IpAddr::V4(a)) => lo <= a && a <= hi,
            (IpAddr::V6(lo), IpAddr::V6(hi), IpAddr::V6(a)) => lo <= a && a <= hi,
            _ => false,
        }
    }
}

/// An interface name pattern: exact, or a prefix (`eth*` in nft, `eth+` in iptables).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct IfName {
    pub name: String,
    pub prefix: bool,
}

impl IfName {
    fn matches(&self, name: &str) -> bool {
        if self.prefix {
            name.starts_with(&self.name)
        } else {
            name == self.name
        }
    }
}

/// One condition of a rule. Every condition carries its own `negate` (`!=`, `!`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Cond {
    /// Packet family (`meta nfproto`, `meta protocol`).
    Family { negate: bool, v4: bool, v6: bool },
    /// Layer-4 protocol number (`meta l4proto`, `ip protocol`, `-p`).
    L4Proto { negate: bool, protos: Vec<u8> },
    /// A port of `proto` (None: any transport with ports, nft `th`). The protocol is an
    /// implicit dependency: a UDP port match never matches a TCP packet, negated or not.
    Port {
        proto: Option<u8>,
        dir: Dir,
        negate: bool,
        ranges: Vec<(u16, u16)>,
    },
    /// An address of family `v4`/v6; the family is an implicit dependency like the protocol.
    Addr {
        v4: bool,
        dir: Dir,
        negate: bool,
        ranges: Vec<AddrRange>,
    },
    /// Input (`dir == Src`) or output interface.
    Iface {
        dir: Dir,
        negate: bool,
        names: Vec<IfName>,
    },
    /// Conntrack state; our SYN is `new`.
    CtState { negate: bool, states: Vec<String> },
    /// TCP flags: `in`-style test on the SYN (flags & mask != 0).
    TcpFlagsAny { negate: bool, flags: Vec<String> },
    /// Any of the alternatives (each a conjunction) holds: nft concatenation lookups like
    /// `ip daddr . tcp dport { 10.0.0.1 . 8080, ... }`.
    AnyOf {
        negate: bool,
        alternatives: Vec<Vec<Cond>>,
    },
    /// Known to be true or false whatever the packet (`-f`: our SYN is no fragment).
    Const(bool),
    /// Something we do not model: the rule's match cannot be told.
    Unmodelled(String),
}

/// Three-valued truth.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Tri {
    True,
    False,
    Unknown(String),
}

impl Tri {
    fn from_bool(b: bool) -> Tri {
        if b {
            Tri::True
        } else {
            Tri::False
        }
    }

    fn negate_if(self, negate: bool) -> Tri {
        match (self, negate) {
            (Tri::True, true) => Tri::False,
            (Tri::False, true) => Tri::True,
            (t, _) => t,
        }
    }
}

/// Interface as seen at a hook.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Iface {
    /// Not set at this hook (no input interface for a locally generated packet in output).
    Absent,
    Known(String),
    Unknown,
}

/// The packet at one hook.
#[derive(Debug, Clone)]
pub(crate) struct Ctx<'a> {
    pub pkt: &'a Packet,
    pub iif: Iface,
    pub oif: Iface,
}

impl Ctx<'_> {
    pub fn at(pkt: &Packet, hook: Hook) -> Ctx<'_> {
        let oif_known = if pkt.local {
            Iface::Known("lo".into())
        } else {
            pkt.oif.clone().map_or(Iface::Unknown, Iface::Known)
        };
        let (iif, oif) = match hook {
            Hook::Output | Hook::Postrouting => (Iface::Absent, oif_known),
            // Only local packets reach these; routing has not run yet in prerouting.
            Hook::Prerouting => (Iface::Known("lo".into()), Iface::Absent),
            Hook::Input => (Iface::Known("lo".into()), Iface::Absent),
        };
        Ctx { pkt, iif, oif }
    }
}

impl Cond {
    pub fn eval(&self, cx: &Ctx<'_>) -> Tri {
        let pkt = cx.pkt;
        let is_v4 = pkt.family() == PacketFamily::V4;
        match self {
            Cond::Family { negate, v4, v6 } => {
                Tri::from_bool(if is_v4 { *v4 } else { *v6 }).negate_if(*negate)
            }
            Cond::L4Proto { negate, protos } => {
                Tri::from_bool(protos.contains(&TCP)).negate_if(*negate)
            }
            Cond::Port {
                proto,
                dir,
                negate,
                ranges,
            } => {
                if proto.is_some_and(|p| p != TCP) {
                    return Tri::False;
                }
                let port = match dir {
                    Dir::Dst => pkt.dport,
                    Dir::Src => match pkt.sport {
                        Some(p) => p,
                        None => {
                            return Tri::Unknown(
                                "nginx's source port is ephemeral, not known in advance".into(),
                            )
                        }
                    },
                };
                Tri::from_bool(ranges.iter().any(|(lo, hi)| *lo <= port && port <= *hi))
                    .negate_if(*negate)
            }
            Cond::Addr {
                v4,
                dir,
                negate,
                ranges,
            } => {
                if *v4 != is_v4 {
                    return Tri::False;
                }
                let addr = match dir {
                    Dir::Dst => pkt.daddr,
                    Dir::Src => {
                        if pkt.saddr.is_unspecified() {
                            return Tri::Unknown("nginx's source address is not known".into());
                        }
                        pkt.saddr
                    }
                };
                Tri::from_bool(ranges.iter().any(|r| r.contains(addr))).negate_if(*negate)
            }
            Cond::Iface { dir, negate, names } => {
                let iface = match dir {
                    Dir::Src => &cx.iif,
                    Dir::Dst => &cx.oif,
                };
                match iface {
                    // nft breaks the rule when the key is missing, negated or not; iptables
                    // refuses -i in OUTPUT and -o in INPUT.
                    Iface::Absent => Tri::False,
                    // A remote backend's packet leaves by some interface, never lo.
                    Iface::Unknown if names.iter().all(|n| !n.prefix && n.name == "lo") => {
                        Tri::False.negate_if(*negate)
                    }
                    Iface::Unknown => Tri::Unknown(
                        "the output interface towards a remote backend is not known".into(),
                    ),
                    Iface::Known(name) => {
                        Tri::from_bool(names.iter().any(|n| n.matches(name))).negate_if(*negate)
                    }
                }
            }
            Cond::CtState { negate, states } => {
                Tri::from_bool(states.iter().any(|s| s == "new")).negate_if(*negate)
            }
            Cond::TcpFlagsAny { negate, flags } => {
                Tri::from_bool(flags.iter().any(|f| f == "syn")).negate_if(*negate)
            }
            Cond::AnyOf {
                negate,
                alternatives,
            } => {
                let mut unknown = None;
                for alt in alternatives {
                    match eval_all(alt, cx) {
                        Tri::True => return Tri::True.negate_if(*negate),
                        Tri::Unknown(r) => unknown = Some(r),
                        Tri::False => {}
                    }
                }
                match unknown {
                    Some(r) => Tri::Unknown(r),
                    None => Tri::False.negate_if(*negate),
                }
            }
            Cond::Const(b) => Tri::from_bool(*b),
            Cond::Unmodelled(what) => Tri::Unknown(format!("not modelled: {what}")),
        }
    }
}

/// All conditions together: false if any is false, else unknown if any is unknown.
pub(crate) fn eval_all(conds: &[Cond], cx: &Ctx<'_>) -> Tri {
    let mut unknown: Vec<String> = Vec::new();
    for c in conds {
        match c.eval(cx) {
            Tri::False => return Tri::False,
            Tri::Unknown(r) => unknown.push(r),
            Tri::True => {}
        }
    }
    if unknown.is_empty() {
        Tri::True
    } else {
        Tri::Unknown(unknown.join("; "))
    }
}

/// Protocol names as nft and iptables print them.
pub(crate) fn proto_number(name: &str) -> Option<u8> {
    Some(match name {
        "tcp" => 6,
        "udp" => 17,
        "icmp" => 1,
        "icmpv6" | "ipv6-icmp" => 58,
        "sctp" => 132,
        "dccp" => 33,
        "udplite" => 136,
        "esp" => 50,
        "ah" => 51,
        "gre" => 47,
        other => return other.parse().ok(),
    })
}

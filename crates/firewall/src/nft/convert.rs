//! nft JSON expressions → the evaluation model. Each expression we know becomes a condition
//! or the verdict; anything else becomes `Cond::Unmodelled`, so the rule is explored both
//! ways rather than guessed.

use std::collections::HashMap;
use std::net::IpAddr;

use serde_json::Value;

use super::{family_of, NftRule, NftRuleset};
use crate::ir::{
    proto_number, AddrRange, Base, Chain, Cond, Dir, Families, IfName, Rule, Table, Verdict,
};
use crate::verdict::{Action, Backend, Family, Hook, RuleRef};

/// Tables of `rs` as evaluation tables, leaving out `skip` (tables evaluated from
/// iptables-save instead).
pub(crate) fn to_tables(rs: &NftRuleset, skip: &[(Family, String)]) -> Vec<Table> {
    let mut out = Vec::new();
    for t in &rs.tables {
        let Some(family) = family_of(&t.family) else {
            // arp, bridge, netdev: not on the IP path of a locally generated packet.
            continue;
        };
        if skip.iter().any(|(f, n)| *f == family && *n == t.name) {
            continue;
        }
        let mut chains = HashMap::new();
        for c in rs
            .chains
            .iter()
            .filter(|c| c.family == t.family && c.table == t.name)
        {
            let ufw = is_ufw(&c.name);
            let base = base_of(c, family, ufw);
            let mut rules = Vec::new();
            for r in rs
                .rules
                .iter()
                .filter(|r| r.family == t.family && r.table == t.name && r.chain == c.name)
            {
                let rule_ref = RuleRef {
                    backend: Backend::Nftables,
                    family,
                    table: t.name.clone(),
                    chain: c.name.clone(),
                    handle: Some(r.handle),
                    position: None,
                    policy: false,
                    text: rs.rule_text(r),
                    ufw,
                    tool: "nft".into(),
                };
                rules.extend(convert_rule(rs, r, rule_ref));
            }
            chains.insert(c.name.clone(), Chain { base, rules });
        }
        out.push(Table {
            families: match family {
                Family::Ip => Families::V4,
                Family::Ip6 => Families::V6,
                Family::Inet => Families::Both,
            },
            chains,
        });
    }
    out
}

pub(crate) fn is_ufw(chain: &str) -> bool {
    chain.starts_with("ufw-") || chain.starts_with("ufw6-")
}

fn base_of(c: &super::NftChain, family: Family, ufw: bool) -> Option<Base> {
    let hook = match c.hook.as_deref()? {
        "output" => Hook::Output,
        "postrouting" => Hook::Postrouting,
        "prerouting" => Hook::Prerouting,
        "input" => Hook::Input,
        _ => return None,
    };
    // nat chains translate addresses; filtering happens in filter and route chains.
    if !matches!(c.kind.as_deref(), Some("filter") | Some("route")) {
        return None;
    }
    let prio = c.prio.unwrap_or(0);
    let drop_policy = (c.policy.as_deref() == Some("drop")).then(|| RuleRef {
        backend: Backend::Nftables,
        family,
        table: c.table.clone(),
        chain: c.name.clone(),
        handle: None,
        position: None,
        policy: true,
        text: format!(
            "type {} hook {} priority {prio}; policy drop;",
            c.kind.as_deref().unwrap_or("filter"),
            hook.as_str()
        ),
        ufw,
        tool: "nft".into(),
    });
    Some(Base {
        hook,
        prio,
        drop_policy,
    })
}

/// One nft rule; a verdict map becomes one rule per entry (the entries are disjoint, so at
/// most one matches, which is what a map lookup does).
fn convert_rule(rs: &NftRuleset, r: &NftRule, rule_ref: RuleRef) -> Vec<Rule> {
    let mut conds = Vec::new();
    let mut verdict = Verdict::Continue;
    for e in &r.expr {
        let Some((key, body)) = e.as_object().and_then(|o| o.iter().next()) else {
            conds.push(Cond::Unmodelled(e.to_string()));
            continue;
        };
        match key.as_str() {
            "match" => conds.extend(convert_match(rs, r, body)),
            "accept" => verdict = Verdict::Accept,
            "drop" => verdict = Verdict::Block(Action::Drop),
            "reject" => verdict = Verdict::Block(Action::Reject),
            "return" => verdict = Verdict::Return,
            "continue" => verdict = Verdict::Continue,
            "jump" | "goto" => {
                let target = body
                    .get("target")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string();
                verdict = if key == "jump" {
                    Verdict::Jump(target)
                } else {
                    Verdict::Goto(target)
                };
            }
            "vmap" => return expand_vmap(rs, r, body, conds, rule_ref),
            // No effect on whether this SYN passes. (`mangle` sets marks and priorities; we
            // model no match on marks, so a later mark match stays unmodelled anyway.)
            "counter" | "log" | "mangle" => {}
            "xt" => match xt_effect(body) {
                XtEffect::Cond(c) => conds.push(c),
                XtEffect::Verdict(v) => verdict = v,
            },
            "queue" => verdict = Verdict::Unmodelled("queue to userspace".into()),
            other => conds.push(Cond::Unmodelled(format!("{other} {}", short(body)))),
        }
    }
    vec![Rule {
        rule_ref,
        conds,
        verdict,
    }]
}

enum XtEffect {
    Cond(Cond),
    Verdict(Verdict),
}

/// iptables extensions kept as `xt` in nft's view: JSON only names them.
fn xt_effect(body: &Value) -> XtEffect {
    let kind = body.get("type").and_then(Value::as_str).unwrap_or("?");
    let name = body.get("name").and_then(Value::as_str).unwrap_or("?");
    if kind == "target" {
        match name {
            "REJECT" => return XtEffect::Verdict(Verdict::Block(Action::Reject)),
            "LOG" | "NFLOG" | "ULOG" | "AUDIT" | "TRACE" | "MARK" | "CONNMARK" | "TCPMSS"
            | "CLASSIFY" | "DSCP" | "TOS" => return XtEffect::Verdict(Verdict::Continue),
            _ => {
                return XtEffect::Verdict(Verdict::Unmodelled(format!(
                    "iptables target {name} (xt)"
                )))
            }
        }
    }
    // The options of an xt match are not in the JSON: only iptables-save shows them.
    XtEffect::Cond(Cond::Unmodelled(format!(
        "iptables extension -m {name} (xt; its options are only visible in iptables-save)"
    )))
}

fn expand_vmap(
    rs: &NftRuleset,
    r: &NftRule,
    body: &Value,
    conds: Vec<Cond>,
    rule_ref: RuleRef,
) -> Vec<Rule> {
    let unmodelled = |why: String| {
        let mut c = conds.clone();
        c.push(Cond::Unmodelled(why.clone()));
        vec![Rule {
            rule_ref: rule_ref.clone(),
            conds: c,
            verdict: Verdict::Unmodelled(why),
        }]
    };
    let Some(key) = body.get("key") else {
        return unmodelled("verdict map without key".into());
    };
    let entries: Vec<Value> = match body.get("data") {
        Some(Value::Object(o)) if o.contains_key("set") => o
            .get("set")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default(),
        Some(Value::String(s)) if s.starts_with('@') => match named_set(rs, r, &s[1..]) {
            Some(e) => e,
            None => return unmodelled(format!("verdict map {s} not found")),
        },
        _ => return unmodelled(format!("verdict map {}", short(body))),
    };
    let mut out = Vec::new();
    for entry in &entries {
        let Some([k, v]) = entry.as_array().map(Vec::as_slice).and_then(|s| {
            if s.len() == 2 {
                Some([s[0].clone(), s[1].clone()])
            } else {
                None
            }
        }) else {
            return unmodelled(format!("verdict map entry {}", short(entry)));
        };
        let mut entry_conds = conds.clone();
        entry_conds.extend(match_on(rs, r, key, "==", &Value::Array(vec![k])));
        let verdict = match v.as_object().and_then(|o| o.iter().next()) {
            Some((name, t)) => match name.as_str() {
                "accept" => Verdict::Accept,
                "drop" => Verdict::Block(Action::Drop),
                "reject" => Verdict::Block(Action::Reject),
                "return" => Verdict::Return,
                "continue" => Verdict::Continue,
                "jump" | "goto" => {
                    let target = t
                        .get("target")
                        .and_then(Value::as_str)
                        .unwrap_or_default()
                        .to_string();
                    if name == "jump" {
                        Verdict::Jump(target)
                    } else {
                        Verdict::Goto(target)
                    }
                }
                other => Verdict::Unmodelled(format!("verdict {other} in a map")),
            },
            None => Verdict::Unmodelled(format!("map data {}", short(&v))),
        };
        out.push(Rule {
            rule_ref: rule_ref.clone(),
            conds: entry_conds,
            verdict,
        });
    }
    out
}

fn convert_match(rs: &NftRuleset, r: &NftRule, body: &Value) -> Vec<Cond> {
    let (Some(left), Some(right)) = (body.get("left"), body.get("right")) else {
        return vec![Cond::Unmodelled(format!("match {}", short(body)))];
    };
    let op = body.get("op").and_then(Value::as_str).unwrap_or("==");
    match_on(rs, r, left, op, right)
}

/// What a match's left side selects.
enum Selector {
    Port(Option<u8>, Dir),
    Addr(bool, Dir),
    /// L4 protocol; `Some(v4)` adds the implicit family dependency of `ip protocol` /
    /// `ip6 nexthdr`.
    L4Proto(Option<bool>),
    NfProto,
    /// `meta protocol` (ethertype names ip / ip6).
    EtherProto,
    Iface(Dir),
    CtState,
    TcpFlags,
}

fn selector(left: &Value) -> Option<Selector> {
    if let Some(p) = left.get("payload") {
        let proto = p.get("protocol")?.as_str()?;
        let field = p.get("field")?.as_str()?;
        return Some(match (proto, field) {
            ("ip", "saddr") => Selector::Addr(true, Dir::Src),
            ("ip", "daddr") => Selector::Addr(true, Dir::Dst),
            ("ip6", "saddr") => Selector::Addr(false, Dir::Src),
            ("ip6", "daddr") => Selector::Addr(false, Dir::Dst),
            ("ip", "protocol") => Selector::L4Proto(Some(true)),
            ("ip6", "nexthdr") => Selector::L4Proto(Some(false)),
            ("tcp", "flags") => Selector::TcpFlags,
            ("th", "dport") => Selector::Port(None, Dir::Dst),
            ("th", "sport") => Selector::Port(None, Dir::Src),
            (p, "dport") => Selector::Port(Some(proto_number(p)?), Dir::Dst),
            (p, "sport") => Selector::Port(Some(proto_number(p)?), Dir::Src),
            _ => return None,
        });
    }
    if let Some(m) = left.get("meta") {
        return Some(match m.get("key")?.as_str()? {
            "l4proto" => Selector::L4Proto(None),
            "nfproto" => Selector::NfProto,
            "protocol" => Selector::EtherProto,
            "iif" | "iifname" => Selector::Iface(Dir::Src),
            "oif" | "oifname" => Selector::Iface(Dir::Dst),
            _ => return None,
        });
    }
    if let Some(c) = left.get("ct") {
        if c.get("dir").is_none() && c.get("key")?.as_str()? == "state" {
            return Some(Selector::CtState);
        }
    }
    None
}

/// `left op right` as conditions (usually one; `ip protocol` adds its family dependency).
fn match_on(rs: &NftRuleset, r: &NftRule, left: &Value, op: &str, right: &Value) -> Vec<Cond> {
    let what = || format!("{} {op} {}", short(left), short(right));
    let elems = match elements(rs, r, right) {
        Ok(e) => e,
        Err(why) => return vec![Cond::Unmodelled(format!("{}: {why}", what()))],
    };
    let built = match left.get("concat").and_then(Value::as_array) {
        Some(parts) => concat(parts, op, &elems),
        None => selector(left)
            .ok_or_else(|| "selector not modelled".to_string())
            .and_then(|sel| build(sel, op, elems)),
    };
    match built {
        Ok(c) => c,
        Err(why) => vec![Cond::Unmodelled(format!("{}: {why}", what()))],
    }
}

/// `a . b { x . y, ... }`: some element matches on every part.
fn concat(parts: &[Value], op: &str, elems: &[Value]) -> Result<Vec<Cond>, String> {
    let negate = match op {
        "==" | "in" => false,
        "!=" => true,
        _ => return Err(format!("operator {op} on a concatenation")),
    };
    let mut alternatives = Vec::new();
    for e in elems {
        let values = e
            .get("concat")
            .and_then(Value::as_array)
            .filter(|v| v.len() == parts.len())
            .ok_or_else(|| format!("element {}", short(e)))?;
        let mut all = Vec::new();
        for (part, value) in parts.iter().zip(values) {
            let sel = selector(part).ok_or_else(|| format!("selector {}", short(part)))?;
            all.extend(build(sel, "==", vec![value.clone()])?);
        }
        alternatives.push(all);
    }
    Ok(vec![Cond::AnyOf {
        negate,
        alternatives,
    }])
}

fn build(sel: Selector, op: &str, elems: Vec<Value>) -> Result<Vec<Cond>, String> {
    let negate = match op {
        "==" | "in" => false,
        "!=" => true,
        "<" | ">" | "<=" | ">=" if matches!(sel, Selector::Port(..)) => false,
        _ => return Err(format!("operator {op}")),
    };
    Ok(match sel {
        Selector::Port(proto, dir) => {
            let mut ranges = elems
                .iter()
                .map(port_range)
                .collect::<Result<Vec<_>, _>>()?;
            if let [(p, _)] = ranges.as_slice() {
                let p = *p;
                match op {
                    "<" => ranges = vec![(0, p.checked_sub(1).ok_or("port < 0")?)],
                    ">" => ranges = vec![(p.checked_add(1).ok_or("port > 65535")?, u16::MAX)],
                    "<=" => ranges = vec![(0, p)],
                    ">=" => ranges = vec![(p, u16::MAX)],
                    _ => {}
                }
            }
            vec![Cond::Port {
                proto,
                dir,
                negate,
                ranges,
            }]
        }
        Selector::Addr(v4, dir) => vec![Cond::Addr {
            v4,
            dir,
            negate,
            ranges: elems
                .iter()
                .map(|e| addr_range(e, v4))
                .collect::<Result<_, _>>()?,
        }],
        Selector::L4Proto(family) => {
            let protos = elems
                .iter()
                .map(|e| {
                    match e {
                        Value::Number(n) => n.as_u64().and_then(|n| u8::try_from(n).ok()),
                        Value::String(s) => proto_number(s),
                        _ => None,
                    }
                    .ok_or_else(|| format!("protocol {e}"))
                })
                .collect::<Result<_, _>>()?;
            let mut c = Vec::new();
            if let Some(v4) = family {
                c.push(Cond::Family {
                    negate: false,
                    v4,
                    v6: !v4,
                });
            }
            c.push(Cond::L4Proto { negate, protos });
            c
        }
        Selector::NfProto | Selector::EtherProto => {
            let (mut v4, mut v6) = (false, false);
            for e in &elems {
                match e.as_str() {
                    Some("ipv4") | Some("ip") => v4 = true,
                    Some("ipv6") | Some("ip6") => v6 = true,
                    _ => return Err(format!("protocol {e}")),
                }
            }
            vec![Cond::Family { negate, v4, v6 }]
        }
        Selector::Iface(dir) => vec![Cond::Iface {
            dir,
            negate,
            names: elems.iter().map(if_name).collect::<Result<_, _>>()?,
        }],
        Selector::CtState => vec![Cond::CtState {
            negate,
            states: strings(&elems)?,
        }],
        Selector::TcpFlags => {
            let flags = strings(&elems)?;
            if op == "in" {
                vec![Cond::TcpFlagsAny { negate, flags }]
            } else {
                // `==` / `!=`: the flags are exactly these; our SYN carries only syn.
                let exactly_syn = flags == ["syn"];
                vec![Cond::Const(exactly_syn != negate)]
            }
        }
    })
}

/// The right side as a list of elements: a set, a named set (`@name`), a list, or one value.
fn elements(rs: &NftRuleset, r: &NftRule, right: &Value) -> Result<Vec<Value>, String> {
    let list = match right {
        Value::String(s) if s.starts_with('@') => {
            named_set(rs, r, &s[1..]).ok_or_else(|| format!("set {s} not found"))?
        }
        Value::Object(o) if o.contains_key("set") => o
            .get("set")
            .and_then(Value::as_array)
            .cloned()
            .ok_or("malformed set")?,
        Value::Array(items) => items.clone(),
        other => vec![other.clone()],
    };
    // Elements with options (timeout, comment) are wrapped: {"elem": {"val": ...}}.
    Ok(list
        .into_iter()
        .map(|e| match e.get("elem").and_then(|x| x.get("val")) {
            Some(v) => v.clone(),
            None => e,
        })
        .collect())
}

fn named_set(rs: &NftRuleset, r: &NftRule, name: &str) -> Option<Vec<Value>> {
    rs.sets
        .iter()
        .find(|s| s.family == r.family && s.table == r.table && s.name == name)
        .map(|s| s.elem.clone())
}

fn port_value(v: &Value) -> Result<u16, String> {
    match v {
        Value::Number(n) => n
            .as_u64()
            .and_then(|n| u16::try_from(n).ok())
            .ok_or_else(|| format!("port {n}")),
        Value::String(s) => service_port(s).ok_or_else(|| format!("port {s}")),
        other => Err(format!("port {other}")),
    }
}

/// nft prints numeric ports unless asked for names (-S); these few names are accepted.
fn service_port(s: &str) -> Option<u16> {
    Some(match s {
        "http" => 80,
        "https" => 443,
        "ssh" => 22,
        "http-alt" | "webcache" => 8080,
        other => other.parse().ok()?,
    })
}

fn port_range(v: &Value) -> Result<(u16, u16), String> {
    if let Some(Value::Array(r)) = v.get("range") {
        if let [a, b] = r.as_slice() {
            return Ok((port_value(a)?, port_value(b)?));
        }
    }
    let p = port_value(v)?;
    Ok((p, p))
}

fn parse_addr(v: &Value, v4: bool) -> Result<IpAddr, String> {
    let a: IpAddr = v
        .as_str()
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("address {v}"))?;
    if a.is_ipv4() != v4 {
        return Err(format!("address {a} of the other family"));
    }
    Ok(a)
}

fn addr_range(v: &Value, v4: bool) -> Result<AddrRange, String> {
    if let Some(p) = v.get("prefix") {
        let addr = parse_addr(p.get("addr").unwrap_or(&Value::Null), v4)?;
        let len = p
            .get("len")
            .and_then(Value::as_u64)
            .and_then(|l| u8::try_from(l).ok())
            .ok_or("prefix length")?;
        return AddrRange::prefix(addr, len).ok_or_else(|| format!("prefix {addr}/{len}"));
    }
    if let Some(Value::Array(r)) = v.get("range") {
        if let [a, b] = r.as_slice() {
            return Ok(AddrRange {
                lo: parse_addr(a, v4)?,
                hi: parse_addr(b, v4)?,
            });
        }
    }
    Ok(AddrRange::single(parse_addr(v, v4)?))
}

fn if_name(v: &Value) -> Result<IfName, String> {
    match v {
        Value::String(s) => {
            if let Some(stem) = s.strip_suffix('*').filter(|stem| !stem.ends_with('\\')) {
                Ok(IfName {
                    name: stem.to_string(),
                    prefix: true,
                })
            } else {
                Ok(IfName {
                    name: s.replace("\\*", "*"),
                    prefix: false,
                })
            }
        }
        // An interface index nft could not name; 1 is always lo.
        Value::Number(n) if n.as_u64() == Some(1) => Ok(IfName {
            name: "lo".into(),
            prefix: false,
        }),
        other => Err(format!("interface {other}")),
    }
}

fn strings(elems: &[Value]) -> Result<Vec<String>, String> {
    elems
        .iter()
        .map(|e| {
            e.as_str()
                .map(str::to_string)
                .ok_or_else(|| format!("value {e}"))
        })
        .collect()
}

/// Compact JSON for messages, bounded.
fn short(v: &Value) -> String {
    let s = v.to_string();
    if s.len() > 160 {
        let mut end = 160;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        format!("{}…", &s[..end])
    } else {
        s
    }
}

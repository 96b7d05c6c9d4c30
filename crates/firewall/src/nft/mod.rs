//! nftables: the ruleset from `nft -j list ruleset` (libnftables-json(5)), kept as
//! `serde_json::Value` per expression so that one expression we do not know never stops the
//! parse; it only makes that rule "could not be evaluated".

mod convert;
mod listing;
mod render;
#[cfg(test)]
mod tests;

use std::collections::HashMap;

use serde_json::Value;

use crate::verdict::Family;

pub(crate) use convert::to_tables;

#[derive(Debug, thiserror::Error)]
pub enum NftParseError {
    #[error("nft output is not JSON: {0}")]
    Json(#[from] serde_json::Error),
    #[error("nft output has no \"nftables\" array")]
    NoRuleset,
    #[error("malformed {kind} object in nft output: missing {field}")]
    Malformed {
        kind: &'static str,
        field: &'static str,
    },
}

#[derive(Debug, Clone)]
pub(crate) struct NftTable {
    pub family: String,
    pub name: String,
}

#[derive(Debug, Clone)]
pub(crate) struct NftChain {
    pub family: String,
    pub table: String,
    pub name: String,
    /// Set for base chains.
    pub hook: Option<String>,
    pub kind: Option<String>,
    pub prio: Option<i64>,
    pub policy: Option<String>,
}

#[derive(Debug, Clone)]
pub(crate) struct NftRule {
    pub family: String,
    pub table: String,
    pub chain: String,
    pub handle: u64,
    pub expr: Vec<Value>,
    pub comment: Option<String>,
}

#[derive(Debug, Clone)]
pub(crate) struct NftSet {
    pub family: String,
    pub table: String,
    pub name: String,
    /// Set elements, or for a map `[key, data]` pairs, as nft prints them.
    pub elem: Vec<Value>,
}

/// Key of a rule's printed text: family, table, chain, handle.
type ListingKey = (String, String, String, u64);

/// The nftables ruleset as read.
#[derive(Debug, Clone, Default)]
pub struct NftRuleset {
    pub(crate) tables: Vec<NftTable>,
    pub(crate) chains: Vec<NftChain>,
    pub(crate) rules: Vec<NftRule>,
    pub(crate) sets: Vec<NftSet>,
    /// Rule text from `nft -a list ruleset`, when that was read too.
    listing: HashMap<ListingKey, String>,
}

fn str_field(
    obj: &Value,
    kind: &'static str,
    field: &'static str,
) -> Result<String, NftParseError> {
    obj.get(field)
        .and_then(Value::as_str)
        .map(str::to_string)
        .ok_or(NftParseError::Malformed { kind, field })
}

impl NftRuleset {
    /// Parse `nft -j list ruleset` output.
    pub fn from_json(text: &str) -> Result<NftRuleset, NftParseError> {
        let doc: Value = serde_json::from_str(text)?;
        let items = doc
            .get("nftables")
            .and_then(Value::as_array)
            .ok_or(NftParseError::NoRuleset)?;
        let mut rs = NftRuleset::default();
        for item in items {
            if let Some(t) = item.get("table") {
                rs.tables.push(NftTable {
                    family: str_field(t, "table", "family")?,
                    name: str_field(t, "table", "name")?,
                });
            } else if let Some(c) = item.get("chain") {
                rs.chains.push(NftChain {
                    family: str_field(c, "chain", "family")?,
                    table: str_field(c, "chain", "table")?,
                    name: str_field(c, "chain", "name")?,
                    hook: c.get("hook").and_then(Value::as_str).map(str::to_string),
                    kind: c.get("type").and_then(Value::as_str).map(str::to_string),
                    prio: c.get("prio").and_then(parse_prio),
                    policy: c.get("policy").and_then(Value::as_str).map(str::to_string),
                });
            } else if let Some(r) = item.get("rule") {
                rs.rules.push(NftRule {
                    family: str_field(r, "rule", "family")?,
                    table: str_field(r, "rule", "table")?,
                    chain: str_field(r, "rule", "chain")?,
                    handle: r.get("handle").and_then(Value::as_u64).ok_or(
                        NftParseError::Malformed {
                            kind: "rule",
                            field: "handle",
                        },
                    )?,
                    expr: r
                        .get("expr")
                        .and_then(Value::as_array)
                        .cloned()
                        .unwrap_or_default(),
                    comment: r.get("comment").and_then(Value::as_str).map(str::to_string),
                });
            } else if let Some(s) = item.get("set").or_else(|| item.get("map")) {
                rs.sets.push(NftSet {
                    family: str_field(s, "set", "family")?,
                    table: str_field(s, "set", "table")?,
                    name: str_field(s, "set", "name")?,
                    elem: s
                        .get("elem")
                        .and_then(Value::as_array)
                        .cloned()
                        .unwrap_or_default(),
                });
            }
        }
        Ok(rs)
    }

    /// Attach the rule texts of `nft -a list ruleset`, so blamed rules read as nft prints
    /// them. Without it, rules are rendered from the JSON.
    pub fn with_listing(mut self, listing: &str) -> NftRuleset {
        self.listing = listing::rule_texts(listing);
        self
    }

    /// Tables as (family, name).
    pub fn tables(&self) -> impl Iterator<Item = (&str, &str)> {
        self.tables
            .iter()
            .map(|t| (t.family.as_str(), t.name.as_str()))
    }

    pub fn rule_count(&self) -> usize {
        self.rules.len()
    }

    /// Handles of a chain's rules in order (used to give iptables-nft rules their handle).
    pub(crate) fn chain_handles(&self, family: Family, table: &str, chain: &str) -> Vec<u64> {
        self.rules
            .iter()
            .filter(|r| r.family == family.as_str() && r.table == table && r.chain == chain)
            .map(|r| r.handle)
            .collect()
    }

    pub(crate) fn rule_text(&self, rule: &NftRule) -> String {
        let key = (
            rule.family.clone(),
            rule.table.clone(),
            rule.chain.clone(),
            rule.handle,
        );
        match self.listing.get(&key) {
            Some(text) => text.clone(),
            None => render::rule(rule),
        }
    }
}

/// Priorities are numbers in JSON output; accept the standard names too.
fn parse_prio(v: &Value) -> Option<i64> {
    if let Some(n) = v.as_i64() {
        return Some(n);
    }
    let s = v.as_str()?;
    Some(match s {
        "raw" => -300,
        "mangle" => -150,
        "dstnat" => -100,
        "filter" => 0,
        "security" => 50,
        "srcnat" => 100,
        other => other.parse().ok()?,
    })
}

pub(crate) fn family_of(s: &str) -> Option<Family> {
    match s {
        "ip" => Some(Family::Ip),
        "ip6" => Some(Family::Ip6),
        "inet" => Some(Family::Inet),
        _ => None,
    }
}

//! All sources together, and the verdict for one packet.
//!
//! iptables-nft (Debian's `iptables`) keeps its rules in nftables tables (`ip filter`,
//! `ip6 filter`, ...) that `nft -j` shows with opaque `xt` expressions, while iptables-save
//! shows them completely. So a table that iptables-save (nf_tables back end) printed is
//! evaluated from its text and left out of the nft evaluation: each rule is counted once,
//! and its nft handle is still reported. A table iptables-save could not print ("is
//! incompatible") is a native nft table and is evaluated from JSON. When iptables-save is
//! unavailable, the nft view is evaluated, and an `xt` match makes its rule unknown.
//!
//! Base chains of all sources run together in priority order per hook, as in the kernel:
//! an accept ends one base chain only, a drop or reject anywhere ends the packet.

use crate::eval;
use crate::gather::{Gathered, IptablesSource};
use crate::iptables::{self, IptablesBackend};
use crate::nft::{self, NftRuleset};
use crate::packet::{Packet, PacketFamily};
use crate::verdict::{Family, PathVerdict};

#[derive(Debug, Clone)]
pub struct FirewallSnapshot {
    pub nft: Gathered<NftRuleset>,
    pub iptables: Vec<IptablesSource>,
    /// Facts about how the sources were read, carried into `Passed` notes.
    pub notes: Vec<String>,
}

impl FirewallSnapshot {
    pub fn new(nft: Gathered<NftRuleset>, iptables: Vec<IptablesSource>) -> FirewallSnapshot {
        FirewallSnapshot {
            nft,
            iptables,
            notes: Vec::new(),
        }
    }

    /// What the packet filter does to `packet`.
    pub fn evaluate(&self, packet: &Packet) -> PathVerdict {
        let pkt = packet.normalized();
        let nft_rs = self.nft.as_read();
        let mut notes = self.notes.clone();

        // Tables iptables-save printed from nf_tables: evaluate them from its text.
        let mut skip: Vec<(Family, String)> = Vec::new();
        for src in &self.iptables {
            if let Gathered::Read(rs) = &src.result {
                if rs.backend == Some(IptablesBackend::Nft) {
                    for t in rs.tables() {
                        skip.push((rs.family, t.to_string()));
                    }
                }
            }
        }
        let mut tables = Vec::new();
        if let Some(rs) = nft_rs {
            for (f, t) in &skip {
                if rs.tables().any(|(rf, rt)| rf == f.as_str() && rt == t) {
                    notes.push(format!(
                        "nft table {} {t} belongs to iptables-nft and was evaluated from {}",
                        f.as_str(),
                        if *f == Family::Ip6 {
                            "ip6tables-save"
                        } else {
                            "iptables-save"
                        }
                    ));
                }
            }
            tables.extend(nft::to_tables(rs, &skip));
        }
        for src in &self.iptables {
            if let Gathered::Read(rs) = &src.result {
                tables.extend(iptables::to_tables(rs, nft_rs));
            }
        }

        // Sources that could hold rules for this packet but could not be read.
        let mut missing: Vec<String> = Vec::new();
        if let Gathered::Unavailable { reason, fix } = &self.nft {
            missing.push(format!("nftables ruleset: {reason} (fix: {fix})"));
        }
        for src in &self.iptables {
            let relevant = match src.family {
                Family::Ip6 => pkt.family() == PacketFamily::V6,
                _ => pkt.family() == PacketFamily::V4,
            };
            if let (true, Gathered::Unavailable { reason, fix }) = (relevant, &src.result) {
                missing.push(format!("{}: {reason} (fix: {fix})", src.command));
            }
        }

        match eval::evaluate(&tables, &pkt) {
            PathVerdict::Blocked {
                rule,
                action,
                hook,
                notes: mut blocked_notes,
            } => {
                // A rule that certainly matches on the path blocks whatever the unread
                // sources hold.
                blocked_notes.extend(missing.iter().map(|m| format!("not read: {m}")));
                PathVerdict::Blocked {
                    rule,
                    action,
                    hook,
                    notes: blocked_notes,
                }
            }
            PathVerdict::Passed {
                notes: passed_notes,
            } => {
                if missing.is_empty() {
                    notes.extend(passed_notes);
                    PathVerdict::Passed { notes }
                } else {
                    let mut reasons = missing;
                    reasons.push("the rules that could be read let the packet pass".into());
                    PathVerdict::Unknown {
                        reasons,
                        rules: Vec::new(),
                    }
                }
            }
            PathVerdict::Unknown { mut reasons, rules } => {
                reasons.extend(missing);
                PathVerdict::Unknown { reasons, rules }
            }
        }
    }
}

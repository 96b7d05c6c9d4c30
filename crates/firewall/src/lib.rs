//! Packet-filter rules on the path nginx → backend: read nftables and iptables rulesets and
//! evaluate them for the exact SYN nginx sends, naming the one rule that drops or rejects it.
//!
//! Evaluation is three-valued: a rule whose match we cannot model (or that depends on
//! something we cannot know, like the output interface of a remote backend) is explored both
//! ways. A rule is blamed only when every way gives the same block; otherwise the verdict is
//! `Unknown` naming the rules that could not be evaluated. See `snapshot.rs` for how the
//! iptables-nft tables that appear in both `nft` and `iptables-save` output are counted once.

mod eval;
pub mod fix;
mod gather;
pub mod iptables;
mod ir;
pub mod nft;
mod packet;
mod snapshot;
#[cfg(test)]
mod testutil;
mod verdict;

pub use fix::suggest_fix;
pub use gather::{gather_with, Gathered, IptablesSource};
pub use iptables::{IptablesBackend, IptablesParseError, IptablesRuleset};
pub use nft::{NftParseError, NftRuleset};
pub use packet::{Packet, PacketFamily};
pub use snapshot::FirewallSnapshot;
pub use verdict::{Action, Backend, Family, Hook, PathVerdict, RuleRef};

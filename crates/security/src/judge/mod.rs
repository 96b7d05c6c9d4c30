//! From what was read to a judgement for one upstream: a denial of nginx for this socket or
//! port while the LSM enforces breaks; a denial that was only logged (permissive, complain) or
//! a boolean that forbids the connection without a logged denial is a warning; a source that
//! matters and could not be read is unknown, never clear.

mod apparmor;
mod selinux;

pub use apparmor::judge_apparmor;
pub use selinux::judge_selinux;

use serde::Serialize;
use why502_model::{CauseId, Evidence};

use crate::apparmor_log::AppArmorEvent;
use crate::avc::AvcDenial;
use crate::logs::Coverage;

/// The newest denial lines quoted as evidence; the summary counts them all.
const MAX_EVIDENCE_LINES: usize = 3;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SecurityCause {
    SelinuxDenied,
    AppArmorDenied,
}

impl SecurityCause {
    /// The contract's cause id.
    pub fn cause_id(self) -> CauseId {
        match self {
            SecurityCause::SelinuxDenied => CauseId::SelinuxDenied,
            SecurityCause::AppArmorDenied => CauseId::ApparmorDenied,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "judgement")]
pub enum SecurityJudgement {
    /// The LSM refuses nginx this socket or port.
    Break {
        cause: SecurityCause,
        summary: String,
        evidence: Vec<Evidence>,
        fix: String,
    },
    /// A risk: denials logged but not enforced, or a policy setting that forbids the
    /// connection with no denial seen.
    Warn {
        cause: SecurityCause,
        summary: String,
        evidence: Vec<Evidence>,
        fix: String,
    },
    /// Nothing denies nginx this destination; `checked` says what was looked at.
    Clear { checked: Vec<String> },
    /// A source that could show a denial could not be read.
    Unknown { reason: String, fix: String },
}

impl SecurityJudgement {
    /// Break first, then unknown (could not look), then warning, then clear: the contract's
    /// status order. Clear lists merge.
    pub fn combine(self, other: SecurityJudgement) -> SecurityJudgement {
        use SecurityJudgement::*;
        let rank = |j: &SecurityJudgement| match j {
            Break { .. } => 0,
            Unknown { .. } => 1,
            Warn { .. } => 2,
            Clear { .. } => 3,
        };
        match (self, other) {
            (Clear { mut checked }, Clear { checked: more }) => {
                checked.extend(more);
                Clear { checked }
            }
            (
                Unknown { reason, fix },
                Unknown {
                    reason: r2,
                    fix: f2,
                },
            ) => Unknown {
                reason: format!("{reason}; {r2}"),
                fix: format!("{fix}; {f2}"),
            },
            (a, b) => {
                if rank(&b) < rank(&a) {
                    b
                } else {
                    a
                }
            }
        }
    }
}

pub(crate) fn quote_avc(denials: &[&AvcDenial]) -> Vec<Evidence> {
    denials
        .iter()
        .rev()
        .take(MAX_EVIDENCE_LINES)
        .map(|d| Evidence::new(d.source.clone(), d.line.clone()))
        .collect()
}

pub(crate) fn quote_apparmor(events: &[&AppArmorEvent]) -> Vec<Evidence> {
    events
        .iter()
        .rev()
        .take(MAX_EVIDENCE_LINES)
        .map(|e| Evidence::new(e.source.clone(), e.line.clone()))
        .collect()
}

pub(crate) fn plural(n: usize, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

pub(crate) fn coverage_note(coverage: &Coverage) -> String {
    match coverage {
        Coverage::Read { sources, truncated } if truncated.is_empty() => {
            format!("read {}", sources.join(", "))
        }
        Coverage::Read { sources, truncated } => format!(
            "read {} ({} only as far back as the byte cap)",
            sources.join(", "),
            truncated.join(", ")
        ),
        Coverage::Unreadable { reason, .. } => format!("denials not checked: {reason}"),
    }
}

//! One module per step of the tree, each with the same entry: `judge(target, cx)`, a pure
//! function of the upstream and the facts gathered for it (`JudgeCx`): no step reads the host
//! (that is `crate::facts` and `crate::sources`), and no step calls another.

pub mod backend_log;
pub mod backend_up;
pub mod direct_request;
pub mod error_log;
pub mod nginx_config;
pub mod resources;
pub mod security;
#[cfg(test)]
mod tests;

use std::time::SystemTime;

use why502_model::{CauseId, Evidence, Outcome, StepId};

use crate::facts::TargetFacts;
use crate::sources::Sources;
use crate::targets::UpstreamTarget;

/// An OOM kill as the kernel log keys it: pid and time.
pub type KillRef = (u32, SystemTime);

/// What a step concluded, before timing is added.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StepFinding {
    pub outcome: Outcome,
    /// For `Break`: the cause; for `Warn`: the risk (None = informational only).
    pub cause: Option<CauseId>,
    pub summary: String,
    pub fix: Option<String>,
    pub evidence: Vec<Evidence>,
    /// OOM kills this finding ties to its upstream's backend: they are not host-wide risks.
    pub claims: Vec<KillRef>,
}

impl StepFinding {
    pub fn pass(summary: impl Into<String>) -> Self {
        Self::new(Outcome::Pass, None, summary)
    }
    pub fn skip(summary: impl Into<String>) -> Self {
        Self::new(Outcome::Skip, None, summary)
    }
    pub fn unknown(summary: impl Into<String>) -> Self {
        Self::new(Outcome::Unknown, None, summary)
    }
    pub fn broken(cause: CauseId, summary: impl Into<String>) -> Self {
        Self::new(Outcome::Break, Some(cause), summary)
    }
    pub fn new(outcome: Outcome, cause: Option<CauseId>, summary: impl Into<String>) -> Self {
        StepFinding {
            outcome,
            cause,
            summary: summary.into(),
            fix: None,
            evidence: Vec::new(),
            claims: Vec::new(),
        }
    }
    pub fn with_fix(mut self, fix: impl Into<String>) -> Self {
        self.fix = Some(fix.into());
        self
    }
    /// Appends to the summary (nothing for an empty suffix).
    pub fn with_summary_suffix(mut self, suffix: impl AsRef<str>) -> Self {
        self.summary.push_str(suffix.as_ref());
        self
    }
    pub fn with_evidence(mut self, source: impl Into<String>, detail: impl Into<String>) -> Self {
        self.evidence.push(Evidence::new(source, detail));
        self
    }
}

/// Everything a step may judge: the run's sources, this upstream's facts, and why it runs.
pub struct JudgeCx<'a> {
    pub sources: &'a Sources,
    pub facts: &'a TargetFacts,
    /// The break an earlier step found that this step runs to explain (see `TreeStep::explains`).
    pub explaining: Option<CauseId>,
    pub now: SystemTime,
}

pub fn judge(id: StepId, target: &UpstreamTarget, cx: &JudgeCx<'_>) -> StepFinding {
    match id {
        StepId::ErrorLog => error_log::judge(target, cx),
        StepId::BackendUp => backend_up::judge(target, cx),
        StepId::DirectRequest => direct_request::judge(target, cx),
        StepId::BackendLog => backend_log::judge(target, cx),
        StepId::Resources => resources::judge(target, cx),
        StepId::Security => security::judge(target, cx),
        StepId::NginxConfig => match cx.sources.config.get() {
            Some(c) => c.per_upstream(),
            None => StepFinding::unknown("nginx -t had not finished when this step was judged"),
        },
    }
}

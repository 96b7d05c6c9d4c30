//! One module per step of the tree, each with the same entry: the upstream, the shared sources,
//! and the run's deadline in, a `StepFinding` out.

pub mod backend_log;
pub mod backend_process;
pub mod backend_up;
pub mod direct_request;
pub mod error_log;
pub mod nginx_config;
pub mod resources;
pub mod security;

use tokio::time::Instant;
use why502_model::{CauseId, Evidence, Outcome, StepId};

use crate::sources::Sources;
use crate::targets::UpstreamTarget;

/// What a step concluded, before timing is added.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StepFinding {
    pub outcome: Outcome,
    /// For `Break`: the cause; for `Warn`: the risk (None = informational only).
    pub cause: Option<CauseId>,
    pub summary: String,
    pub fix: Option<String>,
    pub evidence: Vec<Evidence>,
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
        }
    }
    pub fn with_fix(mut self, fix: impl Into<String>) -> Self {
        self.fix = Some(fix.into());
        self
    }
    pub fn with_evidence(mut self, source: impl Into<String>, detail: impl Into<String>) -> Self {
        self.evidence.push(Evidence::new(source, detail));
        self
    }
}

/// Everything a step may use.
pub struct StepContext<'a> {
    pub sources: &'a Sources,
    pub deadline: Instant,
}

pub async fn run_step(id: StepId, target: &UpstreamTarget, cx: &StepContext<'_>) -> StepFinding {
    match id {
        StepId::ErrorLog => error_log::check(target, cx),
        StepId::BackendUp => backend_up::check(target, cx).await,
        StepId::DirectRequest => direct_request::check(target, cx).await,
        StepId::NginxConfig => cx.sources.config.per_upstream(),
        StepId::Resources => resources::check(target, cx).await,
        StepId::BackendLog => backend_log::check(target, cx).await,
        StepId::Security => security::check(target, cx).await,
    }
}

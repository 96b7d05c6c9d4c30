use serde::{Deserialize, Serialize};

/// A step of the 502 decision tree. The ids are the contract's and never change.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    Serialize,
    Deserialize,
    schemars::JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum StepId {
    ErrorLog,
    BackendUp,
    DirectRequest,
    BackendLog,
    Resources,
    Security,
    NginxConfig,
}

impl StepId {
    pub const ALL: [StepId; 7] = [
        StepId::ErrorLog,
        StepId::BackendUp,
        StepId::DirectRequest,
        StepId::BackendLog,
        StepId::Resources,
        StepId::Security,
        StepId::NginxConfig,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            StepId::ErrorLog => "error_log",
            StepId::BackendUp => "backend_up",
            StepId::DirectRequest => "direct_request",
            StepId::BackendLog => "backend_log",
            StepId::Resources => "resources",
            StepId::Security => "security",
            StepId::NginxConfig => "nginx_config",
        }
    }
}

impl std::fmt::Display for StepId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What one step found for one upstream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Looked, and found nothing wrong.
    Pass,
    /// Found the break.
    Break,
    /// Nothing broken, but a risk.
    Warn,
    /// Not run: the walk stopped earlier, or the step does not apply to this upstream.
    Skip,
    /// Could not look (no permission, source missing, tool absent); the summary says why.
    Unknown,
}

/// The overall state of an upstream or of the whole report.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    Serialize,
    Deserialize,
    schemars::JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Ok,
    Warning,
    Unknown,
    Break,
}

impl Status {
    /// The monitoring-plugin exit code of the contract.
    pub fn exit_code(self) -> i32 {
        match self {
            Status::Ok => 0,
            Status::Warning => 1,
            Status::Break => 2,
            Status::Unknown => 3,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Status::Ok => "ok",
            Status::Warning => "warning",
            Status::Unknown => "unknown",
            Status::Break => "break",
        }
    }

    /// The worse of two statuses: break > unknown > warning > ok.
    pub fn worst(self, other: Status) -> Status {
        self.max(other)
    }
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Pass => "pass",
            Outcome::Break => "break",
            Outcome::Warn => "warn",
            Outcome::Skip => "skip",
            Outcome::Unknown => "unknown",
        }
    }
}

use std::path::PathBuf;
use std::sync::atomic::AtomicUsize;
use std::sync::Arc;
use std::time::Duration;

use crate::agent_config::AgentConfig;

/// What the user asked for; every field has a zero-config default.
#[derive(Debug, Clone)]
pub struct Options {
    pub nginx_conf: Option<PathBuf>,
    pub nginx_pid: Option<u32>,
    pub error_logs: Vec<PathBuf>,
    pub since: Duration,
    pub upstream: Option<String>,
    pub server_name: Option<String>,
    pub all: bool,
    pub timeout: Duration,
    /// Normally /proc; tests point it elsewhere.
    pub proc_root: PathBuf,
    /// The agent's own config (`--config`): overrides, thresholds, host paths.
    pub agent: AgentConfig,
    /// Where the walk counts its upstreams (total, done), for a progress line.
    pub progress: Option<Arc<Progress>>,
}

/// How far a run's walk is: upstreams to walk and walked.
#[derive(Debug, Default)]
pub struct Progress {
    pub total: AtomicUsize,
    pub done: AtomicUsize,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            nginx_conf: None,
            nginx_pid: None,
            error_logs: Vec::new(),
            since: Duration::from_secs(3600),
            upstream: None,
            server_name: None,
            all: false,
            timeout: Duration::from_secs(10),
            proc_root: PathBuf::from("/proc"),
            agent: AgentConfig::default(),
            progress: None,
        }
    }
}

//! The report of one run: `why502.report.v1` of the contract. Fields are only ever added.

use serde::{Deserialize, Serialize};

use crate::{CauseId, Outcome, Status, StepId};

pub const SCHEMA: &str = "why502.report.v1";

/// A fact a verdict rests on, with where it was read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Evidence {
    /// `/var/log/nginx/error.log:1289`, `/proc/net/unix`, `stat /run/php/x.sock`...
    pub source: String,
    pub detail: String,
}

impl Evidence {
    pub fn new(source: impl Into<String>, detail: impl Into<String>) -> Self {
        Evidence {
            source: source.into(),
            detail: detail.into(),
        }
    }
}

/// The result of one step for one upstream.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct StepReport {
    pub step: StepId,
    pub outcome: Outcome,
    /// The cause the step points to (`break`, `warn`); serialized as `none` when it points to
    /// none, so panels and alert rules read every step the same way.
    #[serde(
        default,
        serialize_with = "cause_or_none",
        deserialize_with = "none_is_no_cause"
    )]
    #[schemars(with = "CauseId")]
    pub cause: Option<CauseId>,
    pub summary: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fix: Option<String>,
    pub evidence: Vec<Evidence>,
    pub duration_ms: u64,
    /// The error_log step only: what nginx logged about this upstream in the window, by class.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub classes: Option<Vec<LoggedClass>>,
}

/// One class of failure nginx logged about an upstream (`steps[].classes`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct LoggedClass {
    /// The error-log class (`connection_refused`, `read_timeout`, `temp_file`...).
    pub class: String,
    pub count: usize,
    /// RFC 3339, from nginx's local-time stamps.
    pub first: String,
    pub last: String,
    /// The newest line's message, as nginx wrote it.
    pub line: String,
    /// `/var/log/nginx/error.log @ 2026/11/21 03:12:09`
    pub source: String,
}

fn cause_or_none<S: serde::Serializer>(cause: &Option<CauseId>, s: S) -> Result<S::Ok, S::Error> {
    cause.unwrap_or(CauseId::None).serialize(s)
}

fn none_is_no_cause<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<CauseId>, D::Error> {
    let c = Option::<CauseId>::deserialize(d)?;
    Ok(c.filter(|c| *c != CauseId::None))
}

/// The one answer for an upstream: the step that broke (or the last that ran) and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Verdict {
    pub step: StepId,
    pub cause: CauseId,
    pub summary: String,
    pub fix: String,
    pub evidence: Vec<Evidence>,
}

/// Where nginx's configuration points at an upstream.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Reference {
    pub file: String,
    pub line: u32,
    pub server_name: Option<String>,
    pub location: Option<String>,
    /// The directive as written: `fastcgi_pass unix:/run/php/php8.2-fpm.sock`.
    #[serde(default)]
    pub directive: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Protocol {
    Http,
    Fastcgi,
    Uwsgi,
    Scgi,
    Grpc,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct UpstreamReport {
    /// `unix:/run/php/php8.2-fpm.sock` or `127.0.0.1:9000` (`[::1]:9000`, `backend.internal:3000`).
    pub address: String,
    /// The `upstream` block this server belongs to, if any.
    pub name: Option<String>,
    pub protocol: Protocol,
    /// `true` when nginx reaches it over TLS (`https://`, `grpcs://`).
    #[serde(default)]
    pub tls: bool,
    pub referenced_by: Vec<Reference>,
    pub status: Status,
    pub verdict: Verdict,
    pub steps: Vec<StepReport>,
    /// For an upstream that is not ok: when its failures began and ended, and what happened
    /// on the host around then (oldest first). Empty for a healthy upstream.
    #[serde(default)]
    pub timeline: Vec<TimelineEvent>,
    /// What the access log says of its requests over the window: for an upstream that is not
    /// ok, and for every upstream of a narrowed run (`--server-name`, `--upstream`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub traffic: Option<Traffic>,
    /// The container behind the address, as its engine describes it: the one a
    /// `docker-proxy` forwards to, whose cgroup holds the listener, or a stopped one that
    /// published the port. Absent when the address is no container's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container: Option<ContainerReport>,
}

/// A container, read from its engine's API (`GET /containers/{id}/json`, `/logs`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct ContainerReport {
    /// `docker` (dockerd) or `podman` (`podman system service`, its Docker-compatible API).
    pub engine: String,
    /// The engine's API socket that answered.
    pub socket: String,
    /// The full container id.
    pub id: String,
    pub name: String,
    pub image: String,
    /// `State.Status`: `running`, `exited`, `restarting`, `paused`, `created`, `dead`.
    pub state: String,
    /// `State.ExitCode` of its last run (137: SIGKILL, 143: SIGTERM).
    pub exit_code: i64,
    /// `State.OOMKilled`: the kernel OOM-killed a process of its last run.
    pub oom_killed: bool,
    /// `RestartCount`: how often the engine restarted it under its policy.
    pub restart_count: u64,
    /// `HostConfig.RestartPolicy.Name`: `no`, `always`, `unless-stopped`, `on-failure`.
    pub restart_policy: String,
    /// `HostConfig.Memory` in bytes (0: no limit of its own).
    pub memory_limit: u64,
    /// `State.Health.Status` (`starting`, `healthy`, `unhealthy`), when it has a health check.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health: Option<String>,
    /// The last health probe's output.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health_output: Option<String>,
    /// RFC 3339.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<String>,
    /// RFC 3339; absent while it runs and never stopped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<String>,
    /// How the address leads to it: `docker-proxy (pid 812) forwards to it at 172.17.0.2:80`,
    /// `it publishes 127.0.0.1:8080->80/tcp`.
    pub tie: String,
    /// Its last log lines (read when it is not running, restarts, or is unhealthy), oldest
    /// first.
    #[serde(default)]
    pub last_lines: Vec<String>,
}

/// Requests, 502s and 504s from nginx's access log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Traffic {
    /// The seconds the counts cover (the window, or less when the read stopped at its cap).
    pub window_s: u64,
    pub requests: u64,
    pub status_502: u64,
    pub status_504: u64,
    /// Minute by minute, oldest first (minutes without requests left out).
    pub per_minute: Vec<MinuteCounts>,
    /// `upstream`: the lines whose `$upstream_addr` names this upstream; `server`: the lines
    /// of the sites that use it (their own access log, or `$host`).
    pub by: String,
    /// The access log(s) read.
    pub source: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct MinuteCounts {
    /// The minute's start, RFC 3339.
    pub at: String,
    pub requests: u64,
    pub status_502: u64,
    pub status_504: u64,
}

/// One event of an upstream's timeline.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct TimelineEvent {
    /// RFC 3339.
    pub at: String,
    pub event: TimelineKind,
    pub detail: String,
    /// Where it was read: a log and its stamp, a file's mtime, the process table.
    pub source: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum TimelineKind {
    /// A configuration file of nginx or of the backend was modified.
    ConfigChanged,
    /// The backend started, or reloaded and was ready again.
    BackendStarted,
    /// The backend stopped (or began a reload).
    BackendExited,
    /// nginx reloaded its configuration (or its master started).
    NginxReloaded,
    /// A package was installed, upgraded or removed.
    PackageChanged,
    /// The kernel OOM-killed one of the backend's processes.
    OomKill,
    /// The first failure nginx logged for this upstream in the window.
    FirstFailure,
    /// The last one.
    LastFailure,
}

/// A host-wide finding not tied to one upstream (nginx -t, disk, OOM kills of others).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct HostCheck {
    pub step: StepId,
    pub outcome: Outcome,
    pub cause: CauseId,
    pub summary: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fix: Option<String>,
    pub evidence: Vec<Evidence>,
}

/// An nginx master found on the host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct MasterSummary {
    pub pid: u32,
    pub binary: Option<String>,
    pub conf: Option<String>,
    /// `true` when it runs in the agent's own network namespace.
    pub same_netns: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct NginxInfo {
    pub binary: Option<String>,
    pub conf: String,
    /// How the config was found: `flag`, `master`, `nginx -V`, `default`.
    #[serde(default)]
    pub conf_source: String,
    pub prefix: Option<String>,
    pub worker_user: Option<String>,
    pub master_pid: Option<u32>,
    /// When the running master last started or reloaded, RFC 3339.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub loaded_at: Option<String>,
    /// Other nginx masters on this host (other network namespaces, containers).
    #[serde(default)]
    pub other_masters: Vec<MasterSummary>,
    /// Config files changed on disk after the running master (re)loaded.
    #[serde(default)]
    pub changed_since_load: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Report {
    pub schema: String,
    pub status: Status,
    pub host: String,
    pub started_at: String,
    pub duration_ms: u64,
    pub nginx: NginxInfo,
    pub upstreams: Vec<UpstreamReport>,
    pub host_checks: Vec<HostCheck>,
    /// Problems met while diagnosing (unreadable sources, parse errors) that did not stop it.
    #[serde(default)]
    pub notes: Vec<String>,
    /// Where the run's time went, in order (an extension of the contract's report).
    #[serde(default)]
    pub phases: Vec<Phase>,
}

/// One phase of a run and its wall time in microseconds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Phase {
    pub phase: String,
    pub us: u64,
}

impl Report {
    /// The report's status: the worst of its upstreams and host checks.
    pub fn compute_status(upstreams: &[UpstreamReport], host_checks: &[HostCheck]) -> Status {
        let from_hosts = host_checks.iter().map(|h| match h.outcome {
            Outcome::Break => Status::Break,
            Outcome::Warn => Status::Warning,
            Outcome::Unknown => Status::Unknown,
            Outcome::Pass | Outcome::Skip => Status::Ok,
        });
        upstreams
            .iter()
            .map(|u| u.status)
            .chain(from_hosts)
            .fold(Status::Ok, Status::worst)
    }
}

/// What a run that could not diagnose answers in JSON (no nginx found, an unreadable config,
/// bad flags, a bad query to `serve`): the report's head, the error, and nothing diagnosed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct ErrorReport {
    pub schema: String,
    /// Always `unknown`.
    pub status: Status,
    pub host: String,
    pub started_at: String,
    pub duration_ms: u64,
    pub error: String,
    /// Always empty.
    pub upstreams: Vec<UpstreamReport>,
    /// Always empty.
    pub host_checks: Vec<HostCheck>,
    pub notes: Vec<String>,
    /// `serve` only: the HTTP status the error was answered with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http_status: Option<u16>,
}

impl ErrorReport {
    pub fn new(error: String, host: String, started_at: String, duration_ms: u64) -> ErrorReport {
        ErrorReport {
            schema: SCHEMA.to_string(),
            status: Status::Unknown,
            host,
            started_at,
            duration_ms,
            notes: vec![format!("could not diagnose: {error}")],
            error,
            upstreams: Vec::new(),
            host_checks: Vec::new(),
            http_status: None,
        }
    }
}

/// Every JSON document why502 answers with: a report, or an error report. The root of the
/// JSON Schema (docs/report.schema.json).
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
#[serde(untagged)]
pub enum ReportDocument {
    Report(Box<Report>),
    Error(ErrorReport),
}

/// The JSON Schema of `ReportDocument`, as committed at docs/report.schema.json.
pub fn report_schema() -> String {
    let schema = schemars::schema_for!(ReportDocument);
    serde_json::to_string_pretty(&schema).unwrap_or_default() + "\n"
}

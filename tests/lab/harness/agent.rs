//! Running the `why502` binary and checking its report.
//!
//! A failed check prints every mismatch at once together with the full
//! report and stderr, so whoever works on the agent sees the whole picture
//! from one test run.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use serde_json::Value;

use super::history::kernel_oom_kills;
use super::lab::Lab;
use super::process::{head, run_capped, tail, Captured};

/// Built by cargo because the lab is an integration test of the package.
pub const AGENT_BIN: &str = env!("CARGO_BIN_EXE_why502");

/// Runs the scenarios against another build (a release binary, an installed
/// package, a stub while debugging the harness) instead of `AGENT_BIN`.
pub const AGENT_OVERRIDE_ENV: &str = "WHY502_LAB_AGENT";

pub fn agent_bin() -> PathBuf {
    std::env::var_os(AGENT_OVERRIDE_ENV).map_or_else(|| PathBuf::from(AGENT_BIN), PathBuf::from)
}

/// Hard wall-clock cap for one agent run inside a namespace. The agent's own
/// default budget is 10 s, so 30 s only trips on a real hang.
pub const AGENT_CAP: Duration = Duration::from_secs(30);

const SHOWN_OUTPUT: usize = 16 * 1024;

/// One finished `why502` run.
#[derive(Debug)]
pub struct AgentRun {
    /// Arguments after the binary name, for messages.
    pub argv: Vec<String>,
    pub exit_code: i32,
    pub stdout: String,
    pub stderr: String,
    /// stdout parsed as JSON when `--json` / `--format json` was passed and
    /// parsing succeeded.
    pub json: Option<Value>,
    /// Why `json` is None although JSON was requested.
    pub json_error: Option<String>,
    /// The pids of the scenario's own stack while the agent ran (its daemons and their
    /// children): a kill of one of them is not a bystander's.
    pub stack_pids: Vec<u32>,
}

impl AgentRun {
    fn from_captured(argv: Vec<String>, out: Captured) -> AgentRun {
        let (json, json_error) = if wants_json(&argv) {
            match serde_json::from_str::<Value>(&out.stdout) {
                Ok(value) => (Some(value), None),
                Err(err) => (None, Some(format!("stdout is not JSON: {err}"))),
            }
        } else {
            (None, None)
        };
        AgentRun {
            argv,
            exit_code: out.exit_code,
            stdout: out.stdout,
            stderr: out.stderr,
            json,
            json_error,
            stack_pids: Vec::new(),
        }
    }

    /// Everything about this run, for panic messages.
    pub fn context(&self) -> String {
        let stdout = match &self.json {
            Some(value) => serde_json::to_string_pretty(value).unwrap_or_default(),
            None => self.stdout.clone(),
        };
        format!(
            "command: why502 {}\nexit code: {}\nstderr:\n{}\nstdout:\n{}",
            self.argv.join(" "),
            self.exit_code,
            tail(&self.stderr, SHOWN_OUTPUT),
            head(&stdout, SHOWN_OUTPUT)
        )
    }

    /// The parsed report; panics (with the raw output) if there is none.
    #[track_caller]
    pub fn report(&self) -> &Value {
        match &self.json {
            Some(value) => value,
            None => panic!(
                "why502 gave no JSON report ({})\n{}",
                self.json_error
                    .as_deref()
                    .unwrap_or("--json was not passed"),
                self.context()
            ),
        }
    }

    /// The `upstreams[]` entry for `address`; panics listing what is there.
    #[track_caller]
    pub fn upstream(&self, address: &str) -> &Value {
        find_upstream(self.report(), address)
            .unwrap_or_else(|| panic!("report has no upstream {address:?}\n{}", self.context()))
    }

    pub fn panicked(&self) -> bool {
        self.stderr.contains("panicked at")
    }

    /// Checks the run against `expect`; panics listing every mismatch.
    #[track_caller]
    pub fn assert(&self, expect: &Expect) {
        let killed = kernel_oom_kills();
        let is_bystander = |pid: u32| killed.contains(&pid) && !self.stack_pids.contains(&pid);
        let problems = expect.problems_with(self, &is_bystander);
        if !problems.is_empty() {
            panic!(
                "why502 verdict is not what the scenario expects:\n  - {}\n{}",
                problems.join("\n  - "),
                self.context()
            );
        }
    }
}

fn wants_json(argv: &[String]) -> bool {
    argv.iter().any(|arg| arg == "--json")
        || argv
            .windows(2)
            .any(|pair| pair[0] == "--format" && pair[1] == "json")
        || argv.iter().any(|arg| arg == "--format=json")
}

/// Runs an agent command under `cap`; a run that exceeds it is killed and
/// fails the test (a hang is a bug in its own right).
#[track_caller]
pub(super) fn run_agent_command(cmd: Command, argv: Vec<String>, cap: Duration) -> AgentRun {
    let out = run_capped(cmd, cap);
    let timed_out = out.timed_out;
    let run = AgentRun::from_captured(argv, out);
    assert!(
        !timed_out,
        "why502 did not return within {cap:?} and was killed\n{}",
        run.context()
    );
    if let Some(v) = &run.json {
        if let Err(e) = validate_report(v) {
            panic!("{e}\n{}", run.context());
        }
    }
    run
}

/// Every JSON report the lab sees, diagnosis or error report, must validate against the
/// committed schema (docs/report.schema.json).
pub fn validate_report(v: &Value) -> Result<(), String> {
    static VALIDATOR: std::sync::OnceLock<jsonschema::Validator> = std::sync::OnceLock::new();
    let validator = VALIDATOR.get_or_init(|| {
        let schema: Value = serde_json::from_str(include_str!("../../../docs/report.schema.json"))
            .expect("docs/report.schema.json is JSON");
        jsonschema::validator_for(&schema).expect("docs/report.schema.json is a valid schema")
    });
    let errors: Vec<String> = validator
        .iter_errors(v)
        .take(10)
        .map(|e| format!("  at {}: {e}", e.instance_path))
        .collect();
    if errors.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "the report does not validate against docs/report.schema.json:\n{}",
            errors.join("\n")
        ))
    }
}

impl Lab {
    /// `ip netns exec NS why502 diagnose <args...>`, capped at 30 s. The agent runs with its
    /// default window (`--since` 1h), as users run it: it sees the host's history (the kernel
    /// log is the machine's; see `history.rs`), and no scenario shrinks the window to hide it.
    #[track_caller]
    pub fn run_agent(&self, args: &[&str]) -> AgentRun {
        let argv: Vec<String> = std::iter::once("diagnose")
            .chain(args.iter().copied())
            .map(String::from)
            .collect();
        let cmd = self.netns.command(&agent_bin(), &argv);
        let stack = self.stack_pids();
        let mut run = run_agent_command(cmd, argv, AGENT_CAP);
        run.stack_pids = stack;
        run
    }

    /// `ip netns exec NS why502 <args...>` (no implied `diagnose`), capped like `run_agent`.
    #[track_caller]
    pub fn run_agent_raw(&self, args: &[&str]) -> AgentRun {
        let argv: Vec<String> = args.iter().map(|a| a.to_string()).collect();
        let cmd = self.netns.command(&agent_bin(), &argv);
        run_agent_command(cmd, argv, AGENT_CAP)
    }

    /// The pids of every process the lab started and of their descendants (nginx and php-fpm
    /// workers), now.
    pub fn stack_pids(&self) -> Vec<u32> {
        let mut pids: Vec<u32> = self
            .procs
            .iter()
            .filter_map(|proc| u32::try_from(proc.pid()).ok())
            .collect();
        let parents: Vec<(u32, u32)> = std::fs::read_dir("/proc")
            .into_iter()
            .flatten()
            .filter_map(Result::ok)
            .filter_map(|entry| {
                let pid: u32 = entry.file_name().to_str()?.parse().ok()?;
                let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
                let ppid = stat
                    .rsplit_once(") ")?
                    .1
                    .split_whitespace()
                    .nth(1)?
                    .parse()
                    .ok()?;
                Some((pid, ppid))
            })
            .collect();
        let mut grew = true;
        while grew {
            grew = false;
            for (pid, ppid) in &parents {
                if pids.contains(ppid) && !pids.contains(pid) {
                    pids.push(*pid);
                    grew = true;
                }
            }
        }
        pids
    }

    /// `run_agent` as another user: uid and gid `uid_gid`, supplementary groups `groups` only
    /// (e.g. `&["adm"]`), no capabilities — the agent as an unprivileged admin runs it.
    #[track_caller]
    pub fn run_agent_as(&self, uid_gid: u32, groups: &[&str], args: &[&str]) -> AgentRun {
        let mut argv: Vec<String> =
            vec![format!("--reuid={uid_gid}"), format!("--regid={uid_gid}")];
        if groups.is_empty() {
            argv.push("--clear-groups".to_string());
        } else {
            argv.push(format!("--groups={}", groups.join(",")));
        }
        argv.push(agent_bin().display().to_string());
        argv.push("diagnose".to_string());
        argv.extend(args.iter().map(|arg| arg.to_string()));
        let setpriv = super::requirements::find_program("setpriv")
            .unwrap_or_else(|err| panic!("lab: setpriv (util-linux) drops privileges: {err}"));
        let cmd = self.netns.command(&setpriv, &argv);
        let stack = self.stack_pids();
        let mut run = run_agent_command(cmd, argv, AGENT_CAP);
        run.stack_pids = stack;
        run
    }
}

/// Makes every mount but /proc, /sys and /dev read-only in a private mount namespace (what
/// systemd's ProtectSystem=strict does), then runs "$@". A fixed script; the argv comes after.
const PROTECT_SYSTEM_STRICT: &str = r#"findmnt -rn -o TARGET | while read -r m; do
  case "$m" in /proc|/proc/*|/sys|/sys/*|/dev|/dev/*) continue;; esac
  mount -o remount,bind,ro "$m" 2>/dev/null || true
done
touch /why502-write-probe 2>/dev/null && { rm -f /why502-write-probe; echo "the file system is still writable" >&2; exit 97; }
exec "$@""#;

impl Lab {
    /// `run_agent` as `unit` would run it: ProtectSystem=strict (everything read-only but the
    /// API file systems), NoNewPrivileges, and the unit's CapabilityBoundingSet as the only
    /// capabilities. The rest of the unit's sandboxing is not emulated (no systemd here).
    #[track_caller]
    pub fn run_agent_hardened(&self, unit: &Path, args: &[&str]) -> AgentRun {
        let text = std::fs::read_to_string(unit)
            .unwrap_or_else(|e| panic!("lab: cannot read {}: {e}", unit.display()));
        let caps: Vec<String> = text
            .lines()
            .filter_map(|l| l.trim().strip_prefix("CapabilityBoundingSet="))
            .flat_map(|l| l.split_whitespace())
            .map(|c| c.trim_start_matches("CAP_").to_ascii_lowercase())
            .collect();
        assert!(
            !caps.is_empty(),
            "{} sets no CapabilityBoundingSet",
            unit.display()
        );
        assert!(
            text.lines().any(|l| l.trim() == "ProtectSystem=strict"),
            "{} is not ProtectSystem=strict",
            unit.display()
        );
        let bounding = std::iter::once("-all".to_string())
            .chain(caps.iter().map(|c| format!("+{c}")))
            .collect::<Vec<_>>()
            .join(",");
        let unshare = super::requirements::find_program("unshare").expect("util-linux unshare");
        let setpriv = super::requirements::find_program("setpriv").expect("util-linux setpriv");
        let mut argv: Vec<String> = [
            "--mount",
            "--propagation",
            "private",
            "/bin/sh",
            "-c",
            PROTECT_SYSTEM_STRICT,
            "sh",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        argv.push(setpriv.display().to_string());
        argv.push(format!("--bounding-set={bounding}"));
        argv.push("--no-new-privs".to_string());
        argv.push(agent_bin().display().to_string());
        argv.push("diagnose".to_string());
        argv.extend(args.iter().map(|a| a.to_string()));
        let cmd = self.netns.command(&unshare, &argv);
        let stack = self.stack_pids();
        let mut run = run_agent_command(cmd, argv, AGENT_CAP);
        run.stack_pids = stack;
        run
    }
}

/// What a scenario expects from one run. Only the fields that were set are
/// checked; a panic in stderr always fails.
#[derive(Clone, Debug, Default)]
pub struct Expect {
    status: Option<String>,
    exit_code: Option<i32>,
    /// `Expect::healthy`: status ok and exit 0, or a warning (exit 1) that only the host's
    /// history explains (see `healthy`).
    healthy_on_a_host_with_history: bool,
    nginx_conf: Option<String>,
    upstreams: Vec<UpstreamExpect>,
}

/// Expectations for one `upstreams[]` entry, found by its address.
#[derive(Clone, Debug)]
pub struct UpstreamExpect {
    address: String,
    status: Option<String>,
    /// `verdict.step` must be one of these (empty: not checked).
    step: Vec<String>,
    cause: Option<String>,
    summary_contains: Vec<String>,
    /// Some `verdict.evidence[].detail` contains each of these.
    evidence_contains: Vec<String>,
    /// Checks on entries of the upstream's `steps[]`.
    steps: Vec<StepExpect>,
}

/// Expectations for one entry of an upstream's `steps[]`, found by its `step` id.
#[derive(Clone, Debug)]
pub struct StepExpect {
    step: String,
    outcome: Option<String>,
    /// `summary` contains at least one of these (empty: not checked).
    summary_contains_any: Vec<String>,
}

impl Expect {
    /// Top-level `status` and the exit code.
    pub fn report(status: &str, exit_code: i32) -> Expect {
        Expect {
            status: Some(status.into()),
            exit_code: Some(exit_code),
            ..Expect::default()
        }
    }

    /// Only the exit code.
    pub fn exit(exit_code: i32) -> Expect {
        Expect {
            exit_code: Some(exit_code),
            ..Expect::default()
        }
    }

    /// A healthy stack on a host with a past: the upstream ok with cause `none`, and the run
    /// either ok (exit 0) or a warning (exit 1) in which every upstream is ok and every host
    /// check that does not pass is an `oom_killed` warning naming only bystanders — pids the
    /// kernel log has an OOM kill of that are not processes of this stack (the lab's history
    /// kills, other scenarios' kills, kills from before the test run). Never a break, never
    /// unknown.
    pub fn healthy(address: &str) -> Expect {
        Expect {
            healthy_on_a_host_with_history: true,
            ..Expect::default()
        }
        .upstream(UpstreamExpect::at(address).status("ok").cause("none"))
    }

    /// One broken upstream: status break, exit 2, the upstream's verdict at
    /// `step` with `cause`.
    pub fn broken(address: &str, step: &str, cause: &str) -> Expect {
        Expect::report("break", 2).upstream(
            UpstreamExpect::at(address)
                .status("break")
                .step(step)
                .cause(cause),
        )
    }

    pub fn upstream(mut self, upstream: UpstreamExpect) -> Expect {
        self.upstreams.push(upstream);
        self
    }

    /// The most recently added upstream's `verdict.summary` contains `needle`.
    pub fn summary_contains(mut self, needle: &str) -> Expect {
        let last = self
            .upstreams
            .pop()
            .expect("summary_contains needs an upstream expectation first");
        self.upstreams.push(last.summary_contains(needle));
        self
    }

    /// `nginx.conf` in the report equals `path`.
    pub fn nginx_conf(mut self, path: &Path) -> Expect {
        self.nginx_conf = Some(path.display().to_string());
        self
    }

    /// The mismatches, a bystander being any pid `is_bystander` says is one.
    fn problems_with(&self, run: &AgentRun, is_bystander: &dyn Fn(u32) -> bool) -> Vec<String> {
        let mut problems = Vec::new();
        if run.panicked() {
            problems.push("why502 panicked (see stderr)".to_string());
        }
        if let Some(code) = self.exit_code {
            if run.exit_code != code {
                problems.push(format!("exit code: expected {code}, got {}", run.exit_code));
            }
        }
        let Some(report) = &run.json else {
            problems.push(
                run.json_error
                    .clone()
                    .unwrap_or_else(|| "no JSON report (--json not passed?)".into()),
            );
            return problems;
        };
        check_str(
            &mut problems,
            "status",
            report.pointer("/status"),
            self.status.as_deref(),
        );
        if self.healthy_on_a_host_with_history {
            healthy_problems(report, run.exit_code, is_bystander, &mut problems);
        }
        check_str(
            &mut problems,
            "nginx.conf",
            report.pointer("/nginx/conf"),
            self.nginx_conf.as_deref(),
        );
        for upstream in &self.upstreams {
            upstream.check(report, &mut problems);
        }
        problems
    }
}

/// What `Expect::healthy` checks beyond the upstream: ok/0, or warning/1 with every upstream ok
/// and every host check that does not pass an `oom_killed` warning naming bystander pids only.
fn healthy_problems(
    report: &Value,
    exit_code: i32,
    is_bystander: &dyn Fn(u32) -> bool,
    problems: &mut Vec<String>,
) {
    let list = |key: &str| {
        report
            .get(key)
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
    };
    let status = report.get("status").and_then(Value::as_str).unwrap_or("");
    match (status, exit_code) {
        ("ok", 0) => {}
        ("warning", 1) => {
            for upstream in list("upstreams") {
                if upstream.get("status").and_then(Value::as_str) != Some("ok") {
                    problems.push(format!(
                        "a healthy stack's warning must come from the host's history, but upstream {} is {}",
                        upstream.get("address").unwrap_or(&Value::Null),
                        upstream.get("status").unwrap_or(&Value::Null)
                    ));
                }
            }
            for check in list("host_checks") {
                let field = |key: &str| check.get(key).and_then(Value::as_str).unwrap_or("");
                // A skip is a check not run on purpose (nginx -t in a per-site view), with why.
                if matches!(field("outcome"), "pass" | "skip") {
                    continue;
                }
                let summary = field("summary");
                let pids = pids_named(summary);
                let foreign: Vec<u32> = pids.iter().copied().filter(|p| !is_bystander(*p)).collect();
                if field("outcome") != "warn" || field("cause") != "oom_killed" {
                    problems.push(format!(
                        "host check {} is {} / {}: a healthy stack allows only bystander oom_killed warnings ({summary:?})",
                        field("step"),
                        field("outcome"),
                        field("cause")
                    ));
                } else if pids.is_empty() || !foreign.is_empty() {
                    problems.push(format!(
                        "host check oom_killed must name bystander pids only (OOM-killed, not of this stack); \
                         it names {pids:?}, of which {foreign:?} are not bystanders: {summary:?}"
                    ));
                }
            }
        }
        _ => problems.push(format!(
            "a healthy stack must be ok (exit 0) or a bystander warning (exit 1), got status {status:?} with exit {exit_code}"
        )),
    }
}

/// The pids a summary names as `(pid N)`.
fn pids_named(summary: &str) -> Vec<u32> {
    summary
        .match_indices("(pid ")
        .filter_map(|(at, needle)| {
            let digits: String = summary[at + needle.len()..]
                .chars()
                .take_while(char::is_ascii_digit)
                .collect();
            digits.parse().ok()
        })
        .collect()
}

impl UpstreamExpect {
    pub fn at(address: &str) -> UpstreamExpect {
        UpstreamExpect {
            address: address.into(),
            status: None,
            step: Vec::new(),
            cause: None,
            summary_contains: Vec::new(),
            evidence_contains: Vec::new(),
            steps: Vec::new(),
        }
    }

    pub fn status(mut self, status: &str) -> UpstreamExpect {
        self.status = Some(status.into());
        self
    }

    pub fn step(mut self, step: &str) -> UpstreamExpect {
        self.step = vec![step.into()];
        self
    }

    /// `verdict.step` is any of `steps` (for verdicts that a later, more
    /// direct probe may take over from the step that finds them today).
    pub fn step_one_of(mut self, steps: &[&str]) -> UpstreamExpect {
        self.step = steps.iter().map(|step| step.to_string()).collect();
        self
    }

    pub fn cause(mut self, cause: &str) -> UpstreamExpect {
        self.cause = Some(cause.into());
        self
    }

    pub fn summary_contains(mut self, needle: &str) -> UpstreamExpect {
        self.summary_contains.push(needle.into());
        self
    }

    /// Some entry of `verdict.evidence` has a `detail` containing `needle`
    /// (e.g. the nginx error-log line the verdict rests on).
    pub fn evidence_contains(mut self, needle: &str) -> UpstreamExpect {
        self.evidence_contains.push(needle.into());
        self
    }

    /// A check on the upstream's `steps[]` entry for one step id.
    pub fn step_entry(mut self, step: StepExpect) -> UpstreamExpect {
        self.steps.push(step);
        self
    }

    fn check(&self, report: &Value, problems: &mut Vec<String>) {
        let Some(upstream) = find_upstream(report, &self.address) else {
            problems.push(format!(
                "no upstream with address {:?}; report has {:?}",
                self.address,
                upstream_addresses(report)
            ));
            return;
        };
        let what = |field: &str| format!("upstream {} {field}", self.address);
        check_str(
            problems,
            &what("status"),
            upstream.pointer("/status"),
            self.status.as_deref(),
        );
        check_one_of(
            problems,
            &what("verdict.step"),
            upstream.pointer("/verdict/step"),
            &self.step,
        );
        check_str(
            problems,
            &what("verdict.cause"),
            upstream.pointer("/verdict/cause"),
            self.cause.as_deref(),
        );
        let summary = upstream
            .pointer("/verdict/summary")
            .and_then(Value::as_str)
            .unwrap_or("");
        for needle in &self.summary_contains {
            if !summary.contains(needle.as_str()) {
                problems.push(format!(
                    "{}: {summary:?} does not mention {needle:?}",
                    what("verdict.summary")
                ));
            }
        }
        let details: Vec<&str> = upstream
            .pointer("/verdict/evidence")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|item| item.get("detail").and_then(Value::as_str))
            .collect();
        for needle in &self.evidence_contains {
            if !details
                .iter()
                .any(|detail| detail.contains(needle.as_str()))
            {
                problems.push(format!(
                    "{}: no detail contains {needle:?}; details: {details:?}",
                    what("verdict.evidence")
                ));
            }
        }
        for step in &self.steps {
            step.check(upstream, &what("steps[]"), problems);
        }
    }
}

impl StepExpect {
    /// The `steps[]` entry whose `step` is `step` (e.g. `error_log`).
    pub fn at(step: &str) -> StepExpect {
        StepExpect {
            step: step.into(),
            outcome: None,
            summary_contains_any: Vec::new(),
        }
    }

    pub fn outcome(mut self, outcome: &str) -> StepExpect {
        self.outcome = Some(outcome.into());
        self
    }

    /// `summary` contains at least one of `needles`.
    pub fn summary_contains_any(mut self, needles: &[&str]) -> StepExpect {
        self.summary_contains_any = needles.iter().map(|needle| needle.to_string()).collect();
        self
    }

    fn check(&self, upstream: &Value, what: &str, problems: &mut Vec<String>) {
        let entries: Vec<&Value> = upstream
            .get("steps")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .collect();
        let Some(entry) = entries
            .iter()
            .find(|entry| entry.get("step").and_then(Value::as_str) == Some(self.step.as_str()))
        else {
            let ids: Vec<&str> = entries
                .iter()
                .filter_map(|entry| entry.get("step").and_then(Value::as_str))
                .collect();
            problems.push(format!(
                "{what}: no entry for step {:?}; steps are {ids:?}",
                self.step
            ));
            return;
        };
        let what = format!("{what} {}", self.step);
        check_str(
            problems,
            &format!("{what} outcome"),
            entry.get("outcome"),
            self.outcome.as_deref(),
        );
        if !self.summary_contains_any.is_empty() {
            let summary = entry.get("summary").and_then(Value::as_str).unwrap_or("");
            if !self
                .summary_contains_any
                .iter()
                .any(|needle| summary.contains(needle.as_str()))
            {
                problems.push(format!(
                    "{what} summary: {summary:?} mentions none of {:?}",
                    self.summary_contains_any
                ));
            }
        }
    }
}

/// `actual` is a string equal to one of `expected` (nothing to check when empty).
fn check_one_of(
    problems: &mut Vec<String>,
    what: &str,
    actual: Option<&Value>,
    expected: &[String],
) {
    match expected {
        [] => {}
        [only] => check_str(problems, what, actual, Some(only)),
        _ => {
            let actual_str = actual.and_then(Value::as_str);
            if !expected
                .iter()
                .any(|want| Some(want.as_str()) == actual_str)
            {
                let shown = actual.map_or_else(|| "nothing".to_string(), Value::to_string);
                problems.push(format!("{what}: expected one of {expected:?}, got {shown}"));
            }
        }
    }
}

fn check_str(
    problems: &mut Vec<String>,
    what: &str,
    actual: Option<&Value>,
    expected: Option<&str>,
) {
    let Some(expected) = expected else { return };
    if actual.and_then(Value::as_str) != Some(expected) {
        let shown = actual.map_or_else(|| "nothing".to_string(), Value::to_string);
        problems.push(format!("{what}: expected {expected:?}, got {shown}"));
    }
}

/// The `upstreams[]` entry whose `address` is exactly `address`.
pub fn find_upstream<'a>(report: &'a Value, address: &str) -> Option<&'a Value> {
    report
        .get("upstreams")?
        .as_array()?
        .iter()
        .find(|upstream| upstream.get("address").and_then(Value::as_str) == Some(address))
}

fn upstream_addresses(report: &Value) -> Vec<&str> {
    report
        .get("upstreams")
        .and_then(Value::as_array)
        .map(|list| {
            list.iter()
                .filter_map(|upstream| upstream.get("address").and_then(Value::as_str))
                .collect()
        })
        .unwrap_or_default()
}

/// Every upstream verdict and every host check: the report's findings.
pub fn findings(report: &Value) -> Vec<&Value> {
    let list = |key: &str| {
        report
            .get(key)
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
    };
    let verdicts = list("upstreams").filter_map(|upstream| upstream.get("verdict"));
    verdicts.chain(list("host_checks")).collect()
}

/// The findings (verdicts, host checks) whose `cause` is `cause`.
pub fn find_causes<'a>(report: &'a Value, cause: &str) -> Vec<&'a Value> {
    findings(report)
        .into_iter()
        .filter(|item| item.get("cause").and_then(Value::as_str) == Some(cause))
        .collect()
}

/// Whether a verdict / host check's `summary` or `evidence` names
/// `<file_name>:<line>` (e.g. `nginx.conf:12`, also as the tail of a full
/// path, but not `nginx.conf:120` or `xnginx.conf:12`).
pub fn mentions_file_line(item: &Value, file_name: &str, line: usize) -> bool {
    let mut texts = Vec::new();
    if let Some(summary) = item.get("summary") {
        collect_strings(summary, &mut texts);
    }
    if let Some(evidence) = item.get("evidence") {
        collect_strings(evidence, &mut texts);
    }
    let needle = format!("{file_name}:{line}");
    texts.iter().any(|text| contains_token(text, &needle))
}

fn collect_strings<'a>(value: &'a Value, out: &mut Vec<&'a str>) {
    match value {
        Value::String(text) => out.push(text),
        Value::Array(items) => items.iter().for_each(|item| collect_strings(item, out)),
        Value::Object(map) => map.values().for_each(|item| collect_strings(item, out)),
        _ => {}
    }
}

/// `needle` occurs in `text` not glued to a longer file name or number.
fn contains_token(text: &str, needle: &str) -> bool {
    text.match_indices(needle).any(|(start, _)| {
        let before = text[..start].chars().next_back();
        let after = text[start + needle.len()..].chars().next();
        let name_char = |c: char| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.');
        !before.is_some_and(name_char) && !after.is_some_and(|c| c.is_ascii_digit())
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn file_line_must_not_be_part_of_a_longer_token() {
        let item = json!({"summary": "unknown directive in /tmp/x/nginx.conf:12", "evidence": []});
        assert!(mentions_file_line(&item, "nginx.conf", 12));
        assert!(!mentions_file_line(&item, "nginx.conf", 1));
        assert!(!mentions_file_line(&item, "x.conf", 12));
        let in_evidence =
            json!({"summary": "bad", "evidence": [{"source": "/a/b.conf:3", "detail": "x"}]});
        assert!(mentions_file_line(&in_evidence, "b.conf", 3));
    }

    #[test]
    fn causes_are_found_in_verdicts_and_host_checks() {
        let report = json!({
            "upstreams": [{"address": "127.0.0.1:8000", "verdict": {"cause": "none"}}],
            "host_checks": [{"step": "nginx_config", "cause": "nginx_config_invalid"}]
        });
        assert_eq!(find_causes(&report, "nginx_config_invalid").len(), 1);
        assert!(find_upstream(&report, "127.0.0.1:8000").is_some());
    }

    fn finished_run(report: Value, exit_code: i32) -> AgentRun {
        AgentRun {
            argv: vec!["diagnose".into(), "--json".into()],
            exit_code,
            stdout: report.to_string(),
            stderr: String::new(),
            json: Some(report),
            json_error: None,
            stack_pids: Vec::new(),
        }
    }

    /// Every pid is a bystander in these tests, except 666.
    fn problems(expect: &Expect, run: &AgentRun) -> Vec<String> {
        expect.problems_with(run, &|pid| pid != 666)
    }

    /// The example report from the contract.
    fn contract_example() -> Value {
        json!({
            "schema": "why502.report.v1",
            "status": "break",
            "nginx": {"binary": "/usr/sbin/nginx", "conf": "/etc/nginx/nginx.conf", "worker_user": "www-data", "master_pid": 812},
            "upstreams": [{
                "address": "unix:/run/php/php8.2-fpm.sock",
                "name": "php",
                "protocol": "fastcgi",
                "status": "break",
                "verdict": {
                    "step": "backend_up",
                    "cause": "socket_permission",
                    "summary": "www-data cannot connect to /run/php/php8.2-fpm.sock (srw------- root:root)",
                    "fix": "...",
                    "evidence": []
                },
                "steps": []
            }],
            "host_checks": []
        })
    }

    #[test]
    fn a_report_matching_the_contract_passes() {
        let expect = Expect::broken(
            "unix:/run/php/php8.2-fpm.sock",
            "backend_up",
            "socket_permission",
        )
        .summary_contains("www-data")
        .nginx_conf(Path::new("/etc/nginx/nginx.conf"));
        assert_eq!(
            problems(&expect, &finished_run(contract_example(), 2)),
            Vec::<String>::new()
        );
    }

    #[test]
    fn step_alternatives_evidence_and_step_entries_are_checked() {
        let report = json!({
            "status": "break",
            "upstreams": [{
                "address": "127.0.0.1:8000",
                "status": "break",
                "verdict": {
                    "step": "error_log",
                    "cause": "upstream_timeout",
                    "summary": "...",
                    "evidence": [{"source": "/x/error.log:7", "detail": "upstream timed out (110: Connection timed out) while reading response header from upstream"}]
                },
                "steps": [{"step": "error_log", "outcome": "break", "summary": "1 timeout (110)"}]
            }]
        });
        let good = Expect::report("break", 2).upstream(
            UpstreamExpect::at("127.0.0.1:8000")
                .step_one_of(&["error_log", "direct_request"])
                .cause("upstream_timeout")
                .evidence_contains("upstream timed out (110: Connection timed out)")
                .step_entry(
                    StepExpect::at("error_log")
                        .outcome("break")
                        .summary_contains_any(&["x", "110"]),
                ),
        );
        assert_eq!(
            problems(&good, &finished_run(report.clone(), 2)),
            Vec::<String>::new()
        );
        let bad = Expect::report("break", 2).upstream(
            UpstreamExpect::at("127.0.0.1:8000")
                .step_one_of(&["backend_up", "direct_request"])
                .evidence_contains("prematurely closed")
                .step_entry(
                    StepExpect::at("error_log")
                        .outcome("warn")
                        .summary_contains_any(&["refused"]),
                )
                .step_entry(StepExpect::at("backend_up")),
        );
        let problems = problems(&bad, &finished_run(report, 2));
        // step, evidence, error_log outcome, error_log summary, no backend_up entry
        assert_eq!(problems.len(), 5, "{problems:#?}");
    }

    #[test]
    fn every_mismatch_is_listed() {
        let expect = Expect::broken(
            "unix:/run/php/php8.2-fpm.sock",
            "backend_up",
            "backend_down",
        )
        .summary_contains("nope");
        let found = problems(&expect, &finished_run(contract_example(), 0));
        assert_eq!(found.len(), 3, "{found:#?}"); // exit code, cause, summary
        let missing = problems(
            &Expect::healthy("127.0.0.1:8000"),
            &finished_run(contract_example(), 2),
        );
        assert!(
            missing
                .iter()
                .any(|problem| problem.contains("no upstream with address")),
            "{missing:#?}"
        );
    }

    #[test]
    fn healthy_allows_only_bystander_oom_warnings() {
        let report = |status: &str, upstream: &str, check: Value| {
            json!({
                "status": status,
                "upstreams": [{"address": "127.0.0.1:8000", "status": upstream, "verdict": {"cause": "none"}}],
                "host_checks": [check]
            })
        };
        let oom = |pids: &str| {
            json!({"step": "resources", "outcome": "warn", "cause": "oom_killed",
                   "summary": format!("the kernel OOM-killed 2 process(es) in the window that no upstream depends on: {pids}")})
        };
        let healthy = Expect::healthy("127.0.0.1:8000");
        let ok = report("ok", "ok", json!({"outcome": "pass"}));
        assert_eq!(
            problems(&healthy, &finished_run(ok, 0)),
            Vec::<String>::new()
        );
        let bystanders = report("warning", "ok", oom("python3 (pid 12), python3 (pid 13)"));
        assert_eq!(
            problems(&healthy, &finished_run(bystanders, 1)),
            Vec::<String>::new()
        );
        // A kill of the stack's own process (666 here), a warning of an upstream, another host
        // check, a break: each is a problem.
        let own = report(
            "warning",
            "ok",
            oom("python3 (pid 12), php-fpm8.2 (pid 666)"),
        );
        assert_eq!(problems(&healthy, &finished_run(own, 1)).len(), 1);
        let upstream = report("warning", "warning", json!({"outcome": "pass"}));
        assert_eq!(problems(&healthy, &finished_run(upstream, 1)).len(), 2);
        let disk = report(
            "warning",
            "ok",
            json!({"outcome": "warn", "cause": "disk_full", "summary": "/ is 95% full"}),
        );
        assert_eq!(problems(&healthy, &finished_run(disk, 1)).len(), 1);
        let broken = report("break", "ok", oom("python3 (pid 12)"));
        assert_eq!(problems(&healthy, &finished_run(broken, 2)).len(), 1);
    }
}

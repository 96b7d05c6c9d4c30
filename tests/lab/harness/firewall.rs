//! Packet-filter rules inside a scenario's namespace, and an nginx.conf with an http-level
//! snippet (an `upstream` block) for the scenarios that need one.
//!
//! Rules are applied with `ip netns exec NS nft|iptables ...` only: a namespace has its own
//! netfilter tables, so the root namespace's firewall is never touched, and `ip netns del`
//! (when the Lab is dropped) throws the rules away with the namespace.

use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use super::lab::{write_file, Lab};
use super::nginx::render_nginx_conf;
use super::process::{run_capped, tail, Captured};
use super::requirements::{find_program, skip_or_fail};
use super::wait::poll_until;

/// nft / iptables answer in milliseconds; the cap only guards against a wedged kernel.
const RULE_TOOL_CAP: Duration = Duration::from_secs(10);

/// How long nginx may take to write the error-log line after answering.
const ERROR_LOG_WAIT: Duration = Duration::from_secs(2);

/// Requests `prove_intermittent` sends at most: with round robin over two servers, a
/// failing one gets the first or second request.
const INTERMITTENT_TRIES: usize = 4;

/// Numbers the ruleset files one lab writes (`conf/rules-N.nft`).
static RULESET_COUNTER: AtomicUsize = AtomicUsize::new(0);

/// A lab whose scenario needs packet-filter tools (`nft`, `iptables`, ...) besides the usual
/// ones. None: skipped (or, in CI, a panic), like `Lab::new`.
pub fn firewall_lab(scenario: &str, tools: &[&str]) -> Option<Lab> {
    for tool in tools {
        if let Err(reason) = find_program(tool) {
            skip_or_fail(scenario, &reason);
            return None;
        }
    }
    Lab::new(scenario)
}

/// A packet-filter tool by name; `firewall_lab` checked that it exists.
fn tool(name: &str) -> PathBuf {
    find_program(name).unwrap_or_else(|reason| panic!("lab: {reason}"))
}

impl Lab {
    /// Runs `program args...` inside the namespace; panics with its output unless it exits 0.
    #[track_caller]
    fn run_rule_tool(&self, program: &str, args: &[&str]) -> Captured {
        let out = run_capped(self.netns.command(&tool(program), args), RULE_TOOL_CAP);
        assert!(
            !out.timed_out && out.exit_code == 0,
            "lab {}: `{program} {}` in netns {} failed (exit {}{}):\n{}{}",
            self.scenario(),
            args.join(" "),
            self.netns_name(),
            out.exit_code,
            if out.timed_out { ", timed out" } else { "" },
            out.stderr,
            out.stdout
        );
        out
    }

    /// Loads `ruleset` (nft syntax, e.g. `table inet filter { chain output { ... } }`) into the
    /// namespace with `nft -f FILE`. The file stays in `conf/` for inspection.
    #[track_caller]
    pub fn nft(&self, ruleset: &str) {
        let n = RULESET_COUNTER.fetch_add(1, Ordering::Relaxed);
        let file = self.path(&format!("conf/rules-{n}.nft"));
        write_file(&file, ruleset);
        let file = file.display().to_string();
        self.run_rule_tool("nft", &["-f", &file]);
    }

    /// `nft -a list ruleset` inside the namespace: the ruleset with every rule's handle.
    #[track_caller]
    pub fn nft_list(&self) -> String {
        self.run_rule_tool("nft", &["-a", "list", "ruleset"]).stdout
    }

    /// The handle nftables gave the one rule whose text (as `nft -a list ruleset` prints it)
    /// contains `needle`, e.g. `tcp dport 8000 reject`. Panics unless exactly one rule does.
    #[track_caller]
    pub fn nft_handle_of(&self, needle: &str) -> u64 {
        let listing = self.nft_list();
        let found: Vec<u64> = listing
            .lines()
            .filter_map(|line| {
                // A rule line: `tcp dport 8000 reject # handle 4`. Table and chain header
                // lines end in `{ # handle N`; they are not rules.
                let (rule, handle) = line.trim().rsplit_once(" # handle ")?;
                if rule.ends_with('{') || !rule.contains(needle) {
                    return None;
                }
                handle.trim().parse().ok()
            })
            .collect();
        match found.as_slice() {
            [handle] => *handle,
            _ => panic!(
                "lab {}: expected exactly one nft rule containing {needle:?}, found handles {found:?} in:\n{listing}",
                self.scenario()
            ),
        }
    }

    /// `iptables ARGS...` inside the namespace (e.g. `-A OUTPUT -p tcp --dport 8000 -j DROP`).
    #[track_caller]
    pub fn iptables(&self, args: &[&str]) {
        self.run_rule_tool("iptables", args);
    }

    /// Whether `iptables` is the nf_tables back end (`iptables v1.8.9 (nf_tables)`) and `nft`
    /// is there to list its rules: then they have nftables handles too.
    pub fn iptables_rules_have_nft_handles(&self) -> bool {
        find_program("nft").is_ok()
            && self
                .run_rule_tool("iptables", &["-V"])
                .stdout
                .contains("nf_tables")
    }

    /// `iptables-save` inside the namespace.
    #[track_caller]
    pub fn iptables_save(&self) -> String {
        self.run_rule_tool("iptables-save", &[]).stdout
    }

    /// Like `start_nginx`, with `http_snippet` (e.g. an `upstream pool { ... }` block) written
    /// into the `http {` block before nginx starts, since a location body cannot hold it.
    pub fn start_nginx_with_http_snippet(&mut self, http_snippet: &str, location_body: &str) {
        let text = render_nginx_conf(self.root(), location_body);
        let (head, rest) = text
            .split_once("http {\n")
            .expect("the nginx.conf template has an `http {` line");
        let snippet: String = http_snippet
            .lines()
            .map(|line| format!("    {}\n", line.trim_end()))
            .collect();
        self.start_nginx_with_conf(&format!("{head}http {{\n{snippet}{rest}"));
    }

    /// Proves a breakage that hits only some requests (one of several servers of an upstream
    /// block): of up to `INTERMITTENT_TRIES` requests through nginx at least one gets
    /// `failing_status` and, before or after it, one gets 200; and one error-log line contains
    /// every one of `log_needles`.
    #[track_caller]
    pub fn prove_intermittent(&self, failing_status: u16, log_needles: &[&str]) {
        let mut statuses = Vec::new();
        for _ in 0..INTERMITTENT_TRIES {
            statuses.push(self.curl_through_nginx("/"));
            if statuses.contains(&failing_status) && statuses.contains(&200) {
                break;
            }
        }
        assert!(
            statuses.contains(&failing_status) && statuses.contains(&200),
            "lab {}: expected some requests through nginx to get {failing_status} and some 200, got {statuses:?}\nnginx error log tail:\n{}",
            self.scenario(),
            tail(&self.error_log_text(), 4000)
        );
        let logged = poll_until(ERROR_LOG_WAIT, || {
            self.error_log_text()
                .lines()
                .any(|line| log_needles.iter().all(|needle| line.contains(needle)))
                .then_some(())
        });
        assert!(
            logged.is_some(),
            "lab {}: no nginx error-log line contains all of {log_needles:?}\nnginx error log tail:\n{}",
            self.scenario(),
            tail(&self.error_log_text(), 4000)
        );
    }
}

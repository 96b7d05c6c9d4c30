//! Reading the rulesets: `nft -j list ruleset` (plus `nft -a list ruleset` for the rule
//! texts), `iptables-save`, `ip6tables-save`, and the legacy dumps when iptables-nft says
//! legacy tables exist too. Explicit argv, bounded output and time.

use std::path::Path;
use std::time::Duration;

use why502_host::{run, CommandOutput, ExecError};

use crate::iptables::IptablesRuleset;
use crate::nft::NftRuleset;
use crate::snapshot::FirewallSnapshot;
use crate::verdict::Family;

/// Rulesets are small; a cap keeps a pathological one from eating memory.
const MAX_OUTPUT: usize = 8 * 1024 * 1024;

/// A source that was read, or why not and what would let us read it.
#[derive(Debug, Clone)]
pub enum Gathered<T> {
    Read(T),
    Unavailable { reason: String, fix: String },
}

impl<T> Gathered<T> {
    pub fn as_read(&self) -> Option<&T> {
        match self {
            Gathered::Read(t) => Some(t),
            Gathered::Unavailable { .. } => None,
        }
    }
}

/// One iptables-save style dump.
#[derive(Debug, Clone)]
pub struct IptablesSource {
    /// `Family::Ip` (iptables) or `Family::Ip6` (ip6tables).
    pub family: Family,
    /// The command that was run, e.g. `iptables-save`.
    pub command: String,
    pub result: Gathered<IptablesRuleset>,
}

impl FirewallSnapshot {
    /// Read every ruleset of this host, each command bounded by `timeout`.
    pub async fn gather(timeout: Duration) -> FirewallSnapshot {
        gather_with(&[], timeout).await
    }
}

/// Like [`FirewallSnapshot::gather`], with every command prefixed by `prefix` (tests use
/// `["ip", "netns", "exec", NS]` to read a temporary namespace's rules).
pub async fn gather_with(prefix: &[&str], timeout: Duration) -> FirewallSnapshot {
    let nft = locate("nft");
    let ipt = locate("iptables-save");
    let ip6t = locate("ip6tables-save");
    let json_argv = [nft.as_str(), "-j", "list", "ruleset"];
    let listing_argv = [nft.as_str(), "-a", "list", "ruleset"];
    let (ipt_argv, ip6t_argv) = ([ipt.as_str()], [ip6t.as_str()]);
    let (json, listing, v4, v6) = tokio::join!(
        run_prefixed(prefix, &json_argv, timeout),
        run_prefixed(prefix, &listing_argv, timeout),
        run_prefixed(prefix, &ipt_argv, timeout),
        run_prefixed(prefix, &ip6t_argv, timeout),
    );

    let nft_result = match checked("nft", json) {
        Ok(out) => match NftRuleset::from_json(&out.stdout) {
            Ok(rs) => Gathered::Read(match checked::<NftRuleset>("nft", listing) {
                Ok(text) => rs.with_listing(&text.stdout),
                // Rule texts are then rendered from the JSON; the verdict is the same.
                Err(_) => rs,
            }),
            Err(e) => Gathered::Unavailable {
                reason: format!("cannot parse `nft -j list ruleset` output: {e}"),
                fix: "run `nft -j list ruleset` by hand and report the output".into(),
            },
        },
        Err(unavailable) => unavailable,
    };

    let mut notes = Vec::new();
    let mut iptables = Vec::new();
    for (family, command, result) in [
        (Family::Ip, "iptables-save", v4),
        (Family::Ip6, "ip6tables-save", v6),
    ] {
        let legacy_present =
            matches!(&result, Ok(o) if o.stderr.contains("iptables-legacy tables present"));
        let gathered = match checked(command, result) {
            Ok(out) => parse_dump(command, &out.stdout, family, None),
            Err(Gathered::Unavailable { reason, fix }) if reason.ends_with("not installed") => {
                without_iptables_save(prefix, command, family, &mut notes)
                    .unwrap_or(Gathered::Unavailable { reason, fix })
            }
            Err(unavailable) => unavailable,
        };
        iptables.push(IptablesSource {
            family,
            command: command.to_string(),
            result: gathered,
        });
        if legacy_present {
            // iptables-nft does not show rules made with iptables-legacy; they still filter.
            let legacy = if family == Family::Ip6 {
                "ip6tables-legacy-save"
            } else {
                "iptables-legacy-save"
            };
            let out = run_prefixed(prefix, &[&locate(legacy)], timeout).await;
            let tool = legacy.trim_end_matches("-save");
            iptables.push(IptablesSource {
                family,
                command: legacy.to_string(),
                result: match checked(legacy, out) {
                    Ok(out) => parse_dump(legacy, &out.stdout, family, Some(tool)),
                    Err(unavailable) => unavailable,
                },
            });
        }
    }
    let mut snapshot = FirewallSnapshot::new(nft_result, iptables);
    snapshot.notes.extend(notes);
    snapshot
}

fn parse_dump(
    command: &str,
    text: &str,
    family: Family,
    tool: Option<&str>,
) -> Gathered<IptablesRuleset> {
    match IptablesRuleset::parse(text, family) {
        Ok(rs) => Gathered::Read(match tool {
            Some(t) => rs.with_tool(t),
            None => rs,
        }),
        Err(e) => Gathered::Unavailable {
            reason: format!("cannot parse `{command}` output: {e}"),
            fix: format!("run `{command}` by hand and report the output"),
        },
    }
}

/// Without iptables-save, iptables-nft rules are still visible to nft; only legacy tables
/// would be missed, and the kernel lists those in /proc/net/ip{,6}_tables_names.
fn without_iptables_save(
    prefix: &[&str],
    command: &str,
    family: Family,
    notes: &mut Vec<String>,
) -> Option<Gathered<IptablesRuleset>> {
    if !prefix.is_empty() {
        // Another namespace's /proc/net is not ours to read from here.
        return None;
    }
    let names = if family == Family::Ip6 {
        "/proc/net/ip6_tables_names"
    } else {
        "/proc/net/ip_tables_names"
    };
    let loaded = match why502_host::read_to_string_bounded(Path::new(names), 4096) {
        Ok(s) => s.split_whitespace().map(str::to_string).collect::<Vec<_>>(),
        // No x_tables module loaded: no legacy tables at all.
        Err(e) if e.is_not_found() => Vec::new(),
        Err(_) => return None,
    };
    if loaded.is_empty() {
        notes.push(format!(
            "{command} is not installed; no legacy tables are loaded ({names} is empty), and \
             iptables-nft rules are read through nft"
        ));
        IptablesRuleset::parse("", family).ok().map(Gathered::Read)
    } else {
        Some(Gathered::Unavailable {
            reason: format!(
                "{command} not installed, but legacy tables are loaded: {}",
                loaded.join(", ")
            ),
            fix: "install the iptables package so its rules can be read".into(),
        })
    }
}

/// Tools live in sbin, which a cron or panel PATH often lacks.
fn locate(name: &str) -> String {
    for dir in ["/usr/sbin", "/sbin", "/usr/bin", "/bin"] {
        let p = Path::new(dir).join(name);
        if p.is_file() {
            return p.to_string_lossy().into_owned();
        }
    }
    name.to_string()
}

async fn run_prefixed(
    prefix: &[&str],
    argv: &[&str],
    timeout: Duration,
) -> Result<CommandOutput, ExecError> {
    let full: Vec<&str> = prefix.iter().chain(argv).copied().collect();
    run(&full, timeout, MAX_OUTPUT).await
}

/// A successful, complete output, or why the source is unavailable.
fn checked<T>(
    name: &str,
    result: Result<CommandOutput, ExecError>,
) -> Result<CommandOutput, Gathered<T>> {
    let unavailable = |reason: String, fix: &str| Gathered::Unavailable {
        reason,
        fix: fix.to_string(),
    };
    let out = match result {
        Ok(out) => out,
        Err(ExecError::NotFound { .. }) => {
            let package = if name == "nft" {
                "nftables"
            } else {
                "iptables"
            };
            return Err(unavailable(
                format!("{name} not installed"),
                &format!("install the {package} package so its rules can be read"),
            ));
        }
        Err(ExecError::Timeout { timeout, .. }) => {
            return Err(unavailable(
                format!("{name} did not finish within {timeout:?}"),
                "raise --timeout",
            ))
        }
        Err(e) => {
            return Err(unavailable(
                format!("cannot run {name}: {e}"),
                "check the binary",
            ))
        }
    };
    if !out.success() {
        let first = out
            .stderr
            .lines()
            .find(|l| !l.trim().is_empty())
            .unwrap_or("")
            .trim();
        let denied = [
            "Operation not permitted",
            "Permission denied",
            "you must be root",
        ]
        .iter()
        .any(|m| out.stderr.contains(m));
        return Err(if denied {
            unavailable(
                format!("{name}: not permitted ({first})"),
                "run as root / CAP_NET_ADMIN",
            )
        } else {
            unavailable(
                format!("{name} exited with {:?}: {first}", out.code),
                &format!("run `{name}` by hand to see why"),
            )
        });
    }
    if out.stdout.len() >= MAX_OUTPUT {
        return Err(unavailable(
            format!("{name} printed more than {MAX_OUTPUT} bytes; not evaluated"),
            "inspect the ruleset by hand",
        ));
    }
    Ok(out)
}

#[cfg(test)]
mod tests;

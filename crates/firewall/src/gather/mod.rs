//! Reading the rulesets: `nft -j list ruleset` (plus `nft -a list ruleset` for the rule
//! texts), `iptables-save`, `ip6tables-save`, and the legacy dumps when iptables-nft says
//! legacy tables exist too. Explicit argv, bounded output and time. Whether nft need run at
//! all is asked of the kernel first (`nft_table_count`).

use std::path::Path;
use std::time::Duration;

use why502_host::netlink::{self, NetlinkError};
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
///
/// The kernel is asked first whether any nf_tables table exists: with none (a host without
/// rules), nft does not run and the nft ruleset is empty. Otherwise `nft -j` runs first and
/// says what else is worth running: the rule texts (`nft -a`) only
/// when there are rules, and `iptables-save` / `ip6tables-save` only when nft shows tables of
/// that family (iptables-nft keeps its rules there) or the kernel lists legacy tables. On a
/// host without rules that is one process instead of four, off a two-core host's critical
/// path; a host with rules pays one nft run of latency.
pub async fn gather_with(prefix: &[&str], timeout: Duration) -> FirewallSnapshot {
    let nft = locate("nft");
    let ipt = locate("iptables-save");
    let ip6t = locate("ip6tables-save");
    let json_argv = [nft.as_str(), "-j", "list", "ruleset"];
    let listing_argv = [nft.as_str(), "-a", "list", "ruleset"];
    let (ipt_argv, ip6t_argv) = ([ipt.as_str()], [ip6t.as_str()]);
    let started = std::time::Instant::now();
    let mut notes = Vec::new();
    // A kernel without a single nf_tables table has no nftables rule (iptables-nft's
    // included) to print: nft, a process of several ms, need not run. Asked only of our own
    // namespace; any doubt (not permitted, no nf_tables) runs nft as before.
    let no_tables = prefix.is_empty() && matches!(nft_table_count(), Ok(0));
    let parsed = if no_tables {
        notes.push(
            "nft not run: the kernel holds no nftables table (asked over netlink), so no \
             nftables or iptables-nft rule can filter"
                .to_string(),
        );
        Ok(Ok(NftRuleset::default()))
    } else {
        let json = run_prefixed(prefix, &json_argv, timeout).await;
        checked("nft", json).map(|out| NftRuleset::from_json(&out.stdout))
    };
    // One budget for the whole read: what follows nft gets what nft left of it.
    let timeout = timeout
        .saturating_sub(started.elapsed())
        .max(Duration::from_millis(1));
    let read = match &parsed {
        Ok(Ok(rs)) => Some(rs),
        _ => None,
    };
    let wants_listing = read.is_some_and(|rs| !rs.rules.is_empty());
    // Another namespace's /proc/net is not ours to read from here: run everything there.
    let nothing_for = |family: Family| -> Option<String> {
        if !prefix.is_empty() {
            return None;
        }
        let names = legacy_tables_file(family);
        dump_not_needed(read, family, names, legacy_tables(names).as_deref())
    };
    let (skip_v4, skip_v6) = (nothing_for(Family::Ip), nothing_for(Family::Ip6));
    notes.extend(skip_v4.iter().chain(skip_v6.iter()).cloned());
    let (skip_v4, skip_v6) = (skip_v4.is_some(), skip_v6.is_some());
    let (listing, v4, v6) = tokio::join!(
        async {
            match wants_listing {
                true => Some(run_prefixed(prefix, &listing_argv, timeout).await),
                false => None,
            }
        },
        async {
            match skip_v4 {
                true => None,
                false => Some(run_prefixed(prefix, &ipt_argv, timeout).await),
            }
        },
        async {
            match skip_v6 {
                true => None,
                false => Some(run_prefixed(prefix, &ip6t_argv, timeout).await),
            }
        },
    );

    let nft_result = match parsed {
        Ok(Ok(rs)) => Gathered::Read(match listing {
            Some(Ok(text)) if text.success() => rs.with_listing(&text.stdout),
            // Rule texts are then rendered from the JSON; the verdict is the same.
            _ => rs,
        }),
        Ok(Err(e)) => Gathered::Unavailable {
            reason: format!("cannot parse `nft -j list ruleset` output: {e}"),
            fix: "run `nft -j list ruleset` by hand and report the output".into(),
        },
        Err(unavailable) => unavailable,
    };

    let mut iptables = Vec::new();
    for (family, command, result) in [
        (Family::Ip, "iptables-save", v4),
        (Family::Ip6, "ip6tables-save", v6),
    ] {
        let Some(result) = result else {
            // Nothing it could print: an empty dump, as it would have been.
            if let Ok(empty) = IptablesRuleset::parse("", family) {
                iptables.push(IptablesSource {
                    family,
                    command: command.to_string(),
                    result: Gathered::Read(empty),
                });
            }
            continue;
        };
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

/// How many nf_tables tables (of every family) this network namespace holds, asked of the
/// kernel directly: NFT_MSG_GETTABLE over NETLINK_NETFILTER, the dump `nft list tables`
/// sends (linux/netfilter/nf_tables.h). Needs CAP_NET_ADMIN, as nft does.
pub fn nft_table_count() -> Result<usize, NetlinkError> {
    const NETLINK_NETFILTER: libc::c_int = 12;
    const NFNL_SUBSYS_NFTABLES: u16 = 10;
    const NFT_MSG_NEWTABLE: u16 = 0;
    const NFT_MSG_GETTABLE: u16 = 1;
    // struct nfgenmsg: family (AF_UNSPEC: all of them), version NFNETLINK_V0, res_id.
    let nfgen = [libc::AF_UNSPEC as u8, 0, 0, 0];
    let mut tables = 0;
    netlink::dump(
        NETLINK_NETFILTER,
        (NFNL_SUBSYS_NFTABLES << 8) | NFT_MSG_GETTABLE,
        &nfgen,
        |kind, _| {
            if kind == (NFNL_SUBSYS_NFTABLES << 8) | NFT_MSG_NEWTABLE {
                tables += 1;
            }
            Ok::<(), NetlinkError>(())
        },
    )?;
    Ok(tables)
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
    let names = legacy_tables_file(family);
    let loaded = legacy_tables(names)?;
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

/// Why `family`'s iptables-save need not run (the note that says so), or None when it must:
/// it can print rules only from nft tables of that family (iptables-nft) or from legacy
/// tables the kernel lists in `names_file` (`legacy`, None when that file was unreadable).
fn dump_not_needed(
    nft: Option<&NftRuleset>,
    family: Family,
    names_file: &str,
    legacy: Option<&[String]>,
) -> Option<String> {
    let nft = nft?;
    if nft.tables().any(|(f, _)| f == family.as_str()) || !legacy?.is_empty() {
        return None;
    }
    let command = match family {
        Family::Ip6 => "ip6tables-save",
        _ => "iptables-save",
    };
    Some(format!(
        "{command} not run: nft lists no {} table and {names_file} is empty, so it has no rules to print",
        family.as_str()
    ))
}

fn legacy_tables_file(family: Family) -> &'static str {
    match family {
        Family::Ip6 => "/proc/net/ip6_tables_names",
        _ => "/proc/net/ip_tables_names",
    }
}

/// The legacy (x_tables) tables the kernel has, from /proc/net/ip{,6}_tables_names; None when
/// that cannot be read (not root).
fn legacy_tables(names: &str) -> Option<Vec<String>> {
    match why502_host::read_to_string_bounded(Path::new(names), 4096) {
        Ok(s) => Some(s.split_whitespace().map(str::to_string).collect()),
        // No x_tables module loaded: no legacy tables at all.
        Err(e) if e.is_not_found() => Some(Vec::new()),
        Err(_) => None,
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

//! Step `security`: does a packet-filter rule drop or reject nginx's connection to the backend,
//! or does SELinux / AppArmor deny it? The rulesets and the LSM state are read once per run;
//! each upstream evaluates its own packets against them.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use why502_firewall::{suggest_fix, Action, Packet, PathVerdict};
use why502_model::{CauseId, Evidence, Outcome};
use why502_security::{Destination, SecurityJudgement};

use super::{JudgeCx, StepFinding};
use crate::targets::{TargetAddr, UpstreamTarget};

pub fn judge(target: &UpstreamTarget, cx: &JudgeCx<'_>) -> StepFinding {
    let src = cx.sources;
    let destinations: Vec<Destination> = match &target.addr {
        TargetAddr::Unix(p) => vec![Destination::Unix(p.clone())],
        TargetAddr::Tcp { host, port } => match cx.facts.resolved.as_ref() {
            Some(Ok(ips)) => ips
                .iter()
                .map(|ip| Destination::Tcp {
                    ip: *ip,
                    port: *port,
                })
                .collect(),
            Some(Err(p)) => {
                return StepFinding::unknown(format!(
                    "cannot evaluate the rules for {host}: {}",
                    p.summary
                ))
            }
            None => return StepFinding::unknown(format!("{host} was not resolved")),
        },
    };
    let mut parts: Vec<StepFinding> = Vec::new();
    for d in &destinations {
        if let Destination::Tcp { ip, port } = d {
            parts.push(firewall(*ip, *port, cx));
        }
        parts.push(match src.security_state() {
            Some(snapshot) => lsm(snapshot.judge(d)),
            None => StepFinding::unknown("SELinux and AppArmor were not read within --timeout"),
        });
    }
    // Break, then unknown (could not look), then warning, then pass.
    let rank = |f: &StepFinding| match f.outcome {
        Outcome::Break => 0,
        Outcome::Unknown => 1,
        Outcome::Warn => 2,
        _ => 3,
    };
    parts.sort_by_key(rank);
    let mut iter = parts.into_iter();
    let Some(first) = iter.next() else {
        return StepFinding::pass("nothing to check");
    };
    if first.outcome != Outcome::Pass {
        return first;
    }
    let rest: Vec<String> = iter.map(|f| f.summary).collect();
    StepFinding {
        summary: std::iter::once(first.summary.clone())
            .chain(rest)
            .collect::<Vec<_>>()
            .join("; "),
        ..first
    }
}

fn firewall(ip: IpAddr, port: u16, cx: &JudgeCx<'_>) -> StepFinding {
    let src = cx.sources;
    let Some(rules) = src.packet_filter() else {
        return StepFinding::unknown("the packet-filter rules were not read within --timeout");
    };
    // nginx's source address is chosen by the kernel; only "some local address" is known.
    let unspecified = match ip {
        IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
    };
    let local = src.is_local(ip) == Some(true);
    let packet = Packet::tcp(unspecified, ip, port, local);
    let verdict = rules.evaluate(&packet);
    let shown = match ip {
        IpAddr::V6(v6) => format!("[{v6}]:{port}"),
        IpAddr::V4(v4) => format!("{v4}:{port}"),
    };
    match &verdict {
        PathVerdict::Blocked {
            rule,
            action,
            hook,
            notes,
        } => {
            let did = match action {
                Action::Drop => {
                    "dropped (nginx waits, then logs a connect timeout and answers 504)"
                }
                Action::Reject => "rejected (nginx logs connect() failed and answers 502)",
            };
            let mut f = StepFinding::broken(
                CauseId::FirewallBlocked,
                format!(
                    "nginx's connection to {shown} is {did} at the {} hook by {rule}",
                    hook.as_str()
                ),
            )
            .with_fix(
                suggest_fix(&verdict, &packet)
                    .unwrap_or_else(|| CauseId::FirewallBlocked.fix().to_string()),
            )
            .with_evidence(rule.tool.clone(), rule.text.clone());
            f.evidence
                .extend(notes.iter().map(|n| Evidence::new("firewall", n.clone())));
            f
        }
        PathVerdict::Unknown { reasons, .. } => {
            let mut f = StepFinding::unknown(format!(
                "cannot tell whether the packet filter lets nginx reach {shown}: {}",
                reasons.first().cloned().unwrap_or_default()
            ))
            .with_fix("Run why502 as root (nft and iptables-save need CAP_NET_ADMIN).");
            f.evidence
                .extend(reasons.iter().map(|r| Evidence::new("firewall", r.clone())));
            f
        }
        PathVerdict::Passed { .. } => StepFinding::pass(format!(
            "no packet-filter rule stops nginx's SYN to {shown}"
        )),
    }
}

fn lsm(j: SecurityJudgement) -> StepFinding {
    match j {
        SecurityJudgement::Break {
            cause,
            summary,
            evidence,
            fix,
        } => StepFinding {
            evidence,
            ..StepFinding::broken(cause.cause_id(), summary).with_fix(fix)
        },
        SecurityJudgement::Warn {
            cause,
            summary,
            evidence,
            fix,
        } => StepFinding {
            evidence,
            ..StepFinding::new(Outcome::Warn, Some(cause.cause_id()), summary).with_fix(fix)
        },
        SecurityJudgement::Clear { checked } => StepFinding::pass(checked.join("; ")),
        SecurityJudgement::Unknown { reason, fix } => StepFinding::unknown(reason).with_fix(fix),
    }
}

//! AppArmor's judgement: a DENIED record of nginx for the destination breaks while nginx's
//! profile enforces; ALLOWED records (complain mode), or denials from before nginx left enforce
//! mode, warn; nginx unconfined is clear.

use why502_model::Evidence;

use super::{coverage_note, plural, quote_apparmor, SecurityCause, SecurityJudgement};
use crate::apparmor::{AppArmorState, AppArmorStatus, NginxConfinement};
use crate::apparmor_log::{AppArmorAction, AppArmorEvent};
use crate::logs::Coverage;
use crate::target::{Destination, NginxSubject};

pub fn judge_apparmor(
    state: &AppArmorState,
    coverage: &Coverage,
    subject: &NginxSubject,
    dest: &Destination,
) -> SecurityJudgement {
    match &state.status {
        AppArmorStatus::NotEnabled { reason } => {
            return SecurityJudgement::Clear {
                checked: vec![format!("AppArmor: not enabled ({reason})")],
            }
        }
        AppArmorStatus::Unknown { reason, fix } => {
            let denied = denied_events(state, subject, dest);
            if !denied.is_empty() {
                return apparmor_break(&denied, dest, None);
            }
            return SecurityJudgement::Unknown {
                reason: format!("AppArmor state unknown: {reason}"),
                fix: fix.clone(),
            };
        }
        AppArmorStatus::Enabled => {}
    }
    let confinement = state.confinement();
    let events = state.events_for(subject, dest);
    let denied: Vec<&AppArmorEvent> = events
        .iter()
        .copied()
        .filter(|e| e.action == AppArmorAction::Denied)
        .collect();
    let allowed: Vec<&AppArmorEvent> = events
        .iter()
        .copied()
        .filter(|e| e.action == AppArmorAction::Allowed)
        .collect();
    if !denied.is_empty() {
        match &confinement {
            NginxConfinement::Confined { label, source } if label.mode.enforces() => {
                let ev = Evidence::new(
                    source.clone(),
                    format!("{} ({})", label.profile, label.mode.as_str()),
                );
                return apparmor_break(&denied, dest, Some(ev));
            }
            NginxConfinement::Unknown { .. } => return apparmor_break(&denied, dest, None),
            NginxConfinement::Confined { label, source } => {
                let now = format!("{} ({})", label.profile, label.mode.as_str());
                let mut evidence = quote_apparmor(&denied);
                evidence.push(Evidence::new(source.clone(), now.clone()));
                return SecurityJudgement::Warn {
                    cause: SecurityCause::AppArmorDenied,
                    summary: format!(
                        "AppArmor denied nginx {} earlier in the window ({}); nginx now runs as {now}, which no longer refuses it",
                        dest.describe(),
                        plural(denied.len(), "DENIED record", "DENIED records")
                    ),
                    evidence,
                    fix: apparmor_fix(denied[denied.len() - 1], dest),
                };
            }
            NginxConfinement::Unconfined { source } => {
                let mut evidence = quote_apparmor(&denied);
                evidence.push(Evidence::new(source.clone(), "unconfined"));
                return SecurityJudgement::Warn {
                    cause: SecurityCause::AppArmorDenied,
                    summary: format!(
                        "AppArmor denied nginx {} earlier in the window ({}); nginx now runs unconfined",
                        dest.describe(),
                        plural(denied.len(), "DENIED record", "DENIED records")
                    ),
                    evidence,
                    fix: apparmor_fix(denied[denied.len() - 1], dest),
                };
            }
        }
    }
    if !allowed.is_empty() {
        let newest = allowed[allowed.len() - 1];
        let mut evidence = quote_apparmor(&allowed);
        if let NginxConfinement::Confined { label, source } = &confinement {
            evidence.push(Evidence::new(
                source.clone(),
                format!("{} ({})", label.profile, label.mode.as_str()),
            ));
        }
        return SecurityJudgement::Warn {
            cause: SecurityCause::AppArmorDenied,
            summary: format!(
                "nginx's AppArmor profile {} is in complain mode and logged {} for {}: allowed now, refused once the profile enforces",
                newest.profile.as_deref().unwrap_or("?"),
                plural(allowed.len(), "ALLOWED record", "ALLOWED records"),
                dest.describe()
            ),
            evidence,
            fix: apparmor_fix(newest, dest),
        };
    }
    match confinement {
        NginxConfinement::Unconfined { source } => SecurityJudgement::Clear {
            checked: vec![format!("AppArmor: nginx unconfined ({source})")],
        },
        NginxConfinement::Confined { label, source } if !label.mode.enforces() => {
            SecurityJudgement::Clear {
                checked: vec![format!(
                    "AppArmor: nginx confined by {} in {} mode ({source}), which refuses nothing; no record for {} ({})",
                    label.profile,
                    label.mode.as_str(),
                    dest.describe(),
                    coverage_note(coverage)
                )],
            }
        }
        confinement => {
            if let Coverage::Unreadable { reason, fix } = coverage {
                let who = match &confinement {
                    NginxConfinement::Confined { label, .. } => {
                        format!("nginx is confined by {} ({})", label.profile, label.mode.as_str())
                    }
                    _ => "nginx's confinement is unknown".to_string(),
                };
                return SecurityJudgement::Unknown {
                    reason: format!("AppArmor: {who} and {reason}"),
                    fix: fix.clone(),
                };
            }
            let who = match &confinement {
                NginxConfinement::Confined { label, source } => format!(
                    "nginx confined by {} ({}, {source})",
                    label.profile,
                    label.mode.as_str()
                ),
                NginxConfinement::Unknown { reason, .. } => {
                    format!("nginx's confinement unknown ({reason})")
                }
                NginxConfinement::Unconfined { .. } => "nginx unconfined".to_string(),
            };
            SecurityJudgement::Clear {
                checked: vec![format!(
                    "AppArmor: {who}; no DENIED record for {} in the window ({})",
                    dest.describe(),
                    coverage_note(coverage)
                )],
            }
        }
    }
}

fn denied_events<'a>(
    state: &'a AppArmorState,
    subject: &NginxSubject,
    dest: &Destination,
) -> Vec<&'a AppArmorEvent> {
    state
        .events_for(subject, dest)
        .into_iter()
        .filter(|e| e.action == AppArmorAction::Denied)
        .collect()
}

fn apparmor_break(
    denied: &[&AppArmorEvent],
    dest: &Destination,
    confinement_evidence: Option<Evidence>,
) -> SecurityJudgement {
    let newest = denied[denied.len() - 1];
    let mut evidence = quote_apparmor(denied);
    evidence.extend(confinement_evidence);
    SecurityJudgement::Break {
        cause: SecurityCause::AppArmorDenied,
        summary: format!(
            "AppArmor profile {} denies nginx {} {} ({} in the window)",
            newest.profile.as_deref().unwrap_or("?"),
            newest.operation.as_deref().unwrap_or("access to"),
            dest.describe(),
            plural(denied.len(), "DENIED record", "DENIED records")
        ),
        evidence,
        fix: apparmor_fix(newest, dest),
    }
}

/// The profile file of a profile: `/usr/sbin/nginx` lives in `usr.sbin.nginx`, a named
/// profile (`nginx`) usually in a file of its name. A hat (`nginx//php`) is in its parent's.
fn profile_file(profile: &str) -> String {
    let base = profile.split("//").next().unwrap_or(profile);
    match base.strip_prefix('/') {
        Some(path) => path.replace('/', "."),
        None => base.to_string(),
    }
}

fn apparmor_fix(e: &AppArmorEvent, dest: &Destination) -> String {
    let profile = e.profile.as_deref().unwrap_or("nginx");
    let file = profile_file(profile);
    let rule = match dest {
        Destination::Unix(path) if e.family.as_deref() == Some("unix") => format!(
            "{} rw,` and `unix (connect, send, receive) type=stream,",
            path.display()
        ),
        Destination::Unix(path) => format!("{} rw,", path.display()),
        Destination::Tcp { ip, .. } => {
            format!(
                "network {} stream,",
                if ip.is_ipv4() { "inet" } else { "inet6" }
            )
        }
    };
    format!(
        "add `{rule}` to /etc/apparmor.d/local/{file} (the profile's local override; or to /etc/apparmor.d/{file} itself if it has no `include if exists <local/{file}>`), then reload the profile: apparmor_parser -r /etc/apparmor.d/{file}"
    )
}

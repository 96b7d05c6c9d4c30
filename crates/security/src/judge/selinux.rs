//! SELinux's judgement: an enforced AVC denial of nginx for the destination breaks; one only
//! logged (permissive mode or domain) warns; enforcing with httpd_can_network_connect off and a
//! TCP backend warns even without a logged denial (dontaudit rules hide some).

use why502_model::Evidence;

use super::{coverage_note, plural, quote_avc, SecurityCause, SecurityJudgement};
use crate::avc::AvcDenial;
use crate::logs::Coverage;
use crate::selinux::{BooleanValue, SelinuxMode, SelinuxState, SelinuxStatus};
use crate::target::{Destination, NginxSubject};

/// Port types that mean "no specific label": `semanage port -a` adds one; any other type
/// must be changed with `-m`.
const GENERIC_PORT_TYPES: &[&str] = &[
    "unreserved_port_t",
    "reserved_port_t",
    "hi_reserved_port_t",
    "ephemeral_port_t",
    "port_t",
];

pub fn judge_selinux(
    state: &SelinuxState,
    coverage: &Coverage,
    subject: &NginxSubject,
    dest: &Destination,
) -> SecurityJudgement {
    let mode = match &state.status {
        SelinuxStatus::NotEnabled { reason } => {
            return SecurityJudgement::Clear {
                checked: vec![format!("SELinux: not enabled ({reason})")],
            }
        }
        SelinuxStatus::Unknown { reason, fix } => {
            // The mode is unknown, but a denial logged as enforced speaks for itself.
            let enforced: Vec<&AvcDenial> = state
                .denials_for(subject, dest)
                .into_iter()
                .filter(|d| d.permissive == Some(false))
                .collect();
            if !enforced.is_empty() {
                return selinux_break(state, &enforced, dest, None);
            }
            return SecurityJudgement::Unknown {
                reason: format!("SELinux mode unknown: {reason}"),
                fix: fix.clone(),
            };
        }
        SelinuxStatus::Enabled { mode } => *mode,
    };
    let mode_evidence = Evidence::new(
        state.enforce_source.clone(),
        match mode {
            SelinuxMode::Enforcing => "1 (enforcing)",
            SelinuxMode::Permissive => "0 (permissive)",
        },
    );
    let denials = state.denials_for(subject, dest);
    // permissive=1: the domain is permissive, the access went through. Kernels before the
    // field existed logged the mode only through `enforce`.
    let enforced: Vec<&AvcDenial> = denials
        .iter()
        .copied()
        .filter(|d| !d.permissive.unwrap_or(mode == SelinuxMode::Permissive))
        .collect();
    if mode == SelinuxMode::Enforcing && !enforced.is_empty() {
        return selinux_break(state, &enforced, dest, Some(mode_evidence));
    }
    if !denials.is_empty() {
        let newest = denials[denials.len() - 1];
        let why = if mode == SelinuxMode::Permissive {
            "SELinux is permissive, so the access went through; it breaks once SELinux enforces"
        } else {
            "nginx's domain is permissive, so the access went through"
        };
        let mut evidence = vec![mode_evidence];
        evidence.extend(quote_avc(&denials));
        let mut summary = format!(
            "{} for nginx on {} in the window ({}): {why}",
            plural(denials.len(), "AVC denial", "AVC denials"),
            dest.describe(),
            perms_of(newest)
        );
        if mode == SelinuxMode::Permissive && !enforced.is_empty() {
            summary
                .push_str("; some were enforced (permissive=0) before SELinux was set permissive");
        }
        return SecurityJudgement::Warn {
            cause: SecurityCause::SelinuxDenied,
            summary,
            evidence,
            fix: selinux_fix(newest, dest),
        };
    }
    let mut checked = vec![format!(
        "SELinux {}: no AVC denial of nginx for {} in the window ({})",
        match mode {
            SelinuxMode::Enforcing => "enforcing",
            SelinuxMode::Permissive => "permissive",
        },
        dest.describe(),
        coverage_note(coverage)
    )];
    if mode == SelinuxMode::Permissive {
        // Permissive mode refuses nothing: an unread log can hide only warnings.
        return SecurityJudgement::Clear { checked };
    }
    let domains = state.nginx_domains();
    let confined_as_httpd = domains.is_empty() || domains.contains(&"httpd_t");
    if let Destination::Tcp { port, .. } = dest {
        if confined_as_httpd {
            if let Some(warn) = boolean_warning(state, *port, coverage, mode_evidence) {
                return warn;
            }
        }
    }
    if let Coverage::Unreadable { reason, fix } = coverage {
        return SecurityJudgement::Unknown {
            reason: format!("SELinux is enforcing and {reason}"),
            fix: fix.clone(),
        };
    }
    if !confined_as_httpd {
        checked.push(format!(
            "SELinux: nginx runs as {} (not httpd_t; the httpd booleans do not apply)",
            domains.join(", ")
        ));
    } else if dest.unix_path().is_none() {
        checked.push("SELinux: httpd_can_network_connect on".to_string());
    }
    SecurityJudgement::Clear { checked }
}

fn perms_of(d: &AvcDenial) -> String {
    format!(
        "{{ {} }} {}",
        d.perms.join(" "),
        d.tclass.as_deref().unwrap_or("?")
    )
}

fn selinux_break(
    state: &SelinuxState,
    enforced: &[&AvcDenial],
    dest: &Destination,
    mode_evidence: Option<Evidence>,
) -> SecurityJudgement {
    let newest = enforced[enforced.len() - 1];
    let domain = newest.source_type().unwrap_or("httpd_t");
    let target = newest.target_type().unwrap_or("?");
    let mut evidence: Vec<Evidence> = quote_avc(enforced);
    evidence.extend(mode_evidence);
    if dest.unix_path().is_none() {
        if let Some(b) = state.boolean("httpd_can_network_connect") {
            if let BooleanValue::Set { current, pending } = b.value {
                evidence.push(Evidence::new(
                    b.source.clone(),
                    format!(
                        "{} {} ({})",
                        u8::from(current),
                        u8::from(pending),
                        on_off(current)
                    ),
                ));
            }
        }
    }
    SecurityJudgement::Break {
        cause: SecurityCause::SelinuxDenied,
        summary: format!(
            "SELinux denies nginx ({domain}) {} on {} (target {target}): {} in the window",
            perms_of(newest),
            dest.describe(),
            plural(enforced.len(), "AVC denial", "AVC denials"),
        ),
        evidence,
        fix: selinux_fix(newest, dest),
    }
}

fn on_off(b: bool) -> &'static str {
    if b {
        "on"
    } else {
        "off"
    }
}

fn selinux_fix(d: &AvcDenial, dest: &Destination) -> String {
    const MODULE: &str = "ausearch -m AVC -c nginx --raw | audit2allow -M nginx_local && semodule -i nginx_local.pp (read nginx_local.te before installing it)";
    let tclass = d.tclass.as_deref().unwrap_or("");
    if tclass == "tcp_socket" || d.has_perm("name_connect") {
        let port = match dest {
            Destination::Tcp { port, .. } => Some(*port),
            Destination::Unix(_) => d.dest,
        };
        let port = port.map_or_else(|| "PORT".to_string(), |p| p.to_string());
        return match d.target_type() {
            Some("http_port_t") => format!(
                "port {port} is already labelled http_port_t: setsebool -P httpd_can_network_relay 1 (or httpd_can_network_connect 1 for any port)"
            ),
            t => {
                let op = if t.is_none_or(|t| GENERIC_PORT_TYPES.contains(&t)) {
                    "-a"
                } else {
                    "-m"
                };
                format!(
                    "setsebool -P httpd_can_network_connect 1 (nginx may then connect to any port); narrower: semanage port {op} -t http_port_t -p tcp {port} with httpd_can_network_relay on"
                )
            }
        };
    }
    if matches!(tclass, "sock_file" | "dir") {
        if let Some(dir) = dest.unix_path().and_then(|p| p.parent()) {
            let dir = dir.display();
            return format!(
                "label the socket's directory for httpd_t: semanage fcontext -a -t httpd_var_run_t '{dir}(/.*)?' && restorecon -Rv {dir} (restart the backend so it re-creates the socket with that label); or build a module from the denial: {MODULE}"
            );
        }
    }
    let target = d.target_type().unwrap_or("the backend's domain");
    format!(
        "nginx (httpd_t) may not connect to a socket of {target}: build a local module from the denial: {MODULE}; or run the backend in a domain httpd_t may connect to"
    )
}

/// Enforcing, a TCP backend, no denial seen: httpd_can_network_connect off still forbids it
/// unless the port is labelled for httpd (dontaudit rules can hide the denial).
fn boolean_warning(
    state: &SelinuxState,
    port: u16,
    coverage: &Coverage,
    mode_evidence: Evidence,
) -> Option<SecurityJudgement> {
    let connect = state.boolean("httpd_can_network_connect")?;
    let BooleanValue::Set {
        current: false,
        pending,
    } = connect.value
    else {
        return None;
    };
    let mut evidence = vec![
        mode_evidence,
        Evidence::new(
            connect.source.clone(),
            format!("0 {} (off)", u8::from(pending)),
        ),
    ];
    let relay = state.boolean("httpd_can_network_relay");
    let relay_on = matches!(
        relay.map(|b| &b.value),
        Some(BooleanValue::Set { current: true, .. })
    );
    if let Some(b) = relay {
        if let BooleanValue::Set { current, pending } = b.value {
            evidence.push(Evidence::new(
                b.source.clone(),
                format!(
                    "{} {} ({})",
                    u8::from(current),
                    u8::from(pending),
                    on_off(current)
                ),
            ));
        }
    }
    let allowed = if relay_on {
        "connect only to ports labelled http_port_t and a few proxy types (httpd_can_network_relay is on)"
    } else {
        "connect only to the few port types other booleans open"
    };
    let logs = match coverage {
        Coverage::Read { .. } => {
            "no AVC denial was logged (dontaudit rules can hide it)".to_string()
        }
        Coverage::Unreadable { reason, .. } => format!("denials could not be checked: {reason}"),
    };
    Some(SecurityJudgement::Warn {
        cause: SecurityCause::SelinuxDenied,
        summary: format!(
            "SELinux is enforcing and httpd_can_network_connect is off: nginx (httpd_t) may {allowed}, so port {port} may be refused; {logs}"
        ),
        evidence,
        fix: format!(
            "setsebool -P httpd_can_network_connect 1, or label the port: semanage port -a -t http_port_t -p tcp {port}{}",
            if relay_on { "" } else { " and setsebool -P httpd_can_network_relay 1" }
        ),
    })
}

//! AppArmor audit records (`apparmor="DENIED"` in enforce mode, `apparmor="ALLOWED"` in
//! complain mode), from audit.log (`type=AVC msg=audit(...)`), the kernel log (`audit:
//! type=1400 audit(...)`) or syslog. Field names follow the kernel (security/apparmor/lib.c,
//! file.c, net.c): file-class records carry `name`, `requested_mask`, `denied_mask`; network
//! records carry `family`, `sock_type`, `protocol` and either `requested_mask`/`denied_mask`
//! (older kernels) or `requested`/`denied` (kernels with fine-grained network mediation), plus
//! `laddr`/`lport`/`faddr`/`fport` when the socket is bound/connected, and `addr`/`peer_addr`
//! for unix sockets.

use std::time::SystemTime;

use serde::Serialize;

use crate::audit_text::{fields, find_stamp, AuditStamp};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AppArmorAction {
    /// Enforce mode: the access was refused.
    Denied,
    /// Complain mode: logged, allowed.
    Allowed,
}

/// One `apparmor="DENIED"` / `apparmor="ALLOWED"` record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AppArmorEvent {
    pub stamp: Option<AuditStamp>,
    pub time: SystemTime,
    pub action: AppArmorAction,
    pub operation: Option<String>,
    /// `file`, `net`, ... (absent on older kernels).
    pub class: Option<String>,
    pub profile: Option<String>,
    /// The path for file-class records (a socket's path for `connect`).
    pub name: Option<String>,
    pub pid: Option<u32>,
    pub comm: Option<String>,
    pub family: Option<String>,
    pub sock_type: Option<String>,
    pub protocol: Option<u32>,
    /// `requested_mask` or `requested`.
    pub requested: Option<String>,
    /// `denied_mask` or `denied`.
    pub denied: Option<String>,
    pub faddr: Option<String>,
    pub fport: Option<u16>,
    /// Unix-socket network records: the socket's own and the peer's address.
    pub addr: Option<String>,
    pub peer_addr: Option<String>,
    /// Where it was read: a log file's path, or `kernel log`.
    pub source: String,
    pub line: String,
}

/// Parse an AppArmor record; `fallback_time` dates records without an audit stamp
/// (journal-forwarded `audit[PID]: AVC apparmor=...`). `AUDIT` and `STATUS` records (profile
/// loads, audit rules) give `None`.
pub fn parse_apparmor(
    line: &str,
    fallback_time: Option<SystemTime>,
    source: &str,
) -> Option<AppArmorEvent> {
    let at = line.find("apparmor=")?;
    let action = match line[at..].get("apparmor=".len()..)? {
        v if v.starts_with("\"DENIED\"") => AppArmorAction::Denied,
        v if v.starts_with("\"ALLOWED\"") => AppArmorAction::Allowed,
        _ => return None,
    };
    let stamp = find_stamp(&line[..at]);
    let time = stamp.map(|s| s.time()).or(fallback_time)?;
    let mut e = AppArmorEvent {
        stamp,
        time,
        action,
        operation: None,
        class: None,
        profile: None,
        name: None,
        pid: None,
        comm: None,
        family: None,
        sock_type: None,
        protocol: None,
        requested: None,
        denied: None,
        faddr: None,
        fport: None,
        addr: None,
        peer_addr: None,
        source: source.to_string(),
        line: line.to_string(),
    };
    for (key, value) in fields(&line[at..]) {
        match key {
            "operation" => e.operation = Some(value),
            "class" => e.class = Some(value),
            "profile" => e.profile = Some(value),
            "name" => e.name = Some(value),
            "pid" => e.pid = value.parse().ok(),
            "comm" => e.comm = Some(value),
            "family" => e.family = Some(value),
            "sock_type" => e.sock_type = Some(value),
            "protocol" => e.protocol = value.parse().ok(),
            "requested_mask" | "requested" => e.requested = Some(value),
            "denied_mask" | "denied" => e.denied = Some(value),
            "faddr" => e.faddr = Some(value),
            "fport" => e.fport = value.parse().ok(),
            "addr" => e.addr = Some(value),
            "peer_addr" => e.peer_addr = Some(value),
            _ => {}
        }
    }
    Some(e)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, UNIX_EPOCH};

    // Real formats. The file-class connect follows the many published `operation="connect"
    // class="file" ... name="/run/cups/cups.sock" requested_mask="wr"` denials; the network
    // one follows a Debian 6.12 kernel denial of a TCP connect quoted on the LSM list, and the
    // unix/net one AppArmor's own utils test data.
    const FILE_CONNECT: &str = r#"2025-11-21T03:00:00.123456+00:00 web-1 kernel: [12345.678901] audit: type=1400 audit(1763694000.123:45): apparmor="DENIED" operation="connect" class="file" profile="nginx" name="/run/php/php8.2-fpm.sock" pid=1234 comm="nginx" requested_mask="wr" denied_mask="wr" fsuid=33 ouid=0"#;
    const NET_CONNECT: &str = r#"type=AVC msg=audit(1763694001.500:46): apparmor="DENIED" operation="connect" class="net" profile="/usr/sbin/nginx" pid=1235 comm="nginx" family="inet" sock_type="stream" protocol=6 requested_mask="connect" denied_mask="connect""#;
    const UNIX_NET: &str = r#"type=AVC msg=audit(1711454639.955:322): apparmor="DENIED" operation="connect" class="net" profile="/home/user/test/client.py" pid=80819 comm="client.py" family="unix" sock_type="stream" protocol=0 requested="send receive connect" denied="send receive connect" addr=none peer_addr="@test_abstract_socket" peer="/home/user/test/server.py""#;

    #[test]
    fn parses_a_file_class_socket_denial_in_kern_log() {
        let e = parse_apparmor(FILE_CONNECT, None, "/var/log/kern.log").unwrap();
        assert_eq!(e.action, AppArmorAction::Denied);
        assert_eq!(e.operation.as_deref(), Some("connect"));
        assert_eq!(e.class.as_deref(), Some("file"));
        assert_eq!(e.profile.as_deref(), Some("nginx"));
        assert_eq!(e.name.as_deref(), Some("/run/php/php8.2-fpm.sock"));
        assert_eq!(e.requested.as_deref(), Some("wr"));
        assert_eq!(e.pid, Some(1234));
        assert_eq!(
            e.time,
            UNIX_EPOCH + Duration::from_millis(1_763_694_000_123)
        );
    }

    #[test]
    fn parses_network_denials_with_either_mask_spelling() {
        let e = parse_apparmor(NET_CONNECT, None, "/var/log/audit/audit.log").unwrap();
        assert_eq!(e.family.as_deref(), Some("inet"));
        assert_eq!(e.sock_type.as_deref(), Some("stream"));
        assert_eq!(e.protocol, Some(6));
        assert_eq!(e.denied.as_deref(), Some("connect"));
        assert_eq!(e.name, None);
        let u = parse_apparmor(UNIX_NET, None, "x").unwrap();
        assert_eq!(u.denied.as_deref(), Some("send receive connect"));
        assert_eq!(u.addr.as_deref(), Some("none"));
        assert_eq!(u.peer_addr.as_deref(), Some("@test_abstract_socket"));
    }

    #[test]
    fn parses_a_raw_dev_kmsg_record() {
        // /dev/kmsg: `PRIORITY,SEQ,USEC,FLAGS;MESSAGE` (Documentation/ABI/testing/dev-kmsg).
        let kmsg = r#"5,1834,12345678901,-;audit: type=1400 audit(1763694000.123:45): apparmor="DENIED" operation="connect" class="file" profile="nginx" name="/run/php/php8.2-fpm.sock" pid=1234 comm="nginx" requested_mask="wr" denied_mask="wr" fsuid=33 ouid=0"#;
        let e = parse_apparmor(kmsg, None, "kernel log").unwrap();
        assert_eq!(e.stamp.unwrap().serial, 45);
        assert_eq!(e.name.as_deref(), Some("/run/php/php8.2-fpm.sock"));
    }

    #[test]
    fn complain_mode_is_allowed_and_status_records_are_not_events() {
        let allowed = FILE_CONNECT.replace("\"DENIED\"", "\"ALLOWED\"");
        assert_eq!(
            parse_apparmor(&allowed, None, "x").unwrap().action,
            AppArmorAction::Allowed
        );
        let status = r#"audit: type=1400 audit(1686511704.000:41): apparmor="STATUS" operation="profile_load" profile="unconfined" name="nginx" pid=1090 comm="apparmor_parser""#;
        assert!(parse_apparmor(status, None, "x").is_none());
    }
}

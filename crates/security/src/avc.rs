//! SELinux AVC denials, as the kernel writes them (selinux/avc.c `avc_audit_pre_callback` /
//! `avc_audit_post_callback`), in audit.log or, without auditd, in the kernel log:
//!
//! ```text
//! type=AVC msg=audit(1763694000.123:456): avc:  denied  { connectto } for  pid=1234 comm="nginx" path="/run/php/php8.2-fpm.sock" scontext=system_u:system_r:httpd_t:s0 tcontext=system_u:system_r:unconfined_service_t:s0 tclass=unix_stream_socket permissive=0
//! [ 12.3] audit: type=1400 audit(1763694000.123:456): avc:  denied  { name_connect } for  pid=1234 comm="nginx" dest=8080 scontext=... tclass=tcp_socket permissive=0
//! ```

use std::time::SystemTime;

use serde::Serialize;

use crate::audit_text::{context_type, fields, find_stamp, AuditStamp};

/// One `avc: denied` record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AvcDenial {
    /// The record's own stamp (absent only on lines that lost it, e.g. journal-forwarded).
    pub stamp: Option<AuditStamp>,
    pub time: SystemTime,
    /// `{ connectto }`, `{ name_connect }`, `{ write }`, ...
    pub perms: Vec<String>,
    pub pid: Option<u32>,
    pub comm: Option<String>,
    /// `path=` (connectto on a unix socket names the socket's path).
    pub path: Option<String>,
    /// `name=`: the last path component for file-class denials (`sock_file`, `dir`).
    pub name: Option<String>,
    /// `dest=`: the remote port of `name_connect`.
    pub dest: Option<u16>,
    pub scontext: Option<String>,
    pub tcontext: Option<String>,
    pub tclass: Option<String>,
    /// `permissive=1`: logged but allowed (permissive mode or a permissive domain). Absent on
    /// kernels before 4.x.
    pub permissive: Option<bool>,
    /// Where it was read: a log file's path, or `kernel log`.
    pub source: String,
    /// The line as logged: the evidence.
    pub line: String,
}

impl AvcDenial {
    pub fn source_type(&self) -> Option<&str> {
        self.scontext.as_deref().and_then(context_type)
    }
    pub fn target_type(&self) -> Option<&str> {
        self.tcontext.as_deref().and_then(context_type)
    }
    pub fn has_perm(&self, perm: &str) -> bool {
        self.perms.iter().any(|p| p == perm)
    }
}

/// Parse an `avc:  denied` record; `fallback_time` dates it when it has no audit stamp.
/// Userspace AVCs (`USER_AVC`, type 1107: dbus, systemd) are not nginx's and give `None`, as
/// do `granted` records (auditallow).
pub fn parse_avc(line: &str, fallback_time: Option<SystemTime>, source: &str) -> Option<AvcDenial> {
    let at = line.find("avc:")?;
    if line.contains("USER_AVC") || line.contains("type=1107") {
        return None;
    }
    let rest = line[at + "avc:".len()..].trim_start();
    let rest = rest.strip_prefix("denied")?;
    let open = rest.find('{')?;
    let close = rest[open..].find('}')? + open;
    let perms: Vec<String> = rest[open + 1..close]
        .split_whitespace()
        .map(str::to_string)
        .collect();
    let stamp = find_stamp(&line[..at]);
    let time = stamp.map(|s| s.time()).or(fallback_time)?;
    let mut d = AvcDenial {
        stamp,
        time,
        perms,
        pid: None,
        comm: None,
        path: None,
        name: None,
        dest: None,
        scontext: None,
        tcontext: None,
        tclass: None,
        permissive: None,
        source: source.to_string(),
        line: line.to_string(),
    };
    for (key, value) in fields(&rest[close + 1..]) {
        match key {
            "pid" => d.pid = value.parse().ok(),
            "comm" => d.comm = Some(value),
            "path" => d.path = Some(value),
            "name" => d.name = Some(value),
            "dest" => d.dest = value.parse().ok(),
            "scontext" => d.scontext = Some(value),
            "tcontext" => d.tcontext = Some(value),
            "tclass" => d.tclass = Some(value),
            "permissive" => d.permissive = Some(value == "1"),
            _ => {}
        }
    }
    Some(d)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, UNIX_EPOCH};

    // Real-format records: the field order and the double spaces after `avc:` and `denied`
    // are the kernel's (selinux/avc.c); the name_connect one follows a RHEL 9 denial for nginx
    // on port 9000 published with its audit.log excerpt.
    const CONNECTTO: &str = r#"type=AVC msg=audit(1763694000.123:456): avc:  denied  { connectto } for  pid=1234 comm="nginx" path="/run/php/php8.2-fpm.sock" scontext=system_u:system_r:httpd_t:s0 tcontext=system_u:system_r:unconfined_service_t:s0 tclass=unix_stream_socket permissive=0"#;
    const NAME_CONNECT_KERNEL: &str = r#"2025-11-21T03:00:01.000000+00:00 web-1 kernel: [ 4242.123456] audit: type=1400 audit(1763694001.115:9013): avc:  denied  { name_connect } for  pid=2841 comm="nginx" dest=9000 scontext=system_u:system_r:httpd_t:s0 tcontext=system_u:object_r:hi_reserved_port_t:s0 tclass=tcp_socket permissive=1"#;
    const SOCK_FILE_WRITE: &str = r#"type=AVC msg=audit(1763694002.500:460): avc:  denied  { write } for  pid=1235 comm="nginx" name="php-fpm.sock" dev="tmpfs" ino=31337 scontext=system_u:system_r:httpd_t:s0 tcontext=system_u:object_r:var_run_t:s0 tclass=sock_file permissive=0"#;

    #[test]
    fn parses_connectto_with_path_and_contexts() {
        let d = parse_avc(CONNECTTO, None, "/var/log/audit/audit.log").unwrap();
        assert_eq!(d.perms, ["connectto"]);
        assert_eq!(d.pid, Some(1234));
        assert_eq!(d.comm.as_deref(), Some("nginx"));
        assert_eq!(d.path.as_deref(), Some("/run/php/php8.2-fpm.sock"));
        assert_eq!(d.source_type(), Some("httpd_t"));
        assert_eq!(d.target_type(), Some("unconfined_service_t"));
        assert_eq!(d.tclass.as_deref(), Some("unix_stream_socket"));
        assert_eq!(d.permissive, Some(false));
        assert_eq!(
            d.time,
            UNIX_EPOCH + Duration::from_millis(1_763_694_000_123)
        );
        assert_eq!(d.stamp.unwrap().serial, 456);
    }

    #[test]
    fn parses_name_connect_inside_a_kernel_log_line() {
        let d = parse_avc(NAME_CONNECT_KERNEL, None, "kernel log").unwrap();
        assert!(d.has_perm("name_connect"));
        assert_eq!(d.dest, Some(9000));
        assert_eq!(d.target_type(), Some("hi_reserved_port_t"));
        assert_eq!(d.permissive, Some(true));
        // The audit stamp dates it, not the syslog prefix.
        assert_eq!(
            d.time,
            UNIX_EPOCH + Duration::from_millis(1_763_694_001_115)
        );
    }

    #[test]
    fn parses_sock_file_write_by_name() {
        let d = parse_avc(SOCK_FILE_WRITE, None, "x").unwrap();
        assert_eq!(d.name.as_deref(), Some("php-fpm.sock"));
        assert_eq!(d.tclass.as_deref(), Some("sock_file"));
        assert_eq!(d.path, None);
    }

    #[test]
    fn ignores_userspace_avcs_granted_records_and_other_lines() {
        let user = r#"type=USER_AVC msg=audit(1763694000.200:457): pid=1 uid=0 auid=4294967295 ses=4294967295 subj=system_u:system_r:init_t:s0 msg='avc:  denied  { status } for auid=n/a uid=0 gid=0 cmdline="" scontext=system_u:system_r:init_t:s0 tcontext=system_u:system_r:init_t:s0 tclass=system permissive=0  exe="/usr/lib/systemd/systemd" sauid=0 hostname=? addr=? terminal=?'"#;
        assert!(parse_avc(user, None, "x").is_none());
        let granted = r#"type=AVC msg=audit(1763694000.300:458): avc:  granted  { setenforce } for  pid=1 comm="x" scontext=a:b:c_t:s0 tcontext=a:b:c_t:s0 tclass=security"#;
        assert!(parse_avc(granted, None, "x").is_none());
        let syscall = r#"type=SYSCALL msg=audit(1763694000.123:456): arch=c000003e syscall=42 success=no exit=-13 comm="nginx" exe="/usr/sbin/nginx""#;
        assert!(parse_avc(syscall, None, "x").is_none());
    }

    #[test]
    fn a_record_without_stamp_takes_the_fallback_time() {
        let journal = r#"audit[1234]: AVC avc:  denied  { connectto } for  pid=1234 comm="nginx" path="/run/x.sock" scontext=system_u:system_r:httpd_t:s0 tcontext=system_u:system_r:unconfined_service_t:s0 tclass=unix_stream_socket permissive=0"#;
        assert!(parse_avc(journal, None, "x").is_none());
        let t = UNIX_EPOCH + Duration::from_secs(5);
        assert_eq!(parse_avc(journal, Some(t), "x").unwrap().time, t);
    }
}

//! The security probes end to end, on fixture trees and logs.
//!
//! No LSM is active on the machines these tests run on, so SELinux and AppArmor are tested
//! against a selinuxfs/securityfs//proc tree built in a temporary directory and against logs
//! written in the kernel's real formats (see tests/fixtures/README.md for where each format
//! comes from). The one test on the real host only checks that what it reads is consistent.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use why502_model::CauseId;
use why502_security::{
    AppArmorStatus, Destination, SecurityCause, SecurityJudgement, SecurityPaths, SecuritySnapshot,
    SelinuxStatus, SourceStatus,
};

const AUDIT_SELINUX: &str = include_str!("fixtures/audit-selinux.log");
const KERN_APPARMOR: &str = include_str!("fixtures/kern-apparmor.log");
const SYSLOG_TRADITIONAL: &str = include_str!("fixtures/syslog-traditional.log");

/// 2025-11-21T02:00:00Z: the fixtures' window start. Their old records are at 01:00Z.
fn since() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_763_690_400)
}

/// nginx's master and two workers, as the fixtures' records name them.
const NGINX: &[u32] = &[1233, 1234, 1235];

struct Host {
    _dir: tempfile::TempDir,
    root: PathBuf,
    paths: SecurityPaths,
}

impl Host {
    /// A host with no LSM: an empty selinuxfs mount point, a securityfs without `apparmor`,
    /// and /proc entries for nginx without attr files yet.
    fn new() -> Host {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().to_path_buf();
        for d in ["selinux", "security", "proc", "log"] {
            std::fs::create_dir_all(root.join(d)).unwrap();
        }
        // securityfs is mounted (it has entries), AppArmor is simply not among them.
        std::fs::write(
            root.join("security/lsm"),
            "lockdown,capability,landlock,yama,bpf",
        )
        .unwrap();
        let paths = SecurityPaths {
            selinuxfs: root.join("selinux"),
            securityfs: root.join("security"),
            proc_root: root.join("proc"),
            audit_log: Some(root.join("log/audit.log")),
            kern_log: Some(root.join("log/kern.log")),
            syslog: Some(root.join("log/syslog")),
        };
        Host {
            _dir: dir,
            root,
            paths,
        }
    }

    fn write(&self, rel: &str, text: &str) -> PathBuf {
        let p = self.root.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, text).unwrap();
        p
    }

    /// selinuxfs as the kernel lays it out: `enforce` and `booleans/NAME` holding `CUR PENDING`.
    fn selinux(&self, enforce: &str, booleans: &[(&str, &str)]) {
        self.write("selinux/enforce", enforce);
        for (name, value) in booleans {
            self.write(&format!("selinux/booleans/{name}"), value);
        }
    }

    fn selinux_context(&self, pid: u32, context: &str) {
        // The kernel returns the context NUL-terminated.
        self.write(&format!("proc/{pid}/attr/current"), &format!("{context}\0"));
    }

    /// securityfs's apparmor directory and its `profiles` listing.
    fn apparmor(&self, profiles: &str) {
        self.write("security/apparmor/profiles", profiles);
    }

    /// `attr/apparmor/current` (kernels with LSM stacking) or the legacy `attr/current`.
    fn apparmor_label(&self, pid: u32, label: &str, stacked: bool) {
        let rel = if stacked {
            format!("proc/{pid}/attr/apparmor/current")
        } else {
            format!("proc/{pid}/attr/current")
        };
        self.write(&rel, &format!("{label}\n"));
    }

    fn gather(&self) -> SecuritySnapshot {
        SecuritySnapshot::gather(&self.paths, since(), NGINX, Some(&[]))
    }
}

fn unix(path: &str) -> Destination {
    Destination::Unix(PathBuf::from(path))
}

fn tcp(ip: &str, port: u16) -> Destination {
    Destination::Tcp {
        ip: ip.parse::<IpAddr>().unwrap(),
        port,
    }
}

/// The break's cause, evidence and fix, or a panic naming what came instead.
fn expect_break(
    j: SecurityJudgement,
    want: SecurityCause,
) -> (String, Vec<(String, String)>, String) {
    match j {
        SecurityJudgement::Break {
            cause,
            summary,
            evidence,
            fix,
        } => {
            assert_eq!(cause, want, "{summary}");
            let ev = evidence.into_iter().map(|e| (e.source, e.detail)).collect();
            (summary, ev, fix)
        }
        other => panic!("expected a break, got {other:#?}"),
    }
}

fn expect_warn(
    j: SecurityJudgement,
    want: SecurityCause,
) -> (String, Vec<(String, String)>, String) {
    match j {
        SecurityJudgement::Warn {
            cause,
            summary,
            evidence,
            fix,
        } => {
            assert_eq!(cause, want, "{summary}");
            let ev = evidence.into_iter().map(|e| (e.source, e.detail)).collect();
            (summary, ev, fix)
        }
        other => panic!("expected a warning, got {other:#?}"),
    }
}

fn expect_clear(j: SecurityJudgement) -> Vec<String> {
    match j {
        SecurityJudgement::Clear { checked } => checked,
        other => panic!("expected clear, got {other:#?}"),
    }
}

fn fixture_line(text: &str, needle: &str) -> String {
    text.lines()
        .find(|l| l.contains(needle))
        .unwrap_or_else(|| panic!("no fixture line with {needle}"))
        .to_string()
}

// ---------------------------------------------------------------------------------------
// SELinux

fn enforcing_rhel() -> Host {
    let h = Host::new();
    h.selinux(
        "1",
        &[
            ("httpd_can_network_connect", "0 0"),
            ("httpd_can_network_relay", "0 0"),
            ("httpd_can_network_connect_db", "0 0"),
        ],
    );
    for pid in NGINX {
        h.selinux_context(*pid, "system_u:system_r:httpd_t:s0");
    }
    h.write("log/audit.log", AUDIT_SELINUX);
    h
}

#[test]
fn enforcing_and_connectto_denial_for_the_socket_is_selinux_denied() {
    let h = enforcing_rhel();
    let snap = h.gather();
    assert_eq!(
        snap.selinux.status,
        SelinuxStatus::Enabled {
            mode: why502_security::SelinuxMode::Enforcing
        }
    );
    let (summary, evidence, fix) = expect_break(
        snap.judge(&unix("/run/php-fpm/www.sock")),
        SecurityCause::SelinuxDenied,
    );
    assert_eq!(
        SecurityCause::SelinuxDenied.cause_id(),
        CauseId::SelinuxDenied
    );
    // The AVC line itself is the evidence, with the file it came from.
    let avc = fixture_line(AUDIT_SELINUX, "path=\"/run/php-fpm/www.sock\"");
    assert_eq!(
        evidence[0],
        (h.root.join("log/audit.log").display().to_string(), avc)
    );
    assert!(evidence
        .iter()
        .any(|(s, d)| s.ends_with("selinux/enforce") && d.starts_with('1')));
    assert!(summary.contains("connectto"), "{summary}");
    assert!(summary.contains("unconfined_service_t"), "{summary}");
    assert!(
        fix.contains("audit2allow -M nginx_local") && fix.contains("semodule -i"),
        "{fix}"
    );
}

#[test]
fn name_connect_denial_for_the_port_names_boolean_and_port_label() {
    let h = enforcing_rhel();
    let snap = h.gather();
    let (summary, evidence, fix) = expect_break(
        snap.judge(&tcp("127.0.0.1", 8080)),
        SecurityCause::SelinuxDenied,
    );
    assert!(summary.contains("name_connect"), "{summary}");
    assert!(evidence[0].1.contains("dest=8080"));
    // The boolean is quoted as it stands.
    assert!(evidence
        .iter()
        .any(|(s, d)| s.ends_with("booleans/httpd_can_network_connect") && d == "0 0 (off)"));
    assert!(
        fix.contains("setsebool -P httpd_can_network_connect 1"),
        "{fix}"
    );
    // 8080 already has a type (http_cache_port_t): it must be modified, not added.
    assert!(
        fix.contains("semanage port -m -t http_port_t -p tcp 8080"),
        "{fix}"
    );
}

#[test]
fn sock_file_write_denial_matches_by_file_name_and_suggests_a_label() {
    let h = enforcing_rhel();
    let snap = h.gather();
    let (_, evidence, fix) = expect_break(
        snap.judge(&unix("/srv/app/run/app.sock")),
        SecurityCause::SelinuxDenied,
    );
    assert!(evidence[0].1.contains("name=\"app.sock\""));
    assert!(
        fix.contains("semanage fcontext -a -t httpd_var_run_t '/srv/app/run(/.*)?'"),
        "{fix}"
    );
    assert!(fix.contains("restorecon -Rv /srv/app/run"), "{fix}");
}

#[test]
fn permissive_mode_with_denials_warns_and_does_not_break() {
    let h = enforcing_rhel();
    h.selinux("0", &[]);
    let snap = h.gather();
    let (summary, evidence, _) = expect_warn(
        snap.judge(&unix("/run/php-fpm/www.sock")),
        SecurityCause::SelinuxDenied,
    );
    assert!(summary.contains("permissive"), "{summary}");
    assert!(evidence
        .iter()
        .any(|(_, d)| d.contains("path=\"/run/php-fpm/www.sock\"")));
}

#[test]
fn a_permissive_domain_in_enforcing_mode_warns() {
    let h = enforcing_rhel();
    // permissive=1: `semanage permissive -a httpd_t` — logged, allowed.
    h.write(
        "log/audit.log",
        &AUDIT_SELINUX.replace(
            "tclass=unix_stream_socket permissive=0",
            "tclass=unix_stream_socket permissive=1",
        ),
    );
    let snap = h.gather();
    let (summary, _, _) = expect_warn(
        snap.judge(&unix("/run/php-fpm/www.sock")),
        SecurityCause::SelinuxDenied,
    );
    assert!(summary.contains("domain is permissive"), "{summary}");
}

#[test]
fn denials_for_another_socket_or_port_are_not_blamed() {
    let h = enforcing_rhel();
    h.selinux("1", &[("httpd_can_network_connect", "1 1")]);
    let snap = h.gather();
    // Another socket in the same directory as a denied one.
    let checked = expect_clear(snap.judge(&unix("/run/php-fpm/other.sock")));
    assert!(
        checked
            .iter()
            .any(|c| c.contains("SELinux enforcing: no AVC denial")),
        "{checked:?}"
    );
    // Port 9000 was denied to php-fpm (also httpd_t), not to nginx.
    expect_clear(snap.judge(&tcp("127.0.0.1", 9000)));
    // No port of this backend was denied at all.
    expect_clear(snap.judge(&tcp("10.0.0.7", 3000)));
}

#[test]
fn a_denial_older_than_the_window_is_not_blamed() {
    let h = enforcing_rhel();
    let snap = h.gather();
    // /run/php-fpm/old.sock was denied at 01:00Z; the window starts at 02:00Z.
    expect_clear(snap.judge(&unix("/run/php-fpm/old.sock")));
    // With a window reaching back to 00:00Z the same record breaks.
    let early = SecuritySnapshot::gather(
        &h.paths,
        since() - Duration::from_secs(7200),
        NGINX,
        Some(&[]),
    );
    expect_break(
        early.judge(&unix("/run/php-fpm/old.sock")),
        SecurityCause::SelinuxDenied,
    );
}

#[test]
fn unreadable_audit_log_with_selinux_enforcing_is_unknown_not_clear() {
    let h = enforcing_rhel();
    let audit = h.root.join("log/audit.log");
    std::fs::remove_file(&audit).unwrap();
    // Root reads any file, so make it unreadable the way the reader refuses: a FIFO (which
    // also proves a FIFO in the log's place cannot hang the run).
    nix_mkfifo(&audit);
    let snap = h.gather();
    assert!(matches!(
        snap.sources.audit_log.status,
        SourceStatus::Unreadable { .. }
    ));
    match snap.judge(&unix("/run/php-fpm/www.sock")) {
        SecurityJudgement::Unknown { reason, fix } => {
            assert!(reason.contains("SELinux is enforcing"), "{reason}");
            assert!(reason.contains("audit.log"), "{reason}");
            assert!(fix.contains("ausearch -m AVC"), "{fix}");
        }
        other => panic!("expected unknown, got {other:#?}"),
    }
}

#[test]
fn missing_audit_log_with_no_kernel_log_is_unknown_but_kernel_lines_cover_it() {
    let h = enforcing_rhel();
    std::fs::remove_file(h.root.join("log/audit.log")).unwrap();
    // No auditd, no kern.log, no syslog, and the engine could not read the kernel log.
    let snap = SecuritySnapshot::gather(&h.paths, since(), NGINX, None);
    assert!(matches!(
        snap.judge(&unix("/run/php-fpm/www.sock")),
        SecurityJudgement::Unknown { .. }
    ));
    // Without auditd the kernel prints the AVC; the engine passes the kernel log's lines in.
    let line = "[12345.678901] audit: type=1400 audit(1763694000.123:456): avc:  denied  { connectto } for  pid=1234 comm=\"nginx\" path=\"/run/php-fpm/www.sock\" scontext=system_u:system_r:httpd_t:s0 tcontext=system_u:system_r:unconfined_service_t:s0 tclass=unix_stream_socket permissive=0";
    let lines = vec![(
        UNIX_EPOCH + Duration::from_secs(1_763_694_000),
        line.to_string(),
    )];
    let snap = SecuritySnapshot::gather(&h.paths, since(), NGINX, Some(&lines));
    let (_, evidence, _) = expect_break(
        snap.judge(&unix("/run/php-fpm/www.sock")),
        SecurityCause::SelinuxDenied,
    );
    assert_eq!(evidence[0], ("kernel log".to_string(), line.to_string()));
}

#[test]
fn boolean_off_tcp_enforcing_and_no_avc_warns_naming_the_boolean() {
    let h = enforcing_rhel();
    // dontaudit hides the denial: nothing in the log for this port.
    let snap = h.gather();
    let (summary, evidence, fix) = expect_warn(
        snap.judge(&tcp("127.0.0.1", 5000)),
        SecurityCause::SelinuxDenied,
    );
    assert!(
        summary.contains("httpd_can_network_connect is off"),
        "{summary}"
    );
    assert!(evidence
        .iter()
        .any(|(s, d)| s.ends_with("booleans/httpd_can_network_connect") && d == "0 0 (off)"));
    assert!(
        fix.contains("setsebool -P httpd_can_network_connect 1"),
        "{fix}"
    );
    assert!(
        fix.contains("semanage port -a -t http_port_t -p tcp 5000"),
        "{fix}"
    );

    // The boolean on: nothing to warn about.
    h.selinux("1", &[("httpd_can_network_connect", "1 1")]);
    let checked = expect_clear(h.gather().judge(&tcp("127.0.0.1", 5000)));
    assert!(
        checked
            .iter()
            .any(|c| c.contains("httpd_can_network_connect on")),
        "{checked:?}"
    );

    // nginx in an unconfined domain: httpd booleans do not govern it.
    h.selinux("1", &[("httpd_can_network_connect", "0 0")]);
    for pid in NGINX {
        h.selinux_context(*pid, "system_u:system_r:unconfined_service_t:s0");
    }
    let checked = expect_clear(h.gather().judge(&tcp("127.0.0.1", 5000)));
    assert!(
        checked.iter().any(|c| c.contains("unconfined_service_t")),
        "{checked:?}"
    );
}

#[test]
fn boolean_off_and_unreadable_log_still_warns_with_the_boolean() {
    let h = enforcing_rhel();
    let audit = h.root.join("log/audit.log");
    std::fs::remove_file(&audit).unwrap();
    nix_mkfifo(&audit);
    let (summary, _, _) = expect_warn(
        h.gather().judge(&tcp("127.0.0.1", 5000)),
        SecurityCause::SelinuxDenied,
    );
    assert!(summary.contains("could not be checked"), "{summary}");
    // With the boolean on, the unread log leaves it unknown.
    h.selinux("1", &[("httpd_can_network_connect", "1 1")]);
    assert!(matches!(
        h.gather().judge(&tcp("127.0.0.1", 5000)),
        SecurityJudgement::Unknown { .. }
    ));
}

#[test]
fn unreadable_enforce_is_unknown_unless_an_enforced_denial_speaks_for_itself() {
    let h = enforcing_rhel();
    let enforce = h.root.join("selinux/enforce");
    std::fs::remove_file(&enforce).unwrap();
    nix_mkfifo(&enforce);
    let snap = h.gather();
    assert!(matches!(snap.selinux.status, SelinuxStatus::Unknown { .. }));
    // permissive=0 on the record: SELinux refused it, whatever the mode file says.
    expect_break(
        snap.judge(&unix("/run/php-fpm/www.sock")),
        SecurityCause::SelinuxDenied,
    );
    match snap.judge(&unix("/run/php-fpm/other.sock")) {
        SecurityJudgement::Unknown { reason, .. } => {
            assert!(reason.contains("SELinux mode unknown"), "{reason}")
        }
        other => panic!("expected unknown, got {other:#?}"),
    }
}

#[test]
fn rotated_audit_log_is_followed_while_the_window_reaches_back() {
    let h = enforcing_rhel();
    // auditd rotated just after the denial: the current file starts later.
    h.write("log/audit.log.1", AUDIT_SELINUX);
    h.write(
        "log/audit.log",
        "type=DAEMON_ROTATE msg=audit(1763694500.000:600): op=rotate-logs auid=0 pid=1 subj=system_u:system_r:auditd_t:s0 res=success\n",
    );
    let (_, evidence, _) = expect_break(
        h.gather().judge(&unix("/run/php-fpm/www.sock")),
        SecurityCause::SelinuxDenied,
    );
    assert!(evidence[0].0.ends_with("audit.log"), "{evidence:?}");
}

// ---------------------------------------------------------------------------------------
// AppArmor

fn debian_apparmor(mode: &str) -> Host {
    let h = Host::new();
    h.apparmor(&format!(
        "/usr/sbin/cups-browsed (enforce)\nnginx ({mode})\nlsb_release (enforce)\n"
    ));
    for pid in NGINX {
        h.apparmor_label(*pid, &format!("nginx ({mode})"), true);
    }
    h.write("log/kern.log", KERN_APPARMOR);
    h.write("log/syslog", SYSLOG_TRADITIONAL);
    h
}

#[test]
fn apparmor_enforce_and_denied_for_the_socket_is_apparmor_denied() {
    let h = debian_apparmor("enforce");
    let snap = h.gather();
    assert_eq!(snap.apparmor.status, AppArmorStatus::Enabled);
    let (summary, evidence, fix) = expect_break(
        snap.judge(&unix("/run/php/php8.2-fpm.sock")),
        SecurityCause::AppArmorDenied,
    );
    assert_eq!(
        SecurityCause::AppArmorDenied.cause_id(),
        CauseId::ApparmorDenied
    );
    // kern.log and syslog both carry the record: it is counted and quoted once.
    assert!(summary.contains("1 DENIED record"), "{summary}");
    let line = fixture_line(KERN_APPARMOR, "name=\"/run/php/php8.2-fpm.sock\"");
    assert_eq!(
        evidence[0],
        (h.root.join("log/kern.log").display().to_string(), line)
    );
    assert!(evidence
        .iter()
        .any(|(s, d)| s.ends_with("attr/apparmor/current") && d == "nginx (enforce)"));
    assert!(fix.contains("`/run/php/php8.2-fpm.sock rw,`"), "{fix}");
    assert!(fix.contains("/etc/apparmor.d/local/nginx"), "{fix}");
    assert!(
        fix.contains("apparmor_parser -r /etc/apparmor.d/nginx"),
        "{fix}"
    );
}

#[test]
fn apparmor_network_denial_blames_tcp_backends_of_that_family_only() {
    let h = debian_apparmor("enforce");
    let snap = h.gather();
    let (_, evidence, fix) = expect_break(
        snap.judge(&tcp("127.0.0.1", 8000)),
        SecurityCause::AppArmorDenied,
    );
    assert!(evidence[0].1.contains("family=\"inet\""));
    assert!(fix.contains("`network inet stream,`"), "{fix}");
    // An IPv6 backend needs inet6, which was not denied.
    expect_clear(snap.judge(&tcp("::1", 8000)));
}

#[test]
fn apparmor_denials_of_other_profiles_sockets_or_older_than_the_window_are_not_blamed() {
    let h = debian_apparmor("enforce");
    let snap = h.gather();
    // cups-browsed's denial names a socket nginx does not use; the php8.1 one is from 01:00Z.
    let checked = expect_clear(snap.judge(&unix("/run/php/php8.1-fpm.sock")));
    assert!(
        checked
            .iter()
            .any(|c| c.contains("nginx confined by nginx (enforce")),
        "{checked:?}"
    );
    expect_clear(snap.judge(&unix("/run/systemd/resolve/io.systemd.Resolve")));
    expect_clear(snap.judge(&unix("/run/php/other.sock")));
}

#[test]
fn a_journal_forwarded_record_without_stamp_is_dated_by_the_syslog_prefix() {
    let h = debian_apparmor("enforce");
    let (_, evidence, _) = expect_break(
        h.gather().judge(&unix("/run/uwsgi/app.sock")),
        SecurityCause::AppArmorDenied,
    );
    assert_eq!(
        evidence[0].0,
        h.root.join("log/syslog").display().to_string()
    );
}

#[test]
fn apparmor_complain_mode_warns_and_does_not_break() {
    let h = debian_apparmor("complain");
    // Complain mode logs ALLOWED where enforce would have denied.
    h.write(
        "log/kern.log",
        &KERN_APPARMOR.replace("\"DENIED\"", "\"ALLOWED\""),
    );
    h.write("log/syslog", "");
    let (summary, evidence, fix) = expect_warn(
        h.gather().judge(&unix("/run/php/php8.2-fpm.sock")),
        SecurityCause::AppArmorDenied,
    );
    assert!(summary.contains("complain mode"), "{summary}");
    assert!(evidence[0].1.contains("apparmor=\"ALLOWED\""));
    assert!(fix.contains("/run/php/php8.2-fpm.sock rw,"), "{fix}");
}

#[test]
fn apparmor_denied_earlier_but_nginx_now_in_complain_mode_warns() {
    let h = debian_apparmor("complain");
    expect_warn(
        h.gather().judge(&unix("/run/php/php8.2-fpm.sock")),
        SecurityCause::AppArmorDenied,
    );
}

#[test]
fn apparmor_present_but_nginx_unconfined_is_clear() {
    let h = Host::new();
    h.apparmor("/usr/sbin/cups-browsed (enforce)\nlsb_release (enforce)\n");
    // Legacy attr/current (no LSM stacking).
    for pid in NGINX {
        h.apparmor_label(*pid, "unconfined", false);
    }
    // Even with a denial naming the socket in the logs of some other process.
    h.write(
        "log/kern.log",
        &KERN_APPARMOR
            .replace("profile=\"nginx\"", "profile=\"/usr/bin/other\"")
            .replace("comm=\"nginx\"", "comm=\"other\"")
            .replace("pid=1234", "pid=4000")
            .replace("pid=1235", "pid=4001"),
    );
    let snap = h.gather();
    let checked = expect_clear(snap.judge(&unix("/run/php/php8.2-fpm.sock")));
    assert!(
        checked
            .iter()
            .any(|c| c.starts_with("AppArmor: nginx unconfined")),
        "{checked:?}"
    );
    assert!(
        checked
            .iter()
            .any(|c| c.starts_with("SELinux: not enabled")),
        "{checked:?}"
    );
    // Nothing could deny nginx anything: the logs were not read at all.
    assert_eq!(snap.sources.kern_log.status, SourceStatus::NotRead);
}

#[test]
fn apparmor_enforce_with_unreadable_logs_is_unknown() {
    let h = debian_apparmor("enforce");
    std::fs::remove_file(h.root.join("log/kern.log")).unwrap();
    std::fs::remove_file(h.root.join("log/syslog")).unwrap();
    let audit = h.root.join("log/audit.log");
    nix_mkfifo(&audit);
    match h.gather().judge(&unix("/run/php/php8.2-fpm.sock")) {
        SecurityJudgement::Unknown { reason, .. } => {
            assert!(
                reason.contains("nginx is confined by nginx (enforce)"),
                "{reason}"
            )
        }
        other => panic!("expected unknown, got {other:#?}"),
    }
}

#[test]
fn apparmor_denial_only_in_the_kernel_log_is_apparmor_denied() {
    // Debian 12's default: no auditd, no rsyslog. The denial reaches only the kernel log, whose
    // record text (as /dev/kmsg gives it, no dmesg prefix) the engine passes in.
    let h = debian_apparmor("enforce");
    std::fs::remove_file(h.root.join("log/kern.log")).unwrap();
    std::fs::remove_file(h.root.join("log/syslog")).unwrap();
    let stamp = since()
        .duration_since(UNIX_EPOCH)
        .expect("after the epoch")
        .as_secs()
        + 60;
    let line = format!(
        "audit: type=1400 audit({stamp}.123:45): apparmor=\"DENIED\" operation=\"connect\" profile=\"nginx\" name=\"/run/php/php8.2-fpm.sock\" pid=812 comm=\"nginx\" requested_mask=\"wr\" denied_mask=\"wr\" fsuid=33 ouid=0"
    );
    let lines = vec![(UNIX_EPOCH + Duration::from_secs(stamp), line.clone())];
    let snap = SecuritySnapshot::gather(&h.paths, since(), NGINX, Some(&lines));
    let (_, evidence, _) = expect_break(
        snap.judge(&unix("/run/php/php8.2-fpm.sock")),
        SecurityCause::AppArmorDenied,
    );
    assert_eq!(evidence[0], ("kernel log".to_string(), line));
}

#[test]
fn apparmor_confinement_unreadable_still_breaks_on_a_denial() {
    let h = Host::new();
    // securityfs's profile list refused (root-only on real hosts) and no nginx pid known.
    std::fs::create_dir_all(h.root.join("security/apparmor")).unwrap();
    nix_mkfifo(&h.root.join("security/apparmor/profiles"));
    h.write("log/kern.log", KERN_APPARMOR);
    let snap = SecuritySnapshot::gather(&h.paths, since(), &[], Some(&[]));
    assert!(snap.apparmor.profiles.is_err());
    // The record names comm="nginx": enough to attribute it.
    expect_break(
        snap.judge(&unix("/run/php/php8.2-fpm.sock")),
        SecurityCause::AppArmorDenied,
    );
    // No record for this one, and the logs were read: nothing denied it.
    let checked = expect_clear(snap.judge(&unix("/run/php/other.sock")));
    assert!(
        checked.iter().any(|c| c.contains("confinement unknown")),
        "{checked:?}"
    );
}

#[test]
fn profile_file_of_a_path_profile_in_the_fix() {
    let h = debian_apparmor("enforce");
    h.apparmor("/usr/sbin/nginx (enforce)\n");
    for pid in NGINX {
        h.apparmor_label(*pid, "/usr/sbin/nginx (enforce)", true);
    }
    h.write(
        "log/kern.log",
        &KERN_APPARMOR.replace("profile=\"nginx\"", "profile=\"/usr/sbin/nginx\""),
    );
    let (_, _, fix) = expect_break(
        h.gather().judge(&unix("/run/php/php8.2-fpm.sock")),
        SecurityCause::AppArmorDenied,
    );
    assert!(
        fix.contains("/etc/apparmor.d/local/usr.sbin.nginx"),
        "{fix}"
    );
    assert!(
        fix.contains("apparmor_parser -r /etc/apparmor.d/usr.sbin.nginx"),
        "{fix}"
    );
}

// ---------------------------------------------------------------------------------------
// Neither

#[test]
fn no_lsm_is_clear_and_reads_no_log() {
    let h = Host::new();
    h.write("log/audit.log", AUDIT_SELINUX);
    let snap = h.gather();
    let checked = expect_clear(snap.judge(&unix("/run/php-fpm/www.sock")));
    assert_eq!(checked.len(), 2, "{checked:?}");
    assert!(checked[0].starts_with("SELinux: not enabled"));
    assert!(checked[1].starts_with("AppArmor: not enabled"));
    assert_eq!(snap.sources.audit_log.status, SourceStatus::NotRead);
}

/// The real host, read-only. No LSM here: both must say "not enabled" and agree with what
/// the kernel exposes; on a host with an LSM the state must at least be consistent.
#[test]
fn the_real_host_reads_consistently() {
    let paths = SecurityPaths::default();
    let snap = SecuritySnapshot::gather(
        &paths,
        SystemTime::now() - Duration::from_secs(60),
        &[],
        None,
    );
    let selinux_mounted = Path::new("/sys/fs/selinux/enforce").exists();
    assert_eq!(
        matches!(snap.selinux.status, SelinuxStatus::NotEnabled { .. }),
        !selinux_mounted,
        "{:?}",
        snap.selinux.status
    );
    let apparmor_dir = Path::new("/sys/kernel/security/apparmor").is_dir();
    if apparmor_dir {
        assert_eq!(snap.apparmor.status, AppArmorStatus::Enabled);
    } else if !selinux_mounted {
        // Whatever it says, it must not claim AppArmor enabled without a sign of it.
        assert!(
            !matches!(snap.apparmor.status, AppArmorStatus::Enabled)
                || std::fs::read_to_string("/proc/self/attr/current").is_ok(),
            "{:?}",
            snap.apparmor.status
        );
    }
    if !selinux_mounted && !apparmor_dir {
        println!(
            "host: {:?} / {:?}",
            snap.selinux.status, snap.apparmor.status
        );
    }
}

fn nix_mkfifo(path: &Path) {
    let c = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).unwrap();
    // SAFETY: mkfifo with a valid NUL-terminated path.
    assert_eq!(
        unsafe { libc::mkfifo(c.as_ptr(), 0o600) },
        0,
        "mkfifo {}",
        path.display()
    );
}

//! Step `security`: packet-filter rules in the scenario's own namespace (real nftables and
//! iptables rules that really cut nginx off, or that must not be blamed), and SELinux /
//! AppArmor through fixture trees and logs.
//!
//! No Linux security module is active on the machines this lab runs on (no selinuxfs, no
//! AppArmor in securityfs, `/proc/PID/attr/current` fails with EINVAL), so an LSM cannot really
//! refuse nginx here. The LSM scenarios therefore run a healthy stack and hand the agent, through
//! `--config` `[paths]`, a selinuxfs / securityfs tree and audit.log / kern.log / syslog in the
//! kernel's real formats (those of crates/security/tests/fixtures, see its README) holding a
//! denial stamped now for the nginx worker's real pid and the lab's real socket or port. nginx
//! itself serves 200 there: the walk reaches the security step because nothing earlier breaks.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::harness::{
    firewall_lab, local_time, tcp_addr, unix_addr, Expect, Lab, PhpFpmPool, StepExpect,
    UpstreamExpect,
};

const IP: &str = "127.0.0.1";
const PORT: u16 = 8000;

/// nginx's log line when its connect() is refused (an nft `reject` answers the SYN with an
/// ICMP port-unreachable, which connect() reports as ECONNREFUSED).
const REFUSED_CONNECT: &str =
    "connect() failed (111: Connection refused) while connecting to upstream";
/// nginx's log line when its SYN is dropped and `proxy_connect_timeout` runs out.
const CONNECT_TIMEOUT: &str =
    "upstream timed out (110: Connection timed out) while connecting to upstream";

fn upstream() -> String {
    tcp_addr(IP, PORT)
}

/// One base chain on the output hook of `table inet filter`, holding `rules` in order.
fn inet_output_chain(rules: &[&str]) -> String {
    let body: String = rules
        .iter()
        .map(|rule| format!("        {rule}\n"))
        .collect();
    format!(
        "table inet filter {{\n    chain output {{\n        type filter hook output priority 0; policy accept;\n{body}    }}\n}}\n"
    )
}

/// The agent, run inside the namespace on the lab's config.
fn diagnose(lab: &Lab, extra: &[&str]) -> crate::harness::AgentRun {
    let conf = lab.nginx_conf_arg();
    let mut args = vec!["--json", "--nginx-conf", conf.as_str()];
    args.extend_from_slice(extra);
    lab.run_agent(&args)
}

#[test]
fn lab_nftables_reject_on_the_backend_port() {
    let Some(mut lab) = firewall_lab("fw-nft-reject", &["nft"]) else {
        return;
    };
    lab.start_http_backend(IP, PORT);
    lab.start_nginx(&lab.proxy_location(&upstream()));
    lab.nft(&inet_output_chain(&["tcp dport 8000 reject"]));
    let handle = lab.nft_handle_of("tcp dport 8000 reject");
    // The backend still listens (it answered 200 at startup); only the rule refuses nginx.
    lab.prove_502(REFUSED_CONNECT);

    let run = diagnose(&lab, &[]);
    run.assert(
        &Expect::report("break", 2).upstream(
            UpstreamExpect::at(&upstream())
                .status("break")
                .step("security")
                .cause("firewall_blocked")
                .summary_contains("nftables inet filter chain output")
                .summary_contains(&format!("handle {handle}"))
                .summary_contains("rejected")
                .evidence_contains("tcp dport 8000 reject")
                .step_entry(StepExpect::at("backend_up").outcome("pass")),
        ),
    );
}

#[test]
fn lab_iptables_drop_on_the_backend_port() {
    let Some(mut lab) = firewall_lab("fw-ipt-drop", &["iptables", "iptables-save"]) else {
        return;
    };
    lab.start_http_backend(IP, PORT);
    // nginx's default connect timeout is 60 s; 1 s makes it give up (504) quickly.
    let location = lab.proxy_location_with(&upstream(), &["proxy_connect_timeout 1s;"]);
    lab.start_nginx(&location);
    lab.iptables(&["-A", "OUTPUT", "-p", "tcp", "--dport", "8000", "-j", "DROP"]);
    let saved = lab.iptables_save();
    assert!(
        saved.contains("-A OUTPUT -p tcp -m tcp --dport 8000 -j DROP"),
        "iptables-save does not show the rule:\n{saved}"
    );
    lab.prove_status(504, CONNECT_TIMEOUT);

    let mut expect = UpstreamExpect::at(&upstream())
        .status("break")
        .step("security")
        .cause("firewall_blocked")
        .summary_contains("table filter chain OUTPUT")
        // iptables numbers rules by position (`iptables -D OUTPUT 1`).
        .summary_contains("rule 1")
        .summary_contains("dropped")
        .evidence_contains("--dport 8000 -j DROP");
    // iptables-nft (Debian 12's default) stores the rule in nftables' `table ip filter`,
    // where it has a handle as well (`tcp dport 8000 counter ... drop # handle N`).
    if lab.iptables_rules_have_nft_handles() {
        let handle = lab.nft_handle_of("tcp dport 8000");
        expect = expect.summary_contains(&format!("handle {handle}"));
    }
    // The agent's own connect to the backend waits as long as nginx would (1 s): --timeout
    // leaves room for it.
    let run = diagnose(&lab, &["--timeout", "6s"]);
    run.assert(&Expect::report("break", 2).upstream(expect));
}

#[test]
fn lab_one_of_two_backends_dropped() {
    let Some(mut lab) = firewall_lab("fw-one-of-two", &["nft"]) else {
        return;
    };
    lab.start_http_backend(IP, 8000);
    lab.start_http_backend(IP, 8001);
    // `proxy_next_upstream off`: a request sent to the dropped backend fails (504) instead of
    // being retried on the other one, so the breakage shows through nginx.
    lab.start_nginx_with_http_snippet(
        "upstream pool {\n    server 127.0.0.1:8000;\n    server 127.0.0.1:8001;\n}",
        "proxy_pass http://pool;\nproxy_connect_timeout 1s;\nproxy_next_upstream off;",
    );
    lab.nft(&inet_output_chain(&["tcp dport 8001 drop"]));
    let handle = lab.nft_handle_of("tcp dport 8001 drop");
    lab.prove_intermittent(
        504,
        &[CONNECT_TIMEOUT, "upstream: \"http://127.0.0.1:8001/\""],
    );

    let run = diagnose(&lab, &["--timeout", "6s"]);
    run.assert(
        &Expect::report("break", 2)
            .upstream(
                UpstreamExpect::at(&tcp_addr(IP, 8001))
                    .status("break")
                    .step("security")
                    .cause("firewall_blocked")
                    .summary_contains("nftables inet filter chain output")
                    .summary_contains(&format!("handle {handle}"))
                    .summary_contains("dropped")
                    .evidence_contains("tcp dport 8001 drop"),
            )
            .upstream(
                UpstreamExpect::at(&tcp_addr(IP, 8000))
                    .status("ok")
                    .cause("none")
                    .step_entry(StepExpect::at("security").outcome("pass")),
            ),
    );
}

#[test]
fn lab_reject_rule_for_another_port_is_not_blamed() {
    let Some(mut lab) = firewall_lab("fw-other-port", &["nft"]) else {
        return;
    };
    lab.start_http_backend(IP, PORT);
    // Something listens on 8009 too, so the rule demonstrably refuses a live port.
    lab.start_http_backend(IP, 8009);
    lab.start_nginx(&lab.proxy_location(&upstream()));
    lab.nft(&inet_output_chain(&["tcp dport 8009 reject"]));
    assert_eq!(
        lab.curl_status("http://127.0.0.1:8009/"),
        0,
        "the reject rule must refuse 8009 although it listens\n{}",
        lab.nft_list()
    );
    assert_eq!(
        lab.curl_through_nginx("/"),
        200,
        "a rule for 8009 must not affect nginx → 8000\n{}",
        lab.diagnostics()
    );

    let run = diagnose(&lab, &[]);
    run.assert(
        &Expect::healthy(&upstream()).upstream(
            UpstreamExpect::at(&upstream()).step_entry(
                StepExpect::at("security")
                    .outcome("pass")
                    .summary_contains_any(&["127.0.0.1:8000"]),
            ),
        ),
    );
}

#[test]
fn lab_accept_rule_before_a_drop_is_not_blamed() {
    let Some(mut lab) = firewall_lab("fw-accept-first", &["nft"]) else {
        return;
    };
    lab.start_http_backend(IP, PORT);
    let location = lab.proxy_location_with(&upstream(), &["proxy_connect_timeout 1s;"]);
    lab.start_nginx(&location);
    lab.nft(&inet_output_chain(&[
        "tcp dport 8000 accept",
        "tcp dport 8000 drop",
    ]));
    // Both rules are loaded, in this order (the listing panics if either is missing) ...
    assert!(lab.nft_handle_of("tcp dport 8000 accept") < lab.nft_handle_of("tcp dport 8000 drop"));
    // ... and the accept decides first.
    assert_eq!(
        lab.curl_through_nginx("/"),
        200,
        "the accept rule comes first\n{}",
        lab.diagnostics()
    );

    let run = diagnose(&lab, &["--timeout", "6s"]);
    run.assert(&Expect::healthy(&upstream()).upstream(
        UpstreamExpect::at(&upstream()).step_entry(StepExpect::at("security").outcome("pass")),
    ));
}

// ---- SELinux and AppArmor through fixtures (no LSM runs on these machines) ----

/// `audit(EPOCH.MILLIS:SERIAL)` for `time`.
fn audit_stamp(time: SystemTime, serial: u32) -> String {
    let since_epoch = time.duration_since(UNIX_EPOCH).expect("clock after 1970");
    format!(
        "audit({}.{:03}:{serial})",
        since_epoch.as_secs(),
        since_epoch.subsec_millis()
    )
}

/// rsyslog's RFC 3339 prefix as Debian 12 writes it: `2026-11-21T03:00:00.123456+00:00`.
fn rfc3339(time: SystemTime) -> String {
    let utc = humantime::format_rfc3339_micros(time).to_string();
    format!("{}+00:00", utc.trim_end_matches('Z'))
}

/// The traditional syslog prefix, in local time: `Nov 21 03:00:00`.
fn traditional(time: SystemTime) -> String {
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let tm = local_time(time);
    format!(
        "{} {:>2} {:02}:{:02}:{:02}",
        MONTHS[tm.tm_mon as usize], tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec
    )
}

/// The pid of the lab nginx's worker: the child of the master (nginx.pid) named nginx.
fn nginx_worker_pid(lab: &Lab) -> u32 {
    let pid_file = lab.path("nginx.pid");
    let master: u32 = fs::read_to_string(&pid_file)
        .unwrap_or_else(|err| panic!("lab: cannot read {}: {err}", pid_file.display()))
        .trim()
        .parse()
        .expect("nginx.pid holds a pid");
    let workers: Vec<u32> = fs::read_dir("/proc")
        .expect("/proc")
        .filter_map(Result::ok)
        .filter_map(|entry| entry.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            // `PID (comm) STATE PPID ...`; comm has no `)` here (it is nginx).
            let Ok(stat) = fs::read_to_string(format!("/proc/{pid}/stat")) else {
                return false;
            };
            let Some((comm_part, rest)) = stat.rsplit_once(") ") else {
                return false;
            };
            let ppid = rest
                .split_whitespace()
                .nth(1)
                .and_then(|p| p.parse::<u32>().ok());
            comm_part.ends_with("(nginx") && ppid == Some(master)
        })
        .collect();
    match workers.as_slice() {
        [worker] => *worker,
        _ => panic!("lab: expected one nginx worker under master {master}, found {workers:?}"),
    }
}

/// Where the fixture trees and logs of one lab live, and the agent config pointing at them.
struct LsmFixture {
    selinuxfs: PathBuf,
    securityfs: PathBuf,
    audit_log: PathBuf,
    kern_log: PathBuf,
    syslog: PathBuf,
    config: PathBuf,
}

impl LsmFixture {
    /// Empty trees under `lsm/` and a `conf/why502.toml` whose `[paths]` name them. A path
    /// that is never written stands for a file the host does not have (no auditd, no
    /// selinuxfs mounted).
    fn new(lab: &Lab) -> LsmFixture {
        let dir = lab.path("lsm");
        let fixture = LsmFixture {
            selinuxfs: dir.join("sys/fs/selinux"),
            securityfs: dir.join("sys/kernel/security"),
            audit_log: dir.join("var/log/audit/audit.log"),
            kern_log: dir.join("var/log/kern.log"),
            syslog: dir.join("var/log/syslog"),
            config: lab.path("conf/why502.toml"),
        };
        // securityfs is mounted on every Debian host; `lsm` lists the active modules.
        write(
            &fixture.securityfs.join("lsm"),
            "lockdown,capability,landlock,yama,bpf",
        );
        let toml = format!(
            "[paths]\nselinuxfs = {:?}\nsecurityfs = {:?}\naudit_log = {:?}\nkern_log = {:?}\nsyslog = {:?}\n",
            fixture.selinuxfs,
            fixture.securityfs,
            fixture.audit_log,
            fixture.kern_log,
            fixture.syslog
        );
        write(&fixture.config, &toml);
        fixture
    }

    fn config_arg(&self) -> String {
        self.config.display().to_string()
    }

    /// selinuxfs: `enforce` and the httpd booleans (`CURRENT PENDING`), all off as on a
    /// stock RHEL.
    fn selinux(&self, enforce: &str) {
        write(
            &self.securityfs.join("lsm"),
            "lockdown,capability,yama,selinux,bpf",
        );
        write(&self.selinuxfs.join("enforce"), enforce);
        write(&self.selinuxfs.join("policyvers"), "33");
        write(&self.selinuxfs.join("mls"), "1");
        for name in [
            "httpd_can_network_connect",
            "httpd_can_network_relay",
            "httpd_can_network_connect_db",
        ] {
            write(&self.selinuxfs.join("booleans").join(name), "0 0");
        }
    }

    /// securityfs with AppArmor's profile list, Debian 12 style (plus a profile for nginx).
    fn apparmor_profiles(&self, nginx_mode: &str) {
        let profiles = format!(
            "nginx ({nginx_mode})\n/usr/sbin/cups-browsed (enforce)\nnvidia_modprobe (enforce)\nnvidia_modprobe//kmod (enforce)\nman_filter (enforce)\nman_groff (enforce)\nlsb_release (enforce)\n"
        );
        write(&self.securityfs.join("apparmor/profiles"), &profiles);
        write(
            &self.securityfs.join("lsm"),
            "lockdown,capability,landlock,yama,apparmor,bpf",
        );
    }
}

fn write(path: &Path, content: &str) {
    if let Some(dir) = path.parent() {
        fs::create_dir_all(dir).unwrap_or_else(|err| panic!("mkdir {}: {err}", dir.display()));
    }
    let text = if content.ends_with('\n') {
        content.to_string()
    } else {
        format!("{content}\n")
    };
    fs::write(path, text).unwrap_or_else(|err| panic!("write {}: {err}", path.display()));
}

/// An AVC `name_connect` denial of nginx's worker for `port`, as auditd writes it (RHEL 9,
/// `log_format = ENRICHED`), with its SYSCALL and PROCTITLE records.
fn avc_name_connect(
    time: SystemTime,
    serial: u32,
    pid: u32,
    port: u16,
    permissive: bool,
) -> (String, String) {
    let stamp = audit_stamp(time, serial);
    let avc = format!(
        "type=AVC msg={stamp}: avc:  denied  {{ name_connect }} for  pid={pid} comm=\"nginx\" dest={port} scontext=system_u:system_r:httpd_t:s0 tcontext=system_u:object_r:unreserved_port_t:s0 tclass=tcp_socket permissive={}",
        u8::from(permissive)
    );
    let (success, exit) = if permissive {
        ("yes", "0")
    } else {
        ("no", "-13")
    };
    let records = format!(
        "{avc}\n\
         type=SYSCALL msg={stamp}: arch=c000003e syscall=42 success={success} exit={exit} a0=d a1=7ffd2f7b2b30 a2=10 a3=0 items=0 ppid=1 pid={pid} auid=4294967295 uid=33 gid=33 euid=33 suid=33 fsuid=33 egid=33 sgid=33 fsgid=33 tty=(none) ses=4294967295 comm=\"nginx\" exe=\"/usr/sbin/nginx\" subj=system_u:system_r:httpd_t:s0 key=(null)\u{1d}ARCH=x86_64 SYSCALL=connect AUID=\"unset\" UID=\"www-data\" GID=\"www-data\" EUID=\"www-data\" SUID=\"www-data\" FSUID=\"www-data\" EGID=\"www-data\" SGID=\"www-data\" FSGID=\"www-data\"\n\
         type=PROCTITLE msg={stamp}: proctitle=6E67696E783A20776F726B65722070726F63657373\n"
    );
    (avc, records)
}

/// audit.log: yesterday's denial of the same port (outside the window: it must not count),
/// a service start, then `recent` (the records of the window).
fn write_audit_log(fixture: &LsmFixture, worker: u32, recent: &str) {
    let day_ago = SystemTime::now() - Duration::from_secs(86_400);
    let (_, old) = avc_name_connect(day_ago, 101, worker + 1, PORT, false);
    let start = audit_stamp(SystemTime::now() - Duration::from_secs(1), 455);
    let service = format!(
        "type=SERVICE_START msg={start}: pid=1 uid=0 auid=4294967295 ses=4294967295 subj=system_u:system_r:init_t:s0 msg='unit=nginx comm=\"systemd\" exe=\"/usr/lib/systemd/systemd\" hostname=? addr=? terminal=? res=success'\u{1d}UID=\"root\" AUID=\"unset\"\n"
    );
    write(&fixture.audit_log, &format!("{old}{service}{recent}"));
}

/// A healthy nginx → python (TCP 8000) stack; returns the nginx worker's pid.
fn healthy_tcp_stack(lab: &mut Lab) -> u32 {
    lab.start_http_backend(IP, PORT);
    lab.start_nginx(&lab.proxy_location(&upstream()));
    assert_eq!(
        lab.curl_through_nginx("/"),
        200,
        "the stack itself is healthy; only the fixtures speak of a denial\n{}",
        lab.diagnostics()
    );
    nginx_worker_pid(lab)
}

#[test]
fn lab_selinux_denial_from_fixtures() {
    let Some(mut lab) = Lab::new("selinux-enforcing") else {
        return;
    };
    let worker = healthy_tcp_stack(&mut lab);
    let fixture = LsmFixture::new(&lab);
    fixture.selinux("1");
    let (avc, records) = avc_name_connect(SystemTime::now(), 456, worker, PORT, false);
    write_audit_log(&fixture, worker, &records);

    let run = diagnose(&lab, &["--config", &fixture.config_arg()]);
    run.assert(
        &Expect::report("break", 2).upstream(
            UpstreamExpect::at(&upstream())
                .status("break")
                .step("security")
                .cause("selinux_denied")
                .summary_contains("name_connect")
                .summary_contains("unreserved_port_t")
                // Yesterday's denial is outside the window.
                .summary_contains("1 AVC denial in the window")
                .evidence_contains(&avc)
                .evidence_contains("0 0 (off)"),
        ),
    );
}

#[test]
fn lab_selinux_permissive_denial_is_a_warning() {
    let Some(mut lab) = Lab::new("selinux-permissive") else {
        return;
    };
    let worker = healthy_tcp_stack(&mut lab);
    let fixture = LsmFixture::new(&lab);
    fixture.selinux("0");
    // Permissive mode logs the denial (permissive=1) and lets the connect through.
    let (avc, records) = avc_name_connect(SystemTime::now(), 457, worker, PORT, true);
    write_audit_log(&fixture, worker, &records);

    let run = diagnose(&lab, &["--config", &fixture.config_arg()]);
    run.assert(
        &Expect::report("warning", 1).upstream(
            UpstreamExpect::at(&upstream())
                .status("warning")
                .step("security")
                .cause("selinux_denied")
                .summary_contains("permissive")
                .evidence_contains(&avc)
                .step_entry(StepExpect::at("security").outcome("warn")),
        ),
    );
}

/// A healthy nginx → php-fpm (unix socket) stack; returns the socket and the worker's pid.
fn healthy_php_stack(lab: &mut Lab) -> (PathBuf, u32) {
    let socket = lab.path("run/php-fpm.sock");
    lab.start_php_fpm(PhpFpmPool::unix(&socket));
    let location = lab.fastcgi_location(&socket);
    lab.start_nginx(&location);
    assert_eq!(
        lab.curl_through_nginx("/"),
        200,
        "the stack itself is healthy; only the fixtures speak of a denial\n{}",
        lab.diagnostics()
    );
    let worker = nginx_worker_pid(lab);
    (socket, worker)
}

/// The kernel's AppArmor record for nginx's connect() to `socket` (file mediation), without
/// the syslog prefix: `audit: type=1400 audit(...): apparmor="..." operation="connect" ...`.
fn apparmor_connect(
    time: SystemTime,
    serial: u32,
    action: &str,
    pid: u32,
    socket: &Path,
) -> String {
    format!(
        "audit: type=1400 {}: apparmor=\"{action}\" operation=\"connect\" class=\"file\" profile=\"nginx\" name=\"{}\" pid={pid} comm=\"nginx\" requested_mask=\"wr\" denied_mask=\"wr\" fsuid=33 ouid=33",
        audit_stamp(time, serial),
        socket.display()
    )
}

/// kern.log (RFC 3339 prefixes) and syslog (traditional prefixes) as rsyslog writes them on
/// Debian 12 without auditd: the kernel line lands in both; the agent must count it once.
fn write_kernel_logs(fixture: &LsmFixture, record: &str) {
    let now = SystemTime::now();
    let boot = 12_345.678_901_f64;
    let old = now - Duration::from_secs(3_600);
    let kern = format!(
        "{} lab kernel: [ 8745.100000] e1000e 0000:00:1f.6 eno1: NIC Link is Up 1000 Mbps Full Duplex, Flow Control: Rx/Tx\n\
         {} lab kernel: [{boot:.6}] {record}\n",
        rfc3339(old),
        rfc3339(now)
    );
    write(&fixture.kern_log, &kern);
    let syslog = format!(
        "{} lab systemd[1]: Started php8.2-fpm.service - The PHP 8.2 FastCGI Process Manager.\n\
         {} lab kernel: [{boot:.6}] {record}\n",
        traditional(old),
        traditional(now)
    );
    write(&fixture.syslog, &syslog);
}

/// The worker's AppArmor label as this host's kernel reports it (`/proc/PID/attr/apparmor/
/// current`, else `/proc/PID/attr/current`), when that is an AppArmor label at all. None on the
/// lab machines: no LSM labels processes there (reading fails with EINVAL), and a SELinux
/// context is not an AppArmor label.
fn real_apparmor_label(pid: u32) -> Option<String> {
    for file in ["attr/apparmor/current", "attr/current"] {
        match fs::read_to_string(format!("/proc/{pid}/{file}")) {
            Ok(text) => {
                let label = text.trim_end_matches(['\0', '\n']).to_string();
                let is_apparmor = label == "unconfined" || label.ends_with(')');
                return is_apparmor.then_some(label);
            }
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => continue,
            Err(_) => return None,
        }
    }
    None
}

#[test]
fn lab_apparmor_denial_from_fixtures() {
    let Some(mut lab) = Lab::new("apparmor-enforce") else {
        return;
    };
    let (socket, worker) = healthy_php_stack(&mut lab);
    let fixture = LsmFixture::new(&lab);
    // No selinuxfs: SELinux is off. AppArmor's profile for nginx enforces.
    fixture.apparmor_profiles("enforce");
    let record = apparmor_connect(SystemTime::now(), 4242, "DENIED", worker, &socket);
    write_kernel_logs(&fixture, &record);

    let run = diagnose(&lab, &["--config", &fixture.config_arg()]);
    let expect = UpstreamExpect::at(&unix_addr(&socket))
        .step("security")
        .cause("apparmor_denied")
        .evidence_contains(&record);
    match real_apparmor_label(worker).as_deref() {
        // A host that runs AppArmor says for itself that this nginx is unconfined, which
        // outweighs the fixture's profile list: the denial is then from before, a warning.
        Some("unconfined") => run.assert(
            &Expect::report("warning", 1).upstream(
                expect
                    .status("warning")
                    .summary_contains("now runs unconfined"),
            ),
        ),
        // The lab machines: nginx's own label cannot be read (EINVAL), so the loaded profile
        // named nginx, in enforce mode, tells its confinement, and the denial stands.
        _ => run.assert(
            &Expect::report("break", 2).upstream(
                expect
                    .status("break")
                    .summary_contains("AppArmor profile nginx denies nginx connect")
                    .summary_contains(&unix_addr(&socket))
                    // The same kernel line in kern.log and syslog is one record.
                    .summary_contains("1 DENIED record")
                    .evidence_contains("nginx (enforce)"),
            ),
        ),
    }
}

#[test]
fn lab_apparmor_complain_mode_is_a_warning() {
    let Some(mut lab) = Lab::new("apparmor-complain") else {
        return;
    };
    let (socket, worker) = healthy_php_stack(&mut lab);
    let fixture = LsmFixture::new(&lab);
    // Complain mode logs ALLOWED and lets the connect through.
    fixture.apparmor_profiles("complain");
    let record = apparmor_connect(SystemTime::now(), 4243, "ALLOWED", worker, &socket);
    write_kernel_logs(&fixture, &record);

    let run = diagnose(&lab, &["--config", &fixture.config_arg()]);
    run.assert(
        &Expect::report("warning", 1).upstream(
            UpstreamExpect::at(&unix_addr(&socket))
                .status("warning")
                .step("security")
                .cause("apparmor_denied")
                .summary_contains("complain")
                .evidence_contains(&record),
        ),
    );
}

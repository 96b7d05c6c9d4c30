//! Read-only for real: the agent's `nginx -t` child must leave no trace on the host. The
//! config under test differs from the running nginx the way a half-edited one does: another
//! `user`, a pid file, logs and temp directories that do not exist yet. A plain `nginx -t`
//! creates those files and chowns the temp directories to `nobody` (the control proves it on
//! the same files); the agent's run must change nothing.

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use crate::harness::{tcp_addr, Expect, Lab};

const IP: &str = "127.0.0.1";
const PORT: u16 = 8000;

/// Every path under `roots` with its owner, group, mode and size.
fn snapshot(roots: &[PathBuf]) -> BTreeMap<PathBuf, (u32, u32, u32, u64)> {
    let mut out = BTreeMap::new();
    let mut stack: Vec<PathBuf> = roots.to_vec();
    while let Some(p) = stack.pop() {
        let Ok(meta) = std::fs::symlink_metadata(&p) else {
            continue;
        };
        let len = if meta.is_file() { meta.len() } else { 0 };
        out.insert(p.clone(), (meta.uid(), meta.gid(), meta.mode(), len));
        if meta.is_dir() && out.len() < 100_000 {
            if let Ok(entries) = std::fs::read_dir(&p) {
                stack.extend(entries.flatten().map(|e| e.path()));
            }
        }
    }
    out
}

fn differences(
    before: &BTreeMap<PathBuf, (u32, u32, u32, u64)>,
    after: &BTreeMap<PathBuf, (u32, u32, u32, u64)>,
) -> Vec<String> {
    // The backend writes its own log when the agent's direct request reaches it: that is the
    // backend answering, not the agent writing.
    let backend_output = |p: &Path| {
        p.file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.starts_with("python-"))
    };
    let mut out = Vec::new();
    for (p, a) in after.iter().filter(|(p, _)| !backend_output(p)) {
        match before.get(p) {
            None => out.push(format!("created {}", p.display())),
            Some(b) if b != a => out.push(format!("changed {}: {b:?} -> {a:?}", p.display())),
            _ => {}
        }
    }
    out.extend(
        before
            .keys()
            .filter(|p| !after.contains_key(*p))
            .map(|p| format!("removed {}", p.display())),
    );
    out
}

/// A lab with the python backend on IP:PORT behind nginx, proven to serve 200; None when the
/// lab cannot run here (skipped, or failed in CI).
fn healthy_tcp_stack(scenario: &str) -> Option<(Lab, String)> {
    let mut lab = Lab::new(scenario)?;
    let upstream = tcp_addr(IP, PORT);
    lab.start_http_backend(IP, PORT);
    lab.start_nginx(&lab.proxy_location(&upstream));
    assert_eq!(lab.curl_through_nginx("/"), 200, "{}", lab.diagnostics());
    Some((lab, upstream))
}

/// The lab's config with its pid, logs and temp paths relative to nginx's prefix
/// (/usr/share/nginx on Debian), flat names nginx creates without parent directories.
fn with_relative_paths(live: &str, root: &str) -> String {
    live.replace(&format!("pid {root}/nginx.pid;"), "pid why502-lab.pid;")
        .replace(&format!("{root}/logs/"), "why502-lab-")
        .replace(&format!("{root}/tmp/"), "why502-lab-tmp-")
}

#[test]
fn lab_nginx_t_leaves_no_trace() {
    let Some((lab, _upstream)) = healthy_tcp_stack("ro-nginx-t") else {
        return;
    };

    // The edited config: another user, and runtime paths that do not exist yet.
    let root = lab.root().display().to_string();
    let live = std::fs::read_to_string(lab.nginx_conf_arg()).expect("the lab's nginx.conf");
    let edited = live
        .replace("user www-data;", "user nobody nogroup;")
        .replace(
            &format!("pid {root}/nginx.pid;"),
            &format!("pid {root}/run2/nginx.pid;"),
        )
        .replace(&format!("{root}/logs/"), &format!("{root}/logs2/"))
        .replace(&format!("{root}/tmp/"), &format!("{root}/tmp2/"));
    for dir in ["run2", "logs2", "tmp2"] {
        std::fs::create_dir_all(lab.path(dir)).expect("mkdir");
    }
    let conf = lab.path("conf/edited.conf");
    std::fs::write(&conf, edited).expect("write the edited config");
    let conf_arg = conf.display().to_string();
    // And one whose paths are relative to nginx's prefix (/usr/share/nginx on Debian).
    let relative = lab.path("conf/relative.conf");
    std::fs::write(&relative, with_relative_paths(&live, &root))
        .expect("write the relative config");
    let relative_arg = relative.display().to_string();

    let watched: Vec<PathBuf> = [
        lab.root(),
        Path::new("/var/lib/nginx"),
        Path::new("/var/log/nginx"),
    ]
    .iter()
    .map(|p| p.to_path_buf())
    .chain(["/run", "/usr/share/nginx"].iter().map(PathBuf::from))
    .collect();
    // /run and /usr/share/nginx: their direct entries (other programs write deeper in /run).
    let shallow = |paths: &[PathBuf]| {
        let mut s = snapshot(&paths[..3]);
        for p in &paths[3..] {
            if let Ok(entries) = std::fs::read_dir(p) {
                for e in entries.flatten() {
                    s.insert(e.path(), (0, 0, 0, 0));
                }
            }
        }
        s
    };
    let before = shallow(&watched);
    // 100 runs, as a timer would make them over a day and a half.
    for i in 0..100 {
        let arg = if i % 2 == 0 { &conf_arg } else { &relative_arg };
        let run = lab.run_agent(&["--json", "--nginx-conf", arg]);
        let config = config_check(run.report());
        assert_eq!(
            config["outcome"],
            "pass",
            "nginx -t must accept the edited config in isolation\n{}",
            run.context()
        );
    }
    let after = shallow(&watched);
    eprintln!(
        "100 runs: {} paths under {} compared before and after",
        after.len(),
        watched
            .iter()
            .map(|p| p.display().to_string())
            .collect::<Vec<_>>()
            .join(", ")
    );
    let changed = differences(&before, &after);
    assert!(
        changed.is_empty(),
        "the agent's runs changed the host:\n{}",
        changed.join("\n")
    );

    // The control: nginx -t run plainly does change these very files, so the check above can
    // see a change when there is one.
    let plain = lab.nginx_config_test_of(&conf);
    assert_eq!(plain.exit_code, 0, "{}", plain.stderr);
    let changed = differences(&before, &shallow(&watched));
    assert!(
        changed
            .iter()
            .any(|c| c.contains("tmp2/") || c.contains("logs2/") || c.contains("run2/")),
        "a plain nginx -t was expected to create or chown the edited config's paths; it changed: {changed:?}"
    );
    eprintln!(
        "plain nginx -t changed {} path(s) the agent's isolated run left alone, e.g. {:?}",
        changed.len(),
        changed.iter().take(3).collect::<Vec<_>>()
    );
}

/// The agent's `nginx_config` host check from a JSON run.
fn config_check(report: &serde_json::Value) -> serde_json::Value {
    report["host_checks"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|c| c["step"] == "nginx_config")
        .cloned()
        .unwrap_or_default()
}

/// The agent and every process it starts, under strace, on a healthy stack, with a config
/// whose `user` differs from the running nginx's, on a broken stack, and with nginx stopped
/// and a config of relative paths given relative to the working directory: no write to a
/// host path, no chown/chmod/mkdir/unlink/rename there, no bound non-ephemeral port, no
/// signal to a process it did not start. The control runs a plain `nginx -t` under the same
/// audit and must be caught.
#[test]
fn lab_strace_agent_and_children_change_nothing() {
    let Some((mut lab, upstream)) = healthy_tcp_stack("ro-strace") else {
        return;
    };
    let cwd = lab.root().to_path_buf();
    let mut audits = Vec::new();
    let mut check = |label: &str, audit: crate::harness::SyscallAudit| {
        eprintln!("strace {label}: {}", audit.summary());
        assert!(
            audit.violations.is_empty(),
            "{label}: the agent or a child changed the host:\n{}",
            audit.violations.join("\n")
        );
        assert!(
            audit.checked.get("open").copied().unwrap_or(0) > 0,
            "{label}: the trace saw no open at all; is strace following the agent?"
        );
        audits.push(audit);
    };

    let (run, audit) = lab.run_agent_traced(&["--json"], &cwd);
    run.assert(&Expect::healthy(&upstream));
    assert_eq!(
        config_check(run.report())["outcome"],
        "pass",
        "{}",
        run.context()
    );
    check("healthy stack", audit);

    let root = lab.root().display().to_string();
    let live = std::fs::read_to_string(lab.nginx_conf_arg()).expect("the lab's nginx.conf");
    let other_user = lab.path("conf/other-user.conf");
    std::fs::write(
        &other_user,
        live.replace("user www-data;", "user nobody nogroup;"),
    )
    .expect("write");
    let other_user_arg = other_user.display().to_string();
    let (run, audit) = lab.run_agent_traced(&["--json", "--nginx-conf", &other_user_arg], &cwd);
    assert_eq!(
        config_check(run.report())["outcome"],
        "pass",
        "{}",
        run.context()
    );
    check("config with another user", audit);

    lab.stop_http_backend(IP, PORT);
    lab.prove_502("connect() failed (111: Connection refused)");
    let (run, audit) = lab.run_agent_traced(&["--json"], &cwd);
    run.assert(&Expect::broken(&upstream, "backend_up", "backend_down"));
    check("backend down", audit);

    // nginx stopped; a config whose paths are relative to nginx's prefix (/usr/share/nginx on
    // Debian), named relative to the working directory. A plain nginx -t would create
    // /usr/share/nginx/logs/… and bind 127.0.0.1:8080, free now.
    lab.stop_nginx();
    let relative = with_relative_paths(&live, &root);
    assert!(relative.contains("why502-lab-error"), "{relative}");
    std::fs::write(lab.path("conf/relative.conf"), &relative).expect("write");
    let (run, audit) =
        lab.run_agent_traced(&["--json", "--nginx-conf", "conf/relative.conf"], &cwd);
    assert_eq!(
        config_check(run.report())["outcome"],
        "pass",
        "{}",
        run.context()
    );
    assert!(
        audit.refused_binds > 0,
        "nginx -t was expected to try binding its listen address\n{}",
        audit.summary()
    );
    check("nginx stopped, relative paths", audit);
    let leftovers = || -> Vec<PathBuf> {
        std::fs::read_dir("/usr/share/nginx")
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.to_string_lossy().contains("why502"))
            .collect()
    };
    assert_eq!(leftovers(), Vec::<PathBuf>::new(), "created on the host");

    // The control: the same audit catches a plain nginx -t of the relative config.
    let nginx = crate::harness::find_program("nginx").expect("nginx");
    let control = lab.audit_command(
        &nginx,
        &[
            "-t".into(),
            "-c".into(),
            lab.path("conf/relative.conf").display().to_string(),
        ],
    );
    let created = leftovers();
    for p in &created {
        let _ = std::fs::remove_dir_all(p).or_else(|_| std::fs::remove_file(p));
    }
    eprintln!("strace control (plain nginx -t): {}", control.summary());
    assert!(
        control
            .violations
            .iter()
            .any(|v| v.contains("bound port 8080"))
            && control
                .violations
                .iter()
                .any(|v| v.contains("/usr/share/nginx/"))
            && !created.is_empty(),
        "a plain nginx -t must be caught binding 8080 and writing under /usr/share/nginx:\n{}",
        control.violations.join("\n")
    );
}

/// The shipped systemd unit's sandbox (ProtectSystem=strict, its capability bounding set,
/// NoNewPrivileges), emulated with a read-only mount namespace and setpriv: a healthy stack is
/// ok, and nginx -t passes — no false nginx_config_invalid from a read-only pid file or log.
#[test]
fn lab_hardened_unit_diagnoses_a_healthy_stack_as_ok() {
    let Some((lab, upstream)) = healthy_tcp_stack("ro-hardened") else {
        return;
    };
    let unit = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../packaging/systemd/why502.service");
    let run = lab.run_agent_hardened(&unit, &["--json"]);
    assert_eq!(
        config_check(run.report())["outcome"],
        "pass",
        "nginx -t under the unit's sandbox\n{}",
        run.context()
    );
    run.assert(&Expect::healthy(&upstream));
    // Nothing the agent reads was out of reach: no step and no host check is unknown.
    let unknown: Vec<String> = crate::harness::findings(run.report())
        .into_iter()
        .filter(|f| f["outcome"] == "unknown")
        .map(|f| f["summary"].to_string())
        .collect();
    assert!(unknown.is_empty(), "{unknown:?}\n{}", run.context());

    // A unit that bounds CAP_SYS_ADMIN away: nginx -t cannot be isolated, so it is not run,
    // and the check says so (unknown, naming the capability), never nginx_config_invalid.
    let text = std::fs::read_to_string(&unit).expect("the unit");
    let weaker = lab.path("why502-no-sys-admin.service");
    std::fs::write(&weaker, text.replace(" CAP_SYS_ADMIN", "")).expect("write");
    let run = lab.run_agent_hardened(&weaker, &["--json"]);
    let check = config_check(run.report());
    assert_eq!(check["outcome"], "unknown", "{}", run.context());
    assert!(
        check["summary"]
            .as_str()
            .unwrap_or("")
            .contains("CAP_SYS_ADMIN"),
        "{}",
        run.context()
    );
    assert_eq!(
        (run.report()["status"].as_str(), run.exit_code),
        (Some("unknown"), 3),
        "{}",
        run.context()
    );
}

//! Read-only for real: the agent's `nginx -t` child must leave no trace on the host. The
//! config under test differs from the running nginx the way a half-edited one does: another
//! `user`, a pid file, logs and temp directories that do not exist yet. A plain `nginx -t`
//! creates those files and chowns the temp directories to `nobody` (the control proves it on
//! the same files); the agent's run must change nothing.

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use crate::harness::{tcp_addr, Lab};

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

#[test]
fn lab_nginx_t_leaves_no_trace() {
    let Some(mut lab) = Lab::new("ro-nginx-t") else {
        return;
    };
    let upstream = tcp_addr(IP, PORT);
    lab.start_http_backend(IP, PORT);
    lab.start_nginx(&lab.proxy_location(&upstream));
    assert_eq!(lab.curl_through_nginx("/"), 200, "{}", lab.diagnostics());

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
    for _ in 0..3 {
        let run = lab.run_agent(&["--json", "--nginx-conf", &conf_arg]);
        let report = run.report();
        let config = report["host_checks"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|c| c["step"] == "nginx_config")
            .cloned()
            .unwrap_or_default();
        assert_eq!(
            config["outcome"],
            "pass",
            "nginx -t must accept the edited config in isolation\n{}",
            run.context()
        );
    }
    let after = shallow(&watched);
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

//! Step `resources`, as the cause behind a break: a backend the kernel OOM-killed in a small
//! memory cgroup (backend_down → oom_killed), a backend whose working directory is a full
//! tmpfs or one out of inodes (it drops the connection: upstream_reset → disk_full /
//! inodes_exhausted), and a healthy backend beside an unrelated OOM kill (a host warning).
//! Scenarios that make the kernel OOM-kill a process run alone (`Lab::new_exclusive`), so their
//! kill is the newest; every scenario sees the host's older kills (see `harness/history.rs`).

use std::time::Duration;

use crate::harness::{
    kernel_oom_kills, poll_until, record_kill, tcp_addr, Expect, Lab, MemoryCgroup, TmpfsMount,
    UpstreamExpect,
};

const IP: &str = "127.0.0.1";
const PORT: u16 = 8000;

fn upstream() -> String {
    tcp_addr(IP, PORT)
}

fn cgroup_name(lab: &Lab) -> String {
    format!("why502-{}", lab.netns_name())
}

/// The backend runs as a systemd service would: a unit file whose `ExecStart=` is the backend's
/// exact command line (with its listen address), and a memory cgroup named after the unit
/// (`.../why502-<netns>/<netns>-app.service`, 64 MiB). It allocates until the kernel kills it;
/// nothing listens afterwards, so the agent ties the kill to the upstream through the unit
/// (`[paths] units` of its config): the unit says who serves the address, the kill's cgroup
/// names the unit. The bystander kills of the host's history must not be taken for it.
#[test]
fn lab_backend_oom_killed_in_its_memory_cgroup() {
    // Declared before the lab, so they are removed after its processes are gone.
    let slice: MemoryCgroup;
    let service: MemoryCgroup;
    let Some(mut lab) = Lab::new_exclusive("oom-backend") else {
        return;
    };
    let work = lab.path("work");
    std::fs::create_dir_all(&work).expect("work dir");
    let unit = format!("{}-app.service", lab.netns_name());
    let argv = lab.app_backend_argv(IP, PORT, &work);
    let units = lab.path("units");
    std::fs::create_dir_all(&units).expect("units dir");
    std::fs::write(
        units.join(&unit),
        format!(
            "[Unit]\nDescription=why502 lab app (python3)\nAfter=network.target\n\n\
             [Service]\nType=simple\nExecStart={}\nWorkingDirectory={}\nMemoryMax=64M\nRestart=no\n\n\
             [Install]\nWantedBy=multi-user.target\n",
            argv.join(" "),
            work.display()
        ),
    )
    .expect("write the unit file");
    let config = lab.path("conf/why502.toml");
    std::fs::write(
        &config,
        format!("[paths]\nunits = [{:?}]\n", units.display().to_string()),
    )
    .expect("write the agent config");

    let pid = lab.start_app_backend(IP, PORT, &work);
    slice = MemoryCgroup::new(&cgroup_name(&lab), 1 << 30);
    service = slice.child(&unit, 64 << 20);
    service.add(pid);
    lab.start_nginx(&lab.proxy_location(&upstream()));
    assert_eq!(lab.curl_through_nginx("/"), 200, "{}", lab.diagnostics());
    // The backend allocates until the kernel kills it: no answer.
    assert_eq!(lab.curl_backend(&format!("http://{}/hog", upstream())), 0);
    assert!(
        poll_until(Duration::from_secs(3), || kernel_oom_kills()
            .contains(&pid)
            .then_some(()))
        .is_some(),
        "the kernel log has no OOM kill of the backend (pid {pid})"
    );
    record_kill(pid);
    lab.prove_502("(111: Connection refused)");

    let run = lab.run_agent(&[
        "--json",
        "--config",
        &config.display().to_string(),
        "--nginx-conf",
        &lab.nginx_conf_arg(),
    ]);
    run.assert(
        &Expect::report("break", 2).upstream(
            UpstreamExpect::at(&upstream())
                .step("resources")
                .cause("oom_killed")
                .summary_contains(&format!("pid {pid}"))
                .evidence_contains(&format!("Killed process {pid} ")),
        ),
    );
}

#[test]
fn lab_unrelated_oom_kill_is_a_warning() {
    let Some(mut lab) = Lab::new_exclusive("oom-unrelated") else {
        return;
    };
    lab.start_http_backend(IP, PORT);
    lab.start_nginx(&lab.proxy_location(&upstream()));
    assert_eq!(lab.curl_through_nginx("/"), 200, "{}", lab.diagnostics());
    // Something else on the host runs out of its memory cgroup (the kernel SIGKILLs it).
    let cgroup = MemoryCgroup::new(&cgroup_name(&lab), 32 << 20);
    let hog = lab.oom_kill_a_hog_in(&cgroup);

    let run = lab.run_agent(&["--json", "--nginx-conf", &lab.nginx_conf_arg()]);
    run.assert(
        &Expect::report("warning", 1)
            .upstream(UpstreamExpect::at(&upstream()).status("ok").cause("none")),
    );
    let checks = run.report()["host_checks"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert!(
        checks.iter().any(|c| c["cause"] == "oom_killed"
            && c["outcome"] == "warn"
            && c["summary"]
                .as_str()
                .is_some_and(|s| s.contains(&format!("(pid {hog})")))),
        "expected a host warning naming the killed pid {hog}\n{}",
        run.context()
    );
}

fn full_workdir_scenario(name: &str, options: &str, file_bytes: usize, cause: &str) {
    let Some(mut lab) = Lab::new(name) else {
        return;
    };
    let data = TmpfsMount::new(&lab.path("data"), options);
    let pid = lab.start_app_backend(IP, PORT, &data.path);
    lab.start_nginx(&lab.proxy_location(&upstream()));
    assert_eq!(lab.curl_through_nginx("/"), 200, "{}", lab.diagnostics());
    let written = data.fill_with_files("filler", file_bytes);
    assert!(
        written > 0,
        "nothing could be written to {}",
        data.path.display()
    );
    lab.prove_502("upstream prematurely closed connection");

    let run = lab.run_agent(&["--json", "--nginx-conf", &lab.nginx_conf_arg()]);
    run.assert(
        &Expect::report("break", 2).upstream(
            UpstreamExpect::at(&upstream())
                .step("resources")
                .cause(cause)
                .summary_contains(&data.path.display().to_string()),
        ),
    );
    // The backend still runs: the verdict is about its disk, not about it being down.
    assert!(std::path::Path::new(&format!("/proc/{pid}")).exists());
}

#[test]
fn lab_backend_workdir_on_a_full_tmpfs() {
    full_workdir_scenario("disk-full", "size=1m", 64 * 1024, "disk_full");
}

#[test]
fn lab_backend_workdir_out_of_inodes() {
    full_workdir_scenario("inodes-out", "size=64m,nr_inodes=32", 0, "inodes_exhausted");
}

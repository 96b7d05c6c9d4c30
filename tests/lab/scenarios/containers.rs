//! Containers behind published ports, with a real dockerd in the lab's namespace (see
//! harness/docker.rs): nginx proxies to four host ports, each published by a container —
//! one healthy, one stopped with `docker stop`, one OOM-killed by its memory limit, one
//! exiting at start under `--restart always`. The kernel log is the machine's, with every
//! other scenario's OOM kills in it, and the window is the default one.

use crate::harness::{find_upstream, kernel_oom_kills, record_kill, tcp_addr, Lab, LAB_IMAGE};

const IP: &str = "127.0.0.1";
const HEALTHY: u16 = 8101;
const STOPPED: u16 = 8102;
const OOM: u16 = 8103;
const LOOPING: u16 = 8104;

fn publish(port: u16) -> String {
    format!("{IP}:{port}:80")
}

#[test]
fn lab_containers_behind_published_ports() {
    // Exclusive: the OOM kill of this scenario must not land in another one's run.
    let Some(mut lab) = Lab::new_exclusive("containers") else {
        return;
    };
    let Some(docker) = lab.start_dockerd() else {
        return;
    };
    let httpd = ["httpd", "-f", "-p", "80", "-h", "/www"];
    let run = |name: &str, port: u16, extra: &[&str], cmd: &[&str]| {
        let p = publish(port);
        let mut args = vec!["run", "-d", "--name", name, "-p", &p];
        args.extend_from_slice(extra);
        args.push(LAB_IMAGE);
        args.extend_from_slice(cmd);
        docker.cli(&args);
    };
    run("app", HEALTHY, &[], &httpd);
    run("stopped", STOPPED, &[], &httpd);
    docker.wait_for("stopped", "ran", |v| v["State"]["Running"] == true);
    // httpd as pid 1 ignores SIGTERM: `docker stop` kills it after 1 s (exit code 137).
    docker.cli(&["stop", "-t", "1", "stopped"]);
    let kills_before = kernel_oom_kills();
    run(
        "hog",
        OOM,
        &["-m", "32m", "--memory-swap", "32m"],
        &[
            "sh",
            "-c",
            "httpd -p 80 -h /www; sleep 1; exec tail /dev/zero",
        ],
    );
    docker.wait_for("hog", "was OOM-killed", |v| {
        v["State"]["OOMKilled"] == true && v["State"]["Running"] == false
    });
    for pid in kernel_oom_kills().difference(&kills_before) {
        record_kill(*pid);
    }
    run(
        "crashing",
        LOOPING,
        &["--restart", "always"],
        &[
            "sh",
            "-c",
            "echo starting app; echo 'fatal: cannot open /data/db' >&2; exit 3",
        ],
    );
    docker.wait_for("crashing", "restarted three times", |v| {
        v["RestartCount"].as_u64().unwrap_or(0) >= 3
    });

    let location = |port: u16| lab.proxy_location(&format!("{}/", tcp_addr(IP, port)));
    let locations = [
        ("/app/", location(HEALTHY)),
        ("/stopped/", location(STOPPED)),
        ("/oom/", location(OOM)),
        ("/crashing/", location(LOOPING)),
    ];
    let borrowed: Vec<(&str, &str)> = locations.iter().map(|(m, b)| (*m, b.as_str())).collect();
    lab.start_nginx_with_locations(&borrowed);

    // The breakage is real: nginx answers 502 for the three, 200 for the healthy one, and
    // logs the refused connects.
    assert_eq!(
        lab.curl_through_nginx("/app/"),
        200,
        "{}",
        lab.diagnostics()
    );
    for path in ["/stopped/", "/oom/", "/crashing/"] {
        assert_eq!(
            lab.curl_through_nginx(path),
            502,
            "{path}\n{}",
            lab.diagnostics()
        );
    }
    let refused = "(111: Connection refused) while connecting to upstream";
    for port in [STOPPED, OOM] {
        assert!(
            lab.error_log_text()
                .lines()
                .any(|l| l.contains(refused) && l.contains(&format!("{IP}:{port}"))),
            "nginx logged no refused connect to {port}\n{}",
            lab.error_log_text()
        );
    }

    let agent = lab.run_agent(&["--json", "--nginx-conf", &lab.nginx_conf_arg()]);
    let report = agent.report();
    let up = |port: u16| {
        find_upstream(report, &tcp_addr(IP, port))
            .unwrap_or_else(|| panic!("no upstream {port}\n{}", agent.context()))
    };
    let summary = |port: u16| {
        up(port)["verdict"]["summary"]
            .as_str()
            .unwrap_or("")
            .to_string()
    };

    // Healthy: ok, and the report names the container behind docker-proxy.
    let healthy = up(HEALTHY);
    assert_eq!(healthy["status"], "ok", "{}", agent.context());
    assert_eq!(healthy["container"]["name"], "app", "{}", agent.context());
    assert_eq!(healthy["container"]["state"], "running");
    assert!(
        healthy["container"]["tie"]
            .as_str()
            .is_some_and(|t| t.starts_with("docker-proxy (pid ")),
        "{}",
        healthy["container"]
    );

    // Stopped: backend_down naming the container and its exit code; its exit is on the
    // timeline.
    let stopped = up(STOPPED);
    assert_eq!(
        (
            stopped["status"].as_str(),
            stopped["verdict"]["cause"].as_str()
        ),
        (Some("break"), Some("backend_down")),
        "{}",
        agent.context()
    );
    let s = summary(STOPPED);
    assert!(
        s.contains("container stopped") && s.contains("exit code 137"),
        "{s}"
    );
    assert!(s.contains("the engine records no OOM kill"), "{s}");
    assert_eq!(stopped["container"]["exit_code"], 137);
    assert!(
        stopped["timeline"]
            .as_array()
            .is_some_and(|t| t.iter().any(|e| {
                e["event"] == "backend_exited"
                    && e["detail"]
                        .as_str()
                        .is_some_and(|d| d.contains("container stopped exited with code 137"))
            })),
        "{}",
        stopped["timeline"]
    );

    // OOM-killed by its limit: oom_killed naming the container, from its state and from the
    // kernel's kill in its own cgroup.
    let hog = up(OOM);
    assert_eq!(hog["verdict"]["cause"], "oom_killed", "{}", agent.context());
    let s = summary(OOM);
    assert!(
        s.contains("container hog was OOM-killed") && s.contains("32 MiB"),
        "{s}"
    );
    assert_eq!(hog["container"]["oom_killed"], true);
    let resources = hog["steps"]
        .as_array()
        .and_then(|steps| steps.iter().find(|st| st["step"] == "resources"))
        .expect("the resources step ran to explain the break");
    assert_eq!(resources["cause"], "oom_killed", "{resources}");
    assert!(
        resources["summary"]
            .as_str()
            .is_some_and(|x| x.contains("container hog's own cgroup")),
        "{resources}"
    );

    // Exiting at start, restarted again and again: its exit code and the line it wrote.
    let crashing = up(LOOPING);
    assert_eq!(crashing["status"], "break", "{}", agent.context());
    let s = summary(LOOPING);
    assert!(s.contains("code 3"), "{s}");
    assert!(s.contains("fatal: cannot open /data/db"), "{s}");
    assert_eq!(crashing["verdict"]["cause"], "app_error", "{s}");
    assert!(
        crashing["container"]["last_lines"]
            .as_array()
            .is_some_and(|l| l.iter().any(|x| x == "fatal: cannot open /data/db")),
        "{}",
        crashing["container"]
    );

    // As an unprivileged admin (not in group docker) the engine's socket refuses: the report
    // says what it could not look at instead of implying there is no container.
    let nobody = lab.run_agent_as(
        65534,
        &[],
        &["--json", "--nginx-conf", &lab.nginx_conf_arg()],
    );
    assert!(!nobody.panicked(), "{}", nobody.context());
    let s = find_upstream(nobody.report(), &tcp_addr(IP, STOPPED))
        .and_then(|u| u["verdict"]["summary"].as_str())
        .unwrap_or_default()
        .to_string();
    assert!(
        s.contains(&format!(
            "container engine at {} could not be asked",
            docker.socket().display()
        )) && s.contains("Permission denied"),
        "{s}"
    );
    drop(docker);
}

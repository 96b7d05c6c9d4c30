//! "Since when, and what changed?": php-fpm's pool file is edited (its `listen` moved to
//! another path) and php-fpm reloaded, as an admin would; nginx still points at the old
//! socket and answers 502. The break's timeline names the config change and the reload
//! before the first 502, in the JSON and in the text, and the verdict says the failures began
//! after the reload with the file changed.

use std::time::Duration;

use crate::harness::{unix_addr, FpmListen, Lab, PhpFpmPool};

#[test]
fn lab_timeline_names_the_pool_edit_and_reload_before_the_first_502() {
    let Some(mut lab) = Lab::new("timeline-pool-edit") else {
        return;
    };
    let socket = lab.path("run/php-fpm.sock");
    lab.start_php_fpm(PhpFpmPool::unix(&socket));
    lab.start_nginx(&lab.fastcgi_location(&socket));
    assert_eq!(lab.curl_through_nginx("/"), 200, "{}", lab.diagnostics());

    // The edit: the www pool now listens elsewhere; then `systemctl reload php8.2-fpm`.
    std::thread::sleep(Duration::from_millis(1100));
    let conf = lab.path("conf/php-fpm.conf");
    let moved = lab.path("run/php-fpm-new.sock");
    let text = std::fs::read_to_string(&conf).expect("php-fpm.conf");
    let edited = text.replacen(
        &format!("listen = {}\n", socket.display()),
        &format!("listen = {}\n", moved.display()),
        1,
    );
    assert_ne!(text, edited, "the pool's listen line was not found");
    std::fs::write(&conf, edited).expect("edit php-fpm.conf");
    std::thread::sleep(Duration::from_millis(1100));
    lab.reload_php_fpm(&[FpmListen::Unix(moved.clone())]);
    std::thread::sleep(Duration::from_millis(1100));
    let status = lab.curl_through_nginx("/");
    assert_eq!(status, 502, "{}", lab.diagnostics());

    let run = lab.run_agent(&["--json", "--nginx-conf", &lab.nginx_conf_arg()]);
    let report = run.json.clone().expect("a JSON report");
    let u = report["upstreams"]
        .as_array()
        .and_then(|us| us.iter().find(|u| u["address"] == unix_addr(&socket)))
        .unwrap_or_else(|| panic!("no upstream {}\n{}", unix_addr(&socket), run.context()));
    assert_eq!(u["status"], "break", "{}", run.context());
    let events: Vec<(String, String, String)> = u["timeline"]
        .as_array()
        .expect("a timeline")
        .iter()
        .map(|e| {
            (
                e["at"].as_str().unwrap_or_default().to_string(),
                e["event"].as_str().unwrap_or_default().to_string(),
                e["detail"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect();
    // The newest such event (php-fpm was also ready once before the edit, at its start).
    let at = |kind: &str, detail: &str| {
        events
            .iter()
            .rev()
            .find(|(_, k, d)| k == kind && d.contains(detail))
            .map(|(a, ..)| a.clone())
            .unwrap_or_else(|| panic!("no {kind} event with {detail:?} in {events:#?}"))
    };
    let changed = at("config_changed", "php-fpm.conf modified");
    let reloading = at("backend_exited", "Reloading in progress");
    let reloaded = at("backend_started", "ready");
    let first = at("first_failure", "");
    // RFC 3339 in UTC sorts as time does.
    assert!(
        changed <= reloading && reloading <= reloaded && reloaded <= first,
        "{events:#?}"
    );
    // The pool that moved is the one named, not its neighbour (equally alike by name; its
    // socket is the newest).
    assert_eq!(
        u["verdict"]["cause"],
        "address_mismatch",
        "{}",
        run.context()
    );
    let fix = u["verdict"]["fix"].as_str().unwrap_or_default();
    assert!(
        fix.contains(&moved.display().to_string()) && !fix.contains("bystander"),
        "{fix}"
    );
    let summary = u["verdict"]["summary"].as_str().unwrap_or_default();
    assert!(
        summary.contains("the failures began") && summary.contains("php-fpm.conf modified"),
        "{summary}"
    );

    // The same in the text a person reads.
    let text_run = lab.run_agent(&["--nginx-conf", &lab.nginx_conf_arg()]);
    assert!(text_run.stdout.contains("timeline:"), "{}", text_run.stdout);
    assert!(
        text_run.stdout.contains("config_changed"),
        "{}",
        text_run.stdout
    );
    assert!(
        text_run.stdout.contains("first_failure"),
        "{}",
        text_run.stdout
    );
}

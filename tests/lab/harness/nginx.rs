//! nginx: config template, start-and-wait, and `nginx -t`.
//!
//! nginx is started with `-c <temp dir>/conf/nginx.conf`, never the default
//! /etc/nginx/nginx.conf, so the agent's detection of the running master's
//! `-c` is exercised by every scenario that does not pass `--nginx-conf`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::history;
use super::lab::{write_file, Lab, START_TIMEOUT};
use super::process::{read_log, run_capped, tail, Captured};

/// Where every lab nginx listens (inside its own namespace).
pub const NGINX_LISTEN: &str = "127.0.0.1:8080";

const PROCESS_LABEL: &str = "nginx";
const SHIPPER_LABEL: &str = "log-shipper";

/// The reader of a FIFO error log: `python3 log_shipper.py FIFO COPY`.
const LOG_SHIPPER_PY: &str = r#"import os, sys
src, dst = sys.argv[1], sys.argv[2]
out = os.open(dst, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
print("ready log shipper", flush=True)
while True:
    fifo = os.open(src, os.O_RDONLY)
    while True:
        chunk = os.read(fifo, 65536)
        if not chunk:
            break
        os.write(out, chunk)
    os.close(fifo)
"#;
const CONFIG_TEST_CAP: Duration = Duration::from_secs(10);

/// The whole nginx.conf for a lab stack; `location_body` is the scenario's
/// `location / { ... }` content (fastcgi_pass / proxy_pass ...).
pub fn render_nginx_conf(root: &Path, location_body: &str) -> String {
    render_nginx_conf_with_locations(root, &[("/", location_body)])
}

/// nginx.conf whose lab server holds `locations` in order: (match, body), e.g.
/// `("/p2/", "fastcgi_pass ...;")` or `("= /p7/sleep", ...)`.
pub fn render_nginx_conf_with_locations(root: &Path, locations: &[(&str, &str)]) -> String {
    let r = root.display();
    let blocks: String = locations
        .iter()
        .map(|(matcher, location_body)| {
            let body: String = location_body
                .lines()
                .map(|line| format!("            {}\n", line.trim()))
                .collect();
            format!("\n        location {matcher} {{\n{body}        }}\n")
        })
        .collect();
    format!(
        "user www-data;
worker_processes 1;
daemon off;
pid {r}/nginx.pid;
error_log {r}/logs/error.log info;

events {{}}

http {{
    access_log {r}/logs/access.log;
    client_body_temp_path {r}/tmp/body;
    proxy_temp_path {r}/tmp/proxy;
    fastcgi_temp_path {r}/tmp/fastcgi;
    uwsgi_temp_path {r}/tmp/uwsgi;
    scgi_temp_path {r}/tmp/scgi;

    server {{
        listen {NGINX_LISTEN};
        server_name lab.test;
{blocks}    }}
}}
"
    )
}

/// Where nginx says a config error is: `... in /path/file.conf:12` → (path, 12).
pub fn parse_nginx_error_location(nginx_stderr: &str) -> Option<(PathBuf, usize)> {
    nginx_stderr.lines().find_map(|line| {
        let (_, location) = line.rsplit_once(" in ")?;
        let (file, number) = location.trim().rsplit_once(':')?;
        Some((PathBuf::from(file), number.parse().ok()?))
    })
}

impl Lab {
    pub fn nginx_conf(&self) -> PathBuf {
        self.path("conf/nginx.conf")
    }

    /// `--nginx-conf` argument value for `run_agent`.
    pub fn nginx_conf_arg(&self) -> String {
        self.nginx_conf().display().to_string()
    }

    /// `location` body that hands every request to php-fpm on `socket`.
    pub fn fastcgi_location(&self, socket: &Path) -> String {
        self.fastcgi_location_for(socket, &self.path("www/index.php"))
    }

    /// `location` body that hands every request to php-fpm on `socket`, running `script`.
    pub fn fastcgi_location_for(&self, socket: &Path, script: &Path) -> String {
        format!(
            "fastcgi_pass unix:{};\ninclude /etc/nginx/fastcgi_params;\nfastcgi_param SCRIPT_FILENAME {};",
            socket.display(),
            script.display()
        )
    }

    /// Like `start_nginx` with several locations in the lab's server (see
    /// `render_nginx_conf_with_locations`).
    pub fn start_nginx_with_locations(&mut self, locations: &[(&str, &str)]) {
        let text = render_nginx_conf_with_locations(self.root(), locations);
        self.start_nginx_with_conf(&text);
    }

    /// Replaces nginx's error log (`logs/error.log`, before nginx starts) by a FIFO, as when
    /// a log shipper reads it, and starts that reader: a python3 process that appends what it
    /// reads to `logs/error.log.shipped` (what `error_log_text` then returns). nginx blocks
    /// opening a FIFO nobody reads, so the reader stays up as long as nginx does.
    pub fn make_error_log_a_fifo(&mut self) {
        let fifo = self.error_log_path();
        let copy = self.path("logs/error.log.shipped");
        let _ = std::fs::remove_file(&fifo);
        let c_path = std::ffi::CString::new(fifo.display().to_string()).expect("no NUL in path");
        // SAFETY: a valid NUL-terminated path; mkfifo only creates the node.
        let rc = unsafe { libc::mkfifo(c_path.as_ptr(), 0o640) };
        assert_eq!(
            rc,
            0,
            "lab: mkfifo {}: {}",
            fifo.display(),
            std::io::Error::last_os_error()
        );
        let script = self.path("bin/log_shipper.py");
        super::lab::make_dir(&self.path("bin"), 0o755);
        write_file(&script, LOG_SHIPPER_PY);
        let args = vec![
            script.display().to_string(),
            fifo.display().to_string(),
            copy.display().to_string(),
        ];
        let python = self.tools.python3.clone();
        self.spawn(SHIPPER_LABEL, &python, &args, libc::SIGTERM);
        self.wait_for_ready_line(SHIPPER_LABEL);
        self.error_log_copy = Some(copy);
    }

    /// `location` body that proxies every request to `http://<addr>`.
    pub fn proxy_location(&self, addr: &str) -> String {
        format!("proxy_pass http://{addr};")
    }

    /// `proxy_location` plus extra directives, one per line, e.g.
    /// `&["proxy_buffer_size 4k;"]` (each with its own `;`).
    pub fn proxy_location_with(&self, addr: &str, directives: &[&str]) -> String {
        std::iter::once(self.proxy_location(addr))
            .chain(directives.iter().map(|directive| directive.to_string()))
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// Writes nginx.conf with the given location body, starts nginx in the
    /// namespace and waits until it answers on 127.0.0.1:8080.
    pub fn start_nginx(&mut self, location_body: &str) {
        let text = render_nginx_conf(self.root(), location_body);
        self.start_nginx_with_conf(&text);
    }

    /// Writes `text` as nginx.conf, starts nginx in the namespace and waits until it answers.
    /// Before nginx starts, each error log the config names gets the stack's history: old
    /// lines about its upstreams, 2 to 3 hours ago (see `history.rs`).
    pub fn start_nginx_with_conf(&mut self, text: &str) {
        self.start_nginx_with_conf_within(text, START_TIMEOUT);
    }

    /// `start_nginx_with_conf` for a config nginx needs longer than `START_TIMEOUT` to load.
    pub fn start_nginx_with_conf_within(&mut self, text: &str, start_timeout: Duration) {
        let conf = self.nginx_conf();
        write_file(&conf, text);
        if history::enabled() {
            let old = history::old_nginx_lines(&history::upstreams_in_config(text));
            for log in history::error_logs_in_config(text, self.root()) {
                self.seed_log(&log, &old);
            }
        }
        let prefix = format!("{}/", self.root().display());
        let args = vec![
            "-p".to_string(),
            prefix,
            "-c".to_string(),
            conf.display().to_string(),
        ];
        let nginx = self.tools.nginx.clone();
        // SIGTERM: fast shutdown; the master stops its workers before exiting.
        self.spawn(PROCESS_LABEL, &nginx, &args, libc::SIGTERM);
        self.wait_for_nginx(start_timeout);
    }

    /// `nginx -s reload` by signal: SIGHUP to the master, then wait until every worker is
    /// a new one (the old ones finish and exit).
    pub fn reload_nginx(&mut self) {
        let master = self.nginx_master_pid();
        let children = || children_of(master);
        let before = children();
        // SAFETY: kill has no memory preconditions; the pid is the lab's own nginx master.
        let rc = unsafe { libc::kill(master, libc::SIGHUP) };
        assert_eq!(rc, 0, "lab: SIGHUP to nginx {master}");
        let replaced = super::wait::poll_until(START_TIMEOUT, || {
            let now = children();
            (!now.is_empty() && now.iter().all(|p| !before.contains(p))).then_some(())
        });
        assert!(
            replaced.is_some(),
            "lab: nginx {master} did not replace its workers after SIGHUP"
        );
    }

    /// Kills one worker with SIGKILL, as the OOM killer would, and waits until the master
    /// has started its replacement (nginx logs `[alert] worker process N exited on signal 9`).
    pub fn kill_an_nginx_worker(&mut self) {
        let master = self.nginx_master_pid();
        let before = children_of(master);
        let victim = *before
            .first()
            .unwrap_or_else(|| panic!("lab: nginx {master} has no worker"));
        // SAFETY: kill has no memory preconditions; the pid is a worker of the lab's nginx.
        let rc = unsafe { libc::kill(victim, libc::SIGKILL) };
        assert_eq!(rc, 0, "lab: SIGKILL to nginx worker {victim}");
        let respawned = super::wait::poll_until(START_TIMEOUT, || {
            let now = children_of(master);
            (now.len() == before.len() && !now.contains(&victim)).then_some(())
        });
        assert!(
            respawned.is_some(),
            "lab: nginx {master} did not respawn worker {victim}"
        );
    }

    fn nginx_master_pid(&mut self) -> i32 {
        self.process_mut(PROCESS_LABEL)
            .map(|p| p.pid())
            .unwrap_or_else(|| panic!("lab: nginx was not started"))
    }

    /// Fast stop (SIGTERM) and wait for the master to exit.
    pub fn stop_nginx(&mut self) {
        if let Err(problem) = self.stop_process(PROCESS_LABEL) {
            panic!("lab {}: nginx did not stop: {problem}", self.scenario());
        }
    }

    fn wait_for_nginx(&mut self, start_timeout: Duration) {
        self.await_ready_within(
            start_timeout,
            PROCESS_LABEL,
            &format!("no answer on {NGINX_LISTEN}"),
            // Any HTTP status (even 502) means nginx accepts and answers.
            |lab| lab.curl_through_nginx("/") != 0,
            |lab| {
                format!(
                    "nginx error log tail:\n{}\nconfig {}:\n{}",
                    tail(&lab.error_log_text(), 4000),
                    lab.nginx_conf().display(),
                    read_log(&lab.nginx_conf())
                )
            },
        );
    }

    /// Inserts `directive` as the first line inside `http {` of the written
    /// nginx.conf, on disk only — the running nginx keeps its old config.
    /// Returns the 1-based line number the directive landed on.
    pub fn inject_into_nginx_http_block(&self, directive: &str) -> usize {
        let conf = self.nginx_conf();
        let text = read_log(&conf);
        let mut lines: Vec<&str> = text.lines().collect();
        let http = lines
            .iter()
            .position(|line| line.trim() == "http {")
            .unwrap_or_else(|| panic!("lab: no `http {{` line in {}", conf.display()));
        let indented = format!("    {directive}");
        lines.insert(http + 1, &indented);
        write_file(&conf, &(lines.join("\n") + "\n"));
        http + 2
    }

    /// `nginx -t` on the lab's config, inside the namespace.
    /// `nginx -t -c CONF` run plainly as root, the way the agent must not run it: the
    /// control that shows what it changes on a host.
    pub fn nginx_config_test_of(&self, conf: &Path) -> Captured {
        let conf = conf.display().to_string();
        let args = ["-t", "-c", conf.as_str()];
        run_capped(
            self.netns.command(&self.tools.nginx, &args),
            CONFIG_TEST_CAP,
        )
    }

    pub fn nginx_config_test(&self) -> Captured {
        let prefix = format!("{}/", self.root().display());
        let conf = self.nginx_conf_arg();
        let args = ["-t", "-p", prefix.as_str(), "-c", conf.as_str()];
        let out = run_capped(
            self.netns.command(&self.tools.nginx, &args),
            CONFIG_TEST_CAP,
        );
        assert!(
            !out.timed_out,
            "lab: nginx -t did not finish within {CONFIG_TEST_CAP:?}"
        );
        out
    }
}

/// The processes whose parent is `parent`, from /proc.
fn children_of(parent: i32) -> Vec<i32> {
    std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .ok()
                .and_then(|st| {
                    let rest = &st[st.rfind(')')? + 2..];
                    rest.split_whitespace().nth(1)?.parse::<i32>().ok()
                })
                == Some(parent)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_location_nginx_reports() {
        let stderr = "nginx: [emerg] unknown directive \"unknown_directive_xyz\" in /tmp/x/conf/nginx.conf:10\n\
                      nginx: configuration file /tmp/x/conf/nginx.conf test failed\n";
        assert_eq!(
            parse_nginx_error_location(stderr),
            Some((PathBuf::from("/tmp/x/conf/nginx.conf"), 10))
        );
    }

    #[test]
    fn template_uses_the_temp_dir_everywhere() {
        let conf = render_nginx_conf(Path::new("/tmp/lab"), "proxy_pass http://127.0.0.1:8000;");
        assert!(conf.contains("pid /tmp/lab/nginx.pid;"));
        assert!(conf.contains("error_log /tmp/lab/logs/error.log info;"));
        assert!(conf.contains("            proxy_pass http://127.0.0.1:8000;\n"));
        assert!(!conf.contains("/var/"));
    }
}

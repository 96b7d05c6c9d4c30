//! php-fpm: global config + the scenario's pools (`[www]` by default) and the lab's
//! `[bystander]` pool in one master, start-and-wait, graceful stop.

use std::path::{Path, PathBuf};

use super::history::{self, BYSTANDER_POOL};
use super::lab::{make_dir, write_file, Lab};
use super::process::{read_log, tail};

const PROCESS_LABEL: &str = "php-fpm";
/// php-fpm logs this (at the default `notice` level) after it has bound and
/// is listening — and after it applied listen.owner/group/mode, so waiting
/// for it avoids racing the chmod/chown of a fresh socket.
const READY_MARKER: &str = "ready to handle connections";

/// Where the pool listens.
#[derive(Clone, Debug)]
pub enum FpmListen {
    Unix(PathBuf),
    /// `127.0.0.1:9000`
    Tcp(String),
}

/// One pool, `[www]` unless renamed. Defaults follow a stock Debian pool: socket owned by
/// www-data:www-data, mode 0660, two static workers.
#[derive(Clone, Debug)]
pub struct PhpFpmPool {
    pub name: String,
    pub listen: FpmListen,
    pub listen_owner: String,
    pub listen_group: String,
    pub listen_mode: String,
    /// The process-manager lines (`pm = ...`, `pm.max_children = ...`).
    pub pm: Vec<String>,
    /// `php_admin_value[error_log]` (with `php_admin_flag[log_errors] = on`). The lab sets
    /// `logs/<pool>-php-errors.log` when a scenario does not, a file nothing writes while the
    /// stack is healthy.
    pub php_error_log: Option<PathBuf>,
    /// False: PHP's errors go where php-fpm puts them without an error_log (the FastCGI
    /// stderr nginx logs, and the worker's stderr), not to a default file.
    pub default_php_error_log: bool,
    /// Extra `key = value` lines appended to the pool.
    pub extra: Vec<String>,
}

impl PhpFpmPool {
    pub fn unix(socket: &Path) -> PhpFpmPool {
        Self::with_listen(FpmListen::Unix(socket.to_path_buf()))
    }

    pub fn tcp(addr: &str) -> PhpFpmPool {
        Self::with_listen(FpmListen::Tcp(addr.to_string()))
    }

    fn with_listen(listen: FpmListen) -> PhpFpmPool {
        PhpFpmPool {
            name: "www".into(),
            listen,
            listen_owner: "www-data".into(),
            listen_group: "www-data".into(),
            listen_mode: "0660".into(),
            pm: vec!["pm = static".into(), "pm.max_children = 2".into()],
            php_error_log: None,
            default_php_error_log: true,
            extra: Vec::new(),
        }
    }

    /// The pool's section name (`[name]`) instead of `www`.
    pub fn named(mut self, name: &str) -> PhpFpmPool {
        self.name = name.into();
        self
    }

    /// Overrides listen.owner / listen.group / listen.mode.
    pub fn socket_owner(mut self, owner: &str, group: &str, mode: &str) -> PhpFpmPool {
        self.listen_owner = owner.into();
        self.listen_group = group.into();
        self.listen_mode = mode.into();
        self
    }

    /// Replaces the stock `pm = static` / `pm.max_children = 2`.
    pub fn process_manager(mut self, lines: &[&str]) -> PhpFpmPool {
        self.pm = lines.iter().map(|line| line.to_string()).collect();
        self
    }

    /// Where PHP itself logs this pool's errors (`php_admin_value[error_log]`), e.g.
    /// `/dev/stderr` with `catch_workers_output = yes` to have them in the master's log.
    pub fn php_error_log(mut self, path: &Path) -> PhpFpmPool {
        self.php_error_log = Some(path.to_path_buf());
        self
    }

    /// No `php_admin_value[error_log]`: PHP reports errors to nginx (FastCGI stderr:
    /// "FastCGI sent in stderr") and to the worker's stderr, which `catch_workers_output`
    /// puts into the master's shared log ("child N said into stderr").
    pub fn php_errors_to_the_fpm_log(mut self) -> PhpFpmPool {
        self.php_error_log = None;
        self.default_php_error_log = false;
        self.extra("php_admin_flag[log_errors] = on")
            .extra("catch_workers_output = yes")
    }

    pub fn extra(mut self, line: &str) -> PhpFpmPool {
        self.extra.push(line.into());
        self
    }

    fn listen_value(&self) -> String {
        match &self.listen {
            FpmListen::Unix(path) => path.display().to_string(),
            FpmListen::Tcp(addr) => addr.clone(),
        }
    }

    fn render(&self) -> String {
        let pm: String = self.pm.iter().map(|line| format!("{line}\n")).collect();
        let php_errors = self
            .php_error_log
            .as_ref()
            .map(|log| {
                format!(
                    "php_admin_value[error_log] = {}\nphp_admin_flag[log_errors] = on\n",
                    log.display()
                )
            })
            .unwrap_or_default();
        let extra: String = self.extra.iter().map(|line| format!("{line}\n")).collect();
        format!(
            "[{name}]
user = www-data
group = www-data
listen = {listen}
listen.owner = {owner}
listen.group = {group}
listen.mode = {mode}
{pm}{php_errors}{extra}",
            name = self.name,
            listen = self.listen_value(),
            owner = self.listen_owner,
            group = self.listen_group,
            mode = self.listen_mode,
        )
    }
}

/// The pool every lab php-fpm master runs beside the scenario's (see `history.rs`): its own
/// socket, no nginx location, and a past in the shared log.
fn bystander_pool(root: &Path) -> PhpFpmPool {
    PhpFpmPool::unix(&root.join("run/php-fpm-bystander.sock"))
        .named(BYSTANDER_POOL)
        .process_manager(&[
            "pm = dynamic",
            "pm.max_children = 5",
            "pm.start_servers = 1",
            "pm.min_spare_servers = 1",
            "pm.max_spare_servers = 2",
        ])
        .extra("request_terminate_timeout = 30s")
        .extra("catch_workers_output = yes")
}

/// The global section (one `error_log` for every pool) and the pools.
pub fn render_php_fpm_conf(root: &Path, pools: &[PhpFpmPool]) -> String {
    let r = root.display();
    let mut text = format!(
        "[global]
pid = {r}/run/php-fpm.pid
error_log = {r}/logs/php-fpm.log
daemonize = no
"
    );
    for pool in pools {
        text.push('\n');
        text.push_str(&pool.render());
    }
    text
}

impl Lab {
    pub fn php_fpm_log_path(&self) -> PathBuf {
        self.path("logs/php-fpm.log")
    }

    /// What php-fpm itself wrote to its log (the seeded history left out).
    pub fn php_fpm_log_text(&self) -> String {
        self.text_after_history(&self.php_fpm_log_path())
    }

    /// Whether php-fpm logged a line about pool `pool` (`[pool NAME]`) containing `needle`.
    pub fn php_fpm_logged(&self, pool: &str, needle: &str) -> bool {
        let tag = format!("[pool {pool}]");
        self.php_fpm_log_text()
            .lines()
            .any(|line| line.contains(&tag) && line.contains(needle))
    }

    /// Replaces www/index.php, the script nginx hands every request to.
    pub fn write_php_script(&self, source: &str) {
        write_file(&self.path("www/index.php"), source);
    }

    /// Writes the php-fpm config, starts the master in the foreground (so the
    /// recorded pid is the master's) and waits until the pool listens.
    pub fn start_php_fpm(&mut self, pool: PhpFpmPool) {
        self.start_php_fpm_pools(vec![pool]);
    }

    /// One master running every pool of `pools` (all logging to the master's one
    /// `error_log`), plus the lab's `[bystander]` pool; waits until every pool listens.
    pub fn start_php_fpm_pools(&mut self, mut pools: Vec<PhpFpmPool>) {
        if history::enabled() {
            for pool in &mut pools {
                let sets_its_own = pool
                    .extra
                    .iter()
                    .any(|line| line.contains("php_admin_value[error_log]"));
                if pool.php_error_log.is_none() && pool.default_php_error_log && !sets_its_own {
                    pool.php_error_log =
                        Some(self.path(&format!("logs/{}-php-errors.log", pool.name)));
                }
            }
            pools.push(bystander_pool(self.root()));
            let log = self.php_fpm_log_path();
            self.seed_log(&log, &history::bystander_pool_lines());
        }
        for pool in &pools {
            if let FpmListen::Unix(socket) = &pool.listen {
                let parent = socket.parent().expect("socket path has a parent");
                if !parent.exists() {
                    make_dir(parent, 0o755);
                }
            }
        }
        let conf = self.path("conf/php-fpm.conf");
        write_file(&conf, &render_php_fpm_conf(self.root(), &pools));
        let prefix = format!("{}/", self.root().display());
        let args = vec![
            "-F".to_string(),
            "-y".to_string(),
            conf.display().to_string(),
            "-p".to_string(),
            prefix,
        ];
        let php_fpm = self.tools.php_fpm.clone();
        // SIGQUIT: graceful stop, which also removes the socket file.
        self.spawn(PROCESS_LABEL, &php_fpm, &args, libc::SIGQUIT);
        let listens: Vec<FpmListen> = pools.iter().map(|pool| pool.listen.clone()).collect();
        self.wait_for_php_fpm(&listens);
    }

    fn wait_for_php_fpm(&mut self, listens: &[FpmListen]) {
        let log = self.php_fpm_log_path();
        self.await_ready(
            PROCESS_LABEL,
            &format!("not ready on {listens:?}"),
            |lab| {
                let sockets_ok = listens.iter().all(|listen| match listen {
                    FpmListen::Unix(socket) => socket.exists(),
                    FpmListen::Tcp(_) => true,
                });
                sockets_ok && lab.php_fpm_log_text().contains(READY_MARKER)
            },
            |_| format!("php-fpm log:\n{}", tail(&read_log(&log), 4000)),
        );
    }

    /// Reload php-fpm as `systemctl reload` does (SIGUSR2: the master re-executes itself
    /// with the config on disk, same pid) and wait until it is ready again on `listens`.
    pub fn reload_php_fpm(&mut self, listens: &[FpmListen]) {
        let ready_before = self.php_fpm_log_text().matches(READY_MARKER).count();
        let pid = self
            .process_mut(PROCESS_LABEL)
            .map(|p| p.pid())
            .expect("php-fpm runs");
        // SAFETY: a plain signal to the master this lab started and has not reaped.
        unsafe { libc::kill(pid, libc::SIGUSR2) };
        let log = self.php_fpm_log_path();
        self.await_ready(
            PROCESS_LABEL,
            &format!("not ready again on {listens:?} after SIGUSR2"),
            |lab| {
                let sockets_ok = listens.iter().all(|listen| match listen {
                    FpmListen::Unix(socket) => socket.exists(),
                    FpmListen::Tcp(_) => true,
                });
                sockets_ok && lab.php_fpm_log_text().matches(READY_MARKER).count() > ready_before
            },
            |_| format!("php-fpm log:\n{}", tail(&read_log(&log), 4000)),
        );
    }

    /// Graceful stop (SIGQUIT) and wait for the master to exit; php-fpm
    /// removes its unix socket on the way out.
    pub fn stop_php_fpm(&mut self) {
        if let Err(problem) = self.stop_process(PROCESS_LABEL) {
            panic!(
                "lab {}: php-fpm did not stop gracefully: {problem}",
                self.scenario()
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pool_overrides_replace_the_defaults() {
        let pool = PhpFpmPool::unix(Path::new("/tmp/lab/run/php-fpm.sock"))
            .socket_owner("root", "root", "0600");
        let conf = render_php_fpm_conf(Path::new("/tmp/lab"), &[pool]);
        assert!(conf.contains("listen = /tmp/lab/run/php-fpm.sock\n"));
        assert!(conf.contains("listen.owner = root\nlisten.group = root\nlisten.mode = 0600\n"));
        assert_eq!(conf.matches("listen.mode").count(), 1);
        assert!(conf.contains("daemonize = no\n"));
        assert!(conf.contains("\n[www]\n"));
    }

    #[test]
    fn every_pool_gets_its_section_and_php_error_log() {
        let pools = [
            PhpFpmPool::unix(Path::new("/tmp/lab/run/a.sock"))
                .named("a")
                .php_error_log(Path::new("/tmp/lab/logs/a-php-errors.log")),
            bystander_pool(Path::new("/tmp/lab")),
        ];
        let conf = render_php_fpm_conf(Path::new("/tmp/lab"), &pools);
        assert_eq!(
            conf.matches("error_log = /tmp/lab/logs/php-fpm.log")
                .count(),
            1
        );
        assert!(conf.contains("[a]\n"));
        assert!(conf.contains("php_admin_value[error_log] = /tmp/lab/logs/a-php-errors.log\nphp_admin_flag[log_errors] = on\n"));
        assert!(conf.contains("[bystander]\n"));
        assert!(conf.contains("listen = /tmp/lab/run/php-fpm-bystander.sock\n"));
    }
}

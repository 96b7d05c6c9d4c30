//! php-fpm: global config + one `[www]` pool, start-and-wait, graceful stop.

use std::path::{Path, PathBuf};

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

/// The `[www]` pool. Defaults follow a stock Debian pool: socket owned by
/// www-data:www-data, mode 0660, two static workers.
#[derive(Clone, Debug)]
pub struct PhpFpmPool {
    pub listen: FpmListen,
    pub listen_owner: String,
    pub listen_group: String,
    pub listen_mode: String,
    /// The process-manager lines (`pm = ...`, `pm.max_children = ...`).
    pub pm: Vec<String>,
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
            listen,
            listen_owner: "www-data".into(),
            listen_group: "www-data".into(),
            listen_mode: "0660".into(),
            pm: vec!["pm = static".into(), "pm.max_children = 2".into()],
            extra: Vec::new(),
        }
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
}

pub fn render_php_fpm_conf(root: &Path, pool: &PhpFpmPool) -> String {
    let r = root.display();
    let pm: String = pool.pm.iter().map(|line| format!("{line}\n")).collect();
    let extra: String = pool.extra.iter().map(|line| format!("{line}\n")).collect();
    format!(
        "[global]
pid = {r}/run/php-fpm.pid
error_log = {r}/logs/php-fpm.log
daemonize = no

[www]
user = www-data
group = www-data
listen = {listen}
listen.owner = {owner}
listen.group = {group}
listen.mode = {mode}
{pm}{extra}",
        listen = pool.listen_value(),
        owner = pool.listen_owner,
        group = pool.listen_group,
        mode = pool.listen_mode,
    )
}

impl Lab {
    pub fn php_fpm_log_path(&self) -> PathBuf {
        self.path("logs/php-fpm.log")
    }

    pub fn php_fpm_log_text(&self) -> String {
        read_log(&self.php_fpm_log_path())
    }

    /// Replaces www/index.php, the script nginx hands every request to.
    pub fn write_php_script(&self, source: &str) {
        write_file(&self.path("www/index.php"), source);
    }

    /// Writes the php-fpm config, starts the master in the foreground (so the
    /// recorded pid is the master's) and waits until the pool listens.
    pub fn start_php_fpm(&mut self, pool: PhpFpmPool) {
        if let FpmListen::Unix(socket) = &pool.listen {
            let parent = socket.parent().expect("socket path has a parent");
            if !parent.exists() {
                make_dir(parent, 0o755);
            }
        }
        let conf = self.path("conf/php-fpm.conf");
        write_file(&conf, &render_php_fpm_conf(self.root(), &pool));
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
        self.wait_for_php_fpm(&pool.listen);
    }

    fn wait_for_php_fpm(&mut self, listen: &FpmListen) {
        let log = self.php_fpm_log_path();
        self.await_ready(
            PROCESS_LABEL,
            &format!("not ready on {listen:?}"),
            |_| {
                let socket_ok = match listen {
                    FpmListen::Unix(socket) => socket.exists(),
                    FpmListen::Tcp(_) => true,
                };
                socket_ok && read_log(&log).contains(READY_MARKER)
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
        let conf = render_php_fpm_conf(Path::new("/tmp/lab"), &pool);
        assert!(conf.contains("listen = /tmp/lab/run/php-fpm.sock\n"));
        assert!(conf.contains("listen.owner = root\nlisten.group = root\nlisten.mode = 0600\n"));
        assert_eq!(conf.matches("listen.mode").count(), 1);
        assert!(conf.contains("daemonize = no\n"));
    }
}

//! `nginx -t`: nginx's own verdict on its configuration, with its messages mapped to file:line.

use std::path::{Path, PathBuf};
use std::time::Duration;

use why502_host::ExecError;

/// One message nginx printed (`nginx: [emerg] unknown directive "x" in /etc/nginx/nginx.conf:5`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckMessage {
    pub level: String,
    pub text: String,
    pub file: Option<PathBuf>,
    pub line: Option<u32>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfigCheck {
    Passed {
        warnings: Vec<CheckMessage>,
    },
    Failed {
        messages: Vec<CheckMessage>,
    },
    /// nginx could not be run (absent, timed out); the reason says which.
    NotRun {
        reason: String,
    },
    /// nginx -t was not run because it could not be kept from changing the host (no
    /// CAP_SYS_ADMIN for the private mount namespace, a runtime path under `/`).
    NotIsolated {
        reason: String,
    },
}

/// Start `nginx -t -c CONF [-p PREFIX] [-g GLOBALS]` with explicit argv and a deadline; it
/// returns once nginx has started (or could not), so the caller can start it ahead of the
/// rest of its work and collect the verdict later (`PendingCheck::finish`).
///
/// `nginx -t` is not read-only: it binds every `listen` address (and creates the socket file
/// of a `listen unix:`), creates the pid file and every log the config names, and creates and
/// chowns the temp directories to the config's `user`. It always runs with `bind` refused
/// (EADDRINUSE, which test mode takes for "the running nginx holds it"), so it opens no port
/// even when nginx is down. With `isolate` (the directories `overlay_dirs` gives), it also
/// runs in a private mount namespace where those directories are overlaid by a throw-away
/// tmpfs, so none of its files reach the host.
pub async fn start_check(
    binary: &Path,
    conf: &Path,
    prefix: Option<&Path>,
    globals: Option<&str>,
    timeout: Duration,
    isolate: Option<Isolation<'_>>,
) -> PendingCheck {
    let bin = binary.to_string_lossy();
    let conf_s = conf.to_string_lossy();
    let mut argv: Vec<&str> = vec![&bin, "-t", "-c", &conf_s];
    let prefix_s = prefix.map(|p| p.to_string_lossy());
    if let Some(p) = &prefix_s {
        argv.extend(["-p", p]);
    }
    if let Some(g) = globals {
        argv.extend(["-g", g]);
    }
    let started = match isolate {
        Some(Isolation { spawner, overlays }) => {
            spawner.start_isolated(&argv, timeout, overlays).await
        }
        None => why502_host::start_without_binding(&argv, timeout).await,
    };
    PendingCheck {
        started: started.map_err(|e| verdict(Err(e))),
    }
}

/// How `start_check` isolates nginx -t: the directories to overlay (`overlay_dirs`), and the
/// thread to start it from, which may have been started ahead (see
/// `why502_host::IsolatedSpawner`).
pub struct Isolation<'a> {
    pub spawner: why502_host::IsolatedSpawner,
    pub overlays: &'a [PathBuf],
}

/// A started `nginx -t` (see `start_check`), or the verdict of one that could not start.
#[derive(Debug)]
pub struct PendingCheck {
    started: Result<why502_host::RunningCommand, ConfigCheck>,
}

impl PendingCheck {
    /// A check whose verdict is known without running nginx (not run, not isolated).
    pub fn ready(check: ConfigCheck) -> PendingCheck {
        PendingCheck {
            started: Err(check),
        }
    }

    /// nginx's verdict, once it exits (or the timeout it was started with passes).
    pub async fn finish(self) -> ConfigCheck {
        match self.started {
            Ok(running) => verdict(running.finish(256 * 1024).await),
            Err(check) => check,
        }
    }
}

fn verdict(ran: Result<why502_host::CommandOutput, ExecError>) -> ConfigCheck {
    match ran {
        Ok(out) => {
            let messages = parse_check_output(&out.stderr);
            if out.success() {
                ConfigCheck::Passed {
                    warnings: messages.into_iter().filter(|m| m.level == "warn").collect(),
                }
            } else {
                ConfigCheck::Failed { messages }
            }
        }
        Err(ExecError::NotIsolated { reason, .. }) => ConfigCheck::NotIsolated { reason },
        Err(
            e @ (ExecError::NotFound { .. } | ExecError::Spawn { .. } | ExecError::Timeout { .. }),
        ) => ConfigCheck::NotRun {
            reason: e.to_string(),
        },
    }
}

/// Directives whose first argument is a file nginx creates or writes at start.
const FILE_DIRECTIVES: &[&str] = &["pid", "lock_file", "error_log", "access_log"];
/// Directives whose first argument is a directory nginx creates and chowns at start.
const DIR_DIRECTIVES: &[&str] = &[
    "client_body_temp_path",
    "proxy_temp_path",
    "fastcgi_temp_path",
    "uwsgi_temp_path",
    "scgi_temp_path",
    "proxy_cache_path",
    "fastcgi_cache_path",
    "uwsgi_cache_path",
    "scgi_cache_path",
];

/// The files and directories the config tells nginx to create or write at start, as written
/// (relative ones are nginx's prefix's).
pub fn configured_runtime_paths(directives: &[crate::config::Directive]) -> Vec<PathBuf> {
    every_directive(directives)
        .filter(|d| {
            FILE_DIRECTIVES.contains(&d.name.as_str()) || DIR_DIRECTIVES.contains(&d.name.as_str())
        })
        .filter_map(|d| d.args.first())
        .filter(|first| {
            !(*first == "off" || *first == "stderr" || first.contains(':') || first.contains('$'))
        })
        .map(PathBuf::from)
        .collect()
}

/// Every directive of the tree, blocks' contents included, depth first.
fn every_directive(
    directives: &[crate::config::Directive],
) -> impl Iterator<Item = &crate::config::Directive> {
    let mut stack = vec![directives.iter()];
    std::iter::from_fn(move || loop {
        let level = stack.last_mut()?;
        match level.next() {
            Some(d) => {
                if let Some(block) = &d.block {
                    stack.push(block.iter());
                }
                return Some(d);
            }
            None => {
                stack.pop();
            }
        }
    })
}

/// Files besides the configuration that nginx reads when it loads it (and `nginx -t` reads
/// too): certificates, keys and their kin. Relative paths are nginx's: against the
/// configuration's directory. Values with variables are read per request and left out.
pub fn files_read_at_load(
    directives: &[crate::config::Directive],
    conf_dir: &Path,
) -> Vec<PathBuf> {
    const SUFFIXES: [&str; 9] = [
        "_certificate",
        "_certificate_key",
        "_trusted_certificate",
        "_client_certificate",
        "_crl",
        "_dhparam",
        "_password_file",
        "_stapling_file",
        "_session_ticket_key",
    ];
    let mut out: Vec<PathBuf> = every_directive(directives)
        .filter(|d| d.name.contains("ssl_") && SUFFIXES.iter().any(|s| d.name.ends_with(s)))
        .filter_map(|d| d.args.first())
        .filter(|f| !(f.contains('$') || f.starts_with("data:") || f.starts_with("engine:")))
        .map(|first| {
            let path = PathBuf::from(first);
            if path.is_absolute() {
                path
            } else {
                conf_dir.join(path)
            }
        })
        .collect();
    out.sort();
    out.dedup();
    out
}

/// The directories whose content `nginx -t` may create, write or chown: the parents of the
/// configured and compiled-in runtime paths (relative ones against nginx's prefix, as nginx
/// resolves them; a directory nginx creates is chowned too, so its parent is what counts).
pub fn runtime_dirs(configured: &[PathBuf], compiled: &[PathBuf], prefix: &Path) -> Vec<PathBuf> {
    // The prefix's logs/ holds nginx's defaults when nothing else is said.
    let defaults = [PathBuf::from("logs/error.log")];
    configured
        .iter()
        .chain(compiled)
        .chain(&defaults)
        .map(|p| {
            if p.is_absolute() {
                p.clone()
            } else {
                prefix.join(p)
            }
        })
        .filter_map(|p| p.parent().map(Path::to_path_buf))
        .collect()
}

/// The directories to overlay for `start_check`'s isolation: for each runtime directory the
/// nearest one that exists (nginx creates the missing ones below it), without those already
/// inside another. `Err` when one would be `/` itself, which cannot be overlaid.
pub fn overlay_dirs(runtime: &[PathBuf]) -> Result<Vec<PathBuf>, String> {
    let mut existing: Vec<PathBuf> = Vec::new();
    for dir in runtime {
        let mut d = dir.as_path();
        while !d.is_dir() {
            d = d.parent().unwrap_or(Path::new("/"));
        }
        if d == Path::new("/") {
            return Err(format!(
                "{} has no existing parent but /, which cannot be overlaid",
                dir.display()
            ));
        }
        existing.push(d.to_path_buf());
    }
    existing.sort();
    existing.dedup();
    let mut out: Vec<PathBuf> = Vec::new();
    for d in existing {
        if !out.iter().any(|a| d.starts_with(a)) {
            out.push(d);
        }
    }
    Ok(out)
}

/// Keep nginx's `[level]` lines; the "syntax is ok"/"test failed" summaries carry no new facts.
/// nginx prints them either as `nginx: [emerg] text` or, once its log is set up, in error-log
/// form: `2026/11/21 13:30:00 [emerg] 22498#22498: text`.
pub fn parse_check_output(stderr: &str) -> Vec<CheckMessage> {
    stderr
        .lines()
        .filter_map(|line| {
            let open = line
                .find(" [")
                .map(|i| i + 2)
                .or_else(|| line.starts_with('[').then_some(1))?;
            let (level, text) = line[open..].split_once("] ")?;
            if level.is_empty() || !level.bytes().all(|b| b.is_ascii_lowercase()) {
                return None;
            }
            let text = strip_pid_prefix(text);
            let (file, line_no) = file_line_suffix(text);
            Some(CheckMessage {
                level: level.to_string(),
                text: text.to_string(),
                file,
                line: line_no,
            })
        })
        .collect()
}

/// `22498#22498: text` → `text`.
fn strip_pid_prefix(text: &str) -> &str {
    match text.split_once(": ") {
        Some((pid, rest))
            if pid
                .split('#')
                .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit())) =>
        {
            rest
        }
        _ => text,
    }
}

/// nginx ends a config error with ` in /path/file.conf:LINE`.
fn file_line_suffix(text: &str) -> (Option<PathBuf>, Option<u32>) {
    let Some(idx) = text.rfind(" in ") else {
        return (None, None);
    };
    let tail = &text[idx + 4..];
    match tail.rsplit_once(':') {
        Some((file, line)) if file.starts_with('/') => match line.trim().parse() {
            Ok(n) => (Some(PathBuf::from(file)), Some(n)),
            Err(_) => (None, None),
        },
        _ => (None, None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_files_read_at_load_are_certificates_and_keys() {
        let text = "http {\n ssl_dhparam dh.pem;\n server {\n  ssl_certificate /etc/ssl/a.pem;\n  ssl_certificate_key /etc/ssl/a.key;\n  ssl_certificate $ssl_server_name.pem;\n  location / { proxy_ssl_trusted_certificate /etc/ssl/ca.pem; proxy_pass https://x; }\n  ssl_protocols TLSv1.3;\n  ssl_certificate data:abc;\n }\n}\n";
        let parsed = crate::config::parse_config_text(
            Path::new("/etc/nginx/nginx.conf"),
            text.as_bytes(),
            Path::new("/etc/nginx"),
            &crate::config::ParseLimits::default(),
        );
        let files = files_read_at_load(&parsed.directives, Path::new("/etc/nginx"));
        assert_eq!(
            files,
            [
                "/etc/nginx/dh.pem",
                "/etc/ssl/a.key",
                "/etc/ssl/a.pem",
                "/etc/ssl/ca.pem"
            ]
            .map(PathBuf::from)
        );
    }

    #[test]
    fn runtime_dirs_cover_pid_logs_and_temp_paths_and_overlays_are_minimal() {
        let text = "pid /run/nginx.pid;\nerror_log logs/error.log;\nhttp {\n access_log /var/log/nginx/a.log;\n access_log syslog:server=unix:/dev/log;\n proxy_temp_path /var/lib/nginx/proxy 1 2;\n server { access_log off; fastcgi_temp_path relative/fcgi; }\n}\n";
        let parsed = crate::config::parse_config_text(
            Path::new("/etc/nginx/nginx.conf"),
            text.as_bytes(),
            Path::new("/etc/nginx"),
            &crate::config::ParseLimits::default(),
        );
        let dirs = runtime_dirs(
            &configured_runtime_paths(&parsed.directives),
            &[PathBuf::from("/var/lib/nginx/body")],
            Path::new("/usr/share/nginx"),
        );
        for want in [
            "/run",
            "/usr/share/nginx/logs",
            "/var/log/nginx",
            "/var/lib/nginx",
            "/usr/share/nginx/relative",
        ] {
            assert!(
                dirs.contains(&PathBuf::from(want)),
                "{want} not in {dirs:?}"
            );
        }
        let tmp = tempfile::tempdir().expect("tmp");
        let a = tmp.path().join("a");
        std::fs::create_dir(&a).expect("mkdir");
        let overlays = overlay_dirs(&[a.join("missing/deeper"), a.clone(), tmp.path().join("a")])
            .expect("overlays");
        assert_eq!(overlays, [a]);
    }

    #[test]
    fn parses_emerg_with_file_line() {
        let stderr = "nginx: [emerg] unknown directive \"unknown_directive_xyz\" in /tmp/lab/conf/nginx.conf:5\nnginx: configuration file /tmp/lab/conf/nginx.conf test failed\n";
        let m = parse_check_output(stderr);
        assert_eq!(m.len(), 1);
        assert_eq!(m[0].level, "emerg");
        assert_eq!(
            m[0].file.as_deref(),
            Some(Path::new("/tmp/lab/conf/nginx.conf"))
        );
        assert_eq!(m[0].line, Some(5));
    }

    #[test]
    fn parses_error_log_form() {
        let stderr = "2026/11/21 13:30:00 [emerg] 22498#22498: unknown directive \"bogus_directive\" in /tmp/t1/n.conf:3\nnginx: configuration file /tmp/t1/n.conf test failed\n";
        let m = parse_check_output(stderr);
        assert_eq!(m.len(), 1);
        assert_eq!(
            m[0].text,
            "unknown directive \"bogus_directive\" in /tmp/t1/n.conf:3"
        );
        assert_eq!(m[0].line, Some(3));
        assert_eq!(m[0].file.as_deref(), Some(Path::new("/tmp/t1/n.conf")));
    }

    #[test]
    fn messages_without_location_keep_text() {
        let stderr = "nginx: [emerg] open() \"/etc/nginx/missing.conf\" failed (2: No such file or directory)\nnginx: [warn] the \"user\" directive makes sense only if the master process runs with super-user privileges, ignored in /etc/nginx/nginx.conf:1\n";
        let m = parse_check_output(stderr);
        assert_eq!(m.len(), 2);
        assert_eq!(m[0].file, None);
        assert!(m[0].text.contains("missing.conf"));
        assert_eq!(m[1].level, "warn");
        assert_eq!(m[1].line, Some(1));
    }
}

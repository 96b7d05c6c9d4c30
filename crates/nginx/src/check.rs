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
}

/// Run `nginx -t -q -c CONF [-p PREFIX] [-g GLOBALS]` with explicit argv and a deadline.
///
/// `nginx -t` opens the error logs the config names (creating missing ones), exactly as nginx
/// itself does on every start; it writes nothing else.
pub async fn check_config(
    binary: &Path,
    conf: &Path,
    prefix: Option<&Path>,
    globals: Option<&str>,
    timeout: Duration,
) -> ConfigCheck {
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
    match why502_host::run(&argv, timeout, 256 * 1024).await {
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
        Err(
            e @ (ExecError::NotFound { .. } | ExecError::Spawn { .. } | ExecError::Timeout { .. }),
        ) => ConfigCheck::NotRun {
            reason: e.to_string(),
        },
    }
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

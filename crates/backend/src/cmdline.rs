//! What a backend's command line (or systemd `ExecStart=`) says: which program it is, where it
//! listens and where it logs. gunicorn, uwsgi, uvicorn and the common `--host/--port` pattern.

use std::path::{Path, PathBuf};

use crate::address::BackendAddr;

/// gunicorn's port when `--bind` names only a host.
const GUNICORN_DEFAULT_PORT: u16 = 8000;

/// The program behind argv: the interpreter's script when argv[0] is an interpreter
/// (`python3 /usr/bin/gunicorn`, `python -m gunicorn`, `node server.js`).
pub fn program_names(args: &[String]) -> Vec<String> {
    let base = |s: &str| {
        Path::new(s)
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default()
    };
    let mut names = Vec::new();
    if let Some(first) = args.first() {
        names.push(base(first.split(' ').next().unwrap_or(first)));
    }
    let mut it = args.iter().skip(1);
    while let Some(a) = it.next() {
        if a == "-m" {
            if let Some(m) = it.next() {
                names.push(m.split('.').next().unwrap_or(m).to_string());
            }
            break;
        }
        if a.starts_with('-') {
            continue;
        }
        names.push(base(a));
        break;
    }
    names
}

/// Split a systemd `ExecStart=` value into argv: whitespace-separated, double or single quotes
/// group, the `-@:+!` prefixes dropped.
pub fn split_exec(value: &str) -> Vec<String> {
    let v = value.trim_start_matches(['-', '@', ':', '+', '!']);
    let mut args = Vec::new();
    let mut cur = String::new();
    let mut quote: Option<char> = None;
    let mut has = false;
    for c in v.chars() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), c) => cur.push(c),
            (None, '"' | '\'') => {
                quote = Some(c);
                has = true;
            }
            (None, c) if c.is_whitespace() => {
                if has || !cur.is_empty() {
                    args.push(std::mem::take(&mut cur));
                    has = false;
                }
            }
            (None, c) => cur.push(c),
        }
    }
    if has || !cur.is_empty() {
        args.push(cur);
    }
    args
}

/// A flag's values: `--bind X`, `--bind=X`, `-bX` for short flags.
fn flag_values<'a>(args: &'a [String], names: &[&str]) -> Vec<&'a str> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < args.len() {
        let a = args[i].as_str();
        for name in names {
            if a == *name {
                if let Some(v) = args.get(i + 1) {
                    out.push(v.as_str());
                }
            } else if let Some(v) = a.strip_prefix(name) {
                if let Some(v) = v.strip_prefix('=') {
                    out.push(v);
                } else if name.len() == 2 && !name.starts_with("--") && !v.is_empty() {
                    out.push(v);
                }
            }
        }
        i += 1;
    }
    out
}

/// Every address the command line says the program listens on.
pub fn listen_addresses(args: &[String]) -> Vec<BackendAddr> {
    let names = program_names(args);
    let is = |n: &str| names.iter().any(|x| x.starts_with(n));
    let mut out = Vec::new();
    if is("gunicorn") {
        for v in flag_values(args, &["--bind", "-b"]) {
            out.extend(BackendAddr::parse_bind(v, Some(GUNICORN_DEFAULT_PORT)));
        }
    }
    if is("uwsgi") {
        let flags = [
            "--socket",
            "-s",
            "--uwsgi-socket",
            "--http-socket",
            "--http",
            "--fastcgi-socket",
            "--https-socket",
            "--shared-socket",
        ];
        for v in flag_values(args, &flags) {
            // `--https-socket addr,cert,key`.
            out.extend(BackendAddr::parse_bind(
                v.split(',').next().unwrap_or(v),
                None,
            ));
        }
    }
    for v in flag_values(args, &["--uds", "--unix-socket", "--socket-path"]) {
        out.extend(BackendAddr::parse_bind(v, None));
    }
    for v in flag_values(args, &["--listen", "--address", "--addr"]) {
        out.extend(BackendAddr::parse_bind(v, None));
    }
    // `--host H --port P` (uvicorn, flask, many node and python servers), or `--port P` alone.
    let ports = flag_values(args, &["--port"]);
    let hosts = flag_values(args, &["--host", "-H"]);
    for p in ports {
        if let Ok(port) = p.parse::<u16>() {
            let host = hosts.first().and_then(|h| {
                match BackendAddr::parse_bind(&format!("{h}:{port}"), None) {
                    Some(BackendAddr::Tcp { host, .. }) => host,
                    _ => None,
                }
            });
            out.push(BackendAddr::Tcp { host, port });
        }
    }
    // `python3 -m http.server 8000 --bind 127.0.0.1`, `php -S 127.0.0.1:8000`.
    if names.iter().any(|n| n == "http") {
        if let Some(port) = args.iter().find_map(|a| a.parse::<u16>().ok()) {
            let host = flag_values(args, &["--bind", "-b"])
                .first()
                .map(|h| h.to_string());
            out.push(BackendAddr::Tcp {
                host: host.filter(|h| h != "0.0.0.0" && h != "::"),
                port,
            });
        }
    }
    for v in flag_values(args, &["-S"]) {
        out.extend(BackendAddr::parse_bind(v, None));
    }
    // `unix:/path` anywhere.
    for a in args {
        if let Some(p) = a.strip_prefix("unix:") {
            let addr = BackendAddr::Unix(PathBuf::from(p));
            if !out.contains(&addr) {
                out.push(addr);
            }
        }
    }
    out.dedup();
    out
}

/// Where a log file a command line names goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NamedLog {
    pub path: PathBuf,
    /// The flag or config key that named it.
    pub via: String,
}

/// Log files named on the command line: gunicorn `--error-logfile`/`--log-file`, uwsgi
/// `--logto`/`--logto2`/`--daemonize`/`--logger file:X`. `-` (stderr) is not a file.
/// Relative paths are relative to `cwd`.
pub fn log_files(args: &[String], cwd: Option<&Path>) -> Vec<NamedLog> {
    let mut out = Vec::new();
    let flags = [
        "--error-logfile",
        "--log-file",
        "--logto",
        "--logto2",
        "--daemonize",
        "--daemonize2",
        "--logger",
        "--req-logger",
    ];
    for flag in flags {
        for v in flag_values(args, &[flag]) {
            if let Some(path) = log_path(v, cwd) {
                out.push(NamedLog {
                    path,
                    via: flag.to_string(),
                });
            }
        }
    }
    out
}

/// A log value: a file path, or uwsgi's `file:PATH` logger; `-`, `syslog` and sockets are not
/// files.
pub fn log_path(v: &str, cwd: Option<&Path>) -> Option<PathBuf> {
    let v = v.trim().trim_matches(|c| c == '"' || c == '\'');
    let v = v.strip_prefix("file:").unwrap_or(v);
    if v.is_empty() || v == "-" || v.contains(':') || v.starts_with('@') {
        return None;
    }
    let p = Path::new(v);
    Some(match cwd {
        Some(c) if p.is_relative() => c.join(p),
        _ => p.to_path_buf(),
    })
}

/// The config file a command line names: gunicorn `-c`/`--config`, uwsgi `--ini` or a bare
/// `*.ini` argument.
pub fn config_file(args: &[String], cwd: Option<&Path>) -> Option<PathBuf> {
    let v = flag_values(args, &["--config", "-c", "--ini"])
        .into_iter()
        .next()
        .map(str::to_string)
        .or_else(|| {
            args.iter()
                .skip(1)
                .find(|a| a.ends_with(".ini") && !a.starts_with('-'))
                .cloned()
        })?;
    // gunicorn accepts `python:module` configs: nothing to read.
    if v.contains(':') {
        return None;
    }
    let p = PathBuf::from(v);
    Some(match cwd {
        Some(c) if p.is_relative() => c.join(p),
        _ => p,
    })
}

/// Log files in a simple config: gunicorn's Python (`errorlog = "/x.log"`) or uwsgi's ini
/// (`logto = /x.log`, `daemonize = ...`, `logger = file:...`). Values that are expressions
/// (`os.environ[...]`) are not evaluated.
pub fn config_log_files(text: &str, cwd: Option<&Path>) -> Vec<NamedLog> {
    let keys = [
        "errorlog",
        "logto",
        "logto2",
        "daemonize",
        "daemonize2",
        "logger",
    ];
    let mut out = Vec::new();
    for line in text.lines().take(10_000) {
        let Some((k, v)) = line.split_once(['=', ':']) else {
            continue;
        };
        let k = k.trim();
        if !keys.contains(&k) {
            continue;
        }
        let v = v.split(['#', ';']).next().unwrap_or("").trim();
        let quoted = v.starts_with('"') || v.starts_with('\'');
        // Python config: only literal strings; uwsgi ini: bare values.
        if k == "errorlog" && !quoted {
            continue;
        }
        if let Some(path) = log_path(v, cwd) {
            out.push(NamedLog {
                path,
                via: format!("{k} ="),
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn argv(s: &str) -> Vec<String> {
        s.split_whitespace().map(String::from).collect()
    }

    #[test]
    fn gunicorn_binds_and_logs() {
        let a = argv("/usr/bin/python3 /srv/venv/bin/gunicorn --workers 3 --bind unix:/run/app.sock -b 127.0.0.1 --error-logfile logs/err.log app:app");
        assert_eq!(
            listen_addresses(&a),
            vec![
                BackendAddr::Unix("/run/app.sock".into()),
                BackendAddr::Tcp {
                    host: Some("127.0.0.1".into()),
                    port: 8000
                }
            ]
        );
        let logs = log_files(&a, Some(Path::new("/srv/app")));
        assert_eq!(logs[0].path, PathBuf::from("/srv/app/logs/err.log"));
        assert_eq!(logs[0].via, "--error-logfile");
        let a = argv("gunicorn --log-file=- -c /etc/gunicorn.conf.py app:app");
        assert!(log_files(&a, None).is_empty());
        assert_eq!(config_file(&a, None), Some("/etc/gunicorn.conf.py".into()));
    }

    #[test]
    fn uwsgi_sockets_and_logs() {
        let a = argv("/usr/bin/uwsgi --master --socket :3031 --http-socket=127.0.0.1:8080 --logto /var/log/uwsgi/app.log --logger file:/var/log/u2.log");
        assert_eq!(
            listen_addresses(&a),
            vec![
                BackendAddr::Tcp {
                    host: None,
                    port: 3031
                },
                BackendAddr::Tcp {
                    host: Some("127.0.0.1".into()),
                    port: 8080
                }
            ]
        );
        let logs: Vec<_> = log_files(&a, None).into_iter().map(|l| l.path).collect();
        assert_eq!(
            logs,
            vec![
                PathBuf::from("/var/log/uwsgi/app.log"),
                PathBuf::from("/var/log/u2.log")
            ]
        );
        let a = argv("uwsgi /etc/uwsgi/apps-enabled/app.ini");
        assert_eq!(
            config_file(&a, None),
            Some("/etc/uwsgi/apps-enabled/app.ini".into())
        );
    }

    #[test]
    fn host_port_flags_and_http_server() {
        let a = argv("/usr/bin/python3 -m uvicorn main:app --host 127.0.0.1 --port 8001");
        assert_eq!(program_names(&a), vec!["python3", "uvicorn"]);
        assert_eq!(
            listen_addresses(&a),
            vec![BackendAddr::Tcp {
                host: Some("127.0.0.1".into()),
                port: 8001
            }]
        );
        let a = argv("python3 -m http.server 8123 --bind 127.0.0.1");
        assert_eq!(
            listen_addresses(&a),
            vec![BackendAddr::Tcp {
                host: Some("127.0.0.1".into()),
                port: 8123
            }]
        );
        let a = argv("node /srv/app/server.js --port 3000");
        assert_eq!(program_names(&a), vec!["node", "server.js"]);
        assert_eq!(
            listen_addresses(&a),
            vec![BackendAddr::Tcp {
                host: None,
                port: 3000
            }]
        );
    }

    #[test]
    fn exec_start_splitting() {
        assert_eq!(
            split_exec(r#"-/usr/bin/gunicorn --bind "unix:/run/my app.sock" app:app"#),
            vec![
                "/usr/bin/gunicorn",
                "--bind",
                "unix:/run/my app.sock",
                "app:app"
            ]
        );
    }

    #[test]
    fn simple_configs() {
        let py = "import os\nbind = 'unix:/run/g.sock'\nerrorlog = '/var/log/gunicorn/error.log'\naccesslog = '-'\n";
        let logs = config_log_files(py, None);
        assert_eq!(logs.len(), 1);
        assert_eq!(logs[0].path, PathBuf::from("/var/log/gunicorn/error.log"));
        let expr = "errorlog = os.environ['LOG']\n";
        assert!(config_log_files(expr, None).is_empty());
        let ini =
            "[uwsgi]\nsocket = /run/uwsgi/app.sock\nlogto = /var/log/uwsgi/app.log ; the log\n";
        assert_eq!(
            config_log_files(ini, None)[0].path,
            PathBuf::from("/var/log/uwsgi/app.log")
        );
    }
}

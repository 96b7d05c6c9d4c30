//! php-fpm's configuration: the `[global]` section and every pool, through `include` globs.
//!
//! Tolerant like php-fpm's own reader is not: a broken line or an unreadable include becomes a
//! `ConfigProblem` with file:line and the rest is still read; only an unreadable main file is
//! an `Err`. Includes are bounded in depth, count and file size.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Serialize;
use why502_host::{read_to_string_bounded, ReadError};

use super::ini::{parse_bool, parse_fpm_seconds, parse_line, IniLine};
use crate::address::BackendAddr;

const MAX_FILE: u64 = 1024 * 1024;
const MAX_FILES: usize = 256;
const MAX_DEPTH: usize = 8;

/// php-fpm's compiled-in prefix on Debian and most builds (`--prefix=/usr`): relative paths
/// resolve against it when the master was not started with `-p`.
pub const DEFAULT_PREFIX: &str = "/usr";
/// `error_log` when the config sets none: `$localstatedir/log/php-fpm.log` (Debian's package
/// config sets `/var/log/php8.2-fpm.log` explicitly).
pub const DEFAULT_ERROR_LOG: &str = "/var/log/php-fpm.log";

#[derive(Debug, thiserror::Error)]
pub enum ConfigLoadError {
    #[error("cannot read php-fpm config: {0}")]
    Read(#[from] ReadError),
}

/// A line php-fpm would reject, or an include that could not be read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ConfigProblem {
    pub file: PathBuf,
    pub line: usize,
    pub message: String,
}

/// One `key = value` as written (after `$pool` substitution), with where it was written.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Setting {
    pub key: String,
    pub value: String,
    pub file: PathBuf,
    pub line: usize,
}

/// Where php-fpm's own log goes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FpmLogTarget {
    File(PathBuf),
    /// `error_log = syslog`: the journal or syslog has it.
    Syslog,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FpmGlobal {
    pub error_log: FpmLogTarget,
    pub pid: Option<PathBuf>,
    pub log_level: Option<String>,
    /// Every global setting as written, known or not.
    pub settings: Vec<Setting>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FpmPool {
    pub name: String,
    /// Where the `[name]` header is.
    pub file: PathBuf,
    pub line: usize,
    pub listen: Option<BackendAddr>,
    pub listen_raw: Option<String>,
    pub listen_owner: Option<String>,
    pub listen_group: Option<String>,
    pub listen_mode: Option<String>,
    pub listen_backlog: Option<i64>,
    pub user: Option<String>,
    pub group: Option<String>,
    /// `static`, `dynamic` or `ondemand`.
    pub pm: Option<String>,
    pub max_children: Option<u32>,
    pub status_path: Option<String>,
    pub ping_path: Option<String>,
    pub ping_response: Option<String>,
    pub slowlog: Option<PathBuf>,
    pub request_slowlog_timeout: Option<u64>,
    /// Seconds; `Some(0)` is php-fpm's "off".
    pub request_terminate_timeout: Option<u64>,
    pub catch_workers_output: Option<bool>,
    pub chdir: Option<PathBuf>,
    /// The pool's own `prefix`, for its relative paths.
    pub prefix: Option<PathBuf>,
    /// `php_value[name]` and `php_flag[name]`.
    pub php_values: BTreeMap<String, String>,
    /// `php_admin_value[name]` and `php_admin_flag[name]`: scripts cannot override these.
    pub php_admin_values: BTreeMap<String, String>,
    /// Every pool setting as written, known or not.
    pub settings: Vec<Setting>,
}

impl FpmPool {
    fn new(name: &str, file: &Path, line: usize) -> FpmPool {
        FpmPool {
            name: name.to_string(),
            file: file.to_path_buf(),
            line,
            listen: None,
            listen_raw: None,
            listen_owner: None,
            listen_group: None,
            listen_mode: None,
            listen_backlog: None,
            user: None,
            group: None,
            pm: None,
            max_children: None,
            status_path: None,
            ping_path: None,
            ping_response: None,
            slowlog: None,
            request_slowlog_timeout: None,
            request_terminate_timeout: None,
            catch_workers_output: None,
            chdir: None,
            prefix: None,
            php_values: BTreeMap::new(),
            php_admin_values: BTreeMap::new(),
            settings: Vec::new(),
        }
    }

    /// A php.ini setting as the pool forces it: the admin value wins.
    pub fn php_ini(&self, name: &str) -> Option<&str> {
        self.php_admin_values
            .get(name)
            .or_else(|| self.php_values.get(name))
            .map(String::as_str)
    }

    /// The PHP error log of the pool's scripts (`php_admin_value[error_log]`), when the pool
    /// sets one; otherwise PHP errors go to php.ini's `error_log` or, with
    /// `catch_workers_output`, into php-fpm's own log.
    pub fn php_error_log(&self) -> Option<PathBuf> {
        self.php_ini("error_log")
            .filter(|v| !v.is_empty() && *v != "syslog")
            .map(PathBuf::from)
    }

    pub fn session_save_path(&self) -> Option<&str> {
        self.php_ini("session.save_path")
    }

    pub fn upload_tmp_dir(&self) -> Option<&str> {
        self.php_ini("upload_tmp_dir")
    }

    pub fn memory_limit(&self) -> Option<&str> {
        self.php_ini("memory_limit")
    }

    /// The value of any setting, as last written.
    pub fn setting(&self, key: &str) -> Option<&str> {
        self.settings
            .iter()
            .rev()
            .find(|s| s.key == key)
            .map(|s| s.value.as_str())
    }

    /// Resolve the pool's listen address and paths once every setting is known: `$pool` is
    /// already substituted; relative paths are relative to the pool's prefix, else the global.
    fn finish(&mut self, global_prefix: &Path) {
        let prefix = self
            .prefix
            .clone()
            .unwrap_or_else(|| global_prefix.to_path_buf());
        self.listen = self
            .listen_raw
            .as_deref()
            .and_then(|raw| BackendAddr::parse_php_listen(raw, &prefix));
        if let Some(s) = self.slowlog.take() {
            self.slowlog = Some(resolve(&prefix, &s));
        }
    }
}

/// The whole configuration of one php-fpm master.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PhpFpmConfig {
    pub main_file: PathBuf,
    /// The prefix relative paths resolve against.
    pub prefix: PathBuf,
    pub global: FpmGlobal,
    pub pools: Vec<FpmPool>,
    /// Every file read, the main file first.
    pub files: Vec<PathBuf>,
    pub problems: Vec<ConfigProblem>,
    /// Pool indexes by listen key, built on first lookup: a master of 500 pools answers
    /// "who serves this upstream" without comparing 500 addresses per upstream.
    #[serde(skip)]
    listen_index: std::sync::OnceLock<std::collections::HashMap<ListenKey, Vec<usize>>>,
}

/// What `pools_serving` looks a pool up by: a unix path as `BackendAddr::serves` compares it,
/// or a TCP port (the host is then checked by `serves`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum ListenKey {
    Unix(PathBuf),
    Port(u16),
}

fn listen_key(addr: &BackendAddr) -> ListenKey {
    match addr {
        BackendAddr::Unix(p) => ListenKey::Unix(crate::address::normalized_socket_path(p)),
        BackendAddr::Tcp { port, .. } => ListenKey::Port(*port),
    }
}

impl PhpFpmConfig {
    /// Read `main_conf` and its includes with php-fpm's default prefix.
    pub fn load(main_conf: &Path) -> Result<PhpFpmConfig, ConfigLoadError> {
        PhpFpmConfig::load_with_prefix(main_conf, Path::new(DEFAULT_PREFIX))
    }

    /// As `load`, for a master started with `-p PREFIX`.
    pub fn load_with_prefix(
        main_conf: &Path,
        prefix: &Path,
    ) -> Result<PhpFpmConfig, ConfigLoadError> {
        let text = read_to_string_bounded(main_conf, MAX_FILE)?;
        let mut loader = Loader {
            prefix: prefix.to_path_buf(),
            section: Section::None,
            global: Vec::new(),
            pools: Vec::new(),
            files: vec![main_conf.to_path_buf()],
            problems: Vec::new(),
        };
        loader.parse_text(main_conf, &text, 0);
        Ok(loader.finish(main_conf))
    }

    pub fn pool(&self, name: &str) -> Option<&FpmPool> {
        self.pools.iter().find(|p| p.name == name)
    }

    /// Pools whose `listen` serves the upstream.
    pub fn pools_serving<'a>(
        &'a self,
        upstream: &'a BackendAddr,
    ) -> impl Iterator<Item = &'a FpmPool> + 'a {
        let index = self.listen_index.get_or_init(|| {
            let mut map: std::collections::HashMap<ListenKey, Vec<usize>> = Default::default();
            for (i, pool) in self.pools.iter().enumerate() {
                if let Some(l) = &pool.listen {
                    map.entry(listen_key(l)).or_default().push(i);
                }
            }
            map
        });
        index
            .get(&listen_key(upstream))
            .into_iter()
            .flatten()
            .filter_map(|i| self.pools.get(*i))
            .filter(move |p| p.listen.as_ref().is_some_and(|l| l.serves(upstream)))
    }
}

enum Section {
    None,
    Global,
    Pool(usize),
}

struct Loader {
    prefix: PathBuf,
    section: Section,
    global: Vec<Setting>,
    pools: Vec<FpmPool>,
    files: Vec<PathBuf>,
    problems: Vec<ConfigProblem>,
}

impl Loader {
    fn problem(&mut self, file: &Path, line: usize, message: String) {
        self.problems.push(ConfigProblem {
            file: file.to_path_buf(),
            line,
            message,
        });
    }

    fn parse_text(&mut self, file: &Path, text: &str, depth: usize) {
        for (i, raw) in text.lines().enumerate() {
            let line = i + 1;
            match parse_line(raw) {
                None => {}
                Some(IniLine::Invalid(msg)) => self.problem(file, line, msg),
                Some(IniLine::Section(name)) => self.enter(&name, file, line),
                Some(IniLine::Include(pattern)) => self.include(file, line, &pattern, depth),
                Some(IniLine::Pair { key, value }) => self.pair(key, value, file, line),
            }
        }
    }

    fn enter(&mut self, name: &str, file: &Path, line: usize) {
        self.section = if name == "global" {
            Section::Global
        } else {
            // A pool section may be reopened (a later file adding settings to it).
            match self.pools.iter().position(|p| p.name == name) {
                Some(i) => Section::Pool(i),
                None => {
                    self.pools.push(FpmPool::new(name, file, line));
                    Section::Pool(self.pools.len() - 1)
                }
            }
        }
    }

    fn pair(&mut self, key: String, value: String, file: &Path, line: usize) {
        match self.section {
            // php-fpm puts settings before any section into [global].
            Section::None | Section::Global => self.global.push(Setting {
                key,
                value,
                file: file.to_path_buf(),
                line,
            }),
            Section::Pool(i) => {
                let pool = &mut self.pools[i];
                let value = value.replace("$pool", &pool.name);
                if let Some(msg) = apply_pool_setting(pool, &key, &value) {
                    self.problems.push(ConfigProblem {
                        file: file.to_path_buf(),
                        line,
                        message: msg,
                    });
                }
                self.pools[i].settings.push(Setting {
                    key,
                    value,
                    file: file.to_path_buf(),
                    line,
                });
            }
        }
    }

    fn include(&mut self, file: &Path, line: usize, pattern: &str, depth: usize) {
        if depth >= MAX_DEPTH {
            self.problem(
                file,
                line,
                format!("include `{pattern}` nested deeper than {MAX_DEPTH} levels: not followed"),
            );
            return;
        }
        let pattern = resolve(&self.prefix, Path::new(pattern));
        let entries = match glob::glob(&pattern.to_string_lossy()) {
            Ok(paths) => paths,
            Err(e) => {
                self.problem(
                    file,
                    line,
                    format!("bad include pattern `{}`: {e}", pattern.display()),
                );
                return;
            }
        };
        let mut paths: Vec<PathBuf> = Vec::new();
        for entry in entries {
            match entry {
                Ok(p) => paths.push(p),
                Err(e) => self.problem(file, line, format!("include `{}`: {e}", pattern.display())),
            }
            if paths.len() > MAX_FILES {
                break;
            }
        }
        paths.sort();
        for path in paths {
            if self.files.len() >= MAX_FILES {
                self.problem(
                    file,
                    line,
                    format!(
                        "more than {MAX_FILES} config files: the rest of `{}` not read",
                        pattern.display()
                    ),
                );
                return;
            }
            if self.files.contains(&path) {
                self.problem(
                    file,
                    line,
                    format!(
                        "{} included twice: include cycle not followed",
                        path.display()
                    ),
                );
                continue;
            }
            self.files.push(path.clone());
            match read_to_string_bounded(&path, MAX_FILE) {
                Ok(text) => self.parse_text(&path, &text, depth + 1),
                Err(e) => self.problem(file, line, e.to_string()),
            }
        }
    }

    fn finish(mut self, main: &Path) -> PhpFpmConfig {
        let last = |key: &str| {
            self.global
                .iter()
                .rev()
                .find(|s| s.key == key)
                .map(|s| s.value.clone())
        };
        let error_log = match last("error_log").as_deref() {
            Some("syslog") => FpmLogTarget::Syslog,
            Some(v) if !v.is_empty() => FpmLogTarget::File(resolve(&self.prefix, Path::new(v))),
            _ => FpmLogTarget::File(PathBuf::from(DEFAULT_ERROR_LOG)),
        };
        let global = FpmGlobal {
            error_log,
            pid: last("pid").map(|p| resolve(&self.prefix, Path::new(&p))),
            log_level: last("log_level"),
            settings: std::mem::take(&mut self.global),
        };
        for pool in &mut self.pools {
            pool.finish(&self.prefix);
            if pool.listen_raw.is_none() {
                self.problems.push(ConfigProblem {
                    file: pool.file.clone(),
                    line: pool.line,
                    message: format!("pool [{}] has no listen address", pool.name),
                });
            }
        }
        PhpFpmConfig {
            main_file: main.to_path_buf(),
            prefix: self.prefix,
            global,
            pools: self.pools,
            files: self.files,
            problems: self.problems,
            listen_index: std::sync::OnceLock::new(),
        }
    }
}

/// Apply a known pool setting; unknown keys are only kept in `settings`. Returns a problem
/// message for a value php-fpm would refuse.
fn apply_pool_setting(pool: &mut FpmPool, key: &str, value: &str) -> Option<String> {
    let some = |v: &str| Some(v.to_string());
    let bad = |what: &str| Some(format!("`{key} = {value}`: not {what}"));
    match key {
        "listen" => pool.listen_raw = some(value),
        "listen.owner" => pool.listen_owner = some(value),
        "listen.group" => pool.listen_group = some(value),
        "listen.mode" => pool.listen_mode = some(value),
        "listen.backlog" => match value.trim().parse() {
            Ok(n) => pool.listen_backlog = Some(n),
            Err(_) => return bad("a number"),
        },
        "user" => pool.user = some(value),
        "group" => pool.group = some(value),
        "pm" => pool.pm = some(value),
        "pm.max_children" => match value.trim().parse() {
            Ok(n) => pool.max_children = Some(n),
            Err(_) => return bad("a number"),
        },
        "pm.status_path" => pool.status_path = some(value),
        "ping.path" => pool.ping_path = some(value),
        "ping.response" => pool.ping_response = some(value),
        "slowlog" => pool.slowlog = Some(PathBuf::from(value)),
        "request_slowlog_timeout" => match parse_fpm_seconds(value) {
            Some(s) => pool.request_slowlog_timeout = Some(s),
            None => return bad("a time (30, 30s, 1m)"),
        },
        "request_terminate_timeout" => match parse_fpm_seconds(value) {
            Some(s) => pool.request_terminate_timeout = Some(s),
            None => return bad("a time (30, 30s, 1m)"),
        },
        "catch_workers_output" => match parse_bool(value) {
            Some(b) => pool.catch_workers_output = Some(b),
            None => return bad("a boolean"),
        },
        "chdir" => pool.chdir = Some(PathBuf::from(value)),
        "prefix" => pool.prefix = Some(PathBuf::from(value)),
        _ => {
            if let Some((kind, name)) = php_ini_key(key) {
                let map = if kind.starts_with("php_admin_") {
                    &mut pool.php_admin_values
                } else {
                    &mut pool.php_values
                };
                map.insert(name.to_string(), value.to_string());
            }
        }
    }
    None
}

/// `php_admin_value[error_log]` → (`php_admin_value`, `error_log`).
fn php_ini_key(key: &str) -> Option<(&str, &str)> {
    let (kind, rest) = key.split_once('[')?;
    let name = rest.strip_suffix(']')?;
    matches!(
        kind,
        "php_value" | "php_flag" | "php_admin_value" | "php_admin_flag"
    )
    .then_some((kind, name))
}

fn resolve(prefix: &Path, p: &Path) -> PathBuf {
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        prefix.join(p)
    }
}

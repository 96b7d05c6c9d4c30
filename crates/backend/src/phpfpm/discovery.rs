//! Which php-fpm configs exist: those of running masters (from their process title or argv),
//! then the installed ones (`/etc/php/*/fpm/php-fpm.conf`, `/etc/php-fpm.conf`).

use std::path::{Path, PathBuf};

use serde::Serialize;
use why502_host::{ProcessInfo, ProcessTable};

/// At most this many installed configs: one per PHP version.
const MAX_INSTALLED: usize = 32;

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum ConfigOrigin {
    /// The config of a running master.
    Running { pid: u32 },
    /// Installed, no master runs with it.
    Installed,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FoundFpmConfig {
    pub path: PathBuf,
    /// `-p PREFIX` of the running master, when its argv shows one.
    pub prefix: Option<PathBuf>,
    pub origin: ConfigOrigin,
}

/// Running masters' configs first, then installed ones under `etc_root` (normally `/etc`),
/// each path once.
pub fn find_php_fpm_configs(procs: &ProcessTable, etc_root: &Path) -> Vec<FoundFpmConfig> {
    let mut found: Vec<FoundFpmConfig> = Vec::new();
    for p in procs.iter() {
        if let Some((path, prefix)) = master_config(p) {
            if !found.iter().any(|f| f.path == path) {
                found.push(FoundFpmConfig {
                    path,
                    prefix,
                    origin: ConfigOrigin::Running { pid: p.pid },
                });
            }
        }
    }
    let patterns = [
        etc_root.join("php/*/fpm/php-fpm.conf"),
        etc_root.join("php-fpm.conf"),
        etc_root.join("opt/remi/php*/php-fpm.conf"),
    ];
    let mut installed = Vec::new();
    for pattern in patterns {
        if let Ok(paths) = glob::glob(&pattern.to_string_lossy()) {
            installed.extend(paths.flatten().take(MAX_INSTALLED));
        }
    }
    installed.sort();
    for path in installed.into_iter().take(MAX_INSTALLED) {
        if !found.iter().any(|f| f.path == path) {
            found.push(FoundFpmConfig {
                path,
                prefix: None,
                origin: ConfigOrigin::Installed,
            });
        }
    }
    found
}

/// A php-fpm master's config path and prefix: from its title
/// `php-fpm: master process (/etc/php/8.2/fpm/php-fpm.conf)`, or from argv
/// (`--fpm-config X` / `-y X`, `--prefix X` / `-p X`) when the title was not rewritten.
pub fn master_config(p: &ProcessInfo) -> Option<(PathBuf, Option<PathBuf>)> {
    let first = p.cmdline.first()?;
    if let Some(rest) = first.strip_prefix("php-fpm: master process (") {
        let path = rest.trim_end().strip_suffix(')')?;
        return Some((PathBuf::from(path), None));
    }
    let prog = Path::new(first).file_name()?.to_string_lossy();
    if !prog.starts_with("php-fpm") {
        return None;
    }
    let mut conf = None;
    let mut prefix = None;
    let mut args = p.cmdline.iter().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "-y" | "--fpm-config" => conf = args.next().map(PathBuf::from),
            "-p" | "--prefix" => prefix = args.next().map(PathBuf::from),
            _ => {
                if let Some(v) = a.strip_prefix("--fpm-config=") {
                    conf = Some(PathBuf::from(v));
                } else if let Some(v) = a.strip_prefix("--prefix=") {
                    prefix = Some(PathBuf::from(v));
                }
            }
        }
    }
    conf.map(|c| (c, prefix))
}

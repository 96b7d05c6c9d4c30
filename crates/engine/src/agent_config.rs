//! The agent's own configuration (`--config`, default /etc/why502/why502.toml when present):
//! per-upstream overrides for the direct request, resource thresholds, and where the host keeps
//! the sources the probes read. Every field is optional; an unknown key is an error, so a typo
//! never silently does nothing.

use std::path::{Path, PathBuf};

use serde::Deserialize;

/// Where a config that is not named on the command line is looked for.
pub const DEFAULT_PATH: &str = "/etc/why502/why502.toml";

/// Agent configs are a few lines; anything bigger is not one.
const MAX_BYTES: u64 = 1024 * 1024;

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentConfig {
    /// `[[upstream]]` tables, matched in order; the first that matches wins.
    #[serde(default, rename = "upstream")]
    pub upstreams: Vec<UpstreamOverride>,
    #[serde(default)]
    pub resources: ResourceThresholds,
    #[serde(default)]
    pub paths: HostPaths,
}

/// How to ask one upstream directly, when the location's own prefix is not a good question
/// (a prefix that needs a login, a site that answers only its real Host).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpstreamOverride {
    /// `unix:/run/x.sock`, `127.0.0.1:8080`, or the name of an `upstream` block.
    #[serde(rename = "match")]
    pub matches: String,
    /// Path of the direct request (FastCGI: the document URI), e.g. `/healthz`.
    pub path: Option<String>,
    /// Host header of the direct request.
    pub host: Option<String>,
    /// Do not send a direct request to this upstream at all.
    #[serde(default)]
    pub skip_direct_request: bool,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ResourceThresholds {
    /// A filesystem the chain needs this full (df's Use%) is a warning.
    pub disk_warn_percent: u8,
    /// ... and this share of its inodes used (df -i's IUse%).
    pub inode_warn_percent: u8,
    /// Less available memory than this (percent of MemTotal) is a warning.
    pub memory_available_warn_percent: f64,
    /// PSI `full avg60` for memory above this is a warning.
    pub memory_psi_full_avg60_warn: f64,
}

impl Default for ResourceThresholds {
    fn default() -> Self {
        ResourceThresholds {
            disk_warn_percent: 90,
            inode_warn_percent: 90,
            memory_available_warn_percent: 5.0,
            memory_psi_full_avg60_warn: 10.0,
        }
    }
}

/// Where the host keeps what the probes read. The defaults are the standard places; tests and
/// unusual hosts (a chroot, a container with the host's /sys mounted elsewhere) point them away.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HostPaths {
    pub selinuxfs: PathBuf,
    pub securityfs: PathBuf,
    pub audit_log: PathBuf,
    pub kern_log: PathBuf,
    pub syslog: PathBuf,
    /// Where php-fpm's configs are looked for when no php-fpm runs (`/etc` → /etc/php/*/fpm).
    pub etc: PathBuf,
    /// Directories of systemd unit files: what is configured to serve a dead address, and the
    /// unit whose cgroup ties a kill to it.
    pub units: Vec<PathBuf>,
    /// dpkg's log: packages installed, upgraded or removed, for timelines.
    pub dpkg_log: PathBuf,
}

impl Default for HostPaths {
    fn default() -> Self {
        HostPaths {
            selinuxfs: "/sys/fs/selinux".into(),
            securityfs: "/sys/kernel/security".into(),
            audit_log: "/var/log/audit/audit.log".into(),
            kern_log: "/var/log/kern.log".into(),
            syslog: "/var/log/syslog".into(),
            etc: "/etc".into(),
            dpkg_log: "/var/log/dpkg.log".into(),
            units: why502_backend::DEFAULT_UNIT_DIRS
                .iter()
                .map(PathBuf::from)
                .collect(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum AgentConfigError {
    #[error("cannot read the agent config {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: why502_host::ReadError,
    },
    #[error("the agent config {path} is not valid: {message}")]
    Invalid { path: PathBuf, message: String },
}

impl AgentConfig {
    /// The config a run uses: the named file (which must exist), else the default path when
    /// present, else built-in defaults. Returns the path that was read, if any.
    pub fn load(named: Option<&Path>) -> Result<(AgentConfig, Option<PathBuf>), AgentConfigError> {
        let path = match named {
            Some(p) => p.to_path_buf(),
            None if Path::new(DEFAULT_PATH).exists() => PathBuf::from(DEFAULT_PATH),
            None => return Ok((AgentConfig::default(), None)),
        };
        let text = why502_host::read_to_string_bounded(&path, MAX_BYTES).map_err(|source| {
            AgentConfigError::Read {
                path: path.clone(),
                source,
            }
        })?;
        let config = AgentConfig::parse(&text).map_err(|message| AgentConfigError::Invalid {
            path: path.clone(),
            message,
        })?;
        Ok((config, Some(path)))
    }

    pub fn parse(text: &str) -> Result<AgentConfig, String> {
        let config: AgentConfig = toml::from_str(text).map_err(|e| e.to_string())?;
        for (i, u) in config.upstreams.iter().enumerate() {
            if u.matches.trim().is_empty() {
                return Err(format!("[[upstream]] #{}: `match` is empty", i + 1));
            }
            if let Some(p) = &u.path {
                if !p.starts_with('/') {
                    return Err(format!(
                        "[[upstream]] match = {:?}: path {p:?} must start with /",
                        u.matches
                    ));
                }
            }
            if let Some(h) = &u.host {
                // The Host header is sent as written: no spaces or line breaks may sneak in.
                if h.is_empty() || h.chars().any(|c| c.is_whitespace() || c.is_control()) {
                    return Err(format!(
                        "[[upstream]] match = {:?}: host {h:?} is not a host name",
                        u.matches
                    ));
                }
            }
        }
        let r = &config.resources;
        for (key, pct) in [
            ("disk_warn_percent", r.disk_warn_percent),
            ("inode_warn_percent", r.inode_warn_percent),
        ] {
            if pct > 100 {
                return Err(format!("[resources] {key} = {pct} is not a percentage"));
            }
        }
        Ok(config)
    }

    /// The override for an upstream, by its address or its `upstream` block's name.
    pub fn override_for(&self, address: &str, name: Option<&str>) -> Option<&UpstreamOverride> {
        self.upstreams
            .iter()
            .find(|u| u.matches == address || Some(u.matches.as_str()) == name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_is_the_defaults() {
        assert_eq!(AgentConfig::parse("").unwrap(), AgentConfig::default());
    }

    #[test]
    fn full_example() {
        let c = AgentConfig::parse(
            r#"
            [[upstream]]
            match = "127.0.0.1:8080"
            path = "/healthz"
            host = "app.internal"

            [[upstream]]
            match = "legacy"
            skip_direct_request = true

            [resources]
            disk_warn_percent = 80

            [paths]
            audit_log = "/srv/audit.log"
            "#,
        )
        .unwrap();
        let u = c.override_for("127.0.0.1:8080", None).unwrap();
        assert_eq!(u.path.as_deref(), Some("/healthz"));
        assert_eq!(u.host.as_deref(), Some("app.internal"));
        assert!(!u.skip_direct_request);
        // Matched by the upstream block's name too.
        assert!(
            c.override_for("10.0.0.9:80", Some("legacy"))
                .unwrap()
                .skip_direct_request
        );
        assert!(c.override_for("10.0.0.9:80", None).is_none());
        assert_eq!(c.resources.disk_warn_percent, 80);
        assert_eq!(c.resources.memory_available_warn_percent, 5.0);
        assert_eq!(c.paths.audit_log, PathBuf::from("/srv/audit.log"));
        assert_eq!(c.paths.kern_log, PathBuf::from("/var/log/kern.log"));
    }

    #[test]
    fn typos_and_bad_values_are_errors() {
        for (text, says) in [
            ("[[upstream]]\nmatch = \"x\"\npaht = \"/\"", "paht"),
            ("[resource]\ndisk_warn_percent = 1", "resource"),
            (
                "[[upstream]]\nmatch = \"x\"\npath = \"healthz\"",
                "must start with /",
            ),
            (
                "[[upstream]]\nmatch = \"x\"\nhost = \"a\\r\\nX-Evil: 1\"",
                "not a host name",
            ),
            ("[[upstream]]\nmatch = \"\"", "empty"),
            ("[resources]\ndisk_warn_percent = 190", "not a percentage"),
            ("not toml at all [", ""),
        ] {
            let err = AgentConfig::parse(text).unwrap_err();
            assert!(err.contains(says), "{text:?}: {err}");
        }
    }

    #[test]
    fn the_shipped_example_parses_to_the_defaults() {
        let text = include_str!("../../../config/why502.toml");
        assert_eq!(AgentConfig::parse(text).unwrap(), AgentConfig::default());
    }

    #[test]
    fn load_named_missing_is_an_error_and_named_file_is_read() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("nope.toml");
        assert!(AgentConfig::load(Some(&missing)).is_err());
        let p = dir.path().join("why502.toml");
        std::fs::write(&p, "[resources]\ndisk_warn_percent = 75\n").unwrap();
        let (c, used) = AgentConfig::load(Some(&p)).unwrap();
        assert_eq!(c.resources.disk_warn_percent, 75);
        assert_eq!(used.as_deref(), Some(p.as_path()));
    }
}

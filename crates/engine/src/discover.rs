//! Step zero: which nginx, which config, which worker identity.

use std::path::{Path, PathBuf};
use std::time::Duration;

use why502_host::{identity_for, user_name, Identity, ProcessTable};
use why502_nginx::config::{parse_config, NginxConfig, ParseLimits, ParsedConfig};
use why502_nginx::discovery::{self, Master, DEFAULT_CONF};

use crate::{DiagnoseError, Options};

/// How the worker identity was found, for the report.
#[derive(Debug, Clone)]
pub struct WorkerIdentity {
    pub identity: Option<Identity>,
    /// `running worker 1234`, `user directive at nginx.conf:1`, ...
    pub source: String,
}

/// Everything known about the nginx being diagnosed.
#[derive(Debug)]
pub struct NginxSetup {
    pub binary: Option<PathBuf>,
    pub conf: PathBuf,
    pub conf_source: &'static str,
    /// The running master's `-p`, passed on to `nginx -t`.
    pub prefix: Option<PathBuf>,
    /// The prefix nginx resolves relative pid, log and temp paths against: `-p`, else the
    /// compiled-in `--prefix`, else Debian's.
    pub nginx_prefix: PathBuf,
    /// `nginx -V` of the binary, read once.
    pub build: Option<discovery::BuildInfo>,
    pub master: Option<Master>,
    pub other_masters: Vec<Master>,
    pub parsed: ParsedConfig,
    pub config: NginxConfig,
    pub worker: WorkerIdentity,
}

/// nginx's compiled-in prefix on Debian and in nginx.org's packages.
const DEFAULT_PREFIX: &str = "/usr/share/nginx";

pub async fn discover(opts: &Options, procs: &ProcessTable) -> Result<NginxSetup, DiagnoseError> {
    let own = why502_host::own_netns(&opts.proc_root);
    let mut masters = discovery::find_masters(procs, own);
    let chosen = choose_master(&mut masters, opts)?;

    let binary = chosen
        .as_ref()
        .and_then(|m| m.binary.clone())
        .or_else(discovery::find_binary);
    let build_info = async {
        match binary.as_deref() {
            Some(b) => discovery::build_info(b, Duration::from_secs(2)).await,
            None => None,
        }
    };
    // The config named by the flag or the master's -c is parsed while `nginx -V` runs; only
    // a config found through `nginx -V`'s --conf-path waits for it.
    let known = match (&opts.nginx_conf, &chosen) {
        (Some(c), _) => Some((c.clone(), "flag")),
        (None, Some(Master { conf: Some(c), .. })) => Some((c.clone(), "master")),
        _ => None,
    };
    let deadline = tokio::time::Instant::now() + opts.timeout;
    let (build, parsed_early) = match &known {
        Some((conf, _)) => {
            let (build, parsed) = tokio::join!(build_info, parse_within(conf.clone(), deadline));
            (build, Some(parsed))
        }
        None => (build_info.await, None),
    };
    let (conf, conf_source) = match known {
        Some(k) => k,
        None => match build.as_ref().and_then(|b| b.conf_path.clone()) {
            Some(c) => (c, "nginx -V"),
            None => (PathBuf::from(DEFAULT_CONF), "default"),
        },
    };
    if chosen.is_none() && binary.is_none() && !conf.exists() {
        return Err(DiagnoseError::NoNginx {
            reason: format!(
                "no running nginx master, no nginx binary, and {} does not exist",
                conf.display()
            ),
        });
    }
    let parsed = match parsed_early {
        Some(p) => p,
        None => parse_within(conf.clone(), deadline).await,
    }
    .map_err(|reason| DiagnoseError::ConfigUnreadable {
        conf: conf.clone(),
        reason,
    })?;
    let prefix = chosen.as_ref().and_then(|m| m.prefix.clone());
    let nginx_prefix = prefix
        .clone()
        .or_else(|| build.as_ref().and_then(|b| b.prefix.clone()))
        .unwrap_or_else(|| PathBuf::from(DEFAULT_PREFIX));
    let config = NginxConfig::from_parsed(&parsed, &nginx_prefix);
    let worker = worker_identity(chosen.as_ref(), &config);
    Ok(NginxSetup {
        binary,
        conf,
        conf_source,
        prefix,
        nginx_prefix,
        build,
        master: chosen,
        other_masters: masters,
        parsed,
        config,
        worker,
    })
}

/// Parse the config on a blocking thread, within the run's `--timeout`: a config too large
/// to parse in time is an error the report names, not a run that overstays its budget.
async fn parse_within(
    conf: PathBuf,
    deadline: tokio::time::Instant,
) -> Result<ParsedConfig, String> {
    // nginx resolves `include` against the directory of the main config.
    let conf_dir = conf
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("/"));
    let task = tokio::task::spawn_blocking(move || {
        parse_config(&conf, &conf_dir, &ParseLimits::default()).map_err(|e| e.to_string())
    });
    match tokio::time::timeout_at(deadline, task).await {
        Ok(Ok(parsed)) => parsed,
        Ok(Err(e)) => Err(format!("the config parser failed: {e}")),
        Err(_) => Err(
            "not parsed within --timeout (a config this large needs a longer --timeout)"
                .to_string(),
        ),
    }
}

/// Pick the master to diagnose: `--nginx-pid`, else the one running `--nginx-conf`, else the
/// first in the agent's own network namespace. The rest stay listed in the report.
fn choose_master(
    masters: &mut Vec<Master>,
    opts: &Options,
) -> Result<Option<Master>, DiagnoseError> {
    let index = if let Some(pid) = opts.nginx_pid {
        Some(
            masters
                .iter()
                .position(|m| m.pid == pid)
                .ok_or(DiagnoseError::NoSuchMaster { pid })?,
        )
    } else if let Some(conf) = &opts.nginx_conf {
        let want = std::fs::canonicalize(conf).unwrap_or_else(|_| conf.clone());
        masters.iter().position(|m| {
            m.same_netns
                && m.conf
                    .as_ref()
                    .map(|c| std::fs::canonicalize(c).unwrap_or_else(|_| c.clone()) == want)
                    .unwrap_or(false)
        })
    } else {
        masters.iter().position(|m| m.same_netns)
    };
    Ok(index.map(|i| masters.remove(i)))
}

fn worker_identity(master: Option<&Master>, config: &NginxConfig) -> WorkerIdentity {
    if let Some(w) = master.and_then(|m| m.workers.iter().find(|w| w.credentials.is_some())) {
        if let Some(c) = &w.credentials {
            return WorkerIdentity {
                identity: Some(Identity {
                    name: user_name(c.uid),
                    uid: c.uid,
                    gid: c.gid,
                    groups: c.groups.clone(),
                }),
                source: format!("running worker {}", w.pid),
            };
        }
    }
    // Not running: nginx started as root switches to `user`, by default `nobody`.
    let (user, group, source) = match &config.user {
        Some(u) => (
            u.as_str(),
            config.group.as_deref(),
            "user directive".to_string(),
        ),
        None => ("nobody", None, "nginx's built-in default user".to_string()),
    };
    WorkerIdentity {
        identity: identity_for(user, group),
        source: format!("{source} ({user})"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `--timeout` bounds the config parse: a config that cannot be parsed by the deadline
    /// is an error naming the timeout, not a run that overstays it; in time, it parses.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_parse_is_bounded_by_the_deadline() {
        let dir = tempfile::tempdir().expect("tempdir");
        let conf = dir.path().join("nginx.conf");
        let mut text = String::from("events {}\nhttp {\n");
        for i in 0..20_000 {
            text.push_str(&format!(
                "server {{ listen 80; server_name s{i}.test; location / {{ proxy_pass http://127.0.0.1:{}; }} }}\n",
                10_000 + i % 1000
            ));
        }
        text.push_str("}\n");
        std::fs::write(&conf, text).expect("write");
        let now = tokio::time::Instant::now();
        let err = parse_within(conf.clone(), now)
            .await
            .expect_err("20,000 servers are not parsed in no time");
        assert!(err.contains("--timeout"), "{err}");
        let parsed = parse_within(conf, now + Duration::from_secs(60))
            .await
            .expect("parsed in time");
        assert!(parsed.errors.is_empty(), "{:?}", parsed.errors);
    }
}

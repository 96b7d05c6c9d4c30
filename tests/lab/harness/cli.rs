//! Sandbox for CLI-only tests: no namespace and no daemons, just config
//! files in a temp dir and the `why502` binary run against them.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use tempfile::TempDir;

use super::agent::{agent_bin, run_agent_command, AgentRun};
use super::lab::write_file;
use super::process::{run_capped, Captured};
use super::requirements::{cli_requirements, skip_or_fail};

const NGINX_TEST_CAP: Duration = Duration::from_secs(10);

pub struct CliSandbox {
    nginx: PathBuf,
    dir: TempDir,
}

impl CliSandbox {
    /// None (after printing SKIP) when nginx is missing, because the agent's
    /// verdicts on these configs rest on `nginx -t`. Panics instead in CI.
    pub fn new(scenario: &str) -> Option<CliSandbox> {
        let nginx = match cli_requirements() {
            Ok(nginx) => nginx,
            Err(reason) => {
                skip_or_fail(scenario, &reason);
                return None;
            }
        };
        let dir = tempfile::Builder::new()
            .prefix("why502-cli-")
            .tempdir()
            .expect("lab: cannot create a temp dir");
        Some(CliSandbox { nginx, dir })
    }

    pub fn root(&self) -> &Path {
        self.dir.path()
    }

    pub fn path(&self, relative: &str) -> PathBuf {
        self.dir.path().join(relative)
    }

    /// Writes `content` to `relative` and returns the absolute path.
    pub fn write(&self, relative: &str, content: &str) -> PathBuf {
        let path = self.path(relative);
        write_file(&path, content);
        path
    }

    /// `why502 <argv...>` (full argv: the subcommand is up to the caller),
    /// killed and failed if it runs longer than `cap`.
    #[track_caller]
    pub fn run_why502(&self, argv: &[&str], cap: Duration) -> AgentRun {
        let argv: Vec<String> = argv.iter().map(|arg| arg.to_string()).collect();
        let mut cmd = Command::new(agent_bin());
        cmd.args(&argv).current_dir(self.root());
        run_agent_command(cmd, argv, cap)
    }

    /// `nginx -t` on `conf` (with the sandbox as prefix), to learn which
    /// file:line nginx itself blames. nginx may crash on some broken configs
    /// (an include cycle overflows its stack), so the exit code is not checked.
    pub fn nginx_test(&self, conf: &Path) -> Captured {
        let prefix = format!("{}/", self.root().display());
        let mut cmd = Command::new(&self.nginx);
        cmd.arg("-t").arg("-p").arg(&prefix).arg("-c").arg(conf);
        let out = run_capped(cmd, NGINX_TEST_CAP);
        assert!(
            !out.timed_out,
            "lab: nginx -t {} did not finish within {NGINX_TEST_CAP:?}",
            conf.display()
        );
        out
    }
}

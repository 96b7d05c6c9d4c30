//! The command line, per the contract. One declaration drives parsing and `--help`.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

#[derive(Debug, Parser)]
#[command(
    name = "why502",
    version,
    about = "Why is nginx returning 502 Bad Gateway? Finds nginx and every upstream it proxies to, walks the 502 decision tree for each, and names the root cause, its evidence and its fix.",
    long_about = None,
    args_conflicts_with_subcommands = true,
    after_help = "With no command, runs `diagnose` with autodetection: the running nginx master's -c, its workers' user, every upstream in its config.\n\nExamples:\n  why502                          diagnose everything, text for a person\n  why502 --json                   the same as JSON (schema why502.report.v1)\n  why502 --server-name shop.example --since 15m\n  why502 --upstream unix:/run/php/php8.2-fpm.sock --all\n  why502 tree                     the decision tree it walks\n  why502 causes                   every cause id with its fix\n\nA break or warning comes with its timeline: when the failures began and what changed just before:\n      timeline:\n        2026-11-21T13:32:04Z  config_changed  /etc/php/8.2/fpm/pool.d/www.conf modified\n        2026-11-21T13:32:05Z  backend_started php-fpm ready (ready to handle connections)\n        2026-11-21T13:32:09Z  first_failure   the first failure nginx logged for this upstream in the window\n\nExit codes: 0 ok, 1 warning, 2 break found, 3 could not diagnose."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    #[command(flatten)]
    pub diagnose: DiagnoseArgs,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Find nginx and its upstreams, walk the 502 decision tree for each, print the report.
    Diagnose(DiagnoseArgs),
    /// Print the decision tree the diagnosis walks.
    Tree {
        #[arg(long, value_enum, default_value_t = TreeFormat::Text)]
        format: TreeFormat,
    },
    /// Answer panels over HTTP on a unix socket: GET /v1/report (?server_name=, ?upstream=,
    /// ?all=1, ?since=), /v1/health, /metrics, /v1/causes, /v1/tree.
    #[command(
        after_help = "Example:\n  why502 serve --socket /run/why502.sock --group www-admin\n  curl --unix-socket /run/why502.sock 'http://x/v1/report?server_name=shop.example'\n\nConcurrent requests for the same question share one diagnosis, and its answer is reused for --cache. SIGTERM finishes the requests in flight and removes the socket. Under systemd socket activation (LISTEN_FDS) the socket passed in is used and left in place."
    )]
    Serve(ServeArgs),
    /// Write the man page (roff) or a shell's completions to stdout, for packaging.
    #[command(hide = true)]
    Generate {
        #[arg(value_enum)]
        what: Generated,
    },
    /// List every cause id with its title, step and fix.
    Causes {
        /// Machine-readable list.
        #[arg(long)]
        json: bool,
        /// The Markdown reference (docs/causes.md is generated from this).
        #[arg(long, conflicts_with = "json")]
        markdown: bool,
    },
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Generated {
    Man,
    Bash,
    Zsh,
    Fish,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum TreeFormat {
    Text,
    Mermaid,
    Dot,
    /// docs/tree.md: the text tree and the Mermaid chart.
    Markdown,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ColorChoice {
    Auto,
    Always,
    Never,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    Text,
    Json,
    Prometheus,
    Nagios,
}

/// What both `diagnose` and `serve` look at: which nginx, its logs, the window, the budget and
/// the agent's config.
#[derive(Debug, Clone, Args)]
pub struct HostArgs {
    /// nginx main config to read [default: the running master's -c, else `nginx -V`'s --conf-path, else /etc/nginx/nginx.conf]
    #[arg(long, value_name = "PATH")]
    pub nginx_conf: Option<PathBuf>,
    /// Diagnose this nginx master when the host runs several (containers, network namespaces)
    #[arg(long, value_name = "PID")]
    pub nginx_pid: Option<u32>,
    /// nginx error log(s) to read, repeatable [default: every error_log in the config]
    #[arg(long, value_name = "PATH")]
    pub error_log: Vec<PathBuf>,
    /// How far back log evidence counts, e.g. 15m, 2h (serve: unless a request says ?since=)
    #[arg(long, value_name = "DURATION", default_value = "1h", value_parser = parse_duration)]
    pub since: Duration,
    /// Total time budget for the run; no single probe may hang it
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = parse_duration)]
    pub timeout: Duration,
    /// Agent config file (TOML) [default: /etc/why502/why502.toml if present]
    #[arg(long, value_name = "PATH")]
    pub config: Option<PathBuf>,
}

#[derive(Debug, Clone, Args)]
pub struct DiagnoseArgs {
    #[command(flatten)]
    pub host: HostArgs,
    /// Diagnose only this upstream: unix:/run/x.sock, 127.0.0.1:9000, or an upstream block name
    #[arg(long, value_name = "ADDR|NAME")]
    pub upstream: Option<String>,
    /// Diagnose only the upstreams this virtual host (server_name) uses. Such a narrowed view
    /// (and --upstream) does not re-run `nginx -t` while no file nginx reads at load changed
    /// since its workers loaded it; --all, or a run without them, does
    #[arg(long, value_name = "NAME")]
    pub server_name: Option<String>,
    /// Do not stop at the first break: run every step and report them all
    #[arg(long)]
    pub all: bool,
    /// Machine-readable report on stdout (same as --format json)
    #[arg(long)]
    pub json: bool,
    /// Output format
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
    /// No colour, even on a terminal (NO_COLOR is honoured too); same as --color never
    #[arg(long)]
    pub no_color: bool,
    /// Colour: auto (on a terminal, unless NO_COLOR), always, never
    #[arg(long, value_enum, default_value_t = ColorChoice::Auto, value_name = "WHEN")]
    pub color: ColorChoice,
    /// Columns the text report wraps at [default: the terminal's width, else 80]
    #[arg(long, value_name = "COLUMNS", value_parser = clap::value_parser!(u16).range(40..))]
    pub width: Option<u16>,
    /// Quiet: only the last line (the state, the counts, the first causes with their sites)
    #[arg(short, long, conflicts_with = "verbose")]
    pub quiet: bool,
    /// Verbose: every step with its evidence, also for healthy upstreams, and what the agent
    /// could not read on stderr; -vv also every source it reads and how long each took
    #[arg(short, long, action = clap::ArgAction::Count)]
    pub verbose: u8,
    /// Write the report (any format) to PATH instead of stdout, atomically (a temp file in the
    /// same directory, fsync, rename): the one file the agent writes, for the monitoring timer.
    /// With --format prometheus, a run that cannot diagnose keeps the file's last good figures
    /// and sets why502_last_run_success 0
    #[arg(long, value_name = "PATH")]
    pub output_file: Option<PathBuf>,
}

#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    /// Unix socket to listen on; refused if the path exists and is not a stale socket
    #[arg(long, value_name = "PATH")]
    pub socket: PathBuf,
    /// Permissions of the socket, octal
    #[arg(long, value_name = "OCTAL", default_value = "0660", value_parser = parse_mode)]
    pub mode: u32,
    /// Group that owns the socket (its members may connect with mode 0660) [default: the agent's own group]
    #[arg(long, value_name = "NAME")]
    pub group: Option<String>,
    /// How long a diagnosis answers for again before a new one runs
    #[arg(long, value_name = "DURATION", default_value = "5s", value_parser = parse_duration)]
    pub cache: Duration,
    /// Connections served at once; more wait to be accepted
    #[arg(long, value_name = "N", default_value_t = 64)]
    pub max_connections: usize,
    #[command(flatten)]
    pub host: HostArgs,
}

impl ServeArgs {
    /// The diagnose flags every request starts from.
    pub fn diagnose_args(&self) -> DiagnoseArgs {
        DiagnoseArgs {
            host: self.host.clone(),
            upstream: None,
            server_name: None,
            all: false,
            json: true,
            format: Format::Json,
            no_color: true,
            color: ColorChoice::Never,
            width: None,
            quiet: false,
            verbose: 0,
            output_file: None,
        }
    }
}

fn parse_mode(s: &str) -> Result<u32, String> {
    let m = u32::from_str_radix(s.trim_start_matches("0o"), 8)
        .map_err(|_| format!("{s:?} is not an octal mode (e.g. 0660)"))?;
    if m > 0o777 {
        return Err(format!("{s} is more than 0777"));
    }
    Ok(m)
}

impl DiagnoseArgs {
    pub fn format(&self) -> Format {
        if self.json {
            Format::Json
        } else {
            self.format
        }
    }
}

pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let d = humantime::parse_duration(s).map_err(|e| format!("{e} (examples: 30s, 15m, 2h)"))?;
    if d.is_zero() {
        return Err("must be more than zero".to_string());
    }
    Ok(d)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn bare_flags_mean_diagnose() {
        let cli = Cli::try_parse_from(["why502", "--json", "--since", "15m"]).expect("parse");
        assert!(cli.command.is_none());
        assert_eq!(cli.diagnose.format(), Format::Json);
        assert_eq!(cli.diagnose.host.since, Duration::from_secs(900));
    }

    #[test]
    fn bad_durations_are_rejected() {
        assert!(Cli::try_parse_from(["why502", "--timeout", "banana"]).is_err());
        assert!(Cli::try_parse_from(["why502", "--timeout", "0s"]).is_err());
    }
}

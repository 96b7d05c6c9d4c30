//! `why502`: the command line, the renderers, and `serve`.

mod cli;
mod output;
mod render;
mod serve;

use std::io::{IsTerminal, Write};
use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;
use why502_engine::Options;
use why502_model::Report;

use cli::{Cli, Command, DiagnoseArgs, Format, TreeFormat};

const UNKNOWN_EXIT: u8 = 3;

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            // A timer's bad flag still marks its file: the last run failed.
            if e.use_stderr() {
                let raw: Vec<String> = std::env::args().collect();
                if let (Some(file), format) = output::from_raw_args(&raw) {
                    let format = match format.as_deref() {
                        Some("json") => Format::Json,
                        Some("prometheus") => Format::Prometheus,
                        Some("nagios") => Format::Nagios,
                        _ => Format::Text,
                    };
                    let path = std::path::PathBuf::from(file);
                    let error = e.kind().to_string();
                    let text = failure_text(
                        format,
                        &format!("bad command line: {error}"),
                        std::time::Instant::now(),
                        std::time::SystemTime::now(),
                        Some(&path),
                    );
                    if !text.is_empty() {
                        emit(Some(&path), &text, UNKNOWN_EXIT);
                    }
                }
            }
            // Help and version are not errors; bad flags are "could not diagnose".
            return if e.use_stderr() {
                ExitCode::from(UNKNOWN_EXIT)
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    match cli.command {
        Some(Command::Tree { format }) => print(&match format {
            TreeFormat::Text => render::tree::text(),
            TreeFormat::Mermaid => render::tree::mermaid(),
            TreeFormat::Dot => render::tree::dot(),
            TreeFormat::Markdown => render::tree::markdown(),
        }),
        Some(Command::Causes { json, markdown }) => print(&if json {
            render::catalog::json()
        } else if markdown {
            render::catalog::markdown()
        } else {
            render::catalog::text()
        }),
        Some(Command::Diagnose(args)) => diagnose(&args),
        Some(Command::Serve(args)) => serve::run(&args),
        Some(Command::Generate { what }) => generate(what),
        None => diagnose(&cli.diagnose),
    }
}

/// The man page or completions, from the clap definitions (for the .deb).
fn generate(what: cli::Generated) -> ExitCode {
    use clap::CommandFactory;
    let mut cmd = Cli::command();
    let mut out: Vec<u8> = Vec::new();
    let shell = match what {
        cli::Generated::Man => {
            return match clap_mangen::Man::new(cmd).render(&mut out) {
                Ok(()) => print(&String::from_utf8_lossy(&out)),
                Err(e) => {
                    eprintln!("why502: cannot render the man page: {e}");
                    ExitCode::from(UNKNOWN_EXIT)
                }
            };
        }
        cli::Generated::Bash => clap_complete::Shell::Bash,
        cli::Generated::Zsh => clap_complete::Shell::Zsh,
        cli::Generated::Fish => clap_complete::Shell::Fish,
    };
    clap_complete::generate(shell, &mut cmd, "why502", &mut out);
    print(&String::from_utf8_lossy(&out))
}

/// Write the answer; an answer that could not be written (a full disk, a closed pipe) is
/// "could not diagnose", never a silent success.
fn print(s: &str) -> ExitCode {
    let mut out = std::io::stdout().lock();
    match out.write_all(s.as_bytes()).and_then(|()| out.flush()) {
        Ok(()) => ExitCode::SUCCESS,
        // The reader went away (`why502 causes | head`): nobody is left to tell.
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => ExitCode::from(UNKNOWN_EXIT),
        Err(e) => {
            eprintln!("why502: cannot write the output: {e}");
            ExitCode::from(UNKNOWN_EXIT)
        }
    }
}

/// `print`, then the report's own exit code when the write succeeded.
fn print_then(s: &str, code: u8) -> ExitCode {
    if print(s) == ExitCode::SUCCESS {
        ExitCode::from(code)
    } else {
        ExitCode::from(UNKNOWN_EXIT)
    }
}

/// The agent's own log on stderr (tracing): warnings with -v, every source read with -vv,
/// nothing otherwise (the report is the answer; a timer's journal stays quiet). WHY502_LOG
/// (`warn`, `info`, `debug`) overrides.
fn init_logging(verbose: u8) {
    let level = match std::env::var("WHY502_LOG").ok().as_deref() {
        Some("debug") => tracing::Level::DEBUG,
        Some("info") => tracing::Level::INFO,
        Some("warn") => tracing::Level::WARN,
        _ => match verbose {
            0 => return,
            1 => tracing::Level::WARN,
            _ => tracing::Level::DEBUG,
        },
    };
    let _ = tracing_subscriber::fmt()
        .with_max_level(level)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_target(false)
        .try_init();
}

fn diagnose(args: &DiagnoseArgs) -> ExitCode {
    init_logging(args.verbose);
    let format = args.format();
    let started = std::time::Instant::now();
    let started_at = std::time::SystemTime::now();
    match run(args) {
        Ok(report) => {
            let rendered = match format {
                Format::Json => serde_json::to_string_pretty(&report)
                    .map(|s| s + "\n")
                    .unwrap_or_default(),
                Format::Prometheus => {
                    render::metrics::prometheus(&report)
                        + &output::last_run(true, std::time::SystemTime::now())
                }
                Format::Nagios => render::metrics::nagios(&report),
                Format::Text => render::text::render(
                    &report,
                    &render::text::Style {
                        color: args.output_file.is_none() && use_color(args),
                        quiet: args.quiet,
                        verbose: args.verbose > 0,
                        width: text_width(args),
                    },
                ),
            };
            emit(
                args.output_file.as_deref(),
                &rendered,
                report.status.exit_code() as u8,
            )
        }
        Err(e) => {
            eprintln!("why502: {e:#}");
            let text = failure_text(
                format,
                &format!("{e:#}"),
                started,
                started_at,
                args.output_file.as_deref(),
            );
            emit(args.output_file.as_deref(), &text, UNKNOWN_EXIT);
            ExitCode::from(UNKNOWN_EXIT)
        }
    }
}

/// What a run that could not diagnose answers, in `format`: an error report (JSON), the
/// UNKNOWN line (Nagios), the last good figures marked failed (Prometheus; `previous` is the
/// file they are kept in).
fn failure_text(
    format: Format,
    error: &str,
    started: std::time::Instant,
    started_at: std::time::SystemTime,
    previous: Option<&std::path::Path>,
) -> String {
    match format {
        Format::Json => format!("{:#}\n", error_json(error, started, started_at)),
        Format::Nagios => format!(
            "WHY502 UNKNOWN - {}\n",
            error.lines().next().unwrap_or(error)
        ),
        Format::Prometheus => output::failed_prometheus(previous, std::time::SystemTime::now()),
        Format::Text => String::new(),
    }
}

/// The answer to stdout, or to `--output-file` (atomically); a write that fails is "could
/// not diagnose", never a silent success.
fn emit(file: Option<&std::path::Path>, text: &str, code: u8) -> ExitCode {
    match file {
        None if text.is_empty() => ExitCode::from(code),
        None => print_then(text, code),
        Some(path) => match output::write_atomically(path, text.as_bytes()) {
            Ok(()) => ExitCode::from(code),
            Err(e) => {
                eprintln!("why502: cannot write {}: {e}", path.display());
                ExitCode::from(UNKNOWN_EXIT)
            }
        },
    }
}

/// What a run that could not diagnose answers in JSON: the report's own head (schema, status,
/// host, times), so every answer parses the same way and a panel reads status and error.
pub(crate) fn error_json(
    error: &str,
    started: std::time::Instant,
    started_at: std::time::SystemTime,
) -> serde_json::Value {
    let e = why502_model::ErrorReport::new(
        error.to_string(),
        why502_engine::hostname(),
        humantime::format_rfc3339_seconds(started_at).to_string(),
        started.elapsed().as_millis() as u64,
    );
    serde_json::to_value(e).unwrap_or_default()
}

/// The engine's options from the command line.
pub(crate) fn options(args: &DiagnoseArgs) -> anyhow::Result<Options> {
    // Paths given on the command line mean what they mean in the shell that typed them: nginx
    // would resolve a relative -c against its own prefix instead.
    let cwd = std::env::current_dir().context("cannot tell the working directory")?;
    let absolute = |p: &std::path::PathBuf| cwd.join(p);
    let config = args.host.config.as_ref().map(absolute);
    let (agent, _) = why502_engine::AgentConfig::load(config.as_deref())?;
    Ok(Options {
        nginx_conf: args.host.nginx_conf.as_ref().map(absolute),
        nginx_pid: args.host.nginx_pid,
        error_logs: args.host.error_log.iter().map(absolute).collect(),
        since: args.host.since,
        upstream: args.upstream.clone(),
        server_name: args.server_name.clone(),
        all: args.all,
        timeout: args.host.timeout,
        agent,
        ..Options::default()
    })
}

fn run(args: &DiagnoseArgs) -> anyhow::Result<Report> {
    let mut opts = options(args)?;
    // A person waiting at a terminal sees how far a long run is; pipes, JSON, the timer and
    // `--output-file` never get the line.
    let progress = (args.format() == Format::Text
        && args.output_file.is_none()
        && !args.quiet
        && std::io::stderr().is_terminal())
    .then(|| std::sync::Arc::new(why502_engine::Progress::default()));
    opts.progress = progress.clone();
    let _line = progress.map(ProgressLine::start);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let report = runtime.block_on(async {
        // The engine bounds every probe by the deadline; this outer cap is the guarantee that
        // the process answers within --timeout (plus a little to render) whatever happens.
        tokio::time::timeout(
            args.host.timeout + std::time::Duration::from_millis(500),
            why502_engine::diagnose(&opts),
        )
        .await
    });
    // Do not wait for stray blocking tasks (a hung DNS lookup) when the budget is spent.
    runtime.shutdown_background();
    match report {
        Ok(r) => Ok(r?),
        Err(_) => anyhow::bail!(
            "the diagnosis did not finish within --timeout {:?}",
            args.host.timeout
        ),
    }
}

/// The progress line on stderr: shown once a run has taken a second, updated a few times a
/// second (`why502: 12/60 upstreams`), erased when dropped, before the report is printed.
struct ProgressLine {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl ProgressLine {
    fn start(p: std::sync::Arc<why502_engine::Progress>) -> ProgressLine {
        use std::sync::atomic::Ordering;
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            let started = std::time::Instant::now();
            let mut shown = false;
            while !flag.load(Ordering::Relaxed) {
                std::thread::sleep(std::time::Duration::from_millis(100));
                if started.elapsed() < std::time::Duration::from_secs(1) {
                    continue;
                }
                let (done, total) = (
                    p.done.load(Ordering::Relaxed),
                    p.total.load(Ordering::Relaxed),
                );
                let text = if total == 0 {
                    "why502: reading nginx's config and the host…".to_string()
                } else {
                    format!("why502: {done}/{total} upstreams walked…")
                };
                eprint!("\r\x1b[K{text}");
                shown = true;
            }
            if shown {
                eprint!("\r\x1b[K");
            }
        });
        ProgressLine {
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for ProgressLine {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn use_color(args: &DiagnoseArgs) -> bool {
    match args.color {
        _ if args.no_color => false,
        cli::ColorChoice::Never => false,
        cli::ColorChoice::Always => true,
        cli::ColorChoice::Auto => {
            std::env::var_os("NO_COLOR").is_none() && std::io::stdout().is_terminal()
        }
    }
}

/// `--width`, else the terminal's columns when stdout is one, else 80.
fn text_width(args: &DiagnoseArgs) -> usize {
    if let Some(w) = args.width {
        return usize::from(w);
    }
    if std::io::stdout().is_terminal() {
        if let Some((terminal_size::Width(w), _)) = terminal_size::terminal_size() {
            return usize::from(w).max(40);
        }
    }
    80
}

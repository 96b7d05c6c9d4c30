use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::process::Command;

/// Output of a finished command, each stream capped.
#[derive(Debug, Clone)]
pub struct CommandOutput {
    /// `None` when killed by a signal.
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl CommandOutput {
    pub fn success(&self) -> bool {
        self.code == Some(0)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ExecError {
    #[error("`{program}` not found")]
    NotFound { program: String },
    #[error("cannot run `{program}`: {source}")]
    Spawn {
        program: String,
        #[source]
        source: std::io::Error,
    },
    #[error("`{program}` did not finish within {timeout:?}")]
    Timeout { program: String, timeout: Duration },
}

/// Run `argv` (never through a shell) with stdin closed, each output stream capped at
/// `max_output` bytes, killed when `timeout` passes.
pub async fn run(
    argv: &[&str],
    timeout: Duration,
    max_output: usize,
) -> Result<CommandOutput, ExecError> {
    let program = argv.first().copied().unwrap_or_default().to_string();
    let mut cmd = Command::new(&program);
    cmd.args(argv.iter().skip(1))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .env("LC_ALL", "C")
        .kill_on_drop(true);
    let mut child = cmd.spawn().map_err(|source| {
        if source.kind() == std::io::ErrorKind::NotFound {
            ExecError::NotFound {
                program: program.clone(),
            }
        } else {
            ExecError::Spawn {
                program: program.clone(),
                source,
            }
        }
    })?;
    let stdout = child.stdout.take();
    let stderr = child.stderr.take();
    let work = async {
        let (out, err, status) = tokio::join!(
            read_capped(stdout, max_output),
            read_capped(stderr, max_output),
            child.wait()
        );
        (out, err, status)
    };
    match tokio::time::timeout(timeout, work).await {
        Ok((stdout, stderr, status)) => {
            let code = status.ok().and_then(|s| s.code());
            Ok(CommandOutput {
                code,
                stdout,
                stderr,
            })
        }
        // Dropping `work` drops the child, and kill_on_drop kills it.
        Err(_) => Err(ExecError::Timeout { program, timeout }),
    }
}

/// Read up to `max` bytes, then keep draining (and discarding) so the child never blocks on a
/// full pipe.
async fn read_capped<R: AsyncRead + Unpin>(stream: Option<R>, max: usize) -> String {
    let Some(mut stream) = stream else {
        return String::new();
    };
    let mut kept = Vec::new();
    let mut chunk = [0u8; 8192];
    loop {
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                let room = max.saturating_sub(kept.len());
                kept.extend_from_slice(&chunk[..n.min(room)]);
            }
        }
    }
    String::from_utf8_lossy(&kept).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn captures_output_and_code() {
        let out = run(
            &["sh", "-c", "echo hi; echo err >&2; exit 3"],
            Duration::from_secs(5),
            1024,
        )
        .await
        .expect("run");
        assert_eq!(out.code, Some(3));
        assert_eq!(out.stdout, "hi\n");
        assert_eq!(out.stderr, "err\n");
    }

    #[tokio::test]
    async fn kills_on_timeout() {
        let start = std::time::Instant::now();
        let err = run(&["sleep", "30"], Duration::from_millis(200), 1024)
            .await
            .expect_err("timeout");
        assert!(matches!(err, ExecError::Timeout { .. }));
        assert!(start.elapsed() < Duration::from_secs(10));
    }

    #[tokio::test]
    async fn caps_output() {
        let out = run(
            &["head", "-c", "100000", "/dev/zero"],
            Duration::from_secs(5),
            1000,
        )
        .await
        .expect("run");
        assert_eq!(out.stdout.len(), 1000);
        assert!(out.success());
    }

    #[tokio::test]
    async fn missing_program_is_not_found() {
        let err = run(
            &["/nonexistent/why502-no-such-tool"],
            Duration::from_secs(1),
            10,
        )
        .await
        .expect_err("missing");
        assert!(matches!(err, ExecError::NotFound { .. }));
    }
}

//! What the host must provide before a lab scenario can run, and what to do
//! when it does not: skip locally, fail in CI (a lab test that silently skips
//! in CI would hide every regression it exists to catch).

use std::io::Write;
use std::path::{Path, PathBuf};

use super::users::lookup_user;

/// The worker user nginx and php-fpm run as in every lab stack.
pub const WORKER_USER: &str = "www-data";

/// Resolved absolute paths of the programs the lab runs.
#[derive(Clone, Debug)]
pub struct Tools {
    pub ip: PathBuf,
    pub nginx: PathBuf,
    pub php_fpm: PathBuf,
    pub curl: PathBuf,
    pub python3: PathBuf,
}

/// Everything a namespace scenario needs: root, the daemons, curl, python3
/// and the `www-data` account.
pub fn lab_tools() -> Result<Tools, String> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Err("must run as root (network namespaces, nginx `user www-data`)".into());
    }
    let tools = Tools {
        ip: find_program("ip")?,
        nginx: find_program("nginx")?,
        php_fpm: find_php_fpm()?,
        curl: find_program("curl")?,
        python3: find_program("python3")?,
    };
    if lookup_user(WORKER_USER).is_none() {
        return Err(format!("user {WORKER_USER} does not exist"));
    }
    Ok(tools)
}

/// The CLI-only tests run no daemons, but the agent shells out to `nginx -t`,
/// so nginx must be installed for their expectations to hold.
/// Returns nginx's path, which these tests also use to learn where nginx
/// itself places a config error.
pub fn cli_requirements() -> Result<PathBuf, String> {
    find_program("nginx")
}

/// `CI=true` (or `CI=1`) turns every unmet requirement into a failure.
pub fn in_ci() -> bool {
    std::env::var("CI")
        .is_ok_and(|value| matches!(value.to_ascii_lowercase().as_str(), "true" | "1"))
}

/// Reports an unmet requirement: panics in CI, prints a SKIP line otherwise.
///
/// The SKIP line is written to the real stderr, not through `eprintln!`,
/// which the test runner captures: a skipped scenario must be visible in a
/// normal `cargo test` run, not only with `--nocapture`.
#[track_caller]
pub fn skip_or_fail(scenario: &str, reason: &str) {
    if in_ci() {
        panic!("lab {scenario} cannot run in CI: {reason}");
    }
    let _ = writeln!(std::io::stderr(), "SKIP lab {scenario}: {reason}");
}

/// System directories first, so the lab runs the distribution's daemons and
/// python rather than whatever shim (pyenv, ...) happens to be first in PATH.
fn search_dirs() -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = ["/usr/sbin", "/usr/bin", "/sbin", "/bin"]
        .iter()
        .map(PathBuf::from)
        .collect();
    if let Some(path) = std::env::var_os("PATH") {
        dirs.extend(std::env::split_paths(&path));
    }
    dirs
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    path.metadata()
        .is_ok_and(|meta| meta.is_file() && meta.permissions().mode() & 0o111 != 0)
}

pub fn find_program(name: &str) -> Result<PathBuf, String> {
    search_dirs()
        .into_iter()
        .map(|dir| dir.join(name))
        .find(|candidate| is_executable(candidate))
        .ok_or_else(|| {
            format!("`{name}` not found (looked in /usr/sbin, /usr/bin, /sbin, /bin and PATH)")
        })
}

/// php-fpm is versioned on Debian (`php-fpm8.2`); prefer 8.2, else take the
/// highest `php-fpm*` in /usr/sbin, else a plain `php-fpm` on PATH.
fn find_php_fpm() -> Result<PathBuf, String> {
    let preferred = Path::new("/usr/sbin/php-fpm8.2");
    if is_executable(preferred) {
        return Ok(preferred.to_path_buf());
    }
    let mut versioned: Vec<PathBuf> = std::fs::read_dir("/usr/sbin")
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .map(|entry| entry.path())
                .filter(|path| {
                    path.file_name()
                        .is_some_and(|n| n.to_string_lossy().starts_with("php-fpm"))
                })
                .filter(|path| is_executable(path))
                .collect()
        })
        .unwrap_or_default();
    versioned.sort();
    match versioned.pop() {
        Some(path) => Ok(path),
        None => find_program("php-fpm")
            .map_err(|_| "no php-fpm* in /usr/sbin and no php-fpm on PATH".to_string()),
    }
}

/// `promtool check metrics` on `text` (Prometheus's own linter: names, HELP and TYPE, values).
/// promtool comes with Debian's `prometheus` package, which scripts/test installs; without it
/// the check is skipped, or fails under CI=true.
pub fn promtool_check_metrics(text: &str) {
    let Ok(promtool) = find_program("promtool") else {
        assert!(
            !in_ci(),
            "promtool is missing (apt install prometheus) and CI=true"
        );
        eprintln!("SKIP promtool check metrics: promtool not found");
        return;
    };
    use std::io::Write;
    let mut child = std::process::Command::new(promtool)
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run promtool");
    if let Some(mut stdin) = child.stdin.take() {
        stdin.write_all(text.as_bytes()).expect("feed promtool");
    }
    let out = child.wait_with_output().expect("promtool output");
    assert!(
        out.status.success(),
        "promtool check metrics refuses the figures ({}):\n{}{}\n--- the figures:\n{text}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

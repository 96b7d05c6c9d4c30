//! `--output-file PATH`: the one write the user names. The answer goes to a temp file in the
//! same directory, is fsynced and renamed over PATH, so a reader (node_exporter's textfile
//! collector) sees the old file or the new one, never half of one. For Prometheus text, a run
//! that could not diagnose keeps the last good figures and says so: `why502_last_run_success
//! 0`, with `why502_last_run_timestamp_seconds` on every run.

use std::io::Write;
use std::path::Path;
use std::time::SystemTime;

/// Previous figures read back, at most.
const MAX_PREVIOUS: u64 = 4 * 1024 * 1024;

pub fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "why502".to_string());
    let tmp = dir.join(format!(".{name}.tmp.{}", std::process::id()));
    let result = (|| {
        use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o644)
            .open(&tmp)?;
        // 0644 whatever the umask (the unit's is 0077): node_exporter reads the file.
        f.set_permissions(std::fs::Permissions::from_mode(0o644))?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)?;
        // The rename itself survives a crash once the directory is synced.
        std::fs::File::open(dir)?.sync_all()
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// The last-run figures every Prometheus answer ends with.
pub fn last_run(success: bool, now: SystemTime) -> String {
    let secs = now
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0);
    format!(
        "# HELP why502_last_run_success Whether the last run diagnosed (1) or could not (0: the other figures are then the last good run's).\n\
         # TYPE why502_last_run_success gauge\n\
         why502_last_run_success {}\n\
         # HELP why502_last_run_timestamp_seconds When the last run ended.\n\
         # TYPE why502_last_run_timestamp_seconds gauge\n\
         why502_last_run_timestamp_seconds {secs:.3}\n",
        u8::from(success)
    )
}

/// What a run that could not diagnose writes to a Prometheus textfile: the previous file's
/// figures (but its last-run lines), else the unknown status alone, then the last-run lines.
pub fn failed_prometheus(previous: Option<&Path>, now: SystemTime) -> String {
    let old = previous
        .and_then(|p| why502_fsread(p).ok())
        .filter(|t| t.contains("why502_status"));
    let mut o = match old {
        Some(text) => text
            .lines()
            .filter(|l| !l.contains("why502_last_run_"))
            .map(|l| format!("{l}\n"))
            .collect::<String>(),
        None => "# HELP why502_status Overall status: 0 ok, 1 warning, 2 break, 3 unknown.\n# TYPE why502_status gauge\nwhy502_status 3\n".to_string(),
    };
    o.push_str(&last_run(false, now));
    o
}

fn why502_fsread(p: &Path) -> std::io::Result<String> {
    use std::io::Read;
    let mut s = String::new();
    std::fs::File::open(p)?
        .take(MAX_PREVIOUS)
        .read_to_string(&mut s)?;
    Ok(s)
}

/// `--output-file` and `--format` as given on a command line clap refused: a bad flag in a
/// timer's unit must still mark the last run failed in the file it writes.
pub fn from_raw_args(args: &[String]) -> (Option<String>, Option<String>) {
    let mut file = None;
    let mut format = None;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        if let Some(v) = a.strip_prefix("--output-file=") {
            file = Some(v.to_string());
        } else if a == "--output-file" {
            file = it.next().cloned();
        } else if let Some(v) = a.strip_prefix("--format=") {
            format = Some(v.to_string());
        } else if a == "--format" {
            format = it.next().cloned();
        } else if a == "--json" {
            format = Some("json".to_string());
        }
    }
    (file, format)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_whole_files_and_leaves_no_temp() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("why502.prom");
        write_atomically(&p, b"one\n").expect("write");
        write_atomically(&p, b"two\n").expect("write again");
        assert_eq!(std::fs::read_to_string(&p).expect("read"), "two\n");
        // Readable by node_exporter even under the unit's UMask=0077.
        let old = nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(0o077));
        let written = write_atomically(&p, b"three\n");
        nix::sys::stat::umask(old);
        written.expect("write under umask 0077");
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&p).expect("meta").permissions().mode() & 0o777;
        assert_eq!(mode, 0o644);
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .expect("list")
            .map(|e| e.expect("entry").file_name())
            .collect();
        assert_eq!(names.len(), 1, "{names:?}");
        // A directory that does not exist: an error, and nothing written.
        assert!(write_atomically(&dir.path().join("no/such/dir/x"), b"x").is_err());
    }

    #[test]
    fn a_failed_run_keeps_the_last_good_figures() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("why502.prom");
        let good = format!(
            "# TYPE why502_status gauge\nwhy502_status 2\nwhy502_upstream_status{{address=\"unix:/x\"}} 2\n{}",
            last_run(true, SystemTime::UNIX_EPOCH)
        );
        std::fs::write(&p, &good).expect("write");
        let failed = failed_prometheus(Some(&p), SystemTime::UNIX_EPOCH);
        assert!(failed.contains("why502_status 2\n"), "{failed}");
        assert!(failed.contains("why502_upstream_status{address=\"unix:/x\"} 2"));
        assert!(failed.contains("why502_last_run_success 0\n"), "{failed}");
        assert!(!failed.contains("why502_last_run_success 1"), "{failed}");
        assert_eq!(failed.matches("# TYPE why502_last_run_success").count(), 1);
        // No previous file: the unknown status alone.
        let first = failed_prometheus(Some(&dir.path().join("absent")), SystemTime::UNIX_EPOCH);
        assert!(first.contains("why502_status 3\n") && first.contains("why502_last_run_success 0"));
    }

    #[test]
    fn output_file_and_format_are_found_in_a_refused_command_line() {
        let args: Vec<String> = [
            "why502",
            "--format",
            "prometheus",
            "--since",
            "banana",
            "--output-file=/x/y.prom",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        assert_eq!(
            from_raw_args(&args),
            (
                Some("/x/y.prom".to_string()),
                Some("prometheus".to_string())
            )
        );
    }
}

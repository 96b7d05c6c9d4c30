//! Configuration drift: config files changed after the nginx master last loaded them.

use std::time::SystemTime;

/// A process start time is known to the second at best (/proc/stat's btime is whole seconds),
/// and deploy tools write a config then start nginx within the same second: only an mtime
/// clearly after the load counts.
const LOAD_TIME_SLACK: std::time::Duration = std::time::Duration::from_secs(2);

/// Files whose mtime is later than the master's last (re)load.
pub fn changed_since(files: &[std::path::PathBuf], loaded_at: Option<SystemTime>) -> Vec<String> {
    changed_since_with(files, loaded_at, LOAD_TIME_SLACK)
}

/// Files that may have changed after the load: an mtime within the second of the load (which
/// a process start time cannot tell apart) counts. What decides to skip `nginx -t` uses this
/// side of the doubt; a missing or unreadable file counts too.
pub fn maybe_changed_since(
    files: &[std::path::PathBuf],
    loaded_at: Option<SystemTime>,
) -> Vec<String> {
    let Some(loaded) = loaded_at else {
        return Vec::new();
    };
    let before = loaded
        .checked_sub(std::time::Duration::from_secs(1))
        .unwrap_or(SystemTime::UNIX_EPOCH);
    files
        .iter()
        .filter(|f| {
            std::fs::metadata(f)
                .and_then(|m| m.modified())
                .map(|m| m >= before)
                .unwrap_or(true)
        })
        .map(|f| f.display().to_string())
        .collect()
}

fn changed_since_with(
    files: &[std::path::PathBuf],
    loaded_at: Option<SystemTime>,
    slack: std::time::Duration,
) -> Vec<String> {
    let Some(loaded) = loaded_at else {
        return Vec::new();
    };
    let loaded = loaded + slack;
    files
        .iter()
        .filter(|f| {
            std::fs::metadata(f)
                .and_then(|m| m.modified())
                .map(|m| m > loaded)
                .unwrap_or(false)
        })
        .map(|f| f.display().to_string())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drift_lists_files_newer_than_the_load() {
        let dir = tempfile::tempdir().expect("tempdir");
        let f = dir.path().join("a.conf");
        std::fs::write(&f, "x").expect("write");
        let long_ago = SystemTime::UNIX_EPOCH;
        assert_eq!(
            changed_since(std::slice::from_ref(&f), Some(long_ago)).len(),
            1
        );
        let future = SystemTime::now() + std::time::Duration::from_secs(3600);
        assert!(changed_since(std::slice::from_ref(&f), Some(future)).is_empty());
        // Written within the same second as the load: not a change.
        assert!(changed_since(std::slice::from_ref(&f), Some(SystemTime::now())).is_empty());
        assert!(changed_since(std::slice::from_ref(&f), None).is_empty());
        // Deciding to skip nginx -t: the same second is a change, and so is a missing file.
        assert_eq!(
            maybe_changed_since(std::slice::from_ref(&f), Some(SystemTime::now())).len(),
            1
        );
        let later = SystemTime::now() + std::time::Duration::from_secs(5);
        assert!(maybe_changed_since(std::slice::from_ref(&f), Some(later)).is_empty());
        let gone = dir.path().join("gone.conf");
        assert_eq!(maybe_changed_since(&[gone], Some(later)).len(), 1);
    }
}

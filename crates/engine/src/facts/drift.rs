//! Configuration drift: config files changed after the nginx master last loaded them.

use std::time::SystemTime;

/// A process start time is known to the second at best (/proc/stat's btime is whole seconds),
/// and deploy tools write a config then start nginx within the same second: only an mtime
/// clearly after the load counts.
const LOAD_TIME_SLACK: std::time::Duration = std::time::Duration::from_secs(2);

/// Files whose mtime is later than the master's last (re)load.
pub fn changed_since(files: &[std::path::PathBuf], loaded_at: Option<SystemTime>) -> Vec<String> {
    let Some(loaded) = loaded_at else {
        return Vec::new();
    };
    let loaded = loaded + LOAD_TIME_SLACK;
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
        assert!(changed_since(&[f], None).is_empty());
    }
}

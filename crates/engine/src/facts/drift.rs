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

/// Files that may have changed after the load: an mtime or ctime (of the file, and of a
/// symlink to it) within the second of the load — which a process start time cannot tell
/// apart — or after it counts, and so does a missing or unreadable file. ctime catches what
/// keeps an old mtime: `mv`, `cp -p`, `rsync -a`, tar, a new `sites-enabled` symlink. What
/// decides to skip `nginx -t` uses this side of the doubt; pass the directories too (a
/// removed include changes only its directory).
pub fn maybe_changed_since(
    files: &[std::path::PathBuf],
    loaded_at: Option<SystemTime>,
) -> Vec<String> {
    use std::os::unix::fs::MetadataExt;
    let Some(loaded) = loaded_at else {
        return Vec::new();
    };
    let before = loaded
        .checked_sub(std::time::Duration::from_secs(1))
        .unwrap_or(SystemTime::UNIX_EPOCH)
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    let recent = |m: &std::fs::Metadata| m.mtime().max(m.ctime()) >= before;
    files
        .iter()
        .filter(
            |f| match (std::fs::metadata(f), std::fs::symlink_metadata(f)) {
                (Ok(m), Ok(l)) => recent(&m) || recent(&l),
                _ => true,
            },
        )
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
        // A file whose mtime was set back (cp -p, rsync -a, tar) still has a new ctime.
        std::fs::File::options()
            .write(true)
            .open(&f)
            .and_then(|h| {
                h.set_modified(SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_000_000))
            })
            .expect("set mtime");
        let a_minute_ago = SystemTime::now() - std::time::Duration::from_secs(60);
        assert_eq!(
            maybe_changed_since(std::slice::from_ref(&f), Some(a_minute_ago)).len(),
            1
        );
        let gone = dir.path().join("gone.conf");
        assert_eq!(maybe_changed_since(&[gone], Some(later)).len(), 1);
    }
}

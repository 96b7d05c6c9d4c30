//! The filesystems the backend writes: its socket's directory, its working directory, the
//! directories of its open files, and the pool's PHP session and upload directories.

use std::path::PathBuf;
use std::time::Duration;

use why502_disk::FilesystemSet;

use super::{GatherCx, TargetFacts};
use crate::targets::{TargetAddr, UpstreamTarget};

/// Why a path is checked, as the report names it.
pub type FsRole = &'static str;

#[derive(Debug, Clone)]
pub struct BackendFilesystems {
    pub paths: Vec<(PathBuf, FsRole)>,
    pub set: Option<FilesystemSet>,
}

pub(super) async fn gather(target: &UpstreamTarget, cx: &GatherCx<'_>, facts: &mut TargetFacts) {
    if facts.filesystems.is_some() {
        return;
    }
    let src = cx.sources;
    let mut paths: Vec<(PathBuf, FsRole)> = Vec::new();
    if let TargetAddr::Unix(p) = &target.addr {
        if let Some(dir) = p.parent() {
            paths.push((dir.to_path_buf(), "the socket's directory"));
        }
    }
    if let Some(b) = facts.backend.as_ref().and_then(|b| b.current.as_ref()) {
        if let Some(cwd) = &b.cwd {
            paths.push((cwd.clone(), "the backend's working directory"));
        }
        for dir in &b.open_dirs {
            paths.push((dir.clone(), "a directory the backend has files open in"));
        }
    }
    // PHP writes sessions and uploads where the pool tells it; a full one fails the script.
    if let Some(upstream) = why502_backend::BackendAddr::parse_upstream(&target.address) {
        for pool in src
            .fpm_configs
            .iter()
            .flat_map(|c| c.pools_serving(&upstream))
        {
            if let Some(dir) = pool.session_save_path().and_then(session_dir) {
                paths.push((dir, "the pool's session.save_path"));
            }
            if let Some(dir) = pool.upload_tmp_dir().filter(|d| d.starts_with('/')) {
                paths.push((PathBuf::from(dir), "the pool's upload_tmp_dir"));
            }
        }
    }
    let set = if paths.is_empty() {
        None
    } else {
        let budget = cx.remaining().min(Duration::from_secs(2));
        let asked: Vec<PathBuf> = paths.iter().map(|(p, _)| p.clone()).collect();
        Some(src.filesystems_of(asked, budget).await)
    };
    facts.filesystems = Some(BackendFilesystems { paths, set });
}

/// The directory of a files-handler `session.save_path`: `/var/lib/php/sessions`, or with
/// PHP's prefixes `N;/path` and `N;MODE;/path`. Other handlers' values (`tcp://redis:6379`)
/// are not directories.
fn session_dir(value: &str) -> Option<PathBuf> {
    let value = value.trim().trim_matches('"');
    if value.contains("://") {
        return None;
    }
    let dir = value.rsplit(';').next()?;
    dir.starts_with('/').then(|| PathBuf::from(dir))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn session_save_path_forms() {
        assert_eq!(
            session_dir("/var/lib/php/sessions"),
            Some(PathBuf::from("/var/lib/php/sessions"))
        );
        assert_eq!(session_dir("2;/srv/sess"), Some(PathBuf::from("/srv/sess")));
        assert_eq!(
            session_dir("\"2;600;/srv/sess\""),
            Some(PathBuf::from("/srv/sess"))
        );
        assert_eq!(session_dir("tcp://127.0.0.1:6379"), None);
        assert_eq!(session_dir("relative/dir"), None);
    }
}

//! Disk space, inodes and memory: the host resources whose exhaustion makes a backend fail.
//!
//! - [`FilesystemUsage::of`] / [`FilesystemSet::for_paths`]: statvfs(2) of the filesystems the
//!   chain writes to (socket directory, nginx temp and log paths, the backend's cwd, session
//!   and upload directories, /tmp), each filesystem looked at once, its mount found in
//!   /proc/self/mountinfo.
//! - [`FilesystemUsage::judge`]: full / out of inodes for the user that writes, or a warning at
//!   the configured thresholds ([`DiskThresholds`]).
//! - [`MemoryPressure::read`]: /proc/meminfo and PSI, judged by [`MemoryThresholds`].
//!
//! Architecture invariant: read-only. Nothing here writes a byte to test whether a write
//! would fail; the answer comes from the counts statvfs reports for the writer's privilege.

mod judge;
mod memory;
mod mountinfo;
mod usage;

use std::path::PathBuf;
use std::time::Duration;

pub use judge::{DiskJudgement, DiskThresholds, Resource, Writer};
pub use memory::{
    MemInfo, MemoryJudgement, MemoryPressure, MemoryPsi, MemoryThresholds, PsiLine, Reading,
};
pub use mountinfo::{MountEntry, MountTable};
pub use usage::{
    FilesystemEntry, FilesystemSet, FilesystemUsage, InodeCounts, UnreadableKind, UnreadablePath,
};

#[derive(Debug, thiserror::Error)]
pub enum DiskError {
    #[error("cannot resolve {path}: {source}")]
    Resolve {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("statvfs {path}: {errno}")]
    Statvfs {
        path: PathBuf,
        #[source]
        errno: nix::errno::Errno,
    },
    #[error("{0}")]
    MountInfo(#[source] why502_host::ReadError),
    #[error("no mount in /proc/self/mountinfo holds {path}")]
    NoMount { path: PathBuf },
    #[error("no answer from statvfs within {timeout:?} (a hung network filesystem?)")]
    TimedOut { timeout: Duration },
    #[error("the filesystem check failed: {0}")]
    Worker(String),
}

impl DiskError {
    pub fn is_not_found(&self) -> bool {
        match self {
            DiskError::Resolve { source, .. } => source.kind() == std::io::ErrorKind::NotFound,
            DiskError::Statvfs { errno, .. } => *errno == nix::errno::Errno::ENOENT,
            DiskError::MountInfo(e) => e.is_not_found(),
            _ => false,
        }
    }

    pub fn is_permission_denied(&self) -> bool {
        match self {
            DiskError::Resolve { source, .. } => {
                source.kind() == std::io::ErrorKind::PermissionDenied
            }
            DiskError::Statvfs { errno, .. } => {
                matches!(errno, nix::errno::Errno::EACCES | nix::errno::Errno::EPERM)
            }
            DiskError::MountInfo(e) => e.is_permission_denied(),
            _ => false,
        }
    }
}

//! Space and inodes of the filesystem holding a path, as `df` and `df -i` show them.

use std::path::{Path, PathBuf};
use std::time::Duration;

use nix::sys::statvfs::{statvfs, FsFlags};
use serde::Serialize;

use crate::mountinfo::MountTable;
use crate::DiskError;

/// Inode counts; absent for filesystems that do not count inodes (btrfs, proc, some network
/// filesystems report `f_files == 0`), which can never run out of them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct InodeCounts {
    pub total: u64,
    pub free: u64,
    /// Free for unprivileged users.
    pub avail: u64,
}

/// One filesystem's usage, seen from a path on it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FilesystemUsage {
    /// The path looked at, symlinks resolved.
    pub path: PathBuf,
    pub mount_point: PathBuf,
    pub fstype: String,
    pub source: String,
    pub read_only: bool,
    /// Fragment size (`f_frsize`): the unit of the block counts.
    pub block_size: u64,
    pub blocks_total: u64,
    /// Free blocks, including those reserved for root.
    pub blocks_free: u64,
    /// Free blocks an unprivileged user may use (`f_bavail`).
    pub blocks_avail: u64,
    pub inodes: Option<InodeCounts>,
}

impl FilesystemUsage {
    /// Usage of the filesystem holding `path`.
    pub fn of(path: &Path) -> Result<FilesystemUsage, DiskError> {
        FilesystemUsage::of_with(path, &MountTable::read()?)
    }

    /// As [`FilesystemUsage::of`], with the mount table already read.
    ///
    /// statvfs(2) can block on a hung network filesystem; see [`FilesystemSet::gather`].
    pub fn of_with(path: &Path, mounts: &MountTable) -> Result<FilesystemUsage, DiskError> {
        let canonical = std::fs::canonicalize(path).map_err(|source| DiskError::Resolve {
            path: path.to_path_buf(),
            source,
        })?;
        let st = statvfs(&canonical).map_err(|errno| DiskError::Statvfs {
            path: canonical.clone(),
            errno,
        })?;
        let mount = mounts
            .mount_of(&canonical)
            .ok_or_else(|| DiskError::NoMount {
                path: canonical.clone(),
            })?;
        let files = st.files();
        Ok(FilesystemUsage {
            mount_point: mount.mount_point.clone(),
            fstype: mount.fstype.clone(),
            source: mount.source.clone(),
            read_only: st.flags().contains(FsFlags::ST_RDONLY),
            block_size: st.fragment_size(),
            blocks_total: st.blocks(),
            blocks_free: st.blocks_free(),
            blocks_avail: st.blocks_available(),
            inodes: (files > 0).then(|| InodeCounts {
                total: files,
                free: st.files_free(),
                avail: st.files_available(),
            }),
            path: canonical,
        })
    }

    pub fn bytes_total(&self) -> u64 {
        self.blocks_total.saturating_mul(self.block_size)
    }

    pub fn bytes_avail(&self) -> u64 {
        self.blocks_avail.saturating_mul(self.block_size)
    }

    pub fn bytes_free(&self) -> u64 {
        self.blocks_free.saturating_mul(self.block_size)
    }

    /// Space kept for root (ext4's reserved blocks, 5% by default): free, yet not for an
    /// unprivileged writer.
    pub fn bytes_reserved(&self) -> u64 {
        self.blocks_free
            .saturating_sub(self.blocks_avail)
            .saturating_mul(self.block_size)
    }

    /// `df`'s Use%: used / (used + available to unprivileged users), rounded up, so a
    /// filesystem whose non-root space is gone shows 100% even with root's reserve left.
    /// `None` for filesystems without block accounting (proc, sysfs).
    pub fn percent_used(&self) -> Option<u8> {
        let used = self.blocks_total.saturating_sub(self.blocks_free);
        percent_ceil(used, used + self.blocks_avail)
    }

    /// `df -i`'s IUse%; `None` when the filesystem does not count inodes.
    pub fn inode_percent_used(&self) -> Option<u8> {
        let i = self.inodes?;
        let used = i.total.saturating_sub(i.free);
        percent_ceil(used, used + i.free)
    }
}

fn percent_ceil(part: u64, whole: u64) -> Option<u8> {
    if whole == 0 {
        return None;
    }
    let pct = (u128::from(part) * 100).div_ceil(u128::from(whole));
    Some(u8::try_from(pct.min(100)).unwrap_or(100))
}

/// One filesystem and the asked paths that live on it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FilesystemEntry {
    pub usage: FilesystemUsage,
    /// The paths as asked (not resolved), in the order asked.
    pub paths: Vec<PathBuf>,
}

/// Why a path could not be looked at.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum UnreadableKind {
    NotFound,
    PermissionDenied,
    TimedOut,
    Other,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct UnreadablePath {
    pub path: PathBuf,
    pub kind: UnreadableKind,
    pub reason: String,
}

impl UnreadablePath {
    fn new(path: &Path, e: &DiskError) -> UnreadablePath {
        let kind = if e.is_not_found() {
            UnreadableKind::NotFound
        } else if e.is_permission_denied() {
            UnreadableKind::PermissionDenied
        } else if matches!(e, DiskError::TimedOut { .. }) {
            UnreadableKind::TimedOut
        } else {
            UnreadableKind::Other
        };
        UnreadablePath {
            path: path.to_path_buf(),
            kind,
            reason: e.to_string(),
        }
    }
}

/// The filesystems under many paths, each looked at once.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct FilesystemSet {
    pub filesystems: Vec<FilesystemEntry>,
    pub unreadable: Vec<UnreadablePath>,
}

impl FilesystemSet {
    /// One entry per mount, remembering which of `paths` live there. Paths on the same
    /// mount share an entry (the first one's statvfs); the mount table is read once.
    pub fn for_paths(paths: &[PathBuf]) -> FilesystemSet {
        let mounts = match MountTable::read() {
            Ok(m) => m,
            Err(e) => {
                return FilesystemSet {
                    filesystems: Vec::new(),
                    unreadable: paths.iter().map(|p| UnreadablePath::new(p, &e)).collect(),
                }
            }
        };
        let mut set = FilesystemSet::default();
        for path in paths {
            // The mount is known without statvfs once the path is resolved.
            let known = std::fs::canonicalize(path).ok().and_then(|c| {
                let mp = &mounts.mount_of(&c)?.mount_point;
                set.filesystems
                    .iter()
                    .position(|f| &f.usage.mount_point == mp)
            });
            if let Some(i) = known {
                if !set.filesystems[i].paths.contains(path) {
                    set.filesystems[i].paths.push(path.clone());
                }
                continue;
            }
            match FilesystemUsage::of_with(path, &mounts) {
                Ok(usage) => set.filesystems.push(FilesystemEntry {
                    usage,
                    paths: vec![path.clone()],
                }),
                Err(e) => set.unreadable.push(UnreadablePath::new(path, &e)),
            }
        }
        set
    }

    /// [`FilesystemSet::for_paths`] on a blocking thread, given up after `timeout`: statvfs
    /// on a hung NFS mount never returns, and the run must. (The stuck thread is left to
    /// the runtime; it holds nothing.)
    pub async fn gather(paths: Vec<PathBuf>, timeout: Duration) -> FilesystemSet {
        let asked = paths.clone();
        let work = tokio::task::spawn_blocking(move || FilesystemSet::for_paths(&paths));
        let failure = |e: DiskError| FilesystemSet {
            filesystems: Vec::new(),
            unreadable: asked.iter().map(|p| UnreadablePath::new(p, &e)).collect(),
        };
        match tokio::time::timeout(timeout, work).await {
            Ok(Ok(set)) => set,
            Ok(Err(join)) => failure(DiskError::Worker(join.to_string())),
            Err(_) => failure(DiskError::TimedOut { timeout }),
        }
    }

    /// The entry holding `path` (as asked).
    pub fn entry_for(&self, path: &Path) -> Option<&FilesystemEntry> {
        self.filesystems
            .iter()
            .find(|f| f.paths.iter().any(|p| p == path))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn usage(total: u64, free: u64, avail: u64) -> FilesystemUsage {
        FilesystemUsage {
            path: "/x".into(),
            mount_point: "/".into(),
            fstype: "ext4".into(),
            source: "/dev/vda".into(),
            read_only: false,
            block_size: 4096,
            blocks_total: total,
            blocks_free: free,
            blocks_avail: avail,
            inodes: None,
        }
    }

    #[test]
    fn percent_used_is_dfs() {
        // statvfs of this machine's root fs (`stat -f /`): total 66053021, free 61803802,
        // avail 19572253 (a large reserve: resuid=65534): 4249219 used / 23821472 = 17.8%,
        // which df rounds up to 18%.
        let u = usage(66_053_021, 61_803_802, 19_572_253);
        assert_eq!(u.percent_used(), Some(18));
        assert_eq!(u.bytes_reserved(), (61_803_802 - 19_572_253) * 4096);
        // Rounded up: one used block of a thousand is 1%, not 0%.
        assert_eq!(usage(1000, 999, 999).percent_used(), Some(1));
        // All non-root space used, reserve left: 100%.
        assert_eq!(usage(1000, 50, 0).percent_used(), Some(100));
        assert_eq!(usage(0, 0, 0).percent_used(), None);
    }

    #[test]
    fn pseudo_filesystems_have_no_inode_counts() {
        let u = FilesystemUsage::of(Path::new("/proc/self")).expect("proc");
        assert_eq!(u.fstype, "proc");
        assert_eq!(u.mount_point, PathBuf::from("/proc"));
        assert_eq!(u.inodes, None);
        assert_eq!(u.inode_percent_used(), None);
    }
}

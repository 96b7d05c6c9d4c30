//! Is a filesystem a break (writes fail) or a risk (nearly full)?
//!
//! Root-reserved blocks: ext2/3/4 keep a share of the blocks (5% by default, `tune2fs -m`)
//! for root. A non-root writer — php-fpm as www-data writing sessions and uploads, nginx's
//! workers writing proxy temp files — gets ENOSPC when `f_bavail` reaches 0, while root (and
//! `df` run as root, and the admin's own test write) still has `f_bfree` to spare. So judge a
//! non-root writer by `f_bavail` and `f_favail`, root by `f_bfree` and `f_ffree`.

use serde::Serialize;

use crate::usage::FilesystemUsage;

/// Thresholds from the agent's TOML config.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct DiskThresholds {
    /// Space used (df's Use%) at or above which a filesystem is a risk.
    pub warn_percent: u8,
    /// Inodes used (df -i's IUse%) at or above which a filesystem is a risk.
    pub inode_warn_percent: u8,
}

impl Default for DiskThresholds {
    fn default() -> DiskThresholds {
        DiskThresholds {
            warn_percent: 90,
            inode_warn_percent: 90,
        }
    }
}

/// Who writes to the filesystem.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Writer {
    Root,
    /// Any other uid: sees only `f_bavail` / `f_favail`.
    Unprivileged,
}

impl Writer {
    pub fn for_uid(uid: u32) -> Writer {
        if uid == 0 {
            Writer::Root
        } else {
            Writer::Unprivileged
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Resource {
    Space,
    Inodes,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "judgement", rename_all = "snake_case")]
pub enum DiskJudgement {
    /// No space left for this writer: its writes fail with ENOSPC. (Root's reserve, if
    /// any, is in [`FilesystemUsage::bytes_reserved`].)
    Full,
    /// No inodes left for this writer: creating a file fails with ENOSPC.
    NoInodes,
    /// Writes still work, but usage is at or past the threshold.
    Warn {
        resource: Resource,
        percent: u8,
    },
    Ok,
    /// The filesystem keeps no block counts (proc, sysfs): space does not apply.
    NotApplicable,
}

impl FilesystemUsage {
    /// Judge for `writer`. Order: full, out of inodes, space warning, inode warning.
    pub fn judge(&self, thresholds: &DiskThresholds, writer: Writer) -> DiskJudgement {
        if self.blocks_total == 0 {
            return DiskJudgement::NotApplicable;
        }
        let (blocks_left, inodes_left) = match writer {
            Writer::Root => (self.blocks_free, self.inodes.map(|i| i.free)),
            Writer::Unprivileged => (self.blocks_avail, self.inodes.map(|i| i.avail)),
        };
        // Below one block nothing new can be written.
        if blocks_left == 0 {
            return DiskJudgement::Full;
        }
        // `None`: the filesystem does not count inodes, so they cannot run out.
        if inodes_left == Some(0) {
            return DiskJudgement::NoInodes;
        }
        if let Some(p) = self
            .percent_used()
            .filter(|p| *p >= thresholds.warn_percent)
        {
            return DiskJudgement::Warn {
                resource: Resource::Space,
                percent: p,
            };
        }
        if let Some(p) = self
            .inode_percent_used()
            .filter(|p| *p >= thresholds.inode_warn_percent)
        {
            return DiskJudgement::Warn {
                resource: Resource::Inodes,
                percent: p,
            };
        }
        DiskJudgement::Ok
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::usage::InodeCounts;

    fn usage(free: u64, avail: u64, inodes: Option<(u64, u64, u64)>) -> FilesystemUsage {
        FilesystemUsage {
            path: "/var/lib/php/sessions".into(),
            mount_point: "/".into(),
            fstype: "ext4".into(),
            source: "/dev/vda".into(),
            read_only: false,
            block_size: 4096,
            blocks_total: 1000,
            blocks_free: free,
            blocks_avail: avail,
            inodes: inodes.map(|(total, free, avail)| InodeCounts { total, free, avail }),
        }
    }

    #[test]
    fn reserve_left_is_full_for_www_data_but_not_for_root() {
        let u = usage(50, 0, Some((100, 50, 50)));
        let t = DiskThresholds::default();
        assert_eq!(u.judge(&t, Writer::Unprivileged), DiskJudgement::Full);
        assert_eq!(
            u.judge(&t, Writer::Root),
            DiskJudgement::Warn {
                resource: Resource::Space,
                percent: 100
            }
        );
        assert_eq!(Writer::for_uid(33), Writer::Unprivileged);
    }

    #[test]
    fn inodes_out_is_not_full() {
        let u = usage(900, 850, Some((100, 0, 0)));
        assert_eq!(
            u.judge(&DiskThresholds::default(), Writer::Unprivileged),
            DiskJudgement::NoInodes
        );
    }

    #[test]
    fn filesystems_without_inode_counts_never_run_out() {
        // btrfs reports f_files == 0.
        let u = usage(900, 850, None);
        assert_eq!(
            u.judge(&DiskThresholds::default(), Writer::Unprivileged),
            DiskJudgement::Ok
        );
    }

    #[test]
    fn thresholds_are_parameters() {
        // 1000 blocks, 150 free = 85% used.
        let u = usage(150, 150, Some((100, 5, 5)));
        let strict = DiskThresholds {
            warn_percent: 80,
            inode_warn_percent: 99,
        };
        assert_eq!(
            u.judge(&strict, Writer::Root),
            DiskJudgement::Warn {
                resource: Resource::Space,
                percent: 85
            }
        );
        let lax = DiskThresholds {
            warn_percent: 90,
            inode_warn_percent: 90,
        };
        assert_eq!(
            u.judge(&lax, Writer::Root),
            DiskJudgement::Warn {
                resource: Resource::Inodes,
                percent: 95
            }
        );
        let quiet = DiskThresholds {
            warn_percent: 90,
            inode_warn_percent: 96,
        };
        assert_eq!(u.judge(&quiet, Writer::Root), DiskJudgement::Ok);
    }

    #[test]
    fn pseudo_filesystems_are_not_applicable() {
        let mut u = usage(0, 0, None);
        u.blocks_total = 0;
        assert_eq!(
            u.judge(&DiskThresholds::default(), Writer::Root),
            DiskJudgement::NotApplicable
        );
    }
}

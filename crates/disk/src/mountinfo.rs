//! /proc/self/mountinfo (proc(5)):
//! `ID PARENT MAJ:MIN ROOT MOUNT_POINT OPTIONS [OPTIONAL...] - FSTYPE SOURCE SUPER_OPTIONS`,
//! with space, tab, newline and backslash in paths written as `\040`, `\011`, `\012`, `\134`.

use std::ffi::OsString;
use std::os::unix::ffi::OsStringExt;
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::DiskError;

const MOUNTINFO: &str = "/proc/self/mountinfo";
/// Hosts with thousands of mounts (containers, snaps) stay well under this.
const MAX_MOUNTINFO_BYTES: u64 = 16 << 20;

/// One mount.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MountEntry {
    pub mount_id: u32,
    pub parent_id: u32,
    pub mount_point: PathBuf,
    /// Per-mount options (`rw,relatime`).
    pub options: String,
    pub fstype: String,
    pub source: String,
    pub super_options: String,
}

/// The mounts of this process's mount namespace, in mount order.
#[derive(Debug, Clone, Default)]
pub struct MountTable {
    entries: Vec<MountEntry>,
}

impl MountTable {
    pub fn read() -> Result<MountTable, DiskError> {
        let text = why502_host::read_to_string_bounded(Path::new(MOUNTINFO), MAX_MOUNTINFO_BYTES)
            .map_err(DiskError::MountInfo)?;
        Ok(MountTable::parse(&text))
    }

    /// Lines that do not parse are skipped: one odd mount must not hide the others.
    pub fn parse(text: &str) -> MountTable {
        MountTable {
            entries: text.lines().filter_map(parse_line).collect(),
        }
    }

    pub fn entries(&self) -> &[MountEntry] {
        &self.entries
    }

    /// The mount holding `canonical` (an absolute path without symlinks): the longest mount
    /// point that is a whole-component prefix of it; of mounts stacked on the same point the
    /// last mounted, which hides the others.
    pub fn mount_of(&self, canonical: &Path) -> Option<&MountEntry> {
        let mut best: Option<&MountEntry> = None;
        for e in &self.entries {
            if !canonical.starts_with(&e.mount_point) {
                continue;
            }
            let longer_or_same = best
                .is_none_or(|b| e.mount_point.as_os_str().len() >= b.mount_point.as_os_str().len());
            if longer_or_same {
                best = Some(e);
            }
        }
        best
    }
}

fn parse_line(line: &str) -> Option<MountEntry> {
    let (left, right) = line.split_once(" - ")?;
    let mut l = left.split(' ');
    let mount_id = l.next()?.parse().ok()?;
    let parent_id = l.next()?.parse().ok()?;
    let _dev = l.next()?;
    let _root = l.next()?;
    let mount_point = PathBuf::from(unescape(l.next()?));
    let options = l.next()?.to_string();
    let mut r = right.split(' ');
    let fstype = r.next()?.to_string();
    let source = String::from_utf8_lossy(unescape(r.next()?).as_encoded_bytes()).into_owned();
    let super_options = r.next().unwrap_or("").to_string();
    Some(MountEntry {
        mount_id,
        parent_id,
        mount_point,
        options,
        fstype,
        source,
        super_options,
    })
}

/// `\NNN` octal escapes back to bytes; paths need not be UTF-8.
fn unescape(s: &str) -> OsString {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c))
        {
            let v = (b[i + 1] - b'0') as u32 * 64
                + (b[i + 2] - b'0') as u32 * 8
                + (b[i + 3] - b'0') as u32;
            if let Ok(byte) = u8::try_from(v) {
                out.push(byte);
                i += 4;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    OsString::from_vec(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    // Captured /proc/self/mountinfo of the build machine.
    const REAL: &str = include_str!("../testdata/mountinfo.txt");

    #[test]
    fn parses_real_mountinfo() {
        let t = MountTable::parse(REAL);
        assert_eq!(t.entries().len(), REAL.lines().count());
        let root = &t.entries()[5];
        assert_eq!(root.mount_id, 27);
        assert_eq!(root.mount_point, PathBuf::from("/"));
        assert_eq!(root.fstype, "ext4");
        assert_eq!(root.source, "/dev/vda");
        assert!(root.super_options.contains("resuid=65534"));
        // A mount with an optional field ("shared:1") before the separator.
        let netns = t
            .entries()
            .iter()
            .find(|e| e.mount_point == Path::new("/run/netns"))
            .expect("netns");
        assert_eq!(netns.fstype, "ext4");
    }

    #[test]
    fn longest_prefix_and_topmost_mount_win() {
        let t = MountTable::parse(REAL);
        let m = t
            .mount_of(Path::new("/sys/fs/cgroup/memory/x"))
            .expect("mount");
        assert_eq!(m.mount_point, PathBuf::from("/sys/fs/cgroup/memory"));
        assert_eq!(m.fstype, "cgroup");
        // /dev/shm is mounted twice here (ids 25 and 30): the later one is visible.
        assert_eq!(
            t.mount_of(Path::new("/dev/shm/a")).expect("shm").mount_id,
            30
        );
        // Whole components only: /devx is on /, not on /dev.
        assert_eq!(t.mount_of(Path::new("/devx")).expect("root").mount_id, 27);
        assert_eq!(
            t.mount_of(Path::new("/var/lib/php/sessions"))
                .expect("root")
                .fstype,
            "ext4"
        );
    }

    #[test]
    fn unescapes_octal_in_paths() {
        // proc(5) escaping of a mount point with a space and a backslash.
        let t = MountTable::parse(
            "90 27 0:50 / /mnt/my\\040data\\134x rw - tmpfs my\\040src rw,size=10k\n",
        );
        let e = &t.entries()[0];
        assert_eq!(e.mount_point, PathBuf::from("/mnt/my data\\x"));
        assert_eq!(e.source, "my src");
        assert_eq!(
            t.mount_of(Path::new("/mnt/my data\\x/f"))
                .map(|e| e.mount_id),
            Some(90)
        );
    }
}

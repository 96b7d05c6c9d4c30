//! Real filesystems: tmpfs mounts filled until the kernel says ENOSPC, then judged. Mounting
//! needs root (skips otherwise; fails instead under CI=true); mounts are undone on drop,
//! lazily when busy. The tests without mounts run anywhere.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

use nix::mount::{mount, umount2, MntFlags, MsFlags};
use why502_disk::{
    DiskJudgement, DiskThresholds, FilesystemSet, FilesystemUsage, UnreadableKind, Writer,
};

fn ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true")
}

fn skip(why: &str) {
    assert!(!ci(), "CI=true, cannot skip: {why}");
    eprintln!("SKIP: {why}");
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// A tmpfs mounted on a fresh temporary directory; unmounted before the directory goes.
struct Tmpfs {
    mounted: bool,
    // Declared after `mounted` and dropped after Drop::drop unmounts.
    dir: tempfile::TempDir,
}

impl Tmpfs {
    fn mount(options: &str) -> Tmpfs {
        let dir = tempfile::tempdir().expect("tempdir");
        mount(
            Some("why502-test"),
            dir.path(),
            Some("tmpfs"),
            MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
            Some(options),
        )
        .expect("mount tmpfs");
        Tmpfs { mounted: true, dir }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        if self.mounted && umount2(self.dir.path(), MntFlags::empty()).is_err() {
            let _ = umount2(self.dir.path(), MntFlags::MNT_DETACH);
        }
    }
}

fn is_enospc(e: &std::io::Error) -> bool {
    e.raw_os_error() == Some(libc::ENOSPC)
}

#[test]
fn full_tmpfs_is_full_for_every_writer() {
    if !is_root() {
        return skip("needs root to mount a tmpfs");
    }
    let fs = Tmpfs::mount("size=1m,mode=0755");
    let mut f = File::create(fs.path().join("fill")).expect("create");
    let chunk = vec![b'x'; 64 * 1024];
    let mut hit_enospc = false;
    // 1 MiB fits 16 chunks; the bound only stops a size= that was ignored.
    for _ in 0..64 {
        match f.write_all(&chunk) {
            Ok(()) => {}
            Err(e) => {
                assert!(is_enospc(&e), "expected ENOSPC, got {e}");
                hit_enospc = true;
                break;
            }
        }
    }
    assert!(hit_enospc, "a 1 MiB tmpfs took 4 MiB");
    drop(f);

    let u = FilesystemUsage::of(&fs.path().join("fill")).expect("usage");
    assert_eq!(u.fstype, "tmpfs");
    assert_eq!(u.source, "why502-test");
    assert_eq!(u.mount_point, fs.path().canonicalize().expect("canonical"));
    assert_eq!(u.blocks_avail, 0);
    assert_eq!(u.percent_used(), Some(100));
    let t = DiskThresholds::default();
    assert_eq!(u.judge(&t, Writer::Unprivileged), DiskJudgement::Full);
    // tmpfs keeps no reserve for root.
    assert_eq!(u.judge(&t, Writer::Root), DiskJudgement::Full);
}

#[test]
fn tmpfs_out_of_inodes_is_no_inodes_not_full() {
    if !is_root() {
        return skip("needs root to mount a tmpfs");
    }
    let fs = Tmpfs::mount("size=1m,nr_inodes=16,mode=0755");
    let mut created = 0;
    let mut hit_enospc = false;
    for i in 0..64 {
        match File::create(fs.path().join(format!("f{i}"))) {
            Ok(_) => created += 1,
            Err(e) => {
                // ENOSPC from the filesystem, not EMFILE from a file-descriptor limit.
                assert!(is_enospc(&e), "expected ENOSPC, got {e}");
                hit_enospc = true;
                break;
            }
        }
    }
    assert!(hit_enospc && created < 16, "created {created} files");

    let u = FilesystemUsage::of(fs.path()).expect("usage");
    let inodes = u.inodes.expect("tmpfs counts inodes");
    assert_eq!(inodes.total, 16);
    assert_eq!(inodes.free, 0);
    assert_eq!(u.inode_percent_used(), Some(100));
    assert!(u.blocks_avail > 0);
    let judged = u.judge(&DiskThresholds::default(), Writer::Unprivileged);
    assert_eq!(judged, DiskJudgement::NoInodes);
    assert_ne!(judged, DiskJudgement::Full);
}

#[test]
fn filesystem_set_dedupes_paths_and_reports_unreadable_ones() {
    let dir = tempfile::tempdir().expect("tempdir");
    let a = dir.path().join("a");
    std::fs::create_dir(&a).expect("mkdir");
    let b = dir.path().join("b.txt");
    std::fs::write(&b, "x").expect("write");
    let missing = PathBuf::from("/nonexistent/why502/sessions");
    let paths = vec![
        a.clone(),
        PathBuf::from("/proc/self/status"),
        b.clone(),
        missing.clone(),
        PathBuf::from("/proc"),
    ];
    let set = FilesystemSet::for_paths(&paths);
    assert_eq!(set.filesystems.len(), 2, "{set:#?}");
    let tmp = set.entry_for(&a).expect("a");
    assert_eq!(tmp.paths, vec![a.clone(), b.clone()]);
    let proc_fs = set.entry_for(Path::new("/proc")).expect("proc");
    assert_eq!(proc_fs.usage.fstype, "proc");
    assert_eq!(proc_fs.paths.len(), 2);
    // proc keeps neither block nor inode counts: not "full", not "out of inodes".
    assert_eq!(
        proc_fs
            .usage
            .judge(&DiskThresholds::default(), Writer::Unprivileged),
        DiskJudgement::NotApplicable
    );
    assert_eq!(set.unreadable.len(), 1);
    assert_eq!(set.unreadable[0].path, missing);
    assert_eq!(set.unreadable[0].kind, UnreadableKind::NotFound);
}

#[tokio::test]
async fn gather_runs_within_the_budget() {
    let set =
        FilesystemSet::gather(vec![PathBuf::from("/")], std::time::Duration::from_secs(5)).await;
    assert_eq!(set.filesystems.len(), 1);
    assert_eq!(set.filesystems[0].usage.mount_point, PathBuf::from("/"));
}

#[test]
fn percent_used_matches_df() {
    let Ok(out) = Command::new("df")
        .args(["--output=pcent,ipcent", "/"])
        .output()
    else {
        return skip("df not installed");
    };
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8_lossy(&out.stdout);
    let values: Vec<u8> = text
        .lines()
        .nth(1)
        .expect("df row")
        .split_whitespace()
        .map(|v| v.trim_end_matches('%').parse().expect("percent"))
        .collect();
    let u = FilesystemUsage::of(Path::new("/")).expect("usage");
    // Others write to this disk meanwhile: allow the boundary to move by one.
    let ours = u.percent_used().expect("blocks") as i16;
    assert!(
        (ours - values[0] as i16).abs() <= 1,
        "ours {ours}%, df {}%",
        values[0]
    );
    let iours = u.inode_percent_used().expect("inodes") as i16;
    assert!(
        (iours - values[1] as i16).abs() <= 1,
        "ours {iours}%, df {}%",
        values[1]
    );
}

//! May nginx's worker connect to a unix socket? connect(2) needs search (x) permission on every
//! directory of the path and write permission on the socket itself, for the worker's uid, gid
//! and supplementary groups. This crate answers that from stat(2) alone, without connecting.
//!
//! Architecture invariant: the check never writes and never connects; it reports what it could
//! not stat as `Unknown` rather than guessing.

use std::io::ErrorKind;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use serde::Serialize;
use why502_host::{group_name, user_name, Identity};

/// Owner, group and mode of a file, with names for the report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FileFacts {
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub owner: String,
    pub group: String,
    /// `srw-rw---- www-data:www-data`, as `ls -l` shows it.
    pub display: String,
}

impl FileFacts {
    fn from_meta(meta: &std::fs::Metadata) -> FileFacts {
        let owner = user_name(meta.uid());
        let group = group_name(meta.gid());
        let display = format!("{} {owner}:{group}", symbolic_mode(meta));
        FileFacts {
            mode: meta.mode() & 0o7777,
            uid: meta.uid(),
            gid: meta.gid(),
            owner,
            group,
            display,
        }
    }
}

/// The answer for one socket path and one identity.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum SocketAccess {
    /// Nothing at the path (or a directory on the way is missing).
    Missing {
        missing: PathBuf,
    },
    /// Something is there, but not a socket.
    NotASocket {
        file_type: String,
    },
    /// A directory on the way lacks search permission for the identity.
    DirectoryDenied {
        dir: PathBuf,
        facts: FileFacts,
    },
    /// The socket lacks write permission for the identity.
    SocketDenied {
        facts: FileFacts,
    },
    Allowed {
        facts: FileFacts,
    },
    /// The agent itself could not look (not root, path unreadable).
    Unknown {
        reason: String,
    },
}

/// Check whether `who` may connect to the unix socket at `path`.
pub fn check_socket_access(path: &Path, who: &Identity) -> SocketAccess {
    for dir in directories_to_search(path) {
        let meta = match std::fs::metadata(&dir) {
            Ok(m) => m,
            Err(e) if e.kind() == ErrorKind::NotFound => {
                return SocketAccess::Missing { missing: dir }
            }
            Err(e) => return unknown(&dir, &e),
        };
        if !meta.is_dir() {
            return SocketAccess::Missing { missing: dir };
        }
        if !permits(&meta, who, Access::Search) {
            return SocketAccess::DirectoryDenied {
                dir,
                facts: FileFacts::from_meta(&meta),
            };
        }
    }
    let meta = match std::fs::metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == ErrorKind::NotFound => {
            return SocketAccess::Missing {
                missing: path.to_path_buf(),
            }
        }
        Err(e) => return unknown(path, &e),
    };
    if !meta.file_type().is_socket() {
        return SocketAccess::NotASocket {
            file_type: file_type_name(&meta).to_string(),
        };
    }
    let facts = FileFacts::from_meta(&meta);
    if permits(&meta, who, Access::Write) {
        SocketAccess::Allowed { facts }
    } else {
        SocketAccess::SocketDenied { facts }
    }
}

fn unknown(path: &Path, e: &std::io::Error) -> SocketAccess {
    let hint = if e.kind() == ErrorKind::PermissionDenied {
        " (run why502 as root to see it)"
    } else {
        ""
    };
    SocketAccess::Unknown {
        reason: format!("cannot stat {}: {e}{hint}", path.display()),
    }
}

/// Every directory connect() walks through, outermost first: those of the resolved path (so a
/// denial names the real directory an admin must chmod), then those of the path as written
/// (a symlink on the way may itself live in a directory the worker cannot search).
fn directories_to_search(path: &Path) -> Vec<PathBuf> {
    let outermost_first = |p: &Path| -> Vec<PathBuf> {
        let mut v: Vec<PathBuf> = p.ancestors().map(Path::to_path_buf).collect();
        v.retain(|d| !d.as_os_str().is_empty());
        v.reverse();
        v
    };
    let mut dirs = Vec::new();
    if let Some(parent) = path.parent() {
        if let Ok(real) = std::fs::canonicalize(parent) {
            dirs.extend(outermost_first(&real));
        }
        dirs.extend(outermost_first(parent));
    }
    let mut seen = std::collections::HashSet::new();
    dirs.retain(|d| seen.insert(d.clone()));
    dirs
}

#[derive(Clone, Copy)]
enum Access {
    Search,
    Write,
}

/// The kernel's generic permission check: the owner class if the uid owns it, else the group
/// class if any of the process's groups owns it, else other. uid 0 passes (CAP_DAC_OVERRIDE;
/// for search, root still needs an x bit somewhere, which directories practically have).
fn permits(meta: &std::fs::Metadata, who: &Identity, access: Access) -> bool {
    if who.uid == 0 {
        return match access {
            Access::Write => true,
            Access::Search => meta.mode() & 0o111 != 0,
        };
    }
    let bit = match access {
        Access::Search => 0o1,
        Access::Write => 0o2,
    };
    let mode = meta.mode();
    let shift = if meta.uid() == who.uid {
        6
    } else if who.in_group(meta.gid()) {
        3
    } else {
        0
    };
    (mode >> shift) & bit != 0
}

fn file_type_name(meta: &std::fs::Metadata) -> &'static str {
    let t = meta.file_type();
    if t.is_dir() {
        "directory"
    } else if t.is_file() {
        "regular file"
    } else if t.is_fifo() {
        "fifo"
    } else if t.is_char_device() {
        "character device"
    } else if t.is_block_device() {
        "block device"
    } else if t.is_socket() {
        "socket"
    } else {
        "unknown file type"
    }
}

/// `srw-rw----`, `drwx--x---` as `ls -l` prints it (setuid/setgid/sticky included).
pub fn symbolic_mode(meta: &std::fs::Metadata) -> String {
    let t = meta.file_type();
    let kind = if t.is_dir() {
        'd'
    } else if t.is_socket() {
        's'
    } else if t.is_fifo() {
        'p'
    } else if t.is_symlink() {
        'l'
    } else if t.is_char_device() {
        'c'
    } else if t.is_block_device() {
        'b'
    } else {
        '-'
    };
    format!("{kind}{}", rwx(meta.mode()))
}

fn rwx(mode: u32) -> String {
    let mut s = String::with_capacity(9);
    for (shift, special, set, unset) in [
        (6, 0o4000, 's', 'S'),
        (3, 0o2000, 's', 'S'),
        (0, 0o1000, 't', 'T'),
    ] {
        let bits = (mode >> shift) & 0o7;
        s.push(if bits & 4 != 0 { 'r' } else { '-' });
        s.push(if bits & 2 != 0 { 'w' } else { '-' });
        s.push(match (bits & 1 != 0, mode & special != 0) {
            (true, true) => set,
            (false, true) => unset,
            (true, false) => 'x',
            (false, false) => '-',
        });
    }
    s
}

#[cfg(test)]
mod tests;

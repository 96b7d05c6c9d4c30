//! Real sockets in a temp dir, checked for identities other than the test's own, so the tests
//! need no root: the files are the test user's, and the identities are strangers or members
//! of the file's group.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::net::UnixListener;

use super::*;

struct Fixture {
    _dir: tempfile::TempDir,
    base: PathBuf,
    sock: PathBuf,
    _listener: UnixListener,
}

fn fixture(sock_mode: u32, dir_mode: u32) -> Fixture {
    let dir = tempfile::tempdir().expect("tempdir");
    let base = dir.path().to_path_buf();
    std::fs::set_permissions(&base, std::fs::Permissions::from_mode(0o755)).expect("chmod base");
    let run = base.join("run");
    std::fs::create_dir(&run).expect("mkdir");
    let sock = run.join("app.sock");
    let listener = UnixListener::bind(&sock).expect("bind");
    std::fs::set_permissions(&sock, std::fs::Permissions::from_mode(sock_mode)).expect("chmod");
    std::fs::set_permissions(&run, std::fs::Permissions::from_mode(dir_mode)).expect("chmod");
    Fixture {
        _dir: dir,
        base,
        sock,
        _listener: listener,
    }
}

fn stranger() -> Identity {
    Identity {
        name: "stranger".into(),
        uid: 4_000_001,
        gid: 4_000_001,
        groups: vec![4_000_001],
    }
}

fn group_member(gid: u32) -> Identity {
    Identity {
        name: "member".into(),
        uid: 4_000_002,
        gid: 4_000_002,
        groups: vec![4_000_002, gid],
    }
}

fn kind(a: &SocketAccess) -> &'static str {
    match a {
        SocketAccess::Missing { .. } => "missing",
        SocketAccess::NotASocket { .. } => "not_a_socket",
        SocketAccess::DirectoryDenied { .. } => "directory_denied",
        SocketAccess::SocketDenied { .. } => "socket_denied",
        SocketAccess::Allowed { .. } => "allowed",
        SocketAccess::Unknown { .. } => "unknown",
    }
}

#[test]
fn mode_bits_decide_by_class() {
    // (socket mode, who, expected)
    let gid = std::fs::metadata("/tmp").map(|m| m.gid()).unwrap_or(0);
    let cases: &[(u32, &str, &str)] = &[
        (0o600, "stranger", "socket_denied"),
        (0o666, "stranger", "allowed"),
        (0o660, "stranger", "socket_denied"),
        (0o660, "member", "allowed"),
        (0o640, "member", "socket_denied"), // read is not enough: connect needs write
        (0o606, "member", "socket_denied"), // group class applies, not other
    ];
    for &(mode, who, want) in cases {
        let f = fixture(mode, 0o755);
        let file_gid = std::fs::metadata(&f.sock).map(|m| m.gid()).unwrap_or(gid);
        let id = if who == "member" {
            group_member(file_gid)
        } else {
            stranger()
        };
        let got = check_socket_access(&f.sock, &id);
        assert_eq!(kind(&got), want, "mode {mode:o} for {who}: {got:?}");
    }
}

#[test]
fn directory_without_search_permission_is_named() {
    let f = fixture(0o666, 0o700);
    match check_socket_access(&f.sock, &stranger()) {
        SocketAccess::DirectoryDenied { dir, facts } => {
            assert_eq!(dir, f.base.join("run"));
            assert!(facts.display.starts_with("drwx------"), "{}", facts.display);
        }
        other => panic!("expected directory_denied, got {other:?}"),
    }
}

#[test]
fn missing_socket_and_missing_directory() {
    let f = fixture(0o666, 0o755);
    let gone = f.base.join("run/other.sock");
    assert_eq!(kind(&check_socket_access(&gone, &stranger())), "missing");
    let no_dir = f.base.join("nope/app.sock");
    match check_socket_access(&no_dir, &stranger()) {
        SocketAccess::Missing { missing } => assert_eq!(missing, f.base.join("nope")),
        other => panic!("{other:?}"),
    }
}

#[test]
fn regular_file_is_not_a_socket() {
    let f = fixture(0o666, 0o755);
    let file = f.base.join("run/plain");
    std::fs::write(&file, b"x").expect("write");
    match check_socket_access(&file, &stranger()) {
        SocketAccess::NotASocket { file_type } => assert_eq!(file_type, "regular file"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn symlinked_directory_checks_the_target_too() {
    let f = fixture(0o666, 0o755);
    let private = f.base.join("private");
    std::fs::create_dir(&private).expect("mkdir");
    let sock = private.join("s.sock");
    let _l = UnixListener::bind(&sock).expect("bind");
    std::fs::set_permissions(&sock, std::fs::Permissions::from_mode(0o666)).expect("chmod");
    std::fs::set_permissions(&private, std::fs::Permissions::from_mode(0o700)).expect("chmod");
    let link = f.base.join("link");
    std::os::unix::fs::symlink(&private, &link).expect("symlink");
    match check_socket_access(&link.join("s.sock"), &stranger()) {
        // The denial is reported on the real directory, which is what the admin must chmod.
        SocketAccess::DirectoryDenied { dir, .. } => assert_eq!(dir, private),
        other => panic!("{other:?}"),
    }
}

#[test]
fn symbolic_modes_match_ls() {
    let f = fixture(0o660, 0o755);
    let meta = std::fs::metadata(&f.sock).expect("stat");
    assert_eq!(symbolic_mode(&meta), "srw-rw----");
    assert_eq!(rwx(0o4755), "rwsr-xr-x");
    assert_eq!(rwx(0o1777), "rwxrwxrwt");
    assert_eq!(rwx(0o2640), "rw-r-S---");
}

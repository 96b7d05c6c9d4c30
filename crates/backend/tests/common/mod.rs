//! Helpers shared by the integration tests.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

pub fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

pub fn fixture_text(rel: &str) -> String {
    std::fs::read_to_string(fixtures().join(rel)).unwrap()
}

/// Copy a fixture tree into `dest`, replacing `@ROOT@` in every file with `dest`.
pub fn copy_tree(src: &Path, dest: &Path) {
    copy_under(src, dest, dest);
}

fn copy_under(src: &Path, dest: &Path, root: &Path) {
    for entry in std::fs::read_dir(src).unwrap() {
        let entry = entry.unwrap();
        let to = dest.join(entry.file_name());
        let ft = entry.file_type().unwrap();
        if ft.is_dir() {
            std::fs::create_dir_all(&to).unwrap();
            copy_under(&entry.path(), &to, root);
        } else if ft.is_symlink() {
            std::os::unix::fs::symlink(std::fs::read_link(entry.path()).unwrap(), &to).unwrap();
        } else {
            let text = std::fs::read_to_string(entry.path()).unwrap();
            std::fs::write(&to, text.replace("@ROOT@", &root.to_string_lossy())).unwrap();
        }
    }
}

/// A test that needs a tool or root skips when it is missing, except under CI=true, where the
/// environment is supposed to have it and a skip would hide a regression.
pub fn skip_or_fail(why: &str) {
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!("required by this test under CI=true: {why}");
    }
    eprintln!("SKIP: {why}");
}

pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

pub fn which(program: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join(program))
            .find(|p| p.is_file())
    })
}

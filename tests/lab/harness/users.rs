//! Looking up the accounts the lab hands files to (`www-data`). Uses the
//! re-entrant libc calls because scenarios run on parallel test threads.

use std::ffi::CString;

/// uid and primary gid of a user account.
#[derive(Clone, Copy, Debug)]
pub struct Account {
    pub uid: u32,
    pub gid: u32,
}

const LOOKUP_BUFFER: usize = 16 * 1024;

pub fn lookup_user(name: &str) -> Option<Account> {
    let cname = CString::new(name).ok()?;
    // SAFETY: all pointers refer to live, correctly sized locals; the
    // returned strings point into `buf`, which we never read.
    unsafe {
        let mut entry: libc::passwd = std::mem::zeroed();
        let mut buf = vec![0 as libc::c_char; LOOKUP_BUFFER];
        let mut found: *mut libc::passwd = std::ptr::null_mut();
        let rc = libc::getpwnam_r(
            cname.as_ptr(),
            &mut entry,
            buf.as_mut_ptr(),
            buf.len(),
            &mut found,
        );
        if rc != 0 || found.is_null() {
            return None;
        }
        Some(Account {
            uid: entry.pw_uid,
            gid: entry.pw_gid,
        })
    }
}

/// gid of a group.
pub fn lookup_group(name: &str) -> Option<u32> {
    let cname = CString::new(name).ok()?;
    // SAFETY: as in `lookup_user`.
    unsafe {
        let mut entry: libc::group = std::mem::zeroed();
        let mut buf = vec![0 as libc::c_char; LOOKUP_BUFFER];
        let mut found: *mut libc::group = std::ptr::null_mut();
        let rc = libc::getgrnam_r(
            cname.as_ptr(),
            &mut entry,
            buf.as_mut_ptr(),
            buf.len(),
            &mut found,
        );
        if rc != 0 || found.is_null() {
            return None;
        }
        Some(entry.gr_gid)
    }
}

//! Users and groups through NSS (getpwnam_r & co.), so LDAP/sssd users resolve as nginx sees them.

use nix::unistd::{getgrouplist, Gid, Group, Uid, User};

/// Who a process acts as for permission checks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
    /// Supplementary groups (may include `gid`).
    pub groups: Vec<u32>,
}

impl Identity {
    pub fn in_group(&self, gid: u32) -> bool {
        self.gid == gid || self.groups.contains(&gid)
    }
}

/// Resolve a user name (and optional group name, as in nginx's `user USER [GROUP]`) to ids,
/// with the supplementary groups the kernel would give a process started with initgroups().
pub fn identity_for(user: &str, group: Option<&str>) -> Option<Identity> {
    let u = User::from_name(user).ok().flatten()?;
    // nginx's `user USER;` without a group uses the group named like the user (not the
    // user's primary group); fall back to the primary group when there is none.
    let gid = match group {
        Some(g) => Group::from_name(g).ok().flatten()?.gid,
        None => Group::from_name(user)
            .ok()
            .flatten()
            .map(|g| g.gid)
            .unwrap_or(u.gid),
    };
    let cname = std::ffi::CString::new(user).ok()?;
    let groups = getgrouplist(&cname, gid)
        .map(|gs| gs.into_iter().map(Gid::as_raw).collect())
        .unwrap_or_else(|_| vec![gid.as_raw()]);
    Some(Identity {
        name: u.name,
        uid: u.uid.as_raw(),
        gid: gid.as_raw(),
        groups,
    })
}

/// Names already looked up: each lookup reads /etc/passwd or /etc/group (through NSS), and a
/// run asks about the same few owners once per upstream. Names of ids do not change under a
/// running diagnosis; a long-lived `serve` process may show a renamed user's old name.
static USER_NAMES: std::sync::Mutex<Option<std::collections::HashMap<u32, String>>> =
    std::sync::Mutex::new(None);
static GROUP_NAMES: std::sync::Mutex<Option<std::collections::HashMap<u32, String>>> =
    std::sync::Mutex::new(None);

fn remembered(
    cache: &std::sync::Mutex<Option<std::collections::HashMap<u32, String>>>,
    id: u32,
    look_up: impl FnOnce() -> String,
) -> String {
    let mut guard = match cache.lock() {
        Ok(g) => g,
        Err(poisoned) => poisoned.into_inner(),
    };
    guard
        .get_or_insert_with(Default::default)
        .entry(id)
        .or_insert_with(look_up)
        .clone()
}

pub fn user_name(uid: u32) -> String {
    remembered(&USER_NAMES, uid, || {
        User::from_uid(Uid::from_raw(uid))
            .ok()
            .flatten()
            .map(|u| u.name)
            .unwrap_or_else(|| uid.to_string())
    })
}

pub fn group_name(gid: u32) -> String {
    remembered(&GROUP_NAMES, gid, || {
        Group::from_gid(Gid::from_raw(gid))
            .ok()
            .flatten()
            .map(|g| g.name)
            .unwrap_or_else(|| gid.to_string())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolves_root() {
        let id = identity_for("root", None).expect("root exists");
        assert_eq!((id.uid, id.gid), (0, 0));
        assert!(id.in_group(0));
        assert_eq!(user_name(0), "root");
        assert_eq!(group_name(0), "root");
    }

    #[test]
    fn unknown_user_is_none_and_unknown_ids_print_as_numbers() {
        assert!(identity_for("why502-no-such-user", None).is_none());
        assert_eq!(user_name(4_000_000_000), "4000000000");
    }
}

//! A process's cgroup from /proc/PID/cgroup, and the systemd unit it names.

use serde::Serialize;

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CgroupInfo {
    /// The unified (v2) path `0::/system.slice/php8.2-fpm.service`, else the `name=systemd`
    /// hierarchy's path (v1).
    pub path: String,
    /// The v1 memory controller's path, which the kernel's OOM lines name on v1 hosts.
    pub memory_path: Option<String>,
    /// The innermost `.service` or `.scope` on the path.
    pub unit: Option<String>,
}

/// Parse /proc/PID/cgroup: `hierarchy-id:controllers:path` lines.
pub fn parse_proc_cgroup(text: &str) -> Option<CgroupInfo> {
    let mut unified = None;
    let mut systemd = None;
    let mut memory = None;
    for line in text.lines() {
        let mut parts = line.splitn(3, ':');
        let (Some(id), Some(ctrl), Some(path)) = (parts.next(), parts.next(), parts.next()) else {
            continue;
        };
        if id == "0" && ctrl.is_empty() {
            unified = Some(path.to_string());
        } else if ctrl == "name=systemd" {
            systemd = Some(path.to_string());
        } else if ctrl.split(',').any(|c| c == "memory") {
            memory = Some(path.to_string());
        }
    }
    // On a hybrid host the unified hierarchy may be empty ("/") while systemd's v1 one names
    // the unit; prefer whichever names one.
    let path = match (unified, systemd) {
        (Some(u), Some(s)) if unit_of(&u).is_none() && unit_of(&s).is_some() => s,
        (Some(u), _) => u,
        (None, Some(s)) => s,
        (None, None) => memory.clone()?,
    };
    Some(CgroupInfo {
        unit: unit_of(&path),
        path,
        memory_path: memory,
    })
}

/// `/system.slice/php8.2-fpm.service` → `php8.2-fpm.service`; for a delegated subtree
/// (`.../user@1000.service/app.slice/app.service/x`) the innermost unit.
pub fn unit_of(path: &str) -> Option<String> {
    path.split('/')
        .rev()
        .find(|c| c.ends_with(".service") || c.ends_with(".scope"))
        .map(str::to_string)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v2_unit() {
        let c = parse_proc_cgroup("0::/system.slice/php8.2-fpm.service\n").unwrap();
        assert_eq!(c.unit.as_deref(), Some("php8.2-fpm.service"));
        assert_eq!(c.path, "/system.slice/php8.2-fpm.service");
        assert_eq!(c.memory_path, None);
    }

    #[test]
    fn nested_user_unit() {
        let c = parse_proc_cgroup(
            "0::/user.slice/user-1000.slice/user@1000.service/app.slice/myapp.service\n",
        )
        .unwrap();
        assert_eq!(c.unit.as_deref(), Some("myapp.service"));
    }

    /// Captured from a php-fpm master on this lab host (hybrid v1/v2, no systemd).
    #[test]
    fn hybrid_without_systemd() {
        let text = "9:name=systemd:/\n8:pids:/\n7:blkio:/\n6:freezer:/\n5:devices:/\n4:memory:/process_api/43654337c2a72fe2eb7d0af79119fca9\n3:cpuset:/\n2:cpuacct:/\n1:cpu:/\n0::/\n";
        let c = parse_proc_cgroup(text).unwrap();
        assert_eq!(c.path, "/");
        assert_eq!(c.unit, None);
        assert_eq!(
            c.memory_path.as_deref(),
            Some("/process_api/43654337c2a72fe2eb7d0af79119fca9")
        );
    }

    #[test]
    fn hybrid_with_systemd_v1() {
        let text =
            "12:memory:/system.slice/app.service\n1:name=systemd:/system.slice/app.service\n0::/\n";
        let c = parse_proc_cgroup(text).unwrap();
        assert_eq!(c.unit.as_deref(), Some("app.service"));
        assert_eq!(c.memory_path.as_deref(), Some("/system.slice/app.service"));
    }
}

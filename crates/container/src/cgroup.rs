//! A container's processes live in a cgroup the engine names after the container's id:
//! `/docker/<id>` (cgroupfs driver), `/system.slice/docker-<id>.scope` (systemd driver),
//! `/machine.slice/libpod-<id>.scope` or `/libpod_parent/libpod-<id>` (podman). Reading
//! `/proc/PID/cgroup` therefore tells whether a process is a container's, and whose.

/// The engine whose cgroup naming matched.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Runtime {
    Docker,
    Podman,
}

impl Runtime {
    pub fn label(self) -> &'static str {
        match self {
            Runtime::Docker => "docker",
            Runtime::Podman => "podman",
        }
    }
}

/// A container named by a process's cgroup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerRef {
    pub runtime: Runtime,
    /// The full 64-hex id.
    pub id: String,
    /// The cgroup path it was read from (what an OOM kill line calls `task_memcg`).
    pub cgroup: String,
}

/// The container that `/proc/PID/cgroup` (its whole text) places the process in. Any line
/// will do: every hierarchy names the same container (the unified line `0::` included).
pub fn container_of_cgroup(proc_pid_cgroup: &str) -> Option<ContainerRef> {
    proc_pid_cgroup.lines().find_map(|line| {
        let path = line.splitn(3, ':').nth(2)?;
        container_of_path(path)
    })
}

/// The container a cgroup path (an OOM line's `task_memcg`) names.
pub fn container_of_path(path: &str) -> Option<ContainerRef> {
    // Nested engines (docker in docker) put the inner one deepest: the last id counts.
    path.rsplit('/').find_map(|segment| {
        let (runtime, id) = if let Some(rest) = segment.strip_prefix("docker-") {
            (Runtime::Docker, rest.strip_suffix(".scope")?)
        } else if let Some(rest) = segment.strip_prefix("libpod-") {
            // `libpod-conmon-<id>.scope` is podman's monitor, not the container.
            (Runtime::Podman, rest.strip_suffix(".scope").unwrap_or(rest))
        } else {
            (Runtime::Docker, segment)
        };
        if !is_container_id(id) {
            return None;
        }
        // A bare 64-hex segment is docker's cgroupfs layout only under `/docker/`.
        if runtime == Runtime::Docker && !segment.starts_with("docker-") {
            let parent = path.strip_suffix(segment)?.trim_end_matches('/');
            if !parent.ends_with("/docker") && parent != "docker" {
                return None;
            }
        }
        Some(ContainerRef {
            runtime,
            id: id.to_string(),
            cgroup: path.to_string(),
        })
    })
}

fn is_container_id(s: &str) -> bool {
    s.len() == 64
        && s.bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "9357b618e80cc8e9004b62746b9e01aba244d59f9ada252af0d6f67691cae099";

    #[test]
    fn docker_with_cgroupfs_as_on_this_machine() {
        // Captured from a container of Debian's docker.io 20.10 (cgroup v1, cgroupfs).
        let text = format!("9:name=systemd:/docker/{ID}\n4:memory:/docker/{ID}\n0::/docker/{ID}\n");
        let c = container_of_cgroup(&text).expect("a container");
        assert_eq!(c.runtime, Runtime::Docker);
        assert_eq!(c.id, ID);
        assert_eq!(c.cgroup, format!("/docker/{ID}"));
    }

    #[test]
    fn docker_with_the_systemd_driver_and_podman() {
        let c =
            container_of_cgroup(&format!("0::/system.slice/docker-{ID}.scope\n")).expect("docker");
        assert_eq!((c.runtime, c.id.as_str()), (Runtime::Docker, ID));
        let p = container_of_cgroup(&format!("0::/machine.slice/libpod-{ID}.scope/container\n"))
            .expect("podman");
        assert_eq!((p.runtime, p.id.as_str()), (Runtime::Podman, ID));
        let p = container_of_path(&format!("/libpod_parent/libpod-{ID}")).expect("podman cgroupfs");
        assert_eq!(p.runtime, Runtime::Podman);
    }

    #[test]
    fn what_is_not_a_container() {
        for text in [
            "0::/system.slice/php8.2-fpm.service\n",
            "0::/user.slice/user-0.slice/session-3.scope\n",
            "4:memory:/\n",
            // A 64-hex name outside /docker is somebody's own cgroup.
            &format!("0::/mine/{ID}\n"),
            &format!("0::/machine.slice/libpod-conmon-{ID}.scope\n"),
            "0::/docker/not-an-id\n",
        ] {
            assert_eq!(container_of_cgroup(text), None, "{text}");
        }
    }

    #[test]
    fn docker_in_docker_names_the_innermost() {
        let outer = "a".repeat(64);
        let c = container_of_path(&format!("/docker/{outer}/docker/{ID}")).expect("inner");
        assert_eq!(c.id, ID);
    }
}

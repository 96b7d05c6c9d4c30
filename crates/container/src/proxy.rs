//! `docker-proxy`, the userland proxy dockerd starts for each published port: it holds the
//! host's listening socket and forwards to the container. Its argv is the only place outside
//! the engine that says which container address a host port leads to.

use std::net::IpAddr;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DockerProxy {
    pub proto: String,
    pub host_ip: Option<IpAddr>,
    pub host_port: u16,
    pub container_ip: IpAddr,
    pub container_port: u16,
}

impl DockerProxy {
    /// `docker-proxy -proto tcp -host-ip 127.0.0.1 -host-port 8080 -container-ip 172.17.0.2
    /// -container-port 80` (flags with one dash or two, `=` or a separate value). None for a
    /// command line that is not a docker-proxy's or lacks the container's address.
    pub fn from_cmdline(argv: &[String]) -> Option<DockerProxy> {
        let program = argv.first()?;
        if program.rsplit('/').next() != Some("docker-proxy") {
            return None;
        }
        let mut proto = "tcp".to_string();
        let (mut host_ip, mut host_port, mut container_ip, mut container_port) =
            (None, None, None, None);
        let mut args = argv[1..].iter();
        while let Some(arg) = args.next() {
            let flag = arg.trim_start_matches('-');
            let (name, inline) = match flag.split_once('=') {
                Some((n, v)) => (n, Some(v.to_string())),
                None => (flag, None),
            };
            let mut value = || inline.clone().or_else(|| args.next().cloned());
            match name {
                "proto" => proto = value()?,
                "host-ip" => host_ip = value()?.parse().ok(),
                "host-port" => host_port = value()?.parse().ok(),
                "container-ip" => container_ip = value()?.parse().ok(),
                "container-port" => container_port = value()?.parse().ok(),
                _ => {}
            }
        }
        Some(DockerProxy {
            proto,
            host_ip: host_ip.filter(|ip: &IpAddr| !ip.is_unspecified()),
            host_port: host_port?,
            container_ip: container_ip?,
            container_port: container_port?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn argv(s: &str) -> Vec<String> {
        s.split_whitespace().map(str::to_string).collect()
    }

    #[test]
    fn the_proxy_of_a_published_port_as_dockerd_starts_it() {
        // Captured from Debian's docker.io 20.10 for `-p 127.0.0.1:8080:80`.
        let p = DockerProxy::from_cmdline(&argv(
            "/usr/sbin/docker-proxy -proto tcp -host-ip 127.0.0.1 -host-port 8080 -container-ip 172.17.0.2 -container-port 80",
        ))
        .expect("a proxy");
        assert_eq!(p.proto, "tcp");
        assert_eq!(p.host_ip, Some("127.0.0.1".parse().expect("ip")));
        assert_eq!((p.host_port, p.container_port), (8080, 80));
        assert_eq!(p.container_ip, "172.17.0.2".parse::<IpAddr>().expect("ip"));
    }

    #[test]
    fn every_address_and_the_equals_form() {
        let p = DockerProxy::from_cmdline(&argv(
            "docker-proxy --proto=tcp --host-ip=0.0.0.0 --host-port=443 --container-ip=172.18.0.5 --container-port=8443",
        ))
        .expect("a proxy");
        assert_eq!(p.host_ip, None);
        assert_eq!((p.host_port, p.container_port), (443, 8443));
    }

    #[test]
    fn other_programs_and_half_lines_are_none() {
        assert_eq!(
            DockerProxy::from_cmdline(&argv("/usr/bin/socat -proto tcp")),
            None
        );
        assert_eq!(
            DockerProxy::from_cmdline(&argv("docker-proxy -proto tcp -host-port 8080")),
            None
        );
        assert_eq!(DockerProxy::from_cmdline(&[]), None);
    }
}

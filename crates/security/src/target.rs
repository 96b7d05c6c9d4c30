//! Who is denied (nginx) and what it was denied (the upstream).

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use serde::Serialize;

/// Where nginx connects for one upstream.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Destination {
    Unix(PathBuf),
    Tcp { ip: IpAddr, port: u16 },
}

impl Destination {
    pub fn describe(&self) -> String {
        match self {
            Destination::Unix(p) => format!("unix:{}", p.display()),
            Destination::Tcp {
                ip: IpAddr::V6(ip),
                port,
            } => format!("[{ip}]:{port}"),
            Destination::Tcp { ip, port } => format!("{ip}:{port}"),
        }
    }

    pub fn unix_path(&self) -> Option<&Path> {
        match self {
            Destination::Unix(p) => Some(p),
            Destination::Tcp { .. } => None,
        }
    }
}

/// nginx's processes as the logs name them: the pids of master and workers, and the command
/// name (`comm`, 15 bytes at most: `nginx`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NginxSubject {
    pub pids: Vec<u32>,
    pub comm: String,
}

impl NginxSubject {
    pub fn new(pids: &[u32]) -> Self {
        NginxSubject {
            pids: pids.to_vec(),
            comm: "nginx".to_string(),
        }
    }

    pub fn is(&self, pid: Option<u32>, comm: Option<&str>) -> bool {
        comm == Some(self.comm.as_str()) || pid.is_some_and(|p| self.pids.contains(&p))
    }
}

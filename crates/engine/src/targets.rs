//! The upstreams to diagnose: every `*_pass` target and every server of the `upstream` blocks
//! they name, deduplicated by address and protocol, each with the places that reference it.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;

use why502_model::{Protocol, Reference};
use why502_nginx::config::{Endpoint, NginxConfig, Pass, PassKind, PassSettings};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TargetAddr {
    Unix(PathBuf),
    Tcp { host: String, port: u16 },
}

#[derive(Debug, Clone)]
pub struct UpstreamTarget {
    /// `unix:/run/php/x.sock` or `127.0.0.1:9000` (`[::1]:9000`).
    pub address: String,
    pub addr: TargetAddr,
    /// The `upstream` block it belongs to.
    pub name: Option<String>,
    pub protocol: Protocol,
    pub tls: bool,
    pub references: Vec<Reference>,
    /// Server names of every server that references it (for `--server-name`).
    pub server_names: Vec<String>,
    /// The settings of the first reference (timeouts, buffer sizes).
    pub settings: PassSettings,
    /// nginx resolves the host per request through `resolver` (the pass has variables), not
    /// once at start-up through the system resolver.
    pub resolved_at_request_time: bool,
}

/// A pass whose target nginx decides at request time; listed in the report's notes.
#[derive(Debug, Clone)]
pub struct DynamicPass {
    pub directive: String,
    pub at: String,
}

pub fn collect_targets(config: &NginxConfig) -> (Vec<UpstreamTarget>, Vec<DynamicPass>) {
    let mut targets: Vec<UpstreamTarget> = Vec::new();
    let mut index = TargetIndex::default();
    let mut dynamic = Vec::new();
    for pass in &config.passes {
        let reference = reference_for(pass);
        let resolved: Vec<(TargetAddr, Option<String>)> = match &pass.endpoint {
            Endpoint::Unix { path } => vec![(TargetAddr::Unix(path.clone()), None)],
            Endpoint::Tcp { host, port } => vec![(
                TargetAddr::Tcp {
                    host: host.clone(),
                    port: *port,
                },
                None,
            )],
            Endpoint::Upstream { name } => {
                match config.upstreams.iter().find(|u| &u.name == name) {
                    Some(block) => block
                        .servers
                        .iter()
                        // nginx never sends to a server marked `down`.
                        .filter(|s| !s.down)
                        .filter_map(|s| match &s.endpoint {
                            Endpoint::Unix { path } => {
                                Some((TargetAddr::Unix(path.clone()), Some(name.clone())))
                            }
                            Endpoint::Tcp { host, port } => Some((
                                TargetAddr::Tcp {
                                    host: host.clone(),
                                    port: *port,
                                },
                                Some(name.clone()),
                            )),
                            _ => None,
                        })
                        .collect(),
                    None => Vec::new(),
                }
            }
            Endpoint::Dynamic { .. } => {
                dynamic.push(DynamicPass {
                    directive: format!("{} {}", pass.kind.directive(), pass.raw),
                    at: pass.loc.to_string(),
                });
                Vec::new()
            }
        };
        for (addr, name) in resolved {
            add_target(
                &mut targets,
                &mut index,
                pass,
                addr,
                name,
                reference.clone(),
            );
        }
    }
    (targets, dynamic)
}

/// Lookups that keep collecting linear in passes: a hosting config has thousands of servers
/// pointing at one backend, each with its names.
#[derive(Default)]
struct TargetIndex {
    by_key: HashMap<(String, Protocol), usize>,
    references: Vec<HashSet<Reference>>,
    server_names: Vec<HashSet<String>>,
}

fn add_target(
    targets: &mut Vec<UpstreamTarget>,
    index: &mut TargetIndex,
    pass: &Pass,
    addr: TargetAddr,
    name: Option<String>,
    reference: Reference,
) {
    let address = address_string(&addr);
    let protocol = protocol_of(pass.kind);
    let i = match index.by_key.get(&(address.clone(), protocol)) {
        Some(&i) => i,
        None => {
            targets.push(UpstreamTarget {
                address: address.clone(),
                addr,
                name: name.clone(),
                protocol,
                tls: matches!(pass.scheme.as_str(), "https" | "grpcs" | "suwsgi"),
                references: Vec::new(),
                server_names: Vec::new(),
                settings: pass.settings.clone(),
                resolved_at_request_time: pass.resolved_at_request_time,
            });
            index.references.push(HashSet::new());
            index.server_names.push(HashSet::new());
            let i = targets.len() - 1;
            index.by_key.insert((address, protocol), i);
            i
        }
    };
    let t = &mut targets[i];
    if t.name.is_none() {
        t.name = name;
    }
    if index.references[i].insert(reference.clone()) {
        t.references.push(reference);
    }
    for n in &pass.server_names {
        if index.server_names[i].insert(n.clone()) {
            t.server_names.push(n.clone());
        }
    }
}

impl UpstreamTarget {
    /// `proxy_`, `fastcgi_`...: the prefix of this upstream's nginx settings, for messages.
    pub fn protocol_settings_prefix(&self) -> &'static str {
        match self.protocol {
            Protocol::Http => "proxy_",
            Protocol::Fastcgi => "fastcgi_",
            Protocol::Uwsgi => "uwsgi_",
            Protocol::Scgi => "scgi_",
            Protocol::Grpc => "grpc_",
        }
    }
}

pub fn address_string(addr: &TargetAddr) -> String {
    match addr {
        TargetAddr::Unix(p) => format!("unix:{}", p.display()),
        TargetAddr::Tcp { host, port } if host.contains(':') => format!("[{host}]:{port}"),
        TargetAddr::Tcp { host, port } => format!("{host}:{port}"),
    }
}

fn protocol_of(kind: PassKind) -> Protocol {
    match kind {
        PassKind::Proxy => Protocol::Http,
        PassKind::Fastcgi => Protocol::Fastcgi,
        PassKind::Uwsgi => Protocol::Uwsgi,
        PassKind::Scgi => Protocol::Scgi,
        PassKind::Grpc => Protocol::Grpc,
    }
}

fn reference_for(pass: &Pass) -> Reference {
    Reference {
        file: pass.loc.file.display().to_string(),
        line: pass.loc.line,
        server_name: pass.server_name.clone(),
        location: pass.location.clone(),
        directive: format!("{} {}", pass.kind.directive(), pass.raw),
    }
}

/// `--upstream`: an address as the report prints it, a socket path, or an upstream block name.
pub fn matches_upstream_filter(t: &UpstreamTarget, filter: &str) -> bool {
    t.address == filter
        || t.name.as_deref() == Some(filter)
        || matches!(&t.addr, TargetAddr::Unix(p) if p.as_os_str() == filter)
}

/// `--server-name`: exact, or nginx's leading/trailing wildcard forms.
pub fn matches_server_filter(t: &UpstreamTarget, name: &str) -> bool {
    t.server_names.iter().any(|n| server_name_matches(n, name))
}

fn server_name_matches(pattern: &str, name: &str) -> bool {
    if pattern.eq_ignore_ascii_case(name) {
        return true;
    }
    if let Some(suffix) = pattern.strip_prefix("*.") {
        return name
            .to_ascii_lowercase()
            .ends_with(&format!(".{}", suffix.to_ascii_lowercase()));
    }
    if let Some(base) = pattern.strip_prefix('.') {
        let n = name.to_ascii_lowercase();
        let b = base.to_ascii_lowercase();
        return n == b || n.ends_with(&format!(".{b}"));
    }
    if let Some(prefix) = pattern.strip_suffix(".*") {
        return name
            .to_ascii_lowercase()
            .starts_with(&format!("{}.", prefix.to_ascii_lowercase()));
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_name_wildcards() {
        let cases = [
            ("shop.example", "shop.example", true),
            ("*.example.com", "a.example.com", true),
            ("*.example.com", "example.com", false),
            (".example.com", "example.com", true),
            (".example.com", "x.example.com", true),
            ("www.*", "www.example.org", true),
            ("shop.example", "blog.example", false),
        ];
        for (pattern, name, want) in cases {
            assert_eq!(
                server_name_matches(pattern, name),
                want,
                "{pattern} vs {name}"
            );
        }
    }

    #[test]
    fn ipv6_addresses_are_bracketed() {
        let a = TargetAddr::Tcp {
            host: "::1".into(),
            port: 9000,
        };
        assert_eq!(address_string(&a), "[::1]:9000");
    }
}

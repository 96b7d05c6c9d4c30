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

#[derive(Debug, Clone, PartialEq)]
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
#[derive(Debug, Clone, PartialEq)]
pub struct DynamicPass {
    pub directive: String,
    pub at: String,
}

pub fn collect_targets(config: &NginxConfig) -> (Vec<UpstreamTarget>, Vec<DynamicPass>) {
    collect_targets_where(config, |_, _| true)
}

/// The targets some server named `name` passes to (as `--server-name` keeps them), each with
/// every reference to it, as `collect_targets` gives them: only the passes to those addresses
/// are collected (a hosting server's other 499 sites cost an address each, not a target).
pub fn collect_targets_serving(
    config: &NginxConfig,
    name: &str,
) -> (Vec<UpstreamTarget>, Vec<DynamicPass>) {
    let blocks = blocks(config);
    let wanted: HashSet<(String, Protocol)> = config
        .passes
        .iter()
        .filter(|p| p.server_names.iter().any(|n| server_name_matches(n, name)))
        .flat_map(|p| {
            let protocol = protocol_of(p.kind);
            resolve_pass(&blocks, p)
                .into_iter()
                .map(move |(addr, _)| (address_string(&addr), protocol))
        })
        .collect();
    collect_targets_where(config, |address, protocol| {
        wanted.contains(&(address.to_string(), protocol))
    })
}

/// Every address the config passes to (the `referenced` set: a listener nginx uses elsewhere
/// is never another upstream's).
pub fn referenced_addresses(config: &NginxConfig) -> HashSet<String> {
    let blocks = blocks(config);
    config
        .passes
        .iter()
        .flat_map(|p| resolve_pass(&blocks, p))
        .map(|(addr, _)| address_string(&addr))
        .collect()
}

fn collect_targets_where(
    config: &NginxConfig,
    keep: impl Fn(&str, Protocol) -> bool,
) -> (Vec<UpstreamTarget>, Vec<DynamicPass>) {
    let blocks = blocks(config);
    let mut targets: Vec<UpstreamTarget> = Vec::new();
    let mut index = TargetIndex::default();
    let mut dynamic = Vec::new();
    for pass in &config.passes {
        if let Endpoint::Dynamic { .. } = &pass.endpoint {
            dynamic.push(DynamicPass {
                directive: format!("{} {}", pass.kind.directive(), pass.raw),
                at: pass.loc.to_string(),
            });
            continue;
        }
        let protocol = protocol_of(pass.kind);
        let mut reference = None;
        for (addr, name) in resolve_pass(&blocks, pass) {
            let address = address_string(&addr);
            if !keep(&address, protocol) {
                continue;
            }
            let reference = reference.get_or_insert_with(|| reference_for(pass));
            add_target(
                &mut targets,
                &mut index,
                pass,
                (address, addr),
                name,
                reference.clone(),
            );
        }
    }
    (targets, dynamic)
}

/// The `upstream` blocks by name, the first of a name as nginx (which refuses a duplicate)
/// would have it: one lookup per pass, not a scan of every block.
type Blocks<'a> = HashMap<&'a str, &'a why502_nginx::config::UpstreamBlock>;

fn blocks(config: &NginxConfig) -> Blocks<'_> {
    let mut map = Blocks::new();
    for b in &config.upstreams {
        map.entry(b.name.as_str()).or_insert(b);
    }
    map
}

/// Where a pass sends: its address, or its upstream block's servers not marked `down` (with
/// the block's name); nothing for a target chosen at request time.
fn resolve_pass(blocks: &Blocks<'_>, pass: &Pass) -> Vec<(TargetAddr, Option<String>)> {
    match &pass.endpoint {
        Endpoint::Unix { path } => vec![(TargetAddr::Unix(path.clone()), None)],
        Endpoint::Tcp { host, port } => vec![(
            TargetAddr::Tcp {
                host: host.clone(),
                port: *port,
            },
            None,
        )],
        Endpoint::Upstream { name } => match blocks.get(name.as_str()) {
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
        },
        Endpoint::Dynamic { .. } => Vec::new(),
    }
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
    (address, addr): (String, TargetAddr),
    name: Option<String>,
    reference: Reference,
) {
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

    fn config(text: &str) -> NginxConfig {
        let parsed = why502_nginx::config::parse_config_text(
            std::path::Path::new("/etc/nginx/nginx.conf"),
            text.as_bytes(),
            std::path::Path::new("/etc/nginx"),
            &why502_nginx::config::ParseLimits::default(),
        );
        NginxConfig::from_parsed(&parsed, std::path::Path::new("/usr/share/nginx"))
    }

    #[test]
    fn one_sites_targets_are_the_full_collection_narrowed() {
        // Shared backends (a pool two sites use, an upstream block), wildcard names, a
        // server marked down, a dynamic pass, and sites the view leaves out.
        let conf = config(
            r#"
            http {
                upstream app { server 127.0.0.1:8001; server 127.0.0.1:8002 down; server unix:/run/app.sock; }
                server { server_name shop.example www.shop.example;
                    location / { fastcgi_pass unix:/run/php/shared.sock; }
                    location /api/ { proxy_pass http://app; }
                    location /x/ { proxy_pass http://$host; } }
                server { server_name blog.example;
                    location / { fastcgi_pass unix:/run/php/shared.sock; }
                    location /old/ { proxy_pass http://127.0.0.1:8001; } }
                server { server_name *.tenant.example;
                    location / { proxy_pass http://127.0.0.1:9000; }
                    location /g/ { grpc_pass grpc://127.0.0.1:8001; } }
                server { server_name other.example;
                    location / { proxy_pass http://[::1]:7000; } }
            }
            "#,
        );
        let (all, all_dynamic) = collect_targets(&conf);
        assert!(all.len() >= 6, "the fixture collects its targets: {all:?}");
        for name in [
            "shop.example",
            "www.shop.example",
            "blog.example",
            "a.tenant.example",
            "other.example",
            "nobody.example",
        ] {
            let mut want = all.clone();
            want.retain(|t| matches_server_filter(t, name));
            let (got, dynamic) = collect_targets_serving(&conf, name);
            assert_eq!(got, want, "targets serving {name}");
            assert_eq!(dynamic, all_dynamic, "dynamic passes noted for {name}");
        }
        let referenced: HashSet<String> = all.iter().map(|t| t.address.clone()).collect();
        assert_eq!(referenced_addresses(&conf), referenced);
    }
}

//! Builds the 502-relevant [`NginxConfig`] from a parsed directive tree.
//!
//! `server`, `upstream` and `*_pass` are taken from the `http` block only: `stream`
//! proxies can't answer HTTP 502, and nginx keeps `http` and `stream` upstream names apart,
//! so a `stream` upstream must not turn an `http` pass into an `Upstream` endpoint.

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::time::Duration;

use super::endpoint::{parse_address, parse_pass_target, UpstreamNames, UPSTREAM_SERVER};
use super::model::{
    Directive, Endpoint, ErrorLogDest, ErrorLogTarget, Location, NginxConfig, ParsedConfig, Pass,
    PassKind, PassSettings, Server, UpstreamBlock, UpstreamServer, Word,
};
use super::parser::resolve_against;
use super::units::{parse_flag, parse_size, parse_time};
use super::variables::substitute_variables;

/// Blocks whose contents are data (`map` keys, MIME types...), not directives: a
/// `proxy_pass` or `error_log` in there is a key, not a directive.
const DATA_BLOCKS: &[&str] = &[
    "map",
    "geo",
    "types",
    "split_clients",
    "charset_map",
    "match",
];

/// Blocks a `*_pass` can sit in, below `http`.
const PASS_SCOPES: &[&str] = &["server", "location", "if", "limit_except"];

impl Default for PassSettings {
    /// nginx's defaults: one memory page of buffer (4k on x86_64), 60s timeouts, no
    /// upstream certificate verification, no SNI.
    fn default() -> Self {
        PassSettings {
            buffer_size: 4096,
            connect_timeout: Duration::from_secs(60),
            read_timeout: Duration::from_secs(60),
            send_timeout: Duration::from_secs(60),
            ssl_verify: false,
            ssl_server_name: false,
            ssl_name: None,
            ssl_trusted_certificate: None,
            ssl_protocols: None,
            resolver: Vec::new(),
            resolver_ipv6: true,
            resolver_timeout: Duration::from_secs(30),
        }
    }
}

impl NginxConfig {
    /// The model of a parsed configuration. Relative file names resolve as nginx resolves
    /// them: `error_log` and `pid` against `nginx_prefix` (`-p`, else the compiled-in
    /// `--prefix`), `*_ssl_trusted_certificate` against `parsed.prefix`, the directory of the
    /// main file. When no `error_log` is configured `error_logs` stays empty: the compiled-in
    /// default applies, which only the caller knows.
    pub fn from_parsed(parsed: &ParsedConfig, nginx_prefix: &Path) -> NginxConfig {
        let main = parsed.directives.as_slice();
        let conf_prefix = parsed.prefix.as_path();
        let http: Vec<&Directive> = main
            .iter()
            .filter(|d| d.name == "http" && d.block.is_some())
            .collect();
        let upstreams: Vec<UpstreamBlock> = children_named(&http, "upstream")
            .filter_map(upstream_block)
            .collect();
        let upstream_names = UpstreamNames::new(upstreams.iter().map(|u| u.name.as_str()));
        let user = first_named(main, "user");
        NginxConfig {
            user: user.and_then(|d| d.args.first().map(Word::to_string)),
            group: user.and_then(|d| d.args.get(1).map(Word::to_string)),
            error_logs: error_logs(main, nginx_prefix),
            servers: children_named(&http, "server")
                .filter(|d| d.block.is_some())
                .map(server)
                .collect(),
            passes: passes(&http, &upstream_names, conf_prefix),
            upstreams,
            resolvers: resolvers(main),
            pid_file: first_named(main, "pid")
                .and_then(|d| d.args.first())
                .map(|path| resolve_against(nginx_prefix, path)),
        }
    }
}

fn children(directive: &Directive) -> &[Directive] {
    directive.block.as_deref().unwrap_or_default()
}

fn first_named<'a>(directives: &'a [Directive], name: &str) -> Option<&'a Directive> {
    directives.iter().find(|d| d.name == name)
}

/// The directives called `name` directly inside any of `blocks`.
fn children_named<'a>(
    blocks: &'a [&'a Directive],
    name: &'a str,
) -> impl Iterator<Item = &'a Directive> + 'a {
    blocks
        .iter()
        .flat_map(|block| children(block))
        .filter(move |d| d.name == name)
}

/// Calls `visit` on every directive, at any depth, except inside data blocks, in source
/// order (a block's directives right after it). Iterative: blocks may nest deeper than a
/// thread's stack could recurse.
fn visit_all<'a>(directives: &'a [Directive], visit: &mut impl FnMut(&'a Directive)) {
    let mut stack = vec![directives.iter()];
    while let Some(level) = stack.last_mut() {
        let Some(directive) = level.next() else {
            stack.pop();
            continue;
        };
        visit(directive);
        let body = children(directive);
        if !body.is_empty() && !DATA_BLOCKS.contains(&directive.name.as_str()) {
            stack.push(body.iter());
        }
    }
}

fn error_logs(main: &[Directive], prefix: &Path) -> Vec<ErrorLogTarget> {
    let mut logs = Vec::new();
    visit_all(main, &mut |d| {
        if d.name == "error_log" {
            let in_main = main.iter().any(|m| std::ptr::eq(m, d));
            logs.extend(error_log(d, prefix).map(|mut log| {
                log.main = in_main;
                log
            }));
        }
    });
    logs
}

fn error_log(directive: &Directive, prefix: &Path) -> Option<ErrorLogTarget> {
    let target = directive.args.first()?;
    let dest = if target == "stderr" {
        ErrorLogDest::Stderr
    } else if let Some(spec) = target.strip_prefix("syslog:") {
        ErrorLogDest::Syslog { spec: spec.into() }
    } else if target.starts_with("memory:") {
        ErrorLogDest::Memory
    } else {
        ErrorLogDest::File {
            path: resolve_against(prefix, target),
        }
    };
    Some(ErrorLogTarget {
        dest,
        level: directive
            .args
            .get(1)
            .map(Word::to_string)
            .unwrap_or_else(|| "error".into()),
        loc: directive.loc.clone(),
        main: false,
    })
}

/// Every address of every `resolver`, once each, without `valid=`-style parameters.
fn resolvers(main: &[Directive]) -> Vec<String> {
    let mut addresses: Vec<String> = Vec::new();
    let mut seen: HashSet<&str> = HashSet::new();
    visit_all(main, &mut |d| {
        if d.name != "resolver" {
            return;
        }
        for arg in d.args.iter().filter(|arg| !arg.contains('=')) {
            if seen.insert(arg) {
                addresses.push(arg.to_string());
            }
        }
    });
    addresses
}

fn server(directive: &Directive) -> Server {
    let body = children(directive);
    let mut locations = Vec::new();
    collect_locations(body, &mut locations);
    Server {
        listen: body
            .iter()
            .filter(|d| d.name == "listen")
            .filter_map(|d| d.args.first().map(Word::to_string))
            .collect(),
        server_names: server_names(directive),
        locations,
        loc: directive.loc.clone(),
    }
}

fn server_names(server: &Directive) -> Vec<String> {
    children(server)
        .iter()
        .filter(|d| d.name == "server_name")
        .flat_map(|d| d.args.iter().map(Word::to_string))
        .collect()
}

/// Locations in source order, nested ones right after their parent.
fn collect_locations(body: &[Directive], out: &mut Vec<Location>) {
    let mut stack = vec![body.iter()];
    while let Some(level) = stack.last_mut() {
        let Some(directive) = level.next() else {
            stack.pop();
            continue;
        };
        if directive.name != "location" {
            continue;
        }
        out.push(Location {
            pattern: directive.args.join(" "),
            loc: directive.loc.clone(),
        });
        stack.push(children(directive).iter());
    }
}

fn upstream_block(directive: &Directive) -> Option<UpstreamBlock> {
    let name = directive.args.first()?;
    directive.block.as_ref()?;
    Some(UpstreamBlock {
        name: name.to_string(),
        servers: children(directive)
            .iter()
            .filter(|d| d.name == "server")
            .filter_map(upstream_server)
            .collect(),
        loc: directive.loc.clone(),
    })
}

/// `server ADDRESS [weight=N] [max_fails=N] [fail_timeout=T] [backup] [down] ...;` with
/// nginx's defaults for what is absent or invalid.
fn upstream_server(directive: &Directive) -> Option<UpstreamServer> {
    let (raw, params) = directive.args.split_first()?;
    let endpoint =
        parse_address(raw, UPSTREAM_SERVER, &UpstreamNames::default()).unwrap_or_else(|| {
            Endpoint::Dynamic {
                raw: raw.to_string(),
            }
        });
    let mut server = UpstreamServer {
        endpoint,
        raw: raw.to_string(),
        weight: 1,
        max_fails: 1,
        fail_timeout: Duration::from_secs(10),
        backup: false,
        down: false,
        loc: directive.loc.clone(),
    };
    for param in params {
        match param.split_once('=') {
            Some(("weight", value)) => {
                if let Some(weight) = parse_count(value).filter(|&w| w > 0) {
                    server.weight = weight;
                }
            }
            Some(("max_fails", value)) => {
                if let Some(max_fails) = parse_count(value) {
                    server.max_fails = max_fails;
                }
            }
            Some(("fail_timeout", value)) => {
                if let Some(timeout) = parse_time(value) {
                    server.fail_timeout = timeout;
                }
            }
            None if param == "backup" => server.backup = true,
            None if param == "down" => server.down = true,
            _ => {}
        }
    }
    Some(server)
}

/// A plain decimal count, like nginx's `ngx_atoi`.
fn parse_count(value: &str) -> Option<u32> {
    if value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    value.parse().ok()
}

fn pass_kind(name: &str) -> Option<PassKind> {
    KINDS.into_iter().find(|kind| kind.directive() == name)
}

fn passes(http: &[&Directive], upstreams: &UpstreamNames, prefix: &Path) -> Vec<Pass> {
    let mut walker = PassWalker {
        upstreams,
        prefix,
        scopes: Scopes::default(),
        servers: Vec::new(),
        locations: Vec::new(),
        passes: Vec::new(),
    };
    for block in http {
        walker.walk(block);
    }
    walker.passes
}

/// The pass modules, in the order of their settings in [`Scopes::nearest`].
const KINDS: [PassKind; 5] = [
    PassKind::Proxy,
    PassKind::Fastcgi,
    PassKind::Uwsgi,
    PassKind::Scgi,
    PassKind::Grpc,
];

/// The settings [`pass_settings`] reads, after the module's prefix (`proxy_read_timeout`).
const SUFFIXES: [&str; 9] = [
    "buffer_size",
    "connect_timeout",
    "read_timeout",
    "send_timeout",
    "ssl_verify",
    "ssl_server_name",
    "ssl_name",
    "ssl_trusted_certificate",
    "ssl_protocols",
];

/// Indexes of the module-independent settings, after every module's.
const RESOLVER: usize = KINDS.len() * SUFFIXES.len();
const RESOLVER_TIMEOUT: usize = RESOLVER + 1;
const SETTINGS: usize = RESOLVER_TIMEOUT + 1;

/// The index of the setting `name` in [`Scopes::nearest`], if a pass inherits it.
fn setting_index(name: &str) -> Option<usize> {
    match name {
        "resolver" => Some(RESOLVER),
        "resolver_timeout" => Some(RESOLVER_TIMEOUT),
        _ => {
            let (k, rest) = KINDS
                .iter()
                .enumerate()
                .find_map(|(k, kind)| Some((k, name.strip_prefix(kind.settings_prefix())?)))?;
            let suffix = SUFFIXES.iter().position(|s| *s == rest)?;
            Some(k * SUFFIXES.len() + suffix)
        }
    }
}

/// The index of `kind`'s setting `suffix` (one of [`SUFFIXES`]).
fn kind_setting(kind: PassKind, suffix: &str) -> usize {
    let k = KINDS.iter().position(|&x| x == kind).unwrap_or_default();
    let s = SUFFIXES
        .iter()
        .position(|&x| x == suffix)
        .expect("a suffix from SUFFIXES");
    k * SUFFIXES.len() + s
}

/// The enclosing blocks of the directive being walked, indexed so that the nearest block
/// setting something is found without scanning any block again: a block is scanned once
/// when it is entered, so the walk stays linear in the size of the tree however many
/// passes share a block.
struct Scopes<'a> {
    /// Per inherited setting ([`setting_index`]): the first directive of that name in each
    /// enclosing block that has one, outermost first.
    nearest: Vec<Vec<&'a Directive>>,
    /// Per variable (lowercase, without `$`): the last `set` of it in each enclosing block
    /// that has one, outermost first.
    sets: HashMap<String, Vec<&'a Directive>>,
    /// Per enclosing block, outermost first: the settings and variables it added above.
    added: Vec<(Vec<usize>, Vec<String>)>,
}

impl Default for Scopes<'_> {
    fn default() -> Self {
        Scopes {
            nearest: vec![Vec::new(); SETTINGS],
            sets: HashMap::new(),
            added: Vec::new(),
        }
    }
}

impl<'a> Scopes<'a> {
    fn enter(&mut self, block: &'a Directive) {
        let mut settings = Vec::new();
        let mut seen = [false; SETTINGS];
        let mut lasts: HashMap<String, &'a Directive> = HashMap::new();
        for directive in children(block) {
            if let Some(index) = setting_index(&directive.name) {
                if !std::mem::replace(&mut seen[index], true) {
                    self.nearest[index].push(directive);
                    settings.push(index);
                }
            } else if directive.name == "set" {
                if let Some(var) = directive.args.first().and_then(|v| v.strip_prefix('$')) {
                    lasts.insert(var.to_ascii_lowercase(), directive);
                }
            }
        }
        let mut variables = Vec::with_capacity(lasts.len());
        for (var, directive) in lasts {
            self.sets.entry(var.clone()).or_default().push(directive);
            variables.push(var);
        }
        self.added.push((settings, variables));
    }

    fn leave(&mut self) {
        let Some((names, variables)) = self.added.pop() else {
            return;
        };
        for index in names {
            self.nearest[index].pop();
        }
        for var in variables {
            if let Some(stack) = self.sets.get_mut(&var) {
                stack.pop();
            }
        }
    }

    /// The setting `index` ([`setting_index`]) in the innermost enclosing block that has
    /// it (its first there).
    fn nearest(&self, index: usize) -> Option<&'a Directive> {
        self.nearest.get(index)?.last().copied()
    }

    /// The value `set $name VALUE;` gives the variable, from the innermost block that sets
    /// it (its last `set` there, the one that runs last). `None` when no block sets it, or
    /// when that value itself has variables, which are only known per request.
    fn literal_set_value(&self, name: &str) -> Option<&'a str> {
        let set = self.sets.get(&name.to_ascii_lowercase())?.last()?;
        let value = set.args.get(1)?;
        (!value.contains('$')).then_some(value.as_str())
    }
}

/// Walks `http` → `server` → `location` / `if` ..., keeping the enclosing blocks, whose
/// directives are what a pass inherits.
struct PassWalker<'a> {
    upstreams: &'a UpstreamNames,
    prefix: &'a Path,
    scopes: Scopes<'a>,
    /// The names of each enclosing `server`, outermost first, with the depth (in walk
    /// frames) it was entered at.
    servers: Vec<(usize, Vec<String>)>,
    /// The pattern of each enclosing `location`, outermost first, with its depth.
    locations: Vec<(usize, String)>,
    passes: Vec<Pass>,
}

impl<'a> PassWalker<'a> {
    /// Visits `block` and the pass scopes inside it, in source order, with an explicit
    /// stack: locations may nest thousands deep.
    fn walk(&mut self, block: &'a Directive) {
        let mut stack: Vec<std::slice::Iter<'a, Directive>> = Vec::new();
        self.enter(block, stack.len());
        stack.push(children(block).iter());
        while let Some(level) = stack.last_mut() {
            let Some(directive) = level.next() else {
                stack.pop();
                self.leave(stack.len());
                continue;
            };
            if let Some(kind) = pass_kind(&directive.name) {
                if let Some(pass) = self.pass(directive, kind) {
                    self.passes.push(pass);
                }
            }
            if directive.block.is_some() && PASS_SCOPES.contains(&directive.name.as_str()) {
                self.enter(directive, stack.len());
                stack.push(children(directive).iter());
            }
        }
    }

    fn enter(&mut self, block: &'a Directive, depth: usize) {
        self.scopes.enter(block);
        match block.name.as_str() {
            "server" => self.servers.push((depth, server_names(block))),
            "location" => self.locations.push((depth, block.args.join(" "))),
            _ => {}
        }
    }

    fn leave(&mut self, depth: usize) {
        self.scopes.leave();
        if self.servers.last().is_some_and(|(d, _)| *d == depth) {
            self.servers.pop();
        }
        if self.locations.last().is_some_and(|(d, _)| *d == depth) {
            self.locations.pop();
        }
    }

    fn pass(&self, directive: &Directive, kind: PassKind) -> Option<Pass> {
        let raw = directive.args.first()?;
        // Unresolved variables stay as written, so the endpoint parser sees their `$` and
        // gives up on just the part they are in.
        let substituted = substitute_variables(raw, |name| self.scopes.literal_set_value(name));
        let (scheme, endpoint) = parse_pass_target(kind, &substituted, self.upstreams);
        let server_names = self
            .servers
            .last()
            .map(|(_, names)| names.clone())
            .unwrap_or_default();
        Some(Pass {
            kind,
            raw: raw.to_string(),
            scheme,
            endpoint: endpoint.unwrap_or_else(|| Endpoint::Dynamic {
                raw: raw.to_string(),
            }),
            loc: directive.loc.clone(),
            server_name: server_names.first().cloned(),
            server_names,
            location: self.locations.last().map(|(_, pattern)| pattern.clone()),
            settings: pass_settings(kind, &self.scopes, self.prefix),
            resolved_at_request_time: raw.contains('$'),
        })
    }
}

/// The pass module's settings as nginx merges them: the nearest enclosing block that
/// sets one wins; unset or invalid values take nginx's default.
fn pass_settings(kind: PassKind, scopes: &Scopes, prefix: &Path) -> PassSettings {
    let defaults = PassSettings::default();
    let setting = |suffix: &str| scopes.nearest(kind_setting(kind, suffix));
    let value = |suffix: &str| {
        setting(suffix)
            .and_then(|d| d.args.first())
            .map(Word::as_str)
    };
    let time = |suffix: &str, default| value(suffix).and_then(parse_time).unwrap_or(default);
    let flag = |suffix: &str, default| value(suffix).and_then(parse_flag).unwrap_or(default);
    let resolver = scopes.nearest(RESOLVER);
    PassSettings {
        buffer_size: value("buffer_size")
            .and_then(parse_size)
            .unwrap_or(defaults.buffer_size),
        connect_timeout: time("connect_timeout", defaults.connect_timeout),
        read_timeout: time("read_timeout", defaults.read_timeout),
        send_timeout: time("send_timeout", defaults.send_timeout),
        ssl_verify: flag("ssl_verify", defaults.ssl_verify),
        ssl_server_name: flag("ssl_server_name", defaults.ssl_server_name),
        ssl_name: value("ssl_name").map(str::to_owned),
        ssl_trusted_certificate: value("ssl_trusted_certificate")
            .map(|path| resolve_against(prefix, path)),
        ssl_protocols: setting("ssl_protocols")
            .map(|d| d.args.iter().map(Word::to_string).collect()),
        resolver: resolver
            .map(|d| {
                d.args
                    .iter()
                    .filter(|a| !a.contains('='))
                    .map(Word::to_string)
                    .collect()
            })
            .unwrap_or_default(),
        resolver_ipv6: resolver.is_none_or(|d| !d.args.iter().any(|a| a == "ipv6=off")),
        resolver_timeout: scopes
            .nearest(RESOLVER_TIMEOUT)
            .and_then(|d| d.args.first())
            .and_then(|v| parse_time(v))
            .unwrap_or(defaults.resolver_timeout),
    }
}

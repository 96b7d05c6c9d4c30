//! The parts of an nginx configuration that matter for 502s, with file:line on each.

use std::path::PathBuf;
use std::time::Duration;

use serde::Serialize;

/// Where a directive was written.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SourceLoc {
    pub file: PathBuf,
    pub line: u32,
}

impl std::fmt::Display for SourceLoc {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.file.display(), self.line)
    }
}

/// One directive as nginx reads it: name, arguments (quotes removed, escapes applied),
/// and its block when it has one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Directive {
    pub name: String,
    pub args: Vec<String>,
    pub loc: SourceLoc,
    /// `Some` for block directives (`http { ... }`); the body of `*_by_lua_block` is skipped
    /// and given as an empty block.
    pub block: Option<Vec<Directive>>,
}

/// A problem in the configuration text. Parsing goes on past it where it can.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ParseError {
    pub loc: SourceLoc,
    pub message: String,
}

impl std::fmt::Display for ParseError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.loc, self.message)
    }
}

/// Every file read (main config and includes) and the directive tree, includes spliced in.
#[derive(Debug, Clone, Default)]
pub struct ParsedConfig {
    pub main: PathBuf,
    pub prefix: PathBuf,
    pub directives: Vec<Directive>,
    pub files: Vec<PathBuf>,
    pub errors: Vec<ParseError>,
}

/// The module a `*_pass` belongs to; it decides the protocol and which `*_read_timeout` etc. apply.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum PassKind {
    Proxy,
    Fastcgi,
    Uwsgi,
    Scgi,
    Grpc,
}

impl PassKind {
    pub fn directive(self) -> &'static str {
        match self {
            PassKind::Proxy => "proxy_pass",
            PassKind::Fastcgi => "fastcgi_pass",
            PassKind::Uwsgi => "uwsgi_pass",
            PassKind::Scgi => "scgi_pass",
            PassKind::Grpc => "grpc_pass",
        }
    }
    /// The directive prefix of this module's settings (`proxy_`, `fastcgi_`...).
    pub fn settings_prefix(self) -> &'static str {
        match self {
            PassKind::Proxy => "proxy_",
            PassKind::Fastcgi => "fastcgi_",
            PassKind::Uwsgi => "uwsgi_",
            PassKind::Scgi => "scgi_",
            PassKind::Grpc => "grpc_",
        }
    }
}

/// Where a `*_pass` (or an `upstream` block's `server`) sends requests.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Endpoint {
    /// `unix:/run/php/php8.2-fpm.sock`
    Unix { path: PathBuf },
    /// An IP literal or a host name with its port (the scheme's default port when omitted).
    Tcp { host: String, port: u16 },
    /// The name of an `upstream` block defined in the config.
    Upstream { name: String },
    /// Contains variables that could not be resolved to a literal `set` value.
    Dynamic { raw: String },
}

/// Effective per-location settings for the pass's module, inherited http → server →
/// location, with nginx's defaults where unset.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PassSettings {
    pub buffer_size: u64,
    pub connect_timeout: Duration,
    pub read_timeout: Duration,
    pub send_timeout: Duration,
    pub ssl_verify: bool,
    pub ssl_server_name: bool,
    pub ssl_name: Option<String>,
    pub ssl_trusted_certificate: Option<PathBuf>,
    /// `*_ssl_protocols` as written (`None`: nginx's default, which depends on its version).
    pub ssl_protocols: Option<Vec<String>>,
    /// The nearest `resolver`'s addresses (as written, `127.0.0.53`, `[::1]:5353`): what nginx
    /// asks when the pass's target has variables. Empty: none is defined.
    pub resolver: Vec<String>,
    /// `ipv6=off` on that `resolver` makes nginx ask for A records only.
    pub resolver_ipv6: bool,
    pub resolver_timeout: Duration,
}

/// One `proxy_pass` / `fastcgi_pass` / ... as written, with its context.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Pass {
    pub kind: PassKind,
    /// The argument as written, e.g. `http://127.0.0.1:8000/api/`.
    pub raw: String,
    /// `http`, `https`, `grpc`, `grpcs`, `uwsgi`, `suwsgi`, or "" when the directive takes none.
    pub scheme: String,
    pub endpoint: Endpoint,
    pub loc: SourceLoc,
    /// The first `server_name` of the enclosing server, if any.
    pub server_name: Option<String>,
    /// All names of the enclosing server.
    pub server_names: Vec<String>,
    /// The enclosing `location`'s modifier and pattern as written (`~ \.php$`), if any.
    pub location: Option<String>,
    pub settings: PassSettings,
    /// The argument has variables: nginx picks (and resolves, through `resolver`) the target
    /// per request instead of at start-up.
    pub resolved_at_request_time: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct UpstreamServer {
    pub endpoint: Endpoint,
    pub raw: String,
    pub weight: u32,
    pub max_fails: u32,
    pub fail_timeout: Duration,
    pub backup: bool,
    pub down: bool,
    pub loc: SourceLoc,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct UpstreamBlock {
    pub name: String,
    pub servers: Vec<UpstreamServer>,
    pub loc: SourceLoc,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Location {
    /// Modifier and pattern as written: `/`, `= /health`, `~ \.php$`, `@fallback`.
    pub pattern: String,
    pub loc: SourceLoc,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Server {
    pub listen: Vec<String>,
    pub server_names: Vec<String>,
    pub locations: Vec<Location>,
    pub loc: SourceLoc,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ErrorLogDest {
    File { path: PathBuf },
    Syslog { spec: String },
    Stderr,
    Memory,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ErrorLogTarget {
    pub dest: ErrorLogDest,
    /// `error` when not given (nginx's default).
    pub level: String,
    pub loc: SourceLoc,
}

/// The 502-relevant model of a whole configuration.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct NginxConfig {
    /// `user www-data [group];` — None when the directive is absent (nginx then uses its
    /// compile-time default, usually `nobody`, when started as root).
    pub user: Option<String>,
    pub group: Option<String>,
    pub error_logs: Vec<ErrorLogTarget>,
    pub servers: Vec<Server>,
    pub upstreams: Vec<UpstreamBlock>,
    pub passes: Vec<Pass>,
    /// `resolver` addresses seen anywhere (for variable targets).
    pub resolvers: Vec<String>,
    /// `pid` directive, resolved against the prefix.
    pub pid_file: Option<PathBuf>,
}

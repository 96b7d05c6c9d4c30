//! The parts of an nginx configuration that matter for 502s, with file:line on each.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;

/// Where a directive was written. The file is shared by every directive written in it (a
/// hosting config has tens of thousands): one allocation per file, not per directive.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SourceLoc {
    pub file: Arc<Path>,
    pub line: u32,
}

impl SourceLoc {
    pub fn new(file: impl AsRef<Path>, line: u32) -> SourceLoc {
        SourceLoc {
            file: Arc::from(file.as_ref()),
            line,
        }
    }
}

impl Default for SourceLoc {
    fn default() -> Self {
        SourceLoc::new("", 0)
    }
}

impl std::fmt::Display for SourceLoc {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.file.display(), self.line)
    }
}

/// A directive's name or one of its arguments, as the lexer read it. A hosting server's
/// config writes the same words tens of thousands of times (`fastcgi_param`,
/// `$document_root` in every site's `include fastcgi_params`): the parser keeps one copy of
/// each distinct word, shared, so a directive costs no allocation per word and the tree a
/// fraction of the memory.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Word(Arc<str>);

impl Word {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::ops::Deref for Word {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

impl AsRef<str> for Word {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl AsRef<std::ffi::OsStr> for Word {
    fn as_ref(&self) -> &std::ffi::OsStr {
        std::ffi::OsStr::new(&*self.0)
    }
}

impl AsRef<Path> for Word {
    fn as_ref(&self) -> &Path {
        Path::new(&*self.0)
    }
}

/// `Hash` agrees with `str`'s (an `Arc<str>` hashes as its text), so a set of words is
/// looked up by `&str`.
impl std::borrow::Borrow<str> for Word {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl From<&str> for Word {
    fn from(text: &str) -> Word {
        Word(Arc::from(text))
    }
}

impl From<String> for Word {
    fn from(text: String) -> Word {
        Word(Arc::from(text))
    }
}

impl From<Word> for String {
    fn from(word: Word) -> String {
        word.0.to_string()
    }
}

impl PartialEq<str> for Word {
    fn eq(&self, other: &str) -> bool {
        &*self.0 == other
    }
}

impl PartialEq<&str> for Word {
    fn eq(&self, other: &&str) -> bool {
        &*self.0 == *other
    }
}

impl PartialEq<String> for Word {
    fn eq(&self, other: &String) -> bool {
        *self.0 == **other
    }
}

impl std::fmt::Display for Word {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::fmt::Debug for Word {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(&*self.0, f)
    }
}

impl Serialize for Word {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

/// One directive as nginx reads it: name, arguments (quotes removed, escapes applied),
/// and its block when it has one.
///
/// A tree may be nested as deep as [`ParseLimits::max_block_depth`](super::ParseLimits)
/// allows (far deeper than a thread's stack could recurse), so `Drop`, `Clone` and
/// `PartialEq` walk it with an explicit stack, and `Debug` stops after
/// [`DEBUG_DEPTH`] levels.
#[derive(Eq)]
pub struct Directive {
    pub name: Word,
    pub args: Vec<Word>,
    pub loc: SourceLoc,
    /// `Some` for block directives (`http { ... }`); the body of `*_by_lua_block` is skipped
    /// and given as an empty block.
    pub block: Option<Vec<Directive>>,
}

/// How many levels of blocks `Debug` prints before it only counts the directives.
pub const DEBUG_DEPTH: usize = 32;

impl Directive {
    /// This directive without its block (`None` stays `None`, a block becomes empty).
    fn shallow_clone(&self) -> Directive {
        Directive {
            name: self.name.clone(),
            args: self.args.clone(),
            loc: self.loc.clone(),
            block: self.block.as_ref().map(|_| Vec::new()),
        }
    }
}

impl Drop for Directive {
    fn drop(&mut self) {
        let Some(block) = self.block.take() else {
            return;
        };
        if block
            .iter()
            .all(|d| d.block.as_ref().is_none_or(Vec::is_empty))
        {
            return; // one level: dropping `block` recurses no further
        }
        // Detach every block before its owner drops, so no drop recurses.
        let mut pending = vec![block];
        while let Some(mut list) = pending.pop() {
            for directive in &mut list {
                if let Some(children) = directive.block.take() {
                    pending.push(children);
                }
            }
        }
    }
}

impl Clone for Directive {
    fn clone(&self) -> Self {
        /// A block being copied: the copy of its directive, the source children not yet
        /// copied and the copies made so far.
        struct Frame<'a> {
            copy: Directive,
            source: std::slice::Iter<'a, Directive>,
            children: Vec<Directive>,
        }
        let Some(block) = &self.block else {
            return self.shallow_clone();
        };
        let mut stack = vec![Frame {
            copy: self.shallow_clone(),
            source: block.iter(),
            children: Vec::with_capacity(block.len()),
        }];
        loop {
            let top = stack.last_mut().expect("the root frame is popped last");
            match top.source.next() {
                Some(child) => match &child.block {
                    Some(grandchildren) if !grandchildren.is_empty() => stack.push(Frame {
                        copy: child.shallow_clone(),
                        source: grandchildren.iter(),
                        children: Vec::with_capacity(grandchildren.len()),
                    }),
                    _ => top.children.push(child.shallow_clone()),
                },
                None => {
                    let Frame {
                        mut copy, children, ..
                    } = stack.pop().expect("non-empty");
                    copy.block = Some(children);
                    match stack.last_mut() {
                        Some(parent) => parent.children.push(copy),
                        None => return copy,
                    }
                }
            }
        }
    }
}

impl PartialEq for Directive {
    fn eq(&self, other: &Self) -> bool {
        let same_head = |a: &Directive, b: &Directive| {
            a.name == b.name
                && a.args == b.args
                && a.loc == b.loc
                && a.block.as_ref().map(Vec::len) == b.block.as_ref().map(Vec::len)
        };
        if !same_head(self, other) {
            return false;
        }
        let mut pending: Vec<(&[Directive], &[Directive])> = Vec::new();
        if let (Some(a), Some(b)) = (&self.block, &other.block) {
            pending.push((a, b));
        }
        while let Some((a, b)) = pending.pop() {
            for (x, y) in a.iter().zip(b) {
                if !same_head(x, y) {
                    return false;
                }
                if let (Some(xs), Some(ys)) = (&x.block, &y.block) {
                    pending.push((xs, ys));
                }
            }
        }
        true
    }
}

impl std::fmt::Debug for Directive {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        DebugAt {
            directive: self,
            depth: 0,
        }
        .fmt(f)
    }
}

/// `Debug` of a directive `depth` blocks down: as derived, up to [`DEBUG_DEPTH`].
struct DebugAt<'a> {
    directive: &'a Directive,
    depth: usize,
}

impl std::fmt::Debug for DebugAt<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let d = self.directive;
        let mut out = f.debug_struct("Directive");
        out.field("name", &d.name)
            .field("args", &d.args)
            .field("loc", &d.loc);
        match &d.block {
            None => out.field("block", &None::<()>),
            Some(block) if self.depth >= DEBUG_DEPTH && !block.is_empty() => out.field(
                "block",
                &format_args!("Some([..{} directive(s), not shown])", block.len()),
            ),
            Some(block) => {
                let depth = self.depth + 1;
                let list = DebugList(block, depth);
                out.field("block", &Some(list))
            }
        };
        out.finish()
    }
}

struct DebugList<'a>(&'a [Directive], usize);

impl std::fmt::Debug for DebugList<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(self.0.iter().map(|directive| DebugAt {
                directive,
                depth: self.1,
            }))
            .finish()
    }
}

/// Which of the parser's own bounds ([`ParseLimits`](super::ParseLimits)) a
/// [`ParseErrorKind::Limit`] error hit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ParseLimit {
    /// `max_file_bytes`: one file is larger.
    FileBytes,
    /// `max_total_bytes`: the files read add up to more.
    TotalBytes,
    /// `max_files`: more file reads.
    Files,
    /// `max_include_depth`: includes nested deeper.
    IncludeDepth,
    /// `max_token_bytes`, when set below what nginx itself accepts (a token nginx rejects
    /// too is a [`ParseErrorKind::Syntax`] error).
    TokenBytes,
    /// `max_block_depth`: blocks nested deeper.
    BlockDepth,
    /// `max_tokens`: more tokens in all.
    Tokens,
}

impl ParseLimit {
    /// The [`ParseLimits`](super::ParseLimits) field that sets this bound.
    pub fn field(self) -> &'static str {
        match self {
            ParseLimit::FileBytes => "max_file_bytes",
            ParseLimit::TotalBytes => "max_total_bytes",
            ParseLimit::Files => "max_files",
            ParseLimit::IncludeDepth => "max_include_depth",
            ParseLimit::TokenBytes => "max_token_bytes",
            ParseLimit::BlockDepth => "max_block_depth",
            ParseLimit::Tokens => "max_tokens",
        }
    }
}

impl std::fmt::Display for ParseLimit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ParseLimit::FileBytes => "file size",
            ParseLimit::TotalBytes => "total size",
            ParseLimit::Files => "file count",
            ParseLimit::IncludeDepth => "include nesting",
            ParseLimit::TokenBytes => "token size",
            ParseLimit::BlockDepth => "block nesting",
            ParseLimit::Tokens => "token count",
        })
    }
}

/// Whose fault a [`ParseError`] is.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ParseErrorKind {
    /// The configuration's own: nginx rejects it too (unterminated block or string,
    /// unexpected `}`, a missing or unreadable include, an include cycle, a token longer
    /// than nginx's 4 KiB buffer...).
    #[default]
    Syntax,
    /// Only this parser's bound was hit; nginx may well accept the configuration. What lies
    /// beyond the bound was not read, so the model is incomplete: never a verdict on the
    /// configuration.
    Limit(ParseLimit),
}

/// A problem in the configuration text. Parsing goes on past it where it can.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ParseError {
    pub loc: SourceLoc,
    pub message: String,
    pub kind: ParseErrorKind,
}

impl ParseError {
    /// An error in the configuration itself.
    pub fn syntax(loc: SourceLoc, message: impl Into<String>) -> ParseError {
        ParseError {
            loc,
            message: message.into(),
            kind: ParseErrorKind::Syntax,
        }
    }

    /// The parser stopped at its own `limit`.
    pub fn limit(loc: SourceLoc, limit: ParseLimit, message: impl Into<String>) -> ParseError {
        ParseError {
            loc,
            message: message.into(),
            kind: ParseErrorKind::Limit(limit),
        }
    }

    /// The parser's bound this error hit, if it is a [`ParseErrorKind::Limit`] error.
    pub fn limit_hit(&self) -> Option<ParseLimit> {
        match self.kind {
            ParseErrorKind::Limit(limit) => Some(limit),
            ParseErrorKind::Syntax => None,
        }
    }

    pub fn is_limit(&self) -> bool {
        self.limit_hit().is_some()
    }
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

impl ParsedConfig {
    /// The errors where the parser hit its own bounds: when there is one, the tree (and the
    /// model built from it) lacks what lies beyond, though nginx may accept the
    /// configuration.
    pub fn limit_errors(&self) -> impl Iterator<Item = &ParseError> + '_ {
        self.errors.iter().filter(|e| e.is_limit())
    }

    /// The errors in the configuration itself (what nginx rejects too).
    pub fn syntax_errors(&self) -> impl Iterator<Item = &ParseError> + '_ {
        self.errors.iter().filter(|e| !e.is_limit())
    }

    /// Whether the whole configuration was read: no limit was hit.
    pub fn is_complete(&self) -> bool {
        self.limit_errors().next().is_none()
    }
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
    /// In the main context: a log of the master process itself (its reloads, its workers'
    /// deaths), not only of the requests of one block.
    pub main: bool,
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

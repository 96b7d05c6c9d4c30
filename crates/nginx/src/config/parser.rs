//! Reads an nginx configuration and its includes into a directive tree.
//!
//! Only an unreadable main file is fatal. Every other problem (syntax, missing or
//! unreadable includes, limits) becomes a [`ParseError`] and parsing goes on as far as it
//! can, so a diagnosis can still use the parts of the configuration that make sense. An
//! error says whose fault it is ([`ParseErrorKind`](super::ParseErrorKind)): the
//! configuration's, or only this parser's bounds.
//!
//! Blocks and includes are kept on explicit stacks, never on the thread's stack, so the
//! depth of a configuration costs heap, not recursion: nginx itself accepts locations
//! nested thousands deep.

use std::borrow::Cow;
use std::collections::{HashMap, HashSet};
use std::fs::{self, File};
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::lexer::{LexError, Lexer, Token, TokenKind, Words};
use super::model::{Directive, ParseError, ParseLimit, ParsedConfig, SourceLoc, Word};

/// Bounds on what one parse may read, so a hostile or broken configuration (a huge file,
/// an include of `/dev/zero`, an include explosion) cannot exhaust time or memory.
///
/// The defaults are above what nginx itself loads in practice (measured with nginx 1.22:
/// a 56 MB configuration took `nginx -t` 211 s and 9.7 GB; locations nested about 12,800
/// deep or includes nested about 11,600 deep crash it on its 8 MiB stack; under the usual
/// 1,024-descriptor limit includes nest about 1,020 deep), so a configuration nginx
/// accepts is read whole. Hitting one is a [`ParseLimit`] error, not a verdict on the
/// configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseLimits {
    /// Largest single file read.
    pub max_file_bytes: u64,
    /// Largest sum of the sizes of every file read (a file included twice counts twice).
    pub max_total_bytes: u64,
    /// Deepest nesting of `include`s below the main file.
    pub max_include_depth: u32,
    /// Most file reads (a file included twice counts twice).
    pub max_files: usize,
    /// Longest single token. nginx reads through a 4 KiB buffer and rejects longer tokens
    /// itself, so above that this bound is only about memory.
    pub max_token_bytes: usize,
    /// Deepest nesting of blocks (`http { server { location {`), counted across includes.
    pub max_block_depth: usize,
    /// Most tokens over the whole parse; each one becomes a `String` in the tree, so this
    /// bounds memory where the byte limits alone would allow millions of tiny tokens. The
    /// tree takes about 80 bytes a token (91 at worst, `a;a;a;...`), so the default's
    /// 16 million (twice the 56 MB configuration above) cost at most about 1.5 GB.
    pub max_tokens: usize,
}

impl Default for ParseLimits {
    fn default() -> Self {
        ParseLimits {
            max_file_bytes: 256 << 20,
            max_total_bytes: 256 << 20,
            max_include_depth: 16_384,
            max_files: 100_000,
            max_token_bytes: 1 << 20,
            max_block_depth: 100_000,
            max_tokens: 16_000_000,
        }
    }
}

/// nginx reads its configuration through a buffer of this size (`NGX_CONF_BUFFER`) and
/// rejects a token that does not fit ("too long parameter").
const NGINX_MAX_TOKEN_BYTES: usize = 4096;

/// The main configuration file could not be read at all.
#[derive(Debug, thiserror::Error)]
#[error("cannot read nginx configuration {}: {source}", path.display())]
pub struct ConfigReadError {
    pub path: PathBuf,
    #[source]
    pub source: io::Error,
}

/// Parses the configuration at `main` and every file it includes.
///
/// Relative `include` paths (and globs) resolve against `prefix`, nginx's configuration
/// prefix (the directory of the main file in a default build, e.g. `/etc/nginx`).
/// Fails only when `main` itself cannot be opened or is not a regular file.
pub fn parse_config(
    main: &Path,
    prefix: &Path,
    limits: &ParseLimits,
) -> Result<ParsedConfig, ConfigReadError> {
    let mut parser = Parser::new(main, prefix, limits);
    let read_error = |source| ConfigReadError {
        path: main.to_path_buf(),
        source,
    };
    let size = match regular_file_size(main) {
        Ok(size) => size,
        Err(failure) => return Err(read_error(failure.into_io_error())),
    };
    if let Some((limit, message)) = parser.budget_refusal(main, size) {
        parser.limit_at(main, 1, limit, message);
        return Ok(parser.finish(Vec::new()));
    }
    let text = match read_bounded(main, limits.max_file_bytes) {
        Ok(Some(text)) => text,
        Ok(None) => {
            let message = too_large(main, limits.max_file_bytes);
            parser.limit_at(main, 1, ParseLimit::FileBytes, message);
            return Ok(parser.finish(Vec::new()));
        }
        Err(failure) => return Err(read_error(failure.into_io_error())),
    };
    let directives = parser.parse_main(main, Cow::Owned(text));
    Ok(parser.finish(directives))
}

/// Parses `text` as if it were the main file `main` (which is not read); includes are
/// read from disk relative to `prefix`. Handy for tests and for text from `nginx -T`.
pub fn parse_config_text(
    main: &Path,
    text: &[u8],
    prefix: &Path,
    limits: &ParseLimits,
) -> ParsedConfig {
    let mut parser = Parser::new(main, prefix, limits);
    if text.len() as u64 > limits.max_file_bytes {
        let message = too_large(main, limits.max_file_bytes);
        parser.limit_at(main, 1, ParseLimit::FileBytes, message);
        return parser.finish(Vec::new());
    }
    let directives = parser.parse_main(main, Cow::Borrowed(text));
    parser.finish(directives)
}

/// Why a file could not be read.
enum ReadFailure {
    Io(io::Error),
    NotRegularFile,
}

impl ReadFailure {
    fn into_io_error(self) -> io::Error {
        match self {
            ReadFailure::Io(error) => error,
            ReadFailure::NotRegularFile => {
                io::Error::new(io::ErrorKind::InvalidInput, "not a regular file")
            }
        }
    }
}

/// The size of `path` when it is a regular file (after following symlinks). Checked
/// before opening: opening a FIFO blocks and reading a device may never end.
fn regular_file_size(path: &Path) -> Result<u64, ReadFailure> {
    let metadata = fs::metadata(path).map_err(ReadFailure::Io)?;
    if !metadata.is_file() {
        return Err(ReadFailure::NotRegularFile);
    }
    Ok(metadata.len())
}

/// Reads at most `max_bytes` of `path`; `Ok(None)` when it is longer (it may have grown
/// since it was measured). Checks again, on the open file, that it is a regular file, in
/// case the path was swapped after `regular_file_size`.
fn read_bounded(path: &Path, max_bytes: u64) -> Result<Option<Vec<u8>>, ReadFailure> {
    let file = File::open(path).map_err(ReadFailure::Io)?;
    let metadata = file.metadata().map_err(ReadFailure::Io)?;
    if !metadata.is_file() {
        return Err(ReadFailure::NotRegularFile);
    }
    let mut text = Vec::new();
    file.take(max_bytes.saturating_add(1))
        .read_to_end(&mut text)
        .map_err(ReadFailure::Io)?;
    Ok((text.len() as u64 <= max_bytes).then_some(text))
}

fn too_large(path: &Path, limit: u64) -> String {
    format!(
        "\"{}\" is larger than {limit} bytes, not read: {}",
        path.display(),
        limit_note(ParseLimit::FileBytes)
    )
}

/// Says that a bound is this parser's, not nginx's.
fn limit_note(limit: ParseLimit) -> String {
    format!("this parser's {limit} limit (nginx may accept it)")
}

/// nginx's wording for a failed open: `open() "/x" failed (2: No such file or directory)`.
fn open_failed(path: &Path, error: &io::Error) -> String {
    format!(
        "open() \"{}\" failed ({})",
        path.display(),
        os_error_text(error)
    )
}

/// `2: No such file or directory`, or the error's text when it has no OS code.
fn os_error_text(error: &io::Error) -> String {
    match error.raw_os_error() {
        Some(code) => {
            let text = io::Error::from_raw_os_error(code).to_string();
            let suffix = format!(" (os error {code})");
            let reason = text.strip_suffix(&suffix).unwrap_or(&text);
            format!("{code}: {reason}")
        }
        None => error.to_string(),
    }
}

/// `path` as nginx resolves a configured file name: absolute as is, else under `base`.
pub(crate) fn resolve_against(base: &Path, path: &str) -> PathBuf {
    let path = Path::new(path);
    if path.is_absolute() {
        path.to_path_buf()
    } else {
        base.join(path)
    }
}

/// Whether nginx treats an include path as a glob pattern (`strpbrk(name, "*?[")`).
fn is_glob(path: &str) -> bool {
    path.contains(['*', '?', '['])
}

/// What a block is opened by.
enum BlockHead {
    /// `name args {`: the directive gets the block when it closes.
    Directive(Directive),
    /// A `{` without a name: reported, parsed so the braces stay balanced, then dropped.
    Anonymous,
}

/// A block being parsed: what opened it, its line, and where its directives start on
/// `Tree::stack`.
struct OpenBlock {
    head: BlockHead,
    line: u32,
    start: usize,
}

impl OpenBlock {
    fn name(&self) -> &str {
        match &self.head {
            BlockHead::Directive(directive) => &directive.name,
            BlockHead::Anonymous => "",
        }
    }
}

/// The tree being built: the blocks open around the current token, outermost first, across
/// includes, and the directives read so far in the top level and in each open block, on one
/// stack. A block that closes takes its own off the top of the stack into a `Vec` of exactly
/// their number: one allocation per block, where growing each block's own `Vec` cost a few
/// reallocations and a shrink.
#[derive(Default)]
struct Tree {
    stack: Vec<Directive>,
    open: Vec<OpenBlock>,
}

impl Tree {
    fn depth(&self) -> usize {
        self.open.len()
    }

    /// Adds a directive to the innermost open block (or the top level).
    fn push(&mut self, directive: Directive) {
        self.stack.push(directive);
    }

    fn open(&mut self, head: BlockHead, line: u32) {
        self.open.push(OpenBlock {
            head,
            line,
            start: self.stack.len(),
        });
    }

    /// Closes the innermost block and gives its directive to the enclosing one.
    fn close(&mut self) {
        let Some(OpenBlock { head, start, .. }) = self.open.pop() else {
            return;
        };
        let directives: Vec<Directive> = self.stack.drain(start..).collect();
        if let BlockHead::Directive(mut directive) = head {
            directive.block = Some(directives);
            self.push(directive);
        }
    }

    /// The top level, once every block is closed.
    fn into_top(mut self) -> Vec<Directive> {
        while !self.open.is_empty() {
            self.close();
        }
        self.stack
    }
}

/// The targets of an `include` not read yet, and where it was written.
struct PendingInclude {
    loc: SourceLoc,
    rest: std::vec::IntoIter<PathBuf>,
}

/// A file being parsed.
struct OpenFile<'t> {
    lexer: Lexer<'t>,
    /// The path its directives are attributed to (shared by all of them).
    path: Arc<Path>,
    /// `Tree::depth` when the file was opened: the blocks above it are this file's, and
    /// must close in it.
    base: usize,
    /// The include that read it (`None` for the main file), with its targets still to read.
    include: Option<PendingInclude>,
    /// A `}` ended a directive without `;`: it closes the enclosing block once that
    /// directive (an `include`'s files, maybe) is done.
    pending_close: bool,
}

/// A file on the include stack.
struct IncludeFrame {
    /// Canonical path, to recognise a cycle through symlinks or `..`.
    canonical: PathBuf,
    /// The path as configured, for messages.
    path: PathBuf,
}

/// What ended a directive's arguments.
enum DirectiveEnd {
    Eof,
    Semicolon,
    OpenBrace,
    /// A `}` on this line, without the `;` before it.
    CloseBrace(u32),
}

/// What the driver does after one step in the current file.
enum Step {
    Continue,
    /// An `include` directive to splice in where the current file is.
    Include {
        loc: SourceLoc,
        args: Vec<Word>,
    },
    /// The current file (or the token budget) ended.
    Eof,
}

struct Parser<'l> {
    limits: &'l ParseLimits,
    main: PathBuf,
    prefix: PathBuf,
    files: Vec<PathBuf>,
    seen_files: HashSet<PathBuf>,
    errors: Vec<ParseError>,
    include_stack: Vec<IncludeFrame>,
    /// The canonical paths on `include_stack`, with their index there.
    on_stack: HashMap<PathBuf, usize>,
    files_read: usize,
    bytes_read: u64,
    tokens: usize,
    /// Set when the token budget is exhausted: every lexer then reports end of input.
    halted: bool,
    /// Files already read, by the path as included, with their size and canonical path: a
    /// hosting config includes `fastcgi_params` once per site, and each inclusion must not
    /// cost a stat, a canonicalize and a read again. Only successful reads are kept.
    read_cache: HashMap<PathBuf, CachedFile>,
    /// The arguments of the directive being read (see `directive`).
    args_scratch: Vec<Word>,
    /// Every distinct word read, kept once.
    words: Words,
}

struct CachedFile {
    size: u64,
    canonical: PathBuf,
    text: Vec<u8>,
}

impl<'l> Parser<'l> {
    fn new(main: &Path, prefix: &Path, limits: &'l ParseLimits) -> Self {
        Parser {
            limits,
            main: main.to_path_buf(),
            prefix: prefix.to_path_buf(),
            files: Vec::new(),
            seen_files: HashSet::new(),
            errors: Vec::new(),
            include_stack: Vec::new(),
            on_stack: HashMap::new(),
            files_read: 0,
            bytes_read: 0,
            tokens: 0,
            halted: false,
            read_cache: HashMap::new(),
            args_scratch: Vec::new(),
            words: Words::default(),
        }
    }

    fn finish(self, directives: Vec<Directive>) -> ParsedConfig {
        ParsedConfig {
            main: self.main,
            prefix: self.prefix,
            directives,
            files: self.files,
            errors: self.errors,
        }
    }

    fn error_at(&mut self, file: &Path, line: u32, message: String) {
        let loc = SourceLoc::new(file, line);
        self.errors.push(ParseError::syntax(loc, message));
    }

    fn error_near(&mut self, loc: &SourceLoc, message: String) {
        self.errors.push(ParseError::syntax(loc.clone(), message));
    }

    fn limit_at(&mut self, file: &Path, line: u32, limit: ParseLimit, message: String) {
        let loc = SourceLoc::new(file, line);
        self.errors.push(ParseError::limit(loc, limit, message));
    }

    fn limit_near(&mut self, loc: &SourceLoc, limit: ParseLimit, message: String) {
        self.errors
            .push(ParseError::limit(loc.clone(), limit, message));
    }

    /// Why reading another file of `size` bytes would break a limit, if it would.
    fn budget_refusal(&self, path: &Path, size: u64) -> Option<(ParseLimit, String)> {
        let limits = self.limits;
        if self.files_read >= limits.max_files {
            let message = format!(
                "\"{}\" not read: more than {} configuration files, {}",
                path.display(),
                limits.max_files,
                limit_note(ParseLimit::Files)
            );
            return Some((ParseLimit::Files, message));
        }
        if size > limits.max_file_bytes {
            return Some((
                ParseLimit::FileBytes,
                too_large(path, limits.max_file_bytes),
            ));
        }
        if self.bytes_read.saturating_add(size) > limits.max_total_bytes {
            let message = format!(
                "\"{}\" not read: configuration files exceed {} bytes in total, {}",
                path.display(),
                limits.max_total_bytes,
                limit_note(ParseLimit::TotalBytes)
            );
            return Some((ParseLimit::TotalBytes, message));
        }
        None
    }

    /// Parses the main file and, through it, every include.
    fn parse_main<'t>(&mut self, main: &Path, text: Cow<'t, [u8]>) -> Vec<Directive> {
        let canonical = fs::canonicalize(main).unwrap_or_else(|_| main.to_path_buf());
        let mut tree = Tree::default();
        let mut files: Vec<OpenFile<'t>> = Vec::new();
        self.open_file(&mut files, &tree, main, canonical, text, None);
        while let Some(file) = files.last_mut() {
            match self.step(file, &mut tree) {
                Step::Continue => {}
                Step::Include { loc, args } => self.include(&mut files, &tree, loc, &args),
                Step::Eof => self.close_file(&mut files, &mut tree),
            }
        }
        // Every file closes its own blocks, so the tree is complete here.
        debug_assert_eq!(tree.depth(), 0);
        tree.into_top()
    }

    /// Records a successfully read file and makes it the one being parsed.
    fn open_file<'t>(
        &mut self,
        files: &mut Vec<OpenFile<'t>>,
        tree: &Tree,
        path: &Path,
        canonical: PathBuf,
        text: Cow<'t, [u8]>,
        include: Option<PendingInclude>,
    ) {
        self.files_read += 1;
        self.bytes_read = self.bytes_read.saturating_add(text.len() as u64);
        if self.seen_files.insert(path.to_path_buf()) {
            self.files.push(path.to_path_buf());
        }
        self.on_stack
            .insert(canonical.clone(), self.include_stack.len());
        self.include_stack.push(IncludeFrame {
            canonical,
            path: path.to_path_buf(),
        });
        files.push(OpenFile {
            lexer: Lexer::new(text, self.limits.max_token_bytes),
            path: Arc::from(path),
            base: tree.depth(),
            include,
            pending_close: false,
        });
    }

    /// The current file ended: reports and closes the blocks it left open, then goes on
    /// with the next target of the include that read it.
    fn close_file(&mut self, files: &mut Vec<OpenFile>, tree: &mut Tree) {
        let Some(file) = files.pop() else {
            return;
        };
        while tree.depth() > file.base {
            if let Some(open) = tree.open.last() {
                let (name, line) = (open.name().to_owned(), open.line);
                self.report_unclosed(&file, &name, line);
            }
            tree.close();
        }
        if let Some(frame) = self.include_stack.pop() {
            self.on_stack.remove(&frame.canonical);
        }
        if let Some(pending) = file.include {
            self.next_target(files, tree, pending);
        }
    }

    /// The next token of `file`, reporting (and skipping) lexer errors; `None` at the
    /// end of the file or once the token budget is spent.
    fn next_token(&mut self, file: &mut OpenFile) -> Option<Token> {
        loop {
            if self.halted {
                return None;
            }
            match file.lexer.next_token(&mut self.words)? {
                Ok(token) => {
                    self.tokens += 1;
                    if self.tokens > self.limits.max_tokens {
                        self.halted = true;
                        let message = format!(
                            "more than {} tokens in the configuration, parsing stopped: {}",
                            self.limits.max_tokens,
                            limit_note(ParseLimit::Tokens)
                        );
                        self.limit_at(&file.path, token.line, ParseLimit::Tokens, message);
                        return None;
                    }
                    return Some(token);
                }
                Err(LexError {
                    line,
                    message,
                    too_long,
                }) => match too_long {
                    // nginx would take it: only our bound refuses it
                    Some(len) if len <= NGINX_MAX_TOKEN_BYTES => {
                        let message = format!("{message}: {}", limit_note(ParseLimit::TokenBytes));
                        self.limit_at(&file.path, line, ParseLimit::TokenBytes, message);
                    }
                    _ => self.error_at(&file.path, line, message),
                },
            }
        }
    }

    /// Reads one directive (or stray token) of the current file into the tree.
    fn step(&mut self, file: &mut OpenFile, tree: &mut Tree) -> Step {
        if std::mem::take(&mut file.pending_close) {
            if tree.depth() > file.base {
                tree.close();
            }
            return Step::Continue;
        }
        let Some(token) = self.next_token(file) else {
            return Step::Eof;
        };
        match token.kind {
            TokenKind::CloseBrace if tree.depth() > file.base => tree.close(),
            TokenKind::CloseBrace => {
                self.error_at(&file.path, token.line, "unexpected \"}\"".into())
            }
            TokenKind::Semicolon => {
                self.error_at(&file.path, token.line, "unexpected \";\"".into())
            }
            TokenKind::OpenBrace => {
                self.error_at(&file.path, token.line, "unexpected \"{\"".into());
                self.open_block(file, tree, BlockHead::Anonymous, token.line);
            }
            TokenKind::Word { text, .. } => return self.directive(file, tree, text, token.line),
        }
        Step::Continue
    }

    fn report_unclosed(&mut self, file: &OpenFile, name: &str, line: u32) {
        if self.halted {
            return;
        }
        let message = format!(
            "unexpected end of file at line {}, expecting \"}}\" to close \"{name}\" block",
            file.lexer.line(),
        );
        self.error_at(&file.path, line, message);
    }

    /// Reads the arguments of the directive `name` up to its `;` or `{` and adds it to the
    /// tree (opening its block), or hands an `include` to the driver.
    fn directive(&mut self, file: &mut OpenFile, tree: &mut Tree, name: Word, line: u32) -> Step {
        let loc = SourceLoc {
            file: Arc::clone(&file.path),
            line,
        };
        // The arguments gather in a reused buffer and leave it in a `Vec` of exactly their
        // number: one allocation per directive (none without arguments).
        let mut scratch = std::mem::take(&mut self.args_scratch);
        scratch.clear();
        let end = loop {
            let Some(token) = self.next_token(file) else {
                break DirectiveEnd::Eof;
            };
            match token.kind {
                TokenKind::Word { text, .. } => scratch.push(text),
                TokenKind::Semicolon => break DirectiveEnd::Semicolon,
                TokenKind::OpenBrace => break DirectiveEnd::OpenBrace,
                TokenKind::CloseBrace => break DirectiveEnd::CloseBrace(token.line),
            }
        };
        // Not `mem::take`: that would hand the buffer's spare capacity to the tree.
        let mut args = Vec::with_capacity(scratch.len());
        args.append(&mut scratch);
        self.args_scratch = scratch;
        match end {
            DirectiveEnd::Eof => {
                if !self.halted {
                    let message = format!(
                        "unexpected end of file, expecting \";\" or \"}}\" after \"{name}\""
                    );
                    self.error_near(&loc, message);
                }
                simple(tree, name, args, loc)
            }
            DirectiveEnd::Semicolon => simple(tree, name, args, loc),
            DirectiveEnd::OpenBrace => {
                let mut directive = Directive {
                    name,
                    args,
                    loc,
                    block: None,
                };
                if is_lua_block(&directive.name) {
                    if let Err(LexError { line, message, .. }) = file.lexer.skip_lua_block(line) {
                        self.error_at(&file.path, line, message);
                    }
                    directive.block = Some(Vec::new());
                    tree.push(directive);
                } else {
                    self.open_block(file, tree, BlockHead::Directive(directive), line);
                }
                Step::Continue
            }
            DirectiveEnd::CloseBrace(at) => {
                let message = format!("unexpected \"}}\", expecting \";\" after \"{name}\"");
                self.error_at(&file.path, at, message);
                file.pending_close = true;
                simple(tree, name, args, loc)
            }
        }
    }

    /// Opens a block whose `{` was just read, unless blocks are already nested as deep as
    /// the limit allows: then it is reported and skipped (its directive keeps an empty
    /// block).
    fn open_block(&mut self, file: &mut OpenFile, tree: &mut Tree, head: BlockHead, line: u32) {
        if tree.depth() < self.limits.max_block_depth {
            tree.open(head, line);
            return;
        }
        let name = match &head {
            BlockHead::Directive(directive) => directive.name.as_str(),
            BlockHead::Anonymous => "",
        };
        let message = format!(
            "\"{name}\" block not read: blocks nested more than {} levels deep, {}",
            self.limits.max_block_depth,
            limit_note(ParseLimit::BlockDepth)
        );
        self.limit_at(&file.path, line, ParseLimit::BlockDepth, message);
        self.skip_block(file, name, line);
        if let BlockHead::Directive(mut directive) = head {
            directive.block = Some(Vec::new());
            tree.push(directive);
        }
    }

    /// Skips tokens through the `}` that closes the block `name` opened at `line`.
    fn skip_block(&mut self, file: &mut OpenFile, name: &str, line: u32) {
        let mut depth = 1usize;
        while let Some(token) = self.next_token(file) {
            match token.kind {
                TokenKind::OpenBrace => depth += 1,
                TokenKind::CloseBrace => {
                    depth -= 1;
                    if depth == 0 {
                        return;
                    }
                }
                _ => {}
            }
        }
        self.report_unclosed(file, name, line);
    }

    /// Starts splicing the files an `include` names into the tree where it stands.
    fn include(&mut self, files: &mut Vec<OpenFile>, tree: &Tree, loc: SourceLoc, args: &[Word]) {
        let [pattern] = args else {
            self.error_near(
                &loc,
                "invalid number of arguments in \"include\" directive".into(),
            );
            return;
        };
        let targets = self.include_targets(&loc, pattern);
        let pending = PendingInclude {
            loc,
            rest: targets.into_iter(),
        };
        self.next_target(files, tree, pending);
    }

    /// Opens the next target of `pending` that can be read; the ones that cannot are
    /// reported at the `include`.
    fn next_target<'t>(
        &mut self,
        files: &mut Vec<OpenFile<'t>>,
        tree: &Tree,
        mut pending: PendingInclude,
    ) {
        while let Some(path) = pending.rest.next() {
            if self.halted {
                return;
            }
            let loc = pending.loc.clone();
            let canonical = match self.check_includable(&path) {
                Ok(found) => found,
                Err((limit, message)) => {
                    match limit {
                        Some(limit) => self.limit_near(&loc, limit, message),
                        None => self.error_near(&loc, message),
                    }
                    continue;
                }
            };
            if let Some(text) = self.read_include(&loc, &path, &canonical) {
                self.open_file(
                    files,
                    tree,
                    &path,
                    canonical,
                    Cow::Owned(text),
                    Some(pending),
                );
                return;
            }
        }
    }

    /// The files an include names: one path, or the sorted matches of a glob (which may
    /// be none, as in nginx).
    fn include_targets(&mut self, loc: &SourceLoc, pattern: &str) -> Vec<PathBuf> {
        let full = resolve_against(&self.prefix, pattern);
        let full_text = full.to_string_lossy().into_owned();
        if !is_glob(&full_text) {
            return vec![full];
        }
        // glob(3) semantics: `*` matches neither `/` nor a leading dot.
        let options = glob::MatchOptions {
            case_sensitive: true,
            require_literal_separator: true,
            require_literal_leading_dot: true,
        };
        let entries = match glob::glob_with(&full_text, options) {
            Ok(entries) => entries,
            Err(error) => {
                let message = format!("invalid include pattern \"{full_text}\": {}", error.msg);
                self.error_near(loc, message);
                return Vec::new();
            }
        };
        // More matches than files may still be read would only be refused one by one:
        // stop collecting there, so a huge directory cannot fill memory.
        let room = self.limits.max_files.saturating_sub(self.files_read);
        let mut matches = Vec::new();
        for entry in entries {
            match entry {
                Ok(path) => matches.push(path),
                Err(error) => {
                    let message = open_failed(error.path(), error.error());
                    self.error_near(loc, message);
                }
            }
            if matches.len() > room {
                break;
            }
        }
        matches.sort();
        matches
    }

    /// The canonical path of `path` if it may be included here: a regular file, not
    /// already on the include stack, not too deep, and within the byte and file budgets.
    /// Otherwise why not, with the parser's limit it hit if it is one.
    fn check_includable(&self, path: &Path) -> Result<PathBuf, (Option<ParseLimit>, String)> {
        let depth = self.include_stack.len();
        if depth > self.limits.max_include_depth as usize {
            let message = format!(
                "\"{}\" not read: includes nested more than {} levels deep, {}",
                path.display(),
                self.limits.max_include_depth,
                limit_note(ParseLimit::IncludeDepth)
            );
            return Err((Some(ParseLimit::IncludeDepth), message));
        }
        let (size, canonical) = match self.read_cache.get(path) {
            Some(c) => (c.size, c.canonical.clone()),
            None => {
                let size = match regular_file_size(path) {
                    Ok(size) => size,
                    Err(ReadFailure::Io(error)) => return Err((None, open_failed(path, &error))),
                    Err(ReadFailure::NotRegularFile) => {
                        let message =
                            format!("\"{}\" is not a regular file, not read", path.display());
                        return Err((None, message));
                    }
                };
                (
                    size,
                    fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf()),
                )
            }
        };
        if let Some(&start) = self.on_stack.get(&canonical) {
            return Err((None, self.cycle_message(start, path)));
        }
        if let Some((limit, message)) = self.budget_refusal(path, size) {
            return Err((Some(limit), message));
        }
        Ok(canonical)
    }

    /// `include cycle: a.conf -> b.conf -> a.conf`, from where the cycle starts.
    fn cycle_message(&self, start: usize, path: &Path) -> String {
        let chain: Vec<String> = self.include_stack[start..]
            .iter()
            .map(|frame| frame.path.display().to_string())
            .chain(std::iter::once(path.display().to_string()))
            .collect();
        format!("include cycle: {}", chain.join(" -> "))
    }

    /// The text of an included file, or `None` after reporting why it could not be read.
    fn read_include(&mut self, loc: &SourceLoc, path: &Path, canonical: &Path) -> Option<Vec<u8>> {
        if let Some(c) = self.read_cache.get(path) {
            return Some(c.text.clone());
        }
        match read_bounded(path, self.limits.max_file_bytes) {
            Ok(Some(text)) => {
                self.read_cache.insert(
                    path.to_path_buf(),
                    CachedFile {
                        size: text.len() as u64,
                        canonical: canonical.to_path_buf(),
                        text: text.clone(),
                    },
                );
                return Some(text);
            }
            Ok(None) => {
                let message = too_large(path, self.limits.max_file_bytes);
                self.limit_near(loc, ParseLimit::FileBytes, message);
            }
            Err(ReadFailure::Io(error)) => self.error_near(loc, open_failed(path, &error)),
            Err(ReadFailure::NotRegularFile) => {
                let message = format!("\"{}\" is not a regular file, not read", path.display());
                self.error_near(loc, message);
            }
        }
        None
    }
}

/// Adds a directive without a block, or hands an `include` to the driver.
fn simple(tree: &mut Tree, name: Word, args: Vec<Word>, loc: SourceLoc) -> Step {
    if name == "include" {
        return Step::Include { loc, args };
    }
    tree.push(Directive {
        name,
        args,
        loc,
        block: None,
    });
    Step::Continue
}

/// `content_by_lua_block`, `init_worker_by_lua_block`, `set_by_lua_block`...: their body
/// is Lua, not nginx syntax.
fn is_lua_block(name: &str) -> bool {
    name.ends_with("_by_lua_block")
}

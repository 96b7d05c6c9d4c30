//! Reads an nginx configuration and its includes into a directive tree.
//!
//! Only an unreadable main file is fatal. Every other problem (syntax, missing or
//! unreadable includes, limits) becomes a [`ParseError`] and parsing goes on as far as it
//! can, so a diagnosis can still use the parts of the configuration that make sense.

use std::collections::HashSet;
use std::fs::{self, File};
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use super::lexer::{LexError, Lexer, Token, TokenKind};
use super::model::{Directive, ParseError, ParsedConfig, SourceLoc};

/// Bounds on what one parse may read, so a hostile or broken configuration (a huge file,
/// an include of `/dev/zero`, an include explosion) cannot exhaust time or memory.
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
    /// Longest single token.
    pub max_token_bytes: usize,
    /// Deepest nesting of blocks (`http { server { location {`), counted across includes.
    pub max_block_depth: usize,
    /// Most tokens over the whole parse; each one becomes a `String` in the tree, so this
    /// bounds memory where the byte limits alone would allow millions of tiny tokens.
    pub max_tokens: usize,
}

impl Default for ParseLimits {
    fn default() -> Self {
        ParseLimits {
            max_file_bytes: 16 << 20,
            max_total_bytes: 64 << 20,
            max_include_depth: 32,
            max_files: 4096,
            max_token_bytes: 1 << 20,
            max_block_depth: 100,
            max_tokens: 2_000_000,
        }
    }
}

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
    if let Some(message) = parser.budget_refusal(main, size) {
        parser.error_at(main, 1, message);
        return Ok(parser.finish(Vec::new()));
    }
    let text = match read_bounded(main, limits.max_file_bytes) {
        Ok(Some(text)) => text,
        Ok(None) => {
            parser.error_at(main, 1, too_large(main, limits.max_file_bytes));
            return Ok(parser.finish(Vec::new()));
        }
        Err(failure) => return Err(read_error(failure.into_io_error())),
    };
    let directives = parser.parse_read_file(main, &text);
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
        parser.error_at(main, 1, too_large(main, limits.max_file_bytes));
        return parser.finish(Vec::new());
    }
    let directives = parser.parse_read_file(main, text);
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
        "\"{}\" is larger than the {limit}-byte limit, not read",
        path.display()
    )
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

/// A block being parsed: its directive's name and line.
struct OpenBlock<'n> {
    name: &'n str,
    line: u32,
}

/// How a directive's argument list ended.
enum DirectiveEnd {
    /// `;` or a block: the enclosing block goes on.
    Complete,
    /// A `}` with no `;` before it: reported, and it closes the enclosing block.
    CloseBrace,
    /// End of file (or of the token budget) before `;`.
    Eof,
}

/// A file being parsed: its tokens and the path its directives are attributed to.
struct FileCursor<'t> {
    lexer: Lexer<'t>,
    path: PathBuf,
}

/// A file on the include stack.
struct IncludeFrame {
    /// Canonical path, to recognise a cycle through symlinks or `..`.
    canonical: PathBuf,
    /// The path as configured, for messages.
    path: PathBuf,
}

struct Parser<'l> {
    limits: &'l ParseLimits,
    main: PathBuf,
    prefix: PathBuf,
    files: Vec<PathBuf>,
    seen_files: HashSet<PathBuf>,
    errors: Vec<ParseError>,
    include_stack: Vec<IncludeFrame>,
    files_read: usize,
    bytes_read: u64,
    tokens: usize,
    /// Blocks open around the current token, counted across includes.
    block_depth: usize,
    /// Set when the token budget is exhausted: every lexer then reports end of input.
    halted: bool,
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
            files_read: 0,
            bytes_read: 0,
            tokens: 0,
            block_depth: 0,
            halted: false,
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
        self.errors.push(ParseError {
            loc: SourceLoc {
                file: file.to_path_buf(),
                line,
            },
            message,
        });
    }

    fn error_near(&mut self, loc: &SourceLoc, message: String) {
        self.errors.push(ParseError {
            loc: loc.clone(),
            message,
        });
    }

    /// Why reading another file of `size` bytes would break a limit, if it would.
    fn budget_refusal(&self, path: &Path, size: u64) -> Option<String> {
        let limits = self.limits;
        if self.files_read >= limits.max_files {
            return Some(format!(
                "\"{}\" not read: more than {} configuration files",
                path.display(),
                limits.max_files
            ));
        }
        if size > limits.max_file_bytes {
            return Some(too_large(path, limits.max_file_bytes));
        }
        if self.bytes_read.saturating_add(size) > limits.max_total_bytes {
            return Some(format!(
                "\"{}\" not read: configuration files exceed {} bytes in total",
                path.display(),
                limits.max_total_bytes
            ));
        }
        None
    }

    /// Records a successfully read file and parses it with `path` on the include stack.
    fn parse_read_file(&mut self, path: &Path, text: &[u8]) -> Vec<Directive> {
        self.files_read += 1;
        self.bytes_read = self.bytes_read.saturating_add(text.len() as u64);
        if self.seen_files.insert(path.to_path_buf()) {
            self.files.push(path.to_path_buf());
        }
        self.include_stack.push(IncludeFrame {
            canonical: fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf()),
            path: path.to_path_buf(),
        });
        let mut cursor = FileCursor {
            lexer: Lexer::new(text, self.limits.max_token_bytes),
            path: path.to_path_buf(),
        };
        let directives = self.parse_block(&mut cursor, None);
        self.include_stack.pop();
        directives
    }

    /// The next token of `cursor`, reporting (and skipping) lexer errors; `None` at the
    /// end of the file or once the token budget is spent.
    fn next_token(&mut self, cursor: &mut FileCursor) -> Option<Token> {
        loop {
            if self.halted {
                return None;
            }
            match cursor.lexer.next()? {
                Ok(token) => {
                    self.tokens += 1;
                    if self.tokens > self.limits.max_tokens {
                        self.halted = true;
                        let message = format!(
                            "more than {} tokens in the configuration, parsing stopped",
                            self.limits.max_tokens
                        );
                        self.error_at(&cursor.path, token.line, message);
                        return None;
                    }
                    return Some(token);
                }
                Err(LexError { line, message }) => self.error_at(&cursor.path, line, message),
            }
        }
    }

    /// Parses directives up to the `}` closing `open`, or to the end of the file when
    /// `open` is `None` (a file's top level).
    fn parse_block(&mut self, cursor: &mut FileCursor, open: Option<OpenBlock>) -> Vec<Directive> {
        let mut directives = Vec::new();
        loop {
            let Some(token) = self.next_token(cursor) else {
                if let Some(open) = open {
                    self.report_unclosed(cursor, &open);
                }
                return directives;
            };
            match token.kind {
                TokenKind::CloseBrace if open.is_some() => return directives,
                TokenKind::CloseBrace => {
                    self.error_at(&cursor.path, token.line, "unexpected \"}\"".into())
                }
                TokenKind::Semicolon => {
                    self.error_at(&cursor.path, token.line, "unexpected \";\"".into())
                }
                TokenKind::OpenBrace => {
                    // A block without a name: report it and drop its contents, but parse
                    // them so the braces stay balanced.
                    self.error_at(&cursor.path, token.line, "unexpected \"{\"".into());
                    let anonymous = OpenBlock {
                        name: "",
                        line: token.line,
                    };
                    self.nested_block(cursor, anonymous);
                }
                TokenKind::Word { text, .. } => {
                    match self.parse_directive(cursor, text, token.line, &mut directives) {
                        DirectiveEnd::Complete => {}
                        DirectiveEnd::CloseBrace if open.is_some() => return directives,
                        DirectiveEnd::CloseBrace => {}
                        DirectiveEnd::Eof => {
                            if let Some(open) = open {
                                self.report_unclosed(cursor, &open);
                            }
                            return directives;
                        }
                    }
                }
            }
        }
    }

    fn report_unclosed(&mut self, cursor: &FileCursor, open: &OpenBlock) {
        if self.halted {
            return;
        }
        let message = format!(
            "unexpected end of file at line {}, expecting \"}}\" to close \"{}\" block",
            cursor.lexer.line(),
            open.name
        );
        self.error_at(&cursor.path, open.line, message);
    }

    /// Parses the arguments (and block) of the directive `name` and appends it, or the
    /// directives it includes, to `out`.
    fn parse_directive(
        &mut self,
        cursor: &mut FileCursor,
        name: String,
        line: u32,
        out: &mut Vec<Directive>,
    ) -> DirectiveEnd {
        let loc = SourceLoc {
            file: cursor.path.clone(),
            line,
        };
        let mut args = Vec::new();
        loop {
            let Some(token) = self.next_token(cursor) else {
                if !self.halted {
                    let message = format!(
                        "unexpected end of file, expecting \";\" or \"}}\" after \"{name}\""
                    );
                    self.error_near(&loc, message);
                }
                self.push_simple(name, args, loc, out);
                return DirectiveEnd::Eof;
            };
            match token.kind {
                TokenKind::Word { text, .. } => args.push(text),
                TokenKind::Semicolon => {
                    self.push_simple(name, args, loc, out);
                    return DirectiveEnd::Complete;
                }
                TokenKind::OpenBrace => {
                    let block = self.parse_directive_block(cursor, &name, line);
                    out.push(Directive {
                        name,
                        args,
                        loc,
                        block: Some(block),
                    });
                    return DirectiveEnd::Complete;
                }
                TokenKind::CloseBrace => {
                    let message = format!("unexpected \"}}\", expecting \";\" after \"{name}\"");
                    self.error_at(&cursor.path, token.line, message);
                    self.push_simple(name, args, loc, out);
                    return DirectiveEnd::CloseBrace;
                }
            }
        }
    }

    /// Parses the block `open`, whose `{` was just read, unless blocks are already nested
    /// too deep: then it is reported and skipped. The tree is walked (and dropped)
    /// recursively, so its depth must stay bounded.
    fn nested_block(&mut self, cursor: &mut FileCursor, open: OpenBlock) -> Vec<Directive> {
        if self.block_depth >= self.limits.max_block_depth {
            let message = format!(
                "\"{}\" block not read: blocks nested more than {} levels deep",
                open.name, self.limits.max_block_depth
            );
            self.error_at(&cursor.path, open.line, message);
            self.skip_block(cursor, &open);
            return Vec::new();
        }
        self.block_depth += 1;
        let directives = self.parse_block(cursor, Some(open));
        self.block_depth -= 1;
        directives
    }

    /// Skips tokens through the `}` that closes `open`, without recursion.
    fn skip_block(&mut self, cursor: &mut FileCursor, open: &OpenBlock) {
        let mut depth = 1usize;
        while let Some(token) = self.next_token(cursor) {
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
        self.report_unclosed(cursor, open);
    }

    /// The body of a block directive whose `{` was just read.
    fn parse_directive_block(
        &mut self,
        cursor: &mut FileCursor,
        name: &str,
        line: u32,
    ) -> Vec<Directive> {
        if !is_lua_block(name) {
            return self.nested_block(cursor, OpenBlock { name, line });
        }
        if let Err(LexError { line, message }) = cursor.lexer.skip_lua_block(line) {
            self.error_at(&cursor.path, line, message);
        }
        Vec::new()
    }

    /// Appends a directive without a block; an `include` is replaced by what it includes.
    fn push_simple(
        &mut self,
        name: String,
        args: Vec<String>,
        loc: SourceLoc,
        out: &mut Vec<Directive>,
    ) {
        if name == "include" {
            self.include(&loc, &args, out);
        } else {
            out.push(Directive {
                name,
                args,
                loc,
                block: None,
            });
        }
    }

    /// Splices the directives of the files named by an `include` into `out`.
    fn include(&mut self, loc: &SourceLoc, args: &[String], out: &mut Vec<Directive>) {
        let [pattern] = args else {
            self.error_near(
                loc,
                "invalid number of arguments in \"include\" directive".into(),
            );
            return;
        };
        for path in self.include_targets(loc, pattern) {
            if self.halted {
                return;
            }
            let directives = self.parse_included_file(loc, &path);
            out.extend(directives);
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
        let mut matches = Vec::new();
        for entry in entries {
            match entry {
                Ok(path) => matches.push(path),
                Err(error) => {
                    let message = open_failed(error.path(), error.error());
                    self.error_near(loc, message);
                }
            }
        }
        matches.sort();
        matches
    }

    /// Reads and parses one included file, after checking every limit and the stack
    /// for a cycle; errors are attributed to the `include` at `loc`.
    fn parse_included_file(&mut self, loc: &SourceLoc, path: &Path) -> Vec<Directive> {
        match self.check_includable(path) {
            Ok(size) => match self.budget_refusal(path, size) {
                Some(message) => self.error_near(loc, message),
                None => return self.read_and_parse_include(loc, path),
            },
            Err(message) => self.error_near(loc, message),
        }
        Vec::new()
    }

    /// The size of `path` if it may be included here: a regular file, not already on the
    /// include stack, and not too deep.
    fn check_includable(&self, path: &Path) -> Result<u64, String> {
        let depth = self.include_stack.len();
        if depth > self.limits.max_include_depth as usize {
            return Err(format!(
                "\"{}\" not read: includes nested more than {} levels deep",
                path.display(),
                self.limits.max_include_depth
            ));
        }
        let size = match regular_file_size(path) {
            Ok(size) => size,
            Err(ReadFailure::Io(error)) => return Err(open_failed(path, &error)),
            Err(ReadFailure::NotRegularFile) => {
                return Err(format!(
                    "\"{}\" is not a regular file, not read",
                    path.display()
                ))
            }
        };
        let canonical = fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
        if let Some(start) = self
            .include_stack
            .iter()
            .position(|frame| frame.canonical == canonical)
        {
            return Err(self.cycle_message(start, path));
        }
        Ok(size)
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

    fn read_and_parse_include(&mut self, loc: &SourceLoc, path: &Path) -> Vec<Directive> {
        match read_bounded(path, self.limits.max_file_bytes) {
            Ok(Some(text)) => self.parse_read_file(path, &text),
            Ok(None) => {
                self.error_near(loc, too_large(path, self.limits.max_file_bytes));
                Vec::new()
            }
            Err(ReadFailure::Io(error)) => {
                self.error_near(loc, open_failed(path, &error));
                Vec::new()
            }
            Err(ReadFailure::NotRegularFile) => {
                let message = format!("\"{}\" is not a regular file, not read", path.display());
                self.error_near(loc, message);
                Vec::new()
            }
        }
    }
}

/// `content_by_lua_block`, `init_worker_by_lua_block`, `set_by_lua_block`...: their body
/// is Lua, not nginx syntax.
fn is_lua_block(name: &str) -> bool {
    name.ends_with("_by_lua_block")
}

//! Tokenizer for nginx configuration text.
//!
//! It follows crossplane's lexer (the reference re-implementation of nginx's
//! `ngx_conf_read_token`), working on bytes so invalid UTF-8 can never make it fail:
//!
//! * whitespace separates tokens; `;`, `{` and `}` are tokens of their own;
//! * `#` at the start of a token starts a comment that runs to the end of the line
//!   (`a#b` is one word, `"#"` is a quoted word);
//! * a backslash escapes the next byte, which then never acts as a delimiter
//!   (`\;`, `\ `); in unquoted words the backslash is kept, so `~ \.php$` stays `\.php$`;
//! * single or double quotes delimit a string that may span lines and contain delimiters;
//!   inside it only the escaped quote character itself (`\"` in `"..."`, `\'` in `'...'`)
//!   loses its backslash, every other escape (`\\`, `\n`, `\.`) is kept verbatim. This is
//!   crossplane's behaviour; nginx itself would also turn `\\`, `\t`, `\r`, `\n` into
//!   the characters they name, which matters for none of the values this crate models;
//! * a quote in the middle of a word is an ordinary character (`a"b`);
//! * `${` inside a word starts a variable name in braces that runs to the next `}` (or
//!   whitespace), so the braces are not block delimiters.
//!
//! Tokens are slices of the input, never built byte by byte, which keeps the lexer linear
//! even on a multi-megabyte single token.

use std::borrow::Cow;
use std::collections::HashSet;

use super::model::Word;

/// What a token is; words carry their text with quotes removed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum TokenKind {
    Word { text: Word, quoted: bool },
    Semicolon,
    OpenBrace,
    CloseBrace,
}

/// One token and the line it starts on (1-based).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Token {
    pub kind: TokenKind,
    pub line: u32,
}

/// A token the lexer had to reject; lexing goes on after it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct LexError {
    pub line: u32,
    pub message: String,
    /// The length of a token longer than `max_token_bytes`; `None` when it is malformed.
    pub too_long: Option<usize>,
}

/// How many bytes of an overlong token to quote in the error message.
const TOO_LONG_EXCERPT: usize = 32;

/// The distinct words of one parse, each kept once (see [`Word`]); shared by the lexers of
/// every file the parse reads.
#[derive(Default)]
pub(crate) struct Words {
    seen: HashSet<Word, why502_host::hash::FxBuild>,
}

impl Words {
    /// `bytes` as a word: the copy already kept, or a new one. `from_utf8`'s ASCII fast path
    /// first (a config is nearly always ASCII), the lossy walk only for bytes that need it.
    pub fn word(&mut self, bytes: &[u8]) -> Word {
        match std::str::from_utf8(bytes) {
            Ok(text) => self.text(text),
            Err(_) => self.text(&String::from_utf8_lossy(bytes)),
        }
    }

    fn text(&mut self, text: &str) -> Word {
        if let Some(word) = self.seen.get(text) {
            return word.clone();
        }
        let word = Word::from(text);
        self.seen.insert(word.clone());
        word
    }
}

pub(crate) struct Lexer<'a> {
    /// The main file's text is borrowed from the caller; included files' are owned.
    src: Cow<'a, [u8]>,
    pos: usize,
    line: u32,
    max_token_bytes: usize,
}

impl<'a> Lexer<'a> {
    pub fn new(src: impl Into<Cow<'a, [u8]>>, max_token_bytes: usize) -> Self {
        Lexer {
            src: src.into(),
            pos: 0,
            line: 1,
            max_token_bytes,
        }
    }

    /// The line the lexer is on: after the last token, the last line of the file.
    pub fn line(&self) -> u32 {
        self.line
    }

    fn peek(&self) -> Option<u8> {
        self.src.get(self.pos).copied()
    }

    fn peek_at(&self, offset: usize) -> Option<u8> {
        self.src.get(self.pos.saturating_add(offset)).copied()
    }

    /// Consumes one byte, counting the line it ends.
    fn bump(&mut self) -> Option<u8> {
        let byte = self.peek()?;
        self.pos += 1;
        if byte == b'\n' {
            self.line = self.line.saturating_add(1);
        }
        Some(byte)
    }

    /// Skips a run of bytes, none of them a newline, in one slice scan: the hot path on
    /// long tokens.
    fn skip_while(&mut self, in_run: impl Fn(u8) -> bool) {
        let rest = &self.src[self.pos..];
        self.pos += rest.iter().position(|&b| !in_run(b)).unwrap_or(rest.len());
    }

    /// Whitespace (an indented config is mostly that) in one pass over the slice, counting
    /// its newlines, instead of a `bump` a byte.
    fn skip_whitespace(&mut self) {
        let rest = &self.src[self.pos..];
        let run = rest
            .iter()
            .position(|&b| !is_space(b))
            .unwrap_or(rest.len());
        let newlines = rest[..run].iter().filter(|&&b| b == b'\n').count();
        self.pos += run;
        self.line = self
            .line
            .saturating_add(u32::try_from(newlines).unwrap_or(u32::MAX));
    }

    /// Skips to the end of the line, leaving the newline for `skip_whitespace` to count.
    fn skip_to_line_end(&mut self) {
        let rest = &self.src[self.pos..];
        self.pos += memchr::memchr(b'\n', rest).unwrap_or(rest.len());
    }

    fn special(&mut self, kind: TokenKind, line: u32) -> Result<Token, LexError> {
        self.pos += 1;
        Ok(Token { kind, line })
    }

    /// An unquoted word: everything up to whitespace or `;`, `{`, `}`.
    fn word(&mut self, line: u32, words: &mut Words) -> Result<Token, LexError> {
        let start = self.pos;
        let mut after_dollar = false;
        while let Some(byte) = self.peek() {
            match byte {
                b'\\' => {
                    self.bump();
                    after_dollar = self.bump() == Some(b'$');
                }
                b'{' if after_dollar => {
                    self.bump();
                    self.variable_in_braces();
                    after_dollar = false;
                }
                b';' | b'{' | b'}' => break,
                _ if is_space(byte) => break,
                b'$' => {
                    self.pos += 1;
                    after_dollar = true;
                }
                _ => {
                    self.skip_while(|b| !ends_word_run(b));
                    after_dollar = false;
                }
            }
        }
        let text = &self.src[start..self.pos];
        self.check_length(text, line)?;
        Ok(Token {
            kind: TokenKind::Word {
                text: words.word(text),
                quoted: false,
            },
            line,
        })
    }

    /// The rest of `${name}` after the `{`: up to and including `}`, or up to whitespace.
    fn variable_in_braces(&mut self) {
        while let Some(byte) = self.peek() {
            if is_space(byte) {
                return;
            }
            self.bump();
            let last = if byte == b'\\' {
                self.bump()
            } else {
                Some(byte)
            };
            if last == Some(b'}') {
                return;
            }
        }
    }

    /// A string in `quote`s; the token's line is the line of the opening quote.
    fn quoted(&mut self, quote: u8, line: u32, words: &mut Words) -> Result<Token, LexError> {
        self.pos += 1;
        let start = self.pos;
        let mut has_escape = false;
        loop {
            match self.peek() {
                None => {
                    return Err(LexError {
                        line,
                        message: "unexpected end of file, unterminated quoted string".into(),
                        too_long: None,
                    })
                }
                Some(b'\\') => {
                    has_escape = true;
                    self.bump();
                    self.bump();
                }
                Some(byte) if byte == quote => break,
                Some(b'\n') => {
                    self.bump();
                }
                Some(_) => self.skip_while(|b| b != quote && b != b'\\' && b != b'\n'),
            }
        }
        let body = &self.src[start..self.pos];
        self.pos += 1; // the closing quote
        self.check_length(body, line)?;
        let text = if has_escape {
            words.word(&unescape_quote(body, quote))
        } else {
            words.word(body)
        };
        Ok(Token {
            kind: TokenKind::Word { text, quoted: true },
            line,
        })
    }

    fn check_length(&self, text: &[u8], line: u32) -> Result<(), LexError> {
        if text.len() <= self.max_token_bytes {
            return Ok(());
        }
        let excerpt = &text[..TOO_LONG_EXCERPT.min(text.len())];
        Err(LexError {
            line,
            message: format!(
                "too long parameter \"{}...\" started ({} bytes, limit {})",
                String::from_utf8_lossy(excerpt),
                text.len(),
                self.max_token_bytes
            ),
            too_long: Some(text.len()),
        })
    }

    /// Skips the Lua code of a `*_by_lua_block` up to and including the `}` that closes
    /// it; the `{` has been consumed. Braces inside Lua strings and comments don't count.
    pub fn skip_lua_block(&mut self, open_line: u32) -> Result<(), LexError> {
        let mut depth = 1usize;
        while let Some(byte) = self.peek() {
            match byte {
                b'{' => {
                    self.bump();
                    depth += 1;
                }
                b'}' => {
                    self.bump();
                    depth -= 1;
                    if depth == 0 {
                        return Ok(());
                    }
                }
                b'"' | b'\'' => self.skip_lua_short_string(byte),
                b'[' => match self.lua_long_bracket_level() {
                    Some(level) => self.skip_lua_long_bracket(level),
                    None => {
                        self.bump();
                    }
                },
                b'-' if self.peek_at(1) == Some(b'-') => self.skip_lua_comment(),
                _ => {
                    self.bump();
                }
            }
        }
        Err(LexError {
            line: open_line,
            message: format!(
                "unexpected end of file at line {}, expecting \"}}\" to close the Lua block",
                self.line
            ),
            too_long: None,
        })
    }

    /// `'...'` or `"..."`. A Lua short string cannot span lines, so an unclosed one stops
    /// at the end of the line instead of swallowing the rest of the file.
    fn skip_lua_short_string(&mut self, quote: u8) {
        self.bump();
        while let Some(byte) = self.peek() {
            match byte {
                b'\\' => {
                    self.bump();
                    self.bump();
                }
                b'\n' => return,
                _ => {
                    self.bump();
                    if byte == quote {
                        return;
                    }
                }
            }
        }
    }

    /// `-- comment` to the end of the line, or a long comment `--[[ ... ]]` / `--[==[ ... ]==]`.
    fn skip_lua_comment(&mut self) {
        self.pos += 2;
        match self.lua_long_bracket_level() {
            Some(level) => self.skip_lua_long_bracket(level),
            None => self.skip_to_line_end(),
        }
    }

    /// At a `[`: the number of `=` when it opens a long bracket (`[[`, `[=[`, ...).
    fn lua_long_bracket_level(&self) -> Option<usize> {
        let rest = self.src.get(self.pos..)?;
        if rest.first() != Some(&b'[') {
            return None;
        }
        let level = rest[1..].iter().take_while(|&&b| b == b'=').count();
        (rest.get(level + 1) == Some(&b'[')).then_some(level)
    }

    /// Skips a long bracket of the given level from its opening `[` through its `]=*]`
    /// (or to the end of the input when it is not closed).
    fn skip_lua_long_bracket(&mut self, level: usize) {
        let open_len = level + 2;
        for _ in 0..open_len {
            self.bump();
        }
        while let Some(byte) = self.bump() {
            if byte == b']' && self.closes_long_bracket(level) {
                for _ in 0..=level {
                    self.bump();
                }
                return;
            }
        }
    }

    /// After a `]`: whether `=`×level `]` follows.
    fn closes_long_bracket(&self, level: usize) -> bool {
        let rest = &self.src[self.pos..];
        rest.len() > level && rest[..level].iter().all(|&b| b == b'=') && rest[level] == b']'
    }
}

impl Lexer<'_> {
    /// The next token, its words kept in `words`; `None` at the end of the input.
    pub fn next_token(&mut self, words: &mut Words) -> Option<Result<Token, LexError>> {
        loop {
            self.skip_whitespace();
            let byte = self.peek()?;
            let line = self.line;
            return Some(match byte {
                b'#' => {
                    self.skip_to_line_end();
                    continue;
                }
                b';' => self.special(TokenKind::Semicolon, line),
                b'{' => self.special(TokenKind::OpenBrace, line),
                b'}' => self.special(TokenKind::CloseBrace, line),
                b'"' | b'\'' => self.quoted(byte, line, words),
                _ => self.word(line, words),
            });
        }
    }
}

const SPACE: u8 = 1;
const ENDS_WORD_RUN: u8 = 2;

/// Byte classes, looked up once a byte in the lexer's hot loops instead of a chain of
/// comparisons.
static CLASSES: [u8; 256] = {
    let mut table = [0u8; 256];
    let spaces = [b' ', b'\t', b'\n', b'\r', 0x0b, 0x0c];
    let mut i = 0;
    while i < spaces.len() {
        table[spaces[i] as usize] = SPACE | ENDS_WORD_RUN;
        i += 1;
    }
    let ends = [b'\\', b'$', b';', b'{', b'}'];
    let mut i = 0;
    while i < ends.len() {
        table[ends[i] as usize] = ENDS_WORD_RUN;
        i += 1;
    }
    table
};

/// nginx's separators plus vertical tab and form feed, which crossplane also skips.
fn is_space(byte: u8) -> bool {
    CLASSES[byte as usize] & SPACE != 0
}

/// Bytes that end a run of ordinary word bytes: delimiters, escapes and `$` (which may
/// start `${`). Newlines are whitespace, so a run never spans lines.
fn ends_word_run(byte: u8) -> bool {
    CLASSES[byte as usize] & ENDS_WORD_RUN != 0
}

/// Drops the backslash of an escaped `quote`; every other escape stays as written.
fn unescape_quote(body: &[u8], quote: u8) -> Vec<u8> {
    let mut out = Vec::with_capacity(body.len());
    let mut bytes = body.iter().copied();
    while let Some(byte) = bytes.next() {
        if byte != b'\\' {
            out.push(byte);
            continue;
        }
        match bytes.next() {
            Some(next) if next == quote => out.push(quote),
            Some(next) => out.extend_from_slice(&[b'\\', next]),
            None => out.push(b'\\'),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every token (and error) of `lexer`, in order.
    fn all(mut lexer: Lexer<'_>) -> Vec<Result<Token, LexError>> {
        let mut words = Words::default();
        std::iter::from_fn(|| lexer.next_token(&mut words)).collect()
    }

    /// Renders tokens compactly: words as-is (quoted ones in «»), specials as themselves,
    /// errors as `!line`.
    fn lex(src: &str) -> Vec<String> {
        all(Lexer::new(src.as_bytes(), 1024))
            .into_iter()
            .map(|item| match item {
                Ok(Token {
                    kind: TokenKind::Word { text, quoted },
                    ..
                }) => {
                    if quoted {
                        format!("«{text}»")
                    } else {
                        text.to_string()
                    }
                }
                Ok(Token {
                    kind: TokenKind::Semicolon,
                    ..
                }) => ";".into(),
                Ok(Token {
                    kind: TokenKind::OpenBrace,
                    ..
                }) => "{".into(),
                Ok(Token {
                    kind: TokenKind::CloseBrace,
                    ..
                }) => "}".into(),
                Err(e) => format!("!{}", e.line),
            })
            .collect()
    }

    fn lines(src: &str) -> Vec<u32> {
        all(Lexer::new(src.as_bytes(), 1024))
            .into_iter()
            .map(|item| match item {
                Ok(token) => token.line,
                Err(e) => e.line,
            })
            .collect()
    }

    #[test]
    fn tokens() {
        let cases: &[(&str, &[&str])] = &[
            ("a b;", &["a", "b", ";"]),
            ("a{b;}", &["a", "{", "b", ";", "}"]),
            ("  \t\r\n a   ;", &["a", ";"]),
            // quotes
            (r#"a "b c" 'd;e';"#, &["a", "«b c»", "«d;e»", ";"]),
            (r#"a "";"#, &["a", "«»", ";"]),
            (r#"a "x\"y" 'x\'y';"#, &["a", r#"«x"y»"#, "«x'y»", ";"]),
            // only the own quote is unescaped (crossplane)
            (r#"a "x\'y" 'x\"y';"#, &["a", r#"«x\'y»"#, r#"«x\"y»"#, ";"]),
            (r#"a "x\\" b;"#, &["a", r#"«x\\»"#, "b", ";"]),
            (r#"a "\d+\.php";"#, &["a", r#"«\d+\.php»"#, ";"]),
            ("a \"b{\n}\";", &["a", "«b{\n}»", ";"]),
            // a quote inside a word is literal, a word ends after a closing quote
            (r#"a"b c" d;"#, &[r#"a"b"#, r#"c""#, "d", ";"]),
            (r#""a"b;"#, &["«a»", "b", ";"]),
            // unquoted backslash escapes keep the backslash and protect delimiters
            (r"location ~ \.php$ {", &["location", "~", r"\.php$", "{"]),
            (r"a b\;c d\ e;", &["a", r"b\;c", r"d\ e", ";"]),
            (r"a \{x\};", &["a", r"\{x\}", ";"]),
            // comments
            ("# whole line\na; # trailing\nb;", &["a", ";", "b", ";"]),
            ("a#b c;", &["a#b", "c", ";"]),
            (r##"a "#x" '#y';"##, &["a", "«#x»", "«#y»", ";"]),
            ("a;#c", &["a", ";"]),
            // variables in braces are not blocks
            ("set $a ${b}c;", &["set", "$a", "${b}c", ";"]),
            (
                "if ($x) { return 200 ${y}; }",
                &["if", "($x)", "{", "return", "200", "${y}", ";", "}"],
            ),
            ("a ${b;c} d;", &["a", "${b;c}", "d", ";"]),
            // `{` directly after a word that does not end in `$` is a block
            ("a b{", &["a", "b", "{"]),
            // unterminated quote
            ("a \"b;", &["a", "!1"]),
            ("", &[]),
            ("   \n# only a comment", &[]),
        ];
        for (src, want) in cases {
            assert_eq!(&lex(src), want, "lexing {src:?}");
        }
    }

    #[test]
    fn line_numbers() {
        let cases: &[(&str, &[u32])] = &[
            ("a;\nb;", &[1, 1, 2, 2]),
            ("a\n\n  b\n;", &[1, 3, 4]),
            ("# c\n# d\na;", &[3, 3]),
            // a quoted token's line is the line of its opening quote
            ("a \"x\ny\nz\" b;", &[1, 1, 3, 3]),
            ("a 'x\n' b;", &[1, 1, 2, 2]),
            // an escaped newline continues the word but still counts
            ("a\\\nb c;", &[1, 2, 2]),
            ("a {\n  b;\n}", &[1, 1, 2, 2, 3]),
        ];
        for (src, want) in cases {
            assert_eq!(&lines(src), want, "lines of {src:?}");
        }
    }

    #[test]
    fn overlong_token_is_an_error_and_lexing_resumes() {
        let src = format!("a {} b; \"{}\" c;", "x".repeat(100), "y".repeat(100));
        let items: Vec<_> = all(Lexer::new(src.as_bytes(), 50));
        let errors: Vec<_> = items.iter().filter_map(|i| i.as_ref().err()).collect();
        assert_eq!(errors.len(), 2, "{items:?}");
        assert!(errors[0].message.starts_with("too long parameter \"xxxx"));
        let words: Vec<_> = items
            .iter()
            .filter_map(|i| match i {
                Ok(Token {
                    kind: TokenKind::Word { text, .. },
                    ..
                }) => Some(text.as_str()),
                _ => None,
            })
            .collect();
        assert_eq!(words, ["a", "b", "c"]);
    }

    #[test]
    fn token_at_exact_limit_is_accepted() {
        let src = format!("{};", "x".repeat(50));
        let items: Vec<_> = all(Lexer::new(src.as_bytes(), 50));
        assert!(items.iter().all(Result::is_ok), "{items:?}");
    }

    #[test]
    fn invalid_utf8_is_replaced_not_fatal() {
        let src = b"a \xff\xfe b\xc3; \"q\x80\";";
        let words: Vec<_> = all(Lexer::new(src, 1024))
            .into_iter()
            .filter_map(|i| match i {
                Ok(Token {
                    kind: TokenKind::Word { text, .. },
                    ..
                }) => Some(text),
                _ => None,
            })
            .collect();
        assert_eq!(words, ["a", "\u{fffd}\u{fffd}", "b\u{fffd}", "q\u{fffd}"]);
    }

    #[test]
    fn trailing_backslash_at_eof() {
        assert_eq!(lex("a \\"), ["a", "\\"]);
        assert_eq!(lex("a \"b\\"), ["a", "!1"]);
    }

    /// Lexes `body` after a `{` as a Lua block and returns the tokens that follow it.
    fn after_lua(body: &str) -> (Result<(), LexError>, Vec<String>) {
        let mut lexer = Lexer::new(body.as_bytes(), 1024);
        let skipped = lexer.skip_lua_block(1);
        let rest = all(lexer)
            .into_iter()
            .map(|t| match t {
                Ok(Token {
                    kind: TokenKind::Word { text, .. },
                    ..
                }) => text.to_string(),
                Ok(_) => "<special>".into(),
                Err(e) => format!("!{}", e.message),
            })
            .collect();
        (skipped, rest)
    }

    #[test]
    fn lua_blocks() {
        let cases: &[&str] = &[
            " ngx.say('hi') } after",
            " local t = { a = { 1 } } } after",
            " ngx.say(\"}\") } after",
            " ngx.say('}}') } after",
            " ngx.say('it\\'s }') } after",
            " local s = [[ } ]] } after",
            " local s = [==[ ]] } ]=] ]==] } after",
            " -- } in a comment\n } after",
            " --[[ } \n } ]] } after",
            " --[=[ ]] } ]=] } after",
            " local a = t[b[1]] } after",
            " x = 1 - -1 } after",
            " s = 'unclosed\n } after",
        ];
        for body in cases {
            let (skipped, rest) = after_lua(body);
            assert_eq!(skipped, Ok(()), "{body:?}");
            assert_eq!(rest, ["after"], "{body:?}");
        }
    }

    #[test]
    fn unterminated_lua_block_reports_its_start() {
        let (skipped, rest) = after_lua(" ngx.say('}') \n--}\n");
        let err = skipped.unwrap_err();
        assert_eq!(err.line, 1);
        assert!(err.message.contains("at line 3"), "{}", err.message);
        assert!(rest.is_empty());
    }

    #[test]
    fn lua_block_counts_lines() {
        let mut lexer = Lexer::new(b"\n'a\n'\n[[\n]]\n--[[\n]]\n} x", 1024);
        assert_eq!(lexer.skip_lua_block(1), Ok(()));
        let next = lexer
            .next_token(&mut Words::default())
            .and_then(Result::ok)
            .map(|t| t.line);
        assert_eq!(next, Some(8));
    }
}

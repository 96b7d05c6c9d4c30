//! Parser and model tests on whole configurations, with files in temporary directories.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::*;

const MAIN: &str = "/etc/nginx/nginx.conf";
const PREFIX: &str = "/etc/nginx";

fn parse_text(text: &str) -> ParsedConfig {
    parse_config_text(
        Path::new(MAIN),
        text.as_bytes(),
        Path::new(PREFIX),
        &ParseLimits::default(),
    )
}

/// The tree in one line: `name args;` or `name args { ... }`.
fn render(directives: &[Directive]) -> String {
    directives
        .iter()
        .map(|d| {
            let head = std::iter::once(d.name.as_str())
                .chain(d.args.iter().map(Word::as_str))
                .collect::<Vec<_>>()
                .join(" ");
            match &d.block {
                None => format!("{head};"),
                Some(block) if block.is_empty() => format!("{head} {{}}"),
                Some(block) => format!("{head} {{ {} }}", render(block)),
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// Errors as `file-name:line: message`, with only the file's name to keep tests short.
fn errors(parsed: &ParsedConfig) -> Vec<String> {
    parsed
        .errors
        .iter()
        .map(|e| {
            let name = e.loc.file.file_name().unwrap_or_default().to_string_lossy();
            format!("{name}:{}: {}", e.loc.line, e.message)
        })
        .collect()
}

/// Every directive in the tree with its line, depth-first: `name@line`.
fn lines(directives: &[Directive]) -> Vec<String> {
    let mut out = Vec::new();
    for d in directives {
        out.push(format!("{}@{}", d.name, d.loc.line));
        out.extend(lines(d.block.as_deref().unwrap_or_default()));
    }
    out
}

struct TempConf {
    dir: tempfile::TempDir,
}

impl TempConf {
    fn new() -> Self {
        TempConf {
            dir: tempfile::tempdir().expect("create temp dir"),
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn write(&self, name: &str, text: impl AsRef<[u8]>) -> PathBuf {
        let path = self.path(name);
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent).expect("create dirs");
        }
        fs::write(&path, text).expect("write file");
        path
    }

    fn parse(&self, main: &str) -> ParsedConfig {
        self.parse_with(main, &ParseLimits::default())
    }

    fn parse_with(&self, main: &str, limits: &ParseLimits) -> ParsedConfig {
        parse_config(&self.path(main), self.dir.path(), limits).expect("main file readable")
    }
}

// ---------------------------------------------------------------- parser

#[test]
fn nested_blocks() {
    let parsed = parse_text(
        r#"
user www-data;
events { worker_connections 768; }
http {
    types { text/html html htm; }
    map $http_upgrade $connection_upgrade { default upgrade; '' close; }
    upstream app { server 127.0.0.1:8001 weight=3; }
    server {
        listen 80;
        location / {
            if ($request_method = POST) { return 405; }
            location ~ \.php$ { fastcgi_pass unix:/run/php.sock; }
        }
    }
}
"#,
    );
    assert_eq!(errors(&parsed), Vec::<String>::new());
    assert_eq!(
        render(&parsed.directives),
        "user www-data; events { worker_connections 768; } http { \
         types { text/html html htm; } \
         map $http_upgrade $connection_upgrade { default upgrade;  close; } \
         upstream app { server 127.0.0.1:8001 weight=3; } \
         server { listen 80; location / { \
         if ($request_method = POST) { return 405; } \
         location ~ \\.php$ { fastcgi_pass unix:/run/php.sock; } } } }"
    );
}

#[test]
fn directive_lines_are_the_lines_of_their_names() {
    let parsed = parse_text("user\n  nginx;\nhttp\n{\n  server {\n\n    listen\n 80;\n  }\n}\n");
    assert_eq!(
        lines(&parsed.directives),
        ["user@1", "http@3", "server@5", "listen@7"]
    );
    assert!(parsed
        .directives
        .iter()
        .all(|d| *d.loc.file == *Path::new(MAIN)));
}

#[test]
fn quoted_arguments_and_comments() {
    let parsed = parse_text(
        "log_format main '$remote_addr \"$request\"' \"a;b{c}\"; # comment ; {\n\
         add_header X-Hash \"#not-a-comment\";\n",
    );
    assert_eq!(errors(&parsed), Vec::<String>::new());
    assert_eq!(
        parsed.directives[0].args,
        ["main", "$remote_addr \"$request\"", "a;b{c}"]
    );
    assert_eq!(parsed.directives[1].args, ["X-Hash", "#not-a-comment"]);
}

#[test]
fn syntax_errors() {
    let cases: &[(&str, &str, &[&str])] = &[
        (
            "http {\n  server {\n    listen 80;\n  }\n",
            "http { server { listen 80; } }",
            &["nginx.conf:1: unexpected end of file at line 5, expecting \"}\" to close \"http\" block"],
        ),
        (
            "http {\n  server {\n    listen 80;\n",
            "http { server { listen 80; } }",
            &[
                "nginx.conf:2: unexpected end of file at line 4, expecting \"}\" to close \"server\" block",
                "nginx.conf:1: unexpected end of file at line 4, expecting \"}\" to close \"http\" block",
            ],
        ),
        (
            "a;\n}\nb;",
            "a; b;",
            &["nginx.conf:2: unexpected \"}\""],
        ),
        (
            "a;\n;\nb;",
            "a; b;",
            &["nginx.conf:2: unexpected \";\""],
        ),
        (
            "http { server { listen 80 } }\nuser x;",
            "http { server { listen 80; } } user x;",
            &["nginx.conf:1: unexpected \"}\", expecting \";\" after \"listen\""],
        ),
        (
            "user x;\npid /run/nginx.pid",
            "user x; pid /run/nginx.pid;",
            &["nginx.conf:2: unexpected end of file, expecting \";\" or \"}\" after \"pid\""],
        ),
        (
            "{ a; }\nb;",
            "b;",
            &["nginx.conf:1: unexpected \"{\""],
        ),
        (
            "a \"unterminated;\nb;",
            "a;",
            &[
                "nginx.conf:1: unexpected end of file, unterminated quoted string",
                "nginx.conf:1: unexpected end of file, expecting \";\" or \"}\" after \"a\"",
            ],
        ),
    ];
    for (text, tree, want) in cases {
        let parsed = parse_text(text);
        assert_eq!(render(&parsed.directives), *tree, "tree of {text:?}");
        assert_eq!(errors(&parsed), *want, "errors of {text:?}");
        // what nginx rejects too is the configuration's fault, not a limit
        assert!(parsed.is_complete(), "{text:?}");
        assert!(parsed
            .errors
            .iter()
            .all(|e| e.kind == ParseErrorKind::Syntax));
    }
}

#[test]
fn lua_block_bodies_are_skipped() {
    let parsed = parse_text(
        r#"
http {
    init_by_lua_block {
        local t = { a = "}" , b = '{' }  -- } in a comment
        --[[ long comment } ]]
        local s = [==[ ]] } ]==]
    }
    server {
        location /lua {
            set_by_lua_block $x { return "}" }
            content_by_lua_block { ngx.say("{") }
            proxy_pass http://127.0.0.1:8000;
        }
    }
}
"#,
    );
    assert_eq!(errors(&parsed), Vec::<String>::new());
    assert_eq!(
        render(&parsed.directives),
        "http { init_by_lua_block {} server { location /lua { set_by_lua_block $x {} \
         content_by_lua_block {} proxy_pass http://127.0.0.1:8000; } } }"
    );
    assert_eq!(
        lines(&parsed.directives),
        [
            "http@2",
            "init_by_lua_block@3",
            "server@8",
            "location@9",
            "set_by_lua_block@10",
            "content_by_lua_block@11",
            "proxy_pass@12"
        ]
    );
}

#[test]
fn unterminated_lua_block_is_an_error() {
    let parsed = parse_text("http {\n  content_by_lua_block {\n    ngx.say('}')\n");
    assert_eq!(
        errors(&parsed),
        [
            "nginx.conf:2: unexpected end of file at line 4, expecting \"}\" to close the Lua block",
            "nginx.conf:1: unexpected end of file at line 4, expecting \"}\" to close \"http\" block",
        ]
    );
}

#[test]
fn invalid_utf8_does_not_stop_parsing() {
    let parsed = parse_config_text(
        Path::new(MAIN),
        b"server_name caf\xe9.example \xff\xfe;\nuser nginx;\n",
        Path::new(PREFIX),
        &ParseLimits::default(),
    );
    assert_eq!(errors(&parsed), Vec::<String>::new());
    assert_eq!(
        render(&parsed.directives),
        "server_name caf\u{fffd}.example \u{fffd}\u{fffd}; user nginx;"
    );
}

/// The same word written twice, even in two files, is one copy; the directives of a file
/// share its path. (The memory of a 500-site config rests on this.)
#[test]
fn repeated_words_and_a_files_path_are_shared() {
    let conf = TempConf::new();
    conf.write("nginx.conf", "a x;\nb \"x\";\ninclude inc.conf;\n");
    conf.write("inc.conf", "c x;\nd y;\n");
    let parsed = conf.parse("nginx.conf");
    assert_eq!(errors(&parsed), Vec::<String>::new());
    let d = &parsed.directives;
    assert_eq!(render(d), "a x; b x; c x; d y;");
    let first = d[0].args[0].as_str().as_ptr();
    assert!(d[1..3].iter().all(|d| d.args[0].as_str().as_ptr() == first));
    assert_ne!(d[3].args[0].as_str().as_ptr(), first);
    assert!(std::sync::Arc::ptr_eq(&d[0].loc.file, &d[1].loc.file));
    assert!(std::sync::Arc::ptr_eq(&d[2].loc.file, &d[3].loc.file));
    assert_eq!(*d[2].loc.file, *conf.path("inc.conf"));
}

#[test]
fn includes_with_globs_relative_to_prefix_in_sorted_order() {
    let conf = TempConf::new();
    conf.write(
        "nginx.conf",
        "user nginx;\nhttp {\n    include mime.types;\n    include conf.d/*.conf;\n    include sites-enabled/*;\n}\n",
    );
    conf.write("mime.types", "types { text/html html; }\n");
    conf.write("conf.d/b.conf", "b;\n");
    conf.write("conf.d/a.conf", "a;\n");
    conf.write("conf.d/c.txt", "not_included;\n");
    conf.write("conf.d/.hidden.conf", "hidden;\n");
    conf.write("sites-enabled/20-two", "server { listen 2; }\n");
    conf.write("sites-enabled/10-one", "server { listen 1; }\n");
    let parsed = conf.parse("nginx.conf");
    assert_eq!(errors(&parsed), Vec::<String>::new());
    assert_eq!(
        render(&parsed.directives),
        "user nginx; http { types { text/html html; } a; b; \
         server { listen 1; } server { listen 2; } }"
    );
    let files: Vec<_> = parsed
        .files
        .iter()
        .map(|f| f.strip_prefix(conf.dir.path()).unwrap_or(f).to_path_buf())
        .collect();
    let want: Vec<PathBuf> = [
        "nginx.conf",
        "mime.types",
        "conf.d/a.conf",
        "conf.d/b.conf",
        "sites-enabled/10-one",
        "sites-enabled/20-two",
    ]
    .iter()
    .map(PathBuf::from)
    .collect();
    assert_eq!(files, want);
    // directives from an included file carry that file and their line in it
    let http = &parsed.directives[1];
    let a = &http.block.as_deref().unwrap_or_default()[1];
    assert_eq!(*a.loc.file, *conf.path("conf.d/a.conf"));
    assert_eq!(a.loc.line, 1);
}

#[test]
fn included_files_are_listed_once_but_spliced_each_time() {
    let conf = TempConf::new();
    conf.write(
        "nginx.conf",
        "http { server { location /a { include params; } location /b { include params; } } }",
    );
    conf.write("params", "fastcgi_param A 1;");
    let parsed = conf.parse("nginx.conf");
    assert_eq!(errors(&parsed), Vec::<String>::new());
    assert_eq!(
        render(&parsed.directives),
        "http { server { location /a { fastcgi_param A 1; } location /b { fastcgi_param A 1; } } }"
    );
    assert_eq!(parsed.files, [conf.path("nginx.conf"), conf.path("params")]);
}

#[test]
fn absolute_include_and_missing_files() {
    let conf = TempConf::new();
    let extra = conf.write("elsewhere/extra.conf", "extra;");
    conf.write(
        "nginx.conf",
        format!(
            "include {};\ninclude missing.conf;\ninclude nothing/*.conf;\ninclude a b;\nlast;\n",
            extra.display()
        ),
    );
    let parsed = conf.parse("nginx.conf");
    assert_eq!(render(&parsed.directives), "extra; last;");
    assert_eq!(
        errors(&parsed),
        [
            format!(
                "nginx.conf:2: open() \"{}\" failed (2: No such file or directory)",
                conf.path("missing.conf").display()
            ),
            "nginx.conf:4: invalid number of arguments in \"include\" directive".to_string(),
        ]
    );
}

#[test]
fn include_cycles_are_errors_not_hangs() {
    let conf = TempConf::new();
    conf.write("self.conf", "before;\ninclude self.conf;\nafter;\n");
    let parsed = conf.parse("self.conf");
    assert_eq!(render(&parsed.directives), "before; after;");
    let self_path = conf.path("self.conf").display().to_string();
    assert_eq!(
        errors(&parsed),
        [format!(
            "self.conf:2: include cycle: {self_path} -> {self_path}"
        )]
    );
    assert_eq!(parsed.errors[0].kind, ParseErrorKind::Syntax);
    assert!(parsed.is_complete());

    conf.write("a.conf", "a1;\ninclude b.conf;\na2;\n");
    conf.write("b.conf", "b1;\ninclude a.conf;\nb2;\n");
    let parsed = conf.parse("a.conf");
    assert_eq!(render(&parsed.directives), "a1; b1; b2; a2;");
    let (a, b) = (conf.path("a.conf"), conf.path("b.conf"));
    assert_eq!(
        errors(&parsed),
        [format!(
            "b.conf:2: include cycle: {} -> {} -> {}",
            a.display(),
            b.display(),
            a.display()
        )]
    );
}

#[test]
fn include_cycle_through_a_glob_and_a_symlink() {
    let conf = TempConf::new();
    conf.write("nginx.conf", "http { include sites/*; }");
    conf.write(
        "real/site",
        format!(
            "server {{ include {}/sites/*; }}",
            conf.dir.path().display()
        ),
    );
    fs::create_dir_all(conf.path("sites")).expect("mkdir");
    std::os::unix::fs::symlink(conf.path("real/site"), conf.path("sites/site")).expect("symlink");
    let parsed = conf.parse("nginx.conf");
    assert_eq!(parsed.errors.len(), 1, "{:?}", errors(&parsed));
    assert!(parsed.errors[0].message.starts_with("include cycle: "));
}

#[test]
fn include_depth_is_limited() {
    let conf = TempConf::new();
    for level in 0..10 {
        conf.write(
            &format!("{level}.conf"),
            format!("l{level};\ninclude {}.conf;\n", level + 1),
        );
    }
    conf.write("10.conf", "l10;\n");
    let limits = ParseLimits {
        max_include_depth: 3,
        ..ParseLimits::default()
    };
    let parsed = conf.parse_with("0.conf", &limits);
    assert_eq!(render(&parsed.directives), "l0; l1; l2; l3;");
    assert_eq!(parsed.errors.len(), 1, "{:?}", errors(&parsed));
    assert!(parsed.errors[0]
        .message
        .contains("nested more than 3 levels"));
    assert_eq!(parsed.errors[0].limit_hit(), Some(ParseLimit::IncludeDepth));
    assert!(conf.parse("0.conf").errors.is_empty());
}

#[test]
fn non_regular_files_are_refused_without_reading() {
    let conf = TempConf::new();
    conf.write("nginx.conf", "include /dev/zero;\ninclude /dev;\nafter;\n");
    let parsed = conf.parse("nginx.conf");
    assert_eq!(render(&parsed.directives), "after;");
    assert_eq!(
        errors(&parsed),
        [
            "nginx.conf:1: \"/dev/zero\" is not a regular file, not read",
            "nginx.conf:2: \"/dev\" is not a regular file, not read",
        ]
    );
}

#[test]
fn a_fifo_include_does_not_block() {
    let conf = TempConf::new();
    let fifo = conf.path("fifo.conf");
    let made = std::process::Command::new("mkfifo").arg(&fifo).status();
    if !made.is_ok_and(|status| status.success()) {
        eprintln!("mkfifo unavailable, skipping");
        return;
    }
    conf.write("nginx.conf", "include fifo.conf;\nafter;\n");
    let parsed = conf.parse("nginx.conf");
    assert_eq!(render(&parsed.directives), "after;");
    assert_eq!(parsed.errors.len(), 1);
    assert!(parsed.errors[0].message.contains("not a regular file"));
}

#[test]
fn unreadable_main_file_is_the_only_fatal_error() {
    let conf = TempConf::new();
    let missing = parse_config(
        &conf.path("nope.conf"),
        conf.dir.path(),
        &ParseLimits::default(),
    );
    let error = missing.expect_err("missing main file");
    assert_eq!(error.path, conf.path("nope.conf"));
    assert_eq!(error.source.kind(), std::io::ErrorKind::NotFound);

    let directory = parse_config(conf.dir.path(), conf.dir.path(), &ParseLimits::default());
    let error = directory.expect_err("directory as main file");
    assert!(error.to_string().contains("not a regular file"), "{error}");
}

#[test]
fn size_and_count_limits() {
    let conf = TempConf::new();
    conf.write(
        "nginx.conf",
        "include big.conf;\ninclude small*.conf;\nend;\n",
    );
    conf.write("big.conf", format!("big;{}", " ".repeat(196)));
    conf.write("small1.conf", "s1;");
    conf.write("small2.conf", "s2;");
    conf.write("small3.conf", "s3;");

    let per_file = ParseLimits {
        max_file_bytes: 100,
        ..ParseLimits::default()
    };
    let parsed = conf.parse_with("nginx.conf", &per_file);
    assert_eq!(render(&parsed.directives), "s1; s2; s3; end;");
    assert_eq!(parsed.errors.len(), 1, "{:?}", errors(&parsed));
    assert!(parsed.errors[0]
        .message
        .contains("big.conf\" is larger than 100 bytes, not read: this parser's file size limit"));
    assert_eq!(parsed.errors[0].limit_hit(), Some(ParseLimit::FileBytes));

    let main_len = fs::metadata(conf.path("nginx.conf")).map_or(0, |m| m.len());
    let total = ParseLimits {
        max_total_bytes: main_len + 200 + 3 + 3,
        ..ParseLimits::default()
    };
    let parsed = conf.parse_with("nginx.conf", &total);
    assert_eq!(render(&parsed.directives), "big; s1; s2; end;");
    assert_eq!(parsed.errors.len(), 1, "{:?}", errors(&parsed));
    assert!(parsed.errors[0]
        .message
        .contains("small3.conf\" not read: configuration files exceed"));
    assert_eq!(parsed.errors[0].limit_hit(), Some(ParseLimit::TotalBytes));

    let files = ParseLimits {
        max_files: 3,
        ..ParseLimits::default()
    };
    let parsed = conf.parse_with("nginx.conf", &files);
    assert_eq!(parsed.files.len(), 3);
    assert!(errors(&parsed)
        .iter()
        .any(|e| e.contains("more than 3 configuration files")));
    assert!(parsed
        .limit_errors()
        .all(|e| e.limit_hit() == Some(ParseLimit::Files)));
    assert!(!parsed.is_complete());

    let tokens = ParseLimits {
        max_tokens: 10,
        ..ParseLimits::default()
    };
    let parsed = parse_config_text(
        Path::new(MAIN),
        b"http { a; b; c; d; e; f; }",
        Path::new(PREFIX),
        &tokens,
    );
    assert_eq!(render(&parsed.directives), "http { a; b; c; d; }");
    assert_eq!(
        errors(&parsed),
        ["nginx.conf:1: more than 10 tokens in the configuration, parsing stopped: this parser's token count limit (nginx may accept it)"]
    );
    assert_eq!(parsed.errors[0].limit_hit(), Some(ParseLimit::Tokens));
}

#[test]
fn block_depth_is_limited() {
    let limits = ParseLimits {
        max_block_depth: 3,
        ..ParseLimits::default()
    };
    let text = "a { b { c { d { e { f; } } x; } y; } z; }\nafter;";
    let parsed = parse_config_text(Path::new(MAIN), text.as_bytes(), Path::new(PREFIX), &limits);
    assert_eq!(
        render(&parsed.directives),
        "a { b { c { d {} x; } y; } z; } after;"
    );
    assert_eq!(
        errors(&parsed),
        ["nginx.conf:1: \"d\" block not read: blocks nested more than 3 levels deep, this parser's block nesting limit (nginx may accept it)"]
    );
    assert_eq!(parsed.errors[0].limit_hit(), Some(ParseLimit::BlockDepth));
    assert_eq!(parsed.limit_errors().count(), 1);
    assert_eq!(parsed.syntax_errors().count(), 0);

    // far deeper than the default limit: no stack overflow, one error
    let deep = format!("{}{}", "a {".repeat(200_000), "}".repeat(200_000));
    let parsed = on_small_stack(move || parse_text(&deep));
    assert_eq!(
        parsed.errors.len(),
        1,
        "{:?}",
        &parsed.errors[..2.min(parsed.errors.len())]
    );
    assert!(parsed.errors[0]
        .message
        .contains("nested more than 100000 levels"));
    assert_eq!(parsed.errors[0].limit_hit(), Some(ParseLimit::BlockDepth));
    on_small_stack(move || drop(parsed));
}

#[test]
fn a_10_mb_single_line_file_is_handled() {
    let conf = TempConf::new();
    let mut text = b"user ".to_vec();
    text.resize(10 << 20, b'x');
    text.extend_from_slice(b"; pid /run/nginx.pid;");
    conf.write("huge.conf", &text);
    let parsed = conf.parse("huge.conf");
    assert_eq!(render(&parsed.directives), "user; pid /run/nginx.pid;");
    assert_eq!(parsed.errors.len(), 1, "{:?}", errors(&parsed));
    assert!(parsed.errors[0]
        .message
        .starts_with("too long parameter \"xxxxxxxx"));
    // nginx rejects any token over its 4 KiB buffer: the configuration's fault
    assert_eq!(parsed.errors[0].kind, ParseErrorKind::Syntax);

    // ten megabytes of tiny directives on one line: bounded by the token limit
    conf.write("many.conf", "a;".repeat(5 << 20));
    let limits = ParseLimits {
        max_tokens: 100_000,
        ..ParseLimits::default()
    };
    let parsed = conf.parse_with("many.conf", &limits);
    assert_eq!(parsed.directives.len(), 50_000);
    assert_eq!(parsed.errors.len(), 1, "{:?}", errors(&parsed));
    assert_eq!(parsed.errors[0].limit_hit(), Some(ParseLimit::Tokens));
}

/// Runs `f` on a thread with a 2 MiB stack, like a tokio worker's (and the test harness's).
fn on_small_stack<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    std::thread::Builder::new()
        .stack_size(2 << 20)
        .spawn(f)
        .expect("spawn")
        .join()
        .expect("no stack overflow")
}

/// The http block of a configuration, with `servers` servers that each proxy one
/// location and carry the headers a real site sets.
fn many_servers(servers: usize) -> String {
    let mut text = String::from("events {}\nhttp {\n    proxy_read_timeout 7s;\n");
    for i in 0..servers {
        text.push_str(&format!(
            "    server {{\n        listen 80;\n        server_name site{i}.example.com www.site{i}.example.com;\n        \
             location / {{\n            proxy_set_header Host $host;\n            proxy_set_header X-Real-IP $remote_addr;\n            \
             proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;\n            proxy_set_header X-Forwarded-Proto $scheme;\n            \
             add_header X-Frame-Options SAMEORIGIN;\n            proxy_pass http://10.0.{}.{}:8080;\n        }}\n    }}\n",
            i / 250 % 250,
            i % 250 + 1
        ));
    }
    text.push_str("}\n");
    text
}

#[test]
fn a_20_mb_config_is_read_whole() {
    // nginx -t accepts this (and 56 MB of it); the old 16 MiB file limit gave no server
    let text = many_servers(44_000);
    assert!(text.len() > 20_000_000, "{} bytes", text.len());
    let parsed = parse_config_text(
        Path::new(MAIN),
        text.as_bytes(),
        Path::new(PREFIX),
        &ParseLimits::default(),
    );
    assert!(parsed.errors.is_empty(), "{:?}", &parsed.errors[..1]);
    assert!(parsed.is_complete());
    let model = NginxConfig::from_parsed(&parsed, &parsed.prefix);
    assert_eq!(model.servers.len(), 44_000);
    assert_eq!(model.passes.len(), 44_000);
    let last = &model.passes[43_999];
    assert_eq!(last.endpoint, tcp("10.0.175.250", 8080));
    assert_eq!(last.server_name.as_deref(), Some("site43999.example.com"));
    assert_eq!(last.settings.read_timeout, Duration::from_secs(7));
}

#[test]
fn a_config_over_the_size_limit_is_a_limit_error_not_a_syntax_error() {
    let conf = TempConf::new();
    let text = many_servers(200);
    conf.write("nginx.conf", "events {}\ninclude sites.conf;\n");
    conf.write("sites.conf", &text);
    let limits = ParseLimits {
        max_file_bytes: 1000,
        ..ParseLimits::default()
    };
    let parsed = conf.parse_with("nginx.conf", &limits);
    assert_eq!(render(&parsed.directives), "events {}");
    assert_eq!(parsed.errors.len(), 1, "{:?}", errors(&parsed));
    assert_eq!(parsed.errors[0].limit_hit(), Some(ParseLimit::FileBytes));
    assert_eq!(ParseLimit::FileBytes.field(), "max_file_bytes");
    assert!(!parsed.is_complete());

    // the main file itself: nothing read, still a limit and not a fatal error
    conf.write("big.conf", &text);
    let parsed = conf.parse_with("big.conf", &limits);
    assert!(parsed.directives.is_empty());
    assert_eq!(parsed.errors[0].limit_hit(), Some(ParseLimit::FileBytes));
    let parsed = parse_config_text(Path::new(MAIN), text.as_bytes(), Path::new(PREFIX), &limits);
    assert_eq!(parsed.errors[0].limit_hit(), Some(ParseLimit::FileBytes));
}

#[test]
fn a_token_over_a_limit_below_nginx_buffer_is_a_limit() {
    let limits = ParseLimits {
        max_token_bytes: 100,
        ..ParseLimits::default()
    };
    let text = format!("a {}; b {};", "x".repeat(200), "y".repeat(5000));
    let parsed = parse_config_text(Path::new(MAIN), text.as_bytes(), Path::new(PREFIX), &limits);
    let kinds: Vec<_> = parsed.errors.iter().map(|e| e.kind).collect();
    // 200 bytes: nginx takes it, only our bound refuses; 5000: nginx refuses too
    assert_eq!(
        kinds,
        [
            ParseErrorKind::Limit(ParseLimit::TokenBytes),
            ParseErrorKind::Syntax
        ]
    );
}

/// `depth` regex locations nested in one server, the innermost with a `proxy_pass`
/// (nginx checks that a nested prefix location starts with its parent's prefix; regex
/// locations it does not check, so they nest as deep as its stack lets it recurse).
fn nested_locations(depth: usize) -> String {
    let mut text = String::from("http {\nproxy_connect_timeout 3s;\nserver {\nserver_name deep;\n");
    for level in 0..depth {
        text.push_str(&format!("location ~ ^/a{} {{\n", level % 10));
    }
    text.push_str("proxy_pass http://127.0.0.1:9000;\n");
    text.push_str(&"}\n".repeat(depth));
    text.push_str("}\n}\n");
    text
}

#[test]
fn locations_nested_2000_deep_on_a_small_stack() {
    // nginx -t accepts this (it crashes on its 8 MiB stack near 12,800 levels)
    let (errors, passes, depth_seen) = on_small_stack(|| {
        let parsed = parse_text(&nested_locations(2_000));
        let model = NginxConfig::from_parsed(&parsed, &parsed.prefix);
        // a deep tree compares, clones, prints and drops without recursing per level
        let copy = parsed.directives.clone();
        assert!(copy == parsed.directives);
        let printed = format!("{:?}", copy);
        assert!(printed.contains("not shown"), "{}", &printed[..200]);
        let mut depth = 0;
        let mut level = &parsed.directives[..];
        while let Some(block) = level.iter().find_map(|d| d.block.as_deref()) {
            depth += 1;
            level = block;
        }
        (parsed.errors, model.passes, depth)
    });
    assert!(errors.is_empty(), "{errors:?}");
    assert_eq!(depth_seen, 2_000 + 2);
    assert_eq!(passes.len(), 1);
    let pass = &passes[0];
    assert_eq!(pass.endpoint, tcp("127.0.0.1", 9000));
    assert_eq!(pass.location.as_deref(), Some("~ ^/a9"));
    assert_eq!(pass.server_name.as_deref(), Some("deep"));
    assert_eq!(pass.settings.connect_timeout, Duration::from_secs(3));
    assert_eq!(pass.loc.line, 2_000 + 5);
}

#[test]
fn a_tree_50_000_deep_is_walked_and_dropped_on_a_small_stack() {
    on_small_stack(|| {
        let parsed = parse_text(&nested_locations(50_000));
        assert!(parsed.errors.is_empty(), "{:?}", parsed.errors);
        let model = NginxConfig::from_parsed(&parsed, &parsed.prefix);
        assert_eq!(model.passes.len(), 1);
        assert_eq!(model.servers[0].locations.len(), 50_000);
        let copy = parsed.clone();
        assert!(copy.directives == parsed.directives);
        drop(copy);
        drop(parsed);
    });
}

#[test]
fn includes_nested_1000_deep_are_read() {
    // nginx keeps each file open: it reaches about 1,020 under a 1,024-descriptor limit
    let conf = TempConf::new();
    for level in 0..1_000 {
        conf.write(
            &format!("i/{level}.conf"),
            format!("include i/{}.conf;\n", level + 1),
        );
    }
    conf.write("i/1000.conf", "proxy_pass http://127.0.0.1:9000;\n");
    conf.write(
        "nginx.conf",
        "http { server { location / { include i/0.conf; } } }\n",
    );
    let (errors, passes) = on_small_stack(move || {
        let parsed = conf.parse("nginx.conf");
        (
            errors(&parsed),
            NginxConfig::from_parsed(&parsed, &parsed.prefix).passes,
        )
    });
    assert!(errors.is_empty(), "{errors:?}");
    assert_eq!(passes.len(), 1);
}

#[test]
fn default_limits_hold_what_nginx_accepts() {
    // measured with nginx 1.22 -t: 56 MB in one file (7.6 million tokens), locations nested
    // 12,800 deep, includes nested 11,500 deep, any number of files
    let limits = ParseLimits::default();
    assert!(limits.max_file_bytes >= 56_000_000);
    assert!(limits.max_total_bytes >= limits.max_file_bytes);
    assert!(limits.max_tokens >= 7_600_000);
    assert!(limits.max_block_depth >= 12_800);
    assert!(limits.max_include_depth >= 11_500);
    assert!(limits.max_token_bytes >= 4096);
    assert!(limits.max_files >= 10_000);
}

#[test]
fn unterminated_blocks_in_an_include_are_syntax_errors_closed_in_their_file() {
    let conf = TempConf::new();
    conf.write("nginx.conf", "http {\ninclude part.conf;\nafter;\n}\n");
    conf.write("part.conf", "server {\nlocation / {\n");
    let parsed = conf.parse("nginx.conf");
    assert_eq!(
        render(&parsed.directives),
        "http { server { location / {} } after; }"
    );
    assert_eq!(
        errors(&parsed),
        [
            "part.conf:2: unexpected end of file at line 3, expecting \"}\" to close \"location\" block",
            "part.conf:1: unexpected end of file at line 3, expecting \"}\" to close \"server\" block",
        ]
    );
    assert!(parsed.is_complete());
}

#[test]
fn a_brace_after_an_include_closes_the_block_after_the_included_file() {
    let conf = TempConf::new();
    conf.write(
        "nginx.conf",
        "http { server { include part.conf } after; }\n",
    );
    conf.write("part.conf", "listen 80;\n");
    let parsed = conf.parse("nginx.conf");
    assert_eq!(
        render(&parsed.directives),
        "http { server { listen 80; } after; }"
    );
    assert_eq!(
        errors(&parsed),
        ["nginx.conf:1: unexpected \"}\", expecting \";\" after \"include\""]
    );
}

// ---------------------------------------------------------------- model

fn model(text: &str) -> NginxConfig {
    let parsed = parse_text(text);
    assert_eq!(
        errors(&parsed),
        Vec::<String>::new(),
        "test config must parse"
    );
    NginxConfig::from_parsed(&parsed, &parsed.prefix)
}

fn tcp(host: &str, port: u16) -> Endpoint {
    Endpoint::Tcp {
        host: host.into(),
        port,
    }
}

fn unix(path: &str) -> Endpoint {
    Endpoint::Unix { path: path.into() }
}

fn dynamic(raw: &str) -> Endpoint {
    Endpoint::Dynamic { raw: raw.into() }
}

#[test]
fn user_and_group() {
    let cases: &[(&str, Option<&str>, Option<&str>)] = &[
        ("user www-data;", Some("www-data"), None),
        ("user nginx nginx;", Some("nginx"), Some("nginx")),
        ("user nobody nogroup;", Some("nobody"), Some("nogroup")),
        ("worker_processes 1;", None, None),
        // only the main context counts
        ("http { user x; }", None, None),
    ];
    for (text, user, group) in cases {
        let config = model(text);
        assert_eq!(config.user.as_deref(), *user, "{text}");
        assert_eq!(config.group.as_deref(), *group, "{text}");
    }
}

#[test]
fn error_logs() {
    let config = model(
        "error_log /var/log/nginx/error.log;\n\
         error_log logs/debug.log debug;\n\
         error_log stderr warn;\n\
         error_log syslog:server=unix:/dev/log,facility=local7 info;\n\
         error_log memory:32m debug;\n\
         http { server { error_log /var/log/nginx/site.log crit; } }\n\
         stream { error_log /var/log/nginx/stream.log; }\n",
    );
    let logs: Vec<_> = config
        .error_logs
        .iter()
        .map(|log| (log.dest.clone(), log.level.as_str(), log.loc.line))
        .collect();
    let file = |path: &str| ErrorLogDest::File { path: path.into() };
    assert_eq!(
        logs,
        [
            (file("/var/log/nginx/error.log"), "error", 1),
            (file("/etc/nginx/logs/debug.log"), "debug", 2),
            (ErrorLogDest::Stderr, "warn", 3),
            (
                ErrorLogDest::Syslog {
                    spec: "server=unix:/dev/log,facility=local7".into()
                },
                "info",
                4
            ),
            (ErrorLogDest::Memory, "debug", 5),
            (file("/var/log/nginx/site.log"), "crit", 6),
            (file("/var/log/nginx/stream.log"), "error", 7),
        ]
    );
    assert!(model("user nginx;").error_logs.is_empty());
}

#[test]
fn the_nearest_resolver_serves_targets_with_variables() {
    let config = model(
        "http { resolver 127.0.0.53;\n\
           server {\n\
             location /a { set $b backend.internal; proxy_pass http://$b:8080; }\n\
             location /b { resolver 10.0.0.2:5353 valid=10s ipv6=off; resolver_timeout 2s;\n\
                           set $b other.internal; proxy_pass http://$b; }\n\
             location /c { proxy_pass http://static.internal:81; }\n\
           }\n\
         }\n\
         http { server { location /d { set $d x.internal; proxy_pass http://$d; } } }",
    );
    let a = &config.passes[0];
    assert!(a.resolved_at_request_time);
    assert_eq!(
        a.endpoint,
        Endpoint::Tcp {
            host: "backend.internal".into(),
            port: 8080
        }
    );
    assert_eq!(a.settings.resolver, ["127.0.0.53"]);
    assert!(a.settings.resolver_ipv6);
    assert_eq!(a.settings.resolver_timeout, Duration::from_secs(30));
    let b = &config.passes[1].settings;
    assert_eq!(b.resolver, ["10.0.0.2:5353"]);
    assert!(!b.resolver_ipv6);
    assert_eq!(b.resolver_timeout, Duration::from_secs(2));
    // A literal target is resolved once at start-up, through the system resolver.
    assert!(!config.passes[2].resolved_at_request_time);
    // No resolver in scope: nginx will say "no resolver defined".
    assert!(config.passes[3].settings.resolver.is_empty());
}

#[test]
fn pid_and_resolvers() {
    let config = model(
        "pid logs/nginx.pid;\n\
         http { resolver 127.0.0.53 [::1]:5353 valid=30s ipv6=off;\n\
         server { resolver 127.0.0.53 10.0.0.1 status_zone=z; } }",
    );
    assert_eq!(
        config.pid_file,
        Some(PathBuf::from("/etc/nginx/logs/nginx.pid"))
    );
    assert_eq!(config.resolvers, ["127.0.0.53", "[::1]:5353", "10.0.0.1"]);
    assert_eq!(
        model("pid /run/nginx.pid;").pid_file,
        Some("/run/nginx.pid".into())
    );
}

#[test]
fn upstream_servers_with_parameters_and_defaults() {
    let config = model(
        "http { upstream app {\n\
             least_conn;\n\
             server 127.0.0.1:8001 weight=3;\n\
             server unix:/run/app.sock backup;\n\
             server 10.0.0.2:8002 down max_fails=3 fail_timeout=30s;\n\
             server backend.internal max_conns=10 weight=0 max_fails=x fail_timeout=soon;\n\
             keepalive 16;\n\
         } }\n\
         stream { upstream tcp_only { server 10.9.9.9:5432; } }",
    );
    assert_eq!(config.upstreams.len(), 1);
    let app = &config.upstreams[0];
    assert_eq!((app.name.as_str(), app.loc.line), ("app", 1));
    let servers: Vec<_> = app
        .servers
        .iter()
        .map(|s| {
            (
                s.endpoint.clone(),
                s.weight,
                s.max_fails,
                s.fail_timeout.as_secs(),
                s.backup,
                s.down,
                s.loc.line,
            )
        })
        .collect();
    assert_eq!(
        servers,
        [
            (tcp("127.0.0.1", 8001), 3, 1, 10, false, false, 3),
            (unix("/run/app.sock"), 1, 1, 10, true, false, 4),
            (tcp("10.0.0.2", 8002), 1, 3, 30, false, true, 5),
            (tcp("backend.internal", 80), 1, 1, 10, false, false, 6),
        ]
    );
    assert_eq!(app.servers[1].raw, "unix:/run/app.sock");
}

#[test]
fn servers_and_locations() {
    let config = model(
        "http {\n\
           server {\n\
             listen 80 default_server;\n\
             listen [::]:80;\n\
             server_name example.com www.example.com;\n\
             server_name alias.example.com;\n\
             location / {\n\
               location ~ \\.php$ { }\n\
             }\n\
             location = /health { }\n\
             location @fallback { }\n\
           }\n\
           server { listen 443 ssl; }\n\
         }",
    );
    assert_eq!(config.servers.len(), 2);
    let first = &config.servers[0];
    assert_eq!(first.listen, ["80", "[::]:80"]);
    assert_eq!(
        first.server_names,
        ["example.com", "www.example.com", "alias.example.com"]
    );
    let locations: Vec<_> = first
        .locations
        .iter()
        .map(|l| (l.pattern.as_str(), l.loc.line))
        .collect();
    assert_eq!(
        locations,
        [
            ("/", 7),
            ("~ \\.php$", 8),
            ("= /health", 10),
            ("@fallback", 11)
        ]
    );
    assert_eq!(first.loc.line, 2);
    assert_eq!(config.servers[1].listen, ["443"]);
    assert!(config.servers[1].server_names.is_empty());
}

#[test]
fn passes_in_every_context() {
    let config = model(
        "http {\n\
           map $uri $x { proxy_pass 1; }\n\
           server {\n\
             server_name a.example b.example;\n\
             location / {\n\
               if ($http_x) { proxy_pass http://127.0.0.1:1; }\n\
               location /inner { proxy_pass http://127.0.0.1:2; }\n\
               limit_except GET { proxy_pass http://127.0.0.1:3; }\n\
             }\n\
           }\n\
           server { location / { scgi_pass 127.0.0.1:4; } }\n\
         }\n\
         stream { server { proxy_pass 127.0.0.1:5; } }",
    );
    let passes: Vec<_> = config
        .passes
        .iter()
        .map(|p| {
            (
                p.endpoint.clone(),
                p.server_name.as_deref(),
                p.location.as_deref(),
                p.loc.line,
            )
        })
        .collect();
    assert_eq!(
        passes,
        [
            (tcp("127.0.0.1", 1), Some("a.example"), Some("/"), 6),
            (tcp("127.0.0.1", 2), Some("a.example"), Some("/inner"), 7),
            (tcp("127.0.0.1", 3), Some("a.example"), Some("/"), 8),
            (tcp("127.0.0.1", 4), None, Some("/"), 11),
        ]
    );
    assert_eq!(config.passes[0].server_names, ["a.example", "b.example"]);
    assert_eq!(config.passes[3].kind, PassKind::Scgi);
}

#[test]
fn pass_variables_resolve_through_literal_sets() {
    let config = model(
        "http {\n\
           server {\n\
             set $backend \"http://backend.internal:3000\";\n\
             set $port 9000;\n\
             set $dyn $host;\n\
             location /a { proxy_pass $backend; }\n\
             location /b { set $backend http://override:1; proxy_pass $backend/path; }\n\
             location /c { fastcgi_pass 127.0.0.1:${port}; }\n\
             location /d { proxy_pass http://$host$request_uri; }\n\
             location /e { proxy_pass $dyn; }\n\
             location /f { proxy_pass http://127.0.0.1:8000$request_uri; }\n\
             location /g { set $dyn http://static:2; if ($x) { proxy_pass $dyn; } }\n\
             location /h { set $BACKEND http://upper:7; proxy_pass $backend; }\n\
           }\n\
         }",
    );
    let endpoints: Vec<_> = config
        .passes
        .iter()
        .map(|p| (p.raw.as_str(), p.scheme.as_str(), p.endpoint.clone()))
        .collect();
    assert_eq!(
        endpoints,
        [
            ("$backend", "http", tcp("backend.internal", 3000)),
            ("$backend/path", "http", tcp("override", 1)),
            ("127.0.0.1:${port}", "", tcp("127.0.0.1", 9000)),
            (
                "http://$host$request_uri",
                "http",
                dynamic("http://$host$request_uri")
            ),
            ("$dyn", "", dynamic("$dyn")),
            (
                "http://127.0.0.1:8000$request_uri",
                "http",
                tcp("127.0.0.1", 8000)
            ),
            ("$dyn", "http", tcp("static", 2)),
            ("$backend", "http", tcp("upper", 7)),
        ]
    );
}

#[test]
fn pass_settings_inherit_from_the_nearest_block() {
    let config = model(
        "http {\n\
           proxy_connect_timeout 3s;\n\
           proxy_buffer_size 8k;\n\
           proxy_ssl_trusted_certificate certs/ca.pem;\n\
           fastcgi_read_timeout 2m;\n\
           server {\n\
             proxy_read_timeout 5s;\n\
             proxy_ssl_verify on;\n\
             location /a { proxy_pass https://a; }\n\
             location /b {\n\
               proxy_read_timeout 1m;\n\
               proxy_ssl_server_name on;\n\
               proxy_ssl_name backend.example;\n\
               location /b/c { proxy_buffer_size 16k; proxy_pass http://c; }\n\
             }\n\
             location /d { proxy_send_timeout never; proxy_buffer_size lots; proxy_ssl_protocols TLSv1.2 TLSv1.3; proxy_pass http://d; }\n\
             location /e { fastcgi_pass 127.0.0.1:9000; }\n\
           }\n\
         }\n\
         server_level_ignored;",
    );
    let s = |secs| Duration::from_secs(secs);
    let defaults = PassSettings::default();
    let a = &config.passes[0].settings;
    assert_eq!(
        a,
        &PassSettings {
            buffer_size: 8192,
            connect_timeout: s(3),
            read_timeout: s(5),
            send_timeout: s(60),
            ssl_verify: true,
            ssl_server_name: false,
            ssl_name: None,
            ssl_trusted_certificate: Some("/etc/nginx/certs/ca.pem".into()),
            ..defaults.clone()
        }
    );
    let c = &config.passes[1].settings;
    assert_eq!(
        (
            c.buffer_size,
            c.read_timeout,
            c.ssl_server_name,
            c.ssl_name.as_deref()
        ),
        (16384, s(60), true, Some("backend.example"))
    );
    let d = &config.passes[2].settings;
    // invalid values (nginx would refuse them) fall back to nginx's default
    assert_eq!((d.send_timeout, d.buffer_size), (s(60), 4096));
    assert_eq!(
        d.ssl_protocols.as_deref(),
        Some(&["TLSv1.2".to_string(), "TLSv1.3".to_string()][..])
    );
    assert_eq!(a.ssl_protocols, None);
    let e = &config.passes[3].settings;
    assert_eq!(
        e,
        &PassSettings {
            read_timeout: s(120),
            ..defaults
        }
    );
}

#[test]
fn pass_settings_defaults() {
    let settings = PassSettings::default();
    assert_eq!(settings.buffer_size, 4096);
    assert_eq!(settings.connect_timeout, Duration::from_secs(60));
    assert_eq!(settings.read_timeout, Duration::from_secs(60));
    assert_eq!(settings.send_timeout, Duration::from_secs(60));
    assert!(!settings.ssl_verify && !settings.ssl_server_name);
    assert_eq!(
        (settings.ssl_name, settings.ssl_trusted_certificate),
        (None, None)
    );
}

/// A Debian-style layout: nginx.conf including sites-enabled and snippets.
#[test]
fn realistic_debian_config() {
    let conf = TempConf::new();
    let root = conf.dir.path();
    conf.write(
        "nginx.conf",
        format!(
            "user www-data;
worker_processes auto;
pid /run/nginx.pid;
error_log /var/log/nginx/error.log;
include modules-enabled/*.conf;

events {{
    worker_connections 768;
}}

http {{
    sendfile on;
    include mime.types;
    default_type application/octet-stream;
    access_log /var/log/nginx/access.log;
    gzip on;
    include conf.d/*.conf;
    include {}/sites-enabled/*;
}}
",
            root.display()
        ),
    );
    conf.write("mime.types", "types {\n    text/html html htm shtml;\n}\n");
    conf.write(
        "snippets/fastcgi-php.conf",
        "fastcgi_split_path_info ^(.+?\\.php)(/.*)$;\ntry_files $fastcgi_script_name =404;\nset $path_info $fastcgi_path_info;\nfastcgi_param PATH_INFO $path_info;\nfastcgi_index index.php;\ninclude fastcgi.conf;\n",
    );
    conf.write(
        "fastcgi.conf",
        "fastcgi_param SCRIPT_FILENAME $document_root$fastcgi_script_name;\n",
    );
    conf.write(
        "conf.d/upstreams.conf",
        "upstream app {\n    server 127.0.0.1:8001 weight=3;\n    server unix:/run/app.sock backup;\n    server 10.0.0.2:8002 down max_fails=3 fail_timeout=30s;\n}\n",
    );
    conf.write(
        "sites-enabled/php",
        "server {
    listen 80 default_server;
    listen [::]:80 default_server;
    server_name php.example.com;
    root /var/www/html;
    error_log logs/php-error.log warn;
    location / {
        try_files $uri $uri/ =404;
    }
    location ~ \\.php$ {
        include snippets/fastcgi-php.conf;
        fastcgi_buffer_size 32k;
        fastcgi_pass unix:/run/php/php8.2-fpm.sock;
    }
}
",
    );
    conf.write(
        "sites-enabled/proxy",
        "server {
    listen 443 ssl;
    server_name app.example.com;
    error_log stderr;
    error_log syslog:server=unix:/dev/log;
    error_log memory:1m debug;
    proxy_read_timeout 5s;
    location / {
        proxy_pass http://127.0.0.1:8000;
    }
    location /app/ {
        proxy_read_timeout 1m;
        proxy_pass http://app;
    }
    location /grpc {
        grpc_pass grpcs://127.0.0.1:50051;
    }
    location /uwsgi {
        include uwsgi_params;
        uwsgi_pass 127.0.0.1:3031;
    }
    location /api/ {
        proxy_pass http://unix:/run/gunicorn.sock:/api/;
    }
    location /internal {
        set $backend \"http://backend.internal:3000\";
        proxy_pass $backend;
    }
    location /dynamic {
        proxy_pass http://$host$request_uri;
    }
}
",
    );
    conf.write("uwsgi_params", "uwsgi_param QUERY_STRING $query_string;\n");

    let parsed = conf.parse("nginx.conf");
    assert_eq!(errors(&parsed), Vec::<String>::new());
    assert_eq!(parsed.files.len(), 8, "{:?}", parsed.files);
    let config = NginxConfig::from_parsed(&parsed, &parsed.prefix);

    assert_eq!(config.user.as_deref(), Some("www-data"));
    assert_eq!(config.group, None);
    assert_eq!(config.pid_file, Some(PathBuf::from("/run/nginx.pid")));
    let dests: Vec<_> = config.error_logs.iter().map(|l| l.dest.clone()).collect();
    assert_eq!(
        dests,
        [
            ErrorLogDest::File {
                path: "/var/log/nginx/error.log".into()
            },
            ErrorLogDest::File {
                path: root.join("logs/php-error.log")
            },
            ErrorLogDest::Stderr,
            ErrorLogDest::Syslog {
                spec: "server=unix:/dev/log".into()
            },
            ErrorLogDest::Memory,
        ]
    );

    assert_eq!(config.upstreams.len(), 1);
    assert_eq!(config.upstreams[0].servers.len(), 3);
    assert_eq!(
        *config.upstreams[0].loc.file,
        *root.join("conf.d/upstreams.conf")
    );

    let servers: Vec<_> = config
        .servers
        .iter()
        .map(|s| (s.server_names.clone(), s.listen.clone(), s.locations.len()))
        .collect();
    assert_eq!(
        servers,
        [
            (
                vec!["php.example.com".to_string()],
                vec!["80".to_string(), "[::]:80".to_string()],
                2
            ),
            (
                vec!["app.example.com".to_string()],
                vec!["443".to_string()],
                7
            ),
        ]
    );

    let passes: Vec<_> = config
        .passes
        .iter()
        .map(|p| {
            (
                p.kind,
                p.scheme.as_str(),
                p.endpoint.clone(),
                p.location.as_deref().unwrap_or(""),
                p.settings.read_timeout.as_secs(),
            )
        })
        .collect();
    use PassKind::*;
    assert_eq!(
        passes,
        [
            (
                Fastcgi,
                "",
                unix("/run/php/php8.2-fpm.sock"),
                "~ \\.php$",
                60
            ),
            (Proxy, "http", tcp("127.0.0.1", 8000), "/", 5),
            (
                Proxy,
                "http",
                Endpoint::Upstream { name: "app".into() },
                "/app/",
                60
            ),
            (Grpc, "grpcs", tcp("127.0.0.1", 50051), "/grpc", 60),
            (Uwsgi, "uwsgi", tcp("127.0.0.1", 3031), "/uwsgi", 60),
            (Proxy, "http", unix("/run/gunicorn.sock"), "/api/", 5),
            (Proxy, "http", tcp("backend.internal", 3000), "/internal", 5),
            (
                Proxy,
                "http",
                dynamic("http://$host$request_uri"),
                "/dynamic",
                5
            ),
        ]
    );
    let php = &config.passes[0];
    assert_eq!(php.settings.buffer_size, 32 * 1024);
    assert_eq!(php.server_name.as_deref(), Some("php.example.com"));
    assert_eq!(*php.loc.file, *root.join("sites-enabled/php"));
    assert_eq!(php.loc.line, 13);
    assert_eq!(config.passes[1].raw, "http://127.0.0.1:8000");
    assert_eq!(
        config.passes[1].server_name.as_deref(),
        Some("app.example.com")
    );
}

#[test]
fn relative_logs_and_pid_follow_nginx_prefix_and_certificates_the_config_dir() {
    // nginx resolves error_log and pid against its prefix (-p, else --prefix), and
    // ssl_trusted_certificate, like include, against the main file's directory.
    let parsed = parse_text(
        "pid run/nginx.pid;\nerror_log logs/error.log;\n\
         http { server { location / { proxy_pass https://127.0.0.1:8443;\n\
         proxy_ssl_trusted_certificate ca.pem; } } }\n",
    );
    let config = NginxConfig::from_parsed(&parsed, Path::new("/usr/share/nginx"));
    assert_eq!(
        config.pid_file.as_deref(),
        Some(Path::new("/usr/share/nginx/run/nginx.pid"))
    );
    assert_eq!(
        config.error_logs[0].dest,
        ErrorLogDest::File {
            path: "/usr/share/nginx/logs/error.log".into()
        }
    );
    assert_eq!(
        config.passes[0].settings.ssl_trusted_certificate.as_deref(),
        Some(parsed.prefix.join("ca.pem").as_path())
    );
}

//! Where a `*_pass` or an upstream `server` points, read the way nginx's `ngx_parse_url`
//! reads it.

use std::collections::HashMap;
use std::path::PathBuf;

use super::model::{Endpoint, PassKind};
use super::variables::variable_at;

/// The names of the `upstream` blocks, matched case-insensitively like nginx does.
#[derive(Debug, Default)]
pub(crate) struct UpstreamNames {
    by_lowercase: HashMap<String, String>,
}

impl UpstreamNames {
    pub fn new<'a>(names: impl IntoIterator<Item = &'a str>) -> Self {
        let by_lowercase = names
            .into_iter()
            .map(|name| (name.to_ascii_lowercase(), name.to_owned()))
            .collect();
        UpstreamNames { by_lowercase }
    }

    /// The block's name as defined, when `host` names one.
    fn find(&self, host: &str) -> Option<&str> {
        self.by_lowercase
            .get(&host.to_ascii_lowercase())
            .map(String::as_str)
    }
}

/// The parts of `ngx_parse_url`'s behaviour that differ between directives.
#[derive(Debug, Clone, Copy)]
pub(crate) struct AddressRules {
    /// The port of a name written without one; `None` when such a name must be an
    /// `upstream` block (nginx: "no port in upstream").
    pub default_port: Option<u16>,
    /// Whether a URI may follow the address (only `proxy_pass` has one).
    pub uri_part: bool,
}

/// An upstream block's `server`: port 80 when none is given, no URI.
pub(crate) const UPSTREAM_SERVER: AddressRules = AddressRules {
    default_port: Some(80),
    uri_part: false,
};

/// Reads the argument of a `*_pass` (variables already substituted where possible):
/// its scheme (lowercase; `""` when the directive takes none or the prefix is invalid)
/// and its endpoint. The endpoint is `None` when nginx would reject the argument or when
/// an unresolved variable (`$`) is left in the part that names the endpoint; a variable
/// in the URI alone doesn't matter.
pub(crate) fn parse_pass_target(
    kind: PassKind,
    text: &str,
    upstreams: &UpstreamNames,
) -> (String, Option<Endpoint>) {
    let Some((scheme, address, rules)) = split_scheme(kind, text) else {
        return (String::new(), None);
    };
    (scheme.to_owned(), parse_address(address, rules, upstreams))
}

/// The scheme, the address after it and how to read that address. `None` for a
/// `proxy_pass` without `http://` or `https://` (nginx: "invalid URL prefix").
fn split_scheme(kind: PassKind, text: &str) -> Option<(&'static str, &str, AddressRules)> {
    let no_default = |uri_part| AddressRules {
        default_port: None,
        uri_part,
    };
    let optional = |schemes: [&'static str; 2]| {
        let found = schemes.into_iter().find_map(|scheme| {
            strip_scheme(text, scheme).map(|address| (scheme, address, no_default(false)))
        });
        Some(found.unwrap_or((schemes[0], text, no_default(false))))
    };
    match kind {
        PassKind::Proxy => {
            let web = |scheme, port| {
                let rules = AddressRules {
                    default_port: Some(port),
                    uri_part: true,
                };
                strip_scheme(text, scheme).map(|address| (scheme, address, rules))
            };
            web("http", 80).or_else(|| web("https", 443))
        }
        PassKind::Fastcgi | PassKind::Scgi => Some(("", text, no_default(false))),
        PassKind::Uwsgi => optional(["uwsgi", "suwsgi"]),
        PassKind::Grpc => optional(["grpc", "grpcs"]),
    }
}

/// `text` after `scheme://`, the scheme matched case-insensitively.
fn strip_scheme<'t>(text: &'t str, scheme: &str) -> Option<&'t str> {
    let rest = strip_prefix_ignore_case(text, scheme)?;
    rest.strip_prefix("://")
}

fn strip_prefix_ignore_case<'t>(text: &'t str, prefix: &str) -> Option<&'t str> {
    let head = text.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix)
        .then(|| &text[prefix.len()..])
}

/// Reads `unix:/path[:uri]`, `host[:port][/uri]` or `[v6]:port` as an endpoint; a name
/// without a port is an upstream block when one has that name.
pub(crate) fn parse_address(
    text: &str,
    rules: AddressRules,
    upstreams: &UpstreamNames,
) -> Option<Endpoint> {
    if let Some(rest) = strip_prefix_ignore_case(text, "unix:") {
        return unix_socket(rest, rules.uri_part);
    }
    let authority = if rules.uri_part {
        &text[..uri_start(text)]
    } else if text.contains('/') {
        return None; // nginx: "invalid host"
    } else {
        text
    };
    if authority.contains('$') {
        return None;
    }
    let (host, port) = split_host_port(authority)?;
    if host.is_empty() {
        return None;
    }
    let host = host.to_owned();
    match port {
        Some(port) => Some(Endpoint::Tcp { host, port }),
        None => match upstreams.find(&host) {
            Some(name) => Some(Endpoint::Upstream {
                name: name.to_owned(),
            }),
            None => rules.default_port.map(|port| Endpoint::Tcp { host, port }),
        },
    }
}

/// Variables whose value is always a URI or query part, so they end the host and port
/// even when written right after them (`http://127.0.0.1:8000$request_uri`).
const URI_VARIABLES: &[&str] = &["request_uri", "uri", "document_uri", "is_args"];

/// Where the URI part of `host[:port]...` starts: at the first `/` or `?`, or at a
/// variable from [`URI_VARIABLES`], whichever comes first (the end when none).
fn uri_start(text: &str) -> usize {
    let slash_or_query = text.find(['/', '?']).unwrap_or(text.len());
    let uri_variable = text.match_indices('$').map(|(at, _)| at).find(|&at| {
        let after = &text[at + 1..];
        let (name, _) = variable_at(after);
        URI_VARIABLES.contains(&name)
    });
    uri_variable.map_or(slash_or_query, |at| at.min(slash_or_query))
}

/// The socket path after `unix:`; with a URI part it ends at the next `:`.
fn unix_socket(rest: &str, uri_part: bool) -> Option<Endpoint> {
    let path = match rest.find(':') {
        Some(end) if uri_part => &rest[..end],
        _ => rest,
    };
    (!path.is_empty() && !path.contains('$')).then(|| Endpoint::Unix {
        path: PathBuf::from(path),
    })
}

/// `host`, `host:port`, `[v6]` or `[v6]:port`; `None` for a malformed port or bracket.
fn split_host_port(authority: &str) -> Option<(&str, Option<u16>)> {
    if let Some(inner) = authority.strip_prefix('[') {
        let (host, after) = inner.split_once(']')?;
        if after.is_empty() {
            return Some((host, None));
        }
        return Some((host, Some(parse_port(after.strip_prefix(':')?)?)));
    }
    match authority.split_once(':') {
        Some((host, port)) => Some((host, Some(parse_port(port)?))),
        None => Some((authority, None)),
    }
}

/// A port as nginx accepts it: digits only, 1 to 65535.
fn parse_port(text: &str) -> Option<u16> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok().filter(|&port| port != 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tcp(host: &str, port: u16) -> Option<Endpoint> {
        Some(Endpoint::Tcp {
            host: host.into(),
            port,
        })
    }

    fn unix(path: &str) -> Option<Endpoint> {
        Some(Endpoint::Unix { path: path.into() })
    }

    fn upstream(name: &str) -> Option<Endpoint> {
        Some(Endpoint::Upstream { name: name.into() })
    }

    #[test]
    fn pass_targets() {
        use PassKind::*;
        let upstreams = UpstreamNames::new(["app", "PhpPool"]);
        let cases: &[(PassKind, &str, &str, Option<Endpoint>)] = &[
            (
                Proxy,
                "http://127.0.0.1:8000",
                "http",
                tcp("127.0.0.1", 8000),
            ),
            (
                Proxy,
                "http://127.0.0.1:8000/api/",
                "http",
                tcp("127.0.0.1", 8000),
            ),
            (Proxy, "http://localhost", "http", tcp("localhost", 80)),
            (
                Proxy,
                "https://example.com/x",
                "https",
                tcp("example.com", 443),
            ),
            (
                Proxy,
                "HTTPS://example.com",
                "https",
                tcp("example.com", 443),
            ),
            (
                Proxy,
                "http://example.com?x=1",
                "http",
                tcp("example.com", 80),
            ),
            (Proxy, "http://[::1]:9000/", "http", tcp("::1", 9000)),
            (Proxy, "http://[::1]", "http", tcp("::1", 80)),
            (Proxy, "http://app", "http", upstream("app")),
            (Proxy, "http://APP/path", "http", upstream("app")),
            (Proxy, "http://phppool", "http", upstream("PhpPool")),
            // an explicit port means a host, not the upstream block
            (Proxy, "http://app:8080", "http", tcp("app", 8080)),
            (
                Proxy,
                "http://unix:/run/gunicorn.sock:/api/",
                "http",
                unix("/run/gunicorn.sock"),
            ),
            (
                Proxy,
                "http://unix:/run/gunicorn.sock",
                "http",
                unix("/run/gunicorn.sock"),
            ),
            (Proxy, "http://unix:", "http", None),
            (Proxy, "127.0.0.1:8000", "", None),
            (Proxy, "ftp://x", "", None),
            (Proxy, "http://", "http", None),
            (Proxy, "http://host:99999", "http", None),
            (Proxy, "http://host:0", "http", None),
            (Proxy, "http://host:x", "http", None),
            (Proxy, "http://[::1", "http", None),
            (Proxy, "http://$host$request_uri", "http", None),
            (
                Proxy,
                "http://127.0.0.1:8000$request_uri",
                "http",
                tcp("127.0.0.1", 8000),
            ),
            (Proxy, "http://backend/$1", "http", tcp("backend", 80)),
            (
                Proxy,
                "http://app$uri$is_args$args",
                "http",
                upstream("app"),
            ),
            (Proxy, "http://app${request_uri}", "http", upstream("app")),
            (Proxy, "http://host$uri_suffix", "http", None),
            (Proxy, "http://host:80$port_suffix/", "http", None),
            (
                Fastcgi,
                "unix:/run/php/php8.2-fpm.sock",
                "",
                unix("/run/php/php8.2-fpm.sock"),
            ),
            (Fastcgi, "127.0.0.1:9000", "", tcp("127.0.0.1", 9000)),
            (Fastcgi, "[::1]:9000", "", tcp("::1", 9000)),
            (Fastcgi, "phppool", "", upstream("PhpPool")),
            (Fastcgi, "php", "", None),
            (Fastcgi, "127.0.0.1:9000/x", "", None),
            (Fastcgi, "unix:/run/a:b.sock", "", unix("/run/a:b.sock")),
            (Scgi, "127.0.0.1:4000", "", tcp("127.0.0.1", 4000)),
            (Uwsgi, "127.0.0.1:3031", "uwsgi", tcp("127.0.0.1", 3031)),
            (
                Uwsgi,
                "uwsgi://127.0.0.1:3031",
                "uwsgi",
                tcp("127.0.0.1", 3031),
            ),
            (Uwsgi, "suwsgi://app", "suwsgi", upstream("app")),
            (
                Uwsgi,
                "unix:/run/uwsgi.sock",
                "uwsgi",
                unix("/run/uwsgi.sock"),
            ),
            (Grpc, "127.0.0.1:50051", "grpc", tcp("127.0.0.1", 50051)),
            (
                Grpc,
                "grpc://127.0.0.1:50051",
                "grpc",
                tcp("127.0.0.1", 50051),
            ),
            (
                Grpc,
                "grpcs://127.0.0.1:50051",
                "grpcs",
                tcp("127.0.0.1", 50051),
            ),
            (Grpc, "grpcs://app", "grpcs", upstream("app")),
            (
                Grpc,
                "grpc://unix:/run/grpc.sock",
                "grpc",
                unix("/run/grpc.sock"),
            ),
            (Grpc, "grpc://backend", "grpc", None),
        ];
        for (kind, text, scheme, endpoint) in cases {
            let got = parse_pass_target(*kind, text, &upstreams);
            assert_eq!(
                got,
                (scheme.to_string(), endpoint.clone()),
                "{kind:?} {text}"
            );
        }
    }

    #[test]
    fn upstream_server_addresses() {
        let none = UpstreamNames::default();
        let cases: &[(&str, Option<Endpoint>)] = &[
            ("127.0.0.1:8001", tcp("127.0.0.1", 8001)),
            ("backend.internal", tcp("backend.internal", 80)),
            ("[::1]:9000", tcp("::1", 9000)),
            ("unix:/run/app.sock", unix("/run/app.sock")),
            ("host:port", None),
            (":80", None),
        ];
        for (text, want) in cases {
            assert_eq!(&parse_address(text, UPSTREAM_SERVER, &none), want, "{text}");
        }
    }
}

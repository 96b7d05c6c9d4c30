//! Where a backend listens, as nginx's upstream and the backends' own configs spell it, and
//! whether a configured listen address serves an upstream address.

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use serde::Serialize;

/// A listen or upstream address.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum BackendAddr {
    Unix(PathBuf),
    /// `host: None` is every address of the host (`0.0.0.0`, `[::]`, `*`, a bare port).
    Tcp {
        host: Option<String>,
        port: u16,
    },
}

impl BackendAddr {
    /// An upstream as the report prints it: `unix:/run/x.sock`, `127.0.0.1:9000`,
    /// `[::1]:9000`, `localhost:8000`; a URL scheme (`http://`, `fastcgi://`) is ignored.
    pub fn parse_upstream(s: &str) -> Option<BackendAddr> {
        let s = s.trim();
        let s = s.split_once("://").map(|(_, rest)| rest).unwrap_or(s);
        if let Some(path) = s.strip_prefix("unix:") {
            // nginx's own log writes `unix:/x.sock:` with a trailing colon.
            let path = path.strip_suffix(':').unwrap_or(path);
            return path
                .starts_with('/')
                .then(|| BackendAddr::Unix(PathBuf::from(path)));
        }
        let s = s.split('/').next().unwrap_or(s);
        host_port(s)
    }

    /// A command-line or config bind as gunicorn (`unix:/x`, `host:port`, `host` = port
    /// 8000) and uwsgi (`/x.sock`, `:3031`, `host:port`) write it. Abstract sockets (`@x`) and
    /// inherited fds (`fd://3`) have no address to match and give `None`.
    pub fn parse_bind(s: &str, default_port: Option<u16>) -> Option<BackendAddr> {
        let s = s.trim().trim_matches(|c| c == '"' || c == '\'');
        if let Some(path) = s.strip_prefix("unix:") {
            return Some(BackendAddr::Unix(PathBuf::from(path)));
        }
        if s.starts_with('/') {
            return Some(BackendAddr::Unix(PathBuf::from(s)));
        }
        if s.starts_with('@') || s.contains("://") || s.is_empty() {
            return None;
        }
        if let Some(a) = host_port(s) {
            return Some(a);
        }
        if let Ok(port) = s.parse::<u16>() {
            return Some(BackendAddr::Tcp { host: None, port });
        }
        // A bare host: gunicorn's default port.
        default_port.map(|port| BackendAddr::Tcp {
            host: normalise_host(s),
            port,
        })
    }

    /// php-fpm's `listen`: `/run/x.sock` (relative paths are relative to `prefix`),
    /// `127.0.0.1:9000`, `[::1]:9000`, `9000` (every address).
    pub fn parse_php_listen(s: &str, prefix: &Path) -> Option<BackendAddr> {
        let s = s.trim();
        if s.is_empty() {
            return None;
        }
        if let Ok(port) = s.parse::<u16>() {
            return Some(BackendAddr::Tcp { host: None, port });
        }
        if let Some(a) = host_port(s) {
            return Some(a);
        }
        let path = Path::new(s);
        Some(BackendAddr::Unix(if path.is_absolute() {
            path.to_path_buf()
        } else {
            prefix.join(path)
        }))
    }

    /// Does a backend listening on `self` accept connections nginx makes to `upstream`?
    ///
    /// A wildcard listen host matches any upstream host: the engine asks only about upstreams
    /// it already knows to be local. `/var/run` is `/run` on every current distribution.
    pub fn serves(&self, upstream: &BackendAddr) -> bool {
        match (self, upstream) {
            (BackendAddr::Unix(a), BackendAddr::Unix(b)) => same_socket_path(a, b),
            (BackendAddr::Tcp { host: lh, port: lp }, BackendAddr::Tcp { host: uh, port: up }) => {
                lp == up
                    && match (lh, uh) {
                        (None, _) => true,
                        (Some(_), None) => false,
                        (Some(l), Some(u)) => same_host(l, u),
                    }
            }
            _ => false,
        }
    }
}

impl std::fmt::Display for BackendAddr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BackendAddr::Unix(p) => write!(f, "unix:{}", p.display()),
            BackendAddr::Tcp { host: None, port } => write!(f, "*:{port}"),
            BackendAddr::Tcp {
                host: Some(h),
                port,
            } if h.contains(':') => write!(f, "[{h}]:{port}"),
            BackendAddr::Tcp {
                host: Some(h),
                port,
            } => write!(f, "{h}:{port}"),
        }
    }
}

/// `host:port` or `[v6]:port`; a wildcard host becomes `None`.
fn host_port(s: &str) -> Option<BackendAddr> {
    let (host, port) = if let Some(rest) = s.strip_prefix('[') {
        let (h, p) = rest.split_once("]:")?;
        (h, p)
    } else {
        let (h, p) = s.rsplit_once(':')?;
        // A bare IPv6 address without brackets is not host:port.
        if h.contains(':') {
            return None;
        }
        (h, p)
    };
    let port = port.parse::<u16>().ok()?;
    Some(BackendAddr::Tcp {
        host: normalise_host(host),
        port,
    })
}

fn normalise_host(h: &str) -> Option<String> {
    let h = h.trim().to_ascii_lowercase();
    match h.as_str() {
        "" | "*" | "0.0.0.0" | "::" | "[::]" => None,
        _ => match h.parse::<IpAddr>() {
            // `::ffff:127.0.0.1` is the IPv4 address as a dual-stack socket reports it.
            Ok(IpAddr::V6(v6)) => match v6.to_ipv4_mapped() {
                Some(v4) => Some(v4.to_string()),
                None => Some(v6.to_string()),
            },
            Ok(ip) => Some(ip.to_string()),
            Err(_) => Some(h),
        },
    }
}

fn same_host(listen: &str, upstream: &str) -> bool {
    // `localhost` resolves to the loopback addresses; anything else must be equal.
    let loopback = |h: &str| h == "localhost" || h == "127.0.0.1" || h == "::1";
    listen == upstream
        || (upstream == "localhost" && loopback(listen))
        || (listen == "localhost" && loopback(upstream))
}

fn same_socket_path(a: &Path, b: &Path) -> bool {
    normalized_socket_path(a) == normalized_socket_path(b)
}

/// A socket path as `serves` compares it: `/var/run/…` is `/run/…`.
pub(crate) fn normalized_socket_path(p: &Path) -> PathBuf {
    match p.strip_prefix("/var/run") {
        Ok(rest) => Path::new("/run").join(rest),
        Err(_) => p.to_path_buf(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn up(s: &str) -> BackendAddr {
        BackendAddr::parse_upstream(s).unwrap()
    }

    #[test]
    fn parses_upstream_forms() {
        assert_eq!(
            up("unix:/run/php/php8.2-fpm.sock"),
            BackendAddr::Unix("/run/php/php8.2-fpm.sock".into())
        );
        assert_eq!(
            up("fastcgi://unix:/run/x.sock:"),
            BackendAddr::Unix("/run/x.sock".into())
        );
        assert_eq!(
            up("[::1]:9000"),
            BackendAddr::Tcp {
                host: Some("::1".into()),
                port: 9000
            }
        );
        assert_eq!(
            up("http://127.0.0.1:8000/app"),
            BackendAddr::Tcp {
                host: Some("127.0.0.1".into()),
                port: 8000
            }
        );
        assert!(BackendAddr::parse_upstream("unix:relative.sock").is_none());
    }

    #[test]
    fn php_listen_forms() {
        let prefix = Path::new("/usr");
        assert_eq!(
            BackendAddr::parse_php_listen("9000", prefix),
            Some(BackendAddr::Tcp {
                host: None,
                port: 9000
            })
        );
        assert_eq!(
            BackendAddr::parse_php_listen("[::]:9001", prefix),
            Some(BackendAddr::Tcp {
                host: None,
                port: 9001
            })
        );
        assert_eq!(
            BackendAddr::parse_php_listen("run/a.sock", Path::new("/srv/fpm")),
            Some(BackendAddr::Unix("/srv/fpm/run/a.sock".into()))
        );
    }

    #[test]
    fn wildcard_and_loopback_matching() {
        let all_9000 = BackendAddr::parse_php_listen("9000", Path::new("/")).unwrap();
        assert!(all_9000.serves(&up("127.0.0.1:9000")));
        assert!(all_9000.serves(&up("[::1]:9000")));
        assert!(!all_9000.serves(&up("127.0.0.1:9001")));
        let lo = BackendAddr::parse_php_listen("127.0.0.1:9000", Path::new("/")).unwrap();
        assert!(lo.serves(&up("localhost:9000")));
        assert!(!lo.serves(&up("10.0.0.5:9000")));
        // A specific listen host does not serve an upstream on every address.
        assert!(!lo.serves(&BackendAddr::Tcp {
            host: None,
            port: 9000
        }));
        let mapped = BackendAddr::parse_bind("[::ffff:127.0.0.1]:8000", None).unwrap();
        assert!(mapped.serves(&up("127.0.0.1:8000")));
    }

    #[test]
    fn unix_paths_match_through_var_run() {
        let l = BackendAddr::Unix("/var/run/php/x.sock".into());
        assert!(l.serves(&up("unix:/run/php/x.sock")));
        assert!(!l.serves(&up("unix:/run/php/y.sock")));
        assert!(!l.serves(&up("127.0.0.1:9000")));
    }

    #[test]
    fn bind_forms() {
        assert_eq!(
            BackendAddr::parse_bind("unix:/run/g.sock", Some(8000)),
            Some(BackendAddr::Unix("/run/g.sock".into()))
        );
        assert_eq!(
            BackendAddr::parse_bind(":3031", None),
            Some(BackendAddr::Tcp {
                host: None,
                port: 3031
            })
        );
        assert_eq!(
            BackendAddr::parse_bind("127.0.0.1", Some(8000)),
            Some(BackendAddr::Tcp {
                host: Some("127.0.0.1".into()),
                port: 8000
            })
        );
        assert_eq!(BackendAddr::parse_bind("fd://3", Some(8000)), None);
        assert_eq!(BackendAddr::parse_bind("@abstract", None), None);
    }
}

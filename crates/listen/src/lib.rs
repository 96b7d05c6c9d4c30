//! What listens on this host, in the agent's network namespace: TCP listeners and listening
//! unix sockets, from the kernel's sock_diag netlink dump (`sock_diag`), or from
//! /proc/net/tcp, tcp6 and unix where netlink does not answer or a fixture root is read.
//!
//! Architecture invariant: the tables are read once per run; every upstream is matched against
//! the same `ListenTable`. Parsing is separate from reading so it is tested on captured text.
//! (procfs would parse these too; the format is small and stable, and hand parsing keeps the
//! captured-text tests trivial and the dependency tree lean.)

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::Path;

use serde::Serialize;
use why502_host::read_to_string_bounded;

/// /proc/net tables of a busy host can be large; 64 MiB covers ~400k sockets.
const MAX_TABLE_BYTES: u64 = 64 * 1024 * 1024;

const TCP_LISTEN: &str = "0A";
/// `__SO_ACCEPTCON`: the socket is listening.
const UNIX_ACCEPTCON: u32 = 0x0001_0000;

/// Where the listeners of unix sockets come from, as evidence names it.
pub const UNIX_SOURCE: &str = "listening unix sockets (sock_diag, else /proc/net/unix)";
/// Where TCP listeners come from, as evidence names it.
pub const TCP_SOURCE: &str = "listening TCP sockets (sock_diag, else /proc/net/tcp, tcp6)";

mod sock_diag;

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TcpListener {
    pub addr: IpAddr,
    pub port: u16,
    pub inode: u64,
    pub uid: u32,
    /// Connections waiting to be accepted (rx_queue of a LISTEN socket).
    pub accept_queue: u32,
    /// The accept backlog limit (sock_diag's wqueue of a LISTEN socket; /proc/net/tcp prints 0).
    pub backlog: u32,
}

impl TcpListener {
    /// `127.0.0.1:8000`, `[::]:8000`.
    pub fn endpoint(&self) -> String {
        match self.addr {
            IpAddr::V4(a) => format!("{a}:{}", self.port),
            IpAddr::V6(a) => format!("[{a}]:{}", self.port),
        }
    }

    /// Would a connection to `ip:port` reach this listener? Wildcards accept every local
    /// address; `::` also accepts IPv4 (Linux's default bindv6only=0); an IPv4-mapped
    /// listener is its IPv4 address.
    pub fn accepts(&self, ip: IpAddr, port: u16) -> bool {
        if self.port != port {
            return false;
        }
        let mine = canonical(self.addr);
        let theirs = canonical(ip);
        match mine {
            IpAddr::V4(a) if a.is_unspecified() => theirs.is_ipv4(),
            IpAddr::V6(a) if a.is_unspecified() => true,
            _ => mine == theirs,
        }
    }
}

fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6
            .to_ipv4_mapped()
            .map(IpAddr::V4)
            .unwrap_or(IpAddr::V6(v6)),
        v4 => v4,
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct UnixListener {
    /// The bound path; abstract sockets start with `@`.
    pub path: String,
    pub inode: u64,
}

/// Every listener in the agent's network namespace.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ListenTable {
    pub tcp: Vec<TcpListener>,
    pub unix: Vec<UnixListener>,
    /// Tables that could not be read, with the reason.
    pub unreadable: Vec<String>,
    /// Why the sock_diag dump was not used and /proc/net was read instead.
    pub fell_back: Option<String>,
}

impl ListenTable {
    /// The live host's listeners from sock_diag (a millisecond, however many connections the
    /// host holds), each family falling back to /proc/net when netlink does not answer; a
    /// `proc_root` other than /proc (captured fixtures) is read as files.
    pub fn read(proc_root: &Path) -> ListenTable {
        if proc_root != Path::new("/proc") {
            return ListenTable::read_proc(proc_root);
        }
        let v4 = sock_diag::tcp_listeners(libc::AF_INET as u8);
        // No IPv6 in this kernel: the dump is refused, and there is nothing to miss.
        let v6 = sock_diag::tcp_listeners(libc::AF_INET6 as u8).or_else(|e| {
            if Path::new("/proc/net/tcp6").exists() {
                Err(e)
            } else {
                Ok(Vec::new())
            }
        });
        let unix = sock_diag::unix_listeners();
        match (v4, v6, unix) {
            (Ok(mut tcp), Ok(tcp6), Ok(unix)) => {
                tcp.extend(tcp6);
                ListenTable {
                    tcp,
                    unix,
                    ..ListenTable::default()
                }
            }
            (v4, v6, unix) => {
                let why = [v4.err(), v6.err(), unix.err()]
                    .into_iter()
                    .flatten()
                    .map(|e| e.0)
                    .collect::<Vec<_>>()
                    .join("; ");
                ListenTable {
                    fell_back: Some(why),
                    ..ListenTable::read_proc(proc_root)
                }
            }
        }
    }

    /// The listeners from /proc/net/tcp, tcp6 and unix under `proc_root`.
    pub fn read_proc(proc_root: &Path) -> ListenTable {
        let mut table = ListenTable::default();
        let net = proc_root.join("net");
        for (name, v6) in [("tcp", false), ("tcp6", true)] {
            match read_to_string_bounded(&net.join(name), MAX_TABLE_BYTES) {
                Ok(text) => table.tcp.extend(parse_tcp(&text, v6)),
                // No tcp6 table means IPv6 is disabled, which is not a gap in what we saw.
                Err(e) if v6 && e.is_not_found() => {}
                Err(e) => table.unreadable.push(e.to_string()),
            }
        }
        match read_to_string_bounded(&net.join("unix"), MAX_TABLE_BYTES) {
            Ok(text) => table.unix = parse_unix(&text),
            Err(e) => table.unreadable.push(e.to_string()),
        }
        table
    }

    pub fn tcp_accepting(&self, ip: IpAddr, port: u16) -> Option<&TcpListener> {
        self.tcp.iter().find(|l| l.accepts(ip, port))
    }

    /// Listening unix sockets bound to `path` (as bound: the kernel shows the path the
    /// backend passed to bind(), even after the file was unlinked).
    pub fn unix_bound_to(&self, path: &Path) -> Vec<&UnixListener> {
        let wanted = path.to_string_lossy();
        self.unix.iter().filter(|l| l.path == wanted).collect()
    }

    pub fn unix_by_inode(&self, inode: u64) -> Option<&UnixListener> {
        self.unix.iter().find(|l| l.inode == inode)
    }
}

/// Parse /proc/net/tcp or tcp6, keeping LISTEN sockets.
pub fn parse_tcp(text: &str, v6: bool) -> Vec<TcpListener> {
    text.lines()
        .skip(1)
        .filter_map(|line| parse_tcp_line(line, v6))
        .collect()
}

fn parse_tcp_line(line: &str, v6: bool) -> Option<TcpListener> {
    let f: Vec<&str> = line.split_whitespace().collect();
    // sl local rem st tx:rx tr:when retrnsmt uid timeout inode
    if f.get(3)? != &TCP_LISTEN {
        return None;
    }
    let (addr_hex, port_hex) = f.get(1)?.split_once(':')?;
    let addr = if v6 {
        IpAddr::V6(parse_ipv6_hex(addr_hex)?)
    } else {
        IpAddr::V4(parse_ipv4_hex(addr_hex)?)
    };
    let port = u16::from_str_radix(port_hex, 16).ok()?;
    let (tx, rx) = f.get(4)?.split_once(':')?;
    Some(TcpListener {
        addr,
        port,
        backlog: u32::from_str_radix(tx, 16).ok()?,
        accept_queue: u32::from_str_radix(rx, 16).ok()?,
        uid: f.get(7)?.parse().ok()?,
        inode: f.get(9)?.parse().ok()?,
    })
}

/// The kernel prints each 32-bit word in host byte order (little-endian here).
fn parse_ipv4_hex(hex: &str) -> Option<Ipv4Addr> {
    let word = u32::from_str_radix(hex, 16).ok()?;
    Some(Ipv4Addr::from(word.to_le_bytes()))
}

fn parse_ipv6_hex(hex: &str) -> Option<Ipv6Addr> {
    if hex.len() != 32 {
        return None;
    }
    let mut bytes = [0u8; 16];
    for (i, chunk) in bytes.chunks_mut(4).enumerate() {
        let word = u32::from_str_radix(hex.get(i * 8..i * 8 + 8)?, 16).ok()?;
        chunk.copy_from_slice(&word.to_le_bytes());
    }
    Some(Ipv6Addr::from(bytes))
}

/// Parse /proc/net/unix, keeping listening sockets that have a name.
pub fn parse_unix(text: &str) -> Vec<UnixListener> {
    text.lines().skip(1).filter_map(parse_unix_line).collect()
}

fn parse_unix_line(line: &str) -> Option<UnixListener> {
    // Num RefCount Protocol Flags Type St Inode Path — the path may contain spaces.
    let mut rest = line.trim_start();
    let mut fields = Vec::with_capacity(7);
    for _ in 0..7 {
        let end = rest.find(char::is_whitespace).unwrap_or(rest.len());
        fields.push(&rest[..end]);
        rest = rest[end..].trim_start();
    }
    let flags = u32::from_str_radix(fields.get(3)?, 16).ok()?;
    if flags & UNIX_ACCEPTCON == 0 || rest.is_empty() {
        return None;
    }
    Some(UnixListener {
        path: rest.to_string(),
        inode: fields.get(6)?.parse().ok()?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    // Captured from a Debian 12 host: nginx on 0.0.0.0:80 and [::]:80, php-fpm on
    // 127.0.0.1:9000, one established connection, a listener on 127.0.0.2:8000.
    const TCP: &str = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000:0050 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 21934 1 0000000000000000 100 0 0 10 0
   1: 0100007F:2328 00000000:0000 0A 00000000:00000003 00:00000000 00000000    33        0 30211 1 0000000000000000 100 0 0 10 0
   2: 0100007F:0050 0100007F:C350 01 00000000:00000000 00:00000000 00000000    33        0 30999 1 0000000000000000 20 4 30 10 -1
   3: 0200007F:1F40 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 41000 1 0000000000000000 100 0 0 10 0
";
    const TCP6: &str = "  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000000000000000000000000000:0050 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 21935 1 0000000000000000 100 0 0 10 0
   1: 0000000000000000FFFF00000100007F:1F41 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 21936 1 0000000000000000 100 0 0 10 0
   2: 00000000000000000000000001000000:1F42 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 21937 1 0000000000000000 100 0 0 10 0
";
    const UNIX: &str = "Num       RefCount Protocol Flags    Type St Inode Path
0000000000000000: 00000002 00000000 00010000 0001 01 21365 /run/php/php8.2-fpm.sock
0000000000000000: 00000003 00000000 00000000 0001 03 21366 /run/php/php8.2-fpm.sock
0000000000000000: 00000002 00000000 00010000 0001 01 21367 @/tmp/.X11-unix/X0
0000000000000000: 00000002 00000000 00010000 0001 01 21368 /run/my app/app.sock
0000000000000000: 00000002 00000000 00000000 0002 01 21369 /run/systemd/notify
0000000000000000: 00000002 00000000 00010000 0001 01 21370
";

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("ip literal")
    }

    #[test]
    fn tcp_keeps_only_listeners_with_decoded_addresses() {
        let l = parse_tcp(TCP, false);
        let eps: Vec<String> = l.iter().map(TcpListener::endpoint).collect();
        assert_eq!(eps, ["0.0.0.0:80", "127.0.0.1:9000", "127.0.0.2:8000"]);
        assert_eq!(l[1].uid, 33);
        assert_eq!(l[1].inode, 30211);
        assert_eq!(l[1].accept_queue, 3);
    }

    #[test]
    fn tcp6_decodes_wildcard_mapped_and_loopback() {
        let l = parse_tcp(TCP6, true);
        let eps: Vec<String> = l.iter().map(TcpListener::endpoint).collect();
        assert_eq!(eps, ["[::]:80", "[::ffff:127.0.0.1]:8001", "[::1]:8002"]);
    }

    #[test]
    fn wildcard_and_mapped_matching() {
        let mut l = parse_tcp(TCP, false);
        l.extend(parse_tcp(TCP6, true));
        let table = ListenTable {
            tcp: l,
            ..Default::default()
        };
        let cases = [
            ("127.0.0.1", 80, Some(21934)), // 0.0.0.0 wildcard
            ("::1", 80, Some(21935)),       // :: wildcard
            ("127.0.0.1", 9000, Some(30211)),
            ("127.0.0.2", 9000, None), // bound to 127.0.0.1 only
            ("127.0.0.1", 8000, None), // bound to 127.0.0.2 only
            ("127.0.0.2", 8000, Some(41000)),
            ("127.0.0.1", 8001, Some(21936)), // IPv4-mapped listener
            ("::1", 8002, Some(21937)),
            ("127.0.0.1", 8002, None),
        ];
        for (addr, port, want) in cases {
            let got = table.tcp_accepting(ip(addr), port).map(|l| l.inode);
            assert_eq!(got, want, "{addr}:{port}");
        }
    }

    #[test]
    fn ipv4_on_v6_wildcard_is_accepted() {
        let table = ListenTable {
            tcp: parse_tcp(TCP6, true),
            ..Default::default()
        };
        assert_eq!(
            table.tcp_accepting(ip("127.0.0.1"), 80).map(|l| l.inode),
            Some(21935)
        );
    }

    #[test]
    fn unix_keeps_named_listeners_with_spaces() {
        let l = parse_unix(UNIX);
        let paths: Vec<&str> = l.iter().map(|u| u.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "/run/php/php8.2-fpm.sock",
                "@/tmp/.X11-unix/X0",
                "/run/my app/app.sock"
            ]
        );
        let table = ListenTable {
            unix: l,
            ..Default::default()
        };
        assert_eq!(
            table.unix_bound_to(Path::new("/run/php/php8.2-fpm.sock"))[0].inode,
            21365
        );
    }

    #[test]
    fn garbage_lines_are_skipped() {
        assert!(parse_tcp("header\nnot a line\n 0: zz:zz 0 0A\n", false).is_empty());
        assert!(parse_unix("header\n\u{0}\u{1}garbage\n").is_empty());
    }

    #[test]
    fn reads_this_hosts_tables() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let table = ListenTable::read(Path::new("/proc"));
        assert!(table.unreadable.is_empty(), "{:?}", table.unreadable);
        assert!(table.tcp_accepting(ip("127.0.0.1"), port).is_some());
    }
}

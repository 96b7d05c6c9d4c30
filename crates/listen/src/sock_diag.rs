//! Listening sockets from the kernel's `sock_diag` netlink interface (inet_diag for TCP,
//! unix_diag for unix sockets): the same answer as /proc/net/{tcp,tcp6,unix}, asked with a
//! filter on the LISTEN state. Reading /proc/net/tcp makes the kernel walk every bucket of
//! the shared TCP hash table (~14 ms here even in an empty network namespace); the dump of
//! listeners takes about a millisecond.
//!
//! Hand-written (sock_diag(7), linux/inet_diag.h, linux/unix_diag.h): the request and reply
//! are a few fixed structs, sent and received by `why502_host::netlink` (every receive has a
//! timeout). A reply that does not parse is an error, and the caller falls back to /proc/net.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use why502_host::netlink::{self, NetlinkError};

use crate::{TcpListener, UnixListener};

const NETLINK_SOCK_DIAG: libc::c_int = 4;
const SOCK_DIAG_BY_FAMILY: u16 = 20;
const TCP_LISTEN: u32 = 10;
const UDIAG_SHOW_NAME: u32 = 0x1;
const UNIX_DIAG_NAME: u16 = 0;
/// `struct inet_diag_msg`: family, state, timer, retrans, the 48-byte sockid, then expires,
/// rqueue, wqueue, uid, inode.
const INET_DIAG_MSG_LEN: usize = 72;
/// `struct unix_diag_msg`: family, type, state, pad, ino, cookie[2].
const UNIX_DIAG_MSG_LEN: usize = 16;

/// What went wrong talking to the kernel (the caller reads /proc/net instead).
#[derive(Debug)]
pub struct DiagError(pub String);

/// TCP listeners of `family` (AF_INET or AF_INET6).
pub fn tcp_listeners(family: u8) -> Result<Vec<TcpListener>, DiagError> {
    // struct inet_diag_req_v2: family, protocol, ext, pad, states, sockid (48 bytes).
    let mut req = Vec::with_capacity(56);
    req.extend_from_slice(&[family, libc::IPPROTO_TCP as u8, 0, 0]);
    req.extend_from_slice(&(1u32 << TCP_LISTEN).to_ne_bytes());
    req.extend_from_slice(&[0u8; 48]);
    let mut out = Vec::new();
    dump(&req, |msg| {
        if msg.len() < INET_DIAG_MSG_LEN {
            return Err(DiagError(format!("inet_diag_msg of {} bytes", msg.len())));
        }
        let sport = u16::from_be_bytes([msg[4], msg[5]]);
        let addr = match msg[0] {
            f if f == libc::AF_INET as u8 => {
                IpAddr::V4(Ipv4Addr::new(msg[8], msg[9], msg[10], msg[11]))
            }
            _ => {
                let mut b = [0u8; 16];
                b.copy_from_slice(&msg[8..24]);
                IpAddr::V6(Ipv6Addr::from(b))
            }
        };
        let word = |at: usize| u32::from_ne_bytes([msg[at], msg[at + 1], msg[at + 2], msg[at + 3]]);
        out.push(TcpListener {
            addr,
            port: sport,
            accept_queue: word(56),
            backlog: word(60),
            uid: word(64),
            inode: u64::from(word(68)),
        });
        Ok(())
    })?;
    Ok(out)
}

/// Listening unix sockets that have a name (abstract ones as `@name`, as /proc/net/unix).
pub fn unix_listeners() -> Result<Vec<UnixListener>, DiagError> {
    // struct unix_diag_req: family, protocol, pad[2], states, ino, show, cookie[2].
    let mut req = Vec::with_capacity(24);
    req.extend_from_slice(&[libc::AF_UNIX as u8, 0, 0, 0]);
    req.extend_from_slice(&(1u32 << TCP_LISTEN).to_ne_bytes());
    req.extend_from_slice(&0u32.to_ne_bytes());
    req.extend_from_slice(&UDIAG_SHOW_NAME.to_ne_bytes());
    req.extend_from_slice(&[0u8; 8]);
    let mut out = Vec::new();
    dump(&req, |msg| {
        if msg.len() < UNIX_DIAG_MSG_LEN {
            return Err(DiagError(format!("unix_diag_msg of {} bytes", msg.len())));
        }
        let inode = u64::from(u32::from_ne_bytes([msg[4], msg[5], msg[6], msg[7]]));
        let mut attrs = &msg[UNIX_DIAG_MSG_LEN..];
        while attrs.len() >= 4 {
            let len = usize::from(u16::from_ne_bytes([attrs[0], attrs[1]]));
            let kind = u16::from_ne_bytes([attrs[2], attrs[3]]);
            if len < 4 || len > attrs.len() {
                break;
            }
            if kind == UNIX_DIAG_NAME {
                let name = &attrs[4..len];
                // As /proc/net/unix prints them: an abstract name with each NUL as `@`, a
                // path up to its terminating NUL.
                let path = match name.split_first() {
                    Some((0, rest)) => {
                        let shown: Vec<u8> = rest
                            .iter()
                            .map(|&b| if b == 0 { b'@' } else { b })
                            .collect();
                        format!("@{}", String::from_utf8_lossy(&shown))
                    }
                    _ => {
                        let end = name.iter().position(|&b| b == 0).unwrap_or(name.len());
                        String::from_utf8_lossy(&name[..end]).into_owned()
                    }
                };
                if !path.is_empty() {
                    out.push(UnixListener { path, inode });
                }
            }
            attrs = &attrs[align4(len).min(attrs.len())..];
        }
        Ok(())
    })?;
    Ok(out)
}

fn align4(n: usize) -> usize {
    (n + 3) & !3
}

impl From<NetlinkError> for DiagError {
    fn from(e: NetlinkError) -> DiagError {
        DiagError(format!("sock_diag: {e}"))
    }
}

/// One SOCK_DIAG_BY_FAMILY dump; each reply's payload to `each`.
fn dump(
    request: &[u8],
    mut each: impl FnMut(&[u8]) -> Result<(), DiagError>,
) -> Result<(), DiagError> {
    netlink::dump(NETLINK_SOCK_DIAG, SOCK_DIAG_BY_FAMILY, request, |_, msg| {
        each(msg)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Listeners this test opens are in the dump with the inode, port, backlog and path
    /// /proc/net shows for them.
    #[test]
    fn the_dump_agrees_with_proc_net_on_our_own_listeners() {
        let tcp = std::net::TcpListener::bind("127.0.0.1:0").expect("bind tcp");
        let port = tcp.local_addr().expect("addr").port();
        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().join("diag.sock");
        let _unix = std::os::unix::net::UnixListener::bind(&path).expect("bind unix");

        let from_proc = crate::ListenTable::read_proc(std::path::Path::new("/proc"));
        let proc_tcp = from_proc
            .tcp
            .iter()
            .find(|l| l.port == port)
            .expect("our TCP listener in /proc/net/tcp")
            .clone();
        let diag_tcp = tcp_listeners(libc::AF_INET as u8).expect("inet_diag dump");
        let ours = diag_tcp
            .iter()
            .find(|l| l.port == port)
            .expect("our TCP listener in the dump");
        // /proc/net/tcp prints 0 as a listener's tx_queue; sock_diag gives the backlog limit
        // (std's listen(2) asks for 128).
        assert_eq!(ours.backlog, 128);
        let same = TcpListener {
            backlog: proc_tcp.backlog,
            ..ours.clone()
        };
        assert_eq!(same, proc_tcp);

        let shown = path.display().to_string();
        let proc_unix = from_proc
            .unix
            .iter()
            .find(|l| l.path == shown)
            .expect("our unix listener in /proc/net/unix")
            .clone();
        let diag_unix = unix_listeners().expect("unix_diag dump");
        assert_eq!(diag_unix.iter().find(|l| l.path == shown), Some(&proc_unix));
        // Nothing /proc/net shows as listening is missing from the dump (bar churn between
        // the two reads, which this test's host does not have).
        for l in &from_proc.unix {
            assert!(
                diag_unix.iter().any(|d| d.inode == l.inode),
                "{l:?} is missing from the dump"
            );
        }
    }
}

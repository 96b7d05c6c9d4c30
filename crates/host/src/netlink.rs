//! One netlink dump request and its multipart reply: what the listen probe (sock_diag) and
//! the firewall probe (nf_tables' table list) ask the kernel.
//!
//! Hand-written over libc: a request is a 16-byte header and a few fixed bytes, the reply a
//! sequence of such headers, and no netlink crate is among the workspace's dependencies.
//! Every receive has a timeout and the reply a size cap; a reply that does not parse is an
//! error, never a short answer taken as whole.

/// Bytes of `struct nlmsghdr`.
pub const NLMSG_HDRLEN: usize = 16;
const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
/// A dump of a host with hundreds of thousands of listeners ends well before this.
const MAX_REPLY_BYTES: usize = 256 * 1024 * 1024;
/// The kernel answers a dump from memory, at once; a second is far beyond any real reply.
const RECEIVE_TIMEOUT_SECS: libc::time_t = 1;

/// What went wrong asking the kernel.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NetlinkError {
    #[error("netlink {what}: {}", std::io::Error::from_raw_os_error(*errno))]
    Os { what: &'static str, errno: i32 },
    /// The kernel answered the request with an error (NLMSG_ERROR): EPERM without
    /// CAP_NET_ADMIN, EOPNOTSUPP where the subsystem is not built.
    #[error("the kernel refused the dump: {}", std::io::Error::from_raw_os_error(*errno))]
    Refused { errno: i32 },
    #[error("netlink reply malformed: {0}")]
    Malformed(String),
}

impl NetlinkError {
    fn last_os(what: &'static str) -> NetlinkError {
        NetlinkError::Os {
            what,
            errno: std::io::Error::last_os_error().raw_os_error().unwrap_or(0),
        }
    }
}

/// A closed-on-drop file descriptor.
struct Fd(libc::c_int);

impl Drop for Fd {
    fn drop(&mut self) {
        // SAFETY: the descriptor is ours and closed once.
        unsafe {
            libc::close(self.0);
        }
    }
}

fn align4(n: usize) -> usize {
    (n + 3) & !3
}

/// Send one `NLM_F_REQUEST | NLM_F_DUMP` message of `msg_type` with `payload` on a
/// `protocol` socket (NETLINK_SOCK_DIAG, NETLINK_NETFILTER...) and hand each reply's type and
/// payload to `each` until NLMSG_DONE. `each` returning an error ends the dump with it.
pub fn dump<E: From<NetlinkError>>(
    protocol: libc::c_int,
    msg_type: u16,
    payload: &[u8],
    mut each: impl FnMut(u16, &[u8]) -> Result<(), E>,
) -> Result<(), E> {
    // SAFETY: plain socket syscall.
    let fd = unsafe {
        libc::socket(
            libc::AF_NETLINK,
            libc::SOCK_DGRAM | libc::SOCK_CLOEXEC,
            protocol,
        )
    };
    if fd < 0 {
        return Err(NetlinkError::last_os("socket").into());
    }
    let fd = Fd(fd);
    let timeout = libc::timeval {
        tv_sec: RECEIVE_TIMEOUT_SECS,
        tv_usec: 0,
    };
    // SAFETY: setsockopt with a timeval that outlives the call.
    let set = unsafe {
        libc::setsockopt(
            fd.0,
            libc::SOL_SOCKET,
            libc::SO_RCVTIMEO,
            (&timeout as *const libc::timeval).cast(),
            std::mem::size_of::<libc::timeval>() as libc::socklen_t,
        )
    };
    if set != 0 {
        // Without the timeout a receive could wait forever.
        return Err(NetlinkError::last_os("receive timeout").into());
    }
    let mut msg = Vec::with_capacity(NLMSG_HDRLEN + payload.len());
    msg.extend_from_slice(&((NLMSG_HDRLEN + payload.len()) as u32).to_ne_bytes());
    msg.extend_from_slice(&msg_type.to_ne_bytes());
    msg.extend_from_slice(&((libc::NLM_F_REQUEST | libc::NLM_F_DUMP) as u16).to_ne_bytes());
    msg.extend_from_slice(&1u32.to_ne_bytes()); // seq
    msg.extend_from_slice(&0u32.to_ne_bytes()); // pid: the kernel fills it in
    msg.extend_from_slice(payload);
    // SAFETY: zeroed sockaddr_nl is the kernel as destination.
    let mut kernel: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
    kernel.nl_family = libc::AF_NETLINK as libc::sa_family_t;
    // SAFETY: sendto with buffers that outlive the call.
    let sent = unsafe {
        libc::sendto(
            fd.0,
            msg.as_ptr().cast(),
            msg.len(),
            0,
            (&kernel as *const libc::sockaddr_nl).cast(),
            std::mem::size_of::<libc::sockaddr_nl>() as libc::socklen_t,
        )
    };
    if sent < 0 {
        return Err(NetlinkError::last_os("send").into());
    }
    let mut buf = vec![0u8; 64 * 1024];
    let mut total = 0usize;
    loop {
        // SAFETY: recv into a buffer we own, of its length.
        let n = unsafe { libc::recv(fd.0, buf.as_mut_ptr().cast(), buf.len(), 0) };
        if n < 0 {
            return Err(NetlinkError::last_os("receive").into());
        }
        let n = n as usize;
        total += n;
        if n == 0 || total > MAX_REPLY_BYTES {
            return Err(
                NetlinkError::Malformed("the reply ended early or grew too large".into()).into(),
            );
        }
        let mut at = 0;
        while at + NLMSG_HDRLEN <= n {
            let h = &buf[at..n];
            let len = u32::from_ne_bytes([h[0], h[1], h[2], h[3]]) as usize;
            let kind = u16::from_ne_bytes([h[4], h[5]]);
            if len < NLMSG_HDRLEN || len > h.len() {
                return Err(NetlinkError::Malformed(format!("a message of {len} bytes")).into());
            }
            match kind {
                NLMSG_DONE => return Ok(()),
                NLMSG_ERROR => {
                    let errno = h
                        .get(NLMSG_HDRLEN..NLMSG_HDRLEN + 4)
                        .map(|e| -i32::from_ne_bytes([e[0], e[1], e[2], e[3]]))
                        .unwrap_or(0);
                    return Err(NetlinkError::Refused { errno }.into());
                }
                _ => each(kind, &h[NLMSG_HDRLEN..len])?,
            }
            at += align4(len);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// NETLINK_ROUTE's link dump needs no privilege and always holds `lo`.
    #[test]
    fn a_route_dump_lists_the_links_and_ends() {
        const NETLINK_ROUTE: libc::c_int = 0;
        const RTM_GETLINK: u16 = 18;
        const RTM_NEWLINK: u16 = 16;
        // struct ifinfomsg: family, pad, type, index, flags, change (16 bytes).
        let ifinfo = [0u8; 16];
        let mut links = 0;
        let mut other = Vec::new();
        dump::<NetlinkError>(NETLINK_ROUTE, RTM_GETLINK, &ifinfo, |kind, body| {
            if kind == RTM_NEWLINK && body.len() >= 16 {
                links += 1;
            } else {
                other.push(kind);
            }
            Ok(())
        })
        .expect("link dump");
        assert!(links >= 1, "no link in the dump");
        assert!(other.is_empty(), "unexpected message types {other:?}");
    }

    #[test]
    fn an_error_from_the_callback_ends_the_dump() {
        const NETLINK_ROUTE: libc::c_int = 0;
        const RTM_GETLINK: u16 = 18;
        let mut calls = 0;
        let got = dump::<NetlinkError>(NETLINK_ROUTE, RTM_GETLINK, &[0u8; 16], |_, _| {
            calls += 1;
            Err(NetlinkError::Malformed("stop".into()))
        });
        assert_eq!(got, Err(NetlinkError::Malformed("stop".into())));
        assert_eq!(calls, 1);
    }

    #[test]
    fn an_unknown_protocol_is_an_os_error() {
        // Netlink protocol numbers stop well below 200.
        let got = dump::<NetlinkError>(200, 0, &[], |_, _| Ok(()));
        assert!(
            matches!(got, Err(NetlinkError::Os { what: "socket", .. })),
            "{got:?}"
        );
    }
}

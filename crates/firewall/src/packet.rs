use std::net::IpAddr;

/// The packet nginx sends to open a connection to one backend: a TCP SYN, conntrack state
/// `new`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Packet {
    /// nginx's source address; the unspecified address (0.0.0.0 / ::) means "not known", and
    /// rules on the source address are then reported as "could not tell".
    pub saddr: IpAddr,
    pub daddr: IpAddr,
    pub dport: u16,
    /// nginx's ephemeral source port is normally not known (`None`).
    pub sport: Option<u16>,
    /// The backend address is one of this host's (loopback included): the packet goes out on
    /// `lo` and comes back in on `lo`.
    pub local: bool,
    /// Output interface of a remote backend when the caller resolved the route; `None` means
    /// unknown, and rules conditioned on it are reported as "could not tell". Ignored for a
    /// local backend (always `lo`).
    pub oif: Option<String>,
}

/// Which IP version the packet is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PacketFamily {
    V4,
    V6,
}

impl Packet {
    /// A SYN to `daddr:dport` with unknown source port and (for remote backends) unknown
    /// output interface.
    pub fn tcp(saddr: IpAddr, daddr: IpAddr, dport: u16, local: bool) -> Packet {
        Packet {
            saddr,
            daddr,
            dport,
            sport: None,
            local,
            oif: None,
        }
    }

    pub fn family(&self) -> PacketFamily {
        match self.daddr {
            IpAddr::V4(_) => PacketFamily::V4,
            IpAddr::V6(_) => PacketFamily::V6,
        }
    }

    /// nginx connecting to `[::ffff:a.b.c.d]` sends IPv4 packets: evaluate them as such.
    pub(crate) fn normalized(&self) -> Packet {
        let unmap = |a: IpAddr| match a {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(a, IpAddr::V4),
            v4 => v4,
        };
        let mut p = self.clone();
        p.daddr = unmap(p.daddr);
        p.saddr = unmap(p.saddr);
        // A v4 destination with a v6 source cannot be sent: treat the source as unknown.
        if p.saddr.is_ipv4() != p.daddr.is_ipv4() {
            p.saddr = match p.daddr {
                IpAddr::V4(_) => IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED),
                IpAddr::V6(_) => IpAddr::V6(std::net::Ipv6Addr::UNSPECIFIED),
            };
        }
        p
    }
}

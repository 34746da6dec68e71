//! Announced data endpoints a NAT breaks: an address that is not the one
//! the control connection uses at the announcing end (a server behind NAT
//! announcing its inside address in `227`, seen from the client; a NATed
//! client's `PORT`/`EPRT`, seen from the server), or, seen from the NATed
//! end itself, its own inside address announced to a peer at a routable
//! address, which can only have come through a NAT. Facts only;
//! [`super::cause`] words them.

use std::net::IpAddr;

use super::model::{Conn, Expectation, Session};
use crate::ftp::Side;

/// An announcement that names another address than the control
/// connection's at that end.
#[derive(Clone, Copy, Debug)]
pub struct Mismatch<'a> {
    pub announced: &'a Expectation,
    /// The announced address.
    pub addr: IpAddr,
    /// The address the control connection uses at the announcing end.
    pub control_addr: IpAddr,
    /// The data connection that answered the announcement, if any.
    pub conn: Option<&'a Conn>,
    /// `Some(peer)` when the announced address is the control connection's
    /// own at this end, but an inside one, and the peer's is routable:
    /// the NAT is inferred, not seen.
    pub inferred_from: Option<IpAddr>,
}

/// Where a data connection for a mismatched announcement went.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Went {
    /// To the announced address.
    Announced,
    /// To the control connection's address instead: the client (or
    /// server) substituted it, as many clients do with a private `227`.
    ControlAddress,
    /// Somewhere else.
    Elsewhere(IpAddr),
}

impl Mismatch<'_> {
    /// Where the data connection went, if one answered.
    pub fn went(&self) -> Option<Went> {
        let conn = self.conn?;
        let to = match self.announced.announced_by {
            Side::Server => conn.server.ip(),
            Side::Client => conn.client.ip(),
        }
        .to_canonical();
        Some(if to == self.addr {
            Went::Announced
        } else if to == self.control_addr {
            Went::ControlAddress
        } else {
            Went::Elsewhere(to)
        })
    }
}

/// The session's first mismatched announcement, preferring one whose data
/// connection never got through.
pub fn first_mismatch(session: &Session) -> Option<Mismatch<'_>> {
    let mut found = session.expectations.iter().filter_map(|announced| {
        let addr = announced.addr?.to_canonical();
        let control_addr = match announced.announced_by {
            Side::Server => session.control.server.ip(),
            Side::Client => session.control.client.ip(),
        }
        .to_canonical();
        let peer = match announced.announced_by {
            Side::Server => session.control.client.ip(),
            Side::Client => session.control.server.ip(),
        }
        .to_canonical();
        let inferred = addr == control_addr && inside_address(addr).is_some() && routable(peer);
        (addr != control_addr || inferred).then(|| Mismatch {
            announced,
            addr,
            control_addr,
            conn: announced.used_by.and_then(|id| session.get_conn(id)),
            inferred_from: inferred.then_some(peer),
        })
    });
    let first = found.next()?;
    let failed = |m: &Mismatch| !m.conn.is_some_and(Conn::established);
    if failed(&first) {
        return Some(first);
    }
    Some(found.find(failed).unwrap_or(first))
}

/// An address a NAT would have to translate to reach an inside one: not
/// inside itself, nor loopback, link-local or unspecified.
pub fn routable(addr: IpAddr) -> bool {
    let addr = addr.to_canonical();
    let local = match addr {
        IpAddr::V4(v4) => v4.is_loopback() || v4.is_link_local() || v4.is_unspecified(),
        IpAddr::V6(v6) => {
            v6.is_loopback() || v6.is_unspecified() || v6.segments()[0] & 0xffc0 == 0xfe80
        }
    };
    !local && inside_address(addr).is_none()
}

/// What kind of address an inside (non-routable) one is, or `None` for a
/// routable address.
pub fn inside_address(addr: IpAddr) -> Option<&'static str> {
    match addr.to_canonical() {
        IpAddr::V4(v4) if v4.is_private() => Some("a private address (RFC 1918)"),
        // 100.64.0.0/10, carrier-grade NAT's shared space.
        IpAddr::V4(v4) if v4.octets()[0] == 100 && v4.octets()[1] & 0xc0 == 64 => {
            Some("a carrier-grade NAT address (RFC 6598)")
        }
        IpAddr::V6(v6) if v6.segments()[0] & 0xfe00 == 0xfc00 => {
            Some("a unique local address (RFC 4193)")
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routable_addresses_are_neither_inside_nor_local() {
        for (addr, routable_) in [
            ("203.0.113.2", true),
            ("2001:db8::2", true),
            ("10.0.0.2", false),
            ("127.0.0.1", false),
            ("169.254.1.1", false),
            ("fe80::1", false),
            ("::1", false),
            ("::ffff:127.0.0.1", false),
        ] {
            assert_eq!(routable(addr.parse().unwrap()), routable_, "{addr}");
        }
    }

    #[test]
    fn inside_addresses_are_told_from_routable_ones() {
        for (addr, kind) in [
            ("10.0.0.2", Some("a private address (RFC 1918)")),
            ("172.31.255.1", Some("a private address (RFC 1918)")),
            ("192.168.1.1", Some("a private address (RFC 1918)")),
            ("100.64.0.1", Some("a carrier-grade NAT address (RFC 6598)")),
            (
                "100.127.255.254",
                Some("a carrier-grade NAT address (RFC 6598)"),
            ),
            ("fd00::1", Some("a unique local address (RFC 4193)")),
            ("::ffff:10.1.2.3", Some("a private address (RFC 1918)")),
            ("100.128.0.1", None),
            ("172.32.0.1", None),
            ("203.0.113.1", None),
            ("2001:db8::1", None),
        ] {
            assert_eq!(inside_address(addr.parse().unwrap()), kind, "{addr}");
        }
    }
}

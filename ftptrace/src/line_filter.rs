//! The filters an operator reaches for (`--client`, `--server`, `--ipv4`,
//! `--ipv6`, `--netns`, `--failures-only`), applied to what is written,
//! after the kernel's port filter: the counts (`stats`, `--metrics`) still
//! see everything. A session passes when its control connection's client
//! and server do and it met a namespace named; an event when its own ends
//! do, or when its session passed. With `--failures-only` a session's
//! event lines are held until it ends and written, before its line, only
//! when it failed.

use std::{collections::HashMap, net::IpAddr};

use crate::{
    event::Name,
    ftp::Side,
    session::{Session, cause::Cause, patterns::is_failure},
};

/// Event lines held for one session at most (`--failures-only`); a longer
/// session's later ones are left out and counted.
const HELD_PER_SESSION: usize = 512 << 10;
/// Event lines held in all at most.
const HELD_IN_ALL: usize = 64 << 20;

/// An address block: `192.0.2.0/24`, `2001:db8::/32`, or one address.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cidr {
    addr: IpAddr,
    prefix: u8,
}

impl Cidr {
    pub fn contains(&self, addr: IpAddr) -> bool {
        match (self.addr, addr.to_canonical()) {
            (IpAddr::V4(net), IpAddr::V4(a)) => {
                prefix_bits(u32::from(net).into(), u32::from(a).into(), self.prefix, 32)
            }
            (IpAddr::V6(net), IpAddr::V6(a)) => {
                prefix_bits(u128::from(net), u128::from(a), self.prefix, 128)
            }
            _ => false,
        }
    }
}

fn prefix_bits(net: u128, addr: u128, prefix: u8, width: u8) -> bool {
    let shift = width - prefix;
    prefix == 0 || (net >> shift) == (addr >> shift)
}

impl std::str::FromStr for Cidr {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let (addr, prefix) = match text.split_once('/') {
            Some((addr, prefix)) => (addr, Some(prefix)),
            None => (text, None),
        };
        let addr: IpAddr = addr
            .parse()
            .map_err(|_| format!("{addr:?} is not an IPv4 or IPv6 address"))?;
        let width = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => width,
            Some(p) => p
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= width)
                .ok_or_else(|| format!("prefix {p:?} is not 0 to {width}"))?,
        };
        // An IPv4-mapped block is the IPv4 block it carries.
        match (addr, addr.to_canonical()) {
            (IpAddr::V6(_), IpAddr::V4(v4)) => Ok(Self {
                addr: IpAddr::V4(v4),
                prefix: prefix.checked_sub(96).ok_or_else(|| {
                    format!("{text}: an IPv4-mapped block needs a prefix of 96 or more")
                })?,
            }),
            _ => Ok(Self { addr, prefix }),
        }
    }
}

impl std::fmt::Display for Cidr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

// As the text the operator gave (a recording keeps its run's filters).
impl serde::Serialize for Cidr {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Cidr {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// Which address family to keep.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Family {
    V4,
    V6,
}

/// What the operator asked for.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Wanted {
    pub clients: Vec<Cidr>,
    pub servers: Vec<Cidr>,
    pub family: Option<Family>,
    pub netns: Vec<u64>,
    pub failures_only: bool,
}

impl Wanted {
    pub fn is_everything(&self) -> bool {
        self.clients.is_empty()
            && self.servers.is_empty()
            && self.family.is_none()
            && self.netns.is_empty()
            && !self.failures_only
    }

    fn ends_pass(&self, client: IpAddr, server: IpAddr) -> bool {
        let server = server.to_canonical();
        self.client_passes(client)
            && (self.servers.is_empty() || self.servers.iter().any(|c| c.contains(server)))
    }

    /// The client's block and family.
    fn client_passes(&self, client: IpAddr) -> bool {
        let client = client.to_canonical();
        (self.clients.is_empty() || self.clients.iter().any(|c| c.contains(client)))
            && match self.family {
                None => true,
                Some(Family::V4) => client.is_ipv4(),
                Some(Family::V6) => client.is_ipv6(),
            }
    }

    fn netns_passes(&self, netns: Option<u64>) -> bool {
        self.netns.is_empty() || netns.is_some_and(|n| self.netns.contains(&n))
    }
}

/// What to do with an event line.
#[derive(Debug, PartialEq, Eq)]
pub enum EventFate {
    Write,
    /// Held for its session (`--failures-only`).
    Hold(Name),
    Drop,
}

/// The filters, and what they hold meanwhile.
#[derive(Default)]
pub struct LineFilter {
    wanted: Wanted,
    /// Per open session: whether one of its events came from a namespace
    /// named, and (`--failures-only`) its event lines so far.
    open: HashMap<Name, Open>,
    held_bytes: usize,
    /// Event lines left out because the holding caps were reached.
    pub overflowed: u64,
}

#[derive(Default)]
struct Open {
    netns_met: bool,
    held: Vec<u8>,
    lines: u64,
}

impl LineFilter {
    pub fn new(wanted: Wanted) -> Self {
        Self {
            wanted,
            ..Self::default()
        }
    }

    /// An event of this host's `side` end, seen in `netns`, with its local
    /// and remote addresses, in `session` if placed.
    pub fn event(
        &mut self,
        side: Side,
        local: IpAddr,
        remote: IpAddr,
        netns: Option<u64>,
        session: Option<&Name>,
    ) -> EventFate {
        if self.wanted.is_everything() {
            return EventFate::Write;
        }
        let (client, server) = match side {
            Side::Client => (local, remote),
            Side::Server => (remote, local),
        };
        let netns_ok = self.wanted.netns_passes(netns);
        // Only a namespace filter asks, at its end, where a session was.
        if let Some(id) = session
            && !self.wanted.netns.is_empty()
        {
            let open = self.open.entry(id.clone()).or_default();
            open.netns_met |= netns_ok;
        }
        if !self.wanted.ends_pass(client, server) || !netns_ok {
            return EventFate::Drop;
        }
        match (self.wanted.failures_only, session) {
            (false, _) => EventFate::Write,
            (true, Some(id)) => EventFate::Hold(id.clone()),
            // Not (yet) in a session: no failed session to show it with.
            (true, None) => EventFate::Drop,
        }
    }

    /// Keeps `line` (one encoded event line) for session `id`.
    pub fn hold(&mut self, id: &Name, line: &[u8]) {
        let open = self.open.entry(id.clone()).or_default();
        if open.held.len() + line.len() > HELD_PER_SESSION
            || self.held_bytes + line.len() > HELD_IN_ALL
        {
            self.overflowed += 1;
            return;
        }
        open.held.extend_from_slice(line);
        open.lines += 1;
        self.held_bytes += line.len();
    }

    /// A session ended with `cause`: whether its line is written, and the
    /// event lines held for it to write before (with their count).
    pub fn session(&mut self, session: &Session, cause: Option<Cause>) -> (bool, Vec<u8>, u64) {
        let open = self.open.remove(&session.id).unwrap_or_default();
        self.held_bytes -= open.held.len();
        let passes = self
            .wanted
            .ends_pass(session.control.client.ip(), session.control.server.ip())
            && (self.wanted.netns.is_empty() || open.netns_met)
            && (!self.wanted.failures_only || cause.is_some_and(is_failure));
        if passes {
            (true, open.held, open.lines)
        } else {
            (false, Vec::new(), 0)
        }
    }

    /// Whether a pattern about `client` is written.
    pub fn pattern(&self, client: IpAddr) -> bool {
        self.wanted.client_passes(client)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cidr(text: &str) -> Cidr {
        text.parse().unwrap()
    }

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn blocks_contain_their_addresses_only() {
        assert!(cidr("192.0.2.0/24").contains(ip("192.0.2.77")));
        assert!(!cidr("192.0.2.0/24").contains(ip("198.51.100.1")));
        assert!(cidr("192.0.2.1").contains(ip("192.0.2.1")));
        assert!(!cidr("192.0.2.1").contains(ip("192.0.2.2")));
        assert!(cidr("0.0.0.0/0").contains(ip("203.0.113.9")));
        assert!(!cidr("0.0.0.0/0").contains(ip("2001:db8::1")));
        assert!(cidr("2001:db8::/32").contains(ip("2001:db8:1::5")));
        assert!(!cidr("2001:db8::/32").contains(ip("2001:db9::5")));
        // An IPv4-mapped address is the IPv4 address it carries.
        assert!(cidr("192.0.2.0/24").contains(ip("::ffff:192.0.2.5")));
        assert!(cidr("::ffff:192.0.2.0/120").contains(ip("192.0.2.9")));
        assert!(!cidr("::ffff:192.0.2.0/120").contains(ip("192.0.3.9")));
        assert!("::ffff:192.0.2.0/64".parse::<Cidr>().is_err());
    }

    #[test]
    fn bad_blocks_say_why() {
        assert!(
            "192.0.2.0/33"
                .parse::<Cidr>()
                .unwrap_err()
                .contains("0 to 32")
        );
        assert!(
            "2001:db8::/129"
                .parse::<Cidr>()
                .unwrap_err()
                .contains("0 to 128")
        );
        assert!(
            "ftp.example.net"
                .parse::<Cidr>()
                .unwrap_err()
                .contains("not an IPv4 or IPv6")
        );
        assert!("192.0.2.0/x".parse::<Cidr>().is_err());
    }

    #[test]
    fn events_pass_by_their_ends_from_either_side() {
        let mut filter = LineFilter::new(Wanted {
            clients: vec![cidr("192.0.2.2/32")],
            servers: vec![cidr("192.0.2.1/32")],
            ..Wanted::default()
        });
        let (client, server) = (ip("192.0.2.2"), ip("192.0.2.1"));
        assert_eq!(
            filter.event(Side::Server, server, client, None, None),
            EventFate::Write
        );
        assert_eq!(
            filter.event(Side::Client, client, server, None, None),
            EventFate::Write
        );
        assert_eq!(
            filter.event(Side::Client, server, client, None, None),
            EventFate::Drop
        );
        assert_eq!(
            filter.event(Side::Server, server, ip("192.0.2.3"), None, None),
            EventFate::Drop
        );
    }

    #[test]
    fn family_and_namespace() {
        let mut v6 = LineFilter::new(Wanted {
            family: Some(Family::V6),
            ..Wanted::default()
        });
        assert_eq!(
            v6.event(
                Side::Server,
                ip("2001:db8::1"),
                ip("2001:db8::2"),
                None,
                None
            ),
            EventFate::Write
        );
        assert_eq!(
            v6.event(
                Side::Server,
                ip("::ffff:192.0.2.1"),
                ip("::ffff:192.0.2.2"),
                None,
                None
            ),
            EventFate::Drop
        );
        let mut ns = LineFilter::new(Wanted {
            netns: vec![7],
            ..Wanted::default()
        });
        let (a, b) = (ip("192.0.2.1"), ip("192.0.2.2"));
        assert_eq!(
            ns.event(Side::Server, a, b, Some(7), None),
            EventFate::Write
        );
        assert_eq!(ns.event(Side::Server, a, b, Some(8), None), EventFate::Drop);
        assert_eq!(ns.event(Side::Server, a, b, None, None), EventFate::Drop);
    }

    #[test]
    fn held_lines_are_capped_and_counted() {
        let mut filter = LineFilter::new(Wanted {
            failures_only: true,
            ..Wanted::default()
        });
        let id = Name::from("run-1");
        let line = vec![b'x'; 1024];
        for _ in 0..(HELD_PER_SESSION / 1024 + 10) {
            filter.hold(&id, &line);
        }
        assert_eq!(filter.overflowed, 10);
        assert_eq!(filter.held_bytes, HELD_PER_SESSION);
    }
}

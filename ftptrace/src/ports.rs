//! The FTP port set: which ports the kernel programs trace and which role
//! each plays, and the marks announcements add to it. User space keeps the
//! same set to tell server from client.

use std::{net::IpAddr, ops::RangeInclusive};

use ftptrace_common::port_role;

/// The active-mode data port (RFC 959: the server connects from port 20).
pub const ACTIVE_DATA_PORT: u16 = 20;

/// Control ports traced by default: FTP and implicit FTPS.
pub const DEFAULT_CONTROL_PORTS: [u16; 2] = [21, 990];

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PortSet {
    pub control: Vec<u16>,
    pub passive: Option<RangeInclusive<u16>>,
}

impl PortSet {
    /// Role bits of `port` (`port_role::*`); 0 when it is not an FTP port.
    pub fn role(&self, port: u16) -> u8 {
        let mut role = 0;
        if self.control.contains(&port) {
            role |= port_role::CONTROL;
        }
        if port == ACTIVE_DATA_PORT {
            role |= port_role::ACTIVE_DATA;
        }
        if self
            .passive
            .as_ref()
            .is_some_and(|range| range.contains(&port))
        {
            role |= port_role::PASSIVE_DATA;
        }
        role
    }

    pub fn contains(&self, port: u16) -> bool {
        self.role(port) != 0
    }

    /// Every port with a role, for filling the kernel's port map.
    pub fn entries(&self) -> impl Iterator<Item = (u16, u8)> + '_ {
        let passive = self.passive.clone().into_iter().flatten();
        self.control
            .iter()
            .copied()
            .chain([ACTIVE_DATA_PORT])
            .chain(passive)
            .map(|port| (port, self.role(port)))
    }
}

/// What an announcement makes the kernel trace beyond the configured ports.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Mark {
    /// A passive data port a server announced (227/229): any connection on it.
    Passive(u16),
    /// An active data endpoint a client announced (PORT/EPRT), its own
    /// address and port: only connections to or from it.
    Active(IpAddr, u16),
}

/// A change for the kernel's maps: trace (`on`) or stop tracing a mark.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MarkUpdate {
    pub mark: Mark,
    pub on: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_combine() {
        let ports = PortSet {
            control: vec![21, 2121],
            passive: Some(2121..=2123),
        };
        assert_eq!(ports.role(21), port_role::CONTROL);
        assert_eq!(ports.role(20), port_role::ACTIVE_DATA);
        assert_eq!(
            ports.role(2121),
            port_role::CONTROL | port_role::PASSIVE_DATA
        );
        assert_eq!(ports.role(2123), port_role::PASSIVE_DATA);
        assert_eq!(ports.role(2124), 0);
        assert!(!ports.contains(0));
        let mut entries: Vec<_> = ports.entries().map(|(port, _)| port).collect();
        entries.sort_unstable();
        entries.dedup();
        assert_eq!(entries, [20, 21, 2121, 2122, 2123]);
    }
}

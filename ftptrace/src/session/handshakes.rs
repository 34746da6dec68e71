//! Handshake health per server address: the share of control and data
//! connections that needed a SYN or SYN-ACK retransmit. One session's
//! retried handshake is noise; a server where a tenth of them are is a
//! finding (a lossy path, a SYN flood, a full accept queue).

use std::{collections::HashMap, net::IpAddr};

use super::model::{ConnId, Session};

/// Server addresses counted at once; past it, connections to new servers
/// are counted in [`Handshakes::uncounted`].
pub const MAX_SERVERS: usize = 1024;

/// Connections to one server address, and how many needed a retransmit of
/// their SYN or SYN-ACK.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Tally {
    pub control: u64,
    pub control_retried: u64,
    pub data: u64,
    pub data_retried: u64,
}

#[derive(Debug, Default)]
pub struct Handshakes {
    by_server: HashMap<IpAddr, Tally>,
    /// Connections to servers beyond [`MAX_SERVERS`].
    pub uncounted: u64,
}

impl Handshakes {
    /// Counts a session's connections as it ends (each once: a session
    /// ends once).
    pub fn session_ended(&mut self, session: &Session) {
        let server = session.control.server.ip().to_canonical();
        if !self.by_server.contains_key(&server) && self.by_server.len() >= MAX_SERVERS {
            self.uncounted += 1 + session.data.len() as u64;
            return;
        }
        let tally = self.by_server.entry(server).or_default();
        for conn in session.conns() {
            // Only connections whose opening this host saw: a seeded
            // control connection, or one half seen late, says nothing.
            if !conn
                .seen()
                .any(|(_, v)| v.syn_sent || v.established_ns.is_some())
            {
                continue;
            }
            let retried = conn.seen().any(|(_, v)| v.syn_retransmits > 0);
            let (total, with) = match conn.id {
                ConnId::Control => (&mut tally.control, &mut tally.control_retried),
                ConnId::Data(_) => (&mut tally.data, &mut tally.data_retried),
            };
            *total += 1;
            *with += u64::from(retried);
        }
    }

    /// Servers by the share of retried handshakes, most first, at most `n`.
    pub fn worst(&self, n: usize) -> Vec<(IpAddr, Tally)> {
        let mut all: Vec<(IpAddr, Tally)> = self.by_server.iter().map(|(a, t)| (*a, *t)).collect();
        // Retried per connection, compared without division: a/b > c/d.
        all.sort_by(|(a_addr, a), (b_addr, b)| {
            let share = |t: &Tally| {
                (
                    t.control_retried + t.data_retried,
                    (t.control + t.data).max(1),
                )
            };
            let ((an, ad), (bn, bd)) = (share(a), share(b));
            (bn * ad).cmp(&(an * bd)).then(a_addr.cmp(b_addr))
        });
        all.truncate(n);
        all
    }

    pub fn servers(&self) -> usize {
        self.by_server.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        ftp::Side::*,
        session::script::{Script, sessions_of},
    };

    #[test]
    fn retried_handshakes_are_counted_per_server_and_kind() {
        let mut s = Script::new();
        // A clean session to .1, and one to .3 whose control SYN and data
        // SYN-ACK were retransmitted.
        let control = s.connect("192.0.2.2:40000", "192.0.2.1:21");
        s.login(&control);
        s.fin(&control, Client);
        // (The retransmits are counted, not ordered: after the handshake.)
        let control = s.connect("192.0.2.2:40001", "192.0.2.3:21");
        s.retransmit(&control, Client, "SYN_SENT");
        s.login(&control);
        s.pasv(&control, 30001);
        let data = s.connect("192.0.2.2:40002", "192.0.2.3:30001");
        s.retransmit(&data, Server, "SYN_RECV");
        s.fin(&data, Server);
        s.fin(&control, Client);
        let mut handshakes = Handshakes::default();
        for session in sessions_of(&s.seen_from(&[Client, Server]), s.end_ns()) {
            handshakes.session_ended(&session);
        }
        let worst = handshakes.worst(10);
        assert_eq!(
            worst,
            [
                (
                    "192.0.2.3".parse().unwrap(),
                    Tally {
                        control: 1,
                        control_retried: 1,
                        data: 1,
                        data_retried: 1
                    }
                ),
                (
                    "192.0.2.1".parse().unwrap(),
                    Tally {
                        control: 1,
                        control_retried: 0,
                        data: 0,
                        data_retried: 0
                    }
                ),
            ]
        );
    }
}

//! How far one host's clock is from another's, from the connections both
//! traced: a segment arrives after it was sent, so each end's state change
//! or control segment that a segment from the other end caused bounds the
//! offset from one side. Three state changes pair up in every connection's
//! life: the handshake's last ACK (the connecting end's `SYN_SENT ->
//! ESTABLISHED`, then the accepting end's `SYN_RECV -> ESTABLISHED`), the
//! first FIN (the closing end's `ESTABLISHED -> FIN_WAIT1`, then the
//! other's `ESTABLISHED -> CLOSE_WAIT`) and its ACK (then the closing
//! end's `FIN_WAIT1 -> FIN_WAIT2`); and each control segment pairs with
//! its arrival by its sequence number. Nothing else counts: a reset or a
//! timeout can come from anywhere at any time, and a forged one must not
//! move the clocks. An offset inside the bounds keeps every such pair in
//! its order: no word arrives before it was said.

use std::{collections::HashMap, net::SocketAddr};

use crate::event::{EventKind, KernelEvent};

/// Something one host saw that the other's account can pair, on its own
/// wall clock.
#[derive(Clone, Debug)]
pub struct Sighting {
    /// Nanoseconds since the Unix epoch, by the host's own clock.
    pub wall_ns: i128,
    pub local: SocketAddr,
    pub remote: SocketAddr,
    pub seen: Seen,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Seen {
    /// A state change (old, new).
    Change(&'static str, &'static str),
    /// A control segment with payload from this sequence number sent.
    Sent(u32),
    /// ... or received.
    Received(u32),
}

impl Sighting {
    /// What `event` shows that the offset can use.
    pub fn of(event: &KernelEvent, wall_ns: i128) -> Option<Self> {
        let seen = match &event.kind {
            EventKind::State { old, new } => {
                let (old, new) = USED
                    .iter()
                    .find(|(o, n)| *o == old.as_str() && *n == new.as_str())?;
                Seen::Change(old, new)
            }
            // The TLS library's plaintext is no segment on the wire.
            EventKind::ControlSegment(segment) if segment.payload_len > 0 && !segment.decrypted => {
                if segment.outgoing {
                    Seen::Sent(segment.seq)
                } else {
                    Seen::Received(segment.seq)
                }
            }
            _ => return None,
        };
        // A connecting end before its port is bound says port 0.
        (event.local.port() != 0 && event.remote.port() != 0).then_some(Self {
            wall_ns,
            local: event.local,
            remote: event.remote,
            seen,
        })
    }
}

/// The changes a segment from the peer makes, and the ones that send it.
const USED: [(&str, &str); 5] = [
    ("SYN_SENT", "ESTABLISHED"),
    ("SYN_RECV", "ESTABLISHED"),
    ("ESTABLISHED", "FIN_WAIT1"),
    ("ESTABLISHED", "CLOSE_WAIT"),
    ("FIN_WAIT1", "FIN_WAIT2"),
];

/// (the sender's change, the receiver's change it causes).
const CAUSED: [(Seen, Seen); 3] = [
    (
        Seen::Change("SYN_SENT", "ESTABLISHED"),
        Seen::Change("SYN_RECV", "ESTABLISHED"),
    ),
    (
        Seen::Change("ESTABLISHED", "FIN_WAIT1"),
        Seen::Change("ESTABLISHED", "CLOSE_WAIT"),
    ),
    (
        Seen::Change("ESTABLISHED", "CLOSE_WAIT"),
        Seen::Change("FIN_WAIT1", "FIN_WAIT2"),
    ),
];

/// The other host's clock minus the reference's, as the shared
/// connections bound it (the default: none did, taken as 0).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Offset {
    /// The estimate: the middle of the bounds when both are known, else
    /// the one bound known, else 0 (no shared connection).
    pub offset_ns: i128,
    /// The offset lies within these (lowest, highest) when segments went
    /// both ways; `None` when they did not, or disagree (below).
    pub bounds_ns: Option<(i128, i128)>,
    /// Each bound on its own, for what the bounds above cannot say.
    pub lowest_ns: Option<i128>,
    pub highest_ns: Option<i128>,
    /// Connections both hosts saw a bounding pair of.
    pub connections: usize,
}

impl Offset {
    /// The bounds cross: a clock stepped or drifted during the runs, or
    /// the same 4-tuple named different connections (a NAT between).
    pub fn contradicted(&self) -> bool {
        matches!((self.lowest_ns, self.highest_ns), (Some(lo), Some(hi)) if lo > hi)
    }
}

/// The offset of `other`'s clock from `reference`'s (what to subtract
/// from `other`'s times to put them on the reference's clock).
pub fn estimate(reference: &[Sighting], other: &[Sighting]) -> Offset {
    let reference = lives(reference);
    let other = lives(other);
    let mut lowest: Option<i128> = None;
    let mut highest: Option<i128> = None;
    let mut connections = 0;
    for ((local, remote), here) in &reference {
        // The other host sees the same connection from its other end.
        let Some(there) = other.get(&(*remote, *local)) else {
            continue;
        };
        let mut bound = false;
        // Tuple reuse: the n-th life here is the n-th there.
        for (here, there) in here.iter().zip(there) {
            for (sent, received) in pairs(here) {
                // Sent here, received there: there - θ >= here.
                if let Some(r) = there.get(&received) {
                    highest = Some(highest.map_or(r - sent, |h| h.min(r - sent)));
                    bound = true;
                }
            }
            for (sent, received) in pairs(there) {
                // Sent there, received here: here >= there - θ.
                if let Some(r) = here.get(&received) {
                    lowest = Some(lowest.map_or(sent - r, |l| l.max(sent - r)));
                    bound = true;
                }
            }
        }
        connections += usize::from(bound);
    }
    let offset_ns = match (lowest, highest) {
        (Some(lo), Some(hi)) => lo + (hi - lo) / 2,
        (Some(one), None) | (None, Some(one)) => one,
        (None, None) => 0,
    };
    let bounds_ns = match (lowest, highest) {
        (Some(lo), Some(hi)) if lo <= hi => Some((lo, hi)),
        _ => None,
    };
    Offset {
        offset_ns,
        bounds_ns,
        lowest_ns: lowest,
        highest_ns: highest,
        connections,
    }
}

/// What one end of a life sent (its time), with what the other end's
/// receiving it is seen as.
fn pairs(life: &Life) -> impl Iterator<Item = (i128, Seen)> + '_ {
    life.iter().filter_map(|(seen, at)| {
        let received = match seen {
            Seen::Sent(seq) => Seen::Received(*seq),
            Seen::Change(..) => CAUSED.iter().find(|(s, _)| s == seen)?.1,
            Seen::Received(_) => return None,
        };
        Some((*at, received))
    })
}

/// Each sighting's first time in one life of a connection.
type Life = HashMap<Seen, i128>;
/// Per connection (this end's local, remote), its lives.
type Lives = HashMap<(SocketAddr, SocketAddr), Vec<Life>>;

/// A connection's sightings split into its lives: a new one begins at each
/// handshake's end (the first, at the first sighting: a connection open
/// before the run).
fn lives(sightings: &[Sighting]) -> Lives {
    let mut lives: Lives = HashMap::new();
    let mut sorted: Vec<&Sighting> = sightings.iter().collect();
    sorted.sort_by_key(|s| s.wall_ns);
    for s in sorted {
        let of_tuple = lives.entry((s.local, s.remote)).or_default();
        let begins = matches!(s.seen, Seen::Change(_, "ESTABLISHED"));
        if begins || of_tuple.is_empty() {
            of_tuple.push(HashMap::new());
        }
        if let Some(life) = of_tuple.last_mut() {
            life.entry(s.seen).or_insert(s.wall_ns);
        }
    }
    lives
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::Name;

    const CLIENT: &str = "192.0.2.2:40000";
    const SERVER: &str = "192.0.2.1:21";

    fn at(ms: i128, end: &str, old: &'static str, new: &'static str) -> Sighting {
        let (local, remote) = match end {
            "client" => (CLIENT, SERVER),
            _ => (SERVER, CLIENT),
        };
        Sighting {
            wall_ns: ms * 1_000_000,
            local: local.parse().unwrap(),
            remote: remote.parse().unwrap(),
            seen: Seen::Change(old, new),
        }
    }

    /// A connection with a 10 ms one-way delay, closed by the server; the
    /// server's clock is `skew_ms` ahead.
    fn both_ends(skew_ms: i128) -> (Vec<Sighting>, Vec<Sighting>) {
        let client = vec![
            at(100, "client", "SYN_SENT", "ESTABLISHED"),
            at(520, "client", "ESTABLISHED", "CLOSE_WAIT"),
        ];
        let s = skew_ms;
        let server = vec![
            at(110 + s, "server", "SYN_RECV", "ESTABLISHED"),
            at(510 + s, "server", "ESTABLISHED", "FIN_WAIT1"),
            at(530 + s, "server", "FIN_WAIT1", "FIN_WAIT2"),
        ];
        (client, server)
    }

    #[test]
    fn segments_both_ways_bound_the_offset_from_both_sides() {
        for skew in [-3_600_000, -7, 0, 250, 86_400_000] {
            let (client, server) = both_ends(skew);
            let offset = estimate(&client, &server);
            let ms = 1_000_000;
            // Up: the ACK and the FIN's ACK (10 ms each), down: the FIN.
            assert_eq!(
                offset.bounds_ns,
                Some(((skew - 10) * ms, (skew + 10) * ms)),
                "{offset:?}"
            );
            assert_eq!(offset.offset_ns, skew * ms);
            assert_eq!(offset.connections, 1);
            // Seen from the server, the same offset the other way round.
            assert_eq!(estimate(&server, &client).offset_ns, -skew * ms);
        }
    }

    #[test]
    fn one_way_only_gives_one_bound_and_no_interval() {
        let (client, server) = both_ends(40);
        let offset = estimate(&client[..1], &server[..1]);
        assert_eq!(offset.bounds_ns, None);
        assert_eq!(offset.highest_ns, Some(50 * 1_000_000));
        assert_eq!(offset.lowest_ns, None);
        assert_eq!(offset.offset_ns, 50 * 1_000_000);
    }

    #[test]
    fn no_shared_connection_leaves_the_clocks_as_they_are() {
        let (client, _) = both_ends(0);
        let stranger = vec![Sighting {
            local: "198.51.100.1:21".parse().unwrap(),
            ..at(110, "server", "SYN_RECV", "ESTABLISHED")
        }];
        let offset = estimate(&client, &stranger);
        assert_eq!((offset.offset_ns, offset.connections), (0, 0));
        assert!(!offset.contradicted());
    }

    #[test]
    fn resets_and_timeouts_bound_nothing() {
        let change = |old: &str, new: &str, local: &str| KernelEvent {
            boot_ns: 1,
            cpu: 0,
            current: crate::event::Task {
                pid: 0,
                comm: Name::from(""),
            },
            netns: None,
            sock: None,
            local: local.parse().unwrap(),
            remote: SERVER.parse().unwrap(),
            kind: EventKind::State {
                old: Name::from(old),
                new: Name::from(new),
            },
        };
        // A reset, forged or not, and a FIN_WAIT2 timeout: no sighting.
        for (old, new) in [
            ("ESTABLISHED", "CLOSE"),
            ("FIN_WAIT2", "CLOSE"),
            ("CLOSE_WAIT", "CLOSE"),
        ] {
            assert!(Sighting::of(&change(old, new, CLIENT), 1).is_none());
        }
        assert!(Sighting::of(&change("SYN_SENT", "ESTABLISHED", CLIENT), 1).is_some());
        // Before its port is bound a connecting end names no connection.
        assert!(Sighting::of(&change("SYN_SENT", "ESTABLISHED", "192.0.2.2:0"), 1).is_none());
    }

    #[test]
    fn control_segments_pair_by_sequence_number() {
        let segment = |ms: i128, end: &str, seen: Seen| Sighting {
            seen,
            ..at(ms, end, "", "")
        };
        // No state change both saw (a connection open before the runs):
        // a command up (1 ms) and its reply down (3 ms), server +2 s.
        let client = vec![
            segment(100, "client", Seen::Sent(7)),
            segment(203, "client", Seen::Received(900)),
        ];
        let server = vec![
            segment(2_101, "server", Seen::Received(7)),
            segment(2_200, "server", Seen::Sent(900)),
            // Retransmitted: the first sending counts.
            segment(2_250, "server", Seen::Sent(900)),
        ];
        let offset = estimate(&client, &server);
        assert_eq!(offset.bounds_ns, Some((1_997_000_000, 2_001_000_000)));
        assert_eq!(offset.connections, 1);
    }

    #[test]
    fn a_reused_tuple_pairs_each_life_with_its_own() {
        let (mut client, mut server) = both_ends(5);
        let later = |t: &Sighting| Sighting {
            wall_ns: t.wall_ns + 60_000_000_000,
            ..t.clone()
        };
        client.extend(client.clone().iter().map(later));
        server.extend(server.clone().iter().map(later));
        let offset = estimate(&client, &server);
        assert_eq!(offset.offset_ns, 5_000_000);
        assert_eq!(offset.bounds_ns, Some((-5_000_000, 15_000_000)));
    }

    #[test]
    fn crossing_bounds_are_said() {
        let (client, mut server) = both_ends(0);
        // The server's clock stepped ahead 50 ms before its FIN.
        for t in &mut server[1..] {
            t.wall_ns += 50_000_000;
        }
        let offset = estimate(&client, &server);
        assert!(offset.contradicted(), "{offset:?}");
        assert_eq!(offset.bounds_ns, None);
    }
}

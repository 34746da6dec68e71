//! Hand-built kernel event streams for the session and cause tests: a
//! script of connections, words and closes, emitted as both ends' kernels
//! would report them, then cut to what one end (or both) would see.

use std::{
    collections::HashMap,
    net::{IpAddr, SocketAddr},
};

use super::{Session, Sessions, Tuple};
use crate::{
    event::{EventKind, KernelEvent, Payload, RetransmitCounts, Segment, Task},
    ftp::{ControlEvent, Side, Verb},
    ports::PortSet,
};

/// The TCP flags of a bare SYN.
const SYN: u8 = 0x02;

/// Network namespaces of the two ends.
const CLIENT_NETNS: u32 = 1;
const SERVER_NETNS: u32 = 2;

/// One TCP connection of the script: its ends and their sockets.
#[derive(Clone, Copy, Debug)]
pub struct Link {
    pub client: SocketAddr,
    pub server: SocketAddr,
    socks: [u64; 2],
    cookie: u64,
    /// Through a NAT: the connection as the server's end sees it.
    inside: Option<(SocketAddr, SocketAddr)>,
}

impl Link {
    /// The same connection with its client socket at `other`'s address
    /// (the kernel reuses a freed socket's memory).
    pub fn with_client_socket_of(mut self, other: &Link) -> Self {
        self.socks[0] = other.socks[0];
        self
    }

    /// The same connection through a NAT that shows the server's end
    /// `inside_client` → `inside_server` (DNAT to the server's inside
    /// address, and masquerade if the client's differs).
    pub fn through_nat(mut self, inside_client: &str, inside_server: &str) -> Self {
        self.inside = Some((
            inside_client.parse().expect("inside client address"),
            inside_server.parse().expect("inside server address"),
        ));
        self
    }

    /// What the NAT's connection tracking knows of it: (inside, outside).
    pub fn nat_entry(&self) -> Option<(Tuple, Tuple)> {
        Some((self.inside?, (self.client, self.server)))
    }
}

#[derive(Clone, Default)]
pub struct Script {
    events: Vec<KernelEvent>,
    now_ns: u64,
    next_sock: u64,
    seq: [u32; 2],
    /// What each socket reports of its retransmits when it is freed.
    counts: HashMap<u64, RetransmitCounts>,
}

impl Script {
    pub fn new() -> Self {
        Self {
            now_ns: 1_000_000_000,
            ..Self::default()
        }
    }

    /// Moves the clock on.
    pub fn after_ms(&mut self, ms: u64) -> &mut Self {
        self.now_ns += ms * 1_000_000;
        self
    }

    /// A link from `client` to `server` without any event yet.
    pub fn link(&mut self, client: &str, server: &str) -> Link {
        self.next_sock += 2;
        Link {
            client: client.parse().expect("client address"),
            server: server.parse().expect("server address"),
            socks: [0x1000 + self.next_sock, 0x1001 + self.next_sock],
            cookie: self.next_sock,
            inside: None,
        }
    }

    /// A three-way handshake, as each end's kernel reports it (the
    /// connecting socket has no local port yet when it enters SYN_SENT; the
    /// server's new socket has no remote end yet when it leaves LISTEN).
    pub fn connect(&mut self, client: &str, server: &str) -> Link {
        let link = self.link(client, server);
        self.handshake(&link)
    }

    /// [`Self::connect`] on a link made beforehand.
    pub fn handshake(&mut self, link: &Link) -> Link {
        let link = *link;
        self.syn(&link);
        self.emit_at(&link, Side::Server, state("LISTEN", "SYN_RECV"), true);
        self.after_ms(1);
        self.emit(&link, Side::Client, state("SYN_SENT", "ESTABLISHED"));
        self.emit(&link, Side::Server, state("SYN_RECV", "ESTABLISHED"));
        self.after_ms(1);
        link
    }

    /// The control connection of the NAT tests, logged in: the client dials
    /// 203.0.113.1:21, and the NAT shows the server 10.0.0.2:21.
    pub fn nat_control(&mut self) -> Link {
        let control = self
            .link("203.0.113.2:40000", "203.0.113.1:21")
            .through_nat("203.0.113.2:40000", "10.0.0.2:21");
        let control = self.handshake(&control);
        self.login(&control);
        control
    }

    /// The client's socket enters SYN_SENT.
    pub fn syn(&mut self, link: &Link) {
        self.emit_at(link, Side::Client, state("CLOSE", "SYN_SENT"), true);
    }

    /// What `from` said on a control connection, as both ends' parsers
    /// report it, with the segment that carried it.
    pub fn say(&mut self, link: &Link, from: Side, said: ControlEvent) {
        for at in [Side::Client, Side::Server] {
            self.segment(link, from, at, 10);
            self.emit(
                link,
                at,
                EventKind::Ftp {
                    from,
                    event: said.clone(),
                },
            );
        }
        self.after_ms(1);
    }

    pub fn command(&mut self, link: &Link, verb: Verb, arg: Option<&str>) {
        self.say(
            link,
            Side::Client,
            ControlEvent::Command {
                verb,
                arg: arg.map(Into::into),
            },
        );
    }

    pub fn reply(&mut self, link: &Link, code: u16, text: &str) {
        self.say(
            link,
            Side::Server,
            ControlEvent::Reply {
                code,
                text: text.into(),
            },
        );
    }

    /// Greeting, USER, 230.
    pub fn login(&mut self, link: &Link) {
        self.reply(link, 220, "(vsFTPd 3.0.3)");
        self.command(link, Verb::User, Some("alice"));
        self.reply(link, 230, "Login successful.");
    }

    /// `227` announcing `port` on the server's address.
    pub fn pasv(&mut self, link: &Link, port: u16) {
        self.pasv_at(link, link.server.ip(), port);
    }

    /// `227` announcing `addr` and `port`: another address than the control
    /// connection's when the server is behind NAT.
    pub fn pasv_announcing(&mut self, link: &Link, addr: &str, port: u16) {
        self.pasv_at(link, addr.parse().expect("an address"), port);
    }

    fn pasv_at(&mut self, link: &Link, addr: IpAddr, port: u16) {
        self.command(link, Verb::Pasv, None);
        self.reply(link, 227, "Entering Passive Mode.");
        self.say(
            link,
            Side::Server,
            ControlEvent::DataEndpoint {
                announced_by: Side::Server,
                addr: Some(addr),
                port,
            },
        );
    }

    /// `PORT` announcing `addr` and `port` (a NATed client's inside address).
    pub fn port_announcing(&mut self, link: &Link, addr: &str, port: u16) {
        self.command(link, Verb::Port, None);
        self.say(
            link,
            Side::Client,
            ControlEvent::DataEndpoint {
                announced_by: Side::Client,
                addr: Some(addr.parse().expect("an address")),
                port,
            },
        );
    }

    /// A payload segment from `from`, captured at `at` (only counted: the
    /// parser's words come as `Ftp` events).
    pub fn segment(&mut self, link: &Link, from: Side, at: Side, len: u32) {
        let seq = &mut self.seq[from.index()];
        *seq = seq.wrapping_add(len);
        let kind = EventKind::ControlSegment(Box::new(Segment {
            cookie: link.cookie * 2 + at.index() as u64,
            outgoing: from == at,
            seq: *seq,
            payload_len: len,
            redacted: false,
            payload: Payload::new(&[]),
            tail_at: None,
            mark: None,
            decrypted: false,
        }));
        self.emit(link, at, kind);
    }

    /// A simultaneous close: each end sends its FIN before the other's
    /// arrives, `first` a moment earlier.
    pub fn crossing_fins(&mut self, link: &Link, first: Side) {
        for end in [first, first.other()] {
            self.emit(link, end, state("ESTABLISHED", "FIN_WAIT1"));
        }
        for end in [first, first.other()] {
            self.emit(link, end, state("FIN_WAIT1", "CLOSING"));
        }
        self.after_ms(1);
        for end in [first, first.other()] {
            self.emit(link, end, state("CLOSING", "CLOSE"));
        }
    }

    /// An orderly close: `closer` sends the first FIN.
    pub fn fin(&mut self, link: &Link, closer: Side) {
        let peer = closer.other();
        self.emit(link, closer, state("ESTABLISHED", "FIN_WAIT1"));
        self.emit(link, peer, state("ESTABLISHED", "CLOSE_WAIT"));
        self.after_ms(1);
        self.emit(link, peer, state("CLOSE_WAIT", "LAST_ACK"));
        self.emit(link, closer, state("FIN_WAIT1", "CLOSE"));
        self.emit(link, peer, state("LAST_ACK", "CLOSE"));
        self.destroy(link, Side::Client);
        self.destroy(link, Side::Server);
    }

    /// `sender`'s socket resets the connection; the peer accepts the reset.
    pub fn reset(&mut self, link: &Link, sender: Side) {
        self.emit(
            link,
            sender,
            EventKind::ResetSent {
                reason: None,
                state: Some("ESTABLISHED".into()),
            },
        );
        self.emit(link, sender, state("ESTABLISHED", "CLOSE"));
        self.destroy(link, sender);
        self.after_ms(1);
        self.received_reset(link, sender.other());
    }

    /// `receiver` accepts a reset (from whoever sent it).
    pub fn received_reset(&mut self, link: &Link, receiver: Side) {
        self.emit(
            link,
            receiver,
            EventKind::ResetReceived {
                state: "ESTABLISHED".into(),
            },
        );
        self.emit(link, receiver, EventKind::SocketError { errno: 104 });
        self.emit(link, receiver, state("ESTABLISHED", "CLOSE"));
        self.destroy(link, receiver);
    }

    /// `receiver` accepts a reset that arrived with `ttl`, where the
    /// connection's other packets arrive with `usual`.
    pub fn received_reset_with_ttl(&mut self, link: &Link, receiver: Side, ttl: u8, usual: u8) {
        self.emit(
            link,
            receiver,
            EventKind::ResetTtl {
                ttl,
                usual_ttl: Some(usual),
            },
        );
        self.received_reset(link, receiver);
    }

    /// `end`'s kernel gives up (ETIMEDOUT) and closes.
    pub fn give_up(&mut self, link: &Link, end: Side, from_state: &str) {
        self.emit(
            link,
            end,
            EventKind::ResetSent {
                reason: None,
                state: Some(from_state.into()),
            },
        );
        self.emit(link, end, EventKind::SocketError { errno: 110 });
        self.emit(link, end, state(from_state, "CLOSE"));
        self.destroy(link, end);
    }

    /// `end` retransmits a segment in `state` (a SYN in SYN_SENT/SYN_RECV).
    pub fn retransmit(&mut self, link: &Link, end: Side, state: &str) {
        let syn = matches!(state, "SYN_SENT" | "SYN_RECV");
        self.emit(
            link,
            end,
            EventKind::Retransmit {
                state: state.into(),
                syn,
                error: None,
                segs: Some(1),
            },
        );
    }

    /// A packet of the link with `tcp_flags` dropped at `at` before any
    /// socket saw it, with the kernel's reason and place where given.
    pub fn dropped(
        &mut self,
        link: &Link,
        at: Side,
        reason: Option<&str>,
        tcp_flags: u8,
        location: Option<&str>,
    ) {
        self.socketless(
            link,
            at,
            EventKind::Drop {
                reason: reason.map(Into::into),
                outgoing: false,
                tcp_flags,
                location: location.map(Into::into),
            },
        );
    }

    /// `at`'s kernel answers a segment of the link that no socket wanted
    /// with a reset.
    pub fn reset_without_socket(&mut self, link: &Link, at: Side, reason: Option<&str>) {
        self.socketless(
            link,
            at,
            EventKind::ResetSent {
                reason: reason.map(Into::into),
                state: None,
            },
        );
    }

    /// The client's SYN, refused: the server's kernel answers it with a
    /// reset for a port nobody listens on (the reset comes before the
    /// drop), and the client's connect fails with ECONNREFUSED. `reset` is
    /// false on a kernel that reports no socket-less reset (5.10): there the
    /// dropped SYN is all the server's side shows.
    pub fn refused(&mut self, link: &Link, reset: bool) {
        self.syn(link);
        if reset {
            self.reset_without_socket(link, Side::Server, Some("NO_SOCKET"));
            self.dropped(link, Side::Server, Some("NO_SOCKET"), SYN, None);
            self.emit(
                link,
                Side::Client,
                EventKind::ResetReceived {
                    state: "SYN_SENT".into(),
                },
            );
        } else {
            self.dropped(link, Side::Server, None, SYN, Some("tcp_v4_rcv"));
        }
        self.emit(link, Side::Client, EventKind::SocketError { errno: 111 });
        self.emit(link, Side::Client, state("SYN_SENT", "CLOSE"));
        self.destroy(link, Side::Client);
    }

    /// The client's SYN into a firewall that drops it: `tries` times a second
    /// apart the server's kernel drops it (`NETFILTER_DROP`) and the client
    /// retransmits, then the client gives up.
    pub fn blackholed_syn(&mut self, link: &Link, tries: usize) {
        self.syn(link);
        for _ in 0..tries {
            self.after_ms(1000);
            self.dropped(
                link,
                Side::Server,
                Some("NETFILTER_DROP"),
                SYN,
                Some("nft_do_chain"),
            );
            self.retransmit(link, Side::Client, "SYN_SENT");
        }
        self.emit(link, Side::Client, state("SYN_SENT", "CLOSE"));
        self.destroy(link, Side::Client);
    }

    /// A path that stopped carrying `sender`'s segments: it retransmits
    /// `tries` times, `every_ms` apart, then its kernel gives up.
    pub fn blackholed(&mut self, link: &Link, sender: Side, tries: usize, every_ms: u64) {
        for _ in 0..tries {
            self.after_ms(every_ms);
            self.retransmit(link, sender, "ESTABLISHED");
        }
        self.give_up(link, sender, "ESTABLISHED");
    }

    pub fn destroy(&mut self, link: &Link, end: Side) {
        let counts = self.counts.get(&link.socks[end.index()]).copied();
        self.emit(link, end, EventKind::Destroy { counts });
    }

    /// `end`'s socket reports, when freed, `retransmitted` segments of
    /// which its peer reported `duplicates` (D-SACK).
    pub fn retransmit_counts(
        &mut self,
        link: &Link,
        end: Side,
        retransmitted: u32,
        duplicates: u32,
    ) {
        self.counts.insert(
            link.socks[end.index()],
            RetransmitCounts {
                retransmitted,
                duplicates,
            },
        );
    }

    /// A packet of the link dropped at `at` before any socket saw it.
    pub fn socketless(&mut self, link: &Link, at: Side, kind: EventKind) {
        let (local, remote) = ends(link, at);
        self.push(at, None, local, remote, kind);
    }

    pub fn emit(&mut self, link: &Link, at: Side, kind: EventKind) {
        self.emit_at(link, at, kind, false);
    }

    fn emit_at(&mut self, link: &Link, at: Side, kind: EventKind, early: bool) {
        let (mut local, mut remote) = ends(link, at);
        if early {
            // Before the kernel filled in the tuple.
            match at {
                Side::Client => local.set_port(0),
                Side::Server => remote = SocketAddr::new(unspecified(remote), 0),
            }
        }
        self.push(at, Some(link.socks[at.index()]), local, remote, kind);
    }

    fn push(
        &mut self,
        at: Side,
        sock: Option<u64>,
        local: SocketAddr,
        remote: SocketAddr,
        kind: EventKind,
    ) {
        self.now_ns += 1_000;
        self.events.push(KernelEvent {
            boot_ns: self.now_ns,
            cpu: 0,
            current: Task {
                pid: 1,
                comm: "test".into(),
            },
            netns: Some(match at {
                Side::Client => CLIENT_NETNS,
                Side::Server => SERVER_NETNS,
            }),
            sock,
            local,
            remote,
            kind,
        });
    }

    /// The events one end's kernel (or both) reported, in order.
    pub fn seen_from(&self, ends: &[Side]) -> Vec<KernelEvent> {
        self.events
            .iter()
            .filter(|e| {
                ends.iter().any(|end| {
                    e.netns
                        == Some(match end {
                            Side::Client => CLIENT_NETNS,
                            Side::Server => SERVER_NETNS,
                        })
                })
            })
            .cloned()
            .collect()
    }

    pub fn end_ns(&self) -> u64 {
        self.now_ns
    }
}

/// The sessions a stream makes, ended a minute after its last event.
pub fn sessions_of(events: &[KernelEvent], end_ns: u64) -> Vec<Session> {
    sessions_through_nat(events, end_ns, &[])
}

/// [`sessions_of`], with a NAT on the host whose connection tracking holds
/// `entries` ((inside, outside) tuples, [`Link::nat_entry`]), asked as the
/// pipeline asks it.
pub fn sessions_through_nat(
    events: &[KernelEvent],
    end_ns: u64,
    entries: &[(Tuple, Tuple)],
) -> Vec<Session> {
    let ports = PortSet {
        control: vec![21, 990],
        passive: None,
    };
    let mut sessions = Sessions::new(ports, "t");
    let mut ended = Vec::new();
    for event in events {
        if let Some((local, peer)) = sessions.nat_question(event)
            && let Some(&(inside, outside)) =
                entries.iter().find(|(inside, _)| *inside == (peer, local))
        {
            sessions.join_nat(inside, outside);
        }
        sessions.observe(event, &mut ended);
    }
    ended.extend(sessions.tick(end_ns + 60_000_000_000));
    ended.extend(sessions.drain());
    ended
}

fn ends(link: &Link, at: Side) -> (SocketAddr, SocketAddr) {
    match (at, link.inside) {
        (Side::Client, _) => (link.client, link.server),
        (Side::Server, Some((client, server))) => (server, client),
        (Side::Server, None) => (link.server, link.client),
    }
}

fn unspecified(addr: SocketAddr) -> std::net::IpAddr {
    match addr {
        SocketAddr::V4(_) => std::net::Ipv4Addr::UNSPECIFIED.into(),
        SocketAddr::V6(_) => std::net::Ipv6Addr::UNSPECIFIED.into(),
    }
}

pub fn state(old: &str, new: &str) -> EventKind {
    EventKind::State {
        old: old.into(),
        new: new.into(),
    }
}

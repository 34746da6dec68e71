//! Files kernel events into sessions: one control connection plus the data
//! connections its `227`/`229`/`PORT`/`EPRT` announced.
//!
//! A connection is the same whichever end of it is on this host: both ends
//! are merged on the 4-tuple (a lab, or a host that is client and server,
//! sees each connection twice, once per network namespace), and each end's
//! events are kept apart as that end's [`View`](super::model::View). What the views add up to
//! (how a connection closed, who closed it, why the session ended) is
//! decided in [`super::close`] and [`super::cause`].

use std::{
    collections::{HashMap, VecDeque},
    net::SocketAddr,
};

use super::model::{
    Conn, ConnId, Entry, Expectation, LinkedBy, Placement, PortUpdate, Session, Timeline,
};
use crate::{
    event::{EventKind, KernelEvent, OpenConnection, Task, is_bare_syn},
    ftp::{ControlEvent, Side, Verb},
    ports::PortSet,
};

/// Sessions followed at once; past it the one quiet longest is evicted
/// (counted, never silently).
pub const MAX_OPEN_SESSIONS: usize = 4096;
/// Commands and replies listed per session.
pub const MAX_LISTED: usize = 200;
/// Data connections kept per session; later ones are counted, not linked.
pub const MAX_DATA_CONNS: usize = 256;
/// Dropped packets kept per connection end, as evidence.
const MAX_DROPS_KEPT: usize = 32;
/// An announced data endpoint not connected to within this long is dropped.
pub const EXPECTATION_TTL_NS: u64 = 60_000_000_000;
/// A session whose connections all closed is emitted once it has been quiet
/// this long, so the late events of the other end and stray resets land in it.
pub const LINGER_NS: u64 = 2_000_000_000;
/// A closed control connection waits at most this long for its data
/// connections' last events.
pub const DATA_GRACE_NS: u64 = 30_000_000_000;
/// Events of a socket held back until its 4-tuple is known (a connecting
/// socket has no local port yet).
const MAX_PENDING_PER_SOCKET: usize = 16;
const MAX_PENDING_SOCKETS: usize = 4096;
/// Socket-less events kept for a connection that may start just after them.
const MAX_ORPHANS: usize = 256;
const ORPHAN_TTL_NS: u64 = 1_000_000_000;

/// Every session being followed.
#[derive(Debug)]
pub struct Sessions {
    ports: PortSet,
    id_prefix: String,
    next_id: u64,
    capacity: usize,
    open: HashMap<String, Session>,
    /// (client, server) 4-tuple → session and connection.
    by_tuple: HashMap<(SocketAddr, SocketAddr), (String, ConnId)>,
    /// (netns, socket) → its session and connection, while the socket lives
    /// (the kernel reuses a freed socket's address).
    by_socket: HashMap<(Option<u32>, u64), (String, ConnId)>,
    /// Socket-less events that matched no connection yet, e.g. the reset
    /// for a refused SYN, which the kernel reports before dropping the SYN.
    orphans: VecDeque<KernelEvent>,
    /// Events of sockets whose 4-tuple is not known yet.
    pending: HashMap<(Option<u32>, u64), Vec<KernelEvent>>,
    /// Data ports the kernel traces because of an announcement: port →
    /// (deadline, connections holding it).
    expected_ports: HashMap<u16, (u64, u32)>,
    port_updates: Vec<PortUpdate>,
    pub evicted: u64,
    pub started: u64,
}

impl Sessions {
    pub fn new(ports: PortSet, id_prefix: impl Into<String>) -> Self {
        Self::with_capacity(ports, id_prefix, MAX_OPEN_SESSIONS)
    }

    pub fn with_capacity(ports: PortSet, id_prefix: impl Into<String>, capacity: usize) -> Self {
        Self {
            ports,
            id_prefix: id_prefix.into(),
            next_id: 0,
            capacity: capacity.max(1),
            open: HashMap::new(),
            by_tuple: HashMap::new(),
            by_socket: HashMap::new(),
            orphans: VecDeque::new(),
            pending: HashMap::new(),
            expected_ports: HashMap::new(),
            port_updates: Vec::new(),
            evicted: 0,
            started: 0,
        }
    }

    pub fn open_count(&self) -> usize {
        self.open.len()
    }

    /// `n` kernel events were lost or skipped: every session open now may
    /// lack some of its own, and its record says so.
    pub fn note_loss(&mut self, n: u64) {
        for session in self.open.values_mut() {
            session.events_lost += n;
        }
    }

    /// Seeds the session of a control connection that was open before
    /// tracing began (from sock_diag): its start, user and earlier words are
    /// unknown. Returns whether it was a control connection.
    pub fn seed(&mut self, open: &OpenConnection, now_ns: u64, out: &mut Vec<Session>) -> bool {
        let (client, server, end) = if self.ports.control.contains(&open.local.port()) {
            (open.remote, open.local, Side::Server)
        } else if self.ports.control.contains(&open.remote.port()) {
            (open.local, open.remote, Side::Client)
        } else {
            return false;
        };
        let sid = match self.by_tuple.get(&(client, server)) {
            Some((sid, _)) => sid.clone(),
            None => {
                let event = KernelEvent {
                    boot_ns: now_ns,
                    cpu: 0,
                    current: Task {
                        pid: 0,
                        comm: String::new(),
                    },
                    netns: Some(open.netns),
                    sock: None,
                    local: open.local,
                    remote: open.remote,
                    kind: EventKind::Destroy,
                };
                let (sid, _, _) = self.start_session(&event, client, server, end, out);
                sid
            }
        };
        let session = self.open.get_mut(&sid).expect("just found or made");
        session.seeded = true;
        let view = session.control.view_mut(end, now_ns);
        view.had_socket = true;
        // TCP_ESTABLISHED; a closing connection's state is left to its events.
        if open.state == 1 {
            view.established_ns = Some(now_ns);
        }
        true
    }

    /// `port` is traced because an announcement named it.
    pub fn expects(&self, port: u16) -> bool {
        self.expected_ports.contains_key(&port)
    }

    /// Kernel port-map changes since the last call.
    pub fn take_port_updates(&mut self) -> Vec<PortUpdate> {
        std::mem::take(&mut self.port_updates)
    }

    /// Files `event` under its session. Returns where it landed, or `None`
    /// for an event of no session (yet). Evicted sessions are returned in
    /// `evicted_out` so they are still reported.
    pub fn observe(&mut self, event: &KernelEvent, out: &mut Vec<Session>) -> Option<Placement> {
        if let EventKind::ControlSegment(segment) = &event.kind {
            // Only counted: the parser turns readable segments into `ftp` events.
            if segment.payload_len > 0 {
                self.count_encrypted_segment(event, segment.outgoing);
            }
            return None;
        }
        let key = event.sock.map(|sk| (event.netns, sk));
        if let Some(key) = key
            && !self.by_socket.contains_key(&key)
            && !full_tuple(event)
        {
            self.hold_back(key, event, out);
            return None;
        }
        if let Some(key) = key
            && let Some(held) = self.pending.remove(&key)
        {
            // They happened before the socket had its 4-tuple: file them
            // under the one it has now.
            for mut earlier in held {
                earlier.local = event.local;
                earlier.remote = event.remote;
                self.place(&earlier, out);
            }
        }
        self.place(event, out)
    }

    /// Sessions that have ended by `now_ns` (boot time), and the expired
    /// expectations' ports released.
    pub fn tick(&mut self, now_ns: u64) -> Vec<Session> {
        let ended: Vec<String> = self
            .open
            .values()
            .filter(|s| {
                let quiet = now_ns.saturating_sub(s.last_ns);
                (s.is_done() && quiet >= LINGER_NS)
                    || (s.control.is_done() && quiet >= DATA_GRACE_NS)
            })
            .map(|s| s.id.clone())
            .collect();
        let finished = ended.iter().filter_map(|id| self.close(id)).collect();
        let expired: Vec<u16> = self
            .expected_ports
            .iter()
            .filter(|(_, (deadline, holders))| *holders == 0 && *deadline <= now_ns)
            .map(|(port, _)| *port)
            .collect();
        for port in expired {
            self.expected_ports.remove(&port);
            self.port_updates.push(PortUpdate {
                port,
                expected: false,
            });
        }
        finished
    }

    /// Every session still open, for the end of the run.
    pub fn drain(&mut self) -> Vec<Session> {
        let mut ids: Vec<String> = self.open.keys().cloned().collect();
        ids.sort();
        ids.iter().filter_map(|id| self.close(id)).collect()
    }

    fn close(&mut self, id: &str) -> Option<Session> {
        let session = self.open.remove(id)?;
        self.by_tuple.retain(|_, (sid, _)| sid != id);
        self.by_socket.retain(|_, (sid, _)| sid != id);
        for conn in session.conns() {
            if let Some(port) = conn.holds_port {
                self.release_port(port, session.last_ns);
            }
        }
        Some(session)
    }

    fn hold_back(&mut self, key: (Option<u32>, u64), event: &KernelEvent, out: &mut Vec<Session>) {
        if matches!(event.kind, EventKind::Destroy) {
            // Freed before its 4-tuple was known: a listener, or a connect
            // that never got a port. Only a connection attempt is kept.
            let held = self.pending.remove(&key).unwrap_or_default();
            if event.remote.port() != 0 {
                for earlier in held.iter().chain([event]) {
                    self.place(earlier, out);
                }
            }
            return;
        }
        if !self.pending.contains_key(&key) && self.pending.len() >= MAX_PENDING_SOCKETS {
            return;
        }
        let held = self.pending.entry(key).or_default();
        if held.len() < MAX_PENDING_PER_SOCKET {
            held.push(event.clone());
        }
    }

    fn place(&mut self, event: &KernelEvent, out: &mut Vec<Session>) -> Option<Placement> {
        let (session_id, conn_id, end) = match self.find(event) {
            Some(found) => found,
            None => {
                let Some(started) = self.start_conn(event, out) else {
                    self.keep_orphan(event);
                    return None;
                };
                self.adopt_orphans(&started, event);
                started
            }
        };
        if let Some(sk) = event.sock {
            let key = (event.netns, sk);
            if matches!(event.kind, EventKind::Destroy) {
                self.by_socket.remove(&key);
            } else if full_tuple(event) {
                self.by_socket.insert(key, (session_id.clone(), conn_id));
            }
        }
        self.record(&session_id, conn_id, end, event);
        Some(Placement {
            session: session_id,
            conn: conn_id,
            end,
        })
    }

    /// The session, connection and end an event belongs to, if known.
    fn find(&self, event: &KernelEvent) -> Option<(String, ConnId, Side)> {
        if let Some(sk) = event.sock
            && let Some((sid, conn)) = self.by_socket.get(&(event.netns, sk))
        {
            let c = self.open.get(sid)?.conn(*conn);
            return Some((sid.clone(), *conn, end_of(event, c.client, c.server)));
        }
        for (client, server) in [(event.local, event.remote), (event.remote, event.local)] {
            let Some((sid, conn)) = self.by_tuple.get(&(client, server)) else {
                continue;
            };
            // A connection opening on the 4-tuple of one whose end here is
            // closed: the tuple was reused (a client port taken again while
            // the old session lingers). (A TIME_WAIT socket answering a late
            // segment is the old connection's.)
            let end = end_of(event, client, server);
            let old = self.open.get(sid)?.conn(*conn).view(end);
            if opens(event) && old.is_some_and(|v| v.had_socket && v.is_done()) {
                return None;
            }
            return Some((sid.clone(), *conn, end));
        }
        None
    }

    fn keep_orphan(&mut self, event: &KernelEvent) {
        if event.sock.is_none() && event.remote.port() != 0 {
            if self.orphans.len() == MAX_ORPHANS {
                self.orphans.pop_front();
            }
            self.orphans.push_back(event.clone());
        }
    }

    /// Files the orphans of a connection that just started under it, first.
    fn adopt_orphans(&mut self, started: &(String, ConnId, Side), event: &KernelEvent) {
        let (sid, conn_id, _) = started;
        let tuple = [(event.local, event.remote), (event.remote, event.local)];
        let recent = |o: &KernelEvent| event.boot_ns.saturating_sub(o.boot_ns) <= ORPHAN_TTL_NS;
        let (mine, rest): (Vec<_>, Vec<_>) = std::mem::take(&mut self.orphans)
            .into_iter()
            .partition(|o| recent(o) && tuple.contains(&(o.local, o.remote)));
        self.orphans = rest.into_iter().filter(|o| recent(o)).collect();
        let conn = self.open[sid].conn(*conn_id);
        let (client, server) = (conn.client, conn.server);
        for orphan in mine {
            self.record(sid, *conn_id, end_of(&orphan, client, server), &orphan);
        }
    }

    fn start_conn(
        &mut self,
        event: &KernelEvent,
        out: &mut Vec<Session>,
    ) -> Option<(String, ConnId, Side)> {
        // Only the events that begin or show a connection open one: a stray
        // destroy or reset for an untracked socket does not.
        let (local, remote) = (event.local, event.remote);
        if remote.port() == 0 {
            return None;
        }
        // Without a socket, only a dropped connection attempt (a SYN) is
        // news; a stray segment of a forgotten connection is not.
        if event.sock.is_none() && !opens(event) {
            return None;
        }
        if self.ports.control.contains(&local.port()) {
            return Some(self.start_session(event, remote, local, Side::Server, out));
        }
        if self.ports.control.contains(&remote.port()) {
            return Some(self.start_session(event, local, remote, Side::Client, out));
        }
        self.link_data(event)
    }

    fn start_session(
        &mut self,
        event: &KernelEvent,
        client: SocketAddr,
        server: SocketAddr,
        end: Side,
        out: &mut Vec<Session>,
    ) -> (String, ConnId, Side) {
        if self.open.len() >= self.capacity {
            self.evict_oldest(out);
        }
        self.next_id += 1;
        self.started += 1;
        let id = format!("{}-{}", self.id_prefix, self.next_id);
        let ns = event.boot_ns;
        let session = Session {
            id: id.clone(),
            start_ns: ns,
            last_ns: ns,
            seeded: false,
            control: Conn::new(ConnId::Control, client, server, ns, LinkedBy::Announcement),
            data: Vec::new(),
            user: None,
            commands: Vec::new(),
            replies: Vec::new(),
            unlisted: 0,
            data_unlinked: 0,
            quit_ns: None,
            transfer_open: false,
            // Implicit FTPS: TLS from the first byte.
            encrypted_ns: (server.port() == 990).then_some(ns),
            encrypted_segments: [0, 0],
            expectations: Vec::new(),
            timeline: Timeline::default(),
            control_readable: false,
            events_lost: 0,
        };
        self.open.insert(id.clone(), session);
        self.by_tuple
            .insert((client, server), (id.clone(), ConnId::Control));
        (id, ConnId::Control, end)
    }

    fn evict_oldest(&mut self, out: &mut Vec<Session>) {
        let oldest = self
            .open
            .values()
            .min_by_key(|s| s.last_ns)
            .map(|s| s.id.clone());
        if let Some(id) = oldest
            && let Some(session) = self.close(&id)
        {
            self.evicted += 1;
            out.push(session);
        }
    }

    /// Ties a new connection to the session whose announcement it answers.
    fn link_data(&mut self, event: &KernelEvent) -> Option<(String, ConnId, Side)> {
        let ns = event.boot_ns;
        let ends = [(event.local, event.remote), (event.remote, event.local)];
        // The most recent unused announcement that fits wins.
        let mut best: Option<(u64, String, usize, SocketAddr, SocketAddr)> = None;
        for session in self.open.values() {
            for (index, exp) in session.expectations.iter().enumerate() {
                if exp.used_by.is_some() || ns.saturating_sub(exp.at_ns) > EXPECTATION_TTL_NS {
                    continue;
                }
                for (a, b) in ends {
                    let fits = match exp.announced_by {
                        // Passive: `a` is the server's data end, `b` the client.
                        Side::Server => {
                            a.port() == exp.port
                                && b.ip() == session.control.client.ip()
                                && (exp.addr.is_none_or(|addr| addr == a.ip())
                                    || a.ip() == session.control.server.ip())
                        }
                        // Active: `a` is the client's announced end.
                        Side::Client => {
                            a.port() == exp.port
                                && exp.addr.is_none_or(|addr| addr == a.ip())
                                && b.ip() == session.control.server.ip()
                        }
                    };
                    if fits && best.as_ref().is_none_or(|(at, ..)| exp.at_ns > *at) {
                        let (client, server) = match exp.announced_by {
                            Side::Server => (b, a),
                            Side::Client => (a, b),
                        };
                        best = Some((exp.at_ns, session.id.clone(), index, client, server));
                    }
                }
            }
        }
        if let Some((_, sid, index, client, server)) = best {
            let conn_id =
                self.add_data_conn(&sid, client, server, ns, LinkedBy::Announcement, event);
            let session = self.open.get_mut(&sid).expect("found above");
            // Used, even by a connection beyond the session's cap.
            session.expectations[index].used_by = Some(conn_id.unwrap_or(ConnId::Control));
            let conn_id = conn_id?;
            let port = session.expectations[index].port;
            if self.expected_ports.contains_key(&port) {
                self.open
                    .get_mut(&sid)
                    .expect("found above")
                    .conn_mut(conn_id)
                    .holds_port = Some(port);
                if let Some((_, holders)) = self.expected_ports.get_mut(&port) {
                    *holders += 1;
                }
            }
            return Some((sid, conn_id, end_of(event, client, server)));
        }
        self.link_by_heuristic(event)
    }

    /// A data connection of a session whose channel cannot be read: on a
    /// data port, from the control connection's client address, to its
    /// server address; the most recently active such session.
    fn link_by_heuristic(&mut self, event: &KernelEvent) -> Option<(String, ConnId, Side)> {
        let ends = [(event.local, event.remote), (event.remote, event.local)];
        let mut best: Option<(u64, String, SocketAddr, SocketAddr)> = None;
        for session in self.open.values() {
            if session.control_readable && !session.encrypted() {
                continue;
            }
            for (client, server) in ends {
                let data_port = self.ports.role(server.port()) != 0
                    || self.expected_ports.contains_key(&server.port());
                if data_port
                    && !self.ports.control.contains(&server.port())
                    && client.ip() == session.control.client.ip()
                    && server.ip() == session.control.server.ip()
                    && best.as_ref().is_none_or(|(at, ..)| session.last_ns > *at)
                {
                    best = Some((session.last_ns, session.id.clone(), client, server));
                }
            }
        }
        let (_, sid, client, server) = best?;
        let conn_id = self.add_data_conn(
            &sid,
            client,
            server,
            event.boot_ns,
            LinkedBy::Heuristic,
            event,
        )?;
        Some((sid, conn_id, end_of(event, client, server)))
    }

    fn add_data_conn(
        &mut self,
        sid: &str,
        client: SocketAddr,
        server: SocketAddr,
        ns: u64,
        by: LinkedBy,
        event: &KernelEvent,
    ) -> Option<ConnId> {
        let session = self.open.get_mut(sid).expect("caller found it");
        if session.data.len() >= MAX_DATA_CONNS {
            // Counted once per connection, on the event that opens it.
            if opens(event) {
                session.data_unlinked += 1;
            }
            return None;
        }
        let id = ConnId::Data(session.data.len() + 1);
        session.data.push(Conn::new(id, client, server, ns, by));
        self.by_tuple.insert((client, server), (sid.to_owned(), id));
        Some(id)
    }

    fn count_encrypted_segment(&mut self, event: &KernelEvent, outgoing: bool) {
        let Some((sid, ConnId::Control, end)) = self.find(event) else {
            return;
        };
        let session = self.open.get_mut(&sid).expect("found");
        if !session.encrypted() {
            return;
        }
        if end == Side::Client && server_end_seen(&session.control) {
            return;
        }
        let from = if outgoing { end } else { end.other() };
        session.encrypted_segments[from.index()] += 1;
    }

    fn record(&mut self, sid: &str, conn_id: ConnId, end: Side, event: &KernelEvent) {
        let ns = event.boot_ns;
        let mut expect = None;
        let session = self.open.get_mut(sid).expect("placed");
        session.last_ns = session.last_ns.max(ns);
        let conn = session.conn_mut(conn_id);
        conn.last_ns = conn.last_ns.max(ns);
        let view = conn.view_mut(end, ns);
        view.last_ns = view.last_ns.max(ns);
        if event.sock.is_some() {
            view.had_socket = true;
        }
        match &event.kind {
            EventKind::State { old, new } => {
                // Leaving a synchronized state proves the connection was
                // established, even if that transition's event was missed.
                if matches!(
                    old.as_str(),
                    "ESTABLISHED"
                        | "FIN_WAIT1"
                        | "FIN_WAIT2"
                        | "CLOSE_WAIT"
                        | "LAST_ACK"
                        | "CLOSING"
                ) {
                    view.established_ns.get_or_insert(ns);
                }
                match new.as_str() {
                    "SYN_SENT" => view.syn_sent = true,
                    "ESTABLISHED" => {
                        view.established_ns.get_or_insert(ns);
                    }
                    "FIN_WAIT1" if old == "ESTABLISHED" || old == "SYN_RECV" => {
                        view.fin_sent_ns.get_or_insert(ns);
                    }
                    "CLOSE_WAIT" => {
                        view.fin_received_ns.get_or_insert(ns);
                    }
                    "CLOSE" if old != "LISTEN" => {
                        view.closed_ns.get_or_insert(ns);
                    }
                    _ => {}
                }
            }
            // One the kernel tried but could not send (`error`) is in the
            // timeline, not in the counts: Tcp.RetransSegs skips it too.
            EventKind::Retransmit { error: Some(_), .. } => {}
            EventKind::Retransmit {
                syn, segs, state, ..
            } => {
                let n = segs.unwrap_or(1).max(1);
                if *syn {
                    view.syn_retransmits += n;
                } else if matches!(state.as_str(), "FIN_WAIT1" | "CLOSING" | "LAST_ACK") {
                    view.closing_retransmits += n;
                } else {
                    view.retransmits += n;
                }
            }
            EventKind::ResetSent { reason, state } => {
                if state.is_some() {
                    view.resets_sent.push((ns, reason.clone()));
                } else {
                    view.resets_sent_without_socket += 1;
                }
            }
            EventKind::ResetReceived { state } => view.resets_received.push((ns, state.clone())),
            EventKind::SocketError { errno } => view.errors.push((ns, *errno)),
            EventKind::Destroy => view.destroyed = true,
            EventKind::KeepaliveProbe { .. } => view.keepalive_probes += 1,
            EventKind::ZeroWindowProbe { .. } => view.zero_window_probes += 1,
            EventKind::Drop {
                reason,
                tcp_flags,
                location,
                ..
            } => {
                // The first few are the evidence; the timeline counts the rest.
                if view.drops.len() < MAX_DROPS_KEPT {
                    view.drops
                        .push((ns, reason.clone(), *tcp_flags, location.clone()));
                }
            }
            EventKind::Ftp { event: said, .. } => {
                // Words on the channel: it is established.
                view.established_ns.get_or_insert(ns);
                session.control_readable = true;
                if end == Side::Client && server_end_seen(&session.control) {
                    // Both ends of the connection are on this host and say
                    // the same words: the server's account is kept.
                    return;
                }
                expect = apply_ftp(session, said, ns);
            }
            EventKind::ControlSegment(_) => {}
            // Just before the reset_received event it explains. A burst of
            // resets (one per segment in flight) makes one entry: the first,
            // which is the one the socket acts on.
            EventKind::ResetTtl { ttl, usual_ttl } => {
                if view.reset_ttl.is_some() {
                    return;
                }
                view.reset_ttl = Some((*ttl, *usual_ttl));
            }
        }
        session.timeline.push(Entry {
            ns,
            conn: conn_id,
            seen_at: end,
            kind: event.kind.clone(),
        });
        if let Some(port) = expect {
            self.expect_port(port, ns);
        }
        if matches!(event.kind, EventKind::Destroy) {
            let session = &self.open[sid];
            let conn = session.conn(conn_id);
            if conn.is_done()
                && let Some(port) = conn.holds_port
            {
                self.open
                    .get_mut(sid)
                    .expect("placed")
                    .conn_mut(conn_id)
                    .holds_port = None;
                self.release_port(port, ns);
            }
        }
    }

    fn expect_port(&mut self, port: u16, ns: u64) {
        if self.ports.contains(port) {
            // Traced already (`--passive-ports`, port 20): nothing to add.
            return;
        }
        let entry = self.expected_ports.entry(port).or_insert_with(|| {
            self.port_updates.push(PortUpdate {
                port,
                expected: true,
            });
            (0, 0)
        });
        entry.0 = entry.0.max(ns + EXPECTATION_TTL_NS);
    }

    fn release_port(&mut self, port: u16, ns: u64) {
        if let Some((deadline, holders)) = self.expected_ports.get_mut(&port) {
            *holders = holders.saturating_sub(1);
            // Late segments of the closing connection are still wanted.
            *deadline = (*deadline).max(ns + LINGER_NS);
        }
    }
}

/// Applies what a peer said to the session; returns a data port to expect
/// (the server's for passive mode, the client's for active mode, whose
/// server may connect from any port).
fn apply_ftp(session: &mut Session, said: &ControlEvent, ns: u64) -> Option<u16> {
    match said {
        ControlEvent::Command { verb, arg } => {
            if *verb == Verb::User {
                session.user = arg.clone();
            }
            if *verb == Verb::Quit {
                session.quit_ns.get_or_insert(ns);
            }
            list(
                &mut session.commands,
                &mut session.unlisted,
                verb.as_str().to_owned(),
            );
            None
        }
        ControlEvent::Reply { code, .. } => {
            match code {
                125 | 150 => session.transfer_open = true,
                226 | 250 | 425 | 426 | 450 | 451 | 452 | 550 | 551 | 552 => {
                    session.transfer_open = false;
                }
                _ => {}
            }
            if session.replies.len() < MAX_LISTED {
                session.replies.push(*code);
            } else {
                session.unlisted += 1;
            }
            None
        }
        ControlEvent::DataEndpoint {
            announced_by,
            addr,
            port,
        } => {
            session.expectations.push(Expectation {
                announced_by: *announced_by,
                addr: addr.map(|a| a.to_canonical()),
                port: *port,
                at_ns: ns,
                used_by: None,
            });
            Some(*port)
        }
        ControlEvent::Encrypted => {
            session.encrypted_ns.get_or_insert(ns);
            None
        }
    }
}

fn list(items: &mut Vec<String>, unlisted: &mut u64, item: String) {
    if items.len() < MAX_LISTED {
        items.push(item);
    } else {
        *unlisted += 1;
    }
}

/// Which end of the connection (client, server) the event's socket is.
fn end_of(event: &KernelEvent, client: SocketAddr, server: SocketAddr) -> Side {
    if event.local == server || (event.local.port() == server.port() && event.remote == client) {
        Side::Server
    } else {
        Side::Client
    }
}

/// The event begins a connection: a socket entering SYN_SENT or SYN_RECV,
/// or a SYN dropped before any socket saw it.
fn opens(event: &KernelEvent) -> bool {
    match &event.kind {
        EventKind::State { new, .. } => new == "SYN_SENT" || new == "SYN_RECV",
        EventKind::Drop { tcp_flags, .. } => event.sock.is_none() && is_bare_syn(*tcp_flags),
        _ => false,
    }
}

/// The server's end of the connection has a socket on this host.
fn server_end_seen(conn: &Conn) -> bool {
    conn.view(Side::Server).is_some_and(|v| v.had_socket)
}

/// Both ports are known (a connecting socket has no local port at first; a
/// listener has no remote end).
fn full_tuple(event: &KernelEvent) -> bool {
    event.local.port() != 0 && event.remote.port() != 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::session::model::{TIMELINE_HEAD, TIMELINE_TAIL};
    use crate::{
        ftp::Side::{Client, Server},
        session::script::{Script, sessions_of},
    };

    const BOTH: &[Side] = &[Client, Server];

    fn ports() -> PortSet {
        PortSet {
            control: vec![21],
            passive: None,
        }
    }

    #[test]
    fn both_ends_make_one_session_and_the_words_count_once() {
        let mut s = Script::new();
        let control = s.connect("192.0.2.2:40000", "192.0.2.1:21");
        s.login(&control);
        s.fin(&control, Server);
        let sessions = sessions_of(&s.seen_from(BOTH), s.end_ns());
        assert_eq!(sessions.len(), 1);
        let session = &sessions[0];
        assert_eq!(session.seen_from(), [Client, Server]);
        assert_eq!(session.commands, ["USER"]);
        assert_eq!(session.replies, [220, 230]);
        assert_eq!(session.user.as_deref(), Some("alice"));
        // The handshake's first events (no port yet) were held back, then
        // filed under the connection.
        let first = session.timeline.entries().next().unwrap();
        assert_eq!((first.conn, first.seen_at), (ConnId::Control, Client));
        assert!(matches!(&first.kind, EventKind::State { new, .. } if new == "SYN_SENT"));
    }

    #[test]
    fn a_reused_four_tuple_is_a_new_session() {
        let mut s = Script::new();
        for _ in 0..3 {
            let control = s.connect("192.0.2.2:40000", "192.0.2.1:21");
            s.login(&control);
            s.fin(&control, Server);
            s.after_ms(10);
        }
        let sessions = sessions_of(&s.seen_from(BOTH), s.end_ns());
        assert_eq!(sessions.len(), 3);
        assert!(sessions.iter().all(|s| s.replies == [220, 230]));
    }

    #[test]
    fn announced_ports_are_traced_until_they_expire_or_their_connection_closes() {
        let mut s = Script::new();
        let control = s.connect("192.0.2.2:40000", "192.0.2.1:21");
        s.login(&control);
        s.pasv(&control, 30001);
        s.pasv(&control, 30002);
        let data = s.connect("192.0.2.2:40002", "192.0.2.1:30002");
        let opened = s.end_ns();
        // A long transfer: nothing for longer than an announcement lives.
        s.after_ms(EXPECTATION_TTL_NS / 1_000_000 + 10);
        s.fin(&data, Server);
        s.fin(&control, Server);
        let (early, late): (Vec<_>, Vec<_>) = s
            .seen_from(BOTH)
            .into_iter()
            .partition(|e| e.boot_ns <= opened);
        let mut sessions = Sessions::new(ports(), "t");
        let mut ended = Vec::new();
        for event in &early {
            sessions.observe(event, &mut ended);
        }
        let mut updates = sessions.take_port_updates();
        updates.sort_by_key(|u| u.port);
        let update = |port, expected| PortUpdate { port, expected };
        assert_eq!(updates, [update(30001, true), update(30002, true)]);
        // 30001 was never used: it expires; 30002 is held by data:1.
        assert!(sessions.tick(opened + EXPECTATION_TTL_NS + 1).is_empty());
        assert_eq!(sessions.take_port_updates(), [update(30001, false)]);
        for event in &late {
            sessions.observe(event, &mut ended);
        }
        let finished = sessions.tick(s.end_ns() + DATA_GRACE_NS);
        assert_eq!(finished.len(), 1);
        assert_eq!(finished[0].data.len(), 1);
        assert_eq!(sessions.take_port_updates(), [update(30002, false)]);
        assert!(ended.is_empty());
    }

    #[test]
    fn the_oldest_session_is_evicted_and_counted_past_the_cap() {
        let mut s = Script::new();
        for port in 0..5u16 {
            let control = s.connect(&format!("192.0.2.2:{}", 40000 + port), "192.0.2.1:21");
            s.login(&control);
        }
        let mut sessions = Sessions::with_capacity(ports(), "t", 3);
        let mut evicted = Vec::new();
        for event in s.seen_from(BOTH) {
            sessions.observe(&event, &mut evicted);
        }
        assert_eq!(sessions.evicted, 2);
        assert_eq!(sessions.open_count(), 3);
        let ports: Vec<u16> = evicted.iter().map(|s| s.control.client.port()).collect();
        assert_eq!(ports, [40000, 40001]);
    }

    /// Events lost while sessions were open are charged to each of them,
    /// not to one that starts later; the record says what it may lack.
    #[test]
    fn lost_events_are_charged_to_the_sessions_open_then() {
        let mut s = Script::new();
        let first = s.connect("192.0.2.2:40000", "192.0.2.1:21");
        s.login(&first);
        let second = s.connect("192.0.2.2:40001", "192.0.2.1:21");
        s.login(&second);
        let events = s.seen_from(BOTH);
        let mut sessions = Sessions::new(ports(), "t");
        let mut out = Vec::new();
        let half = events.len() / 2;
        for event in &events[..half] {
            sessions.observe(event, &mut out);
        }
        assert_eq!(sessions.open_count(), 1);
        sessions.note_loss(3);
        for event in &events[half..] {
            sessions.observe(event, &mut out);
        }
        sessions.note_loss(2);
        let mut ended = sessions.drain();
        ended.sort_by_key(|s| s.control.client.port());
        let lost: Vec<u64> = ended.iter().map(|s| s.events_lost).collect();
        assert_eq!(lost, [5, 2]);
    }

    #[test]
    fn a_long_session_keeps_its_first_and_last_entries() {
        let mut s = Script::new();
        let control = s.connect("192.0.2.2:40000", "192.0.2.1:21");
        s.login(&control);
        for _ in 0..500 {
            s.command(&control, Verb::Other("NOOP".into()), None);
        }
        s.fin(&control, Server);
        let sessions = sessions_of(&s.seen_from(&[Server]), s.end_ns());
        let timeline = &sessions[0].timeline;
        assert_eq!(timeline.head.len(), TIMELINE_HEAD);
        assert_eq!(timeline.tail.len(), TIMELINE_TAIL);
        assert!(timeline.omitted > 0);
        assert!(matches!(
            &timeline.tail.back().unwrap().kind,
            EventKind::Destroy
        ));
        assert_eq!(sessions[0].commands.len(), MAX_LISTED);
    }

    #[test]
    fn data_connections_beyond_the_cap_are_counted_not_linked() {
        let mut s = Script::new();
        let control = s.connect("192.0.2.2:40000", "192.0.2.1:21");
        s.login(&control);
        let extra = 5;
        for n in 0..MAX_DATA_CONNS + extra {
            let port = 30000 + u16::try_from(n % 1000).unwrap();
            s.pasv(&control, port);
            let client = format!("192.0.2.2:{}", 41000 + n);
            let data = s.connect(&client, &format!("192.0.2.1:{port}"));
            s.fin(&data, Server);
        }
        s.fin(&control, Server);
        let sessions = sessions_of(&s.seen_from(BOTH), s.end_ns());
        assert_eq!(sessions.len(), 1);
        assert_eq!(sessions[0].data.len(), MAX_DATA_CONNS);
        assert_eq!(sessions[0].data_unlinked, extra as u64);
    }

    #[test]
    fn stray_segments_of_no_connection_start_nothing() {
        let mut s = Script::new();
        let control = s.link("192.0.2.2:40000", "192.0.2.1:21");
        s.reset_without_socket(&control, Server, None);
        s.dropped(&control, Server, None, 0x11, None);
        assert!(sessions_of(&s.seen_from(BOTH), s.end_ns()).is_empty());
    }
}

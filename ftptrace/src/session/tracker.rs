//! Files kernel events into sessions: one control connection plus the data
//! connections its `227`/`229`/`PORT`/`EPRT` announced.
//!
//! A connection is the same whichever end of it is on this host: both ends
//! are merged on the 4-tuple (a lab, or a host that is client and server,
//! sees each connection twice, once per network namespace), and each end's
//! events are kept apart as that end's [`View`](super::model::View). What
//! the views add up to (how a connection closed, who closed it, why the
//! session ended) is decided in [`super::close`] and [`super::cause`].
//!
//! Every lookup is an index (by tuple, socket, announced endpoint, client
//! address, quiet time), so an event costs the same with ten sessions open
//! or a hundred thousand; and every table a stranger can grow has a cap,
//! with what it left out counted.

use std::{
    collections::{BTreeSet, VecDeque},
    net::{IpAddr, SocketAddr},
};

// Keyed per process like std's, so that tuples a stranger picks cannot
// be made to collide, at a fraction of SipHash's cost per lookup.
use foldhash::HashMap;

use super::{
    dns_names::DnsNames,
    losses::Losses,
    model::{Conn, ConnId, Entry, Expectation, LinkedBy, Placement, Session, Timeline},
    tuple_index::{Place, Tuple, TupleIndex},
};
use crate::{
    event::{EventKind, KernelEvent, Name, OpenConnection, Task, is_bare_syn},
    ftp::{ControlEvent, Side, Verb},
    ports::{Mark, MarkUpdate, PortSet},
};

/// Sessions followed at once by default; past it the one quiet longest is
/// evicted (counted, never silently). About 1.4 KiB each when idle.
pub const MAX_OPEN_SESSIONS: usize = 100_000;
/// Commands and replies listed per session.
pub const MAX_LISTED: usize = 200;
/// Data connections kept per session; later ones are counted, not linked.
pub const MAX_DATA_CONNS: usize = 256;
/// Dropped packets, resets and errors kept per connection end, as evidence.
const MAX_KEPT: usize = 32;
/// Announced endpoints kept per session (the newest; one per endpoint).
pub const MAX_EXPECTATIONS: usize = 32;
/// Kernel marks (announced ports and endpoints traced) at once, all
/// sessions together; the kernel programs hold to the same number.
pub const MAX_MARKS: usize = ftptrace_common::MAX_MARKS as usize;
/// An announced data endpoint not connected to within this long is dropped.
pub const EXPECTATION_TTL_NS: u64 = ftptrace_common::EXPECTATION_TTL_NS;
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

/// A session's handle in the indexes.
type Key = u64;
/// (netns, socket address).
type SocketKey = (Option<u32>, u64);

/// The tuple of the connection at `place`, while its session is open.
fn tuple_in(open: &HashMap<Key, Box<Open>>, (key, conn): Place) -> Option<Tuple> {
    let conn = open.get(&key)?.get_conn(conn)?;
    Some((conn.client, conn.server))
}

/// Keeps `item` if `list` has fewer than [`MAX_KEPT`].
fn keep<T>(list: &mut Vec<T>, item: T) {
    if list.len() < MAX_KEPT {
        list.push(item);
    }
}

/// Pushes onto a list that usually stays one long: room for one at first,
/// not four (an idle session's indexes are most of what it costs).
fn push_small<T>(list: &mut Vec<T>, item: T) {
    if list.capacity() == 0 {
        list.reserve_exact(1);
    }
    list.push(item);
}

/// An open session with what the tracker indexed of it: one allocation
/// and one table entry a session. Reads as its session.
#[derive(Debug)]
struct Open {
    session: Session,
    indexed: Indexed,
}

impl std::ops::Deref for Open {
    type Target = Session;
    fn deref(&self) -> &Session {
        &self.session
    }
}

impl std::ops::DerefMut for Open {
    fn deref_mut(&mut self) -> &mut Session {
        &mut self.session
    }
}

/// What the tracker indexes of one session, to unindex it when it ends,
/// beyond what the session says itself (its connections' tuples and its
/// client's address, indexed as each was made).
#[derive(Debug, Default)]
struct Indexed {
    sockets: Vec<SocketKey>,
    /// Expectation index keys, with the expectation's id.
    endpoints: Vec<((IpAddr, u16), u64)>,
    /// In the closing set under this last_ns.
    closing_at: Option<u64>,
    /// Its first event was the client's end (counted in
    /// `Sessions::client_sessions`).
    began_at_client: bool,
}

/// A kernel mark: until when it is wanted, and how many live connections
/// (or open expectations) hold it.
#[derive(Debug, Clone, Copy)]
struct MarkState {
    deadline: u64,
    holders: u32,
}

/// Counts of what the tracker left out, for `stats`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Dropped {
    /// Announced endpoints beyond a session's cap.
    pub expectations: u64,
    /// Marks refused because [`MAX_MARKS`] were in force.
    pub marks: u64,
    /// Events of sockets whose tuple was unknown, beyond the pending caps.
    pub pending: u64,
    /// Socket-less events that matched nothing, pushed out by newer ones.
    pub orphans: u64,
}

/// Every session being followed.
#[derive(Debug)]
pub struct Sessions {
    ports: PortSet,
    id_prefix: String,
    next_key: Key,
    capacity: usize,
    /// Boxed: the table then holds pointers, and growing it under a
    /// connection storm moves and doubles 16 bytes a session, not 500.
    open: HashMap<Key, Box<Open>>,
    /// (client, server) 4-tuple → session and connection.
    by_tuple: TupleIndex,
    /// The 4-tuple a NAT on this host gave a connection, as its server's
    /// end sees it → the connection (filed under the client's tuple).
    by_inside: HashMap<Tuple, Place>,
    /// Open sessions whose client end is on this host: only then can a
    /// new server end be the other half of one through a NAT.
    client_sessions: usize,
    /// (netns, socket) → its session and connection, while the socket lives
    /// (the kernel reuses a freed socket's address).
    by_socket: HashMap<SocketKey, (Key, ConnId)>,
    /// (the data connection's client address, the announced port) → the
    /// expectations that fit, by session and expectation id.
    by_endpoint: HashMap<(IpAddr, u16), Vec<(Key, u64)>>,
    /// Control connections' client addresses → their sessions, for linking
    /// data connections of unreadable (TLS) channels.
    by_client_ip: HashMap<IpAddr, BTreeSet<Key>>,
    /// Every open session by when it was last active: the quietest first.
    quiet: BTreeSet<(u64, Key)>,
    /// Sessions whose control connection is done, by when last active.
    closing: BTreeSet<(u64, Key)>,
    /// Socket-less events that matched no connection yet, e.g. the reset
    /// for a refused SYN, which the kernel reports before dropping the SYN.
    orphans: VecDeque<KernelEvent>,
    /// Events of sockets whose 4-tuple is not known yet.
    pending: HashMap<SocketKey, Vec<KernelEvent>>,
    /// What announcements make the kernel trace, with their state.
    marks: HashMap<Mark, MarkState>,
    mark_updates: Vec<MarkUpdate>,
    /// Kernel events lost or skipped, and when they were counted.
    losses: Losses,
    /// What the DNS answers received here named.
    pub names: DnsNames,
    pub dropped: Dropped,
    pub evicted: u64,
    pub started: u64,
}

impl Sessions {
    pub fn new(ports: PortSet, id_prefix: impl Into<String>) -> Self {
        Self::with_capacity(ports, id_prefix, MAX_OPEN_SESSIONS)
    }

    /// Open sessions followed at once before the quietest is reported
    /// early (evicted); at least 1.
    pub fn set_capacity(&mut self, capacity: usize) {
        self.capacity = capacity.max(1);
    }

    pub fn with_capacity(ports: PortSet, id_prefix: impl Into<String>, capacity: usize) -> Self {
        Self {
            ports,
            id_prefix: id_prefix.into(),
            next_key: 0,
            capacity: capacity.max(1),
            open: HashMap::default(),
            by_tuple: TupleIndex::default(),
            by_inside: HashMap::default(),
            client_sessions: 0,
            by_socket: HashMap::default(),
            by_endpoint: HashMap::default(),
            by_client_ip: HashMap::default(),
            quiet: BTreeSet::new(),
            closing: BTreeSet::new(),
            orphans: VecDeque::new(),
            pending: HashMap::default(),
            marks: HashMap::default(),
            mark_updates: Vec::new(),
            losses: Losses::default(),
            names: DnsNames::default(),
            dropped: Dropped::default(),
            evicted: 0,
            started: 0,
        }
    }

    pub fn open_count(&self) -> usize {
        self.open.len()
    }

    /// Kernel events lost or skipped so far (`total`, a running count), as
    /// read before boot time `at_ns`: every session open then may lack some
    /// of its own, and its record says so.
    pub fn note_loss(&mut self, total: u64, at_ns: u64) {
        self.losses.note(total, at_ns);
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
        let key = match self
            .by_tuple
            .get(&(client, server), |p| tuple_in(&self.open, p))
        {
            Some((key, _)) => key,
            None => {
                let event = KernelEvent {
                    boot_ns: now_ns,
                    cpu: 0,
                    current: Task {
                        pid: 0,
                        comm: Name::from(""),
                    },
                    netns: Some(open.netns),
                    sock: None,
                    local: open.local,
                    remote: open.remote,
                    kind: EventKind::DESTROYED,
                };
                self.start_session(&event, client, server, end, out).0
            }
        };
        let session = self.open.get_mut(&key).expect("just found or made");
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
        self.marks.contains_key(&Mark::Passive(port))
    }

    /// Kernel map changes since the last call.
    pub fn take_mark_updates(&mut self) -> Vec<MarkUpdate> {
        std::mem::take(&mut self.mark_updates)
    }

    /// The kernel marked `mark` itself (it read the announcement as the
    /// segment passed): it is held like one user space asked for, so that
    /// it is cleared in time even if the parser never saw the words.
    pub fn kernel_marked(&mut self, mark: Mark, ns: u64) {
        self.add_mark(mark, ns, true);
    }

    /// Files `event` under its session. Returns where it landed, or `None`
    /// for an event of no session (yet). Evicted sessions are returned in
    /// `out` so they are still reported.
    pub fn observe(&mut self, event: &KernelEvent, out: &mut Vec<Session>) -> Option<Placement> {
        if let EventKind::ControlSegment(segment) = &event.kind {
            // Only counted: the parser turns readable segments into `ftp`
            // events. The TLS library's plaintext is not a segment on the wire.
            if segment.payload_len > 0 && !segment.decrypted {
                self.count_encrypted_segment(event, segment.outgoing);
            }
            return None;
        }
        // A socket that opens a connection starts a new one, whatever its
        // address held before: the kernel reuses a freed socket's address,
        // and one closed by a reset (SO_LINGER 0) sends no destroy event
        // (its ports are cleared first), so its entry would stay.
        let key = event.sock.map(|sk| (event.netns, sk));
        if let Some(key) = key
            && opens(event)
        {
            self.by_socket.remove(&key);
        }
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
    /// marks released.
    pub fn tick(&mut self, now_ns: u64) -> Vec<Session> {
        let mut ended = Vec::new();
        for &(last_ns, key) in &self.closing {
            let quiet = now_ns.saturating_sub(last_ns);
            if quiet < LINGER_NS {
                break;
            }
            let Some(session) = self.open.get(&key) else {
                continue;
            };
            if session.is_done() || quiet >= DATA_GRACE_NS {
                ended.push(key);
            }
        }
        let finished = ended
            .into_iter()
            .filter_map(|key| self.close(key))
            .collect();
        let expired: Vec<Mark> = self
            .marks
            .iter()
            .filter(|(_, state)| state.holders == 0 && state.deadline <= now_ns)
            .map(|(mark, _)| *mark)
            .collect();
        for mark in expired {
            self.marks.remove(&mark);
            self.mark_updates.push(MarkUpdate { mark, on: false });
        }
        finished
    }

    /// Every session still open, for the end of the run.
    pub fn drain(&mut self) -> Vec<Session> {
        let mut keys: Vec<Key> = self.open.keys().copied().collect();
        keys.sort_unstable();
        keys.into_iter().filter_map(|key| self.close(key)).collect()
    }

    fn close(&mut self, key: Key) -> Option<Session> {
        let Open {
            mut session,
            indexed,
        } = *self.open.remove(&key)?;
        // Each connection's tuple was indexed as it was made.
        for conn in session.conns() {
            let tuple = (conn.client, conn.server);
            self.by_tuple.remove(&tuple, (key, conn.id));
            if let Some(inside) = &conn.behind_nat
                && self.by_inside.get(inside) == Some(&(key, conn.id))
            {
                self.by_inside.remove(inside);
            }
        }
        if indexed.began_at_client {
            self.client_sessions -= 1;
        }
        for socket in &indexed.sockets {
            if self.by_socket.get(socket).is_some_and(|(k, _)| *k == key) {
                self.by_socket.remove(socket);
            }
        }
        for (endpoint, id) in &indexed.endpoints {
            self.unindex_endpoint(*endpoint, key, *id);
        }
        let ip = session.control.client.ip();
        if let Some(keys) = self.by_client_ip.get_mut(&ip) {
            keys.remove(&key);
            if keys.is_empty() {
                self.by_client_ip.remove(&ip);
            }
        }
        self.quiet.remove(&(session.last_ns, key));
        if let Some(at) = indexed.closing_at {
            self.closing.remove(&(at, key));
        }
        for conn in session.conns() {
            if let Some(mark) = conn.holds_mark {
                self.release_mark(mark, session.last_ns);
            }
        }
        session.events_lost = self.losses.total() - session.loss_at_open;
        Some(session)
    }

    fn hold_back(&mut self, key: SocketKey, event: &KernelEvent, out: &mut Vec<Session>) {
        if matches!(event.kind, EventKind::Destroy { .. }) {
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
            self.dropped.pending += 1;
            return;
        }
        let held = self.pending.entry(key).or_default();
        if held.len() < MAX_PENDING_PER_SOCKET {
            held.push(event.clone());
        } else {
            self.dropped.pending += 1;
        }
    }

    fn place(&mut self, event: &KernelEvent, out: &mut Vec<Session>) -> Option<Placement> {
        let (key, conn_id, end) = match self.find(event) {
            Some(found) => found,
            None => {
                let Some(started) = self.start_conn(event, out) else {
                    self.keep_orphan(event);
                    return None;
                };
                self.adopt_orphans(started, event);
                started
            }
        };
        if let Some(sk) = event.sock {
            let socket = (event.netns, sk);
            if matches!(event.kind, EventKind::Destroy { .. }) {
                self.by_socket.remove(&socket);
            } else if full_tuple(event) && !self.by_socket.contains_key(&socket) {
                self.by_socket.insert(socket, (key, conn_id));
                push_small(&mut self.indexed(key).sockets, socket);
            }
        }
        self.record(key, conn_id, end, event);
        Some(Placement {
            session: self.open[&key].id.clone(),
            conn: conn_id,
            end,
        })
    }

    /// The session, connection and end an event belongs to, if known.
    fn find(&self, event: &KernelEvent) -> Option<(Key, ConnId, Side)> {
        if let Some(sk) = event.sock
            && let Some((key, conn)) = self.by_socket.get(&(event.netns, sk))
        {
            let c = self.open.get(key)?.conn(*conn);
            return Some((*key, *conn, end_in(c, event)));
        }
        for (client, server) in [(event.local, event.remote), (event.remote, event.local)] {
            let Some((key, conn)) = self
                .by_tuple
                .get(&(client, server), |p| tuple_in(&self.open, p))
            else {
                continue;
            };
            // A connection opening on the 4-tuple of one whose end here is
            // closed: the tuple was reused (a client port taken again while
            // the old session lingers). (A TIME_WAIT socket answering a late
            // segment is the old connection's.)
            let end = end_of(event, client, server);
            let old = self.open.get(&key)?.conn(conn).view(end);
            if opens(event) && old.is_some_and(|v| v.had_socket && v.is_done()) {
                return None;
            }
            return Some((key, conn, end));
        }
        // The server's end of a connection through a NAT, joined to the
        // client's by [`Self::join_nat`].
        let (key, conn) = *self
            .by_inside
            .get(&(event.remote, event.local))
            .or_else(|| self.by_inside.get(&(event.local, event.remote)))?;
        let c = self.open.get(&key)?.get_conn(conn)?;
        Some((key, conn, end_in(c, event)))
    }

    /// The question for the NAT's connection tracking before `event` is
    /// filed, if it may be the server's end of a connection whose client's
    /// end is here already, through a NAT on this host (a router namespace,
    /// a container's published port): `(this end, its peer)`. Asked only
    /// while a session's client end is on this host, and only of a
    /// connection's first event at a control or announced passive port.
    pub fn nat_question(&self, event: &KernelEvent) -> Option<(SocketAddr, SocketAddr)> {
        if self.client_sessions == 0 || event.sock.is_none() || !full_tuple(event) {
            return None;
        }
        let port = event.local.port();
        if !self.ports.control.contains(&port) && !self.expects(port) {
            return None;
        }
        if self.by_socket.contains_key(&(event.netns, event.sock?)) || self.find(event).is_some() {
            return None;
        }
        Some((event.local, event.remote))
    }

    /// The NAT's answer: the connection whose server end sees `inside`
    /// (client, server) is the one whose client end sees `outside`. Joins
    /// them when the client's end is open here and its server end is not
    /// seen yet; returns whether it did.
    pub fn join_nat(&mut self, inside: Tuple, outside: Tuple) -> bool {
        let Some(place) = self.by_tuple.get(&outside, |p| tuple_in(&self.open, p)) else {
            return false;
        };
        if self.by_inside.contains_key(&inside) {
            return false;
        }
        let Some(session) = self.open.get_mut(&place.0) else {
            return false;
        };
        let conn = session.conn_mut(place.1);
        if conn.behind_nat.is_some() || conn.view(Side::Server).is_some() {
            return false;
        }
        conn.behind_nat = Some(Box::new(inside));
        self.by_inside.insert(inside, place);
        true
    }

    fn keep_orphan(&mut self, event: &KernelEvent) {
        if event.sock.is_none() && event.remote.port() != 0 {
            if self.orphans.len() == MAX_ORPHANS {
                self.orphans.pop_front();
                self.dropped.orphans += 1;
            }
            self.orphans.push_back(event.clone());
        }
    }

    /// Files the orphans of a connection that just started under it, first.
    fn adopt_orphans(&mut self, started: (Key, ConnId, Side), event: &KernelEvent) {
        let (key, conn_id, _) = started;
        let tuple = [(event.local, event.remote), (event.remote, event.local)];
        let recent = |o: &KernelEvent| event.boot_ns.saturating_sub(o.boot_ns) <= ORPHAN_TTL_NS;
        let (mine, rest): (Vec<_>, Vec<_>) = std::mem::take(&mut self.orphans)
            .into_iter()
            .partition(|o| recent(o) && tuple.contains(&(o.local, o.remote)));
        self.orphans = rest.into_iter().filter(|o| recent(o)).collect();
        let conn = self.open[&key].conn(conn_id);
        let (client, server) = (conn.client, conn.server);
        for orphan in mine {
            self.record(key, conn_id, end_of(&orphan, client, server), &orphan);
        }
    }

    fn start_conn(
        &mut self,
        event: &KernelEvent,
        out: &mut Vec<Session>,
    ) -> Option<(Key, ConnId, Side)> {
        // Only what TCP itself reports begins or shows a connection: a word
        // on the channel or a reset's TTL alone (a forged segment, say)
        // does not, nor a stray destroy or reset for an untracked socket.
        if matches!(
            event.kind,
            EventKind::Ftp { .. }
                | EventKind::ResetTtl { .. }
                | EventKind::ControlSegment(_)
                | EventKind::DnsAnswer(_)
                | EventKind::TlsVerify(_)
                | EventKind::TlsHandshake(_)
                | EventKind::TlsError(_)
                | EventKind::TlsAlertSent(_)
        ) {
            return None;
        }
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
    ) -> (Key, ConnId, Side) {
        if self.open.len() >= self.capacity {
            self.evict_oldest(out);
        }
        self.next_key += 1;
        self.started += 1;
        let key = self.next_key;
        let ns = event.boot_ns;
        let session = Session {
            id: Name::from(format!("{}-{key}", self.id_prefix)),
            start_ns: ns,
            last_ns: ns,
            seeded: false,
            server_name: match end {
                Side::Client => self.names.name_of(event.netns, server.ip(), ns),
                Side::Server => None,
            },
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
            encrypted_last_ns: [None, None],
            expectations: Vec::new(),
            timeline: Timeline::default(),
            control_readable: false,
            decrypted: false,
            events_lost: 0,
            expectations_dropped: 0,
            loss_at_open: self.losses.before(ns),
        };
        let indexed = Indexed {
            began_at_client: end == Side::Client,
            ..Indexed::default()
        };
        self.client_sessions += usize::from(end == Side::Client);
        self.open.insert(key, Box::new(Open { session, indexed }));
        self.quiet.insert((ns, key));
        self.by_tuple
            .insert(&(client, server), (key, ConnId::Control), |p| {
                tuple_in(&self.open, p)
            });
        self.by_client_ip
            .entry(client.ip())
            .or_default()
            .insert(key);
        (key, ConnId::Control, end)
    }

    fn indexed(&mut self, key: Key) -> &mut Indexed {
        &mut self.open.get_mut(&key).expect("an open session").indexed
    }

    fn evict_oldest(&mut self, out: &mut Vec<Session>) {
        let oldest = self.quiet.first().map(|&(_, key)| key);
        if let Some(key) = oldest
            && let Some(session) = self.close(key)
        {
            self.evicted += 1;
            out.push(session);
        }
    }

    /// Ties a new connection to the session whose announcement it answers:
    /// the most recent unused one that fits, looked up by the data
    /// connection's client address and the announced port.
    fn link_data(&mut self, event: &KernelEvent) -> Option<(Key, ConnId, Side)> {
        let ns = event.boot_ns;
        let ends = [(event.local, event.remote), (event.remote, event.local)];
        let mut best: Option<(u64, Key, u64, SocketAddr, SocketAddr)> = None;
        for (a, b) in ends {
            // Passive: `a` is the server's data end, `b` the client's.
            // Active: `a` is the client's announced end, `b` the server's.
            for (role, lookup) in [
                (Side::Server, (b.ip(), a.port())),
                (Side::Client, (a.ip(), a.port())),
            ] {
                for &(key, id) in self.by_endpoint.get(&lookup).into_iter().flatten() {
                    let Some(session) = self.open.get(&key) else {
                        continue;
                    };
                    let Some(exp) = session.expectations.iter().find(|x| x.id == id) else {
                        continue;
                    };
                    if exp.announced_by != role
                        || exp.used_by.is_some()
                        || ns.saturating_sub(exp.at_ns) > EXPECTATION_TTL_NS
                    {
                        continue;
                    }
                    let fits = match role {
                        Side::Server => {
                            b.ip() == session.control.client.ip()
                                && (exp.addr.is_none_or(|addr| addr == a.ip())
                                    || a.ip() == session.control.server.ip())
                        }
                        Side::Client => b.ip() == session.control.server.ip(),
                    };
                    if fits && best.as_ref().is_none_or(|(at, ..)| exp.at_ns > *at) {
                        let (client, server) = match role {
                            Side::Server => (b, a),
                            Side::Client => (a, b),
                        };
                        best = Some((exp.at_ns, key, id, client, server));
                    }
                }
            }
        }
        if let Some((_, key, id, client, server)) = best {
            let conn_id =
                self.add_data_conn(key, client, server, ns, LinkedBy::Announcement, event);
            let session = self.open.get_mut(&key).expect("found above");
            let exp = session
                .expectations
                .iter_mut()
                .find(|x| x.id == id)
                .expect("found above");
            // Used, even by a connection beyond the session's cap.
            exp.used_by = Some(conn_id.unwrap_or(ConnId::Control));
            let mark = match exp.announced_by {
                Side::Server => Mark::Passive(exp.port),
                Side::Client => Mark::Active(client.ip(), exp.port),
            };
            let conn_id = conn_id?;
            if let Some(state) = self.marks.get_mut(&mark) {
                state.holders += 1;
                self.open
                    .get_mut(&key)
                    .expect("found above")
                    .conn_mut(conn_id)
                    .holds_mark = Some(mark);
            }
            return Some((key, conn_id, end_of(event, client, server)));
        }
        self.link_by_heuristic(event)
    }

    /// A data connection of a session whose channel cannot be read: on a
    /// data port, from the control connection's client address, to its
    /// server address; the most recently active such session.
    fn link_by_heuristic(&mut self, event: &KernelEvent) -> Option<(Key, ConnId, Side)> {
        let ends = [(event.local, event.remote), (event.remote, event.local)];
        let mut best: Option<(u64, Key, SocketAddr, SocketAddr)> = None;
        for (client, server) in ends {
            let data_port = self.ports.role(server.port()) != 0 || self.expects(server.port());
            if !data_port || self.ports.control.contains(&server.port()) {
                continue;
            }
            for key in self.by_client_ip.get(&client.ip()).into_iter().flatten() {
                let Some(session) = self.open.get(key) else {
                    continue;
                };
                if session.words_readable() || server.ip() != session.control.server.ip() {
                    continue;
                }
                if best.as_ref().is_none_or(|(at, ..)| session.last_ns > *at) {
                    best = Some((session.last_ns, *key, client, server));
                }
            }
        }
        let (_, key, client, server) = best?;
        let conn_id = self.add_data_conn(
            key,
            client,
            server,
            event.boot_ns,
            LinkedBy::Heuristic,
            event,
        )?;
        Some((key, conn_id, end_of(event, client, server)))
    }

    fn add_data_conn(
        &mut self,
        key: Key,
        client: SocketAddr,
        server: SocketAddr,
        ns: u64,
        by: LinkedBy,
        event: &KernelEvent,
    ) -> Option<ConnId> {
        let session = self.open.get_mut(&key).expect("caller found it");
        if session.data.len() >= MAX_DATA_CONNS {
            // Counted once per connection, on the event that opens it.
            if opens(event) {
                session.data_unlinked += 1;
            }
            return None;
        }
        // At most MAX_DATA_CONNS: fits.
        let id = ConnId::Data(session.data.len() as u32 + 1);
        session.data.push(Conn::new(id, client, server, ns, by));
        self.by_tuple
            .insert(&(client, server), (key, id), |p| tuple_in(&self.open, p));
        Some(id)
    }

    fn count_encrypted_segment(&mut self, event: &KernelEvent, outgoing: bool) {
        let Some((key, ConnId::Control, end)) = self.find(event) else {
            return;
        };
        let session = self.open.get_mut(&key).expect("found");
        if !session.encrypted() {
            return;
        }
        if end == Side::Client && server_end_seen(&session.control) {
            return;
        }
        let from = if outgoing { end } else { end.other() };
        session.encrypted_segments[from.index()] += 1;
        session.encrypted_last_ns[from.index()] = Some(event.boot_ns);
    }

    fn record(&mut self, key: Key, conn_id: ConnId, end: Side, event: &KernelEvent) {
        let ns = event.boot_ns;
        let mut announced = None;
        let session = self.open.get_mut(&key).expect("placed");
        let was_last = session.last_ns;
        let control_was_done = session.control.is_done();
        session.last_ns = session.last_ns.max(ns);
        // The client's end seen after its session began at the other end
        // (a refused SYN's reset came first): the name it resolved.
        if end == Side::Client && conn_id == ConnId::Control && session.server_name.is_none() {
            session.server_name = self
                .names
                .name_of(event.netns, session.control.server.ip(), ns);
        }
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
            // The first few are the evidence; the timeline counts the rest.
            EventKind::ResetSent { reason, state } => {
                if state.is_none() {
                    view.resets_sent_without_socket += 1;
                } else {
                    keep(&mut view.troubles_mut().resets_sent, (ns, reason.clone()));
                }
            }
            EventKind::ResetReceived { state } => {
                keep(
                    &mut view.troubles_mut().resets_received,
                    (ns, state.clone()),
                );
            }
            EventKind::SocketError { errno } => {
                keep(&mut view.troubles_mut().errors, (ns, *errno));
            }
            EventKind::Destroy { counts } => {
                view.destroyed = true;
                view.retransmit_counts = *counts;
            }
            EventKind::KeepaliveProbe { .. } => view.keepalive_probes += 1,
            EventKind::ZeroWindowProbe { .. } => view.zero_window_probes += 1,
            EventKind::TlsVerify(verdict) => {
                if view.tls_verdict.is_none_or(|(_, kept)| kept.passed()) {
                    view.tls_verdict = Some((ns, *verdict));
                }
            }
            EventKind::TlsHandshake(handshake) => {
                if view.tls_handshake.is_none_or(|(_, kept)| !kept.succeeded()) {
                    view.tls_handshake = Some((ns, *handshake));
                }
            }
            EventKind::TlsError(error) => {
                view.tls_error.get_or_insert((ns, *error));
            }
            EventKind::TlsAlertSent(alert) => {
                if view
                    .tls_alert_sent
                    .is_none_or(|(_, kept)| !kept.fatal() && alert.fatal())
                {
                    view.tls_alert_sent = Some((ns, *alert));
                }
            }
            EventKind::Drop {
                reason,
                tcp_flags,
                location,
                ..
            } => {
                keep(
                    &mut view.troubles_mut().drops,
                    (ns, reason.clone(), *tcp_flags, location.clone()),
                );
            }
            EventKind::Ftp { event: said, .. } => {
                // Words on the channel: it is established.
                view.established_ns.get_or_insert(ns);
                session.control_readable = true;
                if end == Side::Client && server_end_seen(&session.control) {
                    // Both ends of the connection are on this host and say
                    // the same words: the server's account is kept.
                    self.touch(key, was_last, control_was_done);
                    return;
                }
                announced = apply_ftp(session, said, ns);
            }
            EventKind::ControlSegment(_) | EventKind::DnsAnswer(_) => {}
            // Just before the reset_received event it explains. A burst of
            // resets (one per segment in flight) makes one entry: the first,
            // which is the one the socket acts on.
            EventKind::ResetTtl { ttl, usual_ttl } => {
                if view.reset_ttl.is_some() {
                    self.touch(key, was_last, control_was_done);
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
        if let Some(announced) = announced {
            self.expect(key, announced, ns);
        }
        if matches!(event.kind, EventKind::Destroy { .. }) {
            let conn = self.open[&key].conn(conn_id);
            if conn.is_done()
                && let Some(mark) = conn.holds_mark
            {
                self.open
                    .get_mut(&key)
                    .expect("placed")
                    .conn_mut(conn_id)
                    .holds_mark = None;
                self.release_mark(mark, ns);
            }
        }
        self.touch(key, was_last, control_was_done);
    }

    /// Keeps the quiet and closing indexes in step with the session's
    /// last activity and its control connection's end.
    fn touch(&mut self, key: Key, was_last: u64, control_was_done: bool) {
        let session = &self.open[&key];
        let (last, control_done) = (session.last_ns, session.control.is_done());
        if last != was_last {
            self.quiet.remove(&(was_last, key));
            self.quiet.insert((last, key));
        }
        if control_done && (!control_was_done || last != was_last) {
            let indexed = self.indexed(key);
            if let Some(at) = indexed.closing_at.replace(last) {
                self.closing.remove(&(at, key));
            }
            self.closing.insert((last, key));
        }
    }

    /// A session's new expectation: kept (replacing an unused one for the
    /// same endpoint; the oldest unused one goes past the cap), indexed,
    /// and traced by the kernel.
    fn expect(&mut self, key: Key, announced: Expectation, ns: u64) {
        let session = self.open.get_mut(&key).expect("recording");
        let client_ip = session.control.client.ip();
        let same = |x: &Expectation| {
            x.used_by.is_none()
                && x.announced_by == announced.announced_by
                && x.port == announced.port
        };
        let mut gone: Vec<Expectation> = Vec::new();
        if let Some(at) = session.expectations.iter().position(same) {
            gone.push(session.expectations.remove(at));
        } else if session.expectations.len() >= MAX_EXPECTATIONS {
            let at = session
                .expectations
                .iter()
                .position(|x| x.used_by.is_none())
                .unwrap_or(0);
            gone.push(session.expectations.remove(at));
            session.expectations_dropped += 1;
            self.dropped.expectations += 1;
        }
        let id = session
            .expectations
            .iter()
            .map(|x| x.id + 1)
            .max()
            .unwrap_or(1);
        let id = id.max(gone.iter().map(|x| x.id + 1).max().unwrap_or(1));
        let announced = Expectation { id, ..announced };
        // A PORT/EPRT counts only for the address of the client that sent
        // it (a third party's address is a bounce, or a NAT's inside).
        let indexable = match announced.announced_by {
            Side::Server => true,
            Side::Client => announced.addr.is_none_or(|addr| addr == client_ip),
        };
        let (port, role) = (announced.port, announced.announced_by);
        session.expectations.push(announced);
        for old in gone {
            self.unindex_endpoint((client_ip, old.port), key, old.id);
            let indexed = self.indexed(key);
            indexed.endpoints.retain(|(_, id)| *id != old.id);
        }
        if !indexable {
            return;
        }
        self.by_endpoint
            .entry((client_ip, port))
            .or_default()
            .push((key, id));
        let indexed = self.indexed(key);
        indexed.endpoints.push(((client_ip, port), id));
        let mark = match role {
            Side::Server => Mark::Passive(port),
            Side::Client => Mark::Active(client_ip, port),
        };
        // Held only by the connection that uses it: unused, it expires.
        self.add_mark(mark, ns, false);
    }

    fn unindex_endpoint(&mut self, endpoint: (IpAddr, u16), key: Key, id: u64) {
        if let Some(entries) = self.by_endpoint.get_mut(&endpoint) {
            entries.retain(|&(k, i)| (k, i) != (key, id));
            if entries.is_empty() {
                self.by_endpoint.remove(&endpoint);
            }
        }
    }

    /// Traces `mark` until an expectation's lifetime from `ns`, unless the
    /// configured ports trace it anyway or [`MAX_MARKS`] are in force (then
    /// a mark the kernel made itself is undone at once). Returns whether it
    /// is traced.
    fn add_mark(&mut self, mark: Mark, ns: u64, kernel_made: bool) -> bool {
        if let Mark::Passive(port) = mark
            && self.ports.contains(port)
        {
            // Traced already (`--passive-ports`, port 20): nothing to add.
            return false;
        }
        let deadline = ns + EXPECTATION_TTL_NS;
        if let Some(state) = self.marks.get_mut(&mark) {
            state.deadline = state.deadline.max(deadline);
            return true;
        }
        if self.marks.len() >= MAX_MARKS {
            self.dropped.marks += 1;
            if kernel_made {
                self.mark_updates.push(MarkUpdate { mark, on: false });
            }
            return false;
        }
        self.marks.insert(
            mark,
            MarkState {
                deadline,
                holders: 0,
            },
        );
        if !kernel_made {
            self.mark_updates.push(MarkUpdate { mark, on: true });
        }
        true
    }

    fn release_mark(&mut self, mark: Mark, ns: u64) {
        if let Some(state) = self.marks.get_mut(&mark) {
            state.holders = state.holders.saturating_sub(1);
            // Late segments of the closing connection are still wanted.
            state.deadline = state.deadline.max(ns + LINGER_NS);
        }
    }
}

/// Applies what a peer said to the session; returns an endpoint it
/// announced (the server's for passive mode, the client's for active mode,
/// whose server may connect from any port).
fn apply_ftp(session: &mut Session, said: &ControlEvent, ns: u64) -> Option<Expectation> {
    // Nothing is parsed from TCP's payload once it is TLS: words after that
    // are the TLS library's plaintext.
    if session.encrypted() && *said != ControlEvent::Encrypted {
        session.decrypted = true;
    }
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
        } => Some(Expectation {
            id: 0,
            announced_by: *announced_by,
            addr: addr.map(|a| a.to_canonical()),
            port: *port,
            at_ns: ns,
            used_by: None,
        }),
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
/// Which end of `conn` reported `event`, through a NAT's translation too.
fn end_in(conn: &Conn, event: &KernelEvent) -> Side {
    match conn.behind_nat.as_deref() {
        Some(&(client, server)) if event.local == server && event.remote == client => Side::Server,
        _ => end_of(event, conn.client, conn.server),
    }
}

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
    use crate::session::losses::LEAD_NS;
    use crate::session::model::{TIMELINE_HEAD, TIMELINE_TAIL};
    use crate::{
        ftp::Side::{Client, Server},
        session::script::{Link, Script, sessions_of, sessions_through_nat, state},
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

    /// Client and server on this host with a NAT between them (a router
    /// namespace, a container's published port): the two halves of each
    /// connection have different tuples, and the NAT's connection tracking
    /// joins them into one session, the data connection too.
    #[test]
    fn both_ends_through_a_nat_make_one_session_when_the_nat_tells() {
        let mut s = Script::new();
        let control = s.nat_control();
        s.pasv_announcing(&control, "10.0.0.2", 30000);
        // The client substitutes the control connection's address.
        let data = s
            .link("203.0.113.2:40100", "203.0.113.1:30000")
            .through_nat("203.0.113.2:40100", "10.0.0.2:30000");
        let data = s.handshake(&data);
        s.fin(&data, Server);
        s.fin(&control, Client);
        let entries: Vec<_> = [control, data].iter().filter_map(Link::nat_entry).collect();

        let sessions = sessions_through_nat(&s.seen_from(BOTH), s.end_ns(), &entries);
        assert_eq!(sessions.len(), 1, "{sessions:#?}");
        let session = &sessions[0];
        assert_eq!(session.seen_from(), [Client, Server]);
        assert_eq!(session.replies, [220, 230, 227]);
        assert_eq!(
            session.control.behind_nat.as_deref(),
            Some(&entries[0].0),
            "the server's view of the control connection"
        );
        assert_eq!(session.data.len(), 1);
        let data = &session.data[0];
        assert_eq!(data.server, "203.0.113.1:30000".parse().unwrap());
        assert!(data.view(Client).is_some() && data.view(Server).is_some());
        assert!(data.behind_nat.is_some());
        assert!(session.is_done());
        // Each event is its own end's: the server's handshake is at the
        // server's end of the one connection.
        let server_states = session
            .timeline
            .entries()
            .filter(|e| e.conn == ConnId::Control && e.seen_at == Server)
            .count();
        assert!(server_states >= 3, "{:#?}", session.timeline);

        // Without the NAT's word, the halves stay apart (as before).
        let apart = sessions_of(&s.seen_from(BOTH), s.end_ns());
        assert_eq!(apart.len(), 2);
    }

    /// Only while a client end is on this host is the NAT asked, and only
    /// once per connection: a server's host with remote clients never pays
    /// for it.
    #[test]
    fn the_nat_is_asked_only_for_a_new_server_end_while_a_client_end_is_here() {
        let mut s = Script::new();
        let control = s.connect("198.51.100.7:40000", "192.0.2.1:21");
        s.login(&control);
        let server_only = s.seen_from(&[Server]);
        let mut sessions = Sessions::new(ports(), "t");
        let mut out = Vec::new();
        for event in &server_only {
            assert_eq!(sessions.nat_question(event), None);
            sessions.observe(event, &mut out);
        }
        let mut s = Script::new();
        s.nat_control();
        let mut sessions = Sessions::new(ports(), "t");
        let mut asked = Vec::new();
        for event in &s.seen_from(BOTH) {
            if let Some(question) = sessions.nat_question(event) {
                asked.push(question);
            }
            sessions.observe(event, &mut out);
        }
        assert_eq!(
            asked,
            [(
                "10.0.0.2:21".parse().unwrap(),
                "203.0.113.2:40000".parse().unwrap()
            )]
        );
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

    /// A client that resets its connections (SO_LINGER 0) leaves no
    /// destroy event (its ports are cleared first), and the kernel gives
    /// its next socket the same address: each connection is its own
    /// session all the same.
    #[test]
    fn a_socket_address_reused_without_a_destroy_is_a_new_session() {
        let mut s = Script::new();
        let mut previous: Option<Link> = None;
        for port in [40000, 40001, 40002] {
            let link = s.link(&format!("192.0.2.2:{port}"), "192.0.2.1:21");
            let link = match &previous {
                Some(before) => link.with_client_socket_of(before),
                None => link,
            };
            let control = s.handshake(&link);
            s.emit(&control, Client, state("ESTABLISHED", "CLOSE"));
            s.after_ms(1);
            s.received_reset(&control, Server);
            s.destroy(&control, Server);
            s.after_ms(1);
            previous = Some(control);
        }
        let sessions = sessions_of(&s.seen_from(BOTH), s.end_ns());
        assert_eq!(sessions.len(), 3);
        for (session, port) in sessions.iter().zip([40000, 40001, 40002]) {
            assert_eq!(session.control.client.port(), port);
            assert!(session.control.view(Client).is_some(), "{session:?}");
            assert!(session.control.view(Server).is_some(), "{session:?}");
        }
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
        let mut updates = sessions.take_mark_updates();
        updates.sort_by_key(|u| u.mark);
        let update = |port, on| MarkUpdate {
            mark: Mark::Passive(port),
            on,
        };
        assert_eq!(updates, [update(30001, true), update(30002, true)]);
        // 30001 was never used: it expires; 30002 is held by data:1.
        assert!(sessions.tick(opened + EXPECTATION_TTL_NS + 1).is_empty());
        assert_eq!(sessions.take_mark_updates(), [update(30001, false)]);
        for event in &late {
            sessions.observe(event, &mut ended);
        }
        let finished = sessions.tick(s.end_ns() + DATA_GRACE_NS);
        assert_eq!(finished.len(), 1);
        assert_eq!(finished[0].data.len(), 1);
        assert_eq!(sessions.take_mark_updates(), [update(30002, false)]);
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
        // Later than a loss may still be a session's own first event.
        s.after_ms(2 * LEAD_NS / 1_000_000);
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
        let at = events[half - 1].boot_ns;
        sessions.note_loss(3, at);
        for event in &events[half..] {
            sessions.observe(event, &mut out);
        }
        sessions.note_loss(5, events.last().unwrap().boot_ns);
        let mut ended = sessions.drain();
        ended.sort_by_key(|s| s.control.client.port());
        let lost: Vec<u64> = ended.iter().map(|s| s.events_lost).collect();
        assert_eq!(lost, [5, 2]);
    }

    /// The counters are read before a batch, which holds records made
    /// before the read: a session met in it may have lost events counted
    /// by that read, and is charged them.
    #[test]
    fn a_loss_counted_before_a_session_is_met_but_after_it_began_is_its_own() {
        let mut s = Script::new();
        s.after_ms(2 * LEAD_NS / 1_000_000);
        let control = s.connect("192.0.2.2:40000", "192.0.2.1:21");
        s.login(&control);
        let events = s.seen_from(BOTH);
        let mut sessions = Sessions::new(ports(), "t");
        let mut out = Vec::new();
        sessions.note_loss(1, events[0].boot_ns - LEAD_NS - 1);
        sessions.note_loss(4, events.last().unwrap().boot_ns + 1);
        for event in &events {
            sessions.observe(event, &mut out);
        }
        let ended = sessions.drain();
        assert_eq!(ended.len(), 1);
        assert_eq!(ended[0].events_lost, 3);
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
            EventKind::Destroy { .. }
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

    /// Issue 11, finding 4: a `PORT` naming another client's address (the
    /// most recent announcement of that endpoint) does not take that
    /// client's data connection.
    #[test]
    fn a_port_for_another_address_takes_no_data_connection() {
        let mut s = Script::new();
        let active = |addr: &str, port| ControlEvent::DataEndpoint {
            announced_by: Client,
            addr: Some(addr.parse().unwrap()),
            port,
        };
        let owner = s.connect("192.0.2.3:40001", "192.0.2.1:21");
        s.login(&owner);
        s.command(&owner, Verb::Port, Some("192,0,2,3,195,80"));
        s.say(&owner, Client, active("192.0.2.3", 50000));
        let thief = s.connect("192.0.2.2:40000", "192.0.2.1:21");
        s.login(&thief);
        s.command(&thief, Verb::Port, Some("192,0,2,3,195,80"));
        s.say(&thief, Client, active("192.0.2.3", 50000));
        let data = s.connect("192.0.2.3:50000", "192.0.2.1:20");
        s.fin(&data, Server);
        s.fin(&thief, Client);
        s.fin(&owner, Client);
        let sessions = sessions_of(&s.seen_from(BOTH), s.end_ns());
        let of = |ip: &str| {
            sessions
                .iter()
                .find(|x| x.control.client.ip().to_string() == ip)
                .expect("a session per client")
        };
        assert_eq!(of("192.0.2.3").data.len(), 1);
        assert!(of("192.0.2.2").data.is_empty());
    }

    /// Issue 11, finding 3: one session's announcements are capped, and
    /// what the cap turned away is counted.
    #[test]
    fn announcements_beyond_the_cap_are_counted_not_kept() {
        let mut s = Script::new();
        let control = s.connect("192.0.2.2:40000", "192.0.2.1:21");
        s.login(&control);
        let extra = 8;
        for n in 0..MAX_EXPECTATIONS + extra {
            s.pasv(&control, 30000 + u16::try_from(n).unwrap());
        }
        let mut sessions = Sessions::new(ports(), "t");
        let mut ended = Vec::new();
        for event in &s.seen_from(BOTH) {
            sessions.observe(event, &mut ended);
        }
        assert_eq!(sessions.dropped.expectations, extra as u64);
        assert_eq!(
            sessions.open.values().next().unwrap().expectations.len(),
            MAX_EXPECTATIONS
        );
        // Each announcement's mark lives its lifetime (within the global
        // cap on marks), kept or not, and is then cleared.
        let on = sessions.take_mark_updates();
        assert!(on.iter().all(|u| u.on) && on.len() == MAX_EXPECTATIONS + extra);
        sessions.tick(s.end_ns() + EXPECTATION_TTL_NS + 1);
        let off = sessions.take_mark_updates();
        assert!(
            off.iter().all(|u| !u.on) && off.len() == on.len(),
            "{off:?}"
        );
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

//! What a session is: its connections, each end's view of them, the
//! announced data endpoints and the timeline. Filled by
//! [`super::tracker`], read by [`super::close`], [`super::cause`] and the
//! output; it decides nothing itself.

use std::{
    collections::VecDeque,
    net::{IpAddr, SocketAddr},
};

use crate::{
    event::{EventKind, Name, RetransmitCounts},
    ftp::Side,
    ports::Mark,
};

/// Timeline entries kept from a session's start, and again from its end:
/// a long session keeps how it began and how it ended.
pub const TIMELINE_HEAD: usize = 100;
pub const TIMELINE_TAIL: usize = 100;

/// Which connection of a session: the control connection or data:N (from 1).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ConnId {
    Control,
    /// A `u32`: a connection id is in every timeline entry and index entry.
    Data(u32),
}

impl ConnId {
    pub fn label(self) -> String {
        self.to_string()
    }
}

/// `control`, `data:N`.
impl std::fmt::Display for ConnId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            // `pad`: the text timeline aligns them.
            Self::Control => f.pad("control"),
            Self::Data(n) => f.pad(&format!("data:{n}")),
        }
    }
}

/// How a data connection was tied to its session.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LinkedBy {
    /// A `227`/`229`/`PORT`/`EPRT` announced its endpoint.
    Announcement,
    /// The control channel was unreadable (TLS): same client address, a data
    /// port, the most recently active session.
    Heuristic,
}

/// One end's account of a connection: what its socket did.
#[derive(Clone, Debug, Default)]
pub struct View {
    /// The end had a socket (else only socket-less packets were seen: drops,
    /// resets for a port nobody listens on).
    pub had_socket: bool,
    pub first_ns: u64,
    pub last_ns: u64,
    pub syn_sent: bool,
    pub established_ns: Option<u64>,
    /// This end sent the first FIN (ESTABLISHED → FIN_WAIT1).
    pub fin_sent_ns: Option<u64>,
    /// The peer's FIN arrived first (ESTABLISHED → CLOSE_WAIT).
    pub fin_received_ns: Option<u64>,
    /// Resets this end's socket sent for a segment after it was gone.
    pub resets_sent_without_socket: u32,
    /// The TTL of the first reset that arrived, and of the connection's last
    /// other arriving packet (when known): the hint to who sent it when the
    /// peer's end is not on this host.
    pub reset_ttl: Option<(u8, Option<u8>)>,
    pub retransmits: u32,
    pub syn_retransmits: u32,
    /// Retransmits after this end closed (its FIN): not data lost.
    pub closing_retransmits: u32,
    pub keepalive_probes: u32,
    pub zero_window_probes: u32,
    /// Resets, errors and drops: apart, since most ends have none.
    troubles: Option<Box<Troubles>>,
    pub closed_ns: Option<u64>,
    pub destroyed: bool,
    /// The socket's own retransmit counts, read as it was freed.
    pub retransmit_counts: Option<RetransmitCounts>,
    /// This end's TLS library's check of the peer's certificate, when
    /// ftptrace watched it (the first refusal, else the last pass), and when.
    pub tls_verdict: Option<(u64, crate::tls_verify::Verdict)>,
    /// How this end's TLS handshake ended, when ftptrace watched it (the
    /// first that completed, else the last failure), and when.
    pub tls_handshake: Option<(u64, crate::tls_handshake::Handshake)>,
    /// The first failure this end's TLS library recorded, and when.
    pub tls_error: Option<(u64, crate::tls_error::LibraryError)>,
    /// The first fatal alert this end's TLS library sent (the end refused
    /// its peer), else its first alert (a close_notify: it closed the TLS
    /// session), and when.
    pub tls_alert_sent: Option<(u64, crate::tls_alert::SentAlert)>,
}

/// What went wrong at one end.
#[derive(Clone, Debug, Default)]
pub struct Troubles {
    pub resets_sent: Vec<(u64, Option<Name>)>,
    pub resets_received: Vec<(u64, Name)>,
    pub errors: Vec<(u64, i32)>,
    /// Dropped packets: (when, reason, flags, where).
    pub drops: Vec<(u64, Option<Name>, u8, Option<Name>)>,
}

/// The empty [`Troubles`] of an end that had none.
static NO_TROUBLES: Troubles = Troubles {
    resets_sent: Vec::new(),
    resets_received: Vec::new(),
    errors: Vec::new(),
    drops: Vec::new(),
};

impl View {
    /// Resets, errors and drops at this end (empty when none).
    pub fn troubles(&self) -> &Troubles {
        self.troubles.as_deref().unwrap_or(&NO_TROUBLES)
    }

    pub(super) fn troubles_mut(&mut self) -> &mut Troubles {
        self.troubles.get_or_insert_default()
    }

    /// Nothing more will happen on this end.
    pub fn is_done(&self) -> bool {
        !self.had_socket || self.closed_ns.is_some() || self.destroyed
    }
}

/// A TCP connection of a session, with what each end on this host saw.
#[derive(Clone, Debug)]
pub struct Conn {
    pub id: ConnId,
    /// The FTP client's end and the FTP server's end.
    pub client: SocketAddr,
    pub server: SocketAddr,
    pub linked_by: LinkedBy,
    pub first_ns: u64,
    pub last_ns: u64,
    /// `[client's end, server's end]`. Boxed: most connections are seen
    /// from one end, and an idle session's size is what 100k of them cost.
    pub views: [Option<Box<View>>; 2],
    /// The kernel mark tracing this connection, held while it lives.
    pub holds_mark: Option<Mark>,
    /// Both ends are on this host with a NAT between them: the connection
    /// as the server's end sees it, (client, server), as the NAT's own
    /// entry (conntrack) maps it. `client`/`server` are the client's view.
    pub behind_nat: Option<Box<(SocketAddr, SocketAddr)>>,
}

impl Conn {
    pub(super) fn new(
        id: ConnId,
        client: SocketAddr,
        server: SocketAddr,
        ns: u64,
        by: LinkedBy,
    ) -> Self {
        Self {
            id,
            client,
            server,
            linked_by: by,
            first_ns: ns,
            last_ns: ns,
            views: [None, None],
            holds_mark: None,
            behind_nat: None,
        }
    }

    pub fn view(&self, end: Side) -> Option<&View> {
        self.views[end.index()].as_deref()
    }

    pub(super) fn view_mut(&mut self, end: Side, ns: u64) -> &mut View {
        self.views[end.index()].get_or_insert_with(|| {
            Box::new(View {
                first_ns: ns,
                last_ns: ns,
                ..View::default()
            })
        })
    }

    /// Every end seen is done (and at least one was seen).
    pub fn is_done(&self) -> bool {
        self.views.iter().flatten().all(|v| v.is_done()) && self.views.iter().any(Option::is_some)
    }

    pub fn seen(&self) -> impl Iterator<Item = (Side, &View)> {
        [Side::Client, Side::Server]
            .into_iter()
            .filter_map(|end| self.view(end).map(|v| (end, v)))
    }

    /// Either end reached ESTABLISHED.
    pub fn established(&self) -> bool {
        self.seen().any(|(_, v)| v.established_ns.is_some())
    }
}

/// A data endpoint announced on the control channel, waiting for its connection.
#[derive(Clone, Debug)]
pub struct Expectation {
    /// Unique within its session.
    pub id: u64,
    pub announced_by: Side,
    /// `None` for `229`: the control connection's server address.
    pub addr: Option<IpAddr>,
    pub port: u16,
    pub at_ns: u64,
    /// The connection that used it.
    pub used_by: Option<ConnId>,
}

/// One line of a session's disconnect timeline.
#[derive(Clone, Debug)]
pub struct Entry {
    pub ns: u64,
    pub conn: ConnId,
    /// The end whose kernel reported it.
    pub seen_at: Side,
    pub kind: EventKind,
}

/// A session's timeline: its first and its last entries, with how many in
/// between were left out.
#[derive(Clone, Debug, Default)]
pub struct Timeline {
    pub head: Vec<Entry>,
    pub tail: VecDeque<Entry>,
    pub omitted: u64,
}

impl Timeline {
    /// Adds an entry in time order: one end's events can arrive after the
    /// other's (held back until its socket's 4-tuple was known).
    pub(super) fn push(&mut self, entry: Entry) {
        if self.head.len() < TIMELINE_HEAD {
            // One entry's room at a time while few: an idle session has
            // three, and 100k of them should not each keep room for four.
            if self.head.len() == self.head.capacity() && self.head.len() < 8 {
                self.head.reserve_exact(1);
            }
            let at = self.head.partition_point(|e| e.ns <= entry.ns);
            self.head.insert(at, entry);
            return;
        }
        if self.tail.len() == TIMELINE_TAIL {
            self.tail.pop_front();
            self.omitted += 1;
        }
        let at = self.tail.partition_point(|e| e.ns <= entry.ns);
        self.tail.insert(at, entry);
    }

    pub fn entries(&self) -> impl Iterator<Item = &Entry> {
        self.head.iter().chain(self.tail.iter())
    }
}

#[derive(Clone, Debug)]
pub struct Session {
    /// Shared: every event placed in the session names it.
    pub id: Name,
    pub start_ns: u64,
    pub last_ns: u64,
    pub seeded: bool,
    /// The name the client resolved to the server's address (from a DNS
    /// answer its host received just before): known where the client is.
    pub server_name: Option<Name>,
    pub control: Conn,
    pub data: Vec<Conn>,
    pub user: Option<String>,
    pub commands: Vec<String>,
    pub replies: Vec<u16>,
    /// Commands and replies beyond [`MAX_LISTED`].
    pub unlisted: u64,
    /// Data connections beyond [`MAX_DATA_CONNS`], not linked.
    pub data_unlinked: u64,
    pub quit_ns: Option<u64>,
    /// `150`/`125` without a closing reply yet.
    pub transfer_open: bool,
    /// When the channel turned to TLS (`234`, or port 990 from the start).
    pub encrypted_ns: Option<u64>,
    /// Control segments carrying payload after encryption, by sender
    /// `[client, server]`: a TLS handshake that failed stops early.
    pub encrypted_segments: [u32; 2],
    /// When each sender's last such segment was seen (boot ns), by sender
    /// `[client, server]`: a client's close_notify after a completed
    /// handshake says who hung up when both FINs cross.
    pub encrypted_last_ns: [Option<u64>; 2],
    pub expectations: Vec<Expectation>,
    pub timeline: Timeline,
    /// Any `ftp` event was seen: the channel is readable.
    pub control_readable: bool,
    /// Words came after the channel turned to TLS: the TLS library's
    /// plaintext is read (`tls_plaintext`), and the session is judged as a
    /// clear one.
    pub decrypted: bool,
    /// Kernel events lost (ring buffer full) or skipped (recursion) on the
    /// host while this session was open: any of them may have been its own.
    pub events_lost: u64,
    /// Announced endpoints left out: beyond the ones a session keeps.
    pub expectations_dropped: u64,
    /// The host's loss count when it opened (see `events_lost`).
    pub(super) loss_at_open: u64,
}

impl Session {
    pub fn conn(&self, id: ConnId) -> &Conn {
        self.get_conn(id).expect("a connection of this session")
    }

    /// [`Self::conn`], or `None` for an id the session has not given.
    pub fn get_conn(&self, id: ConnId) -> Option<&Conn> {
        match id {
            ConnId::Control => Some(&self.control),
            ConnId::Data(n) => self.data.get((n as usize).checked_sub(1)?),
        }
    }

    pub(super) fn conn_mut(&mut self, id: ConnId) -> &mut Conn {
        match id {
            ConnId::Control => &mut self.control,
            ConnId::Data(n) => &mut self.data[n as usize - 1],
        }
    }

    pub fn conns(&self) -> impl Iterator<Item = &Conn> {
        std::iter::once(&self.control).chain(self.data.iter())
    }

    /// Ends of the control connection seen on this host.
    pub fn seen_from(&self) -> Vec<Side> {
        self.control.seen().map(|(end, _)| end).collect()
    }

    pub fn is_done(&self) -> bool {
        self.control.is_done() && self.data.iter().all(Conn::is_done)
    }

    /// The offset of `ns` from the session's start, in milliseconds.
    pub fn offset_ms(&self, ns: u64) -> u64 {
        ns.saturating_sub(self.start_ns) / 1_000_000
    }

    pub(super) fn encrypted(&self) -> bool {
        self.encrypted_ns.is_some()
    }

    /// The control channel's words can be read: seen, and not encrypted
    /// or read from the TLS library's plaintext.
    pub(super) fn words_readable(&self) -> bool {
        self.control_readable && (!self.encrypted() || self.decrypted)
    }
}

/// Where an event landed: its session and connection, and which end of it
/// this host's socket is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Placement {
    pub session: Name,
    pub conn: ConnId,
    pub end: Side,
}

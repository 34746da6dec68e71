//! The JSON lines contract (docs/json-lines.md), every line type in one
//! place: `start`, `event` (with one set of fields per kind), `session`,
//! `pattern` and `stats`. A change here is a change of the contract. (A probe's
//! entry in the start line is the kernel room's [`ProbeStatus`].)

use std::{fmt::Display, net::IpAddr};

use serde::{Deserialize, Serialize, Serializer};

use crate::{
    event::{EventKind, errno_name, tcp_flag_names},
    ftp::{ControlEvent, Side},
    kernel::{clock::Stamp, probes::ProbeStatus},
    session::ConnId,
};

/// Version of the JSON lines contract; bumped only for incompatible changes
/// (docs/json-lines.md says what changed, schema/lines.schema.json is it).
pub const SCHEMA: u32 = 2;

/// Who wrote a line, on every line: the host by its name (an object, as
/// the Elastic Common Schema's `host.name`), and this run of ftptrace.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Origin {
    pub host: HostLine,
    /// A random id per run (128 bits, hex): session ids begin with it.
    pub run: String,
}

impl Origin {
    /// A host whose name is not known, and the run `run` (32 zeros when
    /// that is not known either).
    pub fn unknown(run: Option<String>) -> Self {
        Self {
            host: HostLine {
                name: "unknown".into(),
            },
            run: run.unwrap_or_else(|| "0".repeat(32)),
        }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct HostLine {
    pub name: String,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Start {
    /// When the run started (RFC 3339, UTC). Recordings before schema 2
    /// have none: their replay says the first batch's time.
    #[serde(default)]
    pub ts: String,
    pub version: String,
    pub kernel: String,
    pub ports: PortsLine,
    pub probes: Vec<ProbeStatus>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct PortsLine {
    pub control: Vec<u16>,
    pub active_data: u16,
    /// `[lo, hi]`, or null when passive data connections are not traced.
    pub passive: Option<[u16; 2]>,
}

/// The first line of a joined replay (`ftptrace replay client.rec
/// server.rec`): the recordings joined, each host's clock against the
/// first's.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct JoinLine {
    /// The joined run's first batch, on the first host's clock.
    pub ts: String,
    pub inputs: Vec<JoinedInput>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct JoinedInput {
    pub host: HostLine,
    pub run: String,
    /// This host's clock minus the first's, in nanoseconds, as estimated
    /// (its events are moved back by it): 0 for the first.
    pub clock_offset_ns: i64,
    /// `[lowest, highest]` the offset can be, when segments both ways
    /// bounded it; null when they did not (or disagreed).
    pub offset_bounds_ns: Option<[i64; 2]>,
    /// Connections this host and the first both traced that bound it.
    pub connections: u64,
}

/// Failing clients a `summary` line lists at most.
pub const FAILING_CLIENTS_LISTED: usize = 10;

/// What the sessions came to so far: written when SIGUSR1 asks.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Summary {
    /// The time of the latest batch it counts.
    pub ts: String,
    /// Sessions begun so far, and open now.
    pub sessions: u64,
    pub sessions_open: usize,
    /// Sessions reported so far per cause, every cause named (`none`: ended
    /// without one).
    pub by_cause: std::collections::BTreeMap<String, u64>,
    /// The clients with the most failed sessions, most first, at most
    /// [`FAILING_CLIENTS_LISTED`]; failed sessions of clients past the
    /// table's cap are only counted.
    pub failing_clients: Vec<FailingClient>,
    pub failing_clients_dropped: u64,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct FailingClient {
    pub addr: std::net::IpAddr,
    pub sessions: u64,
}

#[derive(Clone, Debug, Serialize)]
pub struct Stats {
    /// The time of the latest batch it counts.
    pub ts: String,
    /// Event lines written so far.
    pub events: u64,
    /// Events the kernel could not queue (ring buffer full), summed over CPUs.
    pub lost: u64,
    /// Events the kernel skipped because the same program was already running
    /// on that CPU (an interrupt arriving mid-program); counted by the kernel.
    pub missed: u64,
    /// Records that could not be decoded (each also reported on stderr once).
    pub undecodable: u64,
    /// Program runs that could not read what they needed from the kernel
    /// (an event missing), summed over CPUs.
    pub unreadable: u64,
    /// Control-channel segments the kernel did not copy because their
    /// connection had used its budget of records per second.
    pub throttled: u64,
    /// Sockets currently remembered for attribution.
    pub sockets: usize,
    /// FTP sessions begun so far, open now, and reported early because too
    /// many were open at once.
    pub sessions: u64,
    pub sessions_open: usize,
    pub sessions_evicted: u64,
    /// What the tables that strangers can grow left out, past their caps.
    pub dropped: DroppedLine,
    /// Handshake health: per server address, connections that needed a
    /// SYN or SYN-ACK retransmit; the most retried first, at most
    /// [`HANDSHAKE_SERVERS_LISTED`].
    pub handshakes: Vec<HandshakeLine>,
    /// TLS handshakes completed on FTP connections so far, as this host's
    /// libraries returned them (one per end here), and the most completed
    /// in one second since the last `stats` line.
    pub tls_handshakes: u64,
    pub tls_handshakes_peak_per_s: u64,
    /// Lines `--output`'s file refused so far (a full disk, a vanished
    /// directory): the writer's count, 0 on standard output.
    pub unwritten: u64,
    #[serde(rename = "final")]
    pub is_final: bool,
}

/// The caps' counts in a `stats` line.
#[derive(Clone, Copy, Debug, Default, Serialize, PartialEq, Eq)]
pub struct DroppedLine {
    /// Announced data endpoints beyond a session's 32.
    pub expectations: u64,
    /// Announcements not traced: 1024 marks were in force (user space's
    /// count and the kernel's).
    pub marks: u64,
    /// Events of sockets whose ports were not known yet, beyond the holds.
    pub pending: u64,
    /// Stray segments of no connection, pushed out by newer ones.
    pub orphans: u64,
    /// Control-channel parsers forgotten for room (their next bytes are
    /// read from a line end on).
    pub parsers: u64,
    /// Sockets forgotten for room (their events carry no owner).
    pub sockets: u64,
    /// Failures not followed for patterns: 4096 client/cause pairs (or
    /// client/name pairs) were.
    pub patterns: u64,
    /// Connections not counted for handshake health: 1024 servers were.
    pub handshakes: u64,
    /// Server names from DNS answers pushed out before they expired:
    /// 4096 addresses were named.
    #[serde(default)]
    pub dns_names: u64,
    /// Event lines `--failures-only` did not hold for their session: past
    /// 512 KiB a session or 64 MiB in all.
    #[serde(default)]
    pub held: u64,
}

/// Servers a `stats` line lists under `handshakes`.
pub const HANDSHAKE_SERVERS_LISTED: usize = 16;

/// One server's handshakes in a `stats` line.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct HandshakeLine {
    pub server: IpAddr,
    /// Control connections seen opening, and those that needed a SYN or
    /// SYN-ACK retransmit.
    pub control: u64,
    pub control_retried: u64,
    /// The same for data connections.
    pub data: u64,
    pub data_retried: u64,
}

/// A pattern across sessions: a client that ended `sessions` sessions with
/// the same failure cause within `window_s`.
#[derive(Clone, Debug, Serialize)]
pub struct PatternLine {
    /// When the latest of them ended.
    pub ts: String,
    pub pattern: &'static str,
    pub client: AddrLine,
    /// `dns_flip`: the server name the sessions resolved.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    pub cause: &'static str,
    /// `dns_flip`: each session's cause, in the order of `servers`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub causes: Option<Vec<&'static str>>,
    pub sessions: usize,
    pub window_s: u64,
    pub first: String,
    pub last: String,
    /// Server addresses they went to (latest last, at most 8).
    pub servers: Vec<IpAddr>,
    /// The latest of the sessions' ids (at most 8).
    pub session_ids: Vec<String>,
    pub evidence: String,
}

/// An address alone, as an object (`client` is one in the Elastic Common
/// Schema).
#[derive(Clone, Debug, Serialize)]
pub struct AddrLine {
    pub addr: IpAddr,
}

#[derive(Serialize)]
pub struct EventLine<'a> {
    #[serde(rename = "type")]
    pub line_type: &'static str,
    pub schema: u32,
    pub ts: &'a str,
    pub host: &'a HostLine,
    pub run: &'a str,
    #[serde(flatten)]
    pub details: Details<'a>,
    /// The end of the connection this host's socket is.
    pub side: Side,
    #[serde(serialize_with = "shown")]
    pub local_addr: IpAddr,
    pub local_port: u16,
    #[serde(serialize_with = "shown")]
    pub remote_addr: IpAddr,
    pub remote_port: u16,
    pub netns: Option<u32>,
    pub pid: Option<u32>,
    pub comm: Option<&'a str>,
    pub socket: Option<u64>,
    pub cpu: u32,
    /// The FTP session and connection (`control`, `data:N`) once known.
    pub session: Option<&'a str>,
    #[serde(serialize_with = "shown_or_null")]
    pub conn: Option<ConnId>,
    /// The connection's Community ID; null while a port is 0 (a client's
    /// socket before its SYN has one).
    pub community_id: Option<&'a str>,
}

/// A value as its `Display` writes it, straight into the line (no `String`
/// in between: every event line has three).
fn shown<T: Display, S: Serializer>(value: &T, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.collect_str(value)
}

fn shown_or_null<T: Display, S: Serializer>(
    value: &Option<T>,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    match value {
        Some(value) => serializer.collect_str(value),
        None => serializer.serialize_none(),
    }
}

#[derive(Clone, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Details<'a> {
    State {
        old_state: &'a str,
        new_state: &'a str,
    },
    Retransmit {
        state: &'a str,
        syn: bool,
        /// The socket's pending error (`EHOSTUNREACH`), by name.
        errno: Option<String>,
        segs: Option<u32>,
    },
    ResetSent {
        reason: Option<&'a str>,
        state: Option<&'a str>,
    },
    ResetReceived {
        state: &'a str,
    },
    SocketError {
        errno: String,
        code: i32,
    },
    Destroy {
        /// Segments the socket retransmitted over its life, and how many of
        /// them its peer reported duplicate (D-SACK); null where unknown.
        total_retrans: Option<u32>,
        dsack_dups: Option<u32>,
    },
    KeepaliveProbe {
        probes_out: u8,
    },
    ZeroWindowProbe {
        probes_out: u8,
    },
    Drop {
        reason: Option<&'a str>,
        direction: &'static str,
        tcp_flags: String,
        location: Option<&'a str>,
    },
    TlsVerify {
        library: String,
        passed: bool,
        code: u32,
        /// The library's names for the code.
        reasons: Vec<String>,
    },
    TlsError {
        library: String,
        code: u32,
        /// The alert the peer sent, by its RFC name, when the code is one.
        alert_received: Option<&'static str>,
        /// The library's name for any other reason.
        reason: Option<&'static str>,
    },
    TlsAlert {
        library: String,
        /// This end sent it (alerts received are `tls_error`'s).
        sent: bool,
        /// `warning`, `fatal`, or null for another level.
        level: Option<&'static str>,
        /// The alert's description.
        code: u8,
        /// Its RFC 8446 name, when known.
        alert: Option<&'static str>,
    },
    TlsHandshake {
        library: String,
        done: bool,
        code: i32,
        /// The library's name for a failure.
        reason: Option<&'static str>,
    },
    Ftp(FtpDetails<'a>),
}

#[derive(Clone, Serialize)]
pub struct DataEndpoint {
    pub addr: Option<String>,
    pub port: u16,
}

impl<'a> Details<'a> {
    /// The line's kind-specific fields; `None` for a kind that is never
    /// printed (a raw control segment).
    pub fn of(kind: &'a EventKind) -> Option<Self> {
        Some(match kind {
            EventKind::State { old, new } => Self::State {
                old_state: old,
                new_state: new,
            },
            EventKind::Retransmit {
                state,
                syn,
                error,
                segs,
            } => Self::Retransmit {
                state,
                syn: *syn,
                errno: error.map(errno_name),
                segs: *segs,
            },
            EventKind::ResetSent { reason, state } => Self::ResetSent {
                reason: reason.as_deref(),
                state: state.as_deref(),
            },
            EventKind::ResetReceived { state } => Self::ResetReceived { state },
            EventKind::SocketError { errno } => Self::SocketError {
                errno: errno_name(*errno),
                code: *errno,
            },
            EventKind::Destroy { counts } => Self::Destroy {
                total_retrans: counts.map(|c| c.retransmitted),
                dsack_dups: counts.map(|c| c.duplicates),
            },
            EventKind::KeepaliveProbe { probes_out } => Self::KeepaliveProbe {
                probes_out: *probes_out,
            },
            EventKind::ZeroWindowProbe { probes_out } => Self::ZeroWindowProbe {
                probes_out: *probes_out,
            },
            EventKind::Drop {
                reason,
                outgoing,
                tcp_flags,
                location,
            } => Self::Drop {
                reason: reason.as_deref(),
                direction: if *outgoing { "out" } else { "in" },
                tcp_flags: tcp_flag_names(*tcp_flags),
                location: location.as_deref(),
            },
            EventKind::Ftp { from, event } => {
                let mut details = FtpDetails {
                    from: from.as_str(),
                    ..FtpDetails::default()
                };
                match event {
                    ControlEvent::Command { verb, arg } => {
                        details.command = Some(verb.as_str());
                        details.arg = arg.as_deref();
                    }
                    ControlEvent::Reply { code, text } => {
                        details.reply = Some(*code);
                        details.text = Some(text);
                    }
                    ControlEvent::DataEndpoint { addr, port, .. } => {
                        details.data_endpoint = Some(DataEndpoint {
                            addr: addr.map(|a| a.to_canonical().to_string()),
                            port: *port,
                        });
                    }
                    ControlEvent::Encrypted => details.encrypted = true,
                }
                Self::Ftp(details)
            }
            EventKind::TlsVerify(verdict) => Self::TlsVerify {
                library: verdict.verifier.to_string(),
                passed: verdict.passed(),
                code: verdict.code,
                reasons: verdict
                    .reasons()
                    .into_iter()
                    .map(|(name, _)| name)
                    .collect(),
            },
            EventKind::TlsError(error) => Self::TlsError {
                library: error.library.to_string(),
                code: error.reason,
                alert_received: error.alert_received().map(|(name, _)| name),
                reason: error.reason().map(|(name, _)| name),
            },
            EventKind::TlsAlertSent(alert) => Self::TlsAlert {
                library: alert.library.to_string(),
                sent: true,
                level: alert.level_name(),
                code: alert.description,
                alert: alert.name(),
            },
            EventKind::TlsHandshake(handshake) => Self::TlsHandshake {
                library: handshake.library.to_string(),
                done: handshake.succeeded(),
                code: handshake.code,
                reason: handshake.reason().map(|(name, _)| name),
            },
            EventKind::ControlSegment(_) | EventKind::ResetTtl { .. } | EventKind::DnsAnswer(_) => {
                return None;
            }
        })
    }
}

/// Every `ftp` line has every field, `null` where this line has none.
#[derive(Clone, Default, Serialize)]
pub struct FtpDetails<'a> {
    pub from: &'static str,
    pub command: Option<&'a str>,
    pub arg: Option<&'a str>,
    pub reply: Option<u16>,
    pub text: Option<&'a str>,
    pub data_endpoint: Option<DataEndpoint>,
    pub encrypted: bool,
}

/// A line of any type but `event`: its type, the schema and who wrote it,
/// then its own fields.
#[derive(Serialize)]
pub struct Tagged<'a, T> {
    #[serde(rename = "type")]
    pub line_type: &'static str,
    pub schema: u32,
    pub host: &'a HostLine,
    pub run: &'a str,
    #[serde(flatten)]
    pub body: &'a T,
}

#[derive(Debug, Serialize)]
pub struct SessionRecord<'a> {
    /// The time the line describes: the session's end (its last event).
    pub ts: String,
    /// `<run>-<n>`: unique across hosts and runs.
    pub id: String,
    /// The control connection's Community ID (each connection has its own
    /// below).
    pub community_id: String,
    pub start: String,
    pub end: String,
    /// `closed`, or `open` for a session still open when ftptrace stopped.
    pub state: &'static str,
    pub seeded: bool,
    /// What ftptrace cannot know about a seeded session.
    pub unknown: Vec<String>,
    /// Why this record came early: `capacity` when too many sessions were open.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub evicted: Option<&'static str>,
    pub client: Endpoint,
    pub server: Endpoint,
    /// The name the client resolved to the server's address, when this
    /// host received the DNS answer (the client's host).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub server_name: Option<String>,
    pub seen_from: Vec<&'static str>,
    /// The name the client logged in with (`USER`), an object as the
    /// Elastic Common Schema's `user.name`.
    pub user: Option<UserLine>,
    pub commands: Vec<String>,
    pub replies: Vec<String>,
    pub encrypted: bool,
    pub control: ConnRecord,
    pub data: Vec<ConnRecord>,
    /// Data connections left out of `data` to keep the line under
    /// [`super::session_line::LINE_BUDGET`] bytes (the middle ones).
    pub data_omitted: u64,
    /// Data connections beyond the 256 kept per session (not linked).
    pub data_unlinked: u64,
    pub timeline: Vec<TimelineEntry<'a>>,
    /// Timeline entries left out between the first and the last ones kept.
    pub timeline_omitted: u64,
    pub cause: Option<&'static str>,
    pub cause_conn: Option<String>,
    pub evidence: Vec<String>,
}

#[derive(Debug, Serialize)]
pub struct UserLine {
    pub name: String,
}

#[derive(Debug, Serialize)]
pub struct Endpoint {
    pub addr: String,
    pub port: u16,
}

#[derive(Debug, Serialize)]
pub struct ConnRecord {
    pub conn: String,
    pub community_id: String,
    pub client: Endpoint,
    pub server: Endpoint,
    pub start: String,
    pub end: String,
    pub close: &'static str,
    pub closed_by: &'static str,
    /// `announcement` (227/229/PORT/EPRT) or `heuristic` (TLS channel).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub linked_by: Option<&'static str>,
    pub established: bool,
    /// Retransmitted segments (SYNs apart), both ends on this host summed.
    pub retransmits: u32,
    pub syn_retransmits: u32,
    pub seen_from: Vec<&'static str>,
    /// Both ends on this host with a NAT between them: the connection as
    /// the server's end sees it (`client`/`server` above are the client's
    /// view), from the NAT's connection tracking.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub behind_nat: Option<NatView>,
    /// Microseconds from the connection's TLS start to its handshake's end,
    /// at the client end when seen there, else the server's; absent when
    /// no handshake was watched.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_handshake_us: Option<u64>,
    /// The handshake failed: the library's words, at the end that said so.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_handshake_failed: Option<String>,
}

/// A connection's ends as the server sees them behind a NAT.
#[derive(Debug, Serialize)]
pub struct NatView {
    /// The Community ID of the connection as the server sees it.
    pub community_id: String,
    pub client: Endpoint,
    pub server: Endpoint,
}

/// Its connection and what happened are written from the session's own
/// (a session line has up to 200 entries: no `String` each).
#[derive(Debug, Serialize)]
pub struct TimelineEntry<'a> {
    #[serde(serialize_with = "shown")]
    pub ts: Stamp,
    pub offset_ms: u64,
    #[serde(serialize_with = "shown")]
    pub conn: ConnId,
    /// The end whose kernel reported it.
    pub side: &'static str,
    #[serde(serialize_with = "shown")]
    pub what: &'a EventKind,
}

//! What the kernel reported, decoded: one [`KernelEvent`] per ring buffer record.

use std::{fmt, net::SocketAddr, ops::Deref, sync::Arc};

use crate::{
    ftp::{ControlEvent, Side},
    printable::printable,
};

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KernelEvent {
    /// `CLOCK_BOOTTIME` in nanoseconds.
    pub boot_ns: u64,
    pub cpu: u32,
    /// Whoever was on the CPU ([`crate::session::attribution`] decides if that is the owner).
    pub current: Task,
    /// Inode number of the socket's network namespace, where the kernel knew it.
    pub netns: Option<u32>,
    /// Kernel address of the socket; only an identity, never printed.
    pub sock: Option<u64>,
    pub local: SocketAddr,
    pub remote: SocketAddr,
    pub kind: EventKind,
}

impl KernelEvent {
    /// The same socket, time and place, with another kind (what a control
    /// segment said); the segment's bytes are not copied.
    pub fn with_kind(&self, kind: EventKind) -> Self {
        Self {
            boot_ns: self.boot_ns,
            cpu: self.cpu,
            current: self.current.clone(),
            netns: self.netns,
            sock: self.sock,
            local: self.local,
            remote: self.remote,
            kind,
        }
    }
}

/// A TCP connection open before tracing began (from sock_diag), whose
/// session is seeded.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct OpenConnection {
    pub netns: u32,
    pub local: SocketAddr,
    pub remote: SocketAddr,
    /// Kernel TCP state number (`TCP_ESTABLISHED` is 1).
    pub state: u8,
}

/// A process as `bpf_get_current_pid_tgid`/`comm` saw it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Task {
    /// Thread group id: the pid a user sees.
    pub pid: u32,
    pub comm: Name,
}

/// A name the kernel gives over and over (a TCP state, a reset or drop
/// reason, a function, a process name): shared, not copied. Every event
/// carries some and every timeline entry keeps them; as `String`s they
/// were allocations on each, and a third of an idle session's bytes.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Name(Arc<str>);

impl Name {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl Deref for Name {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

impl From<&str> for Name {
    fn from(name: &str) -> Self {
        Self(Arc::from(name))
    }
}

impl From<String> for Name {
    fn from(name: String) -> Self {
        Self(Arc::from(name))
    }
}

impl PartialEq<str> for Name {
    fn eq(&self, other: &str) -> bool {
        &*self.0 == other
    }
}

impl PartialEq<&str> for Name {
    fn eq(&self, other: &&str) -> bool {
        &*self.0 == *other
    }
}

impl fmt::Display for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.0, f)
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EventKind {
    /// A TCP state change; kernel state names without `TCP_`.
    State { old: Name, new: Name },
    /// A retransmitted skb. `syn` for SYN and SYN-ACK retransmits;
    /// `error` is the errno when the kernel failed to send it (6.17+ report it).
    Retransmit {
        state: Name,
        syn: bool,
        error: Option<i32>,
        /// Segments retransmitted: SACK may have merged several into one
        /// skb. `None` where this kernel's layout is unknown.
        segs: Option<u32>,
    },
    /// A RST this host sent; `reason` is the kernel's `sk_rst_reason` name where
    /// it gives one; `state` is absent when no socket wanted the packet.
    ResetSent {
        reason: Option<Name>,
        state: Option<Name>,
    },
    /// A RST arrived and was accepted; `state` is the socket's state then.
    ResetReceived { state: Name },
    /// The socket's pending error (`sk_err`), a positive errno.
    SocketError { errno: i32 },
    /// The kernel freed the socket; with its own retransmit counts where
    /// this kernel's layout is known.
    Destroy { counts: Option<RetransmitCounts> },
    /// A keepalive probe went out; `probes_out` are unanswered so far.
    KeepaliveProbe { probes_out: u8 },
    /// A window probe went out because the peer advertised a zero window.
    ZeroWindowProbe { probes_out: u8 },
    /// The kernel dropped a packet of the connection; `reason` is the
    /// kernel's drop reason name (5.17+); `outgoing` for one this host sent.
    Drop {
        reason: Option<Name>,
        outgoing: bool,
        /// The packet's TCP flags byte (`SYN` 0x02, `RST` 0x04, ...).
        tcp_flags: u8,
        /// The kernel function that freed the packet, when known.
        location: Option<Name>,
    },
    /// The head of one FTP control-connection segment. Never printed: the
    /// control-channel parser turns it into [`EventKind::Ftp`] events.
    /// Boxed: the largest kind, and never kept in a timeline, where every
    /// entry would be as large.
    ControlSegment(Box<Segment>),
    /// A reset arrived for this socket: its IP TTL (hop limit) and that of
    /// the connection's last other arriving packet. Never printed: the
    /// session compares them (a reset from a device on the path usually
    /// comes from fewer or more hops away than the peer).
    ResetTtl { ttl: u8, usual_ttl: Option<u8> },
    /// A DNS answer a socket here received, when it named a host's
    /// addresses (`None`: any other answer). Never printed: a session's
    /// server is named by it (a DNS name that flips between addresses is a
    /// pattern across sessions).
    DnsAnswer(Option<Box<crate::dns::Answer>>),
    /// This end's TLS library judged the peer's certificate (a control
    /// connection's, `tls_plaintext`).
    TlsVerify(crate::tls_verify::Verdict),
    /// A TLS handshake on this connection ended, as this end's library
    /// returned it (`tls_plaintext`).
    TlsHandshake(crate::tls_handshake::Handshake),
    /// This end's TLS library recorded why a call failed: a reason of its
    /// own, or an alert the peer sent (`tls_plaintext`).
    TlsError(crate::tls_error::LibraryError),
    /// This end's TLS library sent an alert (`tls_plaintext`).
    TlsAlertSent(crate::tls_alert::SentAlert),
    /// What one side said on the control channel.
    Ftp {
        /// The peer that sent it.
        from: Side,
        event: ControlEvent,
    },
}

/// A socket's own account of its retransmits, read as it was freed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RetransmitCounts {
    /// Segments it retransmitted (`total_retrans`).
    pub retransmitted: u32,
    /// Duplicates its peer reported with D-SACK (`dsack_dups`): segments
    /// that arrived twice, so retransmitted for nothing.
    pub duplicates: u32,
}

impl EventKind {
    /// A socket freed, with no counts.
    pub const DESTROYED: Self = Self::Destroy { counts: None };
}

/// A captured control-channel segment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Segment {
    /// The kernel's socket cookie: unique per socket for the whole boot.
    pub cookie: u64,
    /// Sent by this socket (else it arrived for it).
    pub outgoing: bool,
    /// TCP sequence number of the first payload byte.
    pub seq: u32,
    /// Payload bytes in the segment; `payload` holds the first of them.
    pub payload_len: u32,
    /// The kernel masked a `PASS`/`ACCT` argument with `*`.
    pub redacted: bool,
    /// The captured bytes: the segment's first ones, and for a segment too
    /// long to hold whole, from `tail_at` on its last ones.
    pub payload: Payload,
    /// Where in `payload` the segment's tail starts when bytes between its
    /// head and tail were not captured.
    pub tail_at: Option<usize>,
    /// What the kernel marked because of this segment's announcement.
    pub mark: Option<KernelMark>,
    /// Plaintext of a TLS channel from the library's read or write call,
    /// not a TCP segment: `seq` counts plaintext bytes, and `cookie` is 0.
    pub decrypted: bool,
}

/// A mark the kernel made as a segment passed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KernelMark {
    /// A server's 227/229: this passive data port is traced.
    Passive(u16),
    /// A client's PORT/EPRT: its address and this port are traced.
    Active(u16),
}

impl Segment {
    /// The captured bytes as pieces of the segment: (offset in the segment,
    /// bytes), in order; gaps between them and after the last were lost.
    pub fn pieces(&self) -> Vec<(u32, &[u8])> {
        let bytes = self.payload.bytes();
        match self.tail_at {
            Some(at) if at <= bytes.len() => {
                let (head, tail) = bytes.split_at(at);
                let tail_offset = self.payload_len.saturating_sub(tail.len() as u32);
                vec![(0, head), (tail_offset, tail)]
            }
            _ => vec![(0, bytes)],
        }
    }

    /// Bytes of the segment that were not captured.
    pub fn truncated(&self) -> bool {
        self.payload.len() < self.payload_len as usize
    }
}

/// Captured control-channel bytes. They may hold a password the kernel did
/// not recognise, so `Debug` shows only their length and they are zeroed
/// when dropped.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Payload(Vec<u8>);

impl Payload {
    pub fn new(bytes: &[u8]) -> Self {
        Self(bytes.to_vec())
    }

    pub fn bytes(&self) -> &[u8] {
        &self.0
    }

    pub fn bytes_mut(&mut self) -> &mut [u8] {
        &mut self.0
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for Payload {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Payload({} bytes)", self.0.len())
    }
}

impl Drop for Payload {
    fn drop(&mut self) {
        zeroize::Zeroize::zeroize(&mut self.0);
    }
}

/// What an event says, in words: the text format's line and a timeline
/// entry. What a peer chose (FTP words) is made [`printable`]. Written
/// straight into the formatter: a session line writes up to 200 of these,
/// and a `String` each (with more inside) was a tenth of its cost.
impl fmt::Display for EventKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::State { old, new } => write!(f, "state {old} -> {new}"),
            Self::Retransmit {
                state,
                syn,
                error,
                segs,
            } => {
                f.write_str(if *syn { "retransmit SYN" } else { "retransmit" })?;
                if let Some(n) = segs.filter(|&n| n > 1) {
                    write!(f, " ({n} segments)")?;
                }
                write!(f, " in {state}")?;
                match error {
                    Some(e) => write!(f, " failed: {}", errno_name(*e)),
                    None => Ok(()),
                }
            }
            Self::ResetSent { reason, state } => {
                let reason = reason.as_deref().unwrap_or("no reason given");
                match state {
                    Some(state) => write!(f, "reset sent ({reason}) in {state}"),
                    None => write!(f, "reset sent ({reason}) (no socket)"),
                }
            }
            Self::ResetReceived { state } => write!(f, "reset received in {state}"),
            Self::SocketError { errno } => write!(f, "socket error {}", errno_name(*errno)),
            Self::Destroy { counts } => {
                f.write_str("socket destroyed")?;
                match counts {
                    Some(c) if c.retransmitted > 0 || c.duplicates > 0 => write!(
                        f,
                        " ({} segment(s) retransmitted, {} reported duplicate by the peer)",
                        c.retransmitted, c.duplicates
                    ),
                    _ => Ok(()),
                }
            }
            Self::KeepaliveProbe { probes_out } => {
                write!(f, "keepalive probe, {probes_out} unanswered")
            }
            Self::ZeroWindowProbe { probes_out } => {
                write!(f, "zero-window probe, {probes_out} unanswered")
            }
            Self::Drop {
                reason,
                outgoing,
                tcp_flags,
                location,
            } => {
                write!(
                    f,
                    "{} {} dropped ({}",
                    if *outgoing { "outgoing" } else { "incoming" },
                    tcp_flag_names(*tcp_flags),
                    reason.as_deref().unwrap_or("no reason given"),
                )?;
                if let Some(l) = location {
                    write!(f, " in {l}")?;
                }
                f.write_str(")")
            }
            Self::Ftp { from, event } => ftp_text(f, *from, event),
            Self::TlsVerify(verdict) => write!(f, "{verdict}"),
            Self::TlsHandshake(handshake) => write!(f, "{handshake}"),
            Self::TlsError(error) => write!(f, "{error}"),
            Self::TlsAlertSent(alert) => write!(f, "{alert}"),
            Self::ControlSegment(segment) => {
                write!(f, "control segment, {} bytes", segment.payload_len)
            }
            Self::DnsAnswer(Some(answer)) => {
                write!(f, "DNS answer: {} is", answer.name)?;
                for addr in &answer.addrs {
                    write!(f, " {addr}")?;
                }
                Ok(())
            }
            Self::DnsAnswer(None) => f.write_str("DNS answer without addresses"),
            Self::ResetTtl { ttl, usual_ttl } => match usual_ttl {
                Some(usual) => write!(
                    f,
                    "reset arrived with TTL {ttl} (the connection's other packets: {usual})"
                ),
                None => write!(f, "reset arrived with TTL {ttl}"),
            },
        }
    }
}

/// `ftp client: RETR file`, `ftp server: 226 Transfer complete`. The peer
/// chose these bytes: control characters are escaped so they cannot drive
/// the terminal.
fn ftp_text(f: &mut fmt::Formatter<'_>, from: Side, event: &ControlEvent) -> fmt::Result {
    write!(f, "ftp {}: ", from.as_str())?;
    match event {
        ControlEvent::Command { verb, arg } => match arg {
            Some(arg) => write!(f, "{} {}", verb.as_str(), printable(arg)),
            None => f.write_str(verb.as_str()),
        },
        ControlEvent::Reply { code, text } => write!(f, "{code} {}", printable(text)),
        ControlEvent::DataEndpoint {
            addr: Some(addr),
            port,
            ..
        } => write!(
            f,
            "data endpoint {}",
            std::net::SocketAddr::new(addr.to_canonical(), *port)
        ),
        ControlEvent::DataEndpoint {
            addr: None, port, ..
        } => write!(f, "data endpoint port {port}"),
        ControlEvent::Encrypted => f.write_str("now encrypted (TLS)"),
    }
}

/// TCP flag names of a flags byte, e.g. `SYN|ACK`; empty for none.
pub fn tcp_flag_names(flags: u8) -> String {
    const NAMES: [&str; 8] = ["FIN", "SYN", "RST", "PSH", "ACK", "URG", "ECE", "CWR"];
    NAMES
        .iter()
        .enumerate()
        .filter(|(bit, _)| flags & (1 << bit) != 0)
        .map(|(_, name)| *name)
        .collect::<Vec<_>>()
        .join("|")
}

/// A connection's first segment: SYN without ACK (a SYN-ACK answers one).
pub fn is_bare_syn(flags: u8) -> bool {
    flags & 0x12 == 0x02
}

/// `ETIMEDOUT` for 110; the number itself for codes libc has no name for.
pub fn errno_name(code: i32) -> String {
    let errno = nix::errno::Errno::from_raw(code.abs());
    if errno == nix::errno::Errno::UnknownErrno {
        code.abs().to_string()
    } else {
        format!("{errno:?}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tcp_flags_by_name() {
        assert_eq!(tcp_flag_names(0x02), "SYN");
        assert_eq!(tcp_flag_names(0x12), "SYN|ACK");
        assert_eq!(tcp_flag_names(0x14), "RST|ACK");
        assert_eq!(tcp_flag_names(0), "");
    }

    #[test]
    fn payload_debug_shows_only_the_length() {
        let payload = Payload::new(b"PASS hunter2\r\n");
        assert_eq!(format!("{payload:?}"), "Payload(14 bytes)");
        let segment = Segment {
            cookie: 1,
            outgoing: true,
            seq: 0,
            payload_len: 14,
            redacted: false,
            payload,
            tail_at: None,
            mark: None,
            decrypted: false,
        };
        assert!(!format!("{segment:?}").contains("hunter2"));
        assert!(!segment.truncated());
    }

    #[test]
    fn errno_names() {
        assert_eq!(errno_name(110), "ETIMEDOUT");
        assert_eq!(errno_name(-111), "ECONNREFUSED");
        assert_eq!(errno_name(104), "ECONNRESET");
        assert_eq!(errno_name(4242), "4242");
    }

    /// The words of every kind, as the text format and the timelines
    /// have printed them since the start (docs/json-lines.md's `what`).
    #[test]
    fn every_kind_reads_in_the_same_words() {
        let words = [
            (
                EventKind::State {
                    old: "CLOSE".into(),
                    new: "SYN_SENT".into(),
                },
                "state CLOSE -> SYN_SENT",
            ),
            (
                EventKind::Retransmit {
                    state: "SYN_SENT".into(),
                    syn: true,
                    error: Some(110),
                    segs: Some(3),
                },
                "retransmit SYN (3 segments) in SYN_SENT failed: ETIMEDOUT",
            ),
            (
                EventKind::Retransmit {
                    state: "ESTABLISHED".into(),
                    syn: false,
                    error: None,
                    segs: Some(1),
                },
                "retransmit in ESTABLISHED",
            ),
            (
                EventKind::ResetSent {
                    reason: None,
                    state: None,
                },
                "reset sent (no reason given) (no socket)",
            ),
            (
                EventKind::ResetSent {
                    reason: Some("NOT_SPECIFIED".into()),
                    state: Some("ESTABLISHED".into()),
                },
                "reset sent (NOT_SPECIFIED) in ESTABLISHED",
            ),
            (
                EventKind::ResetReceived {
                    state: "SYN_SENT".into(),
                },
                "reset received in SYN_SENT",
            ),
            (
                EventKind::SocketError { errno: 111 },
                "socket error ECONNREFUSED",
            ),
            (EventKind::DESTROYED, "socket destroyed"),
            (
                EventKind::Destroy {
                    counts: Some(RetransmitCounts {
                        retransmitted: 0,
                        duplicates: 0,
                    }),
                },
                "socket destroyed",
            ),
            (
                EventKind::Destroy {
                    counts: Some(RetransmitCounts {
                        retransmitted: 2,
                        duplicates: 1,
                    }),
                },
                "socket destroyed (2 segment(s) retransmitted, 1 reported duplicate by the peer)",
            ),
            (
                EventKind::KeepaliveProbe { probes_out: 2 },
                "keepalive probe, 2 unanswered",
            ),
            (
                EventKind::ZeroWindowProbe { probes_out: 0 },
                "zero-window probe, 0 unanswered",
            ),
            (
                EventKind::Drop {
                    reason: Some("NETFILTER_DROP".into()),
                    outgoing: false,
                    tcp_flags: 0x02,
                    location: Some("nf_hook_slow".into()),
                },
                "incoming SYN dropped (NETFILTER_DROP in nf_hook_slow)",
            ),
            (
                EventKind::Drop {
                    reason: None,
                    outgoing: true,
                    tcp_flags: 0x14,
                    location: None,
                },
                "outgoing RST|ACK dropped (no reason given)",
            ),
            (
                EventKind::ResetTtl {
                    ttl: 60,
                    usual_ttl: Some(64),
                },
                "reset arrived with TTL 60 (the connection's other packets: 64)",
            ),
            (
                EventKind::Ftp {
                    from: Side::Client,
                    event: ControlEvent::Command {
                        verb: crate::ftp::Verb::Other("RETR".into()),
                        arg: Some("a\u{1b}b".into()),
                    },
                },
                "ftp client: RETR a\\u{1b}b",
            ),
            (
                EventKind::Ftp {
                    from: Side::Server,
                    event: ControlEvent::DataEndpoint {
                        announced_by: Side::Server,
                        addr: Some("::ffff:192.0.2.1".parse().unwrap()),
                        port: 40001,
                    },
                },
                "ftp server: data endpoint 192.0.2.1:40001",
            ),
            (
                EventKind::Ftp {
                    from: Side::Server,
                    event: ControlEvent::DataEndpoint {
                        announced_by: Side::Server,
                        addr: None,
                        port: 40002,
                    },
                },
                "ftp server: data endpoint port 40002",
            ),
        ];
        for (kind, expected) in words {
            assert_eq!(kind.to_string(), expected);
        }
    }
}

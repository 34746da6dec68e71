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
    /// The kernel freed the socket.
    Destroy,
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
    ControlSegment(Segment),
    /// A reset arrived for this socket: its IP TTL (hop limit) and that of
    /// the connection's last other arriving packet. Never printed: the
    /// session compares them (a reset from a device on the path usually
    /// comes from fewer or more hops away than the peer).
    ResetTtl { ttl: u8, usual_ttl: Option<u8> },
    /// What one side said on the control channel.
    Ftp {
        /// The peer that sent it.
        from: Side,
        event: ControlEvent,
    },
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
/// entry. What a peer chose (FTP words) is made [`printable`].
impl fmt::Display for EventKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let text = match self {
            Self::State { old, new } => format!("state {old} -> {new}"),
            Self::Retransmit {
                state,
                syn,
                error,
                segs,
            } => format!(
                "retransmit{}{} in {state}{}",
                if *syn { " SYN" } else { "" },
                segs.filter(|&n| n > 1)
                    .map(|n| format!(" ({n} segments)"))
                    .unwrap_or_default(),
                error
                    .map(|e| format!(" failed: {}", errno_name(e)))
                    .unwrap_or_default()
            ),
            Self::ResetSent { reason, state } => format!(
                "reset sent ({}){}",
                reason.as_deref().unwrap_or("no reason given"),
                state
                    .as_ref()
                    .map(|s| format!(" in {s}"))
                    .unwrap_or_else(|| " (no socket)".into())
            ),
            Self::ResetReceived { state } => format!("reset received in {state}"),
            Self::SocketError { errno } => {
                format!("socket error {}", errno_name(*errno))
            }
            Self::Destroy => "socket destroyed".into(),
            Self::KeepaliveProbe { probes_out } => {
                format!("keepalive probe, {probes_out} unanswered")
            }
            Self::ZeroWindowProbe { probes_out } => {
                format!("zero-window probe, {probes_out} unanswered")
            }
            Self::Drop {
                reason,
                outgoing,
                tcp_flags,
                location,
            } => format!(
                "{} {} dropped ({}{})",
                if *outgoing { "outgoing" } else { "incoming" },
                tcp_flag_names(*tcp_flags),
                reason.as_deref().unwrap_or("no reason given"),
                location
                    .as_deref()
                    .map(|l| format!(" in {l}"))
                    .unwrap_or_default()
            ),
            Self::Ftp { from, event } => ftp_text(*from, event),
            Self::ControlSegment(segment) => {
                format!("control segment, {} bytes", segment.payload_len)
            }
            Self::ResetTtl { ttl, usual_ttl } => match usual_ttl {
                Some(usual) => {
                    format!(
                        "reset arrived with TTL {ttl} (the connection's other packets: {usual})"
                    )
                }
                None => format!("reset arrived with TTL {ttl}"),
            },
        };
        f.write_str(&text)
    }
}

/// `ftp client: RETR file`, `ftp server: 226 Transfer complete`. The peer
/// chose these bytes: control characters are escaped so they cannot drive
/// the terminal.
fn ftp_text(from: Side, event: &ControlEvent) -> String {
    let said = match event {
        ControlEvent::Command { verb, arg } => match arg {
            Some(arg) => format!("{} {}", verb.as_str(), printable(arg)),
            None => verb.as_str().to_owned(),
        },
        ControlEvent::Reply { code, text } => format!("{code} {}", printable(text)),
        ControlEvent::DataEndpoint {
            addr: Some(addr),
            port,
            ..
        } => format!(
            "data endpoint {}",
            std::net::SocketAddr::new(addr.to_canonical(), *port)
        ),
        ControlEvent::DataEndpoint {
            addr: None, port, ..
        } => format!("data endpoint port {port}"),
        ControlEvent::Encrypted => "now encrypted (TLS)".to_owned(),
    };
    format!("ftp {}: {said}", from.as_str())
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
}

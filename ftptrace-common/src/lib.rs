//! Types and pure functions shared by the ftptrace eBPF programs and the
//! loader.
//!
//! - [`wire`]: the ring buffer records, byte for byte. Every struct is
//!   `#[repr(C)]`, holds no `bool` and spells out its padding; `const`
//!   assertions fail the build if a layout drifts. One [`Endpoints`] struct
//!   carries the addresses and ports of every record kind.
//! - [`config`]: what the loader tells the programs (struct offsets from
//!   BTF, socket timer hooks, the hook ladder's settings).
//! - [`ftp_bytes`]: the little FTP the kernel reads (a 227/229's port, a
//!   `PASS` to mask), as `no_std` functions the host tests compare with the
//!   user-space parser.
#![cfg_attr(not(test), no_std)]

pub mod config;
pub mod ftp_bytes;
pub mod wire;

pub use config::{KernelOffsets, ProbeSettings, RunningTimer, TimerHooks};
pub use wire::{
    CONTROL_CAPTURE_BYTES, CONTROL_HEAD_BYTES, CONTROL_TAIL_BYTES, ControlRecord, ControlSegment,
    Endpoints, Event, EventHeader, SockRecord, direction, record_flags, segment_flags,
};

/// Bumped on any change to the record layouts. Every record carries it, and
/// the loader refuses records of another version instead of misreading them.
/// 4: one [`Endpoints`] struct in every record. 5: control segments carry
/// 384 bytes (the tail of a long segment), the port the kernel marked, and
/// flags for what it marked or refused.
pub const WIRE_VERSION: u16 = 5;

/// Marks an offset that the running kernel's layout does not have.
pub const NO_FIELD: u16 = u16::MAX;

/// Entries in the port role map: one per TCP port.
pub const PORT_MAP_ENTRIES: u32 = 65_536;

/// Announced data ports and endpoints traced at once, all sessions
/// together: user space keeps no more, and clears any the programs marked
/// beyond it.
pub const MAX_MARKS: u32 = 1024;

/// An announced data endpoint not connected to within this long is no
/// longer expected, in nanoseconds.
pub const EXPECTATION_TTL_NS: u64 = 60_000_000_000;

/// `AF_INET` and `AF_INET6` (Linux).
pub const AF_INET: u16 = 2;
pub const AF_INET6: u16 = 10;

/// Role bits stored per port in the port map. Zero means "not FTP".
pub mod port_role {
    pub const CONTROL: u8 = 1;
    pub const ACTIVE_DATA: u8 = 2;
    pub const PASSIVE_DATA: u8 = 4;
    /// A data port announced on a control channel (227/229), traced until
    /// its connection closes or the announcement expires; user space sets
    /// and clears it, as nf_conntrack_ftp's expectations do.
    pub const EXPECTED_DATA: u8 = 8;
    /// A port some client announced for active mode (PORT/EPRT): not traced
    /// by itself, only where `ACTIVE_EXPECT` holds that client's address
    /// with it. Cheap to test first, so other traffic on the port costs one
    /// more lookup only.
    pub const ACTIVE_EXPECTED: u8 = 16;
    /// The roles that trace a port by themselves.
    pub const TRACED: u8 = CONTROL | ACTIVE_DATA | PASSIVE_DATA | EXPECTED_DATA;
}

/// An active-mode endpoint a client announced: its own address (as the
/// connection's packets carry it) and the port. The key of `ACTIVE_EXPECT`.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ActiveEndpoint {
    pub addr: [u8; 16],
    pub port: u16,
    pub family: u16,
    pub _pad: u32,
}

/// `IPPROTO_TCP`, for the tracepoints that also fire for SCTP and MPTCP.
pub const IPPROTO_TCP: u16 = 6;

/// What produced a record. Numbers are part of the wire format: never reuse one.
#[repr(u16)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProbeId {
    /// `sock:inet_sock_set_state(sk, oldstate, newstate)`
    InetSockSetState = 0,
    /// `tcp:tcp_retransmit_skb(sk, skb[, err])`
    TcpRetransmitSkb = 1,
    /// `tcp:tcp_retransmit_synack(sk, req)`: the record describes `req`.
    TcpRetransmitSynack = 2,
    /// `tcp:tcp_send_reset(sk, skb[, reason])`; `sk` may be NULL.
    TcpSendReset = 3,
    /// `tcp:tcp_receive_reset(sk)`
    TcpReceiveReset = 4,
    /// `tcp:tcp_destroy_sock(sk)`
    TcpDestroySock = 5,
    /// A socket error reported (`sock:inet_sk_error_report(sk)`, or
    /// `sock_def_error_report(sk)` through fentry/kprobe, or `sk_err` when a
    /// socket enters CLOSE): `arg1` is `sk_err`.
    InetSkErrorReport = 6,
    /// A keepalive probe sent: `arg1` is `icsk_probes_out` after it.
    KeepaliveProbe = 7,
    /// A zero-window probe sent: `arg1` is `icsk_probes_out` after it.
    ZeroWindowProbe = 8,
    /// `skb:kfree_skb(skb, location[, reason[, rx_sk]])`: a packet dropped;
    /// `arg1` is the drop reason, `arg2` 1 when it was leaving (else
    /// arriving), and `sk` holds `location` (a packet has no socket here).
    KfreeSkb = 9,
    /// The first bytes of an FTP control-channel TCP segment, seen by the
    /// `cgroup_skb` programs on the cgroup v2 root: a [`ControlRecord`],
    /// not an [`Event`].
    ControlSegment = 10,
    /// The first bytes of a DNS answer a socket on this host received (UDP
    /// from port 53), from the `cgroup_skb` ingress program: a
    /// [`ControlRecord`] whose `data` holds the DNS message. Only the
    /// addresses of names it gives are used (a client's server name).
    DnsAnswer = 11,
    /// Plaintext of an FTPS control channel, copied at the TLS library's
    /// read or write call (uprobes): a [`ControlRecord`] whose `seq` counts
    /// the plaintext bytes so far that way, `cookie` 0, and `header.pid_tgid`
    /// the calling thread.
    TlsPlaintext = 12,
    /// A TLS library's certificate check on a control connection's TLS
    /// object (`SSL_get_verify_result`, `gnutls_certificate_verify_peers2/3`,
    /// `gnutls_session_get_verify_cert_status`): `arg1` the library's code
    /// (0: the certificate passed), `arg2` the library (0 OpenSSL, 1 GnuTLS).
    TlsVerify = 13,
    /// A TLS handshake call's end on an FTP connection's TLS object (the
    /// socket the call read, control or data): `arg1` the return value
    /// (OpenSSL 1 done, 0 refused; GnuTLS 0 done, else its error; the
    /// "call again" returns are not sent), `arg2` the library (0 OpenSSL,
    /// 1 GnuTLS).
    TlsHandshake = 14,
    /// A TLS library recorded why a call on an FTP connection failed
    /// (OpenSSL's `ERR_vset_error` with `ERR_LIB_SSL`): `arg1` the reason
    /// (`SSL_R_*`; from 1000, an alert the peer sent, 1000 + its
    /// description), `arg2` the library (0 OpenSSL).
    TlsError = 15,
    /// A TLS library sends an alert on an FTP connection (GnuTLS's
    /// `gnutls_alert_send`): `arg1` the level (1 warning, 2 fatal) << 8 |
    /// the alert's description, `arg2` the library (1 GnuTLS).
    TlsAlertSent = 16,
}

impl TryFrom<u16> for ProbeId {
    type Error = u16;

    fn try_from(value: u16) -> Result<Self, u16> {
        Ok(match value {
            0 => Self::InetSockSetState,
            1 => Self::TcpRetransmitSkb,
            2 => Self::TcpRetransmitSynack,
            3 => Self::TcpSendReset,
            4 => Self::TcpReceiveReset,
            5 => Self::TcpDestroySock,
            6 => Self::InetSkErrorReport,
            7 => Self::KeepaliveProbe,
            8 => Self::ZeroWindowProbe,
            9 => Self::KfreeSkb,
            10 => Self::ControlSegment,
            11 => Self::DnsAnswer,
            12 => Self::TlsPlaintext,
            13 => Self::TlsVerify,
            14 => Self::TlsHandshake,
            15 => Self::TlsError,
            16 => Self::TlsAlertSent,
            other => return Err(other),
        })
    }
}

pub mod maps {
    pub const EVENTS: &str = "EVENTS";
    pub const PORTS: &str = "PORTS";
    pub const OFFSETS: &str = "OFFSETS";
    pub const LOST: &str = "LOST";
    pub const UNREADABLE: &str = "UNREADABLE";
    pub const THROTTLED: &str = "THROTTLED";
    pub const RESCUED: &str = "RESCUED";
    pub const TIMER_HOOKS: &str = "TIMER_HOOKS";
    pub const SETTINGS: &str = "SETTINGS";
    pub const ACTIVE_EXPECT: &str = "ACTIVE_EXPECT";
    pub const DNS_BUDGET: &str = "DNS_BUDGET";
}

/// DNS answers copied per CPU per second at most: a flood of forged
/// answers (any UDP from port 53 to an open socket) must not fill the ring
/// the FTP events need. Past it they are counted in `THROTTLED`.
pub const DNS_ANSWERS_PER_SECOND: u32 = 256;

/// Names of the read-only globals the loader sets before loading: offsets
/// the BTF tracepoint reads a socket at (bytes, `u32` each).
pub mod globals {
    /// `struct sock` → `__sk_common.skc_portpair` (`skc_dport`, `skc_num`).
    pub const SOCK_PORTPAIR: &str = "SOCK_PORTPAIR_OFFSET";
    /// `struct sock` → `__sk_common.skc_family`.
    pub const SOCK_FAMILY: &str = "SOCK_FAMILY_OFFSET";
    /// `struct sock` → `__sk_common.skc_state`.
    pub const SOCK_STATE: &str = "SOCK_STATE_OFFSET";
    /// `struct tcp_sock` → `inet_conn.icsk_inet.inet_sport`.
    pub const TCP_SPORT: &str = "TCP_SPORT_OFFSET";
}

const _: () = assert!(size_of::<ActiveEndpoint>() == 24);

#[cfg(feature = "user")]
mod pod {
    use super::{
        ActiveEndpoint, ControlRecord, Event, EventHeader, KernelOffsets, ProbeSettings, TimerHooks,
    };

    // SAFETY: `#[repr(C)]` plain integers and arrays with explicit padding,
    // valid for any bit pattern.
    unsafe impl aya::Pod for KernelOffsets {}
    unsafe impl aya::Pod for EventHeader {}
    unsafe impl aya::Pod for Event {}
    unsafe impl aya::Pod for TimerHooks {}
    unsafe impl aya::Pod for ProbeSettings {}
    unsafe impl aya::Pod for ControlRecord {}
    unsafe impl aya::Pod for ActiveEndpoint {}
}

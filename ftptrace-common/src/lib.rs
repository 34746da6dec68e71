//! Wire types shared by the ftptrace eBPF programs and the loader.
//!
//! Everything here crosses the kernel/user boundary byte for byte, so every
//! struct is `#[repr(C)]`, holds no `bool`, and spells out its padding. The
//! `const` assertions at the bottom fail the build if a layout drifts.
//!
//! The kernel side stays dumb: raw tracepoint programs filter on ports and
//! copy a few socket fields. Struct offsets come from the running kernel's
//! BTF through [`KernelOffsets`], so one object serves every kernel.
#![no_std]

/// Bumped on any change to the layouts below. Every event carries it, and the
/// loader refuses events of another version instead of misreading them.
pub const WIRE_VERSION: u16 = 3;

/// Marks an offset that the running kernel's layout does not have.
pub const NO_FIELD: u16 = u16::MAX;

/// Entries in the port role map: one per TCP port.
pub const PORT_MAP_ENTRIES: u32 = 65_536;

/// Role bits stored per port in the port map. Zero means "not FTP".
pub mod port_role {
    pub const CONTROL: u8 = 1;
    pub const ACTIVE_DATA: u8 = 2;
    pub const PASSIVE_DATA: u8 = 4;
    /// A data port announced on a control channel (227/229), traced until
    /// its connection closes or the announcement expires; user space sets
    /// and clears it, as nf_conntrack_ftp's expectations do.
    pub const EXPECTED_DATA: u8 = 8;
}

/// `IPPROTO_TCP`, for the tracepoints that also fire for SCTP and MPTCP.
pub const IPPROTO_TCP: u16 = 6;

/// What produced an event. Numbers are part of the wire format: never reuse one.
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
            other => return Err(other),
        })
    }
}

/// Bits of [`SockRecord::flags`].
pub mod record_flags {
    /// `arg1` holds a value the tracepoint passes on this kernel (the
    /// retransmit `err`, the reset `reason`); without it `arg1` means nothing.
    pub const HAS_ARG: u8 = 1;
    /// No socket: addresses come from the packet (a reset for a closed port).
    pub const NO_SOCKET: u8 = 2;
}

/// Offsets into kernel structs, read from BTF by the loader. [`NO_FIELD`]
/// where the running kernel lacks the member.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KernelOffsets {
    /// `struct sock` → `__sk_common.skc_net.net` (a `struct net *`).
    pub sock_net: u16,
    /// `struct net` → `ns.inum`.
    pub net_inum: u16,
    /// `struct sk_buff` → `dev`.
    pub skb_dev: u16,
    /// `struct net_device` → `nd_net.net`.
    pub netdev_net: u16,
    /// `struct sock` → `__sk_common.skc_family` (u16).
    pub sock_family: u16,
    /// `struct sock` → `sk_protocol` (u16).
    pub sock_protocol: u16,
    /// `struct sock` → `sk_err` (i32).
    pub sock_err: u16,
    /// `struct sock` → `__sk_common.skc_state` (u8).
    pub sock_state: u16,
    /// `struct sk_buff` → `head` (pointer).
    pub skb_head: u16,
    /// `struct sk_buff` → `network_header` (u16 offset from `head`).
    pub skb_network_header: u16,
    /// `struct sk_buff` → `transport_header` (u16 offset from `head`).
    pub skb_transport_header: u16,
    /// `struct sk_buff` → `cb` + `struct tcp_skb_cb` → `tcp_gso_segs` (u16):
    /// how many segments a retransmitted skb carries (`tcp_skb_pcount`).
    pub skb_tcp_segs: u16,
    /// `struct sock` → `__sk_common.skc_num` (local port, host order). Read
    /// for time-wait and request sockets only: a full socket clears it when it
    /// enters CLOSE, before the state change is traced.
    pub sock_num: u16,
    /// `struct inet_sock` → `inet_sport` (be16): a full socket's local port.
    pub inet_sport: u16,
    /// `struct sock` → `__sk_common.skc_dport` (be16).
    pub sock_dport: u16,
    /// `struct sock` → `__sk_common.skc_rcv_saddr` (be32).
    pub sock_saddr: u16,
    /// `struct sock` → `__sk_common.skc_daddr` (be32).
    pub sock_daddr: u16,
    /// `struct sock` → `__sk_common.skc_v6_rcv_saddr` (16 bytes).
    pub sock_v6_saddr: u16,
    /// `struct sock` → `__sk_common.skc_v6_daddr` (16 bytes).
    pub sock_v6_daddr: u16,
    /// `struct sk_buff` → `skb_iif` (i32): the interface a packet arrived
    /// on, 0 for one this host is sending.
    pub skb_iif: u16,
    /// `struct inet_connection_sock` → `icsk_probes_out` (u8).
    pub icsk_probes_out: u16,
    /// `struct sock` → `__sk_common.skc_flags`, alias `sk_flags` (unsigned
    /// long; bit 0 is `SOCK_DEAD`).
    pub sock_flags: u16,
}

impl KernelOffsets {
    pub const UNKNOWN: Self = Self {
        sock_net: NO_FIELD,
        net_inum: NO_FIELD,
        skb_dev: NO_FIELD,
        netdev_net: NO_FIELD,
        sock_family: NO_FIELD,
        sock_protocol: NO_FIELD,
        sock_err: NO_FIELD,
        sock_state: NO_FIELD,
        skb_head: NO_FIELD,
        skb_network_header: NO_FIELD,
        skb_transport_header: NO_FIELD,
        skb_tcp_segs: NO_FIELD,
        sock_num: NO_FIELD,
        inet_sport: NO_FIELD,
        sock_dport: NO_FIELD,
        sock_saddr: NO_FIELD,
        sock_daddr: NO_FIELD,
        sock_v6_saddr: NO_FIELD,
        sock_v6_daddr: NO_FIELD,
        skb_iif: NO_FIELD,
        icsk_probes_out: NO_FIELD,
        sock_flags: NO_FIELD,
    };
}

/// What the timer fallback needs to see socket timers fire, filled from
/// /proc/kallsyms and BTF. Probes are visible as `icsk_probes_out` growing
/// across one run of a socket's timer: the keepalive timer (running
/// `tcp_keepalive_timer`) or the retransmit timer (`tcp_write_timer`,
/// which sends zero-window probes).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TimerHooks {
    /// Address of `tcp_keepalive_timer`; 0 disables keepalive probes.
    pub keepalive_fn: u64,
    /// Address of `tcp_write_timer`; 0 disables zero-window probes.
    pub write_timer_fn: u64,
    /// `struct timer_list` → `function`.
    pub timer_function: u16,
    /// The keepalive timer in the socket: `inet_connection_sock` →
    /// `icsk_keepalive_timer` where BTF has it (6.1), else `sock` → `sk_timer`.
    pub sock_timer: u16,
    /// The retransmit timer in the socket: `inet_connection_sock` →
    /// `icsk_retransmit_timer`, or `sock` → `tcp_retransmit_timer` (7.2).
    pub icsk_retransmit_timer: u16,
    pub _pad: u16,
}

/// How the hook ladder set up the probes that have one (one map entry).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProbeSettings {
    /// `LINUX_MIB_TCPKEEPALIVE`: the `mib` argument of `tcp_xmit_probe_skb`
    /// for a keepalive probe (enum values differ between kernels).
    pub keepalive_mib: u32,
    /// `LINUX_MIB_TCPWINPROBE`: the same for a zero-window probe.
    pub window_probe_mib: u32,
    /// 1 when no error-report hook works: socket errors are read from
    /// `sk_err` as a socket enters CLOSE (`inet_sock_set_state`).
    pub error_at_close: u8,
    pub _pad: [u8; 7],
}

/// A socket timer running on a CPU, between `timer_expire_entry` and `_exit`.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RunningTimer {
    pub timer: u64,
    pub sk: u64,
    /// [`ProbeId`] to emit if `icsk_probes_out` grows.
    pub probe: u16,
    pub probes_out: u8,
    pub _pad: [u8; 5],
}

/// Header of every ring buffer record.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EventHeader {
    /// [`WIRE_VERSION`] of the program that wrote it.
    pub version: u16,
    /// A [`ProbeId`].
    pub probe: u16,
    /// CPU the program ran on.
    pub cpu: u32,
    /// `CLOCK_BOOTTIME` in nanoseconds (`bpf_ktime_get_boot_ns`).
    pub boot_ns: u64,
    /// `bpf_get_current_pid_tgid()`: whoever was on the CPU, which is the
    /// socket's owner only in some contexts; the loader decides which.
    pub pid_tgid: u64,
    /// `bpf_get_current_comm()`, same caveat.
    pub comm: [u8; 16],
    /// Inode number of the socket's network namespace; 0 when unknown.
    pub netns: u32,
    pub _pad: u32,
}

/// One ring buffer record: header plus what the program read.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Event {
    pub header: EventHeader,
    pub record: SockRecord,
}

/// A socket (or, for a reset with no socket, a packet) as the program saw it.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SockRecord {
    /// Kernel address of the socket (the request socket for a SYN-ACK
    /// retransmit); 0 for none. An identity only, never printed.
    pub sk: u64,
    /// Probe-specific: old state, retransmit `err`, reset `reason`, `sk_err`.
    pub arg1: i64,
    /// Probe-specific: new state, retransmitted segments.
    pub arg2: i64,
    /// `AF_INET` or `AF_INET6`.
    pub family: u16,
    /// `skc_state` when the event happened; for a dropped packet
    /// ([`ProbeId::KfreeSkb`]) its TCP flags byte instead.
    pub state: u8,
    /// [`record_flags`] bits.
    pub flags: u8,
    /// Local port, host order.
    pub sport: u16,
    /// Remote port, host order.
    pub dport: u16,
    pub saddr4: [u8; 4],
    pub daddr4: [u8; 4],
    pub saddr6: [u8; 16],
    pub daddr6: [u8; 16],
}

/// Payload bytes copied per control-channel segment. FTP commands and
/// replies are short lines (`227 Entering Passive Mode (192,0,2,1,117,50).`
/// is 47 bytes with its CRLF); a longer segment is delivered cut short and
/// user space resynchronises at the next line.
pub const CONTROL_CAPTURE_BYTES: usize = 256;

/// [`ControlSegment::direction`] values.
pub mod direction {
    /// The segment arrived for the socket (`cgroup_skb/ingress`).
    pub const INGRESS: u8 = 0;
    /// The socket sent it (`cgroup_skb/egress`).
    pub const EGRESS: u8 = 1;
}

/// Bits of [`ControlSegment::flags`].
pub mod segment_flags {
    /// The segment started with `PASS` or `ACCT` and an argument, which the
    /// kernel overwrote with `*` up to the line end: the secret never
    /// leaves the kernel.
    pub const REDACTED: u8 = 1;
    /// A reset that arrived: no payload, only `ttl` (the reset's) and
    /// `usual_ttl` (the last other packet's of the connection, 0 unknown).
    pub const RESET_TTL: u8 = 2;
}

/// A ring buffer record of kind [`ProbeId::ControlSegment`].
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ControlRecord {
    pub header: EventHeader,
    pub segment: ControlSegment,
}

/// One TCP segment (one skb: several segments when the kernel merged or
/// will split them) of an FTP control connection, from the socket's point
/// of view. Family, ports and addresses sit at the offsets they have in
/// [`SockRecord`].
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ControlSegment {
    /// Kernel address of the socket, as [`SockRecord::sk`]: links the
    /// segment to the socket's other events. Never printed.
    pub sk: u64,
    /// `bpf_get_socket_cookie`: unique per socket for the whole boot,
    /// never reused, unlike an address.
    pub cookie: u64,
    /// TCP sequence number of the segment (host order); with `SYN` set the
    /// payload starts one further.
    pub seq: u32,
    /// TCP payload bytes in the skb, of which `captured_len` were copied.
    pub payload_len: u32,
    /// `AF_INET` or `AF_INET6`: the packet's IP version.
    pub family: u16,
    /// [`direction`] value.
    pub direction: u8,
    /// TCP flags byte (FIN, SYN, RST, PSH, ACK, URG, ECE, CWR).
    pub tcp_flags: u8,
    /// Local port, host order.
    pub sport: u16,
    /// Remote port, host order.
    pub dport: u16,
    pub saddr4: [u8; 4],
    pub daddr4: [u8; 4],
    pub saddr6: [u8; 16],
    pub daddr6: [u8; 16],
    /// Bytes of `data` that hold payload, at most [`CONTROL_CAPTURE_BYTES`].
    pub captured_len: u16,
    /// [`segment_flags`] bits.
    pub flags: u8,
    /// IPv4 TTL or IPv6 hop limit of an arriving reset ([`segment_flags::RESET_TTL`]).
    pub ttl: u8,
    /// The same of the connection's last other arriving packet; 0 when unknown.
    pub usual_ttl: u8,
    pub _pad: [u8; 3],
    /// The first `captured_len` payload bytes; the rest is unspecified.
    pub data: [u8; CONTROL_CAPTURE_BYTES],
}

pub mod maps {
    pub const EVENTS: &str = "EVENTS";
    pub const PORTS: &str = "PORTS";
    pub const OFFSETS: &str = "OFFSETS";
    pub const LOST: &str = "LOST";
    pub const TIMER_HOOKS: &str = "TIMER_HOOKS";
    pub const SETTINGS: &str = "SETTINGS";
}

const _: () = {
    assert!(size_of::<KernelOffsets>() == 44);
    assert!(size_of::<ProbeSettings>() == 16);
    assert!(size_of::<EventHeader>() == 48);
    assert!(core::mem::offset_of!(EventHeader, boot_ns) == 8);
    assert!(core::mem::offset_of!(EventHeader, netns) == 40);
    assert!(size_of::<SockRecord>() == 72);
    assert!(size_of::<Event>() == 48 + 72);
    assert!(size_of::<Event>().is_multiple_of(8));
    assert!(size_of::<TimerHooks>() == 24);
    assert!(size_of::<RunningTimer>() == 24);
    // Family, ports and addresses where a SockRecord has them.
    assert!(core::mem::offset_of!(ControlSegment, family) == 24);
    assert!(core::mem::offset_of!(ControlSegment, sport) == 28);
    assert!(core::mem::offset_of!(ControlSegment, saddr4) == 32);
    assert!(core::mem::offset_of!(ControlSegment, daddr6) == 56);
    assert!(core::mem::offset_of!(ControlSegment, captured_len) == 72);
    assert!(core::mem::offset_of!(ControlSegment, data) == 80);
    assert!(size_of::<ControlSegment>() == 80 + CONTROL_CAPTURE_BYTES);
    assert!(size_of::<ControlRecord>() == 48 + 80 + CONTROL_CAPTURE_BYTES);
    assert!(size_of::<ControlRecord>().is_multiple_of(8));
    // Distinct sizes: a record's length alone tells the kinds apart too.
    assert!(size_of::<ControlRecord>() != size_of::<Event>());
    // `captured_len` is a u16.
    assert!(CONTROL_CAPTURE_BYTES <= u16::MAX as usize);
};

#[cfg(feature = "user")]
mod pod {
    use super::{ControlRecord, Event, KernelOffsets, ProbeSettings, TimerHooks};

    // SAFETY: both are `#[repr(C)]` plain integers and arrays with explicit
    // padding, valid for any bit pattern.
    unsafe impl aya::Pod for KernelOffsets {}
    unsafe impl aya::Pod for Event {}
    unsafe impl aya::Pod for TimerHooks {}
    unsafe impl aya::Pod for ProbeSettings {}
    unsafe impl aya::Pod for ControlRecord {}
}

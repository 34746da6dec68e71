//! Wire types shared by the ftptrace eBPF programs and the loader.
//!
//! Everything here crosses the kernel/user boundary byte for byte, so every
//! struct is `#[repr(C)]`, holds no `bool`, and spells out its padding. The
//! `const` assertions at the bottom fail the build if a layout drifts.
//!
//! The kernel side stays dumb: it filters on ports and copies the raw
//! tracepoint record. Field offsets come from the running kernel's tracepoint
//! `format` files and BTF, so one object serves every kernel layout.
#![no_std]

/// Bumped on any change to the layouts below. Every event carries it, and the
/// loader refuses events of another version instead of misreading them.
pub const WIRE_VERSION: u16 = 1;

/// How many bytes of a tracepoint record the kernel copies per event. The
/// loader checks that every record it needs fits before it attaches.
pub const RECORD_CAPACITY: usize = 128;

/// Marks an offset that the running kernel's layout does not have.
pub const NO_FIELD: u16 = u16::MAX;

/// Entries in the port role map: one per TCP port.
pub const PORT_MAP_ENTRIES: u32 = 65_536;

/// Role bits stored per port in the port map. Zero means "not FTP".
pub mod port_role {
    pub const CONTROL: u8 = 1;
    pub const ACTIVE_DATA: u8 = 2;
    pub const PASSIVE_DATA: u8 = 4;
}

/// `IPPROTO_TCP`, for the tracepoints that also fire for SCTP and MPTCP.
pub const IPPROTO_TCP: u16 = 6;

/// What produced an event. Numbers are part of the wire format: never reuse
/// one. The first [`TRACEPOINT_PROBES`] are classic tracepoints whose records
/// are copied raw; the others carry a record built by the program.
#[repr(u16)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProbeId {
    /// `sock:inet_sock_set_state`
    InetSockSetState = 0,
    /// `tcp:tcp_retransmit_skb`
    TcpRetransmitSkb = 1,
    /// `tcp:tcp_retransmit_synack`
    TcpRetransmitSynack = 2,
    /// `tcp:tcp_send_reset`
    TcpSendReset = 3,
    /// `tcp:tcp_receive_reset`
    TcpReceiveReset = 4,
    /// `tcp:tcp_destroy_sock`
    TcpDestroySock = 5,
    /// `sock:inet_sk_error_report`, as a raw tracepoint: its record has no
    /// socket pointer, so the program reads the socket itself (see
    /// [`SockErrorRecord`]).
    InetSkErrorReport = 6,
}

/// Classic tracepoint probes (ids `0..TRACEPOINT_PROBES`), each with a
/// [`TracepointConfig`] slot.
pub const TRACEPOINT_PROBES: u32 = 6;

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
            other => return Err(other),
        })
    }
}

/// Where a port lives in a tracepoint record.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PortField {
    /// Byte offset in the record, or [`NO_FIELD`].
    pub offset: u16,
    /// 1 when stored in network byte order (inside a sockaddr), 0 when the
    /// tracepoint already converted it to host order.
    pub network_order: u8,
    pub _pad: u8,
}

impl PortField {
    pub const ABSENT: Self = Self {
        offset: NO_FIELD,
        network_order: 0,
        _pad: 0,
    };
}

/// Per-tracepoint layout facts the kernel program needs to filter and to find
/// the socket, filled by the loader from the `format` file.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TracepointConfig {
    pub sport: PortField,
    pub dport: PortField,
    /// Offset of a `protocol` field to require `IPPROTO_TCP`, or [`NO_FIELD`].
    pub protocol_offset: u16,
    /// Size of that field in bytes (1 or 2).
    pub protocol_size: u16,
    /// Offset of the `skaddr` pointer, or [`NO_FIELD`].
    pub skaddr_offset: u16,
    /// Offset of the `skbaddr` pointer, or [`NO_FIELD`]; used for the network
    /// namespace of packets that have no socket (a reset for a closed port).
    pub skbaddr_offset: u16,
    /// 1 once the loader has filled this slot; an unfilled slot emits nothing.
    pub enabled: u16,
    pub _pad: u16,
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
    /// `struct inet_sock` → `inet_sport` (be16).
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
    pub _pad: u16,
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
        inet_sport: NO_FIELD,
        sock_dport: NO_FIELD,
        sock_saddr: NO_FIELD,
        sock_daddr: NO_FIELD,
        sock_v6_saddr: NO_FIELD,
        sock_v6_daddr: NO_FIELD,
        _pad: 0,
    };
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

/// One ring buffer record: header plus the first [`RECORD_CAPACITY`] bytes of
/// the tracepoint record (or a [`SockErrorRecord`]).
#[repr(C)]
#[derive(Clone, Copy)]
pub struct Event {
    pub header: EventHeader,
    pub record: [u8; RECORD_CAPACITY],
}

/// Record written by the `inet_sk_error_report` program, read straight from
/// the socket. Addresses and ports are in network byte order, as stored.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SockErrorRecord {
    pub skaddr: u64,
    pub error: i32,
    pub family: u16,
    pub protocol: u16,
    pub sport_be: u16,
    pub dport_be: u16,
    pub saddr4: [u8; 4],
    pub daddr4: [u8; 4],
    pub saddr6: [u8; 16],
    pub daddr6: [u8; 16],
    pub _pad: u32,
}

/// Names of the maps in the eBPF object, shared so a rename breaks the build.
pub mod maps {
    pub const EVENTS: &str = "EVENTS";
    pub const PORTS: &str = "PORTS";
    pub const TRACEPOINTS: &str = "TRACEPOINTS";
    pub const OFFSETS: &str = "OFFSETS";
    pub const LOST: &str = "LOST";
}

const _: () = {
    assert!(size_of::<PortField>() == 4);
    assert!(size_of::<TracepointConfig>() == 20);
    assert!(size_of::<KernelOffsets>() == 28);
    assert!(size_of::<EventHeader>() == 48);
    assert!(core::mem::offset_of!(EventHeader, boot_ns) == 8);
    assert!(core::mem::offset_of!(EventHeader, netns) == 40);
    assert!(size_of::<Event>() == 48 + RECORD_CAPACITY);
    assert!(size_of::<Event>().is_multiple_of(8));
    assert!(size_of::<SockErrorRecord>() == 64);
    assert!(size_of::<SockErrorRecord>() <= RECORD_CAPACITY);
};

#[cfg(feature = "user")]
mod pod {
    use super::{EventHeader, KernelOffsets, TracepointConfig};

    // SAFETY: all three are `#[repr(C)]` plain integers and arrays with
    // explicit padding, valid for any bit pattern.
    unsafe impl aya::Pod for TracepointConfig {}
    unsafe impl aya::Pod for KernelOffsets {}
    unsafe impl aya::Pod for EventHeader {}
}

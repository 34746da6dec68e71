//! The ring buffer records, byte for byte: a header, then a socket record
//! ([`Event`]) or a control-channel segment ([`ControlRecord`]). Both carry
//! the connection's addresses and ports as one [`Endpoints`], seen from the
//! socket's side (local, remote), so user space reads them one way.

/// Header of every ring buffer record.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EventHeader {
    /// [`crate::WIRE_VERSION`] of the program that wrote it.
    pub version: u16,
    /// A [`crate::ProbeId`].
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

/// A connection's two ends from this host's socket: every record kind
/// carries one. An IPv4 address fills the first 4 bytes of its field.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Endpoints {
    /// `AF_INET` or `AF_INET6`.
    pub family: u16,
    /// Host order.
    pub local_port: u16,
    pub remote_port: u16,
    pub _pad: u16,
    pub local_addr: [u8; 16],
    pub remote_addr: [u8; 16],
}

impl Endpoints {
    pub const NONE: Self = Self {
        family: 0,
        local_port: 0,
        remote_port: 0,
        _pad: 0,
        local_addr: [0; 16],
        remote_addr: [0; 16],
    };

    /// A packet's ends from its socket's side: an arriving packet's
    /// destination is the local end, a leaving one's source.
    #[inline(always)]
    pub fn of_packet(
        family: u16,
        (src_addr, src_port): ([u8; 16], u16),
        (dst_addr, dst_port): ([u8; 16], u16),
        arriving: bool,
    ) -> Self {
        let ((local_addr, local_port), (remote_addr, remote_port)) = if arriving {
            ((dst_addr, dst_port), (src_addr, src_port))
        } else {
            ((src_addr, src_port), (dst_addr, dst_port))
        };
        Self {
            family,
            local_port,
            remote_port,
            _pad: 0,
            local_addr,
            remote_addr,
        }
    }
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
    pub ends: Endpoints,
    /// `skc_state` when the event happened; for a dropped packet
    /// ([`crate::ProbeId::KfreeSkb`]) its TCP flags byte instead.
    pub state: u8,
    /// [`record_flags`] bits.
    pub flags: u8,
    pub _pad: [u8; 6],
}

/// Bits of [`SockRecord::flags`].
pub mod record_flags {
    /// `arg1` holds a value the tracepoint passes on this kernel (the
    /// retransmit `err`, the reset `reason`); without it `arg1` means nothing.
    pub const HAS_ARG: u8 = 1;
    /// No socket: addresses come from the packet (a reset for a closed port).
    pub const NO_SOCKET: u8 = 2;
}

/// Payload bytes copied per control-channel segment: its head, and of a
/// segment longer than [`CONTROL_CAPTURE_BYTES`] its tail. FTP commands and
/// replies are short lines (`227 Entering Passive Mode (192,0,2,1,117,50).`
/// is 47 bytes with its CRLF); a multi-line greeting can pass 256 bytes, and
/// its last line, the one that ends the reply, is then in the tail.
pub const CONTROL_HEAD_BYTES: usize = 256;
/// At most this many bytes of a long segment's end.
pub const CONTROL_TAIL_BYTES: usize = 128;
/// The room for both in a record.
pub const CONTROL_CAPTURE_BYTES: usize = CONTROL_HEAD_BYTES + CONTROL_TAIL_BYTES;

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
    /// The segment is a server's `227`/`229` and the program marked its
    /// port (`marked_port`) as an expected passive data port.
    pub const MARKED: u8 = 4;
    /// The segment is a client's `PORT`/`EPRT` and the program added its
    /// endpoint (the client's address, `marked_port`) to `ACTIVE_EXPECT`.
    pub const ACTIVE_MARKED: u8 = 8;
    /// The segment was longer than the record holds: `data` is its first
    /// [`super::CONTROL_HEAD_BYTES`] and then its last bytes, with the ones
    /// in between lost.
    pub const TAIL_APART: u8 = 32;
}

/// A ring buffer record of kind [`crate::ProbeId::ControlSegment`].
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ControlRecord {
    pub header: EventHeader,
    pub segment: ControlSegment,
}

/// One TCP segment (one skb: several segments when the kernel merged or
/// will split them) of an FTP control connection, from the socket's point
/// of view.
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
    pub ends: Endpoints,
    /// [`direction`] value.
    pub direction: u8,
    /// TCP flags byte (FIN, SYN, RST, PSH, ACK, URG, ECE, CWR).
    pub tcp_flags: u8,
    /// [`segment_flags`] bits.
    pub flags: u8,
    /// IPv4 TTL or IPv6 hop limit of an arriving reset ([`segment_flags::RESET_TTL`]).
    pub ttl: u8,
    /// The same of the connection's last other arriving packet; 0 when unknown.
    pub usual_ttl: u8,
    pub _pad: u8,
    /// Bytes of `data` that hold payload, at most [`CONTROL_CAPTURE_BYTES`].
    pub captured_len: u16,
    /// The port a mark flag in `flags` is about; 0 for none.
    pub marked_port: u16,
    pub _pad2: [u8; 6],
    /// The first `captured_len` payload bytes (see
    /// [`segment_flags::TAIL_APART`]); the rest is unspecified.
    pub data: [u8; CONTROL_CAPTURE_BYTES],
}

const _: () = {
    use core::mem::offset_of;
    assert!(size_of::<EventHeader>() == 48);
    assert!(offset_of!(EventHeader, boot_ns) == 8);
    assert!(offset_of!(EventHeader, netns) == 40);
    assert!(size_of::<Endpoints>() == 40);
    assert!(offset_of!(Endpoints, local_addr) == 8);
    assert!(size_of::<SockRecord>() == 72);
    assert!(offset_of!(SockRecord, ends) == 24);
    assert!(size_of::<Event>() == 48 + 72);
    assert!(size_of::<Event>().is_multiple_of(8));
    assert!(offset_of!(ControlSegment, ends) == 24);
    assert!(offset_of!(ControlSegment, captured_len) == 70);
    assert!(offset_of!(ControlSegment, marked_port) == 72);
    assert!(offset_of!(ControlSegment, data) == 80);
    assert!(size_of::<ControlSegment>() == 80 + CONTROL_CAPTURE_BYTES);
    assert!(size_of::<ControlRecord>() == 512);
    assert!(size_of::<ControlRecord>().is_multiple_of(8));
    // Distinct sizes: a record's length alone tells the kinds apart too.
    assert!(size_of::<ControlRecord>() != size_of::<Event>());
    // `captured_len` is a u16; the programs bound lengths with masks.
    assert!(CONTROL_CAPTURE_BYTES <= u16::MAX as usize);
    assert!(CONTROL_HEAD_BYTES.is_power_of_two() && CONTROL_TAIL_BYTES.is_power_of_two());
};

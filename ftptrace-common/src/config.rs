//! What the loader tells the programs before attaching them: offsets into
//! kernel structs (from the running kernel's BTF, so one object serves every
//! kernel), the socket timers of the probe fallback, the hook ladder's
//! choices. One map entry each.

use crate::NO_FIELD;

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
    /// `struct tcp_sock` → `rcv_nxt`, `rcv_wup`, `rcv_wnd`, `snd_una`,
    /// `write_seq`, `max_window` (u32 each): what TCP checks an arriving
    /// segment against, so that the control channel's bytes are read only
    /// as TCP accepts them.
    pub tcp_rcv_nxt: u16,
    pub tcp_rcv_wup: u16,
    pub tcp_rcv_wnd: u16,
    pub tcp_snd_una: u16,
    pub tcp_write_seq: u16,
    pub tcp_max_window: u16,
    /// `struct tcp_sock` → `total_retrans` (u32): segments the socket
    /// retransmitted, and `dsack_dups` (u32): duplicates its peer reported
    /// (D-SACK). Read as a socket is freed: retransmits the peer got twice
    /// were spurious, not loss.
    pub tcp_total_retrans: u16,
    pub tcp_dsack_dups: u16,
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
        tcp_rcv_nxt: NO_FIELD,
        tcp_rcv_wup: NO_FIELD,
        tcp_rcv_wnd: NO_FIELD,
        tcp_snd_una: NO_FIELD,
        tcp_write_seq: NO_FIELD,
        tcp_max_window: NO_FIELD,
        tcp_total_retrans: NO_FIELD,
        tcp_dsack_dups: NO_FIELD,
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
    /// How long an announced active-mode endpoint stays expected, in ns.
    pub expect_ttl_ns: u64,
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

const _: () = {
    assert!(size_of::<KernelOffsets>() == 60);
    assert!(size_of::<ProbeSettings>() == 24);
    assert!(size_of::<TimerHooks>() == 24);
    assert!(size_of::<RunningTimer>() == 24);
};

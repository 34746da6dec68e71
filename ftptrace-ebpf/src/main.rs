//! ftptrace's kernel side: capture, filter, emit.
//!
//! Raw tracepoint programs, one per TCP tracepoint. Each decides "is this an
//! FTP connection?" with two port reads and two array lookups, then copies a
//! few fields of the socket into the ring buffer. Raw tracepoints, not the
//! classic kind: they are cheaper per hit, and the kernel skips a classic
//! tracepoint program silently and uncounted whenever any other tracing
//! program is running on the CPU, while a raw one is skipped only when the
//! same program is interrupted by itself, and then counted
//! (`recursion_misses`). (A kernel that runs no program at all on top of
//! some task, as the sandbox hosts this is built on do for their agent,
//! loses those hits unseen by anyone but ftrace: `tests/src/blind_spot.rs`.)
//!
//! Struct offsets come from the `OFFSETS` map that the loader fills from BTF
//! before attaching, so this one object serves every kernel. All decoding
//! (names, addresses, who owns the socket) happens in user space.
//!
//! The FTP control channel's bytes come from two `cgroup_skb` programs on
//! the cgroup v2 root, which the kernel runs for every packet a socket of
//! any process sends or receives, in every network namespace; they copy the
//! head of each control-connection segment and never drop anything. The
//! ingress one also notes the TTL of every arriving packet of a traced
//! connection, so that a reset that arrives can be told apart by its TTL.
#![no_std]
#![no_main]

use aya_ebpf::{
    EbpfContext as _,
    bindings::BPF_RB_NO_WAKEUP,
    helpers::{
        bpf_get_current_comm, bpf_get_current_pid_tgid, bpf_get_smp_processor_id,
        bpf_get_socket_cookie, bpf_ktime_get_boot_ns, bpf_probe_read_kernel, bpf_skb_load_bytes,
    },
    macros::{cgroup_skb, fentry, kprobe, map, raw_tracepoint},
    maps::{Array, LruHashMap, PerCpuArray, RingBuf},
    programs::{FEntryContext, ProbeContext, RawTracePointContext, SkBuffContext},
};
use ftptrace_common::{
    CONTROL_CAPTURE_BYTES, ControlRecord, Event, EventHeader, IPPROTO_TCP, KernelOffsets, NO_FIELD,
    PORT_MAP_ENTRIES, ProbeId, ProbeSettings, RunningTimer, SockRecord, TimerHooks, WIRE_VERSION,
    direction, port_role, record_flags, segment_flags,
};

/// Events to user space.
#[map]
static EVENTS: RingBuf = RingBuf::with_byte_size(1 << 20, 0);

/// Port → role bits (`ftptrace_common::port_role`); 0 means not FTP.
#[map]
static PORTS: Array<u8> = Array::with_max_entries(PORT_MAP_ENTRIES, 0);

/// Kernel struct offsets from BTF (one entry).
#[map]
static OFFSETS: Array<KernelOffsets> = Array::with_max_entries(1, 0);

/// Socket timer addresses and offsets for the timer fallback (one entry).
#[map]
static TIMER_HOOKS: Array<TimerHooks> = Array::with_max_entries(1, 0);

/// What the hook ladder chose, for the programs that depend on it (one entry).
#[map]
static SETTINGS: Array<ProbeSettings> = Array::with_max_entries(1, 0);

/// The FTP socket timer running on each CPU, if any.
#[map]
static RUNNING_TIMER: PerCpuArray<RunningTimer> = PerCpuArray::with_max_entries(1, 0);

/// The TTL (hop limit) of the last packet that arrived on each traced
/// connection, by its addresses and ports: what a reset's TTL is compared
/// with. By packet, not socket: a passive connection's handshake arrives at
/// the listener. LRU: a closed connection's entry just ages out.
#[map]
static PEER_TTL: LruHashMap<Tuple, u8> = LruHashMap::with_max_entries(16384, 0);

/// An arriving packet's source and destination (IPv4 in the first four
/// bytes of each address).
#[repr(C)]
#[derive(Clone, Copy)]
struct Tuple {
    remote: [u8; 16],
    local: [u8; 16],
    remote_port: u16,
    local_port: u16,
}

/// Ring buffer reservations that failed: events lost, per CPU.
#[map]
static LOST: PerCpuArray<u64> = PerCpuArray::with_max_entries(1, 0);

const AF_INET: u16 = 2;
const AF_INET6: u16 = 10;
// include/net/tcp_states.h, unchanged since they were introduced.
const TCP_TIME_WAIT: u8 = 6;
const TCP_LISTEN: u8 = 10;
const TCP_CLOSE: i32 = 7;
const TCP_NEW_SYN_RECV: u8 = 12;

// Arguments are the tracepoints' TP_PROTO. Where a kernel version added an
// argument, there are two programs: a raw tracepoint program may not read
// more arguments than the tracepoint has, and the loader picks by the
// tracepoint's `format` file.

/// `inet_sock_set_state(const struct sock *sk, int oldstate, int newstate)`
#[raw_tracepoint(tracepoint = "inet_sock_set_state")]
pub fn inet_sock_set_state(ctx: RawTracePointContext) -> i32 {
    let sk: u64 = ctx.arg(0);
    let old: i32 = ctx.arg(1);
    let new: i32 = ctx.arg(2);
    let _ = try_sock_event(
        ProbeId::InetSockSetState,
        sk,
        true,
        i64::from(old),
        i64::from(new),
        0,
    );
    if new == TCP_CLOSE && SETTINGS.get(0).is_some_and(|s| s.error_at_close != 0) {
        let _ = try_error_at_close(sk);
    }
    0
}

/// `tcp_retransmit_skb(const struct sock *sk, const struct sk_buff *skb)` (before 6.17)
#[raw_tracepoint(tracepoint = "tcp_retransmit_skb")]
pub fn tcp_retransmit_skb(ctx: RawTracePointContext) -> i32 {
    let sk: u64 = ctx.arg(0);
    let segs = skb_segs(ctx.arg(1));
    let _ = try_sock_event(ProbeId::TcpRetransmitSkb, sk, false, 0, segs, 0);
    0
}

/// `tcp_retransmit_skb(const struct sock *sk, const struct sk_buff *skb, int err)`
#[raw_tracepoint(tracepoint = "tcp_retransmit_skb")]
pub fn tcp_retransmit_skb_err(ctx: RawTracePointContext) -> i32 {
    let sk: u64 = ctx.arg(0);
    let err: i32 = ctx.arg(2);
    let segs = skb_segs(ctx.arg(1));
    let _ = try_sock_event(
        ProbeId::TcpRetransmitSkb,
        sk,
        false,
        i64::from(err),
        segs,
        record_flags::HAS_ARG,
    );
    0
}

/// `tcp_retransmit_synack(const struct sock *sk, const struct request_sock *req)`.
/// A request socket begins with the same `struct sock_common` as a socket.
#[raw_tracepoint(tracepoint = "tcp_retransmit_synack")]
pub fn tcp_retransmit_synack(ctx: RawTracePointContext) -> i32 {
    let req: u64 = ctx.arg(1);
    let _ = try_sock_event(ProbeId::TcpRetransmitSynack, req, false, 0, 1, 0);
    0
}

/// `tcp_send_reset(const struct sock *sk, const struct sk_buff *skb)` (before 6.10)
#[raw_tracepoint(tracepoint = "tcp_send_reset")]
pub fn tcp_send_reset(ctx: RawTracePointContext) -> i32 {
    let _ = try_send_reset(ctx.arg(0), ctx.arg(1), 0, 0);
    0
}

/// `tcp_send_reset(const struct sock *sk, const struct sk_buff *skb, enum sk_rst_reason reason)`
#[raw_tracepoint(tracepoint = "tcp_send_reset")]
pub fn tcp_send_reset_reason(ctx: RawTracePointContext) -> i32 {
    let reason: u32 = ctx.arg(2);
    let _ = try_send_reset(
        ctx.arg(0),
        ctx.arg(1),
        i64::from(reason),
        record_flags::HAS_ARG,
    );
    0
}

/// `tcp_receive_reset(struct sock *sk)`
#[raw_tracepoint(tracepoint = "tcp_receive_reset")]
pub fn tcp_receive_reset(ctx: RawTracePointContext) -> i32 {
    let sk: u64 = ctx.arg(0);
    let _ = try_sock_event(ProbeId::TcpReceiveReset, sk, false, 0, 0, 0);
    0
}

/// `tcp_destroy_sock(struct sock *sk)`
#[raw_tracepoint(tracepoint = "tcp_destroy_sock")]
pub fn tcp_destroy_sock(ctx: RawTracePointContext) -> i32 {
    let sk: u64 = ctx.arg(0);
    let _ = try_sock_event(ProbeId::TcpDestroySock, sk, false, 0, 0, 0);
    0
}

/// `inet_sk_error_report(const struct sock *sk)` (5.13+); `arg1` is `sk_err`.
#[raw_tracepoint(tracepoint = "inet_sk_error_report")]
pub fn inet_sk_error_report(ctx: RawTracePointContext) -> i32 {
    let sk: u64 = ctx.arg(0);
    let _ = try_error_report(sk);
    0
}

/// `sock_def_error_report(struct sock *sk)`, through fentry: the socket's
/// error callback, where kernels before 5.13 have no tracepoint.
#[fentry(function = "sock_def_error_report")]
pub fn fentry_error_report(ctx: FEntryContext) -> i32 {
    let sk: u64 = ctx.arg(0);
    let _ = try_error_report(sk);
    0
}

/// `sock_def_error_report(struct sock *sk)`, through a kprobe.
#[kprobe]
pub fn kprobe_error_report(ctx: ProbeContext) -> u32 {
    if let Some(sk) = ctx.arg::<u64>(0) {
        let _ = try_error_report(sk);
    }
    0
}

/// `tcp_xmit_probe_skb(struct sock *sk, int urgent, int mib)`, through
/// fentry: every keepalive and zero-window probe leaves through it, right
/// where the kernel counts it in TCPKeepAlive or TCPWinProbe (`mib`).
#[fentry(function = "tcp_xmit_probe_skb")]
pub fn fentry_xmit_probe(ctx: FEntryContext) -> i32 {
    let sk: u64 = ctx.arg(0);
    let mib: i32 = ctx.arg(2);
    let _ = try_xmit_probe(sk, mib);
    0
}

/// `tcp_xmit_probe_skb(struct sock *sk, int urgent, int mib)`, through a kprobe.
#[kprobe]
pub fn kprobe_xmit_probe(ctx: ProbeContext) -> u32 {
    if let (Some(sk), Some(mib)) = (ctx.arg::<u64>(0), ctx.arg::<i32>(2)) {
        let _ = try_xmit_probe(sk, mib);
    }
    0
}

/// A probe about to be sent: `icsk_probes_out` counts it only afterwards.
fn try_xmit_probe(sk: u64, mib: i32) -> Result<(), i64> {
    let settings = SETTINGS.get(0).ok_or(0)?;
    let probe = if mib as u32 == settings.keepalive_mib {
        ProbeId::KeepaliveProbe
    } else if mib as u32 == settings.window_probe_mib {
        ProbeId::ZeroWindowProbe
    } else {
        return Ok(());
    };
    let o = OFFSETS.get(0).ok_or(0)?;
    let probes_out: u8 = read_kernel(sk, o.icsk_probes_out)?;
    try_sock_event(probe, sk, false, i64::from(probes_out) + 1, 0, 0)
}

/// `timer_expire_entry(struct timer_list *timer, unsigned long baseclk)`.
/// Fires for every timer on the system: the function pointer comparison
/// comes first, and anything else costs one read.
#[raw_tracepoint(tracepoint = "timer_expire_entry")]
pub fn timer_expire_entry(ctx: RawTracePointContext) -> i32 {
    let timer: u64 = ctx.arg(0);
    let _ = try_timer_entry(timer);
    0
}

/// `timer_expire_exit(struct timer_list *timer)`: a probe was sent if the
/// socket's unanswered-probe count grew while its timer ran.
#[raw_tracepoint(tracepoint = "timer_expire_exit")]
pub fn timer_expire_exit(ctx: RawTracePointContext) -> i32 {
    let timer: u64 = ctx.arg(0);
    let _ = try_timer_exit(timer);
    0
}

fn try_timer_entry(timer: u64) -> Result<(), i64> {
    let hooks = TIMER_HOOKS.get(0).ok_or(0)?;
    let function: u64 = read_kernel(timer, hooks.timer_function)?;
    let (probe, sk) = if function != 0 && function == hooks.keepalive_fn {
        (
            ProbeId::KeepaliveProbe,
            timer.wrapping_sub(u64::from(hooks.sock_timer)),
        )
    } else if function != 0 && function == hooks.write_timer_fn {
        (
            ProbeId::ZeroWindowProbe,
            timer.wrapping_sub(u64::from(hooks.icsk_retransmit_timer)),
        )
    } else {
        return Ok(());
    };
    let o = OFFSETS.get(0).ok_or(0)?;
    let sport = u16::from_be(read_kernel(sk, o.inet_sport)?);
    let dport = u16::from_be(read_kernel(sk, o.sock_dport)?);
    if !is_ftp(sport) && !is_ftp(dport) {
        return Ok(());
    }
    let probes_out: u8 = read_kernel(sk, o.icsk_probes_out)?;
    if let Some(slot) = RUNNING_TIMER.get_ptr_mut(0) {
        // SAFETY: per-CPU slot; timer callbacks do not nest on a CPU.
        unsafe {
            *slot = RunningTimer {
                timer,
                sk,
                probe: probe as u16,
                probes_out,
                _pad: [0; 5],
            };
        }
    }
    Ok(())
}

fn try_timer_exit(timer: u64) -> Result<(), i64> {
    let Some(slot) = RUNNING_TIMER.get_ptr_mut(0) else {
        return Ok(());
    };
    // SAFETY: per-CPU slot, see `try_timer_entry`.
    let running = unsafe { *slot };
    if running.timer != timer || timer == 0 {
        return Ok(());
    }
    // SAFETY: as above.
    unsafe { (*slot).timer = 0 };
    let o = OFFSETS.get(0).ok_or(0)?;
    let probes_out: u8 = read_kernel(running.sk, o.icsk_probes_out)?;
    if probes_out <= running.probes_out {
        return Ok(());
    }
    let probe = if running.probe == ProbeId::KeepaliveProbe as u16 {
        ProbeId::KeepaliveProbe
    } else {
        ProbeId::ZeroWindowProbe
    };
    try_sock_event(probe, running.sk, false, i64::from(probes_out), 0, 0)
}

/// `kfree_skb(struct sk_buff *skb, void *location)` (before 5.17: no reason).
#[raw_tracepoint(tracepoint = "kfree_skb")]
pub fn kfree_skb(ctx: RawTracePointContext) -> i32 {
    let _ = try_drop(ctx.arg(0), ctx.arg(1), 0, 0);
    0
}

/// `kfree_skb(struct sk_buff *skb, void *location, enum skb_drop_reason reason, ...)`
#[raw_tracepoint(tracepoint = "kfree_skb")]
pub fn kfree_skb_reason(ctx: RawTracePointContext) -> i32 {
    let reason: u32 = ctx.arg(2);
    let _ = try_drop(
        ctx.arg(0),
        ctx.arg(1),
        i64::from(reason),
        record_flags::HAS_ARG,
    );
    0
}

const IPPROTO_TCP_U8: u8 = 6;
const TCP_RST: u8 = 0x04;

/// A dropped packet of an FTP connection, described by its headers, with
/// the address of the code that freed it (`location`) where a socket record
/// has the socket. Fires for every dropped packet on the host: the port
/// test comes first.
#[inline(always)]
fn try_drop(skb: u64, location: u64, reason: i64, flags: u8) -> Result<(), i64> {
    let o = OFFSETS.get(0).ok_or(0)?;
    // Arrived on an interface: the destination is this host's end.
    let arriving = read_kernel::<i32>(skb, o.skb_iif).unwrap_or(0) != 0;
    let direction = if arriving { 0 } else { 1 };
    if let Some(mut record) = packet_record(skb, arriving, reason, direction, flags)? {
        record.sk = location;
        emit(ProbeId::KfreeSkb, skb_netns(skb), record);
    }
    Ok(())
}

fn try_error_report(sk: u64) -> Result<(), i64> {
    let o = OFFSETS.get(0).ok_or(0)?;
    let err: i32 = read_kernel(sk, o.sock_err)?;
    try_sock_event(ProbeId::InetSkErrorReport, sk, true, i64::from(err), 0, 0)
}

/// The fallback without an error-report hook: a socket entering CLOSE with
/// `sk_err` set had its error reported just before (reset, timeout), unless
/// nobody holds it any more (`SOCK_DEAD`: the kernel reports nothing then).
fn try_error_at_close(sk: u64) -> Result<(), i64> {
    let o = OFFSETS.get(0).ok_or(0)?;
    let err: i32 = read_kernel(sk, o.sock_err)?;
    let flags: u64 = read_kernel(sk, o.sock_flags)?;
    if err == 0 || flags & 1 != 0 {
        return Ok(());
    }
    try_sock_event(ProbeId::InetSkErrorReport, sk, true, i64::from(err), 0, 0)
}

/// Emits an event about socket `sk` (or request socket), if it is FTP.
/// `check_protocol` for the tracepoints that also fire for SCTP and MPTCP.
/// Inlined: BPF calls take at most five arguments.
#[inline(always)]
fn try_sock_event(
    probe: ProbeId,
    sk: u64,
    check_protocol: bool,
    arg1: i64,
    arg2: i64,
    flags: u8,
) -> Result<(), i64> {
    if sk == 0 {
        return Ok(());
    }
    let o = OFFSETS.get(0).ok_or(0)?;
    let state: u8 = read_kernel(sk, o.sock_state)?;
    let sport = if state == TCP_TIME_WAIT || state == TCP_NEW_SYN_RECV {
        read_kernel(sk, o.sock_num)?
    } else {
        u16::from_be(read_kernel(sk, o.inet_sport)?)
    };
    let dport = u16::from_be(read_kernel(sk, o.sock_dport)?);
    if !is_ftp(sport) && !is_ftp(dport) {
        return Ok(());
    }
    if check_protocol && read_kernel::<u16>(sk, o.sock_protocol)? != IPPROTO_TCP {
        return Ok(());
    }
    let record = SockRecord {
        sk,
        arg1,
        arg2,
        family: read_kernel(sk, o.sock_family)?,
        state,
        flags,
        sport,
        dport,
        saddr4: read_kernel(sk, o.sock_saddr).unwrap_or([0; 4]),
        daddr4: read_kernel(sk, o.sock_daddr).unwrap_or([0; 4]),
        saddr6: read_kernel(sk, o.sock_v6_saddr).unwrap_or([0; 16]),
        daddr6: read_kernel(sk, o.sock_v6_daddr).unwrap_or([0; 16]),
    };
    emit(probe, net_inum(sk, o.sock_net, o), record);
    Ok(())
}

/// A reset with a socket is described by the socket; one without (a packet
/// nobody wanted: a closed port) by the packet it answers, whose destination
/// is the local end. So is a listener's: it answers a segment of a
/// connection it does not have (a late FIN to a passive port), and only the
/// packet names that connection.
#[inline(always)]
fn try_send_reset(sk: u64, skb: u64, arg1: i64, flags: u8) -> Result<(), i64> {
    let o = OFFSETS.get(0).ok_or(0)?;
    if sk != 0 && read_kernel::<u8>(sk, o.sock_state)? != TCP_LISTEN {
        return try_sock_event(ProbeId::TcpSendReset, sk, false, arg1, 0, flags);
    }
    // The packet being answered came in: its destination is this host.
    let Some(record) = packet_record(skb, true, arg1, 0, flags)? else {
        return Ok(());
    };
    // A packet a socket took has no device any more: the listener's
    // namespace is the packet's.
    let netns = if sk != 0 {
        net_inum(sk, o.sock_net, o)
    } else {
        skb_netns(skb)
    };
    emit(ProbeId::TcpSendReset, netns, record);
    Ok(())
}

/// The TCP/IP headers of `skb` as a record from this host's point of view
/// (`arriving`: the destination is the local end), if the packet is TCP and
/// one of its ports is FTP. The `state` byte carries the TCP flags.
#[inline(always)]
fn packet_record(
    skb: u64,
    arriving: bool,
    arg1: i64,
    arg2: i64,
    flags: u8,
) -> Result<Option<SockRecord>, i64> {
    let o = OFFSETS.get(0).ok_or(0)?;
    let head: u64 = read_kernel(skb, o.skb_head)?;
    let network: u16 = read_kernel(skb, o.skb_network_header)?;
    let transport: u16 = read_kernel(skb, o.skb_transport_header)?;
    // 0xffff: no transport header set (not past IP yet, or not IP at all).
    if transport == u16::MAX || transport <= network {
        return Ok(None);
    }
    let ports: [u8; 4] = read_kernel(head, transport)?;
    let src_port = u16::from_be_bytes([ports[0], ports[1]]);
    let dst_port = u16::from_be_bytes([ports[2], ports[3]]);
    if !is_ftp(src_port) && !is_ftp(dst_port) {
        return Ok(None);
    }
    // FIN, SYN, RST, PSH, ACK, URG, ECE, CWR.
    let tcp_flags: u8 = read_kernel(head, transport + 13)?;
    let ip = head + u64::from(network);
    let mut record = SockRecord {
        sk: 0,
        arg1,
        arg2,
        family: 0,
        state: tcp_flags,
        flags: flags | record_flags::NO_SOCKET,
        sport: src_port,
        dport: dst_port,
        saddr4: [0; 4],
        daddr4: [0; 4],
        saddr6: [0; 16],
        daddr6: [0; 16],
    };
    match read_kernel::<u8>(ip, 0)? >> 4 {
        4 if read_kernel::<u8>(ip, 9)? == IPPROTO_TCP_U8 => {
            record.family = AF_INET;
            record.saddr4 = read_kernel(ip, 12)?;
            record.daddr4 = read_kernel(ip, 16)?;
        }
        6 if read_kernel::<u8>(ip, 6)? == IPPROTO_TCP_U8 => {
            record.family = AF_INET6;
            record.saddr6 = read_kernel(ip, 8)?;
            record.daddr6 = read_kernel(ip, 24)?;
        }
        _ => return Ok(None),
    }
    if arriving {
        core::mem::swap(&mut record.sport, &mut record.dport);
        core::mem::swap(&mut record.saddr4, &mut record.daddr4);
        core::mem::swap(&mut record.saddr6, &mut record.daddr6);
    }
    Ok(Some(record))
}

/// Network namespace of a packet, through the device it is on.
#[inline(always)]
fn skb_netns(skb: u64) -> u32 {
    let Some(o) = OFFSETS.get(0) else {
        return 0;
    };
    match read_kernel::<u64>(skb, o.skb_dev) {
        Ok(dev) if dev != 0 => net_inum(dev, o.netdev_net, o),
        _ => 0,
    }
}

/// Segments in a retransmitted skb (`tcp_skb_pcount`): SACK can merge
/// segments into one skb, and the kernel counts each in RetransSegs. 0 when
/// unknown.
#[inline(always)]
fn skb_segs(skb: u64) -> i64 {
    match OFFSETS.get(0) {
        Some(o) => read_kernel::<u16>(skb, o.skb_tcp_segs).map_or(0, i64::from),
        None => 0,
    }
}

#[inline(always)]
fn emit(probe: ProbeId, netns: u32, record: SockRecord) {
    let Some(mut entry) = EVENTS.reserve::<Event>(0) else {
        count_lost();
        return;
    };
    entry.write(Event {
        header: EventHeader {
            version: WIRE_VERSION,
            probe: probe as u16,
            // SAFETY: plain helper calls with no arguments.
            cpu: unsafe { bpf_get_smp_processor_id() },
            boot_ns: unsafe { bpf_ktime_get_boot_ns() },
            pid_tgid: bpf_get_current_pid_tgid(),
            comm: bpf_get_current_comm().unwrap_or([0; 16]),
            netns,
            _pad: 0,
        },
        record,
    });
    // No wakeup per event: user space drains on a short timer.
    entry.submit(BPF_RB_NO_WAKEUP.into());
}

/// `cgroup_skb/ingress`: a packet about to be handed to a socket (from
/// `sk_filter`, before TCP processes it). Always 1: never drop.
#[cgroup_skb(ingress)]
pub fn control_ingress(ctx: SkBuffContext) -> i32 {
    let _ = try_control_segment(&ctx, direction::INGRESS);
    1
}

/// `cgroup_skb/egress`: a packet a socket sends (`ip_finish_output`,
/// `ip6_finish_output`). Always 1: never drop.
#[cgroup_skb(egress)]
pub fn control_egress(ctx: SkBuffContext) -> i32 {
    let _ = try_control_segment(&ctx, direction::EGRESS);
    1
}

/// Smallest TCP header and the IPv4/IPv6 headers without options.
const TCP_HEADER: u32 = 20;
const IPV4_HEADER: usize = 20;
const IPV6_HEADER: usize = 40;

/// Copies the head of a control-connection segment with payload into the
/// ring buffer; notes the TTL of every arriving packet of a traced
/// connection, and for an arriving reset sends a record of its TTL and the
/// connection's usual one instead. Runs for every packet of every socket on
/// the host, so the port test comes first and reads only the socket (no
/// packet bytes).
/// The skb starts at the network header in `cgroup_skb` programs.
#[inline(always)]
fn try_control_segment(ctx: &SkBuffContext, dir: u8) -> Result<(), i64> {
    let skb = ctx.skb.skb;
    // SAFETY: context fields; the verifier turns them into loads from
    // `skb->sk`, which the kernel sets before running the program. Volatile
    // keeps them full 4-byte loads, as the context rules want.
    let (local_port, remote_port) = unsafe {
        (
            core::ptr::read_volatile(&raw const (*skb).local_port),
            core::ptr::read_volatile(&raw const (*skb).remote_port),
        )
    };
    // `local_port` is in host order; `remote_port` is the network-order
    // port in the upper half of a big-endian u32. Two lookups, for any packet.
    let roles = port_roles(local_port as u16) | port_roles(u32::from_be(remote_port) as u16);
    if roles == 0 {
        return Ok(());
    }
    let control = roles & port_role::CONTROL != 0;
    let arriving = dir == direction::INGRESS;
    if !control && !arriving {
        return Ok(());
    }
    // 40 bytes: the whole IPv6 header, or IPv4's plus the start of TCP's
    // (a TCP/IPv4 packet is never shorter).
    let ip: [u8; IPV6_HEADER] = ctx.skb.load(0)?;
    let (family, tcp_at) = match ip[0] >> 4 {
        4 if ip[9] == IPPROTO_TCP_U8 => (AF_INET, usize::from(ip[0] & 0x0f) * 4),
        // TCP right after the fixed header; extension headers on a TCP
        // socket's packets are rare enough to skip.
        6 if ip[6] == IPPROTO_TCP_U8 => (AF_INET6, IPV6_HEADER),
        _ => return Ok(()),
    };
    if tcp_at < IPV4_HEADER {
        return Ok(());
    }
    let tcp: [u8; TCP_HEADER as usize] = ctx.skb.load(tcp_at)?;
    // Self-contained, so that nothing it computes is live below: the
    // payload path stays what older verifiers (5.10) already accept.
    if arriving && note_arrival(ctx, &ip, &tcp, family) {
        return Ok(());
    }
    if !control {
        return Ok(());
    }
    let payload_at = tcp_at as u32 + u32::from(tcp[12] >> 4) * 4;
    let len = ctx.skb.len();
    if len <= payload_at {
        return Ok(());
    }
    let payload_len = len - payload_at;
    // 1..=CONTROL_CAPTURE_BYTES, spelled so that every verifier sees both
    // bounds: older ones (5.10) learn no lower bound from `!= 0`, so the
    // length is a mask (through memory, which LLVM cannot see through) plus
    // one. CONTROL_CAPTURE_BYTES is a power of two.
    let less_one = payload_len.min(CONTROL_CAPTURE_BYTES as u32) - 1;
    // SAFETY: a local variable.
    let less_one = unsafe { core::ptr::read_volatile(&less_one) };
    let captured = (less_one & (CONTROL_CAPTURE_BYTES as u32 - 1)) + 1;

    let Some(mut entry) = EVENTS.reserve::<ControlRecord>(0) else {
        count_lost();
        return Ok(());
    };
    let record = entry.as_mut_ptr();
    // SAFETY: `record` is the reserved, exclusively owned ring buffer slot;
    // every field is written below before it is submitted.
    unsafe {
        let data = &raw mut (*record).segment.data;
        // SAFETY: `captured` is 1..=CONTROL_CAPTURE_BYTES, the size of `data`.
        if bpf_skb_load_bytes(ctx.as_ptr(), payload_at, data.cast(), captured) != 0 {
            entry.discard(0);
            return Ok(());
        }
        let mut flags = 0;
        // The password never leaves the kernel: in a segment that starts
        // with `PASS secret` (or `ACCT`), the argument is overwritten with
        // `*` up to the line end, which keeps the lines and lengths intact.
        // (A PASS line that does not start a segment still reaches the
        // parser, which drops its argument.)
        let d = &mut *data;
        let verb =
            |d: &[u8; CONTROL_CAPTURE_BYTES]| [d[0] | 0x20, d[1] | 0x20, d[2] | 0x20, d[3] | 0x20];
        if captured > 5 && d[4] == b' ' && matches!(&verb(d), b"pass" | b"acct") {
            let mut i = 5;
            while i < CONTROL_CAPTURE_BYTES && (i as u32) < captured {
                if d[i] == b'\r' || d[i] == b'\n' {
                    break;
                }
                d[i] = b'*';
                i += 1;
            }
            flags |= segment_flags::REDACTED;
        }
        // A `227`/`229` reply announces the next passive data port: trace it
        // from now on, before the client can connect (user space learns of
        // it a drain later, and expires it). `PORT`/`EPRT` are left to user
        // space: the server connects only after the next command.
        if captured > 8
            && d[0] == b'2'
            && d[1] == b'2'
            && (d[2] == b'7' || d[2] == b'9')
            && d[3] == b' '
        {
            let port = announced_port(d, captured, d[2] == b'7');
            if port != 0
                && let Some(role) = PORTS.get_ptr_mut(port)
            {
                *role |= port_role::EXPECTED_DATA;
            }
        }
        let segment = &raw mut (*record).segment;
        (*segment).captured_len = captured as u16;
        (*segment).flags = flags;
        (*segment).ttl = 0;
        (*segment).usual_ttl = 0;
        fill_control_record(record, ctx, &ip, &tcp, family, dir, payload_len);
    }
    entry.submit(BPF_RB_NO_WAKEUP.into());
    Ok(())
}

/// An arriving packet of a traced connection: its TTL (hop limit) is noted
/// by the connection's addresses and ports (a passive connection's handshake
/// arrives at the listener, so not by socket); a reset is reported with its
/// TTL and the usual one. Returns whether it was a reset (and reported).
#[inline(always)]
fn note_arrival(
    ctx: &SkBuffContext,
    ip: &[u8; IPV6_HEADER],
    tcp: &[u8; TCP_HEADER as usize],
    family: u16,
) -> bool {
    let mut tuple = Tuple {
        remote: [0; 16],
        local: [0; 16],
        remote_port: u16::from_be_bytes([tcp[0], tcp[1]]),
        local_port: u16::from_be_bytes([tcp[2], tcp[3]]),
    };
    let ttl = if family == AF_INET {
        tuple.remote[..4].copy_from_slice(&ip[12..16]);
        tuple.local[..4].copy_from_slice(&ip[16..20]);
        ip[8]
    } else {
        tuple.remote.copy_from_slice(&ip[8..24]);
        tuple.local.copy_from_slice(&ip[24..40]);
        ip[7]
    };
    // 0 for none: no packet arrives with TTL 0. SAFETY: a map value read
    // by value at once.
    let known: u8 = match unsafe { PEER_TTL.get(&tuple) } {
        Some(value) => *value,
        None => 0,
    };
    if tcp[13] & TCP_RST == 0 {
        if known != ttl {
            let _ = PEER_TTL.insert(&tuple, &ttl, 0);
        }
        return false;
    }
    let Some(mut entry) = EVENTS.reserve::<ControlRecord>(0) else {
        count_lost();
        return true;
    };
    let record = entry.as_mut_ptr();
    // SAFETY: the reserved slot; every field but the payload bytes is
    // written below, and `captured_len` 0 says there are none.
    unsafe {
        let segment = &raw mut (*record).segment;
        (*segment).captured_len = 0;
        (*segment).flags = segment_flags::RESET_TTL;
        (*segment).ttl = ttl;
        (*segment).usual_ttl = known;
        fill_control_record(record, ctx, ip, tcp, family, direction::INGRESS, 0);
    }
    entry.submit(BPF_RB_NO_WAKEUP.into());
    true
}

/// Writes a control record's header and its segment's fields other than
/// the payload, its length and flags: sequence, TCP flags, direction, the
/// socket, and the packet's addresses and ports from the socket's side.
///
/// # Safety
/// `record` is a reserved ring buffer slot this program owns.
#[inline(always)]
unsafe fn fill_control_record(
    record: *mut ControlRecord,
    ctx: &SkBuffContext,
    ip: &[u8; IPV6_HEADER],
    tcp: &[u8; TCP_HEADER as usize],
    family: u16,
    dir: u8,
    payload_len: u32,
) {
    let skb = ctx.skb.skb;
    let arriving = dir == direction::INGRESS;
    // SAFETY: the caller's slot; `skb` is this program's context.
    unsafe {
        let segment = &raw mut (*record).segment;
        (*segment)._pad = [0; 3];
        (*segment).payload_len = payload_len;
        (*segment).seq = u32::from_be_bytes([tcp[4], tcp[5], tcp[6], tcp[7]]);
        (*segment).tcp_flags = tcp[13];
        (*segment).direction = dir;
        (*segment).family = family;
        (*segment).cookie = bpf_get_socket_cookie(ctx.as_ptr());
        let src_port = u16::from_be_bytes([tcp[0], tcp[1]]);
        let dst_port = u16::from_be_bytes([tcp[2], tcp[3]]);
        (*segment).sport = if arriving { dst_port } else { src_port };
        (*segment).dport = if arriving { src_port } else { dst_port };
        (*segment).saddr4 = [0; 4];
        (*segment).daddr4 = [0; 4];
        (*segment).saddr6 = [0; 16];
        (*segment).daddr6 = [0; 16];
        if family == AF_INET {
            let src = [ip[12], ip[13], ip[14], ip[15]];
            let dst = [ip[16], ip[17], ip[18], ip[19]];
            (*segment).saddr4 = if arriving { dst } else { src };
            (*segment).daddr4 = if arriving { src } else { dst };
        } else {
            let mut src = [0u8; 16];
            let mut dst = [0u8; 16];
            src.copy_from_slice(&ip[8..24]);
            dst.copy_from_slice(&ip[24..40]);
            (*segment).saddr6 = if arriving { dst } else { src };
            (*segment).daddr6 = if arriving { src } else { dst };
        }
        // The socket's address, as the tracepoint programs report it. The
        // context hands it out as a socket pointer the verifier will not let
        // us offset; stored and read back it is a plain number (allowed with
        // CAP_PERFMON), usable for the namespace read below.
        let sk_field = &raw mut (*segment).sk;
        core::ptr::write_volatile(sk_field, (*skb).__bindgen_anon_2.sk as u64);
        let sk = core::ptr::read_volatile(sk_field);
        let netns = match OFFSETS.get(0) {
            Some(o) => net_inum(sk, o.sock_net, o),
            None => 0,
        };
        (*record).header = EventHeader {
            version: WIRE_VERSION,
            probe: ProbeId::ControlSegment as u16,
            cpu: bpf_get_smp_processor_id(),
            boot_ns: bpf_ktime_get_boot_ns(),
            // Not available to cgroup_skb programs before 6.10, and in
            // softirq not the owner anyway: user space attributes the socket.
            pid_tgid: 0,
            comm: [0; 16],
            netns,
            _pad: 0,
        };
    }
}

/// Bytes of an announcement searched for the port.
const ANNOUNCE_SCAN: usize = 80;
/// Numbers beyond a port's range are cut to this mask (then refused).
const NUMBER_MASK: u32 = 0x1_ffff;

/// The data port of `227 ... (h1,h2,h3,h4,p1,p2)` or `PORT h1,...,p1,p2`
/// (`pairs`: `p1*256+p2`, the last two numbers) or of `229 ... (|||port|)` or
/// `EPRT |af|addr|port|` (the last number), reading up to `)` or the line's
/// end; 0 if none.
#[inline(always)]
fn announced_port(d: &[u8; CONTROL_CAPTURE_BYTES], captured: u32, pairs: bool) -> u32 {
    // Every value is masked to one range, so the verifier (5.10's too)
    // sees the same state whichever digits came and prunes, instead of
    // following each path through the bytes.
    let (mut prev, mut last, mut cur, mut in_number) = (0u32, 0u32, 0u32, 0u32);
    let mut i = 4;
    while i < ANNOUNCE_SCAN && (i as u32) < captured {
        let c = d[i];
        let digit = u32::from(c.wrapping_sub(b'0'));
        if digit < 10 {
            cur = (cur * 10 + digit) & NUMBER_MASK;
            in_number = 1;
        } else {
            if in_number != 0 {
                prev = last;
                last = cur;
            }
            cur = 0;
            in_number = 0;
            if c == b')' || c == b'\r' || c == b'\n' {
                break;
            }
        }
        i += 1;
    }
    let port = if pairs {
        (prev & 0xff) * 256 + (last & 0xff)
    } else {
        last
    };
    if port < 65_536 { port } else { 0 }
}

/// The port's [`port_role`] bits; 0 for a port ftptrace does not trace.
#[inline(always)]
fn port_roles(port: u16) -> u8 {
    if port == 0 {
        return 0;
    }
    PORTS.get(u32::from(port)).copied().unwrap_or(0)
}

#[inline(always)]
fn is_ftp(port: u16) -> bool {
    port_roles(port) != 0
}

#[inline(always)]
fn read_kernel<T>(base: u64, offset: u16) -> Result<T, i64> {
    if offset == NO_FIELD || base == 0 {
        return Err(0);
    }
    // SAFETY: bpf_probe_read_kernel faults safely on a bad address.
    unsafe { bpf_probe_read_kernel((base + u64::from(offset)) as *const T) }.map_err(i64::from)
}

/// Inode number of the network namespace that the `struct net *` stored at
/// `at + offset` points to; 0 when unknown.
#[inline(always)]
fn net_inum(at: u64, offset: u16, o: &KernelOffsets) -> u32 {
    match read_kernel::<u64>(at, offset) {
        Ok(net) if net != 0 => read_kernel::<u32>(net, o.net_inum).unwrap_or(0),
        _ => 0,
    }
}

#[inline(always)]
fn count_lost() {
    if let Some(lost) = LOST.get_ptr_mut(0) {
        // SAFETY: per-CPU slot; preemption is off while a program runs, so
        // nothing else writes it concurrently.
        unsafe { *lost += 1 };
    }
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";

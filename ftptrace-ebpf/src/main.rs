//! ftptrace's kernel side: capture, filter, emit.
//!
//! Each program decides "is this an FTP connection?" with two port reads and
//! one array lookup each, then copies the raw tracepoint record into the ring
//! buffer. All decoding (states, reasons, addresses, who owns the socket)
//! happens in user space, where the running kernel's `format` files say what
//! the bytes mean. Offsets come from the `TRACEPOINTS` and `OFFSETS` maps that
//! the loader fills before attaching, so this one object serves every layout.
#![no_std]
#![no_main]

use aya_ebpf::{
    EbpfContext,
    bindings::BPF_RB_NO_WAKEUP,
    helpers::{
        bpf_get_current_comm, bpf_get_current_pid_tgid, bpf_get_smp_processor_id,
        bpf_ktime_get_boot_ns, bpf_probe_read_kernel, bpf_probe_read_kernel_buf,
    },
    macros::{map, raw_tracepoint, tracepoint},
    maps::{Array, PerCpuArray, RingBuf},
    programs::{RawTracePointContext, TracePointContext},
};
use ftptrace_common::{
    Event, EventHeader, IPPROTO_TCP, KernelOffsets, NO_FIELD, PORT_MAP_ENTRIES, PortField, ProbeId,
    SockErrorRecord, TRACEPOINT_PROBES, TracepointConfig, WIRE_VERSION,
};

/// Events to user space. The loader may resize it (`--ring-buffer-kib`).
#[map]
static EVENTS: RingBuf = RingBuf::with_byte_size(1 << 20, 0);

/// Port → role bits (`ftptrace_common::port_role`); 0 means not FTP.
#[map]
static PORTS: Array<u8> = Array::with_max_entries(PORT_MAP_ENTRIES, 0);

/// Record layout per classic tracepoint, indexed by `ProbeId`.
#[map]
static TRACEPOINTS: Array<TracepointConfig> = Array::with_max_entries(TRACEPOINT_PROBES, 0);

/// Kernel struct offsets from BTF (one entry).
#[map]
static OFFSETS: Array<KernelOffsets> = Array::with_max_entries(1, 0);

/// Ring buffer reservations that failed: events lost, per CPU.
#[map]
static LOST: PerCpuArray<u64> = PerCpuArray::with_max_entries(1, 0);

// Prototypes below are the tracepoints' TP_PROTO; the record layouts differ by
// kernel and are described to us through TRACEPOINTS.

/// `inet_sock_set_state(const struct sock *sk, int oldstate, int newstate)`
#[tracepoint]
pub fn inet_sock_set_state(ctx: TracePointContext) -> u32 {
    on_tracepoint(&ctx, ProbeId::InetSockSetState)
}

/// `tcp_retransmit_skb(const struct sock *sk, const struct sk_buff *skb[, int err])`
#[tracepoint]
pub fn tcp_retransmit_skb(ctx: TracePointContext) -> u32 {
    on_tracepoint(&ctx, ProbeId::TcpRetransmitSkb)
}

/// `tcp_retransmit_synack(const struct sock *sk, const struct request_sock *req)`
#[tracepoint]
pub fn tcp_retransmit_synack(ctx: TracePointContext) -> u32 {
    on_tracepoint(&ctx, ProbeId::TcpRetransmitSynack)
}

/// `tcp_send_reset(const struct sock *sk, const struct sk_buff *skb[, enum sk_rst_reason])`;
/// `sk` is NULL for a reset answering a packet no socket wanted.
#[tracepoint]
pub fn tcp_send_reset(ctx: TracePointContext) -> u32 {
    on_tracepoint(&ctx, ProbeId::TcpSendReset)
}

/// `tcp_receive_reset(struct sock *sk)`
#[tracepoint]
pub fn tcp_receive_reset(ctx: TracePointContext) -> u32 {
    on_tracepoint(&ctx, ProbeId::TcpReceiveReset)
}

/// `tcp_destroy_sock(struct sock *sk)`
#[tracepoint]
pub fn tcp_destroy_sock(ctx: TracePointContext) -> u32 {
    on_tracepoint(&ctx, ProbeId::TcpDestroySock)
}

/// `inet_sk_error_report(const struct sock *sk)` (5.13+). Raw, because the
/// classic record has no socket pointer and so no network namespace.
#[raw_tracepoint(tracepoint = "inet_sk_error_report")]
pub fn inet_sk_error_report(ctx: RawTracePointContext) -> u32 {
    let sk: u64 = ctx.arg(0);
    let _ = try_error_report(sk);
    0
}

fn on_tracepoint(ctx: &TracePointContext, probe: ProbeId) -> u32 {
    let _ = try_tracepoint(ctx, probe);
    0
}

fn try_tracepoint(ctx: &TracePointContext, probe: ProbeId) -> Result<(), i64> {
    let cfg = TRACEPOINTS.get(probe as u32).ok_or(0)?;
    if cfg.enabled == 0 {
        return Ok(());
    }
    if cfg.protocol_offset != NO_FIELD {
        let protocol = if cfg.protocol_size == 1 {
            u16::from(read_record::<u8>(ctx, cfg.protocol_offset)?)
        } else {
            read_record::<u16>(ctx, cfg.protocol_offset)?
        };
        if protocol != IPPROTO_TCP {
            return Ok(());
        }
    }
    if !is_ftp(read_port(ctx, cfg.sport)?) && !is_ftp(read_port(ctx, cfg.dport)?) {
        return Ok(());
    }

    let offsets = OFFSETS.get(0).ok_or(0)?;
    let mut netns = 0;
    if cfg.skaddr_offset != NO_FIELD {
        let sk: u64 = read_record(ctx, cfg.skaddr_offset)?;
        netns = sock_netns(sk, offsets);
    }
    if netns == 0 && cfg.skbaddr_offset != NO_FIELD {
        let skb: u64 = read_record(ctx, cfg.skbaddr_offset)?;
        netns = skb_netns(skb, offsets);
    }

    let Some(mut entry) = EVENTS.reserve::<Event>(0) else {
        count_lost();
        return Ok(());
    };
    let event = entry.as_mut_ptr();
    // SAFETY: `event` points at a reserved, writable ring buffer slot of
    // `size_of::<Event>()` bytes; we fill every byte before submitting.
    unsafe {
        (*event).header = header(probe, netns);
        // The record lives in a per-CPU buffer much larger than our copy, so a
        // fixed-size read stays inside it; the loader only decodes the bytes
        // that the format says belong to the record.
        if bpf_probe_read_kernel_buf(ctx.as_ptr().cast(), &mut (*event).record).is_err() {
            (*event).record = [0; ftptrace_common::RECORD_CAPACITY];
        }
    }
    entry.submit(BPF_RB_NO_WAKEUP.into());
    Ok(())
}

fn try_error_report(sk: u64) -> Result<(), i64> {
    if sk == 0 {
        return Ok(());
    }
    let o = OFFSETS.get(0).ok_or(0)?;
    if o.sock_protocol == NO_FIELD || read_kernel::<u16>(sk, o.sock_protocol)? != IPPROTO_TCP {
        return Ok(());
    }
    let sport_be: u16 = read_kernel(sk, o.inet_sport)?;
    let dport_be: u16 = read_kernel(sk, o.sock_dport)?;
    if !is_ftp(u16::from_be(sport_be)) && !is_ftp(u16::from_be(dport_be)) {
        return Ok(());
    }
    let record = SockErrorRecord {
        skaddr: sk,
        error: read_kernel(sk, o.sock_err)?,
        family: read_kernel(sk, o.sock_family)?,
        protocol: IPPROTO_TCP,
        sport_be,
        dport_be,
        saddr4: read_kernel(sk, o.sock_saddr)?,
        daddr4: read_kernel(sk, o.sock_daddr)?,
        saddr6: read_kernel(sk, o.sock_v6_saddr).unwrap_or([0; 16]),
        daddr6: read_kernel(sk, o.sock_v6_daddr).unwrap_or([0; 16]),
        _pad: 0,
    };
    let netns = sock_netns(sk, o);
    let Some(mut entry) = EVENTS.reserve::<Event>(0) else {
        count_lost();
        return Ok(());
    };
    let event = entry.as_mut_ptr();
    // SAFETY: as in `try_tracepoint`; the record is smaller than the slot
    // (asserted in ftptrace-common) and the rest is zeroed.
    unsafe {
        (*event).header = header(ProbeId::InetSkErrorReport, netns);
        (*event).record = [0; ftptrace_common::RECORD_CAPACITY];
        (*event)
            .record
            .as_mut_ptr()
            .cast::<SockErrorRecord>()
            .write_unaligned(record);
    }
    entry.submit(BPF_RB_NO_WAKEUP.into());
    Ok(())
}

#[inline(always)]
fn header(probe: ProbeId, netns: u32) -> EventHeader {
    EventHeader {
        version: WIRE_VERSION,
        probe: probe as u16,
        // SAFETY: plain helper calls with no arguments.
        cpu: unsafe { bpf_get_smp_processor_id() },
        boot_ns: unsafe { bpf_ktime_get_boot_ns() },
        pid_tgid: bpf_get_current_pid_tgid(),
        comm: bpf_get_current_comm().unwrap_or([0; 16]),
        netns,
        _pad: 0,
    }
}

#[inline(always)]
fn is_ftp(port: u16) -> bool {
    port != 0 && PORTS.get(u32::from(port)).is_some_and(|role| *role != 0)
}

#[inline(always)]
fn read_port(ctx: &TracePointContext, field: PortField) -> Result<u16, i64> {
    if field.offset == NO_FIELD {
        return Ok(0);
    }
    let raw: u16 = read_record(ctx, field.offset)?;
    Ok(if field.network_order != 0 {
        u16::from_be(raw)
    } else {
        raw
    })
}

#[inline(always)]
fn read_record<T>(ctx: &TracePointContext, offset: u16) -> Result<T, i64> {
    // SAFETY: bpf_probe_read tolerates any address; the loader only hands
    // out offsets that lie inside the record.
    unsafe { ctx.read_at::<T>(usize::from(offset)) }.map_err(i64::from)
}

#[inline(always)]
fn read_kernel<T>(base: u64, offset: u16) -> Result<T, i64> {
    if offset == NO_FIELD {
        return Err(0);
    }
    // SAFETY: bpf_probe_read_kernel faults safely on a bad address.
    unsafe { bpf_probe_read_kernel((base + u64::from(offset)) as *const T) }.map_err(i64::from)
}

/// Inode number of the namespace a `struct net *` stored at `at + offset` points to.
#[inline(always)]
fn net_inum(at: u64, offset: u16, o: &KernelOffsets) -> u32 {
    match read_kernel::<u64>(at, offset) {
        Ok(net) if net != 0 => read_kernel::<u32>(net, o.net_inum).unwrap_or(0),
        _ => 0,
    }
}

#[inline(always)]
fn sock_netns(sk: u64, o: &KernelOffsets) -> u32 {
    if sk == 0 {
        0
    } else {
        net_inum(sk, o.sock_net, o)
    }
}

#[inline(always)]
fn skb_netns(skb: u64, o: &KernelOffsets) -> u32 {
    if skb == 0 {
        return 0;
    }
    match read_kernel::<u64>(skb, o.skb_dev) {
        Ok(dev) if dev != 0 => net_inum(dev, o.netdev_net, o),
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

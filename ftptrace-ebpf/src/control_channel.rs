//! The FTP control channel's bytes, from two `cgroup_skb` programs on the
//! cgroup v2 root, which the kernel runs for every packet a socket of any
//! process sends or receives, in every network namespace. They copy the
//! head of each control-connection segment (masking a `PASS`/`ACCT`
//! argument first), mark the data port a `227`/`229` announces as traced,
//! and never drop anything. The ingress one also notes the TTL of every
//! arriving packet of a traced connection, so that a reset that arrives can
//! be told apart by its TTL.

use aya_ebpf::{
    EbpfContext as _,
    bindings::BPF_RB_NO_WAKEUP,
    helpers::{
        bpf_get_smp_processor_id, bpf_get_socket_cookie, bpf_ktime_get_boot_ns, bpf_skb_load_bytes,
    },
    macros::cgroup_skb,
    programs::SkBuffContext,
};
use ftptrace_common::{
    AF_INET, AF_INET6, CONTROL_CAPTURE_BYTES, ControlRecord, Endpoints, EventHeader, ProbeId,
    WIRE_VERSION, direction,
    ftp_bytes::{announced_port, announcement, mask_secret},
    port_role, segment_flags,
};

use crate::{
    EVENTS, OFFSETS, PEER_TTL, PORTS,
    kernel_read::{IPPROTO_TCP_U8, net_inum, port_roles},
    record::count_lost,
};

/// Smallest TCP header and the IPv4/IPv6 headers without options.
const TCP_HEADER: u32 = 20;
const IPV4_HEADER: usize = 20;
const IPV6_HEADER: usize = 40;
const TCP_RST: u8 = 0x04;

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
        let d = &mut *data;
        // The password never leaves the kernel: in a segment that starts
        // with `PASS secret` (or `ACCT`), the argument is overwritten with
        // `*` up to the line end. (A PASS line that does not start a
        // segment still reaches the parser, which drops its argument.)
        let flags = if mask_secret(d, captured) {
            segment_flags::REDACTED
        } else {
            0
        };
        // A `227`/`229` reply announces the next passive data port: trace it
        // from now on, before the client can connect (user space learns of
        // it a drain later, and expires it). `PORT`/`EPRT` are left to user
        // space: the server connects only after the next command.
        if let Some(pairs) = announcement(d, captured) {
            let port = announced_port(d, captured, pairs);
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

/// A packet's ends from its socket's side: an arriving packet's
/// destination is the local end, a leaving one's source.
#[inline(always)]
fn packet_ends(
    ip: &[u8; IPV6_HEADER],
    tcp: &[u8; TCP_HEADER as usize],
    family: u16,
    arriving: bool,
) -> Endpoints {
    let src_port = u16::from_be_bytes([tcp[0], tcp[1]]);
    let dst_port = u16::from_be_bytes([tcp[2], tcp[3]]);
    let mut src = [0u8; 16];
    let mut dst = [0u8; 16];
    if family == AF_INET {
        src[..4].copy_from_slice(&ip[12..16]);
        dst[..4].copy_from_slice(&ip[16..20]);
    } else {
        src.copy_from_slice(&ip[8..24]);
        dst.copy_from_slice(&ip[24..40]);
    }
    Endpoints::of_packet(family, (src, src_port), (dst, dst_port), arriving)
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
    let key = packet_ends(ip, tcp, family, true);
    let ttl = if family == AF_INET { ip[8] } else { ip[7] };
    // 0 for none: no packet arrives with TTL 0. SAFETY: a map value read
    // by value at once.
    let known: u8 = match unsafe { PEER_TTL.get(&key) } {
        Some(value) => *value,
        None => 0,
    };
    if tcp[13] & TCP_RST == 0 {
        if known != ttl {
            let _ = PEER_TTL.insert(&key, &ttl, 0);
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
        (*segment)._pad = 0;
        (*segment).payload_len = payload_len;
        (*segment).seq = u32::from_be_bytes([tcp[4], tcp[5], tcp[6], tcp[7]]);
        (*segment).tcp_flags = tcp[13];
        (*segment).direction = dir;
        (*segment).cookie = bpf_get_socket_cookie(ctx.as_ptr());
        (*segment).ends = packet_ends(ip, tcp, family, arriving);
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

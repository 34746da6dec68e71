//! The FTP control channel's bytes, from two `cgroup_skb` programs on the
//! cgroup v2 root, which the kernel runs for every packet a socket of any
//! process sends or receives, in every network namespace. They copy the
//! head and tail of each control-connection segment TCP accepts (masking
//! `PASS`/`ACCT`/`ADAT` arguments first), mark the data endpoint a
//! server's `227`/`229` or a client's `PORT`/`EPRT` announces, and never
//! drop anything. The ingress one also notes the TTL of every acceptable
//! arriving packet of a traced connection, so that a reset that arrives can
//! be told apart by its TTL.

use aya_ebpf::{
    EbpfContext as _,
    helpers::{
        bpf_get_smp_processor_id, bpf_get_socket_cookie, bpf_ktime_get_boot_ns, bpf_skb_load_bytes,
    },
    macros::cgroup_skb,
    programs::SkBuffContext,
};
use ftptrace_common::{
    AF_INET, ActiveEndpoint, CONTROL_CAPTURE_BYTES, CONTROL_HEAD_BYTES, CONTROL_TAIL_BYTES,
    ControlRecord, ControlSegment, EventHeader, NO_FIELD, ProbeId, WIRE_VERSION, direction,
    ftp_bytes::{announced_port, announcement_kind, mask_secrets},
    port_role, segment_flags,
};

use crate::{
    ACTIVE_EXPECT, CONTROL_BUDGET, EVENTS, HANDSHAKE_TTL, OFFSETS, PEER_TTL, PORTS,
    ip_packet::{IPV6_HEADER, IpHead, ip_head, packet_ends},
    kernel_read::{
        IPPROTO_TCP_U8, TCP_CLOSE_WAIT, TCP_CLOSING, TCP_ESTABLISHED, TCP_FIN_WAIT1, TCP_FIN_WAIT2,
        TCP_LAST_ACK, TCP_LISTEN, TCP_SYN_SENT, as_number, net_inum, port_roles, read_kernel,
        traced,
    },
    record::{count_lost, count_throttled, submit_record},
};

/// Smallest TCP header and the IPv4/IPv6 headers without options.
const TCP_HEADER: u32 = 20;
const TCP_RST: u8 = 0x04;
const TCP_ACK: u8 = 0x10;

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

/// Copies a control-connection segment with payload into the ring buffer,
/// if TCP will accept it (an arriving one); marks what its announcement
/// names; notes the TTL of every acceptable arriving packet of a traced
/// connection, and for an arriving reset TCP accepts sends a record of its
/// TTL and the connection's usual one instead. Runs for every packet of
/// every socket on the host, so the port test comes first and reads only
/// the socket (no packet bytes).
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
    let local_roles = port_roles(local_port as u16);
    let remote_roles = port_roles(u32::from_be(remote_port) as u16);
    let roles = local_roles | remote_roles;
    if roles == 0 {
        return Ok(());
    }
    let control = roles & port_role::CONTROL != 0;
    let arriving = dir == direction::INGRESS;
    if !control && !arriving {
        return Ok(());
    }
    // Whether the server sent it, as a number (see `announcement_kind`).
    let from_server = u32::from(if arriving { remote_roles } else { local_roles })
        & u32::from(port_role::CONTROL);
    let Some(IpHead {
        bytes: ip,
        family,
        transport_at: tcp_at,
    }) = ip_head(ctx, u32::from(IPPROTO_TCP_U8))?
    else {
        return Ok(());
    };
    let tcp: [u8; TCP_HEADER as usize] = ctx.skb.load(tcp_at as usize)?;
    // SAFETY: the context's socket, read as the tracepoint programs read
    // theirs; only ever offset and read through bpf_probe_read_kernel.
    let sk = as_number(unsafe { (*skb).__bindgen_anon_2.sk as u64 });
    // Self-contained, so that nothing it computes is live below.
    if arriving && note_arrival(ctx, sk, &ip, &tcp, family, roles) {
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
    // A forged segment (a spoofed address, a sequence number TCP will
    // refuse) never reaches the parser: only bytes TCP takes in do.
    if arriving && !takes_data(sk, &tcp, payload_len) {
        return Ok(());
    }
    // SAFETY: the helper only reads the context's socket.
    if !within_budget(unsafe { bpf_get_socket_cookie(ctx.as_ptr()) }) {
        count_throttled();
        return Ok(());
    }
    let head = head_len(payload_len);

    let Some(mut entry) = EVENTS.reserve::<ControlRecord>(0) else {
        count_lost();
        return Ok(());
    };
    let record = entry.as_mut_ptr();
    // SAFETY: `record` is the reserved, exclusively owned ring buffer slot;
    // every field is written below before it is submitted.
    unsafe {
        // Header, addresses and the like first: what the loops below need
        // of them they read back from the record, where the verifier keeps
        // no value (a value kept per path would make it walk the loops once
        // per path).
        fill_control_record(record, ctx, &ip, &tcp, family, dir, payload_len);
        let segment = &raw mut (*record).segment;
        (*segment).flags = 0;
        (*segment).marked_port = 0;
        (*segment).ttl = 0;
        (*segment).usual_ttl = 0;
        (*segment)._pad2 = [0; 6];
        let data = &raw mut (*segment).data;
        // SAFETY: `head` is 1..=CONTROL_HEAD_BYTES, within `data`.
        if bpf_skb_load_bytes(ctx.as_ptr(), payload_at, data.cast(), head) != 0 {
            entry.discard(0);
            return Ok(());
        }
        (*segment).captured_len = head as u16;
        if payload_len > CONTROL_HEAD_BYTES as u32 {
            // The segment's last bytes: right after the head (then nothing
            // is missing) or, for a longer one, with bytes between lost.
            let rest = payload_len - CONTROL_HEAD_BYTES as u32;
            let tail = tail_len(rest);
            let into = data.cast::<u8>().add(CONTROL_HEAD_BYTES);
            let at = payload_at + payload_len - tail;
            if bpf_skb_load_bytes(ctx.as_ptr(), at, into.cast(), tail) == 0 {
                (*segment).captured_len = (CONTROL_HEAD_BYTES as u32 + tail) as u16;
                if rest > CONTROL_TAIL_BYTES as u32 {
                    (*segment).flags |= segment_flags::TAIL_APART;
                }
            }
        }
        redact_and_mark(segment, from_server);
    }
    submit_record(entry);
    Ok(())
}

/// Whether TCP will take in new bytes from an arriving data segment, judged
/// as `tcp_sequence` and `tcp_ack` judge it: the socket can receive data,
/// the bytes reach past what it has (`rcv_nxt`) and start inside its
/// window, and the acknowledgment is one TCP would not discard.
///
/// TCP judges later than this program runs: a segment that arrives while
/// the socket's owner holds it waits in the backlog, and a reply can arrive
/// that fast (a preempted sender, a veth peer) before the sender's own
/// `snd_nxt` has moved past the bytes it answers. So the acknowledgment's
/// upper bound is `write_seq`, every byte the socket was given to send,
/// which is never behind `snd_nxt`.
#[inline(always)]
fn takes_data(sk: u64, tcp: &[u8; TCP_HEADER as usize], payload_len: u32) -> bool {
    let Some(o) = OFFSETS.get(0) else {
        return false;
    };
    let state: u8 = read_kernel(sk, o.sock_state).unwrap_or(0);
    if state != TCP_ESTABLISHED && state != TCP_FIN_WAIT1 && state != TCP_FIN_WAIT2 {
        return false;
    }
    let seq = u32::from_be_bytes([tcp[4], tcp[5], tcp[6], tcp[7]]);
    let ack = u32::from_be_bytes([tcp[8], tcp[9], tcp[10], tcp[11]]);
    let (Ok(rcv_nxt), Ok(rcv_wup), Ok(rcv_wnd)) = (
        read_kernel::<u32>(sk, o.tcp_rcv_nxt),
        read_kernel::<u32>(sk, o.tcp_rcv_wup),
        read_kernel::<u32>(sk, o.tcp_rcv_wnd),
    ) else {
        return false;
    };
    let end = seq.wrapping_add(payload_len);
    if !after(end, rcv_nxt) || after(seq, rcv_wup.wrapping_add(rcv_wnd)) {
        return false;
    }
    if tcp[13] & TCP_ACK == 0 {
        return false;
    }
    let (Ok(snd_una), Ok(write_seq), Ok(max_window)) = (
        read_kernel::<u32>(sk, o.tcp_snd_una),
        read_kernel::<u32>(sk, o.tcp_write_seq),
        read_kernel::<u32>(sk, o.tcp_max_window),
    ) else {
        return false;
    };
    !after(ack, write_seq) && !before(ack, snd_una.wrapping_sub(max_window))
}

/// Records one control connection may send per second: far more than any
/// client's commands and a server's replies to them, far less than the
/// replies a client can make a server send to a flood of junk lines.
const BUDGET_PER_SECOND: u64 = 2000;
const BUDGET_WINDOW_NS: u64 = 1_000_000_000;

/// A connection's use of its budget: records in the window that began at
/// `window_start` (boot time).
#[repr(C)]
pub struct Budget {
    window_start: u64,
    used: u64,
}

/// Whether the connection with socket `cookie` may send one more record,
/// and counts it. Two CPUs may both take the last one: a budget, not a lock.
#[inline(always)]
pub(crate) fn within_budget(cookie: u64) -> bool {
    // SAFETY: a helper without arguments.
    let now = unsafe { bpf_ktime_get_boot_ns() };
    match CONTROL_BUDGET.get_ptr_mut(&cookie) {
        // SAFETY: a map value, written in place.
        Some(budget) => unsafe {
            if now.wrapping_sub((*budget).window_start) >= BUDGET_WINDOW_NS {
                (*budget).window_start = now;
                (*budget).used = 1;
                true
            } else if (*budget).used < BUDGET_PER_SECOND {
                (*budget).used += 1;
                true
            } else {
                false
            }
        },
        None => {
            let fresh = Budget {
                window_start: now,
                used: 1,
            };
            let _ = CONTROL_BUDGET.insert(&cookie, &fresh, 0);
            true
        }
    }
}

/// Whether an arriving segment is one TCP accepts at all (a reset that
/// resets, a segment inside the window), judged as
/// `tcp_validate_incoming` and `tcp_rcv_synsent_state_process` do.
#[inline(always)]
fn acceptable(sk: u64, tcp: &[u8; TCP_HEADER as usize]) -> bool {
    let Some(o) = OFFSETS.get(0) else {
        return false;
    };
    let state: u8 = read_kernel(sk, o.sock_state).unwrap_or(0);
    let seq = u32::from_be_bytes([tcp[4], tcp[5], tcp[6], tcp[7]]);
    let ack = u32::from_be_bytes([tcp[8], tcp[9], tcp[10], tcp[11]]);
    let flags = tcp[13];
    if state == TCP_SYN_SENT {
        // A SYN-ACK or reset answering our SYN acknowledges it, and no
        // more than was sent (`write_seq`: `snd_nxt` moves only after the
        // SYN has left, and the answer can be back before that; see
        // `takes_data`).
        let (Ok(snd_una), Ok(write_seq)) = (
            read_kernel::<u32>(sk, o.tcp_snd_una),
            read_kernel::<u32>(sk, o.tcp_write_seq),
        ) else {
            return false;
        };
        return flags & TCP_ACK != 0 && after(ack, snd_una) && !after(ack, write_seq);
    }
    let synchronized = state == TCP_ESTABLISHED
        || state == TCP_FIN_WAIT1
        || state == TCP_FIN_WAIT2
        || state == TCP_CLOSE_WAIT
        || state == TCP_LAST_ACK
        || state == TCP_CLOSING;
    let Ok(rcv_nxt) = read_kernel::<u32>(sk, o.tcp_rcv_nxt) else {
        return false;
    };
    if !synchronized {
        return false;
    }
    if flags & TCP_RST != 0 {
        // RFC 5961: only the exact next sequence number resets; after the
        // peer's FIN, one less too (tcp_reset_check).
        let after_fin = state == TCP_CLOSE_WAIT || state == TCP_LAST_ACK || state == TCP_CLOSING;
        return seq == rcv_nxt || (after_fin && seq == rcv_nxt.wrapping_sub(1));
    }
    let (Ok(rcv_wup), Ok(rcv_wnd)) = (
        read_kernel::<u32>(sk, o.tcp_rcv_wup),
        read_kernel::<u32>(sk, o.tcp_rcv_wnd),
    ) else {
        return false;
    };
    !before(seq, rcv_wup.wrapping_sub(rcv_wnd)) && !after(seq, rcv_wup.wrapping_add(rcv_wnd))
}

/// Marks the data endpoint a segment announces, in the server's words
/// (`227`/`229`: a passive port) or a client's (`PORT`/`EPRT`: its own
/// endpoint for active mode), within the marks' cap, and says so in the
/// record.
///
/// # Safety
/// `segment` is in a reserved ring buffer slot this program owns.
#[inline(always)]
pub(crate) unsafe fn mark_announcement<const APART: bool>(
    segment: *mut ControlSegment,
    d: &[u8; CONTROL_CAPTURE_BYTES],
    captured: u32,
    from_server: u32,
) {
    let kind = announcement_kind(d, captured, from_server);
    if kind == 0 {
        return;
    }
    // One walk of the reader, `pairs` a number rather than a branch.
    let port = announced_port(d, captured, kind & 1);
    if port == 0 {
        return;
    }
    let Some(role) = PORTS.get_ptr_mut(port) else {
        return;
    };
    // SAFETY: the caller's slot; `role` is a map value.
    unsafe {
        // No cap here: user space counts the marks and clears, within a
        // drain, any beyond its cap (and the ones it never asked for).
        if from_server != 0 {
            *role |= port_role::EXPECTED_DATA;
            (*segment).flags |= segment_flags::MARKED;
        } else {
            *role |= port_role::ACTIVE_EXPECTED;
            if APART {
                expect_active_apart(segment, port);
            } else {
                expect_active(segment, port);
            }
        }
        (*segment).marked_port = port as u16;
    }
}

/// [`expect_active`] as a subprogram, for the uprobe programs (`APART`):
/// its key on the stack would make the marking's stack 64 bytes, and a
/// uprobe program's function that large runs on a per-CPU stack where a
/// kernel gives it one (see `record::write_socket_ends`). Inlined in the
/// `cgroup_skb` programs: there a call costs 5.10's verifier the liveness
/// it prunes with, and the control channel's program ran past a million
/// instructions.
///
/// # Safety
/// As [`expect_active`].
#[inline(never)]
unsafe fn expect_active_apart(segment: *mut ControlSegment, port: u32) {
    // SAFETY: the caller's guarantee.
    unsafe { expect_active(segment, port) }
}

/// Notes the client's own endpoint a `PORT`/`EPRT` in `segment` announces
/// (`ACTIVE_EXPECT`) and says so in the record.
///
/// # Safety
/// `segment` is in a reserved ring buffer slot this program owns.
#[inline(always)]
unsafe fn expect_active(segment: *mut ControlSegment, port: u32) {
    // SAFETY: the caller's slot.
    unsafe {
        // The client's own address: the source of what it sends, which is
        // the socket's local end when it sends (egress) and the remote end
        // when it arrives.
        let ends = &raw const (*segment).ends;
        let addr = if (*segment).direction == direction::EGRESS {
            (*ends).local_addr
        } else {
            (*ends).remote_addr
        };
        let key = ActiveEndpoint {
            addr,
            port: port as u16,
            family: (*ends).family,
            _pad: 0,
        };
        let _ = ACTIVE_EXPECT.insert(&key, &bpf_ktime_get_boot_ns(), 0);
        (*segment).flags |= segment_flags::ACTIVE_MARKED;
    }
}

/// The bytes of a control record filled this far: the password never
/// leaves the kernel (a record that starts with `PASS`, `ACCT` or `ADAT`
/// has its argument overwritten with `*` up to the line end, which keeps
/// the lines and lengths intact; one further in still reaches the parser,
/// which drops its argument, and the recorder, which masks it), and the
/// server's word marks a data port before the client can connect (user
/// space learns of it from this record, and clears it); a client's
/// `PORT`/`EPRT` marks its own endpoint, before the server connects from
/// wherever it connects.
///
/// # Safety
/// `segment` is in a reserved ring buffer slot this program owns, its
/// `data`, `captured_len` and `flags` written.
#[inline(always)]
pub(crate) unsafe fn redact_and_mark(segment: *mut ControlSegment, from_server: u32) {
    // SAFETY: the caller's slot.
    unsafe {
        redact(segment);
        mark::<false>(segment, from_server);
    }
}

/// The masking half of [`redact_and_mark`].
///
/// # Safety
/// As [`redact_and_mark`].
#[inline(always)]
pub(crate) unsafe fn redact(segment: *mut ControlSegment) {
    // SAFETY: the caller's slot.
    unsafe {
        let d = &mut *(&raw mut (*segment).data);
        // The length and flags read back from the record before each loop:
        // a loop narrows the verifier's idea of a value at every exit.
        let captured_at = &raw const (*segment).captured_len;
        let fresh = || u32::from(core::ptr::read_volatile(captured_at));
        let flags = &raw mut (*segment).flags;
        let tail_from = || {
            if core::ptr::read_volatile(flags) & segment_flags::TAIL_APART != 0 {
                CONTROL_HEAD_BYTES as u32
            } else {
                u32::MAX
            }
        };
        mask_secrets(d, fresh, tail_from, || {
            core::ptr::write_volatile(
                flags,
                core::ptr::read_volatile(flags) | segment_flags::REDACTED,
            )
        });
    }
}

/// The marking half of [`redact_and_mark`], after [`redact`]; `APART`
/// for the uprobe programs (see [`expect_active_apart`]).
///
/// # Safety
/// As [`redact_and_mark`].
#[inline(always)]
pub(crate) unsafe fn mark<const APART: bool>(segment: *mut ControlSegment, from_server: u32) {
    // SAFETY: the caller's slot.
    unsafe {
        let d = &*(&raw const (*segment).data);
        let captured = u32::from(core::ptr::read_volatile(&raw const (*segment).captured_len));
        mark_announcement::<APART>(segment, d, captured, from_server);
    }
}

/// Zeroes what a TCP segment's record says of its packet (flags, TTLs, a
/// mark), for a record that is not one (a DNS answer, TLS plaintext).
///
/// # Safety
/// `segment` is in a reserved ring buffer slot this program owns.
#[inline(always)]
pub(crate) unsafe fn clear_packet_fields(segment: *mut ControlSegment) {
    // SAFETY: the caller's slot.
    unsafe {
        (*segment).tcp_flags = 0;
        (*segment).flags = 0;
        (*segment).ttl = 0;
        (*segment).usual_ttl = 0;
        (*segment)._pad = 0;
        (*segment).marked_port = 0;
        (*segment)._pad2 = [0; 6];
    }
}

/// How many of `len` bytes a record's head holds, 1..=CONTROL_HEAD_BYTES
/// (`len` at least 1), spelled so that every verifier sees both bounds:
/// older ones (5.10) learn no lower bound from `!= 0`, so the length is a
/// mask (through memory, which LLVM cannot see through) plus one. The
/// lengths are powers of two.
#[inline(always)]
pub(crate) fn head_len(len: u32) -> u32 {
    let less_one = len.min(CONTROL_HEAD_BYTES as u32) - 1;
    // SAFETY: a local variable.
    let less_one = unsafe { core::ptr::read_volatile(&less_one) };
    (less_one & (CONTROL_HEAD_BYTES as u32 - 1)) + 1
}

/// The length of a long record's tail, 1..=CONTROL_TAIL_BYTES, for `rest`
/// bytes past its head, spelled for the verifier as the head's length is.
#[inline(always)]
pub(crate) fn tail_len(rest: u32) -> u32 {
    let less_one = rest.min(CONTROL_TAIL_BYTES as u32) - 1;
    // SAFETY: a local variable.
    let less_one = unsafe { core::ptr::read_volatile(&less_one) };
    (less_one & (CONTROL_TAIL_BYTES as u32 - 1)) + 1
}

/// Sequence number order (RFC 1982).
#[inline(always)]
fn before(a: u32, b: u32) -> bool {
    (a.wrapping_sub(b) as i32) < 0
}

#[inline(always)]
fn after(a: u32, b: u32) -> bool {
    before(b, a)
}

/// An arriving packet of a traced connection: TCP will accept it, so its
/// TTL (hop limit) is noted by the connection's addresses and ports (by
/// tuple: the listener's packets are not noted, and a spoofed one cannot
/// push a real connection's entry out); a reset is reported with its TTL
/// and the usual one. Returns whether its story ends here: a reset
/// reported, or a packet of no traced connection, or one TCP refuses.
#[inline(always)]
fn note_arrival(
    ctx: &SkBuffContext,
    sk: u64,
    ip: &[u8; IPV6_HEADER],
    tcp: &[u8; TCP_HEADER as usize],
    family: u16,
    roles: u8,
) -> bool {
    let key = packet_ends(ip, tcp, family, true);
    if !traced(&key, roles) {
        return true;
    }
    let ttl = if family == AF_INET { ip[8] } else { ip[7] };
    if !acceptable(sk, tcp) {
        // A listener's handshake packets are kept apart (see HANDSHAKE_TTL).
        if tcp[13] & TCP_RST == 0
            && read_kernel::<u8>(sk, OFFSETS.get(0).map_or(NO_FIELD, |o| o.sock_state))
                == Ok(TCP_LISTEN)
        {
            let _ = HANDSHAKE_TTL.insert(&key, &ttl, 0);
        }
        return true;
    }
    // 0 for none: no packet arrives with TTL 0. SAFETY: map values read
    // by value at once.
    let known: u8 = match unsafe { PEER_TTL.get(&key) } {
        Some(value) => *value,
        None => match unsafe { HANDSHAKE_TTL.get(&key) } {
            Some(value) => *value,
            None => 0,
        },
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
        (*segment).marked_port = 0;
        (*segment)._pad2 = [0; 6];
        (*segment).flags = segment_flags::RESET_TTL;
        (*segment).ttl = ttl;
        (*segment).usual_ttl = known;
        fill_control_record(record, ctx, ip, tcp, family, direction::INGRESS, 0);
    }
    submit_record(entry);
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

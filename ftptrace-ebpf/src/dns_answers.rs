//! DNS answers a socket on this host receives (UDP from port 53), from a
//! `cgroup_skb` ingress program on the cgroup v2 root beside the control
//! channel's: the first bytes of each answer, so that user space can name
//! the server an FTP client dialled (a name that resolves to another
//! address on each try is a pattern across sessions). Only answers, only
//! within a per-CPU budget; never drops anything.

use aya_ebpf::{
    EbpfContext as _,
    helpers::{bpf_get_smp_processor_id, bpf_ktime_get_boot_ns, bpf_skb_load_bytes},
    macros::cgroup_skb,
    programs::SkBuffContext,
};
use ftptrace_common::{
    ControlRecord, DNS_ANSWERS_PER_SECOND, EventHeader, ProbeId, WIRE_VERSION, direction,
};

use crate::{
    DNS_BUDGET, EVENTS, OFFSETS,
    control_channel::{clear_packet_fields, head_len},
    ip_packet::{IpHead, ip_head, packet_ends},
    kernel_read::net_inum,
    record::{count_lost, count_throttled, submit_record},
};

const DNS_PORT: u16 = 53;
const IPPROTO_UDP: u32 = 17;
const UDP_HEADER: u32 = 8;
/// A DNS message's fixed header.
const DNS_HEADER: u32 = 12;
const BUDGET_WINDOW_NS: u64 = 1_000_000_000;

/// `cgroup_skb/ingress`: a packet about to be handed to a socket. Always 1:
/// never drop.
#[cgroup_skb(ingress)]
pub fn dns_ingress(ctx: SkBuffContext) -> i32 {
    let _ = try_dns_answer(&ctx);
    1
}

/// This CPU's answers in the current second.
#[repr(C)]
pub struct Budget {
    window_start: u64,
    used: u64,
}

#[inline(always)]
fn try_dns_answer(ctx: &SkBuffContext) -> Result<(), i64> {
    let skb = ctx.skb.skb;
    // SAFETY: a context field, loaded whole as the context rules want.
    let remote_port = unsafe { core::ptr::read_volatile(&raw const (*skb).remote_port) };
    // Network order in the upper half of a big-endian u32.
    if u32::from_be(remote_port) as u16 != DNS_PORT {
        return Ok(());
    }
    let Some(IpHead {
        bytes: ip,
        family,
        transport_at: udp_at,
    }) = ip_head(ctx, IPPROTO_UDP)?
    else {
        return Ok(());
    };
    let dns_at = udp_at + UDP_HEADER;
    let len = ctx.skb.len();
    if len < dns_at + DNS_HEADER {
        return Ok(());
    }
    let head: [u8; DNS_HEADER as usize] = ctx.skb.load(dns_at as usize)?;
    // QR set (an answer), and at least one answer record.
    if head[2] & 0x80 == 0 || (head[6] == 0 && head[7] == 0) {
        return Ok(());
    }
    if !within_budget() {
        count_throttled();
        return Ok(());
    }
    let message_len = len - dns_at;
    let copy = head_len(message_len);
    let udp: [u8; UDP_HEADER as usize] = ctx.skb.load(udp_at as usize)?;

    let Some(mut entry) = EVENTS.reserve::<ControlRecord>(0) else {
        count_lost();
        return Ok(());
    };
    let record = entry.as_mut_ptr();
    // SAFETY: `record` is the reserved, exclusively owned ring buffer slot;
    // every field user space reads is written below before it is submitted.
    unsafe {
        let segment = &raw mut (*record).segment;
        let data = &raw mut (*segment).data;
        // `copy` is 1..=CONTROL_HEAD_BYTES, within `data`.
        if bpf_skb_load_bytes(ctx.as_ptr(), dns_at, data.cast(), copy) != 0 {
            entry.discard(0);
            return Ok(());
        }
        (*segment).captured_len = copy as u16;
        (*segment).payload_len = message_len;
        (*segment).seq = 0;
        (*segment).direction = direction::INGRESS;
        clear_packet_fields(segment);
        (*segment).cookie = 0;
        (*segment).ends = packet_ends(&ip, &udp, family, true);
        // The socket's address as a number (see control_channel.rs), for
        // its namespace.
        let sk_field = &raw mut (*segment).sk;
        core::ptr::write_volatile(sk_field, (*skb).__bindgen_anon_2.sk as u64);
        let sk = core::ptr::read_volatile(sk_field);
        let netns = match OFFSETS.get(0) {
            Some(o) => net_inum(sk, o.sock_net, o),
            None => 0,
        };
        (*record).header = EventHeader {
            version: WIRE_VERSION,
            probe: ProbeId::DnsAnswer as u16,
            cpu: bpf_get_smp_processor_id(),
            boot_ns: bpf_ktime_get_boot_ns(),
            pid_tgid: 0,
            comm: [0; 16],
            netns,
            _pad: 0,
        };
    }
    submit_record(entry);
    Ok(())
}

/// Whether this CPU may copy one more answer this second, and counts it.
#[inline(always)]
fn within_budget() -> bool {
    let Some(budget) = DNS_BUDGET.get_ptr_mut(0) else {
        return false;
    };
    // SAFETY: a helper without arguments; a per-CPU map value, written in
    // place while preemption is off.
    unsafe {
        let now = bpf_ktime_get_boot_ns();
        if now.wrapping_sub((*budget).window_start) >= BUDGET_WINDOW_NS {
            (*budget).window_start = now;
            (*budget).used = 1;
            true
        } else if (*budget).used < u64::from(DNS_ANSWERS_PER_SECOND) {
            (*budget).used += 1;
            true
        } else {
            false
        }
    }
}

//! Packets the kernel dropped (`skb:kfree_skb`), for FTP connections
//! only, with the kernel's drop reason where it gives one (5.17+) and the
//! code that freed the packet. Fires for every dropped packet on the host:
//! the port test comes first.

use ftptrace_common::{ProbeId, record_flags};

use crate::{
    OFFSETS,
    kernel_read::{read_kernel, skb_netns},
    nesting::raw_tracepoint_pair,
    record::{count_unreadable, emit, packet_record},
};

raw_tracepoint_pair! {
    /// `kfree_skb(struct sk_buff *skb, void *location)` (before 5.17: no reason).
    kfree_skb, kfree_skb_nested,
    tracepoint = "kfree_skb", copy_section = "kfree_skb_nested",
    ProbeId::KfreeSkb, |ctx| {
        count_unreadable(try_drop(ctx.arg(0), ctx.arg(1), 0, 0));
    }
}

raw_tracepoint_pair! {
    /// `kfree_skb(struct sk_buff *skb, void *location, enum skb_drop_reason reason, ...)`
    kfree_skb_reason, kfree_skb_reason_nested,
    tracepoint = "kfree_skb", copy_section = "kfree_skb_reason_nested",
    ProbeId::KfreeSkb, |ctx| {
        let reason: u32 = ctx.arg(2);
        count_unreadable(try_drop(
            ctx.arg(0),
            ctx.arg(1),
            i64::from(reason),
            record_flags::HAS_ARG,
        ));
    }
}

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

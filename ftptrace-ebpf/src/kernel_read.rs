//! Reading kernel memory through the offsets user space found in BTF, and
//! the port test every program makes first.

use aya_ebpf::helpers::bpf_probe_read_kernel;
use ftptrace_common::{KernelOffsets, NO_FIELD};

use crate::{OFFSETS, PORTS};

// include/net/tcp_states.h, unchanged since they were introduced.
pub const TCP_TIME_WAIT: u8 = 6;
pub const TCP_LISTEN: u8 = 10;
pub const TCP_CLOSE: i32 = 7;
pub const TCP_NEW_SYN_RECV: u8 = 12;
pub const IPPROTO_TCP_U8: u8 = 6;

/// A `T` at `base + offset`; an error for an offset this kernel lacks or a
/// NULL base.
#[inline(always)]
pub fn read_kernel<T>(base: u64, offset: u16) -> Result<T, i64> {
    if offset == NO_FIELD || base == 0 {
        return Err(0);
    }
    // SAFETY: bpf_probe_read_kernel faults safely on a bad address.
    unsafe { bpf_probe_read_kernel((base + u64::from(offset)) as *const T) }.map_err(i64::from)
}

/// Inode number of the network namespace that the `struct net *` stored at
/// `at + offset` points to; 0 when unknown.
#[inline(always)]
pub fn net_inum(at: u64, offset: u16, o: &KernelOffsets) -> u32 {
    match read_kernel::<u64>(at, offset) {
        Ok(net) if net != 0 => read_kernel::<u32>(net, o.net_inum).unwrap_or(0),
        _ => 0,
    }
}

/// Network namespace of a packet, through the device it is on.
#[inline(always)]
pub fn skb_netns(skb: u64) -> u32 {
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
pub fn skb_segs(skb: u64) -> i64 {
    match OFFSETS.get(0) {
        Some(o) => read_kernel::<u16>(skb, o.skb_tcp_segs).map_or(0, i64::from),
        None => 0,
    }
}

/// The port's `port_role` bits; 0 for a port ftptrace does not trace.
#[inline(always)]
pub fn port_roles(port: u16) -> u8 {
    if port == 0 {
        return 0;
    }
    PORTS.get(u32::from(port)).copied().unwrap_or(0)
}

#[inline(always)]
pub fn is_ftp(port: u16) -> bool {
    port_roles(port) != 0
}

//! Reading kernel memory through the offsets user space found in BTF, and
//! the port test every program makes first.

use aya_ebpf::{
    Global,
    helpers::{bpf_ktime_get_boot_ns, bpf_probe_read_kernel, bpf_skc_to_tcp_sock},
};
use ftptrace_common::{ActiveEndpoint, Endpoints, KernelOffsets, NO_FIELD, port_role};

use crate::{ACTIVE_EXPECT, OFFSETS, PORTS, SCRATCH, SETTINGS};

// include/net/tcp_states.h, unchanged since they were introduced.
pub const TCP_ESTABLISHED: u8 = 1;
pub const TCP_SYN_SENT: u8 = 2;
pub const TCP_FIN_WAIT1: u8 = 4;
pub const TCP_FIN_WAIT2: u8 = 5;
pub const TCP_TIME_WAIT: u8 = 6;
pub const TCP_CLOSE: i32 = 7;
pub const TCP_CLOSE_WAIT: u8 = 8;
pub const TCP_LAST_ACK: u8 = 9;
pub const TCP_LISTEN: u8 = 10;
pub const TCP_CLOSING: u8 = 11;
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

// Where the BTF tracepoint reads a socket, in bytes (`ftptrace_common::
// globals`). The loader sets them in `.rodata`, which it freezes before
// loading the programs: the verifier then knows each as a constant, and a
// load at a constant offset from a BTF-typed pointer, inside one member of
// its type, is a plain load (one that reads 0 rather than faults), with no
// helper call.
#[unsafe(no_mangle)]
static SOCK_PORTPAIR_OFFSET: Global<u32> = Global::new(0);
#[unsafe(no_mangle)]
static SOCK_FAMILY_OFFSET: Global<u32> = Global::new(0);
#[unsafe(no_mangle)]
static SOCK_STATE_OFFSET: Global<u32> = Global::new(0);
#[unsafe(no_mangle)]
static TCP_SPORT_OFFSET: Global<u32> = Global::new(0);

/// A `T` at `offset` into the kernel object a BTF-typed pointer points to.
/// The verifier checks that the read lands inside one member of the type
/// (one read per member: one spanning two is refused).
#[inline(always)]
fn btf_read<T: Copy>(object: u64, offset: &Global<u32>) -> T {
    let at = object + u64::from(offset.load());
    // SAFETY: the kernel makes a load through a BTF-typed pointer one that
    // cannot fault (BPF_PROBE_MEM): a bad address reads as 0.
    unsafe { core::ptr::read_volatile(at as *const T) }
}

/// [`crate::record::sock_common`]'s bytes, from a BTF-typed `struct sock *`
/// (a BTF tracepoint's argument): three loads, no helper call.
#[inline(always)]
pub fn btf_sock_common(sk: u64) -> [u8; 8] {
    let ports = btf_read::<u32>(sk, &SOCK_PORTPAIR_OFFSET).to_ne_bytes();
    let family = btf_read::<u16>(sk, &SOCK_FAMILY_OFFSET).to_ne_bytes();
    let state = btf_read::<u8>(sk, &SOCK_STATE_OFFSET);
    [
        ports[0], ports[1], ports[2], ports[3], family[0], family[1], state, 0,
    ]
}

/// A BTF-typed full socket's `inet_sport` (host order): past `struct
/// sock`, so through the kernel's own cast to `struct tcp_sock`, which is
/// NULL (port 0 here) for anything but a full TCP socket.
#[inline(always)]
pub fn btf_inet_sport(sk: u64) -> u16 {
    // SAFETY: the helper checks the socket before it casts.
    let tcp = unsafe { bpf_skc_to_tcp_sock(sk as *mut core::ffi::c_void) };
    if tcp.is_null() {
        return 0;
    }
    u16::from_be(btf_read(tcp as u64, &TCP_SPORT_OFFSET))
}

/// A pointer the verifier types (a context's socket) as a plain number:
/// stored in map memory and read back. 0 when there is no room.
#[inline(always)]
pub fn as_number(pointer: u64) -> u64 {
    let Some(slot) = SCRATCH.get_ptr_mut(0) else {
        return 0;
    };
    // SAFETY: this CPU's slot; programs do not nest on a CPU here.
    unsafe {
        core::ptr::write_volatile(slot, pointer);
        core::ptr::read_volatile(slot)
    }
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

/// Whether a connection with these ends is traced: a port with a role of
/// its own, or an active-mode endpoint a client announced (its port is only
/// a hint; the client's address must match).
#[inline(always)]
pub fn traced(ends: &Endpoints, roles: u8) -> bool {
    roles & port_role::TRACED != 0
        || (roles & port_role::ACTIVE_EXPECTED != 0 && active_expected(ends))
}

/// One of the connection's ends is an announced active-mode endpoint that
/// is still fresh; a hit keeps it fresh while the connection lives.
#[inline(always)]
pub fn active_expected(ends: &Endpoints) -> bool {
    endpoint_expected(ends, true) || endpoint_expected(ends, false)
}

/// Whether one end of `ends` (the remote one, or the local one) is an
/// active-mode data endpoint a `PORT`/`EPRT` announced, within the marks'
/// lifetime; a mark past half of it is renewed.
#[inline(always)]
pub fn endpoint_expected(ends: &Endpoints, remote: bool) -> bool {
    let ttl = match SETTINGS.get(0) {
        Some(settings) => settings.expect_ttl_ns,
        None => return false,
    };
    // SAFETY: a helper call with no arguments.
    let now = unsafe { bpf_ktime_get_boot_ns() };
    let (addr, port) = if remote {
        (ends.remote_addr, ends.remote_port)
    } else {
        (ends.local_addr, ends.local_port)
    };
    let key = ActiveEndpoint {
        addr,
        port,
        family: ends.family,
        _pad: 0,
    };
    // SAFETY: a map value read by value at once.
    let at = match unsafe { ACTIVE_EXPECT.get(&key) } {
        Some(at) => *at,
        None => return false,
    };
    let age = now.wrapping_sub(at);
    if age >= ttl {
        return false;
    }
    if age > ttl / 2 {
        let _ = ACTIVE_EXPECT.insert(&key, &now, 0);
    }
    true
}

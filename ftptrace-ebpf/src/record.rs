//! Building the records every program sends: a socket's (its state,
//! addresses and ports, read through the BTF offsets) or a packet's (its
//! TCP/IP headers, for events with no socket), and putting them on the
//! ring buffer, counting those that find no room.

use aya_ebpf::{
    bindings::BPF_RB_NO_WAKEUP,
    helpers::{
        bpf_get_current_comm, bpf_get_current_pid_tgid, bpf_get_smp_processor_id,
        bpf_ktime_get_boot_ns, generated,
    },
};
use ftptrace_common::{
    AF_INET, AF_INET6, Endpoints, Event, EventHeader, IPPROTO_TCP, KernelOffsets, ProbeId,
    SockRecord, WIRE_VERSION, port_role, record_flags,
};

use crate::{
    EVENTS, LOST, OFFSETS, THROTTLED, UNREADABLE,
    kernel_read::{
        IPPROTO_TCP_U8, TCP_NEW_SYN_RECV, TCP_TIME_WAIT, endpoint_expected, net_inum, port_roles,
        read_kernel, traced,
    },
};

/// Emits a record about socket `sk` (or request socket), if it is FTP.
/// `check_protocol` for the tracepoints that also fire for SCTP and MPTCP.
/// Inlined: BPF calls take at most five arguments.
#[inline(always)]
pub fn try_sock_event(
    probe: ProbeId,
    sk: u64,
    check_protocol: bool,
    arg1: i64,
    arg2: i64,
    flags: u8,
) -> Result<(), i64> {
    try_sock_event_with(probe, sk, check_protocol, flags, |_| Ok((arg1, arg2)))
}

/// [`try_sock_event`] with arguments read from the socket (`args`), only
/// once it is known to be FTP: every other socket costs the port test alone.
#[inline(always)]
pub fn try_sock_event_with(
    probe: ProbeId,
    sk: u64,
    check_protocol: bool,
    flags: u8,
    args: impl FnOnce(&KernelOffsets) -> Result<(i64, i64), i64>,
) -> Result<(), i64> {
    if sk == 0 {
        return Ok(());
    }
    let o = OFFSETS.get(0).ok_or(0)?;
    let Some(socket) = ftp_socket(sk, o, sock_common(sk, o)?, check_protocol)? else {
        return Ok(());
    };
    let (arg1, arg2) = args(o)?;
    emit_sock(probe, sk, o, &socket, arg1, arg2, flags);
    Ok(())
}

/// A socket that passed the FTP filter: its ends, and its state.
pub struct FtpSocket {
    pub ends: Endpoints,
    pub state: u8,
}

/// The ports, family and state of socket `sk` in one read (`struct
/// sock_common` keeps `skc_dport`, `skc_num`, `skc_family`, `skc_state`
/// side by side; user space checks it). Every socket on the host passes
/// here, so it is all the filter reads before the port test.
#[inline(always)]
pub fn sock_common(sk: u64, o: &KernelOffsets) -> Result<[u8; 8], i64> {
    read_kernel(sk, o.sock_dport)
}

/// The state byte of [`sock_common`]'s read.
#[inline(always)]
pub fn common_state(common: &[u8; 8]) -> u8 {
    common[6]
}

/// Socket `sk` with its [`sock_common`] bytes, if it is an FTP socket
/// the settings trace.
#[inline(always)]
pub fn ftp_socket(
    sk: u64,
    o: &KernelOffsets,
    common: [u8; 8],
    check_protocol: bool,
) -> Result<Option<FtpSocket>, i64> {
    let inet_sport = || read_kernel::<u16>(sk, o.inet_sport).map(u16::from_be);
    match port_test(common, inet_sport)? {
        Some(hit) => ftp_socket_of(sk, o, hit, check_protocol),
        None => Ok(None),
    }
}

/// A socket whose ports have FTP roles: what the port test read.
pub struct PortHit {
    roles: u8,
    local_port: u16,
    remote_port: u16,
    family: u16,
    state: u8,
}

/// The port test on a socket's [`sock_common`] bytes: its ports, if one
/// has a role. `skc_num` is the local port of full, request and time-wait
/// sockets alike, except that a closing socket gives its port back (0)
/// before the tracepoint fires; then the full socket's `inet_sport` (host
/// order, read by `inet_sport` only then) still has it.
#[inline(always)]
pub fn port_test(
    common: [u8; 8],
    inet_sport: impl FnOnce() -> Result<u16, i64>,
) -> Result<Option<PortHit>, i64> {
    let remote_port = u16::from_be_bytes([common[0], common[1]]);
    let state = common[6];
    let mut local_port = u16::from_ne_bytes([common[2], common[3]]);
    if local_port == 0 && full_socket(state) {
        local_port = inet_sport()?;
    }
    let roles = port_roles(local_port) | port_roles(remote_port);
    if roles == 0 {
        return Ok(None);
    }
    Ok(Some(PortHit {
        roles,
        local_port,
        remote_port,
        family: u16::from_ne_bytes([common[4], common[5]]),
        state,
    }))
}

/// A request or time-wait socket is a `sock_common` only.
#[inline(always)]
fn full_socket(state: u8) -> bool {
    state != TCP_TIME_WAIT && state != TCP_NEW_SYN_RECV
}

/// Socket `sk`, which passed the port test, if it is an FTP socket the
/// settings trace.
#[inline(always)]
pub fn ftp_socket_of(
    sk: u64,
    o: &KernelOffsets,
    hit: PortHit,
    check_protocol: bool,
) -> Result<Option<FtpSocket>, i64> {
    let PortHit {
        roles,
        local_port,
        remote_port,
        family,
        state,
    } = hit;
    if check_protocol
        && full_socket(state)
        && read_kernel::<u16>(sk, o.sock_protocol)? != IPPROTO_TCP
    {
        return Ok(None);
    }
    let mut ends = Endpoints {
        family,
        local_port,
        remote_port,
        ..Endpoints::NONE
    };
    if family == AF_INET {
        let local: [u8; 4] = read_kernel(sk, o.sock_saddr).unwrap_or([0; 4]);
        let remote: [u8; 4] = read_kernel(sk, o.sock_daddr).unwrap_or([0; 4]);
        ends.local_addr[..4].copy_from_slice(&local);
        ends.remote_addr[..4].copy_from_slice(&remote);
    } else {
        ends.local_addr = read_kernel(sk, o.sock_v6_saddr).unwrap_or([0; 16]);
        ends.remote_addr = read_kernel(sk, o.sock_v6_daddr).unwrap_or([0; 16]);
    }
    if !traced(&ends, roles) {
        return Ok(None);
    }
    Ok(Some(FtpSocket { ends, state }))
}

/// Sends `probe`'s record about an FTP socket.
#[inline(always)]
pub fn emit_sock(
    probe: ProbeId,
    sk: u64,
    o: &KernelOffsets,
    socket: &FtpSocket,
    arg1: i64,
    arg2: i64,
    flags: u8,
) {
    let record = SockRecord {
        sk,
        arg1,
        arg2,
        ends: socket.ends,
        state: socket.state,
        flags,
        _pad: [0; 6],
    };
    emit(probe, net_inum(sk, o.sock_net, o), record);
}

/// The TCP/IP headers of `skb` as a record from this host's point of view
/// (`arriving`: the destination is the local end), if the packet is TCP and
/// one of its ports is FTP. The `state` byte carries the TCP flags.
#[inline(always)]
pub fn packet_record(
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
    let roles = port_roles(src_port) | port_roles(dst_port);
    if roles == 0 {
        return Ok(None);
    }
    // FIN, SYN, RST, PSH, ACK, URG, ECE, CWR.
    let tcp_flags: u8 = read_kernel(head, transport + 13)?;
    let ip = head + u64::from(network);
    let mut src = [0u8; 16];
    let mut dst = [0u8; 16];
    let family = match read_kernel::<u8>(ip, 0)? >> 4 {
        4 if read_kernel::<u8>(ip, 9)? == IPPROTO_TCP_U8 => {
            let s: [u8; 4] = read_kernel(ip, 12)?;
            let d: [u8; 4] = read_kernel(ip, 16)?;
            src[..4].copy_from_slice(&s);
            dst[..4].copy_from_slice(&d);
            AF_INET
        }
        6 if read_kernel::<u8>(ip, 6)? == IPPROTO_TCP_U8 => {
            src = read_kernel(ip, 8)?;
            dst = read_kernel(ip, 24)?;
            AF_INET6
        }
        _ => return Ok(None),
    };
    let ends = Endpoints::of_packet(family, (src, src_port), (dst, dst_port), arriving);
    if !traced(&ends, roles) {
        return Ok(None);
    }
    Ok(Some(SockRecord {
        sk: 0,
        arg1,
        arg2,
        ends,
        state: tcp_flags,
        flags: flags | record_flags::NO_SOCKET,
        _pad: [0; 6],
    }))
}

/// The header every record starts with, for `probe` in network namespace
/// `netns`, with whoever is on the CPU.
#[inline(always)]
pub fn header(probe: ProbeId, netns: u32) -> EventHeader {
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

/// [`header`], written field by field into a ring buffer slot rather than
/// built on the stack (see [`write_socket_ends`]).
///
/// # Safety
/// `at` is in a reserved ring buffer slot this program owns.
#[inline(always)]
pub unsafe fn write_header(at: *mut EventHeader, probe: ProbeId, netns: u32) {
    // SAFETY: the caller's slot; plain helper calls, the comm written
    // straight into it.
    unsafe {
        (*at).version = WIRE_VERSION;
        (*at).probe = probe as u16;
        (*at).cpu = bpf_get_smp_processor_id();
        (*at).boot_ns = bpf_ktime_get_boot_ns();
        (*at).pid_tgid = bpf_get_current_pid_tgid();
        let comm = &raw mut (*at).comm;
        if generated::bpf_get_current_comm(comm.cast(), 16) != 0 {
            *comm = [0; 16];
        }
        (*at).netns = netns;
        (*at)._pad = 0;
    }
}

/// The ends of socket `sk` written into `ends` (a ring buffer slot), with
/// its port roles and state: `roles | state << 8`, or -1 when it is not
/// (or no longer) an FTP socket the settings trace, or cannot be read.
///
/// For the uprobe programs, which the kernel may preempt: a kernel that
/// gives a program's function a per-CPU private stack once it uses 64
/// bytes or more (7.x does for uprobes) lets another task's run of the
/// same program overwrite it mid-run, and a spilled pointer read back as
/// garbage oopses the kernel. So no [`FtpSocket`] on the stack here: the
/// addresses go from the socket straight into the slot. A subprogram of
/// its own, to count its stack apart from its callers'.
///
/// # Safety
/// `ends` is in a reserved ring buffer slot this program owns.
#[inline(never)]
pub unsafe fn write_socket_ends(ends: *mut Endpoints, sk: u64) -> i64 {
    // SAFETY: the caller's slot.
    unsafe {
        let found = write_socket_ports(ends, sk);
        if found < 0 {
            return -1;
        }
        read_socket_addresses(ends, sk);
        // As `traced`, each lookup a subprogram of its own.
        let roles = found as u8;
        let traced = roles & port_role::TRACED != 0
            || (roles & port_role::ACTIVE_EXPECTED != 0
                && (endpoint_expected_apart(ends, true) || endpoint_expected_apart(ends, false)));
        if !traced {
            return -1;
        }
        found
    }
}

/// [`endpoint_expected`] as a subprogram, for [`write_socket_ends`]: its
/// key stays on its own stack.
///
/// # Safety
/// `ends` is in a reserved ring buffer slot this program owns, written.
#[inline(never)]
unsafe fn endpoint_expected_apart(ends: *const Endpoints, remote: bool) -> bool {
    // SAFETY: the caller's slot.
    endpoint_expected(unsafe { &*ends }, remote)
}

/// [`port_test`] for [`write_socket_ends`]: the [`sock_common`] bytes read
/// into the slot and the family and ports written there at once, so that
/// little stays in registers (and on the stack) across the calls.
///
/// # Safety
/// As [`write_socket_ends`].
#[inline(never)]
unsafe fn write_socket_ports(ends: *mut Endpoints, sk: u64) -> i64 {
    let Some(o) = OFFSETS.get(0) else {
        return -1;
    };
    // SAFETY: the caller's slot, whose first 8 bytes hold the read until
    // they are rewritten as the family and ports; the helper faults safely.
    unsafe {
        let raw = ends.cast::<[u8; 8]>();
        if o.sock_dport == ftptrace_common::NO_FIELD
            || sk == 0
            || generated::bpf_probe_read_kernel(
                raw.cast(),
                8,
                (sk + u64::from(o.sock_dport)) as *const core::ffi::c_void,
            ) != 0
        {
            return -1;
        }
        let common = *raw;
        let state = common_state(&common);
        (*ends).remote_port = u16::from_be_bytes([common[0], common[1]]);
        (*ends).local_port = u16::from_ne_bytes([common[2], common[3]]);
        (*ends).family = u16::from_ne_bytes([common[4], common[5]]);
        (*ends)._pad = 0;
        // As `port_test`: a closing socket's port is in `inet_sport`.
        let local = &raw mut (*ends).local_port;
        if *local == 0 && full_socket(state) {
            if o.inet_sport == ftptrace_common::NO_FIELD
                || generated::bpf_probe_read_kernel(
                    local.cast(),
                    2,
                    (sk + u64::from(o.inet_sport)) as *const core::ffi::c_void,
                ) != 0
            {
                return -1;
            }
            *local = u16::from_be(*local);
        }
        let roles = port_roles(*local) | port_roles((*ends).remote_port);
        if roles == 0 {
            return -1;
        }
        i64::from(roles) | i64::from(state) << 8
    }
}

/// The addresses of socket `sk`, of the family `ends` already holds, read
/// straight into `ends`; zeros for what cannot be read. A subprogram of
/// its own for the reason [`write_socket_ends`] is one.
///
/// # Safety
/// As [`write_socket_ends`].
#[inline(never)]
unsafe fn read_socket_addresses(ends: *mut Endpoints, sk: u64) {
    // SAFETY: the caller's slot.
    unsafe {
        (*ends).local_addr = [0; 16];
        (*ends).remote_addr = [0; 16];
        let Some(o) = OFFSETS.get(0) else {
            return;
        };
        if (*ends).family == AF_INET {
            read_address(&raw mut (*ends).local_addr, 4, sk, o.sock_saddr);
            read_address(&raw mut (*ends).remote_addr, 4, sk, o.sock_daddr);
        } else {
            read_address(&raw mut (*ends).local_addr, 16, sk, o.sock_v6_saddr);
            read_address(&raw mut (*ends).remote_addr, 16, sk, o.sock_v6_daddr);
        }
    }
}

/// Reads `len` bytes of socket `sk` at `offset` into `to`, zeroed again if
/// the read fails.
///
/// # Safety
/// `to` is in a reserved ring buffer slot this program owns.
#[inline(always)]
unsafe fn read_address(to: *mut [u8; 16], len: u32, sk: u64, offset: u16) {
    if offset == ftptrace_common::NO_FIELD {
        return;
    }
    // SAFETY: the caller's slot; the helper faults safely.
    unsafe {
        let from = (sk + u64::from(offset)) as *const core::ffi::c_void;
        if generated::bpf_probe_read_kernel(to.cast(), len, from) != 0 {
            *to = [0; 16];
        }
    }
}

/// [`emit_sock`] for the uprobe programs: the record built in its slot
/// (see [`write_socket_ends`]), not on the stack.
#[inline(never)]
pub fn emit_sock_in_place(probe: ProbeId, sk: u64, arg1: i64, arg2: i64) {
    if sk == 0 {
        return;
    }
    let Some(mut entry) = EVENTS.reserve::<Event>(0) else {
        count_lost();
        return;
    };
    let event = entry.as_mut_ptr();
    // SAFETY: the reserved slot, every field written before it is
    // submitted.
    unsafe {
        let record = &raw mut (*event).record;
        let found = write_socket_ends(&raw mut (*record).ends, sk);
        if found < 0 {
            entry.discard(0);
            return;
        }
        (*record).sk = sk;
        (*record).arg1 = arg1;
        (*record).arg2 = arg2;
        (*record).state = (found >> 8) as u8;
        (*record).flags = 0;
        (*record)._pad = [0; 6];
        let netns = match OFFSETS.get(0) {
            Some(o) => net_inum(sk, o.sock_net, o),
            None => 0,
        };
        write_header(&raw mut (*event).header, probe, netns);
    }
    submit_record(entry);
}

#[inline(always)]
pub fn emit(probe: ProbeId, netns: u32, record: SockRecord) {
    let Some(mut entry) = EVENTS.reserve::<Event>(0) else {
        count_lost();
        return;
    };
    entry.write(Event {
        header: header(probe, netns),
        record,
    });
    submit_record(entry);
}

/// Submits a record without waking user space, which drains on its own
/// clock: a wakeup costs more than the record, and the kernel's "first
/// record of an empty ring" rule would have every commit read the
/// consumer's position, a cache line user space writes per record.
#[inline(always)]
pub fn submit_record<T>(entry: aya_ebpf::maps::ring_buf::RingBufEntry<T>) {
    entry.submit(BPF_RB_NO_WAKEUP.into());
}

/// Counts a program run that could not read what it needed, if `result`
/// says so.
#[inline(always)]
pub fn count_unreadable<T>(result: Result<T, i64>) {
    if result.is_err()
        && let Some(count) = UNREADABLE.get_ptr_mut(0)
    {
        // SAFETY: per-CPU slot, as in `count_lost`.
        unsafe { *count += 1 };
    }
}

/// Counts a control segment its connection's budget left out.
#[inline(always)]
pub fn count_throttled() {
    if let Some(count) = THROTTLED.get_ptr_mut(0) {
        // SAFETY: per-CPU slot, as in `count_lost`.
        unsafe { *count += 1 };
    }
}

#[inline(always)]
pub fn count_lost() {
    if let Some(lost) = LOST.get_ptr_mut(0) {
        // SAFETY: per-CPU slot. Only a uprobe program can be preempted
        // between the read and the write, and then lose a count to the
        // same CPU's other task: rare, and never a wrong story.
        unsafe { *lost += 1 };
    }
}

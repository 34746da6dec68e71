//! The TCP and socket tracepoints, as raw tracepoints. Arguments are the
//! tracepoints' `TP_PROTO`. Where a kernel version added an argument there
//! are two programs: a raw tracepoint program may not read more arguments
//! than the tracepoint has, and the loader picks by the tracepoint's
//! `format` file. `inet_sock_set_state`, which every socket on the host
//! fires, is also a BTF tracepoint, tried first.

use aya_ebpf::{macros::btf_tracepoint, programs::BtfTracePointContext};
use ftptrace_common::{KernelOffsets, ProbeId, record_flags};

use crate::{
    OFFSETS, SETTINGS,
    kernel_read::{
        TCP_CLOSE, TCP_LISTEN, TCP_SYN_SENT, btf_inet_sport, btf_sock_common, net_inum,
        read_kernel, skb_netns, skb_segs,
    },
    nesting::{self, raw_tracepoint_pair},
    record::{
        FtpSocket, common_state, count_unreadable, emit, emit_sock, ftp_socket, ftp_socket_of,
        packet_record, port_test, sock_common, try_sock_event, try_sock_event_with,
    },
};

raw_tracepoint_pair! {
    /// `inet_sock_set_state(const struct sock *sk, int oldstate, int newstate)`
    inet_sock_set_state, inet_sock_set_state_nested,
    tracepoint = "inet_sock_set_state", copy_section = "inet_sock_set_state_nested",
    ProbeId::InetSockSetState, |ctx| {
        set_state(ctx.arg(0), ctx.arg(1), ctx.arg(2));
    }
}

/// `inet_sock_set_state` as a BTF tracepoint (5.5+): the same event, with
/// `sk` typed by BTF. Every socket's state changes pass here, and most are
/// not FTP: the filter reads the ports, family and state with plain loads at
/// offsets fixed at load time (`kernel_read::btf_sock_common`) instead of a
/// `bpf_probe_read_kernel` call, which was most of a hit's cost.
#[btf_tracepoint(function = "inet_sock_set_state")]
pub fn inet_sock_set_state_btf(ctx: BtfTracePointContext) -> i32 {
    let running = nesting::mark_running(ProbeId::InetSockSetState);
    set_state_btf(ctx.arg(0), ctx.arg(1), ctx.arg(2));
    nesting::unmark_running(running);
    0
}

/// [`inet_sock_set_state_btf`] while it is interrupted by itself
/// (`nesting`; its own section, as for the raw pair).
#[btf_tracepoint(function = "inet_sock_set_state_nested")]
pub fn inet_sock_set_state_btf_nested(ctx: BtfTracePointContext) -> i32 {
    if nesting::take_nested(ProbeId::InetSockSetState) {
        set_state_btf(ctx.arg(0), ctx.arg(1), ctx.arg(2));
    }
    0
}

#[inline(always)]
fn set_state(sk: u64, old: i32, new: i32) {
    count_unreadable(try_set_state(sk, old, new));
}

/// The state change, and on kernels without an error-report hook the error
/// a socket entering CLOSE had reported just before: one filter for both.
#[inline(always)]
fn try_set_state(sk: u64, old: i32, new: i32) -> Result<(), i64> {
    if sk == 0 {
        return Ok(());
    }
    let o = OFFSETS.get(0).ok_or(0)?;
    let inet_sport = || match unbound(new) {
        true => Ok(0),
        false => read_kernel::<u16>(sk, o.inet_sport).map(u16::from_be),
    };
    let Some(hit) = port_test(sock_common(sk, o)?, inet_sport)? else {
        return Ok(());
    };
    let Some(socket) = ftp_socket_of(sk, o, hit, true)? else {
        return Ok(());
    };
    set_state_event(sk, o, &socket, old, new)
}

/// Whether a socket whose `skc_num` is 0 has no local port at all: one
/// entering SYN_SENT, which `connect` gives a port only after this event.
/// Its `inet_sport` is 0 then, or a port an earlier connection left there:
/// not read (on every connection on the host, FTP or not).
#[inline(always)]
fn unbound(new: i32) -> bool {
    new == i32::from(TCP_SYN_SENT)
}

/// What a traced socket's state change sends.
#[inline(always)]
fn set_state_event(
    sk: u64,
    o: &KernelOffsets,
    socket: &FtpSocket,
    old: i32,
    new: i32,
) -> Result<(), i64> {
    let (old, new) = (i64::from(old), i64::from(new));
    emit_sock(ProbeId::InetSockSetState, sk, o, socket, old, new, 0);
    if new == i64::from(TCP_CLOSE) && SETTINGS.get(0).is_some_and(|s| s.error_at_close != 0) {
        error_at_close(sk, o, socket)?;
    }
    Ok(())
}

/// [`set_state`] with `sk` typed by BTF.
#[inline(always)]
fn set_state_btf(sk: u64, old: i32, new: i32) {
    count_unreadable(try_set_state_btf(sk, old, new));
}

/// [`try_set_state`], its filter reading `sk` with plain loads.
#[inline(always)]
fn try_set_state_btf(sk: u64, old: i32, new: i32) -> Result<(), i64> {
    if sk == 0 {
        return Ok(());
    }
    let inet_sport = || match unbound(new) {
        true => Ok(0),
        false => Ok(btf_inet_sport(sk)),
    };
    let Some(hit) = port_test(btf_sock_common(sk), inet_sport)? else {
        return Ok(());
    };
    let o = OFFSETS.get(0).ok_or(0)?;
    let Some(socket) = ftp_socket_of(sk, o, hit, true)? else {
        return Ok(());
    };
    set_state_event(sk, o, &socket, old, new)
}

raw_tracepoint_pair! {
    /// `tcp_retransmit_skb(const struct sock *sk, const struct sk_buff *skb)` (before 6.17)
    tcp_retransmit_skb, tcp_retransmit_skb_nested,
    tracepoint = "tcp_retransmit_skb", copy_section = "tcp_retransmit_skb_nested",
    ProbeId::TcpRetransmitSkb, |ctx| {
        let sk: u64 = ctx.arg(0);
        let segs = skb_segs(ctx.arg(1));
        count_unreadable(try_sock_event(
            ProbeId::TcpRetransmitSkb,
            sk,
            false,
            0,
            segs,
            0,
        ));
    }
}

raw_tracepoint_pair! {
    /// `tcp_retransmit_skb(const struct sock *sk, const struct sk_buff *skb, int err)`
    tcp_retransmit_skb_err, tcp_retransmit_skb_err_nested,
    tracepoint = "tcp_retransmit_skb", copy_section = "tcp_retransmit_skb_err_nested",
    ProbeId::TcpRetransmitSkb, |ctx| {
        let sk: u64 = ctx.arg(0);
        let err: i32 = ctx.arg(2);
        let segs = skb_segs(ctx.arg(1));
        count_unreadable(try_sock_event(
            ProbeId::TcpRetransmitSkb,
            sk,
            false,
            i64::from(err),
            segs,
            record_flags::HAS_ARG,
        ));
    }
}

raw_tracepoint_pair! {
    /// `tcp_retransmit_synack(const struct sock *sk, const struct request_sock *req)`.
    /// A request socket begins with the same `struct sock_common` as a socket.
    tcp_retransmit_synack, tcp_retransmit_synack_nested,
    tracepoint = "tcp_retransmit_synack", copy_section = "tcp_retransmit_synack_nested",
    ProbeId::TcpRetransmitSynack, |ctx| {
        let req: u64 = ctx.arg(1);
        count_unreadable(try_sock_event(
            ProbeId::TcpRetransmitSynack,
            req,
            false,
            0,
            1,
            0,
        ));
    }
}

raw_tracepoint_pair! {
    /// `tcp_send_reset(const struct sock *sk, const struct sk_buff *skb)` (before 6.10)
    tcp_send_reset, tcp_send_reset_nested,
    tracepoint = "tcp_send_reset", copy_section = "tcp_send_reset_nested",
    ProbeId::TcpSendReset, |ctx| {
        count_unreadable(try_send_reset(ctx.arg(0), ctx.arg(1), 0, 0));
    }
}

raw_tracepoint_pair! {
    /// `tcp_send_reset(const struct sock *sk, const struct sk_buff *skb, enum sk_rst_reason reason)`
    tcp_send_reset_reason, tcp_send_reset_reason_nested,
    tracepoint = "tcp_send_reset", copy_section = "tcp_send_reset_reason_nested",
    ProbeId::TcpSendReset, |ctx| {
        let reason: u32 = ctx.arg(2);
        count_unreadable(try_send_reset(
            ctx.arg(0),
            ctx.arg(1),
            i64::from(reason),
            record_flags::HAS_ARG,
        ));
    }
}

raw_tracepoint_pair! {
    /// `tcp_receive_reset(struct sock *sk)`
    tcp_receive_reset, tcp_receive_reset_nested,
    tracepoint = "tcp_receive_reset", copy_section = "tcp_receive_reset_nested",
    ProbeId::TcpReceiveReset, |ctx| {
        let sk: u64 = ctx.arg(0);
        count_unreadable(try_sock_event(ProbeId::TcpReceiveReset, sk, false, 0, 0, 0));
    }
}

raw_tracepoint_pair! {
    /// `tcp_destroy_sock(struct sock *sk)`; `arg1` is the socket's
    /// `total_retrans`, `arg2` its `dsack_dups` (-1 where unknown): how many
    /// of its retransmits the peer reported as duplicates.
    tcp_destroy_sock, tcp_destroy_sock_nested,
    tracepoint = "tcp_destroy_sock", copy_section = "tcp_destroy_sock_nested",
    ProbeId::TcpDestroySock, |ctx| {
        let sk: u64 = ctx.arg(0);
        count_unreadable(try_sock_event_with(
            ProbeId::TcpDestroySock,
            sk,
            false,
            record_flags::HAS_ARG,
            |o| {
                let count = |offset| read_kernel::<u32>(sk, offset).map_or(-1, i64::from);
                Ok((count(o.tcp_total_retrans), count(o.tcp_dsack_dups)))
            },
        ));
    }
}

raw_tracepoint_pair! {
    /// `inet_sk_error_report(const struct sock *sk)` (5.13+); `arg1` is `sk_err`.
    inet_sk_error_report, inet_sk_error_report_nested,
    tracepoint = "inet_sk_error_report", copy_section = "inet_sk_error_report_nested",
    ProbeId::InetSkErrorReport, |ctx| {
        let sk: u64 = ctx.arg(0);
        count_unreadable(try_error_report(sk));
    }
}

/// A socket's pending error, as its error callback reports it (read once
/// the socket is known to be FTP).
#[inline(always)]
pub fn try_error_report(sk: u64) -> Result<(), i64> {
    try_sock_event_with(ProbeId::InetSkErrorReport, sk, true, 0, |o| {
        Ok((i64::from(read_kernel::<i32>(sk, o.sock_err)?), 0))
    })
}

/// The fallback without an error-report hook: a socket entering CLOSE with
/// `sk_err` set had its error reported just before (reset, timeout), unless
/// nobody holds it any more (`SOCK_DEAD`: the kernel reports nothing then).
/// Inlined: as a BPF subprogram its result would come back through memory,
/// which the verifier refuses from a function returning a stack address.
#[inline(always)]
fn error_at_close(sk: u64, o: &KernelOffsets, socket: &FtpSocket) -> Result<(), i64> {
    let err: i32 = read_kernel(sk, o.sock_err)?;
    let flags: u64 = read_kernel(sk, o.sock_flags)?;
    if err == 0 || flags & 1 != 0 {
        return Ok(());
    }
    emit_sock(
        ProbeId::InetSkErrorReport,
        sk,
        o,
        socket,
        i64::from(err),
        0,
        0,
    );
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
    if sk != 0 {
        let common = sock_common(sk, o)?;
        if common_state(&common) != TCP_LISTEN {
            if let Some(socket) = ftp_socket(sk, o, common, false)? {
                emit_sock(ProbeId::TcpSendReset, sk, o, &socket, arg1, 0, flags);
            }
            return Ok(());
        }
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

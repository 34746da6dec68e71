//! The hook ladder's kernel-function rungs, through fentry or a kprobe:
//! for kernels without the tracepoint (the socket error report before
//! 5.13) and for what no tracepoint says (keepalive and zero-window
//! probes). Prototypes as in Linux 6.1 to 7.2.

use aya_ebpf::{
    macros::{fentry, kprobe},
    programs::{FEntryContext, ProbeContext},
};
use ftptrace_common::ProbeId;

use crate::{
    OFFSETS, SETTINGS,
    kernel_read::read_kernel,
    record::{count_unreadable, try_sock_event},
    tcp_tracepoints::try_error_report,
};

/// `void sock_def_error_report(struct sock *sk)`, through fentry: the
/// socket's error callback, where kernels before 5.13 have no tracepoint.
#[fentry(function = "sock_def_error_report")]
pub fn fentry_error_report(ctx: FEntryContext) -> i32 {
    let sk: u64 = ctx.arg(0);
    count_unreadable(try_error_report(sk));
    0
}

/// `void sock_def_error_report(struct sock *sk)`, through a kprobe.
#[kprobe]
pub fn kprobe_error_report(ctx: ProbeContext) -> u32 {
    if let Some(sk) = ctx.arg::<u64>(0) {
        count_unreadable(try_error_report(sk));
    }
    0
}

/// `int tcp_xmit_probe_skb(struct sock *sk, int urgent, int mib)`, through
/// fentry: every keepalive and zero-window probe leaves through it, right
/// where the kernel counts it in TCPKeepAlive or TCPWinProbe (`mib`).
#[fentry(function = "tcp_xmit_probe_skb")]
pub fn fentry_xmit_probe(ctx: FEntryContext) -> i32 {
    let sk: u64 = ctx.arg(0);
    let mib: i32 = ctx.arg(2);
    count_unreadable(try_xmit_probe(sk, mib));
    0
}

/// `int tcp_xmit_probe_skb(struct sock *sk, int urgent, int mib)`, through a kprobe.
#[kprobe]
pub fn kprobe_xmit_probe(ctx: ProbeContext) -> u32 {
    if let (Some(sk), Some(mib)) = (ctx.arg::<u64>(0), ctx.arg::<i32>(2)) {
        count_unreadable(try_xmit_probe(sk, mib));
    }
    0
}

/// A probe about to be sent: `icsk_probes_out` counts it only afterwards.
/// Inlined: as a BPF function its 16-byte result goes through a pointer
/// into the caller's stack, which LLVM leaves in r0, and 7.2's verifier
/// refuses a function that returns a stack pointer.
#[inline(always)]
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

//! The fallback for keepalive and zero-window probes where no kernel
//! function can be hooked (no kprobes, fentry refused): the socket's
//! keepalive and retransmit timers, seen on `timer:timer_expire_entry/exit`.
//! A probe was sent when the socket's unanswered-probe count
//! (`icsk_probes_out`) grew while its timer ran.

use aya_ebpf::{macros::raw_tracepoint, programs::RawTracePointContext};
use ftptrace_common::{ProbeId, RunningTimer};

use crate::{
    OFFSETS, RUNNING_TIMER, TIMER_HOOKS,
    kernel_read::{port_roles, read_kernel},
    record::{count_unreadable, try_sock_event},
};

/// `timer_expire_entry(struct timer_list *timer, unsigned long baseclk)`.
/// Fires for every timer on the system: the function pointer comparison
/// comes first, and anything else costs one read.
#[raw_tracepoint(tracepoint = "timer_expire_entry")]
pub fn timer_expire_entry(ctx: RawTracePointContext) -> i32 {
    let timer: u64 = ctx.arg(0);
    count_unreadable(try_timer_entry(timer));
    0
}

/// `timer_expire_exit(struct timer_list *timer)`: a probe was sent if the
/// socket's unanswered-probe count grew while its timer ran.
#[raw_tracepoint(tracepoint = "timer_expire_exit")]
pub fn timer_expire_exit(ctx: RawTracePointContext) -> i32 {
    let timer: u64 = ctx.arg(0);
    count_unreadable(try_timer_exit(timer));
    0
}

fn try_timer_entry(timer: u64) -> Result<(), i64> {
    let hooks = TIMER_HOOKS.get(0).ok_or(0)?;
    let function: u64 = read_kernel(timer, hooks.timer_function)?;
    let (probe, sk) = if function != 0 && function == hooks.keepalive_fn {
        (
            ProbeId::KeepaliveProbe,
            timer.wrapping_sub(u64::from(hooks.sock_timer)),
        )
    } else if function != 0 && function == hooks.write_timer_fn {
        (
            ProbeId::ZeroWindowProbe,
            timer.wrapping_sub(u64::from(hooks.icsk_retransmit_timer)),
        )
    } else {
        return Ok(());
    };
    let o = OFFSETS.get(0).ok_or(0)?;
    let sport = u16::from_be(read_kernel(sk, o.inet_sport)?);
    let dport = u16::from_be(read_kernel(sk, o.sock_dport)?);
    // The ports first; an active-mode endpoint's address is checked when
    // the probe is emitted (`try_sock_event`).
    if port_roles(sport) | port_roles(dport) == 0 {
        return Ok(());
    }
    let probes_out: u8 = read_kernel(sk, o.icsk_probes_out)?;
    if let Some(slot) = RUNNING_TIMER.get_ptr_mut(0) {
        // SAFETY: per-CPU slot; timer callbacks do not nest on a CPU.
        unsafe {
            *slot = RunningTimer {
                timer,
                sk,
                probe: probe as u16,
                probes_out,
                _pad: [0; 5],
            };
        }
    }
    Ok(())
}

fn try_timer_exit(timer: u64) -> Result<(), i64> {
    let Some(slot) = RUNNING_TIMER.get_ptr_mut(0) else {
        return Ok(());
    };
    // SAFETY: per-CPU slot, see `try_timer_entry`.
    let running = unsafe { *slot };
    if running.timer != timer || timer == 0 {
        return Ok(());
    }
    // SAFETY: as above.
    unsafe { (*slot).timer = 0 };
    let o = OFFSETS.get(0).ok_or(0)?;
    let probes_out: u8 = read_kernel(running.sk, o.icsk_probes_out)?;
    if probes_out <= running.probes_out {
        return Ok(());
    }
    let probe = if running.probe == ProbeId::KeepaliveProbe as u16 {
        ProbeId::KeepaliveProbe
    } else {
        ProbeId::ZeroWindowProbe
    };
    try_sock_event(probe, running.sk, false, i64::from(probes_out), 0, 0)
}

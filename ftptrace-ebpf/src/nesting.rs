//! Events the kernel would skip because their program is already running
//! on the CPU. A raw or BTF tracepoint program does not run nested in
//! itself: when an interrupt arrives mid-program and its softirq fires the
//! same tracepoint (a reset sent for a segment that reached a closed socket
//! while a process sent its own, a packet dropped while another was being
//! freed, the peer's state change when both ends are on this host), the
//! kernel counts a recursion miss and the event is gone. Each tracepoint
//! program therefore has a copy, attached after it to the same tracepoint:
//! the copy runs every event too, but acts only while the first is in the
//! middle of one on this CPU, which is exactly when the kernel skipped the
//! first. What both miss, the first's count holds, less what the copy
//! rescued (`RESCUED`).

use ftptrace_common::ProbeId;

use crate::{RESCUED, RUNNING};

/// Marks `probe`'s first program as running on this CPU; the slot, for
/// [`unmark_running`] (one map lookup for both). It marks every event, FTP
/// or not: the event it skips may be another socket's, FTP when its own is
/// not.
#[inline(always)]
pub fn mark_running(probe: ProbeId) -> Option<*mut u32> {
    let slot = RUNNING.get_ptr_mut(probe as u32)?;
    // SAFETY: per-CPU slot; only this CPU's first program of `probe` writes it.
    unsafe { core::ptr::write_volatile(slot, 1) };
    Some(slot)
}

#[inline(always)]
pub fn unmark_running(slot: Option<*mut u32>) {
    if let Some(slot) = slot {
        // SAFETY: as in `mark_running`; a program that interrupted this one
        // did not touch it (only this one writes it).
        unsafe { core::ptr::write_volatile(slot, 0) };
    }
}

/// Whether `probe`'s first program is in the middle of an event on this
/// CPU: then the copy takes the event, and counts it rescued.
#[inline(always)]
pub fn take_nested(probe: ProbeId) -> bool {
    let running = RUNNING
        .get(probe as u32)
        .is_some_and(|running| *running != 0);
    if running {
        if let Some(rescued) = RESCUED.get_ptr_mut(0) {
            // SAFETY: per-CPU slot, as in `record::count_lost`.
            unsafe { *rescued += 1 };
        }
    }
    running
}

/// A raw tracepoint program of `probe` and its nested copy, both running
/// `body` with the context bound to `ctx`. The copy's section is its own
/// (`copy_section`): two programs of one section attached to one tracepoint
/// did not load; user space attaches it to the tracepoint (`probes`).
macro_rules! raw_tracepoint_pair {
    (
        $(#[$doc:meta])*
        $first:ident, $copy:ident,
        tracepoint = $tracepoint:tt, copy_section = $copy_section:tt,
        $probe:expr, |$ctx:ident| { $($body:tt)* }
    ) => {
        $(#[$doc])*
        #[aya_ebpf::macros::raw_tracepoint(tracepoint = $tracepoint)]
        pub fn $first($ctx: aya_ebpf::programs::RawTracePointContext) -> i32 {
            let running = crate::nesting::mark_running($probe);
            { $($body)* }
            crate::nesting::unmark_running(running);
            0
        }

        #[doc = concat!("[`", stringify!($first), "`] while it is interrupted by itself (`nesting`).")]
        #[aya_ebpf::macros::raw_tracepoint(tracepoint = $copy_section)]
        pub fn $copy($ctx: aya_ebpf::programs::RawTracePointContext) -> i32 {
            if crate::nesting::take_nested($probe) {
                $($body)*
            }
            0
        }
    };
}

pub(crate) use raw_tracepoint_pair;

//! The tracer's scheduling priority. Under a load that keeps every core
//! busy (a connection storm on a small host), a tracer at the load's own
//! priority gets what the scheduler shares out, falls behind the kernel,
//! and the ring buffer fills: events lost (counted, but lost). A little
//! ahead of the load it keeps up, and the load pays only for the tracer's
//! own work. Measured on 2 cores, port-21 churn for 5 s: at nice 0, 35,099
//! and 164,948 events lost of 1.4 and 1.2 million; at nice -10, none.

/// The nice value a run takes when it was started at the default (0).
pub const TRACER_NICE: i32 = -10;

/// Raises the calling thread to [`TRACER_NICE`], unless it runs at another
/// nice value than 0 already (the operator's choice: `nice`, a unit's
/// `Nice=`). Linux keeps the nice value per thread: call it on the thread
/// that drains the ring buffer. Returns the nice value it runs at; fails
/// without CAP_SYS_NICE.
pub fn raise() -> std::io::Result<i32> {
    // getpriority may return -1 as a value: errno tells.
    // SAFETY: errno is this thread's; getpriority has integer arguments.
    let now = unsafe {
        *libc::__errno_location() = 0;
        libc::getpriority(libc::PRIO_PROCESS, 0)
    };
    if now == -1 && std::io::Error::last_os_error().raw_os_error() != Some(0) {
        return Err(std::io::Error::last_os_error());
    }
    if now != 0 {
        return Ok(now);
    }
    // SAFETY: integer arguments; `0` is the calling thread.
    if unsafe { libc::setpriority(libc::PRIO_PROCESS, 0, TRACER_NICE) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(TRACER_NICE)
}

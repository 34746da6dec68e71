//! A blind spot of the sandbox hosts this suite runs on, and the witness
//! that tells a test when it was hit.
//!
//! Measured on the 6.18 host: ftrace's `tcp:tcp_retransmit_skb` next to the
//! tracer, `kernel.bpf_stats_enabled=1`, 40 runs of `data_loss` (2,385
//! retransmits of the server's by ftrace and by `Tcp.RetransSegs`). The
//! tracer missed 5, in 3 runs; each of the 5 ran in a softirq on top of a
//! thread of the host's PID 1 (the sandbox agent), as did every retransmit
//! ftrace saw there, and the retransmit program's own run count was short
//! by exactly those, with no recursion miss counted. So the kernel does not
//! run BPF programs while that process is the current task: work done in
//! interrupts on top of it (a timer that retransmits, a packet received in
//! softirq) is invisible to every program. No program can see what the
//! kernel does not run it for, and nothing on an operator's server hides a
//! process this way.
//!
//! So the suite watches for it: a tracefs instance records the test's
//! traffic (192.0.2.0/24, 2001:db8::/32, TCP timers, IP packet drops) only
//! where it ran on top of PID 1's threads. A test that fails after such a
//! sighting is run again ([`root_test`]); one that fails without a sighting
//! fails at once, and a test that passes is not looked at. A failure after
//! the tracer itself reported events lost or skipped (its final `stats`: the
//! kernel counted a ring buffer overflow or a program re-entered on a CPU,
//! as seen once in a 7.2 guest) is run again too.

use std::{
    cell::Cell,
    fs,
    panic::{AssertUnwindSafe, catch_unwind, resume_unwind},
    path::{Path, PathBuf},
};

thread_local! {
    /// Kernel events the tracers of this attempt reported lost or skipped
    /// (`stats`: `lost`, `missed`): the kernel counted them, ftptrace said
    /// so. Per thread: a test's body, its tracer's stop and `root_test`
    /// run on the test's thread.
    static TRACER_LOSS: Cell<u64> = const { Cell::new(0) };
}

/// Called by [`crate::tracer::Tracer::stop`] with the final stats' counts.
pub fn note_tracer_loss(events: u64) {
    TRACER_LOSS.with(|loss| loss.set(loss.get() + events));
}

/// Where tracefs is mounted on every kernel in the matrix.
const TRACEFS: &str = "/sys/kernel/tracing";
/// Attempts of a test whose failures each coincided with a sighting.
pub const ATTEMPTS: u32 = 3;

/// The tracepoints whose work the tracer's programs stand for: TCP's
/// events, socket state and errors, packet drops, and the timers that send
/// keepalive and window probes.
const EVENTS: [&str; 9] = [
    "tcp/tcp_retransmit_skb",
    "tcp/tcp_retransmit_synack",
    "tcp/tcp_send_reset",
    "tcp/tcp_receive_reset",
    "tcp/tcp_destroy_sock",
    "sock/inet_sock_set_state",
    "sock/inet_sk_error_report",
    "skb/kfree_skb",
    "timer/timer_expire_entry",
];

/// A tracefs instance recording [`EVENTS`] on top of PID 1's threads.
pub struct Witness {
    dir: PathBuf,
}

impl Witness {
    /// Starts recording; `None` (and the test gets one attempt) where
    /// tracefs instances cannot be made or PID 1's threads cannot be listed.
    pub fn start() -> Option<Self> {
        let threads = hidden_threads()?;
        let instances = Path::new(TRACEFS).join("instances");
        remove_orphans(&instances);
        let dir = instances.join(crate::unique_name("witness"));
        fs::create_dir(&dir).ok()?;
        let witness = Self { dir };
        let filter = threads
            .iter()
            .map(|tid| format!("common_pid == {tid}"))
            .collect::<Vec<_>>()
            .join(" || ");
        for event in EVENTS {
            let event_dir = witness.dir.join("events").join(event);
            // An event a kernel lacks (inet_sk_error_report before 5.13)
            // has nothing to witness.
            if !event_dir.is_dir() {
                continue;
            }
            fs::write(event_dir.join("filter"), &filter).ok()?;
            fs::write(event_dir.join("enable"), "1").ok()?;
        }
        Some(witness)
    }

    /// The recorded lines about the test's traffic: each one a piece of
    /// kernel work no BPF program saw.
    pub fn sightings(&self) -> Vec<String> {
        fs::read_to_string(self.dir.join("trace"))
            .unwrap_or_default()
            .lines()
            .filter(|line| is_test_traffic(line))
            .map(|line| line.trim().to_owned())
            .collect()
    }
}

impl Drop for Witness {
    fn drop(&mut self) {
        dismantle(&self.dir);
    }
}

/// Stops an instance's events and removes it (tracefs frees its buffers).
fn dismantle(instance: &Path) {
    for event in EVENTS {
        let _ = fs::write(instance.join("events").join(event).join("enable"), "0");
    }
    let _ = fs::remove_dir(instance);
}

/// Removes the witnesses of test processes that died without dropping
/// theirs (killed at a deadline): they would record for ever.
fn remove_orphans(instances: &Path) {
    let Ok(entries) = fs::read_dir(instances) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        let Some(pid) = name
            .strip_prefix("ftpt-")
            .filter(|rest| rest.ends_with("-witness"))
            .and_then(|rest| rest.split('-').next())
        else {
            continue;
        };
        if !Path::new("/proc").join(pid).exists() {
            dismantle(&entry.path());
        }
    }
}

/// Thread ids of PID 1, the process the kernel hides from BPF programs.
fn hidden_threads() -> Option<Vec<u32>> {
    let tasks = fs::read_dir("/proc/1/task").ok()?;
    let threads: Vec<u32> = tasks
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse().ok())
        .collect();
    (!threads.is_empty()).then_some(threads)
}

/// Whether a witnessed trace line is about this suite's traffic.
fn is_test_traffic(line: &str) -> bool {
    if line.starts_with('#') {
        return false;
    }
    if line.contains("timer_expire_entry:") {
        // TCP's socket timers: retransmit, keepalive, delayed ACK.
        return line.contains("function=tcp_");
    }
    if line.contains("kfree_skb:") {
        // IPv4 and IPv6 packets (protocol is printed in decimal).
        return line.contains("protocol=2048 ") || line.contains("protocol=34525 ");
    }
    line.contains("192.0.2.") || line.contains("2001:db8:")
}

/// Runs a root test: skips without root (see [`crate::root_or_skip`]), and
/// runs `body` again, at most [`ATTEMPTS`] times in all, while each failure
/// coincides with a sighting of the blind spot or with events the tracer
/// itself reported lost or skipped, saying so on stderr.
pub fn root_test(name: &str, body: impl Fn()) {
    if !crate::root_or_skip(name) {
        return;
    }
    for attempt in 1..=ATTEMPTS {
        TRACER_LOSS.with(|loss| loss.set(0));
        let witness = Witness::start();
        let result = catch_unwind(AssertUnwindSafe(&body));
        let sightings = witness.map(|w| w.sightings()).unwrap_or_default();
        let reported = TRACER_LOSS.with(Cell::get);
        match result {
            Ok(()) => return,
            Err(_) if !sightings.is_empty() && attempt < ATTEMPTS => eprintln!(
                "{name}: attempt {attempt} of {ATTEMPTS} failed while the kernel did {} piece(s) of \
                 this test's work on top of PID 1, where it runs no BPF program (first: {}); \
                 running it again",
                sightings.len(),
                sightings[0]
            ),
            // The kernel skipped a program (an interrupt re-entering it on
            // a CPU) or the ring buffer was full, and the tracer said so.
            Err(_) if reported > 0 && attempt < ATTEMPTS => eprintln!(
                "{name}: attempt {attempt} of {ATTEMPTS} failed after the tracer reported {reported} \
                 kernel event(s) lost or skipped (stats: lost, missed); running it again"
            ),
            Err(panic) => resume_unwind(panic),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{is_test_traffic, note_tracer_loss, root_test};
    use std::sync::atomic::{AtomicU32, Ordering};

    /// A failure after the tracer reported a loss runs again; the second,
    /// clean attempt passes. (As root only: `root_test` skips otherwise.)
    #[test]
    fn a_failure_after_a_reported_loss_runs_again() {
        static CALLS: AtomicU32 = AtomicU32::new(0);
        root_test("a_failure_after_a_reported_loss_runs_again", || {
            if CALLS.fetch_add(1, Ordering::Relaxed) == 0 {
                note_tracer_loss(1);
                panic!("counts differ by the event the tracer reported missing");
            }
        });
        // SAFETY: geteuid(2) cannot fail and touches no memory.
        if unsafe { libc::geteuid() } == 0 {
            assert_eq!(CALLS.load(Ordering::Relaxed), 2);
        }
    }

    /// A failure with nothing seen and nothing reported is not retried.
    #[test]
    #[should_panic(expected = "a plain failure")]
    fn a_plain_failure_fails_at_once() {
        // SAFETY: as above.
        if unsafe { libc::geteuid() } != 0 {
            panic!("a plain failure (not root: root_test would skip)");
        }
        root_test("a_plain_failure_fails_at_once", || {
            panic!("a plain failure")
        });
    }

    #[test]
    fn test_traffic_is_told_from_the_agents_own() {
        let lines = [
            (
                " tokio-rt-worker-76 [001] ..s2. 22467.515609: tcp_retransmit_skb: skbaddr=0000 skaddr=0000 family=AF_INET sport=30005 dport=41234 saddr=192.0.2.1 daddr=192.0.2.2 saddrv6=::ffff:192.0.2.1 daddrv6=::ffff:192.0.2.2 state=TCP_ESTABLISHED err=0",
                true,
            ),
            (
                " tokio-rt-worker-76 [000] d.s.. 22737.290154: timer_expire_entry: timer=0000 function=delayed_work_timer_fn now=4300576547 baseclk=4300576504",
                false,
            ),
            (
                " tokio-rt-worker-69 [000] ..s1. 1.0: timer_expire_entry: timer=0000 function=tcp_keepalive_timer now=1 baseclk=1",
                true,
            ),
            (
                " tokio-rt-worker-69 [000] ..s1. 1.0: kfree_skb: skbaddr=0000 rx_sk=0000 protocol=2048 location=nf_hook_slow+0x9c/0xf0 reason: NETFILTER_DROP",
                true,
            ),
            (
                " tokio-rt-worker-69 [000] ..s1. 1.0: kfree_skb: skbaddr=0000 rx_sk=0000 protocol=0 location=unix_stream_connect+0x1/0x2 reason: NOT_SPECIFIED",
                false,
            ),
            (
                " tokio-rt-worker-70 [001] ..... 1.0: inet_sock_set_state: family=AF_INET6 protocol=IPPROTO_TCP sport=21 dport=40000 saddr=0.0.0.0 daddr=0.0.0.0 saddrv6=2001:db8::1 daddrv6=2001:db8::2 oldstate=TCP_ESTABLISHED newstate=TCP_CLOSE_WAIT",
                true,
            ),
            ("# tracer: nop", false),
        ];
        for (line, expected) in lines {
            assert_eq!(is_test_traffic(line), expected, "{line}");
        }
    }
}

//! ftptrace's kernel side: capture, filter, emit.
//!
//! Raw tracepoint programs on the TCP tracepoints ([`tcp_tracepoints`];
//! `inet_sock_set_state`, which every socket fires, also as a BTF
//! tracepoint, whose filter reads the socket without a helper call),
//! kernel-function rungs of the hook ladder through fentry or kprobes
//! ([`kernel_functions`]), the socket-timer fallback for probes
//! ([`timer_fallback`]), dropped packets ([`drops`]) and the FTP control
//! channel's bytes ([`control_channel`]). Each decides "is this an FTP
//! connection?" with two port reads and two array lookups, then copies a
//! few fields of the socket or packet into the ring buffer ([`record`]).
//! Raw tracepoints, not the classic kind: they are cheaper per hit, and the
//! kernel skips a classic tracepoint program silently and uncounted
//! whenever any other tracing program is running on the CPU, while a raw
//! one is skipped only when the same program is interrupted by itself, and
//! then counted (`recursion_misses`). (A kernel that runs no program at all
//! on top of some task, as the sandbox hosts this is built on do for their
//! agent, loses those hits unseen by anyone but ftrace:
//! `tests/src/blind_spot.rs`.)
//!
//! Struct offsets come from the `OFFSETS` map that the loader fills from BTF
//! before attaching, so this one object serves every kernel. All decoding
//! (names, addresses, who owns the socket) happens in user space.
#![no_std]
#![no_main]

mod control_channel;
mod dns_answers;
mod drops;
mod ip_packet;
mod kernel_functions;
mod kernel_read;
mod nesting;
mod record;
mod tcp_tracepoints;
mod timer_fallback;
mod tls_plaintext;

use aya_ebpf::{
    macros::map,
    maps::{Array, LruHashMap, PerCpuArray, RingBuf},
};
use ftptrace_common::{
    ActiveEndpoint, Endpoints, KernelOffsets, PORT_MAP_ENTRIES, ProbeSettings, RunningTimer,
    TimerHooks,
};

/// Records to user space.
#[map]
static EVENTS: RingBuf = RingBuf::with_byte_size(1 << 23, 0);

/// Port → role bits (`ftptrace_common::port_role`); 0 means not FTP.
#[map]
static PORTS: Array<u8> = Array::with_max_entries(PORT_MAP_ENTRIES, 0);

/// Kernel struct offsets from BTF (one entry).
#[map]
static OFFSETS: Array<KernelOffsets> = Array::with_max_entries(1, 0);

/// Socket timer addresses and offsets for the timer fallback (one entry).
#[map]
static TIMER_HOOKS: Array<TimerHooks> = Array::with_max_entries(1, 0);

/// What the hook ladder chose, for the programs that depend on it (one entry).
#[map]
static SETTINGS: Array<ProbeSettings> = Array::with_max_entries(1, 0);

/// The FTP socket timer running on each CPU, if any.
#[map]
static RUNNING_TIMER: PerCpuArray<RunningTimer> = PerCpuArray::with_max_entries(1, 0);

/// The TTL (hop limit) of the last packet that arrived on each traced
/// connection, by its addresses and ports (from the receiving socket's
/// side): what a reset's TTL is compared with. By packet, not socket: a
/// passive connection's handshake arrives at the listener. LRU: a closed
/// connection's entry just ages out.
#[map]
static PEER_TTL: LruHashMap<Endpoints, u8> = LruHashMap::with_max_entries(16384, 0);

/// The TTL of the handshake packets a listener received (SYN, final ACK),
/// which TCP has not yet judged: a connection whose first packet after the
/// handshake is a reset has no other. Apart from `PEER_TTL` so that a SYN
/// flood, which anyone can send with any address, evicts only other
/// handshakes' entries, never an established connection's.
#[map]
static HANDSHAKE_TTL: LruHashMap<Endpoints, u8> = LruHashMap::with_max_entries(16384, 0);

/// Ring buffer reservations that failed: records lost, per CPU.
#[map]
static LOST: PerCpuArray<u64> = PerCpuArray::with_max_entries(1, 0);

/// Programs that could not read what they needed (a kernel read failed):
/// their event is missing, per CPU.
#[map]
static UNREADABLE: PerCpuArray<u64> = PerCpuArray::with_max_entries(1, 0);

/// Whether a tracepoint's first program is in the middle of an event, per
/// CPU and `ProbeId`: its nested copy acts only then (`nesting`).
#[map]
static RUNNING: PerCpuArray<u32> = PerCpuArray::with_max_entries(16, 0);

/// Events the nested copies handled because the kernel skipped their first
/// program (each also one of its recursion misses), per CPU.
#[map]
static RESCUED: PerCpuArray<u64> = PerCpuArray::with_max_entries(1, 0);

/// Control-channel segments not copied because their connection had used
/// its budget (`CONTROL_BUDGET`), per CPU.
#[map]
static THROTTLED: PerCpuArray<u64> = PerCpuArray::with_max_entries(1, 0);

/// Each control connection's records in the current second, by socket
/// cookie: one connection that makes the server send a flood of small
/// replies loses its own records past the budget, not everyone's ring
/// buffer space. LRU: a closed connection's entry ages out.
#[map]
static CONTROL_BUDGET: LruHashMap<u64, control_channel::Budget> =
    LruHashMap::with_max_entries(16384, 0);

/// Active-mode endpoints clients announced (PORT/EPRT), with when: a
/// connection to or from one is traced while it is fresh. LRU: a flood of
/// announcements pushes out the oldest, never a live connection's (each
/// hit refreshes its entry).
#[map]
static ACTIVE_EXPECT: LruHashMap<ActiveEndpoint, u64> = LruHashMap::with_max_entries(4096, 0);

/// DNS answers copied on this CPU in the current second
/// (`DNS_ANSWERS_PER_SECOND`).
#[map]
static DNS_BUDGET: PerCpuArray<dns_answers::Budget> = PerCpuArray::with_max_entries(1, 0);

/// TLS library calls in progress, by thread (`tls_plaintext`): a call's
/// arguments, for its return. LRU: a thread killed mid-call leaves an
/// entry that ages out.
#[map]
static TLS_CALLS: LruHashMap<u64, tls_plaintext::TlsCall> = LruHashMap::with_max_entries(4096, 0);

/// TLS objects tied to a control connection's socket, by process. LRU: a
/// closed connection's object ages out (a freed object's address may be
/// reused by another connection: tying again overwrites).
#[map]
static TLS_SOCKETS: LruHashMap<tls_plaintext::TlsObject, tls_plaintext::TlsSocket> =
    LruHashMap::with_max_entries(4096, 0);

/// Per-CPU scratch: a socket pointer stored and read back here is a plain
/// number the programs may offset (the stack would keep its pointer type).
#[map]
static SCRATCH: PerCpuArray<u64> = PerCpuArray::with_max_entries(1, 0);

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";

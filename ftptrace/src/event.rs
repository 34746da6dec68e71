//! What the kernel reported, decoded: one [`KernelEvent`] per ring buffer record.

use std::net::SocketAddr;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KernelEvent {
    /// `CLOCK_BOOTTIME` in nanoseconds.
    pub boot_ns: u64,
    pub cpu: u32,
    /// Whoever was on the CPU ([`crate::attribution`] decides if that is the owner).
    pub current: Task,
    /// Inode number of the socket's network namespace, where the kernel knew it.
    pub netns: Option<u32>,
    /// Kernel address of the socket; only an identity, never printed.
    pub sock: Option<u64>,
    pub local: SocketAddr,
    pub remote: SocketAddr,
    pub kind: EventKind,
}

/// A process as `bpf_get_current_pid_tgid`/`comm` saw it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Task {
    /// Thread group id: the pid a user sees.
    pub pid: u32,
    pub comm: String,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EventKind {
    /// A TCP state change; kernel state names without `TCP_`.
    State { old: String, new: String },
    /// A retransmitted skb. `syn` for SYN and SYN-ACK retransmits;
    /// `error` is the errno when the kernel failed to send it (6.17+ report it).
    Retransmit {
        state: String,
        syn: bool,
        error: Option<i32>,
        /// Segments retransmitted: SACK may have merged several into one
        /// skb. `None` where this kernel's layout is unknown.
        segs: Option<u32>,
    },
    /// A RST this host sent; `reason` is the kernel's `sk_rst_reason` name where
    /// it gives one; `state` is absent when no socket wanted the packet.
    ResetSent {
        reason: Option<String>,
        state: Option<String>,
    },
    /// A RST arrived and was accepted; `state` is the socket's state then.
    ResetReceived { state: String },
    /// The socket's pending error (`sk_err`), a positive errno.
    SocketError { errno: i32 },
    /// The kernel freed the socket.
    Destroy,
    /// A keepalive probe went out; `probes_out` are unanswered so far.
    KeepaliveProbe { probes_out: u8 },
    /// A window probe went out because the peer advertised a zero window.
    ZeroWindowProbe { probes_out: u8 },
    /// The kernel dropped a packet of the connection; `reason` is the
    /// kernel's drop reason name (5.17+); `outgoing` for one this host sent.
    Drop {
        reason: Option<String>,
        outgoing: bool,
        /// The packet's TCP flags byte (`SYN` 0x02, `RST` 0x04, ...).
        tcp_flags: u8,
        /// The kernel function that freed the packet, when known.
        location: Option<String>,
    },
}

/// TCP flag names of a flags byte, e.g. `SYN|ACK`; empty for none.
pub fn tcp_flag_names(flags: u8) -> String {
    const NAMES: [&str; 8] = ["FIN", "SYN", "RST", "PSH", "ACK", "URG", "ECE", "CWR"];
    NAMES
        .iter()
        .enumerate()
        .filter(|(bit, _)| flags & (1 << bit) != 0)
        .map(|(_, name)| *name)
        .collect::<Vec<_>>()
        .join("|")
}

/// `ETIMEDOUT` for 110; the number itself for codes libc has no name for.
pub fn errno_name(code: i32) -> String {
    let errno = nix::errno::Errno::from_raw(code.abs());
    if errno == nix::errno::Errno::UnknownErrno {
        code.abs().to_string()
    } else {
        format!("{errno:?}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tcp_flags_by_name() {
        assert_eq!(tcp_flag_names(0x02), "SYN");
        assert_eq!(tcp_flag_names(0x12), "SYN|ACK");
        assert_eq!(tcp_flag_names(0x14), "RST|ACK");
        assert_eq!(tcp_flag_names(0), "");
    }

    #[test]
    fn errno_names() {
        assert_eq!(errno_name(110), "ETIMEDOUT");
        assert_eq!(errno_name(-111), "ECONNREFUSED");
        assert_eq!(errno_name(104), "ECONNRESET");
        assert_eq!(errno_name(4242), "4242");
    }
}

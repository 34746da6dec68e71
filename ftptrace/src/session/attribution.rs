//! Which process owns a socket. The kernel programs record whoever was on the
//! CPU, which is the owner only when the socket changed state in a system
//! call; in softirq context (an arriving SYN, ACK or RST, a timer) it is an
//! unrelated task. So ownership is learned from the transitions that only a
//! system call makes and then applied to the socket's later events.

use std::num::NonZeroUsize;

use lru::LruCache;

use crate::event::{EventKind, KernelEvent, Task};

/// At most this many sockets are remembered; past it the least recently
/// seen are forgotten (their events then carry no owner).
const CAPACITY: usize = 65_536;

/// What ftptrace knows about one kernel socket.
#[derive(Clone, Debug)]
struct Socket {
    /// A stable per-run number, printed instead of the kernel address.
    id: u64,
    owner: Option<Task>,
    /// Its first event was its opening (connect, listen, or the handshake
    /// of a connection a listener accepted): what it carried since is all
    /// in the stream.
    seen_opening: bool,
}

/// What the event stream says about an event's socket.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Attribution {
    pub socket: Option<u64>,
    pub owner: Option<Task>,
    /// The socket was seen from its opening on.
    pub seen_opening: bool,
}

#[derive(Debug)]
pub struct SocketTable {
    /// Least recently seen first out.
    sockets: LruCache<u64, Socket>,
    next_id: u64,
    forgotten: u64,
}

impl Default for SocketTable {
    fn default() -> Self {
        Self {
            sockets: LruCache::new(NonZeroUsize::new(CAPACITY).expect("a capacity")),
            next_id: 0,
            forgotten: 0,
        }
    }
}

impl SocketTable {
    /// Updates the table with `event` and returns its socket id and owner.
    pub fn observe(&mut self, event: &KernelEvent) -> Attribution {
        let Some(sk) = event.sock else {
            return Attribution {
                socket: None,
                owner: None,
                seen_opening: false,
            };
        };
        let fresh = is_new_socket(&event.kind);
        if fresh || !self.sockets.contains(&sk) {
            self.next_id += 1;
            let pushed = self.sockets.push(
                sk,
                Socket {
                    id: self.next_id,
                    owner: None,
                    seen_opening: is_opening(&event.kind),
                },
            );
            if pushed.is_some_and(|(old, _)| old != sk) {
                self.forgotten += 1;
            }
        }
        let socket = self.sockets.get_mut(&sk).expect("inserted above");
        if made_by_owner(&event.kind) {
            socket.owner = Some(event.current.clone());
        }
        let attribution = Attribution {
            socket: Some(socket.id),
            owner: socket.owner.clone(),
            seen_opening: socket.seen_opening,
        };
        if matches!(event.kind, EventKind::Destroy { .. }) {
            // The address may be reused by the next socket.
            self.sockets.pop(&sk);
        }
        attribution
    }

    pub fn len(&self) -> usize {
        self.sockets.len()
    }

    /// Sockets forgotten to stay within the capacity.
    pub fn forgotten(&self) -> u64 {
        self.forgotten
    }

    pub fn is_empty(&self) -> bool {
        self.sockets.is_empty()
    }
}

/// A transition that starts a new socket at a possibly reused address: a
/// socket leaving CLOSE (connect, listen) or a child born from a listener.
fn is_new_socket(kind: &EventKind) -> bool {
    matches!(kind, EventKind::State { old, new }
        if old == "CLOSE" || (old == "LISTEN" && new == "SYN_RECV"))
}

/// A socket's first transition: leaving CLOSE (connect, listen), a
/// listener's request (LISTEN → SYN_RECV), or a child socket's birth at the
/// end of the handshake (SYN_RECV → ESTABLISHED).
fn is_opening(kind: &EventKind) -> bool {
    matches!(kind, EventKind::State { old, .. }
        if matches!(old.as_str(), "CLOSE" | "LISTEN" | "SYN_RECV" | "SYN_SENT"))
}

/// Transitions only a system call by the socket's owner makes: connect()
/// (CLOSE→SYN_SENT), listen() (CLOSE→LISTEN) and close()/shutdown()
/// (ESTABLISHED→FIN_WAIT1, CLOSE_WAIT→LAST_ACK).
fn made_by_owner(kind: &EventKind) -> bool {
    // The TLS library's plaintext, handshakes, certificate checks, errors
    // and alerts are read in the calling thread.
    match kind {
        EventKind::ControlSegment(segment) => return segment.decrypted,
        EventKind::TlsHandshake(_)
        | EventKind::TlsVerify(_)
        | EventKind::TlsError(_)
        | EventKind::TlsAlertSent(_) => {
            return true;
        }
        _ => {}
    }
    let EventKind::State { old, new } = kind else {
        return false;
    };
    matches!(
        (old.as_str(), new.as_str()),
        ("CLOSE", "SYN_SENT")
            | ("CLOSE", "LISTEN")
            | ("ESTABLISHED", "FIN_WAIT1")
            | ("CLOSE_WAIT", "LAST_ACK")
    )
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;

    use super::*;

    fn event(sk: u64, pid: u32, comm: &str, kind: EventKind) -> KernelEvent {
        KernelEvent {
            boot_ns: 0,
            cpu: 0,
            current: Task {
                pid,
                comm: comm.into(),
            },
            netns: None,
            sock: Some(sk),
            local: "192.0.2.2:40000".parse::<SocketAddr>().unwrap(),
            remote: "192.0.2.1:21".parse::<SocketAddr>().unwrap(),
            kind,
        }
    }

    fn state(old: &str, new: &str) -> EventKind {
        EventKind::State {
            old: old.into(),
            new: new.into(),
        }
    }

    #[test]
    fn owner_comes_from_connect_not_from_softirq() {
        let mut table = SocketTable::default();
        let connect = table.observe(&event(0xa, 100, "curl", state("CLOSE", "SYN_SENT")));
        assert_eq!(connect.owner.as_ref().map(|t| t.pid), Some(100));
        // The SYN-ACK arrives in softirq while some other task runs.
        let established = table.observe(&event(
            0xa,
            7,
            "kworker/0:1",
            state("SYN_SENT", "ESTABLISHED"),
        ));
        assert_eq!(
            established.owner.as_ref().map(|t| t.comm.as_str()),
            Some("curl")
        );
        assert_eq!(established.socket, connect.socket);
    }

    /// A server's accepted socket is its process's from the TLS handshake
    /// its library made on it (a uprobe, in the process's own thread).
    #[test]
    fn a_tls_handshake_names_the_owner_of_an_accepted_socket() {
        let mut table = SocketTable::default();
        table.observe(&event(0xc, 9, "swapper/1", state("LISTEN", "SYN_RECV")));
        let handshake = EventKind::TlsHandshake(crate::tls_handshake::Handshake {
            library: crate::tls_verify::Verifier::OpenSsl,
            code: 1,
        });
        let done = table.observe(&event(0xc, 300, "vsftpd", handshake));
        assert_eq!(
            done.owner.as_ref().map(|t| (t.pid, t.comm.as_str())),
            Some((300, "vsftpd"))
        );
    }

    /// ... and from the error its library recorded when the handshake failed.
    #[test]
    fn a_tls_error_names_the_owner_of_an_accepted_socket() {
        let mut table = SocketTable::default();
        table.observe(&event(0xc, 9, "swapper/1", state("LISTEN", "SYN_RECV")));
        let error = EventKind::TlsError(crate::tls_error::LibraryError {
            library: crate::tls_verify::Verifier::OpenSsl,
            reason: 1045,
        });
        let failed = table.observe(&event(0xc, 300, "vsftpd", error));
        assert_eq!(
            failed.owner.as_ref().map(|t| (t.pid, t.comm.as_str())),
            Some((300, "vsftpd"))
        );
    }

    #[test]
    fn accepted_sockets_have_no_owner_until_their_owner_closes_them() {
        let mut table = SocketTable::default();
        let child = table.observe(&event(0xb, 9, "swapper/1", state("LISTEN", "SYN_RECV")));
        assert_eq!(child.owner, None);
        let est = table.observe(&event(
            0xb,
            9,
            "swapper/1",
            state("SYN_RECV", "ESTABLISHED"),
        ));
        assert_eq!(est.owner, None);
        let close = table.observe(&event(
            0xb,
            300,
            "vsftpd",
            state("ESTABLISHED", "FIN_WAIT1"),
        ));
        assert_eq!(close.owner.map(|t| t.comm), Some("vsftpd".into()));
    }

    #[test]
    fn a_reused_address_is_a_new_socket() {
        let mut table = SocketTable::default();
        let first = table.observe(&event(0xc, 1, "a", state("CLOSE", "SYN_SENT")));
        table.observe(&event(0xc, 1, "a", EventKind::DESTROYED));
        assert_eq!(table.len(), 0);
        let softirq = table.observe(&event(
            0xc,
            2,
            "b",
            EventKind::ResetReceived {
                state: "ESTABLISHED".into(),
            },
        ));
        assert_ne!(softirq.socket, first.socket);
        assert_eq!(softirq.owner, None);
        let again = table.observe(&event(0xc, 3, "c", state("CLOSE", "SYN_SENT")));
        assert_ne!(again.socket, softirq.socket);
        assert_eq!(again.owner.map(|t| t.pid), Some(3));
    }

    #[test]
    fn the_table_is_bounded() {
        let mut table = SocketTable::default();
        for sk in 1..=(CAPACITY as u64 + 10) {
            table.observe(&event(sk, 1, "a", state("CLOSE", "SYN_SENT")));
        }
        assert_eq!(table.len(), CAPACITY);
    }
}

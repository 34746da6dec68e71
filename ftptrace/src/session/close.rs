//! How one connection of a session ended, and who ended it, from what each
//! end on this host saw.

use super::model::{Conn, View};
use crate::{
    event::{Name, is_bare_syn},
    ftp::Side,
};

/// `ETIMEDOUT`, `ECONNREFUSED`.
const ETIMEDOUT: i32 = 110;
const ECONNREFUSED: i32 = 111;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Close {
    Fin,
    Reset,
    Timeout,
    Refused,
    Open,
}

impl Close {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Fin => "fin",
            Self::Reset => "reset",
            Self::Timeout => "timeout",
            Self::Refused => "refused",
            Self::Open => "open",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClosedBy {
    Client,
    Server,
    Middlebox,
    Unknown,
}

impl ClosedBy {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Client => "client",
            Self::Server => "server",
            Self::Middlebox => "middlebox",
            Self::Unknown => "unknown",
        }
    }

    pub(super) fn of(end: Side) -> Self {
        match end {
            Side::Client => Self::Client,
            Side::Server => Self::Server,
        }
    }
}

/// The verdict on one connection, with when it was reached.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ending {
    pub close: Close,
    pub closed_by: ClosedBy,
    /// When the deciding event happened (boot ns), if any.
    pub at_ns: Option<u64>,
}

pub fn ending(conn: &Conn) -> Ending {
    let seen: Vec<(Side, &View)> = conn.seen().collect();
    let verdict = |close, closed_by, at_ns| Ending {
        close,
        closed_by,
        at_ns,
    };
    // The kernel gave up on the connection: retransmissions or keepalive
    // probes went unanswered. That end closed it.
    if let Some((end, ns)) = first_error(&seen, ETIMEDOUT) {
        return verdict(Close::Timeout, ClosedBy::of(end), Some(ns));
    }
    if let Some(refused) = refusal(conn) {
        return refused;
    }
    if !conn.is_done() {
        return verdict(Close::Open, ClosedBy::Unknown, None);
    }
    if !conn.established() {
        // Never got through and nobody refused it: whoever stopped waiting.
        let gave_up = seen
            .iter()
            .filter(|(_, v)| v.had_socket)
            .filter_map(|(end, v)| v.closed_ns.map(|ns| (*end, ns)))
            .min_by_key(|(_, ns)| *ns);
        return match gave_up {
            Some((end, ns)) => verdict(Close::Timeout, ClosedBy::of(end), Some(ns)),
            None => verdict(Close::Timeout, ClosedBy::Unknown, None),
        };
    }
    // The first of: a FIN sent, a reset sent, a reset received.
    let mut first: Option<(u64, Close, ClosedBy)> = None;
    let mut consider = |ns: u64, close: Close, by: ClosedBy| {
        if first.is_none_or(|(at, ..)| ns < at) {
            first = Some((ns, close, by));
        }
    };
    for (end, view) in &seen {
        if let Some(ns) = view.fin_sent_ns {
            consider(ns, Close::Fin, ClosedBy::of(*end));
        }
        if let Some(ns) = view.fin_received_ns {
            consider(ns, Close::Fin, ClosedBy::of(end.other()));
        }
        if let Some((ns, _)) = view.troubles().resets_sent.first() {
            consider(*ns, Close::Reset, ClosedBy::of(*end));
        }
        if let Some((ns, _)) = view.troubles().resets_received.first() {
            consider(*ns, Close::Reset, reset_sender(conn, *end));
        }
    }
    match first {
        Some((ns, close, by)) => verdict(close, by, Some(ns)),
        None => verdict(Close::Fin, ClosedBy::Unknown, None),
    }
}

/// Who sent the reset that `receiver` got. When the peer's end is on this
/// host: the peer only if its socket sent one, else something in between
/// forged it. When it is not: a middlebox if the reset came with another
/// TTL than the peer's packets (from another distance), else the peer (the
/// best guess either way, and the evidence says so).
pub fn reset_sender(conn: &Conn, receiver: Side) -> ClosedBy {
    let sender = receiver.other();
    match conn.view(sender) {
        Some(view) if view.had_socket => {
            if view.troubles().resets_sent.is_empty() && view.resets_sent_without_socket == 0 {
                ClosedBy::Middlebox
            } else {
                ClosedBy::of(sender)
            }
        }
        _ if reset_ttl_differs(conn, receiver).is_some() => ClosedBy::Middlebox,
        _ => ClosedBy::of(sender),
    }
}

/// The TTL of the reset `receiver` got and the one its peer's packets
/// arrive with, when both are known and they differ.
pub fn reset_ttl_differs(conn: &Conn, receiver: Side) -> Option<(u8, u8)> {
    match conn.view(receiver)?.reset_ttl? {
        (ttl, Some(usual)) if ttl != usual => Some((ttl, usual)),
        _ => None,
    }
}

fn first_error(seen: &[(Side, &View)], errno: i32) -> Option<(Side, u64)> {
    seen.iter()
        .flat_map(|(end, v)| {
            v.troubles()
                .errors
                .iter()
                .filter(move |(_, e)| *e == errno)
                .map(move |(ns, _)| (*end, *ns))
        })
        .min_by_key(|(_, ns)| *ns)
}

/// A SYN answered by a reset: the client's connect failed with
/// ECONNREFUSED or got a reset in SYN_SENT, or the server's host answered
/// the SYN with a reset from no socket.
fn refusal(conn: &Conn) -> Option<Ending> {
    if conn.established() {
        return None;
    }
    let client = conn.view(Side::Client);
    let at_client = client.and_then(|v| {
        v.troubles()
            .errors
            .iter()
            .find(|(_, e)| *e == ECONNREFUSED)
            .map(|(ns, _)| *ns)
            .or_else(|| {
                v.troubles()
                    .resets_received
                    .iter()
                    .find(|(_, state)| state == "SYN_SENT")
                    .map(|(ns, _)| *ns)
            })
    });
    let server = conn.view(Side::Server);
    let by_server_host = server
        .filter(|v| {
            v.resets_sent_without_socket > 0
                || !v.troubles().resets_sent.is_empty()
                || v.troubles().drops.iter().any(tcp_found_no_socket)
        })
        .map(|v| v.first_ns);
    let at_ns = at_client.or(by_server_host)?;
    // A server end on this host that sent no reset did not refuse it.
    let closed_by = match server {
        Some(_) if by_server_host.is_none() => ClosedBy::Middlebox,
        _ => ClosedBy::Server,
    };
    Some(Ending {
        close: Close::Refused,
        closed_by,
        at_ns: Some(at_ns),
    })
}

/// A SYN that TCP itself dropped for want of a socket: TCP answers it with a
/// reset. Kernels before 6.10 report no socket-less reset, so on them this
/// drop (reason `NO_SOCKET`, or no reason at all in `tcp_v4_rcv`/`tcp_v6_rcv`
/// before drop reasons existed) is the only trace of that reset.
fn tcp_found_no_socket(drop: &(u64, Option<Name>, u8, Option<Name>)) -> bool {
    let (_, reason, flags, location) = drop;
    let syn = is_bare_syn(*flags);
    let in_tcp = location
        .as_deref()
        .is_some_and(|l| l.starts_with("tcp_v4_rcv") || l.starts_with("tcp_v6_rcv"));
    syn && (reason.as_deref() == Some("NO_SOCKET") || (reason.is_none() && in_tcp))
}

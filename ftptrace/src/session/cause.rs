//! Why a session ended: a stable label, the connection it hit, and the
//! evidence, each sentence citing the timeline or the kernel's counts.
//!
//! The rules are tried in order; the first that holds is the cause. The
//! order puts what the kernel proves (a refused SYN, a timeout) before what
//! the FTP dialogue suggests (a 421, a missing QUIT), and a clean end last.

use super::{
    close::{Close, ClosedBy, Ending, ending, reset_sender, reset_ttl_differs},
    model::{ConnId, Entry, Session},
    nat::{Mismatch, Went, first_mismatch, inside_address},
};
use crate::{
    event::EventKind,
    ftp::{ControlEvent, Side, Verb},
};

/// A TLS handshake that fails ends within this long of the `234`.
const TLS_HANDSHAKE_NS: u64 = 10_000_000_000;
/// A client that gives up on the handshake sends at most this many
/// encrypted segments (ClientHello, TLS 1.3's compatibility
/// ChangeCipherSpec, an alert); one that completes it and logs in sends at
/// least five (ClientHello, Finished, USER, PASS, QUIT).
const TLS_FAILED_CLIENT_SEGMENTS: u32 = 3;
/// A client that refuses the server after its library completed the
/// handshake (its own check of the certificate's names) hangs up this soon.
const CLIENT_OWN_CHECK_NS: u64 = 1_000_000_000;
/// The control connection's words that open a transfer (the command, the
/// `150`) come this soon after its data connection is established; any
/// later word means the control connection was not idle during it.
const TRANSFER_OPENING_NS: u64 = 1_000_000_000;
/// A control connection lost to an idle timeout in a firewall or NAT fails
/// as soon as it is used again: the `226` or the next command. Trouble
/// this long after the transfer is another story.
const CONTROL_LOST_WITHIN_NS: u64 = 60_000_000_000;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Cause {
    Clean,
    ServerIdleTimeout,
    ClientAbort,
    DataConnectionBlocked,
    DataConnectionRefused,
    PacketLossRecovered,
    RetransmissionTimeout,
    MiddleboxReset,
    PeerReset,
    KeepaliveTimeout,
    ConnectionRefused,
    ServerLimit,
    TlsFailure,
    ReceiverStalled,
    ControlLostDuringTransfer,
    NatAddressMismatch,
    Unknown,
}

impl Cause {
    pub const ALL: [Self; 17] = [
        Self::Clean,
        Self::ServerIdleTimeout,
        Self::ClientAbort,
        Self::DataConnectionBlocked,
        Self::DataConnectionRefused,
        Self::PacketLossRecovered,
        Self::RetransmissionTimeout,
        Self::MiddleboxReset,
        Self::PeerReset,
        Self::KeepaliveTimeout,
        Self::ConnectionRefused,
        Self::ServerLimit,
        Self::TlsFailure,
        Self::ReceiverStalled,
        Self::ControlLostDuringTransfer,
        Self::NatAddressMismatch,
        Self::Unknown,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Clean => "clean",
            Self::ServerIdleTimeout => "server_idle_timeout",
            Self::ClientAbort => "client_abort",
            Self::DataConnectionBlocked => "data_connection_blocked",
            Self::DataConnectionRefused => "data_connection_refused",
            Self::PacketLossRecovered => "packet_loss_recovered",
            Self::RetransmissionTimeout => "retransmission_timeout",
            Self::MiddleboxReset => "middlebox_reset",
            Self::PeerReset => "peer_reset",
            Self::KeepaliveTimeout => "keepalive_timeout",
            Self::ConnectionRefused => "connection_refused",
            Self::ServerLimit => "server_limit",
            Self::TlsFailure => "tls_failure",
            Self::ReceiverStalled => "receiver_stalled",
            Self::ControlLostDuringTransfer => "control_lost_during_transfer",
            Self::NatAddressMismatch => "nat_address_mismatch",
            Self::Unknown => "unknown",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Diagnosis {
    /// `None` for a session still open with nothing wrong so far.
    pub cause: Option<Cause>,
    pub cause_conn: Option<ConnId>,
    pub evidence: Vec<String>,
}

pub fn diagnose(session: &Session) -> Diagnosis {
    let ended = diagnose_ending(session);
    let Some(mismatch) = first_mismatch(session) else {
        return ended;
    };
    let mut evidence = nat_evidence(session, &mismatch);
    let got_through = mismatch.conn.is_some_and(|c| c.established());
    // A 425, or vsftpd's `500 Illegal PORT command.`, after the announcement.
    let refused_by_reply = count(session, |e| {
        e.ns >= mismatch.announced.at_ns
            && matches!(
                &e.kind,
                EventKind::Ftp {
                    event: ControlEvent::Reply {
                        code: 425 | 500 | 501,
                        ..
                    },
                    ..
                }
            )
    }) > 0;
    match ended.cause {
        // The announcement is why the session failed: its data connection
        // never got through, and the session did not end well (or the
        // other end refused the announcement: a client may QUIT politely).
        Some(cause) if !got_through && (cause != Cause::Clean || refused_by_reply) => {
            evidence.push(format!(
                "so the session ended as {}: {}",
                cause.as_str(),
                ended.evidence.join("; ")
            ));
            found_at(
                Cause::NatAddressMismatch,
                mismatch.conn.map(|c| c.id),
                evidence,
            )
        }
        // Worked around (a client that substitutes the control address, a
        // port forward), or not what ended it: said, for the next client.
        _ => {
            let mut ended = ended;
            evidence[0] = format!("also: {}", evidence[0]);
            ended.evidence.extend(evidence);
            ended
        }
    }
}

/// The mismatch in words: what was announced against what the control
/// connection uses, and where the data connection went.
fn nat_evidence(session: &Session, m: &Mismatch) -> Vec<String> {
    let by = m.announced.announced_by;
    let announcement = cite_first(session, |e| {
        matches!(&e.kind, EventKind::Ftp { event: ControlEvent::DataEndpoint { announced_by, addr: Some(a), port }, .. }
            if *announced_by == by && a.to_canonical() == m.addr && *port == m.announced.port)
    });
    let (what, whose) = match by {
        Side::Server => ("its 227", "the server's"),
        Side::Client => ("its PORT/EPRT", "the client's"),
    };
    let mut evidence = match m.inferred_from {
        Some(peer) => vec![format!(
            "the {} announced its own address {} port {} in {what}{announcement}: {} to a {} at {peer}, \
             which is not, so the {} came through a NAT, and a {} that trusts the announcement \
             cannot reach that address",
            Side::as_str(by),
            m.addr,
            m.announced.port,
            inside_address(m.addr).unwrap_or("an inside address"),
            Side::as_str(by.other()),
            Side::as_str(by.other()),
            Side::as_str(by.other()),
        )],
        None => {
            let reached = match by {
                Side::Server => "the client reached the server at",
                Side::Client => "its control connection comes from",
            };
            let kind = match inside_address(m.addr) {
                Some(kind) => format!("{kind}: {whose} inside address behind a NAT"),
                None => format!(
                    "not {whose} address on the control connection: a NAT in between, or a wrong address configured"
                ),
            };
            vec![format!(
                "the {} announced {} port {} in {what}{announcement}, but {reached} {}: {} is {kind}",
                Side::as_str(by),
                m.addr,
                m.announced.port,
                m.control_addr,
                m.addr,
            )]
        }
    };
    if let Some(&(inside_client, inside_server)) = session.control.behind_nat.as_deref() {
        let (client, server) = (session.control.client, session.control.server);
        let confirms = if [inside_client.ip(), inside_server.ip()]
            .map(|a| a.to_canonical())
            .contains(&m.addr)
        {
            format!(
                "{} is the {}'s own address behind it",
                m.addr,
                Side::as_str(by)
            )
        } else {
            format!("{} is not even that", m.addr)
        };
        evidence.push(format!(
            "a NAT on this host translates the control connection: the client's {client} → {server} \
             reaches the server as {inside_client} → {inside_server} (its connection tracking): {confirms}"
        ));
    }
    let connector = Side::as_str(by.other());
    let went = match m.went() {
        None if m.inferred_from.is_some() => {
            format!("the {connector} made no data connection to it")
        }
        None => format!("the {connector} made no data connection to either address"),
        Some(went) => {
            let conn = m.conn.expect("went() implies a connection");
            let to = match went {
                // Seen at the inside end, after the NAT translated it.
                Went::Announced if m.inferred_from.is_some() => {
                    format!("a data connection from the {connector} arrived at it through the NAT")
                }
                Went::Announced => format!("the {connector} connected to the announced {}", m.addr),
                Went::ControlAddress => format!(
                    "the {connector} connected to the control connection's address {} instead (it substituted it for the announced one)",
                    m.control_addr
                ),
                Went::Elsewhere(addr) => format!("the {connector} connected to {addr}"),
            };
            let e = ending(conn);
            let fate = if conn.established() {
                "and the connection was established".to_owned()
            } else if e.close == Close::Refused {
                format!(
                    "and it was refused (a reset answered its SYN){}",
                    conn_cite(session, conn.id)
                )
            } else {
                let syns: u32 = conn.seen().map(|(_, v)| v.syn_retransmits).sum();
                format!(
                    "and nobody answered: {syns} SYN retransmit(s){}, never established",
                    conn_cite(session, conn.id)
                )
            };
            format!("{to} ({}) {fate}", conn.id.label())
        }
    };
    evidence.push(went);
    for code in [425, 500, 501] {
        add_reply(session, &mut evidence, code);
    }
    evidence
}

/// ` (+12 ms data:1 client: ...)` for a connection's first trouble.
fn conn_cite(session: &Session, id: ConnId) -> String {
    cite_first(session, |e| {
        e.conn == id
            && matches!(
                e.kind,
                EventKind::Retransmit { .. }
                    | EventKind::ResetReceived { .. }
                    | EventKind::SocketError { .. }
            )
    })
}

/// Why the session's connections ended, before the announcements are read.
fn diagnose_ending(session: &Session) -> Diagnosis {
    let endings: Vec<(ConnId, Ending)> = session.conns().map(|c| (c.id, ending(c))).collect();
    let control = endings[0].1;
    let data = &endings[1..];
    let found = connection_refused(session, control)
        .or_else(|| server_limit(session))
        .or_else(|| tls_failure(session, control))
        .or_else(|| data_refused(session, data))
        .or_else(|| data_blocked(session, data))
        .or_else(|| receiver_stalled(session, data))
        .or_else(|| control_lost_during_transfer(session, control))
        .or_else(|| timeout(session, &endings))
        .or_else(|| middlebox_reset(session, &endings))
        .or_else(|| server_idle_timeout(session, control))
        .or_else(|| client_abort(session, control))
        .or_else(|| peer_reset(session, &endings))
        .or_else(|| packet_loss_recovered(session, control));
    if let Some(found) = found {
        return found;
    }
    let all_fin = endings.iter().all(|(_, e)| e.close == Close::Fin);
    if all_fin
        && !session.words_readable()
        && session.encrypted_ns.is_some()
        && session.quit_ns.is_none()
    {
        let mut evidence = vec![format!(
            "the channel is encrypted (its words cannot be read) and every connection ({} data) closed with FIN",
            session.data.len()
        )];
        evidence.extend(spurious_retransmits(session));
        return found_at(Cause::Clean, None, evidence);
    }
    if all_fin && session.quit_ns.is_some() {
        let mut evidence = vec![format!(
            "the client said QUIT{} and every connection ({} data) closed with FIN",
            cite_first(session, |e| is_command(e, &Verb::Quit)),
            session.data.len()
        )];
        evidence.extend(spurious_retransmits(session));
        return found_at(Cause::Clean, None, evidence);
    }
    if control.close == Close::Open {
        return Diagnosis {
            cause: None,
            cause_conn: None,
            evidence: vec!["the control connection is still open".into()],
        };
    }
    found_at(
        Cause::Unknown,
        None,
        vec![format!(
            "the control connection closed with {} by {} and no rule matched",
            control.close.as_str(),
            control.closed_by.as_str()
        )],
    )
}

fn found_at(cause: Cause, conn: Option<ConnId>, evidence: Vec<String>) -> Diagnosis {
    Diagnosis {
        cause: Some(cause),
        cause_conn: conn,
        evidence,
    }
}

fn connection_refused(session: &Session, control: Ending) -> Option<Diagnosis> {
    if control.close != Close::Refused {
        return None;
    }
    let mut evidence = vec![format!(
        "the control connection's SYN was answered by a reset{}",
        cite_first(session, |e| {
            e.conn == ConnId::Control
                && matches!(
                    &e.kind,
                    EventKind::ResetReceived { .. }
                        | EventKind::SocketError { errno: 111 }
                        | EventKind::ResetSent { state: None, .. }
                )
        })
    )];
    if control.closed_by == ClosedBy::Middlebox {
        evidence.push(
            "the server's end (traced) sent no reset: a firewall or middlebox answered".into(),
        );
    }
    Some(found_at(
        Cause::ConnectionRefused,
        Some(ConnId::Control),
        evidence,
    ))
}

fn server_limit(session: &Session) -> Option<Diagnosis> {
    let greeting = session.timeline.entries().find(|e| {
        e.conn == ConnId::Control
            && matches!(
                &e.kind,
                EventKind::Ftp {
                    event: ControlEvent::Reply { .. },
                    ..
                }
            )
    });
    if let Some(entry) = greeting
        && matches!(
            &entry.kind,
            EventKind::Ftp {
                event: ControlEvent::Reply { code: 421, .. },
                ..
            }
        )
    {
        return Some(found_at(
            Cause::ServerLimit,
            Some(ConnId::Control),
            vec![format!(
                "the server greeted with 421, refusing the session{}",
                cite(session, entry)
            )],
        ));
    }
    let overflow = |e: &Entry| {
        e.conn == ConnId::Control
            && matches!(&e.kind, EventKind::Drop { reason: Some(r), .. } if r.contains("LISTEN_OVERFLOW"))
    };
    let overflows = count(session, overflow);
    if overflows > 0 {
        return Some(found_at(
            Cause::ServerLimit,
            Some(ConnId::Control),
            vec![format!(
                "{overflows} packet(s) dropped because the server's accept queue was full{}",
                cite_first(session, overflow)
            )],
        ));
    }
    None
}

fn tls_failure(session: &Session, control: Ending) -> Option<Diagnosis> {
    let tls_at = session.encrypted_ns?;
    let ended_at = control.at_ns?;
    let [client_segments, server_segments] = session.encrypted_segments;
    let soon = ended_at.saturating_sub(tls_at) <= TLS_HANDSHAKE_NS;
    let handshake_only = client_segments <= TLS_FAILED_CLIENT_SEGMENTS;
    // An end's TLS library said why (`tls_plaintext` watched it).
    let refusal = [Side::Client, Side::Server].into_iter().find_map(|end| {
        let (at, verdict) = session.control.view(end)?.tls_verdict?;
        (!verdict.passed()).then_some((end, at, verdict))
    });
    // A library's handshake that failed, or that completed (then too few
    // segments do not mean it stopped).
    let handshake = |done: bool| {
        [Side::Client, Side::Server].into_iter().find_map(|end| {
            let (at, handshake) = session.control.view(end)?.tls_handshake?;
            (handshake.succeeded() == done).then_some((end, at, handshake))
        })
    };
    let handshake_failed = handshake(false);
    let handshake_done = handshake(true);
    // An end's library recorded why (an alert its peer sent, its own
    // reason) or sent a fatal alert: it refused its peer.
    let library_error = session
        .control
        .seen()
        .any(|(_, v)| v.tls_error.is_some() || v.tls_alert_sent.is_some_and(|(_, a)| a.fatal()));
    // Words in the clear after TLS began: the handshake completed, and only
    // a library's refusal (a client that checks after it) makes it a failure.
    let stopped = soon && handshake_only && !session.decrypted && handshake_done.is_none();
    // The library completed the handshake, then the client hung up without
    // a word: it refused the server itself (curl and lftp check the
    // certificate's names after the library passed it).
    // Who sent the first FIN need not say who hung up: the server answers
    // the client's close_notify with its own FIN, which may cross the
    // client's or go first. The client's library says it sent one
    // (GnuTLS); else a client record after the handshake, with no word,
    // before the close, is that close_notify.
    let client_notified = |done_at: u64| {
        let said = session
            .control
            .view(Side::Client)
            .and_then(|v| v.tls_alert_sent)
            .map(|(ns, _)| ns);
        said.or(session.encrypted_last_ns[Side::Client.index()])
            .filter(|&ns| ns > done_at && ns <= ended_at && control.closed_by != ClosedBy::Client)
    };
    let refused_after = handshake_done.filter(|&(_, done_at, _)| {
        !session.decrypted
            && (control.closed_by == ClosedBy::Client || client_notified(done_at).is_some())
            && ended_at.saturating_sub(done_at) <= CLIENT_OWN_CHECK_NS
    });
    if !(stopped
        || refusal.is_some()
        || handshake_failed.is_some()
        || refused_after.is_some()
        || library_error)
        || session.data.iter().any(|c| c.established())
    {
        return None;
    }
    let began = if session.control.server.port() == 990 {
        "implicit TLS (port 990) began with the connection".to_owned()
    } else {
        format!(
            "the channel switched to TLS{}",
            cite_first(session, |e| matches!(
                &e.kind,
                EventKind::Ftp {
                    event: ControlEvent::Encrypted,
                    ..
                }
            ))
        )
    };
    let mut evidence = vec![began];
    if let Some((end, at, verdict)) = refusal {
        evidence.push(format!(
            "the {} end's {verdict} (+{} ms)",
            end.as_str(),
            session.offset_ms(at)
        ));
    }
    // Both ends' words: the refusing end's reason and the alert it sent,
    // and the alert the other end received for it.
    for end in [Side::Client, Side::Server] {
        let Some(view) = session.control.view(end) else {
            continue;
        };
        if let Some((at, error)) = view.tls_error {
            evidence.push(format!(
                "the {} end's {error} (+{} ms)",
                end.as_str(),
                session.offset_ms(at)
            ));
        }
        if let Some((at, alert)) = view.tls_alert_sent {
            evidence.push(format!(
                "the {} end's {alert} (+{} ms)",
                end.as_str(),
                session.offset_ms(at)
            ));
        }
    }
    if let Some((end, at, handshake)) = handshake_failed {
        evidence.push(format!(
            "the {} end's {handshake} (+{} ms)",
            end.as_str(),
            session.offset_ms(at)
        ));
    }
    if stopped {
        evidence.push(format!(
            "then the client sent {client_segments} and the server {server_segments} \
             encrypted segment(s): too few for a completed handshake and a login"
        ));
    }
    if let (Some((end, at, handshake)), None) = (refused_after, refusal) {
        let notified = client_notified(at);
        let how = match notified {
            Some(_) => " (its last TLS record, a close_notify, which the server's FIN answered)",
            None => "",
        };
        evidence.push(format!(
            "the {} end's {handshake} (+{} ms), and the client hung up {} ms later without \
             a word{how}: it refused the server after its library passed the handshake, most \
             often because the certificate's names do not include the host it asked for (a \
             check curl and lftp make themselves, which no library reports)",
            end.as_str(),
            session.offset_ms(at),
            notified.unwrap_or(ended_at).saturating_sub(at) / 1_000_000
        ));
    }
    evidence.push(format!(
        "the control connection closed with {} by {} {} ms after TLS began",
        control.close.as_str(),
        control.closed_by.as_str(),
        ended_at.saturating_sub(tls_at) / 1_000_000
    ));
    Some(found_at(Cause::TlsFailure, Some(ConnId::Control), evidence))
}

fn data_refused(session: &Session, data: &[(ConnId, Ending)]) -> Option<Diagnosis> {
    let (id, ending) = data.iter().find(|(_, e)| e.close == Close::Refused)?;
    let mut evidence = vec![format!(
        "{}'s SYN was answered by a reset{}",
        id.label(),
        cite_first(session, |e| {
            e.conn == *id
                && matches!(
                    &e.kind,
                    EventKind::ResetReceived { .. }
                        | EventKind::SocketError { errno: 111 }
                        | EventKind::ResetSent { state: None, .. }
                )
        })
    )];
    if ending.closed_by == ClosedBy::Middlebox {
        evidence.push(format!(
            "the server's end of {} (traced) sent no reset: a firewall or middlebox answered",
            id.label()
        ));
    }
    add_reply(session, &mut evidence, 425);
    Some(found_at(Cause::DataConnectionRefused, Some(*id), evidence))
}

fn data_blocked(session: &Session, data: &[(ConnId, Ending)]) -> Option<Diagnosis> {
    let stuck = data
        .iter()
        .find(|(id, e)| !session.conn(*id).established() && e.close != Close::Refused);
    let unused = session.expectations.iter().find(|x| x.used_by.is_none());
    let said_425 = session.replies.contains(&425);
    let mut evidence = Vec::new();
    let conn = if let Some((id, _)) = stuck {
        let conn = session.conn(*id);
        evidence.push(format!(
            "{} to {} never reached ESTABLISHED",
            id.label(),
            conn.server
        ));
        let syn_retransmits: u32 = conn.seen().map(|(_, v)| v.syn_retransmits).sum();
        if syn_retransmits > 0 {
            evidence.push(format!(
                "{syn_retransmits} SYN retransmit(s) went unanswered{}",
                cite_first(session, |e| e.conn == *id
                    && matches!(e.kind, EventKind::Retransmit { syn: true, .. }))
            ));
        }
        let drops = count(session, |e| {
            e.conn == *id && matches!(e.kind, EventKind::Drop { .. })
        });
        if drops > 0 {
            evidence.push(format!(
                "{drops} of its packet(s) dropped on this host{}",
                cite_first(session, |e| e.conn == *id
                    && matches!(e.kind, EventKind::Drop { .. }))
            ));
        }
        Some(*id)
    } else if let Some(x) = unused.filter(|_| said_425) {
        evidence.push(format!(
            "data endpoint port {} was announced{} and no connection to it was seen",
            x.port,
            cite_first(session, |e| matches!(&e.kind,
                EventKind::Ftp { event: ControlEvent::DataEndpoint { port, .. }, .. } if *port == x.port))
        ));
        None
    } else {
        return None;
    };
    add_reply(session, &mut evidence, 425);
    Some(found_at(Cause::DataConnectionBlocked, conn, evidence))
}

/// A data connection's receiver stopped reading: the sender's kernel probed
/// its zero window, and the transfer never completed after the stall began.
/// Probes are the sender's packets: the stalled end's own kernel reports
/// nothing, so this is judged where the sender is on this host.
fn receiver_stalled(session: &Session, data: &[(ConnId, Ending)]) -> Option<Diagnosis> {
    data.iter()
        .find_map(|(id, ending)| stalled(session, *id, *ending))
}

/// [`receiver_stalled`] for one data connection.
fn stalled(session: &Session, id: ConnId, ending: Ending) -> Option<Diagnosis> {
    let conn = session.conn(id);
    let (sender, view) = conn.seen().find(|(_, v)| v.zero_window_probes > 0)?;
    let probe = |e: &Entry| {
        e.conn == id && e.seen_at == sender && matches!(e.kind, EventKind::ZeroWindowProbe { .. })
    };
    let mut probes = session
        .timeline
        .entries()
        .filter(|e| probe(e))
        .map(|e| e.ns);
    let first_ns = probes.next().unwrap_or(conn.first_ns);
    let last_ns = probes.max().unwrap_or(first_ns).max(first_ns);
    // On a readable channel the server's word says whether the transfer
    // completed; on an encrypted one, the sender's own FIN does.
    let readable = session.words_readable();
    let completed = if readable {
        count(session, |e| {
            e.ns > first_ns
                && matches!(
                    &e.kind,
                    EventKind::Ftp {
                        event: ControlEvent::Reply {
                            code: 226 | 250,
                            ..
                        },
                        ..
                    }
                )
        }) > 0
    } else {
        ending.close == Close::Fin && ending.closed_by == ClosedBy::of(sender)
    };
    if completed || ending.close == Close::Refused {
        return None;
    }
    let receiver = sender.other();
    let role = match receiving_end(session, id) {
        Some(end) if end == receiver => " (the receiving end)",
        Some(_) => " (the sending end)",
        None => "",
    };
    let mut evidence = vec![
        format!(
            "the {}{role} stopped reading {}: its window fell to zero and the {}'s kernel sent \
             {} zero-window probe(s) over {} ms{}",
            Side::as_str(receiver),
            id.label(),
            Side::as_str(sender),
            view.zero_window_probes,
            last_ns.saturating_sub(first_ns) / 1_000_000,
            cite_first(session, probe)
        ),
        if readable {
            "the transfer never completed after the stall began: no 226 followed the first probe"
                .to_owned()
        } else {
            format!(
                "the {} never closed {} with FIN: the transfer did not complete",
                Side::as_str(sender),
                id.label()
            )
        },
    ];
    evidence.push(match ending.close {
        Close::Open => format!("{} was still open when the session ended", id.label()),
        close => format!(
            "then {} closed with {} by {}{}",
            id.label(),
            close.as_str(),
            ending.closed_by.as_str(),
            ending
                .at_ns
                .map(|ns| format!(" (+{} ms)", session.offset_ms(ns)))
                .unwrap_or_default()
        ),
    });
    add_reply(session, &mut evidence, 426);
    add_reply(session, &mut evidence, 421);
    Some(found_at(Cause::ReceiverStalled, Some(id), evidence))
}

/// The classic "the transfer finished but the client says it failed": the
/// control connection sat idle while a data connection moved the file, a
/// firewall or NAT dropped its idle state meanwhile, and the first words
/// after the transfer (the `226`, the next command) went into a void
/// (retransmits, then a timeout) or met a reset the peer did not send.
fn control_lost_during_transfer(session: &Session, control: Ending) -> Option<Diagnosis> {
    let failed_at = match (control.close, control.closed_by) {
        (Close::Timeout, ClosedBy::Client | ClosedBy::Server)
        | (Close::Reset, ClosedBy::Middlebox) => control.at_ns?,
        _ => return None,
    };
    // The data connection whose transfer ended last before the failure.
    let (data, opened, ended) = session
        .data
        .iter()
        .filter_map(|c| {
            let opened = c.seen().filter_map(|(_, v)| v.established_ns).min()?;
            let ended = ending(c).at_ns.unwrap_or(c.last_ns);
            (ended <= failed_at).then_some((c, opened, ended))
        })
        .max_by_key(|(_, _, ended)| *ended)?;
    let on_control = |e: &&Entry| e.conn == ConnId::Control;
    let last_word = session
        .timeline
        .entries()
        .filter(on_control)
        .filter(|e| e.ns <= ended)
        .last()?;
    if last_word.ns > opened + TRANSFER_OPENING_NS {
        return None;
    }
    let trouble = session.timeline.entries().filter(on_control).find(|e| {
        e.ns > ended
            && matches!(
                e.kind,
                EventKind::Retransmit { .. } | EventKind::ResetReceived { .. }
            )
    })?;
    if trouble.ns - ended > CONTROL_LOST_WITHIN_NS {
        return None;
    }
    let size = announced_size(session, ended)
        .map(|bytes| format!(", {bytes} bytes as the 150 announced"))
        .unwrap_or_default();
    let mut evidence = vec![format!(
        "the control connection carried nothing for {} ms after its last word{} while {} transferred for {} ms{size}",
        ended.saturating_sub(last_word.ns) / 1_000_000,
        cite(session, last_word),
        data.id.label(),
        ended.saturating_sub(opened) / 1_000_000,
    )];
    let failure = if control.close == Close::Timeout {
        let end = if control.closed_by == ClosedBy::Server {
            Side::Server
        } else {
            Side::Client
        };
        let view = session.control.view(end)?;
        format!(
            "{} ms after the transfer ended the control connection failed: {} retransmit(s) went unanswered{} and the {} end's kernel gave up (ETIMEDOUT)",
            (trouble.ns - ended) / 1_000_000,
            view.retransmits,
            cite(session, trouble),
            control.closed_by.as_str()
        )
    } else {
        format!(
            "{} ms after the transfer ended the control connection met a reset its peer did not send{}",
            (trouble.ns - ended) / 1_000_000,
            cite(session, trouble)
        )
    };
    evidence.push(failure);
    evidence.push(format!(
        "a {} alone would not say why: the pattern does. A firewall or NAT on the path most likely \
         dropped the idle control connection's state during the transfer (its idle timeout shorter than the transfer)",
        if control.close == Close::Timeout { "retransmission timeout" } else { "middlebox reset" }
    ));
    Some(found_at(
        Cause::ControlLostDuringTransfer,
        Some(ConnId::Control),
        evidence,
    ))
}

/// The size a `150` announced for the transfer that ended at `ended_ns`
/// (vsftpd: `150 Opening BINARY mode data connection for f (1048576 bytes).`).
fn announced_size(session: &Session, ended_ns: u64) -> Option<u64> {
    session
        .timeline
        .entries()
        .filter(|e| e.ns <= ended_ns)
        .filter_map(|e| match &e.kind {
            EventKind::Ftp {
                event:
                    ControlEvent::Reply {
                        code: 150 | 125,
                        text,
                    },
                ..
            } => Some(text),
            _ => None,
        })
        .last()
        .and_then(|text| {
            let (before, _) = text.rsplit_once(" bytes)")?;
            let (_, digits) = before.rsplit_once('(')?;
            digits.parse().ok()
        })
}

/// The end that receives a data connection's bytes, by the transfer
/// command it carried: the one nearest in time to its opening (it follows
/// the connection after `PASV`, precedes it after `PORT`).
fn receiving_end(session: &Session, id: ConnId) -> Option<Side> {
    let opened = session.get_conn(id)?.first_ns;
    session
        .timeline
        .entries()
        .filter(|e| e.conn == ConnId::Control)
        .filter_map(|e| match &e.kind {
            EventKind::Ftp {
                event: ControlEvent::Command { verb, .. },
                ..
            } => match verb {
                Verb::Retr | Verb::List | Verb::Nlst => Some((e.ns, Side::Client)),
                Verb::Stor | Verb::Appe => Some((e.ns, Side::Server)),
                _ => None,
            },
            _ => None,
        })
        .min_by_key(|(ns, _)| ns.abs_diff(opened))
        .map(|(_, end)| end)
}

fn timeout(session: &Session, endings: &[(ConnId, Ending)]) -> Option<Diagnosis> {
    let (id, ending) = endings
        .iter()
        .find(|(_, e)| e.close == Close::Timeout && e.closed_by != ClosedBy::Unknown)?;
    let conn = session.conn(*id);
    let end = match ending.closed_by {
        ClosedBy::Server => Side::Server,
        _ => Side::Client,
    };
    let view = conn.view(end)?;
    // A connection that never established and timed out is the data
    // rule's; here only kernel timeouts (ETIMEDOUT) count.
    view.troubles().errors.iter().find(|(_, e)| *e == 110)?;
    let gave_up = format!(
        "the {} end's kernel gave up on {}{}",
        ending.closed_by.as_str(),
        id.label(),
        cite_first(session, |e| e.conn == *id
            && matches!(e.kind, EventKind::SocketError { errno: 110 }))
    );
    if view.keepalive_probes > 0 {
        return Some(found_at(
            Cause::KeepaliveTimeout,
            Some(*id),
            vec![
                format!(
                    "{} keepalive probe(s) went unanswered{}",
                    view.keepalive_probes,
                    cite_first(session, |e| e.conn == *id
                        && matches!(e.kind, EventKind::KeepaliveProbe { .. }))
                ),
                gave_up,
            ],
        ));
    }
    let mut evidence = Vec::new();
    if view.retransmits + view.syn_retransmits > 0 {
        evidence.push(format!(
            "{} retransmit(s) went unanswered{}",
            view.retransmits + view.syn_retransmits,
            cite_first(session, |e| e.conn == *id
                && matches!(e.kind, EventKind::Retransmit { .. }))
        ));
    }
    evidence.push(gave_up);
    Some(found_at(Cause::RetransmissionTimeout, Some(*id), evidence))
}

fn middlebox_reset(session: &Session, endings: &[(ConnId, Ending)]) -> Option<Diagnosis> {
    let (id, _) = endings
        .iter()
        .find(|(_, e)| e.close == Close::Reset && e.closed_by == ClosedBy::Middlebox)?;
    let conn = session.conn(*id);
    // The end whose reset its peer did not send; when both ends received
    // one that looks so, the first: the later one answers its fallout.
    let receiver = conn
        .seen()
        .filter(|(end, _)| reset_sender(conn, *end) == ClosedBy::Middlebox)
        .filter_map(|(end, v)| {
            v.troubles()
                .resets_received
                .first()
                .map(|(ns, _)| (*ns, end))
        })
        .min_by_key(|(ns, _)| *ns)
        .map(|(_, end)| end)?;
    let sender = receiver.other();
    let received = format!(
        "the {} end received a reset{}",
        Side::as_str(receiver),
        cite_first(session, |e| e.conn == *id
            && e.seen_at == receiver
            && matches!(e.kind, EventKind::ResetReceived { .. }))
    );
    let why = if conn.view(sender).is_some_and(|v| v.had_socket) {
        format!(
            "both ends of {} are traced and the {}'s TCP stack sent no reset: something \
             in between forged it",
            id.label(),
            Side::as_str(sender)
        )
    } else {
        // Only one end here: the TTL is a hint, not a proof.
        let (ttl, usual) = reset_ttl_differs(conn, receiver)?;
        format!(
            "it arrived with TTL {ttl} where the {}'s packets arrive with TTL {usual}: \
             sent from another distance, so probably by a device in between (the {}'s \
             end is not traced, so this is a hint, not a proof)",
            Side::as_str(sender),
            Side::as_str(sender)
        )
    };
    Some(found_at(
        Cause::MiddleboxReset,
        Some(*id),
        vec![received, why],
    ))
}

fn server_idle_timeout(session: &Session, control: Ending) -> Option<Diagnosis> {
    // The 421 is the server ending the session; which FIN comes first
    // after it is a race (a client that reads the 421 may close at once).
    if control.close == Close::Open {
        return None;
    }
    let mut replies = session.timeline.entries().filter(|e| {
        e.conn == ConnId::Control
            && matches!(
                &e.kind,
                EventKind::Ftp {
                    event: ControlEvent::Reply { .. },
                    ..
                }
            )
    });
    replies.next()?; // the greeting
    let timed_out = replies.find(|e| {
        matches!(
            &e.kind,
            EventKind::Ftp {
                event: ControlEvent::Reply { code: 421, .. },
                ..
            }
        )
    })?;
    let before = session
        .timeline
        .entries()
        .filter(|e| {
            e.ns < timed_out.ns
                && matches!(
                    &e.kind,
                    EventKind::Ftp {
                        from: Side::Client,
                        ..
                    }
                )
        })
        .map(|e| e.ns)
        .max()
        .unwrap_or(session.start_ns);
    Some(found_at(
        Cause::ServerIdleTimeout,
        Some(ConnId::Control),
        vec![
            format!(
                "the server said 421 after {} ms without a command{}",
                timed_out.ns.saturating_sub(before) / 1_000_000,
                cite(session, timed_out)
            ),
            format!(
                "then the control connection closed with {} by {}",
                control.close.as_str(),
                control.closed_by.as_str()
            ),
        ],
    ))
}

fn client_abort(session: &Session, control: Ending) -> Option<Diagnosis> {
    let abort = |e: &Entry| {
        matches!(&e.kind, EventKind::Ftp { event: ControlEvent::Command { verb: Verb::Other(v), .. }, .. } if v == "ABOR")
            || matches!(
                &e.kind,
                EventKind::Ftp {
                    event: ControlEvent::Reply { code: 426, .. },
                    ..
                }
            )
    };
    if count(session, abort) > 0 {
        return Some(found_at(
            Cause::ClientAbort,
            Some(ConnId::Control),
            vec![format!(
                "the transfer was aborted{}",
                cite_first(session, abort)
            )],
        ));
    }
    // Under TLS a QUIT cannot be seen (unless the TLS library's plaintext
    // is read): its absence says nothing.
    if control.closed_by != ClosedBy::Client
        || session.quit_ns.is_some()
        || (session.encrypted_ns.is_some() && !session.decrypted)
    {
        return None;
    }
    let mut evidence = vec![format!(
        "the client closed the control connection with {} without QUIT{}",
        control.close.as_str(),
        control
            .at_ns
            .map(|ns| format!(" (+{} ms)", session.offset_ms(ns)))
            .unwrap_or_default()
    )];
    if session.transfer_open {
        evidence.push("a transfer had started (150) and not finished".into());
    }
    Some(found_at(
        Cause::ClientAbort,
        Some(ConnId::Control),
        evidence,
    ))
}

fn peer_reset(session: &Session, endings: &[(ConnId, Ending)]) -> Option<Diagnosis> {
    let (id, ending) = endings.iter().find(|(_, e)| e.close == Close::Reset)?;
    let conn = session.conn(*id);
    let mut evidence = vec![format!(
        "the {} reset {}{}",
        ending.closed_by.as_str(),
        id.label(),
        cite_first(session, |e| e.conn == *id
            && matches!(
                e.kind,
                EventKind::ResetSent { .. } | EventKind::ResetReceived { .. }
            ))
    )];
    let sender_seen = match ending.closed_by {
        ClosedBy::Client => conn.view(Side::Client).is_some_and(|v| v.had_socket),
        ClosedBy::Server => conn.view(Side::Server).is_some_and(|v| v.had_socket),
        _ => false,
    };
    if !sender_seen {
        let receiver = conn
            .seen()
            .find(|(_, v)| !v.troubles().resets_received.is_empty())
            .map(|(end, v)| (end, v.reset_ttl));
        if let Some((_, Some((ttl, Some(usual))))) = receiver {
            // Equal here (unequal makes it a middlebox's).
            evidence.push(format!(
                "it arrived with TTL {ttl}, as the peer's packets do ({usual})"
            ));
        }
        evidence.push("only the receiving end is traced: a middlebox cannot be ruled out".into());
    }
    Some(found_at(Cause::PeerReset, Some(*id), evidence))
}

fn packet_loss_recovered(session: &Session, control: Ending) -> Option<Diagnosis> {
    if control.close == Close::Open {
        return None;
    }
    let mut evidence = Vec::new();
    let mut worst: Option<(ConnId, u32)> = None;
    for conn in session.conns() {
        let n: u32 = conn
            .seen()
            .map(|(_, v)| v.retransmits + v.syn_retransmits)
            .sum();
        let duplicates = match spurious(conn) {
            Spurious::All => continue,
            Spurious::Some(d) => {
                format!(", of which the peer reported {d} as duplicates (spurious)")
            }
            Spurious::None => String::new(),
        };
        if n > 0 {
            evidence.push(format!(
                "{} retransmit(s) on {}{}{duplicates}",
                n,
                conn.id.label(),
                cite_first(session, |e| e.conn == conn.id
                    && matches!(e.kind, EventKind::Retransmit { .. }))
            ));
            if worst.is_none_or(|(_, w)| n > w) {
                worst = Some((conn.id, n));
            }
        }
    }
    let (id, _) = worst?;
    evidence.push("the session still completed: the losses were recovered".into());
    Some(found_at(Cause::PacketLossRecovered, Some(id), evidence))
}

/// How many of a connection's retransmits its own sockets' counts (read
/// as each was freed) show to be spurious: the peer reported the segment
/// as a duplicate (D-SACK), so the original had arrived.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Spurious {
    /// Every retransmitted segment (of every end that retransmitted).
    All,
    Some(u32),
    None,
}

fn spurious(conn: &super::model::Conn) -> Spurious {
    let (mut retransmitted, mut duplicates, mut unknown) = (0, 0, false);
    for (_, view) in conn.seen() {
        if view.retransmits + view.syn_retransmits + view.closing_retransmits == 0 {
            continue;
        }
        match view.retransmit_counts {
            Some(c) => {
                retransmitted += c.retransmitted;
                duplicates += c.duplicates.min(c.retransmitted);
            }
            None => unknown = true,
        }
    }
    match (unknown, duplicates) {
        (_, 0) => Spurious::None,
        (false, d) if d >= retransmitted => Spurious::All,
        (_, d) => Spurious::Some(d),
    }
}

/// Sentences for a clean session whose retransmits were all spurious: not
/// loss, and said so, since a count of retransmits alone would look like it.
fn spurious_retransmits(session: &Session) -> Vec<String> {
    session
        .conns()
        .filter(|c| spurious(c) == Spurious::All)
        .map(|conn| {
            let (end, counts) = conn
                .seen()
                .find_map(|(end, v)| {
                    v.retransmit_counts
                        .filter(|c| c.retransmitted > 0)
                        .map(|c| (end, c))
                })
                .expect("spurious retransmits have counts");
            format!(
                "also: {} retransmitted {} segment(s) on {}{} and the peer reported {} of them as \
                 duplicates (D-SACK): spurious retransmits, the originals had arrived; not loss",
                Side::as_str(end),
                counts.retransmitted,
                conn.id.label(),
                cite_first(session, |e| e.conn == conn.id
                    && matches!(e.kind, EventKind::Retransmit { .. })),
                counts.duplicates
            )
        })
        .collect()
}

fn add_reply(session: &Session, evidence: &mut Vec<String>, code: u16) {
    let said = |e: &Entry| matches!(&e.kind, EventKind::Ftp { event: ControlEvent::Reply { code: c, .. }, .. } if *c == code);
    if count(session, said) > 0 {
        evidence.push(format!(
            "the server replied {code}{}",
            cite_first(session, said)
        ));
    }
}

fn is_command(entry: &Entry, verb: &Verb) -> bool {
    matches!(&entry.kind, EventKind::Ftp { event: ControlEvent::Command { verb: v, .. }, .. } if v == verb)
}

fn count(session: &Session, what: impl Fn(&Entry) -> bool) -> usize {
    session.timeline.entries().filter(|e| what(e)).count()
}

/// ` (+12 ms data:1 client: retransmit SYN in SYN_SENT)` for the first
/// timeline entry that matches, or nothing.
fn cite_first(session: &Session, what: impl Fn(&Entry) -> bool) -> String {
    session
        .timeline
        .entries()
        .find(|e| what(e))
        .map(|e| cite(session, e))
        .unwrap_or_default()
}

fn cite(session: &Session, entry: &Entry) -> String {
    format!(
        " (+{} ms {} {}: {})",
        session.offset_ms(entry.ns),
        entry.conn.label(),
        Side::as_str(entry.seen_at),
        entry.kind
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        event::EventKind,
        ftp::{ControlEvent, Side::*, Verb},
        session::{
            close::ending,
            script::{Link, Script, sessions_of, sessions_through_nat},
        },
    };

    const CLIENT: &str = "192.0.2.2:40000";
    const SERVER: &str = "192.0.2.1:21";
    const DATA_CLIENT: &str = "192.0.2.2:40002";
    const DATA_SERVER: &str = "192.0.2.1:30001";
    const BOTH: &[Side] = &[Client, Server];
    const SERVER_ONLY: &[Side] = &[Server];
    const CLIENT_ONLY: &[Side] = &[Client];

    /// `cause cause_conn | close/closed_by, ...` of each session.
    pub fn verdicts(events: &[crate::event::KernelEvent], end_ns: u64) -> Vec<String> {
        sessions_of(events, end_ns)
            .iter()
            .map(|s| {
                let d = diagnose(s);
                let closes: Vec<String> = s
                    .conns()
                    .map(|c| {
                        let e = ending(c);
                        format!("{}/{}", e.close.as_str(), e.closed_by.as_str())
                    })
                    .collect();
                format!(
                    "{} {} | {}",
                    d.cause.map_or("none", |c| c.as_str()),
                    d.cause_conn.map_or("-".into(), |c| c.label()),
                    closes.join(", ")
                )
            })
            .collect()
    }

    /// The verdict of each session in the stream cut to `seen`.
    fn seen(script: &Script, seen: &[Side]) -> Vec<String> {
        verdicts(&script.seen_from(seen), script.end_ns())
    }

    /// The evidence of the script's only session, seen from `seen`.
    fn evidence(script: &Script, seen: &[Side]) -> Vec<String> {
        let sessions = sessions_of(&script.seen_from(seen), script.end_ns());
        diagnose(&sessions[0]).evidence
    }

    /// Login, PASV, RETR with its data connection, 226.
    fn download(s: &mut Script) -> (Link, Link) {
        let control = s.connect(CLIENT, SERVER);
        s.login(&control);
        let data = retr(s, &control);
        (control, data)
    }

    /// PASV, RETR with its data connection, 150.
    fn retr(s: &mut Script, control: &Link) -> Link {
        s.pasv(control, 30001);
        let data = s.connect(DATA_CLIENT, DATA_SERVER);
        s.command(control, Verb::Retr, Some("file"));
        s.reply(control, 150, "Opening BINARY mode data connection.");
        data
    }

    fn quit(s: &mut Script, control: &Link) {
        s.command(control, Verb::Quit, None);
        s.reply(control, 221, "Goodbye.");
        s.fin(control, Server);
    }

    #[test]
    fn clean_from_either_end_or_both() {
        let mut s = Script::new();
        let (control, data) = download(&mut s);
        s.fin(&data, Server);
        s.reply(&control, 226, "Transfer complete.");
        quit(&mut s, &control);
        for ends in [BOTH, SERVER_ONLY, CLIENT_ONLY] {
            assert_eq!(
                seen(&s, ends),
                ["clean - | fin/server, fin/server"],
                "{ends:?}"
            );
        }
    }

    /// Events the kernel never delivered (a full ring, a tracepoint not run)
    /// must not turn a clean session into a failed one: leaving ESTABLISHED,
    /// or words on the channel, prove the handshake happened.
    #[test]
    fn a_missed_handshake_does_not_hide_an_established_connection() {
        let mut s = Script::new();
        let (control, data) = download(&mut s);
        s.fin(&data, Server);
        s.reply(&control, 226, "Transfer complete.");
        quit(&mut s, &control);
        let without_handshakes: Vec<_> = s
            .seen_from(BOTH)
            .into_iter()
            .filter(|e| {
                !matches!(&e.kind, EventKind::State { new, .. } if new == "ESTABLISHED" || new == "SYN_RECV")
            })
            .collect();
        assert_eq!(
            verdicts(&without_handshakes, s.end_ns()),
            ["clean - | fin/server, fin/server"]
        );
    }

    #[test]
    fn server_idle_timeout() {
        let mut s = Script::new();
        let control = s.connect(CLIENT, SERVER);
        s.login(&control);
        s.after_ms(300_000);
        s.reply(&control, 421, "Timeout.");
        let mut client_first = s.clone();
        s.fin(&control, Server);
        for ends in [BOTH, SERVER_ONLY, CLIENT_ONLY] {
            assert_eq!(
                seen(&s, ends),
                ["server_idle_timeout control | fin/server"],
                "{ends:?}"
            );
        }
        // A client that reads the 421 may close first: still the server's timeout.
        client_first.fin(&control, Client);
        assert_eq!(
            seen(&client_first, BOTH),
            ["server_idle_timeout control | fin/client"]
        );
    }

    #[test]
    fn client_abort_mid_transfer() {
        let mut s = Script::new();
        let (control, data) = download(&mut s);
        s.reset(&data, Client);
        s.fin(&control, Client);
        for ends in [BOTH, SERVER_ONLY, CLIENT_ONLY] {
            assert_eq!(
                seen(&s, ends),
                ["client_abort control | fin/client, reset/client"],
                "{ends:?}"
            );
        }
    }

    #[test]
    fn an_abor_is_a_client_abort() {
        let mut s = Script::new();
        let (control, data) = download(&mut s);
        s.command(&control, Verb::Other("ABOR".into()), None);
        s.fin(&data, Server);
        s.reply(&control, 226, "ABOR successful.");
        quit(&mut s, &control);
        assert_eq!(
            seen(&s, BOTH),
            ["client_abort control | fin/server, fin/server"]
        );
    }

    /// The data SYNs die in the server's firewall: the client retransmits
    /// them; the server's kernel drops them before any socket sees them.
    #[test]
    fn data_connection_blocked() {
        let mut s = Script::new();
        let control = s.connect(CLIENT, SERVER);
        s.login(&control);
        s.pasv(&control, 30001);
        let data = s.link(DATA_CLIENT, DATA_SERVER);
        s.blackholed_syn(&data, 3);
        s.reply(&control, 425, "Failed to establish connection.");
        quit(&mut s, &control);
        assert_eq!(
            seen(&s, BOTH),
            ["data_connection_blocked data:1 | fin/server, timeout/client"]
        );
        assert_eq!(
            seen(&s, CLIENT_ONLY),
            ["data_connection_blocked data:1 | fin/server, timeout/client"]
        );
        // The server's host sees only the drops: nobody there closed it.
        assert_eq!(
            seen(&s, SERVER_ONLY),
            ["data_connection_blocked data:1 | fin/server, timeout/unknown"]
        );
    }

    #[test]
    fn an_announced_endpoint_nobody_reached_and_a_425_is_blocked() {
        let mut s = Script::new();
        let control = s.connect(CLIENT, SERVER);
        s.login(&control);
        s.pasv(&control, 30001);
        s.command(&control, Verb::Retr, Some("file"));
        s.reply(&control, 425, "Failed to establish connection.");
        quit(&mut s, &control);
        assert_eq!(seen(&s, BOTH), ["data_connection_blocked - | fin/server"]);
    }

    #[test]
    fn data_connection_refused_by_the_server() {
        let mut s = Script::new();
        let control = s.connect(CLIENT, SERVER);
        s.login(&control);
        s.pasv(&control, 30001);
        let data = s.link(DATA_CLIENT, DATA_SERVER);
        s.refused(&data, true);
        quit(&mut s, &control);
        for ends in [BOTH, SERVER_ONLY, CLIENT_ONLY] {
            assert_eq!(
                seen(&s, ends),
                ["data_connection_refused data:1 | fin/server, refused/server"],
                "{ends:?}"
            );
        }
    }

    #[test]
    fn packet_loss_recovered() {
        let mut s = Script::new();
        let (control, data) = download(&mut s);
        for _ in 0..4 {
            s.emit(
                &data,
                Server,
                EventKind::Retransmit {
                    state: "ESTABLISHED".into(),
                    syn: false,
                    error: None,
                    segs: Some(2),
                },
            );
        }
        s.fin(&data, Server);
        s.reply(&control, 226, "Transfer complete.");
        quit(&mut s, &control);
        for ends in [BOTH, SERVER_ONLY] {
            assert_eq!(
                seen(&s, ends),
                ["packet_loss_recovered data:1 | fin/server, fin/server"]
            );
        }
        // The receiver sees no retransmits of its peer: clean from there.
        assert_eq!(seen(&s, CLIENT_ONLY), ["clean - | fin/server, fin/server"]);
    }

    /// Retransmits the peer reported as duplicates (D-SACK) were spurious:
    /// the originals had arrived (a delayed ACK, a CPU too busy to answer
    /// in time). A clean session stays clean and says so; one where only
    /// some were is still loss recovered, with the count.
    #[test]
    fn spurious_retransmits_are_not_loss() {
        let run = |duplicates: u32, ends: &[Side]| {
            let mut s = Script::new();
            let (control, data) = download(&mut s);
            for _ in 0..3 {
                s.retransmit(&data, Server, "ESTABLISHED");
            }
            s.retransmit_counts(&data, Server, 3, duplicates);
            s.fin(&data, Server);
            s.reply(&control, 226, "Transfer complete.");
            quit(&mut s, &control);
            let sessions = sessions_of(&s.seen_from(ends), s.end_ns());
            diagnose(&sessions[0])
        };
        for ends in [BOTH, SERVER_ONLY] {
            let all = run(3, ends);
            assert_eq!(all.cause, Some(Cause::Clean), "{ends:?}");
            assert!(
                all.evidence[1].starts_with("also: server retransmitted 3 segment(s) on data:1 (+")
                    && all.evidence[1].ends_with(
                        "and the peer reported 3 of them as duplicates (D-SACK): spurious \
                     retransmits, the originals had arrived; not loss"
                    ),
                "{:?}",
                all.evidence
            );
            let some = run(1, ends);
            assert_eq!(some.cause, Some(Cause::PacketLossRecovered), "{ends:?}");
            assert!(
                some.evidence[0]
                    .ends_with(", of which the peer reported 1 as duplicates (spurious)"),
                "{:?}",
                some.evidence
            );
            assert_eq!(run(0, ends).cause, Some(Cause::PacketLossRecovered));
        }
    }

    /// A FIN retransmitted after the transfer is not data lost.
    #[test]
    fn a_retransmitted_fin_is_not_loss() {
        let mut s = Script::new();
        let (control, data) = download(&mut s);
        s.retransmit(&data, Server, "FIN_WAIT1");
        s.fin(&data, Server);
        s.reply(&control, 226, "Transfer complete.");
        quit(&mut s, &control);
        assert_eq!(seen(&s, BOTH), ["clean - | fin/server, fin/server"]);
    }

    #[test]
    fn retransmission_timeout() {
        let mut s = Script::new();
        let control = s.connect(CLIENT, SERVER);
        s.login(&control);
        s.command(&control, Verb::Other("NOOP".into()), None);
        s.blackholed(&control, Client, 5, 500);
        s.after_ms(10_000);
        s.fin(&control, Server);
        for ends in [BOTH, CLIENT_ONLY] {
            assert_eq!(
                seen(&s, ends),
                ["retransmission_timeout control | timeout/client"],
                "{ends:?}"
            );
        }
    }

    #[test]
    fn keepalive_timeout() {
        let mut s = Script::new();
        let control = s.connect(CLIENT, SERVER);
        s.login(&control);
        for probes_out in 0..3 {
            s.after_ms(1000);
            s.emit(&control, Client, EventKind::KeepaliveProbe { probes_out });
        }
        s.after_ms(1000);
        s.give_up(&control, Client, "ESTABLISHED");
        for ends in [BOTH, CLIENT_ONLY] {
            let verdict = seen(&s, ends);
            assert_eq!(verdict.len(), 1);
            assert!(
                verdict[0].starts_with("keepalive_timeout control | timeout/client"),
                "{verdict:?}"
            );
        }
    }

    /// The server got a reset its peer's stack never sent.
    #[test]
    fn middlebox_reset_when_both_ends_are_here() {
        let mut s = Script::new();
        let (control, data) = download(&mut s);
        s.received_reset(&data, Server);
        s.received_reset(&data, Client);
        s.reply(&control, 426, "Failure writing network stream.");
        quit(&mut s, &control);
        assert_eq!(
            seen(&s, BOTH),
            ["middlebox_reset data:1 | fin/server, reset/middlebox"]
        );
        // Neither peer sent one: the first reset received is the cause.
        assert!(
            evidence(&s, BOTH)[0].starts_with("the server end received a reset"),
            "{:?}",
            evidence(&s, BOTH)
        );
        // From one end alone, the reset is the peer's as far as anyone can
        // tell; the 426 says the transfer was cut.
        assert_eq!(
            seen(&s, SERVER_ONLY),
            ["client_abort control | fin/server, reset/client"]
        );
    }

    /// With one end here, a reset that arrives from another distance than
    /// the peer's packets is probably a middlebox's, and said so as a hint.
    #[test]
    fn middlebox_reset_from_one_end_by_the_resets_ttl() {
        let mut s = Script::new();
        let (control, data) = download(&mut s);
        s.received_reset_with_ttl(&data, Server, 64, 63);
        s.reply(&control, 426, "Failure writing network stream.");
        quit(&mut s, &control);
        assert_eq!(
            seen(&s, SERVER_ONLY),
            ["middlebox_reset data:1 | fin/server, reset/middlebox"]
        );
        let evidence = evidence(&s, SERVER_ONLY);
        assert!(
            evidence[1].contains("TTL 64")
                && evidence[1].contains("TTL 63")
                && evidence[1].contains("a hint, not a proof"),
            "{:?}",
            evidence
        );
    }

    /// The same TTL as the peer's packets: the peer's reset, as far as one
    /// end can tell.
    #[test]
    fn peer_reset_from_one_end_with_the_peers_ttl() {
        let mut s = Script::new();
        let control = s.connect(CLIENT, SERVER);
        s.login(&control);
        s.received_reset_with_ttl(&control, Client, 63, 63);
        assert_eq!(seen(&s, CLIENT_ONLY), ["peer_reset control | reset/server"]);
        let evidence = evidence(&s, CLIENT_ONLY);
        assert!(
            evidence
                .iter()
                .any(|e| e == "it arrived with TTL 63, as the peer's packets do (63)"),
            "{:?}",
            evidence
        );
    }

    #[test]
    fn peer_reset() {
        let mut s = Script::new();
        let control = s.connect(CLIENT, SERVER);
        s.login(&control);
        s.reset(&control, Server);
        for ends in [BOTH, SERVER_ONLY, CLIENT_ONLY] {
            assert_eq!(
                seen(&s, ends),
                ["peer_reset control | reset/server"],
                "{ends:?}"
            );
        }
        let evidence = evidence(&s, CLIENT_ONLY);
        assert!(
            evidence
                .iter()
                .any(|e| e.contains("middlebox cannot be ruled out")),
            "{:?}",
            evidence
        );
    }

    #[test]
    fn connection_refused() {
        let mut s = Script::new();
        let control = s.link(CLIENT, SERVER);
        s.refused(&control, true);
        for ends in [BOTH, SERVER_ONLY, CLIENT_ONLY] {
            assert_eq!(
                seen(&s, ends),
                ["connection_refused control | refused/server"],
                "{ends:?}"
            );
        }
    }

    /// 5.10 reports no reset without a socket, and no drop reason: the SYN
    /// TCP dropped in tcp_v4_rcv is what says it answered with a reset.
    #[test]
    fn connection_refused_on_a_kernel_without_socketless_resets() {
        let mut s = Script::new();
        let control = s.link(CLIENT, SERVER);
        s.refused(&control, false);
        for ends in [BOTH, SERVER_ONLY] {
            assert_eq!(
                seen(&s, ends),
                ["connection_refused control | refused/server"],
                "{ends:?}"
            );
        }
    }

    #[test]
    fn server_limit_at_the_greeting() {
        let mut s = Script::new();
        let control = s.connect(CLIENT, SERVER);
        s.reply(
            &control,
            421,
            "There are too many connected users, please try later.",
        );
        s.fin(&control, Server);
        for ends in [BOTH, SERVER_ONLY, CLIENT_ONLY] {
            assert_eq!(
                seen(&s, ends),
                ["server_limit control | fin/server"],
                "{ends:?}"
            );
        }
    }

    #[test]
    fn server_limit_by_accept_queue_overflow() {
        let mut s = Script::new();
        let control = s.link(CLIENT, SERVER);
        s.dropped(&control, Server, Some("TCP_LISTEN_OVERFLOW"), 0x02, None);
        assert_eq!(
            seen(&s, SERVER_ONLY),
            ["server_limit control | timeout/unknown"]
        );
    }

    fn auth_tls(s: &mut Script, control: &Link) {
        s.reply(control, 220, "(vsFTPd 3.0.3)");
        s.command(control, Verb::Auth, Some("TLS"));
        s.reply(control, 234, "Proceed with negotiation.");
        s.say(control, Server, ControlEvent::Encrypted);
    }

    /// The client's TLS library said why it refused the certificate: the
    /// evidence names it, whatever the segments' count.
    #[test]
    fn tls_failure_names_the_libraries_reason() {
        let mut s = Script::new();
        let control = s.connect(CLIENT, SERVER);
        auth_tls(&mut s, &control);
        for _ in 0..5 {
            s.segment(&control, Client, Server, 300);
        }
        s.emit(
            &control,
            Client,
            EventKind::TlsVerify(crate::tls_verify::Verdict {
                verifier: crate::tls_verify::Verifier::OpenSsl,
                code: 62,
            }),
        );
        s.reset(&control, Client);
        assert_eq!(seen(&s, BOTH), ["tls_failure control | reset/client"]);
        let evidence = evidence(&s, BOTH);
        assert!(
            evidence[1].starts_with(
                "the client end's OpenSSL refused the peer's certificate: the certificate's \
                 names do not include the host the client asked for (X509_V_ERR_HOSTNAME_MISMATCH)"
            ),
            "{evidence:?}"
        );
        // Without the library's word, five segments would have been too many
        // for a failed handshake.
        assert!(
            !evidence.iter().any(|e| e.contains("too few")),
            "{evidence:?}"
        );
    }

    /// GnuTLS's handshake refused the server and said so with a fatal
    /// alert: the evidence names it from the client's end, though the
    /// handshake took enough segments. A close_notify is no refusal.
    #[test]
    fn a_fatal_alert_sent_names_the_end_that_refused() {
        for (level, refused) in [(2, true), (1, false)] {
            let mut s = Script::new();
            let control = s.connect(CLIENT, SERVER);
            auth_tls(&mut s, &control);
            // More than a handshake that stopped would take.
            for _ in 0..5 {
                handshake_segments(&mut s, &control);
            }
            s.emit(
                &control,
                Client,
                EventKind::TlsAlertSent(crate::tls_alert::SentAlert {
                    library: crate::tls_verify::Verifier::GnuTls,
                    level,
                    description: 48,
                }),
            );
            s.after_ms(3_000);
            s.fin(&control, Client);
            let seen = seen(&s, BOTH);
            if !refused {
                assert!(!seen[0].starts_with("tls_failure"), "{seen:?}");
                continue;
            }
            assert_eq!(seen, ["tls_failure control | fin/client"]);
            let evidence = evidence(&s, BOTH);
            assert!(
                evidence[1].starts_with("the client end's GnuTLS sent fatal alert unknown_ca (+"),
                "{evidence:?}"
            );
        }
    }

    /// A TLS handshake's four flights, seen at both ends.
    fn handshake_segments(s: &mut Script, control: &Link) {
        for (from, at) in [
            (Client, Client),
            (Client, Server),
            (Server, Server),
            (Server, Client),
        ] {
            s.segment(control, from, at, 500);
        }
    }

    fn handshake(library: crate::tls_verify::Verifier, code: i32) -> EventKind {
        EventKind::TlsHandshake(crate::tls_handshake::Handshake { library, code })
    }

    /// The client's GnuTLS ended the handshake with an error: the evidence
    /// names it.
    #[test]
    fn tls_failure_names_the_handshakes_error() {
        let mut s = Script::new();
        let control = s.connect(CLIENT, SERVER);
        auth_tls(&mut s, &control);
        for _ in 0..5 {
            s.segment(&control, Client, Server, 300);
        }
        s.emit(
            &control,
            Client,
            handshake(crate::tls_verify::Verifier::GnuTls, -110),
        );
        s.reset(&control, Client);
        assert_eq!(seen(&s, BOTH), ["tls_failure control | reset/client"]);
        let evidence = evidence(&s, BOTH);
        assert!(
            evidence[1].starts_with(
                "the client end's TLS handshake failed: the connection closed during the \
                 handshake (GnuTLS GNUTLS_E_PREMATURE_TERMINATION)"
            ),
            "{evidence:?}"
        );
    }

    /// A handshake the library completed did not stop, however few the
    /// segments after it.
    #[test]
    fn a_completed_handshake_is_no_tls_failure() {
        let mut s = Script::new();
        let control = s.connect(CLIENT, SERVER);
        auth_tls(&mut s, &control);
        handshake_segments(&mut s, &control);
        s.emit(
            &control,
            Server,
            handshake(crate::tls_verify::Verifier::OpenSsl, 1),
        );
        // Long after: not a refusal of the server's certificate.
        s.after_ms(1_500);
        s.reset(&control, Client);
        assert!(
            !seen(&s, BOTH)[0].starts_with("tls_failure"),
            "{:?}",
            seen(&s, BOTH)
        );
    }

    /// curl's check of the certificate's names: OpenSSL completed the
    /// handshake, then curl hung up without a word. Not so a client that
    /// hangs up only after it spoke.
    #[test]
    fn a_client_that_hangs_up_after_a_completed_handshake_refused_the_server() {
        for (words, cause) in [(false, "tls_failure control | fin/client"), (true, "")] {
            let mut s = Script::new();
            let control = s.connect(CLIENT, SERVER);
            auth_tls(&mut s, &control);
            handshake_segments(&mut s, &control);
            s.emit(
                &control,
                Client,
                handshake(crate::tls_verify::Verifier::OpenSsl, 1),
            );
            if words {
                s.login(&control);
            }
            s.after_ms(2);
            s.fin(&control, Client);
            let seen = seen(&s, BOTH);
            if words {
                assert!(!seen[0].starts_with("tls_failure"), "{seen:?}");
                continue;
            }
            assert_eq!(seen, [cause]);
            let evidence = evidence(&s, BOTH);
            assert!(
                evidence[1].starts_with("the client end's TLS handshake done (OpenSSL) (+")
                    && evidence[1].contains("and the client hung up 2 ms later without a word"),
                "{evidence:?}"
            );
        }
    }

    /// curl's close_notify reaches vsftpd, whose FIN may cross curl's or
    /// go first: the client's record after the handshake says who hung up.
    /// Without it, a server that closes first after the handshake is not
    /// a client refusing it.
    #[test]
    fn a_close_notify_before_the_servers_fin_is_the_client_hanging_up() {
        for (notify, crossing, cause) in [
            (true, true, "tls_failure control | fin/server"),
            (true, false, "tls_failure control | fin/server"),
            (false, true, ""),
            (false, false, ""),
        ] {
            let mut s = Script::new();
            let control = s.connect(CLIENT, SERVER);
            auth_tls(&mut s, &control);
            handshake_segments(&mut s, &control);
            s.emit(
                &control,
                Client,
                handshake(crate::tls_verify::Verifier::OpenSsl, 1),
            );
            s.after_ms(1);
            if notify {
                s.segment(&control, Client, Client, 31);
                s.segment(&control, Client, Server, 31);
            }
            s.after_ms(1);
            if crossing {
                s.crossing_fins(&control, Server);
            } else {
                s.fin(&control, Server);
            }
            let seen = seen(&s, BOTH);
            let case = format!("notify {notify}, crossing {crossing}: {seen:?}");
            if !notify {
                assert!(!seen[0].starts_with("tls_failure"), "{case}");
                continue;
            }
            assert_eq!(seen, [cause], "{case}");
            let evidence = evidence(&s, BOTH);
            assert!(
                evidence[1].contains("and the client hung up 1 ms later without a word (its last TLS record, a close_notify"),
                "{case} {evidence:?}"
            );
        }
    }

    #[test]
    fn tls_failure_when_the_handshake_stops() {
        let mut s = Script::new();
        let control = s.connect(CLIENT, SERVER);
        auth_tls(&mut s, &control);
        handshake_segments(&mut s, &control);
        s.segment(&control, Client, Server, 7);
        s.segment(&control, Client, Client, 7);
        s.reset(&control, Client);
        for ends in [BOTH, SERVER_ONLY, CLIENT_ONLY] {
            assert_eq!(
                seen(&s, ends),
                ["tls_failure control | reset/client"],
                "{ends:?}"
            );
        }
    }

    /// A completed handshake, a login and an orderly close: clean, though
    /// no QUIT could be read.
    #[test]
    fn a_completed_tls_session_is_clean() {
        let mut s = Script::new();
        let control = s.connect(CLIENT, SERVER);
        auth_tls(&mut s, &control);
        for _ in 0..6 {
            s.segment(&control, Client, Server, 100);
            s.segment(&control, Server, Server, 100);
        }
        s.fin(&control, Client);
        assert_eq!(seen(&s, SERVER_ONLY), ["clean - | fin/client"]);
    }

    /// The TLS library's plaintext read (`tls_plaintext`): words after the
    /// `234`, so the session is judged as a clear one. A download and QUIT
    /// is clean by its QUIT, its data connection linked by the `227`.
    #[test]
    fn an_ftps_session_read_in_the_clear_is_judged_as_a_clear_one() {
        let mut s = Script::new();
        let control = s.connect(CLIENT, SERVER);
        auth_tls(&mut s, &control);
        s.command(&control, Verb::User, Some("alice"));
        s.reply(&control, 230, "Login successful.");
        let data = retr(&mut s, &control);
        s.fin(&data, Server);
        s.reply(&control, 226, "Transfer complete.");
        quit(&mut s, &control);
        for ends in [BOTH, SERVER_ONLY, CLIENT_ONLY] {
            assert_eq!(
                seen(&s, ends),
                ["clean - | fin/server, fin/server"],
                "{ends:?}"
            );
            let session = &sessions_of(&s.seen_from(ends), s.end_ns())[0];
            assert!(session.decrypted && session.encrypted(), "{ends:?}");
            assert_eq!(
                session.data[0].linked_by,
                crate::session::model::LinkedBy::Announcement
            );
            assert!(session.quit_ns.is_some());
        }
    }

    /// Read in the clear, a client that closes without QUIT is an abort,
    /// which an unreadable TLS channel could not say.
    #[test]
    fn an_ftps_client_leaving_without_quit_is_an_abort_when_read_in_the_clear() {
        let mut s = Script::new();
        let control = s.connect(CLIENT, SERVER);
        auth_tls(&mut s, &control);
        s.command(&control, Verb::User, Some("alice"));
        s.reply(&control, 230, "Login successful.");
        s.fin(&control, Client);
        assert_eq!(seen(&s, BOTH), ["client_abort control | fin/client"]);
    }

    #[test]
    fn a_server_closing_without_a_word_is_unknown() {
        let mut s = Script::new();
        let control = s.connect(CLIENT, SERVER);
        s.login(&control);
        s.fin(&control, Server);
        assert_eq!(seen(&s, BOTH), ["unknown - | fin/server"]);
    }

    #[test]
    fn an_open_session_has_no_cause_yet() {
        let mut s = Script::new();
        let control = s.connect(CLIENT, SERVER);
        s.login(&control);
        assert_eq!(seen(&s, BOTH), ["none - | open/unknown"]);
    }

    /// `n` zero-window probes from `sender`, `every_ms` apart.
    fn window_probes(s: &mut Script, link: &Link, sender: Side, n: u8, every_ms: u64) {
        for probes_out in 0..n {
            s.after_ms(every_ms);
            s.emit(link, sender, EventKind::ZeroWindowProbe { probes_out });
        }
    }

    /// The downloading client stops reading; the server probes its zero
    /// window; the client gives up and closes the data socket with unread
    /// bytes (a reset) and the control connection without QUIT.
    #[test]
    fn receiver_stalled_on_a_download() {
        let mut s = Script::new();
        let (control, data) = download(&mut s);
        window_probes(&mut s, &data, Server, 4, 400);
        s.reset(&data, Client);
        s.fin(&control, Client);
        for ends in [BOTH, SERVER_ONLY] {
            assert_eq!(
                seen(&s, ends),
                ["receiver_stalled data:1 | fin/client, reset/client"],
                "{ends:?}"
            );
        }
        let evidence = evidence(&s, BOTH);
        assert!(
            evidence[0].starts_with(
                "the client (the receiving end) stopped reading data:1: its window fell to zero \
                 and the server's kernel sent 4 zero-window probe(s) over 1200 ms (+"
            ),
            "{evidence:?}"
        );
        assert!(evidence[1].contains("no 226"), "{evidence:?}");
        assert!(
            evidence[2].starts_with("then data:1 closed with reset by client"),
            "{evidence:?}"
        );
        // The stalled end's kernel sends no probes: from there alone, the
        // client just gave up.
        assert_eq!(
            seen(&s, CLIENT_ONLY),
            ["client_abort control | fin/client, reset/client"]
        );
    }

    /// The server stops reading an upload (its process stopped, its disk
    /// busy): the client probes, gives up and closes.
    #[test]
    fn receiver_stalled_on_an_upload() {
        let mut s = Script::new();
        let control = s.connect(CLIENT, SERVER);
        s.login(&control);
        s.pasv(&control, 30001);
        let data = s.connect(DATA_CLIENT, DATA_SERVER);
        s.command(&control, Verb::Stor, Some("file"));
        s.reply(&control, 150, "Ok to send data.");
        window_probes(&mut s, &data, Client, 3, 800);
        s.fin(&data, Client);
        s.reset(&control, Client);
        for ends in [BOTH, CLIENT_ONLY] {
            assert_eq!(
                seen(&s, ends),
                ["receiver_stalled data:1 | reset/client, fin/client"],
                "{ends:?}"
            );
            let evidence = evidence(&s, ends);
            assert!(
                evidence[0].starts_with("the server (the receiving end) stopped reading data:1"),
                "{evidence:?}"
            );
        }
    }

    /// A receiver that paused and read again: probes, then the transfer
    /// completed. Slow, not stalled.
    #[test]
    fn a_paused_receiver_that_caught_up_is_not_stalled() {
        let mut s = Script::new();
        let (control, data) = download(&mut s);
        window_probes(&mut s, &data, Server, 2, 200);
        s.fin(&data, Server);
        s.reply(&control, 226, "Transfer complete.");
        quit(&mut s, &control);
        for ends in [BOTH, SERVER_ONLY, CLIENT_ONLY] {
            assert_eq!(
                seen(&s, ends),
                ["clean - | fin/server, fin/server"],
                "{ends:?}"
            );
        }
    }

    /// A download that runs 5 s while the control connection idles; then the
    /// server's `226` goes into a void: retransmits, then ETIMEDOUT.
    fn long_download_then_control_void(s: &mut Script, gap_ms: u64) -> Link {
        let (control, data) = download(s);
        s.after_ms(5_000);
        s.fin(&data, Server);
        s.after_ms(gap_ms);
        s.blackholed(&control, Server, 3, 400);
        control
    }

    #[test]
    fn control_lost_during_a_long_transfer() {
        let mut s = Script::new();
        long_download_then_control_void(&mut s, 0);
        for ends in [BOTH, SERVER_ONLY] {
            assert_eq!(
                seen(&s, ends),
                ["control_lost_during_transfer control | timeout/server, fin/server"],
                "{ends:?}"
            );
        }
        let evidence = evidence(&s, BOTH);
        assert!(
            evidence[0].starts_with("the control connection carried nothing for 5")
                && evidence[0].contains("while data:1 transferred for 5"),
            "{evidence:?}"
        );
        assert!(
            evidence[1]
                .starts_with("401 ms after the transfer ended the control connection failed: ")
                && evidence[1].contains("3 retransmit(s) went unanswered")
                && evidence[1].contains("the server end's kernel gave up (ETIMEDOUT)"),
            "{evidence:?}"
        );
        assert!(
            evidence[2].starts_with("a retransmission timeout alone"),
            "{evidence:?}"
        );
        // The client saw its control connection go quiet, nothing more.
        assert_eq!(seen(&s, CLIENT_ONLY), ["none - | open/unknown, fin/server"]);
    }

    /// A firewall that answers the dropped state with a reset instead.
    #[test]
    fn control_lost_during_a_transfer_to_a_forged_reset() {
        let mut s = Script::new();
        let (control, data) = download(&mut s);
        s.after_ms(5_000);
        s.fin(&data, Server);
        s.after_ms(300);
        // The firewall resets both ends when the 226 meets no state.
        s.received_reset(&control, Server);
        s.received_reset(&control, Client);
        assert_eq!(
            seen(&s, BOTH),
            ["control_lost_during_transfer control | reset/middlebox, fin/server"]
        );
        assert!(evidence(&s, BOTH)[1].contains("met a reset its peer did not send"));
    }

    /// A control connection that spoke during the transfer was not idle; one
    /// that failed minutes after it failed for another reason.
    #[test]
    fn a_control_timeout_without_the_idle_transfer_is_a_plain_timeout() {
        let mut s = Script::new();
        let (control, data) = download(&mut s);
        s.after_ms(2_000);
        s.command(&control, Verb::Other("NOOP".into()), None);
        s.reply(&control, 200, "NOOP ok.");
        s.after_ms(3_000);
        s.fin(&data, Server);
        s.blackholed(&control, Server, 3, 400);
        assert_eq!(
            seen(&s, BOTH),
            ["retransmission_timeout control | timeout/server, fin/server"]
        );
        let mut s = Script::new();
        long_download_then_control_void(&mut s, 120_000);
        assert_eq!(
            seen(&s, BOTH),
            ["retransmission_timeout control | timeout/server, fin/server"]
        );
    }

    /// The server behind a NAT at 203.0.113.1 announces its inside address.
    const NAT_CLIENT: &str = "198.51.100.7:40000";
    const NAT_PUBLIC: &str = "203.0.113.1:21";
    const INSIDE: &str = "10.0.0.2";

    fn behind_nat(s: &mut Script) -> Link {
        let control = s.connect(NAT_CLIENT, NAT_PUBLIC);
        s.login(&control);
        s.pasv_announcing(&control, INSIDE, 30001);
        control
    }

    /// A client that substitutes the control connection's address (curl,
    /// ftplib, lftp by default) reaches the NAT itself, which refuses.
    #[test]
    fn nat_address_mismatch_when_the_substituted_address_is_refused() {
        let mut s = Script::new();
        let control = behind_nat(&mut s);
        let data = s.link("198.51.100.7:40002", "203.0.113.1:30001");
        s.refused(&data, true);
        quit(&mut s, &control);
        assert_eq!(
            seen(&s, CLIENT_ONLY),
            ["nat_address_mismatch data:1 | fin/server, refused/server"]
        );
        let evidence = evidence(&s, CLIENT_ONLY);
        assert!(
            evidence[0].starts_with("the server announced 10.0.0.2 port 30001 in its 227 (+")
                && evidence[0].ends_with(
                    "but the client reached the server at 203.0.113.1: 10.0.0.2 is a private \
                 address (RFC 1918): the server's inside address behind a NAT"
                ),
            "{evidence:?}"
        );
        assert!(
            evidence[1].starts_with(
                "the client connected to the control connection's address 203.0.113.1 instead \
                 (it substituted it for the announced one) (data:1) and it was refused"
            ),
            "{evidence:?}"
        );
        assert!(
            evidence[2].starts_with("so the session ended as data_connection_refused: "),
            "{evidence:?}"
        );
    }

    /// A client that trusts the 227 sends its SYNs to an address nobody
    /// routes.
    #[test]
    fn nat_address_mismatch_when_the_announced_address_is_unreachable() {
        let mut s = Script::new();
        let control = behind_nat(&mut s);
        let data = s.link("198.51.100.7:40002", "10.0.0.2:30001");
        s.blackholed_syn(&data, 2);
        s.reply(&control, 425, "Failed to establish connection.");
        quit(&mut s, &control);
        assert_eq!(
            seen(&s, CLIENT_ONLY),
            ["nat_address_mismatch data:1 | fin/server, timeout/client"]
        );
        let evidence = evidence(&s, CLIENT_ONLY);
        assert!(
            evidence[1].starts_with(
                "the client connected to the announced 10.0.0.2 (data:1) and nobody answered: \
                 2 SYN retransmit(s)"
            ),
            "{evidence:?}"
        );
        assert!(
            evidence[2].starts_with("the server replied 425"),
            "{evidence:?}"
        );
    }

    /// A port forward that carries the substituted address: the session
    /// works, and says what the next, trusting client will meet.
    #[test]
    fn a_mismatch_worked_around_is_said_on_a_clean_session() {
        let mut s = Script::new();
        let control = behind_nat(&mut s);
        let data = s.connect("198.51.100.7:40002", "203.0.113.1:30001");
        s.command(&control, Verb::Retr, Some("file"));
        s.reply(&control, 150, "Opening BINARY mode data connection.");
        s.fin(&data, Server);
        s.reply(&control, 226, "Transfer complete.");
        quit(&mut s, &control);
        assert_eq!(seen(&s, CLIENT_ONLY), ["clean - | fin/server, fin/server"]);
        let evidence = evidence(&s, CLIENT_ONLY);
        assert!(
            evidence[1].starts_with("also: the server announced 10.0.0.2 port 30001"),
            "{evidence:?}"
        );
        assert!(
            evidence[2].ends_with("(data:1) and the connection was established"),
            "{evidence:?}"
        );
    }

    /// On the server behind the NAT: it announces its own address, an
    /// inside one, to a client at a routable address, who can only have
    /// come through a NAT; the client substituted, met the NAT, and left.
    #[test]
    fn a_server_behind_nat_sees_its_own_inside_address_announced() {
        let mut s = Script::new();
        let control = s.connect("203.0.113.2:40000", "10.0.0.2:21");
        s.login(&control);
        s.pasv_announcing(&control, INSIDE, 30001);
        s.fin(&control, Client);
        assert_eq!(
            seen(&s, SERVER_ONLY),
            ["nat_address_mismatch - | fin/client"]
        );
        let evidence = evidence(&s, SERVER_ONLY);
        assert!(
            evidence[0].starts_with(
                "the server announced its own address 10.0.0.2 port 30001 in its 227 (+"
            ) && evidence[0].ends_with(
                "a private address (RFC 1918) to a client at 203.0.113.2, which is not, so the \
                     client came through a NAT, and a client that trusts the announcement cannot \
                     reach that address"
            ),
            "{evidence:?}"
        );
        assert_eq!(evidence[1], "the client made no data connection to it");
        assert!(
            evidence[2].starts_with("so the session ended as client_abort"),
            "{evidence:?}"
        );
        // Client and server both inside: no NAT to infer.
        let mut s = Script::new();
        let control = s.connect("10.0.0.3:40000", "10.0.0.2:21");
        s.login(&control);
        s.pasv_announcing(&control, INSIDE, 30001);
        s.fin(&control, Client);
        assert_eq!(seen(&s, SERVER_ONLY), ["client_abort control | fin/client"]);
    }

    /// Both ends on this host, joined through the NAT's connection tracking:
    /// one session, the announcement judged against the address the client
    /// dialled, and the NAT's own mapping as evidence.
    #[test]
    fn both_ends_through_a_nat_on_this_host_judge_the_announcement_once() {
        let mut s = Script::new();
        let control = s.nat_control();
        s.pasv_announcing(&control, INSIDE, 30001);
        // The client trusts the 227: nobody answers at the inside address.
        let data = s.link("203.0.113.2:40100", "10.0.0.2:30001");
        s.blackholed_syn(&data, 3);
        s.reply(&control, 425, "Failed to establish connection.");
        s.fin(&control, Client);
        let entries: Vec<_> = [control].iter().filter_map(Link::nat_entry).collect();
        let sessions = sessions_through_nat(&s.seen_from(BOTH), s.end_ns(), &entries);
        assert_eq!(sessions.len(), 1, "{sessions:#?}");
        let diagnosis = diagnose(&sessions[0]);
        assert_eq!(diagnosis.cause, Some(Cause::NatAddressMismatch));
        assert!(
            diagnosis.evidence[0].contains("but the client reached the server at 203.0.113.1"),
            "{:?}",
            diagnosis.evidence
        );
        assert_eq!(
            diagnosis.evidence[1],
            "a NAT on this host translates the control connection: the client's \
             203.0.113.2:40000 → 203.0.113.1:21 reaches the server as 203.0.113.2:40000 → \
             10.0.0.2:21 (its connection tracking): 10.0.0.2 is the server's own address behind it"
        );
    }

    /// A NATed client's PORT names its inside address; vsftpd refuses it and
    /// the client leaves politely.
    #[test]
    fn nat_address_mismatch_on_an_active_client_behind_nat() {
        let mut s = Script::new();
        let control = s.connect(NAT_CLIENT, "192.0.2.1:21");
        s.login(&control);
        s.port_announcing(&control, "192.168.1.20", 40010);
        s.reply(&control, 500, "Illegal PORT command.");
        quit(&mut s, &control);
        for ends in [BOTH, SERVER_ONLY, CLIENT_ONLY] {
            assert_eq!(
                seen(&s, ends),
                ["nat_address_mismatch - | fin/server"],
                "{ends:?}"
            );
        }
        let evidence = evidence(&s, SERVER_ONLY);
        assert!(
            evidence[0].contains("but its control connection comes from 198.51.100.7: 192.168.1.20 is a private address (RFC 1918): the client's inside address behind a NAT"),
            "{evidence:?}"
        );
        assert_eq!(
            evidence[1],
            "the server made no data connection to either address"
        );
        assert!(
            evidence[2].starts_with("the server replied 500"),
            "{evidence:?}"
        );
    }

    #[test]
    fn every_cause_has_a_distinct_label() {
        let labels: std::collections::BTreeSet<&str> =
            Cause::ALL.iter().map(|c| c.as_str()).collect();
        assert_eq!(labels.len(), Cause::ALL.len());
    }
}

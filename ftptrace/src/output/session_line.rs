//! The `session` line: one per FTP session when it ends (or, still open,
//! when ftptrace stops), with its disconnect timeline and cause. The JSON
//! shape is part of the contract in docs/json-lines.md.

use super::lines::{ConnRecord, Endpoint, NatView, SessionRecord, TimelineEntry, UserLine};
use crate::{
    community_id,
    event::EventKind,
    ftp::{ControlEvent, Side},
    kernel::clock::Stamp,
    session::{
        cause::Diagnosis,
        close::ending,
        model::{Conn, ConnId, LinkedBy, Session},
    },
};

impl<'a> SessionRecord<'a> {
    /// `ts` turns boot-time nanoseconds into RFC 3339; `diagnosis` is
    /// [`crate::session::cause::diagnose`]'s of the session (the caller also needs its cause).
    pub fn new(
        session: &'a Session,
        evicted: bool,
        diagnosis: Diagnosis,
        ts: &dyn Fn(u64) -> Stamp,
    ) -> Self {
        let Diagnosis {
            cause,
            cause_conn,
            evidence,
        } = diagnosis;
        let open = !session.is_done();
        let end = ts(session.last_ns).to_string();
        Self {
            ts: end.clone(),
            id: session.id.to_string(),
            community_id: community_id::tcp(session.control.client, session.control.server, 0),
            start: ts(session.start_ns).to_string(),
            end,
            state: if open { "open" } else { "closed" },
            seeded: session.seeded,
            server_name: session.server_name.as_ref().map(ToString::to_string),
            unknown: unknown(session),
            evicted: evicted.then_some("capacity"),
            client: endpoint(session.control.client),
            server: endpoint(session.control.server),
            seen_from: session.seen_from().into_iter().map(Side::as_str).collect(),
            user: session.user.clone().map(|name| UserLine { name }),
            commands: session.commands.clone(),
            replies: session.replies.iter().map(u16::to_string).collect(),
            encrypted: session.encrypted_ns.is_some(),
            control: conn_record(session, &session.control, ts),
            data: session
                .data
                .iter()
                .map(|c| conn_record(session, c, ts))
                .collect(),
            data_omitted: 0,
            data_unlinked: session.data_unlinked,
            timeline: session
                .timeline
                .entries()
                .map(|e| TimelineEntry {
                    ts: ts(e.ns),
                    offset_ms: session.offset_ms(e.ns),
                    conn: e.conn,
                    side: Side::as_str(e.seen_at),
                    what: &e.kind,
                })
                .collect(),
            timeline_omitted: session.timeline.omitted,
            cause: cause.map(|c| c.as_str()),
            cause_conn: cause_conn.map(|c| c.label()),
            evidence,
        }
    }
}

/// The longest line a session may be, newline included: Fluent Bit's
/// default buffer (Docker splits a log line at 16 KiB; ftptrace writes to
/// its own file or a pipe).
pub const LINE_LIMIT: usize = 32 * 1024;

impl SessionRecord<'_> {
    /// Makes room when the line written would be `written` bytes, more
    /// than [`LINE_LIMIT`]: leaves out the middle of the timeline first,
    /// then of the data connections, then of the commands and replies,
    /// counting what it left out, and cuts long evidence. False when there
    /// is nothing left to leave out.
    pub fn shrink(&mut self, written: usize) -> bool {
        let excess = written.saturating_sub(LINE_LIMIT);
        if excess == 0 {
            return false;
        }
        if self.timeline.len() > 2 {
            self.timeline_omitted += leave_out_middle(&mut self.timeline, excess, written);
            return true;
        }
        if self.data.len() > 2 {
            self.data_omitted += leave_out_middle(&mut self.data, excess, written);
            return true;
        }
        if self.commands.len() > 2 || self.replies.len() > 2 {
            leave_out_middle(&mut self.commands, excess, written);
            leave_out_middle(&mut self.replies, excess, written);
            return true;
        }
        let long = self.evidence.iter().any(|e| e.len() > EVIDENCE_CUT);
        for evidence in &mut self.evidence {
            if evidence.len() > EVIDENCE_CUT {
                let mut at = EVIDENCE_CUT;
                while !evidence.is_char_boundary(at) {
                    at -= 1;
                }
                evidence.truncate(at);
                evidence.push_str("...");
            }
        }
        long
    }
}

/// Leaves out entries in the middle of `list`, its first and last kept: as
/// large a share of them as `excess` is of the `written` line, and at least
/// a quarter (a few rounds at most). Returns how many.
fn leave_out_middle<T>(list: &mut Vec<T>, excess: usize, written: usize) -> u64 {
    let len = list.len();
    if len <= 2 {
        return 0;
    }
    let n = (excess * len / written.max(1) + 1)
        .max(len / 4)
        .min(len - 2);
    let mid = (len - n) / 2;
    list.drain(mid..mid + n);
    n as u64
}

/// What a piece of evidence keeps of itself when a line must shrink.
const EVIDENCE_CUT: usize = 1024;

fn conn_record(session: &Session, conn: &Conn, ts: &dyn Fn(u64) -> Stamp) -> ConnRecord {
    let ending = ending(conn);
    let handshakes = tls_handshakes(session, conn);
    ConnRecord {
        conn: conn.id.label(),
        community_id: community_id::tcp(conn.client, conn.server, 0),
        client: endpoint(conn.client),
        server: endpoint(conn.server),
        start: ts(conn.first_ns).to_string(),
        end: ts(conn.last_ns).to_string(),
        close: ending.close.as_str(),
        closed_by: ending.closed_by.as_str(),
        linked_by: match (conn.id, conn.linked_by) {
            (ConnId::Control, _) => None,
            (_, LinkedBy::Announcement) => Some("announcement"),
            (_, LinkedBy::Heuristic) => Some("heuristic"),
        },
        established: conn.established(),
        retransmits: conn
            .seen()
            .map(|(_, v)| v.retransmits + v.closing_retransmits)
            .sum(),
        syn_retransmits: conn.seen().map(|(_, v)| v.syn_retransmits).sum(),
        seen_from: conn.seen().map(|(end, _)| Side::as_str(end)).collect(),
        behind_nat: conn.behind_nat.as_deref().map(|&(client, server)| NatView {
            community_id: community_id::tcp(client, server, 0),
            client: endpoint(client),
            server: endpoint(server),
        }),
        tls_handshake_us: handshakes.took_us,
        tls_handshake_failed: handshakes.failed,
    }
}

/// A connection's TLS handshakes, as its record shows them.
struct TlsHandshakes {
    took_us: Option<u64>,
    failed: Option<String>,
}

/// The client end's completed handshake when watched there, else the
/// server's, timed from the connection's TLS start (a control connection:
/// the switch to TLS; a data connection: its establishment at that end, or
/// the `150`/`125` said after it, since a server begins the data
/// connection's handshake only once it has said that, and a client such as
/// curl too); else a failure, in its end's words.
fn tls_handshakes(session: &Session, conn: &Conn) -> TlsHandshakes {
    let mut failed = None;
    for (end, view) in conn.seen() {
        let Some((at, handshake)) = view.tls_handshake else {
            continue;
        };
        if !handshake.succeeded() {
            failed.get_or_insert_with(|| format!("{} end: {handshake}", end.as_str()));
            continue;
        }
        let began = match conn.id {
            ConnId::Control => session.encrypted_ns,
            ConnId::Data(_) => view
                .established_ns
                .map(|established| established.max(transfer_opened(session, at))),
        };
        if let Some(began) = began {
            return TlsHandshakes {
                took_us: Some(at.saturating_sub(began) / 1_000),
                failed: None,
            };
        }
    }
    TlsHandshakes {
        took_us: None,
        failed,
    }
}

/// When the last `150` or `125` on the control connection before `before`
/// was seen (at either end: with both on this host, one account of the
/// words is kept); 0 if never (or not in the timeline kept).
fn transfer_opened(session: &Session, before: u64) -> u64 {
    session
        .timeline
        .entries()
        .filter(|e| e.conn == ConnId::Control && e.ns <= before)
        .filter(|e| {
            matches!(
                &e.kind,
                EventKind::Ftp {
                    event: ControlEvent::Reply {
                        code: 125 | 150,
                        ..
                    },
                    ..
                }
            )
        })
        .map(|e| e.ns)
        .max()
        .unwrap_or(0)
}

/// What the record cannot vouch for: a seeded session's past, and any
/// session's own events among those the kernel lost while it was open.
fn unknown(session: &Session) -> Vec<String> {
    let mut unknown: Vec<String> = Vec::new();
    if session.seeded {
        unknown.extend(
            [
                "start",
                "user",
                "commands and replies before ftptrace started",
                "data connections opened before ftptrace started",
            ]
            .map(String::from),
        );
    }
    if session.events_lost > 0 {
        unknown.push(format!(
            "whether any of the {} kernel event(s) lost while it was open (stats: lost, missed) were its own",
            session.events_lost
        ));
    }
    unknown
}

fn endpoint(addr: std::net::SocketAddr) -> Endpoint {
    Endpoint {
        addr: addr.ip().to_canonical().to_string(),
        port: addr.port(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        ftp::{Side::*, Verb},
        kernel::clock::WallClock,
        session::{
            cause::diagnose,
            script::{Script, sessions_of},
        },
    };

    /// What `read` makes of the session's record.
    fn record<R>(read: impl FnOnce(&SessionRecord) -> R) -> R {
        let mut s = Script::new();
        let control = s.connect("192.0.2.2:40000", "192.0.2.1:21");
        s.reply(&control, 220, "(vsFTPd 3.0.3)");
        s.command(&control, Verb::User, Some("alice"));
        s.reply(&control, 331, "Please specify the password.");
        // The parser never keeps PASS's argument.
        s.command(&control, Verb::Pass, None);
        s.reply(&control, 230, "Login \u{1b}[31msuccessful.");
        s.command(&control, Verb::Quit, None);
        s.reply(&control, 221, "Goodbye.");
        s.fin(&control, Server);
        let sessions = sessions_of(&s.seen_from(&[Client, Server]), s.end_ns());
        let clock = WallClock::with_offset(0);
        read(&SessionRecord::new(
            &sessions[0],
            false,
            diagnose(&sessions[0]),
            &|ns| clock.rfc3339(ns),
        ))
    }

    /// The largest session a stranger can make: every data connection the
    /// tracker keeps, long hostile replies in every timeline entry. Its
    /// line stays under [`LINE_LIMIT`], and says what it left out.
    #[test]
    fn the_largest_session_line_fits_a_log_shippers_buffer() {
        let mut s = Script::new();
        let control = s.connect("192.0.2.2:40000", "192.0.2.1:21");
        s.login(&control);
        let hostile = "\u{1b}[2J\"\\\u{202e}東".repeat(40);
        for n in 0..300u16 {
            let port = 30000 + n;
            s.pasv(&control, port);
            let data = s.connect(
                &format!("192.0.2.2:{}", 41000 + n),
                &format!("192.0.2.1:{port}"),
            );
            s.reply(&control, 150, &hostile);
            s.fin(&data, Server);
            s.reply(&control, 226, &hostile);
        }
        s.fin(&control, Server);
        let sessions = sessions_of(&s.seen_from(&[Client, Server]), s.end_ns());
        let clock = WallClock::with_offset(0);
        let mut record = SessionRecord::new(&sessions[0], false, diagnose(&sessions[0]), &|ns| {
            clock.rfc3339(ns)
        });
        let (timeline, data) = (record.timeline.len(), record.data.len());
        let unshrunk = serde_json::to_vec(&record).unwrap().len();
        assert!(unshrunk > 4 * LINE_LIMIT, "{unshrunk}");
        let sink = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        struct Shared(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);
        impl std::io::Write for Shared {
            fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
                self.0.lock().unwrap().extend_from_slice(bytes);
                Ok(bytes.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let mut output =
            crate::output::Output::new(crate::output::Format::Json, Box::new(Shared(sink.clone())));
        output.session(&mut record).unwrap();
        output.flush().unwrap();
        let written = sink.lock().unwrap().clone();
        assert!(written.len() <= LINE_LIMIT, "{}", written.len());
        let line: serde_json::Value = serde_json::from_slice(&written).unwrap();
        let kept = |field: &str| line[field].as_array().unwrap().len() as u64;
        assert_eq!(
            kept("timeline") + line["timeline_omitted"].as_u64().unwrap(),
            (timeline as u64) + sessions[0].timeline.omitted
        );
        assert_eq!(
            kept("data") + line["data_omitted"].as_u64().unwrap(),
            data as u64
        );
        assert_eq!(data, crate::session::tracker::MAX_DATA_CONNS);
        // The first and the last of each are kept.
        assert_eq!(line["data"][0]["conn"], "data:1");
        assert_eq!(
            line["data"][kept("data") as usize - 1]["conn"],
            format!("data:{data}")
        );
    }

    /// docs/json-lines.md: the `session` line's fields.
    #[test]
    fn the_session_line_keeps_the_contract() {
        let value = record(|r| serde_json::to_value(r).unwrap());
        let keys: Vec<&str> = value
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        assert_eq!(
            keys,
            [
                "cause",
                "cause_conn",
                "client",
                "commands",
                "community_id",
                "control",
                "data",
                "data_omitted",
                "data_unlinked",
                "encrypted",
                "end",
                "evidence",
                "id",
                "replies",
                "seeded",
                "seen_from",
                "server",
                "start",
                "state",
                "timeline",
                "timeline_omitted",
                "ts",
                "unknown",
                "user"
            ]
        );
        assert_eq!(value["state"], "closed");
        assert_eq!(value["cause"], "clean");
        assert_eq!(value["cause_conn"], serde_json::Value::Null);
        assert_eq!(value["user"]["name"], "alice");
        assert_eq!(value["community_id"], value["control"]["community_id"]);
        assert!(value["community_id"].as_str().unwrap().starts_with("1:"));
        assert_eq!(value["seen_from"], serde_json::json!(["client", "server"]));
        assert_eq!(
            value["commands"],
            serde_json::json!(["USER", "PASS", "QUIT"])
        );
        assert_eq!(
            value["replies"],
            serde_json::json!(["220", "331", "230", "221"])
        );
        assert_eq!(
            value["client"],
            serde_json::json!({"addr": "192.0.2.2", "port": 40000})
        );
        let control = value["control"].as_object().unwrap();
        assert_eq!(
            control.keys().map(String::as_str).collect::<Vec<_>>(),
            [
                "client",
                "close",
                "closed_by",
                "community_id",
                "conn",
                "end",
                "established",
                "retransmits",
                "seen_from",
                "server",
                "start",
                "syn_retransmits"
            ]
        );
        assert_eq!(
            (&control["close"], &control["closed_by"]),
            (&"fin".into(), &"server".into())
        );
        let entry = &value["timeline"][0];
        assert_eq!(
            entry
                .as_object()
                .unwrap()
                .keys()
                .map(String::as_str)
                .collect::<Vec<_>>(),
            ["conn", "offset_ms", "side", "ts", "what"]
        );
        assert_eq!(entry["what"], "state CLOSE -> SYN_SENT");
        assert!(
            value["timeline"]
                .as_array()
                .unwrap()
                .iter()
                .any(|e| e["what"] == "ftp client: PASS")
        );
    }

    /// Events lost while a session was open are said in its record.
    #[test]
    fn a_session_open_while_events_were_lost_says_so() {
        let mut s = Script::new();
        let control = s.connect("192.0.2.2:40000", "192.0.2.1:21");
        s.login(&control);
        let mut sessions = sessions_of(&s.seen_from(&[Client, Server]), s.end_ns());
        sessions[0].events_lost = 5;
        let clock = WallClock::with_offset(0);
        let record = SessionRecord::new(&sessions[0], false, diagnose(&sessions[0]), &|ns| {
            clock.rfc3339(ns)
        });
        assert_eq!(
            record.unknown,
            [
                "whether any of the 5 kernel event(s) lost while it was open (stats: lost, missed) were its own"
            ]
        );
    }

    /// curl opens the data connection, then asks for the file: its TLS
    /// handshake begins at the `150`, not at the connection.
    #[test]
    fn a_data_connections_handshake_is_timed_from_the_transfers_start() {
        let mut s = Script::new();
        let control = s.connect("192.0.2.2:40000", "192.0.2.1:21");
        s.login(&control);
        s.pasv(&control, 30001);
        let data = s.connect("192.0.2.2:50000", "192.0.2.1:30001");
        s.command(&control, Verb::Retr, Some("file"));
        s.after_ms(200);
        s.reply(&control, 150, "Opening BINARY mode data connection.");
        s.after_ms(3);
        s.emit(
            &data,
            Client,
            EventKind::TlsHandshake(crate::tls_handshake::Handshake {
                library: crate::tls_verify::Verifier::OpenSsl,
                code: 1,
            }),
        );
        let sessions = sessions_of(&s.seen_from(&[Client, Server]), s.end_ns());
        let clock = WallClock::with_offset(0);
        let record = SessionRecord::new(&sessions[0], false, diagnose(&sessions[0]), &|ns| {
            clock.rfc3339(ns)
        });
        let took = record.data[0].tls_handshake_us.expect("timed");
        // The 150 is said 1 ms before the script moves on.
        assert!((3_000..=4_001).contains(&took), "{took} us");
    }

    #[test]
    fn the_text_record_escapes_what_the_peer_sent() {
        let text = record(crate::output::text::session);
        let lines: Vec<&str> = text.lines().collect();
        assert!(
            lines[0].starts_with(
                "== session t-1 192.0.2.2:40000 -> 192.0.2.1:21 user alice (closed): clean"
            ),
            "{text}"
        );
        assert_eq!(
            lines[1],
            "   control 192.0.2.2:40000 -> 192.0.2.1:21 closed fin by server"
        );
        assert!(text.contains("230 Login \\u{1b}[31msuccessful."), "{text}");
        assert!(!text.contains('\u{1b}'));
        assert!(
            lines
                .last()
                .unwrap()
                .starts_with("   evidence: the client said QUIT"),
            "{text}"
        );
    }
}

//! The `session` line: one per FTP session when it ends (or, still open,
//! when ftptrace stops), with its disconnect timeline and cause. The JSON
//! shape is part of the contract in docs/json-lines.md.

use serde::Serialize;

use crate::{
    connection_close::ending,
    disconnect_cause::{Diagnosis, diagnose},
    ftp_control::Side,
    output::{describe, printable},
    session::{Conn, LinkedBy, Session},
};

#[derive(Debug, Serialize)]
pub struct SessionRecord {
    pub id: String,
    pub start: String,
    pub end: String,
    /// `closed`, or `open` for a session still open when ftptrace stopped.
    pub state: &'static str,
    pub seeded: bool,
    /// What ftptrace cannot know about a seeded session.
    pub unknown: Vec<String>,
    /// Why this record came early: `capacity` when too many sessions were open.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub evicted: Option<&'static str>,
    pub client: Endpoint,
    pub server: Endpoint,
    pub seen_from: Vec<&'static str>,
    pub user: Option<String>,
    pub commands: Vec<String>,
    pub replies: Vec<String>,
    pub encrypted: bool,
    pub control: ConnRecord,
    pub data: Vec<ConnRecord>,
    /// Data connections beyond the 256 kept per session (not linked).
    pub data_unlinked: u64,
    pub timeline: Vec<TimelineEntry>,
    /// Timeline entries left out between the first and the last ones kept.
    pub timeline_omitted: u64,
    pub cause: Option<&'static str>,
    pub cause_conn: Option<String>,
    pub evidence: Vec<String>,
}

#[derive(Debug, Serialize)]
pub struct Endpoint {
    pub addr: String,
    pub port: u16,
}

#[derive(Debug, Serialize)]
pub struct ConnRecord {
    pub conn: String,
    pub client: Endpoint,
    pub server: Endpoint,
    pub start: String,
    pub end: String,
    pub close: &'static str,
    pub closed_by: &'static str,
    /// `announcement` (227/229/PORT/EPRT) or `heuristic` (TLS channel).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub linked_by: Option<&'static str>,
    pub established: bool,
    /// Retransmitted segments (SYNs apart), both ends on this host summed.
    pub retransmits: u32,
    pub syn_retransmits: u32,
    pub seen_from: Vec<&'static str>,
}

#[derive(Debug, Serialize)]
pub struct TimelineEntry {
    pub ts: String,
    pub offset_ms: u64,
    pub conn: String,
    /// The end whose kernel reported it.
    pub side: &'static str,
    pub what: String,
}

impl SessionRecord {
    /// `ts` turns boot-time nanoseconds into RFC 3339.
    pub fn new(session: &Session, evicted: bool, ts: &dyn Fn(u64) -> String) -> Self {
        let Diagnosis {
            cause,
            cause_conn,
            evidence,
        } = diagnose(session);
        let open = !session.is_done();
        Self {
            id: session.id.clone(),
            start: ts(session.start_ns),
            end: ts(session.last_ns),
            state: if open { "open" } else { "closed" },
            seeded: session.seeded,
            unknown: unknown(session),
            evicted: evicted.then_some("capacity"),
            client: endpoint(session.control.client),
            server: endpoint(session.control.server),
            seen_from: session.seen_from().into_iter().map(Side::as_str).collect(),
            user: session.user.clone(),
            commands: session.commands.clone(),
            replies: session.replies.iter().map(u16::to_string).collect(),
            encrypted: session.encrypted_ns.is_some(),
            control: conn_record(&session.control, ts),
            data: session.data.iter().map(|c| conn_record(c, ts)).collect(),
            data_unlinked: session.data_unlinked,
            timeline: session
                .timeline
                .entries()
                .map(|e| TimelineEntry {
                    ts: ts(e.ns),
                    offset_ms: session.offset_ms(e.ns),
                    conn: e.conn.label(),
                    side: Side::as_str(e.seen_at),
                    what: describe(&e.kind),
                })
                .collect(),
            timeline_omitted: session.timeline.omitted,
            cause: cause.map(|c| c.as_str()),
            cause_conn: cause_conn.map(|c| c.label()),
            evidence,
        }
    }

    /// The record for a person: a header, the timeline, the verdict.
    pub fn text(&self) -> String {
        use std::fmt::Write;
        let mut out = String::new();
        let _ = writeln!(
            out,
            "== session {} {}:{} -> {}:{} user {} ({}{}): {}{}",
            self.id,
            self.client.addr,
            self.client.port,
            self.server.addr,
            self.server.port,
            self.user.as_deref().unwrap_or("?"),
            self.state,
            if self.seeded { ", seeded" } else { "" },
            self.cause.unwrap_or("no cause yet"),
            self.cause_conn
                .as_deref()
                .map(|c| format!(" on {c}"))
                .unwrap_or_default()
        );
        for conn in std::iter::once(&self.control).chain(&self.data) {
            let _ = writeln!(
                out,
                "   {} {}:{} -> {}:{} closed {} by {}",
                conn.conn,
                conn.client.addr,
                conn.client.port,
                conn.server.addr,
                conn.server.port,
                conn.close,
                conn.closed_by
            );
        }
        for (i, entry) in self.timeline.iter().enumerate() {
            if self.timeline_omitted > 0 && i == crate::session::TIMELINE_HEAD {
                let _ = writeln!(out, "   ... {} entries left out", self.timeline_omitted);
            }
            let _ = writeln!(
                out,
                "   +{:>7} ms {:<7} {:<6} {}",
                entry.offset_ms,
                entry.conn,
                entry.side,
                printable(&entry.what)
            );
        }
        for line in &self.evidence {
            let _ = writeln!(out, "   evidence: {}", printable(line));
        }
        out.pop();
        out
    }
}

fn conn_record(conn: &Conn, ts: &dyn Fn(u64) -> String) -> ConnRecord {
    let ending = ending(conn);
    ConnRecord {
        conn: conn.id.label(),
        client: endpoint(conn.client),
        server: endpoint(conn.server),
        start: ts(conn.first_ns),
        end: ts(conn.last_ns),
        close: ending.close.as_str(),
        closed_by: ending.closed_by.as_str(),
        linked_by: match (conn.id, conn.linked_by) {
            (crate::session::ConnId::Control, _) => None,
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
    }
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
        ftp_control::{Side::*, Verb},
        session_script::{Script, sessions_of},
    };

    fn record() -> SessionRecord {
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
        SessionRecord::new(&sessions[0], false, &|ns| format!("t{ns}"))
    }

    /// docs/json-lines.md: the `session` line's fields.
    #[test]
    fn the_session_line_keeps_the_contract() {
        let value = serde_json::to_value(record()).unwrap();
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
                "control",
                "data",
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
                "unknown",
                "user"
            ]
        );
        assert_eq!(value["state"], "closed");
        assert_eq!(value["cause"], "clean");
        assert_eq!(value["cause_conn"], serde_json::Value::Null);
        assert_eq!(value["user"], "alice");
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

    #[test]
    fn the_text_record_escapes_what_the_peer_sent() {
        let text = record().text();
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

//! One session as a ladder diagram, in the manner of a network flow graph:
//! each connection a pair of lanes (its client end, its server end), time
//! downwards, each event a mark at the end that saw it (an arrow toward
//! the peer for what an end sent). Long idle stretches are compressed and
//! labelled, so a session of an hour and one of a second both fit.

use maud::{Markup, html};

use super::{
    input::{EventLine, SessionLine},
    time,
};

/// Connections drawn at most; the rest are named below the diagram.
const MAX_CONNECTIONS: usize = 6;
/// Marks drawn at most per session (its first and last halves).
pub const MAX_MARKS: usize = 400;
/// Width of one connection's pair of lanes, and the space between pairs.
const PAIR_WIDTH: i64 = 300;
const PAIR_GAP: i64 = 40;
/// Room on the left for the time offsets.
const MARGIN: i64 = 72;
/// Vertical space per mark: at least this, more for a longer wait, up to
/// [`MAX_STEP`]; a wait longer than [`IDLE`] is compressed and labelled.
const MIN_STEP: i64 = 18;
const MAX_STEP: i64 = 48;
const IDLE_NS: i64 = 2_000_000_000;
const TOP: i64 = 56;

/// What a mark is, for its shape and colour.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MarkKind {
    Command,
    Reply,
    State,
    Retransmit,
    ResetSent,
    ResetReceived,
    Probe,
    Drop,
    Tls,
    Error,
    /// A timeline entry without its event line (a log of session lines only).
    Note,
}

impl MarkKind {
    pub fn class(self) -> &'static str {
        match self {
            Self::Command => "command",
            Self::Reply => "reply",
            Self::State => "state",
            Self::Retransmit => "retransmit",
            Self::ResetSent => "reset-sent",
            Self::ResetReceived => "reset-received",
            Self::Probe => "probe",
            Self::Drop => "drop",
            Self::Tls => "tls",
            Self::Error => "error",
            Self::Note => "note",
        }
    }

    /// Drawn as an arrow from the end that sent it to its peer.
    fn is_sent(self) -> bool {
        matches!(
            self,
            Self::Command | Self::Reply | Self::Retransmit | Self::ResetSent | Self::Probe
        )
    }
}

/// One mark of the diagram.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mark {
    pub at_ns: i64,
    pub conn: String,
    /// The end that saw it: `client` or `server`.
    pub side: String,
    pub kind: MarkKind,
    pub label: String,
}

/// Commands whose argument is a secret: never shown, whatever a log says.
const SECRET_COMMANDS: [&str; 3] = ["PASS", "ACCT", "ADAT"];
/// Longest text shown of an argument, a reply or a timeline entry.
const MAX_LABEL: usize = 72;

/// The marks of `session`: its events where the inputs had them, else its
/// timeline's entries. An FTP command or reply seen at both ends is drawn
/// once, at the end that sent it.
pub fn marks(session: &SessionLine, events: &[EventLine]) -> Vec<Mark> {
    let both_ends = session.seen_from.len() > 1;
    let mut marks: Vec<Mark> = events
        .iter()
        .filter_map(|event| mark_of(event, both_ends))
        .collect();
    if marks.is_empty() {
        marks = session
            .timeline
            .iter()
            .filter_map(|entry| {
                Some(Mark {
                    at_ns: time::parse(&entry.ts)?,
                    conn: entry.conn.clone(),
                    side: entry.side.clone(),
                    kind: MarkKind::Note,
                    label: shortened(&entry.what),
                })
            })
            .collect();
    }
    marks.sort_by_key(|m| m.at_ns);
    marks
}

fn mark_of(event: &EventLine, both_ends: bool) -> Option<Mark> {
    let text = |field: &str| event.text(field).unwrap_or("");
    let (kind, label) = match event.kind.as_str() {
        "ftp" => {
            let from = text("from");
            if both_ends && from != event.side {
                return None;
            }
            if let Some(endpoint) = event.details.get("data_endpoint").filter(|e| !e.is_null()) {
                let addr = endpoint
                    .get("addr")
                    .and_then(|a| a.as_str())
                    .unwrap_or("the server");
                let port = endpoint.get("port").and_then(|p| p.as_u64()).unwrap_or(0);
                (
                    MarkKind::Note,
                    format!("data endpoint {addr} port {port} announced"),
                )
            } else if let Some(command) = event.text("command") {
                let label = match event.text("arg") {
                    Some(_) if SECRET_COMMANDS.contains(&command) => format!("{command} ****"),
                    Some(arg) => format!("{command} {arg}"),
                    None => command.to_owned(),
                };
                (MarkKind::Command, label)
            } else {
                let code = event.details.get("reply").and_then(|r| r.as_u64());
                let code = code.map_or_else(String::new, |c| c.to_string());
                (MarkKind::Reply, format!("{code} {}", text("text")))
            }
        }
        "state" => (
            MarkKind::State,
            format!("{} → {}", text("old_state"), text("new_state")),
        ),
        "retransmit" => {
            let syn = event.details.get("syn").and_then(|s| s.as_bool()) == Some(true);
            let what = if syn { "SYN retransmit" } else { "retransmit" };
            (MarkKind::Retransmit, format!("{what} ({})", text("state")))
        }
        "reset_sent" => (
            MarkKind::ResetSent,
            format!(
                "RST ({})",
                event.text("reason").unwrap_or("no reason given")
            ),
        ),
        "reset_received" => (
            MarkKind::ResetReceived,
            format!("RST received in {}", text("state")),
        ),
        "keepalive_probe" => (MarkKind::Probe, "keepalive probe".to_owned()),
        "zero_window_probe" => (MarkKind::Probe, "zero-window probe".to_owned()),
        "drop" => (
            MarkKind::Drop,
            format!(
                "{} {} dropped ({})",
                text("direction"),
                text("tcp_flags"),
                text("reason")
            ),
        ),
        "socket_error" => (MarkKind::Error, format!("error {}", text("errno"))),
        "tls_handshake" | "tls_verify" | "tls_error" | "tls_alert" => {
            (MarkKind::Tls, tls_label(event))
        }
        _ => return None,
    };
    Some(Mark {
        at_ns: time::parse(&event.ts)?,
        conn: event.conn.clone()?,
        side: event.side.clone(),
        kind,
        label: shortened(&label),
    })
}

fn tls_label(event: &EventLine) -> String {
    let library = event.text("library").unwrap_or("TLS");
    match event.kind.as_str() {
        "tls_handshake" => match event.details.get("done").and_then(|d| d.as_bool()) {
            Some(true) => format!("{library} handshake done"),
            _ => format!(
                "{library} handshake failed {}",
                event.text("reason").unwrap_or("")
            ),
        },
        "tls_verify" => match event.details.get("passed").and_then(|p| p.as_bool()) {
            Some(true) => format!("{library} certificate accepted"),
            _ => {
                let reasons = event
                    .details
                    .get("reasons")
                    .and_then(|r| r.as_array())
                    .map(|r| {
                        r.iter()
                            .filter_map(|v| v.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    })
                    .unwrap_or_default();
                format!("{library} certificate refused: {reasons}")
            }
        },
        "tls_alert" => {
            let sent = event.details.get("sent").and_then(|s| s.as_bool()) == Some(true);
            let alert = event.text("alert").unwrap_or("alert");
            format!(
                "{library} {} {alert}",
                if sent { "sent" } else { "received" }
            )
        }
        _ => format!(
            "{library} error {}",
            event.text("reason").unwrap_or("unknown")
        ),
    }
}

/// `text` on one line, at most [`MAX_LABEL`] characters.
fn shortened(text: &str) -> String {
    let one_line: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    let mut chars = one_line.trim().chars();
    let mut out: String = chars.by_ref().take(MAX_LABEL).collect();
    if chars.next().is_some() {
        out.push('…');
    }
    out
}

/// The diagram of `session` with `marks`, as inline SVG.
pub fn diagram(session: &SessionLine, marks: &[Mark]) -> Markup {
    let conns: Vec<&str> = session
        .connections()
        .map(|c| c.conn.as_str())
        .take(MAX_CONNECTIONS)
        .collect();
    let shown: Vec<&Mark> = thinned(marks)
        .into_iter()
        .filter(|m| conns.contains(&m.conn.as_str()))
        .collect();
    let rows = layout(&shown);
    let height = rows.last().map_or(TOP, |r| r.y) + 40;
    let width = MARGIN + conns.len() as i64 * (PAIR_WIDTH + PAIR_GAP);
    let lane = |conn: &str, side: &str| -> i64 {
        let pair = conns.iter().position(|c| *c == conn).unwrap_or(0) as i64;
        let left = MARGIN + pair * (PAIR_WIDTH + PAIR_GAP);
        if side == "server" {
            left + PAIR_WIDTH
        } else {
            left
        }
    };
    let start = marks.first().map_or(0, |m| m.at_ns);
    html! {
        svg class="ladder" xmlns="http://www.w3.org/2000/svg" width=(width) height=(height)
            viewBox={ "0 0 " (width) " " (height) } role="img" {
            @for (i, conn) in conns.iter().enumerate() {
                @let left = lane(conn, "client");
                @let right = lane(conn, "server");
                @let c = session.connections().nth(i);
                text x=((left + right) / 2) y="16" class="conn" { (conn) }
                text x=(left) y="34" class="end" { "client " (c.map(|c| c.client.to_string()).unwrap_or_default()) }
                text x=(right) y="34" class="end server" { "server " (c.map(|c| c.server.to_string()).unwrap_or_default()) }
                line x1=(left) y1="42" x2=(left) y2=(height - 20) class="lane" {}
                line x1=(right) y1="42" x2=(right) y2=(height - 20) class="lane" {}
            }
            @for row in &rows {
                @if let Some(idle) = &row.idle_before {
                    text x="4" y=(row.y - MIN_STEP / 2 - 4) class="idle" { "… " (idle) " …" }
                }
                @let mark = row.mark;
                @let from = lane(&mark.conn, &mark.side);
                @let peer = lane(&mark.conn, if mark.side == "server" { "client" } else { "server" });
                @let class = mark.kind.class();
                text x="4" y=(row.y + 4) class="offset" { "+" (ms(mark.at_ns - start)) }
                @if mark.kind.is_sent() {
                    @let to = from + (peer - from) * 9 / 10;
                    line x1=(from) y1=(row.y) x2=(to) y2=(row.y + 6) class={ "arrow " (class) } marker-end="url(#head)" {}
                    text x=((from + peer) / 2) y=(row.y - 3) class={ "label " (class) } { (mark.label) }
                } @else {
                    circle cx=(from) cy=(row.y) r="4" class={ "dot " (class) } {}
                    @let (x, anchor) = if from < peer { (from + 8, "start") } else { (from - 8, "end") };
                    text x=(x) y=(row.y + 4) text-anchor=(anchor) class={ "label " (class) } { (mark.label) }
                }
            }
            defs {
                marker id="head" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="7" markerHeight="7" orient="auto-start-reverse" {
                    path d="M 0 0 L 10 5 L 0 10 z" {}
                }
            }
        }
    }
}

/// One drawn mark and where.
struct Row<'a> {
    mark: &'a Mark,
    y: i64,
    /// The compressed wait before it, as a label.
    idle_before: Option<String>,
}

fn layout<'a>(marks: &[&'a Mark]) -> Vec<Row<'a>> {
    let mut rows = Vec::with_capacity(marks.len());
    let mut y = TOP;
    let mut before: Option<i64> = None;
    for mark in marks {
        let mut idle_before = None;
        if let Some(previous) = before {
            let wait = mark.at_ns - previous;
            if wait > IDLE_NS {
                idle_before = Some(format!("{} idle", duration(wait)));
                y += MAX_STEP;
            } else {
                // 1 px per 50 ms beyond the minimum step.
                y += (MIN_STEP + wait / 50_000_000).min(MAX_STEP);
            }
        } else {
            y += MIN_STEP;
        }
        before = Some(mark.at_ns);
        rows.push(Row {
            mark,
            y,
            idle_before,
        });
    }
    rows
}

/// At most [`MAX_MARKS`]: the first and last halves.
fn thinned(marks: &[Mark]) -> Vec<&Mark> {
    if marks.len() <= MAX_MARKS {
        return marks.iter().collect();
    }
    let half = MAX_MARKS / 2;
    marks[..half]
        .iter()
        .chain(&marks[marks.len() - half..])
        .collect()
}

/// `1234 ms`.
pub fn ms(ns: i64) -> String {
    format!("{} ms", ns / 1_000_000)
}

/// `3.2 s`, `4 min 10 s`, `2 h 5 min`.
pub fn duration(ns: i64) -> String {
    let seconds = ns / 1_000_000_000;
    match seconds {
        ..60 => format!("{:.1} s", ns as f64 / 1e9),
        60..3600 if seconds % 60 == 0 => format!("{} min", seconds / 60),
        60..3600 => format!("{} min {} s", seconds / 60, seconds % 60),
        _ if seconds % 3600 == 0 => format!("{} h", seconds / 3600),
        _ => format!("{} h {} min", seconds / 3600, seconds % 3600 / 60),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mark(at_ms: i64) -> Mark {
        Mark {
            at_ns: at_ms * 1_000_000,
            conn: "control".into(),
            side: "client".into(),
            kind: MarkKind::State,
            label: String::new(),
        }
    }

    /// A wait longer than two seconds takes one fixed step and says how
    /// long it was; shorter ones grow with the wait, within bounds.
    #[test]
    fn long_waits_are_compressed_and_labelled() {
        let marks = [mark(0), mark(10), mark(1010), mark(3_601_010)];
        let refs: Vec<&Mark> = marks.iter().collect();
        let rows = layout(&refs);
        let steps: Vec<i64> = rows.windows(2).map(|w| w[1].y - w[0].y).collect();
        assert_eq!(steps, [MIN_STEP, MAX_STEP.min(MIN_STEP + 20), MAX_STEP]);
        let idle: Vec<Option<&str>> = rows.iter().map(|r| r.idle_before.as_deref()).collect();
        assert_eq!(idle, [None, None, None, Some("1 h idle")]);
    }

    #[test]
    fn durations_read_as_a_person_says_them() {
        assert_eq!(duration(1_500_000_000), "1.5 s");
        assert_eq!(duration(1_800_000_000_000), "30 min");
        assert_eq!(duration(250_000_000_000), "4 min 10 s");
        assert_eq!(duration(7_500_000_000_000), "2 h 5 min");
        assert_eq!(shortened("a\r\nb"), "a  b");
        assert_eq!(shortened(&"x".repeat(100)).chars().count(), MAX_LABEL + 1);
    }
}

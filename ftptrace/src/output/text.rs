//! The text a person reads at a terminal: one line per event, a block per
//! session with its timeline and verdict, the start and stats lines. The
//! writer makes every line printable whole (`crate::printable`), whatever
//! came from the network or from a process.

use std::fmt::Write as _;

use super::lines::{JoinLine, Origin, PatternLine, SessionRecord, Start, Stats, Summary};
use crate::{
    event::KernelEvent,
    ftp::Side,
    session::{Placement, attribution::Attribution, model::TIMELINE_HEAD},
};

/// A joined replay's first lines: the hosts, and each one's clock.
pub fn join(join: &JoinLine, origin: &Origin) -> Vec<String> {
    let ms = |ns: i64| ns as f64 / 1e6;
    let mut lines = vec![format!(
        "{} recordings joined as run {} ({}), times on {}'s clock",
        join.inputs.len(),
        origin.run,
        origin.host.name,
        join.inputs.first().map_or("?", |i| i.host.name.as_str())
    )];
    for input in join.inputs.iter().skip(1) {
        let bounds = match input.offset_bounds_ns {
            Some([lo, hi]) => format!(" (between {:+.3} and {:+.3} ms)", ms(lo), ms(hi)),
            None => String::new(),
        };
        lines.push(format!(
            "  {} (run {}): clock {:+.3} ms{bounds}, from {} connection(s) both traced",
            input.host.name,
            input.run,
            ms(input.clock_offset_ns),
            input.connections
        ));
    }
    lines
}

/// The start line, and a line for each probe off or on a lesser rung.
pub fn start(start: &Start, origin: &Origin) -> Vec<String> {
    let attached = start.probes.iter().filter(|p| p.attached).count();
    let passive = match start.ports.passive {
        Some([lo, hi]) => format!("passive data {lo}-{hi}"),
        None => "no passive range (--passive-ports)".into(),
    };
    let control: Vec<String> = start.ports.control.iter().map(u16::to_string).collect();
    let mut lines = vec![format!(
        "ftptrace {} on {} (Linux {}, run {}): control ports {}, active data {}, {passive}; \
         {attached}/{} probes attached",
        start.version,
        origin.host.name,
        start.kernel,
        origin.run,
        control.join(","),
        start.ports.active_data,
        start.probes.len()
    )];
    for probe in &start.probes {
        if !probe.attached {
            let reason = probe.reason.as_deref().unwrap_or("unknown reason");
            lines.push(format!("  not attached: {} ({reason})", probe.name));
        } else if !probe.fell_back.is_empty() {
            // A ladder probe on a lesser rung: say which, and why.
            lines.push(format!(
                "  {} via {} {} (not {})",
                probe.name,
                probe.hook,
                probe.target.as_deref().unwrap_or(""),
                probe.fell_back.join("; not ")
            ));
        }
    }
    lines
}

/// `ts side local <> remote what owner netns [session conn]`.
pub fn event(
    ts: &str,
    event: &KernelEvent,
    side: Side,
    who: &Attribution,
    place: Option<&Placement>,
) -> String {
    let owner = who
        .owner
        .as_ref()
        .map(|t| format!(" {}[{}]", t.comm, t.pid))
        .unwrap_or_default();
    let netns = event
        .netns
        .map(|n| format!(" netns {n}"))
        .unwrap_or_default();
    let place = place
        .map(|p| format!(" [{} {}]", p.session, p.conn.label()))
        .unwrap_or_default();
    format!(
        "{ts} {} {} <> {} {}{owner}{netns}{place}",
        side.as_str(),
        event.local,
        event.remote,
        event.kind
    )
}

/// A session for a person: a header, its connections, the timeline, the
/// verdict.
pub fn session(record: &SessionRecord) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "== session {} {}:{} -> {}:{}{} user {} ({}{}): {}{}",
        record.id,
        record.client.addr,
        record.client.port,
        record.server.addr,
        record.server.port,
        record
            .server_name
            .as_deref()
            .map(|name| format!(" ({name})"))
            .unwrap_or_default(),
        record.user.as_ref().map_or("?", |u| u.name.as_str()),
        record.state,
        if record.seeded { ", seeded" } else { "" },
        record.cause.unwrap_or("no cause yet"),
        record
            .cause_conn
            .as_deref()
            .map(|c| format!(" on {c}"))
            .unwrap_or_default()
    );
    for conn in std::iter::once(&record.control).chain(&record.data) {
        let nat = conn
            .behind_nat
            .as_ref()
            .map(|n| {
                format!(
                    " (through a NAT: the server sees {}:{} -> {}:{})",
                    n.client.addr, n.client.port, n.server.addr, n.server.port
                )
            })
            .unwrap_or_default();
        let tls = match (conn.tls_handshake_us, &conn.tls_handshake_failed) {
            (Some(us), _) => format!(", TLS handshake {:.1} ms", us as f64 / 1000.0),
            (None, Some(failed)) => format!(", {failed}"),
            (None, None) => String::new(),
        };
        let _ = writeln!(
            out,
            "   {} {}:{} -> {}:{}{nat} closed {} by {}{tls}",
            conn.conn,
            conn.client.addr,
            conn.client.port,
            conn.server.addr,
            conn.server.port,
            conn.close,
            conn.closed_by
        );
    }
    for (i, entry) in record.timeline.iter().enumerate() {
        if record.timeline_omitted > 0 && i == TIMELINE_HEAD {
            let _ = writeln!(out, "   ... {} entries left out", record.timeline_omitted);
        }
        let _ = writeln!(
            out,
            "   +{:>7} ms {:<7} {:<6} {}",
            entry.offset_ms, entry.conn, entry.side, entry.what
        );
    }
    for line in &record.evidence {
        let _ = writeln!(out, "   evidence: {line}");
    }
    out.pop();
    out
}

/// `== pattern repeated_failure: client 192.0.2.2 ended 3 sessions ...
/// (sessions a, b, c)`: the evidence names the servers.
pub fn pattern(line: &PatternLine) -> String {
    format!(
        "== pattern {}: {} (sessions {})",
        line.pattern,
        line.evidence,
        line.session_ids.join(", ")
    )
}

/// A summary (SIGUSR1): the counts of every cause met, the failing clients.
pub fn summary(summary: &Summary) -> Vec<String> {
    let causes: Vec<String> = summary
        .by_cause
        .iter()
        .filter(|(_, n)| **n > 0)
        .map(|(cause, n)| format!("{cause} {n}"))
        .collect();
    let mut lines = vec![format!(
        "-- summary: {} sessions, {} open; by cause: {}",
        summary.sessions,
        summary.sessions_open,
        if causes.is_empty() {
            "none ended yet".to_owned()
        } else {
            causes.join(", ")
        }
    )];
    if !summary.failing_clients.is_empty() {
        let clients: Vec<String> = summary
            .failing_clients
            .iter()
            .map(|c| format!("{} {}", c.addr, c.sessions))
            .collect();
        lines.push(format!("   most failed sessions: {}", clients.join(", ")));
    }
    lines
}

pub fn stats(stats: &Stats) -> String {
    let retried: Vec<String> = stats
        .handshakes
        .iter()
        .filter(|h| h.control_retried + h.data_retried > 0)
        .map(|h| {
            format!(
                "{} {}/{} control {}/{} data",
                h.server, h.control_retried, h.control, h.data_retried, h.data
            )
        })
        .collect();
    let handshakes = if retried.is_empty() {
        String::new()
    } else {
        format!("; retried handshakes: {}", retried.join(", "))
    };
    let tls = if stats.tls_handshakes == 0 {
        String::new()
    } else {
        format!(
            "; {} TLS handshakes, at most {}/s lately",
            stats.tls_handshakes, stats.tls_handshakes_peak_per_s
        )
    };
    let unwritten = if stats.unwritten == 0 {
        String::new()
    } else {
        format!("; {} lines unwritten", stats.unwritten)
    };
    format!(
        "-- {}: {} events, {} lost, {} missed, {} undecodable; {} sessions, {} open, {} evicted{handshakes}{tls}{unwritten}",
        if stats.is_final {
            "final stats"
        } else {
            "stats"
        },
        stats.events,
        stats.lost,
        stats.missed,
        stats.undecodable,
        stats.sessions,
        stats.sessions_open,
        stats.sessions_evicted
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::output::lines::FailingClient;

    #[test]
    fn a_summary_names_the_causes_met_and_the_failing_clients() {
        let mut line = Summary {
            ts: String::new(),
            sessions: 6,
            sessions_open: 1,
            by_cause: [("clean", 2), ("connection_refused", 3), ("tls_failure", 0)]
                .into_iter()
                .map(|(c, n)| (c.to_owned(), n))
                .collect(),
            failing_clients: vec![FailingClient {
                addr: "192.0.2.2".parse().unwrap(),
                sessions: 3,
            }],
            failing_clients_dropped: 0,
        };
        assert_eq!(
            summary(&line),
            [
                "-- summary: 6 sessions, 1 open; by cause: clean 2, connection_refused 3",
                "   most failed sessions: 192.0.2.2 3",
            ]
        );
        line.by_cause.clear();
        line.failing_clients.clear();
        assert_eq!(
            summary(&line),
            ["-- summary: 6 sessions, 1 open; by cause: none ended yet"]
        );
    }
}

//! The filters (`--client`, `--server`, `--ipv4`, `--ipv6`, `--netns`,
//! `--failures-only`) on every recording of the root suite, without root:
//! what a filtered replay writes is exactly the part of the unfiltered
//! replay's lines the filter describes, worked out here from those lines.

mod common;

use std::collections::{BTreeMap, BTreeSet};

use ftptrace::{
    cli::Format,
    line_filter::{Family, Wanted},
    recording::Recording,
    replay,
};
use serde_json::Value;

/// A replay's lines, parsed, by type.
struct Lines {
    events: Vec<String>,
    sessions: BTreeMap<String, String>,
    patterns: Vec<String>,
    final_events: u64,
}

fn lines_of(recording: &Recording, filter: Option<Wanted>) -> Lines {
    let text = replay::filtered_lines(recording, Format::Json, filter).unwrap();
    let mut lines = Lines {
        events: Vec::new(),
        sessions: BTreeMap::new(),
        patterns: Vec::new(),
        final_events: 0,
    };
    for line in text.lines() {
        let value: Value = serde_json::from_str(line).unwrap();
        match value["type"].as_str() {
            Some("event") => lines.events.push(line.to_owned()),
            Some("session") => {
                lines
                    .sessions
                    .insert(value["id"].as_str().unwrap().to_owned(), line.to_owned());
            }
            Some("pattern") => lines.patterns.push(line.to_owned()),
            Some("stats") if value["final"] == true => {
                lines.final_events = value["events"].as_u64().unwrap();
            }
            _ => {}
        }
    }
    lines
}

fn field(line: &str, name: &str) -> Value {
    serde_json::from_str::<Value>(line).unwrap()[name].clone()
}

fn sorted(lines: impl IntoIterator<Item = String>) -> Vec<String> {
    let mut lines: Vec<String> = lines.into_iter().collect();
    lines.sort();
    lines
}

/// A failure cause, as `patterns::is_failure` says (neither clean nor a
/// loss that recovered, nor none).
fn failed(session: &str) -> bool {
    !matches!(
        field(session, "cause").as_str(),
        None | Some("clean") | Some("packet_loss_recovered")
    )
}

#[test]
fn failures_only_keeps_failed_sessions_and_exactly_their_events() {
    let mut seen_both = 0;
    for path in common::recordings() {
        let recording = Recording::read(&path).unwrap();
        let all = lines_of(&recording, None);
        let only = lines_of(
            &recording,
            Some(Wanted {
                failures_only: true,
                ..Wanted::default()
            }),
        );
        let failed_ids: BTreeSet<&String> = all
            .sessions
            .iter()
            .filter(|(_, s)| failed(s))
            .map(|(id, _)| id)
            .collect();
        let name = path.display();
        assert_eq!(
            only.sessions.keys().collect::<BTreeSet<_>>(),
            failed_ids,
            "{name}"
        );
        let expected = all.events.iter().filter(|e| {
            field(e, "session")
                .as_str()
                .is_some_and(|id| failed_ids.contains(&id.to_owned()))
        });
        assert_eq!(
            sorted(only.events.clone()),
            sorted(expected.cloned()),
            "{name}"
        );
        assert_eq!(only.final_events, only.events.len() as u64, "{name}");
        assert_eq!(only.patterns, all.patterns, "{name}");
        seen_both += usize::from(!failed_ids.is_empty() && failed_ids.len() < all.sessions.len());
    }
    assert!(seen_both > 0, "no recording with failed and other sessions");
}

#[test]
fn address_family_and_namespace_filters_keep_their_part() {
    for path in common::recordings() {
        let recording = Recording::read(&path).unwrap();
        let all = lines_of(&recording, None);
        let name = path.display();
        // The client of the first session: all of its, nothing of others.
        let Some(first) = all.sessions.values().next() else {
            continue;
        };
        let client: std::net::IpAddr = field(first, "client")["addr"]
            .as_str()
            .unwrap()
            .parse()
            .unwrap();
        let of_client = lines_of(
            &recording,
            Some(Wanted {
                clients: vec![client.to_string().parse().unwrap()],
                ..Wanted::default()
            }),
        );
        let client_of = |session: &String| field(session, "client")["addr"] == client.to_string();
        assert_eq!(
            of_client.sessions.values().cloned().collect::<Vec<_>>(),
            all.sessions
                .values()
                .filter(|s| client_of(s))
                .cloned()
                .collect::<Vec<_>>(),
            "{name}"
        );
        // A block nobody is in: no event, no session.
        let nobody = lines_of(
            &recording,
            Some(Wanted {
                clients: vec!["198.51.100.0/24".parse().unwrap()],
                servers: vec!["2001:db8:ffff::/48".parse().unwrap()],
                ..Wanted::default()
            }),
        );
        assert!(
            nobody.events.is_empty() && nobody.sessions.is_empty(),
            "{name}"
        );
        assert_eq!(nobody.final_events, 0, "{name}");
        // One family: the sessions of that family only.
        let v6 = lines_of(
            &recording,
            Some(Wanted {
                family: Some(Family::V6),
                ..Wanted::default()
            }),
        );
        let is_v6 = |s: &String| field(s, "client")["addr"].as_str().unwrap().contains(':');
        assert_eq!(
            v6.sessions.len(),
            all.sessions.values().filter(|s| is_v6(s)).count(),
            "{name}"
        );
        // The namespace of the first event: its events only, and the
        // sessions that had one there.
        let Some(netns) = all.events.first().and_then(|e| field(e, "netns").as_u64()) else {
            continue;
        };
        let in_ns = lines_of(
            &recording,
            Some(Wanted {
                netns: vec![netns],
                ..Wanted::default()
            }),
        );
        let events_in_ns: Vec<String> = all
            .events
            .iter()
            .filter(|e| field(e, "netns").as_u64() == Some(netns))
            .cloned()
            .collect();
        assert_eq!(in_ns.events, events_in_ns, "{name}");
        let sessions_in_ns: BTreeSet<String> = events_in_ns
            .iter()
            .filter_map(|e| field(e, "session").as_str().map(str::to_owned))
            .collect();
        assert!(
            in_ns.sessions.keys().all(|id| sessions_in_ns.contains(id)),
            "{name}"
        );
    }
}

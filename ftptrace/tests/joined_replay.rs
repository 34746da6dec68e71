//! Two hosts, one story, from real records: each recording of the root
//! suite saw the client's and the server's namespaces on one host. Split in
//! two (the client's namespaces and the rest, as two tracers each given its
//! namespaces with `--netns` would record them) with the server's clock
//! set wrong, a joined replay must find the clock's error within its bounds
//! and tell every session's story as the one host did.

mod common;

use std::{collections::BTreeSet, path::PathBuf};

use ftptrace::{
    cli::Format,
    output::{HostLine, Origin},
    recording::Recording,
    replay,
};
use serde_json::Value;

/// The server host's clock is this far ahead of the client's.
const SKEW_NS: i128 = 3_700_000_000;

fn json_lines(text: &str) -> Vec<Value> {
    text.lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

fn of_type<'a>(lines: &'a [Value], kind: &str) -> Vec<&'a Value> {
    lines.iter().filter(|l| l["type"] == kind).collect()
}

/// What must not change when the same connections are told from two
/// hosts' records instead of one's: everything but ids, hosts and times.
fn story(session: &Value) -> String {
    let conn = |c: &Value| {
        format!(
            "{} {}:{}->{}:{} {}/{} est={} rx={} syn_rx={} seen={}",
            c["conn"],
            c["client"]["addr"],
            c["client"]["port"],
            c["server"]["addr"],
            c["server"]["port"],
            c["close"],
            c["closed_by"],
            c["established"],
            c["retransmits"],
            c["syn_retransmits"],
            c["seen_from"]
        )
    };
    let data: Vec<String> = session["data"]
        .as_array()
        .map(|d| d.iter().map(conn).collect())
        .unwrap_or_default();
    format!(
        "cause={} on {} | user={} | commands={} | replies={} | control: {} | data: {:?}",
        session["cause"],
        session["cause_conn"],
        session["user"],
        session["commands"],
        session["replies"],
        conn(&session["control"]),
        data
    )
}

/// The namespaces of the control connections' client ends.
fn client_namespaces(lines: &[Value]) -> BTreeSet<u64> {
    of_type(lines, "event")
        .into_iter()
        .filter(|e| e["side"] == "client" && e["conn"] == "control")
        .filter_map(|e| e["netns"].as_u64())
        .collect()
}

fn all_namespaces(lines: &[Value]) -> BTreeSet<u64> {
    of_type(lines, "event")
        .into_iter()
        .filter_map(|e| e["netns"].as_u64())
        .collect()
}

/// `path` read as the host whose namespaces are `netns`, named `host`.
fn as_host(path: &std::path::Path, netns: &BTreeSet<u64>, host: &str, skew_ns: i128) -> Recording {
    let mut recording = Recording::read(path).unwrap();
    recording.meta.filter.netns = netns.iter().copied().collect();
    let run = format!("{:0>32}", format!("{:x}", host.len() * 0x1111));
    recording.meta.origin = Some(Origin {
        host: HostLine { name: host.into() },
        run,
    });
    recording.meta.clock_offset_ns += skew_ns;
    recording
}

/// A recording split in two hosts, and what one host made of it.
struct Split {
    /// The lines of the recording replayed whole.
    one_host: Vec<Value>,
    /// The client host's namespaces.
    client_ns: BTreeSet<u64>,
    /// The client host (`batch`) and the server host (`ftp`, its clock
    /// `skew_ns` ahead).
    hosts: [Recording; 2],
}

/// `path` split into the client's namespaces and the rest, or `None` for
/// a recording with one end only.
fn split(path: &std::path::Path, skew_ns: i128) -> Option<Split> {
    let whole = Recording::read(path).unwrap();
    let one_host = json_lines(&replay::lines(&whole, Format::Json).unwrap());
    let client_ns = client_namespaces(&one_host);
    let rest: BTreeSet<u64> = all_namespaces(&one_host)
        .difference(&client_ns)
        .copied()
        .collect();
    if client_ns.is_empty() || rest.is_empty() {
        return None;
    }
    let hosts = [
        as_host(path, &client_ns, "batch", 0),
        as_host(path, &rest, "ftp", skew_ns),
    ];
    Some(Split {
        one_host,
        client_ns,
        hosts,
    })
}

#[test]
fn every_recording_split_in_two_hosts_with_one_clock_joins_into_the_same_sessions() {
    let (joined, bounded) = split_and_join(0);
    assert!(joined >= 20, "only {joined} recordings had both ends");
    assert!(
        bounded >= 15,
        "only {bounded} recordings bounded the clocks"
    );
}

#[test]
fn a_wrong_clock_is_found_and_put_right_where_segments_went_both_ways() {
    let (_, bounded) = split_and_join(SKEW_NS);
    assert!(
        bounded >= 15,
        "only {bounded} recordings bounded the clocks"
    );
}

/// Splits every recording with both ends in two hosts, the server's clock
/// `skew_ns` ahead, and joins them again: the same sessions wherever the
/// clocks agree or the shared connections bounded their offset. Returns
/// the recordings joined, and of them those with bounds.
fn split_and_join(skew_ns: i128) -> (usize, usize) {
    let (mut joined_any, mut bounded) = (0, 0);
    for path in common::recordings() {
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let Some(Split {
            one_host,
            client_ns,
            hosts,
        }) = split(&path, skew_ns)
        else {
            // One end only (a server-side run): nothing to split.
            continue;
        };
        let names = [path.clone(), path.clone()];
        let text = replay::all_lines(&hosts, &names, Format::Json).unwrap();
        let joined = json_lines(&text);

        let join = of_type(&joined, "join");
        assert_eq!(join.len(), 1, "{name}: one join line");
        let server_input = &join[0]["inputs"][1];
        assert_eq!(server_input["host"]["name"], "ftp", "{name}");
        let offset = server_input["clock_offset_ns"].as_i64().unwrap() as i128;
        // The truth is inside the bounds whenever there are bounds: a
        // segment cannot arrive before it was sent.
        let bounds = server_input["offset_bounds_ns"].as_array().map(|b| {
            [
                b[0].as_i64().unwrap() as i128,
                b[1].as_i64().unwrap() as i128,
            ]
        });
        if let Some([lo, hi]) = bounds {
            assert!(
                lo <= skew_ns && skew_ns <= hi,
                "{name}: the clock's error {skew_ns} ns outside [{lo}, {hi}]"
            );
            assert!(lo <= offset && offset <= hi, "{name}");
            // Loopback-fast: within 10 ms.
            assert!(
                (offset - skew_ns).abs() < 10_000_000,
                "{name}: offset {offset} ns, the clock's error {skew_ns} ns"
            );
            bounded += 1;
        } else if skew_ns != 0 {
            // Unbounded: nothing says where the other host's events go.
            joined_any += 1;
            continue;
        }
        assert_eq!(
            of_type(&joined, "start").len(),
            2,
            "{name}: each host's start line"
        );
        // Event lines name the host that saw them; one the kernel placed
        // in no namespace, the host of its local address.
        let client_addrs: BTreeSet<&str> = of_type(&one_host, "event")
            .into_iter()
            .filter(|e| e["netns"].as_u64().is_some_and(|n| client_ns.contains(&n)))
            .filter_map(|e| e["local_addr"].as_str())
            .collect();
        for event in of_type(&joined, "event") {
            let client_end = match event["netns"].as_u64() {
                Some(n) => client_ns.contains(&n),
                None => client_addrs.contains(event["local_addr"].as_str().unwrap_or_default()),
            };
            let expected = if client_end { "batch" } else { "ftp" };
            assert_eq!(event["host"]["name"], expected, "{name}: {event}");
        }

        let before: Vec<String> = of_type(&one_host, "session")
            .into_iter()
            .map(story)
            .collect();
        let after: Vec<String> = of_type(&joined, "session").into_iter().map(story).collect();
        let (mut b, mut a) = (before.clone(), after.clone());
        b.sort();
        a.sort();
        assert_eq!(
            a, b,
            "{name}: the joined sessions (left) differ from one host's (right)"
        );
        for session in of_type(&joined, "session") {
            assert_eq!(session["host"]["name"], "batch+ftp", "{name}");
        }
        // Every event of the one-host run is there once, from its host.
        assert_eq!(
            of_type(&joined, "event").len(),
            of_type(&one_host, "event").len(),
            "{name}: event lines"
        );
        joined_any += 1;
    }
    (joined_any, bounded)
}

#[test]
fn recordings_of_different_hours_are_replayed_apart() {
    // The suite's runs, one after another, minutes apart.
    let paths: Vec<PathBuf> = common::recordings();
    let recordings: Vec<Recording> = paths.iter().map(|p| Recording::read(p).unwrap()).collect();
    let text = replay::all_lines(&recordings, &paths, Format::Json).unwrap();
    let lines = json_lines(&text);
    assert!(of_type(&lines, "join").is_empty(), "nothing to join");
    // Each replayed as alone (in the order of their runs).
    let mut apart: Vec<String> = recordings
        .iter()
        .map(|r| replay::lines(r, Format::Json).unwrap())
        .collect();
    let mut together: Vec<String> = Vec::new();
    for line in text.lines() {
        if line.contains(r#""type":"start""#) {
            together.push(String::new());
        }
        let last = together.last_mut().expect("a start line first");
        last.push_str(line);
        last.push('\n');
    }
    apart.sort();
    together.sort();
    assert!(
        apart == together,
        "the recordings replayed together differ from alone"
    );
}

/// The text a person reads: first the hosts joined and each one's clock.
#[test]
fn the_text_of_a_joined_replay_says_which_hosts_and_clocks() {
    let path = common::recordings()
        .into_iter()
        .find(|p| p.ends_with("clean_passive_download_ipv4_matches_kernel_counters.rec"))
        .expect("the clean download's recording");
    let hosts = split(&path, SKEW_NS).expect("both ends").hosts;
    let text = replay::all_lines(&hosts, &[path.clone(), path.clone()], Format::Text).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert!(
        lines[0].starts_with("2 recordings joined as run ")
            && lines[0].ends_with("(batch+ftp), times on batch's clock"),
        "{}",
        lines[0]
    );
    assert!(
        lines[1].starts_with("  ftp (run ")
            && (lines[1].contains("clock +3699.9") || lines[1].contains("clock +3700.0"))
            && lines[1].contains("(between +3699.")
            && lines[1].ends_with("from 2 connection(s) both traced"),
        "{}",
        lines[1]
    );
    assert!(lines[2].contains(" on batch "), "{}", lines[2]);
    assert!(text.contains(" on ftp "), "the server host's start line");
}

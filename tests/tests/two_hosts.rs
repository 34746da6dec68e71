//! Two hosts, one story. Two tracers, each given one namespace with
//! `--netns` (the client's, the server's), stand in for the batch host and
//! the FTP server; a third, given none, is the one-host account to compare
//! with. A middlebox reset on the data connection (nftables in the
//! client's namespace answers the server's data with a forged reset):
//! neither end's TCP sent it. `ftptrace replay client.rec server.rec`
//! takes from each recording its namespace's records alone and joins them into one session
//! with both ends, the clock offset bracketing the truth (one clock here:
//! 0), and the cause proven with both ends, as the one-host run has it;
//! `ftptrace report` of the two recordings shows that one session in
//! Chromium.

use std::{process::Command, time::Duration};

use serde_json::Value;
use tests::{
    chromium::{count, dom_without_console_errors, keep_screenshot, write_report},
    client::Lftp,
    netns::{NsPair, SERVER_V4},
    nft,
    observe::observe,
    process::run,
    schema,
    tmp::TempDir,
    tracer::{DEFAULT_ARGS, Line, Session, Side, Trace, Tracer, binary, parse_line},
    vsftpd::{Listen, Vsftpd, VsftpdConfig},
};

/// A tracer whose lines and records are those of namespace `inode` alone.
fn tracer_of(inode: u64) -> Tracer {
    let netns = inode.to_string();
    let mut args = DEFAULT_ARGS.to_vec();
    args.extend(["--netns", &netns]);
    Tracer::start_with(&args)
}

/// `ftptrace replay FILES --format json`, its lines checked by the schema.
fn replay(traces: &[&Trace]) -> Vec<String> {
    let replayed = run(
        Command::new(binary())
            .arg("replay")
            .args(traces.iter().map(|t| t.recording().expect("a recording")))
            .args(["--format", "json"]),
        Duration::from_secs(60),
    );
    assert!(replayed.success(), "ftptrace replay: {replayed:?}");
    let lines: Vec<String> = replayed.stdout.lines().map(str::to_owned).collect();
    schema::assert_valid("the joined replay", lines.iter().map(String::as_str));
    lines
}

fn sessions(lines: &[String]) -> Vec<Session> {
    lines
        .iter()
        .filter_map(|l| match parse_line(l) {
            Ok(Line::Session(s)) => Some(*s),
            _ => None,
        })
        .collect()
}

/// What the two accounts must agree on.
fn story(s: &Session) -> String {
    let conns: Vec<String> = std::iter::once(&s.control)
        .chain(&s.data)
        .map(|c| {
            format!(
                "{} {}/{} seen {:?}",
                c.conn, c.close, c.closed_by, c.seen_from
            )
        })
        .collect();
    format!(
        "{:?} on {:?}, commands {:?}, {conns:?}",
        s.cause, s.cause_conn, s.commands
    )
}

#[test]
fn two_tracers_one_namespace_each_join_into_one_session_with_both_ends() {
    tests::root_test(
        "two_tracers_one_namespace_each_join_into_one_session_with_both_ends",
        || {
            let net = NsPair::new();
            let _ftp = Vsftpd::start(&net.server, VsftpdConfig::new(Listen::V4(SERVER_V4)));
            nft::forge_resets_on_data(&net.client);
            let batch_host = tracer_of(net.client.inode());
            let ftp_server = tracer_of(net.server.inode());
            let run_ = observe(&net, Tracer::start(), || {
                Lftp::new(SERVER_V4, 21, "file").run(&net.client)
            });
            let ctx = run_.context();
            let client_trace = batch_host.stop();
            let server_trace = ftp_server.stop();
            let forged = nft::hits(&net.client);
            assert!(forged[0] > 0, "nftables forged no reset: {forged:?}{ctx}");

            // The one-host account: both ends, the middlebox proven.
            let one_host = &run_.trace.sessions;
            assert_eq!(one_host.len(), 1, "{ctx}");
            assert_eq!(
                one_host[0].cause.as_deref(),
                Some("middlebox_reset"),
                "{ctx}"
            );

            // Joined: one session, both ends, the same story.
            let lines = replay(&[&client_trace, &server_trace]);
            let join: Value = lines
                .iter()
                .filter_map(|l| serde_json::from_str::<Value>(l).ok())
                .find(|v| v["type"] == "join")
                .expect("a join line");
            let server_input = &join["inputs"][1];
            // One machine, one clock: the bounds must hold 0.
            let bounds = server_input["offset_bounds_ns"]
                .as_array()
                .unwrap_or_else(|| panic!("no bounds: {join}"));
            let (lo, hi) = (bounds[0].as_i64().unwrap(), bounds[1].as_i64().unwrap());
            assert!(lo <= 0 && 0 <= hi, "the bounds [{lo}, {hi}] miss 0: {join}");
            assert!(
                server_input["connections"].as_u64() >= Some(2),
                "the control and the data connection bound it: {join}"
            );
            let joined = sessions(&lines);
            assert_eq!(joined.len(), 1, "{joined:?}");
            let session = &joined[0];
            assert_eq!(
                session.seen_from,
                [Side::Client, Side::Server],
                "{}",
                session.brief()
            );
            assert_eq!(
                story(session),
                story(&one_host[0]),
                "{}",
                session.timeline_text()
            );
            assert_eq!(session.cause.as_deref(), Some("middlebox_reset"));
            let hit = session.cause_conn.as_deref().unwrap_or_default();
            let conn = session.data.iter().find(|c| c.conn == hit).unwrap();
            assert_eq!(
                (conn.close.as_str(), conn.closed_by.as_str()),
                ("reset", "middlebox"),
                "{}",
                session.brief()
            );
            assert!(
                !session
                    .evidence
                    .iter()
                    .any(|e| e.contains("cannot be ruled out")),
                "both ends are traced: proven, not hinted: {:?}",
                session.evidence
            );
            // Every event once: as many as the one-host tracer printed
            // (each restricted tracer printed only those it could place in
            // its namespace; the join also places a dropped packet that
            // none had by its address).
            let events = lines
                .iter()
                .filter(|l| l.contains(r#""type":"event""#))
                .count();
            assert_eq!(events, run_.trace.events.len(), "event lines{ctx}");
            assert!(
                events >= client_trace.events.len() + server_trace.events.len(),
                "event lines"
            );

            // The report of the two recordings: that one session.
            let dir = TempDir::new("two-hosts");
            let page = dir.path().join("report.html");
            let recordings = [&client_trace, &server_trace].map(|t| t.recording().unwrap());
            write_report(&recordings, &page, Duration::from_secs(60));
            let html = dom_without_console_errors(&page);
            assert_eq!(count(&html, "<section class=\"session\""), 1, "one session");
            assert!(html.contains("1 shown"), "the script counted one session");
            assert_eq!(count(&html, ">middlebox_reset</span>"), 1);
            // Every session open (`#all`): the overview and the ladder.
            keep_screenshot(&format!("{}#all", page.display()), "report-two-hosts.png");
        },
    );
}

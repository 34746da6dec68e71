//! `ftptrace report` of a real run, opened in Debian's Chromium (headless):
//! a blocked data connection (SYN retransmits, nftables drops) and a
//! refused connection (a reset with the kernel's reason). The page's DOM,
//! after its script ran, holds every session with its cause, one arrow per
//! reset and per retransmit the kernels counted (`Tcp.OutRsts`,
//! `TcpExt.TCPSynRetrans` in both namespaces) and no console error; a
//! screenshot is kept under target/test-artifacts/.

use std::time::Duration;

use tests::{
    checks::segments,
    chromium::{count, dom_without_console_errors, keep_screenshot, write_report},
    client::{Curl, ftp_url},
    netns::{NsPair, SERVER_V4},
    nft::{self, Rule},
    observe::observe,
    tmp::TempDir,
    tracer::{Event, Kind, Tracer},
    vsftpd::{Listen, Vsftpd, VsftpdConfig},
};

/// In the tracer's port set, and nothing listens on it.
const CLOSED_PORT: u16 = 2121;

#[test]
fn the_report_opens_in_chromium_with_every_session_and_the_kernels_marks() {
    tests::root_test(
        "the_report_opens_in_chromium_with_every_session_and_the_kernels_marks",
        || {
            let net = NsPair::new();
            let _ftp = Vsftpd::start(
                &net.server,
                VsftpdConfig::new(Listen::V4(SERVER_V4)).with("accept_timeout", "3"),
            );
            nft::apply(&net.server, &[Rule::drop_syn_to(&(30000..=30009))]);
            let run_ = observe(&net, Tracer::start(), || {
                let blocked = Curl::new(ftp_url(SERVER_V4, 21, "file"))
                    .connect_timeout(Duration::from_secs(2))
                    .run(&net.client);
                let refused = Curl::new(ftp_url(SERVER_V4, CLOSED_PORT, "file")).run(&net.client);
                (blocked, refused)
            });
            let ctx = run_.context();
            let trace = &run_.trace;
            assert!(trace.sessions.len() >= 2, "{ctx}");

            let dir = TempDir::new("report");
            let lines = dir.path().join("run.jsonl");
            std::fs::write(&lines, trace.lines.join("\n") + "\n").expect("write the lines");
            let page = dir.path().join("report.html");
            write_report(&[&lines], &page, Duration::from_secs(60));

            let html = &dom_without_console_errors(&page);
            // The script ran: it counted the sessions it shows.
            let shown = format!("{} shown", trace.sessions.len());
            assert!(html.contains(&shown), "no \"{shown}\" in the DOM");
            for session in &trace.sessions {
                let cause = session.cause.as_deref().unwrap_or("open");
                let section = format!(
                    "<section class=\"session\" id=\"s-{}\" data-client=\"{}\" data-cause=\"{cause}\"",
                    session.id, session.client.addr
                );
                assert_eq!(count(html, &section), 1, "{section}{ctx}");
            }
            // The causes this run must have, each shown in its session's line.
            for cause in ["data_connection_blocked", "connection_refused"] {
                let sessions = trace
                    .sessions
                    .iter()
                    .filter(|s| s.cause.as_deref() == Some(cause))
                    .count() as i64;
                assert!(sessions >= 1, "no {cause} session{ctx}");
                assert_eq!(count(html, &format!(">{cause}</span>")), sessions, "{ctx}");
            }
            // One mark per reset and retransmit, as the kernels counted.
            let kernel = |name: &str| run_.server.get(name) + run_.client.get(name);
            let resets = trace
                .events
                .iter()
                .filter(|e| matches!(e.kind, Kind::ResetSent { .. }))
                .count() as i64;
            assert_eq!(
                resets,
                kernel("Tcp.OutRsts"),
                "reset_sent events vs Tcp.OutRsts{ctx}"
            );
            assert!(resets >= 1, "the refused connection sent no reset{ctx}");
            assert_eq!(count(html, "class=\"arrow reset-sent\""), resets, "{ctx}");
            let retransmits: Vec<&Event> = trace
                .events
                .iter()
                .filter(|e| matches!(e.kind, Kind::Retransmit { .. }))
                .collect();
            let syn = retransmits
                .iter()
                .filter(|e| matches!(e.kind, Kind::Retransmit { syn: true, .. }))
                .count() as i64;
            assert_eq!(syn, kernel("TcpExt.TCPSynRetrans"), "SYN retransmits{ctx}");
            assert!(syn >= 1, "the blocked SYN was not retransmitted{ctx}");
            assert_eq!(
                segments(&retransmits),
                kernel("Tcp.RetransSegs"),
                "retransmitted segments vs Tcp.RetransSegs{ctx}"
            );
            assert_eq!(
                count(html, "class=\"arrow retransmit\""),
                retransmits.len() as i64,
                "{ctx}"
            );
            let drops = trace
                .events
                .iter()
                .filter(|e| matches!(e.kind, Kind::Drop { .. }))
                .count() as i64;
            assert_eq!(count(html, "class=\"dot drop\""), drops, "{ctx}");

            // The picture, kept for a person to look at.
            let opened = format!(
                "{}#s-{}",
                page.display(),
                trace
                    .sessions
                    .iter()
                    .find(|s| s.cause.as_deref() == Some("data_connection_blocked"))
                    .map_or("", |s| s.id.as_str())
            );
            keep_screenshot(&opened, "report.png");
        },
    );
}

/// The report of the whole suite: every scenario's recording (testdata,
/// recorded by the root tests from real runs) in one page. In Chromium,
/// after the script ran: every session of every run with its cause, as
/// many marks of each kind as ftptrace wrote (none lost by the script),
/// no console message; a screenshot of the overview is kept.
#[test]
fn the_whole_suites_report_opens_in_chromium_with_every_session() {
    tests::root_test(
        "the_whole_suites_report_opens_in_chromium_with_every_session",
        || {
            let dir = tests::workspace_root().join("ftptrace/testdata/recordings");
            let mut recordings: Vec<std::path::PathBuf> = std::fs::read_dir(&dir)
                .expect("testdata/recordings")
                .map(|e| e.expect("an entry").path())
                .filter(|p| p.extension().is_some_and(|e| e == "rec"))
                .collect();
            recordings.sort();
            assert!(recordings.len() >= 40, "{} recordings", recordings.len());
            // Every session line of the runs, as their replays wrote them.
            let mut sessions = std::collections::BTreeMap::new();
            for recording in &recordings {
                let lines = std::fs::read_to_string(recording.with_extension("jsonl"))
                    .expect("the recording's lines");
                for line in lines.lines() {
                    let value: serde_json::Value = serde_json::from_str(line).expect("JSON");
                    if value["type"] == "session" {
                        let id = value["id"].as_str().unwrap_or_default().to_owned();
                        let cause = value["cause"].as_str().unwrap_or("open").to_owned();
                        let client = value["client"]["addr"]
                            .as_str()
                            .unwrap_or_default()
                            .to_owned();
                        sessions.insert(id, (client, cause));
                    }
                }
            }

            let out = TempDir::new("suite-report");
            let page = out.path().join("report.html");
            write_report(&recordings, &page, Duration::from_secs(120));
            let written = std::fs::read_to_string(&page).expect("the page");
            let html = dom_without_console_errors(&page);
            assert!(
                html.contains(&format!("{} shown", sessions.len())),
                "the script did not count {} sessions",
                sessions.len()
            );
            assert_eq!(
                count(&html, "<section class=\"session\""),
                sessions.len() as i64
            );
            for (id, (client, cause)) in &sessions {
                let section = format!(
                    "<section class=\"session\" id=\"s-{id}\" data-client=\"{client}\" data-cause=\"{cause}\""
                );
                assert_eq!(count(&html, &section), 1, "{section}");
            }
            for mark in [
                "class=\"arrow reset-sent\"",
                "class=\"arrow retransmit\"",
                "class=\"dot reset-received\"",
                "class=\"dot drop\"",
                "class=\"arrow probe\"",
            ] {
                assert_eq!(count(&html, mark), count(&written, mark), "{mark}");
            }
            assert!(count(&html, "class=\"arrow reset-sent\"") >= 10);
            assert!(count(&html, "class=\"arrow retransmit\"") >= 10);
            keep_screenshot(&page.display().to_string(), "report-suite.png");
        },
    );
}

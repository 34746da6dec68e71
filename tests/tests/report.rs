//! `ftptrace report` of a real run, opened in Debian's Chromium (headless):
//! a blocked data connection (SYN retransmits, nftables drops) and a
//! refused connection (a reset with the kernel's reason). The page's DOM,
//! after its script ran, holds every session with its cause, one arrow per
//! reset and per retransmit the kernels counted (`Tcp.OutRsts`,
//! `TcpExt.TCPSynRetrans` in both namespaces) and no console error; a
//! screenshot is kept under target/test-artifacts/.

use std::{path::Path, process::Command, time::Duration};

use tests::{
    checks::segments,
    client::{Curl, ftp_url},
    netns::{NsPair, SERVER_V4},
    nft::{self, Rule},
    observe::observe,
    process::run,
    tmp::TempDir,
    tracer::{Event, Kind, Tracer, binary},
    vsftpd::{Listen, Vsftpd, VsftpdConfig},
};

/// In the tracer's port set, and nothing listens on it.
const CLOSED_PORT: u16 = 2121;

/// Chromium, headless, on `page`: `--dump-dom` after the page's script ran,
/// or a screenshot; its stderr has the console's messages.
fn chromium(page: &Path, mode: &[String]) -> tests::process::Finished {
    run(
        Command::new("chromium")
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--hide-scrollbars",
                "--enable-logging=stderr",
                "--v=0",
                "--window-size=1280,1600",
            ])
            .args(mode)
            .arg(format!("file://{}", page.display())),
        Duration::from_secs(120),
    )
}

fn count(haystack: &str, needle: &str) -> i64 {
    haystack.matches(needle).count() as i64
}

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
            let made = run(
                Command::new(binary())
                    .arg("report")
                    .arg(&lines)
                    .arg("-o")
                    .arg(&page),
                Duration::from_secs(60),
            );
            assert!(made.success(), "ftptrace report: {made:?}");

            let dom = chromium(&page, &["--dump-dom".into()]);
            assert!(dom.success(), "chromium --dump-dom: {}", dom.stderr);
            let html = &dom.stdout;
            // No console error: Chromium logs the page's console messages
            // and uncaught exceptions on stderr.
            for line in dom.stderr.lines() {
                assert!(
                    !(line.contains("CONSOLE") || line.contains("Uncaught")),
                    "a console message: {line}"
                );
            }
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
            let artifacts = tests::workspace_root().join("target/test-artifacts");
            std::fs::create_dir_all(&artifacts).expect("target/test-artifacts");
            let shot = artifacts.join("report.png");
            let opened = format!(
                "{}#s-{}",
                page.display(),
                trace
                    .sessions
                    .iter()
                    .find(|s| s.cause.as_deref() == Some("data_connection_blocked"))
                    .map_or("", |s| s.id.as_str())
            );
            let screenshot = chromium(
                Path::new(&opened),
                &[format!("--screenshot={}", shot.display())],
            );
            assert!(
                screenshot.success(),
                "chromium --screenshot: {}",
                screenshot.stderr
            );
            let png = std::fs::read(&shot).expect("the screenshot");
            assert!(
                png.starts_with(b"\x89PNG") && png.len() > 10_000,
                "{} bytes",
                png.len()
            );
        },
    );
}

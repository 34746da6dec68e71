//! `ftptrace report`, root-free, from the recordings of the root scenarios
//! (testdata/recordings): every session is in the page with its cause, the
//! marks of the ladders are the events the recordings hold, a recording and
//! the JSON lines of its replay make the same page, and hostile text from a
//! log is escaped.

mod common;

use std::path::{Path, PathBuf};

use ftptrace::report::{self, input};

fn page_of(paths: &[PathBuf]) -> (input::Evidence, String) {
    let evidence = input::read(paths).expect("the inputs");
    let page = report::render(&evidence).into_string();
    (evidence, page)
}

/// How often `needle` occurs in `haystack`.
fn count(haystack: &str, needle: &str) -> usize {
    haystack.matches(needle).count()
}

#[test]
fn every_session_of_every_recording_is_in_the_page_with_its_cause() {
    let all = common::recordings();
    assert!(all.len() > 20, "{} recordings", all.len());
    let (evidence, page) = page_of(&all);
    assert_eq!(evidence.skipped, 0);
    assert!(evidence.sessions.len() > 40, "{}", evidence.sessions.len());
    for session in &evidence.sessions {
        let cause = session.cause.as_deref().unwrap_or("open");
        let section = format!(
            "<section class=\"session\" id=\"s-{}\" data-client=\"{}\" data-cause=\"{cause}\"",
            session.id, session.client.addr
        );
        assert_eq!(count(&page, &section), 1, "{section}");
    }
    assert_eq!(
        count(&page, "<section class=\"session\""),
        evidence.sessions.len()
    );
    // Self-contained: nothing fetched from anywhere.
    for outside in ["src=", "href=\"http", "@import", "url(http"] {
        assert_eq!(count(&page, outside), 0, "{outside}");
    }
}

/// Each recording alone: its ladders hold one mark per reset, retransmit,
/// drop and probe event of its drawn connections, and a reset sent is an
/// arrow, a reset received a dot.
#[test]
fn the_ladders_mark_each_reset_retransmit_drop_and_probe() {
    let mut marked = 0;
    for recording in common::recordings() {
        let (evidence, page) = page_of(std::slice::from_ref(&recording));
        let drawn = |kind: &str| {
            evidence
                .sessions
                .iter()
                .flat_map(|s| {
                    let conns: Vec<&str> =
                        s.connections().take(6).map(|c| c.conn.as_str()).collect();
                    evidence
                        .events
                        .get(&s.id)
                        .into_iter()
                        .flatten()
                        .filter(move |e| {
                            e.kind == kind && e.conn.as_deref().is_some_and(|c| conns.contains(&c))
                        })
                })
                .count()
        };
        let name = recording.display().to_string();
        let expect = [
            ("reset_sent", "class=\"arrow reset-sent\""),
            ("retransmit", "class=\"arrow retransmit\""),
            ("reset_received", "class=\"dot reset-received\""),
            ("drop", "class=\"dot drop\""),
        ];
        for (kind, mark) in expect {
            assert_eq!(count(&page, mark), drawn(kind), "{kind} in {name}");
            marked += drawn(kind);
        }
        let probes = drawn("keepalive_probe") + drawn("zero_window_probe");
        assert_eq!(
            count(&page, "class=\"arrow probe\""),
            probes,
            "probes in {name}"
        );
    }
    assert!(marked > 20, "only {marked} marks across the recordings");
}

/// A recording and the JSON lines of its replay (testdata's `.jsonl`, as
/// `ftptrace replay --format json` wrote them) make the same page, but for
/// the input's name.
#[test]
fn a_recording_and_its_json_lines_make_the_same_page() {
    for recording in common::recordings().into_iter().take(8) {
        let lines = recording.with_extension("jsonl");
        let (_, from_recording) = page_of(std::slice::from_ref(&recording));
        let (_, from_lines) = page_of(std::slice::from_ref(&lines));
        let name = |p: &Path| p.file_name().unwrap().to_string_lossy().into_owned();
        assert_eq!(
            from_recording.replace(&name(&recording), "INPUT"),
            from_lines.replace(&name(&lines), "INPUT"),
            "{}",
            recording.display()
        );
    }
}

/// Hostile text in a log's lines (a reply, a process name, a session id)
/// is escaped; lines that are not ftptrace's are counted, not trusted; a
/// PASS argument a log carries is never shown.
#[test]
fn hostile_lines_are_escaped_counted_or_masked() {
    let dir = std::env::temp_dir().join(format!("ftptrace-report-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("hostile.jsonl");
    let session = r#"{"type":"session","id":"x\"><script>alert(1)</script>","host":{"name":"<b>h</b>"},"start":"2026-12-04T15:00:00Z","end":"2026-12-04T15:00:01Z","client":{"addr":"192.0.2.2","port":4000},"server":{"addr":"192.0.2.1","port":21},"cause":"<img src=x onerror=alert(2)>","evidence":["</section><script>alert(3)</script>"],"seen_from":["server"],"control":{"conn":"control","client":{"addr":"192.0.2.2","port":4000},"server":{"addr":"192.0.2.1","port":21}}}"#;
    let reply = r#"{"type":"event","ts":"2026-12-04T15:00:00.5Z","kind":"ftp","side":"server","session":"x\"><script>alert(1)</script>","conn":"control","from":"server","command":null,"reply":220,"text":"<script>alert(4)</script>"}"#;
    let pass = r#"{"type":"event","ts":"2026-12-04T15:00:00.6Z","kind":"ftp","side":"server","session":"x\"><script>alert(1)</script>","conn":"control","from":"client","command":"PASS","arg":"hunter2"}"#;
    std::fs::write(
        &path,
        format!("{session}\nnot json at all\n{{\"type\":\"session\"}}\n{reply}\n{pass}\n"),
    )
    .unwrap();
    let (evidence, page) = page_of(std::slice::from_ref(&path));
    std::fs::remove_dir_all(&dir).unwrap();
    assert_eq!(evidence.skipped, 2);
    assert_eq!(evidence.sessions.len(), 1);
    for n in 1..=4 {
        assert!(
            !page.contains(&format!("<script>alert({n})")),
            "alert({n}) unescaped"
        );
    }
    assert!(!page.contains("<img src=x"));
    assert!(page.contains("&lt;script&gt;alert(4)&lt;/script&gt;"));
    assert!(!page.contains("hunter2"));
    assert!(page.contains("PASS ****"));
}

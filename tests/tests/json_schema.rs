//! schema/lines.schema.json against what ftptrace prints: every recording's
//! replay and the `check` line validate (the root tests validate every
//! live run's lines in `Tracer::stop`), and the schema refuses lines that
//! break the contract, so its passing says something.

use std::{path::PathBuf, process::Command, time::Duration};

use serde_json::Value;
use tests::{process, schema, tracer, workspace_root};

/// The built ftptrace, or `None` (saying why) outside CI when there is none.
fn binary() -> Option<PathBuf> {
    let binary = tracer::binary();
    if binary.exists() {
        return Some(binary);
    }
    let in_ci = std::env::var_os("CI").is_some_and(|v| !v.is_empty() && v != "false");
    assert!(!in_ci, "{} is missing, and CI is set", binary.display());
    eprintln!("skipping: no {} (cargo build --release)", binary.display());
    None
}

fn recordings() -> Vec<PathBuf> {
    let dir = workspace_root().join("ftptrace/testdata/recordings");
    let mut found: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| entry.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "rec"))
        .collect();
    found.sort();
    found
}

fn replay(binary: &PathBuf, recording: &PathBuf) -> String {
    process::run(
        Command::new(binary)
            .arg("replay")
            .arg(recording)
            .args(["--format", "json"]),
        Duration::from_secs(60),
    )
    .expect_success()
    .stdout
}

#[test]
fn every_replayed_recording_and_the_check_line_match_the_schema() {
    let Some(binary) = binary() else { return };
    let mut lines = String::new();
    let recordings = recordings();
    assert!(recordings.len() > 40, "{recordings:?}");
    for recording in &recordings {
        lines.push_str(&replay(&binary, recording));
    }
    // Without root `check` reports the missing privileges: a line all the same.
    let check = process::run(
        Command::new(&binary).args(["check", "--format", "json"]),
        Duration::from_secs(120),
    );
    assert!(check.stdout.contains(r#""type":"check""#), "{check}");
    lines.push_str(&check.stdout);
    let types: std::collections::BTreeSet<String> = lines
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap()["type"].to_string())
        .collect();
    assert_eq!(
        types.into_iter().collect::<Vec<_>>(),
        [
            r#""check""#,
            r#""event""#,
            r#""pattern""#,
            r#""session""#,
            r#""start""#,
            r#""stats""#
        ]
    );
    schema::assert_valid("replays and check", lines.lines());
}

/// Each change breaks the contract a pipeline relies on; the schema says so.
#[test]
fn the_schema_refuses_lines_that_break_the_contract() {
    let Some(binary) = binary() else { return };
    let recording = recordings()
        .into_iter()
        .find(|p| p.ends_with("clean_download_links_its_data_connection_by_announcement_alone.rec"))
        .expect("the clean download recording");
    let text = replay(&binary, &recording);
    let line = |kind: &str| -> Value {
        text.lines()
            .map(|l| serde_json::from_str::<Value>(l).unwrap())
            .find(|v| v["type"] == kind)
            .unwrap_or_else(|| panic!("no {kind} line"))
    };
    let (session, event) = (line("session"), line("event"));
    let mut broken: Vec<(&str, Value)> = Vec::new();
    let mut change = |what: &'static str, base: &Value, edit: &dyn Fn(&mut Value)| {
        let mut line = base.clone();
        edit(&mut line);
        broken.push((what, line));
    };
    change(
        "user as a string (ECS's user is an object)",
        &session,
        &|v| {
            v["user"] = "alice".into();
        },
    );
    change("schema 1", &session, &|v| v["schema"] = 1.into());
    change("host as a string", &event, &|v| v["host"] = "ftp1".into());
    change("an unknown field", &event, &|v| v["surprise"] = 1.into());
    change("a port as a string", &event, &|v| {
        v["local_port"] = "21".into()
    });
    change("no community id", &session, &|v| {
        v.as_object_mut().unwrap().remove("community_id");
    });
    change("a malformed community id", &event, &|v| {
        v["community_id"] = "1:short".into();
    });
    change("a time without its zone", &event, &|v| {
        v["ts"] = "2026-12-04T10:00:00".into();
    });
    change("an address that is none", &event, &|v| {
        v["local_addr"] = "192.0.2.999".into();
    });
    change("an unknown kind", &event, &|v| v["kind"] = "oops".into());
    schema::assert_valid(
        "the lines before the changes",
        [session, event]
            .map(|v| v.to_string())
            .iter()
            .map(String::as_str),
    );
    for (what, line) in broken {
        let invalid = schema::invalid_lines([line.to_string().as_str()]);
        assert!(!invalid.is_empty(), "{what} passed: {line}");
    }
}

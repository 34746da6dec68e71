//! The recordings of the root suite's scenarios (testdata/recordings), replayed
//! without root: each must print exactly the lines its live run printed
//! (`.jsonl`) and the text timeline kept beside it (`.txt`). Any change in
//! what ftptrace makes of the same kernel records shows here as a diff.

mod common;

use std::path::Path;

use ftptrace::{cli::Format, recording::Recording, replay};

fn expected(recording: &Path, extension: &str) -> String {
    let path = recording.with_extension(extension);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The first line where `actual` and `expected` differ, for the message.
fn first_difference(actual: &str, expected: &str) -> String {
    let (a, e): (Vec<&str>, Vec<&str>) = (actual.lines().collect(), expected.lines().collect());
    match a.iter().zip(&e).position(|(a, e)| a != e) {
        Some(at) => format!("line {}:\n  now:  {}\n  kept: {}", at + 1, a[at], e[at]),
        None => format!("{} lines now, {} kept", a.len(), e.len()),
    }
}

#[test]
fn every_recording_replays_to_the_lines_of_its_run() {
    for path in common::recordings() {
        let recording = Recording::read(&path).unwrap();
        assert_eq!(recording.truncated_tail, 0, "{}", path.display());
        for (format, extension) in [(Format::Json, "jsonl"), (Format::Text, "txt")] {
            let actual = replay::lines(&recording, format).unwrap();
            let expected = expected(&path, extension);
            assert!(
                actual == expected,
                "{} replays differently from {extension}: {}",
                path.display(),
                first_difference(&actual, &expected)
            );
        }
    }
}

/// A run killed mid-write: the complete part replays, and its sessions end
/// with the recording.
#[test]
fn a_cut_recording_replays_what_it_has() {
    let path = common::recordings()
        .into_iter()
        .find(|p| p.ends_with("clean_download_links_its_data_connection_by_announcement_alone.rec"))
        .expect("the clean download recording");
    let bytes = std::fs::read(&path).unwrap();
    let cut = Recording::parse(&bytes[..bytes.len() * 2 / 3]).unwrap();
    assert!(cut.truncated_tail > 0 || cut.frames.len() > 10);
    let lines = replay::lines(&cut, Format::Json).unwrap();
    let whole = expected(&path, "jsonl");
    let kept: Vec<&str> = lines.lines().collect();
    // The start line and the events before the cut are the live run's.
    let live: Vec<&str> = whole.lines().collect();
    let events_before_cut = kept
        .iter()
        .take_while(|line| line.contains(r#""type":"event""#) || line.contains(r#""type":"start""#))
        .count();
    assert!(events_before_cut > 5, "{lines}");
    assert_eq!(kept[..events_before_cut], live[..events_before_cut]);
    // The session still open at the cut is reported, open.
    assert!(
        kept.iter()
            .any(|l| l.contains(r#""type":"session""#) && l.contains(r#""state":"open""#)),
        "{lines}"
    );
}

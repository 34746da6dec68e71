//! What an operator sees when something is wrong: one line on stderr that
//! says what, a non-zero exit, never a panic; and `ftptrace | head` exits 0.

use std::{
    io::{BufRead, BufReader},
    process::{Command, Stdio},
    time::Duration,
};

use tests::{
    deadline::Deadline,
    process::{KillOnDrop, kill_and_reap, run, wait_until},
    tracer::binary,
};

const TIMEOUT: Duration = Duration::from_secs(30);

/// The one stderr line of a failed run, checked for the words that matter.
#[track_caller]
fn assert_one_line_error(
    args: &[&str],
    code: i32,
    words: &[&str],
    setup: impl FnOnce(&mut Command),
) {
    let mut command = Command::new(binary());
    command.args(args);
    setup(&mut command);
    let done = run(&mut command, TIMEOUT);
    assert_eq!(done.status.code(), Some(code), "{done}");
    assert!(!done.stderr.contains("panicked"), "{done}");
    let line = done
        .stderr
        .lines()
        .find(|l| l.starts_with("ftptrace:") || l.starts_with("error:"));
    let line = line.unwrap_or_else(|| panic!("no error line: {done}"));
    for word in words {
        assert!(line.contains(word), "`{word}` not in `{line}`: {done}");
    }
    assert!(
        done.stdout.is_empty(),
        "nothing on stdout for a failed start: {done}"
    );
}

#[test]
fn missing_capabilities_are_named() {
    if !tests::root_or_skip("missing_capabilities_are_named") {
        return;
    }
    // The same binary as an unprivileged user, no capabilities at all.
    assert_one_line_error(
        &["--format", "json"],
        1,
        &["missing CAP_BPF and CAP_PERFMON", "sudo"],
        |c| {
            let program = c.get_program().to_owned();
            let args: Vec<_> = c.get_args().map(ToOwned::to_owned).collect();
            *c = Command::new("setpriv");
            c.args([
                "--reuid=65534",
                "--regid=65534",
                "--clear-groups",
                "--inh-caps=-all",
            ])
            .arg(program)
            .args(args);
        },
    );
}

#[test]
fn bad_flags_and_unwritable_output_are_refused() {
    if !tests::root_or_skip("bad_flags_and_unwritable_output_are_refused") {
        return;
    }
    assert_one_line_error(
        &["--passive-ports", "30009-30000"],
        2,
        &["runs backwards"],
        |_| {},
    );
    assert_one_line_error(
        &["--ports", "ftp"],
        2,
        &["`ftp` is not a port number"],
        |_| {},
    );
    assert_one_line_error(
        &["--tls-library", "/usr/lib/libz.so.1"],
        1,
        &[
            "--tls-library /usr/lib/libz.so.1",
            "not a library ftptrace watches",
            "libssl.so.3",
        ],
        |_| {},
    );
    assert_one_line_error(
        &["--tls-library", "/nonexistent-ftptrace-dir/libssl.so.3"],
        1,
        &[
            "--tls-library /nonexistent-ftptrace-dir/libssl.so.3",
            "No such file",
        ],
        |_| {},
    );
    assert_one_line_error(
        &["--output", "/nonexistent-ftptrace-dir/events.jsonl"],
        1,
        &["cannot write output file /nonexistent-ftptrace-dir/events.jsonl"],
        |_| {},
    );
}

/// `ftptrace | head -1`: once the reader is gone, the next write fails with
/// EPIPE and ftptrace exits 0, quietly.
#[test]
fn a_closed_stdout_exits_zero() {
    if !tests::root_or_skip("a_closed_stdout_exits_zero") {
        return;
    }
    let mut child = KillOnDrop(
        Command::new(binary())
            .args(["--format", "json", "--stats-interval", "1"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn ftptrace"),
    );
    let mut stdout = BufReader::new(child.stdout.take().expect("piped"));
    let mut first = String::new();
    stdout.read_line(&mut first).expect("read the start line");
    assert!(first.starts_with(r#"{"type":"start""#), "{first}");
    drop(stdout);
    let status = wait_until(&mut child, Deadline::after(TIMEOUT));
    let Some(status) = status else {
        kill_and_reap(&mut child);
        panic!("ftptrace kept running after its reader went away");
    };
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().expect("piped"), &mut stderr)
        .expect("stderr");
    assert_eq!(status.code(), Some(0), "stderr: {stderr}");
    assert!(
        !stderr.contains("panicked") && !stderr.contains("Broken pipe"),
        "{stderr}"
    );
}

/// `--log-format json`: the failure is one JSON object on stderr, with its
/// level and message, and the exit is non-zero; `--log-level error` keeps
/// notes and warnings out.
#[test]
fn diagnostics_as_json_lines() {
    let done = run(
        Command::new(binary()).args([
            "replay",
            "--log-format",
            "json",
            "--log-level",
            "error",
            "/nonexistent-dir/run.rec",
        ]),
        TIMEOUT,
    );
    assert_eq!(done.status.code(), Some(1), "{done}");
    let lines: Vec<&str> = done.stderr.lines().collect();
    assert_eq!(lines.len(), 1, "{done}");
    let value: serde_json::Value =
        serde_json::from_str(lines[0]).unwrap_or_else(|e| panic!("not JSON ({e}): {done}"));
    assert_eq!(value["level"], "error", "{done}");
    assert_eq!(value["program"], "ftptrace", "{done}");
    assert!(
        value["message"]
            .as_str()
            .is_some_and(|m| m.contains("/nonexistent-dir/run.rec")),
        "{done}"
    );
    assert!(
        value["ts"].as_str().is_some_and(|t| t.ends_with('Z')),
        "{done}"
    );
}

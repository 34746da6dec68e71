//! Issue 11, findings 7 and 8, with the real binary: `--output` is created
//! 0600 and never through a symlink; SIGHUP (logrotate, a dropped SSH
//! session) reopens it instead of killing the run; a signal right after the
//! start line ends the run cleanly, with open sessions and final stats.

use std::{
    io::{BufRead as _, BufReader},
    os::unix::fs::PermissionsExt as _,
    path::Path,
    process::{Command, Stdio},
    time::Duration,
};

use tests::{
    client::{Curl, ftp_url},
    deadline::{Deadline, wait_for},
    netns::{NsPair, SERVER_V4},
    process::{kill_and_reap, wait_until},
    tmp::TempDir,
    tracer::{DEFAULT_ARGS, START_TIMEOUT, STOP_TIMEOUT, binary},
    vsftpd::{Listen, Vsftpd, VsftpdConfig},
};

fn signal(pid: u32, signal: i32) {
    // SAFETY: kill(2) on our own child, not yet reaped.
    unsafe { libc::kill(pid as i32, signal) };
}

fn lines_of(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(str::to_owned)
        .collect()
}

#[test]
fn sighup_reopens_the_output_and_the_run_goes_on() {
    tests::root_test("sighup_reopens_the_output_and_the_run_goes_on", || {
        let net = NsPair::new();
        let ftp = Vsftpd::start(&net.server, VsftpdConfig::new(Listen::V4(SERVER_V4)));
        let dir = TempDir::new("output");
        let path = dir.path().join("events.jsonl");
        let rotated = dir.path().join("events.jsonl.1");
        let mut child = Command::new(binary())
            .args(DEFAULT_ARGS)
            .arg("--output")
            .arg(&path)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start the tracer");
        let pid = child.id();
        wait_for(
            "the start line in --output",
            START_TIMEOUT,
            || match lines_of(&path).first() {
                Some(line) if line.contains(r#""type":"start""#) => Ok(()),
                _ => Err("no start line yet".into()),
            },
        );
        let mode = std::fs::metadata(&path)
            .expect("the output file")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "--output created with mode {mode:o}");
        // What logrotate does: move the file, then SIGHUP.
        std::fs::rename(&path, &rotated).expect("rotate");
        signal(pid, libc::SIGHUP);
        wait_for(
            "a new --output after SIGHUP",
            Duration::from_secs(10),
            || {
                if path.exists() {
                    Ok(())
                } else {
                    Err("not reopened".into())
                }
            },
        );
        let download = Curl::new(ftp_url(SERVER_V4, 21, "file")).run(&net.client);
        download.assert_downloaded(&ftp.expected("file"));
        // The session is reported once it is over, in the new file.
        wait_for(
            "the session line in the new file",
            Duration::from_secs(20),
            || match lines_of(&path)
                .iter()
                .any(|l| l.contains(r#""type":"session""#))
            {
                true => Ok(()),
                false => Err("no session line yet".into()),
            },
        );
        signal(pid, libc::SIGTERM);
        let status = wait_until(&mut child, Deadline::after(STOP_TIMEOUT));
        if status.is_none() {
            kill_and_reap(&mut child);
        }
        assert!(
            status.is_some_and(|s| s.success()),
            "the run did not end cleanly: {status:?}"
        );
        let old = lines_of(&rotated);
        let new = lines_of(&path);
        assert!(old[0].contains(r#""type":"start""#), "{old:?}");
        let last = new.last().expect("lines after the reopen");
        assert!(
            last.contains(r#""type":"stats""#) && last.contains(r#""final":true"#),
            "{last}"
        );
        let mode = std::fs::metadata(&path)
            .expect("new file")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "reopened with mode {mode:o}");
        for line in old.iter().chain(&new) {
            tests::assert_no_secret("--output", line);
            assert!(
                serde_json::from_str::<serde_json::Value>(line).is_ok(),
                "{line}"
            );
        }
    });
}

/// The handlers are installed before the start line: SIGINT the moment it
/// appears ends the run as SIGTERM would, with final stats.
#[test]
fn a_signal_right_after_the_start_line_ends_the_run_cleanly() {
    tests::root_test(
        "a_signal_right_after_the_start_line_ends_the_run_cleanly",
        || {
            for sig in [libc::SIGINT, libc::SIGHUP, libc::SIGTERM] {
                let mut child = Command::new(binary())
                    .args(DEFAULT_ARGS)
                    .stdout(Stdio::piped())
                    .stderr(Stdio::null())
                    .spawn()
                    .expect("start the tracer");
                let mut stdout = BufReader::new(child.stdout.take().expect("piped"));
                let mut first = String::new();
                stdout.read_line(&mut first).expect("the start line");
                assert!(first.contains(r#""type":"start""#), "{first}");
                signal(child.id(), sig);
                if sig == libc::SIGHUP {
                    // SIGHUP reopens (stdout: nothing to reopen) and the run
                    // goes on: it ends at the SIGTERM after it.
                    signal(child.id(), libc::SIGTERM);
                }
                let rest: Vec<String> = stdout.lines().map_while(Result::ok).collect();
                let status = wait_until(&mut child, Deadline::after(STOP_TIMEOUT));
                if status.is_none() {
                    kill_and_reap(&mut child);
                }
                assert!(
                    status.is_some_and(|s| s.success()),
                    "signal {sig}: the run did not end cleanly: {status:?}"
                );
                let last = rest.last().map(String::as_str).unwrap_or_default();
                assert!(
                    last.contains(r#""type":"stats""#) && last.contains(r#""final":true"#),
                    "signal {sig}: last line {last}"
                );
            }
        },
    );
}

/// An existing symlink at `--output` is refused, and what it points to is
/// left alone.
#[test]
fn an_output_path_that_is_a_symlink_is_refused() {
    if !tests::root_or_skip("an_output_path_that_is_a_symlink_is_refused") {
        return;
    }
    let dir = TempDir::new("output");
    let target = dir.path().join("precious");
    std::fs::write(&target, "keep me\n").expect("write the target");
    let link = dir.path().join("events.jsonl");
    std::os::unix::fs::symlink(&target, &link).expect("symlink");
    let run = tests::process::run(
        Command::new(binary())
            .args(DEFAULT_ARGS)
            .arg("--output")
            .arg(&link),
        Duration::from_secs(60),
    );
    assert!(!run.status.success(), "a symlinked --output was accepted");
    let stderr = run.stderr.trim();
    assert_eq!(stderr.lines().count(), 1, "one line: {stderr}");
    assert!(
        stderr.contains("symlink") || stderr.contains("symbolic link"),
        "{stderr}"
    );
    assert_eq!(std::fs::read_to_string(&target).unwrap(), "keep me\n");
}

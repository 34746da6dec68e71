//! The scripted FTP client (`tests/scripts/ftp_scenario.py`) that plays one
//! scenario per run: the moves curl will not make (idling, hanging up
//! mid-transfer, connecting late, TLS with verification).

use std::{
    io::{BufRead, BufReader, Write},
    process::{Child, ChildStdin, ChildStdout, Stdio},
    time::Duration,
};

use crate::{
    deadline::Deadline,
    netns::NetNs,
    process::{kill_and_reap, wait_until},
};

const SCRIPT: &str = include_str!("../scripts/ftp_scenario.py");

/// How long a scenario may take, `ready` to verdict.
pub const SCENARIO_TIMEOUT: Duration = Duration::from_secs(60);

/// A running scenario client.
pub struct Scenario {
    child: Child,
    stdin: Option<ChildStdin>,
    stdout: BufReader<ChildStdout>,
    name: String,
}

impl Scenario {
    /// Starts `scenario` in `ns` against `host` (with an optional argument).
    #[track_caller]
    pub fn start(ns: &NetNs, scenario: &str, host: std::net::IpAddr, arg: Option<&str>) -> Self {
        let host = host.to_string();
        let mut args = vec!["-c", SCRIPT, scenario, &host];
        args.extend(arg);
        let mut child = ns
            .command("python3")
            .args(&args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start the {scenario} client: {e}"));
        let stdout = BufReader::new(child.stdout.take().expect("piped"));
        Self {
            stdin: child.stdin.take(),
            child,
            stdout,
            name: scenario.into(),
        }
    }

    /// Waits for the client's `ready` (it printed it, then waits for `go`).
    #[track_caller]
    pub fn wait_ready(&mut self) {
        let line = self.line();
        assert_eq!(line, "ready", "the {} client is not ready", self.name);
    }

    /// Lets a waiting client go on.
    pub fn go(&mut self) {
        if let Some(mut stdin) = self.stdin.take() {
            stdin
                .write_all(b"go\n")
                .unwrap_or_else(|e| panic!("cannot tell the {} client to go: {e}", self.name));
        }
    }

    /// Waits for the client to finish and returns its verdict (last line).
    #[track_caller]
    pub fn finish(mut self) -> String {
        self.stdin.take();
        let status = wait_until(&mut self.child, Deadline::after(SCENARIO_TIMEOUT));
        if status.is_none() {
            kill_and_reap(&mut self.child);
            panic!(
                "the {} client did not finish within {SCENARIO_TIMEOUT:?}",
                self.name
            );
        }
        self.line()
    }

    fn line(&mut self) -> String {
        let mut line = String::new();
        self.stdout
            .read_line(&mut line)
            .unwrap_or_else(|e| panic!("reading the {} client: {e}", self.name));
        line.trim().to_owned()
    }
}

impl Drop for Scenario {
    fn drop(&mut self) {
        kill_and_reap(&mut self.child);
    }
}

//! Child processes with bounded waits: one-shot commands whose output is
//! kept for failure messages, and long-running daemons killed on drop.

use std::{
    fs::File,
    io::Read,
    ops::{Deref, DerefMut},
    path::{Path, PathBuf},
    process::{Child, Command, ExitStatus, Stdio},
    sync::mpsc,
    thread,
    time::Duration,
};

use crate::deadline::{Deadline, POLL_INTERVAL};

/// How long an ordinary setup command (ip, nft, ss, cat, ethtool) may take.
pub const COMMAND_TIMEOUT: Duration = Duration::from_secs(10);

/// A command that ran to its end.
#[derive(Debug)]
pub struct Finished {
    /// The command line, for messages.
    pub command: String,
    pub pid: u32,
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

impl Finished {
    pub fn success(&self) -> bool {
        self.status.success()
    }

    /// Panics with the command and its output unless it exited 0.
    #[track_caller]
    pub fn expect_success(self) -> Self {
        assert!(self.success(), "command failed: {self}");
        self
    }
}

impl std::fmt::Display for Finished {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} (pid {}) exited with {}\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.command,
            self.pid,
            self.status,
            self.stdout.trim_end(),
            self.stderr.trim_end()
        )
    }
}

/// Runs `command` with no stdin and captured output; kills it and panics if
/// it has not exited after `timeout`.
#[track_caller]
pub fn run(command: &mut Command, timeout: Duration) -> Finished {
    let described = describe(command);
    let deadline = Deadline::after(timeout);
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {described}: {e}"));
    let pid = child.id();
    let stdout = read_in_background(child.stdout.take());
    let stderr = read_in_background(child.stderr.take());
    let status = wait_until(&mut child, deadline);
    let stdout = stdout.collect(deadline);
    let stderr = stderr.collect(deadline);
    match status {
        Some(status) => Finished {
            command: described,
            pid,
            status,
            stdout,
            stderr,
        },
        None => panic!(
            "{described} (pid {pid}) did not exit within {timeout:?}; killed it\n\
             --- stdout ---\n{stdout}\n--- stderr ---\n{stderr}"
        ),
    }
}

/// [`run`] with [`COMMAND_TIMEOUT`], panicking unless the command succeeds.
#[track_caller]
pub fn run_ok(command: &mut Command) -> Finished {
    run(command, COMMAND_TIMEOUT).expect_success()
}

/// The program and arguments of `command`, shell-like.
pub fn describe(command: &Command) -> String {
    std::iter::once(command.get_program())
        .chain(command.get_args())
        .map(|a| a.to_string_lossy().into_owned())
        .collect::<Vec<_>>()
        .join(" ")
}

/// Waits for `child` until `deadline`; on timeout kills it (SIGKILL), reaps
/// it and returns `None`.
pub fn wait_until(child: &mut Child, deadline: Deadline) -> Option<ExitStatus> {
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return Some(status),
            Ok(None) if deadline.expired() => {
                kill_and_reap(child);
                return None;
            }
            Ok(None) => thread::sleep(POLL_INTERVAL.min(deadline.remaining())),
            Err(e) => panic!("cannot wait for pid {}: {e}", child.id()),
        }
    }
}

/// SIGKILL and reap. A process killed with SIGKILL is reaped at once unless
/// it is stuck in the kernel, which is a failure worth a panic.
pub fn kill_and_reap(child: &mut Child) {
    if matches!(child.try_wait(), Ok(Some(_))) {
        return;
    }
    let _ = child.kill();
    let deadline = Deadline::after(COMMAND_TIMEOUT);
    while !matches!(child.try_wait(), Ok(Some(_)) | Err(_)) {
        assert!(
            !deadline.expired(),
            "pid {} survived SIGKILL for {:?}",
            child.id(),
            deadline.timeout()
        );
        thread::sleep(POLL_INTERVAL);
    }
}

/// A child killed and reaped on drop unless it has exited: a test that
/// fails midway leaves no tracer attached and no client running.
pub struct KillOnDrop(pub Child);

impl Deref for KillOnDrop {
    type Target = Child;
    fn deref(&self) -> &Child {
        &self.0
    }
}

impl DerefMut for KillOnDrop {
    fn deref_mut(&mut self) -> &mut Child {
        &mut self.0
    }
}

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        kill_and_reap(&mut self.0);
    }
}

/// Output read by a thread so that a chatty child never blocks on a full pipe.
pub struct Collector(Option<mpsc::Receiver<String>>);

/// Starts reading `pipe` to its end in a thread.
pub fn read_in_background(pipe: Option<impl Read + Send + 'static>) -> Collector {
    Collector(pipe.map(|mut pipe| {
        let (tx, rx) = mpsc::channel();
        thread::spawn(move || {
            let mut bytes = Vec::new();
            let _ = pipe.read_to_end(&mut bytes);
            let _ = tx.send(String::from_utf8_lossy(&bytes).into_owned());
        });
        rx
    }))
}

impl Collector {
    /// What was read, waiting until `deadline` for the writer to close it (a
    /// grandchild may hold it open).
    pub fn collect(self, deadline: Deadline) -> String {
        match self.0 {
            None => String::new(),
            Some(rx) => rx
                .recv_timeout(deadline.remaining().max(POLL_INTERVAL))
                .unwrap_or_else(|_| "<output still open at the deadline>".into()),
        }
    }
}

/// A long-running child (vsftpd, a web server) with its stdout and stderr in
/// a log file; killed and reaped on drop.
pub struct Daemon {
    child: Child,
    command: String,
    log: PathBuf,
}

impl Daemon {
    /// Starts `command` with output appended to `log`.
    #[track_caller]
    pub fn spawn(command: &mut Command, log: &Path) -> Self {
        let described = describe(command);
        let out =
            File::create(log).unwrap_or_else(|e| panic!("cannot create {}: {e}", log.display()));
        let err = out.try_clone().expect("duplicate log file descriptor");
        let child = command
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {described}: {e}"));
        Self {
            child,
            command: described,
            log: log.to_owned(),
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Panics with the log if the daemon has exited.
    #[track_caller]
    pub fn assert_running(&mut self) {
        if let Ok(Some(status)) = self.child.try_wait() {
            panic!(
                "{} exited with {status}:\n{}",
                self.command,
                self.log_text()
            );
        }
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log)
            .unwrap_or_else(|e| format!("<cannot read {}: {e}>", self.log.display()))
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        kill_and_reap(&mut self.child);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_keeps_output_and_status() {
        let done = run(
            Command::new("sh").args(["-c", "echo out; echo err >&2; exit 3"]),
            COMMAND_TIMEOUT,
        );
        assert_eq!(done.stdout, "out\n");
        assert_eq!(done.stderr, "err\n");
        assert_eq!(done.status.code(), Some(3));
        assert_eq!(done.command, "sh -c echo out; echo err >&2; exit 3");
    }

    #[test]
    #[should_panic(expected = "did not exit within")]
    fn run_kills_a_command_at_its_deadline() {
        run(Command::new("sleep").arg("30"), Duration::from_millis(100));
    }
}

//! Issue 11, findings 7 and 8, with the real binary: `--output` is created
//! 0600 and never through a symlink; SIGHUP (logrotate, a dropped SSH
//! session) reopens it instead of killing the run; a signal right after the
//! start line ends the run cleanly, with open sessions and final stats.
//! Issue 15: Debian's logrotate rotates it under load and no line is lost;
//! a full disk is one error, counted, and the run goes on.

use std::{
    io::{BufRead as _, BufReader},
    os::unix::fs::PermissionsExt as _,
    path::Path,
    process::{Command, Stdio},
    time::Duration,
};

use tests::{
    client::{Curl, ftp_url},
    counters::Counters,
    deadline::{Deadline, wait_for},
    netns::{NsPair, SERVER_V4},
    process::{KillOnDrop, kill_and_reap, wait_until},
    scenario::Scenario,
    tmp::TempDir,
    tracer::{DEFAULT_ARGS, NO_PASSIVE_RANGE_ARGS, START_TIMEOUT, STOP_TIMEOUT, binary},
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

/// A tracer writing to `--output`, started here to signal it as logrotate
/// and systemd do; killed on drop unless stopped, so that a failed test
/// leaves no tracer attached.
struct FileTracer(KillOnDrop);

impl FileTracer {
    /// `ftptrace <args> --output <path>`, its stderr to `stderr`; returns
    /// once the start line is in `path`.
    #[track_caller]
    fn start(args: &[&str], path: &Path, stderr: impl Into<Stdio>) -> Self {
        let child = Command::new(binary())
            .args(args)
            .arg("--output")
            .arg(path)
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .expect("start the tracer");
        let tracer = Self(KillOnDrop(child));
        wait_for(
            "the start line in --output",
            START_TIMEOUT,
            || match lines_of(path).first() {
                Some(line) if line.contains(r#""type":"start""#) => Ok(()),
                _ => Err("no start line yet".into()),
            },
        );
        tracer
    }

    fn id(&self) -> u32 {
        self.0.id()
    }

    /// SIGTERM, and its exit within [`STOP_TIMEOUT`] (`None`: killed).
    fn stop(&mut self) -> Option<std::process::ExitStatus> {
        signal(self.id(), libc::SIGTERM);
        let status = wait_until(&mut self.0, Deadline::after(STOP_TIMEOUT));
        if status.is_none() {
            kill_and_reap(&mut self.0);
        }
        status
    }
}

#[test]
fn sighup_reopens_the_output_and_the_run_goes_on() {
    tests::root_test("sighup_reopens_the_output_and_the_run_goes_on", || {
        let net = NsPair::new();
        let ftp = Vsftpd::start(&net.server, VsftpdConfig::new(Listen::V4(SERVER_V4)));
        let dir = TempDir::new("output");
        let path = dir.path().join("events.jsonl");
        let rotated = dir.path().join("events.jsonl.1");
        let mut tracer = FileTracer::start(DEFAULT_ARGS, &path, Stdio::piped());
        let pid = tracer.id();
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
        let status = tracer.stop();
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

/// Debian's logrotate, with the configuration the package ships
/// (packaging/ftptrace.logrotate: `create`, compressed but the newest, a
/// SIGHUP in `postrotate`), rotates `--output` five times while 400
/// sessions run: see [`RotatedRun`].
#[test]
fn logrotate_rotates_under_load_and_no_line_is_lost() {
    tests::root_test("logrotate_rotates_under_load_and_no_line_is_lost", || {
        rotate_with_logrotate("packaging/ftptrace.logrotate", 5, ROTATED_SESSIONS);
    });
}

/// The same with `copytruncate` (examples/logrotate/ftptrace-copytruncate),
/// twelve times while 1200 sessions run: ftptrace holds its writes from the
/// prerotate's SIGUSR2 to the postrotate's SIGHUP, so no line falls between
/// logrotate's copy and its truncation. (Without the prerotate, every run
/// of this test lost lines there: 1195 to 1199 of the 1200 sessions found.)
#[test]
fn logrotate_copytruncate_under_load_loses_no_line() {
    tests::root_test("logrotate_copytruncate_under_load_loses_no_line", || {
        rotate_with_logrotate("examples/logrotate/ftptrace-copytruncate", 12, 1200);
    });
}

/// Debian's logrotate with `config` (a file of the repository, its path the
/// test's) rotates `--output` `rotations` times while `sessions` sessions
/// run: see [`RotatedRun`].
fn rotate_with_logrotate(config: &str, rotations: usize, sessions: usize) {
    let run = RotatedRun::start(&[], sessions);
    let local = run.dir.path().join("logrotate.conf");
    let shipped = std::fs::read_to_string(tests::workspace_root().join(config))
        .unwrap_or_else(|e| panic!("{config}: {e}"));
    assert!(shipped.contains("/var/log/ftptrace/ftptrace.jsonl {"));
    // Its path the test's; its `pkill -x ftptrace` (there is no systemd
    // here) finds the one tracer the suite runs at a time.
    std::fs::write(
        &local,
        shipped.replace(
            "/var/log/ftptrace/ftptrace.jsonl",
            &run.path.display().to_string(),
        ),
    )
    .expect("write logrotate.conf");
    let state = run.dir.path().join("logrotate.state");
    for rotation in 1..=rotations {
        // Each rotation once the current file has a session: spread over
        // the load, never of an empty file.
        wait_for(
            &format!("a session line before rotation {rotation}"),
            Duration::from_secs(30),
            || match lines_of(&run.path)
                .iter()
                .any(|l| l.contains(r#""type":"session""#))
            {
                true => Ok(()),
                false => Err("none yet".into()),
            },
        );
        let rotated = tests::process::run(
            Command::new("logrotate")
                .arg("--force")
                .arg("--state")
                .arg(&state)
                .arg(&local),
            Duration::from_secs(30),
        );
        assert!(rotated.status.success(), "logrotate: {}", rotated.stderr);
        // A prerotate that gave up waiting for the hold says so.
        assert!(
            !rotated.stderr.contains("did not hold"),
            "logrotate: {}",
            rotated.stderr
        );
    }
    let files = run.finish();
    assert_eq!(files.len(), rotations + 1);
    // Sessions in every file: each rotation happened while sessions were
    // being written.
    let per_file: Vec<usize> = files.iter().map(|f| f.sessions).collect();
    assert!(
        per_file.iter().all(|&n| n > 0),
        "sessions per file, oldest first: {per_file:?}"
    );
}

/// `--output-max-size 128K --output-keep 100` while 400 sessions run: the
/// file rotates by itself, no file grows past the size, and the files hold
/// every line once ([`RotatedRun`]).
#[test]
fn output_max_size_rotates_under_load_and_no_line_is_lost() {
    tests::root_test(
        "output_max_size_rotates_under_load_and_no_line_is_lost",
        || {
            const MAX: u64 = 128 << 10;
            let run = RotatedRun::start(
                &["--output-max-size", "128K", "--output-keep", "100"],
                ROTATED_SESSIONS,
            );
            let files = run.finish();
            assert!(files.len() >= 4, "{} files", files.len());
            for file in &files {
                assert!(
                    file.bytes <= MAX,
                    "{} has {} bytes",
                    file.path.display(),
                    file.bytes
                );
            }
        },
    );
}

/// A tracer writing to `--output` while `sessions` sessions run.
struct RotatedRun {
    sessions: usize,
    net: NsPair,
    _ftp: Vsftpd,
    dir: TempDir,
    path: std::path::PathBuf,
    tracer: FileTracer,
    before: Counters,
    load: Scenario,
}

const ROTATED_SESSIONS: usize = 400;

impl RotatedRun {
    fn start(args: &[&str], sessions: usize) -> Self {
        let net = NsPair::new();
        let ftp = Vsftpd::start(
            &net.server,
            VsftpdConfig::new(Listen::V4(SERVER_V4))
                .with_file("file", 16 << 10)
                .with("max_per_ip", "0")
                .with("max_clients", "0"),
        );
        let _ = ftp.expected("file");
        let dir = TempDir::new("rotated");
        let path = dir.path().join("ftptrace.jsonl");
        let stderr = std::fs::File::create(dir.path().join("stderr")).expect("stderr file");
        let before = Counters::read(&net.server);
        let tracer = FileTracer::start(&[NO_PASSIVE_RANGE_ARGS, args].concat(), &path, stderr);
        let load = Scenario::start(&net.client, "many", SERVER_V4, Some(&sessions.to_string()));
        Self {
            sessions,
            net,
            _ftp: ftp,
            dir,
            path,
            tracer,
            before,
            load,
        }
    }

    /// Ends the load and the run, and checks the files, oldest first
    /// (`PATH.<n>` ... `PATH.1`, `PATH`, which it returns): one start line,
    /// first; the final stats, last; every session once; every line whole
    /// and valid; every event line the final stats count; and, the truth
    /// being the server's kernel, each connection it accepted
    /// (`Tcp.PassiveOpens`) one control or data connection of a session.
    /// (Not one `LISTEN -> SYN_RECV` line each: a kernel that does a
    /// handshake's work on top of a task where it runs no BPF program shows
    /// no event for it, and a run this long meets that now and then.)
    fn finish(mut self) -> Vec<Written> {
        assert_eq!(self.load.finish(), self.sessions.to_string());
        // Listed anew at each look: a rotation renumbers them.
        let files = || {
            let mut files: Vec<_> = (1..)
                .map(|n| self.dir.path().join(format!("ftptrace.jsonl.{n}")))
                .take_while(|f| f.exists() || gzipped(f).exists())
                .collect();
            files.reverse();
            files.push(self.path.clone());
            files
        };
        let all_lines = || {
            files()
                .iter()
                .flat_map(|f| rotated_lines_of(f))
                .collect::<Vec<_>>()
        };
        // The connections over; the stop writes what is still open.
        self.net.wait_quiet();
        let status = self.tracer.stop();
        let errors = std::fs::read_to_string(self.dir.path().join("stderr")).unwrap_or_default();
        assert!(
            status.is_some_and(|s| s.success()),
            "the run did not end cleanly: {status:?}: {errors}"
        );
        let accepted = self
            .before
            .delta(&Counters::read(&self.net.server))
            .get("Tcp.PassiveOpens");
        let lines = all_lines();
        let values: Vec<serde_json::Value> = lines
            .iter()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("a torn line ({e}): {l}")))
            .collect();
        tests::schema::assert_valid("the rotated files", lines.iter().map(String::as_str));
        let of_type = |t: &'static str| values.iter().filter(move |v| v["type"] == t);
        assert_eq!(of_type("start").count(), 1);
        assert_eq!(values[0]["type"], "start", "{}", lines[0]);
        let last = values.last().expect("lines");
        assert_eq!(
            (&last["type"], &last["final"]),
            (&"stats".into(), &true.into())
        );
        let sessions: Vec<_> = of_type("session").collect();
        let ids: std::collections::BTreeSet<_> = sessions
            .iter()
            .map(|s| s["id"].as_str().unwrap_or_default())
            .collect();
        assert_eq!((sessions.len(), ids.len()), (self.sessions, self.sessions));
        let connections: i64 = sessions
            .iter()
            .map(|s| 1 + s["data"].as_array().map_or(0, Vec::len) as i64)
            .sum();
        // Every event line the run says it wrote is in the files: none
        // lost to a rotation.
        let events = of_type("event").count() as u64;
        assert_eq!(
            Some(events),
            last["events"].as_u64(),
            "event lines vs the final stats"
        );
        assert_eq!(
            connections, accepted,
            "connections in the sessions vs the server's Tcp.PassiveOpens"
        );
        files()
            .into_iter()
            .map(|path| Written {
                bytes: std::fs::metadata(&path).map_or(0, |m| m.len()),
                sessions: rotated_lines_of(&path)
                    .iter()
                    .filter(|l| l.contains(r#""type":"session""#))
                    .count(),
                path,
            })
            .collect()
    }
}

/// `path.gz`.
fn gzipped(path: &Path) -> std::path::PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".gz");
    name.into()
}

/// The lines of `path`, or of `path.gz` (logrotate's `compress`); none
/// when neither is there (a rotation renumbered them meanwhile).
fn rotated_lines_of(path: &Path) -> Vec<String> {
    if path.exists() {
        return lines_of(path);
    }
    if !gzipped(path).exists() {
        return Vec::new();
    }
    let unzipped = tests::process::run(
        Command::new("gzip").arg("-dc").arg(gzipped(path)),
        Duration::from_secs(30),
    );
    assert!(unzipped.status.success(), "gzip -dc: {}", unzipped.stderr);
    unzipped.stdout.lines().map(str::to_owned).collect()
}

/// One file a [`RotatedRun`] wrote.
struct Written {
    path: std::path::PathBuf,
    bytes: u64,
    sessions: usize,
}

/// A tmpfs of 1 MiB holds `--output`; a filler takes the rest, FTP sessions
/// run: stderr says once that the file refuses lines, the run goes on,
/// and once the filler is gone the file takes lines again. No line in the
/// file is torn, and what it lacks is counted: the final stats' `unwritten`
/// (also on stderr) at least covers the accepted connections (the server's
/// `Tcp.PassiveOpens`) whose first event the file does not hold.
#[test]
fn a_full_disk_is_one_error_counted_and_the_run_goes_on() {
    tests::root_test(
        "a_full_disk_is_one_error_counted_and_the_run_goes_on",
        || {
            let net = NsPair::new();
            let ftp = Vsftpd::start(&net.server, VsftpdConfig::new(Listen::V4(SERVER_V4)));
            let dir = TempDir::new("full-disk");
            let disk = Tmpfs::mount(&dir.subdir("disk"), "1m");
            let path = disk.0.join("ftptrace.jsonl");
            let errors = dir.path().join("stderr");
            let before = Counters::read(&net.server);
            let mut tracer = FileTracer::start(
                DEFAULT_ARGS,
                &path,
                std::fs::File::create(&errors).expect("stderr file"),
            );
            let filler = disk.0.join("filler");
            fill(&filler);
            let stderr = || std::fs::read_to_string(&errors).unwrap_or_default();
            let mut downloads = 0;
            wait_for(
                "the output file's refusal on stderr",
                Duration::from_secs(60),
                || {
                    Curl::new(ftp_url(SERVER_V4, 21, "file"))
                        .run(&net.client)
                        .assert_downloaded(&ftp.expected("file"));
                    downloads += 1;
                    if stderr().contains("error: cannot write output file") {
                        Ok(())
                    } else {
                        Err(format!("{downloads} downloads, stderr: {}", stderr()))
                    }
                },
            );
            // A nearly full disk may take a small batch now and then: the
            // file takes lines again for sure once the filler is gone.
            let sessions_in_file = || {
                lines_of(&path)
                    .iter()
                    .filter(|l| l.contains(r#""type":"session""#))
                    .count()
            };
            std::fs::remove_file(&filler).expect("remove the filler");
            let before_room = sessions_in_file();
            wait_for(
                "a session line once the disk has room",
                Duration::from_secs(60),
                || {
                    Curl::new(ftp_url(SERVER_V4, 21, "file"))
                        .run(&net.client)
                        .assert_downloaded(&ftp.expected("file"));
                    if sessions_in_file() > before_room {
                        Ok(())
                    } else {
                        Err(format!("stderr: {}", stderr()))
                    }
                },
            );
            assert!(
                stderr().contains("output file writable again"),
                "{}",
                stderr()
            );
            let status = tracer.stop();
            let stderr = stderr();
            assert!(
                status.is_some_and(|s| s.success()),
                "the run did not end cleanly: {status:?}: {stderr}"
            );
            let accepted = before
                .delta(&Counters::read(&net.server))
                .get("Tcp.PassiveOpens");
            let refusals: Vec<&str> = stderr
                .lines()
                .filter(|l| l.contains("error: cannot write output file"))
                .collect();
            assert_eq!(refusals.len(), 1, "{stderr}");
            assert!(refusals[0].contains("No space left on device"), "{stderr}");
            let lines = lines_of(&path);
            tests::schema::assert_valid("the output file", lines.iter().map(String::as_str));
            let values: Vec<serde_json::Value> = lines
                .iter()
                .map(|l| {
                    serde_json::from_str(l).unwrap_or_else(|e| panic!("a torn line ({e}): {l}"))
                })
                .collect();
            let last = values.last().expect("lines");
            assert_eq!(
                (&last["type"], &last["final"]),
                (&"stats".into(), &true.into())
            );
            let unwritten = last["unwritten"].as_i64().expect("unwritten");
            assert!(
                stderr.contains(&format!("warning: {unwritten} lines could not be written")),
                "{stderr}"
            );
            let accepts = values
                .iter()
                .filter(|e| {
                    e["type"] == "event"
                        && e["side"] == "server"
                        && e["old_state"] == "LISTEN"
                        && e["new_state"] == "SYN_RECV"
                })
                .count() as i64;
            assert!(
                accepts < accepted && accepts + unwritten >= accepted,
                "{accepts} accepts in the file, {unwritten} lines unwritten, Tcp.PassiveOpens \
             {accepted}"
            );
            assert!(
                values.iter().any(|v| v["type"] == "session"),
                "no session written after the disk had room again"
            );
        },
    );
}

/// A tmpfs mounted for one test, unmounted on drop.
struct Tmpfs(std::path::PathBuf);

impl Tmpfs {
    #[track_caller]
    fn mount(at: &Path, size: &str) -> Self {
        let mounted = tests::process::run(
            Command::new("mount")
                .args(["-t", "tmpfs", "-o"])
                .arg(format!("size={size},mode=0755"))
                .arg("ftptrace-test")
                .arg(at),
            Duration::from_secs(10),
        );
        assert!(mounted.status.success(), "mount: {}", mounted.stderr);
        Self(at.to_owned())
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("--lazy").arg(&self.0).status();
    }
}

/// Writes `path` until its file system is full.
fn fill(path: &Path) {
    use std::io::Write as _;
    let mut file = std::fs::File::create(path).expect("create the filler");
    let chunk = vec![0u8; 4096];
    for _ in 0..(1 << 20) {
        if file.write_all(&chunk).is_err() {
            return;
        }
    }
    panic!("{} never filled its file system", path.display());
}

/// The handlers are installed before the start line: SIGINT the moment it
/// appears ends the run as SIGTERM would, with final stats.
#[test]
fn a_signal_right_after_the_start_line_ends_the_run_cleanly() {
    tests::root_test(
        "a_signal_right_after_the_start_line_ends_the_run_cleanly",
        || {
            for sig in [libc::SIGINT, libc::SIGHUP, libc::SIGTERM] {
                let mut child = KillOnDrop(
                    Command::new(binary())
                        .args(DEFAULT_ARGS)
                        .stdout(Stdio::piped())
                        .stderr(Stdio::null())
                        .spawn()
                        .expect("start the tracer"),
                );
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

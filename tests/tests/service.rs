//! The service (issue 15): `Type=notify` readiness on a real notify socket,
//! sent once every program is attached, and the unit's confinement:
//! systemd's own checks of packaging/ftptrace.service, and ftptrace run
//! with exactly the unit's capabilities.

use std::{
    os::unix::net::UnixDatagram,
    process::{Command, Stdio},
    time::Duration,
};

use tests::{
    deadline::Deadline,
    process::{KillOnDrop, run, wait_until},
    tmp::TempDir,
    tracer::{DEFAULT_ARGS, START_TIMEOUT, STOP_TIMEOUT, binary},
    workspace_root,
};

/// A notify socket as systemd makes one (a datagram socket at a path in
/// `NOTIFY_SOCKET`): `READY=1` comes once the start line, which lists
/// every probe attached, is in `--output`; `STOPPING=1` after SIGTERM,
/// then the final stats.
#[test]
fn type_notify_is_ready_once_every_program_is_attached() {
    tests::root_test(
        "type_notify_is_ready_once_every_program_is_attached",
        || {
            let dir = TempDir::new("notify");
            let socket_path = dir.path().join("notify");
            let manager = UnixDatagram::bind(&socket_path).expect("bind the notify socket");
            manager
                .set_read_timeout(Some(START_TIMEOUT))
                .expect("a read timeout");
            let output = dir.path().join("ftptrace.jsonl");
            let mut child = KillOnDrop(
                Command::new(binary())
                    .args(DEFAULT_ARGS)
                    .arg("--output")
                    .arg(&output)
                    .env("NOTIFY_SOCKET", &socket_path)
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .spawn()
                    .expect("start the tracer"),
            );
            let receive = || {
                let mut buffer = [0; 512];
                let n = manager
                    .recv(&mut buffer)
                    .unwrap_or_else(|e| panic!("no notification: {e}"));
                String::from_utf8_lossy(&buffer[..n]).into_owned()
            };
            let ready = receive();
            // Read at once: the start line must already be there, whole.
            let first = std::fs::read_to_string(&output)
                .unwrap_or_default()
                .lines()
                .next()
                .map(str::to_owned)
                .unwrap_or_default();
            assert!(
                ready.lines().next() == Some("READY=1") && ready.contains("STATUS=tracing FTP"),
                "{ready:?}"
            );
            let start: serde_json::Value = serde_json::from_str(&first)
                .unwrap_or_else(|e| panic!("no whole start line when READY=1 came ({e}): {first}"));
            assert_eq!(start["type"], "start", "{first}");
            let probes = start["probes"].as_array().expect("probes");
            assert!(
                !probes.is_empty() && probes.iter().all(|p| p["attached"] == true),
                "{first}"
            );
            // SAFETY: kill(2) on our own child, not yet reaped.
            unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
            let stopping = receive();
            assert!(stopping.starts_with("STOPPING=1"), "{stopping:?}");
            let status = wait_until(&mut child, Deadline::after(STOP_TIMEOUT));
            assert!(status.is_some_and(|s| s.success()), "{status:?}");
            let text = std::fs::read_to_string(&output).unwrap_or_default();
            let last = text.lines().last().unwrap_or_default();
            assert!(last.contains(r#""final":true"#), "{last}");
        },
    );
}

/// The capabilities the unit grants, as `setpriv` names them.
fn unit_capabilities() -> Vec<String> {
    let unit = std::fs::read_to_string(workspace_root().join("packaging/ftptrace.service"))
        .expect("packaging/ftptrace.service");
    let line = unit
        .lines()
        .find_map(|l| l.strip_prefix("CapabilityBoundingSet="))
        .expect("a CapabilityBoundingSet");
    line.split_whitespace()
        .map(|cap| {
            cap.strip_prefix("CAP_")
                .unwrap_or_else(|| panic!("{cap} is not a capability"))
                .to_ascii_lowercase()
        })
        .collect()
}

/// With exactly the unit's capabilities (its CapabilityBoundingSet, and
/// NoNewPrivileges), `ftptrace check` finds nothing missing and attaches
/// every probe on the hook an unconfined root run uses.
#[test]
fn the_units_capabilities_are_all_ftptrace_needs() {
    tests::root_test("the_units_capabilities_are_all_ftptrace_needs", || {
        let check = |confined: bool| {
            let mut command = if confined {
                let mut setpriv = Command::new("setpriv");
                setpriv
                    .arg(format!(
                        "--bounding-set=-all,{}",
                        unit_capabilities()
                            .iter()
                            .map(|c| format!("+{c}"))
                            .collect::<Vec<_>>()
                            .join(",")
                    ))
                    .args(["--inh-caps=-all", "--no-new-privs"])
                    .arg(binary());
                setpriv
            } else {
                Command::new(binary())
            };
            let done = run(
                command.args(["check", "--format", "json"]),
                Duration::from_secs(120),
            );
            assert!(
                done.status.success(),
                "check (confined: {confined}): {done:?}"
            );
            let report: serde_json::Value = serde_json::from_str(done.stdout.trim())
                .unwrap_or_else(|e| panic!("check's JSON: {e}: {}", done.stdout));
            report
        };
        let confined = check(true);
        let privileges = &confined["privileges"];
        assert_eq!(privileges["ok"], true, "{privileges}");
        let detail = privileges["detail"].as_str().unwrap_or_default();
        assert!(!detail.contains("without"), "{detail}");
        let hooks = |report: &serde_json::Value| {
            report["probes"]
                .as_array()
                .expect("probes")
                .iter()
                .map(|p| {
                    (
                        p["name"].to_string(),
                        p["hook"].to_string(),
                        p["attached"] == true,
                    )
                })
                .collect::<Vec<_>>()
        };
        assert_eq!(hooks(&confined), hooks(&check(false)));
        assert!(hooks(&confined).iter().all(|(_, _, attached)| *attached));
    });
}

/// systemd's own checks of the unit: `systemd-analyze verify` (syntax,
/// directives, the binary), and `systemd-analyze security` rates its
/// confinement "OK" or better (an exposure below 5.0 of 10).
#[test]
fn systemd_verifies_the_unit_and_rates_it_confined() {
    if !tests::root_or_skip("systemd_verifies_the_unit_and_rates_it_confined") {
        return;
    }
    let dir = TempDir::new("unit");
    let unit = std::fs::read_to_string(workspace_root().join("packaging/ftptrace.service"))
        .expect("packaging/ftptrace.service");
    assert!(unit.contains("ExecStart=/usr/bin/ftptrace "), "{unit}");
    // The binary under test stands in for the package's.
    let path = dir.path().join("ftptrace.service");
    std::fs::write(
        &path,
        unit.replace("/usr/bin/ftptrace", &binary().display().to_string()),
    )
    .expect("write the unit");
    let verify = run(
        Command::new("systemd-analyze")
            .args(["verify", "--man=no"])
            .arg(&path),
        Duration::from_secs(60),
    );
    assert!(
        verify.status.success() && verify.stderr.trim().is_empty(),
        "{verify:?}"
    );
    let security = run(
        Command::new("systemd-analyze")
            .args(["security", "--offline=true", "--no-pager"])
            .arg(&path),
        Duration::from_secs(60),
    );
    let text = format!("{}{}", security.stdout, security.stderr);
    let exposure: f64 = text
        .lines()
        .find_map(|l| {
            l.split("Overall exposure level for ftptrace.service: ")
                .nth(1)
        })
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no exposure level: {text}"));
    assert!(exposure < 5.0, "exposure {exposure}:\n{text}");
}

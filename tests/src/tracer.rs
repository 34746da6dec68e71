//! The tracer under test: `ftptrace trace --format json` as a child process,
//! its JSON lines parsed strictly (an unknown field is schema drift and fails
//! the test), and the end-of-run contract checked on every stop.

use std::{
    collections::BTreeMap,
    io::{BufRead, BufReader},
    path::PathBuf,
    process::{Child, Command, Stdio},
    sync::mpsc::{self, RecvTimeoutError},
    thread,
    time::Duration,
};

use serde::Deserialize;
use serde_json::{Map, Value};

use crate::{
    deadline::Deadline,
    netns::NetNs,
    process::{Collector, describe, kill_and_reap, read_in_background, wait_until},
    tmp::TempDir,
};

/// The arguments every test uses unless it says otherwise.
/// The tracer as an operator without `--passive-ports` runs it: data
/// connections are found through the control channel's announcements.
pub const NO_PASSIVE_RANGE_ARGS: &[&str] = &["trace", "--format", "json", "--ports", "21,2121"];

pub const DEFAULT_ARGS: &[&str] = &[
    "trace",
    "--format",
    "json",
    "--ports",
    "21,2121",
    "--passive-ports",
    "30000-30009",
];

/// From spawn to the `start` line (loading and attaching every program).
pub const START_TIMEOUT: Duration = Duration::from_secs(60);
/// From SIGTERM to exit (detach, drain, final stats).
pub const STOP_TIMEOUT: Duration = Duration::from_secs(20);

/// `$FTPTRACE_BIN`, else `<workspace>/target/release/ftptrace`.
pub fn binary() -> PathBuf {
    std::env::var_os("FTPTRACE_BIN").map_or_else(
        || crate::workspace_root().join("target/release/ftptrace"),
        PathBuf::from,
    )
}

/// The `start` line.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Start {
    pub ts: String,
    pub version: String,
    pub kernel: String,
    pub ports: Ports,
    pub probes: Vec<Probe>,
}

impl Start {
    /// Whether the running kernel (`kernel`, e.g. `6.18.44-fc`) is at least
    /// `major.minor`; panics on a release it cannot read.
    #[track_caller]
    pub fn kernel_at_least(&self, major: u32, minor: u32) -> bool {
        let mut parts = self
            .kernel
            .split(|c: char| !c.is_ascii_digit())
            .map(str::parse::<u32>);
        match (parts.next(), parts.next()) {
            (Some(Ok(a)), Some(Ok(b))) => (a, b) >= (major, minor),
            _ => panic!("unreadable kernel release {:?}", self.kernel),
        }
    }
}

#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Ports {
    pub control: Vec<u16>,
    pub active_data: u16,
    pub passive: Option<[u16; 2]>,
}

#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Probe {
    pub name: String,
    pub hook: String,
    #[serde(default)]
    pub target: Option<String>,
    pub attached: bool,
    #[serde(default)]
    pub reason: Option<String>,
    #[serde(default)]
    pub fell_back: Vec<String>,
}

/// The variable that forces every hook ladder onto one tier (the tracer
/// reads it; it reaches the tracer because children inherit the environment).
pub const FORCE_HOOK_ENV: &str = "FTPTRACE_FORCE_HOOK";

/// The tier the suite runs under, when `cargo xtask vm` forces one.
pub fn forced_tier() -> Option<String> {
    std::env::var(FORCE_HOOK_ENV).ok().filter(|t| !t.is_empty())
}

/// The probes with a hook ladder, and the hook each must report under a
/// forced tier: a test passing under a tier must have run on that tier.
pub fn expected_ladder_hook(probe: &str, tier: &str) -> Option<(&'static str, &'static str)> {
    let target = match (probe, tier) {
        ("socket_error", "raw_tracepoint") => ("raw_tracepoint", "sock:inet_sk_error_report"),
        ("socket_error", "fentry") => ("fentry", "sock_def_error_report"),
        ("socket_error", "kprobe") => ("kprobe", "sock_def_error_report"),
        ("socket_error", "fallback") => (
            "raw_tracepoint",
            "sock:inet_sock_set_state (sk_err at CLOSE)",
        ),
        ("keepalive_probe" | "zero_window_probe", "fentry") => ("fentry", "tcp_xmit_probe_skb"),
        ("keepalive_probe" | "zero_window_probe", "kprobe") => ("kprobe", "tcp_xmit_probe_skb"),
        ("keepalive_probe" | "zero_window_probe", "fallback") => {
            ("timer", "timer:timer_expire_entry/exit (socket timers)")
        }
        _ => return None,
    };
    Some(target)
}

/// A `stats` line.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Stats {
    pub ts: String,
    pub events: u64,
    pub lost: u64,
    pub missed: u64,
    pub undecodable: u64,
    pub unreadable: u64,
    pub throttled: u64,
    pub sockets: u64,
    pub sessions: u64,
    pub sessions_open: u64,
    pub sessions_evicted: u64,
    pub dropped: Dropped,
    pub handshakes: Vec<Handshakes>,
    pub tls_handshakes: u64,
    pub tls_handshakes_peak_per_s: u64,
    pub unwritten: u64,
    #[serde(rename = "final")]
    pub is_final: bool,
}

/// One server's handshake health in a stats line.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Handshakes {
    pub server: String,
    pub control: u64,
    pub control_retried: u64,
    pub data: u64,
    pub data_retried: u64,
}

/// A `pattern` line: a finding across sessions.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Pattern {
    pub ts: String,
    pub pattern: String,
    pub client: Addr,
    /// `dns_flip`: the name.
    #[serde(default)]
    pub name: Option<String>,
    pub cause: String,
    /// `dns_flip`: each session's cause.
    #[serde(default)]
    pub causes: Option<Vec<String>>,
    pub sessions: u64,
    pub window_s: u64,
    pub first: String,
    pub last: String,
    pub servers: Vec<String>,
    pub session_ids: Vec<String>,
    pub evidence: String,
}

/// An address alone.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Addr {
    pub addr: String,
}

/// What the tracer's capped tables left out.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Dropped {
    pub expectations: u64,
    pub marks: u64,
    pub pending: u64,
    pub orphans: u64,
    pub parsers: u64,
    pub sockets: u64,
    pub patterns: u64,
    pub handshakes: u64,
    pub dns_names: u64,
    pub held: u64,
}

#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Side {
    Server,
    Client,
}

/// The fields every event has.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
struct Common {
    ts: String,
    side: Side,
    local_addr: String,
    local_port: u16,
    remote_addr: String,
    remote_port: u16,
    netns: Option<u64>,
    pid: Option<u32>,
    comm: Option<String>,
    socket: Option<u64>,
    cpu: u32,
    session: Option<String>,
    conn: Option<String>,
    community_id: Option<String>,
}

const COMMON_FIELDS: &[&str] = &[
    "community_id",
    "ts",
    "side",
    "local_addr",
    "local_port",
    "remote_addr",
    "remote_port",
    "netns",
    "pid",
    "comm",
    "socket",
    "cpu",
    "session",
    "conn",
];

/// What happened, with the fields of that kind.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Kind {
    State {
        old_state: String,
        new_state: String,
    },
    Retransmit {
        state: String,
        syn: bool,
        errno: Option<String>,
        /// Segments in the retransmitted skb (SACK merges segments).
        segs: Option<u32>,
    },
    ResetSent {
        reason: Option<String>,
        state: Option<String>,
    },
    ResetReceived {
        state: String,
    },
    SocketError {
        errno: String,
        code: i32,
    },
    Destroy {
        /// The socket's own counts as it was freed (null where unknown).
        total_retrans: Option<u32>,
        dsack_dups: Option<u32>,
    },
    KeepaliveProbe {
        probes_out: u8,
    },
    ZeroWindowProbe {
        probes_out: u8,
    },
    Drop {
        reason: Option<String>,
        direction: String,
        tcp_flags: String,
        location: Option<String>,
    },
    /// An end's TLS library judged its peer's certificate.
    TlsVerify {
        library: String,
        passed: bool,
        code: u32,
        reasons: Vec<String>,
    },
    /// This end's TLS library recorded why a call failed.
    TlsError {
        library: String,
        code: u32,
        alert_received: Option<String>,
        reason: Option<String>,
    },
    /// This end's TLS library sent an alert.
    TlsAlert {
        library: String,
        sent: bool,
        level: Option<String>,
        code: u8,
        alert: Option<String>,
    },
    /// A TLS handshake on an FTP connection ended at this end.
    TlsHandshake {
        library: String,
        done: bool,
        code: i32,
        reason: Option<String>,
    },
    /// A line of the control channel; every field is always there.
    Ftp {
        /// The peer that said it.
        from: Side,
        command: Option<String>,
        arg: Option<String>,
        reply: Option<u16>,
        text: Option<String>,
        data_endpoint: Option<DataEndpoint>,
        encrypted: bool,
    },
}

/// Where an `ftp` line says the next data connection goes.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct DataEndpoint {
    pub addr: Option<String>,
    pub port: u16,
}

/// One `event` line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Event {
    pub ts: String,
    pub kind: Kind,
    pub side: Side,
    /// As printed: IPv4 dotted, IPv6 compressed, IPv4-mapped written as IPv4.
    pub local_addr: String,
    pub local_port: u16,
    pub remote_addr: String,
    pub remote_port: u16,
    pub netns: Option<u64>,
    pub pid: Option<u32>,
    pub comm: Option<String>,
    pub socket: Option<u64>,
    pub cpu: u32,
    /// The FTP session and connection (`control`, `data:N`) once known.
    pub session: Option<String>,
    pub conn: Option<String>,
    /// The connection's Community ID (null while a port is 0).
    pub community_id: Option<String>,
    /// The JSON line itself, for failure messages.
    pub line: String,
}

impl Event {
    /// A `state` event from `old` to `new`.
    pub fn is_transition(&self, old: &str, new: &str) -> bool {
        matches!(&self.kind, Kind::State { old_state, new_state } if old_state == old && new_state == new)
    }

    /// Either end uses `port`.
    pub fn has_port(&self, port: u16) -> bool {
        self.local_port == port || self.remote_port == port
    }
}

/// One line of output.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Line {
    Start(Start),
    Event(Box<Event>),
    Session(Box<Session>),
    Pattern(Box<Pattern>),
    Stats(Stats),
    Summary(Summary),
}

/// A `summary` line (SIGUSR1).
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Summary {
    pub ts: String,
    pub sessions: u64,
    pub sessions_open: u64,
    pub by_cause: BTreeMap<String, u64>,
    pub failing_clients: Vec<FailingClient>,
    pub failing_clients_dropped: u64,
}

#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct FailingClient {
    pub addr: String,
    pub sessions: u64,
}

/// A `session` line: one FTP session, its timeline and its cause.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Session {
    pub ts: String,
    pub id: String,
    pub community_id: String,
    pub start: String,
    pub end: String,
    pub state: String,
    pub seeded: bool,
    pub unknown: Vec<String>,
    #[serde(default)]
    pub evicted: Option<String>,
    pub client: Endpoint,
    pub server: Endpoint,
    #[serde(default)]
    pub server_name: Option<String>,
    pub seen_from: Vec<Side>,
    pub user: Option<User>,
    pub commands: Vec<String>,
    pub replies: Vec<String>,
    pub encrypted: bool,
    pub control: Conn,
    pub data: Vec<Conn>,
    pub data_omitted: u64,
    pub data_unlinked: u64,
    pub timeline: Vec<TimelineEntry>,
    pub timeline_omitted: u64,
    pub cause: Option<String>,
    pub cause_conn: Option<String>,
    pub evidence: Vec<String>,
}

#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct User {
    pub name: String,
}

#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Endpoint {
    pub addr: String,
    pub port: u16,
}

/// A connection of a session.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Conn {
    pub conn: String,
    pub community_id: String,
    pub client: Endpoint,
    pub server: Endpoint,
    pub start: String,
    pub end: String,
    pub close: String,
    pub closed_by: String,
    #[serde(default)]
    pub linked_by: Option<String>,
    pub established: bool,
    pub retransmits: u32,
    pub syn_retransmits: u32,
    pub seen_from: Vec<Side>,
    /// Through a NAT on this host: the connection as the server sees it.
    #[serde(default)]
    pub behind_nat: Option<NatView>,
    #[serde(default)]
    pub tls_handshake_us: Option<u64>,
    #[serde(default)]
    pub tls_handshake_failed: Option<String>,
}

#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct NatView {
    pub community_id: String,
    pub client: Endpoint,
    pub server: Endpoint,
}

#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct TimelineEntry {
    pub ts: String,
    pub offset_ms: u64,
    pub conn: String,
    pub side: Side,
    pub what: String,
}

impl Session {
    /// The name the client logged in with.
    pub fn user_name(&self) -> Option<&str> {
        self.user.as_ref().map(|u| u.name.as_str())
    }

    /// The timeline, one entry per line, for failure messages.
    pub fn timeline_text(&self) -> String {
        self.timeline
            .iter()
            .map(|e| {
                format!(
                    "\n    +{} ms {} {:?}: {}",
                    e.offset_ms, e.conn, e.side, e.what
                )
            })
            .collect()
    }

    /// The one-line summary failure messages show.
    pub fn brief(&self) -> String {
        let conns: Vec<String> = std::iter::once(&self.control)
            .chain(&self.data)
            .map(|c| {
                format!(
                    "{} {}:{}->{}:{} {}/{}",
                    c.conn,
                    c.client.addr,
                    c.client.port,
                    c.server.addr,
                    c.server.port,
                    c.close,
                    c.closed_by
                )
            })
            .collect();
        format!(
            "session {} {} cause {:?} on {:?} [{}] evidence {:?}",
            self.id,
            self.state,
            self.cause,
            self.cause_conn,
            conns.join(", "),
            self.evidence
        )
    }
}

/// The JSON lines contract's version the suite reads.
pub const SCHEMA: u64 = 2;

/// Takes every line's `schema`, `host` and `run` out of `map`, and checks
/// them: this schema, a host name, a run id of 32 hex digits.
fn envelope(map: &mut Map<String, Value>) -> Result<(), String> {
    let schema = map.remove("schema").and_then(|v| v.as_u64());
    if schema != Some(SCHEMA) {
        return Err(format!("schema {schema:?}, not {SCHEMA}"));
    }
    let host = map.remove("host");
    let named = host
        .as_ref()
        .and_then(|h| h.as_object())
        .filter(|h| h.len() == 1)
        .and_then(|h| h.get("name"))
        .and_then(Value::as_str)
        .is_some_and(|name| !name.is_empty());
    if !named {
        return Err(format!("host {host:?} is not {{\"name\": <its name>}}"));
    }
    let run = map.remove("run");
    let run_id = run
        .as_ref()
        .and_then(Value::as_str)
        .is_some_and(|r| r.len() == 32 && r.bytes().all(|b| b.is_ascii_hexdigit()));
    if !run_id {
        return Err(format!("run {run:?} is not 32 hex digits"));
    }
    Ok(())
}

/// Parses one JSON line strictly: unknown types, kinds and fields are errors.
pub fn parse_line(line: &str) -> Result<Line, String> {
    let value: Value = serde_json::from_str(line).map_err(|e| format!("not JSON ({e}): {line}"))?;
    let Value::Object(mut map) = value else {
        return Err(format!("not a JSON object: {line}"));
    };
    let line_type = map
        .remove("type")
        .ok_or_else(|| format!("no \"type\": {line}"))?;
    envelope(&mut map).map_err(|e| format!("{e}: {line}"))?;
    let bad = |e: serde_json::Error| format!("{e}: {line}");
    match line_type.as_str() {
        Some("start") => Ok(Line::Start(
            serde_json::from_value(Value::Object(map)).map_err(bad)?,
        )),
        Some("stats") => Ok(Line::Stats(
            serde_json::from_value(Value::Object(map)).map_err(bad)?,
        )),
        Some("summary") => Ok(Line::Summary(
            serde_json::from_value(Value::Object(map)).map_err(bad)?,
        )),
        Some("session") => Ok(Line::Session(Box::new(
            serde_json::from_value(Value::Object(map)).map_err(bad)?,
        ))),
        Some("pattern") => Ok(Line::Pattern(Box::new(
            serde_json::from_value(Value::Object(map)).map_err(bad)?,
        ))),
        Some("event") => {
            let (common, specific): (Map<String, Value>, Map<String, Value>) = map
                .into_iter()
                .partition(|(key, _)| COMMON_FIELDS.contains(&key.as_str()));
            let common: Common = serde_json::from_value(Value::Object(common)).map_err(bad)?;
            let kind: Kind = serde_json::from_value(Value::Object(specific)).map_err(bad)?;
            Ok(Line::Event(Box::new(Event {
                ts: common.ts,
                kind,
                side: common.side,
                local_addr: common.local_addr,
                local_port: common.local_port,
                remote_addr: common.remote_addr,
                remote_port: common.remote_port,
                netns: common.netns,
                pid: common.pid,
                comm: common.comm,
                socket: common.socket,
                cpu: common.cpu,
                session: common.session,
                conn: common.conn,
                community_id: common.community_id,
                line: line.to_owned(),
            })))
        }
        _ => Err(format!("unknown \"type\" {line_type}: {line}")),
    }
}

/// A running `ftptrace`; killed on drop unless stopped.
pub struct Tracer {
    child: Child,
    command: String,
    lines: mpsc::Receiver<String>,
    stderr: Option<Collector>,
    start_line: String,
    start: Start,
    /// Where the run records its kernel records (`--record`): the replay of
    /// every run must print exactly the lines the run printed.
    recording: Option<(TempDir, PathBuf)>,
    /// Lines read before the stop ([`Tracer::wait_for_line`]).
    read: Vec<String>,
}

/// Keeps each run's recording and lines in this directory, named after the
/// test (`<test>-<n>.rec` and `.jsonl`), to make the root-free tests' data.
pub const KEEP_RECORDINGS_ENV: &str = "FTPTRACE_TEST_KEEP_RECORDINGS";

/// `--ring-buffer-mib` for every `trace` that does not choose its own: the
/// guests use a smaller ring than the default, whose 32 MiB take minutes
/// to map and fault in under software emulation.
pub const RING_BUFFER_ENV: &str = "FTPTRACE_TEST_RING_BUFFER_MIB";

impl Tracer {
    /// [`Tracer::start_with`] with [`DEFAULT_ARGS`].
    #[track_caller]
    pub fn start() -> Self {
        Self::start_with(DEFAULT_ARGS)
    }

    /// Starts `ftptrace args` in the host namespace and waits for its `start`
    /// line, which must come first and list every probe attached. Never a
    /// skip: a tracer that does not start fails the test with its stderr.
    #[track_caller]
    pub fn start_with(args: &[&str]) -> Self {
        Self::start_wrapped(&[], args)
    }

    /// [`Tracer::start_with`], run through `wrapper` (e.g. `setpriv` and its
    /// options), which must exec the tracer in place.
    #[track_caller]
    pub fn start_wrapped(wrapper: &[&str], args: &[&str]) -> Self {
        let binary = binary();
        let mut command = match wrapper.split_first() {
            Some((program, options)) => {
                let mut command = Command::new(program);
                command.args(options).arg(&binary);
                command
            }
            None => Command::new(&binary),
        };
        command.args(args);
        let tracing = args.first() == Some(&"trace");
        if tracing
            && !args.contains(&"--ring-buffer-mib")
            && let Some(mib) = std::env::var_os(RING_BUFFER_ENV)
        {
            command.arg("--ring-buffer-mib").arg(mib);
        }
        let recording = tracing.then(|| {
            let dir = TempDir::new("rec");
            let path = dir.path().join("run.rec");
            command.arg("--record").arg(&path);
            (dir, path)
        });
        let described = describe(&command);
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot start the tracer {described}: {e} \
                     (build it with `cargo build --release -p ftptrace` or set FTPTRACE_BIN)"
                )
            });
        let stderr = read_in_background(child.stderr.take());
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, lines) = mpsc::channel();
        thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let deadline = Deadline::after(START_TIMEOUT);
        let first = match lines.recv_timeout(deadline.remaining()) {
            Ok(line) => line,
            Err(RecvTimeoutError::Disconnected) => {
                let status = wait_until(&mut child, Deadline::after(STOP_TIMEOUT)).map_or_else(
                    || "closed its stdout (killed it)".to_owned(),
                    |s| format!("exited ({s})"),
                );
                let stderr = stderr.collect(Deadline::after(Duration::from_secs(1)));
                panic!("the tracer {described} {status} before its start line; stderr:\n{stderr}");
            }
            Err(RecvTimeoutError::Timeout) => {
                kill_and_reap(&mut child);
                let stderr = stderr.collect(Deadline::after(Duration::from_secs(1)));
                panic!(
                    "the tracer {described} printed nothing within {START_TIMEOUT:?}; killed it; stderr:\n{stderr}"
                );
            }
        };
        let start = match parse_line(&first) {
            Ok(Line::Start(start)) => start,
            other => {
                kill_and_reap(&mut child);
                let stderr = stderr.collect(Deadline::after(Duration::from_secs(1)));
                panic!(
                    "the tracer's first line is not a start line ({other:?}): {first}\nstderr:\n{stderr}"
                );
            }
        };
        // Every probe, but the one the arguments turned off.
        let turned_off =
            |p: &Probe| p.name == "tls_plaintext" && args.contains(&"--no-tls-plaintext");
        let detached: Vec<&Probe> = start
            .probes
            .iter()
            .filter(|p| !p.attached && !turned_off(p))
            .collect();
        if start.probes.is_empty() || !detached.is_empty() {
            kill_and_reap(&mut child);
            panic!("the tracer did not start as the contract says (every probe attached): {first}");
        }
        if let Some(tier) = forced_tier() {
            for probe in &start.probes {
                if let Some((hook, target)) = expected_ladder_hook(&probe.name, &tier)
                    && (probe.hook != hook || probe.target.as_deref() != Some(target))
                {
                    kill_and_reap(&mut child);
                    panic!(
                        "{FORCE_HOOK_ENV}={tier}, yet {} uses {} on {:?}: {first}",
                        probe.name, probe.hook, probe.target
                    );
                }
            }
        }
        Self {
            child,
            command: described,
            lines,
            stderr: Some(stderr),
            start_line: first,
            start,
            recording,
            read: Vec::new(),
        }
    }

    pub fn start_line(&self) -> &Start {
        &self.start
    }

    /// The tracer's pid (a wrapper execs it in place).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends `signal` to the tracer.
    pub fn signal(&self, signal: i32) {
        let pid = i32::try_from(self.child.id()).expect("pid fits i32");
        // SAFETY: kill(2) on our own child, not yet reaped (Drop reaps it).
        unsafe { libc::kill(pid, signal) };
    }

    /// Reads the tracer's lines until `wanted` takes one, for at most
    /// `timeout`; the lines read stay part of the run ([`Tracer::stop`]).
    #[track_caller]
    pub fn wait_for_line(
        &mut self,
        what: &str,
        timeout: Duration,
        mut wanted: impl FnMut(&str) -> bool,
    ) {
        let deadline = Deadline::after(timeout);
        loop {
            match self.lines.recv_timeout(deadline.remaining()) {
                Ok(line) => {
                    let found = wanted(&line);
                    self.read.push(line);
                    if found {
                        return;
                    }
                }
                Err(_) => panic!(
                    "no {what} within {timeout:?}; lines so far:\n{}",
                    self.read.join("\n")
                ),
            }
        }
    }

    /// The tracer's peak resident memory so far (`VmHWM`), in KiB.
    #[track_caller]
    pub fn peak_rss_kib(&self) -> u64 {
        let path = format!("/proc/{}/status", self.child.id());
        let status = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
        status
            .lines()
            .find_map(|line| line.strip_prefix("VmHWM:"))
            .and_then(|kib| kib.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or_else(|| panic!("no VmHWM in {path}"))
    }

    /// SIGTERM, then checks the end-of-run contract: exit 0 within
    /// [`STOP_TIMEOUT`], every line valid, exactly one `start` (the first),
    /// the last line `stats` with `final: true`, `lost: 0`, `missed: 0`, `undecodable: 0`
    /// and `events` equal to the event lines printed.
    #[track_caller]
    pub fn stop(self) -> Trace {
        self.stop_checking(false)
    }

    /// [`Tracer::stop`] for a load test, where the kernel may skip a
    /// program run that an interrupt nested inside the same program on the
    /// same CPU (`missed`, the kernel's own recursion count): allowed, as
    /// long as it is counted. Everything else in the contract holds.
    #[track_caller]
    pub fn stop_counting_misses(self) -> Trace {
        self.stop_checking(true)
    }

    #[track_caller]
    fn stop_checking(mut self, misses_allowed: bool) -> Trace {
        let pid = i32::try_from(self.child.id()).expect("pid fits i32");
        // SAFETY: kill(2) on our own child, not yet reaped (Drop reaps it).
        unsafe { libc::kill(pid, libc::SIGTERM) };
        let deadline = Deadline::after(STOP_TIMEOUT);
        let status = wait_until(&mut self.child, deadline);
        let mut lines = vec![std::mem::take(&mut self.start_line)];
        lines.append(&mut self.read);
        loop {
            match self
                .lines
                .recv_timeout(deadline.remaining().max(Duration::from_millis(100)))
            {
                Ok(line) => lines.push(line),
                Err(RecvTimeoutError::Disconnected) => break,
                Err(RecvTimeoutError::Timeout) => {
                    lines.push("<stdout still open at the deadline>".into());
                    break;
                }
            }
        }
        let stderr = self
            .stderr
            .take()
            .map(|c| c.collect(Deadline::after(Duration::from_secs(1))))
            .unwrap_or_default();
        let tail = || lines[lines.len().saturating_sub(5)..].join("\n");
        let Some(status) = status else {
            panic!(
                "the tracer {} did not exit within {STOP_TIMEOUT:?} of SIGTERM; killed it\nstderr:\n{stderr}\nlast lines:\n{}",
                self.command,
                tail()
            );
        };
        assert!(
            status.success(),
            "the tracer {} exited with {status} after SIGTERM\nstderr:\n{stderr}\nlast lines:\n{}",
            self.command,
            tail()
        );
        let mut events = Vec::new();
        let mut sessions = Vec::new();
        let mut patterns = Vec::new();
        let mut stats = Vec::new();
        let mut summaries = Vec::new();
        let all_lines = lines.clone();
        for line in &all_lines {
            crate::assert_no_secret("stdout", line);
        }
        crate::assert_no_secret("stderr", &stderr);
        // For a person debugging a test: every line the tracer printed.
        if let Some(path) = std::env::var_os("FTPTRACE_TEST_DUMP") {
            let _ = std::fs::write(path, all_lines.join("\n"));
        }
        for (n, line) in lines.iter().enumerate().skip(1) {
            match parse_line(line) {
                Ok(Line::Event(event)) => events.push(*event),
                Ok(Line::Session(session)) => sessions.push(*session),
                Ok(Line::Pattern(pattern)) => patterns.push(*pattern),
                Ok(Line::Stats(s)) => stats.push(s),
                Ok(Line::Summary(s)) => summaries.push(s),
                Ok(Line::Start(_)) => panic!("a second start line (line {}): {line}", n + 1),
                Err(e) => panic!("line {} breaks the contract: {e}\nstderr:\n{stderr}", n + 1),
            }
        }
        // Every line names one host and one run; session ids begin with it.
        let origins: std::collections::BTreeSet<(String, String)> = lines
            .iter()
            .filter_map(|line| serde_json::from_str::<Value>(line).ok())
            .map(|v| (v["host"]["name"].to_string(), v["run"].to_string()))
            .collect();
        assert_eq!(origins.len(), 1, "lines of one run name {origins:?}");
        let run = origins
            .first()
            .map(|(_, run)| run.trim_matches('"').to_owned());
        for session in &sessions {
            assert!(
                run.as_ref()
                    .is_some_and(|r| session.id.starts_with(&format!("{r}-"))),
                "session id {} is not <run>-<n> of run {run:?}",
                session.id
            );
        }
        crate::schema::assert_valid("the tracer's lines", lines.iter().map(String::as_str));
        let last = lines.last().expect("the start line at least");
        match parse_line(last) {
            Ok(Line::Stats(s)) => {
                // The tracer's own account of events it could not see: the
                // counts cannot be compared, and `root_test` may run again.
                if !misses_allowed {
                    crate::blind_spot::note_tracer_loss(s.lost + s.missed);
                }
                assert!(
                    s.is_final
                        && s.lost == 0
                        && (misses_allowed || s.missed == 0)
                        && s.undecodable == 0
                        && s.unreadable == 0,
                    "the last line must be final stats with nothing lost, missed, undecodable or unreadable: {last}\nstderr:\n{stderr}"
                );
                assert_eq!(
                    s.events,
                    events.len() as u64,
                    "final stats count other than the event lines printed: {last}"
                );
            }
            _ => panic!("the last line is not a stats line: {last}\nstderr:\n{stderr}"),
        }
        for s in &stats[..stats.len() - 1] {
            assert!(
                !s.is_final,
                "a final stats line before the last line: {s:?}"
            );
        }
        if let Some((_dir, path)) = &self.recording {
            check_replay(path, &all_lines);
        }
        Trace {
            start: self.start.clone(),
            events,
            sessions,
            patterns,
            stats,
            summaries,
            stderr,
            lines: all_lines,
            recording: self.recording.take(),
        }
    }
}

/// `ftptrace replay` of the run's recording prints exactly the run's lines.
#[track_caller]
fn check_replay(recording: &std::path::Path, lines: &[String]) {
    let replay = crate::process::run(
        Command::new(binary())
            .arg("replay")
            .arg(recording)
            .args(["--format", "json"]),
        Duration::from_secs(60),
    );
    assert!(
        replay.status.success(),
        "ftptrace replay {} failed: {}",
        recording.display(),
        replay.stderr
    );
    let replayed: Vec<&str> = replay.stdout.lines().collect();
    let first_difference = lines
        .iter()
        .zip(&replayed)
        .position(|(live, replayed)| live != replayed);
    if let Some(at) = first_difference {
        panic!(
            "the replay of {} differs from the live run at line {}:\nlive:     {}\nreplayed: {}",
            recording.display(),
            at + 1,
            lines[at],
            replayed[at]
        );
    }
    assert_eq!(
        replayed.len(),
        lines.len(),
        "the replay of {} printed {} lines, the live run {}",
        recording.display(),
        replayed.len(),
        lines.len()
    );
    if let Some(dir) = std::env::var_os(KEEP_RECORDINGS_ENV) {
        let dir = PathBuf::from(dir);
        let test = thread::current()
            .name()
            .unwrap_or("test")
            .replace("::", "-");
        let free = (1..)
            .map(|n| dir.join(format!("{test}-{n}")))
            .find(|stem| !stem.with_extension("rec").exists())
            .expect("an unused name");
        let kept = std::fs::copy(recording, free.with_extension("rec"))
            .and_then(|_| std::fs::write(free.with_extension("jsonl"), lines.join("\n") + "\n"));
        if let Err(e) = kept {
            panic!("cannot keep the recording in {}: {e}", dir.display());
        }
    }
}

impl Drop for Tracer {
    fn drop(&mut self) {
        kill_and_reap(&mut self.child);
    }
}

/// Everything a stopped tracer printed, checked against the contract.
#[derive(Debug)]
pub struct Trace {
    pub start: Start,
    pub events: Vec<Event>,
    pub sessions: Vec<Session>,
    pub patterns: Vec<Pattern>,
    /// Every stats line, the final one last.
    pub stats: Vec<Stats>,
    /// Every summary line (SIGUSR1).
    pub summaries: Vec<Summary>,
    pub stderr: String,
    /// Every line printed on standard output, the start line first.
    pub lines: Vec<String>,
    /// The run's recording (`--record`), while the trace lives.
    recording: Option<(TempDir, PathBuf)>,
}

impl Trace {
    /// Where the run recorded its kernel records (a `trace` run always
    /// does); removed with the trace.
    pub fn recording(&self) -> Option<&std::path::Path> {
        self.recording.as_ref().map(|(_, path)| path.as_path())
    }

    /// Events in `ns` (the tracer sees every namespace).
    pub fn in_netns(&self, ns: &NetNs) -> Vec<&Event> {
        self.events
            .iter()
            .filter(|e| e.netns == Some(ns.inode()))
            .collect()
    }

    /// How many events of each kind and transition, e.g. `state CLOSE->SYN_SENT: 2`.
    pub fn summary(events: &[&Event]) -> String {
        let mut counts = BTreeMap::<String, usize>::new();
        for event in events {
            let key = match &event.kind {
                Kind::State {
                    old_state,
                    new_state,
                } => format!("state {old_state}->{new_state}"),
                Kind::Retransmit { syn, errno, .. } => {
                    format!("retransmit syn={syn} errno={errno:?}")
                }
                Kind::ResetSent { reason, .. } => format!("reset_sent {reason:?}"),
                Kind::ResetReceived { .. } => "reset_received".into(),
                Kind::SocketError { errno, .. } => format!("socket_error {errno}"),
                Kind::Destroy { .. } => "destroy".into(),
                Kind::KeepaliveProbe { .. } => "keepalive_probe".into(),
                Kind::ZeroWindowProbe { .. } => "zero_window_probe".into(),
                Kind::Drop {
                    reason,
                    direction,
                    tcp_flags,
                    location,
                } => format!("drop {direction} {tcp_flags} {reason:?} in {location:?}"),
                Kind::Ftp { .. } => "ftp".into(),
                Kind::TlsVerify { passed, .. } => format!("tls_verify passed={passed}"),
                Kind::TlsHandshake { done, .. } => format!("tls_handshake done={done}"),
                Kind::TlsError { code, .. } => format!("tls_error {code}"),
                Kind::TlsAlert { level, alert, .. } => format!("tls_alert {level:?} {alert:?}"),
            };
            *counts.entry(key).or_default() += 1;
        }
        counts
            .iter()
            .map(|(k, n)| format!("{k}: {n}"))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const START: &str = r#"{"type":"start","schema":2,"host":{"name":"ftp1"},"run":"0123456789abcdef0123456789abcdef","ts":"2026-11-25T02:15:22.259505404Z","version":"0.1.0","kernel":"6.18.44","ports":{"control":[21,2121],"active_data":20,"passive":[30000,30009]},"probes":[{"name":"sock:inet_sock_set_state","hook":"tracepoint","attached":true}]}"#;
    const EVENT: &str = r#"{"type":"event","schema":2,"host":{"name":"ftp1"},"run":"0123456789abcdef0123456789abcdef","ts":"2026-11-25T02:15:22.259505404Z","kind":"socket_error","errno":"ECONNREFUSED","code":111,"side":"client","local_addr":"192.0.2.2","local_port":42212,"remote_addr":"192.0.2.1","remote_port":21,"netns":4026531833,"pid":12781,"comm":"curl","socket":1,"cpu":1,"session":"6a0b1c2d-1","conn":"control","community_id":"1:LQU9qZlK+B5F3KDmev6m5PMibrg="}"#;
    const STATS: &str = r#"{"type":"stats","schema":2,"host":{"name":"ftp1"},"run":"0123456789abcdef0123456789abcdef","ts":"2026-11-25T02:15:22.259505404Z","events":6,"lost":0,"missed":0,"undecodable":0,"unreadable":0,"throttled":0,"sockets":0,"sessions":1,"sessions_open":0,"sessions_evicted":0,"dropped":{"expectations":0,"marks":0,"pending":0,"orphans":0,"parsers":0,"sockets":0,"patterns":0,"handshakes":0,"dns_names":0,"held":0},"handshakes":[{"server":"192.0.2.1","control":1,"control_retried":0,"data":0,"data_retried":0}],"tls_handshakes":0,"tls_handshakes_peak_per_s":0,"unwritten":0,"final":true}"#;

    #[test]
    fn parses_the_documented_lines() {
        let Ok(Line::Start(start)) = parse_line(START) else {
            panic!()
        };
        assert_eq!(start.ports.passive, Some([30000, 30009]));
        let Ok(Line::Event(event)) = parse_line(EVENT) else {
            panic!()
        };
        assert_eq!(
            event.kind,
            Kind::SocketError {
                errno: "ECONNREFUSED".into(),
                code: 111
            }
        );
        assert_eq!(event.side, Side::Client);
        assert_eq!(event.netns, Some(4_026_531_833));
        assert!(event.has_port(21));
        let Ok(Line::Stats(stats)) = parse_line(STATS) else {
            panic!()
        };
        assert!(stats.is_final);
    }

    #[test]
    fn kernel_at_least_compares_major_and_minor() {
        let Ok(Line::Start(mut start)) = parse_line(START) else {
            panic!()
        };
        start.kernel = "6.18.44-fc-v657".into();
        assert!(start.kernel_at_least(6, 10));
        assert!(start.kernel_at_least(6, 18));
        assert!(!start.kernel_at_least(6, 19));
        assert!(!start.kernel_at_least(7, 0));
        start.kernel = "5.10.0-46-amd64".into();
        assert!(!start.kernel_at_least(6, 10));
    }

    #[test]
    fn parses_kinds_with_null_fields() {
        let destroy = EVENT.replace(
            r#""kind":"socket_error","errno":"ECONNREFUSED","code":111"#,
            r#""kind":"destroy","total_retrans":null,"dsack_dups":null"#,
        );
        let Ok(Line::Event(event)) = parse_line(&destroy) else {
            panic!("{destroy}")
        };
        assert_eq!(
            event.kind,
            Kind::Destroy {
                total_retrans: None,
                dsack_dups: None
            }
        );
        let reset = destroy.replace(
            r#""destroy","total_retrans":null,"dsack_dups":null"#,
            r#""reset_received","state":"ESTABLISHED""#,
        );
        let Ok(Line::Event(event)) = parse_line(&reset) else {
            panic!("{reset}")
        };
        assert_eq!(
            event.kind,
            Kind::ResetReceived {
                state: "ESTABLISHED".into()
            }
        );
    }

    #[test]
    fn parses_ftp_lines() {
        let ftp = EVENT.replace(
            r#""kind":"socket_error","errno":"ECONNREFUSED","code":111"#,
            r#""kind":"ftp","from":"server","command":null,"arg":null,"reply":229,"text":"x","data_endpoint":{"addr":null,"port":30001},"encrypted":false"#,
        );
        let Ok(Line::Event(event)) = parse_line(&ftp) else {
            panic!("{ftp}")
        };
        assert_eq!(
            event.kind,
            Kind::Ftp {
                from: Side::Server,
                command: None,
                arg: None,
                reply: Some(229),
                text: Some("x".into()),
                data_endpoint: Some(DataEndpoint {
                    addr: None,
                    port: 30001
                }),
                encrypted: false
            }
        );
        assert!(parse_line(&ftp.replace(r#""port":30001"#, r#""port":30001,"new":1"#)).is_err());
    }

    #[test]
    fn unknown_fields_are_schema_drift() {
        assert!(parse_line(&EVENT.replace(r#""cpu":1"#, r#""cpu":1,"new":2"#)).is_err());
        assert!(parse_line(&EVENT.replace(r#""code":111"#, r#""code":111,"new":2"#)).is_err());
        assert!(parse_line(&STATS.replace(r#""final""#, r#""new":1,"final""#)).is_err());
        assert!(parse_line(&START.replace(r#""schema""#, r#""new":1,"schema""#)).is_err());
        assert!(parse_line(&EVENT.replace("socket_error", "socket_oops")).is_err());
        assert!(parse_line(r#"{"type":"other"}"#).is_err());
    }

    #[test]
    fn missing_common_fields_are_errors() {
        assert!(parse_line(&EVENT.replace(r#","cpu":1"#, "")).is_err());
    }

    /// Every line names the schema, its host and its run.
    #[test]
    fn the_envelope_is_checked() {
        for line in [START, EVENT, STATS] {
            assert!(parse_line(line).is_ok(), "{line}");
            for broken in [
                line.replace(r#""schema":2"#, r#""schema":1"#),
                line.replace(r#""host":{"name":"ftp1"},"#, ""),
                line.replace(r#""host":{"name":"ftp1"}"#, r#""host":"ftp1""#),
                line.replace(
                    r#""run":"0123456789abcdef0123456789abcdef""#,
                    r#""run":"x""#,
                ),
            ] {
                assert!(parse_line(&broken).is_err(), "{broken}");
            }
        }
    }
}

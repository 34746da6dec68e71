//! The lines ftptrace prints: JSON lines (the versioned contract in
//! docs/json-lines.md) or a text timeline for a person at a terminal.

use std::{
    fs::OpenOptions,
    io::{self, BufWriter, Write},
    path::Path,
};

use serde::{Deserialize, Serialize};

use crate::{
    attribution::Attribution,
    cli::Format,
    event::{EventKind, KernelEvent, errno_name, tcp_flag_names},
    ftp_control::{self, ControlEvent, Side},
    session::Placement,
    session_record::SessionRecord,
};

/// Version of the JSON lines contract; bumped only for incompatible changes.
pub const SCHEMA: u32 = 1;

/// Writing failed because the reader went away (`ftptrace | head`): not an error.
#[derive(Debug, thiserror::Error)]
#[error("output closed")]
pub struct OutputClosed;

pub struct Output {
    format: Format,
    sink: BufWriter<Box<dyn Write>>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Start {
    pub version: String,
    pub kernel: String,
    pub ports: PortsLine,
    pub probes: Vec<ProbeStatus>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct PortsLine {
    pub control: Vec<u16>,
    pub active_data: u16,
    /// `[lo, hi]`, or null when passive data connections are not traced.
    pub passive: Option<[u16; 2]>,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct ProbeStatus {
    /// `category:event` for a tracepoint probe, the event kind for a probe
    /// with a hook ladder.
    pub name: String,
    /// `raw_tracepoint`, `fentry`, `kprobe`, `timer`, `cgroup_skb`, or `off`.
    pub hook: String,
    /// What the hook is attached to: a tracepoint, a kernel function, a cgroup.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    pub attached: bool,
    /// Why it is off.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The better hooks tried first, each with why it did not work here.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub fell_back: Vec<String>,
}

#[derive(Debug, Serialize)]
pub struct Stats {
    /// Event lines written so far.
    pub events: u64,
    /// Events the kernel could not queue (ring buffer full), summed over CPUs.
    pub lost: u64,
    /// Events the kernel skipped because the same program was already running
    /// on that CPU (an interrupt arriving mid-program); counted by the kernel.
    pub missed: u64,
    /// Records that could not be decoded (each also reported on stderr once).
    pub undecodable: u64,
    /// Sockets currently remembered for attribution.
    pub sockets: usize,
    /// FTP sessions begun so far, open now, and reported early because too
    /// many were open at once.
    pub sessions: u64,
    pub sessions_open: usize,
    pub sessions_evicted: u64,
    #[serde(rename = "final")]
    pub is_final: bool,
}

#[derive(Serialize)]
struct EventLine<'a> {
    #[serde(rename = "type")]
    line_type: &'static str,
    ts: &'a str,
    #[serde(flatten)]
    details: Details<'a>,
    /// The end of the connection this host's socket is.
    side: Side,
    local_addr: String,
    local_port: u16,
    remote_addr: String,
    remote_port: u16,
    netns: Option<u32>,
    pid: Option<u32>,
    comm: Option<&'a str>,
    socket: Option<u64>,
    cpu: u32,
    /// The FTP session and connection (`control`, `data:N`) once known.
    session: Option<&'a str>,
    conn: Option<String>,
}

#[derive(Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
enum Details<'a> {
    State {
        old_state: &'a str,
        new_state: &'a str,
    },
    Retransmit {
        state: &'a str,
        syn: bool,
        error: Option<String>,
        segs: Option<u32>,
    },
    ResetSent {
        reason: Option<&'a str>,
        state: Option<&'a str>,
    },
    ResetReceived {
        state: &'a str,
    },
    SocketError {
        errno: String,
        code: i32,
    },
    Destroy,
    KeepaliveProbe {
        probes_out: u8,
    },
    ZeroWindowProbe {
        probes_out: u8,
    },
    Drop {
        reason: Option<&'a str>,
        direction: &'static str,
        tcp_flags: String,
        location: Option<&'a str>,
    },
    Ftp(FtpDetails<'a>),
}

#[derive(Serialize)]
struct DataEndpoint {
    addr: Option<String>,
    port: u16,
}

impl<'a> Details<'a> {
    /// The line's kind-specific fields; `None` for a kind that is never
    /// printed (a raw control segment).
    fn of(kind: &'a EventKind) -> Option<Self> {
        Some(match kind {
            EventKind::State { old, new } => Self::State {
                old_state: old,
                new_state: new,
            },
            EventKind::Retransmit {
                state,
                syn,
                error,
                segs,
            } => Self::Retransmit {
                state,
                syn: *syn,
                error: error.map(errno_name),
                segs: *segs,
            },
            EventKind::ResetSent { reason, state } => Self::ResetSent {
                reason: reason.as_deref(),
                state: state.as_deref(),
            },
            EventKind::ResetReceived { state } => Self::ResetReceived { state },
            EventKind::SocketError { errno } => Self::SocketError {
                errno: errno_name(*errno),
                code: *errno,
            },
            EventKind::Destroy => Self::Destroy,
            EventKind::KeepaliveProbe { probes_out } => Self::KeepaliveProbe {
                probes_out: *probes_out,
            },
            EventKind::ZeroWindowProbe { probes_out } => Self::ZeroWindowProbe {
                probes_out: *probes_out,
            },
            EventKind::Drop {
                reason,
                outgoing,
                tcp_flags,
                location,
            } => Self::Drop {
                reason: reason.as_deref(),
                direction: if *outgoing { "out" } else { "in" },
                tcp_flags: tcp_flag_names(*tcp_flags),
                location: location.as_deref(),
            },
            EventKind::Ftp { from, event } => {
                let mut details = FtpDetails {
                    from: from.as_str(),
                    ..FtpDetails::default()
                };
                match event {
                    ControlEvent::Command { verb, arg } => {
                        details.command = Some(verb.as_str());
                        details.arg = arg.as_deref();
                    }
                    ControlEvent::Reply { code, text } => {
                        details.reply = Some(*code);
                        details.text = Some(text);
                    }
                    ControlEvent::DataEndpoint { addr, port, .. } => {
                        details.data_endpoint = Some(DataEndpoint {
                            addr: addr.map(|a| a.to_canonical().to_string()),
                            port: *port,
                        });
                    }
                    ControlEvent::Encrypted => details.encrypted = true,
                }
                Self::Ftp(details)
            }
            EventKind::ControlSegment(_) | EventKind::ResetTtl { .. } => return None,
        })
    }
}

/// Every `ftp` line has every field, `null` where this line has none.
#[derive(Default, Serialize)]
struct FtpDetails<'a> {
    from: &'static str,
    command: Option<&'a str>,
    arg: Option<&'a str>,
    reply: Option<u16>,
    text: Option<&'a str>,
    data_endpoint: Option<DataEndpoint>,
    encrypted: bool,
}

#[derive(Serialize)]
struct Tagged<'a, T> {
    #[serde(rename = "type")]
    line_type: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    schema: Option<u32>,
    #[serde(flatten)]
    body: &'a T,
}

impl Output {
    /// Standard output, or `path` opened for appending.
    pub fn open(format: Format, path: Option<&Path>) -> anyhow::Result<Self> {
        let sink: Box<dyn Write> = match path {
            None => Box::new(io::stdout()),
            Some(path) => Box::new(
                OpenOptions::new()
                    .append(true)
                    .create(true)
                    .open(path)
                    .map_err(|e| {
                        anyhow::anyhow!("cannot write output file {}: {e}", path.display())
                    })?,
            ),
        };
        Ok(Self::new(format, sink))
    }

    pub fn new(format: Format, sink: Box<dyn Write>) -> Self {
        Self {
            format,
            sink: BufWriter::with_capacity(64 * 1024, sink),
        }
    }

    pub fn start(&mut self, start: &Start) -> anyhow::Result<()> {
        match self.format {
            Format::Json => self.json(&Tagged {
                line_type: "start",
                schema: Some(SCHEMA),
                body: start,
            })?,
            Format::Text => {
                let attached = start.probes.iter().filter(|p| p.attached).count();
                let passive = match start.ports.passive {
                    Some([lo, hi]) => format!("passive data {lo}-{hi}"),
                    None => "no passive range (--passive-ports)".into(),
                };
                let control: Vec<String> = start.ports.control.iter().map(u16::to_string).collect();
                self.text(format_args!(
                    "ftptrace {} on Linux {}: control ports {}, active data {}, {passive}; {attached}/{} probes attached",
                    start.version,
                    start.kernel,
                    control.join(","),
                    start.ports.active_data,
                    start.probes.len()
                ))?;
                for probe in &start.probes {
                    if !probe.attached {
                        let reason = probe.reason.as_deref().unwrap_or("unknown reason");
                        self.text(format_args!("  not attached: {} ({reason})", probe.name))?;
                    } else if !probe.fell_back.is_empty() {
                        // A ladder probe on a lesser rung: say which, and why.
                        self.text(format_args!(
                            "  {} via {} {} (not {})",
                            probe.name,
                            probe.hook,
                            probe.target.as_deref().unwrap_or(""),
                            probe.fell_back.join("; not ")
                        ))?;
                    }
                }
            }
        }
        self.flush()
    }

    pub fn event(
        &mut self,
        ts: &str,
        event: &KernelEvent,
        side: Side,
        who: &Attribution,
        place: Option<&Placement>,
    ) -> anyhow::Result<()> {
        // Raw bytes are never printed, whatever the caller did.
        let Some(details) = Details::of(&event.kind) else {
            anyhow::bail!(
                "internal error: a raw record (control segment, reset TTL) reached the output"
            );
        };
        match self.format {
            Format::Json => self.json(&EventLine {
                line_type: "event",
                ts,
                details,
                side,
                local_addr: event.local.ip().to_string(),
                local_port: event.local.port(),
                remote_addr: event.remote.ip().to_string(),
                remote_port: event.remote.port(),
                netns: event.netns,
                pid: who.owner.as_ref().map(|t| t.pid),
                comm: who.owner.as_ref().map(|t| t.comm.as_str()),
                socket: who.socket,
                cpu: event.cpu,
                session: place.map(|p| p.session.as_str()),
                conn: place.map(|p| p.conn.label()),
            }),
            Format::Text => {
                let what = describe(&event.kind);
                let owner = who
                    .owner
                    .as_ref()
                    .map(|t| format!(" {}[{}]", t.comm, t.pid))
                    .unwrap_or_default();
                let netns = event
                    .netns
                    .map(|n| format!(" netns {n}"))
                    .unwrap_or_default();
                let side = side.as_str();
                let place = place
                    .map(|p| format!(" [{} {}]", p.session, p.conn.label()))
                    .unwrap_or_default();
                self.text(format_args!(
                    "{ts} {side} {} <> {} {what}{owner}{netns}{place}",
                    event.local, event.remote
                ))
            }
        }
    }

    /// A session that ended (or, at the end of the run, is still open).
    pub fn session(&mut self, record: &SessionRecord) -> anyhow::Result<()> {
        match self.format {
            Format::Json => self.json(&Tagged {
                line_type: "session",
                schema: None,
                body: record,
            })?,
            Format::Text => self.text(format_args!("{}", record.text()))?,
        }
        self.flush()
    }

    pub fn stats(&mut self, stats: &Stats) -> anyhow::Result<()> {
        match self.format {
            Format::Json => self.json(&Tagged {
                line_type: "stats",
                schema: None,
                body: stats,
            })?,
            Format::Text => self.text(format_args!(
                "-- {}: {} events, {} lost, {} missed, {} undecodable; {} sessions, {} open, {} evicted",
                if stats.is_final {
                    "final stats"
                } else {
                    "stats"
                },
                stats.events,
                stats.lost,
                stats.missed,
                stats.undecodable,
                stats.sessions,
                stats.sessions_open,
                stats.sessions_evicted
            ))?,
        }
        self.flush()
    }

    pub fn flush(&mut self) -> anyhow::Result<()> {
        self.sink.flush().map_err(write_error)
    }

    fn json(&mut self, line: &impl Serialize) -> anyhow::Result<()> {
        serde_json::to_writer(&mut self.sink, line).map_err(|e| match e.io_error_kind() {
            Some(kind) => write_error(io::Error::from(kind)),
            None => anyhow::anyhow!("cannot encode a JSON line: {e}"),
        })?;
        self.sink.write_all(b"\n").map_err(write_error)
    }

    fn text(&mut self, line: std::fmt::Arguments<'_>) -> anyhow::Result<()> {
        writeln!(self.sink, "{line}").map_err(write_error)
    }
}

/// What an event says, in words: the text format's line and a timeline entry.
pub fn describe(kind: &EventKind) -> String {
    match kind {
        EventKind::State { old, new } => format!("state {old} -> {new}"),
        EventKind::Retransmit {
            state,
            syn,
            error,
            segs,
        } => format!(
            "retransmit{}{} in {state}{}",
            if *syn { " SYN" } else { "" },
            segs.filter(|&n| n > 1)
                .map(|n| format!(" ({n} segments)"))
                .unwrap_or_default(),
            error
                .map(|e| format!(" failed: {}", errno_name(e)))
                .unwrap_or_default()
        ),
        EventKind::ResetSent { reason, state } => format!(
            "reset sent ({}){}",
            reason.as_deref().unwrap_or("no reason given"),
            state
                .as_ref()
                .map(|s| format!(" in {s}"))
                .unwrap_or_else(|| " (no socket)".into())
        ),
        EventKind::ResetReceived { state } => format!("reset received in {state}"),
        EventKind::SocketError { errno } => {
            format!("socket error {}", errno_name(*errno))
        }
        EventKind::Destroy => "socket destroyed".into(),
        EventKind::KeepaliveProbe { probes_out } => {
            format!("keepalive probe, {probes_out} unanswered")
        }
        EventKind::ZeroWindowProbe { probes_out } => {
            format!("zero-window probe, {probes_out} unanswered")
        }
        EventKind::Drop {
            reason,
            outgoing,
            tcp_flags,
            location,
        } => format!(
            "{} {} dropped ({}{})",
            if *outgoing { "outgoing" } else { "incoming" },
            tcp_flag_names(*tcp_flags),
            reason.as_deref().unwrap_or("no reason given"),
            location
                .as_deref()
                .map(|l| format!(" in {l}"))
                .unwrap_or_default()
        ),
        EventKind::Ftp { from, event } => ftp_text(*from, event),
        EventKind::ControlSegment(segment) => {
            format!("control segment, {} bytes", segment.payload_len)
        }
        EventKind::ResetTtl { ttl, usual_ttl } => match usual_ttl {
            Some(usual) => {
                format!("reset arrived with TTL {ttl} (the connection's other packets: {usual})")
            }
            None => format!("reset arrived with TTL {ttl}"),
        },
    }
}

/// `ftp client: RETR file`, `ftp server: 226 Transfer complete`. The peer
/// chose these bytes: control characters are escaped so they cannot drive
/// the terminal.
fn ftp_text(from: ftp_control::Side, event: &ControlEvent) -> String {
    let said = match event {
        ControlEvent::Command { verb, arg } => match arg {
            Some(arg) => format!("{} {}", verb.as_str(), printable(arg)),
            None => verb.as_str().to_owned(),
        },
        ControlEvent::Reply { code, text } => format!("{code} {}", printable(text)),
        ControlEvent::DataEndpoint {
            addr: Some(addr),
            port,
            ..
        } => format!(
            "data endpoint {}",
            std::net::SocketAddr::new(addr.to_canonical(), *port)
        ),
        ControlEvent::DataEndpoint {
            addr: None, port, ..
        } => format!("data endpoint port {port}"),
        ControlEvent::Encrypted => "now encrypted (TLS)".to_owned(),
    };
    format!("ftp {}: {said}", from.as_str())
}

/// The text with control characters escaped, so a peer cannot drive the terminal.
pub fn printable(text: &str) -> String {
    text.chars()
        .flat_map(|c| {
            let escaped: Vec<char> = if c.is_control() {
                c.escape_default().collect()
            } else {
                vec![c]
            };
            escaped
        })
        .collect()
}

fn write_error(error: io::Error) -> anyhow::Error {
    if error.kind() == io::ErrorKind::BrokenPipe {
        OutputClosed.into()
    } else {
        anyhow::anyhow!("cannot write output: {error}")
    }
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;

    use super::*;
    use crate::event::Task;

    struct ClosedPipe;

    impl Write for ClosedPipe {
        fn write(&mut self, _: &[u8]) -> io::Result<usize> {
            Err(io::ErrorKind::BrokenPipe.into())
        }
        fn flush(&mut self) -> io::Result<()> {
            Err(io::ErrorKind::BrokenPipe.into())
        }
    }

    struct Full;

    impl Write for Full {
        fn write(&mut self, _: &[u8]) -> io::Result<usize> {
            Err(io::Error::from_raw_os_error(libc::ENOSPC))
        }
        fn flush(&mut self) -> io::Result<()> {
            Err(io::Error::from_raw_os_error(libc::ENOSPC))
        }
    }

    /// A writer whose bytes the test reads back.
    #[derive(Clone, Default)]
    struct Shared(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

    impl Write for Shared {
        fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(bytes);
            Ok(bytes.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn the_text_start_line_names_fallbacks_and_probes_that_are_off() {
        let probe =
            |name: &str, hook: &str, attached: bool, reason: Option<&str>, fell_back: &[&str]| {
                ProbeStatus {
                    name: name.into(),
                    hook: hook.into(),
                    target: attached.then(|| "tcp_xmit_probe_skb".into()),
                    attached,
                    reason: reason.map(Into::into),
                    fell_back: fell_back.iter().map(|f| (*f).to_owned()).collect(),
                }
            };
        let probes = [
            probe(
                "sock:inet_sock_set_state",
                "raw_tracepoint",
                true,
                None,
                &[],
            ),
            probe("keepalive_probe", "kprobe", true, None, &["fentry: EPERM"]),
            probe(
                "socket_error",
                "off",
                false,
                Some("no hook works here"),
                &[],
            ),
        ];
        let shared = Shared::default();
        let mut output = Output::new(Format::Text, Box::new(shared.clone()));
        output
            .start(&Start {
                version: "0.1.0".into(),
                kernel: "6.1.0".into(),
                ports: PortsLine {
                    control: vec![21],
                    active_data: 20,
                    passive: None,
                },
                probes: probes.to_vec(),
            })
            .unwrap();
        let text = String::from_utf8(shared.0.lock().unwrap().clone()).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines[0].ends_with("; 2/3 probes attached"), "{text}");
        assert_eq!(
            &lines[1..],
            [
                "  keepalive_probe via kprobe tcp_xmit_probe_skb (not fentry: EPERM)",
                "  not attached: socket_error (no hook works here)"
            ]
        );
    }

    fn stats(is_final: bool) -> Stats {
        Stats {
            events: 3,
            lost: 1,
            missed: 0,
            undecodable: 0,
            sockets: 2,
            sessions: 0,
            sessions_open: 0,
            sessions_evicted: 0,
            is_final,
        }
    }

    #[test]
    fn a_closed_reader_is_output_closed_and_other_failures_are_errors() {
        let mut closed = Output::new(Format::Json, Box::new(ClosedPipe));
        assert!(closed.stats(&stats(true)).unwrap_err().is::<OutputClosed>());
        let mut full = Output::new(Format::Text, Box::new(Full));
        let error = full.stats(&stats(true)).unwrap_err();
        assert!(!error.is::<OutputClosed>());
        assert!(error.to_string().contains("No space left"), "{error}");
    }

    #[test]
    fn an_unwritable_output_file_is_named() {
        let error = Output::open(Format::Json, Some(Path::new("/nonexistent-dir/out.jsonl")))
            .err()
            .unwrap();
        assert!(
            error.to_string().contains("/nonexistent-dir/out.jsonl"),
            "{error}"
        );
    }

    #[test]
    fn output_files_are_appended_to() {
        let path =
            std::env::temp_dir().join(format!("ftptrace-output-test-{}.jsonl", std::process::id()));
        std::fs::write(&path, "earlier\n").unwrap();
        Output::open(Format::Json, Some(&path))
            .unwrap()
            .stats(&stats(true))
            .unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        std::fs::remove_file(&path).unwrap();
        assert_eq!(
            text,
            "earlier\n{\"type\":\"stats\",\"events\":3,\"lost\":1,\"missed\":0,\"undecodable\":0,\"sockets\":2,\"sessions\":0,\"sessions_open\":0,\"sessions_evicted\":0,\"final\":true}\n"
        );
    }

    fn ftp_event(from: ftp_control::Side, event: ControlEvent) -> KernelEvent {
        KernelEvent {
            boot_ns: 1,
            cpu: 0,
            current: Task {
                pid: 0,
                comm: String::new(),
            },
            netns: Some(4_026_531_833),
            sock: Some(1),
            local: "192.0.2.1:21".parse::<SocketAddr>().unwrap(),
            remote: "192.0.2.2:40000".parse::<SocketAddr>().unwrap(),
            kind: EventKind::Ftp { from, event },
        }
    }

    fn ftp_lines(format: Format, events: &[KernelEvent]) -> String {
        let shared = Shared::default();
        let mut output = Output::new(format, Box::new(shared.clone()));
        let who = Attribution {
            socket: Some(3),
            owner: None,
        };
        for event in events {
            output
                .event("2026-11-25T00:00:00Z", event, Side::Server, &who, None)
                .unwrap();
        }
        output.flush().unwrap();
        String::from_utf8(shared.0.lock().unwrap().clone()).unwrap()
    }

    fn samples() -> Vec<KernelEvent> {
        use ftp_control::{Side::Client, Side::Server, Verb};
        vec![
            ftp_event(
                Client,
                ControlEvent::Command {
                    verb: Verb::Retr,
                    arg: Some("file".into()),
                },
            ),
            ftp_event(
                Client,
                ControlEvent::Command {
                    verb: Verb::Pass,
                    arg: None,
                },
            ),
            ftp_event(
                Server,
                ControlEvent::Reply {
                    code: 226,
                    text: "Transfer \x1b[31mcomplete.".into(),
                },
            ),
            ftp_event(
                Server,
                ControlEvent::DataEndpoint {
                    announced_by: Server,
                    addr: Some("::ffff:192.0.2.1".parse().unwrap()),
                    port: 30001,
                },
            ),
            ftp_event(
                Server,
                ControlEvent::DataEndpoint {
                    announced_by: Server,
                    addr: None,
                    port: 30002,
                },
            ),
            ftp_event(Server, ControlEvent::Encrypted),
        ]
    }

    /// docs/json-lines.md: every `ftp` line has every field, null where
    /// it has none.
    #[test]
    fn ftp_lines_keep_the_contract() {
        let text = ftp_lines(Format::Json, &samples());
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        let fields = |line: &serde_json::Value| {
            [
                "from",
                "command",
                "arg",
                "reply",
                "text",
                "data_endpoint",
                "encrypted",
            ]
            .map(|field| line[field].to_string())
            .join(" ")
        };
        assert_eq!(
            lines.iter().map(fields).collect::<Vec<_>>(),
            [
                r#""client" "RETR" "file" null null null false"#,
                r#""client" "PASS" null null null null false"#,
                r#""server" null null 226 "Transfer \u001b[31mcomplete." null false"#,
                r#""server" null null null null {"addr":"192.0.2.1","port":30001} false"#,
                r#""server" null null null null {"addr":null,"port":30002} false"#,
                r#""server" null null null null null true"#,
            ]
        );
        for line in &lines {
            assert_eq!(
                (&line["type"], &line["kind"], &line["side"], &line["socket"]),
                (&"event".into(), &"ftp".into(), &"server".into(), &3.into())
            );
            assert_eq!(line.as_object().unwrap().len(), 22, "{line}");
        }
    }

    #[test]
    fn ftp_text_escapes_what_the_peer_sent() {
        let text = ftp_lines(Format::Text, &samples());
        let said: Vec<&str> = text
            .lines()
            .map(|l| l.split_once(" ftp ").unwrap().1)
            .map(|l| l.split_once(" netns").unwrap().0)
            .collect();
        assert_eq!(
            said,
            [
                "client: RETR file",
                "client: PASS",
                "server: 226 Transfer \\u{1b}[31mcomplete.",
                "server: data endpoint 192.0.2.1:30001",
                "server: data endpoint port 30002",
                "server: now encrypted (TLS)",
            ]
        );
    }

    #[test]
    fn a_raw_control_segment_is_never_printed() {
        let mut event = ftp_event(ftp_control::Side::Client, ControlEvent::Encrypted);
        event.kind = EventKind::ControlSegment(crate::event::Segment {
            cookie: 1,
            outgoing: false,
            seq: 0,
            payload_len: 4,
            redacted: false,
            payload: crate::event::Payload::new(b"NOOP"),
        });
        for format in [Format::Json, Format::Text] {
            let shared = Shared::default();
            let mut output = Output::new(format, Box::new(shared.clone()));
            let who = Attribution {
                socket: None,
                owner: None,
            };
            assert!(
                output
                    .event("ts", &event, Side::Client, &who, None)
                    .is_err()
            );
            output.flush().unwrap();
            assert!(shared.0.lock().unwrap().is_empty());
        }
    }

    /// The contract of docs/json-lines.md: every promised field is there,
    /// with its type, for every kind.
    #[test]
    fn event_lines_keep_the_contract() {
        let buffer = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        struct Shared(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);
        impl Write for Shared {
            fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
                self.0.lock().unwrap().extend_from_slice(buf);
                Ok(buf.len())
            }
            fn flush(&mut self) -> io::Result<()> {
                Ok(())
            }
        }
        let mut output = Output::new(Format::Json, Box::new(Shared(buffer.clone())));
        let kinds = [
            EventKind::State {
                old: "SYN_SENT".into(),
                new: "ESTABLISHED".into(),
            },
            EventKind::Retransmit {
                state: "SYN_SENT".into(),
                syn: true,
                error: None,
                segs: Some(1),
            },
            EventKind::ResetSent {
                reason: Some("NO_SOCKET".into()),
                state: None,
            },
            EventKind::ResetReceived {
                state: "ESTABLISHED".into(),
            },
            EventKind::SocketError { errno: 110 },
            EventKind::Destroy,
        ];
        for kind in kinds {
            let event = KernelEvent {
                boot_ns: 1,
                cpu: 0,
                current: Task {
                    pid: 1,
                    comm: "x".into(),
                },
                netns: Some(4_026_531_833),
                sock: Some(1),
                local: "[::ffff:192.0.2.2]:40000".parse::<SocketAddr>().unwrap(),
                remote: "192.0.2.1:21".parse::<SocketAddr>().unwrap(),
                kind,
            };
            let who = Attribution {
                socket: Some(1),
                owner: None,
            };
            output
                .event(
                    "2026-11-25T00:00:00.000000001Z",
                    &event,
                    Side::Client,
                    &who,
                    None,
                )
                .unwrap();
        }
        output.flush().unwrap();
        let text = String::from_utf8(buffer.lock().unwrap().clone()).unwrap();
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        let kinds: Vec<&str> = lines.iter().map(|l| l["kind"].as_str().unwrap()).collect();
        assert_eq!(
            kinds,
            [
                "state",
                "retransmit",
                "reset_sent",
                "reset_received",
                "socket_error",
                "destroy"
            ]
        );
        for line in &lines {
            assert_eq!(line["type"], "event");
            assert_eq!(line["ts"], "2026-11-25T00:00:00.000000001Z");
            assert_eq!(line["side"], "client");
            // Not converted here: the decoder normalises v4-mapped addresses.
            assert!(line["local_addr"].is_string());
            assert_eq!(line["remote_addr"], "192.0.2.1");
            assert_eq!(
                (line["local_port"].as_u64(), line["remote_port"].as_u64()),
                (Some(40000), Some(21))
            );
            assert_eq!(line["netns"], 4_026_531_833u64);
            assert!(line["pid"].is_null() && line["comm"].is_null());
        }
        assert_eq!(
            (&lines[0]["old_state"], &lines[0]["new_state"]),
            (&"SYN_SENT".into(), &"ESTABLISHED".into())
        );
        assert_eq!(lines[1]["segs"], 1);
        assert_eq!(
            (&lines[1]["state"], &lines[1]["syn"], &lines[1]["error"]),
            (&"SYN_SENT".into(), &true.into(), &serde_json::Value::Null)
        );
        assert_eq!(
            (&lines[2]["reason"], &lines[2]["state"]),
            (&"NO_SOCKET".into(), &serde_json::Value::Null)
        );
        assert_eq!(
            (&lines[4]["errno"], &lines[4]["code"]),
            (&"ETIMEDOUT".into(), &110.into())
        );
    }
}

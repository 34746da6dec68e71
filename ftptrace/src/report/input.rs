//! What a report reads: recordings (replayed here, as `ftptrace replay`
//! would: those of the same hours on several hosts joined) and JSON-lines files (`--output`, or lines exported from a log
//! pipeline), into the sessions, each session's events, and each run's
//! losses. Every byte is someone else's: a line that is not ftptrace's is
//! counted and skipped, never trusted to be complete.

use std::{
    collections::{BTreeMap, HashMap},
    path::PathBuf,
};

use serde::Deserialize;

use crate::{
    cli::Format,
    recording::{Recording, RecordingError},
    replay,
};

/// Everything the inputs said, as the report needs it.
#[derive(Debug, Default)]
pub struct Evidence {
    /// Each session once (the last line of an id wins: a run's final line
    /// of a session open at its end), in the order of their start.
    pub sessions: Vec<SessionLine>,
    /// Each session's event lines, by session id, in time order.
    pub events: HashMap<String, Vec<EventLine>>,
    /// What each run lost or skipped (its latest stats line), by host and run.
    pub losses: BTreeMap<(String, String), Loss>,
    /// Lines that were not ftptrace's (not JSON, or not a line type it
    /// writes with the fields the report needs).
    pub skipped: u64,
    pub inputs: Vec<PathBuf>,
}

#[derive(Clone, Debug, Default, Deserialize)]
pub struct Host {
    pub name: String,
}

#[derive(Clone, Debug, Deserialize)]
pub struct Endpoint {
    pub addr: String,
    pub port: u16,
}

impl std::fmt::Display for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.addr.contains(':') {
            write!(f, "[{}]:{}", self.addr, self.port)
        } else {
            write!(f, "{}:{}", self.addr, self.port)
        }
    }
}

#[derive(Clone, Debug, Deserialize)]
pub struct User {
    pub name: String,
}

#[derive(Clone, Debug, Deserialize)]
pub struct ConnLine {
    pub conn: String,
    pub client: Endpoint,
    pub server: Endpoint,
    #[serde(default)]
    pub close: Option<String>,
    #[serde(default)]
    pub closed_by: Option<String>,
    #[serde(default)]
    pub established: bool,
}

#[derive(Clone, Debug, Deserialize)]
pub struct TimelineEntry {
    pub ts: String,
    pub conn: String,
    pub side: String,
    pub what: String,
}

/// A `session` line, as far as the report reads it.
#[derive(Clone, Debug, Deserialize)]
pub struct SessionLine {
    pub id: String,
    #[serde(default)]
    pub host: Host,
    #[serde(default)]
    pub run: String,
    pub start: String,
    pub end: String,
    pub client: Endpoint,
    pub server: Endpoint,
    #[serde(default)]
    pub user: Option<User>,
    #[serde(default)]
    pub cause: Option<String>,
    #[serde(default)]
    pub evidence: Vec<String>,
    #[serde(default)]
    pub unknown: Vec<String>,
    #[serde(default)]
    pub encrypted: bool,
    #[serde(default)]
    pub seen_from: Vec<String>,
    pub control: ConnLine,
    #[serde(default)]
    pub data: Vec<ConnLine>,
    #[serde(default)]
    pub data_omitted: u64,
    #[serde(default)]
    pub timeline: Vec<TimelineEntry>,
    #[serde(default)]
    pub timeline_omitted: u64,
}

impl SessionLine {
    /// Its connections, the control connection first.
    pub fn connections(&self) -> impl Iterator<Item = &ConnLine> {
        std::iter::once(&self.control).chain(&self.data)
    }
}

/// An `event` line, as far as the report reads it: the fields every event
/// has, and the kind's own (`details`).
#[derive(Clone, Debug, Deserialize)]
pub struct EventLine {
    pub ts: String,
    pub kind: String,
    pub side: String,
    #[serde(default)]
    pub session: Option<String>,
    #[serde(default)]
    pub conn: Option<String>,
    #[serde(default)]
    local_addr: Option<String>,
    #[serde(default)]
    local_port: Option<u16>,
    #[serde(default)]
    remote_addr: Option<String>,
    #[serde(default)]
    remote_port: Option<u16>,
    #[serde(flatten)]
    pub details: serde_json::Map<String, serde_json::Value>,
}

impl EventLine {
    /// Its connection's two ends, in a fixed order.
    fn flow(&self) -> Option<Flow> {
        let local = format!("{}:{}", self.local_addr.as_ref()?, self.local_port?);
        let remote = format!("{}:{}", self.remote_addr.as_ref()?, self.remote_port?);
        Some(Flow::of(local, remote))
    }

    /// A text field of the kind's own, if it is one.
    pub fn text(&self, field: &str) -> Option<&str> {
        self.details.get(field).and_then(serde_json::Value::as_str)
    }
}

/// A run's losses, from its latest `stats` line.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
pub struct Loss {
    #[serde(default)]
    pub lost: u64,
    #[serde(default)]
    pub missed: u64,
}

/// A connection's two ends, `addr:port` each, the lesser first.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct Flow(String, String);

impl Flow {
    fn of(a: String, b: String) -> Self {
        if a <= b { Self(a, b) } else { Self(b, a) }
    }

    fn of_conn(conn: &ConnLine) -> Self {
        let end = |e: &Endpoint| format!("{}:{}", e.addr, e.port);
        Self::of(end(&conn.client), end(&conn.server))
    }
}

/// An event line carries its session only once the run had placed it: a
/// reset for a SYN nobody listened for, say, is written before the session
/// exists. Such an event goes to the session one of whose connections has
/// its two ends, if that session was open then (a second either side).
fn place_unplaced(evidence: &mut Evidence, unplaced: Vec<EventLine>) {
    const SLACK_NS: i64 = 1_000_000_000;
    let mut conns: HashMap<Flow, Vec<(usize, &str)>> = HashMap::new();
    for (index, session) in evidence.sessions.iter().enumerate() {
        for conn in session.connections() {
            conns
                .entry(Flow::of_conn(conn))
                .or_default()
                .push((index, conn.conn.as_str()));
        }
    }
    let mut placed = Vec::new();
    for mut event in unplaced {
        let (Some(flow), Some(at)) = (event.flow(), super::time::parse(&event.ts)) else {
            continue;
        };
        let open_then = conns.get(&flow).and_then(|candidates| {
            candidates.iter().find(|(index, _)| {
                let session = &evidence.sessions[*index];
                let start = super::time::parse(&session.start).unwrap_or(i64::MAX);
                let end = super::time::parse(&session.end).unwrap_or(i64::MIN);
                (start - SLACK_NS..=end + SLACK_NS).contains(&at)
            })
        });
        if let Some((index, conn)) = open_then {
            event.session = Some(evidence.sessions[*index].id.clone());
            event.conn = Some((*conn).to_owned());
            placed.push(event);
        }
    }
    for event in placed {
        if let Some(id) = event.session.clone() {
            evidence.events.entry(id).or_default().push(event);
        }
    }
}

#[derive(Deserialize)]
struct StatsLine {
    #[serde(default)]
    host: Host,
    #[serde(default)]
    run: String,
    #[serde(flatten)]
    loss: Loss,
}

#[derive(Deserialize)]
#[serde(tag = "type")]
enum Line {
    #[serde(rename = "session")]
    Session(Box<SessionLine>),
    #[serde(rename = "event")]
    Event(Box<EventLine>),
    #[serde(rename = "stats")]
    Stats(StatsLine),
    #[serde(other)]
    Other,
}

/// Reads every input; an input that cannot be read at all is an error
/// naming it.
pub fn read(paths: &[PathBuf]) -> anyhow::Result<Evidence> {
    let mut evidence = Evidence::default();
    let mut sessions: HashMap<(String, String), SessionLine> = HashMap::new();
    let mut unplaced = Vec::new();
    for text in texts_of(paths)? {
        for line in text.lines().filter(|l| !l.trim().is_empty()) {
            match serde_json::from_str::<Line>(line) {
                Ok(Line::Session(session)) => {
                    let key = (session.host.name.clone(), session.id.clone());
                    sessions.insert(key, *session);
                }
                Ok(Line::Event(event)) => match event.session.clone() {
                    Some(id) => evidence.events.entry(id).or_default().push(*event),
                    None => unplaced.push(*event),
                },
                Ok(Line::Stats(stats)) => {
                    evidence
                        .losses
                        .insert((stats.host.name, stats.run), stats.loss);
                }
                Ok(Line::Other) => {}
                Err(_) => evidence.skipped += 1,
            }
        }
    }
    evidence.inputs = paths.to_vec();
    let mut sessions: Vec<SessionLine> = sessions.into_values().collect();
    sessions.sort_by(|a, b| (&a.start, &a.host.name, &a.id).cmp(&(&b.start, &b.host.name, &b.id)));
    evidence.sessions = sessions;
    place_unplaced(&mut evidence, unplaced);
    for events in evidence.events.values_mut() {
        events.sort_by(|a, b| a.ts.cmp(&b.ts));
    }
    Ok(evidence)
}

/// The JSON lines of the inputs: the recordings replayed (those of the
/// same hours on several hosts joined into one run), the other files as
/// they are.
fn texts_of(paths: &[PathBuf]) -> anyhow::Result<Vec<String>> {
    let mut texts = Vec::new();
    let mut recordings = Vec::new();
    let mut names = Vec::new();
    for path in paths {
        let bytes = std::fs::read(path)
            .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", path.display()))?;
        match Recording::parse(&bytes) {
            Ok(recording) => {
                recordings.push(recording);
                names.push(path.clone());
            }
            Err(RecordingError::NotARecording) => {
                texts.push(String::from_utf8_lossy(&bytes).into_owned());
            }
            Err(e) => anyhow::bail!("{}: {e}", path.display()),
        }
    }
    if !recordings.is_empty() {
        let replayed = replay::all_lines(&recordings, &names, Format::Json)
            .map_err(|e| anyhow::anyhow!("cannot replay the recordings: {e:#}"))?;
        texts.push(replayed);
    }
    Ok(texts)
}

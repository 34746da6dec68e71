//! `--record FILE`: the raw kernel records of a run, with everything
//! decoding them needs, so `ftptrace replay` can make the same lines later,
//! anywhere, without root.
//!
//! The file is a header and then frames, appended as the run goes: a tag
//! byte, a little-endian u32 length and that many bytes. A run killed
//! mid-write leaves a file whose complete frames still replay; the cut
//! frame at the end is reported, not guessed at. The first frame is
//! [`Meta`] (JSON): the kernel's enum names, the clock offset, the ports,
//! the start line. Then, in the order the live run did them: records (raw,
//! control-channel payload masked where the parser saw a secret), batch
//! ends (the boot time the batch was closed at: sessions end by the clock),
//! loss counts, stats lines, the sessions seeded at start, and kernel
//! symbols named.

use std::{
    fs::File,
    io::{self, BufWriter, Write},
    os::unix::fs::OpenOptionsExt as _,
    path::Path,
};

use serde::{Deserialize, Serialize};

use crate::{
    event::OpenConnection,
    kernel::{names::KernelNames, tracepoint_format::SymbolTable},
    output::Start,
    pipeline::{KernelLoss, NatAnswer},
    ports::PortSet,
    session::patterns::PatternRules,
};

/// The file's first bytes.
const MAGIC: &[u8; 20] = b"ftptrace recording\n\0";
/// Bumped on any change of the frames or [`Meta`] (6: `summary` frames).
pub const FORMAT_VERSION: u16 = 6;
/// The oldest format still read: 4 only added the NAT's answers (format 3
/// recordings have none to give), 5 the time of each loss count (older
/// ones charge a loss as they met it).
const OLDEST_READ: u16 = 3;
/// Larger frames are refused when read: a record is a few hundred bytes, a
/// seed list a few MB at the very most.
const MAX_FRAME: u32 = 64 << 20;

#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Tag {
    Meta = 1,
    Record = 2,
    EndBatch = 3,
    Loss = 4,
    Stats = 5,
    Seeds = 6,
    Symbols = 7,
    Finish = 8,
    Nat = 9,
    Summary = 10,
}

impl Tag {
    fn from_byte(byte: u8) -> Option<Self> {
        Some(match byte {
            1 => Self::Meta,
            2 => Self::Record,
            3 => Self::EndBatch,
            4 => Self::Loss,
            5 => Self::Stats,
            6 => Self::Seeds,
            7 => Self::Symbols,
            8 => Self::Finish,
            9 => Self::Nat,
            10 => Self::Summary,
            _ => return None,
        })
    }
}

/// What a recording says about the run it came from.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Meta {
    /// The kernel records' wire version (`ftptrace_common::WIRE_VERSION`).
    pub wire_version: u16,
    /// The ftptrace that recorded it.
    pub ftptrace: String,
    pub kernel: String,
    /// Realtime minus boottime at the start, in nanoseconds.
    pub clock_offset_ns: i128,
    pub session_prefix: String,
    /// The host and run its lines named (recordings before schema 2 have
    /// none: their replay names host `unknown` and the session prefix).
    #[serde(default)]
    pub origin: Option<crate::output::Origin>,
    /// The run's filters (`--client` ...): a replay applies them too.
    #[serde(default)]
    pub filter: crate::line_filter::Wanted,
    pub control_ports: Vec<u16>,
    pub passive_ports: Option<[u16; 2]>,
    pub start: Start,
    pub names: RecordedNames,
    /// `--max-sessions` of the run (recordings before it had 100,000).
    #[serde(default = "default_max_sessions")]
    pub max_sessions: usize,
    /// `--repeat-failures` of the run (recordings before it had 3).
    #[serde(default = "default_repeat_failures")]
    pub repeat_failures: usize,
    /// `--repeat-window` of the run in seconds (before it, 600).
    #[serde(default = "default_repeat_window_s")]
    pub repeat_window_s: u64,
}

fn default_repeat_failures() -> usize {
    PatternRules::default().failures
}

fn default_repeat_window_s() -> u64 {
    PatternRules::default().window_ns / 1_000_000_000
}

fn default_max_sessions() -> usize {
    crate::session::tracker::MAX_OPEN_SESSIONS
}

impl Meta {
    /// Refuses a recording of kernel records this ftptrace cannot read.
    pub fn check_wire_version(&self) -> anyhow::Result<()> {
        anyhow::ensure!(
            self.wire_version == ftptrace_common::WIRE_VERSION,
            "the recording holds kernel records of wire version {} (ftptrace {}); this ftptrace \
             reads version {}",
            self.wire_version,
            self.ftptrace,
            ftptrace_common::WIRE_VERSION
        );
        Ok(())
    }

    /// The recorded run's host and run; a recording from before schema 2:
    /// host `unknown`, its session prefix (hex) padded to a run id.
    pub fn origin(&self) -> crate::output::Origin {
        self.origin.clone().unwrap_or_else(|| {
            crate::output::Origin::unknown(Some(format!("{:0>32}", self.session_prefix)))
        })
    }

    pub fn pattern_rules(&self) -> PatternRules {
        PatternRules {
            failures: self.repeat_failures,
            window_ns: self.repeat_window_s.saturating_mul(1_000_000_000),
        }
    }

    pub fn ports(&self) -> PortSet {
        PortSet {
            control: self.control_ports.clone(),
            passive: self.passive_ports.map(|[lo, hi]| lo..=hi),
        }
    }
}

/// [`KernelNames`] as a recording keeps them: `[number, name]` pairs.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RecordedNames {
    pub tcp_states: Vec<(i64, String)>,
    pub reset_reasons: Option<Vec<(i64, String)>>,
    pub drop_reasons: Option<Vec<(i64, String)>>,
}

impl From<&KernelNames> for RecordedNames {
    fn from(names: &KernelNames) -> Self {
        let pairs = |table: &SymbolTable| {
            table
                .iter()
                .map(|(value, name)| (value, name.to_owned()))
                .collect()
        };
        Self {
            tcp_states: pairs(&names.tcp_states),
            reset_reasons: names.reset_reasons.as_ref().map(pairs),
            drop_reasons: names.drop_reasons.as_ref().map(pairs),
        }
    }
}

impl From<&RecordedNames> for KernelNames {
    fn from(recorded: &RecordedNames) -> Self {
        let table = |pairs: &Vec<(i64, String)>| {
            let mut table = SymbolTable::default();
            for (value, name) in pairs {
                table.insert(*value, name);
            }
            table
        };
        Self::new(
            table(&recorded.tcp_states),
            recorded.reset_reasons.as_ref().map(table),
            recorded.drop_reasons.as_ref().map(table),
        )
    }
}

/// The sessions seeded from sock_diag at start, and when.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Seeds {
    pub now_ns: u64,
    pub open: Vec<OpenConnection>,
}

/// One step of a recorded run, in the order the run took it.
#[derive(Clone, Debug, PartialEq)]
pub enum Frame {
    /// A ring buffer record, cut to what it holds (`decode::used_len`).
    Record(Vec<u8>),
    /// The batch of records before it ended at this boot time.
    EndBatch(u64),
    /// Kernel events lost or skipped so far, as charged to open sessions,
    /// read before boot time `at_ns` (0 in recordings of format 4 and
    /// older: then it counts for every session met after it).
    Loss { total: u64, at_ns: u64 },
    /// A `stats` line was written with these kernel counts.
    Stats { loss: KernelLoss, is_final: bool },
    /// Sessions seeded at start (JSON [`Seeds`]).
    Seeds(Vec<u8>),
    /// Kernel code addresses and their names.
    Symbols(Vec<(u64, String)>),
    /// The run ended: the sessions still open were reported.
    Finish,
    /// What the NAT's connection tracking answered (JSON [`NatAnswer`]s).
    Nat(Vec<u8>),
    /// A `summary` line was written (SIGUSR1).
    Summary,
}

/// Appends frames to a recording file.
pub struct Recorder {
    file: BufWriter<File>,
    path: String,
}

impl Recorder {
    /// Creates `path` (refusing to overwrite one) and writes the header and
    /// `meta`.
    pub fn create(path: &Path, meta: &Meta) -> anyhow::Result<Self> {
        // Mode 0600: it holds user names, addresses and file names.
        let file = File::options()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)
            .map_err(|e| anyhow::anyhow!("cannot create recording {}: {e}", path.display()))?;
        let mut recorder = Self {
            file: BufWriter::with_capacity(256 * 1024, file),
            path: path.display().to_string(),
        };
        let mut header = MAGIC.to_vec();
        header.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
        recorder.write_raw(&header)?;
        let meta = serde_json::to_vec(meta)?;
        recorder.frame(Tag::Meta, &meta)?;
        Ok(recorder)
    }

    pub fn record(&mut self, bytes: &[u8]) -> anyhow::Result<()> {
        self.frame(Tag::Record, bytes)
    }

    /// Ends a batch and flushes it: a run killed later keeps it.
    pub fn end_batch(&mut self, now_ns: u64) -> anyhow::Result<()> {
        self.frame(Tag::EndBatch, &now_ns.to_le_bytes())?;
        self.file.flush().map_err(|e| self.error(&e))
    }

    pub fn loss(&mut self, total: u64, at_ns: u64) -> anyhow::Result<()> {
        let mut payload = [0; 16];
        payload[..8].copy_from_slice(&total.to_le_bytes());
        payload[8..].copy_from_slice(&at_ns.to_le_bytes());
        self.frame(Tag::Loss, &payload)
    }

    pub fn stats(&mut self, loss: KernelLoss, is_final: bool) -> anyhow::Result<()> {
        let mut payload = Vec::with_capacity(33);
        payload.extend_from_slice(&loss.lost.to_le_bytes());
        payload.extend_from_slice(&loss.missed.to_le_bytes());
        payload.extend_from_slice(&loss.unreadable.to_le_bytes());
        payload.extend_from_slice(&loss.throttled.to_le_bytes());
        payload.push(u8::from(is_final));
        self.frame(Tag::Stats, &payload)
    }

    pub fn seeds(&mut self, seeds: &Seeds) -> anyhow::Result<()> {
        let json = serde_json::to_vec(seeds)?;
        self.frame(Tag::Seeds, &json)
    }

    pub fn symbols(&mut self, named: &[(u64, String)]) -> anyhow::Result<()> {
        if named.is_empty() {
            return Ok(());
        }
        let mut payload = Vec::new();
        for (addr, name) in named {
            payload.extend_from_slice(&addr.to_le_bytes());
            let name = &name.as_bytes()[..name.len().min(usize::from(u8::MAX))];
            payload.push(name.len() as u8);
            payload.extend_from_slice(name);
        }
        self.frame(Tag::Symbols, &payload)
    }

    pub fn nat(&mut self, answers: &[NatAnswer]) -> anyhow::Result<()> {
        if answers.is_empty() {
            return Ok(());
        }
        let json = serde_json::to_vec(answers)?;
        self.frame(Tag::Nat, &json)
    }

    pub fn summary(&mut self) -> anyhow::Result<()> {
        self.frame(Tag::Summary, &[])
    }

    pub fn finish(&mut self) -> anyhow::Result<()> {
        self.frame(Tag::Finish, &[])?;
        self.file.flush().map_err(|e| self.error(&e))
    }

    fn frame(&mut self, tag: Tag, payload: &[u8]) -> anyhow::Result<()> {
        let len = u32::try_from(payload.len()).map_err(|_| anyhow::anyhow!("frame too large"))?;
        let mut head = [0u8; 5];
        head[0] = tag as u8;
        head[1..].copy_from_slice(&len.to_le_bytes());
        self.write_raw(&head)?;
        self.write_raw(payload)
    }

    fn write_raw(&mut self, bytes: &[u8]) -> anyhow::Result<()> {
        self.file.write_all(bytes).map_err(|e| self.error(&e))
    }

    fn error(&self, error: &io::Error) -> anyhow::Error {
        anyhow::anyhow!("cannot write recording {}: {error}", self.path)
    }
}

/// A recording read back.
#[derive(Debug)]
pub struct Recording {
    pub meta: Meta,
    pub frames: Vec<Frame>,
    /// Bytes at the end that do not make a whole frame (a writer killed
    /// mid-frame); the frames before them are complete.
    pub truncated_tail: usize,
}

#[derive(Debug, thiserror::Error)]
pub enum RecordingError {
    #[error("not an ftptrace recording (its first bytes are not the header)")]
    NotARecording,
    #[error("recording format {0}; this ftptrace reads formats {OLDEST_READ} to {FORMAT_VERSION}")]
    Version(u16),
    #[error("the recording has no description of its run (the first frame)")]
    NoMeta,
    #[error("the recording's description is unreadable: {0}")]
    Meta(serde_json::Error),
    #[error("frame {index} is malformed: {why}")]
    Frame { index: usize, why: String },
}

impl Recording {
    pub fn read(path: &Path) -> anyhow::Result<Self> {
        let bytes = std::fs::read(path)
            .map_err(|e| anyhow::anyhow!("cannot read recording {}: {e}", path.display()))?;
        Self::parse(&bytes).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))
    }

    pub fn parse(bytes: &[u8]) -> Result<Self, RecordingError> {
        let rest = bytes
            .strip_prefix(MAGIC.as_slice())
            .ok_or(RecordingError::NotARecording)?;
        let (version, mut rest) = rest
            .split_first_chunk::<2>()
            .ok_or(RecordingError::NotARecording)?;
        let version = u16::from_le_bytes(*version);
        if !(OLDEST_READ..=FORMAT_VERSION).contains(&version) {
            return Err(RecordingError::Version(version));
        }
        let mut meta = None;
        let mut frames = Vec::new();
        let mut index = 0;
        while !rest.is_empty() {
            let Some((tag, len, payload, after)) = split_frame(rest) else {
                break;
            };
            let malformed = |why: &str| RecordingError::Frame {
                index,
                why: why.to_owned(),
            };
            let tag = Tag::from_byte(tag).ok_or_else(|| malformed("unknown tag"))?;
            if len > MAX_FRAME {
                return Err(malformed("larger than any frame ftptrace writes"));
            }
            match tag {
                Tag::Meta if index == 0 => {
                    meta = Some(serde_json::from_slice(payload).map_err(RecordingError::Meta)?);
                }
                Tag::Meta => return Err(malformed("a second description")),
                _ if index == 0 => return Err(RecordingError::NoMeta),
                Tag::Record => frames.push(Frame::Record(payload.to_vec())),
                Tag::EndBatch => frames.push(Frame::EndBatch(
                    u64_of(payload).ok_or_else(|| malformed("a batch end is 8 bytes"))?,
                )),
                Tag::Loss => {
                    let (total, at_ns) = match payload.len() {
                        8 => (u64_of(payload), Some(0)),
                        16 => (u64_of(&payload[..8]), u64_of(&payload[8..])),
                        _ => (None, None),
                    };
                    let (Some(total), Some(at_ns)) = (total, at_ns) else {
                        return Err(malformed("a loss count is 8 or 16 bytes"));
                    };
                    frames.push(Frame::Loss { total, at_ns });
                }
                Tag::Stats => {
                    let [counts @ .., final_byte] = payload else {
                        return Err(malformed("empty stats"));
                    };
                    if counts.len() != 32 {
                        return Err(malformed("stats are 33 bytes"));
                    }
                    let count = |n: usize| u64_of(&counts[n * 8..n * 8 + 8]).unwrap_or(0);
                    frames.push(Frame::Stats {
                        loss: KernelLoss {
                            lost: count(0),
                            missed: count(1),
                            unreadable: count(2),
                            throttled: count(3),
                        },
                        is_final: *final_byte != 0,
                    });
                }
                Tag::Seeds => frames.push(Frame::Seeds(payload.to_vec())),
                Tag::Symbols => frames.push(Frame::Symbols(
                    symbols_of(payload).ok_or_else(|| malformed("cut symbol list"))?,
                )),
                Tag::Finish => frames.push(Frame::Finish),
                Tag::Summary => frames.push(Frame::Summary),
                Tag::Nat => frames.push(Frame::Nat(payload.to_vec())),
            }
            index += 1;
            rest = after;
        }
        Ok(Self {
            meta: meta.ok_or(RecordingError::NoMeta)?,
            frames,
            truncated_tail: rest.len(),
        })
    }

    /// Every answer the NAT gave the run, wherever its frame is (the
    /// question was put while a record was filed, the frame written at the
    /// end of its batch).
    pub fn nat_answers(&self) -> Result<Vec<NatAnswer>, RecordingError> {
        let mut all = Vec::new();
        for (index, frame) in self.frames.iter().enumerate() {
            if let Frame::Nat(json) = frame {
                let answers: Vec<NatAnswer> =
                    serde_json::from_slice(json).map_err(|e| RecordingError::Frame {
                        index: index + 1,
                        why: format!("the NAT's answers: {e}"),
                    })?;
                all.extend(answers);
            }
        }
        Ok(all)
    }

    /// Every kernel symbol the run named, wherever its frame is.
    pub fn symbols(&self) -> Vec<(u64, String)> {
        self.frames
            .iter()
            .filter_map(|f| match f {
                Frame::Symbols(named) => Some(named.iter().cloned()),
                _ => None,
            })
            .flatten()
            .collect()
    }
}

/// Tag, length, payload and the rest, if a whole frame is there.
fn split_frame(bytes: &[u8]) -> Option<(u8, u32, &[u8], &[u8])> {
    let (&tag, rest) = bytes.split_first()?;
    let (len, rest) = rest.split_first_chunk::<4>()?;
    let len = u32::from_le_bytes(*len);
    let (payload, after) = rest.split_at_checked(usize::try_from(len).ok()?)?;
    Some((tag, len, payload, after))
}

fn u64_of(bytes: &[u8]) -> Option<u64> {
    Some(u64::from_le_bytes(bytes.try_into().ok()?))
}

fn symbols_of(mut bytes: &[u8]) -> Option<Vec<(u64, String)>> {
    let mut named = Vec::new();
    while !bytes.is_empty() {
        let (addr, rest) = bytes.split_first_chunk::<8>()?;
        let (&len, rest) = rest.split_first()?;
        let (name, rest) = rest.split_at_checked(usize::from(len))?;
        named.push((
            u64::from_le_bytes(*addr),
            String::from_utf8_lossy(name).into_owned(),
        ));
        bytes = rest;
    }
    Some(named)
}

/// The NAT's answers as the run got them: the same question gets the same
/// answer.
pub struct RecordedNat(
    std::collections::HashMap<(std::net::SocketAddr, std::net::SocketAddr), crate::session::Tuple>,
);

impl From<Vec<NatAnswer>> for RecordedNat {
    fn from(answers: Vec<NatAnswer>) -> Self {
        Self(
            answers
                .into_iter()
                .filter_map(|a| Some(((a.local, a.peer), a.before_nat?)))
                .collect(),
        )
    }
}

impl crate::pipeline::NatLookup for RecordedNat {
    fn before_nat(
        &mut self,
        local: std::net::SocketAddr,
        peer: std::net::SocketAddr,
    ) -> Option<(std::net::SocketAddr, std::net::SocketAddr)> {
        self.0.get(&(local, peer)).copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{kernel::probes::ProbeStatus, output::PortsLine};

    fn meta() -> Meta {
        Meta {
            wire_version: ftptrace_common::WIRE_VERSION,
            ftptrace: "0.1.0".into(),
            kernel: "6.18.0".into(),
            clock_offset_ns: 1_700_000_000_000_000_000,
            session_prefix: "abc".into(),
            origin: None,
            filter: Default::default(),
            max_sessions: 100_000,
            repeat_failures: 3,
            repeat_window_s: 600,
            control_ports: vec![21],
            passive_ports: Some([30000, 30009]),
            start: Start {
                ts: String::new(),
                version: "0.1.0".into(),
                kernel: "6.18.0".into(),
                ports: PortsLine {
                    control: vec![21],
                    active_data: 20,
                    passive: Some([30000, 30009]),
                },
                probes: vec![ProbeStatus {
                    name: "sock:inet_sock_set_state".into(),
                    hook: "raw_tracepoint".into(),
                    target: Some("inet_sock_set_state".into()),
                    attached: true,
                    reason: None,
                    fell_back: Vec::new(),
                }],
            },
            names: RecordedNames {
                tcp_states: vec![(1, "TCP_ESTABLISHED".into())],
                reset_reasons: None,
                drop_reasons: Some(vec![(12, "NETFILTER_DROP".into())]),
            },
        }
    }

    fn scratch(name: &str) -> std::path::PathBuf {
        let path = std::env::temp_dir().join(format!(
            "ftptrace-recording-{}-{name}.rec",
            std::process::id()
        ));
        let _ = std::fs::remove_file(&path);
        path
    }

    fn write_sample(path: &Path) {
        let mut recorder = Recorder::create(path, &meta()).unwrap();
        recorder.record(&[1, 2, 3]).unwrap();
        recorder
            .symbols(&[(0xffff_ffff_8100_0000, "tcp_v4_rcv".into())])
            .unwrap();
        recorder.end_batch(42).unwrap();
        recorder.loss(3, 40).unwrap();
        recorder
            .stats(
                KernelLoss {
                    lost: 2,
                    missed: 1,
                    unreadable: 3,
                    throttled: 4,
                },
                true,
            )
            .unwrap();
        recorder
            .seeds(&Seeds {
                now_ns: 7,
                open: Vec::new(),
            })
            .unwrap();
        recorder.finish().unwrap();
    }

    #[test]
    fn frames_read_back_in_order() {
        let path = scratch("order");
        write_sample(&path);
        let recording = Recording::read(&path).unwrap();
        assert_eq!(recording.meta.session_prefix, "abc");
        assert_eq!(recording.meta.ports().passive, Some(30000..=30009));
        let names = KernelNames::from(&recording.meta.names);
        assert_eq!(names.state_name(1), "ESTABLISHED");
        assert_eq!(names.drop_reason(12).as_deref(), Some("NETFILTER_DROP"));
        assert_eq!(recording.frames.len(), 7);
        assert_eq!(recording.frames[0], Frame::Record(vec![1, 2, 3]));
        assert_eq!(recording.frames[2], Frame::EndBatch(42));
        assert_eq!(
            recording.frames[3],
            Frame::Loss {
                total: 3,
                at_ns: 40
            }
        );
        assert_eq!(
            recording.frames[4],
            Frame::Stats {
                loss: KernelLoss {
                    lost: 2,
                    missed: 1,
                    unreadable: 3,
                    throttled: 4,
                },
                is_final: true
            }
        );
        assert_eq!(recording.frames[6], Frame::Finish);
        assert_eq!(
            recording.symbols(),
            [(0xffff_ffff_8100_0000, "tcp_v4_rcv".to_owned())]
        );
        assert_eq!(recording.truncated_tail, 0);
        let _ = std::fs::remove_file(&path);
    }

    /// A writer killed anywhere leaves the frames before the cut readable,
    /// and says how many bytes of a cut frame follow them.
    #[test]
    fn a_cut_tail_keeps_every_complete_frame() {
        let path = scratch("cut");
        write_sample(&path);
        let whole = std::fs::read(&path).unwrap();
        let all = Recording::parse(&whole).unwrap().frames;
        // Where each frame ends; the first is the description.
        let mut ends = Vec::new();
        let mut at = MAGIC.len() + 2;
        while at < whole.len() {
            at += 5 + u32::from_le_bytes(whole[at + 1..at + 5].try_into().unwrap()) as usize;
            ends.push(at);
        }
        for cut in ends[0]..whole.len() {
            let recording = Recording::parse(&whole[..cut]).unwrap();
            let complete = ends.iter().filter(|&&end| end <= cut).count() - 1;
            assert_eq!(recording.frames, all[..complete], "cut at {cut}");
            assert_eq!(
                recording.truncated_tail,
                cut - ends[complete],
                "cut at {cut}"
            );
        }
        // Cut inside the header or the description: nothing to replay.
        for cut in 0..ends[0] {
            assert!(Recording::parse(&whole[..cut]).is_err(), "cut at {cut}");
        }
        let _ = std::fs::remove_file(&path);
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        assert!(matches!(
            Recording::parse(b"hello"),
            Err(RecordingError::NotARecording)
        ));
        let mut other_version = MAGIC.to_vec();
        other_version.extend_from_slice(&99u16.to_le_bytes());
        assert!(matches!(
            Recording::parse(&other_version),
            Err(RecordingError::Version(99))
        ));
        let mut no_meta = MAGIC.to_vec();
        no_meta.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
        no_meta.extend_from_slice(&[Tag::Finish as u8, 0, 0, 0, 0]);
        assert!(matches!(
            Recording::parse(&no_meta),
            Err(RecordingError::NoMeta)
        ));
        let path = scratch("garbage");
        write_sample(&path);
        let mut bytes = std::fs::read(&path).unwrap();
        bytes.extend_from_slice(&[99, 0, 0, 0, 0]);
        assert!(matches!(
            Recording::parse(&bytes),
            Err(RecordingError::Frame { .. })
        ));
        let _ = std::fs::remove_file(&path);
    }

    #[test]
    fn an_existing_file_is_not_overwritten() {
        let path = scratch("exists");
        std::fs::write(&path, b"keep me").unwrap();
        let error = Recorder::create(&path, &meta()).err().unwrap();
        assert!(
            error.to_string().contains("cannot create recording"),
            "{error}"
        );
        assert_eq!(std::fs::read(&path).unwrap(), b"keep me");
        let _ = std::fs::remove_file(&path);
    }
}

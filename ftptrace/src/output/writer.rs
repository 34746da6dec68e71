//! Prints lines: JSON ([`super::lines`]) or text ([`super::text`]), to
//! standard output or an appended file. A reader that went away
//! (`ftptrace | head`) is [`OutputClosed`], not an error.

use std::{
    fs::{File, OpenOptions},
    io::{self, Write},
    os::unix::fs::{MetadataExt as _, OpenOptionsExt as _},
    path::{Path, PathBuf},
};

use serde::Serialize;

use super::{
    event_json,
    lines::{
        Details, EventLine, JoinLine, Origin, PatternLine, SCHEMA, SessionRecord, Start, Stats,
        Summary, Tagged,
    },
    rotation::Rotation,
    session_line::LINE_LIMIT,
    text,
};
use crate::{
    community_id,
    event::KernelEvent,
    ftp::Side,
    printable::printable,
    session::{Placement, attribution::Attribution},
};

/// Writing failed because the reader went away (`ftptrace | head`): not an error.
#[derive(Debug, thiserror::Error)]
#[error("output closed")]
pub struct OutputClosed;

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Json,
    Text,
}

pub struct Output {
    format: Format,
    sink: Sink,
    /// Lines not written to the sink yet: event lines are written straight
    /// in here (a `BufWriter` would copy each once more), and go out when
    /// it holds [`PENDING_BYTES`] or at a flush.
    pending: Vec<u8>,
    /// The file written to, reopened on SIGHUP; `None` for standard output.
    path: Option<PathBuf>,
    /// Lines the output file did not take (a full disk, a vanished
    /// directory), and why it last refused while it still does.
    unwritten: u64,
    refusing: Option<String>,
    /// When a refusal was last said on stderr: a nearly full disk takes a
    /// small batch now and then, and is not said again within a minute.
    refusal_said: Option<std::time::Instant>,
    spell_said: bool,
    /// `--output-max-size`: the file rotated by size; why it last could
    /// not be, while it cannot.
    rotation: Option<Rotation>,
    rotation_failing: Option<String>,
    /// Lines go aside, not out ([`Self::captured`]).
    capturing: bool,
    /// SIGUSR2's hold ([`Self::hold`]): since when, and its marker file.
    held: Option<Held>,
    /// The host and run every line names.
    origin: Origin,
    community_ids: community_id::Recent,
}

/// Where lines go: a stream (standard output: a failure ends the run, a
/// closed pipe quietly), or `--output`'s file, which may refuse for a while
/// (a full disk) without ending the run.
enum Sink {
    Stream(Box<dyn Write>),
    File(File),
}

/// A hold of the output file's writes (logrotate's `copytruncate`).
struct Held {
    since: std::time::Instant,
    marker: PathBuf,
}

/// A hold lasts until the SIGHUP that ends it, or this long at most: a
/// logrotate that died between its prerotate and postrotate must not stop
/// the output for good.
const HOLD_LIMIT: std::time::Duration = std::time::Duration::from_secs(60);

/// What a hold keeps in memory at most before it writes anyway.
const HOLD_BYTES: usize = 64 << 20;

/// The file whose existence says the output is held: `PATH.held`.
pub fn hold_marker(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".held");
    name.into()
}

/// How long a refusal of the output file, once said, is not said again.
const REFUSAL_QUIET: std::time::Duration = std::time::Duration::from_secs(60);

/// What [`Output`] holds before it writes to its sink.
const PENDING_BYTES: usize = 64 * 1024;

impl Output {
    /// Standard output, or `path` opened for appending (see [`open_file`]).
    pub fn open(format: Format, path: Option<&Path>) -> anyhow::Result<Self> {
        let mut output = Self::new(format, Box::new(io::stdout()));
        if let Some(path) = path {
            output.sink = Sink::File(open_file(path)?);
            output.path = Some(path.to_owned());
            // A marker left by a run that was killed while held would tell
            // the next prerotate a hold that nobody keeps.
            let _ = std::fs::remove_file(hold_marker(path));
        }
        Ok(output)
    }

    pub fn new(format: Format, sink: Box<dyn Write>) -> Self {
        Self {
            format,
            sink: Sink::Stream(sink),
            unwritten: 0,
            refusing: None,
            refusal_said: None,
            spell_said: false,
            rotation: None,
            rotation_failing: None,
            capturing: false,
            held: None,
            pending: Vec::with_capacity(PENDING_BYTES + 4096),
            path: None,
            community_ids: community_id::Recent::default(),
            origin: Origin::unknown(None),
        }
    }

    pub fn origin(&self) -> &Origin {
        &self.origin
    }

    /// Every line from now on names `origin`'s host and run.
    pub fn with_origin(mut self, origin: Origin) -> Self {
        self.set_origin(origin);
        self
    }

    pub fn set_origin(&mut self, origin: Origin) {
        self.origin = origin;
    }

    /// Flushes, and opens the output file again (after `logrotate` moved
    /// it away, say): lines from now on go to whatever file is at the path.
    /// When that fails the lines go on to the old file, unless it was
    /// removed: then they are unwritten, and each write tries the path again.
    pub fn reopen(&mut self) -> anyhow::Result<()> {
        self.release();
        self.flush()?;
        if let Some(path) = &self.path {
            self.sink = Sink::File(open_file(path)?);
        }
        Ok(())
    }

    /// SIGUSR2, for logrotate's `copytruncate`, which copies the file and
    /// then truncates it: a line written between the two would be in
    /// neither. Writes what is pending, then keeps lines in memory, and
    /// says so by creating `PATH.held` ([`hold_marker`]), which the
    /// prerotate script waits for. The SIGHUP of postrotate ends the hold
    /// ([`Self::reopen`]), or [`HOLD_LIMIT`] or [`HOLD_BYTES`] does, with a
    /// warning. Standard output is never held.
    pub fn hold(&mut self) -> anyhow::Result<()> {
        let Some(path) = self.path.clone() else {
            return Ok(());
        };
        self.write_pending()?;
        let marker = hold_marker(&path);
        OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .custom_flags(nix::fcntl::OFlag::O_NOFOLLOW.bits())
            .open(&marker)
            .map_err(|e| anyhow::anyhow!("cannot create {}: {e}", marker.display()))?;
        self.held.get_or_insert(Held {
            since: std::time::Instant::now(),
            marker,
        });
        Ok(())
    }

    /// Ends a hold; what it kept goes out with the next write.
    pub fn release(&mut self) {
        if let Some(held) = self.held.take() {
            let _ = std::fs::remove_file(&held.marker);
        }
    }

    /// Whether a hold keeps lines back now; one past its limits ends.
    fn holding(&mut self) -> bool {
        let Some(held) = &self.held else {
            return false;
        };
        let elapsed = held.since.elapsed();
        if elapsed < HOLD_LIMIT && self.pending.len() < HOLD_BYTES {
            return true;
        }
        log::warn!(
            "output held for {}s and {} KiB without the SIGHUP that ends a hold \
             (logrotate's postrotate): writing again",
            elapsed.as_secs(),
            self.pending.len() >> 10
        );
        self.release();
        false
    }

    /// The output file rotates by size (see [`Rotation`]).
    pub fn with_rotation(mut self, rotation: Option<Rotation>) -> Self {
        self.rotation = rotation;
        self
    }

    /// What `write` adds, taken aside rather than written (a line held for
    /// later: `--failures-only`).
    pub fn captured(
        &mut self,
        write: impl FnOnce(&mut Self) -> anyhow::Result<()>,
    ) -> anyhow::Result<Vec<u8>> {
        let pending = std::mem::take(&mut self.pending);
        self.capturing = true;
        let written = write(self);
        self.capturing = false;
        let line = std::mem::replace(&mut self.pending, pending);
        written.map(|()| line)
    }

    /// Lines [`Self::captured`] took aside, written now.
    pub fn write_held(&mut self, lines: &[u8]) -> anyhow::Result<()> {
        if lines.is_empty() {
            return Ok(());
        }
        self.pending.extend_from_slice(lines);
        self.added()
    }

    /// Lines the output file refused so far (0 for standard output).
    pub fn unwritten(&self) -> u64 {
        self.unwritten
    }

    pub fn start(&mut self, start: &Start) -> anyhow::Result<()> {
        match self.format {
            Format::Json => self.json_line("start", start)?,
            Format::Text => {
                for line in text::start(start, &self.origin) {
                    self.text(&line)?;
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
            Format::Json => {
                let (local, remote) = (event.local, event.remote);
                let community_id = (local.port() != 0 && remote.port() != 0)
                    .then(|| self.community_ids.tcp(local, remote));
                event_json::write(
                    &mut self.pending,
                    &EventLine {
                        line_type: "event",
                        schema: SCHEMA,
                        ts,
                        host: &self.origin.host,
                        run: &self.origin.run,
                        details,
                        side,
                        local_addr: event.local.ip(),
                        local_port: event.local.port(),
                        remote_addr: event.remote.ip(),
                        remote_port: event.remote.port(),
                        netns: event.netns,
                        pid: who.owner.as_ref().map(|t| t.pid),
                        comm: who.owner.as_ref().map(|t| t.comm.as_str()),
                        socket: who.socket,
                        cpu: event.cpu,
                        session: place.map(|p| p.session.as_str()),
                        conn: place.map(|p| p.conn),
                        community_id,
                    },
                );
                self.pending.push(b'\n');
                self.added()
            }
            Format::Text => self.text(&text::event(ts, event, side, who, place)),
        }
    }

    /// A session that ended (or, at the end of the run, is still open).
    /// Buffered like event lines: the caller flushes at the end of a batch
    /// (under churn, a write per session was most of a run's system time).
    /// A JSON line longer than [`LINE_LIMIT`] is written again with less
    /// of its middle ([`SessionRecord::shrink`]).
    pub fn session(&mut self, record: &mut SessionRecord) -> anyhow::Result<()> {
        match self.format {
            Format::Json => loop {
                let before = self.pending.len();
                let written = self.encode("session", &*record)?;
                if written <= LINE_LIMIT || !record.shrink(written) {
                    return self.added();
                }
                self.pending.truncate(before);
            },
            Format::Text => self.text(&text::session(record)),
        }
    }

    /// A pattern across sessions; buffered like session lines.
    pub fn pattern(&mut self, line: &PatternLine) -> anyhow::Result<()> {
        match self.format {
            Format::Json => self.json_line("pattern", line),
            Format::Text => self.text(&text::pattern(line)),
        }
    }

    pub fn join(&mut self, join: &JoinLine) -> anyhow::Result<()> {
        match self.format {
            Format::Json => self.json_line("join", join)?,
            Format::Text => {
                for line in text::join(join, &self.origin) {
                    self.text(&line)?;
                }
            }
        }
        self.flush()
    }

    pub fn summary(&mut self, summary: &Summary) -> anyhow::Result<()> {
        match self.format {
            Format::Json => self.json_line("summary", summary)?,
            Format::Text => {
                for line in text::summary(summary) {
                    self.text(&line)?;
                }
            }
        }
        self.flush()
    }

    /// The stats line, with the lines the output file refused so far (this
    /// one, if refused too, counts in the next).
    pub fn stats(&mut self, stats: &Stats) -> anyhow::Result<()> {
        let stats = Stats {
            unwritten: self.unwritten,
            ..stats.clone()
        };
        match self.format {
            Format::Json => self.json_line("stats", &stats)?,
            Format::Text => self.text(&text::stats(&stats))?,
        }
        self.flush()
    }

    pub fn flush(&mut self) -> anyhow::Result<()> {
        self.write_pending()?;
        match &mut self.sink {
            Sink::Stream(stream) => stream.flush().map_err(write_error),
            // Written straight to the file: nothing held.
            Sink::File(_) => Ok(()),
        }
    }

    fn write_pending(&mut self) -> anyhow::Result<()> {
        if self.pending.is_empty() || self.holding() {
            return Ok(());
        }
        let written = match &mut self.sink {
            Sink::Stream(stream) => stream.write_all(&self.pending).map_err(write_error),
            Sink::File(file) => {
                if let (Some(rotation), Some(path)) = (self.rotation, self.path.as_deref()) {
                    rotate_if_due(
                        file,
                        path,
                        rotation,
                        self.pending.len(),
                        &mut self.rotation_failing,
                    );
                }
                let refused = self
                    .path
                    .as_deref()
                    .and_then(|path| append_whole(file, path, &self.pending).err());
                match refused {
                    None => {
                        // Said only when its refusal was.
                        if let Some(why) = self.refusing.take()
                            && std::mem::take(&mut self.spell_said)
                        {
                            log::info!(
                                "output file writable again ({why} before); {} lines \
                                 unwritten so far",
                                self.unwritten
                            );
                        }
                    }
                    Some(why) => {
                        // Once per spell, not per batch, and not again
                        // within a minute: tracing goes on, the lines are
                        // counted (`stats`: `unwritten`).
                        let quiet = self
                            .refusal_said
                            .is_some_and(|at| at.elapsed() < REFUSAL_QUIET);
                        if self.refusing.is_none() && !quiet {
                            self.refusal_said = Some(std::time::Instant::now());
                            self.spell_said = true;
                            log::error!(
                                "{why}; tracing goes on, lines are counted \
                                 as unwritten until a write succeeds"
                            );
                        }
                        self.refusing = Some(why);
                        self.unwritten += line_count(&self.pending);
                    }
                }
                Ok(())
            }
        };
        self.pending.clear();
        // A hold may have grown it far past a batch.
        self.pending.shrink_to(PENDING_BYTES + 4096);
        written
    }

    /// A line was added to [`Self::pending`]: out with them when full.
    fn added(&mut self) -> anyhow::Result<()> {
        if self.pending.len() >= PENDING_BYTES && !self.capturing {
            self.write_pending()?;
        }
        Ok(())
    }

    /// A line of `line_type` with `body`'s fields, and the newline.
    fn json_line(&mut self, line_type: &'static str, body: &impl Serialize) -> anyhow::Result<()> {
        self.encode(line_type, body)?;
        self.added()
    }

    /// Appends the line to [`Self::pending`] (not written out yet, so the
    /// caller may take it back) and returns its length.
    fn encode(&mut self, line_type: &'static str, body: &impl Serialize) -> anyhow::Result<usize> {
        let start = self.pending.len();
        let line = Tagged {
            line_type,
            schema: SCHEMA,
            host: &self.origin.host,
            run: &self.origin.run,
            body,
        };
        if let Err(e) = serde_json::to_writer(&mut self.pending, &line) {
            // Half a line is no line.
            self.pending.truncate(start);
            anyhow::bail!("cannot encode a JSON line: {e}");
        }
        self.pending.push(b'\n');
        Ok(self.pending.len() - start)
    }

    /// Text lines for a person, each made [`printable`] whole: whatever a
    /// field holds (a user name, a process name, a reply), it cannot drive
    /// the terminal.
    fn text(&mut self, lines: &str) -> anyhow::Result<()> {
        for line in lines.split('\n') {
            self.pending.extend_from_slice(printable(line).as_bytes());
            self.pending.push(b'\n');
        }
        self.added()
    }
}

/// What is pending goes out when the output goes (a run that ends on an
/// error keeps the lines before it), as a `BufWriter`'s would; an error
/// then has no one to tell.
impl Drop for Output {
    fn drop(&mut self) {
        let _ = self.flush();
    }
}

/// Opens `path` for appending the way a log of user names, addresses and
/// file names should be: created with mode 0600, never through a symbolic
/// link (a link planted there would point the lines anywhere), and only a
/// file this process's user owns.
fn open_file(path: &Path) -> anyhow::Result<File> {
    let file = OpenOptions::new()
        .append(true)
        .create(true)
        .mode(0o600)
        .custom_flags(nix::fcntl::OFlag::O_NOFOLLOW.bits())
        .open(path)
        .map_err(|e| match e.raw_os_error() {
            Some(code) if code == nix::errno::Errno::ELOOP as i32 => anyhow::anyhow!(
                "cannot write output file {}: it is a symbolic link, and ftptrace does not \
                 follow links for its output (name the file itself)",
                path.display()
            ),
            _ => anyhow::anyhow!("cannot write output file {}: {e}", path.display()),
        })?;
    let owner = file
        .metadata()
        .map_err(|e| anyhow::anyhow!("cannot write output file {}: {e}", path.display()))?
        .uid();
    let me = nix::unistd::geteuid().as_raw();
    anyhow::ensure!(
        owner == me,
        "cannot write output file {}: it belongs to uid {owner}, not to this process's uid \
         {me}; ftptrace writes only to its own files",
        path.display()
    );
    Ok(file)
}

/// Appends `bytes` (whole lines) to `file`, or nothing: a write the disk
/// cut short is cut back to where it began, so no line is ever torn. A file
/// removed from under the run (its directory gone, say) is opened again at
/// `path`; while that fails, nothing is written.
fn append_whole(file: &mut File, path: &Path, bytes: &[u8]) -> Result<(), String> {
    let failed = |e: io::Error| format!("cannot write output file {}: {e}", path.display());
    if file.metadata().map_err(failed)?.nlink() == 0 {
        // The lines would go to a file nobody can open any more.
        *file = open_file(path).map_err(|e| format!("{e:#}"))?;
    }
    let start = file.metadata().map_err(failed)?.len();
    file.write_all(bytes).map_err(|e| {
        let _ = file.set_len(start);
        failed(e)
    })
}

/// Rotates `file` at `path` if `adding` bytes would take it past the size,
/// and opens `path` anew. A rotation that fails leaves the lines going to
/// the file as it is, said once on stderr while it fails (`failing`).
fn rotate_if_due(
    file: &mut File,
    path: &Path,
    rotation: Rotation,
    adding: usize,
    failing: &mut Option<String>,
) {
    let Ok(meta) = file.metadata() else { return };
    if !rotation.due(meta.len(), adding) {
        return;
    }
    let rotated = rotation
        .rotate(path)
        .map_err(|e| format!("cannot rotate output file {}: {e}", path.display()))
        .and_then(|()| open_file(path).map_err(|e| format!("{e:#}")));
    match rotated {
        Ok(fresh) => {
            *file = fresh;
            *failing = None;
        }
        Err(why) => {
            if failing.is_none() {
                log::error!("{why}; still writing to the file as it is");
            }
            *failing = Some(why);
        }
    }
}

/// Lines in `bytes`, each ending in a newline.
fn line_count(bytes: &[u8]) -> u64 {
    bytes.iter().filter(|&&b| b == b'\n').count() as u64
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
    use crate::{
        event::{EventKind, Task},
        ftp::{self, ControlEvent},
        kernel::probes::ProbeStatus,
        output::lines::PortsLine,
    };

    struct ClosedPipe;

    impl Write for ClosedPipe {
        fn write(&mut self, _: &[u8]) -> io::Result<usize> {
            Err(io::ErrorKind::BrokenPipe.into())
        }
        fn flush(&mut self) -> io::Result<()> {
            Err(io::ErrorKind::BrokenPipe.into())
        }
    }

    /// What a full disk answers (errno 28).
    const ENOSPC: i32 = 28;

    struct Full;

    impl Write for Full {
        fn write(&mut self, _: &[u8]) -> io::Result<usize> {
            Err(io::Error::from_raw_os_error(ENOSPC))
        }
        fn flush(&mut self) -> io::Result<()> {
            Err(io::Error::from_raw_os_error(ENOSPC))
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
                ts: "2026-12-04T15:00:00.000000000Z".into(),
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
            ts: "2026-12-04T15:00:00.000000000Z".into(),
            events: 3,
            lost: 1,
            missed: 0,
            undecodable: 0,
            unreadable: 0,
            throttled: 0,
            sockets: 2,
            sessions: 0,
            sessions_open: 0,
            sessions_evicted: 0,
            dropped: crate::output::lines::DroppedLine::default(),
            handshakes: vec![crate::output::lines::HandshakeLine {
                server: "192.0.2.1".parse().unwrap(),
                control: 4,
                control_retried: 1,
                data: 2,
                data_retried: 0,
            }],
            tls_handshakes: 0,
            tls_handshakes_peak_per_s: 0,
            unwritten: 0,
            is_final,
        }
    }

    #[test]
    fn stats_text_names_the_servers_whose_handshakes_were_retried() {
        assert!(
            text::stats(&stats(true))
                .ends_with("; retried handshakes: 192.0.2.1 1/4 control 0/2 data"),
            "{}",
            text::stats(&stats(true))
        );
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
            "earlier\n{\"type\":\"stats\",\"schema\":2,\"host\":{\"name\":\"unknown\"},\"run\":\"00000000000000000000000000000000\",\"ts\":\"2026-12-04T15:00:00.000000000Z\",\"events\":3,\"lost\":1,\"missed\":0,\"undecodable\":0,\"unreadable\":0,\"throttled\":0,\"sockets\":2,\"sessions\":0,\"sessions_open\":0,\"sessions_evicted\":0,\"dropped\":{\"expectations\":0,\"marks\":0,\"pending\":0,\"orphans\":0,\"parsers\":0,\"sockets\":0,\"patterns\":0,\"handshakes\":0,\"dns_names\":0,\"held\":0},\"handshakes\":[{\"server\":\"192.0.2.1\",\"control\":4,\"control_retried\":1,\"data\":2,\"data_retried\":0}],\"tls_handshakes\":0,\"tls_handshakes_peak_per_s\":0,\"unwritten\":0,\"final\":true}\n"
        );
    }

    fn scratch(name: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("ftptrace-writer-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir(&dir).unwrap();
        dir
    }

    /// Issue 11, finding 7: the output is created 0600, a symbolic link in
    /// its place is refused (an existing target and a dangling one alike),
    /// and so is a file another user owns.
    #[test]
    fn output_files_are_private_and_never_reached_through_a_link() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = scratch("private");
        let path = dir.join("out.jsonl");
        Output::open(Format::Json, Some(&path))
            .unwrap()
            .stats(&stats(true))
            .unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let target = dir.join("target");
        std::fs::write(&target, "keep\n").unwrap();
        for (link, to) in [
            ("existing", target.clone()),
            ("dangling", dir.join("nowhere")),
        ] {
            let link = dir.join(link);
            std::os::unix::fs::symlink(&to, &link).unwrap();
            let error = Output::open(Format::Json, Some(&link)).err().unwrap();
            assert!(error.to_string().contains("symbolic link"), "{error}");
            assert!(!dir.join("nowhere").exists());
        }
        assert_eq!(std::fs::read_to_string(&target).unwrap(), "keep\n");
        // Owned by someone else (root can chown: the test runs as root in CI).
        if nix::unistd::geteuid().is_root() {
            let theirs = dir.join("theirs.jsonl");
            std::fs::write(&theirs, "").unwrap();
            std::os::unix::fs::chown(&theirs, Some(65534), Some(65534)).unwrap();
            let error = Output::open(Format::Json, Some(&theirs)).err().unwrap();
            assert!(
                error.to_string().contains("belongs to uid 65534"),
                "{error}"
            );
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// SIGHUP's reopen: after the file was moved away (logrotate), the next
    /// lines go to a new file at the path, and none is lost.
    #[test]
    fn reopen_follows_the_path_after_a_rotation() {
        let dir = scratch("reopen");
        let path = dir.join("out.jsonl");
        let mut output = Output::open(Format::Json, Some(&path)).unwrap();
        output.stats(&stats(false)).unwrap();
        std::fs::rename(&path, dir.join("out.jsonl.1")).unwrap();
        output.stats(&stats(false)).unwrap();
        output.reopen().unwrap();
        output.stats(&stats(true)).unwrap();
        let rotated = std::fs::read_to_string(dir.join("out.jsonl.1")).unwrap();
        let fresh = std::fs::read_to_string(&path).unwrap();
        assert_eq!((rotated.lines().count(), fresh.lines().count()), (2, 1));
        assert!(fresh.contains("\"final\":true"));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// SIGUSR2 then `copytruncate` then SIGHUP: what was written before the
    /// hold is in the copy, what came during it in the truncated file, and
    /// the marker says the hold exactly while it lasts.
    #[test]
    fn a_hold_keeps_lines_from_a_copy_and_truncate() {
        let dir = scratch("hold");
        let path = dir.join("out.jsonl");
        let marker = hold_marker(&path);
        std::fs::write(&marker, "").unwrap();
        let mut output = Output::open(Format::Json, Some(&path)).unwrap();
        assert!(!marker.exists(), "a stale marker outlived the open");
        output.stats(&stats(false)).unwrap();
        output.hold().unwrap();
        assert!(marker.exists());
        output.stats(&stats(false)).unwrap();
        output.stats(&stats(false)).unwrap();
        // logrotate's copytruncate, between prerotate and postrotate.
        std::fs::copy(&path, dir.join("out.jsonl.1")).unwrap();
        OpenOptions::new()
            .write(true)
            .open(&path)
            .unwrap()
            .set_len(0)
            .unwrap();
        output.reopen().unwrap();
        assert!(!marker.exists());
        output.stats(&stats(true)).unwrap();
        let copied = std::fs::read_to_string(dir.join("out.jsonl.1")).unwrap();
        let fresh = std::fs::read_to_string(&path).unwrap();
        assert_eq!((copied.lines().count(), fresh.lines().count()), (1, 3));
        assert!(fresh.ends_with("\"final\":true}\n"), "{fresh}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// A hold nobody ends (logrotate died after its prerotate) ends by
    /// itself at its limit; standard output is never held.
    #[test]
    fn a_hold_past_its_limit_writes_again() {
        let dir = scratch("hold-limit");
        let path = dir.join("out.jsonl");
        let mut output = Output::open(Format::Json, Some(&path)).unwrap();
        output.hold().unwrap();
        output.stats(&stats(false)).unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "");
        output.held.as_mut().unwrap().since -= HOLD_LIMIT;
        output.stats(&stats(false)).unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap().lines().count(), 2);
        assert!(!hold_marker(&path).exists());
        std::fs::remove_dir_all(&dir).unwrap();

        let mut stdout = Output::new(Format::Json, Box::new(io::sink()));
        stdout.hold().unwrap();
        assert!(stdout.held.is_none());
    }

    /// A full disk (`/dev/full` refuses every write with ENOSPC): no error
    /// ends the run, every refused line is counted, and the stats say so.
    #[test]
    fn a_full_disk_counts_lines_and_the_run_goes_on() {
        let mut output = Output::new(Format::Json, Box::new(io::sink()));
        output.sink = Sink::File(OpenOptions::new().append(true).open("/dev/full").unwrap());
        output.path = Some("/dev/full".into());
        output.stats(&stats(false)).unwrap();
        output.stats(&stats(false)).unwrap();
        assert_eq!(output.unwritten(), 2);
        assert!(
            output
                .refusing
                .as_deref()
                .unwrap()
                .contains("No space left")
        );
        // The disk has room again: the next stats line counts the two.
        let dir = scratch("full");
        output.sink = Sink::File(File::create(dir.join("out")).unwrap());
        output.path = Some(dir.join("out"));
        output.stats(&stats(true)).unwrap();
        assert!(output.refusing.is_none());
        let text = std::fs::read_to_string(dir.join("out")).unwrap();
        assert!(text.contains("\"unwritten\":2,\"final\":true"), "{text}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// A nearly full disk takes a small batch now and then: the refusal is
    /// said once, its recovery once, and a refusal again within the minute
    /// is counted but not said.
    #[test]
    fn a_flapping_disk_is_said_once() {
        let dir = scratch("flapping");
        let mut output = Output::new(Format::Json, Box::new(io::sink()));
        output.path = Some(dir.join("out"));
        let full = || Sink::File(OpenOptions::new().append(true).open("/dev/full").unwrap());
        output.sink = full();
        output.stats(&stats(false)).unwrap();
        assert!(output.refusing.is_some() && output.spell_said);
        output.sink = Sink::File(File::create(dir.join("out")).unwrap());
        output.stats(&stats(false)).unwrap();
        assert!(output.refusing.is_none() && !output.spell_said);
        output.sink = full();
        output.stats(&stats(false)).unwrap();
        assert!(
            output.refusing.is_some() && !output.spell_said,
            "quiet within the minute"
        );
        assert_eq!(output.unwritten(), 2);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// The output's directory removed: lines are counted, not written to
    /// the unlinked file; once the directory is back the file is created
    /// again and takes whole lines.
    #[test]
    fn a_vanished_directory_counts_lines_until_it_is_back() {
        let dir = scratch("vanished");
        let path = dir.join("out.jsonl");
        let mut output = Output::open(Format::Json, Some(&path)).unwrap();
        output.stats(&stats(false)).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        output.stats(&stats(false)).unwrap();
        output.stats(&stats(false)).unwrap();
        assert_eq!(output.unwritten(), 2);
        std::fs::create_dir(&dir).unwrap();
        output.stats(&stats(true)).unwrap();
        assert!(output.refusing.is_none());
        let fresh = std::fs::read_to_string(&path).unwrap();
        assert_eq!(fresh.lines().count(), 1, "{fresh}");
        assert!(fresh.contains("\"unwritten\":2,\"final\":true"), "{fresh}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    fn ftp_event(from: ftp::Side, event: ControlEvent) -> KernelEvent {
        KernelEvent {
            boot_ns: 1,
            cpu: 0,
            current: Task {
                pid: 0,
                comm: "".into(),
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
            seen_opening: false,
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
        use ftp::{Side::Client, Side::Server, Verb};
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
            assert_eq!(line.as_object().unwrap().len(), 26, "{line}");
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
        let mut event = ftp_event(ftp::Side::Client, ControlEvent::Encrypted);
        event.kind = EventKind::ControlSegment(Box::new(crate::event::Segment {
            cookie: 1,
            outgoing: false,
            seq: 0,
            payload_len: 4,
            redacted: false,
            payload: crate::event::Payload::new(b"NOOP"),
            tail_at: None,
            mark: None,
            decrypted: false,
        }));
        for format in [Format::Json, Format::Text] {
            let shared = Shared::default();
            let mut output = Output::new(format, Box::new(shared.clone()));
            let who = Attribution {
                socket: None,
                owner: None,
                seen_opening: false,
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

    /// Issue 11, finding 5: a process name (any local user can set one) and
    /// a user name (the peer's) reach the text escaped, bidi overrides too.
    #[test]
    fn hostile_names_cannot_drive_the_terminal() {
        let shared = Shared::default();
        let mut output = Output::new(Format::Text, Box::new(shared.clone()));
        let mut event = ftp_event(
            ftp::Side::Client,
            ControlEvent::Command {
                verb: ftp::Verb::User,
                arg: Some("root\u{202e}gnp.exe".into()),
            },
        );
        event.kind = EventKind::DESTROYED;
        let who = Attribution {
            socket: Some(1),
            owner: Some(Task {
                pid: 7,
                comm: "\u{1b}]0;pwned\u{7}".into(),
            }),
            seen_opening: false,
        };
        output
            .event("ts", &event, Side::Client, &who, None)
            .unwrap();
        let mut s = crate::session::script::Script::new();
        let control = s.connect("192.0.2.2:40000", "192.0.2.1:21");
        s.command(&control, ftp::Verb::User, Some("\u{1b}[2Jroot\u{202e}txt"));
        s.fin(&control, ftp::Side::Server);
        let sessions = crate::session::script::sessions_of(
            &s.seen_from(&[ftp::Side::Client, ftp::Side::Server]),
            s.end_ns(),
        );
        output
            .session(&mut SessionRecord::new(
                &sessions[0],
                false,
                crate::session::cause::diagnose(&sessions[0]),
                &|ns| crate::kernel::clock::WallClock::with_offset(0).rfc3339(ns),
            ))
            .unwrap();
        output.flush().unwrap();
        let text = String::from_utf8(shared.0.lock().unwrap().clone()).unwrap();
        assert!(
            !text.contains('\u{1b}') && !text.contains('\u{7}'),
            "{text}"
        );
        assert!(!text.contains('\u{202e}'), "{text}");
        assert!(text.contains("\\u{1b}]0;pwned\\u{7}[7]"), "{text}");
        assert!(text.contains("user \\u{1b}[2Jroot\\u{202e}txt"), "{text}");
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
            EventKind::DESTROYED,
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
                seen_opening: false,
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

//! `ftptrace trace`: attach, stream events until told to stop, detach, flush,
//! print the final stats. What the records become is [`Pipeline`]'s job;
//! this drives it from the ring buffer (and keeps a recording if asked).

use std::{
    net::SocketAddr,
    sync::mpsc,
    time::{Duration, Instant},
};

use tokio::signal::unix::{Signal, SignalKind, signal};

use crate::{
    cli::TraceArgs,
    kernel::{
        allocator,
        clock::{WallClock, boot_ns},
        conntrack::Conntrack,
        decode::{self, Decoder},
        facts::{self, KernelFacts},
        loader::{CONTROL_CHANNEL_PROBE, Tracer},
        priority, privileges, sock_diag, tracefs,
    },
    metrics_server::{self, PageWanted},
    output::{HostLine, Origin, Output, PortsLine, Start, metrics::RingLevel, rotation::Rotation},
    pipeline::{KernelLoss, NatLookup, Pipeline},
    ports::ACTIVE_DATA_PORT,
    recording::{Meta, Recorder, Seeds},
    service_manager::Notifier,
    session::Tuple,
};

/// How often the ring buffer is drained while records come. The programs
/// submit without waking user space (a wakeup per event would cost more
/// than the event), so this bounds the delay from kernel to output line:
/// at 10 ms the median line was 5 ms late and none under 10 ms could be
/// promised. A drain costs a timer wakeup and a write.
const DRAIN_INTERVAL: Duration = Duration::from_millis(2);

/// After a drain that found nothing the next waits twice as long, up to
/// this: an idle tracer wakes ten times a second (sessions that went quiet
/// still end, announcements still expire), and the first record after a
/// quiet spell waits at most this long.
const IDLE_DRAIN_INTERVAL: Duration = Duration::from_millis(100);

/// How often (at a drain) the loss counters are read: a syscall per
/// program, not worth making at every drain.
const LOSS_CHECK_INTERVAL: Duration = Duration::from_millis(100);

/// Records taken from the ring buffer per drain at most: under a flood the
/// loop yields to the clock and the signals (a SIGTERM, the session
/// expiry) between drains; what stays in the ring is taken next time, and
/// what does not fit there is counted as lost by the programs.
const MAX_RECORDS_PER_DRAIN: usize = 50_000;

pub fn run(args: &TraceArgs) -> anyhow::Result<()> {
    let ports = args.port_set();
    let tls = args.tls_watch();
    if let Some(why) = tls.invalid() {
        anyhow::bail!(why);
    }
    // Open the output first: a bad path is a usage error worth reporting
    // before touching the kernel.
    let notifier = Notifier::from_env()?;
    let metrics_listener = args.metrics.map(metrics_server::bind).transpose()?;
    let rotation = args.output_max_size.map(|max_bytes| Rotation {
        max_bytes,
        keep: args.output_keep,
    });
    let mut output = Output::open(args.format(), args.output.as_deref())?
        .with_rotation(rotation)
        .with_origin(this_run()?);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .enable_io()
        .build()?;
    // From here on a signal is handled (before the start line, which says
    // the run began): SIGINT and SIGTERM end it cleanly, SIGHUP (a dropped
    // SSH session, logrotate) flushes and reopens the output, SIGUSR1 asks
    // for a summary line, SIGUSR2 holds the output file's writes until the
    // next SIGHUP (logrotate's `copytruncate`).
    let signals = {
        let _runtime = runtime.enter();
        Signals::install()?
    };
    privileges::check()?;
    let tracefs = tracefs::find_or_mount()?;
    let facts = KernelFacts::read(&tracefs)?;
    allocator::return_freed_memory();
    if let Some(set_state) = facts
        .probes
        .iter()
        .find(|p| p.probe.name == "inet_sock_set_state")
        && let Err(reason) = &set_state.program
    {
        anyhow::bail!("cannot trace: {reason}");
    }
    let decoder = Decoder::new(facts.names.clone());
    for (name, what) in privileges::optional_missing(privileges::effective()?) {
        log::warn!("without {name}, off: {what}");
    }
    let mut tracer = Tracer::load(&facts, &ports, args.ring_buffer_bytes(), &tls)?;
    allocator::return_freed_memory();
    for probe in tracer.probes.iter().filter(|p| !p.attached) {
        log::warn!(
            "{} not attached: {}",
            probe.name,
            probe.reason.as_deref().unwrap_or("unknown reason")
        );
    }
    let reads_control = tracer
        .probes
        .iter()
        .any(|p| p.name == CONTROL_CHANNEL_PROBE && p.attached);
    if ports.passive.is_none() && !reads_control {
        log::info!(
            "the control channel cannot be read and no --passive-ports was given, \
             so passive data connections are not traced (vsftpd: pasv_min_port-pasv_max_port)"
        );
    }
    let start = Start {
        ts: crate::kernel::clock::now().to_string(),
        version: env!("CARGO_PKG_VERSION").into(),
        kernel: facts.release.clone(),
        ports: PortsLine {
            control: ports.control.clone(),
            active_data: ACTIVE_DATA_PORT,
            passive: ports.passive.as_ref().map(|r| [*r.start(), *r.end()]),
        },
        probes: tracer.probes.clone(),
    };
    let clock = WallClock::now()?;
    let origin = output.origin().clone();
    let session_prefix = origin.run.clone();
    let recorder = match &args.record {
        Some(path) => Some(Recorder::create(
            path,
            &Meta {
                wire_version: ftptrace_common::WIRE_VERSION,
                ftptrace: env!("CARGO_PKG_VERSION").into(),
                kernel: facts.release.clone(),
                clock_offset_ns: clock.offset_ns(),
                session_prefix: session_prefix.clone(),
                origin: Some(origin),
                filter: args.filter.wanted(),
                control_ports: ports.control.clone(),
                passive_ports: start.ports.passive,
                start: start.clone(),
                names: (&facts.names).into(),
                max_sessions: args.max_sessions,
                repeat_failures: args.repeat_failures,
                repeat_window_s: args.repeat_window.get(),
            },
        )?),
        None => None,
    };
    output.start(&start)?;
    // Every program attached, the start line out: ready.
    Notifier::tell(
        notifier.as_ref(),
        &format!(
            "READY=1\nSTATUS=tracing FTP on ports {}",
            start
                .ports
                .control
                .iter()
                .map(u16::to_string)
                .collect::<Vec<_>>()
                .join(",")
        ),
    );

    let mut stream = Stream {
        pipeline: Pipeline::new(decoder, clock, ports, &session_prefix)
            .starting_at(crate::kernel::clock::boot_ns()?)
            .with_max_sessions(args.max_sessions)
            .with_pattern_rules(args.pattern_rules())
            .with_nat_lookup(Box::new(LiveNat::spawn()))
            .with_filter(args.filter.wanted()),
        recorder,
        ring_peak: 0,
        buffer: Vec::new(),
        loss_checked: Instant::now(),
    };
    stream.seed(&mut output)?;
    // Without CAP_SYS_NICE the warning above said so.
    if let Err(e) = priority::raise()
        && privileges::has(privileges::CAP_SYS_NICE)
    {
        log::warn!("could not raise its scheduling priority: {e}");
    }
    // Attached and seeded: from here the run only reads its maps and the
    // ring buffer, and parses what strangers sent.
    if let Err(e) = privileges::keep_only(&privileges::KEPT_WHILE_RUNNING) {
        log::warn!("could not drop capabilities after attaching: {e}");
    }
    let (pages, pages_wanted) = tokio::sync::mpsc::channel(4);
    if let Some(listener) = metrics_listener {
        let _runtime = runtime.enter();
        metrics_server::serve(listener, pages)?;
    }
    let result =
        runtime.block_on(stream.follow(&mut tracer, &mut output, args, signals, pages_wanted));
    Notifier::tell(
        notifier.as_ref(),
        "STOPPING=1\nSTATUS=writing the open sessions and the final stats",
    );
    // The run's last lines are written even in the middle of a hold.
    output.release();
    // Detach before the last drain, so the final stats count everything.
    tracer.detach();
    result?;
    // Everything still queued, however much (a record takes 64 bytes or
    // more of the ring): nothing refills it now.
    let records_at_most = args.ring_buffer_bytes() as usize / 64;
    for _ in 0..=records_at_most / MAX_RECORDS_PER_DRAIN {
        if stream.drain(&mut tracer, &mut output)? < MAX_RECORDS_PER_DRAIN {
            break;
        }
    }
    stream.note_loss(&tracer)?;
    stream.pipeline.finish(&mut output)?;
    if let Some(recorder) = &mut stream.recorder {
        recorder.finish()?;
    }
    warn_of_misses(&tracer)?;
    stream.stats(&tracer, &mut output, true)?;
    if output.unwritten() > 0 {
        // The final stats may be among them: say it where it is read.
        log::warn!(
            "{} lines could not be written to the output file",
            output.unwritten()
        );
    }
    Ok(())
}

/// Names the programs behind the final stats' `missed`, for whoever has to
/// tell an interrupt storm from a program that nests in itself.
fn warn_of_misses(tracer: &Tracer) -> anyhow::Result<()> {
    let misses = tracer.misses_by_program()?;
    if misses.is_empty() {
        return Ok(());
    }
    let each: Vec<String> = misses
        .iter()
        .map(|(name, n)| format!("{name} {n}"))
        .collect();
    log::warn!(
        "the kernel skipped programs already running on the CPU: {} \
         (stats: missed, less {} their nested copies took)",
        each.join(", "),
        tracer.rescued()?
    );
    Ok(())
}

/// The signals a run handles.
struct Signals {
    interrupt: Signal,
    terminate: Signal,
    hangup: Signal,
    /// SIGUSR1: a `summary` line.
    summary: Signal,
    /// SIGUSR2: hold the output file's writes until SIGHUP (logrotate's
    /// `copytruncate`: `Output::hold`).
    hold: Signal,
}

impl Signals {
    /// Must run inside the runtime.
    fn install() -> anyhow::Result<Self> {
        Ok(Self {
            interrupt: signal(SignalKind::interrupt())?,
            terminate: signal(SignalKind::terminate())?,
            hangup: signal(SignalKind::hangup())?,
            summary: signal(SignalKind::user_defined1())?,
            hold: signal(SignalKind::user_defined2())?,
        })
    }
}

/// The live run: the pipeline, fed from the tracer's ring buffer.
struct Stream {
    pipeline: Pipeline,
    recorder: Option<Recorder>,
    /// The record being processed, copied out of the ring buffer: the
    /// control-channel parser masks secrets in it before it is recorded.
    buffer: Vec<u8>,
    /// When the loss counters were last read.
    loss_checked: Instant,
    /// The most bytes the ring held when the reader woke, this run.
    ring_peak: u64,
}

impl Stream {
    async fn follow(
        &mut self,
        tracer: &mut Tracer,
        output: &mut Output,
        args: &TraceArgs,
        mut signals: Signals,
        mut pages_wanted: tokio::sync::mpsc::Receiver<PageWanted>,
    ) -> anyhow::Result<()> {
        let mut wait = DRAIN_INTERVAL;
        let mut due = tokio::time::Instant::now() + wait;
        let stats_every = Duration::from_secs(args.stats_interval.get());
        let mut stats =
            tokio::time::interval_at(tokio::time::Instant::now() + stats_every, stats_every);
        let until = args.duration().map(|d| tokio::time::Instant::now() + d);
        let deadline = async {
            match until {
                Some(at) => tokio::time::sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        tokio::pin!(deadline);
        loop {
            tokio::select! {
                _ = signals.interrupt.recv() => return Ok(()),
                _ = signals.terminate.recv() => return Ok(()),
                _ = signals.hangup.recv() => {
                    if let Err(error) = output.reopen() {
                        // The old file keeps the lines; say why once per HUP.
                        log::warn!("SIGHUP: {error:#}; still writing where it was");
                    }
                }
                _ = signals.summary.recv() => self.summary(output)?,
                _ = signals.hold.recv() => {
                    if let Err(error) = output.hold() {
                        log::warn!("SIGUSR2: {error:#}; not held");
                    }
                }
                Some(wanted) = pages_wanted.recv() => {
                    let page = self.pipeline.metrics_page(
                        self.loss(tracer)?,
                        output.unwritten(),
                        RingLevel {
                            size: tracer.ring_fill.size(),
                            used: tracer.ring_fill.used(),
                            peak: self.ring_peak,
                        },
                        &tracer.probes,
                        wanted.openmetrics,
                    );
                    // A scraper that hung up meanwhile wants nothing.
                    let _ = wanted.reply.send(page);
                }
                () = &mut deadline => return Ok(()),
                () = tokio::time::sleep_until(due) => {
                    let records = self.drain(tracer, output)?;
                    wait = if records > 0 {
                        DRAIN_INTERVAL
                    } else {
                        (wait * 2).min(IDLE_DRAIN_INTERVAL)
                    };
                    due += wait;
                    // Behind (a long drain): from now, not in a burst.
                    due = due.max(tokio::time::Instant::now());
                }
                _ = stats.tick() => self.stats(tracer, output, false)?,
            }
        }
    }

    /// Charges kernel events lost or skipped since the last look to every
    /// open session: its record then says it may lack some.
    fn note_loss(&mut self, tracer: &Tracer) -> anyhow::Result<()> {
        let total = tracer.lost()? + tracer.missed()?;
        // After the read: the count holds no loss later than this.
        let at_ns = boot_ns()?;
        self.pipeline.note_loss(total, at_ns);
        if let Some(recorder) = &mut self.recorder {
            recorder.loss(total, at_ns)?;
        }
        Ok(())
    }

    /// Processes what the ring buffer holds, up to [`MAX_RECORDS_PER_DRAIN`]
    /// records; returns how many.
    fn drain(&mut self, tracer: &mut Tracer, output: &mut Output) -> anyhow::Result<usize> {
        // Before this batch: its sessions were open when the loss happened.
        if self.loss_checked.elapsed() >= LOSS_CHECK_INTERVAL {
            self.loss_checked = Instant::now();
            self.note_loss(tracer)?;
        }
        self.ring_peak = self.ring_peak.max(tracer.ring_fill.used());
        let mut records = 0;
        while records < MAX_RECORDS_PER_DRAIN {
            let Some(item) = tracer.ring.next() else {
                break;
            };
            records += 1;
            self.buffer.clear();
            self.buffer.extend_from_slice(&item);
            drop(item);
            self.pipeline.record(&mut self.buffer, output)?;
            if let Some(recorder) = &mut self.recorder {
                recorder.record(&self.buffer[..decode::used_len(&self.buffer)])?;
            }
        }
        // What remains of a control segment is not kept past its use.
        self.buffer.fill(0);
        let now = boot_ns()?;
        if let Some(recorder) = &mut self.recorder {
            recorder.symbols(&self.pipeline.take_new_symbols())?;
            recorder.nat(&self.pipeline.take_nat_answers())?;
            recorder.end_batch(now)?;
        }
        for update in self.pipeline.end_batch(now, output)? {
            tracer.apply_mark(update)?;
        }
        Ok(records)
    }

    /// Seeds the sessions of control connections open before tracing began.
    /// The programs are attached already, so a connection that opens now is
    /// seen either here or by its events (or both: then they merge).
    fn seed(&mut self, output: &mut Output) -> anyhow::Result<()> {
        let control = self.pipeline.control_ports().to_vec();
        let (open, skipped) = sock_diag::open_control_connections(&control);
        if let Some(first) = skipped.first() {
            log::warn!(
                "sessions open before the start are not seeded in {} network \
                 namespace(s) ({first}; entering another namespace needs CAP_SYS_ADMIN); \
                 sessions that begin from now on are followed there",
                skipped.len()
            );
        }
        let now_ns = boot_ns()?;
        if let Some(recorder) = &mut self.recorder {
            recorder.seeds(&Seeds {
                now_ns,
                open: open.clone(),
            })?;
        }
        self.pipeline.seed(&open, now_ns, output)
    }

    /// The sessions so far (SIGUSR1), recorded so that a replay says it too.
    fn summary(&mut self, output: &mut Output) -> anyhow::Result<()> {
        if let Some(recorder) = &mut self.recorder {
            recorder.summary()?;
        }
        output.summary(&self.pipeline.summary())
    }

    /// The kernel's counts of what it lost or skipped, now.
    fn loss(&self, tracer: &Tracer) -> anyhow::Result<KernelLoss> {
        Ok(KernelLoss {
            lost: tracer.lost()?,
            missed: tracer.missed()?,
            unreadable: tracer.unreadable()?,
            throttled: tracer.throttled()?,
        })
    }

    fn stats(
        &mut self,
        tracer: &Tracer,
        output: &mut Output,
        is_final: bool,
    ) -> anyhow::Result<()> {
        let loss = self.loss(tracer)?;
        if let Some(recorder) = &mut self.recorder {
            recorder.stats(loss, is_final)?;
        }
        output.stats(&self.pipeline.stats(loss, is_final))
    }
}

/// The live run's NAT lookup: the connection tracking of every network
/// namespace on the host, asked on a thread of its own. ctnetlink wants
/// CAP_NET_ADMIN on every question and entering a namespace CAP_SYS_ADMIN,
/// which the thread that parses strangers' bytes drops once attached; this
/// thread keeps those two and nothing else, and takes only pairs of
/// addresses. One warning for namespaces it cannot read.
struct LiveNat {
    questions: mpsc::Sender<(SocketAddr, SocketAddr)>,
    /// Each answer, with the warnings the lookup gathered.
    answers: mpsc::Receiver<(Option<Tuple>, Vec<String>)>,
    warned: bool,
    /// The thread stopped answering (it died, or a question timed out):
    /// from then on connections through a NAT stay two sessions.
    gone: bool,
}

/// How long a question waits: conntrack answers in microseconds, and a
/// namespace's socket times out after 100 ms.
const NAT_ANSWER_TIMEOUT: Duration = Duration::from_secs(2);

impl LiveNat {
    /// Starts the thread; call it before the run drops its capabilities.
    fn spawn() -> Self {
        let (questions, asked) = mpsc::channel::<(SocketAddr, SocketAddr)>();
        let (answer, answers) = mpsc::channel();
        let spawned = std::thread::Builder::new()
            .name("ftptrace-nat".into())
            .spawn(move || {
                // Capabilities are per thread: this one keeps only what
                // its questions need.
                let kept = [privileges::CAP_NET_ADMIN, privileges::CAP_SYS_ADMIN];
                if let Err(e) = privileges::keep_only(&kept) {
                    log::warn!("the conntrack thread could not drop capabilities: {e}");
                }
                let mut conntrack = Conntrack::new();
                while let Ok((local, peer)) = asked.recv() {
                    let found = conntrack.before_nat(local, peer);
                    if answer.send((found, conntrack.take_warnings())).is_err() {
                        break;
                    }
                }
            });
        Self {
            questions,
            answers,
            warned: false,
            gone: spawned.is_err(),
        }
    }
}

impl NatLookup for LiveNat {
    fn before_nat(
        &mut self,
        local: SocketAddr,
        peer: SocketAddr,
    ) -> Option<(SocketAddr, SocketAddr)> {
        if self.gone {
            return None;
        }
        let answer = self
            .questions
            .send((local, peer))
            .ok()
            .and_then(|()| self.answers.recv_timeout(NAT_ANSWER_TIMEOUT).ok());
        let Some((found, warnings)) = answer else {
            self.gone = true;
            log::warn!(
                "the connection tracking lookup stopped answering: connections \
                 through a NAT on this host are reported as two sessions, one per end, from now on"
            );
            return None;
        };
        if !self.warned
            && let Some(first) = warnings.first()
        {
            self.warned = true;
            log::warn!(
                "cannot read the connection tracking of {} network namespace(s) \
                 ({first}): a connection through a NAT there is reported as two sessions, one per end",
                warnings.len()
            );
        }
        found
    }
}

/// This host by its name, and a new run id: 128 random bits from the
/// kernel (a version 4 UUID's, in hex). Session ids are `<run>-<n>`, so ids
/// from every host and run feeding one pipeline do not collide.
pub fn this_run() -> anyhow::Result<Origin> {
    Ok(Origin {
        host: HostLine {
            name: facts::host_name()?,
        },
        run: facts::random_id()?,
    })
}

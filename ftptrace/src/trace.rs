//! `ftptrace trace`: attach, stream events until told to stop, detach, flush,
//! print the final stats.

use std::time::Duration;

use tokio::signal::unix::{SignalKind, signal};

use crate::{
    attribution::SocketTable,
    cli::TraceArgs,
    clock::WallClock,
    control_channel::ControlChannels,
    decode::Decoder,
    ebpf_loader::Tracer,
    event::{EventKind, KernelEvent},
    ftp_control::Side as FtpSide,
    kernel_facts::KernelFacts,
    output::{Output, PortsLine, Side, Start, Stats},
    ports::{ACTIVE_DATA_PORT, PortSet},
    privileges,
    session::{Placement, Session, Sessions},
    session_record::SessionRecord,
    socket_inventory, tracefs,
};

/// How often the ring buffer is drained. The programs submit without waking
/// user space (a wakeup per event would cost more than the event), so this
/// bounds the delay from kernel to output line.
const DRAIN_INTERVAL: Duration = Duration::from_millis(10);

pub fn run(args: &TraceArgs) -> anyhow::Result<()> {
    let ports = args.port_set();
    // Open the output first: a bad path is a usage error worth reporting
    // before touching the kernel.
    let mut output = Output::open(args.format(), args.output.as_deref())?;
    privileges::check()?;
    let tracefs = tracefs::find_or_mount()?;
    let facts = KernelFacts::read(&tracefs)?;
    if let Some(set_state) = facts
        .probes
        .iter()
        .find(|p| p.probe.name == "inet_sock_set_state")
        && let Err(reason) = &set_state.program
    {
        anyhow::bail!("cannot trace: {reason}");
    }
    let decoder = Decoder::new(facts.names.clone());
    let mut tracer = Tracer::load(&facts, &ports)?;
    for probe in tracer.probes.iter().filter(|p| !p.attached) {
        eprintln!(
            "ftptrace: warning: {} not attached: {}",
            probe.name,
            probe.reason.as_deref().unwrap_or("unknown reason")
        );
    }
    let reads_control = tracer
        .probes
        .iter()
        .any(|p| p.name == crate::ebpf_loader::CONTROL_CHANNEL_PROBE && p.attached);
    if ports.passive.is_none() && !reads_control {
        eprintln!(
            "ftptrace: note: the control channel cannot be read and no --passive-ports was given, \
             so passive data connections are not traced (vsftpd: pasv_min_port-pasv_max_port)"
        );
    }
    output.start(&Start {
        version: env!("CARGO_PKG_VERSION"),
        kernel: &facts.release,
        ports: PortsLine {
            control: ports.control.clone(),
            active_data: ACTIVE_DATA_PORT,
            passive: ports.passive.as_ref().map(|r| [*r.start(), *r.end()]),
        },
        probes: &tracer.probes,
    })?;

    let mut stream = Stream {
        decoder,
        sockets: SocketTable::default(),
        control: ControlChannels::default(),
        clock: WallClock::now()?,
        sessions: Sessions::new(ports.clone(), session_id_prefix()),
        ports,
        events: 0,
        undecodable: 0,
        loss_noted: 0,
        drains: 0,
    };
    stream.seed(&mut output)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .enable_io()
        .build()?;
    let result = runtime.block_on(stream.follow(&mut tracer, &mut output, args));
    // Detach before the last drain, so the final stats count everything.
    tracer.detach();
    result?;
    stream.drain(&mut tracer, &mut output)?;
    stream.note_loss(&tracer)?;
    stream.finish(&mut output)?;
    stream.stats(&tracer, &mut output, true)
}

struct Stream {
    decoder: Decoder,
    sockets: SocketTable,
    control: ControlChannels,
    clock: WallClock,
    ports: PortSet,
    sessions: Sessions,
    events: u64,
    undecodable: u64,
    /// Lost and skipped kernel events already charged to open sessions.
    loss_noted: u64,
    drains: u64,
}

/// Every this many drains (10 ms each) the loss counters are read: a
/// syscall per program, not worth making every time.
const LOSS_CHECK_EVERY: u64 = 10;

impl Stream {
    async fn follow(
        &mut self,
        tracer: &mut Tracer,
        output: &mut Output,
        args: &TraceArgs,
    ) -> anyhow::Result<()> {
        let mut interrupt = signal(SignalKind::interrupt())?;
        let mut terminate = signal(SignalKind::terminate())?;
        let mut drain = tokio::time::interval(DRAIN_INTERVAL);
        drain.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
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
                _ = interrupt.recv() => return Ok(()),
                _ = terminate.recv() => return Ok(()),
                () = &mut deadline => return Ok(()),
                _ = drain.tick() => self.drain(tracer, output)?,
                _ = stats.tick() => self.stats(tracer, output, false)?,
            }
        }
    }

    /// Charges kernel events lost or skipped since the last look to every
    /// open session: its record then says it may lack some.
    fn note_loss(&mut self, tracer: &Tracer) -> anyhow::Result<()> {
        let loss = tracer.lost()? + tracer.missed()?;
        if loss > self.loss_noted {
            self.sessions.note_loss(loss - self.loss_noted);
            self.loss_noted = loss;
        }
        Ok(())
    }

    fn drain(&mut self, tracer: &mut Tracer, output: &mut Output) -> anyhow::Result<()> {
        // Before this batch: its sessions were open when the loss happened.
        self.drains += 1;
        if self.drains.is_multiple_of(LOSS_CHECK_EVERY) {
            self.note_loss(tracer)?;
        }
        let mut wrote = false;
        let mut evicted = Vec::new();
        while let Some(item) = tracer.ring.next() {
            let decoded = self.decoder.decode(&item);
            drop(item);
            let event = match decoded {
                Ok(event) => event,
                Err(error) => {
                    if self.undecodable == 0 {
                        eprintln!(
                            "ftptrace: warning: cannot decode a kernel record ({error}); counting them in stats"
                        );
                    }
                    self.undecodable += 1;
                    continue;
                }
            };
            let who = self.sockets.observe(&event);
            let ts = self.clock.rfc3339(event.boot_ns);
            match &event.kind {
                EventKind::ControlSegment(segment) => {
                    self.sessions.observe(&event, &mut evicted);
                    let local_is_server = self.ports.control.contains(&event.local.port());
                    for kind in self.control.segment(event.sock, local_is_server, segment) {
                        let said = event.with_kind(kind);
                        let place = self.sessions.observe(&said, &mut evicted);
                        output.event(
                            &ts,
                            &said,
                            &self.side(&said, place.as_ref()),
                            &who,
                            place.as_ref(),
                        )?;
                        self.events += 1;
                        wrote = true;
                    }
                    continue;
                }
                // Never a line: the session's timeline shows it.
                EventKind::ResetTtl { .. } => {
                    self.sessions.observe(&event, &mut evicted);
                    continue;
                }
                EventKind::Destroy => {
                    if let Some(sk) = event.sock {
                        self.control.forget_socket(sk);
                    }
                }
                _ => {}
            }
            let place = self.sessions.observe(&event, &mut evicted);
            output.event(
                &ts,
                &event,
                &self.side(&event, place.as_ref()),
                &who,
                place.as_ref(),
            )?;
            self.events += 1;
            wrote = true;
        }
        for session in evicted {
            self.report(&session, true, output)?;
        }
        let now = boot_ns()?;
        for session in self.sessions.tick(now) {
            self.report(&session, false, output)?;
        }
        for update in self.sessions.take_port_updates() {
            tracer.set_expected(update.port, update.expected)?;
        }
        if wrote {
            output.flush()?;
        }
        Ok(())
    }

    /// The end of this host's socket: from its session once placed, else
    /// from the configured ports.
    fn side(&self, event: &KernelEvent, place: Option<&Placement>) -> Side {
        match place.map(|p| p.end) {
            Some(FtpSide::Server) => Side::Server,
            Some(FtpSide::Client) => Side::Client,
            // A listener on an announced passive port is the server's.
            None if self.ports.contains(event.local.port())
                || self.sessions.expects(event.local.port()) =>
            {
                Side::Server
            }
            None => Side::Client,
        }
    }

    fn report(&self, session: &Session, evicted: bool, output: &mut Output) -> anyhow::Result<()> {
        let clock = self.clock;
        output.session(&SessionRecord::new(session, evicted, &|ns| {
            clock.rfc3339(ns)
        }))
    }

    /// Seeds the sessions of control connections open before tracing began.
    /// The programs are attached already, so a connection that opens now is
    /// seen either here or by its events (or both: then they merge).
    fn seed(&mut self, output: &mut Output) -> anyhow::Result<()> {
        let (open, skipped) = socket_inventory::open_control_connections(&self.ports.control);
        if let Some(first) = skipped.first() {
            eprintln!(
                "ftptrace: warning: sessions open before the start are not seeded in {} network \
                 namespace(s) ({first}; entering another namespace needs CAP_SYS_ADMIN); \
                 sessions that begin from now on are followed there",
                skipped.len()
            );
        }
        let now = boot_ns()?;
        let mut evicted = Vec::new();
        for connection in &open {
            self.sessions.seed(connection, now, &mut evicted);
        }
        for session in evicted {
            self.report(&session, true, output)?;
        }
        Ok(())
    }

    /// Reports the sessions still open as the run ends.
    fn finish(&mut self, output: &mut Output) -> anyhow::Result<()> {
        for session in self.sessions.drain() {
            self.report(&session, false, output)?;
        }
        Ok(())
    }

    fn stats(&self, tracer: &Tracer, output: &mut Output, is_final: bool) -> anyhow::Result<()> {
        output.stats(&Stats {
            events: self.events,
            lost: tracer.lost()?,
            missed: tracer.missed()?,
            undecodable: self.undecodable,
            sockets: self.sockets.len(),
            sessions: self.sessions.started,
            sessions_open: self.sessions.open_count(),
            sessions_evicted: self.sessions.evicted,
            is_final,
        })
    }
}

/// Session ids are `<run>-<n>`: the run is the start time in seconds (hex),
/// so ids from two runs feeding one log pipeline do not collide.
fn session_id_prefix() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    format!("{secs:x}")
}

fn boot_ns() -> anyhow::Result<u64> {
    let now = nix::time::clock_gettime(nix::time::ClockId::CLOCK_BOOTTIME)?;
    Ok(u64::try_from(now.tv_sec())? * 1_000_000_000 + u64::try_from(now.tv_nsec())?)
}

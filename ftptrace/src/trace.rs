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
    event::EventKind,
    kernel_facts::KernelFacts,
    output::{Output, PortsLine, Side, Start, Stats},
    ports::{ACTIVE_DATA_PORT, PortSet},
    privileges, tracefs,
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
    if ports.passive.is_none() {
        eprintln!(
            "ftptrace: note: no --passive-ports given, so passive data connections are not traced \
             (vsftpd: pasv_min_port-pasv_max_port)"
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
        ports,
        events: 0,
        undecodable: 0,
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .enable_io()
        .build()?;
    let result = runtime.block_on(stream.follow(&mut tracer, &mut output, args));
    // Detach before the last drain, so the final stats count everything.
    tracer.detach();
    result?;
    stream.drain(&mut tracer, &mut output)?;
    stream.stats(&tracer, &mut output, true)
}

struct Stream {
    decoder: Decoder,
    sockets: SocketTable,
    control: ControlChannels,
    clock: WallClock,
    ports: PortSet,
    events: u64,
    undecodable: u64,
}

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

    fn drain(&mut self, tracer: &mut Tracer, output: &mut Output) -> anyhow::Result<()> {
        let mut wrote = false;
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
            let side = if self.ports.contains(event.local.port()) {
                Side::Server
            } else {
                Side::Client
            };
            let ts = self.clock.rfc3339(event.boot_ns);
            match &event.kind {
                EventKind::ControlSegment(segment) => {
                    let local_is_server = self.ports.control.contains(&event.local.port());
                    for kind in self.control.segment(event.sock, local_is_server, segment) {
                        output.event(&ts, &event.with_kind(kind), &side, &who)?;
                        self.events += 1;
                        wrote = true;
                    }
                    continue;
                }
                EventKind::Destroy => {
                    if let Some(sk) = event.sock {
                        self.control.forget_socket(sk);
                    }
                }
                _ => {}
            }
            output.event(&ts, &event, &side, &who)?;
            self.events += 1;
            wrote = true;
        }
        if wrote {
            output.flush()?;
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
            is_final,
        })
    }
}

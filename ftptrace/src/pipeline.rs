//! From kernel records to lines: decode, attribute, parse the control
//! channel, file into sessions, print. Pure: the live tracer and `replay`
//! drive it the same way (records in batches, each batch ending at a boot
//! time), so a recording replays to the same lines.

use std::net::SocketAddr;

use crate::{
    event::{EventKind, KernelEvent, KernelMark, OpenConnection},
    ftp::Side,
    kernel::{
        clock::WallClock,
        decode::{self, Decoder},
        probes::ProbeStatus,
    },
    line_filter::{EventFate, LineFilter, Wanted},
    output::{
        Output, PatternLine, SessionRecord, Stats,
        lines::{
            DroppedLine, FAILING_CLIENTS_LISTED, FailingClient, HANDSHAKE_SERVERS_LISTED,
            HandshakeLine, Summary,
        },
        metrics::{self, Metrics},
    },
    ports::{Mark, MarkUpdate, PortSet},
    session::{
        Placement, Session, Sessions, Tuple,
        attribution::{Attribution, SocketTable},
        cause::diagnose,
        control_stream::ControlChannels,
        dns_flips::DnsFlips,
        handshakes::Handshakes,
        patterns::{PatternRules, Patterns},
        tally::Tally,
    },
    tls_handshake::HandshakeRate,
};

/// What the kernel said it lost or skipped, as the final and periodic
/// `stats` lines report it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct KernelLoss {
    /// Ring buffer reservations that failed.
    pub lost: u64,
    /// Program runs the kernel skipped (recursion).
    pub missed: u64,
    /// Program runs that could not read what they needed.
    #[serde(default)]
    pub unreadable: u64,
    /// Control segments a connection's budget left out.
    #[serde(default)]
    pub throttled: u64,
}

/// A NAT's own account of a connection (the live run asks conntrack, a
/// replay reads the recorded answers).
pub trait NatLookup {
    /// For the connection whose accepting end is `local` and sees its peer
    /// as `peer`: the tuple its connecting end sees, (its own address, the
    /// address it dialled), when a NAT translated it.
    fn before_nat(
        &mut self,
        local: SocketAddr,
        peer: SocketAddr,
    ) -> Option<(SocketAddr, SocketAddr)>;
}

/// Asks nothing: no NAT is consulted.
pub struct NoNat;

impl NatLookup for NoNat {
    fn before_nat(&mut self, _: SocketAddr, _: SocketAddr) -> Option<Tuple> {
        None
    }
}

/// One question put to the NAT and its answer, kept for a recording.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct NatAnswer {
    pub local: SocketAddr,
    pub peer: SocketAddr,
    pub before_nat: Option<Tuple>,
}

pub struct Pipeline {
    decoder: Decoder,
    sockets: SocketTable,
    control: ControlChannels,
    clock: WallClock,
    ports: PortSet,
    sessions: Sessions,
    events: u64,
    undecodable: u64,
    /// Sessions evicted during the current batch, reported at its end.
    evicted: Vec<Session>,
    wrote: bool,
    patterns: Patterns,
    dns_flips: DnsFlips,
    handshakes: Handshakes,
    tally: Tally,
    metrics: Metrics,
    filter: LineFilter,
    tls_handshakes: HandshakeRate,
    nat: Box<dyn NatLookup>,
    /// Answers since the last [`Self::take_nat_answers`].
    nat_answers: Vec<NatAnswer>,
    /// Boot time of the latest [`Self::end_batch`], or of the start.
    last_batch_ns: u64,
}

impl Pipeline {
    pub fn new(decoder: Decoder, clock: WallClock, ports: PortSet, session_prefix: &str) -> Self {
        Self {
            decoder,
            sockets: SocketTable::default(),
            control: ControlChannels::default(),
            clock,
            sessions: Sessions::new(ports.clone(), session_prefix),
            ports,
            events: 0,
            undecodable: 0,
            evicted: Vec::new(),
            wrote: false,
            patterns: Patterns::new(PatternRules::default()),
            dns_flips: DnsFlips::default(),
            handshakes: Handshakes::default(),
            tally: Tally::default(),
            metrics: Metrics::default(),
            filter: LineFilter::default(),
            tls_handshakes: HandshakeRate::default(),
            nat: Box::new(NoNat),
            nat_answers: Vec::new(),
            last_batch_ns: 0,
        }
    }

    /// Only the lines `wanted` asks for are written (see [`LineFilter`]).
    pub fn with_filter(mut self, wanted: Wanted) -> Self {
        self.filter = LineFilter::new(wanted);
        self
    }

    /// The run began at boot time `ns`: a `stats` line before the first
    /// batch says so.
    pub fn starting_at(mut self, ns: u64) -> Self {
        self.last_batch_ns = ns;
        self
    }

    /// Where connections through a NAT on this host are looked up, so that
    /// both their ends make one session.
    pub fn with_nat_lookup(mut self, nat: Box<dyn NatLookup>) -> Self {
        self.nat = nat;
        self
    }

    /// The NAT's answers since the last call (for a recording).
    pub fn take_nat_answers(&mut self) -> Vec<NatAnswer> {
        std::mem::take(&mut self.nat_answers)
    }

    /// When failed sessions of one client make a `pattern` line.
    pub fn with_pattern_rules(mut self, rules: PatternRules) -> Self {
        self.patterns = Patterns::new(rules);
        self
    }

    /// Follows at most `max` sessions at once (the quietest is reported
    /// early past it, marked `evicted`).
    pub fn with_max_sessions(mut self, max: usize) -> Self {
        self.sessions.set_capacity(max);
        self
    }

    /// Seeds the sessions of control connections open before tracing began.
    pub fn seed(
        &mut self,
        open: &[OpenConnection],
        now_ns: u64,
        output: &mut Output,
    ) -> anyhow::Result<()> {
        let mut evicted = Vec::new();
        for connection in open {
            self.sessions.seed(connection, now_ns, &mut evicted);
        }
        for session in evicted {
            self.report(&session, true, output)?;
        }
        Ok(())
    }

    /// Charges kernel events lost or skipped so far (`total`, a running
    /// count, read before boot time `at_ns`) to every session open then:
    /// its record says it may lack some.
    pub fn note_loss(&mut self, total: u64, at_ns: u64) {
        self.sessions.note_loss(total, at_ns);
    }

    /// One ring buffer record. A control segment's bytes that may hold a
    /// secret are masked in `bytes` afterwards (the parser tells which).
    pub fn record(&mut self, bytes: &mut [u8], output: &mut Output) -> anyhow::Result<()> {
        let decoded = self.decoder.decode(bytes);
        match decoded {
            Ok(event) => self.event(event, Some(bytes), output),
            Err(error) => {
                self.undecodable(&error);
                Ok(())
            }
        }
    }

    /// A record that could not be decoded: counted in `stats`.
    pub fn undecodable(&mut self, error: &dyn std::fmt::Display) {
        if self.undecodable == 0 {
            log::warn!("cannot decode a kernel record ({error}); counting them in stats");
        }
        self.undecodable += 1;
    }

    /// One decoded record (a joined replay decodes each host's with its
    /// own decoder). A control segment's payload, masked where the parser
    /// saw a secret, is put back into `bytes` when given.
    pub fn event(
        &mut self,
        mut event: KernelEvent,
        bytes: Option<&mut [u8]>,
        output: &mut Output,
    ) -> anyhow::Result<()> {
        if let EventKind::DnsAnswer(answer) = &event.kind {
            // Never a line, nor a socket to follow: it names servers.
            if let Some(answer) = answer {
                self.sessions
                    .names
                    .learn(event.netns, answer, event.boot_ns);
            }
            return Ok(());
        }
        let who = self.sockets.observe(&event);
        let ts = self.clock.rfc3339(event.boot_ns);
        if let EventKind::ControlSegment(segment) = &mut event.kind {
            let local_is_server = self.ports.control.contains(&event.local.port());
            // What the kernel marked is known before the words are parsed,
            // so that the parser's announcement finds it held.
            let client = if local_is_server {
                event.remote.ip()
            } else {
                event.local.ip()
            };
            match segment.mark {
                Some(KernelMark::Passive(port)) => {
                    self.sessions
                        .kernel_marked(Mark::Passive(port), event.boot_ns);
                }
                Some(KernelMark::Active(port)) => {
                    self.sessions
                        .kernel_marked(Mark::Active(client, port), event.boot_ns);
                }
                None => {}
            }
            let said = self
                .control
                .segment(event.sock, local_is_server, who.seen_opening, segment);
            if let Some(bytes) = bytes {
                decode::put_control_payload(bytes, segment.payload.bytes());
            }
            self.sessions.observe(&event, &mut self.evicted);
            for kind in said {
                let said = event.with_kind(kind);
                let place = self.sessions.observe(&said, &mut self.evicted);
                let side = self.side(&said, place.as_ref());
                self.write_event(output, ts.as_str(), &said, side, &who, place.as_ref())?;
            }
            return Ok(());
        }
        match &event.kind {
            // Never a line: the session's timeline shows it.
            EventKind::ResetTtl { .. } => {
                self.sessions.observe(&event, &mut self.evicted);
                return Ok(());
            }
            EventKind::Destroy { .. } => {
                if let Some(sk) = event.sock {
                    self.control.forget_socket(sk);
                }
            }
            EventKind::TlsHandshake(handshake) if handshake.succeeded() => {
                self.tls_handshakes.note(event.boot_ns);
            }
            _ => {}
        }
        if let Some((local, peer)) = self.sessions.nat_question(&event) {
            let before_nat = self.nat.before_nat(local, peer);
            self.nat_answers.push(NatAnswer {
                local,
                peer,
                before_nat,
            });
            if let Some(outside) = before_nat {
                self.sessions.join_nat((peer, local), outside);
            }
        }
        let place = self.sessions.observe(&event, &mut self.evicted);
        let side = self.side(&event, place.as_ref());
        self.write_event(output, ts.as_str(), &event, side, &who, place.as_ref())
    }

    /// The end of a batch of records, at boot time `now_ns`: sessions
    /// evicted in it and sessions that ended by now are reported. Returns
    /// the changes the kernel's port map needs.
    pub fn end_batch(
        &mut self,
        now_ns: u64,
        output: &mut Output,
    ) -> anyhow::Result<Vec<MarkUpdate>> {
        self.last_batch_ns = self.last_batch_ns.max(now_ns);
        for session in std::mem::take(&mut self.evicted) {
            self.report(&session, true, output)?;
        }
        for session in self.sessions.tick(now_ns) {
            self.report(&session, false, output)?;
        }
        if std::mem::take(&mut self.wrote) {
            output.flush()?;
        }
        Ok(self.sessions.take_mark_updates())
    }

    /// Reports the sessions still open as the run ends.
    pub fn finish(&mut self, output: &mut Output) -> anyhow::Result<()> {
        for session in self.sessions.drain() {
            self.report(&session, false, output)?;
        }
        output.flush()
    }

    /// The `--metrics` page: the counts so far, and `loss`, `unwritten` and
    /// `probes` as the run knows them now.
    pub fn metrics_page(
        &self,
        loss: KernelLoss,
        unwritten: u64,
        ring: metrics::RingLevel,
        probes: &[ProbeStatus],
        openmetrics: bool,
    ) -> String {
        self.metrics.render(
            &metrics::Now {
                sessions_open: self.sessions.open_count(),
                lost: loss.lost,
                missed: loss.missed,
                unwritten,
                ring,
                probes,
            },
            openmetrics,
        )
    }

    /// What the sessions came to so far (SIGUSR1), as of the latest batch.
    pub fn summary(&self) -> Summary {
        Summary {
            ts: self.clock.rfc3339(self.last_batch_ns).to_string(),
            sessions: self.sessions.started,
            sessions_open: self.sessions.open_count(),
            by_cause: self
                .tally
                .by_cause()
                .into_iter()
                .map(|(cause, n)| (cause.to_owned(), n))
                .collect(),
            failing_clients: self
                .tally
                .top_failing(FAILING_CLIENTS_LISTED)
                .into_iter()
                .map(|(addr, sessions)| FailingClient { addr, sessions })
                .collect(),
            failing_clients_dropped: self.tally.clients_dropped,
        }
    }

    pub fn stats(&mut self, loss: KernelLoss, is_final: bool) -> Stats {
        Stats {
            // The latest batch's time: a replay's stats say the recorded run's.
            ts: self.clock.rfc3339(self.last_batch_ns).to_string(),
            events: self.events,
            lost: loss.lost,
            missed: loss.missed,
            undecodable: self.undecodable,
            unreadable: loss.unreadable,
            throttled: loss.throttled,
            sockets: self.sockets.len(),
            sessions: self.sessions.started,
            sessions_open: self.sessions.open_count(),
            sessions_evicted: self.sessions.evicted,
            dropped: DroppedLine {
                expectations: self.sessions.dropped.expectations,
                marks: self.sessions.dropped.marks,
                pending: self.sessions.dropped.pending,
                orphans: self.sessions.dropped.orphans,
                parsers: self.control.evicted(),
                sockets: self.sockets.forgotten(),
                patterns: self.patterns.unfollowed + self.dns_flips.unfollowed,
                dns_names: self.sessions.names.forgotten,
                held: self.filter.overflowed,
                handshakes: self.handshakes.uncounted,
            },
            handshakes: self
                .handshakes
                .worst(HANDSHAKE_SERVERS_LISTED)
                .into_iter()
                .map(|(server, t)| HandshakeLine {
                    server,
                    control: t.control,
                    control_retried: t.control_retried,
                    data: t.data,
                    data_retried: t.data_retried,
                })
                .collect(),
            tls_handshakes: self.tls_handshakes.total(),
            tls_handshakes_peak_per_s: self.tls_handshakes.take_peak(),
            // The writer's to count.
            unwritten: 0,
            is_final,
        }
    }

    pub fn control_ports(&self) -> &[u16] {
        &self.ports.control
    }

    /// The kernel symbols the decoder named since the last call (for a
    /// recording, which cannot read this boot's /proc/kallsyms later).
    pub fn take_new_symbols(&mut self) -> Vec<(u64, String)> {
        self.decoder.take_new_symbols()
    }

    /// The end of this host's socket: from its session once placed, else
    /// from the configured ports.
    fn side(&self, event: &KernelEvent, place: Option<&Placement>) -> Side {
        match place.map(|p| p.end) {
            Some(end) => end,
            // A listener on an announced passive port is the server's.
            None if self.ports.contains(event.local.port())
                || self.sessions.expects(event.local.port()) =>
            {
                Side::Server
            }
            None => Side::Client,
        }
    }

    fn report(
        &mut self,
        session: &Session,
        evicted: bool,
        output: &mut Output,
    ) -> anyhow::Result<()> {
        self.wrote = true;
        let clock = &self.clock;
        let ts = |ns| clock.rfc3339(ns);
        let diagnosis = diagnose(session);
        let cause = diagnosis.cause;
        let (written, held, held_lines) = self.filter.session(session, cause);
        if written {
            output.write_held(&held)?;
            self.events += held_lines;
            output.session(&mut SessionRecord::new(session, evicted, diagnosis, &ts))?;
        }
        self.handshakes.session_ended(session);
        self.tally.session_ended(session, cause);
        self.metrics.session(session, cause);
        if let Some(found) = self.patterns.session_ended(session, cause) {
            let line = PatternLine::repeated_failure(&found, self.patterns.rules(), &ts);
            if self.filter.pattern(line.client.addr) {
                output.pattern(&line)?;
            }
        }
        let rules = self.patterns.rules();
        if let Some(flip) = self.dns_flips.session_ended(session, cause, rules) {
            let line = PatternLine::dns_flip(&flip, rules, &ts);
            if self.filter.pattern(line.client.addr) {
                output.pattern(&line)?;
            }
        }
        Ok(())
    }

    /// An event's line, unless the filters leave it out (or hold it for
    /// its session: `--failures-only`).
    fn write_event(
        &mut self,
        output: &mut Output,
        ts: &str,
        event: &KernelEvent,
        side: Side,
        who: &Attribution,
        place: Option<&Placement>,
    ) -> anyhow::Result<()> {
        self.metrics.event(&event.kind);
        self.wrote = true;
        let fate = self.filter.event(
            side,
            event.local.ip(),
            event.remote.ip(),
            event.netns.map(u64::from),
            place.map(|p| &p.session),
        );
        match fate {
            EventFate::Write => {
                output.event(ts, event, side, who, place)?;
                self.events += 1;
            }
            EventFate::Hold(id) => {
                let line = output.captured(|output| output.event(ts, event, side, who, place))?;
                self.filter.hold(&id, &line);
            }
            EventFate::Drop => {}
        }
        Ok(())
    }
}

//! Recordings of the same hours on several hosts (the batch host and the
//! FTP server) replayed as one run: each connection both traced becomes one
//! session with both ends, as when client and server share a host, and the
//! causes are judged with both ends (a reset neither end's TCP sent is a
//! middlebox's, proven).
//!
//! Each host's records are decoded with its own recording's names and
//! symbols, its clock put on the first recording's by the offset the shared
//! connections bound ([`clock_offset`]), and the hosts' records taken in
//! time order. A recording restricted to namespaces (`--netns`) stands for
//! those namespaces alone: only their records are taken from it (so two
//! tracers on one host, each given one namespace, stand in for two hosts).
//! Event lines name the host that saw them; the join, session and stats
//! lines name the hosts together (`a+b`) and a run of their own.

use std::{collections::HashSet, net::IpAddr, path::PathBuf};

use anyhow::Context as _;

use crate::{
    event::KernelEvent,
    kernel::{
        clock::WallClock,
        decode::{self, Decoder},
        kallsyms::KernelSymbols,
        names::KernelNames,
    },
    line_filter::Wanted,
    output::{HostLine, JoinLine, JoinedInput, Origin, Output},
    pipeline::{KernelLoss, Pipeline},
    recording::{Frame, RecordedNat, Recording, Seeds},
    session::clock_offset::{self, Offset, Sighting},
};

/// Another host's clock may be this far off, and its run still taken for
/// the same hours: one host's runs follow each other and never overlap.
const OTHER_HOSTS_CLOCK_NS: i128 = 10 * 60 * 1_000_000_000;

/// The recordings, grouped: each group's runs overlap in time by their own
/// clocks, within [`OTHER_HOSTS_CLOCK_NS`] for runs of different hosts (the
/// same hours on several hosts: joined); the groups in the order of their
/// start. Indexes into `recordings`.
pub fn groups(recordings: &[&Recording]) -> Vec<Vec<usize>> {
    let mut spans: Vec<(i128, i128, usize)> = recordings
        .iter()
        .enumerate()
        .map(|(i, r)| {
            let (first, last) = batch_span(r);
            let offset = r.meta.clock_offset_ns;
            (first as i128 + offset, last as i128 + offset, i)
        })
        .collect();
    spans.sort();
    let host = |i: usize| recordings[i].meta.origin().host.name;
    let mut groups: Vec<Vec<(i128, usize)>> = Vec::new();
    for (first, last, i) in spans {
        let joins = groups.last().is_some_and(|members| {
            members.iter().any(|(end, m)| {
                let slack = if host(*m) == host(i) {
                    0
                } else {
                    OTHER_HOSTS_CLOCK_NS
                };
                first <= end + slack
            })
        });
        match groups.last_mut() {
            Some(members) if joins => members.push((last, i)),
            _ => groups.push(vec![(last, i)]),
        }
    }
    groups
        .into_iter()
        .map(|members| members.into_iter().map(|(_, i)| i).collect())
        .collect()
}

/// The boot times of a recording's first and last batch.
fn batch_span(recording: &Recording) -> (u64, u64) {
    let mut batches = recording.frames.iter().filter_map(|f| match f {
        Frame::EndBatch(ns) => Some(*ns),
        _ => None,
    });
    let first = batches.next().unwrap_or(0);
    (first, batches.next_back().unwrap_or(first))
}

/// Writes the lines of `recordings` (more than one) joined into one run.
/// `names` say which input each is, for messages.
pub fn replay(
    recordings: &[&Recording],
    names: &[PathBuf],
    output: &mut Output,
    filter: Option<Wanted>,
) -> anyhow::Result<()> {
    let mut hosts = recordings
        .iter()
        .zip(names)
        .map(|(r, name)| Host::read(r).with_context(|| name.display().to_string()))
        .collect::<anyhow::Result<Vec<_>>>()?;
    // An address two hosts claim is the first's.
    let mut claimed: HashSet<IpAddr> = HashSet::new();
    for host in &mut hosts {
        host.addresses.retain(|a| !claimed.contains(a));
        claimed.extend(host.addresses.iter().copied());
    }
    let reference = &hosts[0];
    let offsets: Vec<Offset> = hosts
        .iter()
        .enumerate()
        .map(|(i, h)| match i {
            0 => Offset::default(),
            _ => clock_offset::estimate(&reference.sightings, &h.sightings),
        })
        .collect();
    for ((host, offset), name) in hosts.iter().zip(&offsets).zip(names).skip(1) {
        warn_about(offset, host, reference, name);
    }
    // Each host's boot time on the reference's boot clock: its own wall
    // time, less its clock's offset, less the reference's wall-boot offset.
    let shifts: Vec<i128> = hosts
        .iter()
        .zip(&offsets)
        .map(|(h, o)| h.clock_offset_ns - o.offset_ns - reference.clock_offset_ns)
        .collect();

    let joined = joined_origin(&hosts);
    let clock = WallClock::with_offset(reference.clock_offset_ns);
    let first_batch = hosts
        .iter()
        .zip(&shifts)
        .map(|(h, shift)| at(batch_span(h.recording).0, *shift))
        .min()
        .unwrap_or(0);
    let mut pipeline = pipeline(&hosts, &joined, first_batch, filter)?;

    output.set_origin(joined.clone());
    let inputs = hosts
        .iter()
        .zip(&offsets)
        .map(|(h, o)| JoinedInput {
            host: h.origin.host.clone(),
            run: h.origin.run.clone(),
            clock_offset_ns: o.offset_ns as i64,
            offset_bounds_ns: o.bounds_ns.map(|(lo, hi)| [lo as i64, hi as i64]),
            connections: o.connections as u64,
        })
        .collect();
    output.join(&JoinLine {
        ts: clock.rfc3339(first_batch).to_string(),
        inputs,
    })?;
    for host in &hosts {
        output.set_origin(host.origin.clone());
        let mut start = host.recording.meta.start.clone();
        if start.ts.is_empty() {
            start.ts = WallClock::with_offset(host.clock_offset_ns)
                .rfc3339(batch_span(host.recording).0)
                .to_string();
        }
        output.start(&start)?;
    }

    // Every host's steps in time order: the order the hosts' kernels saw
    // them in (a host's records are only roughly in time order in its
    // ring, and a batch's end comes after its records by its own time).
    let origins: Vec<Origin> = hosts.iter().map(|h| h.origin.clone()).collect();
    let mut steps: Vec<(u64, usize, usize, Step)> = hosts
        .into_iter()
        .zip(&shifts)
        .enumerate()
        .flat_map(|(i, (host, shift))| {
            host.steps(i, *shift)
                .into_iter()
                .enumerate()
                .map(move |(n, (key, step))| (key, i, n, step))
        })
        .collect();
    steps.sort_by_key(|(key, host, n, _)| (*key, *host, *n));
    let mut loss_totals = vec![0; origins.len()];
    let mut final_loss = vec![KernelLoss::default(); origins.len()];
    let mut speaking = None;
    for (key, i, _, step) in steps {
        match step {
            Step::Event(event) => {
                if speaking != Some(i) {
                    output.set_origin(origins[i].clone());
                    speaking = Some(i);
                }
                pipeline.event(*event, None, output)?;
            }
            Step::Undecodable(error) => pipeline.undecodable(&error),
            Step::EndBatch => {
                output.set_origin(joined.clone());
                speaking = None;
                pipeline.end_batch(key, output)?;
            }
            Step::Loss(total) => {
                loss_totals[i] = total;
                pipeline.note_loss(loss_totals.iter().sum(), key);
            }
            Step::Seeds(open) => {
                output.set_origin(joined.clone());
                speaking = None;
                pipeline.seed(&open, key, output)?;
            }
            Step::FinalLoss(loss) => final_loss[i] = loss,
        }
    }
    output.set_origin(joined);
    pipeline.finish(output)?;
    let loss = final_loss
        .iter()
        .fold(KernelLoss::default(), |sum, l| KernelLoss {
            lost: sum.lost + l.lost,
            missed: sum.missed + l.missed,
            unreadable: sum.unreadable + l.unreadable,
            throttled: sum.throttled + l.throttled,
        });
    output.stats(&pipeline.stats(loss, true))?;
    output.flush()
}

/// The joined run's pipeline: the first host's clock, ports and rules,
/// every host's NAT answers.
fn pipeline(
    hosts: &[Host],
    joined: &Origin,
    first_batch: u64,
    filter: Option<Wanted>,
) -> anyhow::Result<Pipeline> {
    let reference = &hosts[0];
    let meta = &reference.recording.meta;
    let mut answers = Vec::new();
    for host in hosts {
        answers.extend(host.recording.nat_answers()?);
    }
    // The run's own filters, less the namespaces (each host's are its
    // records already).
    let mut own = meta.filter.clone();
    own.netns.clear();
    Ok(Pipeline::new(
        Host::decoder(reference.recording),
        WallClock::with_offset(reference.clock_offset_ns),
        meta.ports(),
        &joined.run,
    )
    .starting_at(first_batch)
    .with_max_sessions(
        hosts
            .iter()
            .map(|h| h.recording.meta.max_sessions)
            .max()
            .unwrap_or(1),
    )
    .with_pattern_rules(meta.pattern_rules())
    .with_nat_lookup(Box::new(RecordedNat::from(answers)))
    .with_filter(filter.unwrap_or(own)))
}

/// One host's recording, read for the join.
struct Host<'a> {
    recording: &'a Recording,
    origin: Origin,
    clock_offset_ns: i128,
    /// The namespaces its run was restricted to (none: all).
    netns: Vec<u64>,
    /// Its frames as steps, decoded once, each with its own boot time (a
    /// record of another namespace left out).
    steps: Vec<(Option<u64>, Step)>,
    /// What it saw that bounds the clock offset.
    sightings: Vec<Sighting>,
    /// With namespaces named: the local addresses of its records in them.
    /// A record the kernel could not place in a namespace (a packet
    /// dropped before any socket had it) goes with the host whose
    /// addresses it names (the first host, when several do).
    addresses: HashSet<IpAddr>,
}

impl<'a> Host<'a> {
    fn read(recording: &'a Recording) -> anyhow::Result<Self> {
        recording.meta.check_wire_version()?;
        let mut host = Self {
            recording,
            origin: recording.meta.origin(),
            clock_offset_ns: recording.meta.clock_offset_ns,
            netns: recording.meta.filter.netns.clone(),
            steps: Vec::with_capacity(recording.frames.len()),
            sightings: Vec::new(),
            addresses: HashSet::new(),
        };
        let mut decoder = Self::decoder(recording);
        for frame in &recording.frames {
            let step = match frame {
                Frame::Record(bytes) => match decoder.decode(&decode::unused_restored(bytes)) {
                    Ok(event) => {
                        match event.netns {
                            Some(netns) if !host.in_namespaces(netns) => continue,
                            Some(_) if !host.netns.is_empty() => {
                                host.addresses.insert(event.local.ip());
                            }
                            // In no namespace, on a restricted host: whose
                            // it is, the addresses will say.
                            None if !host.netns.is_empty() => {
                                let at = Some(event.boot_ns);
                                host.steps.push((at, Step::Event(Box::new(event))));
                                continue;
                            }
                            _ => {}
                        }
                        let wall_ns = event.boot_ns as i128 + host.clock_offset_ns;
                        host.sightings.extend(Sighting::of(&event, wall_ns));
                        (Some(event.boot_ns), Step::Event(Box::new(event)))
                    }
                    Err(error) => (None, Step::Undecodable(error.to_string())),
                },
                Frame::EndBatch(ns) => (Some(*ns), Step::EndBatch),
                Frame::Loss { total, at_ns } => (Some(*at_ns), Step::Loss(*total)),
                Frame::Stats { loss, is_final } if *is_final => (None, Step::FinalLoss(*loss)),
                Frame::Seeds(json) => {
                    let Ok(seeds) = serde_json::from_slice::<Seeds>(json) else {
                        continue;
                    };
                    let open = seeds
                        .open
                        .into_iter()
                        .filter(|c| host.in_namespaces(c.netns))
                        .collect();
                    (Some(seeds.now_ns), Step::Seeds(open))
                }
                Frame::Stats { .. }
                | Frame::Summary
                | Frame::Symbols(_)
                | Frame::Nat(_)
                | Frame::Finish => continue,
            };
            host.steps.push(step);
        }
        Ok(host)
    }

    fn decoder(recording: &Recording) -> Decoder {
        Decoder::with_symbols(
            KernelNames::from(&recording.meta.names),
            KernelSymbols::resolved(recording.symbols()),
        )
    }

    /// Whether namespace `netns` is this host's (its run's; all without).
    fn in_namespaces(&self, netns: u32) -> bool {
        self.netns.is_empty() || self.netns.contains(&u64::from(netns))
    }

    /// Whether an event is this host's (one in no namespace, by its
    /// address).
    fn takes(&self, event: &KernelEvent) -> bool {
        match event.netns {
            Some(n) => self.in_namespaces(n),
            None => self.netns.is_empty() || self.addresses.contains(&event.local.ip()),
        }
    }

    /// Its steps on the reference's boot clock, each keyed by when it
    /// happened there (one without a time of its own, by the step before
    /// it).
    fn steps(mut self, index: usize, shift: i128) -> Vec<(u64, Step)> {
        let mut last = 0;
        let read = std::mem::take(&mut self.steps);
        let mut steps = Vec::with_capacity(read.len());
        for (ns, step) in read {
            let step = match step {
                Step::Event(event) if !self.takes(&event) => continue,
                Step::Event(mut event) => {
                    event.boot_ns = at(event.boot_ns, shift);
                    // Sockets are told apart by kernel address: another
                    // host's must never equal this one's (these top bits
                    // are in no kernel address).
                    event.sock = event.sock.map(|sk| sk ^ ((index as u64) << 56));
                    Step::Event(event)
                }
                other => other,
            };
            if let Some(ns) = ns {
                last = at(ns, shift);
            }
            steps.push((last, step));
        }
        steps
    }
}

/// What a host's frame does in the joined run.
enum Step {
    Event(Box<KernelEvent>),
    Undecodable(String),
    /// A batch ended at the step's key.
    EndBatch,
    /// Kernel events lost so far on this host (a running count).
    Loss(u64),
    Seeds(Vec<crate::event::OpenConnection>),
    FinalLoss(KernelLoss),
}

/// `ns` of a host's boot clock on the reference's.
fn at(ns: u64, shift: i128) -> u64 {
    (ns as i128 + shift).clamp(0, u64::MAX as i128) as u64
}

/// The hosts' names joined (`client+server`, each once) and a run id of
/// their runs' (the same inputs always give the same).
fn joined_origin(hosts: &[Host]) -> Origin {
    let mut names: Vec<&str> = Vec::new();
    for host in hosts {
        if !names.contains(&host.origin.host.name.as_str()) {
            names.push(&host.origin.host.name);
        }
    }
    let run = hosts.iter().fold(0u128, |sum, h| {
        sum.rotate_left(7) ^ u128::from_str_radix(&h.origin.run, 16).unwrap_or(0)
    });
    Origin {
        host: HostLine {
            name: names.join("+"),
        },
        run: format!("{run:032x}"),
    }
}

fn warn_about(offset: &Offset, host: &Host, reference: &Host, name: &std::path::Path) {
    let ms = |ns: i128| ns as f64 / 1e6;
    if offset.connections == 0 {
        log::warn!(
            "{}: no connection of host {} was also traced by {}: their clocks are taken as \
             they are, and their sessions stay apart",
            name.display(),
            host.origin.host.name,
            reference.origin.host.name
        );
    } else if offset.contradicted() {
        log::warn!(
            "{}: the connections both hosts traced bound {}'s clock offset to at least {:.3} ms \
             and at most {:.3} ms: a clock stepped or drifted during the runs, or a NAT between \
             them gave different connections the same addresses; using {:.3} ms",
            name.display(),
            host.origin.host.name,
            ms(offset.lowest_ns.unwrap_or_default()),
            ms(offset.highest_ns.unwrap_or_default()),
            ms(offset.offset_ns)
        );
    }
}

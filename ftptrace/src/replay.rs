//! `ftptrace replay FILE`: a recording fed through the same [`Pipeline`] as
//! the live run, in the same batches, so it prints the same lines.

use std::path::PathBuf;

use anyhow::Context as _;

use crate::{
    cli::{Format, ReplayArgs},
    joined_replay,
    kernel::clock::WallClock,
    kernel::decode::{self, Decoder},
    kernel::kallsyms::KernelSymbols,
    kernel::names::KernelNames,
    line_filter::Wanted,
    output::Output,
    pipeline::Pipeline,
    recording::{Frame, RecordedNat, Recording, Seeds},
};

pub fn run(args: &ReplayArgs) -> anyhow::Result<()> {
    let mut output = Output::open(args.format(), None)?;
    let recordings = args
        .files
        .iter()
        .map(|f| Recording::read(f))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let wanted = args.filter.wanted();
    let filter = (!wanted.is_everything()).then_some(wanted);
    replay_all(&recordings, &args.files, &mut output, filter)?;
    for (recording, file) in recordings.iter().zip(&args.files) {
        if recording.truncated_tail > 0 {
            log::warn!(
                "{} ends with {} byte(s) of a cut frame (was its run killed?); \
                 everything before them was replayed",
                file.display(),
                recording.truncated_tail
            );
        }
    }
    Ok(())
}

/// Several recordings: those of the same hours (several hosts) joined into
/// one run, the others one after another, earliest first.
pub fn replay_all(
    recordings: &[Recording],
    names: &[PathBuf],
    output: &mut Output,
    filter: Option<Wanted>,
) -> anyhow::Result<()> {
    let all: Vec<&Recording> = recordings.iter().collect();
    for group in joined_replay::groups(&all) {
        match group.as_slice() {
            // Named in an error, which stays what it was (a closed
            // output is no error).
            [one] => replay_filtered(all[*one], output, filter.clone())
                .with_context(|| names[*one].display().to_string())?,
            _ => {
                let members: Vec<&Recording> = group.iter().map(|i| all[*i]).collect();
                let names: Vec<PathBuf> = group.iter().map(|i| names[*i].clone()).collect();
                joined_replay::replay(&members, &names, output, filter.clone())?;
            }
        }
    }
    Ok(())
}

/// Writes the lines of `recording` to `output`: the start line, then what
/// each frame did in the live run.
pub fn replay(recording: &Recording, output: &mut Output) -> anyhow::Result<()> {
    replay_filtered(recording, output, None)
}

/// [`replay`] through `filter` instead of the run's own filters.
pub fn replay_filtered(
    recording: &Recording,
    output: &mut Output,
    filter: Option<Wanted>,
) -> anyhow::Result<()> {
    let meta = &recording.meta;
    meta.check_wire_version()?;
    let decoder = Decoder::with_symbols(
        KernelNames::from(&meta.names),
        KernelSymbols::resolved(recording.symbols()),
    );
    // The recorded run's first batch: when a recording without a start
    // time began.
    let first_batch = recording
        .frames
        .iter()
        .find_map(|f| match f {
            Frame::EndBatch(ns) => Some(*ns),
            _ => None,
        })
        .unwrap_or(0);
    let mut pipeline = Pipeline::new(
        decoder,
        WallClock::with_offset(meta.clock_offset_ns),
        meta.ports(),
        &meta.session_prefix,
    )
    .starting_at(first_batch)
    .with_max_sessions(meta.max_sessions)
    .with_pattern_rules(meta.pattern_rules())
    .with_nat_lookup(Box::new(RecordedNat::from(recording.nat_answers()?)))
    .with_filter(filter.unwrap_or_else(|| meta.filter.clone()));
    output.set_origin(meta.origin());
    let mut start = meta.start.clone();
    if start.ts.is_empty() {
        start.ts = WallClock::with_offset(meta.clock_offset_ns)
            .rfc3339(first_batch)
            .to_string();
    }
    output.start(&start)?;
    let mut finished = false;
    for frame in &recording.frames {
        match frame {
            Frame::Record(bytes) => {
                let mut bytes = decode::unused_restored(bytes).into_owned();
                pipeline.record(&mut bytes, output)?;
            }
            Frame::EndBatch(now_ns) => {
                pipeline.end_batch(*now_ns, output)?;
            }
            Frame::Loss { total, at_ns } => pipeline.note_loss(*total, *at_ns),
            Frame::Stats { loss, is_final } => {
                if *is_final && !finished {
                    pipeline.finish(output)?;
                    finished = true;
                }
                output.stats(&pipeline.stats(*loss, *is_final))?;
            }
            Frame::Seeds(json) => {
                let seeds: Seeds = serde_json::from_slice(json)
                    .map_err(|e| anyhow::anyhow!("the recording's seeded sessions: {e}"))?;
                pipeline.seed(&seeds.open, seeds.now_ns, output)?;
            }
            Frame::Summary => output.summary(&pipeline.summary())?,
            Frame::Symbols(_) | Frame::Nat(_) => {}
            Frame::Finish => {
                pipeline.finish(output)?;
                finished = true;
            }
        }
    }
    if !finished {
        // A run that was killed: its sessions end with the recording.
        pipeline.finish(output)?;
    }
    output.flush()
}

/// A recording's lines in `format`, in memory (`ftptrace report`, tests).
pub fn lines(recording: &Recording, format: Format) -> anyhow::Result<String> {
    filtered_lines(recording, format, None)
}

/// For tests: [`lines`] through `filter` instead of the run's filters.
pub fn filtered_lines(
    recording: &Recording,
    format: Format,
    filter: Option<Wanted>,
) -> anyhow::Result<String> {
    in_memory(format, |output| replay_filtered(recording, output, filter))
}

/// Several recordings' lines in `format`, in memory, as [`replay_all`]
/// writes them (those of the same hours joined).
pub fn all_lines(
    recordings: &[Recording],
    names: &[PathBuf],
    format: Format,
) -> anyhow::Result<String> {
    in_memory(format, |output| replay_all(recordings, names, output, None))
}

/// What `write` writes to an output in `format`, as a string.
fn in_memory(
    format: Format,
    write: impl FnOnce(&mut Output) -> anyhow::Result<()>,
) -> anyhow::Result<String> {
    #[derive(Clone, Default)]
    struct Shared(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);
    impl std::io::Write for Shared {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0
                .lock()
                .map_err(|_| std::io::Error::other("poisoned"))?
                .extend_from_slice(bytes);
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let shared = Shared::default();
    let mut output = Output::new(format, Box::new(shared.clone()));
    write(&mut output)?;
    drop(output);
    let bytes = shared
        .0
        .lock()
        .map_err(|_| anyhow::anyhow!("poisoned"))?
        .clone();
    Ok(String::from_utf8(bytes)?)
}

//! The user-space cost per kernel event: the whole [`Pipeline`] (decode a
//! ring buffer record, attribute it to a socket, parse the control
//! channel, file it under its FTP session, write its line, and the session
//! lines as sessions end). Records are those of a recorded download
//! (testdata/recordings), replayed in a loop, each pass later in time so
//! every pass makes new sessions and the earlier ones end.
//!
//! Run: `cargo xtask bench` (or `cargo bench -p ftptrace --bench pipeline`).

use std::{
    hint::black_box,
    io,
    time::{Duration, Instant},
};

use ftptrace::{
    kernel::{
        clock::WallClock,
        decode::{self, Decoder},
        kallsyms::KernelSymbols,
        names::KernelNames,
    },
    output::{Format, Output},
    pipeline::Pipeline,
    recording::{Frame, Recording},
};
use ftptrace_common::EventHeader;

const EVENTS: usize = 2_000_000;
/// Each pass through the records is this much later.
const PASS_NS: u64 = 10_000_000_000;
const BOOT_NS_AT: usize = std::mem::offset_of!(EventHeader, boot_ns);

fn recording() -> Recording {
    let path = format!(
        "{}/testdata/recordings/clean_download_links_its_data_connection_by_announcement_alone.rec",
        env!("CARGO_MANIFEST_DIR")
    );
    Recording::read(std::path::Path::new(&path)).expect("the recording reads")
}

fn decoder(recording: &Recording) -> Decoder {
    Decoder::with_symbols(
        KernelNames::from(&recording.meta.names),
        KernelSymbols::resolved(recording.symbols()),
    )
}

/// Peak resident set size of this process, in KiB (`VmHWM`).
fn peak_rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// The time for [`EVENTS`] records through the pipeline.
fn run(format: Format, recording: &Recording, records: &[Vec<u8>]) -> Duration {
    let meta = &recording.meta;
    let mut pipeline = Pipeline::new(
        decoder(recording),
        WallClock::with_offset(meta.clock_offset_ns),
        meta.ports(),
        "bench",
    );
    let mut output = Output::new(format, Box::new(io::sink()));
    let mut buffer = Vec::new();
    let start = Instant::now();
    for (n, record) in records.iter().cycle().take(EVENTS).enumerate() {
        let pass = (n / records.len()) as u64;
        buffer.clear();
        buffer.extend_from_slice(record);
        let at = u64::from_ne_bytes(buffer[BOOT_NS_AT..BOOT_NS_AT + 8].try_into().expect("8"));
        buffer[BOOT_NS_AT..BOOT_NS_AT + 8].copy_from_slice(&(at + pass * PASS_NS).to_ne_bytes());
        pipeline.record(&mut buffer, &mut output).expect("record");
        if n % records.len() == records.len() - 1 {
            pipeline
                .end_batch(at + pass * PASS_NS + PASS_NS / 2, &mut output)
                .expect("batch");
        }
    }
    pipeline.finish(&mut output).expect("finish");
    output.flush().expect("flush");
    start.elapsed()
}

fn main() {
    let recording = recording();
    let records: Vec<Vec<u8>> = recording
        .frames
        .iter()
        .filter_map(|frame| match frame {
            Frame::Record(bytes) => Some(decode::unused_restored(bytes).into_owned()),
            _ => None,
        })
        .collect();
    let mut decoder = decoder(&recording);
    let decode_only = {
        let start = Instant::now();
        for record in records.iter().cycle().take(EVENTS) {
            let _ = black_box(decoder.decode(black_box(record)));
        }
        start.elapsed()
    };
    println!(
        "pipeline, {EVENTS} records of a recorded download (6.18, {} records a pass), one core:",
        records.len()
    );
    // `cargo bench ... -- json` (or `text`) runs one format, for a profile.
    let only = std::env::args().skip(1).find(|a| !a.starts_with('-'));
    let wanted = |name: &str| only.as_deref().is_none_or(|o| o == name);
    let mut runs = vec![("decode only", decode_only)];
    if wanted("json") {
        runs.push((
            "pipeline, JSON lines",
            run(Format::Json, &recording, &records),
        ));
    }
    if wanted("text") {
        runs.push(("pipeline, text", run(Format::Text, &recording, &records)));
    }
    for (what, took) in runs {
        let per_event = took.as_nanos() as f64 / EVENTS as f64;
        println!(
            "  {what:<24} {per_event:>7.0} ns/record  {:>10.0} records/s",
            1e9 / per_event
        );
    }
    println!("  peak RSS                 {} KiB", peak_rss_kib());
}

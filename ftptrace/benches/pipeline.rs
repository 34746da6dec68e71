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
    pipeline::{KernelLoss, Pipeline},
    recording::{Frame, Recording},
};
use ftptrace_common::{
    ControlRecord, ControlSegment, Endpoints, Event, EventHeader, ProbeId, SockRecord,
};

/// The allocator the binary uses (src/main.rs).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

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

/// A size of this process from /proc/self/status, in KiB: `VmHWM` (peak
/// resident set) or `VmRSS` (resident now).
fn status_kib(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// A record's kernel timestamp (boot time, ns).
fn boot_ns(record: &[u8]) -> u64 {
    u64::from_ne_bytes(record[BOOT_NS_AT..BOOT_NS_AT + 8].try_into().expect("8"))
}

fn pipeline(recording: &Recording, max_sessions: usize) -> Pipeline {
    let meta = &recording.meta;
    Pipeline::new(
        decoder(recording),
        WallClock::with_offset(meta.clock_offset_ns),
        meta.ports(),
        "bench",
    )
    .with_max_sessions(max_sessions)
}

fn put<const N: usize>(buffer: &mut [u8], at: usize, bytes: [u8; N]) {
    buffer[at..at + N].copy_from_slice(&bytes);
}

/// The records that open one idle control session, as the server end sees
/// it (its handshake and its `220`), `count` times, each with its own
/// client address and port and its own socket; all before the recording's
/// first record, so that every later pass runs beside them.
fn idle_sessions(records: &[Vec<u8>], count: usize) -> Vec<Vec<u8>> {
    let probe_at = std::mem::offset_of!(EventHeader, probe);
    let server_end = |r: &[u8], ends_at: usize| {
        let local = ends_at + std::mem::offset_of!(Endpoints, local_port);
        u16::from_ne_bytes([r[local], r[local + 1]]) == 21
    };
    let (sock_ends, sock_sk) = (
        std::mem::offset_of!(Event, record) + std::mem::offset_of!(SockRecord, ends),
        std::mem::offset_of!(Event, record) + std::mem::offset_of!(SockRecord, sk),
    );
    let segment = std::mem::offset_of!(ControlRecord, segment);
    let (control_ends, control_sk, control_cookie) = (
        segment + std::mem::offset_of!(ControlSegment, ends),
        segment + std::mem::offset_of!(ControlSegment, sk),
        segment + std::mem::offset_of!(ControlSegment, cookie),
    );
    // The server end's records up to and including its banner.
    let mut opening = Vec::new();
    for record in records {
        let probe = u16::from_ne_bytes([record[probe_at], record[probe_at + 1]]);
        let control = probe == ProbeId::ControlSegment as u16;
        let ends_at = if control { control_ends } else { sock_ends };
        if probe != ProbeId::InetSockSetState as u16 && !control || !server_end(record, ends_at) {
            continue;
        }
        opening.push((record.clone(), control));
        if control {
            break;
        }
    }
    let first_ns = boot_ns(&records[0]);
    let mut out = Vec::with_capacity(count * opening.len());
    for i in 0..count {
        // 203.0.113.x, ports from 1024: 256 clients a port.
        let addr = [203, 0, 113, (i % 256) as u8];
        let port = 1024 + (i / 256) as u16;
        let sk = 0xffff_9000_0000_0000u64 + i as u64 * 0x1000;
        for (n, (record, control)) in opening.iter().enumerate() {
            let mut r = record.clone();
            let ends_at = if *control { control_ends } else { sock_ends };
            put(
                &mut r,
                ends_at + std::mem::offset_of!(Endpoints, remote_port),
                port.to_ne_bytes(),
            );
            put(
                &mut r,
                ends_at + std::mem::offset_of!(Endpoints, remote_addr),
                addr,
            );
            if *control {
                put(&mut r, control_sk, sk.to_ne_bytes());
                put(
                    &mut r,
                    control_cookie,
                    (1u64 << 40 | i as u64).to_ne_bytes(),
                );
            } else {
                put(&mut r, sock_sk, sk.to_ne_bytes());
            }
            // In order, a microsecond apart, ending before the recording.
            let at = first_ns - ((count - i) * opening.len() - n) as u64 * 1_000;
            put(&mut r, BOOT_NS_AT, at.to_ne_bytes());
            out.push(r);
        }
    }
    out
}

/// The time for [`EVENTS`] records through the pipeline.
fn run(format: Format, recording: &Recording, records: &[Vec<u8>]) -> Duration {
    run_beside(format, recording, records, 0)
}

/// [`run`] with `idle` control sessions open (see [`idle_sessions`]).
fn run_beside(format: Format, recording: &Recording, records: &[Vec<u8>], idle: usize) -> Duration {
    let mut pipeline = pipeline(recording, idle + 1_000);
    let mut output = Output::new(format, Box::new(io::sink()));
    for mut record in idle_sessions(records, idle) {
        pipeline.record(&mut record, &mut output).expect("record");
    }
    let open = pipeline.stats(KernelLoss::default(), false).sessions_open;
    assert_eq!(open, idle, "idle sessions open");
    let mut buffer = Vec::new();
    let start = Instant::now();
    for (n, record) in records.iter().cycle().take(EVENTS).enumerate() {
        let pass = (n / records.len()) as u64;
        buffer.clear();
        buffer.extend_from_slice(record);
        let at = boot_ns(&buffer);
        put(&mut buffer, BOOT_NS_AT, (at + pass * PASS_NS).to_ne_bytes());
        pipeline.record(&mut buffer, &mut output).expect("record");
        if n % records.len() == records.len() - 1 {
            pipeline
                .end_batch(at + pass * PASS_NS + PASS_NS / 2, &mut output)
                .expect("batch");
        }
    }
    // Before the idle sessions' own ends: the run's end reports each.
    let took = start.elapsed();
    pipeline.finish(&mut output).expect("finish");
    output.flush().expect("flush");
    took
}

/// Bytes each idle control session holds: the resident set before and
/// after `count` of them open, divided by `count`.
fn bytes_per_idle_session(recording: &Recording, records: &[Vec<u8>], count: usize) -> f64 {
    let opening = idle_sessions(records, count);
    let mut pipeline = pipeline(recording, count + 1_000);
    let mut output = Output::new(Format::Json, Box::new(io::sink()));
    let before = status_kib("VmRSS");
    for mut record in opening.iter().cloned() {
        pipeline.record(&mut record, &mut output).expect("record");
    }
    let after = status_kib("VmRSS");
    drop(opening);
    black_box(&pipeline);
    (after.saturating_sub(before) * 1024) as f64 / count as f64
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
    // Cost per record beside idle open sessions: flat if the tables index
    // rather than scan. Memory first, in a fresh heap.
    let mut per_session = None;
    if wanted("sessions") {
        per_session = Some(bytes_per_idle_session(&recording, &records, 100_000));
        for idle in [10, 1_000, 100_000] {
            runs.push((
                match idle {
                    10 => "JSON, 10 sessions open",
                    1_000 => "JSON, 1k sessions open",
                    _ => "JSON, 100k sessions open",
                },
                run_beside(Format::Json, &recording, &records, idle),
            ));
        }
    }
    for (what, took) in runs {
        let per_event = took.as_nanos() as f64 / EVENTS as f64;
        println!(
            "  {what:<24} {per_event:>7.0} ns/record  {:>10.0} records/s",
            1e9 / per_event
        );
    }
    if let Some(bytes) = per_session {
        println!("  idle control session     {bytes:>7.0} bytes (resident, 100k open)");
    }
    println!("  peak RSS                 {} KiB", status_kib("VmHWM"));
}

//! The user-space cost per kernel event: decode a ring buffer record,
//! attribute it to a socket, file it under its FTP session, write its JSON
//! (or text) line, and write the session lines as sessions end. Records are the
//! ones recorded from a 6.18 kernel (testdata/records), replayed in a loop.
//!
//! Run: `cargo xtask bench` (or `cargo bench -p ftptrace --bench pipeline`).

use std::{
    hint::black_box,
    io,
    time::{Duration, Instant},
};

use ftptrace::{
    attribution::SocketTable, cli::Format, clock::WallClock, decode::Decoder, ftp_control::Side,
    kernel_names::KernelNames, output::Output, ports::PortSet, session::Sessions,
    session_record::SessionRecord, tracepoint_format::TracepointFormat,
};

const EVENTS: usize = 2_000_000;

fn testdata(path: &str) -> String {
    std::fs::read_to_string(format!("{}/testdata/{path}", env!("CARGO_MANIFEST_DIR")))
        .unwrap_or_else(|e| panic!("testdata/{path}: {e}"))
}

fn format(path: &str) -> TracepointFormat {
    TracepointFormat::parse(&testdata(path)).expect("format parses")
}

fn records() -> Vec<Vec<u8>> {
    testdata("records/6.18-refused-v4-v6.hex")
        .lines()
        .map(|line| {
            (0..line.len())
                .step_by(2)
                .map(|i| u8::from_str_radix(&line[i..i + 2], 16).expect("hex"))
                .collect()
        })
        .collect()
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

/// The time for [`EVENTS`] events, and the session lines written.
fn run(
    format_kind: Format,
    records: &[Vec<u8>],
    decoder: &mut Decoder,
    with_sessions: bool,
) -> (Duration, u64) {
    let ports = PortSet {
        control: vec![2121],
        passive: None,
    };
    let clock = WallClock::now().expect("clock");
    let mut sockets = SocketTable::default();
    let mut sessions = Sessions::new(ports.clone(), "bench");
    let mut ended = Vec::new();
    let mut output = Output::new(format_kind, Box::new(io::sink()));
    let start = Instant::now();
    // The records repeat: each pass is shifted later in time, so every pass
    // makes new sessions and the earlier ones end.
    let pass_ns = 10_000_000_000;
    let mut reported = 0;
    for (n, record) in records.iter().cycle().take(EVENTS).enumerate() {
        let mut event = decoder.decode(black_box(record)).expect("decodes");
        event.boot_ns += (n / records.len()) as u64 * pass_ns;
        let who = sockets.observe(&event);
        let place = if with_sessions {
            sessions.observe(&event, &mut ended)
        } else {
            None
        };
        let side = if ports.contains(event.local.port()) {
            Side::Server
        } else {
            Side::Client
        };
        output
            .event(
                &clock.rfc3339(event.boot_ns),
                &event,
                side,
                &who,
                place.as_ref(),
            )
            .expect("write");
        if with_sessions && n % records.len() == records.len() - 1 {
            ended.extend(sessions.tick(event.boot_ns + pass_ns / 2));
            for session in ended.drain(..) {
                let record = SessionRecord::new(&session, false, &|ns| clock.rfc3339(ns));
                output.session(&record).expect("write");
                reported += 1;
            }
        }
    }
    output.flush().expect("flush");
    (start.elapsed(), reported)
}

fn main() {
    let names = KernelNames::from_formats(
        Some(&format(
            "tracepoint-formats/6.18/sock/inet_sock_set_state.format",
        )),
        Some(&format("tracepoint-formats/6.18/tcp/tcp_send_reset.format")),
        &|_| None,
    );
    let mut decoder = Decoder::new(names);
    let records = records();
    let decode_only = {
        let start = Instant::now();
        for record in records.iter().cycle().take(EVENTS) {
            black_box(decoder.decode(black_box(record)).expect("decodes"));
        }
        start.elapsed()
    };
    println!(
        "pipeline, {EVENTS} events from {} recorded 6.18 records, one core:",
        records.len()
    );
    let runs = [
        ("decode only", (decode_only, 0)),
        (
            "decode+attribute+JSON line",
            run(Format::Json, &records, &mut decoder, false),
        ),
        (
            "decode+attribute+session+JSON line",
            run(Format::Json, &records, &mut decoder, true),
        ),
        (
            "decode+attribute+session+text line",
            run(Format::Text, &records, &mut decoder, true),
        ),
    ];
    for (what, (took, sessions)) in runs {
        let per_event = took.as_nanos() as f64 / EVENTS as f64;
        let sessions = if sessions > 0 {
            format!("  ({sessions} session lines)")
        } else {
            String::new()
        };
        println!(
            "  {what:<36} {per_event:>7.0} ns/event  {:>10.0} events/s{sessions}",
            1e9 / per_event
        );
    }
    println!("  peak RSS                     {} KiB", peak_rss_kib());
}

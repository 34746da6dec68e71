//! Records through the whole `Pipeline` (decode, attribute, parse the
//! control channel, file into sessions, print) into memory, as JSON lines
//! or as text. Never panics, never returns an error (the output cannot
//! fail), every JSON line is one JSON object, every text line is printable.
//!
//! An input is either a recording (the seeds are the recorded scenarios of
//! testdata/recordings), replayed as `ftptrace replay` does, or a program
//! of pipeline calls with records built from its bytes.
#![no_main]

use std::mem::offset_of;

use ftptrace::{
    event::OpenConnection,
    kernel::clock::WallClock,
    output::{Format, Output},
    pipeline::{KernelLoss, NatAnswer, Pipeline},
    ports::PortSet,
    recording::{Frame, Recording, Seeds},
    replay,
};
use ftptrace_common::{ControlRecord, Event, EventHeader, ProbeId, WIRE_VERSION};
use ftptrace_fuzz::{Input, SharedSink, assert_json_lines, assert_text_lines, decoder};
use libfuzzer_sys::fuzz_target;

/// A recording's first bytes (`recording::MAGIC`, which is private).
const MAGIC: &[u8] = b"ftptrace recording\n\0";
const VERSION_AT: usize = offset_of!(EventHeader, version);
const PROBE_AT: usize = offset_of!(EventHeader, probe);

fuzz_target!(|data: &[u8]| {
    // One format per input (a recording has no spare byte to choose by):
    // a replay costs milliseconds, and mutations change lengths often.
    let format = match data.len() % 2 {
        0 => Format::Json,
        _ => Format::Text,
    };
    let sink = SharedSink::default();
    let mut output = Output::new(format, Box::new(sink.clone()));
    if data.starts_with(MAGIC) {
        let Ok(mut recording) = Recording::parse(data) else {
            return;
        };
        current_wire_version(&mut recording);
        replay::replay(&recording, &mut output).expect("replay into memory fails");
    } else {
        calls(data, &mut output);
    }
    drop(output);
    let out = String::from_utf8(sink.take()).expect("the output is UTF-8");
    match format {
        Format::Json => assert_json_lines(&out),
        Format::Text => assert_text_lines(&out),
    }
});

/// Makes a recording of another wire version replayable: its records are
/// then misread where layouts differ, which is more to explore rather than
/// a stop at the version check (the `decode` target covers that check).
/// Seed and NAT frames that are not their JSON are dropped: replay refuses
/// them, rightly (with an error naming the frame).
fn current_wire_version(recording: &mut Recording) {
    recording.meta.wire_version = WIRE_VERSION;
    recording.frames.retain_mut(|frame| match frame {
        Frame::Record(bytes) => {
            set_version(bytes);
            true
        }
        Frame::Seeds(json) => serde_json::from_slice::<Seeds>(json).is_ok(),
        Frame::Nat(json) => serde_json::from_slice::<Vec<NatAnswer>>(json).is_ok(),
        _ => true,
    });
}

fn set_version(bytes: &mut [u8]) {
    if let Some(version) = bytes.get_mut(VERSION_AT..VERSION_AT + 2) {
        version.copy_from_slice(&WIRE_VERSION.to_ne_bytes());
    }
}

/// Pipeline calls read from `data`: records of the wire sizes (version and
/// probe set, the rest from the input), batch ends, loss, stats, seeds.
fn calls(data: &[u8], output: &mut Output) {
    let ports = PortSet {
        control: vec![21, 2121],
        passive: Some(30000..=30009),
    };
    let clock = WallClock::with_offset(1_796_236_091_003_365_781);
    let mut pipeline = Pipeline::new(decoder(), clock, ports, "fuzz");
    let mut input = Input(data);
    while !input.is_empty() {
        let op = input.byte();
        match op % 8 {
            0 => {
                pipeline.end_batch(input.u64(), output).expect("end_batch");
            }
            1 => pipeline.note_loss(input.u64(), input.u64()),
            2 => {
                let loss = KernelLoss {
                    lost: u64::from(input.byte()),
                    missed: u64::from(input.byte()),
                    unreadable: u64::from(input.byte()),
                    ..KernelLoss::default()
                };
                output
                    .stats(&pipeline.stats(loss, op & 8 != 0))
                    .expect("stats");
            }
            3 => {
                let open = OpenConnection {
                    netns: u32::from(input.byte()),
                    local: address(&mut input),
                    remote: address(&mut input),
                    state: input.byte(),
                };
                pipeline.seed(&[open], input.u64(), output).expect("seed");
            }
            _ => {
                // Probe ids one past the last are unknown to the decoder.
                let probe = u16::from(op / 8) % (ProbeId::ControlSegment as u16 + 2);
                let size = if probe == ProbeId::ControlSegment as u16 {
                    size_of::<ControlRecord>()
                } else {
                    size_of::<Event>()
                };
                let mut record = vec![0; size];
                let len = usize::from(input.u16()) % (size + 1);
                let body = input.take(len);
                record[..body.len()].copy_from_slice(body);
                set_version(&mut record);
                record[PROBE_AT..PROBE_AT + 2].copy_from_slice(&probe.to_ne_bytes());
                pipeline.record(&mut record, output).expect("record");
            }
        }
    }
    pipeline.finish(output).expect("finish");
    output.flush().expect("flush");
}

/// An address near the FTP ports, so seeds meet the records' sockets.
fn address(input: &mut Input) -> std::net::SocketAddr {
    let ip = std::net::Ipv4Addr::new(10, 0, 0, input.byte() % 4);
    let port = match input.byte() {
        0..=127 => 21,
        128..=191 => 30000 + u16::from(input.byte() % 10),
        _ => input.u16(),
    };
    (ip, port).into()
}

//! `Recording::parse`: any file `ftptrace replay` is given is a recording
//! or an error, never a panic; what it accepts is self-consistent.
#![no_main]

use ftptrace::{
    kernel::decode::{unused_restored, used_len},
    recording::{Frame, Recording},
};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(recording) = Recording::parse(data) else {
        return;
    };
    assert!(recording.truncated_tail <= data.len());
    let _ = recording.meta.ports();
    let named = recording.symbols();
    let mut symbol_frames = 0;
    for frame in &recording.frames {
        match frame {
            // What replay does with each record before decoding it.
            Frame::Record(bytes) => {
                assert!(used_len(bytes) <= bytes.len());
                assert!(unused_restored(bytes).len() >= bytes.len());
            }
            Frame::Symbols(list) => symbol_frames += list.len(),
            _ => {}
        }
    }
    assert_eq!(named.len(), symbol_frames);
});

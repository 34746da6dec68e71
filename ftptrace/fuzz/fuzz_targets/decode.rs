//! `Decoder::decode`: any ring buffer bytes decode to an event or an
//! error value, never a panic (it reads them with `unsafe`, after a length
//! check: the sanitizer watches that). A record that decodes survives what
//! a recording does to it (cut to `used_len`, made whole by
//! `unused_restored`) and the parser's payload mask being written back.
#![no_main]

use ftptrace::{
    event::EventKind,
    kernel::decode::{put_control_payload, unused_restored, used_len},
};
use ftptrace_fuzz::decoder;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut decoder = decoder();
    let decoded = decoder.decode(data);
    let used = used_len(data);
    assert!(used <= data.len());
    let Ok(event) = decoded else {
        return;
    };
    let kept = unused_restored(&data[..used]);
    assert_eq!(
        decoder.decode(&kept).as_ref(),
        Ok(&event),
        "the record cut to {used} of {} bytes and restored decodes differently",
        data.len()
    );
    if let EventKind::ControlSegment(segment) = &event.kind {
        let mut written = data.to_vec();
        put_control_payload(&mut written, segment.payload.bytes());
        assert_eq!(decoder.decode(&written).as_ref(), Ok(&event));
    }
});

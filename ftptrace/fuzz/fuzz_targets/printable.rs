//! `printable`: any text comes out safe at a terminal (no control, bidi or
//! invisible formatting character left), escaping is idempotent, and text
//! that needed nothing escaped is left as it was.
#![no_main]

use ftptrace::printable::is_formatting;
use ftptrace::printable::printable;
use ftptrace_fuzz::assert_printable;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let shown = printable(&text);
    assert_printable(&shown);
    assert_eq!(printable(&shown), shown, "escaping twice changed {text:?}");
    if !text.chars().any(|c| c.is_control() || is_formatting(c)) {
        assert_eq!(shown, text, "nothing needed escaping");
    }
});

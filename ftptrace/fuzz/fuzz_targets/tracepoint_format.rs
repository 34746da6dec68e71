//! `TracepointFormat::parse` and its `__print_symbolic` tables: a format
//! file is text the kernel wrote, read at every start (and tracefs can be
//! any mount); whatever it holds parses to a format or an error value,
//! never a panic, and a parsed one's tables can all be read.
#![no_main]

use ftptrace::kernel::tracepoint_format::TracepointFormat;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(format) = TracepointFormat::parse(text) else {
        return;
    };
    for field in &format.fields {
        assert!(
            format.field(&field.name).is_some(),
            "{:?} not found",
            field.name
        );
        let resolved = format.symbols(&field.name, |_| Some(1));
        let unresolved = format.symbols(&field.name, |_| None);
        // Resolving identifiers can only add entries, never lose any.
        if let (Some(all), Some(some)) = (&resolved, &unresolved) {
            assert!(
                some.iter()
                    .all(|(value, name)| all.iter().any(|e| e == (value, name)))
            );
        }
    }
});

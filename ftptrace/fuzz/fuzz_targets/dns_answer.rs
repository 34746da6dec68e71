//! `dns_answer`: any bytes read as a DNS message give an answer or nothing,
//! never a panic; an answer's name is a plain host name (safe at a
//! terminal) and its addresses are bounded.
#![no_main]

use ftptrace::dns::{Answer, MAX_ADDRESSES};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Some(answer) = Answer::parse(data) {
        assert!(!answer.addrs.is_empty() && answer.addrs.len() <= MAX_ADDRESSES);
        assert!(
            answer
                .name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"-_.".contains(&b)),
            "{:?}",
            answer.name
        );
    }
});

//! `conntrack_reply`: any bytes read as a ctnetlink reply either give a
//! tuple or nothing, never a panic or a read past the message.
#![no_main]

use ftptrace::kernel::conntrack::parse_orig_tuple;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Some((client, server)) = parse_orig_tuple(data) {
        // Both ends are of one family, as a tuple's are.
        assert_eq!(client.is_ipv4(), server.is_ipv4(), "{client} {server}");
    }
});

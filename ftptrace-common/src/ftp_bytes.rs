//! The little FTP the kernel reads in a captured control segment, as pure
//! functions: whether it starts with a `PASS`/`ACCT` whose argument must
//! be masked before it leaves the kernel, and the data port a `227`/`229`
//! reply announces. They run in eBPF programs, so every loop is bounded by
//! a constant and every value masked to a range the verifier (5.10's too)
//! can follow; the host tests (in the `ftptrace` crate) hold them against
//! the user-space parser on the same bytes.

use crate::CONTROL_CAPTURE_BYTES;

/// Bytes of an announcement searched for the port.
pub const ANNOUNCE_SCAN: usize = 80;
/// Numbers beyond a port's range are cut to this mask (then refused).
const NUMBER_MASK: u32 = 0x1_ffff;

/// Overwrites with `*`, up to the line end, the argument of a segment that
/// starts with `PASS ` or `ACCT ` (any case); the lines and lengths stay as
/// they were. Returns whether it did.
#[inline(always)]
pub fn mask_secret(d: &mut [u8; CONTROL_CAPTURE_BYTES], captured: u32) -> bool {
    let verb = [d[0] | 0x20, d[1] | 0x20, d[2] | 0x20, d[3] | 0x20];
    if captured <= 5 || d[4] != b' ' || !matches!(&verb, b"pass" | b"acct") {
        return false;
    }
    let mut i = 5;
    while i < CONTROL_CAPTURE_BYTES && (i as u32) < captured {
        if d[i] == b'\r' || d[i] == b'\n' {
            break;
        }
        d[i] = b'*';
        i += 1;
    }
    true
}

/// What a segment announces: `Some(true)` for `227 ` (an address and the
/// port as two numbers), `Some(false)` for `229 ` (the port alone), else
/// `None`.
#[inline(always)]
pub fn announcement(d: &[u8; CONTROL_CAPTURE_BYTES], captured: u32) -> Option<bool> {
    if captured > 8
        && d[0] == b'2'
        && d[1] == b'2'
        && (d[2] == b'7' || d[2] == b'9')
        && d[3] == b' '
    {
        Some(d[2] == b'7')
    } else {
        None
    }
}

/// The data port of `227 ... (h1,h2,h3,h4,p1,p2)` or `PORT h1,...,p1,p2`
/// (`pairs`: `p1*256+p2`, the last two numbers) or of `229 ... (|||port|)` or
/// `EPRT |af|addr|port|` (the last number), reading up to `)` or the line's
/// end; 0 if none.
#[inline(always)]
pub fn announced_port(d: &[u8; CONTROL_CAPTURE_BYTES], captured: u32, pairs: bool) -> u32 {
    // Every value is masked to one range, so the verifier (5.10's too)
    // sees the same state whichever digits came and prunes, instead of
    // following each path through the bytes.
    let (mut prev, mut last, mut cur, mut in_number) = (0u32, 0u32, 0u32, 0u32);
    let mut i = 4;
    while i < ANNOUNCE_SCAN && (i as u32) < captured {
        let c = d[i];
        let digit = u32::from(c.wrapping_sub(b'0'));
        if digit < 10 {
            cur = (cur * 10 + digit) & NUMBER_MASK;
            in_number = 1;
        } else {
            if in_number != 0 {
                prev = last;
                last = cur;
            }
            cur = 0;
            in_number = 0;
            if c == b')' || c == b'\r' || c == b'\n' {
                break;
            }
        }
        i += 1;
    }
    let port = if pairs {
        (prev & 0xff) * 256 + (last & 0xff)
    } else {
        last
    };
    if port < 65_536 { port } else { 0 }
}

//! The little FTP the kernel reads in a captured control segment, as pure
//! functions: the `PASS`/`ACCT`/`ADAT` arguments to mask before the bytes
//! leave the kernel, the data port a server's `227`/`229` announces, and a
//! client's `PORT`/`EPRT`. They run in eBPF programs, so every loop is bounded by
//! a constant and every value masked to a range the verifier (5.10's too)
//! can follow; the host tests (in the `ftptrace` crate) hold them against
//! the user-space parser on the same bytes.

use crate::CONTROL_CAPTURE_BYTES;

/// Bytes of an announcement searched for the port.
pub const ANNOUNCE_SCAN: usize = 80;
/// Numbers beyond a port's range are cut to this mask (then refused).
const NUMBER_MASK: u32 = 0x1_ffff;

/// Overwrites with `*`, up to its line end, the argument of a segment
/// that starts with `PASS `, `ACCT ` or `ADAT ` (any case, also after a
/// Telnet `IAC` pair such as `IAC IP`), and from `tail_from` on (a long
/// segment's tail, whose first line began in bytes not captured) the
/// tail's first line whole; line ends stay, so the lines and lengths are
/// as they were. Lines further in are masked by user space (the parser
/// never keeps their argument, the recorder masks it): a state machine over
/// every byte is more than the older verifiers accept. `captured` is asked
/// again for each loop: the programs read it back from memory, so that
/// what one loop taught the verifier about it (a narrower range at every
/// exit) does not make it walk the next loop once per exit. `masked` is
/// called when it masked something, at once, rather than a flag returned:
/// a flag kept across the tail's loop would make the verifier walk that
/// loop once per value.
#[inline(always)]
pub fn mask_secrets(
    d: &mut [u8; CONTROL_CAPTURE_BYTES],
    captured: impl Fn() -> u32,
    tail_from: impl Fn() -> u32,
    mut masked: impl FnMut(),
) {
    // One loop for the head, from where the argument starts (0: no secret
    // verb), chosen by arithmetic rather than by a branch per place.
    let at_start = secret_verb_at(d, 0, captured());
    let after_iac = u32::from(d[0] == IAC) & secret_verb_at(d, 2, captured());
    let from = at_start * 5 + (1 - at_start) * after_iac * 7;
    // SAFETY: a local variable. Through memory, so that the verifier knows
    // a range and walks the loop once, not once per start LLVM computed.
    let from = unsafe { core::ptr::read_volatile(&from) } & 7;
    if from != 0 && mask_to_line_end(d, from as usize, captured()) {
        masked();
    }
    if tail_from() == HEAD as u32 && mask_to_line_end(d, HEAD, captured()) {
        masked();
    }
}

/// Where a long segment's tail starts in the captured bytes.
const HEAD: usize = crate::CONTROL_HEAD_BYTES;

/// 1 when a secret-carrying verb and a space start at `at` (0, or 2 after
/// `IAC x`) with an argument byte after them, else 0.
#[inline(always)]
fn secret_verb_at(d: &[u8; CONTROL_CAPTURE_BYTES], at: usize, captured: u32) -> u32 {
    if captured as usize <= at + 5 || d[at + 4] != b' ' {
        return 0;
    }
    let verb = [
        d[at] | 0x20,
        d[at + 1] | 0x20,
        d[at + 2] | 0x20,
        d[at + 3] | 0x20,
    ];
    u32::from(matches!(&verb, b"pass" | b"acct" | b"adat"))
}

/// `*` over every byte from `from` to the first line end (CR or LF): the
/// loop leaves at the line end, so the verifier walks it once. Whether it
/// masks anything is known before the loop (the first byte), so that no
/// value leaves the loop: its exits are all one state to the verifier.
#[inline(always)]
fn mask_to_line_end(d: &mut [u8; CONTROL_CAPTURE_BYTES], from: usize, captured: u32) -> bool {
    let any = from < CONTROL_CAPTURE_BYTES
        && (from as u32) < captured
        && d[from] != b'\r'
        && d[from] != b'\n';
    let mut i = from;
    while i < CONTROL_CAPTURE_BYTES && (i as u32) < captured {
        if d[i] == b'\r' || d[i] == b'\n' {
            break;
        }
        d[i] = b'*';
        i += 1;
    }
    any
}

const IAC: u8 = 0xff;

/// What a segment announces, read without a branch (so the verifier walks
/// the port reader once whichever it is): 0 for nothing, else bit 0 set
/// when the port is two numbers (`227`, `PORT`) and bit 1 set. A server's
/// words (`from_server` 1) are `227 `/`229 `; a client's (0), `PORT `/`EPRT `.
#[inline(always)]
pub fn announcement_kind(d: &[u8; CONTROL_CAPTURE_BYTES], captured: u32, from_server: u32) -> u32 {
    let byte = |i: usize| u32::from(d[i]);
    let lower = |i: usize| u32::from(d[i] | 0x20);
    let from_server = from_server & 1;
    // 1 when `x` (under 2^16) is 0, without a comparison.
    let zero = |x: u32| (x.wrapping_sub(1) >> 31) & 1;
    let server_prefix = zero((byte(0) ^ 0x32) | (byte(1) ^ 0x32) | (byte(3) ^ 0x20));
    let server_227 = server_prefix & zero(byte(2) ^ 0x37);
    let server_229 = server_prefix & zero(byte(2) ^ 0x39);
    let space = zero(byte(4) ^ 0x20);
    let port =
        space & zero((lower(0) ^ 0x70) | (lower(1) ^ 0x6f) | (lower(2) ^ 0x72) | (lower(3) ^ 0x74));
    let eprt =
        space & zero((lower(0) ^ 0x65) | (lower(1) ^ 0x70) | (lower(2) ^ 0x72) | (lower(3) ^ 0x74));
    let client = 1 - from_server;
    let pairs = (from_server & server_227) | (client & port);
    let any = (from_server & (server_227 | server_229)) | (client & (port | eprt));
    // Too short to hold a port: nothing.
    let long_enough = 1 - zero(captured.saturating_sub(8).min(1));
    (any & long_enough) << 1 | (pairs & any & long_enough)
}

/// The data port of `227 ... (h1,h2,h3,h4,p1,p2)` or `PORT h1,...,p1,p2`
/// (`pairs` 1: `p1*256+p2`, the last two numbers) or of `229 ... (|||port|)` or
/// `EPRT |af|addr|port|` (the last number), reading up to `)` or the line's
/// end; 0 if none.
#[inline(always)]
pub fn announced_port(d: &[u8; CONTROL_CAPTURE_BYTES], captured: u32, pairs: u32) -> u32 {
    // Every value is masked to one range, so the verifier (5.10's too)
    // sees the same state whichever digits came and prunes, instead of
    // following each path through the bytes.
    let (mut prev, mut last, mut cur, mut in_number) = (0u32, 0u32, 0u32, 0u32);
    let mut i = 4;
    while i < ANNOUNCE_SCAN && (i as u32) < captured {
        let c = d[i];
        let digit = u32::from(c.wrapping_sub(b'0'));
        // The step as arithmetic, one path through the body: `is_digit`
        // extends the number, a number's first non-digit (`ends`) shifts
        // it into `last`.
        let is_digit = u32::from(digit < 10);
        let ends = (1 - is_digit) & in_number;
        prev = (ends * last + (1 - ends) * prev) & NUMBER_MASK;
        last = (ends * cur + (1 - ends) * last) & NUMBER_MASK;
        cur = is_digit * ((cur * 10 + (digit & 15)) & NUMBER_MASK);
        in_number = is_digit;
        if c == b')' || c == b'\r' || c == b'\n' {
            break;
        }
        i += 1;
    }
    // `pairs` (0 or 1) as arithmetic: a branch on it could be hoisted
    // before the loop, which the verifier would then walk twice.
    let pairs = pairs & 1;
    let port = ((prev & 0xff) * 256 + (last & 0xff)) * pairs + last * (1 - pairs);
    if port < 65_536 { port } else { 0 }
}

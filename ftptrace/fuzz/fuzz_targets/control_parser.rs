//! The FTP control-channel parser, fed both directions in arbitrary
//! segments (some cut short by the kernel), with password lines spliced in.
//! Beyond "never panics":
//!
//! - a secret-carrying command (`PASS`, `ACCT`, `ADAT`, `MIC`, `CONF`,
//!   `ENC`, `SITE PSWD`) never has its secret in an event, in the parser's
//!   `Debug`, or in the bytes `mask_unkept` leaves (what a recording keeps);
//! - a parser fed the masked bytes reads the same events (a replay prints
//!   the live run's lines);
//! - where a segment is split does not change what is read.
//!
//! Secrets are marked by byte 0x01, which is taken out of the rest of the
//! input: any 0x01 in an event or in masked bytes is a secret that leaked.
#![no_main]

use ftptrace::ftp::{ControlEvent, ControlParser, Side, mask_unkept};
use ftptrace_fuzz::Input;
use libfuzzer_sys::fuzz_target;

const SECRET: &[u8] = b"\x01Zq7Kx\x01";
const MARK: u8 = 0x01;

/// Ways a secret's line starts, as clients send them (case, Telnet
/// commands before and inside the verb, the SITE sub-command).
const SECRET_INTROS: &[&[u8]] = &[
    b"PASS ",
    b"pass ",
    b"AcCt ",
    b"ADAT ",
    b"MIC ",
    b"CONF ",
    b"ENC ",
    b"SITE PSWD ",
    b"site chpasswd ",
    b"\xff\xf4\xff\xf2PASS ",
    b"\xffPASS ",
    b"PA\xff\xf1SS ",
];

/// One step: bytes of one side, or a password line, in one or two feeds.
struct Step {
    side: Side,
    feeds: Vec<Vec<u8>>,
    truncated: bool,
}

fn steps(data: &[u8]) -> Vec<Step> {
    let mut input = Input(data);
    let mut steps = Vec::new();
    while !input.is_empty() {
        let op = input.byte();
        let side = if op & 1 == 0 {
            Side::Client
        } else {
            Side::Server
        };
        let truncated = op & 0x18 == 0x18;
        let (side, bytes) = if op & 6 == 6 {
            let intro = SECRET_INTROS[usize::from(input.byte()) % SECRET_INTROS.len()];
            // A line of its own, so nothing before it can make the
            // secret an ordinary argument.
            let mut line = b"\n".to_vec();
            line.extend_from_slice(intro);
            line.extend_from_slice(SECRET);
            if op & 0x20 != 0 {
                line.extend_from_slice(b"\r\n");
            }
            (Side::Client, line)
        } else {
            let len = usize::from(input.byte());
            let bytes: Vec<u8> = input
                .take(len)
                .iter()
                .copied()
                .filter(|&b| b != MARK)
                .collect();
            (side, bytes)
        };
        let split = usize::from(input.byte()) % (bytes.len() + 1);
        let (head, tail) = bytes.split_at(split);
        steps.push(Step {
            side,
            feeds: vec![head.to_vec(), tail.to_vec()],
            truncated,
        });
    }
    steps
}

/// Feeds a step's bytes; the kernel's truncation comes with the last feed.
fn run(
    parser: &mut ControlParser,
    step: &Step,
    feeds: &[&[u8]],
    kept: &mut Vec<Vec<u8>>,
) -> Vec<ControlEvent> {
    let mut events = Vec::new();
    for (i, bytes) in feeds.iter().enumerate() {
        let mut ranges = Vec::new();
        let last = i + 1 == feeds.len();
        events.extend(parser.segment_keeping(
            step.side,
            bytes,
            last && step.truncated,
            &mut ranges,
        ));
        let mut masked = bytes.to_vec();
        mask_unkept(&mut masked, &ranges);
        kept.push(masked);
    }
    events
}

fn assert_no_secret(event: &ControlEvent) {
    let text = match event {
        ControlEvent::Command { verb, arg } => {
            let verb = verb.as_str();
            let secret_verb = matches!(verb, "PASS" | "ACCT" | "ADAT" | "MIC" | "CONF" | "ENC");
            assert!(
                !secret_verb || arg.is_none(),
                "{verb} kept its argument {arg:?}"
            );
            if verb == "SITE"
                && let Some(arg) = arg
            {
                let word = arg.split(' ').next().unwrap_or_default();
                let secret_site = ["PSWD", "PASSWD", "CHPASS", "CHPASSWD"]
                    .iter()
                    .any(|w| word.eq_ignore_ascii_case(w));
                assert!(!secret_site || arg == word, "SITE {arg:?} kept its secret");
            }
            arg.as_deref().unwrap_or_default()
        }
        ControlEvent::Reply { text, .. } => text,
        ControlEvent::DataEndpoint { .. } | ControlEvent::Encrypted => "",
    };
    assert!(
        !text.contains(char::from(MARK)),
        "a secret leaked into {event:?}"
    );
}

fuzz_target!(|data: &[u8]| {
    let Some((&first, rest)) = data.split_first() else {
        return;
    };
    let mid_stream = first & 1 == 1;
    let new = || match mid_stream {
        false => ControlParser::new(),
        true => ControlParser::mid_stream(),
    };
    let mut seen = [false; 2];
    let steps = steps(rest);
    let (mut parser, mut replayed, mut resplit) = (new(), new(), new());
    for step in &steps {
        let feeds: Vec<&[u8]> = step.feeds.iter().map(Vec::as_slice).collect();
        let mut kept = Vec::new();
        let events = run(&mut parser, step, &feeds, &mut kept);
        for event in &events {
            assert_no_secret(event);
        }
        assert!(
            !format!("{parser:?}").contains("Zq7Kx"),
            "a secret in {parser:?}"
        );
        for masked in &kept {
            assert!(
                !masked.contains(&MARK),
                "a secret left unmasked in {masked:?}"
            );
        }

        let masked: Vec<&[u8]> = kept.iter().map(Vec::as_slice).collect();
        let again = run(&mut replayed, step, &masked, &mut Vec::new());
        assert_eq!(again, events, "the masked bytes read differently");

        // A mid-stream parser reads a side's first segment by where it
        // ends (a whole line or not), so that one keeps its split.
        let whole = step.feeds.concat();
        let (head, tail) = whole.split_at(whole.len() / 2);
        let seen = &mut seen[step.side.index()];
        let resplit_feeds = if *seen || !mid_stream {
            [head, tail]
        } else {
            [feeds[0], feeds[1]]
        };
        *seen |= !whole.is_empty();
        let split_elsewhere = run(&mut resplit, step, &resplit_feeds, &mut Vec::new());
        assert_eq!(split_elsewhere, events, "another split reads differently");
    }
    assert_eq!(
        replayed.junk(),
        parser.junk(),
        "junk counts differ after masking"
    );
    assert_eq!(
        resplit.junk(),
        parser.junk(),
        "junk counts differ with another split"
    );
    assert_eq!(replayed.is_encrypted(), parser.is_encrypted());
});

//! One [`ControlParser`] per FTP control connection, fed the segments the
//! kernel captured, in TCP sequence order: retransmitted bytes are fed once,
//! and bytes the kernel never delivered (a lost record, a segment cut short)
//! make the parser resynchronise at the next line instead of gluing halves
//! of two lines together.
//!
//! Connections are keyed by the kernel's socket cookie, which is never
//! reused (a socket address is). Each end of a connection on this host is
//! its own socket, so a host that is both client and server parses both.

use std::{collections::VecDeque, ops::Range};

// Keyed per process like std's, so that tuples a stranger picks cannot
// be made to collide, at a fraction of SipHash's cost per lookup.
use foldhash::{HashMap, HashSet};

use crate::{
    event::{EventKind, Segment},
    ftp::{ControlEvent, ControlParser, Side, mask_unkept},
};

/// Control connections followed at once; past it the least recently active
/// one is forgotten (counted in [`ControlChannels::evicted`]).
pub const CAPACITY: usize = 4096;

/// The parsers of the control connections seen so far.
#[derive(Debug)]
pub struct ControlChannels {
    connections: HashMap<u64, Connection>,
    /// Socket address → cookie, to forget a connection when its socket is freed.
    by_socket: HashMap<u64, u64>,
    capacity: usize,
    clock: u64,
    evicted: u64,
    /// Cookies of connections evicted for room, oldest first: if one comes
    /// back, its parser starts in the middle of its stream.
    forgotten: VecDeque<u64>,
    forgotten_set: HashSet<u64>,
    /// (`last_used`, cookie) of every use, oldest first: the least recently
    /// used connection is the first entry still current, found without a
    /// scan of every connection (a table at capacity makes room for each
    /// new one). Stale entries are skipped, and the queue rebuilt when they
    /// outnumber the connections.
    recency: VecDeque<(u64, u64)>,
}

#[derive(Debug, Default)]
struct Connection {
    parser: ControlParser,
    socket: Option<u64>,
    /// Next expected sequence number from the client, then from the server.
    next_seq: [Option<u32>; 2],
    /// The same in the TLS plaintext's byte count, once it is fed.
    next_plain: [Option<u32>; 2],
    last_used: u64,
}

impl Default for ControlChannels {
    fn default() -> Self {
        Self::with_capacity(CAPACITY)
    }
}

impl ControlChannels {
    pub fn with_capacity(capacity: usize) -> Self {
        Self {
            connections: HashMap::default(),
            by_socket: HashMap::default(),
            capacity: capacity.max(1),
            clock: 0,
            evicted: 0,
            forgotten: VecDeque::new(),
            forgotten_set: HashSet::default(),
            recency: VecDeque::new(),
        }
    }

    /// Parses one captured segment of socket `socket`, whose local end is
    /// the FTP server when `local_is_server`; returns what it completed, as
    /// [`EventKind::Ftp`] events. The segment's bytes that the parser did
    /// not read as ordinary text (a password, bytes already fed, a line
    /// being skipped) are masked with `*` afterwards, so that a copy of the
    /// segment kept anywhere holds no secret. `from_start`: the socket was
    /// seen opening, so a connection new here starts with its first byte;
    /// otherwise its parser starts by skipping to a line end.
    pub fn segment(
        &mut self,
        socket: Option<u64>,
        local_is_server: bool,
        from_start: bool,
        segment: &mut Segment,
    ) -> Vec<EventKind> {
        self.clock += 1;
        if segment.decrypted {
            // The kernel knows the socket, not its cookie: the TCP segments
            // that came before tell it (the socket's address serves until then).
            segment.cookie = socket
                .and_then(|sk| self.by_socket.get(&sk).copied().or(Some(sk)))
                .unwrap_or(0);
        }
        let from = match (local_is_server, segment.outgoing) {
            (true, true) | (false, false) => Side::Server,
            (true, false) | (false, true) => Side::Client,
        };
        if !self.connections.contains_key(&segment.cookie) {
            self.make_room();
            let parser = if from_start && !self.forgotten_set.contains(&segment.cookie) {
                ControlParser::new()
            } else {
                ControlParser::mid_stream()
            };
            self.connections.insert(
                segment.cookie,
                Connection {
                    parser,
                    ..Connection::default()
                },
            );
        }
        let connection = self
            .connections
            .get_mut(&segment.cookie)
            .expect("inserted above");
        connection.last_used = self.clock;
        self.recency.push_back((self.clock, segment.cookie));
        if connection.socket.is_none()
            && let Some(sk) = socket
        {
            connection.socket = Some(sk);
            self.by_socket.insert(sk, segment.cookie);
        }
        let index = usize::from(from == Side::Server);
        let mut kept = Vec::new();
        let mut events = Vec::new();
        if segment.decrypted {
            events.extend(connection.parser.decrypting());
            events.extend(feed_in_order(
                &mut connection.parser,
                &mut connection.next_plain[index],
                from,
                segment,
                &mut kept,
            ));
        } else if !connection.parser.is_decrypted() {
            // Once the plaintext comes, TCP's payload is only its ciphertext.
            events = feed_in_order(
                &mut connection.parser,
                &mut connection.next_seq[index],
                from,
                segment,
                &mut kept,
            );
        }
        mask_unkept(segment.payload.bytes_mut(), &kept);
        if self.recency.len() > 4 * self.connections.len() + 64 {
            self.rebuild_recency();
        }
        events
            .into_iter()
            .map(|event| EventKind::Ftp { from, event })
            .collect()
    }

    /// The kernel freed socket `sk`: its connection, if any, is over.
    pub fn forget_socket(&mut self, sk: u64) {
        if let Some(cookie) = self.by_socket.remove(&sk) {
            self.connections.remove(&cookie);
        }
    }

    /// Connections followed now.
    pub fn len(&self) -> usize {
        self.connections.len()
    }

    pub fn is_empty(&self) -> bool {
        self.connections.is_empty()
    }

    /// Connections forgotten to stay within the capacity.
    pub fn evicted(&self) -> u64 {
        self.evicted
    }

    fn rebuild_recency(&mut self) {
        let mut current: Vec<(u64, u64)> = self
            .connections
            .iter()
            .map(|(&cookie, c)| (c.last_used, cookie))
            .collect();
        current.sort_unstable();
        self.recency = current.into();
    }

    fn make_room(&mut self) {
        while self.connections.len() >= self.capacity {
            let Some((used, oldest)) = self.recency.pop_front() else {
                return;
            };
            if self.connections.get(&oldest).map(|c| c.last_used) != Some(used) {
                continue;
            }
            if let Some(connection) = self.connections.remove(&oldest)
                && let Some(sk) = connection.socket
            {
                self.by_socket.remove(&sk);
            }
            if self.forgotten.len() >= self.capacity
                && let Some(old) = self.forgotten.pop_front()
            {
                self.forgotten_set.remove(&old);
            }
            self.forgotten.push_back(oldest);
            self.forgotten_set.insert(oldest);
            self.evicted += 1;
        }
    }
}

/// Feeds the bytes of `segment` that follow what this direction already
/// had (`next`: the sequence number after them, `None` before the first
/// segment), and moves `next` past them; bytes that never reached us (a
/// segment ahead of `next`, the middle of a long segment, its cut end) make
/// the parser skip to the next line. `kept` gets the ranges of the payload
/// the parser read as ordinary text.
fn feed_in_order(
    parser: &mut ControlParser,
    next: &mut Option<u32>,
    from: Side,
    segment: &Segment,
    kept: &mut Vec<Range<usize>>,
) -> Vec<ControlEvent> {
    let end = segment.seq.wrapping_add(segment.payload_len);
    // Offset in the segment from which its bytes are new.
    let mut fed_to = match *next {
        None => 0,
        Some(expected) => {
            // Sequence numbers wrap: compare by signed distance (RFC 1982).
            let ahead = segment.seq.wrapping_sub(expected) as i32;
            if ahead > 0 {
                // Bytes between `expected` and `seq` never reached us.
                parser.gap(from);
                0
            } else {
                let already = ahead.unsigned_abs();
                if already >= segment.payload_len {
                    // A retransmit of bytes already fed.
                    return Vec::new();
                }
                already
            }
        }
    };
    *next = Some(end);
    let mut events = Vec::new();
    let mut index = 0;
    for (offset, bytes) in segment.pieces() {
        let piece_end = offset + bytes.len() as u32;
        if piece_end > fed_to {
            if offset > fed_to {
                parser.gap(from);
                fed_to = offset;
            }
            let skip = (fed_to - offset) as usize;
            let mut piece_kept = Vec::new();
            events.extend(parser.feed_keeping(from, &bytes[skip..], &mut piece_kept));
            let base = index + skip;
            kept.extend(piece_kept.into_iter().map(|r| r.start + base..r.end + base));
            fed_to = piece_end;
        }
        index += bytes.len();
    }
    if fed_to < segment.payload_len {
        // The segment's end was not captured.
        parser.gap(from);
    }
    events
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{event::Payload, ftp::Verb};

    const PASSWORD: &str = "Tr0ub4dor&3";

    fn segment(cookie: u64, outgoing: bool, seq: u32, bytes: &[u8]) -> Segment {
        Segment {
            cookie,
            outgoing,
            seq,
            payload_len: u32::try_from(bytes.len()).unwrap(),
            redacted: false,
            payload: Payload::new(bytes),
            tail_at: None,
            mark: None,
            decrypted: false,
        }
    }

    fn commands(kinds: &[EventKind]) -> Vec<String> {
        kinds
            .iter()
            .map(|kind| match kind {
                EventKind::Ftp {
                    from,
                    event: ControlEvent::Command { verb, arg },
                } => format!("{from:?} {} {arg:?}", verb.as_str()),
                EventKind::Ftp {
                    from,
                    event: ControlEvent::Reply { code, text },
                } => format!("{from:?} {code} {text}"),
                other => format!("{other:?}"),
            })
            .collect()
    }

    /// The TLS library's plaintext of a connection (socket 0xa, cookie 1):
    /// after `AUTH TLS`/`234` in TCP segments it is read by its own byte
    /// count, a retried write's bytes once, and TCP's ciphertext no more.
    #[test]
    fn plaintext_follows_the_clear_start_and_ciphertext_is_not_read() {
        let mut channels = ControlChannels::default();
        let server = Some(0xa);
        let mut said = Vec::new();
        for (outgoing, seq, bytes) in [
            (true, 100, &b"220 hi\r\n"[..]),
            (false, 500, b"AUTH TLS\r\n"),
            (true, 108, b"234 go\r\n"),
        ] {
            said.extend(channels.segment(
                server,
                true,
                true,
                &mut segment(1, outgoing, seq, bytes),
            ));
        }
        let plain = |outgoing, seq, bytes: &[u8]| Segment {
            decrypted: true,
            ..segment(0, outgoing, seq, bytes)
        };
        for mut decrypted in [
            plain(false, 0, b"USER alice\r\n"),
            // Ciphertext on the wire: not read.
            segment(1, false, 510, b"\x17\x03\x03\x00\x20QUIT\r\n"),
            plain(true, 0, b"331 pass\r\n"),
            // A write retried from its start: fed once.
            plain(true, 0, b"331 pass\r\n"),
            plain(true, 10, b"230 in\r\n"),
        ] {
            said.extend(channels.segment(server, true, true, &mut decrypted));
        }
        assert_eq!(
            commands(&said),
            [
                "Server 220 hi",
                "Client AUTH Some(\"TLS\")",
                "Server 234 go",
                "Ftp { from: Server, event: Encrypted }",
                "Client USER Some(\"alice\")",
                "Server 331 pass",
                "Server 230 in",
            ]
        );
        assert_eq!(channels.len(), 1, "one connection, found by its socket");
    }

    /// Implicit FTPS (port 990): the first plaintext says the channel is TLS.
    #[test]
    fn the_first_plaintext_of_an_implicit_tls_channel_says_it_is_encrypted() {
        let mut channels = ControlChannels::default();
        let mut hello = segment(7, false, 1, b"\x16\x03\x01\x00\x05hello");
        let mut said = channels.segment(Some(0xb), true, true, &mut hello);
        let mut greeting = Segment {
            decrypted: true,
            ..segment(0, true, 0, b"220 ready\r\n")
        };
        said.extend(channels.segment(Some(0xb), true, true, &mut greeting));
        assert_eq!(
            commands(&said),
            ["Ftp { from: Server, event: Encrypted }", "Server 220 ready"]
        );
    }

    #[test]
    fn the_server_socket_hears_the_client_arrive_and_sends_replies() {
        let mut channels = ControlChannels::default();
        let mut out = channels.segment(
            Some(0xa),
            true,
            true,
            &mut segment(1, true, 100, b"220 hi\r\n"),
        );
        out.extend(channels.segment(
            Some(0xa),
            true,
            true,
            &mut segment(1, false, 5000, b"USER anonymous\r\n"),
        ));
        assert_eq!(
            commands(&out),
            ["Server 220 hi", "Client USER Some(\"anonymous\")"]
        );
        // The client's own socket: what it sends is the client's.
        let out = channels.segment(
            Some(0xb),
            false,
            true,
            &mut segment(2, true, 5000, b"QUIT\r\n"),
        );
        assert_eq!(commands(&out), ["Client QUIT None"]);
        assert_eq!(channels.len(), 2);
    }

    #[test]
    fn retransmitted_bytes_are_fed_once() {
        let mut channels = ControlChannels::default();
        let first = segment(1, false, 10, b"USER a\r\nPA");
        let mut out = channels.segment(None, true, true, &mut first.clone());
        // The same segment again, then one overlapping it by two bytes.
        out.extend(channels.segment(None, true, true, &mut first.clone()));
        out.extend(channels.segment(
            None,
            true,
            true,
            &mut segment(1, false, 18, b"PASS x\r\nPASV\r\n"),
        ));
        assert_eq!(
            commands(&out),
            [
                "Client USER Some(\"a\")",
                "Client PASS None",
                "Client PASV None"
            ]
        );
    }

    #[test]
    fn a_missing_segment_resynchronises_at_the_next_line() {
        let mut channels = ControlChannels::default();
        let mut out = channels.segment(None, true, true, &mut segment(1, false, 0, b"RETR fi"));
        // Bytes 7..20 never came: "le\r\nSTOR abc" is lost.
        out.extend(channels.segment(
            None,
            true,
            true,
            &mut segment(1, false, 20, b"def\r\nQUIT\r\n"),
        ));
        assert_eq!(commands(&out), ["Client QUIT None"]);
    }

    #[test]
    fn sequence_numbers_wrap() {
        let mut channels = ControlChannels::default();
        let start = u32::MAX - 3;
        let mut out =
            channels.segment(None, true, true, &mut segment(1, false, start, b"NOOP\r\n"));
        out.extend(channels.segment(None, true, true, &mut segment(1, false, start, b"NOOP\r\n")));
        out.extend(channels.segment(None, true, true, &mut segment(1, false, 2, b"QUIT\r\n")));
        assert_eq!(commands(&out), ["Client NOOP None", "Client QUIT None"]);
    }

    #[test]
    fn a_cut_segment_drops_the_rest_of_its_line() {
        let mut channels = ControlChannels::default();
        let mut cut = segment(1, true, 0, b"230-Welcome\r\n230-a very long ban");
        cut.payload_len = 400;
        let mut out = channels.segment(None, true, true, &mut cut);
        out.extend(channels.segment(
            None,
            true,
            true,
            &mut segment(1, true, 400, b"ner\r\n230 Login ok\r\n"),
        ));
        // The rest of the cut line is skipped, and with it the multi-line
        // reply, whose end may have been in the lost bytes; the next full
        // line is a reply of its own.
        assert_eq!(commands(&out), ["Server 230 Login ok"]);
    }

    #[test]
    fn a_password_masked_by_the_kernel_keeps_the_lines_in_step() {
        let mut channels = ControlChannels::default();
        // What the kernel delivers for "PASS <password>\r\n" and the
        // command after it.
        let masked = format!("PASS {}\r\n", "*".repeat(PASSWORD.len()));
        let mut segment_1 = segment(1, false, 0, masked.as_bytes());
        segment_1.redacted = true;
        let mut out = channels.segment(None, true, true, &mut segment_1);
        out.extend(channels.segment(
            None,
            true,
            true,
            &mut segment(1, false, segment_1.payload_len, b"PWD\r\n"),
        ));
        assert_eq!(commands(&out), ["Client PASS None", "Client PWD None"]);
    }

    #[test]
    fn the_parser_drops_a_password_the_kernel_did_not_redact() {
        let mut channels = ControlChannels::default();
        let line = format!("PASS {PASSWORD}\r\n");
        let out = channels.segment(None, true, true, &mut segment(1, false, 0, line.as_bytes()));
        assert_eq!(
            out,
            [EventKind::Ftp {
                from: Side::Client,
                event: ControlEvent::Command {
                    verb: Verb::Pass,
                    arg: None
                }
            }]
        );
    }

    /// What a recording keeps of each segment holds no byte of a password,
    /// however the segments split it, and parses to the same words.
    #[test]
    fn masked_segments_hold_no_secret_and_parse_the_same() {
        let mut stream = format!("USER bob\r\nPASS {PASSWORD}\r\nACCT {PASSWORD}\r\n").into_bytes();
        // A Telnet interrupt before the verb, as clients send before ABOR.
        stream.extend_from_slice(b"\xff\xf4");
        stream.extend_from_slice(format!("PASS {PASSWORD}\r\nRETR a\r\n").as_bytes());
        let bytes = stream.as_slice();
        for split in 1..bytes.len() {
            let mut channels = ControlChannels::default();
            let mut first = segment(1, false, 0, &bytes[..split]);
            let mut second = segment(1, false, split as u32, &bytes[split..]);
            // The second one retransmitted too, overlapping the first.
            let mut again = segment(1, false, 0, bytes);
            let mut said = channels.segment(None, true, true, &mut first);
            said.extend(channels.segment(None, true, true, &mut second));
            said.extend(channels.segment(None, true, true, &mut again));
            let kept: Vec<u8> = [&first, &second, &again]
                .iter()
                .flat_map(|s| s.payload.bytes().to_vec())
                .collect();
            let kept = String::from_utf8_lossy(&kept).into_owned();
            for fragment in PASSWORD.as_bytes().windows(3) {
                let fragment = std::str::from_utf8(fragment).unwrap();
                assert!(
                    !kept.contains(fragment),
                    "split {split}: {fragment:?} in {kept:?}"
                );
            }
            let mut replayed = ControlChannels::default();
            let mut again_said = replayed.segment(None, true, true, &mut first.clone());
            again_said.extend(replayed.segment(None, true, true, &mut second.clone()));
            again_said.extend(replayed.segment(None, true, true, &mut again.clone()));
            assert_eq!(again_said, said, "split {split}");
            assert_eq!(
                commands(&said),
                [
                    "Client USER Some(\"bob\")",
                    "Client PASS None",
                    "Client ACCT None",
                    "Client PASS None",
                    "Client RETR Some(\"a\")"
                ],
                "split {split}"
            );
        }
    }

    #[test]
    fn the_map_is_bounded_and_evicts_the_least_recently_active() {
        let mut channels = ControlChannels::with_capacity(3);
        for cookie in 1..=3 {
            channels.segment(
                Some(cookie * 16),
                true,
                true,
                &mut segment(cookie, false, 0, b"NO"),
            );
        }
        // Connection 1 is active again; 2 is now the oldest.
        channels.segment(Some(16), true, true, &mut segment(1, false, 2, b"OP\r\n"));
        channels.segment(Some(64), true, true, &mut segment(4, false, 0, b"NOOP\r\n"));
        assert_eq!((channels.len(), channels.evicted()), (3, 1));
        // 1 kept its partial line; 2 starts afresh, its "NO" forgotten.
        let out = channels.segment(Some(32), true, true, &mut segment(2, false, 2, b"OP\r\n"));
        assert!(out.is_empty(), "{out:?}");
        assert_eq!(channels.evicted(), 2);
        assert!(channels.len() <= 3);
    }

    /// Thousands of uses of the same connections leave the recency queue
    /// bounded, and the least recently used is still the one evicted.
    #[test]
    fn the_recency_queue_stays_bounded_and_exact() {
        let mut channels = ControlChannels::with_capacity(2);
        let mut seq = [0u32; 3];
        for n in 0..5_000u64 {
            let cookie = 1 + n % 2;
            let at = &mut seq[cookie as usize];
            channels.segment(
                Some(cookie * 16),
                true,
                true,
                &mut segment(cookie, false, *at, b"NOOP\r\n"),
            );
            *at += 6;
        }
        assert!(
            channels.recency.len() <= 4 * 2 + 64,
            "{}",
            channels.recency.len()
        );
        // 2 was used last: a new connection evicts 1.
        channels.segment(Some(48), true, true, &mut segment(3, false, 0, b"NOOP\r\n"));
        assert_eq!(channels.evicted(), 1);
        assert!(channels.connections.contains_key(&2));
        assert!(!channels.connections.contains_key(&1));
    }

    #[test]
    fn a_freed_socket_forgets_its_connection() {
        let mut channels = ControlChannels::default();
        channels.segment(
            Some(0xa),
            true,
            true,
            &mut segment(7, false, 0, b"USER x\r\n"),
        );
        assert_eq!(channels.len(), 1);
        channels.forget_socket(0xb);
        assert_eq!(channels.len(), 1);
        channels.forget_socket(0xa);
        assert!(channels.is_empty());
    }
}

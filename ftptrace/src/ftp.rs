//! Streaming parser for the FTP control channel (RFC 959, 2228, 2428).
//!
//! The kernel hands user space the first bytes of each control-channel
//! segment, per direction, possibly truncated. This turns them into
//! commands, complete replies and announced data endpoints, so a disconnect
//! can be explained by what the peers last said. Input is untrusted: lines
//! split anywhere, segments cut short and binary garbage must never panic,
//! grow memory or desync the lines that follow.
//!
//! Passwords never leave the parser: `PASS` (and `ACCT`) arguments are not
//! put in events, the partial line holding them is zeroed once parsed or
//! discarded, and its `Debug` shows only its length.

use std::{
    borrow::Cow,
    fmt,
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr},
    ops::Range,
};

/// Longest line kept, counting every byte before the LF (a CR included).
/// RFC 959 sets no limit; real commands and replies are far shorter, so a
/// longer line is junk rather than a reason to buffer more.
pub const MAX_LINE_LEN: usize = 512;

/// An FTP role: which peer sent the bytes, which end of a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Side {
    Client,
    Server,
}

impl Side {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Client => "client",
            Self::Server => "server",
        }
    }

    /// The peer's role.
    pub fn other(self) -> Self {
        match self {
            Self::Client => Self::Server,
            Self::Server => Self::Client,
        }
    }

    /// 0 for the client, 1 for the server: the index of per-end pairs.
    pub fn index(self) -> usize {
        match self {
            Self::Client => 0,
            Self::Server => 1,
        }
    }
}

/// A command verb. The ones named matter for explaining disconnects; any
/// other well-formed verb is kept, upper-cased, in `Other`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verb {
    User,
    Pass,
    /// `AUTH TLS` / `AUTH SSL`: a 234 reply switches the channel to TLS.
    Auth,
    Pasv,
    Epsv,
    Port,
    Eprt,
    Retr,
    Stor,
    List,
    Nlst,
    Appe,
    Quit,
    /// 3 to 8 ASCII letters, upper-cased.
    Other(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ControlEvent {
    /// `arg` is `None` when absent or empty, and always for `PASS`/`ACCT`.
    Command { verb: Verb, arg: Option<String> },
    /// A complete reply; for a multi-line reply, `text` is its last line's
    /// (the terminating `code SP text` line), emitted once that line arrives.
    Reply { code: u16, text: String },
    /// Where the next data connection goes: 227/229 replies (server) or
    /// PORT/EPRT commands (client). 229 carries only a port (`addr: None`).
    DataEndpoint {
        announced_by: Side,
        addr: Option<IpAddr>,
        port: u16,
    },
    /// 234 accepted AUTH: everything after is TLS and is ignored, both ways.
    Encrypted,
}

/// Control-channel parser for one connection.
#[derive(Debug, Default)]
pub struct ControlParser {
    client_line: LineBuffer,
    server_line: LineBuffer,
    /// The open multi-line reply, if any.
    pending_reply: Option<PendingReply>,
    encrypted: bool,
    /// Fed the TLS library's plaintext (see [`Self::decrypting`]).
    decrypted: bool,
    junk: u64,
}

impl ControlParser {
    pub fn new() -> Self {
        Self::default()
    }

    /// A parser for a connection whose first bytes it did not see (traced
    /// from the middle, or its records lost): in each direction, what comes
    /// before the first line end may be the rest of any line (a password's
    /// last letters read as a verb), so it is skipped, unless the first
    /// bytes seen are one whole line that starts as only a line can: a
    /// command verb FTP defines, or a reply code (a segment usually starts a
    /// line, and a session traced from its middle should keep its `QUIT`).
    pub fn mid_stream() -> Self {
        let mut parser = Self::default();
        parser.client_line.resync = true;
        parser.server_line.resync = true;
        parser
    }

    /// Parses bytes `side` sent; returns the events of every line they end.
    pub fn feed(&mut self, side: Side, bytes: &[u8]) -> Vec<ControlEvent> {
        self.feed_keeping(side, bytes, &mut Vec::new())
    }

    /// As [`Self::feed`], and adds to `kept` the ranges of `bytes` the
    /// parser read as ordinary line text. Everything else (a `PASS`/`ACCT`
    /// argument, a line being skipped, bytes after TLS began) may hold a
    /// secret: [`mask_unkept`] hides it wherever raw bytes are kept.
    pub fn feed_keeping(
        &mut self,
        side: Side,
        bytes: &[u8],
        kept: &mut Vec<Range<usize>>,
    ) -> Vec<ControlEvent> {
        let mut events = Vec::new();
        let mut rest = bytes;
        while (!self.encrypted || self.decrypted) && !rest.is_empty() {
            let at = bytes.len() - rest.len();
            let mut pieces = rest.splitn(2, |&byte| byte == b'\n');
            let fragment = pieces.next().unwrap_or_default();
            let after_newline = pieces.next();
            let line_buffer = match side {
                Side::Client => &mut self.client_line,
                Side::Server => &mut self.server_line,
            };
            if line_buffer.resync {
                line_buffer.resync = false;
                line_buffer.discarding = after_newline.is_none() || !starts_a_line(side, fragment);
            }
            let was_discarding = line_buffer.discarding;
            let line_before = line_buffer.len;
            if line_buffer.append(fragment) {
                self.junk += 1;
            }
            if !was_discarding && !line_buffer.discarding {
                if side == Side::Client {
                    line_buffer.classify();
                }
                let public_end = match line_buffer.secrecy {
                    Secrecy::SecretFrom(start) => start.max(line_before),
                    Secrecy::Undecided | Secrecy::Public => usize::MAX,
                };
                let public = public_end.min(line_buffer.len) - line_before;
                kept.push(at..at + public);
            }
            let Some(after) = after_newline else { break };
            rest = after;
            let outcome = match (line_buffer.line(), side) {
                (None, _) => LineOutcome::Nothing,
                (Some(line), Side::Client) => parse_command(line),
                (Some(line), Side::Server) => reply_line(&mut self.pending_reply, line),
            };
            line_buffer.finish();
            match outcome {
                LineOutcome::Nothing => {}
                LineOutcome::Junk => self.junk += 1,
                LineOutcome::Events(new) => {
                    events.extend(new);
                    if events.last() == Some(&ControlEvent::Encrypted) && !self.decrypted {
                        self.enter_encrypted();
                    }
                }
            }
        }
        events
    }

    /// Bytes of `side` were lost here (the kernel captured only a segment's
    /// head): drop the partial line and resynchronise at the next LF rather
    /// than glue two halves of different lines together.
    pub fn gap(&mut self, side: Side) {
        match side {
            Side::Client => self.client_line.discard(),
            Side::Server => {
                self.server_line.discard();
                // Its terminating line may be what was lost; waiting for it
                // would swallow every later reply as text.
                self.pending_reply = None;
            }
        }
    }

    /// One captured segment: `feed`, then `gap` if the kernel truncated it.
    pub fn segment(&mut self, side: Side, bytes: &[u8], truncated: bool) -> Vec<ControlEvent> {
        self.segment_keeping(side, bytes, truncated, &mut Vec::new())
    }

    /// As [`Self::segment`], with the ranges kept as [`Self::feed_keeping`].
    pub fn segment_keeping(
        &mut self,
        side: Side,
        bytes: &[u8],
        truncated: bool,
        kept: &mut Vec<Range<usize>>,
    ) -> Vec<ControlEvent> {
        let events = self.feed_keeping(side, bytes, kept);
        if truncated {
            self.gap(side);
        }
        events
    }

    /// Lines skipped as unparsable or over-long (bytes lost to a gap are not
    /// junk: the kernel said so).
    pub fn junk(&self) -> u64 {
        self.junk
    }

    pub fn is_encrypted(&self) -> bool {
        self.encrypted
    }

    /// From now on the parser is fed the channel's plaintext as the TLS
    /// library reads and writes it, not its TCP segments (the caller stops
    /// feeding those). [`ControlEvent::Encrypted`] when the channel was
    /// not known to be TLS yet (implicit FTPS, or `AUTH` not seen).
    pub fn decrypting(&mut self) -> Option<ControlEvent> {
        if self.decrypted {
            return None;
        }
        let news = !self.encrypted;
        self.enter_encrypted();
        self.decrypted = true;
        news.then_some(ControlEvent::Encrypted)
    }

    pub fn is_decrypted(&self) -> bool {
        self.decrypted
    }

    fn enter_encrypted(&mut self) {
        self.encrypted = true;
        self.client_line.finish();
        self.server_line.finish();
        self.pending_reply = None;
    }
}

/// What one complete line produced.
enum LineOutcome {
    Nothing,
    Junk,
    Events(Vec<ControlEvent>),
}

/// The current partial line of one direction, in a fixed array so it never
/// reallocates (a reallocation would leave a copy of a password behind).
struct LineBuffer {
    bytes: [u8; MAX_LINE_LEN],
    len: usize,
    /// Skipping to the next LF: the line overflowed or bytes were lost.
    discarding: bool,
    /// The first bytes seen may not start a line: the first fragment
    /// decides between reading it and `discarding`.
    resync: bool,
    /// Whether the line is a command whose argument is a secret.
    secrecy: Secrecy,
}

/// What a command line's first word says about the rest of it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Secrecy {
    /// The verb is not complete yet.
    Undecided,
    Public,
    /// The argument, a secret, starts at this byte of the line.
    SecretFrom(usize),
}

impl Default for LineBuffer {
    fn default() -> Self {
        Self {
            bytes: [0; MAX_LINE_LEN],
            len: 0,
            discarding: false,
            resync: false,
            secrecy: Secrecy::Undecided,
        }
    }
}

/// Length only: the bytes may be half a `PASS` line.
impl fmt::Debug for LineBuffer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LineBuffer")
            .field("len", &self.len)
            .field("discarding", &self.discarding)
            .finish()
    }
}

impl LineBuffer {
    /// Appends bytes of the current line; true when they made it over-long.
    fn append(&mut self, fragment: &[u8]) -> bool {
        if self.discarding || fragment.is_empty() {
            return false;
        }
        let slot = self
            .len
            .checked_add(fragment.len())
            .and_then(|end| self.bytes.get_mut(self.len..end));
        match slot {
            Some(slot) => {
                slot.copy_from_slice(fragment);
                self.len += fragment.len();
                false
            }
            None => {
                self.discard();
                true
            }
        }
    }

    /// The finished line without its CR, unless it is being discarded.
    fn line(&self) -> Option<&[u8]> {
        if self.discarding {
            return None;
        }
        let line = self.bytes.get(..self.len)?;
        Some(line.strip_suffix(b"\r").unwrap_or(line))
    }

    /// Zeroes the line and starts the next one.
    fn finish(&mut self) {
        self.wipe();
        self.discarding = false;
    }

    /// Zeroes the line and skips to the next LF.
    fn discard(&mut self) {
        self.wipe();
        self.discarding = true;
    }

    fn wipe(&mut self) {
        if let Some(used) = self.bytes.get_mut(..self.len) {
            used.fill(0);
        }
        self.len = 0;
        self.secrecy = Secrecy::Undecided;
    }

    /// Decides, once its verb (and, for `SITE`, its sub-command) is
    /// complete, whether the command line so far carries a secret, as
    /// [`parse_command`] will read it.
    fn classify(&mut self) {
        if self.secrecy == Secrecy::Undecided {
            let line = self.bytes.get(..self.len).unwrap_or_default();
            self.secrecy = secrecy(line);
        }
    }
}

/// Where a command line's secret starts, if it has one, or whether that is
/// still open (the line so far ends inside the words that decide it).
fn secrecy(line: &[u8]) -> Secrecy {
    let (data, raw_at) = telnet_data(line);
    let Some(space) = data.iter().position(|&byte| byte == b' ') else {
        // Longer than any verb: the line is junk, nothing to hide.
        return if data.len() > MAX_VERB_LEN {
            Secrecy::Public
        } else {
            Secrecy::Undecided
        };
    };
    let secret_from =
        |at: usize| Secrecy::SecretFrom(raw_at.get(at).copied().unwrap_or(line.len()));
    match Verb::parse(&data[..space]) {
        Some(verb) if verb.arg_is_secret() => secret_from(space + 1),
        Some(Verb::Other(verb)) if verb == "SITE" => {
            let rest = &data[space + 1..];
            match rest.iter().position(|&byte| byte == b' ') {
                Some(end) if is_secret_site_command(&rest[..end]) => {
                    secret_from(space + 1 + end + 1)
                }
                Some(_) => Secrecy::Public,
                None if rest.len() > MAX_VERB_LEN => Secrecy::Public,
                None => Secrecy::Undecided,
            }
        }
        _ => Secrecy::Public,
    }
}

/// `SITE` sub-commands that change a password: `SITE PSWD old new`
/// (wu-ftpd, proftpd's mod_site_misc, ...).
fn is_secret_site_command(word: &[u8]) -> bool {
    ["PSWD", "PASSWD", "CHPASS", "CHPASSWD"]
        .iter()
        .any(|name| word.eq_ignore_ascii_case(name.as_bytes()))
}

/// Verbs are 3 to 8 letters ([`Verb::parse`]).
const MAX_VERB_LEN: usize = 8;

/// Overwrites with `*` every byte of `bytes` outside the `kept` ranges,
/// except line ends (CR, LF), which keep the lines where they were: what a
/// parser fed the result reads the same commands and replies, less the
/// secrets.
pub fn mask_unkept(bytes: &mut [u8], kept: &[Range<usize>]) {
    let mut keep = vec![false; bytes.len()];
    for range in kept {
        if let Some(slots) = keep.get_mut(range.clone()) {
            slots.fill(true);
        }
    }
    for (byte, keep) in bytes.iter_mut().zip(keep) {
        if !keep && *byte != b'\r' && *byte != b'\n' {
            *byte = b'*';
        }
    }
}

impl Verb {
    /// The verb as sent, upper-cased (`RETR`).
    pub fn as_str(&self) -> &str {
        match self {
            Self::User => "USER",
            Self::Pass => "PASS",
            Self::Auth => "AUTH",
            Self::Pasv => "PASV",
            Self::Epsv => "EPSV",
            Self::Port => "PORT",
            Self::Eprt => "EPRT",
            Self::Retr => "RETR",
            Self::Stor => "STOR",
            Self::List => "LIST",
            Self::Nlst => "NLST",
            Self::Appe => "APPE",
            Self::Quit => "QUIT",
            Self::Other(verb) => verb,
        }
    }

    fn parse(word: &[u8]) -> Option<Self> {
        if !(3..=MAX_VERB_LEN).contains(&word.len()) || !word.iter().all(u8::is_ascii_alphabetic) {
            return None;
        }
        let upper = String::from_utf8(word.to_ascii_uppercase()).ok()?;
        Some(match upper.as_str() {
            "USER" => Self::User,
            "PASS" => Self::Pass,
            "AUTH" => Self::Auth,
            "PASV" => Self::Pasv,
            "EPSV" => Self::Epsv,
            "PORT" => Self::Port,
            "EPRT" => Self::Eprt,
            "RETR" => Self::Retr,
            "STOR" => Self::Stor,
            "LIST" => Self::List,
            "NLST" => Self::Nlst,
            "APPE" => Self::Appe,
            "QUIT" => Self::Quit,
            _ => Self::Other(upper),
        })
    }

    /// PASS is the password; ACCT (RFC 959 account information) is often
    /// one; ADAT carries RFC 2228 security data, and MIC, CONF and ENC
    /// whole protected commands (a PASS among them).
    fn arg_is_secret(&self) -> bool {
        match self {
            Self::Pass => true,
            Self::Other(verb) => matches!(verb.as_str(), "ACCT" | "ADAT" | "MIC" | "CONF" | "ENC"),
            _ => false,
        }
    }
}

/// `VERB` or `VERB SP arg`. Arguments are decoded lossily: a Latin-1 file
/// name is still a RETR, and the verb alone rules out binary garbage.
/// Verbs RFC 959 and its extensions (2228, 2389, 2428, 2640, 3659, 7151)
/// define, and the X-forms older clients send: what a fragment of some
/// other line is unlikely to start with.
const DEFINED_VERBS: [&[u8]; 52] = [
    b"ABOR", b"ACCT", b"ADAT", b"ALLO", b"APPE", b"AUTH", b"CCC", b"CDUP", b"CONF", b"CWD",
    b"DELE", b"ENC", b"EPRT", b"EPSV", b"FEAT", b"HELP", b"HOST", b"LANG", b"LIST", b"MDTM",
    b"MIC", b"MKD", b"MLSD", b"MLST", b"MODE", b"NLST", b"NOOP", b"OPTS", b"PASS", b"PASV",
    b"PBSZ", b"PORT", b"PROT", b"PWD", b"QUIT", b"REIN", b"REST", b"RETR", b"RMD", b"RNFR",
    b"RNTO", b"SITE", b"SIZE", b"SMNT", b"STAT", b"STOR", b"STOU", b"STRU", b"SYST", b"TYPE",
    b"USER", b"XPWD",
];

/// Whether `fragment`, a whole line seen without its start, begins as a
/// line of `side` must: a defined verb (any case) then a space or the
/// end, or a reply code then a space, `-` or the end.
fn starts_a_line(side: Side, fragment: &[u8]) -> bool {
    let (data, _) = telnet_data(fragment.strip_suffix(b"\r").unwrap_or(fragment));
    match side {
        Side::Client => {
            let verb = data.split(|&byte| byte == b' ').next().unwrap_or_default();
            DEFINED_VERBS
                .iter()
                .any(|defined| defined.eq_ignore_ascii_case(verb))
        }
        Side::Server => {
            matches!(data.first(), Some(b'1'..=b'5'))
                && data
                    .get(1..3)
                    .is_some_and(|d| d.iter().all(u8::is_ascii_digit))
                && matches!(data.get(3), None | Some(b' ' | b'-'))
        }
    }
}

fn parse_command(line: &[u8]) -> LineOutcome {
    let (line, _) = telnet_data(line);
    let mut parts = line.splitn(2, |&byte| byte == b' ');
    let Some(verb) = parts.next().and_then(Verb::parse) else {
        return LineOutcome::Junk;
    };
    let arg = parts.next().filter(|arg| !arg.is_empty());
    let endpoint = match verb {
        Verb::Port => arg.and_then(parse_port_arg),
        Verb::Eprt => arg.and_then(parse_eprt_arg),
        _ => None,
    };
    let arg = match &verb {
        _ if verb.arg_is_secret() => None,
        // `SITE PSWD old new`: the sub-command alone.
        Verb::Other(name) if name == "SITE" => arg.map(|arg| {
            let word = arg.split(|&b| b == b' ').next().unwrap_or_default();
            match is_secret_site_command(word) {
                true => String::from_utf8_lossy(word).to_ascii_uppercase(),
                false => String::from_utf8_lossy(arg).into_owned(),
            }
        }),
        _ => arg.map(|arg| String::from_utf8_lossy(arg).into_owned()),
    };
    let mut events = vec![ControlEvent::Command { verb, arg }];
    if let Some(endpoint) = endpoint {
        events.push(ControlEvent::DataEndpoint {
            announced_by: Side::Client,
            addr: Some(endpoint.ip()),
            port: endpoint.port(),
        });
    }
    LineOutcome::Events(events)
}

/// The data bytes of a line after Telnet's own (RFC 854), and for each the
/// position it had in the line. The control channel is a Telnet
/// connection: clients send `IAC IP IAC DM` before ABOR (RFC 959 4.1.3).
/// `IAC IAC` is a data byte 255; `IAC WILL|WONT|DO|DONT option` three
/// bytes; `IAC SB ... IAC SE` a subnegotiation; `IAC` and another command
/// two bytes. An `IAC` before a byte that is no Telnet command is dropped
/// alone, so `IAC P A S S` still reads `PASS`.
fn telnet_data(line: &[u8]) -> (Cow<'_, [u8]>, Vec<usize>) {
    if !line.contains(&IAC) {
        return (Cow::Borrowed(line), (0..=line.len()).collect());
    }
    let mut data = Vec::with_capacity(line.len());
    let mut at = Vec::with_capacity(line.len() + 1);
    let mut i = 0;
    let mut in_subnegotiation = false;
    while i < line.len() {
        let byte = line[i];
        let next = line.get(i + 1).copied();
        if in_subnegotiation {
            if byte == IAC && next == Some(TELNET_SE) {
                in_subnegotiation = false;
                i += 2;
            } else {
                i += 1;
            }
            continue;
        }
        if byte != IAC {
            data.push(byte);
            at.push(i);
            i += 1;
            continue;
        }
        i += match next {
            Some(IAC) => {
                data.push(IAC);
                at.push(i + 1);
                2
            }
            Some(TELNET_SB) => {
                in_subnegotiation = true;
                2
            }
            Some(TELNET_WILL..=TELNET_DONT) => 3,
            Some(TELNET_SE..=TELNET_GA) => 2,
            // Not a command: the IAC alone goes.
            Some(_) | None => 1,
        };
    }
    at.push(line.len());
    (Cow::Owned(data), at)
}

const IAC: u8 = 255;
const TELNET_SE: u8 = 240;
const TELNET_GA: u8 = 249;
const TELNET_SB: u8 = 250;
const TELNET_WILL: u8 = 251;
const TELNET_DONT: u8 = 254;

/// An open multi-line reply: only its code and any endpoint seen so far are
/// kept, so an endless reply costs no memory.
#[derive(Debug)]
struct PendingReply {
    code: u16,
    endpoint: Option<Endpoint>,
}

/// Address (absent for 229) and port of an announced data connection.
type Endpoint = (Option<IpAddr>, u16);

fn reply_line(pending: &mut Option<PendingReply>, line: &[u8]) -> LineOutcome {
    let parsed = split_reply_line(line);
    if let Some(open) = pending {
        return match parsed {
            Some((code, false, text)) if code == open.code => {
                let endpoint = open.endpoint.or_else(|| reply_endpoint(code, text));
                *pending = None;
                LineOutcome::Events(reply_events(code, text, endpoint))
            }
            // Anything else, other codes included, is text (RFC 959 4.2).
            _ => {
                if open.endpoint.is_none() {
                    open.endpoint = reply_endpoint(open.code, line);
                }
                LineOutcome::Nothing
            }
        };
    }
    match parsed {
        None => LineOutcome::Junk,
        Some((code, true, text)) => {
            let endpoint = reply_endpoint(code, text);
            *pending = Some(PendingReply { code, endpoint });
            LineOutcome::Nothing
        }
        Some((code, false, text)) => {
            LineOutcome::Events(reply_events(code, text, reply_endpoint(code, text)))
        }
    }
}

/// `code SP text`, `code` alone, or `code - text` (true: more lines follow).
/// First digits 1-6: 6yz are RFC 2228's protected replies.
fn split_reply_line(line: &[u8]) -> Option<(u16, bool, &[u8])> {
    let [h @ b'1'..=b'6', t @ b'0'..=b'9', u @ b'0'..=b'9', rest @ ..] = line else {
        return None;
    };
    let code = [h, t, u]
        .iter()
        .fold(0u16, |code, &&digit| code * 10 + u16::from(digit - b'0'));
    match rest {
        [] => Some((code, false, rest)),
        [b' ', text @ ..] => Some((code, false, text)),
        [b'-', text @ ..] => Some((code, true, text)),
        _ => None,
    }
}

fn reply_events(code: u16, text: &[u8], endpoint: Option<Endpoint>) -> Vec<ControlEvent> {
    let mut events = vec![ControlEvent::Reply {
        code,
        text: String::from_utf8_lossy(text).into_owned(),
    }];
    if let Some((addr, port)) = endpoint {
        events.push(ControlEvent::DataEndpoint {
            announced_by: Side::Server,
            addr,
            port,
        });
    }
    if code == 234 {
        events.push(ControlEvent::Encrypted);
    }
    events
}

fn reply_endpoint(code: u16, text: &[u8]) -> Option<Endpoint> {
    match code {
        227 => find_pasv_addr(text).map(|addr| (Some(addr.ip()), addr.port())),
        229 => find_epsv_port(text).map(|port| (None, port)),
        _ => None,
    }
}

/// The first `h1,h2,h3,h4,p1,p2` anywhere in a 227 text: servers differ on
/// the parentheses, so scan like RFC 1123 4.1.2.6 advises.
fn find_pasv_addr(text: &[u8]) -> Option<SocketAddr> {
    let mut after_digit = false;
    text.iter().enumerate().find_map(|(index, byte)| {
        let starts_number = byte.is_ascii_digit() && !after_digit;
        after_digit = byte.is_ascii_digit();
        starts_number
            .then(|| host_port_prefix(text.get(index..)?))
            .flatten()
            .map(|(addr, _)| addr)
    })
}

/// `(<d><d><d>port<d>)` in a 229 text; `<d>` is any printable non-digit
/// (RFC 2428 recommends `|`).
fn find_epsv_port(text: &[u8]) -> Option<u16> {
    let epsv_port_at = |after_paren: &[u8]| {
        let [d1, d2, d3, rest @ ..] = after_paren else {
            return None;
        };
        if d1 != d2 || d1 != d3 || !is_delimiter(*d1) {
            return None;
        }
        let (port, [end, b')', ..]) = leading_number(rest, 5)? else {
            return None;
        };
        (end == d1).then(|| u16::try_from(port).ok()).flatten()
    };
    text.iter()
        .enumerate()
        .filter(|&(_, &byte)| byte == b'(')
        .find_map(|(index, _)| epsv_port_at(text.get(index + 1..)?))
}

/// PORT's argument: exactly `h1,h2,h3,h4,p1,p2`.
fn parse_port_arg(arg: &[u8]) -> Option<SocketAddr> {
    match host_port_prefix(arg.trim_ascii())? {
        (addr, []) => Some(addr),
        _ => None,
    }
}

/// EPRT's argument: `<d>1<d>ipv4<d>port<d>` or `<d>2<d>ipv6<d>port<d>`.
fn parse_eprt_arg(arg: &[u8]) -> Option<SocketAddr> {
    let (&delimiter, fields) = arg.trim_ascii().split_first()?;
    if !is_delimiter(delimiter) {
        return None;
    }
    let mut fields = fields.split(|&byte| byte == delimiter);
    let (Some(protocol), Some(host), Some(port), Some([]), None) = (
        fields.next(),
        fields.next(),
        fields.next(),
        fields.next(),
        fields.next(),
    ) else {
        return None;
    };
    let host = std::str::from_utf8(host).ok()?;
    let ip = match protocol {
        b"1" => IpAddr::V4(host.parse::<Ipv4Addr>().ok()?),
        b"2" => IpAddr::V6(host.parse::<Ipv6Addr>().ok()?),
        _ => return None,
    };
    let (port, []) = leading_number(port, 5)? else {
        return None;
    };
    Some(SocketAddr::new(ip, u16::try_from(port).ok()?))
}

fn is_delimiter(byte: u8) -> bool {
    byte.is_ascii_graphic() && !byte.is_ascii_digit()
}

/// `h1,h2,h3,h4,p1,p2` at the start of `bytes`, and what follows it.
fn host_port_prefix(bytes: &[u8]) -> Option<(SocketAddr, &[u8])> {
    let mut fields = [0u8; 6];
    let mut rest = bytes;
    for (index, field) in fields.iter_mut().enumerate() {
        if index > 0 {
            rest = rest.strip_prefix(b",")?;
        }
        let (value, after) = leading_number(rest, 3)?;
        *field = u8::try_from(value).ok()?;
        rest = after;
    }
    let [a, b, c, d, port_high, port_low] = fields;
    let ip = IpAddr::V4(Ipv4Addr::new(a, b, c, d));
    let port = u16::from_be_bytes([port_high, port_low]);
    Some((SocketAddr::new(ip, port), rest))
}

/// The decimal number of 1 to `max_digits` (≤ 9) digits starting `bytes`,
/// and the bytes after it. No sign, unlike `str::parse`.
fn leading_number(bytes: &[u8], max_digits: usize) -> Option<(u32, &[u8])> {
    let digits = bytes
        .iter()
        .take_while(|byte| byte.is_ascii_digit())
        .count();
    if digits == 0 || digits > max_digits.min(9) {
        return None;
    }
    let (number, rest) = bytes.split_at_checked(digits)?;
    let value = number
        .iter()
        .fold(0u32, |value, &digit| value * 10 + u32::from(digit - b'0'));
    Some((value, rest))
}

#[cfg(test)]
mod tests {
    use ftptrace_common::{CONTROL_CAPTURE_BYTES, CONTROL_HEAD_BYTES, ftp_bytes};

    use super::*;
    use Side::{Client, Server};

    const PASSWORD: &str = "Qz8-vXw3-Kj4";

    fn command(verb: Verb, arg: Option<&str>) -> ControlEvent {
        ControlEvent::Command {
            verb,
            arg: arg.map(str::to_owned),
        }
    }

    fn other(verb: &str, arg: Option<&str>) -> ControlEvent {
        command(Verb::Other(verb.to_owned()), arg)
    }

    fn reply(code: u16, text: &str) -> ControlEvent {
        ControlEvent::Reply {
            code,
            text: text.to_owned(),
        }
    }

    fn endpoint(announced_by: Side, addr: Option<&str>, port: u16) -> ControlEvent {
        ControlEvent::DataEndpoint {
            announced_by,
            addr: addr.map(|addr| addr.parse().unwrap()),
            port,
        }
    }

    fn feed_all(parser: &mut ControlParser, segments: &[(Side, &[u8])]) -> Vec<ControlEvent> {
        segments
            .iter()
            .flat_map(|&(side, bytes)| parser.feed(side, bytes))
            .collect()
    }

    fn parse(side: Side, bytes: &[u8]) -> (Vec<ControlEvent>, u64) {
        let mut parser = ControlParser::new();
        let events = parser.feed(side, bytes);
        (events, parser.junk())
    }

    /// A whole session, one line per segment: `C`/`S` says who sent it.
    const SESSION: &str = "S220 ProFTPD Server (example.org) ready\r\n\
        CUSER alice\r\n\
        S331 Password required for alice\r\n\
        CPASS Qz8-vXw3-Kj4\r\n\
        S230 User alice logged in\r\n\
        CTYPE I\r\n\
        S200 Type set to I\r\n\
        CPASV\r\n\
        S227 Entering Passive Mode (192,168,1,10,195,80).\r\n\
        CRETR report.csv\r\n\
        S150 Opening BINARY mode data connection for report.csv\r\n\
        S226 Transfer complete\r\n\
        CQUIT\r\n\
        S221 Goodbye.\r\n";

    fn session() -> Vec<(Side, &'static [u8])> {
        SESSION
            .split_inclusive('\n')
            .map(|line| match line.split_at(1) {
                ("C", bytes) => (Client, bytes.as_bytes()),
                (_, bytes) => (Server, bytes.as_bytes()),
            })
            .collect()
    }

    fn session_events() -> Vec<ControlEvent> {
        vec![
            reply(220, "ProFTPD Server (example.org) ready"),
            command(Verb::User, Some("alice")),
            reply(331, "Password required for alice"),
            command(Verb::Pass, None),
            reply(230, "User alice logged in"),
            other("TYPE", Some("I")),
            reply(200, "Type set to I"),
            command(Verb::Pasv, None),
            reply(227, "Entering Passive Mode (192,168,1,10,195,80)."),
            endpoint(Server, Some("192.168.1.10"), 50000),
            command(Verb::Retr, Some("report.csv")),
            reply(150, "Opening BINARY mode data connection for report.csv"),
            reply(226, "Transfer complete"),
            command(Verb::Quit, None),
            reply(221, "Goodbye."),
        ]
    }

    /// Every byte of one direction of the session, in order.
    fn stream(side: Side) -> Vec<u8> {
        session()
            .into_iter()
            .filter(|&(from, _)| from == side)
            .flat_map(|(_, bytes)| bytes.to_vec())
            .collect()
    }

    #[test]
    fn full_session_both_directions() {
        let mut parser = ControlParser::new();
        let events = feed_all(&mut parser, &session());
        assert_eq!(events, session_events());
        assert_no_password(&parser, &events);
        assert_eq!(parser.junk(), 0);
        assert!(!parser.is_encrypted());
    }

    #[test]
    fn session_split_anywhere_yields_the_same_events() {
        for side in [Client, Server] {
            let bytes = stream(side);
            let (whole, _) = parse(side, &bytes);
            assert!(whole.len() >= 5);
            for split in 0..=bytes.len() {
                let (head, tail) = bytes.split_at(split);
                let mut parser = ControlParser::new();
                let mut events = parser.feed(side, head);
                assert_no_password(&parser, &events);
                events.extend(parser.feed(side, tail));
                assert_eq!(events, whole, "{side:?} split at {split}");
                assert_eq!(parser.junk(), 0);
            }
            let mut parser = ControlParser::new();
            let one_at_a_time: Vec<_> = bytes
                .chunks(1)
                .flat_map(|byte| parser.feed(side, byte))
                .collect();
            assert_eq!(one_at_a_time, whole, "{side:?} one byte at a time");
        }
    }

    #[test]
    fn verbs_name_themselves_as_parsed() {
        for word in [
            "USER", "PASS", "AUTH", "PASV", "EPSV", "PORT", "EPRT", "RETR", "STOR", "LIST", "NLST",
            "APPE", "QUIT", "SYST", "FEAT",
        ] {
            let verb = Verb::parse(word.to_ascii_lowercase().as_bytes()).unwrap();
            assert_eq!(verb.as_str(), word);
        }
    }

    #[test]
    fn bare_lf_ends_lines_too() {
        let (events, junk) = parse(Client, b"USER bob\nquit\n");
        assert_eq!(
            events,
            [command(Verb::User, Some("bob")), command(Verb::Quit, None)]
        );
        assert_eq!(junk, 0);
    }

    #[test]
    fn multi_line_replies_yield_one_event_with_the_last_text() {
        let banner: &[u8] =
            b"220-Welcome to example.org\r\n220-This server is\r\n   monitored.\r\n\
            123 not a reply of its own\r\n220 Ready\r\n";
        assert_eq!(parse(Server, banner), (vec![reply(220, "Ready")], 0));

        let feat: &[u8] = b"211-Features:\r\n MDTM\r\n REST STREAM\r\n226 not the end\r\n\
            211-still going\r\n211 End\r\n200 next reply\r\n";
        let expected = vec![reply(211, "End"), reply(200, "next reply")];
        assert_eq!(parse(Server, feat), (expected, 0));

        // The PASV tuple may sit on any line of a multi-line 227.
        let pasv: &[u8] = b"227-Entering Passive Mode\r\n227-(10,0,0,1,4,1)\r\n227 OK\r\n";
        let expected = vec![reply(227, "OK"), endpoint(Server, Some("10.0.0.1"), 1025)];
        assert_eq!(parse(Server, pasv), (expected, 0));
    }

    #[test]
    fn greeting_421_is_a_reply() {
        let (events, junk) = parse(Server, b"421 Too many connections (8) from this IP\r\n");
        let text = "Too many connections (8) from this IP";
        assert_eq!((events, junk), (vec![reply(421, text)], 0));
        // A code alone is a reply with empty text.
        assert_eq!(parse(Server, b"226\r\n"), (vec![reply(226, "")], 0));
    }

    #[test]
    fn pasv_tuple_without_parentheses() {
        let (events, _) = parse(Server, b"227 Entering Passive Mode 10,1,2,3,0,21\r\n");
        assert_eq!(events.get(1), Some(&endpoint(Server, Some("10.1.2.3"), 21)));
        let (events, _) = parse(Server, b"227 Entering Passive Mode (10,1,2,300,0,21)\r\n");
        assert_eq!(events.len(), 1, "an octet over 255 is no address");
    }

    #[test]
    fn epsv_229_announces_a_port_only() {
        let (events, _) = parse(Client, b"EPSV\r\n");
        assert_eq!(events, [command(Verb::Epsv, None)]);
        let text = "Entering Extended Passive Mode (|||6446|)";
        let (events, _) = parse(Server, format!("229 {text}\r\n").as_bytes());
        assert_eq!(events, [reply(229, text), endpoint(Server, None, 6446)]);
        let (events, _) = parse(Server, b"229 Extended (!!!21!)\r\n");
        assert_eq!(events.get(1), Some(&endpoint(Server, None, 21)));
        for bad in "(||6446|) (|!|6446|) (|||70000|) (|||6446!) (|||6446|".split(' ') {
            let (events, _) = parse(Server, format!("229 x {bad}\r\n").as_bytes());
            assert_eq!(events.len(), 1, "{bad}");
        }
    }

    #[test]
    fn port_and_eprt_announce_client_endpoints() {
        let cases = [
            ("PORT", "10,0,0,5,4,1", "10.0.0.5", 1025),
            ("eprt", "|1|132.235.1.2|6275|", "132.235.1.2", 6275),
            (
                "EPRT",
                "|2|1080::8:800:200C:417A|5282|",
                "1080::8:800:200c:417a",
                5282,
            ),
            ("EPRT", "!2!::1!21!", "::1", 21),
        ];
        for (name, arg, addr, port) in cases {
            let verb = if name == "PORT" {
                Verb::Port
            } else {
                Verb::Eprt
            };
            let (events, junk) = parse(Client, format!("{name} {arg}\r\n").as_bytes());
            let expected = [command(verb, Some(arg)), endpoint(Client, Some(addr), port)];
            assert_eq!((events, junk), (expected.to_vec(), 0));
        }
        for bad in [
            "PORT 10,0,0,256,4,1",
            "PORT 10,0,0,5,4",
            "PORT 10,0,0,5,4,1,9",
            "PORT +1,0,0,5,4,1",
            "EPRT |3|10.0.0.1|21|",
            "EPRT |1|::1|21|",
            "EPRT |2|::1|70000|",
            "EPRT |1|10.0.0.1|21",
            "EPRT 1|10.0.0.1|21|",
        ] {
            let (events, junk) = parse(Client, format!("{bad}\r\n").as_bytes());
            assert_eq!(events.len(), 1, "{bad}: a command but no endpoint");
            assert_eq!(junk, 0);
        }
    }

    #[test]
    fn auth_tls_then_everything_is_ignored() {
        let mut parser = ControlParser::new();
        let events = feed_all(
            &mut parser,
            &[
                (Server, b"220 ready\r\n"),
                (Client, b"auth tls\r\n"),
                (Server, b"234 AUTH TLS successful\r\n221 not seen\r\n"),
                (Client, b"\x16\x03\x01\x02\x00\x01\r\nQUIT\r\n"),
                (Server, b"\x16\x03\x03\x00\x7a\r\n221 Goodbye\r\n"),
            ],
        );
        let expected = [
            reply(220, "ready"),
            command(Verb::Auth, Some("tls")),
            reply(234, "AUTH TLS successful"),
            ControlEvent::Encrypted,
        ];
        assert_eq!(events, expected);
        assert!(parser.is_encrypted());
        assert_eq!(parser.junk(), 0);
        parser.gap(Client);
        assert_eq!(parser.feed(Client, b"PASS x\r\n"), []);
    }

    #[test]
    fn gap_resynchronises_at_the_next_newline() {
        let mut parser = ControlParser::new();
        assert_eq!(parser.segment(Client, b"RETR some/long/pa", true), []);
        let events = parser.feed(Client, b"th/file.txt\r\nQUIT\r\n");
        assert_eq!(events, [command(Verb::Quit, None)]);

        // A multi-line reply cut short must not swallow the replies after it.
        let mut parser = ControlParser::new();
        assert_eq!(
            parser.segment(Server, b"220-Banner one\r\n220-Banner t", true),
            []
        );
        let events = parser.feed(Server, b"wo\r\n220 Ready\r\n331 Password required\r\n");
        assert_eq!(
            events,
            [reply(220, "Ready"), reply(331, "Password required")]
        );
        assert_eq!(parser.junk(), 0);
    }

    #[test]
    fn over_long_line_is_discarded_without_growing() {
        let mut parser = ControlParser::new();
        let mut events = parser.feed(Client, b"USER ");
        for _ in 0..100 {
            events.extend(parser.feed(Client, &[b'a'; 100]));
            assert!(parser.client_line.len <= MAX_LINE_LEN);
        }
        events.extend(parser.feed(Client, b"\r\nQUIT\r\n"));
        assert_eq!(events, [command(Verb::Quit, None)]);
        assert_eq!(parser.junk(), 1);

        // The limit counts every byte before the LF, the CR included.
        let longest = format!("USER {}\r\n", "b".repeat(MAX_LINE_LEN - 6));
        assert_eq!(parse(Client, longest.as_bytes()).0.len(), 1);
        let too_long = format!("USER {}\r\n", "b".repeat(MAX_LINE_LEN - 5));
        assert_eq!(parse(Client, too_long.as_bytes()), (vec![], 1));
    }

    #[test]
    fn junk_is_counted_and_skipped() {
        let client: &[u8] = b"\x00\x01\x02\r\n\xff\xfe\xfd\n123 hello\r\nUS3R x\r\n\
            TOOLONGVERB x\r\nUSER\tbob\r\n\r\nNOOP\r\n";
        assert_eq!(parse(Client, client), (vec![other("NOOP", None)], 7));

        let server: &[u8] = b"hello\r\n22 short\r\n2200 long\r\n020 zero\r\n\x80\x81\r\n200 ok\r\n";
        assert_eq!(parse(Server, server), (vec![reply(200, "ok")], 5));

        // Invalid UTF-8 after a valid verb or code keeps the line.
        let (events, junk) = parse(Server, b"421 caf\xe9 closed\r\n");
        assert_eq!((events, junk), (vec![reply(421, "caf\u{FFFD} closed")], 0));
    }

    #[test]
    fn telnet_interrupt_before_abor_is_stripped() {
        let (events, junk) = parse(Client, b"\xff\xf4\xff\xf2ABOR\r\n");
        assert_eq!((events, junk), (vec![other("ABOR", None)], 0));
    }

    /// Issue 11, finding 6: a parser that starts in the middle of a line
    /// (traced from mid-session, a record lost) skips to the first line end:
    /// `PASS wom` + `bat` is no command `BAT`.
    #[test]
    fn a_parser_that_did_not_see_a_line_start_skips_to_the_first_line_end() {
        let mut parser = ControlParser::mid_stream();
        let mut events = parser.feed(Client, b"bat\r\nNOOP\r\n");
        events.extend(parser.feed(Server, b"ily.\r\n200 NOOP ok.\r\n"));
        assert_eq!(events, [other("NOOP", None), reply(200, "NOOP ok.")]);
        assert_eq!(parser.junk(), 0);
        // A partial first line is skipped even when it starts like a verb.
        let mut parser = ControlParser::mid_stream();
        let mut events = parser.feed(Client, b"LIST");
        events.extend(parser.feed(Client, b" x\r\nQUIT\r\n"));
        assert_eq!(events, [command(Verb::Quit, None)]);
    }

    /// A session traced from its middle keeps its first whole line when it
    /// starts as only a line can (a session's `QUIT`, its `221`).
    #[test]
    fn a_parser_that_did_not_see_a_line_start_keeps_a_whole_defined_line() {
        let mut parser = ControlParser::mid_stream();
        let mut events = parser.feed(Client, b"quit\r\n");
        events.extend(parser.feed(Server, b"221 Goodbye.\r\n"));
        assert_eq!(events, [command(Verb::Quit, None), reply(221, "Goodbye.")]);
        let mut parser = ControlParser::mid_stream();
        assert_eq!(parser.feed(Server, b"21 Goodbye.\r\n"), []);
        let mut parser = ControlParser::mid_stream();
        assert_eq!(parser.feed(Client, b"RETRY\r\n"), []);
    }

    /// RFC 854: `IAC` then a byte that is no command drops the `IAC` alone
    /// (finding 6: `\xffPASS s` read as verb `ASS`); `IAC IAC` is a data byte;
    /// option negotiation and subnegotiation are not data.
    #[test]
    fn telnet_commands_are_read_as_rfc_854_says() {
        let (events, junk) = parse(Client, b"\xffPASS secret\r\n");
        assert_eq!((events, junk), (vec![command(Verb::Pass, None)], 0));
        let (events, _) = parse(Client, b"RETR a\xff\xffb\r\n");
        assert_eq!(events, [command(Verb::Retr, Some("a\u{FFFD}b"))]);
        let (events, _) = parse(Client, b"\xff\xfb\x01\xff\xfa\x18\x01\xff\xf0NOOP\r\n");
        assert_eq!(events, [other("NOOP", None)]);
        // The mask for recordings reads the verb the same way.
        assert_eq!(secrecy(b"\xffPASS s"), Secrecy::SecretFrom(6));
        assert_eq!(secrecy(b"\xff\xf4\xff\xf2PASS s"), Secrecy::SecretFrom(9));
    }

    /// Commands whose argument is a secret besides PASS and ACCT: RFC 2228's
    /// ADAT, MIC, CONF, ENC, and `SITE PSWD old new` (its sub-command kept).
    #[test]
    fn every_secret_carrying_command_loses_its_argument() {
        for (line, verb, arg) in [
            ("ADAT c2VjcmV0", "ADAT", None),
            ("MIC c2VjcmV0", "MIC", None),
            ("CONF c2VjcmV0", "CONF", None),
            ("ENC c2VjcmV0", "ENC", None),
            ("SITE PSWD old-secret new-secret", "SITE", Some("PSWD")),
            ("site passwd old-secret new-secret", "SITE", Some("PASSWD")),
            ("SITE CHMOD 644 file", "SITE", Some("CHMOD 644 file")),
        ] {
            let (events, _) = parse(Client, format!("{line}\r\n").as_bytes());
            assert_eq!(events, [other(verb, arg)], "{line}");
        }
        assert_eq!(secrecy(b"SITE PSWD old"), Secrecy::SecretFrom(10));
        assert_eq!(secrecy(b"SITE PSW"), Secrecy::Undecided);
        assert_eq!(secrecy(b"SITE CHMOD 6"), Secrecy::Public);
        assert_eq!(secrecy(b"ADAT x"), Secrecy::SecretFrom(5));
    }

    fn assert_no_password(parser: &ControlParser, events: &[ControlEvent]) {
        let shown = format!("{parser:?} {events:?}");
        for fragment in PASSWORD.as_bytes().windows(4) {
            let fragment = std::str::from_utf8(fragment).unwrap();
            assert!(!shown.contains(fragment), "{fragment:?} leaked in {shown}");
        }
    }

    fn assert_line_buffers_zeroed(parser: &ControlParser) {
        assert!(parser.client_line.bytes.iter().all(|&byte| byte == 0));
        assert!(parser.server_line.bytes.iter().all(|&byte| byte == 0));
    }

    #[test]
    fn password_is_never_kept() {
        let mut parser = ControlParser::new();
        let mut events = Vec::new();
        for segment in [
            &b"USER bob\r\nPA"[..],
            b"SS Qz8-v",
            b"Xw3-Kj4\r",
            b"\nNOOP\r\n",
        ] {
            events.extend(parser.feed(Client, segment));
            assert_no_password(&parser, &events);
        }
        let expected = [
            command(Verb::User, Some("bob")),
            command(Verb::Pass, None),
            other("NOOP", None),
        ];
        assert_eq!(events, expected);
        assert_line_buffers_zeroed(&parser);

        // Lower case, ACCT, a non-UTF-8 password: still no argument kept.
        let (events, _) = parse(
            Client,
            format!("pass {PASSWORD}\r\nACCT {PASSWORD}\r\n").as_bytes(),
        );
        assert_eq!(events, [command(Verb::Pass, None), other("ACCT", None)]);
        assert_eq!(
            parse(Client, b"PASS \xff\xfe\r\n").0,
            [command(Verb::Pass, None)]
        );

        // A password line cut by a gap or grown over-long is wiped too.
        let mut parser = ControlParser::new();
        parser.segment(Client, format!("PASS {PASSWORD}").as_bytes(), true);
        assert_line_buffers_zeroed(&parser);
        let padding = "x".repeat(MAX_LINE_LEN);
        parser.feed(Client, format!("\nPASS {PASSWORD}{padding}").as_bytes());
        assert_line_buffers_zeroed(&parser);
        assert_no_password(&parser, &[]);
        assert_eq!(parser.junk(), 1);
    }

    /// What the kernel copies of a segment: its first bytes in a fixed array.
    fn kernel_bytes(segment: &[u8]) -> ([u8; CONTROL_CAPTURE_BYTES], u32) {
        let mut d = [0u8; CONTROL_CAPTURE_BYTES];
        let n = segment.len().min(CONTROL_CAPTURE_BYTES);
        d[..n].copy_from_slice(&segment[..n]);
        (d, n as u32)
    }

    /// The port the kernel marks for a segment (0: none).
    fn kernel_port(segment: &[u8]) -> u32 {
        let (d, captured) = kernel_bytes(segment);
        let kind = ftp_bytes::announcement_kind(&d, captured, 1);
        if kind == 0 {
            return 0;
        }
        ftp_bytes::announced_port(&d, captured, kind & 1)
    }

    /// The 227/229 forms servers send (vsftpd, proftpd, pure-ftpd, FileZilla
    /// Server, IIS, wu-ftpd and RFC 2428's example): the kernel marks the
    /// port the parser announces, before the client can connect.
    #[test]
    fn the_kernel_reads_the_announced_port_as_the_parser_does() {
        for reply in [
            "227 Entering Passive Mode (192,0,2,1,117,50).",
            "227 Entering Passive Mode (192,0,2,1,117,50)",
            "227 Entering Passive Mode 192,0,2,1,117,50",
            "227 Entering passive mode (192,0,2,1,4,1)",
            "227 =192,0,2,1,255,255",
            "227 Passive (10,0,0,1,0,21).",
            "229 Entering Extended Passive Mode (|||30008|)",
            "229 Extended Passive mode OK (|||6446|)",
            "229 Entering Extended Passive Mode (!!!21!)",
            "229 EPSV ok (|||65535|)",
        ] {
            let segment = format!("{reply}\r\n");
            let (events, junk) = parse(Server, segment.as_bytes());
            assert_eq!(junk, 0, "{reply}");
            let Some(ControlEvent::DataEndpoint { port, .. }) = events.get(1) else {
                panic!("the parser announces nothing in {reply}: {events:?}");
            };
            assert_eq!(kernel_port(segment.as_bytes()), u32::from(*port), "{reply}");
        }
        // A client's PORT/EPRT: the endpoint's port, from the client's side.
        for command in [
            "PORT 192,0,2,2,117,50",
            "port 10,0,0,5,4,1",
            "EPRT |1|192.0.2.2|30008|",
            "EPRT |2|2001:db8::2|5282|",
        ] {
            let segment = format!("{command}\r\n");
            let (events, _) = parse(Client, segment.as_bytes());
            let Some(ControlEvent::DataEndpoint { port, .. }) = events.get(1) else {
                panic!("the parser announces nothing in {command}: {events:?}");
            };
            let (d, captured) = kernel_bytes(segment.as_bytes());
            let kind = ftp_bytes::announcement_kind(&d, captured, 0);
            assert_ne!(kind, 0, "{command}");
            assert_eq!(
                ftp_bytes::announced_port(&d, captured, kind & 1),
                u32::from(*port),
                "{command}"
            );
            // The server's side never reads a client's words as its own.
            assert_eq!(
                ftp_bytes::announcement_kind(&d, captured, 1),
                0,
                "{command}"
            );
        }
        // Nor a client a server's: a client sending `229 (|||8080|)` marks
        // nothing (issue 11, finding 2).
        let (d, captured) = kernel_bytes(b"229 Entering Extended Passive Mode (|||8080|)\r\n");
        assert_eq!(ftp_bytes::announcement_kind(&d, captured, 0), 0);
        // Not an announcement the kernel acts on: a command, another
        // reply, a multi-line 227's first line.
        for segment in [
            "PASV\r\n",
            "226 Transfer complete (1,2,3,4,5,6)\r\n",
            "227-Entering Passive Mode\r\n",
            "229\r\n",
        ] {
            assert_eq!(kernel_port(segment.as_bytes()), 0, "{segment:?}");
        }
    }

    /// Whatever the kernel masks, the parser reads the same lines from it:
    /// a `PASS`/`ACCT`/`ADAT` argument is never kept anyway, and nothing else
    /// is touched; the secret of the segment's first line is gone from the
    /// bytes (later lines are the parser's and the recorder's to mask).
    #[test]
    fn the_kernel_mask_changes_nothing_the_parser_reads() {
        let mut rng = Rng(0xD1B5_4A32_D192_ED03);
        let verbs: [&[u8]; 9] = [
            b"PASS ",
            b"pass ",
            b"AcCt ",
            b"ADAT ",
            b"PASS",
            b"PASSWORD ",
            b"USER ",
            b"\xff\xf4PASS ",
            b"NOOP",
        ];
        for _ in 0..5_000 {
            let mut segment = Vec::new();
            let mut secrets = Vec::new();
            for _ in 0..1 + rng.below(6) {
                let verb = verbs[rng.below(verbs.len())];
                segment.extend_from_slice(verb);
                // Random bytes but no line end: the argument.
                let arg: Vec<u8> = (0..1 + rng.below(30))
                    .map(|_| rng.byte())
                    .filter(|&b| b != b'\n' && b != b'\r')
                    .collect();
                let data = &verb[verb.len().saturating_sub(5)..];
                if data.len() == 5
                    && data[4] == b' '
                    && matches!(
                        &data[..4].to_ascii_lowercase()[..],
                        b"pass" | b"acct" | b"adat"
                    )
                    && arg.len() >= 4
                {
                    secrets.push(arg.clone());
                }
                segment.extend_from_slice(&arg);
                segment.extend_from_slice(b"\r\n");
            }
            segment.truncate(CONTROL_CAPTURE_BYTES);
            let (mut d, captured) = kernel_bytes(&segment);
            let mut masked = false;
            ftp_bytes::mask_secrets(&mut d, || captured, || u32::MAX, || masked = true);
            let after = &d[..captured as usize];
            // The flag the record carries: set whenever a byte changed, and
            // only when a mask was written.
            assert!(after == segment.as_slice() || masked, "{segment:?}");
            assert!(!masked || after.contains(&b'*'), "{segment:?}");
            assert_eq!(parse(Client, after), parse(Client, &segment), "{segment:?}");
            let first_line_secret = secrets.first().filter(|secret| {
                segment.len() > 5 + secret.len() && segment[5..].starts_with(secret)
                    || segment.starts_with(b"\xff\xf4") && segment[7..].starts_with(secret)
            });
            if let Some(secret) = first_line_secret {
                assert!(
                    !after.windows(secret.len()).any(|w| w == secret.as_slice()),
                    "{secret:?} left in {after:?}"
                );
            }
        }
    }

    /// A long segment's tail: its first line began in bytes not captured,
    /// so it is masked whole (it may be the rest of a password); the lines
    /// after it are left to user space.
    #[test]
    fn the_tail_of_a_long_segment_starts_masked() {
        let mut segment = vec![b'x'; CONTROL_CAPTURE_BYTES];
        segment[..6].copy_from_slice(b"NOOP\r\n");
        let tail = b"rd-rest\r\nPASS hunter2\r\nRETR file\r\n";
        let at = CONTROL_HEAD_BYTES;
        segment[at..at + tail.len()].copy_from_slice(tail);
        segment.truncate(at + tail.len());
        let (mut d, captured) = kernel_bytes(&segment);
        let mut masked = false;
        ftp_bytes::mask_secrets(&mut d, || captured, || at as u32, || masked = true);
        assert!(masked);
        assert_eq!(
            &d[at..captured as usize],
            b"*******\r\nPASS hunter2\r\nRETR file\r\n".as_slice()
        );
        assert_eq!(&d[..6], b"NOOP\r\n");
    }

    /// xorshift64: deterministic randomness without a crate.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }

        fn below(&mut self, bound: usize) -> usize {
            (self.next() % bound as u64) as usize
        }

        /// Biased towards bytes the parser cares about, so lines, codes,
        /// verbs and endpoints actually occur.
        fn byte(&mut self) -> u8 {
            const INTERESTING: &[u8] = b"\r\n\r\n \n-(|,0123456789UuSERPAaTLVQI\xff";
            match self.below(3) {
                0 => self.next() as u8,
                _ => INTERESTING[self.below(INTERESTING.len())],
            }
        }
    }

    /// Mixed into the random bytes so multi-line replies, endpoints and TLS
    /// switches get exercised among the garbage.
    const VALID_LINES: &[&[u8]] = &[
        b"\n227 Entering Passive Mode (10,0,0,1,4,1)\r\n",
        b"\n229 Entering Extended Passive Mode (|||6446|)\r\n",
        b"\n150-Opening data connection\r\n",
        b"\nPORT 10,0,0,5,4,1\r\n",
        b"\nEPRT |2|::1|21|\r\n",
        b"\nPASS pw\r\n",
        b"\n234 AUTH TLS successful\r\n",
    ];

    #[test]
    fn fuzz_never_panics_grows_or_desyncs() {
        let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
        let mut parser = ControlParser::new();
        let (mut checked, mut open_replies, mut encrypted, mut endpoints) = (0, 0, 0, 0);
        for _ in 0..20_000 {
            let side = if rng.below(2) == 0 { Client } else { Server };
            let mut garbage: Vec<u8> = (0..rng.below(120)).map(|_| rng.byte()).collect();
            if rng.below(3) == 0 {
                let line = VALID_LINES[rng.below(VALID_LINES.len())];
                let at = rng.below(garbage.len() + 1);
                garbage.splice(at..at, line.iter().copied());
            }
            let (head, tail) = garbage.split_at(rng.below(garbage.len() + 1));
            let mut events = parser.feed(side, head);
            events.extend(parser.segment(side, tail, rng.below(8) == 0));
            endpoints += events
                .iter()
                .filter(|event| matches!(event, ControlEvent::DataEndpoint { .. }))
                .count();
            assert!(parser.client_line.len <= MAX_LINE_LEN);
            assert!(parser.server_line.len <= MAX_LINE_LEN);

            parser.feed(side, b"\r\n");
            if parser.is_encrypted() {
                encrypted += 1;
                parser = ControlParser::new();
                continue;
            }
            // Inside another multi-line reply a valid line is text, by RFC.
            let open_reply = side == Server
                && parser
                    .pending_reply
                    .as_ref()
                    .is_some_and(|open| open.code != 226);
            let (valid, expected): (&[u8], _) = match side {
                Client => (b"NOOP\r\n", other("NOOP", None)),
                Server => (
                    b"226 Transfer complete\r\n",
                    reply(226, "Transfer complete"),
                ),
            };
            let (head, tail) = valid.split_at(rng.below(valid.len() + 1));
            let mut events = parser.feed(side, head);
            events.extend(parser.feed(side, tail));
            if open_reply {
                open_replies += 1;
            } else {
                assert_eq!(events.last(), Some(&expected));
                checked += 1;
            }
        }
        let counts = (checked, open_replies, encrypted, endpoints);
        assert!(counts.0 > 15_000 && counts.1 > 100 && counts.2 > 10 && counts.3 > 100);
        assert!(parser.junk() > 0);
    }
}

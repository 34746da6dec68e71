//! A control channel's conversation in one form for both witnesses: what
//! vsftpd logged (`log_ftp_protocol`) and what ftptrace's `ftp` events say,
//! as `client: RETR file` / `server: 226 Transfer complete.` lines.

use crate::{
    observe::Observed,
    tracer::{Event, Kind, Side},
    vsftpd::ProtocolLine,
};

/// A logged line as ftptrace would say it: `client: RETR file`,
/// `server: 226 Transfer complete.`; vsftpd logs PASS as `PASS <password>`.
pub fn said_in_log(line: &ProtocolLine) -> String {
    if !line.command {
        return format!("server: {}", line.line);
    }
    let (verb, arg) = line.line.split_once(' ').unwrap_or((&line.line, ""));
    let verb = verb.to_ascii_uppercase();
    if verb == "PASS" || arg.is_empty() {
        format!("client: {verb}")
    } else {
        format!("client: {verb} {arg}")
    }
}

/// Whether ftptrace reports this logged line: a command, or a reply's last
/// line (`NNN text`); vsftpd logs each line of a multi-line reply (`211-`,
/// then its lines), ftptrace the whole reply once, with its last line.
pub fn reported(line: &ProtocolLine) -> bool {
    let bytes = line.line.as_bytes();
    line.command
        || (bytes.len() >= 4 && bytes[..3].iter().all(u8::is_ascii_digit) && bytes[3] == b' ')
}

/// An `ftp` command or reply in the same form; `None` for other lines.
pub fn said(event: &Event) -> Option<String> {
    let Kind::Ftp {
        from,
        command,
        arg,
        reply,
        text,
        ..
    } = &event.kind
    else {
        return None;
    };
    match (from, command, arg, reply, text) {
        (Side::Client, Some(command), Some(arg), None, None) => {
            Some(format!("client: {command} {arg}"))
        }
        (Side::Client, Some(command), None, None, None) => Some(format!("client: {command}")),
        (Side::Server, None, None, Some(code), Some(text)) => {
            Some(format!("server: {code} {text}"))
        }
        _ => None,
    }
}

/// The ftp events of `events`, one list per socket, in order of first use.
pub fn ftp_by_socket<'a>(events: &[&'a Event]) -> Vec<Vec<&'a Event>> {
    let mut sockets: Vec<(Option<u64>, Vec<&Event>)> = Vec::new();
    for &event in events {
        if !matches!(event.kind, Kind::Ftp { .. }) {
            continue;
        }
        match sockets.iter_mut().find(|(s, _)| *s == event.socket) {
            Some((_, list)) => list.push(event),
            None => sockets.push((event.socket, vec![event])),
        }
    }
    assert!(
        sockets.iter().all(|(socket, _)| socket.is_some()),
        "ftp events without a socket"
    );
    sockets.into_iter().map(|(_, list)| list).collect()
}

/// Neither the tracer's output nor its stderr holds `password`, and
/// every PASS is without its argument. (An offending line is not shown:
/// it would print the password.)
#[track_caller]
pub fn assert_no_password<T>(run: &Observed<T>, password: &str) {
    for (n, line) in run.trace.lines.iter().enumerate() {
        assert!(
            !line.contains(password),
            "line {} of the tracer's output holds the password",
            n + 1
        );
    }
    assert!(
        !run.trace.stderr.contains(password),
        "the tracer's stderr holds the password"
    );
    let pass: Vec<&Event> = run
        .trace
        .events
        .iter()
        .filter(|e| matches!(&e.kind, Kind::Ftp { command: Some(c), .. } if c == "PASS"))
        .collect();
    assert!(!pass.is_empty(), "no PASS seen");
    for event in pass {
        assert!(
            matches!(event.kind, Kind::Ftp { arg: None, .. }),
            "PASS with an argument (not shown)"
        );
    }
}

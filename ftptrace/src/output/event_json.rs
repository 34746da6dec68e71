//! An `event` line written straight into bytes. Event lines are most of
//! what a busy run writes, and serde's generic path (a map for the
//! flattened details, a check per key) was a third of the tracer's time
//! under churn. The line's shape is still [`EventLine`]'s `Serialize`:
//! the tests hold this writer to it byte for byte.

use std::{io::Write as _, net::IpAddr};

use super::lines::{DataEndpoint, Details, EventLine, FtpDetails};
use crate::session::ConnId;

/// Appends `line` as one JSON object (no newline) to `out`.
pub fn write(out: &mut Vec<u8>, line: &EventLine) {
    out.extend_from_slice(b"{\"type\":");
    string(out, line.line_type);
    field(out, "schema", |out| number(out, line.schema));
    field(out, "ts", |out| string(out, line.ts));
    field(out, "host", |out| {
        out.extend_from_slice(b"{\"name\":");
        string(out, &line.host.name);
        out.push(b'}');
    });
    field(out, "run", |out| string(out, line.run));
    details(out, &line.details);
    field(out, "side", |out| string(out, line.side.as_str()));
    field(out, "local_addr", |out| address(out, line.local_addr));
    field(out, "local_port", |out| number(out, line.local_port));
    field(out, "remote_addr", |out| address(out, line.remote_addr));
    field(out, "remote_port", |out| number(out, line.remote_port));
    field(out, "netns", |out| optional(out, line.netns, number));
    field(out, "pid", |out| optional(out, line.pid, number));
    field(out, "comm", |out| optional(out, line.comm, string));
    field(out, "socket", |out| optional(out, line.socket, number));
    field(out, "cpu", |out| number(out, line.cpu));
    field(out, "session", |out| optional(out, line.session, string));
    field(out, "conn", |out| {
        optional(out, line.conn, |out, conn| {
            // `control`, `data:N`: nothing to escape, no String needed.
            match conn {
                ConnId::Control => out.extend_from_slice(b"\"control\""),
                ConnId::Data(n) => {
                    out.extend_from_slice(b"\"data:");
                    number(out, n);
                    out.push(b'"');
                }
            }
        })
    });
    field(out, "community_id", |out| {
        optional(out, line.community_id, string)
    });
    out.push(b'}');
}

/// `,"kind":"...",<the kind's fields>`.
fn details(out: &mut Vec<u8>, details: &Details) {
    out.extend_from_slice(b",\"kind\":");
    match details {
        Details::State {
            old_state,
            new_state,
        } => {
            string(out, "state");
            field(out, "old_state", |out| string(out, old_state));
            field(out, "new_state", |out| string(out, new_state));
        }
        Details::Retransmit {
            state,
            syn,
            errno,
            segs,
        } => {
            string(out, "retransmit");
            field(out, "state", |out| string(out, state));
            field(out, "syn", |out| boolean(out, *syn));
            field(out, "errno", |out| optional(out, errno.as_deref(), string));
            field(out, "segs", |out| optional(out, *segs, number));
        }
        Details::ResetSent { reason, state } => {
            string(out, "reset_sent");
            field(out, "reason", |out| optional(out, *reason, string));
            field(out, "state", |out| optional(out, *state, string));
        }
        Details::ResetReceived { state } => {
            string(out, "reset_received");
            field(out, "state", |out| string(out, state));
        }
        Details::SocketError { errno, code } => {
            string(out, "socket_error");
            field(out, "errno", |out| string(out, errno));
            field(out, "code", |out| number(out, *code));
        }
        Details::Destroy {
            total_retrans,
            dsack_dups,
        } => {
            string(out, "destroy");
            field(out, "total_retrans", |out| {
                optional(out, *total_retrans, number)
            });
            field(out, "dsack_dups", |out| optional(out, *dsack_dups, number));
        }
        Details::KeepaliveProbe { probes_out } => {
            string(out, "keepalive_probe");
            field(out, "probes_out", |out| number(out, *probes_out));
        }
        Details::ZeroWindowProbe { probes_out } => {
            string(out, "zero_window_probe");
            field(out, "probes_out", |out| number(out, *probes_out));
        }
        Details::Drop {
            reason,
            direction,
            tcp_flags,
            location,
        } => {
            string(out, "drop");
            field(out, "reason", |out| optional(out, *reason, string));
            field(out, "direction", |out| string(out, direction));
            field(out, "tcp_flags", |out| string(out, tcp_flags));
            field(out, "location", |out| optional(out, *location, string));
        }
        Details::TlsVerify {
            library,
            passed,
            code,
            reasons,
        } => {
            string(out, "tls_verify");
            field(out, "library", |out| string(out, library));
            field(out, "passed", |out| boolean(out, *passed));
            field(out, "code", |out| number(out, *code));
            field(out, "reasons", |out| {
                out.push(b'[');
                for (n, reason) in reasons.iter().enumerate() {
                    if n > 0 {
                        out.push(b',');
                    }
                    string(out, reason);
                }
                out.push(b']');
            });
        }
        Details::TlsError {
            library,
            code,
            alert_received,
            reason,
        } => {
            string(out, "tls_error");
            field(out, "library", |out| string(out, library));
            field(out, "code", |out| number(out, *code));
            field(out, "alert_received", |out| {
                optional(out, *alert_received, string)
            });
            field(out, "reason", |out| optional(out, *reason, string));
        }
        Details::TlsAlert {
            library,
            sent,
            level,
            code,
            alert,
        } => {
            string(out, "tls_alert");
            field(out, "library", |out| string(out, library));
            field(out, "sent", |out| boolean(out, *sent));
            field(out, "level", |out| optional(out, *level, string));
            field(out, "code", |out| number(out, *code));
            field(out, "alert", |out| optional(out, *alert, string));
        }
        Details::TlsHandshake {
            library,
            done,
            code,
            reason,
        } => {
            string(out, "tls_handshake");
            field(out, "library", |out| string(out, library));
            field(out, "done", |out| boolean(out, *done));
            field(out, "code", |out| number(out, *code));
            field(out, "reason", |out| optional(out, *reason, string));
        }
        Details::Ftp(ftp) => {
            string(out, "ftp");
            ftp_fields(out, ftp);
        }
    }
}

fn ftp_fields(out: &mut Vec<u8>, ftp: &FtpDetails) {
    field(out, "from", |out| string(out, ftp.from));
    field(out, "command", |out| optional(out, ftp.command, string));
    field(out, "arg", |out| optional(out, ftp.arg, string));
    field(out, "reply", |out| optional(out, ftp.reply, number));
    field(out, "text", |out| optional(out, ftp.text, string));
    field(out, "data_endpoint", |out| match &ftp.data_endpoint {
        Some(DataEndpoint { addr, port }) => {
            out.extend_from_slice(b"{\"addr\":");
            optional(out, addr.as_deref(), string);
            out.extend_from_slice(b",\"port\":");
            number(out, *port);
            out.push(b'}');
        }
        None => out.extend_from_slice(b"null"),
    });
    field(out, "encrypted", |out| boolean(out, ftp.encrypted));
}

/// `,"name":` and the value. Names are plain ASCII: nothing to escape.
fn field(out: &mut Vec<u8>, name: &str, value: impl FnOnce(&mut Vec<u8>)) {
    out.extend_from_slice(b",\"");
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b"\":");
    value(out);
}

fn optional<T>(out: &mut Vec<u8>, value: Option<T>, write: impl FnOnce(&mut Vec<u8>, T)) {
    match value {
        Some(value) => write(out, value),
        None => out.extend_from_slice(b"null"),
    }
}

fn boolean(out: &mut Vec<u8>, value: bool) {
    out.extend_from_slice(if value { b"true" } else { b"false" });
}

/// Through `itoa` (serde_json's own): `write!` costs a formatter a number.
fn number(out: &mut Vec<u8>, value: impl itoa::Integer) {
    out.extend_from_slice(itoa::Buffer::new().format(value).as_bytes());
}

/// Digits, dots, colons and hex: nothing to escape. IPv4, nearly every
/// address, digit by digit (`Display` pads and checks more than needed).
fn address(out: &mut Vec<u8>, addr: IpAddr) {
    out.push(b'"');
    match addr {
        IpAddr::V4(v4) => {
            for (i, octet) in v4.octets().into_iter().enumerate() {
                if i > 0 {
                    out.push(b'.');
                }
                if octet >= 100 {
                    out.push(b'0' + octet / 100);
                }
                if octet >= 10 {
                    out.push(b'0' + octet / 10 % 10);
                }
                out.push(b'0' + octet % 10);
            }
        }
        IpAddr::V6(_) => {
            let _ = write!(out, "{addr}");
        }
    }
    out.push(b'"');
}

/// A JSON string as serde_json writes one: `"` and `\` escaped, the C0
/// controls as `\b \t \n \f \r` or `\u00XX`, everything else as it is.
fn string(out: &mut Vec<u8>, text: &str) {
    out.push(b'"');
    let bytes = text.as_bytes();
    // Nearly every string has nothing to escape: one pass without a
    // branch a byte (the compiler vectorises it), then one copy.
    let any_escape = bytes.iter().fold(false, |any, &b| {
        any | (b < 0x20) | (b == b'"') | (b == b'\\')
    });
    if !any_escape {
        out.extend_from_slice(bytes);
        out.push(b'"');
        return;
    }
    let mut plain = 0;
    for (at, &byte) in bytes.iter().enumerate() {
        let escape: &[u8] = match byte {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            0x08 => b"\\b",
            0x0c => b"\\f",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            b'\t' => b"\\t",
            0x00..=0x1f => b"",
            _ => continue,
        };
        out.extend_from_slice(&bytes[plain..at]);
        if escape.is_empty() {
            const HEX: &[u8; 16] = b"0123456789abcdef";
            out.extend_from_slice(b"\\u00");
            out.push(HEX[usize::from(byte >> 4)]);
            out.push(HEX[usize::from(byte & 0xf)]);
        } else {
            out.extend_from_slice(escape);
        }
        plain = at + 1;
    }
    out.extend_from_slice(&bytes[plain..]);
    out.push(b'"');
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        ftp::Side,
        output::lines::{DataEndpoint, Details, FtpDetails, HostLine},
        session::ConnId,
    };

    fn line<'a>(details: Details<'a>, comm: Option<&'a str>, host: &'a HostLine) -> EventLine<'a> {
        EventLine {
            line_type: "event",
            schema: 2,
            ts: "2026-12-03T06:00:00.000000001Z",
            host,
            run: "0123456789abcdef0123456789abcdef",
            details,
            side: Side::Server,
            local_addr: "192.0.2.1".parse().unwrap(),
            local_port: 21,
            remote_addr: "2001:db8::2".parse().unwrap(),
            remote_port: 40000,
            netns: Some(4026531840),
            pid: None,
            comm,
            socket: Some(u64::MAX),
            cpu: 1,
            session: Some("6b10-1"),
            conn: Some(ConnId::Data(3)),
            community_id: Some("1:LQU9qZlK+B5F3KDmev6m5PMibrg="),
        }
    }

    /// Every kind and every kind of value, hostile text included: the
    /// same bytes as serde_json writes for [`EventLine`].
    #[test]
    fn writes_what_serde_writes() {
        let hostile = "a\"b\\c\u{1}\u{8}\u{c}\n\r\t\u{1f}\u{7f}é\u{202e}東";
        let kinds = vec![
            Details::State {
                old_state: "LISTEN",
                new_state: "SYN_RECV",
            },
            Details::Retransmit {
                state: "ESTABLISHED",
                syn: true,
                errno: Some("EHOSTUNREACH".into()),
                segs: Some(3),
            },
            Details::Retransmit {
                state: "SYN_SENT",
                syn: false,
                errno: None,
                segs: None,
            },
            Details::ResetSent {
                reason: Some("NO_SOCKET"),
                state: None,
            },
            Details::ResetReceived {
                state: "CLOSE_WAIT",
            },
            Details::SocketError {
                errno: "ECONNRESET".into(),
                code: -104,
            },
            Details::Destroy {
                total_retrans: None,
                dsack_dups: None,
            },
            Details::Destroy {
                total_retrans: Some(u32::MAX),
                dsack_dups: Some(0),
            },
            Details::KeepaliveProbe { probes_out: 255 },
            Details::ZeroWindowProbe { probes_out: 0 },
            Details::TlsError {
                library: "OpenSSL".into(),
                code: 1048,
                alert_received: Some("unknown_ca"),
                reason: None,
            },
            Details::TlsAlert {
                library: "GnuTLS".into(),
                sent: true,
                level: Some("fatal"),
                code: 48,
                alert: Some("unknown_ca"),
            },
            Details::TlsAlert {
                library: "GnuTLS".into(),
                sent: true,
                level: None,
                code: 255,
                alert: None,
            },
            Details::TlsHandshake {
                library: "GnuTLS".into(),
                done: false,
                code: -348,
                reason: Some("GNUTLS_E_CERTIFICATE_VERIFICATION_ERROR"),
            },
            Details::TlsHandshake {
                library: "OpenSSL".into(),
                done: true,
                code: 1,
                reason: None,
            },
            Details::Drop {
                reason: None,
                direction: "in",
                tcp_flags: "FIN|ACK".into(),
                location: Some(hostile),
            },
            Details::Ftp(FtpDetails {
                from: "client",
                command: Some("USER"),
                arg: Some(hostile),
                ..FtpDetails::default()
            }),
            Details::Ftp(FtpDetails {
                from: "server",
                reply: Some(227),
                text: Some(hostile),
                data_endpoint: Some(DataEndpoint {
                    addr: Some("192.0.2.1".into()),
                    port: 30000,
                }),
                encrypted: true,
                ..FtpDetails::default()
            }),
            Details::Ftp(FtpDetails {
                from: "server",
                data_endpoint: Some(DataEndpoint {
                    addr: None,
                    port: 1,
                }),
                ..FtpDetails::default()
            }),
        ];
        let hosts = [
            HostLine {
                name: hostile.into(),
            },
            HostLine {
                name: "ftp1".into(),
            },
        ];
        for details in kinds {
            for (comm, host) in [
                (None, &hosts[0]),
                (Some(hostile), &hosts[1]),
                (Some("curl"), &hosts[1]),
            ] {
                let mut event = line(details.clone(), comm, host);
                for _ in 0..2 {
                    let mut fast = Vec::new();
                    write(&mut fast, &event);
                    let reference = serde_json::to_vec(&event).unwrap();
                    assert_eq!(
                        String::from_utf8(fast).unwrap(),
                        String::from_utf8(reference).unwrap()
                    );
                    (event.netns, event.socket, event.session, event.conn) =
                        (None, None, None, None);
                    event.community_id = None;
                    event.conn = Some(ConnId::Control);
                    event.local_addr = "10.0.100.255".parse().unwrap();
                    event.remote_addr = "::ffff:0.9.99.100".parse().unwrap();
                }
            }
        }
    }
}

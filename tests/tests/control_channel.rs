//! The control channel read in the kernel: what ftptrace says each side
//! said must be, line for line, what vsftpd logged it received and sent
//! (`log_ftp_protocol`), seen from the server's socket and from the
//! client's, in their own namespaces; the announced data endpoints must be
//! the data connections that followed; and the password must appear in no
//! line the tracer prints.

use std::net::IpAddr;

use tests::{
    client::{Curl, ftp_url},
    conversation::{assert_no_password, ftp_by_socket, said, said_in_log},
    netns::{CLIENT_V4, CLIENT_V6, NsPair, SERVER_V4, SERVER_V6},
    observe::{Observed, observe},
    tracer::{DataEndpoint, Event, Kind, Side, Tracer},
    vsftpd::{Listen, PASSIVE_PORTS, Vsftpd, VsftpdConfig},
};

/// Sent as the anonymous password; must never be printed.
const PASSWORD: &str = "Fq3-zT8v-Lw2m";

/// How a session asked for its data connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Passive {
    Epsv,
    Pasv,
}

#[test]
fn control_channel_ipv4_epsv_and_pasv_match_the_servers_log_from_both_ends() {
    tests::root_test(
        "control_channel_ipv4_epsv_and_pasv_match_the_servers_log_from_both_ends",
        || {
            check_sessions(
                Listen::V4(SERVER_V4),
                SERVER_V4,
                CLIENT_V4,
                &[Passive::Epsv, Passive::Pasv],
            );
        },
    );
}

#[test]
fn control_channel_ipv6_matches_the_servers_log_from_both_ends() {
    tests::root_test(
        "control_channel_ipv6_matches_the_servers_log_from_both_ends",
        || {
            check_sessions(
                Listen::V6(SERVER_V6),
                SERVER_V6,
                CLIENT_V6,
                &[Passive::Epsv],
            );
        },
    );
}

/// One curl download per entry of `sessions`, one after the other, with
/// a password; then every check.
#[track_caller]
fn check_sessions(listen: Listen, server: IpAddr, client: IpAddr, sessions: &[Passive]) {
    let net = NsPair::new();
    let ftp = Vsftpd::start(
        &net.server,
        VsftpdConfig::new(listen)
            .with_file("file", 256 << 10)
            .with_password_and_protocol_log(),
    );
    let run = observe(&net, Tracer::start(), || {
        sessions
            .iter()
            .map(|passive| {
                let curl =
                    Curl::new(ftp_url(server, 21, "file")).credentials("anonymous", PASSWORD);
                match passive {
                    Passive::Epsv => curl,
                    Passive::Pasv => curl.disable_epsv(),
                }
                .run(&net.client)
            })
            .collect::<Vec<_>>()
    });
    for transfer in &run.outcome {
        transfer.assert_downloaded(&ftp.expected("file"));
    }
    assert_no_password(&run, PASSWORD);
    let ctx = run.context();

    // vsftpd's log: one session per greeting.
    let mut logged: Vec<Vec<String>> = Vec::new();
    for line in ftp.protocol_log() {
        assert_eq!(line.client, client.to_string(), "{line:?}");
        if !line.command && line.line.starts_with("220 ") {
            logged.push(Vec::new());
        }
        logged
            .last_mut()
            .unwrap_or_else(|| panic!("a logged line before the greeting: {line:?}"))
            .push(said_in_log(&line));
    }
    assert_eq!(logged.len(), sessions.len(), "sessions in vsftpd's log");
    assert_client_segments(&run, &ctx);

    for (end, events) in [
        ("server", run.server_events()),
        ("client", run.client_events()),
    ] {
        let by_socket = ftp_by_socket(&events);
        assert_eq!(
            by_socket.len(),
            sessions.len(),
            "{end}: control connections with ftp events{ctx}"
        );
        for ((passive, logged), ftp_events) in sessions.iter().zip(&logged).zip(&by_socket) {
            let said: Vec<String> = ftp_events.iter().filter_map(|e| said(e)).collect();
            assert_eq!(
                &said, logged,
                "{end}: the control channel as ftptrace read it vs vsftpd's log{ctx}"
            );
            assert_conversation(&said, *passive, end);
            assert_endpoint(&run, ftp_events, *passive, server, end, &ctx);
            for event in ftp_events {
                assert_eq!(
                    (event.side, event.local_port == 21, event.remote_port == 21),
                    if end == "server" {
                        (Side::Server, true, false)
                    } else {
                        (Side::Client, false, true)
                    },
                    "{end}: {}{ctx}",
                    event.line
                );
                let (server, client) = (server.to_string(), client.to_string());
                assert_eq!(
                    (&event.local_addr, &event.remote_addr),
                    if end == "server" {
                        (&server, &client)
                    } else {
                        (&client, &server)
                    },
                    "{end}: {}{ctx}",
                    event.line
                );
            }
            // The same socket number as the connection's state events.
            let (local_port, remote_port) = (ftp_events[0].local_port, ftp_events[0].remote_port);
            let states: Vec<&&Event> = events
                .iter()
                .filter(|e| {
                    matches!(e.kind, Kind::State { .. })
                        && e.local_port == local_port
                        && e.remote_port == remote_port
                })
                .collect();
            assert!(
                !states.is_empty() && states.iter().all(|e| e.socket == ftp_events[0].socket),
                "{end}: ftp events and state events of one connection name one socket{ctx}"
            );
        }
    }
}

/// The kernel's own count: every segment the client's stack sent with new
/// data or a FIN is in `TcpExt.TCPOrigDataSent`. In a download the client
/// sends data only on the control connection, one command per segment
/// (curl waits for each reply), and its FINs (into FIN_WAIT1 or LAST_ACK)
/// follow data already sent. So: commands seen on the client's sockets +
/// FINs = TCPOrigDataSent.
#[track_caller]
fn assert_client_segments<T>(run: &Observed<T>, ctx: &str) {
    let commands = run
        .client_where(|e| {
            matches!(
                e.kind,
                Kind::Ftp {
                    from: Side::Client,
                    command: Some(_),
                    ..
                }
            )
        })
        .len();
    let fins = run
        .client_where(|e| {
            e.is_transition("ESTABLISHED", "FIN_WAIT1") || e.is_transition("CLOSE_WAIT", "LAST_ACK")
        })
        .len();
    assert_eq!(
        i64::try_from(commands + fins).expect("fits"),
        run.client.get("TcpExt.TCPOrigDataSent"),
        "client: {commands} commands + {fins} FINs vs TcpExt.TCPOrigDataSent{ctx}"
    );
}

/// The lines a download must have, in this order, whatever else the
/// client sends (curl adds PWD, TYPE, SIZE).
#[track_caller]
fn assert_conversation(said: &[String], passive: Passive, end: &str) {
    let (ask, answer) = match passive {
        Passive::Epsv => ("client: EPSV", "server: 229 "),
        Passive::Pasv => ("client: PASV", "server: 227 "),
    };
    let wanted = [
        "server: 220 ",
        "client: USER anonymous",
        "server: 331 ",
        "client: PASS",
        "server: 230 ",
        ask,
        answer,
        "client: RETR file",
        "server: 150 ",
        "server: 226 ",
        "client: QUIT",
        "server: 221 ",
    ];
    let mut rest = said.iter();
    for want in wanted {
        assert!(
            rest.any(|line| line == want || (want.ends_with(' ') && line.starts_with(want))),
            "{end}: no {want:?} in order in {said:#?}"
        );
    }
}

/// The session announces exactly one data endpoint, right after its
/// 229/227, with the port of the data connection the client then opened
/// (and, for 227, the server's address).
#[track_caller]
fn assert_endpoint<T>(
    run: &Observed<T>,
    ftp_events: &[&Event],
    passive: Passive,
    server: IpAddr,
    end: &str,
    ctx: &str,
) {
    let endpoints: Vec<(usize, &DataEndpoint)> = ftp_events
        .iter()
        .enumerate()
        .filter_map(|(i, e)| match &e.kind {
            Kind::Ftp {
                from: Side::Server,
                data_endpoint: Some(endpoint),
                ..
            } => Some((i, endpoint)),
            _ => None,
        })
        .collect();
    let [(at, endpoint)] = endpoints[..] else {
        panic!("{end}: data endpoints {endpoints:?}, expected one{ctx}");
    };
    let code = match passive {
        Passive::Epsv => 229,
        Passive::Pasv => 227,
    };
    assert!(
        at > 0 && matches!(ftp_events[at - 1].kind, Kind::Ftp { reply: Some(c), .. } if c == code),
        "{end}: the endpoint follows its {code}{ctx}"
    );
    let addr = match passive {
        Passive::Epsv => None,
        Passive::Pasv => Some(server.to_string()),
    };
    assert_eq!(endpoint.addr, addr, "{end}{ctx}");
    assert!(PASSIVE_PORTS.contains(&endpoint.port), "{end}{ctx}");
    // The client connected to exactly that port, once, between the
    // announcement and the session's last line (vsftpd may pick the same
    // port again for a later session).
    let (announced, last) = (&ftp_events[at].ts, &ftp_events[ftp_events.len() - 1].ts);
    let connects: Vec<&Event> = run.client_where(|e| {
        e.is_transition("CLOSE", "SYN_SENT")
            && e.remote_port == endpoint.port
            && e.ts > *announced
            && e.ts < *last
    });
    assert_eq!(
        connects.len(),
        1,
        "{end}: data connects to port {} while the session announcing it was open{ctx}",
        endpoint.port
    );
}

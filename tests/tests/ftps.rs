//! FTPS read in the clear: the control channel's plaintext from the TLS
//! library's own read and write calls (uprobes on OpenSSL's libssl), so an
//! encrypted session gets the record a plain one gets. The truth is
//! vsftpd's own log of every command and reply (`log_ftp_protocol`), which
//! it writes from the same plaintext.

use std::path::Path;

use tests::{
    client::{Curl, Lftp, Transfer},
    conversation::{ftp_by_socket, reported, said, said_in_log},
    netns::{CLIENT_V4, NetNs, NsPair, SERVER_V4},
    observe::observe,
    sessions::{assert_cause, only_session},
    tracer::{Kind, NO_PASSIVE_RANGE_ARGS, Side, Tracer},
    vsftpd::{Listen, Vsftpd, VsftpdConfig},
};

/// The name in the test certificate (`vsftpd::make_self_signed_certificate`).
const SERVER_NAME: &str = "ftp.example.org";
/// Sent as the anonymous password; must never be printed.
const PASSWORD: &str = "Tq7-fR2x-Jm9k";

/// curl (OpenSSL) against vsftpd (OpenSSL) with `AUTH TLS` and protected
/// data, a password given.
#[test]
fn ftps_with_curl_reads_the_control_channel_in_the_clear() {
    tests::root_test(
        "ftps_with_curl_reads_the_control_channel_in_the_clear",
        || {
            check_ftps(true, |client, ca| {
                Curl::new(format!("ftp://{SERVER_NAME}/file"))
                    .tls(ca)
                    .resolve(SERVER_NAME, 21, SERVER_V4)
                    .credentials("anonymous", PASSWORD)
                    .run(client)
            });
        },
    );
}

/// lftp (GnuTLS) against vsftpd (OpenSSL): both libraries at once.
#[test]
fn ftps_with_lftp_reads_the_control_channel_in_the_clear() {
    tests::root_test(
        "ftps_with_lftp_reads_the_control_channel_in_the_clear",
        || {
            check_ftps(false, |client, ca| {
                Lftp::new(SERVER_V4, 21, "file").tls(ca).run(client)
            });
        },
    );
}

/// One FTPS download by `client` (given the namespace and the certificate
/// to trust), the tracer given no passive range: every command and reply
/// read from both ends as vsftpd logged them, the user, and the data
/// connection found and linked by the decrypted `227`/`229` alone (the
/// kernel marked its port). `with_password`: the client sent [`PASSWORD`].
#[track_caller]
fn check_ftps(with_password: bool, client: impl FnOnce(&NetNs, &Path) -> Transfer) {
    let net = NsPair::new();
    let ftp = Vsftpd::start(
        &net.server,
        VsftpdConfig::new(Listen::V4(SERVER_V4))
            .with_tls()
            .with_file("file", 100_000)
            .with_password_and_protocol_log(),
    );
    let run = observe(&net, Tracer::start_with(NO_PASSIVE_RANGE_ARGS), || {
        client(&net.client, &ftp.certificate())
    });
    let ctx = run.context();
    run.outcome.assert_downloaded(&ftp.expected("file"));
    if with_password {
        for (n, line) in run.trace.lines.iter().enumerate() {
            assert!(
                !line.contains(PASSWORD),
                "line {} holds the password",
                n + 1
            );
        }
    }

    // What vsftpd logged, from the greeting on.
    let logged: Vec<String> = ftp
        .protocol_log()
        .iter()
        .inspect(|line| assert_eq!(line.client, CLIENT_V4.to_string()))
        .filter(|line| reported(line))
        .map(said_in_log)
        .collect();
    assert!(
        logged.iter().any(|l| l.starts_with("client: AUTH "))
            && logged.iter().any(|l| l == "client: RETR file"),
        "vsftpd's log: {logged:?}"
    );
    for (end, events) in [
        ("server", run.server_events()),
        ("client", run.client_events()),
    ] {
        let by_socket = ftp_by_socket(&events);
        assert_eq!(by_socket.len(), 1, "{end}: control connections{ctx}");
        let read: Vec<String> = by_socket[0].iter().filter_map(|e| said(e)).collect();
        assert_eq!(
            read, logged,
            "{end}: the control channel as ftptrace read it vs vsftpd's log{ctx}"
        );
    }

    let session = only_session(&run.trace);
    assert!(session.encrypted, "{}", session.brief());
    assert_eq!(session.user.as_deref(), Some("anonymous"), "{ctx}");
    assert_eq!(session.seen_from, [Side::Client, Side::Server], "{ctx}");
    for verb in ["AUTH", "PBSZ", "PROT", "USER", "PASS", "RETR", "QUIT"] {
        assert!(
            session.commands.iter().any(|c| c == verb),
            "{verb} in {:?}{ctx}",
            session.commands
        );
    }
    assert_eq!(session.data.len(), 1, "{}{ctx}", session.brief());
    let data = &session.data[0];
    assert_eq!(
        (data.linked_by.as_deref(), data.established),
        (Some("announcement"), true),
        "{}{ctx}",
        session.brief()
    );
    assert_eq!(data.seen_from, [Side::Client, Side::Server], "{ctx}");
    assert_cause(session, "clean", None, "");
    // The plaintext came from the processes' own calls: their pids.
    let pids: Vec<u32> = run
        .trace
        .events
        .iter()
        .filter(|e| matches!(e.kind, Kind::Ftp { .. }) && e.side == Side::Client)
        .filter_map(|e| e.pid)
        .collect();
    assert!(
        pids.contains(&run.outcome.pid),
        "the client's pid on its ftp events{ctx}"
    );
}

//! The filters on a live run (issue 15): `--failures-only` writes the
//! failed session and its events, nothing of the clean one; `--client`
//! with a block nobody is in writes no session at all. The recording of
//! each run replays to the same lines (the run's filters are kept in it).

use tests::{
    client::{Curl, ftp_url},
    netns::{NsPair, SERVER_V4},
    observe::observe,
    tracer::{DEFAULT_ARGS, Kind, Side, Tracer},
    vsftpd::{Listen, Vsftpd, VsftpdConfig},
};

/// In the tracer's port set (`--ports 21,2121`), and nothing listens on it.
const CLOSED_PORT: u16 = 2121;

fn args(extra: &[&'static str]) -> Vec<&'static str> {
    let mut args = DEFAULT_ARGS.to_vec();
    args.extend(extra);
    args
}

/// A clean download and a refused connection under `--failures-only`: one
/// session line, `connection_refused`, and its events only, among them
/// the client's ECONNREFUSED (as many as its kernel's `Tcp.AttemptFails`).
/// (The server's reset for a port nobody listens on is written before its
/// session exists: left out here, it is in the session's timeline.)
#[test]
fn failures_only_writes_the_failed_session_and_its_events() {
    tests::root_test(
        "failures_only_writes_the_failed_session_and_its_events",
        || {
            let net = NsPair::new();
            let ftp = Vsftpd::start(&net.server, VsftpdConfig::new(Listen::V4(SERVER_V4)));
            let run = observe(
                &net,
                Tracer::start_with(&args(&["--failures-only"])),
                || {
                    Curl::new(ftp_url(SERVER_V4, 21, "file"))
                        .run(&net.client)
                        .assert_downloaded(&ftp.expected("file"));
                    Curl::new(ftp_url(SERVER_V4, CLOSED_PORT, "file")).run(&net.client)
                },
            );
            assert_eq!(run.outcome.exit_code, Some(7), "curl: {}", run.outcome);
            let ctx = run.context();
            let [session] = run.trace.sessions.as_slice() else {
                panic!("one session line{ctx}");
            };
            assert_eq!(
                session.cause.as_deref(),
                Some("connection_refused"),
                "{ctx}"
            );
            assert!(!run.trace.events.is_empty(), "{ctx}");
            for event in &run.trace.events {
                assert_eq!(
                    event.session.as_ref(),
                    Some(&session.id),
                    "{}{ctx}",
                    event.line
                );
                assert!(event.has_port(CLOSED_PORT), "{}{ctx}", event.line);
            }
            // The client's refused connect, as its kernel counts it.
            let refused = run
                .trace
                .events
                .iter()
                .filter(|e| {
                    e.side == Side::Client
                        && matches!(&e.kind, Kind::SocketError { errno, .. } if errno == "ECONNREFUSED")
                })
                .count() as i64;
            assert_eq!(refused, run.client.get("Tcp.AttemptFails"), "{ctx}");
        },
    );
}

/// `--client` with a block no client is in: the download happens, and the
/// run writes no event and no session.
#[test]
fn a_client_block_nobody_is_in_writes_nothing_of_them() {
    tests::root_test("a_client_block_nobody_is_in_writes_nothing_of_them", || {
        let net = NsPair::new();
        let ftp = Vsftpd::start(&net.server, VsftpdConfig::new(Listen::V4(SERVER_V4)));
        let run = observe(
            &net,
            Tracer::start_with(&args(&["--client", "198.51.100.0/24"])),
            || {
                Curl::new(ftp_url(SERVER_V4, 21, "file"))
                    .run(&net.client)
                    .assert_downloaded(&ftp.expected("file"));
            },
        );
        let ctx = run.context();
        assert!(run.server.get("Tcp.PassiveOpens") >= 2, "{ctx}");
        assert!(run.trace.events.is_empty(), "{ctx}");
        assert!(run.trace.sessions.is_empty(), "{ctx}");
        // The counts still see everything.
        let stats = run.trace.stats.last().expect("final stats");
        assert!(stats.sessions >= 1, "{stats:?}");
    });
}

//! A connection to a traced port where nothing listens: the server's reset
//! (with the kernel's reason) and the client's ECONNREFUSED.

use tests::{
    checks::{count, resets_sent},
    client::{Curl, ftp_url},
    netns::{NsPair, SERVER_V4},
    observe::observe,
    tracer::{Kind, Side, Tracer},
};

/// In the tracer's port set (`--ports 21,2121`), and nothing listens on it.
const CLOSED_PORT: u16 = 2121;

#[test]
fn refused_connection_shows_reset_with_reason_and_econnrefused() {
    tests::root_test(
        "refused_connection_shows_reset_with_reason_and_econnrefused",
        || {
            let net = NsPair::new();
            let run = observe(&net, Tracer::start(), || {
                Curl::new(ftp_url(SERVER_V4, CLOSED_PORT, "file")).run(&net.client)
            });
            let ctx = run.context();
            let curl = &run.outcome;
            assert_eq!(
                curl.exit_code,
                Some(7),
                "curl: could not connect: {curl}{ctx}"
            );

            let resets = run.server_where(|e| matches!(e.kind, Kind::ResetSent { .. }));
            assert_eq!(
                resets_sent(&run.server_events(), &run.trace.start),
                run.server.get("Tcp.OutRsts"),
                "server resets (reset_sent, or NO_SOCKET drops before 6.10) vs Tcp.OutRsts{ctx}"
            );
            assert!(
                run.server.get("Tcp.OutRsts") >= 1,
                "the server sent no reset{ctx}"
            );
            // A SYN nobody wanted: the kernel gives the reason NO_SOCKET (reset
            // reasons exist since 6.10; before, ftptrace must say null). There is
            // no socket, so no state.
            let reason = run
                .trace
                .start
                .kernel_at_least(6, 10)
                .then(|| "NO_SOCKET".to_owned());
            for event in &resets {
                assert_eq!(
                    (event.side, event.local_port),
                    (Side::Server, CLOSED_PORT),
                    "{}{ctx}",
                    event.line
                );
                assert_eq!(
                    event.kind,
                    Kind::ResetSent {
                        reason: reason.clone(),
                        state: None
                    },
                    "reset_sent reason and state: {}{ctx}",
                    event.line
                );
            }

            let refused = run.client_where(
            |e| matches!(&e.kind, Kind::SocketError { errno, code: 111 } if errno == "ECONNREFUSED"),
        );
            assert_eq!(
                count(&refused),
                run.client.get("Tcp.AttemptFails"),
                "client ECONNREFUSED events vs Tcp.AttemptFails{ctx}"
            );
            assert!(!refused.is_empty(), "no ECONNREFUSED{ctx}");
            for event in &refused {
                assert_eq!(
                    (
                        event.side,
                        event.remote_port,
                        event.pid,
                        event.comm.as_deref()
                    ),
                    (Side::Client, CLOSED_PORT, Some(curl.pid), Some("curl")),
                    "{}{ctx}",
                    event.line
                );
            }
            let received = run.client_where(|e| matches!(e.kind, Kind::ResetReceived { .. }));
            assert_eq!(
                count(&received),
                resets_sent(&run.server_events(), &run.trace.start),
                "every reset the server sent arrived at the client{ctx}"
            );
        },
    );
}

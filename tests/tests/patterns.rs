//! Patterns across sessions, from real runs: a client job that retries a
//! download again and again against a firewall that drops its data
//! connections makes one `pattern` line naming the client and the cause,
//! and the `stats` line's handshake health counts the retried SYNs.

use std::time::Duration;

use tests::{
    client::{Curl, ftp_url},
    netns::{CLIENT_V4, NsPair, SERVER_V4},
    nft::{self, Rule},
    observe::observe,
    tracer::{NO_PASSIVE_RANGE_ARGS, Tracer},
    vsftpd::{Listen, PASSIVE_PORTS, Vsftpd, VsftpdConfig},
};

/// Tries of the retrying job: one more than the default rule (3), so the
/// line must come once, at the third, and not again at the fourth.
const TRIES: usize = 4;

#[test]
fn a_client_failing_again_and_again_makes_one_pattern_line() {
    tests::root_test(
        "a_client_failing_again_and_again_makes_one_pattern_line",
        || {
            let net = NsPair::new();
            let _ftp = Vsftpd::start(
                &net.server,
                VsftpdConfig::new(Listen::V4(SERVER_V4)).with("accept_timeout", "3"),
            );
            nft::apply(&net.server, &[Rule::drop_syn_to(&PASSIVE_PORTS)]);
            let run = observe(&net, Tracer::start_with(NO_PASSIVE_RANGE_ARGS), || {
                (0..TRIES)
                    .map(|_| {
                        Curl::new(ftp_url(SERVER_V4, 21, "file"))
                            .connect_timeout(Duration::from_secs(2))
                            .run(&net.client)
                            .exit_code
                    })
                    .collect::<Vec<_>>()
            });
            let ctx = run.context();
            assert!(
                run.outcome.iter().all(|code| *code != Some(0)),
                "a download got through: {:?}{ctx}",
                run.outcome
            );
            let blocked: Vec<&str> = run
                .trace
                .sessions
                .iter()
                .filter(|s| s.cause.as_deref() == Some("data_connection_blocked"))
                .map(|s| s.id.as_str())
                .collect();
            assert_eq!(blocked.len(), TRIES, "every try blocked{ctx}");
            // The kernel's count: the firewall dropped SYNs of every try.
            let hits: u64 = nft::hits(&net.server).iter().sum();
            assert!(
                hits >= TRIES as u64,
                "{hits} SYNs dropped for {TRIES} tries{ctx}"
            );
            assert_eq!(run.trace.patterns.len(), 1, "{:?}{ctx}", run.trace.patterns);
            let pattern = &run.trace.patterns[0];
            assert_eq!(pattern.pattern, "repeated_failure");
            assert_eq!(pattern.client, CLIENT_V4.to_string());
            assert_eq!(pattern.cause, "data_connection_blocked");
            assert_eq!(pattern.sessions, 3);
            assert_eq!(pattern.window_s, 600);
            assert_eq!(pattern.servers, [SERVER_V4.to_string()]);
            assert_eq!(pattern.session_ids, blocked[..3]);
            assert!(
                pattern.evidence.starts_with(&format!(
                    "client {CLIENT_V4} ended 3 sessions with data_connection_blocked within "
                )),
                "{}",
                pattern.evidence
            );
            // The pattern line follows the third session's line.
            let third = run
                .trace
                .lines
                .iter()
                .position(|l| l.contains(&format!("\"id\":\"{}\"", blocked[2])))
                .expect("the third session's line");
            assert!(
                run.trace.lines[third + 1].starts_with("{\"type\":\"pattern\""),
                "{}",
                run.trace.lines[third + 1]
            );
            // Handshake health: every data connection needed SYN retransmits
            // (all dropped), no control connection did.
            let stats = run.trace.stats.last().expect("final stats");
            let server = stats
                .handshakes
                .iter()
                .find(|h| h.server == SERVER_V4.to_string())
                .unwrap_or_else(|| {
                    panic!("no handshakes for the server: {:?}{ctx}", stats.handshakes)
                });
            assert_eq!(
                (
                    server.control,
                    server.control_retried,
                    server.data,
                    server.data_retried
                ),
                (TRIES as u64, 0, TRIES as u64, TRIES as u64),
                "{server:?}{ctx}"
            );
        },
    );
}

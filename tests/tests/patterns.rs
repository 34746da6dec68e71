//! Patterns across sessions, from real runs: a client job that retries a
//! download again and again against a firewall that drops its data
//! connections makes one `pattern` line naming the client and the cause,
//! and the `stats` line's handshake health counts the retried SYNs.

use std::time::Duration;

use tests::{
    client::{Curl, ftp_url},
    netns::{CLIENT_V4, DEV, NsPair, SERVER_V4},
    nft::{self, Rule},
    observe::observe,
    resolver::Resolver,
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
            assert_eq!(pattern.client.addr, CLIENT_V4.to_string());
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

/// The name the client resolves, and where nothing listens: a dead member
/// of its round robin (a second address of the server's namespace).
const NAME: &str = "ftp.example.test";
const DEAD_V4: std::net::IpAddr = std::net::IpAddr::V4(std::net::Ipv4Addr::new(192, 0, 2, 3));

/// A client job that downloads from a name whose DNS answers take turns
/// between the server and a dead address (the client's own resolver asks a
/// real name server over UDP): every session is named, and each change of
/// address with a failure on either side makes a `dns_flip` line with both
/// addresses and both causes.
#[test]
fn a_name_that_flips_to_a_dead_server_makes_a_dns_flip_pattern() {
    tests::root_test(
        "a_name_that_flips_to_a_dead_server_makes_a_dns_flip_pattern",
        || {
            let net = NsPair::new();
            net.server
                .ip(&["addr", "add", &format!("{DEAD_V4}/24"), "dev", DEV]);
            let _ftp = Vsftpd::start(&net.server, VsftpdConfig::new(Listen::V4(SERVER_V4)));
            let turns = [SERVER_V4, DEAD_V4, SERVER_V4];
            let resolver = Resolver::start(&net.client, NAME, &turns);
            let run = observe(&net, Tracer::start_with(NO_PASSIVE_RANGE_ARGS), || {
                (0..turns.len())
                    .map(|_| {
                        Curl::new(format!("ftp://{NAME}/file"))
                            .connect_timeout(Duration::from_secs(2))
                            .run(&net.client)
                            .exit_code
                    })
                    .collect::<Vec<_>>()
            });
            let ctx = run.context();
            // The truth: what the name server answered, what curl got, and
            // the dead address's resets (the server namespace's kernel).
            assert_eq!(
                resolver.answered(),
                turns.map(|t| t.to_string()),
                "the name server's answers{ctx}"
            );
            assert_eq!(
                run.outcome,
                [Some(0), Some(7), Some(0)],
                "curl's exit codes{ctx}"
            );
            assert!(
                run.server.get("Tcp.OutRsts") >= 1,
                "no reset from {DEAD_V4}{ctx}"
            );
            let sessions = &run.trace.sessions;
            assert_eq!(sessions.len(), 3, "{ctx}");
            let went: Vec<(String, Option<String>, Option<String>)> = sessions
                .iter()
                .map(|s| {
                    (
                        s.server.addr.clone(),
                        s.server_name.clone(),
                        s.cause.clone(),
                    )
                })
                .collect();
            let named = Some(NAME.to_owned());
            // The live server's downloads completed: clean, or, where the
            // kernel retransmitted (a loaded TCG guest), a recovered loss.
            let completed = |cause: &Option<String>| {
                matches!(cause.as_deref(), Some("clean" | "packet_loss_recovered"))
            };
            assert!(
                completed(&went[0].2) && completed(&went[2].2),
                "{went:?}{ctx}"
            );
            let ends: Vec<(String, Option<String>)> = went
                .iter()
                .map(|(addr, name, _)| (addr.clone(), name.clone()))
                .collect();
            assert_eq!(
                ends,
                [
                    (SERVER_V4.to_string(), named.clone()),
                    (DEAD_V4.to_string(), named.clone()),
                    (SERVER_V4.to_string(), named.clone()),
                ],
                "{ctx}"
            );
            assert_eq!(went[1].2.as_deref(), Some("connection_refused"), "{ctx}");
            let flips: Vec<_> = run
                .trace
                .patterns
                .iter()
                .filter(|p| p.pattern == "dns_flip")
                .collect();
            assert_eq!(flips.len(), 2, "{:?}{ctx}", run.trace.patterns);
            for (flip, pair) in flips.iter().zip([[0, 1], [1, 2]]) {
                assert_eq!(flip.client.addr, CLIENT_V4.to_string());
                assert_eq!(flip.name, named);
                assert_eq!(flip.cause, "connection_refused");
                assert_eq!(flip.servers, pair.map(|i| went[i].0.clone()));
                assert_eq!(
                    flip.causes,
                    Some(pair.map(|i| went[i].2.clone().unwrap_or_default()).to_vec())
                );
                assert_eq!(flip.session_ids, pair.map(|i| sessions[i].id.clone()));
                assert!(
                    flip.evidence.starts_with(&format!(
                        "client {CLIENT_V4}'s consecutive sessions for {NAME} went to different addresses: "
                    )),
                    "{}",
                    flip.evidence
                );
            }
        },
    );
}

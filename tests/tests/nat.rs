//! The server behind a NAT router (a third namespace: DNAT with conntrack,
//! nftables counters) announces its inside address in its 227. Each client
//! meets it its own way: curl substitutes the control connection's address
//! (since 7.74) and reaches the router itself; Python's ftplib told to trust
//! the 227 sends its SYNs to an address nobody routes; with the passive
//! range forwarded too, curl's substitution hides the problem. The client's
//! half of each session names the mismatch.

use tests::{
    client::{Curl, ftp_url},
    netns::{Forward, NAT_CLIENT_V4, NAT_INSIDE_V4, NAT_PUBLIC_V4, NAT_TABLE, NsPair},
    nft,
    observe::{Observed, observe},
    scenario::Scenario,
    sessions::assert_cause,
    tracer::{NO_PASSIVE_RANGE_ARGS, Session, Side, Tracer},
    vsftpd::{Listen, Vsftpd, VsftpdConfig},
};

fn tracer() -> Tracer {
    Tracer::start_with(NO_PASSIVE_RANGE_ARGS)
}

/// The one session seen from `side` alone: with a NAT in between, each
/// end's half is a session of its own.
#[track_caller]
fn half<T>(run: &Observed<T>, side: Side) -> &Session {
    let halves: Vec<&Session> = run
        .trace
        .sessions
        .iter()
        .filter(|s| s.seen_from == [side])
        .collect();
    assert_eq!(
        halves.len(),
        1,
        "one {side:?}-side session{}",
        run.context()
    );
    halves[0]
}

/// The session as the server's end, behind the NAT, saw it: its own
/// inside address announced to a client at a routable one.
#[track_caller]
fn servers_half<T>(run: &Observed<T>) -> &Session {
    let half = half(run, Side::Server);
    assert_eq!(half.server.addr, NAT_INSIDE_V4.to_string());
    half
}

/// What the server's half says of its announcement of `port`.
fn inferred(port: u16) -> String {
    format!("the server announced its own address {NAT_INSIDE_V4} port {port} in its 227")
}

/// The session as the client's end saw it (the server's end, behind the
/// NAT, sees other addresses and is a session of its own).
#[track_caller]
fn clients_half<T>(run: &Observed<T>) -> &Session {
    let half = half(run, Side::Client);
    assert_eq!(half.server.addr, NAT_PUBLIC_V4.to_string());
    assert_eq!(half.client.addr, NAT_CLIENT_V4.to_string());
    half
}

/// The router's rule counters, in ruleset order: the DNAT rule, then the
/// drop of what was sent to the inside without one.
#[track_caller]
fn router_hits(net: &NsPair) -> Vec<u64> {
    let router = net.router.as_ref().expect("a NAT router");
    let listing = router
        .run_ok("nft", &["list", "table", "ip", NAT_TABLE])
        .stdout;
    nft::parse_hits(&listing)
}

#[track_caller]
fn evidence_says(session: &Session, n: usize, what: &[&str], ctx: &str) {
    let said = session.evidence.get(n).map_or("", String::as_str);
    for part in what {
        assert!(
            said.contains(part),
            "evidence {n} lacks {part:?}: {:?}{ctx}",
            session.evidence
        );
    }
}

fn announced(port_of: &Session) -> String {
    format!(
        "the server announced {NAT_INSIDE_V4} port {} in its 227",
        port_of.data[0].server.port
    )
}

#[test]
fn nat_address_mismatch_curl_substitutes_and_meets_the_router() {
    tests::root_test(
        "nat_address_mismatch_curl_substitutes_and_meets_the_router",
        || {
            let net = NsPair::behind_nat(Forward::ControlOnly);
            let _ftp = Vsftpd::start(&net.server, VsftpdConfig::new(Listen::V4(NAT_INSIDE_V4)));
            let router = net.router.as_ref().expect("router");
            let before = router.counters();
            let run = observe(&net, tracer(), || {
                Curl::new(ftp_url(NAT_PUBLIC_V4, 21, "file"))
                    .disable_epsv()
                    .run(&net.client)
            });
            let ctx = run.context();
            let resets = before.delta(&router.counters()).get("Tcp.OutRsts");
            assert_ne!(run.outcome.exit_code, Some(0), "curl got through{ctx}");
            assert!(resets >= 1, "the router refused nothing{ctx}");
            let session = clients_half(&run);
            assert_cause(session, "nat_address_mismatch", Some("data:1"), &ctx);
            assert_eq!(session.data[0].server.addr, NAT_PUBLIC_V4.to_string());
            assert_eq!(session.data[0].close, "refused", "{ctx}");
            evidence_says(
                session,
                0,
                &[
                    &announced(session),
                    &format!("the client reached the server at {NAT_PUBLIC_V4}"),
                    "is a private address (RFC 1918): the server's inside address behind a NAT",
                ],
                &ctx,
            );
            evidence_says(
                session,
                1,
                &[
                    &format!(
                        "the client connected to the control connection's address {NAT_PUBLIC_V4} instead"
                    ),
                    "and it was refused",
                ],
                &ctx,
            );
            // The server's own half, behind the NAT, infers it.
            let port = session.data[0].server.port;
            let server = servers_half(&run);
            assert_cause(server, "nat_address_mismatch", None, &ctx);
            evidence_says(
                server,
                0,
                &[
                    &inferred(port),
                    &format!(
                        "to a client at {NAT_CLIENT_V4}, which is not, so the client came through a NAT"
                    ),
                ],
                &ctx,
            );
            evidence_says(
                server,
                1,
                &["the client made no data connection to it"],
                &ctx,
            );
        },
    );
}

#[test]
fn nat_address_mismatch_ftplib_trusts_the_227_and_nobody_answers() {
    tests::root_test(
        "nat_address_mismatch_ftplib_trusts_the_227_and_nobody_answers",
        || {
            let net = NsPair::behind_nat(Forward::ControlOnly);
            let _ftp = Vsftpd::start(&net.server, VsftpdConfig::new(Listen::V4(NAT_INSIDE_V4)));
            let before = router_hits(&net);
            let run = observe(&net, tracer(), || {
                Scenario::start(
                    &net.client,
                    "ftplib_trusting_pasv",
                    NAT_PUBLIC_V4,
                    Some("file"),
                )
                .finish()
            });
            let ctx = run.context();
            let after = router_hits(&net);
            assert_eq!(run.outcome, "ETIMEDOUT", "ftplib's verdict{ctx}");
            let session = clients_half(&run);
            assert_cause(session, "nat_address_mismatch", Some("data:1"), &ctx);
            assert_eq!(session.data[0].server.addr, NAT_INSIDE_V4.to_string());
            let syn_retransmits = session.data[0].syn_retransmits;
            // Every SYN to the inside address died in the router's drop rule.
            assert_eq!(
                after[1] - before[1],
                u64::from(syn_retransmits) + 1,
                "SYNs dropped by the router vs the client's SYN retransmits + 1{ctx}"
            );
            evidence_says(session, 0, &[&announced(session)], &ctx);
            evidence_says(
                session,
                1,
                &[
                    &format!("the client connected to the announced {NAT_INSIDE_V4}"),
                    &format!("nobody answered: {syn_retransmits} SYN retransmit(s)"),
                ],
                &ctx,
            );
        },
    );
}

#[test]
fn a_nat_mismatch_hidden_by_substitution_is_said_on_a_clean_session() {
    tests::root_test(
        "a_nat_mismatch_hidden_by_substitution_is_said_on_a_clean_session",
        || {
            let net = NsPair::behind_nat(Forward::ControlAndPassive);
            let _ftp = Vsftpd::start(&net.server, VsftpdConfig::new(Listen::V4(NAT_INSIDE_V4)));
            let before = router_hits(&net);
            let run = observe(&net, tracer(), || {
                Curl::new(ftp_url(NAT_PUBLIC_V4, 21, "file"))
                    .disable_epsv()
                    .run(&net.client)
            });
            let ctx = run.context();
            let after = router_hits(&net);
            assert_eq!(run.outcome.exit_code, Some(0), "curl: {}{ctx}", run.outcome);
            assert_eq!(
                after[0] - before[0],
                2,
                "two connections forwarded (control, data){ctx}"
            );
            let session = clients_half(&run);
            assert_cause(session, "clean", None, &ctx);
            let note = session
                .evidence
                .iter()
                .position(|e| e.starts_with("also: the server announced"))
                .unwrap_or_else(|| panic!("no note of the mismatch: {:?}{ctx}", session.evidence));
            evidence_says(session, note, &[&announced(session)], &ctx);
            evidence_says(
                session,
                note + 1,
                &[
                    "instead (it substituted it for the announced one)",
                    "and the connection was established",
                ],
                &ctx,
            );
            let port = session.data[0].server.port;
            let server = servers_half(&run);
            assert_cause(server, "clean", None, &ctx);
            let note = server
                .evidence
                .iter()
                .position(|e| e.starts_with("also: "))
                .unwrap_or_else(|| {
                    panic!("no note on the server's half: {:?}{ctx}", server.evidence)
                });
            evidence_says(server, note, &[&inferred(port)], &ctx);
            evidence_says(
                server,
                note + 1,
                &[
                    "a data connection from the client arrived at it through the NAT (data:1) and the connection was established",
                ],
                &ctx,
            );
        },
    );
}

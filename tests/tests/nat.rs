//! The server behind a NAT router (a third namespace: DNAT with conntrack,
//! nftables counters) announces its inside address in its 227. Each client
//! meets it its own way: curl substitutes the control connection's address
//! (since 7.74) and reaches the router itself; Python's ftplib told to trust
//! the 227 sends its SYNs to an address nobody routes; with the passive
//! range forwarded too, curl's substitution hides the problem. Client and
//! server are both on this host: the router's connection tracking joins
//! the two halves into one session, which names the mismatch once.

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

/// One connection in the router's connection tracking
/// (`/proc/net/nf_conntrack` read inside its namespace): the tuple the
/// client sent, and the one the server answers on.
#[derive(Debug, PartialEq, Eq)]
struct Tracked {
    orig: ((String, u16), (String, u16)),
    reply: ((String, u16), (String, u16)),
}

/// The router's TCP entries, as its kernel lists them.
fn conntrack(net: &NsPair) -> Vec<Tracked> {
    let router = net.router.as_ref().expect("a NAT router");
    let listing = router.run_ok("cat", &["/proc/net/nf_conntrack"]).stdout;
    listing
        .lines()
        .filter(|l| l.contains(" tcp "))
        .filter_map(|line| {
            let field = |key: &str, n: usize| {
                line.split_whitespace()
                    .filter_map(|w| w.strip_prefix(key))
                    .nth(n)
                    .map(str::to_owned)
            };
            let end = |addr: &str, port: &str, n: usize| -> Option<(String, u16)> {
                Some((field(addr, n)?, field(port, n)?.parse().ok()?))
            };
            Some(Tracked {
                orig: (end("src=", "sport=", 0)?, end("dst=", "dport=", 0)?),
                reply: (end("src=", "sport=", 1)?, end("dst=", "dport=", 1)?),
            })
        })
        .collect()
}

fn pair(e: &tests::tracer::Endpoint) -> (String, u16) {
    (e.addr.clone(), e.port)
}

/// The one session of the run, both ends in it: the client's half and the
/// server's, behind the NAT, joined through the router's connection
/// tracking. Each of its connections that reached the server is checked
/// against the router's own entry: the client's tuple is the entry's
/// original direction, the server's view its reply direction.
#[track_caller]
fn joined<'a, T>(run: &'a Observed<T>, net: &NsPair) -> &'a Session {
    let ctx = run.context();
    assert_eq!(
        run.trace.sessions.len(),
        1,
        "one session, not two halves{ctx}"
    );
    let session = &run.trace.sessions[0];
    assert_eq!(session.seen_from, [Side::Client, Side::Server], "{ctx}");
    assert_eq!(session.client.addr, NAT_CLIENT_V4.to_string());
    assert_eq!(session.server.addr, NAT_PUBLIC_V4.to_string());
    let tracked = conntrack(net);
    for conn in std::iter::once(&session.control).chain(&session.data) {
        let Some(inside) = &conn.behind_nat else {
            // Not joined: it never reached the server (the router refused
            // it, or dropped it), whose namespace saw nothing of it.
            let client_port = conn.client.port;
            assert!(
                run.server_events()
                    .iter()
                    .all(|e| e.remote_port != client_port),
                "{} reached the server but was not joined{ctx}",
                conn.conn
            );
            continue;
        };
        assert_eq!(conn.seen_from, [Side::Client, Side::Server], "{ctx}");
        let entry = tracked
            .iter()
            .find(|t| t.orig == (pair(&conn.client), pair(&conn.server)))
            .unwrap_or_else(|| panic!("no router entry for {}: {tracked:?}{ctx}", conn.conn));
        assert_eq!(
            entry.reply,
            (pair(&inside.server), pair(&inside.client)),
            "the server's view of {} vs the router's reply tuple{ctx}",
            conn.conn
        );
        assert_eq!(inside.server.addr, NAT_INSIDE_V4.to_string());
    }
    assert!(
        session.control.behind_nat.is_some(),
        "the control connection joined{ctx}"
    );
    session
}

/// The NAT's own word in the evidence, right after the announcement.
const NAT_SAID: &str = "a NAT on this host translates the control connection";

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
            let session = joined(&run, &net);
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
                &[NAT_SAID, "is the server's own address behind it"],
                &ctx,
            );
            evidence_says(
                session,
                2,
                &[
                    &format!(
                        "the client connected to the control connection's address {NAT_PUBLIC_V4} instead"
                    ),
                    "and it was refused",
                ],
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
            let session = joined(&run, &net);
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
            evidence_says(session, 1, &[NAT_SAID], &ctx);
            evidence_says(
                session,
                2,
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
            let session = joined(&run, &net);
            assert_cause(session, "clean", None, &ctx);
            let data = &session.data[0];
            assert!(
                data.behind_nat.is_some(),
                "the data connection joined too{ctx}"
            );
            let note = session
                .evidence
                .iter()
                .position(|e| e.starts_with("also: the server announced"))
                .unwrap_or_else(|| panic!("no note of the mismatch: {:?}{ctx}", session.evidence));
            evidence_says(session, note, &[&announced(session)], &ctx);
            evidence_says(session, note + 1, &[NAT_SAID], &ctx);
            evidence_says(
                session,
                note + 2,
                &[
                    "instead (it substituted it for the announced one)",
                    "and the connection was established",
                ],
                &ctx,
            );
        },
    );
}

//! A middlebox reset on the data connection (nftables `reject with tcp
//! reset` in the client's namespace): the server's kernel takes it for the
//! client's, and the tracer must show it received, on the data connection.

use tests::{
    checks::{count, resets_sent},
    client::Lftp,
    netns::{NsPair, SERVER_V4},
    nft,
    observe::observe,
    sessions::only_session,
    tracer::{Kind, Side, Tracer},
    vsftpd::{Listen, PASSIVE_PORTS, Vsftpd, VsftpdConfig},
};

#[test]
fn forged_reset_on_data_connection_matches_estab_resets() {
    tests::root_test(
        "forged_reset_on_data_connection_matches_estab_resets",
        || {
            let net = NsPair::new();
            let _ftp = Vsftpd::start(&net.server, VsftpdConfig::new(Listen::V4(SERVER_V4)));
            nft::forge_resets_on_data(&net.client);
            // lftp, not curl: on vsftpd's "426 Failure writing network stream" it
            // ends the session with QUIT. curl would wait for data until its own
            // timeout and then close the control connection with that reply unread,
            // which is a reset (TCP_ABORT_ON_CLOSE) of the server's control
            // connection: one more Tcp.EstabResets that is not the data connection's.
            let run = observe(&net, Tracer::start(), || {
                Lftp::new(SERVER_V4, 21, "file").run(&net.client)
            });
            let ctx = run.context();
            let lftp = &run.outcome;
            assert!(
                lftp.exit_code != Some(0) && lftp.body.is_empty(),
                "the download should fail: {lftp}{ctx}"
            );
            let forged = nft::hits(&net.client);
            assert!(forged[0] > 0, "nftables forged no reset: {forged:?}{ctx}");

            let on_data = run.server_where(|e| {
                matches!(e.kind, Kind::ResetReceived { .. })
                    && PASSIVE_PORTS.contains(&e.local_port)
            });
            assert_eq!(
                count(&on_data),
                run.server.get("Tcp.EstabResets"),
                "server reset_received events on the data connection vs Tcp.EstabResets{ctx}"
            );
            assert!(
                run.server.get("Tcp.EstabResets") >= 1,
                "no established connection was reset{ctx}"
            );
            // Tcp.EstabResets counts every ESTABLISHED/CLOSE_WAIT -> CLOSE
            // transition, whatever the cause: here the forged resets are all of them.
            let aborted = run.server_where(|e| {
                e.is_transition("ESTABLISHED", "CLOSE") || e.is_transition("CLOSE_WAIT", "CLOSE")
            });
            assert_eq!(
                count(&aborted),
                run.server.get("Tcp.EstabResets"),
                "server ESTABLISHED/CLOSE_WAIT->CLOSE events vs Tcp.EstabResets{ctx}"
            );
            // The forged reset is nobody's reset_sent: the server's own resets
            // (if any, e.g. to the client's late FIN) are the kernel's.
            assert_eq!(
                resets_sent(&run.server_events(), &run.trace.start),
                run.server.get("Tcp.OutRsts"),
                "server resets (reset_sent, or NO_SOCKET drops before 6.10) vs Tcp.OutRsts{ctx}"
            );
            // The socket was established when the reset arrived.
            for event in &on_data {
                assert_eq!(
                    event.kind,
                    Kind::ResetReceived {
                        state: "ESTABLISHED".into()
                    },
                    "reset_received must carry the socket's state: {}{ctx}",
                    event.line
                );
            }
            // As a session: both ends are here and the server's peer never sent
            // the reset it got, so it is a middlebox's.
            let session = only_session(&run.trace);
            assert_eq!(
                session.cause.as_deref(),
                Some("middlebox_reset"),
                "{}{}",
                session.brief(),
                session.timeline_text()
            );
            assert!(
                session.evidence[0].starts_with("the server end received a reset"),
                "{:?}",
                session.evidence
            );
            let hit = session.cause_conn.as_deref().unwrap_or_default();
            assert!(hit.starts_with("data:"), "{}", session.brief());
            let conn = session.data.iter().find(|c| c.conn == hit).unwrap();
            assert_eq!(
                (conn.close.as_str(), conn.closed_by.as_str()),
                ("reset", "middlebox"),
                "{}",
                session.brief()
            );
            // The resets the server got came with the stack's TTL, told from
            // the client's packets' by the server's own kernel: one entry per
            // connection that received them.
            let ttls: Vec<&str> = session
                .timeline
                .iter()
                .filter(|e| e.side == Side::Server && e.what.starts_with("reset arrived with TTL"))
                .map(|e| e.what.as_str())
                .collect();
            let reset_conns = session
                .timeline
                .iter()
                .filter(|e| e.side == Side::Server && e.what.starts_with("reset received"))
                .map(|e| e.conn.as_str())
                .collect::<std::collections::BTreeSet<_>>();
            assert_eq!(
                ttls.len(),
                reset_conns.len(),
                "a TTL entry for each connection whose server end received a reset{}",
                session.timeline_text()
            );
            assert!(
                ttls.iter()
                    .all(|w| *w == "reset arrived with TTL 64 (the connection's other packets: 63)"),
                "{ttls:?}"
            );
        },
    );
}

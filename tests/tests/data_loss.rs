//! Random loss on the data path: every retransmitted segment is an event,
//! exactly as many as the server's kernel counts.

use std::time::Duration;

use tests::{
    checks::{count, segments},
    client::{Curl, ftp_url},
    netns::{NsPair, SERVER_V4},
    nft::{self, Rule},
    observe::observe,
    tracer::{Kind, Tracer},
    vsftpd::{Listen, PASSIVE_PORTS, Vsftpd, VsftpdConfig},
};

#[test]
fn data_loss_retransmits_match_retrans_segs() {
    tests::root_test("data_loss_retransmits_match_retrans_segs", || {
        let net = NsPair::new();
        let ftp = Vsftpd::start(
            &net.server,
            VsftpdConfig::new(Listen::V4(SERVER_V4)).with_file("big", 4 << 20),
        );
        // 2% of the server's data segments (not SYN-ACKs) vanish on arrival:
        // some 50 retransmits, enough to prove the count.
        nft::apply(&net.client, &[Rule::random_loss_from(&PASSIVE_PORTS, 2)]);
        let run = observe(&net, Tracer::start(), || {
            Curl::new(ftp_url(SERVER_V4, 21, "big"))
                .max_time(Duration::from_secs(60))
                .run(&net.client)
        });
        let ctx = run.context();
        run.outcome.assert_downloaded(&ftp.expected("big"));
        let dropped = nft::hits(&net.client);
        assert!(dropped[0] > 0, "nftables dropped nothing: {dropped:?}{ctx}");

        let sent = run.server_where(|e| {
            matches!(
                &e.kind,
                Kind::Retransmit {
                    syn: false,
                    error: None,
                    ..
                }
            )
        });
        assert_eq!(
            segments(&sent),
            run.server.get("Tcp.RetransSegs"),
            "segments in server retransmit events (syn false, error null) vs Tcp.RetransSegs{ctx}"
        );
        assert!(
            run.server.get("Tcp.RetransSegs") > 0,
            "the loss caused no retransmits, the test proves nothing{ctx}"
        );
        for event in &sent {
            assert!(
                PASSIVE_PORTS.contains(&event.local_port),
                "a retransmit outside the data connection: {}{ctx}",
                event.line
            );
        }

        // A retransmit the kernel tried but did not send: EBUSY when the original
        // is still queued in the host (TcpExt.TCPSpuriousRtxHostQueues), any
        // other error counted in TcpExt.TCPRetransFail.
        let busy = run.server_where(
            |e| matches!(&e.kind, Kind::Retransmit { error: Some(err), .. } if err == "EBUSY"),
        );
        assert_eq!(
            count(&busy),
            run.server.get("TcpExt.TCPSpuriousRtxHostQueues"),
            "server retransmit events with error EBUSY vs TcpExt.TCPSpuriousRtxHostQueues{ctx}"
        );
        let failed = run.server_where(
            |e| matches!(&e.kind, Kind::Retransmit { error: Some(err), .. } if err != "EBUSY"),
        );
        assert_eq!(
            segments(&failed),
            run.server.get("TcpExt.TCPRetransFail"),
            "server retransmit events with another error vs TcpExt.TCPRetransFail{ctx}"
        );
        let syn = run.server_where(|e| matches!(&e.kind, Kind::Retransmit { syn: true, .. }));
        assert_eq!(
            count(&syn),
            run.server.get("TcpExt.TCPSynRetrans"),
            "server SYN-ACK retransmit events vs TcpExt.TCPSynRetrans{ctx}"
        );
        // As a session: the download completed despite the losses.
        let session = tests::sessions::only_session(&run.trace);
        tests::sessions::assert_cause(session, "packet_loss_recovered", Some("data:1"), "");
        let resent: i64 = tests::sessions::conns(session)
            .map(|c| i64::from(c.retransmits + c.syn_retransmits))
            .sum();
        assert_eq!(
            resent,
            run.server.get("Tcp.RetransSegs") + run.client.get("Tcp.RetransSegs"),
            "the session's retransmits vs Tcp.RetransSegs of both ends: {}",
            session.brief()
        );
    });
}

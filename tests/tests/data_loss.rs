//! Random loss on the data path: every retransmitted segment is an event,
//! exactly as many as the server's kernel counts.

use std::time::Duration;

use tests::{
    checks::{count, segments},
    client::{Curl, ftp_url, spawn_download, wait_for_download},
    deadline::{Deadline, POLL_INTERVAL, wait_for},
    netns::{DEV, NsPair, SERVER_V4},
    nft::{self, Rule},
    observe::observe,
    process::{kill_and_reap, wait_until},
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
                    errno: None,
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
            |e| matches!(&e.kind, Kind::Retransmit { errno: Some(err), .. } if err == "EBUSY"),
        );
        assert_eq!(
            count(&busy),
            run.server.get("TcpExt.TCPSpuriousRtxHostQueues"),
            "server retransmit events with error EBUSY vs TcpExt.TCPSpuriousRtxHostQueues{ctx}"
        );
        let failed = run.server_where(
            |e| matches!(&e.kind, Kind::Retransmit { errno: Some(err), .. } if err != "EBUSY"),
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

/// How many times the spurious-retransmit test holds the client's ACKs
/// before it gives up waiting for a retransmit.
const HOLDS: usize = 4;

/// The client's ACKs are held back mid-download (a tbf at 8 kbit/s on the
/// client's device queues them; its limit drops none) until the server's
/// retransmission timer fires for segments that had arrived; then the queue
/// drains and the client's D-SACKs tell the server its retransmits were
/// duplicates. The kernel's own counts (Tcp.RetransSegs,
/// TcpExt.TCPDSACKRecvSegs) are what the freed socket reports, and the
/// session is clean, saying the retransmits were spurious, not loss.
#[test]
fn spurious_retransmits_behind_held_acks_are_not_loss() {
    tests::root_test("spurious_retransmits_behind_held_acks_are_not_loss", || {
        let net = NsPair::new();
        // A small receive window: curl's rate limit paces the server, which
        // is still sending when the ACKs are held (not done into buffers).
        net.client.sysctl("net.ipv4.tcp_rmem", "4096 16384 65536");
        let _ftp = Vsftpd::start(
            &net.server,
            VsftpdConfig::new(Listen::V4(SERVER_V4)).with_file("big", 1 << 20),
        );
        // A burst of one full-size frame: at 8 kbit/s every ACK then waits.
        let tbf = |verb: &str, rate: &str, burst: &str| {
            net.client.run_ok(
                "tc",
                &[
                    "qdisc", verb, "dev", DEV, "root", "tbf", "rate", rate, "burst", burst,
                    "limit", "4mb",
                ],
            );
        };
        let run = observe(&net, Tracer::start(), || {
            let mut curl = spawn_download(
                &net.client,
                &ftp_url(SERVER_V4, 21, "big"),
                "200K",
                Duration::from_secs(60),
            );
            wait_for_download(&net.client);
            let retransmitted = || net.server.counters().get("Tcp.RetransSegs");
            let arrived = || net.client.counters().get("Tcp.InSegs");
            let before = retransmitted();
            // ACKs held while the server has data in flight fire its
            // retransmission timer; held while curl's rate limit keeps the
            // window shut, they only delay a window update and nothing is
            // retransmitted. So hold, and if nothing came, let the data flow
            // again and hold once more, a few times.
            tbf("add", "10gbit", "64kb");
            let mut held = false;
            for _ in 0..HOLDS {
                tbf("change", "8kbit", "1600");
                let deadline = Deadline::after(Duration::from_secs(8));
                while retransmitted() == before && !deadline.expired() {
                    std::thread::sleep(POLL_INTERVAL);
                }
                if retransmitted() > before {
                    held = true;
                    break;
                }
                tbf("change", "10gbit", "64kb");
                let flowing = arrived() + 10;
                wait_for("data flowing after a hold", Duration::from_secs(10), || {
                    let now = arrived();
                    if now >= flowing {
                        Ok(())
                    } else {
                        Err(format!("{now} segments in"))
                    }
                });
            }
            assert!(held, "no retransmit behind the ACKs held {HOLDS} times");
            // Let them all go (changing the rate keeps the queue).
            tbf("change", "10gbit", "64kb");
            let status = wait_until(&mut curl, Deadline::after(Duration::from_secs(60)));
            if status.is_none() {
                kill_and_reap(&mut curl);
            }
            net.client
                .run_ok("tc", &["qdisc", "del", "dev", DEV, "root"]);
            status.and_then(|s| s.code())
        });
        let ctx = run.context();
        assert_eq!(run.outcome, Some(0), "curl's exit{ctx}");
        let retransmitted = run.server.get("Tcp.RetransSegs");
        let duplicates = run.server.get("TcpExt.TCPDSACKRecvSegs");
        assert!(retransmitted > 0, "nothing retransmitted{ctx}");
        assert!(duplicates > 0, "no D-SACK came back{ctx}");
        let freed = run.server_where(|e| {
            e.conn.as_deref() == Some("data:1") && matches!(e.kind, Kind::Destroy { .. })
        });
        assert_eq!(freed.len(), 1, "{ctx}");
        assert_eq!(
            freed[0].kind,
            Kind::Destroy {
                total_retrans: Some(u32::try_from(retransmitted).unwrap()),
                dsack_dups: Some(u32::try_from(duplicates).unwrap()),
            },
            "the freed socket's counts against the kernel's{ctx}"
        );
        let session = &run.trace.sessions[0];
        assert_eq!(run.trace.sessions.len(), 1, "{ctx}");
        assert_eq!(
            (session.cause.as_deref(), duplicates >= retransmitted),
            (Some("clean"), true),
            "every retransmit a duplicate, and the session clean: {}{ctx}",
            session.brief()
        );
        assert!(
            session.evidence.iter().any(|e| e.starts_with(&format!(
                "also: server retransmitted {retransmitted} segment(s) on data:1"
            )) && e.contains("spurious")),
            "{}",
            session.brief()
        );
    });
}

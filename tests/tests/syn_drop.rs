//! SYNs to the passive range dropped: the client's SYN retransmits and its
//! connect timeout show, as many as its kernel counts.

use std::time::Duration;

use tests::{
    checks::{count, dropped_by_firewall},
    client::{Curl, ftp_url},
    netns::{NsPair, SERVER_V4},
    nft::{self, Rule},
    observe::observe,
    tracer::{Kind, Tracer},
    vsftpd::{Listen, PASSIVE_PORTS, Vsftpd, VsftpdConfig},
};

#[test]
fn dropped_data_syns_show_syn_retransmits_and_etimedout() {
    tests::root_test(
        "dropped_data_syns_show_syn_retransmits_and_etimedout",
        || {
            let net = NsPair::new();
            let _ftp = Vsftpd::start(&net.server, VsftpdConfig::new(Listen::V4(SERVER_V4)));
            nft::apply(&net.server, &[Rule::drop_syn_to(&PASSIVE_PORTS)]);
            // The client gives up a connect after ~7 s (tcp_syn_retries=2): curl
            // must wait longer, so that the kernel's timeout is what ends it. PASV
            // only: one data connect, not an EPSV one and then a PASV one.
            let run = observe(&net, Tracer::start(), || {
                Curl::new(ftp_url(SERVER_V4, 21, "file"))
                    .disable_epsv()
                    .connect_timeout(Duration::from_secs(20))
                    .max_time(Duration::from_secs(40))
                    .run(&net.client)
            });
            let ctx = run.context();
            let curl = &run.outcome;
            assert!(
                curl.exit_code != Some(0) && curl.body.is_empty(),
                "the download should fail: {curl}{ctx}"
            );
            let dropped = nft::hits(&net.server);
            assert!(dropped[0] > 0, "nftables dropped no SYN: {dropped:?}{ctx}");

            // The server's kernel reports each SYN its firewall dropped, with the
            // reason, before any socket exists: one per drop the nft counter saw.
            let drops = run.server_where(|e| matches!(e.kind, Kind::Drop { .. }));
            assert_eq!(
                i64::try_from(dropped[0]).expect("fits"),
                count(&drops),
                "server drop events vs the nft rule's counter{ctx}"
            );
            for drop in &drops {
                // The firewall's own code frees what it drops: on kernels without
                // reasons, the hint that names the cause.
                let location = match &drop.kind {
                    Kind::Drop { location, .. } => location.clone(),
                    _ => None,
                };
                assert!(
                    dropped_by_firewall(location.as_deref()),
                    "{}{ctx}",
                    drop.line
                );
                let reason = if run.trace.start.kernel_at_least(5, 17) {
                    Some("NETFILTER_DROP".to_owned())
                } else {
                    None
                };
                assert_eq!(
                    drop.kind,
                    Kind::Drop {
                        reason,
                        direction: "in".into(),
                        tcp_flags: "SYN".into(),
                        location,
                    },
                    "{}{ctx}",
                    drop.line
                );
                assert!(
                    PASSIVE_PORTS.contains(&drop.local_port),
                    "the drops hit the passive range: {}{ctx}",
                    drop.line
                );
            }

            let syn_retransmits = run.client_where(|e| {
                matches!(
                    &e.kind,
                    Kind::Retransmit {
                        syn: true,
                        errno: None,
                        ..
                    }
                ) && PASSIVE_PORTS.contains(&e.remote_port)
            });
            assert_eq!(
                count(&syn_retransmits),
                run.client.get("TcpExt.TCPSynRetrans"),
                "client SYN retransmit events to the passive range vs TcpExt.TCPSynRetrans{ctx}"
            );
            assert!(
                run.client.get("TcpExt.TCPSynRetrans") > 0,
                "no SYN retransmits, the test proves nothing{ctx}"
            );
            let all_retransmits = run.client_where(|e| matches!(&e.kind, Kind::Retransmit { .. }));
            assert_eq!(
                count(&all_retransmits),
                run.client.get("Tcp.RetransSegs"),
                "client retransmit events vs Tcp.RetransSegs{ctx}"
            );

            // Each connect that timed out: SYN_SENT -> CLOSE (Tcp.AttemptFails)
            // and one ETIMEDOUT error to the passive range.
            let timeouts = run.client_where(|e| {
                matches!(&e.kind, Kind::SocketError { errno, .. } if errno == "ETIMEDOUT")
                    && PASSIVE_PORTS.contains(&e.remote_port)
            });
            assert!(
                !timeouts.is_empty(),
                "no ETIMEDOUT on the data connection{ctx}"
            );
            assert_eq!(
                count(&timeouts),
                run.client.get("Tcp.AttemptFails"),
                "client ETIMEDOUT events vs Tcp.AttemptFails{ctx}"
            );
            let failed_connects = run.client_where(|e| e.is_transition("SYN_SENT", "CLOSE"));
            assert_eq!(
                count(&failed_connects),
                run.client.get("Tcp.AttemptFails"),
                "client SYN_SENT->CLOSE events vs Tcp.AttemptFails{ctx}"
            );
            for event in timeouts {
                assert!(
                    matches!(&event.kind, Kind::SocketError { code: 110, .. }),
                    "ETIMEDOUT is errno 110: {}{ctx}",
                    event.line
                );
                assert_eq!(
                    (event.pid, event.comm.as_deref()),
                    (Some(curl.pid), Some("curl")),
                    "the timeout not attributed to curl (pid {}): {}{ctx}",
                    curl.pid,
                    event.line
                );
            }
        },
    );
}

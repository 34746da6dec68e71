//! Assertions more than one test makes.

use std::{net::IpAddr, ops::RangeInclusive};

use crate::{
    client::{Curl, Transfer, ftp_url},
    netns::NsPair,
    observe::{Observed, observe},
    tracer::Tracer,
    tracer::{Event, Kind, Side, Start},
    vsftpd::{Listen, PASSIVE_PORTS, Vsftpd, VsftpdConfig},
};

/// Every SYN the firewall in `ns` dropped (its rules' own counters, at
/// least one) is a drop event on `conn` of the trace.
#[track_caller]
pub fn assert_syn_drops_counted<T>(run: &Observed<T>, conn: &str, ns: &crate::netns::NetNs) {
    let ctx = run.context();
    let dropped = run
        .trace
        .events
        .iter()
        .filter(|e| {
            e.conn.as_deref() == Some(conn)
                && matches!(&e.kind, Kind::Drop { tcp_flags, .. } if tcp_flags == "SYN")
        })
        .count();
    let hits: u64 = crate::nft::hits(ns).iter().sum();
    assert!(hits >= 1, "no SYN dropped{ctx}");
    assert_eq!(
        u64::try_from(dropped).expect("fits"),
        hits,
        "SYN drops on {conn} vs the firewall's count{ctx}"
    );
}

/// The number of events, as the kernel counters' type.
pub fn count(events: &[&Event]) -> i64 {
    i64::try_from(events.len()).expect("event count fits i64")
}

/// The resets a namespace's kernel sent, as ftptrace shows them: its
/// `reset_sent` events, plus, on kernels before 6.10 (whose tcp_send_reset
/// tracepoint fires only for resets sent by a socket), every arriving
/// non-RST segment dropped for `NO_SOCKET`, which the kernel answers with a
/// reset. Compare with `Tcp.OutRsts`.
pub fn resets_sent(events: &[&Event], start: &Start) -> i64 {
    let socketless = !start.kernel_at_least(6, 10);
    // A segment that reaches a TIME-WAIT socket (a retransmitted FIN) is
    // answered with an ACK and freed in tcp_v4_rcv too: without a reason
    // (before 5.17) its drop looks like NO_SOCKET's. Those connections'
    // full sockets went FIN_WAIT2 or CLOSING -> CLOSE.
    let tuple = |e: &Event| {
        (
            e.local_addr.clone(),
            e.local_port,
            e.remote_addr.clone(),
            e.remote_port,
        )
    };
    let time_wait: std::collections::HashSet<_> = events
        .iter()
        .filter(|e| e.is_transition("FIN_WAIT2", "CLOSE") || e.is_transition("CLOSING", "CLOSE"))
        .map(|e| tuple(e))
        .collect();
    let answered = |e: &&&Event| match &e.kind {
        Kind::ResetSent { .. } => true,
        Kind::Drop {
            reason,
            direction,
            tcp_flags,
            location,
        } => {
            // Before 5.17 there is no reason; TCP's receive path freeing
            // a segment nobody took is the same fact.
            let no_socket = match reason {
                Some(reason) => reason == "NO_SOCKET",
                None => {
                    matches!(location.as_deref(), Some("tcp_v4_rcv" | "tcp_v6_rcv"))
                        && !time_wait.contains(&tuple(e))
                }
            };
            socketless
                && no_socket
                && direction == "in"
                && !tcp_flags.split('|').any(|f| f == "RST")
        }
        _ => false,
    };
    i64::try_from(events.iter().filter(answered).count()).expect("fits")
}

/// Whether a drop's `location` is netfilter's code (`nf_hook_slow`, or
/// `nft_do_chain` where nftables frees the packet itself).
pub fn dropped_by_firewall(location: Option<&str>) -> bool {
    location.is_some_and(|l| l.starts_with("nf_") || l.starts_with("nft_"))
}

/// Segments the retransmit events carry: what the kernel adds to
/// `Tcp.RetransSegs` and `TcpExt.TCPRetransFail` per retransmitted skb.
pub fn segments(events: &[&Event]) -> i64 {
    events
        .iter()
        .map(|e| match &e.kind {
            Kind::Retransmit {
                segs: Some(segs), ..
            } => i64::from(*segs),
            _ => panic!("not a retransmit with a segment count: {}", e.line),
        })
        .sum()
}

/// Where a clean FTP download is expected to show.
pub struct Endpoints<'a> {
    /// The server address as ftptrace must print it (IPv4-mapped as IPv4).
    pub server_addr: &'a str,
    pub client_addr: &'a str,
    pub control_port: u16,
    pub passive: RangeInclusive<u16>,
}

impl Endpoints<'_> {
    fn is_ftp_port(&self, port: u16) -> bool {
        port == self.control_port || self.passive.contains(&port)
    }
}

/// A vsftpd listening on `listen`, curl downloading from `connect_to`
/// under the default tracer, checked with [`assert_clean_download`] against
/// the addresses ftptrace must print.
#[track_caller]
pub fn clean_download(listen: Listen, connect_to: IpAddr, server_addr: &str, client_addr: &str) {
    let net = NsPair::new();
    let ftp = Vsftpd::start(&net.server, VsftpdConfig::new(listen));
    let run = observe(&net, Tracer::start(), || {
        Curl::new(ftp_url(connect_to, 21, "file")).run(&net.client)
    });
    assert_clean_download(
        &run,
        &ftp.expected("file"),
        &Endpoints {
            server_addr,
            client_addr,
            control_port: 21,
            passive: PASSIVE_PORTS,
        },
    );
}

/// A clean passive download (control + one data connection), checked event
/// by event against the kernel's counters in both namespaces:
///
/// - curl got exactly the served bytes;
/// - server: `SYN_RECV`→`ESTABLISHED` events = `Tcp.PassiveOpens` = 2;
/// - client: `CLOSE`→`SYN_SENT` events = `Tcp.ActiveOpens` = 2, each with
///   curl's pid and comm;
/// - retransmit events = `Tcp.RetransSegs` in each namespace, and none but
///   tail loss probes (`TcpExt.TCPLossProbes`, which a busy host can cause:
///   usually 0); no resets
///   (`Tcp.OutRsts`, `Tcp.EstabResets` 0) and no socket errors;
/// - every event has the right side, ports and addresses.
#[track_caller]
pub fn assert_clean_download(run: &Observed<Transfer>, expected: &[u8], at: &Endpoints<'_>) {
    let ctx = run.context();
    let curl = &run.outcome;
    curl.assert_downloaded(expected);

    let accepted = run.server_where(|e| e.is_transition("SYN_RECV", "ESTABLISHED"));
    assert_eq!(
        count(&accepted),
        run.server.get("Tcp.PassiveOpens"),
        "server SYN_RECV->ESTABLISHED events vs Tcp.PassiveOpens{ctx}"
    );
    assert_eq!(
        run.server.get("Tcp.PassiveOpens"),
        2,
        "control and data connection accepted{ctx}"
    );

    let connects = run.client_where(|e| e.is_transition("CLOSE", "SYN_SENT"));
    assert_eq!(
        count(&connects),
        run.client.get("Tcp.ActiveOpens"),
        "client CLOSE->SYN_SENT events vs Tcp.ActiveOpens{ctx}"
    );
    assert_eq!(
        run.client.get("Tcp.ActiveOpens"),
        2,
        "control and data connect{ctx}"
    );
    for event in &connects {
        assert_eq!(
            (event.pid, event.comm.as_deref()),
            (Some(curl.pid), Some("curl")),
            "connect() not attributed to curl (pid {}): {}{ctx}",
            curl.pid,
            event.line
        );
    }

    for (name, events, delta) in [
        ("server", run.server_events(), &run.server),
        ("client", run.client_events(), &run.client),
    ] {
        let retransmits: Vec<&Event> = events
            .iter()
            .copied()
            .filter(|e| matches!(e.kind, Kind::Retransmit { .. }))
            .collect();
        assert_eq!(
            segments(&retransmits),
            delta.get("Tcp.RetransSegs"),
            "{name} segments in retransmit events vs Tcp.RetransSegs{ctx}"
        );
        // Nothing is lost on the link. A tail loss probe (a retransmit when
        // the peer is slow to answer, ~10-200 ms) is all a busy host may add.
        assert!(
            delta.get("Tcp.RetransSegs") <= delta.get("TcpExt.TCPLossProbes"),
            "{name}: retransmits other than tail loss probes on a clean link{ctx}"
        );
        assert_eq!(delta.get("Tcp.OutRsts"), 0, "{name}: no resets sent{ctx}");
        assert_eq!(delta.get("Tcp.EstabResets"), 0, "{name}: no resets{ctx}");
        let trouble: Vec<&&Event> = events
            .iter()
            .filter(|e| {
                matches!(
                    e.kind,
                    Kind::ResetSent { .. } | Kind::ResetReceived { .. } | Kind::SocketError { .. }
                )
            })
            .collect();
        assert!(
            trouble.is_empty(),
            "{name}: resets or errors on a clean download{ctx}"
        );
    }

    for event in run.server_events() {
        assert_eq!(
            event.side,
            Side::Server,
            "server-namespace event: {}{ctx}",
            event.line
        );
        assert!(
            at.is_ftp_port(event.local_port),
            "server event on local port {}: {}{ctx}",
            event.local_port,
            event.line
        );
        // A listening socket has no peer (remote port 0) and may be bound
        // to the wildcard address.
        if event.remote_port != 0 {
            assert_eq!(
                (event.local_addr.as_str(), event.remote_addr.as_str()),
                (at.server_addr, at.client_addr),
                "server event addresses: {}{ctx}",
                event.line
            );
        }
    }
    assert!(!run.server_events().is_empty(), "no server events{ctx}");
    for event in run.client_events() {
        assert_eq!(
            event.side,
            Side::Client,
            "client-namespace event: {}{ctx}",
            event.line
        );
        assert!(
            at.is_ftp_port(event.remote_port),
            "client event with remote port {}: {}{ctx}",
            event.remote_port,
            event.line
        );
        assert_eq!(
            (event.local_addr.as_str(), event.remote_addr.as_str()),
            (at.client_addr, at.server_addr),
            "client event addresses: {}{ctx}",
            event.line
        );
    }
}

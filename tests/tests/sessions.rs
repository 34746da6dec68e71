//! FTP sessions from real vsftpd runs: one scenario per disconnect cause,
//! each checked on the `session` line (cause, the connection it hit, how
//! every connection closed, data connections linked), with the tracer given
//! no passive range: data connections are found through the announcements
//! alone (227/229 put their port into the kernel's map).

use std::time::Duration;

use tests::{
    checks::assert_syn_drops_counted,
    client::{Curl, ftp_url, spawn_download, wait_for_download},
    deadline::wait_for,
    netns::{CLIENT_V4, NsPair, SERVER_V4},
    nft::{self, Rule},
    observe::{Observed, observe},
    scenario::Scenario,
    sessions::{assert_cause, assert_ended_normally, assert_verdict, briefs, conns, only_session},
    tracer::{DEFAULT_ARGS, Kind, NO_PASSIVE_RANGE_ARGS, Side, Tracer},
    vsftpd::{Listen, Vsftpd, VsftpdConfig},
};

fn tracer() -> Tracer {
    Tracer::start_with(NO_PASSIVE_RANGE_ARGS)
}

/// The events of session `id`'s connection `conn`.
fn events_of<'a, T>(run: &'a Observed<T>, id: &str, conn: &str) -> Vec<&'a tests::tracer::Event> {
    run.trace
        .events
        .iter()
        .filter(|e| e.session.as_deref() == Some(id) && e.conn.as_deref() == Some(conn))
        .collect()
}

#[test]
fn clean_download_links_its_data_connection_by_announcement_alone() {
    tests::root_test(
        "clean_download_links_its_data_connection_by_announcement_alone",
        || {
            let net = NsPair::new();
            let _ftp = Vsftpd::start(
                &net.server,
                VsftpdConfig::new(Listen::V4(SERVER_V4)).with_password_and_protocol_log(),
            );
            let run = observe(&net, tracer(), || {
                Curl::new(ftp_url(SERVER_V4, 21, "file"))
                    .credentials("anonymous", "s3cret-never-printed")
                    .run(&net.client)
            });
            let ctx = run.context();
            assert_eq!(run.outcome.exit_code, Some(0), "curl: {}{ctx}", run.outcome);
            let session = only_session(&run.trace);
            assert_ended_normally(session);
            assert_eq!(session.seen_from, [Side::Client, Side::Server], "{ctx}");
            assert_eq!(session.user_name(), Some("anonymous"));
            assert_eq!(
                (
                    session.client.addr.as_str(),
                    session.server.addr.as_str(),
                    session.server.port
                ),
                (
                    CLIENT_V4.to_string().as_str(),
                    SERVER_V4.to_string().as_str(),
                    21
                )
            );
            for verb in ["USER", "PASS", "EPSV", "RETR", "QUIT"] {
                assert!(
                    session.commands.iter().any(|c| c == verb),
                    "{verb} in {:?}",
                    session.commands
                );
            }
            let data = &session.data[0];
            assert_eq!(data.linked_by.as_deref(), Some("announcement"));
            assert_eq!(data.seen_from, [Side::Client, Side::Server]);
            assert!(data.established);
            // The data connection's own events, traced though its port was never
            // configured: both ends' handshake.
            let data_events = events_of(&run, &session.id, "data:1");
            for side in [Side::Client, Side::Server] {
                assert!(
                data_events.iter().any(|e| e.side == side
                    && matches!(&e.kind, Kind::State { new_state, .. } if new_state == "ESTABLISHED")),
                "the {side:?} end's ESTABLISHED on data:1{ctx}"
            );
            }
            assert_eq!(
                u64::try_from(
                    data_events
                        .iter()
                        .filter(|e| e.side == Side::Server
                            && e.is_transition("SYN_RECV", "ESTABLISHED"))
                        .count()
                )
                .unwrap(),
                1,
                "one passive open on the data port{ctx}"
            );
            assert!(
                !run.trace.lines.iter().any(|l| l.contains("s3cret")),
                "the password reached the output{ctx}"
            );
        },
    );
}

#[test]
fn server_idle_timeout() {
    tests::root_test("server_idle_timeout", || {
        let net = NsPair::new();
        let _ftp = Vsftpd::start(
            &net.server,
            VsftpdConfig::new(Listen::V4(SERVER_V4)).with("idle_session_timeout", "1"),
        );
        let run = observe(&net, tracer(), || {
            Scenario::start(&net.client, "idle", SERVER_V4, None).finish()
        });
        assert!(run.outcome.starts_with("421"), "client saw {}", run.outcome);
        // After the 421 both ends close: either FIN may be first.
        let session = only_session(&run.trace);
        assert_verdict(
            session,
            "server_idle_timeout",
            Some("control"),
            &[("fin", session.control.closed_by.as_str())],
        );
    });
}

#[test]
fn client_abort_mid_transfer() {
    tests::root_test("client_abort_mid_transfer", || {
        let net = NsPair::new();
        let _ftp = Vsftpd::start(&net.server, VsftpdConfig::new(Listen::V4(SERVER_V4)));
        let run = observe(&net, tracer(), || {
            Scenario::start(&net.client, "abort", SERVER_V4, Some("file")).finish()
        });
        assert_eq!(run.outcome, "ok");
        let session = only_session(&run.trace);
        // The client hung up: a FIN on each connection, or a reset where data
        // was still unread when it closed (the 426 may have arrived).
        let closes: Vec<&str> = conns(session).map(|c| c.close.as_str()).collect();
        assert!(
            closes.iter().all(|c| ["fin", "reset"].contains(c)),
            "{}",
            session.brief()
        );
        assert_verdict(
            session,
            "client_abort",
            Some("control"),
            &[(closes[0], "client"), (closes[1], "client")],
        );
        assert_eq!(session.data[0].linked_by.as_deref(), Some("announcement"));
    });
}

#[test]
fn data_connection_refused_by_a_firewall_reset() {
    tests::root_test("data_connection_refused_by_a_firewall_reset", || {
        let net = NsPair::new();
        let _ftp = Vsftpd::start(&net.server, VsftpdConfig::new(Listen::V4(SERVER_V4)));
        nft::apply(&net.server, &[Rule::reset_syn_to(&(30000..=30009))]);
        let run = observe(&net, tracer(), || {
            Curl::new(ftp_url(SERVER_V4, 21, "file")).run(&net.client)
        });
        let ctx = run.context();
        assert_ne!(run.outcome.exit_code, Some(0), "curl: {}{ctx}", run.outcome);
        let session = only_session(&run.trace);
        assert_cause(session, "data_connection_refused", Some("data:1"), &ctx);
        // curl tries EPSV's endpoint, then PASV's: each data SYN rejected (the
        // nft counter) is one refused data connection, and the server's own
        // TCP stack sent no reset: its firewall did.
        let hits: u64 = nft::hits(&net.server).iter().sum();
        assert_eq!(
            u64::try_from(session.data.len()).unwrap(),
            hits,
            "{}{ctx}",
            session.brief()
        );
        for data in &session.data {
            assert_eq!(
                (
                    data.close.as_str(),
                    data.closed_by.as_str(),
                    data.linked_by.as_deref()
                ),
                ("refused", "middlebox", Some("announcement")),
                "{}",
                session.brief()
            );
        }
    });
}

#[test]
fn data_connection_blocked_by_a_firewall() {
    tests::root_test("data_connection_blocked_by_a_firewall", || {
        let net = NsPair::new();
        let _ftp = Vsftpd::start(
            &net.server,
            VsftpdConfig::new(Listen::V4(SERVER_V4)).with("accept_timeout", "3"),
        );
        nft::apply(&net.server, &[Rule::drop_syn_to(&(30000..=30009))]);
        let run = observe(&net, tracer(), || {
            Curl::new(ftp_url(SERVER_V4, 21, "file"))
                .connect_timeout(Duration::from_secs(2))
                .run(&net.client)
        });
        let ctx = run.context();
        assert_ne!(run.outcome.exit_code, Some(0), "curl: {}{ctx}", run.outcome);
        let session = only_session(&run.trace);
        assert_cause(session, "data_connection_blocked", Some("data:1"), "");
        let data = &session.data[0];
        assert!(!data.established, "{}", session.brief());
        // Every dropped SYN is on data:1, and the nft counter is the truth.
        assert_syn_drops_counted(&run, "data:1", &net.server);
    });
}

/// The scripted client `script` waits at `go` while `rules` (a blackhole)
/// go up in its namespace, then goes on until the kernel ends its control
/// connection; then the path comes back and the server's end is killed.
/// Returns how the client's connection ended.
fn through_a_dead_path(net: &NsPair, script: &str, rules: &[Rule]) -> Observed<String> {
    let _ftp = Vsftpd::start(&net.server, VsftpdConfig::new(Listen::V4(SERVER_V4)));
    observe(net, tracer(), || {
        let mut client = Scenario::start(&net.client, script, SERVER_V4, None);
        client.wait_ready();
        nft::apply(&net.client, rules);
        client.go();
        let verdict = client.finish();
        net.client
            .run_ok("nft", &["delete", "table", "inet", nft::TABLE]);
        net.server.kill_all();
        verdict
    })
}

#[test]
fn retransmission_timeout_on_a_dead_control_connection() {
    tests::root_test(
        "retransmission_timeout_on_a_dead_control_connection",
        || {
            let net = NsPair::new();
            net.client.sysctl("net.ipv4.tcp_retries2", "3");
            // Nothing from the server arrives: the client's retransmits go out
            // (and count in Tcp.RetransSegs) but no ACK comes back.
            let run = through_a_dead_path(&net, "noop_after_go", &Rule::blackhole(21)[..1]);
            assert_eq!(run.outcome, "ETIMEDOUT");
            let session = only_session(&run.trace);
            assert_cause(session, "retransmission_timeout", Some("control"), "");
            assert_eq!(
                (
                    session.control.close.as_str(),
                    session.control.closed_by.as_str()
                ),
                ("timeout", "client"),
                "{}",
                session.brief()
            );
            // The client's NOOP and the server's unacknowledged reply were both
            // retransmitted; the kernels' counts, summed, are the truth.
            assert_eq!(
                i64::from(session.control.retransmits),
                run.client.get("Tcp.RetransSegs") + run.server.get("Tcp.RetransSegs"),
                "retransmits on the control connection vs Tcp.RetransSegs of both ends: {}",
                session.brief()
            );
        },
    );
}

#[test]
fn keepalive_timeout_on_a_dead_path() {
    tests::root_test("keepalive_timeout_on_a_dead_path", || {
        // The probes test's scenario, judged as a session.
        let net = NsPair::new();
        let run = through_a_dead_path(&net, "keepalive", &Rule::blackhole(21));
        assert_eq!(run.outcome, "ETIMEDOUT");
        let session = only_session(&run.trace);
        assert_cause(
            session,
            "keepalive_timeout",
            Some("control"),
            &run.context(),
        );
        assert_eq!(session.control.close, "timeout", "{}", session.brief());
        let probes = run
            .trace
            .events
            .iter()
            .filter(|e| matches!(e.kind, Kind::KeepaliveProbe { .. }))
            .count();
        assert!(
            session.evidence[0].starts_with(&format!("{probes} keepalive probe(s)")),
            "evidence counts the probes: {}",
            session.brief()
        );
        assert_eq!(
            i64::try_from(probes).unwrap(),
            run.client.get("TcpExt.TCPKeepAlive")
        );
    });
}

#[test]
fn peer_reset_by_a_killed_server() {
    tests::root_test("peer_reset_by_a_killed_server", || {
        let net = NsPair::new();
        let _ftp = Vsftpd::start(&net.server, VsftpdConfig::new(Listen::V4(SERVER_V4)));
        let run = observe(&net, tracer(), || {
            let mut client = Scenario::start(&net.client, "stall", SERVER_V4, None);
            client.wait_ready();
            // The server's processes stop reading, the client's NOOP arrives
            // unread, then they die: closing a socket with unread data resets it.
            net.server.signal_all(libc::SIGSTOP);
            client.go();
            wait_for(
                "the NOOP to wait unread at the server",
                Duration::from_secs(10),
                || {
                    if net.server.unread_bytes_on(21) > 0 {
                        Ok(())
                    } else {
                        Err("nothing queued".into())
                    }
                },
            );
            net.server.kill_all();
            client.finish()
        });
        assert_eq!(run.outcome, "ECONNRESET");
        assert_verdict(
            only_session(&run.trace),
            "peer_reset",
            Some("control"),
            &[("reset", "server")],
        );
    });
}

#[test]
fn connection_refused_with_nothing_listening() {
    tests::root_test("connection_refused_with_nothing_listening", || {
        let net = NsPair::new();
        let run = observe(&net, tracer(), || {
            Curl::new(ftp_url(SERVER_V4, 2121, "file")).run(&net.client)
        });
        assert_eq!(run.outcome.exit_code, Some(7));
        assert_verdict(
            only_session(&run.trace),
            "connection_refused",
            Some("control"),
            &[("refused", "server")],
        );
    });
}

#[test]
fn server_limit_greets_the_second_client_with_421() {
    tests::root_test("server_limit_greets_the_second_client_with_421", || {
        let net = NsPair::new();
        let _ftp = Vsftpd::start(
            &net.server,
            VsftpdConfig::new(Listen::V4(SERVER_V4)).with("max_clients", "1"),
        );
        let run = observe(&net, tracer(), || {
            let mut first = Scenario::start(&net.client, "hold", SERVER_V4, None);
            first.wait_ready();
            let second = Scenario::start(&net.client, "greeting", SERVER_V4, None).finish();
            first.go();
            (first.finish(), second)
        });
        let (first, second) = &run.outcome;
        assert!(first.starts_with("230"), "first client: {first}");
        assert!(second.starts_with("421"), "second client: {second}");
        assert_eq!(run.trace.sessions.len(), 2, "{}", briefs(&run.trace));
        let limited: Vec<_> = run
            .trace
            .sessions
            .iter()
            .filter(|s| s.cause.as_deref() == Some("server_limit"))
            .collect();
        assert_eq!(limited.len(), 1, "{}", briefs(&run.trace));
        assert_eq!(limited[0].cause_conn.as_deref(), Some("control"));
        assert_eq!(limited[0].replies.first().map(String::as_str), Some("421"));
        let other = run
            .trace
            .sessions
            .iter()
            .find(|s| s.id != limited[0].id)
            .unwrap();
        assert_ended_normally(other);
    });
}

#[test]
fn tls_failure_on_an_untrusted_certificate() {
    tests::root_test("tls_failure_on_an_untrusted_certificate", || {
        let net = NsPair::new();
        let _ftp = Vsftpd::start(
            &net.server,
            VsftpdConfig::new(Listen::V4(SERVER_V4)).with_tls(),
        );
        let run = observe(&net, tracer(), || {
            Scenario::start(&net.client, "tls", SERVER_V4, None).finish()
        });
        assert_eq!(run.outcome, "CERTIFICATE_VERIFY_FAILED");
        let session = only_session(&run.trace);
        assert!(session.encrypted, "{}", session.brief());
        // The client hangs up after its alert, the server on reading it:
        // either may close first.
        assert_cause(session, "tls_failure", Some("control"), &run.context());
        // Python asked OpenSSL why (`SSL_get_verify_result`): the evidence
        // says it in OpenSSL's words.
        assert!(
            session
                .evidence
                .iter()
                .any(|e| e.contains("X509_V_ERR_DEPTH_ZERO_SELF_SIGNED_CERT")),
            "{:?}",
            session.evidence
        );
    });
}

#[test]
fn a_killed_server_without_a_reply_is_unknown() {
    tests::root_test("a_killed_server_without_a_reply_is_unknown", || {
        let net = NsPair::new();
        let _ftp = Vsftpd::start(&net.server, VsftpdConfig::new(Listen::V4(SERVER_V4)));
        let run = observe(&net, tracer(), || {
            let mut client = Scenario::start(&net.client, "noop_after_go", SERVER_V4, None);
            client.wait_ready();
            // Nothing unread: the server's kernel closes with a FIN, and
            // nothing on the wire says why.
            net.server.kill_all();
            client.go();
            client.finish()
        });
        assert_verdict(
            only_session(&run.trace),
            "unknown",
            None,
            &[("fin", "server")],
        );
    });
}

#[test]
fn a_session_open_before_the_tracer_started_is_seeded() {
    tests::root_test("a_session_open_before_the_tracer_started_is_seeded", || {
        let net = NsPair::new();
        let _ftp = Vsftpd::start(&net.server, VsftpdConfig::new(Listen::V4(SERVER_V4)));
        let mut client = Scenario::start(&net.client, "hold", SERVER_V4, None);
        client.wait_ready();
        let run = observe(&net, tracer(), || {
            client.go();
            client.finish()
        });
        assert!(run.outcome.starts_with("230"), "client: {}", run.outcome);
        let session = only_session(&run.trace);
        assert!(session.seeded, "{}", session.brief());
        assert!(
            session.unknown.iter().any(|u| u == "user"),
            "{:?}",
            session.unknown
        );
        assert_eq!(session.user, None);
        assert_eq!(session.commands, ["QUIT"]);
        assert_eq!(session.seen_from, [Side::Client, Side::Server]);
        assert_ended_normally(session);
    });
}

/// Under TLS, where the library is not watched (`--no-tls-plaintext`; a
/// client with its TLS linked in statically), the announcements cannot be
/// read: with the passive range given, the data connection is traced and
/// linked by address.
#[test]
fn ftps_data_connection_is_linked_by_address() {
    tests::root_test("ftps_data_connection_is_linked_by_address", || {
        let net = NsPair::new();
        let ftp = Vsftpd::start(
            &net.server,
            VsftpdConfig::new(Listen::V4(SERVER_V4))
                .with_tls()
                .with_file("file", 100_000),
        );
        let certificate = ftp.certificate().display().to_string();
        let run = observe(
            &net,
            Tracer::start_with(&[DEFAULT_ARGS, &["--no-tls-plaintext"]].concat()),
            || {
                Scenario::start(&net.client, "ftps_download", SERVER_V4, Some(&certificate))
                    .finish()
            },
        );
        assert_eq!(run.outcome, "100000");
        let session = only_session(&run.trace);
        assert!(session.encrypted, "{}", session.brief());
        assert_eq!(session.data.len(), 1, "{}", session.brief());
        let data = &session.data[0];
        assert_eq!(
            (
                data.linked_by.as_deref(),
                data.established,
                data.client.addr.as_str()
            ),
            (Some("heuristic"), true, session.client.addr.as_str()),
            "{}",
            session.brief()
        );
        assert_cause(session, "clean", None, "");
        assert!(
            conns(session).all(|c| c.close == "fin"),
            "{}",
            session.brief()
        );
    });
}

/// Active mode: the client announces its port with EPRT and vsftpd connects
/// to it from port 20 (always traced); the session links it by the EPRT.
#[test]
fn active_mode_data_connection_is_linked_by_its_eprt() {
    tests::root_test("active_mode_data_connection_is_linked_by_its_eprt", || {
        let net = NsPair::new();
        let _ftp = Vsftpd::start(
            &net.server,
            VsftpdConfig::new(Listen::V4(SERVER_V4))
                .with("connect_from_port_20", "YES")
                .with_file("file", 100_000),
        );
        let run = observe(&net, tracer(), || {
            Curl::new(ftp_url(SERVER_V4, 21, "file"))
                .active()
                .run(&net.client)
        });
        let ctx = run.context();
        assert_eq!(run.outcome.exit_code, Some(0), "curl: {}{ctx}", run.outcome);
        let session = only_session(&run.trace);
        assert!(
            session.commands.iter().any(|c| c == "EPRT" || c == "PORT"),
            "{}",
            session.brief()
        );
        assert_ended_normally(session);
        let data = &session.data[0];
        assert_eq!(
            (
                data.linked_by.as_deref(),
                data.seen_from.as_slice(),
                data.client.addr.as_str()
            ),
            (
                Some("announcement"),
                [Side::Client, Side::Server].as_slice(),
                CLIENT_V4.to_string().as_str()
            ),
            "{}{}",
            session.brief(),
            session.timeline_text()
        );
        // The server connected out: its end made the active open.
        let opens = events_of(&run, &session.id, "data:1")
            .into_iter()
            .filter(|e| e.side == Side::Server && e.is_transition("SYN_SENT", "ESTABLISHED"))
            .count();
        assert_eq!(opens, 1, "{}{ctx}", session.timeline_text());
    });
}

/// The first evidence sentence of a `receiver_stalled` verdict names the
/// stalled end and counts the probes; the count is the kernel's own.
#[track_caller]
fn assert_stalled(
    session: &tests::tracer::Session,
    stalled: &str,
    prober: &str,
    probes: i64,
    ctx: &str,
) {
    assert_cause(session, "receiver_stalled", Some("data:1"), ctx);
    let said = format!(
        "the {stalled} (the receiving end) stopped reading data:1: its window fell to zero and \
         the {prober}'s kernel sent {probes} zero-window probe(s)"
    );
    assert!(
        session.evidence[0].starts_with(&said),
        "evidence {:?} does not start with {said:?}{ctx}",
        session.evidence
    );
}

/// A downloading curl stops (SIGSTOP) with its receive buffer full: vsftpd's
/// kernel probes the zero window until curl is killed.
#[test]
fn receiver_stalled_when_the_downloading_client_stops_reading() {
    tests::root_test(
        "receiver_stalled_when_the_downloading_client_stops_reading",
        || {
            let net = NsPair::new();
            // A small receive buffer fills at once; the rate limit keeps the
            // transfer going until the test stops curl.
            net.client.sysctl("net.ipv4.tcp_rmem", "4096 16384 65536");
            let _ftp = Vsftpd::start(
                &net.server,
                VsftpdConfig::new(Listen::V4(SERVER_V4)).with_file("big", 64 << 20),
            );
            let run = observe(&net, tracer(), || {
                let mut curl = spawn_download(
                    &net.client,
                    &ftp_url(SERVER_V4, 21, "big"),
                    "1M",
                    Duration::from_secs(60),
                );
                wait_for_download(&net.client);
                let pid = i32::try_from(curl.id()).expect("pid");
                // SAFETY: kill(2) on the child this test spawned and has not reaped.
                unsafe { libc::kill(pid, libc::SIGSTOP) };
                let counters = || net.server.counters().get("TcpExt.TCPWinProbe");
                let before = counters();
                wait_for(
                    "zero-window probes from the server",
                    Duration::from_secs(20),
                    || {
                        let sent = counters() - before;
                        if sent >= 3 {
                            Ok(())
                        } else {
                            Err(format!("{sent} probes"))
                        }
                    },
                );
                tests::process::kill_and_reap(&mut curl);
            });
            let ctx = run.context();
            let probes = run.server.get("TcpExt.TCPWinProbe");
            let events = run.server_where(|e| matches!(e.kind, Kind::ZeroWindowProbe { .. }));
            assert_eq!(
                i64::try_from(events.len()).unwrap(),
                probes,
                "zero_window_probe events vs the server's TcpExt.TCPWinProbe{ctx}"
            );
            assert_stalled(only_session(&run.trace), "client", "server", probes, &ctx);
        },
    );
}

/// vsftpd stops (SIGSTOP) during an upload from Python's socket client:
/// the client's kernel probes the zero window; the client gives up after
/// 3 s without progress and hangs up.
#[test]
fn receiver_stalled_when_the_server_stops_reading_an_upload() {
    tests::root_test(
        "receiver_stalled_when_the_server_stops_reading_an_upload",
        || {
            let net = NsPair::new();
            let _ftp = Vsftpd::start(
                &net.server,
                VsftpdConfig::new(Listen::V4(SERVER_V4)).with_upload_dir("incoming"),
            );
            let run = observe(&net, tracer(), || {
                let mut client =
                    Scenario::start(&net.client, "upload_stall", SERVER_V4, Some("incoming/up"));
                client.wait_ready();
                net.server.signal_all(libc::SIGSTOP);
                client.go();
                let said = client.finish();
                // Killed, the server's sockets reset the connections they held.
                let left = net.server.kill_all();
                assert!(
                    left.is_empty(),
                    "server processes survived SIGKILL: {left:?}"
                );
                said
            });
            let ctx = run.context();
            assert_eq!(run.outcome, "stalled", "the client's verdict{ctx}");
            let probes = run.client.get("TcpExt.TCPWinProbe");
            let events = run.client_where(|e| matches!(e.kind, Kind::ZeroWindowProbe { .. }));
            assert_eq!(
                i64::try_from(events.len()).unwrap(),
                probes,
                "zero_window_probe events vs the client's TcpExt.TCPWinProbe{ctx}"
            );
            assert!(probes > 0, "the stopped server drew no window probes{ctx}");
            assert_stalled(only_session(&run.trace), "server", "client", probes, &ctx);
        },
    );
}

/// A 4 s download (curl, rate-limited) while a firewall on the client's
/// host starts dropping the idle control connection: the server's `226`
/// after the transfer goes into the void and its kernel gives up (the
/// server's namespace retries 3 times, not 15, so that it takes seconds).
#[test]
fn control_lost_during_a_long_download() {
    tests::root_test("control_lost_during_a_long_download", || {
        let net = NsPair::new();
        net.server.sysctl("net.ipv4.tcp_retries2", "3");
        let _ftp = Vsftpd::start(
            &net.server,
            VsftpdConfig::new(Listen::V4(SERVER_V4)).with_file("big", 8 << 20),
        );
        let run = observe(&net, tracer(), || {
            let mut curl = spawn_download(
                &net.client,
                &ftp_url(SERVER_V4, 21, "big"),
                "2M",
                Duration::from_secs(30),
            );
            wait_for_download(&net.client);
            nft::apply(&net.client, &Rule::blackhole(21));
            let aborted = || net.server.counters().get("TcpExt.TCPAbortOnTimeout");
            let before = aborted();
            wait_for(
                "the server's kernel to give up on the control connection",
                Duration::from_secs(30),
                || {
                    if aborted() > before {
                        Ok(())
                    } else {
                        Err("not yet".into())
                    }
                },
            );
            let hits = nft::hits(&net.client);
            // The path comes back for curl's last words; the server's end is gone.
            tests::process::kill_and_reap(&mut curl);
            net.client
                .run_ok("nft", &["delete", "table", "inet", nft::TABLE]);
            hits
        });
        let ctx = run.context();
        assert!(
            run.outcome.iter().sum::<u64>() > 0,
            "the firewall dropped nothing: {:?}{ctx}",
            run.outcome
        );
        assert_eq!(
            run.server.get("TcpExt.TCPAbortOnTimeout"),
            1,
            "one connection aborted on timeout at the server{ctx}"
        );
        let session = only_session(&run.trace);
        assert_cause(
            session,
            "control_lost_during_transfer",
            Some("control"),
            &ctx,
        );
        let retransmits = run
            .trace
            .events
            .iter()
            .filter(|e| {
                e.side == Side::Server
                    && e.conn.as_deref() == Some("control")
                    && matches!(e.kind, Kind::Retransmit { .. })
            })
            .count();
        assert!(retransmits > 0, "the 226 was never retransmitted{ctx}");
        assert!(
            i64::try_from(retransmits).unwrap() <= run.server.get("Tcp.RetransSegs"),
            "more control retransmits than the kernel's RetransSegs{ctx}"
        );
        assert!(
            session.evidence[0].starts_with("the control connection carried nothing for ")
                && session.evidence[0].contains("while data:1 transferred for ")
                && session.evidence[0].ends_with(", 8388608 bytes as the 150 announced"),
            "{:?}{ctx}",
            session.evidence
        );
        assert!(
            session.evidence[1].contains(&format!("{retransmits} retransmit(s) went unanswered"))
                && session.evidence[1].contains("the server end's kernel gave up (ETIMEDOUT)"),
            "{:?}{ctx}",
            session.evidence
        );
    });
}

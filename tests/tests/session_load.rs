//! Two hundred short FTP sessions in a row, a third of them with a
//! download: every session gets its own record, every data connection is
//! linked to its session by announcement alone, and the retransmits the
//! sessions report add up to the kernels' counts.

use tests::{
    netns::{NsPair, SERVER_V4},
    observe::observe,
    scenario::Scenario,
    sessions::{assert_ended_normally, briefs},
    tracer::{NO_PASSIVE_RANGE_ARGS, Side, Tracer},
    vsftpd::{Listen, Vsftpd, VsftpdConfig},
};

#[test]
fn two_hundred_short_sessions_each_linked_right() {
    tests::root_test("two_hundred_short_sessions_each_linked_right", || {
        const SESSIONS: usize = 200;
        let net = NsPair::new();
        let ftp = Vsftpd::start(
            &net.server,
            VsftpdConfig::new(Listen::V4(SERVER_V4))
                .with_file("file", 64 << 10)
                .with("max_per_ip", "0")
                .with("max_clients", "0"),
        );
        let _ = ftp.expected("file");
        let run = observe(&net, Tracer::start_with(NO_PASSIVE_RANGE_ARGS), || {
            Scenario::start(&net.client, "many", SERVER_V4, Some(&SESSIONS.to_string())).finish()
        });
        assert_eq!(run.outcome, SESSIONS.to_string());
        let trace = &run.trace;
        assert_eq!(trace.sessions.len(), SESSIONS, "{}", briefs(trace));
        let mut with_data = 0;
        let mut retransmits = 0;
        for session in &trace.sessions {
            retransmits += i64::from(assert_ended_normally(session));
            assert!(session.data.len() <= 1, "{}", session.brief());
            if let Some(data) = session.data.first() {
                with_data += 1;
                assert_eq!(data.client.addr, session.client.addr);
                assert_eq!(data.linked_by.as_deref(), Some("announcement"));
                assert!(data.established);
                assert!(
                    session.commands.iter().any(|c| c == "RETR"),
                    "{}",
                    session.brief()
                );
            } else {
                assert!(
                    !session.commands.iter().any(|c| c == "RETR"),
                    "{}",
                    session.brief()
                );
            }
        }
        assert_eq!(with_data, SESSIONS.div_ceil(3));
        // Every data connection's events carry its session.
        let data_syns = trace
            .events
            .iter()
            .filter(|e| {
                e.side == Side::Server
                    && e.is_transition("SYN_RECV", "ESTABLISHED")
                    && e.local_port != 21
            })
            .collect::<Vec<_>>();
        assert_eq!(data_syns.len(), with_data);
        assert!(
            data_syns
                .iter()
                .all(|e| e.conn.as_deref() == Some("data:1"))
        );
        assert_eq!(trace.stats.last().map(|s| s.sessions_evicted), Some(0));
        assert_eq!(
            retransmits,
            run.client.get("Tcp.RetransSegs") + run.server.get("Tcp.RetransSegs"),
            "retransmits in the sessions vs Tcp.RetransSegs of both ends"
        );
    });
}

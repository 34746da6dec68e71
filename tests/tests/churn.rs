//! Connection churn on the FTP port (issue 12): two clients open and reset
//! connections to port 21 as fast as the host lets them. Before, the
//! tracer lost more than half the events of such a run and filed the
//! clients' ends of later connections under earlier sessions (a socket
//! reset with SO_LINGER 0 sends no destroy event, and the kernel hands
//! its address to the next socket). Now nothing is lost and each
//! connection is one session, seen from both ends, complete; what the
//! kernel itself skips (a program interrupted by another run of itself on
//! one CPU, a few dozen of 660k) is counted, and only a session open
//! meanwhile may be inexact, and then it says so.

use std::{path::Path, time::Duration};

use tests::{
    netns::{NsPair, SERVER_V4},
    observe::observe_load,
    process::{self, Daemon},
    sessions::assert_says_events_were_lost,
    tmp::TempDir,
    tracer::{NO_PASSIVE_RANGE_ARGS, Side, Tracer},
};

/// About the events of the run that lost 55% (686k events): eleven or
/// twelve events a connection.
const CONNECTIONS: u64 = 60_000;
const CHURN: &str = env!("CARGO_BIN_EXE_churn");

#[test]
fn churn_on_the_ftp_port_loses_nothing() {
    tests::root_test("churn_on_the_ftp_port_loses_nothing", || {
        let net = NsPair::new();
        let scratch = TempDir::new("churn");
        let mut server = Daemon::spawn(
            net.server
                .command(CHURN)
                .args(["serve", &SERVER_V4.to_string(), "21"]),
            &scratch.path().join("serve.log"),
        );
        net.server.wait_listening(&mut server, 21, "churn");
        let run = observe_load(&net, Tracer::start_with(NO_PASSIVE_RANGE_ARGS), || {
            // Its own bound (120 s), and ours a little later.
            let made = process::run(
                net.client.command(CHURN).args([
                    "connect",
                    &SERVER_V4.to_string(),
                    "21",
                    "120",
                    "2",
                    &CONNECTIONS.to_string(),
                ]),
                Duration::from_secs(150),
            )
            .expect_success();
            made.stdout
                .trim()
                .parse::<u64>()
                .expect("churn prints a count")
        });
        assert_eq!(
            run.outcome,
            CONNECTIONS,
            "{}",
            log(&scratch.path().join("serve.log"))
        );
        let trace = &run.trace;
        let stats = trace.stats.last().expect("final stats");
        // The kernel's count: every connection the clients began is a
        // session, nothing lost or skipped on the way.
        let attempts = run.client.get("Tcp.ActiveOpens");
        assert_eq!((stats.lost, stats.sessions_evicted), (0, 0), "{stats:?}");
        assert_eq!(run.server.get("Tcp.PassiveOpens"), attempts);
        // A session open while the kernel skipped an event says so in
        // `unknown`, whether or not the event was its own: complete is
        // what its record shows.
        let mut complete = 0;
        let mut inexact = Vec::new();
        for session in &trace.sessions {
            if session.state == "closed"
                && session.seen_from == [Side::Client, Side::Server]
                && session.control.established
                && session.control.close != "open"
                && session.timeline_omitted == 0
                // A connection's dozen events, a SYN retried on a reused
                // port at most doubling them: no other connection's.
                && session.timeline.len() <= 24
            {
                complete += 1;
                continue;
            }
            assert_says_events_were_lost(session);
            inexact.push(session);
        }
        let shown = || {
            inexact
                .iter()
                .take(5)
                .map(|s| format!("{}{}", s.brief(), s.timeline_text()))
                .collect::<Vec<_>>()
                .join("\n")
        };
        // A skipped event spoils at most the session it belonged to (or
        // splits it in two).
        assert!(
            inexact.len() as u64 <= 2 * stats.missed,
            "{} inexact sessions, {} events missed:\n{}",
            inexact.len(),
            stats.missed,
            shown()
        );
        assert!(
            complete as i64 >= attempts - stats.missed as i64,
            "{complete} complete sessions of {attempts} connections, {} events missed:\n{}",
            stats.missed,
            shown()
        );
        eprintln!(
            "churn: {CONNECTIONS} connections, {complete} sessions complete, {} inexact, tracer \
             peak {} KiB, {stats:?}",
            inexact.len(),
            run.peak_rss_kib
        );
    });
}

fn log(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

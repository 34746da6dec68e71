//! SIGUSR1 (issue 15): a `summary` line, mid-run, with the sessions so far
//! by cause and the clients that failed most; the run goes on.

use std::time::Duration;

use tests::{
    client::{Curl, ftp_url},
    netns::{CLIENT_V4, NsPair, SERVER_V4},
    tracer::Tracer,
    vsftpd::{Listen, Vsftpd, VsftpdConfig},
};

/// In the tracer's port set (`--ports 21,2121`), and nothing listens on it.
const CLOSED_PORT: u16 = 2121;

/// Two clean downloads and three connections refused, then SIGUSR1: the
/// summary counts five sessions, none open, two `clean` and three
/// `connection_refused` (the client kernel's `Tcp.AttemptFails`: each
/// refused connect), the client as the one failing client; then one more
/// download, and the session lines agree with the summary's counts.
#[test]
fn sigusr1_writes_a_summary_of_causes_and_failing_clients() {
    tests::root_test(
        "sigusr1_writes_a_summary_of_causes_and_failing_clients",
        || {
            let net = NsPair::new();
            let ftp = Vsftpd::start(&net.server, VsftpdConfig::new(Listen::V4(SERVER_V4)));
            let mut tracer = Tracer::start();
            let before = net.snapshot();
            for _ in 0..2 {
                Curl::new(ftp_url(SERVER_V4, 21, "file"))
                    .run(&net.client)
                    .assert_downloaded(&ftp.expected("file"));
            }
            for _ in 0..3 {
                let refused = Curl::new(ftp_url(SERVER_V4, CLOSED_PORT, "file")).run(&net.client);
                assert_eq!(refused.exit_code, Some(7), "curl: {refused}");
            }
            let mut sessions = 0;
            tracer.wait_for_line("five session lines", Duration::from_secs(30), |line| {
                sessions += usize::from(line.contains(r#""type":"session""#));
                sessions == 5
            });
            net.wait_quiet();
            let after = net.snapshot();
            tracer.signal(libc::SIGUSR1);
            tracer.wait_for_line("a summary line", Duration::from_secs(10), |line| {
                line.contains(r#""type":"summary""#)
            });
            // The run goes on after it.
            Curl::new(ftp_url(SERVER_V4, 21, "file"))
                .run(&net.client)
                .assert_downloaded(&ftp.expected("file"));
            tracer.wait_for_line("the sixth session line", Duration::from_secs(30), |line| {
                line.contains(r#""type":"session""#)
            });
            let trace = tracer.stop();
            let [summary] = trace.summaries.as_slice() else {
                panic!("one summary line: {:?}", trace.summaries);
            };
            let refused = before.client.delta(&after.client).get("Tcp.AttemptFails");
            assert_eq!(refused, 3, "the client's refused connects");
            assert_eq!(
                (summary.sessions, summary.sessions_open),
                (5, 0),
                "{summary:?}"
            );
            let counted: Vec<(&str, u64)> = summary
                .by_cause
                .iter()
                .filter(|(_, n)| **n > 0)
                .map(|(cause, n)| (cause.as_str(), *n))
                .collect();
            assert_eq!(
                counted,
                [("clean", 2), ("connection_refused", refused as u64)],
                "{summary:?}"
            );
            assert_eq!(
                summary
                    .failing_clients
                    .iter()
                    .map(|c| (c.addr.as_str(), c.sessions))
                    .collect::<Vec<_>>(),
                [(CLIENT_V4.to_string().as_str(), 3)]
            );
            // The session lines before it say the same.
            let causes: Vec<Option<&str>> = trace.sessions[..5]
                .iter()
                .map(|s| s.cause.as_deref())
                .collect();
            assert_eq!(
                causes.iter().filter(|c| **c == Some("clean")).count(),
                2,
                "{causes:?}"
            );
            assert_eq!(trace.sessions.len(), 6);
        },
    );
}

//! `ftptrace check`, the preflight: it must say truthfully, per probe, whether
//! the probe attaches on this kernel, and refuse without privileges.

use std::{process::Command, time::Duration};

use serde_json::Value;
use tests::{process::run, tracer::binary};

const TIMEOUT: Duration = Duration::from_secs(60);

fn kernel_at_least(major: u32, minor: u32) -> bool {
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").expect("osrelease");
    let mut parts = release
        .trim()
        .split(['.', '-'])
        .map(|p| p.parse::<u32>().unwrap_or(0));
    (parts.next().unwrap_or(0), parts.next().unwrap_or(0)) >= (major, minor)
}

#[test]
fn check_reports_every_probe_as_it_attaches() {
    if !tests::root_or_skip("check_reports_every_probe_as_it_attaches") {
        return;
    }
    let done = run(
        Command::new(binary()).args(["check", "--format", "json"]),
        TIMEOUT,
    );
    assert_eq!(done.status.code(), Some(0), "{done}");
    let report: Value =
        serde_json::from_str(done.stdout.trim()).unwrap_or_else(|e| panic!("{e}: {done}"));
    assert_eq!(report["type"], "check");
    assert_eq!(report["ready"], true, "{done}");
    for finding in ["privileges", "tracefs", "btf"] {
        assert_eq!(report[finding]["ok"], true, "{finding}: {done}");
    }
    let probes = report["probes"].as_array().expect("probes");
    let names: Vec<&str> = probes
        .iter()
        .map(|p| p["name"].as_str().expect("name"))
        .collect();
    assert_eq!(
        names,
        [
            "sock:inet_sock_set_state",
            "tcp:tcp_retransmit_skb",
            "tcp:tcp_retransmit_synack",
            "tcp:tcp_send_reset",
            "tcp:tcp_receive_reset",
            "tcp:tcp_destroy_sock",
            "sock:inet_sk_error_report",
            "skb:kfree_skb",
            "keepalive_probe",
            "zero_window_probe"
        ]
    );
    for probe in probes {
        // inet_sk_error_report came in 5.13; everything else is older than 5.8.
        let expected = probe["name"] != "sock:inet_sk_error_report" || kernel_at_least(5, 13);
        assert_eq!(probe["attached"], expected, "{probe}: {done}");
        if expected {
            let hook = if probe["name"]
                .as_str()
                .is_some_and(|n| n.ends_with("_probe"))
            {
                "timer"
            } else {
                "raw_tracepoint"
            };
            assert_eq!(probe["hook"], hook, "{probe}");
        } else {
            assert!(
                probe["reason"].is_string(),
                "an off probe says why: {probe}"
            );
        }
    }

    let text = run(Command::new(binary()).arg("check"), TIMEOUT);
    assert_eq!(text.status.code(), Some(0), "{text}");
    assert!(
        text.stdout.contains("ready: `ftptrace trace` will work"),
        "{text}"
    );
    assert_eq!(
        text.stdout
            .lines()
            .filter(|l| l.starts_with("probe"))
            .count(),
        10,
        "{text}"
    );
}

#[test]
fn check_without_privileges_is_not_ready() {
    if !tests::root_or_skip("check_without_privileges_is_not_ready") {
        return;
    }
    let done = run(
        Command::new("setpriv")
            .args([
                "--reuid=65534",
                "--regid=65534",
                "--clear-groups",
                "--inh-caps=-all",
            ])
            .arg(binary())
            .arg("check"),
        TIMEOUT,
    );
    assert_eq!(done.status.code(), Some(1), "{done}");
    assert!(
        done.stdout
            .contains("privileges  NO missing CAP_BPF and CAP_PERFMON"),
        "{done}"
    );
    assert!(done.stdout.contains("NOT READY"), "{done}");
}

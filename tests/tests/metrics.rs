//! `--metrics` (issue 15) read by Debian's real Prometheus: it scrapes the
//! tracer, and what its HTTP API answers equals what the JSON lines of the
//! same run say, and the kernel's own counts; the shipped rules load, and
//! `promtool` checks them and runs their unit tests.

use std::{collections::BTreeMap, net::TcpListener, process::Command, time::Duration};

use serde_json::Value;
use tests::{
    client::{Curl, ftp_url},
    deadline::wait_for,
    netns::{NsPair, SERVER_V4},
    process::{Daemon, run},
    tmp::TempDir,
    tracer::{DEFAULT_ARGS, Kind, Tracer},
    vsftpd::{Listen, Vsftpd, VsftpdConfig},
    workspace_root,
};

/// In the tracer's port set (`--ports 21,2121`), and nothing listens on it.
const CLOSED_PORT: u16 = 2121;

/// A port free on the loopback now.
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

/// `GET http://127.0.0.1:{port}{path}` with curl: the body, if 200.
fn http_get(port: u16, path: &str) -> Result<String, String> {
    let done = run(
        Command::new("curl")
            .args(["--silent", "--show-error", "--fail", "--max-time", "5"])
            .arg(format!("http://127.0.0.1:{port}{path}")),
        Duration::from_secs(10),
    );
    if done.status.success() {
        Ok(done.stdout)
    } else {
        Err(done.stderr)
    }
}

/// A Prometheus query's result: each series' labels (without `__name__`,
/// `job`, `instance`) and its value.
fn query(port: u16, promql: &str) -> Result<BTreeMap<String, f64>, String> {
    let encoded: String = promql
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'_' | b'-' | b'.' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect();
    let body = http_get(port, &format!("/api/v1/query?query={encoded}"))?;
    let answer: Value = serde_json::from_str(&body).map_err(|e| format!("{e}: {body}"))?;
    if answer["status"] != "success" {
        return Err(body);
    }
    let mut series = BTreeMap::new();
    for sample in answer["data"]["result"].as_array().into_iter().flatten() {
        let labels: Vec<String> = sample["metric"]
            .as_object()
            .into_iter()
            .flatten()
            .filter(|(k, _)| !["__name__", "job", "instance"].contains(&k.as_str()))
            .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or_default()))
            .collect();
        let value = sample["value"][1]
            .as_str()
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| format!("no value: {sample}"))?;
        series.insert(labels.join(","), value);
    }
    Ok(series)
}

/// Two clean downloads and two refused connections; Prometheus scrapes
/// every second. Its answers, once it has scraped the run's last session,
/// equal the JSON lines: sessions by cause, connections attempted and
/// established, data connections, resets sent (and the kernels'
/// `Tcp.OutRsts`), resets received, the probes with their hooks; the
/// shipped rules are loaded and healthy, and the success ratio is there;
/// `promtool check metrics` finds nothing wrong with the page.
#[test]
fn prometheus_scrapes_the_numbers_the_json_lines_say() {
    tests::root_test("prometheus_scrapes_the_numbers_the_json_lines_say", || {
        let net = NsPair::new();
        let ftp = Vsftpd::start(&net.server, VsftpdConfig::new(Listen::V4(SERVER_V4)));
        let (metrics_port, prometheus_port) = (free_port(), free_port());
        let metrics_addr = format!("127.0.0.1:{metrics_port}");
        let mut args = DEFAULT_ARGS.to_vec();
        args.extend(["--metrics", &metrics_addr]);
        let mut tracer = Tracer::start_with(&args);
        let dir = TempDir::new("prometheus");
        let rules = workspace_root().join("examples/prometheus/ftptrace.rules.yml");
        let config = dir.path().join("prometheus.yml");
        std::fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nrule_files:\n  - {}\n\
                 scrape_configs:\n  - job_name: ftptrace\n    static_configs:\n      - targets: \
                 ['{metrics_addr}']\n",
                rules.display()
            ),
        )
        .expect("write prometheus.yml");
        let mut prometheus = Daemon::spawn(
            Command::new("prometheus")
                .arg(format!("--config.file={}", config.display()))
                .arg(format!(
                    "--storage.tsdb.path={}",
                    dir.subdir("data").display()
                ))
                .arg(format!("--web.listen-address=127.0.0.1:{prometheus_port}")),
            &dir.path().join("prometheus.log"),
        );
        wait_for("Prometheus ready", Duration::from_secs(60), || {
            prometheus.assert_running();
            http_get(prometheus_port, "/-/ready").map(drop)
        });
        let before = net.snapshot();
        for _ in 0..2 {
            Curl::new(ftp_url(SERVER_V4, 21, "file"))
                .run(&net.client)
                .assert_downloaded(&ftp.expected("file"));
        }
        for _ in 0..2 {
            let refused = Curl::new(ftp_url(SERVER_V4, CLOSED_PORT, "file")).run(&net.client);
            assert_eq!(refused.exit_code, Some(7), "curl: {refused}");
        }
        let mut ended = 0;
        tracer.wait_for_line("four session lines", Duration::from_secs(30), |line| {
            ended += usize::from(line.contains(r#""type":"session""#));
            ended == 4
        });
        net.wait_quiet();
        let after = net.snapshot();
        let total = |name: &str| query(prometheus_port, &format!("sum({name})"));
        wait_for(
            "a scrape after the last session",
            Duration::from_secs(30),
            || match total("ftptrace_control_connections_attempted_total")?.get("") {
                Some(n) if *n == 4.0 => Ok(()),
                other => Err(format!("attempted: {other:?}")),
            },
        );
        let scraped =
            |name: &str| query(prometheus_port, name).unwrap_or_else(|e| panic!("{name}: {e}"));
        let causes = scraped("ftptrace_sessions_ended_total");
        let established = scraped("ftptrace_control_connections_established_total");
        let data = scraped("ftptrace_data_connections_total");
        let resets_sent = total("ftptrace_resets_sent_total").expect("resets sent");
        let resets_received = total("ftptrace_resets_received_total").expect("resets received");
        let probes = scraped("ftptrace_probe_info");
        let ring = |name: &str| total(name).ok().and_then(|m| m.get("").copied());
        let ring_size = ring("ftptrace_ring_buffer_size_bytes");
        let ring_used = ring("ftptrace_ring_buffer_used_bytes");
        let ring_peak = ring("ftptrace_ring_buffer_used_peak_bytes");
        let ratio = scraped("instance:ftptrace_control_connection_success:ratio_rate5m");
        let rules_health = http_get(prometheus_port, "/api/v1/rules").expect("rules");
        // The text format as promtool lints it (Prometheus itself took
        // OpenMetrics, which it asks for first).
        let page = dir.path().join("page.txt");
        std::fs::write(&page, http_get(metrics_port, "/metrics").expect("the page"))
            .expect("write the page");
        let lint = run(
            Command::new("sh")
                .arg("-c")
                .arg(format!("promtool check metrics < {}", page.display())),
            Duration::from_secs(30),
        );
        assert!(lint.status.success(), "promtool check metrics: {lint:?}");
        let trace = tracer.stop();

        // Sessions by cause, as the session lines say.
        let mut by_cause = BTreeMap::new();
        for session in &trace.sessions {
            let cause = session.cause.clone().unwrap_or_else(|| "none".into());
            *by_cause.entry(format!("cause={cause}")).or_insert(0.0) += 1.0;
        }
        let nonzero: BTreeMap<String, f64> = causes.into_iter().filter(|(_, n)| *n > 0.0).collect();
        assert_eq!(nonzero, by_cause);
        assert_eq!(
            established.get(""),
            Some(
                &(trace
                    .sessions
                    .iter()
                    .filter(|s| s.control.established)
                    .count() as f64)
            )
        );
        let data_lines = trace.sessions.iter().flat_map(|s| &s.data);
        let (up, down): (Vec<_>, Vec<_>) = data_lines.partition(|d| d.established);
        assert_eq!(
            (
                data.get("outcome=established"),
                data.get("outcome=not_established")
            ),
            (Some(&(up.len() as f64)), Some(&(down.len() as f64)))
        );
        // Resets: the event lines, and the kernels' own count.
        let count =
            |f: fn(&Kind) -> bool| trace.events.iter().filter(|e| f(&e.kind)).count() as f64;
        let sent = count(|k| matches!(k, Kind::ResetSent { .. }));
        let out_rsts = before.server.delta(&after.server).get("Tcp.OutRsts")
            + before.client.delta(&after.client).get("Tcp.OutRsts");
        assert_eq!(resets_sent.get(""), Some(&sent));
        assert_eq!(sent, out_rsts as f64, "reset_sent events vs Tcp.OutRsts");
        assert_eq!(
            resets_received.get("").copied().unwrap_or(0.0),
            count(|k| matches!(k, Kind::ResetReceived { .. }))
        );
        // Every probe with the hook the start line names.
        let expected: BTreeMap<String, f64> = trace
            .start
            .probes
            .iter()
            .map(|p| {
                (
                    format!("attached={},hook={},probe={}", p.attached, p.hook, p.name),
                    1.0,
                )
            })
            .collect();
        assert_eq!(probes, expected);
        // The ring as the tracer mapped it: the default 32 MiB; events were
        // read, so at some wake the reader found at least one record (64
        // bytes of the ring or more) waiting.
        let size = f64::from(32u32 << 20);
        assert_eq!(ring_size, Some(size));
        assert!(ring_used.is_some_and(|u| u <= size), "{ring_used:?}");
        assert!(
            ring_peak.is_some_and(|p| (64.0..=size).contains(&p)),
            "{ring_peak:?}"
        );
        // The shipped rules, loaded and evaluated.
        let rules: Value = serde_json::from_str(&rules_health).expect("rules JSON");
        let group = &rules["data"]["groups"][0];
        assert_eq!(group["name"], "ftptrace", "{rules_health}");
        let all = group["rules"].as_array().expect("rules");
        assert_eq!(all.len(), 8, "{rules_health}");
        assert!(all.iter().all(|r| r["health"] == "ok"), "{rules_health}");
        assert!(ratio.values().all(|r| (0.0..=1.0).contains(r)), "{ratio:?}");
        prometheus.assert_running();
    });
}

/// `promtool` (Debian's prometheus package) checks the shipped rules and
/// runs their unit tests (an alert that fires and ones that do not).
#[test]
fn promtool_checks_and_tests_the_shipped_rules() {
    if !tests::root_or_skip("promtool_checks_and_tests_the_shipped_rules") {
        return;
    }
    let dir = workspace_root().join("examples/prometheus");
    for args in [
        &["check", "rules", "ftptrace.rules.yml"][..],
        &["test", "rules", "ftptrace.rules.test.yml"],
    ] {
        let done = run(
            Command::new("promtool").args(args).current_dir(&dir),
            Duration::from_secs(60),
        );
        assert!(done.status.success(), "promtool {args:?}: {done:?}");
    }
}

//! `ftptrace check`, the preflight: it must say truthfully, per probe, whether
//! the probe attaches on this kernel, and refuse without privileges.

use std::{process::Command, time::Duration};

use serde_json::Value;
use tests::{
    netns::{NsPair, SERVER_V4},
    process::{Daemon, run},
    tmp::TempDir,
    tracer::{FORCE_HOOK_ENV, binary, expected_ladder_hook, forced_tier},
    vsftpd::{Listen, Vsftpd, VsftpdConfig},
};

const TIMEOUT: Duration = Duration::from_secs(60);

fn kernel_at_least(major: u32, minor: u32) -> bool {
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").expect("osrelease");
    let mut parts = release
        .trim()
        .split(['.', '-'])
        .map(|p| p.parse::<u32>().unwrap_or(0));
    (parts.next().unwrap_or(0), parts.next().unwrap_or(0)) >= (major, minor)
}

/// Where cgroup v2 is mounted (the control-channel programs attach to its
/// root): the second field of its /proc/mounts line.
fn cgroup2_mount() -> Option<String> {
    let mounts = std::fs::read_to_string("/proc/mounts").expect("/proc/mounts");
    mounts.lines().find_map(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        (fields.get(2) == Some(&"cgroup2")).then(|| fields[1].to_owned())
    })
}

/// Whether the kernel can create kprobes at all (CONFIG_KPROBES).
fn kprobes_exist() -> bool {
    std::path::Path::new("/sys/bus/event_source/devices/kprobe/type").exists()
        || std::path::Path::new("/sys/kernel/tracing/kprobe_events").exists()
}

/// `ftptrace check --format json`, which must exit 0: its report, and the
/// run for messages.
#[track_caller]
fn check_report() -> (Value, tests::process::Finished) {
    let done = run(
        Command::new(binary()).args(["check", "--format", "json"]),
        TIMEOUT,
    );
    assert_eq!(done.status.code(), Some(0), "{done}");
    let report: Value =
        serde_json::from_str(done.stdout.trim()).unwrap_or_else(|e| panic!("{e}: {done}"));
    (report, done)
}

#[test]
fn check_reports_every_probe_as_it_attaches() {
    if !tests::root_or_skip("check_reports_every_probe_as_it_attaches") {
        return;
    }
    let (report, done) = check_report();
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
            "skb:kfree_skb",
            "socket_error",
            "keepalive_probe",
            "zero_window_probe",
            "control_channel",
            "dns_answers",
            "tls_plaintext"
        ]
    );
    let forced = forced_tier();
    for probe in probes {
        // Every tracepoint is older than 5.8, every ladder ends in a
        // fallback built on tracepoints, and cgroup_skb programs are older
        // still: on a supported kernel with cgroup v2 mounted all attach.
        assert_eq!(probe["attached"], true, "{probe}: {done}");
        let name = probe["name"].as_str().expect("name");
        let hook = probe["hook"].as_str().expect("hook");
        let target = probe["target"].as_str().expect("target");
        let fell_back: Vec<&str> = probe["fell_back"]
            .as_array()
            .map(|a| a.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        match (name, forced.as_deref()) {
            ("socket_error" | "keepalive_probe" | "zero_window_probe", Some(tier)) => {
                assert_eq!(
                    Some((hook, target)),
                    expected_ladder_hook(name, tier),
                    "{FORCE_HOOK_ENV}={tier}: {probe}"
                );
                assert!(
                    fell_back.is_empty(),
                    "a forced tier tries nothing else: {probe}"
                );
            }
            ("socket_error", None) if kernel_at_least(5, 13) => {
                assert_eq!(
                    (hook, target),
                    ("raw_tracepoint", "sock:inet_sk_error_report")
                );
                assert!(fell_back.is_empty(), "{probe}");
            }
            ("socket_error" | "keepalive_probe" | "zero_window_probe", None) => {
                // The first rung that works, and why each one above it did not.
                let order = ["fentry", "kprobe", "timer"];
                let rung = order
                    .iter()
                    .position(|h| *h == hook)
                    .or((hook == "raw_tracepoint" && name == "socket_error").then_some(2))
                    .unwrap_or_else(|| panic!("unexpected hook: {probe}"));
                assert_eq!(
                    fell_back.len(),
                    rung + usize::from(name == "socket_error"),
                    "{probe}"
                );
                if !kprobes_exist() {
                    assert!(
                        fell_back
                            .iter()
                            .any(|f| f.starts_with("kprobe: ") && f.contains("CONFIG_KPROBES")),
                        "{probe}"
                    );
                }
            }
            ("sock:inet_sock_set_state", forced) => {
                // The BTF tracepoint (5.5+, with BTF, which ftptrace needs
                // anyway), unless the raw one is forced.
                let expected = match forced {
                    Some("raw_tracepoint") => "raw_tracepoint",
                    _ => "tp_btf",
                };
                assert_eq!((hook, target), (expected, "inet_sock_set_state"), "{probe}");
                assert!(fell_back.is_empty(), "{probe}");
            }
            // Uprobes on the TLS libraries this host has: vsftpd's and
            // curl's OpenSSL, lftp's GnuTLS (`cargo xtask setup`).
            // Every function of each: one whose program the verifier
            // refused would drop out of the list, and be named in `reason`.
            ("tls_plaintext", _) => {
                assert_eq!(hook, "uprobe", "{probe}");
                for watched in [
                    "OpenSSL ",
                    "libssl.so",
                    "(SSL_read, SSL_read_ex, SSL_write, SSL_write_ex, SSL_do_handshake, \
                     SSL_get_verify_result)",
                    "GnuTLS ",
                    "(gnutls_record_recv, gnutls_record_send, gnutls_handshake, \
                     gnutls_certificate_verify_peers2, gnutls_certificate_verify_peers3, \
                     gnutls_session_get_verify_cert_status)",
                    "OpenSSL errors ",
                    "libcrypto.so.3 (ERR_vset_error)",
                    "GnuTLS alerts ",
                    "libgnutls.so.30 (gnutls_alert_send)",
                ] {
                    assert!(target.contains(watched), "{watched}: {probe}");
                }
                assert!(probe["reason"].is_null(), "{probe}");
                assert!(fell_back.is_empty(), "{probe}");
            }
            ("control_channel" | "dns_answers", _) => {
                assert_eq!(
                    (hook, Some(target)),
                    ("cgroup_skb", cgroup2_mount().as_deref()),
                    "{probe}"
                );
                assert!(fell_back.is_empty(), "{probe}");
            }
            _ => {
                assert_eq!(hook, "raw_tracepoint", "{probe}");
                assert_eq!(
                    format!("{}:{target}", name.split(':').next().unwrap_or("")),
                    name
                );
            }
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
        names.len(),
        "one line per probe the JSON lists: {text}"
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

/// A process with an FTP port open and no TLS library mapped (Python
/// without its `ssl` module, standing in for a statically linked server) is
/// named as out of the TLS uprobes' reach; vsftpd, which maps OpenSSL, is
/// not.
#[test]
fn check_names_an_ftp_process_the_tls_probe_cannot_reach() {
    if !tests::root_or_skip("check_names_an_ftp_process_the_tls_probe_cannot_reach") {
        return;
    }
    let net = NsPair::new();
    let ftp = Vsftpd::start(
        &net.server,
        VsftpdConfig::new(Listen::V4(SERVER_V4)).with_tls(),
    );
    let scratch = TempDir::new("listener");
    let mut listener = Daemon::spawn(
        net.client.command("python3").args([
            "-c",
            "import socket, time\n\
             s = socket.socket()\n\
             s.bind(('0.0.0.0', 21))\n\
             s.listen()\n\
             time.sleep(120)\n",
        ]),
        &scratch.path().join("listener.log"),
    );
    net.client.wait_listening(&mut listener, 21, "python3");
    let (report, done) = check_report();
    let unreached: Vec<(u64, &str, u64)> = report["tls_unreached"]
        .as_array()
        .expect("tls_unreached")
        .iter()
        .map(|p| {
            (
                p["pid"].as_u64().expect("pid"),
                p["name"].as_str().expect("name"),
                p["port"].as_u64().expect("port"),
            )
        })
        .collect();
    assert!(
        unreached.contains(&(u64::from(listener.pid()), "python3", 21)),
        "{unreached:?}: {done}"
    );
    assert!(
        !unreached
            .iter()
            .any(|&(pid, ..)| pid == u64::from(ftp.pid())),
        "vsftpd maps OpenSSL: {unreached:?}"
    );
}

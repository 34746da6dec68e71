//! Root-only integration tests for ftptrace: real vsftpd, curl and nftables
//! in network namespaces this crate creates, with the tracer's events checked
//! against the kernel's own counters (`/proc/net/snmp`, `/proc/net/netstat`)
//! read inside each namespace.
//!
//! Run them as root, one at a time (they load eBPF programs and the tracer
//! sees every namespace, so a parallel test's traffic would be in its output):
//!
//! ```sh
//! cargo xtask test
//! # or, with a release tracer already built:
//! FTPTRACE_BIN=target/release/ftptrace cargo test -p tests -- --test-threads=1
//! ```
//!
//! Without root they skip (and pass) unless `CI` is set, where they fail.
//! Each runs through [`root_test`], which runs it again when it failed while
//! the kernel did its work where no BPF program runs ([`blind_spot`]).
//! `FTPTRACE_BIN` names the tracer (default `target/release/ftptrace`); a
//! tracer that does not start fails the test, with its stderr.
//!
//! The parts, one module each:
//!
//! - [`netns`]: [`netns::NsPair`], a server and a client namespace joined by
//!   a veth pair (192.0.2.1/2001:db8::1 and 192.0.2.2/2001:db8::2), with one
//!   TCP segment per skb and no reordering, so that the kernel's per-segment
//!   counters and the tracer's per-skb events count the same thing;
//!   [`netns::NsPair::wait_quiet`] waits until only LISTEN and TIME-WAIT
//!   sockets are left.
//! - [`counters`]: `/proc/net/snmp` and `/proc/net/netstat` of a namespace,
//!   keyed `Tcp.RetransSegs`, `TcpExt.TCPSynRetrans`, ...; deltas.
//! - [`vsftpd`]: a real vsftpd per test, anonymous, passive ports
//!   [`vsftpd::PASSIVE_PORTS`], generated files.
//! - [`client`]: curl ([`client::Curl`]) and lftp ([`client::Lftp`]) runs
//!   that report pid, exit code, stderr and the downloaded bytes.
//! - [`nft`]: faults as nftables rules (loss, SYN drops, forged resets).
//! - [`tracer`]: ftptrace as a child; its JSON lines parsed strictly and its
//!   end-of-run contract (exit 0, final stats, nothing lost) checked on stop.
//! - [`observe`]: snapshot, action, quiescence, snapshot, stop: events and
//!   counter deltas for exactly the same kernel activity.
//! - [`scenario`]: a scripted FTP client for the moves curl does not make
//!   (idle, hang up mid-transfer, connect late, TLS that verifies).
//! - [`sessions`]: checks on `session` lines (cause, connection, closes).
//! - [`blind_spot`]: the witness of a host's blind spot (work done on top of
//!   PID 1 runs no BPF program) and [`root_test`], which retries a failure
//!   only when the witness saw the test's traffic there.
//! - [`jit`]: the loaded programs' JIT images (a uprobe program must not
//!   run on a per-CPU private stack).
//! - [`checks`]: assertions shared by tests; [`deadline`], [`process`],
//!   [`tmp`]: bounded waits, child processes, scratch directories.
//!
//! A test reads like this:
//!
//! ```no_run
//! use tests::{client::{Curl, ftp_url}, netns::{NsPair, SERVER_V4}, observe::observe,
//!             tracer::Tracer, vsftpd::{Listen, Vsftpd, VsftpdConfig}};
//! tests::root_test("example", || {
//!     let net = NsPair::new();
//!     let ftp = Vsftpd::start(&net.server, VsftpdConfig::new(Listen::V4(SERVER_V4)));
//!     let run = observe(&net, Tracer::start(), || {
//!         Curl::new(ftp_url(SERVER_V4, 21, "file")).run(&net.client)
//!     });
//!     run.outcome.assert_downloaded(&ftp.expected("file"));
//!     assert_eq!(run.server.get("Tcp.RetransSegs"), 0, "{}", run.context());
//! });
//! ```

pub mod blind_spot;
pub mod checks;
pub mod chromium;
pub mod client;
pub mod conversation;
pub mod counters;
pub mod deadline;
pub mod ftp_servers;
pub mod jit;
pub mod netns;
pub mod nft;
pub mod observe;
pub mod process;
pub mod resolver;
pub mod scenario;
pub mod schema;
pub mod sessions;
pub mod tmp;
pub mod tracer;
pub mod vsftpd;

pub use blind_spot::root_test;

/// Every password the suite's clients send (`PASS`): each tracer run checks
/// that none reaches stdout, stderr or `--output`. Clients' defaults
/// included: curl's and lftp's anonymous passwords.
pub const SECRETS: &[&str] = &[
    "Fq3-zT8v-Lw2m",
    "s3cret-never-printed",
    "guest@example.org",
    "forged-secret",
    "ftp@example.com",
    "lftp@",
];

/// Panics if `text` (from `channel`) holds one of [`SECRETS`]; the message
/// shows only the secret's first letters.
#[track_caller]
pub fn assert_no_secret(channel: &str, text: &str) {
    for secret in SECRETS {
        assert!(
            !text.contains(secret),
            "a password the suite sent ({}...) reached the tracer's {channel}",
            &secret[..3]
        );
    }
}

use std::{
    path::PathBuf,
    sync::atomic::{AtomicU32, Ordering},
};

/// Whether the calling test should run: true as root. Otherwise, with `CI`
/// unset (or empty or `false`) it prints why it skips and returns false;
/// with `CI` set it panics, so CI can never skip silently.
#[track_caller]
pub fn root_or_skip(test: &str) -> bool {
    // SAFETY: geteuid(2) cannot fail and touches no memory.
    if unsafe { libc::geteuid() } == 0 {
        return true;
    }
    let in_ci = std::env::var_os("CI").is_some_and(|v| !v.is_empty() && v != "false");
    assert!(
        !in_ci,
        "{test}: needs root, and CI is set: run the integration tests as root"
    );
    eprintln!("skipping {test}: needs root (run `cargo xtask test` as root)");
    false
}

/// `ftpt-<pid>-<n>-<label>`: unique per process and call, short enough for
/// namespace and file names.
pub fn unique_name(label: &str) -> String {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    // Guests booted side by side share the host's files and count pids
    // alike: `cargo xtask vm` names each run.
    let run: String = std::env::var("FTPTRACE_TEST_RUN")
        .unwrap_or_default()
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .take(8)
        .collect();
    format!(
        "ftpt-{run}{}-{}-{label}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

/// The workspace root: the parent of this crate's directory.
pub fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the tests crate is inside the workspace")
        .to_owned()
}

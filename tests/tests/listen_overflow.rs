//! A control-port listener whose accept queue overflows: the handshakes'
//! last ACKs that find the queue full are dropped, and each such drop is a
//! `drop` event, with the kernel's TCP_LISTEN_OVERFLOW reason where it has
//! one, as many as the kernel counts in ListenOverflows.

use std::{
    io::{BufRead, BufReader, Write as _},
    process::{Child, ChildStdout, Stdio},
    time::Duration,
};

use tests::{
    checks::{count, dropped_by_firewall},
    deadline::{Deadline, wait_for},
    netns::{NetNs, NsPair, SERVER_V4},
    nft::{self, Hook, Rule},
    observe::observe,
    process::{kill_and_reap, wait_until},
    tracer::{Kind, Tracer},
};

/// The client port whose handshake is held back.
const HELD_PORT: u16 = 40001;

/// Connections that fill the accept queue (backlog 1 holds two).
const FILLERS: usize = 2;

/// A listener on port 21 with a backlog of 1 that never accepts.
const LISTENER: &str = r#"
import socket, sys, time
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((sys.argv[1], 21))
s.listen(1)
print("listening", flush=True)
time.sleep(120)
"#;

/// Connects from the held port without waiting and says `held`; on a line
/// from stdin opens the fillers and says `filled`; holds everything until
/// stdin closes.
const CLIENT: &str = r#"
import socket, sys
held = socket.socket()
held.bind(("", int(sys.argv[2])))
held.setblocking(False)
held.connect_ex((sys.argv[1], 21))
print("held", flush=True)
sys.stdin.readline()
fillers = [socket.create_connection((sys.argv[1], 21), timeout=10) for _ in range(int(sys.argv[3]))]
print("filled", flush=True)
sys.stdin.read()
"#;

/// A python script in `ns`, with its stdout as lines.
fn spawn_python(ns: &NetNs, script: &str, args: &[&str]) -> (Child, BufReader<ChildStdout>) {
    let mut child = ns
        .command("python3")
        .args(["-c", script])
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn python3");
    let out = BufReader::new(child.stdout.take().expect("piped"));
    (child, out)
}

#[track_caller]
fn expect_line(out: &mut BufReader<ChildStdout>, expected: &str) {
    let mut line = String::new();
    out.read_line(&mut line).expect("python output");
    assert_eq!(line.trim(), expected);
}

/// `ss` lines for port 21 in `ns` with `args` (a state filter).
fn ss_count(ns: &NetNs, args: &[&str]) -> usize {
    let out = ns.run_ok("ss", &[&["-tnH"], args, &["sport", "= :21"]].concat());
    out.stdout.lines().filter(|l| !l.trim().is_empty()).count()
}

/// Connections waiting in the listener's accept queue (its Recv-Q).
fn accept_queue(ns: &NetNs) -> Result<usize, String> {
    let out = ns.run_ok("ss", &["-ltnH", "sport", "= :21"]);
    out.stdout
        .split_whitespace()
        .nth(1)
        .and_then(|q| q.parse().ok())
        .ok_or_else(|| format!("no listener on 21: {}", out.stdout))
}

#[test]
fn accept_queue_overflow_drops_match_listen_overflows() {
    tests::root_test("accept_queue_overflow_drops_match_listen_overflows", || {
        let net = NsPair::new();
        // A handshake on a veth pair completes inside connect(), so the overflow
        // is staged: hold back one handshake's last ACK (its request socket
        // waits), fill the accept queue with two more connections, then let
        // the held ACKs through: each finds the queue full. (A SYN that meets a
        // full queue is ignored without a drop: not this test.)
        let hold_ack = Rule {
            hook: Hook::Input,
            matches: format!(
                "tcp dport 21 tcp sport {HELD_PORT} tcp flags & (syn | ack | fin | rst | psh) == ack"
            ),
            verdict: "drop".into(),
        };
        nft::apply(&net.server, &[hold_ack]);
        let (mut listener, mut listening) =
            spawn_python(&net.server, LISTENER, &[&SERVER_V4.to_string()]);
        expect_line(&mut listening, "listening");
        let before = net.server.counters();
        let run = observe(&net, Tracer::start(), || {
            let (mut client, mut said) = spawn_python(
                &net.client,
                CLIENT,
                &[
                    &SERVER_V4.to_string(),
                    &HELD_PORT.to_string(),
                    &FILLERS.to_string(),
                ],
            );
            expect_line(&mut said, "held");
            wait_for(
                "the held handshake's request socket",
                Duration::from_secs(10),
                || match ss_count(&net.server, &["state", "syn-recv"]) {
                    1 => Ok(()),
                    n => Err(format!("{n} in SYN-RECV")),
                },
            );
            let mut stdin = client.stdin.take().expect("piped");
            stdin.write_all(b"fill\n").expect("tell the client");
            expect_line(&mut said, "filled");
            wait_for(
                "a full accept queue",
                Duration::from_secs(10),
                || match accept_queue(&net.server)? {
                    FILLERS => Ok(()),
                    n => Err(format!("{n} queued")),
                },
            );
            // The ACK answering the next SYN-ACK retransmit goes through and
            // finds the queue full. An accept rule goes in front of the drop
            // rule rather than the table going away: the drop rule's counter
            // stays, final, to be read after the race with retransmits is over.
            net.server.run_ok(
                "nft",
                &[
                    "insert",
                    "rule",
                    "inet",
                    nft::TABLE,
                    "input",
                    "tcp",
                    "sport",
                    &HELD_PORT.to_string(),
                    "accept",
                ],
            );
            wait_for(
                "the accept queue to overflow",
                Duration::from_secs(20),
                || {
                    let overflows = before
                        .delta(&net.server.counters())
                        .get("TcpExt.ListenOverflows");
                    match overflows {
                        0 => Err("ListenOverflows +0".to_owned()),
                        _ => Ok(()),
                    }
                },
            );
            // Tear down: the listener goes (its request socket and queue with
            // it), then the client (its FINs meet no socket and are reset).
            kill_and_reap(&mut listener);
            drop(stdin);
            if wait_until(&mut client, Deadline::after(Duration::from_secs(10))).is_none() {
                kill_and_reap(&mut client);
            }
            nft::hits(&net.server)[0]
        });
        let ctx = run.context();
        let held = i64::try_from(run.outcome).expect("fits");
        assert!(
            held > 0,
            "no ACK was held back, the test proves nothing{ctx}"
        );
        let overflows = run.server.get("TcpExt.ListenOverflows");
        assert!(overflows > 0, "the queue never overflowed{ctx}");
        assert_eq!(
            run.server.get("TcpExt.ListenDrops"),
            overflows,
            "every listen drop here is an overflow{ctx}"
        );
        // The held handshake's SYN-ACK went out again (what let its ACK
        // through): tcp_retransmit_synack, counted as TCPSynRetrans.
        let synacks = run.server_where(|e| matches!(&e.kind, Kind::Retransmit { syn: true, .. }));
        assert!(!synacks.is_empty(), "no SYN-ACK retransmit{ctx}");
        assert_eq!(
            count(&synacks),
            run.server.get("TcpExt.TCPSynRetrans"),
            "SYN-ACK retransmit events vs TcpExt.TCPSynRetrans{ctx}"
        );
        // Pure ACKs to port 21 dropped in the server's namespace: the ones the
        // firewall held back plus the overflows, on every kernel.
        let acks_dropped = run.server_where(|e| {
            matches!(&e.kind, Kind::Drop { direction, tcp_flags, .. }
                if direction == "in" && tcp_flags == "ACK")
                && e.local_port == 21
        });
        assert_eq!(
            count(&acks_dropped),
            held + overflows,
            "dropped ACK events vs nft counter ({held}) + ListenOverflows ({overflows}){ctx}"
        );
        // Where each was freed tells them apart on every kernel: the firewall's
        // in netfilter's code, the overflows in TCP's receive path.
        let by_firewall = acks_dropped
            .iter()
            .filter(|e| matches!(&e.kind, Kind::Drop { location, .. } if dropped_by_firewall(location.as_deref())))
            .count();
        assert_eq!(
            i64::try_from(by_firewall).expect("fits"),
            held,
            "ACK drops located in netfilter vs the nft counter{ctx}"
        );
        // The reason says which is which where the kernel has it (its
        // kfree_skb print format lists the names).
        let named = std::fs::read_to_string("/sys/kernel/tracing/events/skb/kfree_skb/format")
            .is_ok_and(|f| f.contains("TCP_LISTEN_OVERFLOW"));
        let overflow_drops = acks_dropped
            .iter()
            .filter(
                |e| matches!(&e.kind, Kind::Drop { reason: Some(r), .. } if r == "TCP_LISTEN_OVERFLOW"),
            )
            .count();
        if named {
            assert_eq!(
                i64::try_from(overflow_drops).expect("fits"),
                overflows,
                "TCP_LISTEN_OVERFLOW drop events vs TcpExt.ListenOverflows{ctx}"
            );
        } else {
            assert_eq!(overflow_drops, 0, "this kernel has no such reason{ctx}");
        }
    });
}

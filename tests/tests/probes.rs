//! What no tracepoint says plainly: keepalive probes on a dead path and
//! zero-window probes to a receiver that stopped reading, seen through the
//! socket timers, counted as the kernel counts them.

use std::{
    io::{BufRead, BufReader, Write},
    process::Stdio,
    time::Duration,
};

use tests::{
    checks::count,
    deadline::Deadline,
    netns::{NsPair, SERVER_V4},
    nft::{self, Rule},
    observe::observe,
    process::{kill_and_reap, wait_until},
    tracer::{Kind, Tracer},
    vsftpd::{Listen, Vsftpd, VsftpdConfig},
};

/// A client that opens the FTP control connection, says `ready`, waits for
/// `go` (the path is dead by then), turns on keepalive with short timers
/// (1 s idle, 1 s interval, 3 probes) and waits for the kernel to give up on
/// the connection. Keepalive starts only once the path is dead: a probe that
/// went out first would be answered and reset the probe count.
const KEEPALIVE_CLIENT: &str = r#"
import errno, socket, sys
s = socket.create_connection((sys.argv[1], 21), timeout=10)
s.recv(1024)
print("ready", flush=True)
sys.stdin.readline()
s.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
s.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE, 1)
s.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL, 1)
s.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT, 3)
s.settimeout(30)
try:
    s.recv(1024)
    print("no error")
except OSError as e:
    print(errno.errorcode.get(e.errno, e.errno))
"#;

#[test]
fn keepalive_probes_on_a_dead_path_then_etimedout() {
    tests::root_test("keepalive_probes_on_a_dead_path_then_etimedout", || {
        let net = NsPair::new();
        let _ftp = Vsftpd::start(&net.server, VsftpdConfig::new(Listen::V4(SERVER_V4)));
        let run = observe(&net, Tracer::start(), || {
            let mut client = net
                .client
                .command("python3")
                .args(["-c", KEEPALIVE_CLIENT, &SERVER_V4.to_string()])
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::inherit())
                .spawn()
                .expect("spawn the keepalive client");
            let mut out = BufReader::new(client.stdout.take().expect("piped"));
            let mut line = String::new();
            out.read_line(&mut line).expect("client output");
            assert_eq!(line.trim(), "ready");
            // The path dies: nothing in either direction from now on.
            nft::apply(&net.client, &Rule::blackhole(21));
            let mut go = client.stdin.take().expect("piped");
            go.write_all(b"go\n")
                .expect("tell the client the path is dead");
            drop(go);
            let status = wait_until(&mut client, Deadline::after(Duration::from_secs(30)));
            if status.is_none() {
                kill_and_reap(&mut client);
                panic!("the keepalive client did not finish");
            }
            line.clear();
            out.read_line(&mut line).expect("client verdict");
            // Let the server's side go too, so the namespaces fall quiet: the
            // path comes back and the server's session dies (its FIN meets a
            // client that has no socket left, which resets it).
            net.client
                .run_ok("nft", &["delete", "table", "inet", nft::TABLE]);
            let left = net.server.kill_all();
            assert!(
                left.is_empty(),
                "server processes survived SIGKILL: {left:?}"
            );
            line.trim().to_owned()
        });
        let ctx = run.context();
        assert_eq!(
            run.outcome, "ETIMEDOUT",
            "the kernel gave up on the dead peer{ctx}"
        );
        let probes = run.client_where(|e| matches!(e.kind, Kind::KeepaliveProbe { .. }));
        assert_eq!(
            count(&probes),
            run.client.get("TcpExt.TCPKeepAlive"),
            "keepalive_probe events vs TcpExt.TCPKeepAlive{ctx}"
        );
        assert!(
            count(&probes) >= 3,
            "three unanswered probes before the kernel gives up{ctx}"
        );
        let outs: Vec<u8> = probes
            .iter()
            .map(|e| match e.kind {
                Kind::KeepaliveProbe { probes_out } => probes_out,
                _ => unreachable!(),
            })
            .collect();
        assert!(
            outs.windows(2).all(|w| w[0] < w[1]),
            "probes_out counts up: {outs:?}{ctx}"
        );
        let timeout = run.client_where(
            |e| matches!(&e.kind, Kind::SocketError { errno, .. } if errno == "ETIMEDOUT"),
        );
        assert_eq!(
            count(&timeout),
            1,
            "one ETIMEDOUT on the control connection{ctx}"
        );
        assert!(
            timeout[0].ts > probes.last().expect("probes").ts,
            "the timeout comes after the probes{ctx}"
        );
    });
}

/// An FTP client whose data socket has a tiny receive buffer and which stops
/// reading after RETR: the server's window probes are all that moves.
const STALLED_CLIENT: &str = r#"
import socket, sys, time
host = sys.argv[1]
c = socket.create_connection((host, 21), timeout=10)
f = c.makefile("rb")
def reply():
    line = f.readline()
    while line[3:4] == b"-":
        line = f.readline()
    return line
def cmd(text):
    c.sendall(text.encode() + b"\r\n")
    return reply()
reply()
cmd("USER anonymous")
cmd("PASS x")
cmd("TYPE I")
r = cmd("PASV").decode()
nums = r[r.index("(") + 1:r.index(")")].split(",")
port = int(nums[4]) * 256 + int(nums[5])
d = socket.socket()
d.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 2048)
d.connect((host, port))
c.sendall(b"RETR big\r\n")
print("stalled", flush=True)
time.sleep(float(sys.argv[2]))
d.close()
c.close()
"#;

#[test]
fn zero_window_probes_to_a_stalled_receiver() {
    tests::root_test("zero_window_probes_to_a_stalled_receiver", || {
        let net = NsPair::new();
        let _ftp = Vsftpd::start(
            &net.server,
            VsftpdConfig::new(Listen::V4(SERVER_V4)).with_file("big", 1 << 20),
        );
        let run = observe(&net, Tracer::start(), || {
            let mut client = net
                .client
                .command("python3")
                .args(["-c", STALLED_CLIENT, &SERVER_V4.to_string(), "4"])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::inherit())
                .spawn()
                .expect("spawn the stalled client");
            let status = wait_until(&mut client, Deadline::after(Duration::from_secs(30)));
            if status.is_none() {
                kill_and_reap(&mut client);
                panic!("the stalled client did not finish");
            }
        });
        let ctx = run.context();
        let probes = run.server_where(|e| matches!(e.kind, Kind::ZeroWindowProbe { .. }));
        assert_eq!(
            count(&probes),
            run.server.get("TcpExt.TCPWinProbe"),
            "zero_window_probe events vs TcpExt.TCPWinProbe{ctx}"
        );
        assert!(
            count(&probes) > 0,
            "the stalled receiver drew no window probes{ctx}"
        );
        for probe in &probes {
            assert!(
                tests::vsftpd::PASSIVE_PORTS.contains(&probe.local_port),
                "window probes go out on the data connection: {}{ctx}",
                probe.line
            );
        }
    });
}

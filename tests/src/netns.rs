//! Network namespaces the tests create: a server and a client joined by a
//! veth pair, deleted (with every process left inside) on drop.

use std::{
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    os::unix::fs::MetadataExt,
    process::Command,
    time::Duration,
};

use crate::{
    counters::Counters,
    deadline::wait_for,
    process::{Daemon, Finished, run_ok},
    unique_name,
};

/// How long a server may take to listen once started.
pub const LISTEN_TIMEOUT: Duration = Duration::from_secs(10);

/// Documentation addresses only (RFC 5737, RFC 3849).
pub const SERVER_V4: IpAddr = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1));
pub const CLIENT_V4: IpAddr = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 2));
pub const SERVER_V6: IpAddr = IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1));
pub const CLIENT_V6: IpAddr = IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 2));

/// The veth end's name inside each namespace.
pub const DEV: &str = "veth0";

/// How long the sockets of a finished exchange may take to settle.
pub const QUIET_TIMEOUT: Duration = Duration::from_secs(20);

/// A named network namespace (`/run/netns/<name>`).
pub struct NetNs {
    name: String,
    inode: u64,
}

impl NetNs {
    /// `ip netns add <name>` and bring up its loopback.
    #[track_caller]
    pub fn create(name: &str) -> Self {
        run_ok(Command::new("ip").args(["netns", "add", name]));
        let path = format!("/run/netns/{name}");
        let inode = std::fs::metadata(&path)
            .unwrap_or_else(|e| panic!("cannot stat {path}: {e}"))
            .ino();
        let ns = Self {
            name: name.to_owned(),
            inode,
        };
        ns.ip(&["link", "set", "lo", "up"]);
        ns
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// The namespace's inode number: what ftptrace prints as `netns`.
    pub fn inode(&self) -> u64 {
        self.inode
    }

    /// `ip netns exec <name> <program>`: add arguments and run it. `ip netns
    /// exec` execs the program in its own process, so the child's pid is the
    /// program's pid.
    pub fn command(&self, program: &str) -> Command {
        let mut command = Command::new("ip");
        command.args(["netns", "exec", &self.name, program]);
        command
    }

    /// Runs `program args` inside, panicking unless it succeeds.
    #[track_caller]
    pub fn run_ok(&self, program: &str, args: &[&str]) -> Finished {
        run_ok(self.command(program).args(args))
    }

    /// `ip -n <name> args`.
    #[track_caller]
    pub fn ip(&self, args: &[&str]) -> Finished {
        run_ok(Command::new("ip").args(["-n", &self.name]).args(args))
    }

    /// Sets a sysctl of this namespace (e.g. `net.ipv4.tcp_syn_retries`).
    #[track_caller]
    pub fn sysctl(&self, key: &str, value: &str) {
        self.run_ok("sysctl", &["-qw", &format!("{key}={value}")]);
    }

    /// The kernel's SNMP and netstat counters of this namespace.
    #[track_caller]
    pub fn counters(&self) -> Counters {
        Counters::read(self)
    }

    /// TCP sockets in a state other than LISTEN and TIME-WAIT, as `ss` shows them.
    #[track_caller]
    pub fn busy_tcp_sockets(&self) -> Vec<String> {
        busy_sockets(&self.run_ok("ss", &["-Htan"]).stdout)
    }

    /// Whether some TCP socket in this namespace listens on `port`.
    #[track_caller]
    pub fn listening_on(&self, port: u16) -> bool {
        let out = self.run_ok("ss", &["-Htln"]).stdout;
        out.lines().any(|line| {
            line.split_whitespace()
                .nth(3)
                .and_then(|local| local.rsplit_once(':'))
                .is_some_and(|(_, p)| p == port.to_string())
        })
    }

    /// Waits (at most [`LISTEN_TIMEOUT`]) until `daemon`, just started in
    /// this namespace, listens on `port`; fails at once if it exits.
    #[track_caller]
    pub fn wait_listening(&self, daemon: &mut Daemon, port: u16, name: &str) {
        wait_for(
            &format!("{name} to listen on port {port} in {}", self.name()),
            LISTEN_TIMEOUT,
            || {
                daemon.assert_running();
                if self.listening_on(port) {
                    Ok(())
                } else {
                    Err("not listening".into())
                }
            },
        );
    }

    /// Bytes received but not yet read on the established sockets whose
    /// local port is `port` (`ss` Recv-Q).
    #[track_caller]
    pub fn unread_bytes_on(&self, port: u16) -> u64 {
        let out = self
            .run_ok(
                "ss",
                &[
                    "-Htn",
                    "state",
                    "established",
                    "sport",
                    "=",
                    &format!(":{port}"),
                ],
            )
            .stdout;
        out.lines()
            .filter_map(|line| line.split_whitespace().next()?.parse::<u64>().ok())
            .sum()
    }

    /// Sends `signal` to every process in the namespace.
    pub fn signal_all(&self, signal: i32) {
        for pid in self.pids() {
            // SAFETY: kill(2) on a pid read from this namespace, which only
            // holds processes this test started.
            unsafe { libc::kill(pid, signal) };
        }
    }

    /// Pids of the processes in this namespace.
    fn pids(&self) -> Vec<i32> {
        let out = crate::process::run(
            Command::new("ip").args(["netns", "pids", &self.name]),
            crate::process::COMMAND_TIMEOUT,
        );
        out.stdout
            .split_whitespace()
            .filter_map(|p| p.parse().ok())
            .collect()
    }
}

impl NetNs {
    /// SIGKILLs every process in the namespace (vsftpd and its sessions,
    /// clients); returns the pids still there after 5 s, never panics.
    pub fn kill_all(&self) -> Vec<i32> {
        kill_until_empty(|| {
            let pids = self.pids();
            for &pid in &pids {
                // SAFETY: kill(2) on a pid read from this namespace, which
                // only holds processes this test started.
                unsafe { libc::kill(pid, libc::SIGKILL) };
            }
            pids
        })
    }
}

impl Drop for NetNs {
    /// Kills what the test left running inside (vsftpd's session processes,
    /// servers, clients), then deletes the namespace.
    fn drop(&mut self) {
        let name = self.name.clone();
        let pids = self.kill_all();
        if !pids.is_empty() {
            eprintln!("netns {name}: pids {pids:?} still there after SIGKILL");
        }
        let _ = crate::process::run(
            Command::new("ip").args(["netns", "del", &name]),
            crate::process::COMMAND_TIMEOUT,
        );
    }
}

/// Calls `probe` until it returns an empty list, for at most 5 s; never
/// panics (it runs in drop): returns the last list.
fn kill_until_empty(mut probe: impl FnMut() -> Vec<i32>) -> Vec<i32> {
    let deadline = crate::deadline::Deadline::after(Duration::from_secs(5));
    loop {
        let left = probe();
        if left.is_empty() || deadline.expired() {
            return left;
        }
        std::thread::sleep(crate::deadline::POLL_INTERVAL);
    }
}

/// RPS mask of the highest-numbered CPU (CPU 1 on the 2-CPU CI host, CPU 0
/// in a 1-CPU guest).
fn last_cpu_mask() -> u64 {
    let cpus = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(64);
    1 << (cpus - 1)
}

/// Lines of `ss -Htan` output whose state is neither LISTEN nor TIME-WAIT.
pub fn busy_sockets(ss_output: &str) -> Vec<String> {
    ss_output
        .lines()
        .filter(|line| {
            !matches!(
                line.split_whitespace().next(),
                None | Some("LISTEN" | "TIME-WAIT")
            )
        })
        .map(str::to_owned)
        .collect()
}

/// A server namespace and a client namespace joined by a veth pair with
/// offloads off and one segment per skb (so per-segment kernel counters and
/// per-skb events agree) and no reordering, addressed with IPv4 and IPv6 documentation
/// addresses. The client gives up a connect after two SYN retransmits
/// (`tcp_syn_retries=2`, about 7 s).
pub struct NsPair {
    pub server: NetNs,
    pub client: NetNs,
    /// The NAT router between them ([`NsPair::behind_nat`]), if any.
    pub router: Option<NetNs>,
}

/// Counters of both namespaces at one moment.
pub struct Snapshot {
    pub server: Counters,
    pub client: Counters,
}

/// [`NsPair::behind_nat`]'s addresses: the router's public address (where
/// clients reach the server), the client's, and the server's inside one
/// (private, as behind a real NAT; it exists only inside the namespaces).
pub const NAT_PUBLIC_V4: IpAddr = IpAddr::V4(Ipv4Addr::new(203, 0, 113, 1));
pub const NAT_CLIENT_V4: IpAddr = IpAddr::V4(Ipv4Addr::new(203, 0, 113, 2));
pub const NAT_INSIDE_V4: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 2));
const NAT_ROUTER_INSIDE_V4: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1));

/// The router's nftables table ([`NsPair::behind_nat`]).
pub const NAT_TABLE: &str = "ftptrace_nat";

/// What the NAT router of [`NsPair::behind_nat`] forwards inside.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Forward {
    /// Port 21 only: a data connection to the public address meets the
    /// router itself.
    ControlOnly,
    /// Port 21 and the passive range: a client that substitutes the
    /// public address for the announced one gets through.
    ControlAndPassive,
}

impl NsPair {
    #[track_caller]
    pub fn new() -> Self {
        let server = NetNs::create(&unique_name("srv"));
        let client = NetNs::create(&unique_name("cli"));
        veth(&server, DEV, &client, DEV);
        for (ns, v4, v6) in [
            (&server, SERVER_V4, SERVER_V6),
            (&client, CLIENT_V4, CLIENT_V6),
        ] {
            ns.ip(&["addr", "add", &format!("{v4}/24"), "dev", DEV]);
            ns.ip(&["addr", "add", &format!("{v6}/64"), "dev", DEV, "nodad"]);
            prepare(ns, DEV);
        }
        client.sysctl("net.ipv4.tcp_syn_retries", "2");
        for ns in [&server, &client] {
            wait_up(ns, DEV);
        }
        Self {
            server,
            client,
            router: None,
        }
    }

    /// The server behind a NAT router: the client at [`NAT_CLIENT_V4`]
    /// reaches it at the router's [`NAT_PUBLIC_V4`], which forwards
    /// (DNAT) what `forward` says to the server's [`NAT_INSIDE_V4`] and
    /// drops anything else sent to the inside (it is not routable from
    /// outside). IPv4 only; every rule counts what it hit.
    #[track_caller]
    pub fn behind_nat(forward: Forward) -> Self {
        let server = NetNs::create(&unique_name("srv"));
        let client = NetNs::create(&unique_name("cli"));
        let router = NetNs::create(&unique_name("nat"));
        const OUTSIDE: &str = "veth0";
        const INSIDE: &str = "veth1";
        veth(&client, DEV, &router, OUTSIDE);
        veth(&server, DEV, &router, INSIDE);
        for (ns, dev, addr) in [
            (&client, DEV, NAT_CLIENT_V4),
            (&router, OUTSIDE, NAT_PUBLIC_V4),
            (&router, INSIDE, NAT_ROUTER_INSIDE_V4),
            (&server, DEV, NAT_INSIDE_V4),
        ] {
            ns.ip(&["addr", "add", &format!("{addr}/24"), "dev", dev]);
            prepare(ns, dev);
        }
        for (ns, dev) in [
            (&client, DEV),
            (&router, OUTSIDE),
            (&router, INSIDE),
            (&server, DEV),
        ] {
            wait_up(ns, dev);
        }
        client.ip(&["route", "add", "default", "via", &NAT_PUBLIC_V4.to_string()]);
        server.ip(&[
            "route",
            "add",
            "default",
            "via",
            &NAT_ROUTER_INSIDE_V4.to_string(),
        ]);
        router.sysctl("net.ipv4.ip_forward", "1");
        client.sysctl("net.ipv4.tcp_syn_retries", "2");
        let ports = match forward {
            Forward::ControlOnly => "21".to_owned(),
            Forward::ControlAndPassive => format!(
                "{{ 21, {}-{} }}",
                crate::vsftpd::PASSIVE_PORTS.start(),
                crate::vsftpd::PASSIVE_PORTS.end()
            ),
        };
        let rules = format!(
            "table ip {NAT_TABLE} {{\n\
             chain prerouting {{ type nat hook prerouting priority dstnat; policy accept;\n\
             iifname \"{OUTSIDE}\" ip daddr {NAT_PUBLIC_V4} tcp dport {ports} counter dnat to {NAT_INSIDE_V4}\n}}\n\
             chain forward {{ type filter hook forward priority filter; policy accept;\n\
             iifname \"{OUTSIDE}\" ct status dnat accept\n\
             iifname \"{OUTSIDE}\" counter drop\n}}\n}}\n"
        );
        crate::nft::load(&router, &rules);
        Self {
            server,
            client,
            router: Some(router),
        }
    }

    #[track_caller]
    pub fn snapshot(&self) -> Snapshot {
        Snapshot {
            server: self.server.counters(),
            client: self.client.counters(),
        }
    }

    /// Waits until neither namespace has a TCP socket other than LISTEN and
    /// TIME-WAIT: nothing left to send, retransmit or time out.
    #[track_caller]
    pub fn wait_quiet(&self) {
        wait_for(
            "both namespaces to have only LISTEN and TIME-WAIT sockets",
            QUIET_TIMEOUT,
            || {
                let busy: Vec<String> = [&self.server, &self.client]
                    .iter()
                    .flat_map(|ns| {
                        ns.busy_tcp_sockets()
                            .into_iter()
                            .map(move |line| format!("{}: {line}", ns.name))
                    })
                    .collect();
                if busy.is_empty() {
                    Ok(())
                } else {
                    Err(busy.join("; "))
                }
            },
        );
    }
}

/// A veth pair, `a_dev` in `a` and `b_dev` in `b`.
#[track_caller]
fn veth(a: &NetNs, a_dev: &str, b: &NetNs, b_dev: &str) {
    a.ip(&[
        "link", "add", a_dev, "type", "veth", "peer", "name", b_dev, "netns", &b.name,
    ]);
}

/// Offloads off, one segment per skb, arrivals on one CPU, up.
#[track_caller]
fn prepare(ns: &NetNs, dev: &str) {
    ns.run_ok(
        "ethtool",
        &["-K", dev, "tso", "off", "gso", "off", "gro", "off"],
    );
    // TCP builds multi-segment skbs whatever the device's offloads
    // (software GSO is always on since Linux 4.13); the retransmit
    // tracepoint fires per skb while Tcp.RetransSegs counts segments.
    // One segment per skb makes them count the same thing.
    ns.ip(&["link", "set", dev, "gso_max_segs", "1"]);
    // veth hands packets to the backlog of the CPU that sent them:
    // a flow sent from two CPUs arrives reordered, and reordering
    // means spurious fast retransmits on a clean link. Steering every
    // arriving packet to one CPU keeps the order. The last CPU, not 0: on the
    // CI host, tracepoint hits in softirq taken while the VM's init
    // (a tokio thread, mostly on CPU 0) was current were not handed to
    // BPF programs at all, and nothing counted them (see issue 3).
    ns.run_ok(
        "sh",
        &[
            "-c",
            &format!(
                "echo {:x} > /sys/class/net/{dev}/queues/rx-0/rps_cpus",
                last_cpu_mask()
            ),
        ],
    );
    ns.ip(&["link", "set", dev, "up"]);
}

/// Until the kernel sees the carrier, the device's qdisc drops every
/// packet: a first SYN sent too early would be retransmitted.
#[track_caller]
fn wait_up(ns: &NetNs, dev: &str) {
    wait_for(
        &format!("{dev} up in {}", ns.name),
        Duration::from_secs(10),
        || {
            let state = ns
                .run_ok("cat", &[&format!("/sys/class/net/{dev}/operstate")])
                .stdout;
            let qdisc = ns.ip(&["link", "show", dev]).stdout;
            if state.trim() == "up" && !qdisc.contains("qdisc noop") {
                Ok(())
            } else {
                Err(format!("operstate {}, {}", state.trim(), qdisc.trim()))
            }
        },
    );
}

impl Default for NsPair {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn busy_sockets_skips_listen_and_time_wait() {
        let ss = "LISTEN    0 32  192.0.2.1:21     0.0.0.0:*\n\
                  TIME-WAIT 0 0   192.0.2.1:30004  192.0.2.2:45976\n\
                  ESTAB     0 0   192.0.2.1:21     192.0.2.2:57818\n\
                  FIN-WAIT-2 0 0  192.0.2.1:21     192.0.2.2:57818\n";
        assert_eq!(
            busy_sockets(ss),
            [
                "ESTAB     0 0   192.0.2.1:21     192.0.2.2:57818",
                "FIN-WAIT-2 0 0  192.0.2.1:21     192.0.2.2:57818"
            ]
        );
    }

    #[test]
    fn addresses_are_documentation_addresses() {
        assert_eq!(SERVER_V4.to_string(), "192.0.2.1");
        assert_eq!(CLIENT_V6.to_string(), "2001:db8::2");
    }
}

//! Faults made with real nftables rules in one namespace (table
//! `inet ftptrace_test`). Every rule counts what it hit, so a test can prove
//! the fault happened.

use std::{fmt::Write as _, io::Write as _, ops::RangeInclusive, process::Stdio};

use crate::{
    deadline::Deadline,
    netns::NetNs,
    process::{COMMAND_TIMEOUT, describe, read_in_background, wait_until},
};

pub const TABLE: &str = "ftptrace_test";

/// Which base chain a rule goes into.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Hook {
    Input,
    Output,
}

impl Hook {
    fn name(self) -> &'static str {
        match self {
            Self::Input => "input",
            Self::Output => "output",
        }
    }
}

/// One nftables rule; the verdict comes last, a `counter` goes before it.
#[derive(Clone, Debug)]
pub struct Rule {
    pub hook: Hook,
    /// Match expressions, e.g. `tcp dport 30000-30009`.
    pub matches: String,
    /// Verdict or action, e.g. `drop`, `reject with tcp reset`.
    pub verdict: String,
}

fn range(ports: &RangeInclusive<u16>) -> String {
    format!("{}-{}", ports.start(), ports.end())
}

impl Rule {
    /// Drops `percent`% (at random) of the non-SYN TCP segments from source
    /// ports `sport`, as they arrive (use in the receiver's namespace).
    pub fn random_loss_from(sport: &RangeInclusive<u16>, percent: u32) -> Self {
        Self {
            hook: Hook::Input,
            matches: format!(
                "tcp sport {} tcp flags & syn == 0 numgen random mod 100 < {percent}",
                range(sport)
            ),
            verdict: "drop".into(),
        }
    }

    /// Drops arriving SYNs (not SYN-ACKs) to `dport` (use in the server's namespace).
    pub fn drop_syn_to(dport: &RangeInclusive<u16>) -> Self {
        Self {
            hook: Hook::Input,
            matches: format!("tcp dport {} tcp flags & (syn | ack) == syn", range(dport)),
            verdict: "drop".into(),
        }
    }

    /// Answers SYNs to `dport` with a reset, as a firewall's `reject` does.
    pub fn reset_syn_to(dport: &RangeInclusive<u16>) -> Self {
        Self {
            hook: Hook::Input,
            matches: format!("tcp dport {} tcp flags & (syn | ack) == syn", range(dport)),
            verdict: "reject with tcp reset".into(),
        }
    }

    /// Drops every TCP segment of connections to the peer's `port`, both
    /// ways: a dead path (use in the client's namespace).
    pub fn blackhole(port: u16) -> [Self; 2] {
        [
            Self {
                hook: Hook::Input,
                matches: format!("tcp sport {port}"),
                verdict: "drop".into(),
            },
            Self {
                hook: Hook::Output,
                matches: format!("tcp dport {port}"),
                verdict: "drop".into(),
            },
        ]
    }

    /// Sends this host's TCP packets, resets excepted, with IPv4 TTL `ttl`:
    /// as if they crossed a router that the resets this host forges did not
    /// (use with [`Rule::reset_data_from`]).
    pub fn ttl_except_resets(ttl: u8) -> Self {
        Self {
            hook: Hook::Output,
            matches: "meta l4proto tcp tcp flags & rst == 0".into(),
            verdict: format!("ip ttl set {ttl}"),
        }
    }

    /// Answers arriving segments from `sport` that carry more than `min_len`
    /// bytes of packet (data, not bare ACKs) with a forged reset: the sender
    /// gets a RST that looks like it came from this host, while this host's
    /// socket never sees the segment.
    pub fn reset_data_from(sport: &RangeInclusive<u16>, min_len: u32) -> Self {
        Self {
            hook: Hook::Input,
            matches: format!("tcp sport {} meta length > {min_len}", range(sport)),
            verdict: "reject with tcp reset".into(),
        }
    }
}

/// The ruleset text for `rules`.
pub fn render(rules: &[Rule]) -> String {
    let mut text = format!("table inet {TABLE} {{\n");
    for hook in [Hook::Input, Hook::Output] {
        let _ = writeln!(
            text,
            "  chain {0} {{\n    type filter hook {0} priority 0; policy accept;",
            hook.name()
        );
        for rule in rules.iter().filter(|r| r.hook == hook) {
            let _ = writeln!(text, "    {} counter {}", rule.matches, rule.verdict);
        }
        text.push_str("  }\n");
    }
    text.push_str("}\n");
    text
}

/// A middlebox on the data path, in the client's namespace: data segments
/// (longer than any bare ACK) from the server's passive ports never reach
/// the client, and the server gets a reset "from the client" instead. The
/// client's own packets leave with TTL 63, the forged resets with the
/// stack's 64: a device one hop nearer than the peer.
pub fn forge_resets_on_data(client: &NetNs) {
    apply(
        client,
        &[
            Rule::reset_data_from(&crate::vsftpd::PASSIVE_PORTS, 200),
            Rule::ttl_except_resets(63),
        ],
    );
}

/// Loads `rules` into `ns` with `nft -f -`.
#[track_caller]
pub fn apply(ns: &NetNs, rules: &[Rule]) {
    load(ns, &render(rules));
}

/// Loads a ruleset text into `ns` with `nft -f -`.
#[track_caller]
pub fn load(ns: &NetNs, text: &str) {
    let mut command = ns.command("nft");
    command.args(["-f", "-"]);
    let described = describe(&command);
    let mut child = command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {described}: {e}"));
    let deadline = Deadline::after(COMMAND_TIMEOUT);
    let stderr = read_in_background(child.stderr.take());
    let _stdout = read_in_background(child.stdout.take());
    {
        let mut stdin = child.stdin.take().expect("piped stdin");
        stdin
            .write_all(text.as_bytes())
            .unwrap_or_else(|e| panic!("cannot write to {described}: {e}"));
    }
    let status = wait_until(&mut child, deadline);
    let stderr = stderr.collect(deadline);
    assert!(
        status.is_some_and(|s| s.success()),
        "{described} failed ({status:?}): {stderr}\n--- ruleset ---\n{text}"
    );
}

/// Packets each rule of the table in `ns` has hit, in rule order (input
/// chain first).
#[track_caller]
pub fn hits(ns: &NetNs) -> Vec<u64> {
    let listing = ns.run_ok("nft", &["list", "table", "inet", TABLE]).stdout;
    parse_hits(&listing)
}

/// The `counter packets N` numbers of an `nft list` output, in order.
pub fn parse_hits(listing: &str) -> Vec<u64> {
    listing
        .lines()
        .filter_map(|line| {
            let rest = line.split("counter packets ").nth(1)?;
            rest.split_whitespace().next()?.parse().ok()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn render_puts_rules_in_their_chains_with_counters() {
        let text = render(&[Rule::drop_syn_to(&(30000..=30009))]);
        assert_eq!(
            text,
            "table inet ftptrace_test {\n  chain input {\n    type filter hook input priority 0; policy accept;\n    \
             tcp dport 30000-30009 tcp flags & (syn | ack) == syn counter drop\n  }\n  \
             chain output {\n    type filter hook output priority 0; policy accept;\n  }\n}\n"
        );
    }

    #[test]
    fn parse_hits_reads_counters_in_order() {
        let listing = "table inet ftptrace_test {\n\tchain input {\n\t\t\
            tcp dport 30000-30009 counter packets 3 bytes 180 drop\n\t\t\
            tcp sport 21 counter packets 0 bytes 0 drop\n\t}\n}\n";
        assert_eq!(parse_hits(listing), [3, 0]);
    }
}

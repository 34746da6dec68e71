//! The truth: the kernel's own per-namespace counters from `/proc/net/snmp`
//! and `/proc/net/netstat`, keyed like `Tcp.RetransSegs` or
//! `TcpExt.TCPSynRetrans`.

use std::collections::BTreeMap;

use crate::netns::NetNs;

/// Counter values at one moment in one namespace.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Counters(BTreeMap<String, i64>);

impl Counters {
    /// Reads both files inside `ns` (`ip netns exec NS cat ...`).
    #[track_caller]
    pub fn read(ns: &NetNs) -> Self {
        let mut all = BTreeMap::new();
        for file in ["/proc/net/snmp", "/proc/net/netstat"] {
            let text = ns.run_ok("cat", &[file]).stdout;
            let parsed = parse(&text).unwrap_or_else(|e| panic!("{file} in {}: {e}", ns.name()));
            all.extend(parsed.0);
        }
        Self(all)
    }

    /// The value of `key`; panics on a name the kernel does not have, so a
    /// typo cannot pass as zero.
    #[track_caller]
    pub fn get(&self, key: &str) -> i64 {
        *self
            .0
            .get(key)
            .unwrap_or_else(|| panic!("no kernel counter {key}"))
    }

    /// `later - self` for every counter.
    pub fn delta(&self, later: &Self) -> Delta {
        Delta(
            later
                .0
                .iter()
                .map(|(key, value)| (key.clone(), value - self.0.get(key).copied().unwrap_or(0)))
                .collect(),
        )
    }
}

/// How much each counter moved between two snapshots.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Delta(BTreeMap<String, i64>);

impl Delta {
    /// The change of `key`; panics on an unknown counter name.
    #[track_caller]
    pub fn get(&self, key: &str) -> i64 {
        *self
            .0
            .get(key)
            .unwrap_or_else(|| panic!("no kernel counter {key}"))
    }

    /// Only the counters that moved, as `key=+n` lines (for failure messages).
    pub fn nonzero(&self) -> String {
        self.0
            .iter()
            .filter(|&(_, &v)| v != 0)
            .map(|(k, v)| format!("{k}={v:+}"))
            .collect::<Vec<_>>()
            .join(" ")
    }
}

/// Parses the `Prefix: Name1 Name2 ...` / `Prefix: v1 v2 ...` line pairs of
/// `/proc/net/snmp` and `/proc/net/netstat`.
pub fn parse(text: &str) -> Result<Counters, String> {
    let mut counters = BTreeMap::new();
    let mut lines = text.lines().filter(|l| !l.trim().is_empty());
    while let Some(header) = lines.next() {
        let values = lines
            .next()
            .ok_or_else(|| format!("header without values: {header:?}"))?;
        let (prefix, names) = header
            .split_once(':')
            .ok_or_else(|| format!("no prefix in {header:?}"))?;
        let (value_prefix, numbers) = values
            .split_once(':')
            .ok_or_else(|| format!("no prefix in {values:?}"))?;
        if prefix != value_prefix {
            return Err(format!(
                "header {prefix:?} followed by values of {value_prefix:?}"
            ));
        }
        let names: Vec<&str> = names.split_whitespace().collect();
        let numbers: Vec<&str> = numbers.split_whitespace().collect();
        if names.len() != numbers.len() {
            return Err(format!(
                "{prefix}: {} names but {} values",
                names.len(),
                numbers.len()
            ));
        }
        for (name, number) in names.into_iter().zip(numbers) {
            let value = number
                .parse()
                .map_err(|e| format!("{prefix}.{name} = {number:?}: {e}"))?;
            counters.insert(format!("{prefix}.{name}"), value);
        }
    }
    Ok(Counters(counters))
}

#[cfg(test)]
mod tests {
    use super::*;

    const SNMP: &str = "\
Ip: Forwarding DefaultTTL InReceives
Ip: 1 64 1234
Tcp: RtoAlgorithm RtoMin RtoMax MaxConn ActiveOpens PassiveOpens RetransSegs
Tcp: 1 200 120000 -1 7 2 0
";

    #[test]
    fn parse_pairs_header_and_value_lines() {
        let counters = parse(SNMP).unwrap();
        assert_eq!(counters.get("Tcp.ActiveOpens"), 7);
        assert_eq!(counters.get("Tcp.MaxConn"), -1);
        assert_eq!(counters.get("Ip.InReceives"), 1234);
    }

    #[test]
    fn delta_subtracts_per_key() {
        let before = parse(SNMP).unwrap();
        let after = parse(&SNMP.replace("1 200 120000 -1 7 2 0", "1 200 120000 -1 9 2 5")).unwrap();
        let delta = before.delta(&after);
        assert_eq!(delta.get("Tcp.ActiveOpens"), 2);
        assert_eq!(delta.get("Tcp.PassiveOpens"), 0);
        assert_eq!(delta.nonzero(), "Tcp.ActiveOpens=+2 Tcp.RetransSegs=+5");
    }

    #[test]
    #[should_panic(expected = "no kernel counter Tcp.RetransSeg")]
    fn unknown_counter_names_panic() {
        parse(SNMP).unwrap().get("Tcp.RetransSeg");
    }

    #[test]
    fn mismatched_lines_are_errors() {
        assert!(parse("Tcp: A B\nTcp: 1\n").is_err());
        assert!(parse("Tcp: A\nUdp: 1\n").is_err());
        assert!(parse("Tcp: A\n").is_err());
    }
}

//! The names behind addresses, from the DNS answers sockets on this host
//! received: a client's session is named by the name it resolved to the
//! server's address just before it dialled it. Per network namespace (a
//! lab's or a container's resolver answers for it alone), for as long as
//! the answer said, within bounds: a forged answer cannot pin a name for
//! hours, and a session that starts a little late still finds its name.

use std::{collections::BTreeSet, net::IpAddr};

use foldhash::HashMap;

use crate::{dns::Answer, event::Name};

/// Addresses named at once. Past it, the entry that expires soonest goes
/// (counted): a flood of answers for random names costs a bounded table.
pub const MAX_NAMED: usize = 4096;
/// How long an answer names its addresses, whatever TTL it gave.
const MIN_KEEP_NS: u64 = 30_000_000_000;
const MAX_KEEP_NS: u64 = 3_600_000_000_000;

type Key = (Option<u32>, IpAddr);

#[derive(Debug, Default)]
pub struct DnsNames {
    named: HashMap<Key, (Name, u64)>,
    /// (until, key): the soonest to expire first.
    expiry: BTreeSet<(u64, Key)>,
    /// Names pushed out before they expired because the table was full.
    pub forgotten: u64,
}

impl DnsNames {
    /// Learns what an answer received in `netns` at `now_ns` says.
    pub fn learn(&mut self, netns: Option<u32>, answer: &Answer, now_ns: u64) {
        let keep = (u64::from(answer.ttl_s) * 1_000_000_000).clamp(MIN_KEEP_NS, MAX_KEEP_NS);
        let until = now_ns.saturating_add(keep);
        for addr in &answer.addrs {
            let key = (netns, addr.to_canonical());
            if let Some((_, old)) = self.named.remove(&key) {
                self.expiry.remove(&(old, key));
            } else if self.named.len() >= MAX_NAMED
                && let Some((soonest, gone)) = self.expiry.pop_first()
            {
                self.named.remove(&gone);
                if soonest > now_ns {
                    self.forgotten += 1;
                }
            }
            self.named
                .insert(key, (Name::from(answer.name.as_str()), until));
            self.expiry.insert((until, key));
        }
    }

    /// The name `addr` was given in `netns`, if an answer still says so.
    pub fn name_of(&self, netns: Option<u32>, addr: IpAddr, now_ns: u64) -> Option<Name> {
        let (name, until) = self.named.get(&(netns, addr.to_canonical()))?;
        (*until > now_ns).then(|| name.clone())
    }

    pub fn len(&self) -> usize {
        self.named.len()
    }

    pub fn is_empty(&self) -> bool {
        self.named.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(name: &str, addrs: &[&str], ttl_s: u32) -> Answer {
        Answer {
            name: name.to_owned(),
            addrs: addrs.iter().map(|a| a.parse().unwrap()).collect(),
            ttl_s,
        }
    }

    const S: u64 = 1_000_000_000;

    #[test]
    fn an_answer_names_its_addresses_in_its_namespace_for_a_while() {
        let mut names = DnsNames::default();
        names.learn(
            Some(7),
            &answer("ftp.example.test", &["192.0.2.1"], 0),
            10 * S,
        );
        let addr: IpAddr = "192.0.2.1".parse().unwrap();
        assert_eq!(
            names.name_of(Some(7), addr, 11 * S).as_deref(),
            Some("ftp.example.test")
        );
        // Another namespace's resolver said nothing of it.
        assert_eq!(names.name_of(Some(8), addr, 11 * S), None);
        // A TTL of 0 still names it for the minimum, then no more.
        assert!(names.name_of(Some(7), addr, 39 * S).is_some());
        assert_eq!(names.name_of(Some(7), addr, 41 * S), None);
        // A newer answer renames it.
        names.learn(
            Some(7),
            &answer("mirror.example.test", &["192.0.2.1"], 600),
            50 * S,
        );
        assert_eq!(
            names.name_of(Some(7), addr, 51 * S).as_deref(),
            Some("mirror.example.test")
        );
        assert_eq!(names.len(), 1);
    }

    #[test]
    fn the_table_is_bounded_and_counts_what_it_pushes_out() {
        let mut names = DnsNames::default();
        for i in 0..(MAX_NAMED as u32 + 10) {
            let addr = std::net::Ipv4Addr::from(0x0a00_0000 + i).to_string();
            names.learn(
                None,
                &answer("x.example.test", &[&addr], 600),
                S + u64::from(i),
            );
        }
        assert_eq!(names.len(), MAX_NAMED);
        assert_eq!(names.forgotten, 10);
        // The first ones went: they expired soonest.
        assert_eq!(
            names.name_of(None, "10.0.0.0".parse().unwrap(), 2 * S),
            None
        );
    }
}

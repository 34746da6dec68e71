//! The Community ID of a TCP connection (version 1 of the public "Community
//! ID Flow Hashing" spec): `1:` and the base64 of SHA-1 over a seed, both
//! addresses, the protocol and both ports, the lower (address, port) end
//! first. Zeek, Suricata, Elastic and Splunk compute the same string for
//! the same flow, and so does ftptrace at the connection's other end on
//! another host: lines from all of them join on it.

use std::net::{IpAddr, SocketAddr};

use base64::Engine as _;
use sha1::{Digest as _, Sha1};

/// The Community IDs of the connections lines were written for lately, by
/// their two ends: a connection's events come in runs, and a SHA-1 per
/// event line was a fifth of the line's cost. Direct-mapped: a slot holds
/// the last connection that hashed to it.
pub struct Recent {
    slots: Vec<Option<(SocketAddr, SocketAddr, String)>>,
    hasher: foldhash::fast::FixedState,
}

/// Slots in [`Recent`]: more than the connections a busy second's events
/// interleave.
const RECENT_SLOTS: usize = 1024;

impl Default for Recent {
    fn default() -> Self {
        Self {
            slots: vec![None; RECENT_SLOTS],
            hasher: foldhash::fast::FixedState::with_seed(0),
        }
    }
}

impl Recent {
    /// [`tcp`] of `a` and `b` (seed 0), computed once while it stays.
    pub fn tcp(&mut self, a: SocketAddr, b: SocketAddr) -> &str {
        use std::hash::BuildHasher as _;
        let slot = self.hasher.hash_one((a, b)) as usize % RECENT_SLOTS;
        let entry = &mut self.slots[slot];
        if !matches!(entry, Some((x, y, _)) if *x == a && *y == b) {
            *entry = Some((a, b, tcp(a, b, 0)));
        }
        match entry {
            Some((_, _, id)) => id,
            None => unreachable!("filled above"),
        }
    }
}

/// IANA's protocol number of TCP.
const TCP: u8 = 6;

/// The Community ID of the TCP connection between `a` and `b` (either
/// order gives the same), with `seed` (0 unless every monitor that joins
/// on it agreed on another).
pub fn tcp(a: SocketAddr, b: SocketAddr, seed: u16) -> String {
    flow(a, b, TCP, seed)
}

fn flow(a: SocketAddr, b: SocketAddr, proto: u8, seed: u16) -> String {
    let (a_ip, b_ip) = (Octets::of(a.ip()), Octets::of(b.ip()));
    let ((first, first_port), (second, second_port)) =
        if (a_ip.bytes(), a.port()) <= (b_ip.bytes(), b.port()) {
            ((a_ip, a.port()), (b_ip, b.port()))
        } else {
            ((b_ip, b.port()), (a_ip, a.port()))
        };
    let mut hash = Sha1::new();
    hash.update(seed.to_be_bytes());
    hash.update(first.bytes());
    hash.update(second.bytes());
    hash.update([proto, 0]);
    hash.update(first_port.to_be_bytes());
    hash.update(second_port.to_be_bytes());
    let digest = hash.finalize();
    let mut id = String::with_capacity(30);
    id.push_str("1:");
    base64::engine::general_purpose::STANDARD.encode_string(digest, &mut id);
    id
}

/// An address's bytes in network order: 4 or 16 of them (every event line
/// hashes two: no allocation).
#[derive(Clone, Copy)]
struct Octets {
    bytes: [u8; 16],
    len: usize,
}

impl Octets {
    fn of(ip: IpAddr) -> Self {
        // An IPv4 peer of an IPv6 socket (`::ffff:192.0.2.1`) is IPv4 on
        // the wire: the hash is the wire's.
        match ip.to_canonical() {
            IpAddr::V4(v4) => {
                let mut bytes = [0; 16];
                bytes[..4].copy_from_slice(&v4.octets());
                Self { bytes, len: 4 }
            }
            IpAddr::V6(v6) => Self {
                bytes: v6.octets(),
                len: 16,
            },
        }
    }

    fn bytes(&self) -> &[u8] {
        &self.bytes[..self.len]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sock(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    /// The spec's own baselines (`baseline/baseline_deflt.json` and
    /// `baseline_seed1.json`), each flow in both directions.
    #[test]
    fn the_specs_test_vectors() {
        let vectors = [
            (
                "[2001:470:e5bf:dead:4957:2174:e82c:4887]:63943",
                "[2607:f8b0:400c:c03::1a]:25",
                TCP,
                0,
                "1:/qFaeAR+gFe1KYjMzVDsMv+wgU4=",
            ),
            (
                "128.232.110.120:34855",
                "66.35.250.204:80",
                TCP,
                0,
                "1:LQU9qZlK+B5F3KDmev6m5PMibrg=",
            ),
            (
                "192.168.1.52:54585",
                "8.8.8.8:53",
                17,
                0,
                "1:d/FP5EW3wiY1vCndhwleRRKHowQ=",
            ),
            (
                "192.168.170.8:7",
                "192.168.170.56:7",
                132,
                0,
                "1:MP2EtRCAUIZvTw6MxJHLV7N7JDs=",
            ),
            (
                "[2001:470:e5bf:dead:4957:2174:e82c:4887]:63943",
                "[2607:f8b0:400c:c03::1a]:25",
                TCP,
                1,
                "1:eJYTW6AOzFLlSUoESovMjnu7rMw=",
            ),
            (
                "128.232.110.120:34855",
                "66.35.250.204:80",
                TCP,
                1,
                "1:3V71V58M3Ksw/yuFALMcW0LAHvc=",
            ),
        ];
        for (a, b, proto, seed, id) in vectors {
            assert_eq!(flow(sock(a), sock(b), proto, seed), id, "{a} {b}");
            assert_eq!(flow(sock(b), sock(a), proto, seed), id, "{b} {a}");
        }
        assert_eq!(
            tcp(sock("128.232.110.120:34855"), sock("66.35.250.204:80"), 0),
            "1:LQU9qZlK+B5F3KDmev6m5PMibrg="
        );
    }

    #[test]
    fn recent_ids_are_the_same_ids() {
        let mut recent = Recent::default();
        for _ in 0..2 {
            for port in 40000..42000 {
                let (a, b) = (sock(&format!("192.0.2.2:{port}")), sock("192.0.2.1:21"));
                assert_eq!(recent.tcp(a, b), tcp(a, b, 0));
            }
        }
    }

    /// A v4-mapped peer of an IPv6 socket is the IPv4 flow.
    #[test]
    fn a_mapped_ipv4_address_hashes_as_ipv4() {
        assert_eq!(
            tcp(
                sock("[::ffff:128.232.110.120]:34855"),
                sock("[::ffff:66.35.250.204]:80"),
                0
            ),
            "1:LQU9qZlK+B5F3KDmev6m5PMibrg="
        );
    }
}

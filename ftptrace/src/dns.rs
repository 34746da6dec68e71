//! DNS answers, read from the bytes the kernel copied: the name a client
//! asked for and the addresses it was given, so that a session can name
//! the server it dialled. Anyone who can send a UDP datagram from port 53
//! writes these bytes: every read is bounded, compression pointers only
//! point backwards, and a name is kept only if it is a plain host name.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Addresses kept from one answer.
pub const MAX_ADDRESSES: usize = 16;
/// A name's longest text form (RFC 1035).
const MAX_NAME: usize = 253;
/// Labels followed through compression pointers for one name.
const MAX_LABELS: usize = 128;
const HEADER: usize = 12;
const TYPE_A: u16 = 1;
const TYPE_CNAME: u16 = 5;
const TYPE_AAAA: u16 = 28;
const CLASS_IN: u16 = 1;

/// What an answer gave: the name asked for, its addresses (through any
/// CNAME chain), and the shortest time to live among them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Answer {
    pub name: String,
    pub addrs: Vec<IpAddr>,
    pub ttl_s: u32,
}

impl Answer {
    /// The answer in a DNS message, if it is a successful response to one
    /// question for a host name and holds at least one address.
    pub fn parse(message: &[u8]) -> Option<Self> {
        let header = message.get(..HEADER)?;
        let is_response = header[2] & 0x80 != 0;
        let rcode = header[3] & 0x0f;
        let questions = u16::from_be_bytes([header[4], header[5]]);
        let answers = u16::from_be_bytes([header[6], header[7]]);
        if !is_response || rcode != 0 || questions != 1 || answers == 0 {
            return None;
        }
        let (asked, at) = read_name(message, HEADER)?;
        // QTYPE, QCLASS.
        let mut at = at.checked_add(4)?;
        message.get(..at)?;
        // The names that stand for the asked one: itself and its CNAMEs.
        let mut aliases = vec![asked.clone()];
        let mut addrs = Vec::new();
        let mut ttl_s = u32::MAX;
        for _ in 0..answers {
            let (owner, after) = read_name(message, at)?;
            let fixed = message.get(after..after.checked_add(10)?)?;
            let kind = u16::from_be_bytes([fixed[0], fixed[1]]);
            let class = u16::from_be_bytes([fixed[2], fixed[3]]);
            let ttl = u32::from_be_bytes([fixed[4], fixed[5], fixed[6], fixed[7]]);
            let len = usize::from(u16::from_be_bytes([fixed[8], fixed[9]]));
            let data_at = after + 10;
            let data = message.get(data_at..data_at.checked_add(len)?)?;
            at = data_at + len;
            if class != CLASS_IN || !aliases.contains(&owner) {
                continue;
            }
            let addr = match (kind, data.len()) {
                (TYPE_A, 4) => IpAddr::V4(Ipv4Addr::from(<[u8; 4]>::try_from(data).ok()?)),
                (TYPE_AAAA, 16) => IpAddr::V6(Ipv6Addr::from(<[u8; 16]>::try_from(data).ok()?)),
                (TYPE_CNAME, _) => {
                    let (target, _) = read_name(message, data_at)?;
                    if aliases.len() < MAX_LABELS {
                        aliases.push(target);
                    }
                    continue;
                }
                _ => continue,
            };
            if addrs.len() < MAX_ADDRESSES && !addrs.contains(&addr) {
                addrs.push(addr);
                ttl_s = ttl_s.min(ttl);
            }
        }
        if addrs.is_empty() {
            return None;
        }
        Some(Self {
            name: asked,
            addrs,
            ttl_s,
        })
    }
}

/// The name at `at`, lowercased, and where the bytes after it start.
/// `None` for a malformed name, a pointer that does not point backwards,
/// or a label that is not a host name's (letters, digits, `-`, `_`).
fn read_name(message: &[u8], at: usize) -> Option<(String, usize)> {
    let mut name = String::new();
    let mut pos = at;
    // Where the name ends in the record: after the first pointer, if any.
    let mut end = None;
    for _ in 0..MAX_LABELS {
        let len = *message.get(pos)?;
        match len {
            0 => {
                let end = end.unwrap_or(pos + 1);
                return (!name.is_empty()).then_some((name, end));
            }
            // A compression pointer: 14 bits of offset, strictly backwards
            // (which also ends any loop).
            0xc0..=0xff => {
                let low = *message.get(pos + 1)?;
                let target = usize::from(u16::from_be_bytes([len & 0x3f, low]));
                if target >= pos {
                    return None;
                }
                end.get_or_insert(pos + 2);
                pos = target;
            }
            1..=63 => {
                let label = message.get(pos + 1..pos + 1 + usize::from(len))?;
                if !label
                    .iter()
                    .all(|b| b.is_ascii_alphanumeric() || *b == b'-' || *b == b'_')
                {
                    return None;
                }
                if !name.is_empty() {
                    name.push('.');
                }
                name.extend(label.iter().map(|b| char::from(b.to_ascii_lowercase())));
                if name.len() > MAX_NAME {
                    return None;
                }
                pos += 1 + usize::from(len);
            }
            // 0x40 and 0x80 label types are obsolete or unused.
            _ => return None,
        }
    }
    None
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A response to one question for `name`, with `records` as (type,
    /// ttl, data) owned by the question's name (a pointer to it).
    pub fn response(name: &str, qtype: u16, records: &[(u16, u32, Vec<u8>)]) -> Vec<u8> {
        let mut m = vec![0x12, 0x34, 0x81, 0x80, 0, 1];
        m.extend_from_slice(&(records.len() as u16).to_be_bytes());
        m.extend_from_slice(&[0, 0, 0, 0]);
        for label in name.split('.') {
            m.push(label.len() as u8);
            m.extend_from_slice(label.as_bytes());
        }
        m.push(0);
        m.extend_from_slice(&qtype.to_be_bytes());
        m.extend_from_slice(&CLASS_IN.to_be_bytes());
        for (kind, ttl, data) in records {
            m.extend_from_slice(&[0xc0, HEADER as u8]);
            m.extend_from_slice(&kind.to_be_bytes());
            m.extend_from_slice(&CLASS_IN.to_be_bytes());
            m.extend_from_slice(&ttl.to_be_bytes());
            m.extend_from_slice(&(data.len() as u16).to_be_bytes());
            m.extend_from_slice(data);
        }
        m
    }

    #[test]
    fn an_answer_gives_the_name_and_its_addresses() {
        let m = response(
            "FTP.Example.test",
            TYPE_A,
            &[
                (TYPE_A, 300, vec![192, 0, 2, 1]),
                (TYPE_A, 60, vec![192, 0, 2, 3]),
            ],
        );
        let answer = Answer::parse(&m).unwrap();
        assert_eq!(answer.name.as_str(), "ftp.example.test");
        assert_eq!(
            answer.addrs,
            [
                "192.0.2.1".parse::<IpAddr>().unwrap(),
                "192.0.2.3".parse().unwrap()
            ]
        );
        assert_eq!(answer.ttl_s, 60);
    }

    #[test]
    fn addresses_behind_a_cname_count_for_the_asked_name() {
        let mut m = response("ftp.example.test", TYPE_AAAA, &[]);
        m[7] = 2;
        // ftp.example.test CNAME mirror.example.test
        let target_at = m.len() + 12;
        m.extend_from_slice(&[0xc0, 12, 0, 5, 0, 1, 0, 0, 0, 30]);
        let target = b"\x06mirror\xc0\x10";
        m.extend_from_slice(&(target.len() as u16).to_be_bytes());
        m.extend_from_slice(target);
        // mirror.example.test AAAA 2001:db8::1
        m.extend_from_slice(&[0xc0, target_at as u8, 0, 28, 0, 1, 0, 0, 0, 30, 0, 16]);
        m.extend_from_slice(&"2001:db8::1".parse::<Ipv6Addr>().unwrap().octets());
        let answer = Answer::parse(&m).unwrap();
        assert_eq!(answer.name.as_str(), "ftp.example.test");
        assert_eq!(answer.addrs, ["2001:db8::1".parse::<IpAddr>().unwrap()]);
    }

    #[test]
    fn refusals_questions_and_other_types_give_nothing() {
        let ok = response(
            "ftp.example.test",
            TYPE_A,
            &[(TYPE_A, 1, vec![192, 0, 2, 1])],
        );
        let mut query = ok.clone();
        query[2] &= 0x7f;
        let mut nxdomain = ok.clone();
        nxdomain[3] |= 3;
        let mx = response("ftp.example.test", 15, &[(15, 1, vec![0, 10, 0])]);
        let short_a = response("ftp.example.test", TYPE_A, &[(TYPE_A, 1, vec![192, 0, 2])]);
        for m in [query, nxdomain, mx, short_a] {
            assert_eq!(Answer::parse(&m), None);
        }
        assert!(Answer::parse(&ok).is_some());
    }

    #[test]
    fn names_that_are_not_host_names_or_point_forward_are_refused() {
        let escape = response(
            "ftp\x1b[2J.example.test",
            TYPE_A,
            &[(TYPE_A, 1, vec![192, 0, 2, 1])],
        );
        assert_eq!(Answer::parse(&escape), None);
        // The question's name is a pointer to itself.
        let mut selfish = response("a", TYPE_A, &[(TYPE_A, 1, vec![192, 0, 2, 1])]);
        selfish[12] = 0xc0;
        selfish[13] = 12;
        assert_eq!(Answer::parse(&selfish), None);
    }

    /// Every cut of a good answer, and bytes flipped at random, read as
    /// an answer or as nothing, never a panic.
    #[test]
    fn any_bytes_read_as_an_answer_or_nothing() {
        let good = response(
            "ftp.example.test",
            TYPE_A,
            &[
                (TYPE_A, 300, vec![192, 0, 2, 1]),
                (TYPE_AAAA, 300, vec![0x20; 16]),
            ],
        );
        for cut in 0..good.len() {
            let _ = Answer::parse(&good[..cut]);
        }
        let mut state = 0x2545_f491_4f6c_dd1du64;
        for _ in 0..20_000 {
            let mut m = good.clone();
            for _ in 0..4 {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                let at = (state % m.len() as u64) as usize;
                m[at] = (state >> 32) as u8;
            }
            if let Some(answer) = Answer::parse(&m) {
                assert!(answer.addrs.len() <= MAX_ADDRESSES);
                assert!(answer.name.as_str().len() <= MAX_NAME);
            }
        }
    }
}

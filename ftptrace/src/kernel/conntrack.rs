//! What a NAT did to a connection, from the kernel's connection tracking
//! (ctnetlink over `NETLINK_NETFILTER`, what `conntrack -G` asks).
//!
//! Behind a DNAT or a masquerade the accepting end of a connection (an FTP
//! server) sees addresses its client never dialled. The NAT's conntrack
//! entry holds both views: its reply tuple is the accepting end's, its
//! original tuple the connecting end's. So we look the entry up by its reply
//! tuple and read the original. The NAT may sit in any network namespace on
//! the host: a router namespace that only `/run/netns` holds, or the host's
//! own (docker's published ports); so every namespace is asked, each through
//! a netlink socket opened inside it once and kept (a socket stays in the
//! namespace it was opened in).
//!
//! A kept socket also keeps its namespace alive, devices and all, after
//! `ip netns del`: the sockets of namespaces no longer on the host are
//! closed at each rescan of the namespace list.
//!
//! What comes back is read as untrusted bytes, and only namespaces owned by
//! our own user namespace are asked: one of an unprivileged user's user
//! namespace is theirs to fill with any entry (`netns::owned_by_ours`).

use super::{
    netlink::{self, Messages, u16_at, u32_at},
    netns::{self, Namespace},
};
use std::{
    collections::{HashMap, HashSet},
    io,
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr},
    os::fd::OwnedFd,
    time::{Duration, Instant},
};

/// One end's view of a TCP connection: (its source, its destination).
type Tuple = (SocketAddr, SocketAddr);

// Netlink requests and attributes (linux/netlink.h).
const NLM_F_REQUEST: u16 = 1;
const NLM_F_ACK: u16 = 4;
const NLA_HEADER: usize = 4;
const NLA_F_NESTED: u16 = 1 << 15;
const NLA_F_NET_BYTEORDER: u16 = 1 << 14;
const NLA_TYPE_MASK: u16 = !(NLA_F_NESTED | NLA_F_NET_BYTEORDER);

// nfnetlink and ctnetlink (linux/netfilter/nfnetlink.h,
// linux/netfilter/nfnetlink_conntrack.h).
const NFNL_SUBSYS_CTNETLINK: u16 = 1;
const IPCTNL_MSG_CT_NEW: u16 = 0;
const IPCTNL_MSG_CT_GET: u16 = 1;
/// What we ask, and what the kernel answers with (an entry is always "new").
const CT_GET: u16 = (NFNL_SUBSYS_CTNETLINK << 8) | IPCTNL_MSG_CT_GET;
const CT_NEW: u16 = (NFNL_SUBSYS_CTNETLINK << 8) | IPCTNL_MSG_CT_NEW;
/// `struct nfgenmsg`: family, version, resource id (big-endian).
const NFGENMSG: usize = 4;
const NFNETLINK_V0: u8 = 0;
const CTA_TUPLE_ORIG: u16 = 1;
const CTA_TUPLE_REPLY: u16 = 2;
const CTA_TUPLE_IP: u16 = 1;
const CTA_TUPLE_PROTO: u16 = 2;
const CTA_IP_V4_SRC: u16 = 1;
const CTA_IP_V4_DST: u16 = 2;
const CTA_IP_V6_SRC: u16 = 3;
const CTA_IP_V6_DST: u16 = 4;
const CTA_PROTO_NUM: u16 = 1;
const CTA_PROTO_SRC_PORT: u16 = 2;
const CTA_PROTO_DST_PORT: u16 = 3;
const IPPROTO_TCP: u8 = 6;

/// Namespaces asked at most: each costs a socket, and a round trip per
/// lookup (unprivileged users can make namespaces by the thousand).
const MAX_NAMESPACES: usize = 1024;
/// A lookup that finds nothing may be about a namespace made since the last
/// scan; scanning walks /proc, so not more often than this.
const RESCAN_AFTER_MISS: Duration = Duration::from_secs(1);
/// How long a deleted namespace may stay alive through our socket in it
/// while lookups keep finding what they look for.
const RELEASE_AFTER: Duration = Duration::from_secs(10);
/// The kernel answers while we send; this only bounds a lookup if it does not.
const ANSWER_TIMEOUT: Duration = Duration::from_millis(100);
/// Datagrams read for one request before giving up on its acknowledgement.
const MAX_DATAGRAMS: usize = 16;
/// NATs followed in a row (a DNAT in front of another), each in its own
/// namespace.
const MAX_HOPS: usize = 4;

/// Asks the kernel's connection tracking, in every network namespace on the
/// host, how the connections ftptrace sees were translated.
pub struct Conntrack {
    /// A socket opened in each namespace, by the namespace's inode.
    sockets: HashMap<u32, OwnedFd>,
    /// Namespaces that could not be entered or asked: not tried again while
    /// they exist.
    failed: HashSet<u32>,
    /// When the namespace list was last read; `None` before the first lookup.
    scanned: Option<Instant>,
    seq: u32,
    /// Whether the warning about namespaces past `MAX_NAMESPACES` was given.
    capped: bool,
    warnings: Vec<String>,
}

impl Default for Conntrack {
    fn default() -> Self {
        Self::new()
    }
}

impl Conntrack {
    /// Opens nothing yet: the first lookup does.
    pub fn new() -> Self {
        Self {
            sockets: HashMap::new(),
            failed: HashSet::new(),
            scanned: None,
            seq: 0,
            capped: false,
            warnings: Vec::new(),
        }
    }

    /// The tuple as the connecting end sees it, (its own address, the
    /// address it dialled), for the connection whose accepting end is `local`
    /// and sees its peer as `peer`; `None` when no namespace tracks such a
    /// connection or its entry shows no translation (orig == (peer, local)).
    ///
    /// IPv4-mapped IPv6 addresses are asked (and answered) as IPv4. Several
    /// NATs in a row are followed back to the first. Blocks for one netlink
    /// round trip per namespace and hop (microseconds each).
    pub fn before_nat(
        &mut self,
        local: SocketAddr,
        peer: SocketAddr,
    ) -> Option<(SocketAddr, SocketAddr)> {
        let (local, peer) = (canonical(local), canonical(peer));
        if self.scanned.is_none_or(|at| at.elapsed() >= RELEASE_AFTER) {
            self.rescan();
        }
        if let Some(view) = self.follow(local, peer) {
            return Some(view);
        }
        if self
            .scanned
            .is_some_and(|at| at.elapsed() >= RESCAN_AFTER_MISS)
        {
            self.rescan();
            return self.follow(local, peer);
        }
        None
    }

    /// Namespaces that could not be entered or queried so far (for a
    /// one-time warning), e.g. "network namespace 4026532…: Operation not
    /// permitted". Each is said once: it is not asked again while it exists.
    pub fn take_warnings(&mut self) -> Vec<String> {
        std::mem::take(&mut self.warnings)
    }

    /// Follows the connection back through each NAT it crossed: the view
    /// before one NAT is the accepting-side view of the NAT in front of it.
    fn follow(&mut self, local: SocketAddr, peer: SocketAddr) -> Option<Tuple> {
        let mut crossed = HashSet::new();
        let mut view = None;
        let (mut local, mut peer) = (local, peer);
        for _ in 0..MAX_HOPS {
            let Some((inode, before)) = self.translation(local, peer, &crossed) else {
                break;
            };
            crossed.insert(inode);
            view = Some(before);
            (local, peer) = (before.1, before.0);
        }
        view
    }

    /// The first namespace (not in `skip`) whose entry for the connection
    /// shows a translation, and the original tuple there. Namespaces that
    /// track it untranslated (the ends' own, a plain router's) are passed.
    fn translation(
        &mut self,
        local: SocketAddr,
        peer: SocketAddr,
        skip: &HashSet<u32>,
    ) -> Option<(u32, Tuple)> {
        let inodes: Vec<u32> = self
            .sockets
            .keys()
            .filter(|inode| !skip.contains(inode))
            .copied()
            .collect();
        for inode in inodes {
            self.seq = self.seq.wrapping_add(1);
            let request = get_request(self.seq, local, peer)?;
            let Some(socket) = self.sockets.get(&inode) else {
                continue;
            };
            match ask(socket, self.seq, &request) {
                Ok(Some(orig)) if orig != (peer, local) => return Some((inode, orig)),
                Ok(_) => {}
                Err(e) => {
                    self.sockets.remove(&inode);
                    self.failed.insert(inode);
                    self.warnings
                        .push(format!("network namespace {inode}: conntrack: {e}"));
                }
            }
        }
        None
    }

    /// Reads the namespace list: closes the sockets of namespaces gone,
    /// opens one in each new namespace.
    fn rescan(&mut self) {
        self.scanned = Some(Instant::now());
        let present = netns::namespaces();
        let inodes: HashSet<u32> = present.iter().map(|n| n.inode).collect();
        self.sockets.retain(|inode, _| inodes.contains(inode));
        self.failed.retain(|inode| inodes.contains(inode));
        let mut new: Vec<Namespace> = present
            .into_iter()
            .filter(|n| !self.sockets.contains_key(&n.inode) && !self.failed.contains(&n.inode))
            .collect();
        let room = MAX_NAMESPACES.saturating_sub(self.sockets.len());
        if new.len() > room {
            if !self.capped {
                self.capped = true;
                self.warnings.push(format!(
                    "more than {MAX_NAMESPACES} network namespaces: NAT is looked up in the first {MAX_NAMESPACES} only"
                ));
            }
            new.truncate(room);
        }
        // Only a NAT that a holder of our capabilities set up is believed:
        // an unprivileged user's own namespace could hold any entry.
        new.retain(|n| match netns::owned_by_ours(&n.path) {
            Ok(true) => true,
            Ok(false) => {
                self.failed.insert(n.inode);
                false
            }
            Err(e) => {
                self.failed.insert(n.inode);
                self.warnings
                    .push(format!("network namespace {}: {e}", n.inode));
                false
            }
        });
        for (inode, socket) in open_in(new) {
            match socket {
                Ok(socket) => {
                    self.sockets.insert(inode, socket);
                }
                Err(e) => {
                    self.failed.insert(inode);
                    self.warnings
                        .push(format!("network namespace {inode}: {e}"));
                }
            }
        }
    }
}

fn canonical(address: SocketAddr) -> SocketAddr {
    SocketAddr::new(address.ip().to_canonical(), address.port())
}

/// A ctnetlink socket in each of `namespaces`. Ours is opened here; the
/// others on a short-lived thread that enters each in turn, so no thread of
/// ours is left in another namespace.
fn open_in(namespaces: Vec<Namespace>) -> Vec<(u32, io::Result<OwnedFd>)> {
    let own = netns::own();
    let (here, elsewhere): (Vec<Namespace>, Vec<Namespace>) =
        namespaces.into_iter().partition(|n| Some(n.inode) == own);
    let mut opened: Vec<_> = here.iter().map(|n| (n.inode, open_here())).collect();
    if elsewhere.is_empty() {
        return opened;
    }
    let inodes: Vec<u32> = elsewhere.iter().map(|n| n.inode).collect();
    let opener = std::thread::Builder::new()
        .name("conntrack-netns".into())
        .spawn(move || {
            elsewhere
                .into_iter()
                .map(|n| (n.inode, netns::enter(&n.path).and_then(|()| open_here())))
                .collect::<Vec<_>>()
        });
    match opener.map(std::thread::JoinHandle::join) {
        Ok(Ok(sockets)) => opened.extend(sockets),
        Ok(Err(_)) => opened.extend(
            inodes
                .into_iter()
                .map(|inode| (inode, Err(io::Error::other("the socket opener panicked")))),
        ),
        Err(e) => opened.extend(
            inodes
                .into_iter()
                .map(|inode| (inode, Err(io::Error::new(e.kind(), e.to_string())))),
        ),
    }
    opened
}

/// A ctnetlink socket in this thread's network namespace, whose reads give
/// up after `ANSWER_TIMEOUT`.
fn open_here() -> io::Result<OwnedFd> {
    netlink::open(libc::NETLINK_NETFILTER, Some(ANSWER_TIMEOUT))
}

/// Sends `request` (sequence number `seq`) and reads until the kernel
/// acknowledges it: the entry's original tuple, or `None` when the
/// namespace does not track the connection.
fn ask(socket: &OwnedFd, seq: u32, request: &[u8]) -> io::Result<Option<Tuple>> {
    netlink::send(socket, request)?;
    let mut buffer = [0u8; 8192];
    let mut entry = None;
    for _ in 0..MAX_DATAGRAMS {
        let got = match netlink::recv(socket, &mut buffer) {
            Ok(got) => got,
            Err(e) => match e.kind() {
                io::ErrorKind::Interrupted => continue,
                // The entry came but not its acknowledgement: the entry is
                // still the answer.
                io::ErrorKind::WouldBlock if entry.is_some() => return Ok(entry),
                io::ErrorKind::WouldBlock => {
                    return Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        format!("no answer within {} ms", ANSWER_TIMEOUT.as_millis()),
                    ));
                }
                _ => return Err(e),
            },
        };
        match read_answer(&buffer[..got], seq, &mut entry) {
            Answer::Pending => {}
            Answer::Done => return Ok(entry),
            Answer::NotTracked => return Ok(None),
            Answer::Failed(errno) => return Err(io::Error::from_raw_os_error(errno)),
        }
    }
    Err(io::Error::new(
        io::ErrorKind::InvalidData,
        "no acknowledgement among the answers",
    ))
}

/// The GET request for the entry whose reply tuple is `local` → `peer`
/// (the accepting end's view, as the NAT rewrote it); `None` when the two
/// are of different families. Addresses should be canonical (an
/// IPv4-mapped address is asked as IPv4 by the caller).
fn get_request(seq: u32, local: SocketAddr, peer: SocketAddr) -> Option<Vec<u8>> {
    let (family, src_kind, dst_kind, src, dst) = match (local.ip(), peer.ip()) {
        (IpAddr::V4(l), IpAddr::V4(p)) => (
            libc::AF_INET,
            CTA_IP_V4_SRC,
            CTA_IP_V4_DST,
            l.octets().to_vec(),
            p.octets().to_vec(),
        ),
        (IpAddr::V6(l), IpAddr::V6(p)) => (
            libc::AF_INET6,
            CTA_IP_V6_SRC,
            CTA_IP_V6_DST,
            l.octets().to_vec(),
            p.octets().to_vec(),
        ),
        _ => return None,
    };
    let mut message = Vec::with_capacity(96);
    // struct nlmsghdr; its length is set last.
    message.extend(0u32.to_ne_bytes());
    message.extend(CT_GET.to_ne_bytes());
    message.extend((NLM_F_REQUEST | NLM_F_ACK).to_ne_bytes());
    message.extend(seq.to_ne_bytes());
    message.extend(0u32.to_ne_bytes());
    // struct nfgenmsg.
    message.extend([u8::try_from(family).ok()?, NFNETLINK_V0, 0, 0]);
    nest(&mut message, CTA_TUPLE_REPLY, |m| {
        nest(m, CTA_TUPLE_IP, |m| {
            put(m, src_kind, &src);
            put(m, dst_kind, &dst);
        });
        nest(m, CTA_TUPLE_PROTO, |m| {
            put(m, CTA_PROTO_NUM, &[IPPROTO_TCP]);
            put(m, CTA_PROTO_SRC_PORT, &local.port().to_be_bytes());
            put(m, CTA_PROTO_DST_PORT, &peer.port().to_be_bytes());
        });
    });
    let len = u32::try_from(message.len()).ok()?;
    message[..4].copy_from_slice(&len.to_ne_bytes());
    Some(message)
}

/// Appends one attribute, padded.
fn put(buffer: &mut Vec<u8>, kind: u16, payload: &[u8]) {
    let len = u16::try_from(NLA_HEADER + payload.len()).unwrap_or(u16::MAX);
    buffer.extend(len.to_ne_bytes());
    buffer.extend(kind.to_ne_bytes());
    buffer.extend(payload);
    buffer.resize(netlink::align(buffer.len()), 0);
}

/// Appends a nested attribute holding what `fill` appends.
fn nest(buffer: &mut Vec<u8>, kind: u16, fill: impl FnOnce(&mut Vec<u8>)) {
    let start = buffer.len();
    buffer.extend([0; NLA_HEADER]);
    fill(buffer);
    let len = u16::try_from(buffer.len() - start).unwrap_or(u16::MAX);
    buffer[start..start + 2].copy_from_slice(&len.to_ne_bytes());
    buffer[start + 2..start + 4].copy_from_slice(&(kind | NLA_F_NESTED).to_ne_bytes());
}

/// The attributes in `bytes`: (type without flags, payload), up to the
/// first whose length does not fit.
fn attributes(mut bytes: &[u8]) -> impl Iterator<Item = (u16, &[u8])> {
    std::iter::from_fn(move || {
        let len = usize::from(u16_at(bytes, 0)?);
        let kind = u16_at(bytes, 2)? & NLA_TYPE_MASK;
        if len < NLA_HEADER || len > bytes.len() {
            bytes = &[];
            return None;
        }
        let payload = bytes.get(NLA_HEADER..len)?;
        bytes = bytes.get(netlink::align(len)..).unwrap_or(&[]);
        Some((kind, payload))
    })
}

/// The original tuple (the connecting end's view) of the conntrack entry in
/// one netlink message (`IPCTNL_MSG_CT_NEW`, header included); `None` for
/// any other message, a truncated one, or one that is not TCP.
pub fn parse_orig_tuple(message: &[u8]) -> Option<(SocketAddr, SocketAddr)> {
    let len = usize::try_from(u32_at(message, 0)?).ok()?;
    let message = message.get(..len)?;
    if netlink::kind(message)? != CT_NEW {
        return None;
    }
    let attributes_at = netlink::HEADER + NFGENMSG;
    let (_, orig) =
        attributes(message.get(attributes_at..)?).find(|&(kind, _)| kind == CTA_TUPLE_ORIG)?;
    tuple(orig)
}

/// A `CTA_TUPLE_*` nest: addresses in `CTA_TUPLE_IP`, protocol and ports in
/// `CTA_TUPLE_PROTO`.
fn tuple(nest: &[u8]) -> Option<Tuple> {
    let (mut src, mut dst, mut protocol, mut sport, mut dport) = (None, None, None, None, None);
    for (kind, payload) in attributes(nest) {
        match kind {
            CTA_TUPLE_IP => {
                for (kind, payload) in attributes(payload) {
                    match kind {
                        CTA_IP_V4_SRC => src = v4(payload),
                        CTA_IP_V4_DST => dst = v4(payload),
                        CTA_IP_V6_SRC => src = v6(payload),
                        CTA_IP_V6_DST => dst = v6(payload),
                        _ => {}
                    }
                }
            }
            CTA_TUPLE_PROTO => {
                for (kind, payload) in attributes(payload) {
                    match kind {
                        CTA_PROTO_NUM => protocol = <[u8; 1]>::try_from(payload).ok(),
                        CTA_PROTO_SRC_PORT => sport = port(payload),
                        CTA_PROTO_DST_PORT => dport = port(payload),
                        _ => {}
                    }
                }
            }
            _ => {}
        }
    }
    let (src, dst) = (src?, dst?);
    if protocol? != [IPPROTO_TCP] || src.is_ipv4() != dst.is_ipv4() {
        return None;
    }
    Some((SocketAddr::new(src, sport?), SocketAddr::new(dst, dport?)))
}

fn v4(payload: &[u8]) -> Option<IpAddr> {
    Some(IpAddr::V4(Ipv4Addr::from(
        <[u8; 4]>::try_from(payload).ok()?,
    )))
}

fn v6(payload: &[u8]) -> Option<IpAddr> {
    Some(IpAddr::V6(Ipv6Addr::from(
        <[u8; 16]>::try_from(payload).ok()?,
    )))
}

fn port(payload: &[u8]) -> Option<u16> {
    Some(u16::from_be_bytes(payload.try_into().ok()?))
}

/// What one datagram said about the request with our sequence number.
#[derive(Debug, PartialEq, Eq)]
enum Answer {
    /// Nothing conclusive yet: other requests' answers, or the entry
    /// without its acknowledgement.
    Pending,
    /// Acknowledged: the entry, if any, came before.
    Done,
    /// `ENOENT`: this namespace does not track the connection.
    NotTracked,
    /// Any other error, as a positive errno.
    Failed(i32),
}

/// Reads one datagram's messages for sequence number `seq`, keeping the
/// first entry's original tuple in `entry`.
fn read_answer(datagram: &[u8], seq: u32, entry: &mut Option<Tuple>) -> Answer {
    for message in Messages::new(datagram) {
        // An answer left over from a request that timed out.
        if netlink::seq(message) != Some(seq) {
            continue;
        }
        match netlink::kind(message) {
            Some(netlink::ERROR) => {
                // struct nlmsgerr: a negative errno, or 0 for an ACK.
                let Some(error) = netlink::error(message) else {
                    return Answer::Failed(libc::EPROTO);
                };
                return match error {
                    0 => Answer::Done,
                    e if e == -libc::ENOENT => Answer::NotTracked,
                    e => Answer::Failed(e.checked_neg().filter(|&e| e > 0).unwrap_or(libc::EPROTO)),
                };
            }
            Some(netlink::DONE) => return Answer::Done,
            Some(CT_NEW) if entry.is_none() => *entry = parse_orig_tuple(message),
            _ => {}
        }
    }
    Answer::Pending
}

#[cfg(test)]
mod tests {
    use super::*;

    fn address(text: &str) -> SocketAddr {
        text.parse().unwrap()
    }

    /// A message as the kernel builds it: the header, then what `fill` appends.
    fn message(kind: u16, seq: u32, fill: impl FnOnce(&mut Vec<u8>)) -> Vec<u8> {
        let mut m = vec![0u8; netlink::HEADER];
        fill(&mut m);
        let len = m.len() as u32;
        m[0..4].copy_from_slice(&len.to_ne_bytes());
        m[4..6].copy_from_slice(&kind.to_ne_bytes());
        m[8..12].copy_from_slice(&seq.to_ne_bytes());
        m
    }

    fn tuple_attributes(m: &mut Vec<u8>, kind: u16, (src, dst): Tuple) {
        nest(m, kind, |m| {
            nest(m, CTA_TUPLE_IP, |m| match (src.ip(), dst.ip()) {
                (IpAddr::V4(s), IpAddr::V4(d)) => {
                    put(m, CTA_IP_V4_SRC, &s.octets());
                    put(m, CTA_IP_V4_DST, &d.octets());
                }
                (IpAddr::V6(s), IpAddr::V6(d)) => {
                    put(m, CTA_IP_V6_SRC, &s.octets());
                    put(m, CTA_IP_V6_DST, &d.octets());
                }
                _ => unreachable!("one family"),
            });
            nest(m, CTA_TUPLE_PROTO, |m| {
                put(m, CTA_PROTO_NUM, &[IPPROTO_TCP]);
                put(m, CTA_PROTO_SRC_PORT, &src.port().to_be_bytes());
                put(m, CTA_PROTO_DST_PORT, &dst.port().to_be_bytes());
            });
        });
    }

    /// The kernel's answer for a DNAT'd connection: the original tuple, the
    /// reply tuple, then status, timeout, id and protocol info, as
    /// `ctnetlink_fill_info` lays them out.
    fn entry(seq: u32, orig: Tuple, reply: Tuple) -> Vec<u8> {
        message(CT_NEW, seq, |m| {
            let family = if orig.0.is_ipv4() {
                libc::AF_INET
            } else {
                libc::AF_INET6
            };
            m.extend([family as u8, NFNETLINK_V0, 0, 0]);
            tuple_attributes(m, CTA_TUPLE_ORIG, orig);
            tuple_attributes(m, CTA_TUPLE_REPLY, reply);
            put(m, 3, &0x1bau32.to_be_bytes()); // CTA_STATUS
            put(m, 7, &431_999u32.to_be_bytes()); // CTA_TIMEOUT
            put(m, 12, &7u32.to_be_bytes()); // CTA_ID
            nest(m, 4, |m| nest(m, 1, |m| put(m, 1, &[3]))); // CTA_PROTOINFO
        })
    }

    fn error(seq: u32, errno: i32) -> Vec<u8> {
        message(netlink::ERROR, seq, |m| {
            m.extend(errno.to_ne_bytes());
            m.extend([0u8; netlink::HEADER]); // the request's header, echoed
        })
    }

    const CLIENT: &str = "203.0.113.10:40000";
    const DIALLED: &str = "203.0.113.1:2121";
    const SERVER: &str = "10.0.0.2:21";

    fn dnat_entry(seq: u32) -> Vec<u8> {
        entry(
            seq,
            (address(CLIENT), address(DIALLED)),
            (address(SERVER), address(CLIENT)),
        )
    }

    #[test]
    fn the_request_is_laid_out_as_ctnetlink_reads_it() {
        let request = get_request(7, address(SERVER), address(CLIENT)).unwrap();
        let ne16 = |v: u16| v.to_ne_bytes();
        let ne32 = |v: u32| v.to_ne_bytes();
        let mut expected = Vec::new();
        expected.extend(ne32(72)); // nlmsg_len
        expected.extend(ne16(0x0101)); // CTNETLINK << 8 | CT_GET
        expected.extend(ne16(0x0005)); // NLM_F_REQUEST | NLM_F_ACK
        expected.extend(ne32(7)); // seq
        expected.extend(ne32(0)); // pid
        expected.extend([2, 0, 0, 0]); // AF_INET, NFNETLINK_V0, res_id 0
        expected.extend(ne16(52));
        expected.extend(ne16(0x8002)); // CTA_TUPLE_REPLY, nested
        expected.extend(ne16(20));
        expected.extend(ne16(0x8001)); // CTA_TUPLE_IP, nested
        expected.extend(ne16(8));
        expected.extend(ne16(1)); // CTA_IP_V4_SRC
        expected.extend([10, 0, 0, 2]);
        expected.extend(ne16(8));
        expected.extend(ne16(2)); // CTA_IP_V4_DST
        expected.extend([203, 0, 113, 10]);
        expected.extend(ne16(28));
        expected.extend(ne16(0x8002)); // CTA_TUPLE_PROTO, nested
        expected.extend(ne16(5));
        expected.extend(ne16(1)); // CTA_PROTO_NUM
        expected.extend([6, 0, 0, 0]); // TCP, padded
        expected.extend(ne16(6));
        expected.extend(ne16(2)); // CTA_PROTO_SRC_PORT
        expected.extend([0, 21, 0, 0]); // big-endian, padded
        expected.extend(ne16(6));
        expected.extend(ne16(3)); // CTA_PROTO_DST_PORT
        expected.extend([0x9c, 0x40, 0, 0]); // 40000
        assert_eq!(request, expected);
    }

    #[test]
    fn an_ipv6_request_carries_ipv6_attributes() {
        let request = get_request(
            1,
            address("[2001:db8::2]:21"),
            address("[2001:db8::10]:40000"),
        )
        .unwrap();
        assert_eq!(request.len(), 72 + 2 * 12);
        assert_eq!(request[16], libc::AF_INET6 as u8);
        // nlmsghdr, nfgenmsg, the reply tuple's and the IP nest's headers.
        assert_eq!(u16_at(&request, 30), Some(CTA_IP_V6_SRC));
        assert_eq!(
            &request[32..48],
            &"2001:db8::2".parse::<Ipv6Addr>().unwrap().octets()
        );
    }

    #[test]
    fn a_mapped_address_is_asked_as_ipv4() {
        let mapped = canonical(address("[::ffff:10.0.0.2]:21"));
        assert_eq!(mapped, address(SERVER));
        let request = get_request(1, mapped, address(CLIENT)).unwrap();
        assert_eq!(request[16], libc::AF_INET as u8);
    }

    #[test]
    fn families_that_differ_make_no_request() {
        assert!(get_request(1, address(SERVER), address("[2001:db8::10]:40000")).is_none());
    }

    #[test]
    fn the_original_tuple_is_read_from_an_entry() {
        assert_eq!(
            parse_orig_tuple(&dnat_entry(3)),
            Some((address(CLIENT), address(DIALLED)))
        );
        let v6 = entry(
            3,
            (
                address("[2001:db8::10]:40000"),
                address("[2001:db8::1]:2121"),
            ),
            (address("[2001:db8::2]:21"), address("[2001:db8::10]:40000")),
        );
        assert_eq!(
            parse_orig_tuple(&v6),
            Some((
                address("[2001:db8::10]:40000"),
                address("[2001:db8::1]:2121")
            ))
        );
    }

    #[test]
    fn an_entry_that_is_not_tcp_or_not_an_entry_reads_as_none() {
        let mut udp = dnat_entry(3);
        // The original tuple's CTA_PROTO_NUM payload: after nlmsghdr and
        // nfgenmsg (20), the tuple's header (4), the IP nest (20), the proto
        // nest's header (4) and its own (4).
        assert_eq!(udp[52], IPPROTO_TCP);
        udp[52] = 17;
        assert_eq!(parse_orig_tuple(&udp), None);
        let mut other = dnat_entry(3);
        other[4..6].copy_from_slice(&CT_GET.to_ne_bytes());
        assert_eq!(parse_orig_tuple(&other), None);
    }

    #[test]
    fn the_entry_and_its_ack_answer_the_request() {
        let mut found = None;
        assert_eq!(read_answer(&dnat_entry(9), 9, &mut found), Answer::Pending);
        assert_eq!(read_answer(&error(9, 0), 9, &mut found), Answer::Done);
        assert_eq!(found, Some((address(CLIENT), address(DIALLED))));
        // Both in one datagram.
        let mut both = dnat_entry(9);
        both.extend(error(9, 0));
        let mut found = None;
        assert_eq!(read_answer(&both, 9, &mut found), Answer::Done);
        assert!(found.is_some());
    }

    #[test]
    fn answers_to_other_requests_are_ignored() {
        let mut stale = dnat_entry(8);
        stale.extend(error(8, 0));
        let mut found = None;
        assert_eq!(read_answer(&stale, 9, &mut found), Answer::Pending);
        assert_eq!(found, None);
    }

    #[test]
    fn enoent_means_not_tracked_and_other_errors_fail() {
        let mut found = None;
        assert_eq!(
            read_answer(&error(4, -libc::ENOENT), 4, &mut found),
            Answer::NotTracked
        );
        assert_eq!(
            read_answer(&error(4, -libc::EPERM), 4, &mut found),
            Answer::Failed(libc::EPERM)
        );
        assert_eq!(
            read_answer(&error(4, i32::MIN), 4, &mut found),
            Answer::Failed(libc::EPROTO)
        );
        assert_eq!(
            read_answer(&error(4, 5), 4, &mut found),
            Answer::Failed(libc::EPROTO)
        );
    }

    #[test]
    fn a_truncated_entry_reads_as_none_not_a_panic() {
        let whole = dnat_entry(3);
        for cut in 0..whole.len() {
            assert_eq!(parse_orig_tuple(&whole[..cut]), None, "cut at {cut}");
            let _ = read_answer(&whole[..cut], 3, &mut None);
        }
        // A length past the end, and a nest that claims more than it holds.
        let mut long = whole.clone();
        long[0..4].copy_from_slice(&10_000u32.to_ne_bytes());
        assert_eq!(parse_orig_tuple(&long), None);
        let mut nest_overflows = whole.clone();
        nest_overflows[20..22].copy_from_slice(&4000u16.to_ne_bytes());
        assert_eq!(parse_orig_tuple(&nest_overflows), None);
    }

    /// xorshift64: random enough for garbage, with no dependency.
    fn random(state: &mut u64) -> u64 {
        *state ^= *state << 13;
        *state ^= *state >> 7;
        *state ^= *state << 17;
        *state
    }

    #[test]
    fn garbage_and_corrupted_entries_never_panic() {
        let mut state = 0x9e37_79b9_7f4a_7c15;
        let whole = dnat_entry(3);
        for _ in 0..20_000 {
            // Random bytes, with a plausible header now and then.
            let len = (random(&mut state) % 300) as usize;
            let mut bytes: Vec<u8> = (0..len).map(|_| random(&mut state) as u8).collect();
            if bytes.len() >= netlink::HEADER && random(&mut state).is_multiple_of(2) {
                bytes[0..4].copy_from_slice(&(len as u32).to_ne_bytes());
                bytes[4..6].copy_from_slice(&CT_NEW.to_ne_bytes());
            }
            let _ = parse_orig_tuple(&bytes);
            let _ = read_answer(&bytes, 3, &mut None);
            // The real entry with a few bytes changed.
            let mut corrupted = whole.clone();
            for _ in 0..1 + random(&mut state) % 4 {
                let at = (random(&mut state) as usize) % corrupted.len();
                corrupted[at] = random(&mut state) as u8;
            }
            let _ = parse_orig_tuple(&corrupted);
            let _ = read_answer(&corrupted, 3, &mut None);
        }
    }

    #[test]
    fn a_new_tracker_opens_nothing_and_has_nothing_to_say() {
        let mut conntrack = Conntrack::new();
        assert!(conntrack.sockets.is_empty());
        assert!(conntrack.take_warnings().is_empty());
    }
}

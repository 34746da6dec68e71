//! The TCP connections already open when ftptrace starts, from sock_diag
//! (`NETLINK_SOCK_DIAG`, what `ss` reads), in every network namespace on
//! the host (`netns.rs`): their sessions are seeded, so a session that began
//! before the tracer still gets a record.

use super::{
    netlink::{self, Messages},
    netns,
};
use crate::event::OpenConnection;
use std::{
    io,
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr},
};

/// sock_diag's message type and the inet_diag request/response layouts
/// (linux/sock_diag.h, linux/inet_diag.h).
const SOCK_DIAG_BY_FAMILY: u16 = 20;

/// Every state but LISTEN (10), TIME_WAIT (6) and CLOSE (7): connections
/// whose session may still have something to say.
const STATES: u32 = (1 << 1) | (1 << 2) | (1 << 3) | (1 << 4) | (1 << 5) | (1 << 8) | (1 << 9);

#[repr(C)]
#[derive(Clone, Copy, Default)]
struct SockId {
    sport: [u8; 2],
    dport: [u8; 2],
    src: [u8; 16],
    dst: [u8; 16],
    interface: u32,
    cookie: [u32; 2],
}

#[repr(C)]
#[derive(Clone, Copy)]
struct Request {
    // struct nlmsghdr
    len: u32,
    kind: u16,
    flags: u16,
    seq: u32,
    pid: u32,
    // struct inet_diag_req_v2
    family: u8,
    protocol: u8,
    ext: u8,
    pad: u8,
    states: u32,
    id: SockId,
}

/// Open connections with an FTP control port at either end, in every
/// network namespace in use. Namespaces that cannot be entered are skipped;
/// the returned errors say which and why.
pub fn open_control_connections(control_ports: &[u16]) -> (Vec<OpenConnection>, Vec<String>) {
    let mut found = Vec::new();
    let mut warnings = Vec::new();
    let own = netns::own();
    for netns::Namespace { inode, path } in netns::namespaces() {
        let ports = control_ports.to_vec();
        let result = std::thread::spawn(move || -> io::Result<Vec<OpenConnection>> {
            // Entering another namespace takes CAP_SYS_ADMIN; our own does not
            // need entering.
            if Some(inode) != own {
                netns::enter(&path)?;
            }
            let mut all = dump(libc::AF_INET as u8, inode)?;
            all.extend(dump(libc::AF_INET6 as u8, inode)?);
            Ok(all
                .into_iter()
                .filter(|c| ports.contains(&c.local.port()) || ports.contains(&c.remote.port()))
                .collect())
        })
        .join();
        match result {
            Ok(Ok(connections)) => found.extend(connections),
            Ok(Err(e)) => warnings.push(format!("network namespace {inode}: {e}")),
            Err(_) => warnings.push(format!("network namespace {inode}: the reader panicked")),
        }
    }
    (found, warnings)
}

/// Every TCP connection of `family` in this thread's network namespace.
fn dump(family: u8, netns: u32) -> io::Result<Vec<OpenConnection>> {
    let socket = netlink::open(libc::NETLINK_SOCK_DIAG, None)?;
    let request = Request {
        len: std::mem::size_of::<Request>() as u32,
        kind: SOCK_DIAG_BY_FAMILY,
        flags: (libc::NLM_F_REQUEST | libc::NLM_F_DUMP) as u16,
        seq: 1,
        pid: 0,
        family,
        protocol: libc::IPPROTO_TCP as u8,
        ext: 0,
        pad: 0,
        states: STATES,
        id: SockId::default(),
    };
    // SAFETY: the bytes of a plain repr(C) struct we own, which has no
    // padding (`the_request_has_the_kernels_layout`).
    let bytes = unsafe {
        std::slice::from_raw_parts((&raw const request).cast::<u8>(), size_of::<Request>())
    };
    netlink::send(&socket, bytes)?;
    let mut found = Vec::new();
    let mut buffer = vec![0u8; 64 * 1024];
    loop {
        let got = netlink::recv(&socket, &mut buffer)?;
        match parse_messages(&buffer[..got], netns, &mut found)? {
            Parsed::More => {}
            Parsed::Done => return Ok(found),
        }
    }
}

enum Parsed {
    More,
    Done,
}

/// Parses one datagram of netlink messages into `found`.
fn parse_messages(bytes: &[u8], netns: u32, found: &mut Vec<OpenConnection>) -> io::Result<Parsed> {
    let mut messages = Messages::new(bytes);
    for message in &mut messages {
        let body = &message[netlink::HEADER..];
        match netlink::kind(message) {
            Some(netlink::DONE) => return Ok(Parsed::Done),
            Some(netlink::ERROR) => match netlink::error(message) {
                Some(0) | None => {}
                Some(errno) => return Err(io::Error::from_raw_os_error(-errno)),
            },
            Some(SOCK_DIAG_BY_FAMILY) => {
                if let Some(connection) = parse_diag_msg(body, netns) {
                    found.push(connection);
                }
            }
            _ => {}
        }
    }
    if messages.truncated() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "sock_diag: truncated message",
        ));
    }
    Ok(Parsed::More)
}

/// `struct inet_diag_msg`: family, state, timer, retrans, then the socket id.
fn parse_diag_msg(body: &[u8], netns: u32) -> Option<OpenConnection> {
    let family = *body.first()?;
    let state = *body.get(1)?;
    let id = body.get(4..4 + std::mem::size_of::<SockId>())?;
    let sport = u16::from_be_bytes([id[0], id[1]]);
    let dport = u16::from_be_bytes([id[2], id[3]]);
    let address = |raw: &[u8]| -> Option<IpAddr> {
        Some(if family == libc::AF_INET as u8 {
            IpAddr::V4(Ipv4Addr::new(raw[0], raw[1], raw[2], raw[3]))
        } else {
            let v6 = Ipv6Addr::from(<[u8; 16]>::try_from(raw).ok()?);
            IpAddr::V6(v6).to_canonical()
        })
    };
    Some(OpenConnection {
        netns,
        local: SocketAddr::new(address(&id[4..20])?, sport),
        remote: SocketAddr::new(address(&id[20..36])?, dport),
        state,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A netlink datagram with one `inet_diag_msg` and netlink::DONE, laid out
    /// as the kernel sends them.
    fn datagram() -> Vec<u8> {
        let mut msg = vec![0u8; netlink::HEADER];
        msg.extend([libc::AF_INET as u8, 1, 0, 0]);
        msg.extend(21u16.to_be_bytes());
        msg.extend(40000u16.to_be_bytes());
        msg.extend([192, 0, 2, 1]);
        msg.extend([0; 12]);
        msg.extend([192, 0, 2, 2]);
        msg.extend([0; 12]);
        msg.extend([0; 12]); // interface, cookie
        msg.extend([0; 20]); // expires, rqueue, wqueue, uid, inode
        let len = msg.len() as u32;
        msg[0..4].copy_from_slice(&len.to_ne_bytes());
        msg[4..6].copy_from_slice(&SOCK_DIAG_BY_FAMILY.to_ne_bytes());
        let mut done = vec![0u8; netlink::HEADER + 4];
        let done_len = done.len() as u32;
        done[0..4].copy_from_slice(&done_len.to_ne_bytes());
        done[4..6].copy_from_slice(&netlink::DONE.to_ne_bytes());
        msg.extend(done);
        msg
    }

    #[test]
    fn parses_a_dump() {
        let mut found = Vec::new();
        assert!(matches!(
            parse_messages(&datagram(), 7, &mut found).unwrap(),
            Parsed::Done
        ));
        assert_eq!(
            found,
            [OpenConnection {
                netns: 7,
                local: "192.0.2.1:21".parse().unwrap(),
                remote: "192.0.2.2:40000".parse().unwrap(),
                state: 1,
            }]
        );
    }

    #[test]
    fn a_truncated_message_is_an_error_not_a_panic() {
        let bytes = datagram();
        let mut found = Vec::new();
        for cut in 0..bytes.len() {
            let _ = parse_messages(&bytes[..cut], 7, &mut found);
        }
        let mut bad = bytes.clone();
        bad[0..4].copy_from_slice(&10_000u32.to_ne_bytes());
        assert!(parse_messages(&bad, 7, &mut Vec::new()).is_err());
    }

    #[test]
    fn the_request_has_the_kernels_layout() {
        // nlmsghdr (16) + inet_diag_req_v2 (56).
        assert_eq!(std::mem::size_of::<Request>(), 72);
        assert_eq!(std::mem::size_of::<SockId>(), 48);
    }
}

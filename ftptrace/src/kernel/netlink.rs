//! Netlink as sock_diag and ctnetlink are asked: a socket in this thread's
//! network namespace, one request sent, datagrams read, and their messages
//! walked as untrusted bytes (linux/netlink.h).

use std::{
    io,
    os::fd::{AsRawFd, FromRawFd, OwnedFd},
    time::Duration,
};

/// `struct nlmsghdr`: length, type, flags, sequence number, port id.
pub const HEADER: usize = 16;
/// Message types every netlink family shares.
pub const ERROR: u16 = 2;
pub const DONE: u16 = 3;

/// A netlink socket of `protocol` in this thread's network namespace; its
/// reads give up after `read_timeout` when there is one.
pub fn open(protocol: libc::c_int, read_timeout: Option<Duration>) -> io::Result<OwnedFd> {
    // SAFETY: socket(2) with constant arguments; the fd is owned below.
    let fd = unsafe {
        libc::socket(
            libc::AF_NETLINK,
            libc::SOCK_RAW | libc::SOCK_CLOEXEC,
            protocol,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a fresh fd nobody else owns.
    let socket = unsafe { OwnedFd::from_raw_fd(fd) };
    if let Some(timeout) = read_timeout {
        let timeout = libc::timeval {
            tv_sec: libc::time_t::try_from(timeout.as_secs()).unwrap_or(libc::time_t::MAX),
            tv_usec: timeout.subsec_micros().into(),
        };
        // SAFETY: setsockopt(2) reading a timeval we own, of its size.
        let set = unsafe {
            libc::setsockopt(
                socket.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_RCVTIMEO,
                (&raw const timeout).cast(),
                std::mem::size_of::<libc::timeval>() as libc::socklen_t,
            )
        };
        if set != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(socket)
}

/// Sends one request, whole.
pub fn send(socket: &OwnedFd, request: &[u8]) -> io::Result<()> {
    // SAFETY: send(2) of a buffer we own, of its length.
    let sent = unsafe {
        libc::send(
            socket.as_raw_fd(),
            request.as_ptr().cast(),
            request.len(),
            0,
        )
    };
    match usize::try_from(sent) {
        Ok(sent) if sent == request.len() => Ok(()),
        Ok(_) => Err(io::Error::new(
            io::ErrorKind::WriteZero,
            "netlink request cut short",
        )),
        Err(_) => Err(io::Error::last_os_error()),
    }
}

/// Reads one datagram into `buffer`: its length.
pub fn recv(socket: &OwnedFd, buffer: &mut [u8]) -> io::Result<usize> {
    // SAFETY: recv(2) into a buffer we own, of its length.
    let got = unsafe {
        libc::recv(
            socket.as_raw_fd(),
            buffer.as_mut_ptr().cast(),
            buffer.len(),
            0,
        )
    };
    usize::try_from(got)
        .map(|got| got.min(buffer.len()))
        .map_err(|_| io::Error::last_os_error())
}

/// Netlink lengths are padded to 4 bytes.
pub fn align(len: usize) -> usize {
    len.saturating_add(3) & !3
}

pub fn u16_at(bytes: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_ne_bytes(
        bytes.get(at..at.checked_add(2)?)?.try_into().ok()?,
    ))
}

pub fn u32_at(bytes: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_ne_bytes(
        bytes.get(at..at.checked_add(4)?)?.try_into().ok()?,
    ))
}

/// A message's type.
pub fn kind(message: &[u8]) -> Option<u16> {
    u16_at(message, 4)
}

/// A message's sequence number.
pub fn seq(message: &[u8]) -> Option<u32> {
    u32_at(message, 8)
}

/// An `ERROR` message's errno: 0 for an acknowledgement, else negative.
pub fn error(message: &[u8]) -> Option<i32> {
    u32_at(message, HEADER).map(|e| i32::from_ne_bytes(e.to_ne_bytes()))
}

/// The messages of a datagram, each whole (header included), up to the
/// first whose length does not fit; [`Messages::truncated`] says whether
/// one did not.
pub struct Messages<'a> {
    rest: &'a [u8],
    truncated: bool,
}

impl<'a> Messages<'a> {
    pub fn new(datagram: &'a [u8]) -> Self {
        Self {
            rest: datagram,
            truncated: false,
        }
    }

    /// Whether a message claimed more bytes than the datagram held, or
    /// fewer than its own header.
    pub fn truncated(&self) -> bool {
        self.truncated
    }
}

impl<'a> Iterator for Messages<'a> {
    type Item = &'a [u8];

    fn next(&mut self) -> Option<&'a [u8]> {
        let len = usize::try_from(u32_at(self.rest, 0)?).ok()?;
        let Some(message) = self.rest.get(..len).filter(|_| len >= HEADER) else {
            self.truncated = true;
            self.rest = &[];
            return None;
        };
        self.rest = self.rest.get(align(len)..).unwrap_or(&[]);
        Some(message)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(kind: u16, body: &[u8]) -> Vec<u8> {
        let mut m = Vec::new();
        m.extend(u32::try_from(HEADER + body.len()).unwrap().to_ne_bytes());
        m.extend(kind.to_ne_bytes());
        m.extend([0u8; 10]);
        m.extend(body);
        m.resize(align(m.len()), 0);
        m
    }

    #[test]
    fn walks_padded_messages_and_stops_at_one_that_does_not_fit() {
        let mut datagram = message(20, &[1, 2, 3]);
        datagram.extend(message(DONE, &[]));
        let mut messages = Messages::new(&datagram);
        let kinds: Vec<_> = (&mut messages).map(kind).collect();
        assert_eq!(kinds, [Some(20), Some(DONE)]);
        assert!(!messages.truncated());

        datagram.extend(10_000u32.to_ne_bytes());
        let mut messages = Messages::new(&datagram);
        assert_eq!((&mut messages).count(), 2);
        assert!(messages.truncated());
    }

    #[test]
    fn a_length_shorter_than_the_header_is_truncation_not_a_loop() {
        let datagram = [4u8, 0, 0, 0, 0, 0, 0, 0];
        let mut messages = Messages::new(&datagram);
        assert_eq!((&mut messages).count(), 0);
        assert!(messages.truncated());
    }
}

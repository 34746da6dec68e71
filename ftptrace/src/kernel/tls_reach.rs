//! FTP processes the TLS uprobes cannot reach: a process with an FTP
//! control port open (listening or connected) that maps neither OpenSSL nor
//! GnuTLS. If it speaks FTPS its TLS is its own (statically linked: Go,
//! Rust, a vendored OpenSSL), so its plaintext is out of reach and its
//! sessions are followed from the outside, as without `tls_plaintext`.
//!
//! The sockets are read from `/proc/<pid>/net/tcp{,6}` once per network
//! namespace, and tied to processes by the inodes their descriptors name.
//! Every byte of /proc here is a stranger's (process names above all).

use std::collections::{HashMap, HashSet};

use serde::Serialize;

use super::tls_libraries::{LIBRARIES, is_file_of};
use crate::printable::printable;

/// Processes listed at most: a host with thousands of FTP clients needs
/// the first few to see the point.
const LISTED: usize = 16;

/// A process with an FTP control port open and no watched TLS library.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct Unreached {
    pub pid: u32,
    /// Its name (`comm`), made printable.
    pub name: String,
    /// The control port it has open.
    pub port: u16,
}

/// The processes on this host with a port of `control_ports` open that map
/// no watched TLS library; at most [`LISTED`].
pub fn unreached(control_ports: &[u16]) -> Vec<Unreached> {
    let mut by_netns: HashMap<String, Vec<u32>> = HashMap::new();
    for pid in super::procfs::pids() {
        let (Ok(netns), Ok(pid)) = (
            std::fs::read_link(format!("/proc/{pid}/ns/net")),
            pid.parse::<u32>(),
        ) else {
            continue;
        };
        by_netns
            .entry(netns.display().to_string())
            .or_default()
            .push(pid);
    }
    let mut found = Vec::new();
    'namespaces: for pids in by_netns.values() {
        let Some(&first) = pids.first() else { continue };
        let sockets = control_sockets(first, control_ports);
        if sockets.is_empty() {
            continue;
        }
        for &pid in pids {
            let Some(port) = open_socket(pid, &sockets) else {
                continue;
            };
            if maps_tls(pid) {
                continue;
            }
            found.push(Unreached {
                pid,
                name: comm(pid),
                port,
            });
            if found.len() == LISTED {
                break 'namespaces;
            }
        }
    }
    found.sort_by_key(|u| u.pid);
    found
}

/// The socket inodes with a control port at either end in `pid`'s network
/// namespace, with that port.
fn control_sockets(pid: u32, control_ports: &[u16]) -> HashMap<u64, u16> {
    let mut sockets = HashMap::new();
    for file in ["tcp", "tcp6"] {
        let Ok(table) = std::fs::read_to_string(format!("/proc/{pid}/net/{file}")) else {
            continue;
        };
        for (local, remote, inode) in table.lines().skip(1).filter_map(socket_line) {
            if let Some(&port) = [local, remote].iter().find(|p| control_ports.contains(p))
                && inode != 0
            {
                sockets.insert(inode, port);
            }
        }
    }
    sockets
}

/// A `/proc/net/tcp` line's local and remote ports and socket inode.
fn socket_line(line: &str) -> Option<(u16, u16, u64)> {
    let fields: Vec<&str> = line.split_whitespace().collect();
    let port = |field: &str| u16::from_str_radix(field.rsplit(':').next()?, 16).ok();
    Some((
        port(fields.get(1)?)?,
        port(fields.get(2)?)?,
        fields.get(9)?.parse().ok()?,
    ))
}

/// The control port of the first of `sockets` one of `pid`'s descriptors
/// names.
fn open_socket(pid: u32, sockets: &HashMap<u64, u16>) -> Option<u16> {
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd")).ok()?;
    fds.flatten().find_map(|fd| {
        let target = std::fs::read_link(fd.path()).ok()?;
        let inode: u64 = target
            .to_str()?
            .strip_prefix("socket:[")?
            .strip_suffix(']')?
            .parse()
            .ok()?;
        sockets.get(&inode).copied()
    })
}

/// Whether `pid` maps a file of a library the probe watches.
fn maps_tls(pid: u32) -> bool {
    let Ok(maps) = std::fs::read_to_string(format!("/proc/{pid}/maps")) else {
        // Gone, or not ours to read: not worth a warning.
        return true;
    };
    maps_a_library(&maps)
}

fn maps_a_library(maps: &str) -> bool {
    let paths: HashSet<&str> = maps
        .lines()
        .filter_map(|line| line.split_whitespace().nth(5))
        .collect();
    paths.iter().any(|path| {
        LIBRARIES
            .iter()
            .any(|library| is_file_of(library, std::path::Path::new(path)))
    })
}

fn comm(pid: u32) -> String {
    let name = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
    printable(name.trim_end_matches('\n')).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_socket_line_gives_its_ports_and_inode() {
        let header = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode";
        assert_eq!(socket_line(header), None);
        let listening = "   0: 010200C0:0015 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 123456 1 0000000000000000 100 0 0 10 0";
        assert_eq!(socket_line(listening), Some((21, 0, 123456)));
        let v6 = "   1: 00000000000000000000000001000000:9C40 B80D0120000000000000000001000000:0015 01 00000000:00000000 00:00000000 00000000     0        0 99 1 0000000000000000 20 4 30 10 -1";
        assert_eq!(socket_line(v6), Some((40000, 21, 99)));
        assert_eq!(socket_line("   2: garbage"), None);
    }

    #[test]
    fn a_process_maps_a_watched_library_by_its_file_name() {
        let with = "7f00-7f01 r-xp 00000000 fe:01 42 /usr/lib/x86_64-linux-gnu/libssl.so.3\n";
        let without = "5500-5501 r-xp 00000000 fe:01 7 /usr/local/bin/static-ftpd\n\
                       7f00-7f01 r-xp 00000000 fe:01 9 /usr/lib/x86_64-linux-gnu/libc.so.6\n";
        assert!(maps_a_library(with));
        assert!(!maps_a_library(without));
        assert!(maps_a_library(
            "7f00-7f01 r-xp 00000000 fe:01 42 /lib/libgnutls.so.30\n"
        ));
    }
}

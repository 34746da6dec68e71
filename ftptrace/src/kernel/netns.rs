//! The host's network namespaces: which there are, and moving a thread into
//! one. A socket opened inside a namespace stays in it after its thread
//! leaves, so sock_diag and conntrack enter each namespace only to open
//! their sockets there.

use std::{
    collections::HashSet,
    fs::File,
    io,
    os::{
        fd::{AsRawFd, FromRawFd},
        unix::fs::MetadataExt,
    },
    path::{Path, PathBuf},
};

/// Where this process's own network namespace is seen.
const OWN: &str = "/proc/self/ns/net";

/// Where `ip netns add` bind-mounts the namespaces it names; such a
/// namespace (a router's, say) may have no process in it at all.
const NAMED: &str = "/run/netns";

/// One network namespace, and a path that opens it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Namespace {
    /// The inode of its namespace file: the number ftptrace reports as
    /// `netns`, unique while the namespace exists.
    pub inode: u32,
    pub path: PathBuf,
}

/// The inode of this process's own network namespace.
pub fn own() -> Option<u32> {
    std::fs::metadata(OWN)
        .ok()
        .and_then(|m| u32::try_from(m.ino()).ok())
}

/// Every network namespace on the host, once each: our own first, then the
/// named ones (`/run/netns`), then every process's.
pub fn namespaces() -> Vec<Namespace> {
    let mut seen = HashSet::new();
    let mut found = Vec::new();
    // Namespace files live on nsfs; a file under /run/netns whose bind mount
    // is gone is a plain file on another device, and no namespace.
    let Ok(own) = std::fs::metadata(OWN) else {
        return found;
    };
    let nsfs = own.dev();
    let mut add = |path: PathBuf| {
        // A process may be gone, a namespace deleted, since we listed it.
        let Ok(meta) = std::fs::metadata(&path) else {
            return;
        };
        let Ok(inode) = u32::try_from(meta.ino()) else {
            return;
        };
        if meta.dev() == nsfs && seen.insert(inode) {
            found.push(Namespace { inode, path });
        }
    };
    add(PathBuf::from(OWN));
    if let Ok(dir) = std::fs::read_dir(NAMED) {
        let mut named: Vec<PathBuf> = dir.flatten().map(|entry| entry.path()).collect();
        named.sort();
        named.into_iter().for_each(&mut add);
    }
    for pid in super::procfs::pids() {
        add(PathBuf::from(format!("/proc/{pid}/ns/net")));
    }
    found
}

/// `ioctl(NS_GET_USERNS)` (linux/nsfs.h): the user namespace that owns a
/// namespace, as a new file descriptor.
const NS_GET_USERNS: libc::c_ulong = 0xb701;

/// Whether the namespace at `path` is owned by our own user namespace: one
/// that only a holder of our capabilities could have filled. A namespace
/// owned by an unprivileged user's user namespace is that user's to write
/// in (its conntrack entries, say).
pub fn owned_by_ours(path: &Path) -> io::Result<bool> {
    let ns = File::open(path)?;
    // SAFETY: an ioctl without an argument on an open namespace file; on
    // success it returns a new descriptor, owned below.
    let owner = unsafe { libc::ioctl(ns.as_raw_fd(), NS_GET_USERNS) };
    if owner < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `owner` is a descriptor the kernel just gave us, owned once.
    let owner = unsafe { std::os::fd::OwnedFd::from_raw_fd(owner) };
    let owner = File::from(owner).metadata()?;
    let ours = std::fs::metadata("/proc/self/ns/user")?;
    Ok(owner.ino() == ours.ino() && owner.dev() == ours.dev())
}

/// Moves this thread into the network namespace at `path`. Takes
/// CAP_SYS_ADMIN; the thread should exist only for the work done there.
pub fn enter(path: &Path) -> io::Result<()> {
    let ns = File::open(path)?;
    // SAFETY: setns(2) on an open namespace file; it affects only the
    // calling thread.
    if unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn our_own_namespace_comes_first_and_none_twice() {
        let all = namespaces();
        assert_eq!(all.first().map(|n| n.inode), own());
        let inodes: HashSet<u32> = all.iter().map(|n| n.inode).collect();
        assert_eq!(inodes.len(), all.len());
    }

    #[test]
    fn our_own_namespace_is_owned_by_our_user_namespace() {
        assert!(owned_by_ours(Path::new(OWN)).expect("nsfs ioctl"));
    }
}

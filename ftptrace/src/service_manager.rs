//! Telling the service manager how the run stands (systemd's `Type=notify`,
//! the `sd_notify` protocol): one datagram per state to the socket named in
//! `NOTIFY_SOCKET`. Written here rather than linked from libsystemd: the
//! protocol is one datagram, and a run without a service manager sends none.

use std::{
    ffi::OsString,
    os::unix::net::{SocketAddr, UnixDatagram},
};

/// Where the service manager listens, if it started this run.
pub struct Notifier {
    socket: UnixDatagram,
    to: SocketAddr,
}

impl Notifier {
    /// From `NOTIFY_SOCKET` (a path, or `@name` for an abstract socket);
    /// `None` when the run was not started by a service manager.
    pub fn from_env() -> anyhow::Result<Option<Self>> {
        let Some(name) = std::env::var_os("NOTIFY_SOCKET") else {
            return Ok(None);
        };
        let to = address(&name)
            .map_err(|e| anyhow::anyhow!("NOTIFY_SOCKET {}: {e}", name.to_string_lossy()))?;
        let socket = UnixDatagram::unbound()
            .map_err(|e| anyhow::anyhow!("cannot make a socket for NOTIFY_SOCKET: {e}"))?;
        Ok(Some(Self { socket, to }))
    }

    /// Sends `state` (`READY=1`, `STOPPING=1`, `STATUS=...`, one per line).
    pub fn notify(&self, state: &str) -> anyhow::Result<()> {
        self.socket
            .send_to_addr(state.as_bytes(), &self.to)
            .map(drop)
            .map_err(|e| anyhow::anyhow!("cannot tell the service manager {state:?}: {e}"))
    }

    /// [`Self::notify`], a failure said on stderr: the service manager's
    /// trouble does not end the run.
    pub fn tell(notifier: Option<&Self>, state: &str) {
        if let Some(Err(e)) = notifier.map(|n| n.notify(state)) {
            log::warn!("{e:#}");
        }
    }
}

/// A `NOTIFY_SOCKET` value as a socket address.
fn address(name: &OsString) -> std::io::Result<SocketAddr> {
    use std::os::{linux::net::SocketAddrExt as _, unix::ffi::OsStrExt as _};
    match name.as_bytes() {
        [b'@', abstract_name @ ..] => SocketAddr::from_abstract_name(abstract_name),
        [b'/', ..] => SocketAddr::from_pathname(name),
        _ => Err(std::io::Error::other(
            "neither a path nor an abstract name (@...)",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_and_abstract_names_are_addresses() {
        use std::os::linux::net::SocketAddrExt as _;
        let path = address(&"/run/systemd/notify".into()).unwrap();
        assert_eq!(
            path.as_pathname(),
            Some(std::path::Path::new("/run/systemd/notify"))
        );
        let abstract_name = address(&"@ftptrace-test".into()).unwrap();
        assert_eq!(
            abstract_name.as_abstract_name(),
            Some(&b"ftptrace-test"[..])
        );
        assert!(address(&"relative".into()).is_err());
    }

    #[test]
    fn states_arrive_as_datagrams() {
        let dir = std::env::temp_dir().join(format!("ftptrace-notify-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir(&dir).unwrap();
        let path = dir.join("notify");
        let manager = UnixDatagram::bind(&path).unwrap();
        let notifier = Notifier {
            socket: UnixDatagram::unbound().unwrap(),
            to: address(&path.clone().into_os_string()).unwrap(),
        };
        notifier.notify("READY=1").unwrap();
        let mut buffer = [0; 64];
        let n = manager.recv(&mut buffer).unwrap();
        assert_eq!(&buffer[..n], b"READY=1");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

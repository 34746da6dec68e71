//! A real vsftpd per test, in the server namespace, serving generated files
//! to anonymous users in passive mode.

use std::{
    fmt::Write as _,
    net::IpAddr,
    ops::RangeInclusive,
    path::{Path, PathBuf},
    time::Duration,
};

use crate::{deadline::wait_for, netns::NetNs, process::Daemon, tmp::TempDir};

/// vsftpd's passive port range in these tests (`pasv_min_port`-`pasv_max_port`).
pub const PASSIVE_PORTS: RangeInclusive<u16> = 30000..=30009;

/// How long vsftpd may take to listen.
pub const LISTEN_TIMEOUT: Duration = Duration::from_secs(10);

/// vsftpd's `secure_chroot_dir` default; the Debian package ships it.
const SECURE_CHROOT_DIR: &str = "/var/run/vsftpd/empty";

/// Which socket vsftpd listens on.
#[derive(Clone, Copy, Debug)]
pub enum Listen {
    /// `listen=YES`, `listen_address=<addr>`.
    V4(IpAddr),
    /// `listen_ipv6=YES`, `listen_address6=<addr>`.
    V6(IpAddr),
    /// `listen_ipv6=YES` on `::`: IPv4 clients arrive as IPv4-mapped addresses.
    V6Any,
}

#[derive(Clone, Debug)]
pub struct VsftpdConfig {
    pub listen: Listen,
    pub port: u16,
    pub passive: RangeInclusive<u16>,
    /// Files in the anonymous root: name and size (content from [`pattern`]).
    pub files: Vec<(String, usize)>,
}

impl VsftpdConfig {
    /// Port 21, [`PASSIVE_PORTS`], one 4 MiB file `file`.
    pub fn new(listen: Listen) -> Self {
        Self {
            listen,
            port: 21,
            passive: PASSIVE_PORTS,
            files: vec![("file".into(), 4 << 20)],
        }
    }

    /// Replaces the served files by one file `name` of `size` bytes.
    #[must_use]
    pub fn with_file(mut self, name: &str, size: usize) -> Self {
        self.files = vec![(name.into(), size)];
        self
    }

    /// The `vsftpd.conf` text for anonymous root `anon_root`.
    pub fn render(&self, anon_root: &Path) -> String {
        let mut conf = String::new();
        match self.listen {
            Listen::V4(addr) => {
                conf.push_str("listen=YES\nlisten_ipv6=NO\n");
                let _ = writeln!(conf, "listen_address={addr}");
            }
            Listen::V6(addr) => {
                conf.push_str("listen=NO\nlisten_ipv6=YES\n");
                let _ = writeln!(conf, "listen_address6={addr}");
            }
            Listen::V6Any => conf.push_str("listen=NO\nlisten_ipv6=YES\n"),
        }
        let _ = writeln!(conf, "listen_port={}", self.port);
        let _ = writeln!(conf, "anon_root={}", anon_root.display());
        let _ = writeln!(conf, "pasv_min_port={}", self.passive.start());
        let _ = writeln!(conf, "pasv_max_port={}", self.passive.end());
        conf.push_str(
            "background=NO\n\
             anonymous_enable=YES\n\
             no_anon_password=YES\n\
             local_enable=NO\n\
             write_enable=NO\n\
             pasv_enable=YES\n\
             seccomp_sandbox=NO\n\
             xferlog_enable=NO\n\
             # Keep every vsftpd process in the test's namespace (no per-session\n\
             # namespaces), so cleanup finds and kills them all.\n\
             isolate=NO\n\
             isolate_network=NO\n",
        );
        conf
    }
}

/// The content of a served file of `len` bytes: a repeating pattern with a
/// prime period, so shifted or truncated data does not compare equal.
pub fn pattern(len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| u8::try_from(i % 251).expect("below 251"))
        .collect()
}

/// A running vsftpd; killed on drop, its files removed.
pub struct Vsftpd {
    daemon: Daemon,
    config: VsftpdConfig,
    // Dropped after the daemon (fields drop in declaration order).
    _dir: TempDir,
}

impl Vsftpd {
    /// Writes the config and files, starts `vsftpd <conf>` in `ns` and waits
    /// until it listens.
    #[track_caller]
    pub fn start(ns: &NetNs, config: VsftpdConfig) -> Self {
        std::fs::create_dir_all(SECURE_CHROOT_DIR)
            .unwrap_or_else(|e| panic!("cannot create {SECURE_CHROOT_DIR}: {e}"));
        let dir = TempDir::new("vsftpd");
        let root = dir.subdir("root");
        for (name, size) in &config.files {
            let path = root.join(name);
            std::fs::write(&path, pattern(*size))
                .unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
        }
        let conf: PathBuf = dir.path().join("vsftpd.conf");
        std::fs::write(&conf, config.render(&root))
            .unwrap_or_else(|e| panic!("cannot write {}: {e}", conf.display()));
        let mut daemon = Daemon::spawn(
            ns.command("vsftpd").arg(&conf),
            &dir.path().join("vsftpd.log"),
        );
        wait_for(
            &format!("vsftpd to listen on port {} in {}", config.port, ns.name()),
            LISTEN_TIMEOUT,
            || {
                daemon.assert_running();
                if ns.listening_on(config.port) {
                    Ok(())
                } else {
                    Err("not listening".into())
                }
            },
        );
        Self {
            daemon,
            config,
            _dir: dir,
        }
    }

    pub fn pid(&self) -> u32 {
        self.daemon.pid()
    }

    pub fn config(&self) -> &VsftpdConfig {
        &self.config
    }

    /// The exact bytes served as `name`.
    #[track_caller]
    pub fn expected(&self, name: &str) -> Vec<u8> {
        let (_, size) = self
            .config
            .files
            .iter()
            .find(|(n, _)| n == name)
            .unwrap_or_else(|| panic!("vsftpd serves no file {name}"));
        pattern(*size)
    }

    /// What vsftpd wrote to stdout and stderr (for failure messages).
    pub fn log(&self) -> String {
        self.daemon.log_text()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::netns::{SERVER_V4, SERVER_V6};

    #[test]
    fn config_for_each_listen_kind() {
        let root = Path::new("/r");
        let v4 = VsftpdConfig::new(Listen::V4(SERVER_V4)).render(root);
        assert!(
            v4.starts_with(
                "listen=YES\nlisten_ipv6=NO\nlisten_address=192.0.2.1\nlisten_port=21\n"
            )
        );
        assert!(v4.contains("anon_root=/r\npasv_min_port=30000\npasv_max_port=30009\n"));
        let v6 = VsftpdConfig::new(Listen::V6(SERVER_V6)).render(root);
        assert!(v6.starts_with("listen=NO\nlisten_ipv6=YES\nlisten_address6=2001:db8::1\n"));
        let any = VsftpdConfig::new(Listen::V6Any).render(root);
        assert!(!any.contains("listen_address"));
    }

    #[test]
    fn pattern_repeats_with_period_251() {
        let p = pattern(600);
        assert_eq!(p.len(), 600);
        assert_eq!(p[250], 250);
        assert_eq!(p[251], 0);
        assert_eq!(p[..251], p[251..502]);
    }
}

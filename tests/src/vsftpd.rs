//! A real vsftpd per test, in the server namespace, serving generated files
//! to anonymous users in passive mode.

use std::{
    fmt::Write as _,
    net::IpAddr,
    ops::RangeInclusive,
    path::{Path, PathBuf},
    process::Command,
    time::Duration,
};

use crate::{netns::NetNs, process::Daemon, tmp::TempDir};

/// vsftpd's passive port range in these tests (`pasv_min_port`-`pasv_max_port`).
pub const PASSIVE_PORTS: RangeInclusive<u16> = 30000..=30009;

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
    /// Ask anonymous users for a password (`no_anon_password=NO`), so
    /// clients send `PASS`.
    pub anonymous_password: bool,
    /// Log every command and reply (`log_ftp_protocol`), for
    /// [`Vsftpd::protocol_log`].
    pub log_protocol: bool,
    /// Offer `AUTH TLS` with a self-signed certificate made at start.
    pub tls: bool,
    /// That certificate expired long ago.
    pub tls_expired: bool,
    /// More `key=value` lines (e.g. `idle_session_timeout`, `max_clients`).
    pub settings: Vec<(String, String)>,
    /// A directory of the anonymous root that anonymous users may upload
    /// into (the root itself stays unwritable, as vsftpd requires).
    pub upload_dir: Option<String>,
}

impl VsftpdConfig {
    /// Port 21, [`PASSIVE_PORTS`], one 4 MiB file `file`.
    pub fn new(listen: Listen) -> Self {
        Self {
            listen,
            port: 21,
            passive: PASSIVE_PORTS,
            files: vec![("file".into(), 4 << 20)],
            anonymous_password: false,
            log_protocol: false,
            tls: false,
            tls_expired: false,
            settings: Vec::new(),
            upload_dir: None,
        }
    }

    /// Adds a `key=value` line to the config.
    #[must_use]
    pub fn with(mut self, key: &str, value: &str) -> Self {
        self.settings.push((key.into(), value.into()));
        self
    }

    /// Offers `AUTH TLS` with a self-signed certificate (which verifying
    /// clients reject).
    #[must_use]
    pub fn with_tls(mut self) -> Self {
        self.tls = true;
        self
    }

    /// [`Self::with_tls`] with a certificate valid only in 2020.
    #[must_use]
    pub fn with_expired_tls(mut self) -> Self {
        self.tls = true;
        self.tls_expired = true;
        self
    }

    /// Ask anonymous users for a password and log every command and reply.
    #[must_use]
    pub fn with_password_and_protocol_log(mut self) -> Self {
        self.anonymous_password = true;
        self.log_protocol = true;
        self
    }

    /// Lets anonymous users upload into the directory `name`.
    #[must_use]
    pub fn with_upload_dir(mut self, name: &str) -> Self {
        self.upload_dir = Some(name.into());
        self
    }

    /// Replaces the served files by one file `name` of `size` bytes.
    #[must_use]
    pub fn with_file(mut self, name: &str, size: usize) -> Self {
        self.files = vec![(name.into(), size)];
        self
    }

    /// The `vsftpd.conf` text for anonymous root `anon_root`, logging to
    /// `log` if the protocol is logged.
    pub fn render(&self, anon_root: &Path, log: &Path) -> String {
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
        let _ = writeln!(
            conf,
            "no_anon_password={}",
            if self.anonymous_password { "NO" } else { "YES" }
        );
        if self.log_protocol {
            // The vsftpd log format, not xferlog's; PASS is logged as
            // `PASS <password>`.
            let _ = writeln!(
                conf,
                "xferlog_enable=YES\nxferlog_std_format=NO\nlog_ftp_protocol=YES\nvsftpd_log_file={}",
                log.display()
            );
        } else {
            conf.push_str("xferlog_enable=NO\n");
        }
        conf.push_str(
            "background=NO\n\
             anonymous_enable=YES\n\
             local_enable=NO\n\
             pasv_enable=YES\n\
             seccomp_sandbox=NO\n\
             # Keep every vsftpd process in the test's namespace (no per-session\n\
             # namespaces), so cleanup finds and kills them all.\n\
             isolate=NO\n\
             isolate_network=NO\n",
        );
        if self.upload_dir.is_some() {
            conf.push_str("write_enable=YES\nanon_upload_enable=YES\n");
        } else {
            conf.push_str("write_enable=NO\n");
        }
        if self.tls {
            let dir = anon_root.parent().unwrap_or(anon_root);
            let _ = writeln!(
                conf,
                "ssl_enable=YES\nallow_anon_ssl=YES\nforce_anon_logins_ssl=NO\nforce_anon_data_ssl=NO\n\
                 require_ssl_reuse=NO\nrsa_cert_file={}\nrsa_private_key_file={}",
                dir.join(TLS_CERT).display(),
                dir.join(TLS_KEY).display()
            );
        }
        for (key, value) in &self.settings {
            let _ = writeln!(conf, "{key}={value}");
        }
        conf
    }
}

/// The certificate and key files of a TLS server, in its directory.
const TLS_CERT: &str = "cert.pem";
const TLS_KEY: &str = "key.pem";

#[track_caller]
fn make_self_signed_certificate(dir: &Path) {
    let out = crate::process::run(
        Command::new("openssl").current_dir(dir).args([
            "req",
            "-x509",
            // P-256: an RSA key takes seconds to make in a TCG guest.
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=ftp.example.org",
            "-keyout",
            TLS_KEY,
            "-out",
            TLS_CERT,
        ]),
        Duration::from_secs(30),
    );
    assert!(
        out.status.success(),
        "openssl could not make a test certificate: {}",
        out.stderr
    );
}

/// A self-signed certificate for the same name, valid only on 1 January
/// 2020: `openssl ca` signs a request with its own key at those dates
/// (`req -x509` cannot date a certificate in the past).
#[track_caller]
fn make_expired_certificate(dir: &Path) {
    std::fs::write(
        dir.join("ca.cnf"),
        "[ca]\ndefault_ca = test\n[test]\ndatabase = index.txt\nnew_certs_dir = .\n\
         serial = serial\ndefault_md = sha256\npolicy = any\n[any]\ncommonName = supplied\n",
    )
    .expect("writing ca.cnf");
    std::fs::write(dir.join("index.txt"), "").expect("writing index.txt");
    std::fs::write(dir.join("serial"), "01\n").expect("writing serial");
    let steps: [&[&str]; 2] = [
        &[
            "req",
            "-new",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-subj",
            "/CN=ftp.example.org",
            "-keyout",
            TLS_KEY,
            "-out",
            "request.pem",
        ],
        &[
            "ca",
            "-batch",
            "-config",
            "ca.cnf",
            "-selfsign",
            "-keyfile",
            TLS_KEY,
            "-in",
            "request.pem",
            "-startdate",
            "20200101000000Z",
            "-enddate",
            "20200102000000Z",
            "-notext",
            "-out",
            TLS_CERT,
        ],
    ];
    for args in steps {
        let out = crate::process::run(
            Command::new("openssl").current_dir(dir).args(args),
            Duration::from_secs(30),
        );
        assert!(
            out.status.success(),
            "openssl {} could not make an expired certificate: {}",
            args[0],
            out.stderr
        );
    }
}

/// The content of a served file of `len` bytes: a repeating pattern with a
/// prime period, so shifted or truncated data does not compare equal.
/// The bytes a server configured with `files` serves as `name`.
#[track_caller]
pub fn served(server: &str, files: &[(String, usize)], name: &str) -> Vec<u8> {
    let (_, size) = files
        .iter()
        .find(|(n, _)| n == name)
        .unwrap_or_else(|| panic!("{server} serves no file {name}"));
    pattern(*size)
}

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
    dir: TempDir,
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
        if let Some(name) = &config.upload_dir {
            let path = root.join(name);
            std::fs::create_dir(&path)
                .and_then(|()| {
                    std::fs::set_permissions(
                        &path,
                        std::os::unix::fs::PermissionsExt::from_mode(0o777),
                    )
                })
                .unwrap_or_else(|e| panic!("cannot make {} writable: {e}", path.display()));
        }
        if config.tls {
            if config.tls_expired {
                make_expired_certificate(dir.path());
            } else {
                make_self_signed_certificate(dir.path());
            }
        }
        let conf: PathBuf = dir.path().join("vsftpd.conf");
        std::fs::write(&conf, config.render(&root, &dir.path().join(PROTOCOL_LOG)))
            .unwrap_or_else(|e| panic!("cannot write {}: {e}", conf.display()));
        let mut daemon = Daemon::spawn(
            ns.command("vsftpd").arg(&conf),
            &dir.path().join("vsftpd.log"),
        );
        ns.wait_listening(&mut daemon, config.port, "vsftpd");
        Self {
            daemon,
            config,
            dir,
        }
    }

    /// The self-signed certificate of a TLS server ([`VsftpdConfig::with_tls`]).
    pub fn certificate(&self) -> PathBuf {
        self.dir.path().join(TLS_CERT)
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
        served("vsftpd", &self.config.files, name)
    }

    /// What vsftpd wrote to stdout and stderr (for failure messages).
    pub fn log(&self) -> String {
        self.daemon.log_text()
    }

    /// The commands and replies vsftpd logged, in order, with the client
    /// address of each (needs [`VsftpdConfig::log_protocol`]). Only those
    /// lines are read: the login line of the same log holds an anonymous
    /// user's password, which must never reach test output.
    #[track_caller]
    pub fn protocol_log(&self) -> Vec<ProtocolLine> {
        assert!(self.config.log_protocol, "vsftpd logs no protocol here");
        let path = self.dir.path().join(PROTOCOL_LOG);
        let text = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
        text.lines().filter_map(ProtocolLine::parse).collect()
    }
}

/// The protocol log's file name in vsftpd's scratch directory.
const PROTOCOL_LOG: &str = "protocol.log";

/// One `FTP command` or `FTP response` line of vsftpd's log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProtocolLine {
    /// The client's address.
    pub client: String,
    /// A command the client sent (else a reply vsftpd sent).
    pub command: bool,
    /// The line as logged (`RETR file`, `226 Transfer complete.`).
    pub line: String,
}

impl ProtocolLine {
    /// `... FTP command: Client "192.0.2.2", "RETR file"`; `None` for any
    /// other line.
    pub fn parse(log_line: &str) -> Option<Self> {
        let (command, rest) = if let Some((_, rest)) = log_line.split_once("] FTP command: ") {
            (true, rest)
        } else {
            (false, log_line.split_once("] FTP response: ")?.1)
        };
        let rest = rest.strip_prefix("Client \"")?;
        let (client, rest) = rest.split_once("\", \"")?;
        let line = rest.strip_suffix('"')?;
        Some(Self {
            client: client.to_owned(),
            command,
            line: line.to_owned(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::netns::{SERVER_V4, SERVER_V6};

    #[test]
    fn config_for_each_listen_kind() {
        let root = Path::new("/r");
        let log = Path::new("/l");
        let v4 = VsftpdConfig::new(Listen::V4(SERVER_V4)).render(root, log);
        assert!(
            v4.starts_with(
                "listen=YES\nlisten_ipv6=NO\nlisten_address=192.0.2.1\nlisten_port=21\n"
            )
        );
        assert!(v4.contains("anon_root=/r\npasv_min_port=30000\npasv_max_port=30009\n"));
        let v6 = VsftpdConfig::new(Listen::V6(SERVER_V6)).render(root, log);
        assert!(v6.starts_with("listen=NO\nlisten_ipv6=YES\nlisten_address6=2001:db8::1\n"));
        let any = VsftpdConfig::new(Listen::V6Any).render(root, log);
        assert!(!any.contains("listen_address"));
        assert!(any.contains("no_anon_password=YES\nxferlog_enable=NO\n"));
        let logged = VsftpdConfig::new(Listen::V6Any)
            .with_password_and_protocol_log()
            .render(root, log);
        assert!(logged.contains("no_anon_password=NO\n"));
        assert!(logged.contains("log_ftp_protocol=YES\nvsftpd_log_file=/l\n"));
    }

    #[test]
    fn protocol_log_lines_parse_and_others_do_not() {
        let command = r#"Tue Dec  1 21:47:41 2026 [pid 24681] [ftp] FTP command: Client "192.0.2.2", "RETR file""#;
        assert_eq!(
            ProtocolLine::parse(command),
            Some(ProtocolLine {
                client: "192.0.2.2".into(),
                command: true,
                line: "RETR file".into()
            })
        );
        let reply = r#"Tue Dec  1 21:47:41 2026 [pid 24681] [ftp] FTP response: Client "192.0.2.2", "257 "/" is the current directory""#;
        assert_eq!(
            ProtocolLine::parse(reply).map(|l| (l.command, l.line)),
            Some((false, r#"257 "/" is the current directory"#.into()))
        );
        let login = r#"Tue Dec  1 21:47:41 2026 [pid 24679] [ftp] OK LOGIN: Client "192.0.2.2", anon password "x""#;
        assert_eq!(ProtocolLine::parse(login), None);
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

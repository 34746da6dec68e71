//! The clients: real curl and lftp in the client namespace, bounded by
//! their own timeouts and by a deadline of ours.

use std::{net::IpAddr, time::Duration};

use crate::{netns::NetNs, process, tmp::TempDir};

/// `ftp://addr:port/path`, brackets around IPv6.
pub fn ftp_url(addr: IpAddr, port: u16, path: &str) -> String {
    url("ftp", addr, port, path)
}

/// `http://addr:port/path`, brackets around IPv6.
pub fn http_url(addr: IpAddr, port: u16, path: &str) -> String {
    url("http", addr, port, path)
}

fn url(scheme: &str, addr: IpAddr, port: u16, path: &str) -> String {
    match addr {
        IpAddr::V4(a) => format!("{scheme}://{a}:{port}/{path}"),
        IpAddr::V6(a) => format!("{scheme}://[{a}]:{port}/{path}"),
    }
}

/// `curl -s -o /dev/null --limit-rate RATE --max-time MAX URL` in `ns`,
/// left running: for a test that breaks something mid-transfer (and then
/// waits for it, or kills it).
#[track_caller]
pub fn spawn_download(
    ns: &NetNs,
    url: &str,
    rate: &str,
    max_time: Duration,
) -> std::process::Child {
    ns.command("curl")
        .args(["-s", "-o", "/dev/null", "--limit-rate", rate, "--max-time"])
        .arg(max_time.as_secs().to_string())
        .arg(url)
        .stdin(std::process::Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start curl: {e}"))
}

/// Waits until a download is under way in `client`'s namespace: a
/// connection to one of vsftpd's passive ports has received bytes. The
/// connection alone is not enough: the client sends its RETR after it, and
/// a fault that came first would stop the transfer rather than meet it.
#[track_caller]
pub fn wait_for_download(client: &NetNs) {
    crate::deadline::wait_for(
        "the download's first bytes",
        Duration::from_secs(20),
        || {
            let ss = client
                .run_ok("ss", &["-Htni", "state", "established"])
                .stdout;
            // A socket's line, then its indented details (`bytes_received:N`).
            let mut to_data_port = false;
            let receiving = ss.lines().any(|line| {
                if !line.starts_with(char::is_whitespace) {
                    to_data_port = line
                        .split_whitespace()
                        .nth(3)
                        .and_then(|peer| peer.rsplit_once(':'))
                        .and_then(|(_, port)| port.parse::<u16>().ok())
                        .is_some_and(|p| crate::vsftpd::PASSIVE_PORTS.contains(&p));
                    return false;
                }
                to_data_port
                    && line.split_whitespace().any(|field| {
                        field
                            .strip_prefix("bytes_received:")
                            .and_then(|n| n.parse::<u64>().ok())
                            .is_some_and(|n| n > 0)
                    })
            });
            if receiving { Ok(()) } else { Err(ss) }
        },
    );
}

/// One curl run: `curl -sS [--ftp-pasv|--ftp-port -] --connect-timeout C -m M -o FILE URL`.
#[derive(Clone, Debug)]
pub struct Curl {
    url: String,
    connect_timeout: Duration,
    max_time: Duration,
    epsv: bool,
    active: bool,
    credentials: Option<Credentials>,
    interface: Option<String>,
    /// FTPS: the certificate authority curl trusts.
    ca: Option<std::path::PathBuf>,
    /// `--resolve` entries: `name:port:addr`.
    resolve: Vec<String>,
}

/// A user and password for curl. `Debug` hides the password, and curl gets
/// it from a config file, so no command line or message shows it.
#[derive(Clone)]
pub struct Credentials {
    pub user: String,
    pub password: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Credentials({}, <password>)", self.user)
    }
}

/// What a client run did.
#[derive(Debug)]
pub struct Transfer {
    /// The client's own pid (`ip netns exec` execs it in place).
    pub pid: u32,
    /// The exit code (curl: 0 success, 7 could not connect, 28 timeout, ...).
    pub exit_code: Option<i32>,
    pub stderr: String,
    /// The downloaded bytes (empty when curl wrote no file).
    pub body: Vec<u8>,
    pub command: String,
}

impl Curl {
    /// Connect timeout 5 s, whole transfer 30 s.
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            connect_timeout: Duration::from_secs(5),
            max_time: Duration::from_secs(30),
            epsv: true,
            active: false,
            credentials: None,
            interface: None,
            ca: None,
            resolve: Vec::new(),
        }
    }

    /// Explicit FTPS (`--ssl-reqd`: `AUTH TLS`, then protected data),
    /// trusting only `ca` (curl checks the server's name against it too).
    #[must_use]
    pub fn tls(mut self, ca: &std::path::Path) -> Self {
        self.ca = Some(ca.to_owned());
        self
    }

    /// `--resolve name:port:addr`: the URL's host name without DNS.
    #[must_use]
    pub fn resolve(mut self, name: &str, port: u16, addr: IpAddr) -> Self {
        self.resolve.push(format!("{name}:{port}:{addr}"));
        self
    }

    /// Log in as `user` with `password` (default: curl's anonymous login).
    #[must_use]
    pub fn credentials(mut self, user: &str, password: &str) -> Self {
        self.credentials = Some(Credentials {
            user: user.into(),
            password: password.into(),
        });
        self
    }

    /// `--disable-epsv`: only PASV. (When an EPSV data connection fails, curl
    /// tries again with PASV: two data connects per run.)
    #[must_use]
    pub fn disable_epsv(mut self) -> Self {
        self.epsv = false;
        self
    }

    /// Active mode (`--ftp-port -`): the client listens and sends
    /// `EPRT`/`PORT`; the server connects to it.
    #[must_use]
    pub fn active(mut self) -> Self {
        self.active = true;
        self
    }

    /// `--interface ADDR`: connect from this local address.
    #[must_use]
    pub fn interface(mut self, addr: &str) -> Self {
        self.interface = Some(addr.into());
        self
    }

    #[must_use]
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    #[must_use]
    pub fn max_time(mut self, timeout: Duration) -> Self {
        self.max_time = timeout;
        self
    }

    /// Runs curl in `ns` and waits for it (at most `-m` plus 10 s).
    #[track_caller]
    pub fn run(&self, ns: &NetNs) -> Transfer {
        let dir = TempDir::new("curl");
        let out = dir.path().join("body");
        let mut command = ns.command("curl");
        command.arg("-sS");
        if let Some(credentials) = &self.credentials {
            let config = dir.path().join("curlrc");
            std::fs::write(
                &config,
                format!("user = \"{}:{}\"\n", credentials.user, credentials.password),
            )
            .unwrap_or_else(|e| panic!("cannot write {}: {e}", config.display()));
            command.arg("-K").arg(&config);
        }
        if self.url.starts_with("ftp://") && self.active {
            command.args(["--ftp-port", "-"]);
        } else if self.url.starts_with("ftp://") {
            command.arg("--ftp-pasv");
            if !self.epsv {
                command.arg("--disable-epsv");
            }
        }
        if let Some(addr) = &self.interface {
            command.arg("--interface").arg(addr);
        }
        if let Some(ca) = &self.ca {
            command.arg("--ssl-reqd").arg("--cacert").arg(ca);
        }
        for entry in &self.resolve {
            command.arg("--resolve").arg(entry);
        }
        command
            .arg("--connect-timeout")
            .arg(secs(self.connect_timeout))
            .arg("-m")
            .arg(secs(self.max_time))
            .arg("-o")
            .arg(&out)
            .arg(&self.url);
        let done = process::run(&mut command, self.max_time + Duration::from_secs(10));
        Transfer::of(done, &out)
    }
}

/// One lftp run: log in anonymously, `get` one file, quit. lftp watches the
/// control connection during a transfer (curl does not), so a transfer the
/// server aborts (426) ends at once, with a clean QUIT on the control
/// connection.
#[derive(Clone, Debug)]
pub struct Lftp {
    host: IpAddr,
    port: u16,
    path: String,
    timeout: Duration,
    /// FTPS: the certificate authority lftp trusts.
    ca: Option<std::path::PathBuf>,
    /// Downloads of `path` in the one session, each its own data connection.
    times: usize,
}

impl Lftp {
    /// `get path` from `ftp://host:port`, one try, network timeout 5 s.
    pub fn new(host: IpAddr, port: u16, path: &str) -> Self {
        Self {
            host,
            port,
            path: path.into(),
            timeout: Duration::from_secs(5),
            ca: None,
            times: 1,
        }
    }

    /// Downloads `path` `times` times in the one session (the last copy is
    /// the transfer's body): many small files, each a data connection.
    #[must_use]
    pub fn times(mut self, times: usize) -> Self {
        self.times = times.max(1);
        self
    }

    /// Explicit FTPS with protected data (`AUTH TLS`, `PROT P`), trusting
    /// only `ca`; the server's name is not checked (it is dialled by address).
    #[must_use]
    pub fn tls(mut self, ca: &std::path::Path) -> Self {
        self.ca = Some(ca.to_owned());
        self
    }

    /// Runs lftp in `ns` and waits for it (at most 30 s).
    #[track_caller]
    pub fn run(&self, ns: &NetNs) -> Transfer {
        let dir = TempDir::new("lftp");
        let out = dir.path().join("body");
        let tls = match &self.ca {
            Some(ca) => format!(
                "set ftp:ssl-force true; set ftp:ssl-allow-anonymous true; set ftp:ssl-protect-data true; \
                 set ssl:ca-file {}; \
                 set ssl:check-hostname no; ",
                ca.display()
            ),
            None => String::new(),
        };
        let gets = format!("get {} -o {}; ", self.path, out.display()).repeat(self.times);
        let script = format!(
            "set net:max-retries 1; set net:timeout {}; set ftp:passive-mode on; set xfer:clobber on; {tls}\
             open {}; {gets}bye",
            self.timeout.as_secs().max(1),
            url("ftp", self.host, self.port, ""),
        );
        let mut command = ns.command("lftp");
        command.args(["-c", &script]);
        let done = process::run(&mut command, Duration::from_secs(30));
        Transfer::of(done, &out)
    }
}

fn secs(d: Duration) -> String {
    format!("{:.3}", d.as_secs_f64())
}

impl Transfer {
    /// A finished client run that wrote what it downloaded to `out`.
    fn of(done: process::Finished, out: &std::path::Path) -> Self {
        Self {
            pid: done.pid,
            exit_code: done.status.code(),
            stderr: done.stderr,
            body: std::fs::read(out).unwrap_or_default(),
            command: done.command,
        }
    }

    /// Panics unless curl exited 0 and the body is exactly `expected`.
    #[track_caller]
    pub fn assert_downloaded(&self, expected: &[u8]) {
        assert_eq!(self.exit_code, Some(0), "the download failed: {self}");
        assert_eq!(
            self.body.len(),
            expected.len(),
            "downloaded size differs: {self}"
        );
        assert!(self.body == expected, "downloaded bytes differ: {self}");
    }

    /// Panics unless curl exited with `code`.
    #[track_caller]
    pub fn assert_exit(&self, code: i32) {
        assert_eq!(self.exit_code, Some(code), "unexpected exit: {self}");
    }
}

impl std::fmt::Display for Transfer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} (pid {}) exit {:?}, {} bytes, stderr: {}",
            self.command,
            self.pid,
            self.exit_code,
            self.body.len(),
            self.stderr.trim_end()
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::netns::{SERVER_V4, SERVER_V6};

    #[test]
    fn urls_bracket_ipv6() {
        assert_eq!(ftp_url(SERVER_V4, 21, "file"), "ftp://192.0.2.1:21/file");
        assert_eq!(
            ftp_url(SERVER_V6, 21, "file"),
            "ftp://[2001:db8::1]:21/file"
        );
        assert_eq!(http_url(SERVER_V4, 8080, ""), "http://192.0.2.1:8080/");
    }
}

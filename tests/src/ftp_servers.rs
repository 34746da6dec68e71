//! Real FTP servers other than vsftpd, in the server namespace: proftpd
//! ([`Proftpd`]) and pure-ftpd ([`PureFtpd`]), from Debian packages that
//! `cargo xtask setup` only unpacks into its cache (never installs), serving
//! generated files to anonymous users; and [`Capture`], tcpdump in a
//! namespace, whose file gives what was on the wire: each TCP connection
//! and the reply codes a server sent ([`Wire::replies`]).
//!
//! Nothing here touches the host's `/etc`, `/run` or `/dev`: proftpd reads
//! users from its own file; pure-ftpd, which serves the home directory of
//! the system user `ftp`, runs in a private mount namespace (`unshare -m`)
//! where a copy of `/etc/passwd` is bind-mounted over it and `/run` and
//! `/dev` are private tmpfs.

use std::{
    fmt::Write as _,
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr},
    ops::RangeInclusive,
    os::unix::fs::PermissionsExt,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::Duration,
};

use crate::{
    deadline::{Deadline, wait_for},
    netns::NetNs,
    process::{Daemon, kill_and_reap, wait_until},
    tmp::TempDir,
    vsftpd::{PASSIVE_PORTS, pattern, served},
};

/// Where `cargo xtask setup` unpacks the servers (`xtask/src/ftp_servers.rs`):
/// `$XDG_CACHE_HOME` or `$HOME/.cache`, then `ftptrace/ftp-servers/root`.
pub fn unpacked_root() -> PathBuf {
    std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .unwrap_or_else(|| PathBuf::from("/tmp"))
        .join("ftptrace/ftp-servers/root")
}

/// `binary` (e.g. `usr/sbin/proftpd`) in the unpacked tree; panics, saying
/// how to get it, when it is not there.
#[track_caller]
fn unpacked(binary: &str) -> PathBuf {
    let path = unpacked_root().join(binary);
    assert!(
        path.is_file(),
        "{} is missing: run `cargo xtask setup` (as root) to fetch and unpack the FTP servers",
        path.display()
    );
    path
}

/// The unpacked `usr/lib/<arch>-linux-gnu`, with proftpd's libraries.
#[track_caller]
fn unpacked_lib_dir() -> PathBuf {
    let lib = unpacked_root().join("usr/lib");
    std::fs::read_dir(&lib)
        .ok()
        .and_then(|entries| {
            entries.filter_map(Result::ok).map(|e| e.path()).find(|p| {
                p.is_dir()
                    && p.file_name()
                        .and_then(|n| n.to_str())
                        .is_some_and(|n| n.ends_with("-linux-gnu"))
            })
        })
        .unwrap_or_else(|| {
            panic!(
                "no <arch>-linux-gnu in {}: run `cargo xtask setup` (as root)",
                lib.display()
            )
        })
}

/// What a server serves, and where.
#[derive(Clone, Debug)]
pub struct ServerConfig {
    pub addr: IpAddr,
    pub port: u16,
    pub passive: RangeInclusive<u16>,
    /// Files in the anonymous root: name and size (content from [`pattern`]).
    pub files: Vec<(String, usize)>,
}

impl ServerConfig {
    /// Port 21, [`PASSIVE_PORTS`], one 256 KiB file `file`.
    pub fn new(addr: IpAddr) -> Self {
        Self {
            addr,
            port: 21,
            passive: PASSIVE_PORTS,
            files: vec![("file".into(), 256 << 10)],
        }
    }

    /// Replaces the served files by one file `name` of `size` bytes.
    #[must_use]
    pub fn with_file(mut self, name: &str, size: usize) -> Self {
        self.files = vec![(name.into(), size)];
        self
    }
}

/// A running server of either kind; killed on drop, its files removed.
pub struct Server {
    name: &'static str,
    daemon: Daemon,
    config: ServerConfig,
    // Dropped after the daemon (fields drop in declaration order).
    dir: TempDir,
}

/// Writes the served files into `<dir>/pub` (mode 0755, readable by the
/// anonymous user).
#[track_caller]
fn write_files(dir: &TempDir, config: &ServerConfig) -> PathBuf {
    let root = dir.subdir("pub");
    for (name, size) in &config.files {
        let path = root.join(name);
        std::fs::write(&path, pattern(*size))
            .unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644))
            .unwrap_or_else(|e| panic!("cannot chmod {}: {e}", path.display()));
    }
    root
}

#[track_caller]
fn write(path: &Path, text: &str, mode: u32) {
    std::fs::write(path, text).unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .unwrap_or_else(|e| panic!("cannot chmod {}: {e}", path.display()));
}

impl Server {
    /// Starts `command` (the server in the foreground) and waits until
    /// something listens on the control port.
    #[track_caller]
    fn spawn(
        name: &'static str,
        ns: &NetNs,
        config: ServerConfig,
        dir: TempDir,
        command: &mut Command,
    ) -> Self {
        let mut daemon = Daemon::spawn(command, &dir.path().join("server.log"));
        ns.wait_listening(&mut daemon, config.port, name);
        Self {
            name,
            daemon,
            config,
            dir,
        }
    }

    /// `proftpd` or `pure-ftpd`.
    pub fn name(&self) -> &'static str {
        self.name
    }

    pub fn pid(&self) -> u32 {
        self.daemon.pid()
    }

    pub fn config(&self) -> &ServerConfig {
        &self.config
    }

    /// The exact bytes served as `name`.
    #[track_caller]
    pub fn expected(&self, name: &str) -> Vec<u8> {
        served(self.name, &self.config.files, name)
    }

    /// What the server wrote to stdout and stderr, and its transfer log
    /// (for failure messages).
    pub fn log(&self) -> String {
        let xfer = self.dir.path().join(TRANSFER_LOG);
        format!(
            "{}\n--- transfer log ---\n{}",
            self.daemon.log_text(),
            std::fs::read_to_string(&xfer).unwrap_or_default()
        )
    }
}

/// The transfer log's name in a server's scratch directory.
const TRANSFER_LOG: &str = "xfer.log";

/// proftpd 1.3.8 (Debian `proftpd-core`): standalone, anonymous only, users
/// from its own file. With `RootRevoke` at its default, active-mode data
/// connections come from a random high port, not from port 20.
pub struct Proftpd(Server);

impl std::ops::Deref for Proftpd {
    type Target = Server;
    fn deref(&self) -> &Server {
        &self.0
    }
}

impl Proftpd {
    /// Writes the config, user file and served files, starts `proftpd -n`
    /// in `ns` and waits until it listens.
    #[track_caller]
    pub fn start(ns: &NetNs, config: ServerConfig) -> Self {
        let binary = unpacked("usr/sbin/proftpd");
        let libs = unpacked_lib_dir();
        let dir = TempDir::new("proftpd");
        let root = write_files(&dir, &config);
        // mod_auth_file refuses a user file others can read.
        let passwd = dir.path().join("passwd");
        let group = dir.path().join("group");
        write(
            &passwd,
            &format!(
                "ftp:x:65534:65534:anonymous ftp:{}:/usr/sbin/nologin\n",
                root.display()
            ),
            0o600,
        );
        write(&group, "ftp:x:65534:\n", 0o600);
        let conf = dir.path().join("proftpd.conf");
        write(
            &conf,
            &proftpd_conf(&config, dir.path(), &root, &unpacked_root()),
            0o644,
        );
        let mut command = ns.command(&binary.to_string_lossy());
        command
            .arg("-n")
            .arg("-c")
            .arg(&conf)
            .env("LD_LIBRARY_PATH", libs);
        Self(Server::spawn("proftpd", ns, config, dir, &mut command))
    }
}

/// The `proftpd.conf` text: everything that would go to `/run`, `/var/log`
/// or `/etc` goes to `dir`.
pub fn proftpd_conf(config: &ServerConfig, dir: &Path, root: &Path, unpacked: &Path) -> String {
    let mut conf = String::new();
    let _ = writeln!(
        conf,
        "ServerName \"proftpd-test\"\nServerType standalone\nDefaultServer on\n\
         UseIPv6 {}\nDefaultAddress {}\nSocketBindTight on\nPort {}\nPassivePorts {} {}",
        if config.addr.is_ipv6() { "on" } else { "off" },
        config.addr,
        config.port,
        config.passive.start(),
        config.passive.end()
    );
    let _ = writeln!(
        conf,
        "MaxInstances 10\nUser nobody\nGroup nogroup\nUmask 022\nUseReverseDNS off\n\
         <IfModule mod_dso.c>\n  ModulePath {}\n  LoadModule mod_ident.c\n</IfModule>\n\
         <IfModule mod_ident.c>\n  IdentLookups off\n</IfModule>\n\
         TimeoutLogin 20\nTimeoutIdle 60\nTimeoutNoTransfer 60\nTimeoutStalled 60",
        unpacked.join("usr/lib/proftpd").display()
    );
    let _ = writeln!(
        conf,
        "PidFile {d}/proftpd.pid\nScoreboardFile {d}/proftpd.scoreboard\n\
         <IfModule mod_delay.c>\n  DelayEngine off\n</IfModule>\n\
         <IfModule mod_ctrls.c>\n  ControlsEngine off\n</IfModule>\n\
         <IfModule mod_lang.c>\n  LangEngine off\n</IfModule>\n\
         WtmpLog off\nUseFtpUsers off\nAuthPAM off\nAuthOrder mod_auth_file.c\n\
         AuthUserFile {d}/passwd\nAuthGroupFile {d}/group\nRequireValidShell off\n\
         DefaultRoot ~\nTransferLog {d}/{TRANSFER_LOG}\nAllowOverwrite off",
        d = dir.display()
    );
    let _ = writeln!(
        conf,
        "<Anonymous {}>\n  User ftp\n  Group ftp\n  UserAlias anonymous ftp\n\
         RequireValidShell off\n  AnonRequirePassword off\n  MaxClients 10\n\
         <Limit WRITE>\n    DenyAll\n  </Limit>\n</Anonymous>",
        root.display()
    );
    conf
}

/// pure-ftpd 1.0.50 (Debian `pure-ftpd`): standalone, in a private mount
/// namespace where the system user `ftp` has the served directory as home.
/// Not anonymous-only (`-e`), so that `USER <someone else>` gets `331`
/// (anonymous-only, every `USER` gets `230`); `anonymous` and `ftp` still
/// log in at once with `230`. Its greeting is one multi-line reply
/// (`220-...`) in one segment.
pub struct PureFtpd(Server);

impl std::ops::Deref for PureFtpd {
    type Target = Server;
    fn deref(&self) -> &Server {
        &self.0
    }
}

impl PureFtpd {
    /// Writes the served files, a passwd copy and a start script, runs the
    /// script in `ns` under `unshare -m` and waits until pure-ftpd listens.
    #[track_caller]
    pub fn start(ns: &NetNs, config: ServerConfig) -> Self {
        let binary = unpacked("usr/sbin/pure-ftpd");
        let dir = TempDir::new("pureftpd");
        let root = write_files(&dir, &config);
        let host_passwd = std::fs::read_to_string("/etc/passwd")
            .unwrap_or_else(|e| panic!("cannot read /etc/passwd: {e}"));
        let passwd = dir.path().join("passwd");
        write(&passwd, &pure_ftpd_passwd(&host_passwd, &root), 0o644);
        let (addr, port) = (config.addr, config.port);
        // No -4/-6: pure-ftpd then greets with one more line ("IPv6
        // connections are also welcome"), a ~310-byte greeting in one
        // segment, longer than the head the kernel copies (issue 11, finding
        // 11: its tail must still say where the next reply starts).
        let flags = format!(
            "-S {addr},{port} -p {}:{} -H -c 10 -g {d}/pure-ftpd.pid -O clf:{d}/{TRANSFER_LOG}",
            config.passive.start(),
            config.passive.end(),
            d = dir.path().display()
        );
        // A private /run (pure-ftpd's scoreboard) and /dev (no /dev/log:
        // its syslog lines go nowhere, not into the host's journal).
        let script = format!(
            "set -e\n\
             mount -n -t tmpfs -o mode=755,size=4m ftptrace-run /run\n\
             mount -n --bind {passwd} /etc/passwd\n\
             mount -n -t tmpfs -o mode=755,size=1m ftptrace-dev /dev\n\
             mknod -m 666 /dev/null c 1 3\nmknod -m 666 /dev/zero c 1 5\n\
             mknod -m 666 /dev/random c 1 8\nmknod -m 666 /dev/urandom c 1 9\n\
             exec {binary} {flags}\n",
            passwd = passwd.display(),
            binary = binary.display()
        );
        let script_path = dir.path().join("start.sh");
        write(&script_path, &script, 0o755);
        let mut command = ns.command("unshare");
        command
            .args(["-m", "--propagation", "private", "sh"])
            .arg(&script_path);
        Self(Server::spawn("pure-ftpd", ns, config, dir, &mut command))
    }
}

/// `/etc/passwd` with the `ftp` (and `_ftp`) entry replaced by one whose
/// home is `root`, keeping the host's uid and gid for `ftp` if it has one.
pub fn pure_ftpd_passwd(host: &str, root: &Path) -> String {
    let mut ids = ("65534".to_owned(), "65534".to_owned());
    let mut out = String::new();
    for line in host.lines() {
        let fields: Vec<&str> = line.split(':').collect();
        match fields.first() {
            Some(&"ftp") if fields.len() > 3 => {
                ids = (fields[2].to_owned(), fields[3].to_owned());
            }
            Some(&("ftp" | "_ftp")) => {}
            _ => {
                out.push_str(line);
                out.push('\n');
            }
        }
    }
    let _ = writeln!(
        out,
        "ftp:x:{}:{}:anonymous ftp (test):{}:/usr/sbin/nologin",
        ids.0,
        ids.1,
        root.display()
    );
    out
}

/// How long tcpdump may take to start capturing, and to stop.
const CAPTURE_TIMEOUT: Duration = Duration::from_secs(10);

/// tcpdump on one device of a namespace, writing every TCP packet in full
/// to a file; killed on drop unless stopped.
pub struct Capture {
    child: Child,
    log: PathBuf,
    file: PathBuf,
    // Dropped after the child.
    _dir: TempDir,
}

impl Capture {
    /// Starts `tcpdump -i <dev> -w <file> tcp` in `ns` and waits until it
    /// says it is listening.
    #[track_caller]
    pub fn start(ns: &NetNs, dev: &str) -> Self {
        let dir = TempDir::new("pcap");
        let file = dir.path().join("capture.pcap");
        let log = dir.path().join("tcpdump.log");
        let out = std::fs::File::create(&log)
            .unwrap_or_else(|e| panic!("cannot create {}: {e}", log.display()));
        let err = out.try_clone().expect("duplicate log file descriptor");
        let child = ns
            .command("tcpdump")
            .args(["-i", dev, "-n", "-U", "--immediate-mode", "-s", "0", "-w"])
            .arg(&file)
            .arg("tcp")
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start tcpdump: {e}"));
        let mut capture = Self {
            child,
            log,
            file,
            _dir: dir,
        };
        wait_for(
            &format!("tcpdump to listen on {dev} in {}", ns.name()),
            CAPTURE_TIMEOUT,
            || {
                let text = std::fs::read_to_string(&capture.log).unwrap_or_default();
                if let Ok(Some(status)) = capture.child.try_wait() {
                    panic!("tcpdump exited with {status}: {text}");
                }
                if text.contains("listening on") {
                    Ok(())
                } else {
                    Err(text)
                }
            },
        );
        capture
    }

    /// Stops tcpdump (SIGINT: it writes what it has and exits) and reads
    /// its file.
    #[track_caller]
    pub fn stop(mut self) -> Wire {
        // SAFETY: kill(2) on our own child, not yet reaped.
        unsafe { libc::kill(self.child.id() as libc::pid_t, libc::SIGINT) };
        let status = wait_until(&mut self.child, Deadline::after(CAPTURE_TIMEOUT));
        let log = std::fs::read_to_string(&self.log).unwrap_or_default();
        assert!(
            status.is_some(),
            "tcpdump did not stop within {CAPTURE_TIMEOUT:?} of SIGINT: {log}"
        );
        let bytes = std::fs::read(&self.file)
            .unwrap_or_else(|e| panic!("cannot read {}: {e}; tcpdump: {log}", self.file.display()));
        Wire::parse(&bytes).unwrap_or_else(|e| panic!("unreadable capture: {e}; tcpdump: {log}"))
    }
}

impl Drop for Capture {
    fn drop(&mut self) {
        kill_and_reap(&mut self.child);
    }
}

/// One captured TCP segment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Segment {
    pub src: SocketAddr,
    pub dst: SocketAddr,
    pub seq: u32,
    pub syn: bool,
    pub ack: bool,
    pub payload: Vec<u8>,
}

/// One TCP connection seen on the wire: who sent the first SYN to whom.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WireConn {
    /// The segment index of its first SYN (connections in time order).
    pub index: usize,
    pub initiator: SocketAddr,
    pub acceptor: SocketAddr,
}

/// The TCP segments of a capture, in capture order.
#[derive(Clone, Debug, Default)]
pub struct Wire {
    pub segments: Vec<Segment>,
}

impl Wire {
    /// Parses a pcap file (either byte order, micro- or nanosecond
    /// timestamps; Ethernet or Linux cooked link layer; IPv4 and IPv6
    /// without extension headers). Non-TCP packets are skipped.
    pub fn parse(bytes: &[u8]) -> Result<Self, String> {
        let header = bytes.get(..24).ok_or("shorter than a pcap header")?;
        let magic = [header[0], header[1], header[2], header[3]];
        let little = match magic {
            [0xd4, 0xc3, 0xb2, 0xa1] | [0x4d, 0x3c, 0xb2, 0xa1] => true,
            [0xa1, 0xb2, 0xc3, 0xd4] | [0xa1, 0xb2, 0x3c, 0x4d] => false,
            _ => return Err(format!("not a pcap file (magic {magic:02x?})")),
        };
        let u32_at = |b: &[u8], at: usize| -> u32 {
            let word = [b[at], b[at + 1], b[at + 2], b[at + 3]];
            if little {
                u32::from_le_bytes(word)
            } else {
                u32::from_be_bytes(word)
            }
        };
        let link = u32_at(header, 20);
        let mut segments = Vec::new();
        let mut at = 24;
        while at < bytes.len() {
            let record = bytes
                .get(at..at + 16)
                .ok_or_else(|| format!("truncated record header at {at}"))?;
            let len = u32_at(record, 8) as usize;
            let frame = bytes
                .get(at + 16..at + 16 + len)
                .ok_or_else(|| format!("truncated record at {at}"))?;
            at += 16 + len;
            let (ethertype, ip) = match link {
                1 if frame.len() >= 14 => {
                    (u16::from_be_bytes([frame[12], frame[13]]), &frame[14..])
                }
                113 if frame.len() >= 16 => {
                    (u16::from_be_bytes([frame[14], frame[15]]), &frame[16..])
                }
                1 | 113 => continue,
                other => return Err(format!("link type {other} not supported")),
            };
            if let Some(segment) = tcp_segment(ethertype, ip) {
                segments.push(segment);
            }
        }
        Ok(Self { segments })
    }

    /// Every connection, in the order of their first SYN (retransmitted
    /// SYNs are not new connections).
    pub fn connections(&self) -> Vec<WireConn> {
        let mut conns: Vec<WireConn> = Vec::new();
        for (index, s) in self.segments.iter().enumerate() {
            if s.syn
                && !s.ack
                && !conns
                    .iter()
                    .any(|c| c.initiator == s.src && c.acceptor == s.dst)
            {
                conns.push(WireConn {
                    index,
                    initiator: s.src,
                    acceptor: s.dst,
                });
            }
        }
        conns
    }

    /// The bytes `from` sent to `to`, in sequence order, each byte once
    /// (retransmitted and overlapping segments are merged).
    pub fn stream(&self, from: SocketAddr, to: SocketAddr) -> Vec<u8> {
        let mine: Vec<&Segment> = self
            .segments
            .iter()
            .filter(|s| s.src == from && s.dst == to)
            .collect();
        let Some(isn) = mine.iter().find(|s| s.syn).map(|s| s.seq) else {
            return Vec::new();
        };
        let mut pieces: Vec<(u32, &[u8])> = mine
            .iter()
            .filter(|s| !s.payload.is_empty())
            .map(|s| {
                (
                    s.seq.wrapping_sub(isn).wrapping_sub(1),
                    s.payload.as_slice(),
                )
            })
            .collect();
        pieces.sort_by_key(|(offset, _)| *offset);
        let mut out = Vec::new();
        for (offset, payload) in pieces {
            let offset = offset as usize;
            let end = offset + payload.len();
            if offset <= out.len() && end > out.len() {
                out.extend_from_slice(&payload[out.len() - offset..]);
            }
        }
        out
    }

    /// The reply codes the server at `server` sent on the control
    /// connection to `client`, one per reply.
    pub fn replies(&self, server: SocketAddr, client: SocketAddr) -> Vec<String> {
        reply_codes(&self.stream(server, client))
    }
}

/// A TCP segment from an IP packet of `ethertype`, if it is one.
fn tcp_segment(ethertype: u16, ip: &[u8]) -> Option<Segment> {
    let (src, dst, tcp) = match ethertype {
        0x0800 => {
            let ihl = usize::from(ip.first()? & 0x0f) * 4;
            let total = usize::from(u16::from_be_bytes([*ip.get(2)?, *ip.get(3)?]));
            if *ip.get(9)? != 6 || ip.len() < ihl.max(20) {
                return None;
            }
            let src = IpAddr::V4(Ipv4Addr::new(ip[12], ip[13], ip[14], ip[15]));
            let dst = IpAddr::V4(Ipv4Addr::new(ip[16], ip[17], ip[18], ip[19]));
            (src, dst, ip.get(ihl..total.min(ip.len()))?)
        }
        0x86dd => {
            if *ip.get(6)? != 6 || ip.len() < 40 {
                return None;
            }
            let payload = usize::from(u16::from_be_bytes([ip[4], ip[5]]));
            let addr = |at: usize| {
                let mut octets = [0u8; 16];
                octets.copy_from_slice(&ip[at..at + 16]);
                IpAddr::V6(Ipv6Addr::from(octets))
            };
            (addr(8), addr(24), ip.get(40..(40 + payload).min(ip.len()))?)
        }
        _ => return None,
    };
    let offset = usize::from(tcp.get(12)? >> 4) * 4;
    let flags = *tcp.get(13)?;
    Some(Segment {
        src: SocketAddr::new(src, u16::from_be_bytes([tcp[0], tcp[1]])),
        dst: SocketAddr::new(dst, u16::from_be_bytes([tcp[2], tcp[3]])),
        seq: u32::from_be_bytes([tcp[4], tcp[5], tcp[6], tcp[7]]),
        syn: flags & 0x02 != 0,
        ack: flags & 0x10 != 0,
        payload: tcp.get(offset..)?.to_vec(),
    })
}

/// The reply codes in a server's control stream, one per reply (RFC 959: a
/// multi-line reply opens with `NNN-` and ends at the first line that
/// starts with `NNN `; lines between are text).
pub fn reply_codes(stream: &[u8]) -> Vec<String> {
    let text = String::from_utf8_lossy(stream);
    let mut codes = Vec::new();
    let mut open: Option<String> = None;
    for line in text.split('\n') {
        let line = line.strip_suffix('\r').unwrap_or(line);
        let code = line
            .get(..3)
            .filter(|c| c.bytes().all(|b| b.is_ascii_digit()));
        let sep = line.as_bytes().get(3).copied();
        match (&open, code) {
            (Some(opened), Some(code)) if code == opened && matches!(sep, Some(b' ') | None) => {
                codes.push(code.to_owned());
                open = None;
            }
            (Some(_), _) => {}
            (None, Some(code)) if sep == Some(b'-') => open = Some(code.to_owned()),
            (None, Some(code)) if matches!(sep, Some(b' ') | None) && line.len() >= 3 => {
                codes.push(code.to_owned());
            }
            (None, _) => {}
        }
    }
    codes
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reply_codes_count_each_reply_once() {
        let stream = b"220---------- Welcome ----------\r\n220-You are user number 1\r\n\
                       220 You will be disconnected\r\n331 Any password will work\r\n\
                       230-Anonymous user logged in\r\n 230 not the end\r\n230 done\r\n\
                       221-Goodbye.\r\n221 Logout.\r\n";
        assert_eq!(reply_codes(stream), ["220", "331", "230", "221"]);
        assert_eq!(reply_codes(b"150 Opening\r\n226 Transfer"), ["150", "226"]);
        assert!(reply_codes(b"hello\r\n").is_empty());
    }

    #[test]
    fn passwd_gets_one_ftp_entry_with_the_served_home() {
        let host = "root:x:0:0:root:/root:/bin/bash\nftp:x:102:105:ftp daemon:/srv/ftp:/usr/sbin/nologin\n";
        let got = pure_ftpd_passwd(host, Path::new("/tmp/x/pub"));
        assert_eq!(
            got,
            "root:x:0:0:root:/root:/bin/bash\nftp:x:102:105:anonymous ftp (test):/tmp/x/pub:/usr/sbin/nologin\n"
        );
        let without = pure_ftpd_passwd("root:x:0:0:root:/root:/bin/bash\n", Path::new("/p"));
        assert!(without.ends_with("ftp:x:65534:65534:anonymous ftp (test):/p:/usr/sbin/nologin\n"));
    }

    /// A pcap (little-endian, microseconds, Ethernet) of `frames`.
    fn pcap(frames: &[Vec<u8>]) -> Vec<u8> {
        let mut out = vec![0xd4, 0xc3, 0xb2, 0xa1, 2, 0, 4, 0];
        out.extend([0; 8]);
        out.extend(65535u32.to_le_bytes());
        out.extend(1u32.to_le_bytes());
        for frame in frames {
            out.extend([0; 8]);
            let len = u32::try_from(frame.len()).expect("small frame");
            out.extend(len.to_le_bytes());
            out.extend(len.to_le_bytes());
            out.extend(frame);
        }
        out
    }

    fn frame(
        src: [u8; 4],
        sport: u16,
        dst: [u8; 4],
        dport: u16,
        seq: u32,
        flags: u8,
        payload: &[u8],
    ) -> Vec<u8> {
        let mut f = vec![0; 12];
        f.extend([0x08, 0x00]);
        let total = u16::try_from(40 + payload.len()).expect("small packet");
        f.extend([0x45, 0]);
        f.extend(total.to_be_bytes());
        f.extend([0, 0, 0, 0, 64, 6, 0, 0]);
        f.extend(src);
        f.extend(dst);
        f.extend(sport.to_be_bytes());
        f.extend(dport.to_be_bytes());
        f.extend(seq.to_be_bytes());
        f.extend([0, 0, 0, 0, 0x50, flags, 0xff, 0xff, 0, 0, 0, 0]);
        f.extend(payload);
        f
    }

    #[test]
    fn wire_finds_connections_and_merges_retransmitted_segments() {
        let (s, c) = ([192, 0, 2, 1], [192, 0, 2, 2]);
        let bytes = pcap(&[
            frame(c, 40000, s, 21, 7, 0x02, b""),
            frame(c, 40000, s, 21, 7, 0x02, b""),
            frame(s, 21, c, 40000, u32::MAX, 0x12, b""),
            frame(s, 21, c, 40000, 0, 0x18, b"220-a\r\n220 b\r\n"),
            frame(s, 21, c, 40000, 0, 0x18, b"220-a\r\n220 b\r\n"),
            frame(s, 21, c, 40000, 14, 0x18, b"331 x\r\n"),
            frame(s, 40001, c, 5000, 1, 0x02, b""),
        ]);
        let wire = Wire::parse(&bytes).expect("parses");
        let conns = wire.connections();
        assert_eq!(conns.len(), 2);
        assert_eq!(conns[0].acceptor, "192.0.2.1:21".parse().expect("addr"));
        assert_eq!(conns[1].initiator, "192.0.2.1:40001".parse().expect("addr"));
        let (server, client) = (conns[0].acceptor, conns[0].initiator);
        assert_eq!(wire.stream(server, client), b"220-a\r\n220 b\r\n331 x\r\n");
        assert_eq!(wire.replies(server, client), ["220", "331"]);
    }
}

//! FTP servers other than vsftpd (issue 11, findings 11 and 12): proftpd and
//! pure-ftpd, each downloaded from by curl (EPSV, PASV, EPRT, PORT), lftp
//! (passive, active), Python's ftplib (passive, active) and busybox ftpget
//! (passive only), plus one ftplib run that only says `USER` for a
//! non-anonymous account (`331`) and quits, one after the other under one
//! tracer started without a passive range, so that data connections are
//! found only through the control channel's announcements.
//!
//! The truth is the wire: tcpdump in the server namespace. Each client run
//! must download the exact bytes; the tracer must report exactly one
//! session for its control connection, whose `replies` are the reply codes
//! the server sent on the wire, in order (pure-ftpd's greeting is a
//! multi-line reply in one segment, and the `331` after it must not
//! vanish); and every data connection on the wire during the run must be
//! in that session, `linked_by` `announcement` and established, including
//! proftpd's active-mode connections, which come from a random high port
//! rather than port 20.

use std::{
    collections::BTreeSet,
    fmt::Write as _,
    net::{IpAddr, SocketAddr},
    time::Duration,
};

use tests::{
    client::{Curl, Transfer, ftp_url},
    ftp_servers::{Capture, Proftpd, PureFtpd, Server, ServerConfig, Wire, WireConn},
    netns::{CLIENT_V4, DEV, NetNs, NsPair, SERVER_V4},
    observe::observe,
    process,
    tmp::TempDir,
    tracer::{NO_PASSIVE_RANGE_ARGS, Session, Trace, Tracer},
};

/// The file every client downloads.
const FILE: &str = "file";
const FILE_SIZE: usize = 256 << 10;

/// One client and how it asks for its data connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Client {
    CurlEpsv,
    CurlPasv,
    CurlEprt,
    CurlPort,
    LftpPassive,
    LftpActive,
    FtplibPassive,
    FtplibActive,
    BusyboxPassive,
    /// ftplib: greeting, `USER` of a non-anonymous account (`331`), `QUIT`;
    /// no download. On pure-ftpd the `331` follows its multi-line greeting.
    UserThenQuit,
}

const CLIENTS: &[Client] = &[
    Client::CurlEpsv,
    Client::CurlPasv,
    Client::CurlEprt,
    Client::CurlPort,
    Client::LftpPassive,
    Client::LftpActive,
    Client::FtplibPassive,
    Client::FtplibActive,
    Client::BusyboxPassive,
    Client::UserThenQuit,
];

/// Downloads a file in Python's ftplib, anonymous, passive or active.
const FTPLIB_GET: &str = "\
import ftplib, sys
host, port, name, out, mode = sys.argv[1:6]
ftp = ftplib.FTP(timeout=15)
ftp.connect(host, int(port))
ftp.login()
ftp.set_pasv(mode == 'passive')
with open(out, 'wb') as f:
    ftp.retrbinary('RETR ' + name, f.write)
ftp.quit()
";

/// Logs in as a user other than anonymous as far as `331`, then quits.
const USER_THEN_QUIT: &str = "\
import ftplib, sys
host, port = sys.argv[1:3]
ftp = ftplib.FTP(timeout=15)
ftp.connect(host, int(port))
said = ftp.sendcmd('USER ftptrace-nobody')
assert said.startswith('331'), said
ftp.quit()
";

/// How long one client run may take.
const CLIENT_TIMEOUT: Duration = Duration::from_secs(40);

impl Client {
    /// `client mode`, for the results table.
    fn label(self) -> &'static str {
        match self {
            Self::CurlEpsv => "curl passive EPSV",
            Self::CurlPasv => "curl passive PASV",
            Self::CurlEprt => "curl active EPRT",
            Self::CurlPort => "curl active PORT",
            Self::LftpPassive => "lftp passive",
            Self::LftpActive => "lftp active",
            Self::FtplibPassive => "ftplib passive",
            Self::FtplibActive => "ftplib active",
            Self::BusyboxPassive => "busybox ftpget passive",
            Self::UserThenQuit => "ftplib USER 331, QUIT",
        }
    }

    fn active(self) -> bool {
        matches!(
            self,
            Self::CurlEprt | Self::CurlPort | Self::LftpActive | Self::FtplibActive
        )
    }

    /// Whether it downloads [`FILE`] (over one data connection).
    fn downloads(self) -> bool {
        self != Self::UserThenQuit
    }

    /// The commands, one of which must announce the data connection.
    fn announcing(self) -> &'static [&'static str] {
        match self {
            Self::UserThenQuit => &["USER"],
            Self::CurlEpsv => &["EPSV"],
            Self::CurlPasv | Self::LftpPassive | Self::FtplibPassive => &["PASV"],
            Self::CurlEprt => &["EPRT"],
            Self::CurlPort | Self::LftpActive | Self::FtplibActive => &["PORT"],
            Self::BusyboxPassive => &["EPSV", "PASV"],
        }
    }

    /// Downloads [`FILE`] from `server:21` in `ns`.
    #[track_caller]
    fn run(self, ns: &NetNs, server: IpAddr) -> Transfer {
        let url = ftp_url(server, 21, FILE);
        let curl = Curl::new(url.clone());
        match self {
            Self::CurlEpsv => return curl.run(ns),
            Self::CurlPasv => return curl.disable_epsv().run(ns),
            Self::CurlEprt => return curl.active().run(ns),
            _ => {}
        }
        let dir = TempDir::new("client");
        let out = dir.path().join("body");
        let out_str = out.to_string_lossy().into_owned();
        let host = server.to_string();
        let mut command = match self {
            Self::CurlPort => {
                let mut c = ns.command("curl");
                c.args([
                    "-sS",
                    "--ftp-port",
                    "-",
                    "--disable-eprt",
                    "--connect-timeout",
                    "5",
                    "-m",
                    "30",
                    "-o",
                    &out_str,
                    &url,
                ]);
                c
            }
            Self::LftpPassive | Self::LftpActive => {
                let script = format!(
                    "set net:max-retries 1; set net:timeout 5; set ftp:ssl-allow no; \
                     set ftp:passive-mode {}; open ftp://{host}:21/; get {FILE} -o {out_str}; bye",
                    if self == Self::LftpPassive {
                        "on"
                    } else {
                        "off"
                    }
                );
                let mut c = ns.command("lftp");
                c.args(["-c", &script]);
                c
            }
            Self::FtplibPassive | Self::FtplibActive => {
                let mode = if self == Self::FtplibPassive {
                    "passive"
                } else {
                    "active"
                };
                let mut c = ns.command("python3");
                c.args(["-c", FTPLIB_GET, &host, "21", FILE, &out_str, mode]);
                c
            }
            Self::BusyboxPassive => {
                let mut c = ns.command("busybox");
                c.args(["ftpget", "-P", "21", &host, &out_str, FILE]);
                c
            }
            Self::UserThenQuit => {
                let mut c = ns.command("python3");
                c.args(["-c", USER_THEN_QUIT, &host, "21"]);
                c
            }
            Self::CurlEpsv | Self::CurlPasv | Self::CurlEprt => unreachable!("run above"),
        };
        let done = process::run(&mut command, CLIENT_TIMEOUT);
        Transfer {
            pid: done.pid,
            exit_code: done.status.code(),
            stderr: format!("{}{}", done.stdout, done.stderr),
            body: std::fs::read(&out).unwrap_or_default(),
            command: done.command,
        }
    }
}

#[test]
fn proftpd_every_client_and_mode_is_one_session_with_every_reply_and_linked_data() {
    tests::root_test(
        "proftpd_every_client_and_mode_is_one_session_with_every_reply_and_linked_data",
        || {
            let net = NsPair::new();
            let server = Proftpd::start(&net.server, config());
            check_every_client(&net, &server, ActiveFrom::HighPort);
        },
    );
}

#[test]
fn pure_ftpd_every_client_and_mode_is_one_session_with_every_reply_and_linked_data() {
    tests::root_test(
        "pure_ftpd_every_client_and_mode_is_one_session_with_every_reply_and_linked_data",
        || {
            let net = NsPair::new();
            let server = PureFtpd::start(&net.server, config());
            check_every_client(&net, &server, ActiveFrom::Port20);
        },
    );
}

fn config() -> ServerConfig {
    ServerConfig::new(SERVER_V4).with_file(FILE, FILE_SIZE)
}

/// Where a server's active-mode data connections come from: the case each
/// test must have exercised.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ActiveFrom {
    /// proftpd with `RootRevoke` at its default: a random port above 1023.
    HighPort,
    /// pure-ftpd: port 20.
    Port20,
}

/// Runs every client against `server` under one tracer and one capture,
/// then checks each run; panics with a table of every run and the failures.
#[track_caller]
fn check_every_client(net: &NsPair, server: &Server, active_from: ActiveFrom) {
    let expected = server.expected(FILE);
    let capture = Capture::start(&net.server, DEV);
    let run = observe(net, Tracer::start_with(NO_PASSIVE_RANGE_ARGS), || {
        CLIENTS
            .iter()
            .map(|client| client.run(&net.client, SERVER_V4))
            .collect::<Vec<_>>()
    });
    let wire = capture.stop();
    let trace = &run.trace;

    let control_port = SocketAddr::new(SERVER_V4, 21);
    let conns = wire.connections();
    let controls: Vec<&WireConn> = conns
        .iter()
        .filter(|c| c.acceptor == control_port)
        .collect();
    let mut failures: Vec<String> = Vec::new();
    if controls.len() != CLIENTS.len() {
        failures.push(format!(
            "{} control connections on the wire, {} client runs: {controls:?}",
            controls.len(),
            CLIENTS.len()
        ));
    }
    // The tracer sees every namespace of the host: sessions of other tests
    // running at the same time (same addresses, other namespaces) are not
    // this test's. Ours are those with events in our two namespaces.
    let ours: BTreeSet<&str> = run
        .server_events()
        .into_iter()
        .chain(run.client_events())
        .filter_map(|e| e.session.as_deref())
        .collect();
    let sessions: Vec<&Session> = trace
        .sessions
        .iter()
        .filter(|s| ours.contains(s.id.as_str()))
        .collect();
    if sessions.len() != CLIENTS.len() {
        failures.push(format!(
            "{} sessions in this test's namespaces, {} client runs",
            sessions.len(),
            CLIENTS.len()
        ));
    }

    let mut table = format!("{} (tracer without --passive-ports):\n", server.name());
    let mut high_port_active = 0;
    let mut port20_active = 0;
    for (i, (client, transfer)) in CLIENTS.iter().zip(&run.outcome).enumerate() {
        let mut problems: Vec<String> = Vec::new();
        if transfer.exit_code != Some(0) {
            problems.push(format!("the client failed: {transfer}"));
        } else if client.downloads() && transfer.body != expected {
            problems.push(format!(
                "downloaded {} bytes, not the {} served (or different bytes)",
                transfer.body.len(),
                expected.len()
            ));
        }
        let Some(control) = controls.get(i) else {
            problems.push("no control connection on the wire".into());
            let _ = writeln!(table, "  {:<24} FAIL", client.label());
            failures.push(format!("{}: {}", client.label(), problems.join("; ")));
            continue;
        };
        let next = controls.get(i + 1).map_or(usize::MAX, |c| c.index);
        // Data connections: every other connection between this run's
        // control SYN and the next run's.
        let data: Vec<&WireConn> = conns
            .iter()
            .filter(|c| c.acceptor != control_port && c.index > control.index && c.index < next)
            .collect();
        let mut notes = String::new();
        let checked = check_run(
            *client,
            control,
            &data,
            &wire,
            &sessions,
            &mut problems,
            &mut notes,
        );
        for conn in &data {
            if conn.initiator.ip() == SERVER_V4 {
                if conn.initiator.port() == 20 {
                    port20_active += 1;
                } else {
                    high_port_active += 1;
                }
            }
        }
        let verdict = if problems.is_empty() { "ok" } else { "FAIL" };
        let _ = writeln!(table, "  {:<24} {verdict:<4} {notes}", client.label());
        if !problems.is_empty() {
            failures.push(format!(
                "{} (control from client port {}): {}{}",
                client.label(),
                control.initiator.port(),
                problems.join("; "),
                checked.map(|s| session_line(trace, s)).unwrap_or_default()
            ));
        }
    }
    match active_from {
        ActiveFrom::HighPort if high_port_active == 0 || port20_active > 0 => failures.push(format!(
            "active-mode data connections from a high port expected: {high_port_active} from a high port, {port20_active} from port 20"
        )),
        ActiveFrom::Port20 if port20_active == 0 || high_port_active > 0 => failures.push(format!(
            "active-mode data connections from port 20 expected: {port20_active} from port 20, {high_port_active} from a high port"
        )),
        _ => {}
    }
    let _ = writeln!(
        table,
        "  active-mode data connections: {high_port_active} from a high port, {port20_active} from port 20"
    );
    eprintln!("{table}");
    assert!(
        failures.is_empty(),
        "{table}\n{} failure(s):\n- {}\n{}\nserver log:\n{}",
        failures.len(),
        failures.join("\n- "),
        run.context(),
        server.log()
    );
}

/// Checks one client run against its session; returns the session if one
/// was found. `notes` gets the run's wire facts for the table.
fn check_run<'t>(
    client: Client,
    control: &WireConn,
    data: &[&WireConn],
    wire: &Wire,
    sessions: &[&'t Session],
    problems: &mut Vec<String>,
    notes: &mut String,
) -> Option<&'t Session> {
    let on_wire = wire.replies(control.acceptor, control.initiator);
    let data_text: Vec<String> = data
        .iter()
        .map(|c| format!("{}->{}", c.initiator, c.acceptor))
        .collect();
    let _ = write!(
        notes,
        "client port {}, replies on the wire {}, data {}",
        control.initiator.port(),
        on_wire.join(","),
        data_text.join(" ")
    );
    if data.len() != usize::from(client.downloads()) {
        problems.push(format!(
            "{} data connections on the wire, {} expected",
            data.len(),
            usize::from(client.downloads())
        ));
    }
    for conn in data {
        let server_initiated = conn.initiator.ip() == SERVER_V4;
        if server_initiated != client.active() {
            problems.push(format!(
                "data connection {}->{} in the wrong direction for this mode",
                conn.initiator, conn.acceptor
            ));
        }
    }
    let matching: Vec<&Session> = sessions
        .iter()
        .copied()
        .filter(|s| s.control.client.port == control.initiator.port())
        .collect();
    let [session] = matching.as_slice() else {
        problems.push(format!(
            "{} sessions for control port {} (exactly one expected): {:?}",
            matching.len(),
            control.initiator.port(),
            matching.iter().map(|s| s.brief()).collect::<Vec<_>>()
        ));
        return None;
    };
    let _ = write!(
        notes,
        "; cause {:?}",
        session.cause.as_deref().unwrap_or("-")
    );
    if session.control.client.addr != CLIENT_V4.to_string() || session.control.server.port != 21 {
        problems.push(format!(
            "the session's control connection: {}",
            session.brief()
        ));
    }
    if session.replies != on_wire {
        let missing: Vec<&String> = on_wire
            .iter()
            .filter(|code| !session.replies.contains(code))
            .collect();
        problems.push(format!(
            "replies {:?}, on the wire {on_wire:?} (missing entirely: {missing:?})",
            session.replies
        ));
    }
    if !client
        .announcing()
        .iter()
        .any(|verb| session.commands.iter().any(|c| c == verb))
    {
        problems.push(format!(
            "none of {:?} in the session's commands {:?}",
            client.announcing(),
            session.commands
        ));
    }
    if session.data.len() != data.len() {
        problems.push(format!(
            "{} data connections in the session, {} on the wire",
            session.data.len(),
            data.len()
        ));
    }
    for conn in data {
        // The FTP client's end is whichever end is in the client namespace.
        let (ftp_client, ftp_server) = if conn.initiator.ip() == SERVER_V4 {
            (conn.acceptor, conn.initiator)
        } else {
            (conn.initiator, conn.acceptor)
        };
        let found = session.data.iter().find(|d| {
            d.client.port == ftp_client.port()
                && d.server.port == ftp_server.port()
                && d.client.addr == ftp_client.ip().to_string()
                && d.server.addr == ftp_server.ip().to_string()
        });
        match found {
            None => problems.push(format!(
                "data connection {ftp_client} <-> {ftp_server} is not in the session"
            )),
            Some(d) if d.linked_by.as_deref() != Some("announcement") || !d.established => {
                problems.push(format!(
                    "data connection {ftp_client} <-> {ftp_server}: linked_by {:?}, established {}",
                    d.linked_by, d.established
                ));
            }
            Some(_) => {}
        }
    }
    Some(session)
}

/// The tracer's JSON line of `session`, for a failure message.
fn session_line(trace: &Trace, session: &Session) -> String {
    let id = format!(r#""id":"{}""#, session.id);
    trace
        .lines
        .iter()
        .find(|l| l.starts_with(r#"{"type":"session""#) && l.contains(&id))
        .map(|l| format!("\n  session line: {l}"))
        .unwrap_or_default()
}

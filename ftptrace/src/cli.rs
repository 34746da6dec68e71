//! Command line: `ftptrace [trace] [flags]`.

use std::{
    io::IsTerminal as _, num::NonZeroU64, ops::RangeInclusive, path::PathBuf, time::Duration,
};

use clap::{Args, Parser, Subcommand};

pub use crate::output::Format;
use crate::{
    diagnostics::{LogFormat, LogLevel},
    kernel::tls_libraries::TlsWatch,
    line_filter::{Cidr, Family, Wanted},
    ports::{DEFAULT_CONTROL_PORTS, PortSet},
    session::patterns::PatternRules,
};

#[derive(Debug, Parser)]
#[command(
    name = "ftptrace",
    version,
    about = "Explains FTP disconnects from the kernel's point of view, live, with eBPF",
    args_conflicts_with_subcommands = true
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    #[command(flatten)]
    pub trace: TraceArgs,
    /// Diagnostics on stderr (warnings, errors, notes): text, or one JSON
    /// object a line.
    #[arg(long, global = true, value_enum, default_value = "text")]
    pub log_format: LogFormat,
    /// The least severe diagnostics shown.
    #[arg(long, global = true, value_enum, default_value = "info")]
    pub log_level: LogLevel,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Attach to the kernel and stream FTP TCP events (the default).
    Trace(TraceArgs),
    /// Preflight without tracing: privileges, BTF, tracefs, and the hook of
    /// every probe (exits non-zero when tracing cannot work at all).
    Check(CheckArgs),
    /// Replays a recording (`trace --record`) into the lines its run
    /// printed, without root or the kernel it came from.
    Replay(ReplayArgs),
    /// Writes one self-contained HTML report of recordings or JSON-lines
    /// logs: sessions over time by cause, the most failing clients and
    /// servers, and each session's ladder diagram.
    Report(ReportArgs),
    /// Prints the completion script for a shell (bash, zsh, fish, ...).
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Prints the man page (roff), as the package installs it.
    #[command(hide = true)]
    Man,
}

impl Cli {
    /// The completion script for `shell`.
    pub fn completions(shell: clap_complete::Shell, out: &mut dyn std::io::Write) {
        let mut command = <Self as clap::CommandFactory>::command();
        clap_complete::generate(shell, &mut command, "ftptrace", out);
    }

    /// The man page, in roff.
    pub fn man_page(out: &mut dyn std::io::Write) -> std::io::Result<()> {
        clap_mangen::Man::new(<Self as clap::CommandFactory>::command()).render(out)
    }
}

/// What is written, after the kernel's port filter (the counts still see
/// everything).
#[derive(Clone, Debug, Default, Args)]
pub struct FilterArgs {
    /// Only sessions and events whose FTP client is in CIDR (an address or
    /// a block, IPv4 or IPv6; repeatable).
    #[arg(long = "client", value_name = "CIDR", help_heading = "Filters")]
    pub clients: Vec<Cidr>,
    /// Only sessions and events whose FTP server is in CIDR (repeatable).
    #[arg(long = "server", value_name = "CIDR", help_heading = "Filters")]
    pub servers: Vec<Cidr>,
    /// Only IPv4 connections.
    #[arg(long, conflicts_with = "ipv6", help_heading = "Filters")]
    pub ipv4: bool,
    /// Only IPv6 connections.
    #[arg(long, help_heading = "Filters")]
    pub ipv6: bool,
    /// Only what happened in this network namespace (its inode, as the
    /// lines' `netns` say; repeatable).
    #[arg(long, value_name = "INODE", help_heading = "Filters")]
    pub netns: Vec<u64>,
    /// Only sessions that ended with a failure cause, and their events
    /// (held until the session ends).
    #[arg(long, help_heading = "Filters")]
    pub failures_only: bool,
}

impl FilterArgs {
    pub fn wanted(&self) -> Wanted {
        Wanted {
            clients: self.clients.clone(),
            servers: self.servers.clone(),
            family: if self.ipv4 {
                Some(Family::V4)
            } else if self.ipv6 {
                Some(Family::V6)
            } else {
                None
            },
            netns: self.netns.clone(),
            failures_only: self.failures_only,
        }
    }
}

#[derive(Clone, Debug, Args)]
pub struct ReplayArgs {
    /// Recordings made with `ftptrace trace --record FILE`. Recordings of
    /// the same hours on several hosts (the client's and the server's) are
    /// joined into one run: each connection both traced is one session
    /// with both ends; others are replayed one after another.
    #[arg(value_name = "FILE", required = true)]
    pub files: Vec<PathBuf>,
    /// Filters in place of the run's own (without any, the run's apply).
    #[command(flatten)]
    pub filter: FilterArgs,
    /// Output format [default: text on a terminal, json otherwise].
    #[arg(long, value_enum)]
    pub format: Option<Format>,
}

impl ReplayArgs {
    pub fn format(&self) -> Format {
        default_format(self.format, false)
    }
}

#[derive(Clone, Debug, Args)]
pub struct ReportArgs {
    /// Recordings (`trace --record`) and JSON-lines files (`--output`, or
    /// lines exported from a log pipeline), in any mix.
    #[arg(value_name = "FILE", required = true)]
    pub files: Vec<PathBuf>,
    /// The HTML file to write (replaced whole).
    #[arg(short, long, value_name = "PATH")]
    pub output: PathBuf,
}

#[derive(Clone, Debug, Args)]
pub struct CheckArgs {
    /// Output format [default: text].
    #[arg(long, value_enum)]
    pub format: Option<Format>,
}

#[derive(Clone, Debug, Args)]
pub struct TraceArgs {
    /// FTP control ports, comma-separated.
    #[arg(long, value_name = "LIST", value_parser = parse_port_list, default_value = "21,990")]
    pub ports: PortList,
    /// Passive-mode data port range (vsftpd: pasv_min_port-pasv_max_port),
    /// always traced. Without it, passive data connections are still traced
    /// from the 227/229 that announces each (plain FTP, and FTPS whose TLS
    /// library is watched); with FTPS otherwise, only with it.
    #[arg(long, value_name = "LO-HI", value_parser = parse_port_range)]
    pub passive_ports: Option<RangeInclusive<u16>>,
    /// Output format [default: text on a terminal, json otherwise].
    #[arg(long, value_enum)]
    pub format: Option<Format>,
    /// Append to this file instead of writing to standard output.
    #[arg(long, value_name = "PATH")]
    pub output: Option<PathBuf>,
    /// Rotate --output before it grows past SIZE (bytes, or K, M, G), as
    /// logrotate would: PATH.1 is the newest old file. For hosts without
    /// logrotate; never split a line.
    #[arg(long, value_name = "SIZE", requires = "output", value_parser = crate::output::rotation::parse_size)]
    pub output_max_size: Option<u64>,
    /// Rotated files --output-max-size keeps (PATH.1 to PATH.N).
    #[arg(long, value_name = "N", default_value = "5", requires = "output_max_size", value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub output_keep: u32,
    /// Serve metrics for Prometheus at http://ADDR/metrics (e.g.
    /// 127.0.0.1:9477; the text format, or OpenMetrics when asked).
    #[arg(long, value_name = "ADDR")]
    pub metrics: Option<std::net::SocketAddr>,
    /// Stop after this many seconds.
    #[arg(long, value_name = "SECS")]
    pub duration: Option<NonZeroU64>,
    /// Seconds between `stats` lines.
    #[arg(long, value_name = "SECS", default_value = "60")]
    pub stats_interval: NonZeroU64,
    /// Also keep the raw kernel records in this new file (mode 0600), for
    /// `ftptrace replay`. Secrets the control-channel parser sees (`PASS`)
    /// are masked in it.
    #[arg(long, value_name = "FILE")]
    pub record: Option<PathBuf>,
    /// Sessions followed at once; past it the quietest is reported early
    /// (its record says `evicted`).
    #[arg(long, value_name = "N", default_value = "100000", value_parser = parse_max_sessions)]
    pub max_sessions: usize,
    /// Size of the kernel's ring buffer in MiB (a power of two): what a
    /// burst can queue while user space catches up (128 bytes an event).
    #[arg(long, value_name = "MIB", default_value = "32", value_parser = parse_ring_buffer_mib)]
    pub ring_buffer_mib: u32,
    /// Failed sessions of one client with the same cause that make a
    /// `pattern` line when they end within --repeat-window.
    #[arg(long, value_name = "N", default_value = "3", value_parser = parse_repeat_failures)]
    pub repeat_failures: usize,
    /// Seconds within which --repeat-failures failures are a pattern.
    #[arg(long, value_name = "SECS", default_value = "600")]
    pub repeat_window: NonZeroU64,
    /// Also watch this TLS library file (libssl.so.*, libgnutls.so.*, and
    /// libcrypto.so.* for OpenSSL's errors), e.g. a program's own copy; the usual directories and the files running
    /// processes map are watched anyway. Repeatable.
    #[arg(long, value_name = "PATH")]
    pub tls_library: Vec<PathBuf>,
    /// Do not read FTPS control channels from the TLS libraries (no
    /// uprobes): encrypted sessions are followed from the outside only.
    #[arg(long)]
    pub no_tls_plaintext: bool,
    #[command(flatten)]
    pub filter: FilterArgs,
}

fn parse_repeat_failures(text: &str) -> Result<usize, String> {
    match text.parse::<usize>() {
        Ok(0 | 1) => Err("must be at least 2 (one failure is not a pattern)".into()),
        Ok(n) => Ok(n),
        Err(e) => Err(format!("not a number of sessions: {e}")),
    }
}

fn parse_max_sessions(text: &str) -> Result<usize, String> {
    match text.parse::<usize>() {
        Ok(0) => Err("must be at least 1".into()),
        Ok(n) => Ok(n),
        Err(e) => Err(format!("not a number of sessions: {e}")),
    }
}

/// The ring buffer's size: a power of two between 1 MiB and 1 GiB (the
/// kernel wants a power-of-two number of pages).
fn parse_ring_buffer_mib(text: &str) -> Result<u32, String> {
    match text.parse::<u32>() {
        Ok(n) if n.is_power_of_two() && n <= 1024 => Ok(n),
        Ok(_) => Err("must be a power of two from 1 to 1024".into()),
        Err(e) => Err(format!("not a number of MiB: {e}")),
    }
}

/// Control ports, validated (`clap` needs one type per value parser).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PortList(pub Vec<u16>);

impl TraceArgs {
    pub fn pattern_rules(&self) -> PatternRules {
        PatternRules {
            failures: self.repeat_failures,
            window_ns: self.repeat_window.get().saturating_mul(1_000_000_000),
        }
    }

    pub fn ring_buffer_bytes(&self) -> u32 {
        self.ring_buffer_mib << 20
    }

    pub fn tls_watch(&self) -> TlsWatch {
        TlsWatch {
            off: self.no_tls_plaintext,
            libraries: self.tls_library.clone(),
        }
    }

    pub fn port_set(&self) -> PortSet {
        PortSet {
            control: self.ports.0.clone(),
            passive: self.passive_ports.clone(),
        }
    }

    /// The explicit format, else text for a person at a terminal and JSON
    /// for pipes and files.
    pub fn format(&self) -> Format {
        default_format(self.format, self.output.is_some())
    }

    pub fn duration(&self) -> Option<Duration> {
        self.duration.map(|secs| Duration::from_secs(secs.get()))
    }
}

/// The explicit format, else text for a person at a terminal and JSON for
/// pipes and files.
fn default_format(explicit: Option<Format>, to_file: bool) -> Format {
    explicit.unwrap_or(if !to_file && std::io::stdout().is_terminal() {
        Format::Text
    } else {
        Format::Json
    })
}

fn parse_port(text: &str) -> Result<u16, String> {
    match text.trim().parse::<u16>() {
        Ok(0) => Err("port 0 is not a port".into()),
        Ok(port) => Ok(port),
        Err(_) => Err(format!("`{}` is not a port number (1-65535)", text.trim())),
    }
}

fn parse_port_list(text: &str) -> Result<PortList, String> {
    let mut ports = text
        .split(',')
        .map(parse_port)
        .collect::<Result<Vec<_>, _>>()?;
    ports.sort_unstable();
    ports.dedup();
    Ok(PortList(ports))
}

fn parse_port_range(text: &str) -> Result<RangeInclusive<u16>, String> {
    let (lo, hi) = text
        .split_once('-')
        .ok_or_else(|| format!("`{text}` is not a range LO-HI"))?;
    let (lo, hi) = (parse_port(lo)?, parse_port(hi)?);
    if lo > hi {
        return Err(format!("range {lo}-{hi} runs backwards"));
    }
    Ok(lo..=hi)
}

impl PortList {
    /// The port set with these control ports and no passive range.
    pub fn port_set(&self) -> PortSet {
        PortSet {
            control: self.0.clone(),
            passive: None,
        }
    }
}

impl Default for PortList {
    fn default() -> Self {
        Self(DEFAULT_CONTROL_PORTS.to_vec())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<TraceArgs, String> {
        let cli = Cli::try_parse_from(std::iter::once("ftptrace").chain(args.iter().copied()))
            .map_err(|e| e.to_string())?;
        Ok(match cli.command {
            Some(Command::Trace(args)) => args,
            Some(
                Command::Check(_)
                | Command::Replay(_)
                | Command::Report(_)
                | Command::Completions { .. }
                | Command::Man,
            ) => panic!("not a trace command"),
            None => cli.trace,
        })
    }

    /// The completions and the man page come from the parser itself: they
    /// know every flag (a new one cannot be forgotten).
    #[test]
    fn completions_and_the_man_page_know_every_flag() {
        let mut bash = Vec::new();
        Cli::completions(clap_complete::Shell::Bash, &mut bash);
        let mut man = Vec::new();
        Cli::man_page(&mut man).unwrap();
        let (bash, man) = (
            String::from_utf8(bash).unwrap(),
            String::from_utf8(man).unwrap(),
        );
        for flag in [
            "--output-max-size",
            "--metrics",
            "--passive-ports",
            "--record",
        ] {
            assert!(bash.contains(flag), "{flag} in the bash completion");
        }
        assert!(man.contains(".TH ftptrace 1"), "{man}");
        assert!(man.contains("completions"), "{man}");
    }

    #[test]
    fn defaults_trace_ftp_and_ftps_control_ports() {
        let args = parse(&[]).unwrap();
        assert_eq!(args.ports, PortList::default());
        assert_eq!(args.passive_ports, None);
        assert_eq!(args.stats_interval.get(), 60);
        assert_eq!(args.max_sessions, 100_000);
        assert_eq!(args.ring_buffer_bytes(), 32 << 20);
        assert_eq!(args.pattern_rules(), PatternRules::default());
    }

    #[test]
    fn trace_subcommand_takes_the_same_flags() {
        let args = parse(&[
            "trace",
            "--ports",
            "2121, 21,21",
            "--passive-ports",
            "30000-30009",
            "--format",
            "json",
        ])
        .unwrap();
        assert_eq!(args.ports, PortList(vec![21, 2121]));
        assert_eq!(args.passive_ports, Some(30000..=30009));
        assert_eq!(args.format(), Format::Json);
        assert_eq!(
            args.port_set().role(30005),
            ftptrace_common::port_role::PASSIVE_DATA
        );
    }

    #[test]
    fn bad_flags_are_refused_with_a_reason() {
        for (args, reason) in [
            (&["--ports", "21,x"][..], "`x` is not a port number"),
            (&["--ports", "0"], "port 0 is not a port"),
            (&["--ports", "70000"], "`70000` is not a port number"),
            (&["--passive-ports", "30000"], "is not a range LO-HI"),
            (&["--passive-ports", "30009-30000"], "runs backwards"),
            (&["--format", "xml"], "invalid value 'xml'"),
            (&["--duration", "0"], "invalid value '0'"),
            (&["--duration", "soon"], "invalid value 'soon'"),
            (&["--frobnicate"], "unexpected argument"),
            (&["--max-sessions", "0"], "must be at least 1"),
            (&["--ring-buffer-mib", "3"], "must be a power of two"),
            (&["--ring-buffer-mib", "2048"], "must be a power of two"),
            (&["--repeat-failures", "1"], "must be at least 2"),
            (&["--repeat-window", "0"], "invalid value '0'"),
        ] {
            let error = parse(args).unwrap_err();
            assert!(error.contains(reason), "{args:?}: {error}");
        }
    }

    #[test]
    fn check_is_its_own_command() {
        let cli = Cli::try_parse_from(["ftptrace", "check", "--format", "json"]).unwrap();
        assert!(matches!(
            cli.command,
            Some(Command::Check(CheckArgs {
                format: Some(Format::Json)
            }))
        ));
        // Trace flags belong to trace, not to check.
        assert!(Cli::try_parse_from(["ftptrace", "check", "--ports", "21"]).is_err());
    }

    #[test]
    fn output_to_a_file_defaults_to_json() {
        let args = parse(&["--output", "/tmp/x.jsonl", "--duration", "5"]).unwrap();
        assert_eq!(args.format(), Format::Json);
        assert_eq!(args.duration(), Some(Duration::from_secs(5)));
    }
}

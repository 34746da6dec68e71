//! `cargo xtask bench`: the user-space pipeline (`cargo bench`), then, as
//! root, the kernel side under connection churn, side by side in one run:
//! no tracer, ftptrace, bpftrace printing the same port's state changes
//! and resets, and empty programs on ftptrace's hooks (the machine's
//! floor), alternating, several rounds; medians and spreads go into
//! BENCHMARKS.md between its `bench:generated` markers.

use std::{
    collections::BTreeMap,
    fmt::Write as _,
    fs,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};

use crate::{cargo, is_root, output, workspace_root};

mod bulk;
mod floor;
mod latency;

/// Rounds of every configuration, alternating; seconds of churn each.
const ROUNDS: usize = 5;
const CHURN_SECONDS: u64 = 5;
const CHURN_THREADS: &str = "2";
/// Namespaces and TEST-NET addresses of the bench's own network.
const SERVER_NS: &str = "ftptrace-bench-s";
const CLIENT_NS: &str = "ftptrace-bench-c";
const SERVER: &str = "192.0.2.1";
const CLIENT: &str = "192.0.2.2";
const UNTRACED_PORT: &str = "8080";
const FTP_PORT: &str = "21";
const BEGIN: &str = "<!-- bench:generated -->";
const END: &str = "<!-- /bench:generated -->";

/// What bpftrace prints: the same port's state changes and resets, as the
/// peer a person would reach for.
const BPFTRACE_PROGRAM: &str = r#"
tracepoint:sock:inet_sock_set_state /args->protocol == 6 && (args->sport == 21 || args->dport == 21)/ {
  printf("%llu state %d %d %d %d\n", nsecs, args->sport, args->dport, args->oldstate, args->newstate);
}
tracepoint:tcp:tcp_send_reset /((args->saddr[2] << 8) | args->saddr[3]) == 21 || ((args->daddr[2] << 8) | args->daddr[3]) == 21/ {
  printf("%llu reset sent\n", nsecs);
}
tracepoint:tcp:tcp_receive_reset /args->sport == 21 || args->dport == 21/ {
  printf("%llu reset received %d %d\n", nsecs, args->sport, args->dport);
}
"#;

pub fn run() -> anyhow::Result<()> {
    let pipeline = output(
        Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
            .args(["bench", "-p", "ftptrace", "--bench", "pipeline"])
            .current_dir(workspace_root()),
    )?;
    print!("{pipeline}");
    if !is_root() {
        eprintln!(
            "xtask bench: not root, so the kernel-side figures (churn, per-hit costs, bpftrace) \
             are skipped; BENCHMARKS.md is left as it is"
        );
        return Ok(());
    }
    cargo(&["build", "--release", "-p", "ftptrace"])?;
    cargo(&["build", "--release", "-p", "tests", "--bin", "churn"])?;
    let target = workspace_root().join("target/release");
    let bench = Bench {
        ftptrace: target.join("ftptrace"),
        churn: target.join("churn"),
        scratch: std::env::temp_dir().join(format!("ftptrace-bench-{}", std::process::id())),
    };
    fs::create_dir_all(&bench.scratch)?;
    let network = Network::create()?;
    let servers = [UNTRACED_PORT, FTP_PORT]
        .map(|port| network.spawn_in(SERVER_NS, &bench.churn, &["serve", SERVER, port]));
    thread::sleep(Duration::from_millis(300));
    let _stats = BpfStats::enable()?;
    let mut results: BTreeMap<(Tracer, &str), Vec<Run>> = BTreeMap::new();
    for round in 1..=ROUNDS {
        for tracer in [
            Tracer::None,
            Tracer::Ftptrace,
            Tracer::FtptracePipe,
            Tracer::Bpftrace,
            Tracer::Floor,
        ] {
            for port in [UNTRACED_PORT, FTP_PORT] {
                if tracer == Tracer::Floor && port == FTP_PORT
                    || tracer == Tracer::FtptracePipe && port == UNTRACED_PORT
                {
                    continue;
                }
                let run = bench.churn_once(&network, tracer, port)?;
                eprintln!("xtask bench: round {round}/{ROUNDS}: {tracer:?} on port {port}: {run}");
                results.entry((tracer, port)).or_default().push(run);
            }
        }
    }
    drop(servers);
    let transfers = bench.bulk_rounds(&network)?;
    drop(network);
    let _ = fs::remove_dir_all(&bench.scratch);
    let report = report(&results, &transfers, &pipeline)?;
    print!("{report}");
    write_benchmarks(&report)
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Tracer {
    None,
    Ftptrace,
    /// ftptrace writing to a pipe the bench reads: its lines' latency.
    FtptracePipe,
    Bpftrace,
    /// Empty programs on ftptrace's hooks.
    Floor,
}

struct Bench {
    ftptrace: PathBuf,
    churn: PathBuf,
    scratch: PathBuf,
}

/// One churn run's figures.
#[derive(Default)]
struct Run {
    connections_per_s: f64,
    /// Per program name: nanoseconds per run and runs per connection.
    programs: BTreeMap<String, (f64, f64)>,
    /// All programs' kernel time per connection, in nanoseconds.
    kernel_ns_per_connection: f64,
    /// The tracer's CPU time over the churn, in percent of one core.
    tracer_cpu: f64,
    tracer_peak_kib: u64,
    /// ftptrace's final `stats` line: events and lost.
    events: u64,
    lost: u64,
    /// Kernel-to-line latency of every event line (`FtptracePipe`), µs,
    /// sorted.
    latencies_us: Vec<u32>,
}

impl std::fmt::Display for Run {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{:.0} connections/s, kernel {:.0} ns/connection, tracer {:.1}% CPU, {} events, {} lost",
            self.connections_per_s,
            self.kernel_ns_per_connection,
            self.tracer_cpu,
            self.events,
            self.lost
        )
    }
}

/// Bytes per second of each bulk download, by tracer.
type Transfers = BTreeMap<Tracer, Vec<f64>>;

impl Bench {
    /// [`ROUNDS`] downloads through vsftpd without and with ftptrace, alternating.
    fn bulk_rounds(&self, network: &Network) -> anyhow::Result<Transfers> {
        let conf = bulk::prepare(&self.scratch, SERVER)?;
        let conf = conf.to_string_lossy().into_owned();
        let _vsftpd = network.spawn_in(SERVER_NS, Path::new("vsftpd"), &[&conf]);
        wait_for(Duration::from_secs(10), || {
            output(&mut network.command_in(SERVER_NS, Path::new("ss"), &["-ltnH", "sport = :21"]))
                .is_ok_and(|listening| !listening.trim().is_empty())
        })
        .context("vsftpd did not listen on port 21 within 10 s")?;
        let args = bulk::download_args(SERVER);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        // Once, not counted: the first download reads the file into the
        // page cache.
        bulk::speed(&output(&mut network.command_in(
            CLIENT_NS,
            Path::new("curl"),
            &args,
        ))?)?;
        let mut transfers = Transfers::new();
        for round in 1..=ROUNDS {
            for tracer in [Tracer::None, Tracer::Ftptrace] {
                let out = self.scratch.join("bulk.jsonl");
                let _ = fs::remove_file(&out);
                let child = match tracer {
                    Tracer::Ftptrace => Some(self.start_ftptrace(&out)?),
                    _ => None,
                };
                let curl = output(&mut network.command_in(CLIENT_NS, Path::new("curl"), &args))
                    .context("downloading through vsftpd with curl");
                if let Some(child) = child {
                    interrupt(child)?;
                    // The tracer saw the transfer: its data connection by the 229.
                    let lines = fs::read_to_string(&out)?;
                    anyhow::ensure!(
                        lines.contains("\"type\":\"session\"") && lines.contains("\"data\""),
                        "ftptrace reported no session with a data connection for the download"
                    );
                }
                let speed = bulk::speed(&curl?)?;
                eprintln!(
                    "xtask bench: round {round}/{ROUNDS}: {tracer:?} bulk download: {:.0} MB/s",
                    speed / 1e6
                );
                transfers.entry(tracer).or_default().push(speed);
            }
        }
        Ok(transfers)
    }

    /// ftptrace writing JSON lines to `out`, once its `start` line is there.
    fn start_ftptrace(&self, out: &Path) -> anyhow::Result<Child> {
        let child = Command::new(&self.ftptrace)
            .args(["trace", "--format", "json", "--output"])
            .arg(out)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(fs::File::create(self.scratch.join("ftptrace.err"))?)
            .spawn()
            .context("starting ftptrace")?;
        wait_for(Duration::from_secs(60), || {
            fs::read_to_string(out).is_ok_and(|t| t.contains("\"type\":\"start\""))
        })
        .context("ftptrace did not start within 60 s")?;
        Ok(child)
    }

    fn churn_once(&self, network: &Network, tracer: Tracer, port: &str) -> anyhow::Result<Run> {
        let out = self.scratch.join("ftptrace.jsonl");
        let _ = fs::remove_file(&out);
        // Programs loaded before (the host's own): not the tracer's.
        let host_programs = programs()?;
        let mut floor = None;
        let mut lines = None;
        let mut child = match tracer {
            Tracer::None => None,
            Tracer::Floor => {
                floor = Some(floor::EmptyPrograms::attach()?);
                None
            }
            Tracer::Ftptrace => Some(self.start_ftptrace(&out)?),
            Tracer::FtptracePipe => {
                let mut child = Command::new(&self.ftptrace)
                    .args(["trace", "--format", "json"])
                    .stdin(Stdio::null())
                    .stdout(Stdio::piped())
                    .stderr(fs::File::create(self.scratch.join("ftptrace.err"))?)
                    .spawn()
                    .context("starting ftptrace")?;
                let mut reader = std::io::BufReader::with_capacity(
                    1 << 20,
                    child.stdout.take().context("piped stdout")?,
                );
                // The `start` line comes first, once every program is attached.
                let mut first = String::new();
                std::io::BufRead::read_line(&mut reader, &mut first)?;
                if !first.contains("\"type\":\"start\"") {
                    bail!("ftptrace did not start: {first:?}");
                }
                lines = Some(latency::collect(reader));
                Some(child)
            }
            Tracer::Bpftrace => {
                let child = Command::new("bpftrace")
                    .args(["-e", BPFTRACE_PROGRAM])
                    .stdin(Stdio::null())
                    .stdout(fs::File::create(self.scratch.join("bpftrace.out"))?)
                    .stderr(Stdio::piped())
                    .spawn()
                    .context("starting bpftrace (cargo xtask setup installs it)")?;
                wait_for(Duration::from_secs(60), || {
                    programs().is_ok_and(|p| p.keys().any(|n| n.contains("inet_sock_set")))
                })
                .context("bpftrace did not attach within 60 s")?;
                Some(child)
            }
        };
        let before = programs()?;
        let cpu_before = child.as_ref().map(|c| cpu_ticks(c.id())).transpose()?;
        let started = Instant::now();
        let made = output(&mut network.command_in(
            CLIENT_NS,
            &self.churn,
            &[
                "connect",
                SERVER,
                port,
                &CHURN_SECONDS.to_string(),
                CHURN_THREADS,
            ],
        ))?;
        let took = started.elapsed().as_secs_f64();
        let connections: f64 = made.trim().parse().context("churn's count")?;
        let after = programs()?;
        let mut run = Run {
            connections_per_s: connections / took,
            ..Run::default()
        };
        if let (Some(child), Some(before)) = (&child, cpu_before) {
            let ticks = cpu_ticks(child.id())? - before;
            // USER_HZ is 100 on Linux.
            run.tracer_cpu = ticks as f64 / 100.0 / took * 100.0;
            run.tracer_peak_kib = peak_kib(child.id());
        }
        let mut total_ns = 0.0;
        for (name, (time, count)) in &after {
            if host_programs.contains_key(name) {
                continue;
            }
            let (time_before, count_before) = before.get(name).copied().unwrap_or_default();
            let (time, count) = (time - time_before, count - count_before);
            if count == 0 {
                continue;
            }
            total_ns += time as f64;
            run.programs.insert(
                name.clone(),
                (time as f64 / count as f64, count as f64 / connections),
            );
        }
        run.kernel_ns_per_connection = total_ns / connections;
        if let Some(child) = child.take() {
            interrupt(child)?;
        }
        drop(floor);
        // ftptrace's final stats line: from the pipe's reader, or its file.
        let stats: Option<serde_json::Value> = match tracer {
            Tracer::FtptracePipe => {
                let lines = lines
                    .context("no line reader")?
                    .join()
                    .map_err(|_| anyhow::anyhow!("the line reader panicked"))?;
                run.latencies_us = lines.latencies_us;
                if run.latencies_us.is_empty() {
                    bail!("ftptrace wrote no event line whose `ts` the bench could read");
                }
                lines
                    .last_stats
                    .and_then(|line| serde_json::from_str(&line).ok())
            }
            Tracer::Ftptrace => fs::read_to_string(&out)?.lines().rev().find_map(|l| {
                serde_json::from_str(l)
                    .ok()
                    .filter(|v: &serde_json::Value| v["type"] == "stats")
            }),
            _ => return Ok(run),
        };
        let stats = stats.context("ftptrace wrote no final stats")?;
        run.events = stats["events"].as_u64().unwrap_or(0);
        run.lost = stats["lost"].as_u64().unwrap_or(0);
        Ok(run)
    }
}

/// Ends a tracer with SIGINT (ftptrace and bpftrace both end cleanly on
/// it) and waits for it.
fn interrupt(mut child: Child) -> anyhow::Result<()> {
    // SAFETY: a child of ours, not yet waited for.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    child.wait()?;
    Ok(())
}

/// Every loaded BPF program by name: total run time (ns) and run count
/// (`kernel.bpf_stats_enabled`), summed over programs of one name.
fn programs() -> anyhow::Result<BTreeMap<String, (u64, u64)>> {
    let text = output(Command::new("bpftool").args(["prog", "show", "--json"]))?;
    let list: Vec<serde_json::Value> = serde_json::from_str(&text).context("bpftool's JSON")?;
    let mut by_name = BTreeMap::new();
    for prog in list {
        let name = prog["name"].as_str().unwrap_or("?").to_owned();
        let entry: &mut (u64, u64) = by_name.entry(name).or_default();
        entry.0 += prog["run_time_ns"].as_u64().unwrap_or(0);
        entry.1 += prog["run_cnt"].as_u64().unwrap_or(0);
    }
    Ok(by_name)
}

/// utime + stime of a process, in clock ticks.
fn cpu_ticks(pid: u32) -> anyhow::Result<u64> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // After the command name's closing parenthesis: state is field 3,
    // utime and stime are 14 and 15.
    let rest = stat.rsplit_once(')').context("/proc/PID/stat")?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    Ok(fields[11].parse::<u64>()? + fields[12].parse::<u64>()?)
}

fn peak_kib(pid: u32) -> u64 {
    fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

fn wait_for(limit: Duration, mut ready: impl FnMut() -> bool) -> anyhow::Result<()> {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if ready() {
            return Ok(());
        }
        thread::sleep(Duration::from_millis(100));
    }
    bail!("timed out")
}

/// `kernel.bpf_stats_enabled` on while it lives, as it was after.
struct BpfStats(String);

impl BpfStats {
    fn enable() -> anyhow::Result<Self> {
        let path = "/proc/sys/kernel/bpf_stats_enabled";
        let was = fs::read_to_string(path)?.trim().to_owned();
        fs::write(path, "1")?;
        Ok(Self(was))
    }
}

impl Drop for BpfStats {
    fn drop(&mut self) {
        let _ = fs::write("/proc/sys/kernel/bpf_stats_enabled", &self.0);
    }
}

/// Two namespaces joined by a veth pair, removed on drop.
struct Network;

impl Network {
    fn create() -> anyhow::Result<Self> {
        for ns in [SERVER_NS, CLIENT_NS] {
            let _ = output(Command::new("ip").args(["netns", "del", ns]));
        }
        let steps: &[&[&str]] = &[
            &["netns", "add", SERVER_NS],
            &["netns", "add", CLIENT_NS],
            &[
                "link", "add", "ftb-s", "netns", SERVER_NS, "type", "veth", "peer", "name",
                "ftb-c", "netns", CLIENT_NS,
            ],
            &[
                "-n",
                SERVER_NS,
                "addr",
                "add",
                "192.0.2.1/24",
                "dev",
                "ftb-s",
            ],
            &[
                "-n",
                CLIENT_NS,
                "addr",
                "add",
                "192.0.2.2/24",
                "dev",
                "ftb-c",
            ],
            &["-n", SERVER_NS, "link", "set", "ftb-s", "up"],
            &["-n", CLIENT_NS, "link", "set", "ftb-c", "up"],
            &["-n", SERVER_NS, "link", "set", "lo", "up"],
            &["-n", CLIENT_NS, "link", "set", "lo", "up"],
        ];
        let network = Self;
        for step in steps {
            output(Command::new("ip").args(*step))?;
        }
        // The clients' ports: a wide range, so that they are not what runs out.
        output(&mut network.command_in(
            CLIENT_NS,
            Path::new("sysctl"),
            &["-qw", "net.ipv4.ip_local_port_range=10000 65000"],
        ))?;
        let _ = CLIENT;
        Ok(network)
    }

    fn command_in(&self, ns: &str, program: &Path, args: &[&str]) -> Command {
        let mut command = Command::new("ip");
        command.args(["netns", "exec", ns]).arg(program).args(args);
        command
    }

    fn spawn_in(&self, ns: &str, program: &Path, args: &[&str]) -> Killed {
        Killed(
            self.command_in(ns, program, args)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .spawn()
                .ok(),
        )
    }
}

impl Drop for Network {
    fn drop(&mut self) {
        for ns in [SERVER_NS, CLIENT_NS] {
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
    }
}

/// A child killed on drop.
struct Killed(Option<Child>);

impl Drop for Killed {
    fn drop(&mut self) {
        if let Some(child) = &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Median and spread (min–max) of `values`.
fn median(values: &mut [f64]) -> (f64, f64, f64) {
    values.sort_by(f64::total_cmp);
    let n = values.len();
    if n == 0 {
        return (0.0, 0.0, 0.0);
    }
    let mid = if n % 2 == 1 {
        values[n / 2]
    } else {
        (values[n / 2 - 1] + values[n / 2]) / 2.0
    };
    (mid, values[0], values[n - 1])
}

fn report(
    results: &BTreeMap<(Tracer, &str), Vec<Run>>,
    transfers: &Transfers,
    pipeline: &str,
) -> anyhow::Result<String> {
    let kernel = output(Command::new("uname").arg("-r"))?;
    let date = output(Command::new("date").args(["-u", "+%Y-%m-%d"]))?;
    let cores = thread::available_parallelism().map_or(0, |n| n.get());
    let of = |tracer, port| {
        results
            .get(&(tracer, port))
            .map(Vec::as_slice)
            .unwrap_or(&[])
    };
    let stat = |runs: &[Run], pick: &dyn Fn(&Run) -> f64| {
        let mut values: Vec<f64> = runs.iter().map(pick).collect();
        median(&mut values)
    };
    let rate = |tracer, port| stat(of(tracer, port), &|r| r.connections_per_s);
    let mut out = String::new();
    writeln!(
        out,
        "Measured on {} by `cargo xtask bench` (as root): kernel {}, {cores} cores; {ROUNDS} \
         rounds of {CHURN_SECONDS} s of churn ({CHURN_THREADS} client threads opening and \
         resetting connections), every configuration in every round, alternating. Median \
         (min–max).\n",
        date.trim(),
        kernel.trim()
    )?;
    writeln!(out, "| churn | connections/s | vs. no tracer |")?;
    writeln!(out, "|---|---|---|")?;
    for port in [UNTRACED_PORT, FTP_PORT] {
        let (base, ..) = rate(Tracer::None, port);
        for tracer in [
            Tracer::None,
            Tracer::Ftptrace,
            Tracer::Bpftrace,
            Tracer::Floor,
        ] {
            let runs = of(tracer, port);
            if runs.is_empty() {
                continue;
            }
            let (mid, lo, hi) = rate(tracer, port);
            let ratios: Vec<f64> = runs.iter().map(|r| r.connections_per_s / base).collect();
            let (r_mid, r_lo, r_hi) = median(&mut ratios.clone());
            writeln!(
                out,
                "| port {port} ({}), {} | {mid:.0} ({lo:.0}–{hi:.0}) | {r_mid:.2}× ({r_lo:.2}–{r_hi:.2}) |",
                if port == FTP_PORT {
                    "traced"
                } else {
                    "untraced"
                },
                name(tracer)
            )?;
        }
    }
    writeln!(out)?;
    let ft = of(Tracer::Ftptrace, FTP_PORT);
    let (lost, ..) = stat(ft, &|r| r.lost as f64);
    let (events, ..) = stat(ft, &|r| r.events as f64);
    let lost_all: Vec<String> = ft
        .iter()
        .map(|r| format!("{}/{}", r.lost, r.events + r.lost))
        .collect();
    writeln!(
        out,
        "ftptrace on port 21 churn: median {events:.0} events a run, {lost:.0} lost (each \
         round lost/all: {}); tracer CPU {:.0}% of a core (median), peak RSS {} KiB.\n",
        lost_all.join(", "),
        stat(ft, &|r| r.tracer_cpu).0,
        ft.iter().map(|r| r.tracer_peak_kib).max().unwrap_or(0)
    )?;
    let piped = of(Tracer::FtptracePipe, FTP_PORT);
    let quantile = |q: f64| {
        stat(piped, &|r| {
            f64::from(latency::quantile(&r.latencies_us, q)) / 1000.0
        })
    };
    let (p50, ..) = quantile(0.5);
    let (p99, p99_lo, p99_hi) = quantile(0.99);
    let (max, ..) = quantile(1.0);
    let (rate, ..) = stat(piped, &|r| r.events as f64 / CHURN_SECONDS as f64);
    writeln!(
        out,
        "Kernel-to-line latency, ftptrace writing JSON lines to a pipe the bench reads (at the \
         tracer's priority), port 21 churn: {rate:.0} events/s (median), lost {}; each event \
         line's `ts` against the wall clock when the line arrived: p50 {p50:.1} ms, p99 {p99:.1} ms ({p99_lo:.1}–{p99_hi:.1}), \
         max {max:.1} ms (medians over the rounds).\n",
        piped
            .iter()
            .map(|r| format!("{}/{}", r.lost, r.events + r.lost))
            .collect::<Vec<_>>()
            .join(", "),
    )?;
    let speeds = |tracer| median(&mut transfers.get(&tracer).cloned().unwrap_or_default());
    let (plain, plain_lo, plain_hi) = speeds(Tracer::None);
    let (traced, traced_lo, traced_hi) = speeds(Tracer::Ftptrace);
    writeln!(
        out,
        "Bulk download through vsftpd (curl, {} GiB, passive, the data connection traced by \
         its `229`): {:.0} MB/s ({:.0}–{:.0}) without a tracer, {:.0} MB/s ({:.0}–{:.0}) with \
         ftptrace: {:.2}× (medians of {ROUNDS}, alternating).\n",
        bulk::FILE_BYTES >> 30,
        plain / 1e6,
        plain_lo / 1e6,
        plain_hi / 1e6,
        traced / 1e6,
        traced_lo / 1e6,
        traced_hi / 1e6,
        traced / plain.max(1.0),
    )?;
    let idle = of(Tracer::Ftptrace, UNTRACED_PORT);
    writeln!(
        out,
        "ftptrace with no FTP traffic on a busy host (port 8080 churn): tracer CPU {:.2}% of a \
         core (median), kernel time per untraced connection, all programs: {:.0} ns \
         (bpftrace: {:.0} ns; empty programs on ftptrace's hooks: {:.0} ns).\n",
        stat(idle, &|r| r.tracer_cpu).0,
        stat(idle, &|r| r.kernel_ns_per_connection).0,
        stat(of(Tracer::Bpftrace, UNTRACED_PORT), &|r| r
            .kernel_ns_per_connection)
        .0,
        stat(of(Tracer::Floor, UNTRACED_PORT), &|r| r
            .kernel_ns_per_connection)
        .0,
    )?;
    writeln!(
        out,
        "Kernel time per hit on untraced traffic (port 8080), by program (`bpf_stats`):\n"
    )?;
    writeln!(out, "| program | ns per run | runs per connection |")?;
    writeln!(out, "|---|---|---|")?;
    for tracer in [Tracer::Ftptrace, Tracer::Bpftrace, Tracer::Floor] {
        let runs = of(tracer, UNTRACED_PORT);
        let names: std::collections::BTreeSet<&String> =
            runs.iter().flat_map(|r| r.programs.keys()).collect();
        for program in names {
            let (ns, lo, hi) = stat(runs, &|r| r.programs.get(program).map_or(0.0, |p| p.0));
            let (per, ..) = stat(runs, &|r| r.programs.get(program).map_or(0.0, |p| p.1));
            writeln!(
                out,
                "| {} `{program}` | {ns:.0} ({lo:.0}–{hi:.0}) | {per:.1} |",
                name(tracer)
            )?;
        }
    }
    writeln!(
        out,
        "\nThe user-space pipeline (`cargo bench -p ftptrace --bench pipeline`):\n\n```\n{}```",
        pipeline
    )?;
    Ok(out)
}

fn name(tracer: Tracer) -> &'static str {
    match tracer {
        Tracer::None => "no tracer",
        Tracer::Ftptrace => "ftptrace",
        Tracer::FtptracePipe => "ftptrace to a pipe",
        Tracer::Bpftrace => "bpftrace",
        Tracer::Floor => "empty programs",
    }
}

/// Replaces what is between BENCHMARKS.md's markers with `report`.
fn write_benchmarks(report: &str) -> anyhow::Result<()> {
    let path = workspace_root().join("BENCHMARKS.md");
    let text = fs::read_to_string(&path)?;
    let (Some(begin), Some(end)) = (text.find(BEGIN), text.find(END)) else {
        bail!("BENCHMARKS.md has no {BEGIN} … {END} markers");
    };
    let updated = format!("{}{BEGIN}\n{report}\n{}", &text[..begin], &text[end..]);
    fs::write(&path, updated)?;
    eprintln!("xtask bench: BENCHMARKS.md updated");
    Ok(())
}

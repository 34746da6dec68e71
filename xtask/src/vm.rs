//! `cargo xtask vm`: the root integration suite on other kernels.
//!
//! Debian's kernels are fetched as packages (never installed on the host)
//! into `<cache>/ftptrace/vm/<kernel>/` and booted by virtme-ng under QEMU
//! with software emulation (TCG: /dev/kvm here is a nested KVM that cannot
//! boot stock kernels). The guest sees the host's root file system read-only
//! over 9p, so the tracer and the test executables built on the host run
//! there unchanged; a shared read-write directory carries the test output
//! back. The host's own kernel runs the same script directly, no VM.
//!
//! vng's exit status is 255 even when the guest's script succeeds, so the
//! script's log is the only truth: it brackets each test executable with
//! `==> name` and `<== name exit N` lines, and its last line says it ran to
//! the end.

use std::{
    fmt::Write as _,
    fs,
    io::Write as _,
    os::unix::process::CommandExt as _,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};

use crate::{is_root, output, run, setup, workspace_root};

/// A Debian kernel and the archive suite its packages come from.
struct Kernel {
    name: &'static str,
    /// The hook tier `--quick` forces here: across the matrix, each tier
    /// runs somewhere (the default run covers raw tracepoints, and fentry
    /// wherever it is a ladder's first rung that works).
    quick_tier: &'static str,
    packages: &'static [&'static str],
    archive: Archive,
    suite: &'static str,
}

/// Which of the host's Debian archives has a kernel's suite.
#[derive(Clone, Copy, Debug)]
enum Archive {
    Main,
    Security,
}

impl Kernel {
    /// The host's archive for this kernel's suite.
    fn uri(&self) -> anyhow::Result<String> {
        let archives = crate::apt_sources::host_archives()?;
        Ok(match self.archive {
            Archive::Main => archives.main,
            Archive::Security => archives.security,
        })
    }

    fn archive_name(&self) -> &'static str {
        match self.archive {
            Archive::Main => "the host's Debian archive",
            Archive::Security => "the host's Debian security archive",
        }
    }
}

/// Every kernel comes through a private apt configuration naming only its
/// suite, on the archive the host's own apt sources use (so the project
/// names no mirror), and the host's sources do not change. The ABI
/// numbers are pinned: when Debian moves a suite on, bump them here.
const KERNELS: &[Kernel] = &[
    Kernel {
        name: "5.10",
        quick_tier: "kprobe",
        packages: &["linux-image-5.10.0-46-amd64"],
        archive: Archive::Security,
        suite: "bullseye-security",
    },
    Kernel {
        name: "6.1",
        quick_tier: "fallback",
        packages: &["linux-image-6.1.0-56-amd64"],
        archive: Archive::Security,
        suite: "bookworm-security",
    },
    Kernel {
        name: "6.12",
        quick_tier: "kprobe",
        packages: &["linux-image-6.12.117+deb12-amd64"],
        archive: Archive::Security,
        suite: "bookworm-security",
    },
    Kernel {
        // From 7.x Debian splits the image: kernel, modules, and the
        // metadata package; all three unpack under usr/lib/modules/<kver>/.
        name: "7.2",
        quick_tier: "fentry",
        packages: &[
            "linux-binary-7.2.12+deb14-amd64",
            "linux-modules-7.2.12+deb14-amd64",
            "linux-base-7.2.12+deb14-amd64",
        ],
        archive: Archive::Main,
        suite: "forky",
    },
];

/// Hook tiers the suite's ladder tests run under, forced one at a time
/// (`FTPTRACE_FORCE_HOOK`); the default run covers each probe's first
/// working rung (the raw tracepoint where there is one).
const TIERS: [&str; 3] = ["fentry", "kprobe", "fallback"];

/// Tiers every Debian guest must offer: their kernels have kprobes and BTF.
/// The host offers what it offers (this one: no kprobes, fentry refused);
/// the fallback works everywhere.
const GUEST_TIERS: &[&str] = &TIERS;
const HOST_TIERS: &[&str] = &["fallback"];

/// The test executables that exercise the probes with a hook ladder
/// (socket errors, keepalive and zero-window probes), run once per tier.
const LADDER_TESTS: &[&str] = &["check", "probes", "refused", "syn_drop"];

/// `--quick`: the executables that together see every probe fire (state
/// changes, data and SYN/SYN-ACK retransmits, resets both ways, socket
/// errors, teardown, keepalive and window probes, firewall and
/// listen-overflow drops, the control channel, DNS answers, TLS plaintext) and check every probe's hook,
/// each with the tests to run (all when empty). Of the session tests, the
/// ones that depend on the kernel: the data port a 229 announces traced by
/// the kernel alone, and sessions seeded from sock_diag; the causes
/// themselves are decided in user space, tested on the host.
const QUICK_TESTS: &[(&str, &[&str])] = &[
    // Each probe's hook on this kernel; the others (privileges, an FTP
    // process the TLS probe cannot reach) decide in user space, tested on
    // the host, and each start costs a minute of verifier on 5.10.
    ("check", &["check_reports_every_probe_as_it_attaches"]),
    ("refused", &[]),
    ("syn_drop", &[]),
    ("probes", &[]),
    ("listen_overflow", &[]),
    ("control_channel", &[]),
    // A reset's TTL against the peer's, read by the ingress program.
    ("forged_reset", &[]),
    // FTPS read from the TLS libraries (uprobes on OpenSSL and GnuTLS).
    // lftp's GnuTLS against vsftpd's OpenSSL: both libraries in one test.
    (
        "ftps",
        &["ftps_with_lftp_reads_the_control_channel_in_the_clear"],
    ),
    // DNS answers, read by their own ingress program.
    (
        "patterns",
        &["a_name_that_flips_to_a_dead_server_makes_a_dns_flip_pattern"],
    ),
    (
        "sessions",
        &[
            "clean_download_links_its_data_connection_by_announcement_alone",
            "a_session_open_before_the_tracer_started_is_seeded",
        ],
    ),
];

/// `--quick` under a forced tier: the ladder probes' tests, less syn_drop
/// (its ETIMEDOUT is the keepalive test's too).
const QUICK_LADDER_TESTS: &[&str] = &["check", "probes", "refused"];

/// What runs on one kernel.
struct Plan {
    /// Test executables of the default run; all when `None`.
    tests: Option<&'static [(&'static str, &'static [&'static str])]>,
    /// Forced tiers, and the executables run under each.
    tiers: Vec<&'static str>,
    tier_tests: &'static [&'static str],
}

impl Plan {
    fn full(tiers: &[&'static str]) -> Self {
        Self {
            tests: None,
            tiers: tiers.to_vec(),
            tier_tests: LADDER_TESTS,
        }
    }

    fn quick(tier: &'static str) -> Self {
        Self {
            tests: Some(QUICK_TESTS),
            tiers: vec![tier],
            tier_tests: QUICK_LADDER_TESTS,
        }
    }
}

/// Deadlines in the tests stretch by this factor in a guest: under software
/// emulation the same work takes several times longer.
const GUEST_TIME_SCALE: u32 = 5;

const VIRTME_NG: &str = "virtme-ng==1.42";
/// One test executable in a guest: the slowest (the session scenarios, 16
/// of them, each a minute or so under TCG on 5.10) takes about 15 minutes.
const EXECUTABLE_TIMEOUT: Duration = Duration::from_secs(1800);
/// One whole guest: boot, the suite, shutdown (the full suite on 5.10 takes
/// about 40 minutes alone).
const GUEST_TIMEOUT: Duration = Duration::from_secs(4800);
/// One whole guest of `--quick` (CI's): 5.10's, the slowest, takes about
/// 16 minutes beside another guest. A hung guest must fail CI, not outlast
/// it.
const QUICK_GUEST_TIMEOUT: Duration = Duration::from_secs(2700);
/// How often a running guest's console is read for an oops.
const CONSOLE_POLL: Duration = Duration::from_secs(2);

/// What the guest kernel prints when it oopses or panics: after one, the
/// rest of the suite runs on a broken kernel (tests hang until their
/// timeouts), so the guest is stopped at once.
const OOPS_MARKERS: [&str; 4] = [
    "] BUG: ",
    "] Oops: ",
    "] general protection fault",
    "Kernel panic - not syncing",
];

/// The first oops line in a console log, if any.
fn oops_line(console: &str) -> Option<&str> {
    console
        .lines()
        .find(|line| OOPS_MARKERS.iter().any(|m| line.contains(m)))
}

pub fn list() {
    for kernel in KERNELS {
        println!(
            "{:<6} {} ({} {})",
            kernel.name,
            kernel.packages.join(" "),
            kernel
                .uri()
                .unwrap_or_else(|e| format!("{} ({e:#})", kernel.archive_name())),
            kernel.suite
        );
    }
    println!("host   the running kernel, no VM");
}

/// Guests booted at once (each needs a core and 2 GiB).
const GUESTS_AT_ONCE: usize = 2;

/// Runs the suite on `only` (all kernels and the host when empty), prints
/// one line per kernel, and fails if any kernel did.
pub fn run_matrix(only: &[String], quick: bool) -> anyhow::Result<()> {
    for name in only {
        if name != "host" && !KERNELS.iter().any(|k| k.name == name) {
            bail!("unknown kernel {name} (see `cargo xtask vm --list`)");
        }
    }
    if !is_root() {
        bail!(
            "`cargo xtask vm` needs root: it links the guest kernels' modules under \
             /lib/modules and the suite loads eBPF programs (run it with sudo)"
        );
    }
    let wanted = |name: &str| only.is_empty() || only.iter().any(|o| o == name);
    let guests: Vec<&Kernel> = KERNELS.iter().filter(|k| wanted(k.name)).collect();
    if guests.is_empty() {
        setup::all()?;
    } else {
        setup::vm()?;
    }
    let suite = build()?;
    let _lock = lock()?;
    let vng = if guests.is_empty() {
        PathBuf::new()
    } else {
        virtme_ng()?
    };

    let matrix = Instant::now();
    let failed = std::sync::Mutex::new(Vec::new());
    // Each guest is one TCG thread, bound by one core: as many at once as
    // the host has cores, up to GUESTS_AT_ONCE. Packages are fetched and
    // unpacked one kernel at a time first (apt and /lib/modules are shared).
    let mut ready = Vec::new();
    for kernel in guests {
        match prepare(kernel) {
            Ok(guest) => ready.push((kernel, guest)),
            Err(e) => {
                failed.lock().expect("failed list").push(kernel.name);
                println!("{:<24}  ERROR   {e:#}", kernel.name);
            }
        }
    }
    let at_once = std::thread::available_parallelism()
        .map_or(1, usize::from)
        .min(GUESTS_AT_ONCE);
    let queue = std::sync::Mutex::new(ready.into_iter());
    std::thread::scope(|scope| {
        for _ in 0..at_once {
            scope.spawn(|| {
                loop {
                    let next = queue.lock().expect("guest queue").next();
                    let Some((kernel, guest)) = next else { break };
                    let started = Instant::now();
                    let plan = if quick {
                        Plan::quick(kernel.quick_tier)
                    } else {
                        Plan::full(GUEST_TIERS)
                    };
                    let line = match boot(kernel.name, &guest, &vng, &suite, &plan) {
                        Ok(outcome) => {
                            if !outcome.ok() {
                                failed.lock().expect("failed list").push(kernel.name);
                            }
                            outcome.line(&guest.kver, started.elapsed())
                        }
                        Err(e) => {
                            failed.lock().expect("failed list").push(kernel.name);
                            format!("{:<24}  ERROR   {e:#}", kernel.name)
                        }
                    };
                    println!("{line}");
                    let _ = std::io::stdout().flush();
                }
            });
        }
    });
    let mut failed = failed.into_inner().expect("failed list");
    if wanted("host") {
        let started = Instant::now();
        let kver = fs::read_to_string("/proc/sys/kernel/osrelease")
            .context("reading /proc/sys/kernel/osrelease")?;
        let plan = if quick {
            Plan::quick("fallback")
        } else {
            Plan::full(&TIERS)
        };
        let outcome = on_host(&suite, &plan)?;
        if !outcome.ok() {
            failed.push("host");
        }
        println!(
            "{}",
            outcome.line(&format!("{} (host)", kver.trim()), started.elapsed())
        );
    }
    if !failed.is_empty() {
        bail!(
            "the suite failed on {} ({} s in all)",
            failed.join(", "),
            matrix.elapsed().as_secs()
        );
    }
    Ok(())
}

/// An exclusive lock on `<cache>/ftptrace/vm/lock`, held until dropped:
/// two matrix runs would share run directories, and on a small machine two
/// software-emulated guests slow each other into timing failures.
fn lock() -> anyhow::Result<fs::File> {
    let path = setup::cache_dir().join("vm/lock");
    if let Some(dir) = path.parent() {
        fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let file = fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .with_context(|| format!("opening {}", path.display()))?;
    if file.try_lock().is_err() {
        eprintln!(
            "xtask: waiting for another `cargo xtask vm` to finish (it holds {})",
            path.display()
        );
        file.lock()
            .with_context(|| format!("locking {}", path.display()))?;
    }
    Ok(file)
}

/// The tracer and the test executables, built on the host.
struct Suite {
    tracer: PathBuf,
    /// The tests crate's directory: cargo runs tests from there.
    dir: PathBuf,
    /// (target name, executable), library unit tests first.
    tests: Vec<(String, PathBuf)>,
}

/// Builds with cargo and takes the paths from its JSON messages, so a
/// `CARGO_TARGET_DIR` elsewhere works.
fn build() -> anyhow::Result<Suite> {
    let tracer = artifacts(&["build", "--release", "-p", "ftptrace"])?
        .into_iter()
        .find(|a| a["target"]["name"] == "ftptrace" && a["executable"].is_string())
        .and_then(|a| a["executable"].as_str().map(PathBuf::from))
        .context("`cargo build -p ftptrace` named no ftptrace executable")?;
    let mut dir = None;
    let mut tests = Vec::new();
    for artifact in artifacts(&["test", "-p", "tests", "--no-run"])? {
        let (Some(name), Some(exe), Some(manifest)) = (
            artifact["target"]["name"].as_str(),
            artifact["executable"].as_str(),
            artifact["manifest_path"].as_str(),
        ) else {
            continue;
        };
        if artifact["profile"]["test"] != true {
            continue;
        }
        let lib = artifact["target"]["kind"]
            .as_array()
            .is_some_and(|kinds| kinds.iter().any(|k| k == "lib"));
        dir = Path::new(manifest).parent().map(Path::to_path_buf);
        tests.push((!lib, name.to_owned(), PathBuf::from(exe)));
    }
    tests.sort();
    let dir = dir.context("`cargo test -p tests --no-run` named no test executables")?;
    Ok(Suite {
        tracer,
        dir,
        tests: tests
            .into_iter()
            .map(|(_, name, exe)| (name, exe))
            .collect(),
    })
}

/// The `compiler-artifact` messages of a cargo command; its progress and
/// diagnostics go to the terminal.
fn artifacts(args: &[&str]) -> anyhow::Result<Vec<serde_json::Value>> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let json = output(
        Command::new(cargo)
            .args(args)
            .arg("--message-format=json-render-diagnostics")
            .current_dir(workspace_root())
            .stderr(Stdio::inherit()),
    )?;
    Ok(json
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter(|msg| msg["reason"] == "compiler-artifact")
        .collect())
}

/// A kernel ready to boot.
struct Guest {
    kver: String,
    vmlinuz: PathBuf,
}

/// Downloads and unpacks the kernel's packages unless cached, and makes its
/// modules visible at /lib/modules/<kver>, which the guest shares.
fn prepare(kernel: &Kernel) -> anyhow::Result<Guest> {
    let dir = setup::cache_dir().join("vm").join(kernel.name);
    fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let missing: Vec<&str> = kernel
        .packages
        .iter()
        .copied()
        .filter(|p| deb(&dir, p).is_none())
        .collect();
    let root = dir.join("root");
    if !missing.is_empty() {
        download(kernel, &missing, &dir)?;
        remove_dir(&root)?;
    }
    if !root.exists() {
        let partial = dir.join("root.partial");
        remove_dir(&partial)?;
        for package in kernel.packages {
            let deb = deb(&dir, package).context("downloaded package went missing")?;
            run(Command::new("dpkg").arg("-x").arg(&deb).arg(&partial))?;
        }
        fs::rename(&partial, &root).with_context(|| format!("renaming {}", partial.display()))?;
    }

    let modules = ["lib/modules", "usr/lib/modules"]
        .iter()
        .map(|m| root.join(m))
        .find(|m| m.is_dir())
        .with_context(|| format!("no lib/modules in {}", root.display()))?;
    let kver = fs::read_dir(&modules)?
        .filter_map(Result::ok)
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .next()
        .with_context(|| format!("no kernel version under {}", modules.display()))?;
    let modules = modules.join(&kver);
    let vmlinuz = [
        root.join(format!("boot/vmlinuz-{kver}")),
        modules.join("vmlinuz"),
    ]
    .into_iter()
    .find(|p| p.exists())
    .with_context(|| format!("no vmlinuz for {kver} in {}", root.display()))?;

    // The guest's modprobe reads /lib/modules of the shared root.
    let link = Path::new("/lib/modules").join(&kver);
    let linked = fs::read_link(&link).is_ok_and(|target| target == modules);
    if !linked {
        fs::create_dir_all("/lib/modules").context("creating /lib/modules")?;
        match fs::symlink_metadata(&link) {
            Ok(meta) if meta.file_type().is_symlink() => fs::remove_file(&link)?,
            Ok(_) => bail!(
                "{} exists and is not a link: a {kver} kernel is installed on the host",
                link.display()
            ),
            Err(_) => {}
        }
        std::os::unix::fs::symlink(&modules, &link)
            .with_context(|| format!("linking {} to {}", link.display(), modules.display()))?;
    }
    if !linked || !modules.join("modules.dep").exists() {
        run(Command::new("depmod").arg(&kver))?;
    }
    Ok(Guest { kver, vmlinuz })
}

/// The cached `.deb` of `package` in `dir`.
fn deb(dir: &Path, package: &str) -> Option<PathBuf> {
    let prefix = format!("{package}_");
    fs::read_dir(dir)
        .ok()?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .find(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with(&prefix) && n.ends_with(".deb"))
        })
}

fn remove_dir(dir: &Path) -> anyhow::Result<()> {
    match fs::remove_dir_all(dir) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            Err(e).with_context(|| format!("removing {}", dir.display()))
        }
        _ => Ok(()),
    }
}

/// `apt-get download` through a private configuration naming only the
/// kernel's suite; the packages land in `dir` whole or not at all.
fn download(kernel: &Kernel, packages: &[&str], dir: &Path) -> anyhow::Result<()> {
    let uri = kernel.uri()?;
    eprintln!(
        "xtask: downloading {} from {uri} {}",
        packages.join(" "),
        kernel.suite
    );
    let apt = setup::cache_dir().join("vm/apt").join(kernel.suite);
    for sub in ["sources", "lists/partial", "cache/archives/partial"] {
        fs::create_dir_all(apt.join(sub))?;
    }
    fs::write(
        apt.join("sources/extra.sources"),
        format!(
            "Types: deb\nURIs: {}\nSuites: {}\nComponents: main\n\
             Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg\n",
            uri, kernel.suite
        ),
    )?;
    let options = [
        "Dir::Etc::SourceList=/dev/null".to_owned(),
        format!("Dir::Etc::SourceParts={}", apt.join("sources").display()),
        format!("Dir::State::Lists={}", apt.join("lists").display()),
        format!("Dir::Cache={}", apt.join("cache").display()),
        // We are root and the files are ours: no `_apt` sandbox notices.
        "APT::Sandbox::User=root".to_owned(),
    ];
    let apt_get = || {
        let mut command = Command::new("apt-get");
        for option in &options {
            command.arg("-o").arg(option);
        }
        command.arg("-qq");
        command
    };
    run(apt_get().arg("update"))?;
    let partial = dir.join("download.partial");
    remove_dir(&partial)?;
    fs::create_dir_all(&partial)?;
    run(apt_get()
        .arg("download")
        .args(packages)
        .current_dir(&partial))?;
    for entry in fs::read_dir(&partial)?.filter_map(Result::ok) {
        fs::rename(entry.path(), dir.join(entry.file_name()))?;
    }
    remove_dir(&partial)
}

/// virtme-ng in its own virtualenv under the cache; returns its `bin`.
fn virtme_ng() -> anyhow::Result<PathBuf> {
    let venv = setup::cache_dir().join("venv");
    let bin = venv.join("bin");
    let version = VIRTME_NG.trim_start_matches("virtme-ng==");
    let have = Command::new(bin.join("vng"))
        .arg("--version")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains(version));
    if !have {
        eprintln!("xtask: installing {VIRTME_NG} into {}", venv.display());
        run(Command::new("python3").args(["-m", "venv"]).arg(&venv))?;
        run(Command::new(bin.join("pip")).args(["install", "-q", VIRTME_NG]))?;
    }
    Ok(bin)
}

/// Boots the kernel with the suite as its only job.
fn boot(
    name: &str,
    guest: &Guest,
    vng: &Path,
    suite: &Suite,
    plan: &Plan,
) -> anyhow::Result<Outcome> {
    let out = fresh_run_dir(name)?;
    let script = out.join("run.sh");
    fs::write(&script, script_text(suite, &out, GUEST_TIME_SCALE, plan))?;
    let path = format!(
        "{}:{}",
        vng.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let console = out.join("console.log");
    let console_file =
        fs::File::create(&console).with_context(|| format!("creating {}", console.display()))?;
    let limit = if plan.tests.is_some() {
        QUICK_GUEST_TIMEOUT
    } else {
        GUEST_TIMEOUT
    };
    let mut child = Command::new("timeout")
        .args(["--kill-after=10", &limit.as_secs().to_string()])
        .arg(vng.join("vng"))
        .arg("--run")
        .arg(&guest.vmlinuz)
        .args(["--disable-kvm", "--force-9p", "--verbose"])
        .args(["--cpus", "1", "--memory", "2G"])
        .arg("--rwdir")
        .arg(&out)
        .arg("--exec")
        .arg(format!("sh {}", sh_quote(&script)))
        // vng runs virtme-run from PATH.
        .env("PATH", path)
        .stdin(Stdio::null())
        .stdout(console_file.try_clone()?)
        .stderr(console_file)
        // Its own process group: an oops stops the whole guest.
        .process_group(0)
        .spawn()
        .context("running vng")?;
    // Bounded by `timeout` above, which ends the child.
    let (status, oops) = loop {
        if let Some(status) = child.try_wait().context("waiting for vng")? {
            break (status, None);
        }
        let text = fs::read(&console).unwrap_or_default();
        if let Some(line) = oops_line(&String::from_utf8_lossy(&text)) {
            let line = line.trim().to_owned();
            // SAFETY: signals the process group the child leads.
            unsafe { libc::kill(-(child.id() as i32), libc::SIGKILL) };
            break (child.wait().context("waiting for vng")?, Some(line));
        }
        std::thread::sleep(CONSOLE_POLL);
    };
    let mut outcome = Outcome::read(&out.join("suite.log"), &plan.tiers);
    if let Some(line) = oops {
        outcome.why_unfinished = Some(format!(
            "the guest kernel oopsed, stopped: {line} (console: {})",
            console.display()
        ));
        outcome.finished = false;
    } else if !outcome.finished {
        outcome.why_unfinished = Some(if status.code() == Some(124) {
            format!(
                "the guest ran out of time ({} s; console: {})",
                limit.as_secs(),
                console.display()
            )
        } else {
            format!(
                "the guest stopped before the suite ended (console: {})",
                console.display()
            )
        });
    }
    Ok(outcome)
}

/// The same script on the host's own kernel.
fn on_host(suite: &Suite, plan: &Plan) -> anyhow::Result<Outcome> {
    let out = fresh_run_dir("host")?;
    let script = out.join("run.sh");
    fs::write(&script, script_text(suite, &out, 1, plan))?;
    let _ = Command::new("sh")
        .arg(&script)
        .stdin(Stdio::null())
        .status()
        .context("running the suite")?;
    let mut outcome = Outcome::read(&out.join("suite.log"), HOST_TIERS);
    if !outcome.finished {
        outcome.why_unfinished = Some("the suite's script stopped before the end".into());
    }
    Ok(outcome)
}

/// `<cache>/ftptrace/vm/<kernel>/run/`, emptied.
fn fresh_run_dir(name: &str) -> anyhow::Result<PathBuf> {
    let out = setup::cache_dir().join("vm").join(name).join("run");
    remove_dir(&out)?;
    fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
    Ok(out)
}

/// The script run in the guest (or on the host): every test executable,
/// one test at a time, each bounded, all output into `out/suite.log` (with
/// the passing tests' output too: the counters and events they compared);
/// then
/// the ladder tests once per hook tier that `ftptrace check` says attaches
/// when forced (`=== tier T` or `=== tier T off` in the log).
fn script_text(suite: &Suite, out: &Path, time_scale: u32, plan: &Plan) -> String {
    let log = sh_quote(&out.join("suite.log"));
    let mut script = format!(
        "#!/bin/sh\n\
         # Written by `cargo xtask vm`.\n\
         log={log}\n\
         out={out}\n\
         : > \"$log\"\n\
         exec < /dev/null\n\
         mountpoint -q /sys/kernel/tracing || mount -t tracefs tracefs /sys/kernel/tracing\n\
         # The control-channel programs attach to the cgroup v2 root.\n\
         grep -q ' cgroup2 ' /proc/mounts || mount -t cgroup2 none /sys/fs/cgroup\n\
         # The tests create /run/netns/* and scratch files in /tmp.\n\
         for dir in /run /tmp; do\n\
         \x20   probe=\"$dir/.ftptrace-vm-$$\"\n\
         \x20   if touch \"$probe\" 2>/dev/null; then rm -f \"$probe\"; else mount -t tmpfs tmpfs \"$dir\"; fi\n\
         done\n\
         mkdir -p /run/netns\n\
         cd {dir} || exit 1\n\
         export FTPTRACE_BIN={tracer} CI=true FTPTRACE_TEST_TIME_SCALE={time_scale}\n\
         # Guests run side by side on the host's files: names differ by run.\n\
         export FTPTRACE_TEST_RUN=\"$(basename \"$(dirname \"$out\")\")\"\n\
         # An 8 MiB ring: the default's 32 MiB cost minutes a guest under TCG\n\
         # (`cargo xtask test` runs the host's whole suite with the default).\n\
         export FTPTRACE_TEST_RING_BUFFER_MIB=8\n\
         unset FTPTRACE_FORCE_HOOK\n\
         # Each probe's hook on this kernel, for the record.\n\
         \"$FTPTRACE_BIN\" check --format json > \"$out/check-default.json\" 2>&1\n",
        out = sh_quote(out),
        dir = sh_quote(&suite.dir),
        tracer = sh_quote(&suite.tracer),
    );
    // `filters`: test names to run (libtest's substring filters), all if empty.
    let run_test = |script: &mut String, label: &str, exe: &Path, filters: &[&str]| {
        let _ = write!(
            script,
            "echo '==> {label}' >> \"$log\"\n\
             timeout --kill-after=10 {timeout} {exe}{filters} --test-threads=1 --show-output >> \"$log\" 2>&1\n\
             printf '\\n<== %s exit %s\\n' {label} $? >> \"$log\"\n",
            timeout = EXECUTABLE_TIMEOUT.as_secs(),
            exe = sh_quote(exe),
            filters = filters.iter().map(|f| format!(" {f}")).collect::<String>(),
        );
    };
    // The default run: every executable, or those of the plan with their filters.
    let in_default = |name: &str| -> Option<&[&str]> {
        match plan.tests {
            None => Some(&[]),
            Some(only) => only.iter().find(|(n, _)| *n == name).map(|(_, f)| *f),
        }
    };
    for (name, exe) in &suite.tests {
        if let Some(filters) = in_default(name) {
            run_test(&mut script, name, exe, filters);
        }
    }
    for &tier in &plan.tiers {
        let _ = write!(
            script,
            "if FTPTRACE_FORCE_HOOK={tier} \"$FTPTRACE_BIN\" check --format json > \"$out/check-{tier}.json\" 2>&1 \\\n\
             \x20   && ! grep -q '\"hook\":\"off\"' \"$out/check-{tier}.json\"; then\n\
             echo '=== tier {tier}' >> \"$log\"\n\
             export FTPTRACE_FORCE_HOOK={tier}\n"
        );
        for (name, exe) in suite
            .tests
            .iter()
            .filter(|(n, _)| plan.tier_tests.contains(&n.as_str()))
        {
            let filters = plan.tests.and_then(|_| in_default(name)).unwrap_or(&[]);
            run_test(&mut script, &format!("{name}@{tier}"), exe, filters);
        }
        let _ = write!(
            script,
            "unset FTPTRACE_FORCE_HOOK\n\
             else\n\
             echo '=== tier {tier} off' >> \"$log\"\n\
             fi\n"
        );
    }
    script.push_str("echo '=== end' >> \"$log\"\n");
    script
}

fn sh_quote(path: &Path) -> String {
    format!("'{}'", path.display().to_string().replace('\'', r"'\''"))
}

/// What a suite log says.
#[derive(Debug, PartialEq)]
struct Outcome {
    passed: usize,
    /// Failed tests, and executables that failed without a failed test
    /// (a crash, a timeout), with why.
    failed: Vec<String>,
    /// The script reached its end.
    finished: bool,
    /// Hook tiers the ladder tests ran under, and those that did not attach.
    tiers_run: Vec<String>,
    tiers_off: Vec<String>,
    /// Tiers this kernel must offer.
    tiers_expected: Vec<String>,
    why_unfinished: Option<String>,
    log: PathBuf,
}

impl Outcome {
    fn read(log: &Path, expected_tiers: &[&str]) -> Self {
        let mut outcome = Self::parse(&fs::read_to_string(log).unwrap_or_default());
        outcome.log = log.to_owned();
        outcome.tiers_expected = expected_tiers.iter().map(|t| (*t).to_owned()).collect();
        outcome
    }

    fn parse(text: &str) -> Self {
        let mut passed = 0;
        let mut failed = Vec::new();
        let mut failed_here = false;
        let mut finished = false;
        let (mut tiers_run, mut tiers_off) = (Vec::new(), Vec::new());
        // `@tier` of the executable running, for the names of its failures.
        let mut tier_suffix = "";
        for line in text.lines() {
            if let Some(label) = line.strip_prefix("==> ") {
                failed_here = false;
                tier_suffix = label.find('@').map_or("", |at| &label[at..]);
            } else if let Some(tier) = line.strip_prefix("=== tier ") {
                match tier.strip_suffix(" off") {
                    Some(off) => tiers_off.push(off.to_owned()),
                    None => tiers_run.push(tier.to_owned()),
                }
            } else if let Some(rest) = line.strip_prefix("<== ") {
                let (name, code) = rest.rsplit_once(" exit ").unwrap_or((rest, "?"));
                if code != "0" && !failed_here {
                    failed.push(match code {
                        "124" | "137" => format!(
                            "{name} (timed out after {} s)",
                            EXECUTABLE_TIMEOUT.as_secs()
                        ),
                        _ => format!("{name} (exit {code})"),
                    });
                }
            } else if line == "=== end" {
                finished = true;
            } else if let Some(test) = line.strip_prefix("test ") {
                if test.ends_with(" ... ok") {
                    passed += 1;
                } else if let Some(name) = test.strip_suffix(" ... FAILED") {
                    failed.push(format!("{name}{tier_suffix}"));
                    failed_here = true;
                }
            }
        }
        Self {
            passed,
            failed,
            finished,
            tiers_run,
            tiers_off,
            tiers_expected: Vec::new(),
            why_unfinished: None,
            log: PathBuf::new(),
        }
    }

    fn ok(&self) -> bool {
        self.finished && self.failed.is_empty() && self.missing_tiers().is_empty()
    }

    /// Expected tiers under which the ladder tests did not run.
    fn missing_tiers(&self) -> Vec<&str> {
        self.tiers_expected
            .iter()
            .filter(|t| !self.tiers_run.contains(t))
            .map(String::as_str)
            .collect()
    }

    /// `tiers: fentry kprobe fallback` (plus `off: ...` for those that did not attach).
    fn tiers(&self) -> String {
        let mut text = format!("tiers: {}", self.tiers_run.join(" "));
        if !self.tiers_off.is_empty() {
            let _ = write!(text, "; off: {}", self.tiers_off.join(" "));
        }
        text
    }

    /// `6.1.0-56-amd64  ok  34 passed (190 s)` or `... FAILED  2 failed: a, b (...)`.
    fn line(&self, kernel: &str, took: Duration) -> String {
        let secs = took.as_secs();
        if self.ok() {
            return format!(
                "{kernel:<24}  ok      {} passed, {} ({secs} s)",
                self.passed,
                self.tiers()
            );
        }
        let mut line = format!("{kernel:<24}  FAILED  ");
        let missing = self.missing_tiers();
        if self.finished && !missing.is_empty() {
            let _ = write!(line, "tiers that did not attach: {}; ", missing.join(" "));
        }
        if !self.failed.is_empty() {
            let _ = write!(
                line,
                "{} failed: {}; ",
                self.failed.len(),
                self.failed.join(", ")
            );
        }
        if let Some(why) = &self.why_unfinished {
            let _ = write!(line, "{why}; ");
        }
        let _ = write!(
            line,
            "{} passed ({secs} s, log: {})",
            self.passed,
            self.log.display()
        );
        line
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LOG: &str = "\
==> tests

running 2 tests
test counters::tests::delta_subtracts_per_key ... ok
test deadline::tests::wait_for_panics - should panic ... ok

test result: ok. 2 passed; 0 failed
<== tests exit 0
==> refused

running 2 tests
test refused_connection_shows_reset ... FAILED
test other ... ok

failures:
    refused_connection_shows_reset

test result: FAILED. 1 passed; 1 failed
<== refused exit 101
==> probes

running 1 test
test keepalive_probes ...
<== probes exit 124
==> cli_errors
<== cli_errors exit 139
=== tier fentry
==> probes@fentry
test keepalive_probes ... FAILED
<== probes@fentry exit 101
=== tier kprobe off
=== end
";

    #[test]
    fn parse_counts_passes_and_names_failures_and_silent_exits() {
        let outcome = Outcome::parse(LOG);
        assert_eq!(outcome.passed, 3);
        let timed_out = format!(
            "probes (timed out after {} s)",
            EXECUTABLE_TIMEOUT.as_secs()
        );
        assert_eq!(
            outcome.failed,
            [
                "refused_connection_shows_reset",
                timed_out.as_str(),
                "cli_errors (exit 139)",
                "keepalive_probes@fentry"
            ]
        );
        assert!(outcome.finished);
        assert!(!outcome.ok());
        assert_eq!(outcome.tiers_run, ["fentry"]);
        assert_eq!(outcome.tiers_off, ["kprobe"]);
    }

    #[test]
    fn an_expected_tier_that_did_not_run_fails_the_kernel() {
        let mut outcome =
            Outcome::parse("test a ... ok\n=== tier fallback\n=== tier kprobe off\n=== end\n");
        assert!(outcome.ok());
        outcome.tiers_expected = vec!["kprobe".into(), "fallback".into()];
        assert!(!outcome.ok());
        assert!(
            outcome
                .line("6.1", Duration::from_secs(1))
                .contains("tiers that did not attach: kprobe; ")
        );
    }

    #[test]
    fn a_log_without_its_end_is_not_ok() {
        let outcome = Outcome::parse("==> tests\ntest a ... ok\n<== tests exit 0\n");
        assert_eq!(outcome.passed, 1);
        assert!(outcome.failed.is_empty());
        assert!(!outcome.ok());
    }

    #[test]
    fn an_oops_on_the_console_is_found_and_a_healthy_console_passes() {
        let console = "[    7.45] virtme-ng-init: starting script\n\
                       [  142.36] BUG: kernel NULL pointer dereference, address: 0000000000000018\n\
                       [  142.36] #PF: supervisor write access in kernel mode\n\
                       [  142.36] Oops: Oops: 0002 [#1] SMP NOPTI\n";
        assert_eq!(
            oops_line(console),
            Some("[  142.36] BUG: kernel NULL pointer dereference, address: 0000000000000018")
        );
        assert_eq!(
            oops_line("[ 1.0] virtme-ng-init: BUG: report tool\n[ 2.0] evm: ok\n"),
            None
        );
    }

    #[test]
    fn lines_say_ok_or_what_failed_and_where_the_log_is() {
        let mut outcome = Outcome::parse("test a ... ok\n=== tier fallback\n=== end\n");
        let took = Duration::from_secs(7);
        assert_eq!(
            outcome.line("6.1.0-56-amd64", took),
            "6.1.0-56-amd64            ok      1 passed, tiers: fallback (7 s)"
        );
        outcome.failed = vec!["b".into(), "c".into()];
        outcome.log = PathBuf::from("/x/suite.log");
        assert_eq!(
            outcome.line("6.1.0-56-amd64", took),
            "6.1.0-56-amd64            FAILED  2 failed: b, c; 1 passed (7 s, log: /x/suite.log)"
        );
    }

    #[test]
    fn the_quick_plan_runs_its_subset_and_one_forced_tier() {
        let suite = Suite {
            tracer: PathBuf::from("/t/ftptrace"),
            dir: PathBuf::from("/w/tests"),
            tests: [
                "tests",
                "check",
                "clean_download",
                "probes",
                "refused",
                "sessions",
            ]
            .iter()
            .map(|n| ((*n).to_owned(), PathBuf::from(format!("/t/{n}"))))
            .collect(),
        };
        let script = script_text(&suite, Path::new("/o"), 5, &Plan::quick("kprobe"));
        for line in [
            "==> check'",
            "==> probes'",
            "==> check@kprobe'",
            "==> refused@kprobe'",
        ] {
            assert!(script.contains(line), "{line} missing:\n{script}");
        }
        for line in ["==> clean_download", "==> tests'", "@fentry", "@fallback"] {
            assert!(!script.contains(line), "{line} present:\n{script}");
        }
        assert!(script.contains("FTPTRACE_TEST_TIME_SCALE=5"));
        assert!(script.contains("export FTPTRACE_TEST_RING_BUFFER_MIB=8"));
        // The session tests: only the kernel-dependent ones, by name.
        assert!(
            script.contains(
                "'/t/sessions' clean_download_links_its_data_connection_by_announcement_alone \
                 a_session_open_before_the_tracer_started_is_seeded --test-threads=1"
            ),
            "{script}"
        );
        let full = script_text(&suite, Path::new("/o"), 1, &Plan::full(&TIERS));
        for line in [
            "==> clean_download'",
            "==> tests'",
            "==> probes@fentry'",
            "==> probes@fallback'",
        ] {
            assert!(full.contains(line), "{line} missing:\n{full}");
        }
    }

    #[test]
    fn every_tier_runs_somewhere_in_the_quick_matrix() {
        for tier in TIERS {
            assert!(
                tier == "fallback" || KERNELS.iter().any(|k| k.quick_tier == tier),
                "{tier}"
            );
        }
        assert!(KERNELS.iter().all(|k| TIERS.contains(&k.quick_tier)));
    }

    #[test]
    fn sh_quote_survives_quotes() {
        assert_eq!(sh_quote(Path::new("/a b/it's")), r"'/a b/it'\''s'");
    }

    #[test]
    fn kernel_names_are_unique() {
        for (i, a) in KERNELS.iter().enumerate() {
            assert!(KERNELS[i + 1..].iter().all(|b| b.name != a.name));
            assert_ne!(a.name, "host");
        }
    }
}

//! `cargo xtask vm`: the root integration suite on other kernels. Debian's
//! kernels are fetched as packages (never installed on the host), booted
//! under QEMU with software emulation (TCG: /dev/kvm here cannot boot stock
//! kernels) by virtme-ng, with the host's root file system shared read-only,
//! so the host-built tracer and test binaries run unchanged in the guest.

use std::{
    fs,
    path::{Path, PathBuf},
    process::Command,
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};

use crate::{cargo, output, run, setup::cache_dir, workspace_root};

/// A Debian kernel: where its packages come from.
struct Kernel {
    name: &'static str,
    packages: &'static [&'static str],
    /// `None`: the host's configured (bookworm) sources; else a suite of
    /// `URI` fetched through a throwaway apt configuration.
    extra_source: Option<(&'static str, &'static str)>,
}

const KERNELS: &[Kernel] = &[
    Kernel {
        name: "5.10",
        packages: &["linux-image-5.10.0-46-amd64"],
        extra_source: Some(("http://deb.debian.org/debian-security", "bullseye-security")),
    },
    Kernel {
        name: "6.1",
        packages: &["linux-image-6.1.0-56-amd64"],
        extra_source: None,
    },
    Kernel {
        name: "6.12",
        packages: &["linux-image-6.12.117+deb12-amd64"],
        extra_source: None,
    },
    Kernel {
        name: "7.2",
        packages: &[
            "linux-binary-7.2.12+deb14-amd64",
            "linux-modules-7.2.12+deb14-amd64",
            "linux-base-7.2.12+deb14-amd64",
        ],
        extra_source: Some(("http://deb.debian.org/debian", "forky")),
    },
];

const VIRTME_NG: &str = "virtme-ng==1.42";
/// A guest boots in seconds, but the suite runs under software emulation.
const GUEST_TIMEOUT: Duration = Duration::from_secs(1800);

pub fn list() {
    for kernel in KERNELS {
        println!("{:<6} {}", kernel.name, kernel.packages.join(" "));
    }
    println!("host   the running kernel, no VM");
}

/// Runs the suite on `only` (all when empty) and on the host; one line each.
pub fn run_matrix(only: &[String]) -> anyhow::Result<()> {
    for name in only {
        if name != "host" && !KERNELS.iter().any(|k| k.name == name) {
            bail!("unknown kernel {name} (see `cargo xtask vm --list`)");
        }
    }
    let wanted = |name: &str| only.is_empty() || only.iter().any(|o| o == name);
    let binaries = build()?;
    let mut failed = Vec::new();
    for kernel in KERNELS.iter().filter(|k| wanted(k.name)) {
        let started = Instant::now();
        let outcome = prepare(kernel).and_then(|(kver, vmlinuz)| {
            let outcome = boot_and_test(kernel.name, &vmlinuz, &binaries)?;
            Ok((kver, outcome))
        });
        match outcome {
            Ok((kver, outcome)) => {
                report(&kver, &outcome, started.elapsed());
                if !outcome.ok() {
                    failed.push(kver);
                }
            }
            Err(e) => {
                println!("{:<24} ERROR  {e:#}", kernel.name);
                failed.push(kernel.name.to_owned());
            }
        }
    }
    if wanted("host") {
        let started = Instant::now();
        let dir = cache_dir().join("vm/host");
        fs::create_dir_all(&dir)?;
        let outcome = run_suite_here(&binaries, &dir)?;
        let kver = fs::read_to_string("/proc/sys/kernel/osrelease")?
            .trim()
            .to_owned();
        report(&format!("{kver} (host)"), &outcome, started.elapsed());
        if !outcome.ok() {
            failed.push("host".into());
        }
    }
    if !failed.is_empty() {
        bail!("the suite failed on {}", failed.join(", "));
    }
    Ok(())
}

/// The tracer and the test executables, built on the host.
struct Binaries {
    tracer: PathBuf,
    tests: Vec<PathBuf>,
}

fn build() -> anyhow::Result<Binaries> {
    cargo(&["build", "--release", "-p", "ftptrace"])?;
    let cargo_bin = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let json = output(
        Command::new(cargo_bin)
            .args(["test", "-p", "tests", "--no-run", "--message-format=json"])
            .current_dir(workspace_root()),
    )?;
    let tests = json
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter(|msg| msg["reason"] == "compiler-artifact" && msg["profile"]["test"] == true)
        .filter_map(|msg| msg["executable"].as_str().map(PathBuf::from))
        .collect::<Vec<_>>();
    if tests.is_empty() {
        bail!("`cargo test -p tests --no-run` named no test executables");
    }
    Ok(Binaries {
        tracer: workspace_root().join("target/release/ftptrace"),
        tests,
    })
}

/// Downloads, unpacks and registers the kernel's modules; returns its
/// release string and kernel image.
fn prepare(kernel: &Kernel) -> anyhow::Result<(String, PathBuf)> {
    let dir = cache_dir().join("vm").join(kernel.name);
    let root = dir.join("root");
    fs::create_dir_all(&dir)?;
    for package in kernel.packages {
        let have = fs::read_dir(&dir)?.filter_map(Result::ok).any(|e| {
            e.file_name()
                .to_string_lossy()
                .starts_with(&format!("{package}_"))
        });
        if !have {
            download(kernel, package, &dir)?;
        }
    }
    if !root.exists() {
        for deb in fs::read_dir(&dir)?.filter_map(Result::ok).map(|e| e.path()) {
            if deb.extension().is_some_and(|e| e == "deb") {
                run(Command::new("dpkg").arg("-x").arg(&deb).arg(&root))?;
            }
        }
    }
    let modules = ["lib/modules", "usr/lib/modules"]
        .iter()
        .map(|m| root.join(m))
        .find(|m| m.is_dir())
        .context("the kernel package has no modules directory")?;
    let kver = fs::read_dir(&modules)?
        .filter_map(Result::ok)
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .next()
        .context("no kernel version under the modules directory")?;
    let vmlinuz = [
        root.join(format!("boot/vmlinuz-{kver}")),
        modules.join(&kver).join("vmlinuz"),
    ]
    .into_iter()
    .find(|p| p.exists())
    .context("no kernel image in the package")?;
    // modprobe in the guest looks in /lib/modules of the shared root.
    let link = Path::new("/lib/modules").join(&kver);
    fs::create_dir_all("/lib/modules")?;
    if fs::read_link(&link).ok().as_deref() != Some(&modules.join(&kver)) {
        let _ = fs::remove_file(&link);
        std::os::unix::fs::symlink(modules.join(&kver), &link)
            .with_context(|| format!("linking {}", link.display()))?;
        run(Command::new("depmod").arg(&kver))?;
    }
    Ok((kver, vmlinuz))
}

fn download(kernel: &Kernel, package: &str, dir: &Path) -> anyhow::Result<()> {
    eprintln!("xtask: downloading {package}");
    let mut command = Command::new("apt-get");
    if let Some((uri, suite)) = kernel.extra_source {
        // A private apt configuration naming only this suite: the host's
        // sources stay as they are.
        let apt = cache_dir().join("vm/apt").join(suite);
        for sub in ["parts", "lists/partial", "cache/archives/partial"] {
            fs::create_dir_all(apt.join(sub))?;
        }
        fs::write(
            apt.join("parts/extra.sources"),
            format!(
                "Types: deb\nURIs: {uri}\nSuites: {suite}\nComponents: main\n\
                 Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg\n"
            ),
        )?;
        let options = [
            "-o".to_owned(),
            "Dir::Etc::SourceList=/dev/null".to_owned(),
            "-o".to_owned(),
            format!("Dir::Etc::SourceParts={}", apt.join("parts").display()),
            "-o".to_owned(),
            format!("Dir::State::Lists={}", apt.join("lists").display()),
            "-o".to_owned(),
            format!("Dir::Cache={}", apt.join("cache").display()),
        ];
        run(Command::new("apt-get")
            .args(&options)
            .args(["update", "-qq"]))?;
        command.args(options);
    }
    run(command.args(["download", "-qq", package]).current_dir(dir))
}

/// What a suite run said.
struct Outcome {
    passed: usize,
    failed: Vec<String>,
    log: PathBuf,
    status: Option<i32>,
}

impl Outcome {
    fn ok(&self) -> bool {
        self.status == Some(0) && self.failed.is_empty()
    }
}

fn report(kver: &str, outcome: &Outcome, took: Duration) {
    if outcome.ok() {
        println!(
            "{kver:<24} ok      {} passed ({} s)",
            outcome.passed,
            took.as_secs()
        );
    } else {
        println!(
            "{kver:<24} FAILED  {} passed, {} failed: {} (status {:?}, {} s, log: {})",
            outcome.passed,
            outcome.failed.len(),
            outcome.failed.join(", "),
            outcome.status,
            took.as_secs(),
            outcome.log.display()
        );
    }
}

/// The guest's script: run every test executable, one test at a time,
/// output and exit status into the shared directory.
fn guest_script(binaries: &Binaries, out: &Path) -> String {
    let mut script = format!(
        "#!/bin/sh\n\
         mountpoint -q /sys/kernel/tracing || mount -t tracefs tracefs /sys/kernel/tracing\n\
         mkdir -p /run/netns\n\
         export FTPTRACE_BIN={} CI=true PATH=/usr/sbin:/usr/bin:/sbin:/bin\n\
         status=0\n",
        binaries.tracer.display()
    );
    for test in &binaries.tests {
        script += &format!(
            "{} --test-threads=1 >> {log} 2>&1 || status=1\n",
            test.display(),
            log = out.join("suite.log").display()
        );
    }
    script += &format!("echo $status > {}\n", out.join("status").display());
    script
}

fn boot_and_test(name: &str, vmlinuz: &Path, binaries: &Binaries) -> anyhow::Result<Outcome> {
    let out = cache_dir().join("vm/run").join(name);
    let _ = fs::remove_dir_all(&out);
    fs::create_dir_all(&out)?;
    let script = out.join("run.sh");
    fs::write(&script, guest_script(binaries, &out))?;
    let venv = venv()?;
    let path = format!(
        "{}:{}",
        venv.join("bin").display(),
        std::env::var("PATH").unwrap_or_default()
    );
    // vng exits 255 even when the script succeeds: the status file is the truth.
    let _ = Command::new("timeout")
        .arg(GUEST_TIMEOUT.as_secs().to_string())
        .arg(venv.join("bin/vng"))
        .args(["--run"])
        .arg(vmlinuz)
        .args([
            "--disable-kvm",
            "--force-9p",
            "--cpus",
            "1",
            "--memory",
            "2G",
            "--rwdir",
        ])
        .arg(&out)
        .arg("--exec")
        .arg(format!("sh {}", script.display()))
        .env("PATH", path)
        .stdout(fs::File::create(out.join("console.log"))?)
        .stderr(fs::File::create(out.join("vng.log"))?)
        .status()
        .context("running vng")?;
    Ok(parse_outcome(&out))
}

fn run_suite_here(binaries: &Binaries, out: &Path) -> anyhow::Result<Outcome> {
    let _ = fs::remove_file(out.join("suite.log"));
    let script = out.join("run.sh");
    fs::write(&script, guest_script(binaries, out))?;
    let _ = Command::new("sh").arg(&script).status()?;
    Ok(parse_outcome(out))
}

fn parse_outcome(out: &Path) -> Outcome {
    let log = out.join("suite.log");
    let text = fs::read_to_string(&log).unwrap_or_default();
    let status = fs::read_to_string(out.join("status"))
        .ok()
        .and_then(|s| s.trim().parse().ok());
    let mut passed = 0;
    let mut failed = Vec::new();
    for line in text.lines() {
        if let Some(name) = line.strip_prefix("test ") {
            if let Some(name) = name.strip_suffix(" ... ok") {
                passed += usize::from(!name.contains("::"));
            } else if let Some(name) = name.strip_suffix(" ... FAILED") {
                failed.push(name.to_owned());
            }
        }
    }
    Outcome {
        passed,
        failed,
        log,
        status,
    }
}

/// virtme-ng in its own virtualenv under the cache.
fn venv() -> anyhow::Result<PathBuf> {
    let venv = cache_dir().join("venv");
    if !venv.join("bin/vng").exists() {
        eprintln!("xtask: installing {VIRTME_NG} into {}", venv.display());
        run(Command::new("python3").arg("-m").arg("venv").arg(&venv))?;
        run(Command::new(venv.join("bin/pip")).args(["install", "-q", VIRTME_NG]))?;
    }
    Ok(venv)
}

//! `cargo xtask setup`: everything a fresh Debian machine needs, installed
//! idempotently. Each step checks first and says nothing when already done.

use std::{
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context as _, bail};

use crate::{is_root, output, run};

/// Debian packages the tests use. g++ builds libFuzzer (`cargo xtask fuzz`).
const PACKAGES: &[&str] = &[
    "vsftpd",
    "curl",
    "lftp",
    "nftables",
    "iproute2",
    "ethtool",
    "procps",
    "tcpdump",
    "python3",
    "bpftool",
    "g++",
    "busybox-static",
    // The rotation test runs Debian's own logrotate against --output.
    "logrotate",
    // The metrics test scrapes --metrics with Debian's Prometheus, and
    // checks the shipped rules with its promtool.
    "prometheus",
    // The report test opens `ftptrace report`'s page in headless Chromium.
    "chromium",
];

/// Debian packages `cargo xtask vm` adds: QEMU, depmod for the guest
/// kernels' modules, a virtualenv for virtme-ng, and the static busybox
/// virtme-ng puts in the guest's initramfs (it refuses to boot without).
const VM_PACKAGES: &[&str] = &["qemu-system-x86", "kmod", "python3-venv", "busybox-static"];

const BPF_LINKER_VERSION: &str = "0.13.0";
const CARGO_FUZZ_VERSION: &str = "0.13.2";

pub fn all() -> anyhow::Result<()> {
    packages(PACKAGES)?;
    crate::ftp_servers::fetch()?;
    build_chain()
}

/// What `cargo xtask bench` needs on top of [`all`]: the peer it is
/// measured against.
pub fn bench() -> anyhow::Result<()> {
    all()?;
    packages(&["bpftrace"])
}

/// What `cargo xtask vm` needs on top of [`all`].
pub fn vm() -> anyhow::Result<()> {
    all()?;
    packages(VM_PACKAGES)
}

/// What `cargo xtask fuzz` needs: g++ (of [`PACKAGES`]; none of the
/// others), the nightly (for AddressSanitizer) and cargo-fuzz. Not in
/// [`all`]: only fuzzing pays for building cargo-fuzz.
pub fn fuzz() -> anyhow::Result<()> {
    packages(&["g++"])?;
    nightly()?;
    let installed = Command::new("cargo-fuzz")
        .arg("--version")
        .output()
        .is_ok_and(|o| {
            o.status.success() && String::from_utf8_lossy(&o.stdout).contains(CARGO_FUZZ_VERSION)
        });
    if installed {
        return Ok(());
    }
    eprintln!("xtask: installing cargo-fuzz {CARGO_FUZZ_VERSION}");
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    run(Command::new(cargo).args([
        "install",
        "cargo-fuzz",
        "--version",
        CARGO_FUZZ_VERSION,
        "--locked",
    ]))
}

/// The eBPF build chain: nightly with rust-src, bpf-linker against its LLVM.
pub fn build_chain() -> anyhow::Result<()> {
    nightly()?;
    bpf_linker()
}

fn packages(wanted: &[&str]) -> anyhow::Result<()> {
    let missing: Vec<&str> = wanted
        .iter()
        .copied()
        .filter(|package| !installed(package))
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    if !is_root() {
        bail!(
            "Debian packages missing: {} (run `cargo xtask setup` as root to install them)",
            missing.join(" ")
        );
    }
    eprintln!("xtask: installing {}", missing.join(" "));
    run(Command::new("apt-get").args(["update", "-qq"]))?;
    run(Command::new("apt-get")
        .args(["install", "-y", "-qq", "--no-install-recommends"])
        .args(&missing)
        .env("DEBIAN_FRONTEND", "noninteractive"))
}

fn installed(package: &str) -> bool {
    Command::new("dpkg-query")
        .args(["-W", "-f=${Status}", package])
        .output()
        .is_ok_and(|out| String::from_utf8_lossy(&out.stdout).contains("install ok installed"))
}

fn nightly() -> anyhow::Result<()> {
    let toolchains = output(Command::new("rustup").args(["toolchain", "list"]))?;
    if !toolchains.lines().any(|l| l.starts_with("nightly")) {
        eprintln!("xtask: installing the nightly toolchain");
        run(Command::new("rustup").args([
            "toolchain",
            "install",
            "nightly",
            "--profile",
            "minimal",
            "--component",
            "rust-src",
        ]))?;
    }
    let components = output(Command::new("rustup").args([
        "component",
        "list",
        "--toolchain",
        "nightly",
        "--installed",
    ]))?;
    if !components.lines().any(|l| l.starts_with("rust-src")) {
        eprintln!("xtask: adding rust-src to nightly");
        run(Command::new("rustup").args([
            "component",
            "add",
            "rust-src",
            "--toolchain",
            "nightly",
        ]))?;
    }
    Ok(())
}

/// bpf-linker built against the nightly's own libLLVM, so the LLVM that
/// compiles the eBPF crate and the one that links it agree. The library's
/// name and LLVM major version come from the installed nightly.
fn bpf_linker() -> anyhow::Result<()> {
    let sysroot = PathBuf::from(
        output(Command::new("rustc").args(["+nightly", "--print", "sysroot"]))?.trim(),
    );
    let libllvm = find_libllvm(&sysroot.join("lib"))?;
    let version = output(Command::new("rustc").args(["+nightly", "-vV"]))?;
    let major = version
        .lines()
        .find_map(|l| l.strip_prefix("LLVM version: "))
        .and_then(|v| v.split('.').next())
        .context("`rustc +nightly -vV` names no LLVM version")?
        .to_owned();

    let cache = cache_dir();
    let stamp = cache.join("bpf-linker.stamp");
    let want = format!(
        "bpf-linker {BPF_LINKER_VERSION} llvm-{major} {}\n",
        libllvm.display()
    );
    let on_path = Command::new("bpf-linker")
        .arg("--version")
        .output()
        .is_ok_and(|o| {
            o.status.success() && String::from_utf8_lossy(&o.stdout).contains(BPF_LINKER_VERSION)
        });
    if on_path && std::fs::read_to_string(&stamp).is_ok_and(|s| s == want) {
        return Ok(());
    }

    // A prefix whose lib/ holds libLLVM.so and its versioned name, both
    // pointing into the nightly's sysroot: what bpf-linker's build looks for.
    let prefix = cache.join("llvm-prefix");
    let lib = prefix.join("lib");
    std::fs::create_dir_all(&lib).with_context(|| format!("creating {}", lib.display()))?;
    let file_name = libllvm
        .file_name()
        .context("libLLVM path has no file name")?;
    for link in [lib.join("libLLVM.so"), lib.join(file_name)] {
        let _ = std::fs::remove_file(&link);
        std::os::unix::fs::symlink(&libllvm, &link)
            .with_context(|| format!("linking {}", link.display()))?;
    }
    eprintln!(
        "xtask: building bpf-linker {BPF_LINKER_VERSION} against {}",
        libllvm.display()
    );
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    run(Command::new(cargo)
        .args([
            "install",
            "bpf-linker",
            "--version",
            BPF_LINKER_VERSION,
            "--no-default-features",
            "--features",
            &format!("llvm-{major}"),
            "--locked",
            "--force",
        ])
        .env("LLVM_PREFIX", &prefix))?;
    std::fs::write(&stamp, want).with_context(|| format!("writing {}", stamp.display()))
}

fn find_libllvm(lib: &Path) -> anyhow::Result<PathBuf> {
    let entries = std::fs::read_dir(lib).with_context(|| format!("reading {}", lib.display()))?;
    entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .find(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("libLLVM.so.") && n.contains("nightly"))
        })
        .with_context(|| format!("no libLLVM.so.*-nightly in {}", lib.display()))
}

pub fn cache_dir() -> PathBuf {
    let base = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .unwrap_or_else(|| PathBuf::from("/tmp"));
    base.join("ftptrace")
}

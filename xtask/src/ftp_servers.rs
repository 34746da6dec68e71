//! The FTP servers other than vsftpd that the root tests run (proftpd and
//! pure-ftpd, `tests/tests/real_servers.rs`): Debian packages fetched with
//! `apt-get download` (the machine's own apt configuration) and unpacked
//! with `dpkg -x` into the cache, never installed. Idempotent: quiet when the
//! unpacked tree is already there and complete.

use std::{
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context as _, bail};

use crate::{is_root, output};

/// proftpd, the libraries it links that a test machine does not have
/// (checked with `ldd` after unpacking), and pure-ftpd.
pub const PACKAGES: &[&str] = &[
    "proftpd-core",
    "libhiredis0.14",
    "libmemcached11",
    "libmemcachedutil2",
    "libhashkit2",
    "libpcre2-posix3",
    "pure-ftpd",
    "pure-ftpd-common",
];

/// The servers' binaries in the unpacked tree; `tests/src/ftp_servers.rs`
/// starts them from there.
const BINARIES: &[&str] = &["usr/sbin/proftpd", "usr/sbin/pure-ftpd"];

/// `<cache>/ftptrace/ftp-servers`: `debs/` and the unpacked `root/`.
pub fn dir() -> PathBuf {
    crate::setup::cache_dir().join("ftp-servers")
}

/// Downloads the missing `.deb`s, unpacks them all into `root/` unless the
/// tree there was unpacked from exactly these files, and checks with `ldd`
/// that both servers find every library.
pub fn fetch() -> anyhow::Result<()> {
    let dir = dir();
    let debs = dir.join("debs");
    let root = dir.join("root");
    let stamp = dir.join("unpacked.stamp");
    std::fs::create_dir_all(&debs).with_context(|| format!("creating {}", debs.display()))?;

    let missing: Vec<&str> = PACKAGES
        .iter()
        .copied()
        .filter(|p| deb_of(&debs, p).is_none())
        .collect();
    if !missing.is_empty() {
        if !is_root() {
            bail!(
                "FTP server packages missing: {} (run `cargo xtask setup` as root to fetch them)",
                missing.join(" ")
            );
        }
        eprintln!(
            "xtask: fetching {} into {}",
            missing.join(" "),
            debs.display()
        );
        if download(&debs, &missing).is_err() {
            // Stale package lists: update once and try again.
            output(Command::new("apt-get").args(["update", "-qq"]))
                .context("apt-get update failed")?;
            download(&debs, &missing).context("apt-get download failed")?;
        }
    }
    let files: Vec<PathBuf> = PACKAGES
        .iter()
        .map(|p| deb_of(&debs, p).with_context(|| format!("apt-get download fetched no {p}")))
        .collect::<anyhow::Result<_>>()?;
    let want: String = files
        .iter()
        .filter_map(|f| f.file_name()?.to_str())
        .map(|name| format!("{name}\n"))
        .collect();
    let complete = BINARIES.iter().all(|b| root.join(b).is_file());
    if complete && std::fs::read_to_string(&stamp).is_ok_and(|s| s == want) {
        return Ok(());
    }

    eprintln!("xtask: unpacking the FTP servers into {}", root.display());
    let _ = std::fs::remove_file(&stamp);
    if root.exists() {
        std::fs::remove_dir_all(&root).with_context(|| format!("removing {}", root.display()))?;
    }
    std::fs::create_dir_all(&root).with_context(|| format!("creating {}", root.display()))?;
    for file in &files {
        output(Command::new("dpkg").arg("-x").arg(file).arg(&root))
            .with_context(|| format!("dpkg -x {} failed", file.display()))?;
    }
    check_libraries(&root)?;
    std::fs::write(&stamp, want).with_context(|| format!("writing {}", stamp.display()))
}

/// `apt-get download` into `debs` (the `_apt` user cannot write there, so
/// apt warns that it downloads unsandboxed: the output is kept only for the
/// error).
fn download(debs: &Path, packages: &[&str]) -> anyhow::Result<()> {
    output(
        Command::new("apt-get")
            .args(["download", "-qq"])
            .args(packages)
            .current_dir(debs),
    )
    .map(drop)
}

/// The newest `<package>_*.deb` in `debs`.
fn deb_of(debs: &Path, package: &str) -> Option<PathBuf> {
    let prefix = format!("{package}_");
    let mut found: Vec<PathBuf> = std::fs::read_dir(debs)
        .ok()?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with(&prefix) && n.ends_with(".deb"))
        })
        .collect();
    found.sort();
    found.pop()
}

/// The unpacked `usr/lib/<multiarch>` directory (proftpd's libraries).
pub fn lib_dir(root: &Path) -> Option<PathBuf> {
    std::fs::read_dir(root.join("usr/lib"))
        .ok()?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .find(|p| {
            p.is_dir()
                && p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.ends_with("-linux-gnu"))
        })
}

/// `ldd` on each server, with the unpacked libraries on the path: nothing
/// may be `not found`.
fn check_libraries(root: &Path) -> anyhow::Result<()> {
    let libs = lib_dir(root).with_context(|| {
        format!(
            "no usr/lib/<arch>-linux-gnu in {} after unpacking",
            root.display()
        )
    })?;
    for binary in BINARIES {
        let path = root.join(binary);
        let out = output(Command::new("ldd").arg(&path).env("LD_LIBRARY_PATH", &libs))?;
        let missing: Vec<&str> = out
            .lines()
            .filter(|l| l.contains("not found"))
            .map(str::trim)
            .collect();
        if !missing.is_empty() {
            bail!(
                "{} misses libraries: {} (add their packages to xtask/src/ftp_servers.rs)",
                path.display(),
                missing.join(", ")
            );
        }
    }
    Ok(())
}

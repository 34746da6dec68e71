//! `cargo xtask package`: the Debian package, built with Debian's own
//! `dpkg-deb` from a tree laid out here (binary, unit, logrotate file, man
//! page, shell completions, copyright). A hand-made tree rather than
//! cargo-deb: the few files are plain, and dpkg-deb is on every Debian
//! machine, where cargo-deb would be built from source on each.

use std::{fs, os::unix::fs::PermissionsExt as _, path::Path, path::PathBuf, process::Command};

use anyhow::Context as _;

use crate::{cargo, output, run, workspace_root};

/// Builds the release binary and `target/debian/ftptrace_<version>_<arch>.deb`;
/// returns the package's path.
pub fn build() -> anyhow::Result<PathBuf> {
    cargo(&["build", "--release", "-p", "ftptrace"])?;
    let root = workspace_root();
    let binary = root.join("target/release/ftptrace");
    let version = env!("CARGO_PKG_VERSION");
    let arch = output(Command::new("dpkg").arg("--print-architecture"))?
        .trim()
        .to_owned();
    let name = format!("ftptrace_{version}_{arch}");
    let out = root.join("target/debian");
    let tree = out.join(&name);
    if tree.exists() {
        fs::remove_dir_all(&tree).with_context(|| format!("removing {}", tree.display()))?;
    }
    let file = |path: &str, contents: &[u8], mode: u32| -> anyhow::Result<()> {
        let path = tree.join(path);
        fs::create_dir_all(path.parent().expect("a file in a directory"))?;
        fs::write(&path, contents).with_context(|| format!("writing {}", path.display()))?;
        fs::set_permissions(&path, fs::Permissions::from_mode(mode))?;
        Ok(())
    };
    file("usr/bin/ftptrace", &fs::read(&binary)?, 0o755)?;
    file(
        "usr/lib/systemd/system/ftptrace.service",
        &fs::read(root.join("packaging/ftptrace.service"))?,
        0o644,
    )?;
    file(
        "etc/logrotate.d/ftptrace",
        &fs::read(root.join("packaging/ftptrace.logrotate"))?,
        0o644,
    )?;
    let made = |args: &[&str]| output(Command::new(&binary).args(args));
    file(
        "usr/share/man/man1/ftptrace.1.gz",
        &gzip(made(&["man"])?.as_bytes())?,
        0o644,
    )?;
    file(
        "usr/share/bash-completion/completions/ftptrace",
        made(&["completions", "bash"])?.as_bytes(),
        0o644,
    )?;
    file(
        "usr/share/zsh/vendor-completions/_ftptrace",
        made(&["completions", "zsh"])?.as_bytes(),
        0o644,
    )?;
    file(
        "usr/share/fish/vendor_completions.d/ftptrace.fish",
        made(&["completions", "fish"])?.as_bytes(),
        0o644,
    )?;
    file(
        "usr/share/doc/ftptrace/copyright",
        COPYRIGHT.as_bytes(),
        0o644,
    )?;
    file(
        "usr/share/doc/ftptrace/README.md.gz",
        &gzip(&fs::read(root.join("README.md"))?)?,
        0o644,
    )?;
    let installed_kib = du_kib(&tree)?;
    file(
        "DEBIAN/control",
        control(version, &arch, installed_kib).as_bytes(),
        0o644,
    )?;
    file("DEBIAN/conffiles", b"/etc/logrotate.d/ftptrace\n", 0o644)?;
    file("DEBIAN/postinst", POSTINST.as_bytes(), 0o755)?;
    file("DEBIAN/prerm", PRERM.as_bytes(), 0o755)?;
    file("DEBIAN/postrm", POSTRM.as_bytes(), 0o755)?;
    let deb = out.join(format!("{name}.deb"));
    run(Command::new("dpkg-deb")
        .args(["--root-owner-group", "-Zxz", "--build"])
        .arg(&tree)
        .arg(&deb))?;
    println!("{}", deb.display());
    Ok(deb)
}

fn control(version: &str, arch: &str, installed_kib: u64) -> String {
    format!(
        "Package: ftptrace\n\
         Version: {version}\n\
         Architecture: {arch}\n\
         Maintainer: ftptrace developers <ftptrace@example.org>\n\
         Installed-Size: {installed_kib}\n\
         Depends: libc6 (>= 2.34), libgcc-s1\n\
         Recommends: logrotate\n\
         Section: net\n\
         Priority: optional\n\
         Description: why FTP connections drop, from the kernel's point of view\n \
         ftptrace traces the TCP life of FTP control and data connections with\n \
         eBPF (state changes, retransmits, resets with the kernel's reason,\n \
         probes, drops), groups them into sessions and names the probable\n \
         cause of each disconnect, with its evidence, as JSON lines or text.\n \
         Runs as a service (ftptrace.service) feeding log pipelines and\n \
         Prometheus.\n"
    )
}

const COPYRIGHT: &str = "Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/\n\
Upstream-Name: ftptrace\n\
\n\
Files: *\n\
Copyright: the ftptrace developers\n\
License: MIT or Apache-2.0\n\
 On Debian systems the Apache License 2.0 is in\n \
/usr/share/common-licenses/Apache-2.0.\n";

/// Not started on install: tracing every FTP connection is the operator's
/// call (`systemctl enable --now ftptrace`).
const POSTINST: &str = "#!/bin/sh\nset -e\n\
if [ \"$1\" = configure ] && [ -d /run/systemd/system ]; then\n\
    systemctl daemon-reload || true\n\
fi\n";

const PRERM: &str = "#!/bin/sh\nset -e\n\
if [ \"$1\" = remove ] && [ -d /run/systemd/system ]; then\n\
    systemctl stop ftptrace.service || true\n\
fi\n";

const POSTRM: &str = "#!/bin/sh\nset -e\n\
if [ -d /run/systemd/system ]; then\n\
    systemctl daemon-reload || true\n\
fi\n\
if [ \"$1\" = purge ]; then\n\
    rm -rf /var/log/ftptrace\n\
fi\n";

fn gzip(bytes: &[u8]) -> anyhow::Result<Vec<u8>> {
    use std::io::Write as _;
    let mut child = Command::new("gzip")
        .args(["-9", "-n", "-c"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .context("cannot run gzip")?;
    child
        .stdin
        .take()
        .expect("piped")
        .write_all(bytes)
        .context("writing to gzip")?;
    let out = child.wait_with_output()?;
    anyhow::ensure!(out.status.success(), "gzip failed: {}", out.status);
    Ok(out.stdout)
}

fn du_kib(tree: &Path) -> anyhow::Result<u64> {
    let text = output(Command::new("du").args(["-sk"]).arg(tree))?;
    text.split_whitespace()
        .next()
        .and_then(|n| n.parse().ok())
        .context("du -sk printed no size")
}

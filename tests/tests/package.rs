//! The Debian package (issue 15): `cargo xtask package` builds it
//! (`cargo xtask test` does, and names it in `FTPTRACE_DEB`); Debian's dpkg
//! installs it on this machine, the installed ftptrace passes its own
//! preflight, and every file the package promises is where Debian looks.

use std::{path::PathBuf, process::Command, time::Duration};

use tests::process::run;

/// The package to install: `FTPTRACE_DEB`, else the one `cargo xtask
/// package` left in target/debian.
fn package() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("FTPTRACE_DEB") {
        return Some(path.into());
    }
    std::fs::read_dir(tests::workspace_root().join("target/debian"))
        .ok()?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|e| e == "deb"))
}

fn sh(script: &str) -> tests::process::Finished {
    run(
        Command::new("sh").arg("-c").arg(script),
        Duration::from_secs(120),
    )
}

#[test]
fn dpkg_installs_the_package_and_its_ftptrace_checks_ready() {
    if !tests::root_or_skip("dpkg_installs_the_package_and_its_ftptrace_checks_ready") {
        return;
    }
    let in_ci = std::env::var_os("CI").is_some_and(|v| !v.is_empty() && v != "false");
    let Some(deb) = package() else {
        assert!(
            !in_ci,
            "no package: run `cargo xtask package` (cargo xtask test does)"
        );
        eprintln!("skipping: no package built (run `cargo xtask package`)");
        return;
    };
    // Someone's own install is upgraded in place, and left installed.
    let installed_before = sh("dpkg-query -W -f='${Status}' ftptrace 2>/dev/null")
        .stdout
        .contains("install ok installed");
    let install = run(
        Command::new("dpkg").arg("--install").arg(&deb),
        Duration::from_secs(300),
    );
    assert!(
        install.status.success(),
        "dpkg -i {}: {install:?}",
        deb.display()
    );
    let check = run(
        Command::new("/usr/bin/ftptrace").args(["check", "--format", "json"]),
        Duration::from_secs(120),
    );
    let report: serde_json::Value = serde_json::from_str(check.stdout.trim())
        .unwrap_or_else(|e| panic!("the installed ftptrace's check ({e}): {check:?}"));
    assert!(
        check.status.success() && report["ready"] == true,
        "{check:?}"
    );
    let listed = sh("dpkg -L ftptrace").stdout;
    for path in [
        "/usr/bin/ftptrace",
        "/usr/lib/systemd/system/ftptrace.service",
        "/etc/logrotate.d/ftptrace",
        "/usr/share/man/man1/ftptrace.1.gz",
        "/usr/share/bash-completion/completions/ftptrace",
        "/usr/share/zsh/vendor-completions/_ftptrace",
        "/usr/share/fish/vendor_completions.d/ftptrace.fish",
        "/usr/share/doc/ftptrace/copyright",
    ] {
        assert!(
            listed.lines().any(|l| l == path),
            "{path} not in:\n{listed}"
        );
    }
    for (what, script) in [
        (
            "the man page",
            "gzip -dc /usr/share/man/man1/ftptrace.1.gz | grep -q '^.TH ftptrace 1'",
        ),
        (
            "the bash completion",
            "bash -n /usr/share/bash-completion/completions/ftptrace && \
             grep -q -- '--output-max-size' /usr/share/bash-completion/completions/ftptrace",
        ),
        (
            "the installed unit",
            "systemd-analyze verify --man=no /usr/lib/systemd/system/ftptrace.service",
        ),
        (
            "the logrotate file",
            "logrotate --debug /etc/logrotate.d/ftptrace",
        ),
        (
            "the conffile",
            "dpkg-query -W -f='${Conffiles}' ftptrace | grep -q /etc/logrotate.d/ftptrace",
        ),
    ] {
        let done = sh(script);
        assert!(done.status.success(), "{what}: {script}: {done:?}");
    }
    if !installed_before {
        let purge = run(
            Command::new("dpkg").args(["--purge", "ftptrace"]),
            Duration::from_secs(120),
        );
        assert!(purge.status.success(), "dpkg --purge: {purge:?}");
        assert!(!std::path::Path::new("/usr/bin/ftptrace").exists());
    }
}

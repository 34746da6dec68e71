//! `cargo xtask test`: set up, unit tests, then the root integration tests
//! against the freshly built release binary.

use std::process::Command;

use anyhow::bail;

use crate::{cargo, is_root, run, setup, workspace_root};

pub fn run_tests(filter: Option<&str>) -> anyhow::Result<()> {
    setup::all()?;
    cargo(&["build", "--release", "-p", "ftptrace"])?;
    let mut unit = vec![
        "test",
        "--workspace",
        "--exclude",
        "ftptrace-ebpf",
        "--exclude",
        "tests",
    ];
    unit.extend(filter);
    cargo(&unit)?;

    let in_ci = std::env::var_os("CI").is_some_and(|v| !v.is_empty() && v != "false");
    if !is_root() {
        if in_ci {
            bail!("the integration tests need root and CI is set: run as root");
        }
        eprintln!(
            "xtask: skipping the kernel integration tests: they need root (run `sudo cargo xtask test`)"
        );
        return Ok(());
    }
    // The package-install test installs this (tests/tests/package.rs).
    let deb = crate::package::build()?;
    let binary = workspace_root().join("target/release/ftptrace");
    let cargo_bin = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut command = Command::new(cargo_bin);
    command
        .args(["test", "-p", "tests", "--"])
        .args(filter)
        .arg("--test-threads=1")
        .env("FTPTRACE_BIN", binary)
        .env("FTPTRACE_DEB", deb)
        .current_dir(workspace_root());
    run(&mut command)
}

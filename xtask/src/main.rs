//! Project automation: `cargo xtask setup | run | test | vm | bench | fuzz`.

mod apt_sources;
mod bench;
mod ftp_servers;
mod fuzz;
mod package;
mod setup;
mod test;
mod vm;

use std::{path::PathBuf, process::Command};

use anyhow::{Context as _, bail};
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "xtask", about = "ftptrace project automation")]
struct Cli {
    #[command(subcommand)]
    command: Task,
}

#[derive(Subcommand)]
enum Task {
    /// Install what building and testing need (idempotent, quiet when done).
    Setup,
    /// Build the Debian package (target/debian/ftptrace_<version>_<arch>.deb:
    /// binary, systemd unit, logrotate file, man page, completions).
    Package,
    /// Set up, build the release binary and run it with the given arguments.
    Run {
        /// Arguments for ftptrace, after `--`.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Run the root integration suite in QEMU guests on Debian's 5.10, 6.1,
    /// 6.12 and 7.2 kernels and on the host's own (one line per kernel).
    Vm {
        /// Only these kernels (5.10, 6.1, 6.12, 7.2, host).
        #[arg(long = "kernel")]
        kernels: Vec<String>,
        /// List the kernels and exit.
        #[arg(long)]
        list: bool,
        /// The CI subset: only the tests that cover every probe, and one
        /// forced hook tier per kernel, chosen so the matrix covers them all.
        #[arg(long)]
        quick: bool,
    },
    /// Measure the user-space pipeline per event and, as root, the kernel
    /// side under churn beside bpftrace; writes BENCHMARKS.md.
    Bench,
    /// Set up, then run the unit tests and (as root) the kernel integration tests.
    Test {
        /// Only tests whose name contains this (passed to both test runs).
        filter: Option<String>,
    },
    /// Replay the kept crash inputs, then fuzz each target of ftptrace/fuzz
    /// for a while (one line per target; a crash fails, naming its input).
    Fuzz {
        /// Seconds of fuzzing per target.
        #[arg(long, default_value_t = 30)]
        seconds: u64,
        /// Only this target.
        #[arg(long, value_parser = clap::builder::PossibleValuesParser::new(fuzz::TARGETS))]
        target: Option<String>,
    },
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Task::Setup => setup::all(),
        Task::Package => {
            setup::all()?;
            package::build().map(drop)
        }
        Task::Run { args } => {
            setup::build_chain()?;
            cargo(&["build", "--release", "-p", "ftptrace"])?;
            let status = Command::new(workspace_root().join("target/release/ftptrace"))
                .args(&args)
                .status()
                .context("running target/release/ftptrace")?;
            std::process::exit(status.code().unwrap_or(1));
        }
        Task::Test { filter } => test::run_tests(filter.as_deref()),
        Task::Vm {
            kernels,
            list,
            quick,
        } => {
            if list {
                vm::list();
                return Ok(());
            }
            vm::run_matrix(&kernels, quick)
        }
        Task::Fuzz { seconds, target } => fuzz::run_targets(seconds, target.as_deref()),
        Task::Bench => {
            setup::bench()?;
            bench::run()
        }
    }
}

pub fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives in the workspace")
        .to_path_buf()
}

/// Runs cargo (the one running us) in the workspace root.
pub fn cargo(args: &[&str]) -> anyhow::Result<()> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    run(Command::new(cargo).args(args).current_dir(workspace_root()))
}

pub fn run(command: &mut Command) -> anyhow::Result<()> {
    let status = command
        .status()
        .with_context(|| format!("cannot run {:?}", command.get_program()))?;
    if !status.success() {
        bail!("{command:?} failed: {status}");
    }
    Ok(())
}

/// Captured standard output of a command that must succeed.
pub fn output(command: &mut Command) -> anyhow::Result<String> {
    let out = command
        .output()
        .with_context(|| format!("cannot run {:?}", command.get_program()))?;
    if !out.status.success() {
        bail!(
            "{command:?} failed: {}: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

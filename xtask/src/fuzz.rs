//! `cargo xtask fuzz`: the libFuzzer targets of `ftptrace/fuzz`, each for a
//! bounded time, after replaying the crashes kept in its `regressions/`.
//! One line per target; a crash fails the task with the target and the
//! input that crashed it.

use std::{
    fs,
    path::{Path, PathBuf},
    process::{Command, Output},
};

use anyhow::{Context as _, bail};

use crate::{run, setup, workspace_root};

/// The targets, cheapest first.
pub const TARGETS: &[&str] = &[
    "printable",
    "conntrack_reply",
    "dns_answer",
    "tracepoint_format",
    "recording",
    "decode",
    "control_parser",
    "pipeline",
];

/// Relative to the workspace root, where cargo-fuzz runs.
const FUZZ_DIR: &str = "ftptrace/fuzz";
/// The recorded scenarios, seeds for the targets that read recordings.
const RECORDINGS: &str = "ftptrace/testdata/recordings";
/// Real kernels' format files (5.10 to 7.2), seeds for the format parser.
const FORMATS: &str = "ftptrace/testdata/tracepoint-formats";
/// Seconds one input may take: a hang is a finding too (libFuzzer's own
/// default is 20 minutes).
const TIMEOUT: &str = "-timeout=10";

pub fn run_targets(seconds: u64, only: Option<&str>) -> anyhow::Result<()> {
    let targets: Vec<&str> = match only {
        None => TARGETS.to_vec(),
        Some(name) if TARGETS.contains(&name) => vec![name],
        Some(name) => bail!("no fuzz target {name}; there are {}", TARGETS.join(", ")),
    };
    setup::fuzz()?;
    let root = workspace_root();
    // All targets at once, before any clock starts: the first build of
    // ftptrace with sanitizer flags takes minutes.
    run(cargo_fuzz(&root).args(["build", "--fuzz-dir", FUZZ_DIR, "--codegen-units", "16"]))?;
    let mut crashed = Vec::new();
    for target in targets {
        if let Some(failure) = fuzz_target(&root, target, seconds)? {
            crashed.push(failure);
        }
    }
    if !crashed.is_empty() {
        bail!("fuzzing found crashes: {}", crashed.join("; "));
    }
    Ok(())
}

/// Replays `target`'s regressions, then fuzzes it; `Some` names the
/// failure.
fn fuzz_target(root: &Path, target: &str, seconds: u64) -> anyhow::Result<Option<String>> {
    let fuzz_dir = root.join(FUZZ_DIR);
    let regressions = fuzz_dir.join("regressions").join(target);
    let kept = files_in(&regressions)?;
    if !kept.is_empty() {
        let out = libfuzzer(root, target, &kept, &[TIMEOUT])?;
        if !out.status.success() {
            println!("fuzz {target}: a kept regression still crashes");
            show_crash(&out);
            let names: Vec<String> = kept.iter().map(|p| relative(root, p)).collect();
            return Ok(Some(format!(
                "{target}: a regression input still crashes ({})",
                names.join(" ")
            )));
        }
    }

    let corpus = fuzz_dir.join("corpus").join(target);
    fs::create_dir_all(&corpus).with_context(|| format!("creating {}", corpus.display()))?;
    if matches!(target, "recording" | "pipeline") {
        seed_with_recordings(&root.join(RECORDINGS), &corpus)?;
    }
    if target == "tracepoint_format" {
        seed_with_formats(&root.join(FORMATS), &corpus)?;
    }
    // The first directory is the one libFuzzer adds to; the kept
    // regressions only seed.
    let mut inputs = vec![corpus];
    if !kept.is_empty() {
        inputs.push(regressions);
    }
    let max_time = format!("-max_total_time={seconds}");
    let options = [
        max_time.as_str(),
        TIMEOUT,
        "-print_final_stats=1",
        // The code's own warnings (one per fresh pipeline, so one per
        // input) would flood the log; a crash is rerun below to show its
        // message.
        "-close_fd_mask=2",
    ];
    let out = libfuzzer(root, target, &inputs, &options)?;
    let log = String::from_utf8_lossy(&out.stderr);
    let artifacts = fuzz_dir.join("artifacts").join(target);
    fs::create_dir_all(&artifacts)?;
    let log_path = artifacts.join("last-run.log");
    fs::write(&log_path, log.as_bytes())
        .with_context(|| format!("writing {}", log_path.display()))?;

    let stat = |name: &str| {
        log.lines()
            .find_map(|l| l.strip_prefix(&format!("stat::{name}:")))
            .map(|v| v.trim().to_owned())
            .unwrap_or_else(|| "?".into())
    };
    let corpus_size = log
        .lines()
        .rev()
        .find_map(|l| l.split_once(" corp: "))
        .and_then(|(_, rest)| rest.split('/').next())
        .unwrap_or("?");
    let runs = stat("number_of_executed_units");
    if out.status.success() {
        println!(
            "fuzz {target}: {runs} runs in {seconds} s ({}/s), corpus {corpus_size}: ok",
            stat("average_exec_per_sec")
        );
        return Ok(None);
    }
    let artifact = log
        .lines()
        .rev()
        .find_map(|l| l.split_once("Test unit written to "))
        .map(|(_, path)| path.trim().to_owned());
    let Some(artifact) = artifact else {
        println!("fuzz {target}: FAILED after {runs} runs ({})", out.status);
        eprintln!("{}", tail(&log, 30));
        return Ok(Some(format!(
            "{target}: libFuzzer failed, see {}",
            relative(root, &log_path)
        )));
    };
    println!("fuzz {target}: CRASH after {runs} runs: {artifact}");
    // Again, with the target's standard error open: the panic message.
    show_crash(&libfuzzer(
        root,
        target,
        &[root.join(&artifact)],
        &[TIMEOUT],
    )?);
    eprintln!(
        "xtask: to keep it as a regression: mkdir -p {FUZZ_DIR}/regressions/{target} && \
         cp {artifact} {FUZZ_DIR}/regressions/{target}/"
    );
    Ok(Some(format!("{target}: {artifact}")))
}

/// `cargo fuzz` on the nightly toolchain (AddressSanitizer needs it; the
/// eBPF build already does), from the workspace root.
fn cargo_fuzz(root: &Path) -> Command {
    let mut command = Command::new("rustup");
    command
        .args(["run", "nightly", "cargo", "fuzz"])
        .current_dir(root)
        // ftptrace's build.rs would build the eBPF object: host code only here.
        .env("AYA_BUILD_SKIP", "1")
        // Frames for the panics shown (fuzzing itself hides them).
        .env("RUST_BACKTRACE", "1");
    command
}

/// Runs `target` on `inputs` (directories: fuzz them; files: run each
/// once), capturing what it prints.
fn libfuzzer(
    root: &Path,
    target: &str,
    inputs: &[PathBuf],
    options: &[&str],
) -> anyhow::Result<Output> {
    let mut command = cargo_fuzz(root);
    command
        .args([
            "run",
            "--fuzz-dir",
            FUZZ_DIR,
            "--codegen-units",
            "16",
            target,
        ])
        .args(inputs)
        .arg("--")
        .args(options);
    command
        .output()
        .with_context(|| format!("cannot run cargo fuzz for {target}"))
}

/// The panic message and the frames in this workspace's code, or the
/// sanitizer's report, of a crashing run.
fn show_crash(out: &Output) {
    let log = String::from_utf8_lossy(&out.stderr);
    let lines: Vec<&str> = log.lines().collect();
    let report: Vec<&str> = if let Some(at) = lines.iter().position(|l| l.contains("panicked at")) {
        let message = lines[at..]
            .iter()
            .take_while(|l| !l.starts_with("stack backtrace:") && !l.starts_with("=="))
            .take(20)
            .copied();
        // A frame is its function's line, then its `at file:line`.
        let ours = lines[at..]
            .windows(2)
            .filter(|pair| pair[1].trim_start().starts_with("at ./"))
            .flat_map(|pair| [pair[0], pair[1]])
            .take(16);
        message.chain(ours).collect()
    } else {
        let from = lines
            .iter()
            .position(|l| l.contains("ERROR: AddressSanitizer") || l.contains("ERROR: libFuzzer"))
            .unwrap_or(lines.len().saturating_sub(30));
        lines[from..].iter().take(30).copied().collect()
    };
    eprintln!("{}", report.join("\n"));
}

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// Copies the `.rec` files in, over any older copy (they are re-recorded
/// when the formats change).
fn seed_with_recordings(recordings: &Path, corpus: &Path) -> anyhow::Result<()> {
    for path in files_in(recordings)? {
        if let Some(name) = path.file_name()
            && path.extension().is_some_and(|e| e == "rec")
        {
            fs::copy(&path, corpus.join(name))
                .with_context(|| format!("copying {}", path.display()))?;
        }
    }
    Ok(())
}

/// Copies every kernel's `.format` files in, named after kernel and event.
fn seed_with_formats(formats: &Path, corpus: &Path) -> anyhow::Result<()> {
    for kernel in files_in(formats)? {
        for category in files_in(&kernel)? {
            for path in files_in(&category)? {
                let (Some(k), Some(c), Some(name)) =
                    (kernel.file_name(), category.file_name(), path.file_name())
                else {
                    continue;
                };
                let seed = format!(
                    "{}-{}-{}",
                    k.to_string_lossy(),
                    c.to_string_lossy(),
                    name.to_string_lossy()
                );
                fs::copy(&path, corpus.join(seed))
                    .with_context(|| format!("copying {}", path.display()))?;
            }
        }
    }
    Ok(())
}

/// The files in `dir`, sorted; none if it does not exist.
fn files_in(dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let Ok(entries) = fs::read_dir(dir) else {
        return Ok(Vec::new());
    };
    let mut files = Vec::new();
    for entry in entries {
        let path = entry
            .with_context(|| format!("reading {}", dir.display()))?
            .path();
        let hidden = path
            .file_name()
            .is_some_and(|n| n.to_string_lossy().starts_with('.'));
        if path.is_file() && !hidden {
            files.push(path);
        }
    }
    files.sort();
    Ok(files)
}

fn relative(root: &Path, path: &Path) -> String {
    path.strip_prefix(root)
        .unwrap_or(path)
        .display()
        .to_string()
}

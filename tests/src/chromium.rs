//! `ftptrace report`'s page, and Debian's Chromium, headless, on it: its DOM after the
//! page's script ran, and screenshots kept for a person to look at.

use std::{path::Path, process::Command, time::Duration};

use crate::process::{Finished, run};

/// `ftptrace report INPUTS -o PAGE`, which must succeed within `timeout`.
#[track_caller]
pub fn write_report<P: AsRef<Path>>(inputs: &[P], page: &Path, timeout: Duration) {
    let made = run(
        Command::new(crate::tracer::binary())
            .arg("report")
            .args(inputs.iter().map(AsRef::as_ref))
            .arg("-o")
            .arg(page),
        timeout,
    );
    assert!(made.success(), "ftptrace report: {made:?}");
}

/// Chromium on `page` in `mode` (`--dump-dom`, `--screenshot=...`); its
/// stderr has the console's messages.
pub fn chromium(page: &Path, mode: &[String]) -> Finished {
    run(
        Command::new("chromium")
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--hide-scrollbars",
                "--enable-logging=stderr",
                "--v=0",
                "--window-size=1280,1600",
            ])
            .args(mode)
            .arg(format!("file://{}", page.display())),
        Duration::from_secs(120),
    )
}

/// The DOM of `page` after its script ran; fails on a console message or
/// an uncaught exception.
#[track_caller]
pub fn dom_without_console_errors(page: &Path) -> String {
    let dom = chromium(page, &["--dump-dom".into()]);
    assert!(dom.success(), "chromium --dump-dom: {}", dom.stderr);
    for line in dom.stderr.lines() {
        assert!(
            !(line.contains("CONSOLE") || line.contains("Uncaught")),
            "a console message: {line}"
        );
    }
    dom.stdout
}

/// A screenshot of `page` (with `#fragment` to open a session) kept as
/// target/test-artifacts/`name`.
#[track_caller]
pub fn keep_screenshot(page_and_fragment: &str, name: &str) {
    let artifacts = crate::workspace_root().join("target/test-artifacts");
    std::fs::create_dir_all(&artifacts).expect("target/test-artifacts");
    let shot = artifacts.join(name);
    let screenshot = chromium(
        Path::new(page_and_fragment),
        &[format!("--screenshot={}", shot.display())],
    );
    assert!(
        screenshot.success(),
        "chromium --screenshot: {}",
        screenshot.stderr
    );
    let png = std::fs::read(&shot).expect("the screenshot");
    assert!(
        png.starts_with(b"\x89PNG") && png.len() > 10_000,
        "{} bytes",
        png.len()
    );
}

/// How often `needle` occurs in `haystack`.
pub fn count(haystack: &str, needle: &str) -> i64 {
    haystack.matches(needle).count() as i64
}

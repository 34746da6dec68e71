//! Every JSON line the suite sees, held to schema/lines.schema.json by a
//! real validator: Python's `jsonschema` (Debian's python3-jsonschema,
//! which `cargo xtask setup` installs), formats checked.

use std::{path::PathBuf, process::Command, time::Duration};

use crate::{process, unique_name, workspace_root};

/// The validator's exit code when its package is missing.
const NO_VALIDATOR: i32 = 2;
const VALIDATE_TIMEOUT: Duration = Duration::from_secs(120);

pub fn schema_path() -> PathBuf {
    workspace_root().join("schema/lines.schema.json")
}

/// The lines of `text` that break the schema, each with why (empty: all
/// valid). `None` when the validator is not installed, outside CI; in CI
/// that panics.
#[track_caller]
pub fn invalid_lines(label: &str, text: &str) -> Option<String> {
    let file = std::env::temp_dir().join(unique_name(&format!("{label}.jsonl")));
    std::fs::write(&file, text).unwrap_or_else(|e| panic!("cannot write {}: {e}", file.display()));
    let finished = process::run(
        Command::new("/usr/bin/python3")
            .arg(workspace_root().join("tests/scripts/validate_lines.py"))
            .arg(schema_path())
            .arg(&file),
        VALIDATE_TIMEOUT,
    );
    let _ = std::fs::remove_file(&file);
    if finished.status.code() == Some(NO_VALIDATOR) {
        let in_ci = std::env::var_os("CI").is_some_and(|v| !v.is_empty() && v != "false");
        assert!(
            !in_ci,
            "{label}: no JSON Schema validator, and CI is set: {finished}"
        );
        eprintln!(
            "{label}: lines not validated: python3-jsonschema is missing (cargo xtask setup)"
        );
        return None;
    }
    Some(if finished.success() {
        String::new()
    } else {
        format!("{}{}", finished.stdout, finished.stderr)
    })
}

/// Panics, naming each invalid line, unless every line of `text` is valid.
#[track_caller]
pub fn assert_valid(label: &str, text: &str) {
    if let Some(invalid) = invalid_lines(label, text) {
        assert!(
            invalid.is_empty(),
            "{label}: lines break the schema:\n{invalid}"
        );
    }
}

//! What the root-free tests share: the root suite's recordings.

use std::path::{Path, PathBuf};

/// The recordings of the root suite's scenarios (testdata/recordings),
/// sorted by name.
pub fn recordings() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/recordings");
    let mut found: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| entry.expect("a directory entry").path())
        .filter(|path| path.extension().is_some_and(|e| e == "rec"))
        .collect();
    found.sort();
    assert!(
        found.len() >= 20,
        "only {} recordings in {}",
        found.len(),
        dir.display()
    );
    found
}

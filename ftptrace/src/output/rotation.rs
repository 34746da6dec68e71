//! `--output-max-size` and `--output-keep`: the output file rotated by
//! ftptrace itself, for hosts without logrotate. Rotation happens between
//! batches of whole lines, so no line is ever split across two files.

use std::{
    io,
    path::{Path, PathBuf},
};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rotation {
    /// A file is rotated before a batch would take it past this size (one
    /// batch larger than it still goes, whole, into a file of its own).
    pub max_bytes: u64,
    /// Rotated files kept: `PATH.1` (the newest) to `PATH.<keep>`.
    pub keep: u32,
}

impl Rotation {
    /// Whether a file of `size` bytes is rotated before `adding` more.
    pub fn due(&self, size: u64, adding: usize) -> bool {
        size > 0 && size.saturating_add(adding as u64) > self.max_bytes
    }

    /// Moves `path` to `path.1`, `path.1` to `path.2`, ..., dropping what
    /// was `path.<keep>`: logrotate's numbering, so tools that read it read
    /// these. The caller opens `path` anew.
    pub fn rotate(&self, path: &Path) -> io::Result<()> {
        for n in (1..self.keep).rev() {
            match std::fs::rename(numbered(path, n), numbered(path, n + 1)) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
                _ => {}
            }
        }
        std::fs::rename(path, numbered(path, 1))
    }
}

/// `path.<n>`.
pub fn numbered(path: &Path, n: u32) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(format!(".{n}"));
    PathBuf::from(name)
}

/// `--output-max-size`: bytes, or with a K, M or G suffix (powers of 1024),
/// at least 4K.
pub fn parse_size(text: &str) -> Result<u64, String> {
    let (digits, unit) = match text.find(|c: char| !c.is_ascii_digit()) {
        Some(at) => text.split_at(at),
        None => (text, ""),
    };
    let unit: u64 = match unit.to_ascii_uppercase().as_str() {
        "" => 1,
        "K" | "KB" | "KIB" => 1 << 10,
        "M" | "MB" | "MIB" => 1 << 20,
        "G" | "GB" | "GIB" => 1 << 30,
        _ => return Err(format!("unknown unit {unit:?} (use K, M or G)")),
    };
    let n: u64 = digits
        .parse()
        .map_err(|e| format!("not a size: {e} (e.g. 100M)"))?;
    let bytes = n.checked_mul(unit).ok_or_else(|| "too large".to_owned())?;
    if bytes < 4096 {
        return Err("must be at least 4K".into());
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_read_with_their_units() {
        assert_eq!(parse_size("100M"), Ok(100 << 20));
        assert_eq!(parse_size("64k"), Ok(64 << 10));
        assert_eq!(parse_size("2GiB"), Ok(2 << 30));
        assert_eq!(parse_size("8192"), Ok(8192));
        assert!(parse_size("1K").unwrap_err().contains("at least 4K"));
        assert!(parse_size("10T").unwrap_err().contains("unit"));
        assert!(parse_size("M").unwrap_err().contains("not a size"));
        assert!(
            parse_size("99999999999999G")
                .unwrap_err()
                .contains("too large")
        );
    }

    #[test]
    fn due_before_a_batch_would_pass_the_size() {
        let rotation = Rotation {
            max_bytes: 100,
            keep: 2,
        };
        assert!(!rotation.due(0, 500), "an empty file takes any batch");
        assert!(!rotation.due(60, 40));
        assert!(rotation.due(60, 41));
    }

    #[test]
    fn rotation_numbers_like_logrotate_and_drops_the_oldest() {
        let dir = std::env::temp_dir().join(format!("ftptrace-rotation-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir(&dir).unwrap();
        let path = dir.join("out.jsonl");
        let rotation = Rotation {
            max_bytes: 4096,
            keep: 2,
        };
        for generation in 1..=4 {
            std::fs::write(&path, format!("{generation}\n")).unwrap();
            rotation.rotate(&path).unwrap();
        }
        let read = |n| std::fs::read_to_string(numbered(&path, n)).ok();
        assert_eq!(
            (read(1), read(2), read(3), path.exists()),
            (Some("4\n".into()), Some("3\n".into()), None, false)
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

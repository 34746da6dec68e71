//! Finds tracefs (the `format` files and tracepoint ids live there) and mounts
//! it where a minimal system has not.

use std::{
    ffi::CString,
    path::{Path, PathBuf},
};

const MOUNT_POINT: &str = "/sys/kernel/tracing";
const LEGACY: &str = "/sys/kernel/debug/tracing";

/// The tracefs root, mounting it at /sys/kernel/tracing if it is nowhere.
pub fn find_or_mount() -> anyhow::Result<PathBuf> {
    if let Some(found) = find() {
        return Ok(found);
    }
    let target = CString::new(MOUNT_POINT).expect("no NUL");
    let fstype = CString::new("tracefs").expect("no NUL");
    // SAFETY: valid NUL-terminated strings; no data argument.
    let rc = unsafe {
        libc::mount(
            fstype.as_ptr(),
            target.as_ptr(),
            fstype.as_ptr(),
            0,
            std::ptr::null(),
        )
    };
    if rc != 0 {
        let error = std::io::Error::last_os_error();
        anyhow::bail!(
            "tracefs is not mounted and mounting it at {MOUNT_POINT} failed ({error}); \
             mount it with `mount -t tracefs tracefs {MOUNT_POINT}` (needs CAP_SYS_ADMIN)"
        );
    }
    Ok(PathBuf::from(MOUNT_POINT))
}

fn find() -> Option<PathBuf> {
    let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap_or_default();
    let mounted = mounts.lines().find_map(|line| {
        let mut fields = line.split_whitespace();
        let (_, dir, fstype) = (fields.next()?, fields.next()?, fields.next()?);
        (fstype == "tracefs").then(|| PathBuf::from(dir))
    });
    mounted.or_else(|| {
        // debugfs mounted without tracefs still exposes it through an automount.
        Path::new(LEGACY)
            .join("events")
            .is_dir()
            .then(|| PathBuf::from(LEGACY))
    })
}

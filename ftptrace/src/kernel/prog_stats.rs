//! Per-program counters the kernel keeps: how often it skipped a program
//! because that program was already running on the CPU (`recursion_misses`),
//! i.e. events ftptrace never saw. aya does not expose the field, so this
//! reads `struct bpf_prog_info` directly.

use std::os::fd::{AsRawFd, BorrowedFd};

const BPF_OBJ_GET_INFO_BY_FD: libc::c_long = 15;
/// `offsetof(struct bpf_prog_info, recursion_misses)` (uapi, since 5.12).
const RECURSION_MISSES_OFFSET: usize = 208;
/// Through `recursion_misses`: older kernels fill less and leave the rest 0.
const INFO_LEN: usize = RECURSION_MISSES_OFFSET + 8;

#[repr(C)]
struct InfoByFd {
    bpf_fd: u32,
    info_len: u32,
    info: u64,
}

/// Times the kernel skipped the program behind `fd` for recursion.
pub fn recursion_misses(fd: BorrowedFd<'_>) -> std::io::Result<u64> {
    let mut info = [0u8; INFO_LEN];
    let attr = InfoByFd {
        bpf_fd: fd.as_raw_fd() as u32,
        info_len: INFO_LEN as u32,
        info: info.as_mut_ptr() as u64,
    };
    // SAFETY: `attr` points at a buffer of `info_len` bytes that outlives the call.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            BPF_OBJ_GET_INFO_BY_FD,
            &raw const attr,
            size_of::<InfoByFd>(),
        )
    };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    let bytes = &info[RECURSION_MISSES_OFFSET..RECURSION_MISSES_OFFSET + 8];
    Ok(u64::from_ne_bytes(bytes.try_into().expect("8 bytes")))
}

//! The machine's floor: programs that do nothing (`r0 = 0` or `1`, exit)
//! on the hooks ftptrace uses, loaded with the bpf() syscall directly. What
//! they cost per run is what any program there costs; the rest of
//! ftptrace's per-run time is its own.

use std::{ffi::CString, fs::File, os::fd::AsRawFd};

use anyhow::{Context as _, bail};

/// The raw tracepoints ftptrace attaches to on a recent kernel, and the
/// timer ones of its fallback.
const TRACEPOINTS: &[&str] = &[
    "inet_sock_set_state",
    "tcp_retransmit_skb",
    "tcp_retransmit_synack",
    "tcp_send_reset",
    "tcp_receive_reset",
    "tcp_destroy_sock",
    "kfree_skb",
    "inet_sk_error_report",
    "timer_expire_entry",
    "timer_expire_exit",
];

const BPF_PROG_LOAD: i64 = 5;
const BPF_PROG_ATTACH: i64 = 8;
const BPF_PROG_DETACH: i64 = 9;
const BPF_RAW_TRACEPOINT_OPEN: i64 = 17;
const BPF_PROG_TYPE_CGROUP_SKB: u32 = 8;
const BPF_PROG_TYPE_RAW_TRACEPOINT: u32 = 17;
const BPF_CGROUP_INET_INGRESS: u32 = 0;
const BPF_CGROUP_INET_EGRESS: u32 = 1;
const BPF_F_ALLOW_MULTI: u32 = 2;

/// Empty programs attached while this lives.
pub struct EmptyPrograms {
    /// Raw tracepoint links and programs: closing them detaches.
    fds: Vec<i32>,
    /// The cgroup and its (program, attach type) pairs, detached on drop.
    cgroup: File,
    cgroup_programs: Vec<(i32, u32)>,
}

impl EmptyPrograms {
    pub fn attach() -> anyhow::Result<Self> {
        let root = cgroup2_root()?;
        let cgroup = File::open(&root).with_context(|| format!("opening {root}"))?;
        let mut programs = Self {
            fds: Vec::new(),
            cgroup,
            cgroup_programs: Vec::new(),
        };
        for tracepoint in TRACEPOINTS {
            let name = format!("floor_{}", &tracepoint[..tracepoint.len().min(9)]);
            let prog = load(BPF_PROG_TYPE_RAW_TRACEPOINT, 0, &name)?;
            programs.fds.push(prog);
            let tp = CString::new(*tracepoint)?;
            let mut attr = [0u8; 128];
            attr[0..8].copy_from_slice(&(tp.as_ptr() as u64).to_ne_bytes());
            attr[8..12].copy_from_slice(&(prog as u32).to_ne_bytes());
            // A tracepoint this kernel lacks is left out, as ftptrace would.
            if let Ok(link) = bpf(BPF_RAW_TRACEPOINT_OPEN, &mut attr) {
                programs.fds.push(link);
            }
        }
        for (attach_type, name) in [
            (BPF_CGROUP_INET_INGRESS, "floor_ingress"),
            (BPF_CGROUP_INET_EGRESS, "floor_egress"),
        ] {
            let prog = load(BPF_PROG_TYPE_CGROUP_SKB, 1, name)?;
            programs.fds.push(prog);
            let mut attr = cgroup_attr(
                programs.cgroup.as_raw_fd(),
                prog,
                attach_type,
                BPF_F_ALLOW_MULTI,
            );
            bpf(BPF_PROG_ATTACH, &mut attr).context("attaching an empty cgroup_skb program")?;
            programs.cgroup_programs.push((prog, attach_type));
        }
        Ok(programs)
    }
}

impl Drop for EmptyPrograms {
    fn drop(&mut self) {
        // Unlike closing a link, closing the program leaves it attached:
        // detached by name here (no flags: the kernel refuses them).
        for &(prog, attach_type) in &self.cgroup_programs {
            let mut attr = cgroup_attr(self.cgroup.as_raw_fd(), prog, attach_type, 0);
            if let Err(e) = bpf(BPF_PROG_DETACH, &mut attr) {
                eprintln!("xtask bench: could not detach an empty cgroup_skb program: {e}");
            }
        }
        for &fd in &self.fds {
            // SAFETY: descriptors this value owns, closed once.
            unsafe { libc::close(fd) };
        }
    }
}

/// Where the cgroup v2 hierarchy is mounted (`/sys/fs/cgroup`, or
/// `/sys/fs/cgroup/unified` on a hybrid host), as ftptrace finds it.
fn cgroup2_root() -> anyhow::Result<String> {
    std::fs::read_to_string("/proc/mounts")?
        .lines()
        .find_map(|line| {
            let mut fields = line.split_whitespace();
            let (_, at, kind) = (fields.next()?, fields.next()?, fields.next()?);
            (kind == "cgroup2").then(|| at.to_owned())
        })
        .context("no cgroup v2 hierarchy is mounted")
}

fn cgroup_attr(cgroup: i32, prog: i32, attach_type: u32, flags: u32) -> [u8; 128] {
    let mut attr = [0u8; 128];
    attr[0..4].copy_from_slice(&(cgroup as u32).to_ne_bytes());
    attr[4..8].copy_from_slice(&(prog as u32).to_ne_bytes());
    attr[8..12].copy_from_slice(&attach_type.to_ne_bytes());
    attr[12..16].copy_from_slice(&flags.to_ne_bytes());
    attr
}

/// Loads `r0 = ret; exit` as a program of `prog_type`.
fn load(prog_type: u32, ret: i32, name: &str) -> anyhow::Result<i32> {
    // BPF_MOV64_IMM(r0, ret); BPF_EXIT_INSN().
    let mut insns = [0u8; 16];
    insns[0] = 0xb7;
    insns[4..8].copy_from_slice(&ret.to_ne_bytes());
    insns[8] = 0x95;
    let license = c"GPL";
    let mut attr = [0u8; 128];
    attr[0..4].copy_from_slice(&prog_type.to_ne_bytes());
    attr[4..8].copy_from_slice(&2u32.to_ne_bytes());
    attr[8..16].copy_from_slice(&(insns.as_ptr() as u64).to_ne_bytes());
    attr[16..24].copy_from_slice(&(license.as_ptr() as u64).to_ne_bytes());
    // prog_name: after log_level, log_size, log_buf, kern_version, prog_flags.
    let name = name.as_bytes();
    attr[48..48 + name.len().min(15)].copy_from_slice(&name[..name.len().min(15)]);
    bpf(BPF_PROG_LOAD, &mut attr)
        .with_context(|| format!("loading an empty program of type {prog_type}"))
}

fn bpf(command: i64, attr: &mut [u8; 128]) -> anyhow::Result<i32> {
    // SAFETY: `attr` is a zeroed bpf_attr-sized buffer the kernel reads
    // (and may write) within its size; the pointers in it outlive the call.
    let fd = unsafe { libc::syscall(libc::SYS_bpf, command, attr.as_mut_ptr(), attr.len() as u32) };
    if fd < 0 {
        bail!("bpf({command}): {}", std::io::Error::last_os_error());
    }
    Ok(fd as i32)
}

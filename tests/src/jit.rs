//! What the kernel's JIT made of the loaded BPF programs, read back through
//! the `bpf` syscall (`BPF_OBJ_GET_INFO_BY_FD`): whether a program runs on
//! the task's stack or on a per-CPU private one.
//!
//! A kernel gives a program's function a private stack once it uses 64
//! bytes of stack or more (x86-64, 6.14 on; 7.2 does it for uprobe
//! programs). A uprobe program can be preempted mid-run, and another task's
//! run of it on that CPU then overwrites the stack: under Debian's 7.2
//! (`PREEMPT(lazy)`) `tls_return` read back a spilled pointer as 0 and
//! oopsed. The x86-64 JIT sets up a private stack with `add r9,
//! gs:[this_cpu_off]`, bytes `65 4c 03 0c 25`.

use std::{ffi::CStr, os::fd::RawFd};

const BPF_PROG_GET_NEXT_ID: libc::c_long = 11;
const BPF_PROG_GET_FD_BY_ID: libc::c_long = 13;
const BPF_OBJ_GET_INFO_BY_FD: libc::c_long = 15;
const BPF_PROG_TYPE_KPROBE: u32 = 2;

/// `add r9, gs:[disp32]`: the per-CPU frame pointer of a private stack.
const PRIVATE_STACK_SETUP: [u8; 5] = [0x65, 0x4c, 0x03, 0x0c, 0x25];

/// Offsets in `struct bpf_prog_info` (include/uapi/linux/bpf.h).
const INFO_TYPE: usize = 0;
const INFO_JITED_LEN: usize = 16;
const INFO_JITED_INSNS: usize = 24;
const INFO_NAME: usize = 64;
const INFO_SIZE: usize = 256;

/// A loaded program: its id, name, and JIT image (empty when interpreted).
pub struct JitedProgram {
    pub id: u32,
    /// `enum bpf_prog_type`.
    pub kind: u32,
    pub name: String,
    pub image: Vec<u8>,
}

impl JitedProgram {
    pub fn on_private_stack(&self) -> bool {
        self.image
            .windows(PRIVATE_STACK_SETUP.len())
            .any(|w| w == PRIVATE_STACK_SETUP)
    }
}

fn bpf(cmd: libc::c_long, attr: &mut [u8; 128]) -> std::io::Result<i64> {
    // SAFETY: `attr` is a zeroed `union bpf_attr` of 128 bytes, the size
    // passed, filled for `cmd`.
    let ret = unsafe { libc::syscall(libc::SYS_bpf, cmd, attr.as_mut_ptr(), attr.len()) };
    if ret < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(ret)
}

fn info(fd: RawFd, jited: Option<&mut Vec<u8>>) -> std::io::Result<[u8; INFO_SIZE]> {
    let mut info = [0u8; INFO_SIZE];
    if let Some(image) = jited {
        info[INFO_JITED_LEN..INFO_JITED_LEN + 4]
            .copy_from_slice(&(image.len() as u32).to_ne_bytes());
        info[INFO_JITED_INSNS..INFO_JITED_INSNS + 8]
            .copy_from_slice(&(image.as_mut_ptr() as u64).to_ne_bytes());
    }
    let mut attr = [0u8; 128];
    attr[0..4].copy_from_slice(&(fd as u32).to_ne_bytes());
    attr[4..8].copy_from_slice(&(INFO_SIZE as u32).to_ne_bytes());
    attr[8..16].copy_from_slice(&(info.as_mut_ptr() as u64).to_ne_bytes());
    bpf(BPF_OBJ_GET_INFO_BY_FD, &mut attr)?;
    Ok(info)
}

fn u32_at(bytes: &[u8], at: usize) -> u32 {
    u32::from_ne_bytes(bytes[at..at + 4].try_into().unwrap())
}

/// Every loaded program whose name starts with one of `prefixes`, with its
/// JIT image.
pub fn programs(prefixes: &[&str]) -> Vec<JitedProgram> {
    let mut found = Vec::new();
    let mut id = 0u32;
    // Bounded: the kernel's ids only grow, and each step returns a larger
    // one or ENOENT.
    for _ in 0..1_000_000 {
        let mut attr = [0u8; 128];
        attr[0..4].copy_from_slice(&id.to_ne_bytes());
        if bpf(BPF_PROG_GET_NEXT_ID, &mut attr).is_err() {
            break;
        }
        id = u32_at(&attr, 4);
        let mut attr = [0u8; 128];
        attr[0..4].copy_from_slice(&id.to_ne_bytes());
        // A program unloaded since its id was listed is no longer there.
        let Ok(fd) = bpf(BPF_PROG_GET_FD_BY_ID, &mut attr) else {
            continue;
        };
        let fd = fd as RawFd;
        if let Some(program) = jited_program(fd, id, prefixes) {
            found.push(program);
        }
        // SAFETY: the fd the kernel just returned, closed once.
        unsafe { libc::close(fd) };
    }
    found
}

fn jited_program(fd: RawFd, id: u32, prefixes: &[&str]) -> Option<JitedProgram> {
    let first = info(fd, None).unwrap_or_else(|e| panic!("BPF_OBJ_GET_INFO_BY_FD({id}): {e}"));
    let name = CStr::from_bytes_until_nul(&first[INFO_NAME..INFO_NAME + 16])
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    if !prefixes.iter().any(|p| name.starts_with(p)) {
        return None;
    }
    let mut image = vec![0u8; u32_at(&first, INFO_JITED_LEN) as usize];
    if !image.is_empty() {
        let second = info(fd, Some(&mut image))
            .unwrap_or_else(|e| panic!("BPF_OBJ_GET_INFO_BY_FD({id}) with the image: {e}"));
        // The kernel gives the length but no bytes to a reader it does not
        // let see kernel addresses (kptr_restrict).
        assert_ne!(
            u32_at(&second, INFO_JITED_LEN),
            0,
            "program {name} ({id}): the kernel withheld its JIT image (kptr_restrict?)"
        );
    }
    Some(JitedProgram {
        id,
        kind: u32_at(&first, INFO_TYPE),
        name,
        image,
    })
}

/// The programs ftptrace attaches as uprobes (names as the kernel keeps
/// them, 15 bytes).
pub const UPROBE_PROGRAMS: [&str; 3] = ["openssl_", "gnutls_", "tls_return"];

/// Some of ftptrace's raw tracepoint programs, the largest stacks.
const OTHER_PROGRAMS: [&str; 4] = [
    "inet_sock_set",
    "tcp_send_reset",
    "kfree_skb",
    "tcp_retransmit",
];

/// Asserts that the loaded uprobe programs, at least one, all run on the
/// task's own stack (uprobe programs are of the kprobe type). Says which
/// of ftptrace's other programs this kernel gives a private stack: they
/// run with preemption off, where one is safe, and they show that the
/// check would see one.
#[track_caller]
pub fn assert_uprobes_on_task_stack() {
    let others: Vec<String> = programs(&OTHER_PROGRAMS)
        .iter()
        .filter(|p| p.on_private_stack())
        .map(|p| p.name.clone())
        .collect();
    println!("programs on a private stack (not uprobes): {others:?}");
    let programs: Vec<JitedProgram> = programs(&UPROBE_PROGRAMS)
        .into_iter()
        .filter(|p| p.kind == BPF_PROG_TYPE_KPROBE)
        .collect();
    assert!(
        !programs.is_empty(),
        "no uprobe program of ftptrace is loaded"
    );
    let private: Vec<String> = programs
        .iter()
        .filter(|p| p.on_private_stack())
        .map(|p| format!("{} ({})", p.name, p.id))
        .collect();
    assert!(
        private.is_empty(),
        "uprobe programs on a per-CPU private stack, which preemption corrupts: {private:?}"
    );
}

//! Everything that talks to the running kernel: what it says about itself
//! (tracefs formats, BTF, kallsyms, its enum names), loading and attaching
//! the eBPF programs on the hook ladder, privileges, sock_diag and conntrack
//! (in every network namespace), the clock, and the ring-buffer records'
//! decoder. The only room with `unsafe`, `libc` and system calls (as aya
//! keeps them in its `sys/`); it never imports `session` or `output`.

pub mod allocator;
pub mod btf;
pub mod clock;
pub mod conntrack;
pub mod decode;
pub mod facts;
pub mod hook_ladder;
pub mod kallsyms;
pub mod loader;
pub mod names;
pub mod netlink;
pub mod netns;
pub mod priority;
pub mod privileges;
pub mod probes;
pub mod procfs;
pub mod prog_stats;
pub mod ring_fill;
pub mod sock_diag;
#[cfg(test)]
mod stack_budget;
pub mod tls_libraries;
pub mod tls_reach;
pub mod tracefs;
pub mod tracepoint_format;

//! ftptrace: explains FTP disconnects from the kernel's point of view.
//!
//! The binary is `src/main.rs`; the library exists so benchmarks can drive
//! the user-space pipeline (decode, attribute, print) without a kernel.

pub mod attribution;
pub mod btf;
pub mod check;
pub mod cli;
pub mod clock;
pub mod connection_close;
pub mod control_channel;
pub mod decode;
pub mod disconnect_cause;
pub mod ebpf_loader;
pub mod event;
pub mod ftp_control;
pub mod hook_ladder;
pub mod kernel_facts;
pub mod kernel_names;
pub mod kernel_symbols;
pub mod output;
pub mod pipeline;
pub mod ports;
pub mod privileges;
pub mod probes;
pub mod prog_stats;
pub mod recording;
pub mod replay;
pub mod session;
pub mod session_record;
#[cfg(test)]
pub mod session_script;
pub mod socket_inventory;
pub mod trace;
pub mod tracefs;
pub mod tracepoint_format;

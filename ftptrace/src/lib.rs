//! ftptrace: explains FTP disconnects from the kernel's point of view.
//!
//! The binary is `src/main.rs`; the library exists so tests and benchmarks
//! can drive the user-space pipeline without a kernel. ARCHITECTURE.md (at
//! the workspace root) is the map; in short, from the bottom up:
//!
//! - [`ftp`], [`event`], [`printable`], [`ports`]: the FTP protocol and its
//!   line parser, what the kernel reported (decoded), text safe for a
//!   terminal, the port set.
//! - [`kernel`]: everything that talks to the running kernel, and the only
//!   place with `unsafe`, `libc` and system calls.
//! - [`session`]: sessions, how each connection closed and why a session
//!   ended, from events alone (never imports `kernel` or `output`).
//! - [`output`]: the JSON lines contract and the text timeline.
//! - [`pipeline`], [`recording`]: records to lines, and runs kept for later.
//! - [`cli`], [`trace`], [`check`], [`replay`]: the commands.

pub mod check;
pub mod cli;
pub mod community_id;
pub mod diagnostics;
pub mod dns;
pub mod event;
pub mod ftp;
pub mod joined_replay;
pub mod kernel;
pub mod line_filter;
pub mod metrics_server;
pub mod output;
pub mod pipeline;
pub mod ports;
pub mod printable;
pub mod recording;
pub mod replay;
pub mod report;
pub mod service_manager;
pub mod session;
pub mod tls_alert;
pub mod tls_error;
pub mod tls_handshake;
pub mod tls_verify;
pub mod trace;

//! FTP sessions from kernel events: the model ([`model`]), the tracker
//! that files events into it ([`tracker`]), the control stream of each
//! connection in TCP order ([`control_stream`]), who owns a socket
//! ([`attribution`]), how each connection closed ([`close`]) and why a
//! session ended ([`cause`]); announcements that name another address than
//! the control connection's ([`nat`]); across sessions, clients that fail
//! again and again ([`patterns`]) and retried handshakes per server
//! ([`handshakes`]), names that resolve to another server each time
//! ([`dns_flips`], from [`dns_names`]); kernel losses charged to the
//! sessions they may belong to ([`losses`]); open connections by 4-tuple
//! ([`tuple_index`]); two hosts' clocks from the connections both saw
//! ([`clock_offset`]). Plain Rust, tested from hand-built event
//! streams ([`script`]); it never imports `kernel` or `output`.

pub mod attribution;
pub mod cause;
pub mod clock_offset;
pub mod close;
pub mod control_stream;
pub mod dns_flips;
pub mod dns_names;
pub mod handshakes;
pub mod losses;
pub mod model;
pub mod nat;
pub mod patterns;
#[cfg(test)]
pub mod script;
pub mod tally;
pub mod tracker;
pub mod tuple_index;

pub use model::{ConnId, Placement, Session};
pub use tracker::Sessions;
pub use tuple_index::Tuple;

//! What ftptrace prints: the JSON lines contract ([`lines`], one file to
//! read top to bottom, documented in docs/json-lines.md), the session line
//! built from a session ([`session_line`]), the pattern line from a finding
//! across sessions ([`pattern_line`]), the text a person reads
//! ([`text`]) and the writer that prints either ([`writer`]), which writes
//! event lines with [`event_json`].

pub mod event_json;
pub mod lines;
pub mod metrics;
pub mod pattern_line;
pub mod rotation;
pub mod session_line;
pub mod text;
pub mod writer;

pub use lines::{
    HostLine, JoinLine, JoinedInput, Origin, PatternLine, PortsLine, SCHEMA, SessionRecord, Start,
    Stats,
};
pub use writer::{Format, Output, OutputClosed};

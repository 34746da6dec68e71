//! The `pattern` line: a finding across sessions (docs/json-lines.md).

use super::lines::PatternLine;
use crate::{
    kernel::clock::Stamp,
    session::patterns::{PatternRules, RepeatedFailure},
};

impl PatternLine {
    /// `ts` turns boot-time nanoseconds into RFC 3339.
    pub fn repeated_failure(
        found: &RepeatedFailure,
        rules: PatternRules,
        ts: &dyn Fn(u64) -> Stamp,
    ) -> Self {
        let window_s = rules.window_ns / 1_000_000_000;
        let within_ms = found.last_ns.saturating_sub(found.first_ns) / 1_000_000;
        let servers = if found.servers.len() == 1 {
            format!("server {}", found.servers[0])
        } else {
            format!("{} servers", found.servers.len())
        };
        Self {
            ts: ts(found.last_ns).to_string(),
            pattern: "repeated_failure",
            client: found.client,
            cause: found.cause.as_str(),
            sessions: found.count,
            window_s,
            first: ts(found.first_ns).to_string(),
            last: ts(found.last_ns).to_string(),
            servers: found.servers.clone(),
            session_ids: found.sessions.iter().map(ToString::to_string).collect(),
            evidence: format!(
                "client {} ended {} sessions with {} within {} s (to {servers}; the rule: {} \
                 such failures within {window_s} s)",
                found.client,
                found.count,
                found.cause.as_str(),
                within_ms / 1000,
                rules.failures,
            ),
        }
    }
}

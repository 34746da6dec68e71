//! The `pattern` line: a finding across sessions (docs/json-lines.md).

use super::lines::{AddrLine, PatternLine};
use crate::{
    kernel::clock::Stamp,
    session::{
        cause::Cause,
        dns_flips::DnsFlip,
        patterns::{PatternRules, RepeatedFailure},
    },
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
            client: AddrLine { addr: found.client },
            name: None,
            cause: found.cause.as_str(),
            causes: None,
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

    /// Two consecutive sessions of a client for one server name that went
    /// to different addresses, one of them failing.
    pub fn dns_flip(flip: &DnsFlip, rules: PatternRules, ts: &dyn Fn(u64) -> Stamp) -> Self {
        let cause = |c: Option<Cause>| c.map_or("no cause", Cause::as_str);
        let apart_ms = flip.after.end_ns.saturating_sub(flip.before.end_ns) / 1_000_000;
        Self {
            ts: ts(flip.after.end_ns).to_string(),
            pattern: "dns_flip",
            client: AddrLine { addr: flip.client },
            name: Some(flip.name.to_string()),
            cause: flip.cause().as_str(),
            causes: Some(vec![cause(flip.before.cause), cause(flip.after.cause)]),
            sessions: 2,
            window_s: rules.window_ns / 1_000_000_000,
            first: ts(flip.before.end_ns).to_string(),
            last: ts(flip.after.end_ns).to_string(),
            servers: vec![flip.before.server, flip.after.server],
            session_ids: vec![
                flip.before.session.to_string(),
                flip.after.session.to_string(),
            ],
            evidence: format!(
                "client {}'s consecutive sessions for {} went to different addresses: {} ({}, \
                 session {}) then {} ({}, session {}), {} s apart: the name resolves to more than \
                 one server (the DNS answers this host received), and not every one serves",
                flip.client,
                flip.name,
                flip.before.server,
                cause(flip.before.cause),
                flip.before.session,
                flip.after.server,
                cause(flip.after.cause),
                flip.after.session,
                apart_ms / 1000,
            ),
        }
    }
}

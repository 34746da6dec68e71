//! Checks on `session` lines: find the one a scenario made and assert its
//! cause, the connection it hit, and how each connection closed.

use crate::tracer::{Conn, Session, Trace};

/// The only session of the trace.
#[track_caller]
pub fn only_session(trace: &Trace) -> &Session {
    assert_eq!(
        trace.sessions.len(),
        1,
        "one session expected: {}\n{}",
        briefs(trace),
        trace
            .lines
            .iter()
            .filter(|l| l.starts_with(r#"{"type":"session""#))
            .cloned()
            .collect::<Vec<_>>()
            .join("\n")
    );
    &trace.sessions[0]
}

/// Every session's one-line summary, for failure messages.
pub fn briefs(trace: &Trace) -> String {
    trace
        .sessions
        .iter()
        .map(|s| format!("\n  {}", s.brief()))
        .collect()
}

/// Asserts a session's verdict: cause, the connection it hit, and each
/// connection's `close`/`closed_by` in order (control first).
#[track_caller]
pub fn assert_verdict(
    session: &Session,
    cause: &str,
    cause_conn: Option<&str>,
    closes: &[(&str, &str)],
) {
    let got: Vec<(&str, &str)> = conns(session)
        .map(|c| (c.close.as_str(), c.closed_by.as_str()))
        .collect();
    assert_eq!(
        (
            session.cause.as_deref(),
            session.cause_conn.as_deref(),
            got.as_slice()
        ),
        (Some(cause), cause_conn, closes),
        "session verdict: {}{}",
        session.brief(),
        session.timeline_text()
    );
    assert!(
        !session.evidence.is_empty(),
        "a cause comes with evidence: {}",
        session.brief()
    );
    assert_eq!(session.state, "closed", "{}", session.brief());
}

pub fn conns(session: &Session) -> impl Iterator<Item = &Conn> {
    std::iter::once(&session.control).chain(&session.data)
}

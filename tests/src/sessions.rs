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

/// Asserts the cause and the connection it hit, where the closes vary
/// between runs or are checked apart; the message has the session, its
/// timeline and `context` (e.g. a run's counters and events).
#[track_caller]
pub fn assert_cause(session: &Session, cause: &str, cause_conn: Option<&str>, context: &str) {
    assert_eq!(
        (session.cause.as_deref(), session.cause_conn.as_deref()),
        (Some(cause), cause_conn),
        "session cause: {}{}{context}",
        session.brief(),
        session.timeline_text()
    );
}

pub fn conns(session: &Session) -> impl Iterator<Item = &Conn> {
    std::iter::once(&session.control).chain(&session.data)
}

/// Asserts a session that ended normally: every connection closed with FIN,
/// the data connections by the server (it closes after the last byte). After
/// `221` both ends close the control connection at once, so either FIN may
/// come first; and a busy CPU can delay an ACK past the kernel's tail loss
/// probe, so a session with retransmits may be `packet_loss_recovered`
/// rather than `clean`. Returns the retransmits of the session.
#[track_caller]
pub fn assert_ended_normally(session: &Session) -> u32 {
    let resent: u32 = conns(session)
        .map(|c| c.retransmits + c.syn_retransmits)
        .sum();
    let cause = session.cause.as_deref();
    let expected = cause == Some("clean") || (resent > 0 && cause == Some("packet_loss_recovered"));
    assert!(
        expected,
        "a normal end (clean, or packet_loss_recovered with {resent} retransmits): {}{}",
        session.brief(),
        session.timeline_text()
    );
    assert!(
        ["client", "server"].contains(&session.control.closed_by.as_str()),
        "{}",
        session.brief()
    );
    for conn in conns(session) {
        let closer = if conn.conn == "control" {
            session.control.closed_by.as_str()
        } else {
            "server"
        };
        assert_eq!(
            (conn.close.as_str(), conn.closed_by.as_str()),
            ("fin", closer),
            "{}",
            session.brief()
        );
    }
    assert!(!session.evidence.is_empty(), "{}", session.brief());
    assert_eq!(session.state, "closed", "{}", session.brief());
    resent
}

/// A session a skipped kernel event may have spoilt: it must say events
/// were lost while it was open.
#[track_caller]
pub fn assert_says_events_were_lost(session: &Session) {
    assert!(
        session
            .unknown
            .iter()
            .any(|u| u.contains("lost while it was open")),
        "an inexact session that does not say events were lost: {} user {:?} commands {:?}{}",
        session.brief(),
        session.user_name(),
        session.commands,
        session.timeline_text()
    );
}

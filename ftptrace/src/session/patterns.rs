//! Patterns across sessions: one failed session is noise, the same client
//! failing the same way again and again (a job retrying every few seconds
//! against a blocked data path) is the finding.

use std::{
    collections::{HashMap, VecDeque},
    net::IpAddr,
};

use super::{cause::Cause, model::Session};
use crate::event::Name;

/// Client/cause pairs followed at once: a scan from many addresses must not
/// grow the table without bound. Past it, pairs whose window has passed go
/// first; if none has, the new pair is not followed (and counted).
pub const MAX_FOLLOWED: usize = 4096;
/// Servers and session ids a pattern keeps (its latest ones).
pub const MAX_LISTED: usize = 8;

/// When failures make a pattern: `failures` sessions of one client ending
/// with the same failure cause within `window_ns`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PatternRules {
    pub failures: usize,
    pub window_ns: u64,
}

impl Default for PatternRules {
    /// Three failures in ten minutes: a retrying job shows within its
    /// first retries; a person who fails twice and gives up does not.
    fn default() -> Self {
        Self {
            failures: 3,
            window_ns: 600_000_000_000,
        }
    }
}

/// A client that ended `count` sessions with `cause` within the window.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RepeatedFailure {
    pub client: IpAddr,
    pub cause: Cause,
    /// Failures with this cause in the window, this one included.
    pub count: usize,
    /// The first and the latest of them (their sessions' ends).
    pub first_ns: u64,
    pub last_ns: u64,
    /// Server addresses they went to, latest last (at most [`MAX_LISTED`]).
    pub servers: Vec<IpAddr>,
    /// Their sessions, latest last (at most [`MAX_LISTED`]).
    pub sessions: Vec<Name>,
}

/// A burst of one client's failures with one cause.
#[derive(Debug, Default)]
struct Burst {
    /// When each failure in the window ended.
    ends: VecDeque<u64>,
    servers: VecDeque<IpAddr>,
    sessions: VecDeque<Name>,
    /// The count last reported in this burst (0: not yet).
    reported: usize,
}

#[derive(Debug, Default)]
pub struct Patterns {
    rules: PatternRules,
    bursts: HashMap<(IpAddr, Cause), Burst>,
    /// Failures not followed because the table was full.
    pub unfollowed: u64,
}

/// A cause that means the session failed (not a clean end, nor one that
/// recovered by itself).
pub fn is_failure(cause: Cause) -> bool {
    !matches!(cause, Cause::Clean | Cause::PacketLossRecovered)
}

impl Patterns {
    pub fn new(rules: PatternRules) -> Self {
        Self {
            rules,
            ..Self::default()
        }
    }

    pub fn rules(&self) -> PatternRules {
        self.rules
    }

    /// A session ended with `cause`: the pattern it completes, if any.
    /// Reported when the count in the window reaches the rule's, then each
    /// time it doubles, so that a job failing every second for an hour
    /// makes a handful of lines, not thousands.
    pub fn session_ended(
        &mut self,
        session: &Session,
        cause: Option<Cause>,
    ) -> Option<RepeatedFailure> {
        let cause = cause.filter(|c| is_failure(*c))?;
        let client = session.control.client.ip().to_canonical();
        let server = session.control.server.ip().to_canonical();
        let at = session.last_ns;
        let window = self.rules.window_ns;
        if !self.bursts.contains_key(&(client, cause)) && self.bursts.len() >= MAX_FOLLOWED {
            self.bursts.retain(|_, b| {
                b.ends
                    .back()
                    .is_some_and(|&end| at.saturating_sub(end) <= window)
            });
            if self.bursts.len() >= MAX_FOLLOWED {
                self.unfollowed += 1;
                return None;
            }
        }
        let burst = self.bursts.entry((client, cause)).or_default();
        while burst
            .ends
            .front()
            .is_some_and(|&end| at.saturating_sub(end) > window)
        {
            burst.ends.pop_front();
        }
        if burst.ends.is_empty() {
            // A new burst: what came before is another story.
            burst.reported = 0;
            burst.servers.clear();
            burst.sessions.clear();
        }
        burst.ends.push_back(at);
        keep_latest(&mut burst.sessions, session.id.clone());
        burst.servers.retain(|s| *s != server);
        keep_latest(&mut burst.servers, server);
        let count = burst.ends.len();
        let due = if burst.reported == 0 {
            count >= self.rules.failures
        } else {
            count >= 2 * burst.reported
        };
        if !due {
            return None;
        }
        burst.reported = count;
        Some(RepeatedFailure {
            client,
            cause,
            count,
            first_ns: *burst.ends.front().expect("just pushed"),
            last_ns: at,
            servers: burst.servers.iter().copied().collect(),
            sessions: burst.sessions.iter().cloned().collect(),
        })
    }
}

fn keep_latest<T>(list: &mut VecDeque<T>, item: T) {
    if list.len() == MAX_LISTED {
        list.pop_front();
    }
    list.push_back(item);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        ftp::{Side::*, Verb},
        session::{
            cause::diagnose,
            script::{Script, sessions_of},
        },
    };

    /// `n` sessions from one client, `every_ms` apart, each of whose data
    /// connections dies in a firewall.
    fn blocked_sessions(n: usize, every_ms: u64) -> Vec<Session> {
        let mut s = Script::new();
        for i in 0..n {
            s.after_ms(every_ms);
            let control = s.connect(&format!("192.0.2.2:{}", 40000 + i), "192.0.2.1:21");
            s.login(&control);
            s.pasv(&control, 30001);
            let data = s.link(&format!("192.0.2.2:{}", 41000 + i), "192.0.2.1:30001");
            s.blackholed_syn(&data, 2);
            s.reply(&control, 425, "Failed to establish connection.");
            s.command(&control, Verb::Quit, None);
            s.reply(&control, 221, "Goodbye.");
            s.fin(&control, Server);
        }
        sessions_of(&s.seen_from(&[Client, Server]), s.end_ns())
    }

    fn patterns_of(sessions: &[Session], rules: PatternRules) -> Vec<RepeatedFailure> {
        let mut patterns = Patterns::new(rules);
        sessions
            .iter()
            .filter_map(|s| patterns.session_ended(s, diagnose(s).cause))
            .collect()
    }

    #[test]
    fn the_third_failure_in_the_window_makes_a_pattern_then_each_doubling() {
        let sessions = blocked_sessions(12, 5_000);
        assert_eq!(sessions.len(), 12);
        let found = patterns_of(&sessions, PatternRules::default());
        let counts: Vec<usize> = found.iter().map(|p| p.count).collect();
        assert_eq!(counts, [3, 6, 12]);
        let first = &found[0];
        assert_eq!(first.cause, Cause::DataConnectionBlocked);
        assert_eq!(first.client, "192.0.2.2".parse::<IpAddr>().unwrap());
        assert_eq!(first.servers, ["192.0.2.1".parse::<IpAddr>().unwrap()]);
        assert_eq!(first.sessions.len(), 3);
        assert!(first.last_ns > first.first_ns);
        // Never more ids than the cap.
        assert_eq!(found[2].sessions.len(), MAX_LISTED);
    }

    #[test]
    fn failures_further_apart_than_the_window_make_none() {
        let sessions = blocked_sessions(5, 5_000);
        let rules = PatternRules {
            failures: 3,
            window_ns: 4_000_000_000,
        };
        assert_eq!(patterns_of(&sessions, rules), []);
    }

    #[test]
    fn clean_sessions_are_not_failures() {
        assert!(!is_failure(Cause::Clean));
        assert!(!is_failure(Cause::PacketLossRecovered));
        assert!(is_failure(Cause::DataConnectionBlocked));
    }

    #[test]
    fn the_table_of_followed_clients_is_bounded() {
        let sessions = blocked_sessions(1, 1);
        let mut patterns = Patterns::new(PatternRules::default());
        let mut session = sessions[0].clone();
        for i in 0..(MAX_FOLLOWED as u32 + 10) {
            session.control.client =
                std::net::SocketAddr::new(IpAddr::V4(std::net::Ipv4Addr::from(0x0a00_0000 + i)), 1);
            patterns.session_ended(&session, Some(Cause::DataConnectionBlocked));
        }
        assert_eq!(patterns.bursts.len(), MAX_FOLLOWED);
        assert_eq!(patterns.unfollowed, 10);
    }
}

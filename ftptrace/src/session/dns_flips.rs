//! A client whose consecutive sessions for one server name went to
//! different addresses, one of them failing: a name that resolves to
//! another server on each try (round robin with a dead member, a failover
//! half done, a stale record), so that the same job fails now and then.
//! Seen where ftptrace runs on the client's host, which received the DNS
//! answers ([`super::dns_names`]).

use std::net::IpAddr;

use foldhash::HashMap;

use super::{
    cause::Cause,
    model::Session,
    patterns::{PatternRules, is_failure},
};
use crate::event::Name;

/// Client/name pairs followed at once. Past it, pairs last seen longer
/// ago than the window go first; if none has, the new pair is not followed
/// (counted).
pub const MAX_FOLLOWED: usize = 4096;

/// One session's end, for the one after it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Went {
    pub server: IpAddr,
    pub cause: Option<Cause>,
    pub session: Name,
    pub end_ns: u64,
}

/// Two consecutive sessions of `client` for `name`, to different
/// addresses, at least one of them failed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DnsFlip {
    pub client: IpAddr,
    pub name: Name,
    pub before: Went,
    pub after: Went,
}

impl DnsFlip {
    /// The failure it is about: the later session's, else the earlier's.
    pub fn cause(&self) -> Cause {
        [self.after.cause, self.before.cause]
            .into_iter()
            .flatten()
            .find(|c| is_failure(*c))
            .unwrap_or(Cause::Unknown)
    }
}

#[derive(Debug, Default)]
pub struct DnsFlips {
    last: HashMap<(IpAddr, Name), Went>,
    /// Sessions not followed because the table was full.
    pub unfollowed: u64,
}

impl DnsFlips {
    /// A session ended with `cause`: the flip it completes, if any (the
    /// session before it for the same name ended within the window).
    pub fn session_ended(
        &mut self,
        session: &Session,
        cause: Option<Cause>,
        rules: PatternRules,
    ) -> Option<DnsFlip> {
        let name = session.server_name.clone()?;
        let client = session.control.client.ip().to_canonical();
        let went = Went {
            server: session.control.server.ip().to_canonical(),
            cause,
            session: session.id.clone(),
            end_ns: session.last_ns,
        };
        let key = (client, name);
        if !self.last.contains_key(&key) && self.last.len() >= MAX_FOLLOWED {
            let at = went.end_ns;
            self.last
                .retain(|_, w| at.saturating_sub(w.end_ns) <= rules.window_ns);
            if self.last.len() >= MAX_FOLLOWED {
                self.unfollowed += 1;
                return None;
            }
        }
        let before = self.last.insert(key.clone(), went.clone())?;
        let flipped = before.server != went.server
            && went.end_ns.saturating_sub(before.end_ns) <= rules.window_ns
            && [before.cause, went.cause]
                .into_iter()
                .flatten()
                .any(is_failure);
        flipped.then_some(DnsFlip {
            client,
            name: key.1,
            before,
            after: went,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        dns::Answer,
        ftp::{Side::*, Verb},
        session::{Sessions, cause::diagnose, script::Script},
    };

    /// Sessions of one client for ftp.example.test, resolved before each to
    /// the next of `servers`: one on `good` serves, the others refuse.
    fn sessions_to(servers: &[&str], good: &str) -> Vec<Session> {
        let mut s = Script::new();
        let mut answers = Vec::new();
        for (i, server) in servers.iter().enumerate() {
            s.after_ms(2_000);
            answers.push((s.end_ns(), *server));
            let client = format!("192.0.2.2:{}", 40000 + i);
            let to = format!("{server}:21");
            if *server == good {
                let control = s.connect(&client, &to);
                s.login(&control);
                s.command(&control, Verb::Quit, None);
                s.reply(&control, 221, "Goodbye.");
                s.fin(&control, Server);
            } else {
                let control = s.link(&client, &to);
                s.refused(&control, true);
            }
        }
        let mut sessions = Sessions::new(
            crate::ports::PortSet {
                control: vec![21],
                passive: None,
            },
            "t",
        );
        let mut ended = Vec::new();
        let mut answers = answers.into_iter().peekable();
        for event in s.seen_from(&[Client]) {
            while let Some((at, addr)) = answers.next_if(|(at, _)| *at <= event.boot_ns) {
                let answer = Answer {
                    name: "ftp.example.test".to_owned(),
                    addrs: vec![addr.parse().unwrap()],
                    ttl_s: 0,
                };
                sessions.names.learn(event.netns, &answer, at);
            }
            sessions.observe(&event, &mut ended);
        }
        ended.extend(sessions.drain());
        ended
    }

    fn flips(sessions: &[Session]) -> Vec<DnsFlip> {
        let mut flips = DnsFlips::default();
        sessions
            .iter()
            .filter_map(|s| flips.session_ended(s, diagnose(s).cause, PatternRules::default()))
            .collect()
    }

    #[test]
    fn a_name_that_flips_to_a_dead_server_is_a_pattern() {
        let sessions = sessions_to(&["192.0.2.1", "192.0.2.3", "192.0.2.1"], "192.0.2.1");
        assert_eq!(sessions.len(), 3);
        assert!(
            sessions
                .iter()
                .all(|s| s.server_name.as_deref() == Some("ftp.example.test")),
            "{sessions:#?}"
        );
        let found = flips(&sessions);
        assert_eq!(found.len(), 2, "{found:#?}");
        let first = &found[0];
        assert_eq!(first.name.as_str(), "ftp.example.test");
        assert_eq!(first.client, "192.0.2.2".parse::<IpAddr>().unwrap());
        assert_eq!(first.before.server, "192.0.2.1".parse::<IpAddr>().unwrap());
        assert_eq!(first.before.cause, Some(Cause::Clean));
        assert_eq!(first.after.server, "192.0.2.3".parse::<IpAddr>().unwrap());
        assert_eq!(first.after.cause, Some(Cause::ConnectionRefused));
        assert_eq!(first.cause(), Cause::ConnectionRefused);
        // Back to the good one: the flip is still news (the earlier failed).
        assert_eq!(found[1].before.server, first.after.server);
        assert_eq!(found[1].cause(), Cause::ConnectionRefused);
    }

    #[test]
    fn round_robin_that_always_works_is_no_pattern() {
        let mut sessions = sessions_to(&["192.0.2.1"], "192.0.2.1");
        sessions.extend(sessions_to(&["192.0.2.1"], "192.0.2.1"));
        assert_eq!(flips(&sessions), []);
        // Nor the same address failing again: that is repeated_failure's.
        let sessions = sessions_to(&["192.0.2.3", "192.0.2.3"], "192.0.2.1");
        assert_eq!(flips(&sessions), []);
    }

    #[test]
    fn sessions_without_a_resolved_name_are_not_followed() {
        let mut s = Script::new();
        let control = s.connect("192.0.2.2:40000", "192.0.2.1:21");
        s.fin(&control, Client);
        let sessions = crate::session::script::sessions_of(&s.seen_from(&[Client]), s.end_ns());
        assert_eq!(sessions[0].server_name, None);
        assert_eq!(flips(&sessions), []);
    }
}

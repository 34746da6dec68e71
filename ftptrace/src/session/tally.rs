//! What a run's sessions came to so far, for the summary SIGUSR1 asks for:
//! sessions by cause, and the clients that failed most.

use std::{collections::HashMap, net::IpAddr};

use super::{cause::Cause, model::Session, patterns::is_failure};

/// Clients counted at once: a stranger spraying source addresses fills the
/// table, and is counted in [`Tally::clients_dropped`] past it.
const MAX_CLIENTS: usize = 4096;

#[derive(Default)]
pub struct Tally {
    /// Sessions reported, per cause (`None`: no cause, still open at exit).
    by_cause: HashMap<Option<Cause>, u64>,
    /// Failed sessions per client address.
    failures: HashMap<IpAddr, u64>,
    /// Failed sessions not counted per client because the table was full.
    pub clients_dropped: u64,
}

impl Tally {
    pub fn session_ended(&mut self, session: &Session, cause: Option<Cause>) {
        *self.by_cause.entry(cause).or_default() += 1;
        if !cause.is_some_and(is_failure) {
            return;
        }
        let client = session.control.client.ip().to_canonical();
        if !self.failures.contains_key(&client) && self.failures.len() >= MAX_CLIENTS {
            self.clients_dropped += 1;
            return;
        }
        *self.failures.entry(client).or_default() += 1;
    }

    /// Sessions per cause name, every cause listed (0 where none), in
    /// [`Cause::ALL`]'s order, then `none` (reported without a cause).
    pub fn by_cause(&self) -> Vec<(&'static str, u64)> {
        let count = |c| self.by_cause.get(&c).copied().unwrap_or(0);
        Cause::ALL
            .iter()
            .map(|&c| (c.as_str(), count(Some(c))))
            .chain([("none", count(None))])
            .collect()
    }

    /// The `n` clients with the most failed sessions, most first (ties by
    /// address, so the order is the same every time).
    pub fn top_failing(&self, n: usize) -> Vec<(IpAddr, u64)> {
        let mut all: Vec<(IpAddr, u64)> = self.failures.iter().map(|(a, n)| (*a, *n)).collect();
        all.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        all.truncate(n);
        all
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        ftp::Side::{Client, Server},
        session::script::{Script, sessions_of},
    };

    fn session_from(client: &str) -> Session {
        let mut s = Script::new();
        let control = s.connect(client, "192.0.2.1:21");
        s.fin(&control, Client);
        let mut sessions = sessions_of(&s.seen_from(&[Client, Server]), s.end_ns());
        assert_eq!(sessions.len(), 1);
        sessions.remove(0)
    }

    #[test]
    fn counts_causes_and_ranks_failing_clients() {
        let mut tally = Tally::default();
        let (a, b) = (
            session_from("192.0.2.2:40000"),
            session_from("192.0.2.3:40000"),
        );
        tally.session_ended(&a, Some(Cause::Clean));
        tally.session_ended(&a, Some(Cause::DataConnectionBlocked));
        tally.session_ended(&b, Some(Cause::TlsFailure));
        tally.session_ended(&b, Some(Cause::TlsFailure));
        tally.session_ended(&b, Some(Cause::PacketLossRecovered));
        tally.session_ended(&b, None);
        let causes: HashMap<_, _> = tally.by_cause().into_iter().collect();
        assert_eq!(causes.len(), Cause::ALL.len() + 1);
        assert_eq!(
            (
                causes["clean"],
                causes["tls_failure"],
                causes["data_connection_blocked"]
            ),
            (1, 2, 1)
        );
        assert_eq!((causes["packet_loss_recovered"], causes["none"]), (1, 1));
        assert_eq!(
            tally.top_failing(5),
            [
                ("192.0.2.3".parse().unwrap(), 2),
                ("192.0.2.2".parse().unwrap(), 1)
            ]
        );
        assert_eq!(tally.top_failing(1).len(), 1);
    }

    #[test]
    fn a_sprayed_source_fills_the_table_and_is_counted() {
        let mut tally = Tally::default();
        for n in 0..MAX_CLIENTS + 10 {
            let client = format!("[2001:db8::{:x}]:40000", n + 1);
            tally.session_ended(&session_from(&client), Some(Cause::ConnectionRefused));
        }
        assert_eq!(tally.failures.len(), MAX_CLIENTS);
        assert_eq!(tally.clients_dropped, 10);
    }
}

//! Kernel events lost or skipped, as a running count with the boot time of
//! each look at the kernel's counters, so that a session is charged every
//! loss that may have been its own.
//!
//! The counters are read before a batch of records is processed, and the
//! batch holds records made before that read: a session whose first record
//! waits in the ring while its own later events are skipped would find
//! those misses already counted when it opens. So a session's starting
//! point is the count of the last look made before its first event, not
//! the count when user space meets it; and a little before, since the lost
//! event may be the session's first (a SYN's state change, a round trip
//! before the next).

use std::collections::VecDeque;

/// Looks kept; older ones fold into one floor (a session older than all of
/// them is charged from that floor, or from zero: more, never less).
const LOOKS_KEPT: usize = 1024;
/// How long before a session's first event a loss may still be its own.
pub const LEAD_NS: u64 = 1_000_000_000;

#[derive(Debug, Default)]
pub struct Losses {
    total: u64,
    /// (boot time no earlier than the read, the count read), oldest first,
    /// one per change of the count.
    looks: VecDeque<(u64, u64)>,
    /// The newest look folded out of `looks`.
    floor: Option<(u64, u64)>,
}

impl Losses {
    /// The running count `total` as read before boot time `at_ns`.
    pub fn note(&mut self, total: u64, at_ns: u64) {
        if total <= self.total {
            return;
        }
        self.total = total;
        if self.looks.len() == LOOKS_KEPT {
            self.floor = self.looks.pop_front();
        }
        self.looks.push_back((at_ns, total));
    }

    /// Every loss counted so far.
    pub fn total(&self) -> u64 {
        self.total
    }

    /// What a session whose first event came at boot time `ns` starts
    /// from: a count that holds no loss after [`LEAD_NS`] before `ns`.
    pub fn before(&self, ns: u64) -> u64 {
        let ns = ns.saturating_sub(LEAD_NS);
        let after = self.looks.partition_point(|&(at, _)| at <= ns);
        match after.checked_sub(1) {
            Some(i) => self.looks[i].1,
            None => self
                .floor
                .filter(|&(at, _)| at <= ns)
                .map_or(0, |(_, total)| total),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_session_starts_from_the_last_look_before_its_first_event() {
        let mut losses = Losses::default();
        let s = LEAD_NS;
        losses.note(3, 100);
        losses.note(5, 200);
        // No change: no new look.
        losses.note(5, 300);
        assert_eq!(losses.total(), 5);
        assert_eq!(losses.before(s + 50), 0);
        assert_eq!(losses.before(s + 100), 3);
        assert_eq!(losses.before(s + 199), 3);
        // Met after the look at 200, but its events came before it: the
        // two misses counted then may be its own.
        assert_eq!(losses.before(s + 250), 5);
        // A loss counted shortly before a session's first event may be
        // that event.
        assert_eq!(losses.before(250), 0);
    }

    #[test]
    fn looks_past_the_kept_ones_charge_more_never_less() {
        let mut losses = Losses::default();
        for n in 1..=LOOKS_KEPT as u64 + 2 {
            losses.note(n, n * 10);
        }
        // The two oldest folded away: the floor is the second.
        let s = LEAD_NS;
        assert_eq!(losses.before(s + 25), 2);
        assert_eq!(losses.before(s + 15), 0);
        assert_eq!(losses.before(s + 35), 3);
    }
}

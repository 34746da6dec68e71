//! Bounded waiting: every loop in these tests ends at a deadline.

use std::{
    thread,
    time::{Duration, Instant},
};

/// How often [`wait_for`] looks again.
pub const POLL_INTERVAL: Duration = Duration::from_millis(20);

/// A point in time after which waiting is a failure.
#[derive(Clone, Copy, Debug)]
pub struct Deadline {
    end: Instant,
    timeout: Duration,
}

/// Stretches every deadline by an integer factor: `cargo xtask vm` sets it
/// for guests under software emulation, where everything runs several
/// times slower (loading an nftables module alone can take seconds).
pub const TIME_SCALE_ENV: &str = "FTPTRACE_TEST_TIME_SCALE";

fn time_scale() -> u32 {
    std::env::var(TIME_SCALE_ENV)
        .ok()
        .and_then(|v| v.parse::<u32>().ok())
        .unwrap_or(1)
        .clamp(1, 20)
}

impl Deadline {
    pub fn after(timeout: Duration) -> Self {
        let timeout = timeout * time_scale();
        Self {
            end: Instant::now() + timeout,
            timeout,
        }
    }

    pub fn expired(&self) -> bool {
        Instant::now() >= self.end
    }

    /// Time left, zero once expired.
    pub fn remaining(&self) -> Duration {
        self.end.saturating_duration_since(Instant::now())
    }

    /// The timeout this deadline was made with (for messages).
    pub fn timeout(&self) -> Duration {
        self.timeout
    }
}

/// Polls `probe` every [`POLL_INTERVAL`] until it returns `Ok`, for at most
/// `timeout`. `Err` describes what was seen instead; the last one is in the
/// panic message when time runs out.
pub fn wait_for<T>(
    what: &str,
    timeout: Duration,
    mut probe: impl FnMut() -> Result<T, String>,
) -> T {
    let deadline = Deadline::after(timeout);
    loop {
        match probe() {
            Ok(value) => return value,
            Err(seen) if deadline.expired() => {
                panic!("timed out after {timeout:?} waiting for {what}; last seen: {seen}")
            }
            Err(_) => thread::sleep(POLL_INTERVAL.min(deadline.remaining())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wait_for_returns_the_first_ok() {
        let mut calls = 0;
        let got = wait_for("three calls", Duration::from_secs(5), || {
            calls += 1;
            if calls == 3 {
                Ok(calls)
            } else {
                Err(format!("{calls} calls"))
            }
        });
        assert_eq!(got, 3);
    }

    #[test]
    #[should_panic(expected = "waiting for never; last seen: still no")]
    fn wait_for_panics_with_the_last_state_at_the_deadline() {
        wait_for::<()>(
            "never",
            Duration::from_millis(50),
            || Err("still no".into()),
        );
    }
}

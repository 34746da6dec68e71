//! Kernel-to-line latency, measured from outside: the tracer writes JSON
//! lines to a pipe this reads, and each event line's `ts` (the kernel's
//! timestamp, as wall time) is compared with the wall clock when the line
//! arrives here. Includes everything an operator's pipeline would see:
//! the ring buffer, the drain interval, decoding, sessions, the write.

use std::{
    io::BufRead,
    thread::{self, JoinHandle},
    time::{SystemTime, UNIX_EPOCH},
};

/// What the pipe carried: every event line's latency in microseconds
/// (sorted), and the last `stats` line.
pub struct Lines {
    pub latencies_us: Vec<u32>,
    pub last_stats: Option<String>,
}

/// Reads the tracer's lines from `reader` until it closes, in a thread at
/// the tracer's own priority (nice -10): at the load's, the reader would
/// be the one falling behind, and its delay is not the tracer's.
pub fn collect(mut reader: impl BufRead + Send + 'static) -> JoinHandle<Lines> {
    thread::spawn(move || {
        // SAFETY: integer arguments; `0` is this thread (Linux keeps the
        // nice value per thread). Without the privilege it stays as it is.
        unsafe { libc::setpriority(libc::PRIO_PROCESS, 0, -10) };
        let mut latencies = Vec::new();
        let mut last_stats = None;
        let mut line = Vec::new();
        loop {
            line.clear();
            match reader.read_until(b'\n', &mut line) {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
            if line.starts_with(b"{\"type\":\"stats\"") {
                last_stats = Some(String::from_utf8_lossy(&line).into_owned());
                continue;
            }
            let Some(ts) = event_ts(&line) else {
                continue;
            };
            let now = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos() as u64);
            latencies.push((now.saturating_sub(ts) / 1_000).min(u64::from(u32::MAX)) as u32);
        }
        latencies.sort_unstable();
        Lines {
            latencies_us: latencies,
            last_stats,
        }
    })
}

/// An event line's `ts` (`{"type":"event","schema":2,"ts":"..."`), as
/// nanoseconds since the epoch.
fn event_ts(line: &[u8]) -> Option<u64> {
    const TS: &[u8] = b"\"ts\":\"";
    if !line.starts_with(b"{\"type\":\"event\"") {
        return None;
    }
    // Within the envelope: the kind's own fields come after it.
    let head = line.get(..64.min(line.len()))?;
    let at = head.windows(TS.len()).position(|w| w == TS)? + TS.len();
    unix_ns(line.get(at..at + 30)?)
}

/// `2026-12-03T01:33:48.793937370Z` as nanoseconds since the epoch.
fn unix_ns(ts: &[u8]) -> Option<u64> {
    let num = |range: std::ops::Range<usize>| -> Option<u64> {
        let text = std::str::from_utf8(ts.get(range)?).ok()?;
        text.parse().ok()
    };
    let (year, month, day) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (hour, minute, second, nanos) = (num(11..13)?, num(14..16)?, num(17..19)?, num(20..29)?);
    let days = days_from_civil(year as i64, month as i64, day as i64);
    let seconds = days as u64 * 86_400 + hour * 3_600 + minute * 60 + second;
    Some(seconds * 1_000_000_000 + nanos)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's
/// `days_from_civil`).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (m + if m > 2 { -3 } else { 9 }) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The `q` quantile (0..=1) of sorted `values`.
pub fn quantile(values: &[u32], q: f64) -> u32 {
    if values.is_empty() {
        return 0;
    }
    let at = ((values.len() - 1) as f64 * q).round() as usize;
    values[at]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_timestamps_of_event_lines() {
        assert_eq!(
            unix_ns(b"1970-01-01T00:00:01.000000002Z"),
            Some(1_000_000_002)
        );
        // `date -u -d 2026-12-03T01:33:48Z +%s`: 1796261628.
        assert_eq!(
            unix_ns(b"2026-12-03T01:33:48.793937370Z"),
            Some(1_796_261_628_793_937_370)
        );
        assert_eq!(unix_ns(b"not a time at all, not at all."), None);
    }

    #[test]
    fn finds_the_ts_of_an_event_line_and_nothing_else() {
        let event = br#"{"type":"event","schema":2,"ts":"2026-12-03T01:33:48.793937370Z","host":{"name":"vm"},"kind":"state"}"#;
        assert_eq!(event_ts(event), Some(1_796_261_628_793_937_370));
        let stats = br#"{"type":"stats","schema":2,"host":{"name":"vm"},"ts":"2026-12-03T01:33:48.793937370Z"}"#;
        assert_eq!(event_ts(stats), None);
    }

    #[test]
    fn quantiles_are_of_the_sorted_values() {
        let values: Vec<u32> = (1..=100).collect();
        assert_eq!(quantile(&values, 0.99), 99);
        assert_eq!(quantile(&values, 0.5), 51);
        assert_eq!(quantile(&[], 0.99), 0);
    }
}

//! Kernel timestamps (`CLOCK_BOOTTIME`, which keeps counting through suspend)
//! to wall-clock RFC 3339 UTC with nanoseconds.

use std::cell::Cell;

use nix::time::{ClockId, clock_gettime};

/// Maps boot time to wall time with one offset measured at start.
#[derive(Clone, Debug)]
pub struct WallClock {
    /// Realtime minus boottime, in nanoseconds.
    offset_ns: i128,
    /// The last second written and its date and time: events come in
    /// bursts within a second, and only their fraction differs.
    last_second: Cell<(i64, [u8; SECOND_LEN])>,
}

/// `2026-11-25T10:00:00.`
const SECOND_LEN: usize = 20;

impl WallClock {
    pub fn now() -> nix::Result<Self> {
        let nanos = |t: nix::sys::time::TimeSpec| {
            i128::from(t.tv_sec()) * 1_000_000_000 + i128::from(t.tv_nsec())
        };
        // Read boottime on both sides of realtime and take the middle, so the
        // offset is off by at most half the (sub-microsecond) gap.
        let before = nanos(clock_gettime(ClockId::CLOCK_BOOTTIME)?);
        let real = nanos(clock_gettime(ClockId::CLOCK_REALTIME)?);
        let after = nanos(clock_gettime(ClockId::CLOCK_BOOTTIME)?);
        Ok(Self::with_offset(real - (before + after) / 2))
    }

    /// The clock of another run (a recording's).
    pub fn with_offset(offset_ns: i128) -> Self {
        Self {
            offset_ns,
            last_second: Cell::new((i64::MIN, [0; SECOND_LEN])),
        }
    }

    /// Realtime minus boottime, in nanoseconds.
    pub fn offset_ns(&self) -> i128 {
        self.offset_ns
    }

    /// `2026-11-25T10:00:00.123456789Z`
    pub fn rfc3339(&self, boot_ns: u64) -> Stamp {
        let unix_ns = self
            .offset_ns
            .saturating_add(i128::from(boot_ns))
            .clamp(EARLIEST_NS, LATEST_NS);
        let (secs, nanos) = split(unix_ns);
        let (last, second) = self.last_second.get();
        if secs != last {
            let stamp = rfc3339_from_unix_ns(unix_ns);
            let mut second = [0; SECOND_LEN];
            second.copy_from_slice(&stamp.0[..SECOND_LEN]);
            self.last_second.set((secs, second));
            return stamp;
        }
        let mut out = *b"0000-00-00T00:00:00.000000000Z";
        out[..SECOND_LEN].copy_from_slice(&second);
        digits(&mut out[SECOND_LEN..29], nanos);
        Stamp(out)
    }
}

/// `CLOCK_BOOTTIME` now, in nanoseconds: the clock of the kernel's records.
pub fn boot_ns() -> anyhow::Result<u64> {
    let now = clock_gettime(ClockId::CLOCK_BOOTTIME)?;
    Ok(u64::try_from(now.tv_sec())? * 1_000_000_000 + u64::try_from(now.tv_nsec())?)
}

/// The first and last instants RFC 3339 can write (years 0000 to 9999):
/// a time outside (a crafted recording's clock) is written as the nearest.
const EARLIEST_NS: i128 = -62_167_219_200 * 1_000_000_000;
const LATEST_NS: i128 = 253_402_300_800 * 1_000_000_000 - 1;

/// An RFC 3339 UTC time with nanoseconds, on the stack: every event line
/// has one, and a `String` each was an allocation each.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Stamp([u8; 30]);

impl Stamp {
    pub fn as_str(&self) -> &str {
        // Only ASCII digits and separators are ever written.
        std::str::from_utf8(&self.0).unwrap_or_default()
    }
}

impl std::fmt::Display for Stamp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::fmt::Debug for Stamp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(self.as_str(), f)
    }
}

impl PartialEq<&str> for Stamp {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

/// The wall-clock time now (a `start` or `check` line's).
pub fn now() -> Stamp {
    let unix_ns = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as i128);
    rfc3339_from_unix_ns(unix_ns)
}

/// Written digit by digit into a fixed buffer: every event line has one,
/// and `format!` with its 128-bit arithmetic was a tenth of a line's cost.
pub fn rfc3339_from_unix_ns(unix_ns: i128) -> Stamp {
    let (secs, nanos) = split(unix_ns.clamp(EARLIEST_NS, LATEST_NS));
    let days = secs.div_euclid(86_400);
    let in_day = secs.rem_euclid(86_400) as u32;
    let (year, month, day) = civil_from_days(days);
    let mut out = *b"0000-00-00T00:00:00.000000000Z";
    digits(&mut out[0..4], year as u32);
    digits(&mut out[5..7], month);
    digits(&mut out[8..10], day);
    digits(&mut out[11..13], in_day / 3600);
    digits(&mut out[14..16], in_day % 3600 / 60);
    digits(&mut out[17..19], in_day % 60);
    digits(&mut out[20..29], nanos);
    Stamp(out)
}

/// Seconds and nanoseconds of a time within the clamp, where seconds fit
/// an i64 and nanoseconds a u32.
fn split(unix_ns: i128) -> (i64, u32) {
    (
        unix_ns.div_euclid(1_000_000_000) as i64,
        unix_ns.rem_euclid(1_000_000_000) as u32,
    )
}

/// `value`'s last `into.len()` decimal digits, zero-padded.
fn digits(into: &mut [u8], mut value: u32) {
    for digit in into.iter_mut().rev() {
        *digit = b'0' + (value % 10) as u8;
        value /= 10;
    }
}

/// Days since 1970-01-01 → (year, month, day) in the proleptic Gregorian
/// calendar (Howard Hinnant's `civil_from_days`).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    /// Found by `cargo xtask fuzz` (target `pipeline`): a recording whose
    /// clock is i64::MAX days away overflowed the date arithmetic.
    #[test]
    fn times_beyond_what_rfc3339_writes_are_clamped() {
        use super::*;
        assert_eq!(
            rfc3339_from_unix_ns(i128::MAX),
            "9999-12-31T23:59:59.999999999Z"
        );
        assert_eq!(
            rfc3339_from_unix_ns(i128::MIN),
            "0000-01-01T00:00:00.000000000Z"
        );
        assert_eq!(
            WallClock::with_offset(i128::MAX).rfc3339(u64::MAX),
            "9999-12-31T23:59:59.999999999Z"
        );
        assert_eq!(rfc3339_from_unix_ns(0), "1970-01-01T00:00:00.000000000Z");
    }

    use super::*;

    #[test]
    fn formats_known_instants() {
        assert_eq!(rfc3339_from_unix_ns(0), "1970-01-01T00:00:00.000000000Z");
        // date -u -d @1764064800.5 → 2025-11-25T10:00:00.5Z
        assert_eq!(
            rfc3339_from_unix_ns(1_764_064_800_500_000_001),
            "2025-11-25T10:00:00.500000001Z"
        );
        // A leap day.
        assert_eq!(
            rfc3339_from_unix_ns(951_782_400_000_000_000),
            "2000-02-29T00:00:00.000000000Z"
        );
        assert_eq!(rfc3339_from_unix_ns(-1), "1969-12-31T23:59:59.999999999Z");
    }

    #[test]
    fn boot_time_is_shifted_by_the_offset() {
        let clock = WallClock::with_offset(1_000_000_000);
        assert_eq!(clock.rfc3339(500), "1970-01-01T00:00:01.000000500Z");
    }

    /// The remembered second serves only its own second.
    #[test]
    fn times_in_the_same_and_the_next_second_are_each_their_own() {
        let clock = WallClock::with_offset(1_764_064_799_000_000_000);
        for (boot_ns, expected) in [
            (999_999_999, "2025-11-25T09:59:59.999999999Z"),
            (5, "2025-11-25T09:59:59.000000005Z"),
            (1_000_000_000, "2025-11-25T10:00:00.000000000Z"),
            (1_500_000_000, "2025-11-25T10:00:00.500000000Z"),
            (999_999_998, "2025-11-25T09:59:59.999999998Z"),
            (u64::MAX, "2610-06-16T09:34:32.709551615Z"),
        ] {
            assert_eq!(clock.rfc3339(boot_ns), expected, "{boot_ns}");
        }
    }
}

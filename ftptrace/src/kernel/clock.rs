//! Kernel timestamps (`CLOCK_BOOTTIME`, which keeps counting through suspend)
//! to wall-clock RFC 3339 UTC with nanoseconds.

use nix::time::{ClockId, clock_gettime};

/// Maps boot time to wall time with one offset measured at start.
#[derive(Clone, Copy, Debug)]
pub struct WallClock {
    /// Realtime minus boottime, in nanoseconds.
    offset_ns: i128,
}

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
        Ok(Self {
            offset_ns: real - (before + after) / 2,
        })
    }

    /// The clock of another run (a recording's).
    pub fn with_offset(offset_ns: i128) -> Self {
        Self { offset_ns }
    }

    /// Realtime minus boottime, in nanoseconds.
    pub fn offset_ns(&self) -> i128 {
        self.offset_ns
    }

    /// `2026-11-25T10:00:00.123456789Z`
    pub fn rfc3339(&self, boot_ns: u64) -> String {
        rfc3339_from_unix_ns(self.offset_ns.saturating_add(i128::from(boot_ns)))
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

/// Written digit by digit into a fixed buffer: every event line has one,
/// and `format!` with its 128-bit arithmetic was a tenth of a line's cost.
pub fn rfc3339_from_unix_ns(unix_ns: i128) -> String {
    let unix_ns = unix_ns.clamp(EARLIEST_NS, LATEST_NS);
    // Within the clamp, seconds fit an i64 and nanoseconds a u32.
    let secs = unix_ns.div_euclid(1_000_000_000) as i64;
    let nanos = unix_ns.rem_euclid(1_000_000_000) as u32;
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
    // Only ASCII digits and separators were written.
    String::from(std::str::from_utf8(&out).unwrap_or_default())
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
}

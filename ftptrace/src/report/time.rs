//! The times of ftptrace's lines (RFC 3339, UTC, nanoseconds) as numbers,
//! and back as the short UTC labels a report shows.

/// Nanoseconds since the Unix epoch of `ts` (`2026-12-04T20:11:40.188957179Z`;
/// fewer fraction digits, none, or `+00:00` also read). `None` for anything
/// else: a report skips what it cannot place.
pub fn parse(ts: &str) -> Option<i64> {
    let bytes = ts.as_bytes();
    if bytes.len() < 20 || bytes[4] != b'-' || bytes[7] != b'-' || bytes[10] != b'T' {
        return None;
    }
    if bytes[13] != b':' || bytes[16] != b':' {
        return None;
    }
    let number = |from: usize, to: usize| -> Option<i64> {
        let digits = ts.get(from..to)?;
        digits
            .bytes()
            .all(|b| b.is_ascii_digit())
            .then(|| digits.parse().ok())
            .flatten()
    };
    let (year, month, day) = (number(0, 4)?, number(5, 7)?, number(8, 10)?);
    let (hour, minute, second) = (number(11, 13)?, number(14, 16)?, number(17, 19)?);
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) || hour > 23 || minute > 59 {
        return None;
    }
    if second > 60 {
        return None;
    }
    let mut rest = &ts[19..];
    let mut nanos = 0i64;
    if let Some(fraction) = rest.strip_prefix('.') {
        let digits = fraction.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 || digits > 9 {
            return None;
        }
        nanos = fraction[..digits].parse::<i64>().ok()? * 10i64.pow(9 - digits as u32);
        rest = &fraction[digits..];
    }
    if rest != "Z" && rest != "+00:00" {
        return None;
    }
    let days = days_from_civil(year, month, day);
    let seconds = days * 86_400 + hour * 3600 + minute * 60 + second;
    Some(seconds * 1_000_000_000 + nanos)
}

/// `2026-12-04 20:11:40` (UTC) of `ns` since the epoch.
pub fn label(ns: i64) -> String {
    let seconds = ns.div_euclid(1_000_000_000);
    let (days, of_day) = (seconds.div_euclid(86_400), seconds.rem_euclid(86_400));
    let (year, month, day) = civil_from_days(days);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02}",
        of_day / 3600,
        of_day % 3600 / 60,
        of_day % 60
    )
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's
/// `days_from_civil`).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let of_era = year - era * 400;
    let of_year = (153 * (month + if month > 2 { -3 } else { 9 }) + 2) / 5 + day - 1;
    let of_era_days = of_era * 365 + of_era / 4 - of_era / 100 + of_year;
    era * 146_097 + of_era_days - 719_468
}

/// The inverse of [`days_from_civil`].
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let days = days + 719_468;
    let era = days.div_euclid(146_097);
    let of_era = days - era * 146_097;
    let year_of_era = (of_era - of_era / 1460 + of_era / 36_524 - of_era / 146_096) / 365;
    let of_year = of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_index = (5 * of_year + 2) / 153;
    let day = of_year - (153 * month_index + 2) / 5 + 1;
    let month = if month_index < 10 {
        month_index + 3
    } else {
        month_index - 9
    };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_what_ftptrace_writes() {
        // `date -u -d 2026-12-04T20:11:40Z +%s` = 1796415100.
        assert_eq!(
            parse("2026-12-04T20:11:40.188957179Z"),
            Some(1_796_415_100_188_957_179)
        );
        assert_eq!(parse("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(
            parse("2000-03-01T00:00:00.5+00:00"),
            Some(951_868_800_500_000_000)
        );
        assert_eq!(label(1_796_415_100_188_957_179), "2026-12-04 20:11:40");
        assert_eq!(label(951_868_800_000_000_000), "2000-03-01 00:00:00");
    }

    #[test]
    fn refuses_what_it_cannot_place() {
        for bad in [
            "",
            "2026-12-04",
            "2026-12-04T20:11:40",
            "2026-12-04T20:11:40+01:00",
            "2026-13-04T20:11:40Z",
            "2026-12-04T20:11:40.Z",
            "2026-12-04T20:11:40.1234567890Z",
            "2026-1a-04T20:11:40Z",
            "２026-12-04T20:11:40Z",
        ] {
            assert_eq!(parse(bad), None, "{bad}");
        }
    }
}

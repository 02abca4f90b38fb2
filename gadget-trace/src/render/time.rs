//! RFC 3339 timestamps in UTC with milliseconds, e.g.
//! `2023-11-14T22:13:20.123Z`, written without a date library.

use super::two_digits;

/// Writes `ns` (nanoseconds since the Unix epoch) as RFC 3339 in UTC with
/// milliseconds. Always 24 bytes: a u64 of nanoseconds ends in 2554.
pub(crate) fn write_rfc3339_ms(out: &mut Vec<u8>, ns: u64) {
    let secs = ns / 1_000_000_000;
    let millis = (ns / 1_000_000 % 1000) as usize;
    let days = secs / 86_400;
    let secs_of_day = (secs % 86_400) as usize;
    let (year, month, day) = civil_from_days(days);
    let (year, month, day) = (year as usize, month as usize, day as usize);
    // Filled in place, two digits at a time (digit by digit, the timestamp
    // was 8% of the client's instructions per JSON row).
    let mut text = *b"0000-00-00T00:00:00.000Z";
    for (at, value) in [
        (0, year / 100),
        (2, year % 100),
        (5, month),
        (8, day),
        (11, secs_of_day / 3600),
        (14, secs_of_day / 60 % 60),
        (17, secs_of_day % 60),
        (20, millis / 10),
    ] {
        text[at..at + 2].copy_from_slice(two_digits(value));
    }
    text[22] = b'0' + (millis % 10) as u8;
    out.extend_from_slice(&text);
}

/// RFC 3339 timestamps as [`write_rfc3339_ms`] writes them, from the text
/// of the last second written: a trace's rows come by thousands within a
/// second, and the date and time of day cost most of a timestamp (176
/// instructions of a JSON row).
#[derive(Debug, Clone, Default)]
pub(crate) struct Rfc3339Writer {
    /// The second (since the epoch) `text` holds, once one is written.
    second: Option<u64>,
    text: [u8; 24],
}

impl Rfc3339Writer {
    /// Writes `ns` as [`write_rfc3339_ms`] does.
    pub(crate) fn write(&mut self, out: &mut Vec<u8>, ns: u64) {
        let second = ns / 1_000_000_000;
        if self.second != Some(second) {
            let mut text = Vec::with_capacity(24);
            write_rfc3339_ms(&mut text, ns);
            self.text.copy_from_slice(&text);
            self.second = Some(second);
        }
        let millis = (ns / 1_000_000 % 1000) as usize;
        self.text[20..22].copy_from_slice(two_digits(millis / 10));
        self.text[22] = b'0' + (millis % 10) as u8;
        out.extend_from_slice(&self.text);
    }
}

/// The proleptic Gregorian (year, month, day) of a day count since
/// 1970-01-01. Works in 400-year eras (146097 days), each starting on
/// March 1st so that the leap day is the last day of its year.
fn civil_from_days(days: u64) -> (u32, u32, u32) {
    // Days from 0000-03-01 to 1970-01-01.
    const EPOCH_SHIFT: u64 = 719_468;
    const DAYS_PER_ERA: u64 = 146_097;
    let days = days + EPOCH_SHIFT;
    let era = days / DAYS_PER_ERA;
    let day_of_era = days % DAYS_PER_ERA;
    // Leap days before this day in the era: every 4 years, less every 100,
    // plus the one at the end of the era.
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    // Months from March: 31, 30, 31, 30, 31, 31, 30, 31, 30, 31, 31, 28/29.
    let month_from_march = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * month_from_march + 2) / 5 + 1;
    let month = if month_from_march < 10 {
        month_from_march + 3
    } else {
        month_from_march - 9
    };
    let year = era * 400 + year_of_era + u64::from(month <= 2);
    (year as u32, month as u32, day as u32)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn formatted(ns: u64) -> String {
        let mut out = Vec::new();
        write_rfc3339_ms(&mut out, ns);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn epoch() {
        assert_eq!(formatted(0), "1970-01-01T00:00:00.000Z");
    }

    #[test]
    fn milliseconds_are_truncated_not_rounded() {
        assert_eq!(
            formatted(1_700_000_000_123_999_999),
            "2023-11-14T22:13:20.123Z"
        );
    }

    #[test]
    fn leap_days_and_year_ends() {
        // Values checked with `date -u -d @SECONDS`.
        assert_eq!(
            formatted(951_782_400 * 1_000_000_000),
            "2000-02-29T00:00:00.000Z"
        );
        assert_eq!(
            formatted(951_868_800 * 1_000_000_000),
            "2000-03-01T00:00:00.000Z"
        );
        assert_eq!(
            formatted(4_107_542_399 * 1_000_000_000),
            "2100-02-28T23:59:59.000Z"
        );
        assert_eq!(
            formatted(4_107_542_400 * 1_000_000_000),
            "2100-03-01T00:00:00.000Z"
        );
        assert_eq!(
            formatted(1_704_067_199_999_000_000),
            "2023-12-31T23:59:59.999Z"
        );
        assert_eq!(
            formatted(1_709_164_800 * 1_000_000_000),
            "2024-02-29T00:00:00.000Z"
        );
    }

    #[test]
    fn a_second_reused_is_written_as_if_written_anew() {
        let mut writer = Rfc3339Writer::default();
        let second = 1_000_000_000;
        let base = 1_700_000_000 * second;
        // Within a second, across seconds, days and years, and back.
        let mut stamps = vec![0, 1, 999_999_999, 1_000_000_000, u64::MAX];
        for offset in [0, 1, 999_999, 1_000_000, 123_456_789, 999_999_999] {
            stamps.extend([base + offset, base + second + offset, base + offset]);
        }
        stamps.extend([1_704_067_199_999_000_000, 1_704_067_200_000_000_000]);
        stamps.extend([1_704_067_199_000_000_000, 86_399 * second, 86_400 * second]);
        for ns in stamps {
            let mut out = b"x".to_vec();
            writer.write(&mut out, ns);
            assert_eq!(
                String::from_utf8(out).unwrap(),
                format!("x{}", formatted(ns))
            );
        }
    }

    #[test]
    fn largest_timestamp_does_not_overflow() {
        assert_eq!(formatted(u64::MAX), "2554-07-21T23:34:33.709Z");
    }

    #[test]
    fn matches_a_day_by_day_count() {
        // Walk 1970..2400 a day at a time and compare with a plain calendar.
        let (mut year, mut month, mut day) = (1970u32, 1u32, 1u32);
        for days in 0..(430 * 366) {
            assert_eq!(civil_from_days(days), (year, month, day), "day {days}");
            let leap = year % 4 == 0 && (year % 100 != 0 || year % 400 == 0);
            let month_len = match month {
                2 if leap => 29,
                2 => 28,
                4 | 6 | 9 | 11 => 30,
                _ => 31,
            };
            day += 1;
            if day > month_len {
                day = 1;
                month += 1;
                if month > 12 {
                    month = 1;
                    year += 1;
                }
            }
        }
    }
}

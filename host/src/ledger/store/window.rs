//! Budget windows: the UTC day and the UTC calendar month.

use serde::Serialize;

const DAY_MS: i64 = 86_400_000;

/// A budget window.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Window {
    /// The UTC day, from midnight.
    Day,
    /// The UTC calendar month, from the 1st at midnight.
    Month,
}

impl Window {
    /// The name stored in the `budget_spend` table.
    pub fn as_str(self) -> &'static str {
        match self {
            Window::Day => "day",
            Window::Month => "month",
        }
    }

    /// Start of the window holding `ms` (Unix milliseconds, UTC).
    pub fn start(self, ms: i64) -> i64 {
        match self {
            Window::Day => ms.div_euclid(DAY_MS) * DAY_MS,
            Window::Month => {
                let (y, m, _) = civil_from_days(ms.div_euclid(DAY_MS));
                days_from_civil(y, m, 1) * DAY_MS
            }
        }
    }

    /// Start of the next window after the one holding `ms`: when a cap
    /// resets.
    pub fn next_start(self, ms: i64) -> i64 {
        match self {
            Window::Day => Window::Day.start(ms) + DAY_MS,
            Window::Month => {
                let (y, m, _) = civil_from_days(ms.div_euclid(DAY_MS));
                let (y, m) = if m == 12 { (y + 1, 1) } else { (y, m + 1) };
                days_from_civil(y, m, 1) * DAY_MS
            }
        }
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's
/// algorithm: exact for every `i64` date the ledger can meet).
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = i64::from(m);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The date of a day count since 1970-01-01.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// Unix milliseconds of a UTC date at midnight (tests and tools).
pub fn utc_midnight_ms(y: i64, m: u32, d: u32) -> i64 {
    days_from_civil(y, m, d) * DAY_MS
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn days_and_months_start_at_utc_midnight() {
        // 2026-12-05T13:07:00Z.
        let t = utc_midnight_ms(2026, 12, 5) + 13 * 3_600_000 + 7 * 60_000;
        assert_eq!(utc_midnight_ms(2026, 12, 5), 1_796_428_800_000);
        assert_eq!(Window::Day.start(t), utc_midnight_ms(2026, 12, 5));
        assert_eq!(Window::Day.next_start(t), utc_midnight_ms(2026, 12, 6));
        assert_eq!(Window::Month.start(t), utc_midnight_ms(2026, 12, 1));
        assert_eq!(Window::Month.next_start(t), utc_midnight_ms(2027, 1, 1));
        // A leap February.
        let feb = utc_midnight_ms(2028, 2, 29) + 1;
        assert_eq!(Window::Month.start(feb), utc_midnight_ms(2028, 2, 1));
        assert_eq!(Window::Month.next_start(feb), utc_midnight_ms(2028, 3, 1));
        assert_eq!(
            Window::Month.next_start(feb) - Window::Month.start(feb),
            29 * DAY_MS
        );
        // The last millisecond of a day is still in it.
        let end = utc_midnight_ms(2026, 12, 6) - 1;
        assert_eq!(Window::Day.start(end), utc_midnight_ms(2026, 12, 5));
        assert_eq!(civil_from_days(0), (1970, 1, 1));
    }
}

//! The report's time window: `--since` / `--until` as the user writes them,
//! and UTC calendar arithmetic (dates are always UTC).
//!
//! Accepted forms:
//! - a span back from now: a whole number and a unit, `30m`, `24h`, `7d`,
//!   `2w` (also `s`);
//! - a date, `2026-12-05` (its midnight as `--since`; as `--until`, the end
//!   of that day, so `--since D --until D` is the whole day D);
//! - a date and time, `2026-12-05T13:00`, `2026-12-05T13:00:00`, with an
//!   optional `Z` (a space may stand for the `T`);
//! - `now`.

use std::fmt;
use std::str::FromStr;

const MS_A_SECOND: i64 = 1_000;
const MS_A_MINUTE: i64 = 60 * MS_A_SECOND;
const MS_AN_HOUR: i64 = 60 * MS_A_MINUTE;
/// Milliseconds in a UTC day.
pub const MS_A_DAY: i64 = 24 * MS_AN_HOUR;

/// What the accepted forms are, for error messages.
pub const ACCEPTED: &str = "a span back from now such as 30m, 24h, 7d or 2w; \
a UTC date such as 2026-12-05; a UTC date and time such as 2026-12-05T13:00 \
or 2026-12-05T13:00:00Z; or now";

/// A point in time as written, resolved against "now" later (so the CLI
/// can parse it before it knows the clock it reports at).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimeSpec {
    /// The current time.
    Now,
    /// This many milliseconds before now.
    Ago(i64),
    /// A UTC calendar day, as days since 1970-01-01.
    Date(i64),
    /// A UTC instant, Unix milliseconds.
    At(i64),
}

/// Which end of the window a [`TimeSpec`] is: a bare date means the start
/// of that day for `since` and its end for `until`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Edge {
    /// The window's first instant (inclusive).
    Since,
    /// The window's end (exclusive).
    Until,
}

impl TimeSpec {
    /// The instant, in Unix milliseconds, at `now_ms`.
    pub fn resolve(self, edge: Edge, now_ms: i64) -> i64 {
        match self {
            TimeSpec::Now => now_ms,
            TimeSpec::Ago(ms) => now_ms.saturating_sub(ms),
            TimeSpec::Date(day) => match edge {
                Edge::Since => day * MS_A_DAY,
                Edge::Until => (day + 1) * MS_A_DAY,
            },
            TimeSpec::At(ms) => ms,
        }
    }
}

/// A `--since` / `--until` value that is none of the accepted forms.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TimeSpecError {
    /// The value as given.
    pub value: String,
    /// What is wrong with it.
    pub problem: String,
}

impl fmt::Display for TimeSpecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:?} is not a time ({}); accepted: {ACCEPTED}",
            self.value, self.problem
        )
    }
}

impl std::error::Error for TimeSpecError {}

impl FromStr for TimeSpec {
    type Err = TimeSpecError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let text = s.trim();
        let fail = |problem: &str| TimeSpecError {
            value: s.to_string(),
            problem: problem.to_string(),
        };
        if text.is_empty() {
            return Err(fail("it is empty"));
        }
        if text.eq_ignore_ascii_case("now") {
            return Ok(TimeSpec::Now);
        }
        if text.as_bytes()[0].is_ascii_digit() && !text.contains('-') {
            return parse_span(text).map(TimeSpec::Ago).map_err(|p| fail(&p));
        }
        parse_date_time(text).map_err(|p| fail(&p))
    }
}

fn parse_span(text: &str) -> Result<i64, String> {
    let unit_at = text
        .find(|c: char| !c.is_ascii_digit())
        .ok_or("a span needs a unit: s, m, h, d or w")?;
    let (number, unit) = text.split_at(unit_at);
    let unit_ms = match unit {
        "s" => MS_A_SECOND,
        "m" => MS_A_MINUTE,
        "h" => MS_AN_HOUR,
        "d" => MS_A_DAY,
        "w" => 7 * MS_A_DAY,
        _ => return Err(format!("unknown unit {unit:?}; use s, m, h, d or w")),
    };
    let n: i64 = number.parse().map_err(|_| "the number is too large")?;
    n.checked_mul(unit_ms)
        .filter(|ms| *ms <= 100_000 * 365 * MS_A_DAY)
        .ok_or_else(|| "the span is too long".to_string())
}

fn parse_date_time(text: &str) -> Result<TimeSpec, String> {
    let (date, time) = match text.find(['T', 't', ' ']) {
        Some(at) => (&text[..at], Some(&text[at + 1..])),
        None => (text, None),
    };
    let day = parse_date(date)?;
    let Some(time) = time else {
        return Ok(TimeSpec::Date(day));
    };
    let time = time.strip_suffix(['Z', 'z']).unwrap_or(time).trim_end();
    if time.contains(['+', '-']) {
        return Err("dates are UTC: write Z or no zone, not an offset".into());
    }
    let parts: Vec<&str> = time.split(':').collect();
    if !(2..=3).contains(&parts.len()) {
        return Err("the time is not HH:MM or HH:MM:SS".into());
    }
    let field = |s: &str, max: i64, name: &str| -> Result<i64, String> {
        if s.len() != 2 || !s.bytes().all(|b| b.is_ascii_digit()) {
            return Err(format!("the {name} is not two digits"));
        }
        let v: i64 = s.parse().map_err(|_| format!("bad {name}"))?;
        if v > max {
            return Err(format!("the {name} is past {max}"));
        }
        Ok(v)
    };
    let hour = field(parts[0], 23, "hour")?;
    let minute = field(parts[1], 59, "minute")?;
    let second = match parts.get(2) {
        Some(s) => field(s, 59, "second")?,
        None => 0,
    };
    Ok(TimeSpec::At(
        day * MS_A_DAY + hour * MS_AN_HOUR + minute * MS_A_MINUTE + second * MS_A_SECOND,
    ))
}

/// `YYYY-MM-DD` as days since 1970-01-01.
fn parse_date(text: &str) -> Result<i64, String> {
    let parts: Vec<&str> = text.split('-').collect();
    let digits = |s: &str, n: usize| s.len() == n && s.bytes().all(|b| b.is_ascii_digit());
    if parts.len() != 3 || !digits(parts[0], 4) || !digits(parts[1], 2) || !digits(parts[2], 2) {
        return Err("the date is not YYYY-MM-DD".into());
    }
    let year: i64 = parts[0].parse().map_err(|_| "bad year")?;
    let month: u32 = parts[1].parse().map_err(|_| "bad month")?;
    let day: u32 = parts[2].parse().map_err(|_| "bad day")?;
    if !(1..=12).contains(&month) {
        return Err(format!("there is no month {month}"));
    }
    if day == 0 || day > days_in_month(year, month) {
        return Err(format!("{year}-{month:02} has no day {day}"));
    }
    Ok(days_from_civil(year, month, day))
}

fn days_in_month(year: i64, month: u32) -> u32 {
    match month {
        2 if (year % 4 == 0 && year % 100 != 0) || year % 400 == 0 => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's
/// algorithm, exact for every year).
pub fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = month as i64;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + day as i64 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The date of a day since 1970-01-01: (year, month, day).
pub fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// The UTC day (days since 1970-01-01) an instant falls on.
pub fn day_of(ms: i64) -> i64 {
    ms.div_euclid(MS_A_DAY)
}

/// A day since 1970-01-01 as `YYYY-MM-DD`.
pub fn date_string(day: i64) -> String {
    let (y, m, d) = civil_from_days(day);
    format!("{y:04}-{m:02}-{d:02}")
}

/// An instant as `YYYY-MM-DDTHH:MM:SSZ` (milliseconds dropped).
pub fn instant_string(ms: i64) -> String {
    let day = day_of(ms);
    let in_day = ms - day * MS_A_DAY;
    format!(
        "{}T{:02}:{:02}:{:02}Z",
        date_string(day),
        in_day / MS_AN_HOUR,
        in_day % MS_AN_HOUR / MS_A_MINUTE,
        in_day % MS_A_MINUTE / MS_A_SECOND
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    // 2026-12-05T13:07:00Z, worked out by hand: 20_792 days from
    // 1970-01-01 to 2026-12-05 (56 years of 365 days = 20_440, plus 14 leap
    // days 1972..=2024, plus 338 days from Jan 1 to Dec 5 in a common year).
    const DEC5: i64 = 20_792;
    const NOW: i64 = DEC5 * 86_400_000 + 13 * 3_600_000 + 7 * 60_000;

    #[test]
    fn spans_count_back_from_now() {
        let since = |s: &str| s.parse::<TimeSpec>().unwrap().resolve(Edge::Since, NOW);
        assert_eq!(since("24h"), NOW - 86_400_000);
        assert_eq!(since("7d"), NOW - 7 * 86_400_000);
        assert_eq!(since("30m"), NOW - 1_800_000);
        assert_eq!(since("2w"), NOW - 14 * 86_400_000);
        assert_eq!(since("now"), NOW);
    }

    #[test]
    fn dates_are_utc_days_and_until_takes_the_whole_day() {
        let spec: TimeSpec = "2026-12-05".parse().unwrap();
        assert_eq!(spec, TimeSpec::Date(DEC5));
        assert_eq!(spec.resolve(Edge::Since, 0), DEC5 * 86_400_000);
        assert_eq!(spec.resolve(Edge::Until, 0), (DEC5 + 1) * 86_400_000);
        let at: TimeSpec = "2026-12-05T13:07Z".parse().unwrap();
        assert_eq!(at.resolve(Edge::Since, 0), NOW);
        let at: TimeSpec = "2026-12-05 13:07:00".parse().unwrap();
        assert_eq!(at, TimeSpec::At(NOW));
        assert_eq!(date_string(DEC5), "2026-12-05");
        assert_eq!(instant_string(NOW), "2026-12-05T13:07:00Z");
        // Leap days and the epoch.
        assert_eq!("1970-01-01".parse::<TimeSpec>().unwrap(), TimeSpec::Date(0));
        assert_eq!(date_string(days_from_civil(2024, 2, 29)), "2024-02-29");
        assert_eq!(civil_from_days(-1), (1969, 12, 31));
    }

    #[test]
    fn bad_inputs_say_what_is_wrong_and_what_is_accepted() {
        for (input, problem) in [
            ("", "empty"),
            ("7", "needs a unit"),
            ("7y", "unknown unit"),
            ("2026-13-01", "no month 13"),
            ("2026-02-29", "no day 29"),
            ("2026-12-05T25:00", "hour is past 23"),
            ("2026-12-05T13:00+02:00", "dates are UTC"),
            ("yesterday", "not YYYY-MM-DD"),
            ("99999999999999999999h", "too large"),
        ] {
            let err = input.parse::<TimeSpec>().unwrap_err().to_string();
            assert!(err.contains(problem), "{input:?}: {err}");
            assert!(err.contains("accepted: a span back from now"), "{err}");
        }
    }
}

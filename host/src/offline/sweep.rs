//! `--sweep LABEL=FROM:TO:STEP`: one label set on every request to each
//! value of a range, and what the routing literature computes from the
//! resulting quality–cost curve (APGR, CPT).

use std::str::FromStr;

use serde::Serialize;

/// Most values one sweep may have.
pub const MAX_POINTS: usize = 1_000;

/// A label and the values it is swept over.
#[derive(Debug, Clone, PartialEq)]
pub struct Sweep {
    /// The label's name (a router reads operator settings under the
    /// reserved `pointsman.` prefix, which clients can never send).
    pub label: String,
    /// The values, as plain decimals (`0.05`, never `5e-2`).
    pub values: Vec<String>,
}

impl FromStr for Sweep {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let usage = "expected LABEL=FROM:TO:STEP, such as pointsman.threshold=0:1:0.05";
        let (label, range) = text.split_once('=').ok_or(usage)?;
        let label = label.trim();
        if label.is_empty() {
            return Err(format!("no label name: {usage}"));
        }
        let parts: Vec<f64> = range
            .split(':')
            .map(|p| p.trim().parse::<f64>())
            .collect::<Result<_, _>>()
            .map_err(|_| format!("{range:?} is not three numbers: {usage}"))?;
        let [from, to, step] = parts[..] else {
            return Err(format!("{range:?} is not three numbers: {usage}"));
        };
        if !(from.is_finite() && to.is_finite() && step.is_finite()) || from < 0.0 {
            return Err(format!(
                "{range:?}: FROM, TO and STEP must be finite, FROM at least 0"
            ));
        }
        if step <= 0.0 || to < from {
            return Err(format!(
                "{range:?}: STEP must be positive and TO at least FROM"
            ));
        }
        // Counted from the ends, with a little slack so that 0:1:0.05 ends at 1.
        let count = ((to - from) / step + 1e-9).floor() as usize + 1;
        if count > MAX_POINTS {
            return Err(format!(
                "{range:?} has {count} values (at most {MAX_POINTS})"
            ));
        }
        let values = (0..count)
            .map(|i| plain_decimal(from + i as f64 * step))
            .collect();
        Ok(Sweep {
            label: label.to_string(),
            values,
        })
    }
}

/// `value` rounded to 10 decimals and written without an exponent.
fn plain_decimal(value: f64) -> String {
    let rounded = (value * 1e10).round() / 1e10;
    // `Display` for f64 never uses an exponent and gives the shortest
    // digits that read back as the same number.
    format!("{rounded}")
}

/// One value of a sweep and how the router did with it.
#[derive(Debug, Clone, Serialize)]
pub struct Point {
    /// The label's value.
    pub value: String,
    /// Share of prompts sent to the strong model.
    pub strong_share: f64,
    /// Quality at that value.
    pub quality: f64,
    /// Performance gap recovered (none when strong and weak score alike).
    pub pgr: Option<f64>,
    /// Prompts whose policy call failed (served the safe route).
    pub failures: usize,
}

/// The curve's summary.
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    /// Average PGR over strong shares 0 to 100%: the area under the PGR
    /// curve, by trapezoids over the sweep's points plus the two ends every
    /// router can reach (0% strong scores the weak model, PGR 0; 100% the
    /// strong one, PGR 1); of points at the same share, the best counts.
    pub apgr: Option<f64>,
    /// The smallest strong share of a sweep point whose PGR is 50% or more.
    pub cpt50: Option<f64>,
    /// The smallest strong share of a sweep point whose PGR is 80% or more.
    pub cpt80: Option<f64>,
}

/// APGR and CPT of a sweep's points.
pub fn summarize(points: &[Point]) -> Summary {
    let cpt = |target: f64| {
        points
            .iter()
            .filter(|p| p.pgr.is_some_and(|g| g >= target - 1e-12))
            .map(|p| p.strong_share)
            .min_by(f64::total_cmp)
    };
    Summary {
        apgr: apgr(points),
        cpt50: cpt(0.5),
        cpt80: cpt(0.8),
    }
}

fn apgr(points: &[Point]) -> Option<f64> {
    let mut curve: Vec<(f64, f64)> = vec![(0.0, 0.0), (1.0, 1.0)];
    for p in points {
        curve.push((p.strong_share, p.pgr?));
    }
    curve.sort_by(|a, b| a.0.total_cmp(&b.0).then(b.1.total_cmp(&a.1)));
    curve.dedup_by(|later, kept| later.0 == kept.0);
    Some(
        curve
            .windows(2)
            .map(|w| (w[1].0 - w[0].0) * (w[0].1 + w[1].1) / 2.0)
            .sum(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_range_ends_at_its_end_in_plain_decimals() {
        let s: Sweep = "pointsman.threshold=0:1:0.05".parse().unwrap();
        assert_eq!(s.label, "pointsman.threshold");
        assert_eq!(s.values.len(), 21);
        assert_eq!(s.values[0], "0");
        assert_eq!(s.values[3], "0.15");
        assert_eq!(s.values[20], "1");
    }

    #[test]
    fn bad_ranges_are_refused() {
        for bad in [
            "x",
            "=0:1:0.1",
            "a=0:1",
            "a=1:0:0.1",
            "a=0:1:0",
            "a=0:1e9:1e-9",
        ] {
            assert!(bad.parse::<Sweep>().is_err(), "{bad}");
        }
    }

    fn point(share: f64, pgr: f64) -> Point {
        Point {
            value: String::new(),
            strong_share: share,
            quality: 0.0,
            pgr: Some(pgr),
            failures: 0,
        }
    }

    #[test]
    fn apgr_is_the_area_with_both_ends() {
        // The random router's line (PGR = share) has area 1/2.
        let s = summarize(&[point(0.5, 0.5)]);
        assert!((s.apgr.unwrap() - 0.5).abs() < 1e-12);
        // A point at (0.2, 0.8): 0.2*0.4 + 0.8*0.9 = 0.8.
        let s = summarize(&[point(0.2, 0.8), point(0.2, 0.1)]);
        assert!((s.apgr.unwrap() - 0.8).abs() < 1e-12);
        assert_eq!(s.cpt50, Some(0.2));
        assert_eq!(s.cpt80, Some(0.2));
        assert_eq!(summarize(&[point(0.3, 0.4)]).cpt50, None);
    }
}

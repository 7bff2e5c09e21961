//! The guards: the candidate compared with the stable arm over the same
//! window, on the seed's metrics, and the verdict that rolls it back.
//!
//! A metric trips only when the candidate is worse by more than its
//! threshold **and** the difference is significant in a one-sided test at
//! the 5% level (z > 1.645), with at least `min_requests` per arm, so ten
//! unlucky requests do not roll a good candidate back:
//! - rates (final errors, failed upstream attempts, escalations, failed
//!   tasks): the two-proportion z-test with a pooled proportion;
//! - means (cost per request, feedback score): Welch's z-test on the
//!   means (the normal approximation of Welch's t, sound at these sample
//!   sizes);
//! - p95 latency, per tier (a plan tier is slower by design): the
//!   Mann–Whitney U test (normal approximation), which asks whether the
//!   candidate's latencies are stochastically larger without assuming a
//!   distribution.
//!
//! A hard floor needs no test: a candidate whose final error rate is above
//! `floor_error_rate` over at least `floor_min_requests` requests is rolled
//! back at once.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::evaluate::WindowCall;
use crate::policy::types::Tier;

/// The one-sided 5% critical value of the standard normal.
pub const Z_CRITICAL: f64 = 1.645;

pub use crate::config::rollouts::Guards;

/// What a guard measures.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "name")]
pub enum Metric {
    /// Requests that ended in an error the client saw.
    ErrorRate,
    /// Upstream attempts that failed (retries hide a failing model from
    /// the error rate).
    AttemptFailureRate,
    /// Tasks that failed.
    TaskFailureRate,
    /// Requests another model than the route's first answered.
    EscalationRate,
    /// The 95th percentile of latency, in one tier.
    P95Latency {
        /// The tier.
        tier: String,
    },
    /// Mean cost per request.
    CostPerRequest,
    /// Mean feedback score (lower is worse).
    FeedbackScore,
    /// The hard floor on the final error rate.
    ErrorFloor,
}

impl Metric {
    /// The metric in words.
    pub fn describe(&self) -> String {
        match self {
            Metric::ErrorRate => "final error rate".into(),
            Metric::AttemptFailureRate => "upstream attempt failure rate".into(),
            Metric::TaskFailureRate => "task failure rate".into(),
            Metric::EscalationRate => "escalation rate".into(),
            Metric::P95Latency { tier } => format!("p95 latency ({tier} tier, ms)"),
            Metric::CostPerRequest => "cost per request (USD)".into(),
            Metric::FeedbackScore => "feedback score".into(),
            Metric::ErrorFloor => "final error rate (hard floor)".into(),
        }
    }

    /// Every label [`Metric::as_str`] gives.
    pub const ALL: [&'static str; 8] = [
        "error_rate",
        "attempt_failure_rate",
        "task_failure_rate",
        "escalation_rate",
        "p95_latency",
        "cost_per_request",
        "feedback_score",
        "error_floor",
    ];

    /// A short label for metrics.
    pub fn as_str(&self) -> &'static str {
        match self {
            Metric::ErrorRate => "error_rate",
            Metric::AttemptFailureRate => "attempt_failure_rate",
            Metric::TaskFailureRate => "task_failure_rate",
            Metric::EscalationRate => "escalation_rate",
            Metric::P95Latency { .. } => "p95_latency",
            Metric::CostPerRequest => "cost_per_request",
            Metric::FeedbackScore => "feedback_score",
            Metric::ErrorFloor => "error_floor",
        }
    }
}

/// Why a candidate was rolled back.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Verdict {
    /// The metric that tripped.
    pub metric: Metric,
    /// The stable arm's value.
    pub stable: f64,
    /// The candidate's value.
    pub candidate: f64,
    /// The stable arm's sample size.
    pub n_stable: u64,
    /// The candidate's sample size.
    pub n_candidate: u64,
    /// The test and its statistic.
    pub detail: String,
}

impl Verdict {
    /// The verdict in a sentence.
    pub fn sentence(&self) -> String {
        format!(
            "{} {:.4} on the candidate against {:.4} on stable ({} vs {} samples; {})",
            self.metric.describe(),
            self.candidate,
            self.stable,
            self.n_candidate,
            self.n_stable,
            self.detail
        )
    }
}

/// One arm's measurements over a window.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ArmStats {
    /// Client requests answered (or not).
    pub requests: u64,
    /// Of those, ended in an error.
    pub errors: u64,
    /// Upstream attempts of every call.
    pub attempts: u64,
    /// Of those, failed.
    pub failed_attempts: u64,
    /// Calls another model answered.
    pub escalations: u64,
    /// Calls with an escalation check (answered calls).
    pub answered: u64,
    /// Latencies of answered requests by tier, milliseconds.
    pub latency_by_tier: BTreeMap<String, Vec<f64>>,
    /// Cost of each request (a task counts its calls), USD.
    pub costs: Vec<f64>,
    /// Tasks that ended.
    pub tasks: u64,
    /// Of those, failed.
    pub failed_tasks: u64,
    /// Feedback scores.
    pub feedback: Vec<f64>,
}

impl ArmStats {
    /// Adds one call (its cost is added per request, with
    /// [`ArmStats::add_cost`]: a plan-tier request is two calls).
    pub fn add_call(&mut self, call: &WindowCall) {
        self.attempts += u64::from(call.attempts);
        self.failed_attempts += u64::from(call.failed_attempts);
        if !call.answer {
            // A planner call of a request, or a task's call: its errors
            // show in the answer or the task's outcome.
            return;
        }
        self.requests += 1;
        if !call.ok {
            self.errors += 1;
        } else {
            self.answered += 1;
            if call.escalated {
                self.escalations += 1;
            }
            let tier = call.tier.unwrap_or(Tier::Direct).as_str();
            let latency = f64::from(call.latency_ms);
            match self.latency_by_tier.get_mut(tier) {
                Some(latencies) => latencies.push(latency),
                None => {
                    self.latency_by_tier.insert(tier.to_string(), vec![latency]);
                }
            }
        }
    }

    /// Adds what one request cost.
    pub fn add_cost(&mut self, usd: f64) {
        self.costs.push(usd);
    }

    /// Adds one ended task and what its calls cost.
    pub fn add_task(&mut self, failed: bool, cost_usd: f64) {
        self.tasks += 1;
        if failed {
            self.failed_tasks += 1;
        }
        self.costs.push(cost_usd);
    }

    fn rate(n: u64, of: u64) -> f64 {
        if of == 0 { 0.0 } else { n as f64 / of as f64 }
    }
}

/// The one-sided two-proportion z statistic of `b` being larger than `a`.
pub fn two_proportion_z(a: u64, n_a: u64, b: u64, n_b: u64) -> f64 {
    if n_a == 0 || n_b == 0 {
        return 0.0;
    }
    let (pa, pb) = (a as f64 / n_a as f64, b as f64 / n_b as f64);
    let pooled = (a + b) as f64 / (n_a + n_b) as f64;
    let se = (pooled * (1.0 - pooled) * (1.0 / n_a as f64 + 1.0 / n_b as f64)).sqrt();
    if se == 0.0 { 0.0 } else { (pb - pa) / se }
}

fn mean_var(xs: &[f64]) -> (f64, f64) {
    let n = xs.len() as f64;
    let mean = xs.iter().sum::<f64>() / n;
    let var = if xs.len() > 1 {
        xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0)
    } else {
        0.0
    };
    (mean, var)
}

/// Welch's z statistic of `b`'s mean being larger than `a`'s.
pub fn welch_z(a: &[f64], b: &[f64]) -> f64 {
    if a.is_empty() || b.is_empty() {
        return 0.0;
    }
    let ((ma, va), (mb, vb)) = (mean_var(a), mean_var(b));
    let se = (va / a.len() as f64 + vb / b.len() as f64).sqrt();
    if se == 0.0 {
        // Two constant samples: a difference is certain.
        return if mb > ma { f64::INFINITY } else { 0.0 };
    }
    (mb - ma) / se
}

/// The Mann–Whitney z statistic of `b` being stochastically larger than
/// `a` (normal approximation, mid-ranks for ties).
pub fn mann_whitney_z(a: &[f64], b: &[f64]) -> f64 {
    let (n1, n2) = (a.len() as f64, b.len() as f64);
    if a.is_empty() || b.is_empty() {
        return 0.0;
    }
    let mut all: Vec<(f64, bool)> = a
        .iter()
        .map(|x| (*x, false))
        .chain(b.iter().map(|x| (*x, true)))
        .collect();
    all.sort_by(|x, y| x.0.total_cmp(&y.0));
    let mut rank_sum_b = 0.0;
    let mut i = 0;
    while i < all.len() {
        let mut j = i;
        while j + 1 < all.len() && all[j + 1].0 == all[i].0 {
            j += 1;
        }
        let mid = (i + j) as f64 / 2.0 + 1.0;
        rank_sum_b += all[i..=j].iter().filter(|x| x.1).count() as f64 * mid;
        i = j + 1;
    }
    let u_b = rank_sum_b - n2 * (n2 + 1.0) / 2.0;
    let mean = n1 * n2 / 2.0;
    let sd = (n1 * n2 * (n1 + n2 + 1.0) / 12.0).sqrt();
    if sd == 0.0 { 0.0 } else { (u_b - mean) / sd }
}

/// The 95th percentile (nearest rank).
pub fn p95(xs: &[f64]) -> f64 {
    if xs.is_empty() {
        return 0.0;
    }
    let mut v = xs.to_vec();
    v.sort_by(f64::total_cmp);
    let rank = ((0.95 * v.len() as f64).ceil() as usize).clamp(1, v.len());
    v[rank - 1]
}

/// Judges the candidate against stable; the first metric that trips, if
/// any. `min` is the least sample per arm for a test.
pub fn judge(
    stable: &ArmStats,
    candidate: &ArmStats,
    guards: &Guards,
    min: u64,
) -> Option<Verdict> {
    let verdict = |metric, s: f64, c: f64, ns: u64, nc: u64, detail: String| Verdict {
        metric,
        stable: s,
        candidate: c,
        n_stable: ns,
        n_candidate: nc,
        detail,
    };
    // The hard floor: no comparison, no test.
    let c_err = ArmStats::rate(candidate.errors, candidate.requests);
    if candidate.requests >= guards.floor_min_requests && c_err > guards.floor_error_rate {
        return Some(verdict(
            Metric::ErrorFloor,
            ArmStats::rate(stable.errors, stable.requests),
            c_err,
            stable.requests,
            candidate.requests,
            format!(
                "above the floor of {:.0}% over at least {} requests",
                guards.floor_error_rate * 100.0,
                guards.floor_min_requests
            ),
        ));
    }
    let worse = |s: f64, c: f64| c > s * (1.0 + guards.max_degradation) && c > s;
    let rates = [
        (
            Metric::ErrorRate,
            (stable.errors, stable.requests),
            (candidate.errors, candidate.requests),
        ),
        (
            Metric::AttemptFailureRate,
            (stable.failed_attempts, stable.attempts),
            (candidate.failed_attempts, candidate.attempts),
        ),
        (
            Metric::EscalationRate,
            (stable.escalations, stable.answered),
            (candidate.escalations, candidate.answered),
        ),
    ];
    if stable.requests >= min && candidate.requests >= min {
        for (metric, (sx, sn), (cx, cn)) in rates {
            let (s, c) = (ArmStats::rate(sx, sn), ArmStats::rate(cx, cn));
            let z = two_proportion_z(sx, sn, cx, cn);
            if worse(s, c) && z > Z_CRITICAL {
                return Some(verdict(
                    metric,
                    s,
                    c,
                    sn,
                    cn,
                    format!("two-proportion z = {z:.2} > {Z_CRITICAL}"),
                ));
            }
        }
        for (tier, c_lat) in &candidate.latency_by_tier {
            let Some(s_lat) = stable.latency_by_tier.get(tier) else {
                continue;
            };
            if (s_lat.len() as u64) < min || (c_lat.len() as u64) < min {
                continue;
            }
            let (s, c) = (p95(s_lat), p95(c_lat));
            let z = mann_whitney_z(s_lat, c_lat);
            if worse(s, c) && c - s > guards.min_latency_increase_ms && z > Z_CRITICAL {
                return Some(verdict(
                    Metric::P95Latency { tier: tier.clone() },
                    s,
                    c,
                    s_lat.len() as u64,
                    c_lat.len() as u64,
                    format!("Mann-Whitney z = {z:.2} > {Z_CRITICAL}"),
                ));
            }
        }
    }
    if stable.costs.len() as u64 >= min && candidate.costs.len() as u64 >= min {
        let (s, c) = (mean_var(&stable.costs).0, mean_var(&candidate.costs).0);
        let z = welch_z(&stable.costs, &candidate.costs);
        if worse(s, c) && z > Z_CRITICAL {
            return Some(verdict(
                Metric::CostPerRequest,
                s,
                c,
                stable.costs.len() as u64,
                candidate.costs.len() as u64,
                format!("Welch z = {z:.2} > {Z_CRITICAL}"),
            ));
        }
    }
    let min_tasks = min.min(guards.floor_min_requests).max(1);
    if stable.tasks >= min_tasks && candidate.tasks >= min_tasks {
        let (s, c) = (
            ArmStats::rate(stable.failed_tasks, stable.tasks),
            ArmStats::rate(candidate.failed_tasks, candidate.tasks),
        );
        let z = two_proportion_z(
            stable.failed_tasks,
            stable.tasks,
            candidate.failed_tasks,
            candidate.tasks,
        );
        if (c - s) * 100.0 > guards.max_task_failure_points && z > Z_CRITICAL {
            return Some(verdict(
                Metric::TaskFailureRate,
                s,
                c,
                stable.tasks,
                candidate.tasks,
                format!("two-proportion z = {z:.2} > {Z_CRITICAL}"),
            ));
        }
    }
    let min_feedback = guards.min_feedback.max(1);
    if stable.feedback.len() as u64 >= min_feedback
        && candidate.feedback.len() as u64 >= min_feedback
    {
        let (s, c) = (
            mean_var(&stable.feedback).0,
            mean_var(&candidate.feedback).0,
        );
        // Lower is worse: test stable's mean being larger.
        let z = welch_z(&candidate.feedback, &stable.feedback);
        if c < s * (1.0 - guards.max_degradation) && z > Z_CRITICAL {
            return Some(verdict(
                Metric::FeedbackScore,
                s,
                c,
                stable.feedback.len() as u64,
                candidate.feedback.len() as u64,
                format!("Welch z = {z:.2} > {Z_CRITICAL}"),
            ));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn arm(requests: u64, errors: u64, attempts: u64, failed: u64) -> ArmStats {
        ArmStats {
            requests,
            errors,
            attempts,
            failed_attempts: failed,
            answered: requests - errors,
            costs: vec![0.01; requests as usize],
            ..ArmStats::default()
        }
    }

    #[test]
    fn every_metric_label_is_exported_from_the_start() {
        let every = [
            Metric::ErrorRate,
            Metric::AttemptFailureRate,
            Metric::TaskFailureRate,
            Metric::EscalationRate,
            Metric::P95Latency {
                tier: "plan".into(),
            },
            Metric::CostPerRequest,
            Metric::FeedbackScore,
            Metric::ErrorFloor,
        ];
        let labels: Vec<&str> = every.iter().map(Metric::as_str).collect();
        assert_eq!(labels, Metric::ALL);
    }

    #[test]
    fn statistics_match_known_values() {
        // 10/100 against 20/100: z = 0.1 / sqrt(0.15 * 0.85 * 0.02) = 1.98.
        assert!((two_proportion_z(10, 100, 20, 100) - 1.980).abs() < 0.01);
        assert_eq!(two_proportion_z(0, 0, 5, 10), 0.0);
        // Fully separated samples of 10 each: U = 100, z = 50 / 13.23 = 3.78.
        let a: Vec<f64> = (0..10).map(f64::from).collect();
        let b: Vec<f64> = (10..20).map(f64::from).collect();
        assert!((mann_whitney_z(&a, &b) - 3.78).abs() < 0.01);
        assert!(mann_whitney_z(&b, &a) < -3.7);
        assert!(mann_whitney_z(&a, &a).abs() < 1e-9);
        assert_eq!(p95(&(1..=100).map(f64::from).collect::<Vec<_>>()), 95.0);
        assert!(welch_z(&[1.0, 1.0], &[2.0, 2.0]).is_infinite());
    }

    #[test]
    fn a_failing_upstream_hidden_by_retries_trips_the_attempt_guard() {
        // Every request succeeds on both arms, but 30% of the candidate's
        // attempts failed and were retried.
        let stable = arm(450, 0, 452, 2);
        let candidate = arm(50, 0, 71, 21);
        let v = judge(&stable, &candidate, &Guards::default(), 50).unwrap();
        assert_eq!(v.metric, Metric::AttemptFailureRate);
        assert_eq!((v.n_stable, v.n_candidate), (452, 71));
        assert!(v.sentence().contains("upstream attempt failure rate"));
    }

    #[test]
    fn small_samples_and_small_differences_do_not_trip() {
        let guards = Guards::default();
        // Below the minimum sample: 3 errors in 10 is not enough to judge.
        assert_eq!(
            judge(&arm(450, 4, 450, 4), &arm(10, 3, 10, 3), &guards, 50),
            None
        );
        // Worse by 10%, within the 20% threshold.
        assert_eq!(
            judge(
                &arm(1000, 100, 1000, 100),
                &arm(1000, 110, 1000, 110),
                &guards,
                50
            ),
            None
        );
        // Worse by 50%, but 3 against 2 is noise.
        assert_eq!(
            judge(&arm(100, 2, 100, 2), &arm(100, 3, 100, 3), &guards, 50),
            None
        );
    }

    #[test]
    fn the_floor_needs_no_test() {
        let v = judge(
            &arm(0, 0, 0, 0),
            &arm(20, 11, 20, 11),
            &Guards::default(),
            50,
        )
        .unwrap();
        assert_eq!(v.metric, Metric::ErrorFloor);
        assert_eq!(
            judge(
                &arm(0, 0, 0, 0),
                &arm(19, 11, 19, 11),
                &Guards::default(),
                50
            ),
            None
        );
    }

    #[test]
    fn slower_candidate_in_one_tier_trips_latency_cheaper_does_not_trip_cost() {
        let mut stable = arm(100, 0, 100, 0);
        let mut candidate = arm(100, 0, 100, 0);
        stable.latency_by_tier.insert(
            "direct".into(),
            (0..100).map(|i| 100.0 + f64::from(i)).collect(),
        );
        candidate.latency_by_tier.insert(
            "direct".into(),
            (0..100).map(|i| 300.0 + f64::from(i)).collect(),
        );
        // A plan tier only the candidate uses is not compared.
        candidate
            .latency_by_tier
            .insert("plan".into(), vec![10_000.0; 100]);
        stable.costs = vec![0.05; 100];
        candidate.costs = vec![0.001; 100];
        let v = judge(&stable, &candidate, &Guards::default(), 50).unwrap();
        assert_eq!(
            v.metric,
            Metric::P95Latency {
                tier: "direct".into()
            }
        );
        candidate.latency_by_tier.insert(
            "direct".into(),
            (0..100).map(|i| 100.0 + f64::from(i)).collect(),
        );
        assert_eq!(judge(&stable, &candidate, &Guards::default(), 50), None);
    }

    #[test]
    fn low_feedback_trips() {
        let mut stable = arm(100, 0, 100, 0);
        let mut candidate = arm(100, 0, 100, 0);
        stable.feedback = [0.9, 1.0, 0.8].repeat(10);
        candidate.feedback = [0.2, 0.4, 0.3].repeat(10);
        let v = judge(&stable, &candidate, &Guards::default(), 50).unwrap();
        assert_eq!(v.metric, Metric::FeedbackScore);
        candidate.feedback.truncate(10);
        assert_eq!(judge(&stable, &candidate, &Guards::default(), 50), None);
    }

    #[test]
    fn task_failures_use_points() {
        let mut stable = arm(0, 0, 0, 0);
        let mut candidate = arm(0, 0, 0, 0);
        for i in 0..100 {
            stable.add_task(i < 10, 0.1);
            candidate.add_task(i < 30, 0.1);
        }
        let v = judge(&stable, &candidate, &Guards::default(), 50).unwrap();
        assert_eq!(v.metric, Metric::TaskFailureRate);
    }
}

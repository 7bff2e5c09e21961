//! `[rollouts]`: how rollouts of a candidate policy behave by default, the
//! guards that roll one back, and rollouts declared in the file.

use serde::{Deserialize, Serialize};

/// `[rollouts]`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RolloutsConfig {
    /// Least time at each step unless a rollout says (`1h`, `30m`, `45s`).
    pub hold: String,
    /// Least candidate requests at a step before the next, and the least
    /// per arm before a guard judges.
    pub min_requests: u64,
    /// How often the guards run, milliseconds.
    pub evaluate_every_ms: u64,
    /// How far back the guards look at most (`6h`); never before the
    /// candidate first served.
    pub window: String,
    /// Most calls a rollout's window holds (each replica keeps a copy in
    /// memory, brought up to date at each evaluation); a busier window
    /// keeps its most recent calls.
    pub max_window_calls: usize,
    /// Shadow decisions in flight at once; past it a request's shadow is
    /// skipped, never waited for.
    pub max_shadow_inflight: usize,
    /// Shadow decisions per second at most (per replica); past it a
    /// request is not shadowed, so a busy replica's diff is of a sample.
    pub max_shadow_per_second: u32,
    /// Rollback thresholds.
    pub guards: Guards,
    /// A router rollout declared in the file (started at start or reload
    /// unless the ledger already holds a rollout of this very candidate).
    pub router: Option<DeclaredRollout>,
    /// A planner rollout declared in the file.
    pub planner: Option<DeclaredRollout>,
}

impl Default for RolloutsConfig {
    fn default() -> Self {
        RolloutsConfig {
            hold: "1h".into(),
            min_requests: 50,
            evaluate_every_ms: 15_000,
            window: "6h".into(),
            max_window_calls: 200_000,
            max_shadow_inflight: 64,
            max_shadow_per_second: 200,
            guards: Guards::default(),
            router: None,
            planner: None,
        }
    }
}

/// `[rollouts.router]` / `[rollouts.planner]`: a rollout kept in the file.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeclaredRollout {
    /// The candidate module.
    pub candidate: String,
    /// Candidate shares in percent (default 10, 50, 95).
    #[serde(default)]
    pub steps: Option<Vec<u8>>,
    /// Least time at a step.
    #[serde(default)]
    pub hold: Option<String>,
    /// Least candidate requests at a step.
    #[serde(default)]
    pub min_requests: Option<u64>,
    /// Start in shadow mode.
    #[serde(default)]
    pub shadow: bool,
}

/// Rollback thresholds (`[rollouts.guards]`, or per rollout).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Guards {
    /// Roll back when a metric is worse by more than this fraction
    /// (0.2: 20%, the seed's threshold).
    pub max_degradation: f64,
    /// Roll back when the task failure rate is worse by more than this
    /// many percentage points.
    pub max_task_failure_points: f64,
    /// Roll back at once above this final error rate …
    pub floor_error_rate: f64,
    /// … over at least this many candidate requests.
    pub floor_min_requests: u64,
    /// Feedback judges only with at least this many scores per arm.
    pub min_feedback: u64,
    /// A p95 latency is worse only when it is also this many milliseconds
    /// slower: 2 ms against 1 ms is "100% worse" and means nothing.
    pub min_latency_increase_ms: f64,
}

impl Default for Guards {
    fn default() -> Self {
        Guards {
            max_degradation: 0.2,
            max_task_failure_points: 5.0,
            floor_error_rate: 0.5,
            floor_min_requests: 20,
            min_feedback: 20,
            min_latency_increase_ms: 50.0,
        }
    }
}

impl Guards {
    /// Checks the thresholds are usable.
    pub fn check(&self) -> Result<(), String> {
        if !(self.max_degradation.is_finite() && self.max_degradation > 0.0) {
            return Err("guards.max_degradation must be above 0 (0.2 is 20%)".into());
        }
        if !(self.max_task_failure_points.is_finite() && self.max_task_failure_points > 0.0) {
            return Err("guards.max_task_failure_points must be above 0".into());
        }
        if !(self.floor_error_rate > 0.0 && self.floor_error_rate <= 1.0) {
            return Err("guards.floor_error_rate must be in (0, 1]".into());
        }
        Ok(())
    }
}

/// Parses `1h`, `30m`, `45s`, `500ms`, `2d` or plain seconds, into
/// milliseconds.
pub fn parse_duration_ms(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let (number, unit) = match s.find(|c: char| !c.is_ascii_digit() && c != '.') {
        Some(i) => s.split_at(i),
        None => (s, "s"),
    };
    let value: f64 = number
        .parse()
        .map_err(|_| format!("{s:?} is not a duration (e.g. 1h, 30m, 45s, 500ms)"))?;
    let per_unit = match unit {
        "ms" => 1.0,
        "s" => 1e3,
        "m" => 60e3,
        "h" => 3600e3,
        "d" => 86_400e3,
        _ => return Err(format!("{s:?}: unknown unit {unit:?} (ms, s, m, h, d)")),
    };
    let ms = value * per_unit;
    if !ms.is_finite() || ms > 365.0 * 86_400e3 {
        return Err(format!("{s:?} is longer than a year"));
    }
    Ok(ms as u64)
}

/// Checks rollout steps: at least one, strictly increasing, each 1 to 100.
pub fn check_steps(steps: &[u8]) -> Result<(), String> {
    if steps.is_empty() {
        return Err("steps: give at least one share".into());
    }
    if let Some(bad) = steps.iter().find(|s| **s == 0 || **s > 100) {
        return Err(format!("steps: {bad} is not a share from 1 to 100 percent"));
    }
    if steps.windows(2).any(|w| w[0] >= w[1]) {
        return Err(format!("steps: {steps:?} do not strictly increase"));
    }
    Ok(())
}

impl RolloutsConfig {
    /// Checks every value, naming the key of the first bad one.
    pub fn validate(&self) -> Result<(), String> {
        parse_duration_ms(&self.hold).map_err(|e| format!("rollouts.hold: {e}"))?;
        if parse_duration_ms(&self.window).map_err(|e| format!("rollouts.window: {e}"))? < 60_000 {
            return Err("rollouts.window: at least 1m".into());
        }
        self.guards.check().map_err(|e| format!("rollouts.{e}"))?;
        for (key, zero) in [
            ("evaluate_every_ms", self.evaluate_every_ms == 0),
            ("max_window_calls", self.max_window_calls == 0),
            ("max_shadow_per_second", self.max_shadow_per_second == 0),
        ] {
            if zero {
                return Err(format!("rollouts.{key} must be above 0"));
            }
        }
        for (key, declared) in [("router", &self.router), ("planner", &self.planner)] {
            let Some(d) = declared else { continue };
            if let Some(steps) = &d.steps {
                check_steps(steps).map_err(|e| format!("rollouts.{key}.{e}"))?;
            }
            if let Some(hold) = &d.hold {
                parse_duration_ms(hold).map_err(|e| format!("rollouts.{key}.hold: {e}"))?;
            }
            if d.shadow && key == "planner" {
                return Err("rollouts.planner.shadow: shadow mode is for routers".into());
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_zero_bound_is_refused_by_its_name() {
        let mut config = RolloutsConfig::default();
        assert_eq!(config.validate(), Ok(()));
        config.max_shadow_per_second = 0;
        assert_eq!(
            config.validate(),
            Err("rollouts.max_shadow_per_second must be above 0".into())
        );
    }
}

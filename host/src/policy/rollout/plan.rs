//! A rollout's state and its transitions, as pure functions of the time,
//! the modules loaded here and the guards' verdict: the controller
//! ([`super::Rollouts`]) persists what these return.

use serde::{Deserialize, Serialize};

use super::guard::{Guards, Verdict};
use crate::policy::World;

/// The steps of the seed's plan: 10%, then 50/50, then 95% with 5% on the
/// stable policy as a control.
pub const DEFAULT_STEPS: [u8; 3] = [10, 50, 95];

/// Events a rollout keeps in its history; older ones are dropped.
pub const MAX_HISTORY: usize = 100;

/// A module pinned by name and content hash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pin {
    /// Module name (file stem or built-in name).
    pub name: String,
    /// SHA-256 of its bytes, hex.
    pub hash: String,
}

impl Pin {
    /// `name@hash12`, as decisions and ledger rows name a module.
    pub fn id(&self) -> String {
        format!("{}@{}", self.name, &self.hash[..self.hash.len().min(12)])
    }
}

/// Where a rollout stands.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "kebab-case")]
pub enum Phase {
    /// The candidate decides every request next to the stable policy; its
    /// decisions are recorded, none is served.
    Shadow,
    /// The candidate serves its step's share.
    Running,
    /// A pinned module's file changed (or went): the stable policy serves
    /// everything until both pinned versions are loaded again.
    Paused {
        /// What changed.
        reason: String,
        /// Whether it was in shadow mode (it resumes there).
        shadow: bool,
    },
    /// A guard tripped: the candidate's share is 0.
    RolledBack {
        /// The metric, both arms' values and sample sizes.
        verdict: Verdict,
    },
    /// Stopped by an operator: the stable policy serves everything.
    Aborted,
    /// The candidate serves everything: it replaced the stable policy.
    Promoted,
}

impl Phase {
    /// The phase's name, as `status` and metrics show it.
    pub fn as_str(&self) -> &'static str {
        match self {
            Phase::Shadow => "shadow",
            Phase::Running => "running",
            Phase::Paused { .. } => "paused",
            Phase::RolledBack { .. } => "rolled-back",
            Phase::Aborted => "aborted",
            Phase::Promoted => "promoted",
        }
    }

    /// Whether the rollout has ended (a new one may start).
    pub fn is_final(&self) -> bool {
        matches!(
            self,
            Phase::RolledBack { .. } | Phase::Aborted | Phase::Promoted
        )
    }
}

/// Something that happened to a rollout, for `status` and the audit trail.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// When, Unix milliseconds.
    pub at_ms: i64,
    /// What happened, in a sentence.
    pub what: String,
}

/// What an operator asks for when starting a rollout.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Spec {
    /// `router` or `planner`.
    pub world: World,
    /// The candidate module's name.
    pub candidate: String,
    /// Candidate shares in percent, strictly increasing, each 1 to 100.
    #[serde(default = "default_steps")]
    pub steps: Vec<u8>,
    /// Least time at each step, e.g. `1h`, `30m`, `500ms`.
    #[serde(default)]
    pub hold: Option<String>,
    /// Least candidate requests at a step before the next one, and the
    /// least per arm before a guard may judge.
    #[serde(default)]
    pub min_requests: Option<u64>,
    /// Start in shadow mode (routers only).
    #[serde(default)]
    pub shadow: bool,
    /// Guard thresholds; unset ones keep `[rollouts]`'s.
    #[serde(default)]
    pub guards: Option<Guards>,
}

impl Spec {
    /// The spec a `[rollouts.router]` or `[rollouts.planner]` declares.
    pub fn declared(world: World, d: &crate::config::rollouts::DeclaredRollout) -> Spec {
        Spec {
            world,
            candidate: d.candidate.clone(),
            steps: d.steps.clone().unwrap_or_else(default_steps),
            hold: d.hold.clone(),
            min_requests: d.min_requests,
            shadow: d.shadow,
            guards: None,
        }
    }
}

fn default_steps() -> Vec<u8> {
    DEFAULT_STEPS.to_vec()
}

/// A rollout: the stable and candidate modules, the steps, where it is.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Rollout {
    /// `r` and the start time in Unix milliseconds: unique per store.
    pub id: String,
    /// Which policy it replaces.
    pub world: World,
    /// The policy serving before it.
    pub stable: Pin,
    /// The policy rolled out.
    pub candidate: Pin,
    /// Candidate shares in percent.
    pub steps: Vec<u8>,
    /// The current step (index into `steps`).
    pub step: usize,
    /// Least time at a step, milliseconds.
    pub hold_ms: u64,
    /// Least candidate requests at a step, and per arm before judging.
    pub min_requests: u64,
    /// Rollback thresholds.
    pub guards: Guards,
    /// Where it stands.
    pub phase: Phase,
    /// Started, Unix milliseconds.
    pub started_ms: i64,
    /// When the candidate first served (the guards' window starts here).
    pub running_since_ms: Option<i64>,
    /// When the current step (or phase) began.
    pub step_since_ms: i64,
    /// What happened, oldest first.
    pub history: Vec<Event>,
    /// Bumped on every change: replicas compare it.
    pub version: u64,
}

/// Why a rollout request is refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Refused {
    /// The request itself is wrong (a 400).
    #[error("{0}")]
    Invalid(String),
    /// It conflicts with the current state (a 409).
    #[error("{0}")]
    Conflict(String),
    /// There is no rollout to act on (a 404).
    #[error("{0}")]
    NotFound(String),
}

pub use crate::config::rollouts::parse_duration_ms;

/// Checks steps: at least one, strictly increasing, each 1 to 100.
pub fn check_steps(steps: &[u8]) -> Result<(), Refused> {
    crate::config::rollouts::check_steps(steps).map_err(Refused::Invalid)
}

impl Rollout {
    /// A new rollout of `spec`, from `stable` to `candidate`, at `now_ms`.
    pub fn new(
        spec: &Spec,
        stable: Pin,
        candidate: Pin,
        defaults: &super::Defaults,
        by: &str,
        now_ms: i64,
    ) -> Result<Rollout, Refused> {
        check_steps(&spec.steps)?;
        if spec.shadow && spec.world == World::Planner {
            return Err(Refused::Invalid(
                "shadow mode is for routers: a planner's plan is made by a model call, which a shadow cannot make for free".into(),
            ));
        }
        if stable.name == candidate.name && stable.hash == candidate.hash {
            return Err(Refused::Invalid(format!(
                "the candidate {} is the serving {} itself",
                candidate.id(),
                spec.world
            )));
        }
        let hold_ms = match &spec.hold {
            Some(h) => parse_duration_ms(h).map_err(Refused::Invalid)?,
            None => defaults.hold_ms,
        };
        let guards = spec
            .guards
            .clone()
            .unwrap_or_else(|| defaults.guards.clone());
        guards.check().map_err(Refused::Invalid)?;
        let phase = if spec.shadow {
            Phase::Shadow
        } else {
            Phase::Running
        };
        let mut rollout = Rollout {
            id: format!("r{now_ms}"),
            world: spec.world,
            stable,
            candidate,
            steps: spec.steps.clone(),
            step: 0,
            hold_ms,
            min_requests: spec.min_requests.unwrap_or(defaults.min_requests).max(1),
            guards,
            running_since_ms: (phase == Phase::Running).then_some(now_ms),
            phase,
            started_ms: now_ms,
            step_since_ms: now_ms,
            history: Vec::new(),
            version: 1,
        };
        let what = match rollout.phase {
            Phase::Shadow => format!(
                "started by {by}: {} shadows {}",
                rollout.candidate.id(),
                rollout.stable.id()
            ),
            _ => format!(
                "started by {by}: {} serves {}% next to {}",
                rollout.candidate.id(),
                rollout.steps[0],
                rollout.stable.id()
            ),
        };
        rollout.log(now_ms, what);
        Ok(rollout)
    }

    /// The candidate's share now, in basis points (0 to 10,000).
    pub fn candidate_share_bp(&self) -> u32 {
        match self.phase {
            Phase::Running => u32::from(self.steps[self.step]) * 100,
            Phase::Promoted => 10_000,
            _ => 0,
        }
    }

    /// The candidate's share at the current step, in percent.
    pub fn current_step_percent(&self) -> u8 {
        self.steps[self.step.min(self.steps.len() - 1)]
    }

    /// Whether this is the last step (the stable arm is the control).
    pub fn at_last_step(&self) -> bool {
        self.step + 1 >= self.steps.len()
    }

    /// The label calls record for `arm` of this rollout.
    pub fn arm_label(&self, arm: super::Arm) -> String {
        format!("{}/{}", self.id, arm.as_str())
    }

    fn log(&mut self, at_ms: i64, what: String) {
        tracing::info!(
            target: "pointsman::audit",
            rollout = %self.id,
            world = %self.world,
            "{what}"
        );
        self.history.push(Event { at_ms, what });
        if self.history.len() > MAX_HISTORY {
            let excess = self.history.len() - MAX_HISTORY;
            self.history.drain(..excess);
        }
    }

    fn changed(&mut self, at_ms: i64, what: String) {
        self.version += 1;
        self.log(at_ms, what);
    }

    /// Operator's `promote`: out of shadow to the first step; from a step
    /// to the next; at the last step, the candidate replaces the stable
    /// policy.
    pub fn promote(&mut self, by: &str, now_ms: i64) -> Result<(), Refused> {
        match &self.phase {
            Phase::Shadow => {
                self.phase = Phase::Running;
                self.running_since_ms = Some(now_ms);
                self.step = 0;
                self.step_since_ms = now_ms;
                let what = format!("promoted by {by}: out of shadow to {}%", self.steps[0]);
                self.changed(now_ms, what);
            }
            Phase::Running if !self.at_last_step() => {
                self.step += 1;
                self.step_since_ms = now_ms;
                let what = format!("promoted by {by} to {}%", self.steps[self.step]);
                self.changed(now_ms, what);
            }
            Phase::Running => {
                self.phase = Phase::Promoted;
                self.step_since_ms = now_ms;
                let what = format!(
                    "promoted by {by}: {} replaces {}",
                    self.candidate.id(),
                    self.stable.id()
                );
                self.changed(now_ms, what);
            }
            other => {
                return Err(Refused::Conflict(format!(
                    "rollout {} is {}: there is nothing to promote",
                    self.id,
                    other.as_str()
                )));
            }
        }
        Ok(())
    }

    /// Operator's `abort`: the stable policy serves everything.
    pub fn abort(&mut self, by: &str, now_ms: i64) -> Result<(), Refused> {
        if self.phase.is_final() {
            return Err(Refused::Conflict(format!(
                "rollout {} is already {}",
                self.id,
                self.phase.as_str()
            )));
        }
        self.phase = Phase::Aborted;
        self.step_since_ms = now_ms;
        self.changed(now_ms, format!("aborted by {by}"));
        Ok(())
    }

    /// Pauses when a pinned module is not the one loaded here, resumes when
    /// both are again. `loaded` gives the hash loaded under a name.
    /// Returns whether anything changed.
    pub fn check_pins(&mut self, loaded: impl Fn(&str) -> Option<String>, now_ms: i64) -> bool {
        let mismatch =
            [&self.stable, &self.candidate]
                .into_iter()
                .find_map(|pin| match loaded(&pin.name) {
                    Some(hash) if hash == pin.hash => None,
                    Some(hash) => Some(format!(
                        "{} changed: {} is loaded, {} is pinned",
                        pin.name,
                        &hash[..hash.len().min(12)],
                        &pin.hash[..pin.hash.len().min(12)]
                    )),
                    None => Some(format!("{} is not loaded", pin.name)),
                });
        match (&self.phase, mismatch) {
            (Phase::Shadow | Phase::Running, Some(reason)) => {
                let shadow = self.phase == Phase::Shadow;
                self.phase = Phase::Paused {
                    reason: reason.clone(),
                    shadow,
                };
                self.changed(now_ms, format!("paused: {reason}"));
                true
            }
            (Phase::Paused { shadow, .. }, None) => {
                self.phase = if *shadow {
                    Phase::Shadow
                } else {
                    Phase::Running
                };
                // The step's hold starts again: the paused time served
                // nothing of the candidate.
                self.step_since_ms = now_ms;
                self.changed(
                    now_ms,
                    "resumed: both pinned modules are loaded again".into(),
                );
                true
            }
            _ => false,
        }
    }

    /// One evaluation while running: a verdict rolls back; otherwise, past
    /// the hold with enough candidate requests at this step, the next step.
    /// Returns whether anything changed.
    pub fn evaluate(
        &mut self,
        verdict: Option<Verdict>,
        candidate_requests_this_step: u64,
        now_ms: i64,
    ) -> bool {
        if self.phase != Phase::Running {
            return false;
        }
        if let Some(verdict) = verdict {
            let what = format!("rolled back: {}", verdict.sentence());
            self.phase = Phase::RolledBack { verdict };
            self.step_since_ms = now_ms;
            self.changed(now_ms, what);
            return true;
        }
        let held = now_ms.saturating_sub(self.step_since_ms) >= self.hold_ms as i64;
        if !self.at_last_step() && held && candidate_requests_this_step >= self.min_requests {
            self.step += 1;
            self.step_since_ms = now_ms;
            let what = format!(
                "step {} of {}: the candidate serves {}%",
                self.step + 1,
                self.steps.len(),
                self.steps[self.step]
            );
            self.changed(now_ms, what);
            return true;
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::rollout::Defaults;

    fn pin(name: &str, hash: &str) -> Pin {
        Pin {
            name: name.into(),
            hash: hash.repeat(64 / hash.len()),
        }
    }

    fn spec(shadow: bool) -> Spec {
        Spec {
            world: World::Router,
            candidate: "seed-matrix".into(),
            steps: vec![10, 50, 95],
            hold: Some("1s".into()),
            min_requests: Some(5),
            shadow,
            guards: None,
        }
    }

    fn rollout(shadow: bool) -> Rollout {
        Rollout::new(
            &spec(shadow),
            pin("premium-only", "a"),
            pin("seed-matrix", "b"),
            &Defaults::default(),
            "test",
            1_000,
        )
        .unwrap()
    }

    #[test]
    fn durations_parse() {
        assert_eq!(parse_duration_ms("1h"), Ok(3_600_000));
        assert_eq!(parse_duration_ms("30m"), Ok(1_800_000));
        assert_eq!(parse_duration_ms("500ms"), Ok(500));
        assert_eq!(parse_duration_ms("2"), Ok(2_000));
        assert!(parse_duration_ms("soon").is_err());
        assert!(parse_duration_ms("5y").is_err());
    }

    #[test]
    fn steps_must_increase_within_1_to_100() {
        assert!(check_steps(&[10, 50, 95]).is_ok());
        assert!(check_steps(&[]).is_err());
        assert!(check_steps(&[50, 10]).is_err());
        assert!(check_steps(&[10, 10]).is_err());
        assert!(check_steps(&[0, 10]).is_err());
        assert!(check_steps(&[10, 101]).is_err());
    }

    #[test]
    fn a_planner_cannot_shadow_and_a_module_cannot_replace_itself() {
        let mut s = spec(true);
        s.world = World::Planner;
        let d = Defaults::default();
        assert!(Rollout::new(&s, pin("p", "a"), pin("q", "b"), &d, "test", 0).is_err());
        assert!(Rollout::new(&spec(false), pin("x", "a"), pin("x", "a"), &d, "test", 0).is_err());
    }

    #[test]
    fn steps_advance_after_the_hold_with_enough_requests() {
        let mut r = rollout(false);
        assert_eq!(r.candidate_share_bp(), 1_000);
        assert!(!r.evaluate(None, 100, 1_500), "the hold is not over");
        assert!(!r.evaluate(None, 4, 2_500), "too few candidate requests");
        assert!(r.evaluate(None, 5, 2_500));
        assert_eq!(r.candidate_share_bp(), 5_000);
        assert!(r.evaluate(None, 5, 3_600));
        assert_eq!(r.candidate_share_bp(), 9_500);
        assert!(!r.evaluate(None, 500, 99_000), "the last step holds");
        assert!(r.at_last_step());
        r.promote("admin", 100_000).unwrap();
        assert_eq!(r.phase, Phase::Promoted);
        assert_eq!(r.candidate_share_bp(), 10_000);
        assert!(r.promote("admin", 100_001).is_err());
        assert!(r.abort("admin", 100_001).is_err());
    }

    #[test]
    fn shadow_serves_nothing_until_promoted() {
        let mut r = rollout(true);
        assert_eq!(r.candidate_share_bp(), 0);
        assert_eq!(r.running_since_ms, None);
        assert!(!r.evaluate(None, 1_000, 1_000_000));
        r.promote("admin", 5_000).unwrap();
        assert_eq!(r.candidate_share_bp(), 1_000);
        assert_eq!(r.running_since_ms, Some(5_000));
    }

    #[test]
    fn a_changed_module_pauses_and_its_return_resumes() {
        let mut r = rollout(false);
        let stable = r.stable.hash.clone();
        let candidate = r.candidate.hash.clone();
        let loaded = |c: Option<String>| {
            let stable = stable.clone();
            move |name: &str| {
                if name == "premium-only" {
                    Some(stable.clone())
                } else {
                    c.clone()
                }
            }
        };
        assert!(!r.check_pins(loaded(Some(candidate.clone())), 2_000));
        assert!(r.check_pins(loaded(Some("c".repeat(64))), 2_000));
        assert_eq!(r.phase.as_str(), "paused");
        assert_eq!(r.candidate_share_bp(), 0);
        assert!(
            r.history
                .last()
                .unwrap()
                .what
                .contains("seed-matrix changed")
        );
        assert!(r.check_pins(loaded(Some(candidate)), 3_000));
        assert_eq!(r.phase, Phase::Running);
        assert_eq!(r.step_since_ms, 3_000);
        assert!(r.check_pins(loaded(None), 4_000));
        assert!(r.history.last().unwrap().what.contains("not loaded"));
    }

    #[test]
    fn a_verdict_rolls_back_and_ends_it() {
        let mut r = rollout(false);
        let verdict = Verdict {
            metric: super::super::guard::Metric::ErrorRate,
            stable: 0.01,
            candidate: 0.3,
            n_stable: 400,
            n_candidate: 60,
            detail: "z = 9.1".into(),
        };
        assert!(r.evaluate(Some(verdict), 0, 1_100));
        assert_eq!(r.candidate_share_bp(), 0);
        assert!(r.phase.is_final());
        assert!(r.history.last().unwrap().what.contains("final error rate"));
        assert!(r.abort("admin", 2_000).is_err());
    }
}

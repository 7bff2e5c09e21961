//! Safe policy changes: a candidate router or planner next to the stable
//! one, in shadow (decides, is recorded, serves nothing) or on a growing
//! share of traffic (the seed's 10% → 50% → 95%), watched by guards that
//! roll it back when it does worse.
//!
//! - [`plan`]: a rollout's state and transitions (pure).
//! - [`guard`]: the metrics, the statistical tests, the verdict.
//! - [`assign`]: which arm a request or task is on (sticky by hash).
//! - [`evaluate`]: reading an arm's measurements from the ledger.
//! - [`diff`]: what a shadow candidate would have changed.
//! - [`rate`]: how many shadow decisions a second.
//!
//! State lives in the ledger store's `rollouts` table (key `router` or
//! `planner`, the rollout as JSON), written by compare-and-set on the
//! stored text: replicas sharing a PostgreSQL ledger run the same rollout,
//! each re-reading it at every evaluation, and one of two replicas that
//! evaluate at once wins while the other re-reads. A restarted daemon
//! reads it back, so the same step serves and (the hash being stable) the
//! same sessions are on the same arm.

pub mod assign;
pub mod diff;
pub mod evaluate;
pub mod guard;
pub mod plan;
pub mod rate;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::{ArcSwap, ArcSwapOption};
use serde::Serialize;

pub use assign::{Arm, bucket};
pub use guard::{Guards, Metric, Verdict};
pub use plan::{Phase, Pin, Refused, Rollout, Spec};

use super::{Registry, World};
use crate::ledger::Ledger;

/// How rollouts behave unless a rollout says otherwise (`[rollouts]`).
#[derive(Debug, Clone, PartialEq)]
pub struct Defaults {
    /// Least time at a step.
    pub hold_ms: u64,
    /// Least candidate requests at a step, and per arm before a guard
    /// judges.
    pub min_requests: u64,
    /// Rollback thresholds.
    pub guards: Guards,
    /// How often the guards run.
    pub evaluate_every: Duration,
    /// How far back the guards look (at most; never before the candidate
    /// first served).
    pub window_ms: u64,
    /// Most calls one evaluation reads; past it the window is shortened.
    pub max_window_calls: usize,
    /// Shadow decisions in flight at once; past it a request's shadow is
    /// skipped (and counted), never waited for.
    pub max_shadow_inflight: usize,
    /// Shadow decisions per second at most; past it a request is not
    /// shadowed (see [`rate`]).
    pub max_shadow_per_second: u32,
}

impl Default for Defaults {
    fn default() -> Self {
        Defaults {
            hold_ms: 3_600_000,
            min_requests: 50,
            guards: Guards::default(),
            evaluate_every: Duration::from_secs(15),
            window_ms: 6 * 3_600_000,
            max_window_calls: 200_000,
            max_shadow_inflight: 64,
            max_shadow_per_second: 200,
        }
    }
}

impl Defaults {
    /// The defaults `[rollouts]` sets (validated at config load).
    pub fn from_config(config: &crate::config::rollouts::RolloutsConfig) -> Defaults {
        Defaults {
            hold_ms: plan::parse_duration_ms(&config.hold).unwrap_or(3_600_000),
            min_requests: config.min_requests.max(1),
            guards: config.guards.clone(),
            evaluate_every: Duration::from_millis(config.evaluate_every_ms.max(1)),
            window_ms: plan::parse_duration_ms(&config.window).unwrap_or(6 * 3_600_000),
            max_window_calls: config.max_window_calls.max(1),
            max_shadow_inflight: config.max_shadow_inflight,
            max_shadow_per_second: config.max_shadow_per_second,
        }
    }
}

/// Which module serves a decision, and under which arm.
#[derive(Debug, Clone)]
pub struct Choice {
    /// The module to ask.
    pub module: String,
    /// The hash it must have (a pinned rollout module).
    pub pinned: Option<String>,
    /// The stable module, asked when the pinned candidate is not loaded
    /// here (the request then serves on the stable arm).
    pub fallback: Option<(String, String)>,
    /// The arm label calls record.
    pub arm: Option<String>,
    /// The candidate to ask in shadow (routers only).
    pub shadow: Option<Pin>,
}

/// Why a request in shadow mode was not shadowed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ShadowSkip {
    /// `max_shadow_per_second` were made this second.
    Rate,
    /// `max_shadow_inflight` are in flight.
    Busy,
    /// The pinned candidate is not loaded on this replica.
    NotLoaded,
}

impl ShadowSkip {
    /// The metric's `reason` label.
    pub fn as_str(self) -> &'static str {
        match self {
            ShadowSkip::Rate => "rate",
            ShadowSkip::Busy => "busy",
            ShadowSkip::NotLoaded => "not-loaded",
        }
    }
}

/// Why an operator's rollout command failed.
#[derive(Debug, thiserror::Error)]
pub enum RolloutError {
    /// Refused: bad input or a state conflict; nothing changed.
    #[error(transparent)]
    Refused(#[from] Refused),
    /// The ledger store failed; nothing changed.
    #[error("the rollout state could not be read or written: {0}")]
    Store(String),
}

/// The rollouts of one daemon, shared by its reloads.
pub struct Rollouts {
    ledger: Ledger,
    defaults: ArcSwap<Defaults>,
    registry: ArcSwapOption<Registry>,
    router: ArcSwapOption<Rollout>,
    planner: ArcSwapOption<Rollout>,
    /// The stored text each world's rollout was read from or written as:
    /// the compare-and-set's expected value.
    stored: Mutex<HashMap<World, String>>,
    /// Serialises this daemon's writes (another replica's are caught by
    /// the compare-and-set).
    writing: tokio::sync::Mutex<()>,
    /// Shadow decisions in flight; replaced when a reload changes
    /// `max_shadow_inflight` (permits of the old one run out by themselves).
    shadows: ArcSwap<tokio::sync::Semaphore>,
    /// Shadow decisions per second.
    shadow_rate: rate::ShadowRate,
    /// Each running rollout's window, kept up to date by the evaluations.
    windows: tokio::sync::Mutex<HashMap<World, evaluate::Mirror>>,
}

impl std::fmt::Debug for Rollouts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Rollouts").finish_non_exhaustive()
    }
}

fn key(world: World) -> &'static str {
    match world {
        World::Router => "router",
        World::Planner => "planner",
    }
}

impl Rollouts {
    /// The rollouts on record in `ledger`.
    pub async fn open(ledger: Ledger, defaults: Defaults) -> Result<Arc<Rollouts>, RolloutError> {
        let rollouts = Arc::new(Rollouts {
            ledger,
            shadows: ArcSwap::from_pointee(tokio::sync::Semaphore::new(
                defaults.max_shadow_inflight,
            )),
            shadow_rate: rate::ShadowRate::new(defaults.max_shadow_per_second),
            defaults: ArcSwap::from_pointee(defaults),
            registry: ArcSwapOption::empty(),
            router: ArcSwapOption::empty(),
            planner: ArcSwapOption::empty(),
            stored: Mutex::default(),
            writing: tokio::sync::Mutex::new(()),
            windows: tokio::sync::Mutex::default(),
        });
        for world in [World::Router, World::Planner] {
            rollouts.reread(world).await?;
            // Export every rollout series from the start, for dashboards
            // and alerts.
            match rollouts.current(world) {
                Some(r) => crate::metrics::rollout_state(
                    key(world),
                    r.phase.as_str(),
                    r.candidate_share_bp(),
                ),
                None => crate::metrics::rollout_state(key(world), "none", 0),
            }
            for metric in guard::Metric::ALL {
                crate::metrics::rollout_rollback_series(key(world), metric);
            }
        }
        Ok(rollouts)
    }

    /// New defaults (a config reload); running rollouts keep their own.
    pub fn set_defaults(&self, defaults: Defaults) {
        if defaults.max_shadow_inflight != self.defaults().max_shadow_inflight {
            self.shadows.store(Arc::new(tokio::sync::Semaphore::new(
                defaults.max_shadow_inflight,
            )));
        }
        self.shadow_rate.set(defaults.max_shadow_per_second);
        self.defaults.store(Arc::new(defaults));
    }

    /// The defaults in force.
    pub fn defaults(&self) -> Arc<Defaults> {
        self.defaults.load_full()
    }

    /// The registry whose modules rollouts pin (the latest policies').
    pub fn use_registry(&self, registry: Arc<Registry>) {
        self.registry.store(Some(registry));
    }

    fn slot(&self, world: World) -> &ArcSwapOption<Rollout> {
        match world {
            World::Router => &self.router,
            World::Planner => &self.planner,
        }
    }

    /// The rollout of `world` on record (running or ended).
    pub fn current(&self, world: World) -> Option<Arc<Rollout>> {
        self.slot(world).load_full()
    }

    /// The module serving `world` when `configured` is the configured one
    /// and no rollout is running: a promoted candidate replaces the stable
    /// module it was rolled out against, for as long as the configuration
    /// still names that stable module.
    pub fn effective(&self, world: World, configured: &str) -> String {
        match self.current(world) {
            Some(r) if r.phase == Phase::Promoted && r.stable.name == configured => {
                r.candidate.name.clone()
            }
            Some(r) if !r.phase.is_final() => r.stable.name.clone(),
            _ => configured.to_string(),
        }
    }

    /// Which module decides for `key` (a session, client, task or request
    /// id), on which arm. The hot path: an atomic load, and a SHA-256 of
    /// the key only while a rollout runs.
    pub fn choose(&self, world: World, configured: &str, key: &str) -> Choice {
        let plain = |module: String| Choice {
            module,
            pinned: None,
            fallback: None,
            arm: None,
            shadow: None,
        };
        let Some(rollout) = self.current(world) else {
            return plain(configured.to_string());
        };
        match &rollout.phase {
            Phase::Running => {
                let on_candidate = bucket(&rollout.id, key) < rollout.candidate_share_bp();
                if on_candidate {
                    Choice {
                        module: rollout.candidate.name.clone(),
                        pinned: Some(rollout.candidate.hash.clone()),
                        fallback: Some((
                            rollout.stable.name.clone(),
                            rollout.arm_label(Arm::Stable),
                        )),
                        arm: Some(rollout.arm_label(Arm::Candidate)),
                        shadow: None,
                    }
                } else {
                    Choice {
                        module: rollout.stable.name.clone(),
                        pinned: None,
                        fallback: None,
                        arm: Some(rollout.arm_label(Arm::Stable)),
                        shadow: None,
                    }
                }
            }
            Phase::Shadow => Choice {
                module: rollout.stable.name.clone(),
                pinned: None,
                fallback: None,
                arm: Some(rollout.arm_label(Arm::Stable)),
                shadow: Some(rollout.candidate.clone()),
            },
            Phase::Paused { .. } => Choice {
                arm: Some(rollout.arm_label(Arm::Stable)),
                ..plain(rollout.stable.name.clone())
            },
            _ => plain(self.effective(world, configured)),
        }
    }

    /// A permit to run one shadow decision, or why this request is not
    /// shadowed.
    pub fn shadow_permit(&self) -> Result<tokio::sync::OwnedSemaphorePermit, ShadowSkip> {
        if !self.shadow_rate.take() {
            return Err(ShadowSkip::Rate);
        }
        self.shadows
            .load_full()
            .try_acquire_owned()
            .map_err(|_| ShadowSkip::Busy)
    }

    /// Re-reads `world`'s rollout from the store.
    async fn reread(&self, world: World) -> Result<(), RolloutError> {
        let text = self
            .ledger
            .rollout_state(key(world))
            .await
            .map_err(|e| RolloutError::Store(e.to_string()))?;
        let mut stored = self.stored.lock().unwrap_or_else(|e| e.into_inner());
        match text {
            Some(text) => {
                if stored.get(&world) == Some(&text) {
                    return Ok(());
                }
                match serde_json::from_str::<Rollout>(&text) {
                    Ok(rollout) => {
                        crate::metrics::rollout_state(
                            key(world),
                            rollout.phase.as_str(),
                            rollout.candidate_share_bp(),
                        );
                        self.slot(world).store(Some(Arc::new(rollout)));
                        stored.insert(world, text);
                    }
                    Err(e) => {
                        return Err(RolloutError::Store(format!(
                            "the stored {} rollout cannot be read: {e}",
                            key(world)
                        )));
                    }
                }
            }
            None => {
                stored.remove(&world);
                self.slot(world).store(None);
            }
        }
        Ok(())
    }

    /// The rollout of `world` and the stored text it was read from, taken
    /// together: a change computed from this rollout is written only if
    /// the store still holds that text.
    fn snapshot(&self, world: World) -> (Option<Arc<Rollout>>, Option<String>) {
        let stored = self.stored.lock().unwrap_or_else(|e| e.into_inner());
        (self.current(world), stored.get(&world).cloned())
    }

    /// Writes `next` as `world`'s rollout if the store still holds
    /// `expected` (the text `next` was computed from; `None`: nothing);
    /// false when someone (another replica, an operator's command) changed
    /// it first, and then it is re-read.
    async fn write(
        &self,
        world: World,
        next: &Rollout,
        expected: Option<&str>,
    ) -> Result<bool, RolloutError> {
        let text = serde_json::to_string(next).map_err(|e| RolloutError::Store(e.to_string()))?;
        let swapped = self
            .ledger
            .swap_rollout_state(key(world), expected, &text)
            .await
            .map_err(|e| RolloutError::Store(e.to_string()))?;
        if swapped {
            let mut stored = self.stored.lock().unwrap_or_else(|e| e.into_inner());
            self.slot(world).store(Some(Arc::new(next.clone())));
            stored.insert(world, text);
            drop(stored);
            crate::metrics::rollout_state(
                key(world),
                next.phase.as_str(),
                next.candidate_share_bp(),
            );
        } else {
            self.reread(world).await?;
        }
        Ok(swapped)
    }

    /// Applies `change` to `world`'s rollout and stores it, re-reading and
    /// retrying when another replica wrote first.
    async fn update<F>(&self, world: World, mut change: F) -> Result<Arc<Rollout>, RolloutError>
    where
        F: FnMut(&mut Rollout) -> Result<(), Refused>,
    {
        let _one = self.writing.lock().await;
        for _ in 0..5 {
            self.reread(world).await?;
            let (Some(current), expected) = self.snapshot(world) else {
                return Err(
                    Refused::NotFound(format!("no {} rollout is on record", key(world))).into(),
                );
            };
            let mut next = Rollout::clone(&current);
            change(&mut next)?;
            if self.write(world, &next, expected.as_deref()).await? {
                return Ok(Arc::new(next));
            }
        }
        Err(RolloutError::Store(
            "other replicas kept changing the rollout; try again".into(),
        ))
    }

    /// Starts a rollout of `spec`, replacing the module that serves now
    /// (`configured`, or a promoted candidate).
    pub async fn start(
        &self,
        spec: &Spec,
        configured: &str,
        by: &str,
    ) -> Result<Arc<Rollout>, RolloutError> {
        let registry = self
            .registry
            .load_full()
            .ok_or_else(|| RolloutError::Store("no policies are loaded yet".into()))?;
        let _one = self.writing.lock().await;
        for world in [World::Router, World::Planner] {
            self.reread(world).await?;
        }
        let other = match spec.world {
            World::Router => World::Planner,
            World::Planner => World::Router,
        };
        if let Some(r) = self.current(other).filter(|r| !r.phase.is_final()) {
            return Err(Refused::Conflict(format!(
                "the {other} rollout {} is {}: one rollout runs at a time (a call records one arm)",
                r.id,
                r.phase.as_str()
            ))
            .into());
        }
        let (previous, expected) = self.snapshot(spec.world);
        if let Some(r) = &previous
            && !r.phase.is_final()
        {
            return Err(Refused::Conflict(format!(
                "rollout {} of {} is {}: promote or abort it first",
                r.id,
                r.candidate.id(),
                r.phase.as_str()
            ))
            .into());
        }
        let pin = |name: &str, role: &str| -> Result<Pin, RolloutError> {
            let module = registry.get(name).ok_or_else(|| {
                Refused::Invalid(format!("the {role} module {name:?} is not loaded"))
            })?;
            if module.info.world != spec.world {
                return Err(Refused::Invalid(format!(
                    "the {role} module {name:?} is a {}, not a {}",
                    module.info.world, spec.world
                ))
                .into());
            }
            Ok(Pin {
                name: name.to_string(),
                hash: module.info.hash.clone(),
            })
        };
        let stable = pin(&self.effective(spec.world, configured), "stable")?;
        let candidate = pin(&spec.candidate, "candidate")?;
        let now = crate::ledger::store::system_now_ms();
        let rollout = Rollout::new(spec, stable, candidate, &self.defaults(), by, now)?;
        if let Some(r) = &previous {
            // Keep the ended one's record; the key holds the latest.
            let text =
                serde_json::to_string(&**r).map_err(|e| RolloutError::Store(e.to_string()))?;
            self.ledger
                .swap_rollout_state(&format!("archive/{}", r.id), None, &text)
                .await
                .map_err(|e| RolloutError::Store(e.to_string()))?;
        }
        if !self
            .write(spec.world, &rollout, expected.as_deref())
            .await?
        {
            return Err(Refused::Conflict(
                "another replica changed the rollout at the same time; look at its status and try again".into(),
            )
            .into());
        }
        Ok(Arc::new(rollout))
    }

    /// Starts the rollout the config file declares for `world`, unless one
    /// runs (the stored state wins over the file) or the latest on record
    /// is of this very candidate version (it ran already: a restart must
    /// not start a rolled-back candidate again).
    pub async fn start_declared(
        &self,
        world: World,
        declared: &crate::config::rollouts::DeclaredRollout,
        configured: &str,
    ) -> Result<(), RolloutError> {
        self.reread(world).await?;
        if let Some(r) = self.current(world) {
            let loaded = self
                .registry
                .load_full()
                .and_then(|reg| reg.get(&declared.candidate))
                .map(|m| m.info.hash.clone());
            let same = r.candidate.name == declared.candidate
                && loaded.as_deref() == Some(r.candidate.hash.as_str());
            if !r.phase.is_final() || same {
                return Ok(());
            }
        }
        let spec = Spec::declared(world, declared);
        self.start(&spec, configured, "the config file")
            .await
            .map(drop)
    }

    /// Operator's `promote` (see [`Rollout::promote`]).
    pub async fn promote(&self, world: World, by: &str) -> Result<Arc<Rollout>, RolloutError> {
        let now = crate::ledger::store::system_now_ms();
        self.update(world, |r| r.promote(by, now)).await
    }

    /// Operator's `abort`.
    pub async fn abort(&self, world: World, by: &str) -> Result<Arc<Rollout>, RolloutError> {
        let now = crate::ledger::store::system_now_ms();
        self.update(world, |r| r.abort(by, now)).await
    }

    /// Re-reads every rollout from the store (another replica may have
    /// moved one), without evaluating.
    pub async fn tick_read(&self) -> Result<(), RolloutError> {
        for world in [World::Router, World::Planner] {
            self.reread(world).await?;
        }
        Ok(())
    }

    /// One evaluation of every running rollout: re-read (another replica
    /// may have moved it), check the pinned modules, judge, advance.
    pub async fn tick(&self) -> Result<(), RolloutError> {
        for world in [World::Router, World::Planner] {
            self.reread(world).await?;
            let (Some(current), expected) = self.snapshot(world) else {
                continue;
            };
            if current.phase.is_final() {
                self.windows.lock().await.remove(&world);
                continue;
            }
            let registry = self.registry.load_full();
            let loaded = |name: &str| {
                registry
                    .as_ref()
                    .and_then(|r| r.get(name))
                    .map(|m| m.info.hash.clone())
            };
            let now = crate::ledger::store::system_now_ms();
            let mut next = Rollout::clone(&current);
            let mut changed = next.check_pins(loaded, now);
            if next.phase == Phase::Running {
                let defaults = self.defaults();
                let window = self
                    .windows
                    .lock()
                    .await
                    .entry(world)
                    .or_default()
                    .measure(
                        &self.ledger,
                        &next,
                        defaults.window_ms,
                        defaults.max_window_calls,
                        now,
                    )
                    .await
                    .map_err(|e| RolloutError::Store(e.to_string()))?;
                let verdict = guard::judge(
                    &window.stable,
                    &window.candidate,
                    &next.guards,
                    next.min_requests,
                );
                changed |= next.evaluate(verdict, window.candidate_requests_this_step, now);
            }
            if changed {
                let _one = self.writing.lock().await;
                // Lost to another replica or an operator's command: the
                // state is read back and the next tick judges again.
                let written = self.write(world, &next, expected.as_deref()).await?;
                if let (true, Phase::RolledBack { verdict }) = (written, &next.phase) {
                    crate::metrics::rollout_rollback(key(world), verdict.metric.as_str());
                }
            }
        }
        Ok(())
    }

    /// Runs [`Rollouts::tick`] every `[rollouts] evaluate_every` until the
    /// last handle to the rollouts is dropped.
    pub fn spawn_evaluations(self: &Arc<Self>) -> tokio::task::JoinHandle<()> {
        let weak = Arc::downgrade(self);
        tokio::spawn(async move {
            loop {
                let every = match weak.upgrade() {
                    Some(r) => r.defaults().evaluate_every,
                    None => return,
                };
                tokio::time::sleep(every).await;
                let Some(rollouts) = weak.upgrade() else {
                    return;
                };
                if let Err(e) = rollouts.tick().await {
                    tracing::warn!("rollout evaluation failed, retried at the next: {e}");
                }
            }
        })
    }

    /// What `status` shows: each world's rollout, and whether this replica
    /// has its pinned modules.
    pub fn status(&self) -> Vec<Status> {
        [World::Router, World::Planner]
            .into_iter()
            .filter_map(|world| Some(self.describe(&*self.current(world)?)))
            .collect()
    }

    /// `rollout` as `status` shows it.
    pub fn describe(&self, rollout: &Rollout) -> Status {
        let registry = self.registry.load_full();
        let here = |pin: &Pin| {
            registry
                .as_ref()
                .and_then(|r| r.get(&pin.name))
                .is_some_and(|m| m.info.hash == pin.hash)
        };
        Status {
            candidate_share_percent: f64::from(rollout.candidate_share_bp()) / 100.0,
            stable_loaded_here: here(&rollout.stable),
            candidate_loaded_here: here(&rollout.candidate),
            rollout: rollout.clone(),
        }
    }
}

/// A rollout as `status` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct Status {
    /// The rollout.
    #[serde(flatten)]
    pub rollout: Rollout,
    /// The share the candidate serves now.
    pub candidate_share_percent: f64,
    /// Whether this replica has the pinned stable module.
    pub stable_loaded_here: bool,
    /// Whether this replica has the pinned candidate (without it, it
    /// serves the stable policy and records the stable arm).
    pub candidate_loaded_here: bool,
}

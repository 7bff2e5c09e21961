//! The policies a daemon (or a CLI command) runs with: the engine, the
//! registry seeded with the built-in modules, the watched folder, and which
//! modules are the active router and planner.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use super::rollout::{Choice, Rollouts};
use super::types::{Features, ModelInfo, Route};
use super::watcher::{self, WatchGuard};
use super::{Decision, PolicyEngine, PolicyModule, Registry, World, builtin, decide};
use crate::config::Config;

/// Everything policy-related a running daemon holds.
pub struct ActivePolicies {
    /// Loaded modules.
    pub registry: Arc<Registry>,
    router: String,
    planner: String,
    safe_route: Route,
    rollouts: Arc<Rollouts>,
    _watch: Option<WatchGuard>,
}

impl ActivePolicies {
    /// Starts the engine, loads the built-in modules, then the configured
    /// folder's modules (which replace built-ins of the same name), and
    /// watches the folder. `rollouts` (kept across reloads) decide which
    /// of two modules serves while one is rolled out.
    pub async fn start(config: &Config, rollouts: Arc<Rollouts>) -> anyhow::Result<Self> {
        let engine = PolicyEngine::new(
            crate::policy::limits(config),
            crate::policy::cache_dir(config),
        )?;
        engine.set_module_config(config.policy_config());
        let mut registry = Registry::new(engine)
            .with_load_timeout(Duration::from_millis(config.policies.load_timeout_ms));
        let catalog = crate::policy::catalog(config);
        registry.load_builtins(builtin::ALL, &catalog).await?;
        let registry = Arc::new(registry);
        let watch = match &config.policies.dir {
            Some(dir) => {
                Some(Self::watch(dir, &registry, catalog, config.policies.max_module_bytes).await?)
            }
            None => None,
        };
        rollouts.use_registry(registry.clone());
        Ok(ActivePolicies {
            registry,
            rollouts,
            router: config.policies.router.clone(),
            planner: config.policies.planner.clone(),
            safe_route: crate::policy::safe_route(config),
            _watch: watch,
        })
    }

    async fn watch(
        dir: &Path,
        registry: &Arc<Registry>,
        catalog: Vec<ModelInfo>,
        max_module_bytes: u64,
    ) -> anyhow::Result<WatchGuard> {
        std::fs::create_dir_all(dir)?;
        watcher::watch(
            dir,
            registry.clone(),
            Arc::new(move || catalog.clone()),
            max_module_bytes,
        )
        .await
    }

    /// The rollouts these policies serve under.
    pub fn rollouts(&self) -> &Arc<Rollouts> {
        &self.rollouts
    }

    /// The configured router's name (a rollout may serve another).
    pub fn configured(&self, world: World) -> &str {
        match world {
            World::Router => &self.router,
            World::Planner => &self.planner,
        }
    }

    /// The router serving requests outside a rollout's candidate arm.
    pub fn router(&self) -> Option<Arc<PolicyModule>> {
        self.registry
            .get(&self.rollouts.effective(World::Router, &self.router))
    }

    /// The planner serving work outside a rollout's candidate arm.
    pub fn planner(&self) -> Option<Arc<PolicyModule>> {
        self.registry
            .get(&self.rollouts.effective(World::Planner, &self.planner))
    }

    /// What a rollout assigns a request by: its agent session, else its
    /// client, else the request (or task) itself.
    pub fn assignment_key(features: &Features) -> &str {
        features
            .session
            .as_deref()
            .or(features.client.as_deref())
            .unwrap_or(&features.id)
    }

    /// The planner for work keyed `key` (a task id, or an agent session),
    /// and the rollout arm it is on.
    pub fn planner_for(&self, key: &str) -> (Option<Arc<PolicyModule>>, Option<String>) {
        let choice = self.rollouts.choose(World::Planner, &self.planner, key);
        self.resolve(choice)
    }

    /// The module a choice names, or its stable fallback when the pinned
    /// candidate is not the one loaded here.
    fn resolve(&self, choice: Choice) -> (Option<Arc<PolicyModule>>, Option<String>) {
        let module = self.registry.get(&choice.module);
        let pinned_ok = match (&choice.pinned, &module) {
            (Some(hash), Some(m)) => &m.info.hash == hash,
            (Some(_), None) => false,
            (None, _) => true,
        };
        if pinned_ok {
            return (module, choice.arm);
        }
        match choice.fallback {
            Some((stable, arm)) => (self.registry.get(&stable), Some(arm)),
            None => (module, choice.arm),
        }
    }

    /// Routes a request with the active router (or, during a rollout, the
    /// arm its session, client or id is on), or the safe route. In shadow
    /// mode the candidate decides too, off the request's path: its answer
    /// lands in the decision's shadow slot when it is ready.
    pub async fn decide(&self, features: &Features, models: &[ModelInfo]) -> Decision {
        let key = Self::assignment_key(features);
        let choice = self.rollouts.choose(World::Router, &self.router, key);
        let shadow = choice.shadow.clone();
        let (router, arm) = self.resolve(choice);
        let mut decision = decide(router.as_deref(), features, models, &self.safe_route).await;
        decision.arm = arm;
        if let Some((slot, work)) = shadow.and_then(|pin| self.shadow(&pin, features, models)) {
            decision.shadow = Some(slot);
            decision.shadow_work = Some(work);
        }
        decision
    }

    /// The shadow decision of `pin` for `features` (as this router saw
    /// them), to be run by the caller, unless a [`ShadowSkip`] says why not
    /// (counted in the metrics).
    ///
    /// [`ShadowSkip`]: super::rollout::ShadowSkip
    fn shadow(
        &self,
        pin: &super::rollout::Pin,
        features: &Features,
        models: &[ModelInfo],
    ) -> Option<(super::ShadowSlot, super::decide::ShadowWork)> {
        let ready = self
            .registry
            .get(&pin.name)
            .filter(|m| m.info.hash == pin.hash)
            .ok_or(super::rollout::ShadowSkip::NotLoaded)
            .and_then(|module| Ok((module, self.rollouts.shadow_permit()?)));
        let (module, permit) = match ready {
            Ok(ready) => ready,
            Err(skip) => {
                crate::metrics::rollout_shadow_skipped(skip.as_str());
                return None;
            }
        };
        let slot = super::ShadowSlot::default();
        let (filled, features, models, safe) = (
            slot.clone(),
            features.clone(),
            models.to_vec(),
            self.safe_route.clone(),
        );
        let work = super::decide::ShadowWork::new(Box::pin(async move {
            let _permit = permit;
            let d = decide(Some(&module), &features, &models, &safe).await;
            let _ = filled.set(super::decide::shadow_json(&d));
        }));
        Some((slot, work))
    }
}

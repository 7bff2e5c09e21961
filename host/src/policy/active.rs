//! The policies a daemon (or a CLI command) runs with: the engine, the
//! registry seeded with the built-in modules, the watched folder, and which
//! modules are the active router and planner.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use super::types::{Features, ModelInfo, Route};
use super::watcher::{self, WatchGuard};
use super::{Decision, PolicyEngine, PolicyModule, Registry, builtin, decide};
use crate::config::Config;

/// Everything policy-related a running daemon holds.
pub struct ActivePolicies {
    /// Loaded modules.
    pub registry: Arc<Registry>,
    router: String,
    planner: String,
    safe_route: Route,
    _watch: Option<WatchGuard>,
}

impl ActivePolicies {
    /// Starts the engine, loads the built-in modules, then the configured
    /// folder's modules (which replace built-ins of the same name), and
    /// watches the folder.
    pub async fn start(config: &Config) -> anyhow::Result<Self> {
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
        Ok(ActivePolicies {
            registry,
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

    /// The active router's serving version.
    pub fn router(&self) -> Option<Arc<PolicyModule>> {
        self.registry.get(&self.router)
    }

    /// The active planner's serving version.
    pub fn planner(&self) -> Option<Arc<PolicyModule>> {
        self.registry.get(&self.planner)
    }

    /// Routes a request with the active router, or the safe route.
    pub async fn decide(&self, features: &Features, models: &[ModelInfo]) -> Decision {
        let router = self.router();
        decide(router.as_deref(), features, models, &self.safe_route).await
    }
}

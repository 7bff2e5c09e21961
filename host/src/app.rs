//! The application state: everything a request needs, built from one
//! config, and rebuilt from the next on a reload (see
//! [`crate::gateway::reload`]). The orchestrator and the gateway work
//! through it.

use std::collections::HashMap;
use std::sync::Arc;

use crate::config::{Config, ModelConfig};
use crate::gateway::{auth, limits, reload, sessions};
use crate::ledger::{Cost, Prices};
use crate::policy::ActivePolicies;
use crate::policy::types::ModelInfo;
use crate::provider::{Provider, Usage};
use crate::resilience::Resilience;

/// What every request handler shares.
pub struct AppState {
    /// The validated configuration.
    pub config: Config,
    /// Policies and the registry (kept across reloads that leave
    /// `[policies]` as it was).
    pub policies: Arc<ActivePolicies>,
    /// Client keys.
    pub auth: auth::Auth,
    /// Per-client request limits.
    pub limits: limits::Limiter,
    /// Catalog entries by id.
    pub models: HashMap<String, Arc<ModelConfig>>,
    /// Breakers, balancers, retry budget.
    pub resilience: Resilience,
    /// Tasks submitted to `/v1/tasks` (kept across reloads).
    pub tasks: Arc<crate::orchestrator::store::Tasks>,
    /// Plans of agent sessions in transparent plan mode (kept across
    /// reloads).
    pub plans: Arc<crate::orchestrator::transparent::PlanCache>,
    /// The tier each agent session's current task started with (kept
    /// across reloads).
    pub task_tiers: Arc<sessions::TaskTiers>,
    /// Where the configuration came from, and when.
    pub loaded: reload::Loaded,
    providers: HashMap<String, Provider>,
    baseline: Prices,
    metrics: metrics_exporter_prometheus::PrometheusHandle,
}

impl AppState {
    /// Builds providers and policies from `config`.
    pub async fn new(config: Config) -> anyhow::Result<Self> {
        let policies = Arc::new(ActivePolicies::start(&config).await?);
        let resilience = Resilience::new(&config);
        // The task store keeps the bounds of the first config: a reload
        // does not resize it.
        let tasks = Arc::new(crate::orchestrator::store::Tasks::new(&config.tasks));
        Self::build(
            config,
            policies,
            resilience,
            tasks,
            Default::default(),
            Default::default(),
        )
    }

    /// The state for `config`, replacing this one: tasks, plans and
    /// sessions carry over; so do the policies when `[policies]` is
    /// unchanged, and the breakers and latency of every endpoint that
    /// remains. Requests and tasks that hold this state finish on it.
    pub async fn reload(&self, config: Config) -> anyhow::Result<Self> {
        let policies = if reload::same_policies(&self.config, &config) {
            self.policies.clone()
        } else {
            Arc::new(ActivePolicies::start(&config).await?)
        };
        let resilience = Resilience::carry_over(&config, &self.resilience);
        Self::build(
            config,
            policies,
            resilience,
            self.tasks.clone(),
            self.plans.clone(),
            self.task_tiers.clone(),
        )
    }

    fn build(
        config: Config,
        policies: Arc<ActivePolicies>,
        resilience: Resilience,
        tasks: Arc<crate::orchestrator::store::Tasks>,
        plans: Arc<crate::orchestrator::transparent::PlanCache>,
        task_tiers: Arc<sessions::TaskTiers>,
    ) -> anyhow::Result<Self> {
        let providers = config
            .providers
            .iter()
            .map(|(name, p)| Ok((name.clone(), Provider::from_config(name, p)?)))
            .collect::<anyhow::Result<HashMap<_, _>>>()?;
        let models: HashMap<String, Arc<ModelConfig>> = config
            .models
            .iter()
            .map(|m| (m.id.clone(), Arc::new(m.clone())))
            .collect();
        let baseline = Prices::from(&*models[&config.baseline_model]);
        // Build the tokenizer's tables now, not on the first request.
        crate::tokens::warm_up();
        Ok(AppState {
            auth: auth::Auth::new(&config),
            limits: limits::Limiter::new(&config),
            resilience,
            tasks,
            plans,
            task_tiers,
            loaded: reload::Loaded::of(&config),
            policies,
            models,
            providers,
            baseline,
            metrics: crate::metrics::install(),
            config,
        })
    }

    /// The provider named `name` (validated at start).
    pub fn provider(&self, name: &str) -> &Provider {
        &self.providers[name]
    }

    /// The catalog with live health from the breakers.
    pub fn catalog(&self) -> Vec<ModelInfo> {
        let mut catalog = self.config.catalog();
        for model in &mut catalog {
            let (available, success_rate, p50) = self.resilience.health(&model.id);
            model.available = available;
            model.success_rate = success_rate;
            model.p50_latency_ms = p50.map_or(0, |d| d.as_millis().min(u32::MAX as u128) as u32);
        }
        catalog
    }

    /// The escalation model, if configured and large enough for a request
    /// needing `needed` tokens.
    pub fn escalation(&self, needed: &u64) -> Option<Arc<ModelConfig>> {
        let id = self.config.resilience.escalation_model.as_ref()?;
        self.models
            .get(id)
            .filter(|m| m.context_window as u64 >= *needed)
            .cloned()
    }

    /// Prices of the baseline model.
    pub fn baseline_prices(&self) -> Prices {
        self.baseline
    }

    /// The metrics in Prometheus text format.
    pub fn metrics_text(&self) -> String {
        crate::metrics::sample_runtime();
        self.metrics.render()
    }

    /// The cost of `usage` on `model`, and on the baseline.
    pub fn price(&self, model: &ModelConfig, usage: &Usage) -> Cost {
        Cost::of(usage, Prices::from(model), self.baseline)
    }
}

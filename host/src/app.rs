//! The application state: everything a request needs, built from one
//! config, and rebuilt from the next on a reload (see
//! [`crate::gateway::reload`]). The orchestrator and the gateway work
//! through it.

use std::sync::Arc;

use crate::config::Config;
use crate::dispatch::Dispatch;
use crate::gateway::{auth, limits, reload, sessions};
use crate::orchestrator::Orchestrator;
use crate::policy::ActivePolicies;
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
    /// Providers, catalog, resilience and prices: where model calls are
    /// made and settled.
    pub dispatch: Arc<Dispatch>,
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
        let resilience = Resilience::carry_over(&config, self.dispatch.resilience());
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
        let dispatch = Arc::new(Dispatch::new(&config, resilience)?);
        // Build the tokenizer's tables now, not on the first request.
        crate::tokens::warm_up();
        Ok(AppState {
            auth: auth::Auth::new(&config),
            limits: limits::Limiter::new(&config),
            dispatch,
            tasks,
            plans,
            task_tiers,
            loaded: reload::Loaded::of(&config),
            policies,
            metrics: crate::metrics::install(),
            config,
        })
    }

    /// What the orchestrator works with: this state's dispatch layer and
    /// policies.
    pub fn orchestrator(&self) -> Orchestrator {
        Orchestrator {
            dispatch: self.dispatch.clone(),
            policies: self.policies.clone(),
            plans: self.plans.clone(),
            total_deadline_ms: self.config.resilience.total_deadline_ms,
        }
    }

    /// The metrics in Prometheus text format.
    pub fn metrics_text(&self) -> String {
        crate::metrics::sample_runtime();
        self.metrics.render()
    }
}

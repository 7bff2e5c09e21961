//! The application state: everything a request needs, built from one
//! config, and rebuilt from the next on a reload (see
//! [`crate::gateway::reload`]). The orchestrator and the gateway work
//! through it.

use std::sync::Arc;

use crate::config::Config;
use crate::dispatch::Dispatch;
use crate::gateway::{auth, limits, reload, sessions};
use crate::ledger::Ledger;
use crate::orchestrator::Orchestrator;
use crate::policy::ActivePolicies;
use crate::policy::rollout::{Defaults, Rollouts};
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
    /// Where every call and task is recorded (kept across reloads).
    pub ledger: Ledger,
    /// This daemon's name in task records.
    pub replica: String,
    metrics: metrics_exporter_prometheus::PrometheusHandle,
}

impl AppState {
    /// Builds providers and policies from `config`.
    pub async fn new(config: Config) -> anyhow::Result<Self> {
        let resilience = Resilience::new(&config);
        // The task store keeps the bounds of the first config: a reload
        // does not resize it.
        let url = config.ledger.url_or_default();
        let ledger = Ledger::open(&url, &config.ledger)
            .await
            .map_err(|e| anyhow::anyhow!("the ledger could not be opened: {e}"))?;
        let rollouts = Rollouts::open(ledger.clone(), Defaults::from_config(&config.rollouts))
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        let policies = Arc::new(ActivePolicies::start(&config, rollouts.clone()).await?);
        start_declared(&policies, &config).await?;
        // The loop ends by itself when the rollouts are dropped.
        drop(rollouts.spawn_evaluations());
        let replica = config
            .ledger
            .replica
            .clone()
            .unwrap_or_else(|| default_replica(&config));
        // Tasks this replica was running when it stopped, and tasks of
        // replicas that stopped updating theirs, will not finish.
        match ledger.interrupt_tasks(&replica, STALE_TASK).await {
            Ok(0) => {}
            Ok(n) => tracing::warn!("{n} task(s) interrupted by a restart are marked so"),
            Err(e) => tracing::error!("tasks interrupted by a restart could not be marked: {e}"),
        }
        let tasks = Arc::new(crate::orchestrator::store::Tasks::new(
            &config.tasks,
            ledger.clone(),
            replica.clone(),
        ));
        Self::build(
            config,
            policies,
            resilience,
            tasks,
            Default::default(),
            Default::default(),
            ledger,
            replica,
        )
    }

    /// The state for `config`, replacing this one: tasks, plans and
    /// sessions carry over; so do the policies when `[policies]` is
    /// unchanged, and the breakers and latency of every endpoint that
    /// remains. Requests and tasks that hold this state finish on it.
    pub async fn reload(&self, config: Config) -> anyhow::Result<Self> {
        if config.ledger != self.config.ledger {
            anyhow::bail!(
                "[ledger] changed: the ledger is opened once, at start; restart the daemon to change it"
            );
        }
        check_declared_unchanged(self.policies.rollouts(), &self.config, &config)?;
        let policies = if reload::same_policies(&self.config, &config) {
            self.policies.clone()
        } else {
            Arc::new(ActivePolicies::start(&config, self.policies.rollouts().clone()).await?)
        };
        policies
            .rollouts()
            .set_defaults(Defaults::from_config(&config.rollouts));
        start_declared(&policies, &config).await?;
        let resilience = Resilience::carry_over(&config, self.dispatch.resilience());
        Self::build(
            config,
            policies,
            resilience,
            self.tasks.clone(),
            self.plans.clone(),
            self.task_tiers.clone(),
            self.ledger.clone(),
            self.replica.clone(),
        )
    }

    #[allow(clippy::too_many_arguments)] // each is a piece kept across reloads
    fn build(
        config: Config,
        policies: Arc<ActivePolicies>,
        resilience: Resilience,
        tasks: Arc<crate::orchestrator::store::Tasks>,
        plans: Arc<crate::orchestrator::transparent::PlanCache>,
        task_tiers: Arc<sessions::TaskTiers>,
        ledger: Ledger,
        replica: String,
    ) -> anyhow::Result<Self> {
        let dispatch = Arc::new(Dispatch::new(&config, resilience, ledger.clone())?);
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
            ledger,
            replica,
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

/// Starts the rollouts `[rollouts.router]` and `[rollouts.planner]`
/// declare, unless the ledger already holds one running, or holds a
/// rollout of the very same candidate (rolled back or promoted: a restart
/// must not start it again).
async fn start_declared(policies: &ActivePolicies, config: &Config) -> anyhow::Result<()> {
    use crate::policy::World;
    for (world, declared) in [
        (World::Router, &config.rollouts.router),
        (World::Planner, &config.rollouts.planner),
    ] {
        let Some(declared) = declared else { continue };
        use crate::policy::rollout::{Refused, RolloutError};
        match policies
            .rollouts()
            .start_declared(world, declared, policies.configured(world))
            .await
        {
            Ok(()) => {}
            // Another rollout runs: the stored state wins over the file.
            Err(RolloutError::Refused(Refused::Conflict(why))) => {
                tracing::warn!("[rollouts.{world}] is not started: {why}");
            }
            Err(e) => anyhow::bail!("[rollouts.{world}]: {e}"),
        }
    }
    Ok(())
}

/// Refuses a reload that changes the declaration of a rollout that runs:
/// the running one would silently go on under a file that says otherwise.
fn check_declared_unchanged(rollouts: &Rollouts, old: &Config, new: &Config) -> anyhow::Result<()> {
    use crate::policy::World;
    for (world, before, after) in [
        (World::Router, &old.rollouts.router, &new.rollouts.router),
        (World::Planner, &old.rollouts.planner, &new.rollouts.planner),
    ] {
        if before == after {
            continue;
        }
        if let Some(r) = rollouts.current(world).filter(|r| !r.phase.is_final()) {
            anyhow::bail!(
                "[rollouts.{world}] changed while rollout {} of {} is {}: promote or abort it (pointsman rollout promote|abort) before changing its declaration",
                r.id,
                r.candidate.id(),
                r.phase.as_str()
            );
        }
    }
    Ok(())
}

/// A task whose record has not changed for this long belongs to a replica
/// that stopped: it is marked interrupted.
const STALE_TASK: std::time::Duration = std::time::Duration::from_secs(15 * 60);

/// The host name and the listen port: stable across restarts of one
/// daemon, distinct between replicas on one host.
fn default_replica(config: &Config) -> String {
    let host = std::fs::read_to_string("/etc/hostname")
        .ok()
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "localhost".into());
    format!("{host}:{}", config.listen.port())
}

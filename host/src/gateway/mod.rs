//! The HTTP surface: the wire formats agents speak, and the daemon around
//! them.
//!
//! - [`chat`]: `POST /v1/chat/completions` and `POST /v1/messages`.
//! - [`count_tokens`]: `POST /v1/messages/count_tokens`.
//! - [`sessions`]: what is remembered of an agent session's task.
//! - [`relay`]: streaming answers back in the client's format.
//! - [`responses`]: `POST /v1/responses`, served through [`chat`].
//! - [`relay`], [`responses_relay`]: streaming answers back in the client's
//!   format.
//! - [`features`]: what the router sees of a request.
//! - [`auth`], [`error`]: client keys, and errors in each API's format.
//! - [`admin`]: models, policies, health and metrics.

pub mod admin;
pub mod auth;
pub mod body;
pub mod chat;
pub mod count_tokens;
pub mod error;
pub mod features;
pub mod inflight;
pub mod limits;
pub mod relay;
pub mod reload;
pub mod responses;
pub mod responses_relay;
pub mod server;
pub mod sessions;
pub mod tasks;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context;
use axum::Router;
use axum::routing::{get, post};

use crate::config::{Config, ModelConfig};
use crate::ledger::{Cost, Prices};
use crate::policy::ActivePolicies;
use crate::policy::types::ModelInfo;
use crate::provider::{Format, Provider, Usage};
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

/// The daemon's routes.
pub fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .route(
            "/v1/chat/completions",
            post(
                |axum::extract::State(s): axum::extract::State<Arc<AppState>>, headers, body| {
                    chat::handle(s, Format::OpenAi, headers, body)
                },
            ),
        )
        .route(
            "/v1/messages",
            post(
                |axum::extract::State(s): axum::extract::State<Arc<AppState>>, headers, body| {
                    chat::handle(s, Format::Anthropic, headers, body)
                },
            ),
        )
        .route("/v1/messages/count_tokens", post(count_tokens::handle))
        .route("/v1/responses", post(responses::handle))
        .route("/v1/tasks", post(tasks::submit))
        .route("/v1/tasks/{id}", get(tasks::get).delete(tasks::cancel))
        .route("/v1/tasks/{id}/events", get(tasks::events))
        .route("/v1/models", get(admin::models))
        .route("/healthz", get(admin::healthz))
        .merge(
            Router::new()
                .route("/v1/policies", get(admin::policies))
                .route("/v1/config", get(admin::config))
                .route("/v1/providers", get(admin::providers))
                .route("/metrics", get(admin::metrics))
                .route_layer(axum::middleware::from_fn_with_state(
                    state.clone(),
                    admin::require_admin,
                )),
        )
        .fallback(admin::not_found)
        .method_not_allowed_fallback(admin::method_not_allowed)
        .with_state(state)
}

/// Runs the daemon until SIGINT or SIGTERM, then stops accepting and lets
/// requests in flight finish.
pub async fn serve(config: Config) -> anyhow::Result<()> {
    if config.demo {
        tracing::info!(
            "starting the built-in demo: the seed catalog on the simulated provider, seed policies built in (no provider is called; pass --config for real providers)"
        );
    }
    let listen = config.listen;
    if config.clients.is_empty() {
        if !listen.ip().is_loopback() && !config.allow_unauthenticated {
            anyhow::bail!(
                "refusing to listen on {listen} without client keys: add [[clients]] to the config, or set allow_unauthenticated = true"
            );
        }
        tracing::warn!("no client keys configured: any API key is accepted");
    }
    if config.admin.key_sha256.is_none() && !listen.ip().is_loopback() {
        anyhow::bail!(
            "refusing to listen on {listen} without an admin key: metrics, policies and providers would be open to anyone who can reach it; set [admin] key_sha256"
        );
    }
    let state = Arc::new(AppState::new(config).await?);
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("cannot listen on {listen}"))?;
    let local: SocketAddr = listener.local_addr()?;
    tracing::info!(addr = %local, "listening");
    let signalled = Arc::new(std::sync::OnceLock::new());
    let shutdown = {
        let signalled = signalled.clone();
        async move {
            shutdown_signal().await;
            let _ = signalled.set(tokio::time::Instant::now());
        }
    };
    let live = reload::Live::new(state.clone());
    #[cfg(unix)]
    let hangups = {
        let live = live.clone();
        let mut hangup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())?;
        tokio::spawn(async move {
            while hangup.recv().await.is_some() {
                // The outcome is logged and counted by `reload`.
                let _ = live.reload("SIGHUP").await;
            }
        })
    };
    let _watch = if state.config.config.watch {
        reload::watch_file(live.clone())?
    } else {
        None
    };
    serve_live(listener, live.clone(), shutdown).await?;
    #[cfg(unix)]
    hangups.abort();
    // Tasks run on after their submitting request has answered: they get
    // what is left of the grace period too.
    let state = live.state();
    let grace = std::time::Duration::from_millis(state.config.server.shutdown_grace_ms);
    let deadline = *signalled.get_or_init(tokio::time::Instant::now) + grace;
    while state.tasks.running() > 0 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let left = state.tasks.running();
    if left > 0 {
        tracing::warn!(
            tasks = left,
            "tasks still running at the end of the shutdown grace period are interrupted"
        );
    }
    Ok(())
}

/// Serves on `listener` until `shutdown` completes.
pub async fn serve_on(
    listener: tokio::net::TcpListener,
    state: Arc<AppState>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    serve_live(listener, reload::Live::new(state), shutdown).await
}

/// Serves `live`'s current state on `listener` until `shutdown` completes.
pub async fn serve_live(
    listener: tokio::net::TcpListener,
    live: Arc<reload::Live>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let bounds = live.state().config.server.clone();
    server::serve(listener, live, &bounds, shutdown).await?;
    tracing::info!("stopped");
    Ok(())
}

async fn shutdown_signal() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = interrupt => {},
        _ = terminate => {},
    }
    tracing::info!("shutting down: finishing requests in flight");
}

//! The HTTP surface: the wire formats agents speak, and the daemon around
//! them.
//!
//! - [`chat`]: `POST /v1/chat/completions` and `POST /v1/messages`.
//! - [`relay`]: streaming answers back in the client's format.
//! - [`features`]: what the router sees of a request.
//! - [`auth`], [`error`]: client keys, and errors in each API's format.
//! - [`admin`]: models, policies, health and metrics.

pub mod admin;
pub mod auth;
pub mod chat;
pub mod error;
pub mod features;
pub mod relay;
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
    /// Policies and the registry.
    pub policies: ActivePolicies,
    /// Client keys.
    pub auth: auth::Auth,
    /// Catalog entries by id.
    pub models: HashMap<String, Arc<ModelConfig>>,
    /// Breakers, balancers, retry budget.
    pub resilience: Resilience,
    /// Tasks submitted to `/v1/tasks`.
    pub tasks: crate::orchestrator::store::Tasks,
    /// Plans of agent sessions in transparent plan mode.
    pub plans: crate::orchestrator::transparent::PlanCache,
    providers: HashMap<String, Provider>,
    baseline: Prices,
    metrics: metrics_exporter_prometheus::PrometheusHandle,
}

impl AppState {
    /// Builds providers and policies from `config`.
    pub async fn new(config: Config) -> anyhow::Result<Self> {
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
        let policies = ActivePolicies::start(&config).await?;
        // Build the tokenizer's tables now, not on the first request.
        features::count_tokens("warm up");
        Ok(AppState {
            auth: auth::Auth::new(&config),
            resilience: Resilience::new(&config),
            tasks: Default::default(),
            plans: Default::default(),
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
        .route("/v1/tasks", post(tasks::submit))
        .route("/v1/tasks/{id}", get(tasks::get).delete(tasks::cancel))
        .route("/v1/tasks/{id}/events", get(tasks::events))
        .route("/v1/models", get(admin::models))
        .route("/v1/policies", get(admin::policies))
        .route("/v1/providers", get(admin::providers))
        .route("/healthz", get(admin::healthz))
        .route("/metrics", get(admin::metrics))
        .fallback(admin::not_found)
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
    let state = Arc::new(AppState::new(config).await?);
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("cannot listen on {listen}"))?;
    let local: SocketAddr = listener.local_addr()?;
    tracing::info!(addr = %local, "listening");
    serve_on(listener, state, shutdown_signal()).await
}

/// Serves on `listener` until `shutdown` completes.
pub async fn serve_on(
    listener: tokio::net::TcpListener,
    state: Arc<AppState>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let app = router(state);
    // Nagle's algorithm would hold small SSE events and responses back.
    let listener = axum::serve::ListenerExt::tap_io(listener, |tcp| {
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!("cannot set TCP_NODELAY: {e}");
        }
    });
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await?;
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

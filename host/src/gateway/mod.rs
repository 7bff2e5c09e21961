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
//! - [`auth`], [`error`]: client keys, and errors in each API's format.
//! - [`server_tools`]: Anthropic server tools, runnable on Anthropic
//!   upstreams only.
//! - [`rollouts`]: the rollout admin API (start, status, promote, abort,
//!   shadow diff).
//! - [`usage`]: `GET /v1/usage`, the ledger's report.
//! - [`feedback`]: `POST /v1/feedback`, scores of requests, tasks and
//!   sessions.
//! - [`admin`]: models (`GET /v1/models`, `GET /v1/models/{id}`), policies,
//!   health and metrics.

pub mod admin;
pub mod auth;
pub mod body;
pub mod chat;
pub mod count_tokens;
pub mod error;
pub mod feedback;
pub mod inflight;
pub mod limits;
pub mod relay;
pub mod reload;
pub mod responses;
pub mod responses_relay;
pub mod rollouts;
pub mod server;
pub mod server_tools;
pub mod sessions;
pub mod tasks;
pub mod usage;

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context;
use axum::Router;
use axum::routing::{get, post};

pub use crate::app::AppState;
use crate::config::Config;
use crate::provider::Format;

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
        .route("/v1/usage", get(usage::handle))
        .route("/v1/feedback", post(feedback::handle))
        .route("/v1/models", get(admin::models))
        .route("/v1/models/{*id}", get(admin::model))
        .route("/healthz", get(admin::healthz))
        .merge(
            Router::new()
                .route("/v1/policies", get(admin::policies))
                .route("/v1/config", get(admin::config))
                .route("/v1/providers", get(admin::providers))
                .route("/v1/rollouts", get(rollouts::status).post(rollouts::start))
                .route("/v1/rollouts/{world}/promote", post(rollouts::promote))
                .route("/v1/rollouts/{world}/abort", post(rollouts::abort))
                .route("/v1/rollouts/{world}/diff", get(rollouts::shadow_diff))
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
        match state.tasks.interrupt_left().await {
            Ok(n) => tracing::warn!("{n} task(s) marked interrupted in the ledger"),
            Err(e) => tracing::error!("tasks left at shutdown could not be marked: {e}"),
        }
    }
    // Journaled records go into the store now rather than at the next
    // start.
    state.ledger.close().await;
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

//! Read-only endpoints: models, policies, health, metrics.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::AppState;
use super::error::{ApiError, ErrorKind};
use crate::provider::Format;

/// Lets a request through to an admin endpoint only with the admin key
/// (when one is configured).
pub async fn require_admin(
    State(state): State<Arc<AppState>>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    match state.auth.check_admin(request.headers()) {
        Ok(()) => next.run(request).await,
        Err(error) => error.into_response(Format::OpenAi),
    }
}

/// `GET /v1/models`: the catalog, in the OpenAI list format.
pub async fn models(State(state): State<Arc<AppState>>) -> Json<serde_json::Value> {
    let created = crate::provider::unix_now();
    let mut data: Vec<serde_json::Value> = state
        .config
        .aliases
        .iter()
        .map(|alias| json!({"id": alias, "object": "model", "created": created, "owned_by": "pointsman"}))
        .collect();
    data.extend(state.catalog().into_iter().map(|m| {
        json!({
            "id": m.id,
            "object": "model",
            "created": created,
            "owned_by": "pointsman",
            "context_window": m.context_window,
            "roles": m.roles,
            "input_usd_per_mtok": m.input_usd_per_mtok,
            "output_usd_per_mtok": m.output_usd_per_mtok,
            "available": m.available,
        })
    }));
    Json(json!({"object": "list", "data": data}))
}

/// `GET /v1/policies`: loaded modules and their last errors.
pub async fn policies(State(state): State<Arc<AppState>>) -> Json<serde_json::Value> {
    let router = state.policies.router().map(|m| m.info.id());
    let planner = state.policies.planner().map(|m| m.info.id());
    Json(json!({
        "router": router,
        "planner": planner,
        "modules": state.policies.registry.status(),
    }))
}

/// `GET /v1/providers`: every model's endpoints with breaker state,
/// success rate, median latency and requests in flight.
pub async fn providers(State(state): State<Arc<AppState>>) -> Json<serde_json::Value> {
    let models: Vec<serde_json::Value> = state
        .config
        .models
        .iter()
        .filter_map(|m| state.resilience.pool(&m.id).map(|pool| (m, pool)))
        .map(|(m, pool)| {
            let endpoints: Vec<serde_json::Value> = pool
                .endpoints()
                .iter()
                .map(|e| {
                    json!({
                        "provider": e.provider,
                        "upstream": e.upstream,
                        "breaker": e.breaker.state(),
                        "trips": e.breaker.trips(),
                        "success_rate": e.breaker.success_rate(),
                        "p50_latency_ms": e.p50().map(|d| d.as_millis() as u64),
                        "in_flight": e.in_flight(),
                    })
                })
                .collect();
            json!({"model": m.id, "balance": m.balance, "available": pool.available(), "endpoints": endpoints})
        })
        .collect();
    Json(json!({"models": models}))
}

/// `GET /healthz`.
pub async fn healthz(State(state): State<Arc<AppState>>) -> Response {
    let router = state.policies.router().is_some();
    let status = if router {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (
        status,
        Json(json!({"status": if router { "ok" } else { "no router policy loaded" }})),
    )
        .into_response()
}

/// `GET /metrics`: Prometheus text format.
pub async fn metrics(State(state): State<Arc<AppState>>) -> Response {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        state.metrics_text(),
    )
        .into_response()
}

/// Anything else: a 404 in the OpenAI format (the common denominator).
pub async fn not_found(uri: axum::http::Uri) -> Response {
    ApiError::new(ErrorKind::NotFound, format!("no route for {}", uri.path()))
        .into_response(Format::OpenAi)
}

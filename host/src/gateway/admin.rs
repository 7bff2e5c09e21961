//! Read-only endpoints: models, policies, health, metrics.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::AppState;
use super::error::{ApiError, ErrorKind};
use crate::config::ModelTarget;
use crate::policy::types::ModelInfo;
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

/// Whether a request asks in Anthropic's way: Anthropic's SDKs and Claude
/// Code send `anthropic-version`, and their key as `x-api-key`.
pub fn asks_anthropic_way(headers: &HeaderMap) -> bool {
    headers.contains_key("anthropic-version")
        || (headers.contains_key("x-api-key") && !headers.contains_key(header::AUTHORIZATION))
}

/// `GET /v1/models`: the aliases and the catalog, in Anthropic's list
/// format when asked Anthropic's way ([`asks_anthropic_way`]), else in
/// OpenAI's.
pub async fn models(State(state): State<Arc<AppState>>, headers: HeaderMap) -> Response {
    if asks_anthropic_way(&headers) {
        let ids: Vec<&str> = state
            .config
            .aliases
            .iter()
            .map(String::as_str)
            .chain(state.config.models.iter().map(|m| m.id.as_str()))
            .collect();
        let data: Vec<serde_json::Value> = ids.iter().map(|id| anthropic_model(id)).collect();
        return Json(json!({
            "data": data,
            "has_more": false,
            "first_id": ids.first(),
            "last_id": ids.last(),
        }))
        .into_response();
    }
    let created = crate::provider::unix_now();
    let mut data: Vec<serde_json::Value> = state
        .config
        .aliases
        .iter()
        .map(|alias| json!({"id": alias, "object": "model", "created": created, "owned_by": "pointsman"}))
        .collect();
    data.extend(
        state
            .dispatch
            .catalog()
            .into_iter()
            .map(|m| openai_catalog_model(m, created)),
    );
    Json(json!({"object": "list", "data": data})).into_response()
}

/// `GET /v1/models/{id}`: one model, in Anthropic's format when asked
/// Anthropic's way, else in OpenAI's. The id resolves as a chat request's
/// `model` does ([`Config::resolve_model`]): an alias, a catalog id, or a
/// name a `[[model_names]]` rule maps; the answer keeps the id asked (the
/// SDKs check it) and an OpenAI-format one says what it resolves to. An id
/// nothing resolves is the chat APIs' 404, in the format asked.
///
/// [`Config::resolve_model`]: crate::config::Config::resolve_model
pub async fn model(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    let format = if asks_anthropic_way(&headers) {
        Format::Anthropic
    } else {
        Format::OpenAi
    };
    let Some(resolved) = state.config.resolve_model(&id) else {
        return super::chat::unknown_model(&state, &id).into_response(format);
    };
    if format == Format::Anthropic {
        return Json(anthropic_model(&id)).into_response();
    }
    let created = crate::provider::unix_now();
    let mut object = match resolved.target {
        ModelTarget::Catalog(catalog_id) => state
            .dispatch
            .catalog()
            .into_iter()
            .find(|m| m.id == catalog_id)
            .map(|m| openai_catalog_model(m, created)),
        ModelTarget::Router(_) => None,
    }
    .unwrap_or_else(|| {
        json!({"id": resolved.name(), "object": "model", "created": created, "owned_by": "pointsman"})
    });
    if let Some(pattern) = resolved.pattern {
        object["id"] = json!(id);
        object["resolves_to"] = json!(resolved.name());
        object["model_names_pattern"] = json!(pattern);
    }
    Json(object).into_response()
}

/// A catalog model as an OpenAI model object, with what the catalog knows
/// of it.
fn openai_catalog_model(m: ModelInfo, created: u64) -> serde_json::Value {
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
}

/// A model object of Anthropic's `GET /v1/models`. The catalog has no
/// release dates: `created_at` is the Unix epoch.
fn anthropic_model(id: &str) -> serde_json::Value {
    json!({"type": "model", "id": id, "display_name": id, "created_at": "1970-01-01T00:00:00Z"})
}

/// `GET /v1/config`: which configuration serves: its file, the SHA-256 of
/// its text, when it was loaded, and what it serves (the summary of
/// `pointsman config check`; it holds no secret: keys are environment
/// variables, files or hashes).
pub async fn config(State(state): State<Arc<AppState>>) -> Json<serde_json::Value> {
    let loaded = &state.loaded;
    Json(json!({
        "source": loaded.source.as_ref().map(|p| p.display().to_string()),
        "sha256": loaded.sha256,
        "loaded_at": crate::policy::module::unix_seconds::of(&loaded.at),
        "summary": crate::config::check::summary(&state.config),
    }))
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
        .filter_map(|m| state.dispatch.resilience().pool(&m.id).map(|pool| (m, pool)))
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

/// `GET /healthz`: 200 while the daemon can serve, else 503 with why: no
/// router policy loaded, or a ledger that cannot record new work under
/// `[ledger] on_unavailable = "refuse"` (a load balancer then sends
/// traffic to a replica that can record it).
pub async fn healthz(State(state): State<Arc<AppState>>) -> Response {
    use crate::ledger::Health;
    let router = state.policies.router().is_some();
    let admits = state.dispatch.admit();
    let ledger = match state.dispatch.ledger().health() {
        Health::Ok => json!({"status": "ok"}),
        Health::Unavailable { reason, since_ms } => {
            json!({"status": "unavailable", "reason": reason, "since_ms": since_ms})
        }
        Health::Backlogged { queued } => json!({"status": "backlogged", "queued": queued}),
    };
    let status = match (router, &admits) {
        (true, Ok(())) => "ok".to_string(),
        (false, _) => "no router policy loaded".to_string(),
        (true, Err(reason)) => reason.clone(),
    };
    let code = if router && admits.is_ok() {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (code, Json(json!({"status": status, "ledger": ledger}))).into_response()
}

/// `GET /metrics`: Prometheus text format.
pub async fn metrics(State(state): State<Arc<AppState>>) -> Response {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        state.metrics_text(),
    )
        .into_response()
}

/// Anything else: a 404, in Anthropic's format under `/v1/messages` or when
/// asked Anthropic's way, else in OpenAI's (the common denominator).
pub async fn not_found(uri: axum::http::Uri, headers: HeaderMap) -> Response {
    ApiError::new(ErrorKind::NotFound, format!("no route for {}", uri.path()))
        .into_response(error_format(&uri, &headers))
}

/// A known path asked with the wrong method: a 405 in the path's format.
pub async fn method_not_allowed(
    method: axum::http::Method,
    uri: axum::http::Uri,
    headers: HeaderMap,
) -> Response {
    ApiError::new(
        ErrorKind::MethodNotAllowed,
        format!("{} does not take {method}", uri.path()),
    )
    .into_response(error_format(&uri, &headers))
}

/// The format of errors for a request to `uri`.
fn error_format(uri: &axum::http::Uri, headers: &HeaderMap) -> Format {
    if uri.path().starts_with("/v1/messages") || asks_anthropic_way(headers) {
        Format::Anthropic
    } else {
        Format::OpenAi
    }
}

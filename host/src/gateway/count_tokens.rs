//! `POST /v1/messages/count_tokens`: Anthropic's token counting, which
//! Claude Code calls to size its context. The request's model is resolved
//! as for `/v1/messages`; when the model that would serve it is on an
//! Anthropic upstream, that upstream counts, otherwise the gateway counts
//! with its own tokenizer (the count a policy sees as `input_tokens`).

use std::sync::Arc;

use axum::Json;
use axum::body::Body;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};

use super::AppState;
use super::error::{ApiError, ErrorKind};
use crate::config::ModelTarget;
use crate::features::{self, RequestContext};
use crate::provider::Format;
use crate::provider::wire::anthropic::CountTokensRequest;

/// Handles `POST /v1/messages/count_tokens`; errors in Anthropic's format.
pub async fn handle(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    match count(&state, &headers, body).await {
        Ok(tokens) => Json(json!({"input_tokens": tokens})).into_response(),
        Err(error) => error.into_response(Format::Anthropic),
    }
}

async fn count(state: &AppState, headers: &HeaderMap, body: Body) -> Result<u64, ApiError> {
    // Counting is a request like any other against the client's limits.
    let (_admission, _client) = super::chat::admit(state, headers)?;
    let bytes = super::body::read(
        body,
        state.config.max_body_bytes,
        std::time::Duration::from_millis(state.config.server.body_timeout_ms),
    )
    .await?;
    let value: Value = serde_json::from_slice(&bytes)
        .map_err(|e| ApiError::invalid(format!("the body is not valid JSON: {e}")))?;
    let request = CountTokensRequest::deserialize(&value)
        .map_err(|e| ApiError::invalid(format!("invalid request: {e}")))?;
    if request.messages.is_empty() {
        return Err(ApiError::invalid("`messages` must not be empty"));
    }
    let ctx = RequestContext {
        id: "count_tokens".into(),
        labels: Vec::new(),
        session: features::header_session(headers),
    };
    let features = features::from_count_tokens(&request, ctx);
    let resolved = state.config.resolve_model(&request.model).ok_or_else(|| {
        ApiError::new(
            ErrorKind::ModelNotFound,
            format!(
                "the model `{}` does not exist",
                request.model.chars().take(100).collect::<String>()
            ),
        )
    })?;
    let model_id = match resolved.target {
        ModelTarget::Catalog(id) if !state.config.policy_overrides_named_models => id.to_string(),
        _ => {
            let mut routed = features.clone();
            routed.requested_model = resolved.name().to_string();
            state
                .policies
                .decide(&routed, &state.dispatch.catalog())
                .await
                .route
                .executor
        }
    };
    let local = features.input_tokens as u64;
    let Some(model) = state.dispatch.model(&model_id) else {
        return Ok(local);
    };
    let betas = headers.get("anthropic-beta").and_then(|v| v.to_str().ok());
    match state.dispatch.count_tokens(model, request, betas).await {
        None => Ok(local),
        Some(Ok(tokens)) => Ok(tokens),
        Some(Err(error)) => {
            tracing::warn!(
                model = %model.id,
                "the upstream could not count tokens, counting locally: {error}"
            );
            Ok(local)
        }
    }
}

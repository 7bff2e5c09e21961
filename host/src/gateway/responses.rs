//! `POST /v1/responses`: the OpenAI Responses API, as Codex CLI speaks it.
//!
//! The request is translated into a chat-completions body at the edge and
//! served by the same pipeline as `/v1/chat/completions` (model resolution,
//! routing, plan mode, fallbacks, pricing); the answer comes back as a
//! response object or as Responses events (see [`super::responses_relay`]).
//! It is stateless: nothing is stored, and a request that needs stored
//! state is refused. Errors are in OpenAI's shape.
//!
//! When the route's model is on a provider that speaks the Responses API
//! itself (`responses = true`), that provider is sent the client's own
//! body instead, and its answer is relayed as it came
//! ([`crate::provider::passthrough`]); the translation still decides the
//! route, and serves any fallback on a chat-only provider.
//!
//! The session that plan mode keys its plans on is, in order: the
//! `x-pointsman-session` header, `prompt_cache_key` (Codex sets it to its
//! session id), then Codex's `session_id` header (sent as `session-id` or
//! `session_id`).

use std::sync::Arc;

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use super::AppState;
use super::chat::{self, Inbound};
use super::error::ApiError;
use crate::provider::passthrough::NativeRequest;
use crate::provider::wire::responses::ResponsesRequest;
use crate::provider::wire::translate::{ResponseFrame, responses_request_to_chat};
use crate::provider::{Format, unix_now};

/// Headers Codex CLI sends its session id in.
const SESSION_HEADERS: [&str; 2] = ["session-id", "session_id"];

/// Handles `POST /v1/responses`.
pub async fn handle(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let started = std::time::Instant::now();
    let result = match chat::admit(&state, &headers) {
        Ok((admission, client)) => serve(&state, client, &headers, body).await.map(|response| {
            super::inflight::finish_when_sent(response, admission, "responses", started)
        }),
        Err(error) => Err(error),
    };
    match result {
        Ok(response) => response,
        Err(error) => {
            crate::metrics::request_duration(
                "responses",
                "none",
                "error",
                started.elapsed().as_secs_f64(),
            );
            crate::metrics::request_failed("openai", error.status().as_u16());
            error.into_response(Format::OpenAi)
        }
    }
}

async fn serve(
    state: &AppState,
    client: super::auth::Client,
    headers: &HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let (read, value) = chat::read_request(state, body).await?;
    let request = ResponsesRequest::deserialize(&value)
        .map_err(|e| ApiError::invalid(format!("invalid request: {e}")))?;
    // The client's own body is kept only when an upstream could be sent it.
    let native = state
        .dispatch
        .speaks_responses()
        .then(|| NativeRequest::new(value))
        .flatten();
    let session = session(headers, &request);
    let id = chat::request_id();
    let frame_request = request.clone();
    // Every translation error is the request's: a 400 saying what to change.
    let translated =
        responses_request_to_chat(request).map_err(|e| ApiError::invalid(e.to_string()))?;
    let frame = ResponseFrame::new(
        format!("resp_{id}"),
        unix_now(),
        &frame_request,
        translated.tools,
    );
    let chat_body = serde_json::to_value(&translated.request)
        .map_err(|e| ApiError::invalid(format!("invalid request: {e}")))?;
    let inbound = Inbound {
        session,
        responses: Some(Arc::new(frame)),
        native,
        large: read.large,
    };
    let mut response = chat::serve_value(
        state,
        Format::OpenAi,
        headers,
        client,
        id,
        chat::ChatBody::Value(chat_body),
        inbound,
    )
    .await?;
    let passed_through = response.headers().contains_key("x-pointsman-passthrough");
    if !translated.dropped_tools.is_empty() && !passed_through {
        // Hosted tools a chat model cannot run were left out: say which.
        if let Ok(value) = HeaderValue::from_str(&translated.dropped_tools.join(", ")) {
            response
                .headers_mut()
                .insert("x-pointsman-dropped-tools", value);
        }
    }
    Ok(response.into_response())
}

/// The session of a Responses request (see the module docs); the
/// `x-pointsman-session` header is read by the chat pipeline first.
fn session(headers: &HeaderMap, request: &ResponsesRequest) -> Option<String> {
    request
        .prompt_cache_key
        .clone()
        .filter(|k| !k.is_empty())
        .or_else(|| {
            SESSION_HEADERS.iter().find_map(|name| {
                headers
                    .get(*name)
                    .and_then(|v| v.to_str().ok())
                    .filter(|v| !v.is_empty())
                    .map(str::to_string)
            })
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn request(body: serde_json::Value) -> ResponsesRequest {
        serde_json::from_value(body).unwrap()
    }

    #[test]
    fn the_session_is_the_prompt_cache_key_then_codexs_header() {
        let mut headers = HeaderMap::new();
        headers.insert("session-id", HeaderValue::from_static("from-header"));
        let keyed =
            request(json!({"model": "auto", "input": "hi", "prompt_cache_key": "from-key"}));
        assert_eq!(session(&headers, &keyed).as_deref(), Some("from-key"));
        let unkeyed = request(json!({"model": "auto", "input": "hi"}));
        assert_eq!(session(&headers, &unkeyed).as_deref(), Some("from-header"));
        assert_eq!(session(&HeaderMap::new(), &unkeyed), None);
    }
}

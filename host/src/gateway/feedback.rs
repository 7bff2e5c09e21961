//! `POST /v1/feedback`: a client scores one of its requests, tasks or
//! sessions; entries go to the ledger, any number per target, for reports
//! and for judging policies offline.
//!
//! ```json
//! {"request_id": "req_…", "score": 1.0, "labels": {"tests_passed": "true"}}
//! ```
//! exactly one of `request_id`, `task_id`, `session`; `score` from 0 (bad)
//! to 1 (good), or `"thumbs": "up"` (1) / `"down"` (0). A client can score only its own requests and tasks (anyone
//! else's id is a 404, as if it did not exist); a session is scored as the
//! client's own.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::Json;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;

use super::AppState;
use super::error::{ApiError, ErrorKind};
use crate::ledger::record::{FeedbackRecord, FeedbackTarget};
use crate::provider::Format;

/// Largest feedback body.
const MAX_BODY_BYTES: usize = 64 << 10;
/// Most labels on one entry.
const MAX_LABELS: usize = 32;
/// Longest id, session, label name or value, in bytes.
const MAX_FIELD_BYTES: usize = 256;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FeedbackInput {
    request_id: Option<String>,
    task_id: Option<String>,
    session: Option<String>,
    score: Option<f64>,
    thumbs: Option<Thumbs>,
    #[serde(default)]
    labels: BTreeMap<String, String>,
}

/// A thumbs-up or -down, for clients with no finer score.
#[derive(Deserialize, Clone, Copy)]
#[serde(rename_all = "lowercase")]
enum Thumbs {
    Up,
    Down,
}

/// `POST /v1/feedback`: 201 once the entry is committed.
pub async fn handle(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    match record(&state, &headers, body).await {
        Ok(target) => (
            StatusCode::CREATED,
            Json(json!({"recorded": true, "target": target})),
        )
            .into_response(),
        Err(error) => error.into_response(Format::OpenAi),
    }
}

async fn record(
    state: &AppState,
    headers: &HeaderMap,
    body: Body,
) -> Result<FeedbackTarget, ApiError> {
    let client = state.auth.check(headers)?;
    let bytes = super::body::read(
        body,
        MAX_BODY_BYTES.min(state.config.max_body_bytes),
        std::time::Duration::from_millis(state.config.server.body_timeout_ms),
    )
    .await?;
    let input: FeedbackInput = serde_json::from_slice(&bytes)
        .map_err(|e| ApiError::invalid(format!("invalid feedback: {e}")))?;
    let score = match (input.score, input.thumbs) {
        (Some(score), None) if score.is_finite() && (0.0..=1.0).contains(&score) => score,
        (Some(_), None) => {
            return Err(ApiError::invalid(
                "`score` must be from 0 (bad) to 1 (good)",
            ));
        }
        (None, Some(Thumbs::Up)) => 1.0,
        (None, Some(Thumbs::Down)) => 0.0,
        _ => {
            return Err(ApiError::invalid(
                "give `score` (0 bad to 1 good) or `thumbs` (\"up\" or \"down\"), one of them",
            ));
        }
    };
    if input.labels.len() > MAX_LABELS {
        return Err(ApiError::invalid(format!(
            "at most {MAX_LABELS} labels, not {}",
            input.labels.len()
        )));
    }
    let fields = input
        .labels
        .iter()
        .flat_map(|(k, v)| [k, v])
        .chain(&input.request_id)
        .chain(&input.task_id)
        .chain(&input.session);
    for field in fields {
        if field.is_empty() || field.len() > MAX_FIELD_BYTES {
            return Err(ApiError::invalid(format!(
                "ids, sessions and labels must be 1 to {MAX_FIELD_BYTES} bytes"
            )));
        }
    }
    let target = match (input.request_id, input.task_id, input.session) {
        (Some(id), None, None) => FeedbackTarget::Request(id),
        (None, Some(id), None) => FeedbackTarget::Task(id),
        (None, None, Some(session)) => FeedbackTarget::Session(session),
        _ => {
            return Err(ApiError::invalid(
                "name exactly one of `request_id`, `task_id` or `session`",
            ));
        }
    };
    let ledger = state.dispatch.ledger();
    let unavailable = |e: crate::ledger::LedgerError| {
        ApiError::new(
            ErrorKind::Overloaded,
            format!("the ledger cannot take feedback now: {e}"),
        )
    };
    if let FeedbackTarget::Request(id) | FeedbackTarget::Task(id) = &target {
        let owner = ledger.request_client(id).await.map_err(unavailable)?;
        if owner.as_deref() != Some(client.owner.as_str()) {
            return Err(ApiError::new(
                ErrorKind::NotFound,
                format!("no request or task {id:?} of yours is on record"),
            ));
        }
    }
    ledger
        .add_feedback(FeedbackRecord {
            target: target.clone(),
            client: client.owner.as_str().to_string(),
            score,
            labels: input.labels,
            at_ms: crate::dispatch::unix_ms(),
        })
        .await
        .map_err(unavailable)?;
    Ok(target)
}

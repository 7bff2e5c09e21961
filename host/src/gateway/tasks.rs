//! The task API: `POST /v1/tasks`, `GET /v1/tasks/{id}`,
//! `GET /v1/tasks/{id}/events` (SSE), `DELETE /v1/tasks/{id}`.

use std::convert::Infallible;
use std::sync::Arc;

use axum::Json;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use futures::StreamExt;

use super::AppState;
use super::error::{ApiError, ErrorKind};
use crate::config::TasksConfig;
use crate::ledger::record::TaskStatus;
use crate::orchestrator::task::{EventKind, TaskEvent, TaskInput};
use crate::provider::Format;
use crate::provider::async_stream;

/// `POST /v1/tasks`: accepts a task and starts it; 202 with its record.
pub async fn submit(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let result = async {
        let client = state.auth.check(&headers)?;
        super::chat::ledger_admits(&state)?;
        // A task is one request against the client's rate; it runs in the
        // background, bounded by `[tasks] max_per_client` instead.
        drop(state.limits.admit(&client)?);
        let bytes = super::body::read(
            body,
            state.config.max_body_bytes,
            std::time::Duration::from_millis(state.config.server.body_timeout_ms),
        )
        .await?;
        let mut input: TaskInput = serde_json::from_slice(&bytes)
            .map_err(|e| ApiError::invalid(format!("invalid task: {e}")))?;
        check_bounds(&state.config.tasks, &input)?;
        input.labels = client.labels_with(input.labels).into_iter().collect();
        refuse_if_spent(&state, &client, &input).await?;
        let handle = state
            .tasks
            .submit(state.orchestrator(), client.owner, input)
            .map_err(|e| {
                let mut error = ApiError::new(ErrorKind::RateLimited, e.to_string());
                error.retry_after = Some(10);
                error
            })?;
        Ok::<_, ApiError>((StatusCode::ACCEPTED, Json(handle.record())).into_response())
    }
    .await;
    result.unwrap_or_else(|e| e.into_response(Format::OpenAi))
}

/// `GET /v1/tasks/{id}`: the live task when this daemon runs it, else its
/// record in the ledger (another replica's task, or one from before a
/// restart, marked `interrupted`).
pub async fn get(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    match find(&state, &headers, &id).await {
        Ok(Found::Here(handle)) => Json(handle.record()).into_response(),
        Ok(Found::Recorded(record)) => Json(record.body).into_response(),
        Err(e) => e.into_response(Format::OpenAi),
    }
}

/// `DELETE /v1/tasks/{id}`: cancels the task and its calls in flight. A
/// task another replica runs is cancelled there; one that has ended
/// answers its record.
pub async fn cancel(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    match find(&state, &headers, &id).await {
        Ok(Found::Here(handle)) => {
            handle.cancel.cancel();
            Json(handle.record()).into_response()
        }
        Ok(Found::Recorded(record)) if record.status.is_final() => {
            Json(record.body).into_response()
        }
        Ok(Found::Recorded(record)) => ApiError::invalid(format!(
            "task {id:?} runs on replica {:?}: cancel it there",
            record.replica
        ))
        .into_response(Format::OpenAi),
        Err(e) => e.into_response(Format::OpenAi),
    }
}

/// `GET /v1/tasks/{id}/events`: past events, then live ones, as SSE; the
/// stream ends when the task does.
pub async fn events(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    let handle = match find(&state, &headers, &id).await {
        Ok(Found::Here(handle)) => handle,
        Ok(Found::Recorded(record)) => return recorded_events(record),
        Err(e) => return e.into_response(Format::OpenAi),
    };
    let (past, mut live) = handle.subscribe();
    let done = handle.record().status.is_final();
    let body = async_stream(move |tx| async move {
        let send = |event: TaskEvent| {
            let tx = tx.clone();
            async move {
                let data = serde_json::to_string(&event.data).unwrap_or_default();
                let bytes =
                    Bytes::from(format!("event: {}\ndata: {data}\n\n", event.kind.as_str()));
                tx.send(Ok::<_, Infallible>(bytes)).await.is_ok()
            }
        };
        let mut finished = done;
        for event in past {
            if !send(event).await {
                return;
            }
        }
        while !finished {
            match live.recv().await {
                Ok(event) => {
                    finished = event.kind == EventKind::Status
                        && event.data["status"]
                            .as_str()
                            .and_then(TaskStatus::parse)
                            .is_some_and(TaskStatus::is_final);
                    if !send(event).await {
                        return;
                    }
                }
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => continue,
                Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
            }
        }
    });
    let mut response = Response::new(Body::from_stream(body.map(|b| b)));
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    response
}

/// Where a task was found.
enum Found {
    /// This daemon runs (or ran) it: live events, cancellable.
    Here(Arc<crate::orchestrator::task::TaskHandle>),
    /// Only its record in the ledger.
    Recorded(crate::ledger::record::TaskRecord),
}

/// The task `id` of the client presenting `headers`, here or in the
/// ledger; another client's task is a 404 like one that never existed.
async fn find(state: &AppState, headers: &HeaderMap, id: &str) -> Result<Found, ApiError> {
    let client = state.auth.check(headers)?;
    if let Some(handle) = state.tasks.get(&client.owner, id) {
        return Ok(Found::Here(handle));
    }
    let not_found = || {
        let shown: String = id.chars().take(64).collect();
        ApiError::new(ErrorKind::NotFound, format!("no task {shown:?}"))
    };
    // Ids are ours (bounded, URL-safe); anything longer is no task of
    // ours and not worth a query.
    if id.len() > MAX_TASK_ID_BYTES {
        return Err(not_found());
    }
    match state.dispatch.ledger().task(id).await {
        Ok(Some(record)) if record.client == client.owner.as_str() => Ok(Found::Recorded(record)),
        Ok(_) => Err(not_found()),
        Err(e) => Err(ApiError::new(
            ErrorKind::Overloaded,
            format!("task {id:?} is not on this replica and the ledger cannot be read now: {e}"),
        )),
    }
}

/// Longest task id looked up in the ledger.
const MAX_TASK_ID_BYTES: usize = 128;

/// The events of a task this daemon does not run: its recorded outcome,
/// as the `status` event that ends a live stream, then the end.
fn recorded_events(record: crate::ledger::record::TaskRecord) -> Response {
    let data = serde_json::json!({
        "status": record.status,
        "replica": record.replica,
        "task": record.body,
    });
    let body = format!("event: {}\ndata: {data}\n\n", EventKind::Status.as_str());
    let mut response = Response::new(Body::from(body));
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    response
}

/// A 429 `budget_exceeded` for a task whose client or label budget has
/// nothing left: each of its calls would be refused anyway, so the client
/// hears it now, in the API's shape, instead of from a task that ends
/// `budget_exceeded` having done nothing. The check is the calls' own
/// mechanism (a reservation of one nano-USD, given back at once), so it
/// sees other calls' holds and, on PostgreSQL, other replicas'.
async fn refuse_if_spent(
    state: &AppState,
    client: &super::auth::Client,
    input: &TaskInput,
) -> Result<(), ApiError> {
    let scopes = state.dispatch.budget_scopes(
        client.owner.as_str(),
        input.labels.iter().map(|(k, v)| (k.as_str(), v.as_str())),
    );
    if scopes.is_empty() {
        return Ok(());
    }
    let ledger = state.dispatch.ledger();
    let reservation = ledger
        .reserve(&scopes, 1)
        .await
        .map_err(|e| ApiError::from_reserve(e, crate::dispatch::unix_ms()))?;
    ledger.release(reservation).await;
    Ok(())
}

/// A task's fields within `[tasks]`'s bounds.
fn check_bounds(bounds: &TasksConfig, input: &TaskInput) -> Result<(), ApiError> {
    if input.description.trim().is_empty() {
        return Err(ApiError::invalid("`description` must not be empty"));
    }
    for (field, len, most) in [
        ("title", input.title.len(), bounds.max_title_bytes),
        (
            "description",
            input.description.len(),
            bounds.max_description_bytes,
        ),
    ] {
        if len > most {
            return Err(ApiError::new(
                ErrorKind::TooLarge,
                format!(
                    "`{field}` is {len} bytes, over the limit of {most} ([tasks] max_{field}_bytes)"
                ),
            ));
        }
    }
    Ok(())
}

//! The rollout admin API (admin key): `GET /v1/rollouts` (status),
//! `POST /v1/rollouts` (start), `POST /v1/rollouts/{world}/promote|abort`,
//! `GET /v1/rollouts/{world}/diff` (what a shadow candidate would change).
//! `pointsman rollout …` speaks to these.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::Json;
use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::AppState;
use super::error::{ApiError, ErrorKind};
use crate::ledger::CallFilter;
use crate::ledger::report::window::{Edge, TimeSpec};
use crate::policy::World;
use crate::policy::rollout::{Refused, RolloutError, Spec, diff};
use crate::provider::Format;

/// Who the audit trail names for a rollout command made with the admin key.
const BY_ADMIN: &str = "the admin key";

fn error(e: RolloutError) -> ApiError {
    match e {
        RolloutError::Refused(Refused::Invalid(m)) => ApiError::invalid(m),
        RolloutError::Refused(Refused::Conflict(m)) => ApiError::new(ErrorKind::Conflict, m),
        RolloutError::Refused(Refused::NotFound(m)) => ApiError::new(ErrorKind::NotFound, m),
        RolloutError::Store(m) => {
            let mut e = ApiError::new(ErrorKind::Overloaded, m);
            e.retry_after = Some(5);
            e
        }
    }
}

fn world(name: &str) -> Result<World, ApiError> {
    match name {
        "router" => Ok(World::Router),
        "planner" => Ok(World::Planner),
        other => Err(ApiError::new(
            ErrorKind::NotFound,
            format!(
                "no rollout kind {:?}: use router or planner",
                other.chars().take(40).collect::<String>()
            ),
        )),
    }
}

fn respond(result: Result<Response, ApiError>) -> Response {
    result.unwrap_or_else(|e| e.into_response(Format::OpenAi))
}

/// `GET /v1/rollouts`: every rollout on record (running or the last ended
/// one per kind), with whether this replica has its pinned modules.
pub async fn status(State(state): State<Arc<AppState>>) -> Response {
    let rollouts = state.policies.rollouts();
    // Another replica may have moved it since this one last evaluated.
    if let Err(e) = rollouts.tick_read().await {
        return error(e).into_response(Format::OpenAi);
    }
    Json(json!({"rollouts": rollouts.status()})).into_response()
}

/// `POST /v1/rollouts`: starts a rollout. Body: `{"world": "router",
/// "candidate": "seed-matrix", "steps": [10, 50, 95], "hold": "1h",
/// "min_requests": 50, "shadow": false, "guards": {…}}`.
pub async fn start(
    State(state): State<Arc<AppState>>,
    body: Result<Json<Spec>, JsonRejection>,
) -> Response {
    respond(
        async {
            let Json(spec) =
                body.map_err(|e| ApiError::invalid(format!("bad rollout: {}", e.body_text())))?;
            let configured = state.policies.configured(spec.world).to_string();
            let rollout = state
                .policies
                .rollouts()
                .start(&spec, &configured, BY_ADMIN)
                .await
                .map_err(error)?;
            let status = state.policies.rollouts().describe(&rollout);
            Ok((StatusCode::CREATED, Json(status)).into_response())
        }
        .await,
    )
}

/// An operator's command on a running rollout.
#[derive(Clone, Copy)]
enum Command {
    Promote,
    Abort,
}

/// `POST /v1/rollouts/{world}/promote`.
pub async fn promote(state: State<Arc<AppState>>, kind: Path<String>) -> Response {
    command(state, kind, Command::Promote).await
}

/// `POST /v1/rollouts/{world}/abort`.
pub async fn abort(state: State<Arc<AppState>>, kind: Path<String>) -> Response {
    command(state, kind, Command::Abort).await
}

async fn command(
    State(state): State<Arc<AppState>>,
    Path(kind): Path<String>,
    command: Command,
) -> Response {
    respond(
        async {
            let world = world(&kind)?;
            let rollouts = state.policies.rollouts();
            let rollout = match command {
                Command::Promote => rollouts.promote(world, BY_ADMIN).await,
                Command::Abort => rollouts.abort(world, BY_ADMIN).await,
            }
            .map_err(error)?;
            Ok(Json(rollouts.describe(&rollout)).into_response())
        }
        .await,
    )
}

/// `GET /v1/rollouts/{world}/diff?since=…&until=…`: what the shadow
/// candidate would have changed (default window: since the rollout
/// started). Bounded by `[ledger] max_usage_calls`, as `/v1/usage` is.
pub async fn shadow_diff(
    State(state): State<Arc<AppState>>,
    Path(kind): Path<String>,
    params: Result<Query<BTreeMap<String, String>>, QueryRejection>,
) -> Response {
    respond(async {
        let world = world(&kind)?;
        let Query(params) =
            params.map_err(|e| ApiError::invalid(format!("invalid query string: {e}")))?;
        if let Some(k) = params.keys().find(|k| !["since", "until"].contains(&k.as_str())) {
            return Err(ApiError::invalid(format!(
                "unknown parameter {k:?}; accepted: since, until"
            )));
        }
        let rollout = state.policies.rollouts().current(world).ok_or_else(|| {
            ApiError::new(ErrorKind::NotFound, format!("no {world} rollout is on record"))
        })?;
        let now = crate::dispatch::unix_ms();
        let time = |name: &str, default: i64, edge: Edge| -> Result<i64, ApiError> {
            match params.get(name) {
                None => Ok(default),
                Some(v) => v
                    .parse::<TimeSpec>()
                    .map(|t| t.resolve(edge, now))
                    .map_err(|e| ApiError::invalid(format!("{name}: {e}"))),
            }
        };
        let filter = CallFilter {
            since_ms: time("since", rollout.started_ms, Edge::Since)?,
            until_ms: time("until", now + 1, Edge::Until)?,
            client: None,
        };
        let most = state.config.ledger.max_usage_calls;
        let calls = state
            .ledger
            .calls_at_most(&filter, most)
            .await
            .map_err(|e| ApiError::new(ErrorKind::Overloaded, e.to_string()))?
            .ok_or_else(|| {
                ApiError::new(
                    ErrorKind::TooLarge,
                    format!(
                        "the window holds more than {most} calls ([ledger] max_usage_calls): narrow it with since and until"
                    ),
                )
            })?;
        let prefix = format!("{}/", rollout.id);
        let calls: Vec<_> = calls
            .into_iter()
            .filter(|c| c.arm.as_deref().is_some_and(|a| a.starts_with(&prefix)))
            .collect();
        let dispatch = &state.dispatch;
        let d = diff::diff(&calls, |id| dispatch.model(id).map(|m| crate::ledger::Prices::from(&**m)));
        Ok(Json(json!({
            "rollout": rollout.id,
            "stable": rollout.stable.id(),
            "candidate": rollout.candidate.id(),
            "since_ms": filter.since_ms,
            "until_ms": filter.until_ms,
            "diff": d,
        }))
        .into_response())
    }
    .await)
}

//! `GET /v1/usage`: the report `pointsman report --format json` prints,
//! from the ledger of a running daemon.
//!
//! Who sees what: the admin key sees every client and may name one with
//! `client=`; a client key sees its own calls only (naming another client
//! is refused, not silently ignored). A daemon with neither an admin key
//! nor `[[clients]]` is a single user's loopback daemon: it shows every
//! call, as it shows `/metrics`.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};

use super::AppState;
use super::error::{ApiError, ErrorKind};
use crate::ledger::CallFilter;
use crate::ledger::report::{ReportQuery, aggregate};
use crate::provider::Format;

/// `GET /v1/usage?since=…&until=…&by=…&client=…`.
pub async fn handle(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    params: Result<Query<BTreeMap<String, String>>, QueryRejection>,
) -> Response {
    let format = if super::admin::asks_anthropic_way(&headers) {
        Format::Anthropic
    } else {
        Format::OpenAi
    };
    match usage(&state, &headers, params).await {
        Ok(report) => Json(report).into_response(),
        Err(error) => error.into_response(format),
    }
}

async fn usage(
    state: &AppState,
    headers: &HeaderMap,
    params: Result<Query<BTreeMap<String, String>>, QueryRejection>,
) -> Result<crate::ledger::report::Report, ApiError> {
    let Query(params) =
        params.map_err(|e| ApiError::invalid(format!("invalid query string: {e}")))?;
    let mut query = ReportQuery::from_params(&params, crate::dispatch::unix_ms())
        .map_err(|e| ApiError::invalid(e.to_string()))?;
    query.client = match sees_everyone(state, headers) {
        true => query.client,
        false => {
            let own = state.auth.check(headers)?.owner.as_str().to_string();
            if query.client.as_deref().is_some_and(|asked| asked != own) {
                return Err(ApiError::new(
                    ErrorKind::Authentication,
                    "only the admin key can read another client's usage; leave out `client` to read your own",
                ));
            }
            Some(own)
        }
    };
    let filter = CallFilter {
        since_ms: query.since_ms,
        until_ms: query.until_ms,
        client: query.client.clone(),
    };
    let most = state.config.ledger.max_usage_calls;
    let calls = state
        .dispatch
        .ledger()
        .calls_at_most(&filter, most)
        .await
        .map_err(|e| {
            ApiError::new(
                ErrorKind::Overloaded,
                format!("the ledger cannot be read now: {e}"),
            )
        })?
        .ok_or_else(|| {
            ApiError::new(
                ErrorKind::TooLarge,
                format!(
                    "the window holds more than {most} calls ([ledger] max_usage_calls); narrow `since`/`until`, or run `pointsman report` against the ledger"
                ),
            )
        })?;
    // A client scores only its own work: the same filter reads its
    // feedback.
    let feedback = state
        .dispatch
        .ledger()
        .feedback(&filter)
        .await
        .map_err(|e| {
            ApiError::new(
                ErrorKind::Overloaded,
                format!("the ledger cannot be read now: {e}"),
            )
        })?;
    let mut report = aggregate(&calls, &query);
    crate::ledger::report::add_feedback(&mut report, &calls, &feedback, &query.by);
    Ok(report)
}

/// Whether the caller may read every client's usage: it presents the admin
/// key, or the daemon has neither an admin key nor client keys.
fn sees_everyone(state: &AppState, headers: &HeaderMap) -> bool {
    if state.auth.has_admin() {
        state.auth.check_admin(headers).is_ok()
    } else {
        !state.auth.required()
    }
}

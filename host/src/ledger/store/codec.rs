//! Record fields to and from their stored form, shared by both backends.

use std::collections::BTreeMap;

use crate::ledger::record::{
    Api, AttemptRecord, CallRole, CallStatus, FeedbackRecord, FeedbackTarget, TaskStatus,
};

/// The `calls` columns in the order both backends select and insert them.
pub(crate) const CALL_COLUMNS: &str = "request_id, task_id, at_ms, client, labels, session, api, role, stream, requested_model, router, planner, tier, reasoning, served_model, provider, endpoint, attempts, escalated, input_tokens, output_tokens, cache_read_tokens, cache_write_tokens, cost_nanos, baseline_nanos, latency_ms, ttft_ms, status, error_class, arm, shadow, route_labels, policy_view";

/// Rows of `calls` one page of a read holds.
pub(crate) const PAGE: i64 = 2_000;

/// A token count as stored (counts past `i64::MAX` are capped).
pub(crate) fn count(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// A stored count back (negative ones, written by no Pointsman, read as 0).
pub(crate) fn uncount(n: i64) -> u64 {
    u64::try_from(n).unwrap_or(0)
}

/// A stored millisecond duration back.
pub(crate) fn millis(n: i64) -> u32 {
    u32::try_from(n.max(0)).unwrap_or(u32::MAX)
}

/// A string map as JSON text.
pub(crate) fn map_json(map: &BTreeMap<String, String>) -> String {
    if map.is_empty() {
        return "{}".to_string();
    }
    serde_json::to_string(map).unwrap_or_else(|_| "{}".to_string())
}

/// Attempts as JSON text.
pub(crate) fn attempts_json(attempts: &[AttemptRecord]) -> String {
    if attempts.is_empty() {
        return "[]".to_string();
    }
    serde_json::to_string(attempts).unwrap_or_else(|_| "[]".to_string())
}

/// JSON text back into a string map.
pub(crate) fn parse_map(column: &str, text: &str) -> Result<BTreeMap<String, String>, String> {
    serde_json::from_str(text)
        .map_err(|e| format!("column {column} is not a JSON object of strings: {e}"))
}

/// JSON text back into attempts.
pub(crate) fn parse_attempts(text: &str) -> Result<Vec<AttemptRecord>, String> {
    serde_json::from_str(text)
        .map_err(|e| format!("column attempts is not a JSON list of attempts: {e}"))
}

pub(crate) fn parse_api(s: &str) -> Result<Api, String> {
    Api::parse(s).ok_or_else(|| format!("unknown api {s:?}"))
}

pub(crate) fn parse_role(s: &str) -> Result<CallRole, String> {
    CallRole::parse(s).ok_or_else(|| format!("unknown call role {s:?}"))
}

pub(crate) fn parse_status(s: &str) -> Result<CallStatus, String> {
    CallStatus::parse(s).ok_or_else(|| format!("unknown call status {s:?}"))
}

/// A stored task status.
pub(crate) fn parse_task_status(s: &str) -> Result<TaskStatus, String> {
    TaskStatus::parse(s).ok_or_else(|| format!("unknown task status {s:?}"))
}

/// A feedback target as its stored kind and id.
pub(crate) fn target_parts(target: &FeedbackTarget) -> (&'static str, &str) {
    match target {
        FeedbackTarget::Request(id) => ("request", id),
        FeedbackTarget::Task(id) => ("task", id),
        FeedbackTarget::Session(id) => ("session", id),
    }
}

/// A stored kind and id back into a feedback target.
pub(crate) fn parse_target(kind: &str, id: String) -> Result<FeedbackTarget, String> {
    match kind {
        "request" => Ok(FeedbackTarget::Request(id)),
        "task" => Ok(FeedbackTarget::Task(id)),
        "session" => Ok(FeedbackTarget::Session(id)),
        other => Err(format!("unknown feedback target kind {other:?}")),
    }
}

/// A feedback row back.
pub(crate) fn feedback(
    kind: &str,
    id: String,
    client: String,
    score: f64,
    labels: &str,
    at_ms: i64,
) -> Result<FeedbackRecord, String> {
    Ok(FeedbackRecord {
        target: parse_target(kind, id)?,
        client,
        score,
        labels: parse_map("labels", labels)?,
        at_ms,
    })
}

/// Task statuses that `interrupt_tasks` ends and pruning keeps.
pub(crate) const LIVE_TASK_STATUSES: &str = "('running', 'queued', 'planning')";

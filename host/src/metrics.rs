//! Counters and histograms, exported for Prometheus at `/metrics`.
//!
//! Names follow Prometheus conventions (`_total` for counters, base units).

use std::collections::HashMap;
use std::sync::{Arc, LazyLock, RwLock};

use metrics::{Counter, Gauge};

use crate::ledger::Cost;
use crate::policy::PolicyError;
use crate::policy::types::{Route, Tier};
use crate::provider::{Format, Usage};

/// A policy's answer was replaced by the safe route.
pub fn policy_fallback(module: &str, error: &PolicyError) {
    let reason = match error {
        PolicyError::Rejected(_) => "rejected",
        PolicyError::Timeout(_) => "timeout",
        PolicyError::OutOfMemory => "memory",
        PolicyError::Trap(_) => "trap",
        PolicyError::WrongWorld(_) => "wrong_world",
        PolicyError::Invalid(_) => "invalid",
    };
    metrics::counter!("pointsman_policy_fallbacks_total", "module" => module.to_string(), "reason" => reason)
        .increment(1);
}

/// A module version started serving.
pub fn policy_loaded(module: &str) {
    metrics::counter!("pointsman_policy_loads_total", "module" => module.to_string()).increment(1);
}

/// A module failed to load; the previous version keeps serving.
pub fn policy_load_failed(module: &str) {
    metrics::counter!("pointsman_policy_load_failures_total", "module" => module.to_string())
        .increment(1);
}

/// Installs the Prometheus recorder (once per process) and returns its handle.
pub fn install() -> metrics_exporter_prometheus::PrometheusHandle {
    static HANDLE: std::sync::OnceLock<metrics_exporter_prometheus::PrometheusHandle> =
        std::sync::OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let recorder = metrics_exporter_prometheus::PrometheusBuilder::new().build_recorder();
            let handle = recorder.handle();
            // Another recorder may already be installed (an embedding
            // application's); then this handle renders only what it saw.
            let _ = metrics::set_global_recorder(recorder);
            handle
        })
        .clone()
}

fn api(format: Format) -> &'static str {
    match format {
        Format::OpenAi => "openai",
        Format::Anthropic => "anthropic",
    }
}

/// A request was answered.
pub fn request_served(format: Format, model: &str, route: &Route, usage: &Usage, cost: Cost) {
    let series = served(format, route.tier, model);
    series.requests.increment(1);
    series.input_tokens.increment(usage.input_tokens);
    series.output_tokens.increment(usage.output_tokens);
    series.spent_usd.increment(cost.usd);
    series.baseline_usd.increment(cost.baseline_usd);
}

/// The series a served request updates.
struct Served {
    requests: Counter,
    input_tokens: Counter,
    output_tokens: Counter,
    spent_usd: Gauge,
    baseline_usd: Gauge,
}

/// [`Served`] series by API and tier, then model. Registered once each:
/// building the labelled keys and finding them in the registry on every
/// request cost more than the increments. Models come from the
/// configuration, so this stays small.
type ServedSeries = HashMap<(Format, Tier), HashMap<String, Arc<Served>>>;

fn served(format: Format, tier: Tier, model: &str) -> Arc<Served> {
    static SERIES: LazyLock<RwLock<ServedSeries>> = LazyLock::new(Default::default);
    let known = SERIES
        .read()
        .unwrap_or_else(|p| p.into_inner())
        .get(&(format, tier))
        .and_then(|models| models.get(model))
        .cloned();
    if let Some(series) = known {
        return series;
    }
    let mut all = SERIES.write().unwrap_or_else(|p| p.into_inner());
    all.entry((format, tier))
        .or_default()
        .entry(model.to_string())
        .or_insert_with(|| {
            let labels = [
                ("api", api(format).to_string()),
                ("model", model.to_string()),
                ("tier", tier.as_str().to_string()),
            ];
            Arc::new(Served {
                requests: metrics::counter!("pointsman_requests_total", &labels),
                input_tokens: metrics::counter!("pointsman_input_tokens_total", &labels),
                output_tokens: metrics::counter!("pointsman_output_tokens_total", &labels),
                spent_usd: metrics::gauge!("pointsman_spent_usd", &labels),
                baseline_usd: metrics::gauge!("pointsman_baseline_usd", &labels),
            })
        })
        .clone()
}

/// A request got an error response.
pub fn request_failed(format: Format, status: u16) {
    metrics::counter!("pointsman_request_errors_total", "api" => api(format), "status" => status.to_string())
        .increment(1);
}

/// An upstream attempt failed.
pub fn upstream_failure(model: &str) {
    metrics::counter!("pointsman_upstream_failures_total", "model" => model.to_string())
        .increment(1);
}

/// The route's models all failed and the escalation model is tried;
/// `cause` says why (`upstream_fault`: errors, timeouts, malformed answers;
/// `endpoint_refused`: the gateway's key or model refused;
/// `circuit_open`: every breaker open, nothing asked).
pub fn escalation(model: &str, cause: &'static str) {
    metrics::counter!("pointsman_escalations_total", "model" => model.to_string(), "cause" => cause)
        .increment(1);
}

/// An endpoint's circuit breaker changed state.
pub fn breaker_state(model: &str, provider: &str, state: crate::resilience::breaker::State) {
    let value = match state {
        crate::resilience::breaker::State::Closed => 0.0,
        crate::resilience::breaker::State::HalfOpen => 1.0,
        crate::resilience::breaker::State::Open => 2.0,
    };
    metrics::gauge!("pointsman_breaker_state", "model" => model.to_string(), "provider" => provider.to_string())
        .set(value);
}

/// A task ended.
pub fn task_finished(
    status: crate::orchestrator::task::Status,
    record: &crate::orchestrator::task::TaskRecord,
) {
    let status = serde_json::to_value(status)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default();
    metrics::counter!("pointsman_tasks_total", "status" => status).increment(1);
    metrics::counter!("pointsman_subtasks_total").increment(record.subtasks.len() as u64);
    metrics::gauge!("pointsman_task_spent_usd").increment(record.spent_usd);
}

/// A subtask was done by the escalation model (the seed expects about 1%).
pub fn subtask_escalated() {
    metrics::counter!("pointsman_subtasks_escalated_total").increment(1);
}

/// Samples the Tokio runtime before a scrape: `pointsman_runtime_alive_tasks`
/// is the number of tasks alive (spawned and not finished), which a leak of
/// tasks would make grow (the soak test watches it).
pub fn sample_runtime() {
    if let Ok(handle) = tokio::runtime::Handle::try_current() {
        metrics::gauge!("pointsman_runtime_alive_tasks")
            .set(handle.metrics().num_alive_tasks() as f64);
    }
}

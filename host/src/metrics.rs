//! Counters and histograms, exported for Prometheus at `/metrics`.
//!
//! Names follow Prometheus conventions (`_total` for counters, base units).

use std::collections::HashMap;
use std::sync::{Arc, LazyLock, RwLock};

use metrics::{Counter, Histogram};

/// A policy's answer was replaced by the safe route, for `reason` (a
/// [`crate::policy::PolicyError::as_str`]).
pub fn policy_fallback(module: &str, reason: &'static str) {
    metrics::counter!("pointsman_policy_fallbacks_total", "module" => module.to_string(), "reason" => reason)
        .increment(1);
}

/// A rollout of `world` (`router` or `planner`) is in `phase`, its
/// candidate serving `share_bp` basis points.
pub fn rollout_state(world: &'static str, phase: &'static str, share_bp: u32) {
    metrics::gauge!("pointsman_rollout_candidate_share", "world" => world)
        .set(f64::from(share_bp) / 10_000.0);
    for p in [
        "shadow",
        "running",
        "paused",
        "rolled-back",
        "aborted",
        "promoted",
    ] {
        metrics::gauge!("pointsman_rollout_phase", "world" => world, "phase" => p)
            .set(if p == phase { 1.0 } else { 0.0 });
    }
}

/// A rollout guard on `metric` rolled a candidate back.
pub fn rollout_rollback(world: &'static str, metric: &'static str) {
    metrics::counter!("pointsman_rollout_rollbacks_total", "world" => world, "metric" => metric)
        .increment(1);
}

/// Exports the rollback counter of `metric` at 0, so that an alert on its
/// increase sees a series before the first rollback.
pub fn rollout_rollback_series(world: &'static str, metric: &'static str) {
    metrics::counter!("pointsman_rollout_rollbacks_total", "world" => world, "metric" => metric)
        .increment(0);
}

/// A request's shadow decision was skipped: `reason` is `rate` (past
/// `max_shadow_per_second`), `busy` (too many in flight) or `not-loaded`
/// (the pinned candidate is not here).
pub fn rollout_shadow_skipped(reason: &'static str) {
    // Cached: past `max_shadow_per_second` nearly every request lands
    // here, and looking the series up cost 0.4 µs (bench/profile).
    static HANDLES: LazyLock<Handles<Counter>> = LazyLock::new(Handles::new);
    HANDLES
        .get(
            reason,
            || metrics::counter!("pointsman_rollout_shadow_skipped_total", "reason" => reason),
        )
        .increment(1);
}

/// A call found every instance of a module busy.
pub fn policy_busy(module: &str) {
    metrics::counter!("pointsman_policy_busy_total", "module" => module.to_string()).increment(1);
}

/// A module file in the watched folder was refused before loading (not a
/// regular file, too large, unreadable), for `reason`.
pub fn policy_file_refused(reason: &'static str) {
    metrics::counter!("pointsman_policy_files_refused_total", "reason" => reason).increment(1);
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

/// Buckets of request, first-token and attempt durations: 1 ms to 5 min.
const SECONDS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
    120.0, 300.0,
];
/// Buckets of policy decision time: 1 µs to the 10 ms default deadline and
/// past it.
const POLICY_SECONDS: &[f64] = &[
    0.000_001,
    0.000_002_5,
    0.000_005,
    0.000_01,
    0.000_025,
    0.000_05,
    0.000_1,
    0.000_25,
    0.000_5,
    0.001,
    0.002_5,
    0.005,
    0.01,
    0.025,
];

/// USD as whole nano-dollars, so that spend is a monotonic integer
/// counter (Prometheus counters of the `metrics` crate are integers); a
/// request's cost is rounded to the nearest nano-dollar.
fn nano_usd(usd: f64) -> u64 {
    if usd.is_finite() && usd > 0.0 {
        (usd * 1e9).round() as u64
    } else {
        0
    }
}

/// Series handles by label values, registered once each: on the request
/// path, building the labelled key and finding it in the registry costs
/// more than the update itself (see [`served`]). Labels come from config
/// (models, providers, modules, clients) or fixed sets, so this stays small.
struct Handles<T> {
    by: RwLock<HashMap<String, T>>,
}

impl<T: Clone> Handles<T> {
    fn new() -> Self {
        Handles {
            by: RwLock::default(),
        }
    }

    /// The handle for `key`, made by `make` the first time.
    fn get(&self, key: &str, make: impl FnOnce() -> T) -> T {
        if let Some(handle) = self.by.read().unwrap_or_else(|p| p.into_inner()).get(key) {
            return handle.clone();
        }
        self.by
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .entry(key.to_string())
            .or_insert_with(make)
            .clone()
    }
}

/// A request to the model APIs ended (its last byte sent, or its error),
/// after `seconds`: `outcome` is `ok` or `error`.
pub fn request_duration(
    api: &'static str,
    tier: &'static str,
    outcome: &'static str,
    seconds: f64,
) {
    static HANDLES: LazyLock<Handles<Histogram>> = LazyLock::new(Handles::new);
    // The three are from fixed sets: the key needs no escaping.
    let key = [api, tier, outcome].join("\u{1f}");
    HANDLES
        .get(&key, || {
            metrics::histogram!("pointsman_request_duration_seconds", "api" => api, "tier" => tier, "outcome" => outcome)
        })
        .record(seconds);
}

/// A streamed answer's first event reached the client `seconds` after the
/// request came in.
pub fn time_to_first_token(model: &str, seconds: f64) {
    static HANDLES: LazyLock<Handles<Histogram>> = LazyLock::new(Handles::new);
    HANDLES
        .get(model, || {
            metrics::histogram!("pointsman_time_to_first_token_seconds", "model" => model.to_string())
        })
        .record(seconds);
}

/// One call to one upstream endpoint ended with `outcome` (`ok`, or a class
/// of failure such as `status_5xx`, `timeout`, `connect`) after `seconds`.
pub fn upstream_attempt(model: &str, provider: &str, outcome: &'static str, seconds: f64) {
    static HANDLES: LazyLock<Handles<(Counter, Histogram)>> = LazyLock::new(Handles::new);
    // A separator no model or provider name holds.
    let key = [model, provider, outcome].join("\u{1f}");
    let (count, duration) = HANDLES.get(&key, || {
        let labels = [
            ("model", model.to_string()),
            ("provider", provider.to_string()),
            ("outcome", outcome.to_string()),
        ];
        (
            metrics::counter!("pointsman_upstream_attempts_total", &labels),
            metrics::histogram!("pointsman_upstream_attempt_duration_seconds", &labels),
        )
    });
    count.increment(1);
    duration.record(seconds);
}

/// A router module took `seconds` to decide (its call, the safe route's
/// cases included).
pub fn policy_decision(module: &str, seconds: f64) {
    static HANDLES: LazyLock<Handles<Histogram>> = LazyLock::new(Handles::new);
    HANDLES
        .get(module, || {
            metrics::histogram!("pointsman_policy_decision_seconds", "module" => module.to_string())
        })
        .record(seconds);
}

/// A configuration reload ended with `outcome` (`ok` or `invalid`).
pub fn config_reload(outcome: &'static str) {
    metrics::counter!("pointsman_config_reloads_total", "outcome" => outcome).increment(1);
}

/// Installs the Prometheus recorder (once per process) and returns its handle.
pub fn install() -> metrics_exporter_prometheus::PrometheusHandle {
    static HANDLE: std::sync::OnceLock<metrics_exporter_prometheus::PrometheusHandle> =
        std::sync::OnceLock::new();
    HANDLE
        .get_or_init(|| {
            use metrics_exporter_prometheus::{Matcher, PrometheusBuilder};
            // Histograms, not summaries: buckets add up across replicas.
            let recorder = PrometheusBuilder::new()
                .set_buckets(SECONDS)
                .and_then(|b| {
                    b.set_buckets_for_metric(
                        Matcher::Full("pointsman_policy_decision_seconds".into()),
                        POLICY_SECONDS,
                    )
                })
                .expect("the bucket lists are not empty")
                .build_recorder();
            let handle = recorder.handle();
            // Another recorder may already be installed (an embedding
            // application's); then this handle renders only what it saw.
            let _ = metrics::set_global_recorder(recorder);
            handle
        })
        .clone()
}

/// A request that was answered, in plain labels.
pub struct Served<'a> {
    /// The wire API (`openai`, `anthropic`).
    pub api: &'static str,
    /// The route's tier.
    pub tier: &'a str,
    /// The catalog model that answered.
    pub model: &'a str,
    /// Input tokens.
    pub input_tokens: u64,
    /// Output tokens.
    pub output_tokens: u64,
    /// What it cost, nano-USD.
    pub cost_nanos: i64,
    /// What the baseline would have cost, nano-USD.
    pub baseline_nanos: i64,
}

/// A request was answered.
pub fn request_served(served: Served<'_>) {
    let series = served_series(served.api, served.tier, served.model);
    series.requests.increment(1);
    series.input_tokens.increment(served.input_tokens);
    series.output_tokens.increment(served.output_tokens);
    series.cost.increment(served.cost_nanos.max(0) as u64);
    series
        .baseline_cost
        .increment(served.baseline_nanos.max(0) as u64);
}

/// A request of client `client` (its configured name, or `anonymous`) was
/// admitted.
pub fn client_request(client: &str) {
    static HANDLES: LazyLock<Handles<Counter>> = LazyLock::new(Handles::new);
    HANDLES
        .get(
            client,
            || metrics::counter!("pointsman_client_requests_total", "client" => client.to_string()),
        )
        .increment(1);
}

/// The series a served request updates.
struct ServedSeries {
    requests: Counter,
    input_tokens: Counter,
    output_tokens: Counter,
    cost: Counter,
    baseline_cost: Counter,
}

/// [`Served`] series by API and tier, then model. Registered once each:
/// building the labelled keys and finding them in the registry on every
/// request cost more than the increments. Models come from the
/// configuration, so this stays small.
type ServedByLabels = HashMap<&'static str, HashMap<String, HashMap<String, Arc<ServedSeries>>>>;

fn served_series(api: &'static str, tier: &str, model: &str) -> Arc<ServedSeries> {
    static SERIES: LazyLock<RwLock<ServedByLabels>> = LazyLock::new(Default::default);
    let known = SERIES
        .read()
        .unwrap_or_else(|p| p.into_inner())
        .get(api)
        .and_then(|tiers| tiers.get(tier))
        .and_then(|models| models.get(model))
        .cloned();
    if let Some(series) = known {
        return series;
    }
    let mut all = SERIES.write().unwrap_or_else(|p| p.into_inner());
    all.entry(api)
        .or_default()
        .entry(tier.to_string())
        .or_default()
        .entry(model.to_string())
        .or_insert_with(|| {
            let labels = [
                ("api", api.to_string()),
                ("model", model.to_string()),
                ("tier", tier.to_string()),
            ];
            Arc::new(ServedSeries {
                requests: metrics::counter!("pointsman_requests_total", &labels),
                input_tokens: metrics::counter!("pointsman_input_tokens_total", &labels),
                output_tokens: metrics::counter!("pointsman_output_tokens_total", &labels),
                cost: metrics::counter!("pointsman_cost_nanousd_total", &labels),
                baseline_cost: metrics::counter!("pointsman_baseline_cost_nanousd_total", &labels),
            })
        })
        .clone()
}

/// A request got an error response.
pub fn request_failed(api: &'static str, status: u16) {
    metrics::counter!("pointsman_request_errors_total", "api" => api, "status" => status.to_string())
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

/// An endpoint's circuit breaker changed state: `value` 0 closed, 1
/// half-open, 2 open.
pub fn breaker_state(model: &str, provider: &str, value: f64) {
    metrics::gauge!("pointsman_breaker_state", "model" => model.to_string(), "provider" => provider.to_string())
        .set(value);
}

/// A task ended.
pub fn task_finished(status: &'static str, subtasks: u64, spent_usd: f64) {
    metrics::counter!("pointsman_tasks_total", "status" => status).increment(1);
    metrics::counter!("pointsman_subtasks_total").increment(subtasks);
    metrics::counter!("pointsman_task_cost_nanousd_total").increment(nano_usd(spent_usd));
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

// ---- Ledger store -------------------------------------------------------

/// A group commit of `records` writes took `elapsed`; it committed or not.
pub fn ledger_commit(elapsed: std::time::Duration, records: usize, ok: bool) {
    metrics::histogram!("pointsman_ledger_commit_seconds").record(elapsed.as_secs_f64());
    if ok {
        metrics::counter!("pointsman_ledger_records_written_total").increment(records as u64);
    } else {
        ledger_records_failed(records);
    }
}

/// Records that could not be written (a failed commit, a full queue).
pub fn ledger_records_failed(records: usize) {
    metrics::counter!("pointsman_ledger_records_failed_total").increment(records as u64);
}

/// The share of budget `scope`'s cap over `window` (`day`, `month`)
/// spent or held, as of the latest reservation against it.
pub fn budget_used(scope: &str, window: &'static str, ratio: f64) {
    metrics::gauge!("pointsman_budget_used_ratio", "scope" => scope.to_string(), "window" => window)
        .set(ratio);
}

/// Writes waiting for the ledger's writer.
pub fn ledger_backlog(queued: usize) {
    metrics::gauge!("pointsman_ledger_backlog").set(queued as f64);
}

/// Whether the ledger store takes writes (1) or not (0).
pub fn ledger_up(up: bool) {
    metrics::gauge!("pointsman_ledger_up").set(if up { 1.0 } else { 0.0 });
}

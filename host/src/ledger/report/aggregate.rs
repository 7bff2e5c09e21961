//! Calls summed into a report: one row per group, a total, per-day series
//! and projections. Pure: the same calls and query give the same report.
//!
//! What is counted (the rules every row and the total follow):
//! - **calls**: call records in the window (and of the client, if one is
//!   asked for): every model call, planner, executor and reviewer calls
//!   included.
//! - **requests**: what a client asked for. Every call of a task counts
//!   towards that task once (a task's calls carry one request id per call,
//!   so tasks are counted by `task_id`); every other call counts towards its
//!   `request_id` once (a chat request's planner and answer calls share the
//!   request's id). So a chat request whose planner failed before any
//!   answer call still counts, and a planned request counts once.
//! - **succeeded**: requests whose last call (by start time) ended `ok`;
//!   **success rate** = succeeded / requests.
//! - **tiers**: each request's tier, from its answer call (else from any
//!   call that has one), `(none)` when no call names one.
//! - **escalations**: requests with at least one call served by a fallback
//!   or the escalation model (`escalated`).
//! - **latency**: p50 and p95 (nearest rank: the ⌈p·n⌉-th smallest) of the
//!   `latency_ms` of answer calls.
//! - **money**: summed in nano-USD; `savings` = 1 − spent / baseline.
//! - **projections**: spend and baseline at the window's average daily rate
//!   (the sum over the window divided by the window's length in days),
//!   times 30 for a month and 365 for a year, as the seed's cost table.
//!
//! A row counts the requests that have a call in its group, so when one
//! request spans groups (a planner on one model, the answer on another; a
//! request across midnight) the rows' requests add up to more than the
//! total; calls, tokens and money always add up to the total.

use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Serialize};

use super::query::{GroupBy, ReportQuery};
use super::window::{self, MS_A_DAY};
use crate::ledger::record::{CallRecord, CallRole, CallStatus, FeedbackRecord, Nanos, usd};

/// Days in a month and a year of the projections (the seed's table).
pub const DAYS_A_MONTH: f64 = 30.0;
/// Days in a year of the projections.
pub const DAYS_A_YEAR: f64 = 365.0;
/// A window longer than this many days has its per-day series start at
/// its first day with a call, not at `since`.
pub const MAX_EMPTY_SERIES_DAYS: i64 = 366;
/// The group of a call that has no value for the grouping.
pub const NONE_KEY: &str = "(none)";
/// The sparkline's levels, lowest first.
pub const SPARK_LEVELS: [char; 8] = ['▁', '▂', '▃', '▄', '▅', '▆', '▇', '█'];

/// A usage report: what `pointsman report --format json` prints and
/// `GET /v1/usage` returns. Field names are stable; money is given both
/// exactly (`*_nanos`, nano-USD) and as USD.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Report {
    /// The window's first instant, `YYYY-MM-DDTHH:MM:SSZ` (inclusive).
    pub since: String,
    /// The window's end, same form (exclusive).
    pub until: String,
    /// `since` in Unix milliseconds.
    pub since_ms: i64,
    /// `until` in Unix milliseconds.
    pub until_ms: i64,
    /// The window's length in days (the projections' divisor).
    pub window_days: f64,
    /// The grouping, as `--by` takes it (`day`, `model`, `label:team`, …).
    pub by: String,
    /// The client the report is limited to, if any.
    pub client: Option<String>,
    /// One row per group: days by date, other groups by spend (dearest
    /// first), then by name.
    pub rows: Vec<Row>,
    /// Every call of the window.
    pub total: Row,
    /// Spend per UTC day over the window, oldest first.
    pub daily: Vec<DayPoint>,
    /// `daily`'s spend as a sparkline, one character a day.
    pub sparkline: String,
}

/// One group's figures (or the total's).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Row {
    /// The group's value (`2026-12-05`, a model id, …; `total` for the
    /// total row; `(none)` for calls without a value).
    pub key: String,
    /// Requests and tasks (see the module's rules).
    pub requests: u64,
    /// Requests whose last call ended ok.
    pub succeeded: u64,
    /// `succeeded / requests`; None without requests.
    pub success_rate: Option<f64>,
    /// Model calls.
    pub calls: u64,
    /// Input tokens (cache reads and writes included).
    pub input_tokens: u64,
    /// Output tokens.
    pub output_tokens: u64,
    /// Input tokens read from a provider's cache.
    pub cache_read_tokens: u64,
    /// Input tokens written to a provider's cache.
    pub cache_write_tokens: u64,
    /// What was spent, nano-USD.
    pub spent_nanos: Nanos,
    /// What was spent, USD.
    pub spent_usd: f64,
    /// The same tokens on the baseline model, nano-USD.
    pub baseline_nanos: Nanos,
    /// The same tokens on the baseline model, USD.
    pub baseline_usd: f64,
    /// `1 - spent / baseline`; None when the baseline is 0.
    pub savings: Option<f64>,
    /// Requests per tier.
    pub tiers: BTreeMap<String, TierShare>,
    /// Requests with a call served by a fallback or the escalation model.
    pub escalations: u64,
    /// Median latency of answer calls, ms; None without answer calls.
    pub p50_latency_ms: Option<u32>,
    /// 95th percentile latency of answer calls, ms.
    pub p95_latency_ms: Option<u32>,
    /// Spend and baseline at the window's daily rate.
    pub projection: Projection,
    /// Feedback given in the window on this group's requests, tasks and
    /// sessions (see [`add_feedback`]); None without any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub feedback: Option<FeedbackScore>,
}

/// The feedback on a group.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FeedbackScore {
    /// Entries.
    pub count: u64,
    /// Their mean score (0 bad, 1 good).
    pub mean: f64,
}

/// Adds to each row of `report` the feedback given on its requests, tasks
/// and sessions: an entry counts for the group of the first call of its
/// target among `calls` (a session's calls share a policy and, sticky,
/// an arm; by day or model a session may span groups, and counts in its
/// first). Entries whose target has no call in the window count only in
/// the total.
pub fn add_feedback(
    report: &mut Report,
    calls: &[CallRecord],
    feedback: &[FeedbackRecord],
    by: &GroupBy,
) {
    use crate::ledger::record::FeedbackTarget;
    if feedback.is_empty() {
        return;
    }
    let mut requests: HashMap<&str, String> = HashMap::new();
    let mut tasks: HashMap<&str, String> = HashMap::new();
    let mut sessions: HashMap<&str, String> = HashMap::new();
    for call in calls {
        let key = || group_key(call, by);
        requests.entry(call.request_id.as_str()).or_insert_with(key);
        if let Some(task) = &call.task_id {
            tasks.entry(task.as_str()).or_insert_with(key);
        }
        if let Some(session) = &call.session {
            sessions.entry(session.as_str()).or_insert_with(key);
        }
    }
    let mut sums: HashMap<String, (u64, f64)> = HashMap::new();
    let mut total = (0u64, 0.0f64);
    for entry in feedback {
        total.0 += 1;
        total.1 += entry.score;
        let key = match &entry.target {
            FeedbackTarget::Request(id) => requests.get(id.as_str()),
            FeedbackTarget::Task(id) => tasks.get(id.as_str()),
            FeedbackTarget::Session(s) => sessions.get(s.as_str()),
        };
        if let Some(key) = key {
            let sum = sums.entry(key.clone()).or_default();
            sum.0 += 1;
            sum.1 += entry.score;
        }
    }
    let score = |(count, sum): (u64, f64)| FeedbackScore {
        count,
        mean: sum / count as f64,
    };
    for row in &mut report.rows {
        row.feedback = sums.remove(&row.key).map(score);
    }
    report.total.feedback = Some(score(total));
}

/// One tier's requests.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TierShare {
    /// Requests of that tier.
    pub requests: u64,
    /// Their share of the row's requests (0 to 1).
    pub share: f64,
}

/// Daily, monthly (30 days) and yearly (365 days) spend and baseline, USD,
/// at the window's average daily rate.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Projection {
    /// Spend a day.
    pub daily_usd: f64,
    /// Spend a month.
    pub monthly_usd: f64,
    /// Spend a year.
    pub yearly_usd: f64,
    /// Baseline a day.
    pub baseline_daily_usd: f64,
    /// Baseline a month.
    pub baseline_monthly_usd: f64,
    /// Baseline a year.
    pub baseline_yearly_usd: f64,
}

/// One UTC day of the window.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DayPoint {
    /// `YYYY-MM-DD`.
    pub date: String,
    /// Calls that started that day.
    pub calls: u64,
    /// Their spend, nano-USD.
    pub spent_nanos: Nanos,
    /// Their spend, USD.
    pub spent_usd: f64,
    /// Their baseline, nano-USD.
    pub baseline_nanos: Nanos,
    /// Their baseline, USD.
    pub baseline_usd: f64,
}

/// The report of the calls in `query`'s window (and of its client): calls
/// outside are ignored, so a store may hand over more than asked.
pub fn aggregate<'a>(
    calls: impl IntoIterator<Item = &'a CallRecord>,
    query: &ReportQuery,
) -> Report {
    let calls: Vec<&CallRecord> = calls
        .into_iter()
        .filter(|c| c.at_ms >= query.since_ms && c.at_ms < query.until_ms)
        .filter(|c| {
            query
                .client
                .as_ref()
                .is_none_or(|client| &c.client == client)
        })
        .collect();
    let window_days = (query.until_ms - query.since_ms) as f64 / MS_A_DAY as f64;
    let mut groups: BTreeMap<String, Vec<&CallRecord>> = BTreeMap::new();
    for call in &calls {
        groups
            .entry(group_key(call, &query.by))
            .or_default()
            .push(call);
    }
    let mut rows: Vec<Row> = groups
        .into_iter()
        .map(|(key, calls)| summarize(key, &calls, window_days))
        .collect();
    if query.by != GroupBy::Day {
        // Stable sort: equal spend keeps the keys' order.
        rows.sort_by_key(|row| std::cmp::Reverse(row.spent_nanos));
    }
    let daily = daily_series(&calls, query);
    let sparkline = sparkline(&daily);
    Report {
        since: window::instant_string(query.since_ms),
        until: window::instant_string(query.until_ms),
        since_ms: query.since_ms,
        until_ms: query.until_ms,
        window_days,
        by: query.by.name(),
        client: query.client.clone(),
        rows,
        total: summarize("total".into(), &calls, window_days),
        daily,
        sparkline,
    }
}

fn group_key(call: &CallRecord, by: &GroupBy) -> String {
    let or_none = |v: Option<&String>| v.cloned().unwrap_or_else(|| NONE_KEY.to_string());
    match by {
        GroupBy::Day => window::date_string(window::day_of(call.at_ms)),
        GroupBy::Model => or_none(call.served_model.as_ref()),
        GroupBy::Tier => or_none(call.tier.as_ref()),
        GroupBy::Client => call.client.clone(),
        GroupBy::Policy => or_none(call.router.as_ref()),
        GroupBy::Api => call.api.as_str().to_string(),
        GroupBy::Role => call.role.as_str().to_string(),
        GroupBy::Arm => or_none(call.arm.as_ref()),
        GroupBy::Label(key) => or_none(call.labels.get(key)),
    }
}

/// What a call counts towards: its task, else its request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum RequestKey<'a> {
    Task(&'a str),
    Request(&'a str),
}

impl<'a> RequestKey<'a> {
    fn of(call: &'a CallRecord) -> Self {
        match &call.task_id {
            Some(task) => RequestKey::Task(task),
            None => RequestKey::Request(&call.request_id),
        }
    }
}

/// What one request's calls say about it.
#[derive(Default)]
struct RequestSummary<'a> {
    /// Start of its latest call, and that call's status.
    last: Option<(i64, CallStatus)>,
    /// Its tier from an answer call, and from any call.
    answer_tier: Option<&'a str>,
    any_tier: Option<&'a str>,
    escalated: bool,
}

fn summarize(key: String, calls: &[&CallRecord], window_days: f64) -> Row {
    let mut requests: HashMap<RequestKey, RequestSummary> = HashMap::new();
    let mut latencies: Vec<u32> = Vec::new();
    let mut row = Row {
        key,
        requests: 0,
        succeeded: 0,
        success_rate: None,
        calls: calls.len() as u64,
        input_tokens: 0,
        output_tokens: 0,
        cache_read_tokens: 0,
        cache_write_tokens: 0,
        spent_nanos: 0,
        spent_usd: 0.0,
        baseline_nanos: 0,
        baseline_usd: 0.0,
        savings: None,
        tiers: BTreeMap::new(),
        escalations: 0,
        p50_latency_ms: None,
        p95_latency_ms: None,
        projection: Projection::at_rate(0, 0, window_days),
        feedback: None,
    };
    for call in calls {
        row.input_tokens = row.input_tokens.saturating_add(call.input_tokens);
        row.output_tokens = row.output_tokens.saturating_add(call.output_tokens);
        row.cache_read_tokens = row.cache_read_tokens.saturating_add(call.cache_read_tokens);
        row.cache_write_tokens = row
            .cache_write_tokens
            .saturating_add(call.cache_write_tokens);
        row.spent_nanos = row.spent_nanos.saturating_add(call.cost_nanos);
        row.baseline_nanos = row.baseline_nanos.saturating_add(call.baseline_nanos);
        if call.role == CallRole::Answer {
            latencies.push(call.latency_ms);
        }
        let request = requests.entry(RequestKey::of(call)).or_default();
        // Ties on the start time: the later record is the later call.
        if request.last.is_none_or(|(at, _)| call.at_ms >= at) {
            request.last = Some((call.at_ms, call.status));
        }
        if let Some(tier) = call.tier.as_deref() {
            if call.role == CallRole::Answer && request.answer_tier.is_none() {
                request.answer_tier = Some(tier);
            }
            request.any_tier.get_or_insert(tier);
        }
        request.escalated |= call.escalated;
    }
    row.requests = requests.len() as u64;
    let mut tier_counts: BTreeMap<String, u64> = BTreeMap::new();
    for request in requests.values() {
        if matches!(request.last, Some((_, CallStatus::Ok))) {
            row.succeeded += 1;
        }
        if request.escalated {
            row.escalations += 1;
        }
        let tier = request.answer_tier.or(request.any_tier).unwrap_or(NONE_KEY);
        *tier_counts.entry(tier.to_string()).or_default() += 1;
    }
    row.tiers = tier_counts
        .into_iter()
        .map(|(tier, n)| {
            let share = n as f64 / row.requests as f64;
            (tier, TierShare { requests: n, share })
        })
        .collect();
    row.success_rate = (row.requests > 0).then(|| row.succeeded as f64 / row.requests as f64);
    row.spent_usd = usd(row.spent_nanos);
    row.baseline_usd = usd(row.baseline_nanos);
    row.savings = savings(row.spent_nanos, row.baseline_nanos);
    latencies.sort_unstable();
    row.p50_latency_ms = percentile(&latencies, 50);
    row.p95_latency_ms = percentile(&latencies, 95);
    row.projection = Projection::at_rate(row.spent_nanos, row.baseline_nanos, window_days);
    row
}

/// `1 - spent / baseline`; None when there is no baseline to save against.
pub fn savings(spent: Nanos, baseline: Nanos) -> Option<f64> {
    (baseline > 0).then(|| 1.0 - spent as f64 / baseline as f64)
}

/// The nearest-rank `p`th percentile of sorted values: the ⌈p·n/100⌉-th
/// smallest.
fn percentile(sorted: &[u32], p: usize) -> Option<u32> {
    if sorted.is_empty() {
        return None;
    }
    let rank = (p * sorted.len()).div_ceil(100).max(1);
    Some(sorted[rank - 1])
}

impl Projection {
    /// Spend and baseline over `days` days, projected.
    pub fn at_rate(spent: Nanos, baseline: Nanos, days: f64) -> Projection {
        let per_day = |nanos: Nanos| {
            if days > 0.0 { usd(nanos) / days } else { 0.0 }
        };
        let (daily, base) = (per_day(spent), per_day(baseline));
        Projection {
            daily_usd: daily,
            monthly_usd: daily * DAYS_A_MONTH,
            yearly_usd: daily * DAYS_A_YEAR,
            baseline_daily_usd: base,
            baseline_monthly_usd: base * DAYS_A_MONTH,
            baseline_yearly_usd: base * DAYS_A_YEAR,
        }
    }
}

fn daily_series(calls: &[&CallRecord], query: &ReportQuery) -> Vec<DayPoint> {
    let last = window::day_of(query.until_ms - 1);
    let mut first = window::day_of(query.since_ms);
    if last - first >= MAX_EMPTY_SERIES_DAYS {
        // A window reaching back years: start where the records start.
        first = calls
            .iter()
            .map(|c| window::day_of(c.at_ms))
            .min()
            .unwrap_or(last)
            .max(first);
    }
    let mut days: Vec<DayPoint> = (first..=last)
        .map(|day| DayPoint {
            date: window::date_string(day),
            calls: 0,
            spent_nanos: 0,
            spent_usd: 0.0,
            baseline_nanos: 0,
            baseline_usd: 0.0,
        })
        .collect();
    for call in calls {
        let point = &mut days[(window::day_of(call.at_ms) - first) as usize];
        point.calls += 1;
        point.spent_nanos = point.spent_nanos.saturating_add(call.cost_nanos);
        point.baseline_nanos = point.baseline_nanos.saturating_add(call.baseline_nanos);
    }
    for point in &mut days {
        point.spent_usd = usd(point.spent_nanos);
        point.baseline_usd = usd(point.baseline_nanos);
    }
    days
}

/// One character a day, the dearest day `█`, a day without spend `▁`.
fn sparkline(days: &[DayPoint]) -> String {
    let max = days.iter().map(|d| d.spent_nanos).max().unwrap_or(0).max(0) as i128;
    days.iter()
        .map(|d| {
            let level = if max == 0 {
                0
            } else {
                // Rounded to the nearest of the 8 levels.
                ((d.spent_nanos.max(0) as i128 * 7 + max / 2) / max) as usize
            };
            SPARK_LEVELS[level.min(7)]
        })
        .collect()
}

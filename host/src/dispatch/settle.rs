//! Settling a call: the one place its outcome is told to the breaker, the
//! metrics and the ledger.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::config::OnUnavailable;
use crate::ledger::record::{Api, AttemptRecord, CallRecord, CallRole, CallStatus, nanos};
use crate::ledger::{BudgetScope, Cost, Reservation};
use crate::policy::types::Tier;
use crate::provider::{ProviderError, Usage};
use crate::resilience::Attempt;
use crate::resilience::balance::Lease;

use super::{Dispatch, Served};

/// Whom a call is made for, as the ledger records it.
#[derive(Debug, Clone)]
pub struct Caller {
    /// The client request the call serves, or none for a task's calls,
    /// which get an id each.
    pub request_id: Option<String>,
    /// The task, for a task's calls.
    pub task_id: Option<String>,
    /// The owner, as [`crate::tenant::Owner::as_str`] writes it.
    pub client: String,
    /// The request's or task's labels.
    pub labels: BTreeMap<String, String>,
    /// The agent session.
    pub session: Option<String>,
    /// The API the work came in on.
    pub api: Api,
    /// The model name the client asked for.
    pub requested_model: String,
    /// The router's `name@hash`.
    pub router: Option<String>,
    /// The planner's `name@hash`, when one took part.
    pub planner: Option<String>,
    /// The route's tier.
    pub tier: Option<Tier>,
    /// The router's reasoning.
    pub reasoning: Option<String>,
    /// The budgets the work counts against.
    pub budgets: Vec<BudgetScope>,
    /// The request as the router saw it, as JSON, kept with the call when
    /// `[ledger] keep_requests = "policy-view"` (for offline replay).
    pub policy_view: Option<Arc<str>>,
    /// The rollout arm the work is on (`<rollout id>/stable|candidate`).
    pub arm: Option<String>,
    /// A shadow candidate's decision, recorded if made by the time the
    /// call settles.
    pub shadow: Option<Arc<std::sync::OnceLock<String>>>,
}

/// A shadow decision not made by the time its call settled (the candidate
/// is slow, or the runtime busy): recorded so that a diff counts it.
pub const SHADOW_LATE: &str = r#"{"late":true}"#;

/// How one call went, for its record.
pub struct Outcome<'a> {
    /// Who answered, if anyone did.
    pub served: Option<&'a Served>,
    /// The first model of the chain (another one answering is an
    /// escalation).
    pub first: Option<&'a str>,
    /// Tokens used.
    pub usage: &'a Usage,
    /// What they cost.
    pub cost: Cost,
    /// Every attempt.
    pub attempts: &'a [Attempt],
    /// The error that ended the call, if one did.
    pub error: Option<&'a ProviderError>,
    /// A stream that started, then broke.
    pub broken: bool,
    /// When the call started.
    pub started: Instant,
    /// The same, in Unix milliseconds.
    pub at_ms: i64,
    /// When its first token came, for a stream.
    pub ttft: Option<Duration>,
}

impl Caller {
    /// The ledger's record of a call made for this caller as `role`.
    pub fn record(&self, role: CallRole, stream: bool, outcome: Outcome<'_>) -> CallRecord {
        let served = outcome.served;
        let status = if outcome.broken {
            CallStatus::Broken
        } else if outcome.error.is_some() || served.is_none() {
            CallStatus::Failed
        } else {
            CallStatus::Ok
        };
        let millis = |d: Duration| d.as_millis().min(u32::MAX as u128) as u32;
        CallRecord {
            request_id: self.request_id.clone().unwrap_or_else(super::request_id),
            task_id: self.task_id.clone(),
            at_ms: outcome.at_ms,
            client: self.client.clone(),
            labels: self.labels.clone(),
            session: self.session.clone(),
            api: self.api,
            role,
            stream,
            requested_model: self.requested_model.clone(),
            router: self.router.clone(),
            planner: self.planner.clone(),
            tier: self.tier.map(|t| t.as_str().to_string()),
            reasoning: self.reasoning.clone(),
            served_model: served.map(|s| s.model.id.clone()),
            provider: served.map(|s| s.provider.clone()),
            endpoint: served.map(|s| s.upstream.clone()),
            attempts: outcome.attempts.iter().map(AttemptRecord::from).collect(),
            escalated: served.is_some_and(|s| outcome.first.is_none_or(|f| f != s.model.id)),
            input_tokens: outcome.usage.input_tokens,
            output_tokens: outcome.usage.output_tokens,
            cache_read_tokens: outcome.usage.cached_input_tokens,
            cache_write_tokens: outcome.usage.cache_creation_input_tokens,
            cost_nanos: nanos(outcome.cost.usd),
            baseline_nanos: nanos(outcome.cost.baseline_usd),
            latency_ms: millis(outcome.started.elapsed()),
            ttft_ms: outcome.ttft.map(millis),
            status,
            error_class: outcome
                .error
                .map(|e| e.class().to_string())
                .or_else(|| outcome.broken.then(|| "broken".to_string())),
            arm: self.arm.clone(),
            // One row per request carries the shadow: its answer.
            shadow: self
                .shadow
                .as_ref()
                .filter(|_| role == CallRole::Answer)
                .map(|slot| {
                    slot.get()
                        .cloned()
                        .unwrap_or_else(|| SHADOW_LATE.to_string())
                }),
            route_labels: BTreeMap::new(),
            policy_view: self.policy_view.as_deref().map(str::to_string),
        }
    }
}

/// A call whose outcome is known.
pub struct Settlement {
    /// What the ledger keeps of it.
    pub record: CallRecord,
    /// The answering endpoint's lease, from [`super::Sent::lease`].
    pub lease: Option<(String, Lease)>,
    /// What was reserved against budgets for it, settled to its real
    /// cost in the same commit as its record.
    pub reservation: Option<Reservation>,
}

/// What settling did not manage: the call happened but is not on record.
#[derive(Debug, thiserror::Error)]
#[error("the call could not be recorded: {0}")]
pub struct Settled(pub String);

impl Dispatch {
    /// Settles a call: its endpoint's breaker learns whether it ended
    /// well (a stream that broke after its first event turns the success
    /// recorded then into a failure), the metrics count it, and the ledger
    /// records it.
    ///
    /// Resolves once the record is committed. When it cannot be, the call
    /// is `Err` under `[ledger] on_unavailable = "refuse"` (its answer
    /// must not leave unrecorded), and logged under `"serve"`.
    pub async fn settle(&self, settlement: Settlement) -> Result<(), Settled> {
        let Settlement {
            record,
            lease,
            reservation,
        } = settlement;
        crate::resilience::settle(lease, record.status == CallStatus::Ok);
        count(&record);
        let request_id = record.request_id.clone();
        match self.ledger.record(record, reservation).await {
            Ok(()) => Ok(()),
            Err(e) if self.on_unavailable == OnUnavailable::Serve => {
                tracing::error!(request = %request_id, "served without a record: {e}");
                Ok(())
            }
            Err(e) => Err(Settled(e.to_string())),
        }
    }
}

/// The metrics of a settled call: answers by API, tier and model; calls of
/// tasks and plans by role.
fn count(record: &CallRecord) {
    let Some(model) = record.served_model.as_deref() else {
        return;
    };
    if record.status == CallStatus::Broken {
        crate::metrics::upstream_failure(model);
    }
    if record.role != CallRole::Answer {
        return;
    }
    // The request series keep the wire format as their `api` label, as
    // dashboards have it: the Responses API is served as OpenAI chat.
    let api = match record.api {
        Api::ChatCompletions | Api::Responses => "openai",
        Api::Messages => "anthropic",
        Api::Tasks => "tasks",
    };
    crate::metrics::request_served(crate::metrics::Served {
        api,
        tier: record.tier.as_deref().unwrap_or("direct"),
        model,
        input_tokens: record.input_tokens,
        output_tokens: record.output_tokens,
        cost_nanos: record.cost_nanos,
        baseline_nanos: record.baseline_nanos,
    });
}

impl From<&crate::resilience::Attempt> for crate::ledger::record::AttemptRecord {
    fn from(attempt: &crate::resilience::Attempt) -> Self {
        crate::ledger::record::AttemptRecord {
            model: attempt.model.clone(),
            provider: attempt.provider.clone(),
            outcome: attempt.outcome.clone(),
        }
    }
}

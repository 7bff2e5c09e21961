//! What the ledger keeps: a row per model call, a row per task, feedback.
//!
//! Money is in nano-USD (`i64`): sums of many small costs stay exact and
//! compare exactly against caps, where `f64` sums drift with their order.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// An amount of money in billionths of a USD.
pub type Nanos = i64;

/// USD as nano-USD, rounded to the nearest; negative and non-finite
/// amounts are 0.
pub fn nanos(usd: f64) -> Nanos {
    if usd.is_finite() && usd > 0.0 {
        (usd * 1e9).round().min(i64::MAX as f64) as Nanos
    } else {
        0
    }
}

/// nano-USD as USD.
pub fn usd(nanos: Nanos) -> f64 {
    nanos as f64 / 1e9
}

/// The API a call came in on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Api {
    /// `POST /v1/chat/completions`.
    ChatCompletions,
    /// `POST /v1/responses`.
    Responses,
    /// `POST /v1/messages`.
    Messages,
    /// `POST /v1/tasks`: a planner, executor or reviewer call of a task.
    Tasks,
}

impl Api {
    /// The name stored and reported.
    pub fn as_str(self) -> &'static str {
        match self {
            Api::ChatCompletions => "chat-completions",
            Api::Responses => "responses",
            Api::Messages => "messages",
            Api::Tasks => "tasks",
        }
    }

    /// The API named `s`, as [`Api::as_str`] writes it.
    pub fn parse(s: &str) -> Option<Api> {
        [
            Api::ChatCompletions,
            Api::Responses,
            Api::Messages,
            Api::Tasks,
        ]
        .into_iter()
        .find(|a| a.as_str() == s)
    }
}

/// What a call was for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum CallRole {
    /// The answer to a client's chat request.
    Answer,
    /// A planner call (a task's plan, or a plan for an agent session).
    Planner,
    /// A task's executor call.
    Executor,
    /// A task's review call.
    Reviewer,
}

impl CallRole {
    /// The name stored and reported.
    pub fn as_str(self) -> &'static str {
        match self {
            CallRole::Answer => "answer",
            CallRole::Planner => "planner",
            CallRole::Executor => "executor",
            CallRole::Reviewer => "reviewer",
        }
    }

    /// The role named `s`, as [`CallRole::as_str`] writes it.
    pub fn parse(s: &str) -> Option<CallRole> {
        [
            CallRole::Answer,
            CallRole::Planner,
            CallRole::Executor,
            CallRole::Reviewer,
        ]
        .into_iter()
        .find(|r| r.as_str() == s)
    }
}

/// How a call ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum CallStatus {
    /// Answered in full.
    Ok,
    /// No answer: every attempt failed, or the deadline passed first.
    Failed,
    /// A stream that started and then broke (or whose client left): the
    /// tokens it used are still billed.
    Broken,
}

impl CallStatus {
    /// The name stored and reported.
    pub fn as_str(self) -> &'static str {
        match self {
            CallStatus::Ok => "ok",
            CallStatus::Failed => "failed",
            CallStatus::Broken => "broken",
        }
    }

    /// The status named `s`, as [`CallStatus::as_str`] writes it.
    pub fn parse(s: &str) -> Option<CallStatus> {
        [CallStatus::Ok, CallStatus::Failed, CallStatus::Broken]
            .into_iter()
            .find(|c| c.as_str() == s)
    }
}

/// One attempt at an upstream, as the resilience layer classed it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AttemptRecord {
    /// Catalog model id.
    pub model: String,
    /// Provider name.
    pub provider: String,
    /// The outcome class (`ok`, `timeout`, `status-5xx`, …, from the
    /// resilience layer's outcome type).
    pub outcome: String,
}

/// One model call: a row of the `calls` table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CallRecord {
    /// The request's id (`pm-…`); a task's calls carry the task's own
    /// request ids, one per call.
    pub request_id: String,
    /// The task this call belongs to.
    pub task_id: Option<String>,
    /// When the call started, Unix milliseconds (UTC).
    pub at_ms: i64,
    /// The client's name.
    pub client: String,
    /// The request's labels (key labels win over headers).
    pub labels: BTreeMap<String, String>,
    /// The agent session.
    pub session: Option<String>,
    /// The API it came in on.
    pub api: Api,
    /// What the call was for.
    pub role: CallRole,
    /// Whether the client asked for a stream.
    pub stream: bool,
    /// The model name the client asked for.
    pub requested_model: String,
    /// The router that decided, `name@hash`.
    pub router: Option<String>,
    /// The planner, `name@hash`, when one took part.
    pub planner: Option<String>,
    /// The route's tier (`direct`, `plan-execute`, …).
    pub tier: Option<String>,
    /// The policy's reasoning.
    pub reasoning: Option<String>,
    /// The catalog model that answered.
    pub served_model: Option<String>,
    /// Its provider.
    pub provider: Option<String>,
    /// The upstream model name at that provider.
    pub endpoint: Option<String>,
    /// Every upstream attempt, failed ones included.
    pub attempts: Vec<AttemptRecord>,
    /// Served by a fallback or the escalation model rather than the
    /// route's executor (an escalation in reports).
    pub escalated: bool,
    /// Input tokens (cache reads and writes included).
    pub input_tokens: u64,
    /// Output tokens.
    pub output_tokens: u64,
    /// Input tokens read from the provider's cache.
    pub cache_read_tokens: u64,
    /// Input tokens written to the provider's cache.
    pub cache_write_tokens: u64,
    /// What the call cost.
    pub cost_nanos: Nanos,
    /// What the baseline model would have cost for the same tokens.
    pub baseline_nanos: Nanos,
    /// Start to last byte, in milliseconds.
    pub latency_ms: u32,
    /// Start to first token of a stream.
    pub ttft_ms: Option<u32>,
    /// How it ended.
    pub status: CallStatus,
    /// Why it failed (an error class, never a provider's raw message).
    pub error_class: Option<String>,
    /// The rollout arm that served it.
    pub arm: Option<String>,
    /// A shadow policy's decision, as JSON.
    pub shadow: Option<String>,
    /// Labels the route attached.
    pub route_labels: BTreeMap<String, String>,
    /// The policy's view of the request, as JSON, when
    /// `[ledger] keep_requests = "policy-view"`.
    pub policy_view: Option<String>,
}

/// Where a recorded task is: the task API's statuses, and `interrupted`
/// for a task whose daemon stopped before it ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TaskStatus {
    /// Accepted, not started.
    Queued,
    /// Asking the planner.
    Planning,
    /// Running subtasks.
    Running,
    /// Done.
    Succeeded,
    /// A subtask could not be done by any model.
    Failed,
    /// The next call would have exceeded the budget.
    BudgetExceeded,
    /// Cancelled by its client.
    Cancelled,
    /// Its daemon stopped before it ended.
    Interrupted,
}

impl TaskStatus {
    const ALL: [TaskStatus; 8] = [
        TaskStatus::Queued,
        TaskStatus::Planning,
        TaskStatus::Running,
        TaskStatus::Succeeded,
        TaskStatus::Failed,
        TaskStatus::BudgetExceeded,
        TaskStatus::Cancelled,
        TaskStatus::Interrupted,
    ];

    /// The name stored and shown by the task API.
    pub fn as_str(self) -> &'static str {
        match self {
            TaskStatus::Queued => "queued",
            TaskStatus::Planning => "planning",
            TaskStatus::Running => "running",
            TaskStatus::Succeeded => "succeeded",
            TaskStatus::Failed => "failed",
            TaskStatus::BudgetExceeded => "budget_exceeded",
            TaskStatus::Cancelled => "cancelled",
            TaskStatus::Interrupted => "interrupted",
        }
    }

    /// The status named `s`, as [`TaskStatus::as_str`] writes it.
    pub fn parse(s: &str) -> Option<TaskStatus> {
        TaskStatus::ALL.into_iter().find(|t| t.as_str() == s)
    }

    /// Whether the task has ended.
    pub fn is_final(self) -> bool {
        !matches!(
            self,
            TaskStatus::Queued | TaskStatus::Planning | TaskStatus::Running
        )
    }
}

/// A task: a row of the `tasks` table, the parent of its calls.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskRecord {
    /// The task's id.
    pub id: String,
    /// The client that submitted it.
    pub client: String,
    /// Its status.
    pub status: TaskStatus,
    /// Submitted, Unix milliseconds.
    pub created_ms: i64,
    /// Last changed, Unix milliseconds.
    pub updated_ms: i64,
    /// The replica running it (see `[ledger] replica`).
    pub replica: String,
    /// The task as `GET /v1/tasks/<id>` shows it: plan, results, notes.
    pub body: serde_json::Value,
}

/// What a feedback entry scores.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", content = "id", rename_all = "kebab-case")]
pub enum FeedbackTarget {
    /// One request, by id.
    Request(String),
    /// One task, by id.
    Task(String),
    /// Every request of an agent session.
    Session(String),
}

/// One feedback entry; many may score the same target.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FeedbackRecord {
    /// What is scored.
    pub target: FeedbackTarget,
    /// The client that scored it.
    pub client: String,
    /// The score, 0 (bad) to 1 (good).
    pub score: f64,
    /// Free labels (e.g. `tests_passed = "true"`).
    pub labels: BTreeMap<String, String>,
    /// When, Unix milliseconds.
    pub at_ms: i64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nanos_round_trip_and_clamp() {
        assert_eq!(nanos(1.5), 1_500_000_000);
        assert_eq!(nanos(0.000_000_001_4), 1);
        assert_eq!(nanos(-1.0), 0);
        assert_eq!(nanos(f64::NAN), 0);
        assert_eq!(usd(2_500_000_000), 2.5);
    }

    #[test]
    fn names_parse_back() {
        for api in [
            Api::ChatCompletions,
            Api::Responses,
            Api::Messages,
            Api::Tasks,
        ] {
            assert_eq!(Api::parse(api.as_str()), Some(api));
        }
        for role in [
            CallRole::Answer,
            CallRole::Planner,
            CallRole::Executor,
            CallRole::Reviewer,
        ] {
            assert_eq!(CallRole::parse(role.as_str()), Some(role));
        }
        for s in [CallStatus::Ok, CallStatus::Failed, CallStatus::Broken] {
            assert_eq!(CallStatus::parse(s.as_str()), Some(s));
        }
        for s in TaskStatus::ALL {
            assert_eq!(TaskStatus::parse(s.as_str()), Some(s));
            assert_eq!(
                serde_json::to_value(s).unwrap(),
                serde_json::Value::from(s.as_str())
            );
        }
        assert_eq!(Api::parse("nope"), None);
    }
}

//! What a task is on the wire and in memory: its input, its record (with
//! its subtasks and calls) and its progress events.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use crate::policy::types::{Plan, Route, Subtask};
use crate::resilience::Attempt;

/// What a client submits to `POST /v1/tasks`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TaskInput {
    /// Short title.
    pub title: String,
    /// What to do.
    pub description: String,
    /// Context files.
    #[serde(default)]
    pub context: Vec<ContextFile>,
    /// Labels for the policy.
    #[serde(default)]
    pub labels: HashMap<String, String>,
    /// Spending limits.
    #[serde(default)]
    pub budget: Budget,
    /// Total time the task may take, in milliseconds.
    pub deadline_ms: Option<u64>,
}

/// A context file.
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct ContextFile {
    /// Path, for reference.
    pub path: String,
    /// Contents.
    pub text: String,
}

/// Limits on what a task may spend.
#[derive(Debug, Clone, Copy, Default, Deserialize, Serialize)]
pub struct Budget {
    /// USD.
    pub usd: Option<f64>,
    /// Tokens, input and output together.
    pub tokens: Option<u64>,
}

/// Where a task is: the ledger's task status, so that a record needs no
/// conversion (a live task is never `Interrupted`; that is a restarted
/// daemon's verdict on a task it no longer runs).
pub use crate::ledger::record::TaskStatus as Status;

/// One model call of a task, for the cost breakdown.
#[derive(Debug, Clone, Serialize)]
pub struct CallRecord {
    /// `plan`, `direct`, `subtask:<id>` or `review:<id>`; for a critical
    /// task served without a plan, `direct:review`, `direct:escalated`.
    pub purpose: String,
    /// The model that answered, if any did.
    pub model: Option<String>,
    /// Input tokens.
    pub input_tokens: u64,
    /// Output tokens.
    pub output_tokens: u64,
    /// USD.
    pub cost_usd: f64,
    /// What the baseline model would have cost.
    pub baseline_cost_usd: f64,
    /// Every attempt, failed ones included.
    pub attempts: Vec<Attempt>,
}

/// A subtask's record.
#[derive(Debug, Clone, Serialize)]
pub struct SubtaskRecord {
    /// The planned subtask.
    #[serde(flatten)]
    pub subtask: Subtask,
    /// Where it is.
    pub status: SubtaskStatus,
    /// The model whose output was kept.
    pub served_by: Option<String>,
    /// Attempts over all its calls.
    pub attempts: u32,
    /// Tokens over all its calls, reviews included.
    pub tokens: u64,
    /// USD over all its calls, reviews included.
    pub cost_usd: f64,
    /// Milliseconds after the task started.
    pub started_ms: Option<u64>,
    /// Milliseconds after the task started.
    pub finished_ms: Option<u64>,
    /// The output.
    pub output: Option<String>,
    /// The reviewer's last verdict, none when not reviewed.
    pub review: Option<Verdict>,
    /// Whether the escalation model did it.
    pub escalated: bool,
    /// How the prompt was fitted to the context window, if it had to be.
    pub context_note: Option<String>,
}

/// Everything known about a task, as `GET /v1/tasks/{id}` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct TaskRecord {
    /// Task id.
    pub id: String,
    /// Title.
    pub title: String,
    /// Where it is.
    pub status: Status,
    /// The router's decision.
    pub route: Option<Route>,
    /// The router policy that decided.
    pub policy: Option<String>,
    /// The rollout arm the task is on (a rollout assigns per task).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub arm: Option<String>,
    /// The plan, for planned tiers.
    pub plan: Option<Plan>,
    /// Per subtask, in plan order.
    pub subtasks: Vec<SubtaskRecord>,
    /// Every call, in order.
    pub calls: Vec<CallRecord>,
    /// What happened that a reader should know (re-planned, fell back...).
    pub notes: Vec<String>,
    /// The joined outputs.
    pub result: Option<String>,
    /// Why it failed.
    pub error: Option<String>,
    /// The limits.
    pub budget: Budget,
    /// USD spent, all calls.
    pub spent_usd: f64,
    /// Tokens spent, all calls.
    pub spent_tokens: u64,
    /// What the baseline model would have cost.
    pub baseline_usd: f64,
    /// Subtasks done by the escalation model.
    pub escalated_subtasks: u32,
    /// Their share of all subtasks (the seed expects about 1%).
    pub escalation_share: f64,
    /// Milliseconds the task took.
    pub elapsed_ms: Option<u64>,
    /// The worst case of the calls in flight.
    #[serde(skip)]
    pub(super) reserved: Reserved,
}

/// Where a subtask is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SubtaskStatus {
    /// Waiting for its dependencies.
    Pending,
    /// Its call is in flight.
    Running,
    /// Its output is kept.
    Done,
    /// No model could do it.
    Failed,
    /// The task stopped before it ran.
    Skipped,
}

/// A reviewer's verdict on a subtask's output.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// Kept.
    Accept,
    /// Asked again with the reviewer's feedback.
    Retry,
    /// Given to the escalation model.
    Escalate,
}

/// What a task event reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    /// The task's status changed.
    Status,
    /// The plan is known.
    Plan,
    /// A subtask changed.
    Subtask,
    /// A model call ended.
    Call,
    /// Something a reader should know.
    Note,
}

impl EventKind {
    /// The event's name on the wire (the SSE `event:` field).
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::Status => "status",
            EventKind::Plan => "plan",
            EventKind::Subtask => "subtask",
            EventKind::Call => "call",
            EventKind::Note => "note",
        }
    }
}

/// A progress event, as `GET /v1/tasks/{id}/events` streams it.
#[derive(Debug, Clone, Serialize)]
pub struct TaskEvent {
    /// What it reports.
    pub kind: EventKind,
    /// Details.
    pub data: serde_json::Value,
}

/// A call's worst case, held against the task's budget while it runs.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct Reserved {
    pub(super) usd: f64,
    pub(super) tokens: u64,
}

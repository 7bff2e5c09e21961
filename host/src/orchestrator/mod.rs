//! The two tiers: the planner decomposes, executors implement, critical
//! work is reviewed, failures escalate.
//!
//! - [`task`]: the task API's runner: route, plan (re-asked once, else
//!   direct), the plan's DAG run with bounded parallelism, reviews,
//!   budgets, cancellation.
//! - [`context`]: fitting a subtask's prompt to its model's window.
//! - [`call`]: one model call through the resilience layer.
//! - [`store`]: tasks by id.
//! - [`transparent`]: plan mode for unmodified agents on the chat APIs.

pub mod call;
pub mod context;
pub mod store;
pub mod task;
pub mod transparent;

use std::sync::Arc;

use crate::dispatch::Dispatch;
use crate::policy::ActivePolicies;

/// What the orchestrator works with, taken from one configuration: a task
/// or a plan keeps the configuration it started on until it ends.
#[derive(Clone)]
pub struct Orchestrator {
    /// Where model calls are made and settled.
    pub dispatch: Arc<Dispatch>,
    /// The router and planner.
    pub policies: Arc<ActivePolicies>,
    /// Plans of agent sessions in transparent plan mode.
    pub plans: Arc<transparent::PlanCache>,
    /// A task's deadline when it names none, in milliseconds.
    pub total_deadline_ms: u64,
}

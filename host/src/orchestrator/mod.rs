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

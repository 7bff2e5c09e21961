//! Tasks: what a client submits to `POST /v1/tasks`, the live handle the
//! store keeps, and the runner that takes a task through its tier.
//!
//! - [`record`]: the input, the record `GET /v1/tasks/{id}` shows, events;
//! - [`handle`]: a live task (record, event log, cancellation, budget);
//! - [`run`](mod@run): direct; plan → execute the DAG; plan → execute →
//!   verify, with escalation.

mod handle;
mod record;
mod run;

pub use handle::{Recorder, TaskHandle};
pub use record::{
    Budget, CallRecord, ContextFile, EventKind, Status, SubtaskRecord, SubtaskStatus, TaskEvent,
    TaskInput, TaskRecord, Verdict,
};
pub use run::run;

/// Subtasks run at once, at most.
pub const PARALLEL_SUBTASKS: usize = 4;
/// Output tokens assumed for a call when checking the budget.
pub const EXPECTED_OUTPUT_TOKENS: u32 = 2048;

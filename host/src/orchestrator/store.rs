//! Tasks by id, kept in memory (the ledger will persist them).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use super::task::{self, TaskHandle, TaskInput};
use crate::gateway::AppState;

/// The tasks of this daemon.
#[derive(Default)]
pub struct Tasks {
    tasks: Mutex<HashMap<String, Arc<TaskHandle>>>,
    next: AtomicU64,
}

impl Tasks {
    /// Starts `input` in the background and returns its handle. The task
    /// runs whether or not the client stays connected.
    pub fn submit(&self, state: Arc<AppState>, input: TaskInput) -> Arc<TaskHandle> {
        let id = format!(
            "task-{:x}-{}",
            crate::provider::unix_now(),
            self.next.fetch_add(1, Ordering::Relaxed)
        );
        let handle = TaskHandle::new(id.clone(), &input);
        self.tasks
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(id, handle.clone());
        tokio::spawn(task::run(state, handle.clone(), input));
        handle
    }

    /// The task `id`.
    pub fn get(&self, id: &str) -> Option<Arc<TaskHandle>> {
        self.tasks
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(id)
            .cloned()
    }
}

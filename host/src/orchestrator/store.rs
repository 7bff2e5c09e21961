//! Tasks by id, kept in memory (the ledger will persist them).
//!
//! Finished tasks are kept for their clients to read, up to
//! [`MAX_FINISHED`]: beyond that the oldest finished ones are forgotten
//! (their id then answers 404). Without the bound every task ever submitted
//! stayed in memory, with its event log and channel; the soak test
//! (`bench/soak`) saw the daemon grow by about 20 MiB a minute at a
//! thousand tasks a minute.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use super::task::{self, TaskHandle, TaskInput};
use crate::gateway::AppState;

/// Most finished tasks remembered.
pub const MAX_FINISHED: usize = 1000;

/// The tasks of this daemon.
#[derive(Default)]
pub struct Tasks {
    /// By id: the submission order, and the task.
    tasks: Mutex<HashMap<String, (u64, Arc<TaskHandle>)>>,
    next: AtomicU64,
}

impl Tasks {
    /// Starts `input` in the background and returns its handle. The task
    /// runs whether or not the client stays connected.
    pub fn submit(&self, state: Arc<AppState>, input: TaskInput) -> Arc<TaskHandle> {
        let seq = self.next.fetch_add(1, Ordering::Relaxed);
        let id = format!("task-{:x}-{seq}", crate::provider::unix_now());
        let handle = TaskHandle::new(id.clone(), &input);
        {
            let mut tasks = self.tasks.lock().unwrap_or_else(|p| p.into_inner());
            forget_oldest_finished(&mut tasks, MAX_FINISHED);
            tasks.insert(id, (seq, handle.clone()));
        }
        tokio::spawn(task::run(state, handle.clone(), input));
        handle
    }

    /// The task `id`.
    pub fn get(&self, id: &str) -> Option<Arc<TaskHandle>> {
        self.tasks
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(id)
            .map(|(_, handle)| handle.clone())
    }

    /// How many tasks are remembered, running or finished.
    pub fn len(&self) -> usize {
        self.tasks.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    /// Whether no task is remembered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Drops the oldest finished tasks beyond `keep`; running ones stay.
fn forget_oldest_finished(tasks: &mut HashMap<String, (u64, Arc<TaskHandle>)>, keep: usize) {
    let mut finished: Vec<(u64, String)> = tasks
        .iter()
        .filter(|(_, (_, handle))| handle.is_final())
        .map(|(id, (seq, _))| (*seq, id.clone()))
        .collect();
    if finished.len() <= keep {
        return;
    }
    finished.sort_unstable();
    let excess = finished.len() - keep;
    for (_, id) in finished.into_iter().take(excess) {
        tasks.remove(&id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input() -> TaskInput {
        serde_json::from_value(serde_json::json!({"title": "t", "description": "d"}))
            .expect("task input")
    }

    #[test]
    fn only_the_newest_finished_tasks_are_kept_and_running_ones_always() {
        let mut tasks = HashMap::new();
        for seq in 0..10u64 {
            let handle = TaskHandle::new(format!("t{seq}"), &input());
            // Tasks 0, 2, 4... are still running.
            if seq % 2 == 1 {
                handle.finish_for_test();
            }
            tasks.insert(format!("t{seq}"), (seq, handle));
        }
        forget_oldest_finished(&mut tasks, 2);
        let mut kept: Vec<&str> = tasks.keys().map(String::as_str).collect();
        kept.sort_unstable();
        assert_eq!(kept, ["t0", "t2", "t4", "t6", "t7", "t8", "t9"]);
    }
}

//! Tasks by id, kept in memory while they run and recorded in the ledger
//! (where any replica reads them), each visible
//! to its owner only, and kept within bounds: a finished task is forgotten
//! after `[tasks] keep_secs`, and a client holds at most
//! `[tasks] max_per_client` tasks.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::Orchestrator;
use super::task::{self, TaskHandle, TaskInput};
use crate::config::TasksConfig;
use crate::ledger::Ledger;
use crate::tenant::Owner;

/// How often, at most, the whole store is swept for expired tasks (a
/// client's own tasks are swept at each of its submissions).
const SWEEP_EVERY: Duration = Duration::from_secs(60);
/// Most tasks held, all clients together: without `[[clients]]` every key
/// is a client of its own, so the per-client bound alone would not bound
/// the store. Past it the oldest finished task is forgotten. (Without any
/// bound every task ever submitted stayed in memory, with its event log
/// and channel: the soak test, `bench/soak`, saw about 20 MiB a minute at a
/// thousand tasks a minute.)
pub const MAX_TASKS: usize = 10_000;

/// The tasks of this daemon.
pub struct Tasks {
    inner: Mutex<Inner>,
    ledger: Ledger,
    replica: String,
    /// Shared with every task's recorder (see [`Tasks::interrupt_left`]).
    sealed: Arc<std::sync::atomic::AtomicBool>,
    keep: Duration,
    max_per_client: usize,
}

struct Inner {
    by_id: HashMap<String, Arc<TaskHandle>>,
    swept: Instant,
}

/// Why a task was not accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    /// The client already has its maximum of tasks, all still running.
    #[error("this client already has {0} tasks running, its limit; wait for one to end")]
    TooMany(usize),
}

impl Tasks {
    /// An empty store with the bounds of `[tasks]`.
    /// Tasks are recorded in `ledger` as run by `replica`.
    pub fn new(config: &TasksConfig, ledger: Ledger, replica: String) -> Self {
        Tasks {
            ledger,
            replica,
            sealed: Arc::default(),
            inner: Mutex::new(Inner {
                by_id: HashMap::new(),
                swept: Instant::now(),
            }),
            keep: Duration::from_secs(config.keep_secs),
            max_per_client: config.max_per_client,
        }
    }

    /// Starts `input` for `owner` in the background and returns its handle.
    /// The task runs whether or not the client stays connected.
    pub fn submit(
        &self,
        orchestrator: Orchestrator,
        owner: Owner,
        input: TaskInput,
    ) -> Result<Arc<TaskHandle>, Refused> {
        let handle = {
            let mut inner = self.lock();
            let now = Instant::now();
            if now.duration_since(inner.swept) >= SWEEP_EVERY {
                inner.sweep(|_| true, self.keep, now);
                inner.swept = now;
            }
            inner.sweep(|h| h.owner == owner, self.keep, now);
            let own = inner.by_id.values().filter(|h| h.owner == owner).count();
            if own >= self.max_per_client {
                // Make room by forgetting the client's oldest finished task.
                let oldest = inner
                    .by_id
                    .iter()
                    .filter(|(_, h)| h.owner == owner)
                    .filter_map(|(id, h)| Some((h.ended_at()?, id.clone())))
                    .min()
                    .map(|(_, id)| id)
                    .ok_or(Refused::TooMany(self.max_per_client))?;
                inner.by_id.remove(&oldest);
            }
            if inner.by_id.len() >= MAX_TASKS {
                let oldest = inner
                    .by_id
                    .iter()
                    .filter_map(|(id, h)| Some((h.ended_at()?, id.clone())))
                    .min()
                    .map(|(_, id)| id)
                    .ok_or(Refused::TooMany(self.max_per_client))?;
                inner.by_id.remove(&oldest);
            }
            let id = task_id();
            let budgets = orchestrator.dispatch.budget_scopes(
                owner.as_str(),
                input.labels.iter().map(|(k, v)| (k.as_str(), v.as_str())),
            );
            let recorder = task::Recorder {
                ledger: self.ledger.clone(),
                replica: self.replica.clone(),
                sealed: self.sealed.clone(),
            };
            let handle = TaskHandle::new(id.clone(), owner, &input, recorder, budgets);
            inner.by_id.insert(id, handle.clone());
            handle
        };
        handle.persist();
        tokio::spawn(task::run(orchestrator, handle.clone(), input));
        Ok(handle)
    }

    /// The task `id`, if `owner` made it. Another owner's task is as
    /// absent as one that never existed.
    pub fn get(&self, owner: &Owner, id: &str) -> Option<Arc<TaskHandle>> {
        self.lock()
            .by_id
            .get(id)
            .filter(|h| h.owner == *owner)
            .cloned()
    }

    /// At shutdown, after the grace period: stops every task's record
    /// from being written again and marks this replica's live tasks
    /// `interrupted` in the ledger, so that other replicas and reports see
    /// them ended even if this one never starts again. Returns how many
    /// were marked.
    pub async fn interrupt_left(&self) -> Result<u64, crate::ledger::LedgerError> {
        self.sealed
            .store(true, std::sync::atomic::Ordering::Release);
        // Only this replica's tasks: no staleness rule for the others.
        self.ledger
            .interrupt_tasks(&self.replica, Duration::MAX)
            .await
    }

    /// Tasks not yet ended, all owners.
    pub fn running(&self) -> usize {
        self.lock()
            .by_id
            .values()
            .filter(|h| h.ended_at().is_none())
            .count()
    }

    /// Tasks held, all owners.
    pub fn len(&self) -> usize {
        self.lock().by_id.len()
    }

    /// Whether no task is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Inner {
    /// Forgets the tasks `which` selects that ended more than `keep` ago.
    fn sweep(&mut self, which: impl Fn(&TaskHandle) -> bool, keep: Duration, now: Instant) {
        self.by_id.retain(|_, h| {
            !which(h)
                || h.ended_at()
                    .is_none_or(|ended| now.duration_since(ended) < keep)
        });
    }
}

/// A task id no client can guess: 128 random bits.
fn task_id() -> String {
    let mut bytes = [0u8; 16];
    // The OS's generator; if it ever fails, the clock and a counter still
    // give a unique id, which ownership checks keep private anyway.
    if getrandom::fill(&mut bytes).is_err() {
        use std::sync::atomic::{AtomicU64, Ordering};
        static NEXT: AtomicU64 = AtomicU64::new(0);
        bytes[..8].copy_from_slice(&crate::provider::unix_now().to_le_bytes());
        bytes[8..].copy_from_slice(&NEXT.fetch_add(1, Ordering::Relaxed).to_le_bytes());
    }
    format!("task_{}", hex::encode(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn task_ids_are_long_and_distinct() {
        let a = task_id();
        let b = task_id();
        assert_ne!(a, b);
        assert_eq!(a.len(), "task_".len() + 32);
    }
}

//! The ledger's store: every call, task and feedback entry on record in
//! SQLite or PostgreSQL, written by a group-commit writer that never
//! blocks the async runtime; budget reservations; retention.
//!
//! - [`Ledger::record`] resolves only once the call's row is durable, so a
//!   response's last byte can wait for it, and a process crash (`kill -9`)
//!   loses nothing acknowledged. On SQLite with `[ledger] sync = "normal"`
//!   that is once the row is appended to the record journal (see
//!   `journal`: a copy into the page cache, no wait for the writer
//!   thread), which the writer inserts into SQLite in batches and the
//!   next open replays after a crash; a power loss or OS crash can lose
//!   what the kernel had not yet written back. With `sync = "full"` it is
//!   once a synced group commit has the row. PostgreSQL follows the
//!   server's `synchronous_commit`.
//! - Reads (reports, usage, feedback targets, spend) first wait for the
//!   journaled records to be applied, so they see every record made before
//!   them.
//! - Budgets: [`Ledger::reserve`] holds a call's worst case against each
//!   scope's daily and monthly cap; [`Ledger::record`] with the
//!   reservation settles it (the hold goes and the real cost is added to
//!   the scopes' spend in the call row's transaction). A reservation
//!   expires after [`DEFAULT_HOLD`] (15 minutes, refreshed by nothing), so
//!   a crashed daemon's holds stop counting. On SQLite the holds are in
//!   the daemon's memory (one daemon per file); on PostgreSQL they are rows
//!   that every replica sees, serialised per scope by an advisory lock, so
//!   replicas together never pass a cap (given clocks in step: expiry
//!   compares each replica's own clock).
//! - Retention: records older than `[ledger] keep_days` are pruned at start
//!   and hourly, a few hundred rows per transaction between group commits.

mod budget;
mod codec;
mod error;
mod journal;
mod postgres;
mod sqlite;
mod window;
mod writer;

use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use tokio::sync::oneshot;

pub use budget::{BudgetScope, Refusal, Reservation, ReserveError, Spend};
pub use error::{LedgerError, redact};
pub use window::{Window, utc_midnight_ms};

use budget::BudgetOp;
use writer::{Queue, Shared, Write};

use crate::config::ledger::LedgerConfig;
use crate::ledger::record::{CallRecord, FeedbackRecord, Nanos, TaskRecord};

/// How long a reservation holds before it stops counting.
pub const DEFAULT_HOLD: Duration = Duration::from_secs(15 * 60);

/// How often old records are pruned (and once at open).
pub const PRUNE_EVERY: Duration = Duration::from_secs(3600);

/// Rows per table one prune transaction deletes at most.
const PRUNE_BATCH: u32 = 500;

/// The current time, Unix milliseconds (UTC).
pub type Clock = Arc<dyn Fn() -> i64 + Send + Sync>;

/// The system clock, Unix milliseconds.
pub fn system_now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// Whether the store takes writes now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Health {
    /// Commits succeed.
    Ok,
    /// The last commit (or probe) failed; the writer keeps retrying.
    Unavailable {
        /// What failed, naming the store (password redacted).
        reason: String,
        /// Since when, Unix milliseconds.
        since_ms: i64,
    },
    /// More records wait than `[ledger] max_backlog`.
    Backlogged {
        /// Records waiting.
        queued: usize,
    },
}

/// A window of calls or feedback: `since_ms <= at_ms < until_ms`,
/// optionally of one client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallFilter {
    /// From, Unix milliseconds, inclusive.
    pub since_ms: i64,
    /// To, Unix milliseconds, exclusive.
    pub until_ms: i64,
    /// Only this client's.
    pub client: Option<String>,
}

/// Knobs tests turn; the daemon uses the defaults.
#[derive(Clone)]
pub struct LedgerOptions {
    /// How long a reservation holds.
    pub hold: Duration,
    /// The clock budgets and pruning read.
    pub clock: Clock,
    /// How often to prune; `None` never (not even at open).
    pub prune_every: Option<Duration>,
}

impl Default for LedgerOptions {
    fn default() -> Self {
        LedgerOptions {
            hold: DEFAULT_HOLD,
            clock: Arc::new(system_now_ms),
            prune_every: Some(PRUNE_EVERY),
        }
    }
}

/// Where reads and reservations go.
#[allow(clippy::large_enum_variant)] // one per ledger
enum Reader {
    Sqlite(Arc<sqlite::Readers>),
    Postgres(Box<postgres::Pool>),
}

struct Inner {
    queue: Queue,
    reader: Reader,
    clock: Clock,
    hold_ms: i64,
    keep_days: u32,
    /// The store's name in messages (file path, or the redacted URL).
    store: String,
    writer: Mutex<Option<std::thread::JoinHandle<()>>>,
    pruner: Mutex<Option<tokio::task::JoinHandle<()>>>,
    /// What each capped scope had left at its latest reservation, and
    /// when: routers see it as the request's remaining budget.
    headroom: Mutex<std::collections::HashMap<String, (Nanos, i64)>>,
}

/// The ledger: a cheap handle to the store and its writer.
#[derive(Clone)]
pub struct Ledger {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Ledger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ledger")
            .field("store", &self.inner.store)
            .finish_non_exhaustive()
    }
}

impl Ledger {
    /// Opens (creating if needed) the store at `url` (`sqlite:PATH` or
    /// `postgres://…`), applies migrations, refuses a newer schema, starts
    /// the writer and the pruner.
    pub async fn open(url: &str, config: &LedgerConfig) -> Result<Ledger, LedgerError> {
        Self::open_with(url, config, LedgerOptions::default()).await
    }

    /// [`Ledger::open`] with other hold time, clock or pruning.
    pub async fn open_with(
        url: &str,
        config: &LedgerConfig,
        options: LedgerOptions,
    ) -> Result<Ledger, LedgerError> {
        let shared = Arc::new(Shared::new(config.max_backlog, options.clock.clone()));
        let (queue, writer, reader, store) = if let Some(rest) = url.strip_prefix("sqlite:") {
            let path = rest.strip_prefix("//").unwrap_or(rest);
            if path.is_empty() {
                return Err(LedgerError::BadUrl {
                    url: url.to_string(),
                    detail: "no file after sqlite:".into(),
                });
            }
            let path = std::path::PathBuf::from(path);
            let sync = config.sync;
            let (backend, readers, journal) =
                tokio::task::spawn_blocking(move || sqlite::open(&path, sync))
                    .await
                    .map_err(|e| LedgerError::Store {
                        store: url.to_string(),
                        detail: format!("opening failed: {e}"),
                    })??;
            let store = rest.to_string();
            let journaled = journal.map(|journal| writer::Journaled {
                journal: Arc::new(journal),
                delay: Duration::from_millis(
                    config
                        .apply_delay_ms
                        .min(crate::config::ledger::MAX_APPLY_DELAY_MS),
                ),
            });
            let (queue, writer) = Queue::start(backend, config.max_batch, shared, journaled)
                .map_err(|e| LedgerError::Store {
                    store: store.clone(),
                    detail: format!("cannot start the writer thread: {e}"),
                })?;
            (queue, writer, Reader::Sqlite(readers), store)
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            let target = postgres::Target::parse(url)?;
            postgres::migrate(&target).await?;
            let store = target.url().to_string();
            let (queue, writer) = Queue::start(
                postgres::PgWriter::new(target.clone()),
                config.max_batch,
                shared,
                None,
            )
            .map_err(|e| LedgerError::Store {
                store: store.clone(),
                detail: format!("cannot start the writer thread: {e}"),
            })?;
            (
                queue,
                writer,
                Reader::Postgres(Box::new(postgres::Pool::new(target))),
                store,
            )
        } else {
            return Err(LedgerError::BadUrl {
                url: redact(url),
                detail: "expected sqlite:PATH or postgres://…".into(),
            });
        };
        crate::metrics::ledger_up(true);
        tracing::info!(store = %store, "ledger open");
        let inner = Arc::new(Inner {
            queue,
            reader,
            clock: options.clock,
            hold_ms: options.hold.as_millis().min(i64::MAX as u128) as i64,
            keep_days: config.keep_days,
            store,
            writer: Mutex::new(Some(writer)),
            pruner: Mutex::new(None),
            headroom: Mutex::default(),
        });
        if let Some(every) = options.prune_every {
            let weak = Arc::downgrade(&inner);
            let handle = tokio::spawn(prune_loop(weak, every));
            *inner.pruner.lock().unwrap_or_else(|e| e.into_inner()) = Some(handle);
        }
        Ok(Ledger { inner })
    }

    /// Records `call` and resolves once it is durable (Err if it could
    /// not be made so): journaled on SQLite with `sync = "normal"`,
    /// otherwise committed by the next group commit. `settle`, when given,
    /// releases that reservation and adds the call's cost to its scopes'
    /// spend in the transaction that inserts the call row.
    pub async fn record(
        &self,
        call: CallRecord,
        settle: Option<Reservation>,
    ) -> Result<(), LedgerError> {
        self.inner
            .queue
            .record(Box::new(call), settle.filter(|r| !r.scopes.is_empty()))
            .await
    }

    /// Fire-and-forget variant for records nobody waits on (still
    /// journaled or group-committed; a failure is logged and counted).
    pub fn record_later(&self, call: CallRecord, settle: Option<Reservation>) {
        let request_id = call.request_id.clone();
        let settle = settle.filter(|r| !r.scopes.is_empty());
        if let Err(e) = self.inner.queue.record_later(Box::new(call), settle) {
            crate::metrics::ledger_records_failed(1);
            tracing::error!(error = %e, request_id, "a ledger record was dropped");
        }
    }

    /// Cheap, synchronous: whether the store takes writes now.
    pub fn health(&self) -> Health {
        self.inner.queue.shared.health()
    }

    /// Upserts a task by id (group-committed).
    pub async fn put_task(&self, task: TaskRecord) -> Result<(), LedgerError> {
        self.inner
            .queue
            .write_and_wait(Write::Task(task))
            .await
            .map(|_| ())
    }

    /// Queues a task's upsert for the next group commit without waiting:
    /// upserts of one task commit in the order they were queued.
    pub fn put_task_later(&self, task: TaskRecord) {
        let id = task.id.clone();
        if let Err(e) = self.inner.queue.write(Write::Task(task), None) {
            crate::metrics::ledger_records_failed(1);
            tracing::error!(error = %e, task = %id, "a task record was dropped");
        }
    }

    /// The rollout state stored under `key`, as written.
    pub async fn rollout_state(&self, key: &str) -> Result<Option<String>, LedgerError> {
        match &self.inner.reader {
            Reader::Sqlite(r) => r.rollout_state(key).await,
            Reader::Postgres(p) => p.rollout_state(key).await,
        }
    }

    /// Replaces the rollout state under `key` with `value` if it is still
    /// `expected` (`None`: nothing stored yet); false when another writer
    /// (another replica) changed it first. Replicas share a rollout through
    /// this compare-and-set.
    pub async fn swap_rollout_state(
        &self,
        key: &str,
        expected: Option<&str>,
        value: &str,
    ) -> Result<bool, LedgerError> {
        let now = (self.inner.clock)();
        match &self.inner.reader {
            Reader::Sqlite(r) => {
                r.swap_rollout_state(key, expected.map(str::to_string), value.to_string(), now)
                    .await
            }
            Reader::Postgres(p) => p.swap_rollout_state(key, expected, value, now).await,
        }
    }

    /// The task `id`, from the store.
    pub async fn task(&self, id: &str) -> Result<Option<TaskRecord>, LedgerError> {
        match &self.inner.reader {
            Reader::Sqlite(r) => r.task(id).await,
            Reader::Postgres(p) => p.task(id).await,
        }
    }

    /// Marks `running`/`queued`/`planning` tasks of `replica` (and of any
    /// replica whose task rows have not been updated for `stale_after`) as
    /// `interrupted` (in the row's status and its body's `status`);
    /// returns how many.
    pub async fn interrupt_tasks(
        &self,
        replica: &str,
        stale_after: Duration,
    ) -> Result<u64, LedgerError> {
        let now_ms = (self.inner.clock)();
        let stale_ms = stale_after.as_millis().min(i64::MAX as u128) as i64;
        self.inner
            .queue
            .write_and_wait(Write::Interrupt {
                replica: replica.to_string(),
                stale_before_ms: now_ms.saturating_sub(stale_ms),
                now_ms,
            })
            .await
    }

    /// Adds a feedback entry (group-committed).
    pub async fn add_feedback(&self, entry: FeedbackRecord) -> Result<(), LedgerError> {
        self.inner
            .queue
            .write_and_wait(Write::Feedback(entry))
            .await
            .map(|_| ())
    }

    /// Feedback given in a window, optionally by one client.
    pub async fn feedback(&self, filter: &CallFilter) -> Result<Vec<FeedbackRecord>, LedgerError> {
        self.inner.queue.flush().await?;
        match &self.inner.reader {
            Reader::Sqlite(r) => r.feedback(filter).await,
            Reader::Postgres(p) => p.feedback(filter).await,
        }
    }

    /// The client that made request `id` / task `id`.
    pub async fn request_client(&self, id: &str) -> Result<Option<String>, LedgerError> {
        self.inner.queue.flush().await?;
        match &self.inner.reader {
            Reader::Sqlite(r) => r.request_client(id).await,
            Reader::Postgres(p) => p.request_client(id).await,
        }
    }

    /// Calls in a window, optionally of one client, oldest first; read in
    /// pages so a large window never holds the store.
    pub async fn calls(&self, filter: &CallFilter) -> Result<Vec<CallRecord>, LedgerError> {
        self.inner.queue.flush().await?;
        match &self.inner.reader {
            Reader::Sqlite(r) => r.calls(filter, usize::MAX).await,
            Reader::Postgres(p) => p.calls(filter, usize::MAX).await,
        }
    }

    /// [`Ledger::calls`], but `None` when the window holds more than `most`
    /// calls (reading stops a page past it), so a daemon answering a
    /// report never holds an unbounded window in memory.
    pub async fn calls_at_most(
        &self,
        filter: &CallFilter,
        most: usize,
    ) -> Result<Option<Vec<CallRecord>>, LedgerError> {
        self.inner.queue.flush().await?;
        let calls = match &self.inner.reader {
            Reader::Sqlite(r) => r.calls(filter, most).await?,
            Reader::Postgres(p) => p.calls(filter, most).await?,
        };
        Ok((calls.len() <= most).then_some(calls))
    }

    /// The calls of arms whose label starts with `arm_prefix` (a
    /// rollout's `<id>/`) recorded after row `after_id` and started at
    /// `since_ms` or later, in the order they were recorded, with their row
    /// ids; one page (2,000 calls) at a time: ask again after the
    /// last id for more. `after_id: None` starts at the first call of the
    /// window. Lets a reader follow the ledger as it grows, reading each
    /// call once.
    pub async fn arm_calls_after(
        &self,
        arm_prefix: &str,
        after_id: Option<i64>,
        since_ms: i64,
    ) -> Result<Vec<(i64, CallRecord)>, LedgerError> {
        self.inner.queue.flush().await?;
        let after_id = match (after_id, &self.inner.reader) {
            (Some(id), _) => id,
            (None, Reader::Sqlite(r)) => r.id_before(since_ms).await?,
            (None, Reader::Postgres(p)) => p.id_before(since_ms).await?,
        };
        match &self.inner.reader {
            Reader::Sqlite(r) => r.arm_calls_after(arm_prefix, after_id, since_ms).await,
            Reader::Postgres(p) => p.arm_calls_after(arm_prefix, after_id, since_ms).await,
        }
    }

    /// Reserves `amount` against every scope's daily and monthly cap;
    /// concurrent reservations (on PostgreSQL: from any replica) see each
    /// other. Refused when spent + reserved + amount would pass a cap.
    /// A store failure is an error too (budgets hold by refusing).
    pub async fn reserve(
        &self,
        scopes: &[BudgetScope],
        amount: Nanos,
    ) -> Result<Reservation, ReserveError> {
        if scopes.is_empty() {
            return Ok(Reservation::none());
        }
        let mut scopes = scopes.to_vec();
        scopes.sort_by(|a, b| a.key.cmp(&b.key));
        scopes.dedup_by(|a, b| {
            if a.key == b.key {
                // Two entries for one scope: the tighter caps hold.
                b.daily_cap = min_cap(a.daily_cap, b.daily_cap);
                b.monthly_cap = min_cap(a.monthly_cap, b.monthly_cap);
                true
            } else {
                false
            }
        });
        let amount = amount.max(0);
        let now_ms = (self.inner.clock)();
        let expires_ms = now_ms.saturating_add(self.inner.hold_ms);
        let reserved = match &self.inner.reader {
            Reader::Sqlite(_) => {
                let (reply, answer) = oneshot::channel();
                self.inner
                    .queue
                    .budget(BudgetOp::Reserve {
                        scopes,
                        amount,
                        now_ms,
                        expires_ms,
                        reply,
                    })
                    .map_err(ReserveError::Store)?;
                answer
                    .await
                    .unwrap_or(Err(ReserveError::Store(LedgerError::Closed)))
            }
            Reader::Postgres(p) => p.reserve(&scopes, amount, now_ms, expires_ms).await,
        };
        if let Ok(reservation) = &reserved
            && !reservation.headroom.is_empty()
        {
            let mut headroom = self
                .inner
                .headroom
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            for (scope, left) in &reservation.headroom {
                // The scopes come from the config: the map stays small.
                headroom.insert(scope.clone(), (*left, now_ms));
            }
        }
        reserved
    }

    /// What the tightest of `scopes`' caps leaves, as of each scope's
    /// latest reservation on this daemon today (counting what that
    /// reservation held, so it errs low); None when no capped scope has
    /// reserved today. Cheap: no store read. Routers see it as the
    /// request's remaining budget.
    pub fn remaining(&self, scopes: &[BudgetScope]) -> Option<Nanos> {
        if scopes.is_empty() {
            return None;
        }
        let today = Window::Day.start((self.inner.clock)());
        let headroom = self
            .inner
            .headroom
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        scopes
            .iter()
            .filter_map(|scope| headroom.get(&scope.key))
            .filter(|(_, at_ms)| Window::Day.start(*at_ms) == today)
            .map(|(left, _)| (*left).max(0))
            .min()
    }

    /// Gives a reservation back unused (the call was never made).
    pub async fn release(&self, reservation: Reservation) {
        if reservation.scopes.is_empty() {
            return;
        }
        match &self.inner.reader {
            Reader::Sqlite(_) => {
                let _ = self.inner.queue.budget(BudgetOp::Release(reservation));
            }
            Reader::Postgres(p) => {
                if let Err(e) = p.release(&reservation).await {
                    tracing::warn!(error = %e, "a budget reservation could not be released; it expires on its own");
                }
            }
        }
    }

    /// Spent (settled) and reserved in the current day and month of `scope`.
    pub async fn spent(&self, scope: &str) -> Result<Spend, LedgerError> {
        self.inner.queue.flush().await?;
        let now_ms = (self.inner.clock)();
        match &self.inner.reader {
            Reader::Sqlite(_) => {
                let (reply, answer) = oneshot::channel();
                self.inner.queue.budget(BudgetOp::Spent {
                    scope: scope.to_string(),
                    now_ms,
                    reply,
                })?;
                answer.await.unwrap_or(Err(LedgerError::Closed))
            }
            Reader::Postgres(p) => p.spent(scope, now_ms).await,
        }
    }

    /// Prunes records older than `[ledger] keep_days` now, a batch per
    /// transaction; returns the rows deleted.
    pub async fn prune(&self) -> Result<u64, LedgerError> {
        prune(&self.inner).await
    }

    /// Commits everything queued and stops the writer (at shutdown). Later
    /// writes fail with [`LedgerError::Closed`].
    pub async fn close(&self) {
        if let Some(pruner) = self
            .inner
            .pruner
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
        {
            pruner.abort();
        }
        self.inner.queue.close().await;
        let writer = self
            .inner
            .writer
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        if let Some(writer) = writer {
            let _ = tokio::task::spawn_blocking(move || writer.join()).await;
        }
        tracing::info!(store = %self.inner.store, "ledger closed");
    }
}

fn min_cap(a: Option<Nanos>, b: Option<Nanos>) -> Option<Nanos> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

async fn prune(inner: &Inner) -> Result<u64, LedgerError> {
    let now_ms = (inner.clock)();
    let before_ms = (inner.keep_days > 0)
        .then(|| now_ms.saturating_sub(i64::from(inner.keep_days) * 86_400_000));
    // Spend counters matter only in their window; the previous month's are
    // kept for a look back.
    let spend_before_ms = Window::Month.start(Window::Month.start(now_ms) - 1);
    let mut total = 0;
    loop {
        let deleted = inner
            .queue
            .write_and_wait(Write::Prune {
                before_ms,
                spend_before_ms,
                now_ms,
                limit: PRUNE_BATCH,
            })
            .await?;
        total += deleted;
        if deleted < u64::from(PRUNE_BATCH) {
            return Ok(total);
        }
        // Let the records queued meanwhile go first.
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

async fn prune_loop(inner: Weak<Inner>, every: Duration) {
    loop {
        {
            let Some(inner) = inner.upgrade() else { return };
            match prune(&inner).await {
                Ok(0) => {}
                Ok(n) => tracing::info!(store = %inner.store, rows = n, "ledger pruned"),
                Err(LedgerError::Closed) => return,
                Err(e) => tracing::warn!(store = %inner.store, error = %e, "ledger pruning failed"),
            }
        }
        tokio::time::sleep(every).await;
    }
}

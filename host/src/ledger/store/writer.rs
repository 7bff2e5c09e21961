//! The group-commit writer: one thread owns the store's write connection,
//! takes everything queued (up to `max_batch`) into one transaction,
//! commits, then acknowledges each waiter. A failed commit fails its
//! waiters (nothing uncommitted is ever acknowledged) and marks the store
//! unavailable until a commit or a probe succeeds.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::oneshot;

use super::budget::BudgetOp;
use super::{Clock, Health, LedgerError, Reservation};
use crate::ledger::record::{CallRecord, FeedbackRecord, TaskRecord};

/// The answer to one queued write: rows it changed, or why it failed.
pub(crate) type Ack = oneshot::Sender<Result<u64, LedgerError>>;

/// One write of a group commit.
#[derive(Debug)]
pub(crate) enum Write {
    /// A call row, and the reservation it settles.
    Call(Box<CallRecord>, Option<Reservation>),
    /// A task upsert.
    Task(TaskRecord),
    /// A feedback entry.
    Feedback(FeedbackRecord),
    /// Marks live tasks of `replica`, or of replicas silent since
    /// `stale_before_ms`, interrupted.
    Interrupt {
        replica: String,
        stale_before_ms: i64,
        now_ms: i64,
    },
    /// Deletes up to `limit` rows per table older than `before_ms`, and
    /// reservations expired at `now_ms`.
    Prune {
        before_ms: Option<i64>,
        spend_before_ms: i64,
        now_ms: i64,
        limit: u32,
    },
}

/// What the writer thread receives.
pub(crate) enum Op {
    /// A write for the next group commit.
    Write(Write, Option<Ack>),
    /// A budget operation (SQLite keeps reservations in the writer).
    Budget(BudgetOp),
    /// Commit what came before, then stop.
    Close(oneshot::Sender<()>),
}

/// What the writer and the handle share: the health and the backlog.
pub(crate) struct Shared {
    up: AtomicBool,
    down: Mutex<Option<(String, i64)>>,
    pub(crate) queued: AtomicUsize,
    pub(crate) max_backlog: usize,
    clock: Clock,
}

impl Shared {
    pub(crate) fn new(max_backlog: usize, clock: Clock) -> Shared {
        Shared {
            up: AtomicBool::new(true),
            down: Mutex::new(None),
            queued: AtomicUsize::new(0),
            max_backlog: max_backlog.max(1),
            clock,
        }
    }

    pub(crate) fn health(&self) -> Health {
        if !self.up.load(Ordering::Acquire) {
            let down = self.down.lock().unwrap_or_else(|e| e.into_inner());
            if let Some((reason, since_ms)) = down.as_ref() {
                return Health::Unavailable {
                    reason: reason.clone(),
                    since_ms: *since_ms,
                };
            }
        }
        let queued = self.queued.load(Ordering::Relaxed);
        if queued >= self.max_backlog {
            Health::Backlogged { queued }
        } else {
            Health::Ok
        }
    }

    fn set_up(&self) {
        if !self.up.load(Ordering::Acquire) {
            *self.down.lock().unwrap_or_else(|e| e.into_inner()) = None;
            self.up.store(true, Ordering::Release);
            crate::metrics::ledger_up(true);
            tracing::info!("the ledger store takes writes again");
        }
    }

    fn set_down(&self, error: &LedgerError) {
        let reason = error.to_string();
        let mut down = self.down.lock().unwrap_or_else(|e| e.into_inner());
        if down.is_none() {
            *down = Some((reason.clone(), (self.clock)()));
            tracing::error!(error = %reason, "the ledger store cannot be written");
        } else if let Some(d) = down.as_mut() {
            d.0 = reason;
        }
        self.up.store(false, Ordering::Release);
        crate::metrics::ledger_up(false);
    }
}

/// What a store does for the writer.
pub(crate) trait Backend: Send + 'static {
    /// Writes `batch` in one transaction; `counts[i]` gets the rows the
    /// `i`th write changed.
    fn commit(&mut self, batch: &[Write], counts: &mut Vec<u64>) -> Result<(), LedgerError>;
    /// Called after `batch` committed (SQLite settles its in-memory
    /// reservations here).
    fn committed(&mut self, _batch: &[Write]) {}
    /// A budget operation (SQLite only; PostgreSQL budgets go to the
    /// database directly).
    fn budget(&mut self, op: BudgetOp);
    /// Checks the store takes writes again (after a failure).
    fn probe(&mut self) -> Result<(), LedgerError>;
}

/// A queue of writes and the writer thread that drains it.
pub(crate) struct Queue {
    tx: Sender<Op>,
    pub(crate) shared: Arc<Shared>,
}

const MIN_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(5);

impl Queue {
    /// Starts the writer thread over `backend`.
    pub(crate) fn start<B: Backend>(
        backend: B,
        max_batch: usize,
        shared: Arc<Shared>,
    ) -> std::io::Result<(Queue, std::thread::JoinHandle<()>)> {
        let (tx, rx) = std::sync::mpsc::channel();
        let thread_shared = shared.clone();
        let handle = std::thread::Builder::new()
            .name("ledger-writer".into())
            .spawn(move || run(backend, rx, thread_shared, max_batch.max(1)))?;
        Ok((Queue { tx, shared }, handle))
    }

    /// Queues a write; fails fast past the backlog bound.
    pub(crate) fn write(&self, write: Write, ack: Option<Ack>) -> Result<(), LedgerError> {
        let queued = self.shared.queued.fetch_add(1, Ordering::Relaxed);
        if queued >= self.shared.max_backlog {
            self.shared.queued.fetch_sub(1, Ordering::Relaxed);
            return Err(LedgerError::Backlogged { queued });
        }
        if self.tx.send(Op::Write(write, ack)).is_err() {
            self.shared.queued.fetch_sub(1, Ordering::Relaxed);
            return Err(LedgerError::Closed);
        }
        Ok(())
    }

    /// Queues a write and waits for its commit.
    pub(crate) async fn write_and_wait(&self, write: Write) -> Result<u64, LedgerError> {
        let (tx, rx) = oneshot::channel();
        self.write(write, Some(tx))?;
        rx.await.unwrap_or(Err(LedgerError::Closed))
    }

    /// Sends a budget operation to the writer.
    pub(crate) fn budget(&self, op: BudgetOp) -> Result<(), LedgerError> {
        self.tx
            .send(Op::Budget(op))
            .map_err(|_| LedgerError::Closed)
    }

    /// Asks the writer to commit everything queued and stop; resolves when
    /// it has (or at once if it already stopped).
    pub(crate) async fn close(&self) {
        let (tx, rx) = oneshot::channel();
        if self.tx.send(Op::Close(tx)).is_ok() {
            let _ = rx.await;
        }
    }
}

fn run<B: Backend>(mut backend: B, rx: Receiver<Op>, shared: Arc<Shared>, max_batch: usize) {
    let mut batch: Vec<Write> = Vec::with_capacity(max_batch.min(4096));
    let mut acks: Vec<Option<Ack>> = Vec::with_capacity(max_batch.min(4096));
    let mut counts: Vec<u64> = Vec::with_capacity(max_batch.min(4096));
    let mut backoff = MIN_BACKOFF;
    loop {
        let first = if shared.up.load(Ordering::Acquire) {
            match rx.recv() {
                Ok(op) => op,
                Err(_) => return,
            }
        } else {
            match rx.recv_timeout(backoff) {
                Ok(op) => op,
                Err(RecvTimeoutError::Timeout) => {
                    match backend.probe() {
                        Ok(()) => {
                            shared.set_up();
                            backoff = MIN_BACKOFF;
                        }
                        Err(e) => {
                            shared.set_down(&e);
                            backoff = (backoff * 2).min(MAX_BACKOFF);
                        }
                    }
                    continue;
                }
                Err(RecvTimeoutError::Disconnected) => return,
            }
        };
        let mut closing = None;
        let mut next = Some(first);
        while let Some(op) = next.take() {
            match op {
                Op::Write(write, ack) => {
                    batch.push(write);
                    acks.push(ack);
                }
                Op::Budget(op) => backend.budget(op),
                Op::Close(done) => {
                    closing = Some(done);
                    break;
                }
            }
            if batch.len() < max_batch {
                next = rx.try_recv().ok();
            }
        }
        if !batch.is_empty() {
            let taken = batch.len();
            let started = Instant::now();
            counts.clear();
            let result = backend.commit(&batch, &mut counts);
            crate::metrics::ledger_commit(started.elapsed(), taken, result.is_ok());
            shared.queued.fetch_sub(taken, Ordering::Relaxed);
            crate::metrics::ledger_backlog(shared.queued.load(Ordering::Relaxed));
            match result {
                Ok(()) => {
                    backend.committed(&batch);
                    shared.set_up();
                    backoff = MIN_BACKOFF;
                    for (i, ack) in acks.drain(..).enumerate() {
                        if let Some(ack) = ack {
                            let _ = ack.send(Ok(counts.get(i).copied().unwrap_or(0)));
                        }
                    }
                }
                Err(e) => {
                    shared.set_down(&e);
                    let mut unwaited = 0usize;
                    for ack in acks.drain(..) {
                        match ack {
                            Some(ack) => {
                                let _ = ack.send(Err(e.clone()));
                            }
                            None => unwaited += 1,
                        }
                    }
                    if unwaited > 0 {
                        tracing::error!(error = %e, records = unwaited, "ledger records nobody waited on were lost");
                    }
                }
            }
            batch.clear();
        }
        if let Some(done) = closing {
            let _ = done.send(());
            return;
        }
    }
}

//! The group-commit writer: one thread owns the store's write connection,
//! takes everything queued (up to `max_batch`) into one transaction,
//! commits, then acknowledges each waiter. A failed commit fails its
//! waiters (nothing uncommitted is ever acknowledged) and marks the store
//! unavailable until a commit or a probe succeeds.
//!
//! On SQLite, answers' call records reach the writer through the record
//! journal as the frames the journal wrote, and are decoded here, on the
//! writer's thread. A batch of them that fails to commit is held by the
//! writer and goes first in the next.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::oneshot;

use super::budget::BudgetOp;
use super::journal::Journal;
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
    /// Every journaled record up to this sequence number is in this batch
    /// or an earlier one (SQLite's record journal; see `journal`).
    Applied(u64),
}

/// What the writer thread receives.
pub(crate) enum Op {
    /// A write for the next group commit.
    Write(Write, Option<Ack>),
    /// A budget operation (SQLite keeps reservations in the writer).
    Budget(BudgetOp),
    /// The journal holds records again: apply them within the delay.
    Kick,
    /// Apply what the journal holds now (a read wants to see it).
    Flush(oneshot::Sender<Result<(), LedgerError>>),
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
    /// SQLite's record journal, when this process owns it.
    journal: Option<Arc<Journal>>,
}

/// How the writer treats journaled records.
pub(crate) struct Journaled {
    pub(crate) journal: Arc<Journal>,
    /// How long after the first waiting record a batch is applied.
    pub(crate) delay: Duration,
}

const MIN_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(5);

impl Queue {
    /// Starts the writer thread over `backend`.
    pub(crate) fn start<B: Backend>(
        backend: B,
        max_batch: usize,
        shared: Arc<Shared>,
        journaled: Option<Journaled>,
    ) -> std::io::Result<(Queue, std::thread::JoinHandle<()>)> {
        let (tx, rx) = std::sync::mpsc::channel();
        let journal = journaled.as_ref().map(|j| j.journal.clone());
        let writer = Writer {
            backend,
            rx,
            shared: shared.clone(),
            max_batch: max_batch.max(1),
            journaled,
            held: None,
        };
        let handle = std::thread::Builder::new()
            .name("ledger-writer".into())
            .spawn(move || writer.run())?;
        Ok((
            Queue {
                tx,
                shared,
                journal,
            },
            handle,
        ))
    }

    /// Records a call: appended to the journal when there is one (durable
    /// when this returns; the writer applies it within its delay),
    /// otherwise committed by the writer before this resolves.
    pub(crate) async fn record(
        &self,
        call: Box<crate::ledger::record::CallRecord>,
        settle: Option<Reservation>,
    ) -> Result<(), LedgerError> {
        match &self.journal {
            Some(journal) => self.journal_append(journal, call, settle),
            None => self
                .write_and_wait(Write::Call(call, settle))
                .await
                .map(|_| ()),
        }
    }

    /// Records a call without waiting for its commit (journaled when there
    /// is a journal).
    pub(crate) fn record_later(
        &self,
        call: Box<crate::ledger::record::CallRecord>,
        settle: Option<Reservation>,
    ) -> Result<(), LedgerError> {
        match &self.journal {
            Some(journal) => self.journal_append(journal, call, settle),
            None => self.write(Write::Call(call, settle), None),
        }
    }

    fn journal_append(
        &self,
        journal: &Journal,
        call: Box<crate::ledger::record::CallRecord>,
        settle: Option<Reservation>,
    ) -> Result<(), LedgerError> {
        let queued = self.shared.queued.fetch_add(1, Ordering::Relaxed);
        if queued >= self.shared.max_backlog {
            self.shared.queued.fetch_sub(1, Ordering::Relaxed);
            return Err(LedgerError::Backlogged { queued });
        }
        // `call` is dropped here, on the thread that built it: the writer
        // decodes its own copy from the journal.
        match journal.append(&call, settle) {
            Ok(first) => {
                if first && self.tx.send(Op::Kick).is_err() {
                    // The writer is gone (closing): the next open replays
                    // the record.
                    return Err(LedgerError::Closed);
                }
                Ok(())
            }
            Err(e) => {
                self.shared.queued.fetch_sub(1, Ordering::Relaxed);
                Err(LedgerError::Journal {
                    path: journal.name(),
                    detail: e.to_string(),
                })
            }
        }
    }

    /// Resolves once every record journaled before the call is in the
    /// store (reads call it first, so they see what was recorded).
    pub(crate) async fn flush(&self) -> Result<(), LedgerError> {
        let Some(journal) = &self.journal else {
            return Ok(());
        };
        if !journal.has_pending() {
            return Ok(());
        }
        let (tx, rx) = oneshot::channel();
        self.tx
            .send(Op::Flush(tx))
            .map_err(|_| LedgerError::Closed)?;
        rx.await.unwrap_or(Err(LedgerError::Closed))
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

/// The writer thread's state.
struct Writer<B> {
    backend: B,
    rx: Receiver<Op>,
    shared: Arc<Shared>,
    max_batch: usize,
    journaled: Option<Journaled>,
    /// Journaled records whose batch failed, with the sequence number of
    /// the last: they go first in the next.
    held: Option<(u64, Vec<Write>)>,
}

/// What one turn of the writer collected.
#[derive(Default)]
struct Turn {
    batch: Vec<Write>,
    acks: Vec<Option<Ack>>,
    flushes: Vec<oneshot::Sender<Result<(), LedgerError>>>,
    closing: Option<oneshot::Sender<()>>,
    /// Every sender is gone: apply what is left and stop.
    disconnected: bool,
}

impl<B: Backend> Writer<B> {
    fn run(mut self) {
        let mut counts: Vec<u64> = Vec::with_capacity(self.max_batch.min(4096));
        let mut backoff = MIN_BACKOFF;
        // When the journal's waiting records are to be applied.
        let mut due: Option<Instant> = None;
        loop {
            let up = self.shared.up.load(Ordering::Acquire);
            let now = Instant::now();
            let wake = if up { due } else { Some(now + backoff) };
            let received = match wake {
                None => self.rx.recv().map_err(|_| RecvTimeoutError::Disconnected),
                Some(at) => self.rx.recv_timeout(at.saturating_duration_since(now)),
            };
            let mut turn = Turn::default();
            match received {
                Ok(op) => self.collect(op, &mut turn, &mut due),
                Err(RecvTimeoutError::Timeout) if !up => match self.backend.probe() {
                    Ok(()) => {
                        self.shared.set_up();
                        backoff = MIN_BACKOFF;
                    }
                    Err(e) => {
                        self.shared.set_down(&e);
                        backoff = (backoff * 2).min(MAX_BACKOFF);
                        continue;
                    }
                },
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => turn.disconnected = true,
            }
            let apply_journal = turn.closing.is_some()
                || turn.disconnected
                || !turn.flushes.is_empty()
                || !turn.batch.is_empty()
                || due.is_some_and(|at| Instant::now() >= at);
            let journaled = if apply_journal {
                self.take_journaled()
            } else {
                None
            };
            if journaled.is_some() || apply_journal {
                due = None;
            }
            let ok = self.commit(&mut turn, journaled, &mut counts);
            match ok {
                Some(Ok(())) => backoff = MIN_BACKOFF,
                Some(Err(_)) if self.journaled.is_some() => {
                    // The journaled records are held (`held`): try again
                    // once the store is up (the probe's backoff paces it).
                    due = Some(Instant::now());
                }
                _ => {}
            }
            if turn.closing.is_some() || turn.disconnected {
                if let Some(j) = &self.journaled {
                    j.journal.finish();
                }
                if let Some(done) = turn.closing {
                    let _ = done.send(());
                }
                return;
            }
        }
    }

    /// The journaled records to apply: a failed batch's first, then what
    /// the journal holds now.
    fn take_journaled(&mut self) -> Option<(u64, Vec<Write>)> {
        let taken = self.journaled.as_ref()?.journal.take();
        match (self.held.take(), taken) {
            (Some((_, mut held)), Some(taken)) => {
                let upto = taken.upto;
                held.append(&mut taken.into_writes());
                Some((upto, held))
            }
            (held, None) => held,
            (None, Some(taken)) => Some((taken.upto, taken.into_writes())),
        }
    }

    /// Takes `first` and whatever else is queued (up to `max_batch` writes).
    fn collect(&mut self, first: Op, turn: &mut Turn, due: &mut Option<Instant>) {
        let mut next = Some(first);
        while let Some(op) = next.take() {
            match op {
                Op::Write(write, ack) => {
                    turn.batch.push(write);
                    turn.acks.push(ack);
                }
                Op::Budget(op) => self.backend.budget(op),
                Op::Kick => {
                    let delay = self.journaled.as_ref().map_or(Duration::ZERO, |j| j.delay);
                    due.get_or_insert_with(|| Instant::now() + delay);
                }
                Op::Flush(done) => turn.flushes.push(done),
                Op::Close(done) => {
                    turn.closing = Some(done);
                    return;
                }
            }
            if turn.batch.len() < self.max_batch {
                next = self.rx.try_recv().ok();
            }
        }
    }

    /// Commits the journal's records (if taken) and the turn's writes in
    /// one transaction, then answers their waiters. None when there was
    /// nothing to commit.
    fn commit(
        &mut self,
        turn: &mut Turn,
        journaled: Option<(u64, Vec<Write>)>,
        counts: &mut Vec<u64>,
    ) -> Option<Result<(), LedgerError>> {
        let (applied, mut writes) = match journaled {
            Some((upto, writes)) => (Some(upto), writes),
            None => (None, Vec::new()),
        };
        let from_journal = writes.len();
        if from_journal == 0 && turn.batch.is_empty() {
            for done in turn.flushes.drain(..) {
                let _ = done.send(Ok(()));
            }
            return None;
        }
        writes.append(&mut turn.batch);
        if let Some(upto) = applied {
            writes.push(Write::Applied(upto));
        }
        let taken = from_journal + turn.acks.len();
        let started = Instant::now();
        counts.clear();
        let result = self.backend.commit(&writes, counts);
        crate::metrics::ledger_commit(started.elapsed(), taken, result.is_ok());
        match &result {
            Ok(()) => {
                self.shared.queued.fetch_sub(taken, Ordering::Relaxed);
                self.backend.committed(&writes);
                self.shared.set_up();
                if let (Some(j), Some(upto)) = (&self.journaled, applied) {
                    j.journal.applied(upto);
                }
                for (i, ack) in turn.acks.drain(..).enumerate() {
                    if let Some(ack) = ack {
                        let _ = ack.send(Ok(counts.get(from_journal + i).copied().unwrap_or(0)));
                    }
                }
            }
            Err(e) => {
                self.shared.set_down(e);
                // The turn's own writes are lost (their waiters hear why);
                // journaled records are kept for the next try.
                self.shared
                    .queued
                    .fetch_sub(turn.acks.len(), Ordering::Relaxed);
                let mut unwaited = 0usize;
                for ack in turn.acks.drain(..) {
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
                if let Some(upto) = applied {
                    writes.truncate(from_journal);
                    self.held = Some((upto, writes));
                }
            }
        }
        crate::metrics::ledger_backlog(self.shared.queued.load(Ordering::Relaxed));
        for done in turn.flushes.drain(..) {
            let _ = done.send(result.clone());
        }
        Some(result)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ledger::store::journal::tests::call;

    /// A store whose first commit fails, and which notes the request ids
    /// of each commit that succeeds.
    struct FailsOnce {
        failed: bool,
        commits: Arc<Mutex<Vec<Vec<String>>>>,
    }

    impl Backend for FailsOnce {
        fn commit(&mut self, batch: &[Write], counts: &mut Vec<u64>) -> Result<(), LedgerError> {
            if !std::mem::replace(&mut self.failed, true) {
                return Err(LedgerError::Store {
                    store: "test".into(),
                    detail: "the disk is full".into(),
                });
            }
            let ids = batch
                .iter()
                .filter_map(|w| match w {
                    Write::Call(c, _) => Some(c.request_id.clone()),
                    _ => None,
                })
                .collect();
            self.commits.lock().unwrap().push(ids);
            counts.resize(batch.len(), 1);
            Ok(())
        }

        fn budget(&mut self, _: BudgetOp) {}

        fn probe(&mut self) -> Result<(), LedgerError> {
            Ok(())
        }
    }

    #[tokio::test]
    async fn a_failed_batch_of_journaled_records_goes_first_in_the_next() {
        let dir = tempfile::tempdir().unwrap();
        let (journal, _) = Journal::open(&dir.path().join("ledger.db"))
            .unwrap()
            .unwrap();
        let commits = Arc::new(Mutex::new(Vec::new()));
        let backend = FailsOnce {
            failed: false,
            commits: commits.clone(),
        };
        let shared = Arc::new(Shared::new(100, Arc::new(|| 0)));
        let journaled = Journaled {
            journal: Arc::new(journal),
            delay: Duration::ZERO,
        };
        let (queue, writer) = Queue::start(backend, 64, shared.clone(), Some(journaled)).unwrap();
        queue.record_later(call("r1"), None).unwrap();
        // The first batch fails: the store is down, r1 still pending.
        let deadline = Instant::now() + Duration::from_secs(10);
        while matches!(shared.health(), Health::Ok) {
            assert!(Instant::now() < deadline, "the first commit never failed");
            std::thread::sleep(Duration::from_millis(5));
        }
        queue.record_later(call("r2"), None).unwrap();
        queue.flush().await.unwrap();
        // In one batch or two (the store may come back before r2 is
        // journaled), r1 is committed once, and first.
        let committed: Vec<String> = commits.lock().unwrap().concat();
        assert_eq!(committed, ["r1", "r2"]);
        assert_eq!(shared.health(), Health::Ok);
        assert_eq!(shared.queued.load(Ordering::Relaxed), 0);
        queue.close().await;
        writer.join().unwrap();
    }
}

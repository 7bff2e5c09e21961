//! A live task: its record under a lock, its event log and broadcast, its
//! cancellation, and how its calls are reserved, accounted and persisted.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;

use super::record::{
    CallRecord, EventKind, Reserved, Status, SubtaskRecord, TaskEvent, TaskInput, TaskRecord,
};
use crate::dispatch::Caller;
use crate::ledger::record::Api;
use crate::orchestrator::call::{Called, Failed};
use crate::tenant::Owner;

/// A task in the store: its record, its events, its cancellation.
pub struct TaskHandle {
    /// The client that submitted it; nobody else can see it.
    pub owner: Owner,
    /// Its labels, as its calls are recorded with.
    pub(super) labels: std::collections::BTreeMap<String, String>,
    /// The budgets its calls count against.
    pub(super) budgets: Vec<crate::ledger::BudgetScope>,
    /// Where its record is kept.
    pub(super) recorder: Recorder,
    /// When it was submitted, Unix milliseconds.
    pub(super) created_ms: i64,
    pub(super) record: Mutex<TaskRecord>,
    pub(super) log: Mutex<Vec<TaskEvent>>,
    pub(super) events: broadcast::Sender<TaskEvent>,
    /// Cancels the task and its calls in flight.
    pub cancel: CancellationToken,
    pub(super) started: Instant,
}

impl TaskHandle {
    /// A queued task of `owner`.
    pub fn new(
        id: String,
        owner: Owner,
        input: &TaskInput,
        recorder: Recorder,
        budgets: Vec<crate::ledger::BudgetScope>,
    ) -> Arc<Self> {
        Arc::new(TaskHandle {
            owner,
            budgets,
            recorder,
            created_ms: crate::dispatch::unix_ms(),
            labels: input.labels.clone().into_iter().collect(),
            record: Mutex::new(TaskRecord {
                id,
                title: input.title.clone(),
                status: Status::Queued,
                route: None,
                policy: None,
                arm: None,
                plan: None,
                subtasks: Vec::new(),
                calls: Vec::new(),
                notes: Vec::new(),
                result: None,
                error: None,
                budget: input.budget,
                spent_usd: 0.0,
                spent_tokens: 0,
                baseline_usd: 0.0,
                escalated_subtasks: 0,
                escalation_share: 0.0,
                elapsed_ms: None,
                reserved: Reserved::default(),
            }),
            log: Mutex::new(Vec::new()),
            events: broadcast::channel(256).0,
            cancel: CancellationToken::new(),
            started: Instant::now(),
        })
    }

    /// Whom the task's calls are made for, as the ledger records them.
    pub(super) fn caller(&self) -> Caller {
        let r = self.lock();
        Caller {
            request_id: None,
            task_id: Some(r.id.clone()),
            client: self.owner.as_str().to_string(),
            labels: self.labels.clone(),
            session: None,
            api: Api::Tasks,
            requested_model: "auto".into(),
            router: r.policy.clone(),
            arm: r.arm.clone(),
            shadow: None,
            planner: None,
            tier: r.route.as_ref().map(|route| route.tier),
            reasoning: r.route.as_ref().map(|route| route.reasoning.clone()),
            budgets: self.budgets.clone(),
            // A task has no single request a router saw.
            policy_view: None,
        }
    }

    /// Whether the task has ended.
    pub fn is_final(&self) -> bool {
        self.lock().status.is_final()
    }

    /// A copy of the record.
    pub fn record(&self) -> TaskRecord {
        self.lock().clone()
    }

    /// When the task ended, if it has.
    pub fn ended_at(&self) -> Option<Instant> {
        let r = self.lock();
        if !r.status.is_final() {
            return None;
        }
        let elapsed = Duration::from_millis(r.elapsed_ms.unwrap_or(0));
        Some(self.started + elapsed)
    }

    /// When the task was submitted.
    pub fn started_at(&self) -> Instant {
        self.started
    }

    /// Past events, and a receiver for the next ones.
    pub fn subscribe(&self) -> (Vec<TaskEvent>, broadcast::Receiver<TaskEvent>) {
        let log = self.log.lock().unwrap_or_else(|p| p.into_inner());
        (log.clone(), self.events.subscribe())
    }

    pub(super) fn lock(&self) -> std::sync::MutexGuard<'_, TaskRecord> {
        self.record.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(super) fn emit(&self, kind: EventKind, data: serde_json::Value) {
        let event = TaskEvent { kind, data };
        let mut log = self.log.lock().unwrap_or_else(|p| p.into_inner());
        log.push(event.clone());
        let _ = self.events.send(event);
    }

    pub(super) fn set_status(&self, status: Status) {
        self.lock().status = status;
        self.emit(EventKind::Status, serde_json::json!({"status": status}));
        self.persist();
    }

    /// The task as the ledger keeps it.
    pub(super) fn ledger_record(&self) -> crate::ledger::TaskRecord {
        let record = self.record();
        crate::ledger::TaskRecord {
            id: record.id.clone(),
            client: self.owner.as_str().to_string(),
            status: record.status,
            created_ms: self.created_ms,
            updated_ms: crate::dispatch::unix_ms(),
            replica: self.recorder.replica.clone(),
            body: serde_json::to_value(&record).unwrap_or_default(),
        }
    }

    /// Queues the task's record for the ledger (its changes commit in
    /// order).
    pub fn persist(&self) {
        if !self.recorder.sealed() {
            self.recorder.ledger.put_task_later(self.ledger_record());
        }
    }

    /// Records the task in the ledger and waits for the commit.
    pub(super) async fn persist_now(&self) {
        if self.recorder.sealed() {
            return;
        }
        if let Err(e) = self.recorder.ledger.put_task(self.ledger_record()).await {
            tracing::error!(task = %self.lock().id, "the task's record could not be committed: {e}");
        }
    }

    pub(super) fn note(&self, note: String) {
        tracing::info!(task = %self.lock().id, "{note}");
        self.lock().notes.push(note.clone());
        self.emit(EventKind::Note, serde_json::json!({"note": note}));
    }

    pub(super) fn elapsed_ms(&self) -> u64 {
        self.started.elapsed().as_millis() as u64
    }

    /// Records a call's usage and cost, releasing what was reserved for
    /// it.
    pub(super) fn account(
        &self,
        purpose: String,
        result: &Result<Called, Failed>,
        reserved: Reserved,
    ) {
        let (model, input, output, cost, baseline, attempts) = match result {
            Ok(c) => (
                Some(c.model.clone()),
                c.usage.input_tokens,
                c.usage.output_tokens,
                c.cost.usd,
                c.cost.baseline_usd,
                c.attempts.clone(),
            ),
            Err(f) => (None, 0, 0, 0.0, 0.0, f.attempts.clone()),
        };
        let record = CallRecord {
            purpose,
            model,
            input_tokens: input,
            output_tokens: output,
            cost_usd: cost,
            baseline_cost_usd: baseline,
            attempts,
        };
        {
            let mut r = self.lock();
            r.reserved.usd -= reserved.usd;
            r.reserved.tokens -= reserved.tokens;
            r.spent_usd += cost;
            r.spent_tokens += input + output;
            r.baseline_usd += baseline;
            r.calls.push(record.clone());
        }
        self.emit(
            EventKind::Call,
            serde_json::to_value(&record).unwrap_or_default(),
        );
    }

    /// Reserves a call's worst case, `tokens` and `usd`, if it fits the
    /// budget (the task's own, and its route's `max_cost_usd`) next to
    /// what is spent and what calls in flight have reserved.
    pub(super) fn reserve(&self, tokens: u64, usd: f64) -> Option<Reserved> {
        let mut r = self.lock();
        let usd_cap = [
            r.budget.usd,
            r.route.as_ref().and_then(|route| route.max_cost_usd),
        ]
        .into_iter()
        .flatten()
        .reduce(f64::min);
        let tokens_ok = r
            .budget
            .tokens
            .is_none_or(|b| r.spent_tokens + r.reserved.tokens + tokens <= b);
        let usd_ok = usd_cap.is_none_or(|b| r.spent_usd + r.reserved.usd + usd <= b + 1e-12);
        if !(tokens_ok && usd_ok) {
            return None;
        }
        r.reserved.usd += usd;
        r.reserved.tokens += tokens;
        Some(Reserved { usd, tokens })
    }

    pub(super) fn update_subtask(&self, id: &str, f: impl FnOnce(&mut SubtaskRecord)) {
        let snapshot = {
            let mut r = self.lock();
            let Some(s) = r.subtasks.iter_mut().find(|s| s.subtask.id == id) else {
                return;
            };
            f(s);
            serde_json::json!({
                "id": s.subtask.id, "status": s.status, "model": s.served_by,
                "review": s.review, "escalated": s.escalated, "cost_usd": s.cost_usd,
            })
        };
        self.emit(EventKind::Subtask, snapshot);
    }
}

/// Where a task's record is kept.
#[derive(Clone)]
pub struct Recorder {
    /// The ledger.
    pub ledger: crate::ledger::Ledger,
    /// This daemon's name in task records.
    pub replica: String,
    /// Set at shutdown once the tasks left are marked interrupted: a task
    /// still running then must not write its record over the mark.
    pub sealed: Arc<std::sync::atomic::AtomicBool>,
}

impl Recorder {
    fn sealed(&self) -> bool {
        self.sealed.load(std::sync::atomic::Ordering::Acquire)
    }
}

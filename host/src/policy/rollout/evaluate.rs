//! An evaluation's measurements: both arms' calls, tasks and feedback
//! since the candidate first served.
//!
//! The window is the last `[rollouts] window` (6 hours) or since the
//! candidate first served, whichever is shorter, and at most
//! `[rollouts] max_window_calls` calls: past that, the most recent ones.
//!
//! The guards need the window's samples (a p95 per tier, a rank test on
//! costs), not running sums, so each replica keeps a copy of its
//! rollout's window in memory ([`Mirror`], a few dozen bytes a call) and
//! brings it up to date at each evaluation by reading only the calls
//! recorded since, in the order the ledger recorded them (row ids), which
//! also catches a call that settles long after it started. Re-reading the
//! whole window every evaluation cost 0.7 to 1.0 s of CPU for a window of
//! 200,000 calls, every 15 s, on every replica (BENCHMARKS.md, "Rollout
//! evaluations"). Each read starts where the evaluation before last ended:
//! on PostgreSQL a row id is taken when a row is written and becomes
//! visible when its transaction commits, a few milliseconds later, so a
//! read can miss a row another replica is committing; the overlap reads it
//! at the next evaluation (rows are kept by id, so none counts twice).

use std::collections::{BTreeSet, HashMap};

use super::assign::Arm;
use super::guard::ArmStats;
use super::plan::Rollout;
use crate::ledger::record::{CallRecord, CallRole, CallStatus, FeedbackTarget, TaskStatus, usd};
use crate::ledger::{CallFilter, Ledger, LedgerError, Nanos};
use crate::policy::types::Tier;

/// Most tasks per arm whose outcome one evaluation reads (newest first).
pub const MAX_TASKS_PER_ARM: usize = 500;

/// Both arms over the window.
#[derive(Debug, Default)]
pub struct Window {
    /// The stable arm.
    pub stable: ArmStats,
    /// The candidate.
    pub candidate: ArmStats,
    /// Candidate requests and tasks since the current step began (within
    /// the window).
    pub candidate_requests_this_step: u64,
    /// Where the window judged starts, Unix milliseconds.
    pub since_ms: i64,
    /// Whether the window was shortened to fit `max_window_calls`.
    pub narrowed: bool,
    /// Calls this evaluation read from the ledger.
    pub read: usize,
}

impl Window {
    fn arm(&mut self, arm: Arm) -> &mut ArmStats {
        match arm {
            Arm::Stable => &mut self.stable,
            Arm::Candidate => &mut self.candidate,
        }
    }
}

/// The shortest window an evaluation narrows to; busier than
/// `max_window_calls` in this long, it judges nothing and says so.
pub const MIN_WINDOW_MS: i64 = 60_000;

/// One call of the window, as much of it as the guards judge: a few dozen
/// bytes, so that a window of 200,000 calls stays a few megabytes. Request
/// ids and sessions are only compared, so they are kept as hashes.
#[derive(Debug, Clone)]
pub struct WindowCall {
    /// Its arm.
    pub arm: Arm,
    /// When it started, Unix milliseconds.
    pub at_ms: i64,
    /// The client request it served, hashed.
    pub request: u64,
    /// The task it served, if any.
    pub task_id: Option<Box<str>>,
    /// The client's session, if any, hashed.
    pub session: Option<u64>,
    /// Whether it answered a client (rather than planning or serving a
    /// task).
    pub answer: bool,
    /// Whether it ended well.
    pub ok: bool,
    /// Whether a model other than the route's answered.
    pub escalated: bool,
    /// The route's tier.
    pub tier: Option<Tier>,
    /// Its latency, milliseconds.
    pub latency_ms: u32,
    /// Upstream attempts.
    pub attempts: u32,
    /// Of those, failed.
    pub failed_attempts: u32,
    /// What it cost.
    pub cost_nanos: Nanos,
}

impl WindowCall {
    fn of(arm: Arm, call: CallRecord) -> WindowCall {
        WindowCall {
            arm,
            at_ms: call.at_ms,
            answer: call.role == CallRole::Answer,
            ok: call.status == CallStatus::Ok,
            escalated: call.escalated,
            latency_ms: call.latency_ms,
            attempts: call.attempts.len() as u32,
            failed_attempts: call.attempts.iter().filter(|a| a.outcome != "ok").count() as u32,
            cost_nanos: call.cost_nanos,
            request: hash(&call.request_id),
            task_id: call.task_id.map(String::into_boxed_str),
            session: call.session.as_deref().map(hash),
            tier: call.tier.as_deref().and_then(Tier::parse),
        }
    }
}

/// A request id's or a session's hash: 64 bits, so that two of a window's
/// hundreds of thousands collide with a chance of about one in 10^9. Keyed
/// at random per process (hashes are only compared within one), so that a
/// client cannot choose session names that collide.
fn hash(text: &str) -> u64 {
    use std::hash::BuildHasher;
    static KEYS: std::sync::LazyLock<foldhash::quality::RandomState> =
        std::sync::LazyLock::new(foldhash::quality::RandomState::default);
    KEYS.hash_one(text)
}

/// A replica's copy of one rollout's window (see the module docs).
#[derive(Debug, Default)]
pub struct Mirror {
    /// The rollout copied: its id, and when its candidate first served.
    of: Option<(String, i64)>,
    /// The calls held, by row id.
    calls: HashMap<i64, WindowCall>,
    /// `(at_ms, row id)` of every call held: oldest first, for evicting
    /// and for judging in time order.
    order: BTreeSet<(i64, i64)>,
    /// The highest row id read, at the end of the last evaluation.
    read_to: Option<i64>,
    /// Where the next read starts: `read_to` of the evaluation before.
    reread_from: Option<i64>,
    /// Tasks whose outcome is settled: `Some(failed)`, or `None` for one
    /// that counts for neither arm (cancelled, interrupted).
    outcomes: HashMap<String, Option<bool>>,
}

impl Mirror {
    /// Calls held.
    pub fn len(&self) -> usize {
        self.calls.len()
    }

    /// Whether no call is held.
    pub fn is_empty(&self) -> bool {
        self.calls.is_empty()
    }

    /// Brings the copy up to date with `ledger` for `rollout` (a window of
    /// at most `window_ms` back from `now_ms`, at most `max_calls` calls)
    /// and measures it.
    pub async fn measure(
        &mut self,
        ledger: &Ledger,
        rollout: &Rollout,
        window_ms: u64,
        max_calls: usize,
        now_ms: i64,
    ) -> Result<Window, LedgerError> {
        let mut window = Window::default();
        let Some(first) = rollout.running_since_ms else {
            return Ok(window);
        };
        let of = (rollout.id.clone(), first);
        if self.of.as_ref() != Some(&of) {
            *self = Mirror {
                of: Some(of),
                ..Mirror::default()
            };
        }
        let mut since_ms = first.max(now_ms.saturating_sub(window_ms.min(i64::MAX as u64) as i64));
        self.evict_before(since_ms);
        let prefix = format!("{}/", rollout.id);
        let mut after = self.reread_from;
        let mut newest = self.read_to;
        loop {
            let page = ledger.arm_calls_after(&prefix, after, since_ms).await?;
            let Some((last, _)) = page.last() else {
                break;
            };
            after = Some(*last);
            newest = newest.max(Some(*last));
            window.read += page.len();
            for (id, call) in page {
                let arm = match call.arm.as_deref().and_then(Arm::parse_label) {
                    Some((of, arm)) if of == rollout.id => arm,
                    _ => continue,
                };
                if self.order.insert((call.at_ms, id)) {
                    self.calls.insert(id, WindowCall::of(arm, call));
                }
            }
            // Held to the bound while reading: the most recent calls.
            while self.calls.len() > max_calls {
                self.evict_oldest();
                window.narrowed = true;
            }
        }
        self.reread_from = self.read_to;
        self.read_to = newest;
        if window.narrowed || self.calls.len() >= max_calls {
            if let Some(&(oldest, _)) = self.order.first() {
                since_ms = since_ms.max(oldest);
            }
            window.narrowed = true;
            if now_ms - since_ms < MIN_WINDOW_MS {
                tracing::warn!(
                    rollout = %rollout.id,
                    "more than {max_calls} calls in the last minute ([rollouts] max_window_calls): not judged"
                );
                window.since_ms = since_ms;
                return Ok(window);
            }
        }
        window.since_ms = since_ms;
        judge(self, ledger, rollout, now_ms, &mut window).await?;
        Ok(window)
    }

    fn evict_before(&mut self, since_ms: i64) {
        while let Some(&(at_ms, _)) = self.order.first() {
            if at_ms >= since_ms {
                break;
            }
            self.evict_oldest();
        }
    }

    fn evict_oldest(&mut self) {
        if let Some((_, id)) = self.order.pop_first() {
            self.calls.remove(&id);
        }
    }
}

/// Sums the calls `mirror` holds into `window`, and reads the outcomes of
/// their tasks and the feedback on them.
async fn judge(
    mirror: &mut Mirror,
    ledger: &Ledger,
    rollout: &Rollout,
    now_ms: i64,
    window: &mut Window,
) -> Result<(), LedgerError> {
    let Mirror {
        calls,
        order,
        outcomes,
        ..
    } = mirror;
    let mut by_request: HashMap<u64, Arm> = HashMap::new();
    // Request → (arm, cost of its calls).
    let mut costs: HashMap<u64, (Arm, f64)> = HashMap::new();
    let mut by_session: HashMap<u64, Arm> = HashMap::new();
    // Task id → (arm, cost so far, first call's start).
    let mut tasks: HashMap<&str, (Arm, f64, i64)> = HashMap::new();
    for (_, id) in order.iter() {
        let call = &calls[id];
        let arm = call.arm;
        window.arm(arm).add_call(call);
        if let Some(task) = &call.task_id {
            let entry = tasks.entry(task).or_insert((arm, 0.0, call.at_ms));
            entry.1 += usd(call.cost_nanos);
        } else {
            costs.entry(call.request).or_insert((arm, 0.0)).1 += usd(call.cost_nanos);
        }
        if call.task_id.is_none() && call.answer {
            by_request.insert(call.request, arm);
            if arm == Arm::Candidate && call.at_ms >= rollout.step_since_ms {
                window.candidate_requests_this_step += 1;
            }
        }
        if let Some(session) = call.session {
            by_session.insert(session, arm);
        }
    }
    for (arm, cost) in costs.into_values() {
        window.arm(arm).add_cost(cost);
    }
    // Tasks: their outcome is on the task row, read once it is final.
    let mut newest: Vec<(&str, (Arm, f64, i64))> = tasks.iter().map(|(k, v)| (*k, *v)).collect();
    newest.sort_by_key(|(_, (_, _, at))| std::cmp::Reverse(*at));
    let mut read = HashMap::<Arm, usize>::new();
    for (id, (arm, cost, at)) in newest {
        let n = read.entry(arm).or_default();
        if *n >= MAX_TASKS_PER_ARM {
            continue;
        }
        *n += 1;
        let failed = match outcomes.get(id) {
            Some(outcome) => *outcome,
            None => {
                let Some(record) = ledger.task(id).await? else {
                    continue;
                };
                let outcome = match record.status {
                    TaskStatus::Succeeded => Some(false),
                    TaskStatus::Failed | TaskStatus::BudgetExceeded => Some(true),
                    // Cancelled by its client, or interrupted by a
                    // restart: not the candidate's doing either way.
                    TaskStatus::Cancelled | TaskStatus::Interrupted => None,
                    // Still running: read again next time.
                    TaskStatus::Queued | TaskStatus::Planning | TaskStatus::Running => {
                        continue;
                    }
                };
                outcomes.insert(id.to_string(), outcome);
                outcome
            }
        };
        let Some(failed) = failed else {
            continue;
        };
        window.arm(arm).add_task(failed, cost);
        if arm == Arm::Candidate && at >= rollout.step_since_ms {
            window.candidate_requests_this_step += 1;
        }
    }
    let filter = CallFilter {
        since_ms: window.since_ms,
        until_ms: now_ms + 1,
        client: None,
    };
    for entry in ledger.feedback(&filter).await? {
        let arm = match &entry.target {
            FeedbackTarget::Request(id) => by_request.get(&hash(id)),
            FeedbackTarget::Session(s) => by_session.get(&hash(s)),
            FeedbackTarget::Task(id) => tasks.get(id.as_str()).map(|(arm, _, _)| arm),
        };
        if let Some(arm) = arm {
            window.arm(*arm).feedback.push(entry.score);
        }
    }
    Ok(())
}

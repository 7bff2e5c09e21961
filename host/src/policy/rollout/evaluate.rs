//! An evaluation's measurements: both arms' calls, tasks and feedback
//! since the candidate first served, read from the ledger.
//!
//! The window is the last `[rollouts] window` (6 hours) or since the
//! candidate first served, whichever is shorter; when it holds more than
//! `[rollouts] max_window_calls` calls it is halved (the most recent half
//! kept) until it fits, so an evaluation never reads more than that bound.
//! Every evaluation re-reads its window rather than keeping running sums:
//! a p95 and a rank test need the samples, a call is recorded when it
//! settles (after later calls started), and another replica's calls
//! arrive only through the store. At a few requests a second that is tens
//! of thousands of rows every `evaluate_every`, read off the async
//! workers.

use std::collections::HashMap;

use super::assign::Arm;
use super::guard::ArmStats;
use super::plan::Rollout;
use crate::ledger::record::{CallRole, FeedbackTarget, TaskStatus, usd};
use crate::ledger::{CallFilter, Ledger, LedgerError};

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

/// Reads `rollout`'s window (at most `window_ms` back from `now_ms`, at
/// most `max_calls` calls) from `ledger`.
pub async fn measure(
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
    let mut since_ms = first.max(now_ms.saturating_sub(window_ms.min(i64::MAX as u64) as i64));
    let (filter, calls) = loop {
        let filter = CallFilter {
            since_ms,
            until_ms: now_ms + 1,
            client: None,
        };
        if let Some(calls) = ledger.calls_at_most(&filter, max_calls).await? {
            break (filter, calls);
        }
        // Busier than the bound: judge a shorter, more recent window.
        window.narrowed = true;
        let span = now_ms - since_ms;
        if span <= MIN_WINDOW_MS {
            tracing::warn!(
                rollout = %rollout.id,
                "more than {max_calls} calls in the last minute ([rollouts] max_window_calls): not judged"
            );
            window.since_ms = since_ms;
            return Ok(window);
        }
        since_ms = now_ms - (span / 2).max(MIN_WINDOW_MS);
    };
    window.since_ms = since_ms;
    let mut by_request: HashMap<String, Arm> = HashMap::new();
    // Request id → (arm, cost of its calls).
    let mut costs: HashMap<&str, (Arm, f64)> = HashMap::new();
    let mut by_session: HashMap<String, Arm> = HashMap::new();
    // Task id → (arm, cost so far, first call's start).
    let mut tasks: HashMap<String, (Arm, f64, i64)> = HashMap::new();
    for call in &calls {
        let Some((id, arm)) = call.arm.as_deref().and_then(Arm::parse_label) else {
            continue;
        };
        if id != rollout.id {
            continue;
        }
        window.arm(arm).add_call(call);
        if let Some(task) = &call.task_id {
            let entry = tasks.entry(task.clone()).or_insert((arm, 0.0, call.at_ms));
            entry.1 += usd(call.cost_nanos);
        } else {
            costs
                .entry(call.request_id.as_str())
                .or_insert((arm, 0.0))
                .1 += usd(call.cost_nanos);
        }
        if call.task_id.is_none() && call.role == CallRole::Answer {
            by_request.insert(call.request_id.clone(), arm);
            if arm == Arm::Candidate && call.at_ms >= rollout.step_since_ms {
                window.candidate_requests_this_step += 1;
            }
        }
        if let Some(session) = &call.session {
            by_session.insert(session.clone(), arm);
        }
    }
    for (arm, cost) in costs.into_values() {
        window.arm(arm).add_cost(cost);
    }
    // Tasks: their outcome is on the task row.
    let mut newest: Vec<(&String, &(Arm, f64, i64))> = tasks.iter().collect();
    newest.sort_by_key(|(_, (_, _, at))| std::cmp::Reverse(*at));
    let mut read = HashMap::<Arm, usize>::new();
    for (id, (arm, cost, at)) in newest {
        let n = read.entry(*arm).or_default();
        if *n >= MAX_TASKS_PER_ARM {
            continue;
        }
        *n += 1;
        let Some(record) = ledger.task(id).await? else {
            continue;
        };
        let failed = match record.status {
            TaskStatus::Succeeded => false,
            TaskStatus::Failed | TaskStatus::BudgetExceeded => true,
            // Running, cancelled by its client, or interrupted by a
            // restart: not the candidate's doing either way.
            _ => continue,
        };
        window.arm(*arm).add_task(failed, *cost);
        if *arm == Arm::Candidate && *at >= rollout.step_since_ms {
            window.candidate_requests_this_step += 1;
        }
    }
    for entry in ledger.feedback(&filter).await? {
        let arm = match &entry.target {
            FeedbackTarget::Request(id) => by_request.get(id),
            FeedbackTarget::Session(s) => by_session.get(s),
            FeedbackTarget::Task(id) => tasks.get(id).map(|(arm, _, _)| arm),
        };
        if let Some(arm) = arm {
            window.arm(*arm).feedback.push(entry.score);
        }
    }
    Ok(window)
}

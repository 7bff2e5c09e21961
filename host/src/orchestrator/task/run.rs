//! Running a task through its tier: direct; plan → execute the DAG; plan →
//! execute → verify, with escalation.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use futures::stream::FuturesUnordered;

use super::handle::TaskHandle;
use super::record::{EventKind, Status, SubtaskRecord, SubtaskStatus, TaskInput, Verdict};
use super::{EXPECTED_OUTPUT_TOKENS, PARALLEL_SUBTASKS};
use crate::config::ModelConfig;
use crate::ledger::record::CallRole;
use crate::orchestrator::Orchestrator;
use crate::orchestrator::call::{self, Called, Failed};
use crate::orchestrator::context;
use crate::policy::types::{
    ChatRequest, Features, Message, Plan, Review, Route, Subtask, Task, Tier, WireApi,
};
use crate::tokens::count as count_tokens;

/// An upper bound on a request's input tokens: the local count, plus a
/// tenth for tokenizers that split text finer, plus each message's
/// framing.
fn input_bound(request: &ChatRequest) -> u64 {
    let counted = count_tokens(&call::prompt_text(request)) as u64;
    counted + counted / 10 + 8 * request.messages.len() as u64 + 16
}

/// Why a task stopped early.
enum Stop {
    Budget(String),
    Failed(String),
}

/// Runs a task to its end (or until cancelled).
pub async fn run(orchestrator: Orchestrator, task: Arc<TaskHandle>, input: TaskInput) {
    let deadline = Instant::now()
        + Duration::from_millis(input.deadline_ms.unwrap_or(orchestrator.total_deadline_ms));
    let outcome = tokio::select! {
        _ = task.cancel.cancelled() => None,
        outcome = execute(&orchestrator, &task, &input, deadline) => Some(outcome),
    };
    let status = match outcome {
        None => Status::Cancelled,
        Some(Ok(result)) => {
            task.lock().result = Some(result);
            Status::Succeeded
        }
        Some(Err(Stop::Budget(why))) => {
            task.lock().error = Some(why);
            Status::BudgetExceeded
        }
        Some(Err(Stop::Failed(why))) => {
            task.lock().error = Some(why);
            Status::Failed
        }
    };
    {
        let mut r = task.lock();
        r.elapsed_ms = Some(task.started.elapsed().as_millis() as u64);
        let total = r.subtasks.len().max(1) as f64;
        r.escalation_share = r.escalated_subtasks as f64 / total;
        // Whatever finished before the stop is kept.
        if r.result.is_none() {
            let partial = join_outputs(&r.subtasks);
            if !partial.is_empty() {
                r.result = Some(partial);
            }
        }
        for s in &mut r.subtasks {
            if matches!(s.status, SubtaskStatus::Pending | SubtaskStatus::Running) {
                s.status = SubtaskStatus::Skipped;
            }
        }
    }
    let subtasks = task.lock().subtasks.len() as u64;
    crate::metrics::task_finished(status.as_str(), subtasks, task.lock().spent_usd);
    task.lock().status = status;
    // The final record is committed before the end is announced: a client
    // that sees the task end can read it from any replica.
    task.persist_now().await;
    task.emit(EventKind::Status, serde_json::json!({"status": status}));
}

async fn execute(
    orch: &Orchestrator,
    task: &TaskHandle,
    input: &TaskInput,
    deadline: Instant,
) -> Result<String, Stop> {
    let mut features = features(task, input);
    // What the task's budgets have left, as a chat request's router sees it.
    features.remaining_budget_usd = orch
        .dispatch
        .ledger()
        .remaining(&task.budgets)
        .map(crate::ledger::record::usd);
    let decision = orch
        .policies
        .decide(&features, &orch.dispatch.catalog())
        .await;
    let route = decision.route.clone();
    {
        let mut r = task.lock();
        r.route = Some(route.clone());
        r.policy = Some(decision.policy.clone());
        r.arm = decision.arm.clone();
    }
    let policy_task = Task {
        id: task.lock().id.clone(),
        title: input.title.clone(),
        description: input.description.clone(),
        context: input
            .context
            .iter()
            .map(|c| (c.path.clone(), c.text.clone()))
            .collect(),
        labels: features.labels.clone(),
        route: route.clone(),
    };
    if route.tier == Tier::Direct {
        task.set_status(Status::Running);
        return direct(orch, task, &policy_task, deadline).await;
    }
    task.set_status(Status::Planning);
    let plan = match plan(orch, task, &policy_task, deadline).await? {
        Some(plan) => plan,
        None => {
            task.set_status(Status::Running);
            // Critical work keeps its review: without a plan, the direct
            // answer is reviewed as the plan's critical subtasks would be.
            if route.tier == Tier::PlanAndVerify {
                return reviewed_direct(orch, task, &policy_task, deadline).await;
            }
            return direct(orch, task, &policy_task, deadline).await;
        }
    };
    task.set_status(Status::Running);
    execute_plan(orch, task, &policy_task, plan, deadline).await
}

fn features(task: &TaskHandle, input: &TaskInput) -> Features {
    let mut messages = vec![Message {
        role: "user".into(),
        content: format!("{}\n\n{}", input.title, input.description),
    }];
    messages.extend(input.context.iter().map(|c| Message {
        role: "user".into(),
        content: format!("{}\n{}", c.path, c.text),
    }));
    let input_tokens = messages
        .iter()
        .map(|m| count_tokens(&m.content) + crate::tokens::PER_MESSAGE)
        .sum();
    let mut labels: Vec<(String, String)> = input.labels.clone().into_iter().collect();
    labels.sort();
    Features {
        id: task.lock().id.clone(),
        api: WireApi::Task,
        requested_model: "auto".into(),
        message_count: messages.len() as u32,
        messages,
        input_tokens,
        max_output_tokens: None,
        tool_count: 0,
        labels,
        session: None,
        ..Features::default()
    }
}

/// Chain of models for a call: `first`, then the route's executor and
/// fallbacks, each once, each known to the catalog.
fn chain(orch: &Orchestrator, first: &str, route: &Route) -> Vec<Arc<ModelConfig>> {
    let mut out: Vec<Arc<ModelConfig>> = Vec::new();
    for id in std::iter::once(first)
        .chain(std::iter::once(route.executor.as_str()))
        .chain(route.fallbacks.iter().map(String::as_str))
    {
        if let Some(m) = orch.dispatch.model(id)
            && !out.iter().any(|o| o.id == m.id)
        {
            out.push(m.clone());
        }
    }
    out
}

/// The ledger's role for a call made for `purpose` (see
/// [`CallRecord::purpose`]).
fn role_of(purpose: &str) -> CallRole {
    if purpose == "plan" {
        CallRole::Planner
    } else if purpose.starts_with("review") || purpose == "direct:review" {
        CallRole::Reviewer
    } else {
        CallRole::Executor
    }
}

/// Checks the budget, then makes the call and accounts for it.
async fn budgeted_call(
    orch: &Orchestrator,
    task: &TaskHandle,
    purpose: String,
    chain: &[Arc<ModelConfig>],
    escalate: bool,
    request: &ChatRequest,
    deadline: Instant,
) -> Result<Result<Called, Failed>, Stop> {
    let Some(first) = chain.first() else {
        return Ok(Err(Failed {
            error: crate::provider::ProviderError::Connect("no model for this call".into()),
            attempts: Vec::new(),
        }));
    };
    // The call is held to an output cap, so that its worst case is known:
    // every model it may reach (a fallback, the escalation model) at that
    // cap, priced at the dearest of them. Parallel subtasks reserve their
    // worst case before they call, so together they never pass the budget.
    let cap = request.max_output_tokens.unwrap_or(EXPECTED_OUTPUT_TOKENS);
    let mut held = request.clone();
    held.max_output_tokens = Some(cap);
    let request = &held;
    let input = input_bound(request);
    let output = u64::from(cap);
    let escalation = if escalate {
        orch.dispatch.escalation(0)
    } else {
        None
    };
    let usd = chain
        .iter()
        .chain(escalation.as_ref())
        .map(|m| {
            (input as f64 * m.input_usd_per_mtok + output as f64 * m.output_usd_per_mtok) / 1e6
        })
        .fold(0.0, f64::max);
    let Some(reservation) = task.reserve(input + output, usd) else {
        return Err(Stop::Budget(format!(
            "the next call ({purpose} on {}, at most {} tokens, up to ${usd:.6} on its dearest model) would exceed the budget",
            first.id,
            input + output
        )));
    };
    let result = call::complete(
        orch,
        &task.caller(),
        role_of(&purpose),
        chain,
        escalate,
        request,
        deadline,
    )
    .await;
    task.account(purpose, &result, reservation);
    Ok(result)
}

async fn direct(
    orch: &Orchestrator,
    task: &TaskHandle,
    policy_task: &Task,
    deadline: Instant,
) -> Result<String, Stop> {
    let route = &policy_task.route;
    let chain = chain(orch, &route.executor, route);
    direct_on(orch, task, policy_task, "direct", &chain, None, deadline)
        .await
        .map(|called| called.text)
}

/// The whole task asked of `chain` in one call, with a reviewer's
/// `feedback` on an earlier answer if there was one.
async fn direct_on(
    orch: &Orchestrator,
    task: &TaskHandle,
    policy_task: &Task,
    purpose: &str,
    chain: &[Arc<ModelConfig>],
    feedback: Option<&str>,
    deadline: Instant,
) -> Result<Called, Stop> {
    let mut prompt = task_prompt(policy_task);
    if let Some(feedback) = feedback {
        prompt.push_str(&format!(
            "\n## A reviewer rejected an earlier answer\n{feedback}\n"
        ));
    }
    let request = ChatRequest {
        model: chain.first().map(|m| m.id.clone()).unwrap_or_default(),
        messages: vec![
            Message {
                role: "system".into(),
                content: "You are a careful software engineer. Do the task completely.".into(),
            },
            Message {
                role: "user".into(),
                content: prompt,
            },
        ],
        max_output_tokens: None,
        temperature: None,
    };
    match budgeted_call(orch, task, purpose.into(), chain, true, &request, deadline).await? {
        Ok(called) => Ok(called),
        Err(failed) => Err(Stop::Failed(format!("no model answered: {}", failed.error))),
    }
}

/// The whole task as the one critical subtask a reviewer is shown when a
/// critical task is served without a plan.
fn whole_task(policy_task: &Task, model: &str) -> Subtask {
    Subtask {
        id: "direct".into(),
        title: policy_task.title.clone(),
        instructions: policy_task.description.clone(),
        kind: crate::policy::types::SubtaskKind::Other,
        depends_on: Vec::new(),
        model: model.to_string(),
        critical: true,
    }
}

/// A critical (`plan-and-verify`) task that got no plan: served direct,
/// and the answer reviewed before it is returned. A rejected answer is
/// done again by the escalation model, and that answer reviewed too. An
/// answer that cannot be reviewed (no planner policy, the reviewer failed)
/// or is rejected twice fails the task: critical work is never returned
/// unreviewed.
/// The planner for `task`: a planner rollout assigns per task, and the
/// task's calls then record its arm.
fn planner_for(orch: &Orchestrator, task: &TaskHandle) -> Option<Arc<crate::policy::PolicyModule>> {
    let id = task.lock().id.clone();
    let (planner, arm) = orch.policies.planner_for(&id);
    if arm.is_some() {
        task.lock().arm = arm;
    }
    planner
}

async fn reviewed_direct(
    orch: &Orchestrator,
    task: &TaskHandle,
    policy_task: &Task,
    deadline: Instant,
) -> Result<String, Stop> {
    let route = &policy_task.route;
    let Some(planner) = planner_for(orch, task) else {
        return Err(Stop::Failed(
            "a critical task without a plan must be reviewed, and no planner policy is loaded \
             to review it"
                .into(),
        ));
    };
    let catalog = orch.dispatch.catalog();
    let chain = chain(orch, &route.executor, route);
    let called = direct_on(orch, task, policy_task, "direct", &chain, None, deadline).await?;
    let subtask = whole_task(policy_task, &called.model);
    let verdict = review(
        orch,
        task,
        &planner,
        policy_task,
        &subtask,
        &called.text,
        &catalog,
        "direct:review".into(),
        deadline,
    )
    .await?;
    let why = match verdict {
        Reviewed::Verdict(Review::Accept) => {
            task.note(format!(
                "served without a plan on {}: the answer was reviewed and accepted",
                called.model
            ));
            return Ok(called.text);
        }
        Reviewed::Verdict(
            Review::Retry { feedback, .. } | Review::Escalate { reason: feedback },
        ) => feedback,
        Reviewed::Skipped(why) => {
            return Err(Stop::Failed(format!(
                "a critical task served without a plan could not be reviewed ({why}); its \
                 answer is not returned unreviewed"
            )));
        }
    };
    let Some(escalation) = orch.dispatch.escalation(0) else {
        return Err(Stop::Failed(format!(
            "the answer to a critical task served without a plan was rejected in review \
             ({why}) and no escalation model is configured"
        )));
    };
    task.note(format!(
        "served without a plan on {}: the answer was rejected in review ({why}); escalating to {}",
        called.model, escalation.id
    ));
    let escalated = direct_on(
        orch,
        task,
        policy_task,
        "direct:escalated",
        std::slice::from_ref(&escalation),
        Some(&why),
        deadline,
    )
    .await?;
    task.lock().escalated_subtasks += 1;
    crate::metrics::subtask_escalated();
    let subtask = whole_task(policy_task, &escalated.model);
    match review(
        orch,
        task,
        &planner,
        policy_task,
        &subtask,
        &escalated.text,
        &catalog,
        "direct:review".into(),
        deadline,
    )
    .await?
    {
        Reviewed::Verdict(Review::Accept) => {
            task.note(format!(
                "the escalation model {}'s answer was reviewed and accepted",
                escalated.model
            ));
            Ok(escalated.text)
        }
        Reviewed::Verdict(
            Review::Retry { feedback: why, .. } | Review::Escalate { reason: why },
        ) => Err(Stop::Failed(format!(
            "the answer to a critical task served without a plan was rejected in review \
                 twice, the second time the escalation model's: {why}"
        ))),
        Reviewed::Skipped(why) => Err(Stop::Failed(format!(
            "the escalation model's answer to a critical task could not be reviewed ({why}); \
             it is not returned unreviewed"
        ))),
    }
}

fn task_prompt(task: &Task) -> String {
    let mut prompt = format!("# Task: {}\n\n{}\n", task.title, task.description);
    for (path, text) in &task.context {
        prompt.push_str(&format!("\n## {path}\n```\n{text}\n```\n"));
    }
    prompt
}

/// Puts the planner's rejected answer and why it was rejected into the
/// conversation, asking for a valid plan.
fn ask_for_another_plan(request: &mut ChatRequest, rejected: String, why: &impl std::fmt::Display) {
    request.messages.push(Message {
        role: "assistant".into(),
        content: rejected,
    });
    request.messages.push(Message {
        role: "user".into(),
        content: format!("That plan cannot be used: {why}. Answer again with one valid JSON plan."),
    });
}

/// Asks the planner for a plan; re-asks once with the parse error; `None`
/// means the task falls back to direct.
async fn plan(
    orch: &Orchestrator,
    task: &TaskHandle,
    policy_task: &Task,
    deadline: Instant,
) -> Result<Option<Plan>, Stop> {
    let Some(planner) = planner_for(orch, task) else {
        task.note("no planner policy is loaded: serving direct".into());
        return Ok(None);
    };
    let catalog = orch.dispatch.catalog();
    let mut request = match planner.plan_request(policy_task, &catalog).await {
        Ok(r) => r,
        Err(e) => {
            task.note(format!("the planner policy failed ({e}): serving direct"));
            return Ok(None);
        }
    };
    // A critical task's planning gets one more try, on the escalation
    // model, before it is served without a plan.
    let critical = policy_task.route.tier == Tier::PlanAndVerify;
    let escalation = orch
        .dispatch
        .escalation(0)
        .filter(|e| critical && e.id != request.model);
    let rounds = if escalation.is_some() { 3 } else { 2 };
    let mut round = 0;
    while round < rounds {
        let on_escalation = round == 2;
        let chain = match (&escalation, on_escalation) {
            (Some(e), true) => vec![e.clone()],
            _ => chain(orch, &request.model, &policy_task.route),
        };
        let called =
            match budgeted_call(orch, task, "plan".into(), &chain, true, &request, deadline).await?
            {
                Ok(called) => called,
                Err(failed) if !on_escalation && escalation.is_some() => {
                    let e = escalation.as_ref().map_or("", |e| e.id.as_str());
                    task.note(format!(
                    "the planner model failed ({}): asking the escalation model {e} for the plan",
                    failed.error
                ));
                    request.model = e.to_string();
                    round = 2;
                    continue;
                }
                Err(failed) => {
                    task.note(format!(
                        "the planner model failed ({}): serving direct",
                        failed.error
                    ));
                    return Ok(None);
                }
            };
        match planner
            .parse_plan(policy_task, &called.text, &catalog)
            .await
        {
            Ok(plan) => {
                let records = plan
                    .subtasks
                    .iter()
                    .map(|s| SubtaskRecord {
                        subtask: s.clone(),
                        status: SubtaskStatus::Pending,
                        served_by: None,
                        attempts: 0,
                        tokens: 0,
                        cost_usd: 0.0,
                        started_ms: None,
                        finished_ms: None,
                        output: None,
                        review: None,
                        escalated: false,
                        context_note: None,
                    })
                    .collect();
                {
                    let mut r = task.lock();
                    r.plan = Some(plan.clone());
                    r.subtasks = records;
                }
                task.emit(
                    EventKind::Plan,
                    serde_json::to_value(&plan).unwrap_or_default(),
                );
                return Ok(Some(plan));
            }
            Err(e) if round == 0 => {
                task.note(format!(
                    "the plan was rejected ({e}): asking the planner again"
                ));
                ask_for_another_plan(&mut request, called.text, &e);
            }
            Err(e) if round == 1 && escalation.is_some() => {
                let e_id = escalation.as_ref().map_or("", |m| m.id.as_str());
                task.note(format!(
                    "the plan was rejected again ({e}): asking the escalation model {e_id} for the plan"
                ));
                request.model = e_id.to_string();
                // The last exchange stays: the escalation model sees what
                // was wrong with the planner's answer.
                ask_for_another_plan(&mut request, called.text, &e);
            }
            Err(e) => {
                let next = if critical {
                    "serving direct on the executor, the answer to be reviewed"
                } else {
                    "serving direct on the executor"
                };
                task.note(format!("the plan was rejected again ({e}): {next}"));
            }
        }
        round += 1;
    }
    Ok(None)
}

async fn execute_plan(
    orch: &Orchestrator,
    task: &TaskHandle,
    policy_task: &Task,
    plan: Plan,
    deadline: Instant,
) -> Result<String, Stop> {
    let mut outputs: HashMap<String, String> = HashMap::new();
    let mut pending: Vec<Subtask> = plan.subtasks.clone();
    let plan = &plan;
    let mut running = FuturesUnordered::new();
    let mut stop = None;
    loop {
        if stop.is_none() {
            while running.len() < PARALLEL_SUBTASKS {
                let Some(i) = pending
                    .iter()
                    .position(|s| s.depends_on.iter().all(|d| outputs.contains_key(d)))
                else {
                    break;
                };
                let subtask = pending.remove(i);
                let deps: Vec<(String, String)> = subtask
                    .depends_on
                    .iter()
                    .map(|d| (d.clone(), outputs[d].clone()))
                    .collect();
                let id = subtask.id.clone();
                let started = task.elapsed_ms();
                task.update_subtask(&id, |s| {
                    s.status = SubtaskStatus::Running;
                    s.started_ms = Some(started);
                });
                running.push(async move {
                    let result =
                        run_subtask(orch, task, policy_task, plan, &subtask, deps, deadline).await;
                    (subtask, result)
                });
            }
        }
        let Some((subtask, result)) = running.next().await else {
            break;
        };
        let finished = task.elapsed_ms();
        match result {
            Ok(output) => {
                task.update_subtask(&subtask.id, |s| {
                    s.status = SubtaskStatus::Done;
                    s.output = Some(output.clone());
                    s.finished_ms = Some(finished);
                });
                outputs.insert(subtask.id.clone(), output);
            }
            Err(e) => {
                task.update_subtask(&subtask.id, |s| {
                    s.status = SubtaskStatus::Failed;
                    s.finished_ms = Some(finished);
                });
                stop.get_or_insert(e);
            }
        }
    }
    if let Some(stop) = stop {
        return Err(stop);
    }
    Ok(join_outputs(&task.lock().subtasks))
}

/// The outputs of finished subtasks in plan order.
fn join_outputs(subtasks: &[SubtaskRecord]) -> String {
    subtasks
        .iter()
        .filter_map(|s| {
            s.output
                .as_ref()
                .map(|o| format!("## {} ({})\n\n{}", s.subtask.title, s.subtask.id, o))
        })
        .collect::<Vec<_>>()
        .join("\n\n")
}

async fn run_subtask(
    orch: &Orchestrator,
    task: &TaskHandle,
    policy_task: &Task,
    plan: &Plan,
    subtask: &Subtask,
    deps: Vec<(String, String)>,
    deadline: Instant,
) -> Result<String, Stop> {
    let route = &policy_task.route;
    let mut model_id = subtask.model.clone();
    let mut feedback: Option<String> = None;
    let planner = planner_for(orch, task);
    let catalog = orch.dispatch.catalog();
    // At most: the first run, one retry on review, one escalation.
    for round in 0..3 {
        let escalating = round > 0 && feedback.is_some() && model_id.is_empty();
        let mut chain = if escalating {
            orch.dispatch.escalation(0).into_iter().collect()
        } else {
            chain(orch, &model_id, route)
        };
        // The first model whose window holds the prompt goes first.
        let fits = chain.iter().position(|m| {
            !context::fit(policy_task, plan, subtask, &deps, feedback.as_deref(), m).overflow
        });
        let Some(fits) = fits else {
            return Err(Stop::Failed(format!(
                "subtask {}'s prompt fits no model's context window",
                subtask.id
            )));
        };
        if fits > 0 {
            task.note(format!(
                "subtask {} moved from {} to {}, whose context window holds its prompt",
                subtask.id, chain[0].id, chain[fits].id
            ));
            chain.drain(..fits);
        }
        let model = chain[0].clone();
        let fitted = context::fit(
            policy_task,
            plan,
            subtask,
            &deps,
            feedback.as_deref(),
            &model,
        );
        if let Some(note) = &fitted.note {
            let note = note.clone();
            task.update_subtask(&subtask.id, |s| s.context_note = Some(note));
        }
        let request = ChatRequest {
            model: model.id.clone(),
            messages: fitted.messages,
            max_output_tokens: None,
            temperature: None,
        };
        let result = budgeted_call(
            orch,
            task,
            format!("subtask:{}", subtask.id),
            &chain,
            true,
            &request,
            deadline,
        )
        .await?;
        let called = match result {
            Ok(c) => c,
            Err(failed) => {
                return Err(Stop::Failed(format!(
                    "subtask {} failed on every model: {}",
                    subtask.id, failed.error
                )));
            }
        };
        let escalated = orch
            .dispatch
            .escalation(0)
            .is_some_and(|e| e.id == called.model && !chain.is_empty() && chain[0].id != e.id)
            || escalating;
        let tokens = called.usage.input_tokens + called.usage.output_tokens;
        task.update_subtask(&subtask.id, |s| {
            s.served_by = Some(called.model.clone());
            s.attempts += crate::resilience::calls(&called.attempts);
            s.tokens += tokens;
            s.cost_usd += called.cost.usd;
            s.escalated |= escalated;
        });
        if escalated {
            task.lock().escalated_subtasks += 1;
            crate::metrics::subtask_escalated();
        }
        // Only critical subtasks of plan-and-verify are reviewed, and the
        // escalation model's work is final.
        let review = match (&planner, route.tier, escalated) {
            (Some(planner), Tier::PlanAndVerify, false) if subtask.critical => {
                match review(
                    orch,
                    task,
                    planner,
                    policy_task,
                    subtask,
                    &called.text,
                    &catalog,
                    format!("review:{}", subtask.id),
                    deadline,
                )
                .await?
                {
                    Reviewed::Verdict(verdict) => Some(verdict),
                    Reviewed::Skipped(why) => {
                        task.note(format!("{}: {why}: accepted unreviewed", subtask.id));
                        None
                    }
                }
            }
            _ => None,
        };
        match review {
            None | Some(Review::Accept) => {
                if review.is_some() {
                    task.update_subtask(&subtask.id, |s| s.review = Some(Verdict::Accept));
                }
                return Ok(called.text);
            }
            Some(Review::Retry {
                model,
                feedback: why,
            }) if round == 0 => {
                task.update_subtask(&subtask.id, |s| s.review = Some(Verdict::Retry));
                task.note(format!(
                    "subtask {} rejected in review, retrying on {model}: {why}",
                    subtask.id
                ));
                model_id = model;
                feedback = Some(why);
            }
            Some(Review::Retry { feedback: why, .. } | Review::Escalate { reason: why }) => {
                task.update_subtask(&subtask.id, |s| s.review = Some(Verdict::Escalate));
                task.note(format!(
                    "subtask {} rejected in review, escalating: {why}",
                    subtask.id
                ));
                if orch.dispatch.escalation(0).is_none() {
                    return Err(Stop::Failed(format!(
                        "subtask {} was rejected and no escalation model is configured",
                        subtask.id
                    )));
                }
                model_id = String::new();
                feedback = Some(why);
            }
        }
    }
    Err(Stop::Failed(format!(
        "subtask {} was never accepted",
        subtask.id
    )))
}

/// What came of asking for a review.
enum Reviewed {
    /// The reviewer's verdict.
    Verdict(Review),
    /// No review was had, and why.
    Skipped(String),
}

#[allow(clippy::too_many_arguments)]
async fn review(
    orch: &Orchestrator,
    task: &TaskHandle,
    planner: &crate::policy::PolicyModule,
    policy_task: &Task,
    subtask: &Subtask,
    output: &str,
    catalog: &[crate::policy::types::ModelInfo],
    purpose: String,
    deadline: Instant,
) -> Result<Reviewed, Stop> {
    let request = match planner
        .review_request(policy_task, subtask, output, catalog)
        .await
    {
        Ok(Some(r)) => r,
        Ok(None) => {
            return Ok(Reviewed::Skipped(
                "the planner policy asks for no review".into(),
            ));
        }
        Err(e) => {
            return Ok(Reviewed::Skipped(format!(
                "the planner policy could not review it ({e})"
            )));
        }
    };
    let chain = chain(orch, &request.model, &policy_task.route);
    let reply = match budgeted_call(orch, task, purpose, &chain, false, &request, deadline).await? {
        Ok(c) => c,
        Err(f) => {
            return Ok(Reviewed::Skipped(format!(
                "the reviewer failed ({})",
                f.error
            )));
        }
    };
    let tokens = reply.usage.input_tokens + reply.usage.output_tokens;
    task.update_subtask(&subtask.id, |s| {
        s.tokens += tokens;
        s.cost_usd += reply.cost.usd;
    });
    match planner
        .review(policy_task, subtask, output, &reply.text, catalog)
        .await
    {
        Ok(verdict) => Ok(Reviewed::Verdict(verdict)),
        Err(e) => {
            task.note(format!(
                "the review of {} could not be read ({e}): escalating",
                subtask.id
            ));
            Ok(Reviewed::Verdict(Review::Escalate {
                reason: format!("the review could not be read: {e}"),
            }))
        }
    }
}

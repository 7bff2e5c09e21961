//! Plan mode for unmodified agents on the chat APIs.
//!
//! When the router picks `plan` or `plan-and-verify` for a chat request, the
//! planner model is asked for a plan of the conversation's task, and the
//! request is served by the executor with the plan added as a system
//! message. Plans are cached per agent session (the `x-switchyard-session`
//! header, or Anthropic's `metadata.user_id`), so the planner is called once
//! per session, not once per turn.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::call;
use crate::gateway::AppState;
use crate::ledger::Cost;
use crate::policy::types::{Features, Plan, Route, Task};
use crate::provider::Request;
use crate::provider::wire::{anthropic, openai};

/// How long a session's plan is reused.
pub const PLAN_TTL: Duration = Duration::from_secs(3600);
/// Most sessions remembered; the oldest is forgotten first.
pub const MAX_SESSIONS: usize = 10_000;

/// A plan for a conversation.
#[derive(Debug, Clone)]
pub struct SessionPlan {
    /// The text added to the request.
    pub text: String,
    /// What the planner call cost (charged to the request that made it).
    pub cost: Cost,
}

/// Plans by session.
#[derive(Default)]
pub struct PlanCache {
    plans: Mutex<HashMap<String, (Instant, Arc<SessionPlan>)>>,
}

/// Whether the plan was made for this request or reused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PlanSource {
    /// Made now; its cost is this request's.
    New,
    /// Reused from the session.
    Cached,
}

impl PlanSource {
    /// Header value.
    pub fn as_str(self) -> &'static str {
        match self {
            PlanSource::New => "new",
            PlanSource::Cached => "cached",
        }
    }
}

impl PlanCache {
    fn get(&self, session: &str) -> Option<Arc<SessionPlan>> {
        let plans = self.plans.lock().unwrap_or_else(|p| p.into_inner());
        plans
            .get(session)
            .filter(|(at, _)| at.elapsed() < PLAN_TTL)
            .map(|(_, plan)| plan.clone())
    }

    fn put(&self, session: &str, plan: Arc<SessionPlan>) {
        let mut plans = self.plans.lock().unwrap_or_else(|p| p.into_inner());
        if plans.len() >= MAX_SESSIONS
            && let Some(oldest) = plans
                .iter()
                .min_by_key(|(_, (at, _))| *at)
                .map(|(k, _)| k.clone())
        {
            plans.remove(&oldest);
        }
        plans.insert(session.to_string(), (Instant::now(), plan));
    }
}

/// The plan for this conversation: the session's, or a new one from the
/// planner. `Err` carries why there is none (the request is then served
/// without a plan).
pub async fn plan_for(
    state: &AppState,
    features: &Features,
    route: &Route,
    deadline: Instant,
) -> Result<(Arc<SessionPlan>, PlanSource), String> {
    if let Some(session) = &features.session
        && let Some(plan) = state.plans.get(session)
    {
        return Ok((plan, PlanSource::Cached));
    }
    let planner = state
        .policies
        .planner()
        .ok_or("no planner policy is loaded")?;
    let task = task_of(features, route);
    let catalog = state.catalog();
    let request = planner
        .plan_request(&task, &catalog)
        .await
        .map_err(|e| format!("the planner policy failed: {e}"))?;
    let chain: Vec<_> = std::iter::once(request.model.as_str())
        .chain(route.planner.as_deref())
        .filter_map(|id| state.models.get(id).cloned())
        .collect();
    let called = call::complete(state, &chain, true, &request, deadline)
        .await
        .map_err(|f| format!("the planner model failed: {}", f.error))?;
    let plan = planner
        .parse_plan(&task, &called.text, &catalog)
        .await
        .map_err(|e| format!("the plan could not be used: {e}"))?;
    let plan = Arc::new(SessionPlan {
        text: render(&plan),
        cost: called.cost,
    });
    if let Some(session) = &features.session {
        state.plans.put(session, plan.clone());
    }
    Ok((plan, PlanSource::New))
}

/// The conversation as a task: its first user message names it, its latest
/// says what is asked now.
fn task_of(features: &Features, route: &Route) -> Task {
    let users: Vec<&str> = features
        .messages
        .iter()
        .filter(|m| m.role == "user")
        .map(|m| m.content.as_str())
        .collect();
    let first = users.first().copied().unwrap_or("");
    let last = users.last().copied().unwrap_or("");
    let title: String = first
        .lines()
        .next()
        .unwrap_or("")
        .chars()
        .take(120)
        .collect();
    Task {
        id: features.id.clone(),
        title,
        description: last.to_string(),
        context: Vec::new(),
        labels: features.labels.clone(),
        route: route.clone(),
    }
}

fn render(plan: &Plan) -> String {
    let mut text = format!(
        "A planner model has broken this task down. Follow its plan, step by step.\n\nApproach: {}\n",
        plan.summary
    );
    for (i, s) in plan.subtasks.iter().enumerate() {
        let deps = if s.depends_on.is_empty() {
            String::new()
        } else {
            format!(" (after {})", s.depends_on.join(", "))
        };
        text.push_str(&format!(
            "{}. {}{}: {}\n",
            i + 1,
            s.title,
            deps,
            s.instructions
        ));
    }
    text
}

/// Adds the plan to the request as a system message.
pub fn add_plan(request: &mut Request, plan: &str) {
    match request {
        Request::OpenAi(r) => {
            let at = r
                .messages
                .iter()
                .take_while(|m| {
                    matches!(
                        m,
                        openai::ChatMessage::System(_) | openai::ChatMessage::Developer(_)
                    )
                })
                .count();
            r.messages.insert(
                at,
                openai::ChatMessage::System(openai::SystemMessage {
                    content: openai::MessageContent::Text(plan.to_string()),
                    name: None,
                    extra: Default::default(),
                }),
            );
        }
        Request::Anthropic(r) => {
            r.system = Some(match r.system.take() {
                None => anthropic::SystemPrompt::Text(plan.to_string()),
                Some(anthropic::SystemPrompt::Text(t)) => {
                    anthropic::SystemPrompt::Text(format!("{t}\n\n{plan}"))
                }
                Some(anthropic::SystemPrompt::Blocks(mut blocks)) => {
                    blocks.push(anthropic::ContentBlock::text(plan));
                    anthropic::SystemPrompt::Blocks(blocks)
                }
            });
        }
    }
}

//! Plan mode for unmodified agents on the chat APIs.
//!
//! When the router picks `plan` or `plan-and-verify` for a chat request, the
//! planner model is asked for a plan of the conversation's task, and the
//! request is served by the executor with the plan added as a system
//! message. Plans are cached per agent session (the `x-pointsman-session`
//! header, or Anthropic's `metadata.user_id`), so the planner is called once
//! per session, not once per turn.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::Orchestrator;
use super::call;
use crate::ledger::Cost;
use crate::ledger::record::CallRole;
use crate::policy::types::{Features, Message, Plan, Route, Task, Tier};
use crate::provider::Request;
use crate::provider::wire::{anthropic, openai};
use crate::tenant::Owner;
use crate::tokens::count as count_tokens;

/// How long a session's plan is reused.
pub const PLAN_TTL: Duration = Duration::from_secs(3600);
/// Most sessions remembered; the oldest is forgotten first.
pub const MAX_SESSIONS: usize = 10_000;
/// Most sessions remembered for one owner; its oldest is forgotten first.
pub const MAX_SESSIONS_PER_OWNER: usize = 1_000;
/// Longest session id kept; longer ones are cut to this length.
pub const MAX_SESSION_BYTES: usize = 256;
/// Most tokens of the conversation the planner is shown (and at most half
/// its context window, leaving room for its instructions and its answer).
pub const CONVERSATION_TOKENS: usize = 16_000;

/// A plan for a conversation.
#[derive(Debug, Clone)]
pub struct SessionPlan {
    /// The text added to the request.
    pub text: String,
    /// What the planner call cost (charged to the request that made it).
    pub cost: Cost,
}

/// Plans by owner and session. A session id is the client's word, so it
/// only finds plans its own owner made: another tenant sending the same id
/// gets a plan of its own, never this one (which would inject one tenant's
/// plan into another's request).
#[derive(Default)]
pub struct PlanCache {
    inner: Mutex<Plans>,
}

#[derive(Default)]
struct Plans {
    by_session: HashMap<(Owner, String), (Instant, Arc<SessionPlan>)>,
    per_owner: HashMap<Owner, usize>,
}

/// Whether the plan was made for this request or reused, or could not be
/// had.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PlanSource {
    /// Made now; its cost is this request's.
    New,
    /// Reused from the session.
    Cached,
    /// The route asked for a plan and none could be had: the request is
    /// served without one, and the client is told so
    /// (`x-pointsman-plan: none`).
    Unavailable,
}

impl PlanSource {
    /// Header value.
    pub fn as_str(self) -> &'static str {
        match self {
            PlanSource::New => "new",
            PlanSource::Cached => "cached",
            PlanSource::Unavailable => "none",
        }
    }
}

impl PlanCache {
    fn get(&self, owner: &Owner, session: &str) -> Option<Arc<SessionPlan>> {
        let plans = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        plans
            .by_session
            .get(&(owner.clone(), session_key(session)))
            .filter(|(at, _)| at.elapsed() < PLAN_TTL)
            .map(|(_, plan)| plan.clone())
    }

    fn put(&self, owner: &Owner, session: &str, plan: Arc<SessionPlan>) {
        let mut plans = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let key = (owner.clone(), session_key(session));
        if !plans.by_session.contains_key(&key) {
            // One owner's sessions past its share evict its own oldest, so
            // a client minting session ids cannot push others' plans out.
            let own = plans.per_owner.get(owner).copied().unwrap_or(0);
            if own >= MAX_SESSIONS_PER_OWNER {
                plans.evict_oldest(|(o, _)| o == owner);
            } else if plans.by_session.len() >= MAX_SESSIONS {
                plans.evict_oldest(|_| true);
            }
            *plans.per_owner.entry(owner.clone()).or_default() += 1;
        }
        plans.by_session.insert(key, (Instant::now(), plan));
    }

    /// Sessions with a plan (for tests and metrics).
    pub fn len(&self) -> usize {
        let plans = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        plans.by_session.len()
    }

    /// Whether no session has a plan.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Plans {
    /// Forgets the oldest plan among the keys `which` accepts. Linear, but
    /// only when a cap is reached.
    fn evict_oldest(&mut self, which: impl Fn(&(Owner, String)) -> bool) {
        let oldest = self
            .by_session
            .iter()
            .filter(|(k, _)| which(k))
            .min_by_key(|(_, (at, _))| *at)
            .map(|(k, _)| k.clone());
        if let Some(key) = oldest {
            self.by_session.remove(&key);
            if let Some(n) = self.per_owner.get_mut(&key.0) {
                *n -= 1;
                if *n == 0 {
                    self.per_owner.remove(&key.0);
                }
            }
        }
    }
}

/// A session id as a cache key: at most [`MAX_SESSION_BYTES`] bytes, so a
/// client cannot make the cache hold megabytes per entry.
fn session_key(session: &str) -> String {
    let mut end = session.len().min(MAX_SESSION_BYTES);
    while !session.is_char_boundary(end) {
        end -= 1;
    }
    session[..end].to_string()
}

/// The plan for this conversation: the session's, or a new one from the
/// planner. `Err` carries why there is none (the request is then served
/// without a plan).
pub async fn plan_for(
    orch: &Orchestrator,
    owner: &Owner,
    caller: &crate::dispatch::Caller,
    features: &Features,
    conversation: &[Message],
    route: &Route,
    deadline: Instant,
) -> Result<(Arc<SessionPlan>, PlanSource), String> {
    if let Some(session) = &features.session
        && let Some(plan) = orch.plans.get(owner, session)
    {
        return Ok((plan, PlanSource::Cached));
    }
    // The same key as the request's Caller was given its arm by.
    let planner = orch
        .policies
        .planner_for(crate::policy::ActivePolicies::assignment_key(features))
        .0
        .ok_or("no planner policy is loaded")?;
    let budget = route
        .planner
        .as_deref()
        .and_then(|id| orch.dispatch.model(id))
        .map_or(CONVERSATION_TOKENS, |m| {
            CONVERSATION_TOKENS.min(m.context_window as usize / 2)
        });
    let task = task_of(features, conversation, route, budget);
    let catalog = orch.dispatch.catalog();
    let request = planner
        .plan_request(&task, &catalog)
        .await
        .map_err(|e| format!("the planner policy failed: {e}"))?;
    let chain: Vec<_> = std::iter::once(request.model.as_str())
        .chain(route.planner.as_deref())
        .filter_map(|id| orch.dispatch.model(id).cloned())
        .collect();
    let first = match call::complete(
        orch,
        caller,
        CallRole::Planner,
        &chain,
        true,
        &request,
        deadline,
    )
    .await
    {
        Ok(called) => match planner.parse_plan(&task, &called.text, &catalog).await {
            Ok(plan) => Ok((plan, called.cost)),
            Err(e) => Err((format!("the plan could not be used: {e}"), called.cost)),
        },
        Err(f) => Err((
            format!("the planner model failed: {}", f.error),
            Cost::default(),
        )),
    };
    let (plan, cost) = match first {
        Ok(planned) => planned,
        Err((why, spent)) => {
            // Critical work gets one more try, on the escalation model,
            // before it is served without a plan.
            let escalation = orch
                .dispatch
                .escalation(0)
                .filter(|e| route.tier == Tier::PlanAndVerify && e.id != request.model);
            let Some(escalation) = escalation else {
                return Err(why);
            };
            tracing::info!(request = %features.id, "{why}: asking the escalation model {} for the plan", escalation.id);
            let called = call::complete(
                orch,
                caller,
                CallRole::Planner,
                std::slice::from_ref(&escalation),
                true,
                &request,
                deadline,
            )
            .await
            .map_err(|f| {
                format!(
                    "{why}; the escalation model {} failed too: {}",
                    escalation.id, f.error
                )
            })?;
            let plan = planner
                .parse_plan(&task, &called.text, &catalog)
                .await
                .map_err(|e| {
                    format!("{why}; the escalation model's plan could not be used either: {e}")
                })?;
            let mut cost = spent;
            cost.add(called.cost);
            (plan, cost)
        }
    };
    let plan = Arc::new(SessionPlan {
        text: render(&plan),
        cost,
    });
    if let Some(session) = &features.session {
        orch.plans.put(owner, session, plan.clone());
    }
    Ok((plan, PlanSource::New))
}

/// The conversation as a task, in at most about `budget` tokens. The latest
/// user message is what is asked now: it names and describes the task. The
/// earlier user messages are its context: as many of the newest as fit, in
/// their order. The first user message is not the task's name: agents such
/// as aider open every conversation with example exchanges, and the files
/// they edit, as user messages.
pub fn task_of(
    features: &Features,
    conversation: &[Message],
    route: &Route,
    budget: usize,
) -> Task {
    let users: Vec<&str> = conversation
        .iter()
        .filter(|m| m.role == "user" && !m.content.trim().is_empty())
        .map(|m| m.content.as_str())
        .collect();
    let (latest, earlier) = users.split_last().map_or(("", &[][..]), |(l, e)| (*l, e));
    let description = cut_to_tokens(latest, budget);
    let title: String = description
        .lines()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("")
        .trim()
        .chars()
        .take(120)
        .collect();
    let mut left = budget.saturating_sub(count_tokens(&description) as usize);
    let mut kept = Vec::new();
    for (i, text) in earlier.iter().enumerate().rev() {
        let tokens = count_tokens(text) as usize;
        if tokens > left {
            break;
        }
        left -= tokens;
        kept.push((i, *text));
    }
    let mut context = Vec::new();
    let dropped = earlier.len() - kept.len();
    if dropped > 0 {
        context.push((
            "conversation".to_string(),
            format!("{dropped} earlier user message(s) left out for length"),
        ));
    }
    context.extend(kept.into_iter().rev().map(|(i, text)| {
        (
            format!("earlier user message {} of {}", i + 1, earlier.len()),
            text.to_string(),
        )
    }));
    Task {
        id: features.id.clone(),
        title,
        description,
        context,
        labels: features.labels.clone(),
        route: route.clone(),
    }
}

/// `text` cut to about `max` tokens, keeping its start.
fn cut_to_tokens(text: &str, max: usize) -> String {
    let mut tokens = count_tokens(text) as usize;
    let mut text = text;
    while tokens > max {
        // Shrink in proportion, a little more each time, until it fits.
        let chars = text.chars().count() * max / tokens * 9 / 10;
        let end = text
            .char_indices()
            .nth(chars)
            .map_or(text.len(), |(i, _)| i);
        text = &text[..end];
        tokens = count_tokens(text) as usize;
    }
    text.to_string()
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::features::{self, RequestContext};
    use crate::policy::types::Tier;
    use crate::provider::{Format, Request};
    use serde_json::json;

    /// The conversation and the features of `body`, as the gateway reads
    /// them.
    fn read(format: Format, body: &serde_json::Value) -> (Vec<Message>, Features) {
        let request = Request::from_json(format, body).unwrap();
        (
            features::conversation(&request),
            features::of(&request, RequestContext::default()),
        )
    }

    fn route() -> Route {
        Route {
            tier: Tier::Plan,
            executor: "glm-4.7".into(),
            fallbacks: Vec::new(),
            planner: Some("deepseek-v3.2".into()),
            reasoning: String::new(),
            deadline_ms: None,
            max_cost_usd: None,
            max_output_tokens: None,
            labels: Vec::new(),
        }
    }

    /// A conversation shaped like aider's: example exchanges and the files
    /// in chat come before the request, as user messages.
    fn aider_like() -> serde_json::Value {
        json!({"model": "auto", "messages": [
            {"role": "system", "content": "Act as an expert software developer."},
            {"role": "user", "content": "Change the greeting to be more casual"},
            {"role": "assistant", "content": "Ok, I will:\n\nshow_greeting.py\n```\nprint('Hey')\n```"},
            {"role": "user", "content": "I switched to a new code base."},
            {"role": "assistant", "content": "Ok."},
            {"role": "user", "content": "I have *added these files to the chat*\n\ngreeting.py\n```\ndef greet():\n    return 'hi'\n```"},
            {"role": "assistant", "content": "Ok, any changes I propose will be to those files."},
            {"role": "user", "content": "\nDesign a plugin system across multiple modules\n\nstarting with greeting.py"},
        ]})
    }

    #[test]
    fn the_latest_user_message_is_the_task_and_earlier_ones_its_context() {
        let body = aider_like();
        let (conversation, f) = read(Format::OpenAi, &body);
        let task = task_of(&f, &conversation, &route(), CONVERSATION_TOKENS);
        assert_eq!(task.title, "Design a plugin system across multiple modules");
        assert!(task.description.ends_with("starting with greeting.py"));
        let paths: Vec<&str> = task.context.iter().map(|(p, _)| p.as_str()).collect();
        assert_eq!(
            paths,
            [
                "earlier user message 1 of 3",
                "earlier user message 2 of 3",
                "earlier user message 3 of 3"
            ]
        );
        assert!(task.context[2].1.contains("def greet()"));
    }

    #[test]
    fn the_planner_sees_messages_a_policy_sees_cut_short() {
        let long = format!(
            "Design a plugin system. {}",
            "More detail here. ".repeat(400)
        );
        let body = json!({"model": "auto", "max_tokens": 100,
            "messages": [{"role": "user", "content": long}]});
        let (conversation, f) = read(Format::Anthropic, &body);
        assert!(f.messages[0].content.len() < long.len());
        let task = task_of(&f, &conversation, &route(), CONVERSATION_TOKENS);
        assert_eq!(task.description, long);
    }

    #[test]
    fn tool_results_are_not_the_task() {
        let body = json!({"model": "auto", "max_tokens": 100, "messages": [
            {"role": "user", "content": "Design a plugin system across multiple modules"},
            {"role": "assistant", "content": [{"type": "tool_use", "id": "t1", "name": "read", "input": {"path": "a.rs"}}]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t1", "content": "fn main() {}"}]},
        ]});
        let (conversation, f) = read(Format::Anthropic, &body);
        // Policies see the tool result as a tool message too.
        assert_eq!(f.messages[2].role, "tool");
        let task = task_of(&f, &conversation, &route(), CONVERSATION_TOKENS);
        assert_eq!(task.title, "Design a plugin system across multiple modules");
        assert!(task.context.is_empty(), "{:?}", task.context);
    }

    #[test]
    fn a_long_conversation_keeps_its_latest_messages_within_the_budget() {
        let body = aider_like();
        let (conversation, f) = read(Format::OpenAi, &body);
        let latest = count_tokens(&conversation.last().unwrap().content) as usize;
        let files = count_tokens(&conversation[5].content) as usize;
        // Room for the request and the files, not for the examples.
        let task = task_of(&f, &conversation, &route(), latest + files + 2);
        assert_eq!(task.context.len(), 2, "{:?}", task.context);
        assert_eq!(
            task.context[0].1,
            "2 earlier user message(s) left out for length"
        );
        assert_eq!(task.context[1].0, "earlier user message 3 of 3");
        // A request longer than the budget is cut, its start kept.
        let task = task_of(&f, &conversation, &route(), 5);
        assert!(count_tokens(&task.description) <= 5);
        assert!(task.description.contains("Design"), "{}", task.description);
        assert_eq!(task.context.len(), 1);
    }
}

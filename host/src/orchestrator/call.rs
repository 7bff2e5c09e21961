//! One model call on behalf of the orchestrator: a policy's chat request,
//! made and settled through the dispatch layer, answered as text with its
//! cost.

use std::sync::Arc;
use std::time::Instant;

use serde_json::json;

use super::Orchestrator;
use crate::config::ModelConfig;
use crate::dispatch::{Answer, Call, Caller, Outcome, Settlement};
use crate::ledger::Cost;
use crate::ledger::record::CallRole;
use crate::policy::types::ChatRequest;
use crate::provider::wire::openai;
use crate::provider::{ProviderError, Request, Response, Usage};
use crate::resilience::Attempt;

/// A finished call.
#[derive(Debug, Clone)]
pub struct Called {
    /// The answer's text.
    pub text: String,
    /// The model that answered.
    pub model: String,
    /// Tokens used.
    pub usage: Usage,
    /// What it cost.
    pub cost: Cost,
    /// Every attempt, failed ones included.
    pub attempts: Vec<Attempt>,
}

/// A call that got no answer.
#[derive(Debug, Clone)]
pub struct Failed {
    /// The last error.
    pub error: ProviderError,
    /// Every attempt.
    pub attempts: Vec<Attempt>,
}

/// Sends `request` to the models of `chain` in order (then the escalation
/// model when `escalate`), non-streaming, and settles it: the ledger
/// records it as `role` for `caller`.
pub async fn complete(
    orchestrator: &Orchestrator,
    caller: &Caller,
    role: CallRole,
    chain: &[Arc<ModelConfig>],
    escalate: bool,
    request: &ChatRequest,
    deadline: Instant,
) -> Result<Called, Failed> {
    let started = Instant::now();
    let at_ms = crate::dispatch::unix_ms();
    let dispatch = &orchestrator.dispatch;
    let body = Request::OpenAi(openai_body(request));
    let needed = chain.first().map_or(0, |_| {
        crate::tokens::count(&prompt_text(request)) as u64
            + u64::from(request.max_output_tokens.unwrap_or(0))
    });
    // The call's worst case is held against the client's budgets before
    // it is made; a refusal is a failed call that asked no upstream.
    let held = request
        .max_output_tokens
        .unwrap_or(crate::provider::DEFAULT_MAX_TOKENS);
    let input = needed.saturating_sub(u64::from(request.max_output_tokens.unwrap_or(0)));
    let amount = dispatch.worst_case(chain, escalate, input + input / 10 + 16, u64::from(held));
    let reservation = match dispatch.reserve(caller, amount).await {
        Ok(reservation) => reservation,
        Err(e) => {
            return Err(Failed {
                error: ProviderError::Budget(e.to_string()),
                attempts: Vec::new(),
            });
        }
    };
    let mut body = body;
    if reservation.is_some() && request.max_output_tokens.is_none() {
        body.set_max_output_tokens(held);
    }
    let sent = dispatch
        .complete(Call {
            native: None,
            request: &body,
            chain,
            escalate,
            needed,
            deadline,
        })
        .await;
    let attempts = sent.attempts;
    let (result, served, usage, cost) = match sent.result {
        Ok(Answer::Complete(served, answer)) => {
            let usage = answer.usage();
            let cost = dispatch.price(&served, &usage);
            (Ok(answer_text(*answer)), Some(served), usage, cost)
        }
        Ok(Answer::Stream(..)) => unreachable!("complete() turns a stream into an error"),
        Err(error) => (Err(error), None, Usage::default(), Cost::default()),
    };
    let record = caller.record(
        role,
        false,
        Outcome {
            served: served.as_ref(),
            first: chain.first().map(|m| m.id.as_str()),
            usage: &usage,
            cost,
            attempts: &attempts,
            error: result.as_ref().err(),
            broken: false,
            started,
            at_ms,
            ttft: None,
        },
    );
    if let Err(e) = dispatch
        .settle(Settlement {
            record,
            lease: sent.lease,
            reservation,
        })
        .await
    {
        // The answer was paid for: the task keeps it, and the log says
        // the ledger missed it.
        tracing::error!(task = ?caller.task_id, "{e}");
    }
    match (result, served) {
        (Ok(text), Some(served)) => Ok(Called {
            text,
            model: served.model.id.clone(),
            usage,
            cost,
            attempts,
        }),
        (Err(error), _) => Err(Failed { error, attempts }),
        (Ok(_), None) => unreachable!("an answer always has a model"),
    }
}

/// The policy's request as an OpenAI body.
fn openai_body(request: &ChatRequest) -> openai::ChatRequest {
    let messages: Vec<serde_json::Value> = request
        .messages
        .iter()
        .map(|m| {
            let role = match m.role.as_str() {
                "system" | "assistant" | "user" => m.role.as_str(),
                _ => "user",
            };
            json!({"role": role, "content": m.content})
        })
        .collect();
    let mut body = json!({"model": request.model, "messages": messages});
    if let Some(max) = request.max_output_tokens {
        body["max_tokens"] = max.into();
    }
    if let Some(t) = request.temperature {
        body["temperature"] = (t as f64).into();
    }
    serde_json::from_value(body).expect("a well-formed OpenAI request")
}

/// Every message's text, for a token estimate.
pub fn prompt_text(request: &ChatRequest) -> String {
    request
        .messages
        .iter()
        .map(|m| m.content.as_str())
        .collect::<Vec<_>>()
        .join("\n")
}

fn answer_text(answer: Response) -> String {
    match answer {
        Response::OpenAi(r) => r
            .choices
            .into_iter()
            .next()
            .and_then(|c| c.message.content)
            .unwrap_or_default(),
        Response::Anthropic(r) => r
            .content
            .into_iter()
            .filter_map(|b| match b {
                crate::provider::wire::anthropic::ContentBlock::Text(t) => Some(t.text),
                _ => None,
            })
            .collect::<Vec<_>>()
            .join(""),
        Response::Responses(r) => r.output_text(),
    }
}

//! One model call on behalf of the orchestrator: a policy's chat request,
//! sent through the resilience layer, answered as text with its cost.

use std::sync::Arc;
use std::time::Instant;

use serde_json::json;

use crate::app::AppState;
use crate::config::ModelConfig;
use crate::ledger::Cost;
use crate::policy::types::ChatRequest;
use crate::provider::wire::openai;
use crate::provider::{ProviderError, Reply, Request, Response, Usage};
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
/// model when `escalate`), non-streaming.
pub async fn complete(
    state: &AppState,
    chain: &[Arc<ModelConfig>],
    escalate: bool,
    request: &ChatRequest,
    deadline: Instant,
) -> Result<Called, Failed> {
    let body = openai_body(request);
    let needed = chain
        .first()
        .map_or(0, |_| crate::tokens::count(&prompt_text(request)) as u64);
    let escalation = if escalate {
        state.escalation(&needed)
    } else {
        None
    };
    let outcome = state
        .resilience
        .run(chain, escalation, deadline, |model, endpoint, _left| {
            let body = body.clone();
            async move {
                let provider = state.provider(&endpoint.provider);
                let mut upstream = Request::OpenAi(body)
                    .into_format(provider.format())
                    .map_err(|e| ProviderError::Status {
                        status: 400,
                        message: e.to_string(),
                        retry_after: None,
                    })?;
                upstream.set_model(&endpoint.upstream);
                match provider.send(upstream).await? {
                    Reply::Complete(answer) => Ok((model, *answer)),
                    Reply::Stream(_) => Err(ProviderError::Malformed(
                        "the provider streamed an unrequested stream".into(),
                    )),
                }
            }
        })
        .await;
    crate::resilience::settle(outcome.lease, outcome.result.is_ok());
    match outcome.result {
        Ok((model, answer)) => {
            let usage = answer.usage();
            let cost = state.price(&model, &usage);
            Ok(Called {
                text: answer_text(answer),
                model: model.id.clone(),
                usage,
                cost,
                attempts: outcome.attempts,
            })
        }
        Err(error) => Err(Failed {
            error,
            attempts: outcome.attempts,
        }),
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
    }
}

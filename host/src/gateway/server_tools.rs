//! Anthropic server tools: tools whose `type` is neither `custom` nor
//! absent (`web_search_20250305`, `code_execution_20250825`, ...). Anthropic
//! runs them on its own servers, so only a model whose every endpoint speaks
//! Anthropic's API can serve a request that offers one; an OpenAI-format
//! upstream has nothing to run them with.
//!
//! The check runs once the route is known and before any upstream call (the
//! planner's included): a routed model that cannot run them is a 400 naming
//! the tools, and fallbacks that cannot are left out, so a failure of the
//! routed model does not end in a translation error half-way through.

use std::sync::Arc;

use super::AppState;
use super::error::ApiError;
use crate::config::ModelConfig;
use crate::provider::{Format, Request};

/// `candidates` (the routed model first) restricted to the models that can
/// run the server tools `request` offers; all of them when it offers none.
/// A 400 in the client's format when the routed model cannot.
pub(super) fn restrict(
    state: &AppState,
    request: &Request,
    candidates: Vec<Arc<ModelConfig>>,
) -> Result<Vec<Arc<ModelConfig>>, ApiError> {
    let tools = server_tools(request);
    if tools.is_empty() {
        return Ok(candidates);
    }
    let Some(routed) = candidates.first() else {
        return Ok(candidates);
    };
    if let Some(provider) = openai_provider(state, routed) {
        return Err(ApiError::invalid(format!(
            "{} run{} on Anthropic's servers, and the routed model `{}` is served by the OpenAI-format provider `{}`, which cannot run {}; remove {}, or ask for a model on an Anthropic upstream",
            tools.join(", "),
            if tools.len() == 1 { "s" } else { "" },
            routed.id,
            provider,
            if tools.len() == 1 { "it" } else { "them" },
            if tools.len() == 1 {
                "the tool"
            } else {
                "these tools"
            },
        )));
    }
    let before = candidates.len();
    let able: Vec<Arc<ModelConfig>> = candidates
        .into_iter()
        .filter(|model| openai_provider(state, model).is_none())
        .collect();
    if able.len() < before {
        tracing::debug!(
            left_out = before - able.len(),
            "fallbacks on OpenAI-format providers left out: the request offers Anthropic server tools"
        );
    }
    Ok(able)
}

/// The server tools an Anthropic request offers, each as
/// "the Anthropic server tool `name` (type `kind`)". Deferred tools are
/// not offered to the model outright and are left aside, as translation
/// leaves them.
fn server_tools(request: &Request) -> Vec<String> {
    let Request::Anthropic(request) = request else {
        return Vec::new();
    };
    request
        .tools
        .iter()
        .flatten()
        .filter(|tool| !tool.is_custom())
        .filter(|tool| tool.extra.get("defer_loading") != Some(&serde_json::Value::Bool(true)))
        .map(|tool| {
            format!(
                "the Anthropic server tool `{}` (type `{}`)",
                tool.name.chars().take(64).collect::<String>(),
                tool.kind
                    .as_deref()
                    .unwrap_or_default()
                    .chars()
                    .take(64)
                    .collect::<String>()
            )
        })
        .collect()
}

/// The name of a provider of `model` that speaks OpenAI's format, if any
/// of its endpoints is on one.
fn openai_provider<'a>(state: &'a AppState, model: &ModelConfig) -> Option<&'a str> {
    state
        .dispatch
        .resilience()
        .pool(&model.id)?
        .endpoints()
        .iter()
        .find(|endpoint| {
            state
                .dispatch
                .provider(&endpoint.provider)
                .is_some_and(|p| p.format() == Format::OpenAi)
        })
        .map(|endpoint| endpoint.provider.as_str())
}

//! What a router sees of a request: text, token counts, tools, labels.
//!
//! Both wire formats reduce to the same [`Features`]; the `pointsman route`
//! command uses the same code, so a route printed there is the route the
//! gateway serves.

use serde_json::Value;

use crate::policy::types::{Features, Message, WireApi};
use crate::provider::Format;

/// Most messages passed to a policy (the latest ones).
pub const POLICY_MESSAGES: usize = 16;
/// Most bytes of one message passed to a policy.
pub const POLICY_MESSAGE_BYTES: usize = 2000;

use crate::tokens::PER_MESSAGE as TOKENS_PER_MESSAGE;
pub use crate::tokens::count as count_tokens;

/// What the gateway knows besides the body.
#[derive(Debug, Clone, Default)]
pub struct RequestContext {
    /// Request id.
    pub id: String,
    /// Labels from `x-pointsman-*` headers and the client key.
    pub labels: Vec<(String, String)>,
    /// Session from the `x-pointsman-session` header.
    pub session: Option<String>,
}

/// Features of an OpenAI chat-completions body.
pub fn from_openai(body: &Value, ctx: RequestContext) -> Features {
    let messages = openai_messages(body);
    let max_output = body["max_completion_tokens"]
        .as_u64()
        .or_else(|| body["max_tokens"].as_u64());
    build(WireApi::OpenaiChat, body, messages, max_output, ctx)
}

/// Features of an Anthropic messages body.
pub fn from_anthropic(body: &Value, ctx: RequestContext) -> Features {
    let messages = anthropic_messages(body, false);
    let mut ctx = ctx;
    if ctx.session.is_none() {
        ctx.session = body["metadata"]["user_id"].as_str().map(str::to_string);
    }
    let max_output = body["max_tokens"].as_u64();
    build(WireApi::AnthropicMessages, body, messages, max_output, ctx)
}

/// The whole conversation of a `format` body as text, uncut (a policy sees
/// [`Features::messages`], which are cut short). An Anthropic user message
/// that only carries tool results is a `tool` message here, as it would be
/// on OpenAI's API: it answers the model, it asks nothing.
pub fn conversation(format: Format, body: &Value) -> Vec<Message> {
    match format {
        Format::OpenAi => openai_messages(body),
        Format::Anthropic => anthropic_messages(body, true),
    }
}

fn openai_messages(body: &Value) -> Vec<Message> {
    body["messages"]
        .as_array()
        .map(|ms| {
            ms.iter()
                .map(|m| Message {
                    role: m["role"].as_str().unwrap_or("user").to_string(),
                    content: openai_text(m),
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Anthropic's top-level system prompt comes first, as a `system` message;
/// `tool_role` makes user messages of tool results only `tool` messages.
fn anthropic_messages(body: &Value, tool_role: bool) -> Vec<Message> {
    let mut messages = Vec::new();
    let system = anthropic_text(&body["system"]);
    if !system.is_empty() {
        messages.push(Message {
            role: "system".into(),
            content: system,
        });
    }
    if let Some(ms) = body["messages"].as_array() {
        messages.extend(ms.iter().map(|m| {
            let only_results = m["content"].as_array().is_some_and(|blocks| {
                !blocks.is_empty() && blocks.iter().all(|b| b["type"] == "tool_result")
            });
            let role = match m["role"].as_str().unwrap_or("user") {
                "user" if tool_role && only_results => "tool",
                role => role,
            };
            Message {
                role: role.to_string(),
                content: anthropic_text(&m["content"]),
            }
        }));
    }
    messages
}

fn build(
    api: WireApi,
    body: &Value,
    messages: Vec<Message>,
    max_output: Option<u64>,
    ctx: RequestContext,
) -> Features {
    let tools = body["tools"].as_array();
    // Saturating: a body of many huge messages must not wrap around to a
    // small count that a router would take for a cheap request.
    let mut input_tokens: u32 = messages.iter().fold(0, |sum: u32, m| {
        sum.saturating_add(count_tokens(&m.content).saturating_add(TOKENS_PER_MESSAGE))
    });
    if let Some(tools) = tools {
        // Tool schemas are sent to the model as part of the prompt.
        input_tokens = input_tokens.saturating_add(count_tokens(
            &serde_json::to_string(tools).unwrap_or_default(),
        ));
    }
    let message_count = messages.len() as u32;
    let messages = policy_view(messages);
    let mut labels = ctx.labels;
    if let Some(metadata) = body["metadata"].as_object() {
        for (k, v) in metadata {
            if let Some(v) = v.as_str() {
                labels.push((k.clone(), v.to_string()));
            }
        }
    }
    Features {
        id: ctx.id,
        api,
        requested_model: body["model"].as_str().unwrap_or_default().to_string(),
        messages,
        message_count,
        input_tokens,
        max_output_tokens: max_output.map(|n| n.min(u32::MAX as u64) as u32),
        tool_count: tools.map_or(0, |t| t.len() as u32),
        labels,
        session: ctx.session,
    }
}

/// Messages a policy sees: the latest [`POLICY_MESSAGES`], each cut to
/// [`POLICY_MESSAGE_BYTES`]. Token counts are taken before this cut.
fn policy_view(mut messages: Vec<Message>) -> Vec<Message> {
    let skip = messages.len().saturating_sub(POLICY_MESSAGES);
    messages.drain(..skip);
    for m in &mut messages {
        if m.content.len() > POLICY_MESSAGE_BYTES {
            let mut end = POLICY_MESSAGE_BYTES;
            while !m.content.is_char_boundary(end) {
                end -= 1;
            }
            m.content.truncate(end);
        }
    }
    messages
}

/// The text of an OpenAI message: string content, text parts, and tool
/// calls as their JSON (so routers can see what the agent is doing).
fn openai_text(message: &Value) -> String {
    let mut text = match &message["content"] {
        Value::String(s) => s.clone(),
        Value::Array(parts) => parts
            .iter()
            .filter_map(|p| p["text"].as_str())
            .collect::<Vec<_>>()
            .join("\n"),
        _ => String::new(),
    };
    if let Some(calls) = message["tool_calls"].as_array() {
        for call in calls {
            if !text.is_empty() {
                text.push('\n');
            }
            text.push_str(&call["function"].to_string());
        }
    }
    text
}

/// The text of Anthropic content: a string, or text, tool-use and
/// tool-result blocks.
fn anthropic_text(content: &Value) -> String {
    match content {
        Value::String(s) => s.clone(),
        Value::Array(blocks) => blocks
            .iter()
            .filter_map(|b| match b["type"].as_str() {
                Some("text") => b["text"].as_str().map(str::to_string),
                Some("tool_use") => Some(b["input"].to_string()),
                Some("tool_result") => Some(anthropic_text(&b["content"])),
                _ => None,
            })
            .collect::<Vec<_>>()
            .join("\n"),
        _ => String::new(),
    }
}

/// Labels from `x-pointsman-<key>` headers (other than the session).
pub fn header_labels(headers: &axum::http::HeaderMap) -> Vec<(String, String)> {
    headers
        .iter()
        .filter_map(|(name, value)| {
            let key = name.as_str().strip_prefix("x-pointsman-")?;
            if key == "session" || key.is_empty() {
                return None;
            }
            Some((key.to_string(), value.to_str().ok()?.to_string()))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn openai_features() {
        let body = json!({
            "model": "auto",
            "max_tokens": 100,
            "metadata": {"team": "core"},
            "tools": [{"type": "function", "function": {"name": "read_file", "parameters": {}}}],
            "messages": [
                {"role": "system", "content": "You are a coding agent."},
                {"role": "user", "content": [{"type": "text", "text": "Fix the bug"}]},
                {"role": "assistant", "content": null, "tool_calls": [{"id": "1", "type": "function", "function": {"name": "read_file", "arguments": "{\"path\":\"a.rs\"}"}}]},
            ]
        });
        let f = from_openai(&body, RequestContext::default());
        assert_eq!(f.messages.len(), 3);
        assert_eq!(f.messages[1].content, "Fix the bug");
        assert!(f.messages[2].content.contains("read_file"));
        assert_eq!(f.tool_count, 1);
        assert_eq!(f.max_output_tokens, Some(100));
        assert_eq!(f.labels, [("team".to_string(), "core".to_string())]);
        assert!(
            f.input_tokens > 12 && f.input_tokens < 80,
            "{}",
            f.input_tokens
        );
    }

    #[test]
    fn anthropic_features() {
        let body = json!({
            "model": "auto",
            "max_tokens": 1024,
            "system": [{"type": "text", "text": "Be brief."}],
            "metadata": {"user_id": "session-7"},
            "messages": [{"role": "user", "content": [{"type": "text", "text": "hello"}, {"type": "tool_result", "tool_use_id": "x", "content": "ok"}]}]
        });
        let f = from_anthropic(&body, RequestContext::default());
        assert_eq!(f.messages[0].role, "system");
        assert_eq!(f.messages[1].content, "hello\nok");
        assert_eq!(f.session.as_deref(), Some("session-7"));
        assert_eq!(f.max_output_tokens, Some(1024));
    }
}

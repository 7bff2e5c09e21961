//! What a router sees of a request: text, token counts, tools, labels.
//!
//! Both wire formats reduce to the same [`Features`]; the `pointsman route`
//! command uses the same code, so a route printed there is the route the
//! gateway serves.

use serde_json::Value;

use crate::policy::types::{Features, Message, ResponseFormat, WireApi};
use crate::provider::Format;

/// Most messages passed to a policy (the latest ones).
pub const POLICY_MESSAGES: usize = 16;
/// Most bytes of one message passed to a policy.
pub const POLICY_MESSAGE_BYTES: usize = 2000;

use crate::tokens::PER_MESSAGE as TOKENS_PER_MESSAGE;
pub use crate::tokens::count as count_tokens;

/// Label carrying the tokens of what the user asked: the user messages'
/// text, without tool results and `<system-reminder>` blocks. An agent's
/// system prompt and tool schemas are the same for every task; this is the
/// size of the task itself.
pub const TASK_TOKENS_LABEL: &str = "task_tokens";
/// Label carrying, on a turn that answers tool calls, the tier of the turn
/// that started the session's task (`direct`, `plan`, `plan-and-verify`).
pub const TASK_TIER_LABEL: &str = "task_tier";

/// What the gateway knows besides the body.
#[derive(Debug, Clone, Default)]
pub struct RequestContext {
    /// Request id.
    pub id: String,
    /// Labels from `x-pointsman-*` headers and the client key.
    pub labels: Vec<(String, String)>,
    /// Session from the headers ([`header_session`]).
    pub session: Option<String>,
}

/// The agent session named by the headers: `x-pointsman-session`, else
/// Claude Code's `x-claude-code-session-id`.
pub fn header_session(headers: &axum::http::HeaderMap) -> Option<String> {
    ["x-pointsman-session", "x-claude-code-session-id"]
        .iter()
        .find_map(|name| {
            let value = headers.get(*name)?.to_str().ok()?.trim();
            (!value.is_empty()).then(|| value.to_string())
        })
}

/// The session in an Anthropic `metadata.user_id`: Claude Code sends a JSON
/// object as a string, whose `session_id` is the session; any other
/// non-empty string is the session itself.
pub fn metadata_session(user_id: &str) -> Option<String> {
    let user_id = user_id.trim();
    if user_id.starts_with('{')
        && let Ok(Value::Object(fields)) = serde_json::from_str::<Value>(user_id)
        && let Some(session) = fields.get("session_id").and_then(Value::as_str)
        && !session.is_empty()
    {
        return Some(session.to_string());
    }
    (!user_id.is_empty()).then(|| user_id.to_string())
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
    let messages = anthropic_messages(body);
    let mut ctx = ctx;
    if ctx.session.is_none() {
        ctx.session = body["metadata"]["user_id"]
            .as_str()
            .and_then(metadata_session);
    }
    let max_output = body["max_tokens"].as_u64();
    build(WireApi::AnthropicMessages, body, messages, max_output, ctx)
}

/// The whole conversation of a `format` body as text, uncut (a policy sees
/// [`Features::messages`], which are cut short). An Anthropic user message
/// that only carries tool results is a `tool` message, as it would be on
/// OpenAI's API: it answers the model, it asks nothing. `<system-reminder>`
/// blocks, which agents add to user messages, are left out.
pub fn conversation(format: Format, body: &Value) -> Vec<Message> {
    match format {
        Format::OpenAi => openai_messages(body),
        Format::Anthropic => anthropic_messages(body),
    }
}

/// Whether the latest message of the conversation (system messages aside)
/// answers tool calls: the agent carries on a task rather than starting one.
pub fn answers_tools(messages: &[Message]) -> bool {
    messages
        .iter()
        .rev()
        .find(|m| m.role != "system")
        .is_some_and(|m| m.role == "tool")
}

/// `text` without its `<system-reminder>...</system-reminder>` blocks:
/// the reminders Claude Code adds to user messages and tool results (the
/// date, its attribution rules, the project's instructions) are the
/// agent's, not what the user asked. An unclosed block runs to the end.
pub fn without_reminders(text: &str) -> std::borrow::Cow<'_, str> {
    const OPEN: &str = "<system-reminder>";
    const CLOSE: &str = "</system-reminder>";
    if !text.contains(OPEN) {
        return text.into();
    }
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find(OPEN) {
        out.push_str(&rest[..start]);
        rest = match rest[start..].find(CLOSE) {
            Some(end) => &rest[start + end + CLOSE.len()..],
            None => "",
        };
    }
    out.push_str(rest);
    out.trim().to_string().into()
}

fn openai_messages(body: &Value) -> Vec<Message> {
    body["messages"]
        .as_array()
        .map(|ms| {
            ms.iter()
                .map(|m| Message {
                    role: m["role"].as_str().unwrap_or("user").to_string(),
                    content: without_reminders(&openai_text(m)).into_owned(),
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Anthropic's top-level system prompt comes first, as a `system` message;
/// user messages of tool results only are `tool` messages, and system
/// messages inside the conversation stay where they are.
fn anthropic_messages(body: &Value) -> Vec<Message> {
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
                "user" if only_results => "tool",
                role => role,
            };
            Message {
                role: role.to_string(),
                content: without_reminders(&anthropic_text(&m["content"])).into_owned(),
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
    let task_tokens: u32 = messages
        .iter()
        .filter(|m| m.role == "user")
        .fold(0, |sum: u32, m| {
            sum.saturating_add(count_tokens(&m.content))
        });
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
    set_label(&mut labels, TASK_TOKENS_LABEL, task_tokens.to_string());
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
        tool_names: tools.map(|t| tool_names(t)).unwrap_or_default(),
        image_count: images(&body["messages"]).saturating_add(images(&body["system"])),
        stream: body["stream"].as_bool().unwrap_or(false),
        temperature: body["temperature"].as_f64().map(|t| t as f32),
        response_format: response_format(body),
        // Set by the gateway, which knows the client and its budget.
        client: None,
        remaining_budget_usd: None,
    }
}

/// Most tool names passed to a policy, and most bytes of each: agents
/// offer a few dozen tools with short names.
pub const POLICY_TOOL_NAMES: usize = 128;
/// See [`POLICY_TOOL_NAMES`].
pub const POLICY_TOOL_NAME_BYTES: usize = 64;

/// The names of the tools offered, in either format (OpenAI's
/// `function.name`, Anthropic's `name`), bounded.
fn tool_names(tools: &[Value]) -> Vec<String> {
    tools
        .iter()
        .filter_map(|t| {
            t["function"]["name"]
                .as_str()
                .or_else(|| t["name"].as_str())
        })
        .take(POLICY_TOOL_NAMES)
        .map(|name| {
            let mut end = name.len().min(POLICY_TOOL_NAME_BYTES);
            while !name.is_char_boundary(end) {
                end -= 1;
            }
            name[..end].to_string()
        })
        .collect()
}

/// How many images `value` (messages, a message's content, an Anthropic
/// tool result) holds: OpenAI's `image_url` parts, Anthropic's `image`
/// blocks, at any depth of content. Bounded by the body, which is bounded.
fn images(value: &Value) -> u32 {
    match value {
        Value::Array(items) => items
            .iter()
            .fold(0, |n: u32, v| n.saturating_add(images(v))),
        Value::Object(fields) => {
            let own = match fields.get("type").and_then(Value::as_str) {
                Some("image_url" | "image" | "input_image") => 1,
                _ => 0,
            };
            // Content nests only under these keys; other fields (tool
            // inputs, metadata) are the client's data, not its images.
            ["content", "parts"]
                .iter()
                .filter_map(|k| fields.get(*k))
                .fold(own, |n: u32, v| n.saturating_add(images(v)))
        }
        _ => 0,
    }
}

/// The output format asked: OpenAI's `response_format`, Anthropic's
/// `output_format` (structured outputs).
fn response_format(body: &Value) -> ResponseFormat {
    let asked = body["response_format"]["type"]
        .as_str()
        .or_else(|| body["output_format"]["type"].as_str());
    match asked {
        Some("json_object") => ResponseFormat::JsonObject,
        Some("json_schema") => ResponseFormat::JsonSchema,
        _ => ResponseFormat::Text,
    }
}

/// Sets the host's label `key`, replacing any a client sent under that key.
pub fn set_label(labels: &mut Vec<(String, String)>, key: &str, value: String) {
    labels.retain(|(k, _)| k != key);
    labels.push((key.to_string(), value));
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
        assert_eq!(
            f.labels,
            [
                ("team".to_string(), "core".to_string()),
                (TASK_TOKENS_LABEL.to_string(), "3".to_string())
            ]
        );
        assert!(
            f.input_tokens > 12 && f.input_tokens < 80,
            "{}",
            f.input_tokens
        );
    }

    #[test]
    fn contract_020_fields() {
        let body = json!({
            "model": "auto", "stream": true, "temperature": 0.2,
            "response_format": {"type": "json_schema", "json_schema": {}},
            "tools": [{"type": "function", "function": {"name": "read_file", "parameters": {}}},
                      {"type": "function", "function": {"name": "x".repeat(100), "parameters": {}}}],
            "messages": [{"role": "user", "content": [
                {"type": "text", "text": "compare"},
                {"type": "image_url", "image_url": {"url": "data:a"}},
                {"type": "image_url", "image_url": {"url": "data:b"}}]}]
        });
        let f = from_openai(&body, RequestContext::default());
        assert_eq!(f.image_count, 2);
        assert!(f.stream);
        assert_eq!(f.temperature, Some(0.2));
        assert_eq!(f.response_format, ResponseFormat::JsonSchema);
        assert_eq!(f.tool_names[0], "read_file");
        assert_eq!(f.tool_names[1].len(), POLICY_TOOL_NAME_BYTES);
        // Anthropic: images in a message and inside a tool result; a tool
        // input that mentions an image type is the client's data.
        let body = json!({
            "model": "auto", "max_tokens": 10,
            "tools": [{"name": "look", "input_schema": {}}],
            "messages": [
                {"role": "user", "content": [{"type": "image", "source": {}}]},
                {"role": "assistant", "content": [{"type": "tool_use", "id": "1", "name": "look", "input": {"type": "image"}}]},
                {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "1",
                    "content": [{"type": "image", "source": {}}]}]}]
        });
        let f = from_anthropic(&body, RequestContext::default());
        assert_eq!(f.image_count, 2);
        assert_eq!(f.tool_names, ["look"]);
        assert!(!f.stream);
        assert_eq!(f.response_format, ResponseFormat::Text);
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

    fn fixture(name: &str) -> Value {
        let path = format!(
            "{}/../tests/fixtures/claude-code/{name}.json",
            env!("CARGO_MANIFEST_DIR")
        );
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
    }

    fn label<'a>(f: &'a Features, key: &str) -> Option<&'a str> {
        f.labels
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    #[test]
    fn claude_code_requests_show_the_task_not_the_scaffolding() {
        let recorded = fixture("first-turn");
        let f = from_anthropic(&recorded["body"], RequestContext::default());
        // The session is in `metadata.user_id`, a JSON string.
        assert_eq!(
            f.session.as_deref(),
            recorded["headers"]["X-Claude-Code-Session-Id"].as_str()
        );
        let roles: Vec<&str> = f.messages.iter().map(|m| m.role.as_str()).collect();
        assert_eq!(roles, ["system", "user", "system"]);
        // The reminder Claude Code puts before the prompt is gone.
        assert_eq!(f.messages[1].content, "Fix the typo in main.rs");
        assert!(f.input_tokens > 8000, "{}", f.input_tokens);
        let task: u32 = label(&f, TASK_TOKENS_LABEL).unwrap().parse().unwrap();
        assert!(task < 20, "{task}");
        assert!(!answers_tools(&f.messages));

        let recorded = fixture("tool-result-turn");
        let f = from_anthropic(&recorded["body"], RequestContext::default());
        let roles: Vec<&str> = f.messages.iter().map(|m| m.role.as_str()).collect();
        assert_eq!(
            roles,
            [
                "system",
                "user",
                "system",
                "assistant",
                "tool",
                "assistant",
                "tool"
            ]
        );
        assert!(answers_tools(&f.messages));
        // Tool results are not the user's words.
        assert_eq!(
            label(&f, TASK_TOKENS_LABEL),
            Some(task.to_string().as_str())
        );
    }

    #[test]
    fn sessions_come_from_headers_then_metadata() {
        let mut headers = axum::http::HeaderMap::new();
        assert_eq!(header_session(&headers), None);
        headers.insert("x-claude-code-session-id", "cc-1".parse().unwrap());
        assert_eq!(header_session(&headers).as_deref(), Some("cc-1"));
        headers.insert("x-pointsman-session", "mine".parse().unwrap());
        assert_eq!(header_session(&headers).as_deref(), Some("mine"));
        assert_eq!(
            metadata_session(r#"{"device_id":"d","session_id":"s-9"}"#).as_deref(),
            Some("s-9")
        );
        assert_eq!(metadata_session("user-7").as_deref(), Some("user-7"));
        assert_eq!(
            metadata_session(r#"{"device_id":"d"}"#).as_deref(),
            Some(r#"{"device_id":"d"}"#)
        );
        assert_eq!(metadata_session(" "), None);
    }

    #[test]
    fn reminders_are_cut_out() {
        assert_eq!(without_reminders("plain"), "plain");
        assert_eq!(
            without_reminders("<system-reminder>\nx\n</system-reminder>\nFix it"),
            "Fix it"
        );
        assert_eq!(
            without_reminders("a <system-reminder>x</system-reminder> b <system-reminder>y"),
            "a  b"
        );
    }
}

//! What a router sees of a request: text, token counts, tools, labels.
//!
//! Both wire formats reduce to the same [`Features`], built from the typed
//! request the gateway serves (so what a policy sees is what is sent on),
//! never from raw JSON. The gateway reads a body's bytes
//! ([`Request::from_slice`]); the `pointsman route` command, `policy test`
//! and the offline simulator read a request held in a larger JSON document
//! ([`Request::from_json`]). Both go through the same typed deserializers and
//! checks, so a route printed there is the route the gateway serves. (A key
//! given twice is the one difference: a JSON value keeps only the last, and
//! the gateway refuses such a body.)

use std::hash::Hasher;

use serde_json::Value;

use crate::policy::types::{Features, Message, ResponseFormat, WireApi};
use crate::provider::Request;
use crate::provider::wire::{anthropic, openai};

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

/// Features of a typed request, in its own format.
pub fn of(request: &Request, ctx: RequestContext) -> Features {
    match request {
        Request::OpenAi(r) => from_openai(r, ctx),
        Request::Anthropic(r) => from_anthropic(r, ctx),
    }
}

/// Features of a JSON request body in `format`, as the gateway computes
/// them; an error, as the gateway's 400 would say it, for a body it would
/// refuse ([`Request::from_json`]).
pub fn from_json(
    format: crate::provider::Format,
    body: &Value,
    ctx: RequestContext,
) -> Result<Features, String> {
    Request::from_json(format, body).map(|request| of(&request, ctx))
}

/// Features of an OpenAI chat-completions request.
pub fn from_openai(request: &openai::ChatRequest, ctx: RequestContext) -> Features {
    let metadata = request
        .metadata
        .iter()
        .flatten()
        .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_string())))
        .collect();
    let asked_format = request
        .response_format
        .as_ref()
        .or_else(|| request.extra.get("output_format"));
    build(
        Parts {
            api: WireApi::OpenaiChat,
            model: &request.model,
            messages: openai_messages(&request.messages),
            tools: request.tools.as_deref().map(Tools::OpenAi),
            max_output: request.max_completion_tokens.or(request.max_tokens),
            metadata,
            images: request
                .messages
                .iter()
                .fold(0, |n: u32, m| n.saturating_add(openai_images(m))),
            stream: request.is_stream(),
            temperature: request.temperature,
            response_format: response_format(asked_format),
        },
        ctx,
    )
}

/// Features of an Anthropic messages request.
pub fn from_anthropic(request: &anthropic::MessagesRequest, ctx: RequestContext) -> Features {
    let asked_format = request
        .extra
        .get("response_format")
        .or_else(|| request.extra.get("output_format"));
    anthropic_features(
        AnthropicParts {
            model: &request.model,
            system: request.system.as_ref(),
            messages: &request.messages,
            tools: request.tools.as_deref(),
            metadata: request.metadata.as_ref(),
            max_output: Some(request.max_tokens),
            stream: request.is_stream(),
            temperature: request.temperature,
            asked_format,
        },
        ctx,
    )
}

/// Features of an Anthropic `count_tokens` request: a messages request
/// without its generation parameters.
pub fn from_count_tokens(request: &anthropic::CountTokensRequest, ctx: RequestContext) -> Features {
    anthropic_features(
        AnthropicParts {
            model: &request.model,
            system: request.system.as_ref(),
            messages: &request.messages,
            tools: request.tools.as_deref(),
            metadata: None,
            max_output: None,
            stream: false,
            temperature: None,
            asked_format: None,
        },
        ctx,
    )
}

/// The whole conversation of a request as text, uncut (a policy sees
/// [`Features::messages`], which are cut short). An Anthropic user message
/// that only carries tool results is a `tool` message, as it would be on
/// OpenAI's API: it answers the model, it asks nothing. `<system-reminder>`
/// blocks, which agents add to user messages, are left out.
pub fn conversation(request: &Request) -> Vec<Message> {
    match request {
        Request::OpenAi(r) => openai_messages(&r.messages),
        Request::Anthropic(r) => anthropic_messages(r.system.as_ref(), &r.messages),
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

/// What features are made of, whichever format the request came in.
struct Parts<'a> {
    api: WireApi,
    model: &'a str,
    /// The whole conversation ([`conversation`]).
    messages: Vec<Message>,
    tools: Option<Tools<'a>>,
    max_output: Option<u32>,
    /// The string fields of the request's `metadata`, by key.
    metadata: Vec<(String, String)>,
    images: u32,
    stream: bool,
    temperature: Option<f64>,
    response_format: ResponseFormat,
}

/// Feeds a JSON value to `h`, its kind and length before its contents, so
/// that different values feed different sequences.
fn hash_value(h: &mut dyn Hasher, v: &Value) {
    match v {
        Value::Null => h.write_u8(2),
        Value::Bool(b) => h.write_u8(3 + u8::from(*b)),
        Value::Number(n) => {
            h.write_u8(5);
            match (n.as_u64(), n.as_i64()) {
                (Some(u), _) => h.write_u64(u),
                (None, Some(i)) => h.write_i64(i),
                (None, None) => h.write_u64(n.as_f64().map_or(0, f64::to_bits)),
            }
        }
        Value::String(s) => {
            h.write_u8(6);
            h.write_usize(s.len());
            h.write(s.as_bytes());
        }
        Value::Array(items) => {
            h.write_u8(7);
            h.write_usize(items.len());
            items.iter().for_each(|item| hash_value(h, item));
        }
        Value::Object(map) => hash_map(h, map),
    }
}

fn hash_map(h: &mut dyn Hasher, map: &serde_json::Map<String, Value>) {
    h.write_u8(8);
    h.write_usize(map.len());
    for (key, value) in map {
        h.write_usize(key.len());
        h.write(key.as_bytes());
        hash_value(h, value);
    }
}

/// The tools a request offers, in its format.
#[derive(Clone, Copy)]
enum Tools<'a> {
    OpenAi(&'a [openai::Tool]),
    Anthropic(&'a [anthropic::Tool]),
}

impl Tools<'_> {
    fn len(self) -> usize {
        match self {
            Tools::OpenAi(tools) => tools.len(),
            Tools::Anthropic(tools) => tools.len(),
        }
    }

    /// Feeds everything [`Tools::json`] holds to `h`, without building it.
    /// The tool types are taken apart whole, so a field added to them does
    /// not compile until it is fed here too.
    fn hash(self, h: &mut dyn Hasher) {
        let text = |h: &mut dyn Hasher, s: Option<&str>| match s {
            Some(s) => {
                h.write_u8(1);
                h.write(s.as_bytes());
                h.write_u8(0xff);
            }
            None => h.write_u8(0),
        };
        let value = |h: &mut dyn Hasher, v: Option<&Value>| match v {
            Some(v) => hash_value(h, v),
            None => h.write_u8(0),
        };
        match self {
            Tools::OpenAi(tools) => tools.iter().for_each(|tool| {
                let openai::Tool {
                    kind,
                    function,
                    extra,
                } = tool;
                text(h, Some(kind));
                match function {
                    Some(openai::FunctionDefinition {
                        name,
                        description,
                        parameters,
                        strict,
                        extra,
                    }) => {
                        text(h, Some(name));
                        text(h, description.as_deref());
                        value(h, parameters.as_ref());
                        h.write_u8(strict.map_or(2, u8::from));
                        hash_map(h, extra);
                    }
                    None => h.write_u8(0),
                }
                hash_map(h, extra);
            }),
            Tools::Anthropic(tools) => tools.iter().for_each(|tool| {
                let anthropic::Tool {
                    kind,
                    name,
                    description,
                    input_schema,
                    cache_control,
                    extra,
                } = tool;
                text(h, kind.as_deref());
                text(h, Some(name));
                text(h, description.as_deref());
                value(h, input_schema.as_ref());
                value(h, cache_control.as_ref());
                hash_map(h, extra);
            }),
        }
    }

    /// The schemas as the model is sent them, for counting.
    fn json(self) -> String {
        match self {
            Tools::OpenAi(tools) => serde_json::to_string(tools),
            Tools::Anthropic(tools) => serde_json::to_string(tools),
        }
        .unwrap_or_default()
    }

    /// The names offered (OpenAI's `function.name`, or the `name` of a
    /// newer tool type; Anthropic's `name`), bounded.
    fn names(self) -> Vec<String> {
        let names: Vec<&str> = match self {
            Tools::OpenAi(tools) => tools
                .iter()
                .filter_map(|t| match &t.function {
                    Some(f) => Some(f.name.as_str()),
                    None => t.extra.get("name").and_then(Value::as_str),
                })
                .collect(),
            Tools::Anthropic(tools) => tools.iter().map(|t| t.name.as_str()).collect(),
        };
        names
            .into_iter()
            .take(POLICY_TOOL_NAMES)
            .map(|name| cut(name, POLICY_TOOL_NAME_BYTES).to_string())
            .collect()
    }
}

/// `text` cut to at most `bytes`, on a character boundary.
fn cut(text: &str, bytes: usize) -> &str {
    let mut end = text.len().min(bytes);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

/// The Anthropic request fields features are made of (a messages or a
/// `count_tokens` request).
struct AnthropicParts<'a> {
    model: &'a str,
    system: Option<&'a anthropic::SystemPrompt>,
    messages: &'a [anthropic::Message],
    tools: Option<&'a [anthropic::Tool]>,
    metadata: Option<&'a anthropic::Metadata>,
    max_output: Option<u32>,
    stream: bool,
    temperature: Option<f64>,
    asked_format: Option<&'a Value>,
}

fn anthropic_features(request: AnthropicParts<'_>, ctx: RequestContext) -> Features {
    let mut ctx = ctx;
    let mut metadata = Vec::new();
    if let Some(m) = request.metadata {
        if ctx.session.is_none() {
            ctx.session = m.user_id.as_deref().and_then(metadata_session);
        }
        metadata.extend(
            m.user_id
                .iter()
                .map(|id| ("user_id".to_string(), id.clone())),
        );
        metadata.extend(
            m.extra
                .iter()
                .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_string()))),
        );
        // In key order, as every other metadata object is read.
        metadata.sort_by(|a, b| a.0.cmp(&b.0));
    }
    let system_images = match request.system {
        Some(anthropic::SystemPrompt::Blocks(blocks)) => anthropic_images(blocks),
        _ => 0,
    };
    let images = request.messages.iter().fold(system_images, |n: u32, m| {
        n.saturating_add(match &m.content {
            anthropic::Content::Blocks(blocks) => anthropic_images(blocks),
            anthropic::Content::Text(_) => 0,
        })
    });
    build(
        Parts {
            api: WireApi::AnthropicMessages,
            model: request.model,
            messages: anthropic_messages(request.system, request.messages),
            tools: request.tools.map(Tools::Anthropic),
            max_output: request.max_output,
            metadata,
            images,
            stream: request.stream,
            temperature: request.temperature,
            response_format: response_format(request.asked_format),
        },
        ctx,
    )
}

fn openai_messages(messages: &[openai::ChatMessage]) -> Vec<Message> {
    messages
        .iter()
        .map(|m| {
            let (role, text) = match m {
                openai::ChatMessage::System(m) => ("system", m.content.text()),
                openai::ChatMessage::Developer(m) => ("developer", m.content.text()),
                openai::ChatMessage::User(m) => ("user", m.content.text()),
                openai::ChatMessage::Tool(m) => ("tool", m.content.text()),
                openai::ChatMessage::Assistant(m) => ("assistant", assistant_text(m)),
            };
            Message {
                role: role.into(),
                content: without_reminders(&text).into_owned(),
            }
        })
        .collect()
}

/// An assistant turn's text and its tool calls as JSON, so that routers
/// can see what the agent is doing.
fn assistant_text(message: &openai::AssistantMessage) -> String {
    let mut text = message
        .content
        .as_ref()
        .map(openai::MessageContent::text)
        .unwrap_or_default();
    for call in &message.tool_calls {
        if !text.is_empty() {
            text.push('\n');
        }
        text.push_str(&serde_json::to_string(&call.function).unwrap_or_default());
    }
    text
}

/// Anthropic's top-level system prompt comes first, as a `system` message;
/// user messages of tool results only are `tool` messages, and system
/// messages inside the conversation stay where they are.
fn anthropic_messages(
    system: Option<&anthropic::SystemPrompt>,
    messages: &[anthropic::Message],
) -> Vec<Message> {
    let mut out = Vec::with_capacity(messages.len() + 1);
    let system = match system {
        Some(anthropic::SystemPrompt::Text(text)) => text.clone(),
        Some(anthropic::SystemPrompt::Blocks(blocks)) => anthropic_text(blocks),
        None => String::new(),
    };
    if !system.is_empty() {
        out.push(Message {
            role: "system".into(),
            content: system,
        });
    }
    out.extend(messages.iter().map(|m| {
        let (text, only_results) = match &m.content {
            anthropic::Content::Text(text) => (text.clone(), false),
            anthropic::Content::Blocks(blocks) => (
                anthropic_text(blocks),
                !blocks.is_empty()
                    && blocks
                        .iter()
                        .all(|b| matches!(b, anthropic::ContentBlock::ToolResult(_))),
            ),
        };
        let role = match m.role {
            anthropic::Role::User if only_results => "tool",
            anthropic::Role::User => "user",
            anthropic::Role::Assistant => "assistant",
            anthropic::Role::System => "system",
        };
        Message {
            role: role.into(),
            content: without_reminders(&text).into_owned(),
        }
    }));
    out
}

/// The text of Anthropic blocks: text, tool inputs as JSON, and the text of
/// tool results.
fn anthropic_text(blocks: &[anthropic::ContentBlock]) -> String {
    blocks
        .iter()
        .filter_map(|b| match b {
            anthropic::ContentBlock::Text(t) => Some(t.text.clone()),
            anthropic::ContentBlock::ToolUse(t) => Some(t.input.to_string()),
            anthropic::ContentBlock::ToolResult(r) => Some(match &r.content {
                Some(anthropic::ToolResultContent::Text(text)) => text.clone(),
                Some(anthropic::ToolResultContent::Blocks(blocks)) => anthropic_text(blocks),
                None => String::new(),
            }),
            anthropic::ContentBlock::Other(v) if v["type"] == "text" => {
                v["text"].as_str().map(str::to_string)
            }
            _ => None,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn build(parts: Parts<'_>, ctx: RequestContext) -> Features {
    let messages = parts.messages;
    // Saturating: a body of many huge messages must not wrap around to a
    // small count that a router would take for a cheap request.
    let mut input_tokens: u32 = messages.iter().fold(0, |sum: u32, m| {
        sum.saturating_add(count_tokens(&m.content).saturating_add(TOKENS_PER_MESSAGE))
    });
    if let Some(tools) = parts.tools {
        // Tool schemas are sent to the model as part of the prompt.
        let count = crate::tokens::count_made(|h| tools.hash(h), || tools.json());
        input_tokens = input_tokens.saturating_add(count);
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
    labels.extend(parts.metadata);
    set_label(&mut labels, TASK_TOKENS_LABEL, task_tokens.to_string());
    Features {
        id: ctx.id,
        api: parts.api,
        requested_model: parts.model.to_string(),
        messages,
        message_count,
        input_tokens,
        max_output_tokens: parts.max_output,
        tool_count: parts.tools.map_or(0, |t| t.len() as u32),
        labels,
        session: ctx.session,
        tool_names: parts.tools.map(Tools::names).unwrap_or_default(),
        image_count: parts.images,
        stream: parts.stream,
        temperature: parts.temperature.map(|t| t as f32),
        response_format: parts.response_format,
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

/// Images in an OpenAI message: `image_url` parts, and image parts of
/// types this crate does not model.
fn openai_images(message: &openai::ChatMessage) -> u32 {
    let content = match message {
        openai::ChatMessage::System(m) | openai::ChatMessage::Developer(m) => Some(&m.content),
        openai::ChatMessage::User(m) => Some(&m.content),
        openai::ChatMessage::Tool(m) => Some(&m.content),
        openai::ChatMessage::Assistant(m) => m.content.as_ref(),
    };
    let Some(openai::MessageContent::Parts(parts)) = content else {
        return 0;
    };
    parts.iter().fold(0, |n: u32, p| {
        n.saturating_add(match p {
            openai::ContentPart::ImageUrl(_) => 1,
            openai::ContentPart::Other(v) => unmodelled_images(v),
            _ => 0,
        })
    })
}

/// Images in Anthropic blocks: `image` blocks, also inside tool results.
fn anthropic_images(blocks: &[anthropic::ContentBlock]) -> u32 {
    blocks.iter().fold(0, |n: u32, b| {
        n.saturating_add(match b {
            anthropic::ContentBlock::Image(_) => 1,
            anthropic::ContentBlock::ToolResult(r) => match &r.content {
                Some(anthropic::ToolResultContent::Blocks(blocks)) => anthropic_images(blocks),
                _ => 0,
            },
            anthropic::ContentBlock::Other(v) => unmodelled_images(v),
            _ => 0,
        })
    })
}

/// Images in a part or block of a type the wire types keep verbatim:
/// image types at any depth of its content. Bounded by the body, which is
/// bounded.
fn unmodelled_images(value: &Value) -> u32 {
    match value {
        Value::Array(items) => items
            .iter()
            .fold(0, |n: u32, v| n.saturating_add(unmodelled_images(v))),
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
                .fold(own, |n: u32, v| n.saturating_add(unmodelled_images(v)))
        }
        _ => 0,
    }
}

/// The output format asked: OpenAI's `response_format`, Anthropic's
/// `output_format` (structured outputs).
fn response_format(asked: Option<&Value>) -> ResponseFormat {
    match asked.and_then(|a| a["type"].as_str()) {
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
        let end = cut(&m.content, POLICY_MESSAGE_BYTES).len();
        m.content.truncate(end);
    }
    messages
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
    use crate::provider::Format;
    use serde_json::json;

    fn read_openai(body: &Value, ctx: RequestContext) -> Features {
        from_json(Format::OpenAi, body, ctx).unwrap()
    }

    fn read_anthropic(body: &Value, ctx: RequestContext) -> Features {
        from_json(Format::Anthropic, body, ctx).unwrap()
    }

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
        let f = read_openai(&body, RequestContext::default());
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

    /// Tool schemas are counted as the JSON the model is sent, and a count
    /// remembered for one set of schemas is never used for another.
    #[test]
    fn tool_schemas_are_counted_as_sent_and_told_apart() {
        let tools = |description: &str| {
            json!([{"name": "read_file", "description": "Reads a file.", "input_schema": {
                "type": "object",
                "properties": {"path": {"type": "string", "description": description}},
                "required": ["path"]}}])
        };
        let features = |tools: &Value| {
            let body = json!({"model": "auto", "max_tokens": 10, "tools": tools,
                "messages": [{"role": "user", "content": "hi"}]});
            let request = Request::from_json(crate::provider::Format::Anthropic, &body).unwrap();
            (
                of(&request, RequestContext::default()).input_tokens,
                request,
            )
        };
        let short = tools("The path.");
        let long = tools("The path of the file to read, relative to the repository's root.");
        let (first, request) = features(&short);
        let Request::Anthropic(r) = &request else {
            unreachable!()
        };
        let sent = count_tokens(&serde_json::to_string(r.tools.as_ref().unwrap()).unwrap());
        let message = count_tokens("hi") + TOKENS_PER_MESSAGE;
        assert_eq!(first, sent + message);
        assert_eq!(features(&short).0, first, "remembered");
        assert!(features(&long).0 > first, "another schema, another count");
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
        let f = read_openai(&body, RequestContext::default());
        assert_eq!(f.image_count, 2);
        assert!(f.stream);
        assert_eq!(f.temperature, Some(0.2));
        assert_eq!(f.response_format, ResponseFormat::JsonSchema);
        assert_eq!(f.tool_names[0], "read_file");
        assert_eq!(f.tool_names[1].len(), POLICY_TOOL_NAME_BYTES);
        // Anthropic: images in a message and inside a tool result; a tool
        // input that mentions an image type is the client's data.
        let png = json!({"type": "base64", "media_type": "image/png", "data": "AA=="});
        let body = json!({
            "model": "auto", "max_tokens": 10,
            "tools": [{"name": "look", "input_schema": {}}],
            "messages": [
                {"role": "user", "content": [{"type": "image", "source": png}]},
                {"role": "assistant", "content": [{"type": "tool_use", "id": "1", "name": "look", "input": {"type": "image"}}]},
                {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "1",
                    "content": [{"type": "image", "source": png}]}]}]
        });
        let f = read_anthropic(&body, RequestContext::default());
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
        let f = read_anthropic(&body, RequestContext::default());
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
        let f = read_anthropic(&recorded["body"], RequestContext::default());
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
        let f = read_anthropic(&recorded["body"], RequestContext::default());
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

//! OpenAI Responses requests → OpenAI Chat Completions requests.
//!
//! The gateway serves `/v1/responses` by turning the request into a chat
//! request at the edge, so that routing, plan mode, resilience and pricing
//! work unchanged, and turning the answer back (see
//! [`super::responses_response`] and [`super::stream_to_responses`]).
//!
//! * `instructions` becomes a leading `system` message; `developer` and
//!   `system` items become `system` messages where they stand.
//! * `function_call` items become `tool_calls` of an assistant message
//!   (consecutive calls, and the text before them, share one message);
//!   `function_call_output` items become `tool` messages.
//! * Custom tools (free-form input, such as Codex's `apply_patch` on GPT-5
//!   models) become function tools taking one string, `input`; namespace
//!   tools become functions named `<namespace>__<name>`. The [`ToolMap`]
//!   maps the model's calls back.
//! * Hosted tools (`web_search`, `file_search`, ...) cannot be served by a
//!   chat model: they are left out (the caller reports them), and a
//!   `tool_choice` that forces one is an error.
//! * Reasoning items are dropped: the chat API has no place for earlier
//!   reasoning, and Anthropic would refuse thinking without its signature.
//! * State the API keeps on the server (`previous_response_id`,
//!   `conversation`, `background`, `item_reference` items) is an error:
//!   Pointsman is stateless.

use std::collections::HashMap;

use serde_json::{Map, Value, json};

use super::super::openai::{self, ChatMessage, MessageContent};
use super::super::responses::{
    self, Content, ContentPart, Input, InputItem, ResponsesRequest, Role, Tool,
};

/// Separator between the namespace and the function in a flattened name.
pub const NAMESPACE_SEPARATOR: &str = "__";

/// The one parameter of a custom tool seen as a function.
pub const CUSTOM_INPUT: &str = "input";

/// Why a Responses request cannot be served.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ResponsesError {
    /// The request needs state kept on the server.
    #[error(
        "{0} needs state kept on the server, and Pointsman is stateless: send the whole conversation as `input` items (with `store: false`)"
    )]
    NeedsState(String),
    /// The request uses something a chat model cannot do.
    #[error("{0} is not supported by Pointsman's /v1/responses")]
    Unsupported(String),
    /// The request is malformed.
    #[error("{0}")]
    Invalid(String),
}

/// Where a chat tool came from, to turn its calls back into Responses items.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ToolOrigin {
    /// A function tool of the same name.
    Function,
    /// A function of a namespace tool.
    Namespaced {
        /// The namespace.
        namespace: String,
        /// The function's own name.
        name: String,
    },
    /// A custom tool, whose text travels as the `input` argument.
    Custom,
}

/// The request's tools by the name the chat model sees.
#[derive(Debug, Clone, Default)]
pub struct ToolMap {
    tools: HashMap<String, ToolOrigin>,
}

impl ToolMap {
    /// Where the chat function `name` came from (a plain function if
    /// unknown).
    pub fn origin(&self, name: &str) -> ToolOrigin {
        self.tools
            .get(name)
            .cloned()
            .unwrap_or(ToolOrigin::Function)
    }

    fn chat_name(namespace: Option<&str>, name: &str) -> String {
        match namespace {
            Some(ns) => format!("{ns}{NAMESPACE_SEPARATOR}{name}"),
            None => name.to_string(),
        }
    }
}

/// A translated request.
#[derive(Debug, Clone)]
pub struct Translated {
    /// The chat request.
    pub request: openai::ChatRequest,
    /// How to read the model's tool calls.
    pub tools: ToolMap,
    /// Types of hosted tools that were left out.
    pub dropped_tools: Vec<String>,
}

/// Translates a Responses request into a chat request (see the module docs).
pub fn responses_request_to_chat(req: ResponsesRequest) -> Result<Translated, ResponsesError> {
    if req.previous_response_id.is_some() {
        return Err(ResponsesError::NeedsState("`previous_response_id`".into()));
    }
    if req.conversation.as_ref().is_some_and(|c| !c.is_null()) {
        return Err(ResponsesError::NeedsState("`conversation`".into()));
    }
    if req.background == Some(true) {
        return Err(ResponsesError::NeedsState("`background: true`".into()));
    }
    let (tools, map, dropped) = tools_to_chat(req.tools.unwrap_or_default())?;
    let tool_choice = match req.tool_choice {
        Some(choice) if tools.is_some() => Some(tool_choice_to_chat(choice, &map)?),
        Some(choice) => {
            check_choice_without_tools(&choice, &dropped)?;
            None
        }
        None => None,
    };

    let mut messages = Vec::new();
    if let Some(instructions) = req.instructions.filter(|i| !i.is_empty()) {
        messages.push(system(MessageContent::Text(instructions)));
    }
    match req.input {
        None => {}
        Some(Input::Text(text)) => messages.push(user(MessageContent::Text(text))),
        Some(Input::Items(items)) => {
            for (i, item) in items.into_iter().enumerate() {
                push_item(&mut messages, item).map_err(|e| at_item(e, i))?;
            }
        }
    }
    if !messages.iter().any(|m| {
        matches!(
            m,
            ChatMessage::User(_) | ChatMessage::Assistant(_) | ChatMessage::Tool(_)
        )
    }) {
        return Err(ResponsesError::Invalid(
            "`input` must hold at least one message".into(),
        ));
    }

    let mut extra = Map::new();
    if let Some(effort) = req.reasoning.as_ref().and_then(|r| r.effort.clone()) {
        extra.insert("reasoning_effort".into(), Value::String(effort));
    }
    let stream = req.stream.filter(|s| *s);
    Ok(Translated {
        request: openai::ChatRequest {
            model: req.model,
            messages,
            tools,
            tool_choice,
            stream,
            stream_options: stream.map(|_| openai::StreamOptions {
                include_usage: Some(true),
                extra: Map::new(),
            }),
            max_tokens: req.max_output_tokens,
            temperature: req.temperature,
            top_p: req.top_p,
            user: req.user,
            metadata: req.metadata,
            response_format: req
                .text
                .and_then(|t| t.format)
                .map(text_format_to_chat)
                .transpose()?
                .flatten(),
            parallel_tool_calls: req.parallel_tool_calls.filter(|_| map_has_tools(&map)),
            extra,
            ..openai::ChatRequest::default()
        },
        tools: map,
        dropped_tools: dropped,
    })
}

fn map_has_tools(map: &ToolMap) -> bool {
    !map.tools.is_empty()
}

fn at_item(error: ResponsesError, index: usize) -> ResponsesError {
    match error {
        ResponsesError::Invalid(m) => ResponsesError::Invalid(format!("input[{index}]: {m}")),
        ResponsesError::Unsupported(m) => {
            ResponsesError::Unsupported(format!("input[{index}]: {m}"))
        }
        ResponsesError::NeedsState(m) => ResponsesError::NeedsState(format!("input[{index}]: {m}")),
    }
}

fn system(content: MessageContent) -> ChatMessage {
    ChatMessage::System(openai::SystemMessage {
        content,
        name: None,
        extra: Map::new(),
    })
}

fn user(content: MessageContent) -> ChatMessage {
    ChatMessage::User(openai::UserMessage {
        content,
        name: None,
        extra: Map::new(),
    })
}

/// Appends one input item to the chat messages.
fn push_item(messages: &mut Vec<ChatMessage>, item: InputItem) -> Result<(), ResponsesError> {
    match item {
        InputItem::Message(message) => match message.role {
            Role::User => messages.push(user(content_to_chat(message.content)?)),
            Role::System | Role::Developer => {
                messages.push(system(text_only(message.content, "a system message")?))
            }
            Role::Assistant => {
                let (text, refusal) = assistant_text(message.content)?;
                match messages.last_mut() {
                    // Text after tool calls of the same turn joins them.
                    Some(ChatMessage::Assistant(last)) if last.content.is_none() => {
                        last.content = text.map(MessageContent::Text);
                        last.refusal = refusal;
                    }
                    _ => messages.push(ChatMessage::Assistant(openai::AssistantMessage {
                        content: text.map(MessageContent::Text),
                        refusal,
                        ..Default::default()
                    })),
                }
            }
        },
        InputItem::FunctionCall(call) => {
            let name = ToolMap::chat_name(call.namespace.as_deref(), &call.name);
            push_tool_call(
                messages,
                openai::ToolCall::function(call.call_id, name, call.arguments),
            );
        }
        InputItem::CustomToolCall(call) => {
            let arguments = json!({ CUSTOM_INPUT: call.input }).to_string();
            push_tool_call(
                messages,
                openai::ToolCall::function(call.call_id, call.name, arguments),
            );
        }
        InputItem::FunctionCallOutput(output) | InputItem::CustomToolCallOutput(output) => {
            messages.push(ChatMessage::Tool(openai::ToolMessage {
                content: content_to_chat(output.output)?,
                tool_call_id: output.call_id,
                extra: Map::new(),
            }));
        }
        InputItem::Reasoning(_) => {}
        InputItem::Other(value) => {
            let kind = value
                .get("type")
                .and_then(Value::as_str)
                .unwrap_or("unknown");
            return Err(match kind {
                "item_reference" => ResponsesError::NeedsState("an `item_reference` item".into()),
                kind => ResponsesError::Unsupported(format!("an input item of type `{kind}`")),
            });
        }
    }
    Ok(())
}

/// Adds a tool call to the assistant turn in progress, or starts one.
fn push_tool_call(messages: &mut Vec<ChatMessage>, call: openai::ToolCall) {
    if let Some(ChatMessage::Assistant(last)) = messages.last_mut() {
        last.tool_calls.push(call);
        return;
    }
    messages.push(ChatMessage::Assistant(openai::AssistantMessage {
        tool_calls: vec![call],
        ..Default::default()
    }));
}

/// User or tool content: text and images.
fn content_to_chat(content: Content) -> Result<MessageContent, ResponsesError> {
    let parts = match content {
        Content::Text(text) => return Ok(MessageContent::Text(text)),
        Content::Parts(parts) => parts,
    };
    let mut out = Vec::with_capacity(parts.len());
    for (i, part) in parts.into_iter().enumerate() {
        out.push(match part {
            ContentPart::InputText(p) | ContentPart::OutputText(p) => {
                openai::ContentPart::text(p.text)
            }
            ContentPart::Refusal(p) => openai::ContentPart::text(p.refusal),
            ContentPart::InputImage(image) => image_to_chat(image).map_err(|e| match e {
                ResponsesError::Unsupported(m) => {
                    ResponsesError::Unsupported(format!("content[{i}]: {m}"))
                }
                other => other,
            })?,
            ContentPart::Other(value) => {
                return Err(ResponsesError::Unsupported(format!(
                    "content[{i}]: a content part of type `{}`",
                    value
                        .get("type")
                        .and_then(Value::as_str)
                        .unwrap_or("unknown")
                )));
            }
        });
    }
    // A single text part is sent as a string: the widest-supported form.
    if let [openai::ContentPart::Text(only)] = out.as_slice() {
        return Ok(MessageContent::Text(only.text.clone()));
    }
    Ok(MessageContent::Parts(out))
}

fn image_to_chat(image: responses::ImagePart) -> Result<openai::ContentPart, ResponsesError> {
    let Some(url) = image.image_url else {
        return Err(if image.file_id.is_some() {
            ResponsesError::Unsupported("an image by `file_id` (send it as `image_url`)".into())
        } else {
            ResponsesError::Invalid("an `input_image` part needs `image_url`".into())
        });
    };
    let mut part = openai::ContentPart::image_url(url);
    if let openai::ContentPart::ImageUrl(p) = &mut part {
        p.image_url.detail = image.detail;
    }
    Ok(part)
}

/// The text of a system message; other parts are an error.
fn text_only(content: Content, what: &str) -> Result<MessageContent, ResponsesError> {
    match content {
        Content::Text(text) => Ok(MessageContent::Text(text)),
        Content::Parts(parts) => {
            let mut texts = Vec::with_capacity(parts.len());
            for part in parts {
                match part {
                    ContentPart::InputText(p) | ContentPart::OutputText(p) => texts.push(p.text),
                    _ => {
                        return Err(ResponsesError::Unsupported(format!(
                            "a part other than text in {what}"
                        )));
                    }
                }
            }
            Ok(MessageContent::Text(texts.join("\n\n")))
        }
    }
}

/// An assistant message's text and refusal.
fn assistant_text(content: Content) -> Result<(Option<String>, Option<String>), ResponsesError> {
    match content {
        Content::Text(text) => Ok((Some(text), None)),
        Content::Parts(parts) => {
            let (mut text, mut refusal) = (Vec::new(), None);
            for part in parts {
                match part {
                    ContentPart::OutputText(p) | ContentPart::InputText(p) => text.push(p.text),
                    ContentPart::Refusal(p) => refusal = Some(p.refusal),
                    _ => {
                        return Err(ResponsesError::Unsupported(
                            "a part other than text or refusal in an assistant message".into(),
                        ));
                    }
                }
            }
            Ok(((!text.is_empty()).then(|| text.concat()), refusal))
        }
    }
}

type ChatTools = (Option<Vec<openai::Tool>>, ToolMap, Vec<String>);

/// Function, custom and namespace tools as chat functions; hosted tools
/// left out and listed.
fn tools_to_chat(tools: Vec<Tool>) -> Result<ChatTools, ResponsesError> {
    let mut out = Vec::new();
    let mut map = ToolMap::default();
    let mut dropped = Vec::new();
    for tool in tools {
        add_tool(tool, None, &mut out, &mut map, &mut dropped)?;
    }
    Ok(((!out.is_empty()).then_some(out), map, dropped))
}

fn add_tool(
    tool: Tool,
    namespace: Option<&str>,
    out: &mut Vec<openai::Tool>,
    map: &mut ToolMap,
    dropped: &mut Vec<String>,
) -> Result<(), ResponsesError> {
    match tool {
        Tool::Function(f) => {
            let name = ToolMap::chat_name(namespace, &f.name);
            let origin = match namespace {
                Some(ns) => ToolOrigin::Namespaced {
                    namespace: ns.to_string(),
                    name: f.name.clone(),
                },
                None => ToolOrigin::Function,
            };
            let description = match (namespace, f.description) {
                (Some(ns), Some(d)) => Some(format!("({ns}) {d}")),
                (_, d) => d,
            };
            map.tools.insert(name.clone(), origin);
            out.push(openai::Tool::function(openai::FunctionDefinition {
                name,
                description,
                parameters: Some(
                    f.parameters
                        .unwrap_or_else(|| json!({"type": "object", "properties": {}})),
                ),
                strict: f.strict,
                extra: Map::new(),
            }));
        }
        Tool::Custom(c) => {
            if namespace.is_some() {
                return Err(ResponsesError::Unsupported(
                    "a custom tool inside a namespace".into(),
                ));
            }
            let mut description = c.description.unwrap_or_default();
            if let Some(format) = c.format.as_ref().filter(|f| f["type"] != "text") {
                description.push_str(&format!(
                    "\n\nThe `{CUSTOM_INPUT}` argument must follow this {} grammar:\n{}",
                    format["syntax"].as_str().unwrap_or("formal"),
                    format["definition"].as_str().unwrap_or_default()
                ));
            }
            map.tools.insert(c.name.clone(), ToolOrigin::Custom);
            out.push(openai::Tool::function(openai::FunctionDefinition {
                name: c.name,
                description: Some(description).filter(|d| !d.is_empty()),
                parameters: Some(json!({
                    "type": "object",
                    "properties": {CUSTOM_INPUT: {"type": "string", "description": "The tool's whole input, as free-form text."}},
                    "required": [CUSTOM_INPUT],
                    "additionalProperties": false
                })),
                strict: None,
                extra: Map::new(),
            }));
        }
        Tool::Namespace(ns) => {
            if namespace.is_some() {
                return Err(ResponsesError::Unsupported(
                    "a namespace inside a namespace".into(),
                ));
            }
            for inner in ns.tools {
                add_tool(inner, Some(&ns.name), out, map, dropped)?;
            }
        }
        Tool::Other(value) => {
            let kind = value
                .get("type")
                .and_then(Value::as_str)
                .unwrap_or("unknown");
            tracing::debug!("leaving out the hosted tool `{kind}`: a chat model cannot run it");
            dropped.push(kind.to_string());
        }
    }
    Ok(())
}

/// A `tool_choice` for the chat tools.
fn tool_choice_to_chat(choice: Value, map: &ToolMap) -> Result<openai::ToolChoice, ResponsesError> {
    use openai::{ToolChoice, ToolChoiceMode};
    match &choice {
        Value::String(mode) => match mode.as_str() {
            "auto" => Ok(ToolChoice::Mode(ToolChoiceMode::Auto)),
            "none" => Ok(ToolChoice::Mode(ToolChoiceMode::None)),
            "required" => Ok(ToolChoice::Mode(ToolChoiceMode::Required)),
            other => Err(ResponsesError::Invalid(format!(
                "`tool_choice` must be `auto`, `none`, `required` or an object, got `{other}`"
            ))),
        },
        Value::Object(object) => {
            let kind = object
                .get("type")
                .and_then(Value::as_str)
                .unwrap_or_default();
            match kind {
                "function" | "custom" => {
                    let name = object.get("name").and_then(Value::as_str).ok_or_else(|| {
                        ResponsesError::Invalid(format!(
                            "`tool_choice` of type `{kind}` needs a `name`"
                        ))
                    })?;
                    let namespace = object.get("namespace").and_then(Value::as_str);
                    let name = ToolMap::chat_name(namespace, name);
                    if !map.tools.contains_key(&name) {
                        return Err(ResponsesError::Invalid(format!(
                            "`tool_choice` names `{name}`, which is not among the tools"
                        )));
                    }
                    Ok(ToolChoice::function(name))
                }
                // The chat API's own form for a subset of tools takes the
                // same mode; the subset is not enforced.
                "allowed_tools" => match object.get("mode").and_then(Value::as_str) {
                    Some("required") => Ok(ToolChoice::Mode(ToolChoiceMode::Required)),
                    _ => Ok(ToolChoice::Mode(ToolChoiceMode::Auto)),
                },
                "" => Err(ResponsesError::Invalid(
                    "`tool_choice` needs a `type`".into(),
                )),
                hosted => Err(hosted_choice(hosted)),
            }
        }
        _ => Err(ResponsesError::Invalid(
            "`tool_choice` must be a string or an object".into(),
        )),
    }
}

/// The error for a `tool_choice` that forces a hosted tool.
fn hosted_choice(kind: &str) -> ResponsesError {
    ResponsesError::Unsupported(format!(
        "`tool_choice` forcing the hosted tool `{kind}` (it runs on OpenAI's servers, not on a chat model)"
    ))
}

/// With no servable tools, only a choice that forces none makes sense.
fn check_choice_without_tools(choice: &Value, dropped: &[String]) -> Result<(), ResponsesError> {
    match choice {
        Value::String(mode) if mode == "auto" || mode == "none" => Ok(()),
        Value::String(mode) if mode == "required" => {
            Err(ResponsesError::Invalid(if dropped.is_empty() {
                "`tool_choice: required` needs tools".to_string()
            } else {
                format!(
                    "`tool_choice: required` with only hosted tools ({}), which a chat model cannot run",
                    dropped.join(", ")
                )
            }))
        }
        Value::Object(object) => {
            let kind = object
                .get("type")
                .and_then(Value::as_str)
                .unwrap_or_default();
            match kind {
                "allowed_tools"
                    if object.get("mode").and_then(Value::as_str) != Some("required") =>
                {
                    Ok(())
                }
                "function" | "custom" | "allowed_tools" => Err(ResponsesError::Invalid(format!(
                    "`tool_choice` of type `{kind}` needs a function tool to force"
                ))),
                "" => Err(ResponsesError::Invalid(
                    "`tool_choice` needs a `type`".into(),
                )),
                hosted => Err(hosted_choice(hosted)),
            }
        }
        _ => Err(ResponsesError::Invalid(
            "`tool_choice` must be `auto`, `none`, `required` or an object".into(),
        )),
    }
}

/// `text.format` as a chat `response_format` (`None` for plain text).
fn text_format_to_chat(format: Value) -> Result<Option<Value>, ResponsesError> {
    match format.get("type").and_then(Value::as_str) {
        Some("text") => Ok(None),
        Some("json_object") => Ok(Some(json!({"type": "json_object"}))),
        Some("json_schema") => {
            let mut schema = Map::new();
            for key in ["name", "schema", "strict", "description"] {
                if let Some(v) = format.get(key) {
                    schema.insert(key.into(), v.clone());
                }
            }
            if !schema.contains_key("schema") {
                return Err(ResponsesError::Invalid(
                    "`text.format` of type `json_schema` needs a `schema`".into(),
                ));
            }
            Ok(Some(json!({"type": "json_schema", "json_schema": schema})))
        }
        Some(other) => Err(ResponsesError::Unsupported(format!(
            "`text.format` of type `{other}`"
        ))),
        None => Err(ResponsesError::Invalid(
            "`text.format` needs a `type`".into(),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn translate(body: Value) -> Result<Translated, ResponsesError> {
        responses_request_to_chat(serde_json::from_value(body).expect("a valid request"))
    }

    fn chat(body: Value) -> Value {
        serde_json::to_value(translate(body).expect("translates").request).expect("serializes")
    }

    #[test]
    fn codex_turn_with_tool_results_becomes_a_chat_conversation() {
        let out = chat(json!({
            "model": "auto",
            "instructions": "You are Codex.",
            "input": [
                {"type": "message", "role": "developer", "content": [{"type": "input_text", "text": "sandbox rules"}]},
                {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "Fix the typo in main.rs"}]},
                {"type": "reasoning", "id": "rs_1", "summary": [{"type": "summary_text", "text": "read it"}], "encrypted_content": "opaque"},
                {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "Looking."}]},
                {"type": "function_call", "call_id": "c1", "name": "exec_command", "arguments": "{\"cmd\":\"cat main.rs\"}"},
                {"type": "function_call", "call_id": "c2", "name": "spawn_agent", "namespace": "multi_agent_v1", "arguments": "{}"},
                {"type": "function_call_output", "call_id": "c1", "output": "fn mian() {}"},
                {"type": "function_call_output", "call_id": "c2", "output": [{"type": "input_text", "text": "ok"}]}
            ],
            "tools": [
                {"type": "function", "name": "exec_command", "description": "Runs a command.", "strict": false, "parameters": {"type": "object"}},
                {"type": "namespace", "name": "multi_agent_v1", "description": "agents", "tools": [{"type": "function", "name": "spawn_agent", "parameters": {"type": "object"}}]},
                {"type": "web_search", "external_web_access": false}
            ],
            "tool_choice": "auto",
            "parallel_tool_calls": true,
            "reasoning": {"effort": "high", "summary": "auto"},
            "store": false,
            "stream": true,
            "include": ["reasoning.encrypted_content"],
            "prompt_cache_key": "session-1",
            "max_output_tokens": 500,
            "text": {"format": {"type": "text"}, "verbosity": "low"}
        }));
        assert_eq!(
            out["messages"],
            json!([
                {"role": "system", "content": "You are Codex."},
                {"role": "system", "content": "sandbox rules"},
                {"role": "user", "content": "Fix the typo in main.rs"},
                {"role": "assistant", "content": "Looking.", "tool_calls": [
                    {"id": "c1", "type": "function", "function": {"name": "exec_command", "arguments": "{\"cmd\":\"cat main.rs\"}"}},
                    {"id": "c2", "type": "function", "function": {"name": "multi_agent_v1__spawn_agent", "arguments": "{}"}}
                ]},
                {"role": "tool", "tool_call_id": "c1", "content": "fn mian() {}"},
                {"role": "tool", "tool_call_id": "c2", "content": "ok"}
            ])
        );
        let names: Vec<_> = out["tools"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["function"]["name"].as_str().unwrap())
            .collect();
        assert_eq!(names, ["exec_command", "multi_agent_v1__spawn_agent"]);
        assert_eq!(out["tool_choice"], "auto");
        assert_eq!(out["reasoning_effort"], "high");
        assert_eq!(out["max_tokens"], 500);
        assert_eq!(out["stream_options"], json!({"include_usage": true}));
        assert!(out.get("response_format").is_none());
        assert!(out.get("prompt_cache_key").is_none() && out.get("store").is_none());
    }

    #[test]
    fn the_tool_map_reads_calls_back_and_hosted_tools_are_listed() {
        let out = translate(json!({
            "model": "m", "input": "hi",
            "tools": [
                {"type": "custom", "name": "apply_patch", "description": "Edits files.", "format": {"type": "grammar", "syntax": "lark", "definition": "start: patch"}},
                {"type": "namespace", "name": "ns", "tools": [{"type": "function", "name": "f"}]},
                {"type": "web_search"}, {"type": "file_search"}
            ]
        }))
        .expect("translates");
        assert_eq!(out.tools.origin("apply_patch"), ToolOrigin::Custom);
        assert_eq!(
            out.tools.origin("ns__f"),
            ToolOrigin::Namespaced {
                namespace: "ns".into(),
                name: "f".into()
            }
        );
        assert_eq!(out.tools.origin("other"), ToolOrigin::Function);
        assert_eq!(out.dropped_tools, ["web_search", "file_search"]);
        let tools = out.request.tools.expect("tools");
        let patch = tools[0].function.as_ref().unwrap();
        assert!(
            patch
                .description
                .as_deref()
                .unwrap()
                .contains("start: patch")
        );
        assert_eq!(
            patch.parameters.as_ref().unwrap()["required"],
            json!(["input"])
        );
    }

    #[test]
    fn custom_tool_calls_round_trip_as_input_arguments() {
        let out = chat(json!({"model": "m", "input": [
            {"role": "user", "content": "patch it"},
            {"type": "custom_tool_call", "call_id": "p1", "name": "apply_patch", "input": "*** Begin Patch"},
            {"type": "custom_tool_call_output", "call_id": "p1", "output": "Done!"}
        ]}));
        assert_eq!(
            out["messages"][1]["tool_calls"][0]["function"]["arguments"],
            json!({"input": "*** Begin Patch"}).to_string()
        );
        assert_eq!(
            out["messages"][2],
            json!({"role": "tool", "tool_call_id": "p1", "content": "Done!"})
        );
    }

    #[test]
    fn images_and_formats_are_translated() {
        let out = chat(json!({"model": "m",
            "input": [{"role": "user", "content": [
                {"type": "input_text", "text": "what is it?"},
                {"type": "input_image", "image_url": "data:image/png;base64,iVBO", "detail": "low"}
            ]}],
            "text": {"format": {"type": "json_schema", "name": "answer", "schema": {"type": "object"}, "strict": true}}
        }));
        assert_eq!(
            out["messages"][0]["content"][1]["image_url"],
            json!({"url": "data:image/png;base64,iVBO", "detail": "low"})
        );
        assert_eq!(
            out["response_format"],
            json!({"type": "json_schema", "json_schema": {"name": "answer", "schema": {"type": "object"}, "strict": true}})
        );
    }

    #[test]
    fn state_and_unservable_requests_are_clear_errors() {
        let cases = [
            (
                json!({"model": "m", "input": "hi", "previous_response_id": "resp_1"}),
                "`previous_response_id` needs state",
            ),
            (
                json!({"model": "m", "input": "hi", "conversation": "conv_1"}),
                "`conversation` needs state",
            ),
            (
                json!({"model": "m", "input": [{"type": "item_reference", "id": "msg_1"}]}),
                "input[0]: an `item_reference` item needs state",
            ),
            (
                json!({"model": "m", "input": [{"type": "computer_call_output", "call_id": "x"}]}),
                "input[0]: an input item of type `computer_call_output` is not supported",
            ),
            (
                json!({"model": "m", "input": [{"role": "user", "content": [{"type": "input_file", "file_id": "f"}]}]}),
                "content[0]: a content part of type `input_file`",
            ),
            (
                json!({"model": "m", "input": [{"role": "user", "content": [{"type": "input_image", "file_id": "f"}]}]}),
                "an image by `file_id`",
            ),
            (
                json!({"model": "m", "input": "hi", "tools": [{"type": "web_search"}], "tool_choice": {"type": "web_search"}}),
                "forcing nothing",
            ),
            (
                json!({"model": "m", "input": "hi", "tools": [{"type": "web_search"}], "tool_choice": "required"}),
                "only hosted tools (web_search)",
            ),
            (
                json!({"model": "m", "input": "hi", "tools": [{"type": "function", "name": "f"}], "tool_choice": {"type": "function", "name": "g"}}),
                "names `g`, which is not among the tools",
            ),
            (json!({"model": "m", "input": []}), "at least one message"),
        ];
        for (body, expected) in cases {
            let error = translate(body.clone())
                .expect_err(&body.to_string())
                .to_string();
            if expected == "forcing nothing" {
                assert!(
                    error.contains("forcing the hosted tool `web_search`"),
                    "{error}"
                );
            } else {
                assert!(error.contains(expected), "{body}: {error}");
            }
        }
    }
}

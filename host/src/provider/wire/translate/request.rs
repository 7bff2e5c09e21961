//! Request translation in both directions.
//!
//! Parameters the target API has no place for are dropped rather than
//! forwarded: both APIs reject unknown top-level fields, so a passed-through
//! `top_k` or `seed` would fail the whole request. The `extra` maps are for
//! same-format pass-through only.

use serde_json::{Map, Value, json};

use super::{
    TranslateError, anthropic, arguments_from_tool_input, data_url, openai, parse_data_url,
    sanitize_tool_id, tool_input_from_arguments, unsupported_in_anthropic, unsupported_in_openai,
};
use anthropic::{ContentBlock, Role};
use openai::{ChatMessage, MessageContent};

/// Separator used when several text blocks must become one string (system
/// prompts, tool results); blank lines keep paragraphs apart.
const BLOCK_SEPARATOR: &str = "\n\n";

// ---------------------------------------------------------------------------
// Anthropic → OpenAI
// ---------------------------------------------------------------------------

/// Translates an Anthropic Messages request into an OpenAI Chat Completions
/// request.
///
/// * `system` becomes one leading `system` message; several blocks are
///   joined with blank lines (`cache_control` is dropped: OpenAI caches
///   prefixes automatically). A `system` message inside `messages` stays a
///   `system` message where it is.
/// * `output_config.effort`, or else an `enabled` thinking budget, becomes
///   `reasoning_effort` (see [`reasoning_effort`]); the gateway removes it
///   again for a model whose config does not say `reasoning = true`.
///   Thinking itself (`thinking`), `context_management`, `cache_control`,
///   the other `metadata` fields and the `anthropic-beta` header have no
///   OpenAI equivalent and are dropped, as are tools with `defer_loading`
///   (Claude Code's placeholders for tools it loads through Anthropic's
///   tool search).
/// * In a user message, each `tool_result` becomes a `tool` message, in
///   order and *before* the message's other content, because OpenAI needs
///   tool messages right after the assistant's tool calls. Images inside a
///   tool result (OpenAI tool messages carry text only) move to the user
///   message that follows. `is_error` has no OpenAI equivalent and is
///   dropped.
/// * Assistant text blocks are concatenated; `tool_use` blocks become
///   `tool_calls` with JSON-string arguments; thinking blocks are dropped.
/// * `stop_sequences` → `stop`, `max_tokens` → `max_tokens`,
///   `metadata.user_id` → `user` (Claude Code's JSON form gives its
///   `session_id`), `disable_parallel_tool_use` →
///   `parallel_tool_calls: false`; `top_k` and unknown fields are dropped.
/// * A streamed request asks for `stream_options.include_usage`, so the
///   upstream reports the usage the gateway bills and the client expects.
pub fn anthropic_request_to_openai(
    req: anthropic::MessagesRequest,
) -> Result<openai::ChatRequest, TranslateError> {
    let mut messages = Vec::with_capacity(req.messages.len() + 1);
    if let Some(system) = req.system {
        let text = system_prompt_text(system)?;
        if !text.is_empty() {
            messages.push(system_message(text));
        }
    }
    for message in req.messages {
        match message.role {
            Role::User => push_user_turn(&mut messages, message.content)?,
            Role::Assistant => messages.push(assistant_turn(message.content)?),
            Role::System => {
                let text = system_prompt_text(match message.content {
                    anthropic::Content::Text(text) => anthropic::SystemPrompt::Text(text),
                    anthropic::Content::Blocks(blocks) => anthropic::SystemPrompt::Blocks(blocks),
                })?;
                if !text.is_empty() {
                    messages.push(system_message(text));
                }
            }
        }
    }
    let reasoning_effort = reasoning_effort(req.output_config.as_ref(), req.thinking.as_ref());

    let tools = req
        .tools
        .map(|tools| {
            tools
                .into_iter()
                // Deferred tools are loaded by Anthropic's tool search only;
                // OpenAI would offer them outright.
                .filter(|tool| tool.extra.get("defer_loading") != Some(&Value::Bool(true)))
                .map(tool_to_openai)
                .collect::<Result<Vec<_>, _>>()
        })
        .transpose()?;
    let has_tools = tools.as_ref().is_some_and(|t| !t.is_empty());
    let (tool_choice, parallel_tool_calls) = match req.tool_choice.filter(|_| has_tools) {
        Some(choice) => {
            let (choice, disable_parallel) = tool_choice_to_openai(choice);
            (Some(choice), disable_parallel.map(|disable| !disable))
        }
        None => (None, None),
    };
    let stream_options = req.stream.filter(|s| *s).map(|_| openai::StreamOptions {
        include_usage: Some(true),
        extra: Map::new(),
    });

    Ok(openai::ChatRequest {
        model: req.model,
        messages,
        tools,
        tool_choice,
        stream: req.stream,
        stream_options,
        max_tokens: Some(req.max_tokens),
        temperature: req.temperature,
        top_p: req.top_p,
        stop: req
            .stop_sequences
            .filter(|s| !s.is_empty())
            .map(openai::Stop::Many),
        user: req.metadata.and_then(|m| m.user_id).map(openai_user),
        parallel_tool_calls,
        reasoning_effort,
        ..openai::ChatRequest::default()
    })
}

/// OpenAI's `user` for an Anthropic `metadata.user_id`: Claude Code's is a
/// JSON object as a string (device, account and session ids), of which the
/// session id is what identifies the conversation's user; any other id is
/// kept as it is.
fn openai_user(user_id: String) -> String {
    if user_id.starts_with('{')
        && let Ok(Value::Object(fields)) = serde_json::from_str::<Value>(&user_id)
        && let Some(Value::String(session)) = fields.get("session_id")
        && !session.is_empty()
    {
        return session.clone();
    }
    user_id
}

fn system_message(text: String) -> ChatMessage {
    ChatMessage::System(openai::SystemMessage {
        content: MessageContent::Text(text),
        name: None,
        extra: Map::new(),
    })
}

/// OpenAI's `reasoning_effort` for Anthropic's `output_config.effort` or,
/// without one, a thinking budget: under 4,096 tokens is `low`, under
/// 16,384 `medium`, more `high`. Anthropic's `max` is OpenAI's `high`.
/// Adaptive thinking without an effort leaves the model's default.
fn reasoning_effort(
    output: Option<&anthropic::OutputConfig>,
    thinking: Option<&anthropic::Thinking>,
) -> Option<String> {
    use anthropic::ThinkingMode;
    if let Some(effort) = output.and_then(|o| o.effort.as_deref()) {
        let effort = match effort {
            "low" => "low",
            "medium" => "medium",
            "high" | "max" => "high",
            _ => return None,
        };
        return Some(effort.to_string());
    }
    match thinking.map(anthropic::Thinking::mode)? {
        ThinkingMode::Enabled(Some(budget)) if budget < 4096 => Some("low".into()),
        ThinkingMode::Enabled(Some(budget)) if budget < 16_384 => Some("medium".into()),
        ThinkingMode::Enabled(_) => Some("high".into()),
        ThinkingMode::Adaptive | ThinkingMode::Disabled | ThinkingMode::Unknown => None,
    }
}

fn system_prompt_text(system: anthropic::SystemPrompt) -> Result<String, TranslateError> {
    match system {
        anthropic::SystemPrompt::Text(text) => Ok(text),
        anthropic::SystemPrompt::Blocks(blocks) => {
            let texts = blocks
                .into_iter()
                .map(|block| match block {
                    ContentBlock::Text(text) => Ok(text.text),
                    other => Err(unsupported_in_openai(format!(
                        "system block of type `{}`",
                        block_type(&other)
                    ))),
                })
                .collect::<Result<Vec<_>, _>>()?;
            Ok(texts.join(BLOCK_SEPARATOR))
        }
    }
}

fn push_user_turn(
    messages: &mut Vec<ChatMessage>,
    content: anthropic::Content,
) -> Result<(), TranslateError> {
    let blocks = match content {
        anthropic::Content::Text(text) => {
            messages.push(user_message(MessageContent::Text(text)));
            return Ok(());
        }
        anthropic::Content::Blocks(blocks) => blocks,
    };
    let mut parts = Vec::new();
    for block in blocks {
        match block {
            ContentBlock::Text(text) => parts.push(openai::ContentPart::text(text.text)),
            ContentBlock::Image(image) => parts.push(image_to_openai(image.source)?),
            ContentBlock::ToolResult(result) => {
                let (text, images) = tool_result_to_openai(result.content)?;
                messages.push(ChatMessage::Tool(openai::ToolMessage {
                    content: MessageContent::Text(text),
                    tool_call_id: result.tool_use_id,
                    extra: Map::new(),
                }));
                parts.extend(images);
            }
            // Thinking only occurs in assistant turns; nothing to carry.
            ContentBlock::Thinking(_) | ContentBlock::RedactedThinking(_) => {}
            other => {
                return Err(unsupported_in_openai(format!(
                    "user content block of type `{}`",
                    block_type(&other)
                )));
            }
        }
    }
    match parts.len() {
        0 => {}
        1 if matches!(parts[0], openai::ContentPart::Text(_)) => {
            if let Some(openai::ContentPart::Text(text)) = parts.pop() {
                messages.push(user_message(MessageContent::Text(text.text)));
            }
        }
        _ => messages.push(user_message(MessageContent::Parts(parts))),
    }
    Ok(())
}

fn user_message(content: MessageContent) -> ChatMessage {
    ChatMessage::User(openai::UserMessage {
        content,
        name: None,
        extra: Map::new(),
    })
}

/// A tool result's text, plus its images as parts for the next user message.
fn tool_result_to_openai(
    content: Option<anthropic::ToolResultContent>,
) -> Result<(String, Vec<openai::ContentPart>), TranslateError> {
    let blocks = match content {
        None => return Ok((String::new(), Vec::new())),
        Some(anthropic::ToolResultContent::Text(text)) => return Ok((text, Vec::new())),
        Some(anthropic::ToolResultContent::Blocks(blocks)) => blocks,
    };
    let mut texts = Vec::new();
    let mut images = Vec::new();
    for block in blocks {
        match block {
            ContentBlock::Text(text) => texts.push(text.text),
            ContentBlock::Image(image) => images.push(image_to_openai(image.source)?),
            other => {
                return Err(unsupported_in_openai(format!(
                    "tool_result content block of type `{}`",
                    block_type(&other)
                )));
            }
        }
    }
    Ok((texts.join(BLOCK_SEPARATOR), images))
}

fn image_to_openai(source: anthropic::ImageSource) -> Result<openai::ContentPart, TranslateError> {
    match source {
        anthropic::ImageSource::Base64 { media_type, data } => {
            Ok(openai::ContentPart::image_url(data_url(&media_type, &data)))
        }
        anthropic::ImageSource::Url { url } => Ok(openai::ContentPart::image_url(url)),
        anthropic::ImageSource::Other(source) => Err(unsupported_in_openai(format!(
            "image source of type `{}`",
            source
                .get("type")
                .and_then(Value::as_str)
                .unwrap_or("unknown")
        ))),
    }
}

fn assistant_turn(content: anthropic::Content) -> Result<ChatMessage, TranslateError> {
    let mut text = String::new();
    let mut tool_calls = Vec::new();
    for block in content.into_blocks() {
        match block {
            // Adjacent text blocks of one turn are fragments of one text
            // (citations split them), so they join without a separator —
            // the same text a streaming client would have assembled.
            ContentBlock::Text(block) => text.push_str(&block.text),
            ContentBlock::ToolUse(call) => tool_calls.push(openai::ToolCall::function(
                call.id,
                call.name,
                arguments_from_tool_input(&call.input),
            )),
            ContentBlock::Thinking(_) | ContentBlock::RedactedThinking(_) => {}
            other => {
                return Err(unsupported_in_openai(format!(
                    "assistant content block of type `{}`",
                    block_type(&other)
                )));
            }
        }
    }
    let content = (!text.is_empty() || tool_calls.is_empty()).then_some(MessageContent::Text(text));
    Ok(ChatMessage::Assistant(openai::AssistantMessage {
        content,
        tool_calls,
        ..openai::AssistantMessage::default()
    }))
}

fn tool_to_openai(tool: anthropic::Tool) -> Result<openai::Tool, TranslateError> {
    if !tool.is_custom() {
        return Err(unsupported_in_openai(format!(
            "Anthropic-hosted tool `{}` (type `{}`)",
            tool.name,
            tool.kind.as_deref().unwrap_or_default()
        )));
    }
    Ok(openai::Tool::function(openai::FunctionDefinition {
        name: tool.name,
        description: tool.description,
        parameters: Some(object_schema(tool.input_schema)),
        strict: None,
        extra: Map::new(),
    }))
}

/// The choice, and Anthropic's `disable_parallel_tool_use` if it was set.
fn tool_choice_to_openai(choice: anthropic::ToolChoice) -> (openai::ToolChoice, Option<bool>) {
    use openai::ToolChoiceMode;
    match choice {
        anthropic::ToolChoice::Auto {
            disable_parallel_tool_use,
        } => (
            openai::ToolChoice::Mode(ToolChoiceMode::Auto),
            disable_parallel_tool_use,
        ),
        anthropic::ToolChoice::Any {
            disable_parallel_tool_use,
        } => (
            openai::ToolChoice::Mode(ToolChoiceMode::Required),
            disable_parallel_tool_use,
        ),
        anthropic::ToolChoice::Tool {
            name,
            disable_parallel_tool_use,
        } => (
            openai::ToolChoice::function(name),
            disable_parallel_tool_use,
        ),
        anthropic::ToolChoice::None => (openai::ToolChoice::Mode(ToolChoiceMode::None), None),
    }
}

/// A tool schema both APIs accept: an object schema, `{}` filled in.
fn object_schema(schema: Option<Value>) -> Value {
    match schema {
        Some(Value::Object(mut map)) => {
            map.entry("type").or_insert_with(|| json!("object"));
            Value::Object(map)
        }
        Some(other) => other,
        None => json!({"type": "object", "properties": {}}),
    }
}

fn block_type(block: &ContentBlock) -> &str {
    match block {
        ContentBlock::Text(_) => "text",
        ContentBlock::Image(_) => "image",
        ContentBlock::ToolUse(_) => "tool_use",
        ContentBlock::ToolResult(_) => "tool_result",
        ContentBlock::Thinking(_) => "thinking",
        ContentBlock::RedactedThinking(_) => "redacted_thinking",
        ContentBlock::Other(value) => value
            .get("type")
            .and_then(Value::as_str)
            .unwrap_or("unknown"),
    }
}

// ---------------------------------------------------------------------------
// OpenAI → Anthropic
// ---------------------------------------------------------------------------

/// Translates an OpenAI Chat Completions request into an Anthropic Messages
/// request.
///
/// * All `system` and `developer` messages, wherever they occur, become the
///   top-level `system` (one text block each, in order): Anthropic has no
///   mid-conversation system turn.
/// * `tool` messages become `tool_result` blocks in a user turn; assistant
///   `tool_calls` become `tool_use` blocks with parsed input (arguments
///   that are not a JSON object travel as `{"_raw": "..."}`).
/// * Consecutive messages of the same role are merged into one turn, as
///   Anthropic requires alternation; tool results thus precede the text of
///   a user message that follows them. Empty text is dropped (Anthropic
///   rejects empty text blocks) and a turn left empty disappears.
/// * `max_completion_tokens`, else `max_tokens`, else `default_max_tokens`
///   becomes the required `max_tokens`.
/// * `temperature` is clamped to Anthropic's 0–1; `stop` → `stop_sequences`;
///   `user` → `metadata.user_id`; `parallel_tool_calls: false` →
///   `disable_parallel_tool_use`. `n` other than 1 is an error; penalties,
///   `seed`, `response_format`, `stream_options` and unknown fields are
///   dropped.
/// * Data-URL images become base64 image blocks, other URLs URL sources; a
///   text part's `cache_control` (an OpenRouter-style extension) is kept.
pub fn openai_request_to_anthropic(
    req: openai::ChatRequest,
    default_max_tokens: u32,
) -> Result<anthropic::MessagesRequest, TranslateError> {
    if let Some(n) = req.n.filter(|n| *n != 1) {
        return Err(unsupported_in_anthropic(format!(
            "`n: {n}` (several choices)"
        )));
    }
    let mut system = Vec::new();
    let mut turns: Vec<anthropic::Message> = Vec::with_capacity(req.messages.len());
    for message in req.messages {
        match message {
            ChatMessage::System(m) | ChatMessage::Developer(m) => {
                system.extend(text_blocks(m.content, "system message")?);
            }
            ChatMessage::User(m) => push_turn(&mut turns, Role::User, user_blocks(m.content)?),
            ChatMessage::Assistant(m) => {
                push_turn(&mut turns, Role::Assistant, assistant_blocks(m)?);
            }
            ChatMessage::Tool(m) => {
                push_turn(&mut turns, Role::User, vec![tool_result_block(m)?]);
            }
        }
    }
    if turns.is_empty() {
        return Err(TranslateError::NoMessages);
    }

    let tools = req
        .tools
        .map(|tools| {
            tools
                .into_iter()
                .map(tool_to_anthropic)
                .collect::<Result<Vec<_>, _>>()
        })
        .transpose()?;
    let has_tools = tools.as_ref().is_some_and(|t| !t.is_empty());
    let disable_parallel = (req.parallel_tool_calls == Some(false)).then_some(true);
    let tool_choice = if has_tools {
        tool_choice_to_anthropic(req.tool_choice, disable_parallel)?
    } else {
        None
    };

    Ok(anthropic::MessagesRequest {
        model: req.model,
        max_tokens: req
            .max_completion_tokens
            .or(req.max_tokens)
            .unwrap_or(default_max_tokens),
        messages: turns,
        system: system_prompt(system),
        tools,
        tool_choice,
        stop_sequences: req
            .stop
            .map(openai::Stop::into_vec)
            .filter(|s| !s.is_empty()),
        temperature: req.temperature.map(|t| t.clamp(0.0, 1.0)),
        top_p: req.top_p,
        top_k: None,
        stream: req.stream,
        metadata: req.user.map(|user_id| anthropic::Metadata {
            user_id: Some(user_id),
            extra: Map::new(),
        }),
        thinking: None,
        output_config: None,
        extra: Map::new(),
        betas: None,
    })
}

/// One string stays a string (the common case, and the most compact);
/// anything else is a block list.
fn system_prompt(mut blocks: Vec<ContentBlock>) -> Option<anthropic::SystemPrompt> {
    match blocks.as_slice() {
        [] => None,
        [ContentBlock::Text(text)] if text.cache_control.is_none() && text.extra.is_empty() => {
            match blocks.pop() {
                Some(ContentBlock::Text(text)) => Some(anthropic::SystemPrompt::Text(text.text)),
                _ => None,
            }
        }
        _ => Some(anthropic::SystemPrompt::Blocks(blocks)),
    }
}

/// Appends a turn, merging it into the previous one when the role repeats.
fn push_turn(turns: &mut Vec<anthropic::Message>, role: Role, blocks: Vec<ContentBlock>) {
    if blocks.is_empty() {
        return;
    }
    if let Some(last) = turns.last_mut()
        && last.role == role
    {
        let content = std::mem::replace(&mut last.content, anthropic::Content::Blocks(Vec::new()));
        let mut merged = content.into_blocks();
        merged.extend(blocks);
        last.content = anthropic::Content::Blocks(merged);
        return;
    }
    turns.push(anthropic::Message::new(role, blocks));
}

fn text_block(text: String, cache_control: Option<Value>) -> Option<ContentBlock> {
    (!text.is_empty()).then(|| {
        ContentBlock::Text(anthropic::TextBlock {
            text,
            cache_control,
            extra: Map::new(),
        })
    })
}

/// Text-only content (system and developer messages).
fn text_blocks(content: MessageContent, what: &str) -> Result<Vec<ContentBlock>, TranslateError> {
    let parts = match content {
        MessageContent::Text(text) => return Ok(text_block(text, None).into_iter().collect()),
        MessageContent::Parts(parts) => parts,
    };
    let mut blocks = Vec::with_capacity(parts.len());
    for part in parts {
        match part {
            openai::ContentPart::Text(mut part) => {
                let cache_control = part.extra.remove("cache_control");
                blocks.extend(text_block(part.text, cache_control));
            }
            other => {
                return Err(unsupported_in_anthropic(format!(
                    "content part of type `{}` in a {what}",
                    part_type(&other)
                )));
            }
        }
    }
    Ok(blocks)
}

fn user_blocks(content: MessageContent) -> Result<Vec<ContentBlock>, TranslateError> {
    let parts = match content {
        MessageContent::Text(text) => return Ok(text_block(text, None).into_iter().collect()),
        MessageContent::Parts(parts) => parts,
    };
    let mut blocks = Vec::with_capacity(parts.len());
    for part in parts {
        match part {
            openai::ContentPart::Text(mut part) => {
                let cache_control = part.extra.remove("cache_control");
                blocks.extend(text_block(part.text, cache_control));
            }
            openai::ContentPart::ImageUrl(part) => blocks.push(image_block(part)?),
            other => {
                return Err(unsupported_in_anthropic(format!(
                    "content part of type `{}` in a user message",
                    part_type(&other)
                )));
            }
        }
    }
    Ok(blocks)
}

fn image_block(mut part: openai::ImageUrlPart) -> Result<ContentBlock, TranslateError> {
    let source = match parse_data_url(&part.image_url.url)? {
        Some((media_type, data)) => anthropic::ImageSource::Base64 {
            media_type: media_type.to_owned(),
            data: data.to_owned(),
        },
        None => anthropic::ImageSource::Url {
            url: part.image_url.url,
        },
    };
    Ok(ContentBlock::Image(anthropic::ImageBlock {
        source,
        cache_control: part.extra.remove("cache_control"),
        extra: Map::new(),
    }))
}

fn assistant_blocks(
    message: openai::AssistantMessage,
) -> Result<Vec<ContentBlock>, TranslateError> {
    let mut blocks = Vec::with_capacity(1 + message.tool_calls.len());
    match message.content {
        Some(MessageContent::Parts(parts)) => {
            for part in parts {
                match part {
                    openai::ContentPart::Text(part) => blocks.extend(text_block(part.text, None)),
                    openai::ContentPart::Refusal(part) => {
                        blocks.extend(text_block(part.refusal, None));
                    }
                    other => {
                        return Err(unsupported_in_anthropic(format!(
                            "content part of type `{}` in an assistant message",
                            part_type(&other)
                        )));
                    }
                }
            }
        }
        Some(MessageContent::Text(text)) => blocks.extend(text_block(text, None)),
        None => {}
    }
    if blocks.is_empty()
        && let Some(refusal) = message.refusal
    {
        blocks.extend(text_block(refusal, None));
    }
    for call in message.tool_calls {
        blocks.push(ContentBlock::tool_use(
            sanitize_tool_id(&call.id),
            call.function.name,
            tool_input_from_arguments(&call.function.arguments),
        ));
    }
    Ok(blocks)
}

fn tool_result_block(message: openai::ToolMessage) -> Result<ContentBlock, TranslateError> {
    let content = match message.content {
        MessageContent::Text(text) => {
            (!text.is_empty()).then_some(anthropic::ToolResultContent::Text(text))
        }
        MessageContent::Parts(parts) => {
            let mut blocks = Vec::with_capacity(parts.len());
            for part in parts {
                match part {
                    openai::ContentPart::Text(part) => blocks.extend(text_block(part.text, None)),
                    openai::ContentPart::ImageUrl(part) => blocks.push(image_block(part)?),
                    other => {
                        return Err(unsupported_in_anthropic(format!(
                            "content part of type `{}` in a tool message",
                            part_type(&other)
                        )));
                    }
                }
            }
            (!blocks.is_empty()).then_some(anthropic::ToolResultContent::Blocks(blocks))
        }
    };
    Ok(ContentBlock::ToolResult(anthropic::ToolResultBlock {
        tool_use_id: sanitize_tool_id(&message.tool_call_id).into_owned(),
        // An empty output is sent as no content: Anthropic rejects empty
        // text blocks, and an absent content means the same thing.
        content,
        is_error: None,
        cache_control: None,
        extra: Map::new(),
    }))
}

fn tool_to_anthropic(tool: openai::Tool) -> Result<anthropic::Tool, TranslateError> {
    let Some(function) = tool.function.filter(|_| tool.kind == "function") else {
        return Err(unsupported_in_anthropic(format!(
            "tool of type `{}`",
            tool.kind
        )));
    };
    Ok(anthropic::Tool {
        kind: None,
        name: function.name,
        description: function.description,
        input_schema: Some(object_schema(function.parameters)),
        cache_control: None,
        extra: Map::new(),
    })
}

fn tool_choice_to_anthropic(
    choice: Option<openai::ToolChoice>,
    disable_parallel_tool_use: Option<bool>,
) -> Result<Option<anthropic::ToolChoice>, TranslateError> {
    use openai::ToolChoiceMode;
    Ok(match choice {
        None if disable_parallel_tool_use.is_some() => Some(anthropic::ToolChoice::Auto {
            disable_parallel_tool_use,
        }),
        None => None,
        Some(openai::ToolChoice::Mode(ToolChoiceMode::Auto)) => Some(anthropic::ToolChoice::Auto {
            disable_parallel_tool_use,
        }),
        Some(openai::ToolChoice::Mode(ToolChoiceMode::Required)) => {
            Some(anthropic::ToolChoice::Any {
                disable_parallel_tool_use,
            })
        }
        Some(openai::ToolChoice::Mode(ToolChoiceMode::None)) => Some(anthropic::ToolChoice::None),
        Some(openai::ToolChoice::Function(named)) => Some(anthropic::ToolChoice::Tool {
            name: named.function.name,
            disable_parallel_tool_use,
        }),
        Some(openai::ToolChoice::Other(value)) => {
            return Err(unsupported_in_anthropic(format!(
                "tool_choice of type `{}`",
                value
                    .get("type")
                    .and_then(Value::as_str)
                    .unwrap_or("unknown")
            )));
        }
    })
}

fn part_type(part: &openai::ContentPart) -> &str {
    match part {
        openai::ContentPart::Text(_) => "text",
        openai::ContentPart::ImageUrl(_) => "image_url",
        openai::ContentPart::Refusal(_) => "refusal",
        openai::ContentPart::Other(value) => value
            .get("type")
            .and_then(Value::as_str)
            .unwrap_or("unknown"),
    }
}

#[cfg(test)]
mod tests;

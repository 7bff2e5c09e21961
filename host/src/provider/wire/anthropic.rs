//! Wire types of the Anthropic Messages API (`POST /v1/messages`).
//!
//! As in [`super::openai`], every object keeps unmodelled fields in `extra`
//! and unknown content-block, delta and event types decode to an `Other`
//! variant holding the raw JSON, so Anthropic → Anthropic traffic passes
//! through unchanged while a malformed block of a *known* type is rejected
//! with a message naming it.

use serde::de::Deserializer;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::serde_helpers::{self, Extra, TextOrList};

// ---------------------------------------------------------------------------
// Request
// ---------------------------------------------------------------------------

/// A Messages API request body.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct MessagesRequest {
    /// Model name as the client spelled it.
    pub model: String,
    /// Output-token cap; required by the API.
    pub max_tokens: u32,
    /// The conversation; roles should alternate, starting with `user`.
    pub messages: Vec<Message>,
    /// System prompt.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub system: Option<SystemPrompt>,
    /// Tools the model may call.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tools: Option<Vec<Tool>>,
    /// How the model must use `tools`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_choice: Option<ToolChoice>,
    /// Custom stop sequences.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop_sequences: Option<Vec<String>>,
    /// Sampling temperature, 0–1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub temperature: Option<f64>,
    /// Nucleus sampling mass.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub top_p: Option<f64>,
    /// Top-k sampling.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub top_k: Option<u32>,
    /// Whether to answer with server-sent events.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream: Option<bool>,
    /// Request metadata.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<Metadata>,
    /// Extended thinking: `enabled` with a budget, `adaptive`, `disabled`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub thinking: Option<Thinking>,
    /// Output settings; `effort` is the model's reasoning effort.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_config: Option<OutputConfig>,
    /// Parameters not modelled above (`context_management`,
    /// `service_tier`, ...).
    #[serde(flatten)]
    pub extra: Extra,
    /// The `anthropic-beta` header the request came with, forwarded with it
    /// to Anthropic upstreams (the betas enable some of its fields, such as
    /// `context_management`). Not part of the body.
    #[serde(skip)]
    pub betas: Option<String>,
}

impl MessagesRequest {
    /// Whether the client asked for a streamed answer.
    pub fn is_stream(&self) -> bool {
        self.stream == Some(true)
    }
}

/// A `POST /v1/messages/count_tokens` body: a Messages request without
/// its generation parameters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CountTokensRequest {
    /// Model name.
    pub model: String,
    /// The conversation.
    pub messages: Vec<Message>,
    /// System prompt.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub system: Option<SystemPrompt>,
    /// Tools the model may call.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tools: Option<Vec<Tool>>,
    /// How the model must use `tools`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_choice: Option<ToolChoice>,
    /// Extended thinking.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub thinking: Option<Thinking>,
    /// Fields not modelled above (`context_management`, ...).
    #[serde(flatten)]
    pub extra: Extra,
}

/// The answer to `count_tokens`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CountTokensResponse {
    /// Input tokens the request would use.
    pub input_tokens: u64,
    /// Fields not modelled above (`context_management`, ...).
    #[serde(flatten)]
    pub extra: Extra,
}

/// `thinking`: whether and how the model reasons before answering.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Thinking {
    /// `enabled`, `adaptive` or `disabled`; kept as sent, so that a mode
    /// added later passes through to Anthropic.
    #[serde(rename = "type")]
    pub kind: String,
    /// Tokens the model may think for (`enabled` only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub budget_tokens: Option<u32>,
    /// Fields not modelled above (`display`, ...).
    #[serde(flatten)]
    pub extra: Extra,
}

/// What a [`Thinking`] asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ThinkingMode {
    /// Think, within a token budget (if given).
    Enabled(Option<u32>),
    /// The model decides how much to think.
    Adaptive,
    /// No thinking.
    Disabled,
    /// A mode this version does not know.
    Unknown,
}

impl Thinking {
    /// The mode asked for.
    pub fn mode(&self) -> ThinkingMode {
        match self.kind.as_str() {
            "enabled" => ThinkingMode::Enabled(self.budget_tokens),
            "adaptive" => ThinkingMode::Adaptive,
            "disabled" => ThinkingMode::Disabled,
            _ => ThinkingMode::Unknown,
        }
    }
}

/// `output_config`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct OutputConfig {
    /// Reasoning effort: `low`, `medium`, `high` or `max`; kept as sent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub effort: Option<String>,
    /// Fields not modelled above (`format`, ...).
    #[serde(flatten)]
    pub extra: Extra,
}

/// Request `metadata`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Metadata {
    /// Opaque end-user identifier.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_id: Option<String>,
    /// Fields not modelled above.
    #[serde(flatten)]
    pub extra: Extra,
}

/// `system`: a string or a list of text blocks.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum SystemPrompt {
    /// A plain string.
    Text(String),
    /// Blocks; the API accepts only `text` blocks here (typically carrying
    /// `cache_control`).
    Blocks(Vec<ContentBlock>),
}

impl<'de> Deserialize<'de> for SystemPrompt {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(match serde_helpers::text_or_list(d, "system")? {
            TextOrList::Text(s) => Self::Text(s),
            TextOrList::List(items) => Self::Blocks(serde_helpers::from_list(items, "system")?),
        })
    }
}

/// Who a message is from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// The user (also carries tool results).
    User,
    /// The model.
    Assistant,
    /// Instructions from the agent's harness in the middle of the
    /// conversation (Claude Code sends them with the
    /// `mid-conversation-system` beta); text blocks only.
    System,
}

/// One message of the conversation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Message {
    /// Author.
    pub role: Role,
    /// A string or content blocks.
    pub content: Content,
    /// Fields not modelled above.
    #[serde(flatten)]
    pub extra: Extra,
}

impl Message {
    /// A message made of `blocks`.
    pub fn new(role: Role, blocks: Vec<ContentBlock>) -> Self {
        Self {
            role,
            content: Content::Blocks(blocks),
            extra: Extra::new(),
        }
    }
}

/// Message content: a plain string or a list of blocks.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum Content {
    /// Shorthand for one text block.
    Text(String),
    /// Content blocks.
    Blocks(Vec<ContentBlock>),
}

impl Content {
    /// The content as blocks, turning the string shorthand into a text block.
    pub fn into_blocks(self) -> Vec<ContentBlock> {
        match self {
            Self::Text(text) => vec![ContentBlock::text(text)],
            Self::Blocks(blocks) => blocks,
        }
    }
}

impl<'de> Deserialize<'de> for Content {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(match serde_helpers::text_or_list(d, "content")? {
            TextOrList::Text(s) => Self::Text(s),
            TextOrList::List(items) => Self::Blocks(serde_helpers::from_list(items, "content")?),
        })
    }
}

/// A content block, in requests and responses.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ContentBlock {
    /// Text.
    Text(TextBlock),
    /// An image.
    Image(ImageBlock),
    /// A tool call by the model.
    ToolUse(ToolUseBlock),
    /// The result of a tool call, in a user message.
    ToolResult(ToolResultBlock),
    /// Extended-thinking output; must be sent back verbatim (signature
    /// included) in later turns.
    Thinking(ThinkingBlock),
    /// Encrypted thinking; must be sent back verbatim.
    RedactedThinking(RedactedThinkingBlock),
    /// Any other block type (`document`, `server_tool_use`, ...), verbatim.
    #[serde(untagged)]
    Other(Value),
}

impl ContentBlock {
    /// A text block.
    pub fn text(text: impl Into<String>) -> Self {
        Self::Text(TextBlock::new(text))
    }

    /// A tool-use block.
    pub fn tool_use(id: impl Into<String>, name: impl Into<String>, input: Value) -> Self {
        Self::ToolUse(ToolUseBlock {
            id: id.into(),
            name: name.into(),
            input,
            cache_control: None,
            extra: Extra::new(),
        })
    }
}

/// Mirror of the modelled [`ContentBlock`] variants, decoded strictly.
#[derive(Deserialize)]
#[serde(rename_all = "snake_case")]
enum KnownBlock {
    Text(TextBlock),
    Image(ImageBlock),
    ToolUse(ToolUseBlock),
    ToolResult(ToolResultBlock),
    Thinking(ThinkingBlock),
    RedactedThinking(RedactedThinkingBlock),
}

impl From<KnownBlock> for ContentBlock {
    fn from(block: KnownBlock) -> Self {
        match block {
            KnownBlock::Text(b) => Self::Text(b),
            KnownBlock::Image(b) => Self::Image(b),
            KnownBlock::ToolUse(b) => Self::ToolUse(b),
            KnownBlock::ToolResult(b) => Self::ToolResult(b),
            KnownBlock::Thinking(b) => Self::Thinking(b),
            KnownBlock::RedactedThinking(b) => Self::RedactedThinking(b),
        }
    }
}

impl<'de> Deserialize<'de> for ContentBlock {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        serde_helpers::deserialize_tagged::<D, KnownBlock, Self>(
            d,
            &[
                "text",
                "image",
                "tool_use",
                "tool_result",
                "thinking",
                "redacted_thinking",
            ],
            "content block",
            Self::Other,
        )
    }
}

/// A text block.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TextBlock {
    /// The text.
    pub text: String,
    /// Prompt-caching breakpoint, verbatim.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_control: Option<Value>,
    /// Fields not modelled above (`citations`, ...).
    #[serde(flatten)]
    pub extra: Extra,
}

impl TextBlock {
    /// A text block without cache control.
    pub fn new(text: impl Into<String>) -> Self {
        Self {
            text: text.into(),
            cache_control: None,
            extra: Extra::new(),
        }
    }
}

/// An image block.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ImageBlock {
    /// Where the image bytes come from.
    pub source: ImageSource,
    /// Prompt-caching breakpoint, verbatim.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_control: Option<Value>,
    /// Fields not modelled above.
    #[serde(flatten)]
    pub extra: Extra,
}

/// The `source` of an image block.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ImageSource {
    /// Inline bytes.
    Base64 {
        /// e.g. `image/png`.
        media_type: String,
        /// Base64-encoded bytes.
        data: String,
    },
    /// A URL the API fetches.
    Url {
        /// The image URL.
        url: String,
    },
    /// Another source type (`file`, ...), verbatim.
    #[serde(untagged)]
    Other(Value),
}

/// Mirror of the modelled [`ImageSource`] variants, decoded strictly.
#[derive(Deserialize)]
#[serde(rename_all = "snake_case")]
enum KnownImageSource {
    Base64 { media_type: String, data: String },
    Url { url: String },
}

impl From<KnownImageSource> for ImageSource {
    fn from(source: KnownImageSource) -> Self {
        match source {
            KnownImageSource::Base64 { media_type, data } => Self::Base64 { media_type, data },
            KnownImageSource::Url { url } => Self::Url { url },
        }
    }
}

impl<'de> Deserialize<'de> for ImageSource {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        serde_helpers::deserialize_tagged::<D, KnownImageSource, Self>(
            d,
            &["base64", "url"],
            "image source",
            Self::Other,
        )
    }
}

/// A tool call by the model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ToolUseBlock {
    /// Call id (`toolu_...`), echoed by the matching tool result.
    pub id: String,
    /// Tool name.
    pub name: String,
    /// Arguments, a JSON object.
    pub input: Value,
    /// Prompt-caching breakpoint, verbatim.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_control: Option<Value>,
    /// Fields not modelled above.
    #[serde(flatten)]
    pub extra: Extra,
}

/// The result of a tool call.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ToolResultBlock {
    /// The `id` of the tool-use block this answers.
    pub tool_use_id: String,
    /// Output, as a string or blocks (text, image); may be absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content: Option<ToolResultContent>,
    /// Whether the tool failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub is_error: Option<bool>,
    /// Prompt-caching breakpoint, verbatim.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_control: Option<Value>,
    /// Fields not modelled above.
    #[serde(flatten)]
    pub extra: Extra,
}

/// The content of a tool result.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum ToolResultContent {
    /// Plain text.
    Text(String),
    /// Blocks (text, image, ...).
    Blocks(Vec<ContentBlock>),
}

impl<'de> Deserialize<'de> for ToolResultContent {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(
            match serde_helpers::text_or_list(d, "tool_result content")? {
                TextOrList::Text(s) => Self::Text(s),
                TextOrList::List(items) => {
                    Self::Blocks(serde_helpers::from_list(items, "tool_result content")?)
                }
            },
        )
    }
}

/// Extended-thinking output.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ThinkingBlock {
    /// The reasoning text.
    #[serde(default)]
    pub thinking: String,
    /// Integrity signature; absent on a streamed block's start.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signature: Option<String>,
    /// Fields not modelled above.
    #[serde(flatten)]
    pub extra: Extra,
}

/// Encrypted extended-thinking output.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RedactedThinkingBlock {
    /// Opaque payload.
    pub data: String,
    /// Fields not modelled above.
    #[serde(flatten)]
    pub extra: Extra,
}

/// A tool the model may call.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Tool {
    /// `custom` (or absent) for client tools; a versioned name such as
    /// `web_search_20250305` for Anthropic-hosted tools.
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// Tool name.
    pub name: String,
    /// What the tool does, for the model.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// JSON Schema of the input object; required for client tools, absent
    /// for hosted tools.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input_schema: Option<Value>,
    /// Prompt-caching breakpoint, verbatim.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_control: Option<Value>,
    /// Fields not modelled above.
    #[serde(flatten)]
    pub extra: Extra,
}

impl Tool {
    /// Whether this is a client tool, as opposed to an Anthropic-hosted one.
    pub fn is_custom(&self) -> bool {
        matches!(self.kind.as_deref(), None | Some("custom"))
    }
}

/// `tool_choice`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ToolChoice {
    /// The model decides.
    Auto {
        /// At most one tool call per turn when `true`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        disable_parallel_tool_use: Option<bool>,
    },
    /// Call at least one tool.
    Any {
        /// At most one tool call per turn when `true`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        disable_parallel_tool_use: Option<bool>,
    },
    /// Call the named tool.
    Tool {
        /// Tool name.
        name: String,
        /// At most one tool call per turn when `true`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        disable_parallel_tool_use: Option<bool>,
    },
    /// Never call a tool.
    None,
}

// ---------------------------------------------------------------------------
// Response
// ---------------------------------------------------------------------------

/// A non-streaming Messages API response; also the `message` of a
/// `message_start` event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MessagesResponse {
    /// Message id (`msg_...`).
    #[serde(default, deserialize_with = "serde_helpers::null_default")]
    pub id: String,
    /// Always `message`.
    #[serde(
        rename = "type",
        default = "message_type",
        deserialize_with = "message_type_or_null"
    )]
    pub kind: String,
    /// Always `assistant`.
    #[serde(
        default = "assistant_role",
        deserialize_with = "assistant_role_or_null"
    )]
    pub role: Role,
    /// Model that answered.
    #[serde(default, deserialize_with = "serde_helpers::null_default")]
    pub model: String,
    /// Generated blocks (`null` reads as none).
    #[serde(default, deserialize_with = "serde_helpers::null_default")]
    pub content: Vec<ContentBlock>,
    /// Why generation stopped; explicit `null` in `message_start`.
    #[serde(default)]
    pub stop_reason: Option<StopReason>,
    /// The stop sequence that matched, if any; explicit `null` otherwise.
    #[serde(default)]
    pub stop_sequence: Option<String>,
    /// Token accounting (`null` reads as zero).
    #[serde(default, deserialize_with = "serde_helpers::null_default")]
    pub usage: Usage,
    /// Fields not modelled above.
    #[serde(flatten)]
    pub extra: Extra,
}

impl MessagesResponse {
    /// An empty assistant message, as sent in `message_start`.
    pub fn empty(id: impl Into<String>, model: impl Into<String>, usage: Usage) -> Self {
        Self {
            id: id.into(),
            kind: message_type(),
            role: Role::Assistant,
            model: model.into(),
            content: Vec::new(),
            stop_reason: None,
            stop_sequence: None,
            usage,
            extra: Extra::new(),
        }
    }
}

fn message_type() -> String {
    "message".to_owned()
}

fn assistant_role() -> Role {
    Role::Assistant
}

fn message_type_or_null<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    Ok(Option::<String>::deserialize(d)?.unwrap_or_else(message_type))
}

fn assistant_role_or_null<'de, D: Deserializer<'de>>(d: D) -> Result<Role, D::Error> {
    Ok(Option::<Role>::deserialize(d)?.unwrap_or(Role::Assistant))
}

/// Why generation stopped.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StopReason {
    /// Natural end of turn.
    EndTurn,
    /// `max_tokens` reached.
    MaxTokens,
    /// A custom stop sequence matched.
    StopSequence,
    /// The model called tools.
    ToolUse,
    /// A long-running hosted-tool turn was paused.
    PauseTurn,
    /// The model refused.
    Refusal,
    /// A reason this crate does not know, kept verbatim.
    #[serde(untagged)]
    Other(String),
}

/// Token accounting. `input_tokens` *excludes* cache reads and cache writes.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Usage {
    /// Uncached input tokens (after the last cache breakpoint).
    #[serde(default, deserialize_with = "serde_helpers::token_count")]
    pub input_tokens: u64,
    /// Generated tokens.
    #[serde(default, deserialize_with = "serde_helpers::token_count")]
    pub output_tokens: u64,
    /// Input tokens written to the prompt cache.
    #[serde(
        default,
        deserialize_with = "serde_helpers::opt_token_count",
        skip_serializing_if = "Option::is_none"
    )]
    pub cache_creation_input_tokens: Option<u64>,
    /// Input tokens read from the prompt cache.
    #[serde(
        default,
        deserialize_with = "serde_helpers::opt_token_count",
        skip_serializing_if = "Option::is_none"
    )]
    pub cache_read_input_tokens: Option<u64>,
    /// Fields not modelled above (`service_tier`, `server_tool_use`, ...).
    #[serde(flatten)]
    pub extra: Extra,
}

// ---------------------------------------------------------------------------
// Streaming
// ---------------------------------------------------------------------------

/// One server-sent event of a streamed response; the SSE `event:` name is
/// [`StreamEvent::event_type`].
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum StreamEvent {
    /// First event: the message with empty content.
    MessageStart {
        /// The message shell.
        message: MessagesResponse,
    },
    /// A content block opens.
    ContentBlockStart {
        /// Block position in the message.
        index: u32,
        /// The block with empty text / input.
        content_block: ContentBlock,
    },
    /// A content block grows.
    ContentBlockDelta {
        /// Block position in the message.
        index: u32,
        /// What to append.
        delta: BlockDelta,
    },
    /// A content block is complete.
    ContentBlockStop {
        /// Block position in the message.
        index: u32,
    },
    /// Top-level message changes, with cumulative usage.
    MessageDelta {
        /// Stop reason and sequence.
        delta: MessageDelta,
        /// Cumulative token counts.
        usage: MessageDeltaUsage,
    },
    /// Last event.
    MessageStop,
    /// Keep-alive.
    Ping,
    /// An error in the middle of a stream.
    Error {
        /// The error.
        error: ErrorDetail,
    },
    /// An event type this crate does not know, verbatim.
    #[serde(untagged)]
    Other(Value),
}

impl StreamEvent {
    /// The SSE `event:` name, equal to the JSON `type`.
    pub fn event_type(&self) -> &str {
        match self {
            Self::MessageStart { .. } => "message_start",
            Self::ContentBlockStart { .. } => "content_block_start",
            Self::ContentBlockDelta { .. } => "content_block_delta",
            Self::ContentBlockStop { .. } => "content_block_stop",
            Self::MessageDelta { .. } => "message_delta",
            Self::MessageStop => "message_stop",
            Self::Ping => "ping",
            Self::Error { .. } => "error",
            Self::Other(value) => value
                .get("type")
                .and_then(Value::as_str)
                .unwrap_or("unknown"),
        }
    }
}

/// Mirror of the modelled [`StreamEvent`] variants, decoded strictly.
#[derive(Deserialize)]
#[serde(rename_all = "snake_case")]
enum KnownEvent {
    MessageStart {
        message: MessagesResponse,
    },
    ContentBlockStart {
        #[serde(default, deserialize_with = "serde_helpers::lenient_u32")]
        index: u32,
        content_block: ContentBlock,
    },
    ContentBlockDelta {
        #[serde(default, deserialize_with = "serde_helpers::lenient_u32")]
        index: u32,
        delta: BlockDelta,
    },
    ContentBlockStop {
        #[serde(default, deserialize_with = "serde_helpers::lenient_u32")]
        index: u32,
    },
    MessageDelta {
        #[serde(default, deserialize_with = "serde_helpers::null_default")]
        delta: MessageDelta,
        #[serde(default, deserialize_with = "serde_helpers::null_default")]
        usage: MessageDeltaUsage,
    },
    MessageStop {},
    Ping {},
    Error {
        error: ErrorDetail,
    },
}

impl From<KnownEvent> for StreamEvent {
    fn from(event: KnownEvent) -> Self {
        match event {
            KnownEvent::MessageStart { message } => Self::MessageStart { message },
            KnownEvent::ContentBlockStart {
                index,
                content_block,
            } => Self::ContentBlockStart {
                index,
                content_block,
            },
            KnownEvent::ContentBlockDelta { index, delta } => {
                Self::ContentBlockDelta { index, delta }
            }
            KnownEvent::ContentBlockStop { index } => Self::ContentBlockStop { index },
            KnownEvent::MessageDelta { delta, usage } => Self::MessageDelta { delta, usage },
            KnownEvent::MessageStop {} => Self::MessageStop,
            KnownEvent::Ping {} => Self::Ping,
            KnownEvent::Error { error } => Self::Error { error },
        }
    }
}

impl<'de> Deserialize<'de> for StreamEvent {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        serde_helpers::deserialize_tagged::<D, KnownEvent, Self>(
            d,
            &[
                "message_start",
                "content_block_start",
                "content_block_delta",
                "content_block_stop",
                "message_delta",
                "message_stop",
                "ping",
                "error",
            ],
            "stream event",
            Self::Other,
        )
    }
}

/// The `delta` of a `content_block_delta` event.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum BlockDelta {
    /// Text to append to a text block.
    TextDelta {
        /// The text.
        text: String,
    },
    /// A piece of a tool-use block's JSON input, to concatenate.
    InputJsonDelta {
        /// The JSON fragment.
        partial_json: String,
    },
    /// Text to append to a thinking block.
    ThinkingDelta {
        /// The reasoning text.
        thinking: String,
    },
    /// A thinking block's signature, sent just before it stops.
    SignatureDelta {
        /// The signature.
        signature: String,
    },
    /// Another delta type (`citations_delta`, ...), verbatim.
    #[serde(untagged)]
    Other(Value),
}

/// Mirror of the modelled [`BlockDelta`] variants, decoded strictly.
#[derive(Deserialize)]
enum KnownDelta {
    #[serde(rename = "text_delta")]
    Text { text: String },
    #[serde(rename = "input_json_delta")]
    InputJson { partial_json: String },
    #[serde(rename = "thinking_delta")]
    Thinking { thinking: String },
    #[serde(rename = "signature_delta")]
    Signature { signature: String },
}

impl From<KnownDelta> for BlockDelta {
    fn from(delta: KnownDelta) -> Self {
        match delta {
            KnownDelta::Text { text } => Self::TextDelta { text },
            KnownDelta::InputJson { partial_json } => Self::InputJsonDelta { partial_json },
            KnownDelta::Thinking { thinking } => Self::ThinkingDelta { thinking },
            KnownDelta::Signature { signature } => Self::SignatureDelta { signature },
        }
    }
}

impl<'de> Deserialize<'de> for BlockDelta {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        serde_helpers::deserialize_tagged::<D, KnownDelta, Self>(
            d,
            &[
                "text_delta",
                "input_json_delta",
                "thinking_delta",
                "signature_delta",
            ],
            "content block delta",
            Self::Other,
        )
    }
}

/// The `delta` of a `message_delta` event.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct MessageDelta {
    /// Why generation stopped; explicit `null` if unknown.
    #[serde(default)]
    pub stop_reason: Option<StopReason>,
    /// The stop sequence that matched; explicit `null` otherwise.
    #[serde(default)]
    pub stop_sequence: Option<String>,
    /// Fields not modelled above.
    #[serde(flatten)]
    pub extra: Extra,
}

/// The `usage` of a `message_delta` event. Counts are cumulative for the
/// whole message, not increments; the input-side counts are only sent by
/// newer API versions.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct MessageDeltaUsage {
    /// Generated tokens so far.
    #[serde(default, deserialize_with = "serde_helpers::token_count")]
    pub output_tokens: u64,
    /// Uncached input tokens.
    #[serde(
        default,
        deserialize_with = "serde_helpers::opt_token_count",
        skip_serializing_if = "Option::is_none"
    )]
    pub input_tokens: Option<u64>,
    /// Input tokens written to the prompt cache.
    #[serde(
        default,
        deserialize_with = "serde_helpers::opt_token_count",
        skip_serializing_if = "Option::is_none"
    )]
    pub cache_creation_input_tokens: Option<u64>,
    /// Input tokens read from the prompt cache.
    #[serde(
        default,
        deserialize_with = "serde_helpers::opt_token_count",
        skip_serializing_if = "Option::is_none"
    )]
    pub cache_read_input_tokens: Option<u64>,
    /// Fields not modelled above.
    #[serde(flatten)]
    pub extra: Extra,
}

// ---------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------

/// An error response body: `{"type":"error","error":{...}}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ErrorBody {
    /// Always `error`.
    #[serde(rename = "type", default = "error_type")]
    pub kind: String,
    /// The error.
    pub error: ErrorDetail,
    /// Fields not modelled above (`request_id`, ...).
    #[serde(flatten)]
    pub extra: Extra,
}

impl ErrorBody {
    /// An error body of type `kind`.
    pub fn new(kind: ErrorType, message: impl Into<String>) -> Self {
        Self {
            kind: error_type(),
            error: ErrorDetail {
                kind,
                message: message.into(),
                extra: Extra::new(),
            },
            extra: Extra::new(),
        }
    }
}

fn error_type() -> String {
    "error".to_owned()
}

/// The `error` object of an error body or `error` event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ErrorDetail {
    /// Error category.
    #[serde(rename = "type")]
    pub kind: ErrorType,
    /// Human-readable message.
    #[serde(default)]
    pub message: String,
    /// Fields not modelled above.
    #[serde(flatten)]
    pub extra: Extra,
}

/// Error categories, each tied to one HTTP status.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorType {
    /// 400.
    InvalidRequestError,
    /// 401.
    AuthenticationError,
    /// 403.
    PermissionError,
    /// 404.
    NotFoundError,
    /// 413.
    RequestTooLarge,
    /// 429.
    RateLimitError,
    /// 500.
    ApiError,
    /// 529.
    OverloadedError,
    /// A category this crate does not know, kept verbatim.
    #[serde(untagged)]
    Other(String),
}

impl ErrorType {
    /// The HTTP status Anthropic answers with for this category (500 for
    /// unknown ones).
    pub fn http_status(&self) -> u16 {
        match self {
            Self::InvalidRequestError => 400,
            Self::AuthenticationError => 401,
            Self::PermissionError => 403,
            Self::NotFoundError => 404,
            Self::RequestTooLarge => 413,
            Self::RateLimitError => 429,
            Self::ApiError | Self::Other(_) => 500,
            Self::OverloadedError => 529,
        }
    }

    /// The category for an HTTP error status from any upstream. Unknown 4xx
    /// become `invalid_request_error`, unknown 5xx `api_error`; 503 becomes
    /// `overloaded_error` because that is what OpenAI-style upstreams mean
    /// by it and it keeps Anthropic clients retrying.
    pub fn from_http_status(status: u16) -> Self {
        match status {
            401 => Self::AuthenticationError,
            403 => Self::PermissionError,
            404 => Self::NotFoundError,
            413 => Self::RequestTooLarge,
            429 => Self::RateLimitError,
            503 | 529 => Self::OverloadedError,
            400..=499 => Self::InvalidRequestError,
            _ => Self::ApiError,
        }
    }

    /// The wire string.
    pub fn as_str(&self) -> &str {
        match self {
            Self::InvalidRequestError => "invalid_request_error",
            Self::AuthenticationError => "authentication_error",
            Self::PermissionError => "permission_error",
            Self::NotFoundError => "not_found_error",
            Self::RequestTooLarge => "request_too_large",
            Self::RateLimitError => "rate_limit_error",
            Self::ApiError => "api_error",
            Self::OverloadedError => "overloaded_error",
            Self::Other(s) => s,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn roundtrip<T: Serialize + for<'de> Deserialize<'de>>(value: Value) -> (T, Value) {
        let typed: T = serde_json::from_value(value).expect("deserialize");
        let back = serde_json::to_value(&typed).expect("serialize");
        (typed, back)
    }

    #[test]
    fn request_with_every_modelled_field_roundtrips() {
        let body = json!({
            "model": "claude-sonnet-4-5",
            "max_tokens": 1024,
            "system": [
                {"type": "text", "text": "You are Claude Code.", "cache_control": {"type": "ephemeral"}},
                {"type": "text", "text": "Be terse."}
            ],
            "messages": [
                {"role": "user", "content": "hi"},
                {"role": "assistant", "content": [
                    {"type": "thinking", "thinking": "hmm", "signature": "sig"},
                    {"type": "redacted_thinking", "data": "xyz"},
                    {"type": "text", "text": "Let me look."},
                    {"type": "tool_use", "id": "toolu_1", "name": "read", "input": {"path": "a.rs"}}
                ]},
                {"role": "user", "content": [
                    {"type": "tool_result", "tool_use_id": "toolu_1", "content": [
                        {"type": "text", "text": "fn main() {}"},
                        {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBO"}}
                    ], "is_error": false, "cache_control": {"type": "ephemeral"}},
                    {"type": "image", "source": {"type": "url", "url": "https://x/y.png"}},
                    {"type": "document", "source": {"type": "text", "media_type": "text/plain", "data": "doc"}}
                ]}
            ],
            "tools": [
                {"name": "read", "description": "reads", "input_schema": {"type": "object"}},
                {"type": "web_search_20250305", "name": "web_search", "max_uses": 3}
            ],
            "tool_choice": {"type": "auto", "disable_parallel_tool_use": true},
            "stop_sequences": ["END"],
            "temperature": 0.2,
            "top_p": 0.9,
            "top_k": 40,
            "stream": true,
            "metadata": {"user_id": "u1"},
            "thinking": {"type": "enabled", "budget_tokens": 2048}
        });
        let (req, back): (MessagesRequest, _) = roundtrip(body.clone());
        assert_eq!(back, body);
        assert!(req.is_stream());
        assert_eq!(
            req.thinking.as_ref().map(Thinking::mode),
            Some(ThinkingMode::Enabled(Some(2048)))
        );
        let Content::Blocks(blocks) = &req.messages[2].content else {
            panic!("expected blocks");
        };
        assert!(matches!(blocks[0], ContentBlock::ToolResult(_)));
        assert!(matches!(blocks[2], ContentBlock::Other(_)));
        let tools = req.tools.expect("tools");
        assert!(tools[0].is_custom());
        assert!(!tools[1].is_custom());
    }

    #[test]
    fn tool_choice_variants_roundtrip() {
        for body in [
            json!({"type": "auto"}),
            json!({"type": "any", "disable_parallel_tool_use": false}),
            json!({"type": "tool", "name": "read"}),
            json!({"type": "none"}),
        ] {
            let (_, back): (ToolChoice, _) = roundtrip(body.clone());
            assert_eq!(back, body);
        }
    }

    #[test]
    fn malformed_known_block_is_an_error_not_other() {
        let err = serde_json::from_value::<Message>(json!({
            "role": "assistant", "content": [{"type": "text", "text": "a"}, {"type": "tool_use", "name": "x", "input": {}}]
        }))
        .expect_err("tool_use without id must fail")
        .to_string();
        assert!(
            err.contains("content[1]") && err.contains("tool_use") && err.contains("id"),
            "{err}"
        );

        let err =
            serde_json::from_value::<Message>(json!({"role": "user", "content": [{"text": "a"}]}))
                .expect_err("block without type must fail")
                .to_string();
        assert!(err.contains("string `type`"), "{err}");

        let err = serde_json::from_value::<MessagesRequest>(json!({"model": "m", "messages": []}))
            .expect_err("max_tokens is required")
            .to_string();
        assert!(err.contains("max_tokens"), "{err}");
    }

    #[test]
    fn response_roundtrips_with_explicit_nulls() {
        let body = json!({
            "id": "msg_1", "type": "message", "role": "assistant", "model": "claude",
            "content": [{"type": "text", "text": "hi", "citations": null}],
            "stop_reason": "end_turn", "stop_sequence": null,
            "usage": {"input_tokens": 10, "output_tokens": 2, "cache_creation_input_tokens": 0,
                      "cache_read_input_tokens": 5, "service_tier": "standard"}
        });
        let (resp, back): (MessagesResponse, _) = roundtrip(body.clone());
        assert_eq!(back, body);
        assert_eq!(resp.stop_reason, Some(StopReason::EndTurn));
        assert_eq!(resp.usage.cache_read_input_tokens, Some(5));
    }

    #[test]
    fn answers_with_null_and_stringly_fields_are_read() {
        let resp: MessagesResponse = serde_json::from_value(json!({
            "id": "msg_1", "type": null, "role": null, "model": "claude", "content": null,
            "stop_reason": null, "usage": {"input_tokens": "10", "output_tokens": 2.0,
                "cache_creation_input_tokens": null, "cache_read_input_tokens": "5"}
        }))
        .expect("tolerated");
        assert_eq!(
            (resp.kind.as_str(), resp.role),
            ("message", Role::Assistant)
        );
        assert!(resp.content.is_empty());
        assert_eq!(resp.usage.input_tokens, 10);
        assert_eq!(resp.usage.cache_read_input_tokens, Some(5));
        let resp: MessagesResponse =
            serde_json::from_value(json!({"id": "m", "model": "c", "usage": null}))
                .expect("null usage");
        assert_eq!(resp.usage, Usage::default());
        let event: StreamEvent = serde_json::from_value(json!({
            "type": "message_delta", "delta": {"stop_reason": "end_turn"}, "usage": null
        }))
        .expect("null delta usage");
        assert!(matches!(event, StreamEvent::MessageDelta { .. }));
    }

    #[test]
    fn stream_events_roundtrip() {
        let events = [
            json!({"type": "message_start", "message": {"id": "msg_1", "type": "message", "role": "assistant",
                   "model": "claude", "content": [], "stop_reason": null, "stop_sequence": null,
                   "usage": {"input_tokens": 3, "output_tokens": 1}}}),
            json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}),
            json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Hi"}}),
            json!({"type": "content_block_start", "index": 1, "content_block":
                   {"type": "tool_use", "id": "toolu_1", "name": "f", "input": {}}}),
            json!({"type": "content_block_delta", "index": 1, "delta": {"type": "input_json_delta", "partial_json": "{\"a\""}}),
            json!({"type": "content_block_delta", "index": 2, "delta": {"type": "thinking_delta", "thinking": "x"}}),
            json!({"type": "content_block_delta", "index": 2, "delta": {"type": "signature_delta", "signature": "s"}}),
            json!({"type": "content_block_delta", "index": 0, "delta": {"type": "citations_delta", "citation": {}}}),
            json!({"type": "content_block_stop", "index": 1}),
            json!({"type": "message_delta", "delta": {"stop_reason": "tool_use", "stop_sequence": null},
                   "usage": {"output_tokens": 15}}),
            json!({"type": "message_stop"}),
            json!({"type": "ping"}),
            json!({"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}),
            json!({"type": "brand_new_event", "x": 1}),
        ];
        for body in events {
            let (event, back): (StreamEvent, _) = roundtrip(body.clone());
            assert_eq!(back, body);
            assert_eq!(event.event_type(), body["type"]);
        }
    }

    #[test]
    fn error_body_roundtrips_and_maps_status() {
        let body = json!({"type": "error", "error": {"type": "rate_limit_error", "message": "slow down"},
                          "request_id": "req_1"});
        let (err, back): (ErrorBody, _) = roundtrip(body.clone());
        assert_eq!(back, body);
        assert_eq!(err.error.kind.http_status(), 429);
        for (kind, status) in [
            (ErrorType::InvalidRequestError, 400),
            (ErrorType::AuthenticationError, 401),
            (ErrorType::PermissionError, 403),
            (ErrorType::NotFoundError, 404),
            (ErrorType::RequestTooLarge, 413),
            (ErrorType::RateLimitError, 429),
            (ErrorType::ApiError, 500),
            (ErrorType::OverloadedError, 529),
        ] {
            assert_eq!(kind.http_status(), status);
            assert_eq!(ErrorType::from_http_status(status), kind);
            assert_eq!(
                serde_json::to_value(&kind).expect("serialize"),
                kind.as_str()
            );
        }
        assert_eq!(
            ErrorType::from_http_status(422),
            ErrorType::InvalidRequestError
        );
        assert_eq!(ErrorType::from_http_status(503), ErrorType::OverloadedError);
        assert_eq!(ErrorType::from_http_status(502), ErrorType::ApiError);
        let (other, _): (ErrorType, _) = roundtrip(json!("billing_error"));
        assert_eq!(other.as_str(), "billing_error");
    }
}

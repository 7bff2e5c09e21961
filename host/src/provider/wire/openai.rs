//! Wire types of the OpenAI Chat Completions API (`POST /v1/chat/completions`).
//!
//! Every object type keeps the fields it does not model in `extra`, flattened
//! back on output, so a request or response routed OpenAI → OpenAI passes
//! through unchanged even when OpenAI adds parameters this crate has not
//! heard of. Optional fields are omitted when absent, except where OpenAI
//! itself always sends an explicit `null` (`content`, `finish_reason`) and
//! clients may rely on the key being present.

use serde::de::{Deserializer, Error as _};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::serde_helpers::{self, Extra, TextOrList};

/// `object` value of a non-streaming completion.
pub const OBJECT_COMPLETION: &str = "chat.completion";
/// `object` value of a streaming chunk.
pub const OBJECT_CHUNK: &str = "chat.completion.chunk";

// ---------------------------------------------------------------------------
// Request
// ---------------------------------------------------------------------------

/// A Chat Completions request body.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ChatRequest {
    /// Model name as the client spelled it.
    pub model: String,
    /// The conversation, oldest first.
    pub messages: Vec<ChatMessage>,
    /// Functions the model may call; `None` keeps an explicit `[]` distinct
    /// from an absent field.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tools: Option<Vec<Tool>>,
    /// How the model must use `tools`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_choice: Option<ToolChoice>,
    /// Whether to answer with server-sent events.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream: Option<bool>,
    /// Streaming options, only meaningful with `stream: true`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream_options: Option<StreamOptions>,
    /// Legacy output-token cap (rejected by OpenAI reasoning models).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_tokens: Option<u32>,
    /// Output-token cap, including reasoning tokens.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_completion_tokens: Option<u32>,
    /// Sampling temperature, 0–2.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub temperature: Option<f64>,
    /// Nucleus sampling mass.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub top_p: Option<f64>,
    /// Up to four stop sequences.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop: Option<Stop>,
    /// Number of choices to generate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub n: Option<u32>,
    /// Presence penalty, −2–2.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub presence_penalty: Option<f64>,
    /// Frequency penalty, −2–2.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub frequency_penalty: Option<f64>,
    /// Best-effort determinism seed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seed: Option<i64>,
    /// End-user identifier.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// Free-form string metadata.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<Extra>,
    /// Output format (`text`, `json_object`, `json_schema`), kept verbatim.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response_format: Option<Value>,
    /// Whether the model may emit several tool calls in one turn.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parallel_tool_calls: Option<bool>,
    /// How hard a reasoning model thinks (`minimal`, `low`, `medium`,
    /// `high`, ...), kept as sent; models without reasoning reject it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reasoning_effort: Option<String>,
    /// Parameters not modelled above.
    #[serde(flatten)]
    pub extra: Extra,
}

impl ChatRequest {
    /// Whether the client asked for a streamed answer.
    pub fn is_stream(&self) -> bool {
        self.stream == Some(true)
    }

    /// Whether a streamed answer must end with a usage chunk.
    pub fn include_usage(&self) -> bool {
        self.stream_options
            .as_ref()
            .and_then(|o| o.include_usage)
            .unwrap_or(false)
    }
}

/// `stream_options` of a request.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct StreamOptions {
    /// Ask for a final chunk with empty `choices` and the request's usage.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub include_usage: Option<bool>,
    /// Options not modelled above.
    #[serde(flatten)]
    pub extra: Extra,
}

/// `stop`: one string or a list of strings.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum Stop {
    /// A single stop sequence.
    One(String),
    /// Several stop sequences.
    Many(Vec<String>),
}

impl Stop {
    /// The stop sequences as a list, whichever shape was sent.
    pub fn into_vec(self) -> Vec<String> {
        match self {
            Self::One(s) => vec![s],
            Self::Many(v) => v,
        }
    }
}

impl<'de> Deserialize<'de> for Stop {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(match serde_helpers::text_or_list(d, "stop")? {
            TextOrList::Text(s) => Self::One(s),
            TextOrList::List(items) => Self::Many(serde_helpers::from_list(items, "stop")?),
        })
    }
}

/// One message of the conversation, tagged by `role`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "role", rename_all = "snake_case")]
pub enum ChatMessage {
    /// Instructions from the application.
    System(SystemMessage),
    /// Instructions from the application (newer name for `system`, used by
    /// reasoning models).
    Developer(SystemMessage),
    /// A user turn.
    User(UserMessage),
    /// An earlier model turn, possibly with tool calls.
    Assistant(AssistantMessage),
    /// The result of one tool call.
    Tool(ToolMessage),
}

/// Body of a `system` or `developer` message.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SystemMessage {
    /// Text, as a string or text parts.
    pub content: MessageContent,
    /// Optional participant name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Fields not modelled above.
    #[serde(flatten)]
    pub extra: Extra,
}

/// Body of a `user` message.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UserMessage {
    /// Text and images.
    pub content: MessageContent,
    /// Optional participant name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Fields not modelled above.
    #[serde(flatten)]
    pub extra: Extra,
}

/// Body of an `assistant` message.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct AssistantMessage {
    /// Text; `null` when the turn only called tools. Serialized as an
    /// explicit `null` because several OpenAI-compatible servers reject an
    /// assistant message without a `content` key.
    #[serde(default)]
    pub content: Option<MessageContent>,
    /// Optional participant name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Tool calls made in this turn; omitted when empty because OpenAI
    /// rejects `"tool_calls": []`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tool_calls: Vec<ToolCall>,
    /// A refusal message, when the model refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refusal: Option<String>,
    /// Fields not modelled above.
    #[serde(flatten)]
    pub extra: Extra,
}

/// Body of a `tool` message.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ToolMessage {
    /// The tool's output.
    pub content: MessageContent,
    /// The `id` of the tool call this answers.
    pub tool_call_id: String,
    /// Fields not modelled above.
    #[serde(flatten)]
    pub extra: Extra,
}

/// Message content: a plain string or a list of typed parts.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum MessageContent {
    /// Plain text.
    Text(String),
    /// Typed parts (text, images, ...).
    Parts(Vec<ContentPart>),
}

impl MessageContent {
    /// The text: the string, or the text of its parts (and of parts of
    /// types not modelled here that carry a `text`) joined by newlines.
    pub fn text(&self) -> String {
        match self {
            Self::Text(s) => s.clone(),
            Self::Parts(parts) => parts
                .iter()
                .filter_map(|p| match p {
                    ContentPart::Text(t) => Some(t.text.as_str()),
                    ContentPart::Other(v) => v["text"].as_str(),
                    _ => None,
                })
                .collect::<Vec<_>>()
                .join("\n"),
        }
    }
}

impl From<&str> for MessageContent {
    fn from(text: &str) -> Self {
        Self::Text(text.to_owned())
    }
}

impl From<String> for MessageContent {
    fn from(text: String) -> Self {
        Self::Text(text)
    }
}

impl<'de> Deserialize<'de> for MessageContent {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(match serde_helpers::text_or_list(d, "content")? {
            TextOrList::Text(s) => Self::Text(s),
            TextOrList::List(items) => Self::Parts(serde_helpers::from_list(items, "content")?),
        })
    }
}

/// One typed part of a message's content.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ContentPart {
    /// `{"type":"text","text":...}`
    Text(TextPart),
    /// `{"type":"image_url","image_url":{"url":...}}`
    ImageUrl(ImageUrlPart),
    /// `{"type":"refusal","refusal":...}`, only in assistant content.
    Refusal(RefusalPart),
    /// Any other part type (`input_audio`, `file`, ...), kept verbatim.
    #[serde(untagged)]
    Other(Value),
}

impl ContentPart {
    /// A text part.
    pub fn text(text: impl Into<String>) -> Self {
        Self::Text(TextPart {
            text: text.into(),
            extra: Extra::new(),
        })
    }

    /// An image part pointing at `url` (an `https:` or `data:` URL).
    pub fn image_url(url: impl Into<String>) -> Self {
        Self::ImageUrl(ImageUrlPart {
            image_url: ImageUrl {
                url: url.into(),
                detail: None,
                extra: Extra::new(),
            },
            extra: Extra::new(),
        })
    }
}

/// Mirror of the modelled [`ContentPart`] variants, decoded strictly.
#[derive(Deserialize)]
#[serde(rename_all = "snake_case")]
enum KnownPart {
    Text(TextPart),
    ImageUrl(ImageUrlPart),
    Refusal(RefusalPart),
}

impl From<KnownPart> for ContentPart {
    fn from(part: KnownPart) -> Self {
        match part {
            KnownPart::Text(p) => Self::Text(p),
            KnownPart::ImageUrl(p) => Self::ImageUrl(p),
            KnownPart::Refusal(p) => Self::Refusal(p),
        }
    }
}

impl<'de> Deserialize<'de> for ContentPart {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        serde_helpers::deserialize_tagged::<D, KnownPart, Self>(
            d,
            &["text", "image_url", "refusal"],
            "content part",
            Self::Other,
        )
    }
}

/// A text content part.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TextPart {
    /// The text.
    pub text: String,
    /// Fields not modelled above (e.g. a provider's `cache_control`).
    #[serde(flatten)]
    pub extra: Extra,
}

/// An image content part.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ImageUrlPart {
    /// Where the image is.
    pub image_url: ImageUrl,
    /// Fields not modelled above.
    #[serde(flatten)]
    pub extra: Extra,
}

/// The `image_url` object of an image part.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ImageUrl {
    /// An `https:` URL or a `data:<mime>;base64,<data>` URL.
    pub url: String,
    /// `low`, `high` or `auto`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// Fields not modelled above.
    #[serde(flatten)]
    pub extra: Extra,
}

/// A refusal content part.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RefusalPart {
    /// The refusal text.
    pub refusal: String,
    /// Fields not modelled above.
    #[serde(flatten)]
    pub extra: Extra,
}

/// A tool call made by the assistant.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ToolCall {
    /// Call id, echoed by the matching `tool` message. Some servers omit
    /// it or send `null`: read as empty, and [`ChatCompletion::normalize`]
    /// gives the call an id before a client sees it.
    #[serde(default, deserialize_with = "serde_helpers::null_default")]
    pub id: String,
    /// Always `function` for function calls.
    #[serde(
        rename = "type",
        default = "function_type",
        deserialize_with = "function_type_or_null"
    )]
    pub kind: String,
    /// Which function, with what arguments.
    pub function: FunctionCall,
    /// Fields not modelled above.
    #[serde(flatten)]
    pub extra: Extra,
}

impl ToolCall {
    /// A function call with `arguments` as a JSON-encoded string.
    pub fn function(
        id: impl Into<String>,
        name: impl Into<String>,
        arguments: impl Into<String>,
    ) -> Self {
        Self {
            id: id.into(),
            kind: function_type(),
            function: FunctionCall {
                name: name.into(),
                arguments: arguments.into(),
                extra: Extra::new(),
            },
            extra: Extra::new(),
        }
    }
}

fn function_type() -> String {
    "function".to_owned()
}

fn function_type_or_null<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    Ok(Option::<String>::deserialize(d)?
        .filter(|s| !s.is_empty())
        .unwrap_or_else(function_type))
}

/// Tool-call arguments as servers send them: the JSON-encoded string
/// OpenAI specifies, `null` (no arguments), or (Ollama and some others) the
/// arguments object itself, which is encoded here.
fn arguments_text<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    Ok(match Value::deserialize(d)? {
        Value::Null => String::new(),
        Value::String(s) => s,
        other => other.to_string(),
    })
}

/// Message text as servers send it: a string, `null`, or (Mistral's
/// reasoning models, some proxies) a list of parts whose `text` parts are
/// joined. Thinking parts are not the answer's text and are left out.
fn text_or_parts<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    Ok(match Value::deserialize(d)? {
        Value::Null => None,
        Value::String(s) => Some(s),
        Value::Array(parts) => Some(
            parts
                .iter()
                .filter(|p| {
                    p.get("type")
                        .and_then(Value::as_str)
                        .is_none_or(|t| t == "text")
                })
                .filter_map(|p| p.get("text").and_then(Value::as_str))
                .collect(),
        ),
        other => {
            return Err(D::Error::custom(format_args!(
                "content must be a string, null or a list of parts, got {}",
                serde_helpers::json_kind(&other)
            )));
        }
    })
}

/// A finish reason where `null` and `""` both mean "not yet".
fn opt_finish_reason<'de, D: Deserializer<'de>>(d: D) -> Result<Option<FinishReason>, D::Error> {
    Ok(match Option::<String>::deserialize(d)? {
        None => None,
        Some(s) if s.is_empty() => None,
        Some(s) => Some(FinishReason::deserialize(
            serde::de::value::StringDeserializer::<D::Error>::new(s),
        )?),
    })
}

/// The function part of a tool call.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FunctionCall {
    /// Function name.
    #[serde(default, deserialize_with = "serde_helpers::null_default")]
    pub name: String,
    /// Arguments as a JSON-encoded string, exactly as the model produced them
    /// (not guaranteed to be valid JSON).
    #[serde(default, deserialize_with = "arguments_text")]
    pub arguments: String,
    /// Fields not modelled above.
    #[serde(flatten)]
    pub extra: Extra,
}

/// A tool the model may call.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Tool {
    /// `function`, or a newer tool type this crate passes through.
    #[serde(rename = "type", default = "function_type")]
    pub kind: String,
    /// The function definition; absent for non-function tool types.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub function: Option<FunctionDefinition>,
    /// Fields not modelled above.
    #[serde(flatten)]
    pub extra: Extra,
}

impl Tool {
    /// A function tool.
    pub fn function(definition: FunctionDefinition) -> Self {
        Self {
            kind: function_type(),
            function: Some(definition),
            extra: Extra::new(),
        }
    }
}

/// A function tool's definition.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FunctionDefinition {
    /// Function name.
    pub name: String,
    /// What the function does, for the model.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// JSON Schema of the arguments object.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parameters: Option<Value>,
    /// Whether to enforce the schema exactly.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub strict: Option<bool>,
    /// Fields not modelled above.
    #[serde(flatten)]
    pub extra: Extra,
}

/// `tool_choice`: a mode string or a named function.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum ToolChoice {
    /// `"none"`, `"auto"` or `"required"`.
    Mode(ToolChoiceMode),
    /// `{"type":"function","function":{"name":...}}`
    Function(NamedToolChoice),
    /// Another object form (e.g. `allowed_tools`), kept verbatim.
    Other(Value),
}

impl ToolChoice {
    /// Forces a call to the function `name`.
    pub fn function(name: impl Into<String>) -> Self {
        Self::Function(NamedToolChoice {
            kind: function_type(),
            function: FunctionName { name: name.into() },
        })
    }
}

impl<'de> Deserialize<'de> for ToolChoice {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let value = Value::deserialize(d)?;
        match &value {
            Value::String(_) => ToolChoiceMode::deserialize(value)
                .map(Self::Mode)
                .map_err(|e| D::Error::custom(format_args!("tool_choice: {e}"))),
            Value::Object(map) if map.get("type").and_then(Value::as_str) == Some("function") => {
                NamedToolChoice::deserialize(value)
                    .map(Self::Function)
                    .map_err(|e| D::Error::custom(format_args!("tool_choice: {e}")))
            }
            Value::Object(_) => Ok(Self::Other(value)),
            other => Err(D::Error::custom(format_args!(
                "tool_choice must be a string or an object, got {}",
                serde_helpers::json_kind(other)
            ))),
        }
    }
}

/// The string forms of `tool_choice`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ToolChoiceMode {
    /// Never call a tool.
    None,
    /// The model decides.
    Auto,
    /// Call at least one tool.
    Required,
}

/// `tool_choice` naming one function.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NamedToolChoice {
    /// Always `function`.
    #[serde(rename = "type")]
    pub kind: String,
    /// The function to call.
    pub function: FunctionName,
}

/// A bare function name.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FunctionName {
    /// Function name.
    pub name: String,
}

// ---------------------------------------------------------------------------
// Response
// ---------------------------------------------------------------------------

/// A non-streaming Chat Completions response.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChatCompletion {
    /// Response id (`chatcmpl-...`).
    #[serde(default, deserialize_with = "serde_helpers::null_default")]
    pub id: String,
    /// Always [`OBJECT_COMPLETION`].
    #[serde(
        default = "completion_object",
        deserialize_with = "completion_object_or_null"
    )]
    pub object: String,
    /// Unix time in seconds.
    #[serde(default, deserialize_with = "serde_helpers::lenient_u64")]
    pub created: u64,
    /// Model that answered.
    #[serde(default, deserialize_with = "serde_helpers::null_default")]
    pub model: String,
    /// One entry per requested choice.
    #[serde(default, deserialize_with = "serde_helpers::null_default")]
    pub choices: Vec<Choice>,
    /// Token accounting.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usage: Option<Usage>,
    /// Backend configuration fingerprint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub system_fingerprint: Option<String>,
    /// Fields not modelled above.
    #[serde(flatten)]
    pub extra: Extra,
}

fn completion_object() -> String {
    OBJECT_COMPLETION.to_owned()
}

fn completion_object_or_null<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    Ok(Option::<String>::deserialize(d)?.unwrap_or_else(completion_object))
}

fn chunk_object_or_null<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    Ok(Option::<String>::deserialize(d)?.unwrap_or_else(chunk_object))
}

fn assistant_role_or_null<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    Ok(Option::<String>::deserialize(d)?
        .filter(|s| !s.is_empty())
        .unwrap_or_else(assistant_role))
}

/// One choice of a completion.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Choice {
    /// Position among the choices.
    #[serde(default, deserialize_with = "serde_helpers::lenient_u32")]
    pub index: u32,
    /// The generated message (empty when a server omits it, as Azure does
    /// for a choice its content filter withheld).
    #[serde(default, deserialize_with = "serde_helpers::null_default")]
    pub message: ResponseMessage,
    /// Why generation stopped; explicit `null` while unknown.
    #[serde(default, deserialize_with = "opt_finish_reason")]
    pub finish_reason: Option<FinishReason>,
    /// Fields not modelled above (`logprobs`, ...).
    #[serde(flatten)]
    pub extra: Extra,
}

/// The message of a completion choice.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ResponseMessage {
    /// Always `assistant`.
    #[serde(
        default = "assistant_role",
        deserialize_with = "assistant_role_or_null"
    )]
    pub role: String,
    /// Generated text; explicit `null` when the model only called tools.
    #[serde(default, deserialize_with = "text_or_parts")]
    pub content: Option<String>,
    /// Tool calls the model made (`null` and `[]` read as none).
    #[serde(
        default,
        deserialize_with = "serde_helpers::null_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub tool_calls: Vec<ToolCall>,
    /// Refusal text, when the model refused.
    #[serde(
        default,
        deserialize_with = "serde_helpers::non_empty_string",
        skip_serializing_if = "Option::is_none"
    )]
    pub refusal: Option<String>,
    /// Fields not modelled above (e.g. `reasoning_content`).
    #[serde(flatten)]
    pub extra: Extra,
}

fn assistant_role() -> String {
    "assistant".to_owned()
}

/// Why a choice stopped.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FinishReason {
    /// Natural end or a stop sequence.
    Stop,
    /// Token limit reached.
    Length,
    /// The model called tools.
    ToolCalls,
    /// Output withheld by a content filter.
    ContentFilter,
    /// Legacy single function call.
    FunctionCall,
    /// A reason this crate does not know, kept verbatim.
    #[serde(untagged)]
    Other(String),
}

/// Token accounting. `prompt_tokens` *includes* cached prompt tokens.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Usage {
    /// All input tokens, cached or not.
    #[serde(default, deserialize_with = "serde_helpers::token_count")]
    pub prompt_tokens: u64,
    /// Generated tokens, including reasoning tokens.
    #[serde(default, deserialize_with = "serde_helpers::token_count")]
    pub completion_tokens: u64,
    /// `prompt_tokens + completion_tokens`.
    #[serde(default, deserialize_with = "serde_helpers::token_count")]
    pub total_tokens: u64,
    /// Breakdown of `prompt_tokens`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompt_tokens_details: Option<PromptTokensDetails>,
    /// Fields not modelled above (`completion_tokens_details`, ...).
    #[serde(flatten)]
    pub extra: Extra,
}

/// Breakdown of a usage's prompt tokens.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PromptTokensDetails {
    /// Prompt tokens served from the prompt cache.
    #[serde(
        default,
        deserialize_with = "serde_helpers::opt_token_count",
        skip_serializing_if = "Option::is_none"
    )]
    pub cached_tokens: Option<u64>,
    /// Fields not modelled above (`audio_tokens`, ...).
    #[serde(flatten)]
    pub extra: Extra,
}

// ---------------------------------------------------------------------------
// Streaming
// ---------------------------------------------------------------------------

/// One `data:` payload of a streamed completion.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChatCompletionChunk {
    /// Same id on every chunk of a stream.
    #[serde(default, deserialize_with = "serde_helpers::null_default")]
    pub id: String,
    /// Always [`OBJECT_CHUNK`].
    #[serde(default = "chunk_object", deserialize_with = "chunk_object_or_null")]
    pub object: String,
    /// Unix time in seconds, same on every chunk.
    #[serde(default, deserialize_with = "serde_helpers::lenient_u64")]
    pub created: u64,
    /// Model that answers.
    #[serde(default, deserialize_with = "serde_helpers::null_default")]
    pub model: String,
    /// Deltas; empty on the final usage chunk (and on Azure's content-filter
    /// chunks).
    #[serde(default, deserialize_with = "serde_helpers::null_default")]
    pub choices: Vec<ChunkChoice>,
    /// Only on the final chunk, when `include_usage` was requested.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usage: Option<Usage>,
    /// Backend configuration fingerprint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub system_fingerprint: Option<String>,
    /// Fields not modelled above.
    #[serde(flatten)]
    pub extra: Extra,
}

fn chunk_object() -> String {
    OBJECT_CHUNK.to_owned()
}

/// One choice's delta within a chunk.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ChunkChoice {
    /// Which choice this delta extends.
    #[serde(default, deserialize_with = "serde_helpers::lenient_u32")]
    pub index: u32,
    /// What was added.
    #[serde(default, deserialize_with = "serde_helpers::null_default")]
    pub delta: Delta,
    /// Set on the choice's last content chunk; explicit `null` before.
    #[serde(default, deserialize_with = "opt_finish_reason")]
    pub finish_reason: Option<FinishReason>,
    /// Fields not modelled above (`logprobs`, ...).
    #[serde(flatten)]
    pub extra: Extra,
}

/// Incremental message content.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Delta {
    /// `assistant`, on the first delta only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
    /// Text to append.
    #[serde(
        default,
        deserialize_with = "text_or_parts",
        skip_serializing_if = "Option::is_none"
    )]
    pub content: Option<String>,
    /// Tool-call fragments to merge by `index` (`null` reads as none).
    #[serde(
        default,
        deserialize_with = "serde_helpers::null_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub tool_calls: Vec<ToolCallDelta>,
    /// Refusal text to append.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refusal: Option<String>,
    /// Fields not modelled above (e.g. `reasoning_content`).
    #[serde(flatten)]
    pub extra: Extra,
}

/// A fragment of one tool call.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ToolCallDelta {
    /// Which tool call of the message this extends. Some servers omit it
    /// (or send `null`); it then defaults to 0.
    #[serde(default, deserialize_with = "serde_helpers::lenient_u32")]
    pub index: u32,
    /// Call id, on the call's first fragment.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// `function`, on the call's first fragment.
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// Name and argument fragments.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub function: Option<FunctionCallDelta>,
    /// Fields not modelled above.
    #[serde(flatten)]
    pub extra: Extra,
}

/// Name and argument fragments of a tool call.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct FunctionCallDelta {
    /// Function name, on the call's first fragment.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// A piece of the JSON arguments string, to concatenate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub arguments: Option<String>,
}

// ---------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------

/// An error response body: `{"error":{...}}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ErrorBody {
    /// The error.
    pub error: ErrorDetail,
}

impl ErrorBody {
    /// An error of type `kind` (e.g. `invalid_request_error`).
    pub fn new(kind: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            error: ErrorDetail {
                message: message.into(),
                kind: kind.into(),
                param: None,
                code: None,
                extra: Extra::new(),
            },
        }
    }
}

/// The `error` object of an error body.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ErrorDetail {
    /// Human-readable message.
    #[serde(default)]
    pub message: String,
    /// Error category, e.g. `invalid_request_error`, `server_error`.
    #[serde(rename = "type", default)]
    pub kind: String,
    /// The offending parameter, if any; explicit `null` otherwise.
    #[serde(default)]
    pub param: Option<String>,
    /// Machine-readable code; a string at OpenAI, a number at some
    /// compatible servers, hence a raw value.
    #[serde(default)]
    pub code: Option<Value>,
    /// Fields not modelled above.
    #[serde(flatten)]
    pub extra: Extra,
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
            "model": "gpt-4o",
            "messages": [
                {"role": "system", "content": "be brief"},
                {"role": "developer", "content": [{"type": "text", "text": "dev"}]},
                {"role": "user", "name": "ann", "content": [
                    {"type": "text", "text": "what is this?"},
                    {"type": "image_url", "image_url": {"url": "https://x/y.png", "detail": "low"}},
                    {"type": "input_audio", "input_audio": {"data": "AAA", "format": "wav"}}
                ]},
                {"role": "assistant", "content": null, "tool_calls": [
                    {"id": "call_1", "type": "function", "function": {"name": "look", "arguments": "{\"q\":1}"}}
                ]},
                {"role": "tool", "tool_call_id": "call_1", "content": "a cat"}
            ],
            "tools": [{"type": "function", "function": {
                "name": "look", "description": "looks", "parameters": {"type": "object"}, "strict": true
            }}],
            "tool_choice": {"type": "function", "function": {"name": "look"}},
            "stream": true,
            "stream_options": {"include_usage": true},
            "max_tokens": 10,
            "max_completion_tokens": 20,
            "temperature": 0.5,
            "top_p": 0.9,
            "stop": ["a", "b"],
            "n": 1,
            "presence_penalty": 0.1,
            "frequency_penalty": 0.2,
            "seed": -7,
            "user": "u1",
            "metadata": {"k": "v"},
            "response_format": {"type": "json_object"},
            "parallel_tool_calls": false,
            "reasoning_effort": "low",
            "logit_bias": {"50256": -100}
        });
        let (req, back): (ChatRequest, _) = roundtrip(body.clone());
        assert_eq!(back, body);
        assert!(req.is_stream());
        assert!(req.include_usage());
        assert_eq!(req.extra.len(), 1, "unknown fields land in extra");
        assert_eq!(req.reasoning_effort.as_deref(), Some("low"));
        assert_eq!(req.messages.len(), 5);
        let ChatMessage::User(user) = &req.messages[2] else {
            panic!("expected a user message");
        };
        let MessageContent::Parts(parts) = &user.content else {
            panic!("expected parts");
        };
        assert!(matches!(parts[1], ContentPart::ImageUrl(_)));
        assert!(matches!(parts[2], ContentPart::Other(_)));
        assert_eq!(req.tool_choice, Some(ToolChoice::function("look")));
    }

    #[test]
    fn stop_and_tool_choice_accept_both_shapes() {
        let (req, back): (ChatRequest, _) = roundtrip(json!({
            "model": "m", "messages": [], "stop": "END", "tool_choice": "required"
        }));
        assert_eq!(req.stop, Some(Stop::One("END".into())));
        assert_eq!(
            req.tool_choice,
            Some(ToolChoice::Mode(ToolChoiceMode::Required))
        );
        assert_eq!(back["stop"], "END");
        let (other, _): (ToolChoice, _) = roundtrip(json!({"type": "allowed_tools", "x": 1}));
        assert!(matches!(other, ToolChoice::Other(_)));
    }

    #[test]
    fn malformed_inputs_get_precise_errors() {
        let err = serde_json::from_value::<ChatRequest>(json!({
            "model": "m", "messages": [{"role": "user", "content": [{"type": "image_url"}]}]
        }))
        .expect_err("missing image_url must fail")
        .to_string();
        assert!(
            err.contains("content[0]") && err.contains("image_url"),
            "{err}"
        );

        let err = serde_json::from_value::<ChatRequest>(json!({
            "model": "m", "messages": [{"role": "user", "content": 5}]
        }))
        .expect_err("numeric content must fail")
        .to_string();
        assert!(
            err.contains("content must be a string or an array"),
            "{err}"
        );

        let err = serde_json::from_value::<ToolChoice>(json!("sometimes"))
            .expect_err("unknown mode must fail")
            .to_string();
        assert!(err.contains("tool_choice"), "{err}");

        let err = serde_json::from_value::<ChatRequest>(json!({
            "model": "m", "messages": [{"role": "function", "content": "x"}]
        }))
        .expect_err("unknown role must fail")
        .to_string();
        assert!(err.contains("function"), "{err}");
    }

    #[test]
    fn assistant_without_content_serializes_null_content() {
        let msg = ChatMessage::Assistant(AssistantMessage {
            tool_calls: vec![ToolCall::function("c", "f", "{}")],
            ..AssistantMessage::default()
        });
        let json = serde_json::to_value(&msg).expect("serialize");
        assert_eq!(
            json,
            json!({"role": "assistant", "content": null, "tool_calls": [
                {"id": "c", "type": "function", "function": {"name": "f", "arguments": "{}"}}
            ]})
        );
    }

    #[test]
    fn response_roundtrips_and_keeps_explicit_nulls() {
        let body = json!({
            "id": "chatcmpl-1",
            "object": "chat.completion",
            "created": 1700000000,
            "model": "gpt-4o",
            "choices": [{
                "index": 0,
                "message": {"role": "assistant", "content": null, "tool_calls": [
                    {"id": "call_1", "type": "function", "function": {"name": "f", "arguments": "{}"}}
                ]},
                "finish_reason": "tool_calls",
                "logprobs": null
            }],
            "usage": {
                "prompt_tokens": 100, "completion_tokens": 5, "total_tokens": 105,
                "prompt_tokens_details": {"cached_tokens": 60, "audio_tokens": 0},
                "completion_tokens_details": {"reasoning_tokens": 0}
            },
            "system_fingerprint": "fp_1"
        });
        let (resp, back): (ChatCompletion, _) = roundtrip(body.clone());
        assert_eq!(back, body);
        assert_eq!(resp.choices[0].finish_reason, Some(FinishReason::ToolCalls));
        let usage = resp.usage.expect("usage");
        assert_eq!(
            usage.prompt_tokens_details.and_then(|d| d.cached_tokens),
            Some(60)
        );
    }

    /// What an independent OpenAI-compatible mock server answered: every
    /// optional field present as `null`. Refused with "invalid type: null,
    /// expected a sequence" before the answer types read absence, `null`
    /// and the empty form alike.
    #[test]
    fn an_answer_with_null_optional_fields_is_read() {
        let body = json!({
            "id": "chatcmpl-mock", "object": "chat.completion", "created": 1700000000,
            "model": "mock", "system_fingerprint": null, "service_tier": null,
            "choices": [{
                "index": 0, "logprobs": null, "finish_reason": "stop",
                "message": {"role": "assistant", "content": "hi", "tool_calls": null,
                            "refusal": null, "function_call": null, "audio": null}
            }],
            "usage": {"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4,
                      "prompt_tokens_details": null, "completion_tokens_details": null}
        });
        let resp: ChatCompletion = serde_json::from_value(body).expect("tolerated");
        let message = &resp.choices[0].message;
        assert_eq!(message.content.as_deref(), Some("hi"));
        assert!(message.tool_calls.is_empty());
        assert_eq!(resp.usage.expect("usage").total_tokens, 4);

        let chunk: ChatCompletionChunk = serde_json::from_value(json!({
            "id": "c", "object": null, "created": "1700000000", "model": null, "usage": null,
            "choices": [{"index": null, "finish_reason": "", "delta":
                {"role": null, "content": null, "tool_calls": null, "refusal": null}}]
        }))
        .expect("tolerated chunk");
        assert_eq!(chunk.object, OBJECT_CHUNK);
        assert_eq!(chunk.choices[0].finish_reason, None);
        assert!(chunk.choices[0].delta.tool_calls.is_empty());
        let chunk: ChatCompletionChunk =
            serde_json::from_value(json!({"id": "c", "choices": null})).expect("null choices");
        assert!(chunk.choices.is_empty());
    }

    #[test]
    fn answer_variants_servers_really_send_are_read() {
        let resp: ChatCompletion = serde_json::from_value(json!({
            "id": null, "model": "m", "created": 1.7e9,
            "choices": [{"message": {"role": null, "content": [
                    {"type": "thinking", "thinking": [{"type": "text", "text": "hmm"}]},
                    {"type": "text", "text": "Hello "}, {"type": "text", "text": "world"}],
                "tool_calls": [{"id": null, "type": null, "function":
                    {"name": "f", "arguments": {"a": 1}}}]},
                "finish_reason": "tool_calls"}],
            "usage": {"prompt_tokens": "12", "completion_tokens": 3.0, "total_tokens": null,
                      "prompt_tokens_details": {"cached_tokens": null}}
        }))
        .expect("tolerated");
        assert_eq!(resp.id, "");
        assert_eq!(resp.created, 1_700_000_000);
        let message = &resp.choices[0].message;
        assert_eq!(message.role, "assistant");
        assert_eq!(message.content.as_deref(), Some("Hello world"));
        assert_eq!(message.tool_calls[0].kind, "function");
        assert_eq!(message.tool_calls[0].function.arguments, r#"{"a":1}"#);
        let usage = resp.usage.expect("usage");
        assert_eq!((usage.prompt_tokens, usage.completion_tokens), (12, 3));
    }

    #[test]
    fn unknown_finish_reason_is_kept() {
        let (reason, back): (FinishReason, _) = roundtrip(json!("eos"));
        assert_eq!(reason, FinishReason::Other("eos".into()));
        assert_eq!(back, json!("eos"));
    }

    #[test]
    fn chunks_roundtrip() {
        for body in [
            json!({"id": "c", "object": "chat.completion.chunk", "created": 1, "model": "m",
                   "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": null}]}),
            json!({"id": "c", "object": "chat.completion.chunk", "created": 1, "model": "m",
                   "choices": [{"index": 0, "delta": {"tool_calls": [
                       {"index": 1, "id": "call_2", "type": "function", "function": {"name": "f", "arguments": ""}}
                   ]}, "finish_reason": null}]}),
            json!({"id": "c", "object": "chat.completion.chunk", "created": 1, "model": "m",
                   "choices": [], "usage": {"prompt_tokens": 1, "completion_tokens": 2, "total_tokens": 3}}),
        ] {
            let (_, back): (ChatCompletionChunk, _) = roundtrip(body.clone());
            assert_eq!(back, body);
        }
    }

    #[test]
    fn error_body_roundtrips() {
        let body = json!({"error": {"message": "bad", "type": "invalid_request_error", "param": "model", "code": null}});
        let (err, back): (ErrorBody, _) = roundtrip(body.clone());
        assert_eq!(back, body);
        assert_eq!(err.error.param.as_deref(), Some("model"));
        assert_eq!(
            serde_json::to_value(ErrorBody::new("server_error", "boom")).expect("serialize"),
            json!({"error": {"message": "boom", "type": "server_error", "param": null, "code": null}})
        );
    }
}

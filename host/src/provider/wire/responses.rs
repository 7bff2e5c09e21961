//! Wire types of the OpenAI Responses API (`POST /v1/responses`), the API
//! Codex CLI speaks.
//!
//! Pointsman serves it statelessly: a request carries the whole
//! conversation as `input` items, and nothing is stored between requests.
//! Requests are read leniently where the API is (a message item may omit its
//! `type`, content may be a string or parts) and strictly where a mistake
//! would change the meaning: an item, content part or tool of a known type
//! that is malformed is an error naming it. Unknown item, part and tool types
//! are kept as raw JSON so the translation can name them in its error.

use serde::de::{Deserializer, Error as _};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::serde_helpers::{self, Extra, TextOrList};

/// `object` value of a response.
pub const OBJECT_RESPONSE: &str = "response";

// ---------------------------------------------------------------------------
// Request
// ---------------------------------------------------------------------------

/// A Responses request body.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ResponsesRequest {
    /// Model name as the client spelled it.
    pub model: String,
    /// The conversation: a string (one user message) or items.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input: Option<Input>,
    /// A system (developer) message put before `input`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instructions: Option<String>,
    /// Tools the model may call.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tools: Option<Vec<Tool>>,
    /// How the model must use `tools`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_choice: Option<Value>,
    /// Whether the model may call several tools in one turn.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parallel_tool_calls: Option<bool>,
    /// Whether to answer with server-sent events.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream: Option<bool>,
    /// Whether the server should keep the response (Pointsman never does).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub store: Option<bool>,
    /// A stored response to continue from: needs server-side state.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_response_id: Option<String>,
    /// A stored conversation to continue: needs server-side state.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub conversation: Option<Value>,
    /// Run in the background and poll: needs server-side state.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub background: Option<bool>,
    /// Reasoning controls.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reasoning: Option<Reasoning>,
    /// Extra output to include (e.g. `reasoning.encrypted_content`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub include: Option<Vec<String>>,
    /// A key grouping requests that share a prompt prefix; Codex sets its
    /// session id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompt_cache_key: Option<String>,
    /// Output-token cap, reasoning included.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_output_tokens: Option<u32>,
    /// Output format and verbosity.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<TextOptions>,
    /// Sampling temperature.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub temperature: Option<f64>,
    /// Nucleus sampling mass.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub top_p: Option<f64>,
    /// Free-form string metadata.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<Extra>,
    /// End-user identifier.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// Parameters not modelled above.
    #[serde(flatten)]
    pub extra: Extra,
}

impl ResponsesRequest {
    /// Whether the client asked for a streamed answer.
    pub fn is_stream(&self) -> bool {
        self.stream == Some(true)
    }
}

/// `input`: a string or a list of items.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum Input {
    /// One user message.
    Text(String),
    /// Items, oldest first.
    Items(Vec<InputItem>),
}

impl<'de> Deserialize<'de> for Input {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(match serde_helpers::text_or_list(d, "input")? {
            TextOrList::Text(s) => Self::Text(s),
            TextOrList::List(items) => Self::Items(serde_helpers::from_list(items, "input")?),
        })
    }
}

/// One item of `input`.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum InputItem {
    /// A message; `type` may be omitted.
    Message(MessageItem),
    /// A function call the model made earlier.
    FunctionCall(FunctionCallItem),
    /// The result of a function call.
    FunctionCallOutput(FunctionCallOutputItem),
    /// A call of a custom (free-form) tool the model made earlier.
    CustomToolCall(CustomToolCallItem),
    /// The result of a custom tool call.
    CustomToolCallOutput(FunctionCallOutputItem),
    /// The model's reasoning in an earlier turn.
    Reasoning(ReasoningItem),
    /// Any other item type, kept verbatim.
    #[serde(untagged)]
    Other(Value),
}

/// Mirror of the modelled [`InputItem`] variants, decoded strictly.
#[derive(Deserialize)]
#[serde(rename_all = "snake_case")]
enum KnownItem {
    Message(MessageItem),
    FunctionCall(FunctionCallItem),
    FunctionCallOutput(FunctionCallOutputItem),
    CustomToolCall(CustomToolCallItem),
    CustomToolCallOutput(FunctionCallOutputItem),
    Reasoning(ReasoningItem),
}

impl From<KnownItem> for InputItem {
    fn from(item: KnownItem) -> Self {
        match item {
            KnownItem::Message(m) => Self::Message(m),
            KnownItem::FunctionCall(c) => Self::FunctionCall(c),
            KnownItem::FunctionCallOutput(o) => Self::FunctionCallOutput(o),
            KnownItem::CustomToolCall(c) => Self::CustomToolCall(c),
            KnownItem::CustomToolCallOutput(o) => Self::CustomToolCallOutput(o),
            KnownItem::Reasoning(r) => Self::Reasoning(r),
        }
    }
}

impl<'de> Deserialize<'de> for InputItem {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let mut value = Value::deserialize(d)?;
        // An "easy" message: `{"role": ..., "content": ...}` without a type.
        if let Value::Object(map) = &mut value
            && !map.contains_key("type")
            && map.contains_key("role")
        {
            map.insert("type".into(), "message".into());
        }
        serde_helpers::deserialize_tagged::<_, KnownItem, Self>(
            value,
            &[
                "message",
                "function_call",
                "function_call_output",
                "custom_tool_call",
                "custom_tool_call_output",
                "reasoning",
            ],
            "input item",
            Self::Other,
        )
        .map_err(D::Error::custom)
    }
}

/// Who wrote a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// The person.
    User,
    /// The model.
    Assistant,
    /// The application's instructions.
    System,
    /// The application's instructions (newer name for `system`).
    Developer,
}

/// A message item.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MessageItem {
    /// Who wrote it.
    pub role: Role,
    /// A string or typed parts.
    pub content: Content,
    /// Item id, when the client echoes one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// Fields not modelled above (`status`, ...).
    #[serde(flatten)]
    pub extra: Extra,
}

/// Message content: a string or typed parts.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum Content {
    /// Plain text.
    Text(String),
    /// Typed parts.
    Parts(Vec<ContentPart>),
}

impl<'de> Deserialize<'de> for Content {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(match serde_helpers::text_or_list(d, "content")? {
            TextOrList::Text(s) => Self::Text(s),
            TextOrList::List(items) => Self::Parts(serde_helpers::from_list(items, "content")?),
        })
    }
}

/// One typed part of a message's content (or of a tool's output).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ContentPart {
    /// Text from the user or the application.
    InputText(TextPart),
    /// Text the model wrote earlier.
    OutputText(TextPart),
    /// An image, by URL (`https:` or `data:`) or by file id.
    InputImage(ImagePart),
    /// A refusal the model wrote earlier.
    Refusal(RefusalPart),
    /// Any other part type (`input_file`, `input_audio`, ...), kept verbatim.
    #[serde(untagged)]
    Other(Value),
}

#[derive(Deserialize)]
#[serde(rename_all = "snake_case")]
enum KnownPart {
    InputText(TextPart),
    OutputText(TextPart),
    InputImage(ImagePart),
    Refusal(RefusalPart),
}

impl From<KnownPart> for ContentPart {
    fn from(part: KnownPart) -> Self {
        match part {
            KnownPart::InputText(p) => Self::InputText(p),
            KnownPart::OutputText(p) => Self::OutputText(p),
            KnownPart::InputImage(p) => Self::InputImage(p),
            KnownPart::Refusal(p) => Self::Refusal(p),
        }
    }
}

impl<'de> Deserialize<'de> for ContentPart {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        serde_helpers::deserialize_tagged::<D, KnownPart, Self>(
            d,
            &["input_text", "output_text", "input_image", "refusal"],
            "content part",
            Self::Other,
        )
    }
}

/// A text part.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TextPart {
    /// The text.
    pub text: String,
    /// Fields not modelled above (`annotations`, `logprobs`, ...).
    #[serde(flatten)]
    pub extra: Extra,
}

/// An image part.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ImagePart {
    /// An `https:` or `data:` URL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_url: Option<String>,
    /// An uploaded file (needs the Files API, which Pointsman has not).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file_id: Option<String>,
    /// `low`, `high` or `auto`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// Fields not modelled above.
    #[serde(flatten)]
    pub extra: Extra,
}

/// A refusal part.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RefusalPart {
    /// The refusal text.
    pub refusal: String,
}

/// A function call item (input or output).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FunctionCallItem {
    /// Item id (`fc_…`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// The call's id, echoed by its output.
    pub call_id: String,
    /// Function name.
    pub name: String,
    /// The namespace tool the function belongs to, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// Arguments as a JSON string, as the model produced them.
    #[serde(default)]
    pub arguments: String,
    /// `in_progress`, `completed` or `incomplete`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<ItemStatus>,
}

/// A custom tool call item: free-form text input instead of JSON arguments.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CustomToolCallItem {
    /// Item id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// The call's id, echoed by its output.
    pub call_id: String,
    /// Tool name.
    pub name: String,
    /// The text the model wrote for the tool.
    #[serde(default)]
    pub input: String,
    /// `in_progress`, `completed` or `incomplete`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<ItemStatus>,
}

/// The output of a function or custom tool call.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FunctionCallOutputItem {
    /// Which call this answers.
    pub call_id: String,
    /// A string, or input parts (text and images).
    pub output: Content,
    /// Fields not modelled above (`id`, `status`).
    #[serde(flatten)]
    pub extra: Extra,
}

/// A reasoning item.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ReasoningItem {
    /// Item id (`rs_…`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// Summary parts (`summary_text`).
    #[serde(default)]
    pub summary: Vec<SummaryPart>,
    /// The reasoning itself (`reasoning_text`), from open-weight models.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content: Option<Vec<ReasoningText>>,
    /// Opaque reasoning state for the next turn, when asked for with
    /// `include: ["reasoning.encrypted_content"]`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encrypted_content: Option<String>,
    /// Fields not modelled above (`status`).
    #[serde(flatten)]
    pub extra: Extra,
}

/// A reasoning summary part.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SummaryPart {
    /// Always `summary_text`.
    #[serde(rename = "type", default = "summary_text")]
    pub kind: String,
    /// The summary.
    pub text: String,
}

fn summary_text() -> String {
    "summary_text".into()
}

/// A reasoning content part.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReasoningText {
    /// Always `reasoning_text`.
    #[serde(rename = "type", default = "reasoning_text")]
    pub kind: String,
    /// The reasoning.
    pub text: String,
}

fn reasoning_text() -> String {
    "reasoning_text".into()
}

/// The status of an item or a response.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ItemStatus {
    /// Being generated.
    InProgress,
    /// Finished.
    Completed,
    /// Cut short (token limit, filter).
    Incomplete,
}

/// A tool of the request.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Tool {
    /// A function with a JSON Schema.
    Function(FunctionTool),
    /// A custom tool taking free-form text (optionally with a grammar).
    Custom(CustomTool),
    /// A group of function tools under one name.
    Namespace(NamespaceTool),
    /// A tool the provider hosts (`web_search`, `file_search`, ...), kept
    /// verbatim.
    #[serde(untagged)]
    Other(Value),
}

#[derive(Deserialize)]
#[serde(rename_all = "snake_case")]
enum KnownTool {
    Function(FunctionTool),
    Custom(CustomTool),
    Namespace(NamespaceTool),
}

impl From<KnownTool> for Tool {
    fn from(tool: KnownTool) -> Self {
        match tool {
            KnownTool::Function(t) => Self::Function(t),
            KnownTool::Custom(t) => Self::Custom(t),
            KnownTool::Namespace(t) => Self::Namespace(t),
        }
    }
}

impl<'de> Deserialize<'de> for Tool {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        serde_helpers::deserialize_tagged::<D, KnownTool, Self>(
            d,
            &["function", "custom", "namespace"],
            "tool",
            Self::Other,
        )
    }
}

impl Tool {
    /// The tool's `type`.
    pub fn kind(&self) -> &str {
        match self {
            Tool::Function(_) => "function",
            Tool::Custom(_) => "custom",
            Tool::Namespace(_) => "namespace",
            Tool::Other(v) => v.get("type").and_then(Value::as_str).unwrap_or("unknown"),
        }
    }
}

/// A function tool (flat, unlike chat completions' nested `function`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FunctionTool {
    /// Function name.
    pub name: String,
    /// What it does.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// JSON Schema of the arguments.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parameters: Option<Value>,
    /// Whether to enforce the schema.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub strict: Option<bool>,
}

/// A custom tool.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CustomTool {
    /// Tool name.
    pub name: String,
    /// What it does.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// The input's format (`text`, or a grammar), kept verbatim.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub format: Option<Value>,
}

/// A namespace of function tools.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NamespaceTool {
    /// The namespace.
    pub name: String,
    /// What its tools are for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Its tools.
    #[serde(default)]
    pub tools: Vec<Tool>,
}

/// `reasoning` of a request and of a response.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Reasoning {
    /// `none`, `minimal`, `low`, `medium`, `high` or `xhigh`.
    #[serde(default)]
    pub effort: Option<String>,
    /// `auto`, `concise`, `detailed` or `none`.
    #[serde(default)]
    pub summary: Option<String>,
    /// Fields not modelled above.
    #[serde(flatten)]
    pub extra: Extra,
}

/// `text` of a request and of a response.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TextOptions {
    /// `{"type": "text" | "json_object" | "json_schema", ...}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub format: Option<Value>,
    /// `low`, `medium` or `high`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verbosity: Option<String>,
    /// Fields not modelled above.
    #[serde(flatten)]
    pub extra: Extra,
}

// ---------------------------------------------------------------------------
// Response
// ---------------------------------------------------------------------------

/// A response object: the answer, and the final state of a stream.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ResponseObject {
    /// `resp_…`.
    pub id: String,
    /// Always [`OBJECT_RESPONSE`].
    pub object: String,
    /// Unix time in seconds.
    pub created_at: u64,
    /// Where the response is.
    pub status: ResponseStatus,
    /// The model that answered (a catalog id).
    pub model: String,
    /// What the model produced, in order.
    pub output: Vec<OutputItem>,
    /// Token counts; absent until the response is complete.
    pub usage: Option<ResponseUsage>,
    /// The error of a failed response.
    pub error: Option<ResponseError>,
    /// Why an incomplete response stopped.
    pub incomplete_details: Option<IncompleteDetails>,
    /// The request's `instructions`.
    pub instructions: Option<String>,
    /// The request's output cap.
    pub max_output_tokens: Option<u32>,
    /// The request's `parallel_tool_calls` (true by default).
    pub parallel_tool_calls: bool,
    /// Never set: responses are not stored.
    pub previous_response_id: Option<String>,
    /// The reasoning settings used.
    pub reasoning: Reasoning,
    /// Always false: Pointsman keeps no responses.
    pub store: bool,
    /// The request's temperature.
    pub temperature: Option<f64>,
    /// The request's output format.
    pub text: TextOptions,
    /// The request's tool choice (`auto` when absent).
    pub tool_choice: Value,
    /// The request's tools.
    pub tools: Vec<Value>,
    /// The request's top_p.
    pub top_p: Option<f64>,
    /// The request's metadata.
    pub metadata: Extra,
    /// Fields not modelled above.
    #[serde(flatten)]
    pub extra: Extra,
}

/// The status of a response.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ResponseStatus {
    /// Being generated.
    InProgress,
    /// Finished.
    Completed,
    /// Stopped early (token limit, content filter).
    Incomplete,
    /// Failed; `error` says why.
    Failed,
}

/// Why a response is incomplete.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IncompleteDetails {
    /// `max_output_tokens` or `content_filter`.
    pub reason: String,
}

/// The error of a failed response.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ResponseError {
    /// Machine-readable code (`server_error`, `rate_limit_exceeded`, ...).
    pub code: String,
    /// What went wrong.
    pub message: String,
}

/// One output item.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum OutputItem {
    /// The model's reasoning.
    Reasoning(ReasoningItem),
    /// Text from the model.
    Message(OutputMessage),
    /// A function call.
    FunctionCall(FunctionCallItem),
    /// A custom tool call.
    CustomToolCall(CustomToolCallItem),
}

impl OutputItem {
    /// The item's id.
    pub fn id(&self) -> &str {
        match self {
            OutputItem::Reasoning(r) => r.id.as_deref().unwrap_or_default(),
            OutputItem::Message(m) => &m.id,
            OutputItem::FunctionCall(c) => c.id.as_deref().unwrap_or_default(),
            OutputItem::CustomToolCall(c) => c.id.as_deref().unwrap_or_default(),
        }
    }
}

/// An assistant message of the output.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OutputMessage {
    /// `msg_…`.
    pub id: String,
    /// Always `assistant`.
    pub role: Role,
    /// Where the message is.
    pub status: ItemStatus,
    /// Its text and refusal parts.
    pub content: Vec<OutputContent>,
}

/// A part of an output message.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum OutputContent {
    /// Text.
    OutputText {
        /// The text.
        text: String,
        /// Citations; always empty here.
        annotations: Vec<Value>,
    },
    /// A refusal.
    Refusal {
        /// Why the model refused.
        refusal: String,
    },
}

impl OutputContent {
    /// A text part.
    pub fn text(text: impl Into<String>) -> Self {
        OutputContent::OutputText {
            text: text.into(),
            annotations: Vec::new(),
        }
    }
}

/// Token counts of a response. `input_tokens` includes cached tokens;
/// `output_tokens` includes reasoning tokens.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ResponseUsage {
    /// All input tokens.
    pub input_tokens: u64,
    /// The cached share of the input.
    pub input_tokens_details: InputTokensDetails,
    /// All output tokens.
    pub output_tokens: u64,
    /// The reasoning share of the output.
    pub output_tokens_details: OutputTokensDetails,
    /// Input plus output.
    pub total_tokens: u64,
}

/// Breakdown of the input tokens.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct InputTokensDetails {
    /// Read from the prompt cache.
    pub cached_tokens: u64,
}

/// Breakdown of the output tokens.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct OutputTokensDetails {
    /// Spent reasoning.
    pub reasoning_tokens: u64,
}

// ---------------------------------------------------------------------------
// Streaming
// ---------------------------------------------------------------------------

/// One event of a streamed response. Every event carries a
/// `sequence_number`, increasing from 0; it is added when the event is
/// encoded.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type")]
pub enum StreamEvent {
    /// The response exists (status `in_progress`).
    #[serde(rename = "response.created")]
    Created {
        /// The response so far.
        response: Box<ResponseObject>,
    },
    /// The response is being generated.
    #[serde(rename = "response.in_progress")]
    InProgress {
        /// The response so far.
        response: Box<ResponseObject>,
    },
    /// An output item starts.
    #[serde(rename = "response.output_item.added")]
    OutputItemAdded {
        /// Its position in `output`.
        output_index: usize,
        /// The item, as far as known.
        item: OutputItem,
    },
    /// An output item is complete.
    #[serde(rename = "response.output_item.done")]
    OutputItemDone {
        /// Its position in `output`.
        output_index: usize,
        /// The whole item.
        item: OutputItem,
    },
    /// A content part of a message starts.
    #[serde(rename = "response.content_part.added")]
    ContentPartAdded {
        /// The message's id.
        item_id: String,
        /// Its position in `output`.
        output_index: usize,
        /// The part's position in the message.
        content_index: usize,
        /// The part, empty.
        part: OutputContent,
    },
    /// A content part is complete.
    #[serde(rename = "response.content_part.done")]
    ContentPartDone {
        /// The message's id.
        item_id: String,
        /// Its position in `output`.
        output_index: usize,
        /// The part's position in the message.
        content_index: usize,
        /// The whole part.
        part: OutputContent,
    },
    /// Text to append to a text part.
    #[serde(rename = "response.output_text.delta")]
    OutputTextDelta {
        /// The message's id.
        item_id: String,
        /// Its position in `output`.
        output_index: usize,
        /// The part's position.
        content_index: usize,
        /// The text.
        delta: String,
        /// Token log-probabilities; always empty.
        logprobs: Vec<Value>,
    },
    /// A text part is complete.
    #[serde(rename = "response.output_text.done")]
    OutputTextDone {
        /// The message's id.
        item_id: String,
        /// Its position in `output`.
        output_index: usize,
        /// The part's position.
        content_index: usize,
        /// The whole text.
        text: String,
        /// Token log-probabilities; always empty.
        logprobs: Vec<Value>,
    },
    /// Refusal text to append.
    #[serde(rename = "response.refusal.delta")]
    RefusalDelta {
        /// The message's id.
        item_id: String,
        /// Its position in `output`.
        output_index: usize,
        /// The part's position.
        content_index: usize,
        /// The text.
        delta: String,
    },
    /// A refusal is complete.
    #[serde(rename = "response.refusal.done")]
    RefusalDone {
        /// The message's id.
        item_id: String,
        /// Its position in `output`.
        output_index: usize,
        /// The part's position.
        content_index: usize,
        /// The whole refusal.
        refusal: String,
    },
    /// A piece of a function call's arguments.
    #[serde(rename = "response.function_call_arguments.delta")]
    FunctionCallArgumentsDelta {
        /// The call item's id.
        item_id: String,
        /// Its position in `output`.
        output_index: usize,
        /// The piece.
        delta: String,
    },
    /// A function call's arguments are complete.
    #[serde(rename = "response.function_call_arguments.done")]
    FunctionCallArgumentsDone {
        /// The call item's id.
        item_id: String,
        /// Its position in `output`.
        output_index: usize,
        /// The function's name.
        name: String,
        /// The whole arguments string.
        arguments: String,
    },
    /// A piece of a custom tool call's input.
    #[serde(rename = "response.custom_tool_call_input.delta")]
    CustomToolCallInputDelta {
        /// The call item's id.
        item_id: String,
        /// Its position in `output`.
        output_index: usize,
        /// The piece.
        delta: String,
    },
    /// A custom tool call's input is complete.
    #[serde(rename = "response.custom_tool_call_input.done")]
    CustomToolCallInputDone {
        /// The call item's id.
        item_id: String,
        /// Its position in `output`.
        output_index: usize,
        /// The whole input.
        input: String,
    },
    /// A reasoning summary part starts.
    #[serde(rename = "response.reasoning_summary_part.added")]
    ReasoningSummaryPartAdded {
        /// The reasoning item's id.
        item_id: String,
        /// Its position in `output`.
        output_index: usize,
        /// The part's position in the summary.
        summary_index: usize,
        /// The part, empty.
        part: SummaryPart,
    },
    /// Summary text to append.
    #[serde(rename = "response.reasoning_summary_text.delta")]
    ReasoningSummaryTextDelta {
        /// The reasoning item's id.
        item_id: String,
        /// Its position in `output`.
        output_index: usize,
        /// The part's position in the summary.
        summary_index: usize,
        /// The text.
        delta: String,
    },
    /// A summary text is complete.
    #[serde(rename = "response.reasoning_summary_text.done")]
    ReasoningSummaryTextDone {
        /// The reasoning item's id.
        item_id: String,
        /// Its position in `output`.
        output_index: usize,
        /// The part's position in the summary.
        summary_index: usize,
        /// The whole text.
        text: String,
    },
    /// A summary part is complete.
    #[serde(rename = "response.reasoning_summary_part.done")]
    ReasoningSummaryPartDone {
        /// The reasoning item's id.
        item_id: String,
        /// Its position in `output`.
        output_index: usize,
        /// The part's position in the summary.
        summary_index: usize,
        /// The whole part.
        part: SummaryPart,
    },
    /// The response is complete.
    #[serde(rename = "response.completed")]
    Completed {
        /// The whole response, usage included.
        response: Box<ResponseObject>,
    },
    /// The response stopped early (token limit, filter).
    #[serde(rename = "response.incomplete")]
    Incomplete {
        /// The response as far as it went.
        response: Box<ResponseObject>,
    },
    /// The response failed; `response.error` says why.
    #[serde(rename = "response.failed")]
    Failed {
        /// The response as far as it went.
        response: Box<ResponseObject>,
    },
    /// An error outside any response.
    #[serde(rename = "error")]
    Error {
        /// Machine-readable code.
        code: Option<String>,
        /// What went wrong.
        message: String,
        /// The offending parameter.
        param: Option<String>,
    },
}

impl StreamEvent {
    /// The event's `type`, used as the SSE event name.
    pub fn event_type(&self) -> &'static str {
        match self {
            StreamEvent::Created { .. } => "response.created",
            StreamEvent::InProgress { .. } => "response.in_progress",
            StreamEvent::OutputItemAdded { .. } => "response.output_item.added",
            StreamEvent::OutputItemDone { .. } => "response.output_item.done",
            StreamEvent::ContentPartAdded { .. } => "response.content_part.added",
            StreamEvent::ContentPartDone { .. } => "response.content_part.done",
            StreamEvent::OutputTextDelta { .. } => "response.output_text.delta",
            StreamEvent::OutputTextDone { .. } => "response.output_text.done",
            StreamEvent::RefusalDelta { .. } => "response.refusal.delta",
            StreamEvent::RefusalDone { .. } => "response.refusal.done",
            StreamEvent::FunctionCallArgumentsDelta { .. } => {
                "response.function_call_arguments.delta"
            }
            StreamEvent::FunctionCallArgumentsDone { .. } => {
                "response.function_call_arguments.done"
            }
            StreamEvent::CustomToolCallInputDelta { .. } => "response.custom_tool_call_input.delta",
            StreamEvent::CustomToolCallInputDone { .. } => "response.custom_tool_call_input.done",
            StreamEvent::ReasoningSummaryPartAdded { .. } => {
                "response.reasoning_summary_part.added"
            }
            StreamEvent::ReasoningSummaryTextDelta { .. } => {
                "response.reasoning_summary_text.delta"
            }
            StreamEvent::ReasoningSummaryTextDone { .. } => "response.reasoning_summary_text.done",
            StreamEvent::ReasoningSummaryPartDone { .. } => "response.reasoning_summary_part.done",
            StreamEvent::Completed { .. } => "response.completed",
            StreamEvent::Incomplete { .. } => "response.incomplete",
            StreamEvent::Failed { .. } => "response.failed",
            StreamEvent::Error { .. } => "error",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn codex_input_items_parse() {
        let request: ResponsesRequest = serde_json::from_value(json!({
            "model": "auto",
            "instructions": "be brief",
            "input": [
                {"type": "message", "role": "developer", "content": [{"type": "input_text", "text": "rules"}]},
                {"role": "user", "content": "fix it"},
                {"type": "reasoning", "id": "rs_1", "summary": [{"type": "summary_text", "text": "look"}], "encrypted_content": null},
                {"type": "function_call", "call_id": "c1", "name": "exec_command", "arguments": "{\"cmd\":\"ls\"}"},
                {"type": "function_call_output", "call_id": "c1", "output": "a.rs"},
                {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "done", "annotations": []}]},
                {"type": "item_reference", "id": "x"}
            ],
            "tools": [
                {"type": "function", "name": "exec_command", "parameters": {"type": "object"}, "strict": false},
                {"type": "namespace", "name": "ns", "tools": [{"type": "function", "name": "f"}]},
                {"type": "web_search", "external_web_access": false}
            ],
            "store": false,
            "stream": true,
            "prompt_cache_key": "s1",
            "client_metadata": {"k": "v"}
        }))
        .expect("parses");
        let Some(Input::Items(items)) = &request.input else {
            panic!("items");
        };
        assert_eq!(items.len(), 7);
        assert!(matches!(&items[1], InputItem::Message(m) if m.role == Role::User));
        assert!(matches!(&items[2], InputItem::Reasoning(r) if r.summary[0].text == "look"));
        assert!(matches!(&items[6], InputItem::Other(_)));
        let tools = request.tools.as_ref().expect("tools");
        assert_eq!(
            tools.iter().map(Tool::kind).collect::<Vec<_>>(),
            ["function", "namespace", "web_search"]
        );
        assert!(request.is_stream());
        assert!(request.extra.contains_key("client_metadata"));
    }

    #[test]
    fn malformed_known_items_name_the_problem() {
        let err = serde_json::from_value::<ResponsesRequest>(json!({
            "model": "m", "input": [{"type": "function_call", "name": "f"}]
        }))
        .expect_err("no call_id")
        .to_string();
        assert!(err.contains("input[0]") && err.contains("call_id"), "{err}");
        let err = serde_json::from_value::<ResponsesRequest>(json!({"model": "m", "input": 5}))
            .expect_err("number")
            .to_string();
        assert!(err.contains("input must be a string or an array"), "{err}");
    }

    #[test]
    fn events_serialize_with_their_type() {
        let event = StreamEvent::OutputTextDelta {
            item_id: "msg_1".into(),
            output_index: 0,
            content_index: 0,
            delta: "hi".into(),
            logprobs: Vec::new(),
        };
        let value = serde_json::to_value(&event).expect("serializes");
        assert_eq!(value["type"], event.event_type());
        assert_eq!(value["delta"], "hi");
        let back: StreamEvent = serde_json::from_value(value).expect("parses");
        assert_eq!(back, event);
    }
}

//! Relaying a provider's stream to a client in the client's format.
//!
//! Events are translated when the formats differ and passed through (with
//! the model renamed to its catalog id) when they match. The event that
//! carries the final usage (OpenAI's usage chunk, Anthropic's
//! `message_delta`) is held back until the stream ends, so that it can carry
//! the cost too: a `pointsman` object with the model, the cost, the
//! baseline cost and, in plan mode, the planner's share of the cost. A
//! stream that breaks ends with an error event in the client's format, never
//! with a clean end.

use bytes::Bytes;
use serde::Serialize;

use crate::ledger::Cost;
use crate::ledger::cost::format_usd;
use crate::provider::wire::anthropic::{self, StreamEvent};
use crate::provider::wire::openai::{self, ChatCompletionChunk};
use crate::provider::wire::sse;
use crate::provider::wire::translate::{AnthropicToOpenAiStream, OpenAiToAnthropicStream};
use crate::provider::{Event, Format, Usage, unix_now};

enum Mode {
    /// Nothing seen yet.
    Start,
    OpenAiPass,
    AnthropicPass,
    ToAnthropic(Box<OpenAiToAnthropicStream>),
    ToOpenAi(Box<AnthropicToOpenAiStream>),
}

/// One stream's relay state.
pub struct Relay {
    client: Format,
    model: String,
    include_usage: bool,
    mode: Mode,
    usage: Usage,
    upstream_done: bool,
    held_usage_chunk: Option<ChatCompletionChunk>,
    held_delta: Option<StreamEvent>,
    planner_cost: Option<Cost>,
    /// The id and creation time of the OpenAI chunks sent: the upstream's
    /// first id, or one made up when it sends none, so that every chunk of
    /// the stream carries the same.
    chunk_id: Option<(String, u64)>,
    /// Tool calls of the stream by the index the client sees, and the
    /// upstream index each was last given: some servers (Gemini's) send
    /// parallel calls without an index, or all at index 0.
    tool_ids: Vec<String>,
    tool_index: std::collections::HashMap<u32, u32>,
    /// An Anthropic client has had its `message_start`.
    message_started: bool,
}

impl Relay {
    /// A relay to a `client` that asked for `model`; OpenAI clients see the
    /// usage chunk only if they asked for it.
    pub fn new(client: Format, model: &str, include_usage: bool) -> Self {
        Relay {
            client,
            model: model.to_string(),
            include_usage,
            mode: Mode::Start,
            usage: Usage::default(),
            upstream_done: false,
            held_usage_chunk: None,
            held_delta: None,
            planner_cost: None,
            chunk_id: None,
            tool_ids: Vec::new(),
            tool_index: std::collections::HashMap::new(),
            message_started: false,
        }
    }

    /// In plan mode: the planner's share of the cost (zero when the plan
    /// was reused), reported next to the total in the final usage event.
    pub fn planner_cost(mut self, cost: Option<Cost>) -> Self {
        self.planner_cost = cost;
        self
    }

    /// The usage reported so far.
    pub fn usage(&self) -> Usage {
        match &self.mode {
            Mode::ToAnthropic(t) => t.usage(),
            Mode::ToOpenAi(t) => t.usage(),
            _ => self.usage,
        }
    }

    /// Whether the upstream finished its answer (a finish reason, or
    /// `message_stop`) rather than just stopping.
    pub fn finished_upstream(&self) -> bool {
        self.upstream_done
    }

    /// Relays one upstream event; returns the bytes to send now.
    pub fn feed(&mut self, event: Event) -> Result<Vec<Bytes>, String> {
        if matches!(self.mode, Mode::Start) {
            self.mode = match (&event, self.client) {
                (Event::OpenAi(_), Format::OpenAi) => Mode::OpenAiPass,
                (Event::Anthropic(_), Format::Anthropic) => Mode::AnthropicPass,
                (Event::OpenAi(_), Format::Anthropic) => {
                    Mode::ToAnthropic(Box::new(OpenAiToAnthropicStream::new(self.model.clone())))
                }
                (Event::Anthropic(_), Format::OpenAi) => {
                    Mode::ToOpenAi(Box::new(AnthropicToOpenAiStream::new(true, unix_now())))
                }
                (Event::Responses(_), _) => return Err(PASSED_THROUGH.into()),
            };
        }
        let mut out = Vec::new();
        match event {
            Event::OpenAi(mut chunk) => {
                lift_extension_usage(&mut chunk);
                if chunk.choices.iter().any(|c| c.finish_reason.is_some()) {
                    self.upstream_done = true;
                }
                if let Some(usage) = &chunk.usage {
                    self.usage = Usage::from(usage);
                }
                match &mut self.mode {
                    Mode::OpenAiPass => self.client_chunk(chunk, &mut out)?,
                    Mode::ToAnthropic(t) => {
                        let events = t.feed(chunk).map_err(|e| e.to_string())?;
                        for event in events {
                            self.client_event(event, &mut out)?;
                        }
                    }
                    _ => return Err("the provider mixed stream formats".into()),
                }
            }
            Event::Anthropic(event) => {
                match &event {
                    StreamEvent::MessageStart { message } => {
                        self.usage = Usage::from(&message.usage)
                    }
                    StreamEvent::MessageDelta { usage, .. } => {
                        self.usage.apply_message_delta(usage)
                    }
                    StreamEvent::MessageStop => self.upstream_done = true,
                    _ => {}
                }
                match &mut self.mode {
                    Mode::AnthropicPass => self.client_event(event, &mut out)?,
                    Mode::ToOpenAi(t) => {
                        let chunks = t.feed(event).map_err(|e| e.to_string())?;
                        for chunk in chunks {
                            self.client_chunk(chunk, &mut out)?;
                        }
                    }
                    _ => return Err("the provider mixed stream formats".into()),
                }
            }
            Event::Responses(_) => return Err(PASSED_THROUGH.into()),
        }
        Ok(out)
    }

    /// The end of a complete stream: the held usage event with the cost,
    /// then the format's end marker.
    pub fn finish(&mut self, cost: Cost) -> Vec<Bytes> {
        let mut out = Vec::new();
        let tail: Vec<Result<(), String>> = match std::mem::replace(&mut self.mode, Mode::Start) {
            Mode::ToAnthropic(mut t) => {
                let events = t.finish();
                let usage = t.usage();
                self.mode = Mode::ToAnthropic(t);
                self.usage = usage;
                events
                    .into_iter()
                    .map(|e| self.client_event(e, &mut out))
                    .collect()
            }
            Mode::ToOpenAi(mut t) => {
                let chunks = t.finish();
                let usage = t.usage();
                self.mode = Mode::ToOpenAi(t);
                self.usage = usage;
                chunks
                    .into_iter()
                    .map(|c| self.client_chunk(c, &mut out))
                    .collect()
            }
            mode => {
                self.mode = mode;
                Vec::new()
            }
        };
        if let Some(e) = tail.into_iter().find_map(Result::err) {
            return self.error(&e);
        }
        let summary = self.summary(cost);
        match self.client {
            Format::OpenAi => {
                if self.include_usage {
                    // Servers that put the usage on a chunk with choices
                    // (or in an extension) still end with the usage chunk
                    // OpenAI clients expect: empty choices, the usage.
                    let mut chunk =
                        self.held_usage_chunk
                            .take()
                            .unwrap_or_else(|| ChatCompletionChunk {
                                id: String::new(),
                                object: openai::OBJECT_CHUNK.to_owned(),
                                created: 0,
                                model: self.model.clone(),
                                choices: Vec::new(),
                                usage: Some(self.usage().to_openai()),
                                system_fingerprint: None,
                                extra: Default::default(),
                            });
                    let (id, created) = self.stream_id(&chunk);
                    chunk.id = id;
                    chunk.created = created;
                    out.push(with_summary(None, &chunk, &summary));
                }
                out.push(comment(&summary));
                out.push(sse::openai_done());
            }
            Format::Anthropic => {
                let delta = self
                    .held_delta
                    .take()
                    .unwrap_or_else(|| StreamEvent::MessageDelta {
                        delta: Default::default(),
                        usage: self.usage.to_anthropic_delta(),
                    });
                out.push(with_summary(Some("message_delta"), &delta, &summary));
                out.push(comment(&summary));
                out.push(encode(Some("message_stop"), &StreamEvent::MessageStop));
            }
        }
        out
    }

    /// An error event in the client's format.
    pub fn error(&self, message: &str) -> Vec<Bytes> {
        let message = format!("the stream was interrupted: {message}");
        match self.client {
            Format::OpenAi => {
                let body = openai::ErrorBody::new("api_error", message);
                vec![encode(None, &body)]
            }
            Format::Anthropic => {
                let body = anthropic::ErrorBody::new(anthropic::ErrorType::ApiError, message);
                vec![encode(Some("error"), &body)]
            }
        }
    }

    /// The stream's cost summary as JSON text.
    fn summary(&self, cost: Cost) -> String {
        cost_summary(&self.model, self.usage(), cost, self.planner_cost)
    }

    fn client_chunk(
        &mut self,
        mut chunk: ChatCompletionChunk,
        out: &mut Vec<Bytes>,
    ) -> Result<(), String> {
        chunk.model.clone_from(&self.model);
        chunk.object = openai::OBJECT_CHUNK.to_owned();
        if let Some(usage) = &mut chunk.usage {
            crate::provider::wire::translate::complete_openai_usage(usage);
        }
        if chunk.choices.is_empty() {
            // The usage chunk is held for the end; a chunk with neither
            // choices nor usage (Azure's content-filter preamble, keep-alive
            // chunks) tells an OpenAI client nothing, and some clients index
            // `choices[0]` of every chunk.
            if chunk.usage.is_some() {
                self.held_usage_chunk = Some(chunk);
            }
            return Ok(());
        }
        let (id, created) = self.stream_id(&chunk);
        chunk.id = id;
        chunk.created = created;
        // Only the final chunk carries usage, as OpenAI sends it.
        chunk.usage = None;
        for choice in &mut chunk.choices {
            for call in &mut choice.delta.tool_calls {
                call.index = self.tool_call_index(call);
            }
        }
        out.push(encode(None, &chunk));
        Ok(())
    }

    /// The id and creation time every chunk of the stream carries: the
    /// upstream's first real ones, or made up when it sends none.
    fn stream_id(&mut self, chunk: &ChatCompletionChunk) -> (String, u64) {
        self.chunk_id
            .get_or_insert_with(|| {
                let id = if chunk.id.is_empty() {
                    crate::provider::generated_id("chatcmpl")
                } else {
                    chunk.id.clone()
                };
                let created = if chunk.created == 0 {
                    unix_now()
                } else {
                    chunk.created
                };
                (id, created)
            })
            .clone()
    }

    /// The index the client sees for a tool-call fragment: a new id is a
    /// new call whatever index the upstream gave it; a fragment without an
    /// id continues the call last seen at its upstream index.
    fn tool_call_index(&mut self, call: &mut openai::ToolCallDelta) -> u32 {
        let upstream = call.index;
        match call.id.as_deref().filter(|id| !id.is_empty()) {
            Some(id) => {
                let ours = match self.tool_ids.iter().position(|known| known == id) {
                    Some(i) => i as u32,
                    None => {
                        self.tool_ids.push(id.to_string());
                        // A call's first fragment says what it is.
                        call.kind.get_or_insert_with(|| "function".to_string());
                        (self.tool_ids.len() - 1) as u32
                    }
                };
                self.tool_index.insert(upstream, ours);
                ours
            }
            None => match self.tool_index.get(&upstream) {
                Some(ours) => *ours,
                None => {
                    // A call without any id: give it one, so the client can
                    // answer it.
                    let id = format!("call_{}_{}", self.tool_ids.len(), upstream);
                    self.tool_ids.push(id.clone());
                    call.id = Some(id);
                    call.kind.get_or_insert_with(|| "function".to_string());
                    let ours = (self.tool_ids.len() - 1) as u32;
                    self.tool_index.insert(upstream, ours);
                    ours
                }
            },
        }
    }

    fn client_event(&mut self, mut event: StreamEvent, out: &mut Vec<Bytes>) -> Result<(), String> {
        match (&event, self.message_started) {
            // A ping before the message (llmposter sends one first) would
            // make a message_start up too early: it carries nothing.
            (StreamEvent::Ping, false) => return Ok(()),
            // The upstream's own start after one made up: the client has
            // its start already (its usage was read by `feed`).
            (StreamEvent::MessageStart { .. }, true) => return Ok(()),
            _ => {}
        }
        // An Anthropic stream starts with message_start; an upstream that
        // skipped it still gives the client one.
        if !self.message_started && !matches!(event, StreamEvent::MessageStart { .. }) {
            let start = StreamEvent::MessageStart {
                message: anthropic::MessagesResponse::empty(
                    String::new(),
                    self.model.clone(),
                    self.usage.to_anthropic(),
                ),
            };
            self.client_event(start, out)?;
        }
        match &mut event {
            StreamEvent::MessageStart { message } => {
                self.message_started = true;
                message.model.clone_from(&self.model);
                if message.id.is_empty() {
                    message.id = crate::provider::generated_id("msg");
                }
                out.push(encode(Some("message_start"), &event));
                if !matches!(self.mode, Mode::AnthropicPass) {
                    // Anthropic sends a ping early in every stream.
                    out.push(encode(Some("ping"), &StreamEvent::Ping));
                }
                return Ok(());
            }
            StreamEvent::MessageDelta { .. } => {
                self.held_delta = Some(event);
                return Ok(());
            }
            // Sent by `finish`, after the held usage event.
            StreamEvent::MessageStop => return Ok(()),
            _ => {}
        }
        let name = event.event_type().to_string();
        out.push(encode(Some(&name), &event));
        Ok(())
    }
}

/// Groq reports a stream's usage in `x_groq.usage` on its last chunk:
/// read it as the chunk's usage when there is no other.
fn lift_extension_usage(chunk: &mut ChatCompletionChunk) {
    if chunk.usage.is_none()
        && let Some(usage) = chunk.extra.get("x_groq").and_then(|x| x.get("usage"))
        && let Ok(usage) = serde_json::from_value::<openai::Usage>(usage.clone())
    {
        chunk.usage = Some(usage);
    }
}

fn encode<T: Serialize>(event: Option<&str>, value: &T) -> Bytes {
    let data = serde_json::to_string(value).unwrap_or_else(|_| "{}".into());
    sse::encode_event(event, &data)
}

/// `value`, a JSON object, with a `pointsman` field added.
fn with_summary<T: Serialize>(event: Option<&str>, value: &T, summary: &str) -> Bytes {
    let mut data = serde_json::to_string(value).unwrap_or_else(|_| "{}".into());
    add_field(&mut data, "pointsman", summary);
    sse::encode_event(event, &data)
}

/// Why a chat relay refuses a Responses event: only a `/v1/responses`
/// client's call is ever passed through.
const PASSED_THROUGH: &str =
    "the provider answered in the Responses API, which this client does not speak";

pub(super) use crate::provider::wire::sse::add_field;

/// A stream's cost summary as JSON text: the `pointsman` object of its
/// final usage event.
pub(super) fn cost_summary(
    model: &str,
    usage: Usage,
    cost: Cost,
    planner_cost: Option<Cost>,
) -> String {
    // Fields in alphabetical order, as clients have always seen them.
    #[derive(Serialize)]
    struct Summary<'a> {
        baseline_cost_usd: String,
        cached_input_tokens: u64,
        cost_usd: String,
        input_tokens: u64,
        model: &'a str,
        output_tokens: u64,
        #[serde(skip_serializing_if = "Option::is_none")]
        planner_cost_usd: Option<String>,
    }
    let summary = Summary {
        baseline_cost_usd: format_usd(cost.baseline_usd),
        cached_input_tokens: usage.cached_input_tokens,
        cost_usd: format_usd(cost.usd),
        input_tokens: usage.input_tokens,
        model,
        output_tokens: usage.output_tokens,
        planner_cost_usd: planner_cost.map(|p| format_usd(p.usd)),
    };
    serde_json::to_string(&summary).unwrap_or_else(|_| "{}".into())
}

/// An SSE comment: ignored by SDKs, readable by people and scripts.
pub(super) fn comment(summary: &str) -> Bytes {
    Bytes::from(format!(": pointsman {summary}\n\n"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn text(out: &[Bytes]) -> String {
        out.iter().map(|b| String::from_utf8_lossy(b)).collect()
    }

    #[test]
    fn an_anthropic_stream_without_message_start_still_starts_with_one() {
        let mut relay = Relay::new(Format::Anthropic, "m", false);
        let event: StreamEvent = serde_json::from_value(json!({"type": "content_block_start",
            "index": 0, "content_block": {"type": "text", "text": ""}}))
        .expect("event");
        let out = text(&relay.feed(Event::Anthropic(event)).expect("relayed"));
        assert!(out.starts_with("event: message_start\n"), "{out}");
        assert!(out.contains("\"id\":\"msg-pm"), "an id is made up: {out}");
        assert!(out.contains("event: content_block_start"), "{out}");
        let end = text(&relay.finish(Cost::default()));
        assert_eq!(end.matches("event: message_start").count(), 0);
        assert!(end.contains("event: message_stop"), "{end}");
    }

    #[test]
    fn an_anthropic_stream_has_one_message_start_whatever_comes_first() {
        let event = |value: serde_json::Value| -> StreamEvent {
            serde_json::from_value(value).expect("event")
        };
        let start = json!({"type": "message_start", "message": {"id": "msg_up", "type": "message",
            "role": "assistant", "model": "up", "content": [], "stop_reason": null,
            "usage": {"input_tokens": 7, "output_tokens": 1}}});
        let block = json!({"type": "content_block_start", "index": 0,
            "content_block": {"type": "text", "text": ""}});
        // A ping first (llmposter's order), and a start after a block.
        for order in [
            vec![json!({"type": "ping"}), start.clone(), block.clone()],
            vec![block.clone(), start.clone()],
        ] {
            let mut relay = Relay::new(Format::Anthropic, "m", false);
            let mut out = String::new();
            for value in &order {
                out += &text(&relay.feed(Event::Anthropic(event(value.clone()))).unwrap());
            }
            assert_eq!(
                out.matches("event: message_start").count(),
                1,
                "{order:?}: {out}"
            );
            assert!(out.starts_with("event: message_start\n"), "{out}");
        }
    }

    #[test]
    fn parallel_openai_tool_calls_without_index_get_one_each() {
        let mut relay = Relay::new(Format::OpenAi, "m", true);
        let chunk: ChatCompletionChunk = serde_json::from_value(json!({"id": "", "choices": [{
            "delta": {"tool_calls": [
                {"id": "a", "function": {"name": "f", "arguments": "{}"}},
                {"id": "b", "function": {"name": "g", "arguments": "{}"}}]},
            "finish_reason": "tool_calls"}]}))
        .expect("chunk");
        let out = text(&relay.feed(Event::OpenAi(chunk)).expect("relayed"));
        let data: serde_json::Value =
            serde_json::from_str(out.trim().trim_start_matches("data: ")).expect("json");
        let calls = &data["choices"][0]["delta"]["tool_calls"];
        assert_eq!(
            (calls[0]["index"].as_u64(), calls[1]["index"].as_u64()),
            (Some(0), Some(1))
        );
        assert_eq!(calls[1]["type"], "function");
        assert!(
            data["id"].as_str().is_some_and(|id| !id.is_empty()),
            "{data}"
        );
        // The final usage chunk comes even though the upstream sent none.
        let end = text(&relay.finish(Cost::default()));
        assert!(
            end.contains("\"choices\":[]") && end.contains("\"usage\""),
            "{end}"
        );
    }
}

//! OpenAI chunk stream → Anthropic event stream.

use serde_json::{Map, Value};

use super::response::finish_reason_to_stop_reason;
use super::sse::SseEvent;
use super::{TranslateError, Usage, anthropic, openai, sanitize_tool_id};
use anthropic::{BlockDelta, ContentBlock, StreamEvent};

/// Id reported when the upstream's chunks carry none.
const FALLBACK_MESSAGE_ID: &str = "msg_pointsman";

/// Turns an upstream OpenAI chunk stream into the Anthropic event stream a
/// Messages client expects.
///
/// Anthropic content blocks are strictly sequential — one opens, receives
/// deltas and closes before the next opens — whereas an OpenAI delta may
/// mix text and tool-call fragments. The translator therefore closes the
/// open block whenever a fragment of another kind (text, or another tool
/// call) arrives. Tool calls are told apart by `index` and, for servers
/// that reuse index 0, by a changed `id`.
///
/// `message_start` goes out with the first chunk that has a choice or usage
/// (skipping preambles such as Azure's prompt-filter chunk) and carries
/// zero usage: OpenAI reports usage only at the end, so the complete
/// counts, input included, travel in the final `message_delta` — the
/// cumulative form newer Anthropic SDKs read. `message_delta` and
/// `message_stop` are emitted by [`Self::finish`], since the usage chunk
/// may follow the `finish_reason` chunk.
///
/// Only choice 0 is translated; OpenAI `reasoning_content` is not turned
/// into thinking blocks (see the module docs).
#[derive(Debug)]
pub struct OpenAiToAnthropicStream {
    model: String,
    message_id: String,
    started: bool,
    finished: bool,
    next_block: u32,
    open: Option<OpenBlock>,
    /// OpenAI index and id of every tool call opened so far.
    tool_calls: Vec<(u32, Option<String>)>,
    finish_reason: Option<openai::FinishReason>,
    usage: Usage,
}

#[derive(Debug)]
enum OpenBlock {
    Text {
        block: u32,
    },
    Tool {
        block: u32,
        openai_index: u32,
        id: Option<String>,
    },
}

impl OpenAiToAnthropicStream {
    /// A translator that reports `model` when the upstream's chunks carry
    /// no model name (usually the model the client asked for).
    pub fn new(model: impl Into<String>) -> Self {
        Self {
            model: model.into(),
            message_id: String::new(),
            started: false,
            finished: false,
            next_block: 0,
            open: None,
            tool_calls: Vec::new(),
            finish_reason: None,
            usage: Usage::default(),
        }
    }

    /// Usage reported by the upstream so far (final once the usage chunk
    /// has been fed).
    pub fn usage(&self) -> Usage {
        self.usage
    }

    /// Whether [`Self::finish`] has run.
    pub fn is_finished(&self) -> bool {
        self.finished
    }

    /// Translates one upstream chunk.
    pub fn feed(
        &mut self,
        chunk: openai::ChatCompletionChunk,
    ) -> Result<Vec<StreamEvent>, TranslateError> {
        if self.finished {
            return Err(TranslateError::StreamFinished);
        }
        let mut events = Vec::new();
        if let Some(usage) = &chunk.usage {
            // Servers that repeat usage on every chunk send running totals,
            // so the latest report replaces the previous one.
            self.usage = Usage::from(usage);
        }
        let choice = chunk.choices.into_iter().find(|c| c.index == 0);
        if !self.started {
            if choice.is_none() && chunk.usage.is_none() {
                return Ok(events);
            }
            self.start(chunk.id, chunk.model, &mut events);
        }
        let Some(choice) = choice else {
            return Ok(events);
        };
        let delta = choice.delta;
        for text in [delta.content, delta.refusal].into_iter().flatten() {
            if !text.is_empty() {
                self.text(text, &mut events);
            }
        }
        for call in delta.tool_calls {
            self.tool_call(call, &mut events)?;
        }
        if let Some(reason) = choice.finish_reason {
            self.close_block(&mut events);
            self.finish_reason = Some(reason);
        }
        Ok(events)
    }

    /// Translates one upstream SSE event: `[DONE]` finishes the stream, an
    /// `{"error": ...}` payload becomes [`TranslateError::Upstream`], a
    /// blank payload is skipped, and anything else must be a chunk.
    pub fn feed_sse(&mut self, event: &SseEvent) -> Result<Vec<StreamEvent>, TranslateError> {
        if event.is_openai_done() {
            return Ok(self.finish());
        }
        if event.data.trim().is_empty() {
            // Blank keep-alive payloads carry nothing.
            return Ok(Vec::new());
        }
        let value: Value =
            serde_json::from_str(&event.data).map_err(|source| TranslateError::InvalidJson {
                what: "OpenAI stream chunk",
                source,
            })?;
        if let Some(error) = value.get("error") {
            let detail: openai::ErrorDetail =
                serde_json::from_value(error.clone()).map_err(|source| {
                    TranslateError::InvalidJson {
                        what: "OpenAI stream error",
                        source,
                    }
                })?;
            return Err(TranslateError::Upstream {
                kind: detail.kind,
                message: detail.message,
            });
        }
        let chunk =
            serde_json::from_value(value).map_err(|source| TranslateError::InvalidJson {
                what: "OpenAI stream chunk",
                source,
            })?;
        self.feed(chunk)
    }

    /// Ends the stream once the upstream has ended: closes the open block
    /// and emits `message_delta` (stop reason and cumulative usage) and
    /// `message_stop`. A stream that never started still gets a complete,
    /// empty message, so the client sees a well-formed end. Calling it
    /// again returns nothing.
    ///
    /// If the upstream ended without a `finish_reason` (a dropped
    /// connection), the stop reason is a guess; the gateway may prefer to
    /// send an `error` event instead of calling this.
    pub fn finish(&mut self) -> Vec<StreamEvent> {
        if self.finished {
            return Vec::new();
        }
        self.finished = true;
        let mut events = Vec::new();
        if !self.started {
            self.start(String::new(), String::new(), &mut events);
        }
        self.close_block(&mut events);
        let stop_reason =
            finish_reason_to_stop_reason(self.finish_reason.as_ref(), !self.tool_calls.is_empty());
        events.push(StreamEvent::MessageDelta {
            delta: anthropic::MessageDelta {
                stop_reason: Some(stop_reason),
                stop_sequence: None,
                extra: Map::new(),
            },
            usage: self.usage.to_anthropic_delta(),
        });
        events.push(StreamEvent::MessageStop);
        events
    }

    fn start(&mut self, id: String, model: String, events: &mut Vec<StreamEvent>) {
        self.started = true;
        self.message_id = if id.is_empty() {
            FALLBACK_MESSAGE_ID.to_owned()
        } else {
            super::anthropic_message_id(&id)
        };
        let model = if model.is_empty() {
            self.model.clone()
        } else {
            model
        };
        events.push(StreamEvent::MessageStart {
            message: anthropic::MessagesResponse::empty(
                self.message_id.clone(),
                model,
                self.usage.to_anthropic(),
            ),
        });
    }

    fn text(&mut self, text: String, events: &mut Vec<StreamEvent>) {
        let block = match self.open {
            Some(OpenBlock::Text { block }) => block,
            _ => {
                self.close_block(events);
                let block = self.open_block(ContentBlock::text(""), events);
                self.open = Some(OpenBlock::Text { block });
                block
            }
        };
        events.push(StreamEvent::ContentBlockDelta {
            index: block,
            delta: BlockDelta::TextDelta { text },
        });
    }

    fn tool_call(
        &mut self,
        call: openai::ToolCallDelta,
        events: &mut Vec<StreamEvent>,
    ) -> Result<(), TranslateError> {
        let id = call.id.filter(|id| !id.is_empty());
        let (name, arguments) = call
            .function
            .map(|f| (f.name, f.arguments))
            .unwrap_or_default();
        let open_block = match &self.open {
            Some(OpenBlock::Tool {
                block,
                openai_index,
                id: open_id,
            }) if *openai_index == call.index
                && (id.is_none() || open_id.is_none() || id == *open_id) =>
            {
                Some(*block)
            }
            _ => None,
        };
        let block = match open_block {
            Some(block) => block,
            None => self.start_tool_call(call.index, id, name, events)?,
        };
        if let Some(partial_json) = arguments.filter(|a| !a.is_empty()) {
            events.push(StreamEvent::ContentBlockDelta {
                index: block,
                delta: BlockDelta::InputJsonDelta { partial_json },
            });
        }
        Ok(())
    }

    fn start_tool_call(
        &mut self,
        openai_index: u32,
        id: Option<String>,
        name: Option<String>,
        events: &mut Vec<StreamEvent>,
    ) -> Result<u32, TranslateError> {
        // Anthropic blocks cannot be reopened, and a second block with the
        // same id would confuse the client's tool bookkeeping.
        let seen = self.tool_calls.iter().any(|(index, seen_id)| match &id {
            Some(id) => seen_id.as_ref() == Some(id),
            None => *index == openai_index,
        });
        if seen {
            return Err(TranslateError::StreamProtocol(format!(
                "a fragment of tool call {openai_index} arrived after another content block started"
            )));
        }
        self.close_block(events);
        let block_id = match &id {
            Some(id) => sanitize_tool_id(id).into_owned(),
            // Unique across the conversation, as the message id is.
            None => format!(
                "toolu_{}_{}",
                sanitize_tool_id(&self.message_id),
                self.next_block
            ),
        };
        let block = self.open_block(
            ContentBlock::tool_use(
                block_id,
                name.unwrap_or_default(),
                Value::Object(Map::new()),
            ),
            events,
        );
        self.tool_calls.push((openai_index, id.clone()));
        self.open = Some(OpenBlock::Tool {
            block,
            openai_index,
            id,
        });
        Ok(block)
    }

    fn open_block(&mut self, content_block: ContentBlock, events: &mut Vec<StreamEvent>) -> u32 {
        let index = self.next_block;
        self.next_block += 1;
        events.push(StreamEvent::ContentBlockStart {
            index,
            content_block,
        });
        index
    }

    fn close_block(&mut self, events: &mut Vec<StreamEvent>) {
        if let Some(OpenBlock::Text { block } | OpenBlock::Tool { block, .. }) = self.open.take() {
            events.push(StreamEvent::ContentBlockStop { index: block });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn chunk(choices: Value) -> openai::ChatCompletionChunk {
        serde_json::from_value(json!({
            "id": "chatcmpl-9", "object": "chat.completion.chunk", "created": 1,
            "model": "gpt-4o", "choices": choices
        }))
        .expect("chunk")
    }

    fn delta(delta: Value, finish_reason: Value) -> openai::ChatCompletionChunk {
        chunk(json!([{"index": 0, "delta": delta, "finish_reason": finish_reason}]))
    }

    fn usage_chunk(prompt: u64, completion: u64, cached: u64) -> openai::ChatCompletionChunk {
        serde_json::from_value(json!({
            "id": "chatcmpl-9", "object": "chat.completion.chunk", "created": 1,
            "model": "gpt-4o", "choices": [],
            "usage": {"prompt_tokens": prompt, "completion_tokens": completion,
                      "total_tokens": prompt + completion,
                      "prompt_tokens_details": {"cached_tokens": cached}}
        }))
        .expect("chunk")
    }

    /// Feeds every chunk, then finishes, and returns all events as JSON.
    fn run(
        stream: &mut OpenAiToAnthropicStream,
        chunks: Vec<openai::ChatCompletionChunk>,
    ) -> Vec<Value> {
        let mut events = Vec::new();
        for chunk in chunks {
            events.extend(stream.feed(chunk).expect("feed"));
        }
        events.extend(stream.finish());
        events
            .iter()
            .map(|e| serde_json::to_value(e).expect("serialize"))
            .collect()
    }

    fn message_start(id: &str, model: &str) -> Value {
        json!({"type": "message_start", "message": {
            "id": id, "type": "message", "role": "assistant", "model": model, "content": [],
            "stop_reason": null, "stop_sequence": null,
            "usage": {"input_tokens": 0, "output_tokens": 0,
                      "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0}
        }})
    }

    #[test]
    fn text_answer() {
        let mut stream = OpenAiToAnthropicStream::new("requested-model");
        let events = run(
            &mut stream,
            vec![
                delta(json!({"role": "assistant", "content": ""}), Value::Null),
                delta(json!({"content": "Hel"}), Value::Null),
                delta(json!({"content": "lo"}), Value::Null),
                delta(json!({}), json!("stop")),
                usage_chunk(100, 2, 40),
            ],
        );
        assert_eq!(
            events,
            vec![
                message_start("msg_chatcmpl-9", "gpt-4o"),
                json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}),
                json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Hel"}}),
                json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "lo"}}),
                json!({"type": "content_block_stop", "index": 0}),
                json!({"type": "message_delta", "delta": {"stop_reason": "end_turn", "stop_sequence": null},
                       "usage": {"output_tokens": 2, "input_tokens": 60,
                                 "cache_creation_input_tokens": 0, "cache_read_input_tokens": 40}}),
                json!({"type": "message_stop"}),
            ]
        );
        assert_eq!(
            stream.usage(),
            Usage {
                input_tokens: 100,
                output_tokens: 2,
                cached_input_tokens: 40,
                cache_creation_input_tokens: 0
            }
        );
        assert!(stream.is_finished());
        assert!(stream.finish().is_empty(), "finish is idempotent");
        assert!(matches!(
            stream.feed(delta(json!({"content": "late"}), Value::Null)),
            Err(TranslateError::StreamFinished)
        ));
    }

    #[test]
    fn text_then_two_tool_calls() {
        let mut stream = OpenAiToAnthropicStream::new("m");
        let events = run(
            &mut stream,
            vec![
                delta(
                    json!({"role": "assistant", "content": "Checking."}),
                    Value::Null,
                ),
                delta(
                    json!({"tool_calls": [{"index": 0, "id": "call_a", "type": "function",
                                           "function": {"name": "get_weather", "arguments": ""}}]}),
                    Value::Null,
                ),
                delta(
                    json!({"tool_calls": [{"index": 0, "function": {"arguments": "{\"city\":"}}]}),
                    Value::Null,
                ),
                delta(
                    json!({"tool_calls": [{"index": 0, "function": {"arguments": "\"Paris\"}"}}]}),
                    Value::Null,
                ),
                delta(
                    json!({"tool_calls": [{"index": 1, "id": "call_b", "type": "function",
                                           "function": {"name": "get_time", "arguments": "{}"}}]}),
                    Value::Null,
                ),
                delta(json!({}), json!("tool_calls")),
                usage_chunk(50, 30, 0),
            ],
        );
        assert_eq!(
            events,
            vec![
                message_start("msg_chatcmpl-9", "gpt-4o"),
                json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}),
                json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Checking."}}),
                json!({"type": "content_block_stop", "index": 0}),
                json!({"type": "content_block_start", "index": 1, "content_block":
                       {"type": "tool_use", "id": "call_a", "name": "get_weather", "input": {}}}),
                json!({"type": "content_block_delta", "index": 1, "delta": {"type": "input_json_delta", "partial_json": "{\"city\":"}}),
                json!({"type": "content_block_delta", "index": 1, "delta": {"type": "input_json_delta", "partial_json": "\"Paris\"}"}}),
                json!({"type": "content_block_stop", "index": 1}),
                json!({"type": "content_block_start", "index": 2, "content_block":
                       {"type": "tool_use", "id": "call_b", "name": "get_time", "input": {}}}),
                json!({"type": "content_block_delta", "index": 2, "delta": {"type": "input_json_delta", "partial_json": "{}"}}),
                json!({"type": "content_block_stop", "index": 2}),
                json!({"type": "message_delta", "delta": {"stop_reason": "tool_use", "stop_sequence": null},
                       "usage": {"output_tokens": 30, "input_tokens": 50,
                                 "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0}}),
                json!({"type": "message_stop"}),
            ]
        );
    }

    #[test]
    fn servers_reusing_index_zero_are_split_by_id_and_odd_ids_sanitised() {
        let mut stream = OpenAiToAnthropicStream::new("m");
        let events = run(
            &mut stream,
            vec![chunk(json!([{"index": 0, "delta": {"tool_calls": [
                    {"id": "functions.a:0", "function": {"name": "a", "arguments": "{\"x\":1}"}},
                    {"id": "functions.b:1", "function": {"name": "b", "arguments": "{}"}}
                ]}, "finish_reason": "stop"}]))],
        );
        let kinds: Vec<_> = events.iter().map(|e| e["type"].clone()).collect();
        assert_eq!(
            kinds,
            [
                "message_start",
                "content_block_start",
                "content_block_delta",
                "content_block_stop",
                "content_block_start",
                "content_block_delta",
                "content_block_stop",
                "message_delta",
                "message_stop"
            ]
        );
        assert_eq!(events[1]["content_block"]["id"], "functions_a_0");
        assert_eq!(events[4]["content_block"]["id"], "functions_b_1");
        assert_eq!(
            events[7]["delta"]["stop_reason"], "tool_use",
            "tool calls finished with `stop` still end in tool_use"
        );
    }

    #[test]
    fn missing_tool_id_gets_a_unique_one_and_idless_repeat_is_an_error() {
        let mut stream = OpenAiToAnthropicStream::new("m");
        let events = stream
            .feed(delta(
                json!({"tool_calls": [{"index": 0, "function": {"name": "f", "arguments": "{}"}}]}),
                Value::Null,
            ))
            .expect("feed");
        let StreamEvent::ContentBlockStart {
            content_block: ContentBlock::ToolUse(call),
            ..
        } = &events[1]
        else {
            panic!("expected a tool_use block start, got {events:?}");
        };
        assert_eq!(call.id, "toolu_msg_chatcmpl-9_0");
        stream
            .feed(delta(json!({"content": "interleaved text"}), Value::Null))
            .expect("text closes the tool block");
        let err = stream
            .feed(delta(
                json!({"tool_calls": [{"index": 0, "function": {"arguments": "more"}}]}),
                Value::Null,
            ))
            .expect_err("cannot reopen a closed block");
        assert!(matches!(err, TranslateError::StreamProtocol(_)), "{err}");
    }

    #[test]
    fn repeated_id_after_another_block_is_an_error() {
        let mut stream = OpenAiToAnthropicStream::new("m");
        let call = |id: &str| {
            delta(
                json!({"tool_calls": [{"index": 0, "id": id, "function": {"arguments": "{}"}}]}),
                Value::Null,
            )
        };
        stream.feed(call("call_a")).expect("first call");
        stream
            .feed(call("call_a"))
            .expect("servers that repeat the id on every fragment continue the call");
        stream.feed(call("call_b")).expect("a new id is a new call");
        let err = stream
            .feed(call("call_a"))
            .expect_err("call_a's block is closed");
        assert!(matches!(err, TranslateError::StreamProtocol(_)), "{err}");
    }

    #[test]
    fn preamble_without_choices_is_skipped_and_fallbacks_apply() {
        let mut stream = OpenAiToAnthropicStream::new("client-model");
        let preamble: openai::ChatCompletionChunk = serde_json::from_value(json!({
            "id": "", "object": "", "created": 0, "model": "", "choices": [],
            "prompt_filter_results": []
        }))
        .expect("chunk");
        assert!(stream.feed(preamble).expect("feed").is_empty());
        let mut first: openai::ChatCompletionChunk = delta(json!({"content": "x"}), Value::Null);
        first.id.clear();
        first.model.clear();
        let events = stream.feed(first).expect("feed");
        assert_eq!(
            serde_json::to_value(&events[0]).expect("serialize"),
            message_start("msg_pointsman", "client-model")
        );
    }

    #[test]
    fn empty_upstream_still_yields_a_complete_message() {
        let mut stream = OpenAiToAnthropicStream::new("m");
        let events = run(&mut stream, vec![]);
        let kinds: Vec<_> = events.iter().map(|e| e["type"].clone()).collect();
        assert_eq!(kinds, ["message_start", "message_delta", "message_stop"]);
        assert_eq!(events[1]["delta"]["stop_reason"], "end_turn");
    }

    #[test]
    fn length_finish_maps_to_max_tokens() {
        let mut stream = OpenAiToAnthropicStream::new("m");
        let events = run(
            &mut stream,
            vec![delta(json!({"content": "trunc"}), json!("length"))],
        );
        assert_eq!(events[4]["delta"]["stop_reason"], "max_tokens");
    }

    #[test]
    fn feed_sse_handles_chunks_done_and_errors() {
        let mut stream = OpenAiToAnthropicStream::new("m");
        let data = serde_json::to_string(&delta(json!({"content": "hi"}), json!("stop")))
            .expect("serialize");
        let events = stream
            .feed_sse(&SseEvent { event: None, data })
            .expect("chunk");
        assert_eq!(events.len(), 4, "start, block start, delta, block stop");
        let events = stream
            .feed_sse(&SseEvent {
                event: None,
                data: "[DONE]".into(),
            })
            .expect("done");
        assert_eq!(events.len(), 2, "message_delta, message_stop");
        assert!(stream.is_finished());

        let mut stream = OpenAiToAnthropicStream::new("m");
        let err = stream
            .feed_sse(&SseEvent {
                event: None,
                data:
                    r#"{"error":{"message":"boom","type":"server_error","param":null,"code":null}}"#
                        .into(),
            })
            .expect_err("error payload");
        assert!(
            matches!(&err, TranslateError::Upstream { kind, message } if kind == "server_error" && message == "boom"),
            "{err}"
        );
        let err = stream
            .feed_sse(&SseEvent {
                event: None,
                data: "{not json".into(),
            })
            .expect_err("bad json");
        assert!(
            err.to_string().starts_with("invalid OpenAI stream chunk"),
            "{err}"
        );
    }
}

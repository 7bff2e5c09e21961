//! Anthropic event stream → OpenAI chunk stream.

use serde_json::{Map, Value};

use super::response::{REASONING_CONTENT, stop_reason_to_finish_reason};
use super::sse::SseEvent;
use super::{TranslateError, Usage, anthropic, arguments_from_tool_input, openai};
use anthropic::{BlockDelta, ContentBlock, StreamEvent};
use openai::{ChatCompletionChunk, Delta, FinishReason, ToolCallDelta};

/// Turns an upstream Anthropic event stream into the OpenAI chunk stream a
/// Chat Completions client expects.
///
/// * `message_start` → a first chunk with `role: "assistant"` and empty
///   content (as OpenAI sends it).
/// * A `tool_use` block start → a tool-call delta with `id`, `type`, `name`
///   and empty `arguments`; each `input_json_delta` → an `arguments`
///   fragment. OpenAI tool-call indexes count tool calls only (0, 1, ...),
///   whatever the Anthropic block index.
/// * Text deltas → `content`; thinking deltas → `reasoning_content`;
///   signatures, citations and hosted-tool blocks are dropped.
/// * `message_delta` → a chunk with empty delta and the `finish_reason`;
///   `message_stop` → when `include_usage`, a final chunk with no choices
///   and the usage. The SSE `[DONE]` line is the caller's to write.
/// * An `error` event → [`TranslateError::Upstream`].
///
/// All chunks share the message's id and model and the `created` time.
#[derive(Debug)]
pub struct AnthropicToOpenAiStream {
    include_usage: bool,
    created: u64,
    id: String,
    model: String,
    started: bool,
    finish_sent: bool,
    finished: bool,
    /// Anthropic block index → what it is, for every block started.
    blocks: Vec<(u32, BlockKind)>,
    next_tool_index: u32,
    usage: Usage,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BlockKind {
    Text,
    Tool { openai_index: u32 },
    Thinking,
    Ignored,
}

impl AnthropicToOpenAiStream {
    /// A translator; `include_usage` mirrors the client's
    /// `stream_options.include_usage`, `created` is the Unix time to report.
    pub fn new(include_usage: bool, created: u64) -> Self {
        Self {
            include_usage,
            created,
            id: String::new(),
            model: String::new(),
            started: false,
            finish_sent: false,
            finished: false,
            blocks: Vec::new(),
            next_tool_index: 0,
            usage: Usage::default(),
        }
    }

    /// Usage reported by the upstream so far (final after `message_delta`).
    pub fn usage(&self) -> Usage {
        self.usage
    }

    /// Whether the stream has ended (`message_stop` or [`Self::finish`]).
    pub fn is_finished(&self) -> bool {
        self.finished
    }

    /// Translates one upstream event.
    pub fn feed(&mut self, event: StreamEvent) -> Result<Vec<ChatCompletionChunk>, TranslateError> {
        match event {
            // Keep-alives and unknown event types carry nothing to forward,
            // and may legitimately arrive at any time.
            StreamEvent::Ping | StreamEvent::Other(_) => return Ok(Vec::new()),
            StreamEvent::Error { error } => {
                return Err(TranslateError::Upstream {
                    kind: error.kind.as_str().to_owned(),
                    message: error.message,
                });
            }
            _ if self.finished => return Err(TranslateError::StreamFinished),
            StreamEvent::MessageStart { message } => return self.message_start(message),
            _ if !self.started => {
                return Err(protocol(format!(
                    "`{}` before `message_start`",
                    event.event_type()
                )));
            }
            _ => {}
        }
        let mut chunks = Vec::new();
        match event {
            StreamEvent::ContentBlockStart {
                index,
                content_block,
            } => self.block_start(index, content_block, &mut chunks)?,
            StreamEvent::ContentBlockDelta { index, delta } => {
                self.block_delta(index, delta, &mut chunks)?;
            }
            StreamEvent::ContentBlockStop { index } => {
                self.kind_of(index)?;
            }
            StreamEvent::MessageDelta { delta, usage } => {
                self.usage.apply_message_delta(&usage);
                if let Some(reason) = delta.stop_reason.filter(|_| !self.finish_sent) {
                    chunks.push(self.finish_chunk(stop_reason_to_finish_reason(&reason)));
                }
            }
            StreamEvent::MessageStop => chunks = self.finish(),
            // Handled above.
            StreamEvent::MessageStart { .. }
            | StreamEvent::Ping
            | StreamEvent::Error { .. }
            | StreamEvent::Other(_) => {}
        }
        Ok(chunks)
    }

    /// Translates one upstream SSE event (its JSON `type` decides; the SSE
    /// `event:` name is redundant). A blank payload is skipped.
    pub fn feed_sse(
        &mut self,
        event: &SseEvent,
    ) -> Result<Vec<ChatCompletionChunk>, TranslateError> {
        if event.data.trim().is_empty() {
            return Ok(Vec::new());
        }
        let event =
            serde_json::from_str(&event.data).map_err(|source| TranslateError::InvalidJson {
                what: "Anthropic stream event",
                source,
            })?;
        self.feed(event)
    }

    /// Ends the stream: emits the `finish_reason` chunk if `message_delta`
    /// did not, then the usage chunk when requested. Runs by itself on
    /// `message_stop`; call it when the upstream ends without one. Calling
    /// it again, or before `message_start`, returns nothing.
    pub fn finish(&mut self) -> Vec<ChatCompletionChunk> {
        if self.finished {
            return Vec::new();
        }
        self.finished = true;
        if !self.started {
            return Vec::new();
        }
        let mut chunks = Vec::new();
        if !self.finish_sent {
            chunks.push(self.finish_chunk(FinishReason::Stop));
        }
        if self.include_usage {
            let mut chunk = self.chunk(Vec::new());
            chunk.usage = Some(self.usage.to_openai());
            chunks.push(chunk);
        }
        chunks
    }

    fn message_start(
        &mut self,
        message: anthropic::MessagesResponse,
    ) -> Result<Vec<ChatCompletionChunk>, TranslateError> {
        if self.started {
            return Err(protocol("a second `message_start`".to_owned()));
        }
        self.started = true;
        self.id = message.id;
        self.model = message.model;
        self.usage = Usage::from(&message.usage);
        Ok(vec![self.delta_chunk(Delta {
            role: Some("assistant".to_owned()),
            content: Some(String::new()),
            ..Delta::default()
        })])
    }

    fn block_start(
        &mut self,
        index: u32,
        block: ContentBlock,
        chunks: &mut Vec<ChatCompletionChunk>,
    ) -> Result<(), TranslateError> {
        if self.blocks.iter().any(|(i, _)| *i == index) {
            return Err(protocol(format!("content block {index} started twice")));
        }
        let kind = match block {
            ContentBlock::Text(text) => {
                if !text.text.is_empty() {
                    chunks.push(self.text_chunk(text.text));
                }
                BlockKind::Text
            }
            ContentBlock::ToolUse(call) => {
                let openai_index = self.next_tool_index;
                self.next_tool_index += 1;
                // Normally `input` is `{}` here and arrives as deltas; a
                // proxy that sends it whole in the start event is honoured.
                let arguments = match &call.input {
                    Value::Object(map) if map.is_empty() => String::new(),
                    input => arguments_from_tool_input(input),
                };
                chunks.push(self.delta_chunk(Delta {
                    tool_calls: vec![ToolCallDelta {
                        index: openai_index,
                        id: Some(call.id),
                        kind: Some("function".to_owned()),
                        function: Some(openai::FunctionCallDelta {
                            name: Some(call.name),
                            arguments: Some(arguments),
                        }),
                        extra: Map::new(),
                    }],
                    ..Delta::default()
                }));
                BlockKind::Tool { openai_index }
            }
            ContentBlock::Thinking(thinking) => {
                if !thinking.thinking.is_empty() {
                    chunks.push(self.reasoning_chunk(thinking.thinking));
                }
                BlockKind::Thinking
            }
            _ => BlockKind::Ignored,
        };
        self.blocks.push((index, kind));
        Ok(())
    }

    fn block_delta(
        &mut self,
        index: u32,
        delta: BlockDelta,
        chunks: &mut Vec<ChatCompletionChunk>,
    ) -> Result<(), TranslateError> {
        let kind = self.kind_of(index)?;
        match (kind, delta) {
            (BlockKind::Text, BlockDelta::TextDelta { text }) => {
                if !text.is_empty() {
                    chunks.push(self.text_chunk(text));
                }
            }
            (BlockKind::Tool { openai_index }, BlockDelta::InputJsonDelta { partial_json }) => {
                if !partial_json.is_empty() {
                    chunks.push(self.delta_chunk(Delta {
                        tool_calls: vec![ToolCallDelta {
                            index: openai_index,
                            function: Some(openai::FunctionCallDelta {
                                name: None,
                                arguments: Some(partial_json),
                            }),
                            ..ToolCallDelta::default()
                        }],
                        ..Delta::default()
                    }));
                }
            }
            (BlockKind::Thinking, BlockDelta::ThinkingDelta { thinking }) => {
                if !thinking.is_empty() {
                    chunks.push(self.reasoning_chunk(thinking));
                }
            }
            (BlockKind::Thinking, BlockDelta::SignatureDelta { .. })
            | (BlockKind::Ignored, _)
            | (_, BlockDelta::Other(_)) => {}
            (kind, delta) => {
                return Err(protocol(format!(
                    "{} for {kind:?} content block {index}",
                    delta_type(&delta)
                )));
            }
        }
        Ok(())
    }

    fn kind_of(&self, index: u32) -> Result<BlockKind, TranslateError> {
        self.blocks
            .iter()
            .find(|(i, _)| *i == index)
            .map(|(_, kind)| *kind)
            .ok_or_else(|| {
                protocol(format!(
                    "event for content block {index}, which never started"
                ))
            })
    }

    fn chunk(&self, choices: Vec<openai::ChunkChoice>) -> ChatCompletionChunk {
        ChatCompletionChunk {
            id: self.id.clone(),
            object: openai::OBJECT_CHUNK.to_owned(),
            created: self.created,
            model: self.model.clone(),
            choices,
            usage: None,
            system_fingerprint: None,
            extra: Map::new(),
        }
    }

    fn delta_chunk(&self, delta: Delta) -> ChatCompletionChunk {
        self.chunk(vec![openai::ChunkChoice {
            index: 0,
            delta,
            finish_reason: None,
            extra: Map::new(),
        }])
    }

    fn text_chunk(&self, text: String) -> ChatCompletionChunk {
        self.delta_chunk(Delta {
            content: Some(text),
            ..Delta::default()
        })
    }

    fn reasoning_chunk(&self, thinking: String) -> ChatCompletionChunk {
        let mut delta = Delta::default();
        delta
            .extra
            .insert(REASONING_CONTENT.to_owned(), Value::String(thinking));
        self.delta_chunk(delta)
    }

    fn finish_chunk(&mut self, reason: FinishReason) -> ChatCompletionChunk {
        self.finish_sent = true;
        self.chunk(vec![openai::ChunkChoice {
            index: 0,
            delta: Delta::default(),
            finish_reason: Some(reason),
            extra: Map::new(),
        }])
    }
}

fn protocol(message: String) -> TranslateError {
    TranslateError::StreamProtocol(message)
}

fn delta_type(delta: &BlockDelta) -> &'static str {
    match delta {
        BlockDelta::TextDelta { .. } => "text_delta",
        BlockDelta::InputJsonDelta { .. } => "input_json_delta",
        BlockDelta::ThinkingDelta { .. } => "thinking_delta",
        BlockDelta::SignatureDelta { .. } => "signature_delta",
        BlockDelta::Other(_) => "unknown delta",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn event(value: Value) -> StreamEvent {
        serde_json::from_value(value).expect("event")
    }

    fn message_start(usage: Value) -> StreamEvent {
        event(json!({"type": "message_start", "message": {
            "id": "msg_1", "type": "message", "role": "assistant", "model": "claude-x",
            "content": [], "stop_reason": null, "stop_sequence": null, "usage": usage
        }}))
    }

    /// Feeds every event and returns all chunks as JSON.
    fn run(stream: &mut AnthropicToOpenAiStream, events: Vec<StreamEvent>) -> Vec<Value> {
        let mut chunks = Vec::new();
        for event in events {
            chunks.extend(stream.feed(event).expect("feed"));
        }
        chunks
            .iter()
            .map(|c| serde_json::to_value(c).expect("serialize"))
            .collect()
    }

    /// The JSON of a chunk with one choice.
    fn chunk(delta: Value, finish_reason: Value) -> Value {
        json!({"id": "msg_1", "object": "chat.completion.chunk", "created": 42, "model": "claude-x",
               "choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason}]})
    }

    #[test]
    fn text_answer() {
        let mut stream = AnthropicToOpenAiStream::new(true, 42);
        let chunks = run(
            &mut stream,
            vec![
                message_start(json!({"input_tokens": 25, "output_tokens": 1,
                                     "cache_read_input_tokens": 75, "cache_creation_input_tokens": 0})),
                event(
                    json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}),
                ),
                event(json!({"type": "ping"})),
                event(
                    json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Hel"}}),
                ),
                event(
                    json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "lo"}}),
                ),
                event(json!({"type": "content_block_stop", "index": 0})),
                event(
                    json!({"type": "message_delta", "delta": {"stop_reason": "end_turn", "stop_sequence": null},
                             "usage": {"output_tokens": 12}}),
                ),
                event(json!({"type": "message_stop"})),
            ],
        );
        assert_eq!(
            chunks,
            vec![
                chunk(json!({"role": "assistant", "content": ""}), Value::Null),
                chunk(json!({"content": "Hel"}), Value::Null),
                chunk(json!({"content": "lo"}), Value::Null),
                chunk(json!({}), json!("stop")),
                json!({"id": "msg_1", "object": "chat.completion.chunk", "created": 42, "model": "claude-x",
                       "choices": [],
                       "usage": {"prompt_tokens": 100, "completion_tokens": 12, "total_tokens": 112,
                                 "prompt_tokens_details": {"cached_tokens": 75}}}),
            ]
        );
        assert_eq!(
            stream.usage(),
            Usage {
                input_tokens: 100,
                output_tokens: 12,
                cached_input_tokens: 75,
                cache_creation_input_tokens: 0
            }
        );
        assert!(stream.is_finished());
        assert!(stream.finish().is_empty());
    }

    #[test]
    fn tool_call_answer() {
        let mut stream = AnthropicToOpenAiStream::new(false, 42);
        let chunks = run(
            &mut stream,
            vec![
                message_start(json!({"input_tokens": 50, "output_tokens": 1})),
                event(json!({"type": "content_block_start", "index": 0,
                             "content_block": {"type": "thinking", "thinking": ""}})),
                event(json!({"type": "content_block_delta", "index": 0,
                             "delta": {"type": "thinking_delta", "thinking": "Need weather."}})),
                event(json!({"type": "content_block_delta", "index": 0,
                             "delta": {"type": "signature_delta", "signature": "sig"}})),
                event(json!({"type": "content_block_stop", "index": 0})),
                event(
                    json!({"type": "content_block_start", "index": 1, "content_block": {"type": "text", "text": ""}}),
                ),
                event(
                    json!({"type": "content_block_delta", "index": 1, "delta": {"type": "text_delta", "text": "Checking."}}),
                ),
                event(json!({"type": "content_block_stop", "index": 1})),
                event(
                    json!({"type": "content_block_start", "index": 2, "content_block":
                             {"type": "tool_use", "id": "toolu_a", "name": "get_weather", "input": {}}}),
                ),
                event(json!({"type": "content_block_delta", "index": 2,
                             "delta": {"type": "input_json_delta", "partial_json": ""}})),
                event(json!({"type": "content_block_delta", "index": 2,
                             "delta": {"type": "input_json_delta", "partial_json": "{\"city\":"}})),
                event(json!({"type": "content_block_delta", "index": 2,
                             "delta": {"type": "input_json_delta", "partial_json": "\"Paris\"}"}})),
                event(json!({"type": "content_block_stop", "index": 2})),
                event(
                    json!({"type": "content_block_start", "index": 3, "content_block":
                             {"type": "tool_use", "id": "toolu_b", "name": "get_time", "input": {}}}),
                ),
                event(json!({"type": "content_block_delta", "index": 3,
                             "delta": {"type": "input_json_delta", "partial_json": "{}"}})),
                event(json!({"type": "content_block_stop", "index": 3})),
                event(
                    json!({"type": "message_delta", "delta": {"stop_reason": "tool_use", "stop_sequence": null},
                             "usage": {"output_tokens": 40}}),
                ),
                event(json!({"type": "message_stop"})),
            ],
        );
        assert_eq!(
            chunks,
            vec![
                chunk(json!({"role": "assistant", "content": ""}), Value::Null),
                chunk(json!({"reasoning_content": "Need weather."}), Value::Null),
                chunk(json!({"content": "Checking."}), Value::Null),
                chunk(
                    json!({"tool_calls": [{"index": 0, "id": "toolu_a", "type": "function",
                                           "function": {"name": "get_weather", "arguments": ""}}]}),
                    Value::Null
                ),
                chunk(
                    json!({"tool_calls": [{"index": 0, "function": {"arguments": "{\"city\":"}}]}),
                    Value::Null
                ),
                chunk(
                    json!({"tool_calls": [{"index": 0, "function": {"arguments": "\"Paris\"}"}}]}),
                    Value::Null
                ),
                chunk(
                    json!({"tool_calls": [{"index": 1, "id": "toolu_b", "type": "function",
                                           "function": {"name": "get_time", "arguments": ""}}]}),
                    Value::Null
                ),
                chunk(
                    json!({"tool_calls": [{"index": 1, "function": {"arguments": "{}"}}]}),
                    Value::Null
                ),
                chunk(json!({}), json!("tool_calls")),
            ],
            "no usage chunk without include_usage"
        );
        assert_eq!(stream.usage().input_tokens, 50);
        assert_eq!(stream.usage().output_tokens, 40);
    }

    #[test]
    fn upstream_end_without_message_stop_is_completed_by_finish() {
        let mut stream = AnthropicToOpenAiStream::new(true, 42);
        run(
            &mut stream,
            vec![
                message_start(json!({"input_tokens": 5, "output_tokens": 1})),
                event(
                    json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": "Hi"}}),
                ),
            ],
        );
        let chunks: Vec<Value> = stream
            .finish()
            .iter()
            .map(|c| serde_json::to_value(c).expect("serialize"))
            .collect();
        assert_eq!(chunks.len(), 2);
        assert_eq!(chunks[0], chunk(json!({}), json!("stop")));
        assert_eq!(chunks[1]["usage"]["prompt_tokens"], 5);
        assert!(stream.finish().is_empty());

        let mut never_started = AnthropicToOpenAiStream::new(true, 42);
        assert!(never_started.finish().is_empty());
    }

    #[test]
    fn message_delta_input_counts_update_usage() {
        let mut stream = AnthropicToOpenAiStream::new(true, 42);
        run(
            &mut stream,
            vec![
                message_start(json!({"input_tokens": 0, "output_tokens": 0})),
                event(
                    json!({"type": "message_delta", "delta": {"stop_reason": "max_tokens", "stop_sequence": null},
                             "usage": {"output_tokens": 9, "input_tokens": 20, "cache_read_input_tokens": 30,
                                       "cache_creation_input_tokens": 10}}),
                ),
            ],
        );
        assert_eq!(
            stream.usage(),
            Usage {
                input_tokens: 60,
                output_tokens: 9,
                cached_input_tokens: 30,
                cache_creation_input_tokens: 10
            }
        );
    }

    #[test]
    fn error_event_and_protocol_violations_are_errors() {
        let mut stream = AnthropicToOpenAiStream::new(false, 0);
        let err = stream
            .feed(event(json!({"type": "content_block_stop", "index": 0})))
            .expect_err("before message_start");
        assert!(err.to_string().contains("before `message_start`"), "{err}");

        stream
            .feed(message_start(
                json!({"input_tokens": 1, "output_tokens": 1}),
            ))
            .expect("start");
        let err = stream
            .feed(event(json!({"type": "content_block_delta", "index": 3,
                                "delta": {"type": "text_delta", "text": "x"}})))
            .expect_err("unknown block");
        assert!(err.to_string().contains("never started"), "{err}");

        stream
            .feed(event(json!({"type": "content_block_start", "index": 0,
                                "content_block": {"type": "tool_use", "id": "t", "name": "f", "input": {}}})))
            .expect("tool start");
        let err = stream
            .feed(event(json!({"type": "content_block_delta", "index": 0,
                                "delta": {"type": "text_delta", "text": "x"}})))
            .expect_err("text into a tool block");
        assert!(err.to_string().contains("text_delta"), "{err}");

        let err = stream
            .feed(event(json!({"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}})))
            .expect_err("error event");
        assert!(
            matches!(&err, TranslateError::Upstream { kind, message } if kind == "overloaded_error" && message == "Overloaded"),
            "{err}"
        );
    }

    #[test]
    fn unknown_events_blocks_and_deltas_are_skipped() {
        let mut stream = AnthropicToOpenAiStream::new(false, 42);
        let chunks = run(
            &mut stream,
            vec![
                message_start(json!({"input_tokens": 1, "output_tokens": 1})),
                event(json!({"type": "future_event", "x": 1})),
                event(
                    json!({"type": "content_block_start", "index": 0, "content_block":
                             {"type": "server_tool_use", "id": "srvtoolu_1", "name": "web_search", "input": {}}}),
                ),
                event(json!({"type": "content_block_delta", "index": 0,
                             "delta": {"type": "input_json_delta", "partial_json": "{}"}})),
                event(json!({"type": "content_block_stop", "index": 0})),
                event(
                    json!({"type": "content_block_start", "index": 1, "content_block": {"type": "text", "text": ""}}),
                ),
                event(json!({"type": "content_block_delta", "index": 1,
                             "delta": {"type": "citations_delta", "citation": {}}})),
                event(json!({"type": "content_block_stop", "index": 1})),
            ],
        );
        assert_eq!(chunks.len(), 1, "only the role chunk: {chunks:?}");
    }

    #[test]
    fn tool_input_sent_whole_in_block_start_is_forwarded() {
        let mut stream = AnthropicToOpenAiStream::new(false, 42);
        let chunks = run(
            &mut stream,
            vec![
                message_start(json!({"input_tokens": 1, "output_tokens": 1})),
                event(
                    json!({"type": "content_block_start", "index": 0, "content_block":
                             {"type": "tool_use", "id": "t", "name": "f", "input": {"a": 1}}}),
                ),
            ],
        );
        assert_eq!(
            chunks[1]["choices"][0]["delta"]["tool_calls"][0]["function"]["arguments"],
            "{\"a\":1}"
        );
    }

    #[test]
    fn feed_sse_parses_events() {
        let mut stream = AnthropicToOpenAiStream::new(false, 42);
        let start = serde_json::to_string(&message_start(
            json!({"input_tokens": 1, "output_tokens": 1}),
        ))
        .expect("serialize");
        let chunks = stream
            .feed_sse(&SseEvent {
                event: Some("message_start".into()),
                data: start,
            })
            .expect("start");
        assert_eq!(chunks.len(), 1);
        let err = stream
            .feed_sse(&SseEvent {
                event: None,
                data: "{\"type\":\"content_block_start\"}".into(),
            })
            .expect_err("malformed known event");
        assert!(
            err.to_string()
                .starts_with("invalid Anthropic stream event"),
            "{err}"
        );
    }
}

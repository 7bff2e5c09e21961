//! End-to-end stream tests: upstream SSE bytes, cut into awkward pieces,
//! through the SSE parser and both stream translators and back.

use bytes::Bytes;
use serde_json::{Value, json};

use super::sse::{self, SseParser};
use super::{AnthropicToOpenAiStream, OpenAiToAnthropicStream, Usage, anthropic, openai};

/// Parses an SSE body delivered in `piece`-byte chunks.
fn parse_body(body: &[u8], piece: usize) -> Vec<sse::SseEvent> {
    let mut parser = SseParser::new();
    let mut events = Vec::new();
    for chunk in body.chunks(piece) {
        events.extend(parser.feed(chunk).expect("feed"));
    }
    events.extend(parser.finish());
    events
}

fn concat(frames: impl IntoIterator<Item = Bytes>) -> Vec<u8> {
    frames.into_iter().flat_map(|b| b.to_vec()).collect()
}

fn anthropic_events() -> Vec<anthropic::StreamEvent> {
    [
        json!({"type": "message_start", "message": {
            "id": "msg_1", "type": "message", "role": "assistant", "model": "claude-x", "content": [],
            "stop_reason": null, "stop_sequence": null,
            "usage": {"input_tokens": 10, "output_tokens": 1,
                      "cache_creation_input_tokens": 2, "cache_read_input_tokens": 5}}}),
        json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}),
        json!({"type": "ping"}),
        json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Let me check "}}),
        json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "the wéather ☂."}}),
        json!({"type": "content_block_stop", "index": 0}),
        json!({"type": "content_block_start", "index": 1, "content_block":
               {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {}}}),
        json!({"type": "content_block_delta", "index": 1, "delta": {"type": "input_json_delta", "partial_json": "{\"city\": "}}),
        json!({"type": "content_block_delta", "index": 1, "delta": {"type": "input_json_delta", "partial_json": "\"Paris\"}"}}),
        json!({"type": "content_block_stop", "index": 1}),
        json!({"type": "message_delta", "delta": {"stop_reason": "tool_use", "stop_sequence": null},
               "usage": {"output_tokens": 25}}),
        json!({"type": "message_stop"}),
    ]
    .into_iter()
    .map(|v| serde_json::from_value(v).expect("event"))
    .collect()
}

/// Anthropic upstream → OpenAI client → (as if that were an upstream) →
/// Anthropic client: the content blocks come back identical.
#[test]
fn anthropic_stream_survives_a_trip_through_openai() {
    let original = anthropic_events();
    let upstream = concat(
        original
            .iter()
            .map(|e| sse::encode_anthropic_event(e).expect("encode")),
    );

    for piece in [1, 2, 3, 7, 64, upstream.len()] {
        let mut to_openai = AnthropicToOpenAiStream::new(true, 1_700_000_000);
        let mut openai_frames = Vec::new();
        for event in parse_body(&upstream, piece) {
            for chunk in to_openai.feed_sse(&event).expect("to openai") {
                openai_frames.push(sse::encode_openai_chunk(&chunk).expect("encode"));
            }
        }
        assert!(to_openai.is_finished());
        openai_frames.push(sse::openai_done());

        let mut to_anthropic = OpenAiToAnthropicStream::new("unused");
        let mut rebuilt = Vec::new();
        for event in parse_body(&concat(openai_frames), piece) {
            rebuilt.extend(to_anthropic.feed_sse(&event).expect("to anthropic"));
        }
        assert!(to_anthropic.is_finished());

        let content = |events: &[anthropic::StreamEvent]| -> Vec<Value> {
            events
                .iter()
                .filter(|e| e.event_type().starts_with("content_block"))
                .map(|e| serde_json::to_value(e).expect("serialize"))
                .collect()
        };
        assert_eq!(content(&rebuilt), content(&original), "piece size {piece}");
        let kinds: Vec<&str> = rebuilt.iter().map(|e| e.event_type()).collect();
        assert_eq!(kinds.first(), Some(&"message_start"));
        assert_eq!(kinds[kinds.len() - 2..], ["message_delta", "message_stop"]);
        let anthropic::StreamEvent::MessageStart { message } = &rebuilt[0] else {
            panic!("expected message_start");
        };
        assert_eq!(
            (message.id.as_str(), message.model.as_str()),
            ("msg_1", "claude-x")
        );

        // OpenAI has no cache-write count, so those tokens come back as
        // ordinary input: the total billed input is unchanged.
        let expected = Usage {
            input_tokens: 17,
            output_tokens: 25,
            cached_input_tokens: 5,
            cache_creation_input_tokens: 2,
        };
        assert_eq!(to_openai.usage(), expected);
        assert_eq!(
            to_anthropic.usage(),
            Usage {
                cache_creation_input_tokens: 0,
                ..expected
            }
        );
        assert_eq!(
            serde_json::to_value(&rebuilt[rebuilt.len() - 2]).expect("serialize"),
            json!({"type": "message_delta", "delta": {"stop_reason": "tool_use", "stop_sequence": null},
                   "usage": {"output_tokens": 25, "input_tokens": 12,
                             "cache_creation_input_tokens": 0, "cache_read_input_tokens": 5}})
        );
    }
}

fn openai_chunks() -> Vec<openai::ChatCompletionChunk> {
    let chunk = |choices: Value| {
        json!({"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1, "model": "gpt-4o",
               "choices": choices})
    };
    let delta = |delta: Value, finish: Value| {
        chunk(json!([{"index": 0, "delta": delta, "finish_reason": finish}]))
    };
    let mut usage = chunk(json!([]));
    usage["usage"] = json!({"prompt_tokens": 90, "completion_tokens": 33, "total_tokens": 123,
                            "prompt_tokens_details": {"cached_tokens": 64}});
    [
        delta(json!({"role": "assistant", "content": ""}), Value::Null),
        delta(json!({"content": "Sure — "}), Value::Null),
        delta(json!({"content": "calling."}), Value::Null),
        delta(
            json!({"tool_calls": [{"index": 0, "id": "call_1", "type": "function",
                                   "function": {"name": "search", "arguments": ""}}]}),
            Value::Null,
        ),
        delta(
            json!({"tool_calls": [{"index": 0, "function": {"arguments": "{\"q\":\"rust\"}"}}]}),
            Value::Null,
        ),
        delta(
            json!({"tool_calls": [{"index": 1, "id": "call_2", "type": "function",
                                   "function": {"name": "search", "arguments": ""}}]}),
            Value::Null,
        ),
        delta(
            json!({"tool_calls": [{"index": 1, "function": {"arguments": "{\"q\":"}}]}),
            Value::Null,
        ),
        delta(
            json!({"tool_calls": [{"index": 1, "function": {"arguments": "\"serde\"}"}}]}),
            Value::Null,
        ),
        delta(json!({}), json!("tool_calls")),
        usage,
    ]
    .into_iter()
    .map(|v| serde_json::from_value(v).expect("chunk"))
    .collect()
}

/// OpenAI upstream → Anthropic client → (as if that were an upstream) →
/// OpenAI client: every chunk comes back byte-for-byte.
#[test]
fn openai_stream_survives_a_trip_through_anthropic() {
    let original = openai_chunks();
    let mut frames: Vec<Bytes> = original
        .iter()
        .map(|c| sse::encode_openai_chunk(c).expect("encode"))
        .collect();
    frames.push(sse::openai_done());
    let upstream = concat(frames);

    for piece in [1, 5, 13, upstream.len()] {
        let mut to_anthropic = OpenAiToAnthropicStream::new("unused");
        let mut anthropic_frames = Vec::new();
        for event in parse_body(&upstream, piece) {
            for event in to_anthropic.feed_sse(&event).expect("to anthropic") {
                anthropic_frames.push(sse::encode_anthropic_event(&event).expect("encode"));
            }
        }

        let mut to_openai = AnthropicToOpenAiStream::new(true, 1);
        let mut rebuilt = Vec::new();
        for event in parse_body(&concat(anthropic_frames), piece) {
            rebuilt.extend(to_openai.feed_sse(&event).expect("to openai"));
        }
        // The Anthropic leg gives the message an Anthropic id (`msg_...`).
        let mut expected_chunks = original.clone();
        for chunk in &mut expected_chunks {
            chunk.id = format!("msg_{}", chunk.id);
        }
        assert_eq!(rebuilt, expected_chunks, "piece size {piece}");
        let expected = Usage {
            input_tokens: 90,
            output_tokens: 33,
            cached_input_tokens: 64,
            cache_creation_input_tokens: 0,
        };
        assert_eq!(to_anthropic.usage(), expected);
        assert_eq!(to_openai.usage(), expected);
    }
}

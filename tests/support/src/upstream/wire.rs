//! Wire formats

use super::*;

pub(crate) fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

pub(crate) fn openai_tool_call_id(seq: u64, i: usize) -> String {
    format!("call_up{seq}_{i}")
}

pub(crate) fn anthropic_tool_use_id(seq: u64, i: usize) -> String {
    format!("toolu_up{seq}_{i}")
}

pub(crate) fn openai_usage(usage: Usage) -> Value {
    json!({
        "prompt_tokens": usage.input,
        "completion_tokens": usage.output,
        "total_tokens": usage.input + usage.output,
        "prompt_tokens_details": {"cached_tokens": usage.cached, "audio_tokens": 0},
        "completion_tokens_details": {
            "reasoning_tokens": 0, "audio_tokens": 0,
            "accepted_prediction_tokens": 0, "rejected_prediction_tokens": 0,
        },
    })
}

pub(crate) fn anthropic_usage(usage: Usage) -> Value {
    json!({
        "input_tokens": usage.input.saturating_sub(usage.cached),
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": usage.cached,
        "output_tokens": usage.output,
    })
}

/// A non-streamed OpenAI `chat.completion`.
pub(crate) fn openai_completion(seq: u64, model: &str, answer: &Answer, usage: Usage) -> Value {
    let mut message = json!({
        "role": "assistant",
        "content": answer.text,
        "refusal": null,
        "annotations": [],
    });
    if !answer.tool_calls.is_empty() {
        message["tool_calls"] = answer
            .tool_calls
            .iter()
            .enumerate()
            .map(|(i, call)| {
                json!({
                    "id": openai_tool_call_id(seq, i),
                    "type": "function",
                    "function": {"name": call.name, "arguments": call.arguments.to_string()},
                })
            })
            .collect();
    }
    json!({
        "id": format!("chatcmpl-up{seq}"),
        "object": "chat.completion",
        "created": now(),
        "model": model,
        "choices": [{
            "index": 0,
            "message": message,
            "logprobs": null,
            "finish_reason": answer.openai_finish_reason(),
        }],
        "usage": openai_usage(usage),
        "service_tier": "default",
        "system_fingerprint": null,
    })
}

/// The SSE events of a streamed OpenAI answer.
pub(crate) fn openai_stream(
    seq: u64,
    model: &str,
    answer: &Answer,
    usage: Usage,
    include_usage: bool,
) -> Vec<String> {
    let id = format!("chatcmpl-up{seq}");
    let created = now();
    let chunk = |delta: Value, finish: Value| {
        let mut c = json!({
            "id": id,
            "object": "chat.completion.chunk",
            "created": created,
            "model": model,
            "service_tier": "default",
            "system_fingerprint": null,
            "choices": [{"index": 0, "delta": delta, "logprobs": null, "finish_reason": finish}],
        });
        if include_usage {
            c["usage"] = Value::Null;
        }
        format!("data: {c}\n\n")
    };
    let mut events = Vec::new();
    let first_content = if answer.text.is_some() {
        json!("")
    } else {
        Value::Null
    };
    events.push(chunk(
        json!({"role": "assistant", "content": first_content, "refusal": null}),
        Value::Null,
    ));
    if let Some(text) = &answer.text {
        for piece in text_pieces(text) {
            events.push(chunk(json!({"content": piece}), Value::Null));
        }
    }
    for (i, call) in answer.tool_calls.iter().enumerate() {
        events.push(chunk(
            json!({"tool_calls": [{
                "index": i,
                "id": openai_tool_call_id(seq, i),
                "type": "function",
                "function": {"name": call.name, "arguments": ""},
            }]}),
            Value::Null,
        ));
        for piece in json_pieces(&call.arguments.to_string()) {
            events.push(chunk(
                json!({"tool_calls": [{"index": i, "function": {"arguments": piece}}]}),
                Value::Null,
            ));
        }
    }
    events.push(chunk(json!({}), json!(answer.openai_finish_reason())));
    if include_usage {
        let c = json!({
            "id": id,
            "object": "chat.completion.chunk",
            "created": created,
            "model": model,
            "service_tier": "default",
            "system_fingerprint": null,
            "choices": [],
            "usage": openai_usage(usage),
        });
        events.push(format!("data: {c}\n\n"));
    }
    events.push("data: [DONE]\n\n".to_string());
    events
}

pub(crate) fn anthropic_content(seq: u64, answer: &Answer) -> Vec<Value> {
    let mut content = Vec::new();
    if let Some(text) = &answer.text {
        content.push(json!({"type": "text", "text": text}));
    }
    for (i, call) in answer.tool_calls.iter().enumerate() {
        content.push(json!({
            "type": "tool_use",
            "id": anthropic_tool_use_id(seq, i),
            "name": call.name,
            "input": call.arguments,
        }));
    }
    content
}

/// A non-streamed Anthropic `message`.
pub(crate) fn anthropic_message(seq: u64, model: &str, answer: &Answer, usage: Usage) -> Value {
    json!({
        "id": format!("msg_up{seq}"),
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": anthropic_content(seq, answer),
        "stop_reason": answer.anthropic_stop_reason(),
        "stop_sequence": null,
        "usage": anthropic_usage(usage),
    })
}

pub(crate) fn sse_event(kind: &str, data: Value) -> String {
    format!("event: {kind}\ndata: {data}\n\n")
}

/// The SSE events of a streamed Anthropic answer.
pub(crate) fn anthropic_stream(
    seq: u64,
    model: &str,
    answer: &Answer,
    usage: Usage,
) -> Vec<String> {
    let mut start_usage = anthropic_usage(usage);
    start_usage["output_tokens"] = json!(1);
    let mut events = vec![sse_event(
        "message_start",
        json!({"type": "message_start", "message": {
            "id": format!("msg_up{seq}"),
            "type": "message",
            "role": "assistant",
            "model": model,
            "content": [],
            "stop_reason": null,
            "stop_sequence": null,
            "usage": start_usage,
        }}),
    )];
    let mut index = 0usize;
    let mut pinged = false;
    let mut start_block = |events: &mut Vec<String>, index: usize, block: Value| {
        events.push(sse_event(
            "content_block_start",
            json!({"type": "content_block_start", "index": index, "content_block": block}),
        ));
        if !pinged {
            events.push(sse_event("ping", json!({"type": "ping"})));
            pinged = true;
        }
    };
    if let Some(text) = &answer.text {
        start_block(&mut events, index, json!({"type": "text", "text": ""}));
        for piece in text_pieces(text) {
            events.push(sse_event(
                "content_block_delta",
                json!({"type": "content_block_delta", "index": index,
                       "delta": {"type": "text_delta", "text": piece}}),
            ));
        }
        events.push(sse_event(
            "content_block_stop",
            json!({"type": "content_block_stop", "index": index}),
        ));
        index += 1;
    }
    for (i, call) in answer.tool_calls.iter().enumerate() {
        start_block(
            &mut events,
            index,
            json!({"type": "tool_use", "id": anthropic_tool_use_id(seq, i),
                   "name": call.name, "input": {}}),
        );
        for piece in json_pieces(&call.arguments.to_string()) {
            events.push(sse_event(
                "content_block_delta",
                json!({"type": "content_block_delta", "index": index,
                       "delta": {"type": "input_json_delta", "partial_json": piece}}),
            ));
        }
        events.push(sse_event(
            "content_block_stop",
            json!({"type": "content_block_stop", "index": index}),
        ));
        index += 1;
    }
    events.push(sse_event(
        "message_delta",
        json!({"type": "message_delta",
               "delta": {"stop_reason": answer.anthropic_stop_reason(), "stop_sequence": null},
               "usage": {"output_tokens": usage.output}}),
    ));
    events.push(sse_event("message_stop", json!({"type": "message_stop"})));
    events
}

/// Splits a text after each run of whitespace: `"a b  c"` → `["a ", "b  ", "c"]`.
pub(crate) fn text_pieces(text: &str) -> Vec<String> {
    let mut pieces = Vec::new();
    let mut current = String::new();
    let mut in_space = false;
    for c in text.chars() {
        if c.is_whitespace() {
            in_space = true;
        } else if in_space {
            pieces.push(std::mem::take(&mut current));
            in_space = false;
        }
        current.push(c);
    }
    if !current.is_empty() || pieces.is_empty() {
        pieces.push(current);
    }
    pieces
}

/// Splits serialized JSON into (at most) three pieces on character boundaries.
pub(crate) fn json_pieces(json: &str) -> Vec<String> {
    let chars: Vec<char> = json.chars().collect();
    if chars.len() < 3 {
        return vec![json.to_string()];
    }
    let step = chars.len().div_ceil(3);
    chars.chunks(step).map(|c| c.iter().collect()).collect()
}

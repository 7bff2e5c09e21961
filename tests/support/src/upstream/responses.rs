//! The OpenAI Responses API (`POST …/responses`), for tests of passing it
//! through.
//!
//! A request is read through its chat view ([`chat_view`]), so that the
//! default answer, the usage and every script's helpers
//! ([`RecordedRequest::messages`]) work as for chat completions. Answers
//! are shaped after OpenAI's API reference: a `response` object, or the
//! stream `response.created`, `response.in_progress`, per item
//! `response.output_item.added` … `response.output_item.done` (text as
//! `response.output_text.delta` events inside a content part, function
//! arguments as `response.function_call_arguments.delta` events), and
//! `response.completed` with the usage; every event numbered by
//! `sequence_number` from 0. A request that asks for
//! `include: ["reasoning.encrypted_content"]` gets a reasoning item first,
//! whose `encrypted_content` is `enc_up<seq>`.

use super::*;

/// A Responses body as a chat-completions one: `instructions` as a system
/// message, `input` items as messages (function calls as assistant tool
/// calls, their outputs as `tool` messages), function tools by name, and
/// `max_output_tokens` as `max_tokens`. Items without a chat form
/// (reasoning, hosted tool calls) are left out.
pub fn chat_view(body: &Value) -> Value {
    let mut messages = Vec::new();
    if let Some(instructions) = body.get("instructions").and_then(Value::as_str) {
        messages.push(json!({"role": "system", "content": instructions}));
    }
    match body.get("input") {
        Some(Value::String(text)) => messages.push(json!({"role": "user", "content": text})),
        Some(Value::Array(items)) => {
            for item in items {
                let kind = item
                    .get("type")
                    .and_then(Value::as_str)
                    .unwrap_or("message");
                match kind {
                    "message" => {
                        let role = match item.get("role").and_then(Value::as_str) {
                            Some("developer") => "system",
                            Some(role) => role,
                            None => "user",
                        };
                        let text = match item.get("content") {
                            Some(Value::String(s)) => s.clone(),
                            Some(Value::Array(parts)) => parts
                                .iter()
                                .filter_map(|p| p.get("text").and_then(Value::as_str))
                                .collect::<Vec<_>>()
                                .join(" "),
                            _ => String::new(),
                        };
                        messages.push(json!({"role": role, "content": text}));
                    }
                    "function_call" => messages.push(json!({"role": "assistant", "content": null,
                        "tool_calls": [{"id": item["call_id"], "type": "function",
                            "function": {"name": item["name"], "arguments": item["arguments"]}}]})),
                    "function_call_output" => messages.push(json!({"role": "tool",
                        "tool_call_id": item["call_id"], "content": item["output"]})),
                    _ => {}
                }
            }
        }
        _ => {}
    }
    let tools: Vec<Value> = body
        .get("tools")
        .and_then(Value::as_array)
        .map(|tools| {
            tools
                .iter()
                .filter(|t| t.get("type").and_then(Value::as_str) == Some("function"))
                .cloned()
                .collect()
        })
        .unwrap_or_default();
    let mut view = json!({"model": body["model"], "messages": messages});
    if !tools.is_empty() {
        view["tools"] = Value::Array(tools);
    }
    if let Some(max) = body.get("max_output_tokens") {
        view["max_tokens"] = max.clone();
    }
    view
}

/// Checks what the real API refuses: a missing `model` or `input`.
pub(crate) fn validate_responses(body: &Value) -> Result<(), String> {
    if body.get("model").and_then(Value::as_str).is_none() {
        return Err("Missing required parameter: 'model'.".into());
    }
    if body.get("input").is_none() {
        return Err("Missing required parameter: 'input'.".into());
    }
    Ok(())
}

fn usage_json(usage: Usage) -> Value {
    json!({
        "input_tokens": usage.input,
        "input_tokens_details": {"cached_tokens": usage.cached},
        "output_tokens": usage.output,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": usage.input + usage.output,
    })
}

/// The output items of `answer`: a reasoning item when asked for, the
/// text as a message, then the function calls.
fn output_items(seq: u64, body: &Value, answer: &Answer) -> Vec<Value> {
    let mut items = Vec::new();
    let wants_reasoning = body
        .get("include")
        .and_then(Value::as_array)
        .is_some_and(|i| i.iter().any(|v| v == "reasoning.encrypted_content"));
    if wants_reasoning {
        items.push(
            json!({"type": "reasoning", "id": format!("rs_up{seq}"), "summary": [],
            "encrypted_content": format!("enc_up{seq}")}),
        );
    }
    if let Some(text) = &answer.text {
        items.push(
            json!({"type": "message", "id": format!("msg_up{seq}"), "status": "completed",
            "role": "assistant",
            "content": [{"type": "output_text", "text": text, "annotations": [], "logprobs": []}]}),
        );
    }
    for (i, call) in answer.tool_calls.iter().enumerate() {
        items.push(
            json!({"type": "function_call", "id": format!("fc_up{seq}_{i}"),
            "call_id": openai_tool_call_id(seq, i), "name": call.name,
            "arguments": call.arguments.to_string(), "status": "completed"}),
        );
    }
    items
}

/// A `response` object in `status`, echoing the request's settings.
fn response(seq: u64, model: &str, body: &Value, status: &str, output: Vec<Value>) -> Value {
    json!({
        "id": format!("resp_up{seq}"),
        "object": "response",
        "created_at": now(),
        "status": status,
        "background": false,
        "error": null,
        "incomplete_details": null,
        "instructions": body.get("instructions").cloned().unwrap_or(Value::Null),
        "max_output_tokens": body.get("max_output_tokens").cloned().unwrap_or(Value::Null),
        "model": model,
        "output": output,
        "parallel_tool_calls": true,
        "previous_response_id": null,
        "reasoning": {"effort": null, "summary": null},
        "store": body.get("store").cloned().unwrap_or(json!(true)),
        "temperature": 1.0,
        "text": {"format": {"type": "text"}},
        "tool_choice": body.get("tool_choice").cloned().unwrap_or(json!("auto")),
        "tools": body.get("tools").cloned().unwrap_or(json!([])),
        "top_p": 1.0,
        "truncation": "disabled",
        "usage": null,
        "user": null,
        "metadata": {},
    })
}

/// A non-streamed answer: the completed `response` object.
pub(crate) fn responses_object(
    seq: u64,
    model: &str,
    body: &Value,
    answer: &Answer,
    usage: Usage,
) -> Value {
    let status = if answer.truncated {
        "incomplete"
    } else {
        "completed"
    };
    let mut object = response(seq, model, body, status, output_items(seq, body, answer));
    object["usage"] = usage_json(usage);
    if answer.truncated {
        object["incomplete_details"] = json!({"reason": "max_output_tokens"});
    }
    object
}

/// The SSE events of a streamed answer.
pub(crate) fn responses_stream(
    seq: u64,
    model: &str,
    body: &Value,
    answer: &Answer,
    usage: Usage,
) -> Vec<String> {
    let mut events = Vec::new();
    let mut push = |kind: &str, mut data: Value| {
        data["type"] = json!(kind);
        data["sequence_number"] = json!(events.len());
        events.push(sse_event(kind, data));
    };
    let started = response(seq, model, body, "in_progress", Vec::new());
    push("response.created", json!({"response": started}));
    push("response.in_progress", json!({"response": started}));
    let items = output_items(seq, body, answer);
    for (index, item) in items.iter().enumerate() {
        let id = item["id"].clone();
        match item["type"].as_str() {
            Some("message") => {
                let mut empty = item.clone();
                empty["status"] = json!("in_progress");
                empty["content"] = json!([]);
                push(
                    "response.output_item.added",
                    json!({"output_index": index, "item": empty}),
                );
                let part =
                    json!({"type": "output_text", "text": "", "annotations": [], "logprobs": []});
                push(
                    "response.content_part.added",
                    json!({"item_id": id, "output_index": index, "content_index": 0, "part": part}),
                );
                let text = answer.text.as_deref().unwrap_or_default();
                for piece in text_pieces(text) {
                    push(
                        "response.output_text.delta",
                        json!({"item_id": id, "output_index": index, "content_index": 0,
                            "delta": piece, "logprobs": []}),
                    );
                }
                push(
                    "response.output_text.done",
                    json!({"item_id": id, "output_index": index, "content_index": 0,
                        "text": text, "logprobs": []}),
                );
                push(
                    "response.content_part.done",
                    json!({"item_id": id, "output_index": index, "content_index": 0,
                        "part": item["content"][0]}),
                );
            }
            Some("function_call") => {
                let mut empty = item.clone();
                empty["status"] = json!("in_progress");
                empty["arguments"] = json!("");
                push(
                    "response.output_item.added",
                    json!({"output_index": index, "item": empty}),
                );
                let arguments = item["arguments"].as_str().unwrap_or_default();
                for piece in json_pieces(arguments) {
                    push(
                        "response.function_call_arguments.delta",
                        json!({"item_id": id, "output_index": index, "delta": piece}),
                    );
                }
                push(
                    "response.function_call_arguments.done",
                    json!({"item_id": id, "output_index": index, "arguments": arguments}),
                );
            }
            _ => push(
                "response.output_item.added",
                json!({"output_index": index, "item": item}),
            ),
        }
        push(
            "response.output_item.done",
            json!({"output_index": index, "item": item}),
        );
    }
    let done = responses_object(seq, model, body, answer, usage);
    let kind = if answer.truncated {
        "response.incomplete"
    } else {
        "response.completed"
    };
    push(kind, json!({"response": done}));
    events
}

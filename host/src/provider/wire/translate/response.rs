//! Non-streaming response and error-body translation, and the stop-reason
//! mapping the stream translators share.

use serde_json::{Map, Value};

use super::{
    TranslateError, Usage, anthropic, arguments_from_tool_input, openai, sanitize_tool_id,
    tool_input_from_arguments,
};
use anthropic::{ContentBlock, StopReason};
use openai::FinishReason;

/// Field carrying thinking text in OpenAI-format messages and deltas (a
/// de-facto extension, not part of OpenAI's own API).
pub(super) const REASONING_CONTENT: &str = "reasoning_content";

/// Maps an OpenAI `finish_reason` to an Anthropic `stop_reason`.
///
/// `stop` → `end_turn` (OpenAI does not say whether a stop sequence
/// matched), `length` → `max_tokens`, `tool_calls`/`function_call` →
/// `tool_use`, `content_filter` → `end_turn`; unknown or missing → `end_turn`.
/// When the message did call tools, anything but `length` becomes
/// `tool_use`: some OpenAI-compatible servers report `stop` there, and
/// Anthropic clients run tools only on `tool_use`.
pub fn finish_reason_to_stop_reason(
    reason: Option<&FinishReason>,
    has_tool_calls: bool,
) -> StopReason {
    match reason {
        Some(FinishReason::Length) => StopReason::MaxTokens,
        _ if has_tool_calls => StopReason::ToolUse,
        Some(FinishReason::ToolCalls | FinishReason::FunctionCall) => StopReason::ToolUse,
        Some(FinishReason::Stop | FinishReason::ContentFilter | FinishReason::Other(_)) | None => {
            StopReason::EndTurn
        }
    }
}

/// Maps an Anthropic `stop_reason` to an OpenAI `finish_reason`.
///
/// `end_turn`/`stop_sequence`/`pause_turn` → `stop`, `max_tokens` →
/// `length`, `tool_use` → `tool_calls`, `refusal` → `content_filter`;
/// unknown → `stop`.
pub fn stop_reason_to_finish_reason(reason: &StopReason) -> FinishReason {
    match reason {
        StopReason::MaxTokens => FinishReason::Length,
        StopReason::ToolUse => FinishReason::ToolCalls,
        StopReason::Refusal => FinishReason::ContentFilter,
        StopReason::EndTurn
        | StopReason::StopSequence
        | StopReason::PauseTurn
        | StopReason::Other(_) => FinishReason::Stop,
    }
}

/// Translates an Anthropic response into an OpenAI completion.
///
/// `created` is the Unix time to report (Anthropic has none). Text blocks
/// are concatenated into `content` (`null` when the model only called
/// tools), `tool_use` blocks become `tool_calls`, thinking text goes to
/// `reasoning_content`, and other blocks (hosted-tool results) are dropped.
/// The id and model are kept as Anthropic sent them.
pub fn anthropic_response_to_openai(
    response: anthropic::MessagesResponse,
    created: u64,
) -> openai::ChatCompletion {
    let mut text = String::new();
    let mut reasoning = String::new();
    let mut tool_calls = Vec::new();
    for block in response.content {
        match block {
            ContentBlock::Text(block) => text.push_str(&block.text),
            ContentBlock::ToolUse(call) => tool_calls.push(openai::ToolCall::function(
                call.id,
                call.name,
                arguments_from_tool_input(&call.input),
            )),
            ContentBlock::Thinking(block) => reasoning.push_str(&block.thinking),
            _ => {}
        }
    }
    let mut extra = Map::new();
    if !reasoning.is_empty() {
        extra.insert(REASONING_CONTENT.to_owned(), Value::String(reasoning));
    }
    let content = (!text.is_empty() || tool_calls.is_empty()).then_some(text);
    let finish_reason = response
        .stop_reason
        .as_ref()
        .map_or(FinishReason::Stop, stop_reason_to_finish_reason);
    openai::ChatCompletion {
        id: response.id,
        object: openai::OBJECT_COMPLETION.to_owned(),
        created,
        model: response.model,
        choices: vec![openai::Choice {
            index: 0,
            message: openai::ResponseMessage {
                role: "assistant".to_owned(),
                content,
                tool_calls,
                refusal: None,
                extra,
            },
            finish_reason: Some(finish_reason),
            extra: Map::new(),
        }],
        usage: Some(Usage::from(&response.usage).to_openai()),
        system_fingerprint: None,
        extra: Map::new(),
    }
}

/// Translates an OpenAI completion into an Anthropic response.
///
/// Only the first choice (index 0) is kept: Anthropic has one answer per
/// request. Text (or, failing that, the refusal) becomes a text block, each
/// tool call a `tool_use` block with parsed input and a sanitised id, and a
/// missing usage counts as zero.
pub fn openai_response_to_anthropic(
    response: openai::ChatCompletion,
) -> Result<anthropic::MessagesResponse, TranslateError> {
    let mut choices = response.choices;
    let position = choices.iter().position(|c| c.index == 0).unwrap_or(0);
    if position >= choices.len() {
        return Err(TranslateError::NoChoices);
    }
    let choice = choices.swap_remove(position);
    let message = choice.message;

    let mut content = Vec::with_capacity(1 + message.tool_calls.len());
    match message.content.filter(|t| !t.is_empty()) {
        Some(text) => content.push(ContentBlock::text(text)),
        None => {
            if let Some(refusal) = message.refusal.filter(|t| !t.is_empty()) {
                content.push(ContentBlock::text(refusal));
            }
        }
    }
    let has_tool_calls = !message.tool_calls.is_empty();
    for (i, call) in message.tool_calls.into_iter().enumerate() {
        let id = if call.id.is_empty() {
            format!("toolu_{}_{i}", sanitize_tool_id(&response.id))
        } else {
            sanitize_tool_id(&call.id).into_owned()
        };
        content.push(ContentBlock::tool_use(
            id,
            call.function.name,
            tool_input_from_arguments(&call.function.arguments),
        ));
    }

    let usage = response
        .usage
        .as_ref()
        .map(Usage::from)
        .unwrap_or_default()
        .to_anthropic();
    let mut message = anthropic::MessagesResponse::empty(
        super::anthropic_message_id(&response.id),
        response.model,
        usage,
    );
    message.content = content;
    message.stop_reason = Some(finish_reason_to_stop_reason(
        choice.finish_reason.as_ref(),
        has_tool_calls,
    ));
    Ok(message)
}

/// Translates an Anthropic error body into an OpenAI one. The Anthropic
/// error type (e.g. `rate_limit_error`) is kept as the OpenAI `type`;
/// OpenAI SDKs classify errors by HTTP status, which the gateway keeps.
pub fn anthropic_error_to_openai(body: &anthropic::ErrorBody) -> openai::ErrorBody {
    openai::ErrorBody::new(body.error.kind.as_str(), body.error.message.clone())
}

/// Translates an OpenAI error body, received with HTTP `status`, into an
/// Anthropic one. The type comes from the status, because OpenAI-style
/// type strings vary between servers while statuses do not.
pub fn openai_error_to_anthropic(status: u16, body: &openai::ErrorBody) -> anthropic::ErrorBody {
    anthropic::ErrorBody::new(
        anthropic::ErrorType::from_http_status(status),
        body.error.message.clone(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn anthropic_response(value: Value) -> anthropic::MessagesResponse {
        serde_json::from_value(value).expect("anthropic response")
    }

    fn openai_response(value: Value) -> openai::ChatCompletion {
        serde_json::from_value(value).expect("openai response")
    }

    #[test]
    fn stop_reasons_map_both_ways() {
        for (finish, stop) in [
            (FinishReason::Stop, StopReason::EndTurn),
            (FinishReason::Length, StopReason::MaxTokens),
            (FinishReason::ToolCalls, StopReason::ToolUse),
        ] {
            assert_eq!(finish_reason_to_stop_reason(Some(&finish), false), stop);
            assert_eq!(stop_reason_to_finish_reason(&stop), finish);
        }
        assert_eq!(
            finish_reason_to_stop_reason(Some(&FinishReason::ContentFilter), false),
            StopReason::EndTurn
        );
        assert_eq!(
            finish_reason_to_stop_reason(Some(&FinishReason::FunctionCall), false),
            StopReason::ToolUse
        );
        assert_eq!(
            finish_reason_to_stop_reason(None, false),
            StopReason::EndTurn
        );
        assert_eq!(
            finish_reason_to_stop_reason(Some(&FinishReason::Stop), true),
            StopReason::ToolUse,
            "tool calls reported with `stop` still need tool_use"
        );
        assert_eq!(
            finish_reason_to_stop_reason(Some(&FinishReason::Length), true),
            StopReason::MaxTokens
        );
        assert_eq!(
            stop_reason_to_finish_reason(&StopReason::StopSequence),
            FinishReason::Stop
        );
        assert_eq!(
            stop_reason_to_finish_reason(&StopReason::Refusal),
            FinishReason::ContentFilter
        );
        assert_eq!(
            stop_reason_to_finish_reason(&StopReason::Other("new".into())),
            FinishReason::Stop
        );
    }

    #[test]
    fn anthropic_text_response_to_openai() {
        let response = anthropic_response(json!({
            "id": "msg_1", "type": "message", "role": "assistant", "model": "claude-x",
            "content": [
                {"type": "thinking", "thinking": "Let me think.", "signature": "sig"},
                {"type": "text", "text": "Hello"},
                {"type": "text", "text": ", world"}
            ],
            "stop_reason": "end_turn", "stop_sequence": null,
            "usage": {"input_tokens": 3, "output_tokens": 4, "cache_read_input_tokens": 10,
                      "cache_creation_input_tokens": 2}
        }));
        let completion = anthropic_response_to_openai(response, 1_700_000_000);
        assert_eq!(
            serde_json::to_value(&completion).expect("serialize"),
            json!({
                "id": "msg_1", "object": "chat.completion", "created": 1_700_000_000u64,
                "model": "claude-x",
                "choices": [{"index": 0, "message": {
                    "role": "assistant", "content": "Hello, world",
                    "reasoning_content": "Let me think."
                }, "finish_reason": "stop"}],
                "usage": {"prompt_tokens": 15, "completion_tokens": 4, "total_tokens": 19,
                          "prompt_tokens_details": {"cached_tokens": 10}}
            })
        );
    }

    #[test]
    fn anthropic_tool_response_to_openai() {
        let response = anthropic_response(json!({
            "id": "msg_2", "type": "message", "role": "assistant", "model": "claude-x",
            "content": [
                {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"city": "Paris"}},
                {"type": "tool_use", "id": "toolu_2", "name": "echo", "input": {"_raw": "{oops"}}
            ],
            "stop_reason": "tool_use", "stop_sequence": null,
            "usage": {"input_tokens": 30, "output_tokens": 12}
        }));
        let completion = anthropic_response_to_openai(response, 5);
        let choice = &completion.choices[0];
        assert_eq!(choice.finish_reason, Some(FinishReason::ToolCalls));
        assert_eq!(choice.message.content, None);
        assert_eq!(
            choice.message.tool_calls,
            vec![
                openai::ToolCall::function("toolu_1", "get_weather", r#"{"city":"Paris"}"#),
                openai::ToolCall::function("toolu_2", "echo", "{oops"),
            ]
        );
        let json = serde_json::to_value(&completion).expect("serialize");
        assert_eq!(json["choices"][0]["message"]["content"], Value::Null);
    }

    #[test]
    fn openai_tool_response_to_anthropic() {
        let completion = openai_response(json!({
            "id": "chatcmpl-1", "object": "chat.completion", "created": 1, "model": "gpt-4o",
            "choices": [{"index": 0, "message": {
                "role": "assistant", "content": "Checking.",
                "tool_calls": [
                    {"id": "call_a", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}},
                    {"id": "functions.lookup:1", "type": "function", "function": {"name": "lookup", "arguments": "not json"}},
                    {"id": "", "type": "function", "function": {"name": "noop", "arguments": ""}}
                ]
            }, "finish_reason": "tool_calls"}],
            "usage": {"prompt_tokens": 100, "completion_tokens": 20, "total_tokens": 120,
                      "prompt_tokens_details": {"cached_tokens": 64}}
        }));
        let message = openai_response_to_anthropic(completion).expect("translate");
        assert_eq!(
            serde_json::to_value(&message).expect("serialize"),
            json!({
                "id": "msg_chatcmpl-1", "type": "message", "role": "assistant", "model": "gpt-4o",
                "content": [
                    {"type": "text", "text": "Checking."},
                    {"type": "tool_use", "id": "call_a", "name": "get_weather", "input": {"city": "Paris"}},
                    {"type": "tool_use", "id": "functions_lookup_1", "name": "lookup", "input": {"_raw": "not json"}},
                    {"type": "tool_use", "id": "toolu_chatcmpl-1_2", "name": "noop", "input": {}}
                ],
                "stop_reason": "tool_use", "stop_sequence": null,
                "usage": {"input_tokens": 36, "output_tokens": 20,
                          "cache_creation_input_tokens": 0, "cache_read_input_tokens": 64}
            })
        );
    }

    #[test]
    fn openai_text_response_to_anthropic_and_back() {
        let completion = openai_response(json!({
            "id": "chatcmpl-2", "object": "chat.completion", "created": 9, "model": "gpt-4o",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": "Hi!"},
                         "finish_reason": "length"}],
            "usage": {"prompt_tokens": 7, "completion_tokens": 2, "total_tokens": 9}
        }));
        let message = openai_response_to_anthropic(completion.clone()).expect("translate");
        assert_eq!(message.stop_reason, Some(StopReason::MaxTokens));
        assert_eq!(message.content, vec![ContentBlock::text("Hi!")]);
        let back = anthropic_response_to_openai(message, 9);
        assert_eq!(back.choices[0].message.content.as_deref(), Some("Hi!"));
        assert_eq!(back.choices[0].finish_reason, Some(FinishReason::Length));
        let usage = back.usage.expect("usage");
        assert_eq!((usage.prompt_tokens, usage.completion_tokens), (7, 2));
    }

    #[test]
    fn openai_refusal_and_missing_usage() {
        let completion = openai_response(json!({
            "id": "c", "object": "chat.completion", "created": 9, "model": "m",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": null,
                         "refusal": "I can't help with that."}, "finish_reason": "stop"}]
        }));
        let message = openai_response_to_anthropic(completion).expect("translate");
        assert_eq!(
            message.content,
            vec![ContentBlock::text("I can't help with that.")]
        );
        assert_eq!(message.usage.input_tokens, 0);
        assert_eq!(message.stop_reason, Some(StopReason::EndTurn));
    }

    #[test]
    fn openai_response_picks_choice_zero_and_requires_one() {
        let completion = openai_response(json!({
            "id": "c", "object": "chat.completion", "created": 9, "model": "m",
            "choices": [
                {"index": 1, "message": {"role": "assistant", "content": "second"}, "finish_reason": "stop"},
                {"index": 0, "message": {"role": "assistant", "content": "first"}, "finish_reason": "stop"}
            ]
        }));
        let message = openai_response_to_anthropic(completion).expect("translate");
        assert_eq!(message.content, vec![ContentBlock::text("first")]);

        let empty = openai_response(json!({
            "id": "c", "object": "chat.completion", "created": 9, "model": "m", "choices": []
        }));
        assert!(matches!(
            openai_response_to_anthropic(empty),
            Err(TranslateError::NoChoices)
        ));
    }

    #[test]
    fn error_bodies_translate() {
        let anthropic: anthropic::ErrorBody = serde_json::from_value(json!({
            "type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}
        }))
        .expect("error");
        assert_eq!(
            serde_json::to_value(anthropic_error_to_openai(&anthropic)).expect("serialize"),
            json!({"error": {"message": "Overloaded", "type": "overloaded_error", "param": null, "code": null}})
        );
        let openai: openai::ErrorBody = serde_json::from_value(json!({
            "error": {"message": "Rate limit reached", "type": "requests", "param": null,
                      "code": "rate_limit_exceeded"}
        }))
        .expect("error");
        assert_eq!(
            serde_json::to_value(openai_error_to_anthropic(429, &openai)).expect("serialize"),
            json!({"type": "error", "error": {"type": "rate_limit_error", "message": "Rate limit reached"}})
        );
    }
}

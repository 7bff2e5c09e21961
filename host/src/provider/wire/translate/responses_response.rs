//! OpenAI Chat Completions answers → OpenAI Responses objects.
//!
//! A [`ResponseFrame`] holds what the answer needs from the request (the
//! echoed parameters, the [`ToolMap`] and the ids); the completion's
//! message becomes output items in the order a Responses model emits them:
//! reasoning (the non-standard `reasoning_content`, as a summary), the
//! message (text, refusal), then one item per tool call.

use serde_json::{Map, Value};

use super::super::openai;
use super::super::responses::{
    self, CustomToolCallItem, FunctionCallItem, IncompleteDetails, InputTokensDetails, ItemStatus,
    OutputContent, OutputItem, OutputMessage, OutputTokensDetails, ReasoningItem, ResponseObject,
    ResponseStatus, ResponseUsage, ResponsesRequest, SummaryPart,
};
use super::response::REASONING_CONTENT;
use super::responses_request::{CUSTOM_INPUT, ToolMap, ToolOrigin};

/// What a response needs from its request.
#[derive(Debug, Clone)]
pub struct ResponseFrame {
    /// The response with the request's parameters echoed, no output yet.
    template: ResponseObject,
    /// How to read the model's tool calls.
    tools: ToolMap,
}

impl ResponseFrame {
    /// The frame of a response `id` to `request`, created now; `tools` comes
    /// from the request's translation.
    pub fn new(id: String, created_at: u64, request: &ResponsesRequest, tools: ToolMap) -> Self {
        let template = ResponseObject {
            id,
            object: responses::OBJECT_RESPONSE.into(),
            created_at,
            status: ResponseStatus::InProgress,
            model: request.model.clone(),
            output: Vec::new(),
            usage: None,
            error: None,
            incomplete_details: None,
            instructions: request.instructions.clone(),
            max_output_tokens: request.max_output_tokens,
            parallel_tool_calls: request.parallel_tool_calls.unwrap_or(true),
            previous_response_id: None,
            reasoning: request.reasoning.clone().unwrap_or_default(),
            store: false,
            temperature: request.temperature,
            text: request
                .text
                .clone()
                .unwrap_or_else(|| responses::TextOptions {
                    format: Some(serde_json::json!({"type": "text"})),
                    ..Default::default()
                }),
            tool_choice: request
                .tool_choice
                .clone()
                .unwrap_or_else(|| Value::String("auto".into())),
            tools: request
                .tools
                .iter()
                .flatten()
                .filter_map(|t| serde_json::to_value(t).ok())
                .collect(),
            top_p: request.top_p,
            metadata: request.metadata.clone().unwrap_or_default(),
            extra: Map::new(),
        };
        ResponseFrame { template, tools }
    }

    /// The response's id.
    pub fn id(&self) -> &str {
        &self.template.id
    }

    /// The response so far: the template with `model` set and no output.
    pub fn response(&self, model: &str) -> ResponseObject {
        let mut response = self.template.clone();
        response.model = model.to_string();
        response
    }

    /// The id of the output item at `index`, with `prefix` (`msg`, `fc`,
    /// `rs`, `ctc`).
    pub fn item_id(&self, prefix: &str, index: usize) -> String {
        let base = self
            .template
            .id
            .strip_prefix("resp_")
            .unwrap_or(&self.template.id);
        format!("{prefix}_{base}_{index}")
    }

    /// The output item for a tool call the chat model made.
    pub fn tool_call_item(
        &self,
        index: usize,
        call_id: String,
        name: String,
        arguments: String,
    ) -> OutputItem {
        match self.tools.origin(&name) {
            ToolOrigin::Custom => OutputItem::CustomToolCall(CustomToolCallItem {
                id: Some(self.item_id("ctc", index)),
                call_id,
                name,
                input: custom_input(&arguments),
                status: Some(ItemStatus::Completed),
            }),
            ToolOrigin::Namespaced { namespace, name } => {
                OutputItem::FunctionCall(FunctionCallItem {
                    id: Some(self.item_id("fc", index)),
                    call_id,
                    name,
                    namespace: Some(namespace),
                    arguments,
                    status: Some(ItemStatus::Completed),
                })
            }
            ToolOrigin::Function => OutputItem::FunctionCall(FunctionCallItem {
                id: Some(self.item_id("fc", index)),
                call_id,
                name,
                namespace: None,
                arguments,
                status: Some(ItemStatus::Completed),
            }),
        }
    }

    /// The name the client knows a chat function by (the function's own
    /// name for a namespaced one).
    pub fn client_tool_name(&self, chat_name: &str) -> String {
        match self.tools.origin(chat_name) {
            ToolOrigin::Namespaced { name, .. } => name,
            _ => chat_name.to_string(),
        }
    }

    /// Whether the chat function `name` is a custom tool.
    pub fn is_custom(&self, name: &str) -> bool {
        self.tools.origin(name) == ToolOrigin::Custom
    }
}

/// The text of a custom tool call from its function arguments: the `input`
/// string, or the raw arguments when the model did not write that object.
pub fn custom_input(arguments: &str) -> String {
    match serde_json::from_str::<Value>(arguments) {
        Ok(Value::Object(map)) => match map.get(CUSTOM_INPUT) {
            Some(Value::String(input)) => input.clone(),
            _ => arguments.to_string(),
        },
        _ => arguments.to_string(),
    }
}

/// Status and details for a chat finish reason.
pub fn finish_to_status(
    finish: Option<&openai::FinishReason>,
) -> (ResponseStatus, Option<IncompleteDetails>) {
    let incomplete = |reason: &str| {
        (
            ResponseStatus::Incomplete,
            Some(IncompleteDetails {
                reason: reason.into(),
            }),
        )
    };
    match finish {
        Some(openai::FinishReason::Length) => incomplete("max_output_tokens"),
        Some(openai::FinishReason::ContentFilter) => incomplete("content_filter"),
        _ => (ResponseStatus::Completed, None),
    }
}

/// Responses usage from chat usage (reasoning tokens from
/// `completion_tokens_details`, when the upstream reports them).
pub fn response_usage(usage: &openai::Usage) -> ResponseUsage {
    let cached = usage
        .prompt_tokens_details
        .as_ref()
        .and_then(|d| d.cached_tokens)
        .unwrap_or(0)
        .min(usage.prompt_tokens);
    let reasoning = usage
        .extra
        .get("completion_tokens_details")
        .and_then(|d| d.get("reasoning_tokens"))
        .and_then(Value::as_u64)
        .unwrap_or(0)
        .min(usage.completion_tokens);
    ResponseUsage {
        input_tokens: usage.prompt_tokens,
        input_tokens_details: InputTokensDetails {
            cached_tokens: cached,
        },
        output_tokens: usage.completion_tokens,
        output_tokens_details: OutputTokensDetails {
            reasoning_tokens: reasoning,
        },
        total_tokens: usage.prompt_tokens.saturating_add(usage.completion_tokens),
    }
}

/// A reasoning output item holding `text` as its summary.
pub fn reasoning_item(id: String, text: String) -> ReasoningItem {
    ReasoningItem {
        id: Some(id),
        summary: vec![SummaryPart {
            kind: "summary_text".into(),
            text,
        }],
        content: None,
        encrypted_content: None,
        extra: Map::new(),
    }
}

/// A whole chat completion as a response object of `model`.
pub fn chat_completion_to_response(
    completion: openai::ChatCompletion,
    frame: &ResponseFrame,
    model: &str,
) -> ResponseObject {
    let mut response = frame.response(model);
    let choice = completion.choices.into_iter().next();
    let (status, incomplete) =
        finish_to_status(choice.as_ref().and_then(|c| c.finish_reason.as_ref()));
    if let Some(choice) = choice {
        let message = choice.message;
        let output = &mut response.output;
        if let Some(Value::String(reasoning)) = message.extra.get(REASONING_CONTENT)
            && !reasoning.is_empty()
        {
            let id = frame.item_id("rs", output.len());
            output.push(OutputItem::Reasoning(reasoning_item(id, reasoning.clone())));
        }
        let mut content = Vec::new();
        if let Some(text) = message.content.filter(|t| !t.is_empty()) {
            content.push(OutputContent::text(text));
        }
        if let Some(refusal) = message.refusal {
            content.push(OutputContent::Refusal { refusal });
        }
        if !content.is_empty() {
            output.push(OutputItem::Message(OutputMessage {
                id: frame.item_id("msg", output.len()),
                role: responses::Role::Assistant,
                status: ItemStatus::Completed,
                content,
            }));
        }
        for call in message.tool_calls {
            let item = frame.tool_call_item(
                output.len(),
                call.id,
                call.function.name,
                call.function.arguments,
            );
            output.push(item);
        }
    }
    response.status = status;
    response.incomplete_details = incomplete;
    response.usage = Some(
        completion
            .usage
            .as_ref()
            .map(response_usage)
            .unwrap_or_default(),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::provider::wire::translate::responses_request_to_chat;
    use serde_json::json;

    fn frame(tools: Value) -> ResponseFrame {
        let request: ResponsesRequest = serde_json::from_value(json!({
            "model": "auto", "input": "hi", "tools": tools, "instructions": "be brief"
        }))
        .unwrap();
        let translated = responses_request_to_chat(request.clone()).unwrap();
        ResponseFrame::new("resp_pm-1".into(), 7, &request, translated.tools)
    }

    #[test]
    fn a_completion_becomes_reasoning_message_and_calls() {
        let frame = frame(json!([
            {"type": "function", "name": "exec_command"},
            {"type": "custom", "name": "apply_patch"},
            {"type": "namespace", "name": "ns", "tools": [{"type": "function", "name": "f"}]}
        ]));
        let completion: openai::ChatCompletion = serde_json::from_value(json!({
            "id": "c", "object": "chat.completion", "created": 1, "model": "up",
            "choices": [{"index": 0, "finish_reason": "tool_calls", "message": {
                "role": "assistant", "content": "On it.", "reasoning_content": "Need to look.",
                "tool_calls": [
                    {"id": "call_1", "type": "function", "function": {"name": "exec_command", "arguments": "{\"cmd\":\"ls\"}"}},
                    {"id": "call_2", "type": "function", "function": {"name": "apply_patch", "arguments": "{\"input\":\"*** Begin Patch\"}"}},
                    {"id": "call_3", "type": "function", "function": {"name": "ns__f", "arguments": "{}"}}
                ]}}],
            "usage": {"prompt_tokens": 100, "completion_tokens": 20, "total_tokens": 120,
                      "prompt_tokens_details": {"cached_tokens": 40},
                      "completion_tokens_details": {"reasoning_tokens": 5}}
        }))
        .unwrap();
        let response =
            serde_json::to_value(chat_completion_to_response(completion, &frame, "glm-4.7"))
                .unwrap();
        assert_eq!(response["id"], "resp_pm-1");
        assert_eq!(response["object"], "response");
        assert_eq!(response["status"], "completed");
        assert_eq!(response["model"], "glm-4.7");
        assert_eq!(response["instructions"], "be brief");
        assert_eq!(response["store"], false);
        assert_eq!(
            response["output"],
            json!([
                {"type": "reasoning", "id": "rs_pm-1_0", "summary": [{"type": "summary_text", "text": "Need to look."}]},
                {"type": "message", "id": "msg_pm-1_1", "role": "assistant", "status": "completed",
                 "content": [{"type": "output_text", "text": "On it.", "annotations": []}]},
                {"type": "function_call", "id": "fc_pm-1_2", "call_id": "call_1", "name": "exec_command", "arguments": "{\"cmd\":\"ls\"}", "status": "completed"},
                {"type": "custom_tool_call", "id": "ctc_pm-1_3", "call_id": "call_2", "name": "apply_patch", "input": "*** Begin Patch", "status": "completed"},
                {"type": "function_call", "id": "fc_pm-1_4", "call_id": "call_3", "name": "f", "namespace": "ns", "arguments": "{}", "status": "completed"}
            ])
        );
        assert_eq!(
            response["usage"],
            json!({"input_tokens": 100, "input_tokens_details": {"cached_tokens": 40},
                   "output_tokens": 20, "output_tokens_details": {"reasoning_tokens": 5}, "total_tokens": 120})
        );
    }

    #[test]
    fn a_cut_answer_is_incomplete() {
        let frame = frame(json!([]));
        let completion: openai::ChatCompletion = serde_json::from_value(json!({
            "id": "c", "model": "up",
            "choices": [{"index": 0, "finish_reason": "length", "message": {"role": "assistant", "content": "Once upon"}}]
        }))
        .unwrap();
        let response = chat_completion_to_response(completion, &frame, "m");
        assert_eq!(response.status, ResponseStatus::Incomplete);
        assert_eq!(
            response.incomplete_details.unwrap().reason,
            "max_output_tokens"
        );
    }

    #[test]
    fn custom_input_falls_back_to_the_raw_arguments() {
        assert_eq!(custom_input(r#"{"input":"x"}"#), "x");
        assert_eq!(custom_input("not json"), "not json");
        assert_eq!(custom_input(r#"{"other":1}"#), r#"{"other":1}"#);
    }
}

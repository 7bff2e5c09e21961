//! OpenAI chat chunk stream → OpenAI Responses event stream.
//!
//! The first chunk opens the response (`response.created`,
//! `response.in_progress`). Each kind of delta opens an output item and
//! streams into it: `reasoning_content` into a reasoning item's summary,
//! `content` and `refusal` into a message, each tool call into a function
//! call item (a custom tool's JSON arguments are decoded only when the call
//! is complete, so its item streams no deltas). A delta of another kind
//! closes the open text item first; tool calls stay open until the answer
//! ends, since a chat model may interleave their fragments. [`finish`]
//! closes what is open and ends with `response.completed` (or
//! `response.incomplete`) carrying the whole output and the usage;
//! [`fail`] ends with `response.failed`.
//!
//! Sequence numbers are not set here: the encoder numbers the events it
//! sends.
//!
//! [`finish`]: ChatToResponsesStream::finish
//! [`fail`]: ChatToResponsesStream::fail

use serde_json::Value;

use super::super::openai::{self, ChatCompletionChunk, FinishReason};
use super::super::responses::{
    self, FunctionCallItem, ItemStatus, OutputContent, OutputItem, OutputMessage, ResponseError,
    ResponseObject, ResponseStatus, StreamEvent, SummaryPart,
};
use super::response::REASONING_CONTENT;
use super::responses_response::{ResponseFrame, finish_to_status, reasoning_item, response_usage};

/// The text item being streamed.
#[derive(Debug)]
enum OpenText {
    Reasoning {
        index: usize,
        text: String,
    },
    Message {
        index: usize,
        text: Option<String>,
        refusal: Option<String>,
    },
}

/// A tool call being streamed.
#[derive(Debug)]
struct OpenCall {
    /// The chat call's index.
    chat_index: u32,
    /// Its output index.
    index: usize,
    call_id: String,
    name: String,
    arguments: String,
}

/// Translates one chat stream into Responses events (see the module docs).
#[derive(Debug)]
pub struct ChatToResponsesStream {
    frame: ResponseFrame,
    model: String,
    started: bool,
    /// Finished items by output index (`None` while open).
    output: Vec<Option<OutputItem>>,
    text: Option<OpenText>,
    calls: Vec<OpenCall>,
    finish: Option<FinishReason>,
    usage: Option<openai::Usage>,
    ended: bool,
}

impl ChatToResponsesStream {
    /// A translator for a response framed by `frame`, served by `model`.
    pub fn new(frame: ResponseFrame, model: &str) -> Self {
        ChatToResponsesStream {
            frame,
            model: model.to_string(),
            started: false,
            output: Vec::new(),
            text: None,
            calls: Vec::new(),
            finish: None,
            usage: None,
            ended: false,
        }
    }

    /// The usage reported so far, if any.
    pub fn usage(&self) -> Option<&openai::Usage> {
        self.usage.as_ref()
    }

    /// Translates one chunk.
    pub fn feed(&mut self, chunk: ChatCompletionChunk) -> Vec<StreamEvent> {
        let mut events = Vec::new();
        if self.ended {
            return events;
        }
        self.start(&mut events);
        if let Some(usage) = chunk.usage {
            self.usage = Some(usage);
        }
        // Only the first choice is served (requests ask for one).
        let Some(choice) = chunk.choices.into_iter().find(|c| c.index == 0) else {
            return events;
        };
        let delta = choice.delta;
        if let Some(Value::String(reasoning)) = delta.extra.get(REASONING_CONTENT)
            && !reasoning.is_empty()
        {
            self.reasoning_delta(reasoning, &mut events);
        }
        if let Some(content) = delta.content.filter(|c| !c.is_empty()) {
            self.message_delta(Some(content), None, &mut events);
        }
        if let Some(refusal) = delta.refusal.filter(|r| !r.is_empty()) {
            self.message_delta(None, Some(refusal), &mut events);
        }
        for call in delta.tool_calls {
            self.call_delta(call, &mut events);
        }
        if let Some(reason) = choice.finish_reason {
            self.finish = Some(reason);
        }
        events
    }

    /// Closes every open item and ends the response with its usage.
    pub fn finish(&mut self) -> Vec<StreamEvent> {
        let mut events = Vec::new();
        if self.ended {
            return events;
        }
        self.start(&mut events);
        self.close_text(&mut events);
        self.close_calls(&mut events);
        self.ended = true;
        let (status, incomplete) = finish_to_status(self.finish.as_ref());
        let mut response = self.response_so_far();
        response.status = status;
        response.incomplete_details = incomplete;
        response.usage = Some(self.usage.as_ref().map(response_usage).unwrap_or_default());
        let response = Box::new(response);
        events.push(match status {
            ResponseStatus::Incomplete => StreamEvent::Incomplete { response },
            _ => StreamEvent::Completed { response },
        });
        events
    }

    /// Ends the response as failed with `message`; items still open are
    /// left out of its output.
    pub fn fail(&mut self, code: &str, message: &str) -> Vec<StreamEvent> {
        let mut events = Vec::new();
        if self.ended {
            return events;
        }
        self.start(&mut events);
        self.ended = true;
        let mut response = self.response_so_far();
        response.status = ResponseStatus::Failed;
        response.error = Some(ResponseError {
            code: code.into(),
            message: message.into(),
        });
        response.usage = self.usage.as_ref().map(response_usage);
        events.push(StreamEvent::Failed {
            response: Box::new(response),
        });
        events
    }

    fn response_so_far(&self) -> ResponseObject {
        let mut response = self.frame.response(&self.model);
        response.output = self.output.iter().flatten().cloned().collect();
        response
    }

    fn start(&mut self, events: &mut Vec<StreamEvent>) {
        if self.started {
            return;
        }
        self.started = true;
        let response = Box::new(self.frame.response(&self.model));
        events.push(StreamEvent::Created {
            response: response.clone(),
        });
        events.push(StreamEvent::InProgress { response });
    }

    /// Reserves the next output index.
    fn next_index(&mut self) -> usize {
        self.output.push(None);
        self.output.len() - 1
    }

    fn reasoning_delta(&mut self, delta: &str, events: &mut Vec<StreamEvent>) {
        if !matches!(self.text, Some(OpenText::Reasoning { .. })) {
            self.close_text(events);
            self.close_calls(events);
            let index = self.next_index();
            let id = self.frame.item_id("rs", index);
            let mut item = reasoning_item(id.clone(), String::new());
            item.summary.clear();
            events.push(StreamEvent::OutputItemAdded {
                output_index: index,
                item: OutputItem::Reasoning(item),
            });
            events.push(StreamEvent::ReasoningSummaryPartAdded {
                item_id: id,
                output_index: index,
                summary_index: 0,
                part: summary_part(String::new()),
            });
            self.text = Some(OpenText::Reasoning {
                index,
                text: String::new(),
            });
        }
        if let Some(OpenText::Reasoning { index, text }) = &mut self.text {
            text.push_str(delta);
            events.push(StreamEvent::ReasoningSummaryTextDelta {
                item_id: self.frame.item_id("rs", *index),
                output_index: *index,
                summary_index: 0,
                delta: delta.to_string(),
            });
        }
    }

    fn message_delta(
        &mut self,
        content: Option<String>,
        refusal: Option<String>,
        events: &mut Vec<StreamEvent>,
    ) {
        if !matches!(self.text, Some(OpenText::Message { .. })) {
            self.close_text(events);
            self.close_calls(events);
            let index = self.next_index();
            events.push(StreamEvent::OutputItemAdded {
                output_index: index,
                item: OutputItem::Message(OutputMessage {
                    id: self.frame.item_id("msg", index),
                    role: responses::Role::Assistant,
                    status: ItemStatus::InProgress,
                    content: Vec::new(),
                }),
            });
            self.text = Some(OpenText::Message {
                index,
                text: None,
                refusal: None,
            });
        }
        let Some(OpenText::Message {
            index,
            text,
            refusal: refused,
        }) = &mut self.text
        else {
            return;
        };
        let item_id = self.frame.item_id("msg", *index);
        if let Some(content) = content {
            if text.is_none() {
                events.push(StreamEvent::ContentPartAdded {
                    item_id: item_id.clone(),
                    output_index: *index,
                    content_index: 0,
                    part: OutputContent::text(""),
                });
            }
            text.get_or_insert_default().push_str(&content);
            events.push(StreamEvent::OutputTextDelta {
                item_id: item_id.clone(),
                output_index: *index,
                content_index: 0,
                delta: content,
                logprobs: Vec::new(),
            });
        }
        if let Some(refusal) = refusal {
            let content_index = usize::from(text.is_some());
            if refused.is_none() {
                events.push(StreamEvent::ContentPartAdded {
                    item_id: item_id.clone(),
                    output_index: *index,
                    content_index,
                    part: OutputContent::Refusal {
                        refusal: String::new(),
                    },
                });
            }
            refused.get_or_insert_default().push_str(&refusal);
            events.push(StreamEvent::RefusalDelta {
                item_id,
                output_index: *index,
                content_index,
                delta: refusal,
            });
        }
    }

    fn call_delta(&mut self, delta: openai::ToolCallDelta, events: &mut Vec<StreamEvent>) {
        let position = self.calls.iter().position(|c| c.chat_index == delta.index);
        let position = match position {
            Some(p) => p,
            None => {
                self.close_text(events);
                let index = self.next_index();
                let name = delta
                    .function
                    .as_ref()
                    .and_then(|f| f.name.clone())
                    .unwrap_or_default();
                let call_id = delta
                    .id
                    .clone()
                    .unwrap_or_else(|| self.frame.item_id("call", index));
                let added =
                    self.frame
                        .tool_call_item(index, call_id.clone(), name.clone(), String::new());
                events.push(StreamEvent::OutputItemAdded {
                    output_index: index,
                    item: in_progress(added),
                });
                self.calls.push(OpenCall {
                    chat_index: delta.index,
                    index,
                    call_id,
                    name,
                    arguments: String::new(),
                });
                self.calls.len() - 1
            }
        };
        let call = &mut self.calls[position];
        if let Some(function) = delta.function {
            if let Some(name) = function.name.filter(|n| !n.is_empty())
                && call.name.is_empty()
            {
                call.name = name;
            }
            if let Some(arguments) = function.arguments.filter(|a| !a.is_empty()) {
                call.arguments.push_str(&arguments);
                // A custom tool's input is only known once its JSON is whole.
                if !self.frame.is_custom(&call.name) {
                    events.push(StreamEvent::FunctionCallArgumentsDelta {
                        item_id: self.frame.item_id("fc", call.index),
                        output_index: call.index,
                        delta: arguments,
                    });
                }
            }
        }
    }

    fn close_text(&mut self, events: &mut Vec<StreamEvent>) {
        match self.text.take() {
            None => {}
            Some(OpenText::Reasoning { index, text }) => {
                let id = self.frame.item_id("rs", index);
                events.push(StreamEvent::ReasoningSummaryTextDone {
                    item_id: id.clone(),
                    output_index: index,
                    summary_index: 0,
                    text: text.clone(),
                });
                events.push(StreamEvent::ReasoningSummaryPartDone {
                    item_id: id.clone(),
                    output_index: index,
                    summary_index: 0,
                    part: summary_part(text.clone()),
                });
                self.done(
                    index,
                    OutputItem::Reasoning(reasoning_item(id, text)),
                    events,
                );
            }
            Some(OpenText::Message {
                index,
                text,
                refusal,
            }) => {
                let id = self.frame.item_id("msg", index);
                let mut content = Vec::new();
                if let Some(text) = text {
                    events.push(StreamEvent::OutputTextDone {
                        item_id: id.clone(),
                        output_index: index,
                        content_index: 0,
                        text: text.clone(),
                        logprobs: Vec::new(),
                    });
                    let part = OutputContent::text(text);
                    events.push(StreamEvent::ContentPartDone {
                        item_id: id.clone(),
                        output_index: index,
                        content_index: 0,
                        part: part.clone(),
                    });
                    content.push(part);
                }
                if let Some(refusal) = refusal {
                    let content_index = content.len();
                    events.push(StreamEvent::RefusalDone {
                        item_id: id.clone(),
                        output_index: index,
                        content_index,
                        refusal: refusal.clone(),
                    });
                    let part = OutputContent::Refusal { refusal };
                    events.push(StreamEvent::ContentPartDone {
                        item_id: id.clone(),
                        output_index: index,
                        content_index,
                        part: part.clone(),
                    });
                    content.push(part);
                }
                let item = OutputItem::Message(OutputMessage {
                    id,
                    role: responses::Role::Assistant,
                    status: ItemStatus::Completed,
                    content,
                });
                self.done(index, item, events);
            }
        }
    }

    fn close_calls(&mut self, events: &mut Vec<StreamEvent>) {
        for call in std::mem::take(&mut self.calls) {
            let item =
                self.frame
                    .tool_call_item(call.index, call.call_id, call.name, call.arguments);
            match &item {
                OutputItem::FunctionCall(f) => {
                    events.push(StreamEvent::FunctionCallArgumentsDone {
                        item_id: item.id().to_string(),
                        output_index: call.index,
                        name: f.name.clone(),
                        arguments: f.arguments.clone(),
                    })
                }
                OutputItem::CustomToolCall(c) => {
                    events.push(StreamEvent::CustomToolCallInputDone {
                        item_id: item.id().to_string(),
                        output_index: call.index,
                        input: c.input.clone(),
                    })
                }
                _ => {}
            }
            self.done(call.index, item, events);
        }
    }

    fn done(&mut self, index: usize, item: OutputItem, events: &mut Vec<StreamEvent>) {
        events.push(StreamEvent::OutputItemDone {
            output_index: index,
            item: item.clone(),
        });
        self.output[index] = Some(item);
    }
}

fn summary_part(text: String) -> SummaryPart {
    SummaryPart {
        kind: "summary_text".into(),
        text,
    }
}

/// A tool call item as announced: in progress, no arguments yet.
fn in_progress(item: OutputItem) -> OutputItem {
    match item {
        OutputItem::FunctionCall(f) => OutputItem::FunctionCall(FunctionCallItem {
            status: Some(ItemStatus::InProgress),
            ..f
        }),
        OutputItem::CustomToolCall(mut c) => {
            c.status = Some(ItemStatus::InProgress);
            OutputItem::CustomToolCall(c)
        }
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::provider::wire::responses::ResponsesRequest;
    use crate::provider::wire::translate::responses_request_to_chat;
    use serde_json::json;

    fn translator(tools: Value) -> ChatToResponsesStream {
        let request: ResponsesRequest =
            serde_json::from_value(json!({"model": "auto", "input": "hi", "tools": tools}))
                .unwrap();
        let translated = responses_request_to_chat(request.clone()).unwrap();
        ChatToResponsesStream::new(
            ResponseFrame::new("resp_x".into(), 1, &request, translated.tools),
            "glm-4.7",
        )
    }

    fn chunk(delta: Value, finish: Value) -> ChatCompletionChunk {
        serde_json::from_value(json!({
            "id": "c", "object": "chat.completion.chunk", "created": 1, "model": "up",
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]
        }))
        .unwrap()
    }

    fn types(events: &[StreamEvent]) -> Vec<&'static str> {
        events.iter().map(StreamEvent::event_type).collect()
    }

    #[test]
    fn reasoning_text_and_calls_stream_as_items() {
        let mut t = translator(
            json!([{"type": "function", "name": "exec_command"}, {"type": "custom", "name": "apply_patch"}]),
        );
        let mut events = Vec::new();
        for c in [
            chunk(json!({"role": "assistant", "content": ""}), Value::Null),
            chunk(json!({"reasoning_content": "Look "}), Value::Null),
            chunk(json!({"reasoning_content": "first."}), Value::Null),
            chunk(json!({"content": "Let me "}), Value::Null),
            chunk(json!({"content": "check."}), Value::Null),
            chunk(
                json!({"tool_calls": [{"index": 0, "id": "call_1", "type": "function", "function": {"name": "exec_command", "arguments": ""}}]}),
                Value::Null,
            ),
            chunk(
                json!({"tool_calls": [{"index": 0, "function": {"arguments": "{\"cmd\":"}}]}),
                Value::Null,
            ),
            chunk(
                json!({"tool_calls": [{"index": 1, "id": "call_2", "type": "function", "function": {"name": "apply_patch", "arguments": "{\"input\":\"*** Begin\"}"}}]}),
                Value::Null,
            ),
            chunk(
                json!({"tool_calls": [{"index": 0, "function": {"arguments": "\"ls\"}"}}]}),
                Value::Null,
            ),
            chunk(json!({}), json!("tool_calls")),
        ] {
            events.extend(t.feed(c));
        }
        let usage: ChatCompletionChunk = serde_json::from_value(json!({
            "id": "c", "choices": [], "usage": {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15}
        }))
        .unwrap();
        events.extend(t.feed(usage));
        events.extend(t.finish());
        assert_eq!(
            types(&events),
            [
                "response.created",
                "response.in_progress",
                "response.output_item.added",
                "response.reasoning_summary_part.added",
                "response.reasoning_summary_text.delta",
                "response.reasoning_summary_text.delta",
                "response.reasoning_summary_text.done",
                "response.reasoning_summary_part.done",
                "response.output_item.done",
                "response.output_item.added",
                "response.content_part.added",
                "response.output_text.delta",
                "response.output_text.delta",
                "response.output_text.done",
                "response.content_part.done",
                "response.output_item.done",
                "response.output_item.added",
                "response.function_call_arguments.delta",
                "response.output_item.added",
                "response.function_call_arguments.delta",
                "response.function_call_arguments.done",
                "response.output_item.done",
                "response.custom_tool_call_input.done",
                "response.output_item.done",
                "response.completed",
            ]
        );
        let StreamEvent::Completed { response } = events.last().unwrap() else {
            panic!("completed");
        };
        let value = serde_json::to_value(response).unwrap();
        assert_eq!(value["model"], "glm-4.7");
        assert_eq!(value["status"], "completed");
        assert_eq!(value["usage"]["input_tokens"], 10);
        assert_eq!(value["usage"]["output_tokens"], 5);
        let output = value["output"].as_array().unwrap();
        assert_eq!(output.len(), 4);
        assert_eq!(output[0]["summary"][0]["text"], "Look first.");
        assert_eq!(output[1]["content"][0]["text"], "Let me check.");
        assert_eq!(output[2]["arguments"], "{\"cmd\":\"ls\"}");
        assert_eq!(output[2]["call_id"], "call_1");
        assert_eq!(output[3]["type"], "custom_tool_call");
        assert_eq!(output[3]["input"], "*** Begin");
    }

    #[test]
    fn a_namespaced_call_streams_under_its_own_name_and_namespace() {
        let mut t = translator(
            json!([{"type": "namespace", "name": "agents", "tools": [{"type": "function", "name": "spawn"}]}]),
        );
        let mut events = t.feed(chunk(
            json!({"tool_calls": [{"index": 0, "id": "call_9", "type": "function", "function": {"name": "agents__spawn", "arguments": "{}"}}]}),
            json!("tool_calls"),
        ));
        events.extend(t.finish());
        let added = events
            .iter()
            .find_map(|e| match e {
                StreamEvent::OutputItemAdded { item, .. } => Some(item.clone()),
                _ => None,
            })
            .expect("an added item");
        let OutputItem::FunctionCall(call) = added else {
            panic!("a function call: {added:?}");
        };
        assert_eq!(
            (call.name.as_str(), call.namespace.as_deref()),
            ("spawn", Some("agents"))
        );
        let StreamEvent::Completed { response } = events.last().unwrap() else {
            panic!("completed");
        };
        let value = serde_json::to_value(&response.output[0]).unwrap();
        assert_eq!(value["name"], "spawn");
        assert_eq!(value["namespace"], "agents");
        assert_eq!(value["call_id"], "call_9");
    }

    #[test]
    fn a_cut_stream_is_incomplete_and_a_broken_one_failed() {
        let mut t = translator(json!([]));
        t.feed(chunk(json!({"content": "Once"}), json!("length")));
        let end = t.finish();
        assert_eq!(end.last().unwrap().event_type(), "response.incomplete");
        let mut t = translator(json!([]));
        t.feed(chunk(json!({"content": "Once"}), Value::Null));
        let end = t.fail("server_error", "the provider went away");
        let StreamEvent::Failed { response } = &end[0] else {
            panic!("failed");
        };
        assert_eq!(response.status, ResponseStatus::Failed);
        assert_eq!(
            response.error.as_ref().unwrap().message,
            "the provider went away"
        );
        assert!(response.output.is_empty(), "the open message is left out");
        assert!(t.finish().is_empty(), "nothing after the end");
    }
}

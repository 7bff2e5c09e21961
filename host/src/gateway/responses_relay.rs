//! Relaying a provider's stream to a `/v1/responses` client as Responses
//! events.
//!
//! Anthropic events are first turned into chat chunks, then every chunk
//! into Responses events ([`ChatToResponsesStream`]). Each event carries
//! its `sequence_number`. The final `response.completed` (or
//! `response.incomplete`) carries the usage and, like the final usage event
//! of the chat APIs, a `pointsman` object with the model and the costs; an
//! SSE comment repeats it. A stream that breaks ends with
//! `response.failed`, never with a clean end.
//!
//! An upstream that speaks the Responses API itself (a passed-through
//! call, see [`crate::provider::passthrough`]) has its events relayed as
//! they came, numbers included; only the response objects' `model` is set
//! to the catalog id, and its final event is held, as a translated one is,
//! to carry the cost once the call is on record.

use bytes::Bytes;

use super::relay::{Relay, add_field, comment, cost_summary};
use crate::ledger::Cost;
use crate::provider::passthrough::{self, EventKind, NativeEvent};
use crate::provider::wire::anthropic::StreamEvent as AnthropicEvent;
use crate::provider::wire::responses::StreamEvent;
use crate::provider::wire::sse;
use crate::provider::wire::translate::{
    AnthropicToOpenAiStream, ChatToResponsesStream, ResponseFrame,
};
use crate::provider::{Event, Usage, unix_now};

/// One Responses stream's relay state.
pub struct ResponsesRelay {
    model: String,
    translator: ChatToResponsesStream,
    /// Set once the upstream turns out to speak Anthropic.
    anthropic: Option<Box<AnthropicToOpenAiStream>>,
    /// Set once the upstream turns out to speak the Responses API.
    native: Option<Box<Native>>,
    usage: Usage,
    upstream_done: bool,
    sequence: u64,
    planner_cost: Option<Cost>,
}

impl ResponsesRelay {
    /// A relay for the response framed by `frame`, served by `model` (a
    /// catalog id).
    pub fn new(frame: ResponseFrame, model: &str) -> Self {
        ResponsesRelay {
            model: model.to_string(),
            translator: ChatToResponsesStream::new(frame, model),
            anthropic: None,
            native: None,
            usage: Usage::default(),
            upstream_done: false,
            sequence: 0,
            planner_cost: None,
        }
    }

    /// In plan mode: the planner's share of the cost.
    pub fn planner_cost(mut self, cost: Option<Cost>) -> Self {
        self.planner_cost = cost;
        self
    }

    /// The usage reported so far.
    pub fn usage(&self) -> Usage {
        match &self.anthropic {
            Some(t) => t.usage(),
            None => self.usage,
        }
    }

    /// Relays a passed-through event: as it came, but the final one, which
    /// waits for [`ResponsesRelay::finish`].
    fn feed_native(&mut self, event: NativeEvent) -> Result<Vec<Bytes>, String> {
        if self.anthropic.is_some() || self.sequence > 0 {
            return Err("the provider mixed stream formats".into());
        }
        let native = self.native.get_or_insert_with(Default::default);
        native.relayed += 1;
        match event.kind() {
            EventKind::Finished => {
                self.upstream_done = true;
                self.usage = event.usage();
                native.finished = Some(event);
                return Ok(Vec::new());
            }
            EventKind::Started => native.response = event.response().cloned(),
            EventKind::Other => {}
        }
        Ok(vec![event.encode(&self.model, &[])])
    }

    /// Whether the upstream finished its answer.
    pub fn finished_upstream(&self) -> bool {
        self.upstream_done
    }

    /// Relays one upstream event; returns the bytes to send now.
    pub fn feed(&mut self, event: Event) -> Result<Vec<Bytes>, String> {
        let mut events = Vec::new();
        if self.native.is_some() && !matches!(event, Event::Responses(_)) {
            return Err("the provider mixed stream formats".into());
        }
        match event {
            Event::Responses(event) => return self.feed_native(event),
            Event::OpenAi(chunk) => {
                if self.anthropic.is_some() {
                    return Err("the provider mixed stream formats".into());
                }
                if chunk.choices.iter().any(|c| c.finish_reason.is_some()) {
                    self.upstream_done = true;
                }
                if let Some(usage) = &chunk.usage {
                    self.usage = Usage::from(usage);
                }
                events.extend(self.translator.feed(chunk));
            }
            Event::Anthropic(event) => {
                if matches!(event, AnthropicEvent::MessageStop) {
                    self.upstream_done = true;
                }
                let translator = self.anthropic.get_or_insert_with(|| {
                    Box::new(AnthropicToOpenAiStream::new(true, unix_now()))
                });
                let chunks = translator.feed(event).map_err(|e| e.to_string())?;
                for chunk in chunks {
                    events.extend(self.translator.feed(chunk));
                }
            }
        }
        Ok(events.iter().map(|e| self.encode(e, None)).collect())
    }

    /// The end of a complete stream: open items closed, then the final
    /// event with the usage and the cost.
    pub fn finish(&mut self, cost: Cost) -> Vec<Bytes> {
        if let Some(native) = &mut self.native {
            let summary = cost_summary(&self.model, self.usage, cost, self.planner_cost);
            return match native.finished.take() {
                Some(last) => vec![
                    last.encode(&self.model, &[("pointsman", &summary)]),
                    comment(&summary),
                ],
                None => self.error("the provider's stream ended before the answer was complete"),
            };
        }
        let mut events = Vec::new();
        if let Some(translator) = &mut self.anthropic {
            for chunk in translator.finish() {
                events.extend(self.translator.feed(chunk));
            }
        }
        events.extend(self.translator.finish());
        let summary = cost_summary(&self.model, self.usage(), cost, self.planner_cost);
        let last = events.len().saturating_sub(1);
        let mut out: Vec<Bytes> = events
            .iter()
            .enumerate()
            .map(|(i, e)| self.encode(e, (i == last).then_some(summary.as_str())))
            .collect();
        out.push(comment(&summary));
        out
    }

    /// A `response.failed` event for a stream that broke.
    pub fn error(&mut self, message: &str) -> Vec<Bytes> {
        let message = format!("the stream was interrupted: {message}");
        if let Some(native) = &mut self.native {
            let sequence = native.relayed;
            native.relayed += 1;
            return vec![passthrough::failed_event(
                native.response.take(),
                sequence,
                &self.model,
                &message,
            )];
        }
        let events = self.translator.fail("server_error", &message);
        events.iter().map(|e| self.encode(e, None)).collect()
    }

    /// The event as SSE, numbered, with the cost summary when given.
    fn encode(&mut self, event: &StreamEvent, summary: Option<&str>) -> Bytes {
        let mut data = serde_json::to_string(event).unwrap_or_else(|_| "{}".into());
        add_field(&mut data, "sequence_number", &self.sequence.to_string());
        self.sequence += 1;
        if let Some(summary) = summary {
            add_field(&mut data, "pointsman", summary);
        }
        sse::encode_event(Some(event.event_type()), &data)
    }
}

/// A passed-through stream's state.
#[derive(Default)]
struct Native {
    /// Events relayed so far: the next event's number, as the upstream
    /// numbers from 0.
    relayed: u64,
    /// The response object the upstream started with, for a failed end.
    response: Option<serde_json::Map<String, serde_json::Value>>,
    /// The final event, held until the call is on record.
    finished: Option<NativeEvent>,
}

/// The relay for a client of either kind.
pub enum ClientRelay {
    /// A chat-completions or messages client.
    Chat(Box<Relay>),
    /// A Responses client.
    Responses(Box<ResponsesRelay>),
}

impl ClientRelay {
    /// The usage reported so far.
    pub fn usage(&self) -> Usage {
        match self {
            ClientRelay::Chat(r) => r.usage(),
            ClientRelay::Responses(r) => r.usage(),
        }
    }

    /// Whether the upstream finished its answer.
    pub fn finished_upstream(&self) -> bool {
        match self {
            ClientRelay::Chat(r) => r.finished_upstream(),
            ClientRelay::Responses(r) => r.finished_upstream(),
        }
    }

    /// Relays one upstream event.
    pub fn feed(&mut self, event: Event) -> Result<Vec<Bytes>, String> {
        match self {
            ClientRelay::Chat(r) => r.feed(event),
            ClientRelay::Responses(r) => r.feed(event),
        }
    }

    /// The end of a complete stream, with its cost.
    pub fn finish(&mut self, cost: Cost) -> Vec<Bytes> {
        match self {
            ClientRelay::Chat(r) => r.finish(cost),
            ClientRelay::Responses(r) => r.finish(cost),
        }
    }

    /// The error that ends a broken stream.
    pub fn error(&mut self, message: &str) -> Vec<Bytes> {
        match self {
            ClientRelay::Chat(r) => r.error(message),
            ClientRelay::Responses(r) => r.error(message),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::provider::wire::responses::ResponsesRequest;
    use crate::provider::wire::translate::responses_request_to_chat;
    use serde_json::{Value, json};

    fn relay() -> ResponsesRelay {
        let request: ResponsesRequest =
            serde_json::from_value(json!({"model": "auto", "input": "hi"})).unwrap();
        let tools = responses_request_to_chat(request.clone()).unwrap().tools;
        ResponsesRelay::new(
            ResponseFrame::new("resp_t".into(), 1, &request, tools),
            "glm-4.7",
        )
    }

    fn data(bytes: &[Bytes]) -> Vec<Value> {
        bytes
            .iter()
            .flat_map(|b| {
                std::str::from_utf8(b)
                    .unwrap()
                    .lines()
                    .filter_map(|l| l.strip_prefix("data: "))
                    .map(|d| serde_json::from_str(d).unwrap())
                    .collect::<Vec<Value>>()
            })
            .collect()
    }

    #[test]
    fn an_anthropic_stream_ends_in_a_numbered_completed_event_with_the_cost() {
        let mut relay = relay();
        let mut out = Vec::new();
        for event in [
            json!({"type": "message_start", "message": {"id": "msg_1", "type": "message", "role": "assistant", "model": "up", "content": [], "stop_reason": null, "usage": {"input_tokens": 12, "output_tokens": 1}}}),
            json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}),
            json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Hello"}}),
            json!({"type": "content_block_stop", "index": 0}),
            json!({"type": "message_delta", "delta": {"stop_reason": "end_turn"}, "usage": {"output_tokens": 3}}),
            json!({"type": "message_stop"}),
        ] {
            let event: AnthropicEvent = serde_json::from_value(event).unwrap();
            out.extend(relay.feed(Event::Anthropic(event)).unwrap());
        }
        assert!(relay.finished_upstream());
        let cost = Cost {
            usd: 0.5,
            baseline_usd: 2.0,
        };
        out.extend(relay.finish(cost));
        let events = data(&out);
        for (i, event) in events.iter().enumerate() {
            assert_eq!(event["sequence_number"], i as u64, "{event}");
        }
        let last = events.last().unwrap();
        assert_eq!(last["type"], "response.completed");
        assert_eq!(last["response"]["output"][0]["content"][0]["text"], "Hello");
        assert_eq!(last["response"]["usage"]["input_tokens"], 12);
        assert_eq!(last["response"]["usage"]["output_tokens"], 3);
        assert_eq!(last["pointsman"]["model"], "glm-4.7");
        assert_eq!(last["pointsman"]["cost_usd"], "0.50000000");
        assert_eq!(last["pointsman"]["baseline_cost_usd"], "2.00000000");
        let text = std::str::from_utf8(out.last().unwrap()).unwrap();
        assert!(text.starts_with(": pointsman {"), "{text}");
    }

    #[test]
    fn a_broken_stream_ends_failed() {
        let mut relay = relay();
        let events = data(&relay.error("connection reset"));
        let last = events.last().unwrap();
        assert_eq!(last["type"], "response.failed");
        assert_eq!(last["response"]["status"], "failed");
        assert!(
            last["response"]["error"]["message"]
                .as_str()
                .unwrap()
                .contains("connection reset")
        );
    }
}

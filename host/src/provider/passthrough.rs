//! The Responses API passed through to upstreams that speak it.
//!
//! A `/v1/responses` request is translated to chat completions for routing
//! and for upstreams that speak only chat; a provider configured with
//! `responses = true` is sent the client's own body instead
//! ([`NativeRequest`]), with only the model, the output cap, the plan and
//! `store` changed, and its answer comes back as it came
//! ([`NativeResponse`], [`NativeEvent`]): hosted tools, encrypted
//! reasoning and any field this gateway does not model survive the trip.
//!
//! An answer is read only as far as billing and the client's view need:
//! the usage, whether the stream is over, and the `model` of the response
//! objects (set to the catalog id, as on every other path). Every other
//! event is relayed byte for byte, so a new event type costs nothing here.

use bytes::Bytes;
use serde_json::{Map, Value};

use super::wire::serde_helpers::MAX_TOKEN_COUNT;
use super::wire::sse;
use super::{Event, ProviderError, Response, Usage};

/// A `/v1/responses` request as the client sent it, to be sent on to an
/// upstream that speaks the Responses API.
#[derive(Debug, Clone)]
pub struct NativeRequest {
    body: Map<String, Value>,
}

impl NativeRequest {
    /// The client's body; `None` unless it is a JSON object (the gateway
    /// has refused anything else by then).
    pub fn new(body: Value) -> Option<Self> {
        match body {
            Value::Object(mut body) => {
                // Pointsman is stateless and refuses every request that
                // needs stored state, so nothing an upstream stores could
                // ever be used; OpenAI stores by default.
                body.insert("store".into(), Value::Bool(false));
                Some(NativeRequest { body })
            }
            _ => None,
        }
    }

    /// Whether the client asked for a stream.
    pub fn is_stream(&self) -> bool {
        self.body.get("stream").and_then(Value::as_bool) == Some(true)
    }

    /// The output cap the client set, if any.
    pub fn max_output_tokens(&self) -> Option<u64> {
        self.body.get("max_output_tokens").and_then(Value::as_u64)
    }

    /// Lowers the output cap to `cap` (a route's cap, or the one a budget
    /// reservation holds the call to); a request without one gets `cap`.
    pub fn cap_output_tokens(&mut self, cap: u32) {
        let cap = u64::from(cap);
        let capped = self.max_output_tokens().map_or(cap, |asked| asked.min(cap));
        self.body
            .insert("max_output_tokens".into(), Value::from(capped));
    }

    /// Adds a plan to the instructions, after the client's own (as plan
    /// mode adds it after a chat request's system messages).
    pub fn add_plan(&mut self, plan: &str) {
        let instructions = match self.body.get("instructions").and_then(Value::as_str) {
            Some(own) if !own.is_empty() => format!("{own}\n\n{plan}"),
            _ => plan.to_string(),
        };
        self.body
            .insert("instructions".into(), Value::String(instructions));
    }

    /// The body to send for `upstream_model`.
    pub fn body_for(&self, upstream_model: &str) -> Result<Vec<u8>, ProviderError> {
        // The one field that differs per endpoint is written in place of
        // the client's, rather than cloning a body that may be megabytes.
        struct Body<'a> {
            body: &'a Map<String, Value>,
            model: &'a str,
        }
        impl serde::Serialize for Body<'_> {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                use serde::ser::SerializeMap;
                let mut map = s.serialize_map(Some(self.body.len() + 1))?;
                map.serialize_entry("model", self.model)?;
                for (key, value) in self.body.iter().filter(|(k, _)| *k != "model") {
                    map.serialize_entry(key, value)?;
                }
                map.end()
            }
        }
        serde_json::to_vec(&Body {
            body: &self.body,
            model: upstream_model,
        })
        .map_err(|e| ProviderError::Malformed(format!("cannot encode the request: {e}")))
    }
}

/// A whole response object as the upstream sent it.
#[derive(Debug, Clone)]
pub struct NativeResponse {
    body: Map<String, Value>,
}

impl NativeResponse {
    /// The tokens the answer used.
    pub fn usage(&self) -> Usage {
        usage_of(self.body.get("usage"))
    }

    /// Sets the model the client sees.
    pub fn set_model(&mut self, model: &str) {
        self.body.insert("model".into(), Value::from(model));
    }

    /// The text of the answer's messages (its `output_text` parts).
    pub fn output_text(&self) -> String {
        let Some(Value::Array(output)) = self.body.get("output") else {
            return String::new();
        };
        output
            .iter()
            .filter(|item| item.get("type").and_then(Value::as_str) == Some("message"))
            .filter_map(|item| item.get("content").and_then(Value::as_array))
            .flatten()
            .filter(|part| part.get("type").and_then(Value::as_str) == Some("output_text"))
            .filter_map(|part| part.get("text").and_then(Value::as_str))
            .collect()
    }

    /// The answer's JSON.
    pub fn to_vec(&self) -> Result<Vec<u8>, serde_json::Error> {
        serde_json::to_vec(&self.body)
    }
}

/// Reads a non-streamed answer: a response object. A response that failed
/// is the upstream's error; one that is still queued or in progress could
/// only be fetched later from the upstream's store, which is never used.
pub fn parse_answer(bytes: &[u8]) -> Result<Response, ProviderError> {
    let body: Map<String, Value> = super::http::from_json_named(bytes)
        .map_err(|e| ProviderError::Malformed(format!("a response object: {e}")))?;
    match body.get("status").and_then(Value::as_str) {
        Some("failed") => return Err(failure(body.get("error"))),
        Some("queued" | "in_progress") => {
            return Err(ProviderError::Malformed(
                "the response is not finished (status queued or in_progress)".into(),
            ));
        }
        _ => {}
    }
    if !body.get("output").is_some_and(Value::is_array) {
        return Err(ProviderError::Malformed(
            "at `output`: a response object has a list of output items".into(),
        ));
    }
    Ok(Response::Responses(Box::new(NativeResponse { body })))
}

/// What a streamed event means to the relay.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    /// `response.created`, `response.queued` or `response.in_progress`:
    /// carries the response so far, whose `model` the client sees.
    Started,
    /// `response.completed` or `response.incomplete`: the last event, with
    /// the usage.
    Finished,
    /// Anything else: relayed as it came.
    Other,
}

/// One event of a Responses stream as the upstream sent it.
#[derive(Debug, Clone)]
pub struct NativeEvent {
    /// The event's `type`.
    name: String,
    kind: EventKind,
    /// The event's JSON text, as sent (or with its `type` set, when the
    /// upstream named the event only in its SSE `event:` field); without
    /// the response object of a started or finished event.
    data: String,
    /// A started or finished event's response object.
    response: Option<Map<String, Value>>,
}

impl NativeEvent {
    /// What the event means.
    pub fn kind(&self) -> EventKind {
        self.kind
    }

    /// The usage a [`EventKind::Finished`] event reports.
    pub fn usage(&self) -> Usage {
        match self.kind {
            EventKind::Finished => usage_of(self.response.as_ref().and_then(|r| r.get("usage"))),
            _ => Usage::default(),
        }
    }

    /// The response object a started or finished event carries.
    pub fn response(&self) -> Option<&Map<String, Value>> {
        self.response.as_ref()
    }

    /// The event as SSE: as it came, but for the `model` of its response
    /// object, which the client sees as `model`, and `extra` fields (name
    /// and JSON text) added to the event.
    pub fn encode(&self, model: &str, extra: &[(&str, &str)]) -> Bytes {
        let mut data = match &self.response {
            None if extra.is_empty() => return sse::encode_event(Some(&self.name), &self.data),
            None => self.data.clone(),
            Some(response) => {
                let mut response = response.clone();
                response.insert("model".into(), Value::from(model));
                let mut data = self.data.clone();
                sse::add_field(&mut data, "response", &Value::Object(response).to_string());
                data
            }
        };
        for (name, value) in extra {
            sse::add_field(&mut data, name, value);
        }
        sse::encode_event(Some(&self.name), &data)
    }
}

/// A `response.failed` event ending a stream the gateway cut short: the
/// upstream's response so far (or a bare one), failed with `message`.
pub fn failed_event(
    response: Option<Map<String, Value>>,
    sequence_number: u64,
    model: &str,
    message: &str,
) -> Bytes {
    let mut response = response.unwrap_or_default();
    response.insert("model".into(), Value::from(model));
    response.insert("status".into(), Value::from("failed"));
    response.insert(
        "error".into(),
        serde_json::json!({"code": "server_error", "message": message}),
    );
    let event = serde_json::json!({
        "type": "response.failed",
        "sequence_number": sequence_number,
        "response": response,
    });
    sse::encode_event(Some("response.failed"), &event.to_string())
}

/// Reads one SSE payload of a Responses stream (`name` is its `event:`
/// field, which stands in for a missing `type`). `None` for blank
/// keep-alives. An `error` or `response.failed` event is the upstream's
/// error, so that a failure before any output can still fall back.
///
/// Every event is parsed whole, though most are relayed as their text:
/// what reaches the client must be a JSON object within the parser's depth
/// limit, as every answer of the chat APIs is.
pub fn parse_event(name: Option<&str>, data: &str) -> Result<Option<Event>, ProviderError> {
    let data = data.trim();
    if data.is_empty() || data == "[DONE]" {
        return Ok(None);
    }
    let mut event: Map<String, Value> = serde_json::from_str(data)
        .map_err(|e| ProviderError::Malformed(format!("stream event: {e}")))?;
    let (name, data) = match (event.get("type").and_then(Value::as_str), name) {
        // JSON sent over several `data:` lines goes on as one, as naive
        // line-oriented clients expect.
        (Some(kind), _) if data.contains(['\n', '\r']) => {
            (kind.to_string(), Value::Object(event.clone()).to_string())
        }
        (Some(kind), _) => (kind.to_string(), data.to_string()),
        // A client reads the type from the data: write it there.
        (None, Some(name)) if !name.is_empty() => {
            event.insert("type".into(), Value::from(name));
            (name.to_string(), Value::Object(event.clone()).to_string())
        }
        (None, _) => {
            return Err(ProviderError::Malformed(
                "stream event: an event without a type".into(),
            ));
        }
    };
    if name.chars().any(char::is_control) {
        // It is the SSE event name too, which cannot hold a line break.
        return Err(ProviderError::Malformed(
            "stream event: a type with control characters".into(),
        ));
    }
    let kind = match name.as_str() {
        "response.created" | "response.queued" | "response.in_progress" => EventKind::Started,
        "response.completed" | "response.incomplete" => EventKind::Finished,
        "error" => {
            let message = event
                .get("message")
                .or_else(|| event.get("error").and_then(|e| e.get("message")))
                .and_then(Value::as_str);
            return Err(upstream_error(message));
        }
        "response.failed" => {
            return Err(failure(event.get("response").and_then(|r| r.get("error"))));
        }
        _ => EventKind::Other,
    };
    let (data, response) = match kind {
        EventKind::Other => (data, None),
        _ => match event.remove("response") {
            Some(Value::Object(response)) => (Value::Object(event).to_string(), Some(response)),
            _ => {
                return Err(ProviderError::Malformed(format!(
                    "stream event: `{name}` without a response object"
                )));
            }
        },
    };
    Ok(Some(Event::Responses(NativeEvent {
        name,
        kind,
        data,
        response,
    })))
}

/// The error of a failed response.
fn failure(error: Option<&Value>) -> ProviderError {
    upstream_error(error.and_then(|e| e.get("message")).and_then(Value::as_str))
}

/// An error the upstream reported inside a 200 answer: a bad gateway, as
/// an error event of the chat APIs is.
fn upstream_error(message: Option<&str>) -> ProviderError {
    ProviderError::Status {
        status: 502,
        message: message
            .unwrap_or("the response failed")
            .chars()
            .take(512)
            .collect(),
        retry_after: None,
    }
}

/// Responses usage, read tolerantly: a missing or odd count is zero, a
/// huge one capped. `input_tokens` includes the cached ones, as the
/// gateway's [`Usage`] does.
fn usage_of(usage: Option<&Value>) -> Usage {
    let count = |value: Option<&Value>| {
        value
            .and_then(Value::as_u64)
            .unwrap_or(0)
            .min(MAX_TOKEN_COUNT)
    };
    let Some(usage) = usage else {
        return Usage::default();
    };
    let input = count(usage.get("input_tokens"));
    Usage {
        input_tokens: input,
        output_tokens: count(usage.get("output_tokens")),
        cached_input_tokens: count(
            usage
                .get("input_tokens_details")
                .and_then(|d| d.get("cached_tokens")),
        )
        .min(input),
        cache_creation_input_tokens: 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn event(value: Value) -> NativeEvent {
        match parse_event(None, &value.to_string()) {
            Ok(Some(Event::Responses(event))) => event,
            other => panic!("{value}: {other:?}"),
        }
    }

    #[test]
    fn the_body_sent_is_the_clients_with_the_model_the_cap_the_plan_and_no_store() {
        let body = json!({"model": "gpt-5", "input": [{"type": "web_search_call", "id": "ws_1"}],
            "tools": [{"type": "web_search"}], "instructions": "Be brief.", "store": true,
            "max_output_tokens": 9000, "include": ["reasoning.encrypted_content"]});
        let mut request = NativeRequest::new(body).unwrap();
        request.cap_output_tokens(500);
        request.add_plan("[plan]");
        let sent: Value = serde_json::from_slice(&request.body_for("up-model").unwrap()).unwrap();
        assert_eq!(sent["model"], "up-model");
        assert_eq!(sent["max_output_tokens"], 500);
        assert_eq!(sent["instructions"], "Be brief.\n\n[plan]");
        assert_eq!(sent["store"], false);
        assert_eq!(sent["tools"][0]["type"], "web_search");
        assert_eq!(sent["input"][0]["type"], "web_search_call");
        assert_eq!(sent["include"][0], "reasoning.encrypted_content");
        // A cap never raises the client's.
        let mut low = NativeRequest::new(json!({"input": "hi", "max_output_tokens": 10})).unwrap();
        low.cap_output_tokens(500);
        assert_eq!(low.max_output_tokens(), Some(10));
        assert!(NativeRequest::new(json!([1])).is_none());
    }

    #[test]
    fn a_response_object_is_read_for_its_usage_and_kept_whole() {
        let body = json!({"id": "resp_1", "object": "response", "status": "completed",
            "model": "up", "output": [{"type": "web_search_call", "id": "ws", "status": "completed"}],
            "usage": {"input_tokens": 100, "input_tokens_details": {"cached_tokens": 40},
                      "output_tokens": 7, "total_tokens": 107}, "vendor_field": 1});
        let Response::Responses(mut answer) = parse_answer(body.to_string().as_bytes()).unwrap()
        else {
            panic!("not a Responses answer");
        };
        let usage = answer.usage();
        assert_eq!(
            (
                usage.input_tokens,
                usage.cached_input_tokens,
                usage.output_tokens
            ),
            (100, 40, 7)
        );
        assert_eq!(answer.output_text(), "");
        answer.set_model("executor");
        let out: Value = serde_json::from_slice(&answer.to_vec().unwrap()).unwrap();
        assert_eq!(out["model"], "executor");
        assert_eq!(out["vendor_field"], 1);
        assert_eq!(out["output"][0]["type"], "web_search_call");
    }

    #[test]
    fn failed_unfinished_and_shapeless_answers_are_errors() {
        let failed = json!({"status": "failed", "output": [],
            "error": {"code": "server_error", "message": "model crashed"}});
        match parse_answer(failed.to_string().as_bytes()) {
            Err(ProviderError::Status {
                status: 502,
                message,
                ..
            }) => assert_eq!(message, "model crashed"),
            other => panic!("{other:?}"),
        }
        for body in [
            json!({"status": "queued", "output": []}),
            json!({"status": "completed"}),
        ] {
            assert!(
                matches!(
                    parse_answer(body.to_string().as_bytes()),
                    Err(ProviderError::Malformed(_))
                ),
                "{body}"
            );
        }
        assert!(matches!(
            parse_answer(b"[]"),
            Err(ProviderError::Malformed(_))
        ));
    }

    #[test]
    fn events_are_relayed_as_they_came_but_for_the_model_and_added_fields() {
        let delta = json!({"type": "response.output_text.delta", "item_id": "m", "output_index": 0,
            "content_index": 0, "delta": "Hel", "sequence_number": 3, "obfuscation": "x1"});
        let relayed = event(delta.clone()).encode("executor", &[]);
        let text = std::str::from_utf8(&relayed).unwrap();
        assert!(
            text.starts_with("event: response.output_text.delta\n"),
            "{text}"
        );
        assert!(text.contains(&delta.to_string()), "{text}");
        let created = event(json!({"type": "response.created", "sequence_number": 0,
            "response": {"id": "resp_1", "status": "in_progress", "model": "up-model", "output": []}}));
        assert_eq!(created.kind(), EventKind::Started);
        let text = String::from_utf8(created.encode("executor", &[]).to_vec()).unwrap();
        assert!(text.contains("\"model\":\"executor\""), "{text}");
        assert!(!text.contains("up-model"), "{text}");
        let done = event(json!({"type": "response.completed", "sequence_number": 9,
            "response": {"id": "resp_1", "status": "completed", "model": "up-model", "output": [],
                "usage": {"input_tokens": 5, "output_tokens": 2, "total_tokens": 7}}}));
        assert_eq!(done.kind(), EventKind::Finished);
        assert_eq!(done.usage().output_tokens, 2);
        let text = String::from_utf8(
            done.encode("executor", &[("pointsman", "{\"a\":1}")])
                .to_vec(),
        )
        .unwrap();
        let data: Value =
            serde_json::from_str(text.lines().nth(1).unwrap().strip_prefix("data: ").unwrap())
                .unwrap();
        assert_eq!(data["pointsman"]["a"], 1);
        assert_eq!(data["response"]["model"], "executor");
    }

    #[test]
    fn error_and_failed_events_are_the_upstreams_errors() {
        for (value, expected) in [
            (
                json!({"type": "error", "code": "rate_limit", "message": "slow down", "sequence_number": 1}),
                "slow down",
            ),
            (
                json!({"type": "response.failed", "response": {"status": "failed",
                    "error": {"code": "server_error", "message": "boom"}}}),
                "boom",
            ),
        ] {
            match parse_event(None, &value.to_string()) {
                Err(ProviderError::Status {
                    status: 502,
                    message,
                    ..
                }) => assert_eq!(message, expected),
                other => panic!("{value}: {other:?}"),
            }
        }
        assert!(matches!(parse_event(None, " "), Ok(None)));
        assert!(matches!(
            parse_event(None, "{not json"),
            Err(ProviderError::Malformed(_))
        ));
        // The SSE event name stands in for a missing `type`, and is
        // written into the data, where clients read it.
        match parse_event(Some("response.output_text.done"), "{\"text\":\"hi\"}") {
            Ok(Some(Event::Responses(e))) => {
                assert_eq!(e.kind(), EventKind::Other);
                let text = String::from_utf8(e.encode("m", &[]).to_vec()).unwrap();
                assert!(
                    text.contains("\"type\":\"response.output_text.done\""),
                    "{text}"
                );
            }
            other => panic!("{other:?}"),
        }
        for malformed in [
            "[1]",
            "{\"text\":\"no type anywhere\"}",
            "{\"type\":\"response.completed\",\"response\":5}",
        ] {
            assert!(
                matches!(
                    parse_event(None, malformed),
                    Err(ProviderError::Malformed(_))
                ),
                "{malformed}"
            );
        }
        let deep = format!(
            "{{\"type\":\"x\",\"a\":{}1{}}}",
            "[".repeat(200),
            "]".repeat(200)
        );
        assert!(parse_event(None, &deep).is_err(), "nesting is bounded");
    }

    #[test]
    fn a_cut_stream_ends_failed_with_the_response_so_far() {
        let started = event(json!({"type": "response.created", "sequence_number": 0,
            "response": {"id": "resp_up", "status": "in_progress", "model": "m", "output": []}}));
        let bytes = failed_event(
            started.response().cloned(),
            7,
            "executor",
            "connection reset",
        );
        let text = std::str::from_utf8(&bytes).unwrap();
        let data: Value =
            serde_json::from_str(text.lines().nth(1).unwrap().strip_prefix("data: ").unwrap())
                .unwrap();
        assert_eq!(data["type"], "response.failed");
        assert_eq!(data["sequence_number"], 7);
        assert_eq!(data["response"]["id"], "resp_up");
        assert_eq!(data["response"]["status"], "failed");
        assert_eq!(data["response"]["error"]["message"], "connection reset");
    }
}

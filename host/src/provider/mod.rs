//! Upstream providers: one adapter per wire format, plus a built-in
//! simulated provider, and translation between the formats.
//!
//! The gateway hands a provider a [`Request`] already in the provider's
//! [`Format`] with the upstream model name set; a provider returns a
//! [`Reply`] in the same format. Translation to and from the client's format
//! happens in [`wire::translate`], called by the gateway.

pub mod http;
pub mod passthrough;
mod plain;
pub mod simulated;
pub mod wire;

use std::pin::Pin;
use std::time::Duration;

use futures::Stream;

use crate::config::{ProviderConfig, ProviderKind};
pub use wire::translate::{TranslateError, Usage};
use wire::{anthropic, openai, translate};

/// `max_tokens` sent to Anthropic when an OpenAI client set none (Anthropic
/// requires one).
pub const DEFAULT_MAX_TOKENS: u32 = 8192;

/// A wire format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Format {
    /// OpenAI chat completions.
    OpenAi,
    /// Anthropic messages.
    Anthropic,
}

/// A chat request in one of the two formats.
#[derive(Debug, Clone)]
pub enum Request {
    /// OpenAI chat completions.
    OpenAi(openai::ChatRequest),
    /// Anthropic messages.
    Anthropic(anthropic::MessagesRequest),
}

impl Request {
    /// The chat request a JSON body in `format` holds. Wrong types and
    /// missing fields are errors that name the field; so are requests this
    /// gateway cannot serve (no messages, several choices).
    pub fn from_json(format: Format, body: &serde_json::Value) -> Result<Request, String> {
        use serde::Deserialize;
        let invalid = |e: serde_json::Error| format!("invalid request: {e}");
        let request = match format {
            Format::OpenAi => {
                Request::OpenAi(openai::ChatRequest::deserialize(body).map_err(invalid)?)
            }
            Format::Anthropic => {
                Request::Anthropic(anthropic::MessagesRequest::deserialize(body).map_err(invalid)?)
            }
        };
        request.servable()
    }

    /// [`Request::from_json`] straight from the body's bytes, with no
    /// `Value` tree between: on a recorded Claude Code turn (50 KB) that
    /// took about 13% off the daemon's CPU (BENCHMARKS.md, "Agent-sized
    /// requests"). The errors say whether the body is not JSON, not an
    /// object, or not a valid request.
    pub fn from_slice(format: Format, body: &[u8]) -> Result<Request, String> {
        let invalid = |e: serde_json::Error| match e.classify() {
            serde_json::error::Category::Data => {
                match body.iter().find(|b| !b.is_ascii_whitespace()) {
                    Some(b'{') => format!("invalid request: {e}"),
                    _ => "the body must be a JSON object".to_string(),
                }
            }
            _ => format!("the body is not valid JSON: {e}"),
        };
        let request = match format {
            Format::OpenAi => Request::OpenAi(serde_json::from_slice(body).map_err(invalid)?),
            Format::Anthropic => Request::Anthropic(serde_json::from_slice(body).map_err(invalid)?),
        };
        request.servable()
    }

    /// The request, unless this gateway cannot serve it (no messages,
    /// several choices).
    fn servable(self) -> Result<Request, String> {
        if let Request::OpenAi(r) = &self
            && r.n.is_some_and(|n| n != 1)
        {
            return Err("only `n: 1` is supported".into());
        }
        let empty = match &self {
            Request::OpenAi(r) => r.messages.is_empty(),
            Request::Anthropic(r) => r.messages.is_empty(),
        };
        if empty {
            return Err("`messages` must not be empty".into());
        }
        Ok(self)
    }

    /// The request's format.
    pub fn format(&self) -> Format {
        match self {
            Request::OpenAi(_) => Format::OpenAi,
            Request::Anthropic(_) => Format::Anthropic,
        }
    }

    /// Whether the client asked for a stream.
    pub fn is_stream(&self) -> bool {
        match self {
            Request::OpenAi(r) => r.is_stream(),
            Request::Anthropic(r) => r.is_stream(),
        }
    }

    /// The request in `format`.
    pub fn into_format(self, format: Format) -> Result<Request, TranslateError> {
        Ok(match (self, format) {
            (r @ Request::OpenAi(_), Format::OpenAi)
            | (r @ Request::Anthropic(_), Format::Anthropic) => r,
            (Request::OpenAi(r), Format::Anthropic) => Request::Anthropic(
                translate::openai_request_to_anthropic(r, DEFAULT_MAX_TOKENS)?,
            ),
            (Request::Anthropic(r), Format::OpenAi) => {
                Request::OpenAi(translate::anthropic_request_to_openai(r)?)
            }
        })
    }

    /// The output cap the client set, if any.
    pub fn max_output_tokens(&self) -> Option<u32> {
        match self {
            Request::OpenAi(r) => r.max_completion_tokens.or(r.max_tokens),
            Request::Anthropic(r) => Some(r.max_tokens),
        }
    }

    /// Sets an output cap on a request that has none.
    pub fn set_max_output_tokens(&mut self, cap: u32) {
        match self {
            Request::OpenAi(r) => r.max_tokens = Some(cap),
            Request::Anthropic(r) => r.max_tokens = cap,
        }
    }

    /// Sets the model name sent upstream.
    pub fn set_model(&mut self, model: &str) {
        match self {
            Request::OpenAi(r) => r.model = model.to_string(),
            Request::Anthropic(r) => r.model = model.to_string(),
        }
    }

    /// Lowers the output-token limit to `cap` (a route's cap); a request
    /// that set none gets `cap` (OpenAI's `max_tokens`, which every
    /// compatible provider takes).
    pub fn cap_output_tokens(&mut self, cap: u32) {
        match self {
            Request::OpenAi(r) => {
                if r.max_tokens.is_none() && r.max_completion_tokens.is_none() {
                    r.max_tokens = Some(cap);
                }
                for limit in [&mut r.max_tokens, &mut r.max_completion_tokens]
                    .into_iter()
                    .flatten()
                {
                    *limit = (*limit).min(cap);
                }
            }
            Request::Anthropic(r) => r.max_tokens = r.max_tokens.min(cap),
        }
    }

    /// Removes an OpenAI request's `reasoning_effort` (for a model that
    /// takes none).
    pub fn clear_reasoning_effort(&mut self) {
        if let Request::OpenAi(r) = self {
            r.reasoning_effort = None;
        }
    }

    /// Makes a streamed OpenAI request ask for usage: the gateway bills from
    /// it whether or not the client wants to see it.
    pub fn request_usage(&mut self) {
        if let Request::OpenAi(r) = self
            && r.is_stream()
        {
            r.stream_options
                .get_or_insert_with(Default::default)
                .include_usage = Some(true);
        }
    }
}

/// A complete answer in one of the two formats.
#[derive(Debug, Clone)]
pub enum Response {
    /// OpenAI chat completion.
    OpenAi(openai::ChatCompletion),
    /// Anthropic message.
    Anthropic(anthropic::MessagesResponse),
    /// A Responses API response object, passed through as it came (only
    /// ever asked for a `/v1/responses` client: see [`passthrough`]).
    Responses(Box<passthrough::NativeResponse>),
}

impl Response {
    /// The tokens the answer used.
    pub fn usage(&self) -> Usage {
        match self {
            Response::OpenAi(r) => r.usage.as_ref().map(Usage::from).unwrap_or_default(),
            Response::Anthropic(r) => Usage::from(&r.usage),
            Response::Responses(r) => r.usage(),
        }
    }

    /// The answer in `format`. A passed-through Responses answer has no
    /// chat form: it goes back to its client as it came.
    pub fn into_format(self, format: Format) -> Result<Response, TranslateError> {
        Ok(match (self, format) {
            (r @ Response::OpenAi(_), Format::OpenAi)
            | (r @ Response::Anthropic(_), Format::Anthropic) => r,
            (Response::Responses(_), _) => {
                return Err(TranslateError::Unsupported {
                    what: "a passed-through Responses answer".into(),
                    target: match format {
                        Format::OpenAi => "chat completions",
                        Format::Anthropic => "Anthropic messages",
                    },
                });
            }
            (Response::OpenAi(r), Format::Anthropic) => {
                Response::Anthropic(translate::openai_response_to_anthropic(r)?)
            }
            (Response::Anthropic(r), Format::OpenAi) => {
                Response::OpenAi(translate::anthropic_response_to_openai(r, unix_now()))
            }
        })
    }

    /// Sets the model the client sees.
    pub fn set_model(&mut self, model: &str) {
        match self {
            Response::OpenAi(r) => r.model = model.to_string(),
            Response::Anthropic(r) => r.model = model.to_string(),
            Response::Responses(r) => r.set_model(model),
        }
    }

    /// Makes an answer read tolerantly from an upstream one that a client
    /// of its format can take: ids where a server left them out (the
    /// answer's, each tool call's). An OpenAI answer without a choice has
    /// nothing to give and is malformed.
    pub fn normalize(&mut self) -> Result<(), ProviderError> {
        match self {
            Response::OpenAi(r) => {
                if r.choices.is_empty() {
                    return Err(ProviderError::Malformed(
                        "at `choices`: the answer has no choice".into(),
                    ));
                }
                if r.id.is_empty() {
                    r.id = generated_id("chatcmpl");
                }
                if let Some(usage) = &mut r.usage {
                    translate::complete_openai_usage(usage);
                }
                for choice in &mut r.choices {
                    for (i, call) in choice.message.tool_calls.iter_mut().enumerate() {
                        if call.id.is_empty() {
                            call.id = format!("call_{}_{i}", r.id);
                        }
                    }
                }
            }
            Response::Anthropic(r) => {
                if r.id.is_empty() {
                    r.id = generated_id("msg");
                }
            }
            // Relayed as it came.
            Response::Responses(_) => {}
        }
        Ok(())
    }
}

/// A unique id for an answer whose upstream gave it none.
pub fn generated_id(prefix: &str) -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    format!(
        "{prefix}-pm{}x{}",
        unix_now(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

/// One streamed event in one of the two formats.
#[derive(Debug, Clone)]
pub enum Event {
    /// An OpenAI chunk.
    OpenAi(openai::ChatCompletionChunk),
    /// An Anthropic event.
    Anthropic(anthropic::StreamEvent),
    /// A Responses API event, passed through (see [`passthrough`]).
    Responses(passthrough::NativeEvent),
}

/// Any error from the HTTP stack, boxed.
pub(crate) type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A stream of events; an error ends it.
pub type EventStream = Pin<Box<dyn Stream<Item = Result<Event, ProviderError>> + Send>>;

/// A stream fed by an async producer through a small channel; the producer
/// stops when the consumer goes away.
pub fn async_stream<T, F, Fut>(producer: F) -> impl futures::Stream<Item = T> + Send
where
    T: Send + 'static,
    F: FnOnce(tokio::sync::mpsc::Sender<T>) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let (tx, mut rx) = tokio::sync::mpsc::channel(16);
    tokio::spawn(producer(tx));
    futures::stream::poll_fn(move |cx| rx.poll_recv(cx))
}

/// What a provider answers.
pub enum Reply {
    /// The whole answer (boxed: it is far larger than a stream handle).
    Complete(Box<Response>),
    /// The answer as it is generated.
    Stream(EventStream),
}

/// Why an upstream call failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ProviderError {
    /// No connection could be made, or it failed before the upstream
    /// answered (refused, reset): the upstream is unavailable.
    #[error("cannot connect to the provider: {0}")]
    Connect(String),
    /// The provider did not answer in time.
    #[error("the provider did not answer within {0:?}")]
    Timeout(Duration),
    /// The provider answered with an error status.
    #[error("the provider answered {status}: {message}")]
    Status {
        /// HTTP status.
        status: u16,
        /// The provider's error message.
        message: String,
        /// The provider's `Retry-After`.
        retry_after: Option<Duration>,
    },
    /// The provider answered 200, then its body or stream broke off (the
    /// connection dropped, or the body could not be decoded).
    #[error("the provider's answer broke off: {0}")]
    Broken(String),
    /// The answer could not be understood.
    #[error("the provider's answer is malformed: {0}")]
    Malformed(String),
    /// No call was made: every endpoint of the models named has its
    /// circuit breaker open after recent failures.
    #[error(
        "no call was made: every endpoint of {0} has its circuit breaker open after recent failures"
    )]
    CircuitOpen(String),
    /// No call was made: the request cannot be expressed in the routed
    /// provider's format (a feature the other API lacks).
    #[error("the request cannot be sent in the routed provider's format: {0}")]
    Untranslatable(String),
    /// No call was made: a budget would be passed.
    #[error("no call was made: {0}")]
    Budget(String),
}

/// Where the fault of a failed call lies, which decides what is tried next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Blame {
    /// The upstream failed this time (no connection, a timeout, 408, 409,
    /// 429, 5xx, a broken or malformed answer): the same endpoint may
    /// answer if asked again, after a backoff.
    Upstream,
    /// The upstream refused the gateway's credentials or model name (401,
    /// 403, 404) or redirected (3xx; redirects are not followed): the
    /// endpoint's configuration is wrong, so asking it again is pointless,
    /// but another endpoint or model may answer.
    Endpoint,
    /// The request itself is bad (400, 422 and the other 4xx): no endpoint
    /// would take it.
    Request,
}

impl ProviderError {
    /// The kind of failure, for metrics: `timeout`, `connect`, `broken`,
    /// `malformed`, or `status_429`, `status_4xx`, `status_5xx`.
    pub fn class(&self) -> &'static str {
        match self {
            ProviderError::Connect(_) => "connect",
            ProviderError::CircuitOpen(_) => "circuit_open",
            ProviderError::Timeout(_) => "timeout",
            ProviderError::Broken(_) => "broken",
            ProviderError::Malformed(_) => "malformed",
            ProviderError::Untranslatable(_) => "untranslatable",
            ProviderError::Budget(_) => "budget",
            ProviderError::Status { status: 429, .. } => "status_429",
            ProviderError::Status { status, .. } if *status >= 500 => "status_5xx",
            ProviderError::Status { .. } => "status_4xx",
        }
    }

    /// The error with every occurrence of `key` in its text replaced, for
    /// text an upstream wrote (error bodies and error events may quote the
    /// credentials they were sent).
    pub fn redacted(self, key: Option<&str>) -> Self {
        let Some(key) = key.filter(|k| k.len() >= 8) else {
            return self;
        };
        let clean = |text: String| text.replace(key, "[redacted]");
        match self {
            ProviderError::Connect(t) => ProviderError::Connect(clean(t)),
            ProviderError::Broken(t) => ProviderError::Broken(clean(t)),
            ProviderError::Malformed(t) => ProviderError::Malformed(clean(t)),
            ProviderError::Status {
                status,
                message,
                retry_after,
            } => ProviderError::Status {
                status,
                message: clean(message),
                retry_after,
            },
            unchanged @ (ProviderError::Timeout(_)
            | ProviderError::CircuitOpen(_)
            | ProviderError::Untranslatable(_)
            | ProviderError::Budget(_)) => unchanged,
        }
    }

    /// Whose fault the failure is. The client's credentials are
    /// Pointsman's, never the provider's, so a provider's 401, 403 or 404
    /// is about the gateway's configuration of that endpoint, not about the
    /// request.
    pub fn blame(&self) -> Blame {
        match self {
            ProviderError::Connect(_)
            | ProviderError::Timeout(_)
            | ProviderError::Broken(_)
            | ProviderError::Malformed(_)
            | ProviderError::CircuitOpen(_) => Blame::Upstream,
            // The same request goes to every endpoint of the format.
            ProviderError::Untranslatable(_) | ProviderError::Budget(_) => Blame::Request,
            ProviderError::Status { status, .. } => match status {
                408 | 409 | 429 => Blame::Upstream,
                300..=399 | 401 | 403 | 404 => Blame::Endpoint,
                s if *s >= 500 => Blame::Upstream,
                _ => Blame::Request,
            },
        }
    }

    /// Whether asking the same endpoint again may succeed
    /// ([`Blame::Upstream`]).
    pub fn is_retryable(&self) -> bool {
        self.blame() == Blame::Upstream
    }
}

/// A configured provider.
pub enum Provider {
    /// An HTTP API.
    Http(Box<http::HttpProvider>),
    /// The built-in simulation.
    Simulated(simulated::Simulated),
}

impl Provider {
    /// Builds provider `name` from its config; the API key is read from the
    /// named environment variable now, so a missing key fails at start.
    pub fn from_config(name: &str, config: &ProviderConfig) -> anyhow::Result<Provider> {
        Ok(match config.kind {
            ProviderKind::Simulated => Provider::Simulated(simulated::Simulated::new(config)),
            ProviderKind::Openai | ProviderKind::Anthropic => {
                Provider::Http(Box::new(http::HttpProvider::new(name, config)?))
            }
        })
    }

    /// The format the provider speaks.
    pub fn format(&self) -> Format {
        match self {
            Provider::Http(p) => p.format(),
            Provider::Simulated(_) => Format::OpenAi,
        }
    }

    /// Asks the provider to count the input tokens of `request` (model
    /// set to the upstream's name), when it can: Anthropic upstreams have
    /// `count_tokens`; `None` for the others.
    pub async fn count_tokens(
        &self,
        request: &anthropic::CountTokensRequest,
        betas: Option<&str>,
    ) -> Option<Result<u64, ProviderError>> {
        match self {
            Provider::Http(p) => p.count_tokens(request, betas).await,
            Provider::Simulated(_) => None,
        }
    }

    /// Sends `request` (in [`Provider::format`], upstream model set).
    pub async fn send(&self, request: Request) -> Result<Reply, ProviderError> {
        match self {
            Provider::Http(p) => p.send(request).await,
            Provider::Simulated(p) => p.send(request).await,
        }
    }

    /// Whether the provider also speaks the Responses API (`responses =
    /// true` in its config), so that a `/v1/responses` request is passed
    /// through rather than translated.
    pub fn speaks_responses(&self) -> bool {
        match self {
            Provider::Http(p) => p.speaks_responses(),
            Provider::Simulated(_) => false,
        }
    }

    /// Sends a Responses request as its client sent it, for
    /// `upstream_model`; only for a provider that
    /// [speaks it](Provider::speaks_responses).
    pub async fn send_responses(
        &self,
        request: &passthrough::NativeRequest,
        upstream_model: &str,
    ) -> Result<Reply, ProviderError> {
        match self {
            Provider::Http(p) => p.send_responses(request, upstream_model).await,
            Provider::Simulated(_) => Err(ProviderError::Untranslatable(
                "the simulated provider does not speak the Responses API".into(),
            )),
        }
    }
}

/// Seconds since the Unix epoch.
pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_route_cap_lowers_the_output_limit_and_never_raises_it() {
        let openai = |body: serde_json::Value| {
            Request::OpenAi(serde_json::from_value(body).expect("an OpenAI body"))
        };
        let limits = |r: &Request| match r {
            Request::OpenAi(r) => (r.max_tokens, r.max_completion_tokens),
            Request::Anthropic(r) => (Some(r.max_tokens), None),
        };
        let mut none = openai(serde_json::json!({"model": "m", "messages": []}));
        none.cap_output_tokens(500);
        assert_eq!(limits(&none), (Some(500), None));
        let mut both = openai(serde_json::json!({"model": "m", "messages": [],
            "max_tokens": 100, "max_completion_tokens": 9000}));
        both.cap_output_tokens(500);
        assert_eq!(limits(&both), (Some(100), Some(500)));
        let mut anthropic = Request::Anthropic(
            serde_json::from_value(serde_json::json!({"model": "m", "max_tokens": 4096,
                "messages": [{"role": "user", "content": "hi"}]}))
            .expect("an Anthropic body"),
        );
        anthropic.cap_output_tokens(1000);
        assert_eq!(limits(&anthropic), (Some(1000), None));
    }

    fn status(status: u16) -> ProviderError {
        ProviderError::Status {
            status,
            message: String::new(),
            retry_after: None,
        }
    }

    #[test]
    fn blame_decides_what_is_tried_next() {
        for upstream in [408, 409, 429, 500, 502, 503, 504, 529] {
            assert_eq!(status(upstream).blame(), Blame::Upstream, "{upstream}");
        }
        for endpoint in [301, 308, 401, 403, 404] {
            assert_eq!(status(endpoint).blame(), Blame::Endpoint, "{endpoint}");
            assert!(!status(endpoint).is_retryable());
        }
        for request in [400, 413, 422] {
            assert_eq!(status(request).blame(), Blame::Request, "{request}");
        }
        for error in [
            ProviderError::Connect(String::new()),
            ProviderError::Timeout(Duration::from_secs(1)),
            ProviderError::Broken(String::new()),
            ProviderError::Malformed(String::new()),
        ] {
            assert!(error.is_retryable(), "{error}");
        }
    }

    /// The gateway parses bytes, the offline tools a JSON value: both
    /// accept and refuse the same requests, for the same reasons, but for
    /// a key given twice, which only bytes still show. The gateway refuses
    /// it: an upstream reading the first `model` while Pointsman routed and
    /// priced the last would be served something else than recorded.
    #[test]
    fn a_request_parses_the_same_from_bytes_and_from_a_value() {
        let bodies = [
            (
                Format::OpenAi,
                r#"{"model": "auto", "messages": [{"role": "user", "content": "hi"}]}"#,
            ),
            (
                Format::OpenAi,
                r#"{"model": "auto", "messages": [], "n": 1}"#,
            ),
            (
                Format::OpenAi,
                r#"{"model": "auto", "n": 2, "messages": [{"role": "user", "content": "hi"}]}"#,
            ),
            (
                Format::OpenAi,
                r#"{"model": 5, "messages": [{"role": "user", "content": "hi"}]}"#,
            ),
            (
                Format::Anthropic,
                r#"{"model": "auto", "max_tokens": 9, "messages": [{"role": "user", "content": "hi"}]}"#,
            ),
            (
                Format::Anthropic,
                r#"{"model": "auto", "messages": [{"role": "user", "content": "hi"}]}"#,
            ),
            (
                Format::Anthropic,
                r#"{"model": "auto", "max_tokens": 9, "messages": [{"role": "user", "content": [{"type": "text"}]}]}"#,
            ),
        ];
        for (format, body) in bodies {
            let value: serde_json::Value = serde_json::from_str(body).unwrap();
            let from_bytes = Request::from_slice(format, body.as_bytes());
            let from_value = Request::from_json(format, &value);
            assert_eq!(
                from_bytes.is_ok(),
                from_value.is_ok(),
                "{body}: {from_bytes:?} / {from_value:?}"
            );
            if let (Ok(a), Ok(b)) = (from_bytes, from_value) {
                let json = |r: Request| match r {
                    Request::OpenAi(r) => serde_json::to_value(r).unwrap(),
                    Request::Anthropic(r) => serde_json::to_value(r).unwrap(),
                };
                assert_eq!(json(a), json(b), "{body}");
            }
        }
        let twice =
            br#"{"model": "a", "model": "b", "messages": [{"role": "user", "content": "hi"}]}"#;
        assert!(
            Request::from_slice(Format::OpenAi, twice)
                .unwrap_err()
                .contains("duplicate field `model`")
        );
        assert_eq!(
            Request::from_slice(Format::OpenAi, b"[1]").unwrap_err(),
            "the body must be a JSON object"
        );
        assert!(
            Request::from_slice(Format::OpenAi, b"{\"model\":")
                .unwrap_err()
                .starts_with("the body is not valid JSON")
        );
    }
}

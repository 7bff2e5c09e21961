//! A scriptable local LLM provider for the gateway's end-to-end tests.
//!
//! [`Upstream`] serves the real wire formats of both provider APIs on
//! `127.0.0.1:<ephemeral port>`:
//!
//! * OpenAI chat completions on `POST /v1/chat/completions` (and on any path
//!   ending in `/chat/completions`, for base URLs without `/v1`), answered as
//!   a `chat.completion` or, with `stream: true`, as SSE `data:` chunks ending
//!   in `data: [DONE]` (plus a usage chunk when
//!   `stream_options.include_usage` is true). Requires
//!   `Authorization: Bearer <key>`.
//! * the OpenAI Responses API on any path ending in `/responses`, answered as
//!   a `response` object or its event stream (see `upstream/responses.rs`);
//!   a request is read through its chat view ([`chat_view`]), so the default
//!   answer and usage below apply to it too. Requires `Authorization: Bearer`.
//! * Anthropic messages on `POST /v1/messages` (or `/messages`), answered as a
//!   `message` or, with `stream: true`, as the full SSE event sequence
//!   (`message_start`, `content_block_start`, `ping`, `content_block_delta`,
//!   `content_block_stop`, `message_delta`, `message_stop`). Requires
//!   `anthropic-version` and the key, as `x-api-key` or (like the real API,
//!   and as the official Python SDK 2.x sends it) `Authorization: Bearer`;
//!   [`UpstreamConfig::x_api_key_only`] refuses the bearer form. Like the
//!   real API today, it takes `system` messages inside `messages` (text
//!   only), which Claude Code sends. `POST /v1/messages/count_tokens`
//!   answers `{"input_tokens": <the input of the default usage below>}`.
//!
//! # Default behaviour
//!
//! Every accepted request is answered deterministically ([`default_answer`]):
//!
//! * when the last message is a tool result (OpenAI `role: "tool"`, Anthropic
//!   `tool_result` blocks): the text `tool said: <result text>` (several
//!   trailing results are joined with `"; "`);
//! * otherwise, when the request offers tools (and `tool_choice` is not
//!   `none`): a call to the first tool (or the one `tool_choice` names) with
//!   the arguments `{"query": "<last user text>"}`;
//! * otherwise the text `[<model>] echo: <last user text>`, cut to
//!   `max_tokens` words (finish reason `length` / `max_tokens`) if longer.
//!
//! Usage ([`default_usage`]): `input` = the number of whitespace-separated
//! words in every text of the request (system prompt, message texts, tool
//! results; not tool-call arguments) + 10; `output` = the words of the answer
//! text plus those of each tool call's serialized arguments (at least 1);
//! `cached` = [`UpstreamConfig::cached_tokens`] (at most `input`). On the
//! wire, OpenAI reports `prompt_tokens = input` with
//! `prompt_tokens_details.cached_tokens = cached`; Anthropic, like the real
//! API, reports `input_tokens = input - cached` and
//! `cache_read_input_tokens = cached`.
//!
//! # Scripting
//!
//! Requests that pass authentication and validation take their answer from,
//! in order: the FIFO queue ([`Upstream::push`]), the matchers
//! ([`Upstream::on`], first `Some` wins), then the default. A [`Reply`] can be
//! a custom text, tool calls, an error status (with a body in the API's error
//! format, or an exact body), a raw body, or a reset connection, and can add a
//! delay before the answer, a delay between stream chunks, a cut-off or a
//! stalled connection, headers and exact usage numbers.
//!
//! ```no_run
//! # async fn demo() {
//! use std::time::Duration;
//! use pointsman_test_support::upstream::{Reply, Upstream, UpstreamConfig};
//!
//! let up = Upstream::start(UpstreamConfig::default()).await;
//! up.push(Reply::error(429, "slow down").header("retry-after", "1"));
//! up.push(Reply::text(r#"{"steps": ["read", "edit"]}"#).delay(Duration::from_millis(50)));
//! up.on(|req| (req.model() == Some("planner")).then(|| Reply::text("the plan")));
//! // ... point the gateway at up.url() (Anthropic) or up.openai_url() (OpenAI) ...
//! assert_eq!(up.count(), 0);
//! # }
//! ```
//!
//! Every request received (whatever its path or outcome) is logged as a
//! [`RecordedRequest`]: [`Upstream::requests`], [`Upstream::count`].
//!
//! The server runs on its own thread and Tokio runtime, so a test may block
//! its own thread (for instance on a Python SDK script) without stalling it.
//! It stops when the last clone of its [`Upstream`] handle is dropped.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::connect_info::Connected;
use axum::extract::{ConnectInfo, DefaultBodyLimit, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::Response;
use axum::serve::{IncomingStream, Listener};
use futures::StreamExt;
use serde_json::{Map, Value, json};

/// The OpenAI key [`UpstreamConfig::default`] expects.
pub const OPENAI_KEY: &str = "sk-upstream-openai-test";
/// The Anthropic key [`UpstreamConfig::default`] expects.
pub const ANTHROPIC_KEY: &str = "sk-ant-upstream-test";

/// Which provider API a request spoke.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Api {
    /// `POST …/chat/completions`.
    OpenAi,
    /// `POST /v1/messages`.
    Anthropic,
    /// `POST …/responses`: the OpenAI Responses API.
    Responses,
}

/// How an [`Upstream`] behaves when no script says otherwise.
#[derive(Clone, Debug)]
pub struct UpstreamConfig {
    /// The bearer key the OpenAI endpoint accepts; `None` accepts any
    /// non-empty key (a missing one is still a 401).
    pub openai_key: Option<String>,
    /// The `x-api-key` the Anthropic endpoint accepts; `None` accepts any
    /// non-empty key (a missing one is still a 401).
    pub anthropic_key: Option<String>,
    /// Whether the Anthropic endpoint also takes its key as
    /// `Authorization: Bearer <key>` (when there is no `x-api-key`), as the
    /// real API does: the official Python SDK (2.x) sends its API key that
    /// way. On by default.
    pub anthropic_bearer: bool,
    /// The cached prompt tokens reported by every answer (capped at the
    /// input tokens).
    pub cached_tokens: u64,
    /// The pause between two SSE events of a streamed answer.
    pub chunk_delay: Duration,
    /// Rejects malformed requests with a 400, as the real APIs do (missing
    /// `model`/`messages`/`max_tokens`, wrong roles, orphan tool results,
    /// unanswered tool calls, empty Anthropic text blocks, tools without a
    /// schema, `stream_options` without `stream`...). On by default.
    pub strict: bool,
}

impl Default for UpstreamConfig {
    fn default() -> Self {
        UpstreamConfig {
            openai_key: Some(OPENAI_KEY.to_string()),
            anthropic_key: Some(ANTHROPIC_KEY.to_string()),
            anthropic_bearer: true,
            cached_tokens: 0,
            chunk_delay: Duration::ZERO,
            strict: true,
        }
    }
}

impl UpstreamConfig {
    /// Expects this bearer key on the OpenAI endpoint.
    pub fn openai_key(mut self, key: impl Into<String>) -> Self {
        self.openai_key = Some(key.into());
        self
    }

    /// Expects this `x-api-key` on the Anthropic endpoint.
    pub fn anthropic_key(mut self, key: impl Into<String>) -> Self {
        self.anthropic_key = Some(key.into());
        self
    }

    /// Accepts any non-empty key on both endpoints.
    pub fn any_key(mut self) -> Self {
        self.openai_key = None;
        self.anthropic_key = None;
        self
    }

    /// Requires `x-api-key` on the Anthropic endpoint (a bearer token is
    /// refused), to check that a gateway speaks the header form.
    pub fn x_api_key_only(mut self) -> Self {
        self.anthropic_bearer = false;
        self
    }

    /// Reports this many cached prompt tokens.
    pub fn cached_tokens(mut self, tokens: u64) -> Self {
        self.cached_tokens = tokens;
        self
    }

    /// Pauses this long between two SSE events.
    pub fn chunk_delay(mut self, delay: Duration) -> Self {
        self.chunk_delay = delay;
        self
    }

    /// Turns request validation off (authentication is still checked).
    pub fn lenient(mut self) -> Self {
        self.strict = false;
        self
    }
}

/// Token counts of one answer. `input` counts every prompt token, cached ones
/// included (see the module docs for how each API reports them).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Usage {
    pub input: u64,
    pub output: u64,
    pub cached: u64,
}

/// A tool call in an answer.
#[derive(Clone, Debug, PartialEq)]
pub struct ToolCall {
    pub name: String,
    /// The arguments object (serialized to a string for OpenAI).
    pub arguments: Value,
}

/// What the model "says": optional text, then tool calls.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Answer {
    pub text: Option<String>,
    pub tool_calls: Vec<ToolCall>,
    /// `true` when the text was cut at `max_tokens`.
    pub truncated: bool,
}

impl Answer {
    /// The OpenAI `finish_reason`.
    pub fn openai_finish_reason(&self) -> &'static str {
        if !self.tool_calls.is_empty() {
            "tool_calls"
        } else if self.truncated {
            "length"
        } else {
            "stop"
        }
    }

    /// The Anthropic `stop_reason`.
    pub fn anthropic_stop_reason(&self) -> &'static str {
        if !self.tool_calls.is_empty() {
            "tool_use"
        } else if self.truncated {
            "max_tokens"
        } else {
            "end_turn"
        }
    }
}

#[derive(Clone, Debug)]
enum ReplyKind {
    Default,
    Answer(Answer),
    Error {
        status: u16,
        message: String,
    },
    ErrorBody {
        status: u16,
        body: Value,
    },
    Raw {
        status: u16,
        content_type: String,
        body: String,
    },
    Reset,
}

/// How a partly sent answer ends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Ending {
    /// Everything was sent.
    Complete,
    /// The connection is dropped.
    Cut,
    /// Nothing more is sent, and the connection stays open.
    Stall,
}

/// A scripted answer to one request (see the module docs).
#[derive(Clone, Debug)]
pub struct Reply {
    kind: ReplyKind,
    delay: Duration,
    chunk_delay: Option<Duration>,
    /// Send only the first `n` SSE events (or bytes), then end so.
    partial: Option<(usize, Ending)>,
    usage: Option<Usage>,
    headers: Vec<(String, String)>,
}

impl Default for Reply {
    /// The default behaviour (useful with [`Reply::delay`] and the like).
    fn default() -> Self {
        Reply {
            kind: ReplyKind::Default,
            delay: Duration::ZERO,
            chunk_delay: None,
            partial: None,
            usage: None,
            headers: Vec::new(),
        }
    }
}

impl Reply {
    fn of(kind: ReplyKind) -> Self {
        Reply {
            kind,
            ..Reply::default()
        }
    }

    /// The default answer (echo, tool call or tool-result text).
    pub fn echo() -> Self {
        Reply::default()
    }

    /// Answers with this text (finish reason `stop` / `end_turn`), streamed
    /// in word-sized chunks when the request streams.
    pub fn text(text: impl Into<String>) -> Self {
        Reply::of(ReplyKind::Answer(Answer {
            text: Some(text.into()),
            ..Answer::default()
        }))
    }

    /// Answers with one call to tool `name` with these arguments.
    pub fn tool_call(name: impl Into<String>, arguments: Value) -> Self {
        Reply::of(ReplyKind::Answer(Answer {
            text: None,
            tool_calls: vec![ToolCall {
                name: name.into(),
                arguments,
            }],
            truncated: false,
        }))
    }

    /// Answers with any mix of text and tool calls.
    pub fn answer(answer: Answer) -> Self {
        Reply::of(ReplyKind::Answer(answer))
    }

    /// Answers with this status and a body in the API's error format (OpenAI
    /// `{"error": {...}}`, Anthropic `{"type": "error", "error": {...}}`, with
    /// the error type that status has in that API), even to a streaming
    /// request.
    pub fn error(status: u16, message: impl Into<String>) -> Self {
        Reply::of(ReplyKind::Error {
            status,
            message: message.into(),
        })
    }

    /// Answers with this status and exactly this JSON body.
    pub fn error_body(status: u16, body: Value) -> Self {
        Reply::of(ReplyKind::ErrorBody { status, body })
    }

    /// Answers with this status, content type and body, verbatim (for
    /// instance a hand-made SSE stream).
    pub fn raw(status: u16, content_type: impl Into<String>, body: impl Into<String>) -> Self {
        Reply::of(ReplyKind::Raw {
            status,
            content_type: content_type.into(),
            body: body.into(),
        })
    }

    /// Resets the connection (a TCP RST, with no HTTP answer at all) instead
    /// of answering, after the [`Reply::delay`] if any. The request's
    /// [`RecordedRequest::status`] stays `None`.
    pub fn reset() -> Self {
        Reply::of(ReplyKind::Reset)
    }

    /// Waits this long before answering (headers included).
    pub fn delay(mut self, delay: Duration) -> Self {
        self.delay = delay;
        self
    }

    /// Pauses this long between two SSE events (overrides the config).
    pub fn chunk_delay(mut self, delay: Duration) -> Self {
        self.chunk_delay = Some(delay);
        self
    }

    /// Sends only the first `n` SSE events (or, for a non-streamed answer,
    /// the first `n` bytes of the body), then drops the connection.
    pub fn truncate_after(mut self, n: usize) -> Self {
        self.partial = Some((n, Ending::Cut));
        self
    }

    /// Sends only the first `n` SSE events (or, for a non-streamed answer,
    /// the first `n` bytes of the body), then nothing more while keeping the
    /// connection open, until the client gives up: a stalled stream.
    /// `stall_after(0)` sends the status and headers only.
    pub fn stall_after(mut self, n: usize) -> Self {
        self.partial = Some((n, Ending::Stall));
        self
    }

    /// Reports exactly these token counts.
    pub fn usage(mut self, usage: Usage) -> Self {
        self.usage = Some(usage);
        self
    }

    /// Adds a response header.
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }
}

/// One request as the upstream received it.
#[derive(Clone, Debug)]
pub struct RecordedRequest {
    /// 1 for the first request the upstream received.
    pub seq: u64,
    pub method: String,
    pub path: String,
    pub query: Option<String>,
    /// Header names in lower case, in the order received.
    pub headers: Vec<(String, String)>,
    /// The JSON body, or `Null` when the body is not JSON.
    pub body: Value,
    pub raw_body: String,
    /// The API the path belongs to (`None` for an unknown path).
    pub api: Option<Api>,
    pub received_at: Instant,
    /// The status answered; `None` while a delayed answer is pending, and
    /// for a [`Reply::reset`].
    pub status: Option<u16>,
    /// The usage reported by a successful answer.
    pub usage: Option<Usage>,
    /// For the Responses API: the body as a chat-completions one
    /// ([`chat_view`]), which the readers below use.
    pub chat: Option<Value>,
}

impl RecordedRequest {
    /// The first value of a header (case-insensitive name).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The key of `Authorization: Bearer <key>`.
    pub fn bearer(&self) -> Option<&str> {
        self.header("authorization")
            .and_then(|v| v.strip_prefix("Bearer "))
    }

    /// The key the request authenticated with: the bearer token for OpenAI;
    /// `x-api-key`, or else the bearer token, for Anthropic.
    pub fn api_key(&self) -> Option<&str> {
        match self.api {
            Some(Api::Anthropic) => self.header("x-api-key").or_else(|| self.bearer()),
            _ => self.bearer(),
        }
    }

    /// The requested model.
    pub fn model(&self) -> Option<&str> {
        self.body.get("model").and_then(Value::as_str)
    }

    /// Whether the request asked for a stream.
    pub fn is_stream(&self) -> bool {
        self.body.get("stream").and_then(Value::as_bool) == Some(true)
    }

    /// The body as chat completions or Anthropic messages: a Responses
    /// body's [`chat_view`], any other as it came.
    pub fn chat_body(&self) -> &Value {
        self.chat.as_ref().unwrap_or(&self.body)
    }

    /// The text of the last user message (tool results aside).
    pub fn last_user_text(&self) -> Option<String> {
        last_user_text(self.chat_body())
    }

    /// The names of the tools offered.
    pub fn tool_names(&self) -> Vec<String> {
        tool_names(self.chat_body())
    }

    /// The messages (of the chat view, for the Responses API), or an
    /// empty slice.
    pub fn messages(&self) -> &[Value] {
        self.chat_body()
            .get("messages")
            .and_then(Value::as_array)
            .map(Vec::as_slice)
            .unwrap_or(&[])
    }
}

type Matcher = Box<dyn FnMut(&RecordedRequest) -> Option<Reply> + Send>;

pub(crate) struct Shared {
    config: Mutex<UpstreamConfig>,
    queue: Mutex<VecDeque<Reply>>,
    matchers: Mutex<Vec<Matcher>>,
    log: Mutex<Vec<RecordedRequest>>,
    seq: AtomicU64,
    /// Connections accepted.
    connections: Arc<AtomicU64>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Stops the server when the last handle goes.
struct Guard {
    stop: Mutex<Option<tokio::sync::oneshot::Sender<()>>>,
}

impl Drop for Guard {
    fn drop(&mut self) {
        if let Some(stop) = lock(&self.stop).take() {
            let _ = stop.send(());
        }
    }
}

/// A running upstream; clones share the server, which stops with the last.
#[derive(Clone)]
pub struct Upstream {
    addr: SocketAddr,
    shared: Arc<Shared>,
    _guard: Arc<Guard>,
}

impl std::fmt::Debug for Upstream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Upstream")
            .field("addr", &self.addr)
            .finish()
    }
}

impl Upstream {
    /// Starts an upstream on `127.0.0.1:0` (see [`Upstream::start_blocking`];
    /// this is the same, for async tests).
    pub async fn start(config: UpstreamConfig) -> Upstream {
        Upstream::start_blocking(config)
    }

    /// Starts an upstream on `127.0.0.1:0`, served by a thread of its own.
    pub fn start_blocking(config: UpstreamConfig) -> Upstream {
        let listener =
            std::net::TcpListener::bind("127.0.0.1:0").expect("binding the upstream's port");
        listener
            .set_nonblocking(true)
            .expect("a non-blocking listener");
        let addr = listener.local_addr().expect("the upstream's address");
        let shared = Arc::new(Shared {
            config: Mutex::new(config),
            queue: Mutex::new(VecDeque::new()),
            matchers: Mutex::new(Vec::new()),
            log: Mutex::new(Vec::new()),
            seq: AtomicU64::new(0),
            connections: Arc::new(AtomicU64::new(0)),
        });
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let state = shared.clone();
        let connections = shared.connections.clone();
        std::thread::Builder::new()
            .name(format!("upstream-{}", addr.port()))
            .spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("the upstream's runtime");
                runtime.block_on(async move {
                    let listener = Resettable {
                        tcp: tokio::net::TcpListener::from_std(listener).expect("a Tokio listener"),
                        accepted: connections,
                    };
                    let app = Router::new()
                        .fallback(handle)
                        .layer(DefaultBodyLimit::disable())
                        .with_state(state)
                        .into_make_service_with_connect_info::<ResetSwitch>();
                    tokio::select! {
                        result = axum::serve(listener, app) => {
                            if let Err(e) = result {
                                eprintln!("upstream {addr}: {e}");
                            }
                        }
                        _ = stopped => {}
                    }
                });
                // Dropping the runtime cancels every open connection.
            })
            .expect("spawning the upstream's thread");
        Upstream {
            addr,
            shared,
            _guard: Arc::new(Guard {
                stop: Mutex::new(Some(stop)),
            }),
        }
    }

    /// `http://127.0.0.1:<port>`: the base URL of an Anthropic provider, and
    /// of an OpenAI one that appends `/chat/completions` itself.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// `http://127.0.0.1:<port>/v1`: the usual OpenAI base URL.
    pub fn openai_url(&self) -> String {
        format!("http://{}/v1", self.addr)
    }

    /// The socket address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Queues a reply for the next accepted request (first in, first out;
    /// the queue is read before the matchers).
    pub fn push(&self, reply: Reply) -> &Self {
        lock(&self.shared.queue).push_back(reply);
        self
    }

    /// The replies still queued.
    pub fn queued(&self) -> usize {
        lock(&self.shared.queue).len()
    }

    /// Adds a matcher, asked for each accepted request the queue did not
    /// answer; the first `Some` is the reply. It runs under a lock: it must
    /// not call back into this handle.
    pub fn on(
        &self,
        matcher: impl FnMut(&RecordedRequest) -> Option<Reply> + Send + 'static,
    ) -> &Self {
        lock(&self.shared.matchers).push(Box::new(matcher));
        self
    }

    /// Forgets the queue and the matchers.
    pub fn clear_scripts(&self) {
        lock(&self.shared.queue).clear();
        lock(&self.shared.matchers).clear();
    }

    /// Changes the configuration for the requests to come.
    pub fn configure(&self, change: impl FnOnce(&mut UpstreamConfig)) {
        change(&mut lock(&self.shared.config));
    }

    /// Every request received so far, oldest first.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        lock(&self.shared.log).clone()
    }

    /// The requests received for one API.
    pub fn requests_to(&self, api: Api) -> Vec<RecordedRequest> {
        lock(&self.shared.log)
            .iter()
            .filter(|r| r.api == Some(api))
            .cloned()
            .collect()
    }

    /// The latest request.
    pub fn last_request(&self) -> Option<RecordedRequest> {
        lock(&self.shared.log).last().cloned()
    }

    /// How many requests were received (whatever their outcome).
    pub fn count(&self) -> usize {
        lock(&self.shared.log).len()
    }

    /// How many requests were received since the start, cleared log or not.
    pub fn total(&self) -> u64 {
        self.shared.seq.load(Ordering::SeqCst)
    }

    /// How many connections were accepted since the start.
    pub fn connections(&self) -> u64 {
        self.shared.connections.load(Ordering::SeqCst)
    }

    /// Empties the request log (sequence numbers keep counting).
    pub fn clear_requests(&self) {
        lock(&self.shared.log).clear();
    }

    /// Waits until at least `n` requests were received and returns the log;
    /// panics after `timeout`.
    pub async fn wait_for_requests(&self, n: usize, timeout: Duration) -> Vec<RecordedRequest> {
        let deadline = Instant::now() + timeout;
        loop {
            let log = self.requests();
            if log.len() >= n {
                return log;
            }
            if Instant::now() >= deadline {
                panic!(
                    "upstream {}: {} request(s) after {timeout:?}, expected {n}",
                    self.addr,
                    log.len()
                );
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

// The server's insides, one module per concern; what they make public (the
// error body of `handling`, the answer and usage helpers of `reading`) is
// re-exported here.
mod connections;
mod handling;
mod reading;
mod responses;
mod validation;
mod wire;

use connections::*;
pub use handling::*;
pub use reading::*;
pub use responses::chat_view;
use responses::*;
use validation::*;
use wire::*;

#[cfg(test)]
mod tests;

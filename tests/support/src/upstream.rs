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
enum Ending {
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

    /// The text of the last user message (tool results aside).
    pub fn last_user_text(&self) -> Option<String> {
        last_user_text(&self.body)
    }

    /// The names of the tools offered.
    pub fn tool_names(&self) -> Vec<String> {
        tool_names(&self.body)
    }

    /// The messages, or an empty slice.
    pub fn messages(&self) -> &[Value] {
        self.body
            .get("messages")
            .and_then(Value::as_array)
            .map(Vec::as_slice)
            .unwrap_or(&[])
    }
}

type Matcher = Box<dyn FnMut(&RecordedRequest) -> Option<Reply> + Send>;

struct Shared {
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

// ---------------------------------------------------------------------------
// Connections a reply can reset

/// The upstream's listener: plain TCP, but each connection comes with a
/// [`ResetSwitch`] its requests can reach; it counts what it accepts.
struct Resettable {
    tcp: tokio::net::TcpListener,
    accepted: Arc<AtomicU64>,
}

/// A connection that fails every read and write once its switch is thrown,
/// and then closes with a TCP reset (`SO_LINGER` 0) rather than a FIN.
struct ResettableStream {
    tcp: tokio::net::TcpStream,
    reset: Arc<AtomicBool>,
}

/// Throws a connection's reset switch (a request's [`ConnectInfo`]).
#[derive(Clone)]
struct ResetSwitch(Arc<AtomicBool>);

impl ResetSwitch {
    fn reset(&self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

impl Listener for Resettable {
    type Io = ResettableStream;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        let (tcp, addr) = Listener::accept(&mut self.tcp).await;
        self.accepted.fetch_add(1, Ordering::SeqCst);
        let reset = Arc::new(AtomicBool::new(false));
        (ResettableStream { tcp, reset }, addr)
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        self.tcp.local_addr()
    }
}

impl Connected<IncomingStream<'_, Resettable>> for ResetSwitch {
    fn connect_info(stream: IncomingStream<'_, Resettable>) -> Self {
        ResetSwitch(stream.io().reset.clone())
    }
}

impl ResettableStream {
    /// `Some(error)` once the switch is thrown; the socket then closes with
    /// a reset when hyper drops it.
    fn check(&self) -> Option<std::io::Error> {
        if !self.reset.load(Ordering::SeqCst) {
            return None;
        }
        let _ = self.tcp.set_zero_linger();
        Some(std::io::ErrorKind::ConnectionReset.into())
    }
}

impl tokio::io::AsyncRead for ResettableStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        match this.check() {
            Some(e) => Poll::Ready(Err(e)),
            None => Pin::new(&mut this.tcp).poll_read(cx, buf),
        }
    }
}

impl tokio::io::AsyncWrite for ResettableStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let this = self.get_mut();
        match this.check() {
            Some(e) => Poll::Ready(Err(e)),
            None => Pin::new(&mut this.tcp).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        match this.check() {
            Some(e) => Poll::Ready(Err(e)),
            None => Pin::new(&mut this.tcp).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        match this.check() {
            Some(e) => Poll::Ready(Err(e)),
            None => Pin::new(&mut this.tcp).poll_shutdown(cx),
        }
    }
}

// ---------------------------------------------------------------------------
// Request handling

async fn handle(
    State(shared): State<Arc<Shared>>,
    ConnectInfo(connection): ConnectInfo<ResetSwitch>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let path = uri.path().to_string();
    let counting = path == "/v1/messages/count_tokens" || path == "/messages/count_tokens";
    let api = if path.ends_with("/chat/completions") {
        Some(Api::OpenAi)
    } else if path == "/v1/messages" || path == "/messages" || counting {
        Some(Api::Anthropic)
    } else {
        None
    };
    let raw_body = String::from_utf8_lossy(&body).into_owned();
    let parsed: Option<Value> = serde_json::from_slice(&body).ok();
    let seq = shared.seq.fetch_add(1, Ordering::SeqCst) + 1;
    let record = RecordedRequest {
        seq,
        method: method.to_string(),
        path: path.clone(),
        query: uri.query().map(str::to_string),
        headers: headers
            .iter()
            .map(|(n, v)| {
                (
                    n.as_str().to_string(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                )
            })
            .collect(),
        body: parsed.clone().unwrap_or(Value::Null),
        raw_body,
        api,
        received_at: Instant::now(),
        status: None,
        usage: None,
    };
    lock(&shared.log).push(record.clone());
    let finish = |status: u16, usage: Option<Usage>| {
        if let Some(r) = lock(&shared.log).iter_mut().find(|r| r.seq == seq) {
            r.status = Some(status);
            r.usage = usage;
        }
    };

    let Some(api) = api else {
        finish(404, None);
        return json_response(
            404,
            openai_error(404, &format!("Unknown request URL: {method} {path}.")),
            seq,
            None,
            &[],
        );
    };
    if method != Method::POST {
        finish(405, None);
        let message = format!("Method {method} not allowed on {path}.");
        return json_response(405, error_body(api, 405, &message), seq, Some(api), &[]);
    }
    let config = lock(&shared.config).clone();
    if let Err((status, message)) = check_auth(api, &headers, &config) {
        finish(status, None);
        let body = match (api, status) {
            (Api::OpenAi, 401) => json!({"error": {
                "message": message, "type": "invalid_request_error", "param": null,
                "code": if headers.contains_key(header::AUTHORIZATION) { json!("invalid_api_key") } else { Value::Null },
            }}),
            _ => error_body(api, status, &message),
        };
        return json_response(status, body, seq, Some(api), &[]);
    }
    let Some(body) = parsed else {
        finish(400, None);
        let message = "We could not parse the JSON body of your request.";
        return json_response(400, error_body(api, 400, message), seq, Some(api), &[]);
    };
    if counting {
        // The input a Messages request with this body would be billed for.
        finish(200, None);
        let input = request_words(&body) + 10;
        return json_response(200, json!({"input_tokens": input}), seq, Some(api), &[]);
    }
    if config.strict {
        let checked = match api {
            Api::OpenAi => validate_openai(&body),
            Api::Anthropic => validate_anthropic(&body),
        };
        if let Err(message) = checked {
            finish(400, None);
            return json_response(400, error_body(api, 400, &message), seq, Some(api), &[]);
        }
    }

    let reply = {
        let queued = lock(&shared.queue).pop_front();
        match queued {
            Some(reply) => reply,
            None => lock(&shared.matchers)
                .iter_mut()
                .find_map(|m| m(&record))
                .unwrap_or_default(),
        }
    };

    let stream = body.get("stream").and_then(Value::as_bool) == Some(true);
    let answer = match &reply.kind {
        ReplyKind::Default => Some(default_answer(&body)),
        ReplyKind::Answer(a) => Some(a.clone()),
        _ => None,
    };
    let usage = answer.as_ref().map(|a| {
        reply.usage.unwrap_or_else(|| {
            let mut u = default_usage(&body, a);
            u.cached = config.cached_tokens.min(u.input);
            u
        })
    });
    let status = match &reply.kind {
        ReplyKind::Default | ReplyKind::Answer(_) => Some(200),
        ReplyKind::Error { status, .. }
        | ReplyKind::ErrorBody { status, .. }
        | ReplyKind::Raw { status, .. } => Some(*status),
        ReplyKind::Reset => None,
    };
    if let Some(status) = status {
        finish(status, usage);
    }

    if !reply.delay.is_zero() {
        tokio::time::sleep(reply.delay).await;
    }
    if let ReplyKind::Reset = reply.kind {
        connection.reset();
        // Writing this fails, and the connection closes with a reset.
        return json_response(500, json!({}), seq, Some(api), &[]);
    }
    let chunk_delay = reply.chunk_delay.unwrap_or(config.chunk_delay);
    let model = body
        .get("model")
        .and_then(Value::as_str)
        .unwrap_or("unknown")
        .to_string();

    if let (Some(answer), Some(usage)) = (&answer, usage) {
        if stream {
            let events = match api {
                Api::OpenAi => {
                    let include_usage = body
                        .pointer("/stream_options/include_usage")
                        .and_then(Value::as_bool)
                        == Some(true);
                    openai_stream(seq, &model, answer, usage, include_usage)
                }
                Api::Anthropic => anthropic_stream(seq, &model, answer, usage),
            };
            return sse_response(events, chunk_delay, reply.partial, seq, api, &reply.headers);
        }
        let json = match api {
            Api::OpenAi => openai_completion(seq, &model, answer, usage),
            Api::Anthropic => anthropic_message(seq, &model, answer, usage),
        };
        return match reply.partial {
            Some((n, ending)) => {
                let mut bytes = json.to_string().into_bytes();
                bytes.truncate(n);
                let content_type = "application/json";
                streamed_response(
                    200,
                    content_type,
                    vec![bytes],
                    Duration::ZERO,
                    ending,
                    seq,
                    Some(api),
                    &reply.headers,
                )
            }
            None => json_response(200, json, seq, Some(api), &reply.headers),
        };
    }
    match reply.kind {
        ReplyKind::Error { status, message } => json_response(
            status,
            error_body(api, status, &message),
            seq,
            Some(api),
            &reply.headers,
        ),
        ReplyKind::ErrorBody { status, body } => {
            json_response(status, body, seq, Some(api), &reply.headers)
        }
        ReplyKind::Raw {
            status,
            content_type,
            body,
        } => streamed_response(
            status,
            &content_type,
            vec![body.into_bytes()],
            Duration::ZERO,
            Ending::Complete,
            seq,
            Some(api),
            &reply.headers,
        ),
        ReplyKind::Default | ReplyKind::Answer(_) | ReplyKind::Reset => {
            unreachable!("answered above")
        }
    }
}

fn check_auth(api: Api, headers: &HeaderMap, config: &UpstreamConfig) -> Result<(), (u16, String)> {
    let value = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    match api {
        Api::OpenAi => {
            let Some(auth) = value("authorization") else {
                return Err((
                    401,
                    "You didn't provide an API key. You need to provide your API key in an \
                     Authorization header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY)."
                        .into(),
                ));
            };
            let key = auth.strip_prefix("Bearer ").unwrap_or("").trim();
            let ok = match &config.openai_key {
                Some(expected) => key == expected,
                None => !key.is_empty(),
            };
            if ok {
                Ok(())
            } else {
                Err((401, format!("Incorrect API key provided: {}.", redact(key))))
            }
        }
        Api::Anthropic => {
            let bearer = value("authorization").and_then(|v| v.strip_prefix("Bearer "));
            let key = match (value("x-api-key"), bearer) {
                (Some(key), _) => key,
                (None, Some(key)) if config.anthropic_bearer => key.trim(),
                _ => return Err((401, "x-api-key header is required".into())),
            };
            let ok = match &config.anthropic_key {
                Some(expected) => key == expected,
                None => !key.is_empty(),
            };
            if !ok {
                return Err((401, "invalid x-api-key".into()));
            }
            match value("anthropic-version") {
                Some(v) if !v.is_empty() => Ok(()),
                _ => Err((400, "anthropic-version: header is required".into())),
            }
        }
    }
}

fn redact(key: &str) -> String {
    let chars: Vec<char> = key.chars().collect();
    if chars.len() <= 8 {
        return "*".repeat(chars.len());
    }
    let head: String = chars[..3].iter().collect();
    let tail: String = chars[chars.len() - 4..].iter().collect();
    format!("{head}***{tail}")
}

/// The API's error body for `status`.
pub fn error_body(api: Api, status: u16, message: &str) -> Value {
    match api {
        Api::OpenAi => openai_error(status, message),
        Api::Anthropic => {
            let kind = match status {
                400 => "invalid_request_error",
                401 => "authentication_error",
                402 => "billing_error",
                403 => "permission_error",
                404 => "not_found_error",
                413 => "request_too_large",
                429 => "rate_limit_error",
                504 => "timeout_error",
                529 => "overloaded_error",
                _ if status >= 500 => "api_error",
                _ => "invalid_request_error",
            };
            json!({"type": "error", "error": {"type": kind, "message": message}})
        }
    }
}

fn openai_error(status: u16, message: &str) -> Value {
    let (kind, code) = match status {
        401 => ("invalid_request_error", json!("invalid_api_key")),
        403 => ("permission_error", Value::Null),
        404 => ("invalid_request_error", json!("unknown_url")),
        429 => ("requests", json!("rate_limit_exceeded")),
        _ if status >= 500 => ("server_error", Value::Null),
        _ => ("invalid_request_error", Value::Null),
    };
    json!({"error": {"message": message, "type": kind, "param": null, "code": code}})
}

fn base_headers(
    builder: axum::http::response::Builder,
    seq: u64,
    api: Option<Api>,
    extra: &[(String, String)],
) -> axum::http::response::Builder {
    let mut builder = match api {
        Some(Api::Anthropic) => builder.header("request-id", format!("req_up{seq}")),
        _ => builder.header("x-request-id", format!("req_up{seq}")),
    };
    for (name, value) in extra {
        if let (Ok(n), Ok(v)) = (
            HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_str(value),
        ) {
            builder = builder.header(n, v);
        }
    }
    builder
}

fn json_response(
    status: u16,
    body: Value,
    seq: u64,
    api: Option<Api>,
    extra: &[(String, String)],
) -> Response {
    let builder = Response::builder()
        .status(StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR))
        .header(header::CONTENT_TYPE, "application/json");
    base_headers(builder, seq, api, extra)
        .body(Body::from(body.to_string()))
        .expect("a valid response")
}

fn sse_response(
    events: Vec<String>,
    chunk_delay: Duration,
    partial: Option<(usize, Ending)>,
    seq: u64,
    api: Api,
    extra: &[(String, String)],
) -> Response {
    let (n, ending) = partial.unwrap_or((usize::MAX, Ending::Complete));
    let chunks = events.into_iter().take(n).map(String::into_bytes).collect();
    streamed_response(
        200,
        "text/event-stream; charset=utf-8",
        chunks,
        chunk_delay,
        ending,
        seq,
        Some(api),
        extra,
    )
}

/// A body sent chunk by chunk, `delay` apart, ending as `ending` says.
#[allow(clippy::too_many_arguments)]
fn streamed_response(
    status: u16,
    content_type: &str,
    chunks: Vec<Vec<u8>>,
    delay: Duration,
    ending: Ending,
    seq: u64,
    api: Option<Api>,
    extra: &[(String, String)],
) -> Response {
    let items =
        futures::stream::iter(chunks.into_iter().enumerate()).then(move |(i, chunk)| async move {
            if i > 0 && !delay.is_zero() {
                tokio::time::sleep(delay).await;
            }
            Ok::<Bytes, std::io::Error>(Bytes::from(chunk))
        });
    // The pause lets hyper flush what was sent before the connection drops.
    let tail = futures::stream::iter([ending]).then(|ending| async move {
        match ending {
            Ending::Complete => None,
            Ending::Cut => {
                tokio::time::sleep(Duration::from_millis(50)).await;
                Some(Err::<Bytes, std::io::Error>(std::io::Error::other(
                    "upstream: connection cut by script",
                )))
            }
            // Until the client goes away and hyper drops the body.
            Ending::Stall => std::future::pending().await,
        }
    });
    let tail = tail.filter_map(std::future::ready);
    let builder = Response::builder()
        .status(StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR))
        .header(header::CONTENT_TYPE, content_type)
        .header(header::CACHE_CONTROL, "no-cache");
    base_headers(builder, seq, api, extra)
        .body(Body::from_stream(items.chain(tail)))
        .expect("a valid response")
}

// ---------------------------------------------------------------------------
// Wire formats

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn openai_tool_call_id(seq: u64, i: usize) -> String {
    format!("call_up{seq}_{i}")
}

fn anthropic_tool_use_id(seq: u64, i: usize) -> String {
    format!("toolu_up{seq}_{i}")
}

fn openai_usage(usage: Usage) -> Value {
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

fn anthropic_usage(usage: Usage) -> Value {
    json!({
        "input_tokens": usage.input.saturating_sub(usage.cached),
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": usage.cached,
        "output_tokens": usage.output,
    })
}

/// A non-streamed OpenAI `chat.completion`.
fn openai_completion(seq: u64, model: &str, answer: &Answer, usage: Usage) -> Value {
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
fn openai_stream(
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

fn anthropic_content(seq: u64, answer: &Answer) -> Vec<Value> {
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
fn anthropic_message(seq: u64, model: &str, answer: &Answer, usage: Usage) -> Value {
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

fn sse_event(kind: &str, data: Value) -> String {
    format!("event: {kind}\ndata: {data}\n\n")
}

/// The SSE events of a streamed Anthropic answer.
fn anthropic_stream(seq: u64, model: &str, answer: &Answer, usage: Usage) -> Vec<String> {
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
fn text_pieces(text: &str) -> Vec<String> {
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
fn json_pieces(json: &str) -> Vec<String> {
    let chars: Vec<char> = json.chars().collect();
    if chars.len() < 3 {
        return vec![json.to_string()];
    }
    let step = chars.len().div_ceil(3);
    chars.chunks(step).map(|c| c.iter().collect()).collect()
}

// ---------------------------------------------------------------------------
// Reading requests (both formats)

/// The text of a `content` value: a string, or the `text` of its parts.
fn content_text(content: &Value) -> String {
    match content {
        Value::String(s) => s.clone(),
        Value::Array(parts) => parts
            .iter()
            .filter(|p| {
                p.get("type")
                    .and_then(Value::as_str)
                    .is_none_or(|t| t == "text")
            })
            .filter_map(|p| p.get("text").and_then(Value::as_str))
            .collect::<Vec<_>>()
            .join(" "),
        _ => String::new(),
    }
}

/// The text results at the end of the conversation, if its last message is
/// made of tool results.
fn trailing_tool_results(body: &Value) -> Option<Vec<String>> {
    let messages = body.get("messages")?.as_array()?;
    let last = messages.last()?;
    match last.get("role").and_then(Value::as_str)? {
        // OpenAI: one message per result.
        "tool" => {
            let results: Vec<String> = messages
                .iter()
                .rev()
                .take_while(|m| m.get("role").and_then(Value::as_str) == Some("tool"))
                .map(|m| content_text(m.get("content").unwrap_or(&Value::Null)))
                .collect();
            Some(results.into_iter().rev().collect())
        }
        // Anthropic: tool_result blocks in a user message.
        "user" => {
            let blocks = last.get("content")?.as_array()?;
            let results: Vec<String> = blocks
                .iter()
                .filter(|b| b.get("type").and_then(Value::as_str) == Some("tool_result"))
                .map(|b| content_text(b.get("content").unwrap_or(&Value::Null)))
                .collect();
            (!results.is_empty()).then_some(results)
        }
        _ => None,
    }
}

/// The text of the last user message (tool results aside), in either format.
pub fn last_user_text(body: &Value) -> Option<String> {
    body.get("messages")?
        .as_array()?
        .iter()
        .rev()
        .filter(|m| m.get("role").and_then(Value::as_str) == Some("user"))
        .map(|m| content_text(m.get("content").unwrap_or(&Value::Null)))
        .find(|t| !t.is_empty())
}

/// The names of the tools a request offers, in either format.
pub fn tool_names(body: &Value) -> Vec<String> {
    body.get("tools")
        .and_then(Value::as_array)
        .map(|tools| {
            tools
                .iter()
                .filter_map(|t| {
                    t.pointer("/function/name")
                        .or_else(|| t.get("name"))
                        .and_then(Value::as_str)
                        .map(str::to_string)
                })
                .collect()
        })
        .unwrap_or_default()
}

/// The tool `tool_choice` forces, `Some(None)` for "no tool", `None` when the
/// model is free to choose.
fn forced_tool(body: &Value) -> Option<Option<String>> {
    let choice = body.get("tool_choice")?;
    match choice {
        Value::String(s) if s == "none" => Some(None),
        Value::Object(o) => match o.get("type").and_then(Value::as_str) {
            Some("none") => Some(None),
            Some("function") => o
                .get("function")
                .and_then(|f| f.get("name"))
                .and_then(Value::as_str)
                .map(|n| Some(n.to_string())),
            Some("tool") => o
                .get("name")
                .and_then(Value::as_str)
                .map(|n| Some(n.to_string())),
            _ => None,
        },
        _ => None,
    }
}

fn word_count(text: &str) -> u64 {
    text.split_whitespace().count() as u64
}

fn max_tokens(body: &Value) -> Option<u64> {
    body.get("max_completion_tokens")
        .or_else(|| body.get("max_tokens"))
        .and_then(Value::as_u64)
}

/// The default answer to a request, in either format (see the module docs).
pub fn default_answer(body: &Value) -> Answer {
    if let Some(results) = trailing_tool_results(body) {
        return Answer {
            text: Some(format!("tool said: {}", results.join("; "))),
            ..Answer::default()
        };
    }
    let user_text = last_user_text(body).unwrap_or_default();
    let tools = tool_names(body);
    if !tools.is_empty() {
        let name = match forced_tool(body) {
            Some(None) => None,
            Some(Some(name)) => Some(name),
            None => Some(tools[0].clone()),
        };
        if let Some(name) = name {
            return Answer {
                text: None,
                tool_calls: vec![ToolCall {
                    name,
                    arguments: json!({"query": user_text}),
                }],
                truncated: false,
            };
        }
    }
    let model = body
        .get("model")
        .and_then(Value::as_str)
        .unwrap_or("unknown");
    let text = format!("[{model}] echo: {user_text}");
    match max_tokens(body) {
        Some(max) if word_count(&text) > max => Answer {
            text: Some(
                text.split_whitespace()
                    .take(max as usize)
                    .collect::<Vec<_>>()
                    .join(" "),
            ),
            tool_calls: Vec::new(),
            truncated: true,
        },
        _ => Answer {
            text: Some(text),
            ..Answer::default()
        },
    }
}

/// The words of every text in a request: system prompt(s), message texts and
/// tool results (not tool-call arguments), in either format.
pub fn request_words(body: &Value) -> u64 {
    fn walk(content: &Value) -> u64 {
        match content {
            Value::String(s) => word_count(s),
            Value::Array(parts) => parts.iter().map(walk).sum(),
            Value::Object(o) => {
                let mut n = 0;
                if let Some(Value::String(t)) = o.get("text") {
                    n += word_count(t);
                }
                if o.get("type").and_then(Value::as_str) == Some("tool_result") {
                    n += o.get("content").map(walk).unwrap_or(0);
                }
                n
            }
            _ => 0,
        }
    }
    let system = body.get("system").map(walk).unwrap_or(0);
    let messages: u64 = body
        .get("messages")
        .and_then(Value::as_array)
        .map(|ms| {
            ms.iter()
                .map(|m| m.get("content").map(walk).unwrap_or(0))
                .sum()
        })
        .unwrap_or(0);
    system + messages
}

/// The usage the upstream reports for `answer` to `body`, before the
/// configured cached tokens are applied (`cached` is 0).
pub fn default_usage(body: &Value, answer: &Answer) -> Usage {
    let text = answer.text.as_deref().map(word_count).unwrap_or(0);
    let calls: u64 = answer
        .tool_calls
        .iter()
        .map(|c| word_count(&c.arguments.to_string()))
        .sum();
    Usage {
        input: request_words(body) + 10,
        output: (text + calls).max(1),
        cached: 0,
    }
}

// ---------------------------------------------------------------------------
// Validation, as strict as the real APIs on the points a gateway can get wrong

fn validate_openai(body: &Value) -> Result<(), String> {
    let obj = body
        .as_object()
        .ok_or("The request body must be a JSON object.")?;
    match obj.get("model") {
        Some(Value::String(m)) if !m.is_empty() => {}
        _ => return Err("you must provide a model parameter".into()),
    }
    let messages = match obj.get("messages") {
        Some(Value::Array(ms)) if !ms.is_empty() => ms,
        Some(Value::Array(_)) => return Err("[] is too short - 'messages'".into()),
        _ => return Err("Missing required parameter: 'messages'.".into()),
    };
    let stream = obj.get("stream").and_then(Value::as_bool) == Some(true);
    if obj.get("stream_options").is_some_and(|v| !v.is_null()) && !stream {
        return Err(
            "The 'stream_options' parameter is only allowed when 'stream' is enabled.".into(),
        );
    }
    if let Some(tools) = obj.get("tools") {
        let tools = tools
            .as_array()
            .ok_or("Invalid type for 'tools': expected an array.")?;
        for (i, tool) in tools.iter().enumerate() {
            if tool.get("type").and_then(Value::as_str) != Some("function") {
                return Err(format!("Missing required parameter: 'tools[{i}].type'."));
            }
            if tool
                .pointer("/function/name")
                .and_then(Value::as_str)
                .is_none()
            {
                return Err(format!(
                    "Missing required parameter: 'tools[{i}].function.name'."
                ));
            }
        }
    }
    // Tool calls still waiting for their results.
    let mut pending: Vec<String> = Vec::new();
    for (i, m) in messages.iter().enumerate() {
        let role = m
            .get("role")
            .and_then(Value::as_str)
            .ok_or_else(|| format!("Missing required parameter: 'messages[{i}].role'."))?;
        if role != "tool" && !pending.is_empty() {
            return Err(format!(
                "An assistant message with 'tool_calls' must be followed by tool messages \
                 responding to each 'tool_call_id'. The following tool_call_ids did not have \
                 response messages: {}",
                pending.join(", ")
            ));
        }
        match role {
            "system" | "developer" | "user" => {
                check_openai_content(i, m.get("content"), false)?;
            }
            "assistant" => {
                let calls = m.get("tool_calls").and_then(Value::as_array);
                check_openai_content(i, m.get("content"), calls.is_some_and(|c| !c.is_empty()))?;
                for (j, call) in calls.into_iter().flatten().enumerate() {
                    let id = call.get("id").and_then(Value::as_str).ok_or_else(|| {
                        format!("Missing required parameter: 'messages[{i}].tool_calls[{j}].id'.")
                    })?;
                    let args = call.pointer("/function/arguments").and_then(Value::as_str);
                    if call
                        .pointer("/function/name")
                        .and_then(Value::as_str)
                        .is_none()
                        || args.is_none()
                    {
                        return Err(format!(
                            "Missing required parameter: 'messages[{i}].tool_calls[{j}].function'."
                        ));
                    }
                    pending.push(id.to_string());
                }
            }
            "tool" => {
                let id = m
                    .get("tool_call_id")
                    .and_then(Value::as_str)
                    .ok_or_else(|| {
                        format!("Missing required parameter: 'messages[{i}].tool_call_id'.")
                    })?;
                match pending.iter().position(|p| p == id) {
                    Some(k) => {
                        pending.remove(k);
                    }
                    None => {
                        return Err(format!(
                            "Invalid parameter: messages with role 'tool' must be a response to a \
                             preceeding message with 'tool_calls'. (messages[{i}], tool_call_id {id})"
                        ));
                    }
                }
                check_openai_content(i, m.get("content"), false)?;
            }
            "function" => {}
            other => {
                return Err(format!(
                    "Invalid value: '{other}'. Supported values are: 'system', 'assistant', \
                     'user', 'function', 'tool', and 'developer'. (messages[{i}].role)"
                ));
            }
        }
    }
    if !pending.is_empty() {
        return Err(format!(
            "An assistant message with 'tool_calls' must be followed by tool messages responding \
             to each 'tool_call_id'. The following tool_call_ids did not have response messages: {}",
            pending.join(", ")
        ));
    }
    Ok(())
}

fn check_openai_content(
    i: usize,
    content: Option<&Value>,
    may_be_null: bool,
) -> Result<(), String> {
    match content {
        Some(Value::String(_)) => Ok(()),
        Some(Value::Array(parts)) => {
            for (j, p) in parts.iter().enumerate() {
                if p.get("type").and_then(Value::as_str).is_none() {
                    return Err(format!(
                        "Missing required parameter: 'messages[{i}].content[{j}].type'."
                    ));
                }
            }
            Ok(())
        }
        None | Some(Value::Null) if may_be_null => Ok(()),
        _ => Err(format!(
            "Invalid type for 'messages[{i}].content': expected one of a string or array of \
             objects, but got {}.",
            match content {
                None => "nothing",
                Some(Value::Null) => "null",
                Some(Value::Object(_)) => "an object",
                Some(Value::Bool(_)) => "a boolean",
                Some(Value::Number(_)) => "a number",
                _ => "a value",
            }
        )),
    }
}

/// A `system` message inside `messages`: a non-empty string or text blocks.
fn check_system_turn(i: usize, content: Option<&Value>) -> Result<(), String> {
    match content {
        Some(Value::String(s)) if !s.is_empty() => Ok(()),
        Some(Value::Array(blocks)) if !blocks.is_empty() => {
            for (j, b) in blocks.iter().enumerate() {
                check_text_block(&format!("messages.{i}.content.{j}"), b)?;
            }
            Ok(())
        }
        _ => Err(format!(
            "messages.{i}: a system message needs non-empty text content"
        )),
    }
}

fn validate_anthropic(body: &Value) -> Result<(), String> {
    let obj = body
        .as_object()
        .ok_or("The request body must be a JSON object.")?;
    match obj.get("model") {
        Some(Value::String(m)) if !m.is_empty() => {}
        _ => return Err("model: Field required".into()),
    }
    match obj.get("max_tokens") {
        Some(v) if v.as_u64().is_some_and(|n| n >= 1) => {}
        Some(_) => {
            return Err(
                "max_tokens: Input should be a valid integer greater than or equal to 1".into(),
            );
        }
        None => return Err("max_tokens: Field required".into()),
    }
    if obj.contains_key("stream_options") {
        return Err("stream_options: Extra inputs are not permitted".into());
    }
    match obj.get("system") {
        None | Some(Value::String(_)) => {}
        Some(Value::Array(blocks)) => {
            for (j, b) in blocks.iter().enumerate() {
                check_text_block(&format!("system.{j}"), b)?;
            }
        }
        Some(_) => return Err("system: Input should be a valid string or list".into()),
    }
    if let Some(tools) = obj.get("tools") {
        let tools = tools
            .as_array()
            .ok_or("tools: Input should be a valid list")?;
        for (i, t) in tools.iter().enumerate() {
            // Server tools have a `type` (web_search_20250305...); custom ones a schema.
            let custom = t
                .get("type")
                .and_then(Value::as_str)
                .is_none_or(|k| k == "custom");
            if t.get("name").and_then(Value::as_str).is_none() {
                return Err(format!("tools.{i}.name: Field required"));
            }
            if custom && !t.get("input_schema").is_some_and(Value::is_object) {
                return Err(format!("tools.{i}.custom.input_schema: Field required"));
            }
        }
    }
    let messages = match obj.get("messages") {
        Some(Value::Array(ms)) if !ms.is_empty() => ms,
        Some(Value::Array(_)) => return Err("messages: at least one message is required".into()),
        _ => return Err("messages: Field required".into()),
    };
    let mut pending: Vec<String> = Vec::new();
    for (i, m) in messages.iter().enumerate() {
        let role = m.get("role").and_then(Value::as_str);
        let role = match role {
            Some(r @ ("user" | "assistant")) => r,
            // Mid-conversation system turns (Claude Code's): text only, and
            // they do not end a tool exchange.
            Some("system") => {
                check_system_turn(i, m.get("content"))?;
                continue;
            }
            _ => {
                return Err(format!(
                    "messages.{i}.role: Input should be 'user', 'assistant' or 'system'"
                ));
            }
        };
        let last = i + 1 == messages.len();
        let blocks: Vec<Map<String, Value>> = match m.get("content") {
            Some(Value::String(s)) => {
                if s.is_empty() && !(last && role == "assistant") {
                    return Err(format!(
                        "messages.{i}: all messages must have non-empty content except for the \
                         optional final assistant message"
                    ));
                }
                Vec::new()
            }
            Some(Value::Array(blocks)) => {
                if blocks.is_empty() && !(last && role == "assistant") {
                    return Err(format!(
                        "messages.{i}: all messages must have non-empty content except for the \
                         optional final assistant message"
                    ));
                }
                blocks
                    .iter()
                    .enumerate()
                    .map(|(j, b)| {
                        b.as_object().cloned().ok_or_else(|| {
                            format!("messages.{i}.content.{j}: Input should be an object")
                        })
                    })
                    .collect::<Result<_, _>>()?
            }
            _ => {
                return Err(format!(
                    "messages.{i}.content: Input should be a valid list"
                ));
            }
        };
        // Results answer the tool_use blocks of the message just before.
        let mut answered: Vec<String> = Vec::new();
        let mut uses: Vec<String> = Vec::new();
        for (j, b) in blocks.iter().enumerate() {
            let at = format!("messages.{i}.content.{j}");
            match b.get("type").and_then(Value::as_str) {
                Some("text") => check_text_block(&at, &Value::Object(b.clone()))?,
                Some("tool_use") => {
                    if role != "assistant" {
                        return Err(format!(
                            "{at}: tool_use blocks are only allowed in assistant messages"
                        ));
                    }
                    let id = b.get("id").and_then(Value::as_str);
                    let name = b.get("name").and_then(Value::as_str);
                    let (Some(id), Some(_)) = (id, name) else {
                        return Err(format!("{at}.tool_use: `id` and `name` are required"));
                    };
                    if !b.get("input").is_some_and(Value::is_object) {
                        return Err(format!(
                            "{at}.tool_use.input: Input should be a valid dictionary"
                        ));
                    }
                    uses.push(id.to_string());
                }
                Some("tool_result") => {
                    if role != "user" {
                        return Err(format!(
                            "{at}: tool_result blocks are only allowed in user messages"
                        ));
                    }
                    let id = b
                        .get("tool_use_id")
                        .and_then(Value::as_str)
                        .ok_or_else(|| format!("{at}.tool_result.tool_use_id: Field required"))?;
                    if !pending.iter().any(|p| p == id) {
                        return Err(format!(
                            "{at}: unexpected `tool_use_id` found in `tool_result` blocks: {id}. \
                             Each `tool_result` block must have a corresponding `tool_use` block \
                             in the previous message."
                        ));
                    }
                    answered.push(id.to_string());
                    if let Some(Value::Array(inner)) = b.get("content") {
                        for (k, ib) in inner.iter().enumerate() {
                            if ib.get("type").and_then(Value::as_str) == Some("text") {
                                check_text_block(&format!("{at}.content.{k}"), ib)?;
                            }
                        }
                    }
                }
                Some(_) => {}
                None => return Err(format!("{at}.type: Field required")),
            }
        }
        let missing: Vec<&String> = pending.iter().filter(|p| !answered.contains(p)).collect();
        if !missing.is_empty() {
            return Err(format!(
                "messages.{i}: `tool_use` ids were found without `tool_result` blocks immediately \
                 after: {}. Each `tool_use` block must have a corresponding `tool_result` block in \
                 the next message.",
                missing
                    .iter()
                    .map(|s| s.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
        pending = uses;
    }
    Ok(())
}

fn check_text_block(at: &str, block: &Value) -> Result<(), String> {
    match block.get("text") {
        Some(Value::String(t)) if !t.is_empty() => Ok(()),
        Some(Value::String(_)) => Err(format!("{at}: text content blocks must be non-empty")),
        _ => Err(format!("{at}.text: Field required")),
    }
}

#[cfg(test)]
mod tests;

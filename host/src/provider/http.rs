//! Providers reached over HTTP: any OpenAI-compatible API, and Anthropic's.
//!
//! TLS providers are called through hyper's pooled client directly rather
//! than reqwest: reqwest parsed the URL twice per request (once for its
//! redirect policy, which cannot be switched off) and stacked tower layers
//! the gateway does not use; without them a plain request costs the daemon
//! about a fifth less CPU under load (`bench/profile`). The pool keeps
//! HTTP/1.1 connections alive and speaks HTTP/2 where the provider offers it
//! (ALPN). Plain-HTTP providers get connections the calling task drives
//! itself (`provider/plain.rs`).
//!
//! A provider the environment sends through a proxy (`HTTPS_PROXY`,
//! `HTTP_PROXY`, `ALL_PROXY`, `NO_PROXY`, read as curl reads them) is called
//! through reqwest instead, which speaks every proxy form (HTTP `CONNECT`,
//! absolute-form requests, SOCKS, proxy credentials).

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use anyhow::{Context, bail};
use bytes::Bytes;
use http::header::{CONTENT_TYPE, HeaderMap, HeaderValue};
use http::{Method, Uri};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::proxy::matcher::Matcher;
use hyper_util::rt::{TokioExecutor, TokioTimer};

use super::passthrough::{self, NativeRequest};
use super::plain::Pool;
use super::wire::sse::SseParser;
use super::wire::{anthropic, openai};
use super::{BoxError, Event, Format, ProviderError, Reply, Request, Response};
use crate::config::{ProviderConfig, ProviderKind};

/// The Anthropic API version the adapter speaks.
pub const ANTHROPIC_VERSION: &str = "2023-06-01";
/// Largest `count_tokens` answer read (it is one small object).
const MAX_COUNT_BODY: usize = 64 * 1024;
/// Most of an upstream error body quoted in an error message.
const MAX_ERROR_TEXT: usize = 512;
/// Most of an upstream error body read: the message is at its start, and
/// an error body that never ends must cost nothing.
const MAX_ERROR_BODY: usize = 64 * 1024;
/// Most bytes read from a stream after its last event (the upstream's
/// `[DONE]` or `message_stop`), so that its connection can be kept; what
/// comes there is never relayed.
const MAX_AFTER_END: usize = 64 * 1024;
/// Longest wait for a stream's body to end after its last event.
const AFTER_END_WAIT: Duration = Duration::from_secs(1);

/// An HTTP provider with its own connection pool.
pub struct HttpProvider {
    name: String,
    format: Format,
    /// Parsed once: parsing and IDNA-checking it on every call cost about
    /// 5 µs a request.
    endpoint: Uri,
    /// `POST /v1/messages/count_tokens` of an Anthropic provider.
    count_endpoint: Option<Uri>,
    /// `POST {base_url}/responses` of an OpenAI provider configured with
    /// `responses = true`.
    responses_endpoint: Option<Uri>,
    /// Content type, credentials and API version, sent with every call.
    headers: HeaderMap,
    transport: Transport,
    /// The key, kept only to redact it from anything the upstream echoes.
    key: Option<String>,
    timeout: Duration,
    /// Largest answer read, in bytes (a stream's: in all).
    max_answer_bytes: usize,
}

impl HttpProvider {
    /// Builds the provider; reads the API key from its environment variable.
    pub fn new(name: &str, config: &ProviderConfig) -> anyhow::Result<Self> {
        let at = format!("providers.{name}");
        let base = config
            .base_url
            .as_deref()
            .with_context(|| format!("{at}.base_url: required"))?
            .trim_end_matches('/');
        let key = match (&config.api_key_env, &config.api_key_file) {
            (Some(var), _) => match std::env::var(var) {
                Ok(key) if !key.is_empty() => Some(key),
                _ => bail!("{at}.api_key_env: the environment variable {var} is not set"),
            },
            (None, Some(path)) => {
                // Read at start and at every reload, so a rotated key is
                // picked up without a restart. The file's error never
                // quotes its content.
                let text = std::fs::read_to_string(path).with_context(|| {
                    format!("{at}.api_key_file: cannot read {}", path.display())
                })?;
                let key = text.trim();
                if key.is_empty() {
                    bail!("{at}.api_key_file: {} is empty", path.display());
                }
                Some(key.to_string())
            }
            (None, None) => None,
        };
        let (format, endpoint) = match config.kind {
            ProviderKind::Openai => (Format::OpenAi, format!("{base}/chat/completions")),
            ProviderKind::Anthropic => (Format::Anthropic, format!("{base}/v1/messages")),
            ProviderKind::Simulated => bail!("{at}: a simulated provider is not an HTTP provider"),
        };
        let count_endpoint = match format {
            Format::Anthropic => Some(
                parse_endpoint(&format!("{base}/v1/messages/count_tokens"))
                    .with_context(|| format!("{at}.base_url: not a valid http or https URL"))?,
            ),
            Format::OpenAi => None,
        };
        let responses_endpoint = match (format, config.responses) {
            (Format::OpenAi, true) => Some(
                parse_endpoint(&format!("{base}/responses"))
                    .with_context(|| format!("{at}.base_url: not a valid http or https URL"))?,
            ),
            (Format::Anthropic, true) => {
                bail!("{at}.responses: only an OpenAI-format provider speaks the Responses API")
            }
            (_, false) => None,
        };
        let endpoint = parse_endpoint(&endpoint)
            .with_context(|| format!("{at}.base_url: not a valid http or https URL"))?;
        let mut headers = HeaderMap::new();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        if let Some(key) = &key {
            let (name, value) = match format {
                Format::OpenAi => ("authorization", format!("Bearer {key}")),
                Format::Anthropic => ("x-api-key", key.clone()),
            };
            let mut value = HeaderValue::from_str(&value)
                .map_err(|_| anyhow::anyhow!("{at}: the API key is not a valid header value"))?;
            value.set_sensitive(true);
            headers.insert(name, value);
        }
        if format == Format::Anthropic {
            headers.insert(
                "anthropic-version",
                HeaderValue::from_static(ANTHROPIC_VERSION),
            );
        }
        let connect_timeout = Duration::from_millis(config.connect_timeout_ms);
        let transport = match Matcher::from_system().intercept(&endpoint) {
            None if endpoint.scheme() == Some(&http::uri::Scheme::HTTP) => Transport::Plain(
                Pool::new(&endpoint, connect_timeout, POOL_IDLE, POOL_MAX_IDLE)
                    .with_context(|| format!("{at}.base_url: no usable host"))?,
            ),
            None => Transport::tls(connect_timeout)
                .with_context(|| format!("{at}: cannot set up TLS"))?,
            Some(proxy) => {
                // The host and port only: a proxy URL can carry credentials.
                let via = proxy.uri();
                let (host, port) = (via.host().unwrap_or("?"), via.port_u16().unwrap_or(0));
                tracing::info!(
                    provider = name,
                    "calls go through the proxy at {host}:{port}"
                );
                Transport::proxied(connect_timeout, Duration::from_millis(config.timeout_ms))
                    .with_context(|| format!("{at}: cannot set up the proxied client"))?
            }
        };
        Ok(HttpProvider {
            name: name.to_string(),
            format,
            endpoint,
            count_endpoint,
            responses_endpoint,
            headers,
            transport,
            key,
            timeout: Duration::from_millis(config.timeout_ms),
            max_answer_bytes: config.max_answer_bytes,
        })
    }

    /// The wire format.
    pub fn format(&self) -> Format {
        self.format
    }

    /// Sends the request and reads the answer (or the start of the stream).
    pub async fn send(&self, request: Request) -> Result<Reply, ProviderError> {
        let stream = request.is_stream();
        let (body, betas) = match &request {
            Request::OpenAi(r) => (serde_json::to_vec(r), None),
            Request::Anthropic(r) => (serde_json::to_vec(r), r.betas.as_deref()),
        };
        let body =
            body.map_err(|e| ProviderError::Malformed(format!("cannot encode the request: {e}")))?;
        let wire = match self.format {
            Format::OpenAi => Wire::OpenAi,
            Format::Anthropic => Wire::Anthropic,
        };
        self.exchange(&self.endpoint, body, beta_header(betas), stream, wire)
            .await
    }

    /// Whether `POST {base_url}/responses` is configured.
    pub fn speaks_responses(&self) -> bool {
        self.responses_endpoint.is_some()
    }

    /// Sends a Responses request as its client sent it, for
    /// `upstream_model`, to `POST {base_url}/responses`.
    pub async fn send_responses(
        &self,
        request: &NativeRequest,
        upstream_model: &str,
    ) -> Result<Reply, ProviderError> {
        let Some(endpoint) = &self.responses_endpoint else {
            return Err(ProviderError::Untranslatable(format!(
                "provider {} is not configured with `responses = true`",
                self.name
            )));
        };
        let body = request.body_for(upstream_model)?;
        self.exchange(endpoint, body, None, request.is_stream(), Wire::Responses)
            .await
    }

    /// Posts `body` and reads the answer in `wire` (or the start of the
    /// stream), within the provider's timeout and answer bound.
    async fn exchange(
        &self,
        endpoint: &Uri,
        body: Vec<u8>,
        betas: Option<HeaderValue>,
        stream: bool,
        wire: Wire,
    ) -> Result<Reply, ProviderError> {
        let response =
            tokio::time::timeout(self.timeout, self.post(endpoint, body, betas.as_ref()))
                .await
                .map_err(|_| ProviderError::Timeout(self.timeout))?
                .map_err(|e| ProviderError::Connect(error_text(&*e, self.key.as_deref())))?;
        let status = response.status();
        if !status.is_success() {
            return Err(self.status_error(response).await);
        }
        if stream {
            return Ok(Reply::Stream(self.events(response.into_body(), wire)));
        }
        let bytes = tokio::time::timeout(
            self.timeout,
            read_at_most(response.into_body(), self.max_answer_bytes),
        )
        .await
        .map_err(|_| ProviderError::Timeout(self.timeout))?
        .map_err(|e| match e {
            Read::TooLong(limit) => ProviderError::Broken(format!(
                "the answer is over the provider's limit of {limit} bytes (max_answer_bytes)"
            )),
            Read::Failed(e) => ProviderError::Broken(error_text(&*e, self.key.as_deref())),
        })?;
        let answer = match wire {
            Wire::OpenAi => parse_answer(Format::OpenAi, &bytes),
            Wire::Anthropic => parse_answer(Format::Anthropic, &bytes),
            Wire::Responses => passthrough::parse_answer(&bytes),
        };
        answer
            .map(|r| Reply::Complete(Box::new(r)))
            .map_err(|e| match e {
                ProviderError::Malformed(text) => ProviderError::Malformed(self.redact(&text)),
                other => other.redacted(self.key.as_deref()),
            })
    }

    /// Asks an Anthropic provider to count the input tokens of `request`
    /// (`POST /v1/messages/count_tokens`, with the request's betas); the
    /// count. `None` for a provider of another format.
    pub async fn count_tokens(
        &self,
        request: &anthropic::CountTokensRequest,
        betas: Option<&str>,
    ) -> Option<Result<u64, ProviderError>> {
        let endpoint = self.count_endpoint.as_ref()?;
        Some(self.count_at(endpoint, request, betas).await)
    }

    async fn count_at(
        &self,
        endpoint: &Uri,
        request: &anthropic::CountTokensRequest,
        betas: Option<&str>,
    ) -> Result<u64, ProviderError> {
        let body = serde_json::to_vec(request)
            .map_err(|e| ProviderError::Malformed(format!("cannot encode the request: {e}")))?;
        let betas = beta_header(betas);
        let response =
            tokio::time::timeout(self.timeout, self.post(endpoint, body, betas.as_ref()))
                .await
                .map_err(|_| ProviderError::Timeout(self.timeout))?
                .map_err(|e| ProviderError::Connect(error_text(&*e, self.key.as_deref())))?;
        if !response.status().is_success() {
            return Err(self.status_error(response).await);
        }
        let bytes = tokio::time::timeout(self.timeout, self.read_small(response.into_body()))
            .await
            .map_err(|_| ProviderError::Timeout(self.timeout))??;
        serde_json::from_slice::<anthropic::CountTokensResponse>(&bytes)
            .map(|r| r.input_tokens)
            .map_err(|e| ProviderError::Malformed(self.redact(&format!("{e}"))))
    }

    /// A small answer's body, refused past [`MAX_COUNT_BODY`] bytes.
    async fn read_small(&self, mut body: Body) -> Result<Vec<u8>, ProviderError> {
        let mut bytes = Vec::new();
        while let Some(frame) = body.frame().await {
            let frame =
                frame.map_err(|e| ProviderError::Broken(error_text(&*e, self.key.as_deref())))?;
            if let Ok(data) = frame.into_data() {
                bytes.extend_from_slice(&data);
                if bytes.len() > MAX_COUNT_BODY {
                    return Err(ProviderError::Malformed(format!(
                        "the answer is over {MAX_COUNT_BODY} bytes"
                    )));
                }
            }
        }
        Ok(bytes)
    }

    /// Posts `body` to `endpoint`, with the client's `anthropic-beta` header
    /// if any; the answer's head, its body to come.
    async fn post(
        &self,
        endpoint: &Uri,
        body: Vec<u8>,
        betas: Option<&HeaderValue>,
    ) -> Result<http::Response<Body>, BoxError> {
        let headers = match betas {
            None => self.headers.clone(),
            Some(betas) => {
                let mut headers = self.headers.clone();
                headers.insert("anthropic-beta", betas.clone());
                headers
            }
        };
        let call = |body: Vec<u8>| {
            let mut call = http::Request::new(Full::new(Bytes::from(body)));
            *call.method_mut() = Method::POST;
            *call.uri_mut() = endpoint.clone();
            *call.headers_mut() = headers.clone();
            call
        };
        match &self.transport {
            Transport::Plain(pool) => {
                let response = pool.send(call(body)).await?;
                Ok(response.map(|body| body.map_err(BoxError::from).boxed_unsync()))
            }
            Transport::Tls(client) => {
                let response = client.request(call(body)).await?;
                Ok(response.map(|body| body.map_err(BoxError::from).boxed_unsync()))
            }
            Transport::Proxied(client) => {
                let response = client
                    .post(endpoint.to_string())
                    .headers(headers.clone())
                    .body(body)
                    .send()
                    .await
                    // reqwest's errors name the URL, which can name internal
                    // hosts the client has no business knowing.
                    .map_err(reqwest::Error::without_url)?;
                let response = http::Response::from(response);
                Ok(response.map(|body| body.map_err(BoxError::from).boxed_unsync()))
            }
        }
    }

    /// The events of a streamed answer, read and parsed on the task that
    /// consumes them (no task in between to hand each event across). A
    /// stream that goes quiet for the provider's timeout counts as timed
    /// out; the first error ends it.
    fn events(&self, body: Body, wire: Wire) -> super::EventStream {
        let reader = EventReader {
            body,
            parser: SseParser::new(),
            ready: VecDeque::new(),
            ended: false,
            last_seen: false,
            read: 0,
            max_bytes: self.max_answer_bytes,
            wire,
            key: self.key.clone(),
            timeout: self.timeout,
        };
        Box::pin(futures::stream::unfold(reader, |mut reader| async move {
            let next = reader.next().await?;
            Some((next, reader))
        }))
    }

    async fn status_error(&self, response: http::Response<Body>) -> ProviderError {
        let status = response.status().as_u16();
        let retry_after = response
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| retry_after(v, SystemTime::now()));
        // An error body that never ends must not hold the request, nor
        // fill memory: its message is at its start.
        let body = tokio::time::timeout(
            self.timeout,
            read_at_most(response.into_body(), MAX_ERROR_BODY),
        )
        .await
        .ok()
        .and_then(|read| read.ok())
        .unwrap_or_default();
        let message = self.redact(&error_message(&body));
        let message = match status {
            // A provider's words about a refused key may quote part of it
            // (OpenAI echoes a masked key): they go to the operator's log
            // only, attempts and errors say what happened in fixed words.
            401 | 403 => {
                tracing::warn!(provider = %self.name, status, "the provider refused the gateway's credentials: {message}");
                "the provider refused the gateway's credentials".to_string()
            }
            _ => {
                tracing::debug!(provider = %self.name, status, "upstream error: {message}");
                message
            }
        };
        ProviderError::Status {
            status,
            message,
            retry_after,
        }
    }

    fn redact(&self, text: &str) -> String {
        redact(self.key.as_deref(), text)
    }
}

/// What an upstream answer is written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Wire {
    /// OpenAI chat completions.
    OpenAi,
    /// Anthropic messages.
    Anthropic,
    /// The Responses API, passed through.
    Responses,
}

/// An answer's body, from either transport.
type Body = UnsyncBoxBody<Bytes, BoxError>;

/// How calls reach a provider.
enum Transport {
    /// Connections of Pointsman's own to a plain-HTTP upstream.
    Plain(Arc<Pool>),
    /// hyper's pooled client, for TLS upstreams.
    Tls(Box<Client<HttpsConnector<HttpConnector>, Full<Bytes>>>),
    /// reqwest, which reads the proxy settings from the environment itself.
    Proxied(reqwest::Client),
}

impl Transport {
    fn tls(connect_timeout: Duration) -> anyhow::Result<Self> {
        let mut http = HttpConnector::new();
        // The URL's scheme decides; the TLS layer below refuses nothing.
        http.enforce_http(false);
        http.set_nodelay(true);
        http.set_connect_timeout(Some(connect_timeout));
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls_config()?)
            .https_or_http()
            .enable_http1()
            .enable_http2()
            .wrap_connector(http);
        // Redirects are not followed: a provider API that redirects is
        // misconfigured, and following it would send the request (and its
        // key) somewhere unplanned.
        let client = Client::builder(TokioExecutor::new())
            .pool_timer(TokioTimer::new())
            .pool_idle_timeout(POOL_IDLE)
            .pool_max_idle_per_host(POOL_MAX_IDLE)
            .build(connector);
        Ok(Transport::Tls(Box::new(client)))
    }

    fn proxied(connect_timeout: Duration, read_timeout: Duration) -> anyhow::Result<Self> {
        let client = reqwest::Client::builder()
            .connect_timeout(connect_timeout)
            .read_timeout(read_timeout)
            .tcp_nodelay(true)
            .redirect(reqwest::redirect::Policy::none())
            .pool_idle_timeout(POOL_IDLE)
            .pool_max_idle_per_host(POOL_MAX_IDLE)
            .build()?;
        Ok(Transport::Proxied(client))
    }
}

/// How long an unused upstream connection is kept.
const POOL_IDLE: Duration = Duration::from_secs(90);
/// Most unused connections kept per upstream host.
const POOL_MAX_IDLE: usize = 256;

/// A streamed answer's body being turned into events.
struct EventReader {
    body: Body,
    parser: SseParser,
    /// Parsed from the last chunk and not yet handed out.
    ready: VecDeque<Result<Event, ProviderError>>,
    ended: bool,
    /// The stream's last event has been read: nothing after it is relayed.
    last_seen: bool,
    /// Bytes of the body read so far.
    read: usize,
    max_bytes: usize,
    wire: Wire,
    key: Option<String>,
    timeout: Duration,
}

impl EventReader {
    async fn next(&mut self) -> Option<Result<Event, ProviderError>> {
        loop {
            if let Some(next) = self.ready.pop_front() {
                if next.is_err() {
                    self.ended = true;
                    self.ready.clear();
                }
                return Some(next);
            }
            if self.ended {
                return None;
            }
            if self.last_seen {
                self.drain_after_end().await;
                return None;
            }
            match tokio::time::timeout(self.timeout, self.body.frame()).await {
                Ok(Some(Ok(frame))) => {
                    // Trailers carry nothing an SSE reader needs.
                    if let Ok(chunk) = frame.into_data() {
                        self.read += chunk.len();
                        if self.read > self.max_bytes {
                            self.ready.push_back(Err(ProviderError::Broken(format!(
                                "the stream is over the provider's limit of {} bytes (max_answer_bytes)",
                                self.max_bytes
                            ))));
                            continue;
                        }
                        self.parse(&chunk);
                    }
                }
                Ok(Some(Err(e))) => {
                    let error = ProviderError::Broken(error_text(&*e, self.key.as_deref()));
                    self.ready.push_back(Err(error));
                }
                Ok(None) => {
                    self.ended = true;
                    if let Some(event) = self.parser.finish()
                        && let Ok(Some(event)) = self.read_event(&event)
                    {
                        self.ready.push_back(Ok(event));
                    }
                }
                Err(_) => self
                    .ready
                    .push_back(Err(ProviderError::Timeout(self.timeout))),
            }
        }
    }

    fn parse(&mut self, chunk: &[u8]) {
        let events = match self.parser.feed(chunk) {
            Ok(events) => events,
            Err(e) => {
                self.ready
                    .push_back(Err(ProviderError::Malformed(e.to_string())));
                return;
            }
        };
        for event in events {
            if self.wire == Wire::OpenAi && event.data.trim() == "[DONE]" {
                self.last_seen = true;
                return;
            }
            match self.read_event(&event) {
                Ok(Some(event)) => {
                    let last = match &event {
                        Event::Anthropic(e) => matches!(e, anthropic::StreamEvent::MessageStop),
                        Event::Responses(e) => e.kind() == passthrough::EventKind::Finished,
                        Event::OpenAi(_) => false,
                    };
                    self.ready.push_back(Ok(event));
                    if last {
                        self.last_seen = true;
                        return;
                    }
                }
                Ok(None) => {}
                Err(e) => {
                    // An upstream's error event may quote the gateway's key,
                    // as its error bodies may.
                    self.ready.push_back(Err(e.redacted(self.key.as_deref())));
                    return;
                }
            }
        }
    }

    /// One SSE event in the stream's format.
    fn read_event(
        &self,
        event: &super::wire::sse::SseEvent,
    ) -> Result<Option<Event>, ProviderError> {
        match self.wire {
            Wire::OpenAi => parse_event(Format::OpenAi, &event.data),
            Wire::Anthropic => parse_event(Format::Anthropic, &event.data),
            Wire::Responses => passthrough::parse_event(event.event.as_deref(), &event.data),
        }
    }

    /// Reads on after the last event, a little and briefly, so that an
    /// upstream ending its body as it should leaves its connection
    /// reusable, and one that keeps sending costs nothing.
    async fn drain_after_end(&mut self) {
        let body = &mut self.body;
        let drain = async move {
            let mut drained = 0;
            while drained <= MAX_AFTER_END {
                match body.frame().await {
                    Some(Ok(frame)) => drained += frame.data_ref().map_or(0, |data| data.len()),
                    _ => return,
                }
            }
        };
        let _ = tokio::time::timeout(AFTER_END_WAIT, drain).await;
        self.ended = true;
    }
}

/// Why a body could not be read whole.
enum Read {
    /// It went on past this many bytes.
    TooLong(usize),
    /// The connection failed.
    Failed(BoxError),
}

/// A body, if it ends within `limit` bytes; what was read of it otherwise
/// is dropped as soon as it is over.
async fn read_at_most(mut body: Body, limit: usize) -> Result<Bytes, Read> {
    let mut bytes = bytes::BytesMut::new();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(Read::Failed)?;
        if let Ok(data) = frame.into_data() {
            if bytes.len() + data.len() > limit {
                return Err(Read::TooLong(limit));
            }
            bytes.extend_from_slice(&data);
        }
    }
    Ok(bytes.freeze())
}

/// The `anthropic-beta` header to forward, if it is a valid header value.
fn beta_header(betas: Option<&str>) -> Option<HeaderValue> {
    HeaderValue::from_str(betas?).ok()
}

/// The endpoint URL as a request target. Only `http` and `https` with a
/// host are accepted.
fn parse_endpoint(url: &str) -> anyhow::Result<Uri> {
    let uri: Uri = url.parse()?;
    match (uri.scheme_str(), uri.host()) {
        (Some("http" | "https"), Some(host)) if !host.is_empty() => Ok(uri),
        _ => bail!("expected http:// or https:// and a host"),
    }
}

/// TLS as browsers do it: rustls with the platform's certificate roots and
/// checks (revocation where the platform has it), HTTP/2 offered by ALPN.
fn tls_config() -> anyhow::Result<rustls::ClientConfig> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let verifier = rustls_platform_verifier::Verifier::new(provider.clone())?;
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier))
        .with_no_client_auth())
}

/// An error's message with its causes, without the key. hyper's errors
/// never name the URL, which can name internal hosts the client has no
/// business knowing.
fn error_text(e: &(dyn std::error::Error + 'static), key: Option<&str>) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text = format!("{text}: {s}");
        source = s.source();
    }
    redact(key, &text)
}

/// A `Retry-After` value as the wait it asks for: delay-seconds, or an
/// HTTP-date (RFC 9110 §10.2.3), of which a past one means "now". `None`
/// when it is neither.
pub fn retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if let Ok(seconds) = value.parse::<f64>() {
        // `try_`: a negative, infinite or absurdly large value is ignored
        // rather than a panic.
        return Duration::try_from_secs_f64(seconds).ok();
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

/// `text` without the provider key, should an upstream echo it back.
fn redact(key: Option<&str>, text: &str) -> String {
    match key {
        Some(key) if key.len() >= 8 => text.replace(key, "[redacted]"),
        _ => text.to_string(),
    }
}

/// The message of an error body in either format, or the body's start.
fn error_message(body: &[u8]) -> String {
    let value: Option<serde_json::Value> = serde_json::from_slice(body).ok();
    let message = value
        .as_ref()
        .and_then(|v| {
            v["error"]["message"]
                .as_str()
                .or_else(|| v["message"].as_str())
        })
        .map(str::to_string)
        .unwrap_or_else(|| String::from_utf8_lossy(body).into_owned());
    let mut message: String = message.chars().take(MAX_ERROR_TEXT).collect();
    if message.is_empty() {
        message = "no error message".into();
    }
    message
}

/// Reads `T` from JSON text; an error names the field that failed, as a
/// path (`choices[0].message.tool_calls`), so that an operator can tell
/// which upstream quirk broke an answer.
pub fn from_json_named<T: serde::de::DeserializeOwned>(data: &[u8]) -> Result<T, String> {
    // The path is only needed to name what broke: tracking it through every
    // field took a plain answer's parse from about 3.4 to 5 µs (bench/profile
    // at c=16, parse_answer's share), and it runs on every stream event too.
    // So a well-formed answer is read without it, and only a failed one is
    // read again to find the field.
    if let Ok(value) = serde_json::from_slice(data) {
        return Ok(value);
    }
    let mut deserializer = serde_json::Deserializer::from_slice(data);
    serde_path_to_error::deserialize(&mut deserializer).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        if path.is_empty() || path == "." {
            inner.to_string()
        } else {
            format!("at `{path}`: {inner}")
        }
    })
}

/// Parses a non-streamed answer in `format`, and checks it is one a client
/// can be given (an OpenAI answer has a choice).
pub fn parse_answer(format: Format, bytes: &[u8]) -> Result<Response, ProviderError> {
    let mut answer = match format {
        Format::OpenAi => from_json_named(bytes).map(Response::OpenAi),
        Format::Anthropic => from_json_named(bytes).map(Response::Anthropic),
    }
    .map_err(ProviderError::Malformed)?;
    answer.normalize()?;
    Ok(answer)
}

/// Parses one SSE payload; `None` for the OpenAI `[DONE]` marker and blank
/// keep-alives.
pub fn parse_event(format: Format, data: &str) -> Result<Option<Event>, ProviderError> {
    let data = data.trim();
    if data.is_empty() || data == "[DONE]" {
        return Ok(None);
    }
    let malformed = |e: String| ProviderError::Malformed(format!("stream event: {e}"));
    match format {
        Format::OpenAi => {
            // Straight into the chunk type: going through a `Value` first
            // parsed every event twice. An error event has no `id`, so it
            // fails here, or lands in the unmodelled fields.
            let parsed = from_json_named::<openai::ChatCompletionChunk>(data.as_bytes());
            if let Ok(chunk) = &parsed
                && !chunk.extra.contains_key("error")
            {
                return parsed
                    .map(|chunk| Some(Event::OpenAi(chunk)))
                    .map_err(malformed);
            }
            let value: serde_json::Value =
                serde_json::from_str(data).map_err(|e| malformed(e.to_string()))?;
            if let Some(error) = value.get("error") {
                return Err(ProviderError::Status {
                    status: 502,
                    message: error["message"]
                        .as_str()
                        .unwrap_or("stream error")
                        .to_string(),
                    retry_after: None,
                });
            }
            parsed
                .map(|chunk| Some(Event::OpenAi(chunk)))
                .map_err(malformed)
        }
        Format::Anthropic => {
            let event: anthropic::StreamEvent =
                from_json_named(data.as_bytes()).map_err(malformed)?;
            if let anthropic::StreamEvent::Error { error, .. } = &event {
                return Err(ProviderError::Status {
                    status: error.kind.http_status(),
                    message: error.message.clone(),
                    retry_after: None,
                });
            }
            Ok(Some(Event::Anthropic(event)))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn openai_stream_events_are_chunks_or_errors() {
        let chunk = r#"{"id":"c1","object":"chat.completion.chunk","created":1,"model":"m",
            "choices":[{"index":0,"delta":{"content":"hi"},"finish_reason":null}]}"#;
        match parse_event(Format::OpenAi, chunk) {
            Ok(Some(Event::OpenAi(c))) => assert_eq!(c.choices.len(), 1),
            other => panic!("{other:?}"),
        }
        assert!(matches!(parse_event(Format::OpenAi, " [DONE] "), Ok(None)));
        // An error event, alone or next to chunk fields.
        for error in [
            r#"{"error":{"message":"overloaded","type":"server_error"}}"#,
            r#"{"id":"c1","choices":[],"error":{"message":"overloaded"}}"#,
        ] {
            match parse_event(Format::OpenAi, error) {
                Err(ProviderError::Status {
                    status: 502,
                    message,
                    ..
                }) => assert_eq!(message, "overloaded"),
                other => panic!("{error}: {other:?}"),
            }
        }
        for malformed in ["{not json", r#"{"choices":5}"#] {
            assert!(
                matches!(
                    parse_event(Format::OpenAi, malformed),
                    Err(ProviderError::Malformed(_))
                ),
                "{malformed}"
            );
        }
    }

    #[test]
    fn a_malformed_answer_names_its_field() {
        let body = br#"{"id":"c","model":"m","choices":[{"index":0,
            "message":{"role":"assistant","content":"hi","tool_calls":[{"id":"t","function":5}]}}]}"#;
        match parse_answer(Format::OpenAi, body) {
            Err(ProviderError::Malformed(text)) => {
                assert!(
                    text.contains("choices[0].message.tool_calls[0].function"),
                    "{text}"
                )
            }
            other => panic!("{other:?}"),
        }
        let event = r#"{"type":"message_delta","delta":{},"usage":{"output_tokens":"lots"}}"#;
        match parse_event(Format::Anthropic, event) {
            Err(ProviderError::Malformed(text)) => assert!(text.contains("usage"), "{text}"),
            other => panic!("{other:?}"),
        }
        // An answer without a choice cannot be given to a client.
        match parse_answer(Format::OpenAi, br#"{"id":"c","model":"m","choices":[]}"#) {
            Err(ProviderError::Malformed(text)) => assert!(text.contains("choices"), "{text}"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn retry_after_takes_seconds_or_an_http_date() {
        let now = httpdate::parse_http_date("Wed, 21 Oct 2015 07:28:00 GMT").unwrap();
        let secs = Duration::from_secs;
        assert_eq!(retry_after("120", now), Some(secs(120)));
        assert_eq!(retry_after(" 0 ", now), Some(Duration::ZERO));
        assert_eq!(retry_after("1.5", now), Some(Duration::from_millis(1500)));
        assert_eq!(
            retry_after("Wed, 21 Oct 2015 07:28:30 GMT", now),
            Some(secs(30))
        );
        // The two obsolete date formats RFC 9110 says recipients must accept.
        assert_eq!(
            retry_after("Wednesday, 21-Oct-15 07:29:00 GMT", now),
            Some(secs(60))
        );
        assert_eq!(retry_after("Wed Oct 21 07:28:10 2015", now), Some(secs(10)));
        // A date already past: retry now.
        assert_eq!(
            retry_after("Wed, 21 Oct 2015 07:00:00 GMT", now),
            Some(Duration::ZERO)
        );
        for ignored in ["-1", "NaN", "inf", "1e300", "soon", "", "21 Oct 2015"] {
            assert_eq!(retry_after(ignored, now), None, "{ignored:?}");
        }
    }
}

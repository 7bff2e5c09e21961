//! Providers reached over HTTP: any OpenAI-compatible API, and Anthropic's.

use std::time::{Duration, SystemTime};

use anyhow::{Context, bail};
use bytes::Bytes;
use futures::StreamExt;
use reqwest::header::{CONTENT_TYPE, HeaderMap, HeaderValue};

use super::wire::sse::SseParser;
use super::wire::{anthropic, openai};
use super::{Event, Format, ProviderError, Reply, Request, Response};
use crate::config::{ProviderConfig, ProviderKind};

/// The Anthropic API version the adapter speaks.
pub const ANTHROPIC_VERSION: &str = "2023-06-01";
/// Most of an upstream error body quoted in an error message.
const MAX_ERROR_TEXT: usize = 512;

/// An HTTP provider with its own connection pool.
pub struct HttpProvider {
    name: String,
    format: Format,
    /// Parsed once: parsing and IDNA-checking it on every call cost about
    /// 5 µs a request.
    endpoint: reqwest::Url,
    client: reqwest::Client,
    /// The key, kept only to redact it from anything the upstream echoes.
    key: Option<String>,
    timeout: Duration,
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
        let key = match &config.api_key_env {
            Some(var) => match std::env::var(var) {
                Ok(key) if !key.is_empty() => Some(key),
                _ => bail!("{at}.api_key_env: the environment variable {var} is not set"),
            },
            None => None,
        };
        let (format, endpoint) = match config.kind {
            ProviderKind::Openai => (Format::OpenAi, format!("{base}/chat/completions")),
            ProviderKind::Anthropic => (Format::Anthropic, format!("{base}/v1/messages")),
            ProviderKind::Simulated => bail!("{at}: a simulated provider is not an HTTP provider"),
        };
        let endpoint = reqwest::Url::parse(&endpoint)
            .with_context(|| format!("{at}.base_url: not a valid URL"))?;
        let mut headers = HeaderMap::new();
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
        let client = reqwest::Client::builder()
            .default_headers(headers)
            .connect_timeout(Duration::from_millis(config.connect_timeout_ms))
            .read_timeout(Duration::from_millis(config.timeout_ms))
            .tcp_nodelay(true)
            // A provider API that redirects is misconfigured; following it
            // would send the request (and its key) somewhere unplanned.
            .redirect(reqwest::redirect::Policy::none())
            .pool_idle_timeout(Duration::from_secs(90))
            .pool_max_idle_per_host(256)
            .build()?;
        Ok(HttpProvider {
            name: name.to_string(),
            format,
            endpoint,
            client,
            key,
            timeout: Duration::from_millis(config.timeout_ms),
        })
    }

    /// The wire format.
    pub fn format(&self) -> Format {
        self.format
    }

    /// Sends the request and reads the answer (or the start of the stream).
    pub async fn send(&self, request: Request) -> Result<Reply, ProviderError> {
        let stream = request.is_stream();
        let body = match &request {
            Request::OpenAi(r) => serde_json::to_vec(r),
            Request::Anthropic(r) => serde_json::to_vec(r),
        }
        .map_err(|e| ProviderError::Malformed(format!("cannot encode the request: {e}")))?;
        let sent = self
            .client
            .post(self.endpoint.clone())
            .header(CONTENT_TYPE, HeaderValue::from_static("application/json"))
            .body(body)
            .send();
        let response = tokio::time::timeout(self.timeout, sent)
            .await
            .map_err(|_| ProviderError::Timeout(self.timeout))?
            .map_err(|e| self.transport_error(e))?;
        let status = response.status();
        if !status.is_success() {
            return Err(self.status_error(response).await);
        }
        if stream {
            return Ok(Reply::Stream(self.events(response)));
        }
        let bytes = tokio::time::timeout(self.timeout, response.bytes())
            .await
            .map_err(|_| ProviderError::Timeout(self.timeout))?
            .map_err(|e| body_error(e, self.timeout, self.key.as_deref()))?;
        let parsed = match self.format {
            Format::OpenAi => serde_json::from_slice(&bytes).map(Response::OpenAi),
            Format::Anthropic => serde_json::from_slice(&bytes).map(Response::Anthropic),
        };
        parsed
            .map(|r| Reply::Complete(Box::new(r)))
            .map_err(|e| ProviderError::Malformed(self.redact(&format!("{e}"))))
    }

    fn events(&self, response: reqwest::Response) -> super::EventStream {
        let format = self.format;
        let key = self.key.clone();
        let timeout = self.timeout;
        let mut parser = SseParser::new();
        let mut bytes = response.bytes_stream();
        let stream = async_stream(move |tx| async move {
            loop {
                let chunk: Bytes = match bytes.next().await {
                    Some(Ok(chunk)) => chunk,
                    Some(Err(e)) => {
                        let _ = tx.send(Err(body_error(e, timeout, key.as_deref()))).await;
                        return;
                    }
                    None => break,
                };
                let events = match parser.feed(&chunk) {
                    Ok(events) => events,
                    Err(e) => {
                        let _ = tx.send(Err(ProviderError::Malformed(e.to_string()))).await;
                        return;
                    }
                };
                for event in events {
                    match parse_event(format, &event.data) {
                        Ok(Some(event)) => {
                            if tx.send(Ok(event)).await.is_err() {
                                return;
                            }
                        }
                        Ok(None) => {}
                        Err(e) => {
                            let _ = tx.send(Err(e)).await;
                            return;
                        }
                    }
                }
            }
            if let Some(event) = parser.finish()
                && let Ok(Some(event)) = parse_event(format, &event.data)
            {
                let _ = tx.send(Ok(event)).await;
            }
        });
        Box::pin(stream)
    }

    /// An error of the request before any response: the upstream is
    /// unreachable (503 to the client).
    fn transport_error(&self, e: reqwest::Error) -> ProviderError {
        if e.is_timeout() {
            return ProviderError::Timeout(self.timeout);
        }
        ProviderError::Connect(error_text(e, self.key.as_deref()))
    }

    async fn status_error(&self, response: reqwest::Response) -> ProviderError {
        let status = response.status().as_u16();
        let retry_after = response
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| retry_after(v, SystemTime::now()));
        let body = response.bytes().await.unwrap_or_default();
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

/// An error reading a body after the upstream answered 200: the answer
/// broke off (502 to the client), unless it is a read timeout.
fn body_error(e: reqwest::Error, timeout: Duration, key: Option<&str>) -> ProviderError {
    if e.is_timeout() {
        return ProviderError::Timeout(timeout);
    }
    ProviderError::Broken(error_text(e, key))
}

/// An error's message with its causes, without the URL (it can name
/// internal hosts the client has no business knowing) or the key.
fn error_text(e: reqwest::Error, key: Option<&str>) -> String {
    let e = e.without_url();
    let mut text = e.to_string();
    let mut source = std::error::Error::source(&e);
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

/// Parses one SSE payload; `None` for the OpenAI `[DONE]` marker and blank
/// keep-alives.
fn parse_event(format: Format, data: &str) -> Result<Option<Event>, ProviderError> {
    let data = data.trim();
    if data.is_empty() || data == "[DONE]" {
        return Ok(None);
    }
    let malformed = |e: serde_json::Error| ProviderError::Malformed(format!("stream event: {e}"));
    match format {
        Format::OpenAi => {
            let value: serde_json::Value = serde_json::from_str(data).map_err(malformed)?;
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
            let chunk: openai::ChatCompletionChunk =
                serde_json::from_value(value).map_err(malformed)?;
            Ok(Some(Event::OpenAi(chunk)))
        }
        Format::Anthropic => {
            let event: anthropic::StreamEvent = serde_json::from_str(data).map_err(malformed)?;
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

#[cfg(test)]
mod tests {
    use super::*;

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

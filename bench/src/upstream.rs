//! A fast local upstream speaking the OpenAI chat-completions wire format.
//!
//! `POST /v1/chat/completions` (or `/chat/completions`) answers a fixed small
//! completion with `usage`; with `"stream": true` it answers the same text as
//! server-sent events, ending with a usage chunk when
//! `stream_options.include_usage` is true, then `data: [DONE]`. The model name
//! is echoed back. Accepted sockets set TCP_NODELAY; the runtime is tokio's
//! multi-threaded one with one worker per core.
//!
//! A planner's request (instructions asking for `"subtasks"`, as the seed
//! planner's do) gets a small valid plan, and a reviewer's (`"verdict"`) an
//! acceptance, so plan mode and its plan cache work through it.
//!
//! With `--fail-every N` it is a failing endpoint: every Nth chat request
//! (counted across connections, so exactly 1 in N) gets `--fail-status`
//! (default 500) and an OpenAI error body instead. `GET /stats` answers
//! `{"requests": R, "failed": F}`, the chat requests so far and how many of
//! them failed, so the driver can count the failures a gateway absorbed.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::pin::Pin;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Frame, SizeHint};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::header::{CACHE_CONTROL, CONTENT_TYPE, HeaderValue};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde::Deserialize;

/// The answer, split into the content deltas of a stream.
const PIECES: [&str; 6] = [
    "Fixed",
    ": the loop",
    " now stops",
    " at `len - 1`",
    ", and a test",
    " covers it.",
];
/// The answer to a planner (a request whose instructions ask for
/// `"subtasks"`, as the seed planner's do): a small valid plan, as a JSON
/// string's contents.
const PLAN: &str = r#"{\"summary\": \"Design, implement and test the plugin system\", \"subtasks\": [{\"id\": \"design\", \"title\": \"Design the change\", \"kind\": \"design\", \"instructions\": \"Describe the components and interfaces.\", \"depends_on\": []}, {\"id\": \"code\", \"title\": \"Implement it\", \"kind\": \"code\", \"instructions\": \"Implement the design.\", \"depends_on\": [\"design\"]}, {\"id\": \"tests\", \"title\": \"Test it\", \"kind\": \"tests\", \"instructions\": \"Write tests for the interfaces.\", \"depends_on\": [\"design\"]}]}"#;
/// The answer to a reviewer (instructions asking for a `"verdict"`).
const VERDICT: &str = r#"{\"verdict\": \"accept\", \"feedback\": \"\"}"#;
const PROMPT_TOKENS: u32 = 18;
const COMPLETION_TOKENS: u32 = 12;
const CREATED: u64 = 1_700_000_000;

/// Chat requests received.
static REQUESTS: AtomicU64 = AtomicU64::new(0);
/// Chat requests answered with the injected failure.
static FAILED: AtomicU64 = AtomicU64::new(0);
/// `(every, status)`: fail every `every`th chat request with `status`.
static FAULT: OnceLock<(u64, StatusCode)> = OnceLock::new();

/// `pointsman-bench upstream [--listen ADDR] [--threads N] [--fail-every N
/// [--fail-status S]]`: prints `listening <addr>` on standard output once
/// bound, then serves forever.
pub fn main(args: &[String]) -> crate::Result<()> {
    let mut listen = "127.0.0.1:0".to_string();
    let mut threads = std::thread::available_parallelism().map_or(2, |n| n.get());
    let mut fail_every = 0u64;
    let mut fail_status = StatusCode::INTERNAL_SERVER_ERROR;
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        let mut value = || it.next().ok_or_else(|| format!("{arg} needs a value"));
        match arg.as_str() {
            "--listen" => listen = value()?.clone(),
            "--threads" => threads = value()?.parse()?,
            "--fail-every" => fail_every = value()?.parse()?,
            "--fail-status" => fail_status = StatusCode::from_u16(value()?.parse()?)?,
            other => return Err(format!("upstream: unknown argument {other}").into()),
        }
    }
    if fail_every > 0 {
        let _ = FAULT.set((fail_every, fail_status));
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads.max(1))
        .enable_io()
        .build()?;
    runtime.block_on(serve(&listen))
}

async fn serve(listen: &str) -> crate::Result<()> {
    let listener = tokio::net::TcpListener::bind(listen).await?;
    println!("listening {}", listener.local_addr()?);
    use std::io::Write;
    std::io::stdout().flush()?;
    loop {
        let (stream, _) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                // Out of file descriptors and the like: keep serving.
                eprintln!("accept: {e}");
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        tokio::spawn(async move {
            let _ = http1::Builder::new()
                .keep_alive(true)
                .serve_connection(TokioIo::new(stream), service_fn(handle))
                .await;
        });
    }
}

#[derive(Deserialize)]
struct ChatRequest<'a> {
    #[serde(borrow, default)]
    model: Option<std::borrow::Cow<'a, str>>,
    #[serde(default)]
    stream: bool,
    #[serde(default)]
    stream_options: Option<StreamOptions>,
}

#[derive(Deserialize)]
struct StreamOptions {
    #[serde(default)]
    include_usage: Option<bool>,
}

async fn handle(request: Request<Incoming>) -> Result<Response<Chunks>, Infallible> {
    let path = request.uri().path();
    let chat = path == "/v1/chat/completions" || path == "/chat/completions";
    if request.method() == Method::GET && (path == "/v1/models" || path == "/models") {
        return Ok(json(StatusCode::OK, Bytes::from_static(MODELS)));
    }
    if request.method() == Method::GET && path == "/stats" {
        let stats = format!(
            r#"{{"requests":{},"failed":{}}}"#,
            REQUESTS.load(Ordering::Relaxed),
            FAILED.load(Ordering::Relaxed)
        );
        return Ok(json(StatusCode::OK, Bytes::from(stats)));
    }
    if request.method() != Method::POST || !chat {
        return Ok(error(StatusCode::NOT_FOUND, "no such endpoint"));
    }
    let body = match request.into_body().collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(_) => return Ok(error(StatusCode::BAD_REQUEST, "cannot read the body")),
    };
    let n = REQUESTS.fetch_add(1, Ordering::Relaxed) + 1;
    if let Some(&(every, status)) = FAULT.get()
        && n.is_multiple_of(every)
    {
        FAILED.fetch_add(1, Ordering::Relaxed);
        return Ok(failure(status));
    }
    let parsed: ChatRequest = match serde_json::from_slice(&body) {
        Ok(parsed) => parsed,
        Err(_) => {
            return Ok(error(
                StatusCode::BAD_REQUEST,
                "the body is not a chat request",
            ));
        }
    };
    // A JSON string literal, quotes included.
    let model = serde_json::to_string(parsed.model.as_deref().unwrap_or("bench-model"))
        .unwrap_or_else(|_| "\"bench-model\"".into());
    // A planner's or a reviewer's request: the key it asks for, quoted
    // inside the JSON string of its instructions.
    let asks = |key: &[u8]| body.windows(key.len()).any(|w| w == key);
    let text: String = if asks(br#"\"subtasks\""#) {
        PLAN.to_string()
    } else if asks(br#"\"verdict\""#) {
        VERDICT.to_string()
    } else {
        PIECES.concat()
    };
    if !parsed.stream {
        let body = format!(
            r#"{{"id":"chatcmpl-bench","object":"chat.completion","created":{CREATED},"model":{model},"choices":[{{"index":0,"message":{{"role":"assistant","content":"{text}"}},"finish_reason":"stop"}}],"usage":{{"prompt_tokens":{PROMPT_TOKENS},"completion_tokens":{COMPLETION_TOKENS},"total_tokens":{}}}}}"#,
            PROMPT_TOKENS + COMPLETION_TOKENS
        );
        return Ok(json(StatusCode::OK, Bytes::from(body)));
    }
    let include_usage = parsed
        .stream_options
        .and_then(|o| o.include_usage)
        .unwrap_or(false);
    let head = format!(
        r#"data: {{"id":"chatcmpl-bench","object":"chat.completion.chunk","created":{CREATED},"model":{model},"choices":"#
    );
    let mut chunks = VecDeque::with_capacity(PIECES.len() + 4);
    chunks.push_back(Bytes::from(format!(
        r#"{head}[{{"index":0,"delta":{{"role":"assistant","content":""}},"finish_reason":null}}]}}

"#
    )));
    for piece in PIECES {
        chunks.push_back(Bytes::from(format!(
            r#"{head}[{{"index":0,"delta":{{"content":"{piece}"}},"finish_reason":null}}]}}

"#
        )));
    }
    chunks.push_back(Bytes::from(format!(
        r#"{head}[{{"index":0,"delta":{{}},"finish_reason":"stop"}}]}}

"#
    )));
    if include_usage {
        chunks.push_back(Bytes::from(format!(
            r#"{head}[],"usage":{{"prompt_tokens":{PROMPT_TOKENS},"completion_tokens":{COMPLETION_TOKENS},"total_tokens":{}}}}}

"#,
            PROMPT_TOKENS + COMPLETION_TOKENS
        )));
    }
    chunks.push_back(Bytes::from_static(b"data: [DONE]\n\n"));
    let mut response = Response::new(Chunks {
        chunks,
        exact: false,
    });
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    Ok(response)
}

const MODELS: &[u8] = br#"{"object":"list","data":[{"id":"bench-model","object":"model","created":1700000000,"owned_by":"bench"}]}"#;

fn json(status: StatusCode, body: Bytes) -> Response<Chunks> {
    let mut response = Response::new(Chunks {
        chunks: VecDeque::from([body]),
        exact: true,
    });
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

/// The injected failure, worded as OpenAI words a server error.
fn failure(status: StatusCode) -> Response<Chunks> {
    let body = format!(
        r#"{{"error":{{"message":"injected fault: HTTP {}","type":"server_error","param":null,"code":null}}}}"#,
        status.as_u16()
    );
    json(status, Bytes::from(body))
}

fn error(status: StatusCode, message: &str) -> Response<Chunks> {
    let body = format!(r#"{{"error":{{"message":"{message}","type":"invalid_request_error"}}}}"#);
    json(status, Bytes::from(body))
}

/// A body of ready chunks: one frame each (chunked encoding, as a provider
/// streams), or one exact-length body.
pub struct Chunks {
    chunks: VecDeque<Bytes>,
    exact: bool,
}

impl http_body::Body for Chunks {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        Poll::Ready(self.chunks.pop_front().map(|c| Ok(Frame::data(c))))
    }

    fn is_end_stream(&self) -> bool {
        self.chunks.is_empty()
    }

    fn size_hint(&self) -> SizeHint {
        if self.exact {
            SizeHint::with_exact(self.chunks.iter().map(|c| c.len() as u64).sum())
        } else {
            SizeHint::default()
        }
    }
}

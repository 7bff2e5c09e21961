//! Fault injection: the real daemon against local upstreams that, on
//! command, answer 5xx, 408, 409, 429 with and without `Retry-After`, a 400
//! or 422 that must not be retried, a 401, 403 or 404 that refuses the
//! gateway's key or model (not retried on that endpoint, but the next one
//! is tried), hang, reset the connection, send malformed JSON, stall or cut
//! a stream before or after its first event, or are slow.
//!
//! The fault matrix crosses every fault with both client APIs, streaming or
//! not, both upstream formats, and three chains: the safe route (`"model":
//! "auto"`: primary → backup → escalation), a named model (primary →
//! escalation), and a chain whose every model is faulty. For each case it
//! checks who answered (or the error, in the client's format), the attempts
//! per upstream against the retry limits, and that `x-pointsman-attempts`
//! equals the requests the upstreams received, and that no answer quotes a
//! provider key. Further tests cover the breakers (open, skipped, half-open
//! probe, closed) for every fault, the retry budget, `Retry-After` (seconds
//! and HTTP-dates), deadlines, the two balancing strategies, and a pool
//! whose one endpoint has a wrong key.

mod common;

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Once};
use std::time::{Duration, Instant, SystemTime};

use futures::StreamExt;
use pointsman::config::Config;
use pointsman_test_support::upstream::{
    ANTHROPIC_KEY, OPENAI_KEY, RecordedRequest, Reply, Upstream, UpstreamConfig,
};
use serde_json::{Value, json};

use common::Daemon;

/// Per-attempt timeout of every provider.
const TIMEOUT_MS: u64 = 500;
/// Time a stream may take to its first event (under the provider timeout,
/// so that a stall before the first event is caught by this one).
const FIRST_TOKEN_MS: u64 = 400;
/// Retries per model in the fault matrix.
const MAX_RETRIES: u32 = 2;
/// How late a slow upstream answers (well under the timeouts).
const SLOW: Duration = Duration::from_millis(150);
/// Requests of the matrix in flight at once.
const PARALLEL: usize = 24;

// ---------------------------------------------------------------------------
// Configuration

/// The format a provider speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Wire {
    OpenAi,
    Anthropic,
}

/// `[resilience]` knobs, small enough for a fast suite.
#[derive(Clone, Debug)]
struct Knobs {
    total_deadline_ms: u64,
    max_retries: u32,
    backoff_base_ms: u64,
    backoff_max_ms: u64,
    budget_ratio: f64,
    budget_reserve: u32,
    escalation: Option<&'static str>,
    min_calls: u32,
    cooldown_ms: u64,
}

impl Default for Knobs {
    fn default() -> Self {
        Knobs {
            total_deadline_ms: 20_000,
            max_retries: MAX_RETRIES,
            backoff_base_ms: 5,
            backoff_max_ms: 50,
            // Every request may retry: the matrix counts exact attempts.
            budget_ratio: 1.0,
            budget_reserve: 100_000,
            escalation: None,
            // Breakers stay closed unless a test lowers this.
            min_calls: 1_000_000,
            cooldown_ms: 200,
        }
    }
}

impl Knobs {
    fn toml(&self) -> String {
        let escalation = self
            .escalation
            .map(|m| format!("escalation_model = \"{m}\"\n"))
            .unwrap_or_default();
        format!(
            "[resilience]\ntotal_deadline_ms = {}\nfirst_token_timeout_ms = {FIRST_TOKEN_MS}\n\
             max_retries = {}\nbackoff_base_ms = {}\nbackoff_max_ms = {}\n\
             retry_budget_ratio = {}\nretry_budget_reserve = {}\n{escalation}\n\
             [resilience.breaker]\nwindow_ms = 60000\nmin_calls = {}\nfailure_rate = 0.5\n\
             cooldown_ms = {}\nmax_cooldown_ms = 5000\nhalf_open_probes = 1\n",
            self.total_deadline_ms,
            self.max_retries,
            self.backoff_base_ms,
            self.backoff_max_ms,
            self.budget_ratio,
            self.budget_reserve,
            self.min_calls,
            self.cooldown_ms,
        )
    }
}

/// Provider `name` on `upstream`, speaking `wire`.
fn provider(name: &str, upstream: &Upstream, wire: Wire) -> String {
    let url = match wire {
        Wire::OpenAi => upstream.openai_url(),
        Wire::Anthropic => upstream.url(),
    };
    provider_at(name, &url, wire)
}

/// Provider `name` at base URL `url`, speaking `wire`.
fn provider_at(name: &str, url: &str, wire: Wire) -> String {
    let (kind, key) = match wire {
        Wire::OpenAi => ("openai", "POINTSMAN_TEST_OPENAI_KEY"),
        Wire::Anthropic => ("anthropic", "POINTSMAN_TEST_ANTHROPIC_KEY"),
    };
    format!(
        "[providers.{name}]\nkind = \"{kind}\"\nbase_url = \"{url}\"\napi_key_env = \"{key}\"\n\
         timeout_ms = {TIMEOUT_MS}\nconnect_timeout_ms = 200\n\n"
    )
}

/// Catalog model `id` on `provider`, with `extra` lines (balance, endpoints).
fn model(id: &str, provider: &str, extra: &str) -> String {
    format!(
        "[[models]]\nid = \"{id}\"\nprovider = \"{provider}\"\ninput_usd_per_mtok = 1.0\n\
         output_usd_per_mtok = 2.0\ncontext_window = 100000\n{extra}\n"
    )
}

/// A daemon config: no router policy (every `auto` request is served the
/// safe route), named models served as named.
fn config(safe_route: &str, knobs: &Knobs, providers: &str, models: &str) -> Config {
    static KEYS: Once = Once::new();
    // SAFETY: every test calls this before starting anything that reads the
    // environment, and `Once` makes the others wait for the only write.
    KEYS.call_once(|| unsafe {
        std::env::set_var("POINTSMAN_TEST_OPENAI_KEY", OPENAI_KEY);
        std::env::set_var("POINTSMAN_TEST_ANTHROPIC_KEY", ANTHROPIC_KEY);
    });
    let text = format!(
        "baseline_model = \"{baseline}\"\npolicy_overrides_named_models = false\n\n\
         [policies]\nrouter = \"none\"\n\n[safe_route]\n{safe_route}\n\n{resilience}\n\
         {providers}{models}",
        baseline = models.split('"').nth(1).expect("at least one model"),
        resilience = knobs.toml(),
    );
    Config::parse(&text).unwrap_or_else(|e| panic!("{e:#}\n{text}"))
}

// ---------------------------------------------------------------------------
// The client side

/// A client API of the daemon.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Api {
    OpenAi,
    Anthropic,
}

/// Both client APIs, for tests that alternate.
const API: [Api; 2] = [Api::OpenAi, Api::Anthropic];

/// The daemon's answer, read to the end.
#[derive(Debug)]
struct Answer {
    status: u16,
    headers: reqwest::header::HeaderMap,
    body: String,
    elapsed: Duration,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// `x-pointsman-attempts`.
    fn attempts(&self) -> Result<u32, String> {
        self.header("x-pointsman-attempts")
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| format!("no x-pointsman-attempts header: {self:?}"))
    }

    fn json(&self) -> Result<Value, String> {
        serde_json::from_str(&self.body).map_err(|e| format!("{e}: {}", self.body))
    }
}

/// A client of one daemon.
struct Gateway {
    url: String,
    http: reqwest::Client,
}

impl Gateway {
    fn new(daemon: &Daemon) -> Self {
        Gateway {
            url: daemon.url.clone(),
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(30))
                .build()
                .unwrap(),
        }
    }

    /// Asks `model` to answer `text` on `api`.
    async fn ask(
        &self,
        api: Api,
        model: &str,
        text: &str,
        stream: bool,
        headers: &[(&str, &str)],
    ) -> Answer {
        let mut request = self.request(api, model, text, stream);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let started = Instant::now();
        let response = request.send().await.expect("the daemon answers");
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let body = response.text().await.expect("the daemon ends its body");
        Answer {
            status,
            headers,
            body,
            elapsed: started.elapsed(),
        }
    }

    /// The request that asks `model` to answer `text` on `api`.
    fn request(&self, api: Api, model: &str, text: &str, stream: bool) -> reqwest::RequestBuilder {
        let (path, body) = match api {
            Api::OpenAi => (
                "/v1/chat/completions",
                json!({"model": model, "stream": stream,
                       "messages": [{"role": "user", "content": text}]}),
            ),
            Api::Anthropic => (
                "/v1/messages",
                json!({"model": model, "stream": stream, "max_tokens": 64,
                       "messages": [{"role": "user", "content": text}]}),
            ),
        };
        self.http
            .post(format!("{}{path}", self.url))
            .header("anthropic-version", "2023-06-01")
            .bearer_auth("sk-client")
            .json(&body)
    }

    /// The breaker state and trips of `model`'s endpoint `index`.
    async fn breaker(&self, model: &str, index: usize) -> (String, u64) {
        let all: Value = self
            .http
            .get(format!("{}/v1/providers", self.url))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let entry = all["models"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["model"] == model)
            .unwrap_or_else(|| panic!("{model} missing from {all}"));
        let endpoint = &entry["endpoints"][index];
        (
            endpoint["breaker"].as_str().unwrap().to_string(),
            endpoint["trips"].as_u64().unwrap(),
        )
    }
}

/// `(event name, data)` of every SSE frame with data.
fn sse(body: &str) -> Vec<(String, String)> {
    body.split("\n\n")
        .filter_map(|frame| {
            let mut event = String::new();
            let mut data = None;
            for line in frame.lines() {
                if let Some(name) = line.strip_prefix("event: ") {
                    event = name.to_string();
                } else if let Some(d) = line.strip_prefix("data: ") {
                    data = Some(d.to_string());
                }
            }
            data.map(|d| (event, d))
        })
        .collect()
}

/// Checks a complete answer that echoes `marker`.
fn check_answer(api: Api, stream: bool, answer: &Answer, marker: &str) -> Result<(), String> {
    if answer.status != 200 {
        return Err(format!("status {}: {}", answer.status, answer.body));
    }
    let text = match (api, stream) {
        (Api::OpenAi, false) => answer.json()?["choices"][0]["message"]["content"]
            .as_str()
            .unwrap_or_default()
            .to_string(),
        (Api::Anthropic, false) => answer.json()?["content"][0]["text"]
            .as_str()
            .unwrap_or_default()
            .to_string(),
        (Api::OpenAi, true) => {
            let frames = sse(&answer.body);
            if frames.last().map(|(_, d)| d.as_str()) != Some("[DONE]") {
                return Err(format!("no [DONE] at the end: {}", answer.body));
            }
            let mut text = String::new();
            for (_, data) in &frames[..frames.len() - 1] {
                let chunk: Value =
                    serde_json::from_str(data).map_err(|e| format!("{e}: {data}"))?;
                if chunk.get("error").is_some() {
                    return Err(format!("an error in a complete stream: {}", answer.body));
                }
                text += chunk["choices"][0]["delta"]["content"]
                    .as_str()
                    .unwrap_or_default();
            }
            text
        }
        (Api::Anthropic, true) => {
            let frames = sse(&answer.body);
            if frames.last().map(|(e, _)| e.as_str()) != Some("message_stop")
                || frames.iter().any(|(e, _)| e == "error")
            {
                return Err(format!("not a complete stream: {}", answer.body));
            }
            let mut text = String::new();
            for (_, data) in &frames {
                let event: Value =
                    serde_json::from_str(data).map_err(|e| format!("{e}: {data}"))?;
                text += event["delta"]["text"].as_str().unwrap_or_default();
            }
            text
        }
    };
    if !text.contains(&format!("echo: {marker}")) {
        return Err(format!("the answer does not echo {marker}: {text:?}"));
    }
    Ok(())
}

/// Checks a stream that started, then broke: it ends with an error event in
/// the client's format, never with the format's clean end.
fn check_broken(api: Api, answer: &Answer) -> Result<(), String> {
    if answer.status != 200 {
        return Err(format!("status {}: {}", answer.status, answer.body));
    }
    let frames = sse(&answer.body);
    let (Some(first), Some(last)) = (frames.first(), frames.last()) else {
        return Err(format!("an empty stream: {:?}", answer.body));
    };
    let error: Value = serde_json::from_str(&last.1).map_err(|e| format!("{e}: {}", last.1))?;
    let fine = match api {
        Api::OpenAi => {
            let started: Value = serde_json::from_str(&first.1).unwrap_or_default();
            started["choices"].is_array()
                && error["error"]["message"].is_string()
                && !frames.iter().any(|(_, d)| d == "[DONE]")
        }
        Api::Anthropic => {
            first.0 == "message_start"
                && last.0 == "error"
                && error["type"] == "error"
                && error["error"]["message"].is_string()
                && !frames.iter().any(|(e, _)| e == "message_stop")
        }
    };
    if !fine {
        return Err(format!("not a broken stream: {}", answer.body));
    }
    Ok(())
}

/// Checks that no provider key reached the client, in the body or a header.
fn check_no_key(answer: &Answer) -> Result<(), String> {
    let headers = format!("{:?}", answer.headers);
    for key in [OPENAI_KEY, ANTHROPIC_KEY] {
        if answer.body.contains(key) || headers.contains(key) {
            return Err(format!("a provider key reached the client: {answer:?}"));
        }
    }
    Ok(())
}

/// The error a client should get: status, OpenAI type and code, Anthropic
/// type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct ErrorShape {
    status: u16,
    openai: (&'static str, Option<&'static str>),
    anthropic: &'static str,
}

const BAD_GATEWAY: ErrorShape = ErrorShape {
    status: 502,
    openai: ("api_error", Some("upstream_error")),
    anthropic: "api_error",
};
const UNAVAILABLE: ErrorShape = ErrorShape {
    status: 503,
    openai: ("api_error", Some("overloaded")),
    anthropic: "overloaded_error",
};
const TIMED_OUT: ErrorShape = ErrorShape {
    status: 504,
    openai: ("api_error", Some("timeout")),
    anthropic: "api_error",
};
const RATE_LIMITED: ErrorShape = ErrorShape {
    status: 429,
    openai: ("rate_limit_error", Some("rate_limit_exceeded")),
    anthropic: "rate_limit_error",
};
const INVALID: ErrorShape = ErrorShape {
    status: 400,
    openai: ("invalid_request_error", None),
    anthropic: "invalid_request_error",
};

/// Checks an error response in the client's format (a JSON body, streaming
/// request or not: nothing was streamed yet).
fn check_error(api: Api, answer: &Answer, shape: ErrorShape) -> Result<(), String> {
    let body = answer.json()?;
    let fine = answer.status == shape.status
        && match api {
            Api::OpenAi => {
                body["error"]["message"].is_string()
                    && body["error"]["type"] == shape.openai.0
                    && body["error"]["code"].as_str() == shape.openai.1
            }
            Api::Anthropic => {
                body["type"] == "error"
                    && body["error"]["message"].is_string()
                    && body["error"]["type"] == shape.anthropic
            }
        };
    if !fine {
        return Err(format!(
            "expected {shape:?}, got {}: {}",
            answer.status, answer.body
        ));
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// Faults

/// What an upstream does to a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Fault {
    /// A 5xx, 408 or 409: retried, then the next model.
    Status(u16),
    /// 429 without `Retry-After`: retried with backoff.
    RateLimited,
    /// 429 with `Retry-After: 0`: retried at once.
    RateLimitedRetryNow,
    /// 429 with a `Retry-After` over `backoff_max_ms`: the next model, no
    /// wait.
    RateLimitedRetryLater,
    /// 400 or 422: the request's fault, not retried anywhere.
    Refused(u16),
    /// 401, 403 or 404: the provider refuses the gateway's key or model
    /// name. The endpoint's fault: not asked again, the next one is.
    Denied(u16),
    /// No answer before the provider's timeout.
    Hang,
    /// A TCP reset instead of an answer.
    Reset,
    /// 200 with a body (or first event) that is not JSON.
    Malformed,
    /// 200, a good first event, then one that is not JSON (a non-streamed
    /// answer is malformed from the start).
    MalformedMidStream,
    /// 200 and headers, then silence.
    StallBeforeFirst,
    /// 200 and two events (or a few bytes), then silence.
    StallMidway,
    /// 200 and headers, then the connection drops.
    CutBeforeFirst,
    /// 200 and two events (or a few bytes), then the connection drops.
    CutMidway,
    /// The answer, late.
    Slow,
}

const FAULTS: &[Fault] = &[
    Fault::Status(500),
    Fault::Status(502),
    Fault::Status(503),
    Fault::Status(408),
    Fault::Status(409),
    Fault::RateLimited,
    Fault::RateLimitedRetryNow,
    Fault::RateLimitedRetryLater,
    Fault::Refused(400),
    Fault::Refused(422),
    Fault::Denied(401),
    Fault::Denied(403),
    Fault::Denied(404),
    Fault::Hang,
    Fault::Reset,
    Fault::Malformed,
    Fault::MalformedMidStream,
    Fault::StallBeforeFirst,
    Fault::StallMidway,
    Fault::CutBeforeFirst,
    Fault::CutMidway,
    Fault::Slow,
];

/// How the daemon should treat one faulty model.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Treatment {
    /// It answers (late, maybe).
    Answers,
    /// `1 + max_retries` attempts, then the next model.
    Retried,
    /// One attempt, then the next model.
    MovedOn,
    /// One attempt, and its error is the client's.
    Final,
    /// One attempt whose stream started: the client gets it, broken.
    Broken,
}

const SSE: &str = "text/event-stream";

/// A first event of a stream, in `wire`'s format.
fn first_event(wire: Wire) -> String {
    match wire {
        Wire::OpenAi => format!(
            "data: {}\n\n",
            json!({"id": "chatcmpl-x", "object": "chat.completion.chunk", "created": 0,
                   "model": "m", "choices": [{"index": 0,
                   "delta": {"role": "assistant", "content": ""}, "finish_reason": null}]})
        ),
        Wire::Anthropic => format!(
            "event: message_start\ndata: {}\n\n",
            json!({"type": "message_start", "message": {"id": "msg_x", "type": "message",
                   "role": "assistant", "model": "m", "content": [], "stop_reason": null,
                   "stop_sequence": null, "usage": {"input_tokens": 3, "output_tokens": 1}}})
        ),
    }
}

/// An event whose data is not JSON.
fn garbage_event(wire: Wire) -> String {
    match wire {
        Wire::OpenAi => "data: {\"id\": chatcmpl-x, \"choices\n\n".into(),
        Wire::Anthropic => "event: content_block_delta\ndata: {\"type\": content_bl\n\n".into(),
    }
}

impl Fault {
    fn treatment(self, stream: bool) -> Treatment {
        match self {
            Fault::Slow => Treatment::Answers,
            Fault::Refused(_) => Treatment::Final,
            Fault::RateLimitedRetryLater | Fault::Denied(_) => Treatment::MovedOn,
            Fault::MalformedMidStream | Fault::StallMidway | Fault::CutMidway if stream => {
                Treatment::Broken
            }
            _ => Treatment::Retried,
        }
    }

    /// The client's error when every model of the chain has this fault.
    fn error(self) -> ErrorShape {
        match self {
            Fault::Status(503) => UNAVAILABLE,
            Fault::Status(_) | Fault::Denied(_) => BAD_GATEWAY,
            Fault::Refused(_) => INVALID,
            Fault::RateLimited | Fault::RateLimitedRetryNow | Fault::RateLimitedRetryLater => {
                RATE_LIMITED
            }
            Fault::Hang | Fault::StallBeforeFirst | Fault::StallMidway => TIMED_OUT,
            // Nothing answered.
            Fault::Reset => UNAVAILABLE,
            // It answered 200, then broke its answer.
            Fault::CutBeforeFirst | Fault::CutMidway => BAD_GATEWAY,
            Fault::Malformed | Fault::MalformedMidStream => BAD_GATEWAY,
            Fault::Slow => unreachable!("a slow upstream answers"),
        }
    }

    /// The upstream's reply to `request`, in `wire`'s format.
    fn reply(self, request: &RecordedRequest, wire: Wire) -> Reply {
        let stream = request.is_stream();
        let midway = if stream { 2 } else { 20 };
        match self {
            Fault::Status(status) | Fault::Refused(status) => {
                Reply::error(status, "injected fault")
            }
            // Worded as real providers word them, but quoting the key in
            // full (they mask most of it), so that a leak would show.
            Fault::Denied(status) => Reply::error(
                status,
                match status {
                    401 => format!(
                        "Incorrect API key provided: {}",
                        request.api_key().unwrap_or_default()
                    ),
                    403 => format!(
                        "the key {} has no access to this model",
                        request.api_key().unwrap_or_default()
                    ),
                    _ => format!(
                        "The model `{}` does not exist",
                        request.model().unwrap_or_default()
                    ),
                },
            ),
            Fault::RateLimited => Reply::error(429, "slow down"),
            Fault::RateLimitedRetryNow => Reply::error(429, "slow down").header("retry-after", "0"),
            Fault::RateLimitedRetryLater => {
                Reply::error(429, "slow down").header("retry-after", "1")
            }
            Fault::Hang => Reply::echo().delay(Duration::from_secs(20)),
            Fault::Reset => Reply::reset(),
            Fault::Malformed if stream => Reply::raw(200, SSE, garbage_event(wire)),
            Fault::MalformedMidStream if stream => Reply::raw(
                200,
                SSE,
                format!("{}{}", first_event(wire), garbage_event(wire)),
            ),
            Fault::Malformed | Fault::MalformedMidStream => Reply::raw(
                200,
                "application/json",
                "{\"id\": \"x\", \"choices\": [{\"mess",
            ),
            Fault::StallBeforeFirst => Reply::echo().stall_after(0),
            Fault::StallMidway => Reply::echo().stall_after(midway),
            Fault::CutBeforeFirst => Reply::echo().truncate_after(0),
            Fault::CutMidway => Reply::echo().truncate_after(midway),
            Fault::Slow => Reply::echo()
                .delay(SLOW)
                .chunk_delay(Duration::from_millis(10)),
        }
    }
}

// ---------------------------------------------------------------------------
// The fault matrix

/// The three catalog models of the matrix, each on its own upstream.
const PRIMARY: usize = 0;
const BACKUP: usize = 1;
const ESCALATION: usize = 2;
const MODELS: [&str; 3] = ["primary", "backup", "escalation"];

/// Which chain a request is served and where the fault is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Scenario {
    /// `auto`: the safe route primary → backup, then escalation; the
    /// primary is faulty.
    Fallback,
    /// `primary` named: primary → escalation; the primary is faulty.
    Escalation,
    /// `auto`, and all three models are faulty.
    AllDown,
}

impl Scenario {
    fn requested(self) -> &'static str {
        match self {
            Scenario::Escalation => "primary",
            Scenario::Fallback | Scenario::AllDown => "auto",
        }
    }

    fn chain(self) -> &'static [usize] {
        match self {
            Scenario::Escalation => &[PRIMARY, ESCALATION],
            Scenario::Fallback | Scenario::AllDown => &[PRIMARY, BACKUP, ESCALATION],
        }
    }

    fn faulty(self, model: usize) -> bool {
        self == Scenario::AllDown || model == PRIMARY
    }
}

#[derive(Clone, Copy, Debug)]
struct Case {
    fault: Fault,
    api: Api,
    stream: bool,
    scenario: Scenario,
}

/// What the client should get.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Outcome {
    Served(usize),
    Broken(usize),
    Failed(ErrorShape),
}

impl Case {
    /// The outcome, and the requests each upstream should receive.
    fn expected(&self) -> (Outcome, [u32; 3]) {
        let mut calls = [0; 3];
        for &model in self.scenario.chain() {
            if !self.scenario.faulty(model) {
                calls[model] += 1;
                return (Outcome::Served(model), calls);
            }
            match self.fault.treatment(self.stream) {
                Treatment::Answers => {
                    calls[model] += 1;
                    return (Outcome::Served(model), calls);
                }
                Treatment::Retried => calls[model] += 1 + MAX_RETRIES,
                Treatment::MovedOn => calls[model] += 1,
                Treatment::Final => {
                    calls[model] += 1;
                    return (Outcome::Failed(self.fault.error()), calls);
                }
                Treatment::Broken => {
                    calls[model] += 1;
                    return (Outcome::Broken(model), calls);
                }
            }
        }
        (Outcome::Failed(self.fault.error()), calls)
    }

    /// Whether the case takes timeouts rather than milliseconds (run first).
    fn slow(&self) -> bool {
        matches!(
            self.fault,
            Fault::Hang | Fault::StallBeforeFirst | Fault::StallMidway
        )
    }
}

/// Runs one case and returns its attempts.
async fn run_case(
    gateway: &Gateway,
    upstreams: &[Upstream; 3],
    marker: &str,
    case: Case,
) -> Result<u32, String> {
    let answer = gateway
        .ask(
            case.api,
            case.scenario.requested(),
            marker,
            case.stream,
            &[],
        )
        .await;
    let (outcome, expected) = case.expected();
    let served_by = |model: usize| {
        let policy = match case.scenario {
            Scenario::Escalation => "client",
            Scenario::Fallback | Scenario::AllDown => "safe-route",
        };
        let route = [
            "x-pointsman-model",
            "x-pointsman-tier",
            "x-pointsman-policy",
        ]
        .map(|name| answer.header(name));
        match route == [Some(MODELS[model]), Some("direct"), Some(policy)] {
            true => Ok(()),
            false => Err(format!(
                "expected {} direct {policy}, got {route:?}",
                MODELS[model]
            )),
        }
    };
    match outcome {
        Outcome::Served(model) => {
            check_answer(case.api, case.stream, &answer, marker)?;
            served_by(model)?;
            if case.fault == Fault::Slow && answer.elapsed < SLOW {
                return Err(format!("a slow answer after {:?}", answer.elapsed));
            }
        }
        Outcome::Broken(model) => {
            check_broken(case.api, &answer)?;
            served_by(model)?;
        }
        Outcome::Failed(shape) => {
            check_error(case.api, &answer, shape)?;
            if matches!(case.fault, Fault::Denied(_))
                && !answer
                    .body
                    .contains("refused the gateway's credentials, model or address")
            {
                return Err(format!("not said to be the gateway's: {}", answer.body));
            }
        }
    }
    check_no_key(&answer)?;
    let mut received = [0u32; 3];
    for (model, upstream) in upstreams.iter().enumerate() {
        received[model] = upstream
            .requests()
            .iter()
            .filter(|r| r.last_user_text().as_deref() == Some(marker))
            .count() as u32;
    }
    if received != expected {
        return Err(format!(
            "upstreams received {received:?}, expected {expected:?}"
        ));
    }
    let attempts = answer.attempts()?;
    if attempts != received.iter().sum::<u32>() {
        return Err(format!(
            "x-pointsman-attempts {attempts}, upstreams received {received:?}"
        ));
    }
    Ok(attempts)
}

/// Every fault × client API × streaming × chain, against upstreams speaking
/// `wire`.
async fn fault_matrix(wire: Wire) {
    let upstreams: [Upstream; 3] =
        std::array::from_fn(|_| Upstream::start_blocking(UpstreamConfig::default()));
    let names = ["p", "b", "e"];
    let providers: String = (0..3)
        .map(|i| provider(names[i], &upstreams[i], wire))
        .collect();
    let models: String = (0..3).map(|i| model(MODELS[i], names[i], "")).collect();
    let knobs = Knobs {
        escalation: Some("escalation"),
        ..Knobs::default()
    };
    let daemon = Daemon::start(config(
        "executor = \"primary\"\nfallbacks = [\"backup\"]",
        &knobs,
        &providers,
        &models,
    ))
    .await;
    let gateway = Gateway::new(&daemon);

    let mut cases = Vec::new();
    for &fault in FAULTS {
        for api in [Api::OpenAi, Api::Anthropic] {
            for stream in [false, true] {
                for scenario in [Scenario::Fallback, Scenario::Escalation, Scenario::AllDown] {
                    cases.push(Case {
                        fault,
                        api,
                        stream,
                        scenario,
                    });
                }
            }
        }
    }
    // The cases that wait for timeouts first, so they overlap the rest.
    cases.sort_by_key(|c| !c.slow());
    let cases: Vec<(String, Case)> = cases
        .into_iter()
        .enumerate()
        .map(|(i, c)| (format!("case-{i}"), c))
        .collect();
    let table: Arc<HashMap<String, Case>> = Arc::new(cases.iter().cloned().collect());
    for (model, upstream) in upstreams.iter().enumerate() {
        let table = table.clone();
        upstream.on(move |request| {
            let case = table.get(request.last_user_text()?.as_str())?;
            case.scenario
                .faulty(model)
                .then(|| case.fault.reply(request, wire))
        });
    }

    let results: Vec<(String, Case, Result<u32, String>)> = futures::stream::iter(&cases)
        .map(|(marker, case)| {
            let (gateway, upstreams) = (&gateway, &upstreams);
            async move {
                let result = run_case(gateway, upstreams, marker, *case).await;
                (marker.clone(), *case, result)
            }
        })
        .buffer_unordered(PARALLEL)
        .collect()
        .await;

    let failures: Vec<String> = results
        .iter()
        .filter_map(|(marker, case, r)| {
            r.as_ref()
                .err()
                .map(|e| format!("{wire:?} upstreams, {marker} {case:?}: {e}"))
        })
        .collect();
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n{}",
        failures.len(),
        results.len(),
        failures.join("\n")
    );
    // The ledger adds up over the whole run, not just per request.
    let attempts: u32 = results.iter().filter_map(|(_, _, r)| r.as_ref().ok()).sum();
    let received: u64 = upstreams.iter().map(Upstream::total).sum();
    assert_eq!(u64::from(attempts), received);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_fault_on_openai_upstreams() {
    fault_matrix(Wire::OpenAi).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_fault_on_anthropic_upstreams() {
    fault_matrix(Wire::Anthropic).await;
}

// ---------------------------------------------------------------------------
// Breakers

/// A daemon whose models `m0`, `m1`... all live on `upstream` (one breaker
/// each), with `backup` on `spare` as the escalation model; no retries.
async fn breaker_daemon(upstream: &Upstream, spare: &Upstream, wire: Wire, count: usize) -> Daemon {
    let knobs = Knobs {
        max_retries: 0,
        min_calls: 3,
        cooldown_ms: 300,
        escalation: Some("backup"),
        ..Knobs::default()
    };
    let providers = provider("p", upstream, wire) + &provider("b", spare, wire);
    let models: String = (0..count)
        .map(|i| model(&format!("m{i}"), "p", ""))
        .chain([model("backup", "b", "")])
        .collect();
    Daemon::start(config("executor = \"backup\"", &knobs, &providers, &models)).await
}

/// Serves `faults[i]` for upstream model `m<i>` while `on[i]` is set.
fn script_faults(upstream: &Upstream, faults: Vec<Fault>, wire: Wire) -> Arc<Mutex<Vec<bool>>> {
    let on = Arc::new(Mutex::new(vec![true; faults.len()]));
    let switches = on.clone();
    upstream.on(move |request| {
        let i: usize = request.model()?.strip_prefix('m')?.parse().ok()?;
        let active = switches.lock().unwrap()[i];
        active.then(|| faults[i].reply(request, wire))
    });
    on
}

/// Requests upstream model `id` received.
fn received(upstream: &Upstream, id: &str) -> usize {
    upstream
        .requests()
        .iter()
        .filter(|r| r.model() == Some(id))
        .count()
}

/// For every fault, streaming or not: enough failures open the breaker
/// (visible in `/v1/providers`), requests then skip the endpoint, and after
/// the cool-down a probe to the recovered upstream closes it. A refused key
/// or model is such a failure; faults that say nothing about the endpoint's
/// health (a bad request, a slow answer) leave it closed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn breakers_open_skip_and_close_for_every_fault() {
    let wire = Wire::OpenAi;
    let upstream = Upstream::start(UpstreamConfig::default()).await;
    let spare = Upstream::start(UpstreamConfig::default()).await;
    // A stream that breaks after its first event is covered by
    // `a_stream_broken_midway_counts_against_the_breaker`.
    let cases: Vec<(Fault, bool)> = FAULTS
        .iter()
        .flat_map(|&f| [(f, false), (f, true)])
        .filter(|&(f, stream)| f.treatment(stream) != Treatment::Broken)
        .collect();
    let on = script_faults(&upstream, cases.iter().map(|c| c.0).collect(), wire);
    let daemon = breaker_daemon(&upstream, &spare, wire, cases.len()).await;
    let gateway = Gateway::new(&daemon);

    let run = |i: usize, fault: Fault, stream: bool| {
        let (gateway, upstream, on) = (&gateway, &upstream, on.clone());
        async move {
            let id = format!("m{i}");
            let api = API[i % 2];
            let ask = |text: &'static str| gateway.ask(api, &id, text, stream, &[]);
            let trips = matches!(
                fault.treatment(stream),
                Treatment::Retried | Treatment::MovedOn
            );
            for _ in 0..3 {
                let answer = ask("fail").await;
                if trips {
                    check_answer(api, stream, &answer, "fail")?;
                    if answer.header("x-pointsman-model") != Some("backup") {
                        return Err(format!("not escalated: {answer:?}"));
                    }
                }
            }
            if received(upstream, &id) != 3 {
                return Err(format!("{} calls for 3 requests", received(upstream, &id)));
            }
            let (state, count) = gateway.breaker(&id, 0).await;
            if !trips {
                return match state.as_str() {
                    "closed" => Ok(()),
                    _ => Err(format!("a {fault:?} tripped the breaker: {state}")),
                };
            }
            if (state.as_str(), count) != ("open", 1) {
                return Err(format!(
                    "after 3 failures the breaker is {state} ({count} trips)"
                ));
            }
            // Open: the endpoint is skipped, the escalation model answers.
            let answer = ask("skip").await;
            check_answer(api, stream, &answer, "skip")?;
            if answer.header("x-pointsman-model") != Some("backup") || received(upstream, &id) != 3
            {
                return Err(format!("an open breaker let a call through: {answer:?}"));
            }
            // The upstream recovers; after the cool-down one probe closes it.
            on.lock().unwrap()[i] = false;
            tokio::time::sleep(Duration::from_millis(350)).await;
            let (state, _) = gateway.breaker(&id, 0).await;
            if state != "half-open" {
                return Err(format!("after the cool-down the breaker is {state}"));
            }
            let answer = ask("probe").await;
            check_answer(api, stream, &answer, "probe")?;
            if answer.header("x-pointsman-model") != Some(id.as_str()) {
                return Err(format!("the probe went elsewhere: {answer:?}"));
            }
            let (state, count) = gateway.breaker(&id, 0).await;
            if (state.as_str(), count) != ("closed", 0) || received(upstream, &id) != 4 {
                return Err(format!(
                    "after a good probe the breaker is {state} ({count} trips)"
                ));
            }
            Ok(())
        }
    };
    let results =
        futures::future::join_all(cases.iter().enumerate().map(
            |(i, &(fault, stream))| async move { (fault, stream, run(i, fault, stream).await) },
        ))
        .await;
    let failures: Vec<String> = results
        .iter()
        .filter_map(|(f, s, r)| r.as_ref().err().map(|e| format!("{f:?}, stream {s}: {e}")))
        .collect();
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// A provider that breaks every stream after its first event is failing;
/// its breaker must see it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_broken_midway_counts_against_the_breaker() {
    let wire = Wire::Anthropic;
    let upstream = Upstream::start(UpstreamConfig::default()).await;
    let spare = Upstream::start(UpstreamConfig::default()).await;
    let faults = vec![
        Fault::CutMidway,
        Fault::StallMidway,
        Fault::MalformedMidStream,
    ];
    script_faults(&upstream, faults.clone(), wire);
    let daemon = breaker_daemon(&upstream, &spare, wire, faults.len()).await;
    let gateway = Gateway::new(&daemon);
    for (i, fault) in faults.iter().enumerate() {
        let id = format!("m{i}");
        for _ in 0..3 {
            let answer = gateway.ask(Api::OpenAi, &id, "x", true, &[]).await;
            check_broken(Api::OpenAi, &answer).unwrap();
        }
        let (state, _) = gateway.breaker(&id, 0).await;
        assert_eq!(state, "open", "{fault:?}: three broken streams");
    }
}

/// `x-pointsman-attempts` counts calls to upstreams: a model skipped
/// because its breaker is open is not one, or the ledger would not add up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn skipped_models_are_not_counted_as_attempts() {
    let wire = Wire::OpenAi;
    let upstream = Upstream::start(UpstreamConfig::default()).await;
    let spare = Upstream::start(UpstreamConfig::default()).await;
    script_faults(&upstream, vec![Fault::Status(500)], wire);
    let daemon = breaker_daemon(&upstream, &spare, wire, 1).await;
    let gateway = Gateway::new(&daemon);
    for _ in 0..3 {
        gateway.ask(Api::OpenAi, "m0", "x", false, &[]).await;
    }
    assert_eq!(gateway.breaker("m0", 0).await.0, "open");
    let before = upstream.total() + spare.total();
    let answer = gateway.ask(Api::OpenAi, "m0", "x", false, &[]).await;
    assert_eq!(answer.status, 200);
    let calls = upstream.total() + spare.total() - before;
    assert_eq!(calls, 1, "only the escalation model was called");
    assert_eq!(u64::from(answer.attempts().unwrap()), calls);
}

// ---------------------------------------------------------------------------
// Retries: the budget, Retry-After, deadlines

/// One model `primary` on `upstream`, nothing to fall back to.
async fn single_model_daemon(upstream: &Upstream, knobs: &Knobs) -> Daemon {
    single_model_daemon_on(&provider("p", upstream, Wire::OpenAi), knobs).await
}

/// The same, with provider `p` given as configuration text.
async fn single_model_daemon_on(provider: &str, knobs: &Knobs) -> Daemon {
    let models = model("primary", "p", "");
    Daemon::start(config("executor = \"primary\"", knobs, provider, &models)).await
}

/// The retry budget is shared by the daemon: once the reserve is spent and
/// nothing is deposited, requests get one attempt each.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_retry_budget_caps_retries_across_requests() {
    let upstream = Upstream::start(UpstreamConfig::default()).await;
    upstream.on(|_| Some(Reply::error(500, "down")));
    let knobs = Knobs {
        budget_ratio: 0.0,
        budget_reserve: 2,
        ..Knobs::default()
    };
    let daemon = single_model_daemon(&upstream, &knobs).await;
    let gateway = Gateway::new(&daemon);
    let mut attempts = Vec::new();
    for api in [Api::OpenAi, Api::Anthropic, Api::OpenAi, Api::Anthropic] {
        let answer = gateway.ask(api, "primary", "x", false, &[]).await;
        check_error(api, &answer, BAD_GATEWAY).unwrap();
        attempts.push(answer.attempts().unwrap());
    }
    // The first request spends the reserve of two retries.
    assert_eq!(attempts, [3, 1, 1, 1]);
    assert_eq!(upstream.total(), 6);
}

/// A `Retry-After` within `backoff_max_ms` is waited out on the same model;
/// a longer one moves on to the next model at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_after_is_honoured_or_skipped() {
    let upstreams: [Upstream; 2] =
        std::array::from_fn(|_| Upstream::start_blocking(UpstreamConfig::default()));
    let knobs = Knobs {
        max_retries: 1,
        backoff_max_ms: 1_500,
        ..Knobs::default()
    };
    let providers =
        provider("p", &upstreams[0], Wire::Anthropic) + &provider("b", &upstreams[1], Wire::OpenAi);
    let models = model("primary", "p", "") + &model("backup", "b", "");
    let daemon = Daemon::start(config(
        "executor = \"primary\"\nfallbacks = [\"backup\"]",
        &knobs,
        &providers,
        &models,
    ))
    .await;
    let gateway = Gateway::new(&daemon);

    upstreams[0].push(Reply::error(429, "wait a second").header("retry-after", "1"));
    let answer = gateway.ask(Api::OpenAi, "auto", "wait", false, &[]).await;
    check_answer(Api::OpenAi, false, &answer, "wait").unwrap();
    assert_eq!(answer.header("x-pointsman-model"), Some("primary"));
    assert_eq!(answer.attempts().unwrap(), 2);
    assert!(
        answer.elapsed >= Duration::from_secs(1),
        "{:?}",
        answer.elapsed
    );
    let log = upstreams[0].requests();
    assert!(log[1].received_at - log[0].received_at >= Duration::from_secs(1));

    upstreams[0].push(Reply::error(429, "come back later").header("retry-after", "30"));
    let answer = gateway
        .ask(Api::Anthropic, "auto", "later", true, &[])
        .await;
    check_answer(Api::Anthropic, true, &answer, "later").unwrap();
    assert_eq!(answer.header("x-pointsman-model"), Some("backup"));
    assert_eq!(answer.attempts().unwrap(), 2);
    assert!(
        answer.elapsed < Duration::from_secs(1),
        "{:?}",
        answer.elapsed
    );
    assert_eq!((upstreams[0].total(), upstreams[1].total()), (3, 1));
}

/// `Retry-After` as an HTTP-date: a date within `backoff_max_ms` is waited
/// for, a past one means retry now, and a later one moves on (here to no
/// other model, so the client gets the 429 and the wait in its own
/// `Retry-After`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_after_as_an_http_date() {
    let upstream = Upstream::start(UpstreamConfig::default()).await;
    let knobs = Knobs {
        max_retries: 1,
        backoff_max_ms: 3_000,
        ..Knobs::default()
    };
    let daemon = single_model_daemon(&upstream, &knobs).await;
    let gateway = Gateway::new(&daemon);
    let seconds = |t: SystemTime| t.duration_since(SystemTime::UNIX_EPOCH).unwrap().as_secs();

    // HTTP-dates have whole seconds: the next whole second plus one is
    // between one and two seconds away.
    let at = SystemTime::UNIX_EPOCH + Duration::from_secs(seconds(SystemTime::now()) + 2);
    upstream.push(Reply::error(429, "wait").header("retry-after", httpdate::fmt_http_date(at)));
    let answer = gateway
        .ask(Api::OpenAi, "primary", "date", false, &[])
        .await;
    check_answer(Api::OpenAi, false, &answer, "date").unwrap();
    assert_eq!(answer.attempts().unwrap(), 2);
    assert!(SystemTime::now() >= at, "the retry came before the date");
    let log = upstream.requests();
    let waited = log[1].received_at - log[0].received_at;
    assert!(waited >= Duration::from_millis(900), "{waited:?}");

    upstream.push(Reply::error(429, "wait").header("retry-after", "Wed, 21 Oct 2015 07:28:00 GMT"));
    let answer = gateway
        .ask(Api::Anthropic, "primary", "past", true, &[])
        .await;
    check_answer(Api::Anthropic, true, &answer, "past").unwrap();
    assert_eq!(answer.attempts().unwrap(), 2);
    assert!(
        answer.elapsed < Duration::from_millis(500),
        "{:?}",
        answer.elapsed
    );

    let at = SystemTime::now() + Duration::from_secs(60);
    upstream.push(Reply::error(429, "later").header("retry-after", httpdate::fmt_http_date(at)));
    let answer = gateway
        .ask(Api::OpenAi, "primary", "later", false, &[])
        .await;
    check_error(Api::OpenAi, &answer, RATE_LIMITED).unwrap();
    assert_eq!(answer.attempts().unwrap(), 1);
    let after: u64 = answer.header("retry-after").unwrap().parse().unwrap();
    assert!((58..=60).contains(&after), "Retry-After: {after}");
    assert_eq!(upstream.total(), 5);
}

/// The total deadline (or a shorter `x-pointsman-deadline-ms`) ends a
/// request whose upstreams hang with a 504, however many retries and models
/// are left; a stream that outlives it ends with an error event.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deadlines_bound_a_request() {
    let upstreams: [Upstream; 2] =
        std::array::from_fn(|_| Upstream::start_blocking(UpstreamConfig::default()));
    let knobs = Knobs {
        total_deadline_ms: 800,
        escalation: Some("backup"),
        ..Knobs::default()
    };
    let providers =
        provider("p", &upstreams[0], Wire::OpenAi) + &provider("b", &upstreams[1], Wire::Anthropic);
    let models = model("primary", "p", "") + &model("backup", "b", "");
    let daemon = Daemon::start(config(
        "executor = \"primary\"",
        &knobs,
        &providers,
        &models,
    ))
    .await;
    let gateway = Gateway::new(&daemon);
    let hang = || Reply::echo().delay(Duration::from_secs(20));
    upstreams[0].on(move |r| (r.last_user_text().as_deref() != Some("slow stream")).then(hang));

    for (api, stream) in [(Api::OpenAi, false), (Api::Anthropic, true)] {
        let before = upstreams[0].total();
        let answer = gateway.ask(api, "primary", "x", stream, &[]).await;
        check_error(api, &answer, TIMED_OUT).unwrap();
        // 500 ms for the first attempt, the rest of the 800 for the second.
        let elapsed = answer.elapsed;
        assert!(
            elapsed >= Duration::from_millis(800) && elapsed < Duration::from_millis(1_400),
            "{elapsed:?}"
        );
        assert_eq!(answer.attempts().unwrap(), 2);
        assert_eq!(upstreams[0].total() - before, 2);
    }
    assert_eq!(upstreams[1].total(), 0, "no time was left for escalation");

    let answer = gateway
        .ask(
            Api::Anthropic,
            "primary",
            "x",
            false,
            &[("x-pointsman-deadline-ms", "200")],
        )
        .await;
    check_error(Api::Anthropic, &answer, TIMED_OUT).unwrap();
    assert!(
        answer.elapsed < Duration::from_millis(500),
        "{:?}",
        answer.elapsed
    );
    assert_eq!(answer.attempts().unwrap(), 1);

    // A healthy but slow stream is cut at the deadline, with an error event.
    upstreams[0].push(Reply::echo().chunk_delay(Duration::from_millis(100)));
    let answer = gateway
        .ask(
            Api::OpenAi,
            "primary",
            "slow stream",
            true,
            &[("x-pointsman-deadline-ms", "250")],
        )
        .await;
    check_broken(Api::OpenAi, &answer).unwrap();
    assert!(answer.body.contains("deadline"), "{}", answer.body);
}

/// A stream is relayed as it arrives: the relay batches events that arrive
/// together into one write, and must not hold back what is already there
/// while the rest is still coming.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_is_relayed_as_it_arrives() {
    const GAP: Duration = Duration::from_millis(150);
    let upstream = Upstream::start(UpstreamConfig::default()).await;
    let daemon = single_model_daemon(&upstream, &Knobs::default()).await;
    let gateway = Gateway::new(&daemon);
    for api in [Api::OpenAi, Api::Anthropic] {
        upstream.push(Reply::echo().chunk_delay(GAP));
        let started = Instant::now();
        let response = gateway
            .request(api, "primary", "alpha bravo charlie", true)
            .send()
            .await
            .expect("the daemon answers");
        assert_eq!(response.status(), 200);
        let mut chunks = response.bytes_stream();
        let (mut text, mut first_text, mut last) = (String::new(), None, Duration::ZERO);
        while let Some(chunk) = chunks.next().await {
            let chunk = chunk.expect("the stream ends cleanly");
            last = started.elapsed();
            text.push_str(&String::from_utf8_lossy(&chunk));
            if first_text.is_none() && text.contains("echo") {
                first_text = Some(last);
            }
        }
        let first_text = first_text.unwrap_or_else(|| panic!("{api:?}: no answer text in {text}"));
        // The echo's words and the closing events are several gaps apart
        // upstream; the first words must not wait for them.
        assert!(
            last >= first_text + 2 * GAP,
            "{api:?}: the first text arrived at {first_text:?}, the stream ended at {last:?}"
        );
        let answer = Answer {
            status: 200,
            headers: Default::default(),
            body: text,
            elapsed: last,
        };
        check_answer(api, true, &answer, "alpha bravo charlie").unwrap();
    }
}

// ---------------------------------------------------------------------------
// Transport

/// A provider the environment sends through a proxy is called through it.
/// The provider's own host does not resolve; the proxy, here the test
/// upstream (which takes absolute-form requests), answers. The daemon runs
/// as its own process so that the proxy variables reach only it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn providers_are_called_through_the_proxy_the_environment_names() {
    let proxy = Upstream::start(UpstreamConfig::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("pointsman.toml");
    std::fs::write(
        &config,
        format!(
            "baseline_model = \"primary\"\n[policies]\nrouter = \"none\"\n\
             [safe_route]\nexecutor = \"primary\"\n\n\
             [providers.p]\nkind = \"openai\"\nbase_url = \"http://provider.invalid/v1\"\n\
             api_key_env = \"POINTSMAN_TEST_OPENAI_KEY\"\n\n{}",
            model("primary", "p", "")
        ),
    )
    .unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let log = std::fs::File::create(dir.path().join("daemon.log")).unwrap();
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_pointsman"));
    command
        .args([
            "serve",
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--config",
        ])
        .arg(&config)
        .env("POINTSMAN_TEST_OPENAI_KEY", OPENAI_KEY)
        .env("HTTP_PROXY", proxy.url());
    for var in [
        "NO_PROXY",
        "no_proxy",
        "http_proxy",
        "ALL_PROXY",
        "all_proxy",
    ] {
        command.env_remove(var);
    }
    let mut daemon = command
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .unwrap();
    struct Kill<'a>(&'a mut std::process::Child);
    impl Drop for Kill<'_> {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let _kill = Kill(&mut daemon);

    let gateway = Gateway {
        url: format!("http://127.0.0.1:{port}"),
        http: reqwest::Client::new(),
    };
    let started = Instant::now();
    while gateway
        .http
        .get(format!("{}/healthz", gateway.url))
        .send()
        .await
        .is_err()
    {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the daemon did not start"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for stream in [false, true] {
        let answer = gateway
            .ask(Api::OpenAi, "primary", "via the proxy", stream, &[])
            .await;
        check_answer(Api::OpenAi, stream, &answer, "via the proxy").unwrap();
    }
    assert_eq!(proxy.total(), 2, "both calls went through the proxy");
    let log = std::fs::read_to_string(dir.path().join("daemon.log")).unwrap();
    assert!(
        log.contains("calls go through the proxy at 127.0.0.1"),
        "{log}"
    );
}

/// Connections to a plain-HTTP provider are kept alive and reused, after
/// plain and streamed answers alike.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_connections_are_kept_and_reused() {
    let upstream = Upstream::start(UpstreamConfig::default()).await;
    let daemon = single_model_daemon(&upstream, &Knobs::default()).await;
    let gateway = Gateway::new(&daemon);
    for stream in [false, true, false, true, false] {
        let answer = gateway
            .ask(Api::OpenAi, "primary", "once more", stream, &[])
            .await;
        check_answer(Api::OpenAi, stream, &answer, "once more").unwrap();
    }
    assert_eq!(upstream.total(), 5);
    assert_eq!(
        upstream.connections(),
        1,
        "one connection served every call"
    );
}

/// An upstream that closes connections it is not using (as servers with a
/// keep-alive timeout do) costs a new connection, not a failed attempt:
/// the closed one is noticed before a request is sent on it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_the_upstream_closed_are_not_used() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/v1", listener.local_addr().unwrap());
    let accepted = Arc::new(AtomicUsize::new(0));
    tokio::spawn({
        let accepted = accepted.clone();
        async move {
            while let Ok((tcp, _)) = listener.accept().await {
                accepted.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(answer_once_then_close(tcp));
            }
        }
    });
    let provider = provider_at("p", &url, Wire::OpenAi);
    let daemon = single_model_daemon_on(&provider, &Knobs::default()).await;
    let gateway = Gateway::new(&daemon);
    for _ in 0..3 {
        let answer = gateway.ask(Api::OpenAi, "primary", "hi", false, &[]).await;
        assert_eq!(answer.status, 200, "{}", answer.body);
        assert_eq!(answer.header("x-pointsman-attempts"), Some("1"));
        // Time for the upstream's closing to reach the daemon's socket.
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        accepted.load(Ordering::SeqCst),
        3,
        "a new connection each time"
    );
}

/// Reads one HTTP/1.1 request, answers it with a completion that keeps the
/// connection alive by HTTP's rules, then closes the connection anyway.
async fn answer_once_then_close(mut tcp: tokio::net::TcpStream) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut received = Vec::new();
    let mut buf = [0u8; 4096];
    let body_len = loop {
        let Ok(n) = tcp.read(&mut buf).await else {
            return;
        };
        if n == 0 {
            return;
        }
        received.extend_from_slice(&buf[..n]);
        if let Some(end) = received.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&received[..end]).to_ascii_lowercase();
            let length: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .map_or(0, |v| v.trim().parse().unwrap());
            break end + 4 + length;
        }
    };
    while received.len() < body_len {
        match tcp.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => received.extend_from_slice(&buf[..n]),
        }
    }
    let body = json!({
        "id": "chatcmpl-1", "object": "chat.completion", "created": 0, "model": "primary",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "hello"},
                     "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4}
    })
    .to_string();
    let answer = format!(
        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    );
    let _ = tcp.write_all(answer.as_bytes()).await;
}

// ---------------------------------------------------------------------------
// Balancing

/// A model `pool` with two endpoints: `fast` on `upstreams[0]` and `slow` on
/// `upstreams[1]`.
async fn pool_daemon(upstreams: &[Upstream; 2], balance: &str, knobs: &Knobs) -> Daemon {
    let providers = provider("fast", &upstreams[0], Wire::OpenAi)
        + &provider("slow", &upstreams[1], Wire::Anthropic);
    let models = model(
        "pool",
        "fast",
        &format!("balance = \"{balance}\"\n[[models.endpoints]]\nprovider = \"slow\"\n"),
    );
    Daemon::start(config("executor = \"pool\"", knobs, &providers, &models)).await
}

/// Least-latency sends most traffic to the fast endpoint; round-robin
/// splits it evenly.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn least_latency_prefers_the_fast_endpoint_and_round_robin_splits() {
    for (balance, stream) in [("least-latency", false), ("round-robin", true)] {
        let upstreams: [Upstream; 2] =
            std::array::from_fn(|_| Upstream::start_blocking(UpstreamConfig::default()));
        upstreams[1].on(|_| Some(Reply::echo().delay(Duration::from_millis(60))));
        let daemon = pool_daemon(&upstreams, balance, &Knobs::default()).await;
        let gateway = Gateway::new(&daemon);
        for i in 0..30usize {
            let api = API[i % 2];
            let answer = gateway.ask(api, "pool", "x", stream, &[]).await;
            check_answer(api, stream, &answer, "x").unwrap();
            assert_eq!(answer.attempts().unwrap(), 1);
        }
        let (fast, slow) = (upstreams[0].total(), upstreams[1].total());
        assert_eq!(fast + slow, 30);
        match balance {
            "least-latency" => assert!(fast >= 25, "{balance}: fast {fast}, slow {slow}"),
            _ => assert_eq!((fast, slow), (15, 15), "{balance}"),
        }
    }
}

/// An endpoint whose provider refuses the gateway's key is not asked again
/// for the request: the pool's other endpoint answers at once, and after
/// `min_calls` refusals the breaker keeps the bad endpoint out of the way.
/// A key the provider quotes back never reaches the client.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_key_moves_on_to_the_next_endpoint() {
    let upstreams = [
        Upstream::start(UpstreamConfig::default().openai_key("sk-the-key-it-expects")).await,
        Upstream::start(UpstreamConfig::default()).await,
    ];
    let knobs = Knobs {
        min_calls: 3,
        cooldown_ms: 60_000,
        ..Knobs::default()
    };
    let daemon = pool_daemon(&upstreams, "round-robin", &knobs).await;
    let gateway = Gateway::new(&daemon);
    let mut attempts = Vec::new();
    for i in 0..8usize {
        let (api, stream) = (API[i % 2], i % 3 == 0);
        let answer = gateway.ask(api, "pool", "x", stream, &[]).await;
        check_answer(api, stream, &answer, "x").unwrap();
        check_no_key(&answer).unwrap();
        attempts.push(answer.attempts().unwrap());
    }
    // Round-robin starts every request on the bad endpoint until its breaker
    // opens; the backoff and the retries are not spent on it.
    assert_eq!(attempts, [2, 2, 2, 1, 1, 1, 1, 1]);
    let refused = upstreams[0].requests();
    assert_eq!(refused.len(), 3);
    assert!(refused.iter().all(|r| r.status == Some(401)), "{refused:?}");
    assert_eq!(upstreams[1].total(), 8);
    assert_eq!(gateway.breaker("pool", 0).await.0, "open");
    assert_eq!(gateway.breaker("pool", 1).await.0, "closed");
}

/// A retry goes at once to another endpoint of the model: the backoff
/// spares the endpoint that failed, not its siblings.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_moves_to_another_endpoint_without_backoff() {
    let upstreams: [Upstream; 2] =
        std::array::from_fn(|_| Upstream::start_blocking(UpstreamConfig::default()));
    upstreams[0].on(|_| Some(Reply::error(500, "broken")));
    // Every backoff would be a uniform draw from 0 to 10 s.
    let knobs = Knobs {
        backoff_base_ms: 10_000,
        backoff_max_ms: 10_000,
        ..Knobs::default()
    };
    let daemon = pool_daemon(&upstreams, "round-robin", &knobs).await;
    let gateway = Gateway::new(&daemon);
    let started = std::time::Instant::now();
    for i in 0..6usize {
        let (api, stream) = (API[i % 2], i % 3 == 0);
        let answer = gateway.ask(api, "pool", "x", stream, &[]).await;
        check_answer(api, stream, &answer, "x").unwrap();
        assert!(answer.attempts().unwrap() <= 2, "request {i}");
    }
    let failed = upstreams[0].total();
    assert!(
        failed >= 1,
        "round-robin sent no request to the failing endpoint"
    );
    assert_eq!(upstreams[1].total(), 6);
    // With a backoff before each of those retries, the odds of six requests
    // within 5 s would be about (1/2)^failed.
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{failed} retries took {:?}",
        started.elapsed()
    );
}

/// When one endpoint of a pool fails, its breaker opens and the pool's
/// traffic goes to the other endpoint without wasted attempts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_open_breaker_sends_the_pool_to_the_healthy_endpoint() {
    let upstreams: [Upstream; 2] =
        std::array::from_fn(|_| Upstream::start_blocking(UpstreamConfig::default()));
    upstreams[0].on(|_| Some(Reply::error(503, "overloaded")));
    let knobs = Knobs {
        min_calls: 3,
        cooldown_ms: 60_000,
        ..Knobs::default()
    };
    let daemon = pool_daemon(&upstreams, "round-robin", &knobs).await;
    let gateway = Gateway::new(&daemon);
    let mut total_attempts = 0;
    for i in 0..12usize {
        let (api, stream) = (API[i % 2], i % 3 == 0);
        let answer = gateway.ask(api, "pool", "x", stream, &[]).await;
        check_answer(api, stream, &answer, "x").unwrap();
        total_attempts += u64::from(answer.attempts().unwrap());
    }
    assert_eq!(gateway.breaker("pool", 0).await.0, "open");
    assert_eq!(gateway.breaker("pool", 1).await.0, "closed");
    assert_eq!(
        upstreams[0].total(),
        3,
        "the failing endpoint, until it tripped"
    );
    assert_eq!(upstreams[1].total(), 12);
    assert_eq!(total_attempts, 15);
}

/// When every endpoint's breaker is open, the error says so (not "the
/// provider answered 503"), and an escalation that upstream faults caused
/// is counted as such.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_say_what_happened() {
    let upstream = Upstream::start(UpstreamConfig::default()).await;
    upstream.on(|_| Some(Reply::error(500, "down")));
    let knobs = Knobs {
        max_retries: 0,
        min_calls: 2,
        cooldown_ms: 60_000,
        ..Knobs::default()
    };
    let daemon = single_model_daemon(&upstream, &knobs).await;
    let gateway = Gateway::new(&daemon);
    for api in API {
        let answer = gateway.ask(api, "primary", "fail", false, &[]).await;
        assert_eq!(answer.status, 502, "{answer:?}");
    }
    assert_eq!(gateway.breaker("primary", 0).await.0, "open");
    for api in API {
        for stream in [false, true] {
            let answer = gateway.ask(api, "primary", "skip", stream, &[]).await;
            assert_eq!(answer.status, 503, "{answer:?}");
            assert!(
                answer.body.contains("circuit breaker open") && answer.body.contains("primary"),
                "{api:?}: {}",
                answer.body
            );
            assert!(!answer.body.contains("answered 503"), "{}", answer.body);
        }
    }
    assert_eq!(upstream.count(), 2, "no call while the breaker is open");

    // With an escalation model, the escalation is counted with its cause.
    let spare = Upstream::start(UpstreamConfig::default()).await;
    let daemon = breaker_daemon(&upstream, &spare, Wire::OpenAi, 1).await;
    let gateway = Gateway::new(&daemon);
    let answer = gateway.ask(Api::OpenAi, "m0", "fail", false, &[]).await;
    assert_eq!(
        answer.header("x-pointsman-model"),
        Some("backup"),
        "{answer:?}"
    );
    let metrics = reqwest::get(format!("{}/metrics", daemon.url))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    // The recorder is the process's: other tests of this binary count too.
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("pointsman_escalations_total")
                && l.contains("model=\"backup\"")
                && l.contains("cause=\"upstream_fault\"")),
        "no escalation counted with its cause:\n{metrics}"
    );
}

//! Real answer shapes, served through the daemon.
//!
//! `tests/corpus/<provider>/<case>.json` is a provider's non-streamed answer
//! and `<case>.sse` its streamed one, written from the providers' public
//! documentation and known behaviour (`null` for absent fields, extensions,
//! SSE comments, empty `choices` chunks, thinking blocks, cache counts...).
//! Cases under `anthropic/` are Anthropic Messages answers; every other
//! folder holds OpenAI-compatible Chat Completions answers.
//! `tests/corpus/expected.json` says what each case must come out as.
//!
//! Each shape is served by a local upstream to a daemon whose one model
//! lives there, and asked for through both client APIs (OpenAI chat
//! completions and Anthropic messages), streamed for `.sse` and not for
//! `.json`. The answer must be well-formed for the client's API, and carry
//! the expected text, tool calls and usage, at the expected cost.

mod common;

use std::collections::BTreeMap;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::sync::Once;

use pointsman::config::Config;
use pointsman_test_support::llmposter::Llmposter;
use pointsman_test_support::upstream::{
    ANTHROPIC_KEY, OPENAI_KEY, Reply, Upstream, UpstreamConfig,
};
use serde_json::{Value, json};

use common::Daemon;

/// Prices of the test model, per million tokens.
const INPUT: f64 = 1.0;
const OUTPUT: f64 = 2.0;
const CACHED: f64 = 0.5;
const CACHE_WRITE: f64 = 4.0;

/// The corpus folder.
fn corpus() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/corpus")
}

/// A client API of the daemon.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Api {
    OpenAi,
    Anthropic,
}

/// What a case must come out as.
#[derive(Debug, Clone, PartialEq)]
struct Outcome {
    text: String,
    tool_calls: Vec<(String, Value)>,
    input: u64,
    output: u64,
    cached: u64,
    cache_write: u64,
}

impl Outcome {
    fn expected(entry: &Value) -> Outcome {
        let usage = &entry["usage"];
        Outcome {
            text: entry["text"].as_str().unwrap_or_default().to_string(),
            tool_calls: entry["tool_calls"]
                .as_array()
                .map(|calls| {
                    calls
                        .iter()
                        .map(|c| {
                            (
                                c["name"].as_str().unwrap().to_string(),
                                c["arguments"].clone(),
                            )
                        })
                        .collect()
                })
                .unwrap_or_default(),
            input: usage["input"].as_u64().unwrap_or(0),
            output: usage["output"].as_u64().unwrap_or(0),
            cached: usage["cached"].as_u64().unwrap_or(0),
            cache_write: usage["cache_write"].as_u64().unwrap_or(0),
        }
    }

    /// What the usage costs at the test model's prices.
    fn cost(&self) -> f64 {
        let uncached = self.input - self.cached - self.cache_write;
        (uncached as f64 * INPUT
            + self.cached as f64 * CACHED
            + self.cache_write as f64 * CACHE_WRITE
            + self.output as f64 * OUTPUT)
            / 1e6
    }
}

/// One model `m` on `upstream`, speaking `wire`, served for `auto` too.
fn config(upstream: &Upstream, anthropic: bool) -> Config {
    if anthropic {
        config_at(&upstream.url(), true)
    } else {
        config_at(&upstream.openai_url(), false)
    }
}

/// One model `m` at base URL `url`, served for `auto` too.
fn config_at(url: &str, anthropic: bool) -> Config {
    static KEYS: Once = Once::new();
    // SAFETY: set once, before any daemon of this test binary reads them.
    KEYS.call_once(|| unsafe {
        std::env::set_var("POINTSMAN_TEST_OPENAI_KEY", OPENAI_KEY);
        std::env::set_var("POINTSMAN_TEST_ANTHROPIC_KEY", ANTHROPIC_KEY);
    });
    let (kind, key) = if anthropic {
        ("anthropic", "POINTSMAN_TEST_ANTHROPIC_KEY")
    } else {
        ("openai", "POINTSMAN_TEST_OPENAI_KEY")
    };
    let text = format!(
        "baseline_model = \"m\"\npolicy_overrides_named_models = false\n\n\
         [policies]\nrouter = \"none\"\n\n[safe_route]\nexecutor = \"m\"\n\n\
         [resilience]\nmax_retries = 0\n\n\
         [providers.p]\nkind = \"{kind}\"\nbase_url = \"{url}\"\napi_key_env = \"{key}\"\n\
         timeout_ms = 5000\n\n\
         [[models]]\nid = \"m\"\nprovider = \"p\"\ninput_usd_per_mtok = {INPUT}\n\
         output_usd_per_mtok = {OUTPUT}\ncached_usd_per_mtok = {CACHED}\n\
         cache_write_usd_per_mtok = {CACHE_WRITE}\ncontext_window = 100000\n"
    );
    Config::parse(&text).unwrap_or_else(|e| panic!("{e:#}\n{text}"))
}

/// Asks the daemon on `api`, with tools so tool calls are legal.
async fn ask(daemon: &Daemon, api: Api, stream: bool) -> (u16, reqwest::header::HeaderMap, String) {
    let (path, body) = match api {
        Api::OpenAi => (
            "/v1/chat/completions",
            json!({"model": "auto", "stream": stream, "stream_options": if stream { json!({"include_usage": true}) } else { Value::Null },
                   "messages": [{"role": "user", "content": "What is in src/main.rs?"}],
                   "tools": [{"type": "function", "function": {"name": "read_file",
                       "parameters": {"type": "object", "properties": {"path": {"type": "string"}}}}}]}),
        ),
        Api::Anthropic => (
            "/v1/messages",
            json!({"model": "auto", "stream": stream, "max_tokens": 256,
                   "messages": [{"role": "user", "content": "What is in src/main.rs?"}],
                   "tools": [{"name": "read_file", "input_schema":
                       {"type": "object", "properties": {"path": {"type": "string"}}}}]}),
        ),
    };
    let mut body = body;
    if body["stream_options"].is_null() {
        body.as_object_mut().unwrap().remove("stream_options");
    }
    let response = reqwest::Client::new()
        .post(format!("{}{path}", daemon.url))
        .header("anthropic-version", "2023-06-01")
        .bearer_auth("sk-client")
        .json(&body)
        .send()
        .await
        .expect("the daemon answers");
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    (status, headers, response.text().await.expect("a body"))
}

/// The `data` of each SSE event, with its `event` name.
fn sse_events(body: &str) -> Vec<(Option<String>, String)> {
    let mut events = Vec::new();
    for block in body.replace("\r\n", "\n").split("\n\n") {
        let mut name = None;
        let mut data = Vec::new();
        for line in block.lines() {
            if let Some(v) = line.strip_prefix("event:") {
                name = Some(v.trim().to_string());
            } else if let Some(v) = line.strip_prefix("data:") {
                data.push(v.strip_prefix(' ').unwrap_or(v).to_string());
            }
        }
        if !data.is_empty() {
            events.push((name, data.join("\n")));
        }
    }
    events
}

fn arguments(text: &str) -> Result<Value, String> {
    if text.trim().is_empty() {
        return Ok(json!({}));
    }
    serde_json::from_str(text).map_err(|e| format!("tool arguments {text:?}: {e}"))
}

/// Reads an OpenAI-format answer strictly (the shape the SDKs expect) into
/// an outcome and its cost.
fn read_openai(body: &str, stream: bool) -> Result<(Outcome, f64), String> {
    let mut out = Outcome {
        text: String::new(),
        tool_calls: Vec::new(),
        input: 0,
        output: 0,
        cached: 0,
        cache_write: 0,
    };
    let usage_of = |usage: &Value, out: &mut Outcome| -> Result<(), String> {
        out.input = usage["prompt_tokens"]
            .as_u64()
            .ok_or(format!("prompt_tokens in {usage}"))?;
        out.output = usage["completion_tokens"]
            .as_u64()
            .ok_or(format!("completion_tokens in {usage}"))?;
        out.cached = usage["prompt_tokens_details"]["cached_tokens"]
            .as_u64()
            .unwrap_or(0);
        Ok(())
    };
    if !stream {
        let v: Value = serde_json::from_str(body).map_err(|e| format!("{e}: {body}"))?;
        if v["object"] != "chat.completion" || !v["id"].is_string() || !v["created"].is_u64() {
            return Err(format!("not a chat.completion: {v}"));
        }
        let message = &v["choices"][0]["message"];
        if message["role"] != "assistant" {
            return Err(format!("no assistant message: {v}"));
        }
        out.text = match &message["content"] {
            Value::Null => String::new(),
            Value::String(s) => s.clone(),
            other => return Err(format!("content must be a string or null: {other}")),
        };
        // What the user is shown of a refusal.
        if out.text.is_empty()
            && let Some(refusal) = message["refusal"].as_str()
        {
            out.text = refusal.to_string();
        }
        if let Some(calls) = message.get("tool_calls") {
            for call in calls
                .as_array()
                .ok_or(format!("tool_calls must be a list: {v}"))?
            {
                if call["id"].as_str().is_none_or(|id| id.is_empty()) || call["type"] != "function"
                {
                    return Err(format!("tool call without id or type: {call}"));
                }
                let name = call["function"]["name"].as_str().ok_or(format!("{call}"))?;
                let args = call["function"]["arguments"]
                    .as_str()
                    .ok_or(format!("{call}"))?;
                out.tool_calls.push((name.to_string(), arguments(args)?));
            }
        }
        usage_of(&v["usage"], &mut out)?;
        return Ok((out, 0.0));
    }
    let events = sse_events(body);
    if events.last().map(|(_, d)| d.as_str()) != Some("[DONE]") {
        return Err(format!("the stream does not end with [DONE]: {body}"));
    }
    let mut calls: BTreeMap<u64, (String, String)> = BTreeMap::new();
    let mut cost = None;
    let mut id = None;
    for (_, data) in &events[..events.len() - 1] {
        let chunk: Value = serde_json::from_str(data).map_err(|e| format!("{e}: {data}"))?;
        if chunk.get("error").is_some() {
            return Err(format!("error event: {chunk}"));
        }
        if chunk["object"] != "chat.completion.chunk" {
            return Err(format!("not a chunk: {chunk}"));
        }
        let this = chunk["id"]
            .as_str()
            .filter(|s| !s.is_empty())
            .ok_or(format!("no id: {chunk}"))?;
        if *id.get_or_insert(this.to_string()) != this {
            return Err(format!("the chunk id changed: {chunk}"));
        }
        let choices = chunk["choices"]
            .as_array()
            .ok_or(format!("no choices: {chunk}"))?;
        if choices.is_empty() && chunk["usage"].is_null() {
            return Err(format!("a chunk with neither choices nor usage: {chunk}"));
        }
        for choice in choices {
            let delta = &choice["delta"];
            if let Some(t) = delta["content"].as_str() {
                out.text.push_str(t);
            }
            if let Some(t) = delta["refusal"].as_str() {
                out.text.push_str(t);
            }
            for call in delta["tool_calls"].as_array().into_iter().flatten() {
                let index = call["index"]
                    .as_u64()
                    .ok_or(format!("tool call without index: {call}"))?;
                let entry = calls.entry(index).or_default();
                if let Some(name) = call["function"]["name"].as_str() {
                    entry.0.push_str(name);
                }
                if let Some(args) = call["function"]["arguments"].as_str() {
                    entry.1.push_str(args);
                }
            }
        }
        if !chunk["usage"].is_null() {
            if !choices.is_empty() {
                return Err(format!("usage on a chunk with choices: {chunk}"));
            }
            usage_of(&chunk["usage"], &mut out)?;
            cost = chunk["pointsman"]["cost_usd"].as_str().map(str::to_string);
        }
    }
    for (_, (name, args)) in calls {
        out.tool_calls.push((name, arguments(&args)?));
    }
    let cost = cost.ok_or(format!("no usage chunk with the cost: {body}"))?;
    Ok((out, cost.parse().map_err(|e| format!("{e}"))?))
}

/// Reads an Anthropic-format answer strictly into an outcome and its cost.
fn read_anthropic(body: &str, stream: bool) -> Result<(Outcome, f64), String> {
    let mut out = Outcome {
        text: String::new(),
        tool_calls: Vec::new(),
        input: 0,
        output: 0,
        cached: 0,
        cache_write: 0,
    };
    let usage_of = |usage: &Value, out: &mut Outcome| -> Result<(), String> {
        let uncached = usage["input_tokens"]
            .as_u64()
            .ok_or(format!("input_tokens in {usage}"))?;
        out.cached = usage["cache_read_input_tokens"].as_u64().unwrap_or(0);
        out.cache_write = usage["cache_creation_input_tokens"].as_u64().unwrap_or(0);
        out.input = uncached + out.cached + out.cache_write;
        out.output = usage["output_tokens"]
            .as_u64()
            .ok_or(format!("output_tokens in {usage}"))?;
        Ok(())
    };
    if !stream {
        let v: Value = serde_json::from_str(body).map_err(|e| format!("{e}: {body}"))?;
        if v["type"] != "message" || v["role"] != "assistant" || !v["id"].is_string() {
            return Err(format!("not a message: {v}"));
        }
        for block in v["content"].as_array().ok_or(format!("no content: {v}"))? {
            match block["type"].as_str() {
                Some("text") => out
                    .text
                    .push_str(block["text"].as_str().ok_or(format!("{block}"))?),
                Some("tool_use") => {
                    if block["id"].as_str().is_none_or(|id| id.is_empty())
                        || !block["input"].is_object()
                    {
                        return Err(format!("bad tool_use block: {block}"));
                    }
                    out.tool_calls.push((
                        block["name"].as_str().unwrap_or("").to_string(),
                        block["input"].clone(),
                    ));
                }
                Some("thinking" | "redacted_thinking") => {}
                _ => return Err(format!("unexpected block: {block}")),
            }
        }
        if !v["stop_reason"].is_string() {
            return Err(format!("no stop_reason: {v}"));
        }
        usage_of(&v["usage"], &mut out)?;
        return Ok((out, 0.0));
    }
    let events = sse_events(body);
    let names: Vec<&str> = events
        .iter()
        .map(|(n, _)| n.as_deref().unwrap_or(""))
        .collect();
    if names.first() != Some(&"message_start") || names.last() != Some(&"message_stop") {
        return Err(format!("not a complete message stream: {names:?}"));
    }
    let mut blocks: BTreeMap<u64, (String, String, String)> = BTreeMap::new();
    let mut cost = None;
    for (name, data) in &events {
        let event: Value = serde_json::from_str(data).map_err(|e| format!("{e}: {data}"))?;
        if event["type"].as_str() != name.as_deref() {
            return Err(format!("event name and type differ: {name:?} {event}"));
        }
        match name.as_deref() {
            Some("message_start") => usage_of(&event["message"]["usage"], &mut out)?,
            Some("content_block_start") => {
                let index = event["index"].as_u64().ok_or(format!("{event}"))?;
                let block = &event["content_block"];
                let kind = block["type"].as_str().unwrap_or("").to_string();
                let (name, start) = match kind.as_str() {
                    "tool_use" => {
                        if block["id"].as_str().is_none_or(|id| id.is_empty()) {
                            return Err(format!("tool_use without id: {event}"));
                        }
                        let input = &block["input"];
                        let start = if input.as_object().is_some_and(|o| !o.is_empty()) {
                            input.to_string()
                        } else {
                            String::new()
                        };
                        (block["name"].as_str().unwrap_or("").to_string(), start)
                    }
                    "text" => (
                        String::new(),
                        block["text"].as_str().unwrap_or("").to_string(),
                    ),
                    _ => (String::new(), String::new()),
                };
                if blocks.insert(index, (kind, name, start)).is_some() {
                    return Err(format!("block {index} opened twice"));
                }
            }
            Some("content_block_delta") => {
                let index = event["index"].as_u64().ok_or(format!("{event}"))?;
                let block = blocks
                    .get_mut(&index)
                    .ok_or(format!("delta of an unopened block: {event}"))?;
                let delta = &event["delta"];
                match delta["type"].as_str() {
                    Some("text_delta") => block.2.push_str(delta["text"].as_str().unwrap_or("")),
                    Some("input_json_delta") => block
                        .2
                        .push_str(delta["partial_json"].as_str().unwrap_or("")),
                    _ => {}
                }
            }
            Some("message_delta") => {
                if !event["delta"]["stop_reason"].is_string() {
                    return Err(format!("message_delta without stop_reason: {event}"));
                }
                let usage = &event["usage"];
                out.output = usage["output_tokens"].as_u64().ok_or(format!("{event}"))?;
                if let Some(n) = usage["input_tokens"].as_u64() {
                    out.input = n
                        + usage["cache_read_input_tokens"]
                            .as_u64()
                            .unwrap_or(out.cached)
                        + usage["cache_creation_input_tokens"]
                            .as_u64()
                            .unwrap_or(out.cache_write);
                    out.cached = usage["cache_read_input_tokens"]
                        .as_u64()
                        .unwrap_or(out.cached);
                    out.cache_write = usage["cache_creation_input_tokens"]
                        .as_u64()
                        .unwrap_or(out.cache_write);
                }
                cost = event["pointsman"]["cost_usd"].as_str().map(str::to_string);
            }
            Some("error") => return Err(format!("error event: {event}")),
            _ => {}
        }
    }
    for (_, (kind, name, text)) in blocks {
        match kind.as_str() {
            "text" => out.text.push_str(&text),
            "tool_use" => out.tool_calls.push((name, arguments(&text)?)),
            _ => {}
        }
    }
    let cost = cost.ok_or(format!("no message_delta with the cost: {body}"))?;
    Ok((out, cost.parse().map_err(|e| format!("{e}"))?))
}

/// Whether a streamed answer ends with an error event in the client's
/// format that quotes `message`, and without a clean end.
fn check_stream_error(api: Api, body: &str, message: &str) -> Result<(), String> {
    let events = sse_events(body);
    let last = events.last().ok_or("an empty stream")?;
    let value: Value = serde_json::from_str(&last.1).map_err(|e| format!("{e}: {body}"))?;
    let ok = match api {
        Api::OpenAi => value["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains(message)),
        Api::Anthropic => {
            last.0.as_deref() == Some("error")
                && value["error"]["message"]
                    .as_str()
                    .is_some_and(|m| m.contains(message))
        }
    };
    let clean_end = body.contains("[DONE]") || body.contains("message_stop");
    if ok && !clean_end {
        Ok(())
    } else {
        Err(format!(
            "the stream must end with an error quoting {message:?}: {body}"
        ))
    }
}

/// Serves `file` (a case's `.json` or `.sse`) through both client APIs;
/// the problems found, one line each.
async fn check_case(case: &str, file: &Path, entry: &Value) -> Vec<String> {
    let expected = &Outcome::expected(entry);
    let stream_error = entry["stream_error"].as_str();
    let anthropic = case.starts_with("anthropic/");
    let stream = file.extension().is_some_and(|e| e == "sse");
    let body = std::fs::read_to_string(file).unwrap();
    let upstream = Upstream::start(UpstreamConfig::default().lenient()).await;
    let daemon = Daemon::start(config(&upstream, anthropic)).await;
    let mut problems = Vec::new();
    for api in [Api::OpenAi, Api::Anthropic] {
        let content_type = if stream {
            "text/event-stream"
        } else {
            "application/json"
        };
        upstream.push(Reply::raw(200, content_type, body.clone()));
        let (status, headers, answer) = ask(&daemon, api, stream).await;
        let label = format!(
            "{case} ({}) → {api:?} client",
            if stream { "stream" } else { "json" }
        );
        if status != 200 {
            problems.push(format!("{label}: status {status}: {answer}"));
            continue;
        }
        if let Some(message) = stream_error {
            if let Err(e) = check_stream_error(api, &answer, message) {
                problems.push(format!("{label}: {e}"));
            }
            continue;
        }
        let read = match api {
            Api::OpenAi => read_openai(&answer, stream),
            Api::Anthropic => read_anthropic(&answer, stream),
        };
        let (got, stream_cost) = match read {
            Ok(read) => read,
            Err(e) => {
                problems.push(format!("{label}: {e}"));
                continue;
            }
        };
        // OpenAI's usage has no field for cache writes: they are in
        // `prompt_tokens`, and priced all the same.
        let mut wanted = expected.clone();
        if api == Api::OpenAi {
            wanted.cache_write = 0;
        }
        if got != wanted {
            problems.push(format!("{label}: got {got:?}, expected {wanted:?}"));
        }
        let cost = if stream {
            stream_cost
        } else {
            headers
                .get("x-pointsman-cost-usd")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse().ok())
                .unwrap_or(f64::NAN)
        };
        if (cost - expected.cost()).abs() > 1e-8 {
            problems.push(format!(
                "{label}: cost {cost}, expected {}",
                expected.cost()
            ));
        }
    }
    problems
}

/// The cases of the corpus: (`<provider>/<case>`, its files).
fn cases() -> Vec<(String, Vec<PathBuf>)> {
    let mut cases: BTreeMap<String, Vec<PathBuf>> = BTreeMap::new();
    for provider in std::fs::read_dir(corpus()).unwrap() {
        let provider = provider.unwrap().path();
        if !provider.is_dir() {
            continue;
        }
        for file in std::fs::read_dir(&provider).unwrap() {
            let file = file.unwrap().path();
            let Some(ext) = file.extension().and_then(|e| e.to_str()) else {
                continue;
            };
            if ext != "json" && ext != "sse" {
                continue;
            }
            let case = format!(
                "{}/{}",
                provider.file_name().unwrap().to_str().unwrap(),
                file.file_stem().unwrap().to_str().unwrap()
            );
            cases.entry(case).or_default().push(file);
        }
    }
    cases.into_iter().collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_real_answer_shape_comes_out_right_on_both_apis() {
    let expected: Value =
        serde_json::from_str(&std::fs::read_to_string(corpus().join("expected.json")).unwrap())
            .unwrap();
    let cases = cases();
    assert!(!cases.is_empty());
    let mut problems = Vec::new();
    let mut served = 0;
    for (case, files) in &cases {
        let entry = expected
            .get(case)
            .unwrap_or_else(|| panic!("tests/corpus/expected.json has no entry for {case}"));
        for file in files {
            problems.extend(check_case(case, file, entry).await);
            served += 2;
        }
    }
    assert!(
        problems.is_empty(),
        "{} of {served} answers came out wrong:\n{}",
        problems.len(),
        problems.join("\n")
    );
}

/// mockllm (PyPI), an OpenAI- and Anthropic-compatible mock server written
/// by others, running until dropped.
struct MockLlm {
    child: std::process::Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Drop for MockLlm {
    fn drop(&mut self) {
        // mockllm serves from multiprocessing children (a worker and a
        // resource tracker) that outlive their parent: kill its whole
        // process group, which it leads.
        // SAFETY: kill(2) with a negative pid signals a process group; the
        // group is the child's own (process_group(0) at spawn).
        unsafe {
            libc::kill(-(self.child.id() as libc::pid_t), libc::SIGKILL);
        }
        let _ = self.child.wait();
    }
}

/// What the mock answers to the prompt [`ask`] sends.
const MOCK_ANSWER: &str = "It starts the server, then waits for requests.";

async fn start_mockllm() -> MockLlm {
    let bin = Path::new(env!("CARGO_MANIFEST_DIR")).join("../.venv-mock/bin/mockllm");
    assert!(
        bin.exists(),
        "{} is missing: run ./scripts/setup",
        bin.display()
    );
    let dir = tempfile::tempdir().unwrap();
    let responses = dir.path().join("responses.yml");
    std::fs::write(
        &responses,
        format!(
            "responses:\n  \"What is in src/main.rs?\": \"{MOCK_ANSWER}\"\n  \
             \"{MOCK_ANSWER}\": \"{MOCK_ANSWER}\"\n\
             defaults:\n  unknown_response: \"unknown prompt\"\n"
        ),
    )
    .unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = std::process::Command::new(bin)
        .process_group(0)
        .args(["start", "-h", "127.0.0.1", "-p", &port.to_string(), "-r"])
        .arg(&responses)
        // Its streaming path reads this file, not `-r`'s.
        .env("MOCKLLM_RESPONSES_FILE", &responses)
        .current_dir(dir.path())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("mockllm starts");
    let mock = MockLlm {
        child,
        port,
        _dir: dir,
    };
    let started = std::time::Instant::now();
    while reqwest::get(format!("http://127.0.0.1:{port}/models"))
        .await
        .is_err()
    {
        assert!(
            started.elapsed() < std::time::Duration::from_secs(30),
            "mockllm did not start"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    mock
}

/// A daemon whose one model is served by the mock, in `wire`'s format.
fn mock_config(port: u16, anthropic: bool) -> Config {
    config_at(
        &if anthropic {
            format!("http://127.0.0.1:{port}")
        } else {
            format!("http://127.0.0.1:{port}/v1")
        },
        anthropic,
    )
}

/// An independent mock server's answers (explicit nulls, a new id on every
/// chunk, no usage in streams) come out well-formed on both client APIs,
/// with the mock's text, and priced from the usage the client is shown.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_independent_mock_server_is_served_right() {
    let mock = start_mockllm().await;
    let mut problems = Vec::new();
    // mockllm's Anthropic side is not the Messages API: its stream lacks
    // message_start and puts the text in message_delta, and it refuses
    // (500) message content given as blocks, as translated OpenAI requests
    // carry it. Its Anthropic answers are checked unstreamed, for Anthropic
    // clients. (Its OpenAI stream looks the *answer* up as a prompt: the
    // responses file maps the answer to itself.)
    let cases: [(bool, &[bool], &[Api]); 2] = [
        (false, &[false, true], &[Api::OpenAi, Api::Anthropic]),
        (true, &[false], &[Api::Anthropic]),
    ];
    for (anthropic, streams, apis) in cases {
        let daemon = Daemon::start(mock_config(mock.port, anthropic)).await;
        let server = if anthropic {
            "mockllm Anthropic"
        } else {
            "mockllm OpenAI"
        };
        problems.extend(check_independent(&daemon, server, streams, apis, false).await);
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// Asks `daemon` (one model, on an independent server named `server`) on
/// each client API, streamed and not, expecting [`MOCK_ANSWER`] (or, with
/// `tool_call`, one call of `read_file`), priced from the usage the client
/// is shown; the problems found.
async fn check_independent(
    daemon: &Daemon,
    server: &str,
    streams: &[bool],
    apis: &[Api],
    tool_call: bool,
) -> Vec<String> {
    let mut problems = Vec::new();
    for &stream in streams {
        for &api in apis {
            let label = format!("{server} upstream, stream {stream}, {api:?} client");
            let (status, headers, body) = ask(daemon, api, stream).await;
            if status != 200 {
                problems.push(format!("{label}: {status} {body}"));
                continue;
            }
            let read = match api {
                Api::OpenAi => read_openai(&body, stream),
                Api::Anthropic => read_anthropic(&body, stream),
            };
            match read {
                Err(e) => problems.push(format!("{label}: {e}")),
                Ok((got, stream_cost)) => {
                    let right = if tool_call {
                        got.tool_calls.len() == 1 && got.tool_calls[0].0 == "read_file"
                    } else {
                        got.text == MOCK_ANSWER && got.tool_calls.is_empty()
                    };
                    if !right {
                        problems.push(format!("{label}: {got:?}"));
                    }
                    let cost = if stream {
                        stream_cost
                    } else {
                        headers["x-pointsman-cost-usd"]
                            .to_str()
                            .unwrap()
                            .parse()
                            .unwrap()
                    };
                    if (cost - got.cost()).abs() > 1e-9 {
                        problems.push(format!("{label}: cost {cost} for {got:?}"));
                    }
                }
            }
        }
    }
    problems
}

/// llmposter (crates.io), another mock server written by others, in both
/// upstream formats: its answers (a ping before `message_start`, its own
/// ids and usage) come out well-formed on both client APIs, streamed and
/// not, as text and as a tool call, priced from the usage the client is
/// shown.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_independent_mock_server_is_served_right() {
    let mut problems = Vec::new();
    for tool_call in [false, true] {
        let response = if tool_call {
            "tool_calls:\n        - name: read_file\n          arguments: { path: \"src/main.rs\" }"
                .to_string()
        } else {
            format!("content: \"{MOCK_ANSWER}\"")
        };
        let server = Llmposter::start(&format!(
            "fixtures:\n  - match:\n      user_message: \"src/main.rs\"\n    response:\n      {response}\n"
        ))
        .await;
        for anthropic in [false, true] {
            let url = if anthropic {
                server.anthropic_url()
            } else {
                server.openai_url()
            };
            let daemon = Daemon::start(config_at(&url, anthropic)).await;
            let name = if anthropic {
                "llmposter Anthropic"
            } else {
                "llmposter OpenAI"
            };
            problems.extend(
                check_independent(
                    &daemon,
                    name,
                    &[false, true],
                    &[Api::OpenAi, Api::Anthropic],
                    tool_call,
                )
                .await,
            );
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

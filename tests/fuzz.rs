//! Fuzzing on stable Rust: a structure-aware mutator, seeded from the
//! answer corpus (`tests/corpus`) and request samples (`tests/fuzz-seeds`),
//! drives
//!
//! * the request parsers (typed OpenAI and Anthropic requests, the policy
//!   features) and request translation both ways;
//! * answer parsing (as the HTTP provider reads upstream answers) and
//!   answer translation both ways, and pricing;
//! * the SSE reader (fed in random splits) with upstream event parsing and
//!   the stream relay to both client formats (the stream translators);
//! * the Responses API passed through (`tests/fuzz-seeds-responses`): the
//!   answer reader and the stream relay to a `/v1/responses` client;
//! * the daemon itself over HTTP: chat completions, messages, and the
//!   Responses API (seeded with Codex CLI's recorded requests).
//!
//! Every input must end in a value or a clean error: no panic, output
//! bounded by the input's size, every error the daemon answers well-formed
//! JSON in the client API's error format. A failing input is written to
//! `$CARGO_TARGET_TMPDIR/fuzz-failures/`.
//!
//! The default run is CI-sized (about a second per target). A long run:
//!
//! ```text
//! POINTSMAN_FUZZ_ITERATIONS=1000000 POINTSMAN_FUZZ_SEED=$RANDOM \
//!   cargo test --release -p pointsman --test fuzz -- --nocapture
//! ```

mod common;

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};

use pointsman::features::{self, RequestContext};
use pointsman::gateway::relay::Relay;
use pointsman::gateway::responses_relay::ResponsesRelay;
use pointsman::ledger::Cost;
use pointsman::ledger::cost::Prices;
use pointsman::provider::http::{parse_answer, parse_event};
use pointsman::provider::passthrough;
use pointsman::provider::wire::sse::SseParser;
use pointsman::provider::{Format, Request};
use serde_json::{Value, json};

/// Inputs that got past parsing into translation (or, for the daemon, a
/// 200): printed, to show a run exercised more than the parsers' errors.
static DEEP: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

fn deep() {
    DEEP.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
}

/// Iterations per in-process target (`POINTSMAN_FUZZ_ITERATIONS`).
fn iterations(default: u64) -> u64 {
    std::env::var("POINTSMAN_FUZZ_ITERATIONS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The run's seed (`POINTSMAN_FUZZ_SEED`), printed so a failure can be
/// replayed.
fn seed() -> u64 {
    let seed = std::env::var("POINTSMAN_FUZZ_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(16);
    eprintln!("fuzz seed {seed} (POINTSMAN_FUZZ_SEED)");
    seed
}

/// xorshift64*: small, fast, reproducible.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Self {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }

    fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}

/// Tag values the wire types dispatch on: swapping one for another reaches
/// the strict decoding of a *known* type with the wrong fields.
const TAGS: &[&str] = &[
    "text",
    "image",
    "image_url",
    "tool_use",
    "tool_result",
    "thinking",
    "redacted_thinking",
    "refusal",
    "message_start",
    "content_block_start",
    "content_block_delta",
    "content_block_stop",
    "message_delta",
    "message_stop",
    "ping",
    "error",
    "text_delta",
    "input_json_delta",
    "thinking_delta",
    "signature_delta",
    "function",
    "user",
    "assistant",
    "system",
    "developer",
    "tool",
    "base64",
    "url",
    "auto",
    "any",
    "none",
    "required",
    "stop",
    "tool_calls",
    "length",
    "end_turn",
    "tool_use",
    "[DONE]",
];

/// A value of a random, often hostile, shape.
fn hostile(rng: &mut Rng, donor: &Value) -> Value {
    match rng.below(16) {
        0 => Value::Null,
        1 => json!(""),
        2 => json!([]),
        3 => json!({}),
        4 => json!(u64::MAX),
        5 => json!(-1),
        6 => json!(1e308),
        7 => json!(0.5),
        8 => json!("12"),
        9 => json!(true),
        10 => Value::String("é\u{0}\u{202e}x".repeat(rng.below(2000))),
        11 => {
            // Deep nesting: serde_json's recursion limit must turn it into
            // an error, not a stack overflow.
            let mut v = json!(1);
            for _ in 0..rng.below(300) {
                v = json!([v]);
            }
            v
        }
        12 => json!(rng.pick(TAGS)),
        13 => json!({"type": rng.pick(TAGS)}),
        14 => random_node(rng, donor).clone(),
        _ => json!(rng.next() as i64),
    }
}

/// A random node of `value`.
fn random_node<'a>(rng: &mut Rng, value: &'a Value) -> &'a Value {
    let mut node = value;
    loop {
        let children: Vec<&Value> = match node {
            Value::Array(items) => items.iter().collect(),
            Value::Object(map) => map.values().collect(),
            _ => return node,
        };
        if children.is_empty() || rng.chance(30) {
            return node;
        }
        node = children[rng.below(children.len())];
    }
}

/// Applies one structural mutation somewhere in `value`.
fn mutate_value(rng: &mut Rng, value: &mut Value, donor: &Value) {
    // Walk down to a random node, then change it or one of its children.
    let descend = rng.chance(75);
    match value {
        Value::Object(map) if descend && !map.is_empty() => {
            let key = map
                .keys()
                .nth(rng.below(map.len()))
                .cloned()
                .unwrap_or_default();
            match rng.below(10) {
                0 => {
                    map.remove(&key);
                }
                1 => {
                    let k = if rng.chance(50) {
                        rng.pick(TAGS).to_string()
                    } else {
                        format!("x_{}", rng.below(100))
                    };
                    map.insert(k, hostile(rng, donor));
                }
                2 => {
                    map.insert(key, hostile(rng, donor));
                }
                _ => {
                    if let Some(child) = map.get_mut(&key) {
                        mutate_value(rng, child, donor);
                    }
                }
            }
        }
        Value::Array(items) if descend && !items.is_empty() => {
            let i = rng.below(items.len());
            match rng.below(8) {
                0 => {
                    items.remove(i);
                }
                1 => {
                    let copy = items[i].clone();
                    items.insert(i, copy);
                }
                2 => {
                    let j = rng.below(items.len());
                    items.swap(i, j);
                }
                3 => items[i] = hostile(rng, donor),
                _ => mutate_value(rng, &mut items[i], donor),
            }
        }
        _ => *value = hostile(rng, donor),
    }
}

/// Byte-level damage: flips, cuts, inserts.
fn mutate_bytes(rng: &mut Rng, bytes: &mut Vec<u8>) {
    for _ in 0..=rng.below(4) {
        if bytes.is_empty() {
            bytes.push(b'{');
        }
        let at = rng.below(bytes.len());
        match rng.below(5) {
            0 => bytes[at] ^= 1 << rng.below(8),
            1 => bytes.truncate(at),
            2 => bytes.insert(at, *rng.pick(b"{}[]\":,\\\n\r0e-.\xff\xc3")),
            3 => {
                let end = (at + rng.below(64)).min(bytes.len());
                let piece = bytes[at..end].to_vec();
                bytes.splice(at..at, piece);
            }
            _ => {
                bytes.remove(at);
            }
        }
    }
}

/// A mutated copy of a JSON seed, as bytes.
fn mutate_json(rng: &mut Rng, seed: &Value) -> Vec<u8> {
    let mut value = seed.clone();
    for _ in 0..=rng.below(5) {
        mutate_value(rng, &mut value, seed);
    }
    let mut bytes = serde_json::to_vec(&value).unwrap();
    if rng.chance(15) {
        mutate_bytes(rng, &mut bytes);
    }
    bytes
}

fn read_dir_files(dir: &Path, ext: &str, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            read_dir_files(&path, ext, out);
        } else if path.extension().is_some_and(|e| e == ext)
            && path.file_name().is_some_and(|n| n != "expected.json")
        {
            out.push(path);
        }
    }
}

fn tests_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests")
}

/// Seeds in `dir` with extension `ext`, with the format each speaks.
fn seeds(dir: &str, ext: &str) -> Vec<(Format, String)> {
    let mut files = Vec::new();
    read_dir_files(&tests_dir().join(dir), ext, &mut files);
    files.sort();
    assert!(!files.is_empty(), "no seeds in {dir}");
    files
        .into_iter()
        .map(|f| {
            let name = f.to_string_lossy().to_string();
            let format = if name.contains("anthropic") {
                Format::Anthropic
            } else {
                Format::OpenAi
            };
            (format, std::fs::read_to_string(&f).unwrap())
        })
        .collect()
}

/// Runs `check` on `input`; a panic or a failed check is saved and
/// reported.
fn guard(
    target: &str,
    input: &[u8],
    failures: &mut Vec<String>,
    check: impl FnOnce() -> Result<(), String>,
) {
    let outcome = match catch_unwind(AssertUnwindSafe(check)) {
        Ok(Ok(())) => return,
        Ok(Err(e)) => e,
        Err(panic) => format!(
            "panicked: {}",
            panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default()
        ),
    };
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("fuzz-failures");
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join(format!("{target}-{}.bin", failures.len()));
    std::fs::write(&file, input).unwrap();
    failures.push(format!("{target}: {outcome} (input in {})", file.display()));
}

fn report(target: &str, runs: u64, failures: Vec<String>) {
    eprintln!(
        "{target}: {runs} inputs, {} failures ({} inputs reached translation in this binary so far)",
        failures.len(),
        DEEP.load(std::sync::atomic::Ordering::Relaxed)
    );
    assert!(
        failures.is_empty(),
        "{} of {runs} inputs failed:\n{}",
        failures.len(),
        failures
            .iter()
            .take(20)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n")
    );
}

/// What a translation may write for an input of `input` bytes: the formats
/// add a bounded overhead per element, never a multiple that grows.
fn bounded(output: usize, input: usize) -> Result<(), String> {
    if output > 8 * input + 64 * 1024 {
        return Err(format!("{output} bytes out for {input} in"));
    }
    Ok(())
}

fn other(format: Format) -> Format {
    match format {
        Format::OpenAi => Format::Anthropic,
        Format::Anthropic => Format::OpenAi,
    }
}

fn encode_request(request: &Request) -> Vec<u8> {
    match request {
        Request::OpenAi(r) => serde_json::to_vec(r),
        Request::Anthropic(r) => serde_json::to_vec(r),
    }
    .expect("a typed request serializes")
}

/// A request body as the gateway reads it: features, the typed request,
/// and translation to the other format and back.
fn request_target(format: Format, bytes: &[u8]) -> Result<(), String> {
    let Ok(value) = serde_json::from_slice::<Value>(bytes) else {
        return Ok(());
    };
    let Ok(request) = Request::from_json(format, &value) else {
        return Ok(());
    };
    let _ = features::conversation(&request);
    let _ = features::of(&request, RequestContext::default());
    bounded(encode_request(&request).len(), bytes.len())?;
    deep();
    if let Ok(there) = request.into_format(other(format)) {
        bounded(encode_request(&there).len(), bytes.len())?;
        if let Ok(back) = there.into_format(format) {
            bounded(encode_request(&back).len(), bytes.len())?;
        }
    }
    Ok(())
}

/// An upstream answer as the HTTP provider reads it, priced, and
/// translated for both clients.
fn answer_target(format: Format, bytes: &[u8]) -> Result<(), String> {
    let Ok(answer) = parse_answer(format, bytes) else {
        return Ok(());
    };
    deep();
    let usage = answer.usage();
    let prices = Prices {
        input: 5.0,
        output: 25.0,
        cached_input: 0.5,
        cache_write: 6.25,
    };
    let cost = prices.cost(&usage);
    if !(cost.is_finite() && cost >= 0.0) {
        return Err(format!("cost {cost} for {usage:?}"));
    }
    for client in [Format::OpenAi, Format::Anthropic] {
        if let Ok(out) = answer.clone().into_format(client) {
            let written = match &out {
                pointsman::provider::Response::OpenAi(r) => serde_json::to_vec(r),
                pointsman::provider::Response::Anthropic(r) => serde_json::to_vec(r),
                pointsman::provider::Response::Responses(r) => r.to_vec(),
            }
            .map_err(|e| e.to_string())?;
            bounded(written.len(), bytes.len())?;
        }
    }
    Ok(())
}

/// Every SSE event a relay wrote is well-formed for the client: a comment,
/// `[DONE]` (OpenAI), or a JSON object (whose `type` is the event name,
/// Anthropic).
fn check_relayed(client: Format, out: &[u8]) -> Result<(), String> {
    let text = std::str::from_utf8(out).map_err(|e| format!("not UTF-8: {e}"))?;
    for block in text.split("\n\n").filter(|b| !b.is_empty()) {
        let mut event = None;
        let mut data = None;
        for line in block.lines() {
            if let Some(v) = line.strip_prefix("event: ") {
                event = Some(v);
            } else if let Some(v) = line.strip_prefix("data: ") {
                data = Some(v);
            } else if !line.starts_with(':') {
                return Err(format!("not an SSE line: {line:?}"));
            }
        }
        let Some(data) = data else { continue };
        if client == Format::OpenAi && data == "[DONE]" {
            continue;
        }
        let value: Value = serde_json::from_str(data).map_err(|e| format!("{e}: {data}"))?;
        if !value.is_object() {
            return Err(format!("not an object: {data}"));
        }
        if client == Format::Anthropic && value["type"].as_str() != event {
            return Err(format!("event {event:?} carries {data}"));
        }
    }
    Ok(())
}

/// A streamed upstream answer, cut at random, read by the SSE parser,
/// parsed as the HTTP provider parses events, and relayed to both clients.
fn stream_target(format: Format, bytes: &[u8], splits: &[usize]) -> Result<(), String> {
    let events = read_sse(bytes, splits);
    for client in [Format::OpenAi, Format::Anthropic] {
        for include_usage in [false, true] {
            let mut relay = Relay::new(client, "m", include_usage);
            let mut out = Vec::new();
            let mut failed = false;
            for event in &events {
                match parse_event(format, &event.data) {
                    Ok(Some(event)) => match relay.feed(event) {
                        Ok(bytes) if !bytes.is_empty() => {
                            deep();
                            bytes.iter().for_each(|b| out.extend_from_slice(b))
                        }
                        Ok(bytes) => bytes.iter().for_each(|b| out.extend_from_slice(b)),
                        Err(e) => {
                            relay
                                .error(&e)
                                .iter()
                                .for_each(|b| out.extend_from_slice(b));
                            failed = true;
                            break;
                        }
                    },
                    Ok(None) => {}
                    Err(e) => {
                        relay
                            .error(&e.to_string())
                            .iter()
                            .for_each(|b| out.extend_from_slice(b));
                        failed = true;
                        break;
                    }
                }
            }
            if !failed {
                relay
                    .finish(Cost::default())
                    .iter()
                    .for_each(|b| out.extend_from_slice(b));
            }
            check_relayed(client, &out)?;
            bounded(out.len(), bytes.len())?;
        }
    }
    Ok(())
}

/// A passed-through Responses answer: a whole one as the provider reads
/// it, given the catalog model and priced; a stream read in random splits
/// and relayed to a `/v1/responses` client, ending complete or failed.
fn responses_target(bytes: &[u8], splits: &[usize]) -> Result<(), String> {
    if let Ok(answer) = passthrough::parse_answer(bytes) {
        deep();
        let mut answer = answer;
        answer.set_model("m");
        let _ = answer.usage();
        if let pointsman::provider::Response::Responses(r) = &answer {
            bounded(r.to_vec().map_err(|e| e.to_string())?.len(), bytes.len())?;
        }
    }
    let events = read_sse(bytes, splits);
    let request: pointsman::provider::wire::responses::ResponsesRequest =
        serde_json::from_value(json!({"model": "auto", "input": "hi"})).unwrap();
    let tools = pointsman::provider::wire::translate::responses_request_to_chat(request.clone())
        .unwrap()
        .tools;
    let frame = pointsman::provider::wire::translate::ResponseFrame::new(
        "resp_f".into(),
        1,
        &request,
        tools,
    );
    let mut relay = ResponsesRelay::new(frame, "m");
    let mut out = Vec::new();
    let mut failed = false;
    for event in &events {
        let fed = passthrough::parse_event(event.event.as_deref(), &event.data)
            .map_err(|e| e.to_string())
            .and_then(|event| event.map_or(Ok(Vec::new()), |e| relay.feed(e)));
        match fed {
            Ok(bytes) => bytes.iter().for_each(|b| out.extend_from_slice(b)),
            Err(e) => {
                relay
                    .error(&e)
                    .iter()
                    .for_each(|b| out.extend_from_slice(b));
                failed = true;
                break;
            }
        }
    }
    if !failed {
        deep();
        let tail = if relay.finished_upstream() {
            relay.finish(Cost::default())
        } else {
            relay.error("the stream ended early")
        };
        tail.iter().for_each(|b| out.extend_from_slice(b));
    }
    // A Responses client reads named events whose `type` is the name.
    check_relayed(Format::Anthropic, &out)?;
    bounded(out.len(), bytes.len())
}

/// The SSE events of `bytes` fed to the parser in pieces of the `splits`'
/// lengths (then the rest); an event too large for the parser ends them.
fn read_sse(bytes: &[u8], splits: &[usize]) -> Vec<pointsman::provider::wire::sse::SseEvent> {
    let mut parser = SseParser::new();
    let mut events = Vec::new();
    let mut at: usize = 0;
    for &len in splits.iter().chain(std::iter::once(&usize::MAX)) {
        let end = at.saturating_add(len).min(bytes.len());
        match parser.feed(&bytes[at..end]) {
            Ok(more) => events.extend(more),
            Err(_) => return events,
        }
        at = end;
        if at == bytes.len() {
            break;
        }
    }
    events.extend(parser.finish());
    events
}

/// A streamed seed as its events, to mutate event by event.
fn sse_blocks(text: &str) -> Vec<(Option<String>, String)> {
    text.split("\n\n")
        .filter_map(|block| {
            let mut event = None;
            let mut data = Vec::new();
            for line in block.lines() {
                if let Some(v) = line.strip_prefix("event:") {
                    event = Some(v.trim().to_string());
                } else if let Some(v) = line.strip_prefix("data:") {
                    data.push(v.trim_start().to_string());
                }
            }
            (!data.is_empty()).then(|| (event, data.join("\n")))
        })
        .collect()
}

/// A mutated streamed answer: events changed, dropped, repeated or
/// reordered, comments and odd line endings added.
fn mutate_sse(rng: &mut Rng, text: &str) -> Vec<u8> {
    let mut events = sse_blocks(text);
    for _ in 0..=rng.below(4) {
        if events.is_empty() {
            break;
        }
        let i = rng.below(events.len());
        match rng.below(6) {
            0 => {
                events.remove(i);
            }
            1 => {
                let copy = events[i].clone();
                events.insert(i, copy);
            }
            2 => {
                let j = rng.below(events.len());
                events.swap(i, j);
            }
            3 => events[i].0 = Some(rng.pick(TAGS).to_string()),
            _ => {
                if let Ok(value) = serde_json::from_str::<Value>(&events[i].1) {
                    let mutated = mutate_json(rng, &value);
                    events[i].1 = String::from_utf8_lossy(&mutated).into_owned();
                }
            }
        }
    }
    let newline = *rng.pick(&["\n", "\r\n", "\r"]);
    let mut out = String::new();
    if rng.chance(10) {
        out.push('\u{feff}');
    }
    for (event, data) in events {
        if rng.chance(10) {
            out.push_str(&format!(": OPENROUTER PROCESSING{newline}{newline}"));
        }
        if let Some(event) = event {
            out.push_str(&format!("event: {event}{newline}"));
        }
        for line in data.split('\n') {
            out.push_str(&format!("data: {line}{newline}"));
        }
        out.push_str(newline);
    }
    let mut bytes = out.into_bytes();
    if rng.chance(10) {
        mutate_bytes(rng, &mut bytes);
    }
    bytes
}

#[test]
fn fuzz_request_parsing_and_translation() {
    let seeds: Vec<(Format, Value)> = seeds("fuzz-seeds", "json")
        .into_iter()
        .map(|(f, text)| (f, serde_json::from_str(&text).unwrap()))
        .collect();
    let mut rng = Rng::new(seed());
    let runs = iterations(3000);
    let mut failures = Vec::new();
    for _ in 0..runs {
        let (format, seed) = rng.pick(&seeds).clone();
        let input = mutate_json(&mut rng, &seed);
        guard("request", &input, &mut failures, || {
            request_target(format, &input)
        });
    }
    report("request", runs, failures);
}

#[test]
fn fuzz_answer_parsing_and_translation() {
    let seeds: Vec<(Format, Value)> = seeds("corpus", "json")
        .into_iter()
        .map(|(f, text)| (f, serde_json::from_str(&text).unwrap()))
        .collect();
    let mut rng = Rng::new(seed() ^ 1);
    let runs = iterations(3000);
    let mut failures = Vec::new();
    for _ in 0..runs {
        let (format, seed) = rng.pick(&seeds).clone();
        let input = mutate_json(&mut rng, &seed);
        guard("answer", &input, &mut failures, || {
            answer_target(format, &input)
        });
    }
    report("answer", runs, failures);
}

#[test]
fn fuzz_sse_reader_and_stream_relay() {
    let seeds = seeds("corpus", "sse");
    let mut rng = Rng::new(seed() ^ 2);
    let runs = iterations(1500);
    let mut failures = Vec::new();
    for _ in 0..runs {
        let (format, seed) = rng.pick(&seeds).clone();
        let input = mutate_sse(&mut rng, &seed);
        let splits: Vec<usize> = (0..rng.below(8)).map(|_| 1 + rng.below(200)).collect();
        guard("stream", &input, &mut failures, || {
            stream_target(format, &input, &splits)
        });
    }
    report("stream", runs, failures);
}

#[test]
fn fuzz_responses_passthrough() {
    let answers: Vec<Value> = seeds("fuzz-seeds-responses", "json")
        .into_iter()
        .map(|(_, text)| serde_json::from_str(&text).unwrap())
        .collect();
    let streams = seeds("fuzz-seeds-responses", "sse");
    let mut rng = Rng::new(seed() ^ 3);
    let runs = iterations(1500);
    let mut failures = Vec::new();
    for _ in 0..runs {
        let input = if rng.chance(30) {
            let seed = rng.pick(&answers).clone();
            mutate_json(&mut rng, &seed)
        } else {
            let (_, seed) = rng.pick(&streams).clone();
            mutate_sse(&mut rng, &seed)
        };
        let splits: Vec<usize> = (0..rng.below(8)).map(|_| 1 + rng.below(200)).collect();
        guard("responses", &input, &mut failures, || {
            responses_target(&input, &splits)
        });
    }
    report("responses", runs, failures);
}

/// Mutated requests sent to a daemon (simulated providers): every answer
/// is a 200 or a clean error in the client API's format, never a 5xx the
/// request caused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fuzz_the_daemon_over_http() {
    let seeds: Vec<(Endpoint, Value)> = seeds("fuzz-seeds", "json")
        .into_iter()
        .map(|(f, text)| (Endpoint::Chat(f), serde_json::from_str(&text).unwrap()))
        .collect();
    fuzz_over_http("http", seeds, seed() ^ 3).await;
}

/// Mutated Responses API requests (Codex CLI's recorded turns and a
/// minimal one) sent to `/v1/responses` of a daemon (simulated
/// providers): every answer is a 200 (a response object, or Responses
/// events whose `type` is their name) or a clean OpenAI-shaped error for
/// the client's fault, never a 5xx.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fuzz_responses_requests_over_http() {
    let recorded = tests_dir().join("agents/codex/recorded");
    let mut seeds: Vec<(Endpoint, Value)> = ["turn-1.json", "turn-2.json"]
        .iter()
        .map(|name| {
            let text = std::fs::read_to_string(recorded.join(name)).unwrap();
            (Endpoint::Responses, serde_json::from_str(&text).unwrap())
        })
        .collect();
    seeds.push((
        Endpoint::Responses,
        json!({"model": "auto", "input": "Fix the typo in main.rs", "stream": false,
            "instructions": "Be brief.", "max_output_tokens": 200,
            "tools": [{"type": "function", "name": "f", "parameters": {"type": "object"}}]}),
    ));
    fuzz_over_http("responses-http", seeds, seed() ^ 5).await;
}

/// Where a fuzzed request goes.
#[derive(Clone, Copy)]
enum Endpoint {
    /// Chat completions or messages.
    Chat(Format),
    /// `/v1/responses`.
    Responses,
}

/// Sends mutations of `seeds` to a demo daemon and checks each answer.
async fn fuzz_over_http(target: &str, seeds: Vec<(Endpoint, Value)>, seed: u64) {
    let daemon = common::Daemon::start(common::demo()).await;
    let http = reqwest::Client::new();
    let mut rng = Rng::new(seed);
    let runs = iterations(3000) / 15;
    let mut failures = Vec::new();
    for _ in 0..runs {
        let (endpoint, seed) = rng.pick(&seeds).clone();
        let mut input = mutate_json(&mut rng, &seed);
        // Keep most requests to the demo's models, so they get past routing.
        if rng.chance(70)
            && let Ok(mut v) = serde_json::from_slice::<Value>(&input)
            && let Some(map) = v.as_object_mut()
        {
            map.insert("model".into(), json!("auto"));
            input = serde_json::to_vec(&v).unwrap();
        }
        let path = match endpoint {
            Endpoint::Chat(Format::OpenAi) => "/v1/chat/completions",
            Endpoint::Chat(Format::Anthropic) => "/v1/messages",
            Endpoint::Responses => "/v1/responses",
        };
        let response = http
            .post(format!("{}{path}", daemon.url))
            .header("content-type", "application/json")
            .header("anthropic-version", "2023-06-01")
            .body(input.clone())
            .send()
            .await
            .expect("the daemon answers");
        let status = response.status().as_u16();
        let is_stream = response
            .headers()
            .get("content-type")
            .is_some_and(|v| v.to_str().unwrap_or("").starts_with("text/event-stream"));
        let body = response.bytes().await.expect("the body ends");
        let result = match (endpoint, is_stream, status) {
            (Endpoint::Chat(format), true, _) => check_relayed(format, &body),
            // Named events whose `type` is the name, as Anthropic's are.
            (Endpoint::Responses, true, _) => check_relayed(Format::Anthropic, &body),
            (endpoint, false, 200) => {
                deep();
                serde_json::from_slice::<Value>(&body)
                    .map_err(|e| format!("200 with a body that is not JSON: {e}"))
                    .and_then(|v| match endpoint {
                        Endpoint::Responses if v["object"] != "response" => {
                            Err(format!("200 without a response object: {v}"))
                        }
                        _ => Ok(()),
                    })
            }
            (Endpoint::Chat(format), false, _) => check_error(format, status, &body),
            (Endpoint::Responses, false, _) => check_error(Format::OpenAi, status, &body),
        };
        guard(target, &input, &mut failures, || result);
    }
    report(target, runs, failures);
}

/// An error answer in the client API's format, for a client's fault.
fn check_error(format: Format, status: u16, body: &[u8]) -> Result<(), String> {
    let value: Value =
        serde_json::from_slice(body).map_err(|e| format!("{status} error body not JSON: {e}"))?;
    let ok = match format {
        Format::OpenAi => {
            value["error"]["message"].is_string() && value["error"]["type"].is_string()
        }
        Format::Anthropic => {
            value["type"] == "error"
                && value["error"]["type"].is_string()
                && value["error"]["message"].is_string()
        }
    };
    if !ok {
        return Err(format!(
            "{status}: not an error in the API's format: {value}"
        ));
    }
    if status >= 500 {
        return Err(format!("a request caused a {status}: {value}"));
    }
    Ok(())
}

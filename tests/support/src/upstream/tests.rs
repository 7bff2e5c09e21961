//! The upstream's own tests, over real HTTP.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::*;

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

async fn openai(up: &Upstream, body: Value) -> reqwest::Response {
    client()
        .post(format!("{}/chat/completions", up.openai_url()))
        .bearer_auth(OPENAI_KEY)
        .json(&body)
        .send()
        .await
        .unwrap()
}

async fn anthropic(up: &Upstream, body: Value) -> reqwest::Response {
    client()
        .post(format!("{}/v1/messages", up.url()))
        .header("x-api-key", ANTHROPIC_KEY)
        .header("anthropic-version", "2023-06-01")
        .json(&body)
        .send()
        .await
        .unwrap()
}

/// The `data:` payloads of an OpenAI stream.
fn openai_chunks(body: &str) -> Vec<String> {
    assert!(body.ends_with("data: [DONE]\n\n"), "{body}");
    body.split("\n\n")
        .filter(|f| !f.is_empty())
        .map(|f| {
            f.strip_prefix("data: ")
                .unwrap_or_else(|| panic!("frame {f:?}"))
                .to_string()
        })
        .collect()
}

/// The `(event, data)` pairs of an Anthropic stream.
fn anthropic_events(body: &str) -> Vec<(String, Value)> {
    body.split("\n\n")
        .filter(|f| !f.is_empty())
        .map(|f| {
            let (event, data) = f.split_once('\n').unwrap_or_else(|| panic!("frame {f:?}"));
            let event = event.strip_prefix("event: ").unwrap().to_string();
            let data: Value = serde_json::from_str(data.strip_prefix("data: ").unwrap()).unwrap();
            assert_eq!(data["type"], event.as_str(), "{f}");
            (event, data)
        })
        .collect()
}

fn tools_openai() -> Value {
    json!([{"type": "function", "function": {"name": "lookup", "parameters": {"type": "object"}}},
           {"type": "function", "function": {"name": "other", "parameters": {"type": "object"}}}])
}

fn tools_anthropic() -> Value {
    json!([{"name": "lookup", "input_schema": {"type": "object"}},
           {"name": "other", "input_schema": {"type": "object"}}])
}

#[tokio::test]
async fn openai_completion_echoes_with_usage() {
    let up = Upstream::start(UpstreamConfig::default().cached_tokens(4)).await;
    let res = openai(
        &up,
        json!({"model": "gpt-x", "messages": [
            {"role": "system", "content": "be brief"},
            {"role": "user", "content": [{"type": "text", "text": "hello there world"}]},
        ]}),
    )
    .await;
    assert_eq!(res.status(), 200);
    assert!(res.headers().contains_key("x-request-id"));
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["object"], "chat.completion");
    assert_eq!(body["model"], "gpt-x");
    assert!(body["id"].as_str().unwrap().starts_with("chatcmpl-"));
    assert!(body["created"].as_u64().unwrap() > 1_600_000_000);
    assert_eq!(body["choices"][0]["message"]["role"], "assistant");
    assert_eq!(
        body["choices"][0]["message"]["content"],
        "[gpt-x] echo: hello there world"
    );
    assert_eq!(body["choices"][0]["finish_reason"], "stop");
    // 2 + 3 words + 10; the answer has 5 words.
    assert_eq!(body["usage"]["prompt_tokens"], 15);
    assert_eq!(body["usage"]["completion_tokens"], 5);
    assert_eq!(body["usage"]["total_tokens"], 20);
    assert_eq!(body["usage"]["prompt_tokens_details"]["cached_tokens"], 4);

    let log = up.requests();
    assert_eq!(up.count(), 1);
    assert_eq!(log[0].path, "/v1/chat/completions");
    assert_eq!(log[0].api, Some(Api::OpenAi));
    assert_eq!(log[0].bearer(), Some(OPENAI_KEY));
    assert_eq!(log[0].model(), Some("gpt-x"));
    assert_eq!(log[0].status, Some(200));
    assert_eq!(
        log[0].usage,
        Some(Usage {
            input: 15,
            output: 5,
            cached: 4
        })
    );
    assert_eq!(
        log[0].last_user_text().as_deref(),
        Some("hello there world")
    );
}

#[tokio::test]
async fn openai_accepts_paths_without_v1() {
    let up = Upstream::start(UpstreamConfig::default()).await;
    let res = client()
        .post(format!("{}/chat/completions", up.url()))
        .bearer_auth(OPENAI_KEY)
        .json(&json!({"model": "m", "messages": [{"role": "user", "content": "hi"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(up.last_request().unwrap().path, "/chat/completions");
}

#[tokio::test]
async fn openai_stream_with_usage() {
    let up = Upstream::start(UpstreamConfig::default().cached_tokens(2)).await;
    let res = openai(
        &up,
        json!({"model": "gpt-s", "stream": true, "stream_options": {"include_usage": true},
               "messages": [{"role": "user", "content": "one two three"}]}),
    )
    .await;
    assert_eq!(res.status(), 200);
    assert!(
        res.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/event-stream")
    );
    let body = res.text().await.unwrap();
    let chunks = openai_chunks(&body);
    assert_eq!(chunks.last().unwrap(), "[DONE]");
    let chunks: Vec<Value> = chunks[..chunks.len() - 1]
        .iter()
        .map(|c| serde_json::from_str(c).unwrap())
        .collect();
    for c in &chunks {
        assert_eq!(c["object"], "chat.completion.chunk");
        assert_eq!(c["model"], "gpt-s");
        assert_eq!(c["id"], chunks[0]["id"]);
    }
    assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant");
    let text: String = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
        .collect();
    assert_eq!(text, "[gpt-s] echo: one two three");
    let content_chunks = chunks
        .iter()
        .filter(|c| {
            c["choices"][0]["delta"]["content"]
                .as_str()
                .is_some_and(|s| !s.is_empty())
        })
        .count();
    assert!(content_chunks >= 3, "{content_chunks}");
    let finish = &chunks[chunks.len() - 2];
    assert_eq!(finish["choices"][0]["finish_reason"], "stop");
    assert_eq!(finish["usage"], Value::Null);
    let usage = chunks.last().unwrap();
    assert_eq!(usage["choices"], json!([]));
    assert_eq!(usage["usage"]["prompt_tokens"], 13);
    assert_eq!(usage["usage"]["completion_tokens"], 5);
    assert_eq!(usage["usage"]["prompt_tokens_details"]["cached_tokens"], 2);
}

#[tokio::test]
async fn openai_stream_without_usage_has_no_usage_chunk() {
    let up = Upstream::start(UpstreamConfig::default()).await;
    let body = openai(
        &up,
        json!({"model": "m", "stream": true, "messages": [{"role": "user", "content": "a b"}]}),
    )
    .await
    .text()
    .await
    .unwrap();
    let chunks = openai_chunks(&body);
    assert!(!body.contains("\"usage\""), "{body}");
    let last: Value = serde_json::from_str(&chunks[chunks.len() - 2]).unwrap();
    assert_eq!(last["choices"][0]["finish_reason"], "stop");
}

#[tokio::test]
async fn openai_tool_round_trip() {
    let up = Upstream::start(UpstreamConfig::default()).await;
    let first: Value = openai(
        &up,
        json!({"model": "m", "tools": tools_openai(),
               "messages": [{"role": "user", "content": "weather in Paris"}]}),
    )
    .await
    .json()
    .await
    .unwrap();
    let choice = &first["choices"][0];
    assert_eq!(choice["finish_reason"], "tool_calls");
    assert_eq!(choice["message"]["content"], Value::Null);
    let call = &choice["message"]["tool_calls"][0];
    assert_eq!(call["type"], "function");
    assert_eq!(call["function"]["name"], "lookup");
    let args: Value =
        serde_json::from_str(call["function"]["arguments"].as_str().unwrap()).unwrap();
    assert_eq!(args, json!({"query": "weather in Paris"}));

    let second: Value = openai(
        &up,
        json!({"model": "m", "tools": tools_openai(), "messages": [
            {"role": "user", "content": "weather in Paris"},
            choice["message"].clone(),
            {"role": "tool", "tool_call_id": call["id"], "content": "sunny, 21C"},
        ]}),
    )
    .await
    .json()
    .await
    .unwrap();
    assert_eq!(
        second["choices"][0]["message"]["content"],
        "tool said: sunny, 21C"
    );
    assert_eq!(second["choices"][0]["finish_reason"], "stop");
}

#[tokio::test]
async fn openai_streamed_tool_call() {
    let up = Upstream::start(UpstreamConfig::default()).await;
    let body = openai(
        &up,
        json!({"model": "m", "stream": true, "tools": tools_openai(),
               "tool_choice": {"type": "function", "function": {"name": "other"}},
               "messages": [{"role": "user", "content": "find it"}]}),
    )
    .await
    .text()
    .await
    .unwrap();
    let chunks: Vec<Value> = openai_chunks(&body)
        .iter()
        .filter(|c| *c != "[DONE]")
        .map(|c| serde_json::from_str(c).unwrap())
        .collect();
    let calls: Vec<&Value> = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"].get("tool_calls"))
        .collect();
    assert!(calls.len() >= 3, "{body}");
    assert_eq!(calls[0][0]["function"]["name"], "other");
    assert!(calls[0][0]["id"].as_str().unwrap().starts_with("call_"));
    let args: String = calls
        .iter()
        .map(|c| c[0]["function"]["arguments"].as_str().unwrap())
        .collect();
    assert_eq!(
        serde_json::from_str::<Value>(&args).unwrap(),
        json!({"query": "find it"})
    );
    assert_eq!(
        chunks.last().unwrap()["choices"][0]["finish_reason"],
        "tool_calls"
    );
}

#[tokio::test]
async fn openai_tool_choice_none_answers_text() {
    let up = Upstream::start(UpstreamConfig::default()).await;
    let body: Value = openai(
        &up,
        json!({"model": "m", "tools": tools_openai(), "tool_choice": "none",
               "messages": [{"role": "user", "content": "hi"}]}),
    )
    .await
    .json()
    .await
    .unwrap();
    assert_eq!(body["choices"][0]["message"]["content"], "[m] echo: hi");
}

#[tokio::test]
async fn openai_auth() {
    let up = Upstream::start(UpstreamConfig::default()).await;
    let body = json!({"model": "m", "messages": [{"role": "user", "content": "hi"}]});
    let url = format!("{}/chat/completions", up.openai_url());
    let missing = client().post(&url).json(&body).send().await.unwrap();
    assert_eq!(missing.status(), 401);
    let err: Value = missing.json().await.unwrap();
    assert_eq!(err["error"]["type"], "invalid_request_error");
    assert!(
        err["error"]["message"]
            .as_str()
            .unwrap()
            .contains("API key")
    );
    let wrong = client()
        .post(&url)
        .bearer_auth("sk-client-key-123456")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), 401);
    let err: Value = wrong.json().await.unwrap();
    assert_eq!(err["error"]["code"], "invalid_api_key");
    assert!(!err.to_string().contains("sk-client-key-123456"), "{err}");
    // Logged all the same, with the key that was sent.
    let log = up.requests();
    assert_eq!(log.len(), 2);
    assert_eq!(log[1].bearer(), Some("sk-client-key-123456"));
    assert_eq!(log[1].status, Some(401));

    let any = Upstream::start(UpstreamConfig::default().any_key()).await;
    let res = client()
        .post(format!("{}/chat/completions", any.openai_url()))
        .bearer_auth("whatever")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
}

#[tokio::test]
async fn anthropic_message_with_usage() {
    let up = Upstream::start(UpstreamConfig::default().cached_tokens(5)).await;
    let res = anthropic(
        &up,
        json!({"model": "claude-x", "max_tokens": 100, "system": "be brief",
               "messages": [{"role": "user", "content": [{"type": "text", "text": "hello world"}]}]}),
    )
    .await;
    assert_eq!(res.status(), 200);
    assert!(res.headers().contains_key("request-id"));
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["type"], "message");
    assert_eq!(body["role"], "assistant");
    assert_eq!(body["model"], "claude-x");
    assert!(body["id"].as_str().unwrap().starts_with("msg_"));
    assert_eq!(
        body["content"],
        json!([{"type": "text", "text": "[claude-x] echo: hello world"}])
    );
    assert_eq!(body["stop_reason"], "end_turn");
    assert_eq!(body["stop_sequence"], Value::Null);
    // 4 words + 10 = 14 prompt tokens, 5 of them cached.
    assert_eq!(body["usage"]["input_tokens"], 9);
    assert_eq!(body["usage"]["cache_read_input_tokens"], 5);
    assert_eq!(body["usage"]["output_tokens"], 4);
    assert_eq!(
        up.last_request().unwrap().usage,
        Some(Usage {
            input: 14,
            output: 4,
            cached: 5
        })
    );
}

#[tokio::test]
async fn anthropic_stream_event_sequence() {
    let up = Upstream::start(UpstreamConfig::default()).await;
    let res = anthropic(
        &up,
        json!({"model": "c", "max_tokens": 100, "stream": true,
               "messages": [{"role": "user", "content": "alpha beta gamma"}]}),
    )
    .await;
    assert_eq!(res.status(), 200);
    let body = res.text().await.unwrap();
    let events = anthropic_events(&body);
    let kinds: Vec<&str> = events.iter().map(|(k, _)| k.as_str()).collect();
    let deltas = kinds
        .iter()
        .filter(|k| **k == "content_block_delta")
        .count();
    assert!(deltas >= 3, "{kinds:?}");
    let mut expected = vec!["message_start", "content_block_start", "ping"];
    expected.extend(std::iter::repeat_n("content_block_delta", deltas));
    expected.extend(["content_block_stop", "message_delta", "message_stop"]);
    assert_eq!(kinds, expected);
    assert_eq!(events[0].1["message"]["usage"]["input_tokens"], 13);
    assert_eq!(events[0].1["message"]["model"], "c");
    let text: String = events
        .iter()
        .filter(|(k, _)| k == "content_block_delta")
        .map(|(_, d)| {
            assert_eq!(d["delta"]["type"], "text_delta");
            d["delta"]["text"].as_str().unwrap().to_string()
        })
        .collect();
    assert_eq!(text, "[c] echo: alpha beta gamma");
    let delta = &events[events.len() - 2].1;
    assert_eq!(delta["delta"]["stop_reason"], "end_turn");
    assert_eq!(delta["usage"]["output_tokens"], 5);
}

#[tokio::test]
async fn anthropic_tool_round_trip_streamed() {
    let up = Upstream::start(UpstreamConfig::default()).await;
    let body = anthropic(
        &up,
        json!({"model": "c", "max_tokens": 100, "stream": true, "tools": tools_anthropic(),
               "messages": [{"role": "user", "content": "look this up"}]}),
    )
    .await
    .text()
    .await
    .unwrap();
    let events = anthropic_events(&body);
    let start = events
        .iter()
        .find(|(k, _)| k == "content_block_start")
        .unwrap();
    assert_eq!(start.1["content_block"]["type"], "tool_use");
    assert_eq!(start.1["content_block"]["name"], "lookup");
    let id = start.1["content_block"]["id"].as_str().unwrap().to_string();
    let json: String = events
        .iter()
        .filter(|(k, _)| k == "content_block_delta")
        .map(|(_, d)| {
            assert_eq!(d["delta"]["type"], "input_json_delta");
            d["delta"]["partial_json"].as_str().unwrap().to_string()
        })
        .collect();
    let input: Value = serde_json::from_str(&json).unwrap();
    assert_eq!(input, json!({"query": "look this up"}));
    let delta = events.iter().find(|(k, _)| k == "message_delta").unwrap();
    assert_eq!(delta.1["delta"]["stop_reason"], "tool_use");

    let second: Value = anthropic(
        &up,
        json!({"model": "c", "max_tokens": 100, "tools": tools_anthropic(), "messages": [
            {"role": "user", "content": "look this up"},
            {"role": "assistant", "content": [{"type": "tool_use", "id": id, "name": "lookup", "input": input}]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": id,
                                          "content": [{"type": "text", "text": "found"}]}]},
        ]}),
    )
    .await
    .json()
    .await
    .unwrap();
    assert_eq!(second["content"][0]["text"], "tool said: found");
    assert_eq!(second["stop_reason"], "end_turn");
}

#[tokio::test]
async fn anthropic_auth_and_version() {
    let up = Upstream::start(UpstreamConfig::default()).await;
    let body =
        json!({"model": "c", "max_tokens": 10, "messages": [{"role": "user", "content": "hi"}]});
    let url = format!("{}/v1/messages", up.url());
    let res = client()
        .post(&url)
        .header("anthropic-version", "2023-06-01")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 401);
    let err: Value = res.json().await.unwrap();
    assert_eq!(err["type"], "error");
    assert_eq!(err["error"]["type"], "authentication_error");
    let res = client()
        .post(&url)
        .header("x-api-key", "wrong")
        .header("anthropic-version", "2023-06-01")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 401);
    let res = client()
        .post(&url)
        .header("x-api-key", ANTHROPIC_KEY)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 400);
    let err: Value = res.json().await.unwrap();
    assert_eq!(err["error"]["type"], "invalid_request_error");
    assert!(
        err["error"]["message"]
            .as_str()
            .unwrap()
            .contains("anthropic-version")
    );
    // The key may come as a bearer token, as the Python SDK sends it...
    let bearer = |up: &Upstream, key: &str| {
        client()
            .post(format!("{}/v1/messages", up.url()))
            .bearer_auth(key)
            .header("anthropic-version", "2023-06-01")
            .json(&body)
            .send()
    };
    assert_eq!(bearer(&up, ANTHROPIC_KEY).await.unwrap().status(), 200);
    assert_eq!(bearer(&up, "sk-wrong").await.unwrap().status(), 401);
    assert_eq!(up.count(), 5);
    assert_eq!(up.requests()[3].api_key(), Some(ANTHROPIC_KEY));
    // ...unless the upstream wants the x-api-key form.
    let strict = Upstream::start(UpstreamConfig::default().x_api_key_only()).await;
    assert_eq!(bearer(&strict, ANTHROPIC_KEY).await.unwrap().status(), 401);
}

#[tokio::test]
async fn strict_validation_catches_translation_mistakes() {
    let up = Upstream::start(UpstreamConfig::default()).await;
    let bad_anthropic = [
        (
            json!({"model": "c", "messages": [{"role": "user", "content": "hi"}]}),
            "max_tokens",
        ),
        (
            json!({"model": "c", "max_tokens": 5, "messages": [
            {"role": "bot", "content": "x"}, {"role": "user", "content": "hi"}]}),
            "role",
        ),
        (
            // System turns inside the conversation are text, and not empty.
            json!({"model": "c", "max_tokens": 5, "messages": [
            {"role": "user", "content": "hi"}, {"role": "system", "content": ""}]}),
            "system message",
        ),
        (
            json!({"model": "c", "max_tokens": 5, "messages": [
            {"role": "user", "content": [{"type": "text", "text": ""}]}]}),
            "non-empty",
        ),
        (
            json!({"model": "c", "max_tokens": 5, "messages": [
            {"role": "user", "content": "hi"},
            {"role": "assistant", "content": [{"type": "tool_use", "id": "t1", "name": "f", "input": {}}]},
            {"role": "user", "content": "no result"}]}),
            "tool_result",
        ),
        (
            json!({"model": "c", "max_tokens": 5, "messages": [
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "nope", "content": "x"}]}]}),
            "tool_use_id",
        ),
        (
            json!({"model": "c", "max_tokens": 5, "tools": [{"name": "f", "parameters": {}}],
                "messages": [{"role": "user", "content": "hi"}]}),
            "input_schema",
        ),
        (
            json!({"model": "c", "max_tokens": 5, "messages": [
            {"role": "user", "content": "hi"}, {"role": "assistant", "content": null}]}),
            "content",
        ),
    ];
    for (body, needle) in bad_anthropic {
        let res = anthropic(&up, body.clone()).await;
        assert_eq!(res.status(), 400, "{body}");
        let err: Value = res.json().await.unwrap();
        assert_eq!(err["error"]["type"], "invalid_request_error");
        let message = err["error"]["message"].as_str().unwrap();
        assert!(message.contains(needle), "{body}: {message}");
    }
    let bad_openai = [
        (
            json!({"messages": [{"role": "user", "content": "hi"}]}),
            "model",
        ),
        (json!({"model": "m", "messages": []}), "messages"),
        (
            json!({"model": "m", "stream_options": {"include_usage": true},
                "messages": [{"role": "user", "content": "hi"}]}),
            "stream_options",
        ),
        (
            json!({"model": "m", "messages": [
            {"role": "user", "content": "hi"},
            {"role": "tool", "tool_call_id": "x", "content": "r"}]}),
            "tool_calls",
        ),
        (
            json!({"model": "m", "messages": [
            {"role": "user", "content": "hi"},
            {"role": "assistant", "content": null, "tool_calls": [
                {"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}]},
            {"role": "user", "content": "skipped the result"}]}),
            "c1",
        ),
        (
            json!({"model": "m", "tools": [{"name": "f", "input_schema": {}}],
                "messages": [{"role": "user", "content": "hi"}]}),
            "tools[0]",
        ),
    ];
    for (body, needle) in bad_openai {
        let res = openai(&up, body.clone()).await;
        assert_eq!(res.status(), 400, "{body}");
        let err: Value = res.json().await.unwrap();
        let message = err["error"]["message"].as_str().unwrap();
        assert!(message.contains(needle), "{body}: {message}");
    }
    // Validation failures leave the script queue alone.
    up.push(Reply::text("kept"));
    assert_eq!(
        openai(&up, json!({"model": "m", "messages": []}))
            .await
            .status(),
        400
    );
    assert_eq!(up.queued(), 1);

    let lenient = Upstream::start(UpstreamConfig::default().lenient()).await;
    let res = anthropic(
        &lenient,
        json!({"model": "c", "messages": [{"role": "user", "content": "hi"}]}),
    )
    .await;
    assert_eq!(res.status(), 200);
}

#[tokio::test]
async fn max_tokens_cuts_the_default_answer() {
    let up = Upstream::start(UpstreamConfig::default()).await;
    let body: Value = anthropic(
        &up,
        json!({"model": "c", "max_tokens": 3, "messages": [{"role": "user", "content": "a b c d e"}]}),
    )
    .await
    .json()
    .await
    .unwrap();
    assert_eq!(body["content"][0]["text"], "[c] echo: a");
    assert_eq!(body["stop_reason"], "max_tokens");
    assert_eq!(body["usage"]["output_tokens"], 3);
    let body: Value = openai(
        &up,
        json!({"model": "m", "max_completion_tokens": 2, "messages": [{"role": "user", "content": "a b"}]}),
    )
    .await
    .json()
    .await
    .unwrap();
    assert_eq!(body["choices"][0]["finish_reason"], "length");
}

#[tokio::test]
async fn scripted_replies_queue_then_matchers_then_default() {
    let up = Upstream::start(UpstreamConfig::default()).await;
    up.push(Reply::text(r#"{"plan": ["a", "b"]}"#));
    up.push(Reply::error(429, "slow down").header("retry-after", "7"));
    up.on(|req| (req.model() == Some("planner")).then(|| Reply::text("planned")));
    let ask =
        |model: &str| json!({"model": model, "messages": [{"role": "user", "content": "go"}]});

    let first: Value = openai(&up, ask("m")).await.json().await.unwrap();
    assert_eq!(
        first["choices"][0]["message"]["content"],
        r#"{"plan": ["a", "b"]}"#
    );
    let second = openai(&up, ask("m")).await;
    assert_eq!(second.status(), 429);
    assert_eq!(second.headers()["retry-after"], "7");
    let err: Value = second.json().await.unwrap();
    assert_eq!(err["error"]["message"], "slow down");
    assert_eq!(err["error"]["code"], "rate_limit_exceeded");
    let third: Value = openai(&up, ask("planner")).await.json().await.unwrap();
    assert_eq!(third["choices"][0]["message"]["content"], "planned");
    let fourth: Value = openai(&up, ask("m")).await.json().await.unwrap();
    assert_eq!(fourth["choices"][0]["message"]["content"], "[m] echo: go");

    // Errors take the Anthropic format on the Anthropic endpoint.
    up.push(Reply::error(529, "Overloaded"));
    let res = anthropic(
        &up,
        json!({"model": "c", "max_tokens": 9, "messages": [{"role": "user", "content": "x"}]}),
    )
    .await;
    assert_eq!(res.status(), 529);
    let err: Value = res.json().await.unwrap();
    assert_eq!(
        err,
        json!({"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}})
    );

    up.push(Reply::error_body(500, json!({"weird": true})));
    let res = openai(&up, ask("m")).await;
    assert_eq!(res.status(), 500);
    assert_eq!(res.json::<Value>().await.unwrap(), json!({"weird": true}));

    up.clear_scripts();
    let last: Value = openai(&up, ask("planner")).await.json().await.unwrap();
    assert_eq!(
        last["choices"][0]["message"]["content"],
        "[planner] echo: go"
    );
    let statuses: Vec<Option<u16>> = up.requests().iter().map(|r| r.status).collect();
    assert_eq!(
        statuses,
        [200, 429, 200, 200, 529, 500, 200].map(Some).to_vec()
    );
}

#[tokio::test]
async fn scripted_tool_calls_usage_and_raw() {
    let up = Upstream::start(UpstreamConfig::default()).await;
    up.push(
        Reply::answer(Answer {
            text: Some("Let me check.".into()),
            tool_calls: vec![
                ToolCall {
                    name: "a".into(),
                    arguments: json!({"x": 1}),
                },
                ToolCall {
                    name: "b".into(),
                    arguments: json!({"y": "z"}),
                },
            ],
            truncated: false,
        })
        .usage(Usage {
            input: 1000,
            output: 50,
            cached: 200,
        }),
    );
    let body: Value = anthropic(
        &up,
        json!({"model": "c", "max_tokens": 9, "messages": [{"role": "user", "content": "x"}]}),
    )
    .await
    .json()
    .await
    .unwrap();
    assert_eq!(
        body["content"][0],
        json!({"type": "text", "text": "Let me check."})
    );
    assert_eq!(body["content"][1]["name"], "a");
    assert_eq!(body["content"][2]["input"], json!({"y": "z"}));
    assert_eq!(body["stop_reason"], "tool_use");
    assert_eq!(body["usage"]["input_tokens"], 800);
    assert_eq!(body["usage"]["cache_read_input_tokens"], 200);
    assert_eq!(body["usage"]["output_tokens"], 50);

    up.push(Reply::raw(
        200,
        "text/event-stream",
        "event: error\ndata: {\"type\":\"error\"}\n\n",
    ));
    let res = anthropic(
        &up,
        json!({"model": "c", "max_tokens": 9, "stream": true,
                                    "messages": [{"role": "user", "content": "x"}]}),
    )
    .await;
    assert_eq!(res.headers()["content-type"], "text/event-stream");
    assert_eq!(
        res.text().await.unwrap(),
        "event: error\ndata: {\"type\":\"error\"}\n\n"
    );
}

#[tokio::test]
async fn delays_and_wait_for_requests() {
    let up = Upstream::start(UpstreamConfig::default()).await;
    up.push(Reply::default().delay(Duration::from_millis(300)));
    let started = Instant::now();
    let pending = tokio::spawn({
        let up = up.clone();
        async move {
            openai(
                &up,
                json!({"model": "m", "messages": [{"role": "user", "content": "x"}]}),
            )
            .await
            .status()
        }
    });
    let log = up.wait_for_requests(1, Duration::from_secs(5)).await;
    assert_eq!(log[0].status, Some(200));
    assert!(started.elapsed() < Duration::from_millis(300));
    assert_eq!(pending.await.unwrap(), 200);
    assert!(started.elapsed() >= Duration::from_millis(300));

    up.push(Reply::default().chunk_delay(Duration::from_millis(40)));
    let started = Instant::now();
    let body = openai(
        &up,
        json!({"model": "m", "stream": true, "messages": [{"role": "user", "content": "x y"}]}),
    )
    .await
    .text()
    .await
    .unwrap();
    let frames = openai_chunks(&body).len() as u32;
    assert!(
        started.elapsed() >= Duration::from_millis(40) * (frames - 1),
        "{frames}"
    );
}

#[tokio::test]
async fn truncated_streams_drop_the_connection() {
    let up = Upstream::start(UpstreamConfig::default()).await;
    up.push(Reply::default().truncate_after(2));
    let res = anthropic(
        &up,
        json!({"model": "c", "max_tokens": 50, "stream": true,
                                    "messages": [{"role": "user", "content": "a b c"}]}),
    )
    .await;
    assert_eq!(res.status(), 200);
    let mut body = res.bytes_stream();
    let mut received = Vec::new();
    let error = loop {
        match body.next().await {
            Some(Ok(bytes)) => received.extend_from_slice(&bytes),
            Some(Err(e)) => break e,
            None => panic!("the body ended cleanly"),
        }
    };
    let received = String::from_utf8(received).unwrap();
    assert!(error.is_body() || error.is_decode(), "{error}");
    assert_eq!(anthropic_events(&received).len(), 2, "{received}");

    up.push(Reply::default().truncate_after(10));
    let res = openai(
        &up,
        json!({"model": "m", "messages": [{"role": "user", "content": "a"}]}),
    )
    .await;
    assert!(res.text().await.is_err());
}

#[tokio::test]
async fn stalled_answers_keep_the_connection_open() {
    let up = Upstream::start(UpstreamConfig::default()).await;
    let stream = json!({"model": "m", "stream": true,
                        "messages": [{"role": "user", "content": "a b c"}]});
    // Headers only: the status arrives, the body never does.
    up.push(Reply::default().stall_after(0));
    let res = openai(&up, stream.clone()).await;
    assert_eq!(res.status(), 200);
    let mut body = res.bytes_stream();
    let next = tokio::time::timeout(Duration::from_millis(300), body.next()).await;
    assert!(next.is_err(), "a stalled body sent {next:?}");

    // Two events, then silence.
    up.push(Reply::default().stall_after(2));
    let res = anthropic(
        &up,
        json!({"model": "c", "max_tokens": 50, "stream": true,
               "messages": [{"role": "user", "content": "a b c"}]}),
    )
    .await;
    let mut body = res.bytes_stream();
    let mut received = Vec::new();
    while let Ok(Some(chunk)) = tokio::time::timeout(Duration::from_millis(300), body.next()).await
    {
        received.extend_from_slice(&chunk.unwrap());
    }
    let received = String::from_utf8(received).unwrap();
    assert_eq!(anthropic_events(&received).len(), 2, "{received}");

    // A non-streamed answer stalls after `n` bytes.
    up.push(Reply::default().stall_after(5));
    let res = openai(
        &up,
        json!({"model": "m", "messages": [{"role": "user", "content": "a"}]}),
    )
    .await;
    let mut body = res.bytes_stream();
    let first = body.next().await.unwrap().unwrap();
    assert_eq!(first.len(), 5, "{first:?}");
    assert!(first.starts_with(b"{\""), "{first:?}");
    let next = tokio::time::timeout(Duration::from_millis(300), body.next()).await;
    assert!(next.is_err(), "a stalled body sent {next:?}");
}

#[tokio::test]
async fn resets_answer_nothing() {
    let up = Upstream::start(UpstreamConfig::default()).await;
    let body = json!({"model": "m", "messages": [{"role": "user", "content": "a"}]});
    up.push(Reply::reset());
    up.push(Reply::reset().delay(Duration::from_millis(100)));
    for _ in 0..2 {
        let error = client()
            .post(format!("{}/chat/completions", up.openai_url()))
            .bearer_auth(OPENAI_KEY)
            .json(&body)
            .send()
            .await
            .expect_err("a reset connection has no answer");
        let text = format!("{error:?}");
        assert!(
            text.contains("reset") || text.contains("ConnectionReset"),
            "{text}"
        );
    }
    let log = up.requests();
    assert_eq!(log.len(), 2);
    assert!(log.iter().all(|r| r.status.is_none()), "{log:?}");
    // Other connections are unaffected.
    assert_eq!(openai(&up, body).await.status(), 200);
}

#[tokio::test]
async fn unknown_paths_and_methods_are_logged() {
    let up = Upstream::start(UpstreamConfig::default()).await;
    let res = client()
        .get(format!("{}/v1/models?x=1", up.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 404);
    let res = client()
        .get(format!("{}/v1/messages", up.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 405);
    let log = up.requests();
    assert_eq!(log.len(), 2);
    assert_eq!(log[0].api, None);
    assert_eq!(log[0].query.as_deref(), Some("x=1"));
    assert_eq!(log[1].api, Some(Api::Anthropic));
    assert_eq!(log[1].method, "GET");
    up.clear_requests();
    assert_eq!(up.count(), 0);
    assert_eq!(up.total(), 2);
}

#[test]
fn works_from_a_blocking_test_and_stops_when_dropped() {
    let up = Upstream::start_blocking(UpstreamConfig::default());
    let addr = up.addr();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let status = runtime.block_on(async {
        openai(
            &up,
            json!({"model": "m", "messages": [{"role": "user", "content": "x"}]}),
        )
        .await
        .status()
    });
    assert_eq!(status, 200);
    drop(up);
    let deadline = Instant::now() + Duration::from_secs(5);
    while std::net::TcpStream::connect(addr).is_ok() {
        assert!(Instant::now() < deadline, "the upstream still listens");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn pieces_and_counts() {
    assert_eq!(text_pieces("a b  c"), ["a ", "b  ", "c"]);
    assert_eq!(text_pieces(""), [""]);
    assert_eq!(
        json_pieces("{\"query\":\"x\"}").concat(),
        "{\"query\":\"x\"}"
    );
    assert_eq!(json_pieces("{\"query\":\"x\"}").len(), 3);
    let body = json!({"system": [{"type": "text", "text": "one two"}], "messages": [
        {"role": "user", "content": "three"},
        {"role": "assistant", "content": [{"type": "tool_use", "id": "t", "name": "f", "input": {"q": "not counted"}}]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t", "content": "four five"}]},
    ]});
    assert_eq!(request_words(&body), 5);
    assert_eq!(
        default_answer(&body).text.as_deref(),
        Some("tool said: four five")
    );
}

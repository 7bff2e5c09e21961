//! What coding agents send besides chat turns, and the names they ask for:
//! Claude Code's token counting, Anthropic-shaped models and errors, model
//! names mapped by `[[model_names]]` on both APIs, and Claude Code's
//! recorded requests replayed (routed by what the user asked, the session
//! found).

mod common;

use reqwest::StatusCode;
use serde_json::{Value, json};

use common::{Daemon, demo};
use pointsman_test_support::upstream::{Api, Upstream, UpstreamConfig};

fn client() -> reqwest::Client {
    reqwest::Client::new()
}

async fn json_of(response: reqwest::Response) -> (StatusCode, reqwest::header::HeaderMap, Value) {
    let status = response.status();
    let headers = response.headers().clone();
    let body = response.json().await.unwrap_or(Value::Null);
    (status, headers, body)
}

fn header<'a>(headers: &'a reqwest::header::HeaderMap, name: &str) -> &'a str {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
}

#[tokio::test]
async fn count_tokens_is_forwarded_to_an_anthropic_upstream_and_counted_locally_otherwise() {
    let body = json!({"model": "claude-opus-4-8", "system": "Be brief.",
        "messages": [{"role": "user", "content": "rename the helper function"}]});
    let upstream = Upstream::start(UpstreamConfig::default()).await;
    let daemon = Daemon::start(common::seed_on(&upstream, Api::Anthropic)).await;
    let (status, _, answer) = json_of(
        client()
            .post(format!("{}/v1/messages/count_tokens?beta=true", daemon.url))
            .header("anthropic-version", "2023-06-01")
            .header("anthropic-beta", "token-counting-2024-11-01")
            .json(&body)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    // The upstream's count: 2 system words + 4 message words + 10.
    assert_eq!(answer, json!({"input_tokens": 16}));
    let counted = upstream.last_request().unwrap();
    assert_eq!(counted.path, "/v1/messages/count_tokens");
    // The routed executor's upstream name, and the client's betas.
    assert_eq!(counted.body["model"], "glm-4.7");
    assert_eq!(
        counted.header("anthropic-beta"),
        Some("token-counting-2024-11-01")
    );

    let upstream = Upstream::start(UpstreamConfig::default()).await;
    let daemon = Daemon::start(common::seed_on(&upstream, Api::OpenAi)).await;
    let (status, _, answer) = json_of(
        client()
            .post(format!("{}/v1/messages/count_tokens", daemon.url))
            .json(&body)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    let local = answer["input_tokens"].as_u64().unwrap();
    assert!((8..40).contains(&local), "{answer}");
    assert_eq!(upstream.count(), 0, "an OpenAI upstream is not asked");

    // Bad input is an Anthropic-shaped error.
    let (status, _, answer) = json_of(
        client()
            .post(format!("{}/v1/messages/count_tokens", daemon.url))
            .json(&json!({"model": "claude-opus-4-8"}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(answer["type"], "error", "{answer}");
    assert_eq!(answer["error"]["type"], "invalid_request_error", "{answer}");
}

#[tokio::test]
async fn models_and_errors_take_the_shape_of_the_api_asked() {
    let daemon = Daemon::start(demo()).await;
    let (status, _, anthropic) = json_of(
        client()
            .get(format!("{}/v1/models", daemon.url))
            .header("anthropic-version", "2023-06-01")
            .header("x-api-key", "sk-ant-anything")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(anthropic["has_more"], false, "{anthropic}");
    assert_eq!(anthropic["data"][0]["type"], "model", "{anthropic}");
    assert_eq!(anthropic["first_id"], "auto", "{anthropic}");
    assert!(
        anthropic["data"]
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m["id"] == "glm-4.7")
    );
    let (_, _, openai) = json_of(
        client()
            .get(format!("{}/v1/models", daemon.url))
            .bearer_auth("sk-anything")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(openai["object"], "list", "{openai}");

    for (method, path, status) in [
        ("POST", "/v1/messages/batches", StatusCode::NOT_FOUND),
        ("GET", "/v1/messages", StatusCode::METHOD_NOT_ALLOWED),
        (
            "GET",
            "/v1/messages/count_tokens",
            StatusCode::METHOD_NOT_ALLOWED,
        ),
    ] {
        let response = client()
            .request(method.parse().unwrap(), format!("{}{path}", daemon.url))
            .send()
            .await
            .unwrap();
        let (got, _, body) = json_of(response).await;
        assert_eq!(got, status, "{method} {path}: {body}");
        assert_eq!(body["type"], "error", "{method} {path}: {body}");
    }
    let (status, _, body) = json_of(
        client()
            .post(format!("{}/v1/messages", daemon.url))
            .json(&json!({"model": "llama-3", "max_tokens": 10, "messages": [{"role": "user", "content": "hi"}]}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(body["error"]["type"], "not_found_error", "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("claude-*"),
        "{body}"
    );
    let (_, _, body) = json_of(
        client()
            .get(format!("{}/v1/nothing", daemon.url))
            .send()
            .await
            .unwrap(),
    )
    .await;
    // OpenAI's shape for an unknown path: no code (`model_not_found` is
    // for a model name that resolves to nothing).
    assert_eq!(
        body["error"]["type"], "invalid_request_error",
        "OpenAI's shape: {body}"
    );
    assert!(body["error"]["code"].is_null(), "OpenAI's shape: {body}");
}

/// `GET /v1/models/{id}` (the SDKs' `models.retrieve`): an alias, a
/// catalog id and a name a `[[model_names]]` rule maps, in OpenAI's shape
/// and in Anthropic's; an unknown id is each API's 404.
#[tokio::test]
async fn one_model_is_retrieved_in_the_shape_asked_and_resolved_like_chat() {
    let daemon = Daemon::start(demo()).await;
    let get = |id: &str, anthropic: bool| {
        let mut request = client().get(format!("{}/v1/models/{id}", daemon.url));
        if anthropic {
            request = request.header("anthropic-version", "2023-06-01");
        }
        async move { json_of(request.send().await.unwrap()).await }
    };

    let (status, _, body) = get("glm-4.7", false).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["object"], "model", "{body}");
    assert_eq!(body["id"], "glm-4.7", "{body}");
    assert!(body["context_window"].as_u64().unwrap() > 0, "{body}");
    assert!(body.get("resolves_to").is_none(), "{body}");

    let (status, _, body) = get("auto", false).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        (&body["id"], &body["object"]),
        (&json!("auto"), &json!("model"))
    );

    // Claude Code's own name: the demo maps `claude-*` to the router.
    let (status, _, body) = get("claude-opus-4-8", false).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["id"], "claude-opus-4-8", "{body}");
    assert_eq!(body["resolves_to"], "auto", "{body}");
    assert_eq!(body["model_names_pattern"], "claude-*", "{body}");

    let (status, _, body) = get("claude-opus-4-8", true).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        body,
        json!({"type": "model", "id": "claude-opus-4-8", "display_name": "claude-opus-4-8",
               "created_at": "1970-01-01T00:00:00Z"})
    );

    let (status, _, body) = get("llama-3", false).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    assert_eq!(body["error"]["code"], "model_not_found", "{body}");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("`llama-3`") && message.contains("claude-*"),
        "{body}"
    );
    let (status, _, body) = get("llama-3", true).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    assert_eq!(body["type"], "error", "{body}");
    assert_eq!(body["error"]["type"], "not_found_error", "{body}");
}

/// Anthropic server tools (`web_search_20250305`, ...): refused before any
/// upstream call when the routed model is on an OpenAI-format upstream,
/// passed through verbatim to an Anthropic-format one.
#[tokio::test]
async fn anthropic_server_tools_need_an_anthropic_upstream() {
    let web_search = json!({"type": "web_search_20250305", "name": "web_search", "max_uses": 3,
        "allowed_domains": ["docs.rs"]});
    let custom = json!({"name": "lookup", "description": "Looks a fact up.",
        "input_schema": {"type": "object", "properties": {"q": {"type": "string"}}}});
    let body = json!({"model": "glm-4.7", "max_tokens": 64,
        "messages": [{"role": "user", "content": "Find the axum docs"}],
        "tools": [custom, web_search]});

    let upstream = Upstream::start(UpstreamConfig::default()).await;
    let daemon = Daemon::start(common::seed_on(&upstream, Api::OpenAi)).await;
    let (status, _, answer) = json_of(
        client()
            .post(format!("{}/v1/messages", daemon.url))
            .header("anthropic-version", "2023-06-01")
            .json(&body)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{answer}");
    assert_eq!(answer["type"], "error", "{answer}");
    assert_eq!(answer["error"]["type"], "invalid_request_error", "{answer}");
    let message = answer["error"]["message"].as_str().unwrap();
    for needle in [
        "`web_search` (type `web_search_20250305`)",
        "routed model `glm-4.7`",
        "OpenAI-format provider `oa`",
        "cannot run it",
    ] {
        assert!(message.contains(needle), "{needle:?} not in {message}");
    }
    assert_eq!(upstream.count(), 0, "no upstream was called");
    // The same request routed by the policy: refused the same way.
    let mut routed = body.clone();
    routed["model"] = json!("claude-opus-4-8");
    let response = client()
        .post(format!("{}/v1/messages", daemon.url))
        .json(&routed)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    assert_eq!(upstream.count(), 0, "no upstream was called");

    let upstream = Upstream::start(UpstreamConfig::default()).await;
    let daemon = Daemon::start(common::seed_on(&upstream, Api::Anthropic)).await;
    let (status, _, answer) = json_of(
        client()
            .post(format!("{}/v1/messages", daemon.url))
            .header("anthropic-version", "2023-06-01")
            .json(&body)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    let sent = upstream.last_request().unwrap();
    assert_eq!(sent.path, "/v1/messages");
    assert_eq!(sent.body["tools"], body["tools"], "the tools verbatim");
}

#[tokio::test]
async fn agents_model_names_route_on_both_apis_and_the_served_model_is_reported() {
    let daemon = Daemon::start(demo()).await;
    let (status, headers, body) = json_of(
        client()
            .post(format!("{}/v1/chat/completions", daemon.url))
            .json(&json!({"model": "gpt-5.5", "messages": [{"role": "user", "content": "Fix the off-by-one bug in the parser"}]}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(header(&headers, "x-pointsman-model"), "glm-4.7");
    assert!(header(&headers, "x-pointsman-policy").starts_with("seed-matrix@"));
    assert_eq!(body["model"], "glm-4.7");
    let (status, headers, body) = json_of(
        client()
            .post(format!("{}/v1/messages", daemon.url))
            .json(&json!({"model": "claude-sonnet-4-6", "max_tokens": 100,
                "messages": [{"role": "user", "content": "Fix the off-by-one bug in the parser"}]}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(header(&headers, "x-pointsman-model"), "glm-4.7");
    assert_eq!(body["model"], "glm-4.7");
    assert!(body["id"].as_str().unwrap().starts_with("msg_"), "{body}");

    // A pattern may name a catalog model instead: served as if named.
    let mut config = demo();
    config.model_names.insert(
        0,
        pointsman::config::ModelNameRule {
            pattern: "gpt-4*".into(),
            model: "deepseek-v3.2-exp".into(),
        },
    );
    let daemon = Daemon::start(config).await;
    let (status, headers, body) = json_of(
        client()
            .post(format!("{}/v1/chat/completions", daemon.url))
            .json(&json!({"model": "gpt-4o", "messages": [{"role": "user", "content": "Design a new system"}]}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(header(&headers, "x-pointsman-model"), "deepseek-v3.2-exp");
    assert_eq!(header(&headers, "x-pointsman-policy"), "client");
    assert!(header(&headers, "x-pointsman-reason").contains("gpt-4*"));
}

fn fixture(name: &str) -> Value {
    let path = pointsman_test_support::workspace_root()
        .join("tests/fixtures/claude-code")
        .join(format!("{name}.json"));
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// Replays a recorded Claude Code request; its routing headers.
async fn replay(daemon: &Daemon, recorded: &Value) -> reqwest::header::HeaderMap {
    let mut request = client().post(format!(
        "{}{}",
        daemon.url,
        recorded["path"].as_str().unwrap()
    ));
    for (name, value) in recorded["headers"].as_object().unwrap() {
        request = request.header(name.as_str(), value.as_str().unwrap());
    }
    let response = request.json(&recorded["body"]).send().await.unwrap();
    let status = response.status();
    let headers = response.headers().clone();
    let text = response.text().await.unwrap();
    assert_eq!(status, StatusCode::OK, "{text}");
    assert!(text.contains("event: message_stop"), "{text}");
    headers
}

#[tokio::test]
async fn recorded_claude_code_requests_route_on_what_the_user_asked() {
    let daemon = Daemon::start(demo()).await;
    let typo = replay(&daemon, &fixture("first-turn")).await;
    assert_eq!(header(&typo, "x-pointsman-tier"), "direct");
    assert!(
        header(&typo, "x-pointsman-reason").starts_with("low:"),
        "{typo:?}"
    );
    // The same session's next turn answers Claude Code's tool calls.
    let tool_turn = replay(&daemon, &fixture("tool-result-turn")).await;
    assert_eq!(header(&tool_turn, "x-pointsman-tier"), "direct");
    assert!(
        header(&tool_turn, "x-pointsman-reason").starts_with("low: continues a direct task"),
        "{tool_turn:?}"
    );
    let design = replay(&daemon, &fixture("design-first-turn")).await;
    assert_eq!(header(&design, "x-pointsman-tier"), "plan");
    assert_eq!(header(&design, "x-pointsman-plan"), "new");
    assert!(
        header(&design, "x-pointsman-reason").starts_with("high:"),
        "{design:?}"
    );
}

#[tokio::test]
async fn claude_codes_effort_reaches_openai_models_with_reasoning_only() {
    let upstream = Upstream::start(UpstreamConfig::default()).await;
    let body = json!({"model": "claude-opus-4-8", "max_tokens": 1000,
        "thinking": {"type": "adaptive"}, "output_config": {"effort": "high"},
        "messages": [{"role": "user", "content": "rename the helper function"}]});
    for reasoning in [false, true] {
        let mut config = common::seed_on(&upstream, Api::OpenAi);
        for model in &mut config.models {
            model.reasoning = reasoning;
        }
        let daemon = Daemon::start(config).await;
        let (status, _, answer) = json_of(
            client()
                .post(format!("{}/v1/messages", daemon.url))
                .json(&body)
                .send()
                .await
                .unwrap(),
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{answer}");
        let sent = upstream.last_request().unwrap();
        assert_eq!(sent.api, Some(Api::OpenAi));
        let effort = sent.body.get("reasoning_effort");
        if reasoning {
            assert_eq!(effort, Some(&json!("high")), "{:?}", sent.body);
        } else {
            assert_eq!(effort, None, "{:?}", sent.body);
        }
        assert!(sent.body.get("thinking").is_none(), "{:?}", sent.body);
    }
}

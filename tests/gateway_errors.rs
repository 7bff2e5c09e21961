//! Bad input on both APIs: the right status and an error body in the API's
//! own format, never a panic or a dropped connection.

mod common;

use reqwest::StatusCode;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use common::{Daemon, demo};

#[derive(Clone, Copy, Debug)]
enum Api {
    OpenAi,
    Anthropic,
}

impl Api {
    fn path(self) -> &'static str {
        match self {
            Api::OpenAi => "/v1/chat/completions",
            Api::Anthropic => "/v1/messages",
        }
    }

    /// A valid body to start from.
    fn body(self) -> Value {
        match self {
            Api::OpenAi => {
                json!({"model": "auto", "messages": [{"role": "user", "content": "hi"}]})
            }
            Api::Anthropic => {
                json!({"model": "auto", "max_tokens": 64, "messages": [{"role": "user", "content": "hi"}]})
            }
        }
    }

    /// Checks the error body's shape and returns its type.
    fn error_type(self, body: &Value) -> String {
        match self {
            Api::OpenAi => {
                assert!(body["error"]["message"].is_string(), "{body}");
                body["error"]["type"].as_str().unwrap().to_string()
            }
            Api::Anthropic => {
                assert_eq!(body["type"], "error", "{body}");
                assert!(body["error"]["message"].is_string(), "{body}");
                body["error"]["type"].as_str().unwrap().to_string()
            }
        }
    }
}

async fn post(daemon: &Daemon, api: Api, body: impl Into<reqwest::Body>) -> (StatusCode, Value) {
    let response = reqwest::Client::new()
        .post(format!("{}{}", daemon.url, api.path()))
        .header("content-type", "application/json")
        .header("anthropic-version", "2023-06-01")
        .body(body)
        .send()
        .await
        .expect("the daemon answers, never drops the connection");
    let status = response.status();
    let body = response.json().await.expect("errors are JSON");
    (status, body)
}

fn with(api: Api, patch: impl FnOnce(&mut Value)) -> Vec<u8> {
    let mut body = api.body();
    patch(&mut body);
    serde_json::to_vec(&body).unwrap()
}

#[tokio::test]
async fn malformed_requests_get_api_shaped_errors() {
    let mut config = demo();
    config.max_body_bytes = 16 * 1024;
    let daemon = Daemon::start(config).await;
    for api in [Api::OpenAi, Api::Anthropic] {
        let invalid = match api {
            Api::OpenAi => "invalid_request_error",
            Api::Anthropic => "invalid_request_error",
        };
        let not_found = match api {
            Api::OpenAi => "invalid_request_error",
            Api::Anthropic => "not_found_error",
        };
        let too_large = match api {
            Api::OpenAi => "invalid_request_error",
            Api::Anthropic => "request_too_large",
        };
        let cases: Vec<(&str, Vec<u8>, StatusCode, &str, &str)> = vec![
            (
                "malformed JSON",
                b"{\"model\": ".to_vec(),
                StatusCode::BAD_REQUEST,
                invalid,
                "not valid JSON",
            ),
            (
                "not an object",
                b"[1, 2]".to_vec(),
                StatusCode::BAD_REQUEST,
                invalid,
                "JSON object",
            ),
            (
                "bad UTF-8",
                b"{\"model\": \"auto\xff\"}".to_vec(),
                StatusCode::BAD_REQUEST,
                invalid,
                "not valid JSON",
            ),
            (
                "wrong type",
                with(api, |b| b["messages"] = json!("hello")),
                StatusCode::BAD_REQUEST,
                invalid,
                "invalid",
            ),
            (
                "missing messages",
                with(api, |b| {
                    b.as_object_mut().unwrap().remove("messages");
                }),
                StatusCode::BAD_REQUEST,
                invalid,
                "messages",
            ),
            (
                "empty messages",
                with(api, |b| b["messages"] = json!([])),
                StatusCode::BAD_REQUEST,
                invalid,
                "must not be empty",
            ),
            (
                "unknown model",
                with(api, |b| b["model"] = json!("llama-17")),
                StatusCode::NOT_FOUND,
                not_found,
                "llama-17",
            ),
            (
                "over every context window",
                with(api, |b| b["max_tokens"] = json!(250_000)),
                StatusCode::BAD_REQUEST,
                invalid,
                "context window",
            ),
            (
                "oversize body",
                with(api, |b| {
                    b["messages"][0]["content"] = json!("x".repeat(20_000))
                }),
                StatusCode::PAYLOAD_TOO_LARGE,
                too_large,
                "limit",
            ),
        ];
        for (name, body, status, kind, text) in cases {
            let (got, body) = post(&daemon, api, body).await;
            assert_eq!(got, status, "{api:?} {name}: {body}");
            assert_eq!(api.error_type(&body), kind, "{api:?} {name}: {body}");
            let message = match api {
                Api::OpenAi => body["error"]["message"].as_str().unwrap(),
                Api::Anthropic => body["error"]["message"].as_str().unwrap(),
            };
            assert!(message.contains(text), "{api:?} {name}: {message}");
        }
    }
    let (status, body) = post(
        &daemon,
        Api::Anthropic,
        with(Api::Anthropic, |b| {
            b.as_object_mut().unwrap().remove("max_tokens");
        }),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("max_tokens"),
        "{body}"
    );

    let (status, body) = post(
        &daemon,
        Api::OpenAi,
        with(Api::OpenAi, |b| b["n"] = json!(3)),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");

    let (status, body) = post(
        &daemon,
        Api::OpenAi,
        with(Api::OpenAi, |b| b["max_tokens"] = json!(250_000)),
    )
    .await;
    assert_eq!(
        body["error"]["code"], "context_length_exceeded",
        "{status} {body}"
    );

    let response = reqwest::get(format!("{}/v2/nothing", daemon.url))
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn client_keys_are_required_when_configured() {
    let key = "sk-team-alpha-0123456789";
    let mut config = demo();
    config.clients = vec![
        toml::from_str(&format!(
            "name = \"alpha\"\nkey_sha256 = \"{}\"\nlabels = {{ team = \"alpha\" }}",
            hex(&Sha256::digest(key))
        ))
        .unwrap(),
    ];
    let daemon = Daemon::start(config).await;
    let client = reqwest::Client::new();
    for api in [Api::OpenAi, Api::Anthropic] {
        let url = format!("{}{}", daemon.url, api.path());
        let body = serde_json::to_vec(&api.body()).unwrap();
        let missing = client.post(&url).body(body.clone()).send().await.unwrap();
        assert_eq!(missing.status(), StatusCode::UNAUTHORIZED);
        let json: Value = missing.json().await.unwrap();
        assert_eq!(
            api.error_type(&json),
            match api {
                Api::OpenAi => "invalid_request_error",
                Api::Anthropic => "authentication_error",
            }
        );
        let wrong = client
            .post(&url)
            .bearer_auth("sk-wrong")
            .body(body.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(wrong.status(), StatusCode::UNAUTHORIZED);
        let bearer = client
            .post(&url)
            .bearer_auth(key)
            .body(body.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(bearer.status(), StatusCode::OK, "{api:?}");
        let x_api_key = client
            .post(&url)
            .header("x-api-key", key)
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(x_api_key.status(), StatusCode::OK, "{api:?}");
    }
}

#[tokio::test]
async fn non_loopback_without_keys_refuses_to_start() {
    let mut config = demo();
    config.listen = "0.0.0.0:0".parse().unwrap();
    let err = pointsman::gateway::serve(config).await.unwrap_err();
    assert!(err.to_string().contains("without client keys"), "{err}");
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

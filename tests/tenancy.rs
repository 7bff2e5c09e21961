//! Tenants kept apart and every input bounded: the hostile inputs that were
//! confirmed on a running daemon, each re-run against one here.
//!
//! Where a bound holds by construction (the token counter's work, a store's
//! cap) the unit tests next to the code check it exactly; here the daemon is
//! checked to answer properly, with short configured limits and generous
//! margins where time is the point.

mod common;

use std::time::{Duration, Instant};

use pointsman::config::Config;
use pointsman_test_support::upstream::{Api, Reply, Upstream, UpstreamConfig};
use reqwest::StatusCode;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use common::{Daemon, demo, is_plan_request};

const HIGH: &str = "Design the architecture of a plugin system across multiple modules";
const PLAN: &str = r#"{"summary": "one step", "subtasks": [
  {"id": "a", "title": "A", "kind": "code", "instructions": "Do it.", "depends_on": []}]}"#;

fn sha256(key: &str) -> String {
    hex::encode(Sha256::digest(key.as_bytes()))
}

/// The demo's TOML with `extra` appended, instant simulated answers.
fn demo_with(extra: &str) -> Config {
    let text = pointsman::config::DEMO_TOML
        .replace("latency_ms = 20", "latency_ms = 0")
        .replace("tokens_per_second = 400", "tokens_per_second = 0");
    Config::parse(&format!("{text}\n{extra}")).unwrap()
}

fn two_clients(extra_a: &str) -> String {
    format!(
        "[[clients]]\nname = \"alice\"\nkey_sha256 = \"{}\"\nlabels = {{ team = \"core\" }}\n{extra_a}\n\
         [[clients]]\nname = \"bob\"\nkey_sha256 = \"{}\"\nlabels = {{ team = \"core\" }}\n",
        sha256("alice-key"),
        sha256("bob-key"),
    )
}

fn chat_body(text: &str) -> Value {
    json!({"model": "auto", "max_tokens": 50, "messages": [{"role": "user", "content": text}]})
}

async fn chat(daemon: &Daemon, key: &str, body: &Value) -> reqwest::Response {
    reqwest::Client::new()
        .post(format!("{}/v1/chat/completions", daemon.url))
        .bearer_auth(key)
        .json(body)
        .send()
        .await
        .unwrap()
}

// ---------------------------------------------------------------------------
// Token counting

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn huge_words_are_answered_not_a_crash() {
    let daemon = Daemon::start(demo()).await;
    // 200,000 letters took 7 s × 4 before; a 4 MiB word overflowed the
    // regex engine's stack and dropped the connection.
    for len in [200_000, 4 << 20] {
        let word = "a".repeat(len);
        let response = chat(&daemon, "k", &chat_body(&word)).await;
        let status = response.status();
        let body: Value = response.json().await.unwrap();
        assert!(
            status == StatusCode::OK || status.is_client_error(),
            "{len}: {status} {body}"
        );
        if status == StatusCode::OK {
            assert!(
                body["usage"]["prompt_tokens"].as_u64().unwrap() > 1_000,
                "{body}"
            );
        }
    }
    // The daemon still serves.
    let response = chat(&daemon, "k", &chat_body("Fix the typo in main.rs")).await;
    assert_eq!(response.status(), 200);
}

// ---------------------------------------------------------------------------
// Ownership

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_clients_task_is_not_found() {
    for config in [demo_with(&two_clients("")), demo()] {
        let daemon = Daemon::start(config).await;
        let client = reqwest::Client::new();
        let response = client
            .post(format!("{}/v1/tasks", daemon.url))
            .bearer_auth("alice-key")
            .json(&json!({"title": "t", "description": "Fix the typo in main.rs"}))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 202);
        let record: Value = response.json().await.unwrap();
        let id = record["id"].as_str().unwrap().to_string();
        assert!(id.len() >= 32, "ids are unguessable: {id}");
        for path in [format!("/v1/tasks/{id}"), format!("/v1/tasks/{id}/events")] {
            let theirs = client
                .get(format!("{}{path}", daemon.url))
                .bearer_auth("bob-key")
                .send()
                .await
                .unwrap();
            assert_eq!(theirs.status(), 404, "{path}");
            let mine = client
                .get(format!("{}{path}", daemon.url))
                .bearer_auth("alice-key")
                .send()
                .await
                .unwrap();
            assert_eq!(mine.status(), 200, "{path}");
        }
        let cancel = client
            .delete(format!("{}/v1/tasks/{id}", daemon.url))
            .bearer_auth("bob-key")
            .send()
            .await
            .unwrap();
        assert_eq!(cancel.status(), 404);
        let handle = daemon
            .state
            .tasks
            .get(
                &daemon.state.auth.check(&bearer("alice-key")).unwrap().owner,
                &id,
            )
            .unwrap();
        assert!(!handle.cancel.is_cancelled(), "bob could not cancel it");
    }
}

fn bearer(key: &str) -> axum::http::HeaderMap {
    let mut headers = axum::http::HeaderMap::new();
    headers.insert("authorization", format!("Bearer {key}").parse().unwrap());
    headers
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_id_never_reaches_another_clients_plan() {
    let upstream = Upstream::start(UpstreamConfig::default()).await;
    upstream.on(|r| {
        if is_plan_request(r) {
            Some(Reply::text(PLAN))
        } else {
            Some(Reply::text("done"))
        }
    });
    let mut config = common::seed_on(&upstream, Api::OpenAi);
    config.clients = demo_with(&two_clients("")).clients;
    let daemon = Daemon::start(config).await;
    let ask = |key: &'static str| {
        let url = daemon.url.clone();
        async move {
            reqwest::Client::new()
                .post(format!("{url}/v1/chat/completions"))
                .bearer_auth(key)
                .header("x-pointsman-session", "shared-session-id")
                .json(&chat_body(HIGH))
                .send()
                .await
                .unwrap()
        }
    };
    let first = ask("alice-key").await;
    assert_eq!(first.headers()["x-pointsman-plan"], "new");
    let again = ask("alice-key").await;
    assert_eq!(again.headers()["x-pointsman-plan"], "cached");
    // Bob names Alice's session: he gets a plan of his own.
    let other = ask("bob-key").await;
    assert_eq!(other.headers()["x-pointsman-plan"], "new");
    let plans = upstream
        .requests()
        .iter()
        .filter(|r| is_plan_request(r))
        .count();
    assert_eq!(plans, 2);
}

// ---------------------------------------------------------------------------
// Per-client limits

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_over_its_rate_gets_429_in_its_apis_shape() {
    let daemon = Daemon::start(demo_with(&two_clients("requests_per_minute = 2"))).await;
    for _ in 0..2 {
        assert_eq!(
            chat(&daemon, "alice-key", &chat_body("hi")).await.status(),
            200
        );
    }
    let refused = chat(&daemon, "alice-key", &chat_body("hi")).await;
    assert_eq!(refused.status(), 429);
    assert!(refused.headers().contains_key("retry-after"));
    let body: Value = refused.json().await.unwrap();
    assert_eq!(body["error"]["type"], "rate_limit_error", "{body}");
    let anthropic = reqwest::Client::new()
        .post(format!("{}/v1/messages", daemon.url))
        .header("x-api-key", "alice-key")
        .json(&chat_body("hi"))
        .send()
        .await
        .unwrap();
    assert_eq!(anthropic.status(), 429);
    let body: Value = anthropic.json().await.unwrap();
    assert_eq!(body["type"], "error");
    assert_eq!(body["error"]["type"], "rate_limit_error", "{body}");
    // Bob, on the same team but not the same key, is untouched.
    assert_eq!(
        chat(&daemon, "bob-key", &chat_body("hi")).await.status(),
        200
    );
}

// ---------------------------------------------------------------------------
// Task bounds

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn task_fields_and_counts_are_bounded() {
    let daemon = Daemon::start(demo_with("[tasks]\nmax_per_client = 3\n")).await;
    let client = reqwest::Client::new();
    let submit = |title: String| {
        let client = client.clone();
        let url = daemon.url.clone();
        async move {
            client
                .post(format!("{url}/v1/tasks"))
                .bearer_auth("k")
                .json(
                    &json!({"title": title, "description": "Fix the typo", "budget": {"usd": 0.0}}),
                )
                .send()
                .await
                .unwrap()
        }
    };
    // A 2 MiB title is refused, in the OpenAI error shape.
    let big = submit("t".repeat(2 << 20)).await;
    assert_eq!(big.status(), 413);
    let body: Value = big.json().await.unwrap();
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("max_title_bytes"),
        "{body}"
    );
    // Zero-budget tasks end at once; past three, the oldest is forgotten
    // (from memory: the ledger keeps its record).
    let mut ids = Vec::new();
    for i in 0..5 {
        let response = submit(format!("task {i}")).await;
        assert_eq!(response.status(), 202);
        let record: Value = response.json().await.unwrap();
        ids.push(record["id"].as_str().unwrap().to_string());
        // Let it end, so that it can be forgotten.
        common::wait_for_task(&daemon, Some("k"), &ids[i]).await;
    }
    assert_eq!(daemon.state.tasks.len(), 3);
    // Forgotten from memory, the oldest is still on record: the ledger
    // answers for it.
    let oldest = client
        .get(format!("{}/v1/tasks/{}", daemon.url, ids[0]))
        .bearer_auth("k")
        .send()
        .await
        .unwrap();
    assert_eq!(oldest.status(), 200);
    let record: Value = oldest.json().await.unwrap();
    assert_eq!(record["id"], ids[0].as_str());
}

// ---------------------------------------------------------------------------
// The listener

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn half_sent_requests_are_closed_and_others_still_served() {
    let daemon = Daemon::start(demo_with("[server]\nheader_timeout_ms = 200\n")).await;
    let addr = daemon.url.trim_start_matches("http://").to_string();
    let mut stalled = Vec::new();
    for _ in 0..100 {
        let mut tcp = TcpStream::connect(&addr).await.unwrap();
        tcp.write_all(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n")
            .await
            .unwrap();
        stalled.push(tcp);
    }
    // Served meanwhile.
    assert_eq!(chat(&daemon, "k", &chat_body("hi")).await.status(), 200);
    let deadline = Instant::now() + Duration::from_secs(5);
    for mut tcp in stalled {
        let mut buf = [0u8; 1024];
        let left = deadline.saturating_duration_since(Instant::now());
        let read = tokio::time::timeout(left, tcp.read(&mut buf)).await;
        // Closed: end of stream, or a reset; never still waiting.
        assert!(
            matches!(read, Ok(Ok(_)) | Ok(Err(_))),
            "a half-sent request was still open after 5 s"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_body_gets_413_not_a_reset() {
    let mut config = demo();
    config.max_body_bytes = 100_000;
    let daemon = Daemon::start(config).await;
    let body = format!(
        "{{\"model\": \"auto\", \"messages\": [{{\"role\": \"user\", \"content\": \"{}\"}}]}}",
        "x".repeat(3_000_000)
    );
    for path in ["/v1/chat/completions", "/v1/messages", "/v1/tasks"] {
        let response = reqwest::Client::new()
            .post(format!("{}{path}", daemon.url))
            .header("content-type", "application/json")
            .body(body.clone())
            .send()
            .await
            .unwrap_or_else(|e| panic!("{path}: the client saw {e} instead of a 413"));
        assert_eq!(response.status(), 413, "{path}");
    }
}

// ---------------------------------------------------------------------------
// The admin surface

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_endpoints_need_the_admin_key_when_one_is_set() {
    let extra = format!("[admin]\nkey_sha256 = \"{}\"\n", sha256("root-key"));
    let daemon = Daemon::start(demo_with(&extra)).await;
    let client = reqwest::Client::new();
    for path in ["/metrics", "/v1/policies", "/v1/providers"] {
        let url = format!("{}{path}", daemon.url);
        let anonymous = client.get(&url).send().await.unwrap();
        assert_eq!(anonymous.status(), 401, "{path}");
        let wrong = client.get(&url).bearer_auth("k").send().await.unwrap();
        assert_eq!(wrong.status(), 401, "{path}");
        let admin = client
            .get(&url)
            .bearer_auth("root-key")
            .send()
            .await
            .unwrap();
        assert_eq!(admin.status(), 200, "{path}");
    }
    // Serving needs no admin key.
    assert_eq!(chat(&daemon, "k", &chat_body("hi")).await.status(), 200);
}

#[tokio::test]
async fn no_listening_beyond_loopback_without_an_admin_key() {
    let mut config = demo_with(&two_clients(""));
    config.listen = "0.0.0.0:0".parse().unwrap();
    let error = pointsman::gateway::serve(config).await.unwrap_err();
    assert!(error.to_string().contains("[admin] key_sha256"), "{error}");
}

// ---------------------------------------------------------------------------
// Hostile upstreams

/// An OpenAI-format upstream on raw TCP that answers every request with
/// `head` and then `body_chunk` for ever (until the reader goes away).
async fn endless_upstream(head: &'static str, first: &'static str, again: &'static str) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/v1", listener.local_addr().unwrap());
    tokio::spawn(async move {
        loop {
            let Ok((mut tcp, _)) = listener.accept().await else {
                return;
            };
            tokio::spawn(async move {
                let mut request = Vec::new();
                let mut buf = [0u8; 8192];
                // Read the head and the (small) body.
                loop {
                    let Ok(n) = tcp.read(&mut buf).await else {
                        return;
                    };
                    if n == 0 {
                        return;
                    }
                    request.extend_from_slice(&buf[..n]);
                    let text = String::from_utf8_lossy(&request);
                    if let Some(end) = text.find("\r\n\r\n") {
                        let length: usize = text
                            .lines()
                            .find_map(|l| {
                                l.to_ascii_lowercase()
                                    .strip_prefix("content-length:")
                                    .map(|v| v.trim().parse().unwrap_or(0))
                            })
                            .unwrap_or(0);
                        if request.len() >= end + 4 + length {
                            break;
                        }
                    }
                }
                if tcp.write_all(head.as_bytes()).await.is_err()
                    || tcp.write_all(first.as_bytes()).await.is_err()
                {
                    return;
                }
                let chunk = again.repeat(64);
                for _ in 0..200_000 {
                    if tcp.write_all(chunk.as_bytes()).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    url
}

fn single_model_on(url: &str, max_answer_bytes: usize) -> Config {
    let text = format!(
        r#"
baseline_model = "m"
[policies]
[safe_route]
executor = "m"
[providers.up]
kind = "openai"
base_url = "{url}"
timeout_ms = 5000
max_answer_bytes = {max_answer_bytes}
[[models]]
id = "m"
provider = "up"
input_usd_per_mtok = 1.0
output_usd_per_mtok = 1.0
context_window = 100000
"#
    );
    Config::parse(&text).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_endless_answer_body_is_cut_off_with_an_error() {
    let url = endless_upstream(
        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n\r\n",
        "{\"id\": \"x\", \"object\": \"chat.completion\", \"choices\": [], \"padding\": \"",
        "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
    )
    .await;
    let daemon = Daemon::start(single_model_on(&url, 1 << 20)).await;
    let body = json!({"model": "m", "messages": [{"role": "user", "content": "hi"}]});
    let response = chat(&daemon, "k", &body).await;
    assert_eq!(response.status(), 502);
    let error: Value = response.json().await.unwrap();
    assert!(
        error["error"]["message"]
            .as_str()
            .unwrap()
            .contains("max_answer_bytes"),
        "{error}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_after_a_streams_end_are_not_relayed() {
    let chunk = "data: {\"id\":\"x\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"m\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"hi\"},\"finish_reason\":null}]}\n\n";
    let url = endless_upstream(
        "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n\r\n",
        Box::leak(
            format!(
                "{chunk}data: {{\"id\":\"x\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"m\",\"choices\":[{{\"index\":0,\"delta\":{{}},\"finish_reason\":\"stop\"}}]}}\n\ndata: [DONE]\n\n"
            )
            .into_boxed_str(),
        ),
        Box::leak(chunk.to_string().into_boxed_str()),
    )
    .await;
    let daemon = Daemon::start(single_model_on(&url, 1 << 20)).await;
    let body =
        json!({"model": "m", "stream": true, "messages": [{"role": "user", "content": "hi"}]});
    let response = tokio::time::timeout(Duration::from_secs(10), async {
        chat(&daemon, "k", &body).await.text().await.unwrap()
    })
    .await
    .expect("the stream ended after its last event");
    // One content event before [DONE], none of the endless ones after.
    assert_eq!(
        response.matches("\"content\":\"hi\"").count(),
        1,
        "{response}"
    );
    assert!(response.contains("[DONE]"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_error_event_in_a_stream_does_not_quote_the_providers_key() {
    let key = "sk-provider-secret-0123456789";
    // SAFETY: set before the daemon reads it; this test binary's only
    // writer of this variable.
    unsafe { std::env::set_var("POINTSMAN_TEST_TENANCY_KEY", key) };
    let url = endless_upstream(
        "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n\r\n",
        "data: {\"error\": {\"message\": \"invalid key sk-provider-secret-0123456789\", \"type\": \"invalid_request_error\"}}\n\n",
        ": keep-alive\n\n",
    )
    .await;
    let mut config = single_model_on(&url, 1 << 20);
    config.providers.get_mut("up").unwrap().api_key_env = Some("POINTSMAN_TEST_TENANCY_KEY".into());
    let daemon = Daemon::start(config).await;
    let body =
        json!({"model": "m", "stream": true, "messages": [{"role": "user", "content": "hi"}]});
    let text = tokio::time::timeout(Duration::from_secs(10), async {
        chat(&daemon, "k", &body).await.text().await.unwrap()
    })
    .await
    .unwrap();
    assert!(!text.contains(key), "{text}");
}

/// Threads of process `pid` now.
fn threads(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/task")).map_or(0, |d| d.count())
}

/// A burst of requests whose bodies are parsed off the async workers (over
/// 64 KiB each) runs on a bounded set of threads, whatever the burst's
/// size: 4 per core, at least 8, beyond the threads the daemon had.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_large_bodies_runs_on_a_bounded_set_of_threads() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("pointsman.toml");
    let ledger = format!("sqlite:{}", dir.path().join("ledger.db").display());
    std::fs::write(
        &path,
        format!(
            "{}\n[ledger]\nurl = \"{ledger}\"\n",
            pointsman::config::DEMO_TOML
        ),
    )
    .unwrap();
    let daemon = common::Process::start(&path, common::free_port()).await;
    let pid = daemon.pid();
    let before = threads(pid);
    let bound = std::thread::available_parallelism().map_or(8, |n| (4 * n.get()).max(8));
    let most = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(before));
    let watching = {
        let most = most.clone();
        tokio::spawn(async move {
            loop {
                most.fetch_max(threads(pid), std::sync::atomic::Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        })
    };
    let body = json!({"model": "glm-4.7", "max_tokens": 8,
        "messages": [{"role": "user", "content": "word ".repeat(60_000)}]})
    .to_string();
    let http = reqwest::Client::new();
    let burst = (0..4 * bound).map(|_| {
        http.post(format!("{}/v1/chat/completions", daemon.url))
            .header("content-type", "application/json")
            .body(body.clone())
            .send()
    });
    for answer in futures::future::join_all(burst).await {
        assert_eq!(answer.unwrap().status(), StatusCode::OK);
    }
    watching.abort();
    let most = most.load(std::sync::atomic::Ordering::Relaxed);
    assert!(
        most <= before + bound,
        "{most} threads during the burst, {before} before, bound {bound}"
    );
}

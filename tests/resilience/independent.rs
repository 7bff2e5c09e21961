//! Faults as an independent server (llmposter) makes them: its error bodies
//! (429, 503, 400), a corrupt body ("overloaded" as plain text) and a stream
//! it cuts after three frames, on each upstream API it speaks (OpenAI chat,
//! Anthropic, and the Responses API passed through), for each client API,
//! streamed and not. A failing model is retried and then escalated to a
//! good one; a 400 is the client's and goes back as one; a cut stream ends
//! in an error event.

use super::*;
use client::{API, Api, Gateway, INVALID, check_answer, check_broken, check_error, check_no_key};
use pointsman_test_support::llmposter::Llmposter;
use setup::{Knobs, config, model};

const FIXTURES: &str = r#"fixtures:
  - match: { model: "up-503" }
    error: { status: 503, message: "Service unavailable" }
  - match: { model: "up-429" }
    error: { status: 429, message: "Rate limit exceeded" }
  - match: { model: "up-400" }
    error: { status: 400, message: "Invalid request" }
  - match: { model: "up-corrupt" }
    response: { content: "independent echo: fine" }
    failure: { corrupt_body: true }
  - match: { model: "up-cut" }
    response: { content: "independent echo: fine, and then a good many more words to stream" }
    failure: { truncate_after_frames: 3 }
  - match: { model: "up-good" }
    response: { content: "independent echo: fine" }
"#;

/// Models failing as their names say, each escalated to `backup`.
const FAULTS: [&str; 4] = ["503", "429", "corrupt", "cut"];

/// How the daemon reaches the server.
#[derive(Clone, Copy, Debug)]
enum Upstream {
    Chat,
    Anthropic,
    Responses,
}

fn daemon_config(server: &Llmposter, upstream: Upstream) -> Config {
    let (kind, url, responses) = match upstream {
        Upstream::Chat => ("openai", server.openai_url(), false),
        Upstream::Anthropic => ("anthropic", server.anthropic_url(), false),
        Upstream::Responses => ("openai", server.openai_url(), true),
    };
    let providers = format!(
        "[providers.posed]\nkind = \"{kind}\"\nbase_url = \"{url}\"\nresponses = {responses}\n\
         timeout_ms = {TIMEOUT_MS}\nconnect_timeout_ms = 200\n\n"
    );
    let mut models = String::new();
    for fault in FAULTS.iter().chain(&["400"]) {
        models += &model(
            &format!("p-{fault}"),
            "posed",
            &format!("upstream = \"up-{fault}\""),
        );
    }
    models += &model("backup", "posed", "upstream = \"up-good\"");
    let knobs = Knobs {
        escalation: Some("backup"),
        ..Knobs::default()
    };
    config("executor = \"backup\"", &knobs, &providers, &models)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_independent_servers_faults_are_retried_escalated_or_returned() {
    let server = Llmposter::start(FIXTURES).await;
    let mut problems = Vec::new();
    for upstream in [Upstream::Chat, Upstream::Anthropic, Upstream::Responses] {
        let daemon = Daemon::start(daemon_config(&server, upstream)).await;
        let gateway = Gateway::new(&daemon);
        for stream in [false, true] {
            for fault in FAULTS.iter().chain(&["400"]) {
                let model = format!("p-{fault}");
                let label = format!("{upstream:?} upstream, {model}, stream {stream}");
                let results: Vec<Result<(), String>> = match upstream {
                    Upstream::Responses => {
                        vec![check_responses(&gateway, &model, fault, stream).await]
                    }
                    _ => {
                        let mut out = Vec::new();
                        for api in API {
                            let answer = gateway.ask(api, &model, "fine", stream, &[]).await;
                            out.push(check_no_key(&answer).and_then(|()| {
                                check_chat(api, fault, stream, &answer)
                                    .map_err(|e| format!("{api:?} client: {e}"))
                            }));
                        }
                        out
                    }
                };
                problems.extend(
                    results
                        .into_iter()
                        .filter_map(|r| r.err().map(|e| format!("{label}: {e}"))),
                );
            }
        }
        daemon.shutdown().await;
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// What a chat-completions or messages client should get for `fault`.
fn check_chat(api: Api, fault: &str, stream: bool, answer: &client::Answer) -> Result<(), String> {
    match fault {
        "400" => check_error(api, answer, INVALID),
        "cut" if stream => check_broken(api, answer),
        "cut" => check_answer(api, stream, answer, "fine"),
        _ => {
            check_answer(api, stream, answer, "fine")?;
            match answer.header("x-pointsman-model") {
                Some("backup") => Ok(()),
                other => Err(format!("served by {other:?}, not the escalation model")),
            }
        }
    }
}

/// The same through `/v1/responses`, passed through to the server.
async fn check_responses(
    gateway: &Gateway,
    model: &str,
    fault: &str,
    stream: bool,
) -> Result<(), String> {
    let response = gateway
        .http
        .post(format!("{}/v1/responses", gateway.url))
        .bearer_auth("sk-client")
        .json(&json!({"model": model, "input": "fine", "stream": stream}))
        .send()
        .await
        .map_err(|e| e.to_string())?;
    let status = response.status().as_u16();
    let served = response
        .headers()
        .get("x-pointsman-model")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let passed = response.headers().contains_key("x-pointsman-passthrough");
    let body = response.text().await.map_err(|e| e.to_string())?;
    if fault == "400" {
        let error: Value = serde_json::from_str(&body).map_err(|e| format!("{e}: {body}"))?;
        return (status == 400 && error["error"]["type"] == "invalid_request_error")
            .then_some(())
            .ok_or(format!("expected a 400, got {status}: {body}"));
    }
    if status != 200 || !passed {
        return Err(format!("{status}, passed through {passed}: {body}"));
    }
    let last = if stream {
        let frames = client::sse(&body);
        let (name, data) = frames.last().ok_or(format!("no event: {body}"))?;
        let data: Value = serde_json::from_str(data).map_err(|e| format!("{e}: {data}"))?;
        if fault == "cut" {
            return (name == "response.failed" && data["response"]["status"] == "failed")
                .then_some(())
                .ok_or(format!("a cut stream must end failed: {body}"));
        }
        if name != "response.completed" {
            return Err(format!("not completed: {body}"));
        }
        data["response"].clone()
    } else {
        serde_json::from_str(&body).map_err(|e| format!("{e}: {body}"))?
    };
    let text = last["output"][0]["content"][0]["text"]
        .as_str()
        .unwrap_or_default();
    if !text.contains("echo: fine") {
        return Err(format!("not the server's text: {last}"));
    }
    let expected = if fault == "cut" { model } else { "backup" };
    match served.as_deref() {
        Some(m) if m == expected => Ok(()),
        other => Err(format!("served by {other:?}, not {expected}")),
    }
}

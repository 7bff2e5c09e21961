//! The real Codex CLI, unmodified (`codex exec`, pinned in
//! `tests/agents/codex`), talking to the daemon's `/v1/responses` with
//! `model = "auto"`, in plan mode, with its executors on an OpenAI-format
//! and on an Anthropic-format upstream, and on one that speaks the
//! Responses API itself (Codex's requests passed through, its encrypted
//! reasoning making the round trip): the scripted executor answers the
//! task with a call of Codex's shell tool that edits a file, Codex runs it
//! and sends the output back, and the executor then finishes. The file is
//! edited, the session (Codex's own id, from `prompt_cache_key`) is planned
//! once, and the requests are priced. Then the same against an independent
//! mock server (llmposter) in each of those three APIs.

mod common;

use std::sync::{Arc, Mutex};

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use pointsman_test_support::codex::{CODEX_KEY_VARIABLE, run_codex_async};
use pointsman_test_support::llmposter::Llmposter;
use pointsman_test_support::upstream::{Api, RecordedRequest, Reply, Upstream, UpstreamConfig};
use serde_json::{Value, json};

use common::{Daemon, is_plan_request, system_text};

const ORIGINAL: &str = "def greet():\n    return \"hi\"\n";
const EDITED: &str = "def greet():\n    return \"hello, plugins\"\n";
const EDIT: &str = "sed -i 's/return \"hi\"/return \"hello, plugins\"/' greeting.py";

/// A task the seed matrix plans: a new design across modules.
const TASK: &str = "Design the architecture of a plugin system across multiple modules. Start by making greet() in greeting.py return the text hello, plugins.";

/// Whether the request's last message is a tool result (the model is being
/// told what its call did).
fn answers_a_tool_call(r: &RecordedRequest) -> bool {
    let Some(last) = r.messages().last() else {
        return false;
    };
    last["role"] == "tool"
        || last["content"]
            .as_array()
            .is_some_and(|blocks| blocks.iter().any(|b| b["type"] == "tool_result"))
}

/// The call of Codex's shell tool that runs `command`, in the shape of
/// whichever shell tool this Codex offers.
fn shell_call(r: &RecordedRequest, command: &str) -> Option<Reply> {
    let tools = r.tool_names();
    let has = |name: &str| tools.iter().any(|t| t == name);
    let (name, arguments) = if has("exec_command") {
        ("exec_command", json!({"cmd": command}))
    } else if has("shell_command") {
        ("shell_command", json!({"command": command}))
    } else if has("shell") {
        ("shell", json!({"command": ["bash", "-lc", command]}))
    } else {
        return None;
    };
    Some(Reply::tool_call(name, arguments))
}

/// The planner plans; the executor edits through the shell tool, then (told
/// the command's output) finishes with text.
fn script(upstream: &Upstream) {
    upstream.on(|r| {
        if is_plan_request(r) {
            let plan = json!({"summary": format!("[plan {}]", r.seq), "subtasks": [
                {"id": "code", "kind": "code", "title": "Edit greeting.py", "instructions": "Change the greeting.", "depends_on": []}]});
            return Some(Reply::text(plan.to_string()));
        }
        if answers_a_tool_call(r) {
            return Some(Reply::text("greet() now returns hello, plugins."));
        }
        shell_call(r, EDIT)
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn codex_edits_a_file_through_the_daemon_on_each_upstream_api() {
    for executors in [Api::OpenAi, Api::Anthropic, Api::Responses] {
        let upstream = Upstream::start(UpstreamConfig::default()).await;
        script(&upstream);
        let daemon = Daemon::start(common::seed_on(&upstream, executors)).await;
        let context = format!("executors on {executors:?}");

        let dir = tempfile::tempdir().unwrap();
        let work = dir.path();
        std::fs::write(work.join("greeting.py"), ORIGINAL).unwrap();
        let tap = Tap::start(&daemon.url).await;
        let out = run_codex_async(
            work,
            &format!("{}/v1", tap.url),
            "auto",
            TASK,
            &[(CODEX_KEY_VARIABLE, "sk-codex-test")],
        )
        .await;
        let transcript = format!(
            "{context}: {:?}\n--- stdout\n{}\n--- stderr\n{}",
            out.status, out.stdout, out.stderr
        );
        assert!(out.status.is_some_and(|s| s.success()), "{transcript}");
        assert_eq!(
            std::fs::read_to_string(work.join("greeting.py")).unwrap(),
            EDITED,
            "{transcript}"
        );
        assert!(
            out.stdout.contains("greet() now returns hello, plugins."),
            "{transcript}"
        );

        let requests = upstream.requests();
        let (plans, executed): (Vec<_>, Vec<_>) = requests.iter().partition(|r| is_plan_request(r));
        assert_eq!(
            plans.len(),
            1,
            "{transcript}\none plan per Codex session: {plans:?}"
        );
        let plan = plans[0];
        assert!(
            plan.last_user_text()
                .unwrap()
                .contains("Design the architecture of a plugin system"),
            "{context}: {:?}",
            plan.last_user_text()
        );
        // The edit, then the answer to its output; both planned by the
        // one plan, streamed as Codex asked.
        assert_eq!(executed.len(), 2, "{transcript}\n{executed:?}");
        for request in &executed {
            assert_eq!(request.api, Some(executors), "{context}");
            assert_eq!(request.model(), Some("glm-4.7"), "{context}");
            assert!(request.is_stream(), "{context}");
            let system = system_text(request);
            assert!(
                system.contains(&format!("[plan {}]", plan.seq)),
                "{context}: the plan is added"
            );
        }
        let second = executed[1];
        assert!(
            answers_a_tool_call(second),
            "{context}: {:?}",
            second.messages()
        );
        let tool_calls = assistant_tool_calls(second);
        assert_eq!(
            tool_calls.len(),
            1,
            "{context}: the call went back: {:?}",
            second.messages()
        );
        if executors == Api::Responses {
            // Codex asked for encrypted reasoning and sent the upstream's
            // item back with the call, as it came.
            let reasoning: Vec<&Value> = second.body["input"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|item| item["type"] == "reasoning")
                .collect();
            assert!(
                reasoning
                    .iter()
                    .any(|item| item["encrypted_content"] == format!("enc_up{}", executed[0].seq)),
                "{context}: {reasoning:?}"
            );
        }

        // What Codex was told: the route in the headers, the cost in the
        // final event of each stream.
        let exchanges = tap.exchanges.lock().unwrap().clone();
        assert_eq!(exchanges.len(), 2, "{context}");
        for (n, (headers, body)) in exchanges.iter().enumerate() {
            let context = format!("{context}, answer {}", n + 1);
            assert_eq!(headers["x-pointsman-model"], "glm-4.7", "{context}");
            assert_eq!(headers["x-pointsman-tier"], "plan", "{context}");
            let source = if n == 0 { "new" } else { "cached" };
            assert_eq!(headers["x-pointsman-plan"], source, "{context}");
            if executors == Api::Responses {
                assert_eq!(headers["x-pointsman-passthrough"], "responses", "{context}");
                assert!(
                    headers.get("x-pointsman-dropped-tools").is_none(),
                    "{context}"
                );
            } else {
                assert_eq!(
                    headers["x-pointsman-dropped-tools"], "web_search",
                    "{context}"
                );
            }
            let last = final_event(body);
            assert_eq!(last["type"], "response.completed", "{context}: {body}");
            let cost = &last["pointsman"];
            assert_eq!(cost["model"], "glm-4.7", "{context}: {last}");
            let usd = |v: &Value| v.as_str().and_then(|v| v.parse::<f64>().ok()).unwrap();
            assert!(usd(&cost["cost_usd"]) > 0.0, "{context}: {cost}");
            assert!(
                usd(&cost["baseline_cost_usd"]) > usd(&cost["cost_usd"]),
                "{context}: {cost}"
            );
            let planner = usd(&cost["planner_cost_usd"]);
            assert_eq!(
                planner > 0.0,
                n == 0,
                "{context}: only the first turn pays for the plan"
            );
        }
        daemon.shutdown().await;
    }
}

/// The tool calls of the assistant turns of an upstream request, in either
/// format.
fn assistant_tool_calls(r: &RecordedRequest) -> Vec<Value> {
    r.messages()
        .iter()
        .filter(|m| m["role"] == "assistant")
        .flat_map(|m| {
            let openai = m["tool_calls"].as_array().cloned().unwrap_or_default();
            let anthropic = m["content"]
                .as_array()
                .map(|blocks| {
                    blocks
                        .iter()
                        .filter(|b| b["type"] == "tool_use")
                        .cloned()
                        .collect()
                })
                .unwrap_or_else(Vec::new);
            openai.into_iter().chain(anthropic)
        })
        .collect()
}

/// The last `data:` event of an SSE body.
fn final_event(body: &str) -> Value {
    let data = body
        .lines()
        .rev()
        .find_map(|l| l.strip_prefix("data: "))
        .unwrap_or_else(|| panic!("no event in {body}"));
    serde_json::from_str(data).unwrap()
}

/// A pass-through between Codex and the daemon that keeps each answer's
/// headers and body, to check what Codex was told.
struct Tap {
    url: String,
    exchanges: Arc<Mutex<Vec<(HeaderMap, String)>>>,
}

impl Tap {
    async fn start(daemon: &str) -> Tap {
        let exchanges = Arc::new(Mutex::new(Vec::new()));
        let state = (
            daemon.to_string(),
            exchanges.clone(),
            reqwest::Client::new(),
        );
        let app = axum::Router::new()
            .fallback(forward)
            .with_state(Arc::new(state));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Tap { url, exchanges }
    }
}

type TapState = Arc<(
    String,
    Arc<Mutex<Vec<(HeaderMap, String)>>>,
    reqwest::Client,
)>;

async fn forward(
    State(state): State<TapState>,
    uri: axum::http::Uri,
    headers: HeaderMap,
    body: Bytes,
) -> (StatusCode, HeaderMap, Body) {
    let (daemon, exchanges, client) = &*state;
    let mut request = client.post(format!("{daemon}{}", uri.path())).body(body);
    for (name, value) in &headers {
        if name != "host" && name != "content-length" {
            request = request.header(name, value);
        }
    }
    let answer = request.send().await.unwrap();
    let status = answer.status();
    let mut out_headers = answer.headers().clone();
    out_headers.remove("content-length");
    out_headers.remove("transfer-encoding");
    let text = answer.text().await.unwrap();
    exchanges
        .lock()
        .unwrap()
        .push((out_headers.clone(), text.clone()));
    (status, out_headers, Body::from(text))
}

/// Codex against the built-in demo (simulated providers, no config beyond
/// its provider entry), as a new user would first try it: the task
/// completes without an API error and the simulated executor's answer is
/// shown.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn codex_completes_a_task_against_the_demo() {
    let daemon = Daemon::start(common::demo()).await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("main.rs"), "fn mian() {}\n").unwrap();
    let out = run_codex_async(
        dir.path(),
        &format!("{}/v1", daemon.url),
        "auto",
        "Fix the typo in main.rs",
        &[(CODEX_KEY_VARIABLE, "sk-codex-demo")],
    )
    .await;
    let transcript = format!(
        "{:?}\n--- stdout\n{}\n--- stderr\n{}",
        out.status, out.stdout, out.stderr
    );
    assert!(out.status.is_some_and(|s| s.success()), "{transcript}");
    assert!(
        out.stdout.contains("Simulated answer from glm-4.7"),
        "{transcript}"
    );
    // Codex logs its own blocked attempts to reach the internet (plugin
    // sync) as warnings; an API error would be an ERROR line.
    assert!(!out.stderr.contains("ERROR"), "{transcript}");
}

/// llmposter's script for a typo fix: a call of Codex's shell tool, then
/// (once the call has been made) a closing text. Its scenario state lives
/// in the server, so each run gets its own.
const INDEPENDENT_FIXTURES: &str = r#"fixtures:
  - match:
      user_message: "Fix the typo"
    scenario: { name: edit, required_state: "", set_state: "edited" }
    response:
      tool_calls:
        - name: exec_command
          arguments: { cmd: "sed -i 's/mian/main/' main.rs" }
  - scenario: { name: edit, required_state: "edited", set_state: "done" }
    response:
      content: "Fixed the typo in main.rs."
"#;

/// Codex against a daemon whose one model is on an independent mock
/// server (llmposter), reached in each API it speaks: chat completions and
/// Anthropic messages by translation, the Responses API passed through.
/// The edit lands and the task ends without an API error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn codex_edits_a_file_through_an_independent_upstream() {
    for api in [Api::OpenAi, Api::Anthropic, Api::Responses] {
        let context = format!("llmposter as {api:?}");
        let server = Llmposter::start(INDEPENDENT_FIXTURES).await;
        let config = common::on_llmposter(&server, api, "");
        let daemon = Daemon::start(config).await;
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("main.rs"), "fn mian() {}\n").unwrap();
        let tap = Tap::start(&daemon.url).await;
        let out = run_codex_async(
            dir.path(),
            &format!("{}/v1", tap.url),
            "posed",
            "Fix the typo in main.rs",
            &[(CODEX_KEY_VARIABLE, "sk-codex-independent")],
        )
        .await;
        let transcript = format!(
            "{context}: {:?}\n--- stdout\n{}\n--- stderr\n{}",
            out.status, out.stdout, out.stderr
        );
        assert!(out.status.is_some_and(|s| s.success()), "{transcript}");
        assert!(!out.stderr.contains("ERROR"), "{transcript}");
        assert_eq!(
            std::fs::read_to_string(dir.path().join("main.rs")).unwrap(),
            "fn main() {}\n",
            "{transcript}"
        );
        assert!(
            out.stdout.contains("Fixed the typo in main.rs."),
            "{transcript}"
        );
        let exchanges = tap.exchanges.lock().unwrap().clone();
        assert_eq!(exchanges.len(), 2, "{transcript}");
        for (headers, _) in &exchanges {
            assert_eq!(
                headers.contains_key("x-pointsman-passthrough"),
                api == Api::Responses,
                "{context}"
            );
        }
        daemon.shutdown().await;
    }
}

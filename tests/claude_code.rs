//! The real Claude Code, unmodified, against the daemon: `claude -p` asks
//! for its own model name (mapped to the router by the demo's
//! `[[model_names]]`), the router plans the task once for Claude Code's
//! session, and the scripted executor reads then edits a file through
//! Claude Code's own tools, on an Anthropic-format and on an OpenAI-format
//! upstream. A recording proxy between Claude Code and the daemon keeps the
//! daemon's answers, to check their routing headers and cost summaries.
//! Then the same agent against an independent mock server (llmposter) as
//! the upstream, in both formats.

mod common;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use pointsman_test_support::claude_code::run_claude_async;
use pointsman_test_support::llmposter::Llmposter;
use pointsman_test_support::upstream::{Api, RecordedRequest, Reply, Upstream, UpstreamConfig};
use serde_json::{Value, json};

use common::{Daemon, is_plan_request, system_text};

const ORIGINAL: &str = "fn main() {\n    println!(\"Helo, world!\");\n}\n";
const EDITED: &str = "fn main() {\n    println!(\"Hello, world!\");\n}\n";

/// High by the seed matrix's rules (new design across modules), whatever
/// the size of Claude Code's system prompt and tools.
const PROMPT: &str = "Design a plugin architecture across the modules of this project, starting by fixing the typo in main.rs";

/// The tool results in an upstream request, in either format.
fn tool_results(r: &RecordedRequest) -> usize {
    r.messages()
        .iter()
        .map(|m| match (m["role"].as_str(), &m["content"]) {
            (Some("tool"), _) => 1,
            (Some("user"), Value::Array(blocks)) => {
                blocks.iter().filter(|b| b["type"] == "tool_result").count()
            }
            _ => 0,
        })
        .sum()
}

/// The planner gets a plan; Claude Code's main loop (the requests offering
/// its `Edit` tool) reads the file, then edits it, then says it is done;
/// anything else gets a short text.
fn script(upstream: &Upstream, file: &Path) {
    let file = file.display().to_string();
    upstream.on(move |r| {
        if is_plan_request(r) {
            let plan = json!({"summary": "[plan] fix the typo, then design the plugins", "subtasks": [
                {"id": "fix", "kind": "code", "title": "Fix", "instructions": "Fix the typo in main.rs.", "depends_on": []},
                {"id": "design", "kind": "design", "title": "Design", "instructions": "Sketch the plugin interface.", "depends_on": ["fix"]}]});
            return Some(Reply::text(plan.to_string()));
        }
        if !r.tool_names().iter().any(|t| t == "Edit") {
            return Some(Reply::text("Plugin architecture"));
        }
        Some(match tool_results(r) {
            0 => Reply::tool_call("Read", json!({"file_path": file})),
            1 => Reply::tool_call(
                "Edit",
                json!({"file_path": file, "old_string": "Helo", "new_string": "Hello"}),
            ),
            _ => Reply::text("Fixed the typo in main.rs."),
        })
    });
}

/// One answer of the daemon, as Claude Code received it.
#[derive(Debug, Clone)]
struct Exchange {
    path: String,
    status: StatusCode,
    headers: HeaderMap,
    body: String,
}

/// Forwards everything to the daemon and records the answers (buffered:
/// Claude Code gets each stream whole, which it reads the same way).
#[derive(Clone)]
struct Proxy {
    daemon: String,
    client: reqwest::Client,
    log: Arc<Mutex<Vec<Exchange>>>,
}

async fn forward(State(proxy): State<Proxy>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let path = parts
        .uri
        .path_and_query()
        .map_or("/".to_string(), |p| p.to_string());
    let body = axum::body::to_bytes(body, 64 << 20).await.unwrap();
    let mut headers = parts.headers.clone();
    headers.remove("host");
    let answer = proxy
        .client
        .request(parts.method, format!("{}{path}", proxy.daemon))
        .headers(headers)
        .body(body)
        .send()
        .await
        .unwrap();
    let status = answer.status();
    let mut headers = answer.headers().clone();
    let bytes = answer.bytes().await.unwrap();
    proxy.log.lock().unwrap().push(Exchange {
        path,
        status,
        headers: headers.clone(),
        body: String::from_utf8_lossy(&bytes).into_owned(),
    });
    headers.remove("content-length");
    headers.remove("transfer-encoding");
    let mut response = Response::new(Body::from(bytes));
    *response.status_mut() = status;
    *response.headers_mut() = headers;
    response
}

async fn start_proxy(daemon: &Daemon) -> (String, Arc<Mutex<Vec<Exchange>>>) {
    let log = Arc::new(Mutex::new(Vec::new()));
    let proxy = Proxy {
        daemon: daemon.url.clone(),
        client: reqwest::Client::new(),
        log: log.clone(),
    };
    let app = axum::Router::new().fallback(forward).with_state(proxy);
    let listener = tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0)))
        .await
        .unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (url, log)
}

/// Checks that `claude -p --output-format json` ended well, with a result
/// that says `expected`.
fn succeeded(out: &pointsman_test_support::Captured, expected: &str, context: &str) {
    assert!(out.status.is_some_and(|s| s.success()), "{context}");
    let result: Value = serde_json::from_str(out.stdout.trim()).expect(context);
    assert_eq!(result["is_error"], false, "{context}");
    assert!(
        result["result"]
            .as_str()
            .is_some_and(|r| r.contains(expected)),
        "{context}"
    );
}

/// The JSON of the `: pointsman {...}` cost comment of a stream.
fn cost_summary(body: &str) -> Option<Value> {
    let line = body.lines().find(|l| l.starts_with(": pointsman "))?;
    serde_json::from_str(&line[": pointsman ".len()..]).ok()
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> &'a str {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
}

/// Runs Claude Code on a file with a typo against the daemon, with the
/// executors on `executors`' API; checks the edit, the single plan and the
/// costs, and returns the executors' requests.
async fn fix_the_typo(executors: Api) -> Vec<RecordedRequest> {
    let upstream = Upstream::start(UpstreamConfig::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let work: PathBuf = dir.path().canonicalize().unwrap();
    let file = work.join("main.rs");
    std::fs::write(&file, ORIGINAL).unwrap();
    script(&upstream, &file);
    let daemon = Daemon::start(common::seed_on(&upstream, executors)).await;
    let (proxy, log) = start_proxy(&daemon).await;

    let out = run_claude_async(
        &work,
        PROMPT,
        &["--permission-mode", "acceptEdits"],
        &proxy,
        "sk-ant-claude-code-test",
    )
    .await;
    let context = format!(
        "claude on {executors:?}: {:?}\n--- stdout\n{}\n--- stderr\n{}\n--- upstream\n{:#?}",
        out.status,
        out.stdout,
        out.stderr,
        upstream.requests()
    );
    succeeded(&out, "Fixed the typo", &context);
    assert_eq!(std::fs::read_to_string(&file).unwrap(), EDITED, "{context}");

    // One plan for Claude Code's session: the first turn makes it, the
    // turns answering tool calls keep the task's tier and reuse it.
    let requests = upstream.requests();
    let (plans, executed): (Vec<_>, Vec<_>) = requests.iter().partition(|r| is_plan_request(r));
    assert_eq!(plans.len(), 1, "{context}");
    let main_loop: Vec<&RecordedRequest> = executed
        .iter()
        .copied()
        .filter(|r| r.tool_names().iter().any(|t| t == "Edit"))
        .collect();
    assert_eq!(main_loop.len(), 3, "read, edit, done: {context}");
    for request in &main_loop {
        assert_eq!(request.api, Some(executors), "{context}");
        assert!(
            system_text(request).contains("A planner model has broken this task down"),
            "{context}"
        );
    }

    let exchanges = log.lock().unwrap().clone();
    let turns: Vec<&Exchange> = exchanges
        .iter()
        .filter(|e| e.path.starts_with("/v1/messages"))
        .collect();
    assert!(turns.len() >= 3, "{exchanges:#?}");
    for turn in &turns {
        assert_eq!(turn.status, StatusCode::OK, "{turn:#?}");
    }
    let plan_turns: Vec<&&Exchange> = turns
        .iter()
        .filter(|e| header(&e.headers, "x-pointsman-tier") == "plan")
        .collect();
    assert_eq!(plan_turns.len(), 3, "{turns:#?}");
    let sources: Vec<&str> = plan_turns
        .iter()
        .map(|e| header(&e.headers, "x-pointsman-plan"))
        .collect();
    assert_eq!(sources, ["new", "cached", "cached"], "{turns:#?}");
    assert!(
        header(&plan_turns[2].headers, "x-pointsman-reason").contains("continues a plan task"),
        "{turns:#?}"
    );
    for (i, turn) in plan_turns.iter().enumerate() {
        // Claude Code streams: the costs are in the stream's summary.
        let summary = cost_summary(&turn.body).unwrap_or_else(|| panic!("{turn:#?}"));
        let cost: f64 = summary["cost_usd"].as_str().unwrap().parse().unwrap();
        let baseline: f64 = summary["baseline_cost_usd"]
            .as_str()
            .unwrap()
            .parse()
            .unwrap();
        assert!(cost > 0.0 && baseline > cost, "{summary}");
        let planner: f64 = summary["planner_cost_usd"]
            .as_str()
            .unwrap()
            .parse()
            .unwrap();
        assert_eq!(
            planner > 0.0,
            i == 0,
            "the first turn pays the plan: {summary}"
        );
        assert!(
            turn.body.contains("\"id\":\"msg_"),
            "an Anthropic message id: {}",
            turn.body
        );
    }
    main_loop.into_iter().cloned().collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn claude_code_edits_a_file_through_an_anthropic_upstream() {
    let requests = fix_the_typo(Api::Anthropic).await;
    for request in &requests {
        // Claude Code's request goes through as it sent it: its betas, its
        // system message inside the conversation, its thinking settings.
        assert!(
            request
                .header("anthropic-beta")
                .is_some_and(|b| b.contains("claude-code-20250219")),
            "{request:?}"
        );
        assert!(
            request.messages().iter().any(|m| m["role"] == "system"),
            "{request:?}"
        );
        assert!(request.body.get("thinking").is_some(), "{request:?}");
        assert!(request.body.get("output_config").is_some(), "{request:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn claude_code_edits_a_file_through_an_openai_upstream() {
    let requests = fix_the_typo(Api::OpenAi).await;
    for request in &requests {
        // The system turn Claude Code puts after its first message stays
        // there; Anthropic-only fields are not sent.
        let roles: Vec<&str> = request
            .messages()
            .iter()
            .filter_map(|m| m["role"].as_str())
            .collect();
        let first_user = roles.iter().position(|r| *r == "user").unwrap();
        assert!(
            roles[first_user..].contains(&"system"),
            "{roles:?}: {request:?}"
        );
        for dropped in ["thinking", "context_management", "output_config"] {
            assert!(
                request.body.get(dropped).is_none(),
                "{dropped}: {request:?}"
            );
        }
    }
}

/// Claude Code against a daemon whose one model is on an independent mock
/// server (llmposter), reached as an Anthropic and as an OpenAI upstream:
/// its main loop (the requests offering `Write`) writes a new file, then
/// finishes; anything else (titles, topic checks) gets a short text. The
/// file lands, every answer is a 200, and the result is no error.
/// (One tool call: llmposter finds its prompt in the user turn before at
/// most one turn of tool results, so a read-then-edit loop is beyond it.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn claude_code_writes_a_file_through_an_independent_upstream() {
    for api in [Api::Anthropic, Api::OpenAi] {
        let dir = tempfile::tempdir().unwrap();
        let work: PathBuf = dir.path().canonicalize().unwrap();
        let file = work.join("hello.txt");
        let path = file.display();
        let server = Llmposter::start(&format!(
            r#"fixtures:
  - match: {{ tool_schema: {{ regex: "^Write$" }} }}
    scenario: {{ name: write, required_state: "", set_state: "written" }}
    response:
      tool_calls:
        - name: Write
          arguments: {{ file_path: "{path}", content: "Hello, world!\n" }}
  - match: {{ tool_schema: {{ regex: "^Write$" }} }}
    scenario: {{ name: write, required_state: "written", set_state: "done" }}
    response:
      content: "Wrote hello.txt."
  - catch_all: true
    response:
      content: "Greeting file"
"#
        ))
        .await;
        let config = common::on_llmposter(
            &server,
            api,
            "[[model_names]]\npattern = \"claude-*\"\nmodel = \"posed\"\n",
        );
        let daemon = Daemon::start(config).await;
        let (proxy, log) = start_proxy(&daemon).await;
        let out = run_claude_async(
            &work,
            "Create hello.txt saying Hello, world!",
            &["--permission-mode", "acceptEdits"],
            &proxy,
            "sk-ant-claude-code-independent",
        )
        .await;
        let context = format!(
            "llmposter as {api:?}: {:?}\n--- stdout\n{}\n--- stderr\n{}\n--- answers\n{:#?}",
            out.status,
            out.stdout,
            out.stderr,
            log.lock().unwrap()
        );
        succeeded(&out, "Wrote hello.txt", &context);
        assert_eq!(
            std::fs::read_to_string(&file).ok().as_deref(),
            Some("Hello, world!\n"),
            "{context}"
        );
        for exchange in log.lock().unwrap().iter() {
            assert_eq!(exchange.status, StatusCode::OK, "{context}");
            if exchange
                .headers
                .get("content-type")
                .is_some_and(|t| t == "text/event-stream")
            {
                assert_eq!(
                    exchange.body.matches("event: message_start").count(),
                    1,
                    "{context}"
                );
            }
        }
        daemon.shutdown().await;
    }
}

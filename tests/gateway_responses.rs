//! `POST /v1/responses` on the real daemon: the requests Codex CLI sent
//! (recorded, trimmed, in `tests/agents/codex/recorded`) replayed on the
//! seed policies with executors on each upstream format, streamed and not;
//! and the errors, in OpenAI's shape.

mod common;

use pointsman_test_support::upstream::{Api, RecordedRequest, Reply, Upstream, UpstreamConfig};
use serde_json::{Value, json};

use common::{Daemon, is_plan_request, system_text};

/// A task the seed matrix plans, put in place of the recorded one.
const TASK: &str = "Design the architecture of a plugin system across multiple modules";

fn recorded(name: &str) -> Value {
    let path = pointsman_test_support::workspace_root()
        .join("tests/agents/codex/recorded")
        .join(name);
    serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap()
}

/// The recorded headers Codex identifies itself and its session with.
fn recorded_headers() -> Vec<(String, String)> {
    let path =
        pointsman_test_support::workspace_root().join("tests/agents/codex/recorded/headers.txt");
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .filter_map(|l| l.split_once(": "))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// A recorded turn with the user's task replaced by [`TASK`].
fn turn(name: &str) -> Value {
    let mut body = recorded(name);
    for item in body["input"].as_array_mut().unwrap() {
        if item["role"] == "user" && item["content"][0]["text"] == "Fix the typo in main.rs" {
            item["content"][0]["text"] = json!(TASK);
        }
    }
    body
}

fn answers_a_tool_call(r: &RecordedRequest) -> bool {
    r.messages().last().is_some_and(|last| {
        last["role"] == "tool"
            || last["content"]
                .as_array()
                .is_some_and(|blocks| blocks.iter().any(|b| b["type"] == "tool_result"))
    })
}

/// Plans for the planner; a shell call for a new task; text for a tool
/// result.
fn script(upstream: &Upstream) {
    upstream.on(|r| {
        if is_plan_request(r) {
            let plan = json!({"summary": format!("[plan {}]", r.seq), "subtasks": [
                {"id": "code", "kind": "code", "title": "Code", "instructions": "Write it.", "depends_on": []}]});
            return Some(Reply::text(plan.to_string()));
        }
        if answers_a_tool_call(r) {
            return Some(Reply::text("The typo is fixed."));
        }
        Some(Reply::tool_call("exec_command", json!({"cmd": "sed -i 's/mian/main/' main.rs"})))
    });
}

async fn post(daemon: &Daemon, body: &Value, headers: &[(String, String)]) -> reqwest::Response {
    let mut request = reqwest::Client::new()
        .post(format!("{}/v1/responses", daemon.url))
        .bearer_auth("sk-codex")
        .json(body);
    for (name, value) in headers {
        request = request.header(name, value);
    }
    request.send().await.unwrap()
}

/// The events of an SSE body: (event name, data).
fn events(body: &str) -> Vec<(String, Value)> {
    body.split("\n\n")
        .filter_map(|frame| {
            let name = frame.lines().find_map(|l| l.strip_prefix("event: "))?;
            let data = frame.lines().find_map(|l| l.strip_prefix("data: "))?;
            Some((name.to_string(), serde_json::from_str(data).unwrap()))
        })
        .collect()
}

fn header<'a>(response: &'a reqwest::Response, name: &str) -> &'a str {
    response
        .headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_else(|| panic!("no {name} in {:?}", response.headers()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recorded_codex_turns_stream_back_with_tool_calls_costs_and_one_plan() {
    for executors in [Api::OpenAi, Api::Anthropic] {
        let upstream = Upstream::start(UpstreamConfig::default()).await;
        script(&upstream);
        let daemon = Daemon::start(common::seed_on(&upstream, executors)).await;
        let context = format!("executors on {executors:?}");
        let headers = recorded_headers();

        // Turn 1: the task; the executor calls the shell tool.
        let response = post(&daemon, &turn("turn-1.json"), &headers).await;
        assert_eq!(response.status(), 200, "{context}");
        assert_eq!(header(&response, "content-type"), "text/event-stream");
        assert_eq!(header(&response, "x-pointsman-model"), "glm-4.7");
        assert_eq!(header(&response, "x-pointsman-tier"), "plan");
        assert_eq!(header(&response, "x-pointsman-plan"), "new");
        assert_eq!(header(&response, "x-pointsman-dropped-tools"), "web_search");
        let first = events(&response.text().await.unwrap());
        let names: Vec<&str> = first.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(
            names[..2],
            ["response.created", "response.in_progress"],
            "{context}"
        );
        for (n, (name, data)) in first.iter().enumerate() {
            assert_eq!(data["type"], name.as_str(), "{context}");
            assert_eq!(data["sequence_number"], n as u64, "{context}");
        }
        for needed in [
            "response.output_item.added",
            "response.function_call_arguments.delta",
            "response.function_call_arguments.done",
            "response.output_item.done",
        ] {
            assert!(names.contains(&needed), "{context}: {names:?}");
        }
        let (last, done) = first.last().unwrap();
        assert_eq!(last, "response.completed", "{context}");
        let response_object = &done["response"];
        assert_eq!(response_object["status"], "completed");
        assert_eq!(response_object["model"], "glm-4.7");
        assert_eq!(response_object["store"], false);
        let call = &response_object["output"][0];
        assert_eq!(call["type"], "function_call", "{context}: {done}");
        assert_eq!(call["name"], "exec_command");
        let arguments: Value = serde_json::from_str(call["arguments"].as_str().unwrap()).unwrap();
        assert_eq!(arguments, json!({"cmd": "sed -i 's/mian/main/' main.rs"}));
        let usage = &response_object["usage"];
        assert!(usage["input_tokens"].as_u64().unwrap() > 0, "{usage}");
        assert!(usage["output_tokens"].as_u64().unwrap() > 0, "{usage}");
        assert_eq!(
            usage["total_tokens"].as_u64(),
            Some(
                usage["input_tokens"].as_u64().unwrap() + usage["output_tokens"].as_u64().unwrap()
            )
        );
        let cost = &done["pointsman"];
        assert_eq!(cost["model"], "glm-4.7", "{done}");
        assert!(
            cost["planner_cost_usd"]
                .as_str()
                .unwrap()
                .parse::<f64>()
                .unwrap()
                > 0.0
        );

        // Turn 2, recorded after a shell call: the reasoning item, the call
        // and its output come back; the executor sees them in its own
        // format, and the session's plan is reused.
        let response = post(&daemon, &turn("turn-2.json"), &headers).await;
        assert_eq!(response.status(), 200, "{context}");
        assert_eq!(header(&response, "x-pointsman-plan"), "cached", "{context}");
        let second = events(&response.text().await.unwrap());
        let (_, done) = second.last().unwrap();
        assert_eq!(
            done["response"]["output"][0]["type"], "message",
            "{context}: {done}"
        );
        assert_eq!(
            done["response"]["output"][0]["content"][0]["text"], "The typo is fixed.",
            "{context}"
        );
        assert_eq!(
            done["pointsman"]["planner_cost_usd"], "0.00000000",
            "{context}"
        );

        let requests = upstream.requests();
        let (plans, executed): (Vec<_>, Vec<_>) = requests.iter().partition(|r| is_plan_request(r));
        assert_eq!(plans.len(), 1, "{context}: one plan for the session");
        assert_eq!(executed.len(), 2, "{context}");
        let replayed = executed[1];
        assert_eq!(replayed.api, Some(executors), "{context}");
        assert!(system_text(replayed).contains(&format!("[plan {}]", plans[0].seq)));
        let messages = replayed.messages();
        match executors {
            Api::OpenAi => {
                let call = messages.iter().find(|m| m["role"] == "assistant").unwrap();
                assert_eq!(call["tool_calls"][0]["id"], "call_1", "{messages:?}");
                assert_eq!(call["tool_calls"][0]["function"]["name"], "exec_command");
                let result = messages.last().unwrap();
                assert_eq!(result["role"], "tool");
                assert_eq!(result["tool_call_id"], "call_1");
                assert!(
                    result["content"]
                        .as_str()
                        .unwrap()
                        .contains("Process exited with code 0")
                );
            }
            Api::Anthropic => {
                let call = messages.iter().find(|m| m["role"] == "assistant").unwrap();
                let tool_use = call["content"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .find(|b| b["type"] == "tool_use")
                    .unwrap();
                assert_eq!(tool_use["id"], "call_1", "{messages:?}");
                assert_eq!(
                    tool_use["input"],
                    json!({"cmd": "sed -i 's/mian/main/' main.rs"})
                );
                let result = &messages.last().unwrap()["content"][0];
                assert_eq!(result["type"], "tool_result", "{messages:?}");
                assert_eq!(result["tool_use_id"], "call_1");
            }
        }
        // Codex's developer messages reach the executor as system text.
        assert!(system_text(replayed).contains("You are a coding agent running in the Codex CLI"));
        daemon.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_non_streamed_response_is_an_object_with_costs_in_the_headers() {
    let upstream = Upstream::start(UpstreamConfig::default()).await;
    script(&upstream);
    let daemon = Daemon::start(common::seed_on(&upstream, Api::Anthropic)).await;
    let mut body = recorded("turn-1.json");
    body["stream"] = json!(false);
    body["model"] = json!("glm-4.7");
    let response = post(&daemon, &body, &[]).await;
    assert_eq!(response.status(), 200);
    assert_eq!(header(&response, "x-pointsman-model"), "glm-4.7");
    assert_eq!(header(&response, "x-pointsman-tier"), "direct");
    let cost: f64 = header(&response, "x-pointsman-cost-usd").parse().unwrap();
    let baseline: f64 = header(&response, "x-pointsman-baseline-cost-usd")
        .parse()
        .unwrap();
    assert!(cost > 0.0 && baseline > cost, "{cost} vs {baseline}");
    let object: Value = response.json().await.unwrap();
    assert_eq!(object["object"], "response");
    assert!(
        object["id"].as_str().unwrap().starts_with("resp_"),
        "{object}"
    );
    assert_eq!(object["status"], "completed");
    assert_eq!(object["output"][0]["type"], "function_call", "{object}");
    assert_eq!(object["output"][0]["status"], "completed");
    assert!(
        object["output"][0]["call_id"]
            .as_str()
            .is_some_and(|id| !id.is_empty())
    );
    assert!(object["usage"]["input_tokens"].as_u64().unwrap() > 0);
    let upstream_request = upstream.last_request().unwrap();
    assert_eq!(upstream_request.api, Some(Api::Anthropic));
    assert!(!upstream_request.is_stream());
}

#[tokio::test]
async fn errors_are_in_openais_shape() {
    let daemon = Daemon::start(common::demo()).await;
    let cases = [
        (
            json!({"model": "auto", "input": "hi", "previous_response_id": "resp_1"}),
            400,
            "stateless",
        ),
        (
            json!({"model": "auto", "input": [{"type": "item_reference", "id": "msg_1"}]}),
            400,
            "stateless",
        ),
        (
            json!({"model": "auto", "input": "hi", "tools": [{"type": "web_search"}], "tool_choice": {"type": "web_search"}}),
            400,
            "hosted tool `web_search`",
        ),
        (
            json!({"model": "auto", "input": [{"type": "function_call", "name": "f"}]}),
            400,
            "call_id",
        ),
        (json!({"model": "auto"}), 400, "at least one message"),
        (
            json!({"model": "no-such-model", "input": "hi"}),
            404,
            "does not exist",
        ),
    ];
    for (body, status, message) in cases {
        let response = post(&daemon, &body, &[]).await;
        assert_eq!(response.status(), status, "{body}");
        let error: Value = response.json().await.unwrap();
        let text = error["error"]["message"]
            .as_str()
            .unwrap_or_else(|| panic!("{error}"));
        assert!(text.contains(message), "{body}: {text}");
        assert!(error["error"]["type"].is_string(), "{error}");
    }
    let response = reqwest::Client::new()
        .post(format!("{}/v1/responses", daemon.url))
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    let error: Value = response.json().await.unwrap();
    assert_eq!(error["error"]["type"], "invalid_request_error", "{error}");
}

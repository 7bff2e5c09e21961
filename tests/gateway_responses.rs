//! `POST /v1/responses` on the real daemon: the requests Codex CLI sent
//! (recorded, trimmed, in `tests/agents/codex/recorded`) replayed on the
//! seed policies with executors on each upstream format, streamed and not;
//! and the errors, in OpenAI's shape.

mod common;

use pointsman_test_support::llmposter::Llmposter;
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
            Api::Responses => unreachable!("passed through, tested below"),
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

/// The requests the upstream received on its Responses API.
fn to_responses(upstream: &Upstream) -> Vec<RecordedRequest> {
    upstream.requests_to(Api::Responses)
}

/// Executors on a provider that speaks the Responses API: Codex's own body
/// goes to the upstream (hosted tools, reasoning items with their
/// encrypted content, `include`), with the upstream model, the plan in
/// `instructions` and `store: false`; the events come back as the upstream
/// sent them, numbered by it, with the catalog model and the final event's
/// cost. The session's plan is reused on the next turn, whose reasoning
/// item reaches the upstream untouched.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn codex_turns_pass_through_to_a_responses_upstream() {
    let upstream = Upstream::start(UpstreamConfig::default()).await;
    script(&upstream);
    let daemon = Daemon::start(common::seed_on(&upstream, Api::Responses)).await;
    let headers = recorded_headers();

    let response = post(&daemon, &turn("turn-1.json"), &headers).await;
    assert_eq!(response.status(), 200);
    assert_eq!(header(&response, "x-pointsman-passthrough"), "responses");
    assert_eq!(header(&response, "x-pointsman-model"), "glm-4.7");
    assert_eq!(header(&response, "x-pointsman-plan"), "new");
    // Nothing was dropped: the upstream runs its hosted tools itself.
    assert!(
        response
            .headers()
            .get("x-pointsman-dropped-tools")
            .is_none()
    );
    let first = events(&response.text().await.unwrap());
    for (n, (name, data)) in first.iter().enumerate() {
        assert_eq!(data["type"], name.as_str());
        assert_eq!(data["sequence_number"], n as u64, "{data}");
    }
    let (created, done) = (&first[0].1, &first.last().unwrap().1);
    assert_eq!(first[0].0, "response.created");
    assert_eq!(created["response"]["model"], "glm-4.7", "{created}");
    assert_eq!(first.last().unwrap().0, "response.completed");
    let object = &done["response"];
    assert_eq!(object["model"], "glm-4.7");
    // The upstream's own response: its id, its reasoning item with the
    // encrypted content Codex asked for, then the shell call.
    let up_seq = to_responses(&upstream)[0].seq;
    assert_eq!(object["id"], format!("resp_up{up_seq}"), "{object}");
    assert_eq!(object["output"][0]["type"], "reasoning", "{object}");
    assert_eq!(
        object["output"][0]["encrypted_content"],
        format!("enc_up{up_seq}")
    );
    assert_eq!(object["output"][1]["type"], "function_call");
    assert_eq!(object["output"][1]["name"], "exec_command");
    let cost = &done["pointsman"];
    assert_eq!(cost["model"], "glm-4.7", "{done}");
    assert_eq!(cost["input_tokens"], object["usage"]["input_tokens"]);
    assert_eq!(cost["output_tokens"], object["usage"]["output_tokens"]);
    assert!(cost["cost_usd"].as_str().unwrap().parse::<f64>().unwrap() > 0.0);

    let sent = &to_responses(&upstream)[0];
    assert!(sent.path.ends_with("/responses"), "{}", sent.path);
    assert_eq!(
        sent.bearer(),
        Some(pointsman_test_support::upstream::OPENAI_KEY)
    );
    let body = &sent.body;
    assert_eq!(body["model"], "glm-4.7");
    assert_eq!(body["store"], false);
    assert_eq!(body["stream"], true);
    assert_eq!(body["include"], json!(["reasoning.encrypted_content"]));
    let tools: Vec<&str> = body["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["type"].as_str().unwrap())
        .collect();
    assert!(tools.contains(&"web_search"), "{tools:?}");
    assert_eq!(
        body["prompt_cache_key"],
        turn("turn-1.json")["prompt_cache_key"]
    );
    let instructions = body["instructions"].as_str().unwrap();
    let plans: Vec<_> = upstream
        .requests()
        .into_iter()
        .filter(is_plan_request)
        .collect();
    assert_eq!(plans.len(), 1);
    assert!(
        instructions.contains(&format!("[plan {}]", plans[0].seq)),
        "{instructions}"
    );
    // The client's input is sent as it came, its developer messages
    // included.
    assert_eq!(body["input"], turn("turn-1.json")["input"]);

    // Turn 2: the reasoning item goes back with its encrypted content.
    let mut second = turn("turn-2.json");
    for item in second["input"].as_array_mut().unwrap() {
        if item["type"] == "reasoning" {
            item["encrypted_content"] = json!("enc_from_codex");
        }
    }
    let response = post(&daemon, &second, &headers).await;
    assert_eq!(response.status(), 200);
    assert_eq!(header(&response, "x-pointsman-plan"), "cached");
    let events = events(&response.text().await.unwrap());
    let (_, done) = events.last().unwrap();
    let message = done["response"]["output"]
        .as_array()
        .unwrap()
        .iter()
        .find(|item| item["type"] == "message")
        .unwrap_or_else(|| panic!("{done}"));
    assert_eq!(message["content"][0]["text"], "The typo is fixed.");
    let sent = to_responses(&upstream);
    assert_eq!(sent.len(), 2);
    assert_eq!(sent[1].body["input"], second["input"]);
    daemon.shutdown().await;
}

/// Not streamed: the upstream's response object, with the catalog model,
/// and the costs in the headers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_non_streamed_answer_passes_through_as_an_object() {
    let upstream = Upstream::start(UpstreamConfig::default()).await;
    script(&upstream);
    let daemon = Daemon::start(common::seed_on(&upstream, Api::Responses)).await;
    let mut body = recorded("turn-1.json");
    body["stream"] = json!(false);
    body["model"] = json!("glm-4.7");
    body["max_output_tokens"] = json!(700);
    let response = post(&daemon, &body, &[]).await;
    assert_eq!(response.status(), 200);
    assert_eq!(header(&response, "x-pointsman-passthrough"), "responses");
    let cost: f64 = header(&response, "x-pointsman-cost-usd").parse().unwrap();
    assert!(cost > 0.0);
    let object: Value = response.json().await.unwrap();
    let sent = &to_responses(&upstream)[0];
    assert_eq!(object["id"], format!("resp_up{}", sent.seq), "{object}");
    assert_eq!(object["model"], "glm-4.7");
    assert_eq!(object["status"], "completed");
    assert_eq!(object["output"][1]["type"], "function_call", "{object}");
    assert!(object["usage"]["input_tokens"].as_u64().unwrap() > 0);
    assert!(!sent.is_stream());
    assert_eq!(sent.body["max_output_tokens"], 700);
    daemon.shutdown().await;
}

/// A Responses upstream that fails before answering falls back to the
/// next model, on a chat upstream: that answer is translated, as if no
/// upstream spoke the Responses API.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_responses_upstream_falls_back_to_a_translated_chat_one() {
    let upstream = Upstream::start(UpstreamConfig::default()).await;
    upstream.on(|r| (r.api == Some(Api::Responses)).then(|| Reply::error(401, "bad key")));
    let config = common::seed_placed(&upstream, |id, _| match id {
        "glm-4.7" => "rs",
        _ => "oa",
    });
    let daemon = Daemon::start(config).await;
    let response = post(&daemon, &recorded("turn-1.json"), &[]).await;
    assert_eq!(response.status(), 200);
    assert!(response.headers().get("x-pointsman-passthrough").is_none());
    assert_eq!(header(&response, "x-pointsman-model"), "deepseek-v3.2-exp");
    assert_eq!(header(&response, "x-pointsman-dropped-tools"), "web_search");
    let events = events(&response.text().await.unwrap());
    for (n, (_, data)) in events.iter().enumerate() {
        assert_eq!(data["sequence_number"], n as u64);
    }
    assert_eq!(events.last().unwrap().0, "response.completed");
    assert_eq!(
        to_responses(&upstream).len(),
        1,
        "no retry of a refused key"
    );
    let served = upstream.last_request().unwrap();
    assert_eq!(served.api, Some(Api::OpenAi));
    assert_eq!(served.model(), Some("deepseek-v3.2-exp"));
    daemon.shutdown().await;
}

/// A passed-through stream cut by the upstream ends with the upstream's
/// events so far, then `response.failed` numbered after them, carrying the
/// upstream's response id.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cut_passthrough_stream_ends_failed() {
    let upstream = Upstream::start(UpstreamConfig::default()).await;
    upstream.on(|r| {
        (r.api == Some(Api::Responses))
            .then(|| Reply::text("one two three four five six").truncate_after(5))
    });
    let daemon = Daemon::start(common::seed_on(&upstream, Api::Responses)).await;
    let body = json!({"model": "glm-4.7", "input": "Say six words.", "stream": true});
    let response = post(&daemon, &body, &[]).await;
    assert_eq!(response.status(), 200);
    let events = events(&response.text().await.unwrap());
    assert_eq!(events.len(), 6, "{events:?}");
    let (name, last) = events.last().unwrap();
    assert_eq!(name, "response.failed");
    assert_eq!(last["sequence_number"], 5);
    let sent = &to_responses(&upstream)[0];
    assert_eq!(last["response"]["id"], format!("resp_up{}", sent.seq));
    assert_eq!(last["response"]["status"], "failed");
    assert_eq!(last["response"]["model"], "glm-4.7");
    assert!(
        last["response"]["error"]["message"]
            .as_str()
            .unwrap()
            .contains("interrupted"),
        "{last}"
    );
    daemon.shutdown().await;
}

/// An independent Responses server's answers (its own ids, response
/// objects with only some fields, no cached-token details) pass through,
/// streamed and not, text and function calls: the client sees the catalog
/// model, and the cost is its usage's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_independent_responses_server_is_passed_through() {
    let server = Llmposter::start(
        "fixtures:\n\
         \x20 - match:\n      user_message: \"weather\"\n    response:\n      tool_calls:\n\
         \x20       - name: get_weather\n          arguments: { location: \"Paris\" }\n\
         \x20 - match:\n      user_message: \"hello\"\n    response:\n\
         \x20     content: \"Hi there, from an independent server.\"\n",
    )
    .await;
    let config = common::on_llmposter(&server, Api::Responses, "");
    let daemon = Daemon::start(config).await;

    // Not streamed: the object as the server wrote it, and the cost of its
    // usage (2 input and 10 output tokens, as it counts them).
    let body = json!({"model": "posed", "input": "hello", "store": false});
    let response = post(&daemon, &body, &[]).await;
    assert_eq!(response.status(), 200);
    assert_eq!(header(&response, "x-pointsman-passthrough"), "responses");
    let cost: f64 = header(&response, "x-pointsman-cost-usd").parse().unwrap();
    let object: Value = response.json().await.unwrap();
    assert!(
        object["id"]
            .as_str()
            .unwrap()
            .starts_with("resp-llmposter-"),
        "{object}"
    );
    assert_eq!(object["model"], "posed");
    assert_eq!(
        object["output"][0]["content"][0]["text"],
        "Hi there, from an independent server."
    );
    let usage = &object["usage"];
    let expected = (usage["input_tokens"].as_f64().unwrap() * 1.0
        + usage["output_tokens"].as_f64().unwrap() * 2.0)
        / 1e6;
    assert!(
        (cost - expected).abs() < 1e-9,
        "{cost} vs {expected}: {usage}"
    );

    // Streamed, with a function tool: the server's events, numbered by it,
    // the final one with the cost of what it counted.
    let body = json!({"model": "posed", "input": "what is the weather in Paris?", "stream": true,
        "tools": [{"type": "function", "name": "get_weather",
            "parameters": {"type": "object", "properties": {"location": {"type": "string"}}}}]});
    let response = post(&daemon, &body, &[]).await;
    assert_eq!(response.status(), 200);
    assert_eq!(header(&response, "x-pointsman-passthrough"), "responses");
    let events = events(&response.text().await.unwrap());
    let names: Vec<&str> = events.iter().map(|(n, _)| n.as_str()).collect();
    assert!(
        names.contains(&"response.function_call_arguments.delta"),
        "{names:?}"
    );
    for (n, (name, data)) in events.iter().enumerate() {
        assert_eq!(data["type"], name.as_str());
        assert_eq!(data["sequence_number"], n as u64, "{data}");
    }
    assert_eq!(events[0].1["response"]["model"], "posed");
    let (last, done) = events.last().unwrap();
    assert_eq!(last, "response.completed");
    let call = &done["response"]["output"][0];
    assert_eq!(call["type"], "function_call", "{done}");
    assert_eq!(call["name"], "get_weather");
    let arguments: Value = serde_json::from_str(call["arguments"].as_str().unwrap()).unwrap();
    assert_eq!(arguments, json!({"location": "Paris"}));
    assert_eq!(done["response"]["model"], "posed");
    assert_eq!(
        done["pointsman"]["output_tokens"],
        done["response"]["usage"]["output_tokens"]
    );
    daemon.shutdown().await;
}

//! `pointsman report --export-workload`: the requests a ledger kept with
//! `[ledger] keep_requests = "policy-view"`, written in the workload format
//! `pointsman simulate` reads (one JSON object a line; see
//! `offline::workload`).
//!
//! A call's `policy_view` is taken to be the request's features as the
//! router saw them, serialized as JSON (`api`, `requested_model`,
//! `messages` of `{role, content}`, `max_output_tokens`, `tool_count`,
//! `labels` as `[key, value]` pairs or an object, `session`). Each chat
//! request becomes one line whose body gives a router the same view:
//! - the messages as the policy saw them (the latest 16, each cut to 2,000
//!   bytes: the text beyond that was never kept, so a replay counts fewer
//!   input tokens than the live request had);
//! - the requested model and output limit;
//! - as many tools as were offered, as named placeholders (their schemas
//!   were not kept);
//! - an Anthropic body (system prompt on top, tool results as
//!   `tool_result` blocks, `"api": "anthropic"`) for a request that came in
//!   on the messages API, else an OpenAI chat body;
//! - the labels (without the host's `task_tokens`, which a replay counts
//!   again) and the session;
//! - `output_tokens`: the output of the request's last successful answer
//!   call, when it has one.
//!
//! Task calls are left out: a task's request is not a chat body. Lines come
//! in the order the requests started.

use std::collections::HashMap;

use serde_json::{Map, Value, json};

use crate::ledger::record::{CallRecord, CallRole, CallStatus};

/// The label the host sets on every request (recounted on replay; the
/// same as `features::TASK_TOKENS_LABEL`, checked in tests/offline.rs).
const HOST_TASK_TOKENS_LABEL: &str = "task_tokens";
/// What a placeholder tool says about itself.
const PLACEHOLDER_TOOL: &str = "a tool the recorded request offered (its schema was not kept)";

/// The chat requests among `calls` that carry a policy view, as workload
/// lines (each ending with a newline). Requests without a readable policy
/// view are left out (logged).
pub fn export_workload(calls: &[CallRecord]) -> String {
    // Per request: the call whose view is used, the last ok answer's output
    // tokens, and when the request started.
    struct Pick<'a> {
        view: Option<&'a CallRecord>,
        output: Option<(i64, u64)>,
        started: i64,
    }
    let mut requests: HashMap<&str, Pick> = HashMap::new();
    for call in calls.iter().filter(|c| c.task_id.is_none()) {
        let pick = requests.entry(&call.request_id).or_insert(Pick {
            view: None,
            output: None,
            started: call.at_ms,
        });
        pick.started = pick.started.min(call.at_ms);
        if call.policy_view.is_some()
            && (pick.view.is_none()
                || (call.role == CallRole::Answer
                    && pick.view.is_some_and(|v| v.role != CallRole::Answer)))
        {
            pick.view = Some(call);
        }
        if call.role == CallRole::Answer
            && call.status == CallStatus::Ok
            && pick.output.is_none_or(|(at, _)| call.at_ms >= at)
        {
            pick.output = Some((call.at_ms, call.output_tokens));
        }
    }
    let mut picked: Vec<(&str, Pick)> = requests
        .into_iter()
        .filter(|(_, p)| p.view.is_some())
        .collect();
    picked.sort_by(|a, b| a.1.started.cmp(&b.1.started).then(a.0.cmp(b.0)));
    let mut out = String::new();
    for (request_id, pick) in picked {
        let view = pick
            .view
            .and_then(|c| c.policy_view.as_deref())
            .unwrap_or("");
        match workload_line(view, pick.output.map(|(_, n)| n)) {
            Ok(Some(line)) => {
                out.push_str(&line.to_string());
                out.push('\n');
            }
            Ok(None) => {}
            Err(problem) => {
                tracing::warn!(request_id, problem, "policy view left out of the workload")
            }
        }
    }
    out
}

/// The workload line of one policy view; None for a task's view.
fn workload_line(view: &str, output_tokens: Option<u64>) -> Result<Option<Value>, String> {
    let view: Value = serde_json::from_str(view).map_err(|e| format!("not JSON ({e})"))?;
    let anthropic = match view["api"].as_str() {
        None | Some("openai-chat") => false,
        Some("anthropic-messages") => true,
        Some("task") => return Ok(None),
        Some(other) => return Err(format!("unknown api {other:?}")),
    };
    let messages: Vec<(String, String)> = view["messages"]
        .as_array()
        .ok_or("no messages")?
        .iter()
        .map(|m| {
            (
                m["role"].as_str().unwrap_or("user").to_string(),
                m["content"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect();
    let mut body = Map::new();
    body.insert(
        "model".into(),
        view["requested_model"].as_str().unwrap_or_default().into(),
    );
    if let Some(n) = view["max_output_tokens"].as_u64() {
        body.insert("max_tokens".into(), n.into());
    }
    let tool_count = view["tool_count"].as_u64().unwrap_or(0).min(1_000);
    if anthropic {
        anthropic_body(&mut body, messages, tool_count);
    } else {
        openai_body(&mut body, messages, tool_count);
    }
    let mut line = Map::new();
    line.insert("request".into(), Value::Object(body));
    if anthropic {
        line.insert("api".into(), "anthropic".into());
    }
    if let Some(n) = output_tokens {
        line.insert("output_tokens".into(), n.into());
    }
    let labels = labels(&view["labels"]);
    if !labels.is_empty() {
        line.insert("labels".into(), Value::Object(labels));
    }
    if let Some(session) = view["session"].as_str().filter(|s| !s.is_empty()) {
        line.insert("session".into(), session.into());
    }
    Ok(Some(Value::Object(line)))
}

fn openai_body(body: &mut Map<String, Value>, messages: Vec<(String, String)>, tools: u64) {
    let messages: Vec<Value> = messages
        .into_iter()
        .map(|(role, content)| json!({"role": role, "content": content}))
        .collect();
    body.insert("messages".into(), messages.into());
    if tools > 0 {
        let tools: Vec<Value> = (1..=tools)
            .map(|i| {
                json!({"type": "function", "function": {
                    "name": format!("recorded_tool_{i}"),
                    "description": PLACEHOLDER_TOOL,
                    "parameters": {"type": "object"},
                }})
            })
            .collect();
        body.insert("tools".into(), tools.into());
    }
}

/// The features of an Anthropic body put its system prompt first and read
/// a user turn of tool results only as a `tool` message: this is the
/// inverse.
fn anthropic_body(body: &mut Map<String, Value>, messages: Vec<(String, String)>, tools: u64) {
    let mut messages = messages.into_iter().peekable();
    if let Some((_, system)) = messages.next_if(|(role, _)| role == "system") {
        body.insert("system".into(), system.into());
    }
    let messages: Vec<Value> = messages
        .map(|(role, content)| match role.as_str() {
            "tool" => json!({"role": "user", "content": [
                {"type": "tool_result", "tool_use_id": "recorded", "content": content}
            ]}),
            _ => json!({"role": role, "content": content}),
        })
        .collect();
    body.insert("messages".into(), messages.into());
    if tools > 0 {
        let tools: Vec<Value> = (1..=tools)
            .map(|i| {
                json!({
                    "name": format!("recorded_tool_{i}"),
                    "description": PLACEHOLDER_TOOL,
                    "input_schema": {"type": "object"},
                })
            })
            .collect();
        body.insert("tools".into(), tools.into());
    }
}

/// Labels as `[key, value]` pairs or an object, string values only,
/// without the host's own.
fn labels(value: &Value) -> Map<String, Value> {
    let pairs: Vec<(&str, &str)> = match value {
        Value::Array(pairs) => pairs
            .iter()
            .filter_map(|p| Some((p[0].as_str()?, p[1].as_str()?)))
            .collect(),
        Value::Object(map) => map
            .iter()
            .filter_map(|(k, v)| Some((k.as_str(), v.as_str()?)))
            .collect(),
        _ => Vec::new(),
    };
    pairs
        .into_iter()
        .filter(|(k, _)| *k != HOST_TASK_TOKENS_LABEL)
        .map(|(k, v)| (k.to_string(), Value::String(v.to_string())))
        .collect()
}

#[cfg(test)]
mod tests {
    // The round trip through the gateway's feature extraction and the
    // offline workload reader is in tests/offline.rs (those modules sit
    // above the ledger); here, which requests are picked and the bodies.
    use std::collections::BTreeMap;

    use serde_json::json;

    use super::*;
    use crate::ledger::record::Api;

    fn call(request_id: &str, at_ms: i64, view: Option<Value>) -> CallRecord {
        CallRecord {
            request_id: request_id.into(),
            task_id: None,
            at_ms,
            client: "alice".into(),
            labels: BTreeMap::new(),
            session: None,
            api: Api::ChatCompletions,
            role: CallRole::Answer,
            stream: false,
            requested_model: "auto".into(),
            router: None,
            planner: None,
            tier: Some("direct".into()),
            reasoning: None,
            served_model: Some("glm".into()),
            provider: None,
            endpoint: None,
            attempts: Vec::new(),
            escalated: false,
            input_tokens: 0,
            output_tokens: 0,
            cache_read_tokens: 0,
            cache_write_tokens: 0,
            cost_nanos: 0,
            baseline_nanos: 0,
            latency_ms: 0,
            ttft_ms: None,
            status: CallStatus::Ok,
            error_class: None,
            arm: None,
            shadow: None,
            route_labels: BTreeMap::new(),
            policy_view: view.map(|v| v.to_string()),
        }
    }

    /// A view as the host's `Features` serializes.
    fn view(api: &str, messages: Value) -> Value {
        json!({
            "id": "pm-1", "api": api, "requested_model": "auto",
            "messages": messages, "message_count": 9, "input_tokens": 1234,
            "max_output_tokens": null, "tool_count": 0,
            "labels": [["team", "web"], ["task_tokens", "12"]], "session": null,
        })
    }

    fn lines(text: &str) -> Vec<Value> {
        text.lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    #[test]
    fn one_line_per_chat_request_in_start_order() {
        let user = json!([{"role": "user", "content": "hi"}]);
        let calls = vec![
            call("r2", 2_000, Some(view("openai-chat", user.clone()))),
            CallRecord {
                output_tokens: 700,
                ..call("r1", 1_000, Some(view("openai-chat", user.clone())))
            },
            // A later failed answer of r1: its output is not the record.
            CallRecord {
                status: CallStatus::Failed,
                output_tokens: 5,
                ..call("r1", 1_500, None)
            },
            // r3 kept a view on its planner call only; its answer failed.
            CallRecord {
                role: CallRole::Planner,
                ..call("r3", 3_000, Some(view("openai-chat", user.clone())))
            },
            CallRecord {
                status: CallStatus::Failed,
                ..call("r3", 3_100, None)
            },
            // Left out: a task's call, a task's view, an unreadable view,
            // a request without a view.
            CallRecord {
                task_id: Some("t1".into()),
                ..call("t1-a", 500, Some(view("openai-chat", user.clone())))
            },
            call("r6", 600, Some(view("task", user.clone()))),
            CallRecord {
                policy_view: Some("{not json".into()),
                ..call("r4", 4_000, None)
            },
            call("r5", 5_000, None),
        ];
        let lines = lines(&export_workload(&calls));
        let outputs: Vec<&Value> = lines.iter().map(|l| &l["output_tokens"]).collect();
        // r1's ok answer wrote 700, r2's 0; r3 has no ok answer.
        assert_eq!(outputs, vec![&json!(700), &json!(0), &Value::Null]);
        assert_eq!(
            lines[0],
            json!({
                "request": {"model": "auto", "messages": [{"role": "user", "content": "hi"}]},
                "output_tokens": 700,
                "labels": {"team": "web"},
            })
        );
        assert_eq!(export_workload(&[call("r1", 0, None)]), "");
    }

    #[test]
    fn an_anthropic_view_becomes_an_anthropic_body() {
        let mut v = view(
            "anthropic-messages",
            json!([
                {"role": "system", "content": "Be brief."},
                {"role": "user", "content": "Rename foo"},
                {"role": "assistant", "content": "{\"q\":\"foo\"}"},
                {"role": "tool", "content": "src/a.rs:1 foo"},
            ]),
        );
        v["max_output_tokens"] = json!(4096);
        v["tool_count"] = json!(1);
        v["session"] = json!("s-2");
        v["labels"] = json!({"team": "web"});
        let lines = lines(&export_workload(&[call("r1", 0, Some(v))]));
        assert_eq!(
            lines,
            vec![json!({
                "api": "anthropic",
                "request": {
                    "model": "auto", "max_tokens": 4096, "system": "Be brief.",
                    "messages": [
                        {"role": "user", "content": "Rename foo"},
                        {"role": "assistant", "content": "{\"q\":\"foo\"}"},
                        {"role": "user", "content": [{"type": "tool_result",
                            "tool_use_id": "recorded", "content": "src/a.rs:1 foo"}]},
                    ],
                    "tools": [{"name": "recorded_tool_1", "description": PLACEHOLDER_TOOL,
                        "input_schema": {"type": "object"}}],
                },
                "output_tokens": 0,
                "labels": {"team": "web"},
                "session": "s-2",
            })]
        );
    }
}

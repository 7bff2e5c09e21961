//! The two tiers end to end: the task API and transparent plan mode, with a
//! scripted upstream playing planner, executors and reviewer.

mod common;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use pointsman::config::Config;
use pointsman_test_support::upstream::{Api, RecordedRequest, Reply, Upstream, UpstreamConfig};
use serde_json::{Value, json};

use common::{Daemon, is_plan_request, system_text};

/// The seed catalog, every model on the scripted upstream's OpenAI API.
fn config(upstream: &Upstream) -> Config {
    common::seed_on(upstream, Api::OpenAi)
}

fn is_review_request(r: &RecordedRequest) -> bool {
    system_text(r).contains("\"verdict\"")
}

/// The subtask an executor request is for.
fn subtask_of(r: &RecordedRequest) -> Option<String> {
    let text = r.last_user_text()?;
    let line = text.lines().find(|l| l.starts_with("# Your subtask: "))?;
    let id = line.rsplit_once('(')?.1.trim_end_matches(')');
    Some(id.to_string())
}

const DIAMOND: &str = r#"{"summary": "design, then code and tests in parallel, then docs",
 "subtasks": [
  {"id": "design", "title": "Design", "kind": "design", "instructions": "Design it.", "depends_on": []},
  {"id": "code", "title": "Code", "kind": "code", "instructions": "Write it.", "depends_on": ["design"]},
  {"id": "tests", "title": "Tests", "kind": "tests", "instructions": "Test it.", "depends_on": ["design"]},
  {"id": "docs", "title": "Docs", "kind": "docs", "instructions": "Document it.", "depends_on": ["code", "tests"]}
 ]}"#;

/// Planner answers with `plans` in turn (the last one repeats), reviewers
/// with `verdict`, executors with "output of <id>" after `work`.
fn script(upstream: &Upstream, plans: Vec<String>, verdict: &'static str, work: Duration) {
    let plans = Arc::new(Mutex::new(plans));
    upstream.on(move |r| {
        if is_plan_request(r) {
            let mut plans = plans.lock().unwrap();
            let plan = if plans.len() > 1 {
                plans.remove(0)
            } else {
                plans[0].clone()
            };
            return Some(Reply::text(plan));
        }
        if is_review_request(r) {
            return Some(Reply::text(verdict));
        }
        let id = subtask_of(r).unwrap_or_else(|| "direct".into());
        Some(Reply::text(format!("output of {id} by {}", r.model().unwrap_or("?"))).delay(work))
    });
}

async fn submit(daemon: &Daemon, task: Value) -> String {
    let response = reqwest::Client::new()
        .post(format!("{}/v1/tasks", daemon.url))
        .json(&task)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 202);
    let record: Value = response.json().await.unwrap();
    record["id"].as_str().unwrap().to_string()
}

async fn wait(daemon: &Daemon, id: &str) -> Value {
    common::wait_for_task(daemon, None, id).await
}

fn subtask<'a>(record: &'a Value, id: &str) -> &'a Value {
    record["subtasks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["id"] == id)
        .unwrap_or_else(|| panic!("no subtask {id}: {record}"))
}

/// The cost breakdown adds up: the task's spend is the sum of its calls.
fn check_accounts(record: &Value) {
    let calls = record["calls"].as_array().unwrap();
    let sum: f64 = calls.iter().map(|c| c["cost_usd"].as_f64().unwrap()).sum();
    let spent = record["spent_usd"].as_f64().unwrap();
    assert!((sum - spent).abs() < 1e-12, "{sum} vs {spent}");
    let tokens: u64 = calls
        .iter()
        .map(|c| c["input_tokens"].as_u64().unwrap() + c["output_tokens"].as_u64().unwrap())
        .sum();
    assert_eq!(tokens, record["spent_tokens"].as_u64().unwrap());
    let by_subtask: f64 = record["subtasks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["cost_usd"].as_f64().unwrap())
        .sum();
    let outside: f64 = calls
        .iter()
        .filter(|c| {
            let p = c["purpose"].as_str().unwrap();
            !p.starts_with("subtask:") && !p.starts_with("review:")
        })
        .map(|c| c["cost_usd"].as_f64().unwrap())
        .sum();
    assert!((by_subtask + outside - spent).abs() < 1e-12, "{record}");
}

const HIGH: &str = "Design the architecture of a plugin system across multiple modules";
const CRITICAL: &str = "Rotate the production credentials of the payment service";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_diamond_plan_runs_its_middle_subtasks_in_parallel() {
    let upstream = Upstream::start(UpstreamConfig::default()).await;
    script(
        &upstream,
        vec![DIAMOND.into()],
        "",
        Duration::from_millis(300),
    );
    let daemon = Daemon::start(config(&upstream)).await;
    let id = submit(&daemon, json!({"title": "Plugins", "description": HIGH})).await;
    let record = wait(&daemon, &id).await;
    assert_eq!(record["status"], "succeeded", "{record}");
    assert_eq!(record["route"]["tier"], "plan");
    let (code, tests) = (subtask(&record, "code"), subtask(&record, "tests"));
    // Both started before either finished.
    assert!(
        code["started_ms"].as_u64() < tests["finished_ms"].as_u64(),
        "{record}"
    );
    assert!(
        tests["started_ms"].as_u64() < code["finished_ms"].as_u64(),
        "{record}"
    );
    let docs = subtask(&record, "docs");
    assert!(docs["started_ms"].as_u64() >= code["finished_ms"].as_u64());
    assert!(docs["started_ms"].as_u64() >= tests["finished_ms"].as_u64());
    // Models by kind: design on the planner, the rest on the executor.
    assert_eq!(subtask(&record, "design")["served_by"], "deepseek-v3.2");
    assert_eq!(code["served_by"], "glm-4.7");
    // The result joins the outputs in plan order.
    let result = record["result"].as_str().unwrap();
    let order: Vec<usize> = [
        "output of design",
        "output of code",
        "output of tests",
        "output of docs",
    ]
    .iter()
    .map(|s| {
        result
            .find(s)
            .unwrap_or_else(|| panic!("{s} missing: {result}"))
    })
    .collect();
    assert!(order.windows(2).all(|w| w[0] < w[1]), "{result}");
    // Each executor saw its dependencies' outputs.
    let docs_request = upstream
        .requests()
        .into_iter()
        .find(|r| subtask_of(r).as_deref() == Some("docs"))
        .unwrap();
    let prompt = docs_request.last_user_text().unwrap();
    assert!(
        prompt.contains("output of code") && prompt.contains("output of tests"),
        "{prompt}"
    );
    check_accounts(&record);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cyclic_plan_is_requested_again() {
    let upstream = Upstream::start(UpstreamConfig::default()).await;
    let cyclic =
        r#"{"subtasks": [{"id": "a", "depends_on": ["b"]}, {"id": "b", "depends_on": ["a"]}]}"#;
    script(
        &upstream,
        vec![cyclic.into(), DIAMOND.into()],
        "",
        Duration::ZERO,
    );
    let daemon = Daemon::start(config(&upstream)).await;
    let record = wait(
        &daemon,
        &submit(&daemon, json!({"title": "P", "description": HIGH})).await,
    )
    .await;
    assert_eq!(record["status"], "succeeded", "{record}");
    assert_eq!(record["subtasks"].as_array().unwrap().len(), 4);
    let notes = record["notes"].to_string();
    assert!(
        notes.contains("cycle") && notes.contains("asking the planner again"),
        "{notes}"
    );
    let plan_calls = record["calls"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["purpose"] == "plan")
        .count();
    assert_eq!(plan_calls, 2);
    check_accounts(&record);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unparsable_plan_twice_falls_back_to_direct() {
    let upstream = Upstream::start(UpstreamConfig::default()).await;
    script(
        &upstream,
        vec!["I would rather not plan.".into()],
        "",
        Duration::ZERO,
    );
    let daemon = Daemon::start(config(&upstream)).await;
    let record = wait(
        &daemon,
        &submit(&daemon, json!({"title": "P", "description": HIGH})).await,
    )
    .await;
    assert_eq!(record["status"], "succeeded", "{record}");
    let notes = record["notes"].to_string();
    assert!(notes.contains("serving direct on the executor"), "{notes}");
    let purposes: Vec<&str> = record["calls"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["purpose"].as_str().unwrap())
        .collect();
    assert_eq!(purposes, ["plan", "plan", "direct"]);
    assert!(
        record["result"]
            .as_str()
            .unwrap()
            .contains("output of direct by glm-4.7")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subtask_rejected_in_review_escalates() {
    let upstream = Upstream::start(UpstreamConfig::default()).await;
    script(
        &upstream,
        vec![DIAMOND.into()],
        r#"{"verdict": "escalate", "feedback": "this leaks the secret"}"#,
        Duration::ZERO,
    );
    let daemon = Daemon::start(config(&upstream)).await;
    let record = wait(
        &daemon,
        &submit(&daemon, json!({"title": "Keys", "description": CRITICAL})).await,
    )
    .await;
    assert_eq!(record["status"], "succeeded", "{record}");
    assert_eq!(record["route"]["tier"], "plan-and-verify");
    let code = subtask(&record, "code");
    assert_eq!(code["critical"], true);
    assert_eq!(code["review"], "escalate");
    assert_eq!(code["served_by"], "claude-opus-4.5");
    assert_eq!(code["escalated"], true);
    assert_eq!(record["escalated_subtasks"], 1);
    assert_eq!(record["escalation_share"], 0.25);
    // Non-critical subtasks were not reviewed.
    assert!(subtask(&record, "docs")["review"].is_null());
    check_accounts(&record);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_budget_stops_the_task_with_partial_results() {
    let upstream = Upstream::start(UpstreamConfig::default()).await;
    script(&upstream, vec![DIAMOND.into()], "", Duration::ZERO);
    let daemon = Daemon::start(config(&upstream)).await;
    // Each call reserves its worst case before it is made: its prompt and
    // its output cap, which it is then held to (the planner's 4096, 4,320
    // tokens in all; 2048 for a subtask, about 2,200 in all). The plan and
    // the design fit one after the other; the two middle subtasks, run in
    // parallel, cannot both reserve theirs.
    let task = json!({"title": "P", "description": HIGH, "budget": {"tokens": 4500}});
    let record = wait(&daemon, &submit(&daemon, task).await).await;
    assert_eq!(record["status"], "budget_exceeded", "{record}");
    assert!(
        record["error"]
            .as_str()
            .unwrap()
            .contains("would exceed the budget")
    );
    assert_eq!(subtask(&record, "design")["status"], "done");
    assert!(
        record["result"]
            .as_str()
            .unwrap()
            .contains("output of design")
    );
    assert!(record["spent_tokens"].as_u64().unwrap() <= 4500);
    check_accounts(&record);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_budget_counts_the_dearest_model_a_call_may_reach() {
    let upstream = Upstream::start(UpstreamConfig::default()).await;
    script(&upstream, vec![DIAMOND.into()], "", Duration::ZERO);
    let daemon = Daemon::start(config(&upstream)).await;
    // The plan goes to a cheap planner, but it may fall back to the
    // premium model: its worst case is priced there, and does not fit.
    let task = json!({"title": "P", "description": HIGH, "budget": {"usd": 0.01}});
    let record = wait(&daemon, &submit(&daemon, task).await).await;
    assert_eq!(record["status"], "budget_exceeded", "{record}");
    let error = record["error"].as_str().unwrap();
    assert!(error.contains("plan on deepseek-v3.2"), "{error}");
    assert!(error.contains("dearest model"), "{error}");
    assert_eq!(record["calls"].as_array().unwrap().len(), 0);
    assert!(upstream.requests().is_empty(), "no upstream call is made");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_task_stops_its_calls() {
    let upstream = Upstream::start(UpstreamConfig::default()).await;
    script(&upstream, vec![DIAMOND.into()], "", Duration::from_secs(20));
    let daemon = Daemon::start(config(&upstream)).await;
    let id = submit(&daemon, json!({"title": "P", "description": HIGH})).await;
    // Wait for the plan, then for the design call to be in flight.
    let started = Instant::now();
    while upstream.requests().len() < 2 {
        assert!(started.elapsed() < Duration::from_secs(10));
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let response = reqwest::Client::new()
        .delete(format!("{}/v1/tasks/{id}", daemon.url))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let record = wait(&daemon, &id).await;
    assert_eq!(record["status"], "cancelled", "{record}");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "cancelling waited for the call"
    );
    let seen = upstream.requests().len();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(upstream.requests().len(), seen, "no call after the cancel");
    assert_eq!(subtask(&record, "design")["status"], "skipped");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn task_events_stream_progress_until_the_end() {
    let upstream = Upstream::start(UpstreamConfig::default()).await;
    script(
        &upstream,
        vec![DIAMOND.into()],
        "",
        Duration::from_millis(50),
    );
    let daemon = Daemon::start(config(&upstream)).await;
    let id = submit(&daemon, json!({"title": "P", "description": HIGH})).await;
    let body = reqwest::get(format!("{}/v1/tasks/{id}/events", daemon.url))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(body.contains("event: plan"), "{body}");
    assert!(body.contains("event: subtask"), "{body}");
    assert!(body.contains("\"status\":\"succeeded\""), "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chat_plan_mode_plans_once_per_session() {
    let upstream = Upstream::start(UpstreamConfig::default()).await;
    script(&upstream, vec![DIAMOND.into()], "", Duration::ZERO);
    let daemon = Daemon::start(config(&upstream)).await;
    let client = reqwest::Client::new();
    let mut planner_costs = Vec::new();
    for turn in 0..3 {
        let response = client
            .post(format!("{}/v1/chat/completions", daemon.url))
            .header("x-pointsman-session", "agent-session-1")
            .json(&json!({"model": "auto", "messages": [{"role": "user", "content": format!("{HIGH} (turn {turn})")}]}))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        let header = |name: &str| response.headers()[name].to_str().unwrap().to_string();
        assert_eq!(header("x-pointsman-tier"), "plan");
        assert_eq!(
            header("x-pointsman-plan"),
            if turn == 0 { "new" } else { "cached" }
        );
        let planner: f64 = header("x-pointsman-planner-cost-usd").parse().unwrap();
        let total: f64 = header("x-pointsman-cost-usd").parse().unwrap();
        assert!(total >= planner);
        planner_costs.push(planner);
    }
    assert!(planner_costs[0] > 0.0 && planner_costs[1] == 0.0 && planner_costs[2] == 0.0);
    let requests = upstream.requests();
    assert_eq!(
        requests.iter().filter(|r| is_plan_request(r)).count(),
        1,
        "one plan per session"
    );
    let executor_calls: Vec<&RecordedRequest> =
        requests.iter().filter(|r| !is_plan_request(r)).collect();
    assert_eq!(executor_calls.len(), 3);
    for call in executor_calls {
        assert_eq!(call.model(), Some("glm-4.7"));
        assert!(
            system_text(call).contains("A planner model has broken this task down"),
            "{:?}",
            call.body
        );
        assert!(system_text(call).contains("Design it."));
    }

    // Another session gets its own plan; streaming works in plan mode.
    let response = client
        .post(format!("{}/v1/messages", daemon.url))
        .json(&json!({"model": "auto", "max_tokens": 100, "stream": true, "metadata": {"user_id": "agent-session-2"},
                      "messages": [{"role": "user", "content": HIGH}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.headers()["x-pointsman-plan"], "new");
    let body = response.text().await.unwrap();
    assert!(body.contains("event: message_stop"), "{body}");
    assert_eq!(
        upstream
            .requests()
            .iter()
            .filter(|r| is_plan_request(r))
            .count(),
        2
    );
}

/// The models of a task's calls, with their purposes, in order.
fn calls(record: &Value) -> Vec<(String, String)> {
    record["calls"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["purpose"].as_str().unwrap().to_string(),
                c["model"].as_str().unwrap_or("-").to_string(),
            )
        })
        .collect()
}

/// A critical task whose planner answers prose every time is planned once
/// more on the escalation model, then served direct, and its answer is
/// reviewed before the task succeeds; the notes say so.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_critical_task_without_a_plan_is_still_reviewed() {
    let upstream = Upstream::start(UpstreamConfig::default()).await;
    script(
        &upstream,
        vec!["I would rather talk about it than write JSON.".into()],
        r#"{"verdict": "accept"}"#,
        Duration::ZERO,
    );
    let daemon = Daemon::start(config(&upstream)).await;
    let task = json!({"title": "Credentials", "description": CRITICAL});
    let record = wait(&daemon, &submit(&daemon, task).await).await;
    assert_eq!(record["route"]["tier"], "plan-and-verify", "{record}");
    assert_eq!(record["status"], "succeeded", "{record}");
    let calls = calls(&record);
    let purposes: Vec<&str> = calls.iter().map(|(p, _)| p.as_str()).collect();
    assert_eq!(
        purposes,
        ["plan", "plan", "plan", "direct", "direct:review"]
    );
    assert_eq!(
        calls[2].1, "claude-opus-4.5",
        "the third plan is asked of the escalation model"
    );
    let notes = record["notes"].to_string();
    assert!(
        notes.contains("asking the escalation model claude-opus-4.5 for the plan"),
        "{notes}"
    );
    assert!(notes.contains("reviewed and accepted"), "{notes}");
    assert!(
        record["result"]
            .as_str()
            .unwrap()
            .contains("output of direct")
    );
    check_accounts(&record);
}

/// When the reviewer answers prose too, the answer is escalated and
/// reviewed again, and the task ends in a clear failure: never an
/// unreviewed success.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_critical_task_that_cannot_be_reviewed_fails_clearly() {
    let upstream = Upstream::start(UpstreamConfig::default()).await;
    script(
        &upstream,
        vec!["Prose, always prose.".into()],
        "Looks fine to me, I suppose.",
        Duration::ZERO,
    );
    let daemon = Daemon::start(config(&upstream)).await;
    let task = json!({"title": "Credentials", "description": CRITICAL});
    let record = wait(&daemon, &submit(&daemon, task).await).await;
    assert_eq!(record["status"], "failed", "{record}");
    let error = record["error"].as_str().unwrap();
    assert!(error.contains("rejected in review twice"), "{error}");
    let purposes: Vec<String> = calls(&record).into_iter().map(|(p, _)| p).collect();
    assert_eq!(
        purposes,
        [
            "plan",
            "plan",
            "plan",
            "direct",
            "direct:review",
            "direct:escalated",
            "direct:review"
        ]
    );
    assert!(record["result"].is_null(), "no unreviewed result: {record}");
}

/// In plan mode on the chat APIs, a critical request whose plan cannot be
/// had (after a try on the escalation model) is served, and says so.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_critical_chat_request_served_without_a_plan_says_so() {
    let upstream = Upstream::start(UpstreamConfig::default()).await;
    script(&upstream, vec!["No plan today.".into()], "", Duration::ZERO);
    let daemon = Daemon::start(config(&upstream)).await;
    let response = reqwest::Client::new()
        .post(format!("{}/v1/chat/completions", daemon.url))
        .json(&json!({"model": "auto", "messages": [{"role": "user", "content": CRITICAL}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let header = |name: &str| {
        response
            .headers()
            .get(name)
            .map(|v| v.to_str().unwrap().to_string())
    };
    assert_eq!(
        header("x-pointsman-tier").as_deref(),
        Some("plan-and-verify")
    );
    assert_eq!(header("x-pointsman-plan").as_deref(), Some("none"));
    let why = header("x-pointsman-plan-error").expect("the reason");
    assert!(why.contains("escalation model"), "{why}");
    let planners: Vec<String> = upstream
        .requests()
        .iter()
        .filter(|r| is_plan_request(r))
        .map(|r| r.model().unwrap_or("?").to_string())
        .collect();
    assert_eq!(planners, ["deepseek-v3.2", "claude-opus-4.5"]);
}

//! The official OpenAI and Anthropic Python SDKs against the real daemon,
//! served by local upstreams of the same and of the other format:
//! non-streaming, streaming and tool calls on the three APIs (chat
//! completions, responses, messages), and plan mode.

mod common;

use pointsman::config::Config;
use pointsman_test_support::sdk::run_sdk_script_async;
use pointsman_test_support::upstream::{
    ANTHROPIC_KEY, Api, OPENAI_KEY, RecordedRequest, Reply, Upstream, UpstreamConfig, Usage,
};
use serde_json::Value;
use sha2::{Digest, Sha256};

use common::{Daemon, is_plan_request, system_text};

const CLIENT_KEY: &str = "sk-pointsman-client-7f3a";

/// A catalog with one model on an OpenAI-format upstream and one on an
/// Anthropic-format upstream; provider keys come from the environment.
fn config(upstream: &Upstream) -> Config {
    // SAFETY: set before any daemon of this test binary reads them, to the
    // same values by every test; nothing else in the process writes them.
    unsafe {
        std::env::set_var("POINTSMAN_TEST_OPENAI_KEY", OPENAI_KEY);
        std::env::set_var("POINTSMAN_TEST_ANTHROPIC_KEY", ANTHROPIC_KEY);
    }
    let hash: String = Sha256::digest(CLIENT_KEY)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    Config::parse(&format!(
        r#"
baseline_model = "premium"

[policies]

[safe_route]
executor = "oa-model"

[providers.oa]
kind = "openai"
base_url = "{openai}"
api_key_env = "POINTSMAN_TEST_OPENAI_KEY"

[providers.an]
kind = "anthropic"
base_url = "{anthropic}"
api_key_env = "POINTSMAN_TEST_ANTHROPIC_KEY"

[providers.rs]
kind = "openai"
base_url = "{openai}"
api_key_env = "POINTSMAN_TEST_OPENAI_KEY"
responses = true

[[models]]
id = "oa-model"
provider = "oa"
upstream = "upstream-oa"
input_usd_per_mtok = 1.0
output_usd_per_mtok = 2.0
context_window = 128000

[[models]]
id = "an-model"
provider = "an"
upstream = "upstream-an"
input_usd_per_mtok = 0.5
output_usd_per_mtok = 1.5
context_window = 128000

[[models]]
id = "rs-model"
provider = "rs"
upstream = "upstream-rs"
input_usd_per_mtok = 1.0
output_usd_per_mtok = 2.0
context_window = 128000

[[models]]
id = "premium"
provider = "an"
input_usd_per_mtok = 5.0
output_usd_per_mtok = 25.0
context_window = 200000

[[model_names]]
pattern = "sdk-pinned-*"
model = "an-model"

[[clients]]
name = "sdk-tests"
key_sha256 = "{hash}"
labels = {{ team = "qa" }}
"#,
        openai = upstream.openai_url(),
        anthropic = upstream.url(),
    ))
    .unwrap()
}

/// Runs `script` with every case against `model` and checks what the
/// gateway and the upstream saw.
async fn run(daemon: &Daemon, upstream: &Upstream, script: &str, model: &str) -> Value {
    let env_model = if script.starts_with("openai") {
        "POINTSMAN_OPENAI_MODEL"
    } else {
        "POINTSMAN_ANTHROPIC_MODEL"
    };
    let before = upstream.total() + 1;
    let summary =
        run_sdk_script_async(script, &daemon.url, CLIENT_KEY, &[(env_model, model)]).await;
    let requests = upstream.requests();
    let ours: Vec<_> = requests.iter().filter(|r| r.seq >= before).collect();
    assert!(
        !ours.is_empty(),
        "{script} via {model}: the upstream saw nothing"
    );
    let expected_upstream = match model {
        "oa-model" => "upstream-oa",
        "rs-model" => "upstream-rs",
        _ => "upstream-an",
    };
    for request in &ours {
        assert_eq!(
            request.model(),
            Some(expected_upstream),
            "{script} via {model}"
        );
        // The provider key is forwarded; the client's key never is.
        let sent = format!("{:?}", request.headers);
        assert!(
            !sent.contains(CLIENT_KEY),
            "the client key leaked upstream: {sent}"
        );
        let key = request.bearer().or(request.api_key());
        let wanted = if model == "an-model" {
            ANTHROPIC_KEY
        } else {
            OPENAI_KEY
        };
        assert_eq!(key, Some(wanted), "{script} via {model}");
    }
    summary
}

fn check_headers(summary: &Value, model: &str) {
    let cases = ["basic", "stream", "tools", "stream_tools"];
    for name in cases {
        let case = &summary[name];
        assert!(case.is_object(), "{name} missing: {summary}");
        // A tool round trip makes two requests.
        let rounds = match &case["headers"] {
            Value::Array(rounds) => rounds.clone(),
            one => vec![one.clone()],
        };
        for headers in &rounds {
            check_one(name, case, headers, model);
        }
    }
}

fn check_one(name: &str, case: &Value, headers: &Value, model: &str) {
    assert_eq!(headers["x-pointsman-model"], model, "{name}: {case}");
    assert_eq!(headers["x-pointsman-tier"], "direct", "{name}: {case}");
    assert_eq!(headers["x-pointsman-policy"], "client", "{name}: {case}");
    if !name.starts_with("stream") {
        let cost: f64 = headers["x-pointsman-cost-usd"]
            .as_str()
            .unwrap()
            .parse()
            .unwrap();
        let baseline: f64 = headers["x-pointsman-baseline-cost-usd"]
            .as_str()
            .unwrap()
            .parse()
            .unwrap();
        assert!(
            cost > 0.0 && baseline > cost,
            "{name}: {cost} vs {baseline}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openai_sdk_through_both_formats() {
    let upstream = Upstream::start(UpstreamConfig::default()).await;
    let daemon = Daemon::start(config(&upstream)).await;
    for model in ["oa-model", "an-model"] {
        let summary = run(&daemon, &upstream, "openai_sdk", model).await;
        check_headers(&summary, model);
    }
}

/// The Responses API (`client.responses.create`), streamed and not, with a
/// function call round trip, on both upstream formats, and passed through
/// to an upstream that speaks it (whose every request is then a Responses
/// one, never stored).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openai_sdk_responses_through_both_formats() {
    let upstream = Upstream::start(UpstreamConfig::default()).await;
    let daemon = Daemon::start(config(&upstream)).await;
    for model in ["oa-model", "an-model", "rs-model"] {
        let before = upstream.total();
        let summary = run(&daemon, &upstream, "openai_responses", model).await;
        check_headers(&summary, model);
        let sent: Vec<_> = upstream
            .requests()
            .into_iter()
            .filter(|r| r.seq > before)
            .collect();
        let passed_through = sent
            .iter()
            .all(|r| r.api == Some(Api::Responses) && r.body["store"] == false);
        assert_eq!(passed_through, model == "rs-model", "{model}");
        // The stream's final event carries the cost of what the upstream
        // counted.
        let pointsman = &summary["stream_tools"]["pointsman"];
        assert_eq!(pointsman["model"], model, "{summary}");
        let usage = &summary["stream_tools"]["usage"];
        assert_eq!(
            pointsman["input_tokens"], usage["input_tokens"],
            "{summary}"
        );
        assert_eq!(
            pointsman["output_tokens"], usage["output_tokens"],
            "{summary}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn anthropic_sdk_through_both_formats() {
    let upstream = Upstream::start(UpstreamConfig::default()).await;
    let daemon = Daemon::start(config(&upstream)).await;
    for model in ["an-model", "oa-model"] {
        let summary = run(&daemon, &upstream, "anthropic_sdk", model).await;
        check_headers(&summary, model);
    }
}

/// `models.retrieve` in both SDKs: a catalog id, the router's alias and a
/// name a `[[model_names]]` rule maps come back as model objects of the id
/// asked, in each API's shape; an unknown id is the SDK's `NotFoundError`
/// carrying the API's error body.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_sdks_retrieve_models() {
    let upstream = Upstream::start(UpstreamConfig::default()).await;
    let daemon = Daemon::start(config(&upstream)).await;
    let ids = "oa-model,auto,sdk-pinned-7";
    for script in ["openai_sdk", "anthropic_sdk"] {
        let summary = run_sdk_script_async(
            script,
            &daemon.url,
            CLIENT_KEY,
            &[
                ("POINTSMAN_CASES", "models"),
                ("POINTSMAN_MODEL_IDS", ids),
                ("POINTSMAN_UNKNOWN_MODEL", "llama-3"),
            ],
        )
        .await;
        let models = &summary["models"];
        for id in ids.split(',') {
            assert_eq!(models[id]["id"], id, "{script}: {summary}");
        }
        let unknown = &models["unknown"];
        assert_eq!(unknown["status"], 404, "{script}: {summary}");
        if script == "openai_sdk" {
            assert_eq!(models["oa-model"]["context_window"], 128000, "{summary}");
            assert_eq!(
                models["sdk-pinned-7"]["resolves_to"], "an-model",
                "{summary}"
            );
            assert_eq!(models["auto"]["owned_by"], "pointsman", "{summary}");
            // The SDK hands over the body's `error` object.
            assert_eq!(unknown["error"]["code"], "model_not_found", "{summary}");
        } else {
            assert_eq!(models["sdk-pinned-7"]["type"], "model", "{summary}");
            assert_eq!(unknown["error"]["type"], "error", "{summary}");
            assert_eq!(
                unknown["error"]["error"]["type"], "not_found_error",
                "{summary}"
            );
        }
        assert_eq!(upstream.total(), 0, "{script}: no upstream is asked");
    }
}

/// Prompts the seed matrix sends to each planner tier.
const HIGH: &str = "Design the architecture of a plugin system across multiple modules";
const CRITICAL: &str = "Rotate the production credentials of the payment service";

/// The planner answers plan requests with a plan named after the request's
/// sequence number (`[plan N]`); executors answer with the name of the plan
/// their system prompt carries, so a client's answer tells which plan its
/// request was served with.
fn script_plans(upstream: &Upstream) {
    upstream.on(|r| {
        if is_plan_request(r) {
            let plan = format!(
                r#"{{"summary": "[plan {}]", "subtasks": [
                    {{"id": "design", "kind": "design", "title": "Design", "instructions": "Sketch the interfaces.", "depends_on": []}},
                    {{"id": "code", "kind": "code", "title": "Code", "instructions": "Write the loader.", "depends_on": ["design"]}}]}}"#,
                r.seq
            );
            return Some(Reply::text(plan));
        }
        let plan = plan_named(&system_text(r)).map_or("no plan".into(), |n| format!("[plan {n}]"));
        Some(Reply::text(format!("Following {plan}, step by step: done.")))
    });
}

/// The `N` of the first `[plan N]` in `text`.
fn plan_named(text: &str) -> Option<u64> {
    let rest = &text[text.find("[plan ")? + "[plan ".len()..];
    rest[..rest.find(']')?].parse().ok()
}

fn price(daemon: &Daemon, model: &str, usage: &Usage) -> f64 {
    let m = daemon.state.dispatch.model(model).expect("a catalog model");
    (usage.input as f64 * m.input_usd_per_mtok + usage.output as f64 * m.output_usd_per_mtok) / 1e6
}

fn usd(value: &Value) -> f64 {
    value
        .as_str()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("not an amount: {value}"))
}

/// Runs `script`'s plan-mode cases (two turns of one session each, non-streamed
/// and streamed) with `prompt` on the seed policies, executors speaking
/// `executors`' API, and checks them against what the upstream saw.
async fn plan_mode(script: &str, prompt: &str, tier: &str, executors: Api) {
    let upstream = Upstream::start(UpstreamConfig::default()).await;
    script_plans(&upstream);
    let daemon = Daemon::start(common::seed_on(&upstream, executors)).await;
    let env_model = if script == "openai_sdk" {
        "POINTSMAN_OPENAI_MODEL"
    } else {
        "POINTSMAN_ANTHROPIC_MODEL"
    };
    let summary = run_sdk_script_async(
        script,
        &daemon.url,
        CLIENT_KEY,
        &[
            ("POINTSMAN_CASES", "plan,plan_stream"),
            (env_model, "auto"),
            ("POINTSMAN_PLAN_PROMPT", prompt),
        ],
    )
    .await;
    let requests = upstream.requests();
    let (plans, executed): (Vec<&RecordedRequest>, Vec<&RecordedRequest>) =
        requests.iter().partition(|r| is_plan_request(r));
    // One plan per session, two turns per session.
    assert_eq!(plans.len(), 2, "{script}: {summary}");
    assert_eq!(executed.len(), 4, "{script}: {summary}");
    for case in ["plan", "plan_stream"] {
        let turns = summary[case]["turns"].as_array().unwrap();
        let n = plan_named(turns[0]["text"].as_str().unwrap())
            .unwrap_or_else(|| panic!("{script} {case}: served without a plan: {summary}"));
        let planner = plans
            .iter()
            .find(|r| r.seq == n)
            .unwrap_or_else(|| panic!("{script} {case}: no plan request #{n}"));
        assert_eq!(planner.model(), Some("deepseek-v3.2"));
        assert!(
            planner.last_user_text().unwrap().contains(prompt),
            "{script} {case}: the planner was not told the task: {:?}",
            planner.body
        );
        let planner_usd = price(&daemon, "deepseek-v3.2", planner.usage.as_ref().unwrap());
        let served: Vec<&&RecordedRequest> = executed
            .iter()
            .filter(|r| plan_named(&system_text(r)) == Some(n))
            .collect();
        assert_eq!(
            served.len(),
            2,
            "{script} {case}: both turns carry plan {n}"
        );
        for (turn, (answer, request)) in turns.iter().zip(served).enumerate() {
            let context = format!("{script} {case} turn {}: {answer}", turn + 1);
            assert_eq!(
                plan_named(answer["text"].as_str().unwrap()),
                Some(n),
                "{context}"
            );
            assert_eq!(request.api, Some(executors), "{context}");
            assert_eq!(request.model(), Some("glm-4.7"), "{context}");
            assert_eq!(request.is_stream(), case == "plan_stream", "{context}");
            let system = system_text(request);
            assert!(
                system.contains("A planner model has broken this task down")
                    && system.contains("Write the loader."),
                "{context}: {system}"
            );
            let headers = &answer["headers"];
            assert_eq!(headers["x-pointsman-tier"], tier, "{context}");
            assert_eq!(headers["x-pointsman-model"], "glm-4.7", "{context}");
            // The client's usage is the executor's; the cost adds the
            // planner's share on the turn that made the plan.
            let usage = request.usage.as_ref().unwrap();
            let (input, output) = if script == "openai_sdk" {
                ("prompt_tokens", "completion_tokens")
            } else {
                ("input_tokens", "output_tokens")
            };
            assert_eq!(answer["usage"][input], usage.input, "{context}");
            assert_eq!(answer["usage"][output], usage.output, "{context}");
            let share = if turn == 0 { planner_usd } else { 0.0 };
            let cost = &answer["cost"];
            assert!(
                (usd(&cost["planner_cost_usd"]) - share).abs() < 1e-8,
                "{context}: planner share {share}"
            );
            let executor_usd = price(&daemon, "glm-4.7", usage);
            assert!(
                (usd(&cost["cost_usd"]) - (executor_usd + share)).abs() < 2e-8,
                "{context}: executor {executor_usd} + planner {share}"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openai_sdk_in_plan_mode() {
    plan_mode("openai_sdk", HIGH, "plan", Api::OpenAi).await;
    plan_mode("openai_sdk", CRITICAL, "plan-and-verify", Api::Anthropic).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn anthropic_sdk_in_plan_mode() {
    plan_mode("anthropic_sdk", HIGH, "plan", Api::Anthropic).await;
    plan_mode("anthropic_sdk", CRITICAL, "plan-and-verify", Api::OpenAi).await;
}

/// Every answer in an SDK script's summary: its request id and the cost
/// the client was told (the cost header, or a stream's closing summary).
fn told(summary: &Value, answers: &mut Vec<(String, f64)>) {
    match summary {
        Value::Object(fields) => {
            if let Some(id) = fields.get("x-pointsman-request-id").and_then(Value::as_str) {
                let cost = fields["told_cost_usd"]
                    .as_str()
                    .and_then(|c| c.parse().ok())
                    .unwrap_or_else(|| panic!("no cost told for {id}: {summary}"));
                answers.push((id.to_string(), cost));
            }
            fields.values().for_each(|v| told(v, answers));
        }
        Value::Array(items) => items.iter().for_each(|v| told(v, answers)),
        _ => {}
    }
}

/// #17 as a new user would check it: traffic from the official SDKs (chat
/// completions, responses translated and passed through, and messages;
/// plain, streamed, tool round trips), the daemon stopped, then `pointsman report` counts every answer
/// and totals exactly what the clients were told.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_report_totals_what_the_sdks_were_told() {
    let upstream = Upstream::start(UpstreamConfig::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let ledger = format!("sqlite:{}", dir.path().join("ledger.db").display());
    let mut config = config(&upstream);
    config.ledger.url = Some(ledger.clone());
    let daemon = Daemon::start(config).await;
    let mut answers = Vec::new();
    for (script, model) in [
        ("openai_sdk", "oa-model"),
        ("openai_responses", "an-model"),
        ("openai_responses", "rs-model"),
        ("anthropic_sdk", "an-model"),
    ] {
        told(&run(&daemon, &upstream, script, model).await, &mut answers);
    }
    daemon.shutdown().await;
    let ids: std::collections::HashSet<&str> = answers.iter().map(|(id, _)| id.as_str()).collect();
    assert_eq!(ids.len(), answers.len(), "an answer id seen twice");
    assert!(answers.len() >= 16, "{answers:?}");

    let report = common::report_json(&ledger, &["--since", "1h"]);
    assert_eq!(
        report["total"]["requests"].as_u64(),
        Some(answers.len() as u64),
        "{report}"
    );
    let told_total: f64 = answers.iter().map(|(_, cost)| cost).sum();
    let spent = report["total"]["spent_usd"].as_f64().unwrap();
    // Each told cost is rounded to 8 decimals.
    assert!(
        (spent - told_total).abs() <= 1e-8 * answers.len() as f64,
        "the report says {spent}, the clients were told {told_total}"
    );
}

//! `pointsman eval` and `pointsman simulate` end to end, through the
//! binary. Every expected figure is recounted here from the daemon's own
//! decisions (`decide` on the gateway's features, as `pointsman route`
//! makes them) on the same inputs, with this file's own arithmetic: nothing
//! is hard-coded but the inputs.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::process::{Command, Output};
use std::sync::Arc;

use pointsman::config::Config;
use pointsman::features::{self, RequestContext};
use pointsman::policy::types::{Features, ModelInfo, Tier};
use pointsman::policy::{PolicyEngine, PolicyModule, Registry, builtin, decide};
use pointsman::provider::Format;
use pointsman_test_support as support;
use serde_json::{Value, json};

fn pointsman(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_pointsman"))
        .args(args)
        .env("POINTSMAN_LOG", "error")
        .output()
        .expect("the pointsman binary runs")
}

fn stdout_json(out: &Output) -> Value {
    assert!(
        out.status.success(),
        "failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("JSON on stdout")
}

async fn module(name: &str, bytes: &[u8], catalog: &[ModelInfo]) -> Arc<PolicyModule> {
    let config = Config::demo();
    let engine = PolicyEngine::new(pointsman::policy::limits(&config), None).unwrap();
    Registry::new(engine)
        .load(name, bytes.to_vec(), catalog)
        .await
        .unwrap()
}

fn prompt_features(prompt: &str, labels: &[(String, String)]) -> Features {
    let body = json!({"model": "auto", "messages": [{"role": "user", "content": prompt}]});
    features::from_json(
        Format::OpenAi,
        &body,
        RequestContext {
            id: "test".into(),
            labels: labels.to_vec(),
            session: None,
        },
    )
    .unwrap()
}

/// The strong-call rule, restated: planned, or a premium executor.
fn strong(tier: Tier, executor: &str, catalog: &[ModelInfo]) -> bool {
    tier != Tier::Direct
        || catalog
            .iter()
            .any(|m| m.id == executor && m.roles.iter().any(|r| r == "premium"))
}

/// Labelled prompts: (prompt, strong outcome, weak outcome).
fn labelled() -> Vec<(&'static str, f64, f64)> {
    vec![
        ("Fix the typo in the README", 1.0, 1.0),
        ("Rotate the production database credentials", 1.0, 0.0),
        ("Design a new billing service across modules", 1.0, 0.0),
        ("What is the capital of France?", 1.0, 1.0),
        (
            "Audit the login flow for security vulnerabilities",
            0.0,
            0.0,
        ),
        ("Rename the variable tmp to count", 0.0, 1.0),
        (
            "Which of these is a prime number? A. 4 B. 9 C. 7 D. 8",
            1.0,
            0.0,
        ),
        ("Refactor the parser across several components", 1.0, 1.0),
        ("Explain the difference between TCP and UDP", 0.5, 0.25),
        ("Deploy the new release to prod", 1.0, 1.0),
        ("Summarise this paragraph in one sentence", 0.0, 1.0),
        ("Architect a plugin framework from scratch", 1.0, 0.0),
    ]
}

/// Writes the labelled file with two bad lines (3: not JSON; 8: no weak
/// outcome) and returns the line numbers of the good ones.
fn write_labelled(path: &Path) -> Vec<usize> {
    let mut text = String::new();
    let mut good = Vec::new();
    let mut line = 0;
    for (i, (prompt, s, w)) in labelled().into_iter().enumerate() {
        if i == 2 {
            text.push_str("{not json\n");
            line += 1;
        }
        if i == 6 {
            text.push_str(&format!(
                "{}\n",
                json!({"prompt": "half labelled", "outcomes": {"strong": true}})
            ));
            line += 1;
        }
        let outcome = |v: f64| {
            if v == 1.0 {
                json!(true)
            } else if v == 0.0 {
                json!(false)
            } else {
                json!(v)
            }
        };
        text.push_str(&format!(
            "{}\n",
            json!({"prompt": prompt, "outcomes": {"strong": outcome(s), "weak": outcome(w)}})
        ));
        line += 1;
        good.push(line);
    }
    std::fs::write(path, text).unwrap();
    good
}

/// The recount: (strong calls, quality, strong only, weak only, oracle quality).
async fn recount(labels: &[(String, String)]) -> (usize, f64, f64, f64, f64) {
    let config = Config::demo();
    let catalog = pointsman::policy::catalog(&config);
    let router = module("seed-matrix", builtin::SEED_MATRIX, &catalog).await;
    let data = labelled();
    let n = data.len() as f64;
    let (mut calls, mut quality, mut s_only, mut w_only, mut oracle) = (0, 0.0, 0.0, 0.0, 0.0);
    for (prompt, s, w) in data {
        let d = decide(
            Some(&router),
            &prompt_features(prompt, labels),
            &catalog,
            &pointsman::policy::safe_route(&config),
        )
        .await;
        assert!(d.fallback_reason.is_none());
        let is_strong = strong(d.route.tier, &d.route.executor, &catalog);
        calls += usize::from(is_strong);
        quality += if is_strong { s } else { w };
        s_only += s;
        w_only += w;
        oracle += s.max(w);
    }
    (calls, quality / n, s_only / n, w_only / n, oracle / n)
}

fn close(a: &Value, b: f64) {
    let a = a.as_f64().unwrap_or_else(|| panic!("{a} is not a number"));
    assert!((a - b).abs() < 1e-9, "{a} != {b}");
}

#[tokio::test]
async fn eval_agrees_with_a_recount_of_the_policys_own_decisions() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("labelled.jsonl");
    write_labelled(&data);
    let out = pointsman(&[
        "eval",
        "--policy",
        "seed-matrix",
        "--data",
        data.to_str().unwrap(),
        "--strong",
        "strong",
        "--weak",
        "weak",
        "--format",
        "json",
    ]);
    let report = stdout_json(&out);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("line 3") && stderr.contains("line 8"),
        "{stderr}"
    );
    let bad: Vec<u64> = report["malformed"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["line"].as_u64().unwrap())
        .collect();
    assert_eq!(bad, [3, 8]);

    let (calls, quality, s_only, w_only, oracle) = recount(&[]).await;
    let s = &report["scores"];
    let n = labelled().len();
    assert_eq!(s["prompts"], n);
    assert!(
        calls > 0 && calls < n,
        "the data must split the router: {calls}"
    );
    assert_eq!(s["strong_calls"], calls);
    let share = calls as f64 / n as f64;
    close(&s["strong_share"], share);
    close(&s["quality"], quality);
    close(&s["strong_only"], s_only);
    close(&s["weak_only"], w_only);
    close(&s["quality_vs_strong_only"], quality / s_only);
    close(
        &s["random_at_same_share"],
        w_only + share * (s_only - w_only),
    );
    close(&s["pgr"], (quality - w_only) / (s_only - w_only));
    close(&s["oracle"]["quality"], oracle);
    assert_eq!(s["failures"], json!({}));

    // The table says the same.
    let out = pointsman(&[
        "eval",
        "--policy",
        "seed-matrix",
        "--data",
        data.to_str().unwrap(),
        "--strong",
        "strong",
        "--weak",
        "weak",
    ]);
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success());
    assert!(
        table.contains(&format!("strong calls:           {calls} (")),
        "{table}"
    );
}

#[tokio::test]
async fn a_sweep_recounts_at_every_value() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("labelled.jsonl");
    write_labelled(&data);
    let out = pointsman(&[
        "eval",
        "--policy",
        "seed-matrix",
        "--data",
        data.to_str().unwrap(),
        "--strong",
        "strong",
        "--weak",
        "weak",
        "--format",
        "json",
        "--sweep",
        "pointsman.threshold=0:1:0.25",
    ]);
    let report = stdout_json(&out);
    let sweep = &report["sweep"];
    let points = sweep["points"].as_array().unwrap();
    let values: Vec<&str> = points
        .iter()
        .map(|p| p["value"].as_str().unwrap())
        .collect();
    assert_eq!(values, ["0", "0.25", "0.5", "0.75", "1"]);
    let mut curve = vec![(0.0, 0.0), (1.0, 1.0)];
    let mut shares = Vec::new();
    for p in points {
        let label = vec![(
            "pointsman.threshold".to_string(),
            p["value"].as_str().unwrap().to_string(),
        )];
        let (calls, quality, s_only, w_only, _) = recount(&label).await;
        let share = calls as f64 / labelled().len() as f64;
        close(&p["strong_share"], share);
        close(&p["quality"], quality);
        let pgr = (quality - w_only) / (s_only - w_only);
        close(&p["pgr"], pgr);
        curve.push((share, pgr));
        shares.push(share);
    }
    // The threshold moves the router: more strong calls at 0 than at 1.
    assert!(shares[0] > shares[4], "{shares:?}");
    // The default (0.5) routes as without the label.
    close(
        &points[2]["strong_share"],
        report["scores"]["strong_share"].as_f64().unwrap(),
    );
    // APGR: trapezoids with both ends, the best PGR at a repeated share.
    curve.sort_by(|a, b| a.0.total_cmp(&b.0).then(b.1.total_cmp(&a.1)));
    curve.dedup_by(|later, kept| later.0 == kept.0);
    let apgr: f64 = curve
        .windows(2)
        .map(|w| (w[1].0 - w[0].0) * (w[0].1 + w[1].1) / 2.0)
        .sum();
    close(&sweep["apgr"], apgr);
    let cpt = |x: f64| {
        points
            .iter()
            .filter(|p| p["pgr"].as_f64().unwrap() >= x)
            .map(|p| p["strong_share"].as_f64().unwrap())
            .min_by(f64::total_cmp)
    };
    assert_eq!(sweep["cpt50"].as_f64(), cpt(0.5));
    assert_eq!(sweep["cpt80"].as_f64(), cpt(0.8));
}

#[test]
fn bad_labelled_input_is_refused_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("labelled.jsonl");
    write_labelled(&data);
    let path = data.to_str().unwrap();
    let base = ["eval", "--policy", "seed-matrix", "--data", path];

    let out = pointsman(
        &[
            &base[..],
            &["--strong", "strong", "--weak", "weak", "--strict"],
        ]
        .concat(),
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("2 malformed line(s)") && stderr.contains("line 3"),
        "{stderr}"
    );

    let out = pointsman(&[&base[..], &["--strong", "gpt-5", "--weak", "weak"]].concat());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("--strong \"gpt-5\"") && stderr.contains("strong, weak"),
        "{stderr}"
    );

    let empty = dir.path().join("empty.jsonl");
    std::fs::write(&empty, "\n\n").unwrap();
    let out = pointsman(&[
        "eval",
        "--policy",
        "seed-matrix",
        "--data",
        empty.to_str().unwrap(),
        "--strong",
        "strong",
        "--weak",
        "weak",
    ]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("empty"));

    let out = pointsman(
        &[
            &base[..],
            &[
                "--strong",
                "strong",
                "--weak",
                "weak",
                "--sweep",
                "pointsman.threshold=1:0:0.1",
            ],
        ]
        .concat(),
    );
    assert!(!out.status.success());
}

#[test]
fn a_gzip_file_reads_like_a_plain_one() {
    use std::io::Write;
    let dir = tempfile::tempdir().unwrap();
    let plain = dir.path().join("labelled.jsonl");
    write_labelled(&plain);
    let gz = dir.path().join("labelled.jsonl.gz");
    let mut encoder = flate2::write::GzEncoder::new(
        std::fs::File::create(&gz).unwrap(),
        flate2::Compression::default(),
    );
    encoder.write_all(&std::fs::read(&plain).unwrap()).unwrap();
    encoder.finish().unwrap();
    let run = |p: &Path| {
        stdout_json(&pointsman(&[
            "eval",
            "--policy",
            "seed-matrix",
            "--data",
            p.to_str().unwrap(),
            "--strong",
            "strong",
            "--weak",
            "weak",
            "--format",
            "json",
        ]))["scores"]
            .clone()
    };
    assert_eq!(run(&plain), run(&gz));
}

#[tokio::test]
async fn a_policy_that_traps_on_some_prompts_is_counted_not_fatal() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("hostile.jsonl");
    let lines: Vec<String> = ["trap", "fine", "loop", "unknown", "fine too"]
        .iter()
        .map(|p| json!({"prompt": p, "outcomes": {"s": true, "w": false}}).to_string())
        .collect();
    std::fs::write(&data, lines.join("\n")).unwrap();
    let report = stdout_json(&pointsman(&[
        "eval",
        "--policy",
        support::HOSTILE,
        "--data",
        data.to_str().unwrap(),
        "--strong",
        "s",
        "--weak",
        "w",
        "--format",
        "json",
    ]));
    let s = &report["scores"];
    assert_eq!(s["prompts"], 5);
    assert_eq!(
        s["failures"],
        json!({"trap": 1, "timeout": 1, "invalid": 1})
    );
    // Recount: failures are served the safe route (glm-4.7, direct: a weak
    // call); the others go to the first catalog model.
    let config = Config::demo();
    let catalog = pointsman::policy::catalog(&config);
    let hostile = module("hostile", &support::read(support::HOSTILE), &catalog).await;
    let mut calls = 0;
    for p in ["trap", "fine", "loop", "unknown", "fine too"] {
        let d = decide(
            Some(&hostile),
            &prompt_features(p, &[]),
            &catalog,
            &pointsman::policy::safe_route(&config),
        )
        .await;
        calls += usize::from(strong(d.route.tier, &d.route.executor, &catalog));
    }
    assert_eq!(s["strong_calls"], calls);
}

/// Workload records: (api, body, output tokens, session).
fn workload() -> Vec<Value> {
    let tool_turn = json!({
        "model": "claude-sonnet-4-5", "max_tokens": 4000,
        "messages": [
            {"role": "user", "content": "Design a new plugin system across modules"},
            {"role": "assistant", "content": [{"type": "tool_use", "id": "t1", "name": "read", "input": {"path": "src/lib.rs"}}]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t1", "content": "fn main() {}"}]}
        ]
    });
    vec![
        json!({"request": {"model": "gpt-4.1", "messages": [{"role": "user", "content": "Fix the typo in the README"}]}, "output_tokens": 120}),
        json!({"request": {"model": "gpt-4.1", "messages": [{"role": "user", "content": "Rotate the production secrets"}]}}),
        json!({"api": "anthropic", "session": "s1", "output_tokens": 3000, "request": {"model": "claude-sonnet-4-5", "max_tokens": 4000, "messages": [{"role": "user", "content": "Design a new plugin system across modules"}]}}),
        json!({"api": "anthropic", "session": "s1", "output_tokens": 800, "request": tool_turn}),
        json!({"request": {"model": "gpt-4.1", "messages": [{"role": "system", "content": "You are a coding agent."}, {"role": "user", "content": "Refactor the retry loop"}]}, "labels": {"team": "web"}, "output_tokens": 1500}),
    ]
}

#[tokio::test]
async fn simulate_agrees_with_a_recount() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("workload.jsonl");
    let mut text: Vec<String> = workload().iter().map(Value::to_string).collect();
    text.insert(1, "{\"request\": 3}".to_string());
    // A request the gateway would refuse (Anthropic requires max_tokens).
    text.push(
        json!({"api": "anthropic", "request": {"model": "m", "messages": [{"role": "user", "content": "hi"}]}})
            .to_string(),
    );
    std::fs::write(&path, text.join("\n")).unwrap();
    let out = pointsman(&[
        "simulate",
        "--policy",
        "premium-only",
        "--policy",
        "seed-matrix",
        "--workload",
        path.to_str().unwrap(),
        "--per-day",
        "200",
        "--format",
        "json",
    ]);
    let report = stdout_json(&out);
    assert!(String::from_utf8_lossy(&out.stderr).contains("line 2"));
    assert_eq!(report["malformed"][0]["line"], 2);
    let refused = &report["malformed"][1];
    assert_eq!(refused["line"], 7, "{report}");
    assert!(
        refused["reason"].as_str().unwrap().contains("max_tokens"),
        "{refused}"
    );

    // The recount: the daemon's features and decisions, priced here.
    let config = Config::demo();
    let catalog = pointsman::policy::catalog(&config);
    let price = |id: &str, input: f64, output: f64| {
        let m = catalog.iter().find(|m| m.id == id).unwrap();
        (input * m.input_usd_per_mtok + output * m.output_usd_per_mtok) / 1e6
    };
    let matrix = module("seed-matrix", builtin::SEED_MATRIX, &catalog).await;
    let planner_output = report["assumed_output_tokens"]["planner call"]
        .as_f64()
        .unwrap();
    let (mut baseline, mut executors, mut tiers) = (0.0, 0.0, BTreeMap::new());
    let mut session_tier: HashMap<String, Tier> = HashMap::new();
    let mut planned_sessions = 0;
    let mut planned_without_session = 0;
    for record in workload() {
        let session = record["session"].as_str().map(str::to_string);
        let ctx = RequestContext {
            id: "t".into(),
            labels: vec![],
            session: session.clone(),
        };
        let format = if record["api"] == "anthropic" {
            Format::Anthropic
        } else {
            Format::OpenAi
        };
        let mut f = features::from_json(format, &record["request"], ctx).unwrap();
        let continues = features::answers_tools(&f.messages);
        if continues && let Some(t) = session.as_ref().and_then(|s| session_tier.get(s)) {
            features::set_label(&mut f.labels, features::TASK_TIER_LABEL, t.as_str().into());
        }
        let d = decide(
            Some(&matrix),
            &f,
            &catalog,
            &pointsman::policy::safe_route(&config),
        )
        .await;
        if !continues && let Some(s) = &session {
            session_tier.insert(s.clone(), d.route.tier);
        }
        let tier = d.route.tier;
        *tiers.entry(tier.as_str().to_string()).or_insert(0) += 1;
        let output = record["output_tokens"].as_f64().unwrap_or_else(|| {
            report["assumed_output_tokens"][tier.as_str()]
                .as_f64()
                .unwrap()
        });
        let input = f.input_tokens as f64;
        let direct_output = record["output_tokens"]
            .as_f64()
            .unwrap_or_else(|| report["assumed_output_tokens"]["direct"].as_f64().unwrap());
        baseline += price("claude-opus-4.5", input, direct_output);
        let plan = if tier == Tier::Direct {
            0.0
        } else {
            planner_output
        };
        if tier != Tier::Direct {
            match &session {
                Some(_) if continues => {}
                Some(_) => planned_sessions += 1,
                None => planned_without_session += 1,
            }
        }
        executors += price(&d.route.executor, input + plan, output);
    }
    let [premium, matrix_result] = [&report["policies"][0], &report["policies"][1]];
    // premium-only is the baseline, request for request.
    close(&premium["baseline_usd"], baseline);
    close(&premium["cost_usd"], baseline);
    close(&matrix_result["baseline_usd"], baseline);
    close(&matrix_result["executor_usd"], executors);
    assert_eq!(matrix_result["tiers"], json!(tiers));
    assert!(
        tiers.len() == 3,
        "the workload covers every tier: {tiers:?}"
    );
    // One planner call per planned session and per planned request without one.
    assert_eq!(
        matrix_result["planner_calls"],
        planned_sessions + planned_without_session
    );
    assert!(matrix_result["planner_usd"].as_f64().unwrap() > 0.0);
    close(
        &matrix_result["cost_usd"],
        executors + matrix_result["planner_usd"].as_f64().unwrap(),
    );
    let cost = matrix_result["cost_usd"].as_f64().unwrap();
    close(&matrix_result["savings"], 1.0 - cost / baseline);
    close(&matrix_result["projection"]["daily"], cost / 5.0 * 200.0);
    close(
        &matrix_result["projection"]["yearly"],
        cost / 5.0 * 200.0 * 365.0,
    );
    // The diff: every request leaves claude-opus-4.5.
    let diff = &report["diffs"][0];
    assert_eq!(diff["changed"], 5);
    close(&diff["cost_delta_usd"], cost - baseline);
    let examples = diff["examples"].as_array().unwrap();
    assert!(
        examples[0]["from_reasoning"]
            .as_str()
            .unwrap()
            .contains("premium-only")
    );
    assert!(!examples[0]["to_reasoning"].as_str().unwrap().is_empty());
}

#[test]
fn simulate_runs_the_shipped_workload_and_refuses_bad_input() {
    let workload = support::workspace_root().join("examples/workloads/seed-day.jsonl");
    let out = pointsman(&[
        "simulate",
        "--policy",
        "premium-only",
        "--policy",
        "seed-matrix",
        "--workload",
        workload.to_str().unwrap(),
        "--per-day",
        "100",
    ]);
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for part in [
        "Daily",
        "Monthly",
        "Yearly",
        "side by side",
        "change route",
        "planner deepseek-v3.2",
    ] {
        assert!(table.contains(part), "{part} missing:\n{table}");
    }

    let dir = tempfile::tempdir().unwrap();
    let empty = dir.path().join("empty.jsonl");
    std::fs::write(&empty, "").unwrap();
    let out = pointsman(&[
        "simulate",
        "--policy",
        "seed-matrix",
        "--workload",
        empty.to_str().unwrap(),
    ]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no usable request"));
}

/// A ledger call row with a kept policy view, as the dispatch path writes it
/// with `[ledger] keep_requests = "policy-view"`.
fn ledger_call(
    request_id: &str,
    at_ms: i64,
    output_tokens: u64,
    view: &Features,
) -> pointsman::ledger::CallRecord {
    use pointsman::ledger::record::{Api, CallRole, CallStatus};
    pointsman::ledger::CallRecord {
        request_id: request_id.into(),
        task_id: None,
        at_ms,
        client: "alice".into(),
        labels: BTreeMap::new(),
        session: view.session.clone(),
        api: Api::ChatCompletions,
        role: CallRole::Answer,
        stream: false,
        requested_model: view.requested_model.clone(),
        router: None,
        planner: None,
        tier: Some("direct".into()),
        reasoning: None,
        served_model: Some("glm-4.7".into()),
        provider: None,
        endpoint: None,
        attempts: Vec::new(),
        escalated: false,
        input_tokens: u64::from(view.input_tokens),
        output_tokens,
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
        policy_view: Some(serde_json::to_string(view).unwrap()),
    }
}

/// What a replayed request must give a router: the view but its request
/// id, the token counts of text the view never kept, and the recounted
/// `task_tokens` label.
fn replayable(f: &Features) -> Value {
    let mut labels: Vec<&(String, String)> = f
        .labels
        .iter()
        .filter(|(k, _)| k != features::TASK_TOKENS_LABEL)
        .collect();
    labels.sort();
    json!({
        "api": f.api,
        "requested_model": f.requested_model,
        "messages": f.messages,
        "max_output_tokens": f.max_output_tokens,
        "tool_count": f.tool_count,
        "labels": labels,
        "session": f.session,
    })
}

#[test]
fn report_export_workload_replays_the_policy_view_and_simulate_reads_it() {
    let ctx = |labels: &[(&str, &str)], session: Option<&str>| RequestContext {
        id: "pm-1".into(),
        labels: labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        session: session.map(str::to_string),
    };
    // An OpenAI request with tools and a message longer than a policy sees.
    let long = "x".repeat(5_000);
    let openai = features::from_json(
        Format::OpenAi,
        &json!({
            "model": "gpt-4.1", "max_tokens": 900,
            "messages": [
                {"role": "system", "content": "You are a coding agent."},
                {"role": "user", "content": format!("Fix the bug, \"quoted\"\n{long}")},
            ],
            "tools": [{"type": "function", "function": {"name": "read"}},
                      {"type": "function", "function": {"name": "edit"}}],
        }),
        ctx(&[("team", "web")], Some("s-1")),
    )
    .unwrap();
    assert_eq!(
        openai.messages[1].content.len(),
        features::POLICY_MESSAGE_BYTES
    );
    // An Anthropic request with a system prompt, a tool call and its result.
    let anthropic = features::from_json(
        Format::Anthropic,
        &json!({
            "model": "claude-opus-4-5", "max_tokens": 4096, "system": "Be brief.",
            "messages": [
                {"role": "user", "content": "Rename foo to bar"},
                {"role": "assistant", "content": [
                    {"type": "tool_use", "id": "t", "name": "grep", "input": {"q": "foo"}}]},
                {"role": "user", "content": [
                    {"type": "tool_result", "tool_use_id": "t", "content": "src/a.rs:1 foo"}]},
            ],
            "tools": [{"name": "grep", "input_schema": {"type": "object"}}],
            "metadata": {"user_id": "s-2"},
        }),
        ctx(&[], None),
    )
    .unwrap();
    let calls = vec![
        ledger_call("r1", 1_000, 700, &openai),
        ledger_call("r2", 2_000, 300, &anthropic),
    ];
    let text = pointsman::ledger::report::export_workload(&calls);
    let first: Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
    // The host's own label (`features::TASK_TOKENS_LABEL`, which the view
    // carries) is left for the replay to count again.
    assert_eq!(first["labels"], json!({"team": "web"}));

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("exported.jsonl");
    std::fs::write(&path, &text).unwrap();
    let (records, malformed) = pointsman::offline::workload::load(&path).unwrap();
    assert!(malformed.is_empty(), "{malformed:?}");
    assert_eq!(records.len(), 2);
    assert_eq!(records[0].output_tokens, Some(700));
    assert_eq!(records[1].output_tokens, Some(300));
    for (record, original) in records.iter().zip([&openai, &anthropic]) {
        assert_eq!(replayable(&record.features()), replayable(original));
    }

    // And `pointsman simulate` takes the file as it is.
    let out = pointsman(&[
        "simulate",
        "--policy",
        "seed-matrix",
        "--workload",
        path.to_str().unwrap(),
        "--format",
        "json",
    ]);
    let report = stdout_json(&out);
    assert_eq!(report["policies"][0]["requests"], 2, "{report}");
}

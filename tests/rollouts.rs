//! Rollouts seen from outside, on a real daemon: the seed's plan from
//! `premium-only` to `seed-matrix` (10% → 50% → 95%, sticky sessions,
//! shares within sampling error, the same step and arms after a restart),
//! a bad candidate rolled back within its first step, shadow mode's
//! recorded decisions and diff, a changed module pausing a rollout, and
//! bad input refused with nothing changed.

mod common;

use std::collections::HashMap;
use std::time::Duration;

use pointsman::config::Config;
use reqwest::StatusCode;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use common::{Daemon, Process, free_port};

const ADMIN: &str = "admin-key";

fn sha256(key: &str) -> String {
    hex::encode(Sha256::digest(key.as_bytes()))
}

/// The demo on `premium-only` with an admin key, fast evaluations, and
/// `extra` appended; recording into `ledger`.
fn config(extra: &str, ledger: &std::path::Path) -> Config {
    let text = pointsman::config::DEMO_TOML
        .replace("latency_ms = 20", "latency_ms = 0")
        .replace("tokens_per_second = 400", "tokens_per_second = 0")
        .replace("router = \"seed-matrix\"", "router = \"premium-only\"");
    let mut config = Config::parse(&format!(
        "{text}\n[admin]\nkey_sha256 = \"{}\"\n{extra}",
        sha256(ADMIN)
    ))
    .unwrap();
    config.ledger.url = Some(format!("sqlite:{}", ledger.display()));
    config
}

const FAST: &str = "[rollouts]\nevaluate_every_ms = 100\nmin_requests = 20\n";

/// One chat request in session `session`: the arm and policy it was
/// served by (from the response headers).
async fn ask(daemon: &Daemon, session: &str, text: &str) -> (Option<String>, String) {
    let response = reqwest::Client::new()
        .post(format!("{}/v1/chat/completions", daemon.url))
        .bearer_auth("any")
        .header("x-pointsman-session", session)
        .json(&json!({"model": "auto", "messages": [{"role": "user", "content": text}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let header = |name: &str| {
        response
            .headers()
            .get(name)
            .map(|v| v.to_str().unwrap().to_string())
    };
    let arm = header("x-pointsman-arm");
    let policy = header("x-pointsman-policy").unwrap();
    response.bytes().await.unwrap();
    (arm, policy)
}

/// `GET /v1/rollouts/router/diff`, which must answer 200.
async fn router_diff(daemon: &Daemon) -> Value {
    let (code, diff) = admin(
        daemon,
        reqwest::Method::GET,
        "/v1/rollouts/router/diff",
        None,
    )
    .await;
    assert_eq!(code, StatusCode::OK, "{diff}");
    diff
}

/// The daemon's Prometheus scrape.
async fn metrics(daemon: &Daemon) -> String {
    reqwest::Client::new()
        .get(format!("{}/metrics", daemon.url))
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

async fn admin(
    daemon: &Daemon,
    method: reqwest::Method,
    path: &str,
    body: Option<Value>,
) -> (StatusCode, Value) {
    admin_as(daemon, ADMIN, method, path, body).await
}

async fn admin_as(
    daemon: &Daemon,
    key: &str,
    method: reqwest::Method,
    path: &str,
    body: Option<Value>,
) -> (StatusCode, Value) {
    let mut request = reqwest::Client::new()
        .request(method, format!("{}{path}", daemon.url))
        .bearer_auth(key);
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.unwrap();
    let status = response.status();
    (status, response.json().await.unwrap_or(Value::Null))
}

async fn status(daemon: &Daemon) -> Value {
    let (code, body) = admin(daemon, reqwest::Method::GET, "/v1/rollouts", None).await;
    assert_eq!(code, StatusCode::OK, "{body}");
    body["rollouts"][0].clone()
}

/// Waits until the rollout's status satisfies `done`.
async fn wait_for(daemon: &Daemon, what: &str, done: impl Fn(&Value) -> bool) -> Value {
    for _ in 0..200 {
        let s = status(daemon).await;
        if done(&s) {
            return s;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the rollout never reached {what}: {}", status(daemon).await);
}

/// Sends one request from each of `sessions` sessions (named `prefix-i`);
/// the arm each was served on.
async fn round(daemon: &Daemon, prefix: &str, sessions: usize) -> HashMap<String, Option<String>> {
    let mut arms = HashMap::new();
    for i in 0..sessions {
        let session = format!("{prefix}-{i}");
        let (arm, _) = ask(daemon, &session, "Fix the typo in the README's first line.").await;
        arms.insert(session, arm);
    }
    arms
}

fn on_candidate(arms: &HashMap<String, Option<String>>) -> usize {
    arms.values()
        .filter(|a| a.as_deref().is_some_and(|a| a.ends_with("/candidate")))
        .count()
}

/// Whether `count` of `n` is within 4 standard errors of share `p`.
fn near(count: usize, n: usize, p: f64) -> bool {
    let se = (p * (1.0 - p) / n as f64).sqrt();
    ((count as f64 / n as f64) - p).abs() < 4.0 * se
}

/// Starts a rollout of `body` through the admin API; its status.
async fn start(daemon: &Daemon, body: Value) -> Value {
    let (code, started) = admin(daemon, reqwest::Method::POST, "/v1/rollouts", Some(body)).await;
    assert_eq!(code, StatusCode::CREATED, "{started}");
    started
}

/// `POST /v1/rollouts/router/<what>` (promote, abort), which must succeed;
/// the rollout's status.
async fn router_command(daemon: &Daemon, what: &str) -> Value {
    let path = format!("/v1/rollouts/router/{what}");
    let (code, status) = admin(daemon, reqwest::Method::POST, &path, None).await;
    assert_eq!(code, StatusCode::OK, "{what}: {status}");
    status
}

/// Sends request after request (`send(i)` says whether the candidate
/// served the `i`th) until the rollout is rolled back, letting an
/// evaluation run after every 20; the rolled-back status. Fails past 50
/// candidate requests beyond the minimum sample of 20.
async fn until_rolled_back(daemon: &Daemon, mut send: impl AsyncFnMut(usize) -> bool) -> Value {
    let mut candidate_requests = 0;
    for i in 1.. {
        candidate_requests += usize::from(send(i).await);
        if i % 20 == 0 {
            tokio::time::sleep(Duration::from_millis(150)).await;
            let s = status(daemon).await;
            if s["phase"]["state"] == "rolled-back" {
                return s;
            }
        }
        assert!(
            candidate_requests <= 20 + 50,
            "not rolled back after {candidate_requests} candidate requests: {}",
            status(daemon).await
        );
    }
    unreachable!()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_seed_plan_runs_from_premium_only_to_95_percent_and_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let ledger = dir.path().join("ledger.db");
    let daemon = Daemon::start(config(FAST, &ledger)).await;
    // A long hold: the operator moves the steps here (`promote`), so
    // that each step's shares can be counted; the next test lets the
    // hold move them.
    let started = start(
        &daemon,
        json!({"world": "router", "candidate": "seed-matrix", "steps": [10, 50, 95], "hold": "1h"}),
    )
    .await;
    assert_eq!(started["stable"]["name"], "premium-only");
    let id = started["id"].as_str().unwrap().to_string();

    // Step 1, 10%: 400 sessions, each on one arm for two requests.
    let first = round(&daemon, "a", 400).await;
    let again = round(&daemon, "a", 400).await;
    assert!(first == again, "a session changed arms within a step");
    assert!(
        near(on_candidate(&first), 400, 0.10),
        "{} of 400 at 10%",
        on_candidate(&first)
    );
    assert!(
        first
            .values()
            .all(|a| a.as_deref().is_some_and(|a| a.starts_with(&id)))
    );

    // 50%, then 95%. Sessions on the candidate stay there as its share
    // grows.
    router_command(&daemon, "promote").await;
    let s = status(&daemon).await;
    assert_eq!(s["candidate_share_percent"], json!(50.0));
    assert_eq!(s["phase"]["state"], "running");
    let half = round(&daemon, "a", 400).await;
    assert!(
        near(on_candidate(&half), 400, 0.50),
        "{} of 400 at 50%",
        on_candidate(&half)
    );
    for (session, arm) in &first {
        if arm.as_deref().is_some_and(|a| a.ends_with("/candidate")) {
            assert_eq!(
                &half[session], arm,
                "{session} left the candidate as its share grew"
            );
        }
    }
    router_command(&daemon, "promote").await;
    let s = status(&daemon).await;
    assert_eq!(s["candidate_share_percent"], json!(95.0));
    let last = round(&daemon, "a", 400).await;
    assert!(
        near(on_candidate(&last), 400, 0.95),
        "{} of 400 at 95%",
        on_candidate(&last)
    );
    // The last step holds, the stable arm is the control and the guards
    // keep running.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let held = status(&daemon).await;
    assert_eq!(held["candidate_share_percent"], json!(95.0));
    assert_eq!(held["phase"]["state"], "running");
    assert_eq!(held["version"], s["version"]);

    // Cost per arm: the candidate (mostly cheap executors) costs less per
    // request than the premium-only control.
    let (code, usage) = admin(
        &daemon,
        reqwest::Method::GET,
        "/v1/usage?by=arm&since=1h",
        None,
    )
    .await;
    assert_eq!(code, StatusCode::OK, "{usage}");
    let per_request = |arm: &str| {
        let row = usage["rows"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["key"] == json!(format!("{id}/{arm}")))
            .unwrap_or_else(|| panic!("no {arm} row in {usage}"));
        row["spent_usd"].as_f64().unwrap() / row["requests"].as_f64().unwrap()
    };
    assert!(
        per_request("candidate") < per_request("stable") / 2.0,
        "{usage}"
    );

    // A restart (the same ledger): the same step, the same arms.
    daemon.shutdown().await;
    let daemon = Daemon::start(config(FAST, &ledger)).await;
    let after = status(&daemon).await;
    assert_eq!(after["id"], json!(id));
    assert_eq!(after["candidate_share_percent"], json!(95.0));
    let restarted = round(&daemon, "a", 400).await;
    assert!(restarted == last, "sessions changed arms across a restart");

    // Promote: the candidate replaces premium-only; no arm any more.
    let promoted = router_command(&daemon, "promote").await;
    assert_eq!(promoted["phase"]["state"], "promoted");
    let (arm, policy) = ask(&daemon, "a-1", "Fix the typo.").await;
    assert_eq!(arm, None);
    assert!(policy.starts_with("seed-matrix@"), "{policy}");
    // Nothing left to promote or abort.
    let (code, _) = admin(
        &daemon,
        reqwest::Method::POST,
        "/v1/rollouts/router/abort",
        None,
    )
    .await;
    assert_eq!(code, StatusCode::CONFLICT);
    daemon.shutdown().await;
    // The promotion outlives a restart too.
    let daemon = Daemon::start(config(FAST, &ledger)).await;
    let (_, policy) = ask(&daemon, "a-1", "Fix the typo.").await;
    assert!(policy.starts_with("seed-matrix@"), "{policy}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn steps_advance_by_themselves_after_the_hold_with_enough_candidate_requests() {
    let dir = tempfile::tempdir().unwrap();
    let daemon = Daemon::start(config(FAST, &dir.path().join("ledger.db"))).await;
    start(
        &daemon,
        json!({"world": "router", "candidate": "seed-matrix", "steps": [10, 50], "hold": "300ms"}),
    )
    .await;
    // Past the hold but with too few candidate requests (20 needed): no step.
    round(&daemon, "f", 20).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        status(&daemon).await["candidate_share_percent"],
        json!(10.0)
    );
    // Enough: the next step, whose history says so.
    round(&daemon, "g", 400).await;
    let s = wait_for(&daemon, "50%", |s| {
        s["candidate_share_percent"] == json!(50.0)
    })
    .await;
    assert!(
        s["history"]
            .to_string()
            .contains("step 2 of 2: the candidate serves 50%"),
        "{s}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_candidate_on_a_failing_upstream_is_rolled_back_in_its_first_step() {
    let dir = tempfile::tempdir().unwrap();
    // The cheap executors' upstream fails 30% of attempts; the chain
    // (fallbacks, then the premium model) still answers every request.
    let flaky = "\n[providers.flaky]\nkind = \"simulated\"\nlatency_ms = 0\ntokens_per_second = 0\nerror_rate = 0.3\n";
    let mut config = config(&format!("{FAST}{flaky}"), &dir.path().join("ledger.db"));
    for model in &mut config.models {
        if model.id != "claude-opus-4.5" {
            model.provider = "flaky".into();
        }
    }
    let daemon = Daemon::start(config).await;
    start(
        &daemon,
        json!({"world": "router", "candidate": "seed-matrix", "steps": [10, 50, 95], "hold": "1h"}),
    )
    .await;
    let rolled_back = until_rolled_back(&daemon, async |i| {
        let (arm, _) = ask(&daemon, &format!("b-{i}"), "Fix the typo in the README.").await;
        arm.as_deref().is_some_and(|a| a.ends_with("/candidate"))
    })
    .await;
    assert_eq!(rolled_back["step"], 0, "rolled back within the first step");
    assert_eq!(rolled_back["candidate_share_percent"], json!(0.0));
    let verdict = &rolled_back["phase"]["verdict"];
    assert_eq!(
        verdict["metric"]["name"], "attempt-failure-rate",
        "{verdict}"
    );
    assert!(verdict["candidate"].as_f64().unwrap() > verdict["stable"].as_f64().unwrap());
    assert!(verdict["n_candidate"].as_u64().unwrap() >= 20);
    let history = rolled_back["history"].to_string();
    assert!(
        history.contains("rolled back: upstream attempt failure rate"),
        "{history}"
    );
    // Everyone is back on premium-only, and the metric says so.
    let (arm, policy) = ask(&daemon, "b-0", "Fix it.").await;
    assert_eq!(arm, None, "a rolled-back rollout assigns no arm");
    assert!(policy.starts_with("premium-only@"));
    let metrics = metrics(&daemon).await;
    assert!(
        metrics.contains(
            "pointsman_rollout_rollbacks_total{world=\"router\",metric=\"attempt_failure_rate\"} 1"
        ),
        "{}",
        metrics
            .lines()
            .filter(|l| l.contains("rollout"))
            .collect::<Vec<_>>()
            .join("\n")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_candidate_whose_answers_get_low_feedback_is_rolled_back() {
    let dir = tempfile::tempdir().unwrap();
    let daemon = Daemon::start(config(FAST, &dir.path().join("ledger.db"))).await;
    start(
        &daemon,
        json!({"world": "router", "candidate": "seed-matrix", "hold": "1h"}),
    )
    .await;
    let http = reqwest::Client::new();
    let rolled_back = until_rolled_back(&daemon, async |i| {
        let response = http
            .post(format!("{}/v1/chat/completions", daemon.url))
            .bearer_auth("any")
            .header("x-pointsman-session", format!("h-{i}"))
            .json(&json!({"model": "auto", "messages": [{"role": "user", "content": "Fix the typo."}]}))
            .send()
            .await
            .unwrap();
        let id = response.headers()["x-pointsman-request-id"]
            .to_str()
            .unwrap()
            .to_string();
        // No arm once the rollout has ended (it may roll back between two
        // of the loop's status checks).
        let candidate = response
            .headers()
            .get("x-pointsman-arm")
            .is_some_and(|arm| arm.to_str().unwrap().ends_with("/candidate"));
        response.bytes().await.unwrap();
        // The agent's tests fail on the candidate's answers.
        let score = if candidate { 0.1 } else { 0.9 };
        let scored = http
            .post(format!("{}/v1/feedback", daemon.url))
            .bearer_auth("any")
            .json(&json!({"request_id": id, "score": score, "labels": {"tests_passed": (!candidate).to_string()}}))
            .send()
            .await
            .unwrap();
        assert_eq!(scored.status(), StatusCode::CREATED);
        candidate
    })
    .await;
    assert_eq!(rolled_back["step"], 0);
    let verdict = &rolled_back["phase"]["verdict"];
    assert_eq!(verdict["metric"]["name"], "feedback-score", "{verdict}");
    assert!((verdict["stable"].as_f64().unwrap() - 0.9).abs() < 1e-9);
    assert!((verdict["candidate"].as_f64().unwrap() - 0.1).abs() < 1e-9);
    // The report shows the feedback per arm.
    let (code, usage) = admin(
        &daemon,
        reqwest::Method::GET,
        "/v1/usage?by=arm&since=1h",
        None,
    )
    .await;
    assert_eq!(code, StatusCode::OK);
    let candidate_row = usage["rows"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["key"].as_str().unwrap().ends_with("/candidate"))
        .unwrap();
    assert!(
        (candidate_row["feedback"]["mean"].as_f64().unwrap() - 0.1).abs() < 1e-9,
        "{usage}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shadow_mode_records_the_candidate_and_serves_the_stable_policy() {
    let dir = tempfile::tempdir().unwrap();
    let daemon = Daemon::start(config(FAST, &dir.path().join("ledger.db"))).await;
    let started = start(
        &daemon,
        json!({"world": "router", "candidate": "seed-matrix", "shadow": true}),
    )
    .await;
    assert_eq!(started["phase"]["state"], "shadow");
    assert_eq!(started["candidate_share_percent"], json!(0.0));
    let prompts = [
        "Fix the typo in the README.",
        "Design the architecture of a distributed payment system with multi-region failover, then implement and migrate the whole billing service across all modules.",
        "Rename the variable x to count.",
    ];
    let n = 60;
    for i in 0..n {
        let (arm, policy) = ask(&daemon, &format!("c-{i}"), prompts[i % prompts.len()]).await;
        assert!(
            policy.starts_with("premium-only@"),
            "shadow served {policy}"
        );
        assert!(arm.unwrap().ends_with("/stable"));
    }
    // Settling is before the last byte: every call is on record now.
    let diff = router_diff(&daemon).await;
    let d = &diff["diff"];
    assert_eq!(
        d["shadowed"].as_u64().unwrap() + d["late"].as_u64().unwrap(),
        n as u64,
        "{diff}"
    );
    assert!(d["shadowed"].as_u64().unwrap() > 0, "{diff}");
    // premium-only serves every request direct on the premium model; the
    // seed matrix moves the simple ones to cheap executors.
    assert_eq!(d["stable_tiers"], json!({"direct": 1.0}));
    assert!(d["changed"].as_u64().unwrap() > 0);
    assert!(d["candidate_cost_usd"].as_f64().unwrap() < d["stable_cost_usd"].as_f64().unwrap());
    let sample = &d["samples"][0];
    assert_eq!(sample["stable"]["executor"], "claude-opus-4.5");
    assert!(
        !sample["candidate"]["reasoning"]
            .as_str()
            .unwrap()
            .is_empty()
    );
    // Out of shadow: the first step serves.
    let promoted = router_command(&daemon, "promote").await;
    assert_eq!(promoted["phase"]["state"], "running");
    assert_eq!(
        status(&daemon).await["candidate_share_percent"],
        json!(10.0)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_past_its_shadow_rate_shadows_a_sample_and_the_diff_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let daemon = Daemon::start(config(
        &format!("{FAST}max_shadow_per_second = 2\n"),
        &dir.path().join("ledger.db"),
    ))
    .await;
    start(
        &daemon,
        json!({"world": "router", "candidate": "seed-matrix", "shadow": true}),
    )
    .await;
    let began = std::time::Instant::now();
    let n = 40;
    for i in 0..n {
        let (_, policy) = ask(
            &daemon,
            &format!("r-{i}"),
            "Rename the variable x to count.",
        )
        .await;
        assert!(
            policy.starts_with("premium-only@"),
            "shadow served {policy}"
        );
    }
    let seconds = began.elapsed().as_secs();
    let diff = router_diff(&daemon).await;
    let d = &diff["diff"];
    assert_eq!(d["answers"], json!(n), "{diff}");
    // A second's worth at once, then two a second.
    let shadowed = d["shadowed"].as_u64().unwrap() + d["late"].as_u64().unwrap();
    assert!(shadowed >= 2, "{diff}");
    assert!(
        shadowed <= 2 + 2 * (seconds + 1),
        "{shadowed} in {seconds} s: {diff}"
    );
    // Every request past the rate is counted as skipped.
    let metrics = metrics(&daemon).await;
    let skipped: u64 = metrics
        .lines()
        .find(|l| l.starts_with("pointsman_rollout_shadow_skipped_total{reason=\"rate\"}"))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no rate skips in the metrics"));
    assert_eq!(skipped + shadowed, n as u64);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changed_candidate_file_pauses_the_rollout_until_it_is_back() {
    let dir = tempfile::tempdir().unwrap();
    let policies = dir.path().join("policies");
    std::fs::create_dir_all(&policies).unwrap();
    let mut config = config(FAST, &dir.path().join("ledger.db"));
    config.policies.dir = Some(policies.clone());
    let daemon = Daemon::start(config).await;
    let (code, _) = admin(
        &daemon,
        reqwest::Method::POST,
        "/v1/rollouts",
        Some(
            json!({"world": "router", "candidate": "seed-matrix", "steps": [50, 95], "hold": "1h"}),
        ),
    )
    .await;
    assert_eq!(code, StatusCode::CREATED);
    // Another module under the candidate's name: its hash is not the pinned one.
    let other = pointsman::policy::builtin::ALL
        .iter()
        .find(|(name, _)| *name == "premium-only")
        .unwrap()
        .1;
    std::fs::write(policies.join("seed-matrix.wasm"), other).unwrap();
    let paused = wait_for(&daemon, "paused", |s| s["phase"]["state"] == "paused").await;
    assert!(
        paused["phase"]["reason"]
            .as_str()
            .unwrap()
            .contains("seed-matrix changed"),
        "{paused}"
    );
    assert_eq!(paused["candidate_loaded_here"], json!(false));
    for i in 0..40 {
        let (arm, policy) = ask(&daemon, &format!("d-{i}"), "Fix it.").await;
        assert!(
            policy.starts_with("premium-only@"),
            "a paused rollout served {policy}"
        );
        assert!(arm.unwrap().ends_with("/stable"));
    }
    // The file goes: the built-in (the pinned version) serves again.
    std::fs::remove_file(policies.join("seed-matrix.wasm")).unwrap();
    let resumed = wait_for(&daemon, "resumed", |s| s["phase"]["state"] == "running").await;
    assert_eq!(resumed["candidate_share_percent"], json!(50.0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_rollout_commands_are_refused_and_change_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let daemon = Daemon::start(config(FAST, &dir.path().join("ledger.db"))).await;
    let start = |body: Value| {
        let daemon = &daemon;
        async move { admin(daemon, reqwest::Method::POST, "/v1/rollouts", Some(body)).await }
    };
    for (body, code, says) in [
        (
            json!({"world": "router", "candidate": "nope"}),
            StatusCode::BAD_REQUEST,
            "not loaded",
        ),
        (
            json!({"world": "router", "candidate": "seed-planner"}),
            StatusCode::BAD_REQUEST,
            "is a planner",
        ),
        (
            json!({"world": "router", "candidate": "seed-matrix", "steps": [50, 10]}),
            StatusCode::BAD_REQUEST,
            "strictly increase",
        ),
        (
            json!({"world": "router", "candidate": "seed-matrix", "steps": [10, 101]}),
            StatusCode::BAD_REQUEST,
            "1 to 100",
        ),
        (
            json!({"world": "router", "candidate": "seed-matrix", "hold": "soon"}),
            StatusCode::BAD_REQUEST,
            "not a duration",
        ),
        (
            json!({"world": "router", "candidate": "premium-only"}),
            StatusCode::BAD_REQUEST,
            "itself",
        ),
        (
            json!({"world": "planner", "candidate": "seed-planner", "shadow": true}),
            StatusCode::BAD_REQUEST,
            "shadow mode is for routers",
        ),
        (
            json!({"world": "router", "candidat": "seed-matrix"}),
            StatusCode::BAD_REQUEST,
            "unknown field",
        ),
    ] {
        let (got, answer) = start(body.clone()).await;
        assert_eq!(got, code, "{body} → {answer}");
        let message = answer["error"]["message"].as_str().unwrap_or_default();
        assert!(message.contains(says), "{body}: {message}");
    }
    let (code, _) = admin_as(
        &daemon,
        "wrong",
        reqwest::Method::POST,
        "/v1/rollouts",
        Some(json!({"world": "router", "candidate": "seed-matrix"})),
    )
    .await;
    assert_eq!(code, StatusCode::UNAUTHORIZED);
    let (code, _) = admin(
        &daemon,
        reqwest::Method::POST,
        "/v1/rollouts/router/promote",
        None,
    )
    .await;
    assert_eq!(code, StatusCode::NOT_FOUND);
    let (code, _) = admin(
        &daemon,
        reqwest::Method::POST,
        "/v1/rollouts/gateway/abort",
        None,
    )
    .await;
    assert_eq!(code, StatusCode::NOT_FOUND);
    // Nothing was started by any of them.
    let (_, all) = admin(&daemon, reqwest::Method::GET, "/v1/rollouts", None).await;
    assert_eq!(all["rollouts"], json!([]));
    let (_, policy) = ask(&daemon, "e-1", "Fix it.").await;
    assert!(policy.starts_with("premium-only@"));
    // The command line says the same.
    let cli = |args: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_pointsman"))
            .arg("rollout")
            .args(args)
            .args(["--url", &daemon.url])
            .env("POINTSMAN_ADMIN_KEY", ADMIN)
            .output()
            .unwrap()
    };
    let out = cli(&["start", "--router", "nope"]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("\"nope\" is not loaded"),
        "{out:?}"
    );
    let out = cli(&["status"]);
    assert!(out.status.success());
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "no rollout on record\n"
    );
    let out = cli(&[
        "start",
        "--router",
        "seed-matrix",
        "--steps",
        "20,60",
        "--hold",
        "1h",
    ]);
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("premium-only → seed-matrix, running (20% on the candidate)"),
        "{text}"
    );
    assert!(text.contains("steps 20 → 60 (at step 1)"), "{text}");
    let out = cli(&["abort"]);
    assert!(out.status.success(), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stdout).contains("aborted by the admin key"));
    // One rollout at a time.
    let (code, _) = start(json!({"world": "router", "candidate": "seed-matrix"})).await;
    assert_eq!(code, StatusCode::CREATED);
    let (code, answer) = start(json!({"world": "router", "candidate": "seed-matrix"})).await;
    assert_eq!(code, StatusCode::CONFLICT, "{answer}");
    let (code, answer) = start(json!({"world": "planner", "candidate": "seed-matrix"})).await;
    assert_eq!(code, StatusCode::CONFLICT, "{answer}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_planner_rollout_assigns_each_task_an_arm() {
    let dir = tempfile::tempdir().unwrap();
    let policies = dir.path().join("policies");
    std::fs::create_dir_all(&policies).unwrap();
    // The candidate: a second planner module (the seed planner's bytes
    // under another name).
    let seed_planner = pointsman::policy::builtin::ALL
        .iter()
        .find(|(name, _)| *name == "seed-planner")
        .unwrap()
        .1;
    std::fs::write(policies.join("next-planner.wasm"), seed_planner).unwrap();
    // The seed matrix routes the tasks below to the plan tier.
    let mut config = config(FAST, &dir.path().join("ledger.db"));
    config.policies.router = "seed-matrix".into();
    config.policies.dir = Some(policies);
    let daemon = Daemon::start(config).await;
    let started = start(
        &daemon,
        json!({"world": "planner", "candidate": "next-planner", "steps": [50], "hold": "1h"}),
    )
    .await;
    assert_eq!(started["stable"]["name"], "seed-planner");
    let id = started["id"].as_str().unwrap().to_string();
    let http = reqwest::Client::new();
    let mut arms = Vec::new();
    for i in 0..16 {
        let response = http
            .post(format!("{}/v1/tasks", daemon.url))
            .json(&json!({
                "title": format!("Migration {i}"),
                "description": "Design the architecture of a distributed payment system with multi-region failover, then implement and migrate the whole billing service across all modules.",
            }))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 202);
        let task: Value = response.json().await.unwrap();
        let done = common::wait_for_task(&daemon, None, task["id"].as_str().unwrap()).await;
        assert_eq!(done["status"], "succeeded", "{done}");
        arms.push(done["arm"].as_str().unwrap().to_string());
    }
    assert!(arms.iter().all(|a| a.starts_with(&format!("{id}/"))));
    let candidates = arms.iter().filter(|a| a.ends_with("/candidate")).count();
    assert!((1..16).contains(&candidates), "{arms:?}");
    // Every call of a task records its arm: planner calls on both arms.
    let (_, usage) = admin(
        &daemon,
        reqwest::Method::GET,
        "/v1/usage?by=arm&since=1h",
        None,
    )
    .await;
    let keys: Vec<&str> = usage["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["key"].as_str().unwrap())
        .collect();
    assert!(keys.contains(&format!("{id}/stable").as_str()), "{keys:?}");
    assert!(
        keys.contains(&format!("{id}/candidate").as_str()),
        "{keys:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rollout_declared_in_the_config_starts_once_and_its_declaration_is_locked_while_it_runs()
{
    let dir = tempfile::tempdir().unwrap();
    let ledger = dir.path().join("ledger.db");
    let declared = format!(
        "{FAST}[rollouts.router]\ncandidate = \"seed-matrix\"\nsteps = [25, 75]\nhold = \"1h\"\n"
    );
    let daemon = Daemon::start(config(&declared, &ledger)).await;
    let s = status(&daemon).await;
    assert_eq!(s["candidate_share_percent"], json!(25.0));
    assert!(
        s["history"]
            .to_string()
            .contains("started by the config file"),
        "{s}"
    );
    let id = s["id"].clone();
    // A reload that changes the declaration of the running rollout is
    // refused, with the reason; one that keeps it goes through.
    let changed = config(&declared.replace("[25, 75]", "[50, 75]"), &ledger);
    let refused = daemon.state.reload(changed).await.err().expect("refused");
    assert!(
        refused
            .to_string()
            .contains("[rollouts.router] changed while rollout"),
        "{refused}"
    );
    assert!(
        daemon
            .state
            .reload(config(&declared, &ledger))
            .await
            .is_ok()
    );
    // The stored state wins over the file: promoted to 75% by the operator,
    // a restart on the same file continues at 75%, not 25%.
    router_command(&daemon, "promote").await;
    daemon.shutdown().await;
    let daemon = Daemon::start(config(&declared, &ledger)).await;
    let s = status(&daemon).await;
    assert_eq!(
        (s["id"].clone(), s["candidate_share_percent"].clone()),
        (id.clone(), json!(75.0))
    );
    // Aborted, the same candidate version is not started again by a restart.
    router_command(&daemon, "abort").await;
    daemon.shutdown().await;
    let daemon = Daemon::start(config(&declared, &ledger)).await;
    let s = status(&daemon).await;
    assert_eq!(
        (s["id"].clone(), s["phase"]["state"].clone()),
        (id, json!("aborted"))
    );
    // A declared candidate that does not exist stops the daemon from
    // starting, naming it.
    daemon.shutdown().await;
    let other = tempfile::tempdir().unwrap();
    let bad = config(
        &declared.replace(
            "candidate = \"seed-matrix\"",
            "candidate = \"seed-matrixx\"",
        ),
        &other.path().join("ledger.db"),
    );
    let error = pointsman::gateway::AppState::new(bad)
        .await
        .err()
        .expect("refused");
    assert!(
        error.to_string().contains("\"seed-matrixx\" is not loaded"),
        "{error}"
    );
}

/// An admin request to a replica, starting a rollout of `seed-matrix` when
/// it is a POST.
async fn replica_admin(
    process: &Process,
    method: reqwest::Method,
    path: &str,
) -> (StatusCode, Value) {
    let response = reqwest::Client::new()
        .request(method, format!("{}{path}", process.url))
        .bearer_auth(ADMIN)
        .json(&json!({"world": "router", "candidate": "seed-matrix", "hold": "1h"}))
        .send()
        .await
        .unwrap();
    let status = response.status();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// The arm each of `sessions` sessions gets from a replica.
async fn arms(process: &Process, sessions: usize) -> Vec<Option<String>> {
    let http = reqwest::Client::new();
    let mut arms = Vec::new();
    for i in 0..sessions {
        let response = http
            .post(format!("{}/v1/chat/completions", process.url))
            .bearer_auth("any")
            .header("x-pointsman-session", format!("p-{i}"))
            .json(&json!({"model": "auto", "messages": [{"role": "user", "content": "Fix it."}]}))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        arms.push(
            response
                .headers()
                .get("x-pointsman-arm")
                .map(|v| v.to_str().unwrap().to_string()),
        );
    }
    arms
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_on_one_postgres_run_one_rollout_through_a_kill_9() {
    let pg = pointsman_test_support::postgres::Postgres::start();
    let dir = tempfile::tempdir().unwrap();
    let text = pointsman::config::DEMO_TOML
        .replace("latency_ms = 20", "latency_ms = 0")
        .replace("tokens_per_second = 400", "tokens_per_second = 0")
        .replace("router = \"seed-matrix\"", "router = \"premium-only\"");
    let write = |replica: &str| {
        let path = dir.path().join(format!("{replica}.toml"));
        std::fs::write(
            &path,
            format!(
                "{text}\n[admin]\nkey_sha256 = \"{}\"\n[ledger]\nurl = \"{}\"\nreplica = \"{replica}\"\n{FAST}",
                sha256(ADMIN),
                pg.url()
            ),
        )
        .unwrap();
        path
    };
    let (a_config, b_config) = (write("a"), write("b"));
    let (a_port, b_port) = (free_port(), free_port());
    let a = Process::start(&a_config, a_port).await;
    let b = Process::start(&b_config, b_port).await;

    // Started on one replica, the other serves it: the same arms for the
    // same sessions.
    let (code, started) = replica_admin(&a, reqwest::Method::POST, "/v1/rollouts").await;
    assert_eq!(code, StatusCode::CREATED, "{started}");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let on_a = arms(&a, 200).await;
    let on_b = arms(&b, 200).await;
    assert!(on_a.iter().all(|arm| arm.is_some()));
    assert!(on_a == on_b, "the replicas put sessions on different arms");
    // Promoted through the other replica: both serve 50%.
    let (code, promoted) =
        replica_admin(&b, reqwest::Method::POST, "/v1/rollouts/router/promote").await;
    assert_eq!(code, StatusCode::OK, "{promoted}");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (_, status_a) = replica_admin(&a, reqwest::Method::GET, "/v1/rollouts").await;
    assert_eq!(
        status_a["rollouts"][0]["candidate_share_percent"],
        json!(50.0)
    );
    let half = arms(&a, 200).await;
    assert!(half == arms(&b, 200).await);

    // kill -9 one replica mid-rollout; restarted, it continues the same
    // step with the same assignments.
    a.kill();
    let a = Process::start(&a_config, a_port).await;
    let (_, status_a) = replica_admin(&a, reqwest::Method::GET, "/v1/rollouts").await;
    assert_eq!(status_a["rollouts"][0]["id"], started["id"]);
    assert_eq!(
        status_a["rollouts"][0]["candidate_share_percent"],
        json!(50.0)
    );
    assert!(
        arms(&a, 200).await == half,
        "assignments changed across kill -9"
    );

    // Aborted on one: the other stops assigning arms at its next evaluation.
    let (code, _) = replica_admin(&a, reqwest::Method::POST, "/v1/rollouts/router/abort").await;
    assert_eq!(code, StatusCode::OK);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(arms(&b, 50).await.iter().all(Option::is_none));
}

/// A call on `arm` of rollout `r1` at `at_ms`, as the ledger stores it.
fn armed_call(id: usize, arm: &str, at_ms: i64) -> pointsman::ledger::record::CallRecord {
    serde_json::from_value(json!({
        "request_id": format!("pm-{id}"), "at_ms": at_ms, "client": "key:x", "labels": {},
        "api": "chat-completions", "role": "answer", "stream": false, "requested_model": "auto",
        "tier": "direct", "served_model": "glm-4.7", "attempts": [], "escalated": false,
        "input_tokens": 10, "output_tokens": 5, "cache_read_tokens": 0, "cache_write_tokens": 0,
        "cost_nanos": 1000, "baseline_nanos": 5000, "latency_ms": 3, "status": "ok",
        "arm": format!("r1/{arm}"), "route_labels": {},
    }))
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_evaluation_narrows_a_window_busier_than_its_bound() {
    use pointsman::policy::rollout::evaluate::Mirror;
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite:{}", dir.path().join("ledger.db").display());
    let ledger = pointsman::ledger::Ledger::open(&url, &Default::default())
        .await
        .unwrap();
    let now = pointsman::ledger::store::system_now_ms();
    // One call a minute for the last 40 minutes, alternating arms.
    for i in 0..40 {
        let arm = if i % 2 == 0 { "stable" } else { "candidate" };
        let at = now - i as i64 * 60_000 - 30_000;
        ledger.record(armed_call(i, arm, at), None).await.unwrap();
    }
    let rollout = window_rollout(now);
    // Within the bound: every call of the 6-hour window is judged.
    let all = Mirror::default()
        .measure(&ledger, &rollout, 6 * 3_600_000, 100, now)
        .await
        .unwrap();
    assert!(!all.narrowed);
    assert_eq!(all.stable.requests + all.candidate.requests, 40);
    assert_eq!(all.since_ms, now - 7_200_000);
    // At most 15 calls: the 15 most recent, from the 15th's start.
    let narrow = Mirror::default()
        .measure(&ledger, &rollout, 6 * 3_600_000, 15, now)
        .await
        .unwrap();
    assert!(narrow.narrowed);
    assert_eq!(narrow.since_ms, now - 14 * 60_000 - 30_000);
    assert_eq!(narrow.stable.requests + narrow.candidate.requests, 15);
    // The configured window is a bound too.
    let recent = Mirror::default()
        .measure(&ledger, &rollout, 600_000, 100, now)
        .await
        .unwrap();
    assert_eq!(recent.stable.requests + recent.candidate.requests, 10);
}

/// A replica's copy of the window reads only what was recorded since the
/// evaluation before last (a call settling late, long after it started,
/// included), and judges exactly what a fresh read of the whole window
/// judges; on SQLite and on PostgreSQL.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_evaluation_reads_only_the_calls_recorded_since() {
    let dir = tempfile::tempdir().unwrap();
    reads_only_what_is_new(&format!(
        "sqlite:{}",
        dir.path().join("ledger.db").display()
    ))
    .await;
    let pg = pointsman_test_support::postgres::Postgres::start();
    reads_only_what_is_new(&pg.url()).await;
}

async fn reads_only_what_is_new(url: &str) {
    use pointsman::policy::rollout::evaluate::Mirror;
    let ledger = pointsman::ledger::Ledger::open(url, &Default::default())
        .await
        .unwrap();
    let now = pointsman::ledger::store::system_now_ms();
    let rollout = window_rollout(now);
    let record = |from: usize, to: usize, at: &dyn Fn(usize) -> i64| {
        let calls: Vec<_> = (from..to)
            .map(|i| armed_call(i, if i % 3 == 0 { "candidate" } else { "stable" }, at(i)))
            .collect();
        let ledger = ledger.clone();
        async move {
            for call in calls {
                ledger.record(call, None).await.unwrap();
            }
        }
    };
    // Another rollout's calls are never read.
    let mut other = armed_call(999, "stable", now - 60_000);
    other.arm = Some("r0/stable".into());
    ledger.record(other, None).await.unwrap();
    record(0, 40, &|i| now - 3_600_000 + i as i64 * 1_000).await;
    let mut mirror = Mirror::default();
    let first = mirror
        .measure(&ledger, &rollout, 6 * 3_600_000, 1_000, now)
        .await
        .unwrap();
    assert_eq!(first.read, 40);
    // Five new calls, one of them started an hour ago and settled now.
    record(40, 45, &|i| {
        if i == 40 {
            now - 3_500_000
        } else {
            now - 1_000
        }
    })
    .await;
    let second = mirror
        .measure(&ledger, &rollout, 6 * 3_600_000, 1_000, now)
        .await
        .unwrap();
    record(45, 48, &|_| now - 500).await;
    let third = mirror
        .measure(&ledger, &rollout, 6 * 3_600_000, 1_000, now)
        .await
        .unwrap();
    // The third read starts where the first ended: the five, the three.
    assert_eq!(third.read, 8, "{second:?}");
    let fresh = Mirror::default()
        .measure(&ledger, &rollout, 6 * 3_600_000, 1_000, now)
        .await
        .unwrap();
    for (kept, full) in [
        (&third.stable, &fresh.stable),
        (&third.candidate, &fresh.candidate),
    ] {
        assert_eq!(kept.requests, full.requests);
        assert_eq!(kept.attempts, full.attempts);
        assert_eq!(kept.costs.len(), full.costs.len());
        assert_eq!(kept.latency_by_tier, full.latency_by_tier);
    }
    assert_eq!(third.stable.requests + third.candidate.requests, 48);
    assert_eq!(third.candidate.requests, 16);
    assert_eq!(mirror.len(), 48);
    // Calls age out of the window: judged from 30 minutes back, the
    // copy drops what started before.
    let later = mirror
        .measure(&ledger, &rollout, 1_800_000, 1_000, now)
        .await
        .unwrap();
    assert_eq!(later.read, 3);
    assert_eq!(later.stable.requests + later.candidate.requests, 7);
    assert_eq!(mirror.len(), 7);
}

/// A running rollout `r1` whose candidate has served for two hours.
fn window_rollout(now: i64) -> pointsman::policy::rollout::Rollout {
    use pointsman::policy::rollout::{Defaults, Pin, Rollout, Spec};
    let spec: Spec = serde_json::from_value(json!({"world": "router", "candidate": "c"})).unwrap();
    let pin = |name: &str, h: &str| Pin {
        name: name.into(),
        hash: h.repeat(64),
    };
    let mut rollout = Rollout::new(
        &spec,
        pin("s", "a"),
        pin("c", "b"),
        &Defaults::default(),
        "test",
        now - 7_200_000,
    )
    .unwrap();
    rollout.id = "r1".into();
    rollout
}

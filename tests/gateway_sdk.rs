//! The official OpenAI and Anthropic Python SDKs against the real daemon,
//! served by local upstreams of the same and of the other format:
//! non-streaming, streaming and tool calls on both APIs.

mod common;

use serde_json::Value;
use sha2::{Digest, Sha256};
use switchyard::config::Config;
use switchyard_test_support::sdk::run_sdk_script_async;
use switchyard_test_support::upstream::{ANTHROPIC_KEY, OPENAI_KEY, Upstream, UpstreamConfig};

use common::Daemon;

const CLIENT_KEY: &str = "sk-switchyard-client-7f3a";

/// A catalog with one model on an OpenAI-format upstream and one on an
/// Anthropic-format upstream; provider keys come from the environment.
fn config(upstream: &Upstream) -> Config {
    // SAFETY: set before any daemon of this test binary reads them, to the
    // same values by every test; nothing else in the process writes them.
    unsafe {
        std::env::set_var("SWITCHYARD_TEST_OPENAI_KEY", OPENAI_KEY);
        std::env::set_var("SWITCHYARD_TEST_ANTHROPIC_KEY", ANTHROPIC_KEY);
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
api_key_env = "SWITCHYARD_TEST_OPENAI_KEY"

[providers.an]
kind = "anthropic"
base_url = "{anthropic}"
api_key_env = "SWITCHYARD_TEST_ANTHROPIC_KEY"

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
id = "premium"
provider = "an"
input_usd_per_mtok = 5.0
output_usd_per_mtok = 25.0
context_window = 200000

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
    let env_model = if script == "openai_sdk" {
        "SWITCHYARD_OPENAI_MODEL"
    } else {
        "SWITCHYARD_ANTHROPIC_MODEL"
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
    let expected_upstream = if model == "oa-model" {
        "upstream-oa"
    } else {
        "upstream-an"
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
        let wanted = if model == "oa-model" {
            OPENAI_KEY
        } else {
            ANTHROPIC_KEY
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
    assert_eq!(headers["x-switchyard-model"], model, "{name}: {case}");
    assert_eq!(headers["x-switchyard-tier"], "direct", "{name}: {case}");
    assert_eq!(headers["x-switchyard-policy"], "client", "{name}: {case}");
    if !name.starts_with("stream") {
        let cost: f64 = headers["x-switchyard-cost-usd"]
            .as_str()
            .unwrap()
            .parse()
            .unwrap();
        let baseline: f64 = headers["x-switchyard-baseline-cost-usd"]
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn anthropic_sdk_through_both_formats() {
    let upstream = Upstream::start(UpstreamConfig::default()).await;
    let daemon = Daemon::start(config(&upstream)).await;
    for model in ["an-model", "oa-model"] {
        let summary = run(&daemon, &upstream, "anthropic_sdk", model).await;
        check_headers(&summary, model);
    }
}

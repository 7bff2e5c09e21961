//! Policy contract 0.2.0 end to end: capabilities enforced by the host in
//! front of a router that does not know them, the 0.2.0 seed matrix that
//! does, and config errors.

mod common;

use pointsman::config::{Config, DEMO_TOML};
use pointsman_test_support::upstream::{Api, Reply, Upstream, UpstreamConfig};
use serde_json::{Value, json};

use common::Daemon;

/// A chat body whose user message holds a screenshot.
fn with_image() -> Value {
    json!({
        "model": "auto",
        "messages": [{"role": "user", "content": [
            {"type": "text", "text": "Fix the bug this screenshot shows"},
            {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}}
        ]}]
    })
}

async fn upstream() -> Upstream {
    let upstream = Upstream::start(UpstreamConfig::default()).await;
    upstream.on(|r| {
        Some(Reply::text(format!(
            "answered by {}",
            r.model().unwrap_or("?")
        )))
    });
    upstream
}

/// Posts `body` and returns the served model and the reason header.
async fn chat(daemon: &Daemon, body: &Value) -> (String, String) {
    let response = reqwest::Client::new()
        .post(format!("{}/v1/chat/completions", daemon.url))
        .json(body)
        .send()
        .await
        .unwrap();
    let header = |name: &str| {
        response
            .headers()
            .get(name)
            .map(|v| v.to_str().unwrap().to_string())
            .unwrap_or_default()
    };
    let (model, reason) = (header("x-pointsman-model"), header("x-pointsman-reason"));
    assert_eq!(response.status(), 200, "{}", response.text().await.unwrap());
    (model, reason)
}

#[tokio::test]
async fn an_image_routed_to_a_text_only_model_is_served_by_a_vision_model() {
    let upstream = upstream().await;
    // The seed matrix as released against 0.1.0 knows nothing of images:
    // it routes this bug fix to glm-4.7, which cannot read them.
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("seed-matrix-v0_1.wasm"),
        pointsman_test_support::read(pointsman_test_support::SEED_MATRIX_V0_1),
    )
    .unwrap();
    let mut config = common::seed_on(&upstream, Api::OpenAi);
    config.policies.dir = Some(dir.path().to_path_buf());
    config.policies.router = "seed-matrix-v0_1".into();
    let daemon = Daemon::start(config).await;

    let (model, reason) = chat(&daemon, &with_image()).await;
    assert_eq!(model, "claude-opus-4.5", "{reason}");
    assert!(
        reason.starts_with("medium:"),
        "the policy's reason first: {reason}"
    );
    assert!(reason.contains("glm-4.7 cannot read images"), "{reason}");
    assert!(reason.contains("serving claude-opus-4.5"), "{reason}");
    let served: Vec<String> = upstream
        .requests()
        .iter()
        .filter_map(|r| r.model().map(str::to_string))
        .collect();
    assert_eq!(served, ["claude-opus-4.5"], "no text-only model was called");

    // The same text without the image stays on the cheap executor.
    let text = json!({"model": "auto", "messages": [
        {"role": "user", "content": "Fix the bug this screenshot shows"}]});
    let (model, reason) = chat(&daemon, &text).await;
    assert_eq!(model, "glm-4.7", "{reason}");
    assert!(!reason.contains("capabilities"), "{reason}");
    daemon.shutdown().await;
}

#[tokio::test]
async fn the_020_seed_matrix_sends_images_to_vision_models_itself() {
    let upstream = upstream().await;
    let daemon = Daemon::start(common::seed_on(&upstream, Api::OpenAi)).await;
    let (model, reason) = chat(&daemon, &with_image()).await;
    assert_eq!(model, "claude-opus-4.5", "{reason}");
    assert!(reason.contains("skipped glm-4.7 (no vision)"), "{reason}");
    // The router chose well: the host had nothing to correct.
    assert!(!reason.contains("capabilities:"), "{reason}");
    daemon.shutdown().await;
}

#[test]
fn an_unknown_capability_is_a_config_error() {
    let broken = DEMO_TOML.replace(
        r#"capabilities = ["tools", "json", "reasoning"]"#,
        r#"capabilities = ["tools", "json", "telepathy"]"#,
    );
    assert_ne!(broken, DEMO_TOML);
    let err = format!("{:#}", Config::parse(&broken).unwrap_err());
    assert!(
        err.contains(".capabilities: unknown capability \"telepathy\""),
        "{err}"
    );
    assert!(
        err.contains("known: vision, tools, json, reasoning"),
        "{err}"
    );
}

#[test]
fn policy_config_must_be_scalars_and_reaches_modules_as_text() {
    let config = Config::parse(DEMO_TOML).unwrap();
    let modules = config.policy_config();
    assert_eq!(
        modules["seed-matrix"],
        [("threshold".to_string(), "0.5".to_string())]
    );
    let broken = DEMO_TOML.replace("threshold = 0.5", "threshold = [0.5]");
    let err = format!("{:#}", Config::parse(&broken).unwrap_err());
    assert!(
        err.contains(
            "policies.config.seed-matrix.threshold: must be a string, a number or a boolean"
        ),
        "{err}"
    );
}

/// A request's features as the gateway extracts them from `body`.
fn features_of(body: &Value) -> pointsman::policy::types::Features {
    pointsman::features::from_json(
        pointsman::provider::Format::OpenAi,
        body,
        pointsman::features::RequestContext::default(),
    )
    .unwrap()
}

#[tokio::test]
async fn a_020_module_gets_the_catalog_and_its_config_again_after_each_change() {
    use pointsman::policy::{Limits, PolicyEngine, Registry, types::Tier};
    let engine = PolicyEngine::new(Limits::default(), None).unwrap();
    engine.set_module_config(
        [(
            "seed-matrix".to_string(),
            vec![("threshold".to_string(), "0.7".to_string())],
        )]
        .into(),
    );
    let mut catalog = pointsman::policy::catalog(&Config::parse(DEMO_TOML).unwrap());
    let module = Registry::new(engine)
        .load(
            "seed-matrix",
            pointsman_test_support::read(pointsman_test_support::SEED_MATRIX),
            &catalog,
        )
        .await
        .unwrap();
    assert_eq!(module.info.version, "0.2.0");

    // Score 4: planned at the default threshold, direct at the configured 0.7.
    let design = features_of(&json!({"model": "auto", "messages": [
        {"role": "user", "content": "Design the cache layer across modules"}]}));
    let route = module.route(&design, &catalog).await.unwrap();
    assert_eq!(route.tier, Tier::Direct, "{}", route.reasoning);

    let image = features_of(&with_image());
    let route = module.route(&image, &catalog).await.unwrap();
    assert_eq!(route.executor, "claude-opus-4.5", "{}", route.reasoning);
    // The catalog changes: no model reads images any more. The warm
    // instance must be configured again before its next call.
    for model in &mut catalog {
        model.capabilities.vision = false;
    }
    let err = module.route(&image, &catalog).await.unwrap_err();
    assert!(err.to_string().contains("no vision"), "{err}");
    // Back to the demo catalog (a third generation); then health alone
    // moving is no catalog change, and is seen at once.
    let mut catalog = pointsman::policy::catalog(&Config::parse(DEMO_TOML).unwrap());
    assert_eq!(catalog[0].id, "claude-opus-4.5");
    let route = module.route(&image, &catalog).await.unwrap();
    assert_eq!(route.executor, "claude-opus-4.5", "{}", route.reasoning);
    catalog[0].available = false;
    let err = module.route(&image, &catalog).await.unwrap_err();
    assert!(
        err.to_string()
            .contains("skipped claude-opus-4.5 (unavailable)"),
        "{err}"
    );
}

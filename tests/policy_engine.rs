//! The policy engine end to end: every language's seed matrix on the shared
//! table, and hostile modules that must never hurt the host.

use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use pointsman::config::Config;
use pointsman::policy::types::{Features, Message, ModelInfo, Route, WireApi};
use pointsman::policy::{
    Decision, Limits, PolicyEngine, PolicyError, PolicyModule, Registry, World, decide,
};
use pointsman_test_support as support;

fn pointsman(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_pointsman"))
        .args(args)
        .current_dir(support::workspace_root())
        .output()
        .expect("the pointsman binary runs")
}

#[test]
fn every_language_passes_the_shared_table() {
    let cases = support::workspace_root().join("examples/policies/cases.jsonl");
    let text = std::fs::read_to_string(&cases).unwrap();
    let count = text.lines().count();
    assert!(count >= 30, "the shared table has {count} cases");
    // Cases of fields 0.1.0 lacks (images, tool names) apply to 0.2.0 only.
    let only_v0_2 = text
        .lines()
        .filter(|l| l.contains(r#""contract": "0.2.0""#))
        .count();
    assert!(only_v0_2 >= 2, "{only_v0_2} cases for contract 0.2.0");
    for (module, version) in [
        (support::SEED_MATRIX, "0.2.0"),
        // The seed matrix built against the frozen 0.1.0 contract, next to
        // its 0.2.0 build: the host serves both the same on every case
        // both can read.
        (support::SEED_MATRIX_V0_1, "0.1.0"),
        (support::SEED_MATRIX_JS, "0.2.0"),
        (support::SEED_MATRIX_PY, "0.2.0"),
    ] {
        let out = pointsman(&["policy", "check", module]);
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{module}:\n{stdout}");
        assert!(
            stdout.contains(&format!("version: {version}")),
            "{module}:\n{stdout}"
        );
        let expected = if version == "0.2.0" {
            count
        } else {
            count - only_v0_2
        };
        let out = pointsman(&["policy", "test", module, cases.to_str().unwrap()]);
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{module}:\n{stdout}");
        assert!(
            stdout.contains(&format!("{expected} passed, 0 failed")),
            "{module}:\n{stdout}"
        );
    }
}

#[test]
fn policy_test_reports_failures() {
    let dir = tempfile::tempdir().unwrap();
    let cases = dir.path().join("cases.jsonl");
    std::fs::write(
        &cases,
        r#"{"name": "wrong on purpose", "request": {"model": "auto", "messages": [{"role": "user", "content": "fix a typo"}]}, "expect": {"tier": "plan"}}
{"name": "no messages", "request": {"model": "auto", "messages": []}, "expect": {"tier": "direct"}}
{"name": "no messages, as expected", "request": {"model": "auto", "messages": []}, "expect": {"error": "must not be empty"}}
"#,
    )
    .unwrap();
    let out = pointsman(&[
        "policy",
        "test",
        support::SEED_MATRIX,
        cases.to_str().unwrap(),
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success());
    assert!(stdout.contains("FAIL wrong on purpose"), "{stdout}");
    assert!(
        stdout.contains(r#"tier: expected "plan", got "direct""#),
        "{stdout}"
    );
    // A request the gateway would refuse is refused here too, before the
    // policy, with the gateway's reason; a case can expect it.
    assert!(stdout.contains("FAIL no messages"), "{stdout}");
    assert!(
        stdout.contains("the request is refused before routing: `messages` must not be empty"),
        "{stdout}"
    );
    assert!(stdout.contains("1 passed, 2 failed"), "{stdout}");
}

#[test]
fn check_prints_identity_or_one_line_reason() {
    let out = pointsman(&["policy", "check", support::SEED_PLANNER]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    assert!(stdout.contains("name:    seed-planner"), "{stdout}");
    assert!(stdout.contains("world:   planner"), "{stdout}");
    assert!(stdout.contains("version: 0.2.0"), "{stdout}");

    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.wasm");
    std::fs::write(&bad, b"\0asm\x01\0\0\0garbage").unwrap();
    let out = pointsman(&["policy", "check", bad.to_str().unwrap()]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(stdout.lines().count(), 1, "{stdout}");
    assert!(stdout.contains("not a valid component"), "{stdout}");
}

#[test]
fn route_command_prints_the_gateway_route() {
    let dir = tempfile::tempdir().unwrap();
    let request = dir.path().join("request.json");
    std::fs::write(
        &request,
        r#"{"model": "auto", "messages": [{"role": "user", "content": "Rotate the production secrets"}]}"#,
    )
    .unwrap();
    let out = pointsman(&[
        "route",
        "--policy",
        support::SEED_MATRIX_JS,
        request.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let decision: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(decision["route"]["tier"], "plan-and-verify");
    assert_eq!(decision["route"]["planner"], "deepseek-v3.2");
    assert!(
        decision["policy"]
            .as_str()
            .unwrap()
            .starts_with("seed-matrix-js@")
    );
}

fn registry(limits: Limits) -> Registry {
    Registry::new(PolicyEngine::new(limits, None).unwrap())
}

fn limits() -> Limits {
    Limits {
        call_deadline: Duration::from_millis(10),
        memory_bytes: 32 << 20,
        max_instances: 4,
    }
}

fn features(text: &str) -> Features {
    Features {
        id: "test".into(),
        api: WireApi::OpenaiChat,
        requested_model: "auto".into(),
        messages: vec![Message {
            role: "user".into(),
            content: text.into(),
        }],
        message_count: 1,
        input_tokens: 10,
        max_output_tokens: None,
        tool_count: 0,
        labels: Vec::new(),
        session: None,
        ..Features::default()
    }
}

/// The hostile test router, loaded under the test limits with a longer
/// deadline, with the demo catalog and safe route.
struct Hostile {
    module: Arc<PolicyModule>,
    catalog: Vec<ModelInfo>,
    safe: Route,
}

impl Hostile {
    async fn load() -> Hostile {
        let config = Config::demo();
        let catalog = pointsman::policy::catalog(&config);
        // A deadline that still stops the runaway loop but leaves the other
        // behaviours their own outcome: building the "huge" 1 MiB reasoning
        // took a debug build over 10 ms on 2 busy cores once (as the plan
        // test below).
        let limits = Limits {
            call_deadline: Duration::from_millis(200),
            ..limits()
        };
        let module = registry(limits)
            .load("hostile", support::read(support::HOSTILE), &catalog)
            .await
            .expect("the hostile module behaves on the self-check");
        Hostile {
            module,
            catalog,
            safe: pointsman::policy::safe_route(&config),
        }
    }

    /// Its decision on a request whose message is `text`.
    async fn decide(&self, text: &str) -> Decision {
        decide(
            Some(&self.module),
            &features(text),
            &self.catalog,
            &self.safe,
        )
        .await
    }
}

#[tokio::test]
async fn hostile_calls_get_the_safe_route_and_the_next_call_works() {
    let hostile = Hostile::load().await;
    let safe = &hostile.safe;
    for (behaviour, expected) in [
        ("trap", "trapped"),
        ("loop", "deadline"),
        ("bomb", "memory cap"),
        ("huge", "reasoning of 1048576 bytes"),
        ("fallbacks", "more than 16"),
        ("long-error", "hostile policy refuses"),
        ("unknown", "unknown model \"gpt-nonexistent\""),
        ("error", "hostile policy refuses"),
    ] {
        let started = Instant::now();
        let decision = hostile.decide(behaviour).await;
        let reason = decision.fallback_reason.unwrap_or_default();
        assert!(reason.contains(expected), "{behaviour}: {reason}");
        // Whatever the guest returned, the host keeps a bounded text.
        assert!(
            reason.len() < 8 * 1024,
            "{behaviour}: {} bytes",
            reason.len()
        );
        assert_eq!(decision.route.executor, safe.executor, "{behaviour}");
        assert_eq!(decision.route.fallbacks, safe.fallbacks, "{behaviour}");
        // Bounded, not timed: a hung guest must not hang the host.
        assert!(started.elapsed() < Duration::from_secs(2), "{behaviour}");

        let next = hostile.decide("behave").await;
        assert_eq!(next.fallback_reason, None, "the call after {behaviour}");
        assert_eq!(next.route.reasoning, "hostile policy behaving");
    }

    let printed = hostile.decide("print").await;
    assert_eq!(printed.route.reasoning, "printed");
}

/// With no calls for a while the epoch ticker slows down to save CPU; the
/// next call wakes it, so a runaway guest is still stopped at its deadline.
#[tokio::test]
async fn a_runaway_call_is_stopped_after_the_engine_sat_idle() {
    let hostile = Hostile::load().await;
    for _ in 0..3 {
        // Well past the ticker's idle threshold (100 ticks of 1 ms).
        tokio::time::sleep(Duration::from_millis(400)).await;
        let started = Instant::now();
        let decision = hostile.decide("loop").await;
        let reason = decision.fallback_reason.unwrap_or_default();
        assert!(reason.contains("deadline"), "{reason}");
        // Bounded, not timed: a hung guest must not hang the host.
        assert!(started.elapsed() < Duration::from_secs(2));
    }
}

#[tokio::test]
async fn invalid_modules_are_refused_at_load() {
    let catalog = pointsman::policy::catalog(&Config::demo());
    let registry = registry(limits());
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        ("bytes", b"definitely not wasm".to_vec(), "not a WebAssembly file"),
        ("core-module", wat::parse_str("(module)").unwrap(), "not a valid component"),
        (
            "empty-component",
            wat::parse_str("(component)").unwrap(),
            "not a Pointsman policy",
        ),
        (
            "newer-contract",
            wat::parse_str(
                r#"(component (instance $i) (export "pointsman:policy/routing@9.0.0" (instance $i)))"#,
            )
            .unwrap(),
            "built against contract 9.0.0",
        ),
        (
            "former-name",
            wat::parse_str(format!(
                r#"(component (instance $i) (export "{}routing@0.1.0" (instance $i)))"#,
                pointsman::policy::module::FORMER_PACKAGE
            ))
            .unwrap(),
            "renamed to Pointsman",
        ),
        (
            "wrong-shape",
            wat::parse_str(
                r#"(component (instance $i) (export "pointsman:policy/routing@0.1.0" (instance $i)))"#,
            )
            .unwrap(),
            "route",
        ),
        (
            "both-contracts",
            wat::parse_str(
                r#"(component (instance $i)
                    (export "pointsman:policy/routing@0.1.0" (instance $i))
                    (export "pointsman:policy/routing@0.2.0" (instance $i)))"#,
            )
            .unwrap(),
            "exports both contract 0.1.0 and contract 0.2.0",
        ),
        (
            "v0_2-missing-configure",
            wat::parse_str(
                r#"(component (instance $i) (export "pointsman:policy/routing@0.2.0" (instance $i)))"#,
            )
            .unwrap(),
            "does not implement the router world of contract 0.2.0 in full",
        ),
        (
            "exports-nothing",
            wat::parse_str(
                r#"(component (import "wasi:http/outgoing-handler@0.2.0" (instance)))"#,
            )
            .unwrap(),
            "not a Pointsman policy",
        ),
    ];
    for (name, bytes, expected) in cases {
        let err = registry.load(name, bytes, &catalog).await.err().unwrap();
        let text = format!("{err:#}");
        assert!(text.contains(expected), "{name}: {text}");
        let status = registry.status();
        let entry = status.iter().find(|s| s.name == name).unwrap();
        assert!(entry.hash.is_none(), "{name} must not be serving");
        assert!(entry.last_error.as_ref().unwrap().reason.contains(expected));
    }
}

#[tokio::test]
async fn a_planner_is_not_a_router() {
    let catalog = pointsman::policy::catalog(&Config::demo());
    let registry = registry(limits());
    let planner = registry
        .load(
            "seed-planner",
            support::read(support::SEED_PLANNER),
            &catalog,
        )
        .await
        .unwrap();
    assert_eq!(planner.info.world, World::Planner);
    let err = planner.route(&features("hi"), &catalog).await.unwrap_err();
    assert!(
        matches!(err, PolicyError::WrongWorld(World::Planner)),
        "{err}"
    );
}

#[tokio::test]
async fn compiled_components_are_cached_by_content_hash() {
    let base = tempfile::tempdir().unwrap();
    let cache = base.path().join("components");
    let catalog = pointsman::policy::catalog(&Config::demo());
    let bytes = support::read(support::SEED_MATRIX_JS);
    for _ in 0..2 {
        let engine = PolicyEngine::new(limits(), Some(cache.clone())).unwrap();
        let module = Registry::new(engine)
            .load("seed-matrix-js", bytes.clone(), &catalog)
            .await
            .unwrap();
        let entries: Vec<_> = std::fs::read_dir(&cache)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert_eq!(entries.len(), 1, "{entries:?}");
        assert!(entries[0].starts_with(&module.info.hash), "{entries:?}");
    }

    // A planted or corrupted entry is deleted and compiled anew, never run.
    let entry = std::fs::read_dir(&cache)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    std::fs::write(&entry, b"planted native code").unwrap();
    let engine = PolicyEngine::new(limits(), Some(cache.clone())).unwrap();
    let module = Registry::new(engine)
        .load("seed-matrix-js", bytes.clone(), &catalog)
        .await
        .unwrap();
    assert_eq!(module.info.name, "seed-matrix-js");
    assert_ne!(std::fs::read(&entry).unwrap(), b"planted native code");

    // A cache folder others may write is not used at all.
    let shared = base.path().join("shared");
    std::fs::create_dir(&shared).unwrap();
    std::fs::set_permissions(&shared, std::os::unix::fs::PermissionsExt::from_mode(0o777)).unwrap();
    let engine = PolicyEngine::new(limits(), Some(shared.clone())).unwrap();
    Registry::new(engine)
        .load("seed-matrix-js", bytes, &catalog)
        .await
        .unwrap();
    assert_eq!(std::fs::read_dir(&shared).unwrap().count(), 0);
}

#[tokio::test]
async fn calls_run_concurrently_on_one_module() {
    let catalog = Arc::new(pointsman::policy::catalog(&Config::demo()));
    let registry = registry(limits());
    let module = registry
        .load("seed-matrix", support::read(support::SEED_MATRIX), &catalog)
        .await
        .unwrap();
    let mut tasks = Vec::new();
    for i in 0..8 {
        let (module, catalog) = (module.clone(), catalog.clone());
        tasks.push(tokio::spawn(async move {
            for _ in 0..200 {
                let text = if i % 2 == 0 {
                    "fix the bug"
                } else {
                    "deploy it"
                };
                module.route(&features(text), &catalog).await.unwrap();
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
}

/// With one instance allowed, concurrent calls take turns on it rather than
/// each building an instance of their own; none is refused while the
/// instance comes back within a call's bound.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_beyond_the_instance_bound_wait_their_turn() {
    let config = Config::demo();
    let catalog = pointsman::policy::catalog(&config);
    let module = Registry::new(
        PolicyEngine::new(
            Limits {
                max_instances: 1,
                ..limits()
            },
            None,
        )
        .unwrap(),
    )
    .load("hostile", support::read(support::HOSTILE), &catalog)
    .await
    .unwrap();
    let calls = (0..16).map(|_| {
        let module = module.clone();
        let catalog = catalog.clone();
        tokio::spawn(async move { module.route(&features("behave"), &catalog).await })
    });
    for call in futures::future::join_all(calls).await {
        assert_eq!(call.unwrap().unwrap().reasoning, "hostile policy behaving");
    }
}

/// A router from one of `tests/guests/wat`: core WebAssembly text made a
/// component of the `router` world, for what Rust cannot write (several
/// memories, table growth).
fn wat_router(file: &str) -> Vec<u8> {
    let root = support::workspace_root();
    let text = std::fs::read_to_string(root.join("tests/guests/wat").join(file)).unwrap();
    let mut core = wat::parse_str(&text).unwrap();
    let mut resolve = wit_parser::Resolve::default();
    let (package, _) = resolve.push_dir(root.join("wit/0.1.0")).unwrap();
    let world = resolve.select_world(&[package], Some("router")).unwrap();
    wit_component::embed_component_metadata(
        &mut core,
        &resolve,
        world,
        wit_component::StringEncoding::UTF8,
        false,
    )
    .unwrap();
    wit_component::ComponentEncoder::default()
        .module(&core)
        .unwrap()
        .validate(true)
        .encode()
        .unwrap()
}

/// Memories are capped in total, tables in elements: a guest that grows
/// eight memories (each alone under the cap) or a table by ten million
/// elements is stopped, gets the safe route, and the next call works.
#[tokio::test]
async fn memory_and_table_bombs_are_stopped_per_instance() {
    let config = Config::demo();
    let catalog = pointsman::policy::catalog(&config);
    for (file, expected) in [
        ("many-memories.wat", "memory cap"),
        ("table-bomb.wat", "table cap"),
    ] {
        let module = registry(limits())
            .load("bomb", wat_router(file), &catalog)
            .await
            .unwrap_or_else(|e| panic!("{file}: {e:#}"));
        // The first call after the probe misbehaves.
        let decision = decide(
            Some(&module),
            &features("hi"),
            &catalog,
            &pointsman::policy::safe_route(&config),
        )
        .await;
        let reason = decision.fallback_reason.unwrap_or_default();
        assert!(reason.contains(expected), "{file}: {reason}");
        assert_eq!(
            decision.route.executor,
            pointsman::policy::safe_route(&config).executor
        );
        // A fresh instance's first call behaves (it answers an error).
        let next = module.route(&features("hi"), &catalog).await.unwrap_err();
        assert!(
            matches!(&next, PolicyError::Rejected(why) if why == "grown"),
            "{file}: {next}"
        );
    }
}

/// A planner that checks nothing gets its plans checked by the host:
/// cycles, unknown dependencies, duplicate ids and oversized plans are
/// refused as invalid (the runner then asks the planner again), and a
/// sound plan passes.
#[tokio::test]
async fn the_host_checks_a_planners_plans() {
    let catalog = pointsman::policy::catalog(&Config::demo());
    // What is checked here is the plan, not the deadline: the "huge" reply
    // builds 65 subtasks, which a debug build on a busy 2-core CI machine
    // took over 10 ms to do once.
    let generous = Limits {
        call_deadline: Duration::from_secs(2),
        ..limits()
    };
    let planner = registry(generous)
        .load(
            "hostile-planner",
            support::read(support::HOSTILE_PLANNER),
            &catalog,
        )
        .await
        .unwrap();
    let task = pointsman::policy::types::Task {
        id: "t".into(),
        title: "t".into(),
        description: "Add a plugin system".into(),
        context: Vec::new(),
        labels: Vec::new(),
        route: pointsman::policy::safe_route(&Config::demo()),
    };
    for (reply, expected) in [
        ("cycle", "cycle"),
        ("unknown", "\"ghost\", which is not in the plan"),
        ("duplicate", "two subtasks with the id"),
        ("huge", "more than 64"),
    ] {
        let error = planner
            .parse_plan(&task, reply, &catalog)
            .await
            .unwrap_err();
        assert!(
            matches!(&error, PolicyError::Invalid(why) if why.contains(expected)),
            "{reply}: {error}"
        );
    }
    let plan = planner.parse_plan(&task, "fine", &catalog).await.unwrap();
    assert_eq!(plan.subtasks.len(), 1);
}

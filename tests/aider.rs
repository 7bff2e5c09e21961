//! The real aider, an unmodified agent talking to the daemon through litellm,
//! in plan mode on both APIs, streaming and not: two turns of one session
//! each, whose edits (in aider's SEARCH/REPLACE format, written by the
//! scripted executor) aider applies to a file.

mod common;

use std::path::Path;

use pointsman_test_support::aider::run_aider_async;
use pointsman_test_support::upstream::{Api, RecordedRequest, Reply, Upstream, UpstreamConfig};
use serde_json::json;

use common::{Daemon, is_plan_request, system_text};

const ORIGINAL: &str = "def greet():\n    return \"hi\"\n";
const EDITED: &str =
    "def greet():\n    return \"hello, plugins\"\n\n\ndef register(name):\n    return name\n";

/// Both turns route to `plan`: the first message is a new design across
/// modules, and the router reads every user message of the conversation.
const TURNS: [&str; 2] = [
    "Design the architecture of a plugin system across multiple modules. Start by making greet() in greeting.py return the text hello, plugins.",
    "Next add a register(name) function to greeting.py that returns the name.",
];

/// The planner's plans are named `[plan N]` after their request's number;
/// executors answer with an edit for the turn's request, naming the plan
/// they were given.
fn script(upstream: &Upstream) {
    upstream.on(|r| {
        if is_plan_request(r) {
            let plan = json!({"summary": format!("[plan {}]", r.seq), "subtasks": [
                {"id": "design", "kind": "design", "title": "Design", "instructions": "Sketch the plugin interface.", "depends_on": []},
                {"id": "code", "kind": "code", "title": "Code", "instructions": "Edit greeting.py.", "depends_on": ["design"]}]});
            return Some(Reply::text(plan.to_string()));
        }
        let plan = plan_named(&system_text(r)).map_or("no plan".into(), |n| format!("[plan {n}]"));
        let (search, replace) = if r.last_user_text()?.contains("register(name)") {
            (
                "    return \"hello, plugins\"\n",
                "    return \"hello, plugins\"\n\n\ndef register(name):\n    return name\n",
            )
        } else {
            ("    return \"hi\"\n", "    return \"hello, plugins\"\n")
        };
        Some(Reply::text(format!(
            "Following {plan}.\n\ngreeting.py\n```python\n<<<<<<< SEARCH\n{search}=======\n{replace}>>>>>>> REPLACE\n```\n"
        )))
    });
}

/// The `N` of the first `[plan N]` in `text`.
fn plan_named(text: &str) -> Option<u64> {
    let rest = &text[text.find("[plan ")? + "[plan ".len()..];
    rest[..rest.find(']')?].parse().ok()
}

/// aider's model names for the daemon's `auto` alias, with what it needs
/// to know of them offline and the session each sends: a header on the
/// OpenAI API, `metadata.user_id` (litellm's mapping of `user`) on
/// Anthropic's.
fn write_model_files(dir: &Path, session: &str) {
    let info = |provider: &str| {
        json!({"max_input_tokens": 128000, "max_output_tokens": 8192, "max_tokens": 8192,
               "input_cost_per_token": 0.000001, "output_cost_per_token": 0.000002,
               "litellm_provider": provider, "mode": "chat"})
    };
    let metadata = json!({"openai/auto": info("openai"), "anthropic/auto": info("anthropic")});
    std::fs::write(dir.join("models.json"), metadata.to_string()).unwrap();
    let settings = format!(
        "- name: openai/auto\n  extra_params:\n    extra_headers:\n      x-pointsman-session: {session}\n\
         - name: anthropic/auto\n  extra_params:\n    user: {session}\n"
    );
    std::fs::write(dir.join("models.yml"), settings).unwrap();
}

/// One aider session of two turns; returns the upstream requests it caused.
async fn session(
    daemon: &Daemon,
    upstream: &Upstream,
    model: &str,
    stream: bool,
) -> Vec<RecordedRequest> {
    let dir = tempfile::tempdir().unwrap();
    let work = dir.path();
    std::fs::write(work.join("greeting.py"), ORIGINAL).unwrap();
    let session = format!("aider-{}-{stream}", model.replace('/', "-"));
    write_model_files(work, &session);
    let before = upstream.total();
    let api = format!("{}/v1", daemon.url);
    let out = run_aider_async(
        work,
        &[
            "--model",
            model,
            "--model-metadata-file",
            "models.json",
            "--model-settings-file",
            "models.yml",
            "--edit-format",
            "diff",
            if stream { "--stream" } else { "--no-stream" },
            "greeting.py",
        ],
        &format!("{}\n{}\n", TURNS[0], TURNS[1]),
        &[
            ("OPENAI_API_KEY", "sk-aider-test"),
            ("OPENAI_API_BASE", &api),
            ("ANTHROPIC_API_KEY", "sk-ant-aider-test"),
            ("ANTHROPIC_API_BASE", &daemon.url),
        ],
    )
    .await;
    let context = format!(
        "aider {model} stream={stream}: {:?}\n--- stdout\n{}\n--- stderr\n{}",
        out.status, out.stdout, out.stderr
    );
    assert!(out.status.is_some_and(|s| s.success()), "{context}");
    assert_eq!(
        out.stdout.matches("Applied edit to greeting.py").count(),
        2,
        "{context}"
    );
    let edited = std::fs::read_to_string(work.join("greeting.py")).unwrap();
    assert_eq!(edited, EDITED, "{context}");
    upstream
        .requests()
        .into_iter()
        .filter(|r| r.seq > before)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aider_applies_the_executors_edits_in_plan_mode() {
    let upstream = Upstream::start(UpstreamConfig::default()).await;
    script(&upstream);
    // Executors on the Anthropic API: aider's OpenAI-format requests are
    // translated, its Anthropic-format ones passed through.
    let daemon = Daemon::start(common::seed_on(&upstream, Api::Anthropic)).await;
    for model in ["openai/auto", "anthropic/auto"] {
        for stream in [true, false] {
            let requests = session(&daemon, &upstream, model, stream).await;
            let context = format!("aider {model} stream={stream}");
            let (plans, executed): (Vec<_>, Vec<_>) =
                requests.iter().partition(|r| is_plan_request(r));
            assert_eq!(plans.len(), 1, "{context}: one plan per session");
            let plan = plans[0];
            // aider's conversations open with example exchanges as user
            // messages: the task is its latest user message.
            let task = plan.last_user_text().unwrap();
            assert!(
                task.starts_with("# Task: Design the architecture of a plugin system"),
                "{context}: {task}"
            );
            assert!(task.contains("def greet()"), "{context}: {task}");
            assert_eq!(executed.len(), 2, "{context}: {executed:?}");
            for request in executed {
                assert_eq!(request.api, Some(Api::Anthropic), "{context}");
                assert_eq!(request.model(), Some("glm-4.7"), "{context}");
                assert_eq!(request.is_stream(), stream, "{context}");
                let system = system_text(request);
                assert!(
                    system.contains("A planner model has broken this task down")
                        && plan_named(&system) == Some(plan.seq),
                    "{context}: {system}"
                );
            }
        }
    }
}

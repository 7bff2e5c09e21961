//! Running the daemon as a service: its log lines, its shutdown and its
//! config check on the real binary; its metrics against the shipped
//! dashboard and alert rules.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Starts `pointsman serve` on the built-in demo with `args`, stderr piped
/// (so it is not a terminal), and waits for its "listening" line.
fn start(args: &[&str]) -> (Child, String, Log) {
    start_serving(args, &[])
}

/// [`start`], with `serve_args` after `serve`.
fn start_serving(args: &[&str], serve_args: &[&str]) -> (Child, String, Log) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_pointsman"))
        .args(args)
        .args(["serve", "--listen", "127.0.0.1:0"])
        .args(serve_args)
        // A daemon without `[ledger] url` records into a fresh default
        // ledger of its own, never the user's (the folder is left in the
        // system's temp folder).
        .env(
            "XDG_DATA_HOME",
            tempfile::Builder::new()
                .prefix("pointsman-operations-")
                .tempdir()
                .unwrap()
                .keep(),
        )
        .env_remove("POINTSMAN_LOG")
        // The daemon's own memory policy, whatever the tests' shell says.
        .env_remove("MIMALLOC_ALLOW_THP")
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = Vec::new();
    let mut reader = BufReader::new(child.stderr.take().unwrap());
    let started = Instant::now();
    let addr = loop {
        let mut line = String::new();
        assert!(reader.read_line(&mut line).unwrap() > 0, "{lines:?}");
        lines.push(line.clone());
        if line.contains("listening") {
            let at = line.find("127.0.0.1:").unwrap();
            let addr: String = line[at..]
                .chars()
                .take_while(|c| c.is_ascii_digit() || *c == '.' || *c == ':')
                .collect();
            break addr;
        }
        assert!(started.elapsed() < Duration::from_secs(60), "{lines:?}");
    };
    // Keep reading stderr so the daemon never blocks on a full pipe, and
    // keep every line for the test.
    let log = std::sync::Arc::new(std::sync::Mutex::new(lines));
    let all = log.clone();
    std::thread::spawn(move || {
        for line in reader.lines().map_while(Result::ok) {
            all.lock().unwrap().push(line);
        }
    });
    (child, format!("http://{addr}"), log)
}

/// `POST /v1/admin/reload` as `key`.
async fn admin_reload(url: &str, key: &str) -> reqwest::Response {
    reqwest::Client::new()
        .post(format!("{url}/v1/admin/reload"))
        .bearer_auth(key)
        .send()
        .await
        .unwrap()
}

/// Every line a daemon wrote to stderr so far.
type Log = std::sync::Arc<std::sync::Mutex<Vec<String>>>;

fn terminate(child: &Child) {
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
}

#[test]
fn logs_have_no_colour_codes_off_a_terminal_and_json_is_one_object_a_line() {
    let (mut text, _, log) = start(&[]);
    terminate(&text);
    text.wait().unwrap();
    let lines = log.lock().unwrap().clone();
    assert!(lines.iter().all(|l| !l.contains('\u{1b}')), "{lines:?}");

    let (mut json, _, log) = start(&["--log-format", "json"]);
    terminate(&json);
    json.wait().unwrap();
    let lines = log.lock().unwrap().clone();
    for line in &lines {
        let value: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        assert!(
            value["level"].is_string() && value["fields"].is_object(),
            "{line}"
        );
    }
}

/// Huge pages kept the allocator's 2 MiB regions resident whole (a third
/// of the daemon's memory under load), so the daemon turns them off for
/// itself; `MIMALLOC_ALLOW_THP` in its environment (which [`start`]
/// removes) would leave them on.
#[test]
fn the_daemon_runs_without_transparent_huge_pages() {
    let (mut child, _, _) = start(&[]);
    let status = std::fs::read_to_string(format!("/proc/{}/status", child.id())).unwrap();
    terminate(&child);
    child.wait().unwrap();
    let line = status
        .lines()
        .find(|l| l.starts_with("THP_enabled:"))
        .expect("Linux 5.0 or later reports THP_enabled");
    assert_eq!(line.split_whitespace().nth(1), Some("0"), "{line}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_lets_a_stream_in_flight_finish_then_exits() {
    let (mut child, url, _) = start(&[]);
    // The demo streams at 400 tokens a second: a long answer takes a while.
    let response = reqwest::Client::new()
        .post(format!("{url}/v1/chat/completions"))
        .json(&serde_json::json!({
            "model": "glm-4.7", "stream": true, "max_tokens": 400,
            "messages": [{"role": "user", "content": "Write the parser module in full, with comments on every function and a test for each case"}]
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    terminate(&child);
    let body = response.text().await.unwrap();
    assert!(body.trim_end().ends_with("data: [DONE]"), "{body}");
    let started = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            assert!(status.success(), "{status}");
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(30), "still running");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[test]
fn config_check_passes_the_shipped_examples_and_names_each_problem() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let run = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_pointsman"))
            .args(args)
            .env("ANTHROPIC_API_KEY", "k")
            .env("DEEPSEEK_API_KEY", "k")
            .env("ZHIPU_API_KEY", "k")
            .output()
            .unwrap()
    };
    let seed = root.join("examples/seed.toml");
    let ok = run(&["config", "check", seed.to_str().unwrap()]);
    let out = String::from_utf8_lossy(&ok.stdout);
    assert!(ok.status.success(), "{out}");
    assert!(out.contains("router seed-matrix"), "{out}");
    let demo = run(&["config", "check"]);
    assert!(demo.status.success());

    let dir = tempfile::tempdir().unwrap();
    let broken = dir.path().join("broken.toml");
    let text = std::fs::read_to_string(&seed)
        .unwrap()
        .replace(
            "baseline_model = \"claude-opus-4.5\"",
            "baseline_model = \"gpt-9\"",
        )
        .replace(
            "api_key_env = \"ZHIPU_API_KEY\"",
            "api_key_env = \"POINTSMAN_TEST_UNSET_KEY\"",
        );
    // A declared rollout of a module that exists nowhere.
    let text = format!("{text}\n[rollouts.router]\ncandidate = \"seed-matrixx\"\n");
    std::fs::write(&broken, text).unwrap();
    let bad = run(&["config", "check", broken.to_str().unwrap()]);
    let out = String::from_utf8_lossy(&bad.stdout);
    assert_eq!(bad.status.code(), Some(1), "{out}");
    assert!(
        out.contains("broken.toml:") && out.contains("baseline_model"),
        "{out}"
    );
    assert!(out.contains("POINTSMAN_TEST_UNSET_KEY"), "{out}");
    assert!(
        out.contains("rollouts.router.candidate: no module \"seed-matrixx\""),
        "{out}"
    );
}

/// Every metric the shipped Grafana dashboard and Prometheus alert rules
/// use is exported, once traffic has exercised what it counts: healthy
/// plain and streamed requests, a policy that traps, a module that fails to
/// load, and an upstream that fails every attempt (errors, escalations,
/// breakers).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_and_alert_rules_use_only_exported_metrics() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let dashboard = std::fs::read_to_string(root.join("examples/grafana/pointsman.json")).unwrap();
    let alerts =
        std::fs::read_to_string(root.join("examples/prometheus/pointsman-alerts.yml")).unwrap();
    let mut used = std::collections::BTreeSet::new();
    for text in [&dashboard, &alerts] {
        let mut rest = text.as_str();
        while let Some(at) = rest.find("pointsman_") {
            let name: String = rest[at..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            rest = &rest[at + name.len()..];
            let base = ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|suffix| name.strip_suffix(suffix))
                .unwrap_or(&name)
                .to_string();
            used.insert(base);
        }
    }
    assert!(used.len() > 10, "{used:?}");

    // A healthy daemon whose router is the hostile guest, next to a module
    // that cannot load.
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("hostile.wasm"),
        pointsman_test_support::read(pointsman_test_support::HOSTILE),
    )
    .unwrap();
    std::fs::write(dir.path().join("broken.wasm"), b"\0asm but not really").unwrap();
    let mut config = common::demo();
    config.policies.dir = Some(dir.path().to_path_buf());
    config.policies.router = "hostile".into();
    // A team's budget, which the request below reserves against.
    config
        .budgets
        .push(toml::from_str("label = \"team=core\"\ndaily_usd = 100.0").unwrap());
    let healthy = common::Daemon::start(config).await;
    let client = reqwest::Client::new();
    let chat = |url: String, text: &'static str, stream: bool| {
        let client = client.clone();
        // A named model is its route's only one: when it fails, the
        // escalation model is tried.
        let model = if text.starts_with("Fix") {
            "glm-4.7"
        } else {
            "auto"
        };
        async move {
            client
                .post(format!("{url}/v1/chat/completions"))
                .json(&serde_json::json!({"model": model, "stream": stream,
                    "messages": [{"role": "user", "content": text}]}))
                .send()
                .await
                .unwrap()
                .text()
                .await
                .unwrap()
        }
    };
    chat(healthy.url.clone(), "hello", false).await;
    chat(healthy.url.clone(), "hello", true).await;
    chat(healthy.url.clone(), "trap", false).await;
    let budgeted = client
        .post(format!("{}/v1/chat/completions", healthy.url))
        .header("x-pointsman-team", "core")
        .json(&serde_json::json!({"model": "auto", "messages": [{"role": "user", "content": "hello"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(budgeted.status(), 200);

    // A daemon whose only upstream fails every attempt.
    let mut failing = common::demo();
    for provider in failing.providers.values_mut() {
        provider.error_rate = 1.0;
    }
    let failing = common::Daemon::start(failing).await;
    for _ in 0..3 {
        chat(failing.url.clone(), "Fix the typo in main.rs", false).await;
    }

    let exported = client
        .get(format!("{}/metrics", healthy.url))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let missing: Vec<&String> = used
        .iter()
        .filter(|name| {
            !exported
                .lines()
                .any(|l| !l.starts_with('#') && l.starts_with(name.as_str()))
        })
        .collect();
    assert!(missing.is_empty(), "not exported: {missing:?}\n{exported}");
}

fn sha256(key: &str) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(key.as_bytes()))
}

/// Under steady load on both APIs, plain and streamed, with a task running,
/// SIGHUP swaps in a file that adds a client key, a model and an endpoint
/// and changes a price: no request fails, the task finishes, the new key
/// and model work at once, new requests get the new price and a stream in
/// flight across the reload keeps the old one. An invalid file changes
/// nothing, on SIGHUP or through `POST /v1/admin/reload`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_under_load_applies_at_once_and_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("pointsman.toml");
    let base = pointsman::config::DEMO_TOML.replace(
        "baseline_model = \"claude-opus-4.5\"",
        &format!(
            "baseline_model = \"claude-opus-4.5\"\n[admin]\nkey_sha256 = \"{}\"\n",
            sha256("root")
        ),
    );
    // A slow model, so that a stream outlives the reload.
    let base = format!(
        "{base}\n[providers.slow]\nkind = \"simulated\"\nlatency_ms = 0\ntokens_per_second = 20\n\
         [[models]]\nid = \"slow-4.7\"\nprovider = \"slow\"\nroles = [\"executor\"]\n\
         input_usd_per_mtok = 1.0\noutput_usd_per_mtok = 2.0\ncontext_window = 128000\n"
    );
    let alice = format!(
        "\n[[clients]]\nname = \"alice\"\nkey_sha256 = \"{}\"\n",
        sha256("alice-key")
    );
    std::fs::write(&path, format!("{base}{alice}")).unwrap();
    let (child, url, _) = start_serving(&[], &["--config", path.to_str().unwrap()]);
    let client = reqwest::Client::new();
    let ask = {
        let (client, url) = (client.clone(), url.clone());
        move |key: &'static str, model: &'static str, stream: bool| {
            let client = client.clone();
            let url = url.clone();
            async move {
                client
                    .post(format!("{url}/v1/chat/completions"))
                    .bearer_auth(key)
                    .json(
                        &serde_json::json!({"model": model, "stream": stream, "max_tokens": 40,
                    "messages": [{"role": "user", "content": "Fix the typo in main.rs"}]}),
                    )
                    .send()
                    .await
            }
        }
    };
    let cost = |response: &reqwest::Response| -> f64 {
        response.headers()["x-pointsman-cost-usd"]
            .to_str()
            .unwrap()
            .parse()
            .unwrap()
    };
    let before = ask("alice-key", "glm-4.7", false).await.unwrap();
    assert_eq!(before.status(), 200);
    let old_cost = cost(&before);
    assert_eq!(
        ask("bob-key", "glm-4.7", false).await.unwrap().status(),
        401
    );

    // Steady load on both kinds of answer while the file changes.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut load = Vec::new();
    for worker in 0..6 {
        let (stop, ask, client, url) = (stop.clone(), ask.clone(), client.clone(), url.clone());
        load.push(tokio::spawn(async move {
            let (mut ok, mut failed) = (0, Vec::new());
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let stream = worker % 2 == 0;
                let answer = if worker < 4 {
                    ask("alice-key", "auto", stream).await
                } else {
                    client
                        .post(format!("{url}/v1/messages"))
                        .header("x-api-key", "alice-key")
                        .header("anthropic-version", "2023-06-01")
                        .json(&serde_json::json!({"model": "auto", "stream": stream,
                            "max_tokens": 40,
                            "messages": [{"role": "user", "content": "Fix the typo in main.rs"}]}))
                        .send()
                        .await
                };
                match answer {
                    Ok(r) if r.status() == 200 => match r.text().await {
                        Ok(_) => ok += 1,
                        Err(e) => failed.push(e.to_string()),
                    },
                    Ok(r) => failed.push(format!("{}", r.status())),
                    Err(e) => failed.push(e.to_string()),
                }
            }
            (ok, failed)
        }));
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    // A task, and a slow stream whose first words have arrived, across the
    // reload.
    let task = common::submit_task(&url, Some("alice-key"), common::PLANNED_TASK).await;
    let mut in_flight = ask("alice-key", "slow-4.7", true).await.unwrap();
    assert_eq!(in_flight.status(), 200);
    let mut streamed =
        String::from_utf8_lossy(&in_flight.chunk().await.unwrap().unwrap()).into_owned();
    let changed = format!(
        "{}{alice}\n[[clients]]\nname = \"bob\"\nkey_sha256 = \"{}\"\n\n\
         [[models]]\nid = \"glm-5\"\nprovider = \"simulated\"\nroles = [\"executor\"]\n\
         input_usd_per_mtok = 2.0\noutput_usd_per_mtok = 4.0\ncontext_window = 128000\n\
         [[models.endpoints]]\nprovider = \"simulated\"\nupstream = \"glm-5-replica\"\n",
        base.replace("input_usd_per_mtok = 1.0", "input_usd_per_mtok = 10.0"),
        sha256("bob-key")
    );
    assert_ne!(changed, format!("{base}{alice}"), "the price line exists");
    std::fs::write(&path, &changed).unwrap();
    unsafe { libc::kill(child.id() as i32, libc::SIGHUP) };
    let started = Instant::now();
    loop {
        if ask("bob-key", "glm-5", false).await.unwrap().status() == 200 {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "the reload never applied"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let after = ask("alice-key", "glm-4.7", false).await.unwrap();
    assert!(cost(&after) > old_cost, "{} vs {old_cost}", cost(&after));
    // The stream started before the reload is priced as it started: input
    // at 1.0 USD per million tokens, now 10.0.
    let mut chunks = 0;
    while let Some(chunk) = in_flight.chunk().await.unwrap() {
        streamed.push_str(&String::from_utf8_lossy(&chunk));
        chunks += 1;
    }
    assert!(
        chunks > 1,
        "the slow stream ended before the reload: {streamed}"
    );
    let summary = streamed
        .lines()
        .filter_map(|l| {
            // The usage event's `pointsman` object, or (without
            // include_usage) the SSE comment carrying it.
            let data = l
                .strip_prefix("data: ")
                .or(l.strip_prefix(": pointsman "))?;
            let v = serde_json::from_str::<serde_json::Value>(data).ok()?;
            Some(v.get("pointsman").cloned().unwrap_or(v))
        })
        .find(|v| v.get("cost_usd").is_some())
        .unwrap_or_else(|| panic!("no cost summary in {streamed}"));
    let tokens = |key: &str| {
        summary[key]
            .as_f64()
            .unwrap_or_else(|| panic!("{key}: {summary}"))
    };
    let told: f64 = summary["cost_usd"].as_str().unwrap().parse().unwrap();
    let at_old_price = (tokens("input_tokens") * 1.0 + tokens("output_tokens") * 2.0) / 1e6;
    assert!(
        (told - at_old_price).abs() < 2e-8,
        "the stream in flight was priced {told}, the old price makes {at_old_price}: {summary}"
    );
    let done = common::wait_for_task_at(&url, Some("alice-key"), &task).await;
    assert_eq!(done["status"], "succeeded", "{done}");

    // An invalid file changes nothing.
    std::fs::write(&path, "this is [not toml").unwrap();
    unsafe { libc::kill(child.id() as i32, libc::SIGHUP) };
    let refused = admin_reload(&url, "root").await;
    assert_eq!(refused.status(), 422);
    let why = refused.text().await.unwrap();
    assert!(why.contains("previous one keeps serving"), "{why}");
    let wrong_key = admin_reload(&url, "bob-key").await;
    assert_eq!(wrong_key.status(), 401);
    assert_eq!(ask("bob-key", "glm-5", false).await.unwrap().status(), 200);
    // Nor does a valid file naming what does not exist: a safe route on an
    // unknown model, a provider key file that is missing. Each is refused
    // with its reason.
    for (broken, reason) in [
        (
            changed.replace("executor = \"glm-4.7\"", "executor = \"gpt-9\""),
            "gpt-9",
        ),
        (
            format!(
                "{changed}\n[providers.remote]\nkind = \"openai\"\n\
                 base_url = \"http://127.0.0.1:9/v1\"\napi_key_file = \"/nonexistent/key\"\n"
            ),
            "/nonexistent/key",
        ),
    ] {
        assert_ne!(broken, changed, "{reason}: the broken line exists");
        std::fs::write(&path, &broken).unwrap();
        let refused = admin_reload(&url, "root").await;
        assert_eq!(refused.status(), 422, "{reason}");
        let why = refused.text().await.unwrap();
        assert!(why.contains(reason), "{why}");
        assert_eq!(ask("bob-key", "glm-5", false).await.unwrap().status(), 200);
    }

    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut served = 0;
    for worker in load {
        let (ok, failed) = worker.await.unwrap();
        assert!(
            failed.is_empty(),
            "requests failed across the reload: {failed:?}"
        );
        served += ok;
    }
    assert!(served > 10, "{served}");
    terminate(&child);
    let mut child = child;
    child.wait().unwrap();
}

/// With `[config] watch = true`, saving the file is a reload.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watched_config_file_reloads_when_saved() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("pointsman.toml");
    let client = |name: &str| {
        format!(
            "\n[[clients]]\nname = \"{name}\"\nkey_sha256 = \"{}\"\n",
            sha256(&format!("{name}-key"))
        )
    };
    let base = pointsman::config::DEMO_TOML.replace(
        "baseline_model = \"claude-opus-4.5\"",
        "baseline_model = \"claude-opus-4.5\"\n[config]\nwatch = true\n",
    );
    std::fs::write(&path, format!("{base}{}", client("alice"))).unwrap();
    let (mut child, url, _) = start_serving(&[], &["--config", path.to_str().unwrap()]);
    let models = |key: &'static str| {
        let url = url.clone();
        async move {
            reqwest::Client::new()
                .post(format!("{url}/v1/chat/completions"))
                .bearer_auth(key)
                .json(&serde_json::json!({"model": "glm-4.7", "max_tokens": 10,
                    "messages": [{"role": "user", "content": "hi"}]}))
                .send()
                .await
                .unwrap()
                .status()
        }
    };
    assert_eq!(models("carol-key").await, 401);
    // Written the way deploy tools should: a new file renamed into place.
    let tmp = dir.path().join(".pointsman.toml.tmp");
    std::fs::write(
        &tmp,
        format!("{base}{}{}", client("alice"), client("carol")),
    )
    .unwrap();
    std::fs::rename(&tmp, &path).unwrap();
    let started = Instant::now();
    while models("carol-key").await != 200 {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "never reloaded"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(models("alice-key").await, 200);
    terminate(&child);
    child.wait().unwrap();
}

/// A task still running when the grace period ends is marked
/// `interrupted` in the ledger by the stopping daemon itself, not only by
/// its next start (which may never come).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_marks_tasks_left_after_the_grace_period_interrupted() {
    let dir = tempfile::tempdir().unwrap();
    let ledger = format!("sqlite:{}", dir.path().join("ledger.db").display());
    // Slow answers (20 tokens a second): the task outlives a 200 ms grace.
    let text = pointsman::config::DEMO_TOML
        .replace("tokens_per_second = 400", "tokens_per_second = 20")
        .replace(
            "[safe_route]",
            "[server]\nshutdown_grace_ms = 200\n\n[safe_route]",
        );
    let path = dir.path().join("pointsman.toml");
    std::fs::write(&path, format!("{text}\n[ledger]\nurl = \"{ledger}\"\n")).unwrap();
    let (mut child, url, _) = start_serving(&[], &["--config", path.to_str().unwrap()]);
    let id = common::submit_task(&url, None, common::PLANNED_TASK).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    terminate(&child);
    let status = tokio::task::spawn_blocking(move || child.wait().unwrap())
        .await
        .unwrap();
    assert!(status.success(), "{status}");

    let ledger = pointsman::ledger::Ledger::open(&ledger, &Default::default())
        .await
        .unwrap();
    let record = ledger
        .task(&id)
        .await
        .unwrap()
        .expect("the task is on record");
    ledger.close().await;
    assert_eq!(
        record.status,
        pointsman::ledger::record::TaskStatus::Interrupted,
        "{record:?}"
    );
}

/// A reload through the admin API that revokes a client key: the key can
/// start nothing new at once, its running task still finishes (on record in
/// the ledger), `GET /v1/config` shows the new file's hash and no secret,
/// and the audit trail names who reloaded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_key_starts_nothing_new_but_its_task_finishes() {
    let dir = tempfile::tempdir().unwrap();
    let ledger = format!("sqlite:{}", dir.path().join("ledger.db").display());
    let path = dir.path().join("pointsman.toml");
    // Slow answers, so that the task is still running at the reload.
    let base = format!(
        "{}\n[admin]\nkey_sha256 = \"{}\"\n[ledger]\nurl = \"{ledger}\"\n\
         [[clients]]\nname = \"bob\"\nkey_sha256 = \"{}\"\n",
        pointsman::config::DEMO_TOML.replace("tokens_per_second = 400", "tokens_per_second = 100"),
        sha256("root"),
        sha256("bob-key"),
    );
    let alice = format!(
        "[[clients]]\nname = \"alice\"\nkey_sha256 = \"{}\"\n",
        sha256("alice-key")
    );
    std::fs::write(&path, format!("{base}{alice}")).unwrap();
    let (mut child, url, log) = start_serving(&[], &["--config", path.to_str().unwrap()]);
    let client = reqwest::Client::new();
    let id = common::submit_task(&url, Some("alice-key"), common::PLANNED_TASK).await;

    // The task as the ledger has it (read as another process would).
    let on_record = || async {
        let opened = pointsman::ledger::Ledger::open(&ledger, &Default::default())
            .await
            .unwrap();
        let record = opened.task(&id).await.unwrap();
        opened.close().await;
        record
    };

    std::fs::write(&path, &base).unwrap();
    let reloaded = admin_reload(&url, "root").await;
    assert_eq!(reloaded.status(), 200, "{}", reloaded.text().await.unwrap());
    assert!(
        !on_record().await.is_some_and(|r| r.status.is_final()),
        "the task had ended before the reload: the test shows nothing"
    );
    let refused = client
        .post(format!("{url}/v1/chat/completions"))
        .bearer_auth("alice-key")
        .json(&serde_json::json!({"model": "auto",
            "messages": [{"role": "user", "content": "Fix the typo"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 401, "a revoked key starts nothing");

    let config: serde_json::Value = client
        .get(format!("{url}/v1/config"))
        .bearer_auth("root")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(config["sha256"], sha256(&base), "{config}");
    let shown = config.to_string();
    assert!(
        !shown.contains(&sha256("bob-key")),
        "a key hash is shown: {shown}"
    );

    // The task ends on the config it started with; then the daemon stops.
    let started = Instant::now();
    let ledger_view = loop {
        match on_record().await {
            Some(r) if r.status.is_final() => break r,
            _ => {}
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the task never ended"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(
        ledger_view.status,
        pointsman::ledger::record::TaskStatus::Succeeded,
        "{ledger_view:?}"
    );
    terminate(&child);
    child.wait().unwrap();
    let lines = log.lock().unwrap().clone();
    assert!(
        lines
            .iter()
            .any(|l| l.contains("pointsman::audit") && l.contains("reload") && l.contains("admin")),
        "no audit line names the reload and who made it: {lines:?}"
    );
}

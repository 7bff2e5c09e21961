//! Starting a real daemon inside a test.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::Arc;

use pointsman::config::Config;
use pointsman::gateway::{AppState, serve_on};
use pointsman_test_support::upstream::{ANTHROPIC_KEY, Api, OPENAI_KEY, RecordedRequest, Upstream};
use serde_json::Value;

/// A daemon serving on a loopback port until dropped.
pub struct Daemon {
    /// `http://127.0.0.1:<port>`.
    pub url: String,
    /// Its state, to inspect the registry or the catalog.
    pub state: Arc<AppState>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
    /// Holds the daemon's own ledger file, when the config named none.
    _ledger_dir: Option<tempfile::TempDir>,
}

impl Daemon {
    /// Starts a daemon on `config` (its listen address is ignored).
    pub async fn start(mut config: Config) -> Daemon {
        // Each daemon records into a ledger of its own, never the user's.
        let ledger_dir = config.ledger.url.is_none().then(|| {
            let dir = tempfile::tempdir().unwrap();
            config.ledger.url = Some(format!("sqlite:{}", dir.path().join("ledger.db").display()));
            dir
        });
        let state = Arc::new(AppState::new(config).await.expect("the daemon starts"));
        let listener = tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0)))
            .await
            .unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let (stop, stopped) = tokio::sync::oneshot::channel();
        let task = tokio::spawn({
            let state = state.clone();
            async move {
                serve_on(listener, state, async {
                    let _ = stopped.await;
                })
                .await
                .unwrap();
            }
        });
        Daemon {
            url,
            state,
            stop: Some(stop),
            task: Some(task),
            _ledger_dir: ledger_dir,
        }
    }

    /// Stops accepting, waits for requests in flight.
    pub async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            task.await.unwrap();
        }
        self.state.ledger.close().await;
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// The demo config with its catalog on the simulated provider, made instant.
pub fn demo() -> Config {
    let text = pointsman::config::DEMO_TOML
        .replace("latency_ms = 20", "latency_ms = 0")
        .replace("tokens_per_second = 400", "tokens_per_second = 0");
    Config::parse(&text).unwrap()
}

/// The demo's seed catalog and policies with every model on `upstream`:
/// the executors (`glm-4.7`, `deepseek-v3.2-exp`) speak `executors`' API, the
/// planner and the premium model OpenAI's.
pub fn seed_on(upstream: &Upstream, executors: Api) -> Config {
    seed_placed(upstream, |_, executor| match (executor, executors) {
        (true, Api::Anthropic) => "an",
        (true, Api::Responses) => "rs",
        _ => "oa",
    })
}

/// The demo's seed catalog and policies with every model on `upstream`, on
/// the provider `place(id, is_executor)` names: `oa` (OpenAI chat), `an`
/// (Anthropic) or `rs` (OpenAI with the Responses API).
pub fn seed_placed(upstream: &Upstream, place: impl Fn(&str, bool) -> &'static str) -> Config {
    // SAFETY: set before any daemon of the test binary reads them, to the
    // same values by every test; nothing else in the process writes them.
    unsafe {
        std::env::set_var("POINTSMAN_TEST_OPENAI_KEY", OPENAI_KEY);
        std::env::set_var("POINTSMAN_TEST_ANTHROPIC_KEY", ANTHROPIC_KEY);
    }
    let mut config: toml::Table = pointsman::config::DEMO_TOML.parse().unwrap();
    let providers: toml::Table = format!(
        r#"
[oa]
kind = "openai"
base_url = "{openai}"
api_key_env = "POINTSMAN_TEST_OPENAI_KEY"
timeout_ms = 10000

[an]
kind = "anthropic"
base_url = "{anthropic}"
api_key_env = "POINTSMAN_TEST_ANTHROPIC_KEY"
timeout_ms = 10000

[rs]
kind = "openai"
base_url = "{openai}"
api_key_env = "POINTSMAN_TEST_OPENAI_KEY"
timeout_ms = 10000
responses = true
"#,
        openai = upstream.openai_url(),
        anthropic = upstream.url(),
    )
    .parse()
    .unwrap();
    config.insert("providers".into(), providers.into());
    let models = config["models"]
        .as_array_mut()
        .expect("the demo has models");
    for model in models {
        let model = model.as_table_mut().unwrap();
        let executor = model["roles"]
            .as_array()
            .is_some_and(|roles| roles.iter().any(|r| r.as_str() == Some("executor")));
        let id = model["id"].as_str().unwrap_or_default().to_string();
        model.insert("provider".into(), place(&id, executor).into());
    }
    Config::parse(&toml::to_string(&config).unwrap()).unwrap()
}

/// Every system text of an upstream request: OpenAI `system` messages and
/// Anthropic's `system` field, strings or text parts.
pub fn system_text(r: &RecordedRequest) -> String {
    fn text(content: &Value) -> String {
        match content {
            Value::String(s) => s.clone(),
            Value::Array(parts) => parts
                .iter()
                .filter_map(|p| p["text"].as_str())
                .collect::<Vec<_>>()
                .join("\n"),
            _ => String::new(),
        }
    }
    r.messages()
        .iter()
        .filter(|m| m["role"] == "system")
        .map(|m| text(&m["content"]))
        .chain(std::iter::once(text(&r.body["system"])))
        .filter(|t| !t.is_empty())
        .collect::<Vec<_>>()
        .join("\n")
}

/// A daemon config whose one model, `posed` (`mock-model` upstream), is
/// on `server` (llmposter), reached as `api`: chat completions, Anthropic
/// messages, or the Responses API (OpenAI chat with `responses = true`);
/// `extra` is appended (say a `[[model_names]]` rule).
pub fn on_llmposter(
    server: &pointsman_test_support::llmposter::Llmposter,
    api: Api,
    extra: &str,
) -> Config {
    let (kind, url, responses) = match api {
        Api::OpenAi => ("openai", server.openai_url(), false),
        Api::Anthropic => ("anthropic", server.anthropic_url(), false),
        Api::Responses => ("openai", server.openai_url(), true),
    };
    let text = format!(
        "baseline_model = \"posed\"\n\n[policies]\n\n[safe_route]\nexecutor = \"posed\"\n\n\
         [providers.llmposter]\nkind = \"{kind}\"\nbase_url = \"{url}\"\nresponses = {responses}\n\n\
         [[models]]\nid = \"posed\"\nprovider = \"llmposter\"\nupstream = \"mock-model\"\n\
         input_usd_per_mtok = 1.0\noutput_usd_per_mtok = 2.0\ncontext_window = 200000\n\n{extra}"
    );
    Config::parse(&text).unwrap_or_else(|e| panic!("{e:#}\n{text}"))
}

/// Whether an upstream request is the seed planner's request for a plan.
pub fn is_plan_request(r: &RecordedRequest) -> bool {
    system_text(r).contains("\"subtasks\"")
}

/// Polls `GET /v1/tasks/<id>` (as `key`, if given) until the task has
/// ended; returns its record. Fails the test after 30 s.
pub async fn wait_for_task(daemon: &Daemon, key: Option<&str>, id: &str) -> Value {
    wait_for_task_at(&daemon.url, key, id).await
}

/// [`wait_for_task`] on the daemon at `url` (another process, a replica).
pub async fn wait_for_task_at(url: &str, key: Option<&str>, id: &str) -> Value {
    let started = std::time::Instant::now();
    loop {
        let mut request = reqwest::Client::new().get(format!("{url}/v1/tasks/{id}"));
        if let Some(key) = key {
            request = request.bearer_auth(key);
        }
        let record: Value = request.send().await.unwrap().json().await.unwrap();
        if !matches!(
            record["status"].as_str(),
            Some("queued" | "planning" | "running")
        ) {
            return record;
        }
        assert!(
            started.elapsed() < std::time::Duration::from_secs(30),
            "{record}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
}

/// A daemon in its own process (`pointsman serve`), for tests that
/// `kill -9` it. Killed when dropped.
pub struct Process {
    child: std::process::Child,
    /// Its base URL.
    pub url: String,
}

impl Process {
    /// Starts `pointsman serve --config config_path` on `port` and waits
    /// for `/healthz` to answer.
    pub async fn start(config_path: &std::path::Path, port: u16) -> Process {
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_pointsman"))
            .args(["serve", "--config"])
            .arg(config_path)
            .arg("--listen")
            .arg(format!("127.0.0.1:{port}"))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let url = format!("http://127.0.0.1:{port}");
        for _ in 0..300 {
            if reqwest::get(format!("{url}/healthz")).await.is_ok() {
                return Process { child, url };
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        let _ = child.kill();
        let _ = child.wait();
        panic!("the daemon on port {port} did not start");
    }

    /// Its process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// `kill -9`, and waits for the process to be gone.
    pub fn kill(mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A port free on 127.0.0.1 now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A planned task's description (the seed matrix sends it to the `plan`
/// tier).
pub const PLANNED_TASK: &str = "Design the architecture of a plugin system across multiple modules";

/// Submits a task with `description` to the daemon at `url` as `key`;
/// returns its id.
pub async fn submit_task(url: &str, key: Option<&str>, description: &str) -> String {
    let mut request = reqwest::Client::new()
        .post(format!("{url}/v1/tasks"))
        .json(&serde_json::json!({"title": "t", "description": description}));
    if let Some(key) = key {
        request = request.bearer_auth(key);
    }
    let task: Value = request.send().await.unwrap().json().await.unwrap();
    task["id"]
        .as_str()
        .unwrap_or_else(|| panic!("no task id in {task}"))
        .to_string()
}

/// `pointsman report --format json --ledger LEDGER ARGS…`, parsed.
pub fn report_json(ledger: &str, args: &[&str]) -> Value {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_pointsman"))
        .args(["report", "--format", "json", "--ledger", ledger])
        .args(args)
        .output()
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    serde_json::from_slice(&output.stdout).unwrap()
}

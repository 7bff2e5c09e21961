//! `kill -9` under steady load, on SQLite (journaled, the default
//! `sync = "normal"`) and on a real PostgreSQL: every answer a client
//! received in full is in the ledger after a restart, no call is on record
//! twice, and `pointsman report` counts what the ledger holds.

mod common;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use pointsman::config::ledger::LedgerConfig;
use pointsman::ledger::store::{CallFilter, Ledger};
use pointsman_test_support::postgres::Postgres;
use serde_json::{Value, json};

use common::{Process, free_port};

/// How many full answers the clients get before the first `kill -9`.
const ANSWERS_BEFORE_KILL: usize = 200;
/// Concurrent clients.
const CLIENTS: usize = 8;

/// Writes the demo (no simulated latency) recording into `url`.
fn write_config(dir: &std::path::Path, url: &str, extra: &str) -> std::path::PathBuf {
    let text = pointsman::config::DEMO_TOML
        .replace("latency_ms = 20", "latency_ms = 0")
        .replace("tokens_per_second = 400", "tokens_per_second = 0");
    let path = dir.join("pointsman.toml");
    std::fs::write(&path, format!("{text}\n[ledger]\nurl = \"{url}\"\n{extra}")).unwrap();
    path
}

/// The `n`th request of a client: OpenAI or Anthropic, plain or streamed.
fn load_request(n: usize) -> (&'static str, Value) {
    let stream = n % 2 == 1;
    let messages = json!([{"role": "user", "content": format!("Rename variable {n} in util.rs")}]);
    if n % 4 < 2 {
        (
            "/v1/chat/completions",
            json!({"model": "auto", "max_tokens": 40, "stream": stream, "messages": messages}),
        )
    } else {
        (
            "/v1/messages",
            json!({"model": "auto", "max_tokens": 40, "stream": stream, "messages": messages}),
        )
    }
}

/// Whether `body` is a whole answer: a JSON object, or a stream through its
/// final event (`[DONE]` or `message_stop`).
fn answered_in_full(path: &str, stream: bool, body: &str) -> bool {
    if !stream {
        return serde_json::from_str::<Value>(body).is_ok_and(|v| v.is_object());
    }
    if path == "/v1/messages" {
        body.contains("event: message_stop")
    } else {
        body.lines().any(|l| l.trim() == "data: [DONE]")
    }
}

/// Sends one request; the request id when the answer arrived in full.
async fn one_request(http: &reqwest::Client, url: &str, n: usize) -> Option<String> {
    let (path, body) = load_request(n);
    let stream = body["stream"].as_bool().unwrap();
    let response = http
        .post(format!("{url}{path}"))
        .bearer_auth("load")
        .header("anthropic-version", "2023-06-01")
        .json(&body)
        .send()
        .await
        .ok()?;
    if !response.status().is_success() {
        return None;
    }
    let id = response
        .headers()
        .get("x-pointsman-request-id")?
        .to_str()
        .ok()?
        .to_string();
    let text = response.text().await.ok()?;
    answered_in_full(path, stream, &text).then_some(id)
}

/// Runs `CLIENTS` clients against `url` until `stop`; returns the ids of
/// the answers received in full.
async fn load(url: String, stop: Arc<AtomicBool>, answered: Arc<AtomicUsize>) -> Vec<String> {
    let mut clients = Vec::new();
    for c in 0..CLIENTS {
        let (url, stop, answered) = (url.clone(), stop.clone(), answered.clone());
        clients.push(tokio::spawn(async move {
            let http = reqwest::Client::new();
            let mut ids = Vec::new();
            let mut n = c;
            while !stop.load(Ordering::Relaxed) {
                if let Some(id) = one_request(&http, &url, n).await {
                    ids.push(id);
                    answered.fetch_add(1, Ordering::Relaxed);
                }
                n += CLIENTS;
            }
            ids
        }));
    }
    let mut ids = Vec::new();
    for client in clients {
        ids.extend(client.await.unwrap());
    }
    ids
}

/// `extra` goes into `[ledger]`.
async fn kill_9_under_load(url: &str, extra: &str) {
    let dir = tempfile::tempdir().unwrap();
    let config_path = write_config(dir.path(), url, extra);
    let port = free_port();

    // Steady load, then kill -9 in the middle of it.
    let daemon = Process::start(&config_path, port).await;
    let (stop, answered) = (
        Arc::new(AtomicBool::new(false)),
        Arc::new(AtomicUsize::new(0)),
    );
    let clients = tokio::spawn(load(daemon.url.clone(), stop.clone(), answered.clone()));
    while answered.load(Ordering::Relaxed) < ANSWERS_BEFORE_KILL {
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    daemon.kill();
    stop.store(true, Ordering::Relaxed);
    let mut received = clients.await.unwrap();
    assert!(received.len() >= ANSWERS_BEFORE_KILL);

    // Restarted (the journal is replayed): one more answer, and kill -9
    // right after its last byte.
    let daemon = Process::start(&config_path, port).await;
    let http = reqwest::Client::new();
    let last = one_request(&http, &daemon.url, 1)
        .await
        .expect("an answer after the restart");
    received.push(last);
    daemon.kill();

    let ledger = Ledger::open(url, &LedgerConfig::default())
        .await
        .expect("reopen");
    let calls = ledger
        .calls(&CallFilter {
            since_ms: 0,
            until_ms: i64::MAX,
            client: None,
        })
        .await
        .unwrap();
    ledger.close().await;

    let mut rows: HashMap<(String, &'static str), usize> = HashMap::new();
    for call in &calls {
        *rows
            .entry((call.request_id.clone(), call.role.as_str()))
            .or_default() += 1;
    }
    let twice: Vec<_> = rows.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "calls on record twice: {twice:?}");
    let on_record: HashSet<&str> = calls.iter().map(|c| c.request_id.as_str()).collect();
    let lost: Vec<_> = received
        .iter()
        .filter(|id| !on_record.contains(id.as_str()))
        .collect();
    assert!(
        lost.is_empty(),
        "{} of {} full answers are not on record: {lost:?}",
        lost.len(),
        received.len()
    );

    // The report counts exactly what the ledger holds.
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_pointsman"))
        .args([
            "report", "--since", "1h", "--format", "json", "--ledger", url,
        ])
        .output()
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    let report: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(
        report["total"]["requests"].as_u64(),
        Some(on_record.len() as u64),
        "{report}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_kill_9_under_load_loses_no_full_answer_and_counts_none_twice() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite:{}", dir.path().join("ledger.db").display());
    // The longest apply delay: every record before the kill is still only
    // in the journal, so the restart's replay is what keeps it.
    kill_9_under_load(&url, "apply_delay_ms = 10000\n").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_kill_9_under_load_loses_no_full_answer_and_counts_none_twice() {
    let pg = Postgres::start();
    kill_9_under_load(&pg.url(), "").await;
}

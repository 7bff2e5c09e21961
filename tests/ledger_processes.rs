//! The ledger across daemon processes (`pointsman serve`, killed with
//! `kill -9`), on SQLite (journaled, the default `sync = "normal"`) and on
//! a real PostgreSQL:
//! - under steady load, every answer a client received in full is in the
//!   ledger after a restart, no call is on record twice, and `pointsman
//!   report` counts what the ledger holds;
//! - two replicas on one PostgreSQL, loaded against one client budget,
//!   spend no more than its cap together, and each answers for the other's
//!   tasks.

mod common;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use pointsman::config::ledger::LedgerConfig;
use pointsman::ledger::store::{CallFilter, Ledger};
use pointsman_test_support::postgres::Postgres;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use common::{Process, free_port, wait_for_task_at};

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
    let report = common::report_json(url, &["--since", "1h"]);
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

/// Alice's daily cap in the replica test: about 27 answers on the premium
/// model at 40 output tokens.
const ALICE_DAILY_USD: f64 = 0.03;

fn sha256(key: &str) -> String {
    hex::encode(Sha256::digest(key.as_bytes()))
}

/// One replica's config: the demo, alice (capped) and bob (not), on `url`.
fn replica_config(dir: &std::path::Path, url: &str, replica: &str) -> std::path::PathBuf {
    let text = pointsman::config::DEMO_TOML
        .replace("latency_ms = 20", "latency_ms = 0")
        .replace("tokens_per_second = 400", "tokens_per_second = 0");
    let path = dir.join(format!("{replica}.toml"));
    std::fs::write(
        &path,
        format!(
            "{text}\n[[clients]]\nname = \"alice\"\nkey_sha256 = \"{}\"\n\
             [[clients]]\nname = \"bob\"\nkey_sha256 = \"{}\"\n\
             [[budgets]]\nclient = \"alice\"\ndaily_usd = {ALICE_DAILY_USD}\n\
             [ledger]\nurl = \"{url}\"\nreplica = \"{replica}\"\n",
            sha256("alice-key"),
            sha256("bob-key"),
        ),
    )
    .unwrap();
    path
}

/// Alice asks the premium model until `refusals` answers in a row are 429
/// (holds of calls in flight can refuse a request that later ones fit);
/// returns the ids of her answers.
async fn spend_until_refused(url: String, refusals: usize) -> Vec<String> {
    let http = reqwest::Client::new();
    let (mut ids, mut refused_in_a_row) = (Vec::new(), 0);
    for n in 0..2_000 {
        let response = http
            .post(format!("{url}/v1/chat/completions"))
            .bearer_auth("alice-key")
            .json(&json!({"model": "claude-opus-4.5", "max_tokens": 40,
                          "messages": [{"role": "user", "content": format!("Explain step {n}")}]}))
            .send()
            .await
            .unwrap();
        match response.status().as_u16() {
            200 => {
                refused_in_a_row = 0;
                let id = response.headers()["x-pointsman-request-id"]
                    .to_str()
                    .unwrap()
                    .to_string();
                response.bytes().await.unwrap();
                ids.push(id);
            }
            429 => {
                let body: Value = response.json().await.unwrap();
                assert_eq!(body["error"]["code"], "budget_exceeded", "{body}");
                refused_in_a_row += 1;
                if refused_in_a_row == refusals {
                    return ids;
                }
            }
            status => panic!("{status}: {}", response.text().await.unwrap()),
        }
    }
    panic!("alice was never refused");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_on_one_postgres_share_a_budget_its_report_and_tasks() {
    let pg = Postgres::start();
    let dir = tempfile::tempdir().unwrap();
    let a = Process::start(&replica_config(dir.path(), &pg.url(), "a"), free_port()).await;
    let b = Process::start(&replica_config(dir.path(), &pg.url(), "b"), free_port()).await;

    // Four clients on each replica, all on alice's one budget.
    let clients: Vec<_> = (0..8)
        .map(|i| {
            let url = if i % 2 == 0 { &a.url } else { &b.url };
            tokio::spawn(spend_until_refused(url.clone(), 3))
        })
        .collect();
    let mut answered = Vec::new();
    let mut from = [0, 0];
    for (i, client) in clients.into_iter().enumerate() {
        let ids = client.await.unwrap();
        from[i % 2] += ids.len();
        answered.extend(ids);
    }
    assert!(
        from[0] > 0 && from[1] > 0,
        "both replicas answered: {from:?}"
    );

    // A task submitted to a is answered by b, from the store.
    let id = common::submit_task(&a.url, Some("bob-key"), "Fix the typo in main.rs").await;
    let on_a = wait_for_task_at(&a.url, Some("bob-key"), &id).await;
    let on_b = wait_for_task_at(&b.url, Some("bob-key"), &id).await;
    assert_eq!(on_b["status"], on_a["status"], "{on_a} / {on_b}");
    assert_eq!(on_b["spent_usd"], on_a["spent_usd"], "{on_a} / {on_b}");
    let status = reqwest::Client::new()
        .get(format!("{}/v1/tasks/{id}", b.url))
        .bearer_auth("alice-key")
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(status, 404, "another client's task");
    drop((a, b));

    let ledger = Ledger::open(&pg.url(), &LedgerConfig::default())
        .await
        .unwrap();
    let calls = ledger
        .calls(&CallFilter {
            since_ms: 0,
            until_ms: i64::MAX,
            client: Some("client:alice".into()),
        })
        .await
        .unwrap();
    ledger.close().await;
    let spent: i64 = calls.iter().map(|c| c.cost_nanos).sum();
    let cap = (ALICE_DAILY_USD * 1e9) as i64;
    assert!(
        spent <= cap,
        "the replicas spent {spent} nano-USD of a {cap} cap"
    );
    assert!(
        spent > cap / 2,
        "the cap was hardly reached: {spent} of {cap}"
    );
    let on_record: HashSet<&str> = calls.iter().map(|c| c.request_id.as_str()).collect();
    assert!(
        answered.iter().all(|id| on_record.contains(id.as_str())),
        "an answer is missing from the ledger"
    );

    // One report over both replicas.
    let report = common::report_json(&pg.url(), &["--since", "1h", "--by", "client"]);
    let alice = report["rows"]
        .as_array()
        .and_then(|rows| rows.iter().find(|r| r["key"] == "client:alice"))
        .unwrap_or_else(|| panic!("no alice in {report}"));
    assert_eq!(
        alice["requests"].as_u64(),
        Some(answered.len() as u64),
        "{report}"
    );
    assert!(
        (alice["spent_usd"].as_f64().unwrap() - spent as f64 / 1e9).abs() < 1e-6,
        "{report}"
    );
}

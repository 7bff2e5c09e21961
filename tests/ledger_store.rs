//! The ledger's store on SQLite and on a real PostgreSQL server: records
//! round-trip, group commit under concurrency, `kill -9` loses nothing
//! acknowledged, budgets hold across two ledgers, migrations and the
//! errors that name a bad store.

use std::collections::{BTreeMap, HashSet};
use std::io::{BufRead, BufReader, Write as _};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use pointsman::config::ledger::LedgerConfig;
use pointsman::ledger::record::{
    Api, AttemptRecord, CallRecord, CallRole, CallStatus, FeedbackRecord, FeedbackTarget,
    TaskRecord, TaskStatus,
};
use pointsman::ledger::store::{
    BudgetScope, CallFilter, Health, Ledger, LedgerError, LedgerOptions, ReserveError, Window,
    utc_midnight_ms,
};
use pointsman_test_support::postgres::Postgres;

const CHILD: &str = "LEDGER_STORE_CHILD";

fn config() -> LedgerConfig {
    LedgerConfig::default()
}

fn sqlite_url(dir: &tempfile::TempDir) -> String {
    format!("sqlite:{}", dir.path().join("ledger.db").display())
}

fn call(id: &str, client: &str, at_ms: i64, cost: i64) -> CallRecord {
    CallRecord {
        request_id: id.to_string(),
        task_id: None,
        at_ms,
        client: client.to_string(),
        labels: BTreeMap::new(),
        session: None,
        api: Api::ChatCompletions,
        role: CallRole::Answer,
        stream: false,
        requested_model: "auto".into(),
        router: None,
        planner: None,
        tier: None,
        reasoning: None,
        served_model: None,
        provider: None,
        endpoint: None,
        attempts: Vec::new(),
        escalated: false,
        input_tokens: 10,
        output_tokens: 5,
        cache_read_tokens: 0,
        cache_write_tokens: 0,
        cost_nanos: cost,
        baseline_nanos: cost * 10,
        latency_ms: 12,
        ttft_ms: None,
        status: CallStatus::Ok,
        error_class: None,
        arm: None,
        shadow: None,
        route_labels: BTreeMap::new(),
        policy_view: None,
    }
}

/// A call with every field set to something distinct.
fn full_call(at_ms: i64) -> CallRecord {
    CallRecord {
        request_id: "pm-full".into(),
        task_id: Some("task-1".into()),
        at_ms,
        client: "alice".into(),
        labels: BTreeMap::from([
            ("team".into(), "platform".into()),
            ("env".into(), "ci ✓".into()),
        ]),
        session: Some("sess-9".into()),
        api: Api::Tasks,
        role: CallRole::Executor,
        stream: true,
        requested_model: "claude-opus-4-5".into(),
        router: Some("seed-matrix@abc123".into()),
        planner: Some("seed-planner@def456".into()),
        tier: Some("plan-execute".into()),
        reasoning: Some("small edit \"quoted\"".into()),
        served_model: Some("glm-4.7".into()),
        provider: Some("zai".into()),
        endpoint: Some("glm-4.7-upstream".into()),
        attempts: vec![
            AttemptRecord {
                model: "glm-4.7".into(),
                provider: "zai".into(),
                outcome: "timeout".into(),
            },
            AttemptRecord {
                model: "glm-4.7".into(),
                provider: "zai-b".into(),
                outcome: "ok".into(),
            },
        ],
        escalated: true,
        input_tokens: 15_000,
        output_tokens: 5_000,
        cache_read_tokens: 2_000,
        cache_write_tokens: 1_000,
        cost_nanos: 25_000_000,
        baseline_nanos: 1_000_000_000,
        latency_ms: 1_234,
        ttft_ms: Some(321),
        status: CallStatus::Broken,
        error_class: Some("client-gone".into()),
        arm: Some("candidate".into()),
        shadow: Some(r#"{"tier":"direct"}"#.into()),
        route_labels: BTreeMap::from([("route".into(), "cheap".into())]),
        policy_view: Some(r#"{"messages":3}"#.into()),
    }
}

fn everything() -> CallFilter {
    CallFilter {
        since_ms: i64::MIN,
        until_ms: i64::MAX,
        client: None,
    }
}

async fn round_trip(url: &str) {
    let ledger = Ledger::open(url, &config()).await.expect("open");
    let now = pointsman::ledger::store::system_now_ms();
    let full = full_call(now);
    ledger.record(full.clone(), None).await.expect("record");
    ledger
        .record(call("pm-2", "bob", now + 1, 7), None)
        .await
        .expect("record");
    let calls = ledger.calls(&everything()).await.expect("calls");
    assert_eq!(calls, vec![full.clone(), call("pm-2", "bob", now + 1, 7)]);
    // The window and the client filter.
    let bobs = ledger
        .calls(&CallFilter {
            since_ms: now,
            until_ms: now + 2,
            client: Some("bob".into()),
        })
        .await
        .expect("calls");
    assert_eq!(bobs.len(), 1);
    assert!(
        ledger
            .calls(&CallFilter {
                since_ms: now + 2,
                until_ms: now + 10,
                client: None
            })
            .await
            .expect("calls")
            .is_empty()
    );

    // Tasks: upsert by id, read back, interrupted on restart.
    let mut task = TaskRecord {
        id: "task-1".into(),
        client: "alice".into(),
        status: TaskStatus::Running,
        created_ms: now,
        updated_ms: now,
        replica: "host-a:8080".into(),
        body: serde_json::json!({"status": "running", "plan": ["a", "b"], "notes": null}),
    };
    ledger.put_task(task.clone()).await.expect("put task");
    assert_eq!(
        ledger.task("task-1").await.expect("task"),
        Some(task.clone())
    );
    task.updated_ms = now + 5;
    task.body["plan"] = serde_json::json!(["a", "b", "c"]);
    ledger.put_task(task.clone()).await.expect("upsert task");
    assert_eq!(
        ledger.task("task-1").await.expect("task"),
        Some(task.clone())
    );
    assert_eq!(ledger.task("nope").await.expect("task"), None);
    let other = TaskRecord {
        id: "task-2".into(),
        replica: "host-b:8080".into(),
        ..task.clone()
    };
    ledger.put_task(other).await.expect("put task");
    // Only host-a's task: host-b's row is fresh.
    let n = ledger
        .interrupt_tasks("host-a:8080", Duration::from_secs(3600))
        .await
        .expect("interrupt");
    assert_eq!(n, 1);
    let interrupted = ledger.task("task-1").await.expect("task").expect("there");
    assert_eq!(interrupted.status, TaskStatus::Interrupted);
    assert_eq!(interrupted.body["status"], "interrupted");
    assert_eq!(interrupted.body["plan"], serde_json::json!(["a", "b", "c"]));
    assert_eq!(
        ledger.task("task-2").await.unwrap().unwrap().status,
        TaskStatus::Running
    );

    // Who made a request or a task.
    assert_eq!(
        ledger.request_client("pm-2").await.unwrap().as_deref(),
        Some("bob")
    );
    assert_eq!(
        ledger.request_client("task-2").await.unwrap().as_deref(),
        Some("alice")
    );
    assert_eq!(ledger.request_client("pm-none").await.unwrap(), None);

    // Many feedback entries per target.
    let entries = [
        FeedbackRecord {
            target: FeedbackTarget::Request("pm-full".into()),
            client: "alice".into(),
            score: 0.25,
            labels: BTreeMap::from([("tests_passed".into(), "false".into())]),
            at_ms: now,
        },
        FeedbackRecord {
            target: FeedbackTarget::Request("pm-full".into()),
            client: "alice".into(),
            score: 1.0,
            labels: BTreeMap::new(),
            at_ms: now + 1,
        },
        FeedbackRecord {
            target: FeedbackTarget::Session("sess-9".into()),
            client: "bob".into(),
            score: 0.5,
            labels: BTreeMap::new(),
            at_ms: now + 2,
        },
    ];
    for e in &entries {
        ledger.add_feedback(e.clone()).await.expect("feedback");
    }
    assert_eq!(
        ledger.feedback(&everything()).await.unwrap(),
        entries.to_vec()
    );
    let bobs = ledger
        .feedback(&CallFilter {
            client: Some("bob".into()),
            ..everything()
        })
        .await
        .unwrap();
    assert_eq!(bobs, vec![entries[2].clone()]);
    assert_eq!(ledger.health(), Health::Ok);
    ledger.close().await;
    assert!(matches!(
        ledger.record(call("late", "a", now, 1), None).await,
        Err(LedgerError::Closed)
    ));
}

#[tokio::test]
async fn sqlite_records_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    round_trip(&sqlite_url(&dir)).await;
}

#[tokio::test]
async fn postgres_records_round_trip() {
    let pg = Postgres::start();
    round_trip(&pg.url()).await;
}

async fn group_commit(url: &str) {
    let ledger = Ledger::open(url, &config()).await.expect("open");
    let now = pointsman::ledger::store::system_now_ms();
    let mut writers = Vec::new();
    for w in 0..64 {
        let ledger = ledger.clone();
        writers.push(tokio::spawn(async move {
            for i in 0..25 {
                ledger
                    .record(
                        call(&format!("w{w}-{i}"), &format!("c{}", w % 4), now + i, 1),
                        None,
                    )
                    .await
                    .expect("record");
            }
        }));
    }
    for w in writers {
        w.await.unwrap();
    }
    let calls = ledger.calls(&everything()).await.unwrap();
    assert_eq!(calls.len(), 64 * 25);
    let ids: HashSet<_> = calls.iter().map(|c| c.request_id.clone()).collect();
    assert_eq!(ids.len(), 64 * 25);
    let c0 = ledger
        .calls(&CallFilter {
            client: Some("c0".into()),
            ..everything()
        })
        .await
        .unwrap();
    assert_eq!(c0.len(), 16 * 25);
    ledger.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_group_commit_under_64_writers() {
    let dir = tempfile::tempdir().unwrap();
    group_commit(&sqlite_url(&dir)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_group_commit_under_64_writers() {
    let pg = Postgres::start();
    group_commit(&pg.url()).await;
}

/// The child side of the crash and read-only tests: does nothing unless
/// the parent set `LEDGER_STORE_CHILD`.
#[test]
fn child_process() {
    let Ok(mode) = std::env::var(CHILD) else {
        return;
    };
    let url = std::env::var("LEDGER_STORE_URL").expect("url");
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async move {
        match mode.as_str() {
            "open" => match Ledger::open(&url, &config()).await {
                Ok(_) => println!("OPEN-OK"),
                Err(e) => println!("OPEN-ERR {e}"),
            },
            "record" => {
                let ledger = Ledger::open(&url, &config()).await.expect("open");
                let mut tasks = Vec::new();
                for t in 0..8 {
                    let ledger = ledger.clone();
                    tasks.push(tokio::spawn(async move {
                        for i in 0.. {
                            let id = format!("k{t}-{i}");
                            ledger
                                .record(
                                    call(
                                        &id,
                                        "crash",
                                        pointsman::ledger::store::system_now_ms(),
                                        1,
                                    ),
                                    None,
                                )
                                .await
                                .expect("record");
                            let mut out = std::io::stdout().lock();
                            let _ = writeln!(out, "ACK {id}");
                            let _ = out.flush();
                        }
                    }));
                }
                for t in tasks {
                    let _ = t.await;
                }
            }
            other => panic!("unknown child mode {other}"),
        }
    });
}

fn child(mode: &str, url: &str, as_nobody: bool) -> Command {
    let exe = std::env::current_exe().unwrap();
    let mut cmd = if as_nobody {
        let id = |flag: &str| {
            let out = Command::new("id").args([flag, "nobody"]).output().unwrap();
            String::from_utf8_lossy(&out.stdout).trim().to_string()
        };
        let mut cmd = Command::new("setpriv");
        cmd.arg(format!("--reuid={}", id("-u")))
            .arg(format!("--regid={}", id("-g")))
            .args(["--clear-groups", "--"])
            .arg(exe);
        cmd
    } else {
        Command::new(exe)
    };
    cmd.args([
        "--exact",
        "child_process",
        "--nocapture",
        "--test-threads=1",
    ])
    .env(CHILD, mode)
    .env("LEDGER_STORE_URL", url);
    cmd
}

/// Starts a child recording as fast as it can, `kill -9`s it after 300
/// acknowledgements, reopens the store: every acknowledged id is there.
async fn kill_9_loses_nothing_acknowledged(url: &str) {
    let mut proc = child("record", url, false)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("child");
    let stdout = proc.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut acked = Vec::new();
        let mut lines = BufReader::new(stdout).lines();
        let mut killer = Some(proc);
        while let Some(Ok(line)) = lines.next() {
            // libtest may print its "test child_process ..." first.
            if let Some(id) = line.find("ACK ").map(|i| &line[i + 4..]) {
                acked.push(id.to_string());
                if acked.len() == 300
                    && let Some(mut p) = killer.take()
                {
                    p.kill().expect("kill -9");
                    p.wait().unwrap();
                }
            }
        }
        if let Some(mut p) = killer {
            let _ = p.kill();
            let status = p.wait().unwrap();
            panic!(
                "the child stopped on its own ({status}) after {} records",
                acked.len()
            );
        }
        acked
    });
    let acked = tokio::task::spawn_blocking(move || reader.join().unwrap())
        .await
        .unwrap();
    assert!(acked.len() >= 300);
    let mut ledger = Ledger::open(url, &config())
        .await
        .expect("reopen after kill -9");
    let stored: HashSet<String> = ledger
        .calls(&everything())
        .await
        .unwrap()
        .into_iter()
        .map(|c| c.request_id)
        .collect();
    let missing: Vec<_> = acked.iter().filter(|id| !stored.contains(*id)).collect();
    assert!(missing.is_empty(), "acknowledged but lost: {missing:?}");
    // Nothing is counted twice, then or after another open (the replay
    // of SQLite's record journal applies each record once).
    for _ in 0..2 {
        let calls = ledger.calls(&everything()).await.unwrap();
        assert_eq!(calls.len(), stored.len(), "a record stored twice");
        ledger.close().await;
        ledger = Ledger::open(url, &config()).await.expect("reopen again");
    }
    ledger.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_kill_9_loses_no_acknowledged_record() {
    let dir = tempfile::tempdir().unwrap();
    kill_9_loses_nothing_acknowledged(&sqlite_url(&dir)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_kill_9_loses_no_acknowledged_record() {
    let pg = Postgres::start();
    kill_9_loses_nothing_acknowledged(&pg.url()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_ledgers_on_one_postgres_never_pass_a_cap() {
    let pg = Postgres::start();
    let url = pg.url();
    let a = Ledger::open(&url, &config()).await.expect("open a");
    let b = Ledger::open(&url, &config()).await.expect("open b");
    const CAP: i64 = 2_000_000;
    const WORST: i64 = 10_000;
    let scopes = vec![
        BudgetScope {
            key: "client:team".into(),
            daily_cap: Some(CAP),
            monthly_cap: None,
        },
        BudgetScope {
            key: "label:team=platform".into(),
            daily_cap: None,
            monthly_cap: Some(CAP * 10),
        },
    ];
    let mut loops = Vec::new();
    for l in 0..32 {
        let ledger = if l % 2 == 0 { a.clone() } else { b.clone() };
        let scopes = scopes.clone();
        loops.push(tokio::spawn(async move {
            let mut settled = 0;
            for i in 0.. {
                match ledger.reserve(&scopes, WORST).await {
                    Ok(r) => {
                        // The real cost: at most the worst case.
                        let cost = WORST - (i * 37 + l * 11) % 4_000;
                        let now = pointsman::ledger::store::system_now_ms();
                        ledger
                            .record(call(&format!("b{l}-{i}"), "team", now, cost), Some(r))
                            .await
                            .expect("record");
                        settled += cost;
                    }
                    Err(ReserveError::Refused(refusal)) => {
                        assert_eq!(refusal.scope, "client:team");
                        assert_eq!(refusal.window, Window::Day);
                        return settled;
                    }
                    Err(e) => panic!("reserve failed: {e}"),
                }
            }
            unreachable!()
        }));
    }
    let mut total = 0;
    for l in loops {
        total += l.await.unwrap();
    }
    let stored: i64 = a
        .calls(&everything())
        .await
        .unwrap()
        .iter()
        .map(|c| c.cost_nanos)
        .sum();
    assert_eq!(stored, total);
    assert!(total <= CAP, "settled {total} past the cap {CAP}");
    // The loops stop only when a worst case no longer fits.
    assert!(total > CAP - WORST, "settled only {total} of {CAP}");
    let spend = b.spent("client:team").await.unwrap();
    assert_eq!((spend.day_spent, spend.reserved), (total, 0));
    assert_eq!(
        b.spent("label:team=platform").await.unwrap().month_spent,
        total
    );
    a.close().await;
    b.close().await;
}

async fn budgets_expire_and_reset(url: &str) {
    let clock = Arc::new(AtomicI64::new(
        utc_midnight_ms(2026, 12, 30) + 23 * 3_600_000,
    ));
    let read = clock.clone();
    let options = LedgerOptions {
        hold: Duration::from_secs(60),
        clock: Arc::new(move || read.load(Ordering::SeqCst)),
        prune_every: None,
    };
    let ledger = Ledger::open_with(url, &config(), options)
        .await
        .expect("open");
    let now = || clock.load(Ordering::SeqCst);
    let scopes = [BudgetScope {
        key: "client:c".into(),
        daily_cap: Some(100),
        monthly_cap: Some(150),
    }];
    let refused = |r: Result<_, ReserveError>| match r {
        Err(ReserveError::Refused(refusal)) => refusal,
        other => panic!("expected a refusal, got {other:?}"),
    };

    let held = ledger.reserve(&scopes, 100).await.expect("reserve");
    let r = refused(ledger.reserve(&scopes, 1).await);
    assert_eq!(
        (r.window, r.cap, r.spent, r.reserved),
        (Window::Day, 100, 0, 100)
    );
    assert_eq!(r.resets_at_ms, utc_midnight_ms(2026, 12, 31));
    assert_eq!(ledger.spent("client:c").await.unwrap().reserved, 100);
    // A released hold stops counting at once.
    ledger.release(held).await;
    let held = ledger
        .reserve(&scopes, 100)
        .await
        .expect("reserve after release");
    drop(held); // Never settled nor released: as if its daemon crashed.

    // An expired hold stops counting.
    clock.fetch_add(61_000, Ordering::SeqCst);
    let r2 = ledger
        .reserve(&scopes, 100)
        .await
        .expect("the old hold expired");
    ledger
        .record(call("e1", "c", now(), 80), Some(r2))
        .await
        .unwrap();
    let spend = ledger.spent("client:c").await.unwrap();
    assert_eq!(
        (spend.day_spent, spend.month_spent, spend.reserved),
        (80, 80, 0)
    );
    assert_eq!(
        refused(ledger.reserve(&scopes, 30).await).window,
        Window::Day
    );

    // The next UTC day: the daily cap resets, the month's does not.
    clock.store(utc_midnight_ms(2026, 12, 31) + 1_000, Ordering::SeqCst);
    let r3 = ledger.reserve(&scopes, 60).await.expect("a new day");
    ledger
        .record(call("e2", "c", now(), 60), Some(r3))
        .await
        .unwrap();
    let r = refused(ledger.reserve(&scopes, 20).await);
    // A journaled record (SQLite) may still be on its way to the table:
    // until it lands, its hold counts instead of its cost.
    assert_eq!((r.window, r.spent + r.reserved), (Window::Month, 140));
    assert_eq!(r.resets_at_ms, utc_midnight_ms(2027, 1, 1));

    // The next month: both reset.
    clock.store(utc_midnight_ms(2027, 1, 1) + 1_000, Ordering::SeqCst);
    let spend = ledger.spent("client:c").await.unwrap();
    assert_eq!((spend.day_spent, spend.month_spent), (0, 0));
    ledger.reserve(&scopes, 100).await.expect("a new month");
    ledger.close().await;
}

#[tokio::test]
async fn sqlite_budgets_expire_and_reset() {
    let dir = tempfile::tempdir().unwrap();
    budgets_expire_and_reset(&sqlite_url(&dir)).await;
}

#[tokio::test]
async fn postgres_budgets_expire_and_reset() {
    let pg = Postgres::start();
    budgets_expire_and_reset(&pg.url()).await;
}

#[tokio::test]
async fn sqlite_migrations_apply_once_and_refuse_a_newer_schema() {
    let dir = tempfile::tempdir().unwrap();
    let url = sqlite_url(&dir);
    let ledger = Ledger::open(&url, &config()).await.expect("fresh");
    ledger
        .record(
            call("m1", "a", pointsman::ledger::store::system_now_ms(), 1),
            None,
        )
        .await
        .unwrap();
    ledger.close().await;
    let ledger = Ledger::open(&url, &config()).await.expect("reopen");
    assert_eq!(ledger.calls(&everything()).await.unwrap().len(), 1);
    ledger.close().await;
    let conn = rusqlite::Connection::open(dir.path().join("ledger.db")).unwrap();
    conn.execute(
        "INSERT INTO ledger_schema (version, applied_ms) VALUES (99, 0)",
        [],
    )
    .unwrap();
    drop(conn);
    let err = Ledger::open(&url, &config()).await.unwrap_err();
    assert!(
        matches!(
            err,
            LedgerError::SchemaTooNew {
                found: 99,
                supported: 3
            }
        ),
        "{err}"
    );
    let message = err.to_string();
    assert!(
        message.contains("version 99") && message.contains("version 3"),
        "{message}"
    );
}

#[tokio::test]
async fn postgres_migrations_apply_once_and_refuse_a_newer_schema() {
    let pg = Postgres::start();
    let url = pg.database("ledger");
    let ledger = Ledger::open(&url, &config()).await.expect("fresh");
    ledger
        .record(
            call("m1", "a", pointsman::ledger::store::system_now_ms(), 1),
            None,
        )
        .await
        .unwrap();
    ledger.close().await;
    let ledger = Ledger::open(&url, &config()).await.expect("reopen");
    assert_eq!(ledger.calls(&everything()).await.unwrap().len(), 1);
    ledger.close().await;
    let (client, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    client
        .execute(
            "INSERT INTO ledger_schema (version, applied_ms) VALUES (99, 0)",
            &[],
        )
        .await
        .unwrap();
    let err = Ledger::open(&url, &config()).await.unwrap_err();
    assert!(
        matches!(
            err,
            LedgerError::SchemaTooNew {
                found: 99,
                supported: 1
            }
        ),
        "{err}"
    );
}

#[tokio::test]
async fn a_corrupt_file_is_named_and_left_alone() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ledger.db");
    let junk = b"this is not a database, it is a shopping list\n".repeat(200);
    std::fs::write(&path, &junk).unwrap();
    let err = Ledger::open(&sqlite_url(&dir), &config())
        .await
        .unwrap_err();
    let message = err.to_string();
    assert!(matches!(err, LedgerError::NotSqlite { .. }), "{message}");
    assert!(message.contains("is not a SQLite database"), "{message}");
    assert!(message.contains(&path.display().to_string()), "{message}");
    assert_eq!(std::fs::read(&path).unwrap(), junk, "the file was changed");
}

fn running_as_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// Opens `url` in a child process, as `nobody` when we are root (root
/// writes read-only files); returns what it printed.
fn open_in_child(url: &str) -> String {
    let out = child("open", url, running_as_root())
        .output()
        .expect("child");
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    stdout
        .lines()
        .find_map(|l| l.find("OPEN-").map(|i| l[i..].to_string()))
        .unwrap_or_else(|| {
            panic!(
                "the child printed no verdict: {stdout} {}",
                String::from_utf8_lossy(&out.stderr)
            )
        })
        .to_string()
}

#[test]
fn a_read_only_file_or_folder_is_named() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let url = sqlite_url(&dir);
    rt.block_on(async {
        let ledger = Ledger::open(&url, &config()).await.unwrap();
        ledger
            .record(
                call("ro", "a", pointsman::ledger::store::system_now_ms(), 1),
                None,
            )
            .await
            .unwrap();
        ledger.close().await;
    });
    let path = dir.path().join("ledger.db");
    // A writable folder, a read-only file.
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o444)).unwrap();
    let verdict = open_in_child(&url);
    assert!(verdict.starts_with("OPEN-ERR"), "{verdict}");
    assert!(
        verdict.contains("is read-only") && verdict.contains(&path.display().to_string()),
        "{verdict}"
    );
    // A read-only folder, no file yet.
    let folder = dir.path().join("ro");
    std::fs::create_dir(&folder).unwrap();
    std::fs::set_permissions(&folder, std::fs::Permissions::from_mode(0o555)).unwrap();
    let verdict = open_in_child(&format!("sqlite:{}", folder.join("ledger.db").display()));
    assert!(verdict.starts_with("OPEN-ERR"), "{verdict}");
    assert!(
        verdict.contains("is read-only") && verdict.contains("folder"),
        "{verdict}"
    );
    // Nothing lost: the record is still there.
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    rt.block_on(async {
        let ledger = Ledger::open(&url, &config()).await.unwrap();
        assert_eq!(ledger.calls(&everything()).await.unwrap().len(), 1);
        ledger.close().await;
    });
}

#[tokio::test]
async fn an_unreachable_postgres_is_named_without_its_password() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("postgres://alice:hunter2@127.0.0.1:{port}/ledger");
    let err = Ledger::open(&url, &config()).await.unwrap_err();
    let message = err.to_string();
    assert!(matches!(err, LedgerError::Unreachable { .. }), "{message}");
    assert!(message.contains(&format!("127.0.0.1:{port}")), "{message}");
    assert!(message.contains("alice:***@"), "{message}");
    assert!(!message.contains("hunter2"), "{message}");
}

#[tokio::test]
async fn a_postgres_that_goes_away_fails_writes_and_health() {
    let pg = Postgres::start();
    let ledger = Ledger::open(&pg.url(), &config()).await.expect("open");
    ledger
        .record(
            call("up", "a", pointsman::ledger::store::system_now_ms(), 1),
            None,
        )
        .await
        .expect("record");
    assert_eq!(ledger.health(), Health::Ok);
    drop(pg);
    let err = ledger
        .record(
            call("down", "a", pointsman::ledger::store::system_now_ms(), 1),
            None,
        )
        .await
        .unwrap_err();
    match ledger.health() {
        Health::Unavailable { reason, since_ms } => {
            assert!(since_ms > 0);
            assert!(reason.contains("127.0.0.1"), "{reason}");
        }
        other => panic!("health says {other:?} after {err}"),
    }
    ledger.close().await;
}

#[tokio::test]
async fn a_full_queue_fails_fast_and_says_backlogged() {
    let dir = tempfile::tempdir().unwrap();
    let config = LedgerConfig {
        max_backlog: 1,
        ..LedgerConfig::default()
    };
    let ledger = Ledger::open(&sqlite_url(&dir), &config)
        .await
        .expect("open");
    let now = pointsman::ledger::store::system_now_ms();
    // Queue far more than the bound without waiting: some are refused.
    let pending: Vec<_> = (0..200)
        .map(|i| {
            let ledger = ledger.clone();
            tokio::spawn(async move {
                ledger
                    .record(call(&format!("q{i}"), "a", now + i, 1), None)
                    .await
            })
        })
        .collect();
    let mut refused = 0;
    for p in pending {
        if let Err(e) = p.await.unwrap() {
            assert!(matches!(e, LedgerError::Backlogged { .. }), "{e}");
            refused += 1;
        }
    }
    assert!(refused > 0, "a queue bound of 1 refused nothing");
    assert!(matches!(
        ledger.health(),
        Health::Ok | Health::Backlogged { .. }
    ));
    let stored = ledger.calls(&everything()).await.unwrap().len();
    assert_eq!(
        stored + refused,
        200,
        "every record is either committed or refused"
    );
    ledger.close().await;
}

/// SQLite's record journal with a long apply delay: a record is read back
/// (and its cost counted against its budget) at once, because reads wait
/// for the journal; a second ledger on the same file, which cannot own the
/// journal, commits straight to the file; after both close, each record
/// is there once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_journaled_records_are_read_at_once_and_stored_once() {
    let dir = tempfile::tempdir().unwrap();
    let url = sqlite_url(&dir);
    let slow = LedgerConfig {
        apply_delay_ms: 10_000,
        ..config()
    };
    let first = Ledger::open(&url, &slow).await.unwrap();
    let scope = BudgetScope {
        key: "client:a".into(),
        daily_cap: Some(1_000),
        monthly_cap: None,
    };
    let now = pointsman::ledger::store::system_now_ms();
    let held = first
        .reserve(std::slice::from_ref(&scope), 100)
        .await
        .unwrap();
    first
        .record(call("j1", "a", now, 7), Some(held))
        .await
        .unwrap();
    let ids = |calls: Vec<CallRecord>| -> Vec<String> {
        calls.into_iter().map(|c| c.request_id).collect()
    };
    assert_eq!(ids(first.calls(&everything()).await.unwrap()), ["j1"]);
    let spend = first.spent("client:a").await.unwrap();
    assert_eq!((spend.day_spent, spend.reserved), (7, 0));

    let second = Ledger::open(&url, &slow).await.unwrap();
    second
        .record(call("j2", "a", now + 1, 1), None)
        .await
        .unwrap();
    first
        .record(call("j3", "a", now + 2, 1), None)
        .await
        .unwrap();
    // The second ledger committed j2 itself; j3 waits in the first's
    // journal, which the first's own read applies.
    assert_eq!(
        ids(second.calls(&everything()).await.unwrap()),
        ["j1", "j2"]
    );
    assert_eq!(
        ids(first.calls(&everything()).await.unwrap()),
        ["j1", "j2", "j3"]
    );
    first
        .record(call("j4", "a", now + 3, 1), None)
        .await
        .unwrap();
    first.close().await;
    second.close().await;
    let reopened = Ledger::open(&url, &config()).await.unwrap();
    assert_eq!(
        ids(reopened.calls(&everything()).await.unwrap()),
        ["j1", "j2", "j3", "j4"]
    );
    reopened.close().await;
    assert_eq!(
        std::fs::metadata(dir.path().join("ledger.db-records"))
            .unwrap()
            .len(),
        0,
        "a clean close leaves the journal empty"
    );
}

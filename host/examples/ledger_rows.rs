//! What a SQLite call row costs the ledger's writer, by schema: today's
//! (33 columns, JSON for attempts and labels) against a blob row (the six
//! columns reports and guards filter on, plus the record as JSON, as the
//! record journal already holds it). Rows are inserted in transactions of
//! 64, as a group commit writes them, into a WAL database with
//! `synchronous = NORMAL`, with the indexes the ledger keeps (`calls_at`,
//! `calls_client_at`, `calls_request`; `NO_INDEXES=1` leaves them out).
//! Prints CPU µs per row, bytes written per row (WAL frames and their
//! checkpoints), and what the record's JSON alone costs.
//!
//!     cargo run --release -p pointsman --example ledger_rows -- 200000
//!
//! A measurement for #17's open decision (BENCHMARKS.md, "Ledger rows by
//! schema"), not a schema the ledger uses.

mod common;

use std::collections::BTreeMap;

use rusqlite::{Connection, params};

const COLUMNS: &str = "CREATE TABLE calls (id INTEGER PRIMARY KEY, request_id TEXT NOT NULL, \
    task_id TEXT, at_ms INTEGER NOT NULL, client TEXT NOT NULL, labels TEXT NOT NULL, session TEXT, \
    api TEXT NOT NULL, role TEXT NOT NULL, stream INTEGER NOT NULL, requested_model TEXT NOT NULL, \
    router TEXT, planner TEXT, tier TEXT, reasoning TEXT, served_model TEXT, provider TEXT, \
    endpoint TEXT, attempts TEXT NOT NULL, escalated INTEGER NOT NULL, input_tokens INTEGER NOT NULL, \
    output_tokens INTEGER NOT NULL, cache_read_tokens INTEGER NOT NULL, \
    cache_write_tokens INTEGER NOT NULL, cost_nanos INTEGER NOT NULL, baseline_nanos INTEGER NOT NULL, \
    latency_ms INTEGER NOT NULL, ttft_ms INTEGER, status TEXT NOT NULL, error_class TEXT, arm TEXT, \
    shadow TEXT, route_labels TEXT NOT NULL, policy_view TEXT)";
const BLOB: &str = "CREATE TABLE calls (id INTEGER PRIMARY KEY, request_id TEXT NOT NULL, \
    task_id TEXT, at_ms INTEGER NOT NULL, client TEXT NOT NULL, arm TEXT, \
    cost_nanos INTEGER NOT NULL, record TEXT NOT NULL)";
const INDEXES: &str = "CREATE INDEX calls_at ON calls (at_ms); \
    CREATE INDEX calls_client_at ON calls (client, at_ms); \
    CREATE INDEX calls_request ON calls (request_id);";

fn json_map(map: &BTreeMap<String, String>) -> String {
    serde_json::to_string(map).unwrap_or_default()
}

/// Bytes this process has caused to be written to storage (WAL pages and
/// checkpoints), from /proc/self/io.
fn written() -> u64 {
    std::fs::read_to_string("/proc/self/io")
        .ok()
        .and_then(|io| {
            io.lines()
                .find_map(|l| l.strip_prefix("wchar: "))
                .and_then(|v| v.trim().parse().ok())
        })
        .unwrap_or(0)
}

fn cpu() -> f64 {
    common::cpu_seconds("/proc/thread-self/stat")
}

fn open(path: &std::path::Path, table: &str, indexes: bool) -> rusqlite::Result<Connection> {
    let conn = Connection::open(path)?;
    conn.query_row("PRAGMA journal_mode = WAL", [], |_| Ok(()))?;
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    conn.execute_batch(table)?;
    if indexes {
        conn.execute_batch(INDEXES)?;
    }
    Ok(conn)
}

fn main() -> anyhow::Result<()> {
    let records = common::call_records_from_args(200_000)?;
    let rows = records.len();
    let dir = tempfile::tempdir()?;
    let started = cpu();
    for c in &records {
        std::hint::black_box(serde_json::to_string(c)?);
    }
    println!(
        "a record's JSON (the journal's, which a blob row could reuse): {:.2} µs CPU",
        (cpu() - started) / rows as f64 * 1e6
    );
    let no_indexes = std::env::var_os("NO_INDEXES").is_some();
    for round in 0..2 {
        for schema in ["columns", "blob"] {
            let path = dir.path().join(format!("{schema}-{round}.db"));
            let table = if schema == "columns" { COLUMNS } else { BLOB };
            let conn = open(&path, table, !no_indexes)?;
            let started = cpu();
            let bytes_before = written();
            for batch in records.chunks(64) {
                let tx = conn.unchecked_transaction()?;
                for c in batch {
                    match schema {
                        "columns" => {
                            let mut stmt = tx.prepare_cached(
                                "INSERT INTO calls (request_id, task_id, at_ms, client, labels, session, api, role, stream, requested_model, router, planner, tier, reasoning, served_model, provider, endpoint, attempts, escalated, input_tokens, output_tokens, cache_read_tokens, cache_write_tokens, cost_nanos, baseline_nanos, latency_ms, ttft_ms, status, error_class, arm, shadow, route_labels, policy_view) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19, ?20, ?21, ?22, ?23, ?24, ?25, ?26, ?27, ?28, ?29, ?30, ?31, ?32, ?33)",
                            )?;
                            stmt.execute(params![
                                c.request_id,
                                c.task_id,
                                c.at_ms,
                                c.client,
                                json_map(&c.labels),
                                c.session,
                                c.api.as_str(),
                                c.role.as_str(),
                                c.stream,
                                c.requested_model,
                                c.router,
                                c.planner,
                                c.tier,
                                c.reasoning,
                                c.served_model,
                                c.provider,
                                c.endpoint,
                                serde_json::to_string(&c.attempts)?,
                                c.escalated,
                                c.input_tokens as i64,
                                c.output_tokens as i64,
                                c.cache_read_tokens as i64,
                                c.cache_write_tokens as i64,
                                c.cost_nanos,
                                c.baseline_nanos,
                                i64::from(c.latency_ms),
                                c.ttft_ms.map(i64::from),
                                c.status.as_str(),
                                c.error_class,
                                c.arm,
                                c.shadow,
                                json_map(&c.route_labels),
                                c.policy_view,
                            ])?;
                        }
                        _ => {
                            // The journal already holds this JSON; it is
                            // made here so both sides pay for their text.
                            let body = serde_json::to_string(c)?;
                            let mut stmt = tx.prepare_cached(
                                "INSERT INTO calls (request_id, task_id, at_ms, client, arm, cost_nanos, record) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                            )?;
                            stmt.execute(params![
                                c.request_id,
                                c.task_id,
                                c.at_ms,
                                c.client,
                                c.arm,
                                c.cost_nanos,
                                body
                            ])?;
                        }
                    }
                }
                tx.commit()?;
            }
            let per_row = (cpu() - started) / rows as f64 * 1e6;
            let written_per_row = (written() - bytes_before) / rows as u64;
            let size = std::fs::metadata(&path)?.len()
                + std::fs::metadata(path.with_extension("db-wal")).map_or(0, |m| m.len());
            println!(
                "round {round}: {schema:>7}: {per_row:>5.2} µs CPU per row, {:>5} bytes per row on disk, {written_per_row:>6} bytes written per row",
                size / rows as u64
            );
        }
    }
    Ok(())
}

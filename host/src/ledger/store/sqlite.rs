//! The SQLite store: a WAL file, one writer thread owning the write
//! connection (group commit), a few read connections used from blocking
//! tasks, and the record journal beside the file (see `journal`). Budget
//! reservations live in the writer (one daemon per file).

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rusqlite::types::Type;
use rusqlite::{
    Connection, ErrorCode, OpenFlags, OptionalExtension, Row, TransactionBehavior, params,
};

use super::budget::{BudgetOp, MemoryBudgets};
use super::codec::{self, CALL_COLUMNS, LIVE_TASK_STATUSES, PAGE};
use super::journal::{Journal, Leftover};
use super::window::Window;
use super::writer::{Backend, Write};
use super::{CallFilter, LedgerError};
use crate::config::ledger::SyncMode;
use crate::ledger::record::{CallRecord, FeedbackRecord, Nanos, TaskRecord};

/// Migrations, in order: (version, SQL).
const MIGRATIONS: &[(i64, &str)] = &[
    (1, include_str!("migrations/sqlite/0001_init.sql")),
    (2, include_str!("migrations/sqlite/0002_record_journal.sql")),
    (
        3,
        include_str!("migrations/sqlite/0003_drop_unused_call_indexes.sql"),
    ),
];

/// How long a statement waits for a lock another connection holds.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// Read connections kept open between reads.
const IDLE_READERS: usize = 4;

/// The newest schema version this binary applies.
pub(crate) fn latest_version() -> i64 {
    MIGRATIONS.last().map_or(0, |m| m.0)
}

/// An SQLite error in words that name the problem.
pub(crate) fn error(path: &str, e: rusqlite::Error) -> LedgerError {
    if let rusqlite::Error::SqliteFailure(failure, message) = &e {
        let detail = message.clone().unwrap_or_else(|| failure.to_string());
        return match failure.code {
            ErrorCode::NotADatabase => LedgerError::NotSqlite {
                path: path.to_string(),
            },
            ErrorCode::ReadOnly => LedgerError::ReadOnly {
                path: path.to_string(),
                detail,
            },
            ErrorCode::CannotOpen | ErrorCode::PermissionDenied => LedgerError::CannotOpen {
                path: path.to_string(),
                detail,
            },
            _ => LedgerError::Store {
                store: path.to_string(),
                detail,
            },
        };
    }
    LedgerError::Store {
        store: path.to_string(),
        detail: e.to_string(),
    }
}

fn writable(path: &Path) -> bool {
    use std::os::unix::ffi::OsStrExt;
    let Ok(c) = std::ffi::CString::new(path.as_os_str().as_bytes()) else {
        return false;
    };
    // SAFETY: `c` is a valid NUL-terminated path for the call's duration.
    unsafe { libc::access(c.as_ptr(), libc::W_OK) == 0 }
}

/// Checks what SQLite would report less clearly: the folder can be made
/// and written (WAL needs `-wal` and `-shm` files beside the database),
/// the file can be written.
fn preflight(path: &Path, name: &str) -> Result<(), LedgerError> {
    let folder = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    if let Err(e) = std::fs::create_dir_all(&folder) {
        return Err(LedgerError::CannotOpen {
            path: name.to_string(),
            detail: format!("cannot create its folder {}: {e}", folder.display()),
        });
    }
    if path.exists() && !writable(path) {
        return Err(LedgerError::ReadOnly {
            path: name.to_string(),
            detail: "the file is not writable".into(),
        });
    }
    if !writable(&folder) {
        return Err(LedgerError::ReadOnly {
            path: name.to_string(),
            detail: format!(
                "its folder {} is not writable, and SQLite creates its -wal and -shm files there",
                folder.display()
            ),
        });
    }
    Ok(())
}

fn connect(path: &Path, name: &str, create: bool) -> Result<Connection, LedgerError> {
    let mut flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    if create {
        flags |= OpenFlags::SQLITE_OPEN_CREATE;
    }
    let conn = Connection::open_with_flags(path, flags).map_err(|e| error(name, e))?;
    conn.busy_timeout(BUSY_TIMEOUT)
        .map_err(|e| error(name, e))?;
    conn.set_prepared_statement_cache_capacity(32);
    Ok(conn)
}

/// Applies the migrations `conn` lacks; refuses a newer schema.
fn migrate(conn: &mut Connection, name: &str) -> Result<(), LedgerError> {
    let err = |e| error(name, e);
    conn.execute_batch(
        "CREATE TABLE IF NOT EXISTS ledger_schema (version INTEGER PRIMARY KEY, applied_ms INTEGER NOT NULL)",
    )
    .map_err(err)?;
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(err)?;
    let current: i64 = tx
        .query_row(
            "SELECT COALESCE(MAX(version), 0) FROM ledger_schema",
            [],
            |r| r.get(0),
        )
        .map_err(err)?;
    if current > latest_version() {
        return Err(LedgerError::SchemaTooNew {
            found: current,
            supported: latest_version(),
        });
    }
    for (version, sql) in MIGRATIONS.iter().filter(|m| m.0 > current) {
        tx.execute_batch(sql).map_err(err)?;
        tx.execute(
            "INSERT INTO ledger_schema (version, applied_ms) VALUES (?1, ?2)",
            params![version, super::system_now_ms()],
        )
        .map_err(err)?;
        tracing::info!(store = name, version, "ledger schema migrated");
    }
    tx.commit().map_err(err)
}

/// Opens the file: checks, WAL, sync mode, migrations, and the replay of
/// what a stopped process left in the record journal. Returns the journal
/// for new records when this process owns it and `sync` is `normal`.
/// Blocking.
pub(crate) fn open(
    path: &Path,
    sync: SyncMode,
) -> Result<(SqliteWriter, Arc<Readers>, Option<Journal>), LedgerError> {
    let name = path.display().to_string();
    preflight(path, &name)?;
    let mut conn = connect(path, &name, true)?;
    let mode: String = conn
        .query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))
        .map_err(|e| error(&name, e))?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(LedgerError::Store {
            store: name,
            detail: format!("cannot switch to WAL (journal mode stays {mode})"),
        });
    }
    let synchronous = match sync {
        SyncMode::Normal => "NORMAL",
        SyncMode::Full => "FULL",
    };
    conn.pragma_update(None, "synchronous", synchronous)
        .map_err(|e| error(&name, e))?;
    migrate(&mut conn, &name)?;
    let journal = take_journal(&mut conn, path, &name)?.filter(|_| sync == SyncMode::Normal);
    let readers = Arc::new(Readers {
        path: path.to_path_buf(),
        name: name.clone(),
        idle: Mutex::new(Vec::new()),
    });
    Ok((
        SqliteWriter {
            conn,
            name,
            budgets: MemoryBudgets::default(),
        },
        readers,
        journal,
    ))
}

/// Takes the record journal beside `path` unless another live process
/// owns it, and applies what it holds past the stored high-water mark in
/// one transaction (a record is never applied twice).
fn take_journal(
    conn: &mut Connection,
    path: &Path,
    name: &str,
) -> Result<Option<Journal>, LedgerError> {
    let journal_error = |e: std::io::Error| LedgerError::Journal {
        path: format!("{name}-records"),
        detail: e.to_string(),
    };
    let Some((journal, leftover)) = Journal::open(path).map_err(journal_error)? else {
        tracing::info!(
            store = name,
            "another process owns this ledger's record journal: this one commits its records to SQLite directly"
        );
        return Ok(None);
    };
    let applied = replay(conn, name, leftover)?;
    journal.reset(applied).map_err(journal_error)?;
    Ok(Some(journal))
}

/// Applies the journal's records past the high-water mark; returns the new
/// mark.
fn replay(conn: &mut Connection, name: &str, leftover: Leftover) -> Result<u64, LedgerError> {
    let err = |e| error(name, e);
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(err)?;
    let stored: i64 = tx
        .query_row(
            "SELECT applied_seq FROM record_journal WHERE id = 1",
            [],
            |r| r.get(0),
        )
        .map_err(err)?;
    let applied = u64::try_from(stored).unwrap_or(0);
    let upto = leftover
        .last()
        .map_or(applied, |(seq, _)| applied.max(*seq));
    let mut replayed = 0usize;
    for (seq, entry) in leftover {
        if seq > applied {
            write_one(&tx, &entry.into_write()).map_err(err)?;
            replayed += 1;
        }
    }
    if replayed > 0 {
        write_one(&tx, &Write::Applied(upto)).map_err(err)?;
        tracing::info!(
            store = name,
            records = replayed,
            "replayed the call records a stopped process had journaled but not yet inserted"
        );
    }
    tx.commit().map_err(err)?;
    Ok(upto)
}

/// The writer thread's side: the write connection and the budgets.
pub(crate) struct SqliteWriter {
    conn: Connection,
    name: String,
    budgets: MemoryBudgets,
}

const INSERT_CALL: &str = "INSERT INTO calls (request_id, task_id, at_ms, client, labels, session, api, role, stream, requested_model, router, planner, tier, reasoning, served_model, provider, endpoint, attempts, escalated, input_tokens, output_tokens, cache_read_tokens, cache_write_tokens, cost_nanos, baseline_nanos, latency_ms, ttft_ms, status, error_class, arm, shadow, route_labels, policy_view) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19, ?20, ?21, ?22, ?23, ?24, ?25, ?26, ?27, ?28, ?29, ?30, ?31, ?32, ?33)";
const ADD_SPEND: &str = "INSERT INTO budget_spend (scope, period, start_ms, spent_nanos) VALUES (?1, ?2, ?3, ?4) ON CONFLICT (scope, period, start_ms) DO UPDATE SET spent_nanos = budget_spend.spent_nanos + excluded.spent_nanos";
const UPSERT_TASK: &str = "INSERT INTO tasks (id, client, status, created_ms, updated_ms, replica, body) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) ON CONFLICT (id) DO UPDATE SET client = excluded.client, status = excluded.status, updated_ms = excluded.updated_ms, replica = excluded.replica, body = excluded.body";
const INSERT_FEEDBACK: &str = "INSERT INTO feedback (target_kind, target_id, client, score, labels, at_ms) VALUES (?1, ?2, ?3, ?4, ?5, ?6)";

fn insert_call(conn: &Connection, c: &CallRecord) -> rusqlite::Result<usize> {
    let mut stmt = conn.prepare_cached(INSERT_CALL)?;
    stmt.execute(params![
        c.request_id,
        c.task_id,
        c.at_ms,
        c.client,
        codec::map_json(&c.labels),
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
        codec::attempts_json(&c.attempts),
        c.escalated,
        codec::count(c.input_tokens),
        codec::count(c.output_tokens),
        codec::count(c.cache_read_tokens),
        codec::count(c.cache_write_tokens),
        c.cost_nanos,
        c.baseline_nanos,
        i64::from(c.latency_ms),
        c.ttft_ms.map(i64::from),
        c.status.as_str(),
        c.error_class,
        c.arm,
        c.shadow,
        codec::map_json(&c.route_labels),
        c.policy_view,
    ])
}

fn write_one(conn: &Connection, write: &Write) -> rusqlite::Result<u64> {
    match write {
        Write::Call(call, settle) => {
            insert_call(conn, call)?;
            if let Some(reservation) = settle {
                let mut stmt = conn.prepare_cached(ADD_SPEND)?;
                for scope in &reservation.scopes {
                    for window in [Window::Day, Window::Month] {
                        stmt.execute(params![
                            scope,
                            window.as_str(),
                            window.start(call.at_ms),
                            call.cost_nanos
                        ])?;
                    }
                }
            }
            Ok(1)
        }
        Write::Task(t) => {
            let body = t.body.to_string();
            let mut stmt = conn.prepare_cached(UPSERT_TASK)?;
            Ok(stmt.execute(params![
                t.id,
                t.client,
                t.status.as_str(),
                t.created_ms,
                t.updated_ms,
                t.replica,
                body
            ])? as u64)
        }
        Write::Feedback(f) => {
            let (kind, id) = codec::target_parts(&f.target);
            let mut stmt = conn.prepare_cached(INSERT_FEEDBACK)?;
            Ok(stmt.execute(params![
                kind,
                id,
                f.client,
                f.score,
                codec::map_json(&f.labels),
                f.at_ms
            ])? as u64)
        }
        Write::Interrupt {
            replica,
            stale_before_ms,
            now_ms,
        } => {
            let sql = format!(
                "UPDATE tasks SET status = 'interrupted', updated_ms = ?3, \
                 body = CASE WHEN json_valid(body) AND json_type(body) = 'object' \
                        THEN json_set(body, '$.status', 'interrupted') ELSE body END \
                 WHERE status IN {LIVE_TASK_STATUSES} AND (replica = ?1 OR replica IN \
                 (SELECT replica FROM tasks GROUP BY replica HAVING MAX(updated_ms) < ?2))"
            );
            Ok(conn.execute(&sql, params![replica, stale_before_ms, now_ms])? as u64)
        }
        Write::Prune {
            before_ms,
            spend_before_ms,
            now_ms,
            limit,
        } => {
            let mut deleted = 0u64;
            if let Some(before) = before_ms {
                deleted += conn.execute(
                    "DELETE FROM calls WHERE id IN (SELECT id FROM calls WHERE at_ms < ?1 LIMIT ?2)",
                    params![before, limit],
                )? as u64;
                deleted += conn.execute(
                    "DELETE FROM feedback WHERE id IN (SELECT id FROM feedback WHERE at_ms < ?1 LIMIT ?2)",
                    params![before, limit],
                )? as u64;
                deleted += conn.execute(
                    &format!(
                        "DELETE FROM tasks WHERE id IN (SELECT id FROM tasks WHERE updated_ms < ?1 \
                         AND status NOT IN {LIVE_TASK_STATUSES} LIMIT ?2)"
                    ),
                    params![before, limit],
                )? as u64;
            }
            conn.execute(
                "DELETE FROM budget_spend WHERE start_ms < ?1",
                params![spend_before_ms],
            )?;
            conn.execute(
                "DELETE FROM budget_reservations WHERE expires_ms <= ?1",
                params![now_ms],
            )?;
            Ok(deleted)
        }
        Write::Applied(seq) => {
            let seq = i64::try_from(*seq).unwrap_or(i64::MAX);
            conn.prepare_cached(
                "UPDATE record_journal SET applied_seq = MAX(applied_seq, ?1) WHERE id = 1",
            )?
            .execute(params![seq])?;
            Ok(0)
        }
    }
}

fn load_spend(
    conn: &Connection,
    name: &str,
    scope: &str,
    window: Window,
    start: i64,
) -> Result<Nanos, LedgerError> {
    conn.prepare_cached(
        "SELECT spent_nanos FROM budget_spend WHERE scope = ?1 AND period = ?2 AND start_ms = ?3",
    )
    .and_then(|mut s| {
        s.query_row(params![scope, window.as_str(), start], |r| r.get(0))
            .optional()
    })
    .map(|n: Option<i64>| n.unwrap_or(0))
    .map_err(|e| error(name, e))
}

impl Backend for SqliteWriter {
    fn commit(&mut self, batch: &[Write], counts: &mut Vec<u64>) -> Result<(), LedgerError> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(|e| error(&self.name, e))?;
        for write in batch {
            counts.push(write_one(&tx, write).map_err(|e| error(&self.name, e))?);
        }
        tx.commit().map_err(|e| error(&self.name, e))
    }

    fn committed(&mut self, batch: &[Write]) {
        for write in batch {
            if let Write::Call(call, Some(reservation)) = write {
                self.budgets
                    .settled(reservation, call.cost_nanos, call.at_ms);
            }
        }
    }

    fn budget(&mut self, op: BudgetOp) {
        let conn = &self.conn;
        let name = self.name.as_str();
        let mut load =
            |scope: &str, window: Window, start: i64| load_spend(conn, name, scope, window, start);
        match op {
            BudgetOp::Reserve {
                scopes,
                amount,
                now_ms,
                expires_ms,
                reply,
            } => {
                let _ = reply.send(
                    self.budgets
                        .reserve(&scopes, amount, now_ms, expires_ms, &mut load),
                );
            }
            BudgetOp::Release(reservation) => self.budgets.release(&reservation),
            BudgetOp::Spent {
                scope,
                now_ms,
                reply,
            } => {
                let _ = reply.send(self.budgets.spend(&scope, now_ms, &mut load));
            }
        }
    }

    fn probe(&mut self) -> Result<(), LedgerError> {
        self.conn
            .execute_batch(
                "BEGIN IMMEDIATE; UPDATE ledger_schema SET applied_ms = applied_ms WHERE version = (SELECT MAX(version) FROM ledger_schema); COMMIT;",
            )
            .map_err(|e| {
                let _ = self.conn.execute_batch("ROLLBACK");
                error(&self.name, e)
            })
    }
}

/// Read connections, used from blocking tasks (WAL: reads never wait for
/// the writer).
pub(crate) struct Readers {
    path: PathBuf,
    name: String,
    idle: Mutex<Vec<Connection>>,
}

fn decode_failure(column: usize, message: String) -> rusqlite::Error {
    rusqlite::Error::FromSqlConversionFailure(column, Type::Text, message.into())
}

fn call_from_row(r: &Row<'_>) -> rusqlite::Result<CallRecord> {
    // Column 0 is the row id (paging); the record's fields follow in
    // `CALL_COLUMNS` order.
    let text = |i: usize| -> rusqlite::Result<String> { r.get(i) };
    Ok(CallRecord {
        request_id: r.get(1)?,
        task_id: r.get(2)?,
        at_ms: r.get(3)?,
        client: r.get(4)?,
        labels: codec::parse_map("labels", &text(5)?).map_err(|m| decode_failure(5, m))?,
        session: r.get(6)?,
        api: codec::parse_api(&text(7)?).map_err(|m| decode_failure(7, m))?,
        role: codec::parse_role(&text(8)?).map_err(|m| decode_failure(8, m))?,
        stream: r.get(9)?,
        requested_model: r.get(10)?,
        router: r.get(11)?,
        planner: r.get(12)?,
        tier: r.get(13)?,
        reasoning: r.get(14)?,
        served_model: r.get(15)?,
        provider: r.get(16)?,
        endpoint: r.get(17)?,
        attempts: codec::parse_attempts(&text(18)?).map_err(|m| decode_failure(18, m))?,
        escalated: r.get(19)?,
        input_tokens: codec::uncount(r.get(20)?),
        output_tokens: codec::uncount(r.get(21)?),
        cache_read_tokens: codec::uncount(r.get(22)?),
        cache_write_tokens: codec::uncount(r.get(23)?),
        cost_nanos: r.get(24)?,
        baseline_nanos: r.get(25)?,
        latency_ms: codec::millis(r.get(26)?),
        ttft_ms: r.get::<_, Option<i64>>(27)?.map(codec::millis),
        status: codec::parse_status(&text(28)?).map_err(|m| decode_failure(28, m))?,
        error_class: r.get(29)?,
        arm: r.get(30)?,
        shadow: r.get(31)?,
        route_labels: codec::parse_map("route_labels", &text(32)?)
            .map_err(|m| decode_failure(32, m))?,
        policy_view: r.get(33)?,
    })
}

impl Readers {
    async fn read<T, F>(self: &Arc<Self>, f: F) -> Result<T, LedgerError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> rusqlite::Result<T> + Send + 'static,
    {
        let this = self.clone();
        tokio::task::spawn_blocking(move || {
            let conn = match this.idle.lock().unwrap_or_else(|e| e.into_inner()).pop() {
                Some(conn) => conn,
                None => connect(&this.path, &this.name, false)?,
            };
            let result = f(&conn).map_err(|e| error(&this.name, e));
            let mut idle = this.idle.lock().unwrap_or_else(|e| e.into_inner());
            if idle.len() < IDLE_READERS {
                idle.push(conn);
            }
            result
        })
        .await
        .map_err(|e| LedgerError::Store {
            store: self.name.clone(),
            detail: format!("a read failed: {e}"),
        })?
    }

    pub(crate) async fn task(
        self: &Arc<Self>,
        id: &str,
    ) -> Result<Option<TaskRecord>, LedgerError> {
        let id = id.to_string();
        self.read(move |conn| {
            conn.prepare_cached(
                "SELECT id, client, status, created_ms, updated_ms, replica, body FROM tasks WHERE id = ?1",
            )?
            .query_row(params![id], |r| {
                let body: String = r.get(6)?;
                let status: String = r.get(2)?;
                Ok(TaskRecord {
                    id: r.get(0)?,
                    client: r.get(1)?,
                    status: codec::parse_task_status(&status).map_err(|m| decode_failure(2, m))?,
                    created_ms: r.get(3)?,
                    updated_ms: r.get(4)?,
                    replica: r.get(5)?,
                    body: serde_json::from_str(&body)
                        .map_err(|e| decode_failure(6, format!("task body is not JSON: {e}")))?,
                })
            })
            .optional()
        })
        .await
    }

    pub(crate) async fn rollout_state(
        self: &Arc<Self>,
        key: &str,
    ) -> Result<Option<String>, LedgerError> {
        let key = key.to_string();
        self.read(move |conn| {
            conn.prepare_cached("SELECT value FROM rollouts WHERE key = ?1")?
                .query_row(params![key], |r| r.get(0))
                .optional()
        })
        .await
    }

    /// Writes `value` under `key` if the stored value is still `expected`
    /// (`None`: no row). A rare write, so it runs on a reader's connection
    /// (opened read-write) rather than through the group-commit writer; the
    /// busy timeout orders it with the writer's commits.
    pub(crate) async fn swap_rollout_state(
        self: &Arc<Self>,
        key: &str,
        expected: Option<String>,
        value: String,
        now_ms: i64,
    ) -> Result<bool, LedgerError> {
        let key = key.to_string();
        self.read(move |conn| {
            let changed = match expected {
                None => conn.execute(
                    "INSERT INTO rollouts (key, value, updated_ms) VALUES (?1, ?2, ?3) ON CONFLICT (key) DO NOTHING",
                    params![key, value, now_ms],
                )?,
                Some(old) => conn.execute(
                    "UPDATE rollouts SET value = ?2, updated_ms = ?3 WHERE key = ?1 AND value = ?4",
                    params![key, value, now_ms, old],
                )?,
            };
            Ok(changed == 1)
        })
        .await
    }

    pub(crate) async fn request_client(
        self: &Arc<Self>,
        id: &str,
    ) -> Result<Option<String>, LedgerError> {
        let id = id.to_string();
        self.read(move |conn| {
            let call: Option<String> = conn
                .prepare_cached("SELECT client FROM calls WHERE request_id = ?1 LIMIT 1")?
                .query_row(params![id], |r| r.get(0))
                .optional()?;
            match call {
                Some(c) => Ok(Some(c)),
                None => conn
                    .prepare_cached("SELECT client FROM tasks WHERE id = ?1")?
                    .query_row(params![id], |r| r.get(0))
                    .optional(),
            }
        })
        .await
    }

    pub(crate) async fn feedback(
        self: &Arc<Self>,
        filter: &CallFilter,
    ) -> Result<Vec<FeedbackRecord>, LedgerError> {
        let filter = filter.clone();
        self.read(move |conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT target_kind, target_id, client, score, labels, at_ms FROM feedback \
                 WHERE at_ms >= ?1 AND at_ms < ?2 AND (?3 IS NULL OR client = ?3) ORDER BY at_ms, id",
            )?;
            let rows = stmt.query_map(params![filter.since_ms, filter.until_ms, filter.client], |r| {
                let kind: String = r.get(0)?;
                let labels: String = r.get(4)?;
                codec::feedback(&kind, r.get(1)?, r.get(2)?, r.get(3)?, &labels, r.get(5)?)
                    .map_err(|m| decode_failure(0, m))
            })?;
            rows.collect()
        })
        .await
    }

    /// One page of calls after the key (`at_ms`, row id).
    async fn calls_page(
        self: &Arc<Self>,
        filter: &CallFilter,
        after: (i64, i64),
    ) -> Result<Vec<(i64, CallRecord)>, LedgerError> {
        let filter = filter.clone();
        self.read(move |conn| {
            let client_clause = if filter.client.is_some() {
                "AND client = ?6"
            } else {
                "AND ?6 IS NULL"
            };
            let sql = format!(
                "SELECT id, {CALL_COLUMNS} FROM calls WHERE at_ms >= ?1 AND at_ms < ?2 \
                 AND (at_ms > ?3 OR (at_ms = ?3 AND id > ?4)) {client_clause} \
                 ORDER BY at_ms, id LIMIT ?5"
            );
            let mut stmt = conn.prepare_cached(&sql)?;
            let rows = stmt.query_map(
                params![
                    filter.since_ms,
                    filter.until_ms,
                    after.0,
                    after.1,
                    PAGE,
                    filter.client
                ],
                |r| Ok((r.get::<_, i64>(0)?, call_from_row(r)?)),
            )?;
            rows.collect()
        })
        .await
    }

    /// One page of the calls of an arm label starting with `arm_prefix`
    /// whose row id is above `after_id` and which started at `since_ms` or
    /// later, in row-id order (the order they were recorded in).
    pub(crate) async fn arm_calls_after(
        self: &Arc<Self>,
        arm_prefix: &str,
        after_id: i64,
        since_ms: i64,
    ) -> Result<Vec<(i64, CallRecord)>, LedgerError> {
        let prefix = arm_prefix.to_string();
        self.read(move |conn| {
            let sql = format!(
                "SELECT id, {CALL_COLUMNS} FROM calls WHERE id > ?1 AND at_ms >= ?2 \
                 AND substr(arm, 1, ?3) = ?4 ORDER BY id LIMIT ?5"
            );
            let mut stmt = conn.prepare_cached(&sql)?;
            let rows = stmt.query_map(
                params![
                    after_id,
                    since_ms,
                    prefix.chars().count() as i64,
                    prefix,
                    PAGE
                ],
                |r| Ok((r.get::<_, i64>(0)?, call_from_row(r)?)),
            )?;
            rows.collect()
        })
        .await
    }

    /// The row id just below the first call that started at `since_ms` or
    /// later: every call recorded at or below it started earlier.
    pub(crate) async fn id_before(self: &Arc<Self>, since_ms: i64) -> Result<i64, LedgerError> {
        self.read(move |conn| {
            conn.prepare_cached("SELECT coalesce(min(id), 1) - 1 FROM calls WHERE at_ms >= ?1")?
                .query_row(params![since_ms], |r| r.get(0))
        })
        .await
    }

    pub(crate) async fn calls(
        self: &Arc<Self>,
        filter: &CallFilter,
        most: usize,
    ) -> Result<Vec<CallRecord>, LedgerError> {
        let mut out = Vec::new();
        let mut after = (i64::MIN, i64::MIN);
        loop {
            let page = self.calls_page(filter, after).await?;
            let full = page.len() as i64 == PAGE;
            if let Some((id, last)) = page.last() {
                after = (last.at_ms, *id);
            }
            out.extend(page.into_iter().map(|(_, c)| c));
            if !full || out.len() > most {
                return Ok(out);
            }
        }
    }
}

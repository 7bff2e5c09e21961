//! The PostgreSQL store: the writer thread drives its own connection on a
//! single-threaded runtime (group commit: every queued write pipelined in
//! one transaction), reconnecting after a failure; reads and budget
//! reservations use a small pool of connections on the daemon's runtime.
//! Reservations live in the database, so replicas share them. No TLS:
//! connect over a trusted network or a local socket (`sslmode=require`
//! is refused by the driver).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use futures::future::{LocalBoxFuture, try_join_all};
use tokio::sync::{Mutex, MutexGuard};
use tokio_postgres::{Client, Config, NoTls, Row, Statement};

use super::budget::{self, BudgetOp, BudgetScope, Reservation, ReserveError, Spend};
use super::codec::{self, CALL_COLUMNS, LIVE_TASK_STATUSES, PAGE};
use super::window::Window;
use super::writer::{Backend, Write};
use super::{CallFilter, LedgerError};
use crate::ledger::record::{CallRecord, FeedbackRecord, Nanos, TaskRecord};

/// Migrations, in order: (version, SQL).
const MIGRATIONS: &[(i64, &str)] = &[(1, include_str!("migrations/postgres/0001_init.sql"))];

/// The session lock that serialises migrations of replicas starting at once.
const MIGRATION_LOCK: i64 = 0x706f_696e_7473_6d6e; // "pointsmn"

/// Connections for reads and reservations.
const POOL_SIZE: usize = 4;

/// How long a connection attempt may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// The newest schema version this binary applies.
pub(crate) fn latest_version() -> i64 {
    MIGRATIONS.last().map_or(0, |m| m.0)
}

/// Where the server is, for messages (never the password).
#[derive(Clone)]
pub(crate) struct Target {
    config: Config,
    /// `host:port` of every host tried.
    place: String,
    /// The URL, password redacted.
    url: String,
}

impl Target {
    /// Parses `url`.
    pub(crate) fn parse(url: &str) -> Result<Target, LedgerError> {
        let redacted = super::error::redact(url);
        let mut config: Config =
            url.parse()
                .map_err(|e: tokio_postgres::Error| LedgerError::BadUrl {
                    url: redacted.clone(),
                    detail: e.to_string(),
                })?;
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(CONNECT_TIMEOUT);
        }
        if config.get_application_name().is_none() {
            config.application_name("pointsman");
        }
        let ports = config.get_ports();
        let place = config
            .get_hosts()
            .iter()
            .enumerate()
            .map(|(i, host)| {
                let port = ports.get(i).or(ports.first()).copied().unwrap_or(5432);
                match host {
                    tokio_postgres::config::Host::Tcp(h) => format!("{h}:{port}"),
                    tokio_postgres::config::Host::Unix(p) => {
                        format!("{}/.s.PGSQL.{port}", p.display())
                    }
                }
            })
            .collect::<Vec<_>>()
            .join(", ");
        Ok(Target {
            config,
            place: if place.is_empty() {
                "localhost:5432".into()
            } else {
                place
            },
            url: redacted,
        })
    }

    /// The redacted URL.
    pub(crate) fn url(&self) -> &str {
        &self.url
    }

    /// A statement's or commit's failure.
    fn error(&self, e: &tokio_postgres::Error) -> LedgerError {
        LedgerError::Store {
            store: self.url.clone(),
            detail: detail(e),
        }
    }

    /// Connects, driving the connection on the current runtime.
    async fn connect(&self) -> Result<Client, LedgerError> {
        let (client, connection) = self.config.connect(NoTls).await.map_err(|e| {
            if e.as_db_error().is_some() {
                // The server answered: a refusal (authentication, a
                // missing database), not an unreachable server.
                self.error(&e)
            } else {
                LedgerError::Unreachable {
                    target: self.place.clone(),
                    url: self.url.clone(),
                    detail: detail(&e),
                }
            }
        })?;
        let url = self.url.clone();
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::warn!(store = %url, error = %detail(&e), "ledger connection to PostgreSQL closed");
            }
        });
        Ok(client)
    }
}

/// What the driver said, with the server's message when there is one.
fn detail(e: &tokio_postgres::Error) -> String {
    if let Some(db) = e.as_db_error() {
        return format!("{}: {}", db.severity(), db.message());
    }
    let mut out = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

/// Applies the migrations the database lacks; refuses a newer schema.
pub(crate) async fn migrate(target: &Target) -> Result<(), LedgerError> {
    let mut client = target.connect().await?;
    let err = |e: tokio_postgres::Error| target.error(&e);
    client
        .execute("SELECT pg_advisory_lock($1)", &[&MIGRATION_LOCK])
        .await
        .map_err(err)?;
    let result = async {
        client
            .batch_execute(
                "CREATE TABLE IF NOT EXISTS ledger_schema (version BIGINT PRIMARY KEY, applied_ms BIGINT NOT NULL)",
            )
            .await
            .map_err(err)?;
        let current: i64 = client
            .query_one("SELECT COALESCE(MAX(version), 0)::BIGINT FROM ledger_schema", &[])
            .await
            .map_err(err)?
            .get(0);
        if current > latest_version() {
            return Err(LedgerError::SchemaTooNew {
                found: current,
                supported: latest_version(),
            });
        }
        for (version, sql) in MIGRATIONS.iter().filter(|m| m.0 > current) {
            let tx = client.transaction().await.map_err(err)?;
            tx.batch_execute(sql).await.map_err(err)?;
            tx.execute(
                "INSERT INTO ledger_schema (version, applied_ms) VALUES ($1, $2)",
                &[version, &super::system_now_ms()],
            )
            .await
            .map_err(err)?;
            tx.commit().await.map_err(err)?;
            tracing::info!(store = %target.url, version, "ledger schema migrated");
        }
        Ok(())
    }
    .await;
    let _ = client
        .execute("SELECT pg_advisory_unlock($1)", &[&MIGRATION_LOCK])
        .await;
    result
}

const INSERT_CALL: &str = "INSERT INTO calls (request_id, task_id, at_ms, client, labels, session, api, role, stream, requested_model, router, planner, tier, reasoning, served_model, provider, endpoint, attempts, escalated, input_tokens, output_tokens, cache_read_tokens, cache_write_tokens, cost_nanos, baseline_nanos, latency_ms, ttft_ms, status, error_class, arm, shadow, route_labels, policy_view) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20, $21, $22, $23, $24, $25, $26, $27, $28, $29, $30, $31, $32, $33)";
const ADD_SPEND: &str = "INSERT INTO budget_spend (scope, period, start_ms, spent_nanos) VALUES ($1, $2, $3, $4) ON CONFLICT (scope, period, start_ms) DO UPDATE SET spent_nanos = budget_spend.spent_nanos + excluded.spent_nanos";
const DELETE_RESERVATION: &str = "DELETE FROM budget_reservations WHERE id = $1";
const UPSERT_TASK: &str = "INSERT INTO tasks (id, client, status, created_ms, updated_ms, replica, body) VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (id) DO UPDATE SET client = excluded.client, status = excluded.status, updated_ms = excluded.updated_ms, replica = excluded.replica, body = excluded.body";
const INSERT_FEEDBACK: &str = "INSERT INTO feedback (target_kind, target_id, client, score, labels, at_ms) VALUES ($1, $2, $3, $4, $5, $6)";
const SPEND: &str = "SELECT \
    COALESCE((SELECT spent_nanos FROM budget_spend WHERE scope = $1 AND period = 'day' AND start_ms = $2), 0)::BIGINT, \
    COALESCE((SELECT spent_nanos FROM budget_spend WHERE scope = $1 AND period = 'month' AND start_ms = $3), 0)::BIGINT, \
    COALESCE((SELECT SUM(amount_nanos) FROM budget_reservations WHERE scope = $1 AND expires_ms > $4), 0)::BIGINT";

/// The writer's connection and its prepared statements.
struct WriterConnection {
    client: Client,
    insert_call: Statement,
    add_spend: Statement,
    delete_reservation: Statement,
    upsert_task: Statement,
    insert_feedback: Statement,
}

/// The writer thread's side.
pub(crate) struct PgWriter {
    runtime: Option<tokio::runtime::Runtime>,
    target: Target,
    connection: Option<WriterConnection>,
}

impl PgWriter {
    pub(crate) fn new(target: Target) -> PgWriter {
        PgWriter {
            runtime: None,
            target,
            connection: None,
        }
    }
}

/// PostgreSQL text cannot hold NUL: a record whose text has one is
/// written with U+FFFD in its place, rather than failing its whole batch.
fn has_nul(texts: &[Option<&str>]) -> bool {
    texts.iter().flatten().any(|s| s.contains('\0'))
}

fn unnul(s: &mut String) {
    if s.contains('\0') {
        *s = s.replace('\0', "\u{FFFD}");
    }
}

fn clean_call(c: &CallRecord) -> Option<CallRecord> {
    let texts = [
        Some(c.request_id.as_str()),
        c.task_id.as_deref(),
        Some(c.client.as_str()),
        c.session.as_deref(),
        Some(c.requested_model.as_str()),
        c.router.as_deref(),
        c.planner.as_deref(),
        c.tier.as_deref(),
        c.reasoning.as_deref(),
        c.served_model.as_deref(),
        c.provider.as_deref(),
        c.endpoint.as_deref(),
        c.error_class.as_deref(),
        c.arm.as_deref(),
        c.shadow.as_deref(),
        c.policy_view.as_deref(),
    ];
    if !has_nul(&texts) {
        return None;
    }
    let mut c = c.clone();
    for s in [&mut c.request_id, &mut c.client, &mut c.requested_model] {
        unnul(s);
    }
    for s in [
        &mut c.task_id,
        &mut c.session,
        &mut c.router,
        &mut c.planner,
        &mut c.tier,
        &mut c.reasoning,
        &mut c.served_model,
        &mut c.provider,
        &mut c.endpoint,
        &mut c.error_class,
        &mut c.arm,
        &mut c.shadow,
        &mut c.policy_view,
    ]
    .into_iter()
    .flatten()
    {
        unnul(s);
    }
    Some(c)
}

fn clean_task(t: &TaskRecord) -> Option<TaskRecord> {
    if !has_nul(&[Some(&t.id), Some(&t.client), Some(&t.replica)]) {
        return None;
    }
    let mut t = t.clone();
    for s in [&mut t.id, &mut t.client, &mut t.replica] {
        unnul(s);
    }
    Some(t)
}

fn clean_feedback(f: &FeedbackRecord) -> Option<FeedbackRecord> {
    let (_, id) = codec::target_parts(&f.target);
    if !has_nul(&[Some(id), Some(&f.client)]) {
        return None;
    }
    let mut f = f.clone();
    unnul(&mut f.client);
    match &mut f.target {
        crate::ledger::record::FeedbackTarget::Request(id)
        | crate::ledger::record::FeedbackTarget::Task(id)
        | crate::ledger::record::FeedbackTarget::Session(id) => unnul(id),
    }
    Some(f)
}

/// A write made NUL-free when it needed to be.
#[allow(clippy::large_enum_variant)] // short-lived, one per write being encoded
enum Cleaned {
    Call(Box<CallRecord>),
    Task(TaskRecord),
    Feedback(FeedbackRecord),
}

type Pending<'a> = LocalBoxFuture<'a, Result<(usize, u64), tokio_postgres::Error>>;

impl WriterConnection {
    async fn open(target: &Target) -> Result<WriterConnection, LedgerError> {
        let client = target.connect().await?;
        let prepare = |sql: &'static str| {
            let client = &client;
            async move { client.prepare(sql).await.map_err(|e| target.error(&e)) }
        };
        Ok(WriterConnection {
            insert_call: prepare(INSERT_CALL).await?,
            add_spend: prepare(ADD_SPEND).await?,
            delete_reservation: prepare(DELETE_RESERVATION).await?,
            upsert_task: prepare(UPSERT_TASK).await?,
            insert_feedback: prepare(INSERT_FEEDBACK).await?,
            client,
        })
    }

    /// Every write of `batch`, pipelined in one transaction.
    async fn commit(
        &mut self,
        batch: &[Write],
        cleaned: &[Option<Cleaned>],
        counts: &mut Vec<u64>,
    ) -> Result<(), tokio_postgres::Error> {
        let WriterConnection {
            client,
            insert_call,
            add_spend,
            delete_reservation,
            upsert_task,
            insert_feedback,
        } = self;
        let transaction = client.transaction().await?;
        let tx = &transaction;
        let mut pending: Vec<Pending<'_>> = Vec::with_capacity(batch.len());
        for (i, write) in batch.iter().enumerate() {
            let cleaned = cleaned.get(i).and_then(Option::as_ref);
            match write {
                Write::Call(call, settle) => {
                    let c: &CallRecord = match cleaned {
                        Some(Cleaned::Call(c)) => c,
                        _ => call,
                    };
                    let insert_call = &*insert_call;
                    pending.push(Box::pin(async move {
                        let labels = codec::map_json(&c.labels);
                        let attempts = codec::attempts_json(&c.attempts);
                        let route_labels = codec::map_json(&c.route_labels);
                        let tokens = [
                            codec::count(c.input_tokens),
                            codec::count(c.output_tokens),
                            codec::count(c.cache_read_tokens),
                            codec::count(c.cache_write_tokens),
                        ];
                        let latency = i64::from(c.latency_ms);
                        let ttft = c.ttft_ms.map(i64::from);
                        let n = tx
                            .execute(
                                insert_call,
                                &[
                                    &c.request_id,
                                    &c.task_id,
                                    &c.at_ms,
                                    &c.client,
                                    &labels,
                                    &c.session,
                                    &c.api.as_str(),
                                    &c.role.as_str(),
                                    &c.stream,
                                    &c.requested_model,
                                    &c.router,
                                    &c.planner,
                                    &c.tier,
                                    &c.reasoning,
                                    &c.served_model,
                                    &c.provider,
                                    &c.endpoint,
                                    &attempts,
                                    &c.escalated,
                                    &tokens[0],
                                    &tokens[1],
                                    &tokens[2],
                                    &tokens[3],
                                    &c.cost_nanos,
                                    &c.baseline_nanos,
                                    &latency,
                                    &ttft,
                                    &c.status.as_str(),
                                    &c.error_class,
                                    &c.arm,
                                    &c.shadow,
                                    &route_labels,
                                    &c.policy_view,
                                ],
                            )
                            .await?;
                        Ok((i, n))
                    }));
                    if let Some(reservation) = settle {
                        let delete_reservation = &*delete_reservation;
                        pending.push(Box::pin(async move {
                            tx.execute(delete_reservation, &[&reservation.id]).await?;
                            Ok((i, 0))
                        }));
                        for scope in &reservation.scopes {
                            for window in [Window::Day, Window::Month] {
                                let add_spend = &*add_spend;
                                pending.push(Box::pin(async move {
                                    let start = window.start(c.at_ms);
                                    tx.execute(
                                        add_spend,
                                        &[scope, &window.as_str(), &start, &c.cost_nanos],
                                    )
                                    .await?;
                                    Ok((i, 0))
                                }));
                            }
                        }
                    }
                }
                Write::Task(task) => {
                    let t: &TaskRecord = match cleaned {
                        Some(Cleaned::Task(t)) => t,
                        _ => task,
                    };
                    let upsert_task = &*upsert_task;
                    pending.push(Box::pin(async move {
                        let body = t.body.to_string();
                        let status = t.status.as_str();
                        let n = tx
                            .execute(
                                upsert_task,
                                &[&t.id, &t.client, &status, &t.created_ms, &t.updated_ms, &t.replica, &body],
                            )
                            .await?;
                        Ok((i, n))
                    }));
                }
                Write::Feedback(feedback) => {
                    let f: &FeedbackRecord = match cleaned {
                        Some(Cleaned::Feedback(f)) => f,
                        _ => feedback,
                    };
                    let insert_feedback = &*insert_feedback;
                    pending.push(Box::pin(async move {
                        let (kind, id) = codec::target_parts(&f.target);
                        let labels = codec::map_json(&f.labels);
                        let n = tx
                            .execute(insert_feedback, &[&kind, &id, &f.client, &f.score, &labels, &f.at_ms])
                            .await?;
                        Ok((i, n))
                    }));
                }
                Write::Interrupt {
                    replica,
                    stale_before_ms,
                    now_ms,
                } => pending.push(Box::pin(async move {
                    let sql = format!(
                        "UPDATE tasks SET status = 'interrupted', updated_ms = $3, \
                         body = CASE WHEN jsonb_typeof(body::jsonb) = 'object' \
                                THEN jsonb_set(body::jsonb, '{{status}}', '\"interrupted\"')::text ELSE body END \
                         WHERE status IN {LIVE_TASK_STATUSES} AND (replica = $1 OR replica IN \
                         (SELECT replica FROM tasks GROUP BY replica HAVING MAX(updated_ms) < $2))"
                    );
                    let n = tx.execute(&sql, &[replica, stale_before_ms, now_ms]).await?;
                    Ok((i, n))
                })),
                Write::Prune {
                    before_ms,
                    spend_before_ms,
                    now_ms,
                    limit,
                } => pending.push(Box::pin(async move {
                    let limit = i64::from(*limit);
                    let mut deleted = 0;
                    if let Some(before) = before_ms {
                        deleted += tx
                            .execute(
                                "DELETE FROM calls WHERE id IN (SELECT id FROM calls WHERE at_ms < $1 LIMIT $2)",
                                &[before, &limit],
                            )
                            .await?;
                        deleted += tx
                            .execute(
                                "DELETE FROM feedback WHERE id IN (SELECT id FROM feedback WHERE at_ms < $1 LIMIT $2)",
                                &[before, &limit],
                            )
                            .await?;
                        deleted += tx
                            .execute(
                                &format!(
                                    "DELETE FROM tasks WHERE id IN (SELECT id FROM tasks WHERE updated_ms < $1 \
                                     AND status NOT IN {LIVE_TASK_STATUSES} LIMIT $2)"
                                ),
                                &[before, &limit],
                            )
                            .await?;
                    }
                    tx.execute("DELETE FROM budget_spend WHERE start_ms < $1", &[spend_before_ms])
                        .await?;
                    tx.execute("DELETE FROM budget_reservations WHERE expires_ms <= $1", &[now_ms])
                        .await?;
                    Ok((i, deleted))
                })),
                // The record journal is SQLite's alone.
                Write::Applied(_) => {}
            }
        }
        let done = try_join_all(pending).await?;
        transaction.commit().await?;
        counts.resize(batch.len(), 0);
        for (i, n) in done {
            counts[i] += n;
        }
        Ok(())
    }
}

impl PgWriter {
    fn runtime(&mut self) -> &tokio::runtime::Runtime {
        self.runtime.get_or_insert_with(|| {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a single-threaded runtime for the ledger writer")
        })
    }
}

impl Backend for PgWriter {
    fn commit(&mut self, batch: &[Write], counts: &mut Vec<u64>) -> Result<(), LedgerError> {
        let cleaned: Vec<Option<Cleaned>> = batch
            .iter()
            .map(|w| match w {
                Write::Call(c, _) => clean_call(c).map(|c| Cleaned::Call(Box::new(c))),
                Write::Task(t) => clean_task(t).map(Cleaned::Task),
                Write::Feedback(f) => clean_feedback(f).map(Cleaned::Feedback),
                _ => None,
            })
            .collect();
        self.runtime();
        let PgWriter {
            runtime,
            target,
            connection,
        } = self;
        let runtime = runtime.as_ref().expect("built above");
        runtime.block_on(async {
            if connection.as_ref().is_some_and(|c| c.client.is_closed()) {
                *connection = None;
            }
            if connection.is_none() {
                *connection = Some(WriterConnection::open(target).await?);
            }
            let conn = connection.as_mut().expect("connected above");
            match conn.commit(batch, &cleaned, counts).await {
                Ok(()) => Ok(()),
                Err(e) => {
                    // A fresh connection next time: the failure may have
                    // left this one unusable.
                    let error = if conn.client.is_closed() {
                        LedgerError::Unreachable {
                            target: target.place.clone(),
                            url: target.url.clone(),
                            detail: detail(&e),
                        }
                    } else {
                        target.error(&e)
                    };
                    *connection = None;
                    Err(error)
                }
            }
        })
    }

    fn budget(&mut self, _op: BudgetOp) {
        // PostgreSQL budgets go to the database through the pool; an op
        // sent here is dropped and its waiter sees the ledger closed.
    }

    fn probe(&mut self) -> Result<(), LedgerError> {
        self.runtime();
        let PgWriter {
            runtime,
            target,
            connection,
        } = self;
        let runtime = runtime.as_ref().expect("built above");
        runtime.block_on(async {
            if connection.as_ref().is_none_or(|c| c.client.is_closed()) {
                *connection = Some(WriterConnection::open(target).await?);
            }
            let conn = connection.as_ref().expect("connected above");
            match conn.client.batch_execute("SELECT 1").await {
                Ok(()) => Ok(()),
                Err(e) => {
                    *connection = None;
                    Err(target.error(&e))
                }
            }
        })
    }
}

/// Connections for reads and reservations, on the daemon's runtime.
pub(crate) struct Pool {
    target: Target,
    slots: Vec<Mutex<Option<Client>>>,
    next: AtomicUsize,
}

fn call_from_row(r: &Row) -> Result<CallRecord, String> {
    let get_text = |i: usize| -> Result<String, String> { r.try_get(i).map_err(|e| e.to_string()) };
    macro_rules! get {
        ($i:expr) => {
            r.try_get($i).map_err(|e| e.to_string())?
        };
    }
    Ok(CallRecord {
        request_id: get!(1),
        task_id: get!(2),
        at_ms: get!(3),
        client: get!(4),
        labels: codec::parse_map("labels", &get_text(5)?)?,
        session: get!(6),
        api: codec::parse_api(&get_text(7)?)?,
        role: codec::parse_role(&get_text(8)?)?,
        stream: get!(9),
        requested_model: get!(10),
        router: get!(11),
        planner: get!(12),
        tier: get!(13),
        reasoning: get!(14),
        served_model: get!(15),
        provider: get!(16),
        endpoint: get!(17),
        attempts: codec::parse_attempts(&get_text(18)?)?,
        escalated: get!(19),
        input_tokens: codec::uncount(get!(20)),
        output_tokens: codec::uncount(get!(21)),
        cache_read_tokens: codec::uncount(get!(22)),
        cache_write_tokens: codec::uncount(get!(23)),
        cost_nanos: get!(24),
        baseline_nanos: get!(25),
        latency_ms: codec::millis(get!(26)),
        ttft_ms: r
            .try_get::<_, Option<i64>>(27)
            .map_err(|e| e.to_string())?
            .map(codec::millis),
        status: codec::parse_status(&get_text(28)?)?,
        error_class: get!(29),
        arm: get!(30),
        shadow: get!(31),
        route_labels: codec::parse_map("route_labels", &get_text(32)?)?,
        policy_view: get!(33),
    })
}

impl Pool {
    pub(crate) fn new(target: Target) -> Pool {
        Pool {
            target,
            slots: (0..POOL_SIZE).map(|_| Mutex::new(None)).collect(),
            next: AtomicUsize::new(0),
        }
    }

    /// A connected client: a free one if any, else the next in turn.
    async fn client(&self) -> Result<MutexGuard<'_, Option<Client>>, LedgerError> {
        let start = self.next.fetch_add(1, Ordering::Relaxed) % self.slots.len();
        let mut guard = None;
        for k in 0..self.slots.len() {
            if let Ok(g) = self.slots[(start + k) % self.slots.len()].try_lock() {
                guard = Some(g);
                break;
            }
        }
        let mut guard = match guard {
            Some(g) => g,
            None => self.slots[start].lock().await,
        };
        if guard.as_ref().is_none_or(Client::is_closed) {
            *guard = Some(self.target.connect().await?);
        }
        Ok(guard)
    }

    fn error(&self, e: &tokio_postgres::Error) -> LedgerError {
        self.target.error(e)
    }

    fn decode(&self, message: String) -> LedgerError {
        LedgerError::Store {
            store: self.target.url.clone(),
            detail: format!("a stored row cannot be read: {message}"),
        }
    }

    pub(crate) async fn task(&self, id: &str) -> Result<Option<TaskRecord>, LedgerError> {
        let guard = self.client().await?;
        let client = guard.as_ref().expect("connected");
        let row = client
            .query_opt(
                "SELECT id, client, status, created_ms, updated_ms, replica, body FROM tasks WHERE id = $1",
                &[&id],
            )
            .await
            .map_err(|e| self.error(&e))?;
        let Some(r) = row else { return Ok(None) };
        let body: String = r.get(6);
        let status: String = r.get(2);
        Ok(Some(TaskRecord {
            id: r.get(0),
            client: r.get(1),
            status: codec::parse_task_status(&status).map_err(|m| self.decode(m))?,
            created_ms: r.get(3),
            updated_ms: r.get(4),
            replica: r.get(5),
            body: serde_json::from_str(&body)
                .map_err(|e| self.decode(format!("task body is not JSON: {e}")))?,
        }))
    }

    pub(crate) async fn rollout_state(&self, key: &str) -> Result<Option<String>, LedgerError> {
        let guard = self.client().await?;
        let client = guard.as_ref().expect("connected");
        let row = client
            .query_opt("SELECT value FROM rollouts WHERE key = $1", &[&key])
            .await
            .map_err(|e| self.error(&e))?;
        Ok(row.map(|r| r.get(0)))
    }

    pub(crate) async fn swap_rollout_state(
        &self,
        key: &str,
        expected: Option<&str>,
        value: &str,
        now_ms: i64,
    ) -> Result<bool, LedgerError> {
        let guard = self.client().await?;
        let client = guard.as_ref().expect("connected");
        let changed = match expected {
            None => client
                .execute(
                    "INSERT INTO rollouts (key, value, updated_ms) VALUES ($1, $2, $3) ON CONFLICT (key) DO NOTHING",
                    &[&key, &value, &now_ms],
                )
                .await,
            Some(old) => client
                .execute(
                    "UPDATE rollouts SET value = $2, updated_ms = $3 WHERE key = $1 AND value = $4",
                    &[&key, &value, &now_ms, &old],
                )
                .await,
        }
        .map_err(|e| self.error(&e))?;
        Ok(changed == 1)
    }

    pub(crate) async fn request_client(&self, id: &str) -> Result<Option<String>, LedgerError> {
        let guard = self.client().await?;
        let client = guard.as_ref().expect("connected");
        let row = client
            .query_opt(
                "SELECT client FROM calls WHERE request_id = $1 \
                 UNION ALL SELECT client FROM tasks WHERE id = $1 LIMIT 1",
                &[&id],
            )
            .await
            .map_err(|e| self.error(&e))?;
        Ok(row.map(|r| r.get(0)))
    }

    pub(crate) async fn feedback(
        &self,
        filter: &CallFilter,
    ) -> Result<Vec<FeedbackRecord>, LedgerError> {
        let guard = self.client().await?;
        let client = guard.as_ref().expect("connected");
        let rows = client
            .query(
                "SELECT target_kind, target_id, client, score, labels, at_ms FROM feedback \
                 WHERE at_ms >= $1 AND at_ms < $2 AND ($3::TEXT IS NULL OR client = $3) ORDER BY at_ms, id",
                &[&filter.since_ms, &filter.until_ms, &filter.client],
            )
            .await
            .map_err(|e| self.error(&e))?;
        rows.iter()
            .map(|r| {
                let kind: String = r.get(0);
                let labels: String = r.get(4);
                codec::feedback(&kind, r.get(1), r.get(2), r.get(3), &labels, r.get(5))
                    .map_err(|m| self.decode(m))
            })
            .collect()
    }

    /// One page of the calls of an arm label starting with `arm_prefix`
    /// whose row id is above `after_id` and which started at `since_ms` or
    /// later, in row-id order.
    pub(crate) async fn arm_calls_after(
        &self,
        arm_prefix: &str,
        after_id: i64,
        since_ms: i64,
    ) -> Result<Vec<(i64, CallRecord)>, LedgerError> {
        let sql = format!(
            "SELECT id, {CALL_COLUMNS} FROM calls WHERE id > $1 AND at_ms >= $2 \
             AND substr(arm, 1, $3) = $4 ORDER BY id LIMIT $5"
        );
        let length = arm_prefix.chars().count() as i32;
        let rows = {
            let guard = self.client().await?;
            let client = guard.as_ref().expect("connected");
            client
                .query(&sql, &[&after_id, &since_ms, &length, &arm_prefix, &PAGE])
                .await
                .map_err(|e| self.error(&e))?
        };
        rows.iter()
            .map(|r| {
                let call = call_from_row(r).map_err(|m| self.decode(m))?;
                Ok((r.get(0), call))
            })
            .collect()
    }

    /// The row id just below the first call that started at `since_ms` or
    /// later.
    pub(crate) async fn id_before(&self, since_ms: i64) -> Result<i64, LedgerError> {
        let guard = self.client().await?;
        let client = guard.as_ref().expect("connected");
        let row = client
            .query_one(
                "SELECT coalesce(min(id), 1) - 1 FROM calls WHERE at_ms >= $1",
                &[&since_ms],
            )
            .await
            .map_err(|e| self.error(&e))?;
        Ok(row.get(0))
    }

    pub(crate) async fn calls(
        &self,
        filter: &CallFilter,
        most: usize,
    ) -> Result<Vec<CallRecord>, LedgerError> {
        let client_clause = if filter.client.is_some() {
            "AND client = $6"
        } else {
            "AND $6::TEXT IS NULL"
        };
        let sql = format!(
            "SELECT id, {CALL_COLUMNS} FROM calls WHERE at_ms >= $1 AND at_ms < $2 \
             AND (at_ms > $3 OR (at_ms = $3 AND id > $4)) {client_clause} \
             ORDER BY at_ms, id LIMIT $5"
        );
        let mut out = Vec::new();
        let mut after = (i64::MIN, i64::MIN);
        loop {
            // Each page on its own: a large window never holds a
            // connection or a snapshot for long.
            let rows = {
                let guard = self.client().await?;
                let client = guard.as_ref().expect("connected");
                client
                    .query(
                        &sql,
                        &[
                            &filter.since_ms,
                            &filter.until_ms,
                            &after.0,
                            &after.1,
                            &PAGE,
                            &filter.client,
                        ],
                    )
                    .await
                    .map_err(|e| self.error(&e))?
            };
            let full = rows.len() as i64 == PAGE;
            for r in &rows {
                let call = call_from_row(r).map_err(|m| self.decode(m))?;
                after = (call.at_ms, r.get(0));
                out.push(call);
            }
            if !full || out.len() > most {
                return Ok(out);
            }
        }
    }

    /// Reserves in the database under a transaction-scoped advisory lock
    /// per scope (taken in key order, so two reservations never deadlock):
    /// every replica's reservations of a scope are serialised, and each
    /// sees the ones before it.
    pub(crate) async fn reserve(
        &self,
        scopes: &[BudgetScope],
        amount: Nanos,
        now_ms: i64,
        expires_ms: i64,
    ) -> Result<Reservation, ReserveError> {
        let mut guard = self.client().await.map_err(ReserveError::Store)?;
        let client = guard.as_mut().expect("connected");
        let store = |e: tokio_postgres::Error| ReserveError::Store(self.target.error(&e));
        let tx = client.transaction().await.map_err(store)?;
        for scope in scopes {
            tx.execute(
                "SELECT pg_advisory_xact_lock(hashtextextended($1, 0))",
                &[&scope.key],
            )
            .await
            .map_err(store)?;
        }
        let (day_start, month_start) = (Window::Day.start(now_ms), Window::Month.start(now_ms));
        let mut headroom = Vec::new();
        for scope in scopes {
            if scope.daily_cap.is_none() && scope.monthly_cap.is_none() {
                continue;
            }
            // One statement, one snapshot: a settle committing meanwhile
            // is seen whole (its spend and its released hold) or not at all.
            let row = tx
                .query_one(SPEND, &[&scope.key, &day_start, &month_start, &now_ms])
                .await
                .map_err(store)?;
            if let Some(left) =
                budget::check(scope, now_ms, row.get(0), row.get(1), row.get(2), amount)
                    .map_err(ReserveError::Refused)?
            {
                headroom.push((scope.key.clone(), left));
            }
        }
        let reservation = Reservation {
            id: budget::new_reservation_id(),
            scopes: scopes.iter().map(|s| s.key.clone()).collect(),
            amount,
            expires_ms,
            headroom,
        };
        for scope in &reservation.scopes {
            tx.execute(
                "INSERT INTO budget_reservations (id, scope, amount_nanos, expires_ms) VALUES ($1, $2, $3, $4)",
                &[&reservation.id, scope, &amount, &expires_ms],
            )
            .await
            .map_err(store)?;
        }
        tx.commit().await.map_err(store)?;
        Ok(reservation)
    }

    pub(crate) async fn release(&self, reservation: &Reservation) -> Result<(), LedgerError> {
        let guard = self.client().await?;
        let client = guard.as_ref().expect("connected");
        client
            .execute(DELETE_RESERVATION, &[&reservation.id])
            .await
            .map_err(|e| self.error(&e))?;
        Ok(())
    }

    pub(crate) async fn spent(&self, scope: &str, now_ms: i64) -> Result<Spend, LedgerError> {
        let guard = self.client().await?;
        let client = guard.as_ref().expect("connected");
        let row = client
            .query_one(
                SPEND,
                &[
                    &scope,
                    &Window::Day.start(now_ms),
                    &Window::Month.start(now_ms),
                    &now_ms,
                ],
            )
            .await
            .map_err(|e| self.error(&e))?;
        Ok(Spend {
            day_spent: row.get(0),
            month_spent: row.get(1),
            reserved: row.get(2),
            day_resets_at_ms: Window::Day.next_start(now_ms),
            month_resets_at_ms: Window::Month.next_start(now_ms),
        })
    }
}

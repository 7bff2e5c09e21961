-- Pointsman ledger, schema version 1 (SQLite).
-- Money is in nano-USD; times are Unix milliseconds (UTC); JSON is text.

CREATE TABLE calls (
    id INTEGER PRIMARY KEY,
    request_id TEXT NOT NULL,
    task_id TEXT,
    at_ms INTEGER NOT NULL,
    client TEXT NOT NULL,
    labels TEXT NOT NULL,
    session TEXT,
    api TEXT NOT NULL,
    role TEXT NOT NULL,
    stream INTEGER NOT NULL,
    requested_model TEXT NOT NULL,
    router TEXT,
    planner TEXT,
    tier TEXT,
    reasoning TEXT,
    served_model TEXT,
    provider TEXT,
    endpoint TEXT,
    attempts TEXT NOT NULL,
    escalated INTEGER NOT NULL,
    input_tokens INTEGER NOT NULL,
    output_tokens INTEGER NOT NULL,
    cache_read_tokens INTEGER NOT NULL,
    cache_write_tokens INTEGER NOT NULL,
    cost_nanos INTEGER NOT NULL,
    baseline_nanos INTEGER NOT NULL,
    latency_ms INTEGER NOT NULL,
    ttft_ms INTEGER,
    status TEXT NOT NULL,
    error_class TEXT,
    arm TEXT,
    shadow TEXT,
    route_labels TEXT NOT NULL,
    policy_view TEXT
);
CREATE INDEX calls_at ON calls (at_ms);
CREATE INDEX calls_client_at ON calls (client, at_ms);
CREATE INDEX calls_request ON calls (request_id);
CREATE INDEX calls_task ON calls (task_id) WHERE task_id IS NOT NULL;
CREATE INDEX calls_session ON calls (session) WHERE session IS NOT NULL;

CREATE TABLE tasks (
    id TEXT PRIMARY KEY,
    client TEXT NOT NULL,
    status TEXT NOT NULL,
    created_ms INTEGER NOT NULL,
    updated_ms INTEGER NOT NULL,
    replica TEXT NOT NULL,
    body TEXT NOT NULL
);
CREATE INDEX tasks_status_replica ON tasks (status, replica);
CREATE INDEX tasks_updated ON tasks (updated_ms);

CREATE TABLE feedback (
    id INTEGER PRIMARY KEY,
    target_kind TEXT NOT NULL,
    target_id TEXT NOT NULL,
    client TEXT NOT NULL,
    score REAL NOT NULL,
    labels TEXT NOT NULL,
    at_ms INTEGER NOT NULL
);
CREATE INDEX feedback_target ON feedback (target_kind, target_id);
CREATE INDEX feedback_at ON feedback (at_ms);

-- Settled spend per budget scope ("client:NAME", "label:KEY=VALUE") and
-- window ("day", "month") starting at start_ms.
CREATE TABLE budget_spend (
    scope TEXT NOT NULL,
    period TEXT NOT NULL,
    start_ms INTEGER NOT NULL,
    spent_nanos INTEGER NOT NULL,
    PRIMARY KEY (scope, period, start_ms)
);

-- Open reservations. On SQLite the daemon holds them in memory (one daemon
-- per file); the table keeps both backends' schemas alike.
CREATE TABLE budget_reservations (
    id INTEGER NOT NULL,
    scope TEXT NOT NULL,
    amount_nanos INTEGER NOT NULL,
    expires_ms INTEGER NOT NULL,
    PRIMARY KEY (id, scope)
);
CREATE INDEX budget_reservations_scope ON budget_reservations (scope, expires_ms);

-- Rollout state (arms, assignments, guards): key to JSON.
CREATE TABLE rollouts (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL,
    updated_ms INTEGER NOT NULL
);

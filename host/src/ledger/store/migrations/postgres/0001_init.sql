-- Pointsman ledger, schema version 1 (PostgreSQL).
-- Money is in nano-USD; times are Unix milliseconds (UTC); JSON is text.

CREATE TABLE calls (
    id BIGSERIAL PRIMARY KEY,
    request_id TEXT NOT NULL,
    task_id TEXT,
    at_ms BIGINT NOT NULL,
    client TEXT NOT NULL,
    labels TEXT NOT NULL,
    session TEXT,
    api TEXT NOT NULL,
    role TEXT NOT NULL,
    stream BOOLEAN NOT NULL,
    requested_model TEXT NOT NULL,
    router TEXT,
    planner TEXT,
    tier TEXT,
    reasoning TEXT,
    served_model TEXT,
    provider TEXT,
    endpoint TEXT,
    attempts TEXT NOT NULL,
    escalated BOOLEAN NOT NULL,
    input_tokens BIGINT NOT NULL,
    output_tokens BIGINT NOT NULL,
    cache_read_tokens BIGINT NOT NULL,
    cache_write_tokens BIGINT NOT NULL,
    cost_nanos BIGINT NOT NULL,
    baseline_nanos BIGINT NOT NULL,
    latency_ms BIGINT NOT NULL,
    ttft_ms BIGINT,
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
    created_ms BIGINT NOT NULL,
    updated_ms BIGINT NOT NULL,
    replica TEXT NOT NULL,
    body TEXT NOT NULL
);
CREATE INDEX tasks_status_replica ON tasks (status, replica);
CREATE INDEX tasks_updated ON tasks (updated_ms);

CREATE TABLE feedback (
    id BIGSERIAL PRIMARY KEY,
    target_kind TEXT NOT NULL,
    target_id TEXT NOT NULL,
    client TEXT NOT NULL,
    score DOUBLE PRECISION NOT NULL,
    labels TEXT NOT NULL,
    at_ms BIGINT NOT NULL
);
CREATE INDEX feedback_target ON feedback (target_kind, target_id);
CREATE INDEX feedback_at ON feedback (at_ms);

-- Settled spend per budget scope ("client:NAME", "label:KEY=VALUE") and
-- window ("day", "month") starting at start_ms.
CREATE TABLE budget_spend (
    scope TEXT NOT NULL,
    period TEXT NOT NULL,
    start_ms BIGINT NOT NULL,
    spent_nanos BIGINT NOT NULL,
    PRIMARY KEY (scope, period, start_ms)
);

-- Open reservations, shared by every replica; a reservation expires at
-- expires_ms (a crashed daemon's holds do not block a cap forever).
CREATE TABLE budget_reservations (
    id BIGINT NOT NULL,
    scope TEXT NOT NULL,
    amount_nanos BIGINT NOT NULL,
    expires_ms BIGINT NOT NULL,
    PRIMARY KEY (id, scope)
);
CREATE INDEX budget_reservations_scope ON budget_reservations (scope, expires_ms);

-- Rollout state (arms, assignments, guards): key to JSON.
CREATE TABLE rollouts (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL,
    updated_ms BIGINT NOT NULL
);

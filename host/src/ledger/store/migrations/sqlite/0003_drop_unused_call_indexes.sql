-- Pointsman ledger, schema version 3 (SQLite): drops two indexes of the
-- calls table that no query reads. Reports, /v1/usage and the rollout
-- guards read calls by time (calls_at) or by client and time
-- (calls_client_at), feedback finds a request by calls_request; nothing
-- looks calls up by task or by session. Each index costs every inserted
-- row a B-tree insert and the file its pages (agents send a session id
-- with nearly every request). Dropping them made no difference to the
-- load benchmark within its noise (BENCHMARKS.md, "With the ledger on the
-- request path"): a row's 33 bound columns cost more than its indexes.

DROP INDEX IF EXISTS calls_task;
DROP INDEX IF EXISTS calls_session;

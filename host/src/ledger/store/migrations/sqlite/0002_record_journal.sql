-- Pointsman ledger, schema version 2 (SQLite): the record journal's
-- high-water mark. Call records are appended to a journal file beside the
-- database before their answer ends and inserted here in batches; the
-- batch that inserts them raises applied_seq in the same transaction, so
-- the replay after a crash applies each journaled record exactly once
-- (host/src/ledger/store/journal.rs).

CREATE TABLE record_journal (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    applied_seq INTEGER NOT NULL
);
INSERT INTO record_journal (id, applied_seq) VALUES (1, 0);

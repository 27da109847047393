-- The tamper-evident logs, SQLite. Keep equivalent to ../postgres/0007_ledger.sql (tested).
--
-- Each tenant has two append-only logs, timeline and audit, each an RFC 6962 Merkle
-- tree (custos-ledger). timeline_events and audit_records hold one row per leaf, in leaf
-- order: `record` is the leaf's exact bytes (the record's canonical JSON), the other
-- columns are copies of its fields for queries. ledger_nodes keeps the hash of every
-- complete subtree (level 0: the leaves), so proofs read O(log n) rows; ledger_heads the
-- size and root of each log; ledger_checkpoints every signed checkpoint.
--
-- Nothing here is ever updated or deleted, and triggers refuse it: a record leaves its
-- table only when a tombstone in ledger_prunes covers it and no legal hold is active
-- for its tenant; its leaf hash stays in ledger_nodes, so every checkpoint still verifies.
-- ledger_heads is the one table rewritten in place (its size and root are recomputable
-- from ledger_nodes, and verification does recompute them).

CREATE TABLE timeline_events (
    tenant_id TEXT NOT NULL,
    leaf_index INTEGER NOT NULL,
    event_id TEXT NOT NULL,
    ts_us INTEGER NOT NULL,
    kind TEXT NOT NULL,
    actor TEXT,
    outcome TEXT,
    resource_type TEXT,
    resource_id TEXT,
    project_id TEXT,
    request_id TEXT,
    trace_id TEXT,
    record TEXT NOT NULL,
    received_at_us INTEGER NOT NULL,
    PRIMARY KEY (tenant_id, leaf_index)
) WITHOUT ROWID;
CREATE UNIQUE INDEX timeline_events_by_event_id ON timeline_events (tenant_id, event_id);
CREATE INDEX timeline_events_by_ts ON timeline_events (tenant_id, ts_us, leaf_index);
CREATE INDEX timeline_events_by_trace ON timeline_events (tenant_id, trace_id);

CREATE TABLE audit_records (
    tenant_id TEXT NOT NULL,
    leaf_index INTEGER NOT NULL,
    event_id TEXT NOT NULL,
    ts_us INTEGER NOT NULL,
    kind TEXT NOT NULL,
    actor TEXT,
    outcome TEXT,
    resource_type TEXT,
    resource_id TEXT,
    project_id TEXT,
    request_id TEXT,
    trace_id TEXT,
    record TEXT NOT NULL,
    received_at_us INTEGER NOT NULL,
    PRIMARY KEY (tenant_id, leaf_index)
) WITHOUT ROWID;
CREATE UNIQUE INDEX audit_records_by_event_id ON audit_records (tenant_id, event_id);
CREATE INDEX audit_records_by_ts ON audit_records (tenant_id, ts_us, leaf_index);
CREATE INDEX audit_records_by_trace ON audit_records (tenant_id, trace_id);

CREATE TABLE ledger_nodes (
    tenant_id TEXT NOT NULL,
    log TEXT NOT NULL,
    level INTEGER NOT NULL,
    idx INTEGER NOT NULL,
    hash BLOB NOT NULL,
    PRIMARY KEY (tenant_id, log, level, idx)
) WITHOUT ROWID;

CREATE TABLE ledger_heads (
    tenant_id TEXT NOT NULL,
    log TEXT NOT NULL,
    size INTEGER NOT NULL,
    root BLOB NOT NULL,
    updated_at_us INTEGER NOT NULL,
    PRIMARY KEY (tenant_id, log)
) WITHOUT ROWID;

CREATE TABLE ledger_checkpoints (
    tenant_id TEXT NOT NULL,
    log TEXT NOT NULL,
    size INTEGER NOT NULL,
    key_id TEXT NOT NULL,
    root BLOB NOT NULL,
    note TEXT NOT NULL,
    created_at_us INTEGER NOT NULL,
    PRIMARY KEY (tenant_id, log, size, key_id)
) WITHOUT ROWID;
CREATE INDEX ledger_checkpoints_by_time ON ledger_checkpoints (tenant_id, log, created_at_us);

-- A tombstone: records of `log` with leaf_index < before_index may be deleted (their
-- content; their leaf hashes stay). Written in the same transaction as the timeline
-- event that announces it.
CREATE TABLE ledger_prunes (
    tenant_id TEXT NOT NULL,
    log TEXT NOT NULL,
    before_index INTEGER NOT NULL,
    received_before_us INTEGER NOT NULL,
    policy TEXT NOT NULL,
    pruned_at_us INTEGER NOT NULL,
    PRIMARY KEY (tenant_id, log, before_index)
) WITHOUT ROWID;

-- Legal holds: while one is active (released_at_us NULL), retention deletes nothing of
-- the tenant's.
CREATE TABLE legal_holds (
    tenant_id TEXT NOT NULL,
    id TEXT NOT NULL,
    reason TEXT NOT NULL,
    created_by TEXT NOT NULL,
    created_at_us INTEGER NOT NULL,
    released_at_us INTEGER,
    PRIMARY KEY (tenant_id, id)
) WITHOUT ROWID;

-- Checkpoint signing keys (public halves; private keys live in files, never here).
CREATE TABLE signing_keys (
    key_id TEXT NOT NULL PRIMARY KEY,
    algorithm TEXT NOT NULL,
    public_key BLOB NOT NULL,
    created_at_us INTEGER NOT NULL,
    not_before_us INTEGER NOT NULL,
    not_after_us INTEGER
) WITHOUT ROWID;

CREATE TRIGGER timeline_events_append_only BEFORE UPDATE ON timeline_events
BEGIN SELECT RAISE(ABORT, 'timeline_events is append-only'); END;
CREATE TRIGGER timeline_events_pruned_only BEFORE DELETE ON timeline_events
WHEN NOT EXISTS (SELECT 1 FROM ledger_prunes AS p
                 WHERE p.tenant_id = OLD.tenant_id AND p.log = 'timeline' AND OLD.leaf_index < p.before_index)
  OR EXISTS (SELECT 1 FROM legal_holds AS h WHERE h.tenant_id = OLD.tenant_id AND h.released_at_us IS NULL)
BEGIN SELECT RAISE(ABORT, 'timeline_events is append-only: only retention under a tombstone, with no legal hold, removes records'); END;

CREATE TRIGGER audit_records_append_only BEFORE UPDATE ON audit_records
BEGIN SELECT RAISE(ABORT, 'audit_records is append-only'); END;
CREATE TRIGGER audit_records_pruned_only BEFORE DELETE ON audit_records
WHEN NOT EXISTS (SELECT 1 FROM ledger_prunes AS p
                 WHERE p.tenant_id = OLD.tenant_id AND p.log = 'audit' AND OLD.leaf_index < p.before_index)
  OR EXISTS (SELECT 1 FROM legal_holds AS h WHERE h.tenant_id = OLD.tenant_id AND h.released_at_us IS NULL)
BEGIN SELECT RAISE(ABORT, 'audit_records is append-only: only retention under a tombstone, with no legal hold, removes records'); END;

CREATE TRIGGER ledger_nodes_append_only_update BEFORE UPDATE ON ledger_nodes
BEGIN SELECT RAISE(ABORT, 'ledger_nodes is append-only'); END;
CREATE TRIGGER ledger_nodes_append_only_delete BEFORE DELETE ON ledger_nodes
BEGIN SELECT RAISE(ABORT, 'ledger_nodes is append-only'); END;
CREATE TRIGGER ledger_checkpoints_append_only_update BEFORE UPDATE ON ledger_checkpoints
BEGIN SELECT RAISE(ABORT, 'ledger_checkpoints is append-only'); END;
CREATE TRIGGER ledger_checkpoints_append_only_delete BEFORE DELETE ON ledger_checkpoints
BEGIN SELECT RAISE(ABORT, 'ledger_checkpoints is append-only'); END;
CREATE TRIGGER ledger_prunes_append_only_update BEFORE UPDATE ON ledger_prunes
BEGIN SELECT RAISE(ABORT, 'ledger_prunes is append-only'); END;
CREATE TRIGGER ledger_prunes_append_only_delete BEFORE DELETE ON ledger_prunes
BEGIN SELECT RAISE(ABORT, 'ledger_prunes is append-only'); END;

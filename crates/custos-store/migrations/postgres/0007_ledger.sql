-- The tamper-evident logs, PostgreSQL. Keep equivalent to ../sqlite/0007_ledger.sql (tested).
--
-- Each tenant has two append-only logs, timeline and audit, each an RFC 6962 Merkle
-- tree (custos-ledger). timeline_events and audit_records hold one row per leaf, in leaf
-- order: `record` is the leaf's exact bytes (the record's canonical JSON), the other
-- columns are copies of its fields for queries. ledger_nodes keeps the hash of every
-- complete subtree (level 0: the leaves), so proofs read O(log n) rows; ledger_heads the
-- size and root of each log; ledger_checkpoints every signed checkpoint.
--
-- Nothing here is ever updated or deleted, and triggers refuse it (the owner included,
-- unless it drops them): a record leaves its table only when a tombstone in
-- ledger_prunes covers it and no legal hold is active for its tenant; its leaf hash stays
-- in ledger_nodes, so every checkpoint still verifies. The service's role, custos_app,
-- holds no UPDATE, DELETE or TRUNCATE privilege on these tables either: retention deletes
-- through custos_prune_log(), which runs as the owner and only within the tenant of the
-- transaction.
-- ledger_heads is the one table rewritten in place (its size and root are recomputable
-- from ledger_nodes, and verification does recompute them).

CREATE TABLE timeline_events (
    tenant_id TEXT NOT NULL,
    leaf_index BIGINT NOT NULL,
    event_id TEXT NOT NULL,
    ts_us BIGINT NOT NULL,
    kind TEXT NOT NULL,
    actor TEXT,
    outcome TEXT,
    resource_type TEXT,
    resource_id TEXT,
    project_id TEXT,
    request_id TEXT,
    trace_id TEXT,
    record TEXT NOT NULL,
    received_at_us BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, leaf_index)
);
CREATE UNIQUE INDEX timeline_events_by_event_id ON timeline_events (tenant_id, event_id);
CREATE INDEX timeline_events_by_ts ON timeline_events (tenant_id, ts_us, leaf_index);
CREATE INDEX timeline_events_by_trace ON timeline_events (tenant_id, trace_id);

CREATE TABLE audit_records (
    tenant_id TEXT NOT NULL,
    leaf_index BIGINT NOT NULL,
    event_id TEXT NOT NULL,
    ts_us BIGINT NOT NULL,
    kind TEXT NOT NULL,
    actor TEXT,
    outcome TEXT,
    resource_type TEXT,
    resource_id TEXT,
    project_id TEXT,
    request_id TEXT,
    trace_id TEXT,
    record TEXT NOT NULL,
    received_at_us BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, leaf_index)
);
CREATE UNIQUE INDEX audit_records_by_event_id ON audit_records (tenant_id, event_id);
CREATE INDEX audit_records_by_ts ON audit_records (tenant_id, ts_us, leaf_index);
CREATE INDEX audit_records_by_trace ON audit_records (tenant_id, trace_id);

CREATE TABLE ledger_nodes (
    tenant_id TEXT NOT NULL,
    log TEXT NOT NULL,
    level BIGINT NOT NULL,
    idx BIGINT NOT NULL,
    hash BYTEA NOT NULL,
    PRIMARY KEY (tenant_id, log, level, idx)
);

CREATE TABLE ledger_heads (
    tenant_id TEXT NOT NULL,
    log TEXT NOT NULL,
    size BIGINT NOT NULL,
    root BYTEA NOT NULL,
    updated_at_us BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, log)
);

CREATE TABLE ledger_checkpoints (
    tenant_id TEXT NOT NULL,
    log TEXT NOT NULL,
    size BIGINT NOT NULL,
    key_id TEXT NOT NULL,
    root BYTEA NOT NULL,
    note TEXT NOT NULL,
    created_at_us BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, log, size, key_id)
);
CREATE INDEX ledger_checkpoints_by_time ON ledger_checkpoints (tenant_id, log, created_at_us);

-- A tombstone: records of `log` with leaf_index < before_index may be deleted (their
-- content; their leaf hashes stay). Written in the same transaction as the timeline
-- event that announces it.
CREATE TABLE ledger_prunes (
    tenant_id TEXT NOT NULL,
    log TEXT NOT NULL,
    before_index BIGINT NOT NULL,
    received_before_us BIGINT NOT NULL,
    policy TEXT NOT NULL,
    pruned_at_us BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, log, before_index)
);

-- Legal holds: while one is active (released_at_us NULL), retention deletes nothing of
-- the tenant's.
CREATE TABLE legal_holds (
    tenant_id TEXT NOT NULL,
    id TEXT NOT NULL,
    reason TEXT NOT NULL,
    created_by TEXT NOT NULL,
    created_at_us BIGINT NOT NULL,
    released_at_us BIGINT,
    PRIMARY KEY (tenant_id, id)
);

-- Checkpoint signing keys (public halves; private keys live in files, never here).
CREATE TABLE signing_keys (
    key_id TEXT NOT NULL PRIMARY KEY,
    algorithm TEXT NOT NULL,
    public_key BYTEA NOT NULL,
    created_at_us BIGINT NOT NULL,
    not_before_us BIGINT NOT NULL,
    not_after_us BIGINT
);

CREATE FUNCTION custos_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION '% is append-only', TG_TABLE_NAME USING ERRCODE = 'integrity_constraint_violation';
END
$$;

-- TG_ARGV[0]: the log the table holds.
CREATE FUNCTION custos_pruned_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM ledger_prunes AS p
                   WHERE p.tenant_id = OLD.tenant_id AND p.log = TG_ARGV[0] AND OLD.leaf_index < p.before_index)
       OR EXISTS (SELECT 1 FROM legal_holds AS h WHERE h.tenant_id = OLD.tenant_id AND h.released_at_us IS NULL) THEN
        RAISE EXCEPTION '% is append-only: only retention under a tombstone, with no legal hold, removes records',
            TG_TABLE_NAME USING ERRCODE = 'integrity_constraint_violation';
    END IF;
    RETURN OLD;
END
$$;

CREATE TRIGGER timeline_events_append_only BEFORE UPDATE ON timeline_events
    FOR EACH ROW EXECUTE FUNCTION custos_refuse_change();
CREATE TRIGGER timeline_events_pruned_only BEFORE DELETE ON timeline_events
    FOR EACH ROW EXECUTE FUNCTION custos_pruned_only('timeline');
CREATE TRIGGER timeline_events_no_truncate BEFORE TRUNCATE ON timeline_events
    FOR EACH STATEMENT EXECUTE FUNCTION custos_refuse_change();
CREATE TRIGGER audit_records_append_only BEFORE UPDATE ON audit_records
    FOR EACH ROW EXECUTE FUNCTION custos_refuse_change();
CREATE TRIGGER audit_records_pruned_only BEFORE DELETE ON audit_records
    FOR EACH ROW EXECUTE FUNCTION custos_pruned_only('audit');
CREATE TRIGGER audit_records_no_truncate BEFORE TRUNCATE ON audit_records
    FOR EACH STATEMENT EXECUTE FUNCTION custos_refuse_change();
CREATE TRIGGER ledger_nodes_append_only BEFORE UPDATE OR DELETE ON ledger_nodes
    FOR EACH ROW EXECUTE FUNCTION custos_refuse_change();
CREATE TRIGGER ledger_nodes_no_truncate BEFORE TRUNCATE ON ledger_nodes
    FOR EACH STATEMENT EXECUTE FUNCTION custos_refuse_change();
CREATE TRIGGER ledger_checkpoints_append_only BEFORE UPDATE OR DELETE ON ledger_checkpoints
    FOR EACH ROW EXECUTE FUNCTION custos_refuse_change();
CREATE TRIGGER ledger_checkpoints_no_truncate BEFORE TRUNCATE ON ledger_checkpoints
    FOR EACH STATEMENT EXECUTE FUNCTION custos_refuse_change();
CREATE TRIGGER ledger_prunes_append_only BEFORE UPDATE OR DELETE ON ledger_prunes
    FOR EACH ROW EXECUTE FUNCTION custos_refuse_change();
CREATE TRIGGER ledger_prunes_no_truncate BEFORE TRUNCATE ON ledger_prunes
    FOR EACH STATEMENT EXECUTE FUNCTION custos_refuse_change();

-- Retention's one way to delete: the records of the transaction's tenant below a
-- tombstone (the trigger checks the tombstone and the holds again). Returns how many.
CREATE FUNCTION custos_prune_log(p_log TEXT, p_before BIGINT) RETURNS BIGINT
LANGUAGE plpgsql SECURITY DEFINER SET search_path FROM CURRENT AS $$
DECLARE
    tenant TEXT := current_setting('custos.tenant_id', true);
    deleted BIGINT;
BEGIN
    IF tenant IS NULL OR tenant = '' THEN
        RAISE EXCEPTION 'custos_prune_log needs custos.tenant_id';
    END IF;
    IF p_log = 'timeline' THEN
        DELETE FROM timeline_events WHERE tenant_id = tenant AND leaf_index < p_before;
    ELSIF p_log = 'audit' THEN
        DELETE FROM audit_records WHERE tenant_id = tenant AND leaf_index < p_before;
    ELSE
        RAISE EXCEPTION 'unknown log %', p_log;
    END IF;
    GET DIAGNOSTICS deleted = ROW_COUNT;
    RETURN deleted;
END
$$;
REVOKE ALL ON FUNCTION custos_prune_log(TEXT, BIGINT) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION custos_prune_log(TEXT, BIGINT) TO custos_app;

REVOKE ALL ON timeline_events, audit_records, ledger_nodes, ledger_checkpoints, ledger_prunes,
    ledger_heads, legal_holds, signing_keys FROM PUBLIC, custos_app;
GRANT SELECT, INSERT ON timeline_events, audit_records, ledger_nodes, ledger_checkpoints, ledger_prunes TO custos_app;
GRANT SELECT, INSERT, UPDATE ON ledger_heads, legal_holds, signing_keys TO custos_app;

ALTER TABLE timeline_events ENABLE ROW LEVEL SECURITY;
ALTER TABLE timeline_events FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON timeline_events
    USING (tenant_id = current_setting('custos.tenant_id', true))
    WITH CHECK (tenant_id = current_setting('custos.tenant_id', true));

ALTER TABLE audit_records ENABLE ROW LEVEL SECURITY;
ALTER TABLE audit_records FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON audit_records
    USING (tenant_id = current_setting('custos.tenant_id', true))
    WITH CHECK (tenant_id = current_setting('custos.tenant_id', true));

ALTER TABLE ledger_nodes ENABLE ROW LEVEL SECURITY;
ALTER TABLE ledger_nodes FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON ledger_nodes
    USING (tenant_id = current_setting('custos.tenant_id', true))
    WITH CHECK (tenant_id = current_setting('custos.tenant_id', true));

ALTER TABLE ledger_heads ENABLE ROW LEVEL SECURITY;
ALTER TABLE ledger_heads FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON ledger_heads
    USING (tenant_id = current_setting('custos.tenant_id', true))
    WITH CHECK (tenant_id = current_setting('custos.tenant_id', true));

ALTER TABLE ledger_checkpoints ENABLE ROW LEVEL SECURITY;
ALTER TABLE ledger_checkpoints FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON ledger_checkpoints
    USING (tenant_id = current_setting('custos.tenant_id', true))
    WITH CHECK (tenant_id = current_setting('custos.tenant_id', true));

ALTER TABLE ledger_prunes ENABLE ROW LEVEL SECURITY;
ALTER TABLE ledger_prunes FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON ledger_prunes
    USING (tenant_id = current_setting('custos.tenant_id', true))
    WITH CHECK (tenant_id = current_setting('custos.tenant_id', true));

ALTER TABLE legal_holds ENABLE ROW LEVEL SECURITY;
ALTER TABLE legal_holds FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON legal_holds
    USING (tenant_id = current_setting('custos.tenant_id', true))
    WITH CHECK (tenant_id = current_setting('custos.tenant_id', true));

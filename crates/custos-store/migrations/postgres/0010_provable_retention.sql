-- Retention that proves itself, PostgreSQL. Keep equivalent to ../sqlite/0010_provable_retention.sql (tested).
--
-- A prune is itself a leaf of the log it prunes: the retention record
-- (custos.retention.pruned) is appended in the prune's transaction, before anything is
-- removed, and its tombstone row names it (leaf_index) and the retention that allowed
-- it (retention_days). The database then removes a record only when
--   - a tombstone covers its leaf and names a retention record present in the log,
--   - the record was received before the tombstone's cutoff,
--   - the cutoff is at least the tombstone's retention before the database's clock,
--   - that retention is at least the tenant's (the timeline: tenants.retention_days,
--     at least 1 day; the audit log: 365 days, the least custos allows), and
--   - no legal hold is active.
-- A legal hold is released only with its release in the audit log (release_leaf names
-- the custos.hold.released record), so a release that enables a prune is on the record
-- before it.

ALTER TABLE ledger_prunes ADD COLUMN retention_days BIGINT NOT NULL DEFAULT 0;
ALTER TABLE ledger_prunes ADD COLUMN leaf_index BIGINT;
ALTER TABLE legal_holds ADD COLUMN release_leaf BIGINT;

-- TG_ARGV[0]: the log the table holds. Runs as the caller (custos_prune_log's owner);
-- the reads below see the transaction's tenant's rows.
CREATE OR REPLACE FUNCTION custos_pruned_only() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    now_us BIGINT := (extract(epoch FROM clock_timestamp()) * 1000000)::BIGINT;
    floor_days BIGINT;
BEGIN
    IF TG_ARGV[0] = 'timeline' THEN
        SELECT GREATEST(1, t.retention_days) INTO floor_days FROM tenants AS t WHERE t.id = OLD.tenant_id;
    ELSE
        floor_days := 365;
    END IF;
    IF NOT EXISTS (
        SELECT 1 FROM ledger_prunes AS p
        WHERE p.tenant_id = OLD.tenant_id AND p.log = TG_ARGV[0] AND OLD.leaf_index < p.before_index
          AND OLD.received_at_us < p.received_before_us
          AND p.received_before_us <= now_us - p.retention_days * 86400000000
          AND p.retention_days >= COALESCE(floor_days, 1)
          AND CASE TG_ARGV[0]
              WHEN 'timeline' THEN EXISTS (SELECT 1 FROM timeline_events AS r WHERE r.tenant_id = p.tenant_id
                                           AND r.leaf_index = p.leaf_index AND r.kind = 'custos.retention.pruned')
              ELSE EXISTS (SELECT 1 FROM audit_records AS r WHERE r.tenant_id = p.tenant_id
                           AND r.leaf_index = p.leaf_index AND r.kind = 'custos.retention.pruned')
              END)
       OR EXISTS (SELECT 1 FROM legal_holds AS h WHERE h.tenant_id = OLD.tenant_id AND h.released_at_us IS NULL) THEN
        RAISE EXCEPTION '% is append-only: only retention removes records, under a retention record in the log, older than the tenant''s retention, with no legal hold',
            TG_TABLE_NAME USING ERRCODE = 'integrity_constraint_violation';
    END IF;
    RETURN OLD;
END
$$;

-- A hold changes once: its release, naming the audit record of it.
CREATE FUNCTION custos_hold_released_on_the_record() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        RAISE EXCEPTION 'legal_holds are never deleted' USING ERRCODE = 'integrity_constraint_violation';
    END IF;
    IF OLD.released_at_us IS NOT NULL OR NEW.released_at_us IS NULL
       OR NEW.tenant_id IS DISTINCT FROM OLD.tenant_id OR NEW.id IS DISTINCT FROM OLD.id
       OR NEW.reason IS DISTINCT FROM OLD.reason OR NEW.created_by IS DISTINCT FROM OLD.created_by
       OR NEW.created_at_us IS DISTINCT FROM OLD.created_at_us
       OR NOT EXISTS (SELECT 1 FROM audit_records AS r
                      WHERE r.tenant_id = NEW.tenant_id AND r.leaf_index = NEW.release_leaf
                        AND r.kind = 'custos.hold.released' AND r.resource_id = NEW.id) THEN
        RAISE EXCEPTION 'legal_holds: a hold is released once, with its release in the audit log (custos.hold.released)'
            USING ERRCODE = 'integrity_constraint_violation';
    END IF;
    RETURN NEW;
END
$$;
CREATE TRIGGER legal_holds_released_on_the_record BEFORE UPDATE OR DELETE ON legal_holds
    FOR EACH ROW EXECUTE FUNCTION custos_hold_released_on_the_record();

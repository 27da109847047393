-- Releases on the signed log, and functions that cannot be fooled by a session's own
-- tables, PostgreSQL. Keep equivalent to ../sqlite/0012_holds_on_the_log.sql (tested).
--
-- A hold's release must name an audit record that is a leaf of the log: its stored leaf
-- hash is the hash of its bytes, below the log's head, so the next checkpoint signs it.
-- A row merely inserted into audit_records, outside the tree, no longer releases a
-- hold. Case holds (evidence_holds) get the same rule.
--
-- Every custos function runs with its search_path pinned to this schema then pg_temp:
-- otherwise a session's temporary tables (every role may create them) would be read in
-- place of tenants, ledger_prunes or legal_holds by the checks that guard deletion.
-- Later migrations that add a function pin it too.

ALTER TABLE evidence_holds ADD COLUMN release_leaf BIGINT;

CREATE OR REPLACE FUNCTION custos_release_on_the_log(p_tenant TEXT, p_leaf BIGINT, p_kind TEXT, p_resource TEXT)
RETURNS BOOLEAN LANGUAGE sql STABLE AS $$
    SELECT EXISTS (
        SELECT 1 FROM audit_records AS r
        JOIN ledger_nodes AS n ON n.tenant_id = r.tenant_id AND n.log = 'audit' AND n.level = 0 AND n.idx = r.leaf_index
        JOIN ledger_heads AS h ON h.tenant_id = r.tenant_id AND h.log = 'audit'
        WHERE r.tenant_id = p_tenant AND r.leaf_index = p_leaf AND r.kind = p_kind AND r.resource_id = p_resource
          AND r.leaf_index < h.size
          AND n.hash = sha256('\x00'::bytea || convert_to(r.record, 'UTF8')))
$$;

CREATE OR REPLACE FUNCTION custos_hold_released_on_the_record() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        RAISE EXCEPTION '% are never deleted', TG_TABLE_NAME USING ERRCODE = 'integrity_constraint_violation';
    END IF;
    IF OLD.released_at_us IS NOT NULL OR NEW.released_at_us IS NULL
       OR NEW.tenant_id IS DISTINCT FROM OLD.tenant_id OR NEW.id IS DISTINCT FROM OLD.id
       OR NEW.reason IS DISTINCT FROM OLD.reason OR NEW.created_by IS DISTINCT FROM OLD.created_by
       OR NEW.created_at_us IS DISTINCT FROM OLD.created_at_us
       OR NOT custos_release_on_the_log(NEW.tenant_id, NEW.release_leaf, TG_ARGV[0], NEW.id) THEN
        RAISE EXCEPTION '%: a hold is released once, with its release in the audit log (%)', TG_TABLE_NAME, TG_ARGV[0]
            USING ERRCODE = 'integrity_constraint_violation';
    END IF;
    RETURN NEW;
END
$$;
DROP TRIGGER legal_holds_released_on_the_record ON legal_holds;
CREATE TRIGGER legal_holds_released_on_the_record BEFORE UPDATE OR DELETE ON legal_holds
    FOR EACH ROW EXECUTE FUNCTION custos_hold_released_on_the_record('custos.hold.released');
CREATE TRIGGER evidence_holds_released_on_the_record BEFORE UPDATE OR DELETE ON evidence_holds
    FOR EACH ROW EXECUTE FUNCTION custos_hold_released_on_the_record('custos.evidence.hold.released');
GRANT UPDATE (release_leaf) ON evidence_holds TO custos_app;

DO $$
DECLARE f RECORD;
BEGIN
    FOR f IN SELECT p.oid::regprocedure AS signature FROM pg_proc AS p
             WHERE p.pronamespace = current_schema()::regnamespace AND p.proname LIKE 'custos\_%'
    LOOP
        EXECUTE format('ALTER FUNCTION %s SET search_path = %I, pg_temp', f.signature, current_schema());
    END LOOP;
END
$$;

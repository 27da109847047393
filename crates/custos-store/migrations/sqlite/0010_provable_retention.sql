-- Retention that proves itself, SQLite. Keep equivalent to ../postgres/0010_provable_retention.sql (tested).
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

ALTER TABLE ledger_prunes ADD COLUMN retention_days INTEGER NOT NULL DEFAULT 0;
ALTER TABLE ledger_prunes ADD COLUMN leaf_index INTEGER;
ALTER TABLE legal_holds ADD COLUMN release_leaf INTEGER;

DROP TRIGGER timeline_events_pruned_only;
CREATE TRIGGER timeline_events_pruned_only BEFORE DELETE ON timeline_events
WHEN NOT EXISTS (
    SELECT 1 FROM ledger_prunes AS p
    WHERE p.tenant_id = OLD.tenant_id AND p.log = 'timeline' AND OLD.leaf_index < p.before_index
      AND OLD.received_at_us < p.received_before_us
      AND p.received_before_us <= CAST((julianday('now') - 2440587.5) * 86400000000.0 AS INTEGER) - p.retention_days * 86400000000
      AND p.retention_days >= MAX(1, (SELECT t.retention_days FROM tenants AS t WHERE t.id = OLD.tenant_id))
      AND EXISTS (SELECT 1 FROM timeline_events AS r
                  WHERE r.tenant_id = p.tenant_id AND r.leaf_index = p.leaf_index AND r.kind = 'custos.retention.pruned'))
  OR EXISTS (SELECT 1 FROM legal_holds AS h WHERE h.tenant_id = OLD.tenant_id AND h.released_at_us IS NULL)
BEGIN SELECT RAISE(ABORT, 'timeline_events is append-only: only retention removes records, under a retention record in the log, older than the tenant''s retention, with no legal hold'); END;

DROP TRIGGER audit_records_pruned_only;
CREATE TRIGGER audit_records_pruned_only BEFORE DELETE ON audit_records
WHEN NOT EXISTS (
    SELECT 1 FROM ledger_prunes AS p
    WHERE p.tenant_id = OLD.tenant_id AND p.log = 'audit' AND OLD.leaf_index < p.before_index
      AND OLD.received_at_us < p.received_before_us
      AND p.received_before_us <= CAST((julianday('now') - 2440587.5) * 86400000000.0 AS INTEGER) - p.retention_days * 86400000000
      AND p.retention_days >= 365
      AND EXISTS (SELECT 1 FROM audit_records AS r
                  WHERE r.tenant_id = p.tenant_id AND r.leaf_index = p.leaf_index AND r.kind = 'custos.retention.pruned'))
  OR EXISTS (SELECT 1 FROM legal_holds AS h WHERE h.tenant_id = OLD.tenant_id AND h.released_at_us IS NULL)
BEGIN SELECT RAISE(ABORT, 'audit_records is append-only: only retention removes records, under a retention record in the log, older than the tenant''s retention, with no legal hold'); END;

-- A hold changes once: its release, naming the audit record of it.
CREATE TRIGGER legal_holds_released_on_the_record BEFORE UPDATE ON legal_holds
WHEN OLD.released_at_us IS NOT NULL
  OR NEW.released_at_us IS NULL
  OR NEW.tenant_id IS NOT OLD.tenant_id OR NEW.id IS NOT OLD.id OR NEW.reason IS NOT OLD.reason
  OR NEW.created_by IS NOT OLD.created_by OR NEW.created_at_us IS NOT OLD.created_at_us
  OR NOT EXISTS (SELECT 1 FROM audit_records AS r
                 WHERE r.tenant_id = NEW.tenant_id AND r.leaf_index = NEW.release_leaf
                   AND r.kind = 'custos.hold.released' AND r.resource_id = NEW.id)
BEGIN SELECT RAISE(ABORT, 'legal_holds: a hold is released once, with its release in the audit log (custos.hold.released)'); END;
CREATE TRIGGER legal_holds_kept BEFORE DELETE ON legal_holds
BEGIN SELECT RAISE(ABORT, 'legal_holds are never deleted'); END;

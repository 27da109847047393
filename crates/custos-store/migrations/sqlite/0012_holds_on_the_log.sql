-- Releases on the signed log, SQLite. Keep equivalent to ../postgres/0012_holds_on_the_log.sql (tested).
--
-- A hold's release must name an audit record below the log's head (a leaf the next
-- checkpoint signs); case holds (evidence_holds) get the same rule. SQLite has no roles
-- and no function search paths: whoever can write the file can do anything, and only
-- verification against a signed checkpoint finds it.

ALTER TABLE evidence_holds ADD COLUMN release_leaf INTEGER;

DROP TRIGGER legal_holds_released_on_the_record;
CREATE TRIGGER legal_holds_released_on_the_record BEFORE UPDATE ON legal_holds
WHEN OLD.released_at_us IS NOT NULL
  OR NEW.released_at_us IS NULL
  OR NEW.tenant_id IS NOT OLD.tenant_id OR NEW.id IS NOT OLD.id OR NEW.reason IS NOT OLD.reason
  OR NEW.created_by IS NOT OLD.created_by OR NEW.created_at_us IS NOT OLD.created_at_us
  OR NOT EXISTS (SELECT 1 FROM audit_records AS r JOIN ledger_heads AS h ON h.tenant_id = r.tenant_id AND h.log = 'audit'
                 WHERE r.tenant_id = NEW.tenant_id AND r.leaf_index = NEW.release_leaf AND r.leaf_index < h.size
                   AND r.kind = 'custos.hold.released' AND r.resource_id = NEW.id)
BEGIN SELECT RAISE(ABORT, 'legal_holds: a hold is released once, with its release in the audit log (custos.hold.released)'); END;

CREATE TRIGGER evidence_holds_released_on_the_record BEFORE UPDATE ON evidence_holds
WHEN OLD.released_at_us IS NOT NULL
  OR NEW.released_at_us IS NULL
  OR NEW.tenant_id IS NOT OLD.tenant_id OR NEW.id IS NOT OLD.id OR NEW.reason IS NOT OLD.reason
  OR NEW.created_by IS NOT OLD.created_by OR NEW.created_at_us IS NOT OLD.created_at_us
  OR NOT EXISTS (SELECT 1 FROM audit_records AS r JOIN ledger_heads AS h ON h.tenant_id = r.tenant_id AND h.log = 'audit'
                 WHERE r.tenant_id = NEW.tenant_id AND r.leaf_index = NEW.release_leaf AND r.leaf_index < h.size
                   AND r.kind = 'custos.evidence.hold.released' AND r.resource_id = NEW.id)
BEGIN SELECT RAISE(ABORT, 'evidence_holds: a hold is released once, with its release in the audit log (custos.evidence.hold.released)'); END;
CREATE TRIGGER evidence_holds_kept BEFORE DELETE ON evidence_holds
BEGIN SELECT RAISE(ABORT, 'evidence_holds are never deleted'); END;

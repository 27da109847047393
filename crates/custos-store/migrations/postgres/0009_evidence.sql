-- The evidence locker, PostgreSQL. Keep equivalent to ../sqlite/0009_evidence.sql (tested).
--
-- A bundle's files live in the object store (tenants/<t>/evidence/<case>/<bundle>/…);
-- these tables keep what custos needs to find them and what it must not forget: each
-- bundle's Merkle root and manifest digest (so a bundle rewritten in the object store is
-- caught on read), each case artifact's digest at upload, each attestation's envelope,
-- and the holds that keep a case's evidence from retention.
--
-- Rows are never updated. A bundle or artifact row is deleted only by retention, and the
-- triggers refuse even that while a hold on its case, or a tenant-wide legal hold, is
-- active. Attestations are never deleted. The service's role holds no UPDATE or TRUNCATE
-- privilege on them either, and row-level security keeps each tenant to its own rows.

CREATE TABLE evidence_artifacts (
    tenant_id TEXT NOT NULL,
    case_id TEXT NOT NULL,
    name TEXT NOT NULL,
    object_key TEXT NOT NULL,
    size BIGINT NOT NULL,
    sha256 TEXT NOT NULL,
    media_type TEXT NOT NULL,
    uploaded_by TEXT NOT NULL,
    uploaded_at_us BIGINT NOT NULL,
    event_id TEXT NOT NULL,
    PRIMARY KEY (tenant_id, case_id, name)
);

CREATE TABLE evidence_bundles (
    tenant_id TEXT NOT NULL,
    bundle_id TEXT NOT NULL,
    case_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    resource_id TEXT NOT NULL,
    object_prefix TEXT NOT NULL,
    merkle_root TEXT NOT NULL,
    manifest_sha256 TEXT NOT NULL,
    key_ids TEXT NOT NULL,
    files BIGINT NOT NULL,
    bytes BIGINT NOT NULL,
    created_by TEXT NOT NULL,
    created_at_us BIGINT NOT NULL,
    trace_id TEXT,
    event_id TEXT NOT NULL,
    PRIMARY KEY (tenant_id, bundle_id)
);
CREATE INDEX evidence_bundles_by_case ON evidence_bundles (tenant_id, case_id, created_at_us);

CREATE TABLE attestations (
    tenant_id TEXT NOT NULL,
    attestation_id TEXT NOT NULL,
    subject_type TEXT NOT NULL,
    subject_id TEXT NOT NULL,
    subject_name TEXT NOT NULL,
    subject_sha256 TEXT NOT NULL,
    predicate_type TEXT NOT NULL,
    envelope TEXT NOT NULL,
    created_at_us BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, attestation_id)
);
CREATE INDEX attestations_by_subject ON attestations (tenant_id, subject_id, created_at_us);
CREATE INDEX attestations_by_digest ON attestations (tenant_id, subject_sha256);

-- A tenant's evidence retention: the retention pass deletes bundles sealed, and uploads
-- received, more than `days` before it runs, unless their case or the tenant is held.
-- No row, or NULL days: kept forever.
CREATE TABLE evidence_retention (
    tenant_id TEXT NOT NULL PRIMARY KEY,
    days BIGINT,
    updated_by TEXT NOT NULL,
    updated_at_us BIGINT NOT NULL
);

-- A case's holds, past and present: at most one active (released_at_us NULL) per case.
CREATE TABLE evidence_holds (
    tenant_id TEXT NOT NULL,
    id TEXT NOT NULL,
    reason TEXT NOT NULL,
    created_by TEXT NOT NULL,
    created_at_us BIGINT NOT NULL,
    released_at_us BIGINT,
    PRIMARY KEY (tenant_id, id, created_at_us)
);
CREATE UNIQUE INDEX evidence_holds_active ON evidence_holds (tenant_id, id) WHERE released_at_us IS NULL;

CREATE FUNCTION custos_unheld_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF EXISTS (SELECT 1 FROM evidence_holds AS h
               WHERE h.tenant_id = OLD.tenant_id AND h.id = OLD.case_id AND h.released_at_us IS NULL)
       OR EXISTS (SELECT 1 FROM legal_holds AS h WHERE h.tenant_id = OLD.tenant_id AND h.released_at_us IS NULL) THEN
        RAISE EXCEPTION '%: the case is under hold', TG_TABLE_NAME USING ERRCODE = 'integrity_constraint_violation';
    END IF;
    RETURN OLD;
END
$$;

CREATE TRIGGER evidence_artifacts_append_only BEFORE UPDATE ON evidence_artifacts
    FOR EACH ROW EXECUTE FUNCTION custos_refuse_change();
CREATE TRIGGER evidence_artifacts_unheld_only BEFORE DELETE ON evidence_artifacts
    FOR EACH ROW EXECUTE FUNCTION custos_unheld_only();
CREATE TRIGGER evidence_artifacts_no_truncate BEFORE TRUNCATE ON evidence_artifacts
    FOR EACH STATEMENT EXECUTE FUNCTION custos_refuse_change();
CREATE TRIGGER evidence_bundles_append_only BEFORE UPDATE ON evidence_bundles
    FOR EACH ROW EXECUTE FUNCTION custos_refuse_change();
CREATE TRIGGER evidence_bundles_unheld_only BEFORE DELETE ON evidence_bundles
    FOR EACH ROW EXECUTE FUNCTION custos_unheld_only();
CREATE TRIGGER evidence_bundles_no_truncate BEFORE TRUNCATE ON evidence_bundles
    FOR EACH STATEMENT EXECUTE FUNCTION custos_refuse_change();
CREATE TRIGGER attestations_append_only BEFORE UPDATE OR DELETE ON attestations
    FOR EACH ROW EXECUTE FUNCTION custos_refuse_change();
CREATE TRIGGER attestations_no_truncate BEFORE TRUNCATE ON attestations
    FOR EACH STATEMENT EXECUTE FUNCTION custos_refuse_change();

REVOKE ALL ON evidence_artifacts, evidence_bundles, attestations, evidence_holds, evidence_retention FROM PUBLIC, custos_app;
GRANT SELECT, INSERT, DELETE ON evidence_artifacts, evidence_bundles TO custos_app;
GRANT SELECT, INSERT ON attestations TO custos_app;
GRANT SELECT, INSERT, UPDATE ON evidence_holds, evidence_retention TO custos_app;

ALTER TABLE evidence_artifacts ENABLE ROW LEVEL SECURITY;
ALTER TABLE evidence_artifacts FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON evidence_artifacts
    USING (tenant_id = current_setting('custos.tenant_id', true))
    WITH CHECK (tenant_id = current_setting('custos.tenant_id', true));

ALTER TABLE evidence_bundles ENABLE ROW LEVEL SECURITY;
ALTER TABLE evidence_bundles FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON evidence_bundles
    USING (tenant_id = current_setting('custos.tenant_id', true))
    WITH CHECK (tenant_id = current_setting('custos.tenant_id', true));

ALTER TABLE attestations ENABLE ROW LEVEL SECURITY;
ALTER TABLE attestations FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON attestations
    USING (tenant_id = current_setting('custos.tenant_id', true))
    WITH CHECK (tenant_id = current_setting('custos.tenant_id', true));

ALTER TABLE evidence_holds ENABLE ROW LEVEL SECURITY;
ALTER TABLE evidence_holds FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON evidence_holds
    USING (tenant_id = current_setting('custos.tenant_id', true))
    WITH CHECK (tenant_id = current_setting('custos.tenant_id', true));

ALTER TABLE evidence_retention ENABLE ROW LEVEL SECURITY;
ALTER TABLE evidence_retention FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON evidence_retention
    USING (tenant_id = current_setting('custos.tenant_id', true))
    WITH CHECK (tenant_id = current_setting('custos.tenant_id', true));

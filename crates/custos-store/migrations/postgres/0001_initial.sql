-- custos schema, PostgreSQL. Keep equivalent to ../sqlite/0001_initial.sql (tested).
--
-- Sessions of the running service use the role custos_app (SET ROLE after connecting):
-- it owns nothing, may only SELECT and INSERT record tables (append-only), and sees only
-- the rows of the tenant named by the transaction-local setting custos.tenant_id.

DO $$
BEGIN
    CREATE ROLE custos_app NOLOGIN;
EXCEPTION WHEN duplicate_object OR unique_violation THEN
    NULL;
END
$$;

-- The migrating user must be able to SET ROLE custos_app (a superuser can already).
DO $$
BEGIN
    IF NOT pg_has_role(current_user, 'custos_app', 'MEMBER') THEN
        EXECUTE format('GRANT custos_app TO %I', current_user);
    END IF;
END
$$;

CREATE TABLE tenants (
    id TEXT NOT NULL PRIMARY KEY,
    name TEXT,
    retention_days BIGINT NOT NULL,
    created_at_us BIGINT NOT NULL
);

CREATE TABLE api_tokens (
    id TEXT NOT NULL PRIMARY KEY,
    name TEXT NOT NULL,
    secret_hash TEXT NOT NULL,
    scopes TEXT NOT NULL,
    created_at_us BIGINT NOT NULL,
    expires_at_us BIGINT,
    revoked_at_us BIGINT
);
CREATE UNIQUE INDEX api_tokens_by_secret_hash ON api_tokens (secret_hash);

CREATE TABLE components (
    tenant_id TEXT NOT NULL,
    id TEXT NOT NULL,
    kind TEXT NOT NULL,
    name TEXT,
    provider TEXT,
    green_under_seconds BIGINT,
    yellow_under_seconds BIGINT,
    created_at_us BIGINT NOT NULL,
    updated_at_us BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, id)
);

CREATE TABLE freshness_policies (
    tenant_id TEXT NOT NULL,
    provider TEXT NOT NULL,
    green_under_seconds BIGINT NOT NULL,
    yellow_under_seconds BIGINT NOT NULL,
    updated_at_us BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, provider)
);

CREATE TABLE rule_runs (
    tenant_id TEXT NOT NULL,
    id TEXT NOT NULL,
    rule_key TEXT NOT NULL,
    rule_version TEXT,
    integration_id TEXT,
    status TEXT NOT NULL,
    events_evaluated BIGINT NOT NULL,
    findings_created BIGINT NOT NULL,
    findings_reopened BIGINT NOT NULL,
    findings_resolved BIGINT NOT NULL,
    duration_ms BIGINT,
    error_message TEXT,
    started_at_us BIGINT NOT NULL,
    finished_at_us BIGINT,
    trace_id TEXT,
    context TEXT,
    content_sha256 BYTEA NOT NULL,
    received_at_us BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, id)
);
CREATE INDEX rule_runs_by_time ON rule_runs (tenant_id, started_at_us, id);
CREATE INDEX rule_runs_by_rule ON rule_runs (tenant_id, rule_key, started_at_us, id);

CREATE TABLE connector_syncs (
    tenant_id TEXT NOT NULL,
    id TEXT NOT NULL,
    integration_id TEXT NOT NULL,
    triggered_by TEXT NOT NULL,
    status TEXT NOT NULL,
    events_ingested BIGINT NOT NULL,
    new_assets_observed BIGINT NOT NULL,
    api_calls_made BIGINT NOT NULL,
    duration_ms BIGINT,
    error_message TEXT,
    started_at_us BIGINT NOT NULL,
    finished_at_us BIGINT NOT NULL,
    trace_id TEXT,
    content_sha256 BYTEA NOT NULL,
    received_at_us BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, id)
);
CREATE INDEX connector_syncs_by_time ON connector_syncs (tenant_id, started_at_us, id);
CREATE INDEX connector_syncs_by_integration ON connector_syncs (tenant_id, integration_id, started_at_us, id);

CREATE TABLE queue_snapshots (
    tenant_id TEXT NOT NULL,
    id TEXT NOT NULL,
    component_id TEXT NOT NULL,
    observed_at_us BIGINT NOT NULL,
    depth_pending BIGINT NOT NULL,
    depth_in_flight BIGINT NOT NULL,
    depth_retrying BIGINT NOT NULL,
    depth_dead_lettered BIGINT NOT NULL,
    oldest_item_age_ms BIGINT,
    processed_total BIGINT,
    failed_total BIGINT,
    content_sha256 BYTEA NOT NULL,
    received_at_us BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, id)
);
CREATE INDEX queue_snapshots_by_time ON queue_snapshots (tenant_id, observed_at_us, id);
CREATE INDEX queue_snapshots_by_component ON queue_snapshots (tenant_id, component_id, observed_at_us, id);

CREATE TABLE deliveries (
    tenant_id TEXT NOT NULL,
    id TEXT NOT NULL,
    destination_id TEXT NOT NULL,
    item_id TEXT,
    status TEXT NOT NULL,
    attempt BIGINT NOT NULL,
    latency_ms BIGINT,
    error_message TEXT,
    attempted_at_us BIGINT NOT NULL,
    trace_id TEXT,
    content_sha256 BYTEA NOT NULL,
    received_at_us BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, id)
);
CREATE INDEX deliveries_by_time ON deliveries (tenant_id, attempted_at_us, id);
CREATE INDEX deliveries_by_destination ON deliveries (tenant_id, destination_id, attempted_at_us, id);

GRANT USAGE ON SCHEMA public TO custos_app;
GRANT SELECT, INSERT, UPDATE ON tenants, api_tokens TO custos_app;
GRANT SELECT, INSERT, UPDATE ON components, freshness_policies TO custos_app;
GRANT SELECT, INSERT ON rule_runs, connector_syncs, queue_snapshots, deliveries TO custos_app;

ALTER TABLE components ENABLE ROW LEVEL SECURITY;
ALTER TABLE components FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON components
    USING (tenant_id = current_setting('custos.tenant_id', true))
    WITH CHECK (tenant_id = current_setting('custos.tenant_id', true));

ALTER TABLE freshness_policies ENABLE ROW LEVEL SECURITY;
ALTER TABLE freshness_policies FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON freshness_policies
    USING (tenant_id = current_setting('custos.tenant_id', true))
    WITH CHECK (tenant_id = current_setting('custos.tenant_id', true));

ALTER TABLE rule_runs ENABLE ROW LEVEL SECURITY;
ALTER TABLE rule_runs FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON rule_runs
    USING (tenant_id = current_setting('custos.tenant_id', true))
    WITH CHECK (tenant_id = current_setting('custos.tenant_id', true));

ALTER TABLE connector_syncs ENABLE ROW LEVEL SECURITY;
ALTER TABLE connector_syncs FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON connector_syncs
    USING (tenant_id = current_setting('custos.tenant_id', true))
    WITH CHECK (tenant_id = current_setting('custos.tenant_id', true));

ALTER TABLE queue_snapshots ENABLE ROW LEVEL SECURITY;
ALTER TABLE queue_snapshots FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON queue_snapshots
    USING (tenant_id = current_setting('custos.tenant_id', true))
    WITH CHECK (tenant_id = current_setting('custos.tenant_id', true));

ALTER TABLE deliveries ENABLE ROW LEVEL SECURITY;
ALTER TABLE deliveries FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON deliveries
    USING (tenant_id = current_setting('custos.tenant_id', true))
    WITH CHECK (tenant_id = current_setting('custos.tenant_id', true));

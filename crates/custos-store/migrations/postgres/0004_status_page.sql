-- The status page, PostgreSQL. Keep equivalent to ../sqlite/0004_status_page.sql (tested).
--
-- Every table is scoped like the rest: tenant_id is a tenant's id, or '' for the
-- platform-wide page (the public one). Row-level security admits the rows of the scope
-- set for the transaction, so a tenant's view reads the platform's rows and its own in
-- two transactions, never another tenant's.
--
-- status_changes: a component's state each time it changed (an interval runs to the
-- next change); incidents and their updates; maintenance windows, one-off or recurring.

CREATE TABLE status_changes (
    tenant_id TEXT NOT NULL,
    component TEXT NOT NULL,
    at_us BIGINT NOT NULL,
    status TEXT NOT NULL,
    PRIMARY KEY (tenant_id, component, at_us)
);

CREATE TABLE incidents (
    tenant_id TEXT NOT NULL,
    id TEXT NOT NULL,
    title TEXT NOT NULL,
    status TEXT NOT NULL,
    impact TEXT NOT NULL,
    components TEXT NOT NULL,
    -- 'manual', or 'auto' for one the detector opened (auto_key names its signal).
    source TEXT NOT NULL,
    auto_key TEXT,
    created_at_us BIGINT NOT NULL,
    updated_at_us BIGINT NOT NULL,
    resolved_at_us BIGINT,
    PRIMARY KEY (tenant_id, id)
);
CREATE INDEX incidents_by_time ON incidents (tenant_id, created_at_us);
-- At most one open automatic incident per signal, whatever the number of replicas.
CREATE UNIQUE INDEX incidents_one_open_per_signal ON incidents (tenant_id, auto_key)
    WHERE resolved_at_us IS NULL AND auto_key IS NOT NULL;

CREATE TABLE incident_updates (
    tenant_id TEXT NOT NULL,
    incident_id TEXT NOT NULL,
    seq BIGINT NOT NULL,
    at_us BIGINT NOT NULL,
    status TEXT NOT NULL,
    impact TEXT NOT NULL,
    message TEXT NOT NULL,
    PRIMARY KEY (tenant_id, incident_id, seq)
);

CREATE TABLE maintenance_windows (
    tenant_id TEXT NOT NULL,
    id TEXT NOT NULL,
    title TEXT NOT NULL,
    components TEXT NOT NULL,
    starts_at_us BIGINT,
    ends_at_us BIGINT,
    cron TEXT,
    timezone TEXT,
    duration_minutes BIGINT,
    created_at_us BIGINT NOT NULL,
    cancelled_at_us BIGINT,
    PRIMARY KEY (tenant_id, id)
);

GRANT SELECT, INSERT ON status_changes, incident_updates TO custos_app;
GRANT SELECT, INSERT, UPDATE ON incidents, maintenance_windows TO custos_app;

ALTER TABLE status_changes ENABLE ROW LEVEL SECURITY;
ALTER TABLE status_changes FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON status_changes
    USING (tenant_id = current_setting('custos.tenant_id', true))
    WITH CHECK (tenant_id = current_setting('custos.tenant_id', true));

ALTER TABLE incidents ENABLE ROW LEVEL SECURITY;
ALTER TABLE incidents FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON incidents
    USING (tenant_id = current_setting('custos.tenant_id', true))
    WITH CHECK (tenant_id = current_setting('custos.tenant_id', true));

ALTER TABLE incident_updates ENABLE ROW LEVEL SECURITY;
ALTER TABLE incident_updates FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON incident_updates
    USING (tenant_id = current_setting('custos.tenant_id', true))
    WITH CHECK (tenant_id = current_setting('custos.tenant_id', true));

ALTER TABLE maintenance_windows ENABLE ROW LEVEL SECURITY;
ALTER TABLE maintenance_windows FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON maintenance_windows
    USING (tenant_id = current_setting('custos.tenant_id', true))
    WITH CHECK (tenant_id = current_setting('custos.tenant_id', true));

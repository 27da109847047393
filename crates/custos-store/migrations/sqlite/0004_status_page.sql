-- The status page, SQLite. Keep equivalent to ../postgres/0004_status_page.sql (tested).
--
-- Every table is scoped like the rest: tenant_id is a tenant's id, or '' for the
-- platform-wide page (the public one). (On PostgreSQL, row-level security also keeps
-- each scope's rows to itself.)
--
-- status_changes: a component's state each time it changed (an interval runs to the
-- next change); incidents and their updates; maintenance windows, one-off or recurring.

CREATE TABLE status_changes (
    tenant_id TEXT NOT NULL,
    component TEXT NOT NULL,
    at_us INTEGER NOT NULL,
    status TEXT NOT NULL,
    PRIMARY KEY (tenant_id, component, at_us)
) WITHOUT ROWID;

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
    created_at_us INTEGER NOT NULL,
    updated_at_us INTEGER NOT NULL,
    resolved_at_us INTEGER,
    PRIMARY KEY (tenant_id, id)
);
CREATE INDEX incidents_by_time ON incidents (tenant_id, created_at_us);
-- At most one open automatic incident per signal, whatever the number of replicas.
CREATE UNIQUE INDEX incidents_one_open_per_signal ON incidents (tenant_id, auto_key)
    WHERE resolved_at_us IS NULL AND auto_key IS NOT NULL;

CREATE TABLE incident_updates (
    tenant_id TEXT NOT NULL,
    incident_id TEXT NOT NULL,
    seq INTEGER NOT NULL,
    at_us INTEGER NOT NULL,
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
    starts_at_us INTEGER,
    ends_at_us INTEGER,
    cron TEXT,
    timezone TEXT,
    duration_minutes INTEGER,
    created_at_us INTEGER NOT NULL,
    cancelled_at_us INTEGER,
    PRIMARY KEY (tenant_id, id)
);

-- custos schema, SQLite. Keep equivalent to ../postgres/0001_initial.sql (tested).

CREATE TABLE tenants (
    id TEXT NOT NULL PRIMARY KEY,
    name TEXT,
    retention_days INTEGER NOT NULL,
    created_at_us INTEGER NOT NULL
);

CREATE TABLE api_tokens (
    id TEXT NOT NULL PRIMARY KEY,
    name TEXT NOT NULL,
    secret_hash TEXT NOT NULL,
    scopes TEXT NOT NULL,
    created_at_us INTEGER NOT NULL,
    expires_at_us INTEGER,
    revoked_at_us INTEGER
);
CREATE UNIQUE INDEX api_tokens_by_secret_hash ON api_tokens (secret_hash);

CREATE TABLE components (
    tenant_id TEXT NOT NULL,
    id TEXT NOT NULL,
    kind TEXT NOT NULL,
    name TEXT,
    provider TEXT,
    green_under_seconds INTEGER,
    yellow_under_seconds INTEGER,
    created_at_us INTEGER NOT NULL,
    updated_at_us INTEGER NOT NULL,
    PRIMARY KEY (tenant_id, id)
);

CREATE TABLE freshness_policies (
    tenant_id TEXT NOT NULL,
    provider TEXT NOT NULL,
    green_under_seconds INTEGER NOT NULL,
    yellow_under_seconds INTEGER NOT NULL,
    updated_at_us INTEGER NOT NULL,
    PRIMARY KEY (tenant_id, provider)
);

CREATE TABLE rule_runs (
    tenant_id TEXT NOT NULL,
    id TEXT NOT NULL,
    rule_key TEXT NOT NULL,
    rule_version TEXT,
    integration_id TEXT,
    status TEXT NOT NULL,
    events_evaluated INTEGER NOT NULL,
    findings_created INTEGER NOT NULL,
    findings_reopened INTEGER NOT NULL,
    findings_resolved INTEGER NOT NULL,
    duration_ms INTEGER,
    error_message TEXT,
    started_at_us INTEGER NOT NULL,
    finished_at_us INTEGER,
    trace_id TEXT,
    context TEXT,
    content_sha256 BLOB NOT NULL,
    received_at_us INTEGER NOT NULL,
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
    events_ingested INTEGER NOT NULL,
    new_assets_observed INTEGER NOT NULL,
    api_calls_made INTEGER NOT NULL,
    duration_ms INTEGER,
    error_message TEXT,
    started_at_us INTEGER NOT NULL,
    finished_at_us INTEGER NOT NULL,
    trace_id TEXT,
    content_sha256 BLOB NOT NULL,
    received_at_us INTEGER NOT NULL,
    PRIMARY KEY (tenant_id, id)
);
CREATE INDEX connector_syncs_by_time ON connector_syncs (tenant_id, started_at_us, id);
CREATE INDEX connector_syncs_by_integration ON connector_syncs (tenant_id, integration_id, started_at_us, id);

CREATE TABLE queue_snapshots (
    tenant_id TEXT NOT NULL,
    id TEXT NOT NULL,
    component_id TEXT NOT NULL,
    observed_at_us INTEGER NOT NULL,
    depth_pending INTEGER NOT NULL,
    depth_in_flight INTEGER NOT NULL,
    depth_retrying INTEGER NOT NULL,
    depth_dead_lettered INTEGER NOT NULL,
    oldest_item_age_ms INTEGER,
    processed_total INTEGER,
    failed_total INTEGER,
    content_sha256 BLOB NOT NULL,
    received_at_us INTEGER NOT NULL,
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
    attempt INTEGER NOT NULL,
    latency_ms INTEGER,
    error_message TEXT,
    attempted_at_us INTEGER NOT NULL,
    trace_id TEXT,
    content_sha256 BLOB NOT NULL,
    received_at_us INTEGER NOT NULL,
    PRIMARY KEY (tenant_id, id)
);
CREATE INDEX deliveries_by_time ON deliveries (tenant_id, attempted_at_us, id);
CREATE INDEX deliveries_by_destination ON deliveries (tenant_id, destination_id, attempted_at_us, id);

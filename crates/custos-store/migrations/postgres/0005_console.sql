-- The operator console, PostgreSQL. Keep equivalent to ../sqlite/0005_console.sql (tested).
-- Written by ../tools/gen_0005.py.
--
-- metric_buckets: the metric_series values again, per UTC hour of the record's own time
-- (a rule run's start, a sync's finish, a delivery's attempt), so the console reads
-- the last day of a family without touching raw records. A series folded at the cap
-- in metric_series is folded here too (series_key '').
-- series_last_error: per series key, the latest record that carried an error message.
-- Both are updated in the ingest transaction and filled from stored records here.
-- console_sessions: a console login. The cookie holds a random secret; only its
-- SHA-256 is stored. A session lives until it expires, is logged out, or its token
-- stops being active.

CREATE TABLE metric_buckets (
    tenant_id TEXT NOT NULL,
    family TEXT NOT NULL,
    bucket_us BIGINT NOT NULL,
    series_key TEXT NOT NULL,
    status TEXT NOT NULL,
    records BIGINT NOT NULL,
    observations BIGINT NOT NULL,
    value_sum DOUBLE PRECISION NOT NULL,
    b00 BIGINT NOT NULL,
    b01 BIGINT NOT NULL,
    b02 BIGINT NOT NULL,
    b03 BIGINT NOT NULL,
    b04 BIGINT NOT NULL,
    b05 BIGINT NOT NULL,
    b06 BIGINT NOT NULL,
    b07 BIGINT NOT NULL,
    b08 BIGINT NOT NULL,
    b09 BIGINT NOT NULL,
    b10 BIGINT NOT NULL,
    b11 BIGINT NOT NULL,
    b12 BIGINT NOT NULL,
    b13 BIGINT NOT NULL,
    b14 BIGINT NOT NULL,
    total_0 DOUBLE PRECISION NOT NULL,
    total_1 DOUBLE PRECISION NOT NULL,
    total_2 DOUBLE PRECISION NOT NULL,
    total_3 DOUBLE PRECISION NOT NULL,
    last_us BIGINT,
    PRIMARY KEY (tenant_id, family, bucket_us, series_key, status)
);

CREATE TABLE series_last_error (
    tenant_id TEXT NOT NULL,
    family TEXT NOT NULL,
    series_key TEXT NOT NULL,
    at_us BIGINT NOT NULL,
    record_id TEXT NOT NULL,
    message TEXT NOT NULL,
    PRIMARY KEY (tenant_id, family, series_key)
);

CREATE TABLE console_sessions (
    secret_hash TEXT NOT NULL PRIMARY KEY,
    token_id TEXT NOT NULL,
    created_at_us BIGINT NOT NULL,
    expires_at_us BIGINT NOT NULL,
    ended_at_us BIGINT
);
CREATE INDEX console_sessions_by_expiry ON console_sessions (expires_at_us);

-- backfill:begin (re-run by the rollup tests to check it matches the ingest path)
INSERT INTO metric_buckets (tenant_id, family, bucket_us, series_key, status, records, observations, value_sum, b00, b01, b02, b03, b04, b05, b06, b07, b08, b09, b10, b11, b12, b13, b14, total_0, total_1, total_2, total_3, last_us)
SELECT tenant_id,
       'rule_runs',
       (started_at_us / 3600000000) * 3600000000,
       k,
       status,
       count(*),
       count(v),
       coalesce(sum(v), 0),
       sum(CASE WHEN v <= 5000 THEN 1 ELSE 0 END),
       sum(CASE WHEN v > 5000 AND v <= 10000 THEN 1 ELSE 0 END),
       sum(CASE WHEN v > 10000 AND v <= 25000 THEN 1 ELSE 0 END),
       sum(CASE WHEN v > 25000 AND v <= 50000 THEN 1 ELSE 0 END),
       sum(CASE WHEN v > 50000 AND v <= 100000 THEN 1 ELSE 0 END),
       sum(CASE WHEN v > 100000 AND v <= 250000 THEN 1 ELSE 0 END),
       sum(CASE WHEN v > 250000 AND v <= 500000 THEN 1 ELSE 0 END),
       sum(CASE WHEN v > 500000 AND v <= 1000000 THEN 1 ELSE 0 END),
       sum(CASE WHEN v > 1000000 AND v <= 2500000 THEN 1 ELSE 0 END),
       sum(CASE WHEN v > 2500000 AND v <= 5000000 THEN 1 ELSE 0 END),
       sum(CASE WHEN v > 5000000 AND v <= 10000000 THEN 1 ELSE 0 END),
       sum(CASE WHEN v > 10000000 AND v <= 30000000 THEN 1 ELSE 0 END),
       sum(CASE WHEN v > 30000000 AND v <= 60000000 THEN 1 ELSE 0 END),
       sum(CASE WHEN v > 60000000 AND v <= 300000000 THEN 1 ELSE 0 END),
       sum(CASE WHEN v > 300000000 AND v <= 900000000 THEN 1 ELSE 0 END),
       coalesce(sum(CASE WHEN events_evaluated < 0 THEN 0 WHEN events_evaluated > 1099511627776 THEN 1099511627776 ELSE events_evaluated END), 0),
       coalesce(sum(CASE WHEN findings_created < 0 THEN 0 WHEN findings_created > 1099511627776 THEN 1099511627776 ELSE findings_created END), 0),
       coalesce(sum(CASE WHEN findings_reopened < 0 THEN 0 WHEN findings_reopened > 1099511627776 THEN 1099511627776 ELSE findings_reopened END), 0),
       coalesce(sum(CASE WHEN findings_resolved < 0 THEN 0 WHEN findings_resolved > 1099511627776 THEN 1099511627776 ELSE findings_resolved END), 0),
       max(started_at_us)
FROM (SELECT *, CASE WHEN d < 0 THEN 0 WHEN d > 1099511627776 THEN 1099511627776 ELSE d END AS v
      FROM (SELECT raw.*, coalesce(CASE WHEN raw.duration_ms > 1099511627776 THEN 1099511627776 ELSE raw.duration_ms END * 1000, raw.finished_at_us - raw.started_at_us) AS d, CASE WHEN EXISTS (SELECT 1 FROM metric_series AS m WHERE m.tenant_id = raw.tenant_id AND m.family = 'rule_runs' AND m.series_key = raw.rule_key AND m.status = raw.status) THEN raw.rule_key ELSE '' END AS k FROM rule_runs AS raw) AS x) AS r
GROUP BY tenant_id, (started_at_us / 3600000000) * 3600000000, k, status;

INSERT INTO series_last_error (tenant_id, family, series_key, at_us, record_id, message)
SELECT tenant_id, 'rule_runs', k, started_at_us, id, error_message
FROM (SELECT e.*, row_number() OVER (PARTITION BY tenant_id, k ORDER BY started_at_us DESC, id COLLATE "C" DESC) AS rn
      FROM (SELECT raw.tenant_id, raw.id, raw.error_message, raw.started_at_us, CASE WHEN EXISTS (SELECT 1 FROM metric_series AS m WHERE m.tenant_id = raw.tenant_id AND m.family = 'rule_runs' AND m.series_key = raw.rule_key AND m.status = raw.status) THEN raw.rule_key ELSE '' END AS k
            FROM rule_runs AS raw WHERE raw.error_message IS NOT NULL AND raw.error_message <> '') AS e) AS latest
WHERE rn = 1;

INSERT INTO metric_buckets (tenant_id, family, bucket_us, series_key, status, records, observations, value_sum, b00, b01, b02, b03, b04, b05, b06, b07, b08, b09, b10, b11, b12, b13, b14, total_0, total_1, total_2, total_3, last_us)
SELECT tenant_id,
       'connector_syncs',
       (finished_at_us / 3600000000) * 3600000000,
       k,
       status,
       count(*),
       count(v),
       coalesce(sum(v), 0),
       sum(CASE WHEN v <= 5000 THEN 1 ELSE 0 END),
       sum(CASE WHEN v > 5000 AND v <= 10000 THEN 1 ELSE 0 END),
       sum(CASE WHEN v > 10000 AND v <= 25000 THEN 1 ELSE 0 END),
       sum(CASE WHEN v > 25000 AND v <= 50000 THEN 1 ELSE 0 END),
       sum(CASE WHEN v > 50000 AND v <= 100000 THEN 1 ELSE 0 END),
       sum(CASE WHEN v > 100000 AND v <= 250000 THEN 1 ELSE 0 END),
       sum(CASE WHEN v > 250000 AND v <= 500000 THEN 1 ELSE 0 END),
       sum(CASE WHEN v > 500000 AND v <= 1000000 THEN 1 ELSE 0 END),
       sum(CASE WHEN v > 1000000 AND v <= 2500000 THEN 1 ELSE 0 END),
       sum(CASE WHEN v > 2500000 AND v <= 5000000 THEN 1 ELSE 0 END),
       sum(CASE WHEN v > 5000000 AND v <= 10000000 THEN 1 ELSE 0 END),
       sum(CASE WHEN v > 10000000 AND v <= 30000000 THEN 1 ELSE 0 END),
       sum(CASE WHEN v > 30000000 AND v <= 60000000 THEN 1 ELSE 0 END),
       sum(CASE WHEN v > 60000000 AND v <= 300000000 THEN 1 ELSE 0 END),
       sum(CASE WHEN v > 300000000 AND v <= 900000000 THEN 1 ELSE 0 END),
       coalesce(sum(CASE WHEN events_ingested < 0 THEN 0 WHEN events_ingested > 1099511627776 THEN 1099511627776 ELSE events_ingested END), 0),
       coalesce(sum(CASE WHEN new_assets_observed < 0 THEN 0 WHEN new_assets_observed > 1099511627776 THEN 1099511627776 ELSE new_assets_observed END), 0),
       coalesce(sum(CASE WHEN api_calls_made < 0 THEN 0 WHEN api_calls_made > 1099511627776 THEN 1099511627776 ELSE api_calls_made END), 0),
       0,
       max(finished_at_us)
FROM (SELECT *, CASE WHEN d < 0 THEN 0 WHEN d > 1099511627776 THEN 1099511627776 ELSE d END AS v
      FROM (SELECT raw.*, coalesce(CASE WHEN raw.duration_ms > 1099511627776 THEN 1099511627776 ELSE raw.duration_ms END * 1000, raw.finished_at_us - raw.started_at_us) AS d, CASE WHEN EXISTS (SELECT 1 FROM metric_series AS m WHERE m.tenant_id = raw.tenant_id AND m.family = 'connector_syncs' AND m.series_key = raw.integration_id AND m.status = raw.status) THEN raw.integration_id ELSE '' END AS k FROM connector_syncs AS raw) AS x) AS r
GROUP BY tenant_id, (finished_at_us / 3600000000) * 3600000000, k, status;

INSERT INTO series_last_error (tenant_id, family, series_key, at_us, record_id, message)
SELECT tenant_id, 'connector_syncs', k, finished_at_us, id, error_message
FROM (SELECT e.*, row_number() OVER (PARTITION BY tenant_id, k ORDER BY finished_at_us DESC, id COLLATE "C" DESC) AS rn
      FROM (SELECT raw.tenant_id, raw.id, raw.error_message, raw.finished_at_us, CASE WHEN EXISTS (SELECT 1 FROM metric_series AS m WHERE m.tenant_id = raw.tenant_id AND m.family = 'connector_syncs' AND m.series_key = raw.integration_id AND m.status = raw.status) THEN raw.integration_id ELSE '' END AS k
            FROM connector_syncs AS raw WHERE raw.error_message IS NOT NULL AND raw.error_message <> '') AS e) AS latest
WHERE rn = 1;

INSERT INTO metric_buckets (tenant_id, family, bucket_us, series_key, status, records, observations, value_sum, b00, b01, b02, b03, b04, b05, b06, b07, b08, b09, b10, b11, b12, b13, b14, total_0, total_1, total_2, total_3, last_us)
SELECT tenant_id,
       'deliveries',
       (attempted_at_us / 3600000000) * 3600000000,
       k,
       status,
       count(*),
       count(v),
       coalesce(sum(v), 0),
       sum(CASE WHEN v <= 1 THEN 1 ELSE 0 END),
       sum(CASE WHEN v > 1 AND v <= 2 THEN 1 ELSE 0 END),
       sum(CASE WHEN v > 2 AND v <= 3 THEN 1 ELSE 0 END),
       sum(CASE WHEN v > 3 AND v <= 4 THEN 1 ELSE 0 END),
       sum(CASE WHEN v > 4 AND v <= 5 THEN 1 ELSE 0 END),
       sum(CASE WHEN v > 5 AND v <= 6 THEN 1 ELSE 0 END),
       sum(CASE WHEN v > 6 AND v <= 7 THEN 1 ELSE 0 END),
       sum(CASE WHEN v > 7 AND v <= 8 THEN 1 ELSE 0 END),
       sum(CASE WHEN v > 8 AND v <= 10 THEN 1 ELSE 0 END),
       sum(CASE WHEN v > 10 AND v <= 12 THEN 1 ELSE 0 END),
       sum(CASE WHEN v > 12 AND v <= 15 THEN 1 ELSE 0 END),
       sum(CASE WHEN v > 15 AND v <= 20 THEN 1 ELSE 0 END),
       sum(CASE WHEN v > 20 AND v <= 30 THEN 1 ELSE 0 END),
       sum(CASE WHEN v > 30 AND v <= 50 THEN 1 ELSE 0 END),
       sum(CASE WHEN v > 50 AND v <= 100 THEN 1 ELSE 0 END),
       coalesce(sum(CASE WHEN coalesce(latency_ms, 0) < 0 THEN 0 WHEN coalesce(latency_ms, 0) > 1099511627776 THEN 1099511627776 ELSE coalesce(latency_ms, 0) END), 0),
       0,
       0,
       0,
       max(attempted_at_us)
FROM (SELECT *, CASE WHEN d < 0 THEN 0 WHEN d > 1099511627776 THEN 1099511627776 ELSE d END AS v
      FROM (SELECT raw.*, raw.attempt AS d, CASE WHEN EXISTS (SELECT 1 FROM metric_series AS m WHERE m.tenant_id = raw.tenant_id AND m.family = 'deliveries' AND m.series_key = raw.destination_id AND m.status = raw.status) THEN raw.destination_id ELSE '' END AS k FROM deliveries AS raw) AS x) AS r
GROUP BY tenant_id, (attempted_at_us / 3600000000) * 3600000000, k, status;

INSERT INTO series_last_error (tenant_id, family, series_key, at_us, record_id, message)
SELECT tenant_id, 'deliveries', k, attempted_at_us, id, error_message
FROM (SELECT e.*, row_number() OVER (PARTITION BY tenant_id, k ORDER BY attempted_at_us DESC, id COLLATE "C" DESC) AS rn
      FROM (SELECT raw.tenant_id, raw.id, raw.error_message, raw.attempted_at_us, CASE WHEN EXISTS (SELECT 1 FROM metric_series AS m WHERE m.tenant_id = raw.tenant_id AND m.family = 'deliveries' AND m.series_key = raw.destination_id AND m.status = raw.status) THEN raw.destination_id ELSE '' END AS k
            FROM deliveries AS raw WHERE raw.error_message IS NOT NULL AND raw.error_message <> '') AS e) AS latest
WHERE rn = 1;

-- backfill:end

GRANT SELECT, INSERT, UPDATE ON metric_buckets, series_last_error TO custos_app;
GRANT SELECT, INSERT, UPDATE, DELETE ON console_sessions TO custos_app;

ALTER TABLE metric_buckets ENABLE ROW LEVEL SECURITY;
ALTER TABLE metric_buckets FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON metric_buckets
    USING (tenant_id = current_setting('custos.tenant_id', true))
    WITH CHECK (tenant_id = current_setting('custos.tenant_id', true));

ALTER TABLE series_last_error ENABLE ROW LEVEL SECURITY;
ALTER TABLE series_last_error FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON series_last_error
    USING (tenant_id = current_setting('custos.tenant_id', true))
    WITH CHECK (tenant_id = current_setting('custos.tenant_id', true));

-- Metric rollups, PostgreSQL. Keep equivalent to ../sqlite/0002_metric_rollups.sql (tested).
-- Written by ../tools/gen_0002.py.
--
-- metric_series: per-tenant counters and histogram buckets of rule runs, connector
-- syncs and deliveries, keyed by (family, series_key, status) and updated in the ingest
-- transaction (see custos-store's rollup module for the meaning of each column). The
-- series_key '' is the overflow series of a family at its series cap.
-- queue_latest: the latest snapshot of each queue.
-- Both are filled from the records already stored when this migration runs.

CREATE TABLE metric_series (
    tenant_id TEXT NOT NULL,
    family TEXT NOT NULL,
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
    first_seen_us BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, family, series_key, status)
);

CREATE TABLE queue_latest (
    tenant_id TEXT NOT NULL,
    component_id TEXT NOT NULL,
    id TEXT NOT NULL,
    observed_at_us BIGINT NOT NULL,
    depth_pending BIGINT NOT NULL,
    depth_in_flight BIGINT NOT NULL,
    depth_retrying BIGINT NOT NULL,
    depth_dead_lettered BIGINT NOT NULL,
    oldest_item_age_ms BIGINT,
    processed_total BIGINT,
    failed_total BIGINT,
    received_at_us BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, component_id)
);

-- backfill:begin (re-run by the rollup tests to check it matches the ingest path)
INSERT INTO metric_series (tenant_id, family, series_key, status, records, observations, value_sum, b00, b01, b02, b03, b04, b05, b06, b07, b08, b09, b10, b11, b12, b13, b14, total_0, total_1, total_2, total_3, last_us, first_seen_us)
SELECT tenant_id,
       'rule_runs',
       rule_key,
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
       max(started_at_us),
       min(received_at_us)
FROM (SELECT *, CASE WHEN d < 0 THEN 0 WHEN d > 1099511627776 THEN 1099511627776 ELSE d END AS v
      FROM (SELECT *, coalesce(CASE WHEN duration_ms > 1099511627776 THEN 1099511627776 ELSE duration_ms END * 1000, finished_at_us - started_at_us) AS d FROM rule_runs) AS raw) AS r
GROUP BY tenant_id, rule_key, status;


INSERT INTO metric_series (tenant_id, family, series_key, status, records, observations, value_sum, b00, b01, b02, b03, b04, b05, b06, b07, b08, b09, b10, b11, b12, b13, b14, total_0, total_1, total_2, total_3, last_us, first_seen_us)
SELECT tenant_id,
       'connector_syncs',
       integration_id,
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
       max(finished_at_us),
       min(received_at_us)
FROM (SELECT *, CASE WHEN d < 0 THEN 0 WHEN d > 1099511627776 THEN 1099511627776 ELSE d END AS v
      FROM (SELECT *, coalesce(CASE WHEN duration_ms > 1099511627776 THEN 1099511627776 ELSE duration_ms END * 1000, finished_at_us - started_at_us) AS d FROM connector_syncs) AS raw) AS r
GROUP BY tenant_id, integration_id, status;


INSERT INTO metric_series (tenant_id, family, series_key, status, records, observations, value_sum, b00, b01, b02, b03, b04, b05, b06, b07, b08, b09, b10, b11, b12, b13, b14, total_0, total_1, total_2, total_3, last_us, first_seen_us)
SELECT tenant_id,
       'deliveries',
       destination_id,
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
       max(attempted_at_us),
       min(received_at_us)
FROM (SELECT *, CASE WHEN d < 0 THEN 0 WHEN d > 1099511627776 THEN 1099511627776 ELSE d END AS v
      FROM (SELECT *, attempt AS d FROM deliveries) AS raw) AS r
GROUP BY tenant_id, destination_id, status;


INSERT INTO queue_latest (tenant_id, component_id, id, observed_at_us, depth_pending, depth_in_flight, depth_retrying,
    depth_dead_lettered, oldest_item_age_ms, processed_total, failed_total, received_at_us)
SELECT tenant_id, component_id, id, observed_at_us, depth_pending, depth_in_flight, depth_retrying,
    depth_dead_lettered, oldest_item_age_ms, processed_total, failed_total, received_at_us
FROM queue_snapshots AS q
WHERE NOT EXISTS (
    SELECT 1 FROM queue_snapshots AS n
    WHERE n.tenant_id = q.tenant_id AND n.component_id = q.component_id
      AND (n.observed_at_us > q.observed_at_us OR (n.observed_at_us = q.observed_at_us AND n.id COLLATE "C" > q.id COLLATE "C"))
);

-- backfill:end

GRANT SELECT, INSERT, UPDATE ON metric_series, queue_latest TO custos_app;

ALTER TABLE metric_series ENABLE ROW LEVEL SECURITY;
ALTER TABLE metric_series FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON metric_series
    USING (tenant_id = current_setting('custos.tenant_id', true))
    WITH CHECK (tenant_id = current_setting('custos.tenant_id', true));

ALTER TABLE queue_latest ENABLE ROW LEVEL SECURITY;
ALTER TABLE queue_latest FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON queue_latest
    USING (tenant_id = current_setting('custos.tenant_id', true))
    WITH CHECK (tenant_id = current_setting('custos.tenant_id', true));

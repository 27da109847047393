"""Writes migrations/{sqlite,postgres}/0002_metric_rollups.sql: the rollup tables and
the backfill from stored records, whose bucket bounds and clamping must match
src/rollup.rs exactly (the rollup tests re-run the backfill and compare). A migration
never changes once released: this script documents how it was written."""
B=[5_000,10_000,25_000,50_000,100_000,250_000,500_000,1_000_000,2_500_000,5_000_000,10_000_000,30_000_000,60_000_000,300_000_000,900_000_000]
A=[1,2,3,4,5,6,7,8,10,12,15,20,30,50,100]
CAP=1<<40
def gen(dialect):
    I = "INTEGER" if dialect=="sqlite" else "BIGINT"
    D = "REAL" if dialect=="sqlite" else "DOUBLE PRECISION"
    def clamp(x):
        return f"CASE WHEN {x} < 0 THEN 0 WHEN {x} > {CAP} THEN {CAP} ELSE {x} END"
    other = "postgres" if dialect=="sqlite" else "sqlite"
    out=[]
    out.append(f"""-- Metric rollups, {'SQLite' if dialect=='sqlite' else 'PostgreSQL'}. Keep equivalent to ../{other}/0002_metric_rollups.sql (tested).
-- Written by ../tools/gen_0002.py.
--
-- metric_series: per-tenant counters and histogram buckets of rule runs, connector
-- syncs and deliveries, keyed by (family, series_key, status) and updated in the ingest
-- transaction (see custos-store's rollup module for the meaning of each column). The
-- series_key '' is the overflow series of a family at its series cap.
-- queue_latest: the latest snapshot of each queue.
-- Both are filled from the records already stored when this migration runs.
""")
    buckets = ",\n".join(f"    b{i:02} {I} NOT NULL" for i in range(15))
    totals = ",\n".join(f"    total_{i} {D} NOT NULL" for i in range(4))
    out.append(f"""CREATE TABLE metric_series (
    tenant_id TEXT NOT NULL,
    family TEXT NOT NULL,
    series_key TEXT NOT NULL,
    status TEXT NOT NULL,
    records {I} NOT NULL,
    observations {I} NOT NULL,
    value_sum {D} NOT NULL,
{buckets},
{totals},
    last_us {I},
    first_seen_us {I} NOT NULL,
    PRIMARY KEY (tenant_id, family, series_key, status)
);

CREATE TABLE queue_latest (
    tenant_id TEXT NOT NULL,
    component_id TEXT NOT NULL,
    id TEXT NOT NULL,
    observed_at_us {I} NOT NULL,
    depth_pending {I} NOT NULL,
    depth_in_flight {I} NOT NULL,
    depth_retrying {I} NOT NULL,
    depth_dead_lettered {I} NOT NULL,
    oldest_item_age_ms {I},
    processed_total {I},
    failed_total {I},
    received_at_us {I} NOT NULL,
    PRIMARY KEY (tenant_id, component_id)
);
""")
    cols = ["tenant_id","family","series_key","status","records","observations","value_sum"]+[f"b{i:02}" for i in range(15)]+[f"total_{i}" for i in range(4)]+["last_us","first_seen_us"]
    def backfill(family, table, key, value_expr, bounds, totals, last):
        lines=[]
        lines.append(f"INSERT INTO metric_series ({', '.join(cols)})")
        sel=[ "tenant_id", f"'{family}'", key, "status", "count(*)", "count(v)", "coalesce(sum(v), 0)"]
        prev=None
        for b in bounds:
            cond = f"v <= {b}" if prev is None else f"v > {prev} AND v <= {b}"
            sel.append(f"sum(CASE WHEN {cond} THEN 1 ELSE 0 END)")
            prev=b
        for t in totals:
            sel.append("coalesce(sum(" + clamp(t) + "), 0)" if t!="0" else "0")
        sel.append(f"max({last})")
        sel.append("min(received_at_us)")
        lines.append("SELECT " + ",\n       ".join(sel))
        lines.append(f"FROM (SELECT *, {clamp('d')} AS v")
        lines.append(f"      FROM (SELECT *, {value_expr} AS d FROM {table}) AS raw) AS r")
        lines.append(f"GROUP BY tenant_id, {key}, status;")
        return "\n".join(lines)+"\n"
    dur_rule = (f"coalesce(CASE WHEN duration_ms > {CAP} THEN {CAP} ELSE duration_ms END * 1000, finished_at_us - started_at_us)")
    out.append("-- backfill:begin (re-run by the rollup tests to check it matches the ingest path)")
    out.append(backfill("rule_runs","rule_runs","rule_key",dur_rule,B,["events_evaluated","findings_created","findings_reopened","findings_resolved"],"started_at_us"))
    out.append("")
    dur_sync = (f"coalesce(CASE WHEN duration_ms > {CAP} THEN {CAP} ELSE duration_ms END * 1000, finished_at_us - started_at_us)")
    out.append(backfill("connector_syncs","connector_syncs","integration_id",dur_sync,B,["events_ingested","new_assets_observed","api_calls_made","0"],"finished_at_us"))
    out.append("")
    out.append(backfill("deliveries","deliveries","destination_id","attempt",A,["coalesce(latency_ms, 0)","0","0","0"],"attempted_at_us"))
    out.append("""
INSERT INTO queue_latest (tenant_id, component_id, id, observed_at_us, depth_pending, depth_in_flight, depth_retrying,
    depth_dead_lettered, oldest_item_age_ms, processed_total, failed_total, received_at_us)
SELECT tenant_id, component_id, id, observed_at_us, depth_pending, depth_in_flight, depth_retrying,
    depth_dead_lettered, oldest_item_age_ms, processed_total, failed_total, received_at_us
FROM queue_snapshots AS q
WHERE NOT EXISTS (
    SELECT 1 FROM queue_snapshots AS n
    WHERE n.tenant_id = q.tenant_id AND n.component_id = q.component_id
      AND (n.observed_at_us > q.observed_at_us OR (n.observed_at_us = q.observed_at_us AND n.id{C} > q.id{C}))
);
""".replace("{C}", ' COLLATE "C"' if dialect == "postgres" else ""))
    out.append("-- backfill:end\n")
    if dialect=="postgres":
        out.append("""GRANT SELECT, INSERT, UPDATE ON metric_series, queue_latest TO custos_app;
""")
        for t in ["metric_series","queue_latest"]:
            out.append(f"""ALTER TABLE {t} ENABLE ROW LEVEL SECURITY;
ALTER TABLE {t} FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON {t}
    USING (tenant_id = current_setting('custos.tenant_id', true))
    WITH CHECK (tenant_id = current_setting('custos.tenant_id', true));
""")
    return "\n".join(out)
import os
here = os.path.dirname(os.path.abspath(__file__))
for d in ["sqlite", "postgres"]:
    with open(os.path.join(here, "..", d, "0002_metric_rollups.sql"), "w") as f:
        f.write(gen(d))

"""Writes migrations/{sqlite,postgres}/0005_console.sql: the hourly rollup buckets, the
last error per series and the console's sessions, with the backfill of the first two
from stored records. Bucket bounds, clamping and the hour arithmetic must match
src/rollup.rs exactly (the rollup tests re-run the backfill and compare). A migration
never changes once released: this script documents how it was written."""
import os

B = [5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000, 1_000_000, 2_500_000, 5_000_000,
     10_000_000, 30_000_000, 60_000_000, 300_000_000, 900_000_000]
A = [1, 2, 3, 4, 5, 6, 7, 8, 10, 12, 15, 20, 30, 50, 100]
CAP = 1 << 40
HOUR = 3_600_000_000


def gen(dialect):
    pg = dialect == "postgres"
    I = "BIGINT" if pg else "INTEGER"
    D = "DOUBLE PRECISION" if pg else "REAL"
    C = ' COLLATE "C"' if pg else ""
    rowid = "" if pg else " WITHOUT ROWID"
    other = "sqlite" if pg else "postgres"

    def clamp(x):
        return f"CASE WHEN {x} < 0 THEN 0 WHEN {x} > {CAP} THEN {CAP} ELSE {x} END"

    out = [f"""-- The operator console, {'PostgreSQL' if pg else 'SQLite'}. Keep equivalent to ../{other}/0005_console.sql (tested).
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
"""]
    buckets = ",\n".join(f"    b{i:02} {I} NOT NULL" for i in range(15))
    totals = ",\n".join(f"    total_{i} {D} NOT NULL" for i in range(4))
    out.append(f"""CREATE TABLE metric_buckets (
    tenant_id TEXT NOT NULL,
    family TEXT NOT NULL,
    bucket_us {I} NOT NULL,
    series_key TEXT NOT NULL,
    status TEXT NOT NULL,
    records {I} NOT NULL,
    observations {I} NOT NULL,
    value_sum {D} NOT NULL,
{buckets},
{totals},
    last_us {I},
    PRIMARY KEY (tenant_id, family, bucket_us, series_key, status)
){rowid};

CREATE TABLE series_last_error (
    tenant_id TEXT NOT NULL,
    family TEXT NOT NULL,
    series_key TEXT NOT NULL,
    at_us {I} NOT NULL,
    record_id TEXT NOT NULL,
    message TEXT NOT NULL,
    PRIMARY KEY (tenant_id, family, series_key)
){rowid};

CREATE TABLE console_sessions (
    secret_hash TEXT NOT NULL PRIMARY KEY,
    token_id TEXT NOT NULL,
    created_at_us {I} NOT NULL,
    expires_at_us {I} NOT NULL,
    ended_at_us {I}
){rowid};
CREATE INDEX console_sessions_by_expiry ON console_sessions (expires_at_us);
""")
    cols = ["tenant_id", "family", "bucket_us", "series_key", "status", "records", "observations", "value_sum"] \
        + [f"b{i:02}" for i in range(15)] + [f"total_{i}" for i in range(4)] + ["last_us"]

    def folded(family, key):
        return (f"CASE WHEN EXISTS (SELECT 1 FROM metric_series AS m WHERE m.tenant_id = raw.tenant_id "
                f"AND m.family = '{family}' AND m.series_key = raw.{key} AND m.status = raw.status) "
                f"THEN raw.{key} ELSE '' END")

    def backfill(family, table, key, value_expr, bounds, totals, at):
        lines = [f"INSERT INTO metric_buckets ({', '.join(cols)})"]
        sel = ["tenant_id", f"'{family}'", f"({at} / {HOUR}) * {HOUR}", "k", "status", "count(*)", "count(v)",
               "coalesce(sum(v), 0)"]
        prev = None
        for b in bounds:
            cond = f"v <= {b}" if prev is None else f"v > {prev} AND v <= {b}"
            sel.append(f"sum(CASE WHEN {cond} THEN 1 ELSE 0 END)")
            prev = b
        for t in totals:
            sel.append("coalesce(sum(" + clamp(t) + "), 0)" if t != "0" else "0")
        sel.append(f"max({at})")
        lines.append("SELECT " + ",\n       ".join(sel))
        lines.append(f"FROM (SELECT *, {clamp('d')} AS v")
        lines.append(f"      FROM (SELECT raw.*, {value_expr} AS d, {folded(family, key)} AS k FROM {table} AS raw) AS x) AS r")
        lines.append(f"GROUP BY tenant_id, ({at} / {HOUR}) * {HOUR}, k, status;")
        lines.append("")
        lines.append("INSERT INTO series_last_error (tenant_id, family, series_key, at_us, record_id, message)")
        lines.append(f"SELECT tenant_id, '{family}', k, {at}, id, error_message")
        lines.append(f"FROM (SELECT e.*, row_number() OVER (PARTITION BY tenant_id, k ORDER BY {at} DESC, id{C} DESC) AS rn")
        lines.append(f"      FROM (SELECT raw.tenant_id, raw.id, raw.error_message, raw.{at}, {folded(family, key)} AS k")
        lines.append(f"            FROM {table} AS raw WHERE raw.error_message IS NOT NULL AND raw.error_message <> '') AS e) AS latest")
        lines.append("WHERE rn = 1;")
        return "\n".join(lines) + "\n"

    dur = f"coalesce(CASE WHEN duration_ms > {CAP} THEN {CAP} ELSE duration_ms END * 1000, finished_at_us - started_at_us)"
    out.append("-- backfill:begin (re-run by the rollup tests to check it matches the ingest path)")
    out.append(backfill("rule_runs", "rule_runs", "rule_key", dur.replace("duration_ms", "raw.duration_ms")
                        .replace("finished_at_us", "raw.finished_at_us").replace("started_at_us", "raw.started_at_us"),
                        B, ["events_evaluated", "findings_created", "findings_reopened", "findings_resolved"],
                        "started_at_us"))
    out.append(backfill("connector_syncs", "connector_syncs", "integration_id",
                        dur.replace("duration_ms", "raw.duration_ms").replace("finished_at_us", "raw.finished_at_us")
                        .replace("started_at_us", "raw.started_at_us"),
                        B, ["events_ingested", "new_assets_observed", "api_calls_made", "0"], "finished_at_us"))
    out.append(backfill("deliveries", "deliveries", "destination_id", "raw.attempt", A,
                        ["coalesce(latency_ms, 0)", "0", "0", "0"], "attempted_at_us"))
    out.append("-- backfill:end\n")
    if pg:
        out.append("GRANT SELECT, INSERT, UPDATE ON metric_buckets, series_last_error TO custos_app;")
        out.append("GRANT SELECT, INSERT, UPDATE, DELETE ON console_sessions TO custos_app;\n")
        for t in ["metric_buckets", "series_last_error"]:
            out.append(f"""ALTER TABLE {t} ENABLE ROW LEVEL SECURITY;
ALTER TABLE {t} FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON {t}
    USING (tenant_id = current_setting('custos.tenant_id', true))
    WITH CHECK (tenant_id = current_setting('custos.tenant_id', true));
""")
    return "\n".join(out)


here = os.path.dirname(os.path.abspath(__file__))
for d in ["sqlite", "postgres"]:
    with open(os.path.join(here, "..", d, "0005_console.sql"), "w") as f:
        f.write(gen(d))

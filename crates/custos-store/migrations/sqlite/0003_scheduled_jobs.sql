-- Scheduled jobs, SQLite. Keep equivalent to ../postgres/0003_scheduled_jobs.sql (tested).
--
-- A scheduled_job component's schedule lives on the component (cron with a time zone,
-- or a period; and a grace period). job_states holds what the job's pings said (see
-- custos-model's jobs module for the meaning of each column); job_pings every ping;
-- job_flips every change of status, by a ping or by the job monitor.

ALTER TABLE components ADD COLUMN schedule_cron TEXT;
ALTER TABLE components ADD COLUMN schedule_timezone TEXT;
ALTER TABLE components ADD COLUMN schedule_period_seconds INTEGER;
ALTER TABLE components ADD COLUMN schedule_grace_seconds INTEGER;

CREATE TABLE job_states (
    tenant_id TEXT NOT NULL,
    job_id TEXT NOT NULL,
    base_status TEXT NOT NULL,
    reported_status TEXT NOT NULL,
    last_ping_at_us INTEGER,
    last_success_at_us INTEGER,
    last_failure_at_us INTEGER,
    last_start_at_us INTEGER,
    last_start_run_id TEXT,
    last_exit_code INTEGER,
    last_duration_ms INTEGER,
    pings_total INTEGER NOT NULL,
    revision INTEGER NOT NULL,
    PRIMARY KEY (tenant_id, job_id)
) WITHOUT ROWID;

CREATE TABLE job_pings (
    tenant_id TEXT NOT NULL,
    id TEXT NOT NULL,
    job_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    run_id TEXT,
    exit_code INTEGER,
    duration_ms INTEGER,
    body TEXT,
    trace_id TEXT,
    received_at_us INTEGER NOT NULL,
    -- Clustered by job: a ping touches one index, and a job's history is one range.
    PRIMARY KEY (tenant_id, job_id, received_at_us, id)
) WITHOUT ROWID;

CREATE TABLE job_flips (
    tenant_id TEXT NOT NULL,
    id TEXT NOT NULL,
    job_id TEXT NOT NULL,
    at_us INTEGER NOT NULL,
    from_status TEXT NOT NULL,
    to_status TEXT NOT NULL,
    cause TEXT NOT NULL,
    PRIMARY KEY (tenant_id, id)
);
CREATE INDEX job_flips_by_job ON job_flips (tenant_id, job_id, at_us, id);

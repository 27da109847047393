-- Scheduled jobs, PostgreSQL. Keep equivalent to ../sqlite/0003_scheduled_jobs.sql (tested).
--
-- A scheduled_job component's schedule lives on the component (cron with a time zone,
-- or a period; and a grace period). job_states holds what the job's pings said (see
-- custos-model's jobs module for the meaning of each column); job_pings every ping;
-- job_flips every change of status, by a ping or by the job monitor.

ALTER TABLE components ADD COLUMN schedule_cron TEXT;
ALTER TABLE components ADD COLUMN schedule_timezone TEXT;
ALTER TABLE components ADD COLUMN schedule_period_seconds BIGINT;
ALTER TABLE components ADD COLUMN schedule_grace_seconds BIGINT;

CREATE TABLE job_states (
    tenant_id TEXT NOT NULL,
    job_id TEXT NOT NULL,
    base_status TEXT NOT NULL,
    reported_status TEXT NOT NULL,
    last_ping_at_us BIGINT,
    last_success_at_us BIGINT,
    last_failure_at_us BIGINT,
    last_start_at_us BIGINT,
    last_start_run_id TEXT,
    last_exit_code BIGINT,
    last_duration_ms BIGINT,
    pings_total BIGINT NOT NULL,
    revision BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, job_id)
);

CREATE TABLE job_pings (
    tenant_id TEXT NOT NULL,
    id TEXT NOT NULL,
    job_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    run_id TEXT,
    exit_code BIGINT,
    duration_ms BIGINT,
    body TEXT,
    trace_id TEXT,
    received_at_us BIGINT NOT NULL,
    -- Clustered by job: a ping touches one index, and a job's history is one range.
    PRIMARY KEY (tenant_id, job_id, received_at_us, id)
);

CREATE TABLE job_flips (
    tenant_id TEXT NOT NULL,
    id TEXT NOT NULL,
    job_id TEXT NOT NULL,
    at_us BIGINT NOT NULL,
    from_status TEXT NOT NULL,
    to_status TEXT NOT NULL,
    cause TEXT NOT NULL,
    PRIMARY KEY (tenant_id, id)
);
CREATE INDEX job_flips_by_job ON job_flips (tenant_id, job_id, at_us, id);

GRANT SELECT, INSERT, UPDATE ON job_states TO custos_app;
GRANT SELECT, INSERT ON job_pings, job_flips TO custos_app;

ALTER TABLE job_states ENABLE ROW LEVEL SECURITY;
ALTER TABLE job_states FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON job_states
    USING (tenant_id = current_setting('custos.tenant_id', true))
    WITH CHECK (tenant_id = current_setting('custos.tenant_id', true));

ALTER TABLE job_pings ENABLE ROW LEVEL SECURITY;
ALTER TABLE job_pings FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON job_pings
    USING (tenant_id = current_setting('custos.tenant_id', true))
    WITH CHECK (tenant_id = current_setting('custos.tenant_id', true));

ALTER TABLE job_flips ENABLE ROW LEVEL SECURITY;
ALTER TABLE job_flips FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON job_flips
    USING (tenant_id = current_setting('custos.tenant_id', true))
    WITH CHECK (tenant_id = current_setting('custos.tenant_id', true));

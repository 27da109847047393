-- Trace correlation (GET /v1/tenants/{t}/traces/{trace_id}): the rule runs and connector
-- syncs of one trace, without reading the tenant's whole history. Partial: records
-- without a trace id (most, for some platforms) cost nothing here.
CREATE INDEX rule_runs_by_trace ON rule_runs (tenant_id, trace_id, started_at_us, id) WHERE trace_id IS NOT NULL;
CREATE INDEX connector_syncs_by_trace ON connector_syncs (tenant_id, trace_id, started_at_us, id) WHERE trace_id IS NOT NULL;

-- Trace lookups on the logs index the first 8 characters of the trace id (a 32-bit key
-- for W3C trace ids), not the whole id. Keep equivalent across backends (tested).
--
-- The index on the whole id made every append write 32 more random-order bytes per
-- record into a B-tree as large as the log, which cost bulk appends about 40% of their
-- speed, and yet SQLite's planner preferred the time index for a trace query ordered by
-- time. A query by trace id now also matches `substr(trace_id, 1, 8)` and, on SQLite,
-- names this index (custos-store's `ledger::TRACE_KEY`); the full `trace_id = …`
-- comparison removes the rare record whose id only shares the prefix.

DROP INDEX timeline_events_by_trace;
CREATE INDEX timeline_events_by_trace ON timeline_events (tenant_id, substr(trace_id, 1, 8));

DROP INDEX audit_records_by_trace;
CREATE INDEX audit_records_by_trace ON audit_records (tenant_id, substr(trace_id, 1, 8));

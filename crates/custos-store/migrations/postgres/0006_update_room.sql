-- Rollup and state rows are updated in place by every ingest batch and every ping. With
-- the default fill factor (100) an updated row rarely fits on its own page, so each
-- update writes the new version elsewhere and leaves a dead one behind: ten million rule
-- runs left metric_series, 3,014 live rows, at 60 MB, and every read of it scanned them
-- all. Room left on each page lets PostgreSQL keep the new version beside the old one
-- (a heap-only tuple update: these tables index none of the updated columns) and prune
-- the old one in place, so the tables stay near their live size between vacuums.
--
-- This applies to pages written from now on. A database that already grew can be
-- compacted once with VACUUM FULL on these tables (it locks them while it runs).
ALTER TABLE metric_series SET (fillfactor = 50);
ALTER TABLE metric_buckets SET (fillfactor = 70);
ALTER TABLE series_last_error SET (fillfactor = 70);
ALTER TABLE job_states SET (fillfactor = 70);

-- The console sums each series over a window of hourly rows. Without statistics on how
-- the key columns combine, the planner guesses ten times more series than there are
-- (it multiplies the columns' separate counts) and sorts them, spilling to disk, where
-- hashing them in memory is cheaper.
CREATE STATISTICS metric_buckets_series (ndistinct) ON tenant_id, family, series_key, status FROM metric_buckets;

//! Metric rollups: per-series counters and histogram buckets kept in the store and
//! updated in the same transaction as the records they count, so the platform metrics
//! served at `/metrics` are right after a restart and the same from every replica.
//!
//! Each rolled-up record kind is a [`RollupFamily`] whose series are keyed by
//! `(key, status)`: the rule key, the connector's integration id or the delivery's
//! destination id, and the record's status. Only records actually inserted count (a
//! re-send counts once). A family holds at most `series_cap` series per tenant; the
//! label sets that arrive beyond the cap are folded into one series per status whose
//! key is [`FOLDED_KEY`], and its `records` count is what was folded.
//!
//! Values are kept in integer base units (microseconds, attempts) so that bucket
//! boundaries compare exactly in Rust and in SQL; sums and totals are doubles, which
//! cannot overflow into an error.

use std::collections::HashMap;

use custos_model::records::{ConnectorSync, Delivery, IngestRecord, QueueSnapshot, RuleRun};

use crate::error::{StoreError, StoreResult};
use crate::table::RowReader;

/// Finite histogram buckets per series (the `+Inf` bucket is the observation count).
pub const BUCKETS: usize = 15;

/// The stored key of a family's overflow series (exposed as `other`). No real key is
/// empty, so the fold never merges with a real series in the store.
pub const FOLDED_KEY: &str = "";

/// Default bound on series per tenant and family.
pub const DEFAULT_SERIES_CAP: usize = 10_000;

/// Duration bucket upper bounds, in microseconds: 5 ms to 15 min.
pub const DURATION_BOUNDS_US: [i64; BUCKETS] = [
    5_000,
    10_000,
    25_000,
    50_000,
    100_000,
    250_000,
    500_000,
    1_000_000,
    2_500_000,
    5_000_000,
    10_000_000,
    30_000_000,
    60_000_000,
    300_000_000,
    900_000_000,
];

/// Delivery attempt-number bucket upper bounds (how deep into retries an attempt was).
pub const ATTEMPT_BOUNDS: [i64; BUCKETS] = [1, 2, 3, 4, 5, 6, 7, 8, 10, 12, 15, 20, 30, 50, 100];

/// Largest single value a record contributes to a sum (about 11.6 days in microseconds);
/// larger values are clamped so one absurd record cannot make a sum meaningless.
pub const MAX_CONTRIBUTION: i64 = 1 << 40;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RollupFamily {
    /// Key: rule key. Observation: run duration (µs). Totals: events evaluated, findings
    /// created, reopened, resolved. Last: latest `started_at`.
    RuleRuns,
    /// Key: integration id. Observation: sync duration (µs). Totals: events ingested,
    /// new assets observed, API calls made. Last: latest `finished_at`.
    ConnectorSyncs,
    /// Key: destination id. Observation: attempt number. Totals: latency (ms) sum.
    /// Last: latest `attempted_at`.
    Deliveries,
}

impl RollupFamily {
    pub const ALL: [RollupFamily; 3] = [RollupFamily::RuleRuns, RollupFamily::ConnectorSyncs, RollupFamily::Deliveries];

    pub fn as_str(self) -> &'static str {
        match self {
            RollupFamily::RuleRuns => "rule_runs",
            RollupFamily::ConnectorSyncs => "connector_syncs",
            RollupFamily::Deliveries => "deliveries",
        }
    }

    pub fn parse(value: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|f| f.as_str() == value)
    }

    /// Upper bounds of the histogram buckets, in the family's base unit.
    pub fn bounds(self) -> &'static [i64; BUCKETS] {
        match self {
            RollupFamily::RuleRuns | RollupFamily::ConnectorSyncs => &DURATION_BOUNDS_US,
            RollupFamily::Deliveries => &ATTEMPT_BOUNDS,
        }
    }

    /// How many base units make one exposed unit (seconds, or attempts).
    pub fn unit_scale(self) -> f64 {
        match self {
            RollupFamily::RuleRuns | RollupFamily::ConnectorSyncs => 1_000_000.0,
            RollupFamily::Deliveries => 1.0,
        }
    }
}

/// The accumulated values of one series.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SeriesValues {
    /// Records counted into the series.
    pub records: i64,
    /// Records with an observation (the histogram count; a run without a duration
    /// counts in `records` but not here).
    pub observations: i64,
    /// Sum of observations, in base units.
    pub sum: f64,
    /// Observations per bucket, not cumulative: bucket `i` holds values in
    /// `(bounds[i-1], bounds[i]]`; values above the last bound are only in `observations`.
    pub buckets: [i64; BUCKETS],
    /// Family-specific totals (see [`RollupFamily`]).
    pub totals: [f64; 4],
    /// Latest time seen, in microseconds since the epoch.
    pub last_us: Option<i64>,
}

impl SeriesValues {
    fn add(&mut self, other: &SeriesValues) {
        self.records += other.records;
        self.observations += other.observations;
        self.sum += other.sum;
        for (a, b) in self.buckets.iter_mut().zip(other.buckets) {
            *a += b;
        }
        for (a, b) in self.totals.iter_mut().zip(other.totals) {
            *a += b;
        }
        self.last_us = match (self.last_us, other.last_us) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        };
    }

    /// The `q` quantile (0 < q ≤ 1) of the observations, in base units, estimated the way
    /// Prometheus's `histogram_quantile` does: find the bucket holding the rank, and
    /// interpolate linearly within it (the first bucket starts at 0). Observations above
    /// the last bound have no upper edge: a rank among them answers the last bound.
    /// `None` without observations.
    pub fn quantile(&self, family: RollupFamily, q: f64) -> Option<f64> {
        if self.observations <= 0 || !(q > 0.0 && q <= 1.0) {
            return None;
        }
        let rank = q * self.observations as f64;
        let bounds = family.bounds();
        let mut below = 0i64;
        for (i, &count) in self.buckets.iter().enumerate() {
            if count > 0 && (below + count) as f64 >= rank {
                let lower = if i == 0 { 0.0 } else { bounds[i - 1] as f64 };
                let upper = bounds[i] as f64;
                let within = ((rank - below as f64) / count as f64).clamp(0.0, 1.0);
                return Some(lower + (upper - lower) * within);
            }
            below += count;
        }
        Some(bounds[BUCKETS - 1] as f64)
    }

    fn observe(&mut self, family: RollupFamily, value: i64) {
        let value = value.clamp(0, MAX_CONTRIBUTION);
        self.observations += 1;
        self.sum += value as f64;
        if let Some(bucket) = family.bounds().iter().position(|&bound| value <= bound) {
            self.buckets[bucket] += 1;
        }
    }
}

/// One stored series.
#[derive(Debug, Clone, PartialEq)]
pub struct SeriesRow {
    pub family: RollupFamily,
    /// [`FOLDED_KEY`] for the overflow series.
    pub key: String,
    pub status: String,
    pub values: SeriesValues,
}

/// A record's contribution to its family.
#[derive(Debug, Clone)]
pub(crate) struct Contribution {
    pub key: String,
    pub status: &'static str,
    pub values: SeriesValues,
}

fn clamp(value: i64) -> f64 {
    value.clamp(0, MAX_CONTRIBUTION) as f64
}

/// What one inserted record changes in the rollups.
#[derive(Debug, Clone)]
pub(crate) enum RollupItem {
    Series(Contribution),
    Queue(QueueSnapshot),
}

/// Record kinds whose inserts update rollups.
pub(crate) trait Rollup: IngestRecord {
    /// The family the record counts in; `None` for kinds kept another way.
    const FAMILY: Option<RollupFamily>;
    fn rollup_item(&self) -> RollupItem;
}

impl Rollup for RuleRun {
    const FAMILY: Option<RollupFamily> = Some(RollupFamily::RuleRuns);

    fn rollup_item(&self) -> RollupItem {
        let mut values = SeriesValues {
            records: 1,
            totals: [
                clamp(self.events_evaluated),
                clamp(self.findings_created),
                clamp(self.findings_reopened),
                clamp(self.findings_resolved),
            ],
            last_us: Some(self.started_at.as_micros()),
            ..SeriesValues::default()
        };
        let duration_us = match (self.duration_ms, self.finished_at) {
            (Some(ms), _) => Some(ms.saturating_mul(1000)),
            (None, Some(finished)) => Some(finished.micros_since(self.started_at)),
            (None, None) => None,
        };
        if let Some(us) = duration_us {
            values.observe(RollupFamily::RuleRuns, us);
        }
        RollupItem::Series(Contribution { key: self.rule_key.clone(), status: self.status.as_str(), values })
    }
}

impl Rollup for ConnectorSync {
    const FAMILY: Option<RollupFamily> = Some(RollupFamily::ConnectorSyncs);

    fn rollup_item(&self) -> RollupItem {
        let mut values = SeriesValues {
            records: 1,
            totals: [clamp(self.events_ingested), clamp(self.new_assets_observed), clamp(self.api_calls_made), 0.0],
            last_us: Some(self.finished_at.as_micros()),
            ..SeriesValues::default()
        };
        let duration_us =
            self.duration_ms.map_or(self.finished_at.micros_since(self.started_at), |ms| ms.saturating_mul(1000));
        values.observe(RollupFamily::ConnectorSyncs, duration_us);
        RollupItem::Series(Contribution { key: self.integration_id.clone(), status: self.status.as_str(), values })
    }
}

impl Rollup for Delivery {
    const FAMILY: Option<RollupFamily> = Some(RollupFamily::Deliveries);

    fn rollup_item(&self) -> RollupItem {
        let mut values = SeriesValues {
            records: 1,
            totals: [self.latency_ms.map_or(0.0, clamp), 0.0, 0.0, 0.0],
            last_us: Some(self.attempted_at.as_micros()),
            ..SeriesValues::default()
        };
        values.observe(RollupFamily::Deliveries, self.attempt);
        RollupItem::Series(Contribution { key: self.destination_id.clone(), status: self.status.as_str(), values })
    }
}

impl Rollup for QueueSnapshot {
    /// Queues keep their latest snapshot instead (`queue_latest`).
    const FAMILY: Option<RollupFamily> = None;

    fn rollup_item(&self) -> RollupItem {
        RollupItem::Queue(self.clone())
    }
}

/// Sums contributions per `(key, status)`.
pub(crate) fn aggregate(
    contributions: impl IntoIterator<Item = Contribution>,
) -> HashMap<(String, String), SeriesValues> {
    let mut series: HashMap<(String, String), SeriesValues> = HashMap::new();
    for c in contributions {
        series.entry((c.key, c.status.to_owned())).or_default().add(&c.values);
    }
    series
}

/// Applies the cap: `new` are the batch's series not yet stored, `room` how many more
/// the family may hold. Admits the first `room` new keys in sorted order (so every
/// replica decides alike) and folds the rest into [`FOLDED_KEY`] per status.
pub(crate) fn fold_over_cap(
    mut batch: HashMap<(String, String), SeriesValues>,
    mut new: Vec<(String, String)>,
    room: usize,
) -> HashMap<(String, String), SeriesValues> {
    if new.len() <= room {
        return batch;
    }
    new.sort();
    for series in new.into_iter().skip(room) {
        if let Some(values) = batch.remove(&series) {
            batch.entry((FOLDED_KEY.to_owned(), series.1)).or_default().add(&values);
        }
    }
    batch
}

/// The latest snapshot of each queue in a batch: greatest `(observed_at, id)`, the
/// same order the stored upsert and the migration's backfill use.
pub(crate) fn latest_per_queue(snapshots: Vec<QueueSnapshot>) -> Vec<QueueSnapshot> {
    let mut latest: HashMap<String, QueueSnapshot> = HashMap::new();
    for snapshot in snapshots {
        match latest.get(&snapshot.component_id) {
            Some(kept) if (kept.observed_at, kept.id.as_str()) >= (snapshot.observed_at, snapshot.id.as_str()) => {}
            _ => {
                latest.insert(snapshot.component_id.clone(), snapshot);
            }
        }
    }
    let mut out: Vec<QueueSnapshot> = latest.into_values().collect();
    out.sort_by(|a, b| a.component_id.cmp(&b.component_id));
    out
}

/// `metric_series` columns after `tenant_id, family, series_key, status`, in order.
pub(crate) fn value_columns() -> Vec<String> {
    let mut columns: Vec<String> = ["records", "observations", "value_sum"].map(String::from).to_vec();
    columns.extend((0..BUCKETS).map(|i| format!("b{i:02}")));
    columns.extend((0..4).map(|i| format!("total_{i}")));
    columns.extend(["last_us", "first_seen_us"].map(String::from));
    columns
}

/// Every series of the tenant bound as the first parameter (`param`), in key order;
/// `collate` makes the database order keys by bytes (empty on SQLite).
pub(crate) fn select_series_sql(param: &str, collate: &str) -> String {
    format!(
        "SELECT family, series_key, status, {} FROM metric_series WHERE tenant_id = {param} \
         ORDER BY family, series_key{collate}, status",
        value_columns().join(", ")
    )
}

/// Decodes a row of [`select_series_sql`]: family, key, status, then [`value_columns`].
pub(crate) fn series_from_row(row: &impl RowReader) -> StoreResult<SeriesRow> {
    let family = row.text(0)?;
    let family = RollupFamily::parse(&family)
        .ok_or_else(|| StoreError::Corrupt { what: "metric series", detail: format!("unknown family {family:?}") })?;
    let mut values =
        SeriesValues { records: row.int(3)?, observations: row.int(4)?, sum: row.real(5)?, ..SeriesValues::default() };
    for (i, bucket) in values.buckets.iter_mut().enumerate() {
        *bucket = row.int(6 + i)?;
    }
    for (i, total) in values.totals.iter_mut().enumerate() {
        *total = row.real(6 + BUCKETS + i)?;
    }
    values.last_us = row.opt_int(6 + BUCKETS + values.totals.len())?;
    Ok(SeriesRow { family, key: row.text(1)?, status: row.text(2)?, values })
}

/// The `ON CONFLICT` clause adding a batch's values to a stored series.
pub(crate) fn upsert_series_conflict_clause() -> String {
    let mut sets = Vec::new();
    for column in value_columns() {
        match column.as_str() {
            "first_seen_us" => {}
            "last_us" => sets.push(
                "last_us = CASE WHEN metric_series.last_us IS NULL OR excluded.last_us > metric_series.last_us \
                 THEN excluded.last_us ELSE metric_series.last_us END"
                    .to_owned(),
            ),
            other => sets.push(format!("{other} = metric_series.{other} + excluded.{other}")),
        }
    }
    format!("ON CONFLICT (tenant_id, family, series_key, status) DO UPDATE SET {}", sets.join(", "))
}

pub(crate) const QUEUE_COLUMNS: &str = "tenant_id, component_id, id, observed_at_us, depth_pending, depth_in_flight, \
    depth_retrying, depth_dead_lettered, oldest_item_age_ms, processed_total, failed_total, received_at_us";

/// The `ON CONFLICT` clause keeping the greater `(observed_at_us, id)`; `collate` is
/// the collation that orders ids by bytes (empty on SQLite, whose default does).
pub(crate) fn upsert_queue_conflict_clause(collate: &str) -> String {
    let columns: Vec<&str> = QUEUE_COLUMNS.split(',').map(str::trim).skip(2).collect();
    let sets: Vec<String> = columns.iter().map(|c| format!("{c} = excluded.{c}")).collect();
    format!(
        "ON CONFLICT (tenant_id, component_id) DO UPDATE SET {} WHERE excluded.observed_at_us > queue_latest.observed_at_us \
         OR (excluded.observed_at_us = queue_latest.observed_at_us AND excluded.id{collate} > queue_latest.id{collate})",
        sets.join(", ")
    )
}

/// The backfill statements of migration 0002 (between its `backfill:begin` and
/// `backfill:end` markers).
pub(crate) fn backfill_sql(migration: &str) -> &str {
    let start = migration.find("-- backfill:begin").expect("migration 0002 marks its backfill");
    let end = migration.find("-- backfill:end").expect("migration 0002 marks its backfill");
    &migration[start..end]
}

/// Splits the batch's inserted records into series contributions and queue snapshots.
pub(crate) fn split(items: impl IntoIterator<Item = RollupItem>) -> (Vec<Contribution>, Vec<QueueSnapshot>) {
    let mut series = Vec::new();
    let mut queues = Vec::new();
    for item in items {
        match item {
            RollupItem::Series(c) => series.push(c),
            RollupItem::Queue(q) => queues.push(q),
        }
    }
    (series, queues)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn contribution(key: &str, status: &'static str, observe: Option<i64>) -> Contribution {
        let mut values = SeriesValues { records: 1, ..SeriesValues::default() };
        if let Some(v) = observe {
            values.observe(RollupFamily::RuleRuns, v);
        }
        Contribution { key: key.into(), status, values }
    }

    #[test]
    fn bucket_bounds_are_inclusive_and_overflow_only_counts() {
        let mut v = SeriesValues::default();
        v.observe(RollupFamily::RuleRuns, 5_000);
        v.observe(RollupFamily::RuleRuns, 5_001);
        v.observe(RollupFamily::RuleRuns, 901_000_000);
        assert_eq!(v.buckets[0], 1);
        assert_eq!(v.buckets[1], 1);
        assert_eq!(v.buckets.iter().sum::<i64>(), 2);
        assert_eq!(v.observations, 3);
    }

    #[test]
    fn quantiles_interpolate_within_the_bucket_holding_the_rank() {
        let mut v = SeriesValues::default();
        assert_eq!(v.quantile(RollupFamily::RuleRuns, 0.95), None);
        // 100 runs between 10 and 25 ms: the p95 is 95 % of the way through that bucket.
        for _ in 0..100 {
            v.observe(RollupFamily::RuleRuns, 20_000);
        }
        let p95 = v.quantile(RollupFamily::RuleRuns, 0.95).unwrap();
        assert!((p95 - 24_250.0).abs() < 1e-6, "{p95}");
        assert_eq!(v.quantile(RollupFamily::RuleRuns, 0.0), None);
        // Beyond the last bound, the last bound answers.
        for _ in 0..1000 {
            v.observe(RollupFamily::RuleRuns, 2_000_000_000);
        }
        assert_eq!(v.quantile(RollupFamily::RuleRuns, 0.95), Some(900_000_000.0));
    }

    proptest::proptest! {
        /// A quantile lies in the bucket of the observation of that rank, and never
        /// decreases as q grows.
        #[test]
        fn quantiles_are_monotonic_and_bracket_the_true_value(
            values in proptest::collection::vec(0i64..1_000_000_000, 1..300),
            q1 in 0.01f64..1.0,
            q2 in 0.01f64..1.0,
        ) {
            let mut v = SeriesValues::default();
            for &value in &values {
                v.observe(RollupFamily::RuleRuns, value);
            }
            let (lo, hi) = if q1 <= q2 { (q1, q2) } else { (q2, q1) };
            let (a, b) = (v.quantile(RollupFamily::RuleRuns, lo).unwrap(), v.quantile(RollupFamily::RuleRuns, hi).unwrap());
            proptest::prop_assert!(a <= b + 1e-9);
            let mut sorted = values.clone();
            sorted.sort_unstable();
            let rank = ((hi * values.len() as f64).ceil() as usize).clamp(1, values.len());
            let truth = sorted[rank - 1];
            let bounds = RollupFamily::RuleRuns.bounds();
            let bucket = bounds.iter().position(|&bound| truth <= bound);
            let (lower, upper) = match bucket {
                Some(0) => (0, bounds[0]),
                Some(i) => (bounds[i - 1], bounds[i]),
                None => (bounds[BUCKETS - 1], bounds[BUCKETS - 1]),
            };
            proptest::prop_assert!(b >= lower as f64 - 1e-6 && b <= upper as f64 + 1e-6, "{b} not in [{lower}, {upper}] (truth {truth})");
        }
    }

    #[test]
    fn aggregation_sums_per_series() {
        let series = aggregate([
            contribution("a", "failed", Some(1)),
            contribution("a", "failed", None),
            contribution("b", "failed", Some(2)),
        ]);
        let a = &series[&("a".to_owned(), "failed".to_owned())];
        assert_eq!((a.records, a.observations), (2, 1));
        assert_eq!(series.len(), 2);
    }

    #[test]
    fn folding_keeps_the_first_sorted_keys_and_merges_the_rest_per_status() {
        let batch = aggregate([
            contribution("c", "failed", Some(1)),
            contribution("a", "failed", Some(1)),
            contribution("b", "succeeded", Some(1)),
            contribution("d", "succeeded", Some(1)),
        ]);
        let new = batch.keys().cloned().collect();
        let folded = fold_over_cap(batch, new, 1);
        let mut keys: Vec<_> = folded.keys().cloned().collect();
        keys.sort();
        let k = |a: &str, b: &str| (a.to_owned(), b.to_owned());
        assert_eq!(keys, [k("", "failed"), k("", "succeeded"), k("a", "failed")]);
        assert_eq!(folded[&k("", "succeeded")].records, 2);
        assert_eq!(folded[&k("", "failed")].records, 1);
    }
}

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
    /// Adds `other` in: counts, sums and buckets add up; the later `last_us` wins.
    pub fn merge(&mut self, other: &SeriesValues) {
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

/// The width of a [`metric_buckets`](BucketRow) bucket: one hour, in microseconds.
pub const BUCKET_US: i64 = 3_600_000_000;

/// The start of the hour holding `us` (integer division, as the SQL backfill does).
pub fn bucket_of(us: i64) -> i64 {
    (us / BUCKET_US) * BUCKET_US
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

/// One hour of one series (`metric_buckets`): the same values as [`SeriesRow`], for the
/// records whose own time falls in `[bucket_us, bucket_us + BUCKET_US)`.
#[derive(Debug, Clone, PartialEq)]
pub struct BucketRow {
    pub family: RollupFamily,
    pub bucket_us: i64,
    /// [`FOLDED_KEY`] for the overflow series.
    pub key: String,
    pub status: String,
    pub values: SeriesValues,
}

/// One hour of one series with its counts and the sum of its observations only, no
/// histogram: what a chart of the hours needs, at a sixth of [`BucketRow`]'s columns.
#[derive(Debug, Clone, PartialEq)]
pub struct HourTotals {
    pub bucket_us: i64,
    /// [`FOLDED_KEY`] for the overflow series.
    pub key: String,
    pub status: String,
    pub records: i64,
    pub observations: i64,
    /// The sum of the observed values (microseconds for durations).
    pub sum: f64,
}

/// The latest record of a series key that carried an error message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LastError {
    /// The record's own time (as `last_us`).
    pub at_us: i64,
    pub record_id: String,
    pub message: String,
}

impl LastError {
    /// Whether `self` is later than `other`: greater `(at_us, record_id)`, ids by bytes,
    /// the order the stored upsert and the backfill use.
    fn later_than(&self, other: &LastError) -> bool {
        (self.at_us, self.record_id.as_bytes()) > (other.at_us, other.record_id.as_bytes())
    }
}

/// A record's contribution to its family.
#[derive(Debug, Clone)]
pub(crate) struct Contribution {
    pub key: String,
    pub status: &'static str,
    pub values: SeriesValues,
    /// Its error message, if it carried one.
    pub error: Option<LastError>,
}

impl Contribution {
    fn new(key: &str, status: &'static str, values: SeriesValues, id: &str, error: Option<&String>) -> Self {
        let error = error.filter(|message| !message.is_empty()).map(|message| LastError {
            at_us: values.last_us.unwrap_or_default(),
            record_id: id.to_owned(),
            message: message.clone(),
        });
        Contribution { key: key.to_owned(), status, values, error }
    }
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
        RollupItem::Series(Contribution::new(
            &self.rule_key,
            self.status.as_str(),
            values,
            &self.id,
            self.error_message.as_ref(),
        ))
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
        RollupItem::Series(Contribution::new(
            &self.integration_id,
            self.status.as_str(),
            values,
            &self.id,
            self.error_message.as_ref(),
        ))
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
        RollupItem::Series(Contribution::new(
            &self.destination_id,
            self.status.as_str(),
            values,
            &self.id,
            self.error_message.as_ref(),
        ))
    }
}

impl Rollup for QueueSnapshot {
    /// Queues keep their latest snapshot instead (`queue_latest`).
    const FAMILY: Option<RollupFamily> = None;

    fn rollup_item(&self) -> RollupItem {
        RollupItem::Queue(self.clone())
    }
}

/// A batch's contributions summed: per series, per series and hour, and the latest
/// error per key.
#[derive(Debug, Clone, Default)]
pub(crate) struct Aggregate {
    pub series: HashMap<(String, String), SeriesValues>,
    /// Keyed by `(key, status, bucket_us)`.
    pub buckets: HashMap<(String, String, i64), SeriesValues>,
    /// Keyed by `(key, status)` until [`Aggregate::last_errors`] reduces them per key.
    errors: HashMap<(String, String), LastError>,
}

impl Aggregate {
    fn add(&mut self, key: String, status: String, values: &SeriesValues, error: Option<LastError>) {
        let hour = bucket_of(values.last_us.unwrap_or_default());
        self.buckets.entry((key.clone(), status.clone(), hour)).or_default().merge(values);
        if let Some(error) = error {
            keep_later(&mut self.errors, (key.clone(), status.clone()), error);
        }
        self.series.entry((key, status)).or_default().merge(values);
    }

    /// The latest error of each key.
    pub fn last_errors(&self) -> HashMap<String, LastError> {
        let mut latest = HashMap::new();
        for ((key, _), error) in &self.errors {
            keep_later(&mut latest, key.clone(), error.clone());
        }
        latest
    }
}

fn keep_later<K: std::hash::Hash + Eq>(map: &mut HashMap<K, LastError>, key: K, error: LastError) {
    match map.get(&key) {
        Some(kept) if !error.later_than(kept) => {}
        _ => {
            map.insert(key, error);
        }
    }
}

/// Sums contributions per `(key, status)`, per hour, and keeps each key's latest error.
pub(crate) fn aggregate(contributions: impl IntoIterator<Item = Contribution>) -> Aggregate {
    let mut batch = Aggregate::default();
    for c in contributions {
        batch.add(c.key, c.status.to_owned(), &c.values, c.error);
    }
    batch
}

/// Applies the cap: `new` are the batch's series not yet stored, `room` how many more
/// the family may hold. Admits the first `room` new keys in sorted order (so every
/// replica decides alike) and folds the rest into [`FOLDED_KEY`] per status, in the
/// series, their hours and their errors alike.
pub(crate) fn fold_over_cap(batch: Aggregate, mut new: Vec<(String, String)>, room: usize) -> Aggregate {
    if new.len() <= room {
        return batch;
    }
    new.sort();
    let folded: std::collections::HashSet<(String, String)> = new.into_iter().skip(room).collect();
    let fold = |key: String, status: &str| {
        if folded.contains(&(key.clone(), status.to_owned())) { FOLDED_KEY.to_owned() } else { key }
    };
    let mut out = Aggregate::default();
    for ((key, status, hour), values) in batch.buckets {
        let key = fold(key, &status);
        out.buckets.entry((key, status, hour)).or_default().merge(&values);
    }
    for ((key, status), values) in batch.series {
        let key = fold(key, &status);
        out.series.entry((key, status)).or_default().merge(&values);
    }
    for ((key, status), error) in batch.errors {
        let key = fold(key, &status);
        keep_later(&mut out.errors, (key, status), error);
    }
    out
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
    adding_conflict_clause("metric_series", "tenant_id, family, series_key, status")
}

/// `ON CONFLICT (conflict) DO UPDATE` adding every value column of `table`, keeping
/// the greater `last_us` and the first `first_seen_us`.
fn adding_conflict_clause(table: &str, conflict: &str) -> String {
    let mut sets = Vec::new();
    for column in value_columns() {
        match column.as_str() {
            "first_seen_us" => {}
            "last_us" => sets.push(format!(
                "last_us = CASE WHEN {table}.last_us IS NULL OR excluded.last_us > {table}.last_us \
                 THEN excluded.last_us ELSE {table}.last_us END"
            )),
            other => sets.push(format!("{other} = {table}.{other} + excluded.{other}")),
        }
    }
    format!("ON CONFLICT ({conflict}) DO UPDATE SET {}", sets.join(", "))
}

/// `metric_buckets` columns after `tenant_id, family, bucket_us, series_key, status`.
pub(crate) fn bucket_value_columns() -> Vec<String> {
    value_columns().into_iter().filter(|c| c != "first_seen_us").collect()
}

/// The `ON CONFLICT` clause adding a batch's values to a stored hour.
pub(crate) fn upsert_bucket_conflict_clause() -> String {
    adding_conflict_clause("metric_buckets", "tenant_id, family, bucket_us, series_key, status")
}

/// The sums of every value column as `family, series_key, status, …` (a
/// [`series_from_row`] row), integers cast back from PostgreSQL's `numeric` sums.
fn summed_columns() -> String {
    let mut columns = vec!["family".to_owned(), "series_key".to_owned(), "status".to_owned()];
    for column in bucket_value_columns() {
        columns.push(match column.as_str() {
            "last_us" => "max(last_us)".to_owned(),
            "value_sum" => "sum(value_sum)".to_owned(),
            c if c.starts_with("total_") => format!("sum({c})"),
            c => format!("CAST(sum({c}) AS BIGINT)"),
        });
    }
    columns.join(", ")
}

/// One family's hours from `$3`/`?3` on, summed per series: rows for
/// [`series_from_row`]. Parameters: tenant, family, since (µs).
pub(crate) fn select_window_sql(params: [&str; 3], collate: &str) -> String {
    let [tenant, family, since] = params;
    format!(
        "SELECT {} FROM metric_buckets WHERE tenant_id = {tenant} AND family = {family} AND bucket_us >= {since} \
         GROUP BY family, series_key, status ORDER BY series_key{collate}, status",
        summed_columns()
    )
}

/// One family's hours from `since` on, by hour, key and status. Parameters as
/// [`select_window_sql`].
pub(crate) fn select_buckets_sql(params: [&str; 3], collate: &str) -> String {
    let [tenant, family, since] = params;
    format!(
        "SELECT family, series_key, status, {}, bucket_us FROM metric_buckets \
         WHERE tenant_id = {tenant} AND family = {family} AND bucket_us >= {since} \
         ORDER BY bucket_us, series_key{collate}, status",
        bucket_value_columns().join(", ")
    )
}

/// One family's hours from `since` on, counts and sums only ([`HourTotals`]), ordered
/// as [`select_buckets_sql`]. Parameters as [`select_window_sql`].
pub(crate) fn select_hour_totals_sql(params: [&str; 3], collate: &str) -> String {
    let [tenant, family, since] = params;
    format!(
        "SELECT series_key, status, records, observations, value_sum, bucket_us FROM metric_buckets \
         WHERE tenant_id = {tenant} AND family = {family} AND bucket_us >= {since} \
         ORDER BY bucket_us, series_key{collate}, status"
    )
}

/// Decodes a row of [`select_hour_totals_sql`].
pub(crate) fn hour_totals_from_row(row: &impl RowReader) -> StoreResult<HourTotals> {
    Ok(HourTotals {
        key: row.text(0)?,
        status: row.text(1)?,
        records: row.int(2)?,
        observations: row.int(3)?,
        sum: row.real(4)?,
        bucket_us: row.int(5)?,
    })
}

/// Decodes a row of [`select_buckets_sql`].
pub(crate) fn bucket_from_row(row: &impl RowReader) -> StoreResult<BucketRow> {
    let series = series_from_row(row)?;
    let bucket_us = row.int(3 + bucket_value_columns().len())?;
    Ok(BucketRow { family: series.family, bucket_us, key: series.key, status: series.status, values: series.values })
}

/// Upserts one key's latest error, keeping the later `(at_us, record_id)`; `collate`
/// orders ids by bytes. Parameters: tenant, family, key, at, record id, message.
pub(crate) fn upsert_error_sql(params: [&str; 6], collate: &str) -> String {
    format!(
        "INSERT INTO series_last_error (tenant_id, family, series_key, at_us, record_id, message) \
         VALUES ({}) ON CONFLICT (tenant_id, family, series_key) DO UPDATE SET at_us = excluded.at_us, \
         record_id = excluded.record_id, message = excluded.message \
         WHERE excluded.at_us > series_last_error.at_us OR (excluded.at_us = series_last_error.at_us \
         AND excluded.record_id{collate} > series_last_error.record_id{collate})",
        params.join(", ")
    )
}

/// A family's latest errors per key. Parameters: tenant, family.
pub(crate) fn select_errors_sql(params: [&str; 2], collate: &str) -> String {
    let [tenant, family] = params;
    format!(
        "SELECT series_key, at_us, record_id, message FROM series_last_error \
         WHERE tenant_id = {tenant} AND family = {family} ORDER BY series_key{collate}"
    )
}

/// Decodes a row of [`select_errors_sql`].
pub(crate) fn error_from_row(row: &impl RowReader) -> StoreResult<(String, LastError)> {
    Ok((row.text(0)?, LastError { at_us: row.int(1)?, record_id: row.text(2)?, message: row.text(3)? }))
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

/// The backfill statements of a rollup migration (0002, 0005): between its
/// `backfill:begin` and `backfill:end` markers.
pub(crate) fn backfill_sql(migration: &str) -> &str {
    let start = migration.find("-- backfill:begin").expect("the rollup migration marks its backfill");
    let end = migration.find("-- backfill:end").expect("the rollup migration marks its backfill");
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
        let mut values = SeriesValues { records: 1, last_us: Some(0), ..SeriesValues::default() };
        if let Some(v) = observe {
            values.observe(RollupFamily::RuleRuns, v);
        }
        Contribution { key: key.into(), status, values, error: None }
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
    fn aggregation_sums_per_series_and_hour_and_keeps_the_latest_error() {
        let mut late = contribution("a", "failed", None);
        late.values.last_us = Some(BUCKET_US + 5);
        late.error = Some(LastError { at_us: BUCKET_US + 5, record_id: "r2".into(), message: "late".into() });
        let mut early = contribution("a", "failed", Some(1));
        early.error = Some(LastError { at_us: 7, record_id: "r1".into(), message: "early".into() });
        let batch = aggregate([late, early, contribution("b", "failed", Some(2))]);
        let a = &batch.series[&("a".to_owned(), "failed".to_owned())];
        assert_eq!((a.records, a.observations), (2, 1));
        assert_eq!(batch.series.len(), 2);
        // Two hours of `a`: one record in each.
        assert_eq!(batch.buckets[&("a".to_owned(), "failed".to_owned(), 0)].records, 1);
        assert_eq!(batch.buckets[&("a".to_owned(), "failed".to_owned(), BUCKET_US)].records, 1);
        assert_eq!(batch.last_errors()["a"].message, "late");
        assert!(!batch.last_errors().contains_key("b"));
    }

    #[test]
    fn hours_start_on_the_hour() {
        assert_eq!(bucket_of(0), 0);
        assert_eq!(bucket_of(BUCKET_US - 1), 0);
        assert_eq!(bucket_of(BUCKET_US), BUCKET_US);
        assert_eq!(bucket_of(1_700_000_000_000_000), 1_699_999_200_000_000);
    }

    #[test]
    fn folding_keeps_the_first_sorted_keys_and_merges_the_rest_per_status() {
        let mut d = contribution("d", "succeeded", Some(1));
        d.error = Some(LastError { at_us: 0, record_id: "x".into(), message: "d broke".into() });
        let batch = aggregate([
            contribution("c", "failed", Some(1)),
            contribution("a", "failed", Some(1)),
            contribution("b", "succeeded", Some(1)),
            d,
        ]);
        let new = batch.series.keys().cloned().collect();
        let folded = fold_over_cap(batch, new, 1);
        let mut keys: Vec<_> = folded.series.keys().cloned().collect();
        keys.sort();
        let k = |a: &str, b: &str| (a.to_owned(), b.to_owned());
        assert_eq!(keys, [k("", "failed"), k("", "succeeded"), k("a", "failed")]);
        assert_eq!(folded.series[&k("", "succeeded")].records, 2);
        assert_eq!(folded.series[&k("", "failed")].records, 1);
        // The hours and the errors fold alike.
        let mut hours: Vec<_> = folded.buckets.keys().map(|(key, status, _)| k(key, status)).collect();
        hours.sort();
        assert_eq!(hours, keys);
        assert_eq!(folded.last_errors().into_keys().collect::<Vec<_>>(), [""]);
    }
}

//! How each record type maps onto its table, shared by both backends.
//!
//! A record is converted to its JSON object once; each column takes one field of it
//! (a dotted path for nested fields), and the digest of that same JSON is stored beside
//! it. Reading reverses the mapping. Adding a record type is adding a [`TableSpec`].

use custos_model::records::{IngestRecord, RecordKind, content_digest};
use custos_model::{Cursor, Timestamp};
use serde_json::{Map, Value as Json};

use crate::error::{StoreError, StoreResult};
use crate::rollup::{Rollup, RollupItem};
use crate::{Page, RecordQuery, Stored};

/// A column value as bound to or read from either backend.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Value {
    Null,
    /// NULL in an integer column: PostgreSQL types every bound parameter.
    NullInt,
    Int(i64),
    Text(String),
}

/// Typed access to one row of a query, implemented by each backend's row type, so
/// decoders are written once.
pub(crate) trait RowReader {
    fn text(&self, index: usize) -> StoreResult<String>;
    fn opt_text(&self, index: usize) -> StoreResult<Option<String>>;
    fn int(&self, index: usize) -> StoreResult<i64>;
    fn opt_int(&self, index: usize) -> StoreResult<Option<i64>>;
    fn real(&self, index: usize) -> StoreResult<f64>;
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ColType {
    Text,
    Int,
    /// An RFC 3339 string in JSON, microseconds since the epoch in the table.
    Time,
    /// Any JSON, stored as its text.
    Json,
}

#[derive(Debug)]
pub(crate) struct Col {
    pub column: &'static str,
    pub field: &'static str,
    pub ty: ColType,
}

const fn col(column: &'static str, field: &'static str, ty: ColType) -> Col {
    Col { column, field, ty }
}

#[derive(Debug)]
pub(crate) struct TableSpec {
    pub table: &'static str,
    pub what: &'static str,
    /// The listed-at column (keyset order, `from`/`to` window).
    pub listed_at: &'static str,
    /// Record columns; the first is `id`. `tenant_id`, `content_sha256` and
    /// `received_at_us` are added around them.
    pub columns: &'static [Col],
    /// The filter field with an index of its own, `(tenant_id, field, listed_at, id)`.
    /// SQLite is told to use it (`INDEXED BY`): without statistics its planner prefers
    /// the time index and reads a whole time window row by row (measured: 9 ms instead
    /// of 0.1 ms per query at a million rows).
    pub filter_index: (&'static str, &'static str),
}

use ColType::{Int, Json as J, Text, Time};

pub(crate) static RULE_RUNS: TableSpec = TableSpec {
    table: "rule_runs",
    filter_index: ("rule_key", "rule_runs_by_rule"),
    what: "rule run",
    listed_at: "started_at_us",
    columns: &[
        col("id", "id", Text),
        col("rule_key", "rule_key", Text),
        col("rule_version", "rule_version", Text),
        col("integration_id", "integration_id", Text),
        col("status", "status", Text),
        col("events_evaluated", "events_evaluated", Int),
        col("findings_created", "findings_created", Int),
        col("findings_reopened", "findings_reopened", Int),
        col("findings_resolved", "findings_resolved", Int),
        col("duration_ms", "duration_ms", Int),
        col("error_message", "error_message", Text),
        col("started_at_us", "started_at", Time),
        col("finished_at_us", "finished_at", Time),
        col("trace_id", "trace_id", Text),
        col("context", "context", J),
    ],
};

pub(crate) static CONNECTOR_SYNCS: TableSpec = TableSpec {
    table: "connector_syncs",
    filter_index: ("integration_id", "connector_syncs_by_integration"),
    what: "connector sync",
    listed_at: "started_at_us",
    columns: &[
        col("id", "id", Text),
        col("integration_id", "integration_id", Text),
        col("triggered_by", "triggered_by", Text),
        col("status", "status", Text),
        col("events_ingested", "events_ingested", Int),
        col("new_assets_observed", "new_assets_observed", Int),
        col("api_calls_made", "api_calls_made", Int),
        col("duration_ms", "duration_ms", Int),
        col("error_message", "error_message", Text),
        col("started_at_us", "started_at", Time),
        col("finished_at_us", "finished_at", Time),
        col("trace_id", "trace_id", Text),
    ],
};

pub(crate) static QUEUE_SNAPSHOTS: TableSpec = TableSpec {
    table: "queue_snapshots",
    filter_index: ("component_id", "queue_snapshots_by_component"),
    what: "queue snapshot",
    listed_at: "observed_at_us",
    columns: &[
        col("id", "id", Text),
        col("component_id", "component_id", Text),
        col("observed_at_us", "observed_at", Time),
        col("depth_pending", "depth.pending", Int),
        col("depth_in_flight", "depth.in_flight", Int),
        col("depth_retrying", "depth.retrying", Int),
        col("depth_dead_lettered", "depth.dead_lettered", Int),
        col("oldest_item_age_ms", "oldest_item_age_ms", Int),
        col("processed_total", "processed_total", Int),
        col("failed_total", "failed_total", Int),
    ],
};

pub(crate) static DELIVERIES: TableSpec = TableSpec {
    table: "deliveries",
    filter_index: ("destination_id", "deliveries_by_destination"),
    what: "delivery",
    listed_at: "attempted_at_us",
    columns: &[
        col("id", "id", Text),
        col("destination_id", "destination_id", Text),
        col("item_id", "item_id", Text),
        col("status", "status", Text),
        col("attempt", "attempt", Int),
        col("latency_ms", "latency_ms", Int),
        col("error_message", "error_message", Text),
        col("attempted_at_us", "attempted_at", Time),
        col("trace_id", "trace_id", Text),
    ],
};

pub(crate) fn spec_of<R: IngestRecord>() -> &'static TableSpec {
    match R::KIND {
        RecordKind::RuleRun => &RULE_RUNS,
        RecordKind::ConnectorSync => &CONNECTOR_SYNCS,
        RecordKind::QueueSnapshot => &QUEUE_SNAPSHOTS,
        RecordKind::Delivery => &DELIVERIES,
    }
}

/// Rule runs encoded for a benchmark baseline ahead of time, so the baseline measures
/// the database insert alone.
#[derive(Debug)]
pub struct BaselineBatch(pub(crate) Vec<EncodedRecord>);

impl BaselineBatch {
    pub fn prepare(runs: &[custos_model::records::RuleRun]) -> Self {
        Self(runs.iter().map(|r| encode(&RULE_RUNS, r)).collect())
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// A record ready to bind: its columns in spec order, and its content digest.
#[derive(Debug)]
pub(crate) struct EncodedRecord {
    pub values: Vec<Value>,
    pub digest: [u8; 32],
    /// What the record adds to the metric rollups once inserted.
    pub rollup: Option<RollupItem>,
}

impl EncodedRecord {
    pub fn id(&self) -> &str {
        match &self.values[0] {
            Value::Text(id) => id,
            _ => unreachable!("the first column of every table is the text id"),
        }
    }
}

fn field<'a>(object: &'a Json, path: &str) -> Option<&'a Json> {
    path.split('.').try_fold(object, |value, key| value.get(key))
}

pub(crate) fn encode<R: IngestRecord>(spec: &TableSpec, record: &R) -> EncodedRecord {
    let json = record.to_json();
    let values = spec
        .columns
        .iter()
        .map(|c| match (field(&json, c.field), c.ty) {
            (None | Some(Json::Null), _) => Value::Null,
            (Some(Json::String(s)), Text) => Value::Text(s.clone()),
            (Some(Json::String(s)), Time) => {
                Value::Int(Timestamp::parse(c.field, s).expect("serialized timestamps parse").as_micros())
            }
            (Some(Json::Number(n)), Int) => Value::Int(n.as_i64().expect("counts are i64")),
            (Some(other), J) => Value::Text(other.to_string()),
            (Some(other), ty) => unreachable!("{}.{} is {ty:?} but serialized as {other}", spec.table, c.field),
        })
        .collect();
    EncodedRecord { values, digest: content_digest(&json), rollup: None }
}

/// [`encode`], plus the record's rollup contribution.
pub(crate) fn encode_for_insert<R: Rollup>(spec: &TableSpec, record: &R) -> EncodedRecord {
    let mut encoded = encode(spec, record);
    encoded.rollup = Some(record.rollup_item());
    encoded
}

/// Rebuilds a stored record from its row: the spec's columns, then `received_at_us`.
pub(crate) fn decode<R: IngestRecord>(spec: &TableSpec, mut row: Vec<Value>) -> StoreResult<Stored<R>> {
    let corrupt = |detail: String| StoreError::Corrupt { what: spec.what, detail };
    let received_at = match row.pop() {
        Some(Value::Int(us)) => Timestamp::from_micros(us),
        other => return Err(corrupt(format!("received_at_us is {other:?}"))),
    };
    let mut object = Map::new();
    for (c, value) in spec.columns.iter().zip(row) {
        let json = match (value, c.ty) {
            (Value::Null | Value::NullInt, _) => Json::Null,
            (Value::Text(s), Text) => Json::String(s),
            (Value::Int(i), Int) => Json::from(i),
            (Value::Int(us), Time) => Json::String(Timestamp::from_micros(us).to_string()),
            (Value::Text(s), J) => serde_json::from_str(&s).map_err(|e| corrupt(format!("{}: {e}", c.column)))?,
            (other, ty) => {
                return Err(corrupt(format!("{} holds {other:?}, expected {ty:?}", c.column)));
            }
        };
        insert_path(&mut object, c.field, json);
    }
    let record = serde_json::from_value(Json::Object(object)).map_err(|e| corrupt(e.to_string()))?;
    Ok(Stored { record, received_at })
}

fn insert_path(object: &mut Map<String, Json>, path: &str, value: Json) {
    match path.split_once('.') {
        None => {
            object.insert(path.to_owned(), value);
        }
        Some((head, rest)) => {
            let child = object.entry(head.to_owned()).or_insert_with(|| Json::Object(Map::new()));
            if let Json::Object(child) = child {
                insert_path(child, rest, value);
            }
        }
    }
}

/// Placeholder syntax: both SQLite and PostgreSQL number parameters from 1.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Dialect {
    Sqlite,
    Postgres,
}

impl Dialect {
    pub fn param(self, n: usize) -> String {
        match self {
            Dialect::Sqlite => format!("?{n}"),
            Dialect::Postgres => format!("${n}"),
        }
    }
}

/// The full column list of a record table as selected: spec columns, then `received_at_us`.
pub(crate) fn select_columns(spec: &TableSpec) -> String {
    let mut cols: Vec<&str> = spec.columns.iter().map(|c| c.column).collect();
    cols.push("received_at_us");
    cols.join(", ")
}

/// Builds the newest-first keyset query. Filters must name spec fields (checked by
/// the caller against the record type's `FILTERS`). The tenant is parameter 1.
pub(crate) fn page_sql(spec: &TableSpec, query: &RecordQuery, dialect: Dialect) -> StoreResult<(String, Vec<Value>)> {
    let mut params = Vec::new();
    let (indexed_field, index) = spec.filter_index;
    let hint = if dialect == Dialect::Sqlite && query.filters.iter().any(|(field, _)| field == indexed_field) {
        format!(" INDEXED BY {index}")
    } else {
        String::new()
    };
    let mut sql =
        format!("SELECT {} FROM {}{hint} WHERE tenant_id = {}", select_columns(spec), spec.table, dialect.param(1));
    let push = |sql: &mut String, params: &mut Vec<Value>, clause: &str, value: Value| {
        params.push(value);
        let placeholder = dialect.param(params.len() + 1);
        sql.push_str(&clause.replace('?', &placeholder));
    };
    for (name, value) in &query.filters {
        let column = spec
            .columns
            .iter()
            .find(|c| c.field == name && c.ty == Text)
            .ok_or_else(|| StoreError::Config(format!("{} has no filter {name:?}", spec.table)))?
            .column;
        push(&mut sql, &mut params, &format!(" AND {column} = ?"), Value::Text(value.clone()));
    }
    let listed = spec.listed_at;
    if let Some(from) = query.from {
        push(&mut sql, &mut params, &format!(" AND {listed} >= ?"), Value::Int(from.as_micros()));
    }
    if let Some(to) = query.to {
        push(&mut sql, &mut params, &format!(" AND {listed} < ?"), Value::Int(to.as_micros()));
    }
    if let Some(after) = &query.after {
        // (listed, id) < (cursor): written so the first conjunct bounds the index range.
        // The plain `listed < ? OR (listed = ? AND id < ?)` makes SQLite rescan from the
        // newest row on every page, which turns a long export quadratic.
        let at = after.listed_at.as_micros();
        push(&mut sql, &mut params, &format!(" AND {listed} <= ?"), Value::Int(at));
        push(&mut sql, &mut params, &format!(" AND ({listed} < ?"), Value::Int(at));
        push(&mut sql, &mut params, " OR id < ?)", Value::Text(after.id.clone()));
    }
    // One more row than asked tells whether another page follows.
    push(
        &mut sql,
        &mut params,
        &format!(" ORDER BY {listed} DESC, id DESC LIMIT ?"),
        Value::Int(query.limit as i64 + 1),
    );
    Ok((sql, params))
}

/// Cuts the extra row fetched by [`page_sql`] and derives the next cursor.
pub(crate) fn into_page<R: IngestRecord>(mut items: Vec<Stored<R>>, limit: usize) -> Page<Stored<R>> {
    let next_cursor = if items.len() > limit {
        items.truncate(limit);
        items.last().map(|last| Cursor { listed_at: last.record.listed_at(), id: last.record.id().to_owned() })
    } else {
        None
    };
    Page { items, next_cursor }
}

/// Removes repeated ids within one batch: the same content counts as a duplicate, a
/// different content is a conflict (the batch is refused whole).
pub(crate) fn dedupe_batch(kind: RecordKind, records: Vec<EncodedRecord>) -> StoreResult<(Vec<EncodedRecord>, usize)> {
    let mut seen: std::collections::HashMap<String, [u8; 32]> = std::collections::HashMap::with_capacity(records.len());
    let mut unique = Vec::with_capacity(records.len());
    let mut duplicates = 0;
    for record in records {
        match seen.get(record.id()) {
            Some(digest) if *digest == record.digest => duplicates += 1,
            Some(_) => {
                return Err(StoreError::Conflict { kind, id: record.id().to_owned() });
            }
            None => {
                seen.insert(record.id().to_owned(), record.digest);
                unique.push(record);
            }
        }
    }
    Ok((unique, duplicates))
}

#[cfg(test)]
mod tests {
    use custos_model::records::{ConnectorSync, Delivery, IngestRecord, QueueSnapshot, RuleRun};

    use super::spec_of;

    fn fields_match<R: IngestRecord>() {
        let spec: Vec<&str> = spec_of::<R>().columns.iter().map(|c| c.field).collect();
        assert_eq!(spec, R::FIELDS, "{} table spec and FIELDS disagree", R::KIND.as_str());
    }

    #[test]
    fn every_table_spec_covers_its_record_fields_in_order() {
        fields_match::<RuleRun>();
        fields_match::<ConnectorSync>();
        fields_match::<QueueSnapshot>();
        fields_match::<Delivery>();
    }
}

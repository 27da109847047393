//! The tamper-evident logs in the store, shared by both backends: the rows of
//! `timeline_events` / `audit_records` (identical shapes), the batch rules of an append
//! (atomic, idempotent by `event_id`), and the SQL both backends run. The Merkle math is
//! custos-ledger's; a backend reads the log's frontier, appends in memory, and writes
//! the records, the completed subtree hashes and the new head in one transaction.

use std::collections::HashMap;

use custos_ledger::merkle::Hash;
use custos_model::ledger::{AuditRecord, LogName, TimelineEvent};
use custos_model::{Cursor, FieldError, TenantId, Timestamp};

use crate::error::{StoreError, StoreResult};

/// Most rows a log page returns.
pub const MAX_PAGE: usize = 1000;

/// The table holding a log's records.
pub(crate) fn table(log: LogName) -> &'static str {
    match log {
        LogName::Timeline => "timeline_events",
        LogName::Audit => "audit_records",
    }
}

/// A record to append: its leaf bytes and the copies of its fields that queries use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogAppend {
    pub event_id: String,
    pub ts: Timestamp,
    /// A timeline event's kind, an audit record's action.
    pub kind: String,
    pub actor: Option<String>,
    pub outcome: Option<String>,
    pub resource_type: Option<String>,
    pub resource_id: Option<String>,
    pub project_id: Option<String>,
    pub request_id: Option<String>,
    pub trace_id: Option<String>,
    /// The leaf: the record's canonical JSON.
    pub record: String,
}

impl LogAppend {
    pub fn timeline(event: &TimelineEvent) -> Self {
        Self {
            event_id: event.event_id.clone(),
            ts: event.ts,
            kind: event.kind.clone(),
            actor: event.actor.clone(),
            outcome: None,
            resource_type: event.resource_type.clone(),
            resource_id: event.resource_id.clone(),
            project_id: event.project_id.clone(),
            request_id: None,
            trace_id: event.trace_id.clone(),
            record: canonical_text(event.canonical_bytes()),
        }
    }

    pub fn audit(record: &AuditRecord) -> Self {
        Self {
            event_id: record.event_id.clone(),
            ts: record.ts,
            kind: record.action.clone(),
            actor: record.actor.id.clone().or_else(|| record.actor.name.clone()),
            outcome: Some(record.outcome.as_str().to_owned()),
            resource_type: record.resource_type.clone(),
            resource_id: record.resource_id.clone(),
            project_id: None,
            request_id: record.request_id.clone(),
            trace_id: record.trace_id.clone(),
            record: canonical_text(record.canonical_bytes()),
        }
    }
}

fn canonical_text(bytes: Vec<u8>) -> String {
    String::from_utf8(bytes).expect("canonical JSON is UTF-8")
}

/// What an append did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct AppendOutcome {
    /// Records appended by this call.
    pub inserted: usize,
    /// Records already in the log with the same id and bytes; not appended again.
    pub duplicates: usize,
    /// The log's size after the call.
    pub size: u64,
    #[serde(skip)]
    pub root: Hash,
}

/// A log's size and root hash.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogHead {
    pub size: u64,
    pub root: Hash,
}

/// A stored record of a log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogEntry {
    pub leaf_index: u64,
    pub event_id: String,
    pub ts: Timestamp,
    /// The leaf bytes, as stored.
    pub record: String,
    pub received_at: Timestamp,
}

impl LogEntry {
    /// From the columns both backends select (`leaf_index, event_id, ts_us, record,
    /// received_at_us`).
    pub(crate) fn from_columns(
        leaf_index: i64,
        event_id: String,
        ts_us: i64,
        record: String,
        received_at_us: i64,
    ) -> StoreResult<Self> {
        Ok(Self {
            leaf_index: index_from(leaf_index)?,
            event_id,
            ts: Timestamp::from_micros(ts_us),
            record,
            received_at: Timestamp::from_micros(received_at_us),
        })
    }
}

/// A leaf for export and verification: its stored hash, and its record unless
/// retention removed it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeafRow {
    pub leaf_index: u64,
    pub leaf_hash: Hash,
    pub record: Option<String>,
}

/// The columns a log query can match exactly.
pub const FILTER_COLUMNS: &[&str] =
    &["kind", "actor", "outcome", "resource_type", "resource_id", "project_id", "request_id", "trace_id"];

/// The indexed key of a lookup by trace id: its first [`TRACE_KEY_CHARS`] characters
/// (migration 0008's index; a test checks the two agree).
pub(crate) const TRACE_KEY: &str = "substr(trace_id, 1, 8)";
const TRACE_KEY_CHARS: usize = 8;

/// A newest-first log query: exact matches on [`FILTER_COLUMNS`], a `[from, to)`
/// window on `ts`, and a keyset cursor (`ts`, leaf index).
#[derive(Debug, Clone, Default)]
pub struct LogQuery {
    pub filters: Vec<(&'static str, String)>,
    pub from: Option<Timestamp>,
    pub to: Option<Timestamp>,
    /// Entries strictly before this position (`ts`, leaf index), newest first.
    pub after: Option<(Timestamp, u64)>,
    pub limit: usize,
    /// A kind pattern with `*` at its start or end (`platform.policy.*`, `*.failed`).
    pub kind_glob: Option<String>,
}

impl LogQuery {
    /// Adds an exact-match filter on `column` (one of [`FILTER_COLUMNS`]).
    pub fn filter(mut self, column: &str, value: impl Into<String>) -> Self {
        let column = FILTER_COLUMNS.iter().find(|c| **c == column).expect("a filter column");
        self.filters.push((column, value.into()));
        self
    }

    /// Whether the query looks records up by trace id, through the logs' trace index.
    pub(crate) fn by_trace(&self) -> bool {
        self.filters.iter().any(|(column, _)| *column == "trace_id")
    }

    /// `WHERE` conditions after `tenant_id`, with `$n` placeholders from `first`, and
    /// their values in order (text or integer).
    pub(crate) fn conditions(&self, first: usize) -> (String, Vec<QueryValue>) {
        let mut sql = String::new();
        let mut values = Vec::new();
        let mut next = first;
        let mut push = |sql: &mut String, clause: String, value: QueryValue| {
            sql.push_str(" AND ");
            sql.push_str(&clause.replace('?', &format!("${next}")));
            values.push(value);
            next += 1;
        };
        for (column, value) in &self.filters {
            push(&mut sql, format!("{column} = ?"), QueryValue::Text(value.clone()));
            if *column == "trace_id" {
                let key = value.chars().take(TRACE_KEY_CHARS).collect();
                push(&mut sql, format!("{TRACE_KEY} = ?"), QueryValue::Text(key));
            }
        }
        if let Some(glob) = &self.kind_glob {
            push(&mut sql, "kind LIKE ? ESCAPE '\\'".into(), QueryValue::Text(like_pattern(glob)));
        }
        if let Some(from) = self.from {
            push(&mut sql, "ts_us >= ?".into(), QueryValue::Int(from.as_micros()));
        }
        if let Some(to) = self.to {
            push(&mut sql, "ts_us < ?".into(), QueryValue::Int(to.as_micros()));
        }
        if let Some((ts, index)) = self.after {
            // (ts_us, leaf_index) < (ts, index), spelled out so both engines use the index.
            sql.push_str(&format!(
                " AND (ts_us < ${a} OR (ts_us = ${a} AND leaf_index < ${b}))",
                a = next,
                b = next + 1
            ));
            values.push(QueryValue::Int(ts.as_micros()));
            values.push(QueryValue::Int(i64::try_from(index).unwrap_or(i64::MAX)));
        }
        (sql, values)
    }
}

/// A `LIKE` pattern for a kind glob: `%`, `_` and `\\` are escaped, and a `*` at either
/// end matches anything.
fn like_pattern(glob: &str) -> String {
    let core = glob.trim_start_matches('*').trim_end_matches('*');
    let mut pattern = String::with_capacity(glob.len() + 4);
    if glob.starts_with('*') {
        pattern.push('%');
    }
    for c in core.chars() {
        if matches!(c, '%' | '_' | '\\') {
            pattern.push('\\');
        }
        pattern.push(c);
    }
    if glob.ends_with('*') {
        pattern.push('%');
    }
    pattern
}

/// A bound value of a log query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum QueryValue {
    Text(String),
    Int(i64),
}

/// A log cursor's position: (`ts`, leaf index). The error names `cursor`.
pub fn cursor_position(cursor: &Cursor) -> Result<(Timestamp, u64), FieldError> {
    cursor
        .id
        .parse::<u64>()
        .map(|index| (cursor.listed_at, index))
        .map_err(|_| FieldError::new("cursor", "is not a cursor returned by this API"))
}

/// The cursor after the last entry of a full page.
pub(crate) fn next_cursor(entries: &[LogEntry], limit: usize) -> Option<Cursor> {
    (entries.len() == limit && limit > 0).then(|| {
        let last = entries.last().expect("a full page is not empty");
        Cursor { listed_at: last.ts, id: last.leaf_index.to_string() }
    })
}

/// A signed checkpoint as kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredCheckpoint {
    pub size: u64,
    /// The signing key's id (`custos keys list`).
    pub key_id: String,
    pub root: Hash,
    /// The signed note, exactly as served.
    pub note: String,
    pub created_at: Timestamp,
}

/// A checkpoint signing key's public half and validity window.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SigningKeyRecord {
    pub key_id: String,
    pub algorithm: String,
    pub public_key: [u8; 32],
    pub created_at: Timestamp,
    pub not_before: Timestamp,
    /// When it stops (or stopped) signing: set by a rotation, to the rotation's time or
    /// to the end of its overlap window; `None` while it is the current key.
    pub not_after: Option<Timestamp>,
}

/// Where a rotation ends a key's window, in SQL over the parameters `$2` (the rotation's
/// time), `$3` (the overlapping key's id, or NULL) and `$4` (the overlap's end).
pub(crate) const RETIRED_AT: &str = "(CASE WHEN key_id = $3 THEN $4 ELSE $2 END)";

/// The key a rotation replaces, left signing beside the new one until `until` (the
/// rotation's overlap window), so verifiers that hold only the old public key keep
/// verifying new signatures while they fetch the new one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyOverlap {
    pub key_id: String,
    pub until: Timestamp,
}

impl SigningKeyRecord {
    /// From the columns both backends select (`key_id, algorithm, public_key,
    /// created_at_us, not_before_us, not_after_us`).
    pub(crate) fn from_columns(
        key_id: String,
        algorithm: String,
        public_key: &[u8],
        created_at_us: i64,
        not_before_us: i64,
        not_after_us: Option<i64>,
    ) -> StoreResult<Self> {
        let public_key = public_key.try_into().map_err(|_| StoreError::Corrupt {
            what: "signing key",
            detail: format!("key {key_id} has a public key of {} bytes", public_key.len()),
        })?;
        Ok(Self {
            key_id,
            algorithm,
            public_key,
            created_at: Timestamp::from_micros(created_at_us),
            not_before: Timestamp::from_micros(not_before_us),
            not_after: not_after_us.map(Timestamp::from_micros),
        })
    }
}

/// Splits a batch into records to append and duplicates, given what the log already
/// holds under the batch's ids (`stored`: event id → leaf bytes). The same id with other
/// bytes, in the log or earlier in the batch, fails the whole batch.
pub(crate) fn fresh_records(
    log: LogName,
    batch: Vec<LogAppend>,
    stored: &HashMap<String, String>,
) -> StoreResult<(Vec<LogAppend>, usize)> {
    let mut seen: HashMap<String, usize> = HashMap::with_capacity(batch.len());
    let mut fresh: Vec<LogAppend> = Vec::with_capacity(batch.len());
    let mut duplicates = 0;
    for record in batch {
        let earlier = stored.get(&record.event_id).or_else(|| seen.get(&record.event_id).map(|&i| &fresh[i].record));
        match earlier {
            Some(bytes) if *bytes == record.record => duplicates += 1,
            Some(_) => return Err(StoreError::LogConflict { log: log.as_str(), id: record.event_id }),
            None => {
                seen.insert(record.event_id.clone(), fresh.len());
                fresh.push(record);
            }
        }
    }
    Ok((fresh, duplicates))
}

pub(crate) fn hash_from(bytes: &[u8], what: &'static str) -> StoreResult<Hash> {
    bytes.try_into().map_err(|_| StoreError::Corrupt { what, detail: format!("a hash of {} bytes", bytes.len()) })
}

pub(crate) fn index_from(value: i64) -> StoreResult<u64> {
    u64::try_from(value)
        .map_err(|_| StoreError::Corrupt { what: "log", detail: format!("negative leaf index {value}") })
}

/// A retention pass's removal from one log: the records of leaves below `before_index`
/// (their hashes stay), under a tombstone row saying when, why and up to which time, and
/// after a retention record in the log itself ([`LogPrune::record`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogPrune {
    pub before_index: u64,
    /// The records removed were received before this instant: at least `retention_days`
    /// before `pruned_at` (the database checks it against its own clock too).
    pub received_before: Timestamp,
    /// The retention that allowed the prune, in days.
    pub retention_days: u32,
    /// The policy that removed them, in words (`timeline: 180 days (tenant retention_days)`).
    pub policy: String,
    pub pruned_at: Timestamp,
}

/// The kind (timeline) and action (audit) of a retention record.
pub const PRUNE_KIND: &str = custos_ledger::export::PRUNE_KIND;

impl LogPrune {
    /// The id of the retention record: one prune of a log per `before_index`.
    pub fn event_id(&self, log: LogName) -> String {
        format!("custos-retention-{}-{}", log.as_str(), self.before_index)
    }

    /// The retention record a prune appends to the log it prunes, in the same
    /// transaction and before removing anything: the signed leaf an offline verifier
    /// accepts a removed record under. `removed`: the records it removes.
    pub fn record(&self, tenant: &TenantId, log: LogName, removed: u64) -> LogAppend {
        let details = serde_json::json!({
            "log": log.as_str(), "before_index": self.before_index, "records_removed": removed,
            "received_before": self.received_before, "retention_days": self.retention_days, "policy": self.policy,
        });
        let event_id = self.event_id(log);
        let actor = "custos retention";
        match log {
            LogName::Timeline => LogAppend::timeline(&TimelineEvent {
                event_id,
                ts: self.pruned_at,
                tenant_id: tenant.clone(),
                project_id: None,
                kind: PRUNE_KIND.into(),
                actor: Some(actor.into()),
                resource_type: Some("log".into()),
                resource_id: Some(log.as_str().into()),
                trace_id: None,
                details,
            }),
            LogName::Audit => LogAppend::audit(&AuditRecord {
                event_id,
                ts: self.pruned_at,
                tenant_id: tenant.clone(),
                actor: custos_model::ledger::AuditActor { id: None, name: Some(actor.into()) },
                actor_ip: None,
                action: PRUNE_KIND.into(),
                outcome: custos_model::ledger::AuditOutcome::Success,
                resource_type: Some("log".into()),
                resource_id: Some(log.as_str().into()),
                request_id: None,
                trace_id: None,
                details,
            }),
        }
    }
}

/// The records of an administrative change, appended in the change's own transaction:
/// the change and its record commit together, or neither does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActionRecords {
    /// The audit log's record of it (appended first: a change may name its leaf).
    pub audit: LogAppend,
    /// The timeline's.
    pub timeline: LogAppend,
}

/// What a prune did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PruneOutcome {
    /// Records removed (0 when an earlier prune already covered them).
    Removed(u64),
    /// A legal hold is active: nothing was removed.
    Held,
}

/// A legal hold: while active, retention removes nothing of the tenant's.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
pub struct LegalHold {
    pub id: String,
    pub reason: String,
    /// Who placed it (a token's id, or `cli:<user>`).
    pub created_by: String,
    pub created_at: Timestamp,
    /// When it was released; null while active.
    pub released_at: Option<Timestamp>,
}

/// The timeline event custos records for a reported rule run or connector sync that
/// failed. Its id and time derive from the record, so a re-sent record records nothing
/// twice. Ingestion appends it in the records' own transaction: a failed run is never
/// stored without it.
pub fn failure_event(kind: &str, tenant: &TenantId, record: &serde_json::Value) -> Option<TimelineEvent> {
    if record.get("status").and_then(serde_json::Value::as_str) != Some("failed") {
        return None;
    }
    let (event_kind, resource_type, resource_field) = match kind {
        "rule_run" => ("custos.rule_run.failed", "rule", "rule_key"),
        "connector_sync" => ("custos.connector_sync.failed", "integration", "integration_id"),
        _ => return None,
    };
    let text = |field: &str| record.get(field).and_then(serde_json::Value::as_str).map(str::to_owned);
    let id = text("id")?;
    let ts = text("finished_at").or_else(|| text("started_at"))?;
    let mut error = text("error_message").unwrap_or_default();
    if error.len() > 1024 {
        let mut cut = 1024;
        while !error.is_char_boundary(cut) {
            cut -= 1;
        }
        error.truncate(cut);
    }
    let event = TimelineEvent {
        event_id: failure_event_id(kind, &id),
        ts: Timestamp::parse("ts", &ts).ok()?,
        tenant_id: tenant.clone(),
        project_id: None,
        kind: event_kind.to_owned(),
        actor: None,
        resource_type: Some(resource_type.to_owned()),
        resource_id: text(resource_field),
        trace_id: text("trace_id"),
        details: serde_json::json!({ "record_id": id, "error_message": error }),
    };
    event.checked().ok()
}

/// The id of the timeline event of a failed record: `custos-rule-run-failed-<id>`, or,
/// for an id too long to fit an event id, `custos-rule-run-failed-sha256-<32 hex digits
/// of the id's SHA-256>` (the record's own id stays in `details.record_id`).
pub fn failure_event_id(kind: &str, id: &str) -> String {
    let prefix = format!("custos-{}-failed-", kind.replace('_', "-"));
    if prefix.len() + id.len() <= custos_model::ids::MAX_ID_LEN {
        format!("{prefix}{id}")
    } else {
        let digest = <sha2::Sha256 as sha2::Digest>::digest(id.as_bytes());
        format!("{prefix}sha256-{}", &hex::encode(digest)[..32])
    }
}

/// The timeline events of `records`' failures, for their ingest transaction.
pub(crate) fn failure_events<R: custos_model::records::IngestRecord>(
    tenant: &TenantId,
    records: &[R],
) -> Vec<LogAppend> {
    records
        .iter()
        .filter(|record| record.is_failure())
        .filter_map(|record| failure_event(R::KIND.as_str(), tenant, &record.to_json()))
        .map(|event| LogAppend::timeline(&event))
        .collect()
}

//! The records a platform reports: rule runs, connector syncs, queue snapshots and
//! delivery attempts. Each has a wire form (`*Input`, exactly the accepted JSON, unknown
//! fields refused) and a validated form; [`Validate::validate`] is the only way from
//! one to the other, so every stored record obeyed the rules below when it arrived.

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use utoipa::ToSchema;

use crate::error::{FieldError, check};
use crate::ids::{self, TraceId};
use crate::timestamp::Timestamp;

pub const MAX_RULE_KEY_CHARS: usize = 160;
pub const MAX_RULE_VERSION_CHARS: usize = 32;
pub const MAX_ERROR_MESSAGE_CHARS: usize = 500;
/// Default bound on a rule run's serialized `context`; larger contexts are replaced by
/// a truncation marker (see [`truncate_context`]).
pub const DEFAULT_MAX_CONTEXT_BYTES: usize = 16 * 1024;
/// How much of an oversized context the truncation marker keeps, in bytes.
pub const CONTEXT_PREVIEW_BYTES: usize = 1024;

/// What validation needs from outside the body: the receive time (default for
/// `observed_at`), limits, and ids taken from the URL.
#[derive(Debug, Clone)]
pub struct ValidationContext {
    pub now: Timestamp,
    pub max_context_bytes: usize,
    /// The `{id}` of `/components/{id}/snapshots`.
    pub path_component_id: Option<String>,
    /// The `{tenant}` of the URL, for records that name their tenant.
    pub path_tenant: Option<crate::TenantId>,
}

impl ValidationContext {
    pub fn new(now: Timestamp) -> Self {
        Self { now, max_context_bytes: DEFAULT_MAX_CONTEXT_BYTES, path_component_id: None, path_tenant: None }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RecordKind {
    RuleRun,
    ConnectorSync,
    QueueSnapshot,
    Delivery,
}

impl RecordKind {
    pub fn as_str(self) -> &'static str {
        match self {
            RecordKind::RuleRun => "rule_run",
            RecordKind::ConnectorSync => "connector_sync",
            RecordKind::QueueSnapshot => "queue_snapshot",
            RecordKind::Delivery => "delivery",
        }
    }
}

/// A record type read from a request body: its wire form, and the validation that is the
/// only way from it to the record. What [`crate::parse_records`] needs.
pub trait Validate: Sized {
    type Input: DeserializeOwned;
    fn validate(input: Self::Input, ctx: &ValidationContext) -> Result<Self, FieldError>;
}

/// A reported record type: its wire form, its validation, and the facts the store and
/// the query API need (id, the instant it is listed by, the fields it can be filtered on).
pub trait IngestRecord: Validate + Serialize + DeserializeOwned + Clone + Send + Sync + 'static {
    const KIND: RecordKind;
    /// Query-string filters accepted by the list endpoint; each is an exact match on
    /// the field of the same name.
    const FILTERS: &'static [&'static str];
    /// Output fields in order, nested ones as dotted paths: the columns of a CSV export.
    const FIELDS: &'static [&'static str];

    fn id(&self) -> &str;
    /// The instant lists are ordered by (newest first) and `from`/`to` select on.
    fn listed_at(&self) -> Timestamp;

    /// The record as a JSON value (object keys sorted).
    /// Whether the record reports a failure custos puts on the tenant's timeline (a
    /// failed rule run or connector sync).
    fn is_failure(&self) -> bool {
        false
    }

    fn to_json(&self) -> serde_json::Value {
        serde_json::to_value(self).expect("records serialize infallibly")
    }

    /// What "the same content" means for idempotent re-sends: see [`content_digest`].
    fn content_digest(&self) -> [u8; 32] {
        content_digest(&self.to_json())
    }

    /// Checks a list filter's value (an unknown `status` is an error, not an empty list).
    fn check_filter(field: &str, value: &str) -> Result<(), FieldError> {
        let _ = (field, value);
        Ok(())
    }
}

/// SHA-256 of a record's canonical JSON ([`crate::canonical`]). Stored beside each
/// record; an equal digest means the same content.
pub fn content_digest(record_json: &serde_json::Value) -> [u8; 32] {
    Sha256::digest(crate::canonical::to_vec(record_json)).into()
}

/// Checks that `value` names a variant of the enum `E` (its snake_case wire name).
fn check_variant<E: DeserializeOwned>(field: &str, value: &str) -> Result<(), FieldError> {
    serde_json::from_value::<E>(serde_json::Value::String(value.to_owned()))
        .map(|_| ())
        .map_err(|e| FieldError::new(field, e.to_string()))
}

fn opt_text(field: &str, value: Option<String>, max: usize) -> Result<Option<String>, FieldError> {
    if let Some(v) = &value {
        check::text(field, v, max)?;
    }
    Ok(value)
}

fn opt_error_message(value: Option<String>) -> Result<Option<String>, FieldError> {
    if let Some(v) = &value {
        check::bounded_text("error_message", v, MAX_ERROR_MESSAGE_CHARS)?;
    }
    Ok(value)
}

fn count(field: &str, value: Option<i64>) -> Result<i64, FieldError> {
    let value = value.unwrap_or(0);
    check::non_negative(field, value)?;
    Ok(value)
}

fn opt_count(field: &str, value: Option<i64>) -> Result<Option<i64>, FieldError> {
    if let Some(v) = value {
        check::non_negative(field, v)?;
    }
    Ok(value)
}

fn opt_trace_id(value: Option<String>) -> Result<Option<String>, FieldError> {
    if let Some(v) = &value {
        TraceId::parse("trace_id", v)?;
    }
    Ok(value)
}

fn opt_component_id(field: &str, value: Option<String>) -> Result<Option<String>, FieldError> {
    if let Some(v) = &value {
        ids::component_id(field, v)?;
    }
    Ok(value)
}

fn span(started_at: &str, finished_at: Option<&str>) -> Result<(Timestamp, Option<Timestamp>), FieldError> {
    let started = Timestamp::parse("started_at", started_at)?;
    let finished = finished_at.map(|f| Timestamp::parse("finished_at", f)).transpose()?;
    if let Some(finished) = finished
        && finished < started
    {
        return Err(FieldError::new("finished_at", "must not be before started_at"));
    }
    Ok((started, finished))
}

/// Bounds a rule run's `context`: a context whose JSON exceeds `max_bytes` is replaced
/// by a marker object that keeps its size, its SHA-256 and a preview of its first
/// [`CONTEXT_PREVIEW_BYTES`] bytes, so the loss is visible and the original provable.
pub fn truncate_context(context: serde_json::Value, max_bytes: usize) -> serde_json::Value {
    let text = context.to_string();
    if text.len() <= max_bytes {
        return context;
    }
    let mut cut = CONTEXT_PREVIEW_BYTES.min(text.len());
    while !text.is_char_boundary(cut) {
        cut -= 1;
    }
    serde_json::json!({
        "_custos_truncated": true,
        "original_bytes": text.len(),
        "original_sha256": hex::encode(Sha256::digest(text.as_bytes())),
        "preview": &text[..cut],
    })
}

// ---------------------------------------------------------------------------------
// Rule runs

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum RuleRunStatus {
    Started,
    Succeeded,
    Failed,
    Skipped,
}

impl RuleRunStatus {
    /// The wire name (as serialized).
    pub fn as_str(self) -> &'static str {
        match self {
            RuleRunStatus::Started => "started",
            RuleRunStatus::Succeeded => "succeeded",
            RuleRunStatus::Failed => "failed",
            RuleRunStatus::Skipped => "skipped",
        }
    }
}

/// One evaluation of a detection rule, as the platform reports it.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RuleRunInput {
    /// Client-supplied id (1..=128 of `A-Za-z0-9._:-`); a UUIDv7 is generated when absent.
    pub id: Option<String>,
    /// The rule's stable key, at most 160 characters.
    pub rule_key: String,
    /// At most 32 characters.
    pub rule_version: Option<String>,
    /// The connector whose events the rule evaluated.
    pub integration_id: Option<String>,
    pub status: RuleRunStatus,
    pub events_evaluated: Option<i64>,
    pub findings_created: Option<i64>,
    pub findings_reopened: Option<i64>,
    pub findings_resolved: Option<i64>,
    pub duration_ms: Option<i64>,
    /// At most 500 characters.
    pub error_message: Option<String>,
    pub started_at: String,
    /// Not before `started_at`.
    pub finished_at: Option<String>,
    /// W3C trace id, 32 lowercase hex digits.
    pub trace_id: Option<String>,
    /// Trigger event and evaluation context; beyond the configured bound (16 KiB by
    /// default) it is replaced by a truncation marker.
    #[schema(value_type = Option<Object>)]
    pub context: Option<serde_json::Value>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct RuleRun {
    pub id: String,
    pub rule_key: String,
    pub rule_version: Option<String>,
    pub integration_id: Option<String>,
    pub status: RuleRunStatus,
    pub events_evaluated: i64,
    pub findings_created: i64,
    pub findings_reopened: i64,
    pub findings_resolved: i64,
    pub duration_ms: Option<i64>,
    pub error_message: Option<String>,
    pub started_at: Timestamp,
    pub finished_at: Option<Timestamp>,
    pub trace_id: Option<String>,
    #[schema(value_type = Option<Object>)]
    pub context: Option<serde_json::Value>,
}

impl Validate for RuleRun {
    type Input = RuleRunInput;

    fn validate(input: RuleRunInput, ctx: &ValidationContext) -> Result<Self, FieldError> {
        let (started_at, finished_at) = span(&input.started_at, input.finished_at.as_deref())?;
        let rule_key = input.rule_key;
        check::text("rule_key", &rule_key, MAX_RULE_KEY_CHARS)?;
        Ok(RuleRun {
            id: ids::record_id("id", input.id)?,
            rule_key,
            rule_version: opt_text("rule_version", input.rule_version, MAX_RULE_VERSION_CHARS)?,
            integration_id: opt_component_id("integration_id", input.integration_id)?,
            status: input.status,
            events_evaluated: count("events_evaluated", input.events_evaluated)?,
            findings_created: count("findings_created", input.findings_created)?,
            findings_reopened: count("findings_reopened", input.findings_reopened)?,
            findings_resolved: count("findings_resolved", input.findings_resolved)?,
            duration_ms: opt_count("duration_ms", input.duration_ms)?,
            error_message: opt_error_message(input.error_message)?,
            started_at,
            finished_at,
            trace_id: opt_trace_id(input.trace_id)?,
            context: input.context.map(|c| truncate_context(c, ctx.max_context_bytes)),
        })
    }
}

impl IngestRecord for RuleRun {
    fn is_failure(&self) -> bool {
        self.status == RuleRunStatus::Failed
    }

    const KIND: RecordKind = RecordKind::RuleRun;
    const FIELDS: &'static [&'static str] = &[
        "id",
        "rule_key",
        "rule_version",
        "integration_id",
        "status",
        "events_evaluated",
        "findings_created",
        "findings_reopened",
        "findings_resolved",
        "duration_ms",
        "error_message",
        "started_at",
        "finished_at",
        "trace_id",
        "context",
    ];
    const FILTERS: &'static [&'static str] = &["rule_key", "integration_id", "status"];

    fn check_filter(field: &str, value: &str) -> Result<(), FieldError> {
        match field {
            "status" => check_variant::<RuleRunStatus>(field, value),
            _ => check::text(field, value, MAX_RULE_KEY_CHARS),
        }
    }

    fn id(&self) -> &str {
        &self.id
    }

    fn listed_at(&self) -> Timestamp {
        self.started_at
    }
}

// ---------------------------------------------------------------------------------
// Connector syncs

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum SyncTrigger {
    Scheduled,
    Manual,
    Webhook,
}

impl SyncTrigger {
    /// The wire name (as serialized).
    pub fn as_str(self) -> &'static str {
        match self {
            SyncTrigger::Scheduled => "scheduled",
            SyncTrigger::Manual => "manual",
            SyncTrigger::Webhook => "webhook",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum SyncStatus {
    Succeeded,
    Failed,
    Partial,
}

impl SyncStatus {
    /// The wire name (as serialized).
    pub fn as_str(self) -> &'static str {
        match self {
            SyncStatus::Succeeded => "succeeded",
            SyncStatus::Failed => "failed",
            SyncStatus::Partial => "partial",
        }
    }
}

/// One sync of a connector (integration) with its provider.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ConnectorSyncInput {
    pub id: Option<String>,
    /// The connector component's id.
    pub integration_id: String,
    pub triggered_by: SyncTrigger,
    pub status: SyncStatus,
    pub events_ingested: Option<i64>,
    pub new_assets_observed: Option<i64>,
    pub api_calls_made: Option<i64>,
    pub duration_ms: Option<i64>,
    pub error_message: Option<String>,
    pub started_at: String,
    pub finished_at: String,
    pub trace_id: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ConnectorSync {
    pub id: String,
    pub integration_id: String,
    pub triggered_by: SyncTrigger,
    pub status: SyncStatus,
    pub events_ingested: i64,
    pub new_assets_observed: i64,
    pub api_calls_made: i64,
    pub duration_ms: Option<i64>,
    pub error_message: Option<String>,
    pub started_at: Timestamp,
    pub finished_at: Timestamp,
    pub trace_id: Option<String>,
}

impl Validate for ConnectorSync {
    type Input = ConnectorSyncInput;

    fn validate(input: ConnectorSyncInput, _ctx: &ValidationContext) -> Result<Self, FieldError> {
        let (started_at, finished_at) = span(&input.started_at, Some(&input.finished_at))?;
        ids::component_id("integration_id", &input.integration_id)?;
        Ok(ConnectorSync {
            id: ids::record_id("id", input.id)?,
            integration_id: input.integration_id,
            triggered_by: input.triggered_by,
            status: input.status,
            events_ingested: count("events_ingested", input.events_ingested)?,
            new_assets_observed: count("new_assets_observed", input.new_assets_observed)?,
            api_calls_made: count("api_calls_made", input.api_calls_made)?,
            duration_ms: opt_count("duration_ms", input.duration_ms)?,
            error_message: opt_error_message(input.error_message)?,
            started_at,
            finished_at: finished_at.unwrap_or(started_at),
            trace_id: opt_trace_id(input.trace_id)?,
        })
    }
}

impl IngestRecord for ConnectorSync {
    fn is_failure(&self) -> bool {
        self.status == SyncStatus::Failed
    }

    const KIND: RecordKind = RecordKind::ConnectorSync;
    const FIELDS: &'static [&'static str] = &[
        "id",
        "integration_id",
        "triggered_by",
        "status",
        "events_ingested",
        "new_assets_observed",
        "api_calls_made",
        "duration_ms",
        "error_message",
        "started_at",
        "finished_at",
        "trace_id",
    ];
    const FILTERS: &'static [&'static str] = &["integration_id", "status", "triggered_by"];

    fn check_filter(field: &str, value: &str) -> Result<(), FieldError> {
        match field {
            "status" => check_variant::<SyncStatus>(field, value),
            "triggered_by" => check_variant::<SyncTrigger>(field, value),
            _ => ids::component_id(field, value),
        }
    }

    fn id(&self) -> &str {
        &self.id
    }

    fn listed_at(&self) -> Timestamp {
        self.started_at
    }
}

// ---------------------------------------------------------------------------------
// Queue snapshots

/// Items in a queue or delivery pipeline, by state.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct QueueDepth {
    #[serde(default)]
    pub pending: i64,
    #[serde(default)]
    pub in_flight: i64,
    #[serde(default)]
    pub retrying: i64,
    #[serde(default)]
    pub dead_lettered: i64,
}

/// The state of a queue (an ingestion queue or a destination's delivery queue) at one instant.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct QueueSnapshotInput {
    pub id: Option<String>,
    /// When the state was observed; the receive time when absent.
    pub observed_at: Option<String>,
    #[serde(default)]
    pub depth: QueueDepth,
    /// Age of the oldest item not yet processed.
    pub oldest_item_age_ms: Option<i64>,
    /// Cumulative items processed, as the queue counts them.
    pub processed_total: Option<i64>,
    /// Cumulative items failed, as the queue counts them.
    pub failed_total: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct QueueSnapshot {
    pub id: String,
    pub component_id: String,
    pub observed_at: Timestamp,
    pub depth: QueueDepth,
    pub oldest_item_age_ms: Option<i64>,
    pub processed_total: Option<i64>,
    pub failed_total: Option<i64>,
}

impl Validate for QueueSnapshot {
    type Input = QueueSnapshotInput;

    fn validate(input: QueueSnapshotInput, ctx: &ValidationContext) -> Result<Self, FieldError> {
        let component_id = ctx
            .path_component_id
            .clone()
            .ok_or_else(|| FieldError::new("component_id", "is taken from the URL and is missing"))?;
        ids::component_id("component_id", &component_id)?;
        let observed_at = match input.observed_at {
            Some(raw) => Timestamp::parse("observed_at", &raw)?,
            None => ctx.now,
        };
        let depth = input.depth;
        check::non_negative("depth.pending", depth.pending)?;
        check::non_negative("depth.in_flight", depth.in_flight)?;
        check::non_negative("depth.retrying", depth.retrying)?;
        check::non_negative("depth.dead_lettered", depth.dead_lettered)?;
        Ok(QueueSnapshot {
            id: ids::record_id("id", input.id)?,
            component_id,
            observed_at,
            depth,
            oldest_item_age_ms: opt_count("oldest_item_age_ms", input.oldest_item_age_ms)?,
            processed_total: opt_count("processed_total", input.processed_total)?,
            failed_total: opt_count("failed_total", input.failed_total)?,
        })
    }
}

impl IngestRecord for QueueSnapshot {
    const KIND: RecordKind = RecordKind::QueueSnapshot;
    const FIELDS: &'static [&'static str] = &[
        "id",
        "component_id",
        "observed_at",
        "depth.pending",
        "depth.in_flight",
        "depth.retrying",
        "depth.dead_lettered",
        "oldest_item_age_ms",
        "processed_total",
        "failed_total",
    ];
    const FILTERS: &'static [&'static str] = &["component_id"];

    fn id(&self) -> &str {
        &self.id
    }

    fn listed_at(&self) -> Timestamp {
        self.observed_at
    }
}

// ---------------------------------------------------------------------------------
// Deliveries

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryStatus {
    Succeeded,
    Retrying,
    DeadLettered,
}

impl DeliveryStatus {
    /// The wire name (as serialized).
    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryStatus::Succeeded => "succeeded",
            DeliveryStatus::Retrying => "retrying",
            DeliveryStatus::DeadLettered => "dead_lettered",
        }
    }
}

/// One attempt to deliver an item (a finding, an event) to a SIEM or workflow destination.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DeliveryInput {
    pub id: Option<String>,
    /// The destination component's id.
    pub destination_id: String,
    /// The delivered item's id on the platform, for drill-down.
    pub item_id: Option<String>,
    pub status: DeliveryStatus,
    /// 1 for the first attempt.
    pub attempt: Option<i64>,
    pub latency_ms: Option<i64>,
    pub error_message: Option<String>,
    pub attempted_at: String,
    pub trace_id: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Delivery {
    pub id: String,
    pub destination_id: String,
    pub item_id: Option<String>,
    pub status: DeliveryStatus,
    pub attempt: i64,
    pub latency_ms: Option<i64>,
    pub error_message: Option<String>,
    pub attempted_at: Timestamp,
    pub trace_id: Option<String>,
}

impl Validate for Delivery {
    type Input = DeliveryInput;

    fn validate(input: DeliveryInput, _ctx: &ValidationContext) -> Result<Self, FieldError> {
        ids::component_id("destination_id", &input.destination_id)?;
        let attempt = input.attempt.unwrap_or(1);
        if attempt < 1 {
            return Err(FieldError::new("attempt", format!("must be at least 1 (got {attempt})")));
        }
        Ok(Delivery {
            id: ids::record_id("id", input.id)?,
            destination_id: input.destination_id,
            item_id: opt_component_id("item_id", input.item_id)?,
            status: input.status,
            attempt,
            latency_ms: opt_count("latency_ms", input.latency_ms)?,
            error_message: opt_error_message(input.error_message)?,
            attempted_at: Timestamp::parse("attempted_at", &input.attempted_at)?,
            trace_id: opt_trace_id(input.trace_id)?,
        })
    }
}

impl IngestRecord for Delivery {
    const KIND: RecordKind = RecordKind::Delivery;
    const FIELDS: &'static [&'static str] = &[
        "id",
        "destination_id",
        "item_id",
        "status",
        "attempt",
        "latency_ms",
        "error_message",
        "attempted_at",
        "trace_id",
    ];
    const FILTERS: &'static [&'static str] = &["destination_id", "status"];

    fn check_filter(field: &str, value: &str) -> Result<(), FieldError> {
        match field {
            "status" => check_variant::<DeliveryStatus>(field, value),
            _ => ids::component_id(field, value),
        }
    }

    fn id(&self) -> &str {
        &self.id
    }

    fn listed_at(&self) -> Timestamp {
        self.attempted_at
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx() -> ValidationContext {
        ValidationContext::new(Timestamp::parse("now", "2026-11-22T10:00:00Z").unwrap())
    }

    fn rule_run(json: serde_json::Value) -> Result<RuleRun, FieldError> {
        RuleRun::validate(serde_json::from_value(json).unwrap(), &ctx())
    }

    fn base() -> serde_json::Value {
        serde_json::json!({
            "rule_key": "okta.impossible_travel", "status": "succeeded",
            "started_at": "2026-11-22T09:00:00Z", "finished_at": "2026-11-22T09:00:01Z"
        })
    }

    fn with(field: &str, value: serde_json::Value) -> serde_json::Value {
        let mut json = base();
        json[field] = value;
        json
    }

    #[test]
    fn accepts_a_minimal_run_and_generates_an_id() {
        let run = rule_run(base()).unwrap();
        assert_eq!(run.events_evaluated, 0);
        assert_eq!(run.id.len(), 36);
    }

    #[test]
    fn each_rule_names_its_field() {
        let cases = [
            ("rule_key", serde_json::json!("")),
            ("rule_key", serde_json::json!("k".repeat(161))),
            ("rule_version", serde_json::json!("v".repeat(33))),
            ("events_evaluated", serde_json::json!(-1)),
            ("findings_resolved", serde_json::json!(-3)),
            ("duration_ms", serde_json::json!(-1)),
            ("error_message", serde_json::json!("e".repeat(501))),
            ("finished_at", serde_json::json!("2026-11-22T08:59:59Z")),
            ("started_at", serde_json::json!("not a time")),
            ("trace_id", serde_json::json!("xyz")),
            ("integration_id", serde_json::json!("a b")),
            ("id", serde_json::json!("bad id")),
        ];
        for (field, value) in cases {
            let err = rule_run(with(field, value.clone())).unwrap_err();
            assert_eq!(err.field, field, "{field} = {value}: {err}");
        }
    }

    #[test]
    fn oversized_context_is_replaced_by_a_marker() {
        let big = serde_json::json!({"event": "x".repeat(DEFAULT_MAX_CONTEXT_BYTES)});
        let run = rule_run(with("context", big.clone())).unwrap();
        let ctx = run.context.unwrap();
        assert_eq!(ctx["_custos_truncated"], true);
        assert_eq!(ctx["original_bytes"], big.to_string().len());
        assert_eq!(ctx["preview"].as_str().unwrap().len(), CONTEXT_PREVIEW_BYTES);
        let small = serde_json::json!({"event": {"user": "u1"}});
        assert_eq!(rule_run(with("context", small.clone())).unwrap().context.unwrap(), small);
    }

    #[test]
    fn digest_ignores_nothing_but_is_stable() {
        let a = rule_run(with("id", "r1".into())).unwrap();
        let b = rule_run(with("id", "r1".into())).unwrap();
        assert_eq!(a.content_digest(), b.content_digest());
        let mut c = a.clone();
        c.events_evaluated = 1;
        assert_ne!(a.content_digest(), c.content_digest());
    }

    #[test]
    fn snapshot_takes_its_component_from_the_url_and_defaults_time() {
        let mut ctx = ctx();
        ctx.path_component_id = Some("siem-queue".into());
        let input: QueueSnapshotInput = serde_json::from_value(serde_json::json!({"depth": {"pending": 4}})).unwrap();
        let snap = QueueSnapshot::validate(input, &ctx).unwrap();
        assert_eq!(snap.component_id, "siem-queue");
        assert_eq!(snap.observed_at, ctx.now);
        assert_eq!(snap.depth.pending, 4);
        let input: QueueSnapshotInput = serde_json::from_value(serde_json::json!({"depth": {"retrying": -1}})).unwrap();
        assert_eq!(QueueSnapshot::validate(input, &ctx).unwrap_err().field, "depth.retrying");
    }

    #[test]
    fn status_names_match_their_serialization() {
        fn wire<T: Serialize>(value: T) -> String {
            serde_json::to_value(value).unwrap().as_str().unwrap().to_owned()
        }
        for s in [RuleRunStatus::Started, RuleRunStatus::Succeeded, RuleRunStatus::Failed, RuleRunStatus::Skipped] {
            assert_eq!(s.as_str(), wire(s));
        }
        for s in [SyncStatus::Succeeded, SyncStatus::Failed, SyncStatus::Partial] {
            assert_eq!(s.as_str(), wire(s));
        }
        for s in [SyncTrigger::Scheduled, SyncTrigger::Manual, SyncTrigger::Webhook] {
            assert_eq!(s.as_str(), wire(s));
        }
        for s in [DeliveryStatus::Succeeded, DeliveryStatus::Retrying, DeliveryStatus::DeadLettered] {
            assert_eq!(s.as_str(), wire(s));
        }
    }

    #[test]
    fn delivery_attempt_starts_at_one() {
        let input: DeliveryInput = serde_json::from_value(serde_json::json!({
            "destination_id": "splunk", "status": "retrying", "attempt": 0, "attempted_at": "2026-11-22T09:00:00Z"
        }))
        .unwrap();
        assert_eq!(Delivery::validate(input, &ctx()).unwrap_err().field, "attempt");
    }
}

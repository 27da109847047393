//! The tenant logs over HTTP: the timeline (`/v1/tenants/{t}/timeline…`) and the audit
//! log (`/v1/tenants/{t}/audit…`) share every handler here, each route naming its log
//! and the scope it needs (`timeline:write|read`, `audit:write|read`).
//!
//! Records are served with their exact leaf bytes (`record` is the canonical JSON that
//! was hashed, embedded unchanged), so what a client reads is what it can verify.

use axum::Json;
use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use custos_ledger::export::{EXPORT_FORMAT, ExportHeader, leaf_line};
use custos_ledger::merkle::{Hash, leaf_hash};
use custos_model::ledger::{AuditRecord, LogName, TimelineEvent};
use custos_model::records::ValidationContext;
use custos_model::{BodyFormat, Cursor, FieldError, Permission, TenantId, Timestamp, parse_records};
use custos_store::ledger::{FILTER_COLUMNS, cursor_position};
use custos_store::{LogAppend, LogEntry, LogQuery, Store, StoredCheckpoint};
use serde::Serialize;
use serde_json::value::RawValue;

use crate::AppState;
use crate::auth::Caller;
use crate::body;
use crate::error::{ApiError, ErrorCode};
use crate::ledger;
use crate::routes::records::{DEFAULT_PAGE_LIMIT, IngestResponse, ListFormat, list_option, list_sizes, paged_body};

/// Leaves read per store call while streaming an export.
const EXPORT_LEAVES: u64 = 10_000;

fn read_permission(log: LogName) -> Permission {
    match log {
        LogName::Timeline => Permission::TimelineRead,
        LogName::Audit => Permission::AuditRead,
    }
}

fn write_permission(log: LogName) -> Permission {
    match log {
        LogName::Timeline => Permission::TimelineWrite,
        LogName::Audit => Permission::AuditWrite,
    }
}

/// Query parameters a log's list takes, each mapped to the column it matches.
fn filter_column(log: LogName, parameter: &str) -> Option<&'static str> {
    let column = match (log, parameter) {
        (LogName::Timeline, "kind") | (LogName::Audit, "action") => "kind",
        (LogName::Timeline, "project") => "project_id",
        (LogName::Audit, "outcome") => "outcome",
        (LogName::Audit, "request_id") => "request_id",
        (_, "actor" | "resource_type" | "resource_id" | "trace_id") => parameter,
        _ => return None,
    };
    FILTER_COLUMNS.iter().copied().find(|c| *c == column)
}

/// The filter parameters of a log, for error messages and the docs.
pub(crate) fn filter_parameters(log: LogName) -> &'static [&'static str] {
    match log {
        LogName::Timeline => &["kind", "actor", "resource_type", "resource_id", "project", "trace_id"],
        LogName::Audit => &["action", "actor", "outcome", "resource_type", "resource_id", "request_id", "trace_id"],
    }
}

// ---------------------------------------------------------------------------------
// Append

pub(crate) async fn append(
    state: &AppState,
    caller: &Caller,
    raw_tenant: &str,
    log: LogName,
    headers: &HeaderMap,
    request_body: Body,
) -> Result<Response, ApiError> {
    let tenant = caller.tenant_access(state, raw_tenant, write_permission(log)).await?;
    let format = body::record_format(headers)?;
    let bytes = body::read_limited(headers, request_body, state.config.max_body_bytes).await?;
    let now = Timestamp::now();
    let ctx = ValidationContext {
        now,
        max_context_bytes: state.config.max_context_bytes,
        path_component_id: None,
        path_tenant: Some(tenant.clone()),
    };
    let max = state.config.max_batch_records;
    let parse = move |bytes: Bytes| -> Result<Vec<LogAppend>, ApiError> {
        Ok(match log {
            LogName::Timeline => {
                parse_records::<TimelineEvent>(&bytes, format, &ctx, max)?.iter().map(LogAppend::timeline).collect()
            }
            LogName::Audit => {
                parse_records::<AuditRecord>(&bytes, format, &ctx, max)?.iter().map(LogAppend::audit).collect()
            }
        })
    };
    let records = if bytes.len() < crate::routes::records::INLINE_PARSE_BYTES {
        parse(bytes)
    } else {
        tokio::task::spawn_blocking(move || parse(bytes)).await.map_err(|e| ApiError::internal(&e))?
    };
    let records = records.inspect_err(|_| state.metrics.count_records(log.as_str(), "rejected", 1))?;
    let received = records.len();
    tracing::Span::current().record("records", received);
    let single_id = (format == BodyFormat::Json).then(|| records[0].event_id.clone());
    let outcome = ledger::append(state, &tenant, log, records, now).await?;
    let status = if single_id.is_some() && outcome.inserted == 1 { StatusCode::CREATED } else { StatusCode::OK };
    let response =
        IngestResponse { id: single_id, received, inserted: outcome.inserted, duplicates: outcome.duplicates };
    Ok((status, Json(response)).into_response())
}

// ---------------------------------------------------------------------------------
// Reading records

/// A record of a log as served: its leaf index, when custos received it, and the
/// record itself, byte for byte the leaf that was hashed.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct LogItem {
    pub leaf_index: u64,
    pub received_at: Timestamp,
    /// The record's canonical JSON: a timeline event or an audit record.
    #[schema(value_type = Object)]
    pub record: Box<RawValue>,
}

impl LogItem {
    fn from_entry(entry: LogEntry) -> Result<Self, ApiError> {
        let record = RawValue::from_string(entry.record).map_err(|e| ApiError::internal(&e))?;
        Ok(Self { leaf_index: entry.leaf_index, received_at: entry.received_at, record })
    }
}

pub(crate) struct ListRequest {
    pub(crate) query: LogQuery,
    format: ListFormat,
    /// For exports: the most records to stream (all when absent).
    export_limit: Option<usize>,
}

fn invalid(field: &str, message: impl Into<String>) -> ApiError {
    ApiError::invalid(FieldError::new(field, message))
}

pub(crate) fn parse_list(log: LogName, raw: Option<&str>) -> Result<ListRequest, ApiError> {
    let mut query = LogQuery { limit: DEFAULT_PAGE_LIMIT, ..LogQuery::default() };
    let mut format = ListFormat::Json;
    let mut limit: Option<usize> = None;
    let mut seen = std::collections::HashSet::new();
    for (key, value) in form_urlencoded::parse(raw.unwrap_or("").as_bytes()) {
        if !seen.insert(key.to_string()) {
            return Err(invalid(&key, "is given more than once"));
        }
        if list_option(&key, &value, &mut limit, &mut format)? {
            continue;
        }
        match key.as_ref() {
            "from" => query.from = Some(Timestamp::parse("from", &value).map_err(ApiError::invalid)?),
            "to" => query.to = Some(Timestamp::parse("to", &value).map_err(ApiError::invalid)?),
            "cursor" => {
                let cursor = Cursor::decode(&value).map_err(ApiError::invalid)?;
                query.after = Some(cursor_position(&cursor).map_err(ApiError::invalid)?);
            }
            other => match filter_column(log, other) {
                Some("kind") if value.contains('*') => query.kind_glob = Some(kind_glob(other, &value)?),
                Some(column) => query.filters.push((column, value.into_owned())),
                None => {
                    return Err(invalid(
                        other,
                        format!(
                            "is not a parameter of the {log} list; use from, to, cursor, limit, format or {}",
                            filter_parameters(log).join(", ")
                        ),
                    ));
                }
            },
        }
    }
    if let (Some(from), Some(to)) = (query.from, query.to)
        && from >= to
    {
        return Err(invalid("to", "must be later than from"));
    }
    let (page, export_limit) = list_sizes(format, limit)?;
    query.limit = page;
    Ok(ListRequest { query, format, export_limit })
}

/// A kind pattern: `*` at its start or its end only (`platform.policy.*`, `*.failed`),
/// around lowercase letters, digits, `_` and `.`.
fn kind_glob(parameter: &str, value: &str) -> Result<String, ApiError> {
    let core = value.strip_prefix('*').or_else(|| value.strip_suffix('*')).unwrap_or(value);
    let valid = !core.is_empty()
        && !core.contains('*')
        && core.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'.');
    if !valid {
        return Err(invalid(
            parameter,
            "a pattern has one '*', at its start or its end (platform.policy.*, *.failed); otherwise give the exact value",
        ));
    }
    Ok(value.to_owned())
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct LogPage {
    pub items: Vec<LogItem>,
    /// Pass as `cursor` to get the next page; null on the last page.
    pub next_cursor: Option<String>,
}

pub(crate) async fn list(
    state: &AppState,
    caller: &Caller,
    raw_tenant: &str,
    log: LogName,
    raw_query: Option<&str>,
) -> Result<Response, ApiError> {
    let tenant = caller.tenant_access(state, raw_tenant, read_permission(log)).await?;
    let request = parse_list(log, raw_query)?;
    if request.format == ListFormat::Json {
        let page = state.store.log_page(&tenant, log, &request.query).await?;
        tracing::Span::current().record("records", page.items.len());
        let items = page.items.into_iter().map(LogItem::from_entry).collect::<Result<Vec<_>, _>>()?;
        return Ok(Json(LogPage { items, next_cursor: page.next_cursor.map(|c| c.encode()) }).into_response());
    }
    Ok(stream_list(state.store.clone(), tenant, log, request))
}

/// Streams every selected record, one store page at a time; a store error mid-stream
/// is logged and ends the response early (the client sees a broken transfer).
fn stream_list(store: std::sync::Arc<dyn Store>, tenant: TenantId, log: LogName, request: ListRequest) -> Response {
    let format = request.format;
    let content_type = if format == ListFormat::Csv { "text/csv; charset=utf-8" } else { "application/x-ndjson" };
    // (query, rows still wanted, whether this is the first chunk)
    let start = (request.query, request.export_limit.unwrap_or(usize::MAX), true);
    paged_body(start, content_type, move |(mut query, remaining, first): (LogQuery, usize, bool)| {
        let (store, tenant) = (store.clone(), tenant.clone());
        async move {
            query.limit = query.limit.min(remaining);
            let page = store.log_page(&tenant, log, &query).await?;
            let remaining = remaining - page.items.len();
            let chunk = encode_chunk(log, &page.items, format, first);
            let after = match page.next_cursor {
                Some(cursor) if remaining > 0 => {
                    Some((LogQuery { after: cursor_position(&cursor).ok(), ..query }, remaining, false))
                }
                _ => None,
            };
            Ok((chunk, after))
        }
    })
}

/// The CSV columns of a log: the item's, then the record's (nested ones dotted).
pub(crate) fn csv_columns(log: LogName) -> &'static [&'static str] {
    match log {
        LogName::Timeline => &[
            "leaf_index",
            "received_at",
            "event_id",
            "ts",
            "tenant_id",
            "project_id",
            "kind",
            "actor",
            "resource_type",
            "resource_id",
            "trace_id",
            "details",
        ],
        LogName::Audit => &[
            "leaf_index",
            "received_at",
            "event_id",
            "ts",
            "tenant_id",
            "actor.id",
            "actor.name",
            "actor_ip",
            "action",
            "outcome",
            "resource_type",
            "resource_id",
            "request_id",
            "trace_id",
            "details",
        ],
    }
}

fn encode_chunk(log: LogName, entries: &[LogEntry], format: ListFormat, with_header: bool) -> Vec<u8> {
    let mut out = Vec::with_capacity(entries.len() * 400);
    match format {
        ListFormat::Csv => {
            let mut writer = csv::WriterBuilder::new().from_writer(&mut out);
            if with_header {
                let _ = writer.write_record(csv_columns(log));
            }
            for entry in entries {
                let record: serde_json::Value = serde_json::from_str(&entry.record).unwrap_or_default();
                let row: Vec<String> = csv_columns(log)
                    .iter()
                    .map(|column| match *column {
                        "leaf_index" => entry.leaf_index.to_string(),
                        "received_at" => entry.received_at.to_string(),
                        path => super::csv_cell(&record, path),
                    })
                    .collect();
                let _ = writer.write_record(&row);
            }
            let _ = writer.flush();
        }
        ListFormat::Json | ListFormat::Ndjson => {
            for entry in entries {
                // The record is embedded as stored: the leaf's exact bytes.
                out.extend_from_slice(br#"{"leaf_index":"#);
                out.extend_from_slice(entry.leaf_index.to_string().as_bytes());
                out.extend_from_slice(br#","received_at":""#);
                out.extend_from_slice(entry.received_at.to_string().as_bytes());
                out.extend_from_slice(br#"","record":"#);
                out.extend_from_slice(entry.record.as_bytes());
                out.extend_from_slice(b"}\n");
            }
        }
    }
    out
}

/// One record with the proof that the log holds it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct LogRecordResponse {
    #[serde(flatten)]
    pub item: LogItem,
    /// SHA-256(0x00 ‖ record bytes), standard base64.
    pub leaf_hash: String,
    /// The checkpoint the proof leads to (the latest; signed on the spot if none
    /// covered this record yet).
    pub checkpoint: CheckpointSummary,
    /// The RFC 9162 inclusion proof from the leaf to the checkpoint's root: sibling
    /// hashes, leaf to root, standard base64.
    pub inclusion_proof: Vec<String>,
    pub links: RecordLinks,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct CheckpointSummary {
    pub size: u64,
    /// Standard base64.
    pub root: String,
    /// The signed note, as `GET …/checkpoint` serves it.
    pub note: String,
    pub key_id: String,
}

impl CheckpointSummary {
    fn from(checkpoint: &StoredCheckpoint) -> Self {
        Self {
            size: checkpoint.size,
            root: STANDARD.encode(checkpoint.root),
            note: checkpoint.note.clone(),
            key_id: checkpoint.key_id.clone(),
        }
    }
}

/// Where to go next from a record.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct RecordLinks {
    #[serde(rename = "self")]
    pub this: String,
    /// The kept checkpoint the proof leads to.
    pub checkpoint: String,
    /// Every record carrying the record's trace id (`GET …/traces/{trace_id}`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub trace_records: Option<String>,
    /// The trace in the trace backend (from `--trace-url-template`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub trace: Option<String>,
    /// Every record of this log about the same resource.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resource: Option<String>,
}

pub(crate) fn trace_link(state: &AppState, trace_id: &str) -> Option<String> {
    state.config.trace_url_template.as_ref().map(|template| template.replace("{trace_id}", trace_id))
}

fn query_string(pairs: &[(&str, &str)]) -> String {
    form_urlencoded::Serializer::new(String::new()).extend_pairs(pairs).finish()
}

pub(crate) async fn get_record(
    state: &AppState,
    caller: &Caller,
    raw_tenant: &str,
    log: LogName,
    event_id: &str,
) -> Result<Response, ApiError> {
    let tenant = caller.tenant_access(state, raw_tenant, read_permission(log)).await?;
    let entry = state
        .store
        .log_entry(&tenant, log, event_id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no {log} record {event_id:?} (or retention removed it)")))?;
    let checkpoint = ledger::checkpoint_covering(state, &tenant, log, entry.leaf_index).await?;
    let proof = ledger::inclusion_proof(&*state.store, &tenant, log, entry.leaf_index, checkpoint.size).await?;
    let fields: serde_json::Value = serde_json::from_str(&entry.record).unwrap_or_default();
    let text = |name: &str| fields.get(name).and_then(serde_json::Value::as_str).map(str::to_owned);
    let base = format!("/v1/tenants/{}/{log}", tenant.as_str());
    let trace_id = text("trace_id");
    let resource = match (text("resource_type"), text("resource_id")) {
        (Some(kind), Some(id)) => {
            Some(format!("{base}?{}", query_string(&[("resource_type", &kind), ("resource_id", &id)])))
        }
        _ => None,
    };
    let links = RecordLinks {
        this: format!("{base}/{event_id}"),
        checkpoint: format!("{base}/checkpoint?size={}", checkpoint.size),
        trace_records: trace_id.as_ref().map(|t| format!("/v1/tenants/{}/traces/{t}", tenant.as_str())),
        trace: trace_id.as_deref().and_then(|t| trace_link(state, t)),
        resource,
    };
    let leaf = leaf_hash(entry.record.as_bytes());
    Ok(Json(LogRecordResponse {
        item: LogItem::from_entry(entry)?,
        leaf_hash: STANDARD.encode(leaf),
        checkpoint: CheckpointSummary::from(&checkpoint),
        inclusion_proof: proof.iter().map(|h| STANDARD.encode(h)).collect(),
        links,
    })
    .into_response())
}

// ---------------------------------------------------------------------------------
// Checkpoints, proofs, exports

fn one_u64(raw: Option<&str>, allowed: &[&str]) -> Result<std::collections::HashMap<String, u64>, ApiError> {
    let mut values = std::collections::HashMap::new();
    for (key, value) in form_urlencoded::parse(raw.unwrap_or("").as_bytes()) {
        if !allowed.contains(&key.as_ref()) {
            return Err(invalid(&key, format!("is not a parameter here; use {}", allowed.join(", "))));
        }
        let n: u64 = value.parse().map_err(|_| invalid(&key, "must be a non-negative integer"))?;
        if values.insert(key.to_string(), n).is_some() {
            return Err(invalid(&key, "is given more than once"));
        }
    }
    Ok(values)
}

fn note_response(note: String) -> Response {
    let mut response = note.into_response();
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"));
    response
}

/// `GET …/checkpoint[?size=N]`: the latest signed checkpoint (signing one if the log
/// has none yet), or the kept one of exactly `size` leaves.
pub(crate) async fn get_checkpoint(
    state: &AppState,
    caller: &Caller,
    raw_tenant: &str,
    log: LogName,
    raw_query: Option<&str>,
) -> Result<Response, ApiError> {
    let tenant = caller.tenant_access(state, raw_tenant, read_permission(log)).await?;
    let params = one_u64(raw_query, &["size"])?;
    let checkpoint = match params.get("size") {
        Some(&size) => state
            .store
            .checkpoint_at(&tenant, log, size)
            .await?
            .ok_or_else(|| ApiError::not_found(format!("no checkpoint of size {size} is kept for this log")))?,
        None => match state.store.latest_checkpoint(&tenant, log).await? {
            Some(latest) => latest,
            None => ledger::checkpoint(state, &tenant, log).await?,
        },
    };
    Ok(note_response(checkpoint.note))
}

/// `POST …/checkpoint`: signs the current head now (admin).
pub(crate) async fn post_checkpoint(
    state: &AppState,
    caller: &Caller,
    raw_tenant: &str,
    log: LogName,
) -> Result<Response, ApiError> {
    let tenant = caller.tenant_access(state, raw_tenant, Permission::Admin).await?;
    let checkpoint = ledger::checkpoint(state, &tenant, log).await?;
    Ok(note_response(checkpoint.note))
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct ConsistencyProof {
    pub from: u64,
    pub to: u64,
    /// RFC 9162 consistency proof, standard base64.
    pub proof: Vec<String>,
}

/// `GET …/proof/consistency?from=&to=`: `to` defaults to the latest checkpoint's size.
pub(crate) async fn consistency(
    state: &AppState,
    caller: &Caller,
    raw_tenant: &str,
    log: LogName,
    raw_query: Option<&str>,
) -> Result<Response, ApiError> {
    let tenant = caller.tenant_access(state, raw_tenant, read_permission(log)).await?;
    let params = one_u64(raw_query, &["from", "to"])?;
    let from = *params.get("from").ok_or_else(|| invalid("from", "is required: the earlier tree size"))?;
    let to = match params.get("to") {
        Some(&to) => to,
        None => match state.store.latest_checkpoint(&tenant, log).await? {
            Some(latest) => latest.size,
            None => ledger::checkpoint(state, &tenant, log).await?.size,
        },
    };
    let head = state.store.log_head(&tenant, log).await?;
    if to > head.size {
        return Err(invalid("to", format!("the log holds {} leaves", head.size)));
    }
    if from > to {
        return Err(invalid("from", "must not exceed to"));
    }
    let proof = ledger::consistency_proof(&*state.store, &tenant, log, from, to).await?;
    Ok(Json(ConsistencyProof { from, to, proof: proof.iter().map(|h| STANDARD.encode(h)).collect() }).into_response())
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct InclusionProof {
    pub index: u64,
    pub size: u64,
    /// The stored leaf hash, standard base64.
    pub leaf_hash: String,
    /// RFC 9162 inclusion proof, standard base64.
    pub proof: Vec<String>,
}

/// `GET …/proof/inclusion?index=&size=`: `size` defaults to the latest checkpoint's.
pub(crate) async fn inclusion(
    state: &AppState,
    caller: &Caller,
    raw_tenant: &str,
    log: LogName,
    raw_query: Option<&str>,
) -> Result<Response, ApiError> {
    let tenant = caller.tenant_access(state, raw_tenant, read_permission(log)).await?;
    let params = one_u64(raw_query, &["index", "size"])?;
    let index = *params.get("index").ok_or_else(|| invalid("index", "is required: the leaf index"))?;
    let size = match params.get("size") {
        Some(&size) => size,
        None => ledger::checkpoint_covering(state, &tenant, log, index).await?.size,
    };
    let head = state.store.log_head(&tenant, log).await?;
    if size > head.size {
        return Err(invalid("size", format!("the log holds {} leaves", head.size)));
    }
    if index >= size {
        return Err(invalid("index", format!("must be below size {size}")));
    }
    let proof = ledger::inclusion_proof(&*state.store, &tenant, log, index, size).await?;
    let leaf = state.store.log_leaves(&tenant, log, index, index + 1).await?;
    let leaf: Hash = leaf.first().map(|row| row.leaf_hash).ok_or_else(|| {
        ApiError::new(ErrorCode::Internal, "the log's stored hashes are incomplete; run `custos forensic verify-log`")
    })?;
    Ok(Json(InclusionProof {
        index,
        size,
        leaf_hash: STANDARD.encode(leaf),
        proof: proof.iter().map(|h| STANDARD.encode(h)).collect(),
    })
    .into_response())
}

/// `GET …/export[?size=N]`: every leaf up to a signed checkpoint, in the
/// `custos-log-export/v1` format `custos forensic verify-log --export` reads.
pub(crate) async fn export(
    state: &AppState,
    caller: &Caller,
    raw_tenant: &str,
    log: LogName,
    raw_query: Option<&str>,
) -> Result<Response, ApiError> {
    let tenant = caller.tenant_access(state, raw_tenant, read_permission(log)).await?;
    let params = one_u64(raw_query, &["size"])?;
    let checkpoint = match params.get("size") {
        Some(&size) => state
            .store
            .checkpoint_at(&tenant, log, size)
            .await?
            .ok_or_else(|| ApiError::not_found(format!("no checkpoint of size {size} is kept for this log")))?,
        None => ledger::checkpoint(state, &tenant, log).await?,
    };
    let pruned_before = state.store.log_pruned_before(&tenant, log).await?;
    let header = ExportHeader {
        format: EXPORT_FORMAT.into(),
        origin: state.ledger.origin(&tenant, log),
        size: checkpoint.size,
        pruned_before,
        checkpoint: checkpoint.note.clone(),
    };
    tracing::Span::current().record("records", checkpoint.size);
    let size = checkpoint.size;
    let store = state.store.clone();
    // (the first leaf of the next chunk, the header line while it is not yet sent)
    let start = (0u64, Some(header.to_line()));
    Ok(paged_body(start, "text/plain; charset=utf-8", move |(first, header): (u64, Option<String>)| {
        let (store, tenant) = (store.clone(), tenant.clone());
        async move {
            let mut out = header.map(String::into_bytes).unwrap_or_default();
            let end = (first + EXPORT_LEAVES).min(size);
            if first < end {
                let rows = store.log_leaves(&tenant, log, first, end).await?;
                out.reserve(rows.len() * 400);
                for row in &rows {
                    leaf_line(row.leaf_index, &row.leaf_hash, row.record.as_deref(), &mut out);
                }
            }
            Ok((out, (end < size).then_some((end, None))))
        }
    }))
}

// ---------------------------------------------------------------------------------
// Published keys

/// A checkpoint signing key as published.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct PublishedKey {
    /// `ed25519:` and 16 hex digits of SHA-256(public key).
    pub key_id: String,
    pub algorithm: String,
    /// The raw 32-byte Ed25519 public key, standard base64.
    pub public_key: String,
    pub created_at: Timestamp,
    /// Checkpoints signed from this instant on are this key's.
    pub not_before: Timestamp,
    /// When the key was rotated out; null while it signs.
    pub not_after: Option<Timestamp>,
    /// With `?origin=`: the signed-note verifier key for that log.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub verifier_key: Option<String>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct PublishedKeys {
    /// This deployment's name: every log's origin starts with it.
    pub deployment: String,
    pub keys: Vec<PublishedKey>,
}

/// `GET /v1/keys[?origin=]`: public, so verifiers can pin keys without a token.
pub(crate) async fn keys(state: &AppState, raw_query: Option<&str>) -> Result<Response, ApiError> {
    let mut origin: Option<String> = None;
    for (key, value) in form_urlencoded::parse(raw_query.unwrap_or("").as_bytes()) {
        if key != "origin" {
            return Err(invalid(&key, "is not a parameter here; use origin"));
        }
        if origin.replace(value.into_owned()).is_some() {
            return Err(invalid("origin", "is given more than once"));
        }
    }
    if let Some(origin) = &origin {
        check_origin(state.ledger.deployment(), origin)?;
    }
    let keys = state.store.signing_keys().await?;
    let keys = keys
        .into_iter()
        .map(|key| PublishedKey {
            verifier_key: origin.as_deref().and_then(|o| crate::keys::verifier_key(o, &key.public_key).ok()),
            key_id: key.key_id,
            algorithm: key.algorithm,
            public_key: STANDARD.encode(key.public_key),
            created_at: key.created_at,
            not_before: key.not_before,
            not_after: key.not_after,
        })
        .collect();
    Ok(Json(PublishedKeys { deployment: state.ledger.deployment().to_owned(), keys }).into_response())
}

/// An origin of this deployment: `<deployment>/tenants/<tenant>/<timeline|audit>`.
/// Whether the tenant exists is not checked (and not revealed).
fn check_origin(deployment: &str, origin: &str) -> Result<(), ApiError> {
    let expected = || {
        invalid(
            "origin",
            format!("must be {deployment}/tenants/<tenant>/timeline or {deployment}/tenants/<tenant>/audit"),
        )
    };
    let rest = origin.strip_prefix(deployment).and_then(|r| r.strip_prefix("/tenants/")).ok_or_else(expected)?;
    let (tenant, log) = rest.split_once('/').ok_or_else(expected)?;
    TenantId::parse(tenant).map_err(|_| expected())?;
    LogName::parse(log).ok_or_else(expected)?;
    Ok(())
}

// ---------------------------------------------------------------------------------
// The annotated handlers

/// Declares a log's routes with their OpenAPI descriptions.
macro_rules! log_endpoints {
    ($log:expr, $name:literal, $tag:literal, $read:literal, $write:literal, $item:literal,
     $events:ident, $list:ident, $get:ident, $checkpoint:ident, $sign:ident, $consistency:ident,
     $inclusion:ident, $export:ident, $input:ty,
     filters: [$($filter:literal => $filter_doc:literal),*]) => {
        #[utoipa::path(
            post, path = concat!("/v1/tenants/{tenant}/", $name, "/events"), tag = $tag,
            summary = concat!("Append ", $item, "s"),
            description = concat!("One ", $item, " as `application/json`, or many as `application/x-ndjson`. A batch \
                is atomic: one bad line rejects the whole body. Idempotent by `event_id`: the same id with the same \
                content is a duplicate, with other content a 409. Each new record becomes the next leaf of the \
                tenant's ", $name, " Merkle log."),
            params(("tenant" = String, Path, description = "Tenant id")),
            request_body(content(($input = "application/json"), ($input = "application/x-ndjson"))),
            responses(
                (status = 201, description = "The single record was appended", body = IngestResponse),
                (status = 200, description = "Appended (batch), or a duplicate re-send", body = IngestResponse),
                (status = 400, body = crate::error::ErrorResponse),
                (status = 401, body = crate::error::ErrorResponse),
                (status = 403, description = concat!("The token lacks `", $write, "` for this tenant"), body = crate::error::ErrorResponse),
                (status = 404, body = crate::error::ErrorResponse),
                (status = 409, description = "Same event_id, different content", body = crate::error::ErrorResponse),
                (status = 413, body = crate::error::ErrorResponse),
                (status = 415, body = crate::error::ErrorResponse),
                (status = 422, description = "A field breaks a rule; `field` and `line` name it", body = crate::error::ErrorResponse),
            ),
            security(("bearer" = [$write]))
        )]
        pub(crate) async fn $events(
            axum::extract::State(state): axum::extract::State<AppState>,
            caller: Caller,
            axum::extract::Path(tenant): axum::extract::Path<String>,
            headers: HeaderMap,
            body: Body,
        ) -> Result<Response, ApiError> {
            append(&state, &caller, &tenant, $log, &headers, body).await
        }

        #[utoipa::path(
            get, path = concat!("/v1/tenants/{tenant}/", $name), tag = $tag,
            summary = concat!("Query the ", $name, ", newest first"),
            description = "Keyset-paginated by (`ts`, leaf index): pass `next_cursor` back as `cursor`. With \
                `format=ndjson` or `csv` the whole selection is streamed (up to `limit` rows when given).",
            params(
                ("tenant" = String, Path, description = "Tenant id"),
                crate::openapi::ListParams,
                $(($filter = Option<String>, Query, description = $filter_doc)),*
            ),
            responses(
                (status = 200, content((LogPage = "application/json"), (String = "application/x-ndjson"), (String = "text/csv"))),
                (status = 401, body = crate::error::ErrorResponse),
                (status = 403, description = concat!("The token lacks `", $read, "` for this tenant"), body = crate::error::ErrorResponse),
                (status = 404, body = crate::error::ErrorResponse),
                (status = 422, description = "A bad parameter; `field` names it", body = crate::error::ErrorResponse),
            ),
            security(("bearer" = [$read]))
        )]
        pub(crate) async fn $list(
            axum::extract::State(state): axum::extract::State<AppState>,
            caller: Caller,
            axum::extract::Path(tenant): axum::extract::Path<String>,
            axum::extract::RawQuery(raw): axum::extract::RawQuery,
        ) -> Result<Response, ApiError> {
            list(&state, &caller, &tenant, $log, raw.as_deref()).await
        }

        #[utoipa::path(
            get, path = concat!("/v1/tenants/{tenant}/", $name, "/{event_id}"), tag = $tag,
            summary = concat!("One ", $item, ", with its inclusion proof"),
            description = "The record, its leaf index and hash, the latest checkpoint (signed on the spot when none \
                covers the record yet), the inclusion proof from the leaf to that checkpoint's root, and links to \
                its trace and related records.",
            params(("tenant" = String, Path), ("event_id" = String, Path)),
            responses(
                (status = 200, body = LogRecordResponse),
                (status = 401, body = crate::error::ErrorResponse),
                (status = 403, body = crate::error::ErrorResponse),
                (status = 404, description = "No such record, or retention removed it", body = crate::error::ErrorResponse),
                (status = 503, description = "No signing key is configured", body = crate::error::ErrorResponse),
            ),
            security(("bearer" = [$read]))
        )]
        pub(crate) async fn $get(
            axum::extract::State(state): axum::extract::State<AppState>,
            caller: Caller,
            axum::extract::Path((tenant, event_id)): axum::extract::Path<(String, String)>,
        ) -> Result<Response, ApiError> {
            get_record(&state, &caller, &tenant, $log, &event_id).await
        }

        #[utoipa::path(
            get, path = concat!("/v1/tenants/{tenant}/", $name, "/checkpoint"), tag = $tag,
            summary = "The latest signed checkpoint (C2SP tlog-checkpoint signed note)",
            description = "`text/plain`: origin line, tree size, base64 root hash, a blank line, and signature lines. \
                With `size`, the kept checkpoint of exactly that many leaves.",
            params(("tenant" = String, Path), ("size" = Option<u64>, Query, description = "A kept checkpoint's size")),
            responses(
                (status = 200, content((String = "text/plain"))),
                (status = 401, body = crate::error::ErrorResponse),
                (status = 403, body = crate::error::ErrorResponse),
                (status = 404, description = "No checkpoint of that size is kept", body = crate::error::ErrorResponse),
                (status = 422, body = crate::error::ErrorResponse),
                (status = 503, description = "No signing key is configured", body = crate::error::ErrorResponse),
            ),
            security(("bearer" = [$read]))
        )]
        pub(crate) async fn $checkpoint(
            axum::extract::State(state): axum::extract::State<AppState>,
            caller: Caller,
            axum::extract::Path(tenant): axum::extract::Path<String>,
            axum::extract::RawQuery(raw): axum::extract::RawQuery,
        ) -> Result<Response, ApiError> {
            get_checkpoint(&state, &caller, &tenant, $log, raw.as_deref()).await
        }

        #[utoipa::path(
            post, path = concat!("/v1/tenants/{tenant}/", $name, "/checkpoint"), tag = $tag,
            summary = "Sign a checkpoint of the current head now",
            params(("tenant" = String, Path)),
            responses(
                (status = 200, content((String = "text/plain"))),
                (status = 401, body = crate::error::ErrorResponse),
                (status = 403, body = crate::error::ErrorResponse),
                (status = 503, description = "No signing key is configured", body = crate::error::ErrorResponse),
            ),
            security(("bearer" = ["admin"]))
        )]
        pub(crate) async fn $sign(
            axum::extract::State(state): axum::extract::State<AppState>,
            caller: Caller,
            axum::extract::Path(tenant): axum::extract::Path<String>,
        ) -> Result<Response, ApiError> {
            post_checkpoint(&state, &caller, &tenant, $log).await
        }

        #[utoipa::path(
            get, path = concat!("/v1/tenants/{tenant}/", $name, "/proof/consistency"), tag = $tag,
            summary = "A consistency proof between two tree sizes (RFC 9162 §2.1.4)",
            params(
                ("tenant" = String, Path),
                ("from" = u64, Query, description = "The earlier tree size"),
                ("to" = Option<u64>, Query, description = "The later tree size; the latest checkpoint's by default"),
            ),
            responses(
                (status = 200, body = ConsistencyProof),
                (status = 401, body = crate::error::ErrorResponse),
                (status = 403, body = crate::error::ErrorResponse),
                (status = 422, body = crate::error::ErrorResponse),
            ),
            security(("bearer" = [$read]))
        )]
        pub(crate) async fn $consistency(
            axum::extract::State(state): axum::extract::State<AppState>,
            caller: Caller,
            axum::extract::Path(tenant): axum::extract::Path<String>,
            axum::extract::RawQuery(raw): axum::extract::RawQuery,
        ) -> Result<Response, ApiError> {
            consistency(&state, &caller, &tenant, $log, raw.as_deref()).await
        }

        #[utoipa::path(
            get, path = concat!("/v1/tenants/{tenant}/", $name, "/proof/inclusion"), tag = $tag,
            summary = "An inclusion proof for a leaf index (RFC 9162 §2.1.3)",
            params(
                ("tenant" = String, Path),
                ("index" = u64, Query, description = "The leaf index"),
                ("size" = Option<u64>, Query, description = "The tree size; the latest checkpoint's by default"),
            ),
            responses(
                (status = 200, body = InclusionProof),
                (status = 401, body = crate::error::ErrorResponse),
                (status = 403, body = crate::error::ErrorResponse),
                (status = 422, body = crate::error::ErrorResponse),
            ),
            security(("bearer" = [$read]))
        )]
        pub(crate) async fn $inclusion(
            axum::extract::State(state): axum::extract::State<AppState>,
            caller: Caller,
            axum::extract::Path(tenant): axum::extract::Path<String>,
            axum::extract::RawQuery(raw): axum::extract::RawQuery,
        ) -> Result<Response, ApiError> {
            inclusion(&state, &caller, &tenant, $log, raw.as_deref()).await
        }

        #[utoipa::path(
            get, path = concat!("/v1/tenants/{tenant}/", $name, "/export"), tag = $tag,
            summary = "Every leaf up to a signed checkpoint, for offline verification",
            description = "The `custos-log-export/v1` text format (docs/forensics/verification.md): a JSON header \
                with the signed checkpoint, then `index TAB base64(leaf hash) TAB record` per leaf. Streamed.",
            params(("tenant" = String, Path), ("size" = Option<u64>, Query, description = "A kept checkpoint's size; a fresh checkpoint by default")),
            responses(
                (status = 200, content((String = "text/plain"))),
                (status = 401, body = crate::error::ErrorResponse),
                (status = 403, body = crate::error::ErrorResponse),
                (status = 404, body = crate::error::ErrorResponse),
                (status = 503, description = "No signing key is configured", body = crate::error::ErrorResponse),
            ),
            security(("bearer" = [$read]))
        )]
        pub(crate) async fn $export(
            axum::extract::State(state): axum::extract::State<AppState>,
            caller: Caller,
            axum::extract::Path(tenant): axum::extract::Path<String>,
            axum::extract::RawQuery(raw): axum::extract::RawQuery,
        ) -> Result<Response, ApiError> {
            export(&state, &caller, &tenant, $log, raw.as_deref()).await
        }
    };
}

log_endpoints!(LogName::Timeline, "timeline", "timeline", "timeline:read", "timeline:write", "timeline event",
    post_timeline_events, list_timeline, get_timeline_event, get_timeline_checkpoint, sign_timeline_checkpoint,
    timeline_consistency, timeline_inclusion, export_timeline, custos_model::ledger::TimelineEventInput,
    filters: ["kind" => "Exact kind (`platform.policy.changed`)", "actor" => "Exact actor",
              "resource_type" => "Exact match", "resource_id" => "Exact match",
              "project" => "Exact project id", "trace_id" => "32 hex digits"]);

log_endpoints!(LogName::Audit, "audit", "audit log", "audit:read", "audit:write", "audit record",
    post_audit_events, list_audit, get_audit_record, get_audit_checkpoint, sign_audit_checkpoint,
    audit_consistency, audit_inclusion, export_audit, custos_model::ledger::AuditRecordInput,
    filters: ["action" => "Exact action (`platform.user.login`)", "actor" => "Actor id (or name when no id)",
              "outcome" => "success, failure or denied", "resource_type" => "Exact match",
              "resource_id" => "Exact match", "request_id" => "Exact match", "trace_id" => "32 hex digits"]);

#[utoipa::path(
    get, path = "/v1/keys", tag = "platform",
    summary = "The published checkpoint signing keys, with their validity windows",
    description = "Public. With `origin` (a log's origin, `<deployment>/tenants/<tenant>/<log>`), each key's \
        signed-note verifier key for that log, the string `custos forensic verify-log --key` and Go's \
        `note.NewVerifier` take.",
    params(("origin" = Option<String>, Query, description = "A log origin")),
    responses(
        (status = 200, body = PublishedKeys),
        (status = 422, description = "Not an origin of this deployment", body = crate::error::ErrorResponse),
    )
)]
pub(crate) async fn list_keys(
    axum::extract::State(state): axum::extract::State<AppState>,
    axum::extract::RawQuery(raw): axum::extract::RawQuery,
) -> Result<Response, ApiError> {
    keys(&state, raw.as_deref()).await
}

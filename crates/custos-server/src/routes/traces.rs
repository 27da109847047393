//! Trace correlation: every record of a tenant that carries one trace id — rule runs,
//! connector syncs, timeline events, audit records — in time order, with a link to the
//! trace in the trace backend (`--trace-url-template`).
//!
//! Timeline events and audit records are found by their trace index. Rule runs and
//! connector syncs carry no trace index (one on a random key cost a quarter of the
//! ingest rate), so they are searched in a time window through their time index: the
//! window asked for (`from`, `to`), else an hour around the trace's log records, else
//! the last day. The answer says which window it searched.

use axum::Json;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use custos_model::ledger::LogName;
use custos_model::records::{ConnectorSync, RuleRun};
use custos_model::{Permission, Scope, TenantId, TenantSelector, Timestamp, TraceId};
use custos_store::ledger::MAX_PAGE;
use custos_store::{LogQuery, RecordQuery, StoredRecord};
use serde::Serialize;
use serde_json::value::RawValue;

use crate::AppState;
use crate::auth::Caller;
use crate::error::{ApiError, ErrorCode};

/// Most records of each kind in one answer (`truncated` says when a kind had more).
pub const MAX_PER_KIND: usize = MAX_PAGE;

/// One record of the trace.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct TraceItem {
    /// When it happened: a run's or sync's start, an event's or record's `ts`.
    pub at: Timestamp,
    /// `rule_run`, `connector_sync`, `timeline` or `audit`.
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub id: String,
    /// One line for people.
    pub summary: String,
    /// The record as the API serves it elsewhere.
    #[schema(value_type = Object)]
    pub record: Box<RawValue>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct TraceResponse {
    pub trace_id: String,
    /// The trace in the trace backend, when `--trace-url-template` is set.
    pub trace_url: Option<String>,
    /// Oldest first.
    pub items: Vec<TraceItem>,
    /// Kinds left out because the token may not read them (`audit` without `audit:read`).
    pub omitted: Vec<&'static str>,
    /// Whether some kind had more than `MAX_PER_KIND` records (the newest are kept).
    pub truncated: bool,
    /// The window rule runs and connector syncs were searched in (`[from, to)`, by
    /// their start).
    pub searched: Window,
}

#[derive(Debug, Clone, Copy, Serialize, utoipa::ToSchema)]
pub(crate) struct Window {
    pub from: Timestamp,
    pub to: Timestamp,
}

/// Margin around the trace's log records when no window is given.
const AROUND_US: i64 = 3_600_000_000;
/// The window when neither is given nor found: the last day.
const DEFAULT_WINDOW_US: i64 = 86_400_000_000;

fn raw(json: String) -> Result<Box<RawValue>, ApiError> {
    RawValue::from_string(json).map_err(|e| ApiError::internal(&e))
}

async fn records<R: StoredRecord>(
    state: &AppState,
    tenant: &TenantId,
    trace_id: &str,
    window: Window,
    summary: impl Fn(&serde_json::Value) -> String,
) -> Result<(Vec<TraceItem>, bool), ApiError> {
    let query = RecordQuery {
        filters: vec![("trace_id".into(), trace_id.to_owned())],
        from: Some(window.from),
        to: Some(window.to),
        limit: MAX_PER_KIND,
        ..RecordQuery::default()
    };
    let page = R::page(&*state.store, tenant, &query).await?;
    let truncated = page.next_cursor.is_some();
    let mut items = Vec::with_capacity(page.items.len());
    for stored in page.items {
        let json = serde_json::to_value(&stored).map_err(|e| ApiError::internal(&e))?;
        items.push(TraceItem {
            at: stored.record.listed_at(),
            kind: R::KIND.as_str(),
            id: stored.record.id().to_owned(),
            summary: summary(&json),
            record: raw(json.to_string())?,
        });
    }
    Ok((items, truncated))
}

async fn log_records(
    state: &AppState,
    tenant: &TenantId,
    log: LogName,
    trace_id: &str,
) -> Result<(Vec<TraceItem>, bool), ApiError> {
    let query = LogQuery { limit: MAX_PER_KIND, ..LogQuery::default() }.filter("trace_id", trace_id);
    let page = state.store.log_page(tenant, log, &query).await?;
    let truncated = page.next_cursor.is_some();
    let mut items = Vec::with_capacity(page.items.len());
    for entry in page.items {
        let fields: serde_json::Value = serde_json::from_str(&entry.record).unwrap_or_default();
        let text = |name: &str| fields.get(name).and_then(serde_json::Value::as_str).unwrap_or("").to_owned();
        let summary = match log {
            LogName::Timeline => {
                let about = match (text("resource_type"), text("resource_id")) {
                    (kind, id) if !kind.is_empty() && !id.is_empty() => format!(" {kind}/{id}"),
                    _ => String::new(),
                };
                format!("{}{about}", text("kind"))
            }
            LogName::Audit => {
                let who = fields["actor"]["name"].as_str().or(fields["actor"]["id"].as_str()).unwrap_or("someone");
                format!("{} {} by {who}", text("action"), text("outcome"))
            }
        };
        items.push(TraceItem {
            at: entry.ts,
            kind: log.as_str(),
            id: entry.event_id.clone(),
            summary,
            record: raw(format!(
                r#"{{"leaf_index":{},"received_at":"{}","record":{}}}"#,
                entry.leaf_index, entry.received_at, entry.record
            ))?,
        });
    }
    Ok((items, truncated))
}

#[utoipa::path(
    get, path = "/v1/tenants/{tenant}/traces/{trace_id}", tag = "timeline",
    summary = "Everything of the tenant that carries a trace id, in time order",
    description = "Rule runs and connector syncs (with `obs:read`), timeline events (`timeline:read`) and audit records \
        (`audit:read`): the token needs one of these scopes, and kinds it may not read are listed in `omitted`. \
        At most 1000 records of each kind (the newest; `truncated` says so). Rule runs and syncs are searched in a \
        window (`searched`): `from`/`to` when given, else an hour around the trace's log records, else the last day.",
    params(
        ("tenant" = String, Path),
        ("trace_id" = String, Path, description = "32 lowercase hex digits"),
        ("from" = Option<String>, Query, description = "Search rule runs and syncs from here (RFC 3339)"),
        ("to" = Option<String>, Query, description = "… up to here (exclusive)"),
    ),
    responses(
        (status = 200, body = TraceResponse),
        (status = 401, body = crate::error::ErrorResponse),
        (status = 403, description = "The token holds none of the scopes", body = crate::error::ErrorResponse),
        (status = 404, body = crate::error::ErrorResponse),
        (status = 422, description = "Not a trace id", body = crate::error::ErrorResponse),
    ),
    security(("bearer" = ["obs:read", "timeline:read", "audit:read"]))
)]
pub(crate) async fn get_trace(
    State(state): State<AppState>,
    caller: Caller,
    Path((raw_tenant, trace_id)): Path<(String, String)>,
    axum::extract::RawQuery(raw): axum::extract::RawQuery,
) -> Result<Response, ApiError> {
    let tenant = TenantId::parse(&raw_tenant).map_err(|_| ApiError::not_found("tenant not found"))?;
    let allowed: Vec<Permission> = [Permission::ObsRead, Permission::TimelineRead, Permission::AuditRead]
        .into_iter()
        .filter(|p| caller.has(*p, &tenant))
        .collect();
    let Some(first) = allowed.first() else {
        state.metrics.count_auth_failure("missing_scope");
        let missing = Scope::new(Permission::ObsRead, TenantSelector::One(tenant.clone()));
        return Err(ApiError::new(
            ErrorCode::Forbidden,
            format!("missing scope {missing} (or timeline:read, audit:read on the tenant)"),
        ));
    };
    // The documented order: scope, then existence.
    let tenant = caller.tenant_access(&state, &raw_tenant, *first).await?;
    TraceId::parse("trace_id", &trace_id).map_err(ApiError::invalid)?;
    let (mut from, mut to) = (None, None);
    for (key, value) in form_urlencoded::parse(raw.as_deref().unwrap_or("").as_bytes()) {
        let slot = match key.as_ref() {
            "from" => &mut from,
            "to" => &mut to,
            other => {
                return Err(ApiError::invalid(custos_model::FieldError::new(
                    other,
                    "is not a parameter here; use from, to",
                )));
            }
        };
        *slot = Some(Timestamp::parse(&key, &value).map_err(ApiError::invalid)?);
    }
    let mut items = Vec::new();
    let mut omitted = Vec::new();
    let mut truncated = false;
    for (log, permission) in [(LogName::Timeline, Permission::TimelineRead), (LogName::Audit, Permission::AuditRead)] {
        if allowed.contains(&permission) {
            let (found, more) = log_records(&state, &tenant, log, &trace_id).await?;
            items.extend(found);
            truncated |= more;
        } else {
            omitted.push(log.as_str());
        }
    }
    let earliest = items.iter().map(|i| i.at).min();
    let latest = items.iter().map(|i| i.at).max();
    let now = Timestamp::now();
    let searched = Window {
        from: from
            .or_else(|| earliest.map(|t| t.saturating_add_micros(-AROUND_US)))
            .unwrap_or_else(|| to.unwrap_or(now).saturating_add_micros(-DEFAULT_WINDOW_US)),
        to: to
            .or_else(|| latest.map(|t| t.saturating_add_micros(AROUND_US)))
            .unwrap_or_else(|| now.saturating_add_micros(1)),
    };
    if searched.from >= searched.to {
        return Err(ApiError::invalid(custos_model::FieldError::new("to", "must be later than from")));
    }
    if allowed.contains(&Permission::ObsRead) {
        let (runs, more) = records::<RuleRun>(&state, &tenant, &trace_id, searched, |r| {
            format!("rule {} {}", r["rule_key"].as_str().unwrap_or(""), r["status"].as_str().unwrap_or(""))
        })
        .await?;
        let (syncs, more_syncs) = records::<ConnectorSync>(&state, &tenant, &trace_id, searched, |r| {
            format!("sync of {} {}", r["integration_id"].as_str().unwrap_or(""), r["status"].as_str().unwrap_or(""))
        })
        .await?;
        items.extend(runs);
        items.extend(syncs);
        truncated |= more || more_syncs;
    } else {
        omitted.extend(["rule_run", "connector_sync"]);
    }
    items.sort_by(|a, b| a.at.cmp(&b.at).then_with(|| a.kind.cmp(b.kind)).then_with(|| a.id.cmp(&b.id)));
    tracing::Span::current().record("records", items.len());
    let trace_url = crate::routes::logs::trace_link(&state, &trace_id);
    Ok(Json(TraceResponse { trace_id, trace_url, items, omitted, truncated, searched }).into_response())
}

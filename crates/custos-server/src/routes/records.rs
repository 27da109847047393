//! Ingest and listing of reported records, written once for every record kind.
//!
//! Ingest: content type, size and batch bounds, parse and validate every line, then one
//! atomic store call; the answer says how many records were new and how many were
//! re-sends. Listing: newest first, keyset-paginated JSON pages, or the whole selection
//! streamed as NDJSON or CSV page by page, so an export of any size runs in constant
//! memory.

use axum::Json;
use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use custos_model::records::{IngestRecord, ValidationContext};
use custos_model::{Cursor, FieldError, Permission, TenantId, Timestamp, parse_records};
use custos_store::{RecordQuery, Store, Stored, StoredRecord};
use serde::Serialize;

use crate::AppState;
use crate::auth::Caller;
use crate::body;
use crate::error::ApiError;

/// Bodies smaller than this are parsed on the request's task; larger ones on the
/// blocking pool, so a 10 MiB batch never stalls other requests.
pub(crate) const INLINE_PARSE_BYTES: usize = 64 * 1024;
pub(crate) const DEFAULT_PAGE_LIMIT: usize = 100;
pub(crate) const MAX_PAGE_LIMIT: usize = 1000;
/// Rows fetched per store call while streaming an export.
pub(crate) const EXPORT_PAGE: usize = 1000;

/// What an ingest request stored.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct IngestResponse {
    /// The record's id (given or generated), for a single-record (`application/json`) body.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// Records in the body.
    pub received: usize,
    /// Records stored by this request.
    pub inserted: usize,
    /// Records already stored with the same id and content, not stored again.
    pub duplicates: usize,
}

pub(crate) async fn ingest<R: StoredRecord>(
    state: &AppState,
    caller: &Caller,
    tenant: &str,
    path_component: Option<String>,
    headers: &HeaderMap,
    request_body: Body,
) -> Result<Response, ApiError> {
    let tenant = caller.tenant_access(state, tenant, Permission::IngestWrite).await?;
    if let Some(component) = &path_component
        && state.store.component(&tenant, component).await?.is_none()
    {
        return Err(ApiError::not_found(format!("component {component:?} not found; register it with PUT first")));
    }
    let format = body::record_format(headers)?;
    let bytes = body::read_limited(headers, request_body, state.config.max_body_bytes).await?;
    // Records in a refused body count as rejected; for a body that does not parse, its
    // non-blank lines are the best count there is.
    let lines = || bytes.split(|&b| b == b'\n').filter(|l| !l.iter().all(u8::is_ascii_whitespace)).count() as u64;
    let reject = |error: ApiError, count: u64| {
        state.metrics.count_records(R::KIND.as_str(), "rejected", count);
        error
    };
    let now = Timestamp::now();
    let ctx = ValidationContext {
        now,
        max_context_bytes: state.config.max_context_bytes,
        path_component_id: path_component,
        path_tenant: None,
    };
    let max_records = state.config.max_batch_records;
    let parsed = if bytes.len() < INLINE_PARSE_BYTES {
        parse_records::<R>(&bytes, format, &ctx, max_records)
    } else {
        let body = bytes.clone();
        tokio::task::spawn_blocking(move || parse_records::<R>(&body, format, &ctx, max_records))
            .await
            .map_err(|e| ApiError::internal(&e))?
    };
    let records = parsed.map_err(|e| reject(e.into(), lines()))?;
    let received = records.len();
    tracing::Span::current().record("records", received);
    let single_id = (format == custos_model::BodyFormat::Json).then(|| records[0].id().to_owned());
    // The store appends each failure's timeline event in the records' own transaction.
    let summary =
        R::record(&*state.store, &tenant, records, now).await.map_err(|e| reject(e.into(), received as u64))?;
    state.metrics.count_records(R::KIND.as_str(), "inserted", summary.inserted as u64);
    state.metrics.count_records(R::KIND.as_str(), "duplicate", summary.duplicates as u64);
    let status = if single_id.is_some() && summary.inserted == 1 { StatusCode::CREATED } else { StatusCode::OK };
    let response =
        IngestResponse { id: single_id, received, inserted: summary.inserted, duplicates: summary.duplicates };
    Ok((status, Json(response)).into_response())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ListFormat {
    Json,
    Ndjson,
    Csv,
}

/// A validated list request.
#[derive(Debug)]
pub(crate) struct ListRequest {
    pub query: RecordQuery,
    pub format: ListFormat,
    /// For exports: the most rows to stream (all when absent).
    pub export_limit: Option<usize>,
}

/// Applies a list's window parameter (`from`, `to` or `cursor`) to `query`; false for
/// any other parameter.
pub(crate) fn window_parameter(query: &mut RecordQuery, key: &str, value: &str) -> Result<bool, ApiError> {
    match key {
        "from" => query.from = Some(Timestamp::parse("from", value).map_err(ApiError::invalid)?),
        "to" => query.to = Some(Timestamp::parse("to", value).map_err(ApiError::invalid)?),
        "cursor" => query.after = Some(Cursor::decode(value).map_err(ApiError::invalid)?),
        _ => return Ok(false),
    }
    Ok(true)
}

/// Reads the options every list shares, `limit` and `format`; false for any other
/// parameter.
pub(crate) fn list_option(
    key: &str,
    value: &str,
    limit: &mut Option<usize>,
    format: &mut ListFormat,
) -> Result<bool, ApiError> {
    let invalid = |field: &str, message: &str| ApiError::invalid(FieldError::new(field, message));
    match key {
        "limit" => {
            let n: usize = value.parse().map_err(|_| invalid("limit", "must be a positive integer"))?;
            if n == 0 {
                return Err(invalid("limit", "must be a positive integer"));
            }
            *limit = Some(n);
        }
        "format" => {
            *format = match value {
                "json" => ListFormat::Json,
                "ndjson" => ListFormat::Ndjson,
                "csv" => ListFormat::Csv,
                _ => return Err(invalid("format", "must be json, ndjson or csv")),
            }
        }
        _ => return Ok(false),
    }
    Ok(true)
}

/// For a list in `format` with the `limit` asked for: the rows per store call, and for
/// an export the most rows to stream (all when absent).
pub(crate) fn list_sizes(format: ListFormat, limit: Option<usize>) -> Result<(usize, Option<usize>), ApiError> {
    match format {
        ListFormat::Json => {
            let n = limit.unwrap_or(DEFAULT_PAGE_LIMIT);
            if n > MAX_PAGE_LIMIT {
                return Err(ApiError::invalid(FieldError::new(
                    "limit",
                    format!("must be at most {MAX_PAGE_LIMIT}; use format=ndjson or csv to export more"),
                )));
            }
            Ok((n, None))
        }
        ListFormat::Ndjson | ListFormat::Csv => Ok((EXPORT_PAGE.min(limit.unwrap_or(usize::MAX)), limit)),
    }
}

/// Parses the query string: `from`, `to`, `limit`, `cursor`, `format` and the record
/// kind's filters. Anything else, or a parameter given twice, is an error naming it.
pub(crate) fn parse_list_query<R: IngestRecord>(
    raw: Option<&str>,
    fixed: Option<(&str, String)>,
) -> Result<ListRequest, ApiError> {
    let mut query = RecordQuery { limit: DEFAULT_PAGE_LIMIT, ..RecordQuery::default() };
    let mut format = ListFormat::Json;
    let mut limit: Option<usize> = None;
    let mut seen = std::collections::HashSet::new();
    let invalid = |field: &str, message: &str| ApiError::invalid(FieldError::new(field, message));
    for (key, value) in form_urlencoded::parse(raw.unwrap_or("").as_bytes()) {
        if !seen.insert(key.to_string()) {
            return Err(invalid(&key, "is given more than once"));
        }
        if window_parameter(&mut query, &key, &value)? {
            continue;
        }
        if list_option(&key, &value, &mut limit, &mut format)? {
            continue;
        }
        match key.as_ref() {
            name if R::FILTERS.contains(&name) && fixed.as_ref().is_none_or(|(f, _)| *f != name) => {
                R::check_filter(name, &value).map_err(ApiError::invalid)?;
                query.filters.push((name.to_owned(), value.into_owned()));
            }
            name => {
                let mut known = vec!["from", "to", "limit", "cursor", "format"];
                known.extend(R::FILTERS.iter().filter(|f| fixed.as_ref().is_none_or(|(fixed, _)| fixed != *f)));
                return Err(invalid(name, &format!("is not a parameter of this list; known: {}", known.join(", "))));
            }
        }
    }
    if let (Some(from), Some(to)) = (query.from, query.to)
        && to <= from
    {
        return Err(invalid("to", "must be after from"));
    }
    if let Some((field, value)) = fixed {
        query.filters.push((field.to_owned(), value));
    }
    let (page, export_limit) = list_sizes(format, limit)?;
    query.limit = page;
    Ok(ListRequest { query, format, export_limit })
}

/// One page of a list.
#[derive(Debug, Serialize)]
pub(crate) struct PageResponse<T> {
    pub items: Vec<T>,
    /// Pass as `cursor` to get the next page; null on the last page.
    pub next_cursor: Option<String>,
}

pub(crate) async fn list<R: StoredRecord>(
    state: &AppState,
    caller: &Caller,
    tenant: &str,
    fixed: Option<(&str, String)>,
    raw_query: Option<&str>,
) -> Result<Response, ApiError> {
    let tenant = caller.tenant_access(state, tenant, Permission::ObsRead).await?;
    let request = parse_list_query::<R>(raw_query, fixed)?;
    if request.format == ListFormat::Json {
        let page = R::page(&*state.store, &tenant, &request.query).await?;
        tracing::Span::current().record("records", page.items.len());
        let body = PageResponse { items: page.items, next_cursor: page.next_cursor.map(|c| c.encode()) };
        return Ok(Json(body).into_response());
    }
    Ok(export::<R>(state.store.clone(), tenant, request))
}

/// A response body made one store call at a time, in constant memory: `next(state)`
/// gives a chunk and the state for the next one (`None` after the last). A store error
/// is logged in the request's span and ends the body early, which the client sees as a
/// broken transfer; nothing is sent after it.
pub(crate) fn paged_body<S, F, Fut>(start: S, content_type: &'static str, next: F) -> Response
where
    S: Send + 'static,
    F: Fn(S) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = Result<(Vec<u8>, Option<S>), custos_store::StoreError>> + Send + 'static,
{
    let span = tracing::Span::current();
    let stream = futures::stream::unfold(Some(start), move |state| {
        let chunk = state.map(&next);
        let span = span.clone();
        async move {
            match chunk?.await {
                Ok((bytes, after)) => Some((Ok(Bytes::from(bytes)), after)),
                Err(error) => {
                    span.in_scope(|| {
                        tracing::error!(error = &error as &dyn std::error::Error, "export failed mid-stream")
                    });
                    Some((Err(std::io::Error::other(error.to_string())), None))
                }
            }
        }
    });
    let mut response = Body::from_stream(stream).into_response();
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}

/// Streams every selected record, one store page at a time (see [`paged_body`]).
pub(crate) fn export<R: StoredRecord>(
    store: std::sync::Arc<dyn Store>,
    tenant: TenantId,
    request: ListRequest,
) -> Response {
    let format = request.format;
    let content_type = match format {
        ListFormat::Csv => "text/csv; charset=utf-8",
        _ => "application/x-ndjson",
    };
    // (query, rows still wanted, whether this is the first chunk)
    let start = (request.query, request.export_limit.unwrap_or(usize::MAX), true);
    paged_body(start, content_type, move |(mut query, remaining, first): (RecordQuery, usize, bool)| {
        let (store, tenant) = (store.clone(), tenant.clone());
        async move {
            query.limit = query.limit.min(remaining);
            let page = R::page(&*store, &tenant, &query).await?;
            let remaining = remaining - page.items.len();
            let chunk = encode_chunk::<R>(&page.items, format, first);
            let after = if remaining > 0 {
                page.next_cursor.map(|cursor| (RecordQuery { after: Some(cursor), ..query }, remaining, false))
            } else {
                None
            };
            Ok((chunk, after))
        }
    })
}

fn encode_chunk<R: IngestRecord>(items: &[Stored<R>], format: ListFormat, with_header: bool) -> Vec<u8> {
    let mut out = Vec::with_capacity(items.len() * 256);
    match format {
        ListFormat::Csv => {
            let mut writer = csv::WriterBuilder::new().from_writer(&mut out);
            if with_header {
                let mut header: Vec<&str> = R::FIELDS.to_vec();
                header.push("received_at");
                let _ = writer.write_record(&header);
            }
            for item in items {
                let json = item.record.to_json();
                let mut row: Vec<String> = R::FIELDS.iter().map(|path| super::csv_cell(&json, path)).collect();
                row.push(item.received_at.to_string());
                let _ = writer.write_record(&row);
            }
            let _ = writer.flush();
        }
        _ => {
            for item in items {
                serde_json::to_writer(&mut out, item).expect("records serialize");
                out.push(b'\n');
            }
        }
    }
    out
}

/// Declares the two endpoints of a record kind (ingest and list) with their OpenAPI
/// descriptions; the bodies delegate to the generic handlers above.
macro_rules! record_endpoints {
    (
        $record:ty, $input:ty, $path:literal, $tag:literal, $post:ident, $get:ident,
        filters: [$($filter:literal),*]
    ) => {
        #[utoipa::path(
            post, path = $path, tag = $tag,
            summary = concat!("Report ", $tag),
            description = "One record as `application/json`, or many as `application/x-ndjson` (one per line). \
                A batch is atomic: one bad line rejects the whole body and nothing is written. Re-sending a record \
                with the same id and content is a duplicate (not stored twice); the same id with different content \
                is a 409.",
            params(("tenant" = String, Path, description = "Tenant id")),
            request_body(content(
                ($input = "application/json"),
                ($input = "application/x-ndjson"),
            )),
            responses(
                (status = 201, description = "The single record was stored", body = crate::routes::records::IngestResponse),
                (status = 200, description = "Stored (batch), or a duplicate re-send", body = crate::routes::records::IngestResponse),
                (status = 400, description = "Malformed JSON or NDJSON; `line` names the line", body = crate::error::ErrorResponse),
                (status = 401, body = crate::error::ErrorResponse),
                (status = 403, description = "The token lacks `ingest:write` for this tenant", body = crate::error::ErrorResponse),
                (status = 404, description = "Unknown tenant", body = crate::error::ErrorResponse),
                (status = 409, description = "Same id, different content", body = crate::error::ErrorResponse),
                (status = 413, description = "Body or batch over the limit", body = crate::error::ErrorResponse),
                (status = 415, body = crate::error::ErrorResponse),
                (status = 422, description = "A field breaks a rule; `field` and `line` name it", body = crate::error::ErrorResponse),
            ),
            security(("bearer" = ["ingest:write"]))
        )]
        pub(crate) async fn $post(
            axum::extract::State(state): axum::extract::State<crate::AppState>,
            caller: crate::auth::Caller,
            axum::extract::Path(tenant): axum::extract::Path<String>,
            headers: axum::http::HeaderMap,
            body: axum::body::Body,
        ) -> Result<axum::response::Response, crate::error::ApiError> {
            crate::routes::records::ingest::<$record>(&state, &caller, &tenant, None, &headers, body).await
        }

        #[utoipa::path(
            get, path = $path, tag = $tag,
            summary = concat!("List ", $tag, ", newest first"),
            description = "Keyset-paginated: pass `next_cursor` back as `cursor`. With `format=ndjson` or `csv` the \
                whole selection is streamed (up to `limit` rows when given).",
            params(
                ("tenant" = String, Path, description = "Tenant id"),
                crate::openapi::ListParams,
                $(($filter = Option<String>, Query, description = "Exact match")),*
            ),
            responses(
                (status = 200, description = "A page (`format=json`), or the export stream", content((RecordPage<StoredDoc<$record>> = "application/json"), (String = "application/x-ndjson"), (String = "text/csv"))),
                (status = 401, body = crate::error::ErrorResponse),
                (status = 403, description = "The token lacks `obs:read` for this tenant", body = crate::error::ErrorResponse),
                (status = 404, body = crate::error::ErrorResponse),
                (status = 422, description = "A bad parameter; `field` names it", body = crate::error::ErrorResponse),
            ),
            security(("bearer" = ["obs:read"]))
        )]
        pub(crate) async fn $get(
            axum::extract::State(state): axum::extract::State<crate::AppState>,
            caller: crate::auth::Caller,
            axum::extract::Path(tenant): axum::extract::Path<String>,
            axum::extract::RawQuery(raw): axum::extract::RawQuery,
        ) -> Result<axum::response::Response, crate::error::ApiError> {
            crate::routes::records::list::<$record>(&state, &caller, &tenant, None, raw.as_deref()).await
        }
    };
}

pub(crate) mod endpoints {
    use custos_model::records::{
        ConnectorSync, ConnectorSyncInput, Delivery, DeliveryInput, QueueSnapshot, QueueSnapshotInput, RuleRun,
        RuleRunInput,
    };

    use crate::openapi::{RecordPage, StoredDoc};

    record_endpoints!(RuleRun, RuleRunInput, "/v1/tenants/{tenant}/rule-runs", "rule runs", post_rule_runs, list_rule_runs,
        filters: ["rule_key", "integration_id", "status"]);
    record_endpoints!(ConnectorSync, ConnectorSyncInput, "/v1/tenants/{tenant}/connector-syncs", "connector syncs",
        post_connector_syncs, list_connector_syncs, filters: ["integration_id", "status", "triggered_by"]);
    record_endpoints!(Delivery, DeliveryInput, "/v1/tenants/{tenant}/deliveries", "deliveries", post_deliveries,
        list_deliveries, filters: ["destination_id", "status"]);

    /// Snapshots are reported under their component; they are listed there or tenant-wide.
    #[utoipa::path(
        post, path = "/v1/tenants/{tenant}/components/{component}/snapshots", tag = "queue snapshots",
        summary = "Report a queue's state",
        description = "Depth by status, oldest item age and cumulative totals of an ingestion queue or a destination's \
            delivery queue. The component must be registered. JSON or NDJSON, atomic, idempotent by `id`.",
        params(("tenant" = String, Path), ("component" = String, Path, description = "The queue's component id")),
        request_body(content(
            (QueueSnapshotInput = "application/json"),
            (QueueSnapshotInput = "application/x-ndjson"),
        )),
        responses(
            (status = 201, body = crate::routes::records::IngestResponse),
            (status = 200, body = crate::routes::records::IngestResponse),
            (status = 400, body = crate::error::ErrorResponse),
            (status = 401, body = crate::error::ErrorResponse),
            (status = 403, body = crate::error::ErrorResponse),
            (status = 404, description = "Unknown tenant or component", body = crate::error::ErrorResponse),
            (status = 409, body = crate::error::ErrorResponse),
            (status = 413, body = crate::error::ErrorResponse),
            (status = 415, body = crate::error::ErrorResponse),
            (status = 422, body = crate::error::ErrorResponse),
        ),
        security(("bearer" = ["ingest:write"]))
    )]
    pub(crate) async fn post_snapshots(
        axum::extract::State(state): axum::extract::State<crate::AppState>,
        caller: crate::auth::Caller,
        axum::extract::Path((tenant, component)): axum::extract::Path<(String, String)>,
        headers: axum::http::HeaderMap,
        body: axum::body::Body,
    ) -> Result<axum::response::Response, crate::error::ApiError> {
        custos_model::ids::component_id("component", &component).map_err(crate::error::ApiError::invalid)?;
        super::ingest::<QueueSnapshot>(&state, &caller, &tenant, Some(component), &headers, body).await
    }

    #[utoipa::path(
        get, path = "/v1/tenants/{tenant}/components/{component}/snapshots", tag = "queue snapshots",
        summary = "List a queue's snapshots, newest first",
        params(("tenant" = String, Path), ("component" = String, Path), crate::openapi::ListParams),
        responses(
            (status = 200, content((RecordPage<StoredDoc<QueueSnapshot>> = "application/json"), (String = "application/x-ndjson"), (String = "text/csv"))),
            (status = 401, body = crate::error::ErrorResponse),
            (status = 403, body = crate::error::ErrorResponse),
            (status = 404, body = crate::error::ErrorResponse),
            (status = 422, body = crate::error::ErrorResponse),
        ),
        security(("bearer" = ["obs:read"]))
    )]
    pub(crate) async fn list_component_snapshots(
        axum::extract::State(state): axum::extract::State<crate::AppState>,
        caller: crate::auth::Caller,
        axum::extract::Path((tenant, component)): axum::extract::Path<(String, String)>,
        axum::extract::RawQuery(raw): axum::extract::RawQuery,
    ) -> Result<axum::response::Response, crate::error::ApiError> {
        super::list::<QueueSnapshot>(&state, &caller, &tenant, Some(("component_id", component)), raw.as_deref()).await
    }

    #[utoipa::path(
        get, path = "/v1/tenants/{tenant}/snapshots", tag = "queue snapshots",
        summary = "List every queue's snapshots, newest first",
        params(
            ("tenant" = String, Path),
            crate::openapi::ListParams,
            ("component_id" = Option<String>, Query, description = "Exact match"),
        ),
        responses(
            (status = 200, content((RecordPage<StoredDoc<QueueSnapshot>> = "application/json"), (String = "application/x-ndjson"), (String = "text/csv"))),
            (status = 401, body = crate::error::ErrorResponse),
            (status = 403, body = crate::error::ErrorResponse),
            (status = 404, body = crate::error::ErrorResponse),
            (status = 422, body = crate::error::ErrorResponse),
        ),
        security(("bearer" = ["obs:read"]))
    )]
    pub(crate) async fn list_snapshots(
        axum::extract::State(state): axum::extract::State<crate::AppState>,
        caller: crate::auth::Caller,
        axum::extract::Path(tenant): axum::extract::Path<String>,
        axum::extract::RawQuery(raw): axum::extract::RawQuery,
    ) -> Result<axum::response::Response, crate::error::ApiError> {
        super::list::<QueueSnapshot>(&state, &caller, &tenant, None, raw.as_deref()).await
    }
}

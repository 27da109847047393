//! `/admin/timeline`: a tenant's timeline, filtered by kind (exact, or a pattern such
//! as `platform.policy.*` or `*.failed`), actor, resource, project, trace and time,
//! newest first, with a page per event showing its inclusion proof, checked here
//! against the latest signed checkpoint. Filters are plain GET forms and links, so
//! "all policy changes", "every failure that touched connector X" and "everything in
//! this trace" are URLs that can be shared. Needs `timeline:read` (or `admin`).

use axum::extract::{Path, RawQuery, State};
use axum::response::Response;
use custos_ledger::merkle::{leaf_hash, verify_inclusion};
use custos_model::console::TimelineFilter;
use custos_model::ledger::LogName;
use custos_model::{Permission, Timestamp};

use super::{ConsoleUser, error_page, one_tenant, pick_tenant};
use crate::AppState;
use crate::error::{ApiError, ErrorCode};
use crate::routes::logs::parse_list;

/// Events per page of the list.
pub(crate) const PAGE_ROWS: usize = 50;

fn parse_filter(raw: Option<&str>) -> Result<TimelineFilter, ApiError> {
    TimelineFilter::parse(raw).map_err(|e| ApiError::new(ErrorCode::BadRequest, e.to_string()).with_field(e.field))
}

/// An event as the page shows it: its stored entry and its fields.
pub(crate) struct Row {
    pub entry: custos_store::LogEntry,
    pub fields: serde_json::Value,
}

/// `GET /admin/timeline`.
pub(crate) async fn page(State(state): State<AppState>, user: ConsoleUser, RawQuery(raw): RawQuery) -> Response {
    let result: Result<Response, ApiError> = async {
        let filter = parse_filter(raw.as_deref())?;
        let tenant = match pick_tenant(&state, &user, filter.tenant.as_deref(), Permission::TimelineRead).await? {
            Ok(tenant) => tenant,
            Err(choices) => {
                return Ok(crate::pages::page_response(crate::pages::console::pick_tenant(
                    "/admin/timeline",
                    &choices,
                    &user,
                )));
            }
        };
        let mut request = parse_list(LogName::Timeline, Some(&filter.list_query(Timestamp::now(), true)))?;
        request.query.limit = PAGE_ROWS;
        let page = state.store.log_page(&tenant, LogName::Timeline, &request.query).await?;
        tracing::Span::current().record("records", page.items.len());
        let next = page.next_cursor.map(|c| c.encode());
        let rows: Vec<Row> = page
            .items
            .into_iter()
            .map(|entry| Row { fields: serde_json::from_str(&entry.record).unwrap_or_default(), entry })
            .collect();
        Ok(crate::pages::page_response(crate::pages::console::timeline(
            &tenant,
            &filter,
            &rows,
            next.as_deref(),
            state.config.trace_url_template.as_deref(),
            &user,
        )))
    }
    .await;
    result.unwrap_or_else(error_page)
}

/// What the event page shows of its proof.
pub(crate) struct ProofView {
    pub leaf_hash: String,
    pub checkpoint: custos_store::StoredCheckpoint,
    pub path: Vec<String>,
    /// Whether the inclusion proof leads from the record's bytes to the checkpoint's root.
    pub verified: bool,
}

/// `GET /admin/timeline/{event_id}`: one event, whole, with its proof.
pub(crate) async fn event(
    State(state): State<AppState>,
    user: ConsoleUser,
    Path(event_id): Path<String>,
    RawQuery(raw): RawQuery,
) -> Response {
    let result: Result<Response, ApiError> = async {
        use base64::Engine as _;
        let filter = parse_filter(raw.as_deref())?;
        let tenant = one_tenant(&state, &user, filter.tenant.as_deref(), Permission::TimelineRead).await?;
        let entry = state.store.log_entry(&tenant, LogName::Timeline, &event_id).await?.ok_or_else(|| {
            ApiError::not_found(format!(
                "no timeline event {event_id:?} in tenant {} (or retention removed it)",
                tenant.as_str()
            ))
        })?;
        let checkpoint =
            crate::ledger::checkpoint_covering(&state, &tenant, LogName::Timeline, entry.leaf_index).await?;
        let path = crate::ledger::inclusion_proof(
            &*state.store,
            &tenant,
            LogName::Timeline,
            entry.leaf_index,
            checkpoint.size,
        )
        .await?;
        let leaf = leaf_hash(entry.record.as_bytes());
        let verified = verify_inclusion(entry.leaf_index, checkpoint.size, &leaf, &path, &checkpoint.root).is_ok();
        let b64 = base64::engine::general_purpose::STANDARD;
        let proof = ProofView {
            leaf_hash: b64.encode(leaf),
            path: path.iter().map(|h| b64.encode(h)).collect(),
            checkpoint,
            verified,
        };
        let row = Row { fields: serde_json::from_str(&entry.record).unwrap_or_default(), entry };
        Ok(crate::pages::page_response(crate::pages::console::timeline_event(
            &tenant,
            &row,
            &proof,
            &filter,
            state.config.trace_url_template.as_deref(),
            &user,
        )))
    }
    .await;
    result.unwrap_or_else(error_page)
}

//! Incidents on the platform-wide status page: opened by an operator (`admin` on every
//! tenant), updated as the work goes on (investigating, identified, monitoring,
//! resolved), each update kept. The detector opens and resolves its own through the
//! same store operations.

use axum::Json;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use custos_model::status::{
    IncidentInput, IncidentStatus, IncidentUpdateInput, platform_component_ids, resolved_listed_since,
};
use custos_model::{Permission, Timestamp};
use custos_store::{IncidentRecord, IncidentSource, IncidentUpdate, NewIncidentUpdate, StatusScope};

use crate::AppState;
use crate::auth::Caller;
use crate::body;
use crate::error::{ApiError, ErrorResponse};

/// Largest incident or update body, in bytes.
const MAX_INCIDENT_BYTES: usize = 64 * 1024;

#[utoipa::path(
    post, path = "/v1/incidents", tag = "status",
    summary = "Open an incident on the public status page",
    description = "Components are the platform's (`api`, `ingestion`, `delivery`, `workers`, `console`). \
        The message is the first update.",
    request_body(content = IncidentInput, content_type = "application/json"),
    responses(
        (status = 201, body = IncidentRecord),
        (status = 400, body = ErrorResponse),
        (status = 401, body = ErrorResponse),
        (status = 403, description = "Requires `admin#tenant/*`", body = ErrorResponse),
        (status = 413, body = ErrorResponse),
        (status = 415, body = ErrorResponse),
        (status = 422, body = ErrorResponse),
    ),
    security(("bearer" = ["admin"]))
)]
pub(crate) async fn open_incident(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    request_body: Body,
) -> Result<Response, ApiError> {
    caller.platform_access(&state, Permission::Admin)?;
    let input: IncidentInput = body::read_json(&headers, request_body, MAX_INCIDENT_BYTES).await?;
    input.validate(&platform_component_ids()).map_err(ApiError::invalid)?;
    let incident = new_incident(input, IncidentSource::Manual, None, Timestamp::now());
    state.store.create_incident(&StatusScope::Platform, &incident).await?;
    super::status_page::forget_platform_page(&state).await;
    tracing::info!(incident_id = incident.id.as_str(), impact = incident.impact.as_str(), "incident opened");
    Ok((StatusCode::CREATED, Json(incident)).into_response())
}

/// A new incident from validated input, with its first update.
pub(crate) fn new_incident(
    input: IncidentInput,
    source: IncidentSource,
    auto_key: Option<String>,
    at: Timestamp,
) -> IncidentRecord {
    let status = input.status.unwrap_or(IncidentStatus::Investigating);
    let impact = input.impact.unwrap_or(custos_model::status::Impact::Minor);
    IncidentRecord {
        id: format!("inc_{}", uuid::Uuid::new_v4().simple()),
        title: input.title,
        status,
        impact,
        components: input.components,
        source,
        auto_key,
        created_at: at,
        updated_at: at,
        resolved_at: (status == IncidentStatus::Resolved).then_some(at),
        updates: vec![IncidentUpdate { seq: 1, at, status, impact, message: input.message }],
    }
}

#[utoipa::path(
    post, path = "/v1/incidents/{incident}/updates", tag = "status",
    summary = "Post an update to an incident",
    description = "Sets the incident's status (and impact, when given) and keeps the message in its history. \
        `resolved` resolves it; a later update with another status reopens it.",
    params(("incident" = String, Path)),
    request_body(content = IncidentUpdateInput, content_type = "application/json"),
    responses(
        (status = 200, body = IncidentRecord),
        (status = 400, body = ErrorResponse),
        (status = 401, body = ErrorResponse),
        (status = 403, description = "Requires `admin#tenant/*`", body = ErrorResponse),
        (status = 404, body = ErrorResponse),
        (status = 422, body = ErrorResponse),
    ),
    security(("bearer" = ["admin"]))
)]
pub(crate) async fn update_incident(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    headers: HeaderMap,
    request_body: Body,
) -> Result<Json<IncidentRecord>, ApiError> {
    caller.platform_access(&state, Permission::Admin)?;
    let input: IncidentUpdateInput = body::read_json(&headers, request_body, MAX_INCIDENT_BYTES).await?;
    input.validate().map_err(ApiError::invalid)?;
    let scope = StatusScope::Platform;
    let current = state.store.incident(&scope, &id).await?.ok_or_else(|| ApiError::not_found("incident not found"))?;
    let update = NewIncidentUpdate {
        status: input.status,
        impact: input.impact.unwrap_or(current.impact),
        message: input.message,
        at: Timestamp::now(),
    };
    let incident = state.store.update_incident(&scope, &id, &update).await?;
    super::status_page::forget_platform_page(&state).await;
    tracing::info!(incident_id = id.as_str(), status = incident.status.as_str(), "incident updated");
    Ok(Json(incident))
}

#[utoipa::path(
    get, path = "/v1/incidents", tag = "status",
    summary = "Open incidents and those resolved in the last 90 days",
    responses(
        (status = 200, body = Vec<IncidentRecord>),
        (status = 401, body = ErrorResponse),
        (status = 403, description = "Requires `obs:read#tenant/*`", body = ErrorResponse),
    ),
    security(("bearer" = ["obs:read"]))
)]
pub(crate) async fn list_incidents(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<Vec<IncidentRecord>>, ApiError> {
    caller.platform_access(&state, Permission::ObsRead)?;
    let since = resolved_listed_since(Timestamp::now());
    Ok(Json(state.store.incidents(&StatusScope::Platform, since).await?))
}

#[utoipa::path(
    get, path = "/v1/incidents/{incident}", tag = "status",
    summary = "One incident with its updates",
    params(("incident" = String, Path)),
    responses(
        (status = 200, body = IncidentRecord),
        (status = 401, body = ErrorResponse),
        (status = 403, description = "Requires `obs:read#tenant/*`", body = ErrorResponse),
        (status = 404, body = ErrorResponse),
    ),
    security(("bearer" = ["obs:read"]))
)]
pub(crate) async fn get_incident(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<IncidentRecord>, ApiError> {
    caller.platform_access(&state, Permission::ObsRead)?;
    let incident = state
        .store
        .incident(&StatusScope::Platform, &id)
        .await?
        .ok_or_else(|| ApiError::not_found("incident not found"))?;
    Ok(Json(incident))
}

#[utoipa::path(
    get, path = "/v1/tenants/{tenant}/incidents", tag = "status",
    summary = "A tenant's incidents: open, and resolved in the last 90 days",
    description = "The detector opens these from the tenant's rule-run and connector-sync failure rates and \
        from connector freshness, and resolves them once the signal has been healthy for a while.",
    params(("tenant" = String, Path)),
    responses(
        (status = 200, body = Vec<IncidentRecord>),
        (status = 401, body = ErrorResponse),
        (status = 403, description = "Requires `obs:read`", body = ErrorResponse),
        (status = 404, body = ErrorResponse),
    ),
    security(("bearer" = ["obs:read"]))
)]
pub(crate) async fn list_tenant_incidents(
    State(state): State<AppState>,
    caller: Caller,
    Path(tenant): Path<String>,
) -> Result<Json<Vec<IncidentRecord>>, ApiError> {
    let tenant = caller.tenant_access(&state, &tenant, Permission::ObsRead).await?;
    let since = resolved_listed_since(Timestamp::now());
    Ok(Json(state.store.incidents(&StatusScope::Tenant(tenant), since).await?))
}

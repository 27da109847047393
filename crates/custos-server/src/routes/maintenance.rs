//! Maintenance windows, one-off and recurring: while one covers a component, the page
//! shows it `under_maintenance` and the incident detector stays quiet about it.
//! Platform windows (`/v1/maintenance`) cover the platform's components and need the
//! all-tenants admin scope to write; a tenant's (`/v1/tenants/{t}/maintenance`) cover
//! its own components (and `rules`, its rule runs) and need `admin` on the tenant.

use axum::Json;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use custos_model::status::{MaintenanceInput, platform_component_ids};
use custos_model::{Permission, TenantId, Timestamp};
use custos_store::{MaintenanceRecord, StatusScope};
use serde::Serialize;

use crate::AppState;
use crate::auth::Caller;
use crate::body;
use crate::error::{ApiError, ErrorResponse};

/// Largest window body, in bytes.
const MAX_WINDOW_BYTES: usize = 16 * 1024;

/// A stored window: what was posted (defaults filled in), its id and creation time.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct MaintenanceDoc {
    pub id: String,
    #[serde(flatten)]
    pub window: MaintenanceInput,
    pub created_at: Timestamp,
}

impl From<&MaintenanceRecord> for MaintenanceDoc {
    fn from(record: &MaintenanceRecord) -> Self {
        MaintenanceDoc { id: record.id.clone(), window: record.window.input.clone(), created_at: record.created_at }
    }
}

async fn create(
    state: &AppState,
    scope: StatusScope,
    known: &[&str],
    headers: &HeaderMap,
    request_body: Body,
) -> Result<Response, ApiError> {
    let input: MaintenanceInput = body::read_json(headers, request_body, MAX_WINDOW_BYTES).await?;
    let window = input.validate(known).map_err(ApiError::invalid)?;
    let record =
        MaintenanceRecord { id: format!("mw_{}", uuid::Uuid::new_v4().simple()), window, created_at: Timestamp::now() };
    state.store.create_maintenance(&scope, &record).await?;
    super::status_page::forget_platform_page(state).await;
    tracing::info!(
        maintenance_id = record.id.as_str(),
        title = record.window.input.title.as_str(),
        "maintenance window created"
    );
    Ok((StatusCode::CREATED, Json(MaintenanceDoc::from(&record))).into_response())
}

async fn list(state: &AppState, scope: StatusScope) -> Result<Json<Vec<MaintenanceDoc>>, ApiError> {
    let windows = state.store.maintenance_windows(&scope).await?;
    Ok(Json(windows.iter().map(MaintenanceDoc::from).collect()))
}

async fn cancel(state: &AppState, scope: StatusScope, id: &str) -> Result<StatusCode, ApiError> {
    state.store.cancel_maintenance(&scope, id, Timestamp::now()).await?;
    super::status_page::forget_platform_page(state).await;
    tracing::info!(maintenance_id = id, "maintenance window cancelled");
    Ok(StatusCode::NO_CONTENT)
}

/// What a tenant's windows may name: its components, and `rules`.
async fn tenant_components(state: &AppState, tenant: &TenantId) -> Result<Vec<String>, ApiError> {
    let mut known: Vec<String> = state.store.components(tenant).await?.into_iter().map(|c| c.id).collect();
    known.push("rules".into());
    Ok(known)
}

#[utoipa::path(
    post, path = "/v1/maintenance", tag = "status",
    summary = "Schedule maintenance of platform components",
    description = "One-off (`starts_at`, `ends_at`) or recurring (`cron`, `timezone`, `duration_minutes`); \
        an empty `components` covers them all. At most 7 days per occurrence.",
    request_body(content = MaintenanceInput, content_type = "application/json"),
    responses(
        (status = 201, body = MaintenanceDoc),
        (status = 400, body = ErrorResponse),
        (status = 401, body = ErrorResponse),
        (status = 403, description = "Requires `admin#tenant/*`", body = ErrorResponse),
        (status = 413, body = ErrorResponse),
        (status = 415, body = ErrorResponse),
        (status = 422, body = ErrorResponse),
    ),
    security(("bearer" = ["admin"]))
)]
pub(crate) async fn create_platform(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    request_body: Body,
) -> Result<Response, ApiError> {
    caller.platform_access(&state, Permission::Admin)?;
    create(&state, StatusScope::Platform, &platform_component_ids(), &headers, request_body).await
}

#[utoipa::path(
    get, path = "/v1/maintenance", tag = "status",
    summary = "Platform maintenance windows not cancelled, oldest first",
    responses(
        (status = 200, body = Vec<MaintenanceDoc>),
        (status = 401, body = ErrorResponse),
        (status = 403, description = "Requires `obs:read#tenant/*`", body = ErrorResponse),
    ),
    security(("bearer" = ["obs:read"]))
)]
pub(crate) async fn list_platform(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<Vec<MaintenanceDoc>>, ApiError> {
    caller.platform_access(&state, Permission::ObsRead)?;
    list(&state, StatusScope::Platform).await
}

#[utoipa::path(
    delete, path = "/v1/maintenance/{window}", tag = "status",
    summary = "Cancel a platform maintenance window",
    description = "The window is kept for the record and never shown or applied again.",
    params(("window" = String, Path)),
    responses(
        (status = 204),
        (status = 401, body = ErrorResponse),
        (status = 403, description = "Requires `admin#tenant/*`", body = ErrorResponse),
        (status = 404, body = ErrorResponse),
    ),
    security(("bearer" = ["admin"]))
)]
pub(crate) async fn cancel_platform(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    caller.platform_access(&state, Permission::Admin)?;
    cancel(&state, StatusScope::Platform, &id).await
}

#[utoipa::path(
    post, path = "/v1/tenants/{tenant}/maintenance", tag = "status",
    summary = "Schedule maintenance of a tenant's components",
    description = "Components are the tenant's registered ids, and `rules` for its rule runs; an empty list \
        covers them all.",
    params(("tenant" = String, Path)),
    request_body(content = MaintenanceInput, content_type = "application/json"),
    responses(
        (status = 201, body = MaintenanceDoc),
        (status = 400, body = ErrorResponse),
        (status = 401, body = ErrorResponse),
        (status = 403, description = "Requires `admin`", body = ErrorResponse),
        (status = 404, body = ErrorResponse),
        (status = 413, body = ErrorResponse),
        (status = 415, body = ErrorResponse),
        (status = 422, body = ErrorResponse),
    ),
    security(("bearer" = ["admin"]))
)]
pub(crate) async fn create_tenant(
    State(state): State<AppState>,
    caller: Caller,
    Path(tenant): Path<String>,
    headers: HeaderMap,
    request_body: Body,
) -> Result<Response, ApiError> {
    let tenant = caller.tenant_access(&state, &tenant, Permission::Admin).await?;
    let known = tenant_components(&state, &tenant).await?;
    let known: Vec<&str> = known.iter().map(String::as_str).collect();
    create(&state, StatusScope::Tenant(tenant), &known, &headers, request_body).await
}

#[utoipa::path(
    get, path = "/v1/tenants/{tenant}/maintenance", tag = "status",
    summary = "A tenant's maintenance windows not cancelled, oldest first",
    params(("tenant" = String, Path)),
    responses(
        (status = 200, body = Vec<MaintenanceDoc>),
        (status = 401, body = ErrorResponse),
        (status = 403, description = "Requires `obs:read`", body = ErrorResponse),
        (status = 404, body = ErrorResponse),
    ),
    security(("bearer" = ["obs:read"]))
)]
pub(crate) async fn list_tenant(
    State(state): State<AppState>,
    caller: Caller,
    Path(tenant): Path<String>,
) -> Result<Json<Vec<MaintenanceDoc>>, ApiError> {
    let tenant = caller.tenant_access(&state, &tenant, Permission::ObsRead).await?;
    list(&state, StatusScope::Tenant(tenant)).await
}

#[utoipa::path(
    delete, path = "/v1/tenants/{tenant}/maintenance/{window}", tag = "status",
    summary = "Cancel a tenant's maintenance window",
    params(("tenant" = String, Path), ("window" = String, Path)),
    responses(
        (status = 204),
        (status = 401, body = ErrorResponse),
        (status = 403, description = "Requires `admin`", body = ErrorResponse),
        (status = 404, body = ErrorResponse),
    ),
    security(("bearer" = ["admin"]))
)]
pub(crate) async fn cancel_tenant(
    State(state): State<AppState>,
    caller: Caller,
    Path((tenant, id)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    let tenant = caller.tenant_access(&state, &tenant, Permission::Admin).await?;
    cancel(&state, StatusScope::Tenant(tenant), &id).await
}

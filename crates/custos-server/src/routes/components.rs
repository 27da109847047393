//! Components (connectors, destinations, queues, services, jobs) and the freshness
//! thresholds that judge connectors.

use axum::Json;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use custos_model::component::{ThresholdSource, validate_provider};
use custos_model::{
    Component, ComponentInput, ComponentKind, FieldError, FreshnessPolicy, FreshnessState, FreshnessThresholds,
    Permission, TenantId, Timestamp,
};
use custos_store::PutOutcome;
use serde::Serialize;

use crate::AppState;
use crate::auth::Caller;
use crate::body;
use crate::error::{ApiError, ErrorResponse};

/// Largest component or policy body, in bytes.
const MAX_DOCUMENT_BYTES: usize = 64 * 1024;

/// The thresholds that apply to a connector, and where they come from.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct EffectiveFreshness {
    pub green_under_seconds: i64,
    pub yellow_under_seconds: i64,
    pub source: ThresholdSource,
}

/// A component as registered, with its derived freshness (connectors only).
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct ComponentView {
    #[serde(flatten)]
    pub component: Component,
    /// Connectors: the thresholds in force (component, else provider policy, else default).
    pub effective_freshness: Option<EffectiveFreshness>,
    /// Connectors: when the latest successful sync finished.
    pub last_successful_sync_at: Option<Timestamp>,
    /// Connectors: green, yellow or red by the effective thresholds; unknown before any success.
    pub freshness_state: Option<FreshnessState>,
}

async fn views(
    state: &AppState,
    tenant: &TenantId,
    components: Vec<Component>,
) -> Result<Vec<ComponentView>, ApiError> {
    let connectors: Vec<String> =
        components.iter().filter(|c| c.kind == ComponentKind::Connector).map(|c| c.id.clone()).collect();
    let (policies, last_syncs) = if connectors.is_empty() {
        (Vec::new(), Vec::new())
    } else {
        (state.store.freshness_policies(tenant).await?, state.store.last_successful_syncs(tenant, &connectors).await?)
    };
    let now = Timestamp::now();
    Ok(components
        .into_iter()
        .map(|component| {
            if component.kind != ComponentKind::Connector {
                return ComponentView {
                    component,
                    effective_freshness: None,
                    last_successful_sync_at: None,
                    freshness_state: None,
                };
            }
            let policy = component
                .provider
                .as_deref()
                .and_then(|p| policies.iter().find(|policy| policy.provider == p))
                .map(|policy| &policy.thresholds);
            let (thresholds, source) = component.effective_thresholds(policy);
            let last = last_syncs.iter().find(|(id, _)| *id == component.id).map(|(_, at)| *at);
            ComponentView {
                effective_freshness: Some(EffectiveFreshness {
                    green_under_seconds: thresholds.green_under_seconds,
                    yellow_under_seconds: thresholds.yellow_under_seconds,
                    source,
                }),
                last_successful_sync_at: last,
                freshness_state: Some(thresholds.state(now, last)),
                component,
            }
        })
        .collect())
}

#[utoipa::path(
    put, path = "/v1/tenants/{tenant}/components/{component}", tag = "components",
    summary = "Register or update a component",
    description = "Idempotent: the same definition again changes nothing (200, `updated_at` kept).",
    params(("tenant" = String, Path), ("component" = String, Path, description = "1 to 128 of A-Z a-z 0-9 . _ : -")),
    request_body(content = ComponentInput, content_type = "application/json"),
    responses(
        (status = 201, description = "Created", body = ComponentView),
        (status = 200, description = "Updated or unchanged", body = ComponentView),
        (status = 400, body = ErrorResponse),
        (status = 401, body = ErrorResponse),
        (status = 403, body = ErrorResponse),
        (status = 404, body = ErrorResponse),
        (status = 413, body = ErrorResponse),
        (status = 415, body = ErrorResponse),
        (status = 422, body = ErrorResponse),
    ),
    security(("bearer" = ["ingest:write"]))
)]
pub(crate) async fn put_component(
    State(state): State<AppState>,
    caller: Caller,
    Path((tenant, id)): Path<(String, String)>,
    headers: HeaderMap,
    request_body: Body,
) -> Result<Response, ApiError> {
    let tenant = caller.tenant_access(&state, &tenant, Permission::IngestWrite).await?;
    let input: ComponentInput = body::read_json(&headers, request_body, MAX_DOCUMENT_BYTES).await?;
    let component = input.validate(&id, Timestamp::now()).map_err(ApiError::invalid)?;
    // Reporting may register a component; how it is judged (its kind, its provider's
    // policy, a job's schedule, a connector's freshness thresholds) is the tenant
    // admin's to change.
    if !caller.has(Permission::Admin, &tenant)
        && let Some(existing) = state.store.component(&tenant, &id).await?
        && (existing.schedule != component.schedule
            || existing.freshness != component.freshness
            || existing.kind != component.kind
            || existing.provider != component.provider)
    {
        state.metrics.count_auth_failure("missing_scope");
        let missing = custos_model::Scope::new(Permission::Admin, custos_model::TenantSelector::One(tenant));
        return Err(ApiError::new(crate::ErrorCode::Forbidden, format!("missing scope {missing}")));
    }
    let (outcome, stored) = state.store.put_component(&tenant, &component).await?;
    let status = if outcome == PutOutcome::Created { StatusCode::CREATED } else { StatusCode::OK };
    let view = views(&state, &tenant, vec![stored]).await?.remove(0);
    Ok((status, Json(view)).into_response())
}

#[utoipa::path(
    get, path = "/v1/tenants/{tenant}/components", tag = "components",
    summary = "List components with connector freshness",
    params(("tenant" = String, Path)),
    responses(
        (status = 200, body = Vec<ComponentView>),
        (status = 401, body = ErrorResponse),
        (status = 403, body = ErrorResponse),
        (status = 404, body = ErrorResponse),
    ),
    security(("bearer" = ["obs:read"]))
)]
pub(crate) async fn list_components(
    State(state): State<AppState>,
    caller: Caller,
    Path(tenant): Path<String>,
) -> Result<Json<Vec<ComponentView>>, ApiError> {
    let tenant = caller.tenant_access(&state, &tenant, Permission::ObsRead).await?;
    let components = state.store.components(&tenant).await?;
    Ok(Json(views(&state, &tenant, components).await?))
}

#[utoipa::path(
    get, path = "/v1/tenants/{tenant}/components/{component}", tag = "components",
    summary = "One component",
    params(("tenant" = String, Path), ("component" = String, Path)),
    responses(
        (status = 200, body = ComponentView),
        (status = 401, body = ErrorResponse),
        (status = 403, body = ErrorResponse),
        (status = 404, body = ErrorResponse),
    ),
    security(("bearer" = ["obs:read"]))
)]
pub(crate) async fn get_component(
    State(state): State<AppState>,
    caller: Caller,
    Path((tenant, id)): Path<(String, String)>,
) -> Result<Json<ComponentView>, ApiError> {
    let tenant = caller.tenant_access(&state, &tenant, Permission::ObsRead).await?;
    let component = state
        .store
        .component(&tenant, &id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("component {id:?} not found")))?;
    Ok(Json(views(&state, &tenant, vec![component]).await?.remove(0)))
}

#[utoipa::path(
    get, path = "/v1/tenants/{tenant}/freshness-policies", tag = "components",
    summary = "Per-provider freshness thresholds",
    params(("tenant" = String, Path)),
    responses(
        (status = 200, body = Vec<FreshnessPolicy>),
        (status = 401, body = ErrorResponse),
        (status = 403, body = ErrorResponse),
        (status = 404, body = ErrorResponse),
    ),
    security(("bearer" = ["obs:read"]))
)]
pub(crate) async fn list_freshness_policies(
    State(state): State<AppState>,
    caller: Caller,
    Path(tenant): Path<String>,
) -> Result<Json<Vec<FreshnessPolicy>>, ApiError> {
    let tenant = caller.tenant_access(&state, &tenant, Permission::ObsRead).await?;
    Ok(Json(state.store.freshness_policies(&tenant).await?))
}

#[utoipa::path(
    put, path = "/v1/tenants/{tenant}/freshness-policies/{provider}", tag = "components",
    summary = "Set the freshness thresholds of every connector of a provider",
    description = "Applies to the tenant's connectors of this provider that set no thresholds of their own.",
    params(("tenant" = String, Path), ("provider" = String, Path, description = "e.g. okta")),
    request_body(content = FreshnessThresholds, content_type = "application/json"),
    responses(
        (status = 200, body = FreshnessPolicy),
        (status = 401, body = ErrorResponse),
        (status = 403, description = "Requires `admin`", body = ErrorResponse),
        (status = 404, body = ErrorResponse),
        (status = 422, body = ErrorResponse),
    ),
    security(("bearer" = ["admin"]))
)]
pub(crate) async fn put_freshness_policy(
    State(state): State<AppState>,
    caller: Caller,
    Path((tenant, provider)): Path<(String, String)>,
    headers: HeaderMap,
    request_body: Body,
) -> Result<Json<FreshnessPolicy>, ApiError> {
    let tenant = caller.tenant_access(&state, &tenant, Permission::Admin).await?;
    validate_provider("provider", &provider).map_err(ApiError::invalid)?;
    let thresholds: FreshnessThresholds = body::read_json(&headers, request_body, MAX_DOCUMENT_BYTES).await?;
    let thresholds = thresholds
        .validate("")
        .map_err(|e| ApiError::invalid(FieldError::new(e.field.trim_start_matches('.'), e.message)))?;
    let policy = FreshnessPolicy { provider, thresholds, updated_at: Timestamp::now() };
    state.store.put_freshness_policy(&tenant, &policy).await?;
    Ok(Json(policy))
}

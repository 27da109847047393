//! The status page: `/status.json` (the shape `docs/status-page.md` documents as a
//! schema), `/status` (the same, as HTML) and `/status/badge.svg`.
//!
//! The platform view is public unless `--status-require-token`; it names no tenant.
//! `?tenant=acme` adds that tenant's connectors and destinations, grouped, with its
//! incidents and windows, and needs a token that reads the tenant (`obs:read`).
//! Component states are those the status evaluator last recorded, with maintenance
//! windows and open incidents applied live, so an incident shows the moment it is
//! posted.

use std::collections::{BTreeMap, HashMap};

use axum::Json;
use axum::extract::{Query, State};
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use custos_model::component::ComponentKind;
use custos_model::status::{
    ComponentStatus, DayBar, Indicator, PLATFORM_COMPONENTS, UPTIME_DAYS, daily_bars, group_intervals, group_status,
    overall_uptime, raised_intervals, resolved_listed_since,
};
use custos_model::{Permission, TenantId, Timestamp};
use custos_store::{IncidentRecord, IncidentSource, MaintenanceRecord, StatusScope};
use serde::{Deserialize, Serialize};

use crate::AppState;
use crate::auth::Caller;
use crate::error::{ApiError, ErrorCode, ErrorResponse};
use crate::status::overlay;

const DAY_US: i64 = 86_400 * 1_000_000;
/// Scheduled maintenance shows this far ahead.
const UPCOMING_DAYS: i64 = 14;

/// The page's identity: what is serving it, and what it has turned on.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub(crate) struct PageInfo {
    pub title: String,
    /// When this answer was computed.
    pub updated_at: Timestamp,
    pub version: String,
    pub commit: String,
    pub features: BTreeMap<String, bool>,
}

/// The one-line summary.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub(crate) struct Summary {
    pub indicator: Indicator,
    pub description: String,
}

impl Summary {
    fn of(statuses: impl IntoIterator<Item = ComponentStatus>) -> Summary {
        let indicator = Indicator::overall(statuses);
        Summary { indicator, description: indicator.description().to_owned() }
    }
}

/// A component and its recent history.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub(crate) struct ComponentView {
    pub id: String,
    pub name: String,
    pub status: ComponentStatus,
    /// When the evaluator last recorded a change of state; null before its first pass.
    pub status_since: Option<Timestamp>,
    /// Uptime over the last 90 days (see `uptime` on a day); null without data.
    pub uptime_90d: Option<f64>,
    /// The last 90 days, oldest first. Absent on the members of a group (the group has them).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub days: Vec<DayBar>,
}

/// A group of a tenant's components (`connectors`, `destinations`).
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub(crate) struct GroupView {
    pub id: String,
    pub name: String,
    /// The worst member's state; under maintenance only when every member is.
    pub status: ComponentStatus,
    pub uptime_90d: Option<f64>,
    pub days: Vec<DayBar>,
    pub components: Vec<ComponentView>,
}

/// A maintenance window in progress or coming up.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub(crate) struct MaintenanceView {
    pub id: String,
    pub title: String,
    /// Covered components; empty covers all.
    pub components: Vec<String>,
    /// `in_progress` or `scheduled`.
    pub state: String,
    /// This occurrence's start and end.
    pub starts_at: Timestamp,
    pub ends_at: Timestamp,
    /// For a recurring window: its cron and time zone.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cron: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timezone: Option<String>,
}

/// One tenant's part of the page.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub(crate) struct TenantSection {
    pub tenant: String,
    pub status: Summary,
    pub groups: Vec<GroupView>,
    pub incidents: Vec<IncidentRecord>,
    pub maintenances: Vec<MaintenanceView>,
}

/// `GET /status.json`.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub(crate) struct StatusPage {
    pub page: PageInfo,
    pub status: Summary,
    pub components: Vec<ComponentView>,
    /// Open incidents and those resolved in the last 90 days, newest first.
    pub incidents: Vec<IncidentRecord>,
    pub maintenances: Vec<MaintenanceView>,
    /// Present with `?tenant=` and a token that reads the tenant.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tenant: Option<TenantSection>,
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct StatusQuery {
    /// Add this tenant's components (requires `obs:read` on it).
    pub tenant: Option<String>,
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct BadgeQuery {
    /// A platform component id (`api`, `ingestion`, `delivery`, `workers`, `console`);
    /// the overall indicator when absent.
    pub component: Option<String>,
}

/// Each component's changes, in time order.
fn changes_by_component(
    changes: Vec<custos_store::StatusChange>,
) -> HashMap<String, Vec<(Timestamp, ComponentStatus)>> {
    let mut out: HashMap<String, Vec<(Timestamp, ComponentStatus)>> = HashMap::new();
    for change in changes {
        out.entry(change.component).or_default().push((change.at, change.status));
    }
    out
}

fn component_view(
    id: &str,
    name: &str,
    changes: Option<&Vec<(Timestamp, ComponentStatus)>>,
    windows: &[MaintenanceRecord],
    incidents: &[IncidentRecord],
    now: Timestamp,
    with_days: bool,
) -> ComponentView {
    let changes = changes.map(Vec::as_slice).unwrap_or_default();
    let last = changes.last();
    let recorded = last.map_or(ComponentStatus::Operational, |c| c.1);
    // Manual incidents raise the bars while they were open, as they raise the state now.
    let floors: Vec<_> = incidents
        .iter()
        .filter(|i| i.source == IncidentSource::Manual && i.components.iter().any(|c| c == id))
        .map(|i| (i.created_at, i.resolved_at.unwrap_or(now), i.impact.component_status()))
        .collect();
    let days = daily_bars(&raised_intervals(changes, &floors, now), now, UPTIME_DAYS);
    ComponentView {
        id: id.to_owned(),
        name: name.to_owned(),
        status: overlay(id, recorded, windows, incidents, now),
        status_since: last.map(|c| c.0),
        uptime_90d: overall_uptime(&days),
        days: if with_days { days } else { Vec::new() },
    }
}

fn maintenance_views(windows: &[MaintenanceRecord], now: Timestamp) -> Vec<MaintenanceView> {
    let horizon = now.saturating_add_micros(UPCOMING_DAYS * DAY_US);
    let mut out: Vec<MaintenanceView> = windows
        .iter()
        .filter_map(|record| {
            let window = &record.window;
            let (state, (starts_at, ends_at)) = match window.active_at(now) {
                Some(occurrence) => ("in_progress", occurrence),
                None => ("scheduled", window.next_after(now).filter(|(start, _)| *start <= horizon)?),
            };
            Some(MaintenanceView {
                id: record.id.clone(),
                title: window.input.title.clone(),
                components: window.input.components.clone(),
                state: state.to_owned(),
                starts_at,
                ends_at,
                cron: window.input.cron.clone(),
                timezone: window.input.timezone.clone(),
            })
        })
        .collect();
    out.sort_by_key(|m| (m.state != "in_progress", m.starts_at));
    out
}

async fn tenant_section(state: &AppState, tenant: &TenantId, now: Timestamp) -> Result<TenantSection, ApiError> {
    let store = &state.store;
    let scope = StatusScope::Tenant(tenant.clone());
    let since = now.saturating_add_micros(-UPTIME_DAYS * DAY_US);
    let changes = changes_by_component(store.status_changes(&scope, since).await?);
    let windows = store.maintenance_windows(&scope).await?;
    let incidents = store.incidents(&scope, resolved_listed_since(now)).await?;
    let components = store.components(tenant).await?;
    let mut groups = Vec::new();
    for (id, name, kinds) in [
        ("connectors", "Connectors", &[ComponentKind::Connector][..]),
        ("destinations", "Destinations", &[ComponentKind::SiemDestination, ComponentKind::WorkflowDestination][..]),
    ] {
        let members: Vec<_> = components.iter().filter(|c| kinds.contains(&c.kind)).collect();
        if members.is_empty() {
            continue;
        }
        let views: Vec<ComponentView> = members
            .iter()
            .map(|c| {
                let name = c.name.as_deref().unwrap_or(&c.id);
                component_view(&c.id, name, changes.get(&c.id), &windows, &incidents, now, false)
            })
            .collect();
        let member_changes: Vec<_> = members.iter().filter_map(|c| changes.get(&c.id).cloned()).collect();
        let days = daily_bars(&group_intervals(&member_changes, now), now, UPTIME_DAYS);
        groups.push(GroupView {
            id: id.to_owned(),
            name: name.to_owned(),
            status: group_status(views.iter().map(|v| v.status)).unwrap_or(ComponentStatus::Operational),
            uptime_90d: overall_uptime(&days),
            days,
            components: views,
        });
    }
    let status = Summary::of(groups.iter().flat_map(|g| g.components.iter().map(|c| c.status)));
    Ok(TenantSection {
        tenant: tenant.as_str().to_owned(),
        status,
        groups,
        incidents,
        maintenances: maintenance_views(&windows, now),
    })
}

/// How long the platform's part of the page is reused: a page linked from an incident
/// is opened by many at once, and must not read the store once per visitor.
pub(crate) const PLATFORM_PAGE_TTL: std::time::Duration = std::time::Duration::from_secs(5);

/// Everything the page shows, for the platform and, when asked, one tenant. The
/// platform's part is built once per [`PLATFORM_PAGE_TTL`] (one build at a time; the
/// visitors meanwhile get it from memory); a tenant's part is read for each request.
pub(crate) async fn build(state: &AppState, tenant: Option<&TenantId>) -> Result<StatusPage, ApiError> {
    let mut page = {
        let mut cached = state.status_page.lock().await;
        match cached.as_ref() {
            Some((at, page)) if at.elapsed() < PLATFORM_PAGE_TTL => page.clone(),
            _ => {
                let page = build_platform(state).await?;
                *cached = Some((std::time::Instant::now(), page.clone()));
                page
            }
        }
    };
    if let Some(tenant) = tenant {
        page.tenant = Some(tenant_section(state, tenant, page.page.updated_at).await?);
    }
    Ok(page)
}

/// Forgets the platform's part of the page, after a change to it (an incident, a
/// maintenance window, an evaluator pass), so the next visitor sees the change at once.
pub(crate) async fn forget_platform_page(state: &AppState) {
    state.status_page.lock().await.take();
}

/// The platform's part of the page, read from the store.
async fn build_platform(state: &AppState) -> Result<StatusPage, ApiError> {
    let now = Timestamp::now();
    let store = &state.store;
    let scope = StatusScope::Platform;
    let since = now.saturating_add_micros(-UPTIME_DAYS * DAY_US);
    let changes = changes_by_component(store.status_changes(&scope, since).await?);
    let windows = store.maintenance_windows(&scope).await?;
    let incidents = store.incidents(&scope, resolved_listed_since(now)).await?;
    let components: Vec<ComponentView> = PLATFORM_COMPONENTS
        .iter()
        .map(|(id, name)| component_view(id, name, changes.get(*id), &windows, &incidents, now, true))
        .collect();
    let config = &state.config;
    Ok(StatusPage {
        page: PageInfo {
            title: config.status_title.clone(),
            updated_at: now,
            version: config.version.clone(),
            commit: config.commit.clone(),
            features: config.features.clone(),
        },
        status: Summary::of(components.iter().map(|c| c.status)),
        components,
        incidents,
        maintenances: maintenance_views(&windows, now),
        tenant: None,
    })
}

/// Who may see what: the platform view is public unless the deployment requires a
/// token; a tenant's part needs `obs:read` on it.
pub(crate) async fn authorize(
    state: &AppState,
    caller: Option<&Caller>,
    tenant: Option<&str>,
) -> Result<Option<TenantId>, ApiError> {
    if state.config.status_require_token {
        let caller = caller.ok_or_else(|| {
            ApiError::new(ErrorCode::Unauthorized, "this status page requires 'Authorization: Bearer <token>'")
        })?;
        caller.reads_some_tenant(state, Permission::ObsRead)?;
    }
    match tenant {
        None => Ok(None),
        Some(raw) => {
            let caller = caller.ok_or_else(|| {
                ApiError::new(ErrorCode::Unauthorized, "a tenant's status requires 'Authorization: Bearer <token>'")
            })?;
            Ok(Some(caller.tenant_access(state, raw, Permission::ObsRead).await?))
        }
    }
}

/// Public answers may be cached briefly by browsers and proxies; a tenant's never.
fn cache_control(response: &mut Response, public: bool) {
    let value = if public { "public, max-age=30" } else { "private, no-store" };
    response.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static(value));
}

#[utoipa::path(
    get, path = "/status.json", tag = "status",
    summary = "The status page as JSON",
    description = "Platform components with 90 days of daily uptime, incidents (open, and resolved in the last \
        90 days), maintenance in progress or within 14 days, build version, commit and feature flags. \
        Public unless the deployment requires a token. `?tenant=` adds that tenant's connectors and \
        destinations and needs `obs:read` on it. The schema is in `docs/status-page.md`.",
    params(StatusQuery),
    responses(
        (status = 200, body = StatusPage),
        (status = 401, body = ErrorResponse),
        (status = 403, description = "The token does not read the tenant", body = ErrorResponse),
        (status = 404, body = ErrorResponse),
    )
)]
pub(crate) async fn status_json(
    State(state): State<AppState>,
    caller: Option<Caller>,
    Query(query): Query<StatusQuery>,
) -> Result<Response, ApiError> {
    let tenant = authorize(&state, caller.as_ref(), query.tenant.as_deref()).await?;
    let page = build(&state, tenant.as_ref()).await?;
    let mut response = Json(page).into_response();
    cache_control(&mut response, tenant.is_none() && !state.config.status_require_token);
    Ok(response)
}

#[utoipa::path(
    get, path = "/status", tag = "status",
    summary = "The status page as HTML",
    description = "The same as `/status.json`, rendered server-side; refreshes itself every 60 seconds.",
    params(StatusQuery),
    responses(
        (status = 200, content_type = "text/html"),
        (status = 401, body = ErrorResponse),
        (status = 403, body = ErrorResponse),
        (status = 404, body = ErrorResponse),
    )
)]
pub(crate) async fn status_html(
    State(state): State<AppState>,
    caller: Option<Caller>,
    Query(query): Query<StatusQuery>,
) -> Result<Response, ApiError> {
    let tenant = authorize(&state, caller.as_ref(), query.tenant.as_deref()).await?;
    let page = build(&state, tenant.as_ref()).await?;
    let mut response = crate::pages::page_response(crate::pages::status::render(&page));
    cache_control(&mut response, tenant.is_none() && !state.config.status_require_token);
    Ok(response)
}

#[utoipa::path(
    get, path = "/status/badge.svg", tag = "status",
    summary = "A badge of a platform component's state, or of the whole page",
    params(BadgeQuery),
    responses(
        (status = 200, content_type = "image/svg+xml"),
        (status = 400, description = "Unknown component", body = ErrorResponse),
        (status = 401, body = ErrorResponse),
    )
)]
pub(crate) async fn badge(
    State(state): State<AppState>,
    caller: Option<Caller>,
    Query(query): Query<BadgeQuery>,
) -> Result<Response, ApiError> {
    authorize(&state, caller.as_ref(), None).await?;
    if let Some(component) = &query.component
        && !PLATFORM_COMPONENTS.iter().any(|(id, _)| id == component)
    {
        let known: Vec<&str> = PLATFORM_COMPONENTS.iter().map(|(id, _)| *id).collect();
        return Err(ApiError::new(
            ErrorCode::BadRequest,
            format!("component: unknown component {component:?}; known: {}", known.join(", ")),
        )
        .with_field("component"));
    }
    let page = build(&state, None).await?;
    let (label, status) = match &query.component {
        Some(id) => {
            let view = page.components.iter().find(|c| &c.id == id).expect("checked above");
            (view.name.to_lowercase(), view.status)
        }
        None => ("status".to_owned(), indicator_status(page.status.indicator)),
    };
    let mut response = (
        [
            (header::CONTENT_TYPE, HeaderValue::from_static("image/svg+xml")),
            (header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff")),
            // Opened on its own, the badge runs nothing.
            (header::CONTENT_SECURITY_POLICY, HeaderValue::from_static("default-src 'none'")),
        ],
        crate::pages::status::badge_svg(&label, status),
    )
        .into_response();
    cache_control(&mut response, !state.config.status_require_token);
    Ok(response)
}

/// The state whose colour and words stand for an indicator on a badge.
fn indicator_status(indicator: Indicator) -> ComponentStatus {
    match indicator {
        Indicator::None => ComponentStatus::Operational,
        Indicator::Minor => ComponentStatus::DegradedPerformance,
        Indicator::Major => ComponentStatus::PartialOutage,
        Indicator::Critical => ComponentStatus::MajorOutage,
        Indicator::Maintenance => ComponentStatus::UnderMaintenance,
    }
}

//! The OpenAPI document, generated from the handlers' annotations: every route is
//! registered through [`api_router`], so the document cannot miss one.

use custos_model::Timestamp;
use serde::Serialize;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::AppState;
use crate::routes::{
    attestations, components, evidence, holds, incidents, jobs, logs, maintenance, platform, records::endpoints,
    status_page, traces,
};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "custos",
        description = "Observability and forensics for security platforms. Tenant routes take \
            `Authorization: Bearer <token>`; each names the scope it needs (`ingest:write`, `obs:read`, `timeline:write`, `timeline:read`, `audit:write`, `audit:read`, `evidence:create`, `evidence:read`, `evidence:export`, `evidence:hold`, `admin`), \
            bound to the tenant (`obs:read#tenant/acme`) or to all tenants (`#tenant/*`). Errors are \
            `{\"error\": {\"code\", \"message\", \"request_id\", \"field\"?, \"line\"?}}`.",
        license(name = "Apache-2.0")
    ),
    modifiers(&BearerAuth),
    tags(
        (name = "components", description = "Connectors, destinations, queues, services and jobs a platform registers"),
        (name = "rule runs", description = "Detection rule evaluations"),
        (name = "connector syncs", description = "Connector syncs with their providers"),
        (name = "queue snapshots", description = "Queue depth and age over time"),
        (name = "deliveries", description = "Delivery attempts to SIEM and workflow destinations"),
        (name = "timeline", description = "The tenant timeline: a tamper-evident log of every state transition"),
        (name = "audit log", description = "The tenant audit log: a write-only, tamper-evident log of security-relevant actions"),
        (name = "evidence", description = "The evidence locker: case artifacts, signed bundles, holds, and attestations that verify offline"),
        (name = "jobs", description = "Scheduled jobs: pings, status, next expected run, history"),
        (name = "status", description = "The status page, its badge, incidents and maintenance windows"),
        (name = "platform", description = "Health and API description"),
    )
)]
struct ApiDoc;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some("A custos API token (cst_…)"))
                    .build(),
            ),
        );
    }
}

/// Common list parameters.
#[derive(Debug, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
pub(crate) struct ListParams {
    /// Earliest instant, inclusive (RFC 3339).
    from: Option<String>,
    /// Latest instant, exclusive (RFC 3339).
    to: Option<String>,
    /// Page size for `format=json` (default 100, at most 1000); row cap for exports.
    limit: Option<u32>,
    /// `next_cursor` from the previous page.
    cursor: Option<String>,
    /// `json` (default), `ndjson` or `csv`.
    format: Option<String>,
}

/// Parameters of a job's ping or flip history.
#[derive(Debug, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
pub(crate) struct HistoryParams {
    /// Earliest instant, inclusive (RFC 3339).
    from: Option<String>,
    /// Latest instant, exclusive (RFC 3339).
    to: Option<String>,
    /// Page size (default 100, at most 1000).
    limit: Option<u32>,
    /// `next_cursor` from the previous page.
    cursor: Option<String>,
}

/// One page of a list.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct RecordPage<T> {
    items: Vec<T>,
    /// Pass as `cursor` for the next page; null on the last page.
    next_cursor: Option<String>,
}

/// A stored record: the record as reported, and when custos received it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct StoredDoc<T> {
    #[serde(flatten)]
    record: T,
    received_at: Timestamp,
}

pub(crate) fn api_router() -> OpenApiRouter<AppState> {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(components::list_components))
        .routes(routes!(components::put_component, components::get_component))
        .routes(routes!(components::list_freshness_policies))
        .routes(routes!(components::put_freshness_policy))
        .routes(routes!(endpoints::post_rule_runs, endpoints::list_rule_runs))
        .routes(routes!(endpoints::post_connector_syncs, endpoints::list_connector_syncs))
        .routes(routes!(endpoints::post_deliveries, endpoints::list_deliveries))
        .routes(routes!(endpoints::post_snapshots, endpoints::list_component_snapshots))
        .routes(routes!(endpoints::list_snapshots))
        .routes(routes!(logs::post_timeline_events))
        .routes(routes!(logs::list_timeline))
        .routes(routes!(logs::get_timeline_event))
        .routes(routes!(logs::get_timeline_checkpoint, logs::sign_timeline_checkpoint))
        .routes(routes!(logs::timeline_consistency))
        .routes(routes!(logs::timeline_inclusion))
        .routes(routes!(logs::export_timeline))
        .routes(routes!(logs::post_audit_events))
        .routes(routes!(logs::list_audit))
        .routes(routes!(logs::get_audit_record))
        .routes(routes!(logs::get_audit_checkpoint, logs::sign_audit_checkpoint))
        .routes(routes!(logs::audit_consistency))
        .routes(routes!(logs::audit_inclusion))
        .routes(routes!(logs::export_audit))
        .routes(routes!(logs::list_keys))
        .routes(routes!(attestations::verify_attestation))
        .routes(routes!(evidence::upload_artifact))
        .routes(routes!(evidence::get_case))
        .routes(routes!(evidence::create_snapshot))
        .routes(routes!(evidence::list_case_holds))
        .routes(routes!(evidence::get_retention, evidence::put_retention))
        .routes(routes!(evidence::place_case_hold, evidence::release_case_hold))
        .routes(routes!(evidence::get_bundle))
        .routes(routes!(evidence::download_bundle))
        .routes(routes!(evidence::list_attestations, evidence::create_attestation))
        .routes(routes!(evidence::report_capsule))
        .routes(routes!(holds::place_hold, holds::list_holds))
        .routes(routes!(holds::release_hold))
        .routes(routes!(traces::get_trace))
        .routes(routes!(jobs::list_jobs))
        .routes(routes!(jobs::get_job))
        .routes(routes!(jobs::ping_start))
        .routes(routes!(jobs::ping_success))
        .routes(routes!(jobs::ping_fail))
        .routes(routes!(jobs::ping_exit))
        .routes(routes!(jobs::pause_job))
        .routes(routes!(jobs::resume_job))
        .routes(routes!(jobs::list_job_pings))
        .routes(routes!(jobs::list_job_flips))
        .routes(routes!(incidents::open_incident, incidents::list_incidents))
        .routes(routes!(incidents::get_incident))
        .routes(routes!(incidents::update_incident))
        .routes(routes!(incidents::list_tenant_incidents))
        .routes(routes!(maintenance::create_platform, maintenance::list_platform))
        .routes(routes!(maintenance::cancel_platform))
        .routes(routes!(maintenance::create_tenant, maintenance::list_tenant))
        .routes(routes!(maintenance::cancel_tenant))
        .routes(routes!(status_page::status_json))
        .routes(routes!(status_page::status_html))
        .routes(routes!(status_page::badge))
        .routes(routes!(platform::health))
        .routes(routes!(platform::liveness))
        .routes(routes!(platform::readiness))
        .routes(routes!(platform::openapi_json))
        .routes(routes!(platform::metrics))
}

/// The OpenAPI document served at `/openapi.json`.
pub fn openapi_document() -> utoipa::openapi::OpenApi {
    api_router().split_for_parts().1
}

/// The JSON Schema (2020-12) of `/status.json`, from the same annotations as the
/// OpenAPI document: the `StatusPage` schema with every schema it refers to under
/// `$defs`. `docs/status-page.schema.json` is this, and a test keeps it so.
pub fn status_page_schema() -> serde_json::Value {
    let document = serde_json::to_value(openapi_document()).expect("the OpenAPI document serializes");
    let schemas = &document["components"]["schemas"];
    let mut defs = serde_json::Map::new();
    let mut pending = vec!["StatusPage".to_owned()];
    while let Some(name) = pending.pop() {
        if defs.contains_key(&name) {
            continue;
        }
        let mut schema = schemas[&name].clone();
        rewrite_refs(&mut schema, &mut pending);
        defs.insert(name, schema);
    }
    serde_json::json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": "urn:custos:schema:status-page:v1",
        "title": "custos /status.json",
        "$ref": "#/$defs/StatusPage",
        "$defs": defs,
    })
}

/// Points `#/components/schemas/X` references at `#/$defs/X`, noting each `X`.
fn rewrite_refs(value: &mut serde_json::Value, found: &mut Vec<String>) {
    match value {
        serde_json::Value::Object(map) => {
            if let Some(serde_json::Value::String(reference)) = map.get_mut("$ref")
                && let Some(name) = reference.strip_prefix("#/components/schemas/")
            {
                found.push(name.to_owned());
                *reference = format!("#/$defs/{name}");
            }
            for child in map.values_mut() {
                rewrite_refs(child, found);
            }
        }
        serde_json::Value::Array(items) => items.iter_mut().for_each(|item| rewrite_refs(item, found)),
        _ => {}
    }
}

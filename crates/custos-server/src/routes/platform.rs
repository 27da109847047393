//! Platform endpoints outside any tenant: health (the full report and the liveness and
//! readiness probes), the OpenAPI document and metrics.

use std::sync::OnceLock;

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use crate::AppState;
use crate::error::ApiError;

/// `application/health+json` body (draft-inadarei-api-health-check).
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct HealthStatus {
    /// `pass` or `fail`.
    pub status: &'static str,
    pub version: String,
    #[serde(rename = "releaseId")]
    pub release_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub output: Option<String>,
}

fn health_response(code: StatusCode, body: HealthStatus) -> Response {
    let mut response = (code, Json(body)).into_response();
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/health+json"));
    response
}

#[utoipa::path(
    get, path = "/health/liveness", tag = "platform",
    summary = "The process is alive (touches no dependency)",
    responses((status = 200, body = HealthStatus, content_type = "application/health+json"))
)]
pub(crate) async fn liveness(State(state): State<AppState>) -> Response {
    let version = state.config.version.clone();
    health_response(StatusCode::OK, HealthStatus { status: "pass", release_id: version.clone(), version, output: None })
}

#[utoipa::path(
    get, path = "/health/readiness", tag = "platform",
    summary = "Ready for traffic: migrations applied and the store reachable",
    responses(
        (status = 200, body = HealthStatus, content_type = "application/health+json"),
        (status = 503, body = HealthStatus, content_type = "application/health+json"),
    )
)]
pub(crate) async fn readiness(State(state): State<AppState>) -> Response {
    let version = state.config.version.clone();
    let fail = |output: String| {
        health_response(
            StatusCode::SERVICE_UNAVAILABLE,
            HealthStatus {
                status: "fail",
                release_id: version.clone(),
                version: version.clone(),
                output: Some(output),
            },
        )
    };
    if state.is_draining() {
        return fail("draining: shutting down".to_owned());
    }
    let probe = async { (state.store.ping().await, state.store.schema_version().await) };
    match tokio::time::timeout(std::time::Duration::from_secs(2), probe).await {
        Ok((Ok(()), Ok(applied))) if applied == state.store.expected_schema_version() => health_response(
            StatusCode::OK,
            HealthStatus { status: "pass", release_id: version.clone(), version, output: None },
        ),
        Ok((Ok(()), Ok(applied))) => {
            fail(format!("store: schema version {applied}, this build needs {}", state.store.expected_schema_version()))
        }
        Ok((Err(error), _) | (_, Err(error))) => {
            tracing::warn!(error = &error as &dyn std::error::Error, "readiness check failed");
            fail(format!("store: {}", error.code()))
        }
        Err(_) => fail("store: no answer within 2 s".to_owned()),
    }
}

#[utoipa::path(
    get, path = "/health", tag = "platform",
    summary = "Every dependency and worker, checked now",
    description = "The IETF health-check format. Checks run concurrently, each time-boxed to 50 ms (a check still \
        running then reports `fail`). `pass` and `warn` answer 200, `fail` 503. Public: the checks and their \
        statuses; each check's `output` (what failed, storage locations) only with a token holding `admin` on \
        every tenant.",
    responses(
        (status = 200, body = crate::health::HealthReport, content_type = "application/health+json"),
        (status = 503, body = crate::health::HealthReport, content_type = "application/health+json"),
    )
)]
pub(crate) async fn health(State(state): State<AppState>, caller: Option<crate::auth::Caller>) -> Response {
    let mut report = crate::health::report(&state).await;
    let operator = caller.is_some_and(|c| c.token.scopes.iter().any(|s| s.grants_all(custos_model::Permission::Admin)));
    if !operator {
        // Storage locations and error text are for operators, not whoever reaches the port.
        for check in report.checks.values_mut().flatten() {
            check.output = None;
        }
    }
    let code =
        if report.status == crate::health::Status::Fail { StatusCode::SERVICE_UNAVAILABLE } else { StatusCode::OK };
    let mut response = (code, Json(report)).into_response();
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/health+json"));
    response
}

#[utoipa::path(
    get, path = "/openapi.json", tag = "platform",
    summary = "This document",
    responses((status = 200, description = "OpenAPI 3.1", content_type = "application/json"))
)]
pub(crate) async fn openapi_json() -> Response {
    static DOCUMENT: OnceLock<String> = OnceLock::new();
    let json = DOCUMENT
        .get_or_init(|| crate::openapi::openapi_document().to_pretty_json().expect("the OpenAPI document serializes"));
    ([(header::CONTENT_TYPE, "application/json")], json.clone()).into_response()
}

#[utoipa::path(
    get, path = "/metrics", tag = "platform",
    summary = "Prometheus metrics",
    description = "The classic Prometheus text format, or OpenMetrics with exemplars when `Accept` asks for \
        `application/openmetrics-text`. The families labelled by tenant (the platforms' connectors, rules, \
        queues, jobs; token invocations) are served only to `Authorization: Bearer <metrics token>` \
        (`--metrics-token`), to an API token holding `obs:read` (or `admin`) on every tenant, or on the \
        `--metrics-listen` port; otherwise this carries custos's own signals only, and \
        `custos_metrics_tenant_families_withheld` says so. With `--metrics-token`, a scrape without a \
        token or with a wrong one is a 401. The derived families are read from the store at most once a second.",
    responses(
        (status = 200, content((String = "text/plain"), (String = "application/openmetrics-text"))),
        (status = 401, body = crate::error::ErrorResponse),
    )
)]
pub(crate) async fn metrics(
    State(state): State<AppState>,
    headers: axum::http::HeaderMap,
) -> Result<Response, ApiError> {
    let exposure = metrics_access(&state, &headers, false).await?;
    Ok(render_metrics(&state, &headers, exposure).await)
}

/// `/metrics` on the `--metrics-listen` port: every family, behind the metrics token
/// when one is set (a port an operator exposes only to their scraper).
pub(crate) async fn metrics_on_own_port(
    State(state): State<AppState>,
    headers: axum::http::HeaderMap,
) -> Result<Response, ApiError> {
    let exposure = metrics_access(&state, &headers, true).await?;
    Ok(render_metrics(&state, &headers, exposure).await)
}

/// What a scrape may see: everything with the metrics token, a token that reads every
/// tenant, or on the metrics port; custos's own signals otherwise (or a 401 when a
/// metrics token is configured and not presented).
async fn metrics_access(state: &AppState, headers: &axum::http::HeaderMap, own_port: bool) -> Result<bool, ApiError> {
    let presented = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")))
        .map(str::trim);
    let refused = || {
        state.metrics.count_auth_failure("metrics_token");
        ApiError::new(crate::ErrorCode::Unauthorized, "this endpoint needs the metrics token")
    };
    if let Some(expected) = &state.config.metrics_token {
        if presented.is_some_and(|p| constant_time_eq(p.as_bytes(), expected.as_bytes())) {
            return Ok(true);
        }
        if own_port || presented.is_none_or(str::is_empty) {
            return Err(refused());
        }
    } else if own_port {
        return Ok(true);
    }
    let Some(secret) = presented.filter(|p| !p.is_empty()) else { return Ok(false) };
    let token = state.tokens.lookup(state, &custos_model::token::hash_secret(secret)).await?;
    match token {
        Some(token)
            if token.is_active(custos_model::Timestamp::now())
                && token.scopes.iter().any(|s| s.grants_all(custos_model::Permission::ObsRead)) =>
        {
            Ok(true)
        }
        // A bearer that is not allowed to see every tenant is refused rather than
        // silently given less, so a misconfigured scraper notices.
        _ => Err(refused()),
    }
}

async fn render_metrics(state: &AppState, headers: &axum::http::HeaderMap, everything: bool) -> Response {
    let format =
        custos_telemetry::ExpositionFormat::negotiate(headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()));
    // The connection pool's gauges are custos's own (no tenant in them): every scrape.
    let pool = crate::platform_metrics::pool_families(state.store.pool_stats(), state.store.backend().as_str());
    let exposure = if everything {
        let mut families = platform_families(state).await;
        families.0.extend(pool);
        custos_telemetry::Exposure::Everything(families)
    } else {
        custos_telemetry::Exposure::OwnOnly(custos_telemetry::ConstFamilies(pool))
    };
    let body = state.metrics.render_with(format, exposure);
    ([(header::CONTENT_TYPE, format.content_type())], body).into_response()
}

/// The families derived from the store: at most one derivation a second, one at a time.
async fn platform_families(state: &AppState) -> custos_telemetry::ConstFamilies {
    let mut latest = state.platform_scrape.lock().await;
    if let Some((at, families)) = latest.as_ref()
        && at.elapsed() < PLATFORM_FAMILIES_TTL
    {
        return families.clone();
    }
    let started = std::time::Instant::now();
    let families = match crate::platform_metrics::load(&*state.store).await {
        Ok(data) => crate::platform_metrics::derive(&data, custos_model::Timestamp::now()),
        Err(error) => {
            tracing::error!(error = &error as &dyn std::error::Error, "reading platform metrics from the store failed");
            state.metrics.platform_collection_errors.inc();
            custos_telemetry::ConstFamilies::default()
        }
    };
    state.metrics.platform_collection_seconds.set(started.elapsed().as_secs_f64());
    *latest = Some((std::time::Instant::now(), families.clone()));
    families
}

/// How long derived families are reused: scrapers poll every 15 s or more, so a second
/// costs nothing in freshness and bounds a flood to one store read a second.
const PLATFORM_FAMILIES_TTL: std::time::Duration = std::time::Duration::from_secs(1);

/// Compares secrets without leaking where they differ through timing.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

pub(crate) async fn not_found() -> ApiError {
    ApiError::not_found("no such endpoint; see /openapi.json")
}

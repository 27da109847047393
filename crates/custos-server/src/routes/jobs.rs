//! Scheduled jobs: pings (`start`, `success`, `fail`, `exit/{code}`), pause and
//! resume, each job's status with its next expected run, and the ping and flip
//! histories.

use axum::Json;
use axum::body::Body;
use axum::extract::{Path, RawQuery, State};
use axum::http::HeaderMap;
use custos_model::jobs::{JobEvent, JobSchedule, JobStatus, PingInput, PingKind};
use custos_model::{FieldError, Permission, TenantId, Timestamp};
use custos_store::{JobEventOutcome, JobEventRequest, JobRecord, RecordQuery, StoredFlip, StoredPing};
use custos_telemetry::TraceContext;
use serde::Serialize;

use crate::AppState;
use crate::auth::Caller;
use crate::body;
use crate::error::{ApiError, ErrorCode, ErrorResponse};
use crate::jobs::WriteFailure;
use crate::routes::records::{DEFAULT_PAGE_LIMIT, MAX_PAGE_LIMIT, window_parameter};

/// A job as an operator sees it: schedule, status now, and what the pings said.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct JobView {
    pub id: String,
    pub name: Option<String>,
    pub schedule: Option<JobSchedule>,
    /// `new`, `up`, `late`, `down` or `paused`, now.
    pub status: JobStatus,
    /// A start ping is waiting for its finish.
    pub running: bool,
    /// When the next run is expected.
    pub next_expected_at: Option<Timestamp>,
    /// When the job turns down unless a ping arrives first.
    pub down_at: Option<Timestamp>,
    pub last_ping_at: Option<Timestamp>,
    pub last_success_at: Option<Timestamp>,
    pub last_failure_at: Option<Timestamp>,
    pub last_start_at: Option<Timestamp>,
    pub last_exit_code: Option<i32>,
    pub last_duration_ms: Option<i64>,
    pub pings_total: i64,
}

impl JobView {
    pub(crate) fn new(job: JobRecord, now: Timestamp) -> Self {
        let schedule = job.compiled_schedule();
        let evaluation = job.state.evaluate(schedule.as_ref(), now);
        let state = job.state;
        JobView {
            id: job.component.id,
            name: job.component.name,
            schedule: job.component.schedule,
            status: evaluation.status,
            running: state.last_start_at.is_some(),
            next_expected_at: evaluation.next_expected_at,
            down_at: evaluation.down_at,
            last_ping_at: state.last_ping_at,
            last_success_at: state.last_success_at,
            last_failure_at: state.last_failure_at,
            last_start_at: state.last_start_at,
            last_exit_code: state.last_exit_code,
            last_duration_ms: state.last_duration_ms,
            pings_total: state.pings_total,
        }
    }
}

/// What a ping did.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct PingResponse {
    pub job_id: String,
    /// The stored ping's id (absent for pause and resume).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ping_id: Option<String>,
    /// The job's status after the ping.
    pub status: JobStatus,
    /// For a finish: the run's duration, given or measured from its start ping.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub duration_ms: Option<i64>,
}

/// One page of a job's history.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct HistoryPage<T> {
    pub items: Vec<T>,
    /// Pass as `cursor` for the next page; null on the last page.
    pub next_cursor: Option<String>,
}

/// A ping's optional query parameters: run id, exit code, duration in milliseconds.
type PingParameters = (Option<String>, Option<i32>, Option<i64>);

/// Parses a ping's query string: `run_id`, `exit_code`, `duration_ms`; anything else,
/// or a parameter given twice, is an error naming it.
fn ping_parameters(raw: Option<&str>) -> Result<PingParameters, ApiError> {
    let (mut run_id, mut exit_code, mut duration_ms) = (None, None, None);
    let mut seen = std::collections::HashSet::new();
    let invalid = |field: &str, message: &str| ApiError::invalid(FieldError::new(field, message));
    for (key, value) in form_urlencoded::parse(raw.unwrap_or("").as_bytes()) {
        if !seen.insert(key.to_string()) {
            return Err(invalid(&key, "is given more than once"));
        }
        match key.as_ref() {
            "run_id" => run_id = Some(value.into_owned()),
            "exit_code" => {
                exit_code = Some(value.parse().map_err(|_| invalid("exit_code", "must be an integer (32-bit)"))?);
            }
            "duration_ms" => {
                duration_ms =
                    Some(value.parse().map_err(|_| invalid("duration_ms", "must be a non-negative integer"))?);
            }
            other => {
                return Err(ApiError::new(
                    ErrorCode::BadRequest,
                    format!("unknown query parameter {other:?}; known: run_id, exit_code, duration_ms"),
                )
                .with_field(other.to_owned()));
            }
        }
    }
    Ok((run_id, exit_code, duration_ms))
}

async fn apply(
    state: &AppState,
    tenant: TenantId,
    job_id: String,
    event: JobEvent,
    trace: Option<TraceContext>,
) -> Result<PingResponse, ApiError> {
    custos_model::ids::component_id("job", &job_id)
        .map_err(|_| ApiError::not_found(format!("job {job_id:?} not found")))?;
    let request = JobEventRequest {
        job_id: job_id.clone(),
        event,
        received_at: Timestamp::now(),
        trace_id: trace.map(|t| t.trace_id_hex()),
    };
    let outcome = state.pings.submit(&state.store, tenant, request, trace).await.map_err(|failure| match failure {
        WriteFailure::Unavailable => ApiError::new(ErrorCode::Unavailable, "the database is unavailable; retry later"),
        WriteFailure::Internal => {
            ApiError::new(ErrorCode::Internal, "internal error; the request id identifies it in the server's logs")
        }
    })?;
    match outcome {
        JobEventOutcome::Applied { ping_id, status, duration_ms, .. } => {
            Ok(PingResponse { job_id, ping_id, status, duration_ms })
        }
        JobEventOutcome::UnknownJob => Err(ApiError::not_found(format!(
            "job {job_id:?} not found; register it with PUT /v1/tenants/{{tenant}}/components/{job_id} and \
             \"kind\": \"scheduled_job\""
        ))),
        JobEventOutcome::NotAJob(kind) => Err(ApiError::new(
            ErrorCode::Conflict,
            format!("component {job_id:?} is a {}, not a scheduled_job", kind.as_str()),
        )),
    }
}

async fn ping(
    state: &AppState,
    caller: &Caller,
    tenant: &str,
    job_id: String,
    kind: PingKind,
    exit_code_from_path: Option<i32>,
    parts: (HeaderMap, Option<String>, Body, Option<TraceContext>),
) -> Result<Json<PingResponse>, ApiError> {
    let (headers, query, request_body, trace) = parts;
    let tenant = caller.tenant_access(state, tenant, Permission::IngestWrite).await?;
    let (run_id, exit_code, duration_ms) = ping_parameters(query.as_deref())?;
    let exit_code = exit_code_from_path.or(exit_code);
    let bytes = body::read_limited(&headers, request_body, custos_model::jobs::MAX_PING_BODY_BYTES).await?;
    let text = String::from_utf8(bytes.to_vec())
        .map_err(|_| ApiError::invalid(FieldError::new("body", "must be UTF-8 text")))?;
    let input = PingInput::new(kind, run_id, exit_code, duration_ms, Some(text)).map_err(ApiError::invalid)?;
    Ok(Json(apply(state, tenant, job_id, JobEvent::Ping(input), trace).await?))
}

macro_rules! ping_route {
    ($name:ident, $segment:literal, $kind:expr, $summary:literal) => {
        #[utoipa::path(
            post, path = concat!("/v1/tenants/{tenant}/jobs/{job}/", $segment), tag = "jobs",
            summary = $summary,
            description = "Optional query parameters `run_id` (pairs a start with its finish), `exit_code` and \
                `duration_ms`; an optional text body (at most 10,000 bytes, UTF-8) is kept with the ping. \
                Answered once the ping is stored.",
            params(
                ("tenant" = String, Path), ("job" = String, Path, description = "A scheduled_job component"),
                ("run_id" = Option<String>, Query), ("exit_code" = Option<i32>, Query),
                ("duration_ms" = Option<i64>, Query),
            ),
            request_body(content = String, content_type = "text/plain", description = "Optional: the tail of the job's output"),
            responses(
                (status = 200, body = PingResponse),
                (status = 400, body = ErrorResponse),
                (status = 401, body = ErrorResponse),
                (status = 403, body = ErrorResponse),
                (status = 404, description = "Unknown tenant or job", body = ErrorResponse),
                (status = 409, description = "The component is not a scheduled job", body = ErrorResponse),
                (status = 413, body = ErrorResponse),
                (status = 422, body = ErrorResponse),
            ),
            security(("bearer" = ["ingest:write"]))
        )]
        pub(crate) async fn $name(
            State(state): State<AppState>,
            caller: Caller,
            Path((tenant, job)): Path<(String, String)>,
            RawQuery(query): RawQuery,
            trace: Option<axum::Extension<TraceContext>>,
            headers: HeaderMap,
            request_body: Body,
        ) -> Result<Json<PingResponse>, ApiError> {
            let trace = trace.map(|t| t.0);
            ping(&state, &caller, &tenant, job, $kind, None, (headers, query, request_body, trace)).await
        }
    };
}

ping_route!(ping_start, "start", PingKind::Start, "A run started");
ping_route!(ping_success, "success", PingKind::Success, "A run succeeded");
ping_route!(ping_fail, "fail", PingKind::Fail, "A run failed");

#[utoipa::path(
    post, path = "/v1/tenants/{tenant}/jobs/{job}/exit/{code}", tag = "jobs",
    summary = "A run finished with this exit code",
    description = "Exit code 0 is a success, anything else a failure: `command; curl -X POST …/exit/$?`. \
        Takes the same query parameters and body as `/success`.",
    params(("tenant" = String, Path), ("job" = String, Path), ("code" = i32, Path)),
    request_body(content = String, content_type = "text/plain"),
    responses(
        (status = 200, body = PingResponse),
        (status = 400, body = ErrorResponse),
        (status = 401, body = ErrorResponse),
        (status = 403, body = ErrorResponse),
        (status = 404, body = ErrorResponse),
        (status = 409, body = ErrorResponse),
        (status = 413, body = ErrorResponse),
        (status = 422, body = ErrorResponse),
    ),
    security(("bearer" = ["ingest:write"]))
)]
pub(crate) async fn ping_exit(
    State(state): State<AppState>,
    caller: Caller,
    Path((tenant, job, code)): Path<(String, String, String)>,
    RawQuery(query): RawQuery,
    trace: Option<axum::Extension<TraceContext>>,
    headers: HeaderMap,
    request_body: Body,
) -> Result<Json<PingResponse>, ApiError> {
    let code: i32 = code.parse().map_err(|_| {
        ApiError::new(ErrorCode::BadRequest, "the exit code must be an integer (32-bit)").with_field("code")
    })?;
    let kind = if code == 0 { PingKind::Success } else { PingKind::Fail };
    let trace = trace.map(|t| t.0);
    ping(&state, &caller, &tenant, job, kind, Some(code), (headers, query, request_body, trace)).await
}

macro_rules! control_route {
    ($name:ident, $segment:literal, $event:expr, $summary:literal, $description:literal) => {
        #[utoipa::path(
                                    post, path = concat!("/v1/tenants/{tenant}/jobs/{job}/", $segment), tag = "jobs",
                                    summary = $summary, description = $description,
                                    params(("tenant" = String, Path), ("job" = String, Path)),
                                    responses(
                                        (status = 200, body = PingResponse),
                                        (status = 401, body = ErrorResponse),
                                        (status = 403, description = "Requires `admin`", body = ErrorResponse),
                                        (status = 404, body = ErrorResponse),
                                        (status = 409, body = ErrorResponse),
                                    ),
                                    security(("bearer" = ["admin"]))
                                )]
        pub(crate) async fn $name(
            State(state): State<AppState>,
            caller: Caller,
            Path((tenant, job)): Path<(String, String)>,
            trace: Option<axum::Extension<TraceContext>>,
        ) -> Result<Json<PingResponse>, ApiError> {
            let tenant = caller.tenant_access(&state, &tenant, Permission::Admin).await?;
            Ok(Json(apply(&state, tenant, job, $event, trace.map(|t| t.0)).await?))
        }
    };
}

control_route!(
    pause_job,
    "pause",
    JobEvent::Pause,
    "Pause a job",
    "A paused job is never late or down, until it is resumed or sends a success or failure ping."
);
control_route!(resume_job, "resume", JobEvent::Resume, "Resume a paused job", "The job is `new` until its next ping.");

#[utoipa::path(
    get, path = "/v1/tenants/{tenant}/jobs", tag = "jobs",
    summary = "Scheduled jobs with their status now",
    params(("tenant" = String, Path)),
    responses(
        (status = 200, body = Vec<JobView>),
        (status = 401, body = ErrorResponse),
        (status = 403, body = ErrorResponse),
        (status = 404, body = ErrorResponse),
    ),
    security(("bearer" = ["obs:read"]))
)]
pub(crate) async fn list_jobs(
    State(state): State<AppState>,
    caller: Caller,
    Path(tenant): Path<String>,
) -> Result<Json<Vec<JobView>>, ApiError> {
    let tenant = caller.tenant_access(&state, &tenant, Permission::ObsRead).await?;
    let now = Timestamp::now();
    Ok(Json(state.store.jobs(&tenant).await?.into_iter().map(|job| JobView::new(job, now)).collect()))
}

async fn find_job(state: &AppState, tenant: &TenantId, job_id: &str) -> Result<JobRecord, ApiError> {
    state.store.job(tenant, job_id).await?.ok_or_else(|| ApiError::not_found(format!("job {job_id:?} not found")))
}

#[utoipa::path(
    get, path = "/v1/tenants/{tenant}/jobs/{job}", tag = "jobs",
    summary = "One scheduled job with its status now",
    params(("tenant" = String, Path), ("job" = String, Path)),
    responses(
        (status = 200, body = JobView),
        (status = 401, body = ErrorResponse),
        (status = 403, body = ErrorResponse),
        (status = 404, body = ErrorResponse),
    ),
    security(("bearer" = ["obs:read"]))
)]
pub(crate) async fn get_job(
    State(state): State<AppState>,
    caller: Caller,
    Path((tenant, job)): Path<(String, String)>,
) -> Result<Json<JobView>, ApiError> {
    let tenant = caller.tenant_access(&state, &tenant, Permission::ObsRead).await?;
    Ok(Json(JobView::new(find_job(&state, &tenant, &job).await?, Timestamp::now())))
}

/// `from`, `to`, `limit`, `cursor`; anything else is an error naming it.
fn history_query(raw: Option<&str>) -> Result<RecordQuery, ApiError> {
    let mut query = RecordQuery { limit: DEFAULT_PAGE_LIMIT, ..RecordQuery::default() };
    let mut seen = std::collections::HashSet::new();
    let invalid = |field: &str, message: &str| ApiError::invalid(FieldError::new(field, message));
    for (key, value) in form_urlencoded::parse(raw.unwrap_or("").as_bytes()) {
        if !seen.insert(key.to_string()) {
            return Err(invalid(&key, "is given more than once"));
        }
        if window_parameter(&mut query, &key, &value)? {
            continue;
        }
        match key.as_ref() {
            "limit" => match value.parse::<usize>() {
                Ok(n) if (1..=MAX_PAGE_LIMIT).contains(&n) => query.limit = n,
                _ => return Err(invalid("limit", &format!("must be an integer from 1 to {MAX_PAGE_LIMIT}"))),
            },
            other => {
                return Err(ApiError::new(
                    ErrorCode::BadRequest,
                    format!("unknown query parameter {other:?}; known: from, to, limit, cursor"),
                )
                .with_field(other.to_owned()));
            }
        }
    }
    Ok(query)
}

#[utoipa::path(
    get, path = "/v1/tenants/{tenant}/jobs/{job}/pings", tag = "jobs",
    summary = "A job's pings, newest first",
    params(("tenant" = String, Path), ("job" = String, Path), crate::openapi::HistoryParams),
    responses(
        (status = 200, body = HistoryPage<StoredPing>),
        (status = 400, body = ErrorResponse),
        (status = 401, body = ErrorResponse),
        (status = 403, body = ErrorResponse),
        (status = 404, body = ErrorResponse),
        (status = 422, body = ErrorResponse),
    ),
    security(("bearer" = ["obs:read"]))
)]
pub(crate) async fn list_job_pings(
    State(state): State<AppState>,
    caller: Caller,
    Path((tenant, job)): Path<(String, String)>,
    RawQuery(raw): RawQuery,
) -> Result<Json<HistoryPage<StoredPing>>, ApiError> {
    let tenant = caller.tenant_access(&state, &tenant, Permission::ObsRead).await?;
    let query = history_query(raw.as_deref())?;
    find_job(&state, &tenant, &job).await?;
    let page = state.store.job_pings_page(&tenant, &job, &query).await?;
    Ok(Json(HistoryPage { items: page.items, next_cursor: page.next_cursor.map(|c| c.encode()) }))
}

#[utoipa::path(
    get, path = "/v1/tenants/{tenant}/jobs/{job}/flips", tag = "jobs",
    summary = "A job's status changes, newest first",
    params(("tenant" = String, Path), ("job" = String, Path), crate::openapi::HistoryParams),
    responses(
        (status = 200, body = HistoryPage<StoredFlip>),
        (status = 400, body = ErrorResponse),
        (status = 401, body = ErrorResponse),
        (status = 403, body = ErrorResponse),
        (status = 404, body = ErrorResponse),
        (status = 422, body = ErrorResponse),
    ),
    security(("bearer" = ["obs:read"]))
)]
pub(crate) async fn list_job_flips(
    State(state): State<AppState>,
    caller: Caller,
    Path((tenant, job)): Path<(String, String)>,
    RawQuery(raw): RawQuery,
) -> Result<Json<HistoryPage<StoredFlip>>, ApiError> {
    let tenant = caller.tenant_access(&state, &tenant, Permission::ObsRead).await?;
    let query = history_query(raw.as_deref())?;
    find_job(&state, &tenant, &job).await?;
    let page = state.store.job_flips_page(&tenant, Some(&job), &query).await?;
    Ok(Json(HistoryPage { items: page.items, next_cursor: page.next_cursor.map(|c| c.encode()) }))
}

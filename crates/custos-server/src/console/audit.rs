//! `/admin/audit/rules`: every rule run of a tenant, filtered by rule key, integration,
//! status and time window, newest first, with a page per run and the current filter
//! exported as CSV or NDJSON (streamed, any size, the same encoder as the API's
//! `format=csv|ndjson`).
//!
//! The filter form is a plain GET form: it changes nothing, so it needs no anti-forgery
//! token, and a filtered view is a link that can be shared. Times are UTC; the form's
//! `from` and `to` take `2026-11-22T10:00` (a browser's date-time field) or RFC 3339.

use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderValue, header};
use axum::response::Response;
use custos_model::console::AuditFilter;
use custos_model::records::RuleRun;
use custos_model::{Permission, Timestamp};
use custos_store::{RecordQuery, Stored};

use super::{ConsoleUser, error_page, one_tenant, pick_tenant};
use crate::AppState;
use crate::error::{ApiError, ErrorCode};
use crate::routes::records::{ListFormat, ListRequest, export, parse_list_query};

/// Runs per page of the list.
pub(crate) const PAGE_ROWS: usize = 50;

/// The filter of the query string, or a 400 naming the parameter at fault.
fn parse_filter(raw: Option<&str>) -> Result<AuditFilter, ApiError> {
    AuditFilter::parse(raw).map_err(|e| ApiError::new(ErrorCode::BadRequest, e.to_string()).with_field(e.field))
}

/// `GET /admin/audit/rules`.
pub(crate) async fn page(State(state): State<AppState>, user: ConsoleUser, RawQuery(raw): RawQuery) -> Response {
    let result: Result<Response, ApiError> = async {
        let filter = parse_filter(raw.as_deref())?;
        let tenant = match pick_tenant(&state, &user, filter.tenant.as_deref(), Permission::ObsRead).await? {
            Ok(tenant) => tenant,
            Err(choices) => {
                return Ok(crate::pages::page_response(crate::pages::console::pick_tenant(
                    "/admin/audit/rules",
                    &choices,
                    &user,
                )));
            }
        };
        let now = Timestamp::now();
        let mut request = parse_list_query::<RuleRun>(Some(&filter.list_query(now, true)), None)?;
        request.query.limit = PAGE_ROWS;
        let page = state.store.rule_runs_page(&tenant, &request.query).await?;
        tracing::Span::current().record("records", page.items.len());
        let next = page.next_cursor.map(|c| c.encode());
        Ok(crate::pages::page_response(crate::pages::console::audit(
            &tenant,
            &filter,
            &page.items,
            next.as_deref(),
            &user,
        )))
    }
    .await;
    result.unwrap_or_else(error_page)
}

async fn export_as(
    state: AppState,
    user: ConsoleUser,
    raw: Option<String>,
    format: ListFormat,
) -> Result<Response, ApiError> {
    let filter = parse_filter(raw.as_deref())?;
    let tenant = one_tenant(&state, &user, filter.tenant.as_deref(), Permission::ObsRead).await?;
    let now = Timestamp::now();
    let parsed = parse_list_query::<RuleRun>(Some(&filter.list_query(now, false)), None)?;
    let request = ListRequest {
        query: RecordQuery { limit: crate::routes::records::EXPORT_PAGE, ..parsed.query },
        format,
        export_limit: None,
    };
    let extension = if format == ListFormat::Csv { "csv" } else { "ndjson" };
    let stamp = now.to_string()[..19].replace(':', "");
    let name = format!("rule-runs-{}-{stamp}Z.{extension}", tenant.as_str());
    let mut response = export::<RuleRun>(state.store.clone(), tenant, request);
    response.headers_mut().insert(
        header::CONTENT_DISPOSITION,
        HeaderValue::from_str(&format!("attachment; filename=\"{name}\""))
            .expect("tenant ids and times are plain ASCII"),
    );
    Ok(response)
}

/// `GET /admin/audit/rules.csv`: the filter's every run, as CSV.
pub(crate) async fn export_csv(
    State(state): State<AppState>,
    user: ConsoleUser,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    export_as(state, user, raw, ListFormat::Csv).await
}

/// `GET /admin/audit/rules.ndjson`: the filter's every run, one JSON object per line.
pub(crate) async fn export_ndjson(
    State(state): State<AppState>,
    user: ConsoleUser,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    export_as(state, user, raw, ListFormat::Ndjson).await
}

/// `GET /admin/audit/rules/{run}`: one run, whole.
pub(crate) async fn run(
    State(state): State<AppState>,
    user: ConsoleUser,
    Path(run): Path<String>,
    RawQuery(raw): RawQuery,
) -> Response {
    let result: Result<Response, ApiError> = async {
        let filter = parse_filter(raw.as_deref())?;
        let tenant = one_tenant(&state, &user, filter.tenant.as_deref(), Permission::ObsRead).await?;
        let query = RecordQuery { filters: vec![("id".into(), run.clone())], limit: 1, ..RecordQuery::default() };
        let found: Option<Stored<RuleRun>> =
            state.store.rule_runs_page(&tenant, &query).await?.items.into_iter().next();
        let found =
            found.ok_or_else(|| ApiError::not_found(format!("no rule run {run:?} in tenant {}", tenant.as_str())))?;
        Ok(crate::pages::page_response(crate::pages::console::run(&tenant, &found, &filter, &user)))
    }
    .await;
    result.unwrap_or_else(error_page)
}

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
use custos_model::records::RuleRun;
use custos_model::{Permission, TenantId, Timestamp};
use custos_store::{RecordQuery, Stored};

use super::{ConsoleUser, error_page, one_tenant, pick_tenant};
use crate::AppState;
use crate::error::{ApiError, ErrorCode};
use crate::routes::records::{ListFormat, ListRequest, export, parse_list_query};

/// Runs per page of the list.
pub(crate) const PAGE_ROWS: usize = 50;

/// Quick windows the form offers, as `(value, label, hours)`.
pub(crate) const WINDOWS: [(&str, &str, i64); 5] = [
    ("1h", "last hour", 1),
    ("24h", "last 24 hours", 24),
    ("7d", "last 7 days", 168),
    ("30d", "last 30 days", 720),
    ("all", "all time", 0),
];

/// The filter as the form shows it (empty fields dropped).
#[derive(Debug, Clone, Default)]
pub(crate) struct AuditFilter {
    pub tenant: Option<String>,
    pub rule_key: Option<String>,
    pub integration_id: Option<String>,
    pub status: Option<String>,
    /// One of [`WINDOWS`]; ignored when `from` is set.
    pub window: Option<String>,
    pub from: Option<String>,
    pub to: Option<String>,
    pub cursor: Option<String>,
}

impl AuditFilter {
    /// Reads the query string. A parameter given twice, or one this page does not
    /// know, is an error naming it.
    fn parse(raw: Option<&str>) -> Result<Self, ApiError> {
        let mut filter = AuditFilter::default();
        let mut seen = std::collections::HashSet::new();
        for (key, value) in form_urlencoded::parse(raw.unwrap_or("").as_bytes()) {
            if !seen.insert(key.to_string()) {
                return Err(
                    ApiError::new(ErrorCode::BadRequest, format!("{key}: is given more than once")).with_field(key)
                );
            }
            let value = value.trim().to_owned();
            let slot = match key.as_ref() {
                "tenant" => &mut filter.tenant,
                "rule_key" => &mut filter.rule_key,
                "integration_id" => &mut filter.integration_id,
                "status" => &mut filter.status,
                "window" => &mut filter.window,
                "from" => &mut filter.from,
                "to" => &mut filter.to,
                "cursor" => &mut filter.cursor,
                other => {
                    return Err(ApiError::new(
                        ErrorCode::BadRequest,
                        format!(
                            "{other}: is not a parameter of this page; known: tenant, rule_key, integration_id, status, \
                             window, from, to, cursor"
                        ),
                    )
                    .with_field(other));
                }
            };
            *slot = Some(value).filter(|v| !v.is_empty());
        }
        if let Some(window) = &filter.window
            && !WINDOWS.iter().any(|(value, _, _)| value == window)
        {
            let known: Vec<&str> = WINDOWS.iter().map(|(v, _, _)| *v).collect();
            return Err(ApiError::new(ErrorCode::BadRequest, format!("window: must be one of {}", known.join(", ")))
                .with_field("window"));
        }
        Ok(filter)
    }

    /// The filter as a query string for the list API's parser: the record filters,
    /// `from`/`to` (a quick window becomes a `from`), and `cursor`.
    fn list_query(&self, now: Timestamp, with_cursor: bool) -> String {
        let mut out = form_urlencoded::Serializer::new(String::new());
        for (name, value) in
            [("rule_key", &self.rule_key), ("integration_id", &self.integration_id), ("status", &self.status)]
        {
            if let Some(value) = value {
                out.append_pair(name, value);
            }
        }
        let from = self.from.as_deref().map(rfc3339).or_else(|| {
            let hours = WINDOWS.iter().find(|(v, _, _)| Some(*v) == self.window.as_deref()).map_or(0, |w| w.2);
            (hours > 0).then(|| now.saturating_add_micros(-hours * 3_600_000_000).to_string())
        });
        if let Some(from) = from {
            out.append_pair("from", &from);
        }
        if let Some(to) = &self.to {
            out.append_pair("to", &rfc3339(to));
        }
        if with_cursor && let Some(cursor) = &self.cursor {
            out.append_pair("cursor", cursor);
        }
        out.finish()
    }

    /// This filter as a link's query string (for paging and export), with `cursor`.
    pub(crate) fn href(&self, tenant: &TenantId, cursor: Option<&str>) -> String {
        let mut out = form_urlencoded::Serializer::new(String::new());
        out.append_pair("tenant", tenant.as_str());
        for (name, value) in [
            ("rule_key", &self.rule_key),
            ("integration_id", &self.integration_id),
            ("status", &self.status),
            ("window", &self.window),
            ("from", &self.from),
            ("to", &self.to),
        ] {
            if let Some(value) = value {
                out.append_pair(name, value);
            }
        }
        if let Some(cursor) = cursor {
            out.append_pair("cursor", cursor);
        }
        out.finish()
    }
}

/// A browser's `datetime-local` value (`2026-11-22T10:00`, seconds optional) read as
/// UTC; anything else is passed on as given (RFC 3339, checked by the list parser).
fn rfc3339(value: &str) -> String {
    let b = value.as_bytes();
    let local = |len: usize| b.len() == len && b[4] == b'-' && b[10] == b'T' && !value.contains(['Z', '+']);
    if local(16) {
        format!("{value}:00Z")
    } else if local(19) {
        format!("{value}Z")
    } else {
        value.to_owned()
    }
}

/// `GET /admin/audit/rules`.
pub(crate) async fn page(State(state): State<AppState>, user: ConsoleUser, RawQuery(raw): RawQuery) -> Response {
    let result: Result<Response, ApiError> = async {
        let filter = AuditFilter::parse(raw.as_deref())?;
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
    let filter = AuditFilter::parse(raw.as_deref())?;
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
        let filter = AuditFilter::parse(raw.as_deref())?;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn browser_times_read_as_utc_and_others_pass_through() {
        assert_eq!(rfc3339("2026-11-22T10:00"), "2026-11-22T10:00:00Z");
        assert_eq!(rfc3339("2026-11-22T10:00:30"), "2026-11-22T10:00:30Z");
        assert_eq!(rfc3339("2026-11-22T10:00:00+01:00"), "2026-11-22T10:00:00+01:00");
        assert_eq!(rfc3339("yesterday"), "yesterday");
    }

    #[test]
    fn the_filter_drops_empty_fields_and_refuses_unknown_ones() {
        let f = AuditFilter::parse(Some("tenant=acme&rule_key=&status=failed&window=24h")).unwrap();
        assert_eq!(f.rule_key, None);
        assert_eq!(f.status.as_deref(), Some("failed"));
        let now = Timestamp::parse("t", "2026-11-22T12:00:00Z").unwrap();
        assert_eq!(f.list_query(now, true), "status=failed&from=2026-11-21T12%3A00%3A00.000000Z");
        let error = AuditFilter::parse(Some("colour=red")).unwrap_err();
        assert_eq!(error.field.as_deref(), Some("colour"));
        assert_eq!(AuditFilter::parse(Some("window=2w")).unwrap_err().field.as_deref(), Some("window"));
        assert_eq!(AuditFilter::parse(Some("status=a&status=b")).unwrap_err().field.as_deref(), Some("status"));
        // An explicit `from` wins over the quick window.
        let f = AuditFilter::parse(Some("window=1h&from=2026-11-01T00:00")).unwrap();
        assert_eq!(f.list_query(now, false), "from=2026-11-01T00%3A00%3A00Z");
    }
}

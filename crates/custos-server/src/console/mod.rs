//! The operator console: `/admin/health` (admin role), `/admin/audit/rules` and
//! `/admin/timeline` (admin and security-analyst roles), server-rendered like the
//! status page.
//!
//! There is no user database: a person logs in with an API token, which is exchanged
//! for a session cookie (HttpOnly, SameSite=Strict, see [`session`]). Roles are what
//! the token's scopes grant on the tenant shown:
//!
//! | role | scope on the tenant | pages |
//! |---|---|---|
//! | admin | `admin` | health, rule audit, timeline |
//! | security analyst | `obs:read` | rule audit |
//! | security analyst | `timeline:read` | timeline |
//!
//! Every page and its data also take `Authorization: Bearer <token>`, for scripts.

pub(crate) mod audit;
pub(crate) mod health;
pub(crate) mod session;
pub(crate) mod timeline;

use axum::Router;
use axum::extract::FromRequestParts;
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use custos_model::{Permission, TenantId, Timestamp, token};

use crate::AppState;
use crate::auth::Caller;
use crate::error::{ApiError, ErrorCode};

/// The console's routes (not part of the OpenAPI document: they answer HTML, or the
/// console's own JSON and exports).
pub(crate) fn router() -> Router<AppState> {
    Router::new()
        .route("/admin", get(|| async { Redirect::to("/admin/health") }))
        .route("/admin/login", get(session::login_form).post(session::login))
        .route("/admin/logout", post(session::logout))
        .route("/admin/health", get(health::page))
        .route("/admin/health.json", get(health::json))
        .route("/admin/health/deliveries", get(health::deliveries))
        .route("/admin/health/queues/{queue}", get(health::queue))
        .route("/admin/audit/rules", get(audit::page))
        .route("/admin/audit/rules.csv", get(audit::export_csv))
        .route("/admin/audit/rules.ndjson", get(audit::export_ndjson))
        .route("/admin/audit/rules/{run}", get(audit::run))
        .route("/admin/timeline", get(timeline::page))
        .route("/admin/timeline/{event}", get(timeline::event))
}

/// Who is using the console: a caller (by session or bearer token), and for a session
/// the anti-forgery token its forms must carry.
#[derive(Debug, Clone)]
pub(crate) struct ConsoleUser {
    pub caller: Caller,
    /// Present for a session login (forms show a logout button carrying it).
    pub csrf: Option<String>,
}

/// Where a request without credentials is sent: HTML pages go to the login form
/// (coming back afterwards); data (`.json`, `.csv`, `.ndjson`) answers 401.
fn unauthenticated(state: &AppState, parts: &Parts, reason: &str) -> Response {
    state.metrics.count_auth_failure(reason);
    let path = parts.uri.path();
    if path.ends_with(".json") || path.ends_with(".csv") || path.ends_with(".ndjson") {
        return ApiError::new(
            ErrorCode::Unauthorized,
            "log in at /admin/login, or send 'Authorization: Bearer <token>'",
        )
        .into_response();
    }
    let next = parts.uri.path_and_query().map_or(path, |pq| pq.as_str());
    let target = format!("/admin/login?next={}", form_urlencoded::byte_serialize(next.as_bytes()).collect::<String>());
    let mut response = Redirect::to(&target).into_response();
    if reason != "missing_token" {
        // A dead session: forget its cookie.
        response.headers_mut().append(header::SET_COOKIE, session::clear_cookie(parts));
    }
    response
}

impl FromRequestParts<AppState> for ConsoleUser {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        if parts.headers.contains_key(AUTHORIZATION) {
            let caller = <Caller as FromRequestParts<AppState>>::from_request_parts(parts, state)
                .await
                .map_err(IntoResponse::into_response)?;
            return Ok(ConsoleUser { caller, csrf: None });
        }
        let Some(secret) = session::cookie(&parts.headers, session::SESSION_COOKIE) else {
            return Err(unauthenticated(state, parts, "missing_token"));
        };
        let found = state
            .store
            .console_session(&token::hash_secret(&secret))
            .await
            .map_err(|e| ApiError::from(e).into_response())?;
        let now = Timestamp::now();
        match found {
            Some((session, token)) if session.is_active(now) && token.is_active(now) => {
                tracing::Span::current().record("actor", token.id.as_str());
                Ok(ConsoleUser { caller: Caller { token }, csrf: Some(token::csrf_token(&secret)) })
            }
            Some(_) => Err(unauthenticated(state, parts, "expired_session")),
            None => Err(unauthenticated(state, parts, "unknown_session")),
        }
    }
}

/// An error as a console page: the same status and message as the API's JSON error.
pub(crate) fn error_page(error: ApiError) -> Response {
    let status = error.code.status();
    if status == StatusCode::INTERNAL_SERVER_ERROR {
        return error.into_response();
    }
    let body = maud::html! {
        h1 { (status.as_u16()) " " (status.canonical_reason().unwrap_or("")) }
        p { (error.message) }
        p class="muted" { a href="/admin/login" { "Log in with another token" } " · " a href="/admin/health" { "Console home" } }
    };
    let mut response = crate::pages::page_response(crate::pages::layout("custos console", None, &body));
    *response.status_mut() = status;
    response
}

/// The tenant a page shows: the one named, checked against the caller's scopes in the
/// API's order (403 before 404); or, when none is named, the only tenant the caller
/// may see with `permission`. `Ok(Err(tenants))` asks the caller to pick among several.
pub(crate) async fn pick_tenant(
    state: &AppState,
    user: &ConsoleUser,
    named: Option<&str>,
    permission: Permission,
) -> Result<Result<TenantId, Vec<TenantId>>, ApiError> {
    if let Some(name) = named.filter(|n| !n.is_empty()) {
        return user.caller.tenant_access(state, name, permission).await.map(Ok);
    }
    let visible: Vec<TenantId> =
        state.store.tenants().await?.into_iter().map(|t| t.id).filter(|t| user.caller.has(permission, t)).collect();
    match visible.as_slice() {
        [only] => user.caller.tenant_access(state, only.as_str(), permission).await.map(Ok),
        [] => {
            user.caller.reads_some_tenant(state, permission)?;
            Err(ApiError::not_found("no tenant exists yet"))
        }
        _ => Ok(Err(visible)),
    }
}

/// [`pick_tenant`] for what shows one tenant only (data, drill-downs): a token over
/// several tenants must name one (400 naming `tenant`).
pub(crate) async fn one_tenant(
    state: &AppState,
    user: &ConsoleUser,
    named: Option<&str>,
    permission: Permission,
) -> Result<TenantId, ApiError> {
    pick_tenant(state, user, named, permission).await?.map_err(|_| {
        ApiError::new(ErrorCode::BadRequest, "tenant: name one; the token reads several").with_field("tenant")
    })
}
